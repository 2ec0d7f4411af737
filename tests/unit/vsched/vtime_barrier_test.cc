/*
 * Virtual time on a shared pool: the round barrier (vtime_barrier.h).
 * Members are cores on one pool, in threads of this process or in forked
 * processes: turn order, round lengths from the members' deadlines, the
 * start gate, the slots' progress across members, a killed and a stopped
 * member, corrupt barrier fields, the time base checked at join.
 * Children never use gtest: they _exit() with a code the parent checks.
 */
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core.h"
#include "pool_test_util.h"
#include "real_host.h"
#include "shared_pool.h"
#include "shm_futex.h"
#include "sim_host.h"
#include "vtime.h"
#include "vtime_barrier.h"
#include "vtime_driver.h"

namespace vsched::test {
namespace {

constexpr uint64_t kQuantum = 1000;

PoolTimeBase virtual_base(uint64_t quantum = kQuantum, int shift = 0)
{
    PoolTimeBase tb;
    tb.virtual_time = true;
    tb.icount_shift = shift;
    tb.quantum = quantum;
    return tb;
}

/* A member: a core on the pool and its barrier. */
struct Member {
    std::unique_ptr<RealHost> host;
    std::unique_ptr<Core> core;
    std::unique_ptr<VtimeBarrier> barrier;

    bool join(const std::string &pool, int gate = 1, std::string *err = nullptr,
              PoolTimeBase tb = virtual_base(), uint64_t turn_timeout_ns = kTurnTimeoutNs)
    {
        std::string e;
        host = std::make_unique<RealHost>(2, RealHostCallbacks{});
        SharedPoolOptions opt;
        opt.time_base = tb;
        core = Core::create_shared(small_config(2), pool, 2, *host, err ? err : &e, opt);
        if (!core) {
            return false;
        }
        barrier = std::make_unique<VtimeBarrier>(*core, kQuantum, gate, turn_timeout_ns);
        return true;
    }
    VtimeBarrier::Wait wait(VtimeTurn *t, uint64_t local = 0,
                            std::function<bool()> abort = [] { return false; })
    {
        return barrier->wait_turn(local, abort, [this] { core->poll_members(true); }, t);
    }
    ShmVtime &shm() { return core->shared_pool()->shm().vtime; }
};

/* Aborts a wait after `ms` of host time. */
std::function<bool()> after_ms(int ms)
{
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    return [end] { return std::chrono::steady_clock::now() > end; };
}

TEST(VtimeBarrier, MembersTakeTurnsInIndexOrderRoundByRound)
{
    const std::string name = unique_pool_name("vb-", "order");
    PoolFileGuard g{name};
    Member a, b;
    ASSERT_TRUE(a.join(name, 2));
    ASSERT_TRUE(b.join(name, 2));
    ASSERT_EQ(a.core->shared_pool()->member(), 0);
    ASSERT_EQ(b.core->shared_pool()->member(), 1);

    std::mutex mu;
    std::vector<std::pair<uint64_t, int>> log;  /* (round, member) */
    auto run = [&](Member &m, int index) {
        uint64_t local = 0;
        for (int i = 0; i < 50; i++) {
            VtimeTurn t;
            ASSERT_EQ(m.wait(&t, local), VtimeBarrier::Wait::kTurn);
            {
                std::lock_guard<std::mutex> l(mu);
                log.emplace_back(t.round, index);
            }
            local = t.start + t.length;
            ASSERT_TRUE(m.barrier->pass(kVtimeNoDeadline, false));
        }
    };
    /* B starts first: arrival order must not matter. */
    std::thread tb([&] { run(b, 1); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::thread ta([&] { run(a, 0); });
    ta.join();
    tb.join();
    ASSERT_EQ(log.size(), 100u);
    for (size_t i = 0; i < log.size(); i++) {
        EXPECT_EQ(log[i].first, i / 2) << i;
        EXPECT_EQ(log[i].second, static_cast<int>(i % 2)) << i;
    }
    EXPECT_EQ(a.barrier->counters().turns, 50u);
    EXPECT_EQ(a.barrier->counters().skipped_dead + a.barrier->counters().skipped_stopped, 0u);
}

TEST(VtimeBarrier, RoundLengthIsTheEarliestDeadlineOfAnyMember)
{
    const std::string name = unique_pool_name("vb-", "len");
    PoolFileGuard g{name};
    Member a, b;
    ASSERT_TRUE(a.join(name, 2));
    ASSERT_TRUE(b.join(name, 2));
    VtimeTurn t;
    std::thread tb([&] {
        VtimeTurn u;
        /* Round 0: B's timer is due 300 instructions into round 1. */
        EXPECT_EQ(b.wait(&u), VtimeBarrier::Wait::kTurn);
        b.barrier->pass(kQuantum + 300, false);
        /* Round 1: both idle, B's next timer far away. */
        EXPECT_EQ(b.wait(&u, kQuantum), VtimeBarrier::Wait::kTurn);
        EXPECT_EQ(u.length, 300u);
        b.barrier->pass(1'000'000, true);
    });
    ASSERT_EQ(a.wait(&t), VtimeBarrier::Wait::kTurn);
    EXPECT_EQ(t.start, 0u);
    EXPECT_EQ(t.length, kQuantum);
    a.barrier->pass(kVtimeNoDeadline, false);
    ASSERT_EQ(a.wait(&t, kQuantum), VtimeBarrier::Wait::kTurn);
    EXPECT_EQ(t.start, kQuantum);
    EXPECT_EQ(t.length, 300u);
    a.barrier->pass(5'000'000, true);
    tb.join();
    /* Round 2: every member idle: one round to the earliest deadline. */
    ASSERT_EQ(a.wait(&t, kQuantum + 300), VtimeBarrier::Wait::kTurn);
    EXPECT_EQ(t.start, kQuantum + 300);
    EXPECT_EQ(t.length, 1'000'000u - (kQuantum + 300));
}

TEST(VtimeBarrier, TheFirstRoundWaitsForTheGate)
{
    const std::string name = unique_pool_name("vb-", "gate");
    PoolFileGuard g{name};
    Member a;
    ASSERT_TRUE(a.join(name, 2));
    VtimeTurn t;
    EXPECT_EQ(a.wait(&t, 0, after_ms(60)), VtimeBarrier::Wait::kAborted);
    EXPECT_EQ(a.shm().started, 0u);
    Member b;
    ASSERT_TRUE(b.join(name, 2));
    std::thread tb([&] {
        VtimeTurn u;
        EXPECT_EQ(b.wait(&u, 0, after_ms(5000)), VtimeBarrier::Wait::kTurn);
        b.barrier->pass(kVtimeNoDeadline, false);
    });
    EXPECT_EQ(a.wait(&t, 0, after_ms(5000)), VtimeBarrier::Wait::kTurn);
    EXPECT_EQ(t.round, 0u);
    a.barrier->pass(kVtimeNoDeadline, false);
    tb.join();
}

TEST(VtimeBarrier, ASlotGoesOnWhereTheEarlierMemberLeftIt)
{
    const std::string name = unique_pool_name("vb-", "slot");
    PoolFileGuard g{name};
    Member a, b;
    ASSERT_TRUE(a.join(name, 2));
    ASSERT_TRUE(b.join(name, 2));
    std::thread tb([&] {
        VtimeTurn u;
        EXPECT_EQ(b.wait(&u), VtimeBarrier::Wait::kTurn);
        EXPECT_EQ(b.barrier->slot_used(1), 400u);
        EXPECT_EQ(b.barrier->slot_used(0), 0u);
        b.barrier->pass(kVtimeNoDeadline, false);
        EXPECT_EQ(b.wait(&u, kQuantum), VtimeBarrier::Wait::kTurn);
        EXPECT_EQ(b.barrier->slot_used(1), 0u); /* a new round */
        b.barrier->pass(kVtimeNoDeadline, false);
    });
    VtimeTurn t;
    ASSERT_EQ(a.wait(&t), VtimeBarrier::Wait::kTurn);
    a.barrier->publish_slot(1, 400);
    a.barrier->pass(kVtimeNoDeadline, false);
    ASSERT_EQ(a.wait(&t, kQuantum), VtimeBarrier::Wait::kTurn);
    a.barrier->pass(kVtimeNoDeadline, false);
    tb.join();
}

TEST(VtimeBarrier, AStoppedVmLeavesTheRoundsAndRejoins)
{
    const std::string name = unique_pool_name("vb-", "leave");
    PoolFileGuard g{name};
    Member a, b;
    ASSERT_TRUE(a.join(name));
    ASSERT_TRUE(b.join(name));
    VtimeTurn t;
    /* B's thread is not in the rounds (its VM is stopped): A goes on alone. */
    uint64_t local = 0;
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(a.wait(&t, local), VtimeBarrier::Wait::kTurn);
        local = t.start + t.length;
        a.barrier->pass(kVtimeNoDeadline, false);
    }
    /* B comes back: from the next round on it takes its turn after A's,
     * at the pool's clock (its own stood still). */
    std::thread tb([&] {
        VtimeTurn u;
        EXPECT_EQ(b.wait(&u, 0, after_ms(5000)), VtimeBarrier::Wait::kTurn);
        EXPECT_EQ(u.start, 3 * kQuantum);
        b.barrier->pass(kVtimeNoDeadline, false);
        b.barrier->leave();
    });
    for (int i = 0; i < 5000 && !__atomic_load_n(&a.shm().member[1].present, __ATOMIC_ACQUIRE);
         i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(a.wait(&t, local), VtimeBarrier::Wait::kTurn);
    EXPECT_EQ(t.start, 3 * kQuantum);
    a.barrier->pass(kVtimeNoDeadline, false);
    tb.join();
    ASSERT_EQ(a.wait(&t, 4 * kQuantum, after_ms(5000)), VtimeBarrier::Wait::kTurn);
    EXPECT_EQ(t.start, 4 * kQuantum);
    a.barrier->pass(kVtimeNoDeadline, false);
    EXPECT_EQ(a.barrier->counters().skipped_slow, 0u);
}

/* ---------------------------------------------------------- the model */

/* CPU-bound vCPUs: each runs `work` instructions, then halts. */
class Loops final : public VtimeVcpus {
public:
    Loops(Core &core, VirtualRounds &rounds, int n, uint64_t work)
        : core_(core), rounds_(rounds), work_(n, work), done_at_(n, 0)
    {
    }
    bool runnable(int v) override { return work_[v] > 0; }
    VtimeRun run(int v, uint64_t budget) override
    {
        int s = rounds_.current();
        uint64_t n = std::min(budget, work_[v]);
        rounds_.account(s, n);
        work_[v] -= n;
        if (work_[v] == 0) {
            done_at_[v] = rounds_.now(s);
            core_.release(v, ReleaseReason::kHalt);
            return {n, VtimeExit::kHalted};
        }
        core_.after_exec(v, 0);
        return {n, VtimeExit::kRan};
    }
    bool busy() const
    {
        return std::any_of(work_.begin(), work_.end(), [](uint64_t w) { return w > 0; });
    }
    uint64_t last_done() const { return *std::max_element(done_at_.begin(), done_at_.end()); }

private:
    Core &core_;
    VirtualRounds &rounds_;
    std::vector<uint64_t> work_;
    std::vector<uint64_t> done_at_;
};

struct Share final : VtimeSlotShare {
    VtimeBarrier *b;
    uint64_t used(int s) override { return b->slot_used(s); }
    void publish(int s, uint64_t u) override { b->publish_slot(s, u); }
};

/* What a member saw at the end of each of its turns: the round, its clock
 * and a hash of the whole pool state (thread ids left out: they differ
 * from run to run and decide nothing). */
uint64_t pool_state_hash(Core &core)
{
    PoolState ps;
    core.snapshot_pool(&ps);
    std::fill(std::begin(ps.vcpu_tid), std::end(ps.vcpu_tid), 0);
    const auto *w = reinterpret_cast<const unsigned char *>(&ps);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i + 8 <= sizeof ps; i += 8) {
        uint64_t x;
        std::memcpy(&x, w + i, 8);
        h = (h ^ x) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
    }
    return h;
}

/* One VM of n CPU-bound vCPUs on the shared pool, driven as QEMU's
 * round-robin thread drives it; returns when its vCPUs are done, with
 * the virtual time the last one finished.  log (optional): per turn, the
 * round, the clock after it and pool_state_hash(). */
uint64_t run_vm(const std::string &pool, int members, int n, uint64_t work, uint64_t quantum,
               uint64_t slice, std::vector<uint64_t> *log = nullptr)
{
    SimHost sim(n);
    VirtualRounds rounds(2, quantum);
    VirtualTimeHost host(sim, rounds, 0);
    SharedPoolOptions opt;
    opt.time_base = virtual_base(quantum);
    std::string err;
    Config cfg = small_config(2);
    cfg.slice_ns = slice;
    auto core = Core::create_shared(cfg, pool, n, host, &err, opt);
    if (!core) {
        ADD_FAILURE() << err;
        return 0;
    }
    Loops vcpus(*core, rounds, n, work);
    VtimeDriver driver(*core, rounds, vcpus);
    VtimeBarrier barrier(*core, quantum, members);
    Share share;
    share.b = &barrier;
    driver.set_share(&share);
    while (vcpus.busy()) {
        VtimeTurn t;
        if (barrier.wait_turn(rounds.start(), [] { return false; },
                              [&] { core->poll_members(true); }, &t) !=
            VtimeBarrier::Wait::kTurn) {
            ADD_FAILURE() << "no turn";
            return 0;
        }
        if (t.start > rounds.start()) {
            rounds.warp(t.start - rounds.start());
        }
        if (driver.run_round(t.length) == VtimeStep::kAllIdle) {
            rounds.warp(t.length);
        }
        if (log) {
            log->insert(log->end(), {t.round, rounds.start(), pool_state_hash(*core)});
        }
        if (!vcpus.busy()) {
            break;
        }
        barrier.pass(kVtimeNoDeadline, false);
    }
    /* As a VM that powers off: it keeps its last turn until its core is
     * gone (below), which frees its place in one step at a fixed point of
     * the rounds; a leave() first would let the others run while the
     * core still is a member, for a host-timed while. */
    return vcpus.last_done();
}

TEST(VtimeBarrierModel, TwoVmsOfFourCpuBoundVcpusOnTwoSlotsTakeFourTimesAsLong)
{
    /* 8 vCPUs, 2 slots, slices of 250 us (250 k instructions at shift
     * 0) ending and slots passing between the VMs: the slots never idle,
     * so the last vCPU is done at (8 / 2) x work; the run queue is FIFO
     * per vCPU (not per VM), so the other VM may finish up to two slices
     * of its vCPUs earlier. */
    const std::string name = unique_pool_name("vb-", "model");
    PoolFileGuard g{name};
    constexpr uint64_t kWork = 5'000'000, kQ = 10'000, kSlice = 250'000;
    uint64_t done[2] = {};
    std::thread first([&] { done[0] = run_vm(name, 2, 4, kWork, kQ, kSlice); });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    done[1] = run_vm(name, 2, 4, kWork, kQ, kSlice);
    first.join();
    const uint64_t last = std::max(done[0], done[1]);
    const uint64_t other = std::min(done[0], done[1]);
    EXPECT_NEAR(static_cast<double>(last) / (4 * kWork), 1.0, 0.005) << last;
    EXPECT_GE(other + 2 * kSlice + kQ, 4 * kWork) << other;
    std::printf("VM done at %.4f and %.4f x work\n", static_cast<double>(done[0]) / kWork,
                static_cast<double>(done[1]) / kWork);
}

/*
 * 3 VMs on one pool, with and without a thread that wakes the waiting
 * members every 20 us (each wake-up runs a waiter's lock section and its
 * checks).  How often a waiter wakes is host timing: every turn must see
 * the same pool state and every VM finish at the same virtual time.  So a
 * waiter is read-only, and waking only the member whose turn is next
 * (FUTEX_WAKE_BITSET) cannot change a run.
 */
std::vector<std::vector<uint64_t>> three_vms(const char *tag, bool noisy)
{
    const std::string name = unique_pool_name("vb-", tag);
    PoolFileGuard g{name};
    constexpr uint64_t kWork = 2'000'000, kQ = 10'000, kSlice = 250'000;
    std::vector<std::vector<uint64_t>> logs(3);
    std::vector<uint64_t> done(3);
    std::atomic<bool> stop{false};
    std::vector<std::thread> vms;
    for (int i = 0; i < 3; i++) {
        vms.emplace_back([&, i] { done[i] = run_vm(name, 3, 4, kWork, kQ, kSlice, &logs[i]); });
        /* Member index follows start order. */
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
    }
    std::thread noise;
    if (noisy) {
        noise = std::thread([&] {
            /* A plain mapping of the pool file, not a member: only its
             * futex wake-ups reach the pool. */
            int fd = ::shm_open(pool_shm_path(name).c_str(), O_RDWR | O_CLOEXEC, 0);
            ASSERT_GE(fd, 0);
            void *m = ::mmap(nullptr, sizeof(ShmPool), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            ::close(fd);
            ASSERT_NE(m, MAP_FAILED);
            uint32_t *seq = &static_cast<ShmPool *>(m)->vtime.seq;
            while (!stop.load()) {
                futex_wake(seq);
                std::this_thread::sleep_for(std::chrono::microseconds(20));
            }
            ::munmap(m, sizeof(ShmPool));
        });
    }
    for (auto &t : vms) {
        t.join();
    }
    stop.store(true);
    if (noise.joinable()) {
        noise.join();
    }
    for (auto &l : logs) {
        EXPECT_FALSE(l.empty());
    }
    logs.push_back(done);
    return logs;
}

TEST(VtimeBarrierModel, HowOftenAWaiterWakesChangesNothing)
{
    const auto quiet = three_vms("quiet", false);
    const auto noisy = three_vms("noisy", true);
    ASSERT_EQ(quiet.size(), noisy.size());
    for (size_t vm = 0; vm < quiet.size(); vm++) {
        ASSERT_EQ(quiet[vm].size(), noisy[vm].size()) << "VM " << vm;
        for (size_t i = 0; i < quiet[vm].size(); i++) {
            ASSERT_EQ(quiet[vm][i], noisy[vm][i])
                << "VM " << vm << ", turn " << i / 3 << ", field " << i % 3;
        }
    }
    std::printf("3 VMs: %zu, %zu, %zu turns, identical with a waking thread\n",
                quiet[0].size() / 3, quiet[1].size() / 3, quiet[2].size() / 3);
}

/* ---------------------------------------------------------- processes */

/* A member process taking turns for ever, counting them in *turns. */
int turn_taker(const std::string &name, std::atomic<uint64_t> *turns)
{
    Member m;
    if (!m.join(name, 2)) {
        return 2;
    }
    uint64_t local = 0;
    for (;;) {
        VtimeTurn t;
        if (m.wait(&t, local) != VtimeBarrier::Wait::kTurn) {
            return 3;
        }
        local = t.start + t.length;
        turns->fetch_add(1);
        m.barrier->pass(kVtimeNoDeadline, false);
    }
}

std::atomic<uint64_t> *shared_counter()
{
    void *m = ::mmap(nullptr, sizeof(std::atomic<uint64_t>), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return new (m) std::atomic<uint64_t>(0);
}

/* Takes turns until pred() or timeout_ms; returns the turns taken. */
int take_turns(Member &m, uint64_t *local, const std::function<bool()> &pred, int timeout_ms)
{
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    int n = 0;
    while (!pred() && std::chrono::steady_clock::now() < end) {
        VtimeTurn t;
        if (m.wait(&t, *local, after_ms(timeout_ms)) != VtimeBarrier::Wait::kTurn) {
            break;
        }
        *local = t.start + t.length;
        n++;
        m.barrier->pass(kVtimeNoDeadline, false);
    }
    return n;
}

/*
 * A VM that powers off in virtual time keeps its turn until it exits; its
 * exit (the core's destructor) frees its slots and its place in one step.
 * The member waiting for the turn passes it on then, and counts nothing:
 * a "dead" count would depend on whether it looked before or after the
 * exit, and two identical runs would differ in it.
 */
TEST(VtimeBarrier, AMemberThatExitsHoldingItsTurnIsNotCountedDead)
{
    const std::string name = unique_pool_name("vb-", "exit");
    PoolFileGuard g{name};
    Member a, b;
    ASSERT_TRUE(a.join(name, 2));
    ASSERT_TRUE(b.join(name, 2));
    VtimeTurn ta, tb;
    std::thread waiter([&] {
        ASSERT_EQ(b.wait(&tb, 0, after_ms(5000)), VtimeBarrier::Wait::kTurn);
    });
    ASSERT_EQ(a.wait(&ta), VtimeBarrier::Wait::kTurn);
    /* Longer than kTurnCheckNs: B looks at A's process meanwhile. */
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    a.barrier.reset();
    a.core.reset();
    waiter.join();
    EXPECT_EQ(tb.round, ta.round);
    EXPECT_EQ(b.barrier->counters().skipped_dead, 0u);
    EXPECT_EQ(b.barrier->counters().skipped_slow, 0u);
}

/* Member A here and a forked member taking turns with it, until the
 * child has taken 20; the child is killed at the end. */
struct TwoMembers {
    PoolFileGuard guard;
    std::atomic<uint64_t> *kid_turns = shared_counter();
    Member a;
    pid_t kid = -1;
    uint64_t local = 0;

    bool start(const char *tag)
    {
        guard.name = unique_pool_name("vb-", tag);
        if (!a.join(guard.name, 2)) {
            return false;
        }
        const std::string name = guard.name;
        kid = fork_child([&] { return turn_taker(name, kid_turns); });
        take_turns(a, &local, [&] { return kid_turns->load() >= 20; }, 10000);
        return kid_turns->load() >= 20;
    }
    /* A takes turns until it has n more (at most timeout_ms). */
    uint64_t a_turns() { return a.barrier->counters().turns; }
    void a_takes(uint64_t n, int timeout_ms)
    {
        const uint64_t goal = a_turns() + n;
        take_turns(a, &local, [&] { return a_turns() >= goal; }, timeout_ms);
    }
    void kill_kid()
    {
        ::kill(kid, SIGKILL);
        wait_exit(kid);
        kid = -1;
    }
    ~TwoMembers()
    {
        if (kid > 0) {
            kill_kid();
        }
    }
};

TEST(VtimeBarrierProcesses, AKilledMemberLeavesTheLockstepWithin100ms)
{
    TwoMembers p;
    ASSERT_TRUE(p.start("kill"));
    p.kill_kid();
    /* A turn after the kill shows the lockstep moves on without it. */
    auto t0 = std::chrono::steady_clock::now();
    const uint64_t before = p.a_turns();
    p.a_takes(3, 5000);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - t0).count();
    EXPECT_GE(p.a_turns(), before + 3);
    EXPECT_LE(ms, 100) << "the killed member held the others for " << ms << " ms";
    EXPECT_LE(p.a.barrier->counters().skipped_dead, 1u);
    EXPECT_EQ(p.a.shm().member[1].present, 0u);
    std::printf("killed member out of the rounds after %lld ms\n", static_cast<long long>(ms));
}

TEST(VtimeBarrierProcesses, AStoppedMemberIsSkippedAndRejoinsOnContinue)
{
    TwoMembers p;
    ASSERT_TRUE(p.start("stop"));
    ::kill(p.kid, SIGSTOP);
    /* Wait until it is stopped (state T). */
    for (int i = 0; i < 200 && !proc_stopped(p.kid); i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_TRUE(proc_stopped(p.kid));
    const uint64_t frozen = p.kid_turns->load();
    const uint64_t before = p.a_turns();
    p.a_takes(20, 5000);
    EXPECT_GE(p.a_turns(), before + 20) << "A waited for the stopped member";
    EXPECT_EQ(p.a.barrier->counters().skipped_stopped, 1u);
    EXPECT_EQ(p.kid_turns->load(), frozen);
    ::kill(p.kid, SIGCONT);
    take_turns(p.a, &p.local, [&] { return p.kid_turns->load() >= frozen + 10; }, 5000);
    EXPECT_GE(p.kid_turns->load(), frozen + 10) << "the member did not rejoin";
}

/* ---------------------------------------------------------- corruption */

/* One member alone on a fresh pool, in its first turn. */
class VtimeBarrierFirstTurn : public ::testing::Test {
protected:
    void SetUp() override
    {
        ASSERT_TRUE(a.join(g.name));
        ASSERT_EQ(a.wait(&t), VtimeBarrier::Wait::kTurn);
    }
    PoolFileGuard g{unique_pool_name("vb-", "corrupt")};
    Member a;
    VtimeTurn t;
};

class VtimeBarrierCorrupt : public VtimeBarrierFirstTurn,
                            public ::testing::WithParamInterface<int> {};

TEST_P(VtimeBarrierCorrupt, ABadFieldDetachesTheMemberWithOneLine)
{
    a.barrier->pass(kVtimeNoDeadline, false);
    ShmVtime &vt = a.shm();
    testing::internal::CaptureStderr();
    switch (GetParam()) {
    case 0:
        vt.turn = 1000;
        break;
    case 1:
        vt.length = 0;
        break;
    case 2:
        vt.start = ~0ull;
        break;
    case 3:
        vt.start = 5; /* behind our clock */
        break;
    case 4:
        vt.turn = -7;
        break;
    }
    const VtimeBarrier::Wait w = a.wait(&t, kQuantum);
    std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(w, VtimeBarrier::Wait::kDetached);
    EXPECT_TRUE(a.core->detached());
    EXPECT_NE(err.find("is corrupt"), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

INSTANTIATE_TEST_SUITE_P(Fields, VtimeBarrierCorrupt, ::testing::Range(0, 5));

TEST_F(VtimeBarrierFirstTurn, ACorruptSlotRecordThrows)
{
    a.shm().slot[0].round = t.round;
    a.shm().slot[0].used = t.length + 1;
    EXPECT_THROW(a.barrier->slot_used(0), PoolCorrupt);
}

/* ---------------------------------------------------------- time base */

TEST(VtimeTimeBase, AMemberOfAnotherTimeBaseIsRefusedAtJoin)
{
    const std::string name = unique_pool_name("vb-", "tb");
    PoolFileGuard g{name};
    Member a;
    ASSERT_TRUE(a.join(name));
    struct Case {
        PoolTimeBase tb;
        const char *asks;
    } cases[] = {
        {PoolTimeBase{}, "this VM asks for time=real"},
        {virtual_base(kQuantum, 3), "this VM asks for time=virtual (-icount shift=3, quantum=1000)"},
        {virtual_base(2000), "this VM asks for time=virtual (-icount shift=0, quantum=2000)"},
    };
    for (const Case &c : cases) {
        Member b;
        std::string err;
        EXPECT_FALSE(b.join(name, 1, &err, c.tb));
        EXPECT_NE(err.find("runs on time=virtual (-icount shift=0, quantum=1000)"),
                  std::string::npos) << err;
        EXPECT_NE(err.find(c.asks), std::string::npos) << err;
        EXPECT_NE(err.find("share one time base"), std::string::npos) << err;
    }
    Member same;
    EXPECT_TRUE(same.join(name));
}

TEST(VtimeTimeBase, AVirtualTimeVmIsRefusedByARealTimePool)
{
    const std::string name = unique_pool_name("vb-", "tbreal");
    PoolFileGuard g{name};
    RealHost host(2, RealHostCallbacks{});
    std::string err;
    auto real = Core::create_shared(small_config(2), name, 2, host, &err);
    ASSERT_TRUE(real) << err;
    Member b;
    EXPECT_FALSE(b.join(name, 1, &err));
    EXPECT_NE(err.find("runs on time=real, this VM asks for time=virtual"), std::string::npos)
        << err;
}

} // namespace
} // namespace vsched::test
