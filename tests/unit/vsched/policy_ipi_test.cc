/*
 * policies "ipi" (v3) and "ipi-v2": hand-worked cases from the series' KVM
 * half (v2 8/9 + 9/9, v3 10/10's retry gate; reference §1.3).  Round 1
 * accepts (IPI receiver of me) OR (pending interrupt: false without APICv)
 * OR (preempted AND (user-mode spin OR preempted in kernel)) in plain scan
 * order; round 2 (relaxed_boost) rescans from the same start accepting only
 * `preempted`, in v3 only while the shared -ESRCH budget `try` is left.
 */
#include "policy_fixture.h"

namespace vsched::test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class IpiTest : public PolicyTest {
protected:
    TestPolicy p_ = policy("ipi");
};

class IpiV2Test : public PolicyTest {
protected:
    TestPolicy p_ = policy("ipi-v2");
};

/* The "priority" is only an OR filter: me=2, last_boosted=5, 7 is me's
 * tracked receiver (woken, not preempted), 6 was preempted in kernel.
 * Scan 6,7,...: 6 passes first and wins over the receiver. */
TEST_F(IpiTest, ReceiverLaterInScanOrderLoses)
{
    init(8, 2);
    set_last_boosted(5);
    preempted(6, 0);
    woken(7);
    ipi(2, 7);
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(6));
    EXPECT_EQ(d.pass, "strict");
}

/* Same, but 6 was preempted in user mode: the strict filter rejects it
 * (kernel-mode spin), the receiver 7 is accepted although not preempted. */
TEST_F(IpiTest, ReceiverAcceptedEvenIfNotPreempted)
{
    init(8, 2);
    set_last_boosted(5);
    preempted(6, 3);
    woken(7);
    ipi(2, 7);
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(7));
    EXPECT_EQ(d.target, 7);
    EXPECT_EQ(d.pass, "strict");
    EXPECT_EQ(ctr_.get(Ctr::reject_strict), 1u);
}

/* A woken, not preempted, non-receiver is rejected by both rounds (a
 * behaviour change against upstream, which accepts it). */
TEST_F(IpiTest, WokenNonReceiverRejectedByBothRounds)
{
    init(4, 0);
    woken(1);
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, IsEmpty());
    EXPECT_EQ(d.target, kNone);
    EXPECT_EQ(ctr_.get(Ctr::reject_strict), 1u);
    EXPECT_EQ(ctr_.get(Ctr::reject_not_preempted), 1u);
}

/* Relaxed round: a user-mode preempted vCPU, rejected in round 1 of a
 * kernel-mode spin, is taken by round 2; not at all with relaxed off. */
TEST_F(IpiTest, RelaxedRoundTakesPreemptedOnly)
{
    init(8, 2);
    set_last_boosted(5);
    preempted(6, 3);
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(6));
    EXPECT_EQ(d.pass, "relaxed");

    mech_.attempts.clear();
    set_last_boosted(5);
    d = decide(p_, true, /*relaxed=*/false);
    EXPECT_THAT(mech_.attempts, IsEmpty());
    EXPECT_EQ(d.target, kNone);
}

/* Round 2 also runs when round 1 found candidates but every yield_to
 * returned 0 (`yielded <= 0`): 6 (kernel) -> 0, round 2 retries 6 -> 0,
 * then 7 (user-mode preempted) succeeds. */
TEST_F(IpiTest, RelaxedRoundAfterZeroResults)
{
    init(8, 2);
    set_last_boosted(5);
    preempted(6, 0);
    preempted(7, 3);
    mech_.results[6] = 0;
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(6, 6, 7));
    EXPECT_EQ(d.target, 7);
    EXPECT_EQ(d.pass, "relaxed");
}

/* v3: round 1 used the budget up (all seven return -ESRCH: 1, 2, 3 and
 * `!--try` breaks), so `try > 0` skips the relaxed round: 3 attempts. */
TEST_F(IpiTest, RelaxedRoundSkippedWhenRound1UsedUpTry)
{
    init(8, 0);
    for (int v = 1; v < 8; v++) {
        preempted(v, 0);
        mech_.results[v] = kYieldEsrch;
    }
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(1, 2, 3));
    EXPECT_EQ(d.target, kNone);
    EXPECT_EQ(ctr_.get(Ctr::yield_budget_exhausted), 1u);
    EXPECT_EQ(ctr_.get(Ctr::reject_not_preempted), 0u); /* no round 2 */
}

/* v3, one -ESRCH in round 1 (try 3 -> 2): round 2 runs.  1 (kernel) is
 * -ESRCH again (try 1), 2 (user mode, rejected by round 1 of a kernel-mode
 * spin) takes the slot. */
TEST_F(IpiTest, RelaxedRoundRunsAfterOneEsrch)
{
    init(8, 0);
    preempted(1, 0);
    preempted(2, 3);
    mech_.results[1] = kYieldEsrch;
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(1, 1, 2));
    EXPECT_EQ(d.target, 2);
    EXPECT_EQ(d.pass, "relaxed");
    EXPECT_EQ(ctr_.get(Ctr::yield_budget_exhausted), 0u);
}

/* v3, two -ESRCH in round 1 (try 3 -> 1): round 2 runs.  1 is me's
 * receiver, woken, not preempted (round 1 only); 3 is preempted in kernel;
 * both -ESRCH.  Round 2 skips 1 (not preempted) and yields to 2. */
TEST_F(IpiTest, RelaxedRoundRunsAfterTwoEsrch)
{
    init(8, 0);
    woken(1);
    ipi(0, 1);
    preempted(2, 3);
    preempted(3, 0);
    mech_.results[1] = kYieldEsrch;
    mech_.results[3] = kYieldEsrch;
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(1, 3, 2));
    EXPECT_EQ(d.target, 2);
    EXPECT_EQ(d.pass, "relaxed");
    EXPECT_EQ(last_boosted(), 2);
}

/* v3: round 2 shares what round 1 left: after two -ESRCH (try 1), the
 * first -ESRCH of round 2 ends the scan (1, 2, then 1 again: 3 attempts). */
TEST_F(IpiTest, RelaxedRoundSharesTheRemainingBudget)
{
    init(8, 0);
    for (int v = 1; v < 8; v++) {
        preempted(v, v <= 2 ? 0 : 3);
        mech_.results[v] = kYieldEsrch;
    }
    decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(1, 2, 1));
    EXPECT_EQ(ctr_.get(Ctr::yield_budget_exhausted), 1u);
}

/* v3: 1's EOI of its timer vector keeps me's record of 1, so the strict
 * round still takes the woken receiver; the matching EOI clears it. */
TEST_F(IpiTest, TimerEoiKeepsReceiverMatchingEoiClearsIt)
{
    init(4, 0);
    woken(1);
    ipi(0, 1, kNow, 0xfb);
    ipi_->on_eoi(1, 0xec, kNow);
    EXPECT_EQ(decide(p_, true, false).target, 1);
    ipi_->on_eoi(1, 0xfb, kNow);
    EXPECT_EQ(decide(p_, true, false).target, kNone);
}

/* v3: the receiver's own IPI survives its EOI of another sender's IPI.
 * me=1 sent to 2; 1 EOIs 0's IPI; 1 still finds its receiver 2. */
TEST_F(IpiTest, ReceiversOwnSenderRecordSurvivesItsEoi)
{
    init(4, 1);
    woken(2);
    ipi(0, 1, kNow, 0xfb);
    ipi(1, 2, kNow, 0xfd);
    ipi_->on_eoi(1, 0xfb, kNow);
    EXPECT_FALSE(ipi_->series_is_receiver(0, 1, kNow));
    EXPECT_EQ(decide(p_, true, false).target, 2);
}

/* The same with ipi-v2: the EOI wipes 1's own sender record (the v1/v2
 * side effect), so the woken receiver 2 is not found. */
TEST_F(IpiV2Test, ReceiversOwnSenderRecordWipedByItsEoi)
{
    init(4, 1);
    woken(2);
    ipi(0, 1, kNow, 0xfb);
    ipi(1, 2, kNow, 0xfd);
    ipi_->on_eoi(1, 0xfb, kNow);
    EXPECT_EQ(decide(p_, true, false).target, kNone);
}

/* ipi-v2: any EOI of the receiver (a timer vector) clears the record. */
TEST_F(IpiV2Test, TimerEoiClearsReceiver)
{
    init(4, 0);
    woken(1);
    ipi(0, 1, kNow, 0xfb);
    ipi_->on_eoi(1, 0xec, kNow);
    EXPECT_EQ(decide(p_, true, false).target, kNone);
}

/* ipi-v2: the shared `try` underflows (v1/v2 as published): all seven
 * candidates return -ESRCH.  Round 1: 1,2,3 (try 3->0, break).  Round 2
 * starts with try 0: -1, -2, ... never 0 again, so it tries all seven: 10
 * attempts. */
TEST_F(IpiV2Test, SharedTryUnderflowsInRelaxedRound)
{
    init(8, 0);
    for (int v = 1; v < 8; v++) {
        preempted(v, 0);
        mech_.results[v] = kYieldEsrch;
    }
    decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(1, 2, 3, 1, 2, 3, 4, 5, 6, 7));
    EXPECT_EQ(ctr_.get(Ctr::yield_budget_exhausted), 1u);
}

/* ipi-v2 with budget left behaves as v3: one -ESRCH, then round 2. */
TEST_F(IpiV2Test, RelaxedRoundRunsAfterOneEsrch)
{
    init(8, 0);
    preempted(1, 0);
    preempted(2, 3);
    mech_.results[1] = kYieldEsrch;
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(1, 1, 2));
    EXPECT_EQ(d.pass, "relaxed");
}

/* Both variants: an IPI to {self, other} is not a series IPI, so the
 * woken other is not me's receiver. */
TEST_F(IpiTest, IpiToSelfAndOtherNotTracked)
{
    init(4, 0);
    woken(1);
    int dst[] = {0, 1};
    ipi_->on_ipi(0, dst, 2, 0xfb, kApicDmFixed, kApicShNone, kNow);
    EXPECT_EQ(decide(p_, true, false).target, kNone);
    EXPECT_TRUE(ipi_->is_receiver(0, 1, kNow)); /* our view has it */
    TestPolicy v2 = policy("ipi-v2");
    EXPECT_EQ(decide(v2, true, false).target, kNone);
}

/* Edge case (b): round 1 toggles dy_eligible of a spinning candidate, so
 * round 2 sees it eligible: 6 skipped in round 1, taken in round 2. */
TEST_F(IpiTest, EligibilityToggledAgainInRelaxedRound)
{
    init(8, 2);
    set_last_boosted(5);
    preempted(6, 0);
    add_flag(6, vflag::kInSpinLoop);
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(6));
    EXPECT_EQ(d.pass, "relaxed");
    EXPECT_FALSE(flag(6, vflag::kDyEligible));
}

/* Only the series' unicast record counts: a multicast IPI leaves no
 * receiver, so a woken multicast receiver is rejected. */
TEST_F(IpiTest, MulticastReceiverNotRecognised)
{
    init(8, 2);
    woken(7);
    int dst[] = {5, 7};
    ipi_->on_ipi(2, dst, 2, 0xfd, kApicDmFixed, kApicShNone, kNow);
    Decision d = decide(p_, true, /*relaxed=*/false);
    EXPECT_EQ(d.target, kNone);
}

/* Window: the record is ignored once older than ipi_window_ns (50 ms),
 * checked lazily at read time. */
TEST_F(IpiTest, ReceiverExpiresAfterWindow)
{
    init(4, 0);
    woken(1);
    ipi(0, 1, kNow - 50'000'000);
    EXPECT_EQ(decide(p_, true, false, kNow).target, 1);
    mech_.attempts.clear();
    ipi(0, 1, kNow - 50'000'001);
    EXPECT_EQ(decide(p_, true, false, kNow).target, kNone);
}

TEST_F(IpiTest, TrackingOffIgnoresReceiver)
{
    init(4, 0);
    woken(1);
    ipi(0, 1);
    ipi_->set_enabled(false);
    EXPECT_EQ(decide(p_, true, false).target, kNone);
    ipi_->set_enabled(true);
    EXPECT_EQ(decide(p_, true, false).target, 1);
}

/* The receiver's EOI of the IPI's vector clears the sender's pending. */
TEST_F(IpiTest, EoiClearsReceiver)
{
    init(4, 0);
    woken(1);
    ipi(0, 1);
    ipi_->on_eoi(1, 0xfb, kNow);
    EXPECT_EQ(decide(p_, true, false).target, kNone);
}

} // namespace
} // namespace vsched::test
