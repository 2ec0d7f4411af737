/* PLE-style spin detection: gap, window, growth, reset, MWAIT. */
#include <gtest/gtest.h>

#include "spin_detector.h"

namespace vsched::test {
namespace {

constexpr uint64_t kGap = 10'000;
constexpr uint64_t kWindow = 50'000;

class SpinTest : public ::testing::Test {
protected:
    SpinDetector d_{4, kGap, kWindow, 400'000, 2};
    /* PAUSEs every `step` ns from t; returns the index of the one that
     * fired, or -1. */
    int pauses(int v, uint64_t &t, int count, uint64_t step, int cpl = 0)
    {
        int fired = -1;
        for (int i = 0; i < count; i++) {
            t += step;
            if (d_.on_pause(v, cpl, t) && fired < 0) {
                fired = i;
            }
        }
        return fired;
    }
};

/* First PAUSE at t0 starts the spin; it fires on the first PAUSE at or
 * after t0 + window: with a 5 us step that is PAUSE index 10. */
TEST_F(SpinTest, FiresWhenSpinReachesWindow)
{
    uint64_t t = 1'000'000;
    EXPECT_EQ(pauses(0, t, 30, 5'000, 0), 10);
    int cpl = -1;
    EXPECT_TRUE(d_.take_pending(0, &cpl));
    EXPECT_EQ(cpl, 0);
    EXPECT_FALSE(d_.take_pending(0, &cpl));
    EXPECT_EQ(d_.pauses(0), 30u);
    EXPECT_EQ(d_.spins(0), 1u); /* fires once while pending */
}

TEST_F(SpinTest, GapLongerThanLimitStartsNewSpin)
{
    uint64_t t = 1'000'000;
    EXPECT_EQ(pauses(1, t, 8, 5'000), -1);   /* 35 us of spin */
    EXPECT_EQ(pauses(1, t, 1, kGap + 1), -1); /* gap: new spin */
    EXPECT_EQ(pauses(1, t, 9, 5'000), -1);   /* 45 us: not yet */
    EXPECT_EQ(pauses(1, t, 1, 5'000, 3), 0); /* 50 us: fires */
    int cpl;
    ASSERT_TRUE(d_.take_pending(1, &cpl));
    EXPECT_EQ(cpl, 3);
}

TEST_F(SpinTest, SpacedPausesNeverFire)
{
    uint64_t t = 1'000'000;
    EXPECT_EQ(pauses(2, t, 100, kGap + 1), -1);
    EXPECT_EQ(d_.spins(2), 0u);
}

TEST_F(SpinTest, WindowGrowsToMaxAndResets)
{
    EXPECT_EQ(d_.window(0), kWindow);
    EXPECT_EQ(d_.grow_window(0), 100'000u);
    EXPECT_EQ(d_.grow_window(0), 200'000u);
    EXPECT_EQ(d_.grow_window(0), 400'000u);
    EXPECT_EQ(d_.grow_window(0), 400'000u);
    uint64_t t = 1'000'000;
    EXPECT_EQ(pauses(0, t, 60, 5'000), -1); /* 295 us < 400 us */
    EXPECT_TRUE(d_.reset_window(0));
    EXPECT_FALSE(d_.reset_window(0));
    EXPECT_EQ(d_.window(0), kWindow);
    /* reset also breaks the spin in progress */
    EXPECT_EQ(pauses(0, t, 10, 5'000), -1);
    EXPECT_EQ(pauses(0, t, 1, 5'000), 0);
}

TEST_F(SpinTest, MwaitIsNotASpinAndBreaksOne)
{
    uint64_t t = 1'000'000;
    EXPECT_EQ(pauses(3, t, 9, 5'000), -1);
    d_.on_mwait(3);
    EXPECT_EQ(pauses(3, t, 10, 5'000), -1); /* restarted by MWAIT */
    EXPECT_EQ(d_.mwaits(3), 1u);
    EXPECT_EQ(d_.spins(3), 0u);
}

TEST_F(SpinTest, KnobsApplyAtRuntime)
{
    d_.set_gap(1'000);
    uint64_t t = 1'000'000;
    EXPECT_EQ(pauses(0, t, 30, 5'000), -1);
    d_.set_gap(kGap);
    d_.set_base_window(20'000);
    d_.reset_window(0);
    EXPECT_EQ(pauses(0, t, 5, 5'000), 4);
}

} // namespace
} // namespace vsched::test
