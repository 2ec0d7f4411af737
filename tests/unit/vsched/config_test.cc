/* Configuration words, durations and validation. */
#include <gtest/gtest.h>

#include "config.h"

namespace vsched::test {
namespace {

TEST(Config, PolicyWordsRoundTrip)
{
    for (int k = 0; k < policy_count(); k++) {
        PolicyId out;
        auto kind = static_cast<PolicyId>(k);
        ASSERT_TRUE(parse_policy(policy_name(kind), &out));
        EXPECT_EQ(out, kind);
    }
    PolicyId out;
    EXPECT_TRUE(parse_policy("ipi-prio", &out));
    EXPECT_EQ(out, policy_id("ipi-prio"));
    EXPECT_FALSE(parse_policy("IPI", &out));
    EXPECT_FALSE(parse_policy("", &out));
    EXPECT_FALSE(parse_policy("ipi-prio ", &out));
}

TEST(Config, Durations)
{
    uint64_t ns = 0;
    std::string err;
    EXPECT_TRUE(parse_duration_ns("50ms", &ns, &err));
    EXPECT_EQ(ns, 50'000'000u);
    EXPECT_TRUE(parse_duration_ns("100us", &ns, &err));
    EXPECT_EQ(ns, 100'000u);
    EXPECT_TRUE(parse_duration_ns("2000000", &ns, &err));
    EXPECT_EQ(ns, 2'000'000u);
    EXPECT_TRUE(parse_duration_ns("3s", &ns, &err));
    EXPECT_EQ(ns, 3'000'000'000u);
    EXPECT_TRUE(parse_duration_ns("0", &ns, &err));
    EXPECT_EQ(ns, 0u);
    EXPECT_TRUE(parse_duration_ns("7ns", &ns, &err));
    EXPECT_EQ(ns, 7u);
    for (const char *bad : {"-5ms", "+5ms", "", "ms", "5 parsecs", "5m", "1.5ms",
                            "abc", "99999999999999999999", "18446744073709551615s"}) {
        err.clear();
        EXPECT_FALSE(parse_duration_ns(bad, &ns, &err)) << bad;
        EXPECT_FALSE(err.empty()) << bad;
    }
}

TEST(Config, DefaultsAreValid)
{
    Config c;
    std::string err;
    EXPECT_TRUE(validate_config(c, 4, &err)) << err;
    EXPECT_EQ(c.slice_ns, 5'000'000u);
    EXPECT_EQ(c.ipi_window_ns, 50'000'000u);
    EXPECT_TRUE(c.relaxed_boost);
    EXPECT_TRUE(c.ipi_tracking);
    EXPECT_EQ(c.yield_budget, 3);
}

TEST(Config, RejectsNonsense)
{
    std::string err;
    Config c;
    EXPECT_FALSE(validate_config(c, 0, &err));
    EXPECT_NE(err.find("no vCPUs"), std::string::npos);
    EXPECT_FALSE(validate_config(c, kMaxVcpus + 1, &err));
    c.pcpus = 0;
    EXPECT_FALSE(validate_config(c, 4, &err));
    EXPECT_NE(err.find("pcpus"), std::string::npos);
    c = Config();
    c.slice_ns = 0;
    EXPECT_FALSE(validate_config(c, 4, &err));
    c = Config();
    c.ple_window_max_ns = c.ple_window_ns - 1;
    EXPECT_FALSE(validate_config(c, 4, &err));
    c = Config();
    c.policy = static_cast<PolicyId>(9);
    EXPECT_FALSE(validate_config(c, 4, &err));
    c = Config();
    c.yield_budget = 0;
    EXPECT_FALSE(validate_config(c, 4, &err));
}

} // namespace
} // namespace vsched::test
