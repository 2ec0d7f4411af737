/*
 * vsched core: the spin protocol, i.e. kvm_vcpu_on_spin()'s duties around
 * whatever a policy decides.
 *
 * run_spin_decision() brackets one decision: it marks the spinner
 * in_spin_loop, hands the policy a SpinContext, and afterwards clears
 * in_spin_loop and dy_eligible unless the spinner yielded (then the grant
 * that brings it back clears them, as KVM clears them when yield_to()
 * returns) and adds the candidate tallies to the counters.
 *
 * A policy sees only the SpinContext: it reads candidates through it and
 * yields only through try_yield(idx, pass), which keeps the -ESRCH budget
 * (`if (yielded < 0 && !--try) break;`), counts every attempt, sets
 * last_boosted_vcpu on success and refuses a second yield, a yield to self
 * or an unknown pass.  The mechanism (yield_mechanism.h) is out of a
 * policy's reach: it is a private member here and policy.h does not
 * declare it.
 */
#ifndef VSCHED_CORE_SPIN_PROTOCOL_H
#define VSCHED_CORE_SPIN_PROTOCOL_H

#include <atomic>
#include <cstdint>

#include "counters.h"
#include "ipi_tracker.h"
#include "slot_pool.h"

namespace vsched {

class YieldMechanism;
class YieldPolicy;

/* What Core knows when a spin fires. */
struct SpinSetup {
    SlotPool pool;
    const IpiTracker &ipi;
    Counters &ctr;
    const std::atomic<uint8_t> *wake_hint; /* per vCPU, may be null */
    uint64_t now;        /* for IPI ages: the tracker's (PAUSE) clock */
    bool relaxed_boost;
    int budget;          /* kvm_vcpu_on_spin()'s try */
    int me;
    bool kernel_mode;    /* yield_to_kernel_mode: the spin was at CPL 0 */
    int nr_passes;       /* of the deciding policy */
    bool callfn_first = false; /* Mechanism::kCallfnFirst is on */
};

/* What a decision came to. */
struct SpinResult {
    int target = kNone;
    int pass = -1; /* index into the policy's pass names */
};

enum class Reject { kUserMode, kStrict, kNotPreempted };

enum class YieldOutcome {
    kYielded,      /* me's slot went to the target: stop */
    kNotNow,       /* 0: running, halted or stopped target; no budget used */
    kNoContention, /* -ESRCH with budget left: go on */
    kStop,         /* the budget ran out, or the call was refused: stop */
};

class SpinContext {
public:
    SpinContext(const SpinContext &) = delete;
    SpinContext &operator=(const SpinContext &) = delete;

    int me() const { return s_.me; }
    bool kernel_mode() const { return s_.kernel_mode; }
    bool relaxed_boost() const { return s_.relaxed_boost; }
    bool callfn_first() const { return s_.callfn_first; }
    const IpiTracker &ipi() const { return s_.ipi; }
    uint64_t now() const { return s_.now; }
    int nr_vcpus() const { return n_; }

    /* The kernel's scan: idx = (last_boosted_vcpu + 1 + i) % nr_vcpus,
     * without a division per candidate. */
    int scan_first() const { return start_ >= n_ ? start_ - n_ : start_; }
    int scan_next(int idx) const { return idx + 1 == n_ ? 0 : idx + 1; }
    int scan_start() const { return start_; }

    /*
     * The two checks before any candidate filter:
     *   if (!READ_ONCE(vcpu->ready)) continue;
     *   if (kvm_vcpu_is_blocking(vcpu) && !vcpu_dy_runnable(vcpu)) continue;
     */
    bool ready_and_runnable(int idx);
    bool preempted(int idx) const;
    bool preempted_in_kernel(int idx) const;
    /* kvm_vcpu_eligible_for_directed_yield(): toggles dy_eligible. */
    bool eligible_for_directed_yield(int idx);
    /* Count a candidate a policy's filter rejected. */
    void reject(Reject why);

    /* kvm_vcpu_yield_to() with the kernel's accounting. */
    YieldOutcome try_yield(int idx, int pass);
    /* Start a fresh -ESRCH budget (a policy whose passes each have one). */
    void new_budget() { tries_ = s_.budget; }
    /* What is left of `try` (negative after the v1/v2 underflow). */
    int budget_left() const { return tries_; }
    bool yielded() const { return result_.target != kNone; }

private:
    friend SpinResult run_spin_decision(YieldPolicy &, const SpinSetup &, YieldMechanism &);
    SpinContext(const SpinSetup &s, YieldMechanism &mech);
    void begin();
    void finish();

    SpinSetup s_;
    YieldMechanism &mech_;
    int n_;
    int start_;
    int tries_;
    SpinResult result_;
    struct Tally {
        uint32_t not_ready = 0, blocking = 0, user_mode = 0, strict = 0;
        uint32_t not_preempted = 0, not_eligible = 0;
    } tally_;
};

/* One decision of `policy` for s.me, bracketed by the protocol. */
SpinResult run_spin_decision(YieldPolicy &policy, const SpinSetup &s, YieldMechanism &mech);

} // namespace vsched

#endif
