/* vsched core: counter names and JSON. */
#include "counters.h"

namespace vsched {

namespace {

constexpr const char *kNames[] = {
#define VSCHED_CTR_NAME(name, desc) #name,
    VSCHED_COUNTERS(VSCHED_CTR_NAME)
#undef VSCHED_CTR_NAME
};

constexpr const char *kDescs[] = {
#define VSCHED_CTR_DESC(name, desc) desc,
    VSCHED_COUNTERS(VSCHED_CTR_DESC)
#undef VSCHED_CTR_DESC
};

static_assert(sizeof(kNames) / sizeof(kNames[0]) == kNumCounters);

} // namespace

const char *counter_name(int i)
{
    return i >= 0 && i < kNumCounters ? kNames[i] : nullptr;
}

const char *counter_description(int i)
{
    return i >= 0 && i < kNumCounters ? kDescs[i] : nullptr;
}

void Counters::reset()
{
    for (auto &x : v_) {
        x.store(0, std::memory_order_relaxed);
    }
}

std::string counters_json(const CounterSnapshot &s)
{
    std::string out = "{";
    for (int i = 0; i < kNumCounters; i++) {
        if (i) {
            out += ',';
        }
        out += '"';
        out += kNames[i];
        out += "\":";
        out += std::to_string(s.v[i]);
    }
    out += '}';
    return out;
}

} // namespace vsched
