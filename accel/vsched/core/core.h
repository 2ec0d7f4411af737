/*
 * vsched core: the C++ entry point (the C facade wraps it).
 *
 * Threads and locks:
 *  - acquire/release/after_exec/tick/knob setters take one mutex; the host
 *    is called only after it is dropped (see host.h).
 *  - on_pause/on_mwait are lock-free and wait-free (spin detector).
 *  - on_ipi/on_irq_accept/on_eoi never take the mutex (IPI tracker atomics).
 *    IPI times are in host().pause_now_ns(), the cheap clock: the tracker
 *    only compares them with each other (window ages).
 */
#ifndef VSCHED_CORE_CORE_H
#define VSCHED_CORE_CORE_H

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "config.h"
#include "counters.h"
#include "host.h"
#include "ipi_tracker.h"
#include "policy.h"
#include "scheduler.h"
#include "shared_pool.h"
#include "slot_backend.h"
#include "spin_detector.h"
#include "vsched-core.h"

namespace vsched {

/* The pool a core schedules on (private: one member, no name). */
/* Introspection fills the C facade's structs directly (vsched-core.h):
 * one definition each. */
using PoolInfo = VschedPoolInfo;
using PoolMemberInfo = VschedPoolMember;
using VcpuInfo = VschedVcpuInfo;
inline VcpuState state_of(const VcpuInfo &i)
{
    return static_cast<VcpuState>(i.state_id);
}

class Core {
public:
    /* Returns null and sets *err if cfg is invalid. */
    static std::unique_ptr<Core> create(const Config &cfg, int nr_vcpus,
                                        HostInterface &host, std::string *err);
    /* Join (or create) the shared pool `pool` with nr_vcpus; null and *err
     * on refusal.  host.now_ns() must be CLOCK_MONOTONIC (all members
     * compare deadlines).  The slice is the pool's (its creator's). */
    static std::unique_ptr<Core> create_shared(const Config &cfg, std::string_view pool,
                                               int nr_vcpus, HostInterface &host,
                                               std::string *err,
                                               const SharedPoolOptions &opt = {});
    /* Leaves a shared pool: slots and queue entries go to the others; the
     * last member removes the pool.  Stop the mailbox thread first. */
    ~Core();
    Core(const Core &) = delete;
    Core &operator=(const Core &) = delete;

    int nr_vcpus() const { return nr_; }
    int nr_slots() const { return cfg_.pcpus; }
    HostInterface &host() { return host_; }

    /* Gate, release, after-exec, timer. */
    bool acquire(int v);
    void release(int v, ReleaseReason why);
    /* release() if v holds a slot or is queued (a lock-free look first). */
    void release_if_active(int v, ReleaseReason why);
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
    /* The guest's PV sched yield (KVM_HC_SCHED_YIELD) from v to target;
     * lock-free, on v's own thread.  v's next after_exec() takes it. */
    void pv_yield(int v, int target)
    {
        if (valid(v)) {
            hints_[v].pv_yield_to.store(target, std::memory_order_relaxed);
        }
    }

    /* Knobs (thread-safe). */
    void set_policy(PolicyId k) { policy_.store(static_cast<int>(k)); }
    PolicyId policy() const { return static_cast<PolicyId>(policy_.load()); }
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
    void set_wake_granularity_ns(uint64_t ns) { wake_gran_ns_.store(ns); }
    uint64_t wake_granularity_ns() const { return wake_gran_ns_.load(); }
    void set_preempt_delay_ns(uint64_t ns) { preempt_delay_ns_.store(ns); }
    uint64_t preempt_delay_ns() const { return preempt_delay_ns_.load(); }
    void set_tracing(bool on) { tracing_.store(on); }
    void set_mechanism(Mechanism m, bool on)
    {
        if (on) {
            mechs_.fetch_or(static_cast<uint32_t>(m));
        } else {
            mechs_.fetch_and(~static_cast<uint32_t>(m));
        }
    }
    bool mechanism(Mechanism m) const
    {
        return (mechs_.load(std::memory_order_relaxed) & static_cast<uint32_t>(m)) != 0;
    }

    /* Shared pool.  The mailbox turns wakes and kicks posted by other
     * processes into host().wake()/kick() calls, in the calling thread.
     * mailbox_dispatch(): deliver what is pending, waiting up to timeout_ns
     * for something to arrive; also checks members' liveness (at most every
     * kReapIntervalNs).  Returns the number delivered.  mailbox_run(): loop
     * until mailbox_stop() (any thread).  No-ops on a private pool. */
    bool shared() const { return pool_shared(); }
    /* Left a corrupt pool at run time (now on private slots). */
    bool detached() const { return detached_.load(std::memory_order_relaxed); }
    int mailbox_dispatch(uint64_t timeout_ns);
    void mailbox_run();
    void mailbox_stop();
    /* Reap dead members (rate-limited unless force).  Returns how many. */
    int poll_members(bool force = false);

    /* vCPU hotplug.  plug_vcpu: v may run from now on (on a shared pool
     * its member range grows to v + 1 if the ids after it are free; false
     * and *err otherwise).  unplug_vcpu: v is gone: its slot and queue
     * place go to others, its IPI and spin state are dropped; its pool id
     * stays reserved for a later plug. */
    bool plug_vcpu(int v, std::string *err);
    void unplug_vcpu(int v);

    /* Introspection. */
    bool pool_info(PoolInfo *out);
    /* Member i (0 .. kMaxMembers-1); false if that entry is unused. */
    bool pool_member(int i, PoolMemberInfo *out);
    bool vcpu_info(int v, VcpuInfo *out);
    /* Lock-free looks at one field of the pool, for the virtual-time
     * driver, which asks on every run: exact on the thread that changes
     * this VM's slots (in virtual time the round-robin thread).  The vCPU
     * (local id) holding slot s, or -1; v's state (kStopped if invalid). */
    int slot_holder(int s) const;
    VcpuState vcpu_state(int v) const;
    /* Lock-free, on v's thread after its acquire() returned true: the
     * total of v's finished queue waits, its steal time (0 if invalid). */
    uint64_t steal_ns(int v) const;
    /* Lock-free, on v's own thread: would an exit of v now and its next
     * gate pass at pause-clock time next_ns (>= now) both pass without the
     * lock and change nothing?  True when no spin fired and next_ns is
     * before v's hint deadline (ExecHint).  Virtual time then lets a PAUSE
     * go on inside the run instead of ending it. */
    bool exit_is_noop(int v, uint64_t next_ns) const;
    CounterSnapshot counters();
    std::string counters_json() { return vsched::counters_json(counters()); }
    /* Virtual time in a shared pool (vtime_barrier.h): run f(SharedPool &)
     * under the pool lock.  False (f not run, or cut short) on a private
     * or left pool, or when f or the lock found the pool corrupt: then
     * this VM has left it (one line, pool_detached). */
    template <typename F>
    bool with_pool_locked(F &&f)
    {
        Effects fx;
        try {
            Section g(*this, host_.now_ns(), &fx);
            SharedPool *sp = backend().shared_pool();
            if (!sp) {
                return false;
            }
            f(*sp);
        } catch (const PoolCorrupt &e) {
            leave_corrupt_pool(e.what());
            return false;
        }
        run_effects(fx);
        return true;
    }
    /* Leave the shared pool as corrupt (a bad value read outside a lock
     * section). */
    void detach_pool(const char *why) { leave_corrupt_pool(why); }
    /* The shared pool, or null (private, or left). */
    SharedPool *shared_pool() { return backend().shared_pool(); }

    /* Pool + counter consistency (tests, fuzzing). */
    bool check_invariants(std::string *why);
    /* Copy of the pool under the lock (tests). */
    void snapshot_pool(PoolState *out);

private:
    Core(const Config &cfg, int nr_vcpus, HostInterface &host,
         std::unique_ptr<SharedPool> shared);
    bool valid(int v) const { return static_cast<unsigned>(v) < static_cast<unsigned>(nr_); }
    /* The backend in use: the one made at creation, or the private one
     * that replaced a corrupt shared pool (never switched back). */
    SlotBackend &backend() const { return *backend_.load(std::memory_order_acquire); }
    /* On a shared pool, and not detached from it. */
    bool pool_shared() const { return backend().shared(); }
    /* Run f in a lock section.  If the shared pool turns out corrupt, leave
     * it and run f again on private slots. */
    template <typename F>
    void locked(uint64_t now, Effects *fx, F &&f)
    {
        for (int attempt = 0;; attempt++) {
            try {
                Section g(*this, now, fx);
                f();
                return;
            } catch (const PoolCorrupt &e) {
                if (attempt > 0 || !attached_->shared()) {
                    throw; /* private pool: a bug */
                }
                /* (Another thread may have left the pool meanwhile: then
                 * just run again on the private one.) */
                leave_corrupt_pool(e.what());
            }
        }
    }
    /* The backend switch: from the shared pool to a private one of
     * cfg_.pcpus slots, with one error line and a counter. */
    void leave_corrupt_pool(const char *why);
    void decide_locked(int v, int cpl);
    /* How the next yield_to() treats the yielder v left at cpl (marking,
     * lift, lend): the same for a spin's yield and a PV yield. */
    void set_up_yielder_locked(int policy_id, int cpl, uint64_t ipi_now);
    void pv_yield_locked(int v, int target, int cpl);
    /* What the policy asks of the scheduler's mechanisms for v (-1: none). */
    bool lift_ipi_wake() const;
    bool wake_preempt() const;
    bool wake_queued() const;
    bool lend_until_eoi() const;
    void set_wake_preempt_locked();
    void serve_queued_ipis_locked();
    int halt_successor(int v) const;
    uint64_t preempt_delay() const;
    /* The core's lock: mu_, or the shared pool's robust mutex (repairing
     * the state if its previous owner died).  begin()s the scheduler. */
    class Section {
    public:
        Section(Core &c, uint64_t now, Effects *fx);
        ~Section();
        Section(const Section &) = delete;
        Section &operator=(const Section &) = delete;

    private:
        Core &c_;
    };
    void recover_locked();
    /* Run the local effects on the host, post the remote ones. */
    void run_effects(const Effects &fx);
    /* Remember (REQUIRES: the lock) until when v's gate passes and exits
     * need no lock. */
    void note_held_deadline(int v);

    /*
     * Per vCPU, written by its own thread: the deadline of the slot it
     * holds, in host().pause_now_ns() time (0: none).  Before it, v still
     * holds the slot (the gate needs no lock) and an exit without a spin
     * has nothing to do: only v gives its slot away before the deadline
     * (kicks, preemption and revocation come after it), and a held slot's
     * deadline moves only when v's own exit renews it, or when a wake
     * preemption asks v to leave (acquire() then sets it to now, under
     * the lock).
     */
    static constexpr int kNoPvYield = INT32_MIN;
    struct alignas(64) ExecHint {
        std::atomic<uint64_t> deadline_ns{0};
        std::atomic<uint64_t> unlocked_enters{0};
        std::atomic<uint64_t> unlocked_exits{0};
        /* pv_yield()'s target until after_exec() takes it (one writer:
         * v's thread; release() may drop it). */
        std::atomic<int> pv_yield_to{kNoPvYield};
    };
    int take_pv_yield(int v)
    {
        std::atomic<int> &t = hints_[v].pv_yield_to;
        return t.load(std::memory_order_relaxed) == kNoPvYield
                   ? kNoPvYield
                   : t.exchange(kNoPvYield, std::memory_order_relaxed);
    }
    /* Before v's hint deadline: count the pass in *count, no lock, true. */
    bool unlocked_pass(int v, std::atomic<uint64_t> ExecHint::*count);

    const Config cfg_;
    const int nr_;
    HostInterface &host_;
    Counters ctr_;
    SpinDetector spin_;
    IpiTracker ipi_;
    std::mutex mu_;
    std::unique_ptr<Scheduler> sched_ptr_;
    Scheduler &sched_;            /* guarded by the Section lock */
    std::unique_ptr<SlotBackend> attached_; /* PrivateSlots or SharedSlots */
    PrivateSlots detached_slots_{/*after_detach=*/true};
    std::atomic<SlotBackend *> backend_;
    std::atomic<uint64_t> last_reap_ns_{0};
    unsigned polls_ = 0;          /* full pool checks every few polls */
    std::atomic<bool> detached_{false};
    std::atomic<bool> mailbox_stop_{false};
    std::vector<std::unique_ptr<YieldPolicy>> policies_; /* by PolicyId */
    std::atomic<int> policy_;
    std::atomic<bool> relaxed_boost_;
    std::atomic<bool> tracing_{false};
    std::atomic<uint32_t> mechs_;
    std::atomic<uint64_t> wake_gran_ns_;
    std::atomic<uint64_t> preempt_delay_ns_;
    std::unique_ptr<ExecHint[]> hints_;
};

} // namespace vsched

#endif
