/*
 * vsched core: the series' IPI record (ipi_context), in two variants.
 *
 * Per vCPU, as a sender {last_ipi_receiver, pending_ipi, ipi_time_ns,
 * vector}, as a receiver {last_ipi_sender}.  Recorded for fixed,
 * no-shorthand IPIs with exactly one non-self destination (patch 7).
 *
 * The variants differ only in how an EOI clears the record:
 *
 *  - kMatchingVector (v3, "Clear IPI tracking on matching-vector EOI"),
 *    reconstructed from v3's stated rule "clear state on a matching-vector
 *    EOI without dropping unrelated pending IPI state" (the v3 08/10 body is
 *    not public): the sender's record keeps the vector; an EOI of vector V
 *    by receiver R clears the sender's pending only if the record still
 *    points at R, is inside the window and has vector V, and then forgets
 *    R's last_sender.  R's own sender record is left alone.
 *
 *  - kAnyEoi (v1/v2 kvm_clear_ipi_on_eoi, public): any EOI by R clears R's
 *    whole context (its own sender record too, a side effect) and the
 *    sender's pending if the sender still points at R inside the window.
 */
#ifndef VSCHED_CORE_IPI_SERIES_H
#define VSCHED_CORE_IPI_SERIES_H

#include <atomic>
#include <cstdint>
#include <memory>

namespace vsched {

class SeriesView {
public:
    enum class EoiRule { kMatchingVector, kAnyEoi };

    SeriesView(int nr_vcpus, EoiRule rule, const std::atomic<uint64_t> &window_ns);

    /* kvm_track_ipi_communication(), with the vector kept (v3). */
    void record(int src, int dst, int vector, uint64_t now);
    /* The EOI rule of the variant.  Returns true when it cleared a
     * sender's pending IPI. */
    bool on_eoi(int v, int vector, uint64_t now);
    /* kvm_vcpu_reset_ipi_context() */
    void reset(int v);

    /* kvm_vcpu_is_ipi_receiver() without the enabled check. */
    bool is_receiver(int sender, int candidate, uint64_t now) const;
    int last_sender(int v) const { return ctx_[v].last_sender.load(rlx); }
    int last_receiver(int v) const { return ctx_[v].last_receiver.load(rlx); }
    bool pending(int v) const { return ctx_[v].pending.load(rlx) != 0; }
    uint64_t time(int v) const { return ctx_[v].time_ns.load(rlx); }
    int vector(int v) const { return ctx_[v].vector.load(rlx); }

private:
    static constexpr std::memory_order rlx = std::memory_order_relaxed;
    struct Ctx {
        std::atomic<int32_t> last_sender{-1};
        std::atomic<int32_t> last_receiver{-1};
        std::atomic<uint8_t> pending{0};
        std::atomic<int16_t> vector{-1};
        std::atomic<uint64_t> time_ns{0};
    };

    bool valid(int v) const { return v >= 0 && v < nr_; }
    bool live(uint64_t t, uint64_t now) const
    {
        return now >= t ? now - t <= window_.load(rlx) : true;
    }
    bool eoi_matching_vector(int v, int vector, uint64_t now);
    bool eoi_any(int v, uint64_t now);

    int nr_;
    EoiRule rule_;
    const std::atomic<uint64_t> &window_;
    std::unique_ptr<Ctx[]> ctx_;
};

} // namespace vsched

#endif
