/*
 * vsched: the TCG side of the slot scheduler.
 *
 * The gate sits in tcg_cpu_exec() before cpu_exec_start(), so a vCPU never
 * blocks inside the exclusive region (tb_flush, gdbstub and atomic steps
 * wait for running vCPUs).  Under MTTCG a vCPU without a slot waits on its
 * halt_cond with the BQL, which every QEMU wake-up (kick, stop, queued work,
 * interrupt) already broadcasts, and leaves the gate whenever QEMU wants
 * the thread back.  Round robin runs all vCPUs on one thread, so there the
 * gate never blocks: it skips a vCPU that has no slot.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "hw/core/cpu.h"
#include "system/cpus.h"
#include "exec/cpu-common.h"
#include "accel/vsched.h"
#include "vsched-internal.h"
#include "vsched-vtime.h"
#include "trace.h"

/* Longest a vCPU waits for a slot before asking the scheduler again. */
#define VSCHED_GATE_RECHECK_MS 10

/* Set by the MWAIT hook on this vCPU's thread; the PAUSE that follows is idle. */
static __thread bool vsched_in_mwait;
/* This vCPU's last exit was an idle MWAIT: give the slot away. */
static __thread bool vsched_idle_exit;

void vsched_tcg_mwait(CPUState *cs)
{
    vsched_vtime_note_exit(VSCHED_VTIME_MWAIT);
    vsched_in_mwait = true;
    vsched_on_mwait(vsched_core, cs->cpu_index);
}

void vsched_tcg_pause(CPUState *cs, int cpl)
{
    if (vsched_in_mwait) {
        vsched_in_mwait = false;
        vsched_idle_exit = true;
        return;
    }
    vsched_vtime_note_exit(VSCHED_VTIME_PAUSE);
    if (!vsched_on_pause(vsched_core, cs->cpu_index, cpl) &&
        vsched_vtime_pause_continues(cs)) {
        /* Virtual time, nothing to decide: leave the TB, not the run. */
        cpu_loop_exit_noexc(cs);
    }
}

/* Why a vCPU without a slot must go back to QEMU's loop instead of waiting. */
static const char *gate_bail_reason(CPUState *cs)
{
    if (cs->stop || cs->stopped || !cpu_can_run(cs)) {
        return "stop";
    }
    if (cs->unplug) {
        return "unplug";
    }
    if (!cpu_work_list_empty(cs)) {
        return "queued work";
    }
    if (qatomic_read(&cs->exit_request)) {
        return "exit request";
    }
    if (cs->halted && !cpu_has_work(cs)) {
        return "halted";
    }
    return NULL;
}

static bool gate_wait_mttcg(CPUState *cs)
{
    const char *why = NULL;
    bool timed_out = false;

    bql_lock();
    while (!vsched_acquire(vsched_core, cs->cpu_index)) {
        why = gate_bail_reason(cs);
        if (why) {
            break;
        }
        vsched_count(VSCHED_GLUE_GATE_WAITS);
        /*
         * Every grant comes with a wake, but a grant made by another VM of
         * a shared pool travels through its mailbox: look again after a
         * while rather than trust one wake-up across processes.
         */
        int64_t t0 = qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
        qemu_cond_timedwait_bql(cs->halt_cond, VSCHED_GATE_RECHECK_MS);
        timed_out = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) - t0 >= VSCHED_GATE_RECHECK_MS;
    }
    if (!why && timed_out) {
        /* Granted, but no wake reached us in time: a slow or lost wake. */
        vsched_count(VSCHED_GLUE_GATE_LATE);
    }
    if (why) {
        /*
         * Back to QEMU's loop, which may park the thread (a stop can come
         * with queued work or an exit request): keep no place in the
         * queue, or a slot granted meanwhile would be held by a parked
         * thread.  The next gate pass queues again.
         */
        vsched_release(vsched_core, cs->cpu_index, VSCHED_RELEASE_STOP);
    }
    bql_unlock();
    if (why) {
        vsched_count(VSCHED_GLUE_GATE_BAILS);
        trace_vsched_gate_bail(cs->cpu_index, why);
    }
    return !why;
}

/* KVM's record_steal_time() at entry: the vCPU holds a slot now. */
static void steal_enter(CPUState *cs)
{
    if (vsched_steal_time) {
        vsched_arch_steal_enter(cs);
    }
}

bool vsched_tcg_gate(CPUState *cs, int *ret)
{
    vsched_note_cpu(cs);
    /* gdb single-steps one vCPU while the others stay stopped. */
    if (cs->singlestep_enabled) {
        vsched_count(VSCHED_GLUE_GATE_BYPASS);
        return true;
    }
    if (cs->halted && !cpu_has_work(cs)) {
        /* Halted while holding a slot or a queue place (a reset halts the
         * APs wherever they were): give it back, or nobody gets it. */
        vsched_release_if_active(vsched_core, cs->cpu_index, VSCHED_RELEASE_HALT);
        *ret = EXCP_HALTED;
        return false;
    }
    if (vsched_acquire(vsched_core, cs->cpu_index)) {
        steal_enter(cs);
        return true;
    }
    *ret = EXCP_INTERRUPT;
    if (!qemu_tcg_mttcg_enabled()) {
        vsched_count(VSCHED_GLUE_GATE_SKIPS);
        return false;
    }
    if (!gate_wait_mttcg(cs)) {
        return false;
    }
    steal_enter(cs);
    return true;
}

void vsched_tcg_after_exec(CPUState *cs, int ret)
{
    int vcpu = cs->cpu_index;
    bool idle = vsched_idle_exit;

    vsched_idle_exit = false;
    vsched_in_mwait = false;
    switch (ret) {
    case EXCP_HLT:
    case EXCP_HALTED:
        vsched_release(vsched_core, vcpu, VSCHED_RELEASE_HALT);
        return;
    case EXCP_DEBUG:
        vsched_release(vsched_core, vcpu, VSCHED_RELEASE_STOP);
        return;
    }
    /*
     * After the guest's own shutdown request (virtual time) cs->stop is
     * set by the main loop at a host-timed moment, before or after this
     * exit: the slot went back here (at the run's start time) or at the
     * VM's stop (vsched_vm_state_change, at its end), and the pool's
     * counters and the other members' grants differed.  The VM's stop
     * gives it back in either case.
     */
    if ((cs->stop && !vsched_vtime_guest_shut_down()) || cs->unplug) {
        vsched_release(vsched_core, vcpu, VSCHED_RELEASE_STOP);
    } else if (idle) {
        vsched_count(VSCHED_GLUE_IDLE_MWAITS);
        vsched_release(vsched_core, vcpu, VSCHED_RELEASE_YIELD);
    } else if (vsched_after_exec(vsched_core, vcpu, vsched_arch_cpl(cs)) &&
               vsched_steal_time) {
        /* Lost the slot while runnable: KVM marks the vCPU preempted. */
        vsched_arch_steal_preempted(cs);
    }
}
