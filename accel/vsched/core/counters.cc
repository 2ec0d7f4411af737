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

int counter_count()
{
    return kNumCounters + pass_counter_count();
}

const char *counter_name(int i)
{
    return i >= 0 && i < kNumCounters ? kNames[i] : pass_counter_name(i - kNumCounters);
}

const char *counter_description(int i)
{
    return i >= 0 && i < kNumCounters ? kDescs[i]
                                      : pass_counter_description(i - kNumCounters);
}

uint64_t CounterSnapshot::yields(std::string_view pass) const
{
    int slot = pass_counter_slot(pass);
    return slot < 0 ? 0 : v[kNumCounters + slot];
}

uint64_t CounterSnapshot::yields_all_passes() const
{
    uint64_t sum = 0;
    for (int s = 0; s < pass_counter_count(); s++) {
        sum += v[kNumCounters + s];
    }
    return sum;
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
    for (int i = 0; i < counter_count(); i++) {
        if (i) {
            out += ',';
        }
        out += '"';
        out += counter_name(i);
        out += "\":";
        out += std::to_string(s.v[i]);
    }
    out += '}';
    return out;
}

} // namespace vsched
