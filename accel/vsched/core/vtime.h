/*
 * vsched core: virtual time, P slots advancing in lockstep rounds.
 *
 * With time=virtual the pool's P slots are P virtual CPUs.  Time is counted
 * in guest instructions (the QEMU glue converts with icount's shift: one
 * instruction is 2^shift ns).  Round r starts at virtual time T_r and has a
 * length L_r = min(quantum, instructions to the next timer deadline).  In a
 * round every slot runs its holder(s) for up to L_r instructions; an idle
 * slot idles.  When every slot has used the round, T_{r+1} = T_r + L_r: the
 * clock advances by the round's length, not by the sum over slots.  The
 * holder of slot s reads the clock as T_r + p_s, its slot's progress in the
 * round.  A directed yield changes the holder, not the slot's progress: the
 * target runs the rest of the spinner's quantum in the same round.  When
 * nothing can run, warp() skips to the next deadline in one step.
 *
 * Single-threaded by design: the driver (QEMU's round-robin thread, or a
 * test) owns the object.  See docs/design/virtual-time.rst.
 */
#ifndef VSCHED_CORE_VTIME_H
#define VSCHED_CORE_VTIME_H

#include <cstdint>
#include <limits>
#include <vector>

#include "host.h"

namespace vsched {

/* What the guest's idle and spin instructions cost in virtual time, in
 * instructions (TCG counts each as one).  PAUSE: about 140 cycles on
 * Skylake and later; HLT and MWAIT: the cost of entering and leaving the
 * idle state, as seen by the vCPU that executes them. */
inline constexpr uint64_t kVtimePauseCost = 140;
inline constexpr uint64_t kVtimeHltCost = 1000;
inline constexpr uint64_t kVtimeMwaitCost = 1000;

inline constexpr uint64_t kVtimeNoDeadline = std::numeric_limits<uint64_t>::max();

struct VtimeCounters {
    uint64_t rounds = 0;          /* rounds closed */
    uint64_t short_rounds = 0;    /* rounds cut at a timer deadline */
    uint64_t executed = 0;        /* instructions run, all slots */
    uint64_t idle = 0;            /* slot-instructions that passed idle */
    uint64_t charged = 0;         /* PAUSE/HLT/MWAIT costs charged */
    uint64_t warps = 0;           /* idle skips to a deadline */
    uint64_t warped = 0;          /* instructions skipped by them */
};

class VirtualRounds {
public:
    VirtualRounds(int slots, uint64_t quantum, uint64_t start = 0);

    int slots() const { return static_cast<int>(progress_.size()); }
    uint64_t quantum() const { return quantum_; }
    /* Virtual time at the start of the current (or next) round. */
    uint64_t start() const { return start_; }
    bool open() const { return open_; }
    uint64_t length() const { return length_; }

    /* Opens a round; to_deadline: instructions from start() to the next
     * timer deadline (kVtimeNoDeadline: none).  Returns its length (>= 1). */
    uint64_t begin(uint64_t to_deadline);
    /* Budget slot s has left in the open round. */
    uint64_t left(int s) const { return length_ - progress_[s]; }
    uint64_t progress(int s) const { return progress_[s]; }
    /* Clock seen by slot s's holder now. */
    uint64_t now(int s) const { return start_ + progress_[s]; }
    /* The slot whose holder runs now (-1: none, between slots). */
    void set_current(int s) { current_ = s; }
    int current() const { return current_; }
    /* The clock of the running slot, or start() between slots. */
    uint64_t now() const { return current_ < 0 ? start_ : now(current_); }
    /* The holder of s ran `executed` instructions (at most left(s)). */
    void account(int s, uint64_t executed);
    /* A PAUSE/HLT/MWAIT cost: like account(), capped at the round's end. */
    void charge(int s, uint64_t cost);
    /* Nobody runs on s for the rest of the round. */
    void idle(int s);
    /* s idles until virtual time t (at most to the round's end): its next
     * holder ran elsewhere up to t and cannot start earlier. */
    void idle_until(int s, uint64_t t);
    /* Every slot has used the round (left() == 0): close it.  Returns the
     * new start(). */
    uint64_t end();
    /* Between rounds, nothing can run: skip `insns` instructions of idle
     * time (to the next deadline). */
    void warp(uint64_t insns);

    const VtimeCounters &counters() const { return counters_; }

private:
    uint64_t quantum_;
    uint64_t start_;
    uint64_t length_ = 0;
    bool open_ = false;
    int current_ = -1;
    std::vector<uint64_t> progress_;
    VtimeCounters counters_;
};

/*
 * A host whose clock is virtual time: the core's scheduling decisions
 * (slices, PLE gap and window, IPI window) then run on instruction counts.
 * now_ns() is the clock of the slot being run (VirtualRounds::now()), in
 * ns (instructions << shift); kick, wake, wait and trace go to `inner`.
 */
class VirtualTimeHost final : public HostInterface {
public:
    VirtualTimeHost(HostInterface &inner, const VirtualRounds &rounds, int shift)
        : inner_(inner), rounds_(rounds), shift_(shift) {}

    uint64_t now_ns() override { return rounds_.now() << shift_; }
    void kick(int vcpu) override { inner_.kick(vcpu); }
    void wake(int vcpu) override { inner_.wake(vcpu); }
    void wait(int vcpu, uint64_t deadline_ns) override { inner_.wait(vcpu, deadline_ns); }
    void trace(TraceEvent e, int vcpu, int target, int64_t arg) override
    {
        inner_.trace(e, vcpu, target, arg);
    }

private:
    HostInterface &inner_;
    const VirtualRounds &rounds_;
    int shift_;
};

} // namespace vsched

#endif
