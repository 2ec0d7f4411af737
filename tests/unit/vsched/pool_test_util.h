/*
 * Helpers shared by the shared-pool tests (shared_pool_test.cc,
 * pool_corruption_test.cc, pool_membership_test.cc, vtime_barrier_test.cc):
 * the clock, unique pool names, a small config, removing a pool file,
 * member processes.
 */
#ifndef VSCHED_TEST_POOL_TEST_UTIL_H
#define VSCHED_TEST_POOL_TEST_UTIL_H

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <string>

#include "config.h"
#include "real_host.h"
#include "shared_pool.h"

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

/* Removes the pool's file at the end of a test, whatever happened. */
struct PoolFileGuard {
    std::string name;
    ~PoolFileGuard() { ::shm_unlink(pool_shm_path(name).c_str()); }
};

/* Run fn in a forked child, which exits with its result (9 if it threw);
 * stderr_fd >= 0: the child's stderr goes there. */
inline pid_t fork_child(const std::function<int()> &fn, int stderr_fd = -1)
{
    pid_t pid = ::fork();
    if (pid == 0) {
        if (stderr_fd >= 0) {
            ::dup2(stderr_fd, 2);
        }
        int rc = 1;
        try {
            rc = fn();
        } catch (...) {
            rc = 9;
        }
        ::_exit(rc);
    }
    return pid;
}

/* The child's exit code, 128 + signal if it was killed, -1 on error. */
inline int wait_exit(pid_t pid)
{
    int st = 0;
    if (::waitpid(pid, &st, 0) != pid) {
        return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

} // namespace vsched::test

#endif
