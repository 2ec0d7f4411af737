/* cpuloop: the same CPU-bound loop on every thread, nothing shared.
 *
 * The physics check of virtual time (docs/design/virtual-time.rst): V
 * threads, one pinned per vCPU, on P slots must take max(1, V/P) times
 * as long as one thread alone.  Each thread runs ITERS rounds of a
 * register-only mix (no memory traffic, no system calls) after a common
 * start barrier.  A thread that is done waits at an end barrier before
 * it exits: a thread's exit shoots down TLB entries on every vCPU of the
 * process (glibc frees the unused stack), and with more vCPUs than slots
 * the exiting thread would spin until the preempted ones run, which is
 * sharing, not the loop.  Reports, in the result's VSCHED-KV line:
 *   loop_ns      from the barrier to the last thread's end (CLOCK_MONOTONIC)
 *   loop_min_ns  the first thread's end
 *   loop_sum     checksum of every thread's result (fixed for ITERS)
 *   loop_start_tsc, loop_end_tsc  the barrier and the last end on the
 *                TSC: under -icount it counts virtual ns since the machine
 *                started, one time base for every VM of a pool (the
 *                guest's CLOCK_MONOTONIC is not: its origin is a point of
 *                each VM's boot), to see when two VMs' loops overlap
 *
 * Options for runs beside other VMs and with hotplug:
 *   -a SECONDS   start the loop when the TSC reaches SECONDS x 10^9, not at
 *                once: under -icount that is a virtual instant common to
 *                every VM of a pool, which boot at different speeds, so
 *                their loops overlap (fails if the instant has passed)
 *   -u           threads not pinned: the kernel places them, so a
 *                hot-added vCPU gets one
 *
 * usage: cpuloop [-t THREADS] [-s small|large] [-n ITERS] [-a SECONDS] [-u]
 */
#include "common.h"

#include <x86intrin.h>

struct worker {
    pthread_t tid;
    int idx;
    uint64_t sum;
    double end;
    uint64_t end_tsc;
} __attribute__((aligned(64)));

static long iters;
static pthread_barrier_t barrier;
static double start, start_at;
static uint64_t start_tsc;
static int unpinned;

/* Sleeps until the TSC reaches start_at seconds (1 tick = 1 ns, as under
 * -icount); -1 when that has passed.  The sleep is on CLOCK_MONOTONIC,
 * whose rate is the TSC's (only its origin differs): a few ppm off at most. */
static int wait_for_start(void)
{
    double mono = now_seconds();
    int64_t ahead = (int64_t)(start_at * 1e9) - (int64_t)__rdtsc();
    double until = mono + ahead * 1e-9;
    struct timespec ts = {
        .tv_sec = (time_t)until,
        .tv_nsec = (long)((until - (time_t)until) * 1e9),
    };

    if (ahead <= 0)
        return -1;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
    return 0;
}

/* About 8 instructions per iteration, all in registers. */
static uint64_t loop(long n, uint64_t x)
{
    for (long i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        x ^= x >> 29;
    }
    return x;
}

static void *run(void *arg)
{
    struct worker *w = arg;

    if (!unpinned)
        pin_round_robin(w->idx);
    pthread_barrier_wait(&barrier);
    if (w->idx == 0) {
        if (start_at > 0 && wait_for_start() != 0) {
            fprintf(stderr, "cpuloop: -a %.3f: that instant has passed (TSC at %.3f s): "
                    "start later\n", start_at, __rdtsc() * 1e-9);
            exit(1);
        }
        start = now_seconds();
        start_tsc = __rdtsc();
    }
    pthread_barrier_wait(&barrier);
    w->sum = loop(iters, (uint64_t)w->idx + 1);
    w->end = now_seconds();
    w->end_tsc = __rdtsc();
    pthread_barrier_wait(&barrier);
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = default_threads(), large = default_large(), opt;

    iters = 0;
    while ((opt = getopt(argc, argv, "t:s:n:a:u")) != -1) {
        switch (opt) {
        case 't': nthreads = atoi(optarg); break;
        case 's': large = parse_size(optarg); break;
        case 'n': iters = atol(optarg); break;
        case 'a': {
            char *end;
            start_at = strtod(optarg, &end);
            if (*optarg == '\0' || *end != '\0' || !(start_at > 0)) {
                fprintf(stderr, "cpuloop: -a %s: want seconds > 0\n", optarg);
                return 2;
            }
            break;
        }
        case 'u': unpinned = 1; break;
        default:
            fprintf(stderr, "usage: cpuloop [-t THREADS] [-s small|large] [-n ITERS] "
                    "[-a SECONDS] [-u]\n");
            return 2;
        }
    }
    if (nthreads < 1)
        nthreads = 1;
    if (iters <= 0)
        iters = large ? 20000000 : 2500000;

    struct worker *w = calloc(nthreads, sizeof(*w));
    if (!w || pthread_barrier_init(&barrier, NULL, nthreads))
        die("setup");
    for (int i = 0; i < nthreads; i++) {
        w[i].idx = i;
        if (pthread_create(&w[i].tid, NULL, run, &w[i]))
            die("pthread_create");
    }
    double last = 0, first = 1e300;
    uint64_t last_tsc = 0;
    uint64_t sum = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(w[i].tid, NULL);
        last = w[i].end > last ? w[i].end : last;
        first = w[i].end < first ? w[i].end : first;
        last_tsc = w[i].end_tsc > last_tsc ? w[i].end_tsc : last_tsc;
        sum ^= mix64(w[i].sum + (uint64_t)i);
    }
    printf("cpuloop: %d threads x %ld iterations: %.6f s\n", nthreads, iters, last - start);
    printf("VSCHED-KV loop_ns=%.0f loop_min_ns=%.0f loop_sum=%016llx loop_iters=%ld\n",
           (last - start) * 1e9, (first - start) * 1e9, (unsigned long long)sum, iters);
    printf("VSCHED-KV loop_start_tsc=%llu loop_end_tsc=%llu\n",
           (unsigned long long)start_tsc, (unsigned long long)last_tsc);
    return 0;
}
