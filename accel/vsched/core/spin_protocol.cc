/* vsched core: the spin protocol (see spin_protocol.h). */
#include "spin_protocol.h"

#include "policy.h"
#include "yield_mechanism.h"

namespace vsched {

SpinContext::SpinContext(const SpinSetup &s, YieldMechanism &mech)
    : s_(s), mech_(mech), n_(s.pool.nr_vcpus()), start_(s.pool.last_boosted() + 1),
      tries_(s.budget)
{
}

/* kvm_vcpu_set_in_spin_loop(me, true) */
void SpinContext::begin()
{
    s_.pool.set_flag(s_.me, vflag::kInSpinLoop);
}

/* kvm_vcpu_set_in_spin_loop(me, false); kvm_vcpu_set_dy_eligible(me, false).
 * A yielder is still "inside yield_to()" while it waits in the queue; the
 * grant that brings it back clears the flags.  Per-candidate counts are
 * added once here: an atomic RMW per rejected candidate would dominate a
 * full scan. */
void SpinContext::finish()
{
    if (s_.pool.state(s_.me) == VcpuState::kRunning) {
        s_.pool.clear_flag(s_.me, vflag::kInSpinLoop | vflag::kDyEligible);
    }
    const std::pair<uint32_t, Ctr> counts[] = {
        {tally_.not_ready, Ctr::reject_not_ready},
        {tally_.blocking, Ctr::reject_blocking},
        {tally_.user_mode, Ctr::reject_user_mode},
        {tally_.strict, Ctr::reject_strict},
        {tally_.not_preempted, Ctr::reject_not_preempted},
        {tally_.not_eligible, Ctr::reject_not_eligible},
    };
    for (const auto &[n, c] : counts) {
        if (n) {
            s_.ctr.add(c, n);
        }
    }
}

/* A halted vCPU that an IPI woke is "ready" (kvm_vcpu_wake_up sets ready)
 * and "blocking" until its thread queues it; it is dy_runnable while the
 * interrupt is still pending (or for NMI/INIT/SIPI). */
bool SpinContext::ready_and_runnable(int idx)
{
    VcpuState st = s_.pool.state(idx);
    bool halted_or_stopped = st == VcpuState::kHalted || st == VcpuState::kStopped;
    if (s_.pool.has_flag(idx, vflag::kReady) && !halted_or_stopped) {
        return true;
    }
    uint8_t hint = kWakeNone;
    if (s_.wake_hint && st == VcpuState::kHalted) {
        hint = s_.wake_hint[idx].load(std::memory_order_relaxed);
    }
    if (hint == kWakeNone) {
        tally_.not_ready++;
        return false;
    }
    if (hint != kWakeUrgent && !s_.ipi.has_pending_interrupt(idx, s_.now)) {
        tally_.blocking++;
        return false;
    }
    return true;
}

bool SpinContext::preempted(int idx) const
{
    return s_.pool.has_flag(idx, vflag::kPreempted);
}

bool SpinContext::preempted_in_kernel(int idx) const
{
    return s_.pool.has_flag(idx, vflag::kPreemptedInKernel);
}

bool SpinContext::eligible_for_directed_yield(int idx)
{
    bool in_spin = s_.pool.has_flag(idx, vflag::kInSpinLoop);
    bool elig = s_.pool.has_flag(idx, vflag::kDyEligible);
    if (in_spin) {
        if (elig) {
            s_.pool.clear_flag(idx, vflag::kDyEligible);
        } else {
            s_.pool.set_flag(idx, vflag::kDyEligible);
        }
    }
    if (in_spin && !elig) {
        tally_.not_eligible++;
        return false;
    }
    return true;
}

void SpinContext::reject(Reject why)
{
    switch (why) {
    case Reject::kUserMode:
        tally_.user_mode++;
        break;
    case Reject::kStrict:
        tally_.strict++;
        break;
    case Reject::kNotPreempted:
        tally_.not_preempted++;
        break;
    }
}

/*
 *   yielded = kvm_vcpu_yield_to(vcpu);
 *   if (yielded > 0) { WRITE_ONCE(kvm->last_boosted_vcpu, idx); break; }
 *   else if (yielded < 0 && !--try) break;
 */
YieldOutcome SpinContext::try_yield(int idx, int pass)
{
    if (yielded() || idx == s_.me || idx < 0 || idx >= n_ || pass < 0 ||
        pass >= s_.nr_passes) {
        s_.ctr.add(Ctr::yield_refused);
        return YieldOutcome::kStop;
    }
    s_.ctr.add(Ctr::yield_attempts);
    int r = mech_.yield_to(s_.me, idx);
    if (r > 0) {
        s_.pool.set_last_boosted(idx);
        result_ = {idx, pass};
        return YieldOutcome::kYielded;
    }
    if (r == 0) {
        s_.ctr.add(Ctr::yield_zero);
        return YieldOutcome::kNotNow;
    }
    s_.ctr.add(Ctr::yield_esrch);
    if (!--tries_) {
        s_.ctr.add(Ctr::yield_budget_exhausted);
        return YieldOutcome::kStop;
    }
    return YieldOutcome::kNoContention;
}

SpinResult run_spin_decision(YieldPolicy &policy, const SpinSetup &s, YieldMechanism &mech)
{
    if (s.pool.nr_vcpus() < 2 || s.nr_passes == 0) {
        return {};
    }
    SpinContext c(s, mech);
    c.begin();
    policy.decide(c);
    c.finish();
    return c.result_;
}

} // namespace vsched
