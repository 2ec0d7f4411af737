/*
 * Helpers shared by the shared-pool tests (shared_pool_test.cc and
 * pool_corruption_test.cc): the clock, unique pool names, a small config.
 */
#ifndef VSCHED_TEST_POOL_TEST_UTIL_H
#define VSCHED_TEST_POOL_TEST_UTIL_H

#include <unistd.h>

#include <cstdint>
#include <string>

#include "config.h"
#include "real_host.h"

namespace vsched::test {

inline uint64_t now_ns()
{
    return steady_now_ns();
}

/* A pool name no other test process uses: prefix-tag-pid-sequence. */
inline std::string unique_pool_name(const char *prefix, const char *tag)
{
    static int seq = 0;
    return std::string(prefix) + tag + "-" + std::to_string(::getpid()) + "-" +
           std::to_string(seq++);
}

/* Short slices and a quick PLE, so forked members spin and yield often. */
inline Config small_config(int pcpus)
{
    Config c;
    c.pcpus = pcpus;
    c.slice_ns = 2 * kNsPerMs;
    c.set_policy(policy_id("ipi-prio"));
    c.ple_gap_ns = 50'000;
    c.ple_window_ns = 20'000;
    return c;
}

} // namespace vsched::test

#endif
