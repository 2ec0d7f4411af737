/*
 * vsched core: policies "ipi" (the IPI-aware directed-yield series, v3) and
 * "ipi-v2" (the same series' v1/v2 code, kept for comparison).
 *
 * The KVM half of v3 ("KVM side keeps the v2 design") as far as it is
 * public: v2 8/9 + 9/9 for the scan, v3 10/10's hunk for the retry gate,
 * and v3 08/10's title and cover-letter rule for the EOI (its body is not
 * public; the matching-vector EOI is reconstructed from the stated rule,
 * see ipi_series.h):
 *
 *   first_round = true;
 * retry:
 *   yielded = 0;
 *   for (i = 0; i < nr_vcpus; i++) {
 *       ... ready / blocking checks as upstream ...
 *       if (first_round && !kvm_vcpu_is_good_yield_candidate(me, vcpu, kmode))
 *           continue;
 *       else if (!first_round && !READ_ONCE(vcpu->preempted))
 *           continue;
 *       if (!kvm_vcpu_eligible_for_directed_yield(vcpu)) continue;
 *       yielded = kvm_vcpu_yield_to(vcpu);
 *       if (yielded > 0) { WRITE_ONCE(kvm->last_boosted_vcpu, idx); break; }
 *       else if (yielded < 0 && !--try) break;
 *   }
 *   if (enable_relaxed_boost && first_round && yielded <= 0 && try > 0) {
 *       first_round = false;
 *       goto retry;
 *   }
 *
 * kvm_vcpu_is_good_yield_candidate(): accept the tracked IPI receiver of me
 * (series view: one receiver, pending, within the window), accept a pending
 * interrupt (APICv only: false here), reject !preempted, reject a user-mode
 * preempted vCPU for a kernel-mode spin, accept the rest.  So the receiver
 * wins only when it comes first in scan order.
 *
 * `try` is shared by both rounds and not reset.  v3 skips the relaxed round
 * when round 1 used the budget up ("and we still have retry budget for
 * -ESRCH paths"); with budget left round 2 runs with what remains.
 *
 * "ipi-v2" differs in two places, both as published in v1/v2: the retry
 * gate has no `try > 0`, so round 2 after an exhausted round 1 takes `try`
 * below zero and `!--try` never fires again (the underflow); and it reads
 * the series record cleared by any EOI (series_v2()).
 */
#include "policy.h"
#include "policy_common.h"

namespace vsched {

namespace {

class IpiPolicy final : public YieldPolicy {
public:
    explicit IpiPolicy(PolicyKind kind) : kind_(kind) {}
    PolicyKind kind() const override { return kind_; }
    Decision decide(PolicyContext &c, int me, bool kernel_mode) override;

private:
    bool v3() const { return kind_ == PolicyKind::kIpi; }
    bool is_receiver(const PolicyContext &c, int me, int idx) const
    {
        return v3() ? c.ipi.series_is_receiver(me, idx, c.now)
                    : c.ipi.series_v2_is_receiver(me, idx, c.now);
    }
    bool good_candidate(PolicyContext &c, int me, int idx, bool kernel_mode) const;
    /* The retry gate after round 1. */
    bool retry(const PolicyContext &c, int yielded, int tries) const
    {
        return c.relaxed_boost && yielded <= 0 && (!v3() || tries > 0);
    }

    PolicyKind kind_;
};

bool IpiPolicy::good_candidate(PolicyContext &c, int me, int idx, bool kernel_mode) const
{
    using namespace detail;
    if (is_receiver(c, me, idx)) {
        return true;
    }
    /* kvm_arch_dy_has_pending_interrupt(): APICv only, so false. */
    if (!preempted(c, idx)) {
        return false;
    }
    if (kernel_mode && !preempted_in_kernel(c, idx)) {
        return false;
    }
    return true;
}

Decision IpiPolicy::decide(PolicyContext &c, int me, bool kernel_mode)
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
    bool first_round = true;
    int yielded;
retry:
    yielded = 0;
    for (int i = 0, idx = scan_first(start, n); i < n; i++, idx = scan_next(idx, n)) {
        if (idx == me || !ready_and_runnable(c, idx)) {
            continue;
        }
        if (first_round && !good_candidate(c, me, idx, kernel_mode)) {
            c.tally.strict++;
            continue;
        } else if (!first_round && !preempted(c, idx)) {
            c.tally.not_preempted++;
            continue;
        }
        if (!eligible_for_directed_yield(c, idx)) {
            continue;
        }
        bool stop;
        yielded = attempt(c, me, idx, &tries, &stop);
        if (yielded > 0) {
            d.target = idx;
            d.pass = first_round ? Ctr::yield_strict : Ctr::yield_relaxed;
            break;
        }
        if (stop) {
            break;
        }
    }
    if (first_round && retry(c, yielded, tries)) {
        first_round = false;
        goto retry;
    }
    end_spin(c, me);
    return d;
}

} // namespace

std::unique_ptr<YieldPolicy> make_ipi_policy()
{
    return std::make_unique<IpiPolicy>(PolicyKind::kIpi);
}

std::unique_ptr<YieldPolicy> make_ipi_v2_policy()
{
    return std::make_unique<IpiPolicy>(PolicyKind::kIpiV2);
}

} // namespace vsched
