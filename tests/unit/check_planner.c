/*
 * check_planner.c - unit tests of lib/planner: the configured values before
 * anything is measured, the gap / streams / piece arithmetic on measured
 * links, which holes a data batch bridges, and its bounds at the clamps (no overflow at the largest
 * inputs).
 */
#include <check.h>
#include <stdint.h>

#include "planner.h"

#define MIB (1024ull * 1024)
#define MB  1000000ull

static const struct planner_limits LIM = {
    .default_gap = 256 * 1024, .max_fetch = 8 * MIB, .max_streams = 8};

static struct link_metrics measured(uint64_t rtt_us, uint64_t conn_bps, uint64_t link_bps)
{
    return (struct link_metrics){.rtt_known = true,
                                 .conn_known = true,
                                 .link_known = true,
                                 .rtt_us = rtt_us,
                                 .conn_bps = conn_bps,
                                 .link_bps = link_bps};
}

START_TEST(unmeasured_uses_configuration)
{
    struct link_metrics none = {0};
    ck_assert_uint_eq(planner_gap(&none, &LIM), 256 * 1024);
    ck_assert_uint_eq(planner_gap(NULL, &LIM), 256 * 1024);
    ck_assert_uint_eq(planner_piece(&none, &LIM, 100 * MIB), 8 * MIB);
    ck_assert_uint_eq(planner_piece(&none, &LIM, 1), 8 * MIB);
    ck_assert_uint_eq(planner_streams(&none, &LIM), 8);
    ck_assert_uint_eq(planner_bdp(&none), 0);
    /* An RTT alone says nothing of bandwidth: still the configuration. */
    struct link_metrics rtt_only = {.rtt_known = true, .rtt_us = 40000};
    ck_assert_uint_eq(planner_gap(&rtt_only, &LIM), 256 * 1024);
    /* A configured gap above max_fetch is cut to max_fetch. */
    struct planner_limits big = LIM;
    big.default_gap = 64 * MIB;
    ck_assert_uint_eq(planner_gap(&none, &big), 8 * MIB);
}
END_TEST

START_TEST(gap_is_link_rtt_share)
{
    /* 40 ms x 125 MB/s shared by 8 requests in flight: 625,000 bytes. */
    struct link_metrics m = measured(40000, 125000000, 125000000);
    ck_assert_uint_eq(planner_gap(&m, &LIM), 625000);
    /* One request in flight: Arrow's latency x bandwidth. */
    struct planner_limits one = LIM;
    one.max_streams = 1;
    ck_assert_uint_eq(planner_gap(&m, &one), 5000000);
    /* A stream's share of the link, no more than one connection carries: connections
     * capped at 25 MB/s, 8 streams share 100 MB/s. */
    m = measured(40000, 25000000, 100000000);
    ck_assert_uint_eq(planner_gap(&m, &LIM), 500000);
    m = measured(40000, 10000000, 100000000);
    ck_assert_uint_eq(planner_gap(&m, &LIM), 400000);
    /* A link slower than one connection was seen alone (shared by many transfers). */
    m = measured(40000, 100000000, 50000000);
    ck_assert_uint_eq(planner_gap(&m, &LIM), 250000);
    /* Only one of them known: that one. */
    m.link_known = false;
    ck_assert_uint_eq(planner_gap(&m, &LIM), 500000);
    m.link_known = true;
    m.conn_known = false;
    ck_assert_uint_eq(planner_gap(&m, &LIM), 250000);
    /* A link with no latency bridges nothing. */
    m = measured(0, 125000000, 125000000);
    ck_assert_uint_eq(planner_gap(&m, &LIM), 0);
}
END_TEST

START_TEST(bridge_unmeasured_uses_gap)
{
    /* Before the host is measured: every hole up to the configured gap (256 KiB). */
    const uint64_t holes[] = {100000, 200000, 300000};
    struct link_metrics none = {0};
    ck_assert_uint_eq(planner_bridge(&none, &LIM, holes, 3, 1000000), 2);
    ck_assert_uint_eq(planner_bridge(NULL, &LIM, holes, 3, 1000000), 2);
    ck_assert_uint_eq(planner_bridge(&none, &LIM, holes, 0, 1000000), 0);
}
END_TEST

START_TEST(bridge_saves_rounds_only)
{
    /* The bench's frames: 24 wanted frames of 351 kB, an unwanted one between each two; 40 ms,
     * 100 MB/s, 8 streams.  24 requests take 3 rounds (0.204 s); 8 take one (0.180 s); one
     * request moves every unwanted frame (0.205 s): bridge 16. */
    uint64_t holes[23];
    for (size_t i = 0; i < 23; i++)
        holes[i] = 351000;
    struct link_metrics m = measured(40000, 100 * MB, 100 * MB);
    ck_assert_uint_eq(planner_bridge(&m, &LIM, holes, 23, 24 * 351000), 16);
    /* A batch that fits in one round already bridges nothing however small its holes are
     * relative to the gap: 3 chunks of 50 MB with 1 MB between them. */
    const uint64_t big[] = {1000000, 1000000};
    ck_assert_uint_eq(planner_bridge(&m, &LIM, big, 2, 150 * MB), 0);
    /* Holes cheap next to a round trip are bridged down to one request per stream: 10,000
     * chunks of 90 bytes, 9 kB apart. */
    static uint64_t many[9999];
    for (size_t i = 0; i < 9999; i++)
        many[i] = 9000;
    ck_assert_uint_eq(planner_bridge(&m, &LIM, many, 9999, 10000 * 90), 9999 - 7);
    /* One stream: every such hole. */
    struct planner_limits one = LIM;
    one.max_streams = 1;
    ck_assert_uint_eq(planner_bridge(&m, &one, many, 9999, 10000 * 90), 9999);
}
END_TEST

START_TEST(bridge_keeps_capped_streams_busy)
{
    /* Connections capped at 25 MB/s on a 100 MB/s link: one request would carry the batch at
     * a quarter of the link, so at least four stay (and one round allows eight). */
    static uint64_t many[9999];
    for (size_t i = 0; i < 9999; i++)
        many[i] = 9000;
    struct link_metrics m = measured(40000, 25 * MB, 100 * MB);
    size_t k = planner_bridge(&m, &LIM, many, 9999, 10000 * 90);
    ck_assert_uint_le(k, 9999 - 3);
    ck_assert_uint_ge(k, 9999 - 7);
}
END_TEST

START_TEST(bridge_bounded)
{
    /* However slow the round trip, no hole above max_fetch (or PLANNER_MAX_GAP) is bridged;
     * estimates past the clamps cannot overflow. */
    const uint64_t holes[] = {1 * MIB, 7 * MIB, 20 * MIB, UINT64_MAX};
    struct planner_limits one = LIM;
    one.max_streams = 1;
    struct link_metrics m = measured(UINT64_MAX, UINT64_MAX, UINT64_MAX);
    ck_assert_uint_eq(planner_bridge(&m, &one, holes, 4, UINT64_MAX), 2);
    m = measured(10000000, 1 * MB, 1 * MB); /* 10 s a round trip: 7 MiB cost 7.3 s */
    ck_assert_uint_eq(planner_bridge(&m, &one, holes, 4, 10), 2);
    /* A link with no latency saves nothing by bridging. */
    m = measured(0, 100 * MB, 100 * MB);
    ck_assert_uint_eq(planner_bridge(&m, &one, holes, 4, 10), 0);
}
END_TEST

START_TEST(gap_clamped)
{
    struct planner_limits one = LIM;
    one.max_streams = 1;
    one.max_fetch = 64 * MIB;
    /* 1 s x 1 GB/s would be 1 GB: at most PLANNER_MAX_GAP. */
    struct link_metrics m = measured(1000000, 1000000000, 1000000000);
    ck_assert_uint_eq(planner_gap(&m, &one), PLANNER_MAX_GAP);
    /* ... and never above max_fetch. */
    one.max_fetch = 2 * MIB;
    ck_assert_uint_eq(planner_gap(&m, &one), 2 * MIB);
    /* Values past the table's clamps cannot overflow the product. */
    m = measured(UINT64_MAX, UINT64_MAX, UINT64_MAX);
    ck_assert_uint_eq(planner_gap(&m, &one), 2 * MIB);
    ck_assert_uint_eq(planner_bdp(&m), LINKSTATS_MAX_RTT_US * (LINKSTATS_MAX_BPS / 1000000u));
    ck_assert_uint_le(planner_piece(&m, &one, UINT64_MAX), 2 * MIB);
}
END_TEST

START_TEST(streams_fill_the_link)
{
    /* Connections capped at 25 MB/s on a 125 MB/s link: 5 needed, one more to probe. */
    struct link_metrics m = measured(40000, 25000000, 125000000);
    ck_assert_uint_eq(planner_streams(&m, &LIM), 6);
    /* 125.0 / 24.9 rounds up to 6: 7. */
    m.conn_bps = 24900000;
    ck_assert_uint_eq(planner_streams(&m, &LIM), 7);
    /* One connection fills the link: two (one to probe). */
    m = measured(40000, 125000000, 125000000);
    ck_assert_uint_eq(planner_streams(&m, &LIM), 2);
    m.link_bps = 1; /* below one connection (a lone small transfer) */
    ck_assert_uint_eq(planner_streams(&m, &LIM), 2);
    /* Bounded by max_streams, at both N and N+1. */
    struct planner_limits lim = LIM;
    lim.max_streams = 6;
    m = measured(40000, 25000000, 125000000);
    ck_assert_uint_eq(planner_streams(&m, &lim), 6);
    lim.max_streams = 5;
    ck_assert_uint_eq(planner_streams(&m, &lim), 5);
    lim.max_streams = 1;
    ck_assert_uint_eq(planner_streams(&m, &lim), 1);
    lim.max_streams = 0; /* treated as 1 */
    ck_assert_uint_eq(planner_streams(&m, &lim), 1);
    m = measured(40000, 1, UINT64_MAX);
    ck_assert_uint_eq(planner_streams(&m, &LIM), 8);
}
END_TEST

START_TEST(piece_splits_across_streams)
{
    /* One connection carries 1 MB per 40 ms round trip (below PLANNER_MIN_PIECE). */
    struct link_metrics m = measured(40000, 25000000, 125000000);
    ck_assert_uint_eq(planner_bdp(&m), 1000000);
    /* 30 MB over 6 streams: 5 MB each. */
    ck_assert_uint_eq(planner_piece(&m, &LIM, 30000000), 5000000);
    /* 30,000,001 bytes: rounded up so that 6 pieces suffice. */
    ck_assert_uint_eq(planner_piece(&m, &LIM, 30000001), 5000001);
    /* 6 MB over 6 streams would be 1 MB each: not below PLANNER_MIN_PIECE. */
    ck_assert_uint_eq(planner_piece(&m, &LIM, 6000000), PLANNER_MIN_PIECE);
    /* 80 ms: 2 MB per round trip; pieces are not cut below that. */
    m.rtt_us = 80000;
    ck_assert_uint_eq(planner_piece(&m, &LIM, 6000000), 2000000);
    ck_assert_uint_eq(planner_piece(&m, &LIM, 1), 2000000);
    ck_assert_uint_eq(planner_piece(&m, &LIM, 12000006), 2000001);
    /* Large ones never above max_fetch. */
    ck_assert_uint_eq(planner_piece(&m, &LIM, 1000 * MIB), 8 * MIB);
    /* A fast single connection: 15 MB per stream is above max_fetch. */
    m = measured(40000, 125000000, 125000000);
    ck_assert_uint_eq(planner_piece(&m, &LIM, 30000000), 8 * MIB);
    /* A short round trip: never below PLANNER_MIN_PIECE. */
    m = measured(200, 1000 * MB, 2000 * MB); /* 0.2 ms x 1 GB/s: 200 KB */
    ck_assert_uint_eq(planner_piece(&m, &LIM, 3 * MB), PLANNER_MIN_PIECE);
    ck_assert_uint_eq(planner_piece(&m, &LIM, 3 * PLANNER_MIN_PIECE), PLANNER_MIN_PIECE);
    ck_assert_uint_eq(planner_piece(&m, &LIM, 3 * PLANNER_MIN_PIECE + 3), PLANNER_MIN_PIECE + 1);
    /* Nothing wanted: the configured maximum. */
    ck_assert_uint_eq(planner_piece(&m, &LIM, 0), 8 * MIB);
}
END_TEST

static const struct planner_open_limits OPEN = {.default_prefix = 4 * MIB,
                                                .min_bytes = 256 * 1024,
                                                .max_bytes = 8 * MIB,
                                                .whole_rtts = 3,
                                                .whole_max = 32 * MIB};

START_TEST(open_prefix_from_link)
{
    struct link_metrics none = {0};
    /* Unmeasured: the configured prefix, clamped. */
    ck_assert_uint_eq(planner_open_prefix(&none, &OPEN), 4 * MIB);
    ck_assert_uint_eq(planner_open_prefix(NULL, &OPEN), 4 * MIB);
    struct planner_open_limits lim = OPEN;
    lim.default_prefix = 0;
    ck_assert_uint_eq(planner_open_prefix(&none, &lim), 256 * 1024);
    lim.default_prefix = 64 * MIB;
    ck_assert_uint_eq(planner_open_prefix(&none, &lim), 8 * MIB);
    /* Measured: an eighth of a round trip of one connection: 100 ms x 125 MB/s / 8 =
     * 1.5625 MB; at 40 ms, 625 kB, raised to PLANNER_MIN_PIECE. */
    struct link_metrics m = measured(100000, 125000000, 125000000);
    ck_assert_uint_eq(planner_open_prefix(&m, &OPEN), 1562500);
    m = measured(40000, 125000000, 125000000);
    ck_assert_uint_eq(planner_open_prefix(&m, &OPEN), PLANNER_MIN_PIECE);
    /* One connection's rate, not the link's: capped at 50 MB/s, 200 ms: 1.25 MB. */
    m = measured(200000, 50000000, 125000000);
    ck_assert_uint_eq(planner_open_prefix(&m, &OPEN), 1250000);
    /* A LAN: 1 ms x 100 MB/s / 2 = 50 kB, raised to PLANNER_MIN_PIECE. */
    m = measured(1000, 100000000, 100000000);
    ck_assert_uint_eq(planner_open_prefix(&m, &OPEN), PLANNER_MIN_PIECE);
    /* ... unless the limits are lower still. */
    struct planner_open_limits low = OPEN;
    low.max_bytes = 512 * 1024;
    ck_assert_uint_eq(planner_open_prefix(&m, &low), 512 * 1024);
    /* A long fat pipe: capped at the maximum. */
    m = measured(200000, 1000000000, 1000000000);
    ck_assert_uint_eq(planner_open_prefix(&m, &OPEN), 8 * MIB);
    /* The extremes do not overflow. */
    m = measured(UINT64_MAX, UINT64_MAX, UINT64_MAX);
    ck_assert_uint_eq(planner_open_prefix(&m, &OPEN), 8 * MIB);
}
END_TEST

START_TEST(whole_file_when_small_for_the_link)
{
    /* 40 ms x 125 MB/s: 5 MB a round trip, 15 MB in three. */
    struct link_metrics m = measured(40000, 125000000, 125000000);
    ck_assert(planner_whole_file(&m, &OPEN, 9600000));
    ck_assert(planner_whole_file(&m, &OPEN, 15000000));
    ck_assert(!planner_whole_file(&m, &OPEN, 15000001));
    ck_assert(!planner_whole_file(&m, &OPEN, 52000000));
    /* Connections capped at 25 MB/s but the link carries 125 MB/s over several: the link. */
    m = measured(40000, 25000000, 125000000);
    ck_assert(planner_whole_file(&m, &OPEN, 15000000));
    /* Only one connection seen so far: its rate is a lower bound of the link's. */
    m = measured(40000, 125000000, 0);
    m.link_known = false;
    ck_assert(planner_whole_file(&m, &OPEN, 15000000));
    /* A 1 ms LAN: 300 kB in three round trips. */
    m = measured(1000, 100000000, 100000000);
    ck_assert(planner_whole_file(&m, &OPEN, 300000));
    ck_assert(!planner_whole_file(&m, &OPEN, 300001));
    /* Never above whole_max, however fast the link. */
    m = measured(100000, 1000000000, 1000000000);
    ck_assert(planner_whole_file(&m, &OPEN, 32 * MIB));
    ck_assert(!planner_whole_file(&m, &OPEN, 32 * MIB + 1));
    /* Turned off, or nothing measured: never. */
    struct planner_open_limits off = OPEN;
    off.whole_rtts = 0;
    ck_assert(!planner_whole_file(&m, &off, 1));
    struct link_metrics none = {0};
    ck_assert(!planner_whole_file(&none, &OPEN, 1));
    ck_assert(!planner_whole_file(NULL, &OPEN, 1));
    struct link_metrics rtt_only = {.rtt_known = true, .rtt_us = 40000};
    ck_assert(!planner_whole_file(&rtt_only, &OPEN, 1));
    /* The extremes do not overflow: a huge whole_rtts counts as PLANNER_MAX_WHOLE_RTTS. */
    struct planner_open_limits huge = OPEN;
    huge.whole_rtts = UINT32_MAX;
    huge.whole_max = UINT64_MAX;
    m = measured(UINT64_MAX, UINT64_MAX, UINT64_MAX);
    ck_assert(planner_whole_file(&m, &huge, UINT64_MAX / 2 / 100000000));
    ck_assert(!planner_whole_file(&m, &huge, UINT64_MAX));
    /* An empty file is always whole once the link is measured. */
    m = measured(40000, 125000000, 125000000);
    ck_assert(planner_whole_file(&m, &OPEN, 0));
}
END_TEST

START_TEST(meta_window_from_link)
{
    uint64_t first, most;
    /* Unmeasured: half the configured prefix, growing to it (the former 2 MiB -> 4 MiB). */
    planner_meta_window(NULL, &OPEN, &first, &most);
    ck_assert_uint_eq(first, 2 * MIB);
    ck_assert_uint_eq(most, 4 * MIB);
    /* 40 ms x 125 MB/s: 625 kB raised to 1 MiB, growing to 20 MB cut to the maximum. */
    struct link_metrics m = measured(40000, 125000000, 125000000);
    planner_meta_window(&m, &OPEN, &first, &most);
    ck_assert_uint_eq(first, PLANNER_MIN_PIECE);
    ck_assert_uint_eq(most, 8 * MIB);
    /* 40 ms x 25 MB/s: 500 kB growing to 4 MB, raised to 1 MiB growing to 4 MiB. */
    m = measured(40000, 25000000, 125000000);
    planner_meta_window(&m, &OPEN, &first, &most);
    ck_assert_uint_eq(first, PLANNER_MIN_PIECE);
    ck_assert_uint_eq(most, PLANNER_MIN_WINDOW_MOST);
    /* 400 ms x 25 MB/s: 1.25 MB growing to 40 MB, cut to the maximum. */
    m = measured(400000, 25000000, 125000000);
    planner_meta_window(&m, &OPEN, &first, &most);
    ck_assert_uint_eq(first, 1250000);
    ck_assert_uint_eq(most, 8 * MIB);
    /* A LAN: 1 ms x 100 MB/s: the floors. */
    m = measured(1000, 100000000, 100000000);
    planner_meta_window(&m, &OPEN, &first, &most);
    ck_assert_uint_eq(first, PLANNER_MIN_PIECE);
    ck_assert_uint_eq(most, PLANNER_MIN_WINDOW_MOST);
    /* Limits given upside down still give first <= most, both within bounds. */
    struct planner_open_limits odd = OPEN;
    odd.max_bytes = 1;
    odd.min_bytes = 0;
    m = measured(UINT64_MAX, UINT64_MAX, UINT64_MAX);
    planner_meta_window(&m, &odd, &first, &most);
    ck_assert_uint_eq(first, 1);
    ck_assert_uint_eq(most, 1);
}
END_TEST

static Suite *planner_suite(void)
{
    Suite *s = suite_create("planner");
    TCase *core = tcase_create("core");
    tcase_add_test(core, unmeasured_uses_configuration);
    tcase_add_test(core, gap_is_link_rtt_share);
    tcase_add_test(core, bridge_unmeasured_uses_gap);
    tcase_add_test(core, bridge_saves_rounds_only);
    tcase_add_test(core, bridge_keeps_capped_streams_busy);
    tcase_add_test(core, streams_fill_the_link);
    tcase_add_test(core, piece_splits_across_streams);
    tcase_add_test(core, open_prefix_from_link);
    tcase_add_test(core, whole_file_when_small_for_the_link);
    tcase_add_test(core, meta_window_from_link);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, gap_clamped);
    tcase_add_test(limits, bridge_bounded);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(planner_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
