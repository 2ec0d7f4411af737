/* vsched core: Core, tying scheduler, detector, tracker and policies. */
#include "core.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

namespace vsched {

std::unique_ptr<Core> Core::create(const Config &cfg, int nr_vcpus, HostInterface &host,
                                   std::string *err)
{
    if (!validate_config(cfg, nr_vcpus, err)) {
        return nullptr;
    }
    return std::unique_ptr<Core>(new Core(cfg, nr_vcpus, host, nullptr));
}

std::unique_ptr<Core> Core::create_shared(const Config &cfg, std::string_view pool,
                                          int nr_vcpus, HostInterface &host, std::string *err,
                                          const SharedPoolOptions &opt)
{
    if (!validate_config(cfg, nr_vcpus, err)) {
        return nullptr;
    }
    const int reserve = opt.reserve_vcpus > 0 ? std::min(opt.reserve_vcpus, nr_vcpus) : nr_vcpus;
    auto sp = SharedPool::attach(pool, cfg.pcpus, cfg.slice_ns, reserve, host.now_ns(), err,
                                 opt);
    if (!sp) {
        return nullptr;
    }
    Config c = cfg;
    c.slice_ns = sp->slice_ns();
    bool stale = sp->recovered_stale();
    int reaped = sp->reaped_at_attach();
    auto core = std::unique_ptr<Core>(new Core(c, nr_vcpus, host, std::move(sp)));
    if (stale) {
        core->ctr_.add(Ctr::pool_stale_recovered);
    }
    core->ctr_.add(Ctr::pool_members_reaped, static_cast<uint64_t>(reaped));
    return core;
}

namespace {
std::unique_ptr<Scheduler> make_scheduler(const Config &cfg, int nr_vcpus, SharedPool *sp,
                                          Counters &ctr, SpinDetector &spin)
{
    if (sp) {
        return std::make_unique<Scheduler>(sp->state(), sp->member(), sp->nr_slots(),
                                           sp->slice_ns(), ctr, spin, nr_vcpus);
    }
    return std::make_unique<Scheduler>(nr_vcpus, cfg.pcpus, cfg.slice_ns, ctr, spin);
}
} // namespace

Core::Core(const Config &cfg, int nr_vcpus, HostInterface &host,
           std::unique_ptr<SharedPool> shared)
    : cfg_(cfg), nr_(nr_vcpus), host_(host),
      spin_(nr_vcpus, cfg.ple_gap_ns, cfg.ple_window_ns, cfg.ple_window_max_ns,
            cfg.ple_window_grow),
      ipi_(nr_vcpus, ctr_), shared_(std::move(shared)),
      sched_ptr_(make_scheduler(cfg, nr_vcpus, shared_.get(), ctr_, spin_)),
      sched_(*sched_ptr_),
      policy_(static_cast<int>(cfg.policy)), relaxed_boost_(cfg.relaxed_boost),
      mechs_(mechanism_bits(cfg)), hints_(new ExecHint[nr_vcpus])
{
    sched_.set_lift_bound(cfg.lift_bound);
    ipi_.set_enabled(cfg.ipi_tracking);
    ipi_.set_window(cfg.ipi_window_ns);
    for (int k = 0; k < policy_count(); k++) {
        policies_.push_back(make_policy(static_cast<PolicyId>(k)));
    }
}

Core::~Core()
{
    if (!pool_shared()) {
        return; /* a private pool, or a corrupt one we already left */
    }
    Effects fx;
    try {
        Section g(*this, host_.now_ns(), &fx);
        sched_.evict_member(shared_->member());
        shared_->leave_locked();
    } catch (const PoolCorrupt &e) {
        std::fprintf(stderr, "vsched: pool '%s': not left cleanly, it is corrupt (%s)\n",
                     shared_->name().c_str(), e.what());
        return;
    }
    run_effects(fx);
}

/*
 * mu_ serialises this process's threads; on a shared pool the pool lock is
 * taken inside it.  Whatever throws here (a corrupt pool, a lock timeout)
 * leaves both unlocked: a constructor that throws runs no destructor.
 */
Core::Section::Section(Core &c, uint64_t now, Effects *fx) : c_(c)
{
    c.mu_.lock();
    if (!c.pool_shared()) {
        c.sched_.begin(now, fx);
        return;
    }
    bool pool_locked = false;
    try {
        bool owner_dead = c.shared_->lock();
        pool_locked = true;
        c.sched_.begin(now, fx);
        if (owner_dead) {
            c.recover_locked();
        }
    } catch (...) {
        if (pool_locked) {
            c.shared_->unlock();
        }
        c.mu_.unlock();
        throw;
    }
}

Core::Section::~Section()
{
    if (c_.pool_shared()) {
        c_.shared_->unlock();
    }
    c_.mu_.unlock();
}

void Core::leave_corrupt_pool(const char *why)
{
    {
        std::lock_guard<std::mutex> l(mu_);
        if (!pool_shared()) {
            return; /* another thread left already */
        }
        /* Best effort: give our slots and queue entries back, if the
         * lock is free now; the pool's checks keep this memory-safe. */
        if (shared_->try_lock()) {
            try {
                Effects fx;
                sched_.begin(host_.now_ns(), &fx);
                sched_.evict_member(shared_->member());
                shared_->leave_locked();
                shared_->post(fx, nullptr, nullptr);
            } catch (const PoolCorrupt &) {
            }
            shared_->unlock();
        }
        sched_.use_private_pool(cfg_.pcpus);
        detached_.store(true);
        for (int v = 0; v < nr_; v++) {
            hints_[v].deadline_ns.store(0, std::memory_order_relaxed);
        }
    }
    ctr_.add(Ctr::pool_detached);
    std::fprintf(stderr,
                 "vsched: pool '%s' is corrupt (%s): this VM left the pool and goes on with "
                 "%d private slots\n",
                 shared_->name().c_str(), why, cfg_.pcpus);
    /* Waiters in the gate try again on the private pool. */
    for (int v = 0; v < nr_; v++) {
        host_.wake(v);
    }
}

/* REQUIRES: the shared lock, whose last owner died holding it. */
void Core::recover_locked()
{
    ctr_.add(Ctr::pool_owner_dead);
    shared_->shm().stats.owner_dead_recoveries++;
    sched_.repair();
    for (int v = 0; v < nr_; v++) {
        hints_[v].deadline_ns.store(0, std::memory_order_relaxed); /* repair may move slots */
    }
    std::vector<int> all;
    for (int m = 0; m < kMaxMembers; m++) {
        if (m != shared_->member()) {
            all.push_back(m);
        }
    }
    reap_locked(all);
}

/* REQUIRES: the shared lock.  Evicts the candidates that are dead. */
int Core::reap_locked(const std::vector<int> &candidates)
{
    int n = 0;
    for (int m : candidates) {
        if (m == shared_->member() || !shared_->dead_locked(m)) {
            continue;
        }
        int held = sched_.evict_member(m);
        shared_->free_proc_locked(m);
        ShmStats &st = shared_->shm().stats;
        st.members_reaped++;
        st.slots_reclaimed += static_cast<uint64_t>(held);
        ctr_.add(Ctr::pool_members_reaped);
        ctr_.add(Ctr::pool_slots_reclaimed, static_cast<uint64_t>(held));
        n++;
    }
    return n;
}

void Core::run_effects(const Effects &fx)
{
    fx.run(host_);
    if (pool_shared() && fx.has_remote()) {
        int w = 0, k = 0;
        shared_->post(fx, &w, &k);
        ctr_.add(Ctr::pool_remote_wakes, static_cast<uint64_t>(w));
        ctr_.add(Ctr::pool_remote_kicks, static_cast<uint64_t>(k));
    }
}

int Core::poll_members(bool force)
{
    if (!pool_shared()) {
        return 0;
    }
    uint64_t now = host_.now_ns();
    uint64_t last = last_reap_ns_.load(std::memory_order_relaxed);
    if (!force && now - last < kReapIntervalNs) {
        return 0;
    }
    if (!last_reap_ns_.compare_exchange_strong(last, now) && !force) {
        return 0; /* another thread is doing it */
    }
    std::vector<int> stopped;
    std::vector<int> dead = shared_->find_dead_members(&stopped);
    std::vector<std::pair<int, int32_t>> stopped_threads = find_stopped_holders(now);
    /* Every few polls (and when forced) the whole pool is checked: a
     * corruption that no index check trips over (a lost slot, a vCPU
     * queued but not in the queue) would otherwise stall vCPUs for ever. */
    const bool full_check = force || polls_++ % 5 == 0;
    if (full_check && shared_->check_file_lost()) {
        ctr_.add(Ctr::pool_file_lost);
        std::fprintf(stderr,
                     "vsched: pool '%s': its file /dev/shm%s was removed or replaced from "
                     "outside (rm, or systemd-logind RemoveIPC at logout); VMs started now "
                     "make a new pool of that name and do not share slots with this one\n",
                     shared_->name().c_str(), pool_shm_path(shared_->name()).c_str());
    }
    if (dead.empty() && stopped.empty() && stopped_threads.empty() && !full_check) {
        return 0;
    }
    Effects fx;
    fx.set_tracing(tracing_.load(std::memory_order_relaxed));
    int n = 0;
    locked(now, &fx, [&] {
        if (!pool_shared()) {
            return; /* left the pool meanwhile */
        }
        n = reap_locked(dead);
        /* A stopped VM (SIGSTOP, a debugger) cannot answer kicks: take back
         * its slots once they are a reap interval past their deadline. */
        for (int m : stopped) {
            if (shm_load(sched_.state().member[m].active)) {
                int r = sched_.revoke_stopped_member(m);
                ctr_.add(Ctr::pool_slots_revoked, static_cast<uint64_t>(r));
            }
        }
        /* One stopped vCPU thread (a per-thread tracer), if it still
         * holds a slot past its deadline with the same thread. */
        for (auto [g, tid] : stopped_threads) {
            SlotPool pool = sched_.pool();
            if (shm_load(sched_.state().vcpu_tid[g]) == tid &&
                pool.state(g) == VcpuState::kRunning) {
                int r = sched_.revoke_stopped_vcpu(g);
                ctr_.add(Ctr::pool_slots_revoked, static_cast<uint64_t>(r));
            }
        }
        std::string why;
        if (full_check && !sched_.check_invariants(&why)) {
            throw PoolCorrupt(why);
        }
    });
    run_effects(fx);
    return n;
}

/*
 * Without the lock: slot holders past their deadline whose thread is
 * stopped ((global id, thread id) pairs).  Reads at most one /proc file
 * per slot, and only for overdue holders.
 */
std::vector<std::pair<int, int32_t>> Core::find_stopped_holders(uint64_t now)
{
    std::vector<std::pair<int, int32_t>> out;
    const PoolState &s = sched_.state();
    for (int sl = 0; sl < cfg_.pcpus && sl < kMaxSlots; sl++) {
        int32_t g = shm_load(s.slot_owner[sl]);
        if (g < 0 || g >= kMaxVcpus || shm_load(s.slot_deadline_ns[sl]) > now) {
            continue;
        }
        int32_t tid = shm_load(s.vcpu_tid[g]);
        if (tid > 0 && static_cast<uint32_t>(tid) != current_tid() && proc_stopped(tid)) {
            out.emplace_back(g, tid);
        }
    }
    return out;
}

int Core::mailbox_dispatch(uint64_t timeout_ns)
{
    if (!shared_) {
        return 0;
    }
    if (detached()) {
        /* Nothing arrives any more; do not spin in mailbox_run(). */
        if (timeout_ns > 0 && !mailbox_stop_.load()) {
            std::this_thread::sleep_for(
                std::chrono::nanoseconds(std::min<uint64_t>(timeout_ns, kReapIntervalNs)));
        }
        return 0;
    }
    auto deliver = [&] {
        return shared_->drain(nr_, [&](int kind, int v) {
            if (kind == 0) {
                ctr_.add(Ctr::pool_mailbox_wakes);
                host_.wake(v);
            } else {
                ctr_.add(Ctr::pool_mailbox_kicks);
                host_.kick(v);
            }
        });
    };
    uint32_t seq = shared_->mailbox_seq();
    int n = deliver();
    if (n == 0 && timeout_ns > 0 && !mailbox_stop_.load()) {
        shared_->wait_mailbox(seq, std::min<uint64_t>(timeout_ns, kReapIntervalNs));
        n = deliver();
    }
    poll_members();
    return n;
}

void Core::mailbox_run()
{
    if (!shared_) {
        return;
    }
    while (!mailbox_stop_.load()) {
        mailbox_dispatch(kReapIntervalNs);
    }
}

void Core::mailbox_stop()
{
    mailbox_stop_.store(true);
    if (shared_ && !detached()) {
        shared_->interrupt_wait();
    }
}

bool Core::pool_info(PoolInfo *out)
{
    PoolInfo i;
    Effects fx;
    locked(host_.now_ns(), &fx, [&] {
        const PoolState &s = sched_.state();
        i = PoolInfo{};
        i.shared = pool_shared();
        i.nr_slots = cfg_.pcpus;
        i.free_slots = shm_load(s.free_top);
        i.queue_len = shm_load(s.q_len);
        i.nr_members = shm_load(s.nr_members);
        i.self = sched_.member();
        i.slice_ns = sched_.slice();
        if (pool_shared()) {
            i.name = shared_->name();
            i.stats = shared_->shm().stats;
        }
    });
    run_effects(fx);
    *out = i;
    return true;
}

bool Core::pool_member(int m, PoolMemberInfo *out)
{
    if (m < 0 || m >= kMaxMembers) {
        return false;
    }
    PoolMemberInfo i;
    Effects fx;
    bool ok = false;
    locked(host_.now_ns(), &fx, [&] {
        const PoolState &s = sched_.state();
        const MemberState &ms = s.member[m];
        ok = shm_load(ms.active) != 0;
        if (ok) {
            i = PoolMemberInfo{};
            i.index = m;
            i.pid = pool_shared() ? shared_->shm().proc[m].pid : static_cast<int>(::getpid());
            i.nr_vcpus = shm_load(ms.nr_vcpus);
            i.base = shm_load(ms.base);
            if (i.base < 0 || i.nr_vcpus < 0 || i.nr_vcpus > kMaxVcpus - i.base) {
                pool_corrupt("member vCPU range", i.base);
            }
            for (int g2 = i.base; g2 < i.base + i.nr_vcpus; g2++) {
                i.slots_held += s.state[g2] == static_cast<uint8_t>(VcpuState::kRunning);
                i.queued += s.state[g2] == static_cast<uint8_t>(VcpuState::kQueued);
            }
            i.slot_time_ns = sched_.member_slot_time(m, &i.overrun_ns);
            uint64_t total = 0;
            for (int k = 0; k < kMaxMembers; k++) {
                if (shm_load(s.member[k].active)) {
                    total += sched_.member_slot_time(k);
                }
            }
            i.share = total ? static_cast<double>(i.slot_time_ns) / static_cast<double>(total)
                            : 0.0;
            i.grants = ms.grants;
            i.slot_waits = ms.slot_waits;
            i.slot_wait_ns = ms.slot_wait_ns;
            i.slot_wait_max_ns = ms.slot_wait_max_ns;
            i.joined_ns = ms.joined_ns;
            i.self = m == sched_.member();
        }
    });
    run_effects(fx);
    if (ok) {
        *out = i;
    }
    return ok;
}

bool Core::acquire(int v)
{
    if (!valid(v)) {
        return false;
    }
    if (unlocked_pass(v, &ExecHint::unlocked_enters)) {
        return true; /* still holds its slot */
    }
    uint64_t now = host_.now_ns();
    Effects fx;
    fx.set_tracing(tracing_.load(std::memory_order_relaxed));
    bool got = false;
    locked(now, &fx, [&] {
        sched_.note_thread(v, static_cast<int32_t>(current_tid()));
        got = sched_.acquire(v, lift_ipi_wake());
        note_held_deadline(v);
    });
    run_effects(fx);
    return got;
}

bool Core::acquire_blocking(int v, const std::atomic<bool> *stop_flag)
{
    while (!acquire(v)) {
        if (stop_flag && stop_flag->load()) {
            return false;
        }
        host_.wait(v, host_.now_ns() + cfg_.slice_ns);
    }
    return true;
}

void Core::release(int v, ReleaseReason why)
{
    if (!valid(v)) {
        return;
    }
    uint64_t now = host_.now_ns();
    Effects fx;
    fx.set_tracing(tracing_.load(std::memory_order_relaxed));
    locked(now, &fx, [&] {
        sched_.release(v, why, why == ReleaseReason::kHalt ? halt_successor(v) : kNone);
        note_held_deadline(v);
    });
    run_effects(fx);
}

void Core::release_if_active(int v, ReleaseReason why)
{
    if (!valid(v) || !sched_.placed(v)) {
        return;
    }
    /* Unlocked look: a halted vCPU becomes active only by its own acquire
     * (on this thread) or by a grant, which needs it queued first.  The
     * state array stays mapped even after leaving a corrupt pool. */
    const uint8_t st = shm_load(sched_.state().state[sched_.base() + v]);
    if (st == static_cast<uint8_t>(VcpuState::kRunning) ||
        st == static_cast<uint8_t>(VcpuState::kQueued)) {
        release(v, why);
    }
}

bool Core::plug_vcpu(int v, std::string *err)
{
    if (!valid(v)) {
        *err = "vsched: vCPU " + std::to_string(v) + " is beyond the " + std::to_string(nr_) +
               " vCPUs the scheduler was started with";
        return false;
    }
    Effects fx;
    bool ok = true;
    std::string why;
    locked(host_.now_ns(), &fx, [&] { ok = sched_.grow(v + 1, &why); });
    run_effects(fx);
    if (!ok) {
        *err = "vsched: pool '" + (shared_ ? shared_->name() : std::string()) +
               "' has no id for vCPU " + std::to_string(v) + ": " + why;
    }
    return ok;
}

void Core::unplug_vcpu(int v)
{
    if (!valid(v)) {
        return;
    }
    Effects fx;
    fx.set_tracing(tracing_.load(std::memory_order_relaxed));
    locked(host_.now_ns(), &fx, [&] {
        sched_.release(v, ReleaseReason::kStop);
        sched_.note_thread(v, 0); /* its thread is gone */
        note_held_deadline(v);
    });
    run_effects(fx);
    ipi_.reset_vcpu(v);
}

/* REQUIRES: mu_ held, v holds a slot, a spin fired at `cpl`. */
void Core::decide_locked(int v, int cpl)
{
    Effects &fx = sched_.effects();
    fx.trace(TraceEvent::kSpinDetected, v, -1, cpl);
    const int id = policy_.load(std::memory_order_relaxed);
    const int nr_passes = policy_pass_count(static_cast<PolicyId>(id));
    if (nr_passes == 0) {
        ctr_.add(Ctr::spins_ignored);
        return;
    }
    ctr_.add(Ctr::spin_decisions);
    const SpinSetup setup{sched_.vm_pool(), ipi_, ctr_, sched_.wake_hints(),
                          host_.pause_now_ns() /* the IPI tracker's clock */,
                          relaxed_boost_.load(std::memory_order_relaxed), cfg_.yield_budget,
                          v, /*kernel_mode=*/cpl == 0, nr_passes,
                          mechanism(Mechanism::kCallfnFirst)};
    sched_.set_yielder_marking(cfg_.yielder_preempted, cpl);
    sched_.set_yielder_lift(mechanism(Mechanism::kYieldLift) &&
                            policies_[id]->lifts_yielders());
    const SpinResult d = run_spin_decision(*policies_[id], setup, sched_);
    if (d.target == kNone) {
        ctr_.add(Ctr::no_target);
        uint64_t w = spin_.grow_window(v);
        ctr_.add(Ctr::ple_window_grow);
        fx.trace(TraceEvent::kNoTarget, v, -1, static_cast<int64_t>(w));
        return;
    }
    ctr_.add_pass(policy_pass_counter(static_cast<PolicyId>(id), d.pass));
    fx.trace(TraceEvent::kYield, v, d.target, yield_trace_arg(id, d.pass));
    /* The same two quantities for every policy, one per IPI view. */
    if (ipi_.series_is_receiver(v, d.target, setup.now)) {
        ctr_.add(Ctr::yield_receiver_hit_series);
    }
    if (ipi_.is_receiver(v, d.target, setup.now)) {
        ctr_.add(Ctr::yield_receiver_hit_any);
        fx.trace(TraceEvent::kReceiverHit, v, d.target, 0);
    }
}

bool Core::after_exec(int v, int cpl)
{
    if (!valid(v)) {
        return true;
    }
    int spin_cpl = 0;
    bool fired = spin_.take_pending(v, &spin_cpl);
    if (!fired && unlocked_pass(v, &ExecHint::unlocked_exits)) {
        return false; /* preempt_if_due() would find nothing due */
    }
    uint64_t now = host_.now_ns();
    Effects fx;
    fx.set_tracing(tracing_.load(std::memory_order_relaxed));
    bool lost = true;
    locked(now, &fx, [&] {
        SlotPool pool = sched_.vm_pool();
        if (fired) {
            if (pool.state(v) == VcpuState::kRunning) {
                decide_locked(v, spin_cpl);
            } else {
                ctr_.add(Ctr::spins_dropped);
            }
        }
        sched_.preempt_if_due(v, cpl);
        lost = pool.state(v) != VcpuState::kRunning;
        note_held_deadline(v);
    });
    run_effects(fx);
    return lost;
}

bool Core::unlocked_pass(int v, std::atomic<uint64_t> ExecHint::*count)
{
    ExecHint &h = hints_[v];
    if (host_.pause_now_ns() >= h.deadline_ns.load(std::memory_order_relaxed)) {
        return false;
    }
    std::atomic<uint64_t> &n = h.*count; /* one writer: v's thread */
    n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return true;
}

void Core::note_held_deadline(int v)
{
    uint64_t dl = sched_.held_deadline(v), hint = 0;
    if (dl) {
        /* In the cheap PAUSE clock, converted now: its rate error then
         * only counts over the rest of one slice. */
        uint64_t now = host_.now_ns();
        hint = host_.pause_now_ns() + (dl > now ? dl - now : 0);
    }
    hints_[v].deadline_ns.store(hint, std::memory_order_relaxed);
}

uint64_t Core::tick()
{
    poll_members();
    uint64_t now = host_.now_ns();
    Effects fx;
    fx.set_tracing(tracing_.load(std::memory_order_relaxed));
    uint64_t next = now + cfg_.slice_ns;
    locked(now, &fx, [&] { next = sched_.tick(); });
    run_effects(fx);
    return next;
}

/* The scheduler's mechanisms serve whichever policy asks for them; the
 * properties switch them off for every policy. */
bool Core::lift_ipi_wake() const
{
    return mechanism(Mechanism::kIpiLift) &&
           policies_[policy_.load(std::memory_order_relaxed)]->lifts_ipi_wakes();
}

int Core::halt_successor(int v) const
{
    if (!mechanism(Mechanism::kHaltHandoff)) {
        return kNone;
    }
    return policies_[policy_.load(std::memory_order_relaxed)]->halt_successor(
        ipi_, v, host_.pause_now_ns());
}

void Core::on_mwait(int v)
{
    if (valid(v)) {
        spin_.on_mwait(v);
    }
}

void Core::on_ipi(int src, const int *dst, int ndst, int vector, int delivery_mode,
                  int shorthand)
{
    if (!dst || ndst < 0) {
        ndst = 0;
    }
    uint8_t kind = (delivery_mode == kApicDmFixed || delivery_mode == kApicDmLowest)
                       ? kWakeIpi
                       : kWakeUrgent;
    /* One clock read per IPI, not per receiver: a broadcast reaches every
     * vCPU and this runs on the ICR write path. */
    const uint64_t now = ndst > 0 ? host_.now_ns() : 0;
    for (int i = 0; i < ndst; i++) {
        if (valid(dst[i]) && dst[i] != src) {
            sched_.note_wake(dst[i], kind, now);
        }
    }
    ipi_.on_ipi(src, dst, ndst, vector, delivery_mode, shorthand, host_.pause_now_ns());
}

void Core::on_irq_accept(int v, int vector)
{
    ipi_.on_accept(v, vector);
}

void Core::on_eoi(int v, int vector)
{
    ipi_.on_eoi(v, vector, host_.pause_now_ns());
}

void Core::reset_vcpu_ipi(int v)
{
    ipi_.reset_vcpu(v);
}

bool Core::vcpu_info(int v, VcpuInfo *out)
{
    if (!valid(v)) {
        return false;
    }
    uint64_t now = host_.now_ns();
    VcpuInfo i;
    Effects fx;
    locked(now, &fx, [&] {
        const PoolState &s = sched_.state();
        SlotPool pool = sched_.pool();
        const int gv = sched_.base() + v;
        i.state = pool.state(gv);
        i.slot = pool.slot_of(gv);
        i.slot_deadline_ns = i.slot != kNone ? s.slot_deadline_ns[i.slot] : 0;
        uint8_t f = s.flags[gv];
        i.ready = f & vflag::kReady;
        i.preempted = f & vflag::kPreempted;
        i.preempted_in_kernel = f & vflag::kPreemptedInKernel;
        i.in_spin_loop = f & vflag::kInSpinLoop;
        i.dy_eligible = f & vflag::kDyEligible;
    });
    run_effects(fx);
    i.spin_pending = spin_.pending(v);
    i.spin_window_ns = spin_.window(v);
    i.pause_events = spin_.pauses(v);
    i.spins_detected = spin_.spins(v);
    i.last_ipi_sender = ipi_.series().last_sender(v);
    i.last_ipi_receiver = ipi_.series().last_receiver(v);
    i.series_pending_ipi = ipi_.series().pending(v);
    const uint64_t ipi_now = host_.pause_now_ns();
    i.nr_pending_ipis = ipi_.pending_entries(v, ipi_now, i.pending_from, i.pending_vector,
                                             VcpuInfo::kMaxList);
    i.nr_receivers = ipi_.receivers_of(v, ipi_now, i.receivers, VcpuInfo::kMaxList);
    *out = i;
    return true;
}

int Core::slot_holder(int s) const
{
    if (s < 0 || s >= cfg_.pcpus || s >= kMaxSlots) {
        return -1;
    }
    const int g = shm_load(sched_.state().slot_owner[s]);
    const int v = g - sched_.base();
    return g >= 0 && v >= 0 && v < nr_ ? v : -1;
}

VcpuState Core::vcpu_state(int v) const
{
    if (!valid(v)) {
        return VcpuState::kStopped;
    }
    return static_cast<VcpuState>(shm_load(sched_.state().state[sched_.base() + v]));
}

bool Core::exit_is_noop(int v, uint64_t next_ns) const
{
    return valid(v) && !spin_.pending(v) &&
           next_ns < hints_[v].deadline_ns.load(std::memory_order_relaxed);
}

CounterSnapshot Core::counters()
{
    CounterSnapshot s;
    for (int i = 0; i < counter_count(); i++) {
        s.v[i] = ctr_.get_index(i);
    }
    s.v[static_cast<int>(Ctr::pause_events)] = spin_.total_pauses();
    s.v[static_cast<int>(Ctr::mwait_events)] = spin_.total_mwaits();
    s.v[static_cast<int>(Ctr::spins_detected)] = spin_.total_spins();
    s.v[static_cast<int>(Ctr::spin_ns)] = spin_.total_spin_ns();
    uint64_t enters = 0, exits = 0;
    for (int v = 0; v < nr_; v++) {
        enters += hints_[v].unlocked_enters.load(std::memory_order_relaxed);
        exits += hints_[v].unlocked_exits.load(std::memory_order_relaxed);
    }
    s.v[static_cast<int>(Ctr::exec_enters_unlocked)] = enters;
    s.v[static_cast<int>(Ctr::exec_exits_unlocked)] = exits;
    return s;
}

void Core::snapshot_pool(PoolState *out)
{
    Effects fx;
    locked(host_.now_ns(), &fx, [&] { *out = sched_.state(); });
    run_effects(fx);
}

bool Core::check_invariants(std::string *why)
{
    Effects fx;
    bool pool_ok = false;
    CounterSnapshot c;
    int spins_pending = 0;
    uint64_t q_len = 0;
    locked(host_.now_ns(), &fx, [&] {
        pool_ok = sched_.check_invariants(why);
        c = counters();
        spins_pending = spin_.pending_count();
        q_len = static_cast<uint64_t>(sched_.state().q_len);
    });
    if (!pool_ok) {
        return false;
    }
    auto fail = [&](const char *m) {
        if (why) {
            *why = m;
        }
        return false;
    };
    if (c[Ctr::yield_attempts] !=
        c[Ctr::handoffs] + c[Ctr::yield_zero] + c[Ctr::yield_esrch]) {
        return fail("yield attempts != successes + zero + esrch");
    }
    if (c[Ctr::handoffs] != c.yields_all_passes()) {
        return fail("handoffs != yields by pass");
    }
    if (c[Ctr::yield_refused] != 0) {
        return fail("a policy broke the spin protocol (yield_refused)");
    }
    if (c[Ctr::spin_decisions] != c[Ctr::handoffs] + c[Ctr::no_target]) {
        return fail("spin decisions != handoffs + no target");
    }
    if (c[Ctr::spins_detected] != c[Ctr::spin_decisions] + c[Ctr::spins_ignored] +
                                      c[Ctr::spins_dropped] +
                                      static_cast<uint64_t>(spins_pending)) {
        return fail("spins detected != decided + ignored + dropped + pending");
    }
    uint64_t enq = c[Ctr::acquire_wait] + c[Ctr::preemptions] + c[Ctr::handoffs] +
                   c[Ctr::voluntary_yields];
    uint64_t deq = c[Ctr::grants_from_queue] + c[Ctr::handoffs] + c[Ctr::queue_removed] +
                   c[Ctr::halt_handoffs];
    /* In a shared pool other processes enqueue and grant too (and a VM
     * that left one started its private queue afresh). */
    if (!shared_ && enq - deq != q_len) {
        return fail("queue length != enqueues - dequeues");
    }
    if (c[Ctr::slot_waits] !=
        c[Ctr::grants_from_queue] + c[Ctr::handoffs] + c[Ctr::halt_handoffs]) {
        return fail("slot waits != grants from queue + handoffs + halt handoffs");
    }
    if (c[Ctr::ipi_calls] != c[Ctr::ipi_unicast] + c[Ctr::ipi_multicast] +
                                 c[Ctr::ipi_shorthand] + c[Ctr::ipi_self] +
                                 c[Ctr::ipi_nonfixed]) {
        return fail("IPI calls != sum of kinds");
    }
    if (c[Ctr::ipi_unicast] + c[Ctr::ipi_multicast] + c[Ctr::ipi_shorthand] !=
        c[Ctr::ipi_series_tracked] + c[Ctr::ipi_series_missed] + c[Ctr::ipi_untracked]) {
        return fail("IPIs to others != series tracked + missed + untracked");
    }
    if (c[Ctr::illegal_transitions] != 0) {
        return fail("an illegal state transition was attempted");
    }
    return true;
}

} // namespace vsched
