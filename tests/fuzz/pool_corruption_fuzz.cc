/*
 * Shared-pool corruption fuzzer (issue #10): a hostile process writes into
 * a pool file while member processes run a workload on it.
 *
 *   vsched-pool-fuzz [--seconds N] [--members M] [--seed S]
 *
 * In rounds of about 6 s for N seconds: M members (forked; each a Core
 * with a mailbox thread, a timer thread and 3 vCPU threads, as the QEMU
 * glue runs them, and a thread taking turns in the virtual-time round
 * barrier, as QEMU's round-robin thread does with time=virtual) join a
 * new pool of 2 slots; the parent writes into the
 * pool file for 3 s (every third round random bytes at random offsets,
 * else targeted bad values: negative, huge, off by one, another member's,
 * into every field of every structure); the members go on for 3 s more.
 * Each member must either go on (every vCPU keeps getting slots) or leave
 * the pool with one error line and go on with private slots.  A member
 * that crashes (a signal, an ASan/UBSan report: this program is built
 * with both), stalls (a vCPU without a slot, or the rounds without a turn
 * for 4 s, while still in the pool) or hangs (not done
 * 20 s after its round) fails the run.
 *
 * Prints the seed, rounds and writes; exit 0 on success.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core.h"
#include "real_host.h"
#include "shared_pool.h"
#include "vtime_barrier.h"

using namespace vsched;

namespace {

constexpr int kVcpus = 3;
constexpr int kSlots = 2;
constexpr uint64_t kStallNs = 4'000'000'000ull;

uint64_t now_ns()
{
    return steady_now_ns();
}

/* ---------------------------------------------------------------- */
/* A member: the workload of tests/unit/vsched/shared_pool_test.cc.  */

constexpr uint64_t kQuantum = 1000;

/* The round barrier as QEMU's round-robin thread uses it: wait for the
 * turn, look at and publish the slots' progress, pass, until stop or
 * until the member leaves the pool. */
void take_turns(Core &core, std::atomic<bool> &stop, std::atomic<uint64_t> &last_turn,
                std::atomic<uint64_t> &turns)
{
    if (!core.shared_pool()) {
        return;
    }
    VtimeBarrier b(core, kQuantum, 1);
    uint64_t local = 0;
    while (!stop.load() && core.shared_pool()) {
        VtimeTurn t;
        auto w = b.wait_turn(local, [&] { return stop.load(); },
                             [&] { core.poll_members(true); }, &t);
        if (w != VtimeBarrier::Wait::kTurn) {
            break;
        }
        local = t.start + t.length;
        for (int s = 0; s < kSlots; s++) {
            uint64_t used = 0;
            try {
                used = b.slot_used(s);
            } catch (const PoolCorrupt &e) {
                core.detach_pool(e.what());
                return;
            }
            b.publish_slot(s, std::min(t.length, used + 1));
        }
        last_turn = now_ns();
        turns++;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        if (!b.pass(local + 5 * kQuantum, false)) {
            break;
        }
    }
    b.leave();
}

int run_member(const std::string &name, int idx, uint64_t run_ns, int ready_fd)
{
    RealHost host(kVcpus, RealHostCallbacks{});
    Config cfg;
    cfg.pcpus = kSlots;
    cfg.slice_ns = 2 * kNsPerMs;
    cfg.set_policy(policy_id("ipi-prio"));
    cfg.ple_gap_ns = 50'000;
    cfg.ple_window_ns = 20'000;
    std::string err;
    SharedPoolOptions opt;
    opt.time_base.virtual_time = true; /* the barrier's fields are in use */
    opt.time_base.quantum = kQuantum;
    std::unique_ptr<Core> core = Core::create_shared(cfg, name, kVcpus, host, &err, opt);
    if (!core) {
        std::fprintf(stderr, "member %d: %s\n", idx, err.c_str());
        return 2;
    }
    char c = 'r';
    if (::write(ready_fd, &c, 1) != 1) {
        return 2;
    }
    ::close(ready_fd);
    std::atomic<bool> stop{false};
    std::thread mailbox([&] { core->mailbox_run(); });
    std::thread timer([&] {
        while (!stop.load()) {
            core->tick();
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    });
    std::atomic<uint64_t> last_grant[kVcpus];
    std::atomic<uint64_t> grants{0};
    for (auto &g : last_grant) {
        g = now_ns();
    }
    std::atomic<uint64_t> last_turn{now_ns()};
    std::atomic<uint64_t> turns{0};
    std::thread rounds([&] { take_turns(*core, stop, last_turn, turns); });
    std::vector<std::thread> th;
    for (int v = 0; v < kVcpus; v++) {
        th.emplace_back([&, v] {
            unsigned runs = 0;
            while (!stop.load()) {
                if (!core->acquire_blocking(v, &stop)) {
                    break;
                }
                last_grant[v] = now_ns();
                grants++;
                do {
                    for (int i = 0; i < 20; i++) {
                        core->on_pause(v, 0);
                    }
                    std::this_thread::sleep_for(std::chrono::microseconds(100));
                    int dst = (v + 1) % kVcpus;
                    core->on_ipi(v, &dst, 1, 0xfb, kApicDmFixed, kApicShNone);
                    core->on_irq_accept(dst, 0xfb);
                    if (++runs % 3 == 0) {
                        core->inject_spin(v, 0);
                    }
                } while (!core->after_exec(v, 0) && !stop.load() && runs % 32 != 0);
                last_grant[v] = now_ns();
                if (runs % 32 == 0) {
                    core->release(v, ReleaseReason::kHalt);
                    std::this_thread::sleep_for(std::chrono::microseconds(200));
                }
            }
            core->release(v, ReleaseReason::kStop);
        });
    }
    /* Introspection too, as query-vsched would, and the stall watchdog. */
    const uint64_t until = now_ns() + run_ns;
    int rc = 0;
    while (now_ns() < until && rc == 0) {
        PoolInfo pi;
        core->pool_info(&pi);
        for (int m = 0; m < kMaxMembers; m++) {
            PoolMemberInfo mi;
            core->pool_member(m, &mi);
        }
        for (int v = 0; v < kVcpus; v++) {
            VcpuInfo vi;
            core->vcpu_info(v, &vi);
            const uint64_t last = last_grant[v].load(), now = now_ns();
            const uint64_t idle = now > last ? now - last : 0; /* set meanwhile */
            if (idle > kStallNs) {
                std::fprintf(stderr, "member %d: vCPU %d got no slot for %.1f s (stall)\n", idx,
                             v, static_cast<double>(idle) / 1e9);
                rc = 3;
            }
        }
        const uint64_t lt = last_turn.load(), now = now_ns();
        if (!core->detached() && now > lt && now - lt > kStallNs) {
            std::fprintf(stderr, "member %d: no turn in the rounds for %.1f s (stall)\n", idx,
                         static_cast<double>(now - lt) / 1e9);
            rc = 3;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    stop = true;
    for (int v = 0; v < kVcpus; v++) {
        host.wake(v);
    }
    for (auto &t : th) {
        t.join();
    }
    rounds.join();
    core->mailbox_stop();
    mailbox.join();
    timer.join();
    std::printf("member %d: %s, %llu grants, %llu turns\n", idx,
                core->detached() ? "left the corrupt pool, went on privately" : "stayed",
                static_cast<unsigned long long>(grants.load()),
                static_cast<unsigned long long>(turns.load()));
    std::fflush(stdout);
    return rc;
}

/* ---------------------------------------------------------------- */
/* The hostile writer.                                              */

struct Field {
    const char *name;
    size_t offset;
    size_t size;  /* of one element */
    size_t count; /* elements */
};

#define FIELD(member) \
    Field { #member, offsetof(ShmPool, member), sizeof(ShmPool::member), 1 }
#define ARRAY(member, elem)                                                                    \
    Field                                                                                      \
    {                                                                                          \
        #member, offsetof(ShmPool, member), sizeof(elem),                                      \
            sizeof(ShmPool::member) / sizeof(elem)                                             \
    }

std::vector<Field> fields()
{
    std::vector<Field> f = {
        FIELD(hdr.magic), FIELD(hdr.version), FIELD(hdr.total_size), FIELD(hdr.nr_slots),
        FIELD(hdr.slice_ns), FIELD(hdr.removed), FIELD(lock.word),
        FIELD(stats.members_joined), FIELD(pool.nr_vcpus), FIELD(pool.nr_slots),
        FIELD(pool.last_boosted_vcpu), FIELD(pool.q_head), FIELD(pool.q_tail), FIELD(pool.q_len),
        ARRAY(pool.q_next, int32_t), ARRAY(pool.q_prev, int32_t), FIELD(pool.free_top),
        ARRAY(pool.free_stack, int32_t), ARRAY(pool.state, uint8_t), ARRAY(pool.flags, uint8_t),
        ARRAY(pool.slot_of, int32_t), ARRAY(pool.queued_at_ns, uint64_t),
        ARRAY(pool.slot_owner, int32_t), ARRAY(pool.slot_deadline_ns, uint64_t),
        ARRAY(pool.slot_kicked_at_ns, uint64_t), ARRAY(pool.slot_granted_at_ns, uint64_t),
        FIELD(pool.nr_members), ARRAY(pool.vcpu_member, int16_t),
        FIELD(hdr.time_virtual), FIELD(hdr.quantum), FIELD(vtime.seq), FIELD(vtime.started),
        FIELD(vtime.round), FIELD(vtime.turn), FIELD(vtime.start), FIELD(vtime.length),
    };
    /* The barrier's per-slot records of the slots in use. */
    for (int s = 0; s < kSlots; s++) {
        size_t sl = offsetof(ShmPool, vtime.slot) + s * sizeof(ShmVtimeSlot);
        f.push_back({"vtime.slot.round", sl + offsetof(ShmVtimeSlot, round), 8, 1});
        f.push_back({"vtime.slot.used", sl + offsetof(ShmVtimeSlot, used), 8, 1});
    }
    /* Per member: each field of MemberState and ShmMember. */
    for (int m = 0; m < 4; m++) {
        size_t ms = offsetof(ShmPool, pool.member) + m * sizeof(MemberState);
        f.push_back({"member.active", ms + offsetof(MemberState, active), 4, 1});
        f.push_back({"member.base", ms + offsetof(MemberState, base), 4, 1});
        f.push_back({"member.nr_vcpus", ms + offsetof(MemberState, nr_vcpus), 4, 1});
        f.push_back({"member.last_boosted_vcpu", ms + offsetof(MemberState, last_boosted_vcpu),
                     4, 1});
        f.push_back({"member.slot_time_ns", ms + offsetof(MemberState, slot_time_ns), 8, 1});
        size_t pr = offsetof(ShmPool, proc) + m * sizeof(ShmMember);
        f.push_back({"proc.pid", pr + offsetof(ShmMember, pid), 4, 1});
        f.push_back({"proc.start_time", pr + offsetof(ShmMember, start_time), 8, 1});
        f.push_back({"proc.futex", pr + offsetof(ShmMember, futex), 4, 1});
        f.push_back({"proc.wake_bits", pr + offsetof(ShmMember, wake_bits), 8, kMailboxWords});
        f.push_back({"proc.kick_bits", pr + offsetof(ShmMember, kick_bits), 8, kMailboxWords});
        size_t vm = offsetof(ShmPool, vtime.member) + m * sizeof(ShmVtimeMember);
        f.push_back({"vtime.member.present", vm + offsetof(ShmVtimeMember, present), 4, 1});
        f.push_back({"vtime.member.idle", vm + offsetof(ShmVtimeMember, idle), 4, 1});
        f.push_back({"vtime.member.deadline", vm + offsetof(ShmVtimeMember, deadline), 8, 1});
    }
    return f;
}

int64_t bad_value(std::mt19937_64 &rng)
{
    static const int64_t kValues[] = {
        0, -1, 1, 2, 3, 7, -2, 63, 64, 65, 255, 256, kMaxVcpus - 1, kMaxVcpus, kMaxVcpus + 1,
        kMaxSlots, kMaxMembers, kMaxMembers - 1, 0x7fff, -32768, 0x7fffffff,
        static_cast<int64_t>(0x80000000u), 1 << 28, 0x7fffffffffffffffll, 1,
    };
    if (rng() % 5 == 0) {
        return static_cast<int64_t>(rng());
    }
    return kValues[rng() % std::size(kValues)];
}

void write_value(unsigned char *base, size_t off, size_t size, int64_t v)
{
    switch (size) {
    case 1:
        __atomic_store_n(base + off, static_cast<uint8_t>(v), __ATOMIC_RELAXED);
        break;
    case 2:
        __atomic_store_n(reinterpret_cast<int16_t *>(base + off), static_cast<int16_t>(v),
                         __ATOMIC_RELAXED);
        break;
    case 4:
        __atomic_store_n(reinterpret_cast<int32_t *>(base + off), static_cast<int32_t>(v),
                         __ATOMIC_RELAXED);
        break;
    default:
        __atomic_store_n(reinterpret_cast<int64_t *>(base + off), v, __ATOMIC_RELAXED);
        break;
    }
}

/* Writes for run_ns; returns the number of writes. */
uint64_t attack(const std::string &name, uint64_t run_ns, bool random, std::mt19937_64 &rng)
{
    int fd = ::shm_open(pool_shm_path(name).c_str(), O_RDWR, 0);
    if (fd < 0) {
        std::perror("attacker: shm_open");
        return 0;
    }
    auto *base = static_cast<unsigned char *>(
        ::mmap(nullptr, sizeof(ShmPool), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    ::close(fd);
    if (base == MAP_FAILED) {
        std::perror("attacker: mmap");
        return 0;
    }
    const std::vector<Field> fs = fields();
    const uint64_t until = now_ns() + run_ns;
    uint64_t writes = 0;
    while (now_ns() < until) {
        if (random) {
            /* Random bytes at random offsets (8 at a time). */
            size_t off = rng() % (sizeof(ShmPool) - 8);
            write_value(base, off & ~size_t{7}, 8, static_cast<int64_t>(rng()));
        } else {
            const Field &f = fs[rng() % fs.size()];
            /* Arrays: mostly the entries in use (low ids), sometimes any. */
            size_t i = f.count == 1 ? 0 : (rng() % 4 ? rng() % 16 : rng() % f.count);
            write_value(base, f.offset + i * f.size, f.size, bad_value(rng));
        }
        writes++;
        std::this_thread::sleep_for(std::chrono::microseconds(200 + rng() % 1800));
    }
    ::munmap(base, sizeof(ShmPool));
    return writes;
}

std::string read_all(const std::string &path)
{
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

int count_lines_with(const std::string &text, const char *needle)
{
    int n = 0;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        n += line.find(needle) != std::string::npos;
    }
    return n;
}

struct RoundResult {
    uint64_t writes = 0;
    int left = 0;
    int failed = 0;
};

/* One pool, `members` fresh members, attack_ns of writes (random bytes or
 * targeted fields), then the members go on for kAfterNs on their own. */
constexpr uint64_t kAfterNs = 3'000'000'000ull;

RoundResult run_round(const std::string &name, int members, uint64_t attack_ns, bool random,
                      std::mt19937_64 &rng)
{
    RoundResult r;
    std::vector<pid_t> pids;
    std::vector<std::string> logs;
    for (int k = 0; k < members; k++) {
        char path[] = "/tmp/vsched-pool-fuzz-XXXXXX";
        int efd = ::mkstemp(path);
        int ready[2];
        if (efd < 0 || ::pipe(ready) != 0) {
            std::perror("pool-fuzz");
            r.failed++;
            return r;
        }
        logs.push_back(path);
        pid_t pid = ::fork();
        if (pid == 0) {
            ::dup2(efd, 2);
            ::close(ready[0]);
            ::_exit(run_member(name, k, attack_ns + kAfterNs, ready[1]));
        }
        ::close(efd);
        ::close(ready[1]);
        char c;
        if (::read(ready[0], &c, 1) != 1) {
            std::fprintf(stderr, "pool-fuzz: member %d did not join\n", k);
        }
        ::close(ready[0]);
        pids.push_back(pid);
    }
    r.writes = attack(name, attack_ns, random, rng);
    const uint64_t give_up = now_ns() + kAfterNs + 20'000'000'000ull;
    for (int k = 0; k < members; k++) {
        int st = 0;
        const char *what = nullptr;
        for (;;) {
            if (::waitpid(pids[k], &st, WNOHANG) == pids[k]) {
                break;
            }
            if (now_ns() > give_up) {
                ::kill(pids[k], SIGKILL);
                ::waitpid(pids[k], &st, 0);
                what = "hung (killed)";
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        std::string log = read_all(logs[k]);
        ::unlink(logs[k].c_str());
        int lines = count_lines_with(log, "left the pool");
        r.left += lines > 0;
        if (!what && WIFSIGNALED(st)) {
            what = "crashed";
        } else if (!what && WEXITSTATUS(st) != 0) {
            what = "failed";
        } else if (!what && lines > 1) {
            what = "printed more than one error line";
        }
        if (what) {
            r.failed++;
            std::printf("member %d %s (status %d)\n--- its stderr ---\n%s------------------\n", k,
                        what, st, log.c_str());
        }
    }
    ::shm_unlink(pool_shm_path(name).c_str());
    return r;
}

} // namespace

int main(int argc, char **argv)
{
    double seconds = 20;
    int members = 3;
    uint64_t seed = static_cast<uint64_t>(now_ns() ^ static_cast<uint64_t>(::getpid()));
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--seconds") {
            seconds = std::atof(argv[i + 1]);
        } else if (a == "--members") {
            members = std::atoi(argv[i + 1]);
        } else if (a == "--seed") {
            seed = std::strtoull(argv[i + 1], nullptr, 0);
        } else {
            std::fprintf(stderr, "usage: %s [--seconds N] [--members M] [--seed S]\n", argv[0]);
            return 2;
        }
    }
    if (argc % 2 == 0 || seconds < 7 || seconds > 3600 || members < 1 || members > 8) {
        std::fprintf(stderr, "usage: %s [--seconds N] [--members M] [--seed S] "
                             "(N in 7..3600, M in 1..8)\n", argv[0]);
        return 2;
    }
    std::printf("pool-fuzz: seed %llu, %d members, %.0f s\n",
                static_cast<unsigned long long>(seed), members, seconds);
    std::fflush(stdout);
    std::mt19937_64 rng(seed);
    /* Rounds of attack + members going on; the first writes random
     * bytes, the others targeted values. */
    constexpr uint64_t kAttackNs = 3'000'000'000ull;
    const uint64_t end = now_ns() + static_cast<uint64_t>(seconds * 1e9);
    uint64_t writes = 0;
    int rounds = 0, left = 0, failed = 0;
    do {
        const bool random = rounds % 3 == 0;
        const std::string name =
            "fuzz-" + std::to_string(::getpid()) + "-" + std::to_string(rounds);
        RoundResult r = run_round(name, members, kAttackNs, random, rng);
        std::printf("round %d (%s): %llu writes, %d of %d members left the pool, %d failed\n",
                    rounds, random ? "random bytes" : "targeted fields",
                    static_cast<unsigned long long>(r.writes), r.left, members, r.failed);
        std::fflush(stdout);
        writes += r.writes;
        left += r.left;
        failed += r.failed;
        rounds++;
    } while (now_ns() + kAttackNs + kAfterNs < end);
    std::printf("pool-fuzz: seed %llu, %d rounds, %llu writes: %d members left a pool, %d "
                "failed\n",
                static_cast<unsigned long long>(seed), rounds,
                static_cast<unsigned long long>(writes), left, failed);
    return failed ? 1 : 0;
}
