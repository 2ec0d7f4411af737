/* vsched core: trace names and running collected effects. */
#include "effects.h"
#include "host.h"

namespace vsched {

const char *trace_event_name(int event)
{
    static constexpr const char *kNames[] = {
        "spin-detected", "yield", "receiver-hit", "no-target", "handoff",
        "preempt", "acquire-wait", "grant", "release",
        "ipi-lift", "halt-handoff", "ipi-to-run", "yielder-lift", "wake-preempt",
        "preempt-delay",
        "lend", "lend-return", "pv-yield",
    };
    static_assert(sizeof(kNames) / sizeof(kNames[0]) == kNumTraceEvents);
    return event >= 0 && event < kNumTraceEvents ? kNames[event] : nullptr;
}

void Effects::run(HostInterface &host) const
{
    for (int i = 0; i < size(); i++) {
        const Effect &e = (*this)[i];
        if (!e.local()) {
            continue;
        }
        switch (e.kind) {
        case Effect::Kind::kKick:
            host.kick(e.vcpu);
            break;
        case Effect::Kind::kWake:
            host.wake(e.vcpu);
            break;
        case Effect::Kind::kTrace:
            host.trace(e.event, e.vcpu, e.target, e.arg);
            break;
        }
    }
}

} // namespace vsched
