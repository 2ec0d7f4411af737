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

namespace vsched {

namespace {

enum Pass { kStrict, kRelaxed };

class IpiPolicy final : public YieldPolicy {
public:
    explicit IpiPolicy(bool v3) : v3_(v3) {}
    void decide(SpinContext &c) override;

private:
    bool is_receiver(const SpinContext &c, int idx) const
    {
        return v3_ ? c.ipi().series_is_receiver(c.me(), idx, c.now())
                   : c.ipi().series_v2_is_receiver(c.me(), idx, c.now());
    }
    bool good_candidate(const SpinContext &c, int idx) const;
    /* One round; returns true when it yielded. */
    bool round(SpinContext &c, bool first_round);

    bool v3_;
};

bool IpiPolicy::good_candidate(const SpinContext &c, int idx) const
{
    if (is_receiver(c, idx)) {
        return true;
    }
    /* kvm_arch_dy_has_pending_interrupt(): APICv only, so false. */
    if (!c.preempted(idx)) {
        return false;
    }
    if (c.kernel_mode() && !c.preempted_in_kernel(idx)) {
        return false;
    }
    return true;
}

bool IpiPolicy::round(SpinContext &c, bool first_round)
{
    const int n = c.nr_vcpus();
    for (int i = 0, idx = c.scan_first(); i < n; i++, idx = c.scan_next(idx)) {
        if (idx == c.me() || !c.ready_and_runnable(idx)) {
            continue;
        }
        if (first_round && !good_candidate(c, idx)) {
            c.reject(Reject::kStrict);
            continue;
        } else if (!first_round && !c.preempted(idx)) {
            c.reject(Reject::kNotPreempted);
            continue;
        }
        if (!c.eligible_for_directed_yield(idx)) {
            continue;
        }
        YieldOutcome r = c.try_yield(idx, first_round ? kStrict : kRelaxed);
        if (r == YieldOutcome::kYielded) {
            return true;
        }
        if (r == YieldOutcome::kStop) {
            break;
        }
    }
    return false;
}

void IpiPolicy::decide(SpinContext &c)
{
    if (round(c, true)) {
        return;
    }
    /* The retry gate: v3 adds `try > 0`. */
    if (c.relaxed_boost() && (!v3_ || c.budget_left() > 0)) {
        round(c, false);
    }
}

std::unique_ptr<YieldPolicy> make_ipi()
{
    return std::make_unique<IpiPolicy>(true);
}

std::unique_ptr<YieldPolicy> make_ipi_v2()
{
    return std::make_unique<IpiPolicy>(false);
}

} // namespace

VSCHED_REGISTER_POLICY(ipi, "ipi", make_ipi, "strict", "relaxed");
VSCHED_REGISTER_POLICY(ipi_v2, "ipi-v2", make_ipi_v2, "strict", "relaxed");

} // namespace vsched
