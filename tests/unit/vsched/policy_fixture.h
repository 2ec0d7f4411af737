/* Test fixture for yield policies: a pool with hand-set flags, a real IPI
 * tracker, a scripted yield_to() and the real spin protocol around the
 * policy (run_spin_decision). */
#ifndef VSCHED_TESTS_POLICY_FIXTURE_H
#define VSCHED_TESTS_POLICY_FIXTURE_H

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "policy.h"
#include "yield_mechanism.h"

namespace vsched::test {

/* Records the order of yield_to() calls; returns a scripted result per
 * target (default: success). */
class ScriptedMechanism : public YieldMechanism {
public:
    int yield_to(int me, int target) override
    {
        last_me = me;
        attempts.push_back(target);
        auto it = results.find(target);
        return it == results.end() ? 1 : it->second;
    }
    std::vector<int> attempts;
    std::map<int, int> results;
    int last_me = -1;
};

/* A registered policy, by name. */
struct TestPolicy {
    PolicyId id;
    std::unique_ptr<YieldPolicy> impl;
};
inline TestPolicy policy(const char *name)
{
    PolicyId id = policy_id(name);
    return {id, make_policy(id)};
}

/* What a decision came to, with the pass by name. */
struct Decision {
    int target = kNone;
    std::string pass;
};

class PolicyTest : public ::testing::Test {
protected:
    static constexpr uint64_t kNow = 1'000'000'000;

    void init(int n, int me)
    {
        ps_ = std::make_unique<PoolState>();
        SlotPool pool(*ps_);
        pool.init(n, n);
        n_ = n;
        me_ = me;
        ipi_ = std::make_unique<IpiTracker>(n, ctr_);
        hints_ = std::make_unique<std::atomic<uint8_t>[]>(n);
        for (int v = 0; v < n; v++) {
            hints_[v].store(0);
            /* Everyone else runs (not ready) unless a test says otherwise. */
            ps_->state[v] = static_cast<uint8_t>(VcpuState::kRunning);
        }
    }
    SlotPool pool() { return SlotPool(*ps_); }
    void set_last_boosted(int v) { ps_->last_boosted_vcpu = v; }
    int last_boosted() const { return ps_->last_boosted_vcpu; }

    /* Queued after a slice-expiry preemption at CPL cpl. */
    void preempted(int v, int cpl)
    {
        ps_->state[v] = static_cast<uint8_t>(VcpuState::kQueued);
        ps_->flags[v] = vflag::kReady | vflag::kPreempted |
                        (cpl == 0 ? vflag::kPreemptedInKernel : 0);
    }
    /* Queued after a wake-up (HLT -> woken): ready, not preempted. */
    void woken(int v)
    {
        ps_->state[v] = static_cast<uint8_t>(VcpuState::kQueued);
        ps_->flags[v] = vflag::kReady;
    }
    void halted(int v) { ps_->state[v] = static_cast<uint8_t>(VcpuState::kHalted); }
    void add_flag(int v, uint8_t f) { ps_->flags[v] |= f; }
    bool flag(int v, uint8_t f) const { return (ps_->flags[v] & f) != 0; }

    /* A unicast fixed IPI me -> dst at time t (tracked by both views). */
    void ipi(int src, int dst, uint64_t t = kNow, int vector = 0xfb)
    {
        ipi_->on_ipi(src, &dst, 1, vector, kApicDmFixed, kApicShNone, t);
    }

    Decision decide(TestPolicy &p, bool kernel_mode, bool relaxed = true,
                    uint64_t now = kNow)
    {
        SpinSetup s{pool(), *ipi_, ctr_, hints_.get(), now, relaxed, 3,
                    me_, kernel_mode, policy_pass_count(p.id), callfn_first_};
        SpinResult r = run_spin_decision(*p.impl, s, mech_);
        const char *pass = policy_pass_name(p.id, r.pass);
        return {r.target, pass ? pass : ""};
    }

    int n_ = 0;
    int me_ = 0;
    bool callfn_first_ = false; /* Mechanism::kCallfnFirst */
    std::unique_ptr<PoolState> ps_;
    Counters ctr_;
    std::unique_ptr<IpiTracker> ipi_;
    std::unique_ptr<std::atomic<uint8_t>[]> hints_;
    ScriptedMechanism mech_;
};

} // namespace vsched::test

#endif
