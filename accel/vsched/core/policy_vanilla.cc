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

namespace vsched {

namespace {

class VanillaPolicy final : public YieldPolicy {
public:
    void decide(SpinContext &c) override;
};

void VanillaPolicy::decide(SpinContext &c)
{
    const int n = c.nr_vcpus();
    for (int i = 0, idx = c.scan_first(); i < n; i++, idx = c.scan_next(idx)) {
        if (idx == c.me() || !c.ready_and_runnable(idx)) {
            continue;
        }
        if (c.preempted(idx) && c.kernel_mode() && !c.preempted_in_kernel(idx)) {
            c.reject(Reject::kUserMode);
            continue;
        }
        if (!c.eligible_for_directed_yield(idx)) {
            continue;
        }
        YieldOutcome r = c.try_yield(idx, /*pass=*/0);
        if (r == YieldOutcome::kYielded || r == YieldOutcome::kStop) {
            break;
        }
    }
}

std::unique_ptr<YieldPolicy> make_vanilla()
{
    return std::make_unique<VanillaPolicy>();
}

} // namespace

VSCHED_REGISTER_POLICY(vanilla, "vanilla", make_vanilla, "scan");

} // namespace vsched
