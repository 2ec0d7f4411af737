/*
 * vsched: userspace vCPU slot scheduler with IPI-aware directed yield.
 *
 * The hooks that upstream code calls.  Each is one call at its site and
 * costs one predictable branch while vcpu-sched is off; the logic lives in
 * accel/vsched/.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef ACCEL_VSCHED_H
#define ACCEL_VSCHED_H

/* True once -accel tcg,vcpu-sched=on has set up the scheduler. */
extern bool vsched_active;
/* True once it has, with steal-time=on (KVM's PV steal time, x86). */
extern bool vsched_steal_time;
/* True once it has, with pv-sched-yield=on: KVM hypercalls (x86 VMMCALL). */
extern bool vsched_hypercalls;

/* Class init of tcg-accel / kvm-accel: add the vsched properties. */
void vsched_tcg_accel_class_init(ObjectClass *oc);
void vsched_kvm_accel_class_init(ObjectClass *oc);
/* -accel NAME,help: list the accelerator's properties and exit. */
void vsched_accel_help(QemuOpts *opts, ObjectClass *oc);

void vsched_tcg_pause(CPUState *cs, int cpl);
void vsched_tcg_mwait(CPUState *cs);
bool vsched_tcg_gate(CPUState *cs, int *ret);
void vsched_tcg_after_exec(CPUState *cs, int ret);
bool vsched_cpu_plug(CPUState *cs, Error **errp);
void vsched_cpu_unplug(CPUState *cs);
void vsched_apic_ipi(CPUState *src, const uint32_t *deliver_bitmask,
                     int delivery_mode, int vector, int shorthand);
void vsched_apic_accept(CPUState *cs, int vector);
void vsched_apic_eoi(CPUState *cs, int vector);
void vsched_apic_reset(CPUState *cs);
void vsched_shutdown_request(void);
bool vsched_x86_cpuid(CPUState *cs, uint32_t index, uint32_t *eax,
                      uint32_t *ebx, uint32_t *ecx, uint32_t *edx);
bool vsched_x86_wrmsr(CPUState *cs, uint32_t msr, uint64_t val,
                      uintptr_t retaddr);
bool vsched_x86_rdmsr(CPUState *cs, uint32_t msr, uint64_t *val);
bool vsched_x86_hypercall(CPUState *cs);

/*
 * helper_pause: a PAUSE executed at privilege level @cpl.  Runs inside
 * cpu_exec without the BQL: records only, never blocks.
 */
static inline void vsched_hook_pause(CPUState *cs, int cpl)
{
    if (unlikely(vsched_active)) {
        vsched_tcg_pause(cs, cpl);
    }
}

/* helper_mwait: the PAUSE that follows is an idle MWAIT, not a spin. */
static inline void vsched_hook_mwait(CPUState *cs)
{
    if (unlikely(vsched_active)) {
        vsched_tcg_mwait(cs);
    }
}

/*
 * tcg_cpu_exec, before cpu_exec_start: wait for a pCPU slot (MTTCG) or skip
 * this vCPU (round robin).  Returns false with *ret set when the vCPU must
 * not run guest code now.
 */
static inline bool vsched_hook_gate(CPUState *cs, int *ret)
{
    return likely(!vsched_active) || vsched_tcg_gate(cs, ret);
}

/*
 * tcg_exec_realizefn: a vCPU realized once the scheduler runs (hotplug)
 * gets its pool ids; false with *errp set if the pool has none for it.
 */
static inline bool vsched_hook_cpu_realize(CPUState *cs, Error **errp)
{
    return likely(!vsched_active) || vsched_cpu_plug(cs, errp);
}
/*
 * tcg_exec_unrealizefn (its thread has exited, its CPUState is freed
 * next): the scheduler forgets the vCPU, so no kick reaches it.
 */
static inline void vsched_hook_cpu_unrealize(CPUState *cs)
{
    if (unlikely(vsched_active)) {
        vsched_cpu_unplug(cs);
    }
}
/* tcg_cpu_exec, after cpu_exec_end: spin decisions, preemption, release. */
static inline void vsched_hook_after_exec(CPUState *cs, int ret)
{
    if (unlikely(vsched_active)) {
        vsched_tcg_after_exec(cs, ret);
    }
}

/* apic_deliver: an IPI written to the ICR (xAPIC MMIO or x2APIC MSR). */
static inline void vsched_hook_ipi(CPUState *src, const uint32_t *bitmask,
                                 int delivery_mode, int vector, int shorthand)
{
    if (unlikely(vsched_active)) {
        vsched_apic_ipi(src, bitmask, delivery_mode, vector, shorthand);
    }
}

/* apic_get_interrupt: @cs accepted @vector (IRR -> ISR). */
static inline void vsched_hook_irq_accept(CPUState *cs, int vector)
{
    if (unlikely(vsched_active)) {
        vsched_apic_accept(cs, vector);
    }
}

/* apic_eoi: @cs signalled end of interrupt for @vector. */
static inline void vsched_hook_eoi(CPUState *cs, int vector)
{
    if (unlikely(vsched_active)) {
        vsched_apic_eoi(cs, vector);
    }
}

/*
 * apic_init_reset: the local APIC of @cs was reset (machine reset or INIT).
 * KVM clears the IPI context in kvm_vcpu_reset() right after
 * kvm_lapic_reset(), for both.
 */
static inline void vsched_hook_apic_reset(CPUState *cs)
{
    if (unlikely(vsched_active)) {
        vsched_apic_reset(cs);
    }
}

/*
 * qemu_system_shutdown_request: in virtual time a request made by guest
 * code ends guest execution right there (accel/vsched/vsched-vtime.c), so
 * what runs until the main loop acts on it is not host-timed.
 */
static inline void vsched_hook_shutdown_request(void)
{
    if (unlikely(vsched_active)) {
        vsched_shutdown_request();
    }
}

/*
 * cpu_x86_cpuid, after the index clamp: with steal-time=on, leaves
 * 0x40000000 (KVM signature) and 0x40000001 (KVM_FEATURE_STEAL_TIME).
 * True when it filled the registers.
 */
static inline bool vsched_hook_cpuid(CPUState *cs, uint32_t index,
                                     uint32_t *eax, uint32_t *ebx,
                                     uint32_t *ecx, uint32_t *edx)
{
    return unlikely(vsched_steal_time) &&
           vsched_x86_cpuid(cs, index, eax, ebx, ecx, edx);
}

/*
 * helper_wrmsr / helper_rdmsr, for MSRs QEMU does not know: with
 * steal-time=on, MSR_KVM_STEAL_TIME.  True when handled (a write with
 * reserved bits raises #GP from @retaddr).
 */
static inline bool vsched_hook_wrmsr(CPUState *cs, uint32_t msr, uint64_t val,
                                     uintptr_t retaddr)
{
    return unlikely(vsched_steal_time) &&
           vsched_x86_wrmsr(cs, msr, val, retaddr);
}

static inline bool vsched_hook_rdmsr(CPUState *cs, uint32_t msr, uint64_t *val)
{
    return unlikely(vsched_steal_time) && vsched_x86_rdmsr(cs, msr, val);
}

/*
 * translate.c, VMMCALL: legal without EFER.SVME while vsched serves KVM
 * hypercalls, as KVM makes it for its guests.  Read at translation: it
 * is set before the first vCPU runs.  Constant false in user mode, where
 * the translator must see VMMCALL's helper as unreachable.
 */
static inline bool vsched_hook_vmmcall_legal(void)
{
#ifdef CONFIG_USER_ONLY
    return false;
#else
    return unlikely(vsched_hypercalls);
#endif
}

/*
 * helper_vmmcall, after the SVM intercept check: a KVM hypercall (nr in
 * RAX, result to RAX).  True when handled: the helper returns and the
 * guest goes on after the VMMCALL (the translator left EIP at it and
 * continues the TB as if the helper returned).
 */
static inline bool vsched_hook_hypercall(CPUState *cs)
{
    return unlikely(vsched_hypercalls) && vsched_x86_hypercall(cs);
}

#endif
