/*
 * fetch.h - concurrent upstream HTTP range requests.
 *
 * One libuv loop thread drives libcurl's multi interface
 * (curl_multi_socket_action with uv_poll and uv_timer): many requests in
 * flight, connections reused, HTTP/2 when the server offers it, a limit on
 * connections per host and overall.  Other threads submit requests through
 * a locked queue and uv_async_send; completion callbacks run on the loop
 * thread and must not block (signal a condition variable, nothing more).
 *
 * Every response is checked before it is reported as FETCH_OK: status 206
 * with a Content-Range that matches the request (a range that runs past
 * the end of the file is answered up to its end), a body of exactly that
 * length; 200 with the whole body only when it fits in the requested
 * range (the whole file was asked for).  The body must carry no
 * Content-Encoding but identity and no Transfer-Encoding but chunked, and
 * must not run past the length its headers announce (the transfer is cut at
 * the first extra byte).  When the request names the validator the file was
 * opened with, an answer without that validator (its ETag, or its
 * Last-Modified for a file opened without an ETag) is a change, like one
 * with another value.  Error bodies are read up to
 * H5CD_MAX_ERROR_BODY_BYTES, then the connection is dropped.
 *
 * Redirects are followed here, not by libcurl: each Location is resolved
 * against the URL that answered (libcurl's URL API) and judged by the URL
 * policy before any request is made to it, and every connection's address
 * is judged by the policy when its socket is opened (the address connected
 * to is the address judged: no window for DNS rebinding), up to
 * max_redirects hops.  The URL that finally answered is reported
 * (fetch_result.final_url) so that callers may remember it.  5xx, 408,
 * 429, timeouts, resets, short bodies and mismatched ranges are retried
 * with exponential backoff and jitter (Retry-After honoured, clamped),
 * bounded by a count and a time budget.
 *
 * With parents (site caches, parents.h), each hop goes first to the parent
 * its file and slice rank best, as /<scheme>/<host>/<path>?<query>; the
 * parent's answer passes every check above.  A parent that fails the hop
 * (cannot connect, times out, 5xx, an answer failing a check) is reported
 * to its circuit breaker and the hop goes at once to the next parent, then
 * to the origin, without counting as an attempt.  An answer with another
 * validator than expected is asked again of the same parent with a
 * refresh, then of the origin, whose word is final.  The address of a
 * parent is not judged by the URL policy: the operator named it.
 */
#ifndef H5CD_FETCH_H
#define H5CD_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h5cd_limits.h"
#include "linkstats.h"
#include "parents.h"
#include "stats.h"
#include "urlpolicy.h"

struct fetch_engine;

struct fetch_config {
    unsigned max_per_host; /* CURLMOPT_MAX_HOST_CONNECTIONS */
    unsigned max_total;    /* CURLMOPT_MAX_TOTAL_CONNECTIONS */
    unsigned connect_timeout_ms;
    unsigned timeout_ms;      /* one attempt */
    unsigned retries;         /* attempts after the first */
    unsigned retry_base_ms;   /* first backoff delay */
    unsigned retry_budget_ms; /* no new attempt starts after this much time */
    unsigned max_redirects;   /* hops followed per attempt, at most H5CD_MAX_REDIRECTS */
    const char *user_agent;
    const struct urlpolicy *policy;     /* borrowed; checks addresses and redirect targets;
                                         * fetch_set_policy replaces it */
    struct h5cd_stats *stats;           /* borrowed; upstream_* counters, may be NULL */
    struct parents *parents;            /* borrowed; site caches tried before the origin (see
                                         * parents.h), may be NULL */
    unsigned parent_connect_timeout_ms; /* towards a parent; 0 = connect_timeout_ms */
    unsigned parent_timeout_ms;         /* one request to a parent; 0 = timeout_ms */
    struct linkstats *links;            /* borrowed; every answer's timings are recorded under
                                         * the host that gave it (linkstats.h); may be NULL */
};

enum fetch_status {
    FETCH_OK = 0,
    FETCH_ERR_UPSTREAM,  /* bad status, malformed response, gave up retrying */
    FETCH_ERR_TIMEOUT,   /* every attempt timed out */
    FETCH_ERR_NOT_FOUND, /* 404 or 410 */
    FETCH_ERR_DENIED,    /* 401/403 upstream (policy_refused false), or the URL policy
                          * refused an address or a redirect target (policy_refused true) */
    FETCH_ERR_RANGE,     /* 416: offset at or past the end; total_size set when known */
    FETCH_ERR_CHANGED,   /* the validator differs from expect_validator; validator holds the new one
                          */
    FETCH_ERR_CANCELLED, /* the engine is shutting down */
};

struct fetch_result {
    enum fetch_status status;
    int http_status;     /* last HTTP status seen, 0 if none */
    uint64_t offset;     /* as requested */
    uint64_t length;     /* as requested */
    uint8_t *data;       /* FETCH_OK: the body, data_len bytes; else NULL */
    bool data_borrowed;  /* data is the caller's buffer (fetch_submit_into): not freed here */
    size_t data_len;     /* == length, or less when the file ends inside the range */
    uint64_t total_size; /* file size from Content-Range (or 200 body); UINT64_MAX if unknown */
    char validator[H5CD_MAX_VALIDATOR_BYTES]; /* "etag:<ETag>" or "lm:<Last-Modified>" or "" */
    unsigned attempts;
    unsigned redirects;  /* hops followed by the last attempt */
    bool policy_refused; /* FETCH_ERR_DENIED by our policy, not by upstream */
    char *final_url;     /* the URL that gave the last answer (after redirects); NULL when
                          * no request was made; freed by fetch_result_free */
    char error[H5CD_MAX_ERROR_MESSAGE]; /* a sentence for logs and clients when not OK */
};

/* Runs on the loop thread.  Takes ownership of res: free it with fetch_result_free(). */
typedef void (*fetch_done_fn)(struct fetch_result *res, void *arg);

/* Starts the loop thread.  Returns 0 or a negative errno. */
int fetch_new(const struct fetch_config *cfg, struct fetch_engine **out);
/* Fails everything pending with FETCH_ERR_CANCELLED (callbacks run), stops
 * and joins the loop thread.  NULL is a no-op. */
void fetch_free(struct fetch_engine *engine);

/*
 * Queues a GET of bytes [offset, offset+length) of url (1 <= length <=
 * H5CD_MAX_FETCH_BYTES).  If expect_validator is non-empty and the response
 * carries a different validator, the result is FETCH_ERR_CHANGED and no
 * data is returned.  Thread-safe.  Returns 0 (done will be called exactly
 * once, on the loop thread) or a negative errno (done is never called).
 */
int fetch_submit(struct fetch_engine *engine, const char *url, uint64_t offset, uint64_t length,
                 const char *expect_validator, fetch_done_fn done, void *arg);

/*
 * Reports, on the loop thread, that the first `landed` bytes of the range
 * are the file's bytes: they were written by an answer whose status (206),
 * Content-Range (the range asked, of a file of total_size bytes) and
 * validator (the one expected) all checked, and they are never written
 * again (a retry skips them).  landed only grows.
 */
typedef void (*fetch_progress_fn)(void *arg, size_t landed, uint64_t total_size);

/*
 * fetch_submit, but the body lands in the caller's buffer dst (`length`
 * bytes, valid until done is called; the engine never writes to it after),
 * and progress, if not NULL, is told as it lands, so that the caller may use
 * the bytes [0, landed) while the rest is still on the wire (its reads are
 * ordered after the callback's report, e.g. by a lock the callback takes).
 * Progress is reported only with a non-empty expect_validator: without one,
 * a retry could bring another version's bytes.  On FETCH_OK, res->data is
 * dst and res->data_borrowed is true.
 */
int fetch_submit_into(struct fetch_engine *engine, const char *url, uint64_t offset,
                      uint64_t length, const char *expect_validator, uint8_t *dst,
                      fetch_progress_fn progress, fetch_done_fn done, void *arg);

/* fetch_submit for an answer that must be the origin's current one: through a parent
 * the request asks it to refresh its copy (a revalidation).  Without parents, the same. */
int fetch_submit_fresh(struct fetch_engine *engine, const char *url, uint64_t offset,
                       uint64_t length, const char *expect_validator, fetch_done_fn done,
                       void *arg);

void fetch_result_free(struct fetch_result *res);

/*
 * Replaces the URL policy used for connections and redirects opened from
 * now on (SIGHUP).  The old policy may still be read by attempts already
 * under way: free it only after fetch_free.  Any thread.
 */
void fetch_set_policy(struct fetch_engine *engine, const struct urlpolicy *policy);

#endif
