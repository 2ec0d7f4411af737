/* vsched core: the series' IPI record, v3 and v1/v2 EOI rules. */
#include "ipi_series.h"

namespace vsched {

SeriesView::SeriesView(int nr_vcpus, EoiRule rule, const std::atomic<uint64_t> &window_ns)
    : nr_(nr_vcpus), rule_(rule), window_(window_ns), ctx_(new Ctx[nr_vcpus])
{
}

void SeriesView::record(int src, int dst, int vector, uint64_t now)
{
    ctx_[src].last_receiver.store(dst, rlx);
    ctx_[src].vector.store(static_cast<int16_t>(vector & 0xff), rlx);
    ctx_[src].pending.store(1, rlx);
    ctx_[src].time_ns.store(now, rlx);
    ctx_[dst].last_sender.store(src, rlx);
}

bool SeriesView::on_eoi(int v, int vector, uint64_t now)
{
    if (!valid(v)) {
        return false;
    }
    return rule_ == EoiRule::kMatchingVector ? eoi_matching_vector(v, vector, now)
                                             : eoi_any(v, now);
}

/* Reconstructed from v3's stated rule (see ipi_series.h).  An EOI of
 * another vector (the receiver's timer, say) changes nothing, and the
 * receiver's own IPIs to others stay pending.  An unknown vector (-1)
 * never matches. */
bool SeriesView::eoi_matching_vector(int v, int vector, uint64_t now)
{
    int sender = ctx_[v].last_sender.load(rlx);
    if (!valid(sender) || vector < 0) {
        return false;
    }
    Ctx &s = ctx_[sender];
    if (s.last_receiver.load(rlx) != v || !live(s.time_ns.load(rlx), now) ||
        s.vector.load(rlx) != (vector & 0xff)) {
        return false;
    }
    ctx_[v].last_sender.store(-1, rlx);
    return s.pending.exchange(0, rlx) != 0;
}

/* v1/v2 kvm_clear_ipi_on_eoi(), as published. */
bool SeriesView::eoi_any(int v, uint64_t now)
{
    int sender = ctx_[v].last_sender.load(rlx);
    ctx_[v].pending.store(0, rlx);
    ctx_[v].last_sender.store(-1, rlx);
    ctx_[v].last_receiver.store(-1, rlx);
    if (valid(sender) && ctx_[sender].last_receiver.load(rlx) == v &&
        live(ctx_[sender].time_ns.load(rlx), now)) {
        return ctx_[sender].pending.exchange(0, rlx) != 0;
    }
    return false;
}

void SeriesView::reset(int v)
{
    if (!valid(v)) {
        return;
    }
    ctx_[v].pending.store(0, rlx);
    ctx_[v].last_sender.store(-1, rlx);
    ctx_[v].last_receiver.store(-1, rlx);
    ctx_[v].vector.store(-1, rlx);
    ctx_[v].time_ns.store(0, rlx);
}

bool SeriesView::is_receiver(int sender, int candidate, uint64_t now) const
{
    if (!valid(sender)) {
        return false;
    }
    const Ctx &c = ctx_[sender];
    return c.pending.load(rlx) && c.last_receiver.load(rlx) == candidate &&
           live(c.time_ns.load(rlx), now);
}

} // namespace vsched
