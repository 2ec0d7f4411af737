/*
 * The starvation bound's ledger for the random bound tests: how often
 * each queued vCPU is overtaken, per wait, by a vCPU that queued after it.
 */
#ifndef VSCHED_TEST_OVERTAKE_LEDGER_H
#define VSCHED_TEST_OVERTAKE_LEDGER_H

#include <algorithm>
#include <cstdint>
#include <vector>

#include "slot_pool.h"

namespace vsched::test {

class OvertakeLedger {
public:
    explicit OvertakeLedger(int n) : n_(n), seq_(n, 0), overtaken_(n, 0) {}

    /* One step from the states `before` to now (state(v)): every vCPU
     * granted in it overtakes those still queued that queued before it,
     * except `exempt`, served out of turn as a yield target; then the
     * newly queued take their places. */
    template <class StateOf>
    void step(const std::vector<VcpuState> &before, StateOf state, int exempt = kNone)
    {
        for (int g = 0; g < n_; g++) {
            if (before[g] != VcpuState::kQueued || state(g) == VcpuState::kQueued) {
                continue;
            }
            if (g != exempt) {
                for (int w = 0; w < n_; w++) {
                    if (before[w] == VcpuState::kQueued && state(w) == VcpuState::kQueued &&
                        seq_[w] < seq_[g]) {
                        max_ = std::max(max_, ++overtaken_[w]);
                    }
                }
            }
            seq_[g] = 0;
        }
        for (int v = 0; v < n_; v++) {
            if (state(v) == VcpuState::kQueued && seq_[v] == 0) {
                seq_[v] = next_seq_++;
                overtaken_[v] = 0;
            }
        }
    }
    int max_overtaken() const { return max_; }

private:
    int n_;
    std::vector<uint64_t> seq_; /* enqueue order while queued */
    std::vector<int> overtaken_;
    uint64_t next_seq_ = 1;
    int max_ = 0;
};

} // namespace vsched::test

#endif
