/*
 * vsched: state shared by the QEMU glue files (not by upstream code).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef ACCEL_VSCHED_INTERNAL_H
#define ACCEL_VSCHED_INTERNAL_H

#include "core/vsched-core.h"

/* What -accel tcg,... asked for; read at machine-init-done. */
typedef struct VschedSettings {
    bool enabled;           /* vcpu-sched */
    bool pcpus_set;         /* pcpus given; else the host's CPU count */
    VschedConfig cfg;
    char *stats_file;
} VschedSettings;

extern VschedSettings vsched_settings;
/* Non-NULL once the scheduler runs (then vsched_active is true). */
extern VschedCore *vsched_core;

/* vsched.c */
void vsched_settings_init(void);
void vsched_register_start(void);
CPUState *vsched_cpu(int vcpu);
int vsched_vcpu_count(void);
void vsched_note_cpu(CPUState *cs);

/* vsched-x86.c (or the stub on other targets): privilege level, 0 = kernel. */
int vsched_arch_cpl(CPUState *cs);

#endif
