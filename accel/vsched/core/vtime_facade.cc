/*
 * vsched core: the C facade of virtual time.  No exception crosses into C
 * (allocation failures become NULL; nothing else throws).
 */
#include "vsched-vtime-core.h"

#include <memory>
#include <new>

#include "facade_internal.h"
#include "vtime.h"
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

} // namespace

struct VschedVtime {
    VschedVtime(VschedCore *core, uint64_t quantum, uint64_t start, const VschedVtimeOps &ops,
                void *opaque)
        : rounds(core->core->nr_slots(), quantum, start), vcpus(ops, opaque, rounds),
          driver(*core->core, rounds, vcpus) {}
    vsched::VirtualRounds rounds;
    CVcpus vcpus;
    vsched::VtimeDriver driver;
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
                               d.catch_ups};
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
