/*
 * planner.h - how to cut a batch of reads into upstream requests, given
 * what the link to the host has shown (linkstats.h).
 *
 * Pure functions: no I/O, no globals, any thread.  Until a host has been
 * measured the configured values are used unchanged (coalesce_gap,
 * coalesce_max), so a daemon behaves exactly as configured on its first
 * request and adapts as answers come in.
 *
 * The rule (docs/architecture.md, "Planning requests from the link"):
 *  - gap: bridge a hole between two wanted ranges when reading it costs
 *    less than the extra request would.  With more requests than streams,
 *    each stream carries several one after another: a request costs its
 *    stream one round trip, the hole costs it hole / (the stream's rate),
 *    a stream's rate being its share of the link but no more than one
 *    connection carries.  Hence
 *    gap = rtt x min(conn_bps, link_bps / max_streams), clamped to
 *    [0, PLANNER_MAX_GAP] and to max_fetch (with max_streams 1 this is
 *    Arrow's latency x bandwidth).  The batch bridges every hole up to
 *    the gap, cached bytes in it too (remote.c, claim_gaps).  That is the
 *    rule for an index walk's levels, whose holes hold the chunks the walk
 *    will want next;
 *  - bridge: a batch of data bridges only the holes that save a round of
 *    requests.  Its requests go out together, max_streams at a time, so a
 *    request costs a round trip only when it adds a round: R requests take
 *    ceil(R / max_streams) round trips, and every byte, wanted or bridged,
 *    its time on the link (link_bps, or conn_bps on each of the streams in
 *    use when that is less).  Bridging the k smallest holes leaves R0 - k
 *    requests; the k chosen minimises rounds x rtt + bytes / rate.  Thirty
 *    frames with an unwanted frame between each two (bench "frames") are
 *    read in 8 requests, not 24 in three rounds nor 7 that move every
 *    unwanted frame: docs/architecture.md, "Planning requests from the link";
 *  - streams: how many connections one batch should keep busy to fill the
 *    link: link_bps / conn_bps rounded up, plus one so that a link whose
 *    connections are capped one by one is discovered, at most max_streams;
 *  - piece: the size one request is cut to: the batch's bytes shared over
 *    the streams, but never below what one connection carries in one round
 *    trip (the pieces wait for their first byte together, so a piece that
 *    size spends at most half its time waiting) nor below PLANNER_MIN_PIECE
 *    (a request has fixed costs upstream too), and never above max_fetch.
 *
 * Opening an HDF5 file (docs/architecture.md, "Metadata from the link"):
 *  - prefix: the open's first request brings an eighth of a round trip's
 *    worth of bytes (rtt x one connection's bandwidth / PLANNER_OPEN_DIV:
 *    its transfer costs the open an eighth of a round trip; what lies
 *    beyond is read by windows on a miss, or with the whole file), within
 *    [min, max]; before the host is measured, the configured default;
 *    never below PLANNER_MIN_PIECE (a request has fixed costs besides the
 *    round trip).  Half a round trip (the former rule) cost more than the
 *    misses it saved: docs/benchmarks.md, "Issue 12" (small 276 -> 238 ms);
 *  - whole file: a file whose transfer over the whole link takes at most
 *    whole_rtts round trips (size <= whole_rtts x rtt x link bandwidth),
 *    and at most whole_max bytes, is fetched whole when it is opened: its
 *    metadata would otherwise cost round trips one after another;
 *  - metadata window: a read that misses what the HDF5 driver holds reads
 *    this much from it on, an eighth of a round trip's worth at first,
 *    doubling on each further miss up to four round trips' worth (at
 *    least PLANNER_MIN_PIECE, growing to at least PLANNER_MIN_WINDOW_MOST),
 *    within [min, max]: metadata spread through a file then costs a few
 *    misses, not one per eighth of a round trip of bytes.
 */
#ifndef H5CD_PLANNER_H
#define H5CD_PLANNER_H

#include <stdbool.h>
#include <stdint.h>

#include "linkstats.h"

#define PLANNER_MAX_GAP        (16ull * 1024 * 1024) /* a hole above this is never worth bridging */
#define PLANNER_MIN_PIECE      (1024ull * 1024)      /* nor less than this, however short the RTT */
#define PLANNER_OPEN_DIV       8u   /* an open's prefix and first window: rtt x bandwidth / this */
#define PLANNER_MAX_WHOLE_RTTS 100u /* whole_rtts above this counts as this */
#define PLANNER_MIN_WINDOW_MOST                                                                    \
    (4ull * 1024 * 1024) /* metadata windows may always grow to this                               \
                          */

struct planner_limits {
    uint64_t default_gap; /* coalesce_gap: used until the host is measured */
    uint64_t max_fetch;   /* coalesce_max: no request is larger; >= 1 */
    unsigned max_streams; /* requests one batch may have in flight; >= 1 */
};

/* Bytes one connection carries in one round trip, or 0 when either is unknown. */
uint64_t planner_bdp(const struct link_metrics *m);
/* The largest hole worth bridging between two wanted ranges. */
uint64_t planner_gap(const struct link_metrics *m, const struct planner_limits *lim);
/* How many of a data batch's holes to bridge: holes[0..nholes) are the holes between its
 * runs of wanted bytes (each > 0) in ascending order, wanted the bytes its runs hold; the
 * answer k says to bridge holes[0..k).  Unmeasured: the holes up to planner_gap. */
size_t planner_bridge(const struct link_metrics *m, const struct planner_limits *lim,
                      const uint64_t *holes, size_t nholes, uint64_t wanted);
/* How many of holes[0..nholes) (ascending) are at most planner_gap: an index walk's rule. */
size_t planner_bridge_upto_gap(const struct link_metrics *m, const struct planner_limits *lim,
                               const uint64_t *holes, size_t nholes);
/* Connections one batch should use, in [1, max_streams]. */
unsigned planner_streams(const struct link_metrics *m, const struct planner_limits *lim);
/* The largest request for a batch that wants total bytes, in [1, max_fetch]. */
uint64_t planner_piece(const struct link_metrics *m, const struct planner_limits *lim,
                       uint64_t total);

/* How an HDF5 open reads metadata, from the configuration. */
struct planner_open_limits {
    uint64_t default_prefix; /* h5_prefix_bytes: the prefix before the host is measured */
    uint64_t min_bytes;      /* no prefix or window is smaller (a cache block); >= 1 */
    uint64_t max_bytes;      /* nor larger (coalesce_max); >= min_bytes */
    unsigned whole_rtts;     /* h5_whole_file_rtts: 0 never fetches a file whole */
    uint64_t whole_max;      /* h5_whole_file_max: larger files are never fetched whole */
};

/* The first request of an open, in [min_bytes, max_bytes] (the default, clamped, until
 * the host is measured). */
uint64_t planner_open_prefix(const struct link_metrics *m, const struct planner_open_limits *lim);
/* True when a file of `size` bytes should be fetched whole at open. */
bool planner_whole_file(const struct link_metrics *m, const struct planner_open_limits *lim,
                        uint64_t size);
/* The driver's first metadata window (*first) and the largest it grows to (*most), both in
 * [min_bytes, max_bytes], *first <= *most. */
void planner_meta_window(const struct link_metrics *m, const struct planner_open_limits *lim,
                         uint64_t *first, uint64_t *most);

#endif
