/*
 * vsched core: the directed-yield mechanism as the spin protocol sees it.
 *
 * Implemented by the Scheduler (a handoff of the spinner's slot).  Only the
 * spin protocol (spin_protocol.cc) calls it; policies never see it, so a
 * policy cannot yield outside SpinContext::try_yield().
 */
#ifndef VSCHED_CORE_YIELD_MECHANISM_H
#define VSCHED_CORE_YIELD_MECHANISM_H

#include <cstdint>

namespace vsched {

/* yield_to() results, as the kernel's yield_to(). */
inline constexpr int kYieldEsrch = -3; /* -ESRCH: nobody contends */

class YieldMechanism {
public:
    virtual ~YieldMechanism() = default;
    /*
     * >0: me's slot went to target (target was queued).
     *  0: target is running, halted or stopped (costs no budget).
     * <0 (kYieldEsrch): nobody waits for a slot, yielding is pointless.
     */
    virtual int yield_to(int me, int target) = 0;
};

/* Why a halted vCPU was woken (see Scheduler::note_wake). */
enum : uint8_t {
    kWakeNone = 0,
    kWakeIpi = 1,     /* fixed IPI: runnable only while it is still pending */
    kWakeUrgent = 2,  /* NMI/INIT/SIPI/SMI: always runnable (KVM_REQ_NMI) */
};

} // namespace vsched

#endif
