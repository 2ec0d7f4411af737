/*
 * vsched: virtual time (-accel tcg,time=virtual): the start-up checks and
 * the rounds (its properties are in vsched-props.c).
 *
 * Virtual time runs the slot scheduler on instruction counts: it needs
 * QEMU's icount with a fixed shift, no sleeping (idle time is skipped, not
 * waited for) and the round-robin thread, which runs every vCPU in one
 * deterministic order.  Every other combination is refused at start-up
 * with a message naming the fix.
 *
 * At run time the round-robin thread runs lockstep rounds of the slots
 * (the core's VtimeDriver decides who runs where and for how long; this
 * file runs a vCPU for a budget, as icount does, and keeps QEMU's clock on
 * the running slot's time).  See docs/design/virtual-time.rst.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/main-loop.h"
#include "qemu/seqlock.h"
#include "qapi/error.h"
#include "qemu/config-file.h"
#include "qemu/error-report.h"
#include "qemu/option.h"
#include "qom/object.h"
#include "hw/core/cpu.h"
#include "exec/cpu-common.h"
#include "system/cpu-timers.h"
#include "system/cpu-timers-internal.h"
#include "system/cpus.h"
#include "system/replay.h"
#include "system/runstate.h"
#include "system/tcg.h"
#include "accel/tcg/tcg-accel-ops.h"
#include "accel/tcg/tcg-accel-ops-icount.h"
#include "accel/vsched.h"
#include "accel/vsched-vtime.h"
#include "core/vsched-vtime-core.h"
#include "vsched-internal.h"
#include "vsched-vtime.h"
#include "trace.h"

VschedVtimeSettings vsched_vtime = {
    .quantum = VSCHED_VTIME_QUANTUM_DEFAULT,
    .pool_members = 1,
};

static G_NORETURN void refuse(const char *why, const char *fix)
{
    error_report("-accel tcg,time=virtual %s: %s", why, fix);
    exit(1);
}

/* The -icount options as given (NULL without -icount). */
static QemuOpts *icount_opts(void)
{
    QemuOptsList *list = qemu_find_opts("icount");

    return list ? qemu_opts_find(list, NULL) : NULL;
}

bool vsched_vtime_check_startup(bool vcpu_sched)
{
    QemuOpts *icount = icount_opts();

    if (vsched_vtime.pool_members_set &&
        (!vsched_vtime.virtual_time || !vsched_settings.pool)) {
        error_report("-accel tcg,pool-members=%" PRIu64 " needs time=virtual "
                     "and pool=: it starts the rounds of a shared pool",
                     vsched_vtime.pool_members);
        exit(1);
    }
    if (!vsched_vtime.virtual_time) {
        if (vsched_vtime.quantum_set) {
            error_report("-accel tcg,quantum=%" PRIu64 " needs time=virtual: "
                         "the quantum is the round of virtual time",
                         vsched_vtime.quantum);
            exit(1);
        }
        return false;
    }
    if (!tcg_enabled()) {
        return false;       /* the properties exist on tcg-accel only */
    }
    if (!vcpu_sched) {
        refuse("needs the slot scheduler",
               "add vcpu-sched=on (virtual time is its time base)");
    }
    if (replay_mode != REPLAY_MODE_NONE) {
        refuse("cannot be combined with record/replay",
               "drop rr= from -icount");
    }
    /* With -icount QEMU refuses thread=multi itself, before we run. */
    if (!icount_enabled() || !icount) {
        refuse("needs instruction counting on one vCPU thread",
               "add -icount shift=N,sleep=off (a fixed N, e.g. shift=0) "
               "and use thread=single");
    }
    if (use_icount == ICOUNT_ADAPTATIVE) {
        refuse("needs a fixed instruction rate",
               "use -icount shift=N with a number N (0-10), not shift=auto");
    }
    if (qemu_opt_get_bool(icount, "sleep", true)) {
        refuse("must not wait for the host clock when the guest idles",
               "add sleep=off to -icount");
    }
    return true;
}

/* ------------------------------------------------------------ run time */

bool vsched_vtime_active;
static VschedVtime *vtime;
/* Set by the PAUSE/MWAIT hooks during a run (one thread runs them all). */
int vsched_vtime_exit_kind;
/*
 * The guest asked for shutdown: no guest code runs until the VM has
 * stopped and runs again (-action shutdown=pause, then cont).  Only the
 * vCPU thread sets it; cleared on the next start.
 */
static bool vtime_shut_down;

/* QEMU's clock (timers_state.qemu_icount) follows the running slot. */
static void set_icount(uint64_t insns)
{
    seqlock_write_lock(&timers_state.vm_clock_seqlock,
                       &timers_state.vm_clock_lock);
    qatomic_set_i64(&timers_state.qemu_icount, insns);
    seqlock_write_unlock(&timers_state.vm_clock_seqlock,
                         &timers_state.vm_clock_lock);
}

int64_t vsched_vtime_icount_update(CPUState *cpu, int64_t icount,
                                   int64_t executed)
{
    return vsched_vtime_account(vtime, executed);
}

/*
 * The core's clock: the running slot's time, including what the running
 * vCPU executed since its last refill (a PAUSE or IPI hook reads it in the
 * middle of a run).  Other threads see the last accounted time.
 */
static uint64_t vtime_clock_ns(void *opaque)
{
    CPUState *cpu = current_cpu;
    uint64_t insns;

    if (!vtime) {
        return 0;
    }
    insns = vsched_vtime_now(vtime);
    if (cpu && qatomic_read(&cpu->running) && cpu->icount_budget) {
        insns += cpu->icount_budget -
                 (cpu->neg.icount_decr.u16.low + cpu->icount_extra);
    }
    return icount_to_ns(insns);
}

/*
 * helper_pause, on the running vCPU's thread: go on past a PAUSE that
 * would end the run for nothing (vsched_vtime_pause_inline).  The cost is
 * taken off the run's budget as the round would have after the exit;
 * icount_get_executed() is unchanged.  True: the caller leaves the TB
 * without ending the run (cpu_loop_exit_noexc).
 */
bool vsched_vtime_pause_continues(CPUState *cpu)
{
    uint64_t cost = vsched_vtime_pause_cost();
    uint64_t left = cpu->neg.icount_decr.u16.low + cpu->icount_extra;
    uint64_t from_extra;

    if (!qatomic_read(&vsched_vtime_active) || cpu->stop || cpu->unplug ||
        cpu->singlestep_enabled ||
        !vsched_vtime_pause_inline(vtime, cpu->cpu_index, left,
                                   vtime_clock_ns(NULL) + icount_to_ns(cost))) {
        return false;
    }
    from_extra = MIN(cost, cpu->icount_extra);
    cpu->icount_extra -= from_extra;
    cpu->neg.icount_decr.u16.low -= cost - from_extra;
    cpu->icount_budget -= cost;
    vsched_vtime_exit_kind = VSCHED_VTIME_RAN;
    return true;
}

static bool vtime_runnable(void *opaque, int vcpu)
{
    CPUState *cpu = qemu_get_cpu(vcpu);

    return cpu && cpu_can_run(cpu) && !(cpu->halted && !cpu_has_work(cpu));
}

/* icount_prepare_for_run without its limit: the round sets the budget. */
static void vtime_prepare(CPUState *cpu, uint64_t budget)
{
    int insns_left = MIN(0xffff, budget);

    g_assert(cpu->neg.icount_decr.u16.low == 0);
    g_assert(cpu->icount_extra == 0);
    replay_mutex_lock();
    cpu->icount_budget = budget;
    cpu->neg.icount_decr.u16.low = insns_left;
    cpu->icount_extra = budget - insns_left;
}

/* Runs @vcpu for at most @budget instructions (BQL held on entry/exit). */
static int vtime_run(void *opaque, int vcpu, uint64_t budget)
{
    CPUState *cpu = qemu_get_cpu(vcpu);
    int r;

    current_cpu = cpu;
    qemu_clock_enable(QEMU_CLOCK_VIRTUAL,
                      (cpu->singlestep_enabled & SSTEP_NOTIMER) == 0);
    set_icount(vsched_vtime_now(vtime));
    bql_unlock();
    vtime_prepare(cpu, budget);
    vsched_vtime_exit_kind = VSCHED_VTIME_RAN;
    r = tcg_cpu_exec(cpu);
    icount_process_data(cpu);
    bql_lock();

    switch (r) {
    case EXCP_DEBUG:
        cpu_handle_guest_debug(cpu);
        return VSCHED_VTIME_BREAK;
    case EXCP_ATOMIC:
        bql_unlock();
        cpu_exec_step_atomic(cpu);
        bql_lock();
        break;
    case EXCP_HLT:
    case EXCP_HALTED:
        return VSCHED_VTIME_HALTED;
    }
    if (cpu->stop || vtime_shut_down) {
        return VSCHED_VTIME_BREAK;
    }
    return vsched_vtime_exit_kind;
}

static const VschedVtimeOps vtime_ops = {
    .runnable = vtime_runnable,
    .run = vtime_run,
};

/* Instructions from the current clock to the next QEMU_CLOCK_VIRTUAL timer. */
static uint64_t insns_to_deadline(void)
{
    int64_t ns = qemu_clock_deadline_ns_all(QEMU_CLOCK_VIRTUAL,
                                            QEMU_TIMER_ATTR_ALL);

    return ns < 0 ? VSCHED_VTIME_NO_DEADLINE : icount_round(ns);
}

/*
 * Every vCPU is halted: skip to the next timer deadline and run its
 * timers, until one wakes a vCPU.  Bounded, so that a guest that never
 * wakes (only re-arming timers left) still lets the thread sleep.
 */
#define VTIME_MAX_WARPS 1000

static void warp_while_idle(void)
{
    for (int i = 0; i < VTIME_MAX_WARPS; i++) {
        uint64_t n;

        if (!runstate_is_running() || !all_cpu_threads_idle()) {
            return;
        }
        n = insns_to_deadline();
        if (n == VSCHED_VTIME_NO_DEADLINE) {
            return;
        }
        vsched_vtime_warp(vtime, n);
        set_icount(vsched_vtime_now(vtime));
        icount_handle_deadline();
    }
}

/* ------------------------------------------------- several VMs, one pool */

/* The VM is stopping (stop, gdb, exit): leave the rounds, do not wait. */
static bool vtime_stopping(void *opaque)
{
    CPUState *cpu;

    if (!runstate_is_running()) {
        return true;
    }
    CPU_FOREACH(cpu) {
        if (qatomic_read(&cpu->stop)) {
            return true;
        }
    }
    return false;
}

static bool vtime_any_runnable(void)
{
    for (int v = 0; v < vsched_vcpu_count(); v++) {
        if (vtime_runnable(NULL, v)) {
            return true;
        }
    }
    return false;
}

static bool single_round(void);

/*
 * One turn of this VM in the pool's rounds (vtime_barrier.h): wait for it
 * (without the BQL), run our slots for the round's length, run the timers
 * due at its end, publish our next deadline and pass the turn on.  While
 * every vCPU of ours is halted we keep taking (idle) turns here: upstream's
 * loop would sleep on halt_cond, and the other VMs' time goes on.
 */
static bool pool_round(void)
{
    static VschedVtimeTurn turn;

    for (;;) {
        uint64_t next;
        int step;

        if (!vsched_vtime_round_open(vtime)) {
            int w;

            bql_unlock();
            w = vsched_vtime_pool_wait(vtime, vtime_stopping, NULL, &turn);
            bql_lock();
            if (w == VSCHED_VTIME_TURN_ABORTED) {
                return true;
            }
            if (w == VSCHED_VTIME_TURN_DETACHED) {
                return single_round();      /* left a corrupt pool */
            }
            /* Wakes and kicks from the VMs before us, at a fixed point. */
            vsched_pool_mailbox_dispatch(vsched_core, 0);
            set_icount(vsched_vtime_now(vtime));
            icount_handle_deadline();
        }
        step = vsched_vtime_run_round(vtime, turn.length);
        current_cpu = first_cpu;
        set_icount(vsched_vtime_now(vtime));
        if (step == VSCHED_VTIME_ROUND_BREAK) {
            /*
             * After a shutdown request we keep the turn: the others go on
             * when we exit, and our slots are free then (one step).
             */
            if (vtime_stopping(NULL) && !vtime_shut_down) {
                vsched_vtime_pool_leave(vtime); /* others go on meanwhile */
            }
            return true;
        }
        if (step == VSCHED_VTIME_ALL_IDLE) {
            vsched_vtime_warp(vtime, turn.length);
            set_icount(vsched_vtime_now(vtime));
        }
        icount_handle_deadline();
        next = insns_to_deadline();
        if (next != VSCHED_VTIME_NO_DEADLINE) {
            next += vsched_vtime_now(vtime);
        }
        vsched_vtime_pool_pass(vtime, next, !vtime_any_runnable());
        if (!runstate_is_running() || !all_cpu_threads_idle()) {
            return true;
        }
    }
}

/*
 * A guest's shutdown request, on the vCPU thread in the middle of a run:
 * the run ends at the next block boundary and no round runs after it.
 * The main loop acts on the request at a host-timed moment; until then
 * the vCPUs used to run on (the CPUs being stopped spin), so the counters
 * of identical runs differed in that tail.  Requests from other threads
 * (QMP quit, signals) change nothing here: guest code does not make them.
 */
void vsched_shutdown_request(void)
{
    CPUState *cpu = current_cpu;

    if (!qatomic_read(&vsched_vtime_active) || !cpu || !qemu_cpu_is_self(cpu)) {
        return;
    }
    vtime_shut_down = true;
    trace_vsched_vtime_shutdown(cpu->cpu_index, vsched_vtime_now(vtime));
    cpu_exit(cpu);
}

bool vsched_vtime_guest_shut_down(void)
{
    return vtime_shut_down;
}

static void vtime_vm_state_change(void *opaque, bool running, RunState state)
{
    if (running) {
        vtime_shut_down = false;
    }
}

/* No guest code after a shutdown request: wait for QEMU to stop the VM. */
static void wait_for_the_stop(void)
{
    CPUState *cpu;

    CPU_FOREACH(cpu) {
        if (cpu->stop || !cpu_work_list_empty(cpu)) {
            return;     /* upstream's loop handles both */
        }
    }
    qemu_cond_timedwait_bql(first_cpu->halt_cond, 100);
}

bool vsched_vtime_rr_round(void)
{
    if (vtime_shut_down) {
        wait_for_the_stop();
        return true;
    }
    if (vsched_vtime_pooled(vtime)) {
        return pool_round();
    }
    return single_round();
}

static bool single_round(void)
{
    int step;

    set_icount(vsched_vtime_now(vtime));
    step = vsched_vtime_run_round(vtime, insns_to_deadline());
    current_cpu = first_cpu;
    set_icount(vsched_vtime_now(vtime));
    /*
     * Every vCPU halted (in this round, or before it): skip to the next
     * timer now, or upstream's loop sleeps on halt_cond with nobody left
     * to warp the clock (the main loop's warp is off in virtual time).
     */
    if (step != VSCHED_VTIME_ROUND_BREAK) {
        warp_while_idle();
    }
    return true;
}

const VschedHostOps *vsched_vtime_host_ops(const VschedHostOps *real,
                                           VschedHostOps *buf)
{
    *buf = *real;
    buf->now_ns = vtime_clock_ns;
    return buf;
}

void vsched_vtime_start(void)
{
    vtime = vsched_vtime_new(vsched_core, vsched_vtime.quantum,
                             qatomic_read_i64(&timers_state.qemu_icount),
                             &vtime_ops, NULL);
    if (!vtime) {
        error_report("-accel tcg,time=virtual: cannot set up the rounds");
        exit(1);
    }
    if (vsched_settings.pool &&
        !vsched_vtime_pool_join(vtime, vsched_vtime.pool_members)) {
        error_report("-accel tcg,time=virtual,pool=%s: cannot join the "
                     "pool's rounds", vsched_settings.pool);
        exit(1);
    }
    qemu_add_vm_change_state_handler(vtime_vm_state_change, NULL);
    qatomic_set(&vsched_vtime_active, true);
}

void vsched_vtime_time_base(VschedTimeBase *tb)
{
    tb->virtual_time = true;
    tb->icount_shift = icount_enabled() ? timers_state.icount_time_shift : 0;
    tb->quantum = vsched_vtime.quantum;
}

void vsched_vtime_stop(void)
{
    qatomic_set(&vsched_vtime_active, false);
}

/*
 * The rounds' counters by name (stats-file, query-vsched, info vsched):
 * the rounds' and the driver's, then, on a shared pool, the barrier's.
 */
typedef struct VtimeAllCounters {
    VschedVtimeCounters rounds;
    VschedVtimeBarrierCounters barrier;
} VtimeAllCounters;

static const struct {
    const char *name;
    size_t offset;
} vtime_counters[] = {
#define VTIME_COUNTER(f) \
    { "vtime_" #f, offsetof(VtimeAllCounters, rounds.f) }
#define VTIME_BARRIER_COUNTER(f) \
    { "vtime_" #f, offsetof(VtimeAllCounters, barrier.f) }
    VTIME_COUNTER(rounds),
    VTIME_COUNTER(short_rounds),
    VTIME_COUNTER(executed),
    VTIME_COUNTER(idle),
    VTIME_COUNTER(charged),
    VTIME_COUNTER(warps),
    VTIME_COUNTER(warped),
    VTIME_COUNTER(runs),
    VTIME_COUNTER(holder_changes),
    VTIME_COUNTER(stalls),
    VTIME_COUNTER(catch_ups),
    VTIME_COUNTER(inline_pauses),
    VTIME_BARRIER_COUNTER(turns),
    VTIME_BARRIER_COUNTER(lost_turns),
    VTIME_BARRIER_COUNTER(skipped_dead),
    VTIME_BARRIER_COUNTER(skipped_stopped),
    VTIME_BARRIER_COUNTER(skipped_slow),
    VTIME_BARRIER_COUNTER(rejoins),
#undef VTIME_COUNTER
#undef VTIME_BARRIER_COUNTER
};

int vsched_vtime_counter_count(void)
{
    /* Every field is listed, the rounds' first. */
    QEMU_BUILD_BUG_ON(ARRAY_SIZE(vtime_counters) * sizeof(uint64_t) !=
                      sizeof(VtimeAllCounters));
    if (!vtime) {
        return 0;
    }
    return vsched_settings.pool ? ARRAY_SIZE(vtime_counters)
                                : sizeof(VschedVtimeCounters) / sizeof(uint64_t);
}

const char *vsched_vtime_counter_name(int i)
{
    return vtime_counters[i].name;
}

uint64_t vsched_vtime_counter_value(int i)
{
    VtimeAllCounters c;

    vsched_vtime_counters(vtime, &c.rounds);
    vsched_vtime_barrier_counters(vtime, &c.barrier);
    return *(uint64_t *)((char *)&c + vtime_counters[i].offset);
}

bool vsched_vtime_query(VschedVtimeQuery *out)
{
    if (!vtime) {
        return false;
    }
    out->quantum = vsched_vtime.quantum;
    out->shift = timers_state.icount_time_shift;
    out->now_ns = icount_to_ns(vsched_vtime_now(vtime));
    return true;
}

void vsched_vtime_append_stats(GString *json)
{
    if (vtime) {
        g_string_append_printf(json, ",\"vtime_now\":%" PRIu64,
                               vsched_vtime_now(vtime));
    }
}
