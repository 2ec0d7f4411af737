/*
 * vsched core: the pieces of kvm_vcpu_on_spin() every policy shares.
 * Internal to the policies.
 */
#ifndef VSCHED_CORE_POLICY_COMMON_H
#define VSCHED_CORE_POLICY_COMMON_H

#include "policy.h"

namespace vsched::detail {

/* kvm_vcpu_set_in_spin_loop(me, true) */
inline void begin_spin(PolicyContext &c, int me)
{
    c.pool.set_flag(me, vflag::kInSpinLoop);
}

/* kvm_vcpu_set_in_spin_loop(me, false); kvm_vcpu_set_dy_eligible(me, false).
 * A yielder is still "inside yield_to()" while it waits in the queue; the
 * grant that brings it back clears the flags. */
inline void end_spin(PolicyContext &c, int me)
{
    if (c.pool.state(me) == VcpuState::kRunning) {
        c.pool.clear_flag(me, vflag::kInSpinLoop | vflag::kDyEligible);
    }
    c.tally.flush(c.ctr);
    c.tally = {};
}

/* The kernel's idx = (start + i) % n without a division per candidate:
 * start is last_boosted + 1 <= n, so one conditional wrap is enough. */
inline int scan_first(int start, int n)
{
    return start >= n ? start - n : start;
}
inline int scan_next(int idx, int n)
{
    return idx + 1 == n ? 0 : idx + 1;
}

inline bool halted_or_stopped(const PolicyContext &c, int idx)
{
    VcpuState s = c.pool.state(idx);
    return s == VcpuState::kHalted || s == VcpuState::kStopped;
}

/*
 * The two checks before the candidate filter:
 *   if (!READ_ONCE(vcpu->ready)) continue;
 *   if (kvm_vcpu_is_blocking(vcpu) && !vcpu_dy_runnable(vcpu)) continue;
 * A halted vCPU that an IPI woke is "ready" (kvm_vcpu_wake_up sets ready)
 * and "blocking" until its thread queues it; it is dy_runnable while the
 * interrupt is still pending (or for NMI/INIT/SIPI).
 */
inline bool ready_and_runnable(PolicyContext &c, int idx)
{
    if (c.pool.has_flag(idx, vflag::kReady) && !halted_or_stopped(c, idx)) {
        return true;
    }
    uint8_t hint = kWakeNone;
    if (c.wake_hint && c.pool.state(idx) == VcpuState::kHalted) {
        hint = c.wake_hint[idx].load(std::memory_order_relaxed);
    }
    if (hint == kWakeNone) {
        c.tally.not_ready++;
        return false;
    }
    bool dy_runnable = hint == kWakeUrgent || c.ipi.has_pending_interrupt(idx, c.now);
    if (!dy_runnable) {
        c.tally.blocking++;
        return false;
    }
    return true;
}

/* kvm_vcpu_eligible_for_directed_yield(): toggles dy_eligible. */
inline bool eligible_for_directed_yield(PolicyContext &c, int idx)
{
    bool in_spin = c.pool.has_flag(idx, vflag::kInSpinLoop);
    bool elig = c.pool.has_flag(idx, vflag::kDyEligible);
    if (in_spin) {
        if (elig) {
            c.pool.clear_flag(idx, vflag::kDyEligible);
        } else {
            c.pool.set_flag(idx, vflag::kDyEligible);
        }
    }
    if (in_spin && !elig) {
        c.tally.not_eligible++;
        return false;
    }
    return true;
}

inline bool preempted(const PolicyContext &c, int idx)
{
    return c.pool.has_flag(idx, vflag::kPreempted);
}

inline bool preempted_in_kernel(const PolicyContext &c, int idx)
{
    return c.pool.has_flag(idx, vflag::kPreemptedInKernel);
}

/* One yield_to() with the kernel's accounting.  Returns the raw result;
 * sets *stop when `if (yielded < 0 && !--try) break;` fires. */
inline int attempt(PolicyContext &c, int me, int idx, int *tries, bool *stop)
{
    c.ctr.add(Ctr::yield_attempts);
    int r = c.mech.yield_to(me, idx);
    *stop = false;
    if (r > 0) {
        c.pool.set_last_boosted(idx);
    } else if (r < 0) {
        c.ctr.add(Ctr::yield_esrch);
        if (!--*tries) {
            c.ctr.add(Ctr::yield_budget_exhausted);
            *stop = true;
        }
    } else {
        c.ctr.add(Ctr::yield_zero);
    }
    return r;
}

} // namespace vsched::detail

#endif
