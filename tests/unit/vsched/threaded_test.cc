/*
 * Real host, real threads: vCPU threads contend for slots through the gate
 * while a timer thread ticks.  Checks that no two threads ever run "guest
 * code" on the same slot, that the slot count bounds concurrency, and that
 * everyone makes progress.
 */
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "core.h"
#include "real_host.h"

namespace vsched::test {
namespace {

struct Shared {
    Core *core = nullptr;
    std::atomic<int> in_guest{0};
    std::atomic<int> max_in_guest{0};
    std::atomic<bool> stop{false};
};

void kick_cb(void *o, int) { (void)o; }

TEST(Threaded, GateBoundsConcurrencyAndEveryoneRuns)
{
    constexpr int kVcpus = 6, kSlots = 2;
    Shared sh;
    RealHostCallbacks cb;
    cb.kick = kick_cb;
    cb.opaque = &sh;
    RealHost host(kVcpus, cb);
    Config c;
    c.pcpus = kSlots;
    c.slice_ns = 200'000;
    c.set_policy(policy_id("ipi-prio"));
    c.ple_gap_ns = 50'000;
    c.ple_window_ns = 20'000;
    std::string err;
    auto core = Core::create(c, kVcpus, host, &err);
    ASSERT_TRUE(core) << err;
    sh.core = core.get();
    std::vector<std::atomic<int>> runs(kVcpus);
    std::vector<std::thread> th;
    for (int v = 0; v < kVcpus; v++) {
        th.emplace_back([&, v] {
            while (!sh.stop.load()) {
                if (!core->acquire_blocking(v, &sh.stop)) {
                    break;
                }
                int now = ++sh.in_guest;
                int m = sh.max_in_guest.load();
                while (now > m && !sh.max_in_guest.compare_exchange_weak(m, now)) {
                }
                runs[v]++;
                /* "guest code": a short PAUSE loop, sometimes an IPI */
                for (int i = 0; i < 50; i++) {
                    core->on_pause(v, 0);
                }
                int dst = (v + 1) % kVcpus;
                core->on_ipi(v, &dst, 1, 0xfb, kApicDmFixed, kApicShNone);
                --sh.in_guest;
                if (core->after_exec(v, 0)) {
                    continue;
                }
                if (runs[v] % 7 == 0) {
                    core->release(v, ReleaseReason::kHalt);
                } else if (runs[v] % 5 == 0) {
                    core->release(v, ReleaseReason::kYield);
                }
            }
            core->release(v, ReleaseReason::kStop);
        });
    }
    std::thread timer([&] {
        while (!sh.stop.load()) {
            core->tick();
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    sh.stop = true;
    for (int v = 0; v < kVcpus; v++) {
        host.wake(v);
    }
    for (auto &t : th) {
        t.join();
    }
    timer.join();
    EXPECT_LE(sh.max_in_guest.load(), kSlots);
    for (int v = 0; v < kVcpus; v++) {
        EXPECT_GT(runs[v].load(), 0) << "vCPU " << v << " never ran";
    }
    std::string why;
    EXPECT_TRUE(core->check_invariants(&why)) << why;
    auto ctr = core->counters();
    EXPECT_GT(ctr[Ctr::grants_from_queue], 0u);
}

} // namespace
} // namespace vsched::test
