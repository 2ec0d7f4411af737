/*
 * vsched core: the policy registry.
 *
 * A policy file registers itself with one line:
 *
 *   VSCHED_REGISTER_POLICY(random, "random", make_random, "random");
 *
 * (an identifier for the static object, the user-facing name, the factory,
 * then the names of its passes).  Everything that lists policies takes the
 * list from here: the config parser, the C facade, the -accel property
 * (values, help, error message), info vsched / query-vsched, one
 * "yield_<pass>" counter per distinct pass name and the generic
 * vsched_yield trace event.  A policy id is its index in the registry,
 * sorted by name; a pass is an index into its policy's own pass names.
 * A policy without passes never decides (spins_ignored).
 */
#ifndef VSCHED_CORE_POLICY_REGISTRY_H
#define VSCHED_CORE_POLICY_REGISTRY_H

#include <array>
#include <memory>
#include <string>
#include <string_view>

namespace vsched {

class YieldPolicy;

enum class PolicyId : int {};
inline constexpr int kMaxPolicyPasses = 4;
/* Distinct pass names over all policies (yield_<pass> counters). */
inline constexpr int kMaxPassCounters = 16;
inline constexpr const char *kDefaultPolicy = "vanilla";

struct PolicyDef {
    const char *name;
    std::unique_ptr<YieldPolicy> (*make)();
    std::array<const char *, kMaxPolicyPasses> passes; /* nullptr: unused */
};

class PolicyRegistration {
public:
    explicit PolicyRegistration(const PolicyDef &def);
};

#define VSCHED_REGISTER_POLICY(ident, name, factory, ...)                    \
    static const ::vsched::PolicyRegistration vsched_policy_##ident{         \
        ::vsched::PolicyDef{name, factory, {__VA_ARGS__}}}

int policy_count();
bool valid_policy(PolicyId id);
/* "unknown" for an invalid id. */
const char *policy_name(PolicyId id);
/* Exact name; '_' is accepted for '-' ("ipi_prio"). */
bool parse_policy(std::string_view word, PolicyId *out);
/* The id of a registered name (PolicyId{-1} if none). */
PolicyId policy_id(std::string_view name);
/* All names, sorted, joined with sep ("ipi, ipi-prio, ..."). */
std::string policy_list(std::string_view sep);
std::unique_ptr<YieldPolicy> make_policy(PolicyId id);

int policy_pass_count(PolicyId id);
const char *policy_pass_name(PolicyId id, int pass); /* nullptr if invalid */
/* The yield_<pass> counter slot of a policy's pass (-1 if invalid). */
int policy_pass_counter(PolicyId id, int pass);

int pass_counter_count();
const char *pass_counter_name(int slot);        /* "yield_<pass>" */
const char *pass_counter_description(int slot);
int pass_counter_slot(std::string_view pass);   /* -1 if no policy has it */

} // namespace vsched

#endif
