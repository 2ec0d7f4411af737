/*
 * vsched: the -accel tcg properties (and their refusal on -accel kvm).
 *
 * The settings table of the core (vsched_setting_*: name, type, range,
 * run time or not, help) gives every property its description, its range
 * check and whether qom-set /machine/accel may change it while the VM
 * runs.  Values are checked when set, by the same setter at start-up and
 * at run time, so a wrong one gets the same message naming the property
 * either way (and stops QEMU at start-up).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qemu/option.h"
#include "qom/object.h"
#include "accel/vsched.h"
#include "vsched-internal.h"
#include "vsched-vtime.h"
#include "trace.h"

static VschedConfig *cfg(void)
{
    vsched_settings_init();
    return &vsched_settings.cfg;
}

/* Settings the table marks "fixed at start" refuse to change later. */
static bool fixed_once_running(const char *name, Error **errp)
{
    const VschedSetting *s = vsched_setting_find(name);

    if (vsched_core && (!s || !s->runtime)) {
        error_setg(errp, "vsched: '%s' cannot change while the VM runs", name);
        return false;
    }
    return true;
}

/* The table's range, with its message. */
static bool in_range(const char *name, uint64_t value, Error **errp)
{
    char err[160];

    if (!vsched_setting_check(vsched_setting_find(name), value, err,
                              sizeof(err))) {
        error_setg(errp, "%s", err);
        return false;
    }
    return true;
}

static char *format_duration(uint64_t ns)
{
    char buf[32];

    vsched_format_duration(ns, buf, sizeof(buf));
    return g_strdup(buf);
}

static bool parse_duration(const char *name, const char *value, uint64_t *ns,
                           Error **errp)
{
    char err[160];

    if (!vsched_parse_duration(value, ns, err, sizeof(err))) {
        error_setg(errp, "Parameter '%s' expects a duration such as 5ms, "
                   "100us or 2s: %s", name, err);
        return false;
    }
    return in_range(name, *ns, errp);
}

/* The running core's value of a run-time setting, else the configured one. */
static uint64_t current(const char *name, uint64_t configured)
{
    uint64_t value;

    if (vsched_core && vsched_setting_get(vsched_core, name, &value)) {
        return value;
    }
    return configured;
}

/* A run-time setting reaches the running core too (value checked above). */
static void apply(const char *name, uint64_t value)
{
    if (vsched_core) {
        vsched_setting_set(vsched_core, name, value);
    }
}

static void get_pcpus(Object *obj, Visitor *v, const char *name, void *opaque,
                      Error **errp)
{
    uint32_t value = cfg()->pcpus;

    visit_type_uint32(v, name, &value, errp);
}

static void set_pcpus(Object *obj, Visitor *v, const char *name, void *opaque,
                      Error **errp)
{
    uint32_t value;

    if (!fixed_once_running(name, errp) ||
        !visit_type_uint32(v, name, &value, errp)) {
        return;
    }
    if (!in_range(name, value, errp)) {
        return;
    }
    cfg()->pcpus = value;
    vsched_settings.pcpus_set = true;
}

static char *get_policy(Object *obj, Error **errp)
{
    return g_strdup(vsched_policy_name(current("directed-yield",
                                               cfg()->policy)));
}

static void set_policy(Object *obj, const char *value, Error **errp)
{
    int policy;

    if (!fixed_once_running("directed-yield", errp)) {
        return;
    }
    if (!vsched_parse_policy(value, &policy)) {
        error_setg(errp, "Parameter 'directed-yield' expects one of %s "
                   "(got '%s')", vsched_policy_list(), value);
        return;
    }
    cfg()->policy = policy;
    apply("directed-yield", policy);
    trace_vsched_set("directed-yield", value);
}

/* The bool settings: one getter/setter pair, told apart by name. */
static bool *bool_field(const char *name)
{
    VschedConfig *c = cfg();

    if (!strcmp(name, "vcpu-sched")) {
        return &vsched_settings.enabled;
    } else if (!strcmp(name, "steal-time")) {
        return &vsched_settings.steal_time;
    } else if (!strcmp(name, "pv-tlb-flush")) {
        return &vsched_settings.pv_tlb_flush;
    } else if (!strcmp(name, "pv-sched-yield")) {
        return &vsched_settings.pv_sched_yield;
    } else if (!strcmp(name, "relaxed-boost")) {
        return &c->relaxed_boost;
    } else if (!strcmp(name, "ipi-tracking")) {
        return &c->ipi_tracking;
    } else if (!strcmp(name, "halt-handoff")) {
        return &c->halt_handoff;
    } else if (!strcmp(name, "ipi-lift")) {
        return &c->ipi_lift;
    } else if (!strcmp(name, "callfn-first")) {
        return &c->callfn_first;
    } else if (!strcmp(name, "yield-lift")) {
        return &c->yield_lift;
    } else if (!strcmp(name, "wake-preempt")) {
        return &c->wake_preempt;
    } else if (!strcmp(name, "wake-spinners")) {
        return &c->wake_spinners;
    } else if (!strcmp(name, "wake-queued")) {
        return &c->wake_queued;
    } else if (!strcmp(name, "yield-lend")) {
        return &c->yield_lend;
    }
    return NULL;
}

static void get_bool(Object *obj, Visitor *v, const char *name, void *opaque,
                     Error **errp)
{
    bool on = current(name, *bool_field(name));

    visit_type_bool(v, name, &on, errp);
}

static void set_bool(Object *obj, Visitor *v, const char *name, void *opaque,
                     Error **errp)
{
    bool on;

    if (!visit_type_bool(v, name, &on, errp) ||
        !fixed_once_running(name, errp)) {
        return;
    }
    *bool_field(name) = on;
    apply(name, on);
    trace_vsched_set(name, on ? "on" : "off");
}

/* The duration settings: one getter/setter pair, told apart by name. */
static uint64_t *duration_field(const char *name)
{
    VschedConfig *c = cfg();

    if (!strcmp(name, "slice")) {
        return &c->slice_ns;
    } else if (!strcmp(name, "ipi-window")) {
        return &c->ipi_window_ns;
    } else if (!strcmp(name, "ple-gap")) {
        return &c->ple_gap_ns;
    } else if (!strcmp(name, "ple-window")) {
        return &c->ple_window_ns;
    } else if (!strcmp(name, "wake-granularity")) {
        return &c->wake_granularity_ns;
    } else if (!strcmp(name, "preempt-delay")) {
        return &c->preempt_delay_ns;
    }
    return NULL;
}

static void get_duration(Object *obj, Visitor *v, const char *name,
                         void *opaque, Error **errp)
{
    g_autofree char *text = format_duration(*duration_field(name));

    visit_type_str(v, name, &text, errp);
}

static void set_duration(Object *obj, Visitor *v, const char *name,
                         void *opaque, Error **errp)
{
    g_autofree char *text = NULL;
    uint64_t ns;

    if (!fixed_once_running(name, errp)) {
        return;
    }
    if (!visit_type_str(v, name, &text, errp) ||
        !parse_duration(name, text, &ns, errp)) {
        return;
    }
    *duration_field(name) = ns;
    apply(name, ns);
    trace_vsched_set(name, text);
}

static char *get_stats_file(Object *obj, Error **errp)
{
    return g_strdup(vsched_settings.stats_file ?: "");
}

static void set_stats_file(Object *obj, const char *value, Error **errp)
{
    if (!fixed_once_running("stats-file", errp)) {
        return;
    }
    if (!*value) {
        error_setg(errp, "Parameter 'stats-file' expects a file name");
        return;
    }
    g_free(vsched_settings.stats_file);
    vsched_settings.stats_file = g_strdup(value);
}

static char *get_pool(Object *obj, Error **errp)
{
    return g_strdup(vsched_settings.pool ?: "");
}

static void set_pool(Object *obj, const char *value, Error **errp)
{
    char err[160];

    if (!fixed_once_running("pool", errp)) {
        return;
    }
    if (!vsched_pool_name_valid(value, err, sizeof(err))) {
        error_setg(errp, "Parameter 'pool' expects a pool name: %s", err);
        return;
    }
    g_free(vsched_settings.pool);
    vsched_settings.pool = g_strdup(value);
}

/* Virtual time's settings (vsched-vtime.c reads them at start-up). */
static char *get_time(Object *obj, Error **errp)
{
    return g_strdup(vsched_vtime.virtual_time ? "virtual" : "real");
}

static void set_time(Object *obj, const char *value, Error **errp)
{
    if (!fixed_once_running("time", errp)) {
        return;
    }
    if (!strcmp(value, "real")) {
        vsched_vtime.virtual_time = false;
    } else if (!strcmp(value, "virtual")) {
        vsched_vtime.virtual_time = true;
    } else {
        error_setg(errp, "Parameter 'time' expects real or virtual "
                   "(got '%s')", value);
        return;
    }
    trace_vsched_set("time", value);
}

/* quantum and pool-members: the value, and whether it was given. */
static uint64_t *vtime_count_field(const char *name, bool **given)
{
    if (!strcmp(name, "quantum")) {
        *given = &vsched_vtime.quantum_set;
        return &vsched_vtime.quantum;
    }
    *given = &vsched_vtime.pool_members_set;
    return &vsched_vtime.pool_members;
}

static void get_vtime_count(Object *obj, Visitor *v, const char *name,
                            void *opaque, Error **errp)
{
    bool *given;
    uint64_t value = *vtime_count_field(name, &given);

    visit_type_uint64(v, name, &value, errp);
}

static void set_vtime_count(Object *obj, Visitor *v, const char *name,
                            void *opaque, Error **errp)
{
    bool *given;
    uint64_t *field = vtime_count_field(name, &given);
    uint64_t value;

    if (!fixed_once_running(name, errp) ||
        !visit_type_uint64(v, name, &value, errp) ||
        !in_range(name, value, errp)) {
        return;
    }
    *field = value;
    *given = true;
}

/*
 * The bool and duration rows of the settings table get their property
 * from it; the others, each with its own parsing, are listed below.
 */
static void add_table_driven(ObjectClass *oc, const VschedSetting *s)
{
    if (s->type == VSCHED_SETTING_BOOL) {
        g_assert(bool_field(s->name));
        object_class_property_add(oc, s->name, "bool", get_bool, set_bool,
                                  NULL, NULL);
    } else if (s->type == VSCHED_SETTING_DURATION) {
        g_assert(duration_field(s->name));
        object_class_property_add(oc, s->name, "str", get_duration,
                                  set_duration, NULL, NULL);
    }
}

/* Descriptions (help, range, run time or not) from the settings table. */
static void describe_settings(ObjectClass *oc)
{
    for (int i = 0; i < vsched_setting_count(); i++) {
        const VschedSetting *s = vsched_setting(i);

        g_assert(object_class_property_find(oc, s->name));
        object_class_property_set_description(oc, s->name,
                                              vsched_setting_description(s));
    }
}

void vsched_tcg_accel_class_init(ObjectClass *oc)
{
    vsched_settings_init();
    vsched_register_start();

    for (int i = 0; i < vsched_setting_count(); i++) {
        add_table_driven(oc, vsched_setting(i));
    }
    object_class_property_add(oc, "pcpus", "uint32", get_pcpus, set_pcpus,
                              NULL, NULL);
    object_class_property_add_str(oc, "directed-yield", get_policy,
                                  set_policy);
    object_class_property_add_str(oc, "pool", get_pool, set_pool);
    object_class_property_add_str(oc, "stats-file", get_stats_file,
                                  set_stats_file);
    object_class_property_add_str(oc, "time", get_time, set_time);
    object_class_property_add(oc, "quantum", "uint64", get_vtime_count,
                              set_vtime_count, NULL, NULL);
    object_class_property_add(oc, "pool-members", "uint64", get_vtime_count,
                              set_vtime_count, NULL, NULL);
    describe_settings(oc);
}

/* KVM keeps the APIC in the kernel and QEMU 10.0 gets no PAUSE exit. */
static void refuse_on_kvm(Object *obj, Visitor *v, const char *name,
                          void *opaque, Error **errp)
{
    error_setg(errp, "Parameter '%s' needs -accel tcg: vsched does not "
               "support KVM yet (KVM keeps the APIC in the kernel and QEMU "
               "sees no PAUSE exits)", name);
}

static void add_refused_on_kvm(ObjectClass *oc, const char *name)
{
    object_class_property_add(oc, name, "str", NULL, refuse_on_kvm,
                              NULL, NULL);
    object_class_property_set_description(oc, name,
        "vsched (TCG only): refused with KVM");
}

void vsched_kvm_accel_class_init(ObjectClass *oc)
{
    for (int i = 0; i < vsched_setting_count(); i++) {
        add_refused_on_kvm(oc, vsched_setting(i)->name);
    }
}
