/* Slot scheduler mechanism: gate, release, preemption, handoff, tick. */
#include <gtest/gtest.h>

#include <memory>

#include "scheduler.h"
#include "scheduler_fixture.h"

namespace vsched::test {
namespace {

class SchedulerTest : public SchedulerFixture {
protected:
    bool flag(int v, uint8_t f) { return s_->pool().has_flag(v, f); }
    int slot(int v) { return s_->state().slot_of[v]; }
    uint64_t deadline(int v) { return s_->state().slot_deadline_ns[slot(v)]; }
};

TEST_F(SchedulerTest, FreeSlotsAreGrantedImmediately)
{
    init(4, 2);
    EXPECT_TRUE(s_->acquire(0));
    EXPECT_TRUE(s_->acquire(1));
    EXPECT_EQ(st(0), VcpuState::kRunning);
    EXPECT_EQ(deadline(0), now_ + kSlice);
    EXPECT_FALSE(flag(0, vflag::kReady));
    EXPECT_FALSE(s_->acquire(2));
    EXPECT_EQ(st(2), VcpuState::kQueued);
    EXPECT_TRUE(flag(2, vflag::kReady));   /* woken */
    EXPECT_FALSE(flag(2, vflag::kPreempted));
    EXPECT_EQ(ctr_.get(Ctr::grants_immediate), 2u);
    EXPECT_EQ(ctr_.get(Ctr::acquire_wait), 1u);
    EXPECT_TRUE(s_->acquire(0)); /* already holds */
    EXPECT_FALSE(s_->acquire(2));
    EXPECT_EQ(ctr_.get(Ctr::acquire_spurious), 1u);
    ok();
}

TEST_F(SchedulerTest, HaltPassesSlotToQueueHeadInFifoOrder)
{
    one_slot(4, {3, 1});
    at(1'200'000);
    s_->release(0, ReleaseReason::kHalt);
    EXPECT_EQ(st(0), VcpuState::kHalted);
    EXPECT_EQ(st(3), VcpuState::kRunning);
    EXPECT_EQ(count(Effect::Kind::kWake, 3), 1);
    EXPECT_EQ(deadline(3), now_ + kSlice); /* fresh slice */
    EXPECT_EQ(ctr_.get(Ctr::slot_wait_ns), 200'000u);
    at(1'300'000);
    s_->release(3, ReleaseReason::kStop);
    EXPECT_EQ(st(1), VcpuState::kRunning);
    EXPECT_EQ(st(3), VcpuState::kStopped);
    ok();
}

TEST_F(SchedulerTest, ReleaseOfQueuedVcpuDropsQueueEntry)
{
    one_slot(3, {1, 2});
    s_->release(1, ReleaseReason::kStop);
    EXPECT_EQ(s_->pool().queue_len(), 1);
    EXPECT_EQ(ctr_.get(Ctr::queue_removed), 1u);
    s_->release(0, ReleaseReason::kHalt);
    EXPECT_EQ(st(2), VcpuState::kRunning);
    ok();
}

TEST_F(SchedulerTest, PreemptOnlyAfterDeadlineAndWithWaiters)
{
    init(2, 1);
    const uint64_t t0 = now_;
    ASSERT_TRUE(s_->acquire(0));
    at(t0 + 2 * kSlice);
    EXPECT_FALSE(s_->preempt_if_due(0, 0)); /* nobody waits: a new slice */
    EXPECT_EQ(ctr_.get(Ctr::slice_renewals), 1u);
    at(t0 + 2 * kSlice + kSlice / 2);
    ASSERT_FALSE(s_->acquire(1));
    EXPECT_FALSE(s_->preempt_if_due(0, 0)); /* before the renewed deadline */
    at(t0 + 3 * kSlice);
    EXPECT_TRUE(s_->preempt_if_due(0, 0));
    EXPECT_EQ(st(0), VcpuState::kQueued);
    EXPECT_TRUE(flag(0, vflag::kPreempted));
    EXPECT_TRUE(flag(0, vflag::kReady));
    EXPECT_TRUE(flag(0, vflag::kPreemptedInKernel));
    EXPECT_EQ(st(1), VcpuState::kRunning);
    EXPECT_EQ(count(Effect::Kind::kWake, 1), 1);
    /* 1 is preempted at CPL 3: preempted_in_kernel false. */
    at(now_ + kSlice);
    EXPECT_TRUE(s_->preempt_if_due(1, 3));
    EXPECT_FALSE(flag(1, vflag::kPreemptedInKernel));
    EXPECT_FALSE(flag(0, vflag::kPreempted)); /* sched-in cleared it */
    EXPECT_EQ(ctr_.get(Ctr::preemptions), 2u);
    ok();
}

TEST_F(SchedulerTest, YieldToResults)
{
    init(5, 2);
    ASSERT_TRUE(s_->acquire(0));
    /* Nobody queued: -ESRCH whatever the target. */
    EXPECT_EQ(s_->yield_to(0, 1), kYieldEsrch);
    ASSERT_TRUE(s_->acquire(1));
    ASSERT_FALSE(s_->acquire(2));
    s_->release(3, ReleaseReason::kHalt);
    EXPECT_EQ(s_->yield_to(0, 1), 0);  /* running */
    EXPECT_EQ(s_->yield_to(0, 3), 0);  /* halted */
    EXPECT_EQ(s_->yield_to(0, 4), 0);  /* stopped */
    EXPECT_EQ(s_->yield_to(0, 0), 0);  /* self */
    EXPECT_EQ(s_->yield_to(2, 0), 0);  /* yielder holds no slot */
    ok();
}

TEST_F(SchedulerTest, HandoffGivesSlotAndRestOfSlice)
{
    init(4, 1);
    ASSERT_TRUE(s_->acquire(0));
    uint64_t dl = deadline(0);
    ASSERT_FALSE(s_->acquire(1));
    ASSERT_FALSE(s_->acquire(2));
    at(now_ + 300'000);
    s_->pool().set_flag(0, vflag::kInSpinLoop);
    EXPECT_EQ(s_->yield_to(0, 2), 1);
    EXPECT_EQ(st(2), VcpuState::kRunning);
    EXPECT_EQ(deadline(2), dl);              /* the rest of 0's slice */
    EXPECT_EQ(st(0), VcpuState::kQueued);
    EXPECT_TRUE(flag(0, vflag::kReady));
    EXPECT_FALSE(flag(0, vflag::kPreempted)); /* voluntary */
    EXPECT_TRUE(flag(0, vflag::kInSpinLoop)); /* still "in yield_to" */
    EXPECT_EQ(s_->pool().head(), 1);          /* FIFO order kept */
    EXPECT_EQ(count(Effect::Kind::kWake, 2), 1);
    EXPECT_EQ(ctr_.get(Ctr::handoffs), 1u);
    ok();
    /* When 0 gets a slot back it leaves its spin loop. */
    at(dl);
    ASSERT_TRUE(s_->preempt_if_due(2, 0)); /* slot -> 1 */
    at(now_ + kSlice);
    ASSERT_TRUE(s_->preempt_if_due(1, 0)); /* slot -> 0 */
    EXPECT_EQ(st(0), VcpuState::kRunning);
    EXPECT_FALSE(flag(0, vflag::kInSpinLoop));
    EXPECT_FALSE(flag(0, vflag::kDyEligible));
    ok();
}

/* Two vCPUs yielding to each other over and over cannot keep a third out
 * past the slot's deadline: the handoff keeps the deadline. */
TEST_F(SchedulerTest, PingPongDoesNotStarveThird)
{
    init(3, 1);
    ASSERT_TRUE(s_->acquire(0));
    const uint64_t dl = deadline(0);
    ASSERT_FALSE(s_->acquire(1)); /* the third, queued first */
    ASSERT_FALSE(s_->acquire(2));
    int holder = 0, other = 2;
    for (int i = 0; i < 50; i++) {
        at(now_ + kSlice / 100);
        if (now_ >= dl) {
            break;
        }
        ASSERT_EQ(s_->yield_to(holder, other), 1);
        std::swap(holder, other);
        EXPECT_EQ(deadline(holder), dl);
        EXPECT_EQ(s_->pool().head(), 1);
    }
    at(dl);
    EXPECT_EQ(s_->tick(), dl + kSlice);
    EXPECT_EQ(count(Effect::Kind::kKick, holder), 1);
    ASSERT_TRUE(s_->preempt_if_due(holder, 0));
    EXPECT_EQ(st(1), VcpuState::kRunning);
    EXPECT_LE(ctr_.get(Ctr::slot_wait_max_ns), kSlice);
    ok();
}

/* KVM marking: the yielder is still runnable, so kvm_sched_out() marks it
 * preempted, with preempted_in_kernel from the CPL it spun at. */
TEST_F(SchedulerTest, YielderMarkedPreemptedWithSpinCpl)
{
    one_slot(4, {1, 2});
    s_->set_yielder_marking(true, 0);
    ASSERT_EQ(s_->yield_to(0, 1), 1);
    EXPECT_TRUE(flag(0, vflag::kPreempted));
    EXPECT_TRUE(flag(0, vflag::kPreemptedInKernel));
    s_->set_yielder_marking(true, 3);
    ASSERT_EQ(s_->yield_to(1, 2), 1);
    EXPECT_TRUE(flag(1, vflag::kPreempted));
    EXPECT_FALSE(flag(1, vflag::kPreemptedInKernel));
    ok();
}

TEST_F(SchedulerTest, TickKicksExpiredHoldersOnlyWithWaiters)
{
    init(4, 2);
    ASSERT_TRUE(s_->acquire(0));
    at(now_ + 100'000);
    ASSERT_TRUE(s_->acquire(1));
    const uint64_t dl0 = deadline(0), dl1 = deadline(1);
    at(dl0 - 1);
    EXPECT_EQ(s_->tick(), dl0);
    at(dl0 + 10);
    EXPECT_EQ(s_->tick(), dl1);            /* no waiters: no kick */
    EXPECT_EQ(fx_.size(), 0);
    ASSERT_FALSE(s_->acquire(2));          /* kicks the expired holder */
    EXPECT_EQ(count(Effect::Kind::kKick, 0), 1);
    at(dl0 + 20);
    s_->tick();                            /* no re-kick within a slice */
    EXPECT_EQ(count(Effect::Kind::kKick, 0), 0);
    at(dl1);
    uint64_t next = s_->tick();
    EXPECT_EQ(count(Effect::Kind::kKick, 1), 1);
    EXPECT_EQ(next, dl0 + 10 + kSlice);    /* re-kick time of 0 */
    at(dl0 + 10 + kSlice);
    s_->tick();
    EXPECT_EQ(count(Effect::Kind::kKick, 0), 1);
    EXPECT_EQ(ctr_.get(Ctr::kicks), 3u);
}

TEST_F(SchedulerTest, VoluntaryYieldRequeuesOnlyWithWaiters)
{
    init(3, 1);
    ASSERT_TRUE(s_->acquire(0));
    s_->release(0, ReleaseReason::kYield);
    EXPECT_EQ(st(0), VcpuState::kRunning);
    ASSERT_FALSE(s_->acquire(1));
    s_->release(0, ReleaseReason::kYield);
    EXPECT_EQ(st(0), VcpuState::kQueued);
    EXPECT_EQ(st(1), VcpuState::kRunning);
    EXPECT_FALSE(flag(0, vflag::kPreempted));
    EXPECT_EQ(ctr_.get(Ctr::voluntary_yields), 1u);
    ok();
}

TEST_F(SchedulerTest, TransitionsAreChecked)
{
    init(2, 1);
    SlotPool p = s_->pool();
    EXPECT_TRUE(p.set_state(0, VcpuState::kHalted));
    EXPECT_TRUE(p.set_state(0, VcpuState::kRunning));
    EXPECT_FALSE(p.set_state(0, VcpuState::kRunning)); /* second slot */
    EXPECT_TRUE(p.set_state(0, VcpuState::kQueued));
    EXPECT_FALSE(p.set_state(0, VcpuState::kQueued));  /* second entry */
    EXPECT_TRUE(transition_allowed(VcpuState::kStopped, VcpuState::kHalted));
    EXPECT_FALSE(transition_allowed(VcpuState::kRunning, VcpuState::kRunning));
    EXPECT_STREQ(state_name(VcpuState::kQueued), "runnable-queued");
}

TEST_F(SchedulerTest, HaltResetsSpinWindowAndDropsPendingSpin)
{
    init(2, 1);
    ASSERT_TRUE(s_->acquire(0));
    uint64_t t = 1000;
    for (int i = 0; i < 20; i++) {
        spin_->on_pause(0, 0, t += 5'000);
    }
    ASSERT_TRUE(spin_->pending(0));
    spin_->grow_window(0);
    ASSERT_GT(spin_->window(0), spin_->base_window());
    s_->release(0, ReleaseReason::kHalt);
    EXPECT_EQ(spin_->window(0), spin_->base_window());
    EXPECT_FALSE(spin_->pending(0));
    EXPECT_EQ(ctr_.get(Ctr::spins_dropped), 1u);
    EXPECT_EQ(ctr_.get(Ctr::ple_window_reset), 1u);
}

TEST(SlotPool, PlainDataQueueOps)
{
    auto ps = std::make_unique<PoolState>();
    SlotPool p(*ps);
    p.init(6, 2);
    EXPECT_EQ(p.free_slots(), 2);
    EXPECT_EQ(p.take_free_slot(), 0);
    for (int v : {4, 1, 5, 2}) {
        p.enqueue_tail(v);
    }
    p.remove(5);
    p.remove(4);
    EXPECT_EQ(p.head(), 1);
    EXPECT_EQ(p.queue_len(), 2);
    EXPECT_TRUE(p.queued(2));
    EXPECT_FALSE(p.queued(4));
    p.remove(1);
    p.remove(2);
    EXPECT_EQ(p.head(), kNone);
    /* A copy is a complete, independent pool (no pointers inside). */
    p.enqueue_tail(3);
    auto copy = std::make_unique<PoolState>(*ps);
    SlotPool q(*copy);
    q.remove(3);
    EXPECT_TRUE(p.queued(3));
    EXPECT_FALSE(q.queued(3));
}

} // namespace
} // namespace vsched::test
