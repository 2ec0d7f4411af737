/*
 * vsched core: where a core's slots live, behind one interface.
 *
 * PrivateSlots: this VM alone; the pool is the scheduler's own memory, the
 * lock is the core's mutex only, nothing is posted, nobody else to watch.
 * SharedSlots: a pool in shared memory (shared_pool.h): its lock, other
 * members' mailboxes, their liveness, leaving.  Core calls the same
 * methods whichever it has (and swaps a corrupt SharedSlots for a
 * PrivateSlots at run time), so it never branches on "shared".
 *
 * Every *_locked method REQUIRES the core mutex and lock() held, the
 * scheduler begun (Scheduler::begin).
 */
#ifndef VSCHED_CORE_SLOT_BACKEND_H
#define VSCHED_CORE_SLOT_BACKEND_H

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "counters.h"
#include "effects.h"
#include "host.h"
#include "scheduler.h"
#include "shared_pool.h"
#include "vsched-core.h"

namespace vsched {

/* What a liveness check found without the lock (shared pools). */
struct MemberSurvey {
    std::vector<int> dead;
    std::vector<int> stopped;
    std::vector<std::pair<int, int32_t>> stopped_threads; /* (global id, tid) */
    bool empty() const { return dead.empty() && stopped.empty() && stopped_threads.empty(); }
};

class SlotBackend {
public:
    virtual ~SlotBackend() = default;

    /* Slots shared with other VMs (false also after leaving a corrupt pool). */
    virtual bool shared() const = 0;
    /* The pool's name ("" for a private pool). */
    virtual std::string name() const = 0;
    /* The shared pool (virtual time reaches it), or null. */
    virtual SharedPool *shared_pool() { return nullptr; }

    /* The lock section's second lock (after the core mutex).  lock():
     * true if its previous holder died holding it (call recover_locked
     * before unlock).  Throws PoolCorrupt if it cannot be had. */
    virtual bool lock() = 0;
    virtual void unlock() = 0;
    /* After lock() returned true: repair the state, reap the dead. */
    virtual void recover_locked(Scheduler &sched, Counters &ctr) = 0;
    /* Evict the candidates that are (still) dead.  Returns how many. */
    virtual int reap_locked(Scheduler &sched, const std::vector<int> &candidates,
                            Counters &ctr) = 0;

    /* Post the effects meant for other VMs (after the lock is dropped). */
    virtual void post(const Effects &fx, Counters &ctr) = 0;
    /* Leave at exit (under the lock): our vCPUs go, the last member
     * removes the pool. */
    virtual void leave_locked(Scheduler &sched) = 0;
    /* Leave a corrupt pool without waiting for its lock (best effort). */
    virtual void abandon(Scheduler &sched, uint64_t now) = 0;

    /* Liveness, without the lock: false if there is nothing to watch.
     * full_check: also see whether the pool file is still ours. */
    virtual bool survey(const Scheduler &sched, int nr_slots, uint64_t now, bool full_check,
                        Counters &ctr, MemberSurvey *out) = 0;

    /* Mailbox: deliver pending wakes/kicks for our nr_vcpus to host,
     * waiting up to timeout_ns.  runs_mailbox(): whether a mailbox loop
     * has anything to wait for (a private pool's loop returns at once). */
    virtual bool runs_mailbox() const = 0;
    virtual int mailbox_dispatch(int nr_vcpus, uint64_t timeout_ns,
                                 const std::atomic<bool> &stop, HostInterface &host,
                                 Counters &ctr) = 0;
    virtual void interrupt_mailbox() = 0;

    /* Introspection (under the lock). */
    virtual void describe_locked(VschedPoolInfo *out) = 0;
    virtual int member_pid_locked(int m) = 0;
    /* Every enqueue and dequeue of the pool is counted by this core (a
     * private pool that was never shared). */
    virtual bool counts_whole_queue() const = 0;
};

/* This VM alone.  after_detach: it left a corrupt shared pool (its
 * mailbox loop then sleeps instead of returning). */
class PrivateSlots final : public SlotBackend {
public:
    explicit PrivateSlots(bool after_detach) : after_detach_(after_detach) {}

    bool shared() const override { return false; }
    std::string name() const override { return {}; }
    bool lock() override { return false; }
    void unlock() override {}
    void recover_locked(Scheduler &, Counters &) override {}
    int reap_locked(Scheduler &, const std::vector<int> &, Counters &) override { return 0; }
    void post(const Effects &, Counters &) override {}
    void leave_locked(Scheduler &) override {}
    void abandon(Scheduler &, uint64_t) override {}
    bool survey(const Scheduler &, int, uint64_t, bool, Counters &, MemberSurvey *) override
    {
        return false;
    }
    bool runs_mailbox() const override { return after_detach_; }
    int mailbox_dispatch(int nr_vcpus, uint64_t timeout_ns, const std::atomic<bool> &stop,
                         HostInterface &host, Counters &ctr) override;
    void interrupt_mailbox() override {}
    void describe_locked(VschedPoolInfo *out) override;
    int member_pid_locked(int m) override;
    bool counts_whole_queue() const override { return !after_detach_; }

private:
    const bool after_detach_;
};

/* A member of a pool in shared memory. */
class SharedSlots final : public SlotBackend {
public:
    explicit SharedSlots(std::unique_ptr<SharedPool> pool) : sp_(std::move(pool)) {}

    bool shared() const override { return true; }
    SharedPool *shared_pool() override { return sp_.get(); }
    std::string name() const override { return sp_->name(); }
    bool lock() override { return sp_->lock(); }
    void unlock() override { sp_->unlock(); }
    void recover_locked(Scheduler &sched, Counters &ctr) override;
    int reap_locked(Scheduler &sched, const std::vector<int> &candidates,
                    Counters &ctr) override;
    void post(const Effects &fx, Counters &ctr) override;
    void leave_locked(Scheduler &sched) override;
    void abandon(Scheduler &sched, uint64_t now) override;
    bool survey(const Scheduler &sched, int nr_slots, uint64_t now, bool full_check,
                Counters &ctr, MemberSurvey *out) override;
    bool runs_mailbox() const override { return true; }
    int mailbox_dispatch(int nr_vcpus, uint64_t timeout_ns, const std::atomic<bool> &stop,
                         HostInterface &host, Counters &ctr) override;
    void interrupt_mailbox() override { sp_->interrupt_wait(); }
    void describe_locked(VschedPoolInfo *out) override;
    int member_pid_locked(int m) override { return sp_->shm().proc[m].pid; }
    bool counts_whole_queue() const override { return false; }

private:
    std::unique_ptr<SharedPool> sp_;
};

} // namespace vsched

#endif
