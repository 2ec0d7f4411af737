/*
 * vsched core: the round loop of virtual time.
 *
 * VtimeDriver runs one round of VirtualRounds over the core's slots: slot
 * by slot, in slot order, it runs the slot's holder for what is left of the
 * round, then whoever holds the slot next (after a halt, a preemption at
 * slice end or a directed yield: the core decides in after_exec, which the
 * emulator's run() calls as it does today), and lets the slot idle when
 * nobody can run.  Every choice depends only on the core's state and
 * instruction counts, so the order of execution is a function of the guest.
 *
 * The emulator side (QEMU's round-robin thread, or a test) implements
 * VtimeVcpus.  run() executes guest code and accounts it in the rounds
 * (QEMU does that in its icount hook, so clock reads during the run see
 * the slot's progress).  A run that needs QEMU's thread back (stop, debug,
 * queued work) returns kBreak: the round stays open and resumes at the
 * same slot on the next call.
 */
#ifndef VSCHED_CORE_VTIME_DRIVER_H
#define VSCHED_CORE_VTIME_DRIVER_H

#include <cstdint>
#include <vector>

#include "core.h"
#include "vtime.h"

namespace vsched {

enum class VtimeExit {
    kRan,       /* budget used, or left for a reason that changes nothing */
    kHalted,    /* HLT, or halted already */
    kPause,     /* left at a PAUSE */
    kMwait,     /* left at an idle MWAIT */
    kBreak,     /* QEMU needs the thread (stop, debug, queued work) */
};

struct VtimeRun {
    uint64_t executed = 0;  /* already accounted in the rounds by run() */
    VtimeExit exit = VtimeExit::kRan;
};

class VtimeVcpus {
public:
    virtual ~VtimeVcpus() = default;
    /* v may run guest code now (not stopped, not halted without work). */
    virtual bool runnable(int v) = 0;
    /* Run v (which holds a slot) for at most `budget` instructions. */
    virtual VtimeRun run(int v, uint64_t budget) = 0;
};

/*
 * Slots shared with other VMs in the same round (a shared pool's barrier,
 * vtime_barrier.h): a slot handed to this VM by one that ran earlier in the
 * round goes on from where that one left it.
 */
class VtimeSlotShare {
public:
    virtual ~VtimeSlotShare() = default;
    /* How far slot s got in this round before our turn. */
    virtual uint64_t used(int s) = 0;
    /* How far it got when we passed it on (or the round's length). */
    virtual void publish(int s, uint64_t used) = 0;
};

enum class VtimeStep {
    kRoundDone,   /* the round closed; the clock moved by its length */
    kBreak,       /* a run returned kBreak; call again to resume */
    kAllIdle,     /* no round begun: nothing can run (warp, or wait) */
};

struct VtimeDriverCounters {
    uint64_t runs = 0;
    uint64_t holder_changes = 0;  /* a slot went on with another vCPU */
    uint64_t stalls = 0;          /* slot idled after runs made no progress */
    uint64_t catch_ups = 0;       /* slot idled until its new holder's time */
};

class VtimeDriver {
public:
    VtimeDriver(Core &core, VirtualRounds &rounds, VtimeVcpus &vcpus);

    /* Runs (or resumes) a round.  to_deadline: instructions from
     * rounds.start() to the next timer deadline (kVtimeNoDeadline). */
    VtimeStep run_round(uint64_t to_deadline);
    /* The vCPU holding slot s, or -1. */
    int holder(int s);
    /* Shared pool: the slots' progress across VMs (null: none). */
    void set_share(VtimeSlotShare *share) { share_ = share; }

    const VtimeDriverCounters &counters() const { return counters_; }

private:
    bool any_runnable();
    void enqueue_runnable();
    int fill(int s);
    bool run_slot(int s);

    /* Runs without progress before a slot is declared stalled (a kicked
     * vCPU leaves at once on its next entry, once). */
    static constexpr int kMaxEmptyRuns = 4;

    Core &core_;
    VirtualRounds &rounds_;
    VtimeVcpus &vcpus_;
    int next_slot_ = 0;
    /* counters_.runs when fill() last found nobody (kNoLook: not since
     * this call of run_round). */
    static constexpr uint64_t kNoLook = ~uint64_t{0};
    uint64_t empty_look_runs_ = kNoLook;
    std::vector<int> last_holder_;
    /* Per vCPU: the virtual time it has run up to (its clock never goes
     * back when it moves to another slot). */
    std::vector<uint64_t> seen_;
    VtimeDriverCounters counters_;
    VtimeSlotShare *share_ = nullptr;
};

} // namespace vsched

#endif
