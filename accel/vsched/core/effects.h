/*
 * vsched core: side effects collected under the core mutex and run after it
 * is dropped (see host.h).
 */
#ifndef VSCHED_CORE_EFFECTS_H
#define VSCHED_CORE_EFFECTS_H

#include <cstdint>
#include <vector>

#include "host.h"

namespace vsched {

struct Effect {
    enum class Kind : uint8_t { kKick, kWake, kTrace };
    Kind kind;
    TraceEvent event;
    int vcpu;
    int target;
    int64_t arg;
    /* kLocal: a vCPU of this process (the host runs it); otherwise the
     * shared-pool member whose mailbox gets it (vcpu is its local id). */
    int member = kLocal;
    static constexpr int kLocal = -1;
    bool local() const { return member == kLocal; }
};

class Effects {
public:
    void kick(int v) { push({Effect::Kind::kKick, TraceEvent::kCount, v, -1, 0}); }
    void wake(int v) { push({Effect::Kind::kWake, TraceEvent::kCount, v, -1, 0}); }
    /* For vCPU v (local id) of another member of a shared pool. */
    void kick_remote(int member, int v)
    {
        push({Effect::Kind::kKick, TraceEvent::kCount, v, -1, 0, member});
        remote_ = true;
    }
    void wake_remote(int member, int v)
    {
        push({Effect::Kind::kWake, TraceEvent::kCount, v, -1, 0, member});
        remote_ = true;
    }
    bool has_remote() const { return remote_; }
    void trace(TraceEvent e, int v, int target, int64_t arg)
    {
        if (tracing_) {
            push({Effect::Kind::kTrace, e, v, target, arg});
        }
    }
    void set_tracing(bool on) { tracing_ = on; }
    int size() const { return n_ + static_cast<int>(more_.size()); }
    const Effect &operator[](int i) const
    {
        return i < kInline ? inline_[i] : more_[i - kInline];
    }
    /* Run the local effects on the host, in order (remote ones are posted
     * to mailboxes by the shared pool). */
    void run(HostInterface &host) const;

private:
    static constexpr int kInline = 12;
    void push(const Effect &e)
    {
        if (n_ < kInline) {
            inline_[n_++] = e;
        } else {
            more_.push_back(e);
        }
    }
    Effect inline_[kInline];
    int n_ = 0;
    bool tracing_ = false;
    bool remote_ = false;
    std::vector<Effect> more_;
};

} // namespace vsched

#endif
