/*
 * policy "vanilla": hand-worked cases from upstream kvm_vcpu_on_spin()
 * (Linux 6.13+, reference §2.3).  Every expected attempt order below is
 * derived by stepping the kernel loop by hand:
 *   start = last_boosted + 1; idx = (start + i) % n, i = 0..n-1; skip me.
 */
#include "policy_fixture.h"

namespace vsched::test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class VanillaTest : public PolicyTest {
protected:
    TestPolicy p_ = policy("vanilla");
};

/* n=8, me=2, last_boosted=5: order 6,7,0,1,3,4,5 (2 skipped); the first
 * ready candidate (6) takes it and last_boosted becomes 6. */
TEST_F(VanillaTest, StartsAfterLastBoostedAndStopsAtFirstSuccess)
{
    init(8, 2);
    set_last_boosted(5);
    for (int v : {0, 1, 3, 4, 5, 6, 7}) {
        preempted(v, 0);
    }
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(6));
    EXPECT_EQ(d.target, 6);
    EXPECT_EQ(d.pass, "scan");
    EXPECT_EQ(last_boosted(), 6);
}

/* Results 6:0, 7:-ESRCH, 0:0, 1:-ESRCH, 3:-ESRCH.  `if (yielded < 0 &&
 * !--try) break;` fires at the third -ESRCH (try 3->2->1->0): attempts
 * stop at 3; 0 results cost nothing; last_boosted is untouched. */
TEST_F(VanillaTest, EsrchBudgetOfThreeZeroCostsNothing)
{
    init(8, 2);
    set_last_boosted(5);
    for (int v : {0, 1, 3, 4, 5, 6, 7}) {
        preempted(v, 0);
    }
    mech_.results = {{6, 0}, {7, kYieldEsrch}, {0, 0}, {1, kYieldEsrch},
                     {3, kYieldEsrch}, {4, 1}};
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(6, 7, 0, 1, 3));
    EXPECT_EQ(d.target, kNone);
    EXPECT_EQ(ctr_.get(Ctr::yield_esrch), 3u);
    EXPECT_EQ(ctr_.get(Ctr::yield_zero), 2u);
    EXPECT_EQ(ctr_.get(Ctr::yield_budget_exhausted), 1u);
    EXPECT_EQ(last_boosted(), 5);
}

/* All-zero results: the scan covers every other vCPU exactly once. */
TEST_F(VanillaTest, ZeroResultsScanEveryoneOnce)
{
    init(5, 0);
    set_last_boosted(0);
    for (int v = 1; v < 5; v++) {
        preempted(v, 0);
        mech_.results[v] = 0;
    }
    decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(1, 2, 3, 4));
}

/* Reject-only kernel-mode filter: a kernel-mode spin skips a vCPU preempted
 * in user mode (6), skips not-ready (7), and ACCEPTS a woken vCPU that was
 * not preempted (0): upstream only rejects. */
TEST_F(VanillaTest, KernelModeFilterRejectsOnlyUserModePreempted)
{
    init(8, 2);
    set_last_boosted(5);
    preempted(6, 3);
    woken(0);
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(0));
    EXPECT_EQ(d.target, 0);
    EXPECT_EQ(ctr_.get(Ctr::reject_user_mode), 1u);
    EXPECT_EQ(last_boosted(), 0);
}

/* A user-mode spin (SVM with CPL 3) does not apply the filter. */
TEST_F(VanillaTest, UserModeSpinAcceptsUserModePreempted)
{
    init(8, 2);
    set_last_boosted(5);
    preempted(6, 3);
    Decision d = decide(p_, false);
    EXPECT_THAT(mech_.attempts, ElementsAre(6));
    EXPECT_EQ(d.target, 6);
}

/* kvm_vcpu_eligible_for_directed_yield(): 6 in spin loop and !dy_eligible
 * -> skipped, dy_eligible flips to true; 7 in spin loop and dy_eligible ->
 * eligible, flips to false.  Next decision: 6 is eligible. */
TEST_F(VanillaTest, DyEligibleTogglesEveryOtherLook)
{
    init(8, 2);
    set_last_boosted(5);
    preempted(6, 0);
    preempted(7, 0);
    add_flag(6, vflag::kInSpinLoop);
    add_flag(7, vflag::kInSpinLoop | vflag::kDyEligible);
    Decision d = decide(p_, true);
    EXPECT_EQ(d.target, 7);
    EXPECT_TRUE(flag(6, vflag::kDyEligible));
    EXPECT_FALSE(flag(7, vflag::kDyEligible));
    EXPECT_EQ(ctr_.get(Ctr::reject_not_eligible), 1u);

    mech_.attempts.clear();
    set_last_boosted(5);
    d = decide(p_, true);
    EXPECT_EQ(d.target, 6);
    EXPECT_FALSE(flag(6, vflag::kDyEligible)); /* toggled back */
}

/* On exit me.in_spin_loop = me.dy_eligible = false (me keeps its slot
 * here, the scripted mechanism moves nothing). */
TEST_F(VanillaTest, ClearsOwnSpinFlagsOnExit)
{
    init(4, 1);
    add_flag(1, vflag::kDyEligible);
    decide(p_, true);
    EXPECT_FALSE(flag(1, vflag::kInSpinLoop));
    EXPECT_FALSE(flag(1, vflag::kDyEligible));
}

/* last_boosted = n-1: start = n wraps to 0. */
TEST_F(VanillaTest, WrapsAround)
{
    init(4, 2);
    set_last_boosted(3);
    for (int v : {0, 1, 3}) {
        preempted(v, 0);
        mech_.results[v] = 0;
    }
    decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(0, 1, 3));
}

/* 32bd348be3fa: store idx, not the loop counter.  me=0, last_boosted=5:
 * i=0..3 -> idx 6,7,0(me),1; success at i=3 must store 1. */
TEST_F(VanillaTest, StoresIndexNotLoopCounter)
{
    init(8, 0);
    set_last_boosted(5);
    preempted(1, 0);
    decide(p_, true);
    EXPECT_EQ(last_boosted(), 1);
}

TEST_F(VanillaTest, SingleVcpuDoesNothing)
{
    init(1, 0);
    Decision d = decide(p_, true);
    EXPECT_THAT(mech_.attempts, IsEmpty());
    EXPECT_EQ(d.target, kNone);
    EXPECT_FALSE(flag(0, vflag::kInSpinLoop));
}

/* A halted vCPU: skipped as not ready; once an IPI woke it (ready) it is
 * tried while the interrupt is pending (blocking && dy_runnable), and
 * skipped as "blocking && !dy_runnable" once it has taken the interrupt. */
TEST_F(VanillaTest, HaltedCandidateNeedsWakeAndPendingInterrupt)
{
    init(4, 0);
    halted(1);
    decide(p_, true);
    EXPECT_THAT(mech_.attempts, IsEmpty());
    EXPECT_EQ(ctr_.get(Ctr::reject_not_ready), 3u);

    ipi(0, 1);
    hints_[1].store(kWakeIpi);
    mech_.results[1] = 0;
    decide(p_, true);
    EXPECT_THAT(mech_.attempts, ElementsAre(1));

    mech_.attempts.clear();
    ipi_->on_accept(1, 0xfb);
    decide(p_, true);
    EXPECT_THAT(mech_.attempts, IsEmpty());
    EXPECT_EQ(ctr_.get(Ctr::reject_blocking), 1u);
}

/* vanilla ignores IPI state entirely: the receiver (7) later in scan
 * order loses to an earlier preempted vCPU (6). */
TEST_F(VanillaTest, IgnoresIpiReceiver)
{
    init(8, 2);
    set_last_boosted(5);
    preempted(6, 0);
    preempted(7, 0);
    ipi(2, 7);
    Decision d = decide(p_, true);
    EXPECT_EQ(d.target, 6);
}

/* "none" has no passes: the core never asks it (spins_ignored), and the
 * protocol would not run it either. */
TEST_F(VanillaTest, NonePolicyHasNoPassesAndNeverYields)
{
    init(4, 0);
    preempted(1, 0);
    TestPolicy none = policy("none");
    ASSERT_TRUE(valid_policy(none.id));
    EXPECT_EQ(policy_pass_count(none.id), 0);
    EXPECT_EQ(decide(none, true).target, kNone);
    EXPECT_THAT(mech_.attempts, IsEmpty());
    EXPECT_FALSE(flag(0, vflag::kInSpinLoop));
}

} // namespace
} // namespace vsched::test
