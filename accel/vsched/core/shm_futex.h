/*
 * vsched core: futex waits and wakes on words in shared memory, and the
 * monotonic clock their timeouts count in (the pool lock, the mailboxes
 * and the virtual-time barrier all use them).  Not FUTEX_PRIVATE: the word
 * is in other processes' mappings too.
 */
#ifndef VSCHED_CORE_SHM_FUTEX_H
#define VSCHED_CORE_SHM_FUTEX_H

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <climits>
#include <cstdint>

namespace vsched {

inline uint64_t mono_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull +
           static_cast<uint64_t>(ts.tv_nsec);
}

/* Sleep while *word == seen, at most timeout_ns (or until woken). */
inline void futex_wait(uint32_t *word, uint32_t seen, uint64_t timeout_ns)
{
    timespec ts = {static_cast<time_t>(timeout_ns / 1'000'000'000ull),
                   static_cast<long>(timeout_ns % 1'000'000'000ull)};
    syscall(SYS_futex, word, FUTEX_WAIT, seen, &ts, nullptr, 0);
}

/* The same, for a wake-up that names one of `bits` (or any futex_wake). */
inline void futex_wait_bits(uint32_t *word, uint32_t seen, uint64_t timeout_ns, uint32_t bits)
{
    const uint64_t at = mono_ns() + timeout_ns; /* absolute, CLOCK_MONOTONIC */
    timespec ts = {static_cast<time_t>(at / 1'000'000'000ull),
                   static_cast<long>(at % 1'000'000'000ull)};
    syscall(SYS_futex, word, FUTEX_WAIT_BITSET, seen, &ts, nullptr, bits);
}

/* Wake the waiters of word whose bits meet `bits`. */
inline void futex_wake_bits(uint32_t *word, uint32_t bits)
{
    syscall(SYS_futex, word, FUTEX_WAKE_BITSET, INT_MAX, nullptr, nullptr, bits);
}

/* Wake up to n waiters of word (INT_MAX: all). */
inline void futex_wake(uint32_t *word, int n = INT_MAX)
{
    syscall(SYS_futex, word, FUTEX_WAKE, n, nullptr, nullptr, 0);
}

} // namespace vsched

#endif
