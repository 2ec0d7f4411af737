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
 * Each pass has its own -ESRCH budget (no shared `try`, no underflow); a
 * candidate is looked at by at most one pass, so dy_eligible toggles at
 * most once per decision (the series toggles it again in its second round).
 */
#include <algorithm>
#include <memory>

#include "policy.h"
#include "policy_common.h"

namespace vsched {

namespace {

class IpiPrioPolicy final : public YieldPolicy {
public:
    IpiPrioPolicy() : seen_(new uint32_t[kMaxVcpus]()) {}
    PolicyKind kind() const override { return PolicyKind::kIpiPrio; }
    Decision decide(PolicyContext &c, int me, bool kernel_mode) override;

private:
    enum class Pass { kReceiver, kLockHolder, kRelaxed };
    /* Returns true when it yielded. */
    bool run_pass(PolicyContext &c, Pass pass, int me, bool kernel_mode, Decision *d);
    bool receiver_pass_hinted(PolicyContext &c, int me, const int *hint, int nh,
                              Decision *d);
    bool try_receiver(PolicyContext &c, int me, int idx, int *tries, bool *stop,
                      Decision *d);
    bool seen(int idx) const { return seen_[idx] == epoch_; }
    void mark(int idx) { seen_[idx] = epoch_; }

    std::unique_ptr<uint32_t[]> seen_; /* == epoch_: done in this decision */
    uint32_t epoch_ = 0;
};

bool IpiPrioPolicy::run_pass(PolicyContext &c, Pass pass, int me, bool kernel_mode,
                             Decision *d)
{
    using namespace detail;
    const int n = c.pool.nr_vcpus();
    const int start = c.pool.last_boosted() + 1;
    int tries = c.budget;
    for (int i = 0, idx = scan_first(start, n); i < n; i++, idx = scan_next(idx, n)) {
        if (idx == me || seen(idx)) {
            continue;
        }
        if (pass == Pass::kReceiver) {
            if (!c.ipi.is_receiver(me, idx, c.now)) {
                continue;
            }
            mark(idx);
            if (!ready_and_runnable(c, idx)) {
                continue;
            }
        } else {
            if (!ready_and_runnable(c, idx)) {
                mark(idx);
                continue;
            }
            if (pass == Pass::kLockHolder) {
                bool holder = preempted(c, idx) &&
                              (!kernel_mode || preempted_in_kernel(c, idx));
                if (!holder && !c.ipi.has_pending_interrupt(idx, c.now)) {
                    c.tally.strict++;
                    continue; /* left for the relaxed pass */
                }
            }
            mark(idx);
            if (!eligible_for_directed_yield(c, idx)) {
                continue;
            }
        }
        bool stop;
        if (attempt(c, me, idx, &tries, &stop) > 0) {
            d->target = idx;
            d->pass = pass == Pass::kReceiver     ? Ctr::yield_receiver
                      : pass == Pass::kLockHolder ? Ctr::yield_lock_holder
                                                  : Ctr::yield_relaxed;
            return true;
        }
        if (stop) {
            return false;
        }
    }
    return false;
}

bool IpiPrioPolicy::try_receiver(PolicyContext &c, int me, int idx, int *tries, bool *stop,
                                 Decision *d)
{
    using namespace detail;
    *stop = false;
    if (idx == me || seen(idx) || !c.ipi.is_receiver(me, idx, c.now)) {
        return false;
    }
    mark(idx);
    if (!ready_and_runnable(c, idx)) {
        return false;
    }
    if (attempt(c, me, idx, tries, stop) > 0) {
        d->target = idx;
        d->pass = Ctr::yield_receiver;
        return true;
    }
    return false;
}

/* The same receiver pass over the sender's hint ring: the candidates, in
 * scan order from last_boosted_vcpu + 1, without touching anyone else. */
bool IpiPrioPolicy::receiver_pass_hinted(PolicyContext &c, int me, const int *hint, int nh,
                                         Decision *d)
{
    const int n = c.pool.nr_vcpus();
    const int start = c.pool.last_boosted() + 1;
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
    int tries = c.budget;
    for (int i = 0; i < m; i++) {
        bool stop;
        if (try_receiver(c, me, order[i], &tries, &stop, d)) {
            return true;
        }
        if (stop) {
            return false;
        }
    }
    return false;
}

Decision IpiPrioPolicy::decide(PolicyContext &c, int me, bool kernel_mode)
{
    using namespace detail;
    Decision d;
    if (c.pool.nr_vcpus() < 2) {
        return d;
    }
    if (++epoch_ == 0) { /* wrapped: forget every old mark */
        std::fill_n(seen_.get(), kMaxVcpus, 0u);
        epoch_ = 1;
    }
    begin_spin(c, me);
    bool done = false;
    if (c.ipi.enabled() && c.ipi.may_have_receivers(me)) {
        int hint[kReceiverHints];
        int nh = c.ipi.receiver_hints(me, c.now, hint);
        done = nh < 0 ? run_pass(c, Pass::kReceiver, me, kernel_mode, &d)
                      : receiver_pass_hinted(c, me, hint, nh, &d);
    }
    if (!done) {
        done = run_pass(c, Pass::kLockHolder, me, kernel_mode, &d);
    }
    if (!done && c.relaxed_boost) {
        run_pass(c, Pass::kRelaxed, me, kernel_mode, &d);
    }
    end_spin(c, me);
    return d;
}

} // namespace

std::unique_ptr<YieldPolicy> make_ipi_prio_policy()
{
    return std::make_unique<IpiPrioPolicy>();
}

} // namespace vsched
