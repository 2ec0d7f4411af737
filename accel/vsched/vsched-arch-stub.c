/*
 * vsched: targets without an x86 APIC have no privilege level hook yet;
 * every spin counts as a kernel-mode one.  Paravirtual steal time is
 * KVM's x86 interface: steal-time=on is refused elsewhere at start.
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

void vsched_arch_steal_init(int nr_vcpus)
{
}

void vsched_arch_steal_enter(CPUState *cs)
{
}

void vsched_arch_steal_preempted(CPUState *cs)
{
}
