/*
 * vsched-vtime-core.h: C facade of virtual time (rounds and their driver).
 *
 * Plain C; the implementation is C++20 (vtime_facade.cc, vtime.h,
 * vtime_driver.h).  Time is in guest instructions.  Not thread-safe: one
 * thread (QEMU's round-robin vCPU thread) owns a VschedVtime.  See
 * docs/design/virtual-time.rst.
 */
#ifndef VSCHED_VTIME_CORE_H
#define VSCHED_VTIME_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include "vsched-core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct VschedVtime VschedVtime;

/* How a run ended (VschedVtimeOps.run). */
enum {
    VSCHED_VTIME_RAN = 0,   /* budget used, or left for no scheduling reason */
    VSCHED_VTIME_HALTED,    /* HLT, or halted already */
    VSCHED_VTIME_PAUSE,     /* left at a PAUSE */
    VSCHED_VTIME_MWAIT,     /* left at an idle MWAIT */
    VSCHED_VTIME_BREAK,     /* the emulator needs the thread (stop, debug) */
};

/* What vsched_vtime_run_round() did. */
enum {
    VSCHED_VTIME_ROUND_DONE = 0,    /* the round closed */
    VSCHED_VTIME_ROUND_BREAK,       /* a run broke off; call again to resume */
    VSCHED_VTIME_ALL_IDLE,          /* nothing can run; no round begun */
};

#define VSCHED_VTIME_NO_DEADLINE UINT64_MAX
/* The 'quantum' property's default (its range: the settings table). */
#define VSCHED_VTIME_QUANTUM_DEFAULT 10000

typedef struct VschedVtimeOps {
    /* vcpu may run guest code now. */
    bool (*runnable)(void *opaque, int vcpu);
    /* Run vcpu (it holds the running slot) for at most budget instructions,
     * accounting them with vsched_vtime_account(); returns VSCHED_VTIME_*. */
    int (*run)(void *opaque, int vcpu, uint64_t budget);
} VschedVtimeOps;

typedef struct VschedVtimeCounters {
    uint64_t rounds, short_rounds, executed, idle, charged, warps, warped;
    uint64_t runs, holder_changes, stalls, catch_ups;
    uint64_t inline_pauses;     /* PAUSEs charged without ending the run */
} VschedVtimeCounters;

/* Rounds of `quantum` instructions over core's slots, from time `start`.
 * NULL on bad arguments.  The core must outlive it. */
VschedVtime *vsched_vtime_new(VschedCore *core, uint64_t quantum, uint64_t start,
                              const VschedVtimeOps *ops, void *opaque);
void vsched_vtime_free(VschedVtime *vt);

/* Runs or resumes one round (VSCHED_VTIME_ROUND_*).  to_deadline:
 * instructions from the round's start to the next timer deadline. */
int vsched_vtime_run_round(VschedVtime *vt, uint64_t to_deadline);
/* The running slot's holder executed n instructions (clamped to its
 * budget); returns the slot's clock.  Between slots: no-op. */
uint64_t vsched_vtime_account(VschedVtime *vt, uint64_t n);
/* Clock of the running slot, or the round's start between slots. */
uint64_t vsched_vtime_now(VschedVtime *vt);
/* Between rounds: skip n idle instructions (to a timer deadline). */
void vsched_vtime_warp(VschedVtime *vt, uint64_t n);
int vsched_vtime_slots(VschedVtime *vt);
/* A round is open (broken off; vsched_vtime_run_round resumes it). */
bool vsched_vtime_round_open(VschedVtime *vt);

/*
 * Several VMs on one shared pool in virtual time: the round barrier
 * (vtime_barrier.h).  Members take turns in member index order; each turn
 * is one round of this VM's slots.
 */
typedef struct VschedVtimeTurn {
    uint64_t start;     /* the round's start, pool time (instructions) */
    uint64_t length;    /* its length: pass it to vsched_vtime_run_round */
} VschedVtimeTurn;

enum {
    VSCHED_VTIME_TURN = 0,      /* our turn */
    VSCHED_VTIME_TURN_ABORTED,  /* abort() said so: out of the rounds */
    VSCHED_VTIME_TURN_DETACHED, /* not (any more) on a shared pool: alone */
};

typedef struct VschedVtimeBarrierCounters {
    uint64_t turns, lost_turns, skipped_dead, skipped_stopped, skipped_slow, rejoins;
} VschedVtimeBarrierCounters;

/* Take part in the core's shared pool's rounds; gate: the first round
 * waits for that many VMs.  False on a private pool. */
bool vsched_vtime_pool_join(VschedVtime *vt, int gate);
/* In a pool's rounds (false once the VM left a corrupt pool). */
bool vsched_vtime_pooled(VschedVtime *vt);
/* Blocks (futex) until our turn; the local clock catches up with the
 * pool's.  Call without the BQL: it may wait for other VMs. */
int vsched_vtime_pool_wait(VschedVtime *vt, bool (*abort)(void *opaque), void *opaque,
                           VschedVtimeTurn *out);
/* End of our turn: our next timer deadline (pool time, or
 * VSCHED_VTIME_NO_DEADLINE) and whether no vCPU of ours can run. */
void vsched_vtime_pool_pass(VschedVtime *vt, uint64_t deadline, bool idle);
/* Out of the rounds (the VM stops); the next wait rejoins. */
void vsched_vtime_pool_leave(VschedVtime *vt);
void vsched_vtime_barrier_counters(VschedVtime *vt, VschedVtimeBarrierCounters *out);
void vsched_vtime_counters(VschedVtime *vt, VschedVtimeCounters *out);

/*
 * A PAUSE of the running vCPU (its thread, inside the run): charge its
 * cost now and let the run go on, when ending the run there would change
 * nothing (docs/design/virtual-time.rst, Speed).  run_left: instructions
 * left in the run's budget; next_ns: the core's clock once the cost is
 * charged (its next gate pass).  True: charged, the caller takes the cost
 * off the run's budget and goes on; false: end the run as before (the
 * round charges the cost after it).
 */
bool vsched_vtime_pause_inline(VschedVtime *vt, int vcpu, uint64_t run_left,
                               uint64_t next_ns);

/* Instructions a guest PAUSE, HLT and MWAIT cost in virtual time. */
uint64_t vsched_vtime_pause_cost(void);
uint64_t vsched_vtime_hlt_cost(void);
uint64_t vsched_vtime_mwait_cost(void);

#ifdef __cplusplus
}
#endif

#endif
