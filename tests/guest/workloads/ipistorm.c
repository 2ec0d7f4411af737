/* ipistorm: IPI-heavy, lock-heavy guest stress with a fixed amount of work.
 *
 * N threads (default: online CPUs), pinned round-robin, run R rounds of three
 * phases separated by barriers:
 *   tlb   every thread touches a shared buffer, then repeatedly write-protects
 *         its own slice (mprotect -> TLB shootdown IPIs to every CPU running
 *         the mm), restores it, and maps/touches/unmaps a scratch area
 *         (munmap -> more shootdowns);
 *   wake  threads 2k and 2k+1 (different CPUs) ping-pong a token through a
 *         futex: every hop is a cross-CPU wakeup (reschedule IPI);
 *   lock  all threads take one pthread_spin_lock (a PAUSE loop in userspace
 *         when contended) for a short critical section.
 * Iteration counts are fixed, so the checksum is deterministic for a given
 * thread count and size; it is printed as VSCHED-KV checksum=0x....
 *
 * usage: ipistorm [-t THREADS] [-s small|large] [-r ROUNDS] [-v]
 */
#include "common.h"

#include <sys/mman.h>

#define PAGE 4096

struct params {
    int rounds;
    int tlb_iters;  /* per thread per round */
    int wake_iters; /* hops per pair per round */
    int lock_iters; /* per thread per round */
    int lock_work;  /* LCG steps inside the critical section */
};

static const struct params small_params = { 4, 20, 1000, 100000, 50 };
static const struct params large_params = { 16, 20, 1000, 100000, 50 };

struct pair {
    volatile int turn; /* futex word: whose turn (0 = even, 1 = odd) */
    char pad[60];
} __attribute__((aligned(64)));

static struct params P;
static int nthreads;
static int verbose;
static pthread_barrier_t barrier;
static unsigned char *shared;      /* nthreads * SLICE pages */
static struct pair *pairs;
static pthread_spinlock_t lock;
static uint64_t lock_sum;          /* protected by lock */
static uint64_t lock_count;        /* protected by lock */
static uint64_t lock_scratch;      /* protected by lock */
static double phase_time[3];

#define SLICE 2 /* pages per thread in the shared buffer */

struct worker {
    pthread_t tid;
    int idx;
    int cpu;
    uint64_t sum;
    uint64_t wakeups;
} __attribute__((aligned(64)));

static void phase_tlb(struct worker *w, int round)
{
    unsigned char *mine = shared + (size_t)w->idx * SLICE * PAGE;
    size_t total = (size_t)nthreads * SLICE * PAGE;

    /* Touch every page of the shared buffer so all CPUs cache its TLB entries. */
    for (size_t off = 0; off < total; off += PAGE)
        w->sum += shared[off + 64];

    for (int i = 0; i < P.tlb_iters; i++) {
        if (mprotect(mine, SLICE * PAGE, PROT_READ) != 0)
            die("mprotect ro");
        w->sum += mine[0];
        if (mprotect(mine, SLICE * PAGE, PROT_READ | PROT_WRITE) != 0)
            die("mprotect rw");
        mine[0] = (unsigned char)(w->idx + i + round);

        unsigned char *scratch = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (scratch == MAP_FAILED)
            die("mmap");
        for (int p = 0; p < 4; p++)
            scratch[p * PAGE] = (unsigned char)(i + p);
        w->sum += scratch[3 * PAGE];
        if (munmap(scratch, 4 * PAGE) != 0)
            die("munmap");
    }
}

static void phase_wake(struct worker *w)
{
    int pair_idx = w->idx / 2;
    int side = w->idx & 1;
    if (pair_idx * 2 + 1 >= nthreads)
        return; /* odd thread out */
    struct pair *p = &pairs[pair_idx];

    for (int i = 0; i < P.wake_iters; i++) {
        /* wait for our turn */
        while (__atomic_load_n(&p->turn, __ATOMIC_ACQUIRE) != side)
            futex(&p->turn, FUTEX_WAIT_PRIVATE, !side);
        __atomic_store_n(&p->turn, !side, __ATOMIC_RELEASE);
        futex(&p->turn, FUTEX_WAKE_PRIVATE, 1);
        w->wakeups++;
    }
}

static void phase_lock(struct worker *w)
{
    for (int i = 0; i < P.lock_iters; i++) {
        uint64_t v = mix64(((uint64_t)w->idx << 32) | (uint64_t)i);
        pthread_spin_lock(&lock);
        /* some real work on shared state (order-dependent, so kept out of
         * the checksum), then an order-independent update that is */
        uint64_t x = lock_scratch;
        for (int k = 0; k < P.lock_work; k++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        lock_scratch = x;
        lock_sum += v;
        lock_count++;
        pthread_spin_unlock(&lock);
        /* a little private work so that the lock stays contended, not saturated */
        for (int k = 0; k < 4; k++)
            v = mix64(v);
        w->sum += v & 0xff;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->cpu = pin_round_robin(w->idx);

    for (int r = 0; r < P.rounds; r++) {
        double t0 = 0;
        for (int phase = 0; phase < 3; phase++) {
            pthread_barrier_wait(&barrier);
            if (w->idx == 0)
                t0 = now_seconds();
            switch (phase) {
            case 0: phase_tlb(w, r); break;
            case 1: phase_wake(w); break;
            case 2: phase_lock(w); break;
            }
            pthread_barrier_wait(&barrier);
            if (w->idx == 0)
                phase_time[phase] += now_seconds() - t0;
        }
        if (verbose && w->idx == 0)
            printf("ipistorm: round %d/%d done\n", r + 1, P.rounds);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int large = default_large();
    int rounds = 0;
    int opt;

    nthreads = default_threads();
    while ((opt = getopt(argc, argv, "t:s:r:vh")) != -1) {
        switch (opt) {
        case 't': nthreads = atoi(optarg); break;
        case 's': large = parse_size(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 'v': verbose = 1; break;
        default:
            fprintf(stderr, "usage: %s [-t THREADS] [-s small|large] [-r ROUNDS] [-v]\n", argv[0]);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (nthreads < 1)
        nthreads = 1;
    P = large ? large_params : small_params;
    if (rounds > 0)
        P.rounds = rounds;

    setvbuf(stdout, NULL, _IOLBF, 0);
    size_t total = (size_t)nthreads * SLICE * PAGE;
    shared = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED)
        die("mmap shared");
    for (size_t off = 0; off < total; off += PAGE)
        shared[off + 64] = (unsigned char)(off / PAGE);
    pairs = aligned_alloc(64, sizeof(*pairs) * (nthreads / 2 + 1));
    if (!pairs)
        die("alloc");
    memset(pairs, 0, sizeof(*pairs) * (nthreads / 2 + 1));
    pthread_spin_init(&lock, PTHREAD_PROCESS_PRIVATE);
    pthread_barrier_init(&barrier, NULL, nthreads);

    printf("ipistorm: threads=%d cpus=%d size=%s rounds=%d tlb=%d wake=%d lock=%d\n",
           nthreads, online_cpus(), large ? "large" : "small", P.rounds,
           P.tlb_iters, P.wake_iters, P.lock_iters);

    struct worker *w = aligned_alloc(64, sizeof(*w) * nthreads);
    if (!w)
        die("alloc");
    memset(w, 0, sizeof(*w) * nthreads);
    unsigned long long ticks0[4] = { 0 };
    cpu_ticks(ticks0);
    double t0 = now_seconds();
    for (int i = 0; i < nthreads; i++) {
        w[i].idx = i;
        if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0)
            die("pthread_create");
    }
    uint64_t sum = 0, wakeups = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(w[i].tid, NULL);
        sum += w[i].sum;
        wakeups += w[i].wakeups;
    }
    double elapsed = now_seconds() - t0;

    uint64_t expect_locks = (uint64_t)nthreads * P.lock_iters * P.rounds;
    uint64_t checksum = mix64(sum ^ mix64(lock_sum) ^ mix64(wakeups) ^ lock_count);
    int ok = lock_count == expect_locks;

    printf("ipistorm: tlb %.3fs wake %.3fs lock %.3fs total %.3fs wakeups=%llu locks=%llu%s\n",
           phase_time[0], phase_time[1], phase_time[2], elapsed,
           (unsigned long long)wakeups, (unsigned long long)lock_count,
           ok ? "" : " LOCK COUNT MISMATCH");
    printf("VSCHED-KV checksum=0x%016llx rounds=%d tlb_seconds=%.3f "
           "wake_seconds=%.3f lock_seconds=%.3f",
           (unsigned long long)checksum, P.rounds,
           phase_time[0], phase_time[1], phase_time[2]);
    print_cpu_fracs(ticks0);
    printf("\n");
    return ok ? 0 : 1;
}
