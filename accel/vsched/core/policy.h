/*
 * vsched core: directed-yield policies.
 *
 * A policy is a small class that, given a spinning vCPU, picks whom to yield
 * to.  It reads the pool's flags and the IPI tracker and calls
 * YieldMechanism::yield_to(), which does the handoff; it never touches slots
 * or the queue itself (mechanism apart from policy, as in ghOSt/sched_ext).
 *
 * decide() runs under the core mutex.  It must:
 *   - set me's in_spin_loop for the scan and clear it (with dy_eligible) at
 *     the end unless me yielded (then the grant that brings me back clears
 *     them, as KVM clears them when yield_to() returns);
 *   - update pool.last_boosted_vcpu with the index of a successful target.
 */
#ifndef VSCHED_CORE_POLICY_H
#define VSCHED_CORE_POLICY_H

#include <atomic>
#include <cstdint>
#include <memory>

#include "config.h"
#include "counters.h"
#include "ipi_tracker.h"
#include "slot_pool.h"

namespace vsched {

/* yield_to() results, as the kernel's yield_to(). */
inline constexpr int kYieldEsrch = -3; /* -ESRCH: nobody contends */

class YieldMechanism {
public:
    virtual ~YieldMechanism() = default;
    /*
     * >0: me's slot went to target (target was queued).
     *  0: target is running, halted or stopped (costs no budget).
     * <0 (kYieldEsrch): nobody waits for a slot, yielding is pointless.
     */
    virtual int yield_to(int me, int target) = 0;
};

/* Why a halted vCPU was woken (see Scheduler::note_wake). */
enum : uint8_t {
    kWakeNone = 0,
    kWakeIpi = 1,     /* fixed IPI: runnable only while it is still pending */
    kWakeUrgent = 2,  /* NMI/INIT/SIPI/SMI: always runnable (KVM_REQ_NMI) */
};

/* Counters bumped per candidate, kept local to one decision and added to
 * Counters once at its end (an atomic RMW per rejected candidate would
 * dominate a full scan). */
struct DecisionTally {
    uint32_t not_ready = 0, blocking = 0, user_mode = 0, strict = 0;
    uint32_t not_preempted = 0, not_eligible = 0;
    void flush(Counters &c) const;
};

struct PolicyContext {
    SlotPool pool;
    const IpiTracker &ipi;
    Counters &ctr;
    YieldMechanism &mech;
    const std::atomic<uint8_t> *wake_hint; /* per vCPU, may be null */
    uint64_t now; /* for IPI ages: the tracker's (PAUSE) clock */
    bool relaxed_boost;
    int budget;
    DecisionTally tally = {};
};

struct Decision {
    int target = kNone;
    Ctr pass = Ctr::no_target;  /* yield_scan/strict/relaxed/receiver/lock_holder */
};

class YieldPolicy {
public:
    virtual ~YieldPolicy() = default;
    virtual PolicyKind kind() const = 0;
    const char *name() const { return policy_name(kind()); }
    /* kernel_mode: yield_to_kernel_mode (the spin was at CPL 0). */
    virtual Decision decide(PolicyContext &c, int me, bool kernel_mode) = 0;
};

std::unique_ptr<YieldPolicy> make_none_policy();
std::unique_ptr<YieldPolicy> make_vanilla_policy();
std::unique_ptr<YieldPolicy> make_ipi_policy();
std::unique_ptr<YieldPolicy> make_ipi_prio_policy();
std::unique_ptr<YieldPolicy> make_ipi_v2_policy();
std::unique_ptr<YieldPolicy> make_policy(PolicyKind kind);

} // namespace vsched

#endif
