/* policy "ipi-prio": receivers first (real priority), lock holders, then
 * the relaxed pass; separate budgets; multicast receivers count. */
#include "policy_fixture.h"

namespace vsched::test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class IpiPrioTest : public PolicyTest {
protected:
    TestPolicy p_ = policy("ipi-prio");
};

/* The case the series gets "wrong": the receiver (7) beats the earlier
 * preempted-in-kernel vCPU (6). */
TEST_F(IpiPrioTest, ReceiverBeatsEarlierLockHolder)
{
    init(8, 2);
    set_last_boosted(5);
    preempted(6, 0);
    woken(7);
    ipi(2, 7);
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(7));
    EXPECT_EQ(d.pass, "receiver");
    EXPECT_EQ(last_boosted(), 7);
}

/* Multicast: both destinations are receivers; 5 runs (not ready), 7 is
 * queued and gets the slot. */
TEST_F(IpiPrioTest, MulticastReceiversCount)
{
    init(8, 2);
    set_last_boosted(0);
    preempted(1, 0);
    woken(7);
    int dst[] = {5, 7};
    ipi_->on_ipi(2, dst, 2, 0xfd, kApicDmFixed, kApicShNone, kNow);
    Decision d = decide(p_, true);
    EXPECT_EQ(d.target, 7);
    EXPECT_EQ(d.pass, "receiver");
}

/* Receivers are tried in scan order among themselves. */
TEST_F(IpiPrioTest, ReceiversInScanOrder)
{
    init(8, 0);
    set_last_boosted(4);
    woken(2);
    woken(6);
    int dst[] = {2, 6};
    ipi_->on_ipi(0, dst, 2, 0xfd, kApicDmFixed, kApicShNone, kNow);
    mech_.results[6] = 0;
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(6, 2));
    EXPECT_EQ(d.target, 2);
}

/* A multicast wider than the per-sender hint ring (8) makes the receiver
 * pass scan everyone: vCPU 1 is found although the ring only holds the
 * last eight destinations (3..10). */
TEST_F(IpiPrioTest, WideMulticastFallsBackToFullScan)
{
    init(16, 0);
    set_last_boosted(4);
    std::vector<int> dst;
    for (int v = 1; v <= 10; v++) {
        dst.push_back(v);
    }
    ipi_->on_ipi(0, dst.data(), static_cast<int>(dst.size()), 0xfd, kApicDmFixed,
                 kApicShNone, kNow);
    int hint[kReceiverHints];
    EXPECT_EQ(ipi_->receiver_hints(0, kNow, hint), -1);
    woken(1);
    Decision d = decide(p_, true);
    EXPECT_EQ(d.target, 1);
    EXPECT_EQ(d.pass, "receiver");
    /* After the window the ring is trusted again (and is empty: the wide
     * multicast did not go into it, its entries are stale by now). */
    EXPECT_EQ(ipi_->receiver_hints(0, kNow + 50'000'001, hint), 0);
}

/* Separate budgets, hand-counted: n=8, me=0, everyone preempted in kernel
 * and everything returns -ESRCH; receivers 3 and 5.
 *   receiver pass (start 1): 3, 5                -> 2 attempts, budget left
 *   lock-holder pass: 1, 2, 4 (3, 5 done)        -> budget 3 used up
 *   relaxed pass: 6, 7 (1..5 already looked at)  -> 2 attempts
 * No candidate is tried twice; no underflow. */
TEST_F(IpiPrioTest, SeparateBudgetsPerPass)
{
    init(8, 0);
    for (int v = 1; v < 8; v++) {
        preempted(v, 0);
        mech_.results[v] = kYieldEsrch;
    }
    int dst[] = {3, 5};
    ipi_->on_ipi(0, dst, 2, 0xfd, kApicDmFixed, kApicShNone, kNow);
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(3, 5, 1, 2, 4, 6, 7));
    EXPECT_EQ(d.target, kNone);
    EXPECT_EQ(ctr_.get(Ctr::yield_budget_exhausted), 1u);
}

/* Woken-but-not-preempted vCPUs stay candidates (relaxed pass). */
TEST_F(IpiPrioTest, WokenNotPreemptedIsCandidate)
{
    init(4, 0);
    woken(2);
    Decision d = decide(p_, true);
    EXPECT_EQ(d.target, 2);
    EXPECT_EQ(d.pass, "relaxed");
}

/* Lock-holder pass before relaxed pass: user-mode preempted 1 comes first
 * in scan order but the kernel-mode preempted 3 is taken first. */
TEST_F(IpiPrioTest, LockHolderBeforeRelaxed)
{
    init(4, 0);
    preempted(1, 3);
    preempted(3, 0);
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(3));
    EXPECT_EQ(d.pass, "lock_holder");
}

/* A pending, not yet accepted interrupt makes a user-mode preempted vCPU a
 * lock-holder-pass candidate (upstream's "in kernel for directed yield"). */
TEST_F(IpiPrioTest, PendingInterruptCountsAsInKernel)
{
    init(4, 0);
    preempted(1, 3);
    preempted(3, 3);
    ipi(2, 3); /* from someone else: not my receiver */
    Decision d = decide(p_, true, /*relaxed=*/false);
    EXPECT_THAT(mech_.attempts, ElementsAre(3));
    EXPECT_EQ(d.pass, "lock_holder");
}

/* dy_eligible is toggled at most once per decision. */
TEST_F(IpiPrioTest, EligibilityToggledOnce)
{
    init(4, 0);
    preempted(1, 0);
    add_flag(1, vflag::kInSpinLoop);
    Decision d = decide(p_, true);
    EXPECT_EQ(d.target, kNone);
    EXPECT_TRUE(flag(1, vflag::kDyEligible));
    EXPECT_THAT(mech_.attempts, IsEmpty());
}

/* EOI is matched by vector and leaves the receiver's own IPIs alone. */
TEST_F(IpiPrioTest, EoiMatchedByVector)
{
    init(4, 0);
    woken(1);
    woken(2);
    ipi(0, 1, kNow, 0xfb);
    ipi(1, 2, kNow, 0xfc); /* 1's own IPI, as a sender */
    ipi_->on_eoi(1, 0xfd, kNow); /* unrelated vector */
    EXPECT_TRUE(ipi_->is_receiver(0, 1, kNow));
    ipi_->on_eoi(1, 0xfb, kNow);
    EXPECT_FALSE(ipi_->is_receiver(0, 1, kNow));
    EXPECT_TRUE(ipi_->is_receiver(1, 2, kNow));
    ipi_->on_accept(2, 0xfc); /* 2 took it: no interrupt pending there */
    set_last_boosted(0);
    Decision d = decide(p_, true);
    EXPECT_EQ(d.target, 1);
    EXPECT_EQ(d.pass, "relaxed"); /* no receiver left for me */
}

/* 8 vCPUs; 0 spins; 2 and 5 were woken by its IPIs: 2 by a reschedule
 * IPI, 5 by `vector5`. */
class IpiPrioCallfnTest : public IpiPrioTest {
protected:
    void two_receivers(bool callfn_first, int vector5)
    {
        init(8, 0);
        callfn_first_ = callfn_first;
        set_last_boosted(0);
        woken(2);
        woken(5);
        ipi(0, 2, kNow, 0xfd);
        ipi(0, 5, kNow, vector5);
    }
};

/* callfn-first: the receiver of a call-function IPI (5) beats an earlier
 * receiver of a reschedule IPI (2); off, scan order decides. */
TEST_F(IpiPrioCallfnTest, CallFunctionReceiverFirst)
{
    for (bool on : {true, false}) {
        two_receivers(on, kCallFunctionVector);
        Decision d = decide(p_, true);
        EXPECT_EQ(d.target, on ? 5 : 2);
        EXPECT_EQ(d.pass, on ? "callfn" : "receiver");
        EXPECT_THAT(mech_.attempts, ElementsAre(on ? 5 : 2));
        mech_.attempts.clear();
    }
}

/* With no call-function receiver ready the other receivers follow, each
 * looked at once. */
TEST_F(IpiPrioCallfnTest, CallFunctionPassFallsThroughToReceivers)
{
    two_receivers(true, kCallFunctionSingleVector);
    mech_.results[5] = 0;
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(5, 2));
    EXPECT_EQ(d.target, 2);
    EXPECT_EQ(d.pass, "receiver");
}

/* The policy asks for the scheduler's mechanisms; vanilla does not. */
TEST_F(IpiPrioTest, HaltSuccessorIsTheLatestLiveReceiver)
{
    init(8, 0);
    EXPECT_TRUE(p_.impl->lifts_ipi_wakes());
    EXPECT_TRUE(p_.impl->preempts_for_ipi_wakes());
    EXPECT_EQ(p_.impl->halt_successor(*ipi_, 0, kNow), kNone);
    ipi(0, 3, kNow, 0xfd);
    ipi(0, 6, kNow + 10, 0xfd);
    EXPECT_EQ(p_.impl->halt_successor(*ipi_, 0, kNow + 20), 6);
    ipi_->on_eoi(6, 0xfd, kNow + 30); /* 6 took it: nothing to hand over */
    EXPECT_EQ(p_.impl->halt_successor(*ipi_, 0, kNow + 40), kNone);
    /* Past the window the IPI no longer counts. */
    ipi(0, 4, kNow, 0xfd);
    EXPECT_EQ(p_.impl->halt_successor(*ipi_, 0, kNow + ipi_->window() + 1), kNone);
    TestPolicy vanilla = policy("vanilla");
    EXPECT_FALSE(vanilla.impl->lifts_ipi_wakes());
    EXPECT_FALSE(vanilla.impl->preempts_for_ipi_wakes());
    ipi(0, 5, kNow, 0xfd);
    EXPECT_EQ(vanilla.impl->halt_successor(*ipi_, 0, kNow), kNone);
}

} // namespace
} // namespace vsched::test
