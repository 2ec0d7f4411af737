/*
 * vsched core: what the core needs from its host.
 *
 * The core never calls the host while it holds its own mutex: scheduler
 * operations collect kicks, wakes and trace records in an Effects list and
 * Core runs them after unlocking.  So a host may take its own locks (QEMU's
 * BQL) inside kick/wake/trace; the only lock order is host lock -> core lock.
 */
#ifndef VSCHED_CORE_HOST_H
#define VSCHED_CORE_HOST_H

#include <cstdint>

namespace vsched {

/* Trace events; the numbers are part of the C facade (VSCHED_TRACE_*). */
enum class TraceEvent : int {
    kSpinDetected = 0,  /* vcpu spun; arg = cpl of the spin */
    kYield,             /* a pass yielded vcpu -> target; arg = yield_trace_arg */
    kReceiverHit,       /* the target held an IPI of vcpu (our view) */
    kNoTarget,          /* spin decision found nobody; arg = new window ns */
    kHandoff,           /* slot handed vcpu -> target; arg = slice left ns */
    kPreempt,           /* vcpu preempted at slice expiry; arg = cpl */
    kAcquireWait,       /* vcpu queued for a slot; arg = queue length */
    kGrant,             /* vcpu got a slot; arg = ns it waited */
    kRelease,           /* vcpu released; arg = reason */
    kIpiLift,           /* IPI-woken vcpu queued ahead; arg = vCPUs passed */
    kHaltHandoff,       /* halting vcpu's slot -> target, its IPI receiver */
    kIpiToRun,          /* vcpu got a slot; arg = ns since the first IPI to it */
    kYielderLift,       /* directed-yield yielder requeued ahead; arg = passed */
    kWakePreempt,       /* holder vcpu's slot -> IPI-woken target; arg = ns it ran */
    kPreemptDelay,      /* target: 0 deferred (arg = ns past deadline), 1 preempted
                         * in user mode, 2 grace over (arg = ns kept) */
    kLend,              /* vcpu lent its slot to target, its IPI receiver; arg = vector */
    kLendReturn,        /* receiver vcpu handed the slot back to target; arg = ns left */
    kPvYield,           /* guest's PV sched yield vcpu -> target; arg = 1 handed, 0 miss */
    kCount
};
inline constexpr int kNumTraceEvents = static_cast<int>(TraceEvent::kCount);
const char *trace_event_name(int event);

/* kYield's arg: the policy id and the pass index (policy_registry.h). */
inline constexpr int64_t yield_trace_arg(int policy, int pass)
{
    return (static_cast<int64_t>(policy) << 16) | pass;
}
inline constexpr int yield_trace_policy(int64_t arg) { return static_cast<int>(arg >> 16); }
inline constexpr int yield_trace_pass(int64_t arg) { return static_cast<int>(arg & 0xffff); }

class HostInterface {
public:
    virtual ~HostInterface() = default;
    /* Monotonic ns. */
    virtual uint64_t now_ns() = 0;
    /* Make a vCPU that runs guest code leave it soon (QEMU: cpu_exit). */
    virtual void kick(int vcpu) = 0;
    /* Wake a vCPU that waits for a slot: it has just been given one. */
    virtual void wake(int vcpu) = 0;
    /* Block the calling vCPU thread until wake(vcpu) or deadline_ns.
     * Only standalone users (tests, benchmarks) call this; QEMU waits on
     * its own halt_cond instead. */
    virtual void wait(int vcpu, uint64_t deadline_ns) = 0;
    /* Clock of the PAUSE/MWAIT hook; only compared with itself (spin gap
     * and window), so a host may return something cheaper than now_ns(). */
    virtual uint64_t pause_now_ns() { return now_ns(); }
    /* Optional decision trace. */
    virtual void trace(TraceEvent, int /*vcpu*/, int /*target*/, int64_t /*arg*/) {}
};

} // namespace vsched

#endif
