/*
 * vsched core: counters for every decision path, and the one-line JSON dump.
 *
 * Counters are relaxed atomics: most are bumped under the scheduler mutex,
 * the IPI ones from the (lock-free) IPI hooks.  The PAUSE-path counters
 * (pause_events, mwait_events, spins_detected) live per vCPU in the spin
 * detector so the hook never writes a shared cache line; Core sums them into
 * a snapshot.
 *
 * After the fixed table come the per-pass counters, "yield_<pass>", one per
 * distinct pass name in the policy registry (policy_registry.h), at
 * indices kNumCounters + slot.  counter_count() covers both.
 */
#ifndef VSCHED_CORE_COUNTERS_H
#define VSCHED_CORE_COUNTERS_H

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "policy_registry.h"

namespace vsched {

/* X(name, description) */
#define VSCHED_COUNTERS(X)                                                   \
    X(pause_events, "PAUSE instructions seen by the hook")                   \
    X(mwait_events, "MWAIT (idle) events, never counted as spins")           \
    X(spins_detected, "PAUSE loops longer than the window (PLE exits)")      \
    X(spin_decisions, "spin decisions run by a policy")                      \
    X(spins_ignored, "spins seen under policy none (no decision)")           \
    X(spins_dropped, "spins whose vCPU lost its slot before deciding")       \
    X(ipi_calls, "IPI hook calls")                                           \
    X(ipi_unicast, "fixed IPIs to one other vCPU, no shorthand")             \
    X(ipi_multicast, "fixed IPIs to several vCPUs, no shorthand")            \
    X(ipi_shorthand, "fixed IPIs sent with the all / all-but-self shorthand")\
    X(ipi_self, "self IPIs (ignored)")                                       \
    X(ipi_nonfixed, "NMI/INIT/SIPI/SMI and other non-fixed IPIs")            \
    X(ipi_series_tracked, "IPIs the series would record")                    \
    X(ipi_series_missed, "fixed IPIs to others the series misses")           \
    X(ipi_untracked, "IPIs not recorded because tracking is off")            \
    X(ipi_receivers_recorded, "receiver entries recorded (multicast incl.)") \
    X(ipi_entries_evicted, "receiver entries evicted by a newer IPI")        \
    X(irq_accepts, "interrupt acceptances (IRR->ISR)")                       \
    X(eois, "EOIs")                                                          \
    X(eoi_cleared, "receiver entries cleared by a matching-vector EOI")      \
    X(eoi_series_cleared, "sender pending cleared by v3's matching-vector EOI")\
    X(eoi_series_v2_cleared, "sender pending cleared by v1/v2's any-EOI rule")\
    X(reject_not_ready, "candidates rejected: not ready")                    \
    X(reject_blocking, "candidates rejected: halted without work")           \
    X(reject_user_mode, "candidates rejected: preempted in user mode")       \
    X(reject_strict, "candidates rejected by the strict filter")             \
    X(reject_not_preempted, "candidates rejected by the relaxed filter")     \
    X(reject_not_eligible, "candidates rejected: dy_eligible toggle")        \
    X(yield_attempts, "yield_to attempts")                                   \
    X(yield_zero, "yield_to returned 0 (running or halted target)")          \
    X(yield_esrch, "yield_to returned -ESRCH (no contention)")               \
    X(yield_budget_exhausted, "scans stopped by the -ESRCH budget")          \
    X(yield_refused, "try_yield calls refused (self, twice, bad pass): a bug")\
    X(yield_receiver_hit_series, "yields to me's receiver in the series view")\
    X(yield_receiver_hit_any, "yields to a holder of an un-EOId IPI of me (our view)")\
    X(no_target, "spin decisions that yielded nothing")                      \
    X(handoffs, "slots handed to a directed-yield target")                   \
    X(grants_immediate, "acquires that found a free slot")                   \
    X(grants_from_queue, "slots given to the queue head")                    \
    X(acquire_wait, "acquires that had to queue")                            \
    X(acquire_spurious, "acquires by a vCPU still queued")                   \
    X(slot_waits, "waits that ended with a slot")                            \
    X(slot_wait_ns, "total ns spent queued before a slot")                   \
    X(slot_wait_max_ns, "longest single wait for a slot, ns")                \
    X(preemptions, "slice-expiry preemptions")                               \
    X(slice_renewals, "expired slices renewed because nobody waited")        \
    X(exec_enters_unlocked, "gate passes by a vCPU holding its slot (no lock)")\
    X(exec_exits_unlocked, "exits from guest code with nothing due (no lock)")\
    X(kicks, "kicks sent to slot holders")                                   \
    X(wakes, "wakes sent to vCPUs given a slot")                             \
    X(voluntary_yields, "release(YIELD) that requeued the vCPU")             \
    X(release_halt, "releases: halt")                                        \
    X(release_stop, "releases: stop")                                        \
    X(queue_removed, "queued vCPUs removed by halt/stop")                    \
    X(ple_window_grow, "spin windows grown after a fruitless spin")          \
    X(ple_window_reset, "spin windows reset on sched-out")                   \
    X(illegal_transitions, "state transitions refused (API misuse)")         \
    X(pool_members_reaped, "shared pool: dead VMs reaped by this process")   \
    X(pool_slots_reclaimed, "shared pool: slots taken back from dead VMs")   \
    X(pool_remote_wakes, "shared pool: wakes posted to another VM")          \
    X(pool_remote_kicks, "shared pool: kicks posted to another VM")          \
    X(pool_mailbox_wakes, "shared pool: wakes received in the mailbox")      \
    X(pool_mailbox_kicks, "shared pool: kicks received in the mailbox")      \
    X(pool_owner_dead, "shared pool: lock recovered from a dead owner")      \
    X(pool_slots_revoked, "shared pool: expired slots taken from a stopped VM")\
    X(pool_stale_recovered, "shared pool: stale pool reinitialised at start")\
    X(pool_detached, "shared pool: left a corrupt pool for private slots")\
    X(pool_file_lost, "shared pool: its file was removed or replaced from outside")\
    X(spin_ns, "time inside PAUSE loops (PAUSE-to-PAUSE gaps within a spin), ns")\
    X(ipi_to_run, "IPI receivers that were not running and then got a slot")\
    X(ipi_to_run_ns, "total ns from an IPI to a non-running receiver to its grant")\
    X(ipi_to_run_max_ns, "longest IPI-to-grant latency, ns")\
    X(slot_idle_ns, "total ns slots sat free (this pool view) before a grant")\
    X(ipi_wake_lifts, "IPI-woken vCPUs queued ahead of others (ipi-lift)")\
    X(ipi_wake_lift_bounded, "lifts placed behind a vCPU already passed lift-bound times")\
    X(halt_handoffs, "halting vCPUs' slots handed to their IPI receiver (halt-handoff)")\
    X(halt_handoff_bounded, "halt handoffs refused by the lift bound")\
    X(yielder_lifts, "directed-yield yielders requeued ahead of others (yield-lift)")\
    X(yielder_lift_bounded, "yielder lifts placed behind a vCPU at the lift bound")\
    X(wake_preempt_asks, "IPI-woken vCPUs that asked a long-running holder to leave (wake-preempt)")\
    X(wake_preempts, "slots handed from a preempted holder to an IPI-woken vCPU (wake-preempt)")\
    X(wake_preempt_bounded, "wake preemptions refused by the lift bound")\
    X(wake_preempt_spinners, "wake preemption asks of a spinning holder (wake-spinners)")\
    X(wake_queued_ipis, "IPIs to queued vCPUs served by wake-queued (each may ask a wake preemption)")\
    X(preempt_delays, "due preemptions deferred because the holder was in kernel mode (preempt-delay)")\
    X(preempt_delay_user, "deferred holders preempted at their first exit in user mode")\
    X(preempt_delay_expired, "deferred holders preempted in kernel mode when the grace ran out")\
    X(preempt_delay_ns, "total ns deferred holders kept their slot from the deferral to their preemption")\
    X(lends, "directed yields that lent the slot to the yielder's IPI receiver (yield-lend)")\
    X(lend_returns, "lent slots handed back to the lender at the receiver's EOI")\
    X(lend_chains, "lent slots passed on at a receiver's EOI to the lender's next receiver")\
    X(lend_halt_returns, "lent slots handed back to the lender when the receiver halted")\
    X(lend_expired, "lends ended by the slot's deadline (the receiver preempted)")\
    X(lend_bounded, "lends refused by the lift bound (plain yields instead)")\
    X(pv_yield_requests, "the guest's PV sched yield hypercalls taken at exit (pv-sched-yield)")\
    X(pv_yields, "PV sched yields that handed the caller's slot to the queued target")\
    X(pv_yield_misses, "PV sched yields with no hand-off: target not queued, invalid or self, or nobody waiting")

enum class Ctr : int {
#define VSCHED_CTR_ENUM(name, desc) name,
    VSCHED_COUNTERS(VSCHED_CTR_ENUM)
#undef VSCHED_CTR_ENUM
    kCount
};
inline constexpr int kNumCounters = static_cast<int>(Ctr::kCount);
/* Room for the fixed table and every possible pass counter. */
inline constexpr int kMaxCounters = kNumCounters + kMaxPassCounters;

/* Fixed counters, then the registry's yield_<pass> counters. */
int counter_count();
const char *counter_name(int i);
const char *counter_description(int i);

class Counters {
public:
    Counters() { reset(); }
    void add(Ctr c, uint64_t n = 1)
    {
        v_[idx(c)].fetch_add(n, std::memory_order_relaxed);
    }
    void max(Ctr c, uint64_t n)
    {
        uint64_t cur = v_[idx(c)].load(std::memory_order_relaxed);
        while (n > cur &&
               !v_[idx(c)].compare_exchange_weak(cur, n, std::memory_order_relaxed)) {
        }
    }
    uint64_t get(Ctr c) const { return v_[idx(c)].load(std::memory_order_relaxed); }
    void set(Ctr c, uint64_t n) { v_[idx(c)].store(n, std::memory_order_relaxed); }
    /* A yield by the pass with counter slot `slot` (policy_pass_counter). */
    void add_pass(int slot) { v_[kNumCounters + slot].fetch_add(1, std::memory_order_relaxed); }
    /* Any counter by index (< counter_count()). */
    uint64_t get_index(int i) const { return v_[i].load(std::memory_order_relaxed); }
    void reset();

private:
    static int idx(Ctr c) { return static_cast<int>(c); }
    std::atomic<uint64_t> v_[kMaxCounters];
};

/* A plain copy, e.g. for the JSON dump and for invariant checks. */
struct CounterSnapshot {
    uint64_t v[kMaxCounters] = {};
    uint64_t operator[](Ctr c) const { return v[static_cast<int>(c)]; }
    /* yield_<pass> by pass name (0 if no policy has that pass). */
    uint64_t yields(std::string_view pass) const;
    /* The sum of every yield_<pass>: one per handoff. */
    uint64_t yields_all_passes() const;
};

/* {"pause_events":1,...} on one line, no trailing newline. */
std::string counters_json(const CounterSnapshot &s);

} // namespace vsched

#endif
