/* vsched core: virtual time rounds (see vtime.h). */
#include "vtime.h"

#include <algorithm>
#include <cassert>

namespace vsched {

VirtualRounds::VirtualRounds(int slots, uint64_t quantum, uint64_t start)
    : quantum_(std::max<uint64_t>(1, quantum)), start_(start),
      progress_(static_cast<size_t>(std::max(1, slots)), 0)
{
}

uint64_t VirtualRounds::begin(uint64_t to_deadline)
{
    assert(!open_);
    /* A deadline due now still gives a round of one instruction: the
     * driver runs due timers before it begins a round. */
    length_ = std::clamp<uint64_t>(to_deadline, 1, quantum_);
    if (length_ < quantum_) {
        counters_.short_rounds++;
    }
    std::fill(progress_.begin(), progress_.end(), 0);
    open_ = true;
    return length_;
}

void VirtualRounds::account(int s, uint64_t executed)
{
    assert(open_ && executed <= left(s));
    progress_[s] += executed;
    counters_.executed += executed;
}

void VirtualRounds::charge(int s, uint64_t cost)
{
    uint64_t c = std::min(cost, left(s));
    progress_[s] += c;
    counters_.charged += c;
}

void VirtualRounds::idle(int s)
{
    counters_.idle += left(s);
    progress_[s] = length_;
}

void VirtualRounds::idle_until(int s, uint64_t t)
{
    if (t > now(s)) {
        uint64_t d = std::min(t - now(s), left(s));
        progress_[s] += d;
        counters_.idle += d;
    }
}

uint64_t VirtualRounds::end()
{
    assert(open_);
    for (int s = 0; s < slots(); s++) {
        assert(left(s) == 0);
    }
    start_ += length_;
    open_ = false;
    counters_.rounds++;
    return start_;
}

void VirtualRounds::warp(uint64_t insns)
{
    assert(!open_);
    start_ += insns;
    counters_.warps++;
    counters_.warped += insns;
}

} // namespace vsched
