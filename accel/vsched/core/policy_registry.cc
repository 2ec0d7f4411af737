/* vsched core: the policy registry (see policy_registry.h). */
#include "policy_registry.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "policy.h"

namespace vsched {

namespace {

struct Entry {
    PolicyDef def;
    int nr_passes = 0;
    int slot[kMaxPolicyPasses] = {};
};

struct PassCounter {
    std::string pass;
    std::string name;        /* yield_<pass> */
    std::string description;
};

/* Function-local statics: registrations run during static initialisation,
 * in no particular order across files. */
std::vector<Entry> &entries()
{
    static std::vector<Entry> e;
    return e;
}

std::vector<PassCounter> &pass_counters()
{
    static std::vector<PassCounter> p;
    return p;
}

[[noreturn]] void registry_error(const char *what, const char *name)
{
    std::fprintf(stderr, "vsched: policy registry: %s: %s\n", what, name);
    std::abort();
}

/* Pass counters in policy (name) order, then pass order, deduplicated. */
void rebuild_pass_counters()
{
    auto &pc = pass_counters();
    pc.clear();
    for (auto &e : entries()) {
        for (int p = 0; p < e.nr_passes; p++) {
            std::string pass = e.def.passes[p];
            auto it = std::find_if(pc.begin(), pc.end(),
                                   [&](const PassCounter &c) { return c.pass == pass; });
            if (it == pc.end()) {
                pc.push_back({pass, "yield_" + pass, "yields by the " + pass + " pass ("});
                it = pc.end() - 1;
            } else {
                it->description.pop_back(); /* ")" */
                it->description += ", ";
            }
            it->description += e.def.name;
            it->description += ")";
            e.slot[p] = static_cast<int>(it - pc.begin());
        }
    }
    if (pc.size() > static_cast<size_t>(kMaxPassCounters)) {
        registry_error("more distinct pass names than kMaxPassCounters", pc.back().pass.c_str());
    }
}

const Entry *entry(PolicyId id)
{
    return valid_policy(id) ? &entries()[static_cast<int>(id)] : nullptr;
}

} // namespace

PolicyRegistration::PolicyRegistration(const PolicyDef &def)
{
    if (!def.name || !*def.name || !def.make) {
        registry_error("a policy needs a name and a factory", def.name ? def.name : "(null)");
    }
    Entry e{def};
    while (e.nr_passes < kMaxPolicyPasses && def.passes[e.nr_passes]) {
        e.nr_passes++;
    }
    auto &all = entries();
    auto by_name = [](const Entry &x, std::string_view n) {
        return std::string_view(x.def.name) < n;
    };
    auto at = std::lower_bound(all.begin(), all.end(), std::string_view(def.name), by_name);
    if (at != all.end() && std::string_view(at->def.name) == def.name) {
        registry_error("registered twice", def.name);
    }
    all.insert(at, e);
    rebuild_pass_counters();
}

int policy_count()
{
    return static_cast<int>(entries().size());
}

bool valid_policy(PolicyId id)
{
    return static_cast<int>(id) >= 0 && static_cast<int>(id) < policy_count();
}

const char *policy_name(PolicyId id)
{
    const Entry *e = entry(id);
    return e ? e->def.name : "unknown";
}

bool parse_policy(std::string_view word, PolicyId *out)
{
    std::string w(word);
    std::replace(w.begin(), w.end(), '_', '-');
    PolicyId id = policy_id(w);
    if (!valid_policy(id)) {
        return false;
    }
    *out = id;
    return true;
}

PolicyId policy_id(std::string_view name)
{
    const auto &all = entries();
    for (size_t i = 0; i < all.size(); i++) {
        if (name == all[i].def.name) {
            return static_cast<PolicyId>(i);
        }
    }
    return static_cast<PolicyId>(-1);
}

std::string policy_list(std::string_view sep)
{
    std::string out;
    for (const auto &e : entries()) {
        if (!out.empty()) {
            out += sep;
        }
        out += e.def.name;
    }
    return out;
}

std::unique_ptr<YieldPolicy> make_policy(PolicyId id)
{
    const Entry *e = entry(id);
    return e ? e->def.make() : nullptr;
}

int policy_pass_count(PolicyId id)
{
    const Entry *e = entry(id);
    return e ? e->nr_passes : 0;
}

const char *policy_pass_name(PolicyId id, int pass)
{
    const Entry *e = entry(id);
    return e && pass >= 0 && pass < e->nr_passes ? e->def.passes[pass] : nullptr;
}

int policy_pass_counter(PolicyId id, int pass)
{
    const Entry *e = entry(id);
    return e && pass >= 0 && pass < e->nr_passes ? e->slot[pass] : -1;
}

int pass_counter_count()
{
    return static_cast<int>(pass_counters().size());
}

const char *pass_counter_name(int slot)
{
    return slot >= 0 && slot < pass_counter_count() ? pass_counters()[slot].name.c_str()
                                                    : nullptr;
}

const char *pass_counter_description(int slot)
{
    return slot >= 0 && slot < pass_counter_count()
               ? pass_counters()[slot].description.c_str()
               : nullptr;
}

int pass_counter_slot(std::string_view pass)
{
    const auto &pc = pass_counters();
    for (size_t i = 0; i < pc.size(); i++) {
        if (pc[i].pass == pass) {
            return static_cast<int>(i);
        }
    }
    return -1;
}

} // namespace vsched
