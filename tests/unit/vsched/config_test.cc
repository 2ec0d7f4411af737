/* Configuration words, durations and validation. */
#include <gtest/gtest.h>

#include "config.h"
#include "settings.h"
#include "vsched-vtime-core.h"

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
    EXPECT_EQ(c.slice_ns, 20'000'000u);
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
    c.policy = 9;
    EXPECT_FALSE(validate_config(c, 4, &err));
    c = Config();
    c.yield_budget = 0;
    EXPECT_FALSE(validate_config(c, 4, &err));
}

} // namespace
} // namespace vsched::test

namespace vsched {
namespace {

/* The settings table: every row is complete, every default is inside its
 * range, and an out-of-range value gets one message naming the property
 * and its real limits (the same at start and at run time: the QEMU
 * setter calls this for both). */
TEST(Settings, TableIsCompleteAndDefaultsAreInRange)
{
    const Config d;
    const std::pair<const char *, uint64_t> defaults[] = {
        {"slice", d.slice_ns},         {"ipi-window", d.ipi_window_ns},
        {"ple-gap", d.ple_gap_ns},     {"ple-window", d.ple_window_ns},
        {"pcpus", static_cast<uint64_t>(d.pcpus)},
        {"quantum", VSCHED_VTIME_QUANTUM_DEFAULT}, {"pool-members", 1},
        {"wake-granularity", d.wake_granularity_ns},
        {"preempt-delay", d.preempt_delay_ns},
    };
    for (const auto &[name, value] : defaults) {
        const VschedSetting *s = find_setting(name);
        ASSERT_NE(s, nullptr) << name;
        EXPECT_TRUE(check_setting(*s, value, nullptr)) << name;
    }
    for (const auto &s : settings()) {
        EXPECT_TRUE(s.name && *s.name && s.help && *s.help);
        if (s.type == VSCHED_SETTING_COUNT || s.type == VSCHED_SETTING_DURATION) {
            EXPECT_LT(s.min, s.max) << s.name;
            /* preempt-delay: 0 is "off", the others need a positive value. */
            if (std::string(s.name) != "preempt-delay") {
                EXPECT_GT(s.min, 0u) << s.name;
            }
        }
    }
    /* ple-window's ceiling is the growth clamp, so it can always grow. */
    EXPECT_EQ(find_setting("ple-window")->max, d.ple_window_max_ns);
    EXPECT_EQ(find_setting("nope"), nullptr);
}

TEST(Settings, RangeMessages)
{
    std::string err;
    EXPECT_FALSE(check_setting(*find_setting("slice"), 11'000'000'000ull, &err));
    EXPECT_EQ(err, "Parameter 'slice' must be between 100us and 10s (got 11s)");
    EXPECT_FALSE(check_setting(*find_setting("slice"), 500, &err));
    EXPECT_EQ(err, "Parameter 'slice' must be between 100us and 10s (got 500ns)");
    EXPECT_FALSE(check_setting(*find_setting("ple-window"), 5'000'000, &err));
    EXPECT_EQ(err, "Parameter 'ple-window' must be between 1us and 3200us (got 5ms)");
    EXPECT_FALSE(check_setting(*find_setting("ple-gap"), 0, &err));
    EXPECT_EQ(err, "Parameter 'ple-gap' must be between 1us and 10ms (got 0ns)");
    EXPECT_FALSE(check_setting(*find_setting("pcpus"), 4097, &err));
    EXPECT_EQ(err, "Parameter 'pcpus' must be between 1 and 4096 (got 4097)");
    EXPECT_FALSE(check_setting(*find_setting("quantum"), 999, &err));
    EXPECT_EQ(err, "Parameter 'quantum' must be between 1000 and 10000000 (got 999)");
    EXPECT_FALSE(check_setting(*find_setting("pool-members"), 65, &err));
    EXPECT_EQ(err, "Parameter 'pool-members' must be between 1 and 64 (got 65)");
    EXPECT_TRUE(check_setting(*find_setting("slice"), 100'000, &err));
    EXPECT_TRUE(check_setting(*find_setting("relaxed-boost"), 7, &err)); /* no range */
}

TEST(Settings, DescriptionsSayRangeAndRunTime)
{
    EXPECT_EQ(setting_description(*find_setting("ple-window")),
              "vsched: a spin this long triggers a yield decision (1us..3200us; run time)");
    EXPECT_EQ(setting_description(*find_setting("slice")),
              "vsched: time slice of a slot holder while others wait (100us..10s; fixed at "
              "start)");
    std::string dy = setting_description(*find_setting("directed-yield"));
    EXPECT_NE(dy.find(policy_list(", ")), std::string::npos) << dy;
    EXPECT_NE(dy.find("run time"), std::string::npos);
    EXPECT_TRUE(find_setting("relaxed-boost")->runtime);
}

} // namespace
} // namespace vsched
