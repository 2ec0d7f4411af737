/* vsched core: slot scheduler mechanism. */
#include "scheduler.h"

#include <algorithm>
#include <vector>

namespace vsched {

Scheduler::Scheduler(int nr_vcpus, int nr_slots, uint64_t slice_ns, Counters &ctr,
                     SpinDetector &spin)
    : state_(new PoolState), pool_(*state_), slice_ns_(slice_ns), ctr_(ctr),
      spin_(spin), wake_hint_(new std::atomic<uint8_t>[nr_vcpus])
{
    pool_.init(nr_vcpus, nr_slots);
    for (int v = 0; v < nr_vcpus; v++) {
        wake_hint_[v].store(kWakeNone, std::memory_order_relaxed);
    }
}

bool Scheduler::set_state(int v, VcpuState to)
{
    if (!pool_.set_state(v, to)) {
        ctr_.add(Ctr::illegal_transitions);
        return false;
    }
    return true;
}

void Scheduler::enqueue(int v)
{
    if (set_state(v, VcpuState::kQueued)) {
        pool_.enqueue_tail(v);
        state_->queued_at_ns[v] = now_;
    }
}

void Scheduler::grant(int v, int slot, uint64_t deadline)
{
    uint64_t waited = 0;
    if (pool_.state(v) == VcpuState::kQueued) {
        pool_.remove(v);
        uint64_t at = state_->queued_at_ns[v];
        waited = now_ > at ? now_ - at : 0;
        ctr_.add(Ctr::slot_waits);
        ctr_.add(Ctr::slot_wait_ns, waited);
        ctr_.max(Ctr::slot_wait_max_ns, waited);
    }
    set_state(v, VcpuState::kRunning);
    pool_.assign(slot, v, deadline);
    /* kvm_sched_in(): preempted = ready = false.  A yielder coming back
     * leaves kvm_vcpu_on_spin(): in_spin_loop = dy_eligible = false. */
    pool_.clear_flag(v, vflag::kReady | vflag::kPreempted | vflag::kPreemptedInKernel |
                            vflag::kInSpinLoop | vflag::kDyEligible);
    wake_hint_[v].store(kWakeNone, std::memory_order_relaxed);
    fx_->trace(TraceEvent::kGrant, v, slot, static_cast<int64_t>(waited));
}

void Scheduler::pass_slot_on(int slot)
{
    int h = pool_.head();
    if (h == kNone) {
        pool_.put_free_slot(slot);
        return;
    }
    grant(h, slot, now_ + slice_ns_);
    ctr_.add(Ctr::grants_from_queue);
    ctr_.add(Ctr::wakes);
    fx_->wake(h);
}

void Scheduler::sched_out(int v)
{
    if (spin_.reset_window(v)) {
        ctr_.add(Ctr::ple_window_reset);
    }
}

void Scheduler::kick_expired_holder()
{
    int best = kNone;
    for (int s = 0; s < state_->nr_slots; s++) {
        if (state_->slot_owner[s] == kNone || state_->slot_kicked_at_ns[s] != 0 ||
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
        fx_->kick(state_->slot_owner[best]);
    }
}

bool Scheduler::acquire(int v)
{
    switch (pool_.state(v)) {
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
    pool_.set_flag(v, vflag::kReady);
    pool_.clear_flag(v, vflag::kPreempted | vflag::kPreemptedInKernel);
    wake_hint_[v].store(kWakeNone, std::memory_order_relaxed);
    int slot = pool_.take_free_slot();
    if (slot != kNone) {
        grant(v, slot, now_ + slice_ns_);
        ctr_.add(Ctr::grants_immediate);
        return true;
    }
    enqueue(v);
    ctr_.add(Ctr::acquire_wait);
    fx_->trace(TraceEvent::kAcquireWait, v, -1, pool_.queue_len());
    kick_expired_holder();
    return false;
}

void Scheduler::release(int v, ReleaseReason why)
{
    VcpuState s = pool_.state(v);
    int cpl;
    if (why == ReleaseReason::kYield) {
        if (s != VcpuState::kRunning || pool_.queue_len() == 0) {
            return;
        }
        int slot = state_->slot_of[v];
        pool_.unassign(slot);
        enqueue(v);
        pool_.set_flag(v, vflag::kReady);
        sched_out(v);
        ctr_.add(Ctr::voluntary_yields);
        fx_->trace(TraceEvent::kRelease, v, -1, static_cast<int64_t>(why));
        pass_slot_on(slot);
        return;
    }
    const VcpuState to = why == ReleaseReason::kHalt ? VcpuState::kHalted : VcpuState::kStopped;
    if (spin_.take_pending(v, &cpl)) {
        ctr_.add(Ctr::spins_dropped);
    }
    if (s == VcpuState::kRunning) {
        int slot = state_->slot_of[v];
        pool_.unassign(slot);
        set_state(v, to);
        sched_out(v);
        pass_slot_on(slot);
    } else if (s == VcpuState::kQueued) {
        pool_.remove(v);
        set_state(v, to);
        ctr_.add(Ctr::queue_removed);
    } else if (s != to) {
        set_state(v, to);
    }
    pool_.clear_flag(v, vflag::kReady | vflag::kPreempted | vflag::kPreemptedInKernel |
                            vflag::kInSpinLoop | vflag::kDyEligible);
    wake_hint_[v].store(kWakeNone, std::memory_order_relaxed);
    ctr_.add(why == ReleaseReason::kHalt ? Ctr::release_halt : Ctr::release_stop);
    fx_->trace(TraceEvent::kRelease, v, -1, static_cast<int64_t>(why));
}

bool Scheduler::preempt_if_due(int v, int cpl)
{
    if (pool_.state(v) != VcpuState::kRunning || pool_.queue_len() == 0) {
        return false;
    }
    int slot = state_->slot_of[v];
    if (now_ < state_->slot_deadline_ns[slot]) {
        return false;
    }
    pool_.unassign(slot);
    enqueue(v);
    /* kvm_sched_out() of a runnable vCPU; kvm_arch_vcpu_put() samples CPL. */
    pool_.set_flag(v, vflag::kReady | vflag::kPreempted);
    if (cpl == 0) {
        pool_.set_flag(v, vflag::kPreemptedInKernel);
    } else {
        pool_.clear_flag(v, vflag::kPreemptedInKernel);
    }
    sched_out(v);
    ctr_.add(Ctr::preemptions);
    fx_->trace(TraceEvent::kPreempt, v, -1, cpl);
    pass_slot_on(slot);
    return true;
}

uint64_t Scheduler::tick()
{
    uint64_t next = now_ + slice_ns_;
    const bool waiters = pool_.queue_len() > 0;
    for (int s = 0; s < state_->nr_slots; s++) {
        int owner = state_->slot_owner[s];
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
        uint64_t &kicked = state_->slot_kicked_at_ns[s];
        if (kicked == 0 || now_ - kicked >= slice_ns_) {
            kicked = std::max<uint64_t>(now_, 1);
            ctr_.add(Ctr::kicks);
            fx_->kick(owner);
        }
        next = std::min(next, kicked + slice_ns_);
    }
    return next;
}

int Scheduler::yield_to(int me, int target)
{
    if (target == me || target < 0 || target >= state_->nr_vcpus ||
        pool_.state(me) != VcpuState::kRunning) {
        return 0;
    }
    if (pool_.queue_len() == 0) {
        return kYieldEsrch; /* nobody contends for a slot */
    }
    if (pool_.state(target) != VcpuState::kQueued) {
        return 0; /* running, or halted/stopped (not runnable yet) */
    }
    int slot = state_->slot_of[me];
    uint64_t deadline = state_->slot_deadline_ns[slot];
    pool_.unassign(slot);
    enqueue(me);
    /* Ready; preempted (with CPL) as kvm_sched_out() marks a runnable
     * vCPU, or not preempted if configured as voluntary.  in_spin_loop
     * stays set until the yielder gets a slot again (it is still "inside
     * yield_to()"). */
    pool_.set_flag(me, vflag::kReady);
    pool_.clear_flag(me, vflag::kPreempted | vflag::kPreemptedInKernel);
    if (yielder_preempted_) {
        pool_.set_flag(me, vflag::kPreempted);
        if (yielder_cpl_ == 0) {
            pool_.set_flag(me, vflag::kPreemptedInKernel);
        }
    }
    sched_out(me);
    grant(target, slot, deadline);
    ctr_.add(Ctr::handoffs);
    ctr_.add(Ctr::wakes);
    fx_->wake(target);
    fx_->trace(TraceEvent::kHandoff, me, target,
               static_cast<int64_t>(deadline > now_ ? deadline - now_ : 0));
    return 1;
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
    int owned = 0;
    std::vector<int> slot_seen(s.nr_slots, 0);
    for (int i = 0; i < s.free_top; i++) {
        int sl = s.free_stack[i];
        if (sl < 0 || sl >= s.nr_slots || slot_seen[sl]++) {
            return fail("free stack corrupt at " + std::to_string(i));
        }
        if (s.slot_owner[sl] != kNone) {
            return fail("free slot " + std::to_string(sl) + " has an owner");
        }
    }
    for (int sl = 0; sl < s.nr_slots; sl++) {
        int o = s.slot_owner[sl];
        if (o == kNone) {
            if (!slot_seen[sl]) {
                return fail("slot " + std::to_string(sl) + " lost (neither free nor owned)");
            }
            continue;
        }
        owned++;
        if (static_cast<VcpuState>(s.state[o]) != VcpuState::kRunning || s.slot_of[o] != sl) {
            return fail("slot " + std::to_string(sl) + " owner " + std::to_string(o) +
                        " is not running on it");
        }
    }
    if (owned + s.free_top != s.nr_slots) {
        return fail("slot count not conserved");
    }
    if (s.free_top > 0 && s.q_len > 0) {
        return fail("a slot is free while vCPUs are queued");
    }
    std::vector<int> in_q(s.nr_vcpus, 0);
    int len = 0;
    int prev = kNone;
    for (int v = s.q_head; v != kNone; v = s.q_next[v]) {
        if (v < 0 || v >= s.nr_vcpus || in_q[v]++ || len > s.nr_vcpus) {
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
    for (int v = 0; v < s.nr_vcpus; v++) {
        auto st = static_cast<VcpuState>(s.state[v]);
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
    return true;
}

} // namespace vsched
