/*
 * vsched core: IPI bookkeeping.
 *
 * Two views, kept side by side:
 *
 *  - The series' view (ipi_series.h: the series' per-vCPU ipi_context),
 *    recorded only for fixed, no-shorthand IPIs with exactly one non-self
 *    destination, twice: series() clears on a matching-vector EOI (v3,
 *    reconstructed from its stated rule), series_v2() on any EOI with the
 *    v1/v2 side effect of wiping the receiver's own sender record.
 *
 *  - Our view: every fixed / lowest-priority IPI, multicast and shorthand
 *    included, leaves an entry {sender, vector, time, accepted} at each
 *    receiver (a few entries per receiver; the oldest is evicted).  An EOI
 *    clears only the receiver's entries with the EOI'd vector; the
 *    receiver's own IPIs to others are untouched.
 *
 * Both views age out lazily: an entry older than the window reads as absent.
 * Writers are the IPI/accept/EOI hooks (QEMU holds the BQL there; a tiny
 * per-receiver spinlock makes the tracker safe without it); readers (the
 * policies, under the core mutex) use relaxed loads, like the kernel's
 * READ_ONCE: a racy read costs at most one less-than-ideal yield.
 */
#ifndef VSCHED_CORE_IPI_TRACKER_H
#define VSCHED_CORE_IPI_TRACKER_H

#include <atomic>
#include <cstdint>
#include <memory>

#include "counters.h"
#include "ipi_series.h"

namespace vsched {

/* APIC delivery modes and shorthands (ICR bits 10:8 and 19:18). */
enum : int {
    kApicDmFixed = 0,
    kApicDmLowest = 1,
    kApicDmSmi = 2,
    kApicDmNmi = 4,
    kApicDmInit = 5,
    kApicDmSipi = 6,
};
enum : int {
    kApicShNone = 0,
    kApicShSelf = 1,
    kApicShAll = 2,
    kApicShAllButSelf = 3,
};

inline constexpr int kPendingPerVcpu = 8;
/* Recent receivers remembered per sender (a hint for the receiver pass). */
inline constexpr int kReceiverHints = 8;

/* Linux x86 (arch/x86/include/asm/irq_vectors.h). */
inline constexpr int kCallFunctionVector = 0xfc;
inline constexpr int kCallFunctionSingleVector = 0xfb;

class IpiTracker {
public:
    IpiTracker(int nr_vcpus, Counters &ctr);

    void set_enabled(bool on) { enabled_.store(on, std::memory_order_relaxed); }
    bool enabled() const { return enabled_.load(std::memory_order_relaxed); }
    void set_window(uint64_t ns) { window_ns_.store(ns, std::memory_order_relaxed); }
    uint64_t window() const { return window_ns_.load(std::memory_order_relaxed); }

    /* One IPI: dst lists the vCPUs that accept it (for shorthand IPIs the
     * caller may pass the expanded set).  Invalid indices are ignored. */
    void on_ipi(int src, const int *dst, int ndst, int vector, int delivery_mode,
                int shorthand, uint64_t now);
    /* The receiver moved `vector` from IRR to ISR. */
    void on_accept(int v, int vector);
    /* The receiver EOI'd `vector` (-1: unknown vector, series rule only). */
    void on_eoi(int v, int vector, uint64_t now);
    /* vCPU reset (series: kvm_vcpu_reset_ipi_context + our entries). */
    void reset_vcpu(int v);

    /* --- the series' view: v3 (matching-vector EOI), v1/v2 (any EOI) --- */
    const SeriesView &series() const { return series_; }
    const SeriesView &series_v2() const { return series_v2_; }
    /* kvm_vcpu_is_ipi_receiver() in the v3 / the v1/v2 record. */
    bool series_is_receiver(int sender, int candidate, uint64_t now) const
    {
        return enabled() && series_.is_receiver(sender, candidate, now);
    }
    bool series_v2_is_receiver(int sender, int candidate, uint64_t now) const
    {
        return enabled() && series_v2_.is_receiver(sender, candidate, now);
    }

    /* --- our view --- */
    /* Does candidate hold an un-EOI'd IPI from sender within the window? */
    bool is_receiver(int sender, int candidate, uint64_t now) const;
    /* Does sender possibly have receivers?  (cheap hint, may be stale) */
    bool may_have_receivers(int sender) const
    {
        return outstanding_[sender].load(rlx) > 0;
    }
    /*
     * Candidates for "receivers of sender": copies up to kReceiverHints
     * vCPU indices (unvalidated, may repeat; check with is_receiver()) and
     * returns how many, or -1 when the hints may be incomplete (a multicast
     * wider than the ring within the window): then scan everyone.
     */
    int receiver_hints(int sender, uint64_t now, int *out) const;
    /* Is an IPI pending at v that it has not accepted yet (IRR)? */
    bool has_pending_interrupt(int v, uint64_t now) const;
    /* Entries at receiver v that are live; returns how many were copied. */
    int pending_entries(int v, uint64_t now, int *senders, int *vectors, int max) const;
    /* Does candidate hold an un-EOI'd call-function IPI (Linux's
     * CALL_FUNCTION / CALL_FUNCTION_SINGLE vector) from sender?  Its
     * sender waits for it in smp_call_function*(); a reschedule IPI's
     * sender does not. */
    bool is_callfn_receiver(int sender, int candidate, uint64_t now) const;
    /* The vector of an un-EOI'd IPI from sender that candidate holds (a
     * call-function one first: its sender waits for exactly that EOI), or
     * -1. */
    int held_vector(int sender, int candidate, uint64_t now) const;
    /* The latest receiver of sender that still holds its IPI, or -1. */
    int last_receiver(int sender, uint64_t now) const;
    /* Live receivers of sender; returns how many were copied. */
    int receivers_of(int sender, uint64_t now, int *out, int max) const;

private:
    static constexpr std::memory_order rlx = std::memory_order_relaxed;

    struct Entry {
        std::atomic<int32_t> key{-1}; /* sender << 8 | vector, -1 empty */
        std::atomic<uint8_t> accepted{0};
        std::atomic<uint64_t> time_ns{0};
    };
    struct alignas(64) Receiver {
        std::atomic_flag lock = ATOMIC_FLAG_INIT;
        Entry e[kPendingPerVcpu];
    };
    class Guard {
    public:
        explicit Guard(std::atomic_flag &f) : f_(f)
        {
            while (f_.test_and_set(std::memory_order_acquire)) {
            }
        }
        ~Guard() { f_.clear(std::memory_order_release); }

    private:
        std::atomic_flag &f_;
    };

    bool valid(int v) const { return v >= 0 && v < nr_; }
    bool live(uint64_t t, uint64_t now) const
    {
        return now >= t ? now - t <= window() : true;
    }
    void record_entry(int src, int dst, int vector, uint64_t now);
    void drop_entry(Entry &e);

    int nr_;
    Counters &ctr_;
    std::atomic<bool> enabled_{true};
    std::atomic<uint64_t> window_ns_{50'000'000};
    SeriesView series_;
    SeriesView series_v2_;
    std::unique_ptr<Receiver[]> rx_;
    std::unique_ptr<std::atomic<int32_t>[]> outstanding_;
    struct alignas(64) Hints {
        std::atomic<int32_t> v[kReceiverHints];
        std::atomic<uint32_t> pos{0};
        std::atomic<uint64_t> overflow_ns{0}; /* last too-wide multicast */
    };
    std::unique_ptr<Hints[]> hints_;
};

} // namespace vsched

#endif
