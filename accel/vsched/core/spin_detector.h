/*
 * vsched core: PAUSE-loop detection modelled on PLE.
 *
 * A PAUSE no further than `gap` from the previous one continues the current
 * spin; a spin that lasts `window` fires once (the PLE exit).  The window is
 * per vCPU: it grows (x grow, clamped to max) after a spin that yielded
 * nothing and resets to the base when the vCPU is scheduled out, as VMX's
 * grow_ple_window()/shrink_ple_window() with ple_window_shrink = 0.
 *
 * on_pause() is the hot hook: lock-free, wait-free, one cache line per vCPU,
 * written only by the vCPU's own thread.  Knobs are relaxed atomics.
 */
#ifndef VSCHED_CORE_SPIN_DETECTOR_H
#define VSCHED_CORE_SPIN_DETECTOR_H

#include <atomic>
#include <cstdint>
#include <memory>

namespace vsched {

class SpinDetector {
public:
    SpinDetector(int nr_vcpus, uint64_t gap_ns, uint64_t window_ns,
                 uint64_t window_max_ns, unsigned grow);

    /* Returns true when this PAUSE fires a spin (at most once per spin). */
    bool on_pause(int v, int cpl, uint64_t now)
    {
        Slot &s = slots_[v];
        bump(s.pauses);
        uint64_t last = s.last_pause_ns.load(std::memory_order_relaxed);
        s.last_pause_ns.store(now, std::memory_order_relaxed);
        if (last == 0 || now - last > gap_ns_.load(std::memory_order_relaxed)) {
            s.spin_start_ns.store(now, std::memory_order_relaxed);
            return false;
        }
        /* Inside a PAUSE loop since the previous PAUSE: spin waste. */
        s.spin_ns.store(s.spin_ns.load(std::memory_order_relaxed) + (now - last),
                        std::memory_order_relaxed);
        if (s.pending.load(std::memory_order_relaxed)) {
            return false;
        }
        uint64_t start = s.spin_start_ns.load(std::memory_order_relaxed);
        if (now - start < s.window_ns.load(std::memory_order_relaxed)) {
            return false;
        }
        s.pending_cpl.store(cpl, std::memory_order_relaxed);
        s.pending.store(1, std::memory_order_release);
        s.spin_start_ns.store(now, std::memory_order_relaxed);
        bump(s.spins);
        return true;
    }

    /* v's last PAUSE was at most a gap before now: it is in a PAUSE loop
     * (or was when it last left guest code). */
    bool in_spin(int v, uint64_t now) const
    {
        const uint64_t last = slots_[v].last_pause_ns.load(std::memory_order_relaxed);
        return last != 0 && now >= last && now - last <= gap_ns_.load(std::memory_order_relaxed);
    }

    /* MWAIT is idle, not a spin: it ends any spin in progress. */
    void on_mwait(int v)
    {
        Slot &s = slots_[v];
        bump(s.mwaits);
        s.last_pause_ns.store(0, std::memory_order_relaxed);
    }

    /* Tests/benchmarks: make a spin fire now without PAUSEs. */
    void inject(int v, int cpl)
    {
        Slot &s = slots_[v];
        if (!s.pending.load(std::memory_order_relaxed)) {
            s.pending_cpl.store(cpl, std::memory_order_relaxed);
            s.pending.store(1, std::memory_order_release);
            bump(s.spins);
        }
    }

    /* Consume a fired spin; returns false if none; *cpl gets its CPL. */
    bool take_pending(int v, int *cpl)
    {
        Slot &s = slots_[v];
        if (!s.pending.load(std::memory_order_acquire)) {
            return false;
        }
        *cpl = s.pending_cpl.load(std::memory_order_relaxed);
        s.pending.store(0, std::memory_order_relaxed);
        return true;
    }
    bool pending(int v) const
    {
        return slots_[v].pending.load(std::memory_order_relaxed) != 0;
    }

    /* A spin yielded nothing: grow the window.  Returns the new window. */
    uint64_t grow_window(int v);
    /* The vCPU was scheduled out: window back to base, spin broken.
     * Returns true if the window was above the base. */
    bool reset_window(int v);
    uint64_t window(int v) const
    {
        return slots_[v].window_ns.load(std::memory_order_relaxed);
    }

    void set_gap(uint64_t ns) { gap_ns_.store(ns, std::memory_order_relaxed); }
    void set_base_window(uint64_t ns);
    uint64_t gap() const { return gap_ns_.load(std::memory_order_relaxed); }
    uint64_t base_window() const { return base_ns_.load(std::memory_order_relaxed); }

    uint64_t pauses(int v) const { return slots_[v].pauses.load(std::memory_order_relaxed); }
    uint64_t spins(int v) const { return slots_[v].spins.load(std::memory_order_relaxed); }
    uint64_t mwaits(int v) const { return slots_[v].mwaits.load(std::memory_order_relaxed); }
    uint64_t total_pauses() const;
    /* Time inside PAUSE loops, all vCPUs. */
    uint64_t total_spin_ns() const;
    uint64_t total_spins() const;
    uint64_t total_mwaits() const;
    int pending_count() const;

private:
    struct alignas(64) Slot {
        std::atomic<uint64_t> last_pause_ns{0};
        std::atomic<uint64_t> spin_start_ns{0};
        std::atomic<uint64_t> window_ns{0};
        std::atomic<uint64_t> pauses{0};
        std::atomic<uint64_t> spins{0};
        std::atomic<uint64_t> mwaits{0};
        std::atomic<uint64_t> spin_ns{0};
        std::atomic<int32_t> pending_cpl{0};
        std::atomic<uint32_t> pending{0};
    };
    /* Single writer: a plain load+store is enough and avoids a locked RMW. */
    static void bump(std::atomic<uint64_t> &c)
    {
        c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }

    int nr_;
    std::unique_ptr<Slot[]> slots_;
    std::atomic<uint64_t> gap_ns_;
    std::atomic<uint64_t> base_ns_;
    std::atomic<uint64_t> max_ns_;
    unsigned grow_;
};

} // namespace vsched

#endif
