/*
 * vsched core: deterministic simulated host for tests.
 *
 * A virtual clock that only moves when the test says so; kicks and wakes
 * are recorded (as pending flags and in order) for the test's driver to act
 * on; wait() returns at once (the driver decides who runs).
 */
#ifndef VSCHED_CORE_SIM_HOST_H
#define VSCHED_CORE_SIM_HOST_H

#include <cstdint>
#include <vector>

#include "host.h"

namespace vsched {

struct TraceRecord {
    TraceEvent event;
    int vcpu;
    int target;
    int64_t arg;
    uint64_t time_ns;
};

class SimHost final : public HostInterface {
public:
    explicit SimHost(int nr_vcpus, uint64_t start_ns = 1'000'000);

    uint64_t now_ns() override { return now_; }
    void kick(int vcpu) override;
    void wake(int vcpu) override;
    void wait(int vcpu, uint64_t deadline_ns) override;
    void trace(TraceEvent e, int vcpu, int target, int64_t arg) override;

    void advance(uint64_t ns) { now_ += ns; }
    void set_now(uint64_t ns) { now_ = ns; }

    /* Consume a pending kick / wake of vcpu. */
    bool take_kick(int vcpu);
    bool take_wake(int vcpu);
    bool kick_pending(int vcpu) const { return kick_[vcpu]; }
    bool wake_pending(int vcpu) const { return wake_[vcpu]; }

    const std::vector<int> &kick_log() const { return kick_log_; }
    const std::vector<int> &wake_log() const { return wake_log_; }
    const std::vector<TraceRecord> &traces() const { return traces_; }
    void clear_logs();
    uint64_t waits() const { return waits_; }

private:
    uint64_t now_;
    std::vector<bool> kick_;
    std::vector<bool> wake_;
    std::vector<int> kick_log_;
    std::vector<int> wake_log_;
    std::vector<TraceRecord> traces_;
    uint64_t waits_ = 0;
};

} // namespace vsched

#endif
