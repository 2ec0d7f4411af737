/* vsched core: configuration parsing and validation. */
#include "config.h"

#include <cctype>
#include <limits>

namespace vsched {

namespace {

struct Unit {
    const char *suffix;
    uint64_t ns;
};

constexpr Unit kUnits[] = {
    {"ns", 1}, {"us", kNsPerUs}, {"ms", kNsPerMs}, {"s", 1000 * kNsPerMs},
};

void set_err(std::string *err, std::string msg)
{
    if (err) {
        *err = std::move(msg);
    }
}

} // namespace

bool parse_duration_ns(std::string_view text, uint64_t *out, std::string *err)
{
    const std::string quoted = "'" + std::string(text) + "'";
    size_t i = 0;
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) {
        i++;
    }
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) {
        set_err(err, "duration " + quoted + " must be a plain non-negative number");
        return false;
    }
    uint64_t value = 0;
    size_t digits = 0;
    for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); i++) {
        uint64_t d = static_cast<uint64_t>(text[i] - '0');
        if (value > (std::numeric_limits<uint64_t>::max() - d) / 10) {
            set_err(err, "duration " + quoted + " is too large");
            return false;
        }
        value = value * 10 + d;
        digits++;
    }
    if (digits == 0) {
        set_err(err, "duration " + quoted + " has no number (use e.g. 50ms, 100us)");
        return false;
    }
    std::string_view suffix = text.substr(i);
    while (!suffix.empty() && std::isspace(static_cast<unsigned char>(suffix.back()))) {
        suffix.remove_suffix(1);
    }
    uint64_t mult = 1;
    if (!suffix.empty()) {
        bool found = false;
        for (const auto &u : kUnits) {
            if (suffix == u.suffix) {
                mult = u.ns;
                found = true;
                break;
            }
        }
        if (!found) {
            set_err(err, "duration " + quoted + " has an unknown unit (ns, us, ms, s)");
            return false;
        }
    }
    if (value > std::numeric_limits<uint64_t>::max() / mult) {
        set_err(err, "duration " + quoted + " is too large");
        return false;
    }
    *out = value * mult;
    return true;
}

Config::Config() : VschedConfig{}
{
    pcpus = 1;                          /* number of slots */
    slice_ns = 20 * kNsPerMs;           /* time slice per grant */
    set_policy(policy_id(kDefaultPolicy)); /* policy_registry.h */
    relaxed_boost = true;               /* series: enable_relaxed_boost */
    ipi_tracking = true;                /* series: ipi_tracking_enabled */
    ipi_window_ns = 50 * kNsPerMs;      /* series: ipi_window_ns */
    ple_gap_ns = 50 * kNsPerUs;         /* max PAUSE-to-PAUSE gap in a spin */
    ple_window_ns = 100 * kNsPerUs;     /* base spin length that fires */
    ple_window_max_ns = 3200 * kNsPerUs; /* growth clamp */
    ple_window_grow = 2;                /* multiply on a fruitless spin */
    yield_budget = 3;                   /* kvm_vcpu_on_spin(): try = 3 */
    /* A directed-yield yielder waits in the queue marked preempted (and
     * preempted_in_kernel from the spin's CPL), as KVM's kvm_sched_out()
     * marks any still-runnable vCPU.  false: voluntary, not preempted. */
    yielder_preempted = true;
    /* Scheduler and policy mechanisms a policy may use (ipi-prio does);
     * each can be switched on and off to measure it (Mechanism).  On by
     * default only what won seed by seed in
     * docs/design/where-time-goes.rst. */
    halt_handoff = true;  /* a halting vCPU's slot to its IPI receiver */
    ipi_lift = false;     /* an IPI-woken vCPU queues ahead */
    callfn_first = false; /* call-function receivers before others */
    yield_lift = false;   /* a directed-yield yielder requeues ahead */
    wake_preempt = false; /* an IPI-woken vCPU preempts a long holder */
    wake_granularity_ns = 1 * kNsPerMs; /* CFS: sched_wakeup_granularity */
    wake_spinners = false;      /* wake-preempt asks a spinner first */
    wake_queued = false;        /* an IPI to a queued vCPU asks too */
    preempt_delay_ns = 0;       /* off: did not replicate (where-time-goes) */
    yield_lend = false;         /* off: inside noise over 8 seeds */
    lift_bound = 2;       /* times one queued vCPU may be passed */
}

bool validate_config(const Config &cfg, int nr_vcpus, std::string *err)
{
    if (nr_vcpus <= 0) {
        set_err(err, "vsched: the VM has no vCPUs");
        return false;
    }
    if (nr_vcpus > kMaxVcpus) {
        set_err(err, "vsched: at most " + std::to_string(kMaxVcpus) + " vCPUs are supported");
        return false;
    }
    if (cfg.pcpus <= 0) {
        set_err(err, "vsched: pcpus must be at least 1 (0 slots would never run a vCPU)");
        return false;
    }
    if (cfg.pcpus > kMaxSlots) {
        set_err(err, "vsched: at most " + std::to_string(kMaxSlots) + " pcpus are supported");
        return false;
    }
    if (cfg.slice_ns == 0) {
        set_err(err, "vsched: the time slice must be positive");
        return false;
    }
    if (!valid_policy(cfg.policy_of())) {
        set_err(err, "vsched: unknown policy");
        return false;
    }
    if (cfg.ple_window_ns == 0 && policy_pass_count(cfg.policy_of()) > 0) {
        set_err(err, "vsched: the PLE window must be positive");
        return false;
    }
    if (cfg.ple_window_max_ns < cfg.ple_window_ns) {
        set_err(err, "vsched: ple-window exceeds the window's growth limit (" +
                         std::to_string(cfg.ple_window_max_ns / kNsPerUs) + "us)");
        return false;
    }
    if (cfg.ple_window_grow == 0) {
        set_err(err, "vsched: ple-window-grow must be at least 1");
        return false;
    }
    if (cfg.yield_budget <= 0) {
        set_err(err, "vsched: the yield retry budget must be at least 1");
        return false;
    }
    return true;
}

} // namespace vsched
