/*
 * vsched core: configuration, user-facing words and durations.
 *
 * The defaults are justified in docs/design/core.rst ("Defaults").
 */
#ifndef VSCHED_CORE_CONFIG_H
#define VSCHED_CORE_CONFIG_H

#include <cstdint>
#include <string>
#include <string_view>

#include "policy_registry.h"

namespace vsched {

/* Largest VM the fixed-capacity pool supports (q35's max_cpus). */
inline constexpr int kMaxVcpus = 4096;
inline constexpr int kMaxSlots = 4096;

inline constexpr uint64_t kNsPerUs = 1000;
inline constexpr uint64_t kNsPerMs = 1000 * kNsPerUs;

struct Config {
    int pcpus = 1;                              /* number of slots */
    uint64_t slice_ns = 5 * kNsPerMs;           /* time slice per grant */
    PolicyId policy = policy_id(kDefaultPolicy); /* policy_registry.h */
    bool relaxed_boost = true;                  /* series: enable_relaxed_boost */
    bool ipi_tracking = true;                   /* series: ipi_tracking_enabled */
    uint64_t ipi_window_ns = 50 * kNsPerMs;     /* series: ipi_window_ns */
    uint64_t ple_gap_ns = 50 * kNsPerUs;        /* max PAUSE-to-PAUSE gap in a spin */
    uint64_t ple_window_ns = 100 * kNsPerUs;    /* base spin length that fires */
    uint64_t ple_window_max_ns = 3200 * kNsPerUs; /* growth clamp */
    unsigned ple_window_grow = 2;               /* multiply on a fruitless spin */
    int yield_budget = 3;                       /* kvm_vcpu_on_spin(): try = 3 */
    /* A directed-yield yielder waits in the queue marked preempted (and
     * preempted_in_kernel from the spin's CPL), as KVM's kvm_sched_out()
     * marks any still-runnable vCPU.  false: voluntary, not preempted. */
    bool yielder_preempted = true;
    /* Scheduler and policy mechanisms a policy may use (ipi-prio does);
     * each can be switched on and off to measure it (Mechanism below).
     * On by default only what won seed by seed in
     * docs/design/where-time-goes.rst. */
    bool halt_handoff = true;  /* a halting vCPU's slot to its IPI receiver */
    bool ipi_lift = false;     /* an IPI-woken vCPU queues ahead */
    bool callfn_first = false; /* call-function receivers before others */
    bool yield_lift = false;   /* a directed-yield yielder requeues ahead */
    unsigned lift_bound = 2;   /* times one queued vCPU may be passed */
};

/* The switchable mechanisms, as bits of Core::mechanisms(). */
enum class Mechanism : uint32_t {
    kHaltHandoff = 1u << 0,
    kIpiLift = 1u << 1,
    kCallfnFirst = 1u << 2,
    kYieldLift = 1u << 3,
};
inline constexpr uint32_t mechanism_bits(const Config &c)
{
    return (c.halt_handoff ? static_cast<uint32_t>(Mechanism::kHaltHandoff) : 0) |
           (c.ipi_lift ? static_cast<uint32_t>(Mechanism::kIpiLift) : 0) |
           (c.callfn_first ? static_cast<uint32_t>(Mechanism::kCallfnFirst) : 0) |
           (c.yield_lift ? static_cast<uint32_t>(Mechanism::kYieldLift) : 0);
}

/*
 * Parse "50ms", "100us", "2s", "1500ns" or a bare number of ns.
 * Rejects negatives, garbage, empty strings and overflow.
 */
bool parse_duration_ns(std::string_view text, uint64_t *out, std::string *err);

/* Check a configuration for a VM of nr_vcpus vCPUs. */
bool validate_config(const Config &cfg, int nr_vcpus, std::string *err);

} // namespace vsched

#endif
