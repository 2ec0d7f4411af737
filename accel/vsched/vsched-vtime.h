/*
 * vsched: virtual time (-accel tcg,time=virtual), state shared by the glue.
 *
 * See docs/design/virtual-time.rst.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef ACCEL_VSCHED_VTIME_H
#define ACCEL_VSCHED_VTIME_H

#include "core/vsched-vtime-core.h"

/*
 * What -accel tcg,time=...,quantum=...,pool-members=... asked for (the
 * properties: vsched-props.c, their rows in the core's settings table).
 */
typedef struct VschedVtimeSettings {
    bool virtual_time;      /* time=virtual */
    bool quantum_set;       /* quantum given on the command line */
    uint64_t quantum;       /* instructions per round */
    uint64_t pool_members;  /* pool=: the first round waits for N VMs */
    bool pool_members_set;
} VschedVtimeSettings;

extern VschedVtimeSettings vsched_vtime;

/*
 * At machine-init-done, before anything else of vsched starts: refuse
 * every combination that cannot give virtual time (exits with a message
 * naming the fix).  Returns true when time=virtual is on and valid.
 */
bool vsched_vtime_check_startup(bool vcpu_sched);

/* The core's host operations in virtual time: @real with the clock of the
 * running slot (filled into @buf). */
const VschedHostOps *vsched_vtime_host_ops(const VschedHostOps *real,
                                           VschedHostOps *buf);
/* Once vsched_core exists: set up the rounds and switch the hooks on. */
void vsched_vtime_start(void);
/* pool= in virtual time: the pool's time base for this VM (shift, quantum). */
void vsched_vtime_time_base(VschedTimeBase *tb);
/* At exit: the hooks go back to upstream's behaviour. */
void vsched_vtime_stop(void);
/*
 * The PAUSE and MWAIT hooks: how the running vCPU is leaving guest code
 * (VSCHED_VTIME_PAUSE or _MWAIT), so the round charges its cost.
 */
extern int vsched_vtime_exit_kind;
static inline void vsched_vtime_note_exit(int kind)
{
    vsched_vtime_exit_kind = kind;
}

/* The guest asked for shutdown (virtual time): no guest code runs until
 * the VM has stopped (see vsched_shutdown_request). */
bool vsched_vtime_guest_shut_down(void);

/* helper_pause in virtual time: the PAUSE is charged, the run goes on. */
bool vsched_vtime_pause_continues(CPUState *cpu);

/*
 * The rounds' counters (vtime_rounds, ...), after the core's and the
 * glue's in every list of counters; none in real time.  Read under the
 * BQL: the round-robin thread changes them.
 */
int vsched_vtime_counter_count(void);
const char *vsched_vtime_counter_name(int i);
uint64_t vsched_vtime_counter_value(int i);

/* query-vsched: the time base; false in real time. */
typedef struct VschedVtimeQuery {
    uint64_t quantum;       /* instructions per slot per round */
    int shift;              /* -icount shift: 2^shift ns per instruction */
    uint64_t now_ns;        /* the virtual clock (the running slot's) */
} VschedVtimeQuery;
bool vsched_vtime_query(VschedVtimeQuery *out);

/* stats-file: ",\"vtime_now\":N" (the clock, in instructions), if running. */
void vsched_vtime_append_stats(GString *json);

#endif
