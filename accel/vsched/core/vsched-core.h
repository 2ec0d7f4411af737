/*
 * vsched-core.h: C facade of the vsched scheduling core.
 *
 * Plain C; the implementation is C++20 (facade.cc) and never lets an
 * exception cross these functions.  See docs/design/core.rst.
 *
 * Threads, locks and the BQL
 * --------------------------
 *  - vsched_acquire/release/after_exec/tick may be called concurrently
 *    from any thread; they take one internal mutex.  vsched_setting_get/
 *    set may too: they read and write atomics.
 *  - vsched_on_pause/vsched_on_mwait are lock-free and wait-free: safe
 *    inside cpu_exec without the BQL.
 *  - vsched_on_ipi/on_irq_accept/on_eoi never take the internal mutex.
 *  - The core never calls now_ns/kick/wake/trace while it holds its mutex:
 *    it collects them and calls them after unlocking, in the calling thread.
 *    So callbacks may take the BQL, and a caller may hold the BQL: the only
 *    lock order is BQL -> core mutex.  A callback must not call back into
 *    vsched_acquire/release/after_exec/tick (no re-entrancy is needed).
 *
 * Time is in ns of the now_ns callback's clock, or CLOCK_MONOTONIC when
 * now_ns is NULL; vsched_tick() returns deadlines in that same clock.
 */
#ifndef VSCHED_CORE_H
#define VSCHED_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct VschedCore VschedCore;

/* Reasons for vsched_release(). */
enum {
    VSCHED_RELEASE_HALT = 0,  /* halted: slot freed, not queued */
    VSCHED_RELEASE_STOP = 1,  /* stop/debug/unplug: slot and queue entry dropped */
    VSCHED_RELEASE_YIELD = 2, /* voluntary: to the queue tail if anyone waits */
};

/* vCPU states (VschedVcpuInfo.state_id). */
enum {
    VSCHED_STATE_STOPPED = 0,
    VSCHED_STATE_HALTED = 1,
    VSCHED_STATE_QUEUED = 2,
    VSCHED_STATE_RUNNING = 3,
};

/* Trace events (VschedHostOps.trace); names: vsched_trace_event_name(). */
enum {
    VSCHED_TRACE_SPIN_DETECTED = 0, /* vcpu; arg = cpl of the spin */
    VSCHED_TRACE_YIELD,             /* a pass yielded vcpu -> target; arg:
                                     * VSCHED_TRACE_YIELD_POLICY/_PASS */
    VSCHED_TRACE_RECEIVER_HIT,      /* target held an IPI of vcpu */
    VSCHED_TRACE_NO_TARGET,         /* vcpu; arg = its new spin window, ns */
    VSCHED_TRACE_HANDOFF,           /* slot vcpu -> target; arg = slice left, ns */
    VSCHED_TRACE_PREEMPT,           /* vcpu; arg = cpl */
    VSCHED_TRACE_ACQUIRE_WAIT,      /* vcpu queued; arg = queue length */
    VSCHED_TRACE_GRANT,             /* vcpu got slot `target`; arg = ns waited */
    VSCHED_TRACE_RELEASE,           /* vcpu; arg = VSCHED_RELEASE_* */
    VSCHED_TRACE_IPI_LIFT,          /* IPI-woken vcpu queued ahead; arg = passed */
    VSCHED_TRACE_HALT_HANDOFF,      /* halting vcpu's slot -> target */
    VSCHED_TRACE_IPI_TO_RUN,        /* vcpu runs; arg = ns since its first IPI */
    VSCHED_TRACE_YIELDER_LIFT,      /* yielder requeued ahead; arg = passed */
    VSCHED_TRACE_WAKE_PREEMPT,      /* holder vcpu's slot -> IPI-woken target;
                                     * arg = ns the holder had run */
    VSCHED_TRACE_PREEMPT_DELAY,     /* vcpu; target: 0 deferred in kernel mode
                                     * (arg = ns past its deadline), 1
                                     * preempted in user mode, 2 grace over
                                     * (arg = ns it kept the slot) */
    VSCHED_TRACE_LEND,              /* vcpu lent its slot to its IPI receiver
                                     * target; arg = the IPI's vector */
    VSCHED_TRACE_LEND_RETURN,       /* receiver vcpu's slot back to lender
                                     * target; arg = ns left of the slice */
    VSCHED_TRACE_PV_YIELD,          /* guest's PV sched yield vcpu -> target;
                                     * arg = 1 slot handed, 0 miss */
    VSCHED_TRACE__MAX,
};
/* VSCHED_TRACE_YIELD's arg: policy id and pass index. */
#define VSCHED_TRACE_YIELD_POLICY(arg) ((int)((arg) >> 16))
#define VSCHED_TRACE_YIELD_PASS(arg) ((int)((arg) & 0xffff))

typedef struct VschedHostOps {
    /* Monotonic ns; NULL: CLOCK_MONOTONIC.  Called on every hook. */
    uint64_t (*now_ns)(void *opaque);
    /* Make running vcpu leave guest code soon (QEMU: cpu_exit); lock-free. */
    void (*kick)(void *opaque, int vcpu);
    /* vcpu, waiting in the gate, has been given a slot: wake it
     * (QEMU: broadcast its halt_cond under the BQL). */
    void (*wake)(void *opaque, int vcpu);
    /* Optional (NULL allowed): one call per decision, see VSCHED_TRACE_*. */
    void (*trace)(void *opaque, int event, int vcpu, int target, int64_t arg);
} VschedHostOps;

typedef struct VschedConfig {
    int pcpus;                  /* slots; default 1 */
    uint64_t slice_ns;          /* default 20 ms */
    int policy;                 /* vsched_parse_policy(); default vanilla */
    bool relaxed_boost;         /* default true */
    bool ipi_tracking;          /* default true */
    uint64_t ipi_window_ns;     /* default 50 ms */
    uint64_t ple_gap_ns;        /* default 50 us */
    uint64_t ple_window_ns;     /* default 100 us */
    uint64_t ple_window_max_ns; /* default 3.2 ms */
    unsigned ple_window_grow;   /* default 2 */
    int yield_budget;           /* -ESRCH retries per pass; default 3 */
    /* A directed-yield yielder waits marked preempted (preempted_in_kernel
     * from its spin's CPL), as KVM's kvm_sched_out() marks a runnable
     * vCPU; false: marked as a voluntary yield (ready, not preempted).
     * Default true; see docs/design/core.rst. */
    bool yielder_preempted;
    /* ipi-prio's mechanisms (docs/design/where-time-goes.rst); default on. */
    bool halt_handoff;
    bool ipi_lift;
    bool callfn_first;
    bool yield_lift;
    unsigned lift_bound;        /* times one queued vCPU may be passed; 2 */
    /* Wake preemption: an IPI-woken vCPU that finds no free slot takes the
     * slot of this VM's holder that has run longest in its grant, if that
     * is at least wake_granularity_ns (default off, 1 ms). */
    bool wake_preempt;
    uint64_t wake_granularity_ns;
    bool wake_spinners;         /* a spinning holder first, any run time */
    bool wake_queued;           /* an IPI to a queued vCPU asks too */
    /* Delayed preemption: a holder due for preemption in kernel mode keeps
     * its slot until it returns to user mode, at most this long past its
     * deadline (policies that ask: ipi-prio); 0: off, the default. */
    uint64_t preempt_delay_ns;
    /* Lend until EOI: a yield to the receiver of the yielder's IPI lends
     * the slot, which comes back at the receiver's EOI (default off). */
    bool yield_lend;
} VschedConfig;

void vsched_config_defaults(VschedConfig *cfg);

/*
 * The -accel settings, one table (settings.cc): name, type, range (counts;
 * durations in ns), whether it may change at run time, and help.  The
 * QEMU properties, their descriptions and range checks and the user
 * guide's property table all follow it.
 */
typedef enum {
    VSCHED_SETTING_BOOL,
    VSCHED_SETTING_COUNT,
    VSCHED_SETTING_DURATION,
    VSCHED_SETTING_POLICY,
    VSCHED_SETTING_STRING,
} VschedSettingType;

typedef struct VschedSetting {
    const char *name;
    VschedSettingType type;
    uint64_t min, max;  /* COUNT and DURATION (ns) only */
    bool runtime;       /* qom-set may change it while the VM runs */
    const char *help;
} VschedSetting;

int vsched_setting_count(void);
const VschedSetting *vsched_setting(int i);            /* NULL if out of range */
const VschedSetting *vsched_setting_find(const char *name); /* NULL if none */
/* "vcpu-sched: ..." help with range and run-time note (static storage). */
const char *vsched_setting_description(const VschedSetting *s);
/* Range check of a COUNT or DURATION value; on failure writes
 * "Parameter 'NAME' must be between MIN and MAX (got VALUE)". */
bool vsched_setting_check(const VschedSetting *s, uint64_t value, char *err,
                          size_t errlen);
/* "5ms", "100us", "1500ns", as in the range messages; snprintf-style. */
size_t vsched_format_duration(uint64_t ns, char *buf, size_t len);

/*
 * Policies come from the core's registry: ids 0..vsched_policy_count()-1,
 * sorted by name.  vsched_parse_policy returns false (and leaves *out
 * alone) on an unknown word.
 */
int vsched_policy_count(void);
bool vsched_parse_policy(const char *word, int *out);
const char *vsched_policy_name(int policy); /* "unknown" if out of range */
/* Every policy name, sorted, comma-separated ("ipi, ipi-prio, ..."). */
const char *vsched_policy_list(void);
/* A policy's pass names (NULL if out of range). */
int vsched_policy_pass_count(int policy);
const char *vsched_policy_pass_name(int policy, int pass);
/* "50ms", "100us", "2s", "1500ns", "2000000" (= ns).  On error returns
 * false and writes a message into err (if errlen > 0). */
bool vsched_parse_duration(const char *text, uint64_t *out_ns, char *err, size_t errlen);

/* Create / free.  Returns NULL with a message in err on invalid input
 * (0 pcpus, 0 vCPUs, ops NULL, ...).  ops is copied. */
VschedCore *vsched_core_new(const VschedConfig *cfg, int nr_vcpus, const VschedHostOps *ops,
                            void *opaque, char *err, size_t errlen);
void vsched_core_free(VschedCore *core);

/*
 * The gate.  True: vcpu holds a slot and may run guest code.  False: it is
 * queued; wait until the wake callback fires for it (or any other reason
 * to leave the wait), then call again.  A halted or stopped vCPU that wants
 * to run simply calls vsched_acquire() (its wake-up: it queues, ready).
 */
bool vsched_acquire(VschedCore *core, int vcpu);
/* Drop the slot (and/or queue entry); reason VSCHED_RELEASE_*. */
void vsched_release(VschedCore *core, int vcpu, int reason);
/* The same, but only if vcpu holds a slot or a queue place: a halted vCPU
 * passing the gate again and again costs no lock. */
void vsched_release_if_active(VschedCore *core, int vcpu, int reason);
/*
 * After vcpu left guest code (never from inside the PAUSE hook).  Runs the
 * spin decision if the detector fired (maybe handing the slot to a target),
 * then a due slice-expiry preemption (sampling preempted_in_kernel from
 * cpl).  Returns true if vcpu no longer holds a slot: go through the gate.
 */
bool vsched_after_exec(VschedCore *core, int vcpu, int cpl);
/* Kick holders whose slice is over while someone waits.  Returns the
 * absolute time (ns) at which to call again. */
uint64_t vsched_tick(VschedCore *core);

/* Hooks. */
/* PAUSE executed by vcpu at cpl; lock-free.  Returns true when this PAUSE
 * completed a spin (the next vsched_after_exec will decide). */
bool vsched_on_pause(VschedCore *core, int vcpu, int cpl);
/* Same with a caller-supplied timestamp in ns.  The detector compares a
 * vCPU's PAUSE times only with each other, so any monotonic ns clock
 * works, but do not mix it with vsched_on_pause() on one core: with
 * now_ns == NULL that reads an invariant-TSC clock (about CLOCK_MONOTONIC,
 * ~10 ns instead of clock_gettime's 20-30 ns on a VM). */
bool vsched_on_pause_at(VschedCore *core, int vcpu, int cpl, uint64_t now_ns);
/* MWAIT (idle): never a spin; ends any spin in progress. */
void vsched_on_mwait(VschedCore *core, int vcpu);
/* One IPI from src: dst[0..ndst) are the vCPUs that accept it (multicast:
 * one call with all of them; lowest priority: the chosen one).
 * delivery_mode = ICR[10:8], shorthand = ICR[19:18]. */
void vsched_on_ipi(VschedCore *core, int src, const int *dst, int ndst, int vector,
                   int delivery_mode, int shorthand);
void vsched_on_irq_accept(VschedCore *core, int vcpu, int vector);
/* vector: the EOI'd vector (highest ISR bit), or -1 if unknown. */
void vsched_on_eoi(VschedCore *core, int vcpu, int vector);
/*
 * The guest's KVM_HC_SCHED_YIELD from vcpu to target (vCPU index; any
 * value outside the VM is a miss); lock-free, on vcpu's own thread.  The
 * next vsched_after_exec(vcpu) hands vcpu's slot to target if target is
 * queued for one, before any spin decision.
 */
void vsched_pv_yield(VschedCore *core, int vcpu, int target);
/* vCPU reset: forget its IPI state (series: kvm_vcpu_reset_ipi_context). */
void vsched_vcpu_reset(VschedCore *core, int vcpu);
/*
 * vCPU hotplug.  vsched_vcpu_plug: vcpu (0..nr_vcpus-1) may run from now
 * on; on a shared pool the VM's range of pool ids grows to vcpu + 1, which
 * needs the ids right after it free (false + message naming what is free).
 * vsched_vcpu_unplug: before its CPUState goes: its slot and queue place
 * go to others; the core never names it to ops->kick/wake again unless it
 * runs again (a later plug of the same number).
 */
bool vsched_vcpu_plug(VschedCore *core, int vcpu, char *err, size_t errlen);
void vsched_vcpu_unplug(VschedCore *core, int vcpu);

/*
 * Run-time settings (thread-safe): the rows of the settings table marked
 * runtime, by name ("ple-gap"), as a uint64_t: a bool 0 or 1, a policy id
 * (vsched_parse_policy), a duration in ns.  vsched_setting_set returns
 * false, changing nothing, for a name that is not a run-time setting or a
 * value its row does not admit (range as vsched_setting_check); the glue
 * checks first to give the message.
 */
bool vsched_setting_set(VschedCore *core, const char *name, uint64_t value);
bool vsched_setting_get(VschedCore *core, const char *name, uint64_t *out);

/* Introspection. */
#define VSCHED_INFO_MAX_LIST 8
typedef struct VschedVcpuInfo {
    const char *state;       /* "stopped", "halted", "runnable-queued", "running" */
    int state_id;            /* VSCHED_STATE_* */
    bool holds_slot;
    int slot;                /* -1 unless holds_slot */
    uint64_t slot_deadline_ns;
    bool preempted;
    bool ready;
    bool preempted_in_kernel;
    bool in_spin_loop;
    bool dy_eligible;
    bool spin_pending;       /* detector fired, decision not run yet */
    uint64_t spin_window_ns;
    uint64_t pause_events;
    uint64_t spins_detected;
    /* the series' view */
    int last_ipi_sender;     /* as receiver; -1 none */
    int last_ipi_receiver;   /* as sender; -1 none */
    bool series_pending_ipi;
    /* our view (live entries only) */
    int nr_pending_ipis;     /* IPIs pending at this vCPU (not EOI'd) */
    int pending_from[VSCHED_INFO_MAX_LIST];
    int pending_vector[VSCHED_INFO_MAX_LIST];
    int nr_receivers;        /* vCPUs holding an IPI from this one */
    int receivers[VSCHED_INFO_MAX_LIST];
} VschedVcpuInfo;

bool vsched_vcpu_info(VschedCore *core, int vcpu, VschedVcpuInfo *out);
/*
 * Steal time (KVM's run_delay): the ns vcpu spent runnable in the queue,
 * summed over the waits that ended with a slot (halted and stopped time
 * are not in it), in the core's time base.  Lock-free: call it on vcpu's
 * own thread right after vsched_acquire() returned true.
 */
uint64_t vsched_vcpu_steal_ns(VschedCore *core, int vcpu);
/* One-line JSON of all counters, NUL-terminated, truncated to len.
 * Returns the length needed without the NUL (snprintf style). */
size_t vsched_counters_json(VschedCore *core, char *buf, size_t len);
int vsched_counter_count(void);
const char *vsched_counter_name(int i);        /* NULL if out of range */
const char *vsched_counter_description(int i); /* NULL if out of range */
uint64_t vsched_counter_value(VschedCore *core, int i);
const char *vsched_trace_event_name(int event); /* NULL if out of range */

/*
 * Shared pools: several QEMU processes (VMs) naming the same pool share its
 * slots and one FIFO run queue.  See docs/design/shared-pool.rst.
 *
 * vsched_core_new_shared() joins pool `pool_name` (creating
 * /dev/shm/vsched-<uid>-<pool_name>, mode 0600, if it does not exist) with
 * nr_vcpus vCPUs.  Returns NULL with a message in err when refused: bad
 * name, a pool of another uid, another mode, a bad magic, another layout
 * version, a corrupt or truncated file, another pcpus (both numbers are
 * named), a full pool.  A refused pool file is never written.  A stale
 * pool (all its members dead) is reinitialised.  ops->now_ns must be NULL
 * (all members compare CLOCK_MONOTONIC deadlines).  The slice is the
 * pool's: the first VM's cfg->slice_ns.  Everything else (policy, PLE,
 * IPI tracking, knobs) stays per VM, and vCPU numbers stay the VM's own
 * (0..nr_vcpus-1).  Directed yield only hands a slot to a vCPU of the same
 * VM.
 *
 * Wakes and kicks for a vCPU of this VM decided by another process arrive
 * in this VM's mailbox.  The glue must run
 *     vsched_pool_mailbox_run(core)
 * in a thread of its own (it blocks; it calls ops->wake/ops->kick for the
 * posted vCPUs from that thread, never holding the core's lock, and checks
 * the other members' liveness every 20 ms), and at exit call
 *     vsched_pool_mailbox_stop(core); join that thread; vsched_core_free(core);
 * vsched_core_free() leaves the pool: this VM's slots and queue entries go
 * to the others and the last member removes the pool.  Instead of
 * mailbox_run, a glue loop may call vsched_pool_mailbox_dispatch().
 * vsched_tick() also reaps dead members (at most every 20 ms).
 *
 * On a private core (vsched_core_new) the mailbox functions return at once
 * and vsched_pool_info reports one member and shared = false.
 */
#define VSCHED_POOL_NAME_MAX 64
#define VSCHED_POOL_MAX_MEMBERS 64

VschedCore *vsched_core_new_shared(const VschedConfig *cfg, const char *pool_name, int nr_vcpus,
                                   const VschedHostOps *ops, void *opaque, char *err,
                                   size_t errlen);
/* The same, reserving pool ids only for vCPUs 0..nr_present-1 (the VM's
 * present vCPUs; hotplugged ones: vsched_vcpu_plug). */
VschedCore *vsched_core_new_shared_present(const VschedConfig *cfg, const char *pool_name,
                                           int nr_vcpus, int nr_present,
                                           const VschedHostOps *ops, void *opaque, char *err,
                                           size_t errlen);
/*
 * The same in a given time base (NULL: real time): the pool stores its
 * creator's and refuses a VM of another one (a message naming both).
 * With virtual_time, ops may give now_ns (the virtual clock: all members
 * run on one).
 */
typedef struct VschedTimeBase {
    bool virtual_time;
    int icount_shift;
    uint64_t quantum;
} VschedTimeBase;
VschedCore *vsched_core_new_shared_timed(const VschedConfig *cfg, const char *pool_name,
                                         int nr_vcpus, int nr_present,
                                         const VschedHostOps *ops, void *opaque,
                                         const VschedTimeBase *tb, char *err, size_t errlen);
bool vsched_core_is_shared(VschedCore *core);
/* 1..64 characters of [A-Za-z0-9._-] (no '/'); false + message otherwise. */
bool vsched_pool_name_valid(const char *name, char *err, size_t errlen);
/* Blocks delivering mailbox wakes/kicks until vsched_pool_mailbox_stop(). */
void vsched_pool_mailbox_run(VschedCore *core);
/* From any thread (also a signal-free exit path): makes mailbox_run return. */
void vsched_pool_mailbox_stop(VschedCore *core);
/* One round: deliver what is pending, waiting up to timeout_ns (at most
 * 20 ms) if nothing is; returns the number of wakes+kicks delivered. */
int vsched_pool_mailbox_dispatch(VschedCore *core, uint64_t timeout_ns);
/* Check the other members' liveness now and reap the dead; returns how
 * many were reaped.  (mailbox_run and vsched_tick do this every 20 ms.) */
int vsched_pool_poll(VschedCore *core);

/* Pool-wide counts since the pool was created; the pool's shared memory
 * keeps them in this form (shared_pool.h). */
typedef struct VschedPoolStats {
    uint64_t members_joined;
    uint64_t members_left;
    uint64_t members_reaped;
    uint64_t slots_reclaimed;
    uint64_t owner_dead_recoveries;
    uint64_t stale_recoveries;
} VschedPoolStats;

typedef struct VschedPoolInfo {
    bool shared;
    char name[VSCHED_POOL_NAME_MAX + 1]; /* "" for a private pool */
    int slots;
    int free_slots;
    int queue_len;          /* vCPUs of all VMs waiting for a slot */
    int members;
    int self;               /* this VM's member index */
    uint64_t slice_ns;
    VschedPoolStats stats;  /* zero for a private pool */
} VschedPoolInfo;

typedef struct VschedPoolMember {
    int index;
    int pid;
    bool self;
    int nr_vcpus;
    int base;               /* its first pool id (its vCPUs: base..+nr_vcpus) */
    int slots_held;         /* now */
    int queued;             /* vCPUs in the run queue now */
    uint64_t slot_time_ns;  /* since it joined, incl. grants running now */
    uint64_t overrun_ns;    /* part of slot_time_ns held past a slot's
                             * deadline (late to leave guest code, e.g. the
                             * host descheduled the vCPU thread) */
    double share;           /* slot_time_ns / sum over current members */
    uint64_t grants;
    uint64_t slot_waits;    /* waits in the queue that ended with a slot */
    uint64_t slot_wait_ns;
    uint64_t slot_wait_max_ns;
    uint64_t joined_ns;     /* when it joined, in the pool's clock */
} VschedPoolMember;

/* False (and *out all zero) if there is no pool information. */
bool vsched_pool_info(VschedCore *core, VschedPoolInfo *out);
/* i in 0..VSCHED_POOL_MAX_MEMBERS-1; false if entry i is not a member. */
bool vsched_pool_member(VschedCore *core, int i, VschedPoolMember *out);

#ifdef __cplusplus
}
#endif

#endif /* VSCHED_CORE_H */
