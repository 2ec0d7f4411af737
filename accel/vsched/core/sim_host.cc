/* vsched core: deterministic simulated host. */
#include "sim_host.h"

namespace vsched {

SimHost::SimHost(int nr_vcpus, uint64_t start_ns)
    : now_(start_ns), kick_(nr_vcpus, false), wake_(nr_vcpus, false)
{
}

void SimHost::kick(int vcpu)
{
    kick_.at(vcpu) = true;
    kick_log_.push_back(vcpu);
}

void SimHost::wake(int vcpu)
{
    wake_.at(vcpu) = true;
    wake_log_.push_back(vcpu);
}

void SimHost::wait(int, uint64_t)
{
    waits_++;
}

void SimHost::trace(TraceEvent e, int vcpu, int target, int64_t arg)
{
    traces_.push_back({e, vcpu, target, arg, now_});
}

bool SimHost::take_kick(int vcpu)
{
    bool k = kick_.at(vcpu);
    kick_[vcpu] = false;
    return k;
}

bool SimHost::take_wake(int vcpu)
{
    bool w = wake_.at(vcpu);
    wake_[vcpu] = false;
    return w;
}

void SimHost::clear_logs()
{
    kick_log_.clear();
    wake_log_.clear();
    traces_.clear();
}

} // namespace vsched
