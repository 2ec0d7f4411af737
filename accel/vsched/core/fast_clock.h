/*
 * vsched core: a cheap ns clock for the PAUSE hook.
 *
 * clock_gettime() costs 20-30 ns on a VM with kvm-clock, more than the
 * whole hook should.  With an invariant TSC (CPUID 0x80000007 EDX[8]) this
 * clock is rdtsc scaled to ns, calibrated once against CLOCK_MONOTONIC; it
 * falls back to steady_clock otherwise.  Only the spin detector uses it:
 * it compares a vCPU's PAUSE times with each other (gap, window), where a
 * ppm-level rate error does not matter.
 */
#ifndef VSCHED_CORE_FAST_CLOCK_H
#define VSCHED_CORE_FAST_CLOCK_H

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define VSCHED_HAVE_TSC 1
#endif

namespace vsched {

__extension__ typedef unsigned __int128 vsched_u128;

uint64_t steady_now_ns();

class FastClock {
public:
    /* Calibrates (about 1 ms) if the TSC is invariant. */
    FastClock();
    bool uses_tsc() const { return tsc_; }
    uint64_t now_ns() const
    {
#ifdef VSCHED_HAVE_TSC
        if (tsc_) {
            uint64_t d = __rdtsc() - base_tsc_;
            return base_ns_ + static_cast<uint64_t>(
                                  (static_cast<vsched_u128>(d) * mult_) >> 32);
        }
#endif
        return steady_now_ns();
    }

private:
    bool tsc_ = false;
    uint64_t base_tsc_ = 0;
    uint64_t base_ns_ = 0;
    uint64_t mult_ = 0; /* ns per tick << 32 */
};

} // namespace vsched

#endif
