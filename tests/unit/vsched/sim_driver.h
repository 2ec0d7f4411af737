/*
 * Random-event driver for the vsched core on the simulated host, shared by
 * the seeded property test and the libFuzzer target.
 *
 * It plays the part of QEMU's vCPU threads: a vCPU runs "guest code" only
 * in kGuest, waits in the gate in kGate until the host wakes it, honours
 * kicks at once (cpu_exit), and follows the facade's protocol.  After every
 * step it checks the core's invariants, that the model and the core agree
 * (no vCPU lost or running twice), and the starvation bound.
 */
#ifndef VSCHED_TESTS_SIM_DRIVER_H
#define VSCHED_TESTS_SIM_DRIVER_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core.h"
#include "sim_host.h"

namespace vsched::test {

class SimDriver {
public:
    enum class G : uint8_t { kOff, kHalted, kGate, kGuest };

    struct Params {
        int nr_vcpus = 8;
        int pcpus = 3;
        uint64_t slice_ns = 2'000'000;
        uint64_t max_step_ns = 500'000;
        PolicyId policy = policy_id("ipi-prio");
    };

    explicit SimDriver(const Params &p) : p_(p), host_(p.nr_vcpus), g_(p.nr_vcpus, G::kOff),
                                          queued_since_(p.nr_vcpus, 0),
                                          queue_pos_(p.nr_vcpus, 0)
    {
        Config c;
        c.pcpus = p.pcpus;
        c.slice_ns = p.slice_ns;
        c.set_policy(p.policy);
        c.ple_gap_ns = 20'000;
        c.ple_window_ns = 60'000;
        c.ple_window_max_ns = 480'000;
        std::string err;
        core_ = Core::create(c, p.nr_vcpus, host_, &err);
        core_->set_tracing(true);
    }

    Core &core() { return *core_; }
    SimHost &host() { return host_; }
    G state(int v) const { return g_[v]; }
    const std::string &error() const { return error_; }
    uint64_t steps() const { return steps_; }
    uint64_t max_wait_ns() const { return max_wait_; }

    /* One random step from two random words.  Returns false on a failed
     * check (see error()). */
    bool step(uint32_t a, uint32_t b)
    {
        steps_++;
        const int n = p_.nr_vcpus;
        const int v = static_cast<int>(a % n);
        const int w = static_cast<int>((a >> 8) % n);
        switch ((a >> 16) % 16) {
        case 0:
        case 1: /* a stopped or halted vCPU wants to run */
            if (g_[v] == G::kOff || g_[v] == G::kHalted) {
                gate(v);
            }
            break;
        case 2:
        case 3:
        case 4: /* run guest code: a burst of PAUSEs, then exit */
            if (g_[v] == G::kGuest) {
                run_spin(v, b);
            }
            break;
        case 5: /* halt */
            if (g_[v] == G::kGuest) {
                core_->release(v, ReleaseReason::kHalt);
                g_[v] = G::kHalted;
            }
            break;
        case 6: /* stop (any state) */
            if ((b & 3) == 0) {
                core_->release(v, ReleaseReason::kStop);
                g_[v] = G::kOff;
            }
            break;
        case 7:
        case 8: { /* IPI from a running vCPU, uni- or multicast */
            if (g_[v] != G::kGuest) {
                break;
            }
            int dst[4];
            int nd = 1 + static_cast<int>(b % 3);
            for (int i = 0; i < nd; i++) {
                dst[i] = static_cast<int>((b >> (4 + 4 * i)) % n);
            }
            int mode = (b >> 20) % 8 == 0 ? kApicDmNmi : kApicDmFixed;
            core_->on_ipi(v, dst, nd, 0xf0 + static_cast<int>(b % 4), mode,
                          (b >> 24) % 8 == 0 ? kApicShAllButSelf : kApicShNone);
            break;
        }
        case 9: /* the receiver takes and EOIs an interrupt */
            if (g_[v] == G::kGuest) {
                core_->on_irq_accept(v, 0xf0 + static_cast<int>(b % 4));
                if (b & 16) {
                    core_->on_eoi(v, 0xf0 + static_cast<int>(b % 4));
                }
            }
            break;
        case 10: /* voluntary yield */
            if (g_[v] == G::kGuest && (b & 1)) {
                core_->release(v, ReleaseReason::kYield);
                gate(v);
            }
            break;
        case 11: /* knobs */
            switch (b % 5) {
            case 0:
                core_->set_policy(static_cast<PolicyId>((b >> 4) % policy_count()));
                break;
            case 1:
                core_->set_relaxed_boost(b & 64);
                break;
            case 2:
                core_->set_ipi_tracking((b & 64) != 0 || (b & 128) != 0);
                break;
            case 3:
                core_->set_ipi_window_ns(1'000'000 + (b >> 8) % 50'000'000);
                break;
            default:
                core_->on_mwait(v);
                break;
            }
            break;
        case 12: /* spurious acquire of a waiting vCPU */
            if (g_[v] == G::kGate && core_->acquire(v)) {
                /* Only legal if it was granted and the wake is pending. */
                if (!host_.take_wake(v)) {
                    return fail("acquire succeeded without a wake for vCPU " +
                                std::to_string(v));
                }
                enter_guest(v);
            }
            break;
        default: /* time passes; the timer thread ticks */
            advance(b % (p_.max_step_ns + 1));
            (void)w;
            break;
        }
        return settle() && check();
    }

    /* Time passes: the timer thread calls tick. */
    void advance(uint64_t ns)
    {
        host_.advance(ns);
        core_->tick();
    }

    bool fail(std::string m)
    {
        if (error_.empty()) {
            error_ = std::move(m);
        }
        return false;
    }

private:
    void gate(int v)
    {
        if (core_->acquire(v)) {
            enter_guest(v);
        } else {
            g_[v] = G::kGate;
            queued_since_[v] = host_.now_ns();
            PoolState s;
            core_->snapshot_pool(&s);
            queue_pos_[v] = s.q_len - 1;
        }
    }

    void enter_guest(int v)
    {
        if (g_[v] == G::kGate) {
            uint64_t waited = host_.now_ns() - queued_since_[v];
            max_wait_ = std::max(max_wait_, waited);
        }
        g_[v] = G::kGuest;
    }

    void run_spin(int v, uint32_t b)
    {
        int pauses = static_cast<int>(b % 40);
        int cpl = (b & 0x100) ? 3 : 0;
        for (int i = 0; i < pauses; i++) {
            host_.advance(5'000 + (b >> 12) % 10'000);
            core_->on_pause(v, cpl);
        }
        exit_guest(v, cpl);
    }

    void exit_guest(int v, int cpl)
    {
        if (core_->after_exec(v, cpl)) {
            g_[v] = G::kGate;
            gate(v);
        }
    }

    /* Let the "threads" react to kicks and wakes until nothing is pending. */
    bool settle()
    {
        for (int round = 0; round < 4 * p_.nr_vcpus + 8; round++) {
            bool any = false;
            for (int v = 0; v < p_.nr_vcpus; v++) {
                if (host_.take_wake(v)) {
                    any = true;
                    if (g_[v] != G::kGate) {
                        return fail("wake for vCPU " + std::to_string(v) +
                                    " that is not waiting in the gate");
                    }
                    if (!core_->acquire(v)) {
                        return fail("woken vCPU " + std::to_string(v) + " has no slot");
                    }
                    enter_guest(v);
                }
                if (host_.take_kick(v)) {
                    any = true;
                    if (g_[v] == G::kGuest) {
                        exit_guest(v, 0);
                    }
                }
            }
            if (!any) {
                return true;
            }
        }
        return fail("kicks/wakes did not settle");
    }

    bool check()
    {
        std::string why;
        if (!core_->check_invariants(&why)) {
            return fail("invariant: " + why);
        }
        PoolState s;
        core_->snapshot_pool(&s);
        const uint64_t now = host_.now_ns();
        for (int v = 0; v < p_.nr_vcpus; v++) {
            auto cs = static_cast<VcpuState>(s.state[v]);
            bool running = cs == VcpuState::kRunning;
            if (running != (g_[v] == G::kGuest)) {
                return fail("vCPU " + std::to_string(v) + " model/core disagree: core " +
                            state_name(cs));
            }
            if (g_[v] == G::kGate && cs != VcpuState::kQueued) {
                return fail("vCPU " + std::to_string(v) + " waits but is not queued");
            }
            if (g_[v] == G::kGate) {
                /* Starvation bound: FIFO position k among P slots. */
                uint64_t rounds = static_cast<uint64_t>(queue_pos_[v]) / p_.pcpus + 2;
                uint64_t bound = rounds * (p_.slice_ns + p_.max_step_ns) + p_.max_step_ns;
                if (now - queued_since_[v] > bound) {
                    return fail("vCPU " + std::to_string(v) + " starved: queued " +
                                std::to_string(now - queued_since_[v]) + " ns > bound " +
                                std::to_string(bound));
                }
            }
        }
        return true;
    }

    Params p_;
    SimHost host_;
    std::unique_ptr<Core> core_;
    std::vector<G> g_;
    std::vector<uint64_t> queued_since_;
    std::vector<int> queue_pos_;
    std::string error_;
    uint64_t steps_ = 0;
    uint64_t max_wait_ = 0;
};

} // namespace vsched::test

#endif
