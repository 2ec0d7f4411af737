/*
 * vsched core: policy "random", the classic control of directed-yield
 * studies: yield to a uniformly random ready, preempted vCPU.
 *
 * No IPI information, no scan order, no dy_eligible toggle: candidates are
 * the ready (and runnable) preempted vCPUs other than the spinner; they
 * are tried in a uniformly random order (a Fisher-Yates draw) until one
 * takes the slot or the -ESRCH budget runs out.  A 0 result (running or
 * halted meanwhile) moves on to the next draw.
 *
 * Seeded: each core's instance starts from the same fixed seed
 * (kRandomSeed), so a run is reproducible under the simulated host; the
 * sequence then depends only on the decisions the core asks for.
 */
#include <cstdint>
#include <vector>

#include "policy.h"

namespace vsched {

namespace {

inline constexpr uint64_t kRandomSeed = 0x76736368'6564ULL; /* "vsched" */

class RandomPolicy final : public YieldPolicy {
public:
    void decide(SpinContext &c) override;

private:
    /* splitmix64: small, fast, good enough for a control policy. */
    uint64_t next()
    {
        uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    /* Uniform in [0, n) (Lemire's multiply-shift; n is at most kMaxVcpus). */
    int below(int n) { return static_cast<int>(((next() >> 32) * n) >> 32); }

    uint64_t state_ = kRandomSeed;
    std::vector<int> candidates_;
};

void RandomPolicy::decide(SpinContext &c)
{
    candidates_.clear();
    for (int idx = 0; idx < c.nr_vcpus(); idx++) {
        if (idx == c.me() || !c.ready_and_runnable(idx)) {
            continue;
        }
        if (!c.preempted(idx)) {
            c.reject(Reject::kNotPreempted);
            continue;
        }
        candidates_.push_back(idx);
    }
    for (int left = static_cast<int>(candidates_.size()); left > 0; left--) {
        int pick = below(left);
        int idx = candidates_[pick];
        candidates_[pick] = candidates_[left - 1];
        YieldOutcome r = c.try_yield(idx, /*pass=*/0);
        if (r == YieldOutcome::kYielded || r == YieldOutcome::kStop) {
            return;
        }
    }
}

std::unique_ptr<YieldPolicy> make_random()
{
    return std::make_unique<RandomPolicy>();
}

} // namespace

VSCHED_REGISTER_POLICY(random, "random", make_random, "random");

} // namespace vsched
