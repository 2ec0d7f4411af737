/*
 * policy "random": a uniformly random ready, preempted vCPU, seeded.  Run
 * through the real spin protocol (policy_fixture.h) and, for the halted and
 * self cases, against the real Scheduler through Core.
 */
#include <memory>
#include <set>

#include "core.h"
#include "policy_fixture.h"
#include "sim_host.h"

namespace vsched::test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class RandomTest : public PolicyTest {
protected:
    TestPolicy p_ = policy("random");
};

TEST_F(RandomTest, IsRegisteredWithOnePass)
{
    ASSERT_TRUE(valid_policy(p_.id));
    EXPECT_EQ(policy_pass_count(p_.id), 1);
    EXPECT_STREQ(policy_pass_name(p_.id, 0), "random");
}

/* Only ready, preempted vCPUs other than me: never me, a running (not
 * ready), a halted or a woken-but-not-preempted vCPU. */
TEST_F(RandomTest, OnlyReadyPreemptedOthers)
{
    init(8, 0);
    preempted(2, 0);
    preempted(5, 3);
    woken(3);
    halted(4);
    std::set<int> chosen;
    for (int i = 0; i < 200; i++) {
        Decision d = decide(p_, true);
        ASSERT_TRUE(d.target == 2 || d.target == 5) << d.target;
        EXPECT_EQ(d.pass, "random");
        chosen.insert(d.target);
    }
    EXPECT_EQ(chosen, (std::set<int>{2, 5}));
    EXPECT_EQ(ctr_.get(Ctr::reject_not_preempted), 200u); /* 3, each time */
}

/* Uniform: 4 candidates, 4000 decisions; each share within 20 % of 1000.
 * (Deterministic: the seed is fixed.) */
TEST_F(RandomTest, UniformOverCandidates)
{
    init(6, 0);
    for (int v : {1, 2, 4, 5}) {
        preempted(v, 0);
    }
    int hits[6] = {};
    for (int i = 0; i < 4000; i++) {
        hits[decide(p_, true).target]++;
    }
    for (int v : {1, 2, 4, 5}) {
        EXPECT_GT(hits[v], 800) << v;
        EXPECT_LT(hits[v], 1200) << v;
    }
    EXPECT_EQ(hits[0] + hits[3], 0);
}

/* Seeded: two fresh instances make the same choices. */
TEST_F(RandomTest, SameSeedSameSequence)
{
    init(8, 0);
    for (int v = 1; v < 8; v++) {
        preempted(v, 0);
    }
    TestPolicy other = policy("random");
    for (int i = 0; i < 50; i++) {
        EXPECT_EQ(decide(p_, true).target, decide(other, true).target);
    }
}

/* -ESRCH uses the budget (3), a 0 result does not; nobody is tried twice. */
TEST_F(RandomTest, KeepsTheBudgetAndTriesEachOnce)
{
    init(8, 0);
    for (int v = 1; v < 8; v++) {
        preempted(v, 0);
        mech_.results[v] = kYieldEsrch;
    }
    EXPECT_EQ(decide(p_, true).target, kNone);
    EXPECT_EQ(mech_.attempts.size(), 3u);
    EXPECT_EQ(ctr_.get(Ctr::yield_budget_exhausted), 1u);

    mech_.attempts.clear();
    for (int v = 1; v < 8; v++) {
        mech_.results[v] = 0;
    }
    EXPECT_EQ(decide(p_, true).target, kNone);
    EXPECT_EQ(std::set<int>(mech_.attempts.begin(), mech_.attempts.end()).size(), 7u);
    EXPECT_EQ(mech_.attempts.size(), 7u);
}

TEST_F(RandomTest, NobodyPreemptedNoAttempt)
{
    init(4, 0);
    woken(1);
    EXPECT_EQ(decide(p_, true).target, kNone);
    EXPECT_THAT(mech_.attempts, IsEmpty());
    EXPECT_FALSE(flag(0, vflag::kInSpinLoop));
}

/* Against the real Scheduler: 1 and 2 halted, 3 preempted: always 3. */
TEST(RandomCore, HaltedAndSelfNeverChosen)
{
    {
        SimHost host(4);
        Config c;
        c.pcpus = 1;
        c.slice_ns = 1'000'000;
        c.set_policy(policy_id("random"));
        c.ple_gap_ns = 10'000;
        c.ple_window_ns = 50'000;
        std::string err;
        auto core = Core::create(c, 4, host, &err);
        ASSERT_TRUE(core) << err;
        core->release(1, ReleaseReason::kHalt);
        core->release(2, ReleaseReason::kHalt);
        ASSERT_TRUE(core->acquire(3));
        ASSERT_FALSE(core->acquire(0));
        host.advance(1'000'000);
        core->tick();
        ASSERT_TRUE(core->after_exec(3, 0)); /* preempted at CPL 0 */
        ASSERT_TRUE(core->acquire(0));
        bool fired = false;
        for (int i = 0; i < 100 && !fired; i++) {
            host.advance(5'000);
            fired = core->on_pause(0, 0);
        }
        ASSERT_TRUE(fired);
        EXPECT_TRUE(core->after_exec(0, 0));
        auto k = core->counters();
        EXPECT_EQ(k.yields("random"), 1u);
        EXPECT_EQ(k[Ctr::yield_attempts], 1u);
        VcpuInfo i3;
        ASSERT_TRUE(core->vcpu_info(3, &i3));
        EXPECT_EQ(state_of(i3), VcpuState::kRunning);
        std::string why;
        EXPECT_TRUE(core->check_invariants(&why)) << why;
    }
}

} // namespace
} // namespace vsched::test
