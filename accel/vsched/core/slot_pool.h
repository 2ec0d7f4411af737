/*
 * vsched core: the slot pool as plain data.
 *
 * PoolState holds no pointers and no heap objects, only fixed-size arrays
 * indexed by vCPU or slot number, so a later issue can place it in shared
 * memory for several QEMU processes.  SlotPool is a thin, stateless view
 * with the operations the scheduler needs; it checks every state change.
 *
 * REQUIRES: the caller serialises all writes (the scheduler's mutex).
 */
#ifndef VSCHED_CORE_SLOT_POOL_H
#define VSCHED_CORE_SLOT_POOL_H

#include <cstdint>
#include <type_traits>

#include "config.h"
#include "vcpu_state.h"

namespace vsched {

inline constexpr int32_t kNone = -1;

struct PoolState {
    int32_t nr_vcpus;
    int32_t nr_slots;
    int32_t last_boosted_vcpu;  /* per VM, shared by every spinner */

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

    /* Per slot. */
    int32_t slot_owner[kMaxSlots];
    uint64_t slot_deadline_ns[kMaxSlots];
    uint64_t slot_kicked_at_ns[kMaxSlots]; /* 0: not kicked for this deadline */
};

static_assert(std::is_standard_layout_v<PoolState>);
static_assert(std::is_trivially_copyable_v<PoolState>);

class SlotPool {
public:
    explicit SlotPool(PoolState &s) : s_(s) {}

    /* All vCPUs stopped, all slots free, empty queue. */
    void init(int nr_vcpus, int nr_slots);

    PoolState &data() { return s_; }
    const PoolState &data() const { return s_; }

    VcpuState state(int v) const { return static_cast<VcpuState>(s_.state[v]); }
    /* Checked transition; returns false (and changes nothing) if illegal. */
    bool set_state(int v, VcpuState to);

    bool has_flag(int v, uint8_t f) const { return (s_.flags[v] & f) != 0; }
    void set_flag(int v, uint8_t f) { s_.flags[v] |= f; }
    void clear_flag(int v, uint8_t f) { s_.flags[v] &= static_cast<uint8_t>(~f); }

    /* Run queue. */
    void enqueue_tail(int v);
    void remove(int v);       /* v must be queued */
    int head() const { return s_.q_head; }
    int queue_len() const { return s_.q_len; }
    bool queued(int v) const;

    /* Slots. */
    int free_slots() const { return s_.free_top; }
    int take_free_slot();     /* kNone if none */
    void put_free_slot(int slot);
    void assign(int slot, int v, uint64_t deadline_ns);
    void unassign(int slot);

private:
    PoolState &s_;
};

} // namespace vsched

#endif
