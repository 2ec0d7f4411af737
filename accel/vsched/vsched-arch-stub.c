/*
 * vsched: targets without an x86 APIC have no privilege level hook yet;
 * every spin counts as a kernel-mode one.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "accel/vsched.h"
#include "vsched-internal.h"

int vsched_arch_cpl(CPUState *cs)
{
    return 0;
}
