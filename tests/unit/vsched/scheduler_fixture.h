/*
 * A Scheduler on a private pool with its spin detector, driven lock
 * section by lock section (scheduler_test.cc, mechanism_test.cc).
 */
#ifndef VSCHED_TEST_SCHEDULER_FIXTURE_H
#define VSCHED_TEST_SCHEDULER_FIXTURE_H

#include <gtest/gtest.h>

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
    /* Every call starts a fresh "locked section" at time t. */
    void at(uint64_t t)
    {
        now_ = t;
        fx_ = Effects();
        fx_.set_tracing(true);
        s_->begin(now_, &fx_);
    }
    VcpuState st(int v) { return s_->pool().state(v); }
    void ok()
    {
        std::string why;
        ASSERT_TRUE(s_->check_invariants(&why)) << why;
    }

    Counters ctr_;
    std::unique_ptr<SpinDetector> spin_;
    std::unique_ptr<Scheduler> s_;
    Effects fx_;
    uint64_t now_ = 0;
};

} // namespace vsched::test

#endif
