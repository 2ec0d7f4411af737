/* Delayed preemption (preempt-delay): a holder due for preemption in
 * kernel mode keeps its slot until its first exit in user mode or the end
 * of one grace per grant; the scheduler's mechanism, the tick that makes
 * the holder exit, and the policy's opt-in through the core. */
#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "core.h"
#include "scheduler_fixture.h"
#include "sim_host.h"

namespace vsched::test {
namespace {

constexpr uint64_t kGrace = 200'000;
constexpr int kKernel = 0, kUser = 3;

class PreemptDelayTest : public SchedulerFixture {
protected:
    /* vCPU 0 holds the only slot from 1 ms (deadline 2 ms), 1 waits. */
    void holder_and_waiter()
    {
        one_slot(4, {1});
        s_->set_preempt_delay(kGrace);
    }
    /* Effect count of a preempt-delay trace of `phase` in this section. */
    int delay_traced(int phase)
    {
        return count_if([&](const Effect &x) {
            return x.kind == Effect::Kind::kTrace && x.event == TraceEvent::kPreemptDelay &&
                   x.target == phase;
        });
    }
};

TEST_F(PreemptDelayTest, DeferredInKernelPreemptedAtTheUserModeExit)
{
    holder_and_waiter();
    at(2'000'000); /* the deadline: due, in kernel mode */
    EXPECT_FALSE(s_->preempt_if_due(0, kKernel));
    EXPECT_EQ(st(0), VcpuState::kRunning);
    EXPECT_EQ(ctr_.get(Ctr::preempt_delays), 1u);
    EXPECT_EQ(delay_traced(0), 1);
    /* Its exits must take the lock: the hint deadline stays past. */
    EXPECT_LE(s_->held_deadline(0), now_);
    at(2'050'000); /* still in kernel mode, inside the grace */
    EXPECT_FALSE(s_->preempt_if_due(0, kKernel));
    EXPECT_EQ(st(0), VcpuState::kRunning);
    at(2'080'000); /* back in user mode */
    EXPECT_TRUE(s_->preempt_if_due(0, kUser));
    EXPECT_EQ(st(0), VcpuState::kQueued);
    EXPECT_EQ(st(1), VcpuState::kRunning);
    EXPECT_EQ(ctr_.get(Ctr::preempt_delay_user), 1u);
    EXPECT_EQ(ctr_.get(Ctr::preempt_delay_expired), 0u);
    EXPECT_EQ(ctr_.get(Ctr::preempt_delay_ns), 80'000u);
    EXPECT_EQ(delay_traced(1), 1);
    /* Preempted from user mode: not marked preempted in kernel. */
    EXPECT_FALSE(s_->pool().has_flag(0, vflag::kPreemptedInKernel));
    ok();
}

TEST_F(PreemptDelayTest, PreemptedInKernelWhenTheGraceRunsOut)
{
    holder_and_waiter();
    at(2'010'000);
    EXPECT_FALSE(s_->preempt_if_due(0, kKernel));
    at(2'000'000 + kGrace - 1);
    EXPECT_FALSE(s_->preempt_if_due(0, kKernel));
    at(2'000'000 + kGrace); /* deadline + grace: over, whatever the mode */
    EXPECT_TRUE(s_->preempt_if_due(0, kKernel));
    EXPECT_EQ(st(1), VcpuState::kRunning);
    EXPECT_EQ(ctr_.get(Ctr::preempt_delay_expired), 1u);
    EXPECT_EQ(ctr_.get(Ctr::preempt_delay_user), 0u);
    EXPECT_EQ(ctr_.get(Ctr::preempt_delay_ns), kGrace - 10'000);
    EXPECT_EQ(delay_traced(2), 1);
    EXPECT_TRUE(s_->pool().has_flag(0, vflag::kPreemptedInKernel));
    ok();
}

/* A first due exit already past deadline + grace is not deferred. */
TEST_F(PreemptDelayTest, NoDeferralWhenTheFirstDueExitIsPastTheGrace)
{
    holder_and_waiter();
    at(2'000'000 + kGrace);
    EXPECT_TRUE(s_->preempt_if_due(0, kKernel));
    EXPECT_EQ(ctr_.get(Ctr::preempt_delays), 0u);
    ok();
}

/* One grace per grant: a renewal (nobody waited for a moment) ends the
 * deferral, and the renewed slice is preempted in kernel mode at once. */
TEST_F(PreemptDelayTest, OneGracePerGrant)
{
    init(4, 1);
    s_->set_preempt_delay(kGrace);
    ASSERT_TRUE(s_->acquire(0));
    ASSERT_FALSE(s_->acquire(1));
    at(2'000'000);
    EXPECT_FALSE(s_->preempt_if_due(0, kKernel)); /* deferred */
    s_->release(1, ReleaseReason::kHalt);        /* the waiter goes */
    at(2'050'000);
    EXPECT_FALSE(s_->preempt_if_due(0, kKernel)); /* renewed: to 3.05 ms */
    EXPECT_EQ(s_->held_deadline(0), 2'050'000 + kSlice);
    ASSERT_FALSE(s_->acquire(1));
    at(2'050'000 + kSlice);
    EXPECT_TRUE(s_->preempt_if_due(0, kKernel)); /* no second grace */
    EXPECT_EQ(ctr_.get(Ctr::preempt_delays), 1u);
    EXPECT_EQ(ctr_.get(Ctr::preempt_delay_user) + ctr_.get(Ctr::preempt_delay_expired), 0u);
    /* A new grant gets a new grace. */
    at(3'050'000 + kSlice);
    EXPECT_FALSE(s_->preempt_if_due(1, kKernel));
    EXPECT_EQ(ctr_.get(Ctr::preempt_delays), 2u);
    ok();
}

TEST_F(PreemptDelayTest, NotDeferredWhenNobodyWaitsOffOrInUserMode)
{
    init(4, 1);
    s_->set_preempt_delay(kGrace);
    ASSERT_TRUE(s_->acquire(0));
    at(2'000'000); /* nobody waits: a renewal, no deferral */
    EXPECT_FALSE(s_->preempt_if_due(0, kKernel));
    EXPECT_EQ(ctr_.get(Ctr::slice_renewals), 1u);
    EXPECT_EQ(ctr_.get(Ctr::preempt_delays), 0u);
    ASSERT_FALSE(s_->acquire(1));
    at(3'000'000); /* due in user mode: preempted as always */
    EXPECT_TRUE(s_->preempt_if_due(0, kUser));
    EXPECT_EQ(st(1), VcpuState::kRunning);
    s_->set_preempt_delay(0); /* off: preempted in kernel mode too */
    at(4'000'000);
    EXPECT_TRUE(s_->preempt_if_due(1, kKernel));
    EXPECT_EQ(ctr_.get(Ctr::preempt_delays), 0u);
    ok();
}

/* A wake preemption's ask is not deferred. */
TEST_F(PreemptDelayTest, WakePreemptionIsNotDeferred)
{
    init(4, 1);
    s_->set_preempt_delay(kGrace);
    s_->set_wake_preempt(true, 100'000);
    ASSERT_TRUE(s_->acquire(0));
    ASSERT_FALSE(s_->acquire(1));
    at(1'500'000);
    s_->note_wake(2, kWakeIpi, now_);
    ASSERT_FALSE(s_->acquire(2));
    ASSERT_EQ(s_->take_wake_preempted(), 0);
    EXPECT_TRUE(s_->preempt_if_due(0, kKernel));
    EXPECT_EQ(st(2), VcpuState::kRunning);
    EXPECT_EQ(ctr_.get(Ctr::preempt_delays), 0u);
    ok();
}

/* The tick leaves a deferred holder alone until the grace ends, then
 * kicks it once so that its next exit preempts it. */
TEST_F(PreemptDelayTest, TickKicksTheDeferredHolderAtTheGraceEnd)
{
    holder_and_waiter();
    at(2'000'000);
    EXPECT_EQ(s_->tick(), 2'000'000 + kSlice); /* the deadline kick */
    EXPECT_EQ(count(Effect::Kind::kKick, 0), 1);
    at(2'010'000);
    EXPECT_FALSE(s_->preempt_if_due(0, kKernel));
    at(2'100'000);
    EXPECT_EQ(s_->tick(), 2'000'000 + kGrace); /* call again at the grace end */
    EXPECT_EQ(count(Effect::Kind::kKick, 0), 0);
    at(2'000'000 + kGrace);
    s_->tick();
    EXPECT_EQ(count(Effect::Kind::kKick, 0), 1);
    at(2'000'000 + kGrace + 1'000);
    s_->tick();
    EXPECT_EQ(count(Effect::Kind::kKick, 0), 0); /* once */
    EXPECT_TRUE(s_->preempt_if_due(0, kKernel));
    ok();
}

/* The bound: however the holders' modes and exits fall, no queue head
 * waits longer than (slice + grace) per holder ahead of it.  One slot,
 * holders in kernel mode most of the time, exits every 7..40 us. */
TEST_F(PreemptDelayTest, QueueHeadWaitsAtMostSlicePlusGrace)
{
    init(4, 1);
    s_->set_preempt_delay(kGrace);
    for (int v = 0; v < 4; v++) {
        s_->acquire(v);
    }
    std::mt19937 rng(7);
    uint64_t t = now_;
    uint64_t granted = t;
    int holder = 0;
    uint64_t longest = 0;
    for (int i = 0; i < 200'000; i++) {
        t += 7'000 + rng() % 33'000;
        at(t);
        const int cpl = rng() % 8 == 0 ? kUser : kKernel;
        if (s_->preempt_if_due(holder, cpl)) {
            longest = std::max(longest, t - granted);
            for (int v = 0; v < 4; v++) {
                if (st(v) == VcpuState::kRunning) {
                    holder = v;
                }
            }
            granted = t;
        }
    }
    /* An exit lands at most 40 us after deadline + grace. */
    EXPECT_LE(longest, kSlice + kGrace + 40'000);
    EXPECT_GT(longest, kSlice + 40'000); /* deferrals happened */
    EXPECT_GT(ctr_.get(Ctr::preempt_delay_user), 0u);
    EXPECT_GT(ctr_.get(Ctr::preempt_delay_expired), 0u);
    ok();
}

/* Through the core: ipi-prio asks for it, and the property switches it;
 * vanilla does not ask.  The deferred holder's exits take the lock. */
TEST(PreemptDelayCore, ThePolicysChoiceAndThePropertysValue)
{
    struct Case {
        const char *policy;
        uint64_t grace;
        bool deferred;
    } cases[] = {{"ipi-prio", kGrace, true}, {"ipi-prio", 0, false}, {"vanilla", kGrace, false}};
    for (const Case &k : cases) {
        SimHost host(4);
        Config c;
        c.pcpus = 1;
        c.slice_ns = 1'000'000;
        c.set_policy(policy_id(k.policy));
        std::string err;
        auto core = Core::create(c, 4, host, &err);
        ASSERT_TRUE(core) << err;
        core->set_preempt_delay_ns(k.grace);
        EXPECT_EQ(core->preempt_delay_ns(), k.grace);
        ASSERT_TRUE(core->acquire(0));
        ASSERT_FALSE(core->acquire(1));
        host.advance(1'000'000);
        EXPECT_EQ(core->after_exec(0, kKernel), !k.deferred) << k.policy << " " << k.grace;
        EXPECT_EQ(core->counters()[Ctr::preempt_delays], k.deferred ? 1u : 0u);
        if (!k.deferred) {
            continue;
        }
        const uint64_t unlocked = core->counters()[Ctr::exec_exits_unlocked];
        host.advance(10'000);
        EXPECT_FALSE(core->after_exec(0, kKernel));
        EXPECT_EQ(core->counters()[Ctr::exec_exits_unlocked], unlocked); /* locked */
        host.advance(10'000);
        EXPECT_TRUE(core->after_exec(0, kUser));
        EXPECT_EQ(core->counters()[Ctr::preempt_delay_user], 1u);
        std::string why;
        EXPECT_TRUE(core->check_invariants(&why)) << why;
    }
}

} // namespace
} // namespace vsched::test
