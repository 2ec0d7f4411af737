/* vsched core: Core, tying scheduler, detector, tracker and policies. */
#include "core.h"

namespace vsched {

std::unique_ptr<Core> Core::create(const Config &cfg, int nr_vcpus, HostInterface &host,
                                   std::string *err)
{
    if (!validate_config(cfg, nr_vcpus, err)) {
        return nullptr;
    }
    return std::unique_ptr<Core>(new Core(cfg, nr_vcpus, host));
}

Core::Core(const Config &cfg, int nr_vcpus, HostInterface &host)
    : cfg_(cfg), nr_(nr_vcpus), host_(host),
      spin_(nr_vcpus, cfg.ple_gap_ns, cfg.ple_window_ns, cfg.ple_window_max_ns,
            cfg.ple_window_grow),
      ipi_(nr_vcpus, ctr_),
      sched_(nr_vcpus, cfg.pcpus, cfg.slice_ns, ctr_, spin_),
      policy_(static_cast<int>(cfg.policy)), relaxed_boost_(cfg.relaxed_boost)
{
    ipi_.set_enabled(cfg.ipi_tracking);
    ipi_.set_window(cfg.ipi_window_ns);
    for (int k = 0; k < kNumPolicies; k++) {
        policies_[k] = make_policy(static_cast<PolicyKind>(k));
    }
}

bool Core::acquire(int v)
{
    if (!valid(v)) {
        return false;
    }
    uint64_t now = host_.now_ns();
    Effects fx;
    fx.set_tracing(tracing_.load(std::memory_order_relaxed));
    bool got;
    {
        std::lock_guard<std::mutex> g(mu_);
        sched_.begin(now, &fx);
        got = sched_.acquire(v);
    }
    fx.run(host_);
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
    {
        std::lock_guard<std::mutex> g(mu_);
        sched_.begin(now, &fx);
        sched_.release(v, why);
    }
    fx.run(host_);
}

/* REQUIRES: mu_ held, v holds a slot, a spin fired at `cpl`. */
void Core::decide_locked(int v, int cpl, uint64_t now)
{
    Effects &fx = sched_.effects();
    fx.trace(TraceEvent::kSpinDetected, v, -1, cpl);
    YieldPolicy &policy = *policies_[policy_.load(std::memory_order_relaxed)];
    if (policy.kind() == PolicyKind::kNone) {
        ctr_.add(Ctr::spins_ignored);
        return;
    }
    ctr_.add(Ctr::spin_decisions);
    PolicyContext ctx{sched_.pool(), ipi_, ctr_, sched_, sched_.wake_hints(), now,
                      relaxed_boost_.load(std::memory_order_relaxed), cfg_.yield_budget};
    sched_.set_yielder_marking(cfg_.yielder_preempted, cpl);
    Decision d = policy.decide(ctx, v, /*kernel_mode=*/cpl == 0);
    if (d.target == kNone) {
        ctr_.add(Ctr::no_target);
        uint64_t w = spin_.grow_window(v);
        ctr_.add(Ctr::ple_window_grow);
        fx.trace(TraceEvent::kNoTarget, v, -1, static_cast<int64_t>(w));
        return;
    }
    ctr_.add(d.pass);
    TraceEvent ev = TraceEvent::kYieldScan;
    switch (d.pass) {
    case Ctr::yield_strict:
        ev = TraceEvent::kYieldStrict;
        break;
    case Ctr::yield_relaxed:
        ev = TraceEvent::kYieldRelaxed;
        break;
    case Ctr::yield_receiver:
        ev = TraceEvent::kYieldReceiver;
        break;
    case Ctr::yield_lock_holder:
        ev = TraceEvent::kYieldLockHolder;
        break;
    default:
        break;
    }
    fx.trace(ev, v, d.target, 0);
    if (d.receiver_hit) {
        ctr_.add(Ctr::yield_receiver_hit);
        if (ev != TraceEvent::kYieldReceiver) {
            fx.trace(TraceEvent::kYieldReceiver, v, d.target, 0);
        }
    }
}

bool Core::after_exec(int v, int cpl)
{
    if (!valid(v)) {
        return true;
    }
    uint64_t now = host_.now_ns();
    int spin_cpl = 0;
    bool fired = spin_.take_pending(v, &spin_cpl);
    Effects fx;
    fx.set_tracing(tracing_.load(std::memory_order_relaxed));
    bool lost;
    {
        std::lock_guard<std::mutex> g(mu_);
        sched_.begin(now, &fx);
        SlotPool pool = sched_.pool();
        if (fired) {
            if (pool.state(v) == VcpuState::kRunning) {
                decide_locked(v, spin_cpl, now);
            } else {
                ctr_.add(Ctr::spins_dropped);
            }
        }
        sched_.preempt_if_due(v, cpl);
        lost = pool.state(v) != VcpuState::kRunning;
    }
    fx.run(host_);
    return lost;
}

uint64_t Core::tick()
{
    uint64_t now = host_.now_ns();
    Effects fx;
    fx.set_tracing(tracing_.load(std::memory_order_relaxed));
    uint64_t next;
    {
        std::lock_guard<std::mutex> g(mu_);
        sched_.begin(now, &fx);
        next = sched_.tick();
    }
    fx.run(host_);
    return next;
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
    for (int i = 0; i < ndst; i++) {
        if (valid(dst[i]) && dst[i] != src) {
            sched_.note_wake(dst[i], kind);
        }
    }
    ipi_.on_ipi(src, dst, ndst, vector, delivery_mode, shorthand, host_.now_ns());
}

void Core::on_irq_accept(int v, int vector)
{
    ipi_.on_accept(v, vector);
}

void Core::on_eoi(int v, int vector)
{
    ipi_.on_eoi(v, vector, host_.now_ns());
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
    {
        std::lock_guard<std::mutex> g(mu_);
        const PoolState &s = sched_.state();
        i.state = static_cast<VcpuState>(s.state[v]);
        i.slot = s.slot_of[v];
        i.slot_deadline_ns = i.slot != kNone ? s.slot_deadline_ns[i.slot] : 0;
        uint8_t f = s.flags[v];
        i.ready = f & vflag::kReady;
        i.preempted = f & vflag::kPreempted;
        i.preempted_in_kernel = f & vflag::kPreemptedInKernel;
        i.in_spin_loop = f & vflag::kInSpinLoop;
        i.dy_eligible = f & vflag::kDyEligible;
    }
    i.spin_pending = spin_.pending(v);
    i.spin_window_ns = spin_.window(v);
    i.pause_events = spin_.pauses(v);
    i.spins_detected = spin_.spins(v);
    i.last_ipi_sender = ipi_.series_last_sender(v);
    i.last_ipi_receiver = ipi_.series_last_receiver(v);
    i.series_pending_ipi = ipi_.series_pending(v);
    i.nr_pending_ipis = ipi_.pending_entries(v, now, i.pending_from, i.pending_vector,
                                             VcpuInfo::kMaxList);
    i.nr_receivers = ipi_.receivers_of(v, now, i.receivers, VcpuInfo::kMaxList);
    *out = i;
    return true;
}

CounterSnapshot Core::counters()
{
    CounterSnapshot s;
    for (int i = 0; i < kNumCounters; i++) {
        s.v[i] = ctr_.get(static_cast<Ctr>(i));
    }
    s.v[static_cast<int>(Ctr::pause_events)] = spin_.total_pauses();
    s.v[static_cast<int>(Ctr::mwait_events)] = spin_.total_mwaits();
    s.v[static_cast<int>(Ctr::spins_detected)] = spin_.total_spins();
    return s;
}

void Core::snapshot_pool(PoolState *out)
{
    std::lock_guard<std::mutex> g(mu_);
    *out = sched_.state();
}

bool Core::check_invariants(std::string *why)
{
    std::lock_guard<std::mutex> g(mu_);
    if (!sched_.check_invariants(why)) {
        return false;
    }
    CounterSnapshot c = counters();
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
    if (c[Ctr::handoffs] != c[Ctr::yield_scan] + c[Ctr::yield_strict] +
                                c[Ctr::yield_relaxed] + c[Ctr::yield_receiver] +
                                c[Ctr::yield_lock_holder]) {
        return fail("handoffs != yields by pass");
    }
    if (c[Ctr::spin_decisions] != c[Ctr::handoffs] + c[Ctr::no_target]) {
        return fail("spin decisions != handoffs + no target");
    }
    if (c[Ctr::spins_detected] != c[Ctr::spin_decisions] + c[Ctr::spins_ignored] +
                                      c[Ctr::spins_dropped] +
                                      static_cast<uint64_t>(spin_.pending_count())) {
        return fail("spins detected != decided + ignored + dropped + pending");
    }
    uint64_t enq = c[Ctr::acquire_wait] + c[Ctr::preemptions] + c[Ctr::handoffs] +
                   c[Ctr::voluntary_yields];
    uint64_t deq = c[Ctr::grants_from_queue] + c[Ctr::handoffs] + c[Ctr::queue_removed];
    if (enq - deq != static_cast<uint64_t>(sched_.state().q_len)) {
        return fail("queue length != enqueues - dequeues");
    }
    if (c[Ctr::slot_waits] != c[Ctr::grants_from_queue] + c[Ctr::handoffs]) {
        return fail("slot waits != grants from queue + handoffs");
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
