/*
 * vsched: the -accel tcg properties (and their refusal on -accel kvm).
 *
 * Values are checked when set, so a wrong one stops QEMU at start-up with
 * a message naming the property.  relaxed-boost, ipi-tracking, ipi-window,
 * directed-yield, ple-gap and ple-window may change at run time through
 * qom-set /machine/accel; the others are fixed once the VM starts.
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

static bool fixed_once_running(const char *name, Error **errp)
{
    if (vsched_core) {
        error_setg(errp, "vsched: '%s' cannot change while the VM runs", name);
        return false;
    }
    return true;
}

static char *format_duration(uint64_t ns)
{
    static const struct { const char *unit; uint64_t ns; } units[] = {
        { "s", 1000000000ULL }, { "ms", 1000000 }, { "us", 1000 },
    };

    for (int i = 0; i < ARRAY_SIZE(units); i++) {
        if (ns && ns % units[i].ns == 0) {
            return g_strdup_printf("%" PRIu64 "%s", ns / units[i].ns, units[i].unit);
        }
    }
    return g_strdup_printf("%" PRIu64 "ns", ns);
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
    if (*ns == 0) {
        error_setg(errp, "Parameter '%s' must be greater than zero", name);
        return false;
    }
    return true;
}

static bool get_vcpu_sched(Object *obj, Error **errp)
{
    return vsched_settings.enabled;
}

static void set_vcpu_sched(Object *obj, bool value, Error **errp)
{
    if (!fixed_once_running("vcpu-sched", errp)) {
        return;
    }
    vsched_settings.enabled = value;
    trace_vsched_set("vcpu-sched", value ? "on" : "off");
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
    if (value < 1 || value > 4096) {
        error_setg(errp, "Parameter 'pcpus' must be between 1 and 4096");
        return;
    }
    cfg()->pcpus = value;
    vsched_settings.pcpus_set = true;
}

static char *get_policy(Object *obj, Error **errp)
{
    int policy = vsched_core ? vsched_get_policy(vsched_core) : cfg()->policy;

    return g_strdup(vsched_policy_name(policy));
}

static void set_policy(Object *obj, const char *value, Error **errp)
{
    int policy;

    if (!vsched_parse_policy(value, &policy)) {
        error_setg(errp, "Parameter 'directed-yield' expects none, vanilla, "
                   "ipi or ipi-prio (got '%s')", value);
        return;
    }
    cfg()->policy = policy;
    if (vsched_core) {
        vsched_set_policy(vsched_core, policy);
    }
    trace_vsched_set("directed-yield", value);
}

static bool get_relaxed_boost(Object *obj, Error **errp)
{
    return vsched_core ? vsched_get_relaxed_boost(vsched_core)
                       : cfg()->relaxed_boost;
}

static void set_relaxed_boost(Object *obj, bool value, Error **errp)
{
    cfg()->relaxed_boost = value;
    if (vsched_core) {
        vsched_set_relaxed_boost(vsched_core, value);
    }
    trace_vsched_set("relaxed-boost", value ? "on" : "off");
}

static bool get_ipi_tracking(Object *obj, Error **errp)
{
    return vsched_core ? vsched_get_ipi_tracking(vsched_core)
                       : cfg()->ipi_tracking;
}

static void set_ipi_tracking(Object *obj, bool value, Error **errp)
{
    cfg()->ipi_tracking = value;
    if (vsched_core) {
        vsched_set_ipi_tracking(vsched_core, value);
    }
    trace_vsched_set("ipi-tracking", value ? "on" : "off");
}

/* The duration properties: one getter/setter pair, told apart by name. */
static uint64_t *duration_field(const char *name)
{
    VschedConfig *c = cfg();

    if (!strcmp(name, "slice")) {
        return &c->slice_ns;
    } else if (!strcmp(name, "ipi-window")) {
        return &c->ipi_window_ns;
    } else if (!strcmp(name, "ple-gap")) {
        return &c->ple_gap_ns;
    }
    return &c->ple_window_ns;
}

static void get_duration(Object *obj, Visitor *v, const char *name,
                         void *opaque, Error **errp)
{
    g_autofree char *text = format_duration(*duration_field(name));

    visit_type_str(v, name, &text, errp);
}

static void apply_duration(const char *name, uint64_t ns)
{
    if (!strcmp(name, "ipi-window")) {
        vsched_set_ipi_window_ns(vsched_core, ns);
    } else if (!strcmp(name, "ple-gap")) {
        vsched_set_ple_gap_ns(vsched_core, ns);
    } else if (!strcmp(name, "ple-window")) {
        vsched_set_ple_window_ns(vsched_core, ns);
    }
}

static void set_duration(Object *obj, Visitor *v, const char *name,
                         void *opaque, Error **errp)
{
    g_autofree char *text = NULL;
    uint64_t ns;

    if (!strcmp(name, "slice") && !fixed_once_running(name, errp)) {
        return;
    }
    if (!visit_type_str(v, name, &text, errp) ||
        !parse_duration(name, text, &ns, errp)) {
        return;
    }
    *duration_field(name) = ns;
    if (vsched_core) {
        apply_duration(name, ns);
    }
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

static void add_duration(ObjectClass *oc, const char *name, const char *desc)
{
    object_class_property_add(oc, name, "str", get_duration, set_duration,
                              NULL, NULL);
    object_class_property_set_description(oc, name, desc);
}

void vsched_tcg_accel_class_init(ObjectClass *oc)
{
    vsched_settings_init();
    vsched_register_start();

    object_class_property_add_bool(oc, "vcpu-sched", get_vcpu_sched,
                                   set_vcpu_sched);
    object_class_property_set_description(oc, "vcpu-sched",
        "Run vCPUs only while they hold one of 'pcpus' slots (vsched)");
    object_class_property_add(oc, "pcpus", "uint32", get_pcpus, set_pcpus,
                              NULL, NULL);
    object_class_property_set_description(oc, "pcpus",
        "vsched: number of pCPU slots (default: host CPUs)");
    add_duration(oc, "slice", "vsched: time slice of a slot holder");
    object_class_property_add_str(oc, "directed-yield", get_policy,
                                  set_policy);
    object_class_property_set_description(oc, "directed-yield",
        "vsched: yield policy on a PAUSE spin: none, vanilla, ipi, ipi-prio");
    object_class_property_add_bool(oc, "relaxed-boost", get_relaxed_boost,
                                   set_relaxed_boost);
    object_class_property_set_description(oc, "relaxed-boost",
        "vsched: fall back to any preempted vCPU when the strict pass fails");
    object_class_property_add_bool(oc, "ipi-tracking", get_ipi_tracking,
                                   set_ipi_tracking);
    object_class_property_set_description(oc, "ipi-tracking",
        "vsched: record IPIs for the directed-yield policies");
    add_duration(oc, "ipi-window", "vsched: how long a recorded IPI counts");
    add_duration(oc, "ple-gap",
                 "vsched: PAUSEs closer than this continue a spin");
    add_duration(oc, "ple-window",
                 "vsched: a spin this long triggers a yield decision");
    object_class_property_add_str(oc, "pool", get_pool, set_pool);
    object_class_property_set_description(oc, "pool",
        "vsched: share the slots with every VM naming this pool");
    object_class_property_add_str(oc, "stats-file", get_stats_file,
                                  set_stats_file);
    object_class_property_set_description(oc, "stats-file",
        "vsched: write the counters as JSON to this file at exit");
    vsched_vtime_class_init(oc);
}

/* KVM keeps the APIC in the kernel and QEMU 10.0 gets no PAUSE exit. */
static void refuse_on_kvm(Object *obj, Visitor *v, const char *name,
                          void *opaque, Error **errp)
{
    error_setg(errp, "Parameter '%s' needs -accel tcg: vsched does not "
               "support KVM yet (KVM keeps the APIC in the kernel and QEMU "
               "sees no PAUSE exits)", name);
}

void vsched_kvm_accel_class_init(ObjectClass *oc)
{
    static const char *const names[] = {
        "vcpu-sched", "pcpus", "slice", "directed-yield", "relaxed-boost",
        "ipi-tracking", "ipi-window", "ple-gap", "ple-window", "pool",
        "stats-file", "time", "quantum",
    };

    for (int i = 0; i < ARRAY_SIZE(names); i++) {
        object_class_property_add(oc, names[i], "str", NULL, refuse_on_kvm,
                                  NULL, NULL);
        object_class_property_set_description(oc, names[i],
            "vsched (TCG only): refused with KVM");
    }
}

void vsched_accel_help(QemuOpts *opts, ObjectClass *oc)
{
    if (qemu_opt_has_help_opt(opts)) {
        type_print_class_properties(object_class_get_name(oc));
        exit(0);
    }
}
