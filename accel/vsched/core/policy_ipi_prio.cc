/*
 * vsched core: policy "ipi-prio" (ours).  Fixes what the series leaves open:
 *
 *  1. Receiver pass: confirmed IPI receivers of me first (our multi-receiver
 *     view, so multicast and shorthand IPIs count; EOI matched by vector).
 *     A real priority: a receiver later in scan order still beats an
 *     earlier lock-holder candidate.  No dy_eligible toggle: a receiver is
 *     needed whether or not it spins.
 *  2. Lock-holder pass: preempted and (user-mode spin or preempted in
 *     kernel), or with an interrupt pending that it has not taken yet
 *     (upstream counts that as "in kernel"; we know it without APICv).
 *  3. Relaxed pass (if relaxed_boost): any other ready vCPU, preempted or
 *     woken-but-not-preempted, as upstream keeps the latter candidates.
 *
 * With callfn-first on, pass 1 is split: receivers of a call-function IPI
 * of me first (pass "callfn": smp_call_function*() spins until they run
 * the function), then the other receivers.
 *
 * Scheduler mechanisms (scheduler.h), each switchable by its property:
 * an IPI-woken vCPU queues ahead (ipi-lift), and the slot of a vCPU that
 * halts goes to the latest receiver of its IPIs still holding one
 * (halt-handoff): in a pipeline the sender wakes its peer and idles, and
 * the peer should not wait behind the whole queue for the sender's slot;
 * and an IPI-woken vCPU that finds no slot free takes the slot of the
 * VM's holder that has run longest, if at least wake-granularity
 * (wake-preempt, CFS's wakeup preemption); and a holder due for
 * preemption in kernel mode, where the guest's spinlocks are, runs on to
 * its return to user mode within a grace (preempt-delay); and a yield to
 * a vCPU that holds an IPI of the spinner lends the slot until that vCPU
 * EOIs it (yield-lend).
 *
 * Each pass has its own -ESRCH budget (no shared `try`, no underflow); a
 * candidate is looked at by at most one pass, so dy_eligible toggles at
 * most once per decision (the series toggles it again in its second round).
 */
#include <algorithm>
#include <memory>

#include "policy.h"

namespace vsched {

namespace {

/* Pass indices are the registration order below. */
enum Pass { kReceiver, kLockHolder, kRelaxed, kCallfn };

class IpiPrioPolicy final : public YieldPolicy {
public:
    IpiPrioPolicy() : seen_(new uint32_t[kMaxVcpus]()) {}
    void decide(SpinContext &c) override;
    bool lifts_ipi_wakes() const override { return true; }
    bool lifts_yielders() const override { return true; }
    bool preempts_for_ipi_wakes() const override { return true; }
    bool delays_kernel_preemption() const override { return true; }
    /* A spinner in smp_call_function*() waits for its receivers' EOIs:
     * lend them the slot, and have it back as soon as they are done. */
    bool lends_until_eoi() const override { return true; }
    int halt_successor(const IpiTracker &ipi, int me, uint64_t now) const override
    {
        return ipi.last_receiver(me, now);
    }

private:
    /* Returns true when it yielded. */
    bool run_pass(SpinContext &c, Pass pass);
    bool receiver_pass_hinted(SpinContext &c, const int *hint, int nh, Pass pass);
    bool try_receiver(SpinContext &c, int idx, bool *stop, Pass pass);
    static bool is_receiver(const SpinContext &c, int idx, Pass pass)
    {
        return pass == kCallfn ? c.ipi().is_callfn_receiver(c.me(), idx, c.now())
                               : c.ipi().is_receiver(c.me(), idx, c.now());
    }
    bool seen(int idx) const { return seen_[idx] == epoch_; }
    void mark(int idx) { seen_[idx] = epoch_; }

    std::unique_ptr<uint32_t[]> seen_; /* == epoch_: done in this decision */
    uint32_t epoch_ = 0;
};

bool IpiPrioPolicy::run_pass(SpinContext &c, Pass pass)
{
    const int n = c.nr_vcpus();
    c.new_budget();
    for (int i = 0, idx = c.scan_first(); i < n; i++, idx = c.scan_next(idx)) {
        if (idx == c.me() || seen(idx)) {
            continue;
        }
        if (pass == kReceiver || pass == kCallfn) {
            if (!is_receiver(c, idx, pass)) {
                continue;
            }
            mark(idx);
            if (!c.ready_and_runnable(idx)) {
                continue;
            }
        } else {
            if (!c.ready_and_runnable(idx)) {
                mark(idx);
                continue;
            }
            if (pass == kLockHolder) {
                bool holder = c.preempted(idx) &&
                              (!c.kernel_mode() || c.preempted_in_kernel(idx));
                if (!holder && !c.ipi().has_pending_interrupt(idx, c.now())) {
                    c.reject(Reject::kStrict);
                    continue; /* left for the relaxed pass */
                }
            }
            mark(idx);
            if (!c.eligible_for_directed_yield(idx)) {
                continue;
            }
        }
        YieldOutcome r = c.try_yield(idx, pass);
        if (r == YieldOutcome::kYielded) {
            return true;
        }
        if (r == YieldOutcome::kStop) {
            return false;
        }
    }
    return false;
}

bool IpiPrioPolicy::try_receiver(SpinContext &c, int idx, bool *stop, Pass pass)
{
    *stop = false;
    if (idx == c.me() || seen(idx) || !is_receiver(c, idx, pass)) {
        return false;
    }
    mark(idx);
    if (!c.ready_and_runnable(idx)) {
        return false;
    }
    YieldOutcome r = c.try_yield(idx, pass);
    *stop = r == YieldOutcome::kStop;
    return r == YieldOutcome::kYielded;
}

/* The same receiver pass over the sender's hint ring: the candidates, in
 * scan order from last_boosted_vcpu + 1, without touching anyone else. */
bool IpiPrioPolicy::receiver_pass_hinted(SpinContext &c, const int *hint, int nh, Pass pass)
{
    const int n = c.nr_vcpus();
    const int start = c.scan_start();
    int order[kReceiverHints];
    int m = 0;
    for (int i = 0; i < nh; i++) {
        if (hint[i] < 0 || hint[i] >= n) {
            continue;
        }
        int dist = ((hint[i] - start) % n + n) % n;
        int j = m++;
        /* insertion sort by scan distance, dropping duplicates */
        while (j > 0 && ((order[j - 1] - start) % n + n) % n > dist) {
            order[j] = order[j - 1];
            j--;
        }
        if (j > 0 && order[j - 1] == hint[i]) {
            for (int k = j; k < m - 1; k++) {
                order[k] = order[k + 1];
            }
            m--;
            continue;
        }
        order[j] = hint[i];
    }
    c.new_budget();
    for (int i = 0; i < m; i++) {
        bool stop;
        if (try_receiver(c, order[i], &stop, pass)) {
            return true;
        }
        if (stop) {
            return false;
        }
    }
    return false;
}

void IpiPrioPolicy::decide(SpinContext &c)
{
    if (++epoch_ == 0) { /* wrapped: forget every old mark */
        std::fill_n(seen_.get(), kMaxVcpus, 0u);
        epoch_ = 1;
    }
    bool done = false;
    if (c.ipi().enabled() && c.ipi().may_have_receivers(c.me())) {
        int hint[kReceiverHints];
        int nh = c.ipi().receiver_hints(c.me(), c.now(), hint);
        auto receivers = [&](Pass p) {
            return nh < 0 ? run_pass(c, p) : receiver_pass_hinted(c, hint, nh, p);
        };
        done = (c.callfn_first() && receivers(kCallfn)) || receivers(kReceiver);
    }
    if (!done) {
        done = run_pass(c, kLockHolder);
    }
    if (!done && c.relaxed_boost()) {
        run_pass(c, kRelaxed);
    }
}

std::unique_ptr<YieldPolicy> make_ipi_prio()
{
    return std::make_unique<IpiPrioPolicy>();
}

} // namespace

VSCHED_REGISTER_POLICY(ipi_prio, "ipi-prio", make_ipi_prio, "receiver", "lock_holder",
                       "relaxed", "callfn");

} // namespace vsched
