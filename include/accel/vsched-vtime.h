/*
 * vsched: translator hooks for running guests under instruction counting
 * (-icount, and -accel tcg,time=virtual on top of it).
 *
 * Under icount, reading QEMU_CLOCK_VIRTUAL is allowed only in the last
 * instruction of a translation block (can_do_io); elsewhere QEMU stops with
 * "Bad icount read".  x2APIC guests read the LAPIC timer count with RDMSR
 * 0x839, which reads the clock, and RDMSR does not end its block upstream,
 * so every x2APIC guest (q35 + intel-iommu,eim=on) died at boot under
 * icount.  These hooks make such instructions I/O instructions.  The cost
 * is one block end per RDMSR, only with icount.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef ACCEL_VSCHED_VTIME_HOOKS_H
#define ACCEL_VSCHED_VTIME_HOOKS_H

#include "exec/translator.h"
#include "exec/translation-block.h"

/*
 * gen_RDMSR (target/i386): the MSR number is a run-time value, so every
 * RDMSR ends its block under icount (x2APIC timer count, TSC MSR, ...).
 * WRMSR already ends its block (DISAS_EOB_NEXT).
 */
static inline void vsched_hook_rdmsr_translate(DisasContextBase *db)
{
    if (tb_cflags(db->tb) & CF_USE_ICOUNT) {
        translator_io_start(db);
    }
}

/* True once -accel tcg,time=virtual runs (set at machine-init-done). */
extern bool vsched_vtime_active;

int64_t vsched_vtime_icount_update(CPUState *cpu, int64_t icount,
                                   int64_t executed);
bool vsched_vtime_rr_round(void);

/*
 * icount_update_locked: the new timers_state.qemu_icount after @cpu ran
 * @executed more instructions.  Upstream adds them to the one global
 * count; in virtual time they advance @cpu's slot, and the count becomes
 * that slot's clock (round start + the slot's progress in the round).
 */
static inline int64_t vsched_hook_icount_update(CPUState *cpu, int64_t icount,
                                                int64_t executed)
{
    if (likely(!vsched_vtime_active)) {
        return icount + executed;
    }
    return vsched_vtime_icount_update(cpu, icount, executed);
}

/*
 * rr_cpu_thread_fn, before its pass over the vCPUs (BQL held): in virtual
 * time run one lockstep round of the slots instead.  True: the round ran
 * (or broke off for a stop or debug exit), skip upstream's pass.
 */
static inline bool vsched_hook_rr_round(void)
{
    return unlikely(vsched_vtime_active) && vsched_vtime_rr_round();
}

/*
 * icount_start_warp_timer (main loop): in virtual time idle time is
 * skipped by the vCPU thread at a round boundary, never by the main loop
 * at a host-timed moment.  True: do not warp here.
 */
static inline bool vsched_hook_icount_warp(void)
{
    return unlikely(vsched_vtime_active);
}

#endif
