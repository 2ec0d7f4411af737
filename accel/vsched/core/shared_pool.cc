/* vsched core: the shared-memory pool (layout, validation, membership,
 * liveness, mailboxes). */
#include "shared_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <thread>

#include "scheduler.h"
#include "shm_futex.h"
#include "spin_detector.h"

namespace vsched {

namespace {

uint64_t realtime_ns()
{
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull +
           static_cast<uint64_t>(ts.tv_nsec);
}

/* Put m into *err (if err); the caller's refusal value. */
SharedPool::OpenStep refuse(std::string *err, const std::string &m)
{
    if (err) {
        *err = m;
    }
    return SharedPool::OpenStep::kFailed;
}

std::string quoted(std::string_view name)
{
    return "'" + std::string(name) + "'";
}

} // namespace

bool validate_pool_name(std::string_view name, std::string *err)
{
    auto fail = [&](const std::string &m) {
        if (err) {
            *err = m;
        }
        return false;
    };
    if (name.empty()) {
        return fail("vsched: pool name is empty");
    }
    if (name.size() > static_cast<size_t>(kPoolNameMax)) {
        return fail("vsched: pool name is longer than " + std::to_string(kPoolNameMax) +
                    " characters");
    }
    if (name == "." || name == "..") {
        return fail("vsched: pool name " + quoted(name) + " is not allowed");
    }
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) {
            if (c == '/') {
                return fail("vsched: pool name " + quoted(name) + " contains '/'");
            }
            return fail("vsched: pool name " + quoted(name) +
                        " may only contain letters, digits, '.', '_' and '-'");
        }
    }
    return true;
}

std::string pool_shm_path(std::string_view name)
{
    return "/vsched-" + std::to_string(::getuid()) + "-" + std::string(name);
}

bool validate_pool_header(const void *bytes, size_t file_size, uid_t file_uid,
                          unsigned file_mode, uid_t uid, int nr_slots, std::string_view name,
                          std::string *err)
{
    const std::string where = "vsched: pool " + quoted(name) + " (/dev/shm" +
                              pool_shm_path(name) + ")";
    auto fail = [&](const std::string &m) {
        if (err) {
            *err = where + m;
        }
        return false;
    };
    if (file_uid != uid) {
        return fail(" is owned by uid " + std::to_string(file_uid) + ", not by this uid " +
                    std::to_string(uid) + " whose name it has; refusing to use it (its "
                    "owner made it, or it was planted: remove it or pick another name)");
    }
    if ((file_mode & 07777) != 0600) {
        char m[16];
        std::snprintf(m, sizeof m, "%04o", file_mode & 07777);
        return fail(" has mode " + std::string(m) + ", expected 0600; refusing to use it");
    }
    if (file_size < sizeof(ShmHeader)) {
        return fail(" is truncated: " + std::to_string(file_size) +
                    " bytes, smaller than its header (" + std::to_string(sizeof(ShmHeader)) +
                    " bytes)");
    }
    ShmHeader h;
    std::memcpy(&h, bytes, sizeof h);
    if (h.magic != kPoolMagic) {
        return fail(" is not a vsched pool (bad magic)");
    }
    if (h.version != kPoolLayoutVersion) {
        return fail(" has layout version " + std::to_string(h.version) +
                    ", this build uses version " + std::to_string(kPoolLayoutVersion));
    }
    if (h.header_size != sizeof(ShmHeader) || h.total_size != sizeof(ShmPool)) {
        return fail(" has a corrupt header: header/total size " +
                    std::to_string(h.header_size) + "/" + std::to_string(h.total_size) +
                    ", expected " + std::to_string(sizeof(ShmHeader)) + "/" +
                    std::to_string(sizeof(ShmPool)));
    }
    if (file_size < h.total_size) {
        return fail(" is truncated: " + std::to_string(file_size) + " bytes, its header says " +
                    std::to_string(h.total_size));
    }
    if (h.owner_uid != uid) {
        return fail(" belongs to uid " + std::to_string(h.owner_uid) +
                    " (header), not to this uid " + std::to_string(uid) +
                    "; refusing to use it");
    }
    if (h.nr_slots < 1 || h.nr_slots > kMaxSlots) {
        return fail(" has a corrupt header: " + std::to_string(h.nr_slots) + " slots");
    }
    if (h.nr_slots != nr_slots) {
        return fail(" has pcpus=" + std::to_string(h.nr_slots) + ", this VM asks for pcpus=" +
                    std::to_string(nr_slots) + " (the first VM sizes the pool)");
    }
    return true;
}

std::string describe_time_base(const PoolTimeBase &tb)
{
    if (!tb.virtual_time) {
        return "time=real";
    }
    return "time=virtual (-icount shift=" + std::to_string(tb.icount_shift) +
           ", quantum=" + std::to_string(tb.quantum) + ")";
}

bool validate_pool_time_base(const ShmHeader &h, const PoolTimeBase &tb, std::string_view name,
                             std::string *err)
{
    PoolTimeBase pool;
    pool.virtual_time = shm_load(h.time_virtual) != 0;
    pool.icount_shift = pool.virtual_time ? shm_load(h.icount_shift) : 0;
    pool.quantum = pool.virtual_time ? shm_load(h.quantum) : 0;
    const PoolTimeBase mine = tb.virtual_time ? tb : PoolTimeBase{};
    if (pool.virtual_time == mine.virtual_time && pool.icount_shift == mine.icount_shift &&
        pool.quantum == mine.quantum) {
        return true;
    }
    if (err) {
        *err = "vsched: pool " + quoted(name) + " runs on " + describe_time_base(pool) +
               ", this VM asks for " + describe_time_base(mine) +
               ": the VMs of one pool share one time base (the first VM sets it)";
    }
    return false;
}

/*
 * Reads /proc/<pid>/stat into buf and returns the ')' that ends comm (comm
 * may contain spaces and ')'), or null.  The state field is result[2].
 */
static char *proc_stat_after_comm(int pid, char *buf, size_t len)
{
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return nullptr;
    }
    ssize_t n = ::read(fd, buf, len - 1);
    ::close(fd);
    if (n <= 0) {
        return nullptr;
    }
    buf[n] = '\0';
    return std::strrchr(buf, ')');
}

uint64_t pid_namespace()
{
    struct stat st;
    return ::stat("/proc/self/ns/pid", &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

bool proc_start_time(int pid, uint64_t *out)
{
    char buf[1024];
    char *p = proc_stat_after_comm(pid, buf, sizeof buf);
    if (!p) {
        return false;
    }
    p++;
    /* field 3 (state) is the first after ')'; starttime is field 22. */
    for (int field = 2; field < 21; field++) {
        p = std::strchr(p + 1, ' ');
        if (!p) {
            return false;
        }
    }
    char *end = nullptr;
    unsigned long long v = std::strtoull(p + 1, &end, 10);
    if (end == p + 1) {
        return false;
    }
    *out = v;
    return true;
}

bool member_alive(int pid, uint64_t start_time)
{
    if (pid <= 0) {
        return false;
    }
    if (::kill(pid, 0) != 0 && errno == ESRCH) {
        return false;
    }
    uint64_t st;
    if (proc_start_time(pid, &st) && st != start_time) {
        return false; /* the pid was reused */
    }
    /* A zombie (killed, not yet reaped by its parent) holds nothing. */
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[512];
        ssize_t n = ::read(fd, buf, sizeof buf - 1);
        ::close(fd);
        if (n > 0) {
            buf[n] = '\0';
            char *p = std::strrchr(buf, ')');
            if (p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X')) {
                return false;
            }
        }
    }
    return true;
}

bool proc_stopped(int pid)
{
    char buf[1024];
    char *p = proc_stat_after_comm(pid, buf, sizeof buf);
    return p && p[1] == ' ' && (p[2] == 'T' || p[2] == 't');
}

/* Create the pool file (O_EXCL) and initialise it; kExists if another
 * process has one at the path. */
SharedPool::OpenStep SharedPool::create(std::string_view name, int nr_slots, uint64_t slice_ns,
                                        uid_t uid, const PoolTimeBase &tb, std::string *err)
{
    const std::string &path = path_;
    int fd = ::shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        return OpenStep::kExists;
    }
    if (fd < 0) {
        return refuse(err, "vsched: cannot create pool " + quoted(name) + " (/dev/shm" + path +
                      "): " + std::strerror(errno));
    }
    /* Allocate every page now: a sparse file (ftruncate) on a full
     * /dev/shm kills whoever touches a missing page with SIGBUS. */
    int alloc_err =
        ::fchmod(fd, 0600) != 0 ? errno : ::posix_fallocate(fd, 0, sizeof(ShmPool));
    if (alloc_err != 0) {
        ::close(fd);
        ::shm_unlink(path.c_str()); /* leave no half-made pool */
        return refuse(err, "vsched: cannot create pool " + quoted(name) + " (/dev/shm" + path +
                      ", " + std::to_string(sizeof(ShmPool)) + " bytes): " +
                      std::strerror(alloc_err) +
                      (alloc_err == ENOSPC ? " (/dev/shm is full)" : ""));
    }
    void *m = ::mmap(nullptr, sizeof(ShmPool), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        int e = errno;
        ::close(fd);
        ::shm_unlink(path.c_str());
        return refuse(err, "vsched: cannot map pool " + quoted(name) + ": " + std::strerror(e));
    }
    ShmPool *p = static_cast<ShmPool *>(m);
    /* The file is zero-filled (the lock is free); the magic goes
     * in last. */
    SlotPool(p->pool).init_empty(nr_slots);
    ShmHeader &h = p->hdr;
    h.version = kPoolLayoutVersion;
    h.header_size = sizeof(ShmHeader);
    h.total_size = sizeof(ShmPool);
    h.owner_uid = uid;
    h.nr_slots = nr_slots;
    h.slice_ns = slice_ns;
    h.created_realtime_ns = realtime_ns();
    h.creator_pid = ::getpid();
    h.pid_ns = pid_namespace();
    h.time_virtual = tb.virtual_time ? 1 : 0;
    h.icount_shift = tb.virtual_time ? tb.icount_shift : 0;
    h.quantum = tb.virtual_time ? tb.quantum : 0;
    std::snprintf(h.name, sizeof h.name, "%.*s", static_cast<int>(name.size()),
                  name.data());
    __atomic_store_n(&h.magic, kPoolMagic, __ATOMIC_RELEASE);
    p_ = p;
    fd_ = fd;
    return OpenStep::kMapped;
}

/* Open an existing pool file: validate it read-only (a refused pool is
 * never written), then map it read-write.  kRetry: it is being created,
 * or was removed or replaced meanwhile. */
SharedPool::OpenStep SharedPool::open(std::string_view name, int nr_slots, uid_t uid,
                                      const PoolTimeBase &tb, uint64_t give_up,
                                      std::string *err)
{
    const std::string &path = path_;
    int rfd = ::shm_open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
    if (rfd < 0) {
        if (errno == ENOENT) {
            return OpenStep::kRetry; /* removed meanwhile: create it */
        }
        return refuse(err, "vsched: cannot open pool " + quoted(name) + " (/dev/shm" + path +
                      "): " + std::strerror(errno));
    }
    struct stat st;
    if (::fstat(rfd, &st) != 0) {
        int e = errno;
        ::close(rfd);
        return refuse(err, "vsched: cannot stat pool " + quoted(name) + ": " +
                      std::strerror(e));
    }
    size_t size = static_cast<size_t>(st.st_size);
    ShmHeader h{};
    bool have_header = false;
    if (size >= sizeof(ShmHeader)) {
        void *m = ::mmap(nullptr, sizeof(ShmHeader), PROT_READ, MAP_SHARED, rfd, 0);
        if (m != MAP_FAILED) {
            h.magic = __atomic_load_n(&static_cast<ShmHeader *>(m)->magic,
                                      __ATOMIC_ACQUIRE);
            std::memcpy(&h, m, sizeof h);
            ::munmap(m, sizeof(ShmHeader));
            have_header = true;
        }
    }
    /* Being created by another process: zero size or zero magic. */
    bool initialising = st.st_uid == uid && (st.st_mode & 07777) == 0600 &&
                        (size == 0 || (size == sizeof(ShmPool) && have_header &&
                                       h.magic == 0));
    if (initialising) {
        ::close(rfd);
        if (mono_ns() > give_up) {
            return refuse(err, "vsched: pool " + quoted(name) + " (/dev/shm" + path +
                          ") is still not initialised; its creator may have died "
                          "while creating it: remove that file");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return OpenStep::kRetry;
    }
    std::string msg;
    if (!validate_pool_header(&h, size, st.st_uid, st.st_mode, uid, nr_slots, name,
                              &msg)) {
        ::close(rfd);
        return refuse(err, msg);
    }
    if (!validate_pool_time_base(h, tb, name, &msg)) {
        ::close(rfd);
        return refuse(err, msg);
    }
    /* Liveness checks compare pids: they only mean something in
     * the pool's pid namespace (a member elsewhere would reap the
     * live members it cannot see). */
    if (h.pid_ns != pid_namespace()) {
        ::close(rfd);
        return refuse(err, "vsched: pool " + quoted(name) + " (/dev/shm" + path +
                      ") was made in another pid namespace (a container?); VMs of "
                      "one pool must see each other's pids: use another pool name");
    }
    int wfd = ::shm_open(path.c_str(), O_RDWR | O_CLOEXEC, 0);
    struct stat st2;
    if (wfd < 0 || ::fstat(wfd, &st2) != 0 || st2.st_ino != st.st_ino ||
        st2.st_dev != st.st_dev) {
        if (wfd >= 0) {
            ::close(wfd);
        }
        ::close(rfd);
        return OpenStep::kRetry; /* replaced meanwhile: start over */
    }
    ::close(rfd);
    void *m = ::mmap(nullptr, sizeof(ShmPool), PROT_READ | PROT_WRITE, MAP_SHARED, wfd, 0);
    if (m == MAP_FAILED) {
        int e = errno;
        ::close(wfd);
        return refuse(err, "vsched: cannot map pool " + quoted(name) + ": " + std::strerror(e));
    }
    p_ = static_cast<ShmPool *>(m);
    fd_ = wfd;
    return OpenStep::kMapped;
}

std::unique_ptr<SharedPool> SharedPool::attach(std::string_view name, int nr_slots,
                                               uint64_t slice_ns, int nr_vcpus, uint64_t now,
                                               std::string *err,
                                               const SharedPoolOptions &opt)
{
    auto fail = [&](const std::string &m) -> std::unique_ptr<SharedPool> {
        refuse(err, m);
        return nullptr;
    };
    if (!validate_pool_name(name, err)) {
        return nullptr;
    }
    if (nr_vcpus < 1 || nr_vcpus > kMaxVcpus) {
        return fail("vsched: bad vCPU count for a shared pool");
    }
    const uid_t uid = opt.override_uid ? opt.uid : ::getuid();
    const std::string path = pool_shm_path(name);
    const uint64_t give_up = mono_ns() + opt.init_wait_ns;

    for (int attempt = 0;; attempt++) {
        if (attempt == 1000) {
            return fail("vsched: pool " + quoted(name) + " (/dev/shm" + path +
                        ") keeps being replaced or removed while joining; giving up");
        }
        std::unique_ptr<SharedPool> sp(new SharedPool);
        sp->name_ = std::string(name);
        sp->path_ = path;
        OpenStep step = sp->create(name, nr_slots, slice_ns, uid, opt.time_base, err);
        const bool created = step == OpenStep::kMapped;
        if (step == OpenStep::kExists) {
            step = sp->open(name, nr_slots, uid, opt.time_base, give_up, err);
        }
        if (step == OpenStep::kRetry) {
            continue;
        }
        if (step == OpenStep::kFailed) {
            return nullptr;
        }

        /* Join under the lock. */
        ShmPool &p = *sp->p_;
        /* The header was validated; keep our own copies of its sizes. */
        sp->slice_ns_ = created ? slice_ns : shm_load(p.hdr.slice_ns);
        sp->nr_slots_ = nr_slots;
        sp->lock_timeout_ns_ = opt.lock_timeout_ns;
        try {
            std::string e;
            int r = sp->join_locked(created, nr_vcpus, now, &e);
            if (r < 0) {
                continue; /* removed meanwhile: open the new one */
            }
            if (r == 0) {
                return fail(e);
            }
        } catch (const PoolCorrupt &e) {
            return fail("vsched: pool " + quoted(name) + " (/dev/shm" + path + ") is corrupt (" +
                        e.what() + "); refusing to join it");
        }
        return sp;
    }
}

/* Returns 1 when joined, 0 on refusal (*err), -1 if the pool was removed
 * meanwhile.  Takes and drops the lock (also when a check throws). */
int SharedPool::join_locked(bool created, int nr_vcpus, uint64_t now, std::string *err)
{
    struct Unlock {
        SharedPool *sp;
        ~Unlock() { sp->unlock(); }
    };
    Effects fx;
    int result;
    {
        bool owner_dead = lock();
        Unlock unlock_at_exit{this};
        if (shm_load(p_->hdr.removed)) {
            if (!still_at_path()) {
                return -1; /* the last member left and unlinked it */
            }
            /* Marked removed, never unlinked (its last member died in
             * between): nobody is in it; take it over in place. */
            p_->hdr.removed = 0;
        }
        /* Not a member yet: repair and reap as an outsider (the same
         * paths members use); what it counts is reported by
         * reaped_at_attach() and recovered_stale(). */
        Counters scratch;
        Scheduler outsider(&p_->pool, nr_slots_, slice_ns_, scratch);
        outsider.begin(now, &fx);
        int reaped = owner_dead ? recover_locked(outsider, nullptr) : 0;
        const int had = shm_load(p_->pool.nr_members) + reaped; /* after repair */
        std::vector<int> all;
        for (int m = 0; m < kMaxMembers; m++) {
            all.push_back(m);
        }
        reaped += reap_locked(outsider, all, nullptr);
        refresh_if_stale_locked(created, had, reaped);
        result = add_member_locked(nr_vcpus, now, err);
    }
    post(fx, nullptr, nullptr);
    return result;
}

/* Under the lock, at join: a pool nobody is left in starts afresh in place
 * (so two starters cannot both recreate it). */
void SharedPool::refresh_if_stale_locked(bool created, int had, int reaped)
{
    ShmPool &p = *p_;
    if (!created && shm_load(p.pool.nr_members) == 0) {
        SlotPool(p.pool).init_empty(nr_slots_);
        for (int m = 0; m < kMaxMembers; m++) {
            std::memset(&p.proc[m], 0, sizeof p.proc[m]);
        }
        std::memset(&p.vtime, 0, sizeof p.vtime);
        if (had > 0 || reaped > 0) {
            p.stats.stale_recoveries++;
            recovered_stale_ = true;
        }
    }
    reaped_at_attach_ = reaped;
}

int SharedPool::reap_locked(Scheduler &sched, const std::vector<int> &candidates,
                            Counters *ctr)
{
    int n = 0;
    for (int m : candidates) {
        if (m == member_ || !dead_locked(m)) {
            continue;
        }
        int held = sched.evict_member(m);
        free_proc_locked(m);
        p_->stats.members_reaped++;
        p_->stats.slots_reclaimed += static_cast<uint64_t>(held);
        if (ctr) {
            ctr->add(Ctr::pool_members_reaped);
            ctr->add(Ctr::pool_slots_reclaimed, static_cast<uint64_t>(held));
        }
        n++;
    }
    return n;
}

int SharedPool::recover_locked(Scheduler &sched, Counters *ctr)
{
    p_->stats.owner_dead_recoveries++;
    sched.repair();
    std::vector<int> others;
    for (int m = 0; m < kMaxMembers; m++) {
        if (m != member_) {
            others.push_back(m);
        }
    }
    return reap_locked(sched, others, ctr);
}

/* Our mapping is (still) the file at the pool's path. */
bool SharedPool::still_at_path() const
{
    int fd = ::shm_open(path_.c_str(), O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    struct stat a, b;
    bool same = ::fstat(fd, &a) == 0 && ::fstat(fd_, &b) == 0 && a.st_ino == b.st_ino &&
                a.st_dev == b.st_dev;
    ::close(fd);
    return same;
}

/* Under the lock: a member entry and a free range of global ids. */
int SharedPool::add_member_locked(int nr_vcpus, uint64_t now, std::string *err)
{
    ShmPool &p = *p_;
    int slot = kNone;
    for (int m = 0; m < kMaxMembers && slot == kNone; m++) {
        if (!p.pool.member[m].active) {
            slot = m;
        }
    }
    if (slot == kNone) {
        *err = "vsched: pool " + quoted(name_) + " is full (" + std::to_string(kMaxMembers) +
               " VMs)";
        return 0;
    }
    int base = kNone;
    for (int b = 0; b + nr_vcpus <= kMaxVcpus;) {
        int end = b;
        while (end < b + nr_vcpus && p.pool.vcpu_member[end] == kNone) {
            end++;
        }
        if (end == b + nr_vcpus) {
            base = b;
            break;
        }
        b = end + 1;
    }
    if (base == kNone) {
        *err = "vsched: pool " + quoted(name_) + " has no room for " +
               std::to_string(nr_vcpus) + " more vCPUs (at most " + std::to_string(kMaxVcpus) +
               " in all its VMs; " + describe_free_ids(p.pool) + ")";
        return 0;
    }
    /* The process record first: a joiner killed half-way leaves an entry
     * whose pid tells the others it is dead. */
    ShmMember &pr = p.proc[slot];
    std::memset(&pr, 0, sizeof pr);
    uint64_t st = 0;
    proc_start_time(::getpid(), &st);
    pr.start_time = st;
    pr.pid = ::getpid();
    /* Out of the rounds until its round-robin thread comes (virtual time). */
    p.vtime.member[slot] = ShmVtimeMember{0, 0, UINT64_MAX};
    MemberState &ms = p.pool.member[slot];
    ms = MemberState{};
    ms.active = 1;
    ms.base = base;
    ms.nr_vcpus = nr_vcpus;
    ms.joined_ns = now;
    for (int g = base; g < base + nr_vcpus; g++) {
        p.pool.vcpu_member[g] = static_cast<int16_t>(slot);
        p.pool.state[g] = static_cast<uint8_t>(VcpuState::kStopped);
        p.pool.flags[g] = 0;
        p.pool.steal_ns[g] = 0;
    }
    p.pool.nr_members++;
    p.stats.members_joined++;
    member_ = slot;
    base_ = base;
    return 1;
}

SharedPool::~SharedPool()
{
    if (p_) {
        ::munmap(p_, sizeof(ShmPool));
    }
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

uint32_t current_tid()
{
    static thread_local uint32_t tid = static_cast<uint32_t>(::syscall(SYS_gettid));
    return tid;
}

namespace {

uint32_t my_tid()
{
    return current_tid();
}

/* Thread tid exists and is not a zombie (a killed process not yet reaped
 * by its parent holds nothing). */
bool thread_alive(uint32_t tid)
{
    char buf[1024];
    char *p = proc_stat_after_comm(static_cast<int>(tid), buf, sizeof buf);
    if (!p) {
        return false;
    }
    return !(p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

} // namespace

bool SharedPool::lock()
{
    uint32_t *word = &p_->lock.word;
    const uint32_t me = my_tid();
    uint32_t expect = 0;
    if (__atomic_compare_exchange_n(word, &expect, me, false, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED)) {
        return false;
    }
    /* Contended (Drepper's mutex with a waiters bit).  Every wait is
     * bounded so a dead or stuck holder is noticed. */
    constexpr uint64_t kCheckNs = 10 * kNsPerMs;
    const uint64_t start = mono_ns();
    uint64_t next_check = start + kCheckNs;
    for (;;) {
        uint32_t cur = __atomic_load_n(word, __ATOMIC_RELAXED);
        if (cur == 0 || cur == kLockWaiters) {
            if (__atomic_compare_exchange_n(word, &cur, me | kLockWaiters, false,
                                            __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
                return false;
            }
            continue;
        }
        if (!(cur & kLockWaiters)) {
            if (!__atomic_compare_exchange_n(word, &cur, cur | kLockWaiters, false,
                                             __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
                continue;
            }
            cur |= kLockWaiters;
        }
        futex_wait(word, cur, kCheckNs);
        const uint64_t now = mono_ns();
        if (now < next_check) {
            continue;
        }
        next_check = now + kCheckNs;
        cur = __atomic_load_n(word, __ATOMIC_RELAXED);
        const uint32_t holder = cur & ~kLockWaiters;
        if (holder != 0 && holder != me && !thread_alive(holder)) {
            /* The holder died inside a lock section: take it over; the
             * caller repairs what it may have left half-done. */
            if (__atomic_compare_exchange_n(word, &cur, me | kLockWaiters, false,
                                            __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
                return true;
            }
            continue;
        }
        if (holder != 0 && now - start > lock_timeout_ns_) {
            char m[160];
            std::snprintf(m, sizeof m,
                          "its lock is held by thread %u for more than %llu ms (a member "
                          "stopped inside the lock, or a bad lock word)",
                          holder, static_cast<unsigned long long>(lock_timeout_ns_ / kNsPerMs));
            throw PoolCorrupt(m);
        }
    }
}

bool SharedPool::try_lock()
{
    uint32_t expect = 0;
    return __atomic_compare_exchange_n(&p_->lock.word, &expect, my_tid(), false,
                                       __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

void SharedPool::unlock()
{
    uint32_t old = __atomic_exchange_n(&p_->lock.word, 0, __ATOMIC_RELEASE);
    if (old & kLockWaiters) {
        futex_wake(&p_->lock.word, 1);
    }
}

void SharedPool::free_proc_locked(int m)
{
    ShmMember &pr = p_->proc[m];
    pr.pid = 0;
    pr.start_time = 0;
    /* Wake nothing; leave the futex word counting (a late poster only
     * causes a spurious wake-up of the next owner). */
}

bool SharedPool::leave_locked()
{
    free_proc_locked(member_);
    p_->stats.members_left++;
    if (p_->pool.nr_members > 0) {
        return false;
    }
    p_->hdr.removed = 1;
    /* Only our own file: after an outside unlink the name may be another
     * pool's now. */
    if (still_at_path()) {
        ::shm_unlink(path_.c_str());
    }
    return true;
}

bool SharedPool::check_file_lost()
{
    if (file_lost_ || still_at_path()) {
        return false;
    }
    file_lost_ = true;
    return true;
}

std::vector<int> SharedPool::find_dead_members(std::vector<int> *stopped)
{
    std::vector<int> dead;
    /* Memory only, every entry: an active entry without a pid is a joiner
     * killed half-way (reap_locked() checks again under the lock). */
    for (int m = 0; m < kMaxMembers; m++) {
        if (m != member_ && shm_load(p_->pool.member[m].active) &&
            __atomic_load_n(&p_->proc[m].pid, __ATOMIC_RELAXED) <= 0) {
            dead.push_back(m);
        }
    }
    /*
     * /proc reads: only our successors in member order (cyclic), up to the
     * first that is alive and running.  Every member is so watched by its
     * nearest live, running predecessor: one read per VM and check in the
     * usual case, O(members) for the pool instead of O(members^2).
     */
    for (int k = 1; k < kMaxMembers; k++) {
        const int m = (member_ + k) % kMaxMembers;
        const int pid = __atomic_load_n(&p_->proc[m].pid, __ATOMIC_RELAXED);
        if (pid <= 0) {
            continue;
        }
        const uint64_t st = __atomic_load_n(&p_->proc[m].start_time, __ATOMIC_RELAXED);
        probes_++;
        if (!member_alive(pid, st)) {
            dead.push_back(m);
        } else if (pid != ::getpid() && proc_stopped(pid)) {
            if (stopped) {
                stopped->push_back(m);
            }
        } else {
            break; /* alive and running: it watches those after it */
        }
    }
    return dead;
}

bool SharedPool::dead_locked(int m)
{
    if (!shm_load(p_->pool.member[m].active)) {
        return false;
    }
    const int pid = shm_load(p_->proc[m].pid);
    return pid <= 0 || !member_alive(pid, shm_load(p_->proc[m].start_time));
}

int SharedPool::post(const Effects &fx, int *wakes, int *kicks)
{
    if (!fx.has_remote()) {
        return 0;
    }
    uint64_t notify[kMaxMembers / 64 + 1] = {};
    int n = 0;
    for (int i = 0; i < fx.size(); i++) {
        const Effect &e = fx[i];
        if (e.local() || e.kind == Effect::Kind::kTrace || e.member < 0 ||
            e.member >= kMaxMembers || e.vcpu < 0 || e.vcpu >= kMaxVcpus) {
            continue;
        }
        ShmMember &pr = p_->proc[e.member];
        uint64_t *bits = e.kind == Effect::Kind::kWake ? pr.wake_bits : pr.kick_bits;
        __atomic_fetch_or(&bits[e.vcpu / 64], 1ull << (e.vcpu % 64), __ATOMIC_RELEASE);
        notify[e.member / 64] |= 1ull << (e.member % 64);
        if (e.kind == Effect::Kind::kWake) {
            if (wakes) {
                ++*wakes;
            }
        } else if (kicks) {
            ++*kicks;
        }
        n++;
    }
    for (int m = 0; m < kMaxMembers; m++) {
        if (notify[m / 64] & (1ull << (m % 64))) {
            __atomic_fetch_add(&p_->proc[m].futex, 1, __ATOMIC_RELEASE);
            futex_wake(&p_->proc[m].futex);
        }
    }
    return n;
}

uint32_t SharedPool::mailbox_seq()
{
    return __atomic_load_n(&p_->proc[member_].futex, __ATOMIC_ACQUIRE);
}

void SharedPool::wait_mailbox(uint32_t seen_seq, uint64_t timeout_ns)
{
    futex_wait(&p_->proc[member_].futex, seen_seq, timeout_ns);
}

void SharedPool::interrupt_wait()
{
    __atomic_fetch_add(&p_->proc[member_].futex, 1, __ATOMIC_RELEASE);
    futex_wake(&p_->proc[member_].futex);
}

} // namespace vsched
