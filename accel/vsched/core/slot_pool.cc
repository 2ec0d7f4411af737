/* vsched core: slot pool operations on plain data. */
#include "slot_pool.h"

#include <cassert>

namespace vsched {

void SlotPool::init(int nr_vcpus, int nr_slots)
{
    s_.nr_vcpus = nr_vcpus;
    s_.nr_slots = nr_slots;
    s_.last_boosted_vcpu = 0; /* kvm->last_boosted_vcpu starts zeroed */
    s_.q_head = s_.q_tail = kNone;
    s_.q_len = 0;
    for (int v = 0; v < kMaxVcpus; v++) {
        s_.q_next[v] = s_.q_prev[v] = kNone;
        s_.state[v] = static_cast<uint8_t>(VcpuState::kStopped);
        s_.flags[v] = 0;
        s_.slot_of[v] = kNone;
        s_.queued_at_ns[v] = 0;
    }
    s_.free_top = 0;
    for (int i = 0; i < kMaxSlots; i++) {
        s_.slot_owner[i] = kNone;
        s_.slot_deadline_ns[i] = 0;
        s_.slot_kicked_at_ns[i] = 0;
    }
    /* Push in reverse so slot 0 is handed out first. */
    for (int i = nr_slots - 1; i >= 0; i--) {
        s_.free_stack[s_.free_top++] = i;
    }
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
    s_.state[v] = static_cast<uint8_t>(to);
    return true;
}

bool SlotPool::queued(int v) const
{
    return s_.q_prev[v] != kNone || s_.q_head == v;
}

void SlotPool::enqueue_tail(int v)
{
    assert(!queued(v));
    s_.q_next[v] = kNone;
    s_.q_prev[v] = s_.q_tail;
    if (s_.q_tail != kNone) {
        s_.q_next[s_.q_tail] = v;
    } else {
        s_.q_head = v;
    }
    s_.q_tail = v;
    s_.q_len++;
}

void SlotPool::remove(int v)
{
    assert(queued(v));
    int p = s_.q_prev[v];
    int n = s_.q_next[v];
    if (p != kNone) {
        s_.q_next[p] = n;
    } else {
        s_.q_head = n;
    }
    if (n != kNone) {
        s_.q_prev[n] = p;
    } else {
        s_.q_tail = p;
    }
    s_.q_next[v] = s_.q_prev[v] = kNone;
    s_.q_len--;
}

int SlotPool::take_free_slot()
{
    if (s_.free_top == 0) {
        return kNone;
    }
    return s_.free_stack[--s_.free_top];
}

void SlotPool::put_free_slot(int slot)
{
    assert(s_.slot_owner[slot] == kNone);
    s_.free_stack[s_.free_top++] = slot;
}

void SlotPool::assign(int slot, int v, uint64_t deadline_ns)
{
    assert(s_.slot_owner[slot] == kNone && s_.slot_of[v] == kNone);
    s_.slot_owner[slot] = v;
    s_.slot_of[v] = slot;
    s_.slot_deadline_ns[slot] = deadline_ns;
    s_.slot_kicked_at_ns[slot] = 0;
}

void SlotPool::unassign(int slot)
{
    int v = s_.slot_owner[slot];
    assert(v != kNone);
    s_.slot_of[v] = kNone;
    s_.slot_owner[slot] = kNone;
    s_.slot_kicked_at_ns[slot] = 0;
}

} // namespace vsched
