/*
 * vsched: the hooks' out-of-line halves for builds without the scheduler
 * (configure --disable-vsched, and the linux-user targets, where there are
 * no vCPU threads to schedule).  vsched_active and vsched_vtime_active
 * stay false, so the inline hooks never call the functions below; they
 * exist so the hook sites link unchanged.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "accel/vsched.h"
#include "accel/vsched-vtime.h"

bool vsched_active;
bool vsched_steal_time;
bool vsched_hypercalls;
bool vsched_vtime_active;

/* No properties: -accel tcg,vcpu-sched=on fails as any unknown property. */
void vsched_tcg_accel_class_init(ObjectClass *oc)
{
}

void vsched_kvm_accel_class_init(ObjectClass *oc)
{
}

void vsched_tcg_pause(CPUState *cs, int cpl)
{
    g_assert_not_reached();
}

void vsched_tcg_mwait(CPUState *cs)
{
    g_assert_not_reached();
}

bool vsched_tcg_gate(CPUState *cs, int *ret)
{
    g_assert_not_reached();
}

void vsched_tcg_after_exec(CPUState *cs, int ret)
{
    g_assert_not_reached();
}

bool vsched_cpu_plug(CPUState *cs, Error **errp)
{
    g_assert_not_reached();
}

void vsched_cpu_unplug(CPUState *cs)
{
    g_assert_not_reached();
}

void vsched_apic_ipi(CPUState *src, const uint32_t *deliver_bitmask,
                     int delivery_mode, int vector, int shorthand)
{
    g_assert_not_reached();
}

void vsched_apic_accept(CPUState *cs, int vector)
{
    g_assert_not_reached();
}

void vsched_apic_eoi(CPUState *cs, int vector)
{
    g_assert_not_reached();
}

void vsched_apic_reset(CPUState *cs)
{
    g_assert_not_reached();
}

void vsched_shutdown_request(void)
{
    g_assert_not_reached();
}

int64_t vsched_vtime_icount_update(CPUState *cpu, int64_t icount,
                                   int64_t executed)
{
    g_assert_not_reached();
}

bool vsched_vtime_rr_round(void)
{
    g_assert_not_reached();
}

bool vsched_x86_cpuid(CPUState *cs, uint32_t index, uint32_t *eax,
                      uint32_t *ebx, uint32_t *ecx, uint32_t *edx)
{
    g_assert_not_reached();
}

bool vsched_x86_wrmsr(CPUState *cs, uint32_t msr, uint64_t val,
                      uintptr_t retaddr)
{
    g_assert_not_reached();
}

bool vsched_x86_rdmsr(CPUState *cs, uint32_t msr, uint64_t *val)
{
    g_assert_not_reached();
}

bool vsched_x86_hypercall(CPUState *cs)
{
    g_assert_not_reached();
}
