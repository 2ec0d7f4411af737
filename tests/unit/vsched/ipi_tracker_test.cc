/* IPI tracker: what the series records and what it misses. */
#include <gtest/gtest.h>

#include "ipi_tracker.h"

namespace vsched::test {
namespace {

constexpr uint64_t kT = 1'000'000'000;
constexpr uint64_t kWin = 50'000'000;

class IpiTrackerTest : public ::testing::Test {
protected:
    Counters ctr_;
    IpiTracker t_{8, ctr_};
    void send(int src, std::initializer_list<int> dst, int vector = 0xfb,
              int mode = kApicDmFixed, int sh = kApicShNone, uint64_t at = kT)
    {
        std::vector<int> d(dst);
        t_.on_ipi(src, d.data(), static_cast<int>(d.size()), vector, mode, sh, at);
    }
};

TEST_F(IpiTrackerTest, SeriesRecordsUnicastFixedOnly)
{
    send(1, {2});
    EXPECT_TRUE(t_.series_is_receiver(1, 2, kT));
    EXPECT_EQ(t_.series().last_receiver(1), 2);
    EXPECT_EQ(t_.series().last_sender(2), 1);
    EXPECT_EQ(ctr_.get(Ctr::ipi_series_tracked), 1u);
    EXPECT_EQ(ctr_.get(Ctr::ipi_unicast), 1u);

    send(3, {4, 5});                            /* multicast */
    send(3, {4}, 0xfb, kApicDmLowest);          /* lowest priority */
    send(3, {4, 5, 6}, 0xfb, kApicDmFixed, kApicShAllButSelf);
    EXPECT_FALSE(t_.series().pending(3));
    EXPECT_EQ(ctr_.get(Ctr::ipi_series_missed), 3u);
    /* ...but our view has all of them. */
    EXPECT_TRUE(t_.is_receiver(3, 4, kT));
    EXPECT_TRUE(t_.is_receiver(3, 5, kT));
    EXPECT_TRUE(t_.is_receiver(3, 6, kT));
    EXPECT_EQ(ctr_.get(Ctr::ipi_multicast), 1u);
    EXPECT_EQ(ctr_.get(Ctr::ipi_shorthand), 1u);
}

TEST_F(IpiTrackerTest, SelfAndNonFixedIgnored)
{
    send(1, {1});
    send(1, {2}, 0x02, kApicDmNmi);
    send(1, {2}, 0, kApicDmInit);
    send(1, {1}, 0xfb, kApicDmFixed, kApicShSelf);
    EXPECT_FALSE(t_.series().pending(1));
    EXPECT_FALSE(t_.is_receiver(1, 2, kT));
    EXPECT_EQ(ctr_.get(Ctr::ipi_self), 2u);
    EXPECT_EQ(ctr_.get(Ctr::ipi_nonfixed), 2u);
    EXPECT_EQ(ctr_.get(Ctr::ipi_calls), 4u);
}

/* Last writer wins in the series view; ours keeps both receivers. */
TEST_F(IpiTrackerTest, SeriesKeepsOneReceiverOursKeepsAll)
{
    send(1, {2});
    send(1, {3});
    EXPECT_FALSE(t_.series_is_receiver(1, 2, kT));
    EXPECT_TRUE(t_.series_is_receiver(1, 3, kT));
    EXPECT_TRUE(t_.is_receiver(1, 2, kT));
    EXPECT_TRUE(t_.is_receiver(1, 3, kT));
    int r[8];
    EXPECT_EQ(t_.receivers_of(1, kT, r, 8), 2);
}

TEST_F(IpiTrackerTest, WindowCheckedLazily)
{
    send(1, {2});
    EXPECT_TRUE(t_.series_is_receiver(1, 2, kT + kWin));
    EXPECT_FALSE(t_.series_is_receiver(1, 2, kT + kWin + 1));
    EXPECT_TRUE(t_.is_receiver(1, 2, kT + kWin));
    EXPECT_FALSE(t_.is_receiver(1, 2, kT + kWin + 1));
    t_.set_window(2 * kWin);
    EXPECT_TRUE(t_.is_receiver(1, 2, kT + kWin + 1));
}

/* v3 (reconstructed): 2's EOI of an unrelated vector (its timer, say)
 * keeps 1's record of 2; the matching vector clears it and 2's
 * last_sender, and 2's own record of its IPI to 3 survives both. */
TEST_F(IpiTrackerTest, SeriesV3ClearsOnMatchingVectorOnly)
{
    send(1, {2}, 0xfb);
    send(2, {3}, 0xfc);
    EXPECT_EQ(t_.series().vector(1), 0xfb);
    t_.on_eoi(2, 0xec, kT); /* timer vector */
    EXPECT_TRUE(t_.series_is_receiver(1, 2, kT));
    EXPECT_EQ(t_.series().last_sender(2), 1);
    EXPECT_EQ(ctr_.get(Ctr::eoi_series_cleared), 0u);
    t_.on_eoi(2, 0xfb, kT);
    EXPECT_FALSE(t_.series_is_receiver(1, 2, kT));
    EXPECT_EQ(t_.series().last_sender(2), -1);
    EXPECT_EQ(ctr_.get(Ctr::eoi_series_cleared), 1u);
    EXPECT_TRUE(t_.series_is_receiver(2, 3, kT)); /* 2's own IPI */
    EXPECT_EQ(t_.series().last_receiver(2), 3);
}

/* v3: an EOI with an unknown vector (-1) never matches. */
TEST_F(IpiTrackerTest, SeriesV3UnknownVectorKeepsRecord)
{
    send(1, {2}, 0xfb);
    t_.on_eoi(2, -1, kT);
    EXPECT_TRUE(t_.series_is_receiver(1, 2, kT));
    EXPECT_FALSE(t_.series_v2_is_receiver(1, 2, kT)); /* v1/v2: any EOI */
}

/* v1/v2 (series_v2): any vector clears, and it wipes the receiver's own
 * sender record.  Ours: only the EOI'd vector, and 2's IPI to 3 survives. */
TEST_F(IpiTrackerTest, EoiSeriesV2WipesOwnSenderStateOursDoesNot)
{
    send(1, {2}, 0xfb);
    send(2, {3}, 0xfc);
    ASSERT_TRUE(t_.series_v2_is_receiver(2, 3, kT));
    t_.on_eoi(2, 0xec, kT); /* some unrelated vector */
    EXPECT_FALSE(t_.series_v2_is_receiver(1, 2, kT)); /* cleared: any EOI */
    EXPECT_FALSE(t_.series_v2_is_receiver(2, 3, kT)); /* side effect */
    EXPECT_EQ(t_.series_v2().last_receiver(2), -1);
    EXPECT_EQ(ctr_.get(Ctr::eoi_series_v2_cleared), 1u);
    EXPECT_TRUE(t_.series_is_receiver(1, 2, kT)); /* v3 keeps it */
    EXPECT_TRUE(t_.series_is_receiver(2, 3, kT));
    EXPECT_TRUE(t_.is_receiver(1, 2, kT));  /* vector did not match */
    EXPECT_TRUE(t_.is_receiver(2, 3, kT));
    t_.on_eoi(2, 0xfb, kT);
    EXPECT_FALSE(t_.is_receiver(1, 2, kT));
    EXPECT_TRUE(t_.is_receiver(2, 3, kT));
    EXPECT_FALSE(t_.may_have_receivers(1));
    EXPECT_EQ(ctr_.get(Ctr::eoi_cleared), 1u);
}

/* Both series variants clear the sender's pending only if the sender's
 * last receiver is this receiver and within the window. */
TEST_F(IpiTrackerTest, SeriesEoiChecksSenderStillPointsHere)
{
    send(1, {2});
    send(1, {3});
    t_.on_eoi(2, 0xfb, kT);
    EXPECT_TRUE(t_.series_is_receiver(1, 3, kT));
    EXPECT_TRUE(t_.series_v2_is_receiver(1, 3, kT));
    send(4, {5}, 0xfb, kApicDmFixed, kApicShNone, kT - kWin - 1);
    t_.on_eoi(5, 0xfb, kT);
    EXPECT_TRUE(t_.series().pending(4)); /* stale: left alone */
    EXPECT_TRUE(t_.series_v2().pending(4));
}

/* v3: the record keeps the vector of the latest IPI; an EOI of the older
 * vector no longer matches. */
TEST_F(IpiTrackerTest, SeriesV3MatchesTheLatestVector)
{
    send(1, {2}, 0xfb);
    send(1, {2}, 0xfd);
    t_.on_eoi(2, 0xfb, kT);
    EXPECT_TRUE(t_.series_is_receiver(1, 2, kT));
    t_.on_eoi(2, 0xfd, kT);
    EXPECT_FALSE(t_.series_is_receiver(1, 2, kT));
}

/* An IPI to {self, other} is not a series IPI (targets == 2): neither
 * series variant records it; ours records the other. */
TEST_F(IpiTrackerTest, IpiToSelfAndOtherNotSeriesTracked)
{
    send(1, {1, 2});
    EXPECT_FALSE(t_.series().pending(1));
    EXPECT_FALSE(t_.series_v2().pending(1));
    EXPECT_EQ(t_.series().last_sender(2), -1);
    EXPECT_EQ(ctr_.get(Ctr::ipi_series_missed), 1u);
    EXPECT_TRUE(t_.is_receiver(1, 2, kT));
}

TEST_F(IpiTrackerTest, AcceptMarksEntryNotPending)
{
    send(1, {2}, 0xfb);
    EXPECT_TRUE(t_.has_pending_interrupt(2, kT));
    t_.on_accept(2, 0xfa);
    EXPECT_TRUE(t_.has_pending_interrupt(2, kT));
    t_.on_accept(2, 0xfb);
    EXPECT_FALSE(t_.has_pending_interrupt(2, kT));
    EXPECT_TRUE(t_.is_receiver(1, 2, kT)); /* until EOI */
}

TEST_F(IpiTrackerTest, OldestEntryEvictedWhenFull)
{
    IpiTracker big(16, ctr_);
    for (int s = 0; s < kPendingPerVcpu + 1; s++) {
        int d = 15;
        big.on_ipi(s, &d, 1, 0xf0, kApicDmFixed, kApicShNone, kT + s);
    }
    EXPECT_FALSE(big.is_receiver(0, 15, kT + 20));
    EXPECT_TRUE(big.is_receiver(kPendingPerVcpu, 15, kT + 20));
    EXPECT_EQ(ctr_.get(Ctr::ipi_entries_evicted), 1u);
    EXPECT_FALSE(big.may_have_receivers(0));
}

TEST_F(IpiTrackerTest, ReceiverHintsRememberRecentDestinations)
{
    int hint[kReceiverHints];
    EXPECT_EQ(t_.receiver_hints(1, kT, hint), 0);
    send(1, {2});
    send(1, {3, 4});
    ASSERT_EQ(t_.receiver_hints(1, kT, hint), 3);
    EXPECT_EQ(hint[0], 2);
    EXPECT_EQ(hint[1], 3);
    EXPECT_EQ(hint[2], 4);
}

TEST_F(IpiTrackerTest, TrackingOffRecordsNothing)
{
    t_.set_enabled(false);
    send(1, {2});
    EXPECT_EQ(ctr_.get(Ctr::ipi_untracked), 1u);
    t_.set_enabled(true);
    EXPECT_FALSE(t_.series().pending(1));
    EXPECT_FALSE(t_.is_receiver(1, 2, kT));
}

TEST_F(IpiTrackerTest, ResetForgetsVcpu)
{
    send(1, {2});
    send(2, {3});
    t_.reset_vcpu(2);
    EXPECT_FALSE(t_.is_receiver(1, 2, kT));
    EXPECT_EQ(t_.series().last_sender(2), -1);
    EXPECT_EQ(t_.series_v2().last_sender(2), -1);
    EXPECT_FALSE(t_.series().pending(2));
    EXPECT_EQ(t_.series().vector(2), -1);
    EXPECT_FALSE(t_.series_v2().pending(2));
}

TEST_F(IpiTrackerTest, InvalidIndicesIgnored)
{
    send(1, {-1, 99});
    send(-5, {2});
    EXPECT_FALSE(t_.series().pending(1));
    t_.on_eoi(42, 0xfb, kT);
    t_.on_accept(-1, 0xfb);
}

} // namespace
} // namespace vsched::test
