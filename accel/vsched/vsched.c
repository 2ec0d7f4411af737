/*
 * vsched: start-up, the host interface the core runs on, the slice timer
 * and the exit dump.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/notify.h"
#include "qemu/thread.h"
#include "qom/object.h"
#include "hw/boards.h"
#include "hw/core/cpu.h"
#include "qemu/accel.h"
#include "system/cpu-timers.h"
#include "system/replay.h"
#include "system/runstate.h"
#include "system/system.h"
#include "system/tcg.h"
#include "accel/vsched.h"
#include "vsched-internal.h"
#include "vsched-vtime.h"
#include "trace.h"

bool vsched_active;
bool vsched_steal_time;
bool vsched_hypercalls;
VschedCore *vsched_core;
VschedSettings vsched_settings;

uint64_t vsched_glue_counters[VSCHED_GLUE__MAX];
const char *const vsched_glue_counter_names[VSCHED_GLUE__MAX] = {
    [VSCHED_GLUE_IPI_XAPIC] = "ipi_icr_xapic",
    [VSCHED_GLUE_IPI_X2APIC] = "ipi_icr_x2apic",
    [VSCHED_GLUE_GATE_WAITS] = "gate_waits",
    [VSCHED_GLUE_GATE_BAILS] = "gate_bails",
    [VSCHED_GLUE_GATE_SKIPS] = "gate_rr_skips",
    [VSCHED_GLUE_GATE_BYPASS] = "gate_singlestep_bypass",
    [VSCHED_GLUE_GATE_LATE] = "gate_recheck_grants",
    [VSCHED_GLUE_IDLE_MWAITS] = "idle_mwait_yields",
    [VSCHED_GLUE_VCPU_PLUGS] = "vcpu_plugs",
    [VSCHED_GLUE_VCPU_UNPLUGS] = "vcpu_unplugs",
    [VSCHED_GLUE_STEAL_UPDATES] = "steal_time_updates",
    [VSCHED_GLUE_STEAL_PREEMPTED] = "steal_time_preempted_marks",
    [VSCHED_GLUE_PV_TLB_FLUSHES] = "pv_tlb_flushes",
    [VSCHED_GLUE_HYPERCALLS_REFUSED] = "hypercalls_refused",
};

/* The core's counters, then the glue's, then virtual time's rounds'. */
int vsched_all_counter_count(void)
{
    return vsched_counter_count() + VSCHED_GLUE__MAX + vsched_vtime_counter_count();
}

const char *vsched_all_counter_name(int i)
{
    int core = vsched_counter_count(), glue = core + VSCHED_GLUE__MAX;

    return i < core ? vsched_counter_name(i) :
           i < glue ? vsched_glue_counter_names[i - core] :
                      vsched_vtime_counter_name(i - glue);
}

uint64_t vsched_all_counter_value(int i)
{
    int core = vsched_counter_count(), glue = core + VSCHED_GLUE__MAX;

    return i < core ? vsched_counter_value(vsched_core, i) :
           i < glue ? qatomic_read(&vsched_glue_counters[i - core]) :
                      vsched_vtime_counter_value(i - glue);
}

/* cpu_index -> CPUState, filled as each vCPU first reaches the gate. */
static CPUState **vsched_cpus;
static int vsched_nr_vcpus;

void vsched_settings_init(void)
{
    static bool done;

    if (!done) {
        vsched_config_defaults(&vsched_settings.cfg);
        vsched_settings.cfg.pcpus = MAX(1, (int)sysconf(_SC_NPROCESSORS_ONLN));
        done = true;
    }
}

CPUState *vsched_cpu(int vcpu)
{
    return vcpu >= 0 && vcpu < vsched_nr_vcpus ? qatomic_read(&vsched_cpus[vcpu]) : NULL;
}

int vsched_vcpu_count(void)
{
    return vsched_nr_vcpus;
}

void vsched_note_cpu(CPUState *cs)
{
    /* Read first: vCPUs share this array's cache lines; write only once. */
    if (cs->cpu_index < vsched_nr_vcpus &&
        qatomic_read(&vsched_cpus[cs->cpu_index]) != cs) {
        qatomic_set(&vsched_cpus[cs->cpu_index], cs);
    }
}

/*
 * Kicks come from the timer and mailbox threads without the BQL: the
 * lookup and cpu_exit() happen under vsched_cpus_lock, which unplug takes
 * to forget the vCPU, so no kick touches a CPUState being freed.
 */
static QemuMutex vsched_cpus_lock;

static void host_kick(void *opaque, int vcpu)
{
    CPUState *cs;

    qemu_mutex_lock(&vsched_cpus_lock);
    cs = vsched_cpu(vcpu);
    if (cs) {
        cpu_exit(cs);
    }
    qemu_mutex_unlock(&vsched_cpus_lock);
}

/*
 * The waiter checks for its slot and sleeps on halt_cond under the BQL, so
 * broadcasting under the BQL cannot fall between the two.
 */
static void host_wake(void *opaque, int vcpu)
{
    CPUState *cs;
    bool locked = bql_locked();

    if (!locked) {
        bql_lock();
    }
    /* Looked up under the BQL, which unplug holds: never a freed CPU. */
    cs = vsched_cpu(vcpu);
    if (cs) {
        qemu_cond_broadcast(cs->halt_cond);
    }
    if (!locked) {
        bql_unlock();
    }
}

/* A vCPU realized while the scheduler runs: hotplug (device_add). */
bool vsched_cpu_plug(CPUState *cs, Error **errp)
{
    char err[256];

    if (!vsched_core) {
        return true;
    }
    if (!vsched_vcpu_plug(vsched_core, cs->cpu_index, err, sizeof(err))) {
        error_setg(errp, "%s", err);
        return false;
    }
    vsched_count(VSCHED_GLUE_VCPU_PLUGS);
    trace_vsched_vcpu_plug(cs->cpu_index);
    return true;
}

/*
 * Unrealize (BQL held; the vCPU's thread has exited): release what it
 * holds and forget its CPUState before QEMU frees it.
 */
void vsched_cpu_unplug(CPUState *cs)
{
    int v;

    if (!vsched_core) {
        return;
    }
    /*
     * By pointer: cpu_list_remove() has already unset cs->cpu_index.  A
     * vCPU that never reached the gate is not listed; it never held a slot
     * or a queue place either.
     */
    qemu_mutex_lock(&vsched_cpus_lock);
    for (v = 0; v < vsched_nr_vcpus; v++) {
        if (qatomic_read(&vsched_cpus[v]) == cs) {
            qatomic_set(&vsched_cpus[v], NULL);
            break;
        }
    }
    qemu_mutex_unlock(&vsched_cpus_lock);
    vsched_count(VSCHED_GLUE_VCPU_UNPLUGS);
    if (v == vsched_nr_vcpus) {
        return;
    }
    vsched_vcpu_unplug(vsched_core, v);
    trace_vsched_vcpu_unplug(v);
}

static void host_trace(void *opaque, int event, int vcpu, int target,
                       int64_t arg)
{
    switch (event) {
    case VSCHED_TRACE_SPIN_DETECTED:
        trace_vsched_spin_detected(vcpu, arg);
        break;
    case VSCHED_TRACE_YIELD:
        trace_vsched_yield(vcpu, target,
                           vsched_policy_name(VSCHED_TRACE_YIELD_POLICY(arg)),
                           vsched_policy_pass_name(VSCHED_TRACE_YIELD_POLICY(arg),
                                                   VSCHED_TRACE_YIELD_PASS(arg)));
        break;
    case VSCHED_TRACE_RECEIVER_HIT:
        trace_vsched_receiver_hit(vcpu, target);
        break;
    case VSCHED_TRACE_NO_TARGET:
        trace_vsched_no_target(vcpu, arg);
        break;
    case VSCHED_TRACE_HANDOFF:
        trace_vsched_handoff(vcpu, target, arg);
        break;
    case VSCHED_TRACE_PREEMPT:
        trace_vsched_preempt(vcpu, arg);
        break;
    case VSCHED_TRACE_ACQUIRE_WAIT:
        trace_vsched_acquire_wait(vcpu, arg);
        break;
    case VSCHED_TRACE_GRANT:
        trace_vsched_grant(vcpu, arg);
        break;
    case VSCHED_TRACE_RELEASE:
        trace_vsched_release(vcpu, arg);
        break;
    case VSCHED_TRACE_IPI_LIFT:
        trace_vsched_ipi_lift(vcpu, arg);
        break;
    case VSCHED_TRACE_HALT_HANDOFF:
        trace_vsched_halt_handoff(vcpu, target);
        break;
    case VSCHED_TRACE_IPI_TO_RUN:
        trace_vsched_ipi_to_run(vcpu, arg);
        break;
    case VSCHED_TRACE_YIELDER_LIFT:
        trace_vsched_yielder_lift(vcpu, arg);
        break;
    case VSCHED_TRACE_WAKE_PREEMPT:
        trace_vsched_wake_preempt(vcpu, target, arg);
        break;
    case VSCHED_TRACE_PREEMPT_DELAY:
        trace_vsched_preempt_delay(vcpu, target, arg);
        break;
    case VSCHED_TRACE_LEND:
        trace_vsched_lend(vcpu, target, arg);
        break;
    case VSCHED_TRACE_LEND_RETURN:
        trace_vsched_lend_return(vcpu, target, arg);
        break;
    case VSCHED_TRACE_PV_YIELD:
        trace_vsched_pv_yield(vcpu, target, arg);
        break;
    }
}

static const VschedHostOps vsched_host_ops = {
    .now_ns = NULL,             /* CLOCK_MONOTONIC, read by the core */
    .kick = host_kick,
    .wake = host_wake,
    .trace = host_trace,
};

static QemuThread vsched_timer, vsched_mailbox;
static bool vsched_exiting, vsched_timer_started, vsched_mailbox_started;

/* Kicks slot holders whose slice is over while others wait. */
static void *vsched_timer_thread(void *opaque)
{
    while (!qatomic_read(&vsched_exiting)) {
        uint64_t next = vsched_tick(vsched_core);
        uint64_t now = get_clock();
        uint64_t slice = vsched_settings.cfg.slice_ns;
        uint64_t wait = next > now ? next - now : 0;

        /* A queued vCPU may arrive at any time: look again within a slice. */
        wait = MIN(MAX(wait, 50 * SCALE_US), slice);
        g_usleep(wait / SCALE_US);
    }
    return NULL;
}

/* Shared pool: wakes and kicks that other VMs post for our vCPUs. */
static void *vsched_mailbox_thread(void *opaque)
{
    vsched_pool_mailbox_run(vsched_core);
    return NULL;
}

/* Shared pool: this VM's part of it, as the pool sees it now. */
static void vsched_append_pool_stats(GString *json)
{
    VschedPoolInfo pool;

    if (!vsched_core_is_shared(vsched_core) ||
        !vsched_pool_info(vsched_core, &pool)) {
        return;
    }
    g_string_append_printf(json, ",\"pool_members\":%d", pool.members);
    for (int i = 0; i < VSCHED_POOL_MAX_MEMBERS; i++) {
        VschedPoolMember m;

        if (vsched_pool_member(vsched_core, i, &m) && m.self) {
            g_string_append_printf(json, ",\"pool_slot_time_ns\":%" PRIu64
                                   ",\"pool_share\":%.4f,\"pool_slot_wait_ns\":%"
                                   PRIu64 ",\"pool_slot_wait_max_ns\":%" PRIu64,
                                   m.slot_time_ns, m.share, m.slot_wait_ns,
                                   m.slot_wait_max_ns);
        }
    }
}

/*
 * Write text to path as a whole (temp file + rename), but only if path is
 * a regular file or absent: a symlink, FIFO or device named there (say
 * stats-file=/dev/null, as root) is never replaced.  Returns false with
 * an error message.
 */
static bool vsched_replace_regular_file(const char *path, const char *text,
                                        char **msg)
{
    struct stat st;
    g_autofree char *tmp = NULL;
    int fd;
    size_t len = strlen(text);

    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        *msg = g_strdup_printf("%s is not a regular file (%s); not replacing it",
                               path, S_ISLNK(st.st_mode) ? "a symlink" :
                               S_ISFIFO(st.st_mode) ? "a FIFO" :
                               S_ISDIR(st.st_mode) ? "a directory" :
                               "a device or socket");
        return false;
    }
    tmp = g_strdup_printf("%s.XXXXXX", path);
    fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        *msg = g_strdup_printf("cannot create %s: %s", tmp, strerror(errno));
        return false;
    }
    if (qemu_write_full(fd, text, len) != len || fsync(fd) != 0) {
        *msg = g_strdup_printf("cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return false;
    }
    close(fd);
    /* Checked again just before: rename() replaces whatever is there. */
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        *msg = g_strdup_printf("%s is no longer a regular file; not replacing it",
                               path);
        unlink(tmp);
        return false;
    }
    if (rename(tmp, path) != 0) {
        *msg = g_strdup_printf("cannot replace %s: %s", path, strerror(errno));
        unlink(tmp);
        return false;
    }
    return true;
}

/* stats-file: every counter as one JSON object on one line. */
static void vsched_write_stats(void)
{
    g_autoptr(GString) json = g_string_new("{");
    g_autofree char *msg = NULL;

    for (int i = 0; i < vsched_all_counter_count(); i++) {
        g_string_append_printf(json, "%s\"%s\":%" PRIu64, i ? "," : "",
                               vsched_all_counter_name(i),
                               vsched_all_counter_value(i));
    }
    vsched_append_pool_stats(json);
    vsched_vtime_append_stats(json);
    g_string_append(json, "}\n");
    if (!vsched_replace_regular_file(vsched_settings.stats_file, json->str, &msg)) {
        error_report("vsched: stats-file: %s", msg);
    }
}

/*
 * At exit the vCPUs are stopped: dump the counters, stop our threads and
 * leave the pool, so the slots go to the other VMs at once.
 */
static void vsched_exit(Notifier *n, void *data)
{
    if (vsched_settings.stats_file) {
        vsched_write_stats();
    }
    bool locked = bql_locked();

    qatomic_set(&vsched_active, false);
    qatomic_set(&vsched_steal_time, false);
    qatomic_set(&vsched_hypercalls, false);
    vsched_vtime_stop();
    qatomic_set(&vsched_exiting, true);
    /* The mailbox thread may be waiting for the BQL to deliver a wake. */
    if (locked) {
        bql_unlock();
    }
    if (vsched_timer_started) {
        qemu_thread_join(&vsched_timer);
    }
    if (vsched_mailbox_started) {
        vsched_pool_mailbox_stop(vsched_core);
        qemu_thread_join(&vsched_mailbox);
    }
    if (locked) {
        bql_lock();
    }
    vsched_core_free(vsched_core);
    vsched_core = NULL;
}

static Notifier vsched_exit_notifier = { .notify = vsched_exit };

/*
 * The VM stops (stop, a debugger, migration): no vCPU thread runs until
 * it resumes, so none may keep a slot or a queue place.  In round robin
 * only the vCPU running at the stop would see it; under MTTCG a vCPU can
 * be granted a slot on its way to being parked.  Index order: a slot
 * passed on by a release goes to a vCPU still queued, released later.
 */
static void vsched_vm_state_change(void *opaque, bool running, RunState state)
{
    if (running || !vsched_core) {
        return;
    }
    for (int v = 0; v < vsched_nr_vcpus; v++) {
        vsched_release_if_active(vsched_core, v, VSCHED_RELEASE_STOP);
    }
}

static void vsched_refuse(const char *what)
{
    error_report("-accel tcg,vcpu-sched=on cannot be combined with %s: "
                 "the slot scheduler runs on host time", what);
    exit(1);
}

/* Highest cpu_index present + 1 (x86 numbers vCPUs by topology slot, so
 * -smp 2,maxcpus=4 with a cold-plugged socket 3 needs 4), at least cpus. */
static int vsched_present_vcpus(MachineState *ms)
{
    CPUState *cs;
    int n = ms->smp.cpus;

    CPU_FOREACH(cs) {
        n = MAX(n, cs->cpu_index + 1);
    }
    return MIN(n, vsched_nr_vcpus);
}

/* A TCG property that only works on top of another: refuse to start. */
static void require_property(bool on, bool base_on, const char *prop,
                             const char *base, const char *why)
{
    if (on && !base_on && tcg_enabled()) {
        error_report("-accel tcg,%s=on needs %s=on: %s", prop, base, why);
        exit(1);
    }
}

static void vsched_start(Notifier *n, void *data)
{
    MachineState *ms = MACHINE(qdev_get_machine());
    VschedSettings *s = &vsched_settings;
    char err[256];
    bool virtual_time = vsched_vtime_check_startup(s->enabled);

    require_property(s->steal_time, s->enabled, "steal-time", "vcpu-sched",
                     "the guest's steal time is its vCPUs' wait for a slot");
    require_property(s->pv_tlb_flush, s->steal_time, "pv-tlb-flush",
                     "steal-time", "the guest asks for a flush in a "
                     "preempted vCPU's steal-time record");
    require_property(s->pv_sched_yield, s->steal_time, "pv-sched-yield",
                     "steal-time", "the guest yields only to a vCPU its "
                     "steal-time record says is preempted");
    if (!s->enabled || !tcg_enabled()) {
        return;
    }
    if (icount_enabled() && !virtual_time) {
        vsched_refuse("-icount (add time=virtual for a scheduler on "
                      "instruction counts)");
    }
    if (replay_mode != REPLAY_MODE_NONE) {
        vsched_refuse("record/replay");
    }
    vsched_nr_vcpus = ms->smp.max_cpus;
    vsched_cpus = g_new0(CPUState *, vsched_nr_vcpus);
    qemu_mutex_init(&vsched_cpus_lock);
    if (s->pool) {
        /* Pool ids for the vCPUs present now (hotplug adds more); in
         * virtual time one clock for every VM of the pool (vtime_barrier.h). */
        VschedHostOps vtime_ops;
        VschedTimeBase tb = { .virtual_time = false };

        if (virtual_time) {
            vsched_vtime_time_base(&tb);
        }
        vsched_core = vsched_core_new_shared_timed(&s->cfg, s->pool,
            vsched_nr_vcpus, vsched_present_vcpus(ms),
            virtual_time ? vsched_vtime_host_ops(&vsched_host_ops, &vtime_ops)
                         : &vsched_host_ops,
            NULL, &tb, err, sizeof(err));
    } else {
        VschedHostOps vtime_ops;

        vsched_core = vsched_core_new(&s->cfg, vsched_nr_vcpus,
                                      virtual_time ?
                                      vsched_vtime_host_ops(&vsched_host_ops,
                                                            &vtime_ops) :
                                      &vsched_host_ops, NULL, err, sizeof(err));
    }
    if (!vsched_core) {
        error_report("-accel tcg,vcpu-sched=on%s%s: %s", s->pool ? ",pool=" : "",
                     s->pool ?: "", err);
        exit(1);
    }
    /* Reachable for qom-get/qom-set as /machine/accel. */
    object_property_add_child(OBJECT(ms), "accel", OBJECT(current_accel()));
    qemu_add_exit_notifier(&vsched_exit_notifier);
    qemu_add_vm_change_state_handler(vsched_vm_state_change, NULL);
    if (virtual_time) {
        /* Slices end in the rounds, on instruction counts, not by a timer. */
        vsched_vtime_start();
    } else {
        qemu_thread_create(&vsched_timer, "vsched-timer", vsched_timer_thread,
                           NULL, QEMU_THREAD_JOINABLE);
        vsched_timer_started = true;
    }
    /* In virtual time the round-robin thread takes the mail at its turn
     * (a fixed point in the rounds) and reaps while it waits. */
    if (s->pool && !virtual_time) {
        qemu_thread_create(&vsched_mailbox, "vsched-mailbox",
                           vsched_mailbox_thread, NULL, QEMU_THREAD_JOINABLE);
        vsched_mailbox_started = true;
    }
    if (s->steal_time) {
        /* Before the first vCPU runs: the guest reads CPUID at boot. */
        vsched_arch_steal_init(vsched_nr_vcpus);
        vsched_steal_time = true;
        vsched_hypercalls = s->pv_sched_yield;
    }
    trace_vsched_start(s->cfg.pcpus, vsched_nr_vcpus,
                       vsched_policy_name(s->cfg.policy));
    qatomic_set(&vsched_active, true);
}

static Notifier vsched_start_notifier = { .notify = vsched_start };

void vsched_register_start(void)
{
    static bool registered;

    if (!registered) {
        qemu_add_machine_init_done_notifier(&vsched_start_notifier);
        registered = true;
    }
}
