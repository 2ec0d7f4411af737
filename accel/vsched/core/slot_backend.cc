/* vsched core: the private and the shared slot backends. */
#include "slot_backend.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "core.h"

namespace vsched {

/* ------------------------------------------------------ PrivateSlots */

int PrivateSlots::mailbox_dispatch(int, uint64_t timeout_ns, const std::atomic<bool> &stop,
                                   HostInterface &, Counters &)
{
    /* Nothing arrives; after leaving a shared pool, do not let a
     * mailbox loop spin. */
    if (after_detach_ && timeout_ns > 0 && !stop.load()) {
        std::this_thread::sleep_for(
            std::chrono::nanoseconds(std::min<uint64_t>(timeout_ns, kReapIntervalNs)));
    }
    return 0;
}

void PrivateSlots::describe_locked(VschedPoolInfo *) {}

int PrivateSlots::member_pid_locked(int)
{
    return static_cast<int>(::getpid());
}

/* ------------------------------------------------------- SharedSlots */

void SharedSlots::recover_locked(Scheduler &sched, Counters &ctr)
{
    ctr.add(Ctr::pool_owner_dead);
    sp_->recover_locked(sched, &ctr);
}

int SharedSlots::reap_locked(Scheduler &sched, const std::vector<int> &candidates,
                             Counters &ctr)
{
    return sp_->reap_locked(sched, candidates, &ctr);
}

void SharedSlots::post(const Effects &fx, Counters &ctr)
{
    if (!fx.has_remote()) {
        return;
    }
    int w = 0, k = 0;
    sp_->post(fx, &w, &k);
    ctr.add(Ctr::pool_remote_wakes, static_cast<uint64_t>(w));
    ctr.add(Ctr::pool_remote_kicks, static_cast<uint64_t>(k));
}

void SharedSlots::leave_locked(Scheduler &sched)
{
    sched.evict_member(sp_->member());
    sp_->leave_locked();
}

void SharedSlots::abandon(Scheduler &sched, uint64_t now)
{
    /* Best effort: give our slots and queue entries back, if the lock is
     * free now; the pool's checks keep this memory-safe. */
    if (!sp_->try_lock()) {
        return;
    }
    try {
        Effects fx;
        sched.begin(now, &fx);
        sched.evict_member(sp_->member());
        sp_->leave_locked();
        sp_->post(fx, nullptr, nullptr);
    } catch (const PoolCorrupt &) {
    }
    sp_->unlock();
}

namespace {
/*
 * Slot holders past their deadline whose thread is stopped ((global id,
 * thread id) pairs).  Reads at most one /proc file per slot, and only for
 * overdue holders.
 */
std::vector<std::pair<int, int32_t>> find_stopped_holders(const PoolState &s, int nr_slots,
                                                          uint64_t now)
{
    std::vector<std::pair<int, int32_t>> out;
    for (int sl = 0; sl < nr_slots && sl < kMaxSlots; sl++) {
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
} // namespace

bool SharedSlots::survey(const Scheduler &sched, int nr_slots, uint64_t now, bool full_check,
                         Counters &ctr, MemberSurvey *out)
{
    out->dead = sp_->find_dead_members(&out->stopped);
    out->stopped_threads = find_stopped_holders(sched.state(), nr_slots, now);
    if (full_check && sp_->check_file_lost()) {
        ctr.add(Ctr::pool_file_lost);
        std::fprintf(stderr,
                     "vsched: pool '%s': its file /dev/shm%s was removed or replaced from "
                     "outside (rm, or systemd-logind RemoveIPC at logout); VMs started now "
                     "make a new pool of that name and do not share slots with this one\n",
                     sp_->name().c_str(), pool_shm_path(sp_->name()).c_str());
    }
    return true;
}

int SharedSlots::mailbox_dispatch(int nr_vcpus, uint64_t timeout_ns,
                                  const std::atomic<bool> &stop, HostInterface &host,
                                  Counters &ctr)
{
    auto deliver = [&] {
        return sp_->drain(nr_vcpus, [&](int kind, int v) {
            if (kind == 0) {
                ctr.add(Ctr::pool_mailbox_wakes);
                host.wake(v);
            } else {
                ctr.add(Ctr::pool_mailbox_kicks);
                host.kick(v);
            }
        });
    };
    uint32_t seq = sp_->mailbox_seq();
    int n = deliver();
    if (n == 0 && timeout_ns > 0 && !stop.load()) {
        sp_->wait_mailbox(seq, std::min<uint64_t>(timeout_ns, kReapIntervalNs));
        n = deliver();
    }
    return n;
}

void SharedSlots::describe_locked(VschedPoolInfo *out)
{
    std::snprintf(out->name, sizeof out->name, "%s", sp_->name().c_str());
    out->stats = sp_->shm().stats;
}

} // namespace vsched
