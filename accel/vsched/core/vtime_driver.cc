/* vsched core: the round loop of virtual time (see vtime_driver.h). */
#include "vtime_driver.h"

namespace vsched {

VtimeDriver::VtimeDriver(Core &core, VirtualRounds &rounds, VtimeVcpus &vcpus)
    : core_(core), rounds_(rounds), vcpus_(vcpus),
      last_holder_(static_cast<size_t>(rounds.slots()), -1),
      seen_(static_cast<size_t>(core.nr_vcpus()), 0)
{
}

int VtimeDriver::holder(int s)
{
    return core_.slot_holder(s);
}

bool VtimeDriver::any_runnable()
{
    for (int v = 0; v < core_.nr_vcpus(); v++) {
        if (vcpus_.runnable(v)) {
            return true;
        }
    }
    return false;
}

/*
 * Every runnable vCPU without a slot asks for one, in vCPU order, as the
 * round-robin gate does on every pass (the core queues them FIFO, so a
 * vCPU woken by an interrupt waits its turn and slices end for it).
 */
void VtimeDriver::enqueue_runnable()
{
    for (int v = 0; v < core_.nr_vcpus(); v++) {
        VcpuState st = core_.vcpu_state(v);
        if (st != VcpuState::kRunning && st != VcpuState::kQueued && vcpus_.runnable(v)) {
            core_.acquire(v);
        }
    }
}

/*
 * A slot without a holder asks every vCPU again, unless nothing ran since
 * the last such look found nobody: within a round only guest code (on
 * this thread) makes a vCPU runnable, so the answer would be the same.
 * With many slots and few runnable vCPUs this saves a look at every vCPU
 * per idle slot per round.
 */
int VtimeDriver::fill(int s)
{
    if (empty_look_runs_ == counters_.runs) {
        return -1;
    }
    enqueue_runnable();
    int v = holder(s);
    if (v < 0) {
        empty_look_runs_ = counters_.runs;
    }
    return v;
}

/* Runs slot s to the end of the round; false: a run needs the thread. */
bool VtimeDriver::run_slot(int s)
{
    int empty = 0;
    uint64_t used = rounds_.length();

    rounds_.set_current(s);
    while (rounds_.left(s) > 0) {
        int v = holder(s);
        if (v < 0) {
            v = fill(s);
        }
        if (v < 0 || empty >= kMaxEmptyRuns) {
            if (v >= 0) {
                counters_.stalls++;
            }
            used = rounds_.progress(s);
            rounds_.idle(s);
            break;
        }
        if (v != last_holder_[s]) {
            if (last_holder_[s] >= 0) {
                counters_.holder_changes++;
            }
            last_holder_[s] = v;
            empty = 0;
        }
        if (seen_[v] > rounds_.now(s)) {
            counters_.catch_ups++;
            rounds_.idle_until(s, seen_[v]);
            continue;
        }
        counters_.runs++;
        VtimeRun r = vcpus_.run(v, rounds_.left(s));
        seen_[v] = rounds_.now(s);
        empty = r.executed ? 0 : empty + 1;
        switch (r.exit) {
        case VtimeExit::kBreak:
            return false;
        case VtimeExit::kPause:
            rounds_.charge(s, kVtimePauseCost);
            break;
        case VtimeExit::kHalted:
            rounds_.charge(s, r.executed ? kVtimeHltCost : 0);
            break;
        case VtimeExit::kMwait:
            rounds_.charge(s, kVtimeMwaitCost);
            break;
        case VtimeExit::kRan:
            break;
        }
    }
    if (share_ && used > 0) {
        share_->publish(s, used);
    }
    return true;
}

VtimeStep VtimeDriver::run_round(uint64_t to_deadline)
{
    /* Timers, mail and the main loop may have woken vCPUs meanwhile. */
    empty_look_runs_ = kNoLook;
    if (!rounds_.open()) {
        if (!any_runnable()) {
            return VtimeStep::kAllIdle;
        }
        rounds_.begin(to_deadline);
        for (int s = 0; share_ && s < rounds_.slots(); s++) {
            rounds_.idle_until(s, rounds_.start() + share_->used(s));
        }
        next_slot_ = 0;
        enqueue_runnable();
    }
    for (; next_slot_ < rounds_.slots(); next_slot_++) {
        if (!run_slot(next_slot_)) {
            return VtimeStep::kBreak;
        }
    }
    rounds_.set_current(-1);
    rounds_.end();
    return VtimeStep::kRoundDone;
}

} // namespace vsched
