/*
 * Shared-pool membership: liveness probes (a ring, O(members) per pool),
 * pool ids reserved for present vCPUs only and grown by hotplug, "no room"
 * messages that say what is free, vCPU unplug, and pool info that is never
 * left uninitialised.  All members live in this process (one pid); dead
 * members are faked with the pid of a reaped child.
 */
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core.h"
#include "pool_test_util.h"
#include "real_host.h"
#include "shared_pool.h"
#include "vsched-core.h"

namespace vsched::test {
namespace {

struct PoolFile {
    std::string name = unique_pool_name("t-", "member");
    ~PoolFile() { ::shm_unlink(pool_shm_path(name).c_str()); }
};

std::unique_ptr<SharedPool> attach(const std::string &name, int nr_vcpus, int nr_slots = 2)
{
    std::string err;
    auto sp = SharedPool::attach(name, nr_slots, 2 * kNsPerMs, nr_vcpus, now_ns(), &err);
    EXPECT_NE(sp, nullptr) << err;
    return sp;
}

/* A pid that no process has any more. */
int dead_pid()
{
    pid_t kid = ::fork();
    if (kid == 0) {
        ::_exit(0);
    }
    ::waitpid(kid, nullptr, 0);
    return kid;
}

void fake_dead(SharedPool &any, int member)
{
    any.shm().proc[member].pid = dead_pid();
}

/* A VM on a core of its own, recording the vCPUs it is asked to kick. */
struct Vm {
    std::vector<int> kicked;
    std::unique_ptr<RealHost> host;
    std::unique_ptr<Core> core;

    static void on_kick(void *o, int v) { static_cast<Vm *>(o)->kicked.push_back(v); }
    static void on_wake(void *, int) {}

    bool join(const std::string &pool, int nr_vcpus, int present, int pcpus, std::string *err)
    {
        RealHostCallbacks cb;
        cb.kick = on_kick;
        cb.wake = on_wake;
        cb.opaque = this;
        host = std::make_unique<RealHost>(nr_vcpus, cb);
        SharedPoolOptions opt;
        opt.reserve_vcpus = present;
        core = Core::create_shared(small_config(pcpus), pool, nr_vcpus, *host, err, opt);
        return core != nullptr;
    }
    bool start_private(int nr_vcpus, int pcpus)
    {
        RealHostCallbacks cb;
        cb.kick = on_kick;
        cb.wake = on_wake;
        cb.opaque = this;
        host = std::make_unique<RealHost>(nr_vcpus, cb);
        std::string err;
        core = Core::create(small_config(pcpus), nr_vcpus, *host, &err);
        return core != nullptr;
    }
    PoolMemberInfo self()
    {
        PoolMemberInfo out;
        for (int m = 0; m < kMaxMembers; m++) {
            if (core->pool_member(m, &out) && out.self) {
                return out;
            }
        }
        ADD_FAILURE() << "no member entry of our own";
        return out;
    }
};

/* ------------------------------------------------------------ liveness */

TEST(PoolLiveness, EachCheckReadsOneMemberNotAll)
{
    PoolFile f;
    std::vector<std::unique_ptr<SharedPool>> vms;
    constexpr int kVms = 16;
    for (int i = 0; i < kVms; i++) {
        vms.push_back(attach(f.name, 2));
        ASSERT_NE(vms.back(), nullptr);
    }
    uint64_t probes = 0;
    for (auto &vm : vms) {
        EXPECT_TRUE(vm->find_dead_members().empty());
        probes += vm->liveness_probes();
    }
    /* Every member checks its live successor only: 16 reads, not 16 * 15. */
    EXPECT_EQ(probes, static_cast<uint64_t>(kVms));
}

TEST(PoolLiveness, DeadMembersAreFoundByTheirLivePredecessor)
{
    PoolFile f;
    std::vector<std::unique_ptr<SharedPool>> vms;
    for (int i = 0; i < 5; i++) {
        vms.push_back(attach(f.name, 1));
        ASSERT_NE(vms.back(), nullptr);
    }
    const int b = vms[1]->member(), c = vms[2]->member();
    fake_dead(*vms[0], b);
    fake_dead(*vms[0], c);
    /* A walks past both dead neighbours to D. */
    EXPECT_EQ(vms[0]->find_dead_members(), (std::vector<int>{b, c}));
    EXPECT_EQ(vms[0]->liveness_probes(), 3u);
    /* D watches E only, E wraps around to A. */
    EXPECT_TRUE(vms[3]->find_dead_members().empty());
    EXPECT_TRUE(vms[4]->find_dead_members().empty());
    EXPECT_EQ(vms[3]->liveness_probes() + vms[4]->liveness_probes(), 2u);
    /* The last member before a dead one at the ring's end wraps. */
    fake_dead(*vms[0], vms[0]->member());
    EXPECT_EQ(vms[4]->find_dead_members(), (std::vector<int>{vms[0]->member(), b, c}));
}

TEST(PoolLiveness, JoinerKilledHalfWayIsSeenByEveryone)
{
    PoolFile f;
    auto a = attach(f.name, 1), b = attach(f.name, 1), c = attach(f.name, 1);
    ASSERT_TRUE(a && b && c);
    a->shm().proc[c->member()].pid = 0; /* active entry, no pid yet */
    EXPECT_EQ(a->find_dead_members(), std::vector<int>{c->member()});
    EXPECT_EQ(b->find_dead_members(), std::vector<int>{c->member()});
}

/* ------------------------------------------------- ids and hotplug */

TEST(PoolIds, AVmReservesIdsForItsPresentVcpusOnly)
{
    PoolFile f;
    Vm a, b;
    std::string err;
    ASSERT_TRUE(a.join(f.name, 4, 2, 2, &err)) << err; /* -smp 2,maxcpus=4 */
    ASSERT_TRUE(b.join(f.name, 2, 2, 2, &err)) << err;
    EXPECT_EQ(a.self().nr_vcpus, 2);
    EXPECT_EQ(a.self().base, 0);
    EXPECT_EQ(b.self().base, 2); /* right after A's two, not after four */
}

TEST(PoolIds, HotpluggedVcpuGrowsTheRangeOrIsRefusedSayingWhy)
{
    PoolFile f;
    Vm a, b;
    std::string err;
    ASSERT_TRUE(a.join(f.name, 4, 2, 1, &err)) << err;
    EXPECT_FALSE(a.core->acquire(2)); /* not plugged: no id, never a slot */
    ASSERT_TRUE(a.core->plug_vcpu(2, &err)) << err;
    EXPECT_EQ(a.self().nr_vcpus, 3);
    EXPECT_TRUE(a.core->acquire(2));
    ASSERT_TRUE(b.join(f.name, 2, 2, 1, &err)) << err;
    EXPECT_EQ(b.self().base, 3);
    EXPECT_FALSE(a.core->plug_vcpu(3, &err));
    EXPECT_NE(err.find("pool id 3"), std::string::npos) << err;
    EXPECT_NE(err.find("another VM's"), std::string::npos) << err;
    EXPECT_NE(err.find("free pool ids: 5..4095"), std::string::npos) << err;
    EXPECT_FALSE(a.core->plug_vcpu(4, &err)); /* beyond the VM's vCPUs */
    EXPECT_NE(err.find("beyond"), std::string::npos) << err;
    std::string why;
    EXPECT_TRUE(a.core->check_invariants(&why)) << why;
}

TEST(PoolIds, NoRoomNamesTheFreeIdsAndWhy)
{
    PoolFile f;
    auto a = attach(f.name, 2000), b = attach(f.name, 1000), c = attach(f.name, 1000);
    ASSERT_TRUE(a && b && c);
    {
        /* B leaves: 1000 ids free in the middle, 96 at the end. */
        Counters ctr;
        SpinDetector spin(1, 1, 1, 1, 2);
        Effects fx;
        b->lock();
        Scheduler s(b->state(), b->member(), b->nr_slots(), b->slice_ns(), ctr, spin);
        s.begin(now_ns(), &fx);
        s.evict_member(b->member());
        b->leave_locked();
        b->unlock();
    }
    std::string err;
    auto d = SharedPool::attach(f.name, 2, 2 * kNsPerMs, 1500, now_ns(), &err);
    EXPECT_EQ(d, nullptr);
    EXPECT_NE(err.find("no room for 1500"), std::string::npos) << err;
    EXPECT_NE(err.find("free pool ids: 2000..2999, 4000..4095 (largest run: 1000"),
              std::string::npos)
        << err;
    EXPECT_NE(err.find("contiguous"), std::string::npos) << err;
}

/* ------------------------------------------------------------ unplug */

TEST(VcpuUnplug, SlotAndQueuePlaceGoAndNoKickFollows)
{
    for (bool shared : {false, true}) {
        SCOPED_TRACE(shared ? "shared pool" : "private pool");
        PoolFile f;
        Vm a;
        std::string err;
        ASSERT_TRUE(shared ? a.join(f.name, 3, 3, 1, &err) : a.start_private(3, 1)) << err;
        Core &c = *a.core;
        ASSERT_TRUE(c.acquire(1));  /* the vCPU to unplug holds the slot */
        EXPECT_FALSE(c.acquire(2)); /* queued */
        EXPECT_FALSE(c.acquire(0)); /* queued */
        c.unplug_vcpu(2);           /* a queued vCPU leaves the queue */
        PoolInfo pi;
        ASSERT_TRUE(c.pool_info(&pi));
        EXPECT_EQ(pi.queue_len, 1);
        c.unplug_vcpu(1); /* the holder: its slot goes to vCPU 0 */
        VcpuInfo vi;
        ASSERT_TRUE(c.vcpu_info(1, &vi));
        EXPECT_EQ(state_of(vi), VcpuState::kStopped);
        ASSERT_TRUE(c.vcpu_info(0, &vi));
        EXPECT_EQ(state_of(vi), VcpuState::kRunning);
        ASSERT_TRUE(c.pool_info(&pi));
        EXPECT_EQ(pi.queue_len, 0);
        /* Slices expire with a waiter: only the holder (0) is ever kicked. */
        EXPECT_FALSE(c.acquire(2));
        a.kicked.clear();
        for (int i = 0; i < 5; i++) {
            ::usleep(3000);
            c.tick();
        }
        for (int v : a.kicked) {
            EXPECT_EQ(v, 0);
        }
        EXPECT_FALSE(a.kicked.empty());
        std::string why;
        EXPECT_TRUE(c.check_invariants(&why)) << why;
        /* Plugged again, the same number runs again. */
        c.release(2, ReleaseReason::kStop);
        c.release(0, ReleaseReason::kStop);
        ASSERT_TRUE(c.plug_vcpu(1, &err)) << err;
        EXPECT_TRUE(c.acquire(1));
    }
}

TEST(VcpuUnplug, FacadeEntryPoints)
{
    VschedConfig cfg;
    vsched_config_defaults(&cfg);
    cfg.pcpus = 1;
    VschedHostOps ops{};
    char err[256] = "";
    VschedCore *core = vsched_core_new(&cfg, 2, &ops, nullptr, err, sizeof err);
    ASSERT_NE(core, nullptr) << err;
    EXPECT_TRUE(vsched_vcpu_plug(core, 1, err, sizeof err)) << err;
    EXPECT_FALSE(vsched_vcpu_plug(core, 2, err, sizeof err));
    EXPECT_NE(std::strstr(err, "beyond"), nullptr) << err;
    ASSERT_TRUE(vsched_acquire(core, 1));
    vsched_vcpu_unplug(core, 1);
    VschedPoolInfo pi;
    ASSERT_TRUE(vsched_pool_info(core, &pi));
    EXPECT_EQ(pi.free_slots, 1);
    vsched_vcpu_unplug(core, 7); /* out of range: ignored */
    vsched_core_free(core);
}

TEST(VcpuUnplug, SharedFacadeReservesPresentVcpus)
{
    PoolFile f;
    VschedConfig cfg;
    vsched_config_defaults(&cfg);
    cfg.pcpus = 2;
    VschedHostOps ops{};
    char err[256] = "";
    EXPECT_EQ(vsched_core_new_shared_present(&cfg, f.name.c_str(), 4, 5, &ops, nullptr, err,
                                             sizeof err),
              nullptr);
    EXPECT_NE(std::strstr(err, "1..4"), nullptr) << err;
    VschedCore *a = vsched_core_new_shared_present(&cfg, f.name.c_str(), 4, 2, &ops, nullptr,
                                                   err, sizeof err);
    ASSERT_NE(a, nullptr) << err;
    VschedCore *b = vsched_core_new_shared(&cfg, f.name.c_str(), 1, &ops, nullptr, err, sizeof err);
    ASSERT_NE(b, nullptr) << err;
    EXPECT_TRUE(vsched_vcpu_plug(a, 1, err, sizeof err)) << err;
    EXPECT_FALSE(vsched_vcpu_plug(a, 2, err, sizeof err)); /* id 2 is B's */
    EXPECT_NE(std::strstr(err, "no id for vCPU 2"), nullptr) << err;
    vsched_core_free(b);
    vsched_core_free(a);
}

/* ------------------------------------------------------------ pool info */

TEST(PoolInfoFacade, FailureLeavesNothingUninitialised)
{
    VschedPoolInfo info;
    std::memset(&info, 0xab, sizeof info);
    EXPECT_FALSE(vsched_pool_info(nullptr, &info));
    const auto *bytes = reinterpret_cast<const unsigned char *>(&info);
    for (size_t i = 0; i < sizeof info; i++) {
        ASSERT_EQ(bytes[i], 0) << "byte " << i;
    }
    EXPECT_FALSE(vsched_pool_info(nullptr, nullptr));
}

} // namespace
} // namespace vsched::test
