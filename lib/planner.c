/*
 * planner.c - the gap, stream and piece rule of planner.h: arithmetic on
 * the measured link, bounded so that no estimate can make a request
 * larger than max_fetch or a batch wider than max_streams.
 */
#include "planner.h"

static uint64_t clamp(uint64_t v, uint64_t lo, uint64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

uint64_t planner_bdp(const struct link_metrics *m)
{
    if (m == NULL || !m->rtt_known || !m->conn_known)
        return 0;
    /* Both clamped so that the product fits: 6e7 us x 1e11 B/s = 6e18 < 2^64. */
    uint64_t rtt = min_u64(m->rtt_us, LINKSTATS_MAX_RTT_US);
    uint64_t bps = min_u64(m->conn_bps, LINKSTATS_MAX_BPS);
    return rtt * bps / 1000000u;
}

uint64_t planner_gap(const struct link_metrics *m, const struct planner_limits *lim)
{
    uint64_t hi = min_u64(PLANNER_MAX_GAP, lim->max_fetch);
    if (m == NULL || !m->rtt_known || !(m->conn_known || m->link_known))
        return min_u64(lim->default_gap, lim->max_fetch);
    uint64_t rtt = min_u64(m->rtt_us, LINKSTATS_MAX_RTT_US);
    uint64_t inflight = lim->max_streams > 0 ? lim->max_streams : 1;
    /* Each stream's share of the link, but no more than one connection carries: the bridged
     * bytes arrive on one connection and share the link with the other streams.  With one
     * of the two unknown, the known one shared. */
    uint64_t conn = min_u64(m->conn_bps, LINKSTATS_MAX_BPS);
    uint64_t link = min_u64(m->link_bps, LINKSTATS_MAX_BPS);
    uint64_t share = m->conn_known && m->link_known ? min_u64(conn, link / inflight)
                     : m->conn_known                ? conn / inflight
                                                    : link / inflight;
    return clamp(rtt * share / 1000000u, 0, hi);
}

/* Bytes per second `busy` connections carry together: the link's rate, or theirs when each
 * is capped below its share; 0 when neither is known. */
static double link_rate(const struct link_metrics *m, uint64_t busy)
{
    double rate = 0;
    if (m->link_known)
        rate = (double)min_u64(m->link_bps, LINKSTATS_MAX_BPS);
    if (m->conn_known) {
        double conns = (double)min_u64(m->conn_bps, LINKSTATS_MAX_BPS) * (double)busy;
        rate = rate > 0 && rate < conns ? rate : conns;
    }
    return rate;
}

/* The seconds a data batch takes on the link when its bytes go in `requests` requests,
 * max_streams at a time: a round trip per round, the bytes at link_rate. */
static double batch_seconds(const struct link_metrics *m, const struct planner_limits *lim,
                            uint64_t requests, uint64_t bytes)
{
    uint64_t streams = lim->max_streams > 0 ? lim->max_streams : 1;
    uint64_t rounds = requests / streams + (requests % streams != 0);
    double rate = link_rate(m, requests < streams ? requests : streams);
    double rtt = (double)min_u64(m->rtt_us, LINKSTATS_MAX_RTT_US) / 1e6;
    return (double)rounds * rtt + (double)bytes / rate;
}

size_t planner_bridge_upto_gap(const struct link_metrics *m, const struct planner_limits *lim,
                               const uint64_t *holes, size_t nholes)
{
    uint64_t gap = planner_gap(m, lim);
    size_t k = 0;
    while (k < nholes && holes[k] <= gap)
        k++;
    return k;
}

size_t planner_bridge(const struct link_metrics *m, const struct planner_limits *lim,
                      const uint64_t *holes, size_t nholes, uint64_t wanted)
{
    uint64_t hi = min_u64(PLANNER_MAX_GAP, lim->max_fetch);
    size_t most = 0;
    while (most < nholes && holes[most] <= hi)
        most++;
    if (m == NULL || !m->rtt_known || link_rate(m, 1) <= 0)
        return planner_bridge_upto_gap(m, lim, holes, most);
    /* Bridging the k smallest holes leaves nholes + 1 - k requests; sizes are clamped so
     * that the sum cannot wrap (a file is smaller than 2^63 bytes anyway). */
    uint64_t bytes = wanted, requests = (uint64_t)nholes + 1;
    double best_cost = batch_seconds(m, lim, requests, bytes);
    size_t best = 0;
    for (size_t k = 1; k <= most; k++) {
        bytes = bytes > UINT64_MAX - holes[k - 1] ? UINT64_MAX : bytes + holes[k - 1];
        double cost = batch_seconds(m, lim, requests - k, bytes);
        if (cost < best_cost) {
            best_cost = cost;
            best = k;
        }
    }
    return best;
}

unsigned planner_streams(const struct link_metrics *m, const struct planner_limits *lim)
{
    uint64_t most = lim->max_streams > 0 ? lim->max_streams : 1;
    if (m == NULL || !m->conn_known || !m->link_known || m->conn_bps == 0)
        return (unsigned)most;
    uint64_t link = min_u64(m->link_bps, LINKSTATS_MAX_BPS);
    uint64_t need = (link + m->conn_bps - 1) / m->conn_bps;
    return (unsigned)clamp(need + 1, 1, most);
}

uint64_t planner_piece(const struct link_metrics *m, const struct planner_limits *lim,
                       uint64_t total)
{
    uint64_t most = lim->max_fetch > 0 ? lim->max_fetch : 1;
    uint64_t bdp = planner_bdp(m);
    if (bdp == 0 || total == 0)
        return most;
    unsigned streams = planner_streams(m, lim);
    uint64_t share = total / streams + (total % streams != 0);
    uint64_t floor = bdp < PLANNER_MIN_PIECE ? PLANNER_MIN_PIECE : bdp;
    return clamp(share > floor ? share : floor, 1, most);
}

static uint64_t open_clamp(uint64_t v, const struct planner_open_limits *lim)
{
    uint64_t lo = lim->min_bytes > 0 ? lim->min_bytes : 1;
    uint64_t hi = lim->max_bytes > lo ? lim->max_bytes : lo;
    return clamp(v, lo, hi);
}

/* An open's first request and first window: rtt x bandwidth / PLANNER_OPEN_DIV, never less
 * than PLANNER_MIN_PIECE. */
static uint64_t open_piece(uint64_t bdp)
{
    uint64_t piece = bdp / PLANNER_OPEN_DIV;
    return piece > PLANNER_MIN_PIECE ? piece : PLANNER_MIN_PIECE;
}

uint64_t planner_open_prefix(const struct link_metrics *m, const struct planner_open_limits *lim)
{
    uint64_t bdp = planner_bdp(m);
    if (bdp == 0)
        return open_clamp(lim->default_prefix, lim);
    /* A request has fixed costs besides the round trip (upstream, and each miss is a
     * worker's read and libhdf5's next step): never plan less than PLANNER_MIN_PIECE. */
    return open_clamp(open_piece(bdp), lim);
}

bool planner_whole_file(const struct link_metrics *m, const struct planner_open_limits *lim,
                        uint64_t size)
{
    if (m == NULL || !m->rtt_known || !(m->link_known || m->conn_known) || lim->whole_rtts == 0 ||
        size > lim->whole_max)
        return false;
    /* The pieces of the file go over several connections at once: the link's rate, when it
     * has been seen, else one connection's (a lower bound of it). */
    uint64_t bps = m->link_known ? m->link_bps : m->conn_bps;
    if (m->link_known && m->conn_known && m->conn_bps > bps)
        bps = m->conn_bps;
    uint64_t rtt = min_u64(m->rtt_us, LINKSTATS_MAX_RTT_US);
    bps = min_u64(bps, LINKSTATS_MAX_BPS);
    /* rtt x bps < 6e18 (see planner_bdp), so per_rtt < 6e12 and whole_rtts (at most
     * PLANNER_MAX_WHOLE_RTTS) times it fits. */
    uint64_t per_rtt = rtt * bps / 1000000u;
    unsigned rtts =
        lim->whole_rtts < PLANNER_MAX_WHOLE_RTTS ? lim->whole_rtts : PLANNER_MAX_WHOLE_RTTS;
    return size <= (uint64_t)rtts * per_rtt;
}

void planner_meta_window(const struct link_metrics *m, const struct planner_open_limits *lim,
                         uint64_t *first, uint64_t *most)
{
    uint64_t bdp = planner_bdp(m);
    if (bdp == 0) {
        /* Unmeasured: half the configured prefix, growing to the prefix. */
        *first = open_clamp(lim->default_prefix / 2, lim);
        *most = open_clamp(lim->default_prefix, lim);
    } else {
        uint64_t grown = bdp > UINT64_MAX / 4 ? bdp : 4 * bdp;
        *first = open_clamp(open_piece(bdp), lim);
        *most = open_clamp(grown > PLANNER_MIN_WINDOW_MOST ? grown : PLANNER_MIN_WINDOW_MOST, lim);
    }
    if (*most < *first)
        *most = *first;
}
