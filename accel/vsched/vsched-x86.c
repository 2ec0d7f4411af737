/*
 * vsched: x86 pieces: who an ICR write reaches, the privilege level, and
 * the APIC events (accept, EOI, reset) by vCPU index.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "hw/core/cpu.h"
#include "cpu.h"
#include "hw/i386/apic.h"
#include "accel/vsched.h"
#include "vsched-internal.h"

#define APIC_DM_LOWPRI 1

int vsched_arch_cpl(CPUState *cs)
{
    return X86_CPU(cs)->env.hflags & HF_CPL_MASK;
}

/*
 * @bitmask is apic_deliver()'s deliver_bitmask, indexed by initial APIC ID.
 * Every destination is recorded: Linux's cluster x2APIC mode reaches several
 * vCPUs with one ICR write.  Lowest priority goes to the first one, as
 * apic_bus_deliver() does.
 */
void vsched_apic_ipi(CPUState *src, const uint32_t *bitmask,
                     int delivery_mode, int vector, int shorthand)
{
    static __thread int *dst;
    static __thread int dst_len;
    int n = 0;
    CPUState *cs;

    CPU_FOREACH(cs) {
        uint32_t id = X86_CPU(cs)->apic_id;

        if (!(bitmask[id / 32] & (1U << (id % 32)))) {
            continue;
        }
        if (n == dst_len) {
            dst_len = MAX(16, dst_len * 2);
            dst = g_renew(int, dst, dst_len);
        }
        dst[n++] = cs->cpu_index;
        if (delivery_mode == APIC_DM_LOWPRI) {
            break;
        }
    }
    vsched_count(cpu_get_apic_base(X86_CPU(src)->apic_state) &
                 MSR_IA32_APICBASE_EXTD ? VSCHED_GLUE_IPI_X2APIC
                                        : VSCHED_GLUE_IPI_XAPIC);
    vsched_on_ipi(vsched_core, src->cpu_index, dst, n, vector, delivery_mode,
                  shorthand);
}

void vsched_apic_accept(CPUState *cs, int vector)
{
    vsched_on_irq_accept(vsched_core, cs->cpu_index, vector);
}

void vsched_apic_eoi(CPUState *cs, int vector)
{
    vsched_on_eoi(vsched_core, cs->cpu_index, vector);
}

void vsched_apic_reset(CPUState *cs)
{
    vsched_vcpu_reset(vsched_core, cs->cpu_index);
}
