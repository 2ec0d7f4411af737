/*
 * A small simulated guest workload on the simulated host: vCPUs alternate
 * user-mode compute with kernel spinlocks and function-call IPIs whose
 * sender spins until the receiver's handler has run (csd_lock_wait).  Time
 * advances in fixed steps; a spinning vCPU executes one PAUSE per step.
 * Used by workload_test.cc (and printed by it for the docs).
 */
#ifndef VSCHED_TESTS_WORKLOAD_SIM_H
#define VSCHED_TESTS_WORKLOAD_SIM_H

#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core.h"
#include "sim_host.h"

namespace vsched::test {

struct WorkloadParams {
    int pcpus = 3;
    int ratio = 2;                     /* overcommit: vCPUs = pcpus * ratio */
    PolicyId policy = policy_id("vanilla");
    uint64_t duration_ns = 600'000'000;
    uint64_t step_ns = 2'000;          /* one PAUSE-loop iteration */
    int locks = 2;
    int pct_lock = 30;                 /* after a compute burst: take a lock */
    int pct_ipi = 40;                  /* ... or send an IPI and wait */
    uint64_t compute_min_ns = 50'000, compute_max_ns = 500'000;
    uint64_t cs_min_ns = 20'000, cs_max_ns = 60'000;
    uint64_t handler_ns = 6'000;
    uint32_t seed = 1;
    bool yielder_preempted = true;
};

struct WorkloadResult {
    uint64_t spin_ns = 0;     /* running, but spinning (lock or IPI wait) */
    uint64_t work_ns = 0;     /* running useful code */
    uint64_t ipi_waits = 0;   /* IPI round trips completed */
    uint64_t ipi_wait_ns = 0; /* wall time senders waited for replies */
    CounterSnapshot ctr;
    double spin_share() const
    {
        return spin_ns + work_ns ? double(spin_ns) / double(spin_ns + work_ns) : 0;
    }
};

class WorkloadSim {
public:
    explicit WorkloadSim(const WorkloadParams &p)
        : p_(p), n_(p.pcpus * p.ratio), host_(n_), rng_(p.seed), v_(n_),
          lock_owner_(p.locks, -1)
    {
        Config c;
        c.pcpus = p.pcpus;
        c.set_policy(p.policy);
        c.yielder_preempted = p.yielder_preempted;
        std::string err;
        core_ = Core::create(c, n_, host_, &err);
        for (int v = 0; v < n_; v++) {
            new_compute(v);
        }
    }

    WorkloadResult run()
    {
        for (int v = 0; v < n_; v++) {
            v_[v].in_guest = core_->acquire(v);
        }
        uint64_t next_tick = 0;
        const uint64_t end = host_.now_ns() + p_.duration_ns;
        while (host_.now_ns() < end) {
            host_.advance(p_.step_ns);
            if (host_.now_ns() >= next_tick) {
                next_tick = core_->tick();
            }
            for (int v = 0; v < n_; v++) {
                if (host_.take_wake(v)) {
                    v_[v].in_guest = core_->acquire(v);
                }
            }
            for (int v = 0; v < n_; v++) {
                if (v_[v].in_guest) {
                    step(v);
                }
            }
        }
        r_.ctr = core_->counters();
        return r_;
    }

    Core &core() { return *core_; }

private:
    enum class Phase { kCompute, kLockWait, kCritical, kIpiWait };
    struct V {
        Phase phase = Phase::kCompute;
        int64_t left = 0;
        int lock = -1;
        bool in_guest = false;
        bool in_handler = false;
        int64_t handler_left = 0;
        int handler_sender = -1;
        std::deque<int> irq;
        bool ipi_done = false;
        uint64_t ipi_sent_at = 0;
    };

    uint64_t rnd(uint64_t lo, uint64_t hi) { return lo + rng_() % (hi - lo + 1); }
    void new_compute(int v)
    {
        v_[v].phase = Phase::kCompute;
        v_[v].left = static_cast<int64_t>(rnd(p_.compute_min_ns, p_.compute_max_ns));
    }

    void next_action(int v)
    {
        uint32_t r = rng_() % 100;
        V &x = v_[v];
        if (r < static_cast<uint32_t>(p_.pct_lock)) {
            x.phase = Phase::kLockWait;
            x.lock = static_cast<int>(rng_() % p_.locks);
        } else if (r < static_cast<uint32_t>(p_.pct_lock + p_.pct_ipi)) {
            int t = static_cast<int>(rng_() % (n_ - 1));
            t += t >= v;
            v_[t].irq.push_back(v);
            core_->on_ipi(v, &t, 1, 0xfb, kApicDmFixed, kApicShNone);
            x.phase = Phase::kIpiWait;
            x.ipi_done = false;
            x.ipi_sent_at = host_.now_ns();
        } else {
            new_compute(v);
        }
    }

    void step(int v)
    {
        V &x = v_[v];
        const int64_t dt = static_cast<int64_t>(p_.step_ns);
        bool fired = false;
        int cpl = 0;
        if (x.in_handler) {
            r_.work_ns += dt;
            if ((x.handler_left -= dt) <= 0) {
                x.in_handler = false;
                core_->on_eoi(v, 0xfb);
                v_[x.handler_sender].ipi_done = true;
            }
        } else if (!x.irq.empty() && x.phase != Phase::kCritical) {
            x.handler_sender = x.irq.front();
            x.irq.pop_front();
            core_->on_irq_accept(v, 0xfb);
            x.in_handler = true;
            x.handler_left = static_cast<int64_t>(p_.handler_ns) - dt;
            r_.work_ns += dt;
        } else {
            switch (x.phase) {
            case Phase::kCompute:
                cpl = 3;
                r_.work_ns += dt;
                if ((x.left -= dt) <= 0) {
                    next_action(v);
                }
                break;
            case Phase::kLockWait:
                if (lock_owner_[x.lock] < 0) {
                    lock_owner_[x.lock] = v;
                    x.phase = Phase::kCritical;
                    x.left = static_cast<int64_t>(rnd(p_.cs_min_ns, p_.cs_max_ns));
                    r_.work_ns += dt;
                } else {
                    r_.spin_ns += dt;
                    fired = core_->on_pause(v, 0);
                }
                break;
            case Phase::kCritical:
                r_.work_ns += dt;
                if ((x.left -= dt) <= 0) {
                    lock_owner_[x.lock] = -1;
                    new_compute(v);
                }
                break;
            case Phase::kIpiWait:
                if (x.ipi_done) {
                    r_.ipi_waits++;
                    r_.ipi_wait_ns += host_.now_ns() - x.ipi_sent_at;
                    new_compute(v);
                    r_.work_ns += dt;
                } else {
                    r_.spin_ns += dt;
                    fired = core_->on_pause(v, 0);
                }
                break;
            }
        }
        if (host_.take_kick(v) || fired) {
            if (core_->after_exec(v, cpl)) {
                x.in_guest = core_->acquire(v);
            }
        }
    }

    WorkloadParams p_;
    int n_;
    SimHost host_;
    std::unique_ptr<Core> core_;
    std::mt19937 rng_;
    std::vector<V> v_;
    std::vector<int> lock_owner_;
    WorkloadResult r_;
};

} // namespace vsched::test

#endif
