/*
 * linkstats.h - what each upstream host's link has shown: round-trip time
 * and bandwidth, measured from the daemon's own fetches.
 *
 * The fetch engine reports the timings libcurl measured for every answer
 * (linkstats_record, loop thread); the planner and /v1/stats read smoothed
 * values (linkstats_get, linkstats_snapshot, any thread).  One mutex
 * guards a fixed table of LINKSTATS_MAX_HOSTS hosts: a new host replaces
 * the one seen least recently, so memory never grows with the hosts seen.
 *
 * Three estimates per host, the first two exponentially weighted moving
 * averages (weight 1/LINKSTATS_EWMA_DIV for the new sample):
 *  - rtt: request sent to first byte of the answer (libcurl's
 *    STARTTRANSFER minus PRETRANSFER: connection setup and TLS excluded);
 *  - conn_bps: one transfer's body bytes over its body time, for bodies of
 *    at least LINKSTATS_MIN_BW_BYTES lasting at least LINKSTATS_MIN_BW_US;
 *  - link_bps: bytes over time of the host's busy periods (the union of
 *    overlapping body times), i.e. what all connections together carried.
 *    A period with few transfers shows only a lower bound of what the link
 *    can carry, so this one follows the largest rate seen: a higher sample
 *    replaces it, a lower one pulls it down by 1/LINKSTATS_LINK_DECAY_DIV of
 *    the difference (a link that became slower is followed, slowly).
 * Samples are clamped (LINKSTATS_MAX_RTT_US, LINKSTATS_MAX_BPS) so that
 * one odd answer cannot make later arithmetic overflow.
 */
#ifndef H5CD_LINKSTATS_H
#define H5CD_LINKSTATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LINKSTATS_MAX_HOSTS      64
#define LINKSTATS_HOST_BYTES     272                  /* "host:port", host at most 255 */
#define LINKSTATS_EWMA_DIV       4                    /* new sample weighs 1/4 */
#define LINKSTATS_LINK_DECAY_DIV 16                   /* link_bps drops 1/16 of the way */
#define LINKSTATS_MIN_BW_BYTES   (64u * 1024u)        /* shorter bodies say little of bandwidth */
#define LINKSTATS_MIN_BW_US      500u                 /* body time below this is clock noise */
#define LINKSTATS_MIN_LINK_BYTES (256u * 1024u)       /* busy period worth a link sample */
#define LINKSTATS_MAX_RTT_US     (60ull * 1000000ull) /* one minute */
#define LINKSTATS_MAX_BPS        (100ull * 1000000000ull) /* 100 GB/s */

/* libcurl's timings of one finished answer, in microseconds from the start of the transfer. */
struct linkstats_sample {
    uint64_t pretransfer_us;   /* CURLINFO_PRETRANSFER_TIME_T: request about to be sent */
    uint64_t starttransfer_us; /* CURLINFO_STARTTRANSFER_TIME_T: first byte received */
    uint64_t total_us;         /* CURLINFO_TOTAL_TIME_T */
    uint64_t body_bytes;       /* CURLINFO_SIZE_DOWNLOAD_T */
    uint64_t end_us;           /* a monotonic clock (any origin) when the answer ended */
};

/* The smoothed estimates of one host; a value is meaningful only when its flag is set. */
struct link_metrics {
    bool rtt_known;
    bool conn_known;
    bool link_known;
    uint64_t rtt_us;
    uint64_t conn_bps; /* bytes per second one connection carried */
    uint64_t link_bps; /* bytes per second all connections together carried */
};

/* One host's row for /v1/stats. */
struct linkstats_host {
    char host[LINKSTATS_HOST_BYTES];
    struct link_metrics metrics;
    uint64_t requests;    /* answers recorded */
    uint64_t bytes;       /* body bytes recorded */
    uint64_t rtt_samples; /* samples behind each estimate */
    uint64_t conn_samples;
    uint64_t link_samples;
};

struct linkstats;

/* An empty table, or NULL when out of memory. */
struct linkstats *linkstats_new(void);
/* NULL is a no-op. */
void linkstats_free(struct linkstats *links);

/*
 * Writes the key of url's host ("host:port", host lower-cased, the
 * scheme's default port when none is given) into key.  0, or -EINVAL
 * (not a URL with a host) / -ENAMETOOLONG (does not fit in cap).
 */
int linkstats_host_of(const char *url, char *key, size_t cap);

/* Folds one answer's timings into host's estimates.  A sample whose times are not ordered
 * (first byte before the request, end before first byte) is ignored.  Any thread. */
void linkstats_record(struct linkstats *links, const char *host,
                      const struct linkstats_sample *sample);

/* The estimates for host: true, or false (out zeroed) when nothing was recorded for it. */
bool linkstats_get(struct linkstats *links, const char *host, struct link_metrics *out);

/* Copies up to cap hosts' rows into out, most recently seen first; returns how many. */
size_t linkstats_snapshot(struct linkstats *links, struct linkstats_host *out, size_t cap);

#endif
