/* vsched core: IPI bookkeeping (series view and multi-receiver view). */
#include "ipi_tracker.h"

namespace vsched {

namespace {

int32_t make_key(int sender, int vector)
{
    return static_cast<int32_t>((sender << 8) | (vector & 0xff));
}
int key_sender(int32_t key) { return key >> 8; }
int key_vector(int32_t key) { return key & 0xff; }

} // namespace

IpiTracker::IpiTracker(int nr_vcpus, Counters &ctr)
    : nr_(nr_vcpus), ctr_(ctr),
      series_(nr_vcpus, SeriesView::EoiRule::kMatchingVector, window_ns_),
      series_v2_(nr_vcpus, SeriesView::EoiRule::kAnyEoi, window_ns_),
      rx_(new Receiver[nr_vcpus]), outstanding_(new std::atomic<int32_t>[nr_vcpus]),
      hints_(new Hints[nr_vcpus])
{
    for (int v = 0; v < nr_; v++) {
        outstanding_[v].store(0, rlx);
        for (auto &h : hints_[v].v) {
            h.store(-1, rlx);
        }
    }
}

int IpiTracker::receiver_hints(int sender, uint64_t now, int *out) const
{
    const Hints &h = hints_[sender];
    uint64_t of = h.overflow_ns.load(rlx);
    if (of != 0 && live(of, now)) {
        return -1;
    }
    int n = 0;
    for (const auto &x : h.v) {
        int32_t r = x.load(rlx);
        if (r >= 0) {
            out[n++] = r;
        }
    }
    return n;
}

void IpiTracker::drop_entry(Entry &e)
{
    int32_t key = e.key.load(rlx);
    if (key >= 0) {
        outstanding_[key_sender(key)].fetch_sub(1, rlx);
        e.key.store(-1, rlx);
    }
}

/* REQUIRES: caller holds rx_[dst].lock. */
void IpiTracker::record_entry(int src, int dst, int vector, uint64_t now)
{
    Receiver &r = rx_[dst];
    int32_t key = make_key(src, vector);
    Entry *slot = nullptr;
    Entry *oldest = &r.e[0];
    for (auto &e : r.e) {
        int32_t k = e.key.load(rlx);
        if (k == key) {          /* same sender and vector: refresh */
            slot = &e;
            break;
        }
        if (k < 0 || !live(e.time_ns.load(rlx), now)) {
            if (!slot) {
                slot = &e;
            }
            continue;
        }
        if (e.time_ns.load(rlx) < oldest->time_ns.load(rlx)) {
            oldest = &e;
        }
    }
    if (!slot) {
        slot = oldest;
        ctr_.add(Ctr::ipi_entries_evicted);
    }
    if (slot->key.load(rlx) != key) {
        drop_entry(*slot);
        outstanding_[src].fetch_add(1, rlx);
    }
    slot->time_ns.store(now, rlx);
    slot->accepted.store(0, rlx);
    slot->key.store(key, std::memory_order_release);
    ctr_.add(Ctr::ipi_receivers_recorded);
}

void IpiTracker::on_ipi(int src, const int *dst, int ndst, int vector,
                        int delivery_mode, int shorthand, uint64_t now)
{
    ctr_.add(Ctr::ipi_calls);
    if (delivery_mode != kApicDmFixed && delivery_mode != kApicDmLowest) {
        ctr_.add(Ctr::ipi_nonfixed);
        return;
    }
    if (shorthand == kApicShSelf) {
        ctr_.add(Ctr::ipi_self);
        return;
    }
    int others = 0;
    int only = -1;
    for (int i = 0; i < ndst; i++) {
        if (valid(dst[i]) && dst[i] != src) {
            others++;
            only = dst[i];
        }
    }
    if (others == 0) {
        ctr_.add(Ctr::ipi_self);
        return;
    }
    if (shorthand != kApicShNone) {
        ctr_.add(Ctr::ipi_shorthand);
    } else if (others == 1) {
        ctr_.add(Ctr::ipi_unicast);
    } else {
        ctr_.add(Ctr::ipi_multicast);
    }
    if (!enabled() || !valid(src)) {
        ctr_.add(Ctr::ipi_untracked);
        return;
    }
    /* Patch 7's condition: FIXED, no shorthand, one accepting target,
     * not self.  (ndst counts targets, self included.) */
    if (delivery_mode == kApicDmFixed && shorthand == kApicShNone &&
        ndst == 1 && others == 1) {
        series_.record(src, only, vector, now);
        series_v2_.record(src, only, vector, now);
        ctr_.add(Ctr::ipi_series_tracked);
    } else {
        ctr_.add(Ctr::ipi_series_missed);
    }
    Hints &h = hints_[src];
    if (others > kReceiverHints) {
        h.overflow_ns.store(now, rlx);
    }
    for (int i = 0; i < ndst; i++) {
        int d = dst[i];
        if (!valid(d) || d == src) {
            continue;
        }
        {
            Guard g(rx_[d].lock);
            record_entry(src, d, vector, now);
        }
        if (others <= kReceiverHints) {
            uint32_t p = h.pos.load(rlx);
            h.v[p % kReceiverHints].store(d, rlx);
            h.pos.store(p + 1, rlx);
        }
    }
}

void IpiTracker::on_accept(int v, int vector)
{
    ctr_.add(Ctr::irq_accepts);
    if (!valid(v)) {
        return;
    }
    Guard g(rx_[v].lock);
    for (auto &e : rx_[v].e) {
        int32_t k = e.key.load(rlx);
        if (k >= 0 && key_vector(k) == (vector & 0xff)) {
            e.accepted.store(1, rlx);
        }
    }
}

void IpiTracker::on_eoi(int v, int vector, uint64_t now)
{
    ctr_.add(Ctr::eois);
    if (!valid(v) || !enabled()) {
        return;
    }
    if (series_.on_eoi(v, vector, now)) {
        ctr_.add(Ctr::eoi_series_cleared);
    }
    if (series_v2_.on_eoi(v, vector, now)) {
        ctr_.add(Ctr::eoi_series_v2_cleared);
    }
    /* Ours: only entries with the EOI'd vector. */
    if (vector < 0) {
        return;
    }
    Guard g(rx_[v].lock);
    for (auto &e : rx_[v].e) {
        int32_t k = e.key.load(rlx);
        if (k >= 0 && key_vector(k) == (vector & 0xff)) {
            drop_entry(e);
            ctr_.add(Ctr::eoi_cleared);
        }
    }
}

void IpiTracker::reset_vcpu(int v)
{
    if (!valid(v)) {
        return;
    }
    series_.reset(v);
    series_v2_.reset(v);
    Guard g(rx_[v].lock);
    for (auto &e : rx_[v].e) {
        drop_entry(e);
    }
}

bool IpiTracker::is_receiver(int sender, int candidate, uint64_t now) const
{
    if (!enabled()) {
        return false;
    }
    for (const auto &e : rx_[candidate].e) {
        int32_t k = e.key.load(rlx);
        if (k >= 0 && key_sender(k) == sender && live(e.time_ns.load(rlx), now)) {
            return true;
        }
    }
    return false;
}

bool IpiTracker::has_pending_interrupt(int v, uint64_t now) const
{
    for (const auto &e : rx_[v].e) {
        if (e.key.load(rlx) >= 0 && !e.accepted.load(rlx) &&
            live(e.time_ns.load(rlx), now)) {
            return true;
        }
    }
    return false;
}

int IpiTracker::pending_entries(int v, uint64_t now, int *senders, int *vectors,
                                int max) const
{
    int n = 0;
    for (const auto &e : rx_[v].e) {
        int32_t k = e.key.load(rlx);
        if (k >= 0 && live(e.time_ns.load(rlx), now) && n < max) {
            senders[n] = key_sender(k);
            vectors[n] = key_vector(k);
            n++;
        }
    }
    return n;
}

bool IpiTracker::is_callfn_receiver(int sender, int candidate, uint64_t now) const
{
    if (!enabled()) {
        return false;
    }
    for (const auto &e : rx_[candidate].e) {
        int32_t k = e.key.load(rlx);
        if (k >= 0 && key_sender(k) == sender && live(e.time_ns.load(rlx), now) &&
            (key_vector(k) == kCallFunctionVector ||
             key_vector(k) == kCallFunctionSingleVector)) {
            return true;
        }
    }
    return false;
}

int IpiTracker::held_vector(int sender, int candidate, uint64_t now) const
{
    if (!enabled() || !valid(sender) || !valid(candidate)) {
        return -1;
    }
    int vector = -1;
    for (const auto &e : rx_[candidate].e) {
        int32_t k = e.key.load(rlx);
        if (k < 0 || key_sender(k) != sender || !live(e.time_ns.load(rlx), now)) {
            continue;
        }
        const int vec = key_vector(k);
        if (vec == kCallFunctionVector || vec == kCallFunctionSingleVector) {
            return vec;
        }
        vector = vec;
    }
    return vector;
}

int IpiTracker::last_receiver(int sender, uint64_t now) const
{
    if (!valid(sender) || !may_have_receivers(sender)) {
        return -1;
    }
    const Hints &h = hints_[sender];
    uint32_t p = h.pos.load(rlx);
    if (p == 0) {
        return -1;
    }
    int32_t r = h.v[(p - 1) % kReceiverHints].load(rlx);
    return valid(r) && r != sender && is_receiver(sender, r, now) ? r : -1;
}

int IpiTracker::receivers_of(int sender, uint64_t now, int *out, int max) const
{
    int n = 0;
    for (int v = 0; v < nr_ && n < max; v++) {
        if (v != sender && is_receiver(sender, v, now)) {
            out[n++] = v;
        }
    }
    return n;
}

} // namespace vsched
