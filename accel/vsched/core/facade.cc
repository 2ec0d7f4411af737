/*
 * vsched core: the C facade.  Every entry point catches everything: no
 * exception crosses into C.  Errors become return values.
 */
#include "vsched-core.h"

#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "config.h"
#include "facade_internal.h"
#include "settings.h"

namespace {

using vsched::Core;

template <typename T, typename F>
T guarded(T fallback, F &&f) noexcept
{
    try {
        return f();
    } catch (...) {
        return fallback;
    }
}

template <typename F>
void guarded_void(F &&f) noexcept
{
    try {
        f();
    } catch (...) {
    }
}

void copy_err(char *err, size_t errlen, const std::string &msg)
{
    if (err && errlen > 0) {
        std::snprintf(err, errlen, "%s", msg.c_str());
    }
}

vsched::Config to_cpp(const VschedConfig &c)
{
    vsched::Config o;
    static_cast<VschedConfig &>(o) = c; /* the same fields */
    return o;
}

/*
 * How a running core reads and changes each run-time row of the settings
 * table (settings.cc), as a uint64_t: bool 0/1, policy id, ns.  The unit
 * tests check that these are exactly the rows the table marks run time.
 */
struct RuntimeSetting {
    const char *name;
    uint64_t (*get)(const Core &);
    void (*set)(Core &, uint64_t);
};

/* A Core getter/setter pair; the value converts to the getter's type. */
template <auto Get, auto Set>
constexpr RuntimeSetting accessor(const char *name)
{
    using T = std::invoke_result_t<decltype(Get), const Core &>;
    return {name, [](const Core &c) { return static_cast<uint64_t>((c.*Get)()); },
            [](Core &c, uint64_t v) { (c.*Set)(static_cast<T>(v)); }};
}

using vsched::Mechanism;

/* One bit of the mechanisms word (Core::set_mechanism). */
template <Mechanism M>
constexpr RuntimeSetting mechanism(const char *name)
{
    return {name, [](const Core &c) -> uint64_t { return c.mechanism(M); },
            [](Core &c, uint64_t v) { c.set_mechanism(M, v != 0); }};
}

constexpr RuntimeSetting kRuntimeSettings[] = {
    accessor<&Core::policy, &Core::set_policy>("directed-yield"),
    accessor<&Core::relaxed_boost, &Core::set_relaxed_boost>("relaxed-boost"),
    mechanism<Mechanism::kHaltHandoff>("halt-handoff"),
    mechanism<Mechanism::kIpiLift>("ipi-lift"),
    mechanism<Mechanism::kCallfnFirst>("callfn-first"),
    mechanism<Mechanism::kYieldLift>("yield-lift"),
    mechanism<Mechanism::kWakePreempt>("wake-preempt"),
    accessor<&Core::wake_granularity_ns, &Core::set_wake_granularity_ns>("wake-granularity"),
    mechanism<Mechanism::kWakeSpinnerFirst>("wake-spinners"),
    mechanism<Mechanism::kWakeQueued>("wake-queued"),
    accessor<&Core::preempt_delay_ns, &Core::set_preempt_delay_ns>("preempt-delay"),
    mechanism<Mechanism::kYieldLend>("yield-lend"),
    accessor<&Core::ipi_tracking, &Core::set_ipi_tracking>("ipi-tracking"),
    accessor<&Core::ipi_window_ns, &Core::set_ipi_window_ns>("ipi-window"),
    accessor<&Core::ple_gap_ns, &Core::set_ple_gap_ns>("ple-gap"),
    accessor<&Core::ple_window_ns, &Core::set_ple_window_ns>("ple-window"),
};

const RuntimeSetting *runtime_setting(const char *name)
{
    for (const auto &r : kRuntimeSettings) {
        if (name && std::strcmp(name, r.name) == 0) {
            return &r;
        }
    }
    return nullptr;
}

/* What the table's row admits: its type, its range. */
bool valid_value(const char *name, uint64_t v)
{
    const VschedSetting *row = vsched::find_setting(name);
    if (!row || !row->runtime) {
        return false;
    }
    switch (row->type) {
    case VSCHED_SETTING_BOOL:
        return v <= 1;
    case VSCHED_SETTING_POLICY:
        return v < static_cast<uint64_t>(vsched::policy_count());
    default:
        return vsched::check_setting(*row, v, nullptr);
    }
}

} // namespace

extern "C" {

void vsched_config_defaults(VschedConfig *cfg)
{
    if (!cfg) {
        return;
    }
    *cfg = vsched::Config(); /* the defaults live in Config */
}

int vsched_setting_count(void)
{
    return static_cast<int>(vsched::settings().size());
}

const VschedSetting *vsched_setting(int i)
{
    auto all = vsched::settings();
    return i >= 0 && i < static_cast<int>(all.size()) ? &all[i] : nullptr;
}

const VschedSetting *vsched_setting_find(const char *name)
{
    return name ? vsched::find_setting(name) : nullptr;
}

const char *vsched_setting_description(const VschedSetting *s)
{
    auto all = vsched::settings();
    static const std::vector<std::string> desc = [&] {
        std::vector<std::string> d;
        for (const auto &row : all) {
            d.push_back(vsched::setting_description(row));
        }
        return d;
    }();
    if (!s || s < all.data() || s >= all.data() + all.size()) {
        return "";
    }
    return desc[s - all.data()].c_str();
}

bool vsched_setting_check(const VschedSetting *s, uint64_t value, char *err, size_t errlen)
{
    return guarded(false, [&] {
        std::string msg;
        if (!s) {
            copy_err(err, errlen, "no such setting");
            return false;
        }
        if (!vsched::check_setting(*s, value, &msg)) {
            copy_err(err, errlen, msg);
            return false;
        }
        return true;
    });
}

size_t vsched_format_duration(uint64_t ns, char *buf, size_t len)
{
    std::string d = vsched::format_duration(ns);
    if (buf && len > 0) {
        std::snprintf(buf, len, "%s", d.c_str());
    }
    return d.size();
}

bool vsched_parse_policy(const char *word, int *out)
{
    if (!word || !out) {
        return false;
    }
    vsched::PolicyId k;
    if (!vsched::parse_policy(word, &k)) {
        return false;
    }
    *out = static_cast<int>(k);
    return true;
}

const char *vsched_policy_name(int policy)
{
    return vsched::policy_name(static_cast<vsched::PolicyId>(policy));
}

int vsched_policy_count(void)
{
    return vsched::policy_count();
}

const char *vsched_policy_list(void)
{
    static const std::string list = vsched::policy_list(", ");
    return list.c_str();
}

int vsched_policy_pass_count(int policy)
{
    return vsched::policy_pass_count(static_cast<vsched::PolicyId>(policy));
}

const char *vsched_policy_pass_name(int policy, int pass)
{
    return vsched::policy_pass_name(static_cast<vsched::PolicyId>(policy), pass);
}

bool vsched_parse_duration(const char *text, uint64_t *out_ns, char *err, size_t errlen)
{
    return guarded(false, [&] {
        if (!text || !out_ns) {
            copy_err(err, errlen, "no duration given");
            return false;
        }
        std::string msg;
        if (!vsched::parse_duration_ns(text, out_ns, &msg)) {
            copy_err(err, errlen, msg);
            return false;
        }
        return true;
    });
}

namespace {
VschedCore *core_new(const VschedConfig *cfg, const char *pool, int nr_vcpus,
                     const VschedHostOps *ops, void *opaque, char *err, size_t errlen,
                     const VschedTimeBase *tb = nullptr, int nr_present = 0)
{
    try {
        if (!cfg) {
            copy_err(err, errlen, "vsched: no configuration");
            return nullptr;
        }
        if (!ops) {
            copy_err(err, errlen, "vsched: no host operations");
            return nullptr;
        }
        vsched::Config c = to_cpp(*cfg);
        std::string msg;
        if (!vsched::validate_config(c, nr_vcpus, &msg)) {
            copy_err(err, errlen, msg);
            return nullptr;
        }
        vsched::RealHostCallbacks cb;
        cb.now_ns = ops->now_ns;
        cb.kick = ops->kick;
        cb.wake = ops->wake;
        cb.trace = ops->trace;
        cb.opaque = opaque;
        auto h = std::make_unique<VschedCore>();
        h->host = std::make_unique<vsched::RealHost>(nr_vcpus, cb);
        if (pool) {
            const bool virtual_time = tb && tb->virtual_time;
            if (ops->now_ns && !virtual_time) {
                copy_err(err, errlen,
                         "vsched: a shared pool needs the core's CLOCK_MONOTONIC clock "
                         "(now_ns must be NULL)");
                return nullptr;
            }
            vsched::SharedPoolOptions opt;
            opt.time_base.virtual_time = virtual_time;
            opt.time_base.icount_shift = virtual_time ? tb->icount_shift : 0;
            opt.time_base.quantum = virtual_time ? tb->quantum : 0;
            opt.reserve_vcpus = nr_present;
            h->core = Core::create_shared(c, pool, nr_vcpus, *h->host, &msg, opt);
        } else {
            h->core = Core::create(c, nr_vcpus, *h->host, &msg);
        }
        if (!h->core) {
            copy_err(err, errlen, msg);
            return nullptr;
        }
        h->core->set_tracing(ops->trace != nullptr);
        return h.release();
    } catch (const std::bad_alloc &) {
        copy_err(err, errlen, "vsched: out of memory");
    } catch (...) {
        copy_err(err, errlen, "vsched: internal error");
    }
    return nullptr;
}
} // namespace

VschedCore *vsched_core_new(const VschedConfig *cfg, int nr_vcpus, const VschedHostOps *ops,
                            void *opaque, char *err, size_t errlen)
{
    return core_new(cfg, nullptr, nr_vcpus, ops, opaque, err, errlen);
}

VschedCore *vsched_core_new_shared(const VschedConfig *cfg, const char *pool_name, int nr_vcpus,
                                   const VschedHostOps *ops, void *opaque, char *err,
                                   size_t errlen)
{
    if (!pool_name) {
        copy_err(err, errlen, "vsched: no pool name");
        return nullptr;
    }
    return core_new(cfg, pool_name, nr_vcpus, ops, opaque, err, errlen);
}

VschedCore *vsched_core_new_shared_timed(const VschedConfig *cfg, const char *pool_name,
                                         int nr_vcpus, int nr_present,
                                         const VschedHostOps *ops, void *opaque,
                                         const VschedTimeBase *tb, char *err, size_t errlen)
{
    if (!pool_name) {
        copy_err(err, errlen, "vsched: no pool name");
        return nullptr;
    }
    if (nr_present < 1 || nr_present > nr_vcpus) {
        copy_err(err, errlen, "vsched: " + std::to_string(nr_present) +
                                  " present vCPUs, expected 1.." + std::to_string(nr_vcpus));
        return nullptr;
    }
    return core_new(cfg, pool_name, nr_vcpus, ops, opaque, err, errlen, tb, nr_present);
}

VschedCore *vsched_core_new_shared_present(const VschedConfig *cfg, const char *pool_name,
                                           int nr_vcpus, int nr_present,
                                           const VschedHostOps *ops, void *opaque, char *err,
                                           size_t errlen)
{
    return vsched_core_new_shared_timed(cfg, pool_name, nr_vcpus, nr_present, ops, opaque,
                                        nullptr, err, errlen);
}

void vsched_core_free(VschedCore *core)
{
    guarded_void([&] { delete core; });
}

bool vsched_core_is_shared(VschedCore *core)
{
    return core && core->core->shared();
}

bool vsched_pool_name_valid(const char *name, char *err, size_t errlen)
{
    return guarded(false, [&] {
        std::string msg;
        if (!name) {
            copy_err(err, errlen, "vsched: no pool name");
            return false;
        }
        if (!vsched::validate_pool_name(name, &msg)) {
            copy_err(err, errlen, msg);
            return false;
        }
        return true;
    });
}

void vsched_pool_mailbox_run(VschedCore *core)
{
    guarded_void([&] { core->core->mailbox_run(); });
}

void vsched_pool_mailbox_stop(VschedCore *core)
{
    guarded_void([&] { core->core->mailbox_stop(); });
}

int vsched_pool_mailbox_dispatch(VschedCore *core, uint64_t timeout_ns)
{
    return guarded(0, [&] { return core->core->mailbox_dispatch(timeout_ns); });
}

int vsched_pool_poll(VschedCore *core)
{
    return guarded(0, [&] { return core->core->poll_members(true); });
}

bool vsched_pool_info(VschedCore *core, VschedPoolInfo *out)
{
    if (out) {
        std::memset(out, 0, sizeof(*out)); /* also when there is nothing to say */
    }
    return guarded(false, [&] {
        return out && core && core->core->pool_info(out);
    });
}

bool vsched_pool_member(VschedCore *core, int i, VschedPoolMember *out)
{
    return guarded(false, [&] {
        return out && core->core->pool_member(i, out);
    });
}

bool vsched_acquire(VschedCore *core, int vcpu)
{
    /* On an internal error let the vCPU run rather than wedge the VM. */
    return guarded(true, [&] { return core->core->acquire(vcpu); });
}

void vsched_release(VschedCore *core, int vcpu, int reason)
{
    if (reason < VSCHED_RELEASE_HALT || reason > VSCHED_RELEASE_YIELD) {
        return;
    }
    guarded_void([&] { core->core->release(vcpu, static_cast<vsched::ReleaseReason>(reason)); });
}

void vsched_release_if_active(VschedCore *core, int vcpu, int reason)
{
    if (reason < VSCHED_RELEASE_HALT || reason > VSCHED_RELEASE_YIELD) {
        return;
    }
    guarded_void([&] {
        core->core->release_if_active(vcpu, static_cast<vsched::ReleaseReason>(reason));
    });
}

bool vsched_after_exec(VschedCore *core, int vcpu, int cpl)
{
    return guarded(false, [&] { return core->core->after_exec(vcpu, cpl); });
}

uint64_t vsched_tick(VschedCore *core)
{
    return guarded(uint64_t{0}, [&] { return core->core->tick(); });
}

bool vsched_on_pause(VschedCore *core, int vcpu, int cpl)
{
    return core->core->on_pause(vcpu, cpl);
}

bool vsched_on_pause_at(VschedCore *core, int vcpu, int cpl, uint64_t now_ns)
{
    return core->core->on_pause_at(vcpu, cpl, now_ns);
}

void vsched_on_mwait(VschedCore *core, int vcpu)
{
    core->core->on_mwait(vcpu);
}

void vsched_on_ipi(VschedCore *core, int src, const int *dst, int ndst, int vector,
                   int delivery_mode, int shorthand)
{
    guarded_void(
        [&] { core->core->on_ipi(src, dst, ndst, vector, delivery_mode, shorthand); });
}

void vsched_on_irq_accept(VschedCore *core, int vcpu, int vector)
{
    guarded_void([&] { core->core->on_irq_accept(vcpu, vector); });
}

void vsched_on_eoi(VschedCore *core, int vcpu, int vector)
{
    guarded_void([&] { core->core->on_eoi(vcpu, vector); });
}

void vsched_pv_yield(VschedCore *core, int vcpu, int target)
{
    core->core->pv_yield(vcpu, target);
}

void vsched_vcpu_reset(VschedCore *core, int vcpu)
{
    guarded_void([&] { core->core->reset_vcpu_ipi(vcpu); });
}

bool vsched_vcpu_plug(VschedCore *core, int vcpu, char *err, size_t errlen)
{
    return guarded(false, [&] {
        std::string msg;
        if (!core->core->plug_vcpu(vcpu, &msg)) {
            copy_err(err, errlen, msg);
            return false;
        }
        return true;
    });
}

void vsched_vcpu_unplug(VschedCore *core, int vcpu)
{
    guarded_void([&] { core->core->unplug_vcpu(vcpu); });
}

bool vsched_setting_set(VschedCore *core, const char *name, uint64_t value)
{
    return guarded(false, [&] {
        const RuntimeSetting *r = runtime_setting(name);
        if (!core || !r || !valid_value(name, value)) {
            return false;
        }
        r->set(*core->core, value);
        return true;
    });
}

bool vsched_setting_get(VschedCore *core, const char *name, uint64_t *out)
{
    const RuntimeSetting *r = runtime_setting(name);
    if (!core || !r || !out) {
        return false;
    }
    *out = r->get(*core->core);
    return true;
}

bool vsched_vcpu_info(VschedCore *core, int vcpu, VschedVcpuInfo *out)
{
    return guarded(false, [&] {
        return out && core->core->vcpu_info(vcpu, out);
    });
}

uint64_t vsched_vcpu_steal_ns(VschedCore *core, int vcpu)
{
    return guarded(uint64_t{0}, [&] { return core->core->steal_ns(vcpu); });
}

size_t vsched_counters_json(VschedCore *core, char *buf, size_t len)
{
    return guarded(size_t{0}, [&] {
        std::string j = core->core->counters_json();
        if (buf && len > 0) {
            size_t n = j.size() < len - 1 ? j.size() : len - 1;
            std::memcpy(buf, j.data(), n);
            buf[n] = '\0';
        }
        return j.size();
    });
}

int vsched_counter_count(void)
{
    return vsched::counter_count();
}

const char *vsched_counter_name(int i)
{
    return vsched::counter_name(i);
}

const char *vsched_counter_description(int i)
{
    return vsched::counter_description(i);
}

uint64_t vsched_counter_value(VschedCore *core, int i)
{
    if (i < 0 || i >= vsched::counter_count()) {
        return 0;
    }
    return guarded(uint64_t{0}, [&] { return core->core->counters().v[i]; });
}

const char *vsched_trace_event_name(int event)
{
    return vsched::trace_event_name(event);
}

} // extern "C"

static_assert(VSCHED_TRACE__MAX == vsched::kNumTraceEvents);
static_assert(VSCHED_POOL_NAME_MAX == vsched::kPoolNameMax);
static_assert(VSCHED_POOL_MAX_MEMBERS == vsched::kMaxMembers);
static_assert(VSCHED_TRACE_YIELD == static_cast<int>(vsched::TraceEvent::kYield));
static_assert(VSCHED_TRACE_YIELD_POLICY(vsched::yield_trace_arg(5, 2)) == 5);
static_assert(VSCHED_TRACE_YIELD_PASS(vsched::yield_trace_arg(5, 2)) == 2);
static_assert(VSCHED_RELEASE_YIELD == static_cast<int>(vsched::ReleaseReason::kYield));
static_assert(VSCHED_STATE_RUNNING == static_cast<int>(vsched::VcpuState::kRunning));
