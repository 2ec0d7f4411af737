/*
 * vsched core: the slot scheduler (mechanism).
 *
 * A vCPU runs guest code only while it holds one of P slots.  Slots go to
 * the run queue in FIFO order; a grant lasts one slice, after which the
 * holder is preempted if (and only if) someone is queued.  A directed yield
 * hands the yielder's slot, with the rest of its slice, to a queued target;
 * the yielder goes to the queue tail.  Because the slot's deadline is kept,
 * a chain of handoffs never delays the queue head: it gets a slot at the
 * next expiry, as without the yield.
 *
 * REQUIRES: every method runs under the core mutex, between begin() and the
 * caller's run of the collected Effects.
 */
#ifndef VSCHED_CORE_SCHEDULER_H
#define VSCHED_CORE_SCHEDULER_H

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "counters.h"
#include "effects.h"
#include "policy.h"
#include "slot_pool.h"
#include "spin_detector.h"

namespace vsched {

enum class ReleaseReason : int {
    kHalt = 0,   /* HLT without work: slot freed, not queued */
    kStop = 1,   /* stop/debug/unplug: slot and queue entry dropped */
    kYield = 2,  /* voluntary: requeue at the tail if anyone waits */
};

class Scheduler final : public YieldMechanism {
public:
    Scheduler(int nr_vcpus, int nr_slots, uint64_t slice_ns, Counters &ctr,
              SpinDetector &spin);

    void begin(uint64_t now, Effects *fx)
    {
        now_ = now;
        fx_ = fx;
    }

    /* The gate: true if v holds a slot now; false: v is queued. */
    bool acquire(int v);
    void release(int v, ReleaseReason why);
    /* Preempt v (a holder) if its slice is over and someone waits.
     * cpl: v's privilege level when it left guest code. */
    bool preempt_if_due(int v, int cpl);
    /* Kick holders whose slice is over while someone waits; returns the
     * absolute time to call again. */
    uint64_t tick();
    int yield_to(int me, int target) override;
    /* How the next yield_to() marks the yielder (see Config). */
    void set_yielder_marking(bool preempted, int cpl)
    {
        yielder_preempted_ = preempted;
        yielder_cpl_ = cpl;
    }

    /* Lock-free: an interrupt was sent to v (see kWake*). */
    void note_wake(int v, uint8_t kind)
    {
        uint8_t cur = wake_hint_[v].load(std::memory_order_relaxed);
        if (kind > cur) {
            wake_hint_[v].store(kind, std::memory_order_relaxed);
        }
    }
    const std::atomic<uint8_t> *wake_hints() const { return wake_hint_.get(); }

    SlotPool pool() { return SlotPool(*state_); }
    const PoolState &state() const { return *state_; }
    uint64_t slice() const { return slice_ns_; }
    uint64_t now() const { return now_; }
    Effects &effects() { return *fx_; }

    /* Test support: full consistency check of the pool. */
    bool check_invariants(std::string *why) const;

private:
    bool set_state(int v, VcpuState to);
    void grant(int v, int slot, uint64_t deadline);
    void pass_slot_on(int slot);
    void sched_out(int v);
    void enqueue(int v);
    void kick_expired_holder();

    std::unique_ptr<PoolState> state_;
    SlotPool pool_;
    uint64_t slice_ns_;
    Counters &ctr_;
    SpinDetector &spin_;
    std::unique_ptr<std::atomic<uint8_t>[]> wake_hint_;
    uint64_t now_ = 0;
    bool yielder_preempted_ = false;
    int yielder_cpl_ = 0;
    Effects *fx_ = nullptr;
};

} // namespace vsched

#endif
