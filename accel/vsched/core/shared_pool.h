/*
 * vsched core: a slot pool shared by several QEMU processes (VMs).
 *
 * The pool lives in a POSIX shared-memory segment "/vsched-<uid>-<name>"
 * (/dev/shm/vsched-<uid>-<name>: names are per user, /dev/shm is not),
 * mode 0600, created O_EXCL by the first VM.  Its
 * layout (ShmPool) is fixed-size and pointer-free:
 *
 *   ShmHeader   magic, layout version, header and total size, owner uid,
 *               nr_slots, slice, creation time, creator pid, removed flag
 *   lock        a futex lock word (holder's thread id) guarding all below
 *   stats       pool-wide counters (reaped members, reclaimed slots, ...)
 *   proc[64]    per member: pid, process start time, mailbox (futex word,
 *               pending wake and kick bits per local vCPU)
 *   PoolState   the scheduler's state with global vCPU ids (slot_pool.h)
 *
 * Attach validates the header through a read-only mapping of a read-only
 * descriptor and refuses (writing nothing) a pool of another uid, with
 * another mode than 0600, a bad magic, another layout version, a wrong or
 * truncated size, or another number of slots.  See docs/design/shared-pool.rst.
 */
#ifndef VSCHED_CORE_SHARED_POOL_H
#define VSCHED_CORE_SHARED_POOL_H

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "effects.h"
#include "slot_pool.h"
#include "vsched-core.h"
#include "vtime_barrier.h"

namespace vsched {

class Counters;
class Scheduler;

inline constexpr uint64_t kPoolMagic = 0x4c4f4f5048435356ull; /* "VSCHPOOL" (LE) */
inline constexpr uint32_t kPoolLayoutVersion = 4;
inline constexpr int kPoolNameMax = 64;
inline constexpr int kMailboxWords = kMaxVcpus / 64;
/* Members are checked for liveness at most this often. */
inline constexpr uint64_t kReapIntervalNs = 20 * kNsPerMs;
/* A lock held longer than this (holder stopped, or a garbage lock word
 * naming a live thread) makes the waiter leave the pool. */
inline constexpr uint64_t kLockTimeoutNs = 2'000'000'000ull;

struct ShmHeader {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;   /* sizeof(ShmHeader) */
    uint64_t total_size;    /* sizeof(ShmPool) */
    uint32_t owner_uid;
    int32_t nr_slots;
    uint64_t slice_ns;
    uint64_t created_realtime_ns;
    int32_t creator_pid;
    uint32_t removed;       /* set (under the lock) by the last member */
    char name[kPoolNameMax + 8];
    uint64_t pid_ns;        /* creator's pid namespace (inode): pids and
                             * thread ids in the pool are from it */
    /* Time base (the creator's; a member of another one is refused). */
    uint32_t time_virtual;  /* 0: time=real, 1: time=virtual */
    int32_t icount_shift;   /* time=virtual: -icount shift */
    uint64_t quantum;       /* time=virtual: instructions per round */
};

/* The C facade's struct, as the file holds it (pool_info copies it). */
using ShmStats = VschedPoolStats;
static_assert(sizeof(ShmStats) == 6 * sizeof(uint64_t), "pool layout");

struct ShmMember {
    int32_t pid;            /* 0: free entry */
    uint32_t pad0;
    uint64_t start_time;    /* /proc/<pid>/stat field 22 (survives pid reuse) */
    uint32_t futex;         /* mailbox sequence: bumped on every post */
    uint32_t pad1;
    uint64_t wake_bits[kMailboxWords];
    uint64_t kick_bits[kMailboxWords];
};

/*
 * The pool lock: 0 when free, else the holder's thread id, with kLockWaiters
 * set while someone may sleep on it.  Not a pthread robust mutex: glibc
 * keeps a robust mutex on a per-thread list whose links live inside the
 * mutex, so another process writing into them could make this one write
 * anywhere.  A holder that died is found by its thread id (see lock()).
 */
struct ShmLock {
    uint32_t word;
    uint32_t pad;
};
inline constexpr uint32_t kLockWaiters = 1u << 31;

struct ShmPool {
    ShmHeader hdr;
    ShmLock lock;
    ShmStats stats;
    ShmMember proc[kMaxMembers];
    PoolState pool;
    ShmVtime vtime;         /* time=virtual: the round barrier */
};
static_assert(std::is_standard_layout_v<ShmPool>);

/* Name rules: 1..64 characters of [A-Za-z0-9._-], not "." or "..". */
bool validate_pool_name(std::string_view name, std::string *err);
/* "/vsched-<uid>-<name>" for this process's (real) uid. */
std::string pool_shm_path(std::string_view name);

/*
 * Check a header read from a pool file of file_size bytes owned by
 * file_uid with mode file_mode, for a VM of uid `uid` asking for nr_slots.
 * Returns false with a message naming the problem.  Pure: reads only.
 */
bool validate_pool_header(const void *bytes, size_t file_size, uid_t file_uid,
                          unsigned file_mode, uid_t uid, int nr_slots, std::string_view name,
                          std::string *err);

/* The time base a VM asks for (time=real: all zero). */
struct PoolTimeBase {
    bool virtual_time = false;
    int icount_shift = 0;
    uint64_t quantum = 0;
};
std::string describe_time_base(const PoolTimeBase &tb);
/* A pool (validated header) and a VM must have the same time base. */
bool validate_pool_time_base(const ShmHeader &h, const PoolTimeBase &tb, std::string_view name,
                             std::string *err);

/* This process's pid namespace (the inode of /proc/self/ns/pid), 0 if
 * unknown. */
uint64_t pid_namespace();

/* Process liveness: false if pid is gone or is another process now. */
bool proc_start_time(int pid, uint64_t *out);
bool member_alive(int pid, uint64_t start_time);
/* The process (or, given a thread id, that thread) is stopped (SIGSTOP,
 * or ptrace-stopped by a debugger). */
bool proc_stopped(int pid);
/* The calling thread's id (cached). */
uint32_t current_tid();

struct SharedPoolOptions {
    /* Tests: the uid the pool must belong to (default: getuid()). */
    bool override_uid = false;
    uid_t uid = 0;
    /* How long to wait for a concurrently created pool to be initialised. */
    uint64_t init_wait_ns = 2'000'000'000;
    /* How long lock() waits for a live holder before giving up. */
    uint64_t lock_timeout_ns = kLockTimeoutNs;
    /* The VM's time base: stored by the creator, checked at join. */
    PoolTimeBase time_base;
    /* Core::create_shared: pool ids reserved at join, for local vCPUs
     * 0..reserve_vcpus-1 (0: all nr_vcpus).  A hotplugged vCPU grows the
     * range later (Core::plug_vcpu). */
    int reserve_vcpus = 0;
};

/* One process's mapping of a shared pool, and its membership. */
class SharedPool {
public:
    /* Open or create pool `name` and join it with nr_vcpus.  null + *err
     * on refusal.  `now` is CLOCK_MONOTONIC ns. */
    static std::unique_ptr<SharedPool> attach(std::string_view name, int nr_slots,
                                              uint64_t slice_ns, int nr_vcpus, uint64_t now,
                                              std::string *err,
                                              const SharedPoolOptions &opt = {});
    ~SharedPool();

    ShmPool &shm() { return *p_; }
    PoolState *state() { return &p_->pool; }
    int member() const { return member_; }
    const std::string &name() const { return name_; }
    uint64_t slice_ns() const { return slice_ns_; }
    int nr_slots() const { return nr_slots_; }
    /* Local counters of what attach did (stale pool recovered etc.). */
    bool recovered_stale() const { return recovered_stale_; }
    int reaped_at_attach() const { return reaped_at_attach_; }

    /* The pool lock.  lock() returns true if the previous holder died
     * holding it: the caller must repair the state before unlock().  It
     * throws PoolCorrupt if a live holder keeps it past lock_timeout_ns. */
    bool lock();
    /* One attempt, no wait (leaving a corrupt pool); false if held. */
    bool try_lock();
    void unlock();

    /* Under the lock, after the scheduler evicted our member: free our
     * member entry; the last member marks the pool removed and unlinks it.
     * Returns true if this was the last member. */
    bool leave_locked();
    /* True once, the first time our file is found removed or replaced at
     * its path (rm, systemd-logind's RemoveIPC): new VMs then make a new
     * pool of that name, which this one must never unlink. */
    bool check_file_lost();

    /* Liveness.  Without the lock: members whose process is gone, and (in
     * *stopped) members whose process is stopped (SIGSTOP, ptrace).  Reads
     * /proc only for our successors up to the first live, running one (a
     * ring: each member is watched by its nearest live predecessor). */
    std::vector<int> find_dead_members(std::vector<int> *stopped = nullptr);
    /* /proc liveness reads so far by find_dead_members() (tests). */
    uint64_t liveness_probes() const { return probes_; }
    /* Under the lock: is member m (still) dead?  Frees its proc entry
     * when it is, so the caller must evict its scheduling state first. */
    bool dead_locked(int m);
    void free_proc_locked(int m);
    /* The one reap path (join, polls, recovery): evict the candidates
     * that are (still) dead through sched, free their entries, count them
     * in the pool's stats and (if ctr) in ctr.  Returns how many. */
    int reap_locked(Scheduler &sched, const std::vector<int> &candidates, Counters *ctr);
    /* The one recovery path, after lock() reported a dead holder: repair
     * the state, then reap every dead member.  Returns how many. */
    int recover_locked(Scheduler &sched, Counters *ctr);

    /* Mailboxes: post the remote effects of fx (after the lock is
     * dropped); returns the number of posts. */
    int post(const Effects &fx, int *wakes, int *kicks);
    /* Our mailbox.  Wait until something is posted, timeout_ns passes or
     * interrupt_wait() is called. */
    void wait_mailbox(uint32_t seen_seq, uint64_t timeout_ns);
    uint32_t mailbox_seq();
    void interrupt_wait();
    /* Take the pending bits of our nr_vcpus vCPUs; fn(kind, vcpu) with
     * kind 0 = wake, 1 = kick.  Returns the number delivered. */
    template <typename F>
    int drain(int nr_vcpus, F &&fn)
    {
        ShmMember &me = p_->proc[member_];
        int n = 0;
        for (int w = 0; w * 64 < nr_vcpus && w < kMailboxWords; w++) {
            /* Bits past our vCPUs can only be garbage: dropped. */
            const int left = nr_vcpus - w * 64;
            const uint64_t mask = left >= 64 ? ~0ull : (1ull << left) - 1;
            uint64_t wk = __atomic_exchange_n(&me.wake_bits[w], 0, __ATOMIC_ACQ_REL) & mask;
            uint64_t kk = __atomic_exchange_n(&me.kick_bits[w], 0, __ATOMIC_ACQ_REL) & mask;
            for (; wk; wk &= wk - 1, n++) {
                fn(0, w * 64 + __builtin_ctzll(wk));
            }
            for (; kk; kk &= kk - 1, n++) {
                fn(1, w * 64 + __builtin_ctzll(kk));
            }
        }
        return n;
    }

    /* One attempt at the pool file (attach): mapped, already there (open
     * it), to be tried again, or refused (*err). */
    enum class OpenStep { kMapped, kExists, kRetry, kFailed };

private:
    SharedPool() = default;
    /* attach = create or open, then join (each its own step). */
    OpenStep create(std::string_view name, int nr_slots, uint64_t slice_ns, uid_t uid,
                    const PoolTimeBase &tb, std::string *err);
    OpenStep open(std::string_view name, int nr_slots, uid_t uid, const PoolTimeBase &tb,
                  uint64_t give_up, std::string *err);
    int join_locked(bool created, int nr_vcpus, uint64_t now, std::string *err);
    void refresh_if_stale_locked(bool created, int had, int reaped);
    int add_member_locked(int nr_vcpus, uint64_t now, std::string *err);
    bool still_at_path() const;

    ShmPool *p_ = nullptr;
    int fd_ = -1;
    int member_ = -1;
    int base_ = 0;
    std::string name_;
    std::string path_;
    uint64_t slice_ns_ = 0;
    int nr_slots_ = 0;
    uint64_t lock_timeout_ns_ = kLockTimeoutNs;
    bool recovered_stale_ = false;
    bool file_lost_ = false;
    int reaped_at_attach_ = 0;
    uint64_t probes_ = 0;
};

} // namespace vsched

#endif
