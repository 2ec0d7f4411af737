/* vsched core: the -accel settings table. */
#include "settings.h"

#include "config.h"
#include "policy_registry.h"
#include "slot_pool.h"

namespace vsched {

namespace {

constexpr uint64_t kNsPerS = 1000 * kNsPerMs;

/* Defaults live in Config (config.h); the user guide shows both. */
constexpr VschedSetting kSettings[] = {
    {"vcpu-sched", VSCHED_SETTING_BOOL, 0, 0, false,
     "run vCPUs only while they hold one of 'pcpus' slots"},
    {"pcpus", VSCHED_SETTING_COUNT, 1, kMaxSlots, false,
     "number of pCPU slots, by default the host's CPU count"},
    /* Below 100us the slice timer would wake more often than a slot
     * changes hands; above 10s now + slice could wrap. */
    {"slice", VSCHED_SETTING_DURATION, 100 * kNsPerUs, 10 * kNsPerS, false,
     "time slice of a slot holder while others wait"},
    {"directed-yield", VSCHED_SETTING_POLICY, 0, 0, true,
     "yield policy on a PAUSE spin"},
    {"relaxed-boost", VSCHED_SETTING_BOOL, 0, 0, true,
     "when the strict passes find no target, try any preempted vCPU "
     "(ipi, ipi-v2) or any ready vCPU (ipi-prio)"},
    {"halt-handoff", VSCHED_SETTING_BOOL, 0, 0, true,
     "a halting vCPU's slot goes to the latest receiver of its IPIs, if "
     "queued (policies that ask for it: ipi-prio)"},
    {"ipi-lift", VSCHED_SETTING_BOOL, 0, 0, true,
     "a vCPU woken by an IPI queues ahead of others, each passed at most "
     "twice per wait (policies that ask for it: ipi-prio)"},
    {"callfn-first", VSCHED_SETTING_BOOL, 0, 0, true,
     "yield to receivers of a call-function IPI before other receivers "
     "(ipi-prio)"},
    {"yield-lift", VSCHED_SETTING_BOOL, 0, 0, true,
     "a directed-yield yielder requeues ahead of others, each passed at "
     "most twice per wait (policies that ask for it: ipi-prio)"},
    {"wake-preempt", VSCHED_SETTING_BOOL, 0, 0, true,
     "a vCPU woken by an IPI that finds no free slot takes the slot of "
     "this VM's vCPU that has run longest, if at least wake-granularity, "
     "within the lift bound (policies that ask for it: ipi-prio)"},
    /* 1us: nearly any holder; above the slice it never fires before the
     * slice ends. */
    {"wake-granularity", VSCHED_SETTING_DURATION, 1 * kNsPerUs, 10 * kNsPerS, true,
     "wake-preempt: how long a holder must have run in its grant"},
    {"wake-spinners", VSCHED_SETTING_BOOL, 0, 0, true,
     "wake-preempt asks a holder spinning in a PAUSE loop first, whatever "
     "it has run"},
    {"wake-queued", VSCHED_SETTING_BOOL, 0, 0, true,
     "wake-preempt also for an IPI to a vCPU queued for a slot (asked at "
     "the sender's next exit)"},
    /* Up to 10ms: the queue head waits at most this much longer. */
    {"preempt-delay", VSCHED_SETTING_DURATION, 0, 10 * kNsPerMs, true,
     "a slot holder due for preemption in kernel mode keeps its slot until "
     "it returns to user mode, at most this long past its deadline; 0: off "
     "(policies that ask for it: ipi-prio)"},
    {"yield-lend", VSCHED_SETTING_BOOL, 0, 0, true,
     "a directed yield to a vCPU holding the yielder's IPI lends the slot: "
     "the yielder waits at the queue head and gets the slot back when the "
     "receiver EOIs that IPI (policies that ask for it: ipi-prio)"},
    {"ipi-tracking", VSCHED_SETTING_BOOL, 0, 0, true,
     "record IPIs for the directed-yield policies"},
    {"ipi-window", VSCHED_SETTING_DURATION, 1 * kNsPerUs, 10 * kNsPerS, true,
     "how long a recorded IPI counts"},
    {"ple-gap", VSCHED_SETTING_DURATION, 1 * kNsPerUs, 10 * kNsPerMs, true,
     "PAUSEs closer than this continue a spin"},
    /* The window grows up to Config::ple_window_max_ns (3.2 ms). */
    {"ple-window", VSCHED_SETTING_DURATION, 1 * kNsPerUs, 3200 * kNsPerUs, true,
     "a spin this long triggers a yield decision"},
    {"steal-time", VSCHED_SETTING_BOOL, 0, 0, false,
     "show the guest KVM's paravirtual steal time and preempted flag "
     "(CPUID KVM signature, MSR_KVM_STEAL_TIME); x86 only"},
    {"pv-tlb-flush", VSCHED_SETTING_BOOL, 0, 0, false,
     "with steal-time=on, KVM's paravirtual TLB flush: the guest skips the "
     "flush IPI to a preempted vCPU, which flushes when it gets a slot "
     "(Linux uses it only without MONITOR: -cpu ...,-monitor); x86 only"},
    {"pv-sched-yield", VSCHED_SETTING_BOOL, 0, 0, false,
     "with steal-time=on, KVM's paravirtual sched yield: a guest vCPU whose "
     "call-function IPI went to a preempted vCPU hands it its slot (AMD "
     "CPU models only, without MONITOR: -cpu max,-monitor); x86 only"},
    {"pool", VSCHED_SETTING_STRING, 0, 0, false,
     "share the slots with every VM naming this pool"},
    {"stats-file", VSCHED_SETTING_STRING, 0, 0, false,
     "write the counters as JSON to this file at exit"},
    {"time", VSCHED_SETTING_STRING, 0, 0, false,
     "time base of guest and scheduler: real (host clock) or virtual "
     "(instruction counts; needs -icount shift=N,sleep=off)"},
    /* Below 1000 a round costs more than it runs; above 10^7 a slot
     * holder runs alone for milliseconds of guest time. */
    {"quantum", VSCHED_SETTING_COUNT, 1000, 10'000'000, false,
     "time=virtual: instructions per slot per round"},
    {"pool-members", VSCHED_SETTING_COUNT, 1, kMaxMembers, false,
     "time=virtual with pool: the first round waits until this many VMs "
     "are in the pool"},
};

} // namespace

std::span<const VschedSetting> settings()
{
    return kSettings;
}

const VschedSetting *find_setting(std::string_view name)
{
    for (const auto &s : kSettings) {
        if (name == s.name) {
            return &s;
        }
    }
    return nullptr;
}

std::string format_duration(uint64_t ns)
{
    static constexpr struct {
        const char *unit;
        uint64_t ns;
    } kUnits[] = {{"s", kNsPerS}, {"ms", kNsPerMs}, {"us", kNsPerUs}};
    for (const auto &u : kUnits) {
        if (ns && ns % u.ns == 0) {
            return std::to_string(ns / u.ns) + u.unit;
        }
    }
    return std::to_string(ns) + "ns";
}

namespace {

std::string format_value(const VschedSetting &s, uint64_t v)
{
    return s.type == VSCHED_SETTING_DURATION ? format_duration(v) : std::to_string(v);
}

} // namespace

std::string setting_range(const VschedSetting &s)
{
    if (s.type != VSCHED_SETTING_COUNT && s.type != VSCHED_SETTING_DURATION) {
        return "";
    }
    return format_value(s, s.min) + ".." + format_value(s, s.max);
}

std::string setting_description(const VschedSetting &s)
{
    std::string d = std::string("vsched: ") + s.help;
    if (s.type == VSCHED_SETTING_POLICY) {
        d += ": " + policy_list(", ");
    }
    std::string range = setting_range(s);
    d += " (";
    if (!range.empty()) {
        d += range + "; ";
    }
    d += s.runtime ? "run time)" : "fixed at start)";
    return d;
}

bool check_setting(const VschedSetting &s, uint64_t value, std::string *err)
{
    if (setting_range(s).empty() || (value >= s.min && value <= s.max)) {
        return true;
    }
    if (err) {
        *err = std::string("Parameter '") + s.name + "' must be between " +
               format_value(s, s.min) + " and " + format_value(s, s.max) + " (got " +
               format_value(s, value) + ")";
    }
    return false;
}

} // namespace vsched
