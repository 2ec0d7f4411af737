/* Core end to end on the simulated host: spin -> decision -> handoff,
 * preemption through tick/kick, window growth, knobs, effects outside the
 * lock, traces and counters. */
#include <gtest/gtest.h>

#include <memory>

#include "core.h"
#include "sim_host.h"

namespace vsched::test {
namespace {

class CoreTest : public ::testing::Test {
protected:
    void init(int n, int slots, PolicyId pol)
    {
        core_.reset(); /* it uses the host up to its end */
        host_ = std::make_unique<SimHost>(n);
        Config c;
        c.pcpus = slots;
        c.slice_ns = 1'000'000;
        c.set_policy(pol);
        c.ple_gap_ns = 10'000;
        c.ple_window_ns = 50'000;
        c.ple_window_max_ns = 200'000;
        std::string err;
        core_ = Core::create(c, n, *host_, &err);
        ASSERT_TRUE(core_) << err;
        core_->set_tracing(true);
    }
    /* PAUSE every 5 us until the detector fires (or `max` PAUSEs). */
    bool spin(int v, int cpl = 0, int max = 100)
    {
        for (int i = 0; i < max; i++) {
            host_->advance(5'000);
            if (core_->on_pause(v, cpl)) {
                return true;
            }
        }
        return false;
    }
    void ok()
    {
        std::string why;
        ASSERT_TRUE(core_->check_invariants(&why)) << why;
    }
    VcpuInfo info(int v)
    {
        VcpuInfo i;
        EXPECT_TRUE(core_->vcpu_info(v, &i));
        return i;
    }
    bool traced(TraceEvent e, int v, int target)
    {
        for (const auto &t : host_->traces()) {
            if (t.event == e && t.vcpu == v && t.target == target) {
                return true;
            }
        }
        return false;
    }
    /* The generic yield event, decoded as the QEMU glue decodes it. */
    bool traced_yield(int v, int target, std::string_view policy, std::string_view pass)
    {
        for (const auto &t : host_->traces()) {
            if (t.event == TraceEvent::kYield && t.vcpu == v && t.target == target) {
                auto id = static_cast<PolicyId>(yield_trace_policy(t.arg));
                const char *p = policy_pass_name(id, yield_trace_pass(t.arg));
                if (policy_name(id) == policy && p && p == pass) {
                    return true;
                }
            }
        }
        return false;
    }

    std::unique_ptr<SimHost> host_;
    std::unique_ptr<Core> core_;
};

TEST_F(CoreTest, CreateRejectsBadConfig)
{
    SimHost h(2);
    Config c;
    c.pcpus = 0;
    std::string err;
    EXPECT_EQ(Core::create(c, 2, h, &err), nullptr);
    EXPECT_FALSE(err.empty());
}

/* 1 slot, vCPU 0 spins at CPL 0 waiting for its IPI receiver 1 (queued):
 * under ipi the strict pass hands 0's slot to 1 at once. */
TEST_F(CoreTest, SpinHandsSlotToIpiReceiver)
{
    init(3, 1, policy_id("ipi"));
    ASSERT_TRUE(core_->acquire(0));
    ASSERT_FALSE(core_->acquire(1));
    int dst = 1;
    core_->on_ipi(0, &dst, 1, 0xfb, kApicDmFixed, kApicShNone);
    ASSERT_TRUE(spin(0));
    EXPECT_TRUE(info(0).spin_pending);
    EXPECT_TRUE(core_->after_exec(0, 0)); /* lost the slot */
    EXPECT_TRUE(host_->take_wake(1));
    EXPECT_TRUE(core_->acquire(1));
    EXPECT_FALSE(core_->acquire(0));
    VcpuInfo i0 = info(0);
    EXPECT_EQ(state_of(i0), VcpuState::kQueued);
    EXPECT_TRUE(i0.ready);
    EXPECT_TRUE(i0.preempted);           /* kvm_sched_out(): still runnable */
    EXPECT_TRUE(i0.preempted_in_kernel); /* spun at CPL 0 */
    EXPECT_TRUE(i0.in_spin_loop);
    auto c = core_->counters();
    EXPECT_EQ(c.yields("strict"), 1u);
    EXPECT_EQ(c[Ctr::yield_receiver_hit_series], 1u);
    EXPECT_EQ(c[Ctr::yield_receiver_hit_any], 1u);
    EXPECT_EQ(c[Ctr::handoffs], 1u);
    EXPECT_EQ(c[Ctr::spins_detected], 1u);
    EXPECT_TRUE(traced(TraceEvent::kSpinDetected, 0, -1));
    EXPECT_TRUE(traced_yield(0, 1, "ipi", "strict"));
    EXPECT_TRUE(traced(TraceEvent::kHandoff, 0, 1));
    ok();
}

/* Both receiver-hit counters are counted for every policy: vanilla yields
 * to its first candidate, which is me's receiver in both views. */
TEST_F(CoreTest, ReceiverHitCountedInBothViewsForEveryPolicy)
{
    for (PolicyId k : {policy_id("vanilla"), policy_id("ipi-prio"), policy_id("ipi-v2")}) {
        init(3, 1, k);
        ASSERT_TRUE(core_->acquire(0));
        ASSERT_FALSE(core_->acquire(1));
        int dst = 1;
        core_->on_ipi(0, &dst, 1, 0xfb, kApicDmFixed, kApicShNone);
        ASSERT_TRUE(spin(0));
        EXPECT_TRUE(core_->after_exec(0, 0));
        auto c = core_->counters();
        EXPECT_EQ(c[Ctr::yield_receiver_hit_series], 1u) << policy_name(k);
        EXPECT_EQ(c[Ctr::yield_receiver_hit_any], 1u) << policy_name(k);
        ok();
    }
}

/* n vCPUs, one slot: `holder` holds it, `queued` waits in the queue after
 * a slice-expiry preemption at CPL `cpl` (preempted, in kernel iff 0). */
class CorePolicyTest : public CoreTest {
protected:
    void preempt_then_hold(int queued, int holder, int cpl)
    {
        core_->set_preempt_delay_ns(0); /* preempted at once, in kernel too */
        ASSERT_TRUE(core_->acquire(queued));
        ASSERT_FALSE(core_->acquire(holder));
        host_->advance(1'000'000);
        core_->tick();
        ASSERT_TRUE(core_->after_exec(queued, cpl));
        ASSERT_TRUE(host_->take_wake(holder));
        ASSERT_TRUE(core_->acquire(holder));
        ASSERT_TRUE(info(queued).preempted);
    }
    int last_boosted()
    {
        PoolState ps;
        core_->snapshot_pool(&ps);
        return ps.last_boosted_vcpu;
    }
};

/* 1 was preempted in user mode, 0 spins in the kernel: only a relaxed
 * pass takes 1.  relaxed-boost=off (set at run time on Core) never yields
 * relaxed; on, the relaxed yield moves last_boosted to 1. */
TEST_F(CorePolicyTest, RelaxedBoostOffNeverYieldsRelaxed)
{
    for (PolicyId k : {policy_id("ipi"), policy_id("ipi-prio"), policy_id("ipi-v2")}) {
        for (bool relaxed : {false, true}) {
            init(2, 1, k);
            core_->set_relaxed_boost(relaxed);
            preempt_then_hold(1, 0, 3);
            const int before = last_boosted();
            ASSERT_NE(before, 1);
            ASSERT_TRUE(spin(0));
            EXPECT_EQ(core_->after_exec(0, 0), relaxed) << policy_name(k);
            auto c = core_->counters();
            EXPECT_EQ(c.yields("relaxed"), relaxed ? 1u : 0u) << policy_name(k);
            EXPECT_EQ(c[Ctr::no_target], relaxed ? 0u : 1u) << policy_name(k);
            EXPECT_EQ(last_boosted(), relaxed ? 1 : before) << policy_name(k);
            if (relaxed) {
                EXPECT_TRUE(traced_yield(0, 1, policy_name(k), "relaxed"));
                EXPECT_TRUE(core_->acquire(1));
            }
            ok();
        }
    }
}

/* Against the real Scheduler: halted vCPUs (1, 2) and the spinner itself
 * are never tried, by any policy; the preempted 3 is the one target.  With
 * 3 halted too, nothing is tried at all. */
TEST_F(CorePolicyTest, HaltedAndSelfNeverChosen)
{
    for (PolicyId k : {policy_id("vanilla"), policy_id("ipi"), policy_id("ipi-prio"),
                         policy_id("ipi-v2")}) {
        init(4, 1, k);
        core_->release(1, ReleaseReason::kHalt);
        core_->release(2, ReleaseReason::kHalt);
        preempt_then_hold(3, 0, 0);
        ASSERT_TRUE(spin(0));
        EXPECT_TRUE(core_->after_exec(0, 0)) << policy_name(k);
        auto c = core_->counters();
        EXPECT_EQ(c[Ctr::yield_attempts], 1u) << policy_name(k);
        EXPECT_TRUE(traced(TraceEvent::kHandoff, 0, 3)) << policy_name(k);
        EXPECT_EQ(state_of(info(1)), VcpuState::kHalted);
        ok();

        init(4, 1, k);
        ASSERT_TRUE(core_->acquire(0));
        for (int v = 1; v < 4; v++) {
            core_->release(v, ReleaseReason::kHalt);
        }
        ASSERT_TRUE(spin(0));
        EXPECT_FALSE(core_->after_exec(0, 0)) << policy_name(k);
        c = core_->counters();
        EXPECT_EQ(c[Ctr::yield_attempts], 0u) << policy_name(k);
        EXPECT_EQ(c[Ctr::no_target], 1u) << policy_name(k);
        ok();
    }
}

/* A spin with nobody to yield to grows the window; sched-out resets it. */
TEST_F(CoreTest, FruitlessSpinGrowsWindowSchedOutResets)
{
    init(2, 2, policy_id("vanilla"));
    ASSERT_TRUE(core_->acquire(0));
    ASSERT_TRUE(core_->acquire(1));
    ASSERT_TRUE(spin(0));
    EXPECT_FALSE(core_->after_exec(0, 0));
    EXPECT_EQ(info(0).spin_window_ns, 100'000u);
    EXPECT_EQ(core_->counters()[Ctr::no_target], 1u);
    EXPECT_TRUE(traced(TraceEvent::kNoTarget, 0, -1));
    core_->release(0, ReleaseReason::kHalt);
    EXPECT_EQ(info(0).spin_window_ns, 50'000u);
    ok();
}

TEST_F(CoreTest, PolicyNoneNeverYieldsAndIsRuntimeSwitchable)
{
    init(2, 1, policy_id("none"));
    ASSERT_TRUE(core_->acquire(0));
    ASSERT_FALSE(core_->acquire(1));
    ASSERT_TRUE(spin(0));
    EXPECT_FALSE(core_->after_exec(0, 0));
    EXPECT_EQ(core_->counters()[Ctr::spins_ignored], 1u);
    EXPECT_EQ(info(0).spin_window_ns, 50'000u); /* no PLE growth */
    core_->set_policy(policy_id("vanilla"));
    EXPECT_EQ(core_->policy(), policy_id("vanilla"));
    ASSERT_TRUE(spin(0));
    EXPECT_TRUE(core_->after_exec(0, 0));
    EXPECT_EQ(core_->counters().yields("scan"), 1u);
    ok();
}

/* Gate passes and exits before the slot's deadline skip the lock; the
 * first exit after it (or after a spin, or without a slot) takes the full
 * path. */
TEST_F(CoreTest, ExitsBeforeTheDeadlineTakeNoLock)
{
    init(2, 1, policy_id("vanilla"));
    EXPECT_TRUE(core_->after_exec(0, 0)); /* no slot yet: full path */
    EXPECT_EQ(core_->counters()[Ctr::exec_exits_unlocked], 0u);
    ASSERT_TRUE(core_->acquire(0));
    ASSERT_FALSE(core_->acquire(1));
    for (int i = 0; i < 5; i++) {
        EXPECT_TRUE(core_->acquire(0));
        EXPECT_FALSE(core_->after_exec(0, 0));
    }
    EXPECT_EQ(core_->counters()[Ctr::exec_enters_unlocked], 5u);
    EXPECT_EQ(core_->counters()[Ctr::exec_exits_unlocked], 5u);
    host_->advance(999'999);
    EXPECT_FALSE(core_->after_exec(0, 0));
    EXPECT_EQ(core_->counters()[Ctr::exec_exits_unlocked], 6u);
    host_->advance(1);
    EXPECT_TRUE(core_->after_exec(0, 0)); /* deadline: preempted */
    EXPECT_EQ(core_->counters()[Ctr::preemptions], 1u);
    EXPECT_EQ(core_->counters()[Ctr::exec_exits_unlocked], 6u);
    /* vCPU 1 holds the slot now; a spin before its deadline still decides */
    ASSERT_TRUE(core_->acquire(1));
    ASSERT_TRUE(spin(1));
    EXPECT_TRUE(core_->after_exec(1, 0));
    EXPECT_EQ(core_->counters()[Ctr::spin_decisions], 1u);
    EXPECT_EQ(core_->counters()[Ctr::exec_exits_unlocked], 6u);
    ok();
}

/* Nobody waits: an exit past the deadline renews the slice; a vCPU that
 * queues later still gets the slot at the next expiry. */
TEST_F(CoreTest, ExpiredSliceWithoutWaitersIsRenewed)
{
    init(2, 1, policy_id("vanilla"));
    ASSERT_TRUE(core_->acquire(0));
    host_->advance(1'500'000);
    EXPECT_FALSE(core_->after_exec(0, 0));
    EXPECT_EQ(core_->counters()[Ctr::slice_renewals], 1u);
    EXPECT_EQ(info(0).slot_deadline_ns, host_->now_ns() + 1'000'000);
    EXPECT_TRUE(core_->acquire(0));
    EXPECT_FALSE(core_->after_exec(0, 0));
    EXPECT_EQ(core_->counters()[Ctr::exec_exits_unlocked], 1u);
    ASSERT_FALSE(core_->acquire(1));
    EXPECT_FALSE(host_->kick_pending(0)); /* the renewed slice runs on */
    host_->advance(1'000'000);
    core_->tick();
    EXPECT_TRUE(host_->take_kick(0));
    EXPECT_TRUE(core_->after_exec(0, 0));
    EXPECT_TRUE(core_->acquire(1));
    EXPECT_EQ(core_->counters()[Ctr::slice_renewals], 1u);
    ok();
}

/* Slice expiry: tick kicks the holder once someone waits; the holder's
 * after_exec preempts it, sampling CPL. */
TEST_F(CoreTest, TickKickPreempt)
{
    init(2, 1, policy_id("vanilla"));
    ASSERT_TRUE(core_->acquire(0));
    host_->advance(500'000);
    EXPECT_EQ(core_->tick(), host_->now_ns() + 500'000);
    ASSERT_FALSE(core_->acquire(1));
    EXPECT_FALSE(host_->kick_pending(0)); /* not expired yet */
    host_->advance(500'000);
    core_->tick();
    EXPECT_TRUE(host_->take_kick(0));
    EXPECT_TRUE(core_->after_exec(0, 3));
    VcpuInfo i0 = info(0);
    EXPECT_TRUE(i0.preempted);
    EXPECT_FALSE(i0.preempted_in_kernel);
    EXPECT_TRUE(host_->take_wake(1));
    EXPECT_TRUE(traced(TraceEvent::kPreempt, 0, -1));
    EXPECT_EQ(core_->counters()[Ctr::preemptions], 1u);
    ok();
}

/* An IPI to a halted vCPU makes it "ready, blocking, dy_runnable": vanilla
 * tries it, yield_to returns 0 (not queued yet) at no budget cost, and the
 * scan goes on to the queued vCPU. */
TEST_F(CoreTest, HaltedIpiTargetZeroThenQueued)
{
    init(4, 2, policy_id("vanilla"));
    ASSERT_TRUE(core_->acquire(0));
    ASSERT_TRUE(core_->acquire(3));
    core_->release(1, ReleaseReason::kHalt);
    ASSERT_FALSE(core_->acquire(2));
    int dst = 1;
    core_->on_ipi(0, &dst, 1, 0xfb, kApicDmFixed, kApicShNone);
    ASSERT_TRUE(spin(0));
    EXPECT_TRUE(core_->after_exec(0, 0));
    auto c = core_->counters();
    EXPECT_EQ(c[Ctr::yield_zero], 1u);   /* 1: halted, woken, pending */
    EXPECT_EQ(c.yields("scan"), 1u);   /* then 2 */
    EXPECT_EQ(state_of(info(2)), VcpuState::kRunning);
    ok();
}

/* The core calls the host only with its mutex released: every callback
 * takes the core lock itself (vcpu_info), which would self-deadlock. */
class ReentrantHost : public HostInterface {
public:
    Core *core = nullptr;
    int calls = 0;
    uint64_t t = 1'000'000;
    uint64_t now_ns() override { return t; }
    void kick(int v) override { probe(v); }
    void wake(int v) override { probe(v); }
    void wait(int, uint64_t) override {}
    void trace(TraceEvent, int v, int, int64_t) override { probe(v); }
    void probe(int v)
    {
        VcpuInfo i;
        if (core && core->vcpu_info(v, &i)) {
            calls++;
        }
    }
};

TEST(CoreLocking, CallbacksRunOutsideTheLock)
{
    ReentrantHost h;
    Config c;
    c.pcpus = 1;
    c.slice_ns = 1'000'000;
    std::string err;
    auto core = Core::create(c, 3, h, &err);
    h.core = core.get();
    core->set_tracing(true);
    ASSERT_TRUE(core->acquire(0));
    ASSERT_FALSE(core->acquire(1));
    h.t += 2'000'000;
    core->tick();                 /* kick */
    EXPECT_TRUE(core->after_exec(0, 0)); /* preempt: wake + traces */
    core->release(1, ReleaseReason::kHalt);
    EXPECT_GE(h.calls, 5);
}

TEST_F(CoreTest, MwaitNotCountedAsSpin)
{
    init(2, 1, policy_id("vanilla"));
    ASSERT_TRUE(core_->acquire(0));
    for (int i = 0; i < 100; i++) {
        host_->advance(5'000);
        core_->on_mwait(0);
    }
    auto c = core_->counters();
    EXPECT_EQ(c[Ctr::mwait_events], 100u);
    EXPECT_EQ(c[Ctr::spins_detected], 0u);
    EXPECT_EQ(c[Ctr::pause_events], 0u);
}

TEST_F(CoreTest, InvalidIndicesAreHarmless)
{
    init(2, 1, policy_id("ipi-prio"));
    EXPECT_FALSE(core_->acquire(-1));
    EXPECT_FALSE(core_->acquire(2));
    EXPECT_TRUE(core_->after_exec(7, 0));
    core_->release(9, ReleaseReason::kHalt);
    EXPECT_FALSE(core_->on_pause(5, 0));
    int dst[] = {-3, 8};
    core_->on_ipi(0, dst, 2, 0xfb, kApicDmFixed, kApicShNone);
    core_->on_eoi(12, 0xfb);
    VcpuInfo i;
    EXPECT_FALSE(core_->vcpu_info(3, &i));
    ok();
}

TEST_F(CoreTest, JsonIsOneLineWithEveryCounter)
{
    init(2, 1, policy_id("vanilla"));
    ASSERT_TRUE(core_->acquire(0));
    std::string j = core_->counters_json();
    EXPECT_EQ(j.find('\n'), std::string::npos);
    EXPECT_EQ(j.front(), '{');
    EXPECT_EQ(j.back(), '}');
    for (int i = 0; i < kNumCounters; i++) {
        EXPECT_NE(j.find(std::string("\"") + counter_name(i) + "\":"), std::string::npos);
    }
    EXPECT_NE(j.find("\"grants_immediate\":1"), std::string::npos);
}

/* The policy chooses a scheduler mechanism and the property switches it:
 * 0 sends 2 an IPI (2 is queued), then halts.  ipi-prio with halt-handoff
 * on hands 0's slot to 2 past the queue head 1; off, or under vanilla, 1
 * gets it. */
TEST_F(CoreTest, HaltHandoffIsThePolicysChoiceAndThePropertysSwitch)
{
    struct Case {
        const char *policy;
        bool on;
        int expect;
    } cases[] = {{"ipi-prio", true, 2}, {"ipi-prio", false, 1}, {"vanilla", true, 1}};
    for (const Case &k : cases) {
        init(4, 1, policy_id(k.policy));
        core_->set_mechanism(Mechanism::kHaltHandoff, k.on);
        ASSERT_TRUE(core_->acquire(0));
        ASSERT_FALSE(core_->acquire(1));
        ASSERT_FALSE(core_->acquire(2));
        int dst = 2;
        core_->on_ipi(0, &dst, 1, 0xfd, kApicDmFixed, kApicShNone);
        core_->release(0, ReleaseReason::kHalt);
        EXPECT_EQ(state_of(info(k.expect)), VcpuState::kRunning) << k.policy << " " << k.on;
        EXPECT_EQ(core_->counters()[Ctr::halt_handoffs], k.expect == 2 ? 1u : 0u);
        EXPECT_EQ(traced(TraceEvent::kHaltHandoff, 0, 2), k.expect == 2);
        ok();
    }
}

/* wake-preempt end to end: an IPI wakes halted 2 while 0 holds the only
 * slot past the granularity and 1 waits.  ipi-prio with wake-preempt on
 * kicks 0, whose next exit (no lock needed before, its hint now says
 * leave) hands the slot to 2 before 0's deadline; off, or under vanilla,
 * 0 runs on without taking the lock.  With wake-queued, an IPI to a
 * queued vCPU asks too, at the next exit. */
TEST_F(CoreTest, WakePreemptIsThePolicysChoiceAndThePropertysSwitch)
{
    struct Case {
        const char *policy;
        bool on;
    } cases[] = {{"ipi-prio", true}, {"ipi-prio", false}, {"vanilla", true}};
    for (const Case &k : cases) {
        init(4, 1, policy_id(k.policy));
        core_->set_mechanism(Mechanism::kWakePreempt, k.on);
        core_->set_wake_granularity_ns(200'000);
        ASSERT_TRUE(core_->acquire(0));
        ASSERT_FALSE(core_->acquire(1));
        EXPECT_FALSE(core_->after_exec(0, 0)); /* before its deadline: no lock */
        const uint64_t unlocked = core_->counters()[Ctr::exec_exits_unlocked];
        host_->advance(300'000);
        int dst = 2;
        core_->on_ipi(0, &dst, 1, 0xfd, kApicDmFixed, kApicShNone);
        ASSERT_FALSE(core_->acquire(2));
        const bool asked = k.on && std::string_view(k.policy) == "ipi-prio";
        EXPECT_EQ(core_->after_exec(0, 3), asked) << k.policy << " " << k.on;
        EXPECT_EQ(state_of(info(2)), asked ? VcpuState::kRunning : VcpuState::kQueued);
        EXPECT_EQ(core_->counters()[Ctr::wake_preempts], asked ? 1u : 0u);
        EXPECT_EQ(core_->counters()[Ctr::exec_exits_unlocked], unlocked + (asked ? 0 : 1));
        EXPECT_EQ(traced(TraceEvent::kWakePreempt, 0, 2), asked);
        ok();
    }
    /* wake-queued: an IPI from holder 0 to queued 1 asks at 0's next exit
     * (the same exit then hands 0's slot to 1); off, nothing is asked. */
    for (bool queued : {true, false}) {
        init(4, 1, policy_id("ipi-prio"));
        core_->set_mechanism(Mechanism::kWakePreempt, true);
        core_->set_mechanism(Mechanism::kWakeQueued, queued);
        core_->set_wake_granularity_ns(200'000);
        ASSERT_TRUE(core_->acquire(0));
        ASSERT_FALSE(core_->acquire(1));
        host_->advance(300'000);
        int dst = 1;
        core_->on_ipi(0, &dst, 1, 0xfd, kApicDmFixed, kApicShNone);
        EXPECT_EQ(core_->after_exec(0, 3), queued);
        EXPECT_EQ(state_of(info(1)), queued ? VcpuState::kRunning : VcpuState::kQueued);
        EXPECT_EQ(core_->counters()[Ctr::wake_queued_ipis], queued ? 1u : 0u);
        EXPECT_EQ(core_->counters()[Ctr::wake_preempts], queued ? 1u : 0u);
        ok();
    }
}

} // namespace
} // namespace vsched::test
