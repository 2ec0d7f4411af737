/* Shared helpers for the vsched guest workloads (header-only, static builds).
 *
 * Conventions every workload follows:
 *   -t N        threads (default: $VSCHED_THREADS, else online CPUs)
 *   -s SIZE     small|large (default: $VSCHED_SIZE, else small)
 *   last line   "VSCHED-KV key=value ..." : the guest init copies these pairs
 *               into the VSCHED-RESULT JSON (keys [a-z0-9_], values without
 *               spaces or quotes).
 */
#ifndef VSCHED_WORKLOAD_COMMON_H
#define VSCHED_WORKLOAD_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline long futex(volatile int *uaddr, int op, int val)
{
    return syscall(SYS_futex, uaddr, op, val, NULL, NULL, 0);
}

static inline int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Pin the calling thread to CPU (idx % online CPUs). Failure is not fatal. */
static inline int pin_round_robin(int idx)
{
    int cpu = idx % online_cpus();
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
        return -1;
    return cpu;
}

static inline int default_threads(void)
{
    const char *e = getenv("VSCHED_THREADS");
    int n = e && *e ? atoi(e) : 0;
    return n > 0 ? n : online_cpus();
}

/* 1 for large, 0 for small. */
static inline int default_large(void)
{
    const char *e = getenv("VSCHED_SIZE");
    return e && strcmp(e, "large") == 0;
}

static inline int parse_size(const char *s)
{
    if (strcmp(s, "small") == 0)
        return 0;
    if (strcmp(s, "large") == 0)
        return 1;
    fprintf(stderr, "unknown size '%s' (small|large)\n", s);
    exit(2);
}

static inline void die(const char *what)
{
    perror(what);
    exit(1);
}

/* 64-bit mix (splitmix64 finaliser) for order-independent checksums. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Aggregate CPU time from /proc/stat, in ticks: [0] user+nice, [1] system+irq+softirq,
 * [2] idle+iowait, [3] steal. Returns 0 on success. */
static inline int cpu_ticks(unsigned long long t[4])
{
    unsigned long long v[8] = { 0 };
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 4)
        return -1;
    t[0] = v[0] + v[1];
    t[1] = v[2] + v[5] + v[6];
    t[2] = v[3] + v[4];
    t[3] = v[7];
    return 0;
}

/* Busy CPU seconds of all CPUs (user, system, irq: not idle, iowait or
 * steal) since before[]; -1 if /proc/stat is unreadable.  USER_HZ is 100 on
 * x86.  With N VMs sharing P pCPUs, N times this over the ROI of an
 * unscheduled run, divided by P, is the least time the N VMs can take. */
static inline double busy_seconds_since(const unsigned long long before[4])
{
    unsigned long long after[4];
    if (cpu_ticks(after) != 0)
        return -1;
    return (double)(after[0] - before[0] + after[1] - before[1]) / sysconf(_SC_CLK_TCK);
}

/* Print " user_frac=.. sys_frac=.. idle_frac=.." for the interval since before[]. */
static inline void print_cpu_fracs(const unsigned long long before[4])
{
    unsigned long long after[4], d[4], total = 0;
    if (cpu_ticks(after) != 0)
        return;
    for (int i = 0; i < 4; i++) {
        d[i] = after[i] - before[i];
        total += d[i];
    }
    if (total == 0)
        return;
    printf(" user_frac=%.3f sys_frac=%.3f idle_frac=%.3f", (double)d[0] / total,
           (double)d[1] / total, (double)d[2] / total);
}

#endif
