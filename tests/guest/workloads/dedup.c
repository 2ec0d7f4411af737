/* dedup: our own implementation of the structure of PARSEC 3.0's dedup kernel.
 *
 * A five-stage pipeline over an input held in memory:
 *   1. Fragment        (1 thread)  coarse split of the stream at Rabin anchors
 *   2. FragmentRefine  (n threads) fine split with a rolling Rabin fingerprint
 *   3. Deduplicate     (n threads) SHA-1 of each chunk, lookup/insert in a
 *                                  global hash table with per-bucket locks
 *   4. Compress        (n threads) zlib (compress2) of the unique chunks
 *   5. Reorder         (1 thread)  writes the chunks in stream order: data for
 *                                  the first occurrence, a SHA-1 reference
 *                                  for duplicates
 * 3n+2 threads in all (PARSEC's -t is threads per stage). Stages talk through
 * bounded queues (pthread mutex + notEmpty/notFull condvars), ceil(n/4)
 * queues per stage filled round-robin, as PARSEC does. Duplicates go straight
 * from Deduplicate to Reorder.
 *
 * The input is generated deterministically (seeded splitmix64) with realistic
 * duplication: text-like and random segments, repeated earlier ranges (some
 * with small edits), a few hot blocks repeated often and runs of NUL bytes
 * (the hot-bucket case of PARSEC's media.dat). Or -i FILE reads a file.
 *
 * After the timed encode (the region of interest, roi_seconds) the output is
 * decoded (zlib uncompress + SHA-1 references) and compared with the input:
 * roundtrip=ok, else the workload fails.
 *
 * usage: dedup [-t N] [-s small|large] [-m MB] [-S SEED] [-i IN] [-o OUT] [-n]
 *   small: 4 MB, large: 184 MB (PARSEC simlarge's media.dat size)
 *
 * vsched-ldflags: -lz
 */
#include "common.h"
#include "sha1.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <zlib.h>

#define MAX_THREADS_PER_QUEUE 4
#define QUEUE_CAP 256
#define COARSE_JUMP (128 * 1024)
#define RABIN_WINDOW 32
#define FINE_MASK ((1u << 12) - 1) /* ~4 KB average fine chunk */
#define COARSE_MASK ((1u << 15) - 1)
#define FINE_MIN 512
#define FINE_MAX (32 * 1024)
#define HASH_BITS 16

/* ------------------------------------------------------------------ Rabin */
#define RABIN_POLY 0xbfe6b8a5bf378d83ULL /* PARSEC's FINGERPRINT_PT */

static uint64_t rabin_T[256], rabin_U[256];
static int rabin_shift;

static int fls64(uint64_t v)
{
    return v ? 64 - __builtin_clzll(v) : 0;
}

static uint64_t polymod(uint64_t nh, uint64_t nl, uint64_t d)
{
    int k = fls64(d) - 1;
    d <<= 63 - k;
    if (nh) {
        if (nh & (1ULL << 63))
            nh ^= d;
        for (int i = 62; i >= 0; i--)
            if (nh & (1ULL << i)) {
                nh ^= d >> (63 - i);
                nl ^= d << (i + 1);
            }
    }
    for (int i = 63; i >= k; i--)
        if (nl & (1ULL << i))
            nl ^= d >> (63 - i);
    return nl;
}

static void polymult(uint64_t *php, uint64_t *plp, uint64_t x, uint64_t y)
{
    uint64_t ph = 0, pl = 0;
    if (x & 1)
        pl = y;
    for (int i = 1; i < 64; i++)
        if (x & (1ULL << i)) {
            ph ^= y >> (64 - i);
            pl ^= y << i;
        }
    *php = ph;
    *plp = pl;
}

static uint64_t polymulmod(uint64_t x, uint64_t y, uint64_t d)
{
    uint64_t h, l;
    polymult(&h, &l, x, y);
    return polymod(h, l, d);
}

static inline uint64_t rabin_append(uint64_t f, uint8_t m)
{
    return ((f << 8) | m) ^ rabin_T[f >> rabin_shift];
}

static void rabin_init(void)
{
    int xshift = fls64(RABIN_POLY) - 1;
    rabin_shift = xshift - 8;
    uint64_t t1 = polymod(0, 1ULL << xshift, RABIN_POLY);
    for (int j = 0; j < 256; j++)
        rabin_T[j] = polymulmod(j, t1, RABIN_POLY) | ((uint64_t)j << xshift);
    uint64_t sizeshift = 1;
    for (int i = 1; i < RABIN_WINDOW; i++)
        sizeshift = rabin_append(sizeshift, 0);
    for (int i = 0; i < 256; i++)
        rabin_U[i] = polymulmod(i, sizeshift, RABIN_POLY);
}

/* First anchor at or after data[from] (min/max chunk length from 'from' = 0). */
static size_t rabin_next_anchor(const uint8_t *data, size_t len, size_t min, size_t max,
                                uint32_t mask)
{
    uint64_t f = 0;
    if (len <= min)
        return len;
    size_t end = len < max ? len : max;
    size_t start = min > RABIN_WINDOW ? min - RABIN_WINDOW : 0;
    for (size_t i = start; i < end; i++) {
        if (i >= start + RABIN_WINDOW)
            f ^= rabin_U[data[i - RABIN_WINDOW]];
        f = rabin_append(f, data[i]);
        if (i + 1 >= min && (f & mask) == mask)
            return i + 1;
    }
    return end;
}

/* ------------------------------------------------------------------ queues */
struct queue {
    pthread_mutex_t mtx;
    pthread_cond_t not_empty, not_full;
    void *items[QUEUE_CAP];
    int head, count, producers;
};

static void queue_init(struct queue *q, int producers)
{
    pthread_mutex_init(&q->mtx, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    q->head = q->count = 0;
    q->producers = producers;
}

static void queue_push(struct queue *q, void *item)
{
    pthread_mutex_lock(&q->mtx);
    while (q->count == QUEUE_CAP)
        pthread_cond_wait(&q->not_full, &q->mtx);
    q->items[(q->head + q->count) % QUEUE_CAP] = item;
    q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mtx);
}

/* NULL once every producer is done and the queue is empty. */
static void *queue_pop(struct queue *q)
{
    void *item = NULL;
    pthread_mutex_lock(&q->mtx);
    while (q->count == 0 && q->producers > 0)
        pthread_cond_wait(&q->not_empty, &q->mtx);
    if (q->count > 0) {
        item = q->items[q->head];
        q->head = (q->head + 1) % QUEUE_CAP;
        q->count--;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->mtx);
    return item;
}

static void queue_producer_done(struct queue *q)
{
    pthread_mutex_lock(&q->mtx);
    q->producers--;
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->mtx);
}

/* ------------------------------------------------------------------ data */
struct entry {                  /* one unique chunk in the global hash table */
    uint8_t sha[20];
    struct entry *next;
    uint8_t *cdata;
    uint32_t clen, rawlen;
    int ready;                  /* compressed (atomic) */
    int written;                /* data already in the output (reorder only) */
};

struct chunk {
    const uint8_t *data;
    uint32_t len;
    uint32_t cseq, fidx;        /* coarse sequence, index inside it */
    int last;                   /* last fine chunk of its coarse chunk */
    struct entry *ent;
};

struct bucket {
    pthread_mutex_t mtx;
    struct entry *head;
} __attribute__((aligned(64)));

static struct bucket *table;
static int nthreads, nq;
static struct queue *q_refine, *q_dedup, *q_compress, q_reorder;
static const uint8_t *input;
static size_t input_len;
static uint8_t *out;
static size_t out_len, out_cap;
static uint64_t n_chunks, n_unique, n_coarse;

static void out_write(const void *p, size_t n)
{
    if (out_len + n > out_cap) {
        out_cap = (out_len + n) * 2;
        out = realloc(out, out_cap);
        if (!out)
            die("realloc");
    }
    memcpy(out + out_len, p, n);
    out_len += n;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ------------------------------------------------------------------ stages */
static void *stage_fragment(void *arg)
{
    (void)arg;
    size_t pos = 0;
    uint32_t cseq = 0;
    while (pos < input_len) {
        size_t rest = input_len - pos;
        size_t len = rest;
        if (rest > COARSE_JUMP)
            len = rabin_next_anchor(input + pos, rest, COARSE_JUMP, COARSE_JUMP * 2,
                                    COARSE_MASK);
        struct chunk *c = calloc(1, sizeof(*c));
        if (!c)
            die("calloc");
        c->data = input + pos;
        c->len = (uint32_t)len;
        c->cseq = cseq;
        queue_push(&q_refine[cseq % nq], c);
        cseq++;
        pos += len;
    }
    n_coarse = cseq;
    for (int i = 0; i < nq; i++)
        queue_producer_done(&q_refine[i]);
    return NULL;
}

static void *stage_refine(void *arg)
{
    long id = (long)arg;
    struct queue *in = &q_refine[id % nq];
    unsigned rr = (unsigned)id;
    struct chunk *cc;
    while ((cc = queue_pop(in)) != NULL) {
        size_t pos = 0;
        uint32_t fidx = 0;
        while (pos < cc->len) {
            size_t len = rabin_next_anchor(cc->data + pos, cc->len - pos, FINE_MIN, FINE_MAX,
                                           FINE_MASK);
            struct chunk *c = malloc(sizeof(*c));
            if (!c)
                die("malloc");
            c->data = cc->data + pos;
            c->len = (uint32_t)len;
            c->cseq = cc->cseq;
            c->fidx = fidx++;
            c->ent = NULL;
            pos += len;
            c->last = pos >= cc->len;
            queue_push(&q_dedup[rr++ % nq], c);
        }
        free(cc);
    }
    for (int i = 0; i < nq; i++)
        queue_producer_done(&q_dedup[i]);
    return NULL;
}

static void *stage_dedup(void *arg)
{
    long id = (long)arg;
    struct queue *in = &q_dedup[id % nq];
    unsigned rr = (unsigned)id;
    struct chunk *c;
    while ((c = queue_pop(in)) != NULL) {
        uint8_t sha[20];
        sha1(c->data, c->len, sha);
        uint32_t b = get_u32(sha) & ((1u << HASH_BITS) - 1);
        struct bucket *bk = &table[b];
        pthread_mutex_lock(&bk->mtx);
        struct entry *e;
        for (e = bk->head; e; e = e->next)
            if (memcmp(e->sha, sha, 20) == 0)
                break;
        int dup = e != NULL;
        if (!e) {
            e = calloc(1, sizeof(*e));
            if (!e)
                die("calloc");
            memcpy(e->sha, sha, 20);
            e->rawlen = c->len;
            e->next = bk->head;
            bk->head = e;
        }
        pthread_mutex_unlock(&bk->mtx);
        c->ent = e;
        if (dup)
            queue_push(&q_reorder, c);
        else
            queue_push(&q_compress[rr++ % nq], c);
    }
    for (int i = 0; i < nq; i++)
        queue_producer_done(&q_compress[i]);
    queue_producer_done(&q_reorder);
    return NULL;
}

static void *stage_compress(void *arg)
{
    long id = (long)arg;
    struct queue *in = &q_compress[id % nq];
    struct chunk *c;
    while ((c = queue_pop(in)) != NULL) {
        uLongf clen = compressBound(c->len);
        uint8_t *buf = malloc(clen);
        if (!buf)
            die("malloc");
        if (compress2(buf, &clen, c->data, c->len, Z_DEFAULT_COMPRESSION) != Z_OK) {
            fprintf(stderr, "dedup: compress2 failed\n");
            exit(1);
        }
        c->ent->cdata = realloc(buf, clen);
        c->ent->clen = (uint32_t)clen;
        __atomic_store_n(&c->ent->ready, 1, __ATOMIC_RELEASE);
        queue_push(&q_reorder, c);
    }
    queue_producer_done(&q_reorder);
    return NULL;
}

/* min-heap of chunks by (cseq, fidx) */
static struct chunk **heap;
static size_t heap_n, heap_cap;

static inline uint64_t ckey(const struct chunk *c)
{
    return (uint64_t)c->cseq << 32 | c->fidx;
}

static void heap_push(struct chunk *c)
{
    if (heap_n == heap_cap) {
        heap_cap = heap_cap ? heap_cap * 2 : 1024;
        heap = realloc(heap, heap_cap * sizeof(*heap));
        if (!heap)
            die("realloc");
    }
    size_t i = heap_n++;
    while (i > 0 && ckey(heap[(i - 1) / 2]) > ckey(c)) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = c;
}

static struct chunk *heap_pop(void)
{
    struct chunk *top = heap[0], *last = heap[--heap_n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l >= heap_n)
            break;
        m = l;
        if (l + 1 < heap_n && ckey(heap[l + 1]) < ckey(heap[l]))
            m = l + 1;
        if (ckey(heap[m]) >= ckey(last))
            break;
        heap[i] = heap[m];
        i = m;
    }
    if (heap_n)
        heap[i] = last;
    return top;
}

static void write_chunk(struct chunk *c)
{
    uint8_t hdr[9];
    struct entry *e = c->ent;
    n_chunks++;
    if (!e->written) {
        hdr[0] = 'D';
        put_u32(hdr + 1, e->rawlen);
        put_u32(hdr + 5, e->clen);
        out_write(hdr, 9);
        out_write(e->cdata, e->clen);
        free(e->cdata);
        e->cdata = NULL;
        e->written = 1;
        n_unique++;
    } else {
        hdr[0] = 'R';
        out_write(hdr, 1);
        out_write(e->sha, 20);
    }
    free(c);
}

/* Never blocks on a chunk whose compression is pending: the compressor pushes
 * the original chunk after marking it ready, so draining the queue suffices. */
static void *stage_reorder(void *arg)
{
    (void)arg;
    uint32_t want_c = 0, want_f = 0;
    int done = 0;
    for (;;) {
        while (heap_n && heap[0]->cseq == want_c && heap[0]->fidx == want_f &&
               __atomic_load_n(&heap[0]->ent->ready, __ATOMIC_ACQUIRE)) {
            struct chunk *c = heap_pop();
            if (c->last) {
                want_c++;
                want_f = 0;
            } else {
                want_f++;
            }
            write_chunk(c);
        }
        if (done)
            break;
        struct chunk *c = queue_pop(&q_reorder);
        if (!c)
            done = 1;
        else
            heap_push(c);
    }
    if (heap_n) {
        fprintf(stderr, "dedup: reorder left %zu chunks (want %u/%u)\n", heap_n, want_c,
                want_f);
        exit(1);
    }
    return NULL;
}

/* ------------------------------------------------------------------ input */
static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static size_t rng_range(size_t lo, size_t hi) /* [lo, hi] */
{
    return lo + rng() % (hi - lo + 1);
}

static uint8_t *generate(size_t len, uint64_t seed, uint64_t *n_segments)
{
    uint8_t *buf = malloc(len);
    if (!buf)
        die("malloc");
    rng_state = seed;
    /* a vocabulary of pseudo-words for text-like segments */
    enum { NWORDS = 512 };
    static char words[NWORDS][12];
    for (int i = 0; i < NWORDS; i++) {
        int wl = (int)rng_range(2, 10);
        for (int k = 0; k < wl; k++)
            words[i][k] = (char)('a' + rng() % 26);
        words[i][wl] = 0;
    }
    /* a few hot blocks repeated all over the stream */
    enum { NHOT = 8 };
    size_t hot_off[NHOT] = { 0 }, hot_len[NHOT] = { 0 };
    int nhot = 0;
    size_t pos = 0;
    uint64_t segs = 0;
    while (pos < len) {
        unsigned r = rng() % 100;
        size_t n;
        if (r < 40 || pos < 64 * 1024) {            /* text-like */
            n = rng_range(1024, 16384);
            if (n > len - pos)
                n = len - pos;
            size_t end = pos + n;
            while (pos < end) {
                const char *w = words[rng() % NWORDS];
                size_t wl = strlen(w);
                for (size_t k = 0; k < wl && pos < end; k++)
                    buf[pos++] = (uint8_t)w[k];
                if (pos < end)
                    buf[pos++] = (rng() % 12 == 0) ? '\n' : ' ';
            }
        } else if (r < 55) {                        /* random (already compressed data) */
            n = rng_range(1024, 8192);
            if (n > len - pos)
                n = len - pos;
            for (size_t k = 0; k < n; k += 8) {
                uint64_t v = rng();
                memcpy(buf + pos + k, &v, n - k < 8 ? n - k : 8);
            }
            pos += n;
        } else if (r < 85) {                        /* copy of an earlier range */
            n = rng_range(4096, 65536);
            size_t src = rng() % pos;
            if (n > pos - src)
                n = pos - src;
            if (n > len - pos)
                n = len - pos;
            memmove(buf + pos, buf + src, n);
            if (rng() % 4 == 0 && n > 16) {         /* a small edit */
                int edits = (int)rng_range(1, 4);
                for (int k = 0; k < edits; k++)
                    buf[pos + rng() % n] ^= (uint8_t)(1 + rng() % 255);
            }
            pos += n;
        } else if (r < 92) {                        /* hot block */
            if (nhot < NHOT && (nhot == 0 || rng() % 3 == 0)) {
                hot_len[nhot] = rng_range(2048, 16384);
                hot_off[nhot] = rng() % (pos - hot_len[nhot]);
                nhot++;
            }
            int h = (int)(rng() % nhot);
            n = hot_len[h];
            if (n > len - pos)
                n = len - pos;
            memmove(buf + pos, buf + hot_off[h], n);
            pos += n;
        } else {                                    /* run of NUL bytes */
            n = rng_range(4096, 32768);
            if (n > len - pos)
                n = len - pos;
            memset(buf + pos, 0, n);
            pos += n;
        }
        segs++;
    }
    *n_segments = segs;
    return buf;
}

/* ------------------------------------------------------------------ decode */
struct dent {
    uint8_t sha[20];
    size_t off;
    uint32_t len;
    struct dent *next;
};

/* Returns 0 when the decoded stream equals the input. */
static int verify(const uint8_t *enc, size_t enc_len, const uint8_t *orig, size_t orig_len,
                  const char **why)
{
    size_t nb = (size_t)1 << HASH_BITS;
    struct dent **tab = calloc(nb, sizeof(*tab));
    uint8_t *dec = malloc(orig_len + 1);
    size_t p = 0, dlen = 0;
    int rc = -1;
    *why = "bad header";
    if (!tab || !dec)
        die("malloc");
    if (enc_len < 12 || memcmp(enc, "VDDP", 4) != 0)
        goto out;
    uint64_t total = (uint64_t)get_u32(enc + 4) << 32 | get_u32(enc + 8);
    if (total != orig_len) {
        *why = "length in header";
        goto out;
    }
    p = 12;
    while (p < enc_len) {
        if (enc[p] == 'D' && p + 9 <= enc_len) {
            uint32_t rawlen = get_u32(enc + p + 1), clen = get_u32(enc + p + 5);
            p += 9;
            if (p + clen > enc_len || dlen + rawlen > orig_len) {
                *why = "truncated data record";
                goto out;
            }
            uLongf dl = rawlen;
            if (uncompress(dec + dlen, &dl, enc + p, clen) != Z_OK || dl != rawlen) {
                *why = "zlib uncompress";
                goto out;
            }
            p += clen;
            struct dent *d = malloc(sizeof(*d));
            if (!d)
                die("malloc");
            sha1(dec + dlen, rawlen, d->sha);
            d->off = dlen;
            d->len = rawlen;
            uint32_t b = get_u32(d->sha) & (nb - 1);
            d->next = tab[b];
            tab[b] = d;
            dlen += rawlen;
        } else if (enc[p] == 'R' && p + 21 <= enc_len) {
            const uint8_t *sha = enc + p + 1;
            p += 21;
            struct dent *d;
            for (d = tab[get_u32(sha) & (nb - 1)]; d; d = d->next)
                if (memcmp(d->sha, sha, 20) == 0)
                    break;
            if (!d || dlen + d->len > orig_len) {
                *why = d ? "reference past the end" : "dangling reference";
                goto out;
            }
            memcpy(dec + dlen, dec + d->off, d->len);
            dlen += d->len;
        } else {
            *why = "bad record";
            goto out;
        }
    }
    if (dlen != orig_len) {
        *why = "decoded length";
        goto out;
    }
    if (memcmp(dec, orig, orig_len) != 0) {
        *why = "decoded bytes differ";
        goto out;
    }
    *why = "ok";
    rc = 0;
out:
    for (size_t i = 0; i < nb; i++)
        while (tab[i]) {
            struct dent *n = tab[i]->next;
            free(tab[i]);
            tab[i] = n;
        }
    free(tab);
    free(dec);
    return rc;
}

/* ------------------------------------------------------------------ main */
static uint8_t *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        die(path);
    uint8_t *buf = malloc(st.st_size + 1);
    size_t got = 0;
    if (!buf)
        die("malloc");
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, st.st_size - got);
        if (r <= 0)
            die("read");
        got += r;
    }
    close(fd);
    *len = got;
    return buf;
}

int main(int argc, char **argv)
{
    int opt, large = default_large(), check = 1;
    long mb = 0;
    uint64_t seed = 0x5eed0fdedu;
    const char *in_path = NULL, *out_path = NULL;
    nthreads = default_threads();
    while ((opt = getopt(argc, argv, "t:s:m:S:i:o:nh")) != -1) {
        switch (opt) {
        case 't': nthreads = atoi(optarg); break;
        case 's': large = parse_size(optarg); break;
        case 'm': mb = atol(optarg); break;
        case 'S': seed = strtoull(optarg, NULL, 0); break;
        case 'i': in_path = optarg; break;
        case 'o': out_path = optarg; break;
        case 'n': check = 0; break;
        default:
            fprintf(stderr, "usage: %s [-t THREADS_PER_STAGE] [-s small|large] [-m MB] "
                    "[-S SEED] [-i INPUT] [-o OUTPUT] [-n (no round-trip check)]\n", argv[0]);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (nthreads < 1)
        nthreads = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    rabin_init();

    double t0 = now_seconds();
    uint64_t segs = 0;
    uint8_t *buf;
    if (in_path) {
        buf = read_file(in_path, &input_len);
    } else {
        if (mb <= 0)
            mb = large ? 184 : 4;
        input_len = (size_t)mb << 20;
        buf = generate(input_len, seed, &segs);
    }
    input = buf;
    double t_gen = now_seconds() - t0;
    printf("dedup: input %zu bytes (%s, %llu segments) in %.3fs; threads %d per stage, "
           "%d in all\n", input_len, in_path ? in_path : "generated",
           (unsigned long long)segs, t_gen, nthreads, 3 * nthreads + 2);

    table = aligned_alloc(64, sizeof(*table) << HASH_BITS);
    if (!table)
        die("alloc");
    for (size_t i = 0; i < ((size_t)1 << HASH_BITS); i++) {
        pthread_mutex_init(&table[i].mtx, NULL);
        table[i].head = NULL;
    }
    nq = (nthreads + MAX_THREADS_PER_QUEUE - 1) / MAX_THREADS_PER_QUEUE;
    q_refine = calloc(nq, sizeof(*q_refine));
    q_dedup = calloc(nq, sizeof(*q_dedup));
    q_compress = calloc(nq, sizeof(*q_compress));
    if (!q_refine || !q_dedup || !q_compress)
        die("calloc");
    for (int i = 0; i < nq; i++) {
        queue_init(&q_refine[i], 1);
        queue_init(&q_dedup[i], nthreads);
        queue_init(&q_compress[i], nthreads);
    }
    queue_init(&q_reorder, 2 * nthreads);
    out_cap = input_len / 2 + 4096;
    out = malloc(out_cap);
    if (!out)
        die("malloc");
    uint8_t hdr[12];
    memcpy(hdr, "VDDP", 4);
    put_u32(hdr + 4, (uint32_t)((uint64_t)input_len >> 32));
    put_u32(hdr + 8, (uint32_t)input_len);
    out_write(hdr, 12);

    unsigned long long ticks0[4] = { 0 };
    cpu_ticks(ticks0);
    double t1 = now_seconds();
    int nt = 3 * nthreads + 2;
    pthread_t *tids = calloc(nt, sizeof(*tids));
    int k = 0;
    if (!tids)
        die("calloc");
    if (pthread_create(&tids[k++], NULL, stage_fragment, NULL) != 0)
        die("pthread_create");
    for (long i = 0; i < nthreads; i++) {
        if (pthread_create(&tids[k++], NULL, stage_refine, (void *)i) != 0 ||
            pthread_create(&tids[k++], NULL, stage_dedup, (void *)i) != 0 ||
            pthread_create(&tids[k++], NULL, stage_compress, (void *)i) != 0)
            die("pthread_create");
    }
    if (pthread_create(&tids[k++], NULL, stage_reorder, NULL) != 0)
        die("pthread_create");
    for (int i = 0; i < nt; i++)
        pthread_join(tids[i], NULL);
    double roi = now_seconds() - t1;
    double roi_busy = busy_seconds_since(ticks0);

    uint8_t digest[20];
    sha1(out, out_len, digest);
    double ratio = out_len ? (double)input_len / out_len : 0;
    printf("dedup: encoded %zu -> %zu bytes (x%.2f) in %.3fs: %llu chunks, %llu unique, "
           "%llu coarse\n", input_len, out_len, ratio, roi, (unsigned long long)n_chunks,
           (unsigned long long)n_unique, (unsigned long long)n_coarse);
    if (out_path) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, out, out_len) != (ssize_t)out_len)
            die(out_path);
        close(fd);
    }
    const char *why = "skipped";
    int rc = 0;
    double t2 = now_seconds();
    if (check)
        rc = verify(out, out_len, input, input_len, &why);
    double t_verify = now_seconds() - t2;
    printf("dedup: round trip %s (%.3fs)\n", why, t_verify);
    printf("VSCHED-KV roi_seconds=%.6f gen_seconds=%.3f verify_seconds=%.3f in_bytes=%zu "
           "out_bytes=%zu ratio=%.3f chunks=%llu unique=%llu coarse=%llu stage_threads=%d "
           "threads_total=%d roi_busy_seconds=%.2f roundtrip=%s checksum=0x",
           roi, t_gen, t_verify, input_len, out_len, ratio, (unsigned long long)n_chunks,
           (unsigned long long)n_unique, (unsigned long long)n_coarse, nthreads, nt, roi_busy,
           !check ? "skipped" : rc == 0 ? "ok" : "FAIL");
    for (int i = 0; i < 8; i++)
        printf("%02x", digest[i]);
    print_cpu_fracs(ticks0);
    printf("\n");
    if (rc != 0)
        fprintf(stderr, "dedup: ROUND TRIP FAILED: %s\n", why);
    return rc == 0 ? 0 : 1;
}
