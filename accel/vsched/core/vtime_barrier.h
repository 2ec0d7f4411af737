/*
 * vsched core: the round barrier of virtual time in a shared pool.
 *
 * Several VMs (members) on one pool in time=virtual advance round by round
 * together, on one virtual clock.  Within a round the members take turns
 * in member index order: the member whose turn it is runs its part of the
 * round (its slots, slot by slot, its vCPUs in vCPU order: VtimeDriver),
 * runs its timers due at the round's end, publishes its next timer
 * deadline and passes the turn on; the last member closes the round.  So
 * every decision that crosses VMs (a slot handed from one VM's vCPU to
 * another's, through the pool's FIFO) happens in one total order fixed by
 * member index and vCPU id, never by arrival time.
 *
 * Round length: the member closing round r sets L_{r+1} = min(quantum,
 * earliest published deadline - T_{r+1}) over the members in the rounds;
 * when every one of them was idle (no runnable vCPU) the quantum cap is
 * dropped and the pool skips to that deadline in one round.
 *
 * A slot handed to a later member in the same round goes on from where
 * the earlier member left it (slot_used / publish_slot): the slot's
 * progress is one, whoever runs on it.
 *
 * Waiting is a futex wait on `seq` (bumped at every turn change), in steps
 * of kTurnCheckNs; the end of a turn wakes only the member whose turn
 * comes next (FUTEX_WAKE_BITSET), joins, leaves and skips wake every
 * waiter.  After one such step on the same turn the waiter looks
 * at the holder's process; a dead one (killed) or a stopped one (SIGSTOP,
 * a debugger) is taken out of the rounds and its turn passes on.  A
 * stopped member comes back on its own (present again at its next wait).
 * A VM stopped by the monitor leaves the rounds (leave()) and comes back
 * when it runs again.  A live member holding its turn past turn_timeout_ns
 * is skipped too (a hung or hostile member cannot stall the others).
 *
 * The state lives in the pool's shared memory (ShmVtime) and changes only
 * under the pool lock.  Every value read from it is checked; a bad one
 * detaches this VM from the pool (Core::detach_pool: one line, then
 * private slots and the single-VM rounds).
 *
 * See docs/design/virtual-time.rst.
 */
#ifndef VSCHED_CORE_VTIME_BARRIER_H
#define VSCHED_CORE_VTIME_BARRIER_H

#include <cstdint>
#include <functional>

#include "slot_pool.h"

namespace vsched {

class Core;
class SharedPool;
struct ShmPool;

/* Per member (index as in ShmPool::proc). */
struct ShmVtimeMember {
    uint32_t present;   /* 1: its round-robin thread takes turns */
    uint32_t idle;      /* no vCPU of it could run at its last turn */
    uint64_t deadline;  /* its next timer, pool time (instructions);
                         * UINT64_MAX: none */
};

/* Per slot: how far the slot got in `round` when a member passed it on. */
struct ShmVtimeSlot {
    uint64_t round;
    uint64_t used;
};

struct ShmVtime {
    uint32_t seq;       /* futex word: bumped on every change waiters see */
    uint32_t started;   /* 1 once the first round began */
    uint64_t round;     /* the current round */
    int32_t turn;       /* member whose turn it is (kNone: nobody in) */
    uint32_t pad;
    uint64_t start;     /* pool time at the round's start (instructions) */
    uint64_t length;    /* the round's length (instructions) */
    ShmVtimeMember member[kMaxMembers];
    ShmVtimeSlot slot[kMaxSlots];
};

/* Bounds of the shared clock: (2^52 instructions) << shift (at most 10)
 * stays below 2^63 ns. */
inline constexpr uint64_t kVtimeMaxTime = 1ull << 52;
inline constexpr uint64_t kVtimeMaxLength = 1ull << 40;
/* Waiting for a turn: look at the holder's process this often. */
inline constexpr uint64_t kTurnCheckNs = 10'000'000ull;
/* A live member that holds its turn this long (host time) is skipped.  A
 * skip changes the run, so the bound is for hung members only: one guest
 * instruction can do much host work (the fw_cfg DMA that loads kernel and
 * initrd at boot), and a loaded host stretches it; 2 s was exceeded at
 * load 15 on 2 cores. */
inline constexpr uint64_t kTurnTimeoutNs = 30'000'000'000ull;

struct VtimeTurn {
    uint64_t round = 0;
    uint64_t start = 0;
    uint64_t length = 0;
};

struct VtimeBarrierCounters {
    uint64_t turns = 0;            /* turns taken */
    uint64_t lost_turns = 0;       /* turns others passed on while we held them */
    uint64_t skipped_dead = 0;     /* members taken out: process gone */
    uint64_t skipped_stopped = 0;  /* members taken out: process stopped */
    uint64_t skipped_slow = 0;     /* members taken out: turn held too long */
    uint64_t rejoins = 0;          /* came back after being taken out */
};

class VtimeBarrier {
public:
    /* core must be on a shared pool.  gate: the first round begins once
     * this many members are present. */
    VtimeBarrier(Core &core, uint64_t quantum, int gate,
                 uint64_t turn_timeout_ns = kTurnTimeoutNs);

    enum class Wait {
        kTurn,      /* our turn: *out is the round */
        kAborted,   /* abort() said so; we left the rounds */
        kDetached,  /* the pool is corrupt (or was left): run alone */
    };
    /*
     * Blocks until it is our turn (futex waits, no spinning).  local_start:
     * our clock; the pool's may be ahead (we were out of the rounds), never
     * behind.  abort() is asked on every wake-up (at the latest every
     * kTurnCheckNs); poll() about every 20 ms of waiting (reaping dead
     * members).
     */
    Wait wait_turn(uint64_t local_start, const std::function<bool()> &abort,
                   const std::function<void()> &poll, VtimeTurn *out);
    /* End of our turn: publish our next deadline (pool time) and whether
     * we are idle, and pass the turn on.  False: detached. */
    bool pass(uint64_t deadline, bool idle);
    /* Out of the rounds (VM stopped, exit); the next wait_turn rejoins. */
    void leave();
    bool holding() const { return holding_; }

    /* During our turn: how far earlier members of this round got on slot
     * s, and how far we got.  slot_used() throws PoolCorrupt. */
    uint64_t slot_used(int s) const;
    void publish_slot(int s, uint64_t used);

    const VtimeBarrierCounters &counters() const { return ctr_; }

private:
    bool in_rounds(const ShmPool &p, int m) const;
    int next_in_rounds(const ShmPool &p, int after) const;
    void advance_locked(ShmPool &p, int from);
    void close_round_locked(ShmPool &p);
    void wake_all();
    bool take_out(int m, uint64_t round, int why);

    Core &core_;
    SharedPool &pool_;
    const int me_;
    const uint64_t quantum_;
    const int gate_;
    const uint64_t turn_timeout_ns_;
    bool holding_ = false;
    bool was_present_ = false;
    VtimeTurn turn_;
    VtimeBarrierCounters ctr_;
};

} // namespace vsched

#endif
