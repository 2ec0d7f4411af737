/* Virtual time: lockstep rounds, the virtual-time host, and the round
 * driver over the real core (physics, determinism, directed yield within
 * a round, scheduling on instruction counts).  No QEMU. */
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core.h"
#include "sim_host.h"
#include "vtime.h"
#include "vtime_driver.h"

namespace vsched::test {
namespace {

TEST(VirtualRounds, TheClockAdvancesByTheRoundNotBySlots)
{
    VirtualRounds r(4, 1000);
    EXPECT_EQ(r.begin(kVtimeNoDeadline), 1000u);
    for (int s = 0; s < 4; s++) {
        r.account(s, 1000);
        EXPECT_EQ(r.now(s), 1000u);
    }
    EXPECT_EQ(r.end(), 1000u);
    EXPECT_EQ(r.counters().executed, 4000u);
    EXPECT_EQ(r.counters().rounds, 1u);
}

TEST(VirtualRounds, EachSlotReadsRoundStartPlusItsOwnProgress)
{
    VirtualRounds r(2, 1000, 5000);
    r.begin(kVtimeNoDeadline);
    r.account(0, 700);
    r.account(1, 100);
    EXPECT_EQ(r.now(0), 5700u);
    EXPECT_EQ(r.now(1), 5100u);
    EXPECT_EQ(r.left(0), 300u);
}

TEST(VirtualRounds, ATimerDeadlineCutsTheRound)
{
    VirtualRounds r(2, 1000);
    EXPECT_EQ(r.begin(250), 250u);
    r.idle(0);
    r.idle(1);
    EXPECT_EQ(r.end(), 250u);
    EXPECT_EQ(r.counters().short_rounds, 1u);
    EXPECT_EQ(r.counters().idle, 500u);
    /* A deadline due now still makes progress. */
    EXPECT_EQ(r.begin(0), 1u);
}

TEST(VirtualRounds, ChargesStopAtTheRoundsEnd)
{
    VirtualRounds r(1, 1000);
    r.begin(kVtimeNoDeadline);
    r.account(0, 950);
    r.charge(0, kVtimePauseCost);
    EXPECT_EQ(r.left(0), 0u);
    EXPECT_EQ(r.counters().charged, 50u);
}

TEST(VirtualRounds, IdleUntilAndWarp)
{
    VirtualRounds r(2, 1000);
    r.begin(kVtimeNoDeadline);
    r.idle_until(1, 400);
    EXPECT_EQ(r.now(1), 400u);
    r.idle_until(1, 100);           /* never backwards */
    EXPECT_EQ(r.now(1), 400u);
    r.idle_until(1, 5000);          /* at most to the round's end */
    EXPECT_EQ(r.left(1), 0u);
    r.idle(0);
    r.end();
    r.warp(123456);
    EXPECT_EQ(r.start(), 124456u);
    EXPECT_EQ(r.counters().warped, 123456u);
}

TEST(VirtualTimeHost, TheClockIsTheCurrentSlotsInNs)
{
    SimHost sim(2);
    VirtualRounds r(2, 1000, 10);
    VirtualTimeHost h(sim, r, 3);
    EXPECT_EQ(h.now_ns(), 10u << 3);
    r.begin(kVtimeNoDeadline);
    r.account(1, 90);
    r.set_current(1);
    EXPECT_EQ(h.now_ns(), 100u << 3);
    r.set_current(0);
    EXPECT_EQ(h.now_ns(), 10u << 3);
    sim.advance(1'000'000'000);     /* host time does not matter */
    EXPECT_EQ(h.now_ns(), 10u << 3);
}

/*
 * The emulator's part, for CPU-bound vCPUs: v has work_[v] instructions to
 * run, then halts for good.  Like QEMU's tcg_cpu_exec it calls the core's
 * after_exec (slice expiry, spin decisions) after every run.
 */
class CpuBoundVcpus final : public VtimeVcpus {
public:
    CpuBoundVcpus(Core &core, VirtualRounds &rounds, std::vector<uint64_t> work)
        : core_(core), rounds_(rounds), work_(std::move(work)),
          done_at_(work_.size(), 0), ran_(work_.size(), 0)
    {
    }
    bool runnable(int v) override
    {
        return work_[v] > 0 && rounds_.now() >= wake_at_[v];
    }
    /* v sleeps (halted, no slot) until virtual time t. */
    void sleep_until(int v, uint64_t t) { wake_at_[v] = t; }
    VtimeRun run(int v, uint64_t budget) override
    {
        int s = rounds_.current();
        uint64_t n = std::min({budget, work_[v], stop_after_[v] ? stop_after_[v] : budget});
        EXPECT_TRUE(core_.acquire(v)) << "vCPU " << v << " ran without its slot";
        rounds_.account(s, n);
        work_[v] -= n;
        ran_[v] += n;
        log.push_back({v, s, n});
        if (work_[v] == 0) {
            done_at_[v] = rounds_.now(s);
            core_.release(v, ReleaseReason::kHalt);
            return {n, VtimeExit::kHalted};
        }
        if (stop_after_[v] && n == stop_after_[v]) {
            stop_after_[v] = 0;
            core_.inject_spin(v, 0);
            core_.after_exec(v, 0);
            return {n, VtimeExit::kPause};
        }
        core_.after_exec(v, 0);
        return {n, VtimeExit::kRan};
    }
    /* v leaves at a spin after n more instructions (once). */
    void spin_after(int v, uint64_t n) { stop_after_[v] = n; }

    struct Entry {
        int vcpu, slot;
        uint64_t n;
        bool operator==(const Entry &o) const
        {
            return vcpu == o.vcpu && slot == o.slot && n == o.n;
        }
    };
    std::vector<Entry> log;
    uint64_t done_at(int v) const { return done_at_[v]; }
    uint64_t ran(int v) const { return ran_[v]; }

private:
    Core &core_;
    VirtualRounds &rounds_;
    std::vector<uint64_t> work_;
    std::vector<uint64_t> done_at_;
    std::vector<uint64_t> ran_;
    std::vector<uint64_t> stop_after_ = std::vector<uint64_t>(64, 0);
    std::vector<uint64_t> wake_at_ = std::vector<uint64_t>(64, 0);
};

/* V vCPUs on P slots, slices of 100 us virtual (shift 0: 100k insns). */
struct Machine {
    Machine(int v, int p, uint64_t work, uint64_t quantum = 10'000,
            PolicyId policy = policy_id("vanilla"))
        : sim(v), rounds(p, quantum), host(sim, rounds, 0)
    {
        Config c;
        c.pcpus = p;
        c.slice_ns = 100'000;
        c.set_policy(policy);
        std::string err;
        core = Core::create(c, v, host, &err);
        EXPECT_TRUE(core) << err;
        vcpus = std::make_unique<CpuBoundVcpus>(*core, rounds,
                                                std::vector<uint64_t>(v, work));
        driver = std::make_unique<VtimeDriver>(*core, rounds, *vcpus);
    }
    /* Rounds until every vCPU is done; returns the time the last finished. */
    uint64_t run()
    {
        while (driver->run_round(kVtimeNoDeadline) == VtimeStep::kRoundDone) {
        }
        uint64_t last = 0;
        for (int v = 0; v < core->nr_vcpus(); v++) {
            last = std::max(last, vcpus->done_at(v));
        }
        return last;
    }
    SimHost sim;
    VirtualRounds rounds;
    VirtualTimeHost host;
    std::unique_ptr<Core> core;
    std::unique_ptr<CpuBoundVcpus> vcpus;
    std::unique_ptr<VtimeDriver> driver;
};

TEST(VtimeDriver, ElapsedIsMaxOfOneAndVOverPTimesTheOneVcpuTime)
{
    constexpr uint64_t kWork = 2'000'000;
    for (int p : {1, 2, 4}) {
        for (int v : {1, 2, 4, 8}) {
            Machine m(v, p, kWork);
            double want = std::max(1.0, double(v) / p) * kWork;
            double got = double(m.run());
            EXPECT_NEAR(got / want, 1.0, 0.02) << "V=" << v << " P=" << p;
            EXPECT_EQ(m.rounds.counters().executed, uint64_t(v) * kWork);
        }
    }
}

TEST(VtimeDriver, SlicesExpireOnInstructionCountsNotHostTime)
{
    Machine m(2, 1, 1'000'000);
    m.run();
    CounterSnapshot c = m.core->counters();
    /* 2M instructions in slices of 100k: about 20 slice ends. */
    EXPECT_GE(c[Ctr::preemptions], 18u);
    EXPECT_LE(c[Ctr::preemptions], 21u);
    EXPECT_EQ(m.sim.now_ns(), 1'000'000u) << "the host clock never moved";
}

TEST(VtimeDriver, TheSameRunTwiceIsIdentical)
{
    Machine a(8, 2, 300'000, 7'000), b(8, 2, 300'000, 7'000);
    EXPECT_EQ(a.run(), b.run());
    EXPECT_EQ(a.vcpus->log, b.vcpus->log);
    EXPECT_EQ(a.core->counters_json(), b.core->counters_json());
    EXPECT_EQ(a.rounds.start(), b.rounds.start());
}

TEST(VtimeDriver, ADirectedYieldHandsTheRestOfTheQuantumInTheSameRound)
{
    Machine m(2, 1, 1'000'000, 10'000);
    m.vcpus->spin_after(0, 3000);
    ASSERT_EQ(m.driver->run_round(kVtimeNoDeadline), VtimeStep::kRoundDone);
    ASSERT_GE(m.vcpus->log.size(), 2u);
    EXPECT_EQ(m.vcpus->log[0].vcpu, 0);
    EXPECT_EQ(m.vcpus->log[0].n, 3000u);
    /* The target ran the rest of the round on the same slot. */
    EXPECT_EQ(m.vcpus->log[1].vcpu, 1);
    EXPECT_EQ(m.vcpus->log[1].slot, 0);
    EXPECT_EQ(m.vcpus->log[1].n, 10'000u - 3000u - kVtimePauseCost);
    EXPECT_EQ(m.rounds.start(), 10'000u);
    EXPECT_EQ(m.core->counters()[Ctr::handoffs], 1u);
}

TEST(VtimeDriver, AVcpuThatWakesLaterGetsTheSlotAtTheNextSliceEnd)
{
    /* v0 holds the only slot; v1 wakes at 50k, queues, and the slice
     * (100k) ends for it: it must not wait for v0's 1M instructions. */
    Machine m(2, 1, 1'000'000);
    m.vcpus->sleep_until(1, 50'000);
    m.run();
    /* Shared from then on: v0 ends near 2M, not at 1M as it would if v1
     * only ran once v0 had halted. */
    EXPECT_GT(m.vcpus->done_at(0), 1'500'000u) << "v1 never got the slot";
    EXPECT_GE(m.core->counters()[Ctr::preemptions], 1u);
}

TEST(VtimeDriver, TheLockFreeLooksMatchTheCoresRecord)
{
    /* The driver asks slot_holder()/vcpu_state() on every run instead of
     * copying every vCPU's record: they must say what vcpu_info() says. */
    Machine m(5, 2, 400'000);
    for (int round = 0; round < 60; round++) {  /* 2M of work: 100 rounds */
        ASSERT_EQ(m.driver->run_round(kVtimeNoDeadline), VtimeStep::kRoundDone);
        std::vector<int> want(2, -1);
        for (int v = 0; v < 5; v++) {
            VcpuInfo i;
            ASSERT_TRUE(m.core->vcpu_info(v, &i));
            EXPECT_EQ(m.core->vcpu_state(v), state_of(i)) << "vCPU " << v;
            if (state_of(i) == VcpuState::kRunning) {
                want[i.slot] = v;
            }
        }
        for (int s = 0; s < 2; s++) {
            EXPECT_EQ(m.core->slot_holder(s), want[s]) << "slot " << s;
            EXPECT_EQ(m.driver->holder(s), want[s]);
        }
    }
    EXPECT_GT(m.core->counters()[Ctr::preemptions], 0u) << "holders never changed";
    EXPECT_EQ(m.core->slot_holder(-1), -1);
    EXPECT_EQ(m.core->slot_holder(2), -1);
    EXPECT_EQ(m.core->vcpu_state(5), VcpuState::kStopped);
}

TEST(VtimeDriver, AnIdleSlotIdlesAndAllHaltedReportsIdle)
{
    Machine m(1, 2, 50'000);
    EXPECT_EQ(m.run(), 50'000u);
    EXPECT_EQ(m.rounds.counters().idle, 50'000u) << "slot 1 idled alongside";
    EXPECT_EQ(m.driver->run_round(kVtimeNoDeadline), VtimeStep::kAllIdle);
}

TEST(VtimeDriver, ABreakResumesTheRoundAtTheSameSlot)
{
    struct Breaking final : VtimeVcpus {
        VirtualRounds *r;
        Core *c;
        int breaks = 1;
        bool runnable(int) override { return true; }
        VtimeRun run(int v, uint64_t budget) override
        {
            c->acquire(v);
            if (breaks && budget == r->length()) {
                breaks--;
                r->account(r->current(), 10);
                return {10, VtimeExit::kBreak};
            }
            r->account(r->current(), budget);
            return {budget, VtimeExit::kRan};
        }
    };
    SimHost sim(2);
    VirtualRounds rounds(2, 1000);
    VirtualTimeHost host(sim, rounds, 0);
    Config cfg;
    cfg.pcpus = 2;
    std::string err;
    auto core = Core::create(cfg, 2, host, &err);
    Breaking b;
    b.r = &rounds;
    b.c = core.get();
    VtimeDriver d(*core, rounds, b);
    EXPECT_EQ(d.run_round(kVtimeNoDeadline), VtimeStep::kBreak);
    EXPECT_TRUE(rounds.open());
    EXPECT_EQ(rounds.progress(0), 10u);
    EXPECT_EQ(d.run_round(kVtimeNoDeadline), VtimeStep::kRoundDone);
    EXPECT_EQ(rounds.start(), 1000u);
    EXPECT_EQ(rounds.counters().executed, 2000u);
}

} // namespace
} // namespace vsched::test
