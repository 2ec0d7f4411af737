/*
 * vsched: QMP query-vsched and HMP info vsched.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-vsched.h"
#include "qapi/qapi-types-vsched.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "accel/vsched.h"
#include "vsched-internal.h"
#include "vsched-vtime.h"

static VschedVcpu *vcpu_to_qapi(int index, const VschedVcpuInfo *in)
{
    VschedVcpu *out = g_new0(VschedVcpu, 1);
    intList **tail = &out->ipi_receivers;

    out->cpu_index = index;
    out->state = g_strdup(in->state);
    out->slot = in->holds_slot ? in->slot : -1;
    out->preempted = in->preempted;
    out->ready = in->ready;
    out->preempted_in_kernel = in->preempted_in_kernel;
    out->in_spin_loop = in->in_spin_loop;
    out->dy_eligible = in->dy_eligible;
    out->spin_window_ns = in->spin_window_ns;
    out->pause_events = in->pause_events;
    out->spins_detected = in->spins_detected;
    out->last_ipi_sender = in->last_ipi_sender;
    out->last_ipi_receiver = in->last_ipi_receiver;
    out->pending_ipis = in->nr_pending_ipis;
    for (int i = 0; i < MIN(in->nr_receivers, VSCHED_INFO_MAX_LIST); i++) {
        QAPI_LIST_APPEND(tail, in->receivers[i]);
    }
    return out;
}

static VschedVcpuList *vcpus_to_qapi(void)
{
    VschedVcpuList *head = NULL, **tail = &head;
    int n = vsched_vcpu_count();

    for (int i = 0; i < n; i++) {
        VschedVcpuInfo info;

        if (vsched_cpu(i) && vsched_vcpu_info(vsched_core, i, &info)) {
            QAPI_LIST_APPEND(tail, vcpu_to_qapi(i, &info));
        }
    }
    return head;
}

static VschedCounterList *counters_to_qapi(void)
{
    VschedCounterList *head = NULL, **tail = &head;

    for (int i = 0; i < vsched_all_counter_count(); i++) {
        VschedCounter *c = g_new0(VschedCounter, 1);

        c->name = g_strdup(vsched_all_counter_name(i));
        c->value = vsched_all_counter_value(i);
        QAPI_LIST_APPEND(tail, c);
    }
    return head;
}

static VschedMemberList *pool_members_to_qapi(void)
{
    VschedMemberList *head = NULL, **tail = &head;

    for (int i = 0; i < VSCHED_POOL_MAX_MEMBERS; i++) {
        VschedMember *out;
        VschedPoolMember m;

        if (!vsched_pool_member(vsched_core, i, &m)) {
            continue;
        }
        out = g_new0(VschedMember, 1);
        out->index = m.index;
        out->pid = m.pid;
        out->self = m.self;
        out->vcpus = m.nr_vcpus;
        out->slots_held = m.slots_held;
        out->queued = m.queued;
        out->slot_time_ns = m.slot_time_ns;
        out->share = m.share;
        out->slot_wait_ns = m.slot_wait_ns;
        out->slot_wait_max_ns = m.slot_wait_max_ns;
        QAPI_LIST_APPEND(tail, out);
    }
    return head;
}

static VschedPool *pool_to_qapi(void)
{
    VschedPool *out = g_new0(VschedPool, 1);
    VschedPoolInfo info = { 0 };

    /* On failure (the core refused, e.g. mid-exit) report an empty pool,
     * never an uninitialised one. */
    if (!vsched_pool_info(vsched_core, &info)) {
        memset(&info, 0, sizeof(info));
    }
    out->shared = info.shared;
    out->name = g_strdup(info.name);
    out->slots = info.slots;
    out->free_slots = info.free_slots;
    out->queue_len = info.queue_len;
    out->members = pool_members_to_qapi();
    out->members_reaped = info.stats.members_reaped;
    out->slots_reclaimed = info.stats.slots_reclaimed;
    return out;
}

static VschedVirtualTime *vtime_to_qapi(void)
{
    VschedVtimeQuery q;
    VschedVirtualTime *out;

    if (!vsched_vtime_query(&q)) {
        return NULL;
    }
    out = g_new0(VschedVirtualTime, 1);
    out->quantum = q.quantum;
    out->shift = q.shift;
    out->now_ns = q.now_ns;
    return out;
}

/* A run-time setting of the running core (vsched_setting_get). */
static uint64_t core_setting(const char *name)
{
    uint64_t value = 0;

    vsched_setting_get(vsched_core, name, &value);
    return value;
}

VschedInfo *qmp_query_vsched(Error **errp)
{
    VschedInfo *info = g_new0(VschedInfo, 1);
    VschedConfig *cfg = &vsched_settings.cfg;

    info->enabled = vsched_core != NULL;
    if (!vsched_core) {
        return info;
    }
    info->policy = g_strdup(vsched_policy_name(core_setting("directed-yield")));
    info->has_relaxed_boost = true;
    info->relaxed_boost = core_setting("relaxed-boost");
    info->has_ipi_tracking = true;
    info->ipi_tracking = core_setting("ipi-tracking");
    info->has_ipi_window_ns = true;
    info->ipi_window_ns = core_setting("ipi-window");
    info->has_pcpus = true;
    info->pcpus = cfg->pcpus;
    info->has_slice_ns = true;
    info->slice_ns = cfg->slice_ns;
    info->has_ple_gap_ns = true;
    info->ple_gap_ns = core_setting("ple-gap");
    info->has_ple_window_ns = true;
    info->ple_window_ns = core_setting("ple-window");
    info->vtime = vtime_to_qapi();
    info->time = g_strdup(info->vtime ? "virtual" : "real");
    info->pool = pool_to_qapi();
    info->has_steal_time = true;
    info->steal_time = vsched_steal_time;
    info->has_pv_tlb_flush = true;
    info->pv_tlb_flush = vsched_steal_time && vsched_settings.pv_tlb_flush;
    info->has_pv_sched_yield = true;
    info->pv_sched_yield = vsched_steal_time && vsched_settings.pv_sched_yield;
    info->vcpus = vcpus_to_qapi();
    info->has_vcpus = true;
    info->counters = counters_to_qapi();
    info->has_counters = true;
    return info;
}

static void hmp_print_vcpu(Monitor *mon, const VschedVcpu *v)
{
    g_autoptr(GString) recv = g_string_new("");

    for (intList *r = v->ipi_receivers; r; r = r->next) {
        g_string_append_printf(recv, "%s%" PRId64, recv->len ? "," : "",
                               r->value);
    }
    monitor_printf(mon, "%4" PRId64 " %-16s %4" PRId64 "  %c%c%c%c%c %10" PRIu64
                   " %10" PRIu64 " %6" PRId64 " %6" PRId64 " %4" PRId64 "  %s\n",
                   v->cpu_index, v->state, v->slot,
                   v->preempted ? 'P' : '-', v->ready ? 'R' : '-',
                   v->preempted_in_kernel ? 'K' : '-',
                   v->in_spin_loop ? 'S' : '-', v->dy_eligible ? 'E' : '-',
                   v->pause_events, v->spins_detected, v->last_ipi_sender,
                   v->last_ipi_receiver, v->pending_ipis,
                   recv->len ? recv->str : "-");
}

static void hmp_print_pool(Monitor *mon, const VschedPool *pool)
{
    if (!pool->shared) {
        return;
    }
    monitor_printf(mon, "pool %s: %" PRId64 " slots, %" PRId64 " free, %" PRId64
                   " vCPUs queued, %" PRIu64 " members reaped, %" PRIu64
                   " slots reclaimed\n", pool->name, pool->slots,
                   pool->free_slots, pool->queue_len, pool->members_reaped,
                   pool->slots_reclaimed);
    monitor_printf(mon, "  member     pid vcpus slots queued   share  slot time ns\n");
    for (VschedMemberList *m = pool->members; m; m = m->next) {
        monitor_printf(mon, "  %5" PRId64 "%c %7" PRId64 " %5" PRId64 " %5" PRId64
                       " %6" PRId64 " %6.1f%% %13" PRIu64 "\n", m->value->index,
                       m->value->self ? '*' : ' ', m->value->pid, m->value->vcpus,
                       m->value->slots_held, m->value->queued,
                       100.0 * m->value->share, m->value->slot_time_ns);
    }
}

static void hmp_info_vsched(Monitor *mon, const QDict *qdict)
{
    g_autoptr(VschedInfo) info = qmp_query_vsched(NULL);

    if (!info->enabled) {
        monitor_printf(mon, "vsched: off (use -accel tcg,vcpu-sched=on)\n");
        return;
    }
    monitor_printf(mon, "vsched: %" PRId64 " slots, slice %" PRIu64 " ns, "
                   "directed-yield=%s relaxed-boost=%s ipi-tracking=%s "
                   "ipi-window=%" PRIu64 " ns ple-gap=%" PRIu64 " ns "
                   "ple-window=%" PRIu64 " ns\n",
                   info->pcpus, info->slice_ns, info->policy,
                   info->relaxed_boost ? "on" : "off",
                   info->ipi_tracking ? "on" : "off", info->ipi_window_ns,
                   info->ple_gap_ns, info->ple_window_ns);
    if (info->vtime) {
        monitor_printf(mon, "time: virtual, quantum %" PRIu64 " instructions, "
                       "shift %" PRId64 ", clock %" PRIu64 " ns\n",
                       info->vtime->quantum, info->vtime->shift,
                       info->vtime->now_ns);
    } else {
        monitor_printf(mon, "time: real\n");
    }
    monitor_printf(mon, "steal-time: %s\n", info->steal_time ? "on" : "off");
    monitor_printf(mon, "pv-tlb-flush: %s\n", info->pv_tlb_flush ? "on" : "off");
    monitor_printf(mon, "pv-sched-yield: %s\n",
                   info->pv_sched_yield ? "on" : "off");
    hmp_print_pool(mon, info->pool);
    monitor_printf(mon, "vcpu state            slot  flags     pauses      spins"
                   " sender   recv pend  receivers\n");
    for (VschedVcpuList *v = info->vcpus; v; v = v->next) {
        hmp_print_vcpu(mon, v->value);
    }
    monitor_printf(mon, "flags: P preempted, R ready, K preempted in kernel, "
                   "S in spin loop, E directed-yield eligible\ncounters:\n");
    for (VschedCounterList *c = info->counters; c; c = c->next) {
        monitor_printf(mon, "  %-28s %" PRIu64 "\n", c->value->name,
                       c->value->value);
    }
}

static void vsched_monitor_register(void)
{
    monitor_register_hmp("vsched", true, hmp_info_vsched);
}

type_init(vsched_monitor_register);
