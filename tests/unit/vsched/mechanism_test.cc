/* The scheduler's mechanisms a policy may use (ipi-prio does): the lift
 * of an IPI-woken vCPU, the halt handoff to a receiver, the wake
 * preemption, and their common starvation bound; and the where-the-time-goes counters (IPI-to-run
 * latency, slot idle time). */
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <vector>

#include "scheduler.h"
#include "overtake_ledger.h"
#include "scheduler_fixture.h"

namespace vsched::test {
namespace {

class MechanismTest : public SchedulerFixture {
protected:
    /* The run queue, head first. */
    std::vector<int> queue()
    {
        std::vector<int> q;
        SlotPool p = s_->pool();
        for (int x = p.head(); x != kNone; x = p.next(x)) {
            q.push_back(x);
        }
        return q;
    }
    /* v was halted and an IPI woke it: it queues with lift on. */
    bool ipi_wake(int v)
    {
        s_->note_wake(v, kWakeIpi, now_);
        return s_->acquire(v, true);
    }
};

using V = std::vector<int>;

TEST_F(MechanismTest, IpiWokenVcpuQueuesAhead)
{
    one_slot(4, {1});
    ASSERT_FALSE(ipi_wake(2));
    EXPECT_EQ(queue(), (V{2, 1}));
    EXPECT_EQ(ctr_.get(Ctr::ipi_wake_lifts), 1u);
    EXPECT_EQ(traced(TraceEvent::kIpiLift), 1);
    ok();
    /* The head gets the next slot. */
    s_->release(0, ReleaseReason::kHalt);
    EXPECT_EQ(st(2), VcpuState::kRunning);
}

TEST_F(MechanismTest, NoLiftWithoutIpiOrWhenNotAsked)
{
    one_slot(4, {1});
    ASSERT_FALSE(s_->acquire(2, true)); /* a timer wake: no IPI hint */
    s_->note_wake(3, kWakeIpi, now_);
    ASSERT_FALSE(s_->acquire(3)); /* the policy did not ask */
    EXPECT_EQ(queue(), (V{1, 2, 3}));
    EXPECT_EQ(ctr_.get(Ctr::ipi_wake_lifts), 0u);
    ok();
}

/* Lifts pass the head at most `bound` times; later lifts queue behind it. */
TEST_F(MechanismTest, LiftStopsBehindAVcpuPassedBoundTimes)
{
    one_slot(8, {1}, 2);
    ipi_wake(2); /* passes 1 */
    ipi_wake(3); /* passes 2 and 1: 1 is at the bound */
    EXPECT_EQ(queue(), (V{3, 2, 1}));
    ipi_wake(4); /* nobody it may pass */
    EXPECT_EQ(queue(), (V{3, 2, 1, 4}));
    EXPECT_EQ(ctr_.get(Ctr::ipi_wake_lift_bounded), 1u);
    ipi_wake(5); /* passes 4 only */
    EXPECT_EQ(queue(), (V{3, 2, 1, 5, 4}));
    EXPECT_EQ(ctr_.get(Ctr::ipi_wake_lifts), 3u);
    ok();
}

TEST_F(MechanismTest, BoundZeroNeverLifts)
{
    one_slot(4, {1}, 0);
    ipi_wake(2);
    EXPECT_EQ(queue(), (V{1, 2}));
    EXPECT_EQ(ctr_.get(Ctr::ipi_wake_lifts), 0u);
}

TEST_F(MechanismTest, HaltHandsSlotToQueuedSuccessor)
{
    one_slot(4, {1, 2});
    at(1'300'000);
    s_->release(0, ReleaseReason::kHalt, 2);
    EXPECT_EQ(st(2), VcpuState::kRunning);
    EXPECT_EQ(st(0), VcpuState::kHalted);
    EXPECT_EQ(s_->held_deadline(2), now_ + kSlice); /* a fresh slice */
    EXPECT_EQ(queue(), (V{1}));
    EXPECT_EQ(ctr_.get(Ctr::halt_handoffs), 1u);
    EXPECT_EQ(traced(TraceEvent::kHaltHandoff), 1);
    ok();
}

TEST_F(MechanismTest, HaltHandoffNeedsAQueuedSuccessor)
{
    one_slot(4, {1});
    s_->release(0, ReleaseReason::kHalt, 3); /* 3 is halted, not queued */
    EXPECT_EQ(st(1), VcpuState::kRunning);   /* the queue head */
    EXPECT_EQ(ctr_.get(Ctr::halt_handoffs), 0u);
    ok();
}

TEST_F(MechanismTest, HaltHandoffRespectsTheBound)
{
    one_slot(4, {1, 2, 3}, 1);
    s_->release(0, ReleaseReason::kHalt, 2); /* passes 1 once */
    EXPECT_EQ(st(2), VcpuState::kRunning);
    s_->release(2, ReleaseReason::kHalt, 3); /* 1 is at the bound */
    EXPECT_EQ(st(1), VcpuState::kRunning);
    EXPECT_EQ(st(3), VcpuState::kQueued);
    EXPECT_EQ(ctr_.get(Ctr::halt_handoff_bounded), 1u);
    ok();
}

/* The starvation bound under a random mix of lifts, halt handoffs,
 * preemptions and plain wakes: a vCPU is overtaken by at most `bound`
 * vCPUs that queued after it, every wait. */
TEST_F(MechanismTest, NobodyIsOvertakenMoreThanTheBound)
{
    constexpr int kN = 12;
    constexpr unsigned kBound = 2;
    init(kN, 2, kBound);
    std::mt19937 rng(7);
    OvertakeLedger ledger(kN);
    uint64_t t = 1'000'000;
    for (int step = 0; step < 20000; step++) {
        t += 1000 + rng() % 500'000;
        at(t);
        std::vector<VcpuState> before(kN);
        for (int v = 0; v < kN; v++) {
            before[v] = st(v);
        }
        int v = static_cast<int>(rng() % kN);
        switch (st(v)) {
        case VcpuState::kHalted:
        case VcpuState::kStopped:
            if (rng() % 2) {
                ipi_wake(v);
            } else {
                s_->acquire(v, true);
            }
            break;
        case VcpuState::kRunning: {
            int succ = static_cast<int>(rng() % kN);
            if (rng() % 2) {
                s_->release(v, ReleaseReason::kHalt, succ);
            } else {
                s_->preempt_if_due(v, 0);
            }
            break;
        }
        case VcpuState::kQueued:
            break;
        }
        ledger.step(before, [&](int g) { return st(g); });
        ok();
    }
    EXPECT_GT(ctr_.get(Ctr::ipi_wake_lifts), 100u);
    EXPECT_GT(ctr_.get(Ctr::halt_handoffs), 100u);
    EXPECT_GT(ctr_.get(Ctr::ipi_wake_lift_bounded) + ctr_.get(Ctr::halt_handoff_bounded), 0u);
    EXPECT_LE(ledger.max_overtaken(), static_cast<int>(kBound));
    EXPECT_EQ(ledger.max_overtaken(), static_cast<int>(kBound)); /* the bound is reached */
}

/* yield-lift: a directed-yield yielder requeues at the head, not behind
 * every waiter; off, at the tail (KVM-style FIFO requeue). */
TEST_F(MechanismTest, YielderRequeuesAheadWhenAsked)
{
    for (bool on : {true, false}) {
        one_slot(4, {1, 2});
        s_->set_yielder_lift(on);
        ASSERT_EQ(s_->yield_to(0, 2), 1);
        EXPECT_EQ(queue(), on ? (V{0, 1}) : (V{1, 0}));
        EXPECT_EQ(ctr_.get(Ctr::yielder_lifts), on ? 1u : 0u);
        EXPECT_EQ(traced(TraceEvent::kYielderLift), on ? 1 : 0);
        ok();
        ctr_.reset();
    }
}

/* wake-preempt: an IPI-woken vCPU that has to queue asks the holder that
 * has run longest (at least the granularity) to leave; that holder's next
 * exit hands it the slot with a fresh slice, and it waits at the tail. */
TEST_F(MechanismTest, WakePreemptHandsTheLongestHolderSlotToTheWoken)
{
    init(4, 2);
    s_->set_wake_preempt(true, 300'000);
    ASSERT_TRUE(s_->acquire(0));        /* granted at 1.0 ms */
    at(1'200'000);
    ASSERT_TRUE(s_->acquire(1));        /* granted at 1.2 ms */
    at(1'600'000);
    s_->note_wake(2, kWakeIpi, now_);
    ASSERT_FALSE(s_->acquire(2));       /* 0 ran 600 us, 1 ran 400 us */
    EXPECT_EQ(s_->take_wake_preempted(), 0);
    EXPECT_EQ(s_->held_deadline(0), now_); /* its hint: leave now */
    EXPECT_EQ(s_->held_deadline(1), 1'200'000 + kSlice);
    EXPECT_EQ(ctr_.get(Ctr::wake_preempt_asks), 1u);
    int kicks = 0;
    for (int i = 0; i < fx_.size(); i++) {
        kicks += fx_[i].kind == Effect::Kind::kKick && fx_[i].vcpu == 0;
    }
    EXPECT_EQ(kicks, 1);
    ok();
    at(1'610'000);
    EXPECT_TRUE(s_->preempt_if_due(0, 0)); /* before its deadline */
    EXPECT_EQ(st(2), VcpuState::kRunning);
    EXPECT_EQ(st(0), VcpuState::kQueued);
    EXPECT_EQ(s_->held_deadline(2), now_ + kSlice);
    EXPECT_EQ(queue(), (V{0}));
    EXPECT_EQ(ctr_.get(Ctr::wake_preempts), 1u);
    EXPECT_EQ(traced(TraceEvent::kWakePreempt), 1);
    EXPECT_EQ(fx_[fx_.size() - 1].arg, 610'000); /* how long 0 had run */
    ok();
    /* 1 was not asked: it keeps its slot until its deadline. */
    EXPECT_FALSE(s_->preempt_if_due(1, 0));
}

TEST_F(MechanismTest, WakePreemptRespectsTheGranularity)
{
    init(4, 1);
    s_->set_wake_preempt(true, 500'000);
    ASSERT_TRUE(s_->acquire(0));
    at(1'400'000); /* 0 ran 400 us < 500 us */
    s_->note_wake(2, kWakeIpi, now_);
    ASSERT_FALSE(s_->acquire(2));
    EXPECT_EQ(s_->take_wake_preempted(), kNone);
    EXPECT_EQ(ctr_.get(Ctr::wake_preempt_asks), 0u);
    EXPECT_FALSE(s_->preempt_if_due(0, 0));
    EXPECT_EQ(st(0), VcpuState::kRunning);
    at(1'500'000); /* exactly the granularity: the next IPI wake asks */
    s_->note_wake(3, kWakeIpi, now_);
    ASSERT_FALSE(s_->acquire(3));
    EXPECT_EQ(s_->take_wake_preempted(), 0);
    EXPECT_TRUE(s_->preempt_if_due(0, 0));
    EXPECT_EQ(st(3), VcpuState::kRunning); /* the one that asked, not the head */
    EXPECT_EQ(queue(), (V{2, 0}));
    ok();
}

TEST_F(MechanismTest, WakePreemptOnlyForIpiWakesAndWhenAsked)
{
    init(4, 1);
    ASSERT_TRUE(s_->acquire(0));
    at(3'000'000);
    s_->note_wake(1, kWakeIpi, now_);
    ASSERT_FALSE(s_->acquire(1)); /* the policy did not ask */
    s_->set_wake_preempt(true, 0);
    ASSERT_FALSE(s_->acquire(2)); /* a timer wake: no IPI hint */
    EXPECT_EQ(ctr_.get(Ctr::wake_preempt_asks), 0u);
    EXPECT_EQ(s_->take_wake_preempted(), kNone);
    ok();
}

/* wake-spinners: a holder in a PAUSE loop is asked first, whatever it
 * has run (its slot time is spin waste); off, the granularity rule. */
TEST_F(MechanismTest, WakePreemptAsksASpinnerFirstWhenSet)
{
    for (bool first : {true, false}) {
        init(4, 2);
        ASSERT_TRUE(s_->acquire(1));  /* granted at 1.0 ms: ran longest */
        at(1'500'000);
        ASSERT_TRUE(s_->acquire(0));
        at(1'600'000);
        spin_->on_pause(0, 0, 1'590'000);
        spin_->on_pause(0, 0, 1'595'000); /* within the 10 us gap of now */
        s_->set_wake_preempt(true, 5'000'000); /* nobody ran 5 ms */
        if (first) {
            s_->set_wake_spinner_first(now_);
        }
        s_->note_wake(2, kWakeIpi, now_);
        ASSERT_FALSE(s_->acquire(2));
        EXPECT_EQ(s_->take_wake_preempted(), first ? 0 : kNone);
        EXPECT_EQ(ctr_.get(Ctr::wake_preempt_spinners), first ? 1u : 0u);
        ok();
        ctr_.reset();
    }
}

/* wake-queued: an IPI to a vCPU already queued asks for it too, at the
 * next lock section that serves them; untracked IPIs ask nothing. */
TEST_F(MechanismTest, WakeQueuedAsksForAQueuedIpiTarget)
{
    init(4, 1);
    ASSERT_TRUE(s_->acquire(0));
    ASSERT_FALSE(s_->acquire(1));
    ASSERT_FALSE(s_->acquire(2));
    at(1'600'000);
    s_->set_wake_preempt(true, 500'000);
    s_->note_wake(2, kWakeIpi, now_); /* not tracked */
    EXPECT_FALSE(s_->queued_ipis_pending());
    s_->note_wake(3, kWakeIpi, now_, true); /* halted, not queued */
    EXPECT_FALSE(s_->queued_ipis_pending());
    s_->note_wake(2, kWakeIpi, now_, true);
    EXPECT_TRUE(s_->queued_ipis_pending());
    EXPECT_EQ(s_->serve_queued_ipis(), 1);
    EXPECT_FALSE(s_->queued_ipis_pending());
    EXPECT_EQ(s_->held_deadline(0), now_); /* 0 ran 600 us: asked */
    EXPECT_TRUE(s_->preempt_if_due(0, 0));
    EXPECT_EQ(st(2), VcpuState::kRunning); /* ahead of 1, passed once */
    EXPECT_EQ(queue(), (V{1, 0}));
    EXPECT_EQ(ctr_.get(Ctr::wake_queued_ipis), 1u);
    EXPECT_EQ(s_->serve_queued_ipis(), 0); /* served once */
    ok();
}

/* The woken vCPU passes everyone ahead of it: not if one of them is at the
 * bound, neither when it asks nor when the holder leaves. */
TEST_F(MechanismTest, WakePreemptRespectsTheBound)
{
    init(6, 1, 1);
    s_->set_wake_preempt(true, 0);
    ASSERT_TRUE(s_->acquire(0));
    ASSERT_FALSE(s_->acquire(1));
    s_->note_wake(2, kWakeIpi, now_);
    ASSERT_FALSE(s_->acquire(2)); /* asks 0 to leave */
    at(1'100'000);
    ASSERT_TRUE(s_->preempt_if_due(0, 0));
    EXPECT_EQ(st(2), VcpuState::kRunning); /* 1 passed once: at the bound */
    s_->note_wake(3, kWakeIpi, now_);
    ASSERT_FALSE(s_->acquire(3)); /* would pass 1 again: refused */
    EXPECT_EQ(ctr_.get(Ctr::wake_preempt_bounded), 1u);
    EXPECT_EQ(s_->take_wake_preempted(), kNone);
    EXPECT_FALSE(s_->preempt_if_due(2, 0)); /* not asked, slice not over */
    ok();
}

/* An ask whose target got a slot some other way lapses: the holder stays. */
TEST_F(MechanismTest, WakePreemptLapsesWhenTheTargetRunsAnyway)
{
    init(4, 2);
    s_->set_wake_preempt(true, 0);
    ASSERT_TRUE(s_->acquire(0));
    ASSERT_TRUE(s_->acquire(1));
    at(1'300'000);
    s_->note_wake(2, kWakeIpi, now_);
    ASSERT_FALSE(s_->acquire(2));
    EXPECT_EQ(s_->take_wake_preempted(), 0); /* both ran 300 us: the first */
    s_->release(1, ReleaseReason::kHalt);  /* 2 gets 1's slot */
    ASSERT_EQ(st(2), VcpuState::kRunning);
    EXPECT_EQ(s_->held_deadline(0), 1'000'000 + kSlice);
    EXPECT_FALSE(s_->preempt_if_due(0, 0));
    EXPECT_EQ(ctr_.get(Ctr::wake_preempts), 0u);
    ok();
}

/* Wake preemptions only reorder: under a random mix with lifts, halt
 * handoffs and slice preemptions nobody is overtaken more than the bound
 * times, and every asked holder leaves at its next exit. */
TEST_F(MechanismTest, WakePreemptNobodyStarves)
{
    constexpr int kN = 10;
    constexpr unsigned kBound = 2;
    init(kN, 2, kBound);
    s_->set_wake_preempt(true, 200'000);
    std::mt19937 rng(11);
    OvertakeLedger ledger(kN);
    uint64_t t = 1'000'000;
    for (int step = 0; step < 20000; step++) {
        t += 1000 + rng() % 400'000;
        at(t);
        std::vector<VcpuState> before(kN);
        for (int v = 0; v < kN; v++) {
            before[v] = st(v);
        }
        int v = static_cast<int>(rng() % kN);
        switch (st(v)) {
        case VcpuState::kHalted:
        case VcpuState::kStopped:
            if (rng() % 3) {
                ipi_wake(v);
            } else {
                s_->acquire(v, true);
            }
            if (int h = s_->take_wake_preempted(); h != kNone) {
                ASSERT_LE(s_->held_deadline(h), now_); /* leave now */
                ASSERT_TRUE(s_->preempt_if_due(h, 0)); /* its next exit */
            }
            break;
        case VcpuState::kRunning:
            if (rng() % 2) {
                s_->release(v, ReleaseReason::kHalt, static_cast<int>(rng() % kN));
            } else {
                s_->preempt_if_due(v, 0);
            }
            break;
        case VcpuState::kQueued:
            break;
        }
        ledger.step(before, [&](int g) { return st(g); });
        ok();
    }
    EXPECT_GT(ctr_.get(Ctr::wake_preempts), 100u);
    EXPECT_GT(ctr_.get(Ctr::wake_preempt_bounded), 0u);
    EXPECT_LE(ledger.max_overtaken(), static_cast<int>(kBound));
}

TEST_F(MechanismTest, IpiToRunLatencyFromFirstIpiToGrant)
{
    init(4, 1);
    ASSERT_TRUE(s_->acquire(0));
    at(2'000'000);
    s_->note_wake(2, kWakeIpi, now_); /* 2 halted: starts its latency */
    s_->note_wake(0, kWakeIpi, now_); /* 0 runs: nothing to measure */
    at(2'100'000);
    s_->note_wake(2, kWakeIpi, now_); /* not the first */
    ASSERT_FALSE(s_->acquire(2));
    at(2'500'000);
    s_->release(0, ReleaseReason::kHalt);
    ASSERT_EQ(st(2), VcpuState::kRunning);
    EXPECT_EQ(ctr_.get(Ctr::ipi_to_run), 1u);
    EXPECT_EQ(ctr_.get(Ctr::ipi_to_run_ns), 500'000u);
    EXPECT_EQ(ctr_.get(Ctr::ipi_to_run_max_ns), 500'000u);
    EXPECT_EQ(traced(TraceEvent::kIpiToRun), 1);
}

TEST_F(MechanismTest, SlotIdleTimeFromFreeToTaken)
{
    init(2, 1);
    ASSERT_TRUE(s_->acquire(0));
    EXPECT_EQ(ctr_.get(Ctr::slot_idle_ns), 0u); /* free since boot: unknown */
    at(3'000'000);
    s_->release(0, ReleaseReason::kHalt);
    at(3'700'000);
    ASSERT_TRUE(s_->acquire(1));
    EXPECT_EQ(ctr_.get(Ctr::slot_idle_ns), 700'000u);
}

} // namespace
} // namespace vsched::test
