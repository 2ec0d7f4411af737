/*
 * vsched core: the C++ entry point (the C facade wraps it).
 *
 * Threads and locks:
 *  - acquire/release/after_exec/tick/knob setters take one mutex; the host
 *    is called only after it is dropped (see host.h).
 *  - on_pause/on_mwait are lock-free and wait-free (spin detector).
 *  - on_ipi/on_irq_accept/on_eoi never take the mutex (IPI tracker atomics).
 */
#ifndef VSCHED_CORE_CORE_H
#define VSCHED_CORE_CORE_H

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "config.h"
#include "counters.h"
#include "host.h"
#include "ipi_tracker.h"
#include "policy.h"
#include "scheduler.h"
#include "spin_detector.h"

namespace vsched {

struct VcpuInfo {
    VcpuState state = VcpuState::kStopped;
    int slot = kNone;
    uint64_t slot_deadline_ns = 0;
    bool preempted = false;
    bool ready = false;
    bool preempted_in_kernel = false;
    bool in_spin_loop = false;
    bool dy_eligible = false;
    bool spin_pending = false;
    uint64_t spin_window_ns = 0;
    uint64_t pause_events = 0;
    uint64_t spins_detected = 0;
    /* series view */
    int last_ipi_sender = -1;
    int last_ipi_receiver = -1;
    bool series_pending_ipi = false;
    /* our view */
    static constexpr int kMaxList = 8;
    int nr_pending_ipis = 0;
    int pending_from[kMaxList] = {};
    int pending_vector[kMaxList] = {};
    int nr_receivers = 0;
    int receivers[kMaxList] = {};
};

class Core {
public:
    /* Returns null and sets *err if cfg is invalid. */
    static std::unique_ptr<Core> create(const Config &cfg, int nr_vcpus,
                                        HostInterface &host, std::string *err);

    int nr_vcpus() const { return nr_; }
    int nr_slots() const { return cfg_.pcpus; }
    HostInterface &host() { return host_; }

    /* Gate, release, after-exec, timer. */
    bool acquire(int v);
    void release(int v, ReleaseReason why);
    bool after_exec(int v, int cpl);
    uint64_t tick();
    /* Standalone helper: acquire, waiting in host().wait() until granted
     * or until stop_flag (may be null) becomes true. */
    bool acquire_blocking(int v, const std::atomic<bool> *stop_flag = nullptr);

    /* Hooks. */
    bool on_pause(int v, int cpl) { return on_pause_at(v, cpl, host_.pause_now_ns()); }
    bool on_pause_at(int v, int cpl, uint64_t now)
    {
        if (static_cast<unsigned>(v) >= static_cast<unsigned>(nr_)) {
            return false;
        }
        return spin_.on_pause(v, cpl, now);
    }
    void on_mwait(int v);
    /* Tests/benchmarks: a spin fires for v as if its PAUSE loop had. */
    void inject_spin(int v, int cpl)
    {
        if (valid(v)) {
            spin_.inject(v, cpl);
        }
    }
    void on_ipi(int src, const int *dst, int ndst, int vector, int delivery_mode,
                int shorthand);
    void on_irq_accept(int v, int vector);
    void on_eoi(int v, int vector);
    void reset_vcpu_ipi(int v);

    /* Knobs (thread-safe). */
    void set_policy(PolicyKind k) { policy_.store(static_cast<int>(k)); }
    PolicyKind policy() const { return static_cast<PolicyKind>(policy_.load()); }
    void set_relaxed_boost(bool on) { relaxed_boost_.store(on); }
    bool relaxed_boost() const { return relaxed_boost_.load(); }
    void set_ipi_tracking(bool on) { ipi_.set_enabled(on); }
    bool ipi_tracking() const { return ipi_.enabled(); }
    void set_ipi_window_ns(uint64_t ns) { ipi_.set_window(ns); }
    uint64_t ipi_window_ns() const { return ipi_.window(); }
    void set_ple_gap_ns(uint64_t ns) { spin_.set_gap(ns); }
    uint64_t ple_gap_ns() const { return spin_.gap(); }
    void set_ple_window_ns(uint64_t ns) { spin_.set_base_window(ns); }
    uint64_t ple_window_ns() const { return spin_.base_window(); }
    void set_tracing(bool on) { tracing_.store(on); }

    /* Introspection. */
    bool vcpu_info(int v, VcpuInfo *out);
    CounterSnapshot counters();
    std::string counters_json() { return vsched::counters_json(counters()); }
    /* Pool + counter consistency (tests, fuzzing). */
    bool check_invariants(std::string *why);
    /* Copy of the pool under the lock (tests). */
    void snapshot_pool(PoolState *out);

private:
    Core(const Config &cfg, int nr_vcpus, HostInterface &host);
    bool valid(int v) const { return static_cast<unsigned>(v) < static_cast<unsigned>(nr_); }
    void decide_locked(int v, int cpl, uint64_t now);

    const Config cfg_;
    const int nr_;
    HostInterface &host_;
    Counters ctr_;
    SpinDetector spin_;
    IpiTracker ipi_;
    std::mutex mu_;
    Scheduler sched_;             /* guarded by mu_ */
    std::unique_ptr<YieldPolicy> policies_[kNumPolicies];
    std::atomic<int> policy_;
    std::atomic<bool> relaxed_boost_;
    std::atomic<bool> tracing_{false};
};

} // namespace vsched

#endif
