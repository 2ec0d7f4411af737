/*
 * vsched core: policy "vanilla": upstream kvm_vcpu_on_spin() as of
 * Linux 6.13+ (single loop, 7e513617da71, with the idx fix 32bd348be3fa).
 *
 *   start = READ_ONCE(kvm->last_boosted_vcpu) + 1;
 *   for (i = 0; i < nr_vcpus; i++) {
 *       idx = (start + i) % nr_vcpus;
 *       if (idx == me->vcpu_idx) continue;
 *       if (!READ_ONCE(vcpu->ready)) continue;
 *       if (kvm_vcpu_is_blocking(vcpu) && !vcpu_dy_runnable(vcpu)) continue;
 *       if (READ_ONCE(vcpu->preempted) && yield_to_kernel_mode &&
 *           !kvm_arch_dy_has_pending_interrupt(vcpu) &&
 *           !kvm_arch_vcpu_preempted_in_kernel(vcpu)) continue;
 *       if (!kvm_vcpu_eligible_for_directed_yield(vcpu)) continue;
 *       yielded = kvm_vcpu_yield_to(vcpu);
 *       if (yielded > 0) { WRITE_ONCE(kvm->last_boosted_vcpu, idx); break; }
 *       else if (yielded < 0 && !--try) break;
 *   }
 *
 * kvm_arch_dy_has_pending_interrupt() is false: it needs APICv, which a
 * userspace APIC does not have (and the series was measured without it).
 */
#include "policy.h"
#include "policy_common.h"

namespace vsched {

namespace {

class VanillaPolicy final : public YieldPolicy {
public:
    PolicyKind kind() const override { return PolicyKind::kVanilla; }
    Decision decide(PolicyContext &c, int me, bool kernel_mode) override;
};

Decision VanillaPolicy::decide(PolicyContext &c, int me, bool kernel_mode)
{
    using namespace detail;
    Decision d;
    const int n = c.pool.nr_vcpus();
    if (n < 2) {
        return d;
    }
    begin_spin(c, me);
    const int start = c.pool.last_boosted() + 1;
    int tries = c.budget;
    for (int i = 0, idx = scan_first(start, n); i < n; i++, idx = scan_next(idx, n)) {
        if (idx == me || !ready_and_runnable(c, idx)) {
            continue;
        }
        if (preempted(c, idx) && kernel_mode && !preempted_in_kernel(c, idx)) {
            c.tally.user_mode++;
            continue;
        }
        if (!eligible_for_directed_yield(c, idx)) {
            continue;
        }
        bool stop;
        if (attempt(c, me, idx, &tries, &stop) > 0) {
            d.target = idx;
            d.pass = Ctr::yield_scan;
            break;
        }
        if (stop) {
            break;
        }
    }
    end_spin(c, me);
    return d;
}

} // namespace

std::unique_ptr<YieldPolicy> make_vanilla_policy()
{
    return std::make_unique<VanillaPolicy>();
}

} // namespace vsched
