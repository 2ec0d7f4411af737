/*
 * vsched: x86 pieces: who an ICR write reaches, the privilege level, the
 * APIC events (accept, EOI, reset) by vCPU index, and KVM's paravirtual
 * steal time and sched yield hypercall.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "hw/core/cpu.h"
#include "cpu.h"
#include "hw/i386/apic.h"
#include "exec/memory.h"
#include "exec/cputlb.h"
#include "qemu/error-report.h"
#include "standard-headers/asm-x86/kvm_para.h"
#include "standard-headers/linux/kvm_para.h"
#include "tcg/helper-tcg.h"
#include "accel/vsched.h"
#include "vsched-internal.h"
#include "trace.h"

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

/*
 * KVM's paravirtual steal time (-accel tcg,steal-time=on): the guest finds
 * KVM at CPUID 0x40000000, only KVM_FEATURE_STEAL_TIME at 0x40000001, and
 * registers a struct kvm_steal_time per vCPU with MSR_KVM_STEAL_TIME.  The
 * MSR value lives where QEMU keeps it for KVM, env->steal_time_msr (reset
 * and INIT clear it, migration carries it).  The record is written only on
 * the vCPU's own thread: at the MSR write, when it gets a slot and when it
 * loses one involuntarily, so virtual time stays deterministic.
 *
 * With pv-tlb-flush=on as well (KVM_FEATURE_PV_TLB_FLUSH), a guest that
 * flushes other vCPUs' TLBs skips those whose record says preempted and
 * sets KVM_VCPU_FLUSH_TLB in it instead (kvm_flush_tlb_multi()): the
 * sender no longer waits for a vCPU that has no slot.  The vCPU takes the
 * flag back with an atomic exchange when it gets a slot and flushes before
 * it runs guest code, as KVM's record_steal_time() does.
 */
typedef struct VschedStealTime {
    uint64_t last_steal;    /* core's steal_ns at the last record */
    bool preempted;         /* the record says KVM_VCPU_PREEMPTED */
} VschedStealTime;

static VschedStealTime *vsched_steal;
static int vsched_steal_len;

void vsched_arch_steal_init(int nr_vcpus)
{
    vsched_steal = g_new0(VschedStealTime, nr_vcpus);
    vsched_steal_len = nr_vcpus;
}

static VschedStealTime *steal_of(CPUState *cs)
{
    return cs->cpu_index < vsched_steal_len ? &vsched_steal[cs->cpu_index]
                                            : NULL;
}

/*
 * Linux (pv_tlb_flush_supported(), pv_sched_yield_supported()) ignores
 * these features on a CPU with MWAIT.  Once per property.
 */
static void warn_if_monitor(CPUState *cs, const char *prop, bool *warned)
{
    if (!*warned &&
        X86_CPU(cs)->env.features[FEAT_1_ECX] & CPUID_EXT_MONITOR) {
        *warned = true;
        warn_report("-accel tcg,%s=on: the CPU model has MONITOR/MWAIT, and "
                    "Linux guests then do not use it; add -monitor to -cpu "
                    "(e.g. -cpu max,-monitor), as KVM hides MWAIT", prop);
    }
}

/*
 * KVM_FEATURE_PV_SCHED_YIELD only on an AMD CPU model: the guest's
 * hypercall is VMMCALL there (X86_FEATURE_VMMCALL) and VMCALL on Intel,
 * which TCG does not decode (#UD).
 */
static bool pv_sched_yield_offered(CPUState *cs)
{
    static bool warned_monitor, warned_vendor;

    if (X86_CPU(cs)->env.cpuid_vendor1 != CPUID_VENDOR_AMD_1) {
        if (!warned_vendor) {
            warned_vendor = true;
            warn_report("-accel tcg,pv-sched-yield=on: not offered to the "
                        "guest, whose CPU model is not AMD: it would make "
                        "the hypercall with VMCALL, which TCG does not "
                        "decode (e.g. -cpu max,-monitor is AMD)");
        }
        return false;
    }
    warn_if_monitor(cs, "pv-sched-yield", &warned_monitor);
    return true;
}

bool vsched_x86_cpuid(CPUState *cs, uint32_t index, uint32_t *eax,
                      uint32_t *ebx, uint32_t *ecx, uint32_t *edx)
{
    static bool warned_monitor;
    uint32_t signature[3];

    if (index == KVM_CPUID_SIGNATURE) {
        memcpy(signature, KVM_SIGNATURE, 12);
        *eax = KVM_CPUID_FEATURES;
        *ebx = signature[0];
        *ecx = signature[1];
        *edx = signature[2];
        return true;
    }
    if (index == KVM_CPUID_FEATURES) {
        /* No hints in edx: KVM_HINTS_REALTIME would enable haltpoll. */
        *eax = 1U << KVM_FEATURE_STEAL_TIME;
        if (vsched_settings.pv_tlb_flush) {
            *eax |= 1U << KVM_FEATURE_PV_TLB_FLUSH;
            warn_if_monitor(cs, "pv-tlb-flush", &warned_monitor);
        }
        if (vsched_settings.pv_sched_yield && pv_sched_yield_offered(cs)) {
            *eax |= 1U << KVM_FEATURE_PV_SCHED_YIELD;
        }
        *ebx = *ecx = *edx = 0;
        return true;
    }
    return false;
}

static uint64_t steal_gpa(CPUX86State *env)
{
    return env->steal_time_msr & KVM_STEAL_VALID_BITS;
}

/*
 * Clear the record's preempted byte and return what it held.  Atomic on
 * guest RAM: a guest vCPU may be adding KVM_VCPU_FLUSH_TLB to it with a
 * cmpxchg right now, and that request must not be lost.
 */
static uint8_t steal_take_preempted(AddressSpace *as, uint64_t gpa)
{
    hwaddr addr = gpa + offsetof(struct kvm_steal_time, preempted);
    hwaddr len = 1;
    uint8_t *p = address_space_map(as, addr, &len, true,
                                   MEMTXATTRS_UNSPECIFIED);
    uint8_t old;

    if (!p) {
        /* Not plain RAM (the guest put the record on MMIO): no atomic
         * access exists, as for KVM, which then fails the record. */
        old = address_space_ldub(as, addr, MEMTXATTRS_UNSPECIFIED, NULL);
        address_space_stb(as, addr, 0, MEMTXATTRS_UNSPECIFIED, NULL);
        return old;
    }
    old = qatomic_xchg(p, 0);
    address_space_unmap(as, p, len, true, len);
    return old;
}

/*
 * preempted = 0; true if the guest asked for a TLB flush meanwhile.  Only
 * pv-tlb-flush=on needs the atomic exchange (a mapping per record): without
 * the feature the guest never writes the byte, and a store does.
 */
static bool steal_clear_preempted(AddressSpace *as, uint64_t gpa)
{
    if (!vsched_settings.pv_tlb_flush) {
        address_space_stb(as, gpa + offsetof(struct kvm_steal_time, preempted),
                          0, MEMTXATTRS_UNSPECIFIED, NULL);
        return false;
    }
    return steal_take_preempted(as, gpa) & KVM_VCPU_FLUSH_TLB;
}

/* KVM's record_steal_time(): odd version, steal, preempted = 0, even. */
static void steal_record(CPUState *cs)
{
    CPUX86State *env = &X86_CPU(cs)->env;
    VschedStealTime *st = steal_of(cs);
    uint64_t gpa = steal_gpa(env);
    AddressSpace *as = cs->as;
    MemTxAttrs attrs = MEMTXATTRS_UNSPECIFIED;
    uint64_t now, steal;
    uint32_t version;

    if (!st || !(env->steal_time_msr & KVM_MSR_ENABLED)) {
        return;
    }
    now = vsched_vcpu_steal_ns(vsched_core, cs->cpu_index);
    if (steal_clear_preempted(as, gpa)) {
        tlb_flush(cs);      /* on our own thread: done before we return */
        vsched_count(VSCHED_GLUE_PV_TLB_FLUSHES);
        trace_vsched_pv_tlb_flush(cs->cpu_index);
    }
    st->preempted = false;
    version = address_space_ldl_le(as, gpa + offsetof(struct kvm_steal_time,
                                                      version), attrs, NULL);
    version += (version & 1) + 1;   /* odd; junk from the guest made even */
    address_space_stl_le(as, gpa + offsetof(struct kvm_steal_time, version),
                         version, attrs, NULL);
    smp_wmb();
    steal = address_space_ldq_le(as, gpa, attrs, NULL);
    steal += now >= st->last_steal ? now - st->last_steal : 0;
    st->last_steal = now;
    address_space_stq_le(as, gpa, steal, attrs, NULL);
    smp_wmb();
    address_space_stl_le(as, gpa + offsetof(struct kvm_steal_time, version),
                         version + 1, attrs, NULL);
    vsched_count(VSCHED_GLUE_STEAL_UPDATES);
    trace_vsched_steal_time(cs->cpu_index, steal, 0);
}

/* Got a slot: record if anything changed since the last record. */
void vsched_arch_steal_enter(CPUState *cs)
{
    VschedStealTime *st = steal_of(cs);

    if (st && (st->preempted ||
               vsched_vcpu_steal_ns(vsched_core, cs->cpu_index) !=
               st->last_steal)) {
        steal_record(cs);
    }
}

/*
 * Lost the slot while runnable (preempted, directed yield, lend): KVM's
 * kvm_steal_time_set_preempted(), from kvm_arch_vcpu_put() when
 * vcpu->preempted.  A halt or idle MWAIT never gets here.
 */
void vsched_arch_steal_preempted(CPUState *cs)
{
    CPUX86State *env = &X86_CPU(cs)->env;
    VschedStealTime *st = steal_of(cs);

    if (!st || st->preempted || !(env->steal_time_msr & KVM_MSR_ENABLED)) {
        return;
    }
    address_space_stb(cs->as, steal_gpa(env) +
                      offsetof(struct kvm_steal_time, preempted),
                      KVM_VCPU_PREEMPTED, MEMTXATTRS_UNSPECIFIED, NULL);
    st->preempted = true;
    vsched_count(VSCHED_GLUE_STEAL_PREEMPTED);
    trace_vsched_steal_time(cs->cpu_index, st->last_steal, 1);
}

/* MSR_KVM_STEAL_TIME write; reserved bits raise #GP as in KVM. */
bool vsched_x86_wrmsr(CPUState *cs, uint32_t msr, uint64_t val,
                      uintptr_t retaddr)
{
    CPUX86State *env = &X86_CPU(cs)->env;

    if (msr != MSR_KVM_STEAL_TIME) {
        return false;
    }
    if (val & KVM_STEAL_RESERVED_MASK) {
        raise_exception_err_ra(env, EXCP0D_GPF, 0, retaddr);
    }
    env->steal_time_msr = val;
    steal_record(cs);
    return true;
}

bool vsched_x86_rdmsr(CPUState *cs, uint32_t msr, uint64_t *val)
{
    if (msr != MSR_KVM_STEAL_TIME) {
        return false;
    }
    *val = X86_CPU(cs)->env.steal_time_msr;
    return true;
}

/*
 * KVM_HC_SCHED_YIELD (pv-sched-yield=on): the guest sent a call-function
 * IPI to a vCPU whose record says preempted (kvm_smp_send_call_func_ipi())
 * and asks to yield to it by APIC ID.  KVM's kvm_sched_yield() hands the
 * caller's CPU to the target if it is ready; here the core does that at
 * the vCPU's next exit, which cpu_exit() brings at the next TB boundary
 * (a fixed point in virtual time).  The answer is 0 whatever happens.
 */
static void pv_sched_yield(CPUState *cs, uint64_t apic_id)
{
    CPUState *target = apic_id <= UINT32_MAX ? cpu_by_arch_id(apic_id) : NULL;

    vsched_pv_yield(vsched_core, cs->cpu_index,
                    target ? target->cpu_index : -1);
    cpu_exit(cs);
}

/*
 * VMMCALL with pv-sched-yield=on: KVM's kvm_emulate_hypercall().  Number
 * in RAX, first argument in RBX, both cut to 32 bits outside 64-bit
 * mode; the result goes to RAX.  CPL > 0 gets -KVM_EPERM, an unknown
 * number -KVM_ENOSYS.  EIP stays at the VMMCALL: the translated code
 * after the helper call moves it on.
 */
bool vsched_x86_hypercall(CPUState *cs)
{
    CPUX86State *env = &X86_CPU(cs)->env;
    bool long_mode = env->hflags & HF_CS64_MASK;
    uint64_t nr = env->regs[R_EAX];
    uint64_t a0 = env->regs[R_EBX];
    int64_t ret = 0;

    if (!long_mode) {
        nr = (uint32_t)nr;
        a0 = (uint32_t)a0;
    }
    if (vsched_arch_cpl(cs) != 0) {
        ret = -KVM_EPERM;
    } else if (nr == KVM_HC_SCHED_YIELD) {
        pv_sched_yield(cs, a0);
    } else {
        ret = -KVM_ENOSYS;
    }
    if (ret) {
        vsched_count(VSCHED_GLUE_HYPERCALLS_REFUSED);
    }
    env->regs[R_EAX] = long_mode ? (uint64_t)ret : (uint32_t)ret;
    return true;
}
