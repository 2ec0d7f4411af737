/*
 * The spin protocol (spin_protocol.h) around any policy, and the registry:
 * a policy cannot reach the mechanism, cannot yield to itself, twice or
 * under a pass it did not register, and the core does the bookkeeping
 * (in_spin_loop, dy_eligible, budget, last_boosted_vcpu, counters).
 */
#include <functional>
#include <type_traits>

#include "policy_fixture.h"

namespace vsched::test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

/* Compile-time: the mechanism is out of a policy's reach. */
template <class C>
concept ReachesMechanism = requires(C &c) { c.mech_; };
static_assert(!ReachesMechanism<SpinContext>);
static_assert(!std::is_constructible_v<SpinContext, const SpinSetup &, YieldMechanism &>);
static_assert(!std::is_copy_constructible_v<SpinContext>);
static_assert(!std::is_base_of_v<YieldMechanism, SpinContext>);

/* A policy whose decision is a test's lambda. */
class ScriptedPolicy final : public YieldPolicy {
public:
    explicit ScriptedPolicy(std::function<void(SpinContext &)> f) : f_(std::move(f)) {}
    void decide(SpinContext &c) override { f_(c); }

private:
    std::function<void(SpinContext &)> f_;
};

std::unique_ptr<YieldPolicy> make_idle()
{
    return std::make_unique<ScriptedPolicy>([](SpinContext &) {});
}

/* Registered here, in this test binary only: the registry takes policies
 * from any file linked in. */
VSCHED_REGISTER_POLICY(test_scripted, "test-scripted", make_idle, "first", "second");

class ProtocolTest : public PolicyTest {
protected:
    TestPolicy scripted(std::function<void(SpinContext &)> f)
    {
        return {policy_id("test-scripted"), std::make_unique<ScriptedPolicy>(std::move(f))};
    }
};

TEST_F(ProtocolTest, RegistryListsTheTestPolicyWithItsPasses)
{
    PolicyId id = policy_id("test-scripted");
    ASSERT_TRUE(valid_policy(id));
    EXPECT_EQ(policy_pass_count(id), 2);
    EXPECT_STREQ(policy_pass_name(id, 1), "second");
    EXPECT_NE(policy_list(", ").find("test-scripted"), std::string::npos);
    EXPECT_GE(pass_counter_slot("second"), 0);
    int slot = policy_pass_counter(id, 1);
    EXPECT_STREQ(pass_counter_name(slot), "yield_second");
    EXPECT_STREQ(counter_name(kNumCounters + slot), "yield_second");
    PolicyId parsed;
    EXPECT_TRUE(parse_policy("test_scripted", &parsed));
    EXPECT_EQ(parsed, id);
}

/* Every pass name appears once as a counter, whichever policies share it. */
TEST_F(ProtocolTest, PassCountersAreDistinct)
{
    EXPECT_EQ(policy_pass_counter(policy_id("ipi"), 1),
              policy_pass_counter(policy_id("ipi-prio"), 2)); /* both "relaxed" */
    for (int i = 0; i < pass_counter_count(); i++) {
        for (int j = i + 1; j < pass_counter_count(); j++) {
            EXPECT_STRNE(pass_counter_name(i), pass_counter_name(j));
        }
    }
}

/* in_spin_loop is set on the spinner during the decision and cleared with
 * dy_eligible afterwards when it did not yield. */
TEST_F(ProtocolTest, BracketsTheDecision)
{
    init(4, 0);
    add_flag(0, vflag::kDyEligible);
    bool in_spin_during = false;
    TestPolicy p = scripted([&](SpinContext &) {
        in_spin_during = flag(0, vflag::kInSpinLoop);
    });
    Decision d = decide(p, true);
    EXPECT_EQ(d.target, kNone);
    EXPECT_TRUE(in_spin_during);
    EXPECT_FALSE(flag(0, vflag::kInSpinLoop));
    EXPECT_FALSE(flag(0, vflag::kDyEligible));
}

TEST_F(ProtocolTest, RefusesSelfSecondYieldAndUnknownPass)
{
    init(4, 0);
    preempted(1, 0);
    preempted(2, 0);
    std::vector<YieldOutcome> out;
    TestPolicy p = scripted([&](SpinContext &c) {
        out.push_back(c.try_yield(0, 0));  /* self */
        out.push_back(c.try_yield(1, 2));  /* no pass 2 */
        out.push_back(c.try_yield(9, 0));  /* no such vCPU */
        out.push_back(c.try_yield(1, 1));  /* ok: pass "second" */
        out.push_back(c.try_yield(2, 0));  /* after a yield */
    });
    Decision d = decide(p, true);
    EXPECT_THAT(out, ElementsAre(YieldOutcome::kStop, YieldOutcome::kStop,
                                 YieldOutcome::kStop, YieldOutcome::kYielded,
                                 YieldOutcome::kStop));
    EXPECT_THAT(mech_.attempts, ElementsAre(1)); /* only the legal one */
    EXPECT_EQ(d.target, 1);
    EXPECT_EQ(d.pass, "second");
    EXPECT_EQ(last_boosted(), 1); /* set by the protocol */
    EXPECT_EQ(ctr_.get(Ctr::yield_refused), 4u);
    EXPECT_EQ(ctr_.get(Ctr::yield_attempts), 1u);
}

/* `if (yielded < 0 && !--try) break;`: the third -ESRCH says stop, 0 costs
 * nothing, new_budget() starts over. */
TEST_F(ProtocolTest, KeepsTheEsrchBudget)
{
    init(4, 0);
    mech_.results[1] = kYieldEsrch;
    mech_.results[2] = 0;
    std::vector<YieldOutcome> out;
    int left = -1;
    TestPolicy p = scripted([&](SpinContext &c) {
        out.push_back(c.try_yield(2, 0));
        out.push_back(c.try_yield(1, 0));
        out.push_back(c.try_yield(1, 0));
        out.push_back(c.try_yield(1, 0));
        left = c.budget_left();
        c.new_budget();
        out.push_back(c.try_yield(1, 0));
    });
    decide(p, true);
    EXPECT_THAT(out, ElementsAre(YieldOutcome::kNotNow, YieldOutcome::kNoContention,
                                 YieldOutcome::kNoContention, YieldOutcome::kStop,
                                 YieldOutcome::kNoContention));
    EXPECT_EQ(left, 0);
    EXPECT_EQ(ctr_.get(Ctr::yield_budget_exhausted), 1u);
    EXPECT_EQ(ctr_.get(Ctr::yield_zero), 1u);
    EXPECT_EQ(ctr_.get(Ctr::yield_esrch), 4u);
}

/* Candidate tallies reach the counters once, at the end. */
TEST_F(ProtocolTest, RejectionsAreCounted)
{
    init(4, 0);
    TestPolicy p = scripted([&](SpinContext &c) {
        EXPECT_FALSE(c.ready_and_runnable(1)); /* running: not ready */
        c.reject(Reject::kStrict);
        c.reject(Reject::kUserMode);
        EXPECT_EQ(ctr_.get(Ctr::reject_strict), 0u);
    });
    decide(p, true);
    EXPECT_EQ(ctr_.get(Ctr::reject_not_ready), 1u);
    EXPECT_EQ(ctr_.get(Ctr::reject_strict), 1u);
    EXPECT_EQ(ctr_.get(Ctr::reject_user_mode), 1u);
    EXPECT_THAT(mech_.attempts, IsEmpty());
}

} // namespace
} // namespace vsched::test
