/* vsched core: real host (steady clock, condition variables, callbacks). */
#include "real_host.h"

#include <chrono>

namespace vsched {

uint64_t steady_now_ns()
{
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

RealHost::RealHost(int nr_vcpus, const RealHostCallbacks &cb)
    : cb_(cb), nr_(nr_vcpus), waiters_(new Waiter[nr_vcpus])
{
}

void RealHost::kick(int vcpu)
{
    if (cb_.kick) {
        cb_.kick(cb_.opaque, vcpu);
    }
}

void RealHost::wake(int vcpu)
{
    if (vcpu >= 0 && vcpu < nr_) {
        Waiter &w = waiters_[vcpu];
        {
            std::lock_guard<std::mutex> g(w.m);
            w.token = true;
        }
        w.cv.notify_all();
    }
    if (cb_.wake) {
        cb_.wake(cb_.opaque, vcpu);
    }
}

void RealHost::wait(int vcpu, uint64_t deadline_ns)
{
    if (vcpu < 0 || vcpu >= nr_) {
        return;
    }
    uint64_t now = now_ns();
    auto left = std::chrono::nanoseconds(deadline_ns > now ? deadline_ns - now : 0);
    Waiter &w = waiters_[vcpu];
    std::unique_lock<std::mutex> g(w.m);
    w.cv.wait_for(g, left, [&] { return w.token; });
    w.token = false;
}

void RealHost::trace(TraceEvent e, int vcpu, int target, int64_t arg)
{
    if (cb_.trace) {
        cb_.trace(cb_.opaque, static_cast<int>(e), vcpu, target, arg);
    }
}

} // namespace vsched
