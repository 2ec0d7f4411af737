/* vsched core: policy "none": a spinner never yields (PLE disabled). */
#include "policy.h"

namespace vsched {

namespace {

class NonePolicy final : public YieldPolicy {
public:
    PolicyKind kind() const override { return PolicyKind::kNone; }
    Decision decide(PolicyContext &, int, bool) override { return {}; }
};

} // namespace

std::unique_ptr<YieldPolicy> make_none_policy()
{
    return std::make_unique<NonePolicy>();
}

std::unique_ptr<YieldPolicy> make_policy(PolicyKind kind)
{
    switch (kind) {
    case PolicyKind::kNone:
        return make_none_policy();
    case PolicyKind::kVanilla:
        return make_vanilla_policy();
    case PolicyKind::kIpi:
        return make_ipi_policy();
    case PolicyKind::kIpiPrio:
        return make_ipi_prio_policy();
    }
    return nullptr;
}

} // namespace vsched
