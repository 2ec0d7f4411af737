/* vsched core: the round barrier of virtual time (see vtime_barrier.h). */
#include "vtime_barrier.h"


#include <algorithm>
#include <climits>

#include "core.h"
#include "shared_pool.h"
#include "shm_futex.h"
#include "vtime.h"

namespace vsched {

namespace {

/* Member m's bit of the futex bitset (FUTEX_WAIT_BITSET): the end of a
 * turn wakes only the member whose turn it is, not every waiter (with 3
 * or 4 VMs most wake-ups were for nothing).  Members 32 apart share a
 * bit: a spurious wake-up, harmless (a waiter is read-only: it changes
 * nothing however often it wakes). */
uint32_t member_bit(int m)
{
    return 1u << (static_cast<unsigned>(m) % 32);
}

enum { kOutDead, kOutStopped, kOutSlow };

/* The round's clock fields, checked (a corrupt value throws). */
void check_clock(const ShmVtime &vt)
{
    uint64_t start = shm_load(vt.start);
    uint64_t length = shm_load(vt.length);
    if (start >= kVtimeMaxTime) {
        pool_corrupt("vtime start", static_cast<long long>(start));
    }
    if (length < 1 || length > kVtimeMaxLength) {
        pool_corrupt("vtime length", static_cast<long long>(length));
    }
}

} // namespace

VtimeBarrier::VtimeBarrier(Core &core, uint64_t quantum, int gate, uint64_t turn_timeout_ns)
    : core_(core), pool_(*core.shared_pool()), me_(pool_.member()),
      quantum_(std::clamp<uint64_t>(quantum, 1, kVtimeMaxLength)), gate_(std::max(1, gate)),
      turn_timeout_ns_(turn_timeout_ns)
{
}

bool VtimeBarrier::in_rounds(const ShmPool &p, int m) const
{
    return shm_load(p.pool.member[m].active) != 0 && shm_load(p.vtime.member[m].present) != 0;
}

/* The next member in the rounds after `after` (kNone: none; -1: first). */
int VtimeBarrier::next_in_rounds(const ShmPool &p, int after) const
{
    for (int m = after + 1; m < kMaxMembers; m++) {
        if (in_rounds(p, m)) {
            return m;
        }
    }
    return kNone;
}

void VtimeBarrier::wake_all()
{
    futex_wake(&pool_.shm().vtime.seq);
}

/* REQUIRES: the pool lock.  The turn goes from `from` to the next member
 * in index order; after the last, the round closes. */
void VtimeBarrier::advance_locked(ShmPool &p, int from)
{
    int next = next_in_rounds(p, from);
    if (next != kNone) {
        p.vtime.turn = next;
    } else {
        close_round_locked(p);
    }
    __atomic_fetch_add(&p.vtime.seq, 1, __ATOMIC_RELEASE);
}

void VtimeBarrier::close_round_locked(ShmPool &p)
{
    ShmVtime &vt = p.vtime;
    check_clock(vt);
    const uint64_t start = shm_load(vt.start) + shm_load(vt.length);
    uint64_t deadline = kVtimeNoDeadline;
    bool all_idle = true;
    for (int m = 0; m < kMaxMembers; m++) {
        if (in_rounds(p, m)) {
            deadline = std::min(deadline, shm_load(vt.member[m].deadline));
            all_idle = all_idle && shm_load(vt.member[m].idle) != 0;
        }
    }
    int first = next_in_rounds(p, -1);
    uint64_t length;
    if (deadline == kVtimeNoDeadline) {
        length = quantum_;
    } else {
        length = deadline > start ? deadline - start : 1;
    }
    /* Everybody idle: nothing happens before the earliest deadline, skip
     * to it in one round (the pool's idle warp). */
    if (!all_idle || first == kNone) {
        length = std::min(length, quantum_);
    }
    vt.start = start;
    vt.length = std::min(length, kVtimeMaxLength);
    vt.round = shm_load(vt.round) + 1;
    vt.turn = first;
}

VtimeBarrier::Wait VtimeBarrier::wait_turn(uint64_t local_start,
                                           const std::function<bool()> &abort,
                                           const std::function<void()> &poll, VtimeTurn *out)
{
    ShmVtime &shared = pool_.shm().vtime;
    uint64_t seen_round = 0;
    int seen_turn = kNone - 1;
    uint64_t seen_since = mono_ns();
    uint64_t last_poll = seen_since;
    holding_ = false;
    for (;;) {
        const uint32_t seq = __atomic_load_n(&shared.seq, __ATOMIC_ACQUIRE);
        bool mine = false, changed = false;
        uint64_t round = 0;
        int turn = kNone;
        bool ok = core_.with_pool_locked([&](SharedPool &sp) {
            ShmPool &p = sp.shm();
            ShmVtime &vt = p.vtime;
            if (!shm_load(vt.member[me_].present)) {
                if (was_present_) {
                    ctr_.rejoins++; /* taken out while stopped, or left */
                }
                vt.member[me_].present = 1;
                vt.member[me_].idle = 0;
                vt.member[me_].deadline = kVtimeNoDeadline;
                was_present_ = true;
                changed = true;
            }
            if (!shm_load(vt.started)) {
                int n = 0;
                for (int m = 0; m < kMaxMembers; m++) {
                    n += in_rounds(p, m) ? 1 : 0;
                }
                if (n < gate_) {
                    return;
                }
                vt.round = 0;
                vt.start = local_start;
                vt.length = quantum_;
                vt.turn = next_in_rounds(p, -1);
                vt.started = 1;
                changed = true;
            }
            check_clock(vt);
            int t = checked_or_none(vt.turn, kMaxMembers, "vtime turn");
            if (t == kNone || !in_rounds(p, t)) {
                /* Nobody was in, or the holder left: the next one. */
                if (t == kNone) {
                    vt.turn = next_in_rounds(p, -1);
                } else {
                    advance_locked(p, t);
                }
                changed = true;
                check_clock(vt);
                t = checked_or_none(vt.turn, kMaxMembers, "vtime turn");
            }
            round = shm_load(vt.round);
            turn = t;
            if (t == me_) {
                mine = true;
                turn_.round = round;
                turn_.start = shm_load(vt.start);
                turn_.length = shm_load(vt.length);
            }
        });
        if (changed) {
            __atomic_fetch_add(&shared.seq, 1, __ATOMIC_RELEASE);
            wake_all();
        }
        if (!ok) {
            return Wait::kDetached;
        }
        if (mine) {
            if (turn_.start < local_start) {
                /* Our clock never goes back: the pool's cannot be behind. */
                core_.detach_pool("vtime start is behind this VM's clock");
                return Wait::kDetached;
            }
            holding_ = true;
            ctr_.turns++;
            *out = turn_;
            return Wait::kTurn;
        }
        if (abort()) {
            leave();
            return Wait::kAborted;
        }
        futex_wait_bits(&shared.seq, seq, kTurnCheckNs, member_bit(me_));
        const uint64_t now = mono_ns();
        if (now - last_poll >= kReapIntervalNs) {
            last_poll = now;
            poll();
        }
        if (turn != seen_turn || round != seen_round) {
            seen_turn = turn;
            seen_round = round;
            seen_since = now;
            continue;
        }
        if (turn == kNone || now - seen_since < kTurnCheckNs) {
            continue;
        }
        /* The same turn for a while: is its holder still there? */
        const ShmMember &pr = pool_.shm().proc[turn];
        const int pid = shm_load(pr.pid);
        if (pid <= 0 || !member_alive(pid, shm_load(pr.start_time))) {
            take_out(turn, round, kOutDead);
            poll(); /* reap it: its slots go to the others */
        } else if (proc_stopped(pid)) {
            take_out(turn, round, kOutStopped);
        } else if (now - seen_since >= turn_timeout_ns_) {
            take_out(turn, round, kOutSlow);
        }
    }
}

/*
 * Take member m out of the rounds if it still holds turn `round`.  One
 * that has left the pool meanwhile (a clean exit: its pid is cleared in
 * the same step) is taken out but not counted: whether we looked before
 * or after its exit is host timing, and counters of identical runs must
 * not depend on it.
 */
bool VtimeBarrier::take_out(int m, uint64_t round, int why)
{
    bool done = false, counted = false;
    core_.with_pool_locked([&](SharedPool &sp) {
        ShmPool &p = sp.shm();
        if (shm_load(p.vtime.turn) != m || shm_load(p.vtime.round) != round) {
            return; /* it passed meanwhile */
        }
        counted = shm_load(p.pool.member[m].active) != 0;
        p.vtime.member[m].present = 0;
        advance_locked(p, m);
        done = true;
    });
    if (done) {
        wake_all();
    }
    if (counted) {
        (why == kOutDead ? ctr_.skipped_dead
                         : why == kOutStopped ? ctr_.skipped_stopped : ctr_.skipped_slow)++;
    }
    return done;
}

bool VtimeBarrier::pass(uint64_t deadline, bool idle)
{
    if (!holding_) {
        return true;
    }
    holding_ = false;
    bool passed = false;
    int next = kNone;
    bool ok = core_.with_pool_locked([&](SharedPool &sp) {
        ShmPool &p = sp.shm();
        p.vtime.member[me_].deadline = deadline;
        p.vtime.member[me_].idle = idle ? 1 : 0;
        if (shm_load(p.vtime.turn) == me_ && shm_load(p.vtime.round) == turn_.round) {
            advance_locked(p, me_);
            passed = true;
            next = shm_load(p.vtime.turn);
        }
    });
    if (passed && next >= 0 && next < kMaxMembers) {
        futex_wake_bits(&pool_.shm().vtime.seq, member_bit(next));
    } else if (passed) {
        wake_all();
    } else if (ok) {
        ctr_.lost_turns++; /* we were stopped and taken out meanwhile */
    }
    return ok;
}

void VtimeBarrier::leave()
{
    bool changed = false;
    holding_ = false;
    core_.with_pool_locked([&](SharedPool &sp) {
        ShmPool &p = sp.shm();
        p.vtime.member[me_].present = 0;
        if (shm_load(p.vtime.started) && shm_load(p.vtime.turn) == me_) {
            advance_locked(p, me_);
        } else {
            __atomic_fetch_add(&p.vtime.seq, 1, __ATOMIC_RELEASE);
        }
        changed = true;
    });
    was_present_ = false;
    if (changed) {
        wake_all();
    }
}

uint64_t VtimeBarrier::slot_used(int s) const
{
    const ShmVtimeSlot &sl = pool_.shm().vtime.slot[s];
    if (!holding_ || shm_load(sl.round) != turn_.round) {
        return 0;
    }
    uint64_t used = shm_load(sl.used);
    if (used > turn_.length) {
        pool_corrupt("vtime slot used", static_cast<long long>(used));
    }
    return used;
}

void VtimeBarrier::publish_slot(int s, uint64_t used)
{
    if (!holding_) {
        return;
    }
    ShmVtimeSlot &sl = pool_.shm().vtime.slot[s];
    __atomic_store_n(&sl.used, used, __ATOMIC_RELAXED);
    __atomic_store_n(&sl.round, turn_.round, __ATOMIC_RELAXED);
}

} // namespace vsched
