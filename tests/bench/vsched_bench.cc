/*
 * Google Benchmark for the vsched core.
 *
 *  decision/<policy>/<n>  one policy decision (run_spin_decision) on a
 *                         fixed mixed pool: 1/4 running, the rest queued as
 *                         user-mode preempted, kernel-mode preempted (some
 *                         in a spin loop) or woken; the spinner has one IPI
 *                         outstanding to a woken vCPU half-way round.
 *  no_target/<policy>/<n> worst case: nobody is ready, every pass scans all.
 *  spin_path/<policy>/<n> the whole vsched_after_exec() path with a fired
 *                         spin: lock, decision, handoff, wake, unlock.
 *  hook/...               the PAUSE / MWAIT / IPI / EOI hooks and the gate
 *                         fast path through the C facade (real clock).
 *
 * At the end it prints one line per policy and size:
 *   decision <policy> vcpus=<n> <median-ns> ns
 * (median over repetitions of decision/<policy>/<n>), then the same for
 * the hooks as "hook <name> <median-ns> ns".
 */
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core.h"
#include "policy.h"
#include "vsched-core.h"
#include "yield_mechanism.h"

namespace {

using namespace vsched;

constexpr int kSizes[] = {16, 64, 256, 1024};
constexpr uint64_t kNow = 10'000'000'000;

class SuccessMechanism : public YieldMechanism {
public:
    int yield_to(int, int) override { return 1; }
};

/* A fixed pool state for one policy decision (see the header comment). */
struct DecisionState {
    int n;
    std::unique_ptr<PoolState> ps{new PoolState};
    Counters ctr;
    std::unique_ptr<IpiTracker> ipi;
    std::unique_ptr<std::atomic<uint8_t>[]> hints;
    SuccessMechanism mech;
    PolicyId id;
    std::unique_ptr<YieldPolicy> policy;

    DecisionState(PolicyId k, int nr, bool nobody_ready) : n(nr), id(k)
    {
        SlotPool pool(*ps);
        pool.init(n, n);
        ipi = std::make_unique<IpiTracker>(n, ctr);
        hints.reset(new std::atomic<uint8_t>[n]);
        policy = make_policy(k);
        for (int v = 0; v < n; v++) {
            hints[v].store(0);
            int kind = nobody_ready ? 1 : v % 8;
            uint8_t st = static_cast<uint8_t>(VcpuState::kQueued);
            uint8_t f = 0;
            switch (kind) {
            case 1:
            case 5:
                st = static_cast<uint8_t>(VcpuState::kRunning);
                break;
            case 3:
                f = vflag::kReady; /* woken */
                break;
            case 6:
                f = vflag::kReady | vflag::kPreempted | vflag::kPreemptedInKernel |
                    vflag::kInSpinLoop;
                break;
            default:
                f = vflag::kReady | vflag::kPreempted; /* user mode */
                break;
            }
            ps->state[v] = st;
            ps->flags[v] = f;
        }
        ps->state[0] = static_cast<uint8_t>(VcpuState::kRunning);
        ps->flags[0] = 0;
        if (!nobody_ready) {
            int r = (n / 2) | 3; /* a woken vCPU half-way round */
            ipi->on_ipi(0, &r, 1, 0xfb, kApicDmFixed, kApicShNone, kNow);
            for (int v = 1; v + 1 < n; v += 7) { /* unrelated traffic */
                int d = v + 1;
                ipi->on_ipi(v, &d, 1, 0xfd, kApicDmFixed, kApicShNone, kNow);
            }
        }
    }

    SpinResult decide()
    {
        SpinSetup s{SlotPool(*ps), *ipi, ctr, hints.get(), kNow, true, 3,
                    0, /*kernel_mode=*/true, policy_pass_count(id)};
        return run_spin_decision(*policy, s, mech);
    }
};

void bm_decision(benchmark::State &st, PolicyId k, int n, bool nobody_ready)
{
    DecisionState s(k, n, nobody_ready);
    for (auto _ : st) {
        benchmark::DoNotOptimize(s.decide());
    }
}

/* A host for the full path: a cheap fake clock, no-op kick, records wake. */
class BenchHost final : public HostInterface {
public:
    uint64_t t = 1'000'000;
    int last_woken = -1;
    uint64_t now_ns() override { return t; }
    void kick(int) override {}
    void wake(int v) override { last_woken = v; }
    void wait(int, uint64_t) override {}
};

void bm_spin_path(benchmark::State &st, PolicyId k, int n)
{
    BenchHost host;
    Config c;
    c.pcpus = std::max(1, n / 4);
    c.set_policy(k);
    c.slice_ns = 1'000'000;
    std::string err;
    auto core = Core::create(c, n, host, &err);
    for (int v = 0; v < n; v++) {
        core->acquire(v);
    }
    /* Rotate everyone through a preemption: odd vCPUs in user mode. */
    for (int round = 0; round < 5; round++) {
        host.t += c.slice_ns;
        for (int v = 0; v < n; v++) {
            if (core->after_exec(v, v % 2 ? 3 : 0)) {
                core->acquire(v);
            }
        }
    }
    host.last_woken = -1;
    int h = 0;
    while (!core->acquire(h)) {
        h++;
    }
    for (auto _ : st) {
        host.t += 1000;
        core->inject_spin(h, 0);
        if (core->after_exec(h, 0) && host.last_woken >= 0) {
            h = host.last_woken;
        }
    }
}

/* ---- hooks through the C facade, real clock ---- */

struct FacadeCore {
    VschedCore *core;
    explicit FacadeCore(int n, int pcpus)
    {
        VschedConfig cfg;
        vsched_config_defaults(&cfg);
        cfg.pcpus = pcpus;
        cfg.ple_window_ns = 3'600'000'000'000ull; /* never fires */
        cfg.ple_window_max_ns = cfg.ple_window_ns;
        VschedHostOps ops = {nullptr, nullptr, nullptr, nullptr};
        core = vsched_core_new(&cfg, n, &ops, nullptr, nullptr, 0);
    }
    ~FacadeCore() { vsched_core_free(core); }
};

void bm_pause(benchmark::State &st)
{
    FacadeCore f(64, 16);
    for (auto _ : st) {
        benchmark::DoNotOptimize(vsched_on_pause(f.core, 5, 0));
    }
}

void bm_pause_at(benchmark::State &st)
{
    FacadeCore f(64, 16);
    uint64_t t = 1'000'000;
    for (auto _ : st) {
        benchmark::DoNotOptimize(vsched_on_pause_at(f.core, 5, 0, t += 1000));
    }
}

void bm_mwait(benchmark::State &st)
{
    FacadeCore f(64, 16);
    for (auto _ : st) {
        vsched_on_mwait(f.core, 5);
    }
}

void bm_ipi_unicast(benchmark::State &st)
{
    FacadeCore f(64, 16);
    int i = 0;
    for (auto _ : st) {
        int src = i & 63, dst = (i * 7 + 1) & 63;
        vsched_on_ipi(f.core, src, &dst, 1, 0xfb, 0, 0);
        i++;
    }
}

void bm_ipi_multicast8(benchmark::State &st)
{
    FacadeCore f(64, 16);
    int i = 0;
    int dst[8];
    for (auto _ : st) {
        for (int k = 0; k < 8; k++) {
            dst[k] = (i + 1 + k * 5) & 63;
        }
        vsched_on_ipi(f.core, i & 63, dst, 8, 0xfd, 0, 0);
        i++;
    }
}

void bm_eoi(benchmark::State &st)
{
    FacadeCore f(64, 16);
    int i = 0;
    for (auto _ : st) {
        vsched_on_eoi(f.core, i & 63, 0xfb);
        i++;
    }
}

/* One trip through cpu_exec with a held slot (what every PAUSE costs the
 * glue): the gate, then the exit.  The exit renews the slice when it runs
 * out, as in QEMU, so the gate stays on its unlocked path. */
void bm_enter_exit_held(benchmark::State &st)
{
    FacadeCore f(64, 16);
    vsched_acquire(f.core, 3);
    for (auto _ : st) {
        benchmark::DoNotOptimize(vsched_acquire(f.core, 3));
        benchmark::DoNotOptimize(vsched_after_exec(f.core, 3, 0));
    }
}

void bm_after_exec_nothing(benchmark::State &st)
{
    FacadeCore f(64, 16);
    vsched_acquire(f.core, 3);
    for (auto _ : st) {
        benchmark::DoNotOptimize(vsched_after_exec(f.core, 3, 0));
    }
}

/* Collects the median of each benchmark for the summary lines. */
class SummaryReporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run> &runs) override
    {
        for (const auto &r : runs) {
            if (r.run_type == Run::RT_Aggregate && r.aggregate_name == "median") {
                std::string name = r.run_name.function_name;
                medians[name] = r.GetAdjustedRealTime();
            }
        }
        ConsoleReporter::ReportRuns(runs);
    }
    std::map<std::string, double> medians;
};

template <typename F>
void add(const std::string &name, F &&f)
{
    benchmark::RegisterBenchmark(name.c_str(), std::forward<F>(f))
        ->Repetitions(5)
        ->ReportAggregatesOnly(true)
        ->MinTime(0.05)
        ->Unit(benchmark::kNanosecond);
}

} // namespace

int main(int argc, char **argv)
{
    for (int k = 0; k < policy_count(); k++) {
        auto kind = static_cast<PolicyId>(k);
        for (int n : kSizes) {
            std::string suffix = std::string(policy_name(kind)) + "/" + std::to_string(n);
            add("decision/" + suffix,
                [kind, n](benchmark::State &s) { bm_decision(s, kind, n, false); });
            add("no_target/" + suffix,
                [kind, n](benchmark::State &s) { bm_decision(s, kind, n, true); });
            add("spin_path/" + suffix,
                [kind, n](benchmark::State &s) { bm_spin_path(s, kind, n); });
        }
    }
    add("hook/pause", bm_pause);
    add("hook/pause_at", bm_pause_at);
    add("hook/mwait", bm_mwait);
    add("hook/ipi_unicast", bm_ipi_unicast);
    add("hook/ipi_multicast8", bm_ipi_multicast8);
    add("hook/eoi", bm_eoi);
    add("gate/enter_exit_held", bm_enter_exit_held);
    add("gate/after_exec_nothing", bm_after_exec_nothing);

    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    SummaryReporter rep;
    benchmark::RunSpecifiedBenchmarks(&rep);
    benchmark::Shutdown();

    std::printf("\n");
    for (int k = 0; k < policy_count(); k++) {
        const char *pn = policy_name(static_cast<PolicyId>(k));
        for (int n : kSizes) {
            auto it = rep.medians.find(std::string("decision/") + pn + "/" + std::to_string(n));
            if (it != rep.medians.end()) {
                std::printf("decision %s vcpus=%d %.1f ns\n", pn, n, it->second);
            }
        }
    }
    for (const auto &[name, ns] : rep.medians) {
        if (name.rfind("hook/", 0) == 0 || name.rfind("gate/", 0) == 0) {
            std::printf("hook %s %.1f ns\n", name.c_str() + name.find('/') + 1, ns);
        }
    }
    return 0;
}
