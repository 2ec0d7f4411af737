/*
 * vsched core: the slot pool as plain data.
 *
 * PoolState holds no pointers and no heap objects, only fixed-size arrays
 * indexed by vCPU or slot number, so it can live in private memory (one VM)
 * or in a shared-memory segment (several QEMU processes, shared_pool.h).
 * vCPU numbers in PoolState are *global* ids: a member (VM) owns the range
 * [member[m].base, member[m].base + member[m].nr_vcpus).  A private pool has
 * one member, 0, with base 0, so global ids are the VM's own.
 *
 * SlotPool is a thin, stateless view with the operations the scheduler
 * needs; it checks every state change.  A view may be narrowed to one
 * member (SlotPool(state, m)): its indices are then the member's local ones
 * and last_boosted() is the member's.  Policies get such a view, so they
 * only ever see their own VM's vCPUs.
 *
 * REQUIRES: the caller serialises all writes (the core's mutex, or the
 * shared pool's robust mutex).
 */
#ifndef VSCHED_CORE_SLOT_POOL_H
#define VSCHED_CORE_SLOT_POOL_H

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "config.h"
#include "vcpu_state.h"

namespace vsched {

inline constexpr int32_t kNone = -1;

/* Members (VMs) of one pool. */
inline constexpr int kMaxMembers = 64;

/* Scheduling state of one member; the process-side record (pid, mailbox)
 * of a shared pool is in shared_pool.h. */
struct MemberState {
    int32_t active;             /* 1 while the member is joined */
    int32_t base;               /* first global vCPU id */
    int32_t nr_vcpus;
    int32_t last_boosted_vcpu;  /* local index; per VM (shared pools) */
    uint64_t joined_ns;
    uint64_t slot_time_ns;      /* slot time of finished grants */
    uint64_t overrun_ns;        /* part of it past the slot's deadline */
    uint64_t grants;            /* slots received */
    uint64_t slot_waits;        /* waits in the queue that ended with a slot */
    uint64_t slot_wait_ns;
    uint64_t slot_wait_max_ns;
};

struct PoolState {
    int32_t nr_vcpus;           /* global id space in use (private: the VM's) */
    int32_t nr_slots;
    int32_t last_boosted_vcpu;  /* private pool: per VM, shared by every spinner */

    /* Run queue: FIFO as an index-linked list (O(1) removal anywhere). */
    int32_t q_head;
    int32_t q_tail;
    int32_t q_len;
    int32_t q_next[kMaxVcpus];
    int32_t q_prev[kMaxVcpus];

    /* Free slots: a stack of slot numbers. */
    int32_t free_top;
    int32_t free_stack[kMaxSlots];

    /* Per vCPU. */
    uint8_t state[kMaxVcpus];   /* VcpuState */
    uint8_t flags[kMaxVcpus];   /* vflag::* */
    int32_t slot_of[kMaxVcpus]; /* kNone unless kRunning */
    uint64_t queued_at_ns[kMaxVcpus];
    /* Total of its finished queue waits: the guest's steal time. */
    uint64_t steal_ns[kMaxVcpus];

    /* Per slot. */
    int32_t slot_owner[kMaxSlots];
    uint64_t slot_deadline_ns[kMaxSlots];
    uint64_t slot_kicked_at_ns[kMaxSlots]; /* 0: not kicked for this deadline */
    uint64_t slot_granted_at_ns[kMaxSlots]; /* start of the current grant */

    /* Members; vcpu_member[g] is g's member or kNone (unused id). */
    int32_t nr_members;         /* active members */
    MemberState member[kMaxMembers];
    int16_t vcpu_member[kMaxVcpus];
    /* Thread id that last acquired for g (0: none): lets other members
     * see that one vCPU thread is stopped (a per-thread tracer). */
    int32_t vcpu_tid[kMaxVcpus];
};

static_assert(std::is_standard_layout_v<PoolState>);
static_assert(std::is_trivially_copyable_v<PoolState>);

/*
 * A value read from the pool is out of range or inconsistent.  Another
 * process can write anything into a shared pool at any time, so every
 * index read from it is checked once, in a local copy, before it is used;
 * a bad one throws this (out of the lock section, which unlocks).  The
 * core then leaves the pool (core.h).  A private pool never throws it.
 */
class PoolCorrupt : public std::runtime_error {
public:
    explicit PoolCorrupt(const std::string &what) : std::runtime_error(what) {}
};
[[noreturn]] void pool_corrupt(const char *field, long long value);

/* One relaxed load of a shared field (never re-read after the check). */
template <typename T>
inline T shm_load(const T &field)
{
    return __atomic_load_n(&field, __ATOMIC_RELAXED);
}
/* field, checked to be in [0, limit). */
inline int32_t checked_index(const int32_t &field, int limit, const char *what)
{
    int32_t v = shm_load(field);
    if (static_cast<uint32_t>(v) >= static_cast<uint32_t>(limit)) {
        pool_corrupt(what, v);
    }
    return v;
}
/* field, checked to be kNone or in [0, limit). */
inline int32_t checked_or_none(const int32_t &field, int limit, const char *what)
{
    int32_t v = shm_load(field);
    if (v != kNone && static_cast<uint32_t>(v) >= static_cast<uint32_t>(limit)) {
        pool_corrupt(what, v);
    }
    return v;
}

/* Shared pools: which global vCPU ids are free, for "no room" messages
 * ("free ids: 0..3, 8..255 (largest run: 248)"). */
std::string describe_free_ids(const PoolState &s);

class SlotPool {
public:
    /* The whole pool, global ids (private pool: the VM's own ids). */
    explicit SlotPool(PoolState &s)
        : s_(&s), base_(0), n_(clamp_ids(shm_load(s.nr_vcpus))),
          last_boosted_(&s.last_boosted_vcpu)
    {
    }
    /* Member m only: local ids 0..n-1 from global id base, the member's
     * last_boosted.  base and n are the caller's own copies (checked at
     * join), never re-read from the pool. */
    SlotPool(PoolState &s, int m, int base, int n)
        : s_(&s), base_(base), n_(n), last_boosted_(&s.member[m].last_boosted_vcpu)
    {
    }

    /* Private pool: all vCPUs stopped, all slots free, empty queue, one
     * member (0) owning every vCPU. */
    void init(int nr_vcpus, int nr_slots);
    /* Shared pool: no members, the whole id space unused. */
    void init_empty(int nr_slots);

    PoolState &data() { return *s_; }
    const PoolState &data() const { return *s_; }
    /* vCPUs visible through this view, and the first one's global id. */
    int nr_vcpus() const { return n_; }
    int base() const { return base_; }
    /* A hint only: a value out of range reads as 0 (the kernel's start). */
    int last_boosted() const
    {
        int v = shm_load(*last_boosted_);
        return static_cast<unsigned>(v) < static_cast<unsigned>(n_) ? v : 0;
    }
    void set_last_boosted(int v) { *last_boosted_ = v; }

    VcpuState state(int v) const
    {
        uint8_t raw = shm_load(s_->state[base_ + v]);
        if (raw >= kNumVcpuStates) {
            pool_corrupt("state", raw);
        }
        return static_cast<VcpuState>(raw);
    }
    /* Checked transition; returns false (and changes nothing) if illegal. */
    bool set_state(int v, VcpuState to);

    bool has_flag(int v, uint8_t f) const { return (s_->flags[base_ + v] & f) != 0; }
    void set_flag(int v, uint8_t f) { s_->flags[base_ + v] |= f; }
    void clear_flag(int v, uint8_t f) { s_->flags[base_ + v] &= static_cast<uint8_t>(~f); }

    /* Run queue. */
    void enqueue_tail(int v);
    void remove(int v);       /* v must be queued */
    /* Queue v (not queued) right behind `prev` (queued), or at the head
     * if prev is kNone. */
    void insert_after(int v, int prev);
    int next(int v) const
    {
        return checked_or_none(s_->q_next[base_ + v], kMaxVcpus, "q_next");
    }
    int32_t checked_q_len() const;
    int head() const { return checked_or_none(s_->q_head, kMaxVcpus, "q_head"); }
    int queue_len() const { return shm_load(s_->q_len); }
    bool queued(int v) const;

    /* Slots. */
    int free_slots() const { return shm_load(s_->free_top); }
    int take_free_slot();     /* kNone if none */
    void put_free_slot(int slot);
    void assign(int slot, int v, uint64_t deadline_ns);
    void unassign(int slot);

    /* Checked reads of shared indices (global ids). */
    int slot_of(int g) const { return checked_or_none(s_->slot_of[g], kMaxSlots, "slot_of"); }
    int slot_owner(int slot) const
    {
        return checked_or_none(s_->slot_owner[slot], kMaxVcpus, "slot_owner");
    }
    int member_of(int g) const
    {
        int16_t m = shm_load(s_->vcpu_member[g]);
        if (m != kNone && static_cast<uint16_t>(m) >= kMaxMembers) {
            pool_corrupt("vcpu_member", m);
        }
        return m;
    }

private:
    static int clamp_ids(int n) { return n < 0 ? 0 : n > kMaxVcpus ? kMaxVcpus : n; }

    PoolState *s_;
    int base_;
    int n_;
    int32_t *last_boosted_;
};

} // namespace vsched

#endif
