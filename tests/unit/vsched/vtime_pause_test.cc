/*
 * Virtual time: a PAUSE that goes on inside the run
 * (vsched_vtime_pause_inline, docs/design/virtual-time.rst "Speed") gives
 * the same schedule as ending the run at every PAUSE.
 *
 * The emulator is simulated through the C facade as QEMU drives it: each
 * vCPU spins, a PAUSE every few instructions (so spins fire, directed
 * yields hand slots over, slices end), until its work is done and it
 * halts.  Run once ending the run at every PAUSE and once going on where
 * the facade allows it: the clock at every PAUSE, every vCPU's end and the
 * scheduler's counters must be identical; only the run count differs.
 */
#include <gtest/gtest.h>

#include <algorithm>
#include <ostream>
#include <regex>
#include <string>
#include <vector>

#include "vsched-core.h"
#include "vsched-vtime-core.h"

namespace {

struct Pause {
    int vcpu;
    uint64_t at;
    bool operator==(const Pause &o) const { return vcpu == o.vcpu && at == o.at; }
    friend std::ostream &operator<<(std::ostream &os, const Pause &p)
    {
        return os << "v" << p.vcpu << "@" << p.at;
    }
};

struct Machine {
    Machine(int vcpus, int slots, uint64_t work, uint64_t period, bool inline_pauses)
        : work_(vcpus, work), phase_(vcpus, 0), done_at(vcpus, 0), period_(period),
          inline_(inline_pauses)
    {
        VschedConfig cfg;
        vsched_config_defaults(&cfg);
        cfg.pcpus = slots;
        cfg.slice_ns = 300'000;
        EXPECT_TRUE(vsched_parse_policy("ipi", &cfg.policy));
        VschedHostOps host = {};
        host.now_ns = [](void *m) { return static_cast<Machine *>(m)->now(); };
        host.kick = [](void *, int) {};
        host.wake = [](void *, int) {};
        char err[256] = "";
        core = vsched_core_new(&cfg, vcpus, &host, this, err, sizeof(err));
        EXPECT_NE(core, nullptr) << err;
        VschedVtimeOps ops = {};
        ops.runnable = [](void *m, int v) {
            return static_cast<Machine *>(m)->work_[v] > 0;
        };
        ops.run = [](void *m, int v, uint64_t budget) {
            return static_cast<Machine *>(m)->run(v, budget);
        };
        vt = vsched_vtime_new(core, 10'000, 0, &ops, this);
        EXPECT_NE(vt, nullptr);
    }
    ~Machine()
    {
        vsched_vtime_free(vt);
        vsched_core_free(core);
    }

    uint64_t now() { return vt ? vsched_vtime_now(vt) : 0; } /* shift 0 */

    /* QEMU's gate, cpu_exec with helper_pause, and after_exec. */
    int run(int v, uint64_t budget)
    {
        EXPECT_TRUE(vsched_acquire(core, v)) << "vCPU " << v << " ran without its slot";
        uint64_t used = 0;
        for (;;) {
            if (work_[v] == 0) {
                done_at[v] = now();
                vsched_release(core, v, VSCHED_RELEASE_HALT);
                return VSCHED_VTIME_HALTED;
            }
            uint64_t n = std::min({budget - used, period_ - phase_[v], work_[v]});
            vsched_vtime_account(vt, n);
            used += n;
            work_[v] -= n;
            phase_[v] += n;
            if (phase_[v] == period_) {     /* the last of the n was a PAUSE */
                phase_[v] = 0;
                pauses.push_back({v, now()});
                bool fired = vsched_on_pause(core, v, 0);
                if (inline_ && !fired &&
                    vsched_vtime_pause_inline(vt, v, budget - used,
                                              now() + vsched_vtime_pause_cost())) {
                    budget -= vsched_vtime_pause_cost();
                    continue;
                }
                vsched_after_exec(core, v, 0);
                return VSCHED_VTIME_PAUSE;
            }
            if (used == budget) {
                vsched_after_exec(core, v, 0);
                return VSCHED_VTIME_RAN;
            }
        }
    }

    void run_all()
    {
        while (vsched_vtime_run_round(vt, VSCHED_VTIME_NO_DEADLINE) == VSCHED_VTIME_ROUND_DONE) {
        }
    }

    /* The scheduler's counters, less the lock-free gate/exit passes (one
     * pair per ended run: they count runs, not decisions). */
    std::string counters()
    {
        std::vector<char> buf(1 << 16);
        vsched_counters_json(core, buf.data(), buf.size());
        static const std::regex unlocked("\"exec_(enters|exits)_unlocked\":[0-9]+,?");
        return std::regex_replace(std::string(buf.data()), unlocked, "");
    }

    VschedCore *core = nullptr;
    VschedVtime *vt = nullptr;
    std::vector<uint64_t> work_, phase_;
    std::vector<uint64_t> done_at;
    std::vector<Pause> pauses;
    uint64_t period_;
    bool inline_;
};

TEST(VtimePauseInline, TheScheduleIsTheSameAsEndingTheRunAtEveryPause)
{
    /* 6 spinning vCPUs on 2 slots: spins fire (window 100 us = 100k
     * instructions), yields and slice ends happen, and PAUSEs fall near
     * the slots' ends of the round (period 97 does not divide 10000). */
    Machine exits(6, 2, 3'000'000, 97, false), inl(6, 2, 3'000'000, 97, true);
    exits.run_all();
    inl.run_all();

    EXPECT_EQ(exits.pauses, inl.pauses);
    EXPECT_EQ(exits.done_at, inl.done_at);
    EXPECT_EQ(exits.counters(), inl.counters());
    EXPECT_EQ(vsched_vtime_now(exits.vt), vsched_vtime_now(inl.vt));

    VschedVtimeCounters a, b;
    vsched_vtime_counters(exits.vt, &a);
    vsched_vtime_counters(inl.vt, &b);
    EXPECT_EQ(a.executed, b.executed);
    EXPECT_EQ(a.charged, b.charged);
    EXPECT_EQ(a.idle, b.idle);
    EXPECT_EQ(a.rounds, b.rounds);
    EXPECT_EQ(a.holder_changes, b.holder_changes);
    EXPECT_EQ(a.inline_pauses, 0u);
    EXPECT_GT(b.inline_pauses, exits.pauses.size() / 2) << "most PAUSEs went on";
    EXPECT_LT(b.runs * 5, a.runs) << "runs: " << b.runs << " vs " << a.runs;

    /* The decisions the inline path must leave to an exit did happen. */
    std::string c = inl.counters();
    EXPECT_EQ(c.find("\"spins_detected\":0,"), std::string::npos) << c;
    EXPECT_EQ(c.find("\"preemptions\":0,"), std::string::npos) << c;
}

TEST(VtimePauseInline, RefusedWhenTheCostReachesTheRunsEnd)
{
    /* One vCPU alone, quantum 10000: its first PAUSE leaves `left`
     * instructions of the run.  Ending the run there charges min(cost,
     * left) and goes on only if something is left: inline only then. */
    const uint64_t cost = vsched_vtime_pause_cost();
    for (uint64_t left : {cost - 1, cost, cost + 1}) {
        Machine m(1, 1, 30'000, 10'000 - left, true);
        ASSERT_EQ(vsched_vtime_run_round(m.vt, VSCHED_VTIME_NO_DEADLINE),
                  VSCHED_VTIME_ROUND_DONE);
        VschedVtimeCounters c;
        vsched_vtime_counters(m.vt, &c);
        EXPECT_EQ(c.inline_pauses, left > cost ? 1u : 0u) << "left " << left;
        EXPECT_EQ(c.charged, std::min(cost, left)) << "left " << left;
        EXPECT_EQ(vsched_vtime_now(m.vt), 10'000u);
    }
    Machine idle(1, 1, 1000, 50, true);
    EXPECT_FALSE(vsched_vtime_pause_inline(idle.vt, 0, 5000, cost))
        << "between rounds no slot runs";
}

} // namespace
