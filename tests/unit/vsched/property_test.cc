/*
 * Seeded randomised property test: long random event sequences against the
 * simulated host (see sim_driver.h).  After every step: slot count
 * conserved, no vCPU lost or running twice, model and core agree, every
 * queued vCPU gets a slot within its FIFO bound, counters add up.
 */
#include <gtest/gtest.h>

#include <random>

#include "sim_driver.h"

namespace vsched::test {
namespace {

struct Case {
    int vcpus;
    int pcpus;
    PolicyId policy;
};

class PropertyTest : public ::testing::TestWithParam<Case> {};

TEST_P(PropertyTest, RandomSequencesKeepInvariants)
{
    const Case c = GetParam();
    for (uint32_t seed = 1; seed <= 6; seed++) {
        SimDriver::Params p;
        p.nr_vcpus = c.vcpus;
        p.pcpus = c.pcpus;
        p.policy = c.policy;
        SimDriver d(p);
        std::mt19937 rng(seed * 7919 + static_cast<uint32_t>(c.vcpus));
        for (int i = 0; i < 6000; i++) {
            uint32_t a = rng(), b = rng();
            ASSERT_TRUE(d.step(a, b)) << "seed " << seed << " step " << i << ": " << d.error();
        }
        auto ctr = d.core().counters();
        /* The run must actually have exercised the interesting paths. */
        EXPECT_GT(ctr[Ctr::grants_from_queue], 0u) << "seed " << seed;
        EXPECT_GT(ctr[Ctr::preemptions], 0u) << "seed " << seed;
        EXPECT_GT(ctr[Ctr::ipi_calls], 0u) << "seed " << seed;
        EXPECT_GT(ctr[Ctr::spins_detected], 0u) << "seed " << seed;
    }
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, PropertyTest,
    ::testing::Values(Case{2, 1, policy_id("vanilla")}, Case{8, 3, policy_id("ipi-prio")},
                      Case{8, 2, policy_id("ipi")}, Case{16, 4, policy_id("vanilla")},
                      Case{16, 8, policy_id("none")}, Case{32, 8, policy_id("ipi-prio")}),
    [](const auto &info) {
        return std::string(policy_name(info.param.policy)) == "ipi-prio"
                   ? "ipi_prio_" + std::to_string(info.param.vcpus) + "v" +
                         std::to_string(info.param.pcpus) + "p"
                   : std::string(policy_name(info.param.policy)) + "_" +
                         std::to_string(info.param.vcpus) + "v" +
                         std::to_string(info.param.pcpus) + "p";
    });

/* Policies that yield must actually hand off in random runs. */
TEST(PropertyYields, HandoffsHappen)
{
    SimDriver::Params p;
    p.nr_vcpus = 12;
    p.pcpus = 4;
    p.policy = policy_id("ipi-prio");
    SimDriver d(p);
    std::mt19937 rng(42);
    for (int i = 0; i < 20000; i++) {
        uint32_t a = rng(), b = rng();
        ASSERT_TRUE(d.step(a, b)) << d.error();
    }
    auto c = d.core().counters();
    EXPECT_GT(c[Ctr::handoffs], 0u);
    EXPECT_LE(d.max_wait_ns(), (12 / 4 + 2) * (p.slice_ns + p.max_step_ns) + p.max_step_ns);
}

} // namespace
} // namespace vsched::test
