/*
 * vsched core: the real host (used by QEMU through the C facade).
 *
 * Clock: the caller's now_ns callback, or std::chrono::steady_clock
 * (CLOCK_MONOTONIC on Linux) when it is null.  kick/wake/trace go to the
 * caller's callbacks.  wait() is a per-vCPU condition variable that wake()
 * also signals, for standalone users (benchmarks, threaded tests); QEMU
 * waits on its own halt_cond and never calls wait().
 */
#ifndef VSCHED_CORE_REAL_HOST_H
#define VSCHED_CORE_REAL_HOST_H

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "fast_clock.h"
#include "host.h"

namespace vsched {

struct RealHostCallbacks {
    uint64_t (*now_ns)(void *opaque) = nullptr;
    void (*kick)(void *opaque, int vcpu) = nullptr;
    void (*wake)(void *opaque, int vcpu) = nullptr;
    void (*trace)(void *opaque, int event, int vcpu, int target, int64_t arg) = nullptr;
    void *opaque = nullptr;
};

class RealHost final : public HostInterface {
public:
    RealHost(int nr_vcpus, const RealHostCallbacks &cb);

    uint64_t now_ns() override
    {
        return cb_.now_ns ? cb_.now_ns(cb_.opaque) : steady_now_ns();
    }
    /* The TSC clock when the core owns the clock (no now_ns callback). */
    uint64_t pause_now_ns() override
    {
        return cb_.now_ns ? cb_.now_ns(cb_.opaque) : fast_.now_ns();
    }
    bool pause_clock_uses_tsc() const { return !cb_.now_ns && fast_.uses_tsc(); }
    void kick(int vcpu) override;
    void wake(int vcpu) override;
    void wait(int vcpu, uint64_t deadline_ns) override;
    void trace(TraceEvent e, int vcpu, int target, int64_t arg) override;
    bool has_trace() const { return cb_.trace != nullptr; }

private:
    struct Waiter {
        std::mutex m;
        std::condition_variable cv;
        bool token = false;
    };
    RealHostCallbacks cb_;
    FastClock fast_;
    int nr_;
    std::unique_ptr<Waiter[]> waiters_;
};

} // namespace vsched

#endif
