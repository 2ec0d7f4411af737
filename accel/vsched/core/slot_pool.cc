/* vsched core: slot pool operations on plain data. */
#include "slot_pool.h"

#include <algorithm>
#include <cassert>
#include <cstdio>

namespace vsched {

void pool_corrupt(const char *field, long long value)
{
    char m[128];
    std::snprintf(m, sizeof m, "%s = %lld is out of range", field, value);
    throw PoolCorrupt(m);
}

std::string describe_free_ids(const PoolState &s)
{
    constexpr int kMaxRuns = 8;
    std::string runs;
    int nruns = 0, largest = 0;
    for (int g = 0; g < kMaxVcpus;) {
        if (shm_load(s.vcpu_member[g]) != kNone) {
            g++;
            continue;
        }
        int end = g;
        while (end < kMaxVcpus && shm_load(s.vcpu_member[end]) == kNone) {
            end++;
        }
        largest = std::max(largest, end - g);
        if (nruns++ < kMaxRuns) {
            runs += (runs.empty() ? "" : ", ") + std::to_string(g) + ".." +
                    std::to_string(end - 1);
        }
        g = end;
    }
    if (nruns == 0) {
        return "no pool id is free";
    }
    if (nruns > kMaxRuns) {
        runs += ", ...";
    }
    return "free pool ids: " + runs + " (largest run: " + std::to_string(largest) +
           "; a VM's ids are one contiguous run)";
}

void SlotPool::init(int nr_vcpus, int nr_slots)
{
    s_->nr_vcpus = nr_vcpus;
    s_->nr_slots = nr_slots;
    base_ = 0;
    n_ = nr_vcpus;
    s_->last_boosted_vcpu = 0; /* kvm->last_boosted_vcpu starts zeroed */
    s_->q_head = s_->q_tail = kNone;
    s_->q_len = 0;
    for (int v = 0; v < kMaxVcpus; v++) {
        s_->q_next[v] = s_->q_prev[v] = kNone;
        s_->state[v] = static_cast<uint8_t>(VcpuState::kStopped);
        s_->flags[v] = 0;
        s_->slot_of[v] = kNone;
        s_->queued_at_ns[v] = 0;
        s_->steal_ns[v] = 0;
    }
    s_->free_top = 0;
    for (int i = 0; i < kMaxSlots; i++) {
        s_->slot_owner[i] = kNone;
        s_->slot_deadline_ns[i] = 0;
        s_->slot_kicked_at_ns[i] = 0;
        s_->slot_granted_at_ns[i] = 0;
    }
    s_->nr_members = 1;
    for (int m = 0; m < kMaxMembers; m++) {
        s_->member[m] = MemberState{};
    }
    s_->member[0].active = 1;
    s_->member[0].nr_vcpus = nr_vcpus;
    for (int v = 0; v < kMaxVcpus; v++) {
        s_->vcpu_member[v] = v < nr_vcpus ? 0 : static_cast<int16_t>(kNone);
    }
    /* Push in reverse so slot 0 is handed out first. */
    int top = 0;
    for (int i = nr_slots - 1; i >= 0; i--) {
        s_->free_stack[top++] = i;
    }
    s_->free_top = top;
}

void SlotPool::init_empty(int nr_slots)
{
    init(kMaxVcpus, nr_slots);
    s_->nr_members = 0;
    s_->member[0] = MemberState{};
    for (int v = 0; v < kMaxVcpus; v++) {
        s_->vcpu_member[v] = static_cast<int16_t>(kNone);
    }
    n_ = kMaxVcpus;
}

bool SlotPool::set_state(int v, VcpuState to)
{
    VcpuState from = state(v);
    if (from == to) {
        return to != VcpuState::kRunning && to != VcpuState::kQueued;
    }
    if (!transition_allowed(from, to)) {
        return false;
    }
    s_->state[base_ + v] = static_cast<uint8_t>(to);
    return true;
}

bool SlotPool::queued(int v) const
{
    v += base_;
    return shm_load(s_->q_prev[v]) != kNone || shm_load(s_->q_head) == v;
}

void SlotPool::enqueue_tail(int v)
{
    if (queued(v)) {
        pool_corrupt("queue entry of a vCPU not queued", v + base_);
    }
    v += base_;
    const int tail = checked_or_none(s_->q_tail, kMaxVcpus, "q_tail");
    s_->q_next[v] = kNone;
    s_->q_prev[v] = tail;
    if (tail != kNone) {
        s_->q_next[tail] = v;
    } else {
        s_->q_head = v;
    }
    s_->q_tail = v;
    s_->q_len = checked_q_len() + 1;
}

void SlotPool::insert_after(int v, int prev)
{
    if (queued(v) || (prev != kNone && !queued(prev))) {
        pool_corrupt("insert_after of a queued vCPU or behind an unqueued one", v + base_);
    }
    v += base_;
    const int nxt = prev == kNone ? checked_or_none(s_->q_head, kMaxVcpus, "q_head")
                                  : checked_or_none(s_->q_next[prev + base_], kMaxVcpus,
                                                    "q_next");
    const int p = prev == kNone ? kNone : prev + base_;
    s_->q_prev[v] = p;
    s_->q_next[v] = nxt;
    if (p != kNone) {
        s_->q_next[p] = v;
    } else {
        s_->q_head = v;
    }
    if (nxt != kNone) {
        s_->q_prev[nxt] = v;
    } else {
        s_->q_tail = v;
    }
    s_->q_len = checked_q_len() + 1;
}

/* The queue length is shared data: a value no queue can have is a corrupt
 * pool, never an arithmetic overflow. */
int32_t SlotPool::checked_q_len() const
{
    int32_t n = shm_load(s_->q_len);
    if (n < 0 || n > kMaxVcpus) {
        pool_corrupt("q_len", n);
    }
    return n;
}

void SlotPool::remove(int v)
{
    if (!queued(v)) {
        pool_corrupt("queued vCPU missing from the queue", v + base_);
    }
    v += base_;
    int p = checked_or_none(s_->q_prev[v], kMaxVcpus, "q_prev");
    int n = checked_or_none(s_->q_next[v], kMaxVcpus, "q_next");
    if (p != kNone) {
        s_->q_next[p] = n;
    } else {
        s_->q_head = n;
    }
    if (n != kNone) {
        s_->q_prev[n] = p;
    } else {
        s_->q_tail = p;
    }
    s_->q_next[v] = s_->q_prev[v] = kNone;
    s_->q_len = checked_q_len() - 1;
}

int SlotPool::take_free_slot()
{
    int top = shm_load(s_->free_top);
    if (top == 0) {
        return kNone;
    }
    if (top < 0 || top > kMaxSlots) {
        pool_corrupt("free_top", top);
    }
    int slot = checked_index(s_->free_stack[top - 1], kMaxSlots, "free_stack");
    s_->free_top = top - 1;
    return slot;
}

void SlotPool::put_free_slot(int slot)
{
    int top = shm_load(s_->free_top);
    if (top < 0 || top >= kMaxSlots) {
        pool_corrupt("free_top", top);
    }
    if (slot_owner(slot) != kNone) {
        pool_corrupt("owner of a slot being freed", slot);
    }
    s_->free_stack[top] = slot;
    s_->free_top = top + 1;
}

void SlotPool::assign(int slot, int v, uint64_t deadline_ns)
{
    v += base_;
    if (slot_owner(slot) != kNone || slot_of(v) != kNone) {
        pool_corrupt("slot assigned twice", slot);
    }
    s_->slot_owner[slot] = v;
    s_->slot_of[v] = slot;
    s_->slot_deadline_ns[slot] = deadline_ns;
    s_->slot_kicked_at_ns[slot] = 0;
}

void SlotPool::unassign(int slot)
{
    int v = slot_owner(slot);
    if (v == kNone) {
        pool_corrupt("owner of a held slot", v);
    }
    s_->slot_of[v] = kNone;
    s_->slot_owner[slot] = kNone;
    s_->slot_kicked_at_ns[slot] = 0;
}

} // namespace vsched
