/*
 * vsched core: the C facade of virtual time.  No exception crosses into C
 * (allocation failures become NULL; nothing else throws).
 */
#include "vsched-vtime-core.h"

#include <memory>
#include <new>

#include "facade_internal.h"
#include "vtime.h"
#include "vtime_barrier.h"
#include "vtime_driver.h"

namespace {

/* The C callbacks as the driver's VtimeVcpus. */
class CVcpus final : public vsched::VtimeVcpus {
public:
    CVcpus(const VschedVtimeOps &ops, void *opaque, vsched::VirtualRounds &r)
        : ops_(ops), opaque_(opaque), rounds_(r) {}
    bool runnable(int v) override { return ops_.runnable(opaque_, v); }
    vsched::VtimeRun run(int v, uint64_t budget) override
    {
        int s = rounds_.current();
        uint64_t before = rounds_.progress(s);
        int exit = ops_.run(opaque_, v, budget);
        vsched::VtimeRun r;
        r.executed = rounds_.progress(s) - before;
        switch (exit) {
        case VSCHED_VTIME_HALTED:
            r.exit = vsched::VtimeExit::kHalted;
            break;
        case VSCHED_VTIME_PAUSE:
            r.exit = vsched::VtimeExit::kPause;
            break;
        case VSCHED_VTIME_MWAIT:
            r.exit = vsched::VtimeExit::kMwait;
            break;
        case VSCHED_VTIME_BREAK:
            r.exit = vsched::VtimeExit::kBreak;
            break;
        default:
            r.exit = vsched::VtimeExit::kRan;
            break;
        }
        return r;
    }

private:
    VschedVtimeOps ops_;
    void *opaque_;
    vsched::VirtualRounds &rounds_;
};

/* The barrier's slot records as the driver's VtimeSlotShare; a corrupt
 * record detaches the VM (the driver sees 0: the slot is ours alone). */
class BarrierShare final : public vsched::VtimeSlotShare {
public:
    BarrierShare(vsched::Core &core, vsched::VtimeBarrier &b) : core_(core), b_(b) {}
    uint64_t used(int s) override
    {
        try {
            return b_.slot_used(s);
        } catch (const vsched::PoolCorrupt &e) {
            core_.detach_pool(e.what());
            return 0;
        }
    }
    void publish(int s, uint64_t used) override { b_.publish_slot(s, used); }

private:
    vsched::Core &core_;
    vsched::VtimeBarrier &b_;
};

} // namespace

struct VschedVtime {
    VschedVtime(VschedCore *core, uint64_t quantum, uint64_t start, const VschedVtimeOps &ops,
                void *opaque)
        : core(*core->core), rounds(core->core->nr_slots(), quantum, start),
          vcpus(ops, opaque, rounds), driver(*core->core, rounds, vcpus) {}
    vsched::Core &core;
    vsched::VirtualRounds rounds;
    CVcpus vcpus;
    vsched::VtimeDriver driver;
    /* A shared pool's rounds (null: alone). */
    std::unique_ptr<vsched::VtimeBarrier> barrier;
    std::unique_ptr<BarrierShare> share;
    vsched::VtimeBarrierCounters barrier_ctr;   /* of a barrier since dropped */
    uint64_t inline_pauses = 0;

    void drop_barrier()
    {
        driver.set_share(nullptr);
        if (barrier) {
            barrier_ctr = barrier->counters();
        }
        share.reset();
        barrier.reset();
    }
};

VschedVtime *vsched_vtime_new(VschedCore *core, uint64_t quantum, uint64_t start,
                              const VschedVtimeOps *ops, void *opaque)
{
    if (!core || !ops || !ops->runnable || !ops->run || quantum == 0) {
        return nullptr;
    }
    return new (std::nothrow) VschedVtime(core, quantum, start, *ops, opaque);
}

void vsched_vtime_free(VschedVtime *vt)
{
    delete vt;
}

int vsched_vtime_run_round(VschedVtime *vt, uint64_t to_deadline)
{
    switch (vt->driver.run_round(to_deadline)) {
    case vsched::VtimeStep::kRoundDone:
        return VSCHED_VTIME_ROUND_DONE;
    case vsched::VtimeStep::kBreak:
        return VSCHED_VTIME_ROUND_BREAK;
    default:
        return VSCHED_VTIME_ALL_IDLE;
    }
}

uint64_t vsched_vtime_account(VschedVtime *vt, uint64_t n)
{
    int s = vt->rounds.current();
    if (s >= 0 && vt->rounds.open()) {
        vt->rounds.account(s, n < vt->rounds.left(s) ? n : vt->rounds.left(s));
    }
    return vt->rounds.now();
}

uint64_t vsched_vtime_now(VschedVtime *vt)
{
    return vt->rounds.now();
}

void vsched_vtime_warp(VschedVtime *vt, uint64_t n)
{
    if (!vt->rounds.open()) {
        vt->rounds.warp(n);
    }
}

bool vsched_vtime_round_open(VschedVtime *vt)
{
    return vt->rounds.open();
}

bool vsched_vtime_pool_join(VschedVtime *vt, int gate)
{
    if (!vt->core.shared_pool()) {
        return false;
    }
    try {
        vt->barrier = std::make_unique<vsched::VtimeBarrier>(vt->core, vt->rounds.quantum(), gate);
        vt->share = std::make_unique<BarrierShare>(vt->core, *vt->barrier);
    } catch (const std::bad_alloc &) {
        vt->drop_barrier();
        return false;
    }
    vt->driver.set_share(vt->share.get());
    return true;
}

bool vsched_vtime_pooled(VschedVtime *vt)
{
    if (vt->barrier && !vt->core.shared_pool()) {
        vt->drop_barrier(); /* the core left the pool (corrupt) */
    }
    return vt->barrier != nullptr;
}

int vsched_vtime_pool_wait(VschedVtime *vt, bool (*abort)(void *), void *opaque,
                           VschedVtimeTurn *out)
{
    if (!vsched_vtime_pooled(vt)) {
        return VSCHED_VTIME_TURN_DETACHED;
    }
    vsched::VtimeTurn t;
    auto w = vt->barrier->wait_turn(
        vt->rounds.start(), [&] { return abort && abort(opaque); },
        [&] { vt->core.poll_members(true); }, &t);
    if (w == vsched::VtimeBarrier::Wait::kAborted) {
        return VSCHED_VTIME_TURN_ABORTED;
    }
    if (w == vsched::VtimeBarrier::Wait::kDetached || !vt->core.shared_pool()) {
        vt->drop_barrier();
        return VSCHED_VTIME_TURN_DETACHED;
    }
    /* We were out of the rounds (stopped, joined late): catch up. */
    if (!vt->rounds.open() && t.start > vt->rounds.start()) {
        vt->rounds.warp(t.start - vt->rounds.start());
    }
    out->start = t.start;
    out->length = t.length;
    return VSCHED_VTIME_TURN;
}

void vsched_vtime_pool_pass(VschedVtime *vt, uint64_t deadline, bool idle)
{
    if (vsched_vtime_pooled(vt) && !vt->barrier->pass(deadline, idle)) {
        vt->drop_barrier();
    }
}

void vsched_vtime_pool_leave(VschedVtime *vt)
{
    if (vsched_vtime_pooled(vt)) {
        vt->barrier->leave();
    }
}

int vsched_vtime_slots(VschedVtime *vt)
{
    return vt->rounds.slots();
}

void vsched_vtime_counters(VschedVtime *vt, VschedVtimeCounters *out)
{
    const vsched::VtimeCounters &r = vt->rounds.counters();
    const vsched::VtimeDriverCounters &d = vt->driver.counters();
    *out = VschedVtimeCounters{r.rounds, r.short_rounds, r.executed, r.idle, r.charged,
                               r.warps, r.warped, d.runs, d.holder_changes, d.stalls,
                               d.catch_ups, vt->inline_pauses};
}

void vsched_vtime_barrier_counters(VschedVtime *vt, VschedVtimeBarrierCounters *out)
{
    const vsched::VtimeBarrierCounters &b =
        vt->barrier ? vt->barrier->counters() : vt->barrier_ctr;
    *out = VschedVtimeBarrierCounters{b.turns, b.lost_turns, b.skipped_dead,
                                      b.skipped_stopped, b.skipped_slow, b.rejoins};
}

/*
 * The same as ending the run at the PAUSE: after such an exit the round
 * charges min(cost, left) and, when more than the cost was left, runs the
 * same vCPU on (its exit and next gate pass take no lock, the slot keeps
 * its holder).  So only the run count differs, never the schedule.
 */
bool vsched_vtime_pause_inline(VschedVtime *vt, int vcpu, uint64_t run_left,
                               uint64_t next_ns)
{
    const uint64_t cost = vsched::kVtimePauseCost;
    const int s = vt->rounds.current();

    if (s < 0 || !vt->rounds.open() || run_left <= cost ||
        vt->driver.holder(s) != vcpu || !vt->core.exit_is_noop(vcpu, next_ns)) {
        return false;
    }
    vt->rounds.charge(s, cost);
    vt->inline_pauses++;
    return true;
}

uint64_t vsched_vtime_pause_cost(void)
{
    return vsched::kVtimePauseCost;
}

uint64_t vsched_vtime_hlt_cost(void)
{
    return vsched::kVtimeHltCost;
}

uint64_t vsched_vtime_mwait_cost(void)
{
    return vsched::kVtimeMwaitCost;
}
