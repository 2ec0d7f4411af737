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
 * The same mechanism runs on a private pool (one VM, owned here) or on a
 * pool in a shared-memory segment (several VMs, shared_pool.h).  The public
 * methods take the VM's *local* vCPU ids; inside, PoolState is indexed by
 * global ids (member base + local id).  Kicks and wakes for another
 * member's vCPUs become remote effects (its mailbox), and only this VM's
 * vCPUs are ever handed a directed-yield slot.
 *
 * REQUIRES: every method runs under the core mutex (or the shared pool's
 * robust mutex), between begin() and the caller's run of the Effects.
 */
#ifndef VSCHED_CORE_SCHEDULER_H
#define VSCHED_CORE_SCHEDULER_H

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "counters.h"
#include "effects.h"
#include "ipi_tracker.h"
#include "yield_mechanism.h"
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
    /* A private pool of nr_slots for one VM of nr_vcpus. */
    Scheduler(int nr_vcpus, int nr_slots, uint64_t slice_ns, Counters &ctr,
              SpinDetector &spin);
    /* Member `member` of a shared pool whose state lives elsewhere (the
     * member must already be joined: its base and size are read here).
     * capacity: the most local vCPUs the VM can have (its member range may
     * grow up to it, see grow()); 0: the member's current size. */
    Scheduler(PoolState *shared, int member, int nr_slots, uint64_t slice_ns, Counters &ctr,
              SpinDetector &spin, int capacity = 0);
    /* An outsider of a shared pool, owning no vCPU (a VM joining repairs
     * and reaps before it is a member): no spin detector to reach. */
    Scheduler(PoolState *shared, int nr_slots, uint64_t slice_ns, Counters &ctr);

    void begin(uint64_t now, Effects *fx)
    {
        now_ = now;
        fx_ = fx;
        wake_asked_ = kNone;
    }

    /* The gate: true if v holds a slot now; false: v is queued.
     * lift_ipi_wake: if an IPI woke v, it queues ahead (lift_queued()). */
    bool acquire(int v, bool lift_ipi_wake = false);
    /* successor (local id or kNone): a halting holder's slot goes to this
     * queued vCPU instead of the queue head, within the lift bound. */
    void release(int v, ReleaseReason why, int successor = kNone);
    /* How often one queued vCPU may be passed by lifts and halt handoffs
     * before it is served (the starvation bound; 0: never passed). */
    void set_lift_bound(unsigned n) { lift_bound_ = n; }
    /* The next yield_to() requeues the yielder ahead (bounded), as CFS
     * keeps a yield_to() caller runnable near the front, not behind every
     * waiter. */
    void set_yielder_lift(bool on) { lift_yielder_ = on; }
    /* Wake preemption (CFS's wakeup preemption, bounded): an IPI-woken v
     * that acquire() has to queue asks this VM's holder that has run
     * longest in its grant, if at least granularity_ns, to leave: the
     * holder is kicked, and its next preempt_if_due() hands its slot to v
     * (a fresh slice) if nobody ahead of v is at the lift bound then and
     * now.  Another VM's holders are never asked. */
    void set_wake_preempt(bool on, uint64_t granularity_ns)
    {
        wake_preempt_ = on;
        wake_gran_ns_ = granularity_ns;
        wake_spinner_first_ = false;
    }
    /* The next acquire() asks a holder that is in a PAUSE loop at
     * pause_now (the spin detector's clock) first, whatever it has run:
     * its slot time is spin waste. */
    void set_wake_spinner_first(uint64_t pause_now)
    {
        wake_spinner_first_ = true;
        wake_pause_now_ = pause_now;
    }
    /* The holder (local id) the last acquire() asked to leave, or kNone;
     * its held_deadline() is now. */
    int take_wake_preempted()
    {
        const int v = wake_asked_;
        wake_asked_ = kNone;
        return v;
    }
    /* Preempt v (a holder) if its slice is over and someone waits, or a
     * wake preemption asked it to leave.
     * cpl: v's privilege level when it left guest code. */
    bool preempt_if_due(int v, int cpl);
    /* Delayed preemption (Uhlig et al. 2004): a holder due for preemption
     * (slice over, someone waits, no wake preemption asked) at an exit in
     * kernel mode (cpl 0) keeps its slot until its first exit in user mode
     * or its first exit at or after deadline + grace_ns, whichever comes
     * first; once per grant.  0: off.  So the queue head waits at most
     * grace_ns longer.  Set before each preempt_if_due(). */
    void set_preempt_delay(uint64_t grace_ns) { delay_grace_ns_ = grace_ns; }
    /* The deadline of the slot v holds, or 0 if it holds none. */
    uint64_t held_deadline(int v) const;
    /* Kick holders whose slice is over while someone waits; returns the
     * absolute time to call again. */
    uint64_t tick();
    int yield_to(int me, int target) override;
    /* Lend until EOI.  With ipi set, the next yield_to() to a target that
     * holds an IPI of the yielder not EOI'd yet (ipi_now: the tracker's
     * clock) lends the slot: the target runs on it with its deadline, as
     * a yield does, and the yielder waits at the queue head (passing
     * everyone queued, so only if nobody is at the lift bound; else a
     * plain yield, lend_bounded).  The lend ends when the target EOIs
     * that vector (return_lend() at its next exit: the slot to the
     * lender's next receiver, or back to the lender, with the rest of its
     * deadline), halts (the slot back to the
     * lender), is preempted at the deadline (lend_expired; the lender at
     * the head gets the next grant), or either side leaves the pool
     * state the lend was made in.  null: plain yields. */
    void set_lend(const IpiTracker *ipi, uint64_t ipi_now)
    {
        lend_ipi_ = ipi;
        lend_ipi_now_ = ipi_now;
    }
    /* Lock-free, on v's own thread: v EOI'd `vector`.  True if that is
     * the vector of v's lend: its return is due (lend_return_due()). */
    bool note_eoi(int v, int vector)
    {
        if (static_cast<unsigned>(v) >= static_cast<unsigned>(cap_) || vector < 0 ||
            lend_vector_[v].load(std::memory_order_relaxed) != vector) {
            return false;
        }
        lend_vector_[v].store(-1, std::memory_order_relaxed);
        lend_due_[v].store(1, std::memory_order_relaxed);
        return true;
    }
    /* Lock-free, on v's own thread: v's exit must take the lock. */
    bool lend_return_due(int v) const
    {
        return static_cast<unsigned>(v) < static_cast<unsigned>(cap_) &&
               lend_due_[v].load(std::memory_order_relaxed) != 0;
    }
    /* Under the lock, at v's exit: if v's lend return is due and the lend
     * still stands, v requeues at the tail (cpl: as preempt_if_due()) and
     * its slot goes, with the rest of its deadline, to the next queued
     * vCPU of this VM that holds an IPI of the lender (chain: the tracker,
     * at ipi_now; a multicast's sender waits for every receiver), the
     * lender still lending; or else back to the lender.  Past the
     * deadline it does nothing (preempt_if_due() ends the lend). */
    bool return_lend(int v, int cpl, const IpiTracker *chain = nullptr, uint64_t ipi_now = 0);
    /* How the next yield_to() marks the yielder (see Config). */
    void set_yielder_marking(bool preempted, int cpl)
    {
        yielder_preempted_ = preempted;
        yielder_cpl_ = cpl;
    }

    /* Lock-free: an interrupt was sent to v (local id; see kWake*) at
     * now (0: unknown); the first one to a vCPU without a slot starts its
     * IPI-to-run latency (ipi_to_run_ns), which its next grant ends. */
    void note_wake(int v, uint8_t kind, uint64_t now = 0, bool track_queued = false)
    {
        uint8_t cur = wake_hint_[v].load(std::memory_order_relaxed);
        if (kind > cur) {
            wake_hint_[v].store(kind, std::memory_order_relaxed);
        }
        if (now && shm_load(state_->state[base_ + v]) !=
                       static_cast<uint8_t>(VcpuState::kRunning)) {
            uint64_t zero = 0;
            ipi_at_[v].compare_exchange_strong(zero, now, std::memory_order_relaxed);
        }
        /* wake-queued: served by the next lock section (serve_queued_ipis). */
        if (track_queued && shm_load(state_->state[base_ + v]) ==
                                static_cast<uint8_t>(VcpuState::kQueued)) {
            ipi_queued_[v].store(1, std::memory_order_relaxed);
            ipi_queued_any_.store(true, std::memory_order_release);
        }
    }
    /* Lock-free: an IPI reached a queued vCPU since the last serve. */
    bool queued_ipis_pending() const
    {
        return ipi_queued_any_.load(std::memory_order_acquire);
    }
    /* wake-queued: every queued vCPU an IPI reached asks a wake preemption
     * as an IPI-woken one does (set_wake_preempt() first); returns the
     * number of asks. */
    int serve_queued_ipis();
    const std::atomic<uint8_t> *wake_hints() const { return wake_hint_.get(); }

    /* Every vCPU of the pool, global ids (private pool: the VM's ids). */
    SlotPool pool() { return SlotPool(*state_); }
    /* This VM's vCPUs only, local ids: what the policies see. */
    SlotPool vm_pool()
    {
        return shared_ ? SlotPool(*state_, member_, base_, n_) : SlotPool(*state_);
    }
    const PoolState &state() const { return *state_; }
    PoolState &mutable_state() { return *state_; }
    bool shared() const { return shared_; }
    int member() const { return member_; }
    int base() const { return base_; }
    int nr_local() const { return n_; }
    /* Local vCPU v has a pool id (plugged within the member's range). */
    bool placed(int v) const { return static_cast<unsigned>(v) < static_cast<unsigned>(n_); }
    /* A shared pool member's range grows to n local vCPUs (a hotplugged
     * vCPU): the ids right after it must be free.  False with *why naming
     * the id in the way and the pool's free ids. */
    bool grow(int n, std::string *why);

    /* Shared pools.  Drop every vCPU of member m (dead, or leaving): its
     * queue entries go, its slots pass to the queue head.  Returns the
     * number of slots it held.  The member entry is then freed. */
    int evict_member(int m);
    /* Member m's process is stopped (SIGSTOP, ptrace): take back every slot
     * it holds whose deadline passed more than grace_ns ago while others
     * wait; its vCPUs go to the queue tail, preempted.  Returns how many. */
    int revoke_expired(int m, uint64_t grace_ns);
    /* Member m's process is stopped: its vCPUs past their slot deadline
     * and its queued ones become stopped (their threads queue again when
     * they run).  Returns the number of slots taken back. */
    int revoke_stopped_member(int m);
    /* Global id g's thread is stopped: the same for g alone. */
    int revoke_stopped_vcpu(int g);
    /* Under the lock, from v's own thread: remember its thread id. */
    void note_thread(int v, int32_t tid)
    {
        if (placed(v)) {
            state_->vcpu_tid[base_ + v] = tid;
        }
    }
    /* After the robust mutex reported EOWNERDEAD: make the structure
     * consistent again from the per-vCPU states (slots, free stack, queue
     * in queued_at order, member count), then hand free slots to waiters.
     * Returns true if anything had to be fixed. */
    bool repair();
    /* Slot time of member m including grants still running at now(); in
     * *overrun (optional) the part held past slot deadlines (a holder
     * that did not leave guest code in time, e.g. descheduled by the host). */
    uint64_t member_slot_time(int m, uint64_t *overrun = nullptr) const;
    uint64_t slice() const { return slice_ns_; }
    uint64_t now() const { return now_; }
    Effects &effects() { return *fx_; }

    /* Leave the shared pool's state for a fresh private one of nr_slots
     * (every vCPU of this VM stopped; the slot it held is no longer ours).
     * REQUIRES: the core mutex, not the pool lock. */
    void use_private_pool(int nr_slots);

    /* Test support: full consistency check of the pool. */
    bool check_invariants(std::string *why) const;

private:
    /* All take global ids. */
    bool set_state(int g, VcpuState to);
    void grant(int g, int slot, uint64_t deadline);
    void take_slot(int slot);
    void pass_slot_on(int slot);
    void sched_out(int g);
    void enqueue(int g);
    /* g lost its slot while runnable: to the tail, marked preempted. */
    void queue_preempted(int g, int cpl);
    void kick_expired_holder();
    /* Mechanisms a policy may ask for (see acquire() and release()). */
    void init_mechanisms();
    int passes(int g) const;
    void count_passes(int from, int to);
    void lift_queued(int g, Ctr lifted, Ctr bounded, TraceEvent ev);
    bool hand_halted_slot(int g, int slot, int successor);
    bool within_bound(int t) const;
    void grant_out_of_turn(int t, int slot, Ctr why);
    void ask_wake_preempt(int g);
    int wake_preempt_choice(int *spinner) const;
    int wake_target(int slot, int holder) const;
    bool hand_woken_slot(int holder, int slot, int t, uint64_t ran);
    void note_ipi_to_run(int g);
    bool lend_blocked(int gt) const;
    void start_lend(int gm, int gt, int slot, int vector);
    int next_receiver(int lender, const IpiTracker &ipi, uint64_t ipi_now, int *vector) const;
    int lender_of(int slot, int holder) const;
    void end_lend(int slot);
    void give_back(int g, int slot, int lender, uint64_t deadline, Ctr why);
    void note_slot_free(int slot);
    void note_slot_taken(int slot);
    bool defer_preemption(int slot, int g, int cpl);
    uint64_t delay_end(int slot, int holder) const;
    /* The slot running vCPU g holds (checked: a running vCPU has one). */
    int held_slot(int g) const
    {
        int slot = pool_.slot_of(g);
        if (slot == kNone || slot >= nslots_) {
            pool_corrupt("slot_of a running vCPU", slot);
        }
        return slot;
    }
    /* Both shared-pool constructors; spin is null for an outsider. */
    Scheduler(PoolState *shared, int member, int nr_slots, uint64_t slice_ns, Counters &ctr,
              SpinDetector *spin, int capacity);
    bool own(int g) const { return static_cast<unsigned>(g - base_) < static_cast<unsigned>(n_); }
    int remote_index(int m, int g) const;
    void fx_signal(int g, void (Effects::*local)(int), void (Effects::*remote)(int, int));
    void fx_kick(int g) { fx_signal(g, &Effects::kick, &Effects::kick_remote); }
    void fx_wake(int g) { fx_signal(g, &Effects::wake, &Effects::wake_remote); }
    void clear_hint(int g)
    {
        if (own(g)) {
            wake_hint_[g - base_].store(kWakeNone, std::memory_order_relaxed);
        }
    }

    std::unique_ptr<PoolState> owned_;
    PoolState *state_;
    SlotPool pool_;
    bool shared_ = false;
    int member_ = 0;
    int base_ = 0;
    int n_ = 0;
    int cap_ = 0;      /* wake_hint_ size: the most local vCPUs */
    int nslots_ = 0;   /* own copies of the pool's sizes (never re-read) */
    int id_space_ = 0;
    uint64_t slice_ns_;
    Counters &ctr_;
    SpinDetector *spin_; /* null for an outsider (no vCPUs of its own) */
    std::unique_ptr<std::atomic<uint8_t>[]> wake_hint_;
    uint64_t now_ = 0;
    bool yielder_preempted_ = false;
    int yielder_cpl_ = 0;
    Effects *fx_ = nullptr;
    /* The lift bound: passes of g in its current wait (valid while
     * queued_at matches the pool's queued_at_ns[g]). */
    struct Passes {
        uint64_t queued_at = 0;
        unsigned n = 0;
    };
    std::unique_ptr<Passes[]> passes_;
    unsigned lift_bound_ = 2;
    bool lift_yielder_ = false;
    /* Per local vCPU: time of the first IPI since it last ran (0: none). */
    std::unique_ptr<std::atomic<uint64_t>[]> ipi_at_;
    /* Per slot: since when it has been free (0: unknown). */
    std::unique_ptr<uint64_t[]> free_since_;
    /* Per slot: a wake preemption's ask of its holder (valid while the
     * holder still holds it from the same grant: another member's process
     * may have taken the slot meanwhile). */
    struct WakeAsk {
        int holder = kNone;
        uint64_t granted_at = 0;
        int target = kNone;
    };
    std::unique_ptr<WakeAsk[]> wake_ask_;
    /* Per local vCPU: an IPI reached it while queued (wake-queued). */
    std::unique_ptr<std::atomic<uint8_t>[]> ipi_queued_;
    std::atomic<bool> ipi_queued_any_{false};
    bool wake_preempt_ = false;
    uint64_t wake_gran_ns_ = 0;
    bool wake_spinner_first_ = false;
    /* Lend until EOI.  Per slot: the lend its holder got (valid while
     * the receiver holds the slot from the same grant and the lender is
     * queued from the same wait: another member's process, a stop or a
     * repair may have moved either).  Only this VM's vCPUs lend, so the
     * record is this process's. */
    struct Lend {
        int receiver = kNone;
        uint64_t granted_at = 0;
        int lender = kNone;
        uint64_t lender_queued_at = 0;
    };
    std::unique_ptr<Lend[]> lend_;
    /* Per local vCPU: the vector whose EOI ends its lend (-1: none), and
     * "that EOI came" (set lock-free on its own thread). */
    std::unique_ptr<std::atomic<int>[]> lend_vector_;
    std::unique_ptr<std::atomic<uint8_t>[]> lend_due_;
    const IpiTracker *lend_ipi_ = nullptr;
    uint64_t lend_ipi_now_ = 0;
    uint64_t wake_pause_now_ = 0;
    int wake_asked_ = kNone;
    /* Per slot: a delayed preemption of its holder in this grant (valid
     * while holder and granted_at match, as WakeAsk). */
    struct PreemptDelay {
        int holder = kNone;
        uint64_t granted_at = 0;
        uint64_t since = 0;  /* when it was deferred */
        uint64_t until = 0;  /* deadline + grace */
        bool active = false; /* false: this grant's grace is used up */
    };
    std::unique_ptr<PreemptDelay[]> delay_;
    uint64_t delay_grace_ns_ = 0;
};

} // namespace vsched

#endif
