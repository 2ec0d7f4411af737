/*
 * vsched core: directed-yield policies.
 *
 * A policy is one file: a class that, given a spinning vCPU, looks at the
 * candidates and yields through SpinContext::try_yield(), plus one
 * VSCHED_REGISTER_POLICY line (policy_registry.h) with its name, factory
 * and pass names.  The protocol around the decision (in_spin_loop,
 * dy_eligible, the -ESRCH budget, last_boosted_vcpu, counters, traces) is
 * the core's (spin_protocol.h); a policy cannot skip it.
 *
 * decide() runs under the core mutex.
 */
#ifndef VSCHED_CORE_POLICY_H
#define VSCHED_CORE_POLICY_H

#include <memory>

#include "policy_registry.h"
#include "spin_protocol.h"

namespace vsched {

class YieldPolicy {
public:
    virtual ~YieldPolicy() = default;
    virtual void decide(SpinContext &c) = 0;

    /* Scheduler mechanisms a policy may use (scheduler.h); none by
     * default.  An IPI-woken vCPU queues ahead of others (bounded). */
    virtual bool lifts_ipi_wakes() const { return false; }
    /* A yielder requeues ahead of others (bounded) instead of the tail. */
    virtual bool lifts_yielders() const { return false; }
    /* An IPI-woken vCPU that finds no free slot takes the slot of the
     * VM's longest-running holder (bounded, at least a granularity). */
    virtual bool preempts_for_ipi_wakes() const { return false; }
    /* A holder due for preemption in kernel mode runs on until it returns
     * to user mode, within a grace (preempt-delay): it may hold a lock. */
    virtual bool delays_kernel_preemption() const { return false; }
    /* A yield to a vCPU holding the yielder's IPI lends the slot until
     * that vCPU EOIs it (the yielder waits at the queue head, bounded). */
    virtual bool lends_until_eoi() const { return false; }
    /* The queued vCPU that should get the slot `me` frees by halting, or
     * kNone for the queue head.  Under the core lock. */
    virtual int halt_successor(const IpiTracker &, int /*me*/, uint64_t /*now*/) const
    {
        return kNone;
    }
};

} // namespace vsched

#endif
