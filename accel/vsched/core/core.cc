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

std::unique_ptr<SlotBackend> make_backend(std::unique_ptr<SharedPool> sp)
{
    if (sp) {
        return std::make_unique<SharedSlots>(std::move(sp));
    }
    return std::make_unique<PrivateSlots>(/*after_detach=*/false);
}
} // namespace

Core::Core(const Config &cfg, int nr_vcpus, HostInterface &host,
           std::unique_ptr<SharedPool> shared)
    : cfg_(cfg), nr_(nr_vcpus), host_(host),
      spin_(nr_vcpus, cfg.ple_gap_ns, cfg.ple_window_ns, cfg.ple_window_max_ns,
            cfg.ple_window_grow),
      ipi_(nr_vcpus, ctr_), sched_ptr_(make_scheduler(cfg, nr_vcpus, shared.get(), ctr_, spin_)),
      sched_(*sched_ptr_), attached_(make_backend(std::move(shared))), backend_(attached_.get()),
      policy_(static_cast<int>(cfg.policy)), relaxed_boost_(cfg.relaxed_boost),
      mechs_(mechanism_bits(cfg)), wake_gran_ns_(cfg.wake_granularity_ns),
      preempt_delay_ns_(cfg.preempt_delay_ns),
      hints_(new ExecHint[nr_vcpus])
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
    SlotBackend &b = backend();
    if (!b.shared()) {
        /* Nothing to leave, and the host may be gone already: a private
         * core must not touch it once its owner destroys it. */
        return;
    }
    Effects fx;
    try {
        Section g(*this, host_.now_ns(), &fx);
        b.leave_locked(sched_);
    } catch (const PoolCorrupt &e) {
        std::fprintf(stderr, "vsched: pool '%s': not left cleanly, it is corrupt (%s)\n",
                     b.name().c_str(), e.what());
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
    /* (Read again under mu_: a detach switches the backend under it.) */
    SlotBackend &b = c.backend();
    bool pool_locked = false;
    try {
        bool owner_dead = b.lock();
        pool_locked = true;
        c.sched_.begin(now, fx);
        if (owner_dead) {
            c.recover_locked();
        }
    } catch (...) {
        if (pool_locked) {
            b.unlock();
        }
        c.mu_.unlock();
        throw;
    }
}

Core::Section::~Section()
{
    c_.backend().unlock(); /* the one locked: it only changes under mu_ */
    c_.mu_.unlock();
}

void Core::leave_corrupt_pool(const char *why)
{
    SlotBackend &left = backend();
    {
        std::lock_guard<std::mutex> l(mu_);
        if (!pool_shared()) {
            return; /* another thread left already */
        }
        left.abandon(sched_, host_.now_ns());
        sched_.use_private_pool(cfg_.pcpus);
        backend_.store(&detached_slots_, std::memory_order_release);
        detached_.store(true);
        for (int v = 0; v < nr_; v++) {
            hints_[v].deadline_ns.store(0, std::memory_order_relaxed);
        }
    }
    ctr_.add(Ctr::pool_detached);
    std::fprintf(stderr,
                 "vsched: pool '%s' is corrupt (%s): this VM left the pool and goes on with "
                 "%d private slots\n",
                 left.name().c_str(), why, cfg_.pcpus);
    /* Waiters in the gate try again on the private pool. */
    for (int v = 0; v < nr_; v++) {
        host_.wake(v);
    }
}

/* REQUIRES: the backend's lock, whose last owner died holding it. */
void Core::recover_locked()
{
    backend().recover_locked(sched_, ctr_);
    for (int v = 0; v < nr_; v++) {
        hints_[v].deadline_ns.store(0, std::memory_order_relaxed); /* repair may move slots */
    }
}

void Core::run_effects(const Effects &fx)
{
    fx.run(host_);
    backend().post(fx, ctr_);
}

int Core::poll_members(bool force)
{
    SlotBackend &b = backend();
    if (!b.shared()) {
        return 0; /* nobody else to watch */
    }
    uint64_t now = host_.now_ns();
    uint64_t last = last_reap_ns_.load(std::memory_order_relaxed);
    if (!force && now - last < kReapIntervalNs) {
        return 0;
    }
    if (!last_reap_ns_.compare_exchange_strong(last, now) && !force) {
        return 0; /* another thread is doing it */
    }
    /* Every few polls (and when forced) the whole pool is checked: a
     * corruption that no index check trips over (a lost slot, a vCPU
     * queued but not in the queue) would otherwise stall vCPUs for ever. */
    const bool full_check = force || polls_++ % 5 == 0;
    MemberSurvey found;
    b.survey(sched_, cfg_.pcpus, now, full_check, ctr_, &found);
    if (found.empty() && !full_check) {
        return 0;
    }
    Effects fx;
    fx.set_tracing(tracing_.load(std::memory_order_relaxed));
    int n = 0;
    locked(now, &fx, [&] {
        if (!pool_shared()) {
            return; /* left the pool meanwhile */
        }
        n = backend().reap_locked(sched_, found.dead, ctr_);
        /* A stopped VM (SIGSTOP, a debugger) cannot answer kicks: take back
         * its slots once they are a reap interval past their deadline. */
        for (int m : found.stopped) {
            if (shm_load(sched_.state().member[m].active)) {
                int r = sched_.revoke_stopped_member(m);
                ctr_.add(Ctr::pool_slots_revoked, static_cast<uint64_t>(r));
            }
        }
        /* One stopped vCPU thread (a per-thread tracer), if it still
         * holds a slot past its deadline with the same thread. */
        for (auto [g, tid] : found.stopped_threads) {
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

int Core::mailbox_dispatch(uint64_t timeout_ns)
{
    int n = backend().mailbox_dispatch(nr_, timeout_ns, mailbox_stop_, host_, ctr_);
    poll_members();
    return n;
}

void Core::mailbox_run()
{
    if (!backend().runs_mailbox()) {
        return;
    }
    while (!mailbox_stop_.load()) {
        mailbox_dispatch(kReapIntervalNs);
    }
}

void Core::mailbox_stop()
{
    mailbox_stop_.store(true);
    backend().interrupt_mailbox();
}

bool Core::pool_info(PoolInfo *out)
{
    PoolInfo i{};
    Effects fx;
    locked(host_.now_ns(), &fx, [&] {
        const PoolState &s = sched_.state();
        i = PoolInfo{};
        i.shared = pool_shared();
        i.slots = cfg_.pcpus;
        i.free_slots = shm_load(s.free_top);
        i.queue_len = shm_load(s.q_len);
        i.members = shm_load(s.nr_members);
        i.self = sched_.member();
        i.slice_ns = sched_.slice();
        backend().describe_locked(&i);
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
    PoolMemberInfo i{};
    Effects fx;
    bool ok = false;
    locked(host_.now_ns(), &fx, [&] {
        const PoolState &s = sched_.state();
        const MemberState &ms = s.member[m];
        ok = shm_load(ms.active) != 0;
        if (ok) {
            i = PoolMemberInfo{};
            i.index = m;
            i.pid = backend().member_pid_locked(m);
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
        set_wake_preempt_locked();
        got = sched_.acquire(v, lift_ipi_wake());
        note_held_deadline(v);
        /* A holder asked to leave: its exits and PAUSEs take the lock. */
        const int asked = sched_.take_wake_preempted();
        if (asked != kNone) {
            note_held_deadline(asked);
        }
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
    /* A PV yield asked before a stop or halt is stale once v runs again. */
    hints_[v].pv_yield_to.store(kNoPvYield, std::memory_order_relaxed);
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
        *err = "vsched: pool '" + backend().name() +
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
    set_up_yielder_locked(id, cpl, setup.now);
    const SpinResult d = run_spin_decision(*policies_[id], setup, sched_);
    sched_.set_lend(nullptr, 0);
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

void Core::set_up_yielder_locked(int policy_id, int cpl, uint64_t ipi_now)
{
    sched_.set_yielder_marking(cfg_.yielder_preempted, cpl);
    sched_.set_yielder_lift(mechanism(Mechanism::kYieldLift) &&
                            policies_[policy_id]->lifts_yielders());
    sched_.set_lend(lend_until_eoi() ? &ipi_ : nullptr, ipi_now);
}

/*
 * REQUIRES: mu_ held.  KVM's kvm_sched_yield(): the guest's caller waits
 * for target (its IPI went to a preempted vCPU), so if target is ready,
 * the caller's slot goes to it, as yield_to() does; no policy is asked.
 */
void Core::pv_yield_locked(int v, int target, int cpl)
{
    ctr_.add(Ctr::pv_yield_requests);
    int handed = 0;
    if (valid(target) && target != v && sched_.vm_pool().state(v) == VcpuState::kRunning) {
        set_up_yielder_locked(policy_.load(std::memory_order_relaxed), cpl,
                              host_.pause_now_ns());
        handed = sched_.yield_to(v, target) > 0;
        sched_.set_lend(nullptr, 0);
    }
    ctr_.add(handed ? Ctr::pv_yields : Ctr::pv_yield_misses);
    sched_.effects().trace(TraceEvent::kPvYield, v, target, handed);
}

bool Core::after_exec(int v, int cpl)
{
    if (!valid(v)) {
        return true;
    }
    int spin_cpl = 0;
    bool fired = spin_.take_pending(v, &spin_cpl);
    const bool queued_ipis = sched_.queued_ipis_pending();
    const bool lend_due = sched_.lend_return_due(v);
    const int pv_target = take_pv_yield(v);
    const bool pv = pv_target != kNoPvYield;
    if (!fired && !queued_ipis && !lend_due && !pv &&
        unlocked_pass(v, &ExecHint::unlocked_exits)) {
        return false; /* preempt_if_due() would find nothing due */
    }
    uint64_t now = host_.now_ns();
    Effects fx;
    fx.set_tracing(tracing_.load(std::memory_order_relaxed));
    bool lost = true;
    locked(now, &fx, [&] {
        SlotPool pool = sched_.vm_pool();
        if (queued_ipis) {
            serve_queued_ipis_locked();
        }
        if (pv) {
            pv_yield_locked(v, pv_target, cpl);
        }
        if (fired) {
            if (pool.state(v) == VcpuState::kRunning) {
                decide_locked(v, spin_cpl);
            } else {
                ctr_.add(Ctr::spins_dropped);
            }
        }
        sched_.set_preempt_delay(preempt_delay());
        if (lend_due) {
            sched_.return_lend(v, cpl, lend_until_eoi() ? &ipi_ : nullptr,
                               host_.pause_now_ns());
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

/* REQUIRES: the lock.  What the policy and properties ask of the next
 * wake preemption. */
void Core::set_wake_preempt_locked()
{
    sched_.set_wake_preempt(wake_preempt(), wake_gran_ns_.load(std::memory_order_relaxed));
    if (mechanism(Mechanism::kWakeSpinnerFirst)) {
        sched_.set_wake_spinner_first(host_.pause_now_ns());
    }
}

/* REQUIRES: the lock.  wake-queued: IPIs that reached queued vCPUs ask
 * their wake preemptions; the holders asked take the lock at their next
 * exit (their hints say now). */
void Core::serve_queued_ipis_locked()
{
    set_wake_preempt_locked();
    if (sched_.serve_queued_ipis() == 0) {
        return;
    }
    for (int s = 0; s < cfg_.pcpus; s++) {
        const int h = slot_holder(s);
        if (h >= 0) {
            note_held_deadline(h);
        }
    }
}

bool Core::lend_until_eoi() const
{
    return mechanism(Mechanism::kYieldLend) &&
           policies_[policy_.load(std::memory_order_relaxed)]->lends_until_eoi();
}

bool Core::wake_queued() const
{
    return mechanism(Mechanism::kWakeQueued) && wake_preempt();
}

bool Core::wake_preempt() const
{
    return mechanism(Mechanism::kWakePreempt) &&
           policies_[policy_.load(std::memory_order_relaxed)]->preempts_for_ipi_wakes();
}

/* The grace of a delayed preemption the policy asks for (0: none). */
uint64_t Core::preempt_delay() const
{
    if (!policies_[policy_.load(std::memory_order_relaxed)]->delays_kernel_preemption()) {
        return 0;
    }
    return preempt_delay_ns_.load(std::memory_order_relaxed);
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
    const bool track_queued = ndst > 0 && wake_queued();
    for (int i = 0; i < ndst; i++) {
        if (valid(dst[i]) && dst[i] != src) {
            sched_.note_wake(dst[i], kind, now, track_queued);
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
    /* The EOI a lender waits for (yield-lend): v's next exit hands the
     * slot back, a point fixed by v's own instructions.  No kick: Linux
     * EOIs a call-function IPI before it runs the function (sysvec_call_
     * function), so an exit right at the EOI would hand the slot back
     * before the lender's wait is over; the next exit (the end of the
     * run, a PAUSE, a HLT) comes after the handler in the common case. */
    if (valid(v)) {
        sched_.note_eoi(v, vector);
    }
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
    VcpuInfo i{};
    Effects fx;
    locked(now, &fx, [&] {
        const PoolState &s = sched_.state();
        SlotPool pool = sched_.pool();
        const int gv = sched_.base() + v;
        const VcpuState st = pool.state(gv);
        i.state = state_name(st);
        i.state_id = static_cast<int>(st);
        i.slot = pool.slot_of(gv);
        i.holds_slot = i.slot != kNone;
        i.slot_deadline_ns = i.holds_slot ? s.slot_deadline_ns[i.slot] : 0;
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
                                             VSCHED_INFO_MAX_LIST);
    i.nr_receivers = ipi_.receivers_of(v, ipi_now, i.receivers, VSCHED_INFO_MAX_LIST);
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

uint64_t Core::steal_ns(int v) const
{
    if (!valid(v)) {
        return 0;
    }
    return shm_load(sched_.state().steal_ns[sched_.base() + v]);
}

bool Core::exit_is_noop(int v, uint64_t next_ns) const
{
    return valid(v) && !spin_.pending(v) && !sched_.lend_return_due(v) &&
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
    /* A lend's return requeues the receiver and grants the lender; a halt
     * return grants the lender only. */
    uint64_t enq = c[Ctr::acquire_wait] + c[Ctr::preemptions] + c[Ctr::handoffs] +
                   c[Ctr::voluntary_yields] + c[Ctr::lend_returns] + c[Ctr::lend_chains];
    uint64_t deq = c[Ctr::grants_from_queue] + c[Ctr::handoffs] + c[Ctr::queue_removed] +
                   c[Ctr::halt_handoffs] + c[Ctr::wake_preempts] + c[Ctr::lend_returns] +
                   c[Ctr::lend_halt_returns] + c[Ctr::lend_chains];
    /* In a shared pool other processes enqueue and grant too (and a VM
     * that left one started its private queue afresh). */
    if (backend().counts_whole_queue() && enq - deq != q_len) {
        return fail("queue length != enqueues - dequeues");
    }
    if (c[Ctr::slot_waits] != c[Ctr::grants_from_queue] + c[Ctr::handoffs] +
                                  c[Ctr::halt_handoffs] + c[Ctr::wake_preempts] +
                                  c[Ctr::lend_returns] + c[Ctr::lend_halt_returns] +
                                  c[Ctr::lend_chains]) {
        return fail("slot waits != grants from queue + handoffs + halt and wake handoffs");
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
