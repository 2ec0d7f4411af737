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
};

class Effects {
public:
    void kick(int v) { push({Effect::Kind::kKick, TraceEvent::kCount, v, -1, 0}); }
    void wake(int v) { push({Effect::Kind::kWake, TraceEvent::kCount, v, -1, 0}); }
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
    /* Run everything on the host, in order. */
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
    std::vector<Effect> more_;
};

} // namespace vsched

#endif
