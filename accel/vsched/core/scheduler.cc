/* vsched core: slot scheduler mechanism. */
#include "scheduler.h"

#include <algorithm>
#include <vector>

namespace vsched {

Scheduler::Scheduler(int nr_vcpus, int nr_slots, uint64_t slice_ns, Counters &ctr,
                     SpinDetector &spin)
    : owned_(new PoolState), state_(owned_.get()), pool_(*state_), n_(nr_vcpus),
      cap_(nr_vcpus), nslots_(nr_slots), id_space_(nr_vcpus), slice_ns_(slice_ns), ctr_(ctr),
      spin_(&spin),
      wake_hint_(new std::atomic<uint8_t>[nr_vcpus])
{
    init_mechanisms();
    pool_.init(nr_vcpus, nr_slots);
    for (int v = 0; v < nr_vcpus; v++) {
        wake_hint_[v].store(kWakeNone, std::memory_order_relaxed);
    }
}

Scheduler::Scheduler(PoolState *shared, int member, int nr_slots, uint64_t slice_ns,
                     Counters &ctr, SpinDetector &spin, int capacity)
    : Scheduler(shared, member, nr_slots, slice_ns, ctr, &spin, capacity)
{
}

Scheduler::Scheduler(PoolState *shared, int nr_slots, uint64_t slice_ns, Counters &ctr)
    : Scheduler(shared, kNone, nr_slots, slice_ns, ctr, nullptr, 0)
{
}

Scheduler::Scheduler(PoolState *shared, int member, int nr_slots, uint64_t slice_ns,
                     Counters &ctr, SpinDetector *spin, int capacity)
    : state_(shared), pool_(*shared), shared_(true), member_(member),
      base_(member >= 0 ? shm_load(shared->member[member].base) : 0),
      n_(member >= 0 ? shm_load(shared->member[member].nr_vcpus) : 0),
      cap_(std::max(capacity, n_)), nslots_(nr_slots), id_space_(kMaxVcpus),
      slice_ns_(slice_ns), ctr_(ctr), spin_(spin),
      wake_hint_(new std::atomic<uint8_t>[cap_ > 0 && cap_ <= kMaxVcpus ? cap_ : 1])
{
    init_mechanisms();
    if (base_ < 0 || n_ < 0 || n_ > kMaxVcpus - base_ || cap_ > kMaxVcpus || nr_slots < 1 ||
        nr_slots > kMaxSlots) {
        pool_corrupt("member range", base_);
    }
    for (int v = 0; v < cap_; v++) {
        wake_hint_[v].store(kWakeNone, std::memory_order_relaxed);
    }
}

/* g's index inside member m, checked against m's shared vCPU range (both
 * are shared data another process may have written). */
int Scheduler::remote_index(int m, int g) const
{
    int64_t local = int64_t{g} - shm_load(state_->member[m].base);
    if (local < 0 || local >= shm_load(state_->member[m].nr_vcpus) || local >= kMaxVcpus) {
        pool_corrupt("member base", local);
    }
    return static_cast<int>(local);
}

/* A kick or wake for g: local, or into its member's mailbox. */
void Scheduler::fx_signal(int g, void (Effects::*local)(int), void (Effects::*remote)(int, int))
{
    if (own(g)) {
        (fx_->*local)(g - base_);
        return;
    }
    int m = pool_.member_of(g);
    if (m >= 0) {
        (fx_->*remote)(m, remote_index(m, g));
    }
}

bool Scheduler::set_state(int g, VcpuState to)
{
    if (!pool_.set_state(g, to)) {
        ctr_.add(Ctr::illegal_transitions);
        return false;
    }
    return true;
}

void Scheduler::enqueue(int g)
{
    if (set_state(g, VcpuState::kQueued)) {
        pool_.enqueue_tail(g);
        state_->queued_at_ns[g] = now_;
    }
}

void Scheduler::grant(int g, int slot, uint64_t deadline)
{
    uint64_t waited = 0;
    int m = pool_.member_of(g);
    if (pool_.state(g) == VcpuState::kQueued) {
        pool_.remove(g);
        uint64_t at = state_->queued_at_ns[g];
        waited = now_ > at ? now_ - at : 0;
        ctr_.add(Ctr::slot_waits);
        ctr_.add(Ctr::slot_wait_ns, waited);
        ctr_.max(Ctr::slot_wait_max_ns, waited);
        state_->steal_ns[g] += waited;
        if (m >= 0) {
            MemberState &ms = state_->member[m];
            ms.slot_waits++;
            ms.slot_wait_ns += waited;
            ms.slot_wait_max_ns = std::max(ms.slot_wait_max_ns, waited);
        }
    }
    set_state(g, VcpuState::kRunning);
    pool_.assign(slot, g, deadline);
    state_->slot_granted_at_ns[slot] = now_;
    if (m >= 0) {
        state_->member[m].grants++;
    }
    /* kvm_sched_in(): preempted = ready = false.  A yielder coming back
     * leaves kvm_vcpu_on_spin(): in_spin_loop = dy_eligible = false. */
    pool_.clear_flag(g, vflag::kReady | vflag::kPreempted | vflag::kPreemptedInKernel |
                            vflag::kInSpinLoop | vflag::kDyEligible);
    clear_hint(g);
    passes_[g].n = 0;
    if (own(g)) {
        fx_->trace(TraceEvent::kGrant, g - base_, slot, static_cast<int64_t>(waited));
        note_ipi_to_run(g);
    }
}

/* Unassign a held slot and account its grant to the holder's member. */
void Scheduler::take_slot(int slot)
{
    int g = pool_.slot_owner(slot);
    if (g == kNone) {
        pool_corrupt("owner of a held slot", slot);
    }
    int m = pool_.member_of(g);
    if (m >= 0) {
        uint64_t at = state_->slot_granted_at_ns[slot];
        uint64_t dl = std::max(at, state_->slot_deadline_ns[slot]);
        state_->member[m].slot_time_ns += now_ > at ? now_ - at : 0;
        state_->member[m].overrun_ns += now_ > dl ? now_ - dl : 0;
    }
    wake_ask_[slot] = WakeAsk{};
    delay_[slot] = PreemptDelay{};
    end_lend(slot);
    pool_.unassign(slot);
}

uint64_t Scheduler::member_slot_time(int m, uint64_t *overrun) const
{
    uint64_t t = state_->member[m].slot_time_ns;
    uint64_t o = state_->member[m].overrun_ns;
    for (int s = 0; s < nslots_; s++) {
        int g = pool_.slot_owner(s);
        if (g != kNone && pool_.member_of(g) == m && now_ > state_->slot_granted_at_ns[s]) {
            t += now_ - state_->slot_granted_at_ns[s];
            uint64_t dl = std::max(state_->slot_granted_at_ns[s], state_->slot_deadline_ns[s]);
            o += now_ > dl ? now_ - dl : 0;
        }
    }
    if (overrun) {
        *overrun = o;
    }
    return t;
}

void Scheduler::pass_slot_on(int slot)
{
    int h = pool_.head();
    if (h == kNone) {
        pool_.put_free_slot(slot);
        note_slot_free(slot);
        return;
    }
    grant(h, slot, now_ + slice_ns_);
    ctr_.add(Ctr::grants_from_queue);
    ctr_.add(Ctr::wakes);
    fx_wake(h);
}

void Scheduler::sched_out(int g)
{
    if (own(g) && spin_->reset_window(g - base_)) {
        ctr_.add(Ctr::ple_window_reset);
    }
}

void Scheduler::kick_expired_holder()
{
    int best = kNone;
    for (int s = 0; s < nslots_; s++) {
        if (pool_.slot_owner(s) == kNone || state_->slot_kicked_at_ns[s] != 0 ||
            state_->slot_deadline_ns[s] > now_) {
            continue;
        }
        if (best == kNone || state_->slot_deadline_ns[s] < state_->slot_deadline_ns[best]) {
            best = s;
        }
    }
    if (best != kNone) {
        state_->slot_kicked_at_ns[best] = std::max<uint64_t>(now_, 1);
        ctr_.add(Ctr::kicks);
        int owner = pool_.slot_owner(best);
        if (owner != kNone) {
            fx_kick(owner);
        }
    }
}

bool Scheduler::acquire(int v, bool lift_ipi_wake)
{
    if (!placed(v)) {
        return false; /* no pool id (a hotplug the glue did not grow for) */
    }
    const int g = base_ + v;
    switch (pool_.state(g)) {
    case VcpuState::kRunning:
        return true;
    case VcpuState::kQueued:
        ctr_.add(Ctr::acquire_spurious);
        return false;
    case VcpuState::kHalted:
    case VcpuState::kStopped:
        break;
    }
    /* Woken (kvm_vcpu_wake_up): ready, not preempted. */
    pool_.set_flag(g, vflag::kReady);
    pool_.clear_flag(g, vflag::kPreempted | vflag::kPreemptedInKernel);
    const bool ipi_woken = wake_hint_[v].load(std::memory_order_relaxed) != kWakeNone;
    clear_hint(g);
    int slot = pool_.take_free_slot();
    if (slot != kNone) {
        note_slot_taken(slot);
        grant(g, slot, now_ + slice_ns_);
        ctr_.add(Ctr::grants_immediate);
        return true;
    }
    enqueue(g);
    if (lift_ipi_wake && ipi_woken) {
        lift_queued(g, Ctr::ipi_wake_lifts, Ctr::ipi_wake_lift_bounded, TraceEvent::kIpiLift);
    }
    if (wake_preempt_ && ipi_woken) {
        ask_wake_preempt(g);
    }
    ctr_.add(Ctr::acquire_wait);
    fx_->trace(TraceEvent::kAcquireWait, v, -1, pool_.queue_len());
    kick_expired_holder();
    return false;
}

void Scheduler::release(int v, ReleaseReason why, int successor)
{
    if (!placed(v)) {
        return;
    }
    const int g = base_ + v;
    VcpuState s = pool_.state(g);
    int cpl;
    if (why == ReleaseReason::kYield) {
        if (s != VcpuState::kRunning || pool_.queue_len() == 0) {
            return;
        }
        int slot = held_slot(g);
        take_slot(slot);
        enqueue(g);
        pool_.set_flag(g, vflag::kReady);
        sched_out(g);
        ctr_.add(Ctr::voluntary_yields);
        fx_->trace(TraceEvent::kRelease, v, -1, static_cast<int64_t>(why));
        pass_slot_on(slot);
        return;
    }
    const VcpuState to = why == ReleaseReason::kHalt ? VcpuState::kHalted : VcpuState::kStopped;
    if (spin_->take_pending(v, &cpl)) {
        ctr_.add(Ctr::spins_dropped);
    }
    if (s == VcpuState::kRunning) {
        int slot = held_slot(g);
        /* A lent slot goes back to its lender before any halt successor:
         * it was the lender's, and the receiver is done with it. */
        const int lender = why == ReleaseReason::kHalt ? lender_of(slot, g) : kNone;
        const uint64_t deadline = state_->slot_deadline_ns[slot];
        take_slot(slot);
        set_state(g, to);
        sched_out(g);
        if (lender != kNone && within_bound(lender)) {
            give_back(g, slot, lender, deadline, Ctr::lend_halt_returns);
        } else if (why != ReleaseReason::kHalt || !hand_halted_slot(g, slot, successor)) {
            pass_slot_on(slot);
        }
    } else if (s == VcpuState::kQueued) {
        pool_.remove(g);
        set_state(g, to);
        ctr_.add(Ctr::queue_removed);
    } else if (s != to) {
        set_state(g, to);
    }
    pool_.clear_flag(g, vflag::kReady | vflag::kPreempted | vflag::kPreemptedInKernel |
                            vflag::kInSpinLoop | vflag::kDyEligible);
    clear_hint(g);
    if (why == ReleaseReason::kStop) {
        ipi_at_[v].store(0, std::memory_order_relaxed);
    }
    ctr_.add(why == ReleaseReason::kHalt ? Ctr::release_halt : Ctr::release_stop);
    fx_->trace(TraceEvent::kRelease, v, -1, static_cast<int64_t>(why));
}

/* kvm_sched_out() of a runnable vCPU; kvm_arch_vcpu_put() samples CPL. */
void Scheduler::queue_preempted(int g, int cpl)
{
    enqueue(g);
    pool_.set_flag(g, vflag::kReady | vflag::kPreempted);
    if (cpl == 0) {
        pool_.set_flag(g, vflag::kPreemptedInKernel);
    } else {
        pool_.clear_flag(g, vflag::kPreemptedInKernel);
    }
    sched_out(g);
}

bool Scheduler::preempt_if_due(int v, int cpl)
{
    if (!placed(v)) {
        return false;
    }
    const int g = base_ + v;
    if (pool_.state(g) != VcpuState::kRunning) {
        return false;
    }
    int slot = held_slot(g);
    const int woken = wake_target(slot, g);
    if (now_ < state_->slot_deadline_ns[slot] && woken == kNone) {
        return false;
    }
    const uint64_t at = state_->slot_granted_at_ns[slot];
    const uint64_t ran = now_ > at ? now_ - at : 0;
    if (pool_.queue_len() == 0) {
        /* Nobody waits: a new slice, so the holder's next exits before it
         * need no lock.  A vCPU that queues later kicks it as before. */
        state_->slot_deadline_ns[slot] = now_ + slice_ns_;
        state_->slot_kicked_at_ns[slot] = 0;
        ctr_.add(Ctr::slice_renewals);
        delay_[slot].active = false; /* a deferral ends; no second grace */
        return false;
    }
    if (woken == kNone && defer_preemption(slot, g, cpl)) {
        return false;
    }
    if (lender_of(slot, g) != kNone) {
        ctr_.add(Ctr::lend_expired); /* the lender, at the head, is next */
    }
    take_slot(slot);
    queue_preempted(g, cpl);
    ctr_.add(Ctr::preemptions);
    fx_->trace(TraceEvent::kPreempt, v, -1, cpl);
    if (woken == kNone || !hand_woken_slot(g, slot, woken, ran)) {
        pass_slot_on(slot);
    }
    return true;
}

uint64_t Scheduler::held_deadline(int v) const
{
    if (!placed(v)) {
        return 0;
    }
    const int g = base_ + v;
    if (pool_.state(g) != VcpuState::kRunning) {
        return 0;
    }
    const int slot = held_slot(g);
    const uint64_t dl = state_->slot_deadline_ns[slot];
    if (wake_target(slot, g) != kNone) {
        return std::max<uint64_t>(std::min(dl, now_), 1); /* asked to leave */
    }
    return dl;
}

uint64_t Scheduler::tick()
{
    uint64_t next = now_ + slice_ns_;
    const bool waiters = pool_.queue_len() > 0;
    for (int s = 0; s < nslots_; s++) {
        int owner = pool_.slot_owner(s);
        if (owner == kNone) {
            continue;
        }
        uint64_t dl = state_->slot_deadline_ns[s];
        if (dl > now_) {
            next = std::min(next, dl);
            continue;
        }
        if (!waiters) {
            continue; /* preempting without waiters is pointless */
        }
        /* A delayed preemption: its exits decide until the grace ends,
         * then one kick makes it exit. */
        const uint64_t grace_end = delay_end(s, owner);
        if (grace_end > now_) {
            next = std::min(next, grace_end);
            continue;
        }
        uint64_t &kicked = state_->slot_kicked_at_ns[s];
        if (kicked == 0 || now_ - kicked >= slice_ns_ || kicked < grace_end) {
            kicked = std::max<uint64_t>(now_, 1);
            ctr_.add(Ctr::kicks);
            fx_kick(owner);
        }
        next = std::min(next, kicked + slice_ns_);
    }
    return next;
}

int Scheduler::yield_to(int me, int target)
{
    if (target == me || target < 0 || target >= n_ || me < 0 || me >= n_) {
        return 0;
    }
    const int gm = base_ + me, gt = base_ + target;
    if (pool_.state(gm) != VcpuState::kRunning) {
        return 0;
    }
    if (pool_.queue_len() == 0) {
        return kYieldEsrch; /* nobody contends for a slot */
    }
    if (pool_.state(gt) != VcpuState::kQueued) {
        return 0; /* running, or halted/stopped (not runnable yet) */
    }
    int vector = lend_ipi_ ? lend_ipi_->held_vector(me, target, lend_ipi_now_) : -1;
    if (vector >= 0 && lend_blocked(gt)) {
        ctr_.add(Ctr::lend_bounded);
        vector = -1;
    }
    int slot = held_slot(gm);
    uint64_t deadline = state_->slot_deadline_ns[slot];
    take_slot(slot);
    enqueue(gm);
    /* Ready; preempted (with CPL) as kvm_sched_out() marks a runnable
     * vCPU, or not preempted if configured as voluntary.  in_spin_loop
     * stays set until the yielder gets a slot again (it is still "inside
     * yield_to()"). */
    pool_.set_flag(gm, vflag::kReady);
    pool_.clear_flag(gm, vflag::kPreempted | vflag::kPreemptedInKernel);
    if (yielder_preempted_) {
        pool_.set_flag(gm, vflag::kPreempted);
        if (yielder_cpl_ == 0) {
            pool_.set_flag(gm, vflag::kPreemptedInKernel);
        }
    }
    sched_out(gm);
    grant(gt, slot, deadline);
    if (vector >= 0) {
        start_lend(gm, gt, slot, vector);
    } else if (lift_yielder_) {
        lift_queued(gm, Ctr::yielder_lifts, Ctr::yielder_lift_bounded, TraceEvent::kYielderLift);
    }
    ctr_.add(Ctr::handoffs);
    ctr_.add(Ctr::wakes);
    fx_wake(gt);
    fx_->trace(TraceEvent::kHandoff, me, target,
               static_cast<int64_t>(deadline > now_ ? deadline - now_ : 0));
    return 1;
}

void Scheduler::init_mechanisms()
{
    passes_.reset(new Passes[id_space_ > 0 ? id_space_ : 1]);
    /* Sized for every vCPU the VM may plug (grow() raises n_ to cap_). */
    const int vcpus = std::max(n_, cap_);
    ipi_at_.reset(new std::atomic<uint64_t>[vcpus > 0 ? vcpus : 1]);
    ipi_queued_.reset(new std::atomic<uint8_t>[vcpus > 0 ? vcpus : 1]);
    for (int v = 0; v < vcpus; v++) {
        ipi_at_[v].store(0, std::memory_order_relaxed);
        ipi_queued_[v].store(0, std::memory_order_relaxed);
    }
    free_since_.reset(new uint64_t[nslots_ > 0 ? nslots_ : 1]());
    wake_ask_.reset(new WakeAsk[nslots_ > 0 ? nslots_ : 1]());
    delay_.reset(new PreemptDelay[nslots_ > 0 ? nslots_ : 1]());
    lend_.reset(new Lend[nslots_ > 0 ? nslots_ : 1]());
    lend_vector_.reset(new std::atomic<int>[vcpus > 0 ? vcpus : 1]);
    lend_due_.reset(new std::atomic<uint8_t>[vcpus > 0 ? vcpus : 1]);
    for (int v = 0; v < vcpus; v++) {
        lend_vector_[v].store(-1, std::memory_order_relaxed);
        lend_due_[v].store(0, std::memory_order_relaxed);
    }
}

/* Lend until EOI. */

/* The lender would pass every queued vCPU but the target: refused if one
 * of them is at the lift bound. */
bool Scheduler::lend_blocked(int gt) const
{
    for (int x = pool_.head(); x != kNone; x = pool_.next(x)) {
        if (x != gt && passes(x) >= static_cast<int>(lift_bound_)) {
            return true;
        }
    }
    return false;
}

/* gm (just queued at the tail) lent `slot` to gt (just granted it): gm
 * waits at the head until gt EOIs `vector`. */
void Scheduler::start_lend(int gm, int gt, int slot, int vector)
{
    count_passes(pool_.head(), gm);
    pool_.remove(gm);
    pool_.insert_after(gm, kNone);
    lend_[slot] = Lend{gt, state_->slot_granted_at_ns[slot], gm, state_->queued_at_ns[gm]};
    lend_vector_[gt - base_].store(vector, std::memory_order_relaxed);
    lend_due_[gt - base_].store(0, std::memory_order_relaxed);
    ctr_.add(Ctr::lends);
    fx_->trace(TraceEvent::kLend, gm - base_, gt - base_, vector);
}

/* The lender of the slot `holder` holds, if the lend still stands: the
 * holder is its receiver from the same grant and the lender is queued
 * from the same wait.  Else kNone. */
int Scheduler::lender_of(int slot, int holder) const
{
    const Lend &l = lend_[slot];
    if (l.receiver == kNone || l.receiver != holder || pool_.slot_owner(slot) != holder ||
        l.granted_at != state_->slot_granted_at_ns[slot] ||
        pool_.state(l.lender) != VcpuState::kQueued ||
        state_->queued_at_ns[l.lender] != l.lender_queued_at) {
        return kNone;
    }
    return l.lender;
}

/* The slot changes hands: its lend, if any, is over. */
void Scheduler::end_lend(int slot)
{
    Lend &l = lend_[slot];
    if (l.receiver != kNone && own(l.receiver)) {
        lend_vector_[l.receiver - base_].store(-1, std::memory_order_relaxed);
        lend_due_[l.receiver - base_].store(0, std::memory_order_relaxed);
    }
    l = Lend{};
}

/* Receiver g gave up `slot` (taken): it goes back to its lender with the
 * rest of its deadline. */
void Scheduler::give_back(int g, int slot, int lender, uint64_t deadline, Ctr why)
{
    count_passes(pool_.head(), lender);
    grant(lender, slot, deadline);
    ctr_.add(why);
    ctr_.add(Ctr::wakes);
    fx_wake(lender);
    fx_->trace(TraceEvent::kLendReturn, g - base_, lender - base_,
               static_cast<int64_t>(deadline > now_ ? deadline - now_ : 0));
}

/* The first queued vCPU of this VM (from the head) that holds an IPI of
 * `lender` not EOI'd yet, or kNone; *vector: that IPI's. */
int Scheduler::next_receiver(int lender, const IpiTracker &ipi, uint64_t ipi_now,
                             int *vector) const
{
    for (int x = pool_.head(); x != kNone; x = pool_.next(x)) {
        if (x == lender || !own(x)) {
            continue;
        }
        const int vec = ipi.held_vector(lender - base_, x - base_, ipi_now);
        if (vec >= 0) {
            *vector = vec;
            return x;
        }
    }
    return kNone;
}

bool Scheduler::return_lend(int v, int cpl, const IpiTracker *chain, uint64_t ipi_now)
{
    if (!placed(v) || !lend_due_[v].exchange(0, std::memory_order_relaxed)) {
        return false;
    }
    const int g = base_ + v;
    if (pool_.state(g) != VcpuState::kRunning) {
        return false;
    }
    const int slot = held_slot(g);
    const int lender = lender_of(slot, g);
    const uint64_t deadline = state_->slot_deadline_ns[slot];
    if (lender == kNone || now_ >= deadline) {
        return false; /* over, or expired: preempt_if_due() counts it */
    }
    if (!within_bound(lender)) {
        /* Someone was lifted ahead of the lender and is at the bound: the
         * lend becomes a plain yield. */
        ctr_.add(Ctr::lend_bounded);
        end_lend(slot);
        return false;
    }
    const Lend l = lend_[slot];
    int vector = -1;
    const int next = chain ? next_receiver(lender, *chain, ipi_now, &vector) : kNone;
    take_slot(slot);
    /* The receiver had been queued before the lend, and its turn came
     * ahead of everyone (a yield target is served out of turn): it goes
     * to the tail, passing nobody, marked preempted as a vCPU that lost
     * its slot while runnable.  (Back to its place before the lend, by
     * queued_at, measured slower: docs/design/where-time-goes.rst.) */
    queue_preempted(g, cpl);
    if (next != kNone) {
        /* The lender still waits for another receiver: the slot goes on
         * to it, out of turn as a yield target, the lender still lending. */
        grant(next, slot, deadline);
        lend_[slot] = Lend{next, now_, lender, l.lender_queued_at};
        lend_vector_[next - base_].store(vector, std::memory_order_relaxed);
        lend_due_[next - base_].store(0, std::memory_order_relaxed);
        ctr_.add(Ctr::lend_chains);
        ctr_.add(Ctr::wakes);
        fx_wake(next);
        fx_->trace(TraceEvent::kLend, lender - base_, next - base_, vector);
        return true;
    }
    give_back(g, slot, lender, deadline, Ctr::lend_returns);
    return true;
}

/* Passes of queued g in its current wait (another member's grant and
 * requeue start a new wait: its queued_at_ns moves). */
int Scheduler::passes(int g) const
{
    const Passes &p = passes_[g];
    return p.queued_at == state_->queued_at_ns[g] ? static_cast<int>(p.n) : 0;
}

/* Every queued vCPU from `from` up to (not including) `to` was passed once
 * more. */
void Scheduler::count_passes(int from, int to)
{
    for (int x = from; x != kNone && x != to; x = pool_.next(x)) {
        Passes &p = passes_[x];
        if (p.queued_at != state_->queued_at_ns[x]) {
            p = {state_->queued_at_ns[x], 0};
        }
        p.n++;
    }
}

/* g (just queued at the tail) moves ahead of every vCPU passed fewer than
 * lift_bound_ times, i.e. right behind the last one at the bound.  So no
 * queued vCPU is ever passed more than lift_bound_ times per wait: it is
 * served within (vCPUs ahead of it + lift_bound_) grants. */
void Scheduler::lift_queued(int g, Ctr lifted, Ctr bounded, TraceEvent ev)
{
    int behind = kNone;
    for (int x = pool_.head(); x != kNone && x != g; x = pool_.next(x)) {
        if (passes(x) >= static_cast<int>(lift_bound_)) {
            behind = x;
        }
    }
    const int first_passed = behind == kNone ? pool_.head() : pool_.next(behind);
    if (first_passed == g) {
        if (behind != kNone) {
            ctr_.add(bounded);
        }
        return; /* nobody to pass */
    }
    int passed = 0;
    for (int x = first_passed; x != g; x = pool_.next(x)) {
        passed++;
    }
    count_passes(first_passed, g);
    pool_.remove(g);
    pool_.insert_after(g, behind);
    ctr_.add(lifted);
    if (behind != kNone) {
        ctr_.add(bounded);
    }
    fx_->trace(ev, g - base_, -1, passed);
}

/* Halting holder g's slot goes to `successor` (a local id) if it is a
 * queued vCPU of this VM and nobody ahead of it is at the lift bound. */
bool Scheduler::hand_halted_slot(int g, int slot, int successor)
{
    if (successor < 0 || successor >= n_ || base_ + successor == g) {
        return false;
    }
    const int t = base_ + successor;
    if (pool_.state(t) != VcpuState::kQueued) {
        return false;
    }
    if (!within_bound(t)) {
        ctr_.add(Ctr::halt_handoff_bounded);
        return false;
    }
    grant_out_of_turn(t, slot, Ctr::halt_handoffs);
    fx_->trace(TraceEvent::kHaltHandoff, g - base_, successor, 0);
    return true;
}

/* Queued t takes `slot` ahead of its turn (halt handoff, wake
 * preemption): the vCPUs it passes count it, it gets a fresh slice. */
void Scheduler::grant_out_of_turn(int t, int slot, Ctr why)
{
    count_passes(pool_.head(), t);
    grant(t, slot, now_ + slice_ns_);
    ctr_.add(why);
    ctr_.add(Ctr::wakes);
    fx_wake(t);
}

/* Queued t may be served next: nobody ahead of it is at the lift bound. */
bool Scheduler::within_bound(int t) const
{
    for (int x = pool_.head(); x != kNone && x != t; x = pool_.next(x)) {
        if (passes(x) >= static_cast<int>(lift_bound_)) {
            return false;
        }
    }
    return true;
}

/* The slot whose holder a wake preemption asks: this VM's, not asked
 * already; a spinning one first if so set (*spinner = 1), else the one
 * that has run longest in its grant, at least the granularity; or kNone. */
int Scheduler::wake_preempt_choice(int *spinner) const
{
    int best = kNone, best_spinner = kNone;
    uint64_t best_ran = 0, spinner_ran = 0;
    for (int s = 0; s < nslots_; s++) {
        const int h = pool_.slot_owner(s);
        if (h == kNone || !own(h) || wake_target(s, h) != kNone) {
            continue;
        }
        const uint64_t at = state_->slot_granted_at_ns[s];
        const uint64_t ran = now_ > at ? now_ - at : 0;
        if (wake_spinner_first_ && spin_->in_spin(h - base_, wake_pause_now_) &&
            (best_spinner == kNone || ran > spinner_ran)) {
            best_spinner = s;
            spinner_ran = ran;
        }
        if (ran >= wake_gran_ns_ && (best == kNone || ran > best_ran)) {
            best = s;
            best_ran = ran;
        }
    }
    *spinner = best_spinner != kNone;
    return best_spinner != kNone ? best_spinner : best;
}

/* IPI-woken g just queued: ask a holder to leave (wake_preempt_choice). */
void Scheduler::ask_wake_preempt(int g)
{
    int spinner = 0;
    const int best = wake_preempt_choice(&spinner);
    if (best == kNone) {
        return;
    }
    if (!within_bound(g)) {
        ctr_.add(Ctr::wake_preempt_bounded);
        return;
    }
    const int h = pool_.slot_owner(best);
    wake_ask_[best] = WakeAsk{h, state_->slot_granted_at_ns[best], g};
    wake_asked_ = h - base_;
    ctr_.add(Ctr::wake_preempt_asks);
    if (spinner) {
        ctr_.add(Ctr::wake_preempt_spinners);
    }
    fx_kick(h);
}

int Scheduler::serve_queued_ipis()
{
    if (!ipi_queued_any_.exchange(false, std::memory_order_acq_rel)) {
        return 0;
    }
    const uint64_t before = ctr_.get(Ctr::wake_preempt_asks);
    for (int v = 0; v < n_; v++) {
        if (ipi_queued_[v].exchange(0, std::memory_order_relaxed) && wake_preempt_ &&
            pool_.state(base_ + v) == VcpuState::kQueued) {
            ctr_.add(Ctr::wake_queued_ipis);
            ask_wake_preempt(base_ + v);
        }
    }
    return static_cast<int>(ctr_.get(Ctr::wake_preempt_asks) - before);
}

/* The queued vCPU a wake preemption asked `holder` (on `slot`) to leave
 * for, or kNone. */
int Scheduler::wake_target(int slot, int holder) const
{
    const WakeAsk &a = wake_ask_[slot];
    if (a.holder != holder || a.granted_at != state_->slot_granted_at_ns[slot] ||
        pool_.state(a.target) != VcpuState::kQueued) {
        return kNone;
    }
    return a.target;
}

/* Preempted holder's slot goes to IPI-woken t, still within the bound. */
bool Scheduler::hand_woken_slot(int holder, int slot, int t, uint64_t ran)
{
    if (!within_bound(t)) {
        ctr_.add(Ctr::wake_preempt_bounded);
        return false;
    }
    grant_out_of_turn(t, slot, Ctr::wake_preempts);
    fx_->trace(TraceEvent::kWakePreempt, holder - base_, t - base_, static_cast<int64_t>(ran));
    return true;
}

void Scheduler::note_ipi_to_run(int g)
{
    const uint64_t at = ipi_at_[g - base_].exchange(0, std::memory_order_relaxed);
    if (at == 0) {
        return;
    }
    const uint64_t ns = now_ > at ? now_ - at : 0;
    ctr_.add(Ctr::ipi_to_run);
    ctr_.add(Ctr::ipi_to_run_ns, ns);
    ctr_.max(Ctr::ipi_to_run_max_ns, ns);
    fx_->trace(TraceEvent::kIpiToRun, g - base_, -1, static_cast<int64_t>(ns));
}

void Scheduler::note_slot_free(int slot)
{
    if (slot >= 0 && slot < nslots_) {
        free_since_[slot] = std::max<uint64_t>(now_, 1);
    }
}

void Scheduler::note_slot_taken(int slot)
{
    if (slot >= 0 && slot < nslots_ && free_since_[slot] != 0) {
        ctr_.add(Ctr::slot_idle_ns, now_ > free_since_[slot] ? now_ - free_since_[slot] : 0);
        free_since_[slot] = 0;
    }
}

/* Due holder g on `slot` (someone waits) keeps it: deferred now in
 * kernel mode within the grace, or still in kernel mode inside it.  The
 * deadline stays where it was, so g's exits keep taking the lock
 * (held_deadline() is past) and see its CPL. */
bool Scheduler::defer_preemption(int slot, int g, int cpl)
{
    PreemptDelay &d = delay_[slot];
    const uint64_t granted = state_->slot_granted_at_ns[slot];
    const uint64_t dl = state_->slot_deadline_ns[slot];
    if (d.holder != g || d.granted_at != granted) {
        if (delay_grace_ns_ == 0 || cpl != 0 || now_ >= dl + delay_grace_ns_) {
            return false;
        }
        d = PreemptDelay{g, granted, now_, dl + delay_grace_ns_, true};
        ctr_.add(Ctr::preempt_delays);
        if (own(g)) {
            fx_->trace(TraceEvent::kPreemptDelay, g - base_, 0,
                       static_cast<int64_t>(now_ - std::min(now_, dl)));
        }
        return true;
    }
    if (!d.active) {
        return false; /* one grace per grant */
    }
    if (cpl == 0 && now_ < d.until) {
        return true;
    }
    d.active = false;
    const uint64_t extra = now_ > d.since ? now_ - d.since : 0;
    ctr_.add(cpl == 0 ? Ctr::preempt_delay_expired : Ctr::preempt_delay_user);
    ctr_.add(Ctr::preempt_delay_ns, extra);
    if (own(g)) {
        fx_->trace(TraceEvent::kPreemptDelay, g - base_, cpl == 0 ? 2 : 1,
                   static_cast<int64_t>(extra));
    }
    return false;
}

/* The end of the grace of `holder`'s delayed preemption on `slot`, or 0. */
uint64_t Scheduler::delay_end(int slot, int holder) const
{
    const PreemptDelay &d = delay_[slot];
    if (!d.active || d.holder != holder || d.granted_at != state_->slot_granted_at_ns[slot]) {
        return 0;
    }
    return d.until;
}

bool Scheduler::grow(int n, std::string *why)
{
    if (n <= n_) {
        return true;
    }
    if (!shared_ || n > cap_ || member_ < 0) {
        *why = "vCPU " + std::to_string(n - 1) + " is beyond this VM's " +
               std::to_string(cap_) + " vCPUs";
        return false;
    }
    const int end = base_ + n;
    for (int g = base_ + n_; g < end; g++) {
        const int holder = g < kMaxVcpus ? shm_load(state_->vcpu_member[g]) : kNone;
        if (g >= kMaxVcpus || holder != kNone) {
            *why = "pool id " + std::to_string(g) + " after this VM's ids " +
                   std::to_string(base_) + ".." + std::to_string(base_ + n_ - 1) +
                   (g >= kMaxVcpus ? std::string(" is past the pool's last id")
                                   : " is another VM's (member " + std::to_string(holder) +
                                         ")") +
                   "; " + describe_free_ids(*state_);
            return false;
        }
    }
    for (int g = base_ + n_; g < end; g++) {
        state_->vcpu_member[g] = static_cast<int16_t>(member_);
        state_->state[g] = static_cast<uint8_t>(VcpuState::kStopped);
        state_->flags[g] = 0;
        state_->vcpu_tid[g] = 0;
        state_->steal_ns[g] = 0;
    }
    state_->member[member_].nr_vcpus = n;
    n_ = n;
    return true;
}

void Scheduler::use_private_pool(int nr_slots)
{
    owned_.reset(new PoolState);
    state_ = owned_.get();
    pool_ = SlotPool(*state_);
    n_ = cap_; /* every vCPU the VM can have: the ids are its own now */
    pool_.init(n_, nr_slots);
    shared_ = false;
    member_ = 0;
    base_ = 0;
    nslots_ = nr_slots;
    id_space_ = n_;
    free_since_.reset(new uint64_t[nslots_ > 0 ? nslots_ : 1]());
    wake_ask_.reset(new WakeAsk[nslots_ > 0 ? nslots_ : 1]());
    delay_.reset(new PreemptDelay[nslots_ > 0 ? nslots_ : 1]());
    lend_.reset(new Lend[nslots_ > 0 ? nslots_ : 1]());
    for (int v = 0; v < n_; v++) {
        wake_hint_[v].store(kWakeNone, std::memory_order_relaxed);
        lend_vector_[v].store(-1, std::memory_order_relaxed);
        lend_due_[v].store(0, std::memory_order_relaxed);
    }
}

int Scheduler::evict_member(int m)
{
    MemberState &ms = state_->member[m];
    if (!ms.active) {
        return 0;
    }
    const int b = shm_load(ms.base), n = shm_load(ms.nr_vcpus);
    if (b < 0 || n < 0 || n > kMaxVcpus - b) {
        pool_corrupt("member vCPU range", b);
    }
    /* Queue entries first, so no freed slot goes back to this member. */
    for (int g = b; g < b + n; g++) {
        if (pool_.state(g) == VcpuState::kQueued) {
            pool_.remove(g);
            set_state(g, VcpuState::kStopped);
        }
    }
    int held = 0;
    for (int g = b; g < b + n; g++) {
        if (pool_.state(g) == VcpuState::kRunning) {
            int slot = held_slot(g);
            take_slot(slot);
            set_state(g, VcpuState::kStopped);
            held++;
            pass_slot_on(slot);
        }
    }
    for (int g = b; g < b + n; g++) {
        state_->state[g] = static_cast<uint8_t>(VcpuState::kStopped);
        state_->flags[g] = 0;
        state_->vcpu_member[g] = static_cast<int16_t>(kNone);
    }
    ms.active = 0;
    state_->nr_members--;
    return held;
}

int Scheduler::revoke_expired(int m, uint64_t grace_ns)
{
    int n = 0;
    for (int s = 0; s < nslots_ && pool_.queue_len() > 0; s++) {
        int g = pool_.slot_owner(s);
        if (g == kNone || pool_.member_of(g) != m ||
            state_->slot_deadline_ns[s] + grace_ns > now_) {
            continue;
        }
        take_slot(s);
        enqueue(g);
        pool_.set_flag(g, vflag::kReady | vflag::kPreempted);
        pass_slot_on(s);
        n++;
    }
    return n;
}

int Scheduler::revoke_stopped_vcpu(int g)
{
    int n = 0;
    switch (pool_.state(g)) {
    case VcpuState::kRunning: {
        int slot = held_slot(g);
        take_slot(slot);
        set_state(g, VcpuState::kStopped);
        pass_slot_on(slot);
        n = 1;
        break;
    }
    case VcpuState::kQueued:
        pool_.remove(g);
        set_state(g, VcpuState::kStopped);
        break;
    default:
        return 0;
    }
    pool_.clear_flag(g, vflag::kReady | vflag::kPreempted | vflag::kPreemptedInKernel |
                            vflag::kInSpinLoop | vflag::kDyEligible);
    return n;
}

int Scheduler::revoke_stopped_member(int m)
{
    const MemberState &ms = state_->member[m];
    const int b = shm_load(ms.base), n = shm_load(ms.nr_vcpus);
    if (b < 0 || n < 0 || n > kMaxVcpus - b) {
        pool_corrupt("member vCPU range", b);
    }
    int slots = 0;
    for (int g = b; g < b + n; g++) {
        VcpuState st = pool_.state(g);
        if (st == VcpuState::kQueued ||
            (st == VcpuState::kRunning && state_->slot_deadline_ns[held_slot(g)] <= now_)) {
            slots += revoke_stopped_vcpu(g);
        }
    }
    return slots;
}

bool Scheduler::repair()
{
    PoolState &s = *state_;
    bool fixed = false;
    /* The sizes are this process's own, never the pool's word for them. */
    if (s.nr_vcpus != id_space_ || s.nr_slots != nslots_) {
        s.nr_vcpus = id_space_;
        s.nr_slots = nslots_;
        fixed = true;
    }
    /* Members: inactive members own no ids. */
    int members = 0;
    for (int m = 0; m < kMaxMembers; m++) {
        members += s.member[m].active != 0;
    }
    if (members != s.nr_members) {
        s.nr_members = members;
        fixed = true;
    }
    for (int g = 0; g < id_space_; g++) {
        int m = s.vcpu_member[g];
        if (m != kNone && (m < 0 || m >= kMaxMembers || !s.member[m].active ||
                           g < s.member[m].base ||
                           g >= int64_t{s.member[m].base} + s.member[m].nr_vcpus)) {
            s.vcpu_member[g] = static_cast<int16_t>(kNone);
            fixed = true;
        }
        if (s.vcpu_member[g] == kNone && s.state[g] != static_cast<uint8_t>(VcpuState::kStopped)) {
            s.state[g] = static_cast<uint8_t>(VcpuState::kStopped);
            fixed = true;
        }
        if (s.state[g] >= kNumVcpuStates) {
            s.state[g] = static_cast<uint8_t>(VcpuState::kStopped);
            fixed = true;
        }
    }
    /* Slots: an owner must be running on exactly that slot. */
    for (int sl = 0; sl < nslots_; sl++) {
        int o = s.slot_owner[sl];
        if (o != kNone && (o < 0 || o >= id_space_ ||
                           s.state[o] != static_cast<uint8_t>(VcpuState::kRunning) ||
                           s.slot_of[o] != sl)) {
            s.slot_owner[sl] = kNone;
            fixed = true;
        }
    }
    for (int g = 0; g < id_space_; g++) {
        bool running = s.state[g] == static_cast<uint8_t>(VcpuState::kRunning);
        int sl = s.slot_of[g];
        bool holds = sl >= 0 && sl < nslots_ && s.slot_owner[sl] == g;
        if (running && !holds) {
            /* Lost its slot in the torn update: wait for one again. */
            s.slot_of[g] = kNone;
            s.state[g] = static_cast<uint8_t>(VcpuState::kQueued);
            s.flags[g] |= vflag::kReady;
            s.queued_at_ns[g] = now_;
            fixed = true;
        } else if (!running && sl != kNone) {
            s.slot_of[g] = kNone;
            fixed = true;
        }
    }
    /* Free stack: every slot without an owner, slot 0 on top. */
    /* Counted locally: another process may write free_top meanwhile. */
    int old_top = s.free_top;
    int top = 0;
    for (int sl = nslots_ - 1; sl >= 0; sl--) {
        if (s.slot_owner[sl] == kNone) {
            s.free_stack[top++] = sl;
        }
    }
    s.free_top = top;
    fixed |= old_top != top;
    /* Run queue: the queued vCPUs in queued_at order (FIFO). */
    std::vector<int> q;
    for (int g = 0; g < id_space_; g++) {
        if (s.state[g] == static_cast<uint8_t>(VcpuState::kQueued)) {
            q.push_back(g);
        }
        s.q_next[g] = s.q_prev[g] = kNone;
    }
    std::stable_sort(q.begin(), q.end(),
                     [&](int a, int b) { return s.queued_at_ns[a] < s.queued_at_ns[b]; });
    fixed |= static_cast<int>(q.size()) != s.q_len;
    s.q_head = s.q_tail = kNone;
    s.q_len = 0;
    for (int g : q) {
        pool_.enqueue_tail(g);
    }
    /* Free slots go to waiters. */
    while (pool_.free_slots() > 0 && pool_.queue_len() > 0) {
        pass_slot_on(pool_.take_free_slot());
        fixed = true;
    }
    return fixed;
}

bool Scheduler::check_invariants(std::string *why) const
{
    auto fail = [&](std::string m) {
        if (why) {
            *why = std::move(m);
        }
        return false;
    };
    const PoolState &s = *state_;
    if (s.nr_vcpus != id_space_ || s.nr_slots != nslots_) {
        return fail("pool sizes changed");
    }
    /* Loaded once: another process may write it while we look. */
    const int free_top = shm_load(s.free_top);
    if (free_top < 0 || free_top > nslots_) {
        return fail("free_top out of range");
    }
    int owned = 0;
    std::vector<int> slot_seen(nslots_, 0);
    for (int i = 0; i < free_top; i++) {
        int sl = s.free_stack[i];
        if (sl < 0 || sl >= nslots_ || slot_seen[sl]++) {
            return fail("free stack corrupt at " + std::to_string(i));
        }
        if (s.slot_owner[sl] != kNone) {
            return fail("free slot " + std::to_string(sl) + " has an owner");
        }
    }
    for (int sl = 0; sl < nslots_; sl++) {
        int o = s.slot_owner[sl];
        if (o == kNone) {
            if (!slot_seen[sl]) {
                return fail("slot " + std::to_string(sl) + " lost (neither free nor owned)");
            }
            continue;
        }
        owned++;
        if (o < 0 || o >= id_space_ || static_cast<VcpuState>(s.state[o]) != VcpuState::kRunning ||
            s.slot_of[o] != sl) {
            return fail("slot " + std::to_string(sl) + " owner " + std::to_string(o) +
                        " is not running on it");
        }
    }
    if (owned + free_top != nslots_) {
        return fail("slot count not conserved");
    }
    if (free_top > 0 && s.q_len > 0) {
        return fail("a slot is free while vCPUs are queued");
    }
    std::vector<int> in_q(id_space_, 0);
    int len = 0;
    int prev = kNone;
    for (int v = s.q_head; v != kNone; v = s.q_next[v]) {
        if (v < 0 || v >= id_space_ || in_q[v]++ || len > id_space_) {
            return fail("run queue corrupt");
        }
        if (s.q_prev[v] != prev) {
            return fail("run queue back link broken at " + std::to_string(v));
        }
        prev = v;
        len++;
    }
    if (len != s.q_len || prev != s.q_tail) {
        return fail("run queue length/tail mismatch");
    }
    for (int v = 0; v < id_space_; v++) {
        auto st = static_cast<VcpuState>(s.state[v]);
        if (s.state[v] >= kNumVcpuStates) {
            return fail("vCPU " + std::to_string(v) + " has a bad state");
        }
        int vm = s.vcpu_member[v];
        if (vm != kNone && (vm < 0 || vm >= kMaxMembers || !s.member[vm].active)) {
            return fail("vCPU id " + std::to_string(v) + " belongs to a bad member");
        }
        if (vm == kNone && st != VcpuState::kStopped) {
            return fail("vCPU id " + std::to_string(v) + " belongs to no member but is not stopped");
        }
        if ((st == VcpuState::kQueued) != (in_q[v] != 0)) {
            return fail("vCPU " + std::to_string(v) + " queue membership != state");
        }
        if ((st == VcpuState::kRunning) != (s.slot_of[v] != kNone)) {
            return fail("vCPU " + std::to_string(v) + " slot != state");
        }
        if (st == VcpuState::kRunning &&
            (s.flags[v] & (vflag::kReady | vflag::kPreempted))) {
            return fail("running vCPU " + std::to_string(v) + " still ready/preempted");
        }
    }
    int members = 0;
    for (int m = 0; m < kMaxMembers; m++) {
        const MemberState &ms = s.member[m];
        if (!ms.active) {
            continue;
        }
        members++;
        const int b = shm_load(ms.base), n = shm_load(ms.nr_vcpus);
        if (b < 0 || n < 0 || n > id_space_ - b) {
            return fail("member " + std::to_string(m) + " has a bad vCPU range");
        }
        for (int g = b; g < b + n; g++) {
            if (g < 0 || g >= id_space_ || s.vcpu_member[g] != m) {
                return fail("member " + std::to_string(m) + " does not own its vCPU ids");
            }
        }
    }
    if (members != s.nr_members) {
        return fail("member count mismatch");
    }
    return true;
}

} // namespace vsched
