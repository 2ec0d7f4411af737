/* vsched core: policy "none": a spinner never yields (PLE disabled).  It
 * has no passes, so the core never asks it (spins_ignored). */
#include "policy.h"

namespace vsched {

namespace {

class NonePolicy final : public YieldPolicy {
public:
    void decide(SpinContext &) override {}
};

std::unique_ptr<YieldPolicy> make_none()
{
    return std::make_unique<NonePolicy>();
}

} // namespace

VSCHED_REGISTER_POLICY(none, "none", make_none);

} // namespace vsched
