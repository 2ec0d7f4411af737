/*
 * vsched core: per-vCPU scheduling state and the flags KVM keeps.
 *
 * State machine (every change goes through transition_allowed()):
 *
 *   kStopped --acquire--> kQueued | kRunning     (first start, resume)
 *   kStopped --release(HALT)--> kHalted          (APs start halted)
 *   kHalted  --acquire (woken)--> kQueued | kRunning
 *   kHalted  --release(STOP)--> kStopped
 *   kQueued  --grant / handoff--> kRunning
 *   kQueued  --release(HALT|STOP)--> kHalted | kStopped
 *   kRunning --preempt / yield--> kQueued        (slot passed on)
 *   kRunning --release(HALT|STOP)--> kHalted | kStopped
 *
 * kRunning -> kRunning (a second slot) and kQueued -> kQueued (a second
 * queue entry) are the bugs the check exists to catch.
 */
#ifndef VSCHED_CORE_VCPU_STATE_H
#define VSCHED_CORE_VCPU_STATE_H

#include <cstdint>

namespace vsched {

enum class VcpuState : uint8_t {
    kStopped = 0,  /* not started, paused, debug-stopped or unplugged */
    kHalted = 1,   /* HLT: no slot, not queued; waits for an interrupt */
    kQueued = 2,   /* runnable, waiting in the FIFO for a slot */
    kRunning = 3,  /* holds a slot: may run guest code */
};
inline constexpr int kNumVcpuStates = 4;

constexpr bool transition_allowed(VcpuState from, VcpuState to)
{
    switch (from) {
    case VcpuState::kStopped:
        return to == VcpuState::kQueued || to == VcpuState::kRunning ||
               to == VcpuState::kHalted;
    case VcpuState::kHalted:
        return to == VcpuState::kQueued || to == VcpuState::kRunning ||
               to == VcpuState::kStopped;
    case VcpuState::kQueued:
        return to == VcpuState::kRunning || to == VcpuState::kHalted ||
               to == VcpuState::kStopped;
    case VcpuState::kRunning:
        return to == VcpuState::kQueued || to == VcpuState::kHalted ||
               to == VcpuState::kStopped;
    }
    return false;
}

inline const char *state_name(VcpuState s)
{
    switch (s) {
    case VcpuState::kStopped:
        return "stopped";
    case VcpuState::kHalted:
        return "halted";
    case VcpuState::kQueued:
        return "runnable-queued";
    case VcpuState::kRunning:
        return "running";
    }
    return "invalid";
}

/*
 * Flags, one byte per vCPU, with KVM's meaning (kernel field in brackets):
 */
namespace vflag {
/* woken, or preempted while runnable; cleared when it gets a slot [ready] */
inline constexpr uint8_t kReady = 1u << 0;
/* lost its slot involuntarily while runnable (slice expiry) [preempted] */
inline constexpr uint8_t kPreempted = 1u << 1;
/* CPL was 0 when it was preempted [arch.preempted_in_kernel] */
inline constexpr uint8_t kPreemptedInKernel = 1u << 2;
/* inside its own directed-yield decision, incl. while queued after
 * yielding [spin_loop.in_spin_loop] */
inline constexpr uint8_t kInSpinLoop = 1u << 3;
/* toggled each time a scan looks at it while in_spin_loop
 * [spin_loop.dy_eligible] */
inline constexpr uint8_t kDyEligible = 1u << 4;
} // namespace vflag

} // namespace vsched

#endif
