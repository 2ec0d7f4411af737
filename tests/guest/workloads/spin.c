/* spin: make the guest *kernel* spin under contention (fixed amount of work).
 *
 * Threads (default: online CPUs), pinned round-robin, each run one mode:
 *   mmap   mmap/touch/munmap in the one shared mm: mmap_lock (rwsem with
 *          optimistic spinning) and TLB-flush IPIs whose sender waits in
 *          smp_call_function_many_cond() (csd_lock_wait: a PAUSE loop) until
 *          every target vCPU has answered;
 *   futex  FUTEX_WAIT with a stale value on one shared word: every call takes
 *          and drops the same futex hash-bucket spinlock (qspinlock, PAUSE);
 *   pipe   1-byte writes and reads on one shared pipe: pipe->mutex (mutex
 *          optimistic spinning) plus wakeups.
 *   pause  a user-mode PAUSE loop and nothing else: the cost of one PAUSE
 *          (under TCG every PAUSE leaves the translated code), reported as
 *          pause_ns; the emulator benchmark compares it across QEMU builds.
 * "mixed" (default) gives thread i mode i % 3 (mmap, futex, pipe).
 *
 * usage: spin [-t THREADS] [-s small|large] [-m mixed|mmap|futex|pipe|pause]
 *             [-n ITERS]
 */
#include "common.h"

#include <fcntl.h>
#include <sys/mman.h>

#define PAGE 4096

enum mode { MODE_MMAP, MODE_FUTEX, MODE_PIPE, MODE_PAUSE, MODE_MIXED };
#define NR_MODES MODE_MIXED
static const char *mode_names[] = { "mmap", "futex", "pipe", "pause", "mixed" };

/* Iterations per thread for small; large is 4x. Relative weights keep the
 * three modes at similar durations under TCG. */
static const int base_iters[NR_MODES] = { 600, 300000, 100000, 1000000 };

static int nthreads;
static int iters_override;
static int large;
static enum mode mode = MODE_MIXED;
static volatile int futex_word;
static int pipefd[2];
static pthread_barrier_t barrier;

struct worker {
    pthread_t tid;
    int idx;
    enum mode mode;
    int iters;
    uint64_t ops;
    uint64_t sum;
    double end;
} __attribute__((aligned(64)));

static void run_mmap(struct worker *w)
{
    for (int i = 0; i < w->iters; i++) {
        unsigned char *p = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            die("mmap");
        for (int k = 0; k < 8; k++)
            p[k * PAGE] = (unsigned char)(k + i);
        w->sum += p[7 * PAGE];
        if (munmap(p, 8 * PAGE) != 0)
            die("munmap");
        w->ops++;
    }
}

static void run_futex(struct worker *w)
{
    for (int i = 0; i < w->iters; i++) {
        /* futex_word never equals -1: the call takes the bucket lock, sees
         * the mismatch and returns EAGAIN */
        long r = futex(&futex_word, FUTEX_WAIT_PRIVATE, -1);
        if (r == -1 && errno == EAGAIN)
            w->ops++;
        if ((i & 63) == 0)
            __atomic_fetch_add(&futex_word, 1, __ATOMIC_RELAXED);
    }
    w->sum += w->ops;
}

static void run_pipe(struct worker *w)
{
    /* write one byte, read one byte: the pipe never holds more than nthreads
     * bytes, so neither side blocks for long */
    for (int i = 0; i < w->iters; i++) {
        unsigned char c = (unsigned char)i;
        if (write(pipefd[1], &c, 1) != 1)
            die("pipe write");
        if (read(pipefd[0], &c, 1) != 1)
            die("pipe read");
        w->ops++;
    }
    w->sum += w->ops;
}

static void run_pause(struct worker *w)
{
    for (int i = 0; i < w->iters; i++) {
        __builtin_ia32_pause();
        w->ops++;
    }
    w->sum += w->ops;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pin_round_robin(w->idx);
    pthread_barrier_wait(&barrier);
    switch (w->mode) {
    case MODE_MMAP: run_mmap(w); break;
    case MODE_FUTEX: run_futex(w); break;
    case MODE_PIPE: run_pipe(w); break;
    case MODE_PAUSE: run_pause(w); break;
    default: break;
    }
    w->end = now_seconds();
    return NULL;
}

int main(int argc, char **argv)
{
    int opt;
    large = default_large();
    nthreads = default_threads();
    while ((opt = getopt(argc, argv, "t:s:m:n:h")) != -1) {
        switch (opt) {
        case 't': nthreads = atoi(optarg); break;
        case 's': large = parse_size(optarg); break;
        case 'n': iters_override = atoi(optarg); break;
        case 'm':
            for (mode = 0; mode <= MODE_MIXED; mode++)
                if (strcmp(optarg, mode_names[mode]) == 0)
                    break;
            if (mode > MODE_MIXED) {
                fprintf(stderr, "unknown mode '%s'\n", optarg);
                return 2;
            }
            break;
        default:
            fprintf(stderr, "usage: %s [-t THREADS] [-s small|large] "
                    "[-m mixed|mmap|futex|pipe|pause] [-n ITERS]\n", argv[0]);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (nthreads < 1)
        nthreads = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (pipe(pipefd) != 0)
        die("pipe");
    pthread_barrier_init(&barrier, NULL, nthreads);

    struct worker *w = aligned_alloc(64, sizeof(*w) * nthreads);
    if (!w)
        die("alloc");
    memset(w, 0, sizeof(*w) * nthreads);
    int per_mode[NR_MODES] = { 0 };
    for (int i = 0; i < nthreads; i++) {
        w[i].idx = i;
        w[i].mode = mode == MODE_MIXED ? (enum mode)(i % 3) : mode;
        w[i].iters = iters_override > 0 ? iters_override
                                        : base_iters[w[i].mode] * (large ? 4 : 1);
        per_mode[w[i].mode]++;
    }
    printf("spin: threads=%d cpus=%d size=%s mode=%s (mmap=%d futex=%d pipe=%d pause=%d)\n",
           nthreads, online_cpus(), large ? "large" : "small", mode_names[mode],
           per_mode[0], per_mode[1], per_mode[2], per_mode[3]);

    unsigned long long ticks0[4] = { 0 };
    cpu_ticks(ticks0);
    double t0 = now_seconds();
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0)
            die("pthread_create");
    uint64_t ops[NR_MODES] = { 0 }, sum = 0;
    double mode_end[NR_MODES] = { 0 };
    for (int i = 0; i < nthreads; i++) {
        pthread_join(w[i].tid, NULL);
        if (w[i].end > mode_end[w[i].mode])
            mode_end[w[i].mode] = w[i].end;
        ops[w[i].mode] += w[i].ops;
        sum += mix64(w[i].sum + (uint64_t)i);
    }
    double elapsed = now_seconds() - t0;
    printf("spin: %.3fs mmap_ops=%llu futex_ops=%llu pipe_ops=%llu pause_ops=%llu\n",
           elapsed, (unsigned long long)ops[0], (unsigned long long)ops[1],
           (unsigned long long)ops[2], (unsigned long long)ops[3]);
    printf("VSCHED-KV checksum=0x%016llx mode=%s", (unsigned long long)mix64(sum),
           mode_names[mode]);
    for (int m = 0; m < NR_MODES; m++)
        if (per_mode[m])
            printf(" %s_seconds=%.3f", mode_names[m], mode_end[m] - t0);
    if (per_mode[MODE_PAUSE])
        printf(" pause_ns=%.1f", 1e9 * (mode_end[MODE_PAUSE] - t0) /
               ((double)ops[MODE_PAUSE] / per_mode[MODE_PAUSE]));
    print_cpu_fracs(ticks0);
    printf("\n");
    return 0;
}
