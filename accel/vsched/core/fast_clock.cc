/* vsched core: TSC-based clock for the PAUSE hook. */
#include "fast_clock.h"

#ifdef VSCHED_HAVE_TSC
#include <cpuid.h>
#endif

namespace vsched {

namespace {

bool invariant_tsc()
{
#ifdef VSCHED_HAVE_TSC
    unsigned a, b, c, d;
    if (!__get_cpuid(0x80000000, &a, &b, &c, &d) || a < 0x80000007) {
        return false;
    }
    __get_cpuid(0x80000007, &a, &b, &c, &d);
    return (d >> 8) & 1;
#else
    return false;
#endif
}

} // namespace

FastClock::FastClock()
{
#ifdef VSCHED_HAVE_TSC
    if (!invariant_tsc()) {
        return;
    }
    uint64_t ns0 = steady_now_ns();
    uint64_t t0 = __rdtsc();
    uint64_t ns1, t1;
    do {
        ns1 = steady_now_ns();
        t1 = __rdtsc();
    } while (ns1 - ns0 < 1'000'000);
    if (t1 <= t0) {
        return;
    }
    mult_ = static_cast<uint64_t>((static_cast<vsched_u128>(ns1 - ns0) << 32) /
                                  (t1 - t0));
    base_tsc_ = t1;
    base_ns_ = ns1;
    tsc_ = mult_ != 0;
#endif
}

} // namespace vsched
