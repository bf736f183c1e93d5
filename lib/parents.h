/*
 * parents.h - site caches ("parents") that block-range fetches go through
 * before the origin.
 *
 * A parent is an nginx site cache made by scripts/h5chunkd-site-cache: it
 * answers GET /<scheme>/<host[:port]>/<path>?<query> with the origin's
 * answer for <scheme>://<host[:port]>/<path>?<query>, cached per slice.
 * This module owns which parent a request goes to and whether a parent is
 * used at all:
 *
 * - The parents of one request are ranked by rendezvous (highest random
 *   weight) hashing of (file, slice of the request's first byte, parent),
 *   so every workstation sends a given slice to the same site cache and the
 *   site caches share the work without holding the same slices twice.
 * - A circuit breaker per parent: a connect error or timeout marks it down
 *   at once, other failures after PARENTS_FAILS_TO_TRIP in a row.  A down
 *   parent gets one trial request after retry_ms (doubling up to
 *   retry_max_ms while trials fail); its requests go to the next parent in
 *   the ranking, and to the origin when none is up.
 * - Files whose answers through a parent were stale (another validator than
 *   the origin's) are remembered for a while, so that the next request for
 *   them asks the parent to refresh its copy (header PARENTS_REFRESH_HEADER).
 *
 * Every function is thread-safe; the fetch loop thread routes and reports,
 * HTTP threads render the counters.
 */
#ifndef H5CD_PARENTS_H
#define H5CD_PARENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coalesce.h"

#define PARENTS_MAX           16 /* parents one daemon may name */
#define PARENTS_FAILS_TO_TRIP 3  /* failures in a row (not connect errors) that trip a breaker */
#define PARENTS_STALE_SLOTS   64 /* files remembered as stale in some parent */
#define PARENTS_STALE_TTL_MS  (10u * 60u * 1000u)
/* Sent with a request whose answer must come from the origin, not the parent's copy
 * (the generated nginx configuration bypasses its cache for it and stores the answer). */
#define PARENTS_REFRESH_HEADER "X-H5chunkd-Refresh: 1"
/* What the site cache answers for a host it does not serve: not the origin's word, so
 * the request goes on to the next parent or the origin. */
#define PARENTS_STATUS_NOT_SERVED 421

struct parents;

struct parents_config {
    const char *const *urls; /* http(s)://HOST[:PORT][/PREFIX], no query; copied */
    size_t count;            /* 1..PARENTS_MAX */
    uint64_t slice;          /* the site caches' slice size: a power of two */
    unsigned retry_ms;       /* first wait before a down parent gets a trial request */
    unsigned retry_max_ms;   /* longest such wait */
};

/* Where one request stands: filled by parents_route_begin, advanced by the rest. */
struct parents_route {
    uint8_t order[PARENTS_MAX]; /* parent indices, best first */
    uint8_t count;
    uint8_t next;     /* order[next] is the next candidate */
    int current;      /* parent of the hop in flight, -1 for the origin */
    bool trial;       /* the hop in flight is the trial request of a down parent */
    bool refresh;     /* ask the parent to refresh its copy */
    bool refreshed;   /* a refresh was already asked for this request */
    bool origin_only; /* give up on parents for this request */
    uint64_t key;     /* hash of the file (URL without query) */
};

enum parents_outcome {
    PARENTS_SERVED,      /* the parent gave an answer we accept */
    PARENTS_FAILED,      /* connect error, 5xx, a response failing our checks */
    PARENTS_TIMEOUT,     /* transfer timeout: trips the breaker at once */
    PARENTS_UNREACHABLE, /* cannot connect: trips the breaker at once */
    PARENTS_NOT_SERVED,  /* the parent does not serve this host (421) */
    PARENTS_ABANDONED,   /* the request ended (cancelled) before the parent answered */
};

/* Checks and copies the configuration.  0, -EINVAL (msg says why) or -ENOMEM. */
int parents_new(const struct parents_config *cfg, struct parents **out, char *msg, size_t msglen);
/* NULL is a no-op. */
void parents_free(struct parents *parents);

/* Checks one parent URL as parents_new would: 0, or -EINVAL with msg. */
int parents_check_url(const char *url, char *msg, size_t msglen);

/* Ranks the parents for a request of origin_url starting at offset. */
void parents_route_begin(struct parents *parents, struct parents_route *route,
                         const char *origin_url, uint64_t offset);

/*
 * The URL to send the next hop to: a malloc'd URL of the best parent that is
 * up (or due a trial), with route->current set; or NULL with route->current
 * -1 when the hop must go to the origin (no parent left, a URL a parent
 * cannot carry, or out of memory).
 */
char *parents_route_next(struct parents *parents, struct parents_route *route,
                         const char *origin_url);

/* Reports how the hop sent to route->current went (nothing when it went to the
 * origin) and updates that parent's breaker and counters. */
void parents_report(struct parents *parents, struct parents_route *route,
                    enum parents_outcome outcome, uint64_t bytes);

/* An answer through a parent carried another validator than expected: the parent's
 * copy is stale.  Returns true when the request should be sent again to the same
 * parent with a refresh (first time), false when it must go to the origin. */
bool parents_stale(struct parents *parents, struct parents_route *route);

/*
 * Splits the fetches of a plan at multiples of the slice size, so that each
 * request falls inside one slice of one parent.  Each fetch must start and
 * end on a multiple of `unit` (the cache block), which divides the slice.
 * 0 or -ENOMEM (the plan is unchanged).  Only plan->fetches and nfetches are
 * kept meaningful.
 */
int parents_split_plan(struct coalesce_plan *plan, uint64_t slice);

/* The parents' state and counters as a new JSON array, or NULL. */
json_t *parents_stats_json(struct parents *parents);
/* Appends the counters in Prometheus text format to a malloc'd string, or NULL. */
char *parents_render_prometheus(struct parents *parents);

#endif
