/*
 * A corrupted shared pool never crashes, hangs or starves a member.
 *
 * Each case sets up two VMs on one pool (one holding both slots, one with
 * a queued and a halted vCPU), then writes one bad value into the pool
 * file through a raw mapping, as a buggy or hostile member could.  The two
 * VMs then exercise every entry point and must make progress afterwards:
 * either the pool still works, or a VM detected the corruption, left the
 * pool with one error line and runs on private slots.  The work runs in a
 * forked child so a crash or a hang is a test failure, not a lost run.
 */
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

#include "core.h"
#include "real_host.h"
#include "pool_test_util.h"
#include "shared_pool.h"

namespace vsched::test {
namespace {

std::string unique_name(const char *tag)
{
    return unique_pool_name("c-", tag);
}

struct Vm {
    std::unique_ptr<RealHost> host;
    std::unique_ptr<Core> core;
    bool join(const std::string &pool, int nr, int pcpus, std::string *err,
              const SharedPoolOptions &opt = {})
    {
        host = std::make_unique<RealHost>(nr, RealHostCallbacks{});
        core = Core::create_shared(small_config(pcpus), pool, nr, *host, err, opt);
        return core != nullptr;
    }
    int members()
    {
        PoolInfo i;
        core->pool_info(&i);
        return i.members;
    }
};

/* Every entry point once, as QEMU's threads would call them. */
void exercise(Core &c, int nr)
{
    for (int v = 0; v < nr; v++) {
        c.acquire(v);
        c.inject_spin(v, 0);
        c.after_exec(v, 0);
        VcpuInfo vi;
        c.vcpu_info(v, &vi);
    }
    c.tick();
    c.poll_members(true);
    c.mailbox_dispatch(0);
    PoolInfo pi;
    c.pool_info(&pi);
    for (int m = 0; m < kMaxMembers; m++) {
        PoolMemberInfo mi;
        c.pool_member(m, &mi);
    }
    PoolState snap;
    c.snapshot_pool(&snap);
}

/* Every vCPU of c gets a slot again and again within a bounded time. */
bool makes_progress(Core &c, int nr, uint64_t budget_ns)
{
    const uint64_t give_up = now_ns() + budget_ns;
    for (int round = 0; round < 50; round++) {
        for (int v = 0; v < nr; v++) {
            while (!c.acquire(v)) {
                if (now_ns() > give_up) {
                    std::fprintf(stderr, "no progress: vCPU %d round %d\n", v, round);
                    return false;
                }
                c.tick();
                c.poll_members(true);
                c.mailbox_dispatch(0);
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
            c.release(v, ReleaseReason::kHalt);
        }
    }
    return true;
}

struct Setup {
    ShmPool *raw = nullptr;
    int a_base = 0, b_base = 0, a_member = 0, b_member = 0;
};

/*
 * Child: VMs a and b (2 vCPUs each, 2 slots); b holds both slots, a's
 * vCPU 0 is queued and vCPU 1 halted.  corrupt() writes into the raw
 * mapping; then both VMs run every entry point and must make progress.
 */
int corrupt_and_run(const std::string &name, const std::function<void(Setup &)> &corrupt)
{
    Vm a, b;
    std::string err;
    if (!a.join(name, 2, 2, &err) || !b.join(name, 2, 2, &err)) {
        std::fprintf(stderr, "join: %s\n", err.c_str());
        return 2;
    }
    b.core->acquire(0);
    b.core->acquire(1);
    a.core->release(1, ReleaseReason::kHalt);
    a.core->acquire(0);
    int fd = ::shm_open(pool_shm_path(name).c_str(), O_RDWR, 0);
    void *m = ::mmap(nullptr, sizeof(ShmPool), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (m == MAP_FAILED) {
        return 3;
    }
    Setup s;
    s.raw = static_cast<ShmPool *>(m);
    PoolInfo pi;
    a.core->pool_info(&pi);
    s.a_member = pi.self;
    b.core->pool_info(&pi);
    s.b_member = pi.self;
    s.a_base = s.raw->pool.member[s.a_member].base;
    s.b_base = s.raw->pool.member[s.b_member].base;
    corrupt(s);
    exercise(*a.core, 2);
    exercise(*b.core, 2);
    for (int v = 0; v < 2; v++) {
        a.core->release(v, ReleaseReason::kStop);
        b.core->release(v, ReleaseReason::kStop);
    }
    if (!makes_progress(*a.core, 2, 3'000'000'000ull) ||
        !makes_progress(*b.core, 2, 3'000'000'000ull)) {
        return 4;
    }
    uint64_t detached = a.core->counters()[Ctr::pool_detached] +
                        b.core->counters()[Ctr::pool_detached];
    std::printf("detached: %llu\n", static_cast<unsigned long long>(detached));
    return detached <= 2 ? 0 : 5;
}

std::string read_all(const std::string &path)
{
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

int count_lines_with(const std::string &text, const std::string &needle)
{
    int n = 0;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        n += line.find(needle) != std::string::npos;
    }
    return n;
}

/* Fork fn; the child's stderr goes to *err_text.  Returns its exit code,
 * 128 + signal if killed, or -1 if it had to be killed after timeout_ns. */
int run_child(const std::function<int()> &fn, uint64_t timeout_ns, std::string *err_text)
{
    char path[] = "/tmp/vsched-corrupt-XXXXXX";
    int efd = ::mkstemp(path);
    pid_t pid = fork_child(fn, efd);
    ::close(efd);
    int st = 0, rc = -1;
    const uint64_t give_up = now_ns() + timeout_ns;
    for (;;) {
        pid_t r = ::waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        if (now_ns() > give_up) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &st, 0);
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    *err_text = read_all(path);
    ::unlink(path);
    return rc;
}

struct Case {
    const char *label;
    std::function<void(Setup &)> corrupt;
};

class PoolCorruption : public ::testing::TestWithParam<int> {};

const Case kCases[] = {
    {"none", [](Setup &) {}},
    {"slot_owner_huge", [](Setup &s) { s.raw->pool.slot_owner[0] = 1 << 28; }},
    {"slot_owner_negative", [](Setup &s) { s.raw->pool.slot_owner[1] = -5; }},
    {"slot_of_huge", [](Setup &s) { s.raw->pool.slot_of[s.b_base] = 1 << 28; }},
    {"slot_of_of_queued", [](Setup &s) { s.raw->pool.slot_of[s.a_base] = 1 << 20; }},
    {"q_head_huge", [](Setup &s) { s.raw->pool.q_head = 1 << 28; }},
    {"q_tail_negative", [](Setup &s) { s.raw->pool.q_tail = -9; }},
    {"q_prev_huge", [](Setup &s) { s.raw->pool.q_prev[s.a_base] = 1 << 28; }},
    {"q_next_huge", [](Setup &s) { s.raw->pool.q_next[s.a_base] = 1 << 28; }},
    {"q_len_negative", [](Setup &s) { s.raw->pool.q_len = -100; }},
    {"free_top_huge", [](Setup &s) { s.raw->pool.free_top = 1 << 28; }},
    {"free_top_negative", [](Setup &s) { s.raw->pool.free_top = -3; }},
    {"free_stack_huge",
     [](Setup &s) {
         s.raw->pool.free_top = 1;
         s.raw->pool.free_stack[0] = 1 << 28;
     }},
    {"state_garbage", [](Setup &s) { s.raw->pool.state[s.a_base] = 200; }},
    {"state_running_without_slot",
     [](Setup &s) { s.raw->pool.state[s.a_base + 1] = static_cast<uint8_t>(VcpuState::kRunning); }},
    {"vcpu_member_huge", [](Setup &s) { s.raw->pool.vcpu_member[s.b_base] = 30000; }},
    {"member_base_huge", [](Setup &s) { s.raw->pool.member[s.b_member].base = 1 << 28; }},
    {"member_nr_vcpus_huge", [](Setup &s) { s.raw->pool.member[s.b_member].nr_vcpus = 1 << 28; }},
    {"member_base_negative", [](Setup &s) { s.raw->pool.member[s.a_member].base = -1000; }},
    {"last_boosted_huge",
     [](Setup &s) { s.raw->pool.member[s.a_member].last_boosted_vcpu = 1 << 28; }},
    {"nr_slots_huge", [](Setup &s) { s.raw->pool.nr_slots = 1 << 28; }},
    {"nr_vcpus_huge", [](Setup &s) { s.raw->pool.nr_vcpus = 1 << 28; }},
    {"nr_members_garbage", [](Setup &s) { s.raw->pool.nr_members = -77; }},
    {"wake_bits_all", [](Setup &s) {
         std::memset(s.raw->proc[s.a_member].wake_bits, 0xff,
                     sizeof s.raw->proc[s.a_member].wake_bits);
         std::memset(s.raw->proc[s.a_member].kick_bits, 0xff,
                     sizeof s.raw->proc[s.a_member].kick_bits);
     }},
    {"all_members_active", [](Setup &s) {
         for (int m = 0; m < kMaxMembers; m++) {
             s.raw->pool.member[m].active = 1;
         }
     }},
    {"lock_word_garbage",
     [](Setup &s) { std::memset(&s.raw->lock, 0xa5, sizeof s.raw->lock); }},
    {"lock_held_by_live_stranger",
     [](Setup &s) {
         /* The lock word (its first 4 bytes) says pid 1 holds it. */
         const uint32_t init_pid = 1;
         std::memset(&s.raw->lock, 0, sizeof s.raw->lock);
         std::memcpy(&s.raw->lock, &init_pid, sizeof init_pid);
     }},
    {"whole_state_random", [](Setup &s) {
         uint64_t x = 0x9e3779b97f4a7c15ull;
         auto *bytes = reinterpret_cast<unsigned char *>(&s.raw->pool);
         for (size_t i = 0; i < sizeof s.raw->pool; i++) {
             x ^= x << 13;
             x ^= x >> 7;
             x ^= x << 17;
             bytes[i] = static_cast<unsigned char>(x);
         }
     }},
};

TEST_P(PoolCorruption, MembersGoOnOrDetachWithOneLine)
{
    const Case &c = kCases[GetParam()];
    std::string name = unique_name(c.label);
    PoolFileGuard guard{name};
    std::string err;
    int rc = run_child([&] { return corrupt_and_run(name, c.corrupt); }, 30'000'000'000ull, &err);
    EXPECT_EQ(rc, 0) << c.label << ": child " << (rc < 0 ? "hung" : "failed") << "\n" << err;
    /* One error line per VM that left the pool, none otherwise. */
    int lines = count_lines_with(err, "left the pool");
    EXPECT_LE(lines, 2) << err;
    std::printf("%s: %d VM(s) left the pool\n", c.label, lines);
    if (lines > 0) {
        EXPECT_NE(err.find("corrupt"), std::string::npos) << err;
    }
}

INSTANTIATE_TEST_SUITE_P(EveryField, PoolCorruption,
                         ::testing::Range(0, static_cast<int>(std::size(kCases))),
                         [](const ::testing::TestParamInfo<int> &i) {
                             return std::string(kCases[i.param].label);
                         });

/* ------------------------------------------------------------------ */
/* Lock holders that die or stop, torn joins, removed files           */

ShmPool *map_pool(const std::string &name)
{
    int fd = ::shm_open(pool_shm_path(name).c_str(), O_RDWR, 0);
    if (fd < 0) {
        return nullptr;
    }
    void *m = ::mmap(nullptr, sizeof(ShmPool), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    return m == MAP_FAILED ? nullptr : static_cast<ShmPool *>(m);
}

uint32_t gettid_u32()
{
    return static_cast<uint32_t>(::syscall(SYS_gettid));
}

/* Fork a process that takes the pool lock as SharedPool::lock() does, runs
 * torn(), then dies (SIGKILL) or stops (SIGSTOP). */
pid_t lock_holder(const std::string &name, int sig, const std::function<void(ShmPool &)> &torn)
{
    pid_t pid = ::fork();
    if (pid == 0) {
        ShmPool *p = map_pool(name);
        if (!p) {
            ::_exit(2);
        }
        p->lock.word = gettid_u32();
        torn(*p);
        ::raise(sig);
        ::_exit(0);
    }
    int st = 0;
    if (sig == SIGSTOP) {
        ::waitpid(pid, &st, WUNTRACED);
    } else {
        ::waitpid(pid, &st, 0);
    }
    return pid;
}

TEST(PoolRobustness, LastMemberDyingInsideLeaveLeavesAUsablePool)
{
    std::string name = unique_name("leave");
    PoolFileGuard guard{name};
    std::string err;
    int rc = run_child([&] {
        {
            Vm a;
            std::string e;
            if (!a.join(name, 2, 2, &e)) {
                return 2;
            }
            /* a's process "dies" inside leave: its entry is gone, the lock
             * is held by a dead thread and the file is still there. */
            lock_holder(name, SIGKILL, [](ShmPool &p) {
                for (int m = 0; m < kMaxMembers; m++) {
                    if (p.pool.member[m].active) {
                        p.pool.member[m].active = 0;
                        for (int g = 0; g < kMaxVcpus; g++) {
                            p.pool.vcpu_member[g] = static_cast<int16_t>(kNone);
                        }
                    }
                }
                p.pool.nr_members = 0;
            });
            a.core.release(); /* its process is gone: no destructor */
        }
        for (int k = 0; k < 2; k++) {
            Vm b;
            std::string e;
            if (!b.join(name, 2, 2, &e)) {
                std::fprintf(stderr, "join %d: %s\n", k, e.c_str());
                return 3;
            }
            if (!b.core->acquire(0) || !b.core->acquire(1)) {
                return 4;
            }
        }
        return 0;
    }, 20'000'000'000ull, &err);
    EXPECT_EQ(rc, 0) << err;
}

TEST(PoolRobustness, JoinOnAFileMarkedRemovedDoesNotSpin)
{
    std::string name = unique_name("removed");
    PoolFileGuard guard{name};
    std::string err;
    int rc = run_child([&] {
        Vm a;
        std::string e;
        if (!a.join(name, 1, 2, &e)) {
            return 2;
        }
        /* The last member set `removed` and died before unlinking. */
        ShmPool *p = map_pool(name);
        p->hdr.removed = 1;
        Vm b;
        const uint64_t t0 = now_ns();
        if (!b.join(name, 1, 2, &e)) {
            std::fprintf(stderr, "join: %s\n", e.c_str());
            return 3;
        }
        std::printf("joined after %.1f ms\n", static_cast<double>(now_ns() - t0) / 1e6);
        return b.core->acquire(0) ? 0 : 4;
    }, 10'000'000'000ull, &err);
    EXPECT_EQ(rc, 0) << (rc < 0 ? "join spun for 10 s" : err);
}

TEST(PoolRobustness, StoppedLockHolderDoesNotBlockForever)
{
    std::string name = unique_name("stoplock");
    PoolFileGuard guard{name};
    std::string err;
    int rc = run_child([&] {
        Vm a;
        std::string e;
        if (!a.join(name, 2, 2, &e)) {
            return 2;
        }
        pid_t holder = lock_holder(name, SIGSTOP, [](ShmPool &) {});
        const uint64_t t0 = now_ns();
        bool got = a.core->acquire(0);
        const double waited = static_cast<double>(now_ns() - t0) / 1e9;
        std::printf("acquire returned after %.2f s, detached %d\n", waited, a.core->detached());
        ::kill(holder, SIGKILL);
        ::waitpid(holder, nullptr, 0);
        return got && a.core->detached() ? 0 : 3;
    }, 30'000'000'000ull, &err);
    EXPECT_EQ(rc, 0) << (rc < 0 ? "blocked for 30 s" : err);
    EXPECT_EQ(count_lines_with(err, "left the pool"), 1) << err;
    EXPECT_NE(err.find("lock is held by thread"), std::string::npos) << err;
}

TEST(PoolRobustness, TornJoinIsReaped)
{
    std::string name = unique_name("tornjoin");
    PoolFileGuard guard{name};
    std::string err;
    int rc = run_child([&] {
        Vm a;
        std::string e;
        if (!a.join(name, 2, 2, &e)) {
            return 2;
        }
        /* A VM killed inside join: member entry written, no pid yet. */
        lock_holder(name, SIGKILL, [](ShmPool &p) {
            const int m = 5, base = 100;
            p.pool.member[m] = MemberState{};
            p.pool.member[m].active = 1;
            p.pool.member[m].base = base;
            p.pool.member[m].nr_vcpus = 2;
            for (int g = base; g < base + 2; g++) {
                p.pool.vcpu_member[g] = m;
            }
            p.pool.nr_members++;
        });
        a.core->acquire(0); /* recovers the lock */
        const uint64_t give_up = now_ns() + 2'000'000'000ull;
        PoolInfo pi;
        do {
            a.core->poll_members(true);
            a.core->pool_info(&pi);
        } while (pi.members != 1 && now_ns() < give_up);
        std::printf("members %d\n", pi.members);
        return pi.members == 1 && !a.core->detached() ? 0 : 3;
    }, 20'000'000'000ull, &err);
    EXPECT_EQ(rc, 0) << err;
}

TEST(PoolRobustness, RecoveryThatThrowsReleasesTheLock)
{
    std::string name = unique_name("throw");
    PoolFileGuard guard{name};
    std::string err;
    int rc = run_child([&] {
        Vm a;
        std::string e;
        if (!a.join(name, 2, 2, &e)) {
            return 2;
        }
        /* Dies holding the lock, leaving a member whose range is garbage:
         * the recovery's reap throws. */
        lock_holder(name, SIGKILL, [](ShmPool &p) {
            p.pool.member[7].active = 1;
            p.pool.member[7].base = 1 << 28;
            p.pool.member[7].nr_vcpus = 4;
            p.proc[7].pid = 0;
        });
        a.core->acquire(0);
        ShmPool *p = map_pool(name);
        uint32_t word = __atomic_load_n(&p->lock.word, __ATOMIC_RELAXED);
        std::printf("lock word after the failed recovery: %#x\n", word);
        return word == 0 && a.core->detached() && a.core->acquire(1) ? 0 : 3;
    }, 20'000'000'000ull, &err);
    EXPECT_EQ(rc, 0) << err;
}

TEST(PoolFiles, FullDevShmGivesAnErrorNotSigbus)
{
    std::string name = unique_name("full");
    std::string err;
    int rc = run_child([&] {
        /* A private mount namespace with a /dev/shm too small for a pool. */
        if (::unshare(CLONE_NEWNS) != 0 ||
            ::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
            ::mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=64k") != 0) {
            std::fprintf(stderr, "cannot make a small /dev/shm (needs root): %s\n",
                         std::strerror(errno));
            return 7;
        }
        Vm a;
        std::string e;
        if (a.join(name, 2, 2, &e)) {
            return 3;
        }
        std::fprintf(stderr, "%s\n", e.c_str());
        struct stat st;
        if (::stat(("/dev/shm" + pool_shm_path(name)).c_str(), &st) == 0) {
            std::fprintf(stderr, "a half-made pool file was left\n");
            return 4;
        }
        return e.find("/dev/shm is full") != std::string::npos ? 0 : 5;
    }, 20'000'000'000ull, &err);
    EXPECT_EQ(rc, 0) << err;
}

TEST(PoolFiles, OutsideUnlinkIsReportedOnceAndAnotherPoolIsNeverUnlinked)
{
    std::string name = unique_name("rm");
    PoolFileGuard guard{name};
    const std::string path = "/dev/shm" + pool_shm_path(name);
    std::string err;
    int rc = run_child([&] {
        auto a = std::make_unique<Vm>(), b = std::make_unique<Vm>();
        std::string e;
        if (!a->join(name, 1, 2, &e) || !b->join(name, 1, 2, &e)) {
            return 2;
        }
        ::unlink(path.c_str()); /* rm, or RemoveIPC at logout */
        for (int i = 0; i < 3; i++) {
            a->core->poll_members(true);
            b->core->poll_members(true);
        }
        if (a->core->counters()[Ctr::pool_file_lost] != 1 ||
            b->core->counters()[Ctr::pool_file_lost] != 1) {
            return 3;
        }
        Vm c; /* makes a new pool of the same name */
        if (!c.join(name, 1, 2, &e)) {
            return 4;
        }
        a.reset();
        b.reset(); /* the old pool's last member */
        struct stat st;
        if (::stat(path.c_str(), &st) != 0) {
            std::fprintf(stderr, "the old pool's last member unlinked the new pool\n");
            return 5;
        }
        return c.members() == 1 ? 0 : 6;
    }, 20'000'000'000ull, &err);
    EXPECT_EQ(rc, 0) << err;
    EXPECT_EQ(count_lines_with(err, "was removed or replaced from outside"), 2) << err;
}

TEST(PoolFiles, JoinFromAnotherPidNamespaceIsRefused)
{
    std::string name = unique_name("pidns");
    PoolFileGuard guard{name};
    std::string err;
    int rc = run_child([&] {
        Vm a;
        std::string e;
        if (!a.join(name, 2, 2, &e)) {
            return 2;
        }
        if (::unshare(CLONE_NEWPID) != 0) {
            std::fprintf(stderr, "cannot make a pid namespace (needs root): %s\n",
                         std::strerror(errno));
            return 7;
        }
        pid_t kid = ::fork(); /* pid 1 of the new namespace */
        if (kid == 0) {
            Vm b;
            std::string be;
            if (b.join(name, 2, 2, &be)) {
                ::_exit(3);
            }
            std::fprintf(stderr, "%s\n", be.c_str());
            ::_exit(be.find("another pid namespace") != std::string::npos ? 0 : 4);
        }
        int st = 0;
        ::waitpid(kid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            return 5;
        }
        return a.members() == 1 ? 0 : 6; /* nobody reaped */
    }, 20'000'000'000ull, &err);
    EXPECT_EQ(rc, 0) << err;
}

TEST(PoolFiles, AnotherUsersFileDoesNotBlockTheName)
{
    std::string name = unique_name("peruser");
    PoolFileGuard guard{name};
    const uid_t other = ::getuid() + 12345;
    /* Another user's pool of the same name, and a file at the name alone
     * (where pools used to live): neither is ours. */
    const std::string theirs[] = {"/dev/shm/vsched-" + std::to_string(other) + "-" + name,
                                  "/dev/shm/vsched-" + name};
    for (const std::string &path : theirs) {
        int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
        ASSERT_GE(fd, 0) << path;
        ASSERT_EQ(::write(fd, "not yours", 9), 9);
        ::close(fd);
        ASSERT_EQ(::chown(path.c_str(), other, static_cast<gid_t>(-1)), 0)
            << "needs root: " << std::strerror(errno);
    }
    EXPECT_NE(pool_shm_path(name).find("-" + std::to_string(::getuid()) + "-"),
              std::string::npos);
    {
        Vm a;
        std::string e;
        EXPECT_TRUE(a.join(name, 1, 1, &e)) << e;
    }
    for (const std::string &path : theirs) {
        struct stat st;
        EXPECT_EQ(::stat(path.c_str(), &st), 0) << path << " was removed";
        ::unlink(path.c_str());
    }
}

} // namespace
} // namespace vsched::test
