/* vsched core: PLE-style spin windows. */
#include "spin_detector.h"

#include <algorithm>

namespace vsched {

SpinDetector::SpinDetector(int nr_vcpus, uint64_t gap_ns, uint64_t window_ns,
                           uint64_t window_max_ns, unsigned grow)
    : nr_(nr_vcpus), slots_(new Slot[nr_vcpus]), gap_ns_(gap_ns),
      base_ns_(window_ns), max_ns_(std::max(window_ns, window_max_ns)),
      grow_(grow)
{
    for (int v = 0; v < nr_; v++) {
        slots_[v].window_ns.store(window_ns, std::memory_order_relaxed);
    }
}

/* __grow_ple_window(): multiply if the modifier is below the base, else add. */
uint64_t SpinDetector::grow_window(int v)
{
    Slot &s = slots_[v];
    uint64_t cur = s.window_ns.load(std::memory_order_relaxed);
    uint64_t base = base_ns_.load(std::memory_order_relaxed);
    uint64_t max = std::max(max_ns_.load(std::memory_order_relaxed), base);
    uint64_t next;
    if (grow_ < 1) {
        next = base;
    } else if (grow_ < base) {
        next = cur > max / grow_ ? max : cur * grow_;
    } else {
        next = cur + grow_;
    }
    next = std::min(next, max);
    s.window_ns.store(next, std::memory_order_relaxed);
    return next;
}

bool SpinDetector::reset_window(int v)
{
    Slot &s = slots_[v];
    uint64_t base = base_ns_.load(std::memory_order_relaxed);
    bool shrunk = s.window_ns.load(std::memory_order_relaxed) != base;
    s.window_ns.store(base, std::memory_order_relaxed);
    s.last_pause_ns.store(0, std::memory_order_relaxed);
    return shrunk;
}

void SpinDetector::set_base_window(uint64_t ns)
{
    base_ns_.store(ns, std::memory_order_relaxed);
    if (max_ns_.load(std::memory_order_relaxed) < ns) {
        max_ns_.store(ns, std::memory_order_relaxed);
    }
}

uint64_t SpinDetector::total_pauses() const
{
    uint64_t t = 0;
    for (int v = 0; v < nr_; v++) {
        t += pauses(v);
    }
    return t;
}

uint64_t SpinDetector::total_spin_ns() const
{
    uint64_t t = 0;
    for (int v = 0; v < nr_; v++) {
        t += slots_[v].spin_ns.load(std::memory_order_relaxed);
    }
    return t;
}

uint64_t SpinDetector::total_spins() const
{
    uint64_t t = 0;
    for (int v = 0; v < nr_; v++) {
        t += spins(v);
    }
    return t;
}

uint64_t SpinDetector::total_mwaits() const
{
    uint64_t t = 0;
    for (int v = 0; v < nr_; v++) {
        t += mwaits(v);
    }
    return t;
}

int SpinDetector::pending_count() const
{
    int n = 0;
    for (int v = 0; v < nr_; v++) {
        n += pending(v) ? 1 : 0;
    }
    return n;
}

} // namespace vsched
