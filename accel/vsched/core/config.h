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
#include "vsched-core.h"

namespace vsched {

/* Largest VM the fixed-capacity pool supports (q35's max_cpus). */
inline constexpr int kMaxVcpus = 4096;
inline constexpr int kMaxSlots = 4096;

inline constexpr uint64_t kNsPerUs = 1000;
inline constexpr uint64_t kNsPerMs = 1000 * kNsPerUs;

/*
 * The fields are the C facade's VschedConfig (vsched-core.h): one
 * definition, which facade.cc passes through as it is.  Config adds the
 * defaults (config.cc) and the typed policy id.
 */
struct Config : VschedConfig {
    Config();
    PolicyId policy_of() const { return static_cast<PolicyId>(policy); }
    void set_policy(PolicyId p) { policy = static_cast<int>(p); }
};

/* The switchable mechanisms, as bits of Core::mechanisms(). */
enum class Mechanism : uint32_t {
    kHaltHandoff = 1u << 0,
    kIpiLift = 1u << 1,
    kCallfnFirst = 1u << 2,
    kYieldLift = 1u << 3,
    kWakePreempt = 1u << 4,
    kWakeSpinnerFirst = 1u << 5,
    kWakeQueued = 1u << 6,
    kYieldLend = 1u << 7,
};
inline constexpr uint32_t mechanism_bits(const Config &c)
{
    return (c.halt_handoff ? static_cast<uint32_t>(Mechanism::kHaltHandoff) : 0) |
           (c.ipi_lift ? static_cast<uint32_t>(Mechanism::kIpiLift) : 0) |
           (c.callfn_first ? static_cast<uint32_t>(Mechanism::kCallfnFirst) : 0) |
           (c.yield_lift ? static_cast<uint32_t>(Mechanism::kYieldLift) : 0) |
           (c.wake_preempt ? static_cast<uint32_t>(Mechanism::kWakePreempt) : 0) |
           (c.wake_spinners ? static_cast<uint32_t>(Mechanism::kWakeSpinnerFirst) : 0) |
           (c.wake_queued ? static_cast<uint32_t>(Mechanism::kWakeQueued) : 0) |
           (c.yield_lend ? static_cast<uint32_t>(Mechanism::kYieldLend) : 0);
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
