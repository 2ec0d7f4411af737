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

void DecisionTally::flush(Counters &c) const
{
    if (not_ready) {
        c.add(Ctr::reject_not_ready, not_ready);
    }
    if (blocking) {
        c.add(Ctr::reject_blocking, blocking);
    }
    if (user_mode) {
        c.add(Ctr::reject_user_mode, user_mode);
    }
    if (strict) {
        c.add(Ctr::reject_strict, strict);
    }
    if (not_preempted) {
        c.add(Ctr::reject_not_preempted, not_preempted);
    }
    if (not_eligible) {
        c.add(Ctr::reject_not_eligible, not_eligible);
    }
}

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
    case PolicyKind::kIpiV2:
        return make_ipi_v2_policy();
    }
    return nullptr;
}

} // namespace vsched
