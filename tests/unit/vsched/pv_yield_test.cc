/* The guest's PV sched yield (KVM_HC_SCHED_YIELD, pv-sched-yield=on) on
 * the simulated host: the request is taken at the caller's next exit,
 * before any spin decision, and hands its slot to a queued target only. */
#include <gtest/gtest.h>

#include <memory>

#include "core.h"
#include "sim_host.h"

namespace vsched::test {
namespace {

class PvYieldTest : public ::testing::Test {
protected:
    /* n vCPUs on `slots` slots; vCPU 0 holds one, 1 gets the next or
     * waits. */
    void init(int n, PolicyId pol = policy_id("vanilla"), int slots = 1)
    {
        core_.reset(); /* it uses the host up to its end */
        host_ = std::make_unique<SimHost>(n);
        Config c;
        c.pcpus = slots;
        c.slice_ns = 1'000'000;
        c.set_policy(pol);
        std::string err;
        core_ = Core::create(c, n, *host_, &err);
        ASSERT_TRUE(core_) << err;
        core_->set_tracing(true);
        ASSERT_TRUE(core_->acquire(0));
        ASSERT_EQ(core_->acquire(1), slots > 1);
    }
    VcpuState state(int v)
    {
        VcpuInfo i;
        EXPECT_TRUE(core_->vcpu_info(v, &i));
        return state_of(i);
    }
    uint64_t ctr(Ctr c) { return core_->counters()[c]; }
    /* The one kPvYield trace: its target and result. */
    void expect_traced(int v, int target, int64_t handed)
    {
        int n = 0;
        for (const auto &t : host_->traces()) {
            if (t.event == TraceEvent::kPvYield) {
                EXPECT_EQ(t.vcpu, v);
                EXPECT_EQ(t.target, target);
                EXPECT_EQ(t.arg, handed);
                n++;
            }
        }
        EXPECT_EQ(n, 1);
    }
    /* 0 asks to yield to target; its exit must keep the slot. */
    void expect_miss(int target)
    {
        core_->pv_yield(0, target);
        EXPECT_FALSE(core_->after_exec(0, 0));
        EXPECT_EQ(state(0), VcpuState::kRunning);
        EXPECT_EQ(ctr(Ctr::pv_yield_requests), 1u);
        EXPECT_EQ(ctr(Ctr::pv_yields), 0u);
        EXPECT_EQ(ctr(Ctr::pv_yield_misses), 1u);
        EXPECT_EQ(ctr(Ctr::handoffs), 0u);
        expect_traced(0, target, 0);
        std::string why;
        EXPECT_TRUE(core_->check_invariants(&why)) << why;
    }

    std::unique_ptr<SimHost> host_;
    std::unique_ptr<Core> core_;
};

TEST_F(PvYieldTest, HandsTheSlotToAQueuedTarget)
{
    init(3);
    core_->pv_yield(0, 1);
    EXPECT_TRUE(core_->after_exec(0, 0)); /* lost the slot */
    EXPECT_TRUE(host_->take_wake(1));
    EXPECT_EQ(state(0), VcpuState::kQueued);
    EXPECT_EQ(state(1), VcpuState::kRunning);
    EXPECT_TRUE(core_->acquire(1));
    EXPECT_FALSE(core_->acquire(0));
    EXPECT_EQ(ctr(Ctr::pv_yield_requests), 1u);
    EXPECT_EQ(ctr(Ctr::pv_yields), 1u);
    EXPECT_EQ(ctr(Ctr::pv_yield_misses), 0u);
    EXPECT_EQ(ctr(Ctr::handoffs), 1u);
    EXPECT_EQ(ctr(Ctr::spin_decisions), 0u); /* no policy was asked */
    expect_traced(0, 1, 1);
    /* Taken once: the next exit has nothing to do. */
    EXPECT_FALSE(core_->after_exec(1, 0));
    EXPECT_EQ(ctr(Ctr::pv_yield_requests), 1u);
}

TEST_F(PvYieldTest, MissesARunningTarget)
{
    init(3, policy_id("vanilla"), 2); /* 0 and 1 hold the two slots */
    ASSERT_FALSE(core_->acquire(2));  /* someone waits */
    expect_miss(1);
    EXPECT_EQ(state(1), VcpuState::kRunning);
}

/* KVM's kvm_sched_yield() to a ready target with no contention: the
 * scheduler's -ESRCH, a miss. */
TEST_F(PvYieldTest, MissesWhenNobodyWaits)
{
    init(2, policy_id("vanilla"), 2);
    expect_miss(1);
}

TEST_F(PvYieldTest, MissesAHaltedTarget)
{
    init(3);
    core_->release(2, ReleaseReason::kHalt);
    ASSERT_EQ(state(2), VcpuState::kHalted);
    expect_miss(2);
}

TEST_F(PvYieldTest, MissesAnInvalidTarget)
{
    init(3);
    expect_miss(3);
}

TEST_F(PvYieldTest, MissesANegativeTarget)
{
    init(3);
    expect_miss(-1); /* an APIC ID the glue found no vCPU for */
}

TEST_F(PvYieldTest, MissesItself)
{
    init(3);
    expect_miss(0);
}

/* Runs before the spin decision: after the hand-off the spin is dropped. */
TEST_F(PvYieldTest, ComesBeforeASpinDecision)
{
    init(3, policy_id("ipi"));
    core_->inject_spin(0, 0);
    core_->pv_yield(0, 1);
    EXPECT_TRUE(core_->after_exec(0, 0));
    EXPECT_EQ(state(1), VcpuState::kRunning);
    EXPECT_EQ(ctr(Ctr::pv_yields), 1u);
    EXPECT_EQ(ctr(Ctr::spins_dropped), 1u);
    EXPECT_EQ(ctr(Ctr::spin_decisions), 0u);
}

/* A request left by a vCPU that then stopped is dropped, not replayed. */
TEST_F(PvYieldTest, ReleaseDropsAPendingRequest)
{
    init(3);
    core_->pv_yield(0, 1);
    core_->release(0, ReleaseReason::kStop);
    EXPECT_TRUE(host_->take_wake(1));
    ASSERT_TRUE(core_->acquire(1));
    ASSERT_FALSE(core_->acquire(0));
    core_->release(1, ReleaseReason::kHalt);
    ASSERT_TRUE(core_->acquire(0));
    EXPECT_FALSE(core_->after_exec(0, 0));
    EXPECT_EQ(ctr(Ctr::pv_yield_requests), 0u);
}

} // namespace
} // namespace vsched::test
