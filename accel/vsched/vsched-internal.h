/*
 * vsched: state shared by the QEMU glue files (not by upstream code).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef ACCEL_VSCHED_INTERNAL_H
#define ACCEL_VSCHED_INTERNAL_H

#include "qemu/atomic.h"
#include "core/vsched-core.h"

/* What -accel tcg,... asked for; read at machine-init-done. */
typedef struct VschedSettings {
    bool enabled;           /* vcpu-sched */
    bool steal_time;        /* steal-time: KVM's PV steal time (x86) */
    bool pv_tlb_flush;      /* pv-tlb-flush: KVM's PV TLB flush (x86) */
    bool pv_sched_yield;    /* pv-sched-yield: KVM's PV sched yield (x86) */
    bool pcpus_set;         /* pcpus given; else the host's CPU count */
    VschedConfig cfg;
    char *stats_file;
    char *pool;             /* shared pool name, NULL: private pool */
} VschedSettings;

extern VschedSettings vsched_settings;
/* Non-NULL once the scheduler runs (then vsched_active is true). */
extern VschedCore *vsched_core;

/* Counters of the QEMU side, shown after the core's. */
typedef enum VschedGlueCounter {
    VSCHED_GLUE_IPI_XAPIC,      /* ICR writes through the xAPIC MMIO page */
    VSCHED_GLUE_IPI_X2APIC,     /* ICR writes through the x2APIC MSR */
    VSCHED_GLUE_GATE_WAITS,     /* MTTCG vCPU slept in the gate */
    VSCHED_GLUE_GATE_BAILS,     /* left the gate without a slot for QEMU */
    VSCHED_GLUE_GATE_SKIPS,     /* round robin skipped a vCPU without a slot */
    VSCHED_GLUE_GATE_BYPASS,    /* single-stepped vCPU ran without a slot */
    VSCHED_GLUE_GATE_LATE,      /* slot found by the recheck, not a wake */
    VSCHED_GLUE_IDLE_MWAITS,    /* idle MWAIT gave the slot away */
    VSCHED_GLUE_VCPU_PLUGS,     /* vCPUs hotplugged while scheduling */
    VSCHED_GLUE_VCPU_UNPLUGS,   /* vCPUs unplugged (forgotten) */
    VSCHED_GLUE_STEAL_UPDATES,  /* steal-time records written */
    VSCHED_GLUE_STEAL_PREEMPTED, /* steal-time records marked preempted */
    VSCHED_GLUE_PV_TLB_FLUSHES, /* TLB flushes the guest left to entry */
    VSCHED_GLUE_HYPERCALLS_REFUSED, /* -KVM_ENOSYS or -KVM_EPERM answers */
    VSCHED_GLUE__MAX,
} VschedGlueCounter;

extern uint64_t vsched_glue_counters[VSCHED_GLUE__MAX];
extern const char *const vsched_glue_counter_names[VSCHED_GLUE__MAX];

static inline void vsched_count(VschedGlueCounter c)
{
    qatomic_inc(&vsched_glue_counters[c]);
}

/* All counters, core then glue: names and values by index. */
int vsched_all_counter_count(void);
const char *vsched_all_counter_name(int i);
uint64_t vsched_all_counter_value(int i);

/* vsched.c */
void vsched_settings_init(void);
void vsched_register_start(void);
CPUState *vsched_cpu(int vcpu);
int vsched_vcpu_count(void);
void vsched_note_cpu(CPUState *cs);

/* vsched-x86.c (or the stub on other targets): privilege level, 0 = kernel. */
int vsched_arch_cpl(CPUState *cs);
/*
 * Paravirtual steal time (vsched-x86.c; no-ops on other targets), on the
 * vCPU's own thread: _init at start with steal-time=on, _enter when the
 * vCPU got a slot, _preempted when it lost it while runnable.
 */
void vsched_arch_steal_init(int nr_vcpus);
void vsched_arch_steal_enter(CPUState *cs);
void vsched_arch_steal_preempted(CPUState *cs);

#endif
