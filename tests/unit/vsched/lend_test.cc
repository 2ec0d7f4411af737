/* Lend until EOI (yield-lend): a yield to a vCPU that holds the yielder's
 * IPI lends the slot; it comes back to the lender at the receiver's EOI
 * of that vector, or when the receiver halts; the slot's deadline still
 * ends it; the lender waits at the queue head within the lift bound. */
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string_view>
#include <vector>

#include "core.h"
#include "ipi_tracker.h"
#include "policy_registry.h"
#include "pool_test_util.h"
#include "scheduler.h"
#include "overtake_ledger.h"
#include "scheduler_fixture.h"
#include "shared_pool.h"
#include "sim_host.h"

namespace vsched::test {
namespace {

constexpr int kCallFn = kCallFunctionVector;

class LendTest : public SchedulerFixture {
protected:
    void SetUp() override { ipi_ = std::make_unique<IpiTracker>(8, ipi_ctr_); }
    std::vector<int> queue()
    {
        std::vector<int> q;
        SlotPool p = s_->pool();
        for (int x = p.head(); x != kNone; x = p.next(x)) {
            q.push_back(x);
        }
        return q;
    }
    void send(int from, int to, int vector = kCallFn)
    {
        ipi_->on_ipi(from, &to, 1, vector, kApicDmFixed, kApicShNone, now_);
    }
    /* me yields to target with the lend asked for. */
    int lend(int me, int target)
    {
        s_->set_lend(ipi_.get(), now_);
        const int r = s_->yield_to(me, target);
        s_->set_lend(nullptr, 0);
        return r;
    }
    /* v EOIs `vector` (tracker and scheduler, as Core::on_eoi). */
    bool eoi(int v, int vector = kCallFn)
    {
        ipi_->on_eoi(v, vector, now_);
        return s_->note_eoi(v, vector);
    }
    /* 0 holds the only slot (deadline 2 ms), 1, 2, 3 wait; 0 lends to 2. */
    void lent_to_2()
    {
        one_slot(5, {1, 2, 3});
        send(0, 2);
        ASSERT_EQ(lend(0, 2), 1);
    }

    Counters ipi_ctr_;
    std::unique_ptr<IpiTracker> ipi_;
};

using V = std::vector<int>;

TEST_F(LendTest, TheLenderWaitsAtTheHeadAndGetsTheSlotBackAtEoi)
{
    lent_to_2();
    EXPECT_EQ(st(2), VcpuState::kRunning);
    EXPECT_EQ(s_->held_deadline(2), 2'000'000u); /* the slot's, as a yield */
    EXPECT_EQ(queue(), (V{0, 1, 3}));
    EXPECT_EQ(ctr_.get(Ctr::lends), 1u);
    EXPECT_EQ(traced(TraceEvent::kLend), 1);
    ok();
    at(1'300'000);
    EXPECT_FALSE(eoi(2, 0xfd)); /* another vector: not the one 0 waits for */
    EXPECT_FALSE(s_->lend_return_due(2));
    EXPECT_TRUE(eoi(2));
    EXPECT_TRUE(s_->lend_return_due(2));
    EXPECT_TRUE(s_->return_lend(2, 0));
    EXPECT_FALSE(s_->lend_return_due(2));
    EXPECT_EQ(st(0), VcpuState::kRunning);
    EXPECT_EQ(s_->held_deadline(0), 2'000'000u); /* the rest of its slice */
    EXPECT_EQ(queue(), (V{1, 3, 2}));            /* the receiver at the tail */
    EXPECT_EQ(count(Effect::Kind::kWake, 0), 1);
    EXPECT_TRUE(s_->pool().has_flag(2, vflag::kPreempted));
    EXPECT_EQ(ctr_.get(Ctr::lend_returns), 1u);
    EXPECT_EQ(traced(TraceEvent::kLendReturn), 1);
    ok();
    /* A second EOI of the vector finds no lend. */
    EXPECT_FALSE(eoi(2));
}

/* A multicast's sender waits for every receiver: at 2's EOI the slot goes
 * on to 3, which holds the same IPI, the lender still at the head; at 3's
 * EOI it comes back.  Without the tracker (the property switched off
 * meanwhile) it comes back at once. */
TEST_F(LendTest, TheSlotGoesOnToTheLendersNextReceiver)
{
    one_slot(5, {1, 2, 3});
    int dst[] = {2, 3};
    ipi_->on_ipi(0, dst, 2, kCallFn, kApicDmFixed, kApicShNone, now_);
    ASSERT_EQ(lend(0, 2), 1);
    at(1'200'000);
    ASSERT_TRUE(eoi(2));
    EXPECT_TRUE(s_->return_lend(2, 0, ipi_.get(), now_));
    EXPECT_EQ(st(3), VcpuState::kRunning);
    EXPECT_EQ(s_->held_deadline(3), 2'000'000u);
    EXPECT_EQ(queue(), (V{0, 1, 2}));
    EXPECT_EQ(ctr_.get(Ctr::lend_chains), 1u);
    EXPECT_EQ(count(Effect::Kind::kWake, 3), 1);
    ok();
    at(1'300'000);
    ASSERT_TRUE(eoi(3));
    EXPECT_TRUE(s_->return_lend(3, 0, ipi_.get(), now_));
    EXPECT_EQ(st(0), VcpuState::kRunning);
    EXPECT_EQ(s_->held_deadline(0), 2'000'000u);
    EXPECT_EQ(queue(), (V{1, 2, 3}));
    EXPECT_EQ(ctr_.get(Ctr::lend_returns), 1u);
    ok();

    one_slot(5, {1, 2, 3});
    ipi_->on_ipi(0, dst, 2, kCallFn, kApicDmFixed, kApicShNone, now_);
    ASSERT_EQ(lend(0, 2), 1);
    ASSERT_TRUE(eoi(2));
    EXPECT_TRUE(s_->return_lend(2, 0));
    EXPECT_EQ(st(0), VcpuState::kRunning);
    EXPECT_EQ(ctr_.get(Ctr::lend_chains), 1u);
}

TEST_F(LendTest, PlainYieldWithoutAHeldIpiOrWhenNotAsked)
{
    /* No IPI from 0 at 2. */
    one_slot(5, {1, 2, 3});
    ASSERT_EQ(lend(0, 2), 1);
    EXPECT_EQ(queue(), (V{1, 3, 0}));
    /* The IPI was EOI'd before the yield. */
    one_slot(5, {1, 2, 3});
    send(0, 2);
    eoi(2);
    ASSERT_EQ(lend(0, 2), 1);
    EXPECT_EQ(queue(), (V{1, 3, 0}));
    /* Not asked (the property off, or another policy). */
    one_slot(5, {1, 2, 3});
    send(0, 2);
    ASSERT_EQ(s_->yield_to(0, 2), 1);
    EXPECT_EQ(queue(), (V{1, 3, 0}));
    EXPECT_FALSE(eoi(2));
    EXPECT_EQ(ctr_.get(Ctr::lends), 0u);
    ok();
}

TEST_F(LendTest, AHaltingReceiverGivesTheSlotBack)
{
    lent_to_2();
    at(1'400'000);
    s_->release(2, ReleaseReason::kHalt, 3); /* before any halt successor */
    EXPECT_EQ(st(0), VcpuState::kRunning);
    EXPECT_EQ(s_->held_deadline(0), 2'000'000u);
    EXPECT_EQ(queue(), (V{1, 3}));
    EXPECT_EQ(ctr_.get(Ctr::lend_halt_returns), 1u);
    EXPECT_EQ(ctr_.get(Ctr::halt_handoffs), 0u);
    EXPECT_FALSE(eoi(2)); /* the lend is over */
    ok();
}

TEST_F(LendTest, TheDeadlineEndsTheLend)
{
    lent_to_2();
    at(2'000'000);
    EXPECT_TRUE(eoi(2)); /* the EOI came, but the exit is past the deadline */
    EXPECT_FALSE(s_->return_lend(2, 0));
    EXPECT_TRUE(s_->preempt_if_due(2, 0));
    EXPECT_EQ(st(0), VcpuState::kRunning); /* the head: the lender */
    EXPECT_EQ(s_->held_deadline(0), 3'000'000u);
    EXPECT_EQ(ctr_.get(Ctr::lend_expired), 1u);
    EXPECT_EQ(ctr_.get(Ctr::lend_returns), 0u);
    ok();
}

/* The lender passes everyone queued: not if one of them is at the bound
 * (a plain yield then); nor at the return if someone lifted ahead of it
 * is (the receiver keeps the slot). */
TEST_F(LendTest, TheBoundTurnsALendIntoAPlainYield)
{
    one_slot(5, {1, 2}, 1);
    s_->note_wake(3, kWakeIpi, now_);
    ASSERT_FALSE(s_->acquire(3, true)); /* lifted past 1 and 2: both at 1 */
    ASSERT_EQ(queue(), (V{3, 1, 2}));
    send(0, 2);
    ASSERT_EQ(lend(0, 2), 1);
    EXPECT_EQ(queue(), (V{3, 1, 0}));
    EXPECT_EQ(ctr_.get(Ctr::lend_bounded), 1u);
    EXPECT_EQ(ctr_.get(Ctr::lends), 0u);
    EXPECT_FALSE(eoi(2));
    ok();

    ctr_.reset();
    lent_to_2(); /* bound 2 */
    /* 4 is lifted ahead of the lender, which it passes (once). */
    s_->note_wake(4, kWakeIpi, now_);
    ASSERT_FALSE(s_->acquire(4, true));
    s_->set_lift_bound(0); /* now nobody may be passed at all */
    ASSERT_EQ(queue(), (V{4, 0, 1, 3}));
    at(1'200'000);
    EXPECT_TRUE(eoi(2));
    EXPECT_FALSE(s_->return_lend(2, 0));
    EXPECT_EQ(st(2), VcpuState::kRunning);
    EXPECT_EQ(ctr_.get(Ctr::lend_bounded), 1u);
    ok();
}

TEST_F(LendTest, AStoppedLenderEndsTheLend)
{
    lent_to_2();
    s_->release(0, ReleaseReason::kStop);
    at(1'200'000);
    EXPECT_TRUE(eoi(2));
    EXPECT_FALSE(s_->return_lend(2, 0));
    EXPECT_EQ(st(2), VcpuState::kRunning);
    EXPECT_EQ(queue(), (V{1, 3}));
    /* Queued again, it is a new wait: the old lend does not come back. */
    lent_to_2();
    s_->release(0, ReleaseReason::kStop);
    at(1'100'000);
    ASSERT_FALSE(s_->acquire(0));
    at(1'200'000);
    EXPECT_TRUE(eoi(2));
    EXPECT_FALSE(s_->return_lend(2, 0));
    EXPECT_EQ(st(2), VcpuState::kRunning);
    EXPECT_EQ(ctr_.get(Ctr::lend_returns), 0u);
    ok();
}

TEST_F(LendTest, AStoppedReceiverPassesTheSlotToTheHead)
{
    lent_to_2();
    at(1'200'000);
    s_->release(2, ReleaseReason::kStop);
    EXPECT_EQ(st(0), VcpuState::kRunning);
    EXPECT_EQ(s_->held_deadline(0), 2'200'000u); /* a grant from the queue */
    EXPECT_FALSE(eoi(2));
    EXPECT_EQ(ctr_.get(Ctr::lend_returns) + ctr_.get(Ctr::lend_halt_returns), 0u);
    ok();
}

/* The same under random lends, returns, halts, preemptions and IPI
 * wakes: the lender's place at the head and its return pass queued vCPUs
 * only within the bound (a yield target itself is served out of turn, as
 * every directed yield, and not counted). */
TEST_F(LendTest, NobodyIsOvertakenMoreThanTheBound)
{
    constexpr int kN = 8;
    constexpr unsigned kBound = 2;
    init(kN, 2, kBound);
    std::mt19937 rng(11);
    OvertakeLedger ledger(kN);
    uint64_t t = 1'000'000;
    for (int step = 0; step < 20000; step++) {
        t += 1000 + rng() % 60'000;
        at(t);
        std::vector<VcpuState> before(kN);
        for (int v = 0; v < kN; v++) {
            before[v] = st(v);
        }
        const int v = static_cast<int>(rng() % kN);
        int exempt = kNone;
        switch (st(v)) {
        case VcpuState::kHalted:
        case VcpuState::kStopped:
            s_->note_wake(v, kWakeIpi, now_);
            s_->acquire(v, rng() % 2);
            break;
        case VcpuState::kRunning:
            switch (rng() % 4) {
            case 0:
                s_->release(v, ReleaseReason::kHalt, static_cast<int>(rng() % kN));
                break;
            case 1:
                s_->preempt_if_due(v, 0);
                break;
            case 2: {
                const int target = static_cast<int>(rng() % kN);
                if (target != v) {
                    /* A multicast, so that lends chain. */
                    int dst[] = {target, static_cast<int>(rng() % kN)};
                    ipi_->on_ipi(v, dst, 2, kCallFn, kApicDmFixed, kApicShNone, now_);
                    exempt = target;
                    lend(v, target);
                }
                break;
            }
            default: {
                eoi(v);
                const uint64_t chains = ctr_.get(Ctr::lend_chains);
                s_->return_lend(v, 0, rng() % 2 ? ipi_.get() : nullptr, now_);
                for (int x = 0; x < kN && ctr_.get(Ctr::lend_chains) > chains; x++) {
                    if (before[x] == VcpuState::kQueued && st(x) == VcpuState::kRunning) {
                        exempt = x; /* the next receiver: a yield target */
                    }
                }
                s_->preempt_if_due(v, 0);
                break;
            }
            }
            break;
        case VcpuState::kQueued:
            break;
        }
        ledger.step(before, [&](int g) { return st(g); }, exempt);
        ok();
    }
    EXPECT_GT(ctr_.get(Ctr::lends), 100u);
    EXPECT_GT(ctr_.get(Ctr::lend_returns), 20u);
    EXPECT_GT(ctr_.get(Ctr::lend_halt_returns), 10u);
    EXPECT_GT(ctr_.get(Ctr::lend_expired), 10u);
    EXPECT_GT(ctr_.get(Ctr::lend_bounded), 0u);
    EXPECT_GT(ctr_.get(Ctr::lend_chains), 5u);
    EXPECT_LE(ledger.max_overtaken(), static_cast<int>(kBound));
    EXPECT_EQ(ledger.max_overtaken(), static_cast<int>(kBound)); /* the bound is reached */
}

/* Shared pool: the lender waits in the pool's queue beside another VM's
 * vCPUs.  One slot; VM A (3 vCPUs) holds it with 0, B's 0 and A's 2 wait;
 * A's 0 lends to A's 2.  Another VM's eviction, a repair (which restores
 * FIFO order: the lender goes back behind B's 0) and the lending VM's own
 * eviction each leave the pool consistent, and no lend dangles. */
class SharedLendTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        std::string err;
        a_ = SharedPool::attach(name_, 1, kSlice, 3, now_ns(), &err);
        ASSERT_TRUE(a_) << err;
        b_ = SharedPool::attach(name_, 1, kSlice, 2, now_ns(), &err);
        ASSERT_TRUE(b_) << err;
        sa_ = std::make_unique<Scheduler>(a_->state(), a_->member(), 1, kSlice, ctr_a_, spin_a_);
        sb_ = std::make_unique<Scheduler>(b_->state(), b_->member(), 1, kSlice, ctr_b_, spin_b_);
        ipi_ = std::make_unique<IpiTracker>(3, ipi_ctr_);
        at(1'000'000);
        ASSERT_TRUE(sa_->acquire(0));
        at(1'100'000);
        ASSERT_FALSE(sb_->acquire(0));
        at(1'200'000);
        ASSERT_FALSE(sa_->acquire(2));
        at(1'300'000);
        int dst = 2;
        ipi_->on_ipi(0, &dst, 1, kCallFn, kApicDmFixed, kApicShNone, now_);
        sa_->set_lend(ipi_.get(), now_);
        ASSERT_EQ(sa_->yield_to(0, 2), 1);
        sa_->set_lend(nullptr, 0);
        ASSERT_EQ(ctr_a_.get(Ctr::lends), 1u);
        ASSERT_EQ(queue(), (std::vector<int>{a(0), b(0)}));
    }
    /* A fresh lock section at t on both schedulers (one process holds the
     * pool's state for both here: the test is single-threaded). */
    void at(uint64_t t)
    {
        now_ = t;
        fx_ = Effects();
        sa_->begin(now_, &fx_);
        sb_->begin(now_, &fx_);
    }
    int a(int v) const { return sa_->base() + v; }
    int b(int v) const { return sb_->base() + v; }
    std::vector<int> queue()
    {
        std::vector<int> q;
        SlotPool p = sa_->pool();
        for (int x = p.head(); x != kNone; x = p.next(x)) {
            q.push_back(x);
        }
        return q;
    }
    VcpuState st(int g) { return sa_->pool().state(g); }
    void ok(Scheduler &s)
    {
        std::string why;
        EXPECT_TRUE(s.check_invariants(&why)) << why;
    }

    static constexpr uint64_t kSlice = 1'000'000;
    PoolFileGuard guard_{unique_pool_name("t-", "lend")};
    std::string name_ = guard_.name;
    std::unique_ptr<SharedPool> a_, b_;
    Counters ctr_a_, ctr_b_, ipi_ctr_;
    SpinDetector spin_a_{3, 10'000, 50'000, 400'000, 2};
    SpinDetector spin_b_{2, 10'000, 50'000, 400'000, 2};
    std::unique_ptr<Scheduler> sa_, sb_;
    std::unique_ptr<IpiTracker> ipi_;
    Effects fx_;
    uint64_t now_ = 0;
};

TEST_F(SharedLendTest, AnotherVmsEvictionLeavesTheLend)
{
    sb_->evict_member(b_->member());
    ok(*sa_);
    at(1'400'000);
    ASSERT_TRUE(sa_->note_eoi(2, kCallFn));
    EXPECT_TRUE(sa_->return_lend(2, 0));
    EXPECT_EQ(st(a(0)), VcpuState::kRunning);
    EXPECT_EQ(queue(), (std::vector<int>{a(2)}));
    ok(*sa_);
}

TEST_F(SharedLendTest, RepairRestoresFifoAndTheReturnStaysWithinTheBound)
{
    at(1'400'000);
    sa_->repair();
    EXPECT_EQ(queue(), (std::vector<int>{b(0), a(0)})); /* queued_at order */
    ok(*sa_);
    ASSERT_TRUE(sa_->note_eoi(2, kCallFn));
    EXPECT_TRUE(sa_->return_lend(2, 0)); /* B's 0 passed twice: the bound */
    EXPECT_EQ(st(a(0)), VcpuState::kRunning);
    EXPECT_EQ(queue(), (std::vector<int>{b(0), a(2)}));
    ok(*sa_);
    /* A second lend would pass B's 0 a third time: a plain yield. */
    at(1'500'000);
    int dst = 2;
    ipi_->on_ipi(0, &dst, 1, kCallFn, kApicDmFixed, kApicShNone, now_);
    sa_->set_lend(ipi_.get(), now_);
    ASSERT_EQ(sa_->yield_to(0, 2), 1);
    EXPECT_EQ(ctr_a_.get(Ctr::lend_bounded), 1u);
    EXPECT_EQ(queue(), (std::vector<int>{b(0), a(0)}));
    ok(*sa_);
}

TEST_F(SharedLendTest, TheLendingVmsEvictionPassesTheSlotOn)
{
    sb_->evict_member(a_->member()); /* A died: B reaps it */
    EXPECT_EQ(st(b(0)), VcpuState::kRunning);
    EXPECT_EQ(st(a(0)), VcpuState::kStopped);
    EXPECT_EQ(st(a(2)), VcpuState::kStopped);
    ok(*sb_);
}

/* End to end through the Core: ipi-prio asks, the property switches.  0
 * sends 2 a call-function IPI and spins; ipi-prio yields to 2 and, with
 * yield-lend, lends: 2's EOI marks the return (no kick: Linux EOIs before
 * it runs the function), 2's next exit takes the lock though its deadline
 * is far, and 0 runs again. */
TEST(LendCoreTest, ThePolicysChoiceAndThePropertysSwitch)
{
    struct Case {
        const char *policy;
        bool on;
    } cases[] = {{"ipi-prio", true}, {"ipi-prio", false}, {"vanilla", true}};
    for (const Case &k : cases) {
        SimHost host(4);
        Config c;
        c.pcpus = 1;
        c.slice_ns = 1'000'000;
        c.set_policy(policy_id(k.policy));
        c.ple_gap_ns = 10'000;
        c.ple_window_ns = 50'000;
        c.ple_window_max_ns = 200'000;
        std::string err;
        auto core = Core::create(c, 4, host, &err);
        ASSERT_TRUE(core) << err;
        core->set_mechanism(Mechanism::kYieldLend, k.on);
        ASSERT_TRUE(core->acquire(0));
        ASSERT_FALSE(core->acquire(1));
        ASSERT_FALSE(core->acquire(2));
        int dst = 2;
        core->on_ipi(0, &dst, 1, kCallFn, kApicDmFixed, kApicShNone);
        core->inject_spin(0, 0);
        EXPECT_TRUE(core->after_exec(0, 0)); /* yielded (vanilla: to 1) */
        const bool lent = k.on && std::string_view(k.policy) == "ipi-prio";
        EXPECT_EQ(core->counters()[Ctr::lends], lent ? 1u : 0u) << k.policy << " " << k.on;
        if (std::string_view(k.policy) != "ipi-prio") {
            continue;
        }
        ASSERT_TRUE(core->acquire(2));
        host.advance(100'000);
        EXPECT_FALSE(core->after_exec(2, 0)); /* no lock: nothing due */
        const uint64_t unlocked = core->counters()[Ctr::exec_exits_unlocked];
        host.take_kick(2);
        core->on_eoi(2, kCallFn);
        EXPECT_FALSE(host.kick_pending(2));
        EXPECT_EQ(core->after_exec(2, 0), lent); /* lost the slot */
        EXPECT_EQ(core->counters()[Ctr::exec_exits_unlocked], unlocked + (lent ? 0 : 1));
        VcpuInfo i0{};
        ASSERT_TRUE(core->vcpu_info(0, &i0));
        EXPECT_EQ(state_of(i0), lent ? VcpuState::kRunning : VcpuState::kQueued);
        EXPECT_EQ(core->counters()[Ctr::lend_returns], lent ? 1u : 0u);
        std::string why;
        EXPECT_TRUE(core->check_invariants(&why)) << why;
    }
}

TEST(LendPolicyTest, IpiPrioAsksForItOthersDoNot)
{
    EXPECT_TRUE(make_policy(policy_id("ipi-prio"))->lends_until_eoi());
    for (const char *p : {"vanilla", "ipi", "none"}) {
        EXPECT_FALSE(make_policy(policy_id(p))->lends_until_eoi()) << p;
    }
}

} // namespace
} // namespace vsched::test
