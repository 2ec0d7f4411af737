/*
 * A Scheduler on a private pool with its spin detector, driven lock
 * section by lock section (scheduler_test.cc, mechanism_test.cc).
 */
#ifndef VSCHED_TEST_SCHEDULER_FIXTURE_H
#define VSCHED_TEST_SCHEDULER_FIXTURE_H

#include <gtest/gtest.h>

#include <initializer_list>
#include <memory>
#include <string>

#include "scheduler.h"

namespace vsched::test {

class SchedulerFixture : public ::testing::Test {
protected:
    static constexpr uint64_t kSlice = 1'000'000;

    /* n vCPUs, `slots` slots; a queued vCPU may be passed `bound` times. */
    void init(int n, int slots, unsigned bound = 2)
    {
        spin_ = std::make_unique<SpinDetector>(n, 10'000, 50'000, 400'000, 2);
        s_ = std::make_unique<Scheduler>(n, slots, kSlice, ctr_, *spin_);
        s_->set_lift_bound(bound);
        at(1'000'000);
    }
    /* n vCPUs on one slot: vCPU 0 holds it, `queued` wait in that order. */
    void one_slot(int n, std::initializer_list<int> queued, unsigned bound = 2)
    {
        init(n, 1, bound);
        ASSERT_TRUE(s_->acquire(0));
        for (int v : queued) {
            ASSERT_FALSE(s_->acquire(v)) << v;
        }
    }
    /* Every call starts a fresh "locked section" at time t. */
    void at(uint64_t t)
    {
        now_ = t;
        fx_ = Effects();
        fx_.set_tracing(true);
        s_->begin(now_, &fx_);
    }
    VcpuState st(int v) { return s_->pool().state(v); }
    /* Effects of the current locked section: kicks or wakes of v, traces
     * of event e. */
    int count(Effect::Kind k, int v)
    {
        return count_if([&](const Effect &x) { return x.kind == k && x.vcpu == v; });
    }
    int traced(TraceEvent e)
    {
        return count_if(
            [&](const Effect &x) { return x.kind == Effect::Kind::kTrace && x.event == e; });
    }
    void ok()
    {
        std::string why;
        ASSERT_TRUE(s_->check_invariants(&why)) << why;
    }
    template <typename Match>
    int count_if(Match match) const
    {
        int c = 0;
        for (int i = 0; i < fx_.size(); i++) {
            c += match(fx_[i]);
        }
        return c;
    }

    Counters ctr_;
    std::unique_ptr<SpinDetector> spin_;
    std::unique_ptr<Scheduler> s_;
    Effects fx_;
    uint64_t now_ = 0;
};

} // namespace vsched::test

#endif
