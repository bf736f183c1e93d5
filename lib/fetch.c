/*
 * fetch.c - the upstream fetch engine: one thread running a libuv loop that
 * drives libcurl's multi interface through its socket and timer callbacks
 * (the wiring of curl's docs/examples/multi-uv.c), the checks every
 * response must pass, redirects (followed hop by hop here, never by
 * libcurl, so that the policy judges every URL before a byte is sent to
 * it) and the retry policy.
 *
 * Threads: fetch_new and fetch_free run on the owner's thread, fetch_submit
 * on any thread (a mutex-guarded queue and uv_async_send); everything else
 * - curl callbacks, retry timers, completion callbacks - runs on the loop
 * thread.  The loop thread must never block: no disk I/O, no sleeping, no
 * lock held across a callback.  The process-wide curl_global_init() is
 * done once, by the first fetch_new (pthread_once: it is not thread-safe
 * itself), and never undone: engines may come and go.  A NULL cfg->policy
 * means no address or redirect checks at all (for tests, never the daemon).
 */
#include "fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <uv.h>

#include "httprange.h"
#include "log.h"

#define RANGE_SPEC_BYTES  48 /* "A-B", two 20-digit numbers */
#define MAX_BACKOFF_SHIFT 20 /* base * 2^20 ms outlasts any retry budget */
#define ETAG_PREFIX       "etag:"
#define LM_PREFIX         "lm:"

/* What the headers of the current hop said; reset on every status line. */
struct response {
    long status;
    bool has_range;       /* Content-Range: bytes A-B/N */
    bool has_unsatisfied; /* Content-Range: bytes, star, slash, N (a 416) */
    uint64_t range_first;
    uint64_t range_last;
    uint64_t range_total; /* UINT64_MAX for '*' */
    bool has_length;
    uint64_t content_length;
    long retry_after_s; /* -1 when absent */
    char etag[H5CD_MAX_VALIDATOR_BYTES - sizeof(ETAG_PREFIX) + 1];
    char last_modified[H5CD_MAX_VALIDATOR_BYTES - sizeof(LM_PREFIX) + 1];
    const char *malformed; /* why the headers are unusable, or NULL */
    const char *encoded;   /* why the body is not the file's bytes (a coding), or NULL */
    bool has_location;
    bool location_too_long;
    char location[H5CD_MAX_URL_BYTES + 1];
};

enum verdict { VERDICT_OK, VERDICT_FAIL, VERDICT_RETRY, VERDICT_REDIRECT };

struct request {
    struct request *next; /* submission queue, then the engine's active list */
    struct request *prev;
    struct fetch_engine *engine;
    char *url;     /* as submitted; every attempt starts here */
    char *hop_url; /* the URL of the hop in flight (url, or a redirect target) */
    uint64_t offset;
    uint64_t length;
    char expect[H5CD_MAX_VALIDATOR_BYTES];
    fetch_done_fn done;
    void *arg;
    uint64_t submitted_ms;
    struct fetch_result *res; /* allocated up front so that done can always be called */
    uint8_t *body;            /* `length` bytes */
    size_t body_len;
    bool borrowed;              /* body is the caller's (fetch_submit_into): never freed here */
    fetch_progress_fn progress; /* NULL: the body is reported whole, at the end */
    size_t landed;              /* body[0 .. landed) reported to progress: never written again */
    uv_timer_t retry_timer;     /* freed with the request in its close callback */
    CURL *easy;                 /* the attempt in flight, or NULL */
    /* Per hop. */
    bool overflow;       /* body longer than its headers or the request allow */
    bool body_capped;    /* a non-2xx body reached H5CD_MAX_ERROR_BODY_BYTES: dropped */
    size_t head_bytes;   /* header bytes of this hop so far, 1xx answers included */
    size_t discarded;    /* bytes of a non-2xx body read so far */
    bool ignored_range;  /* 200 answering a range that is not the whole file */
    bool policy_refused; /* an address was refused at connect time */
    bool hop_judged;     /* hop_trusted was decided at this hop's first body byte */
    bool hop_trusted;    /* this hop's body is reported to progress as it lands */
    struct response resp;
    char curl_error[CURL_ERROR_SIZE];
    /* The last failure, reported if retries run out. */
    bool last_was_timeout;
    long retry_after_s;
    char last_error[H5CD_MAX_ERROR_MESSAGE];
    /* Site caches (engine->cfg.parents): where this hop goes. */
    struct parents_route route;
    char *wire_url;                 /* the parent's URL for hop_url, or NULL: the origin */
    bool rerouting;                 /* the next start_hop keeps the route's ranking */
    bool fresh;                     /* through a parent, always with a refresh */
    struct curl_slist *hop_headers; /* engine->headers plus a refresh, or NULL */
};

struct sockctx {
    uv_poll_t poll; /* first: the close callback casts back */
    curl_socket_t fd;
    struct fetch_engine *engine;
};

struct fetch_engine {
    struct fetch_config cfg;
    char *user_agent;
    struct curl_slist *headers;
    uv_loop_t loop;
    uv_async_t wakeup;
    uv_timer_t curl_timer;
    CURLM *multi;
    pthread_t thread;
    uint64_t rng;                   /* loop thread */
    struct request *active;         /* loop thread: accepted, not yet finished */
    pthread_mutex_t lock;           /* guards the four below */
    const struct urlpolicy *policy; /* replaces cfg.policy: fetch_set_policy swaps it */
    struct request *queue_head;
    struct request *queue_tail;
    bool shutdown;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* xorshift64*: jitter only needs to be spread, not unpredictable. */
static uint64_t next_random(struct fetch_engine *engine)
{
    uint64_t x = engine->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    engine->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void set_error(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, H5CD_MAX_ERROR_MESSAGE, fmt, ap);
    va_end(ap);
    if (n < 0)
        buf[0] = '\0';
    /* A longer sentence is cut by vsnprintf; messages are built from bounded parts. */
}

/* ---- header parsing ---- */

/* "bytes A-B/N", "bytes A-B/" + "*" or "bytes " + "*" + "/N"; nothing else. */
static bool parse_content_range(const char *value, struct response *r)
{
    const char *p = value;
    uint64_t first = 0, last = 0, total = UINT64_MAX;
    bool unsatisfied = false;
    if (strncmp(p, "bytes ", 6) != 0)
        return false;
    p += 6;
    if (*p == '*') {
        unsatisfied = true;
        p++;
    } else {
        if (!httprange_read_decimal(&p, &first) || *p++ != '-' ||
            !httprange_read_decimal(&p, &last) || last < first)
            return false;
    }
    if (*p++ != '/')
        return false;
    if (*p == '*' && !unsatisfied)
        p++;
    else if (!httprange_read_decimal(&p, &total))
        return false;
    if (*p != '\0' || (!unsatisfied && total != UINT64_MAX && last >= total))
        return false;
    r->has_unsatisfied = unsatisfied;
    r->has_range = !unsatisfied;
    r->range_first = first;
    r->range_last = last;
    r->range_total = total;
    return true;
}

/* Delta seconds or an HTTP date; clamped to [0, H5CD_MAX_RETRY_AFTER_SECONDS]. */
static bool parse_retry_after(const char *value, long *out)
{
    const char *p = value;
    uint64_t seconds;
    if (httprange_read_decimal(&p, &seconds)) {
        if (*p != '\0')
            return false;
    } else {
        time_t when = curl_getdate(value, NULL);
        if (when == -1)
            return false;
        time_t now = time(NULL);
        seconds = when > now ? (uint64_t)(when - now) : 0;
    }
    *out = seconds > H5CD_MAX_RETRY_AFTER_SECONDS ? H5CD_MAX_RETRY_AFTER_SECONDS : (long)seconds;
    return true;
}

/* Copies value into dst (capacity cap) or returns false if it does not fit. */
static bool copy_bounded(char *dst, size_t cap, const char *value)
{
    size_t len = strlen(value);
    if (len >= cap)
        return false;
    memcpy(dst, value, len + 1);
    return true;
}

static void response_reset(struct response *r)
{
    memset(r, 0, sizeof(*r));
    r->retry_after_s = -1;
    r->range_total = UINT64_MAX;
}

/* "HTTP/1.1 206 Partial Content" or "HTTP/2 206": a new hop begins. */
static void parse_status_line(const char *line, struct response *r)
{
    response_reset(r);
    const char *p = strchr(line, ' ');
    uint64_t code = 0;
    if (p != NULL)
        p++;
    if (p == NULL || !httprange_read_decimal(&p, &code) || code < 100 || code > 999 ||
        (*p != ' ' && *p != '\0'))
        r->malformed = "upstream sent a malformed status line";
    else
        r->status = (long)code;
}

/* True when every comma-separated token of value is `allowed` (empty ones are skipped). */
static bool only_coding(const char *value, const char *allowed)
{
    size_t want = strlen(allowed);
    for (const char *p = value; *p != '\0';) {
        p += strspn(p, " \t,");
        size_t len = strcspn(p, ",");
        size_t trimmed = len;
        while (trimmed > 0 && (p[trimmed - 1] == ' ' || p[trimmed - 1] == '\t'))
            trimmed--;
        if (trimmed > 0 && (trimmed != want || strncasecmp(p, allowed, want) != 0))
            return false;
        p += len;
    }
    return true;
}

static void parse_header_field(char *line, struct response *r)
{
    char *colon = strchr(line, ':');
    if (colon == NULL)
        return; /* curl has already framed the message; a stray line carries nothing we use */
    *colon = '\0';
    char *value = colon + 1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t vlen = strlen(value);
    while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
        value[--vlen] = '\0';

    if (strcasecmp(line, "content-range") == 0) {
        if (r->has_range || r->has_unsatisfied || !parse_content_range(value, r))
            r->malformed = "upstream sent a malformed Content-Range";
    } else if (strcasecmp(line, "content-length") == 0) {
        const char *p = value;
        uint64_t n = 0;
        if (!httprange_read_decimal(&p, &n) || *p != '\0' ||
            (r->has_length && n != r->content_length))
            r->malformed = "upstream sent a malformed Content-Length";
        r->has_length = true;
        r->content_length = n;
    } else if (strcasecmp(line, "etag") == 0) {
        if (!copy_bounded(r->etag, sizeof(r->etag), value))
            r->malformed = "upstream ETag is too long";
    } else if (strcasecmp(line, "last-modified") == 0) {
        if (!copy_bounded(r->last_modified, sizeof(r->last_modified), value))
            r->malformed = "upstream Last-Modified is too long";
    } else if (strcasecmp(line, "retry-after") == 0) {
        if (!parse_retry_after(value, &r->retry_after_s))
            r->retry_after_s = -1; /* an unreadable hint is no hint */
    } else if (strcasecmp(line, "content-encoding") == 0) {
        /* We asked for identity: anything else is not the file's bytes. */
        if (!only_coding(value, "identity"))
            r->encoded = "upstream sent an encoded body (Content-Encoding is not identity)";
    } else if (strcasecmp(line, "transfer-encoding") == 0) {
        /* libcurl removes chunked framing; other codings would reach us undecoded. */
        if (!only_coding(value, "chunked"))
            r->encoded = "upstream sent a Transfer-Encoding other than chunked";
    } else if (strcasecmp(line, "location") == 0) {
        r->has_location = true;
        r->location_too_long = !copy_bounded(r->location, sizeof(r->location), value);
    }
}

static bool is_success(long status)
{
    return status >= 200 && status <= 299;
}

static size_t on_header(char *data, size_t size, size_t nitems, void *userp)
{
    struct request *req = userp;
    size_t len = size * nitems;
    char line[H5CD_MAX_UPSTREAM_HEADER_BYTES + 1];
    size_t n = len;
    while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == '\r'))
        n--;
    if (n > H5CD_MAX_UPSTREAM_HEADER_BYTES) {
        req->resp.malformed = "upstream sent a header line that is too long";
        return 0; /* aborts the transfer */
    }
    req->head_bytes += len;
    if (req->head_bytes > H5CD_MAX_UPSTREAM_HEAD_BYTES) {
        /* Endless headers (or endless 1xx answers) would hold the request until its timeout. */
        req->resp.malformed = "upstream sent too many header bytes";
        return 0;
    }
    memcpy(line, data, n);
    line[n] = '\0';
    if (memchr(line, '\0', n) != NULL) {
        req->resp.malformed = "upstream sent a NUL byte in a header";
        return 0;
    }
    if (strncmp(line, "HTTP/", 5) == 0)
        parse_status_line(line, &req->resp);
    else if (n > 0)
        parse_header_field(line, &req->resp);
    if (req->resp.encoded != NULL && is_success(req->resp.status))
        return 0; /* not one byte of an encoded body is read */
    return len;
}

/* ---- body and sockets ---- */

/* The most body bytes the headers of the current answer allow. */
static uint64_t announced_length(const struct request *req)
{
    const struct response *r = &req->resp;
    uint64_t limit = UINT64_MAX;
    if (r->has_range)
        limit = r->range_last - r->range_first + 1;
    if (r->has_length && r->content_length < limit)
        limit = r->content_length;
    return limit;
}

static bool validator_matches(struct request *req);

/*
 * Whether this hop's body may be reported as it lands (fetch_submit_into):
 * a 206 whose headers say, before its first byte, everything judge_http
 * will check at its end (the range asked, a known total, the expected
 * validator), so that its bytes are the file's bytes however the transfer
 * ends.  Decided once, at the hop's first body byte.
 */
static bool hop_trusted(struct request *req)
{
    if (req->hop_judged)
        return req->hop_trusted;
    req->hop_judged = true;
    const struct response *r = &req->resp;
    if (r->status != 206 || r->malformed != NULL || r->encoded != NULL || req->expect[0] == '\0' ||
        !r->has_range || r->range_total == UINT64_MAX)
        return false;
    uint64_t end = req->offset + req->length; /* no overflow: checked at submit */
    if (r->range_total < end)
        end = r->range_total;
    if (end <= req->offset || r->range_first != req->offset || r->range_last != end - 1)
        return false;
    req->hop_trusted = validator_matches(req);
    return req->hop_trusted;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct request *req = userp;
    size_t len = size * nmemb;
    struct h5cd_stats *stats = req->engine->cfg.stats;
    if (stats != NULL)
        STATS_ADD(stats, upstream_bytes, len);
    long status = req->resp.status;
    if (status != 200 && status != 206) {
        /* An error page or a redirect: only its status and headers matter.  A few KiB
         * are read so that a short page keeps the connection; past that it is dropped. */
        if (len > H5CD_MAX_ERROR_BODY_BYTES - req->discarded) {
            req->body_capped = true;
            return 0;
        }
        req->discarded += len;
        return len;
    }
    if (status == 200 && req->offset != 0) {
        req->ignored_range = true;
        return 0;
    }
    if (len > announced_length(req) - req->body_len) {
        req->overflow = true;
        return 0;
    }
    if (len > req->length - req->body_len) {
        if (status == 200)
            req->ignored_range = true; /* the whole of a larger file */
        else
            req->overflow = true;
        return 0;
    }
    /* Bytes already reported stay as they are: a reader may be using them.  The answer
     * that brings them again is of the same version, or fails its checks. */
    size_t skip = req->body_len < req->landed ? req->landed - req->body_len : 0;
    skip = skip < len ? skip : len;
    memcpy(req->body + req->body_len + skip, data + skip, len - skip);
    req->body_len += len;
    if (req->progress != NULL && req->body_len > req->landed && hop_trusted(req)) {
        req->landed = req->body_len;
        req->progress(req->arg, req->landed, req->resp.range_total);
    }
    return len;
}

/* The policy in force; the lock orders this read after fetch_set_policy's write. */
static const struct urlpolicy *current_policy(struct fetch_engine *engine)
{
    pthread_mutex_lock(&engine->lock);
    const struct urlpolicy *policy = engine->policy;
    pthread_mutex_unlock(&engine->lock);
    return policy;
}

static curl_socket_t on_open_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct request *req = userp;
    const struct urlpolicy *policy = current_policy(req->engine);
    (void)purpose;
    bool to_parent = req->wire_url != NULL; /* named by the operator, not by a client */
    if (policy != NULL && !to_parent &&
        !urlpolicy_addr_allowed(policy, &addr->addr, addr->addrlen)) {
        req->policy_refused = true;
        log_warn("msg=\"upstream address refused by the URL policy\" family=%d", addr->family);
        return CURL_SOCKET_BAD;
    }
    int type = addr->socktype;
#ifdef SOCK_CLOEXEC
    type |= SOCK_CLOEXEC;
#endif
    return socket(addr->family, type, addr->protocol);
}

/* ---- completion ---- */

static void request_closed(uv_handle_t *handle)
{
    struct request *req = handle->data;
    fetch_result_free(req->res);
    if (!req->borrowed)
        free(req->body);
    free(req->wire_url);
    curl_slist_free_all(req->hop_headers);
    free(req->hop_url);
    free(req->url);
    free(req);
}

static void unlink_active(struct request *req)
{
    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        req->engine->active = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    req->next = req->prev = NULL;
}

/* Reports the result (ownership passes to done) and releases the request. */
static void finish(struct request *req, enum fetch_status status)
{
    struct fetch_engine *engine = req->engine;
    struct fetch_result *res = req->res;
    if (engine->cfg.parents != NULL)
        parents_report(engine->cfg.parents, &req->route, PARENTS_ABANDONED, 0);
    res->status = status;
    if (res->attempts > 0 && req->hop_url != NULL)
        res->final_url = strdup(req->hop_url); /* NULL when out of memory: documented */
    if (status == FETCH_OK) {
        res->data = req->body;
        res->data_len = req->body_len;
        res->data_borrowed = req->borrowed;
        req->body = NULL;
        if (!req->borrowed && res->data_len < req->length / 2) {
            uint8_t *smaller = realloc(res->data, res->data_len > 0 ? res->data_len : 1);
            if (smaller != NULL)
                res->data = smaller;
        }
        res->error[0] = '\0';
    } else {
        if (res->error[0] == '\0')
            set_error(res->error, "upstream fetch failed");
        /* A 416 or a changed validator is an answer, and a cancel is ours: not upstream errors. */
        bool upstream_error = status != FETCH_ERR_CANCELLED && status != FETCH_ERR_RANGE &&
                              status != FETCH_ERR_CHANGED;
        if (upstream_error && engine->cfg.stats != NULL)
            STATS_INC(engine->cfg.stats, upstream_errors);
        log_debug("msg=\"upstream fetch failed\" status=%d http_status=%d attempts=%u error=\"%s\"",
                  (int)status, res->http_status, res->attempts, res->error);
    }
    unlink_active(req);
    req->res = NULL;
    req->done(res, req->arg);
    uv_close((uv_handle_t *)&req->retry_timer, request_closed);
}

static void finish_with(struct request *req, enum fetch_status status, const char *msg)
{
    set_error(req->res->error, "%s", msg);
    finish(req, status);
}

static void give_up(struct request *req)
{
    struct fetch_result *res = req->res;
    set_error(res->error, "%s after %u attempt%s", req->last_error, res->attempts,
              res->attempts == 1 ? "" : "s");
    finish(req, req->last_was_timeout ? FETCH_ERR_TIMEOUT : FETCH_ERR_UPSTREAM);
}

static enum verdict retry_because(struct request *req, bool timeout, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum verdict retry_because(struct request *req, bool timeout, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(req->last_error, sizeof(req->last_error), fmt, ap);
    va_end(ap);
    if (n < 0)
        req->last_error[0] = '\0';
    req->last_was_timeout = timeout;
    return VERDICT_RETRY;
}

/* An answer, redirect target or address refused as unsafe or unusable (not a failure
 * of upstream's own making): operators watch these separately. */
static void count_refusal(const struct request *req)
{
    if (req->engine->cfg.stats != NULL)
        STATS_INC(req->engine->cfg.stats, upstream_refused);
}

static enum verdict fail_because(struct request *req, enum fetch_status status,
                                 enum fetch_status *out, const char *msg)
{
    set_error(req->res->error, "%s", msg);
    *out = status;
    return VERDICT_FAIL;
}

/* Errors that another attempt cannot cure. */
static bool curl_error_is_permanent(CURLcode code)
{
    switch (code) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_FILESIZE_EXCEEDED:
        return true;
    default:
        return false;
    }
}

static enum verdict judge_transport(struct request *req, CURLcode code, enum fetch_status *out)
{
    const char *why = req->curl_error[0] != '\0' ? req->curl_error : curl_easy_strerror(code);
    if (req->resp.encoded != NULL) {
        count_refusal(req);
        return fail_because(req, FETCH_ERR_UPSTREAM, out, req->resp.encoded);
    }
    if (req->ignored_range)
        return fail_because(req, FETCH_ERR_UPSTREAM, out,
                            "upstream ignored the Range request and sent the whole file");
    if (req->overflow) {
        count_refusal(req);
        return fail_because(req, FETCH_ERR_UPSTREAM, out,
                            "upstream sent more bytes than its answer announced");
    }
    if (req->resp.malformed != NULL)
        return fail_because(req, FETCH_ERR_UPSTREAM, out, req->resp.malformed);
    if (code == CURLE_OPERATION_TIMEDOUT)
        return retry_because(req, true, "upstream timed out (%s)", why);
    if (curl_error_is_permanent(code)) {
        set_error(req->res->error, "upstream request failed: %s", why);
        *out = FETCH_ERR_UPSTREAM;
        return VERDICT_FAIL;
    }
    return retry_because(req, false, "upstream request failed: %s", why);
}

/* 206: the range must be exactly the one asked for, trimmed at the end of the file. */
static enum verdict judge_partial(struct request *req)
{
    const struct response *r = &req->resp;
    uint64_t end = req->offset + req->length; /* no overflow: checked at submit */
    if (!r->has_range)
        return retry_because(req, false, "upstream sent 206 without a usable Content-Range");
    if (r->range_total != UINT64_MAX && r->range_total < end)
        end = r->range_total;
    if (r->range_first != req->offset || r->range_last != end - 1)
        return retry_because(req, false,
                             "upstream sent a mismatched range (bytes %" PRIu64 "-%" PRIu64
                             " for %" PRIu64 "-%" PRIu64 ")",
                             r->range_first, r->range_last, req->offset, end - 1);
    if ((uint64_t)req->body_len != r->range_last - r->range_first + 1)
        return retry_because(req, false, "upstream sent a short body (%zu of %" PRIu64 " bytes)",
                             req->body_len, r->range_last - r->range_first + 1);
    req->res->total_size = r->range_total;
    return VERDICT_OK;
}

/* 200: acceptable only as the whole file, when the whole file was asked for. */
static enum verdict judge_whole(struct request *req, enum fetch_status *out)
{
    const struct response *r = &req->resp;
    if (req->offset != 0 || req->ignored_range)
        return fail_because(req, FETCH_ERR_UPSTREAM, out,
                            "upstream ignored the Range request and sent the whole file");
    if (r->has_length && r->content_length != req->body_len)
        return retry_because(req, false, "upstream sent a short body (%zu of %" PRIu64 " bytes)",
                             req->body_len, r->content_length);
    req->res->total_size = req->body_len;
    return VERDICT_OK;
}

/*
 * Sets res->validator (the ETag, else the Last-Modified) and says whether
 * the answer is of the version expected: it must carry the same kind of
 * validator the file was opened with, with the same value.  A missing one
 * is a change too, or an origin that drops its ETag could mix versions.
 */
static bool validator_matches(struct request *req)
{
    const struct response *r = &req->resp;
    char *v = req->res->validator;
    size_t cap = sizeof(req->res->validator);
    int n = 0;
    if (r->etag[0] != '\0')
        n = snprintf(v, cap, ETAG_PREFIX "%s", r->etag);
    else if (r->last_modified[0] != '\0')
        n = snprintf(v, cap, LM_PREFIX "%s", r->last_modified);
    else
        v[0] = '\0';
    if (n < 0 || (size_t)n >= cap)
        v[0] = '\0'; /* cannot happen: the fields are sized to fit */
    const char *expect = req->expect;
    if (expect[0] == '\0')
        return true;
    if (strncmp(expect, ETAG_PREFIX, strlen(ETAG_PREFIX)) == 0)
        return strcmp(expect + strlen(ETAG_PREFIX), r->etag) == 0;
    if (strncmp(expect, LM_PREFIX, strlen(LM_PREFIX)) == 0)
        return strcmp(expect + strlen(LM_PREFIX), r->last_modified) == 0;
    return false; /* a validator of an unknown kind cannot be confirmed */
}

static enum verdict judge_http(struct request *req, long status, enum fetch_status *out)
{
    const struct response *r = &req->resp;
    char msg[H5CD_MAX_ERROR_MESSAGE];
    if (status == 200 || status == 206 || status == 416) {
        if (r->malformed != NULL)
            return fail_because(req, FETCH_ERR_UPSTREAM, out, r->malformed);
        if (r->encoded != NULL) {
            count_refusal(req);
            return fail_because(req, FETCH_ERR_UPSTREAM, out, r->encoded);
        }
        if (!validator_matches(req))
            return fail_because(req, FETCH_ERR_CHANGED, out,
                                "upstream file changed (its validator differs)");
    }
    switch (status) {
    case 206:
        return judge_partial(req);
    case 200:
        return judge_whole(req, out);
    case 416:
        if (r->has_unsatisfied)
            req->res->total_size = r->range_total;
        return fail_because(req, FETCH_ERR_RANGE, out,
                            "requested range starts at or past the end of the upstream file");
    case 404:
    case 410:
        set_error(msg, "upstream returned %ld", status);
        return fail_because(req, FETCH_ERR_NOT_FOUND, out, msg);
    case 401:
    case 403:
        set_error(msg, "upstream returned %ld", status);
        return fail_because(req, FETCH_ERR_DENIED, out, msg);
    case 301:
    case 302:
    case 303:
    case 307:
    case 308:
        return VERDICT_REDIRECT;
    default:
        break;
    }
    if (status >= 500 || status == 408 || status == 429) {
        req->retry_after_s = r->retry_after_s;
        return retry_because(req, false, "upstream returned %ld", status);
    }
    set_error(msg, "upstream returned unexpected status %ld", status);
    return fail_because(req, FETCH_ERR_UPSTREAM, out, msg);
}

/* The absolute form of the redirect target `location`, resolved against `base` by
 * libcurl's URL parser (the one that will fetch it).  NULL when unusable. */
static char *resolve_location(const char *base, const char *location)
{
    char *out = NULL;
    CURLU *h = curl_url();
    if (h == NULL)
        return NULL;
    if (curl_url_set(h, CURLUPART_URL, base, 0) == CURLUE_OK &&
        curl_url_set(h, CURLUPART_URL, location, 0) == CURLUE_OK &&
        curl_url_get(h, CURLUPART_URL, &out, 0) == CURLUE_OK) {
        char *copy = strdup(out);
        curl_free(out);
        out = copy;
    } else {
        out = NULL;
    }
    curl_url_cleanup(h);
    return out;
}

/* Decides whether the redirect just received may be followed; on VERDICT_REDIRECT,
 * req->hop_url is the next hop, already judged by the policy. */
static enum verdict next_hop(struct request *req, enum fetch_status *out)
{
    const struct response *r = &req->resp;
    char msg[H5CD_MAX_ERROR_MESSAGE];
    if (!r->has_location || r->location[0] == '\0' || r->location_too_long)
        return fail_because(req, FETCH_ERR_UPSTREAM, out,
                            r->location_too_long ? "upstream redirect target is too long"
                                                 : "upstream sent a redirect without Location");
    if (req->res->redirects >= req->engine->cfg.max_redirects) {
        set_error(msg, "upstream redirected more than %u times", req->engine->cfg.max_redirects);
        return fail_because(req, FETCH_ERR_UPSTREAM, out, msg);
    }
    char *next = resolve_location(req->hop_url, r->location);
    if (next == NULL || strlen(next) > H5CD_MAX_URL_BYTES) {
        free(next);
        return fail_because(req, FETCH_ERR_UPSTREAM, out, "upstream sent a malformed Location");
    }
    const struct urlpolicy *policy = current_policy(req->engine);
    char identity[H5CD_MAX_URL_BYTES + 1];
    struct h5cd_error err;
    if (policy != NULL && urlpolicy_check(policy, next, identity, sizeof(identity), &err) < 0) {
        free(next);
        count_refusal(req);
        req->res->policy_refused = true;
        set_error(msg, "upstream redirected to a URL the policy refuses: %s", err.message);
        return fail_because(req, FETCH_ERR_DENIED, out, msg);
    }
    free(req->hop_url);
    req->hop_url = next;
    req->res->redirects++;
    if (req->engine->cfg.stats != NULL)
        STATS_INC(req->engine->cfg.stats, upstream_redirects);
    return VERDICT_REDIRECT;
}

static void start_or_fail(struct request *req);

static void on_retry_timer(uv_timer_t *timer)
{
    start_or_fail(timer->data);
}

/* Backoff base * 2^k with full jitter in [delay/2, delay]; Retry-After wins. */
static uint64_t retry_delay_ms(struct request *req)
{
    if (req->retry_after_s >= 0)
        return (uint64_t)req->retry_after_s * 1000u;
    unsigned k = req->res->attempts - 1;
    uint64_t delay = (uint64_t)req->engine->cfg.retry_base_ms
                     << (k < MAX_BACKOFF_SHIFT ? k : MAX_BACKOFF_SHIFT);
    uint64_t half = delay / 2;
    return half + next_random(req->engine) % (delay - half + 1);
}

static void retry_or_give_up(struct request *req)
{
    const struct fetch_config *cfg = &req->engine->cfg;
    if (req->res->attempts > cfg->retries) {
        give_up(req);
        return;
    }
    uint64_t delay = retry_delay_ms(req);
    if (now_ms() + delay - req->submitted_ms > cfg->retry_budget_ms) {
        give_up(req);
        return;
    }
    log_debug("msg=\"retrying upstream request\" attempt=%u delay_ms=%" PRIu64 " reason=\"%s\"",
              req->res->attempts + 1, delay, req->last_error);
    uv_timer_start(&req->retry_timer, on_retry_timer, delay, 0);
}

static int start_hop(struct request *req);

/* How a hop sent to a parent went, for its circuit breaker.  Answers that are the
 * origin's word (redirects, 404, 401/403, 416) count as served. */
static enum parents_outcome parent_outcome(CURLcode code, long status, enum verdict verdict,
                                           enum fetch_status final)
{
    if (verdict == VERDICT_OK || verdict == VERDICT_REDIRECT)
        return PARENTS_SERVED;
    if (verdict == VERDICT_FAIL && code == CURLE_OK &&
        (final == FETCH_ERR_NOT_FOUND || final == FETCH_ERR_DENIED || final == FETCH_ERR_RANGE))
        return PARENTS_SERVED;
    if (code == CURLE_OK && status == PARENTS_STATUS_NOT_SERVED)
        return PARENTS_NOT_SERVED;
    if (code == CURLE_OPERATION_TIMEDOUT)
        return PARENTS_TIMEOUT;
    if (code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST)
        return PARENTS_UNREACHABLE;
    return PARENTS_FAILED;
}

/*
 * A hop a parent failed goes on at once to the next parent or the origin,
 * and a stale answer is asked again with a refresh: the client never sees a
 * parent's failure.  Returns true when it took the request over.
 */
static bool reroute_from_parent(struct request *req, CURLcode code, long status,
                                enum verdict verdict, enum fetch_status final)
{
    struct parents *parents = req->engine->cfg.parents;
    if (parents == NULL || req->route.current < 0)
        return false;
    if (verdict == VERDICT_FAIL && final == FETCH_ERR_CHANGED) {
        parents_stale(parents, &req->route);
    } else {
        enum parents_outcome outcome = parent_outcome(code, status, verdict, final);
        parents_report(parents, &req->route, outcome,
                       verdict == VERDICT_OK ? (uint64_t)req->body_len : 0);
        if (outcome == PARENTS_SERVED)
            return false;
    }
    log_info("msg=\"site cache failed a request, going on\" http_status=%ld error=\"%s\"", status,
             req->res->error[0] != '\0' ? req->res->error : req->last_error);
    req->res->error[0] = '\0';
    req->rerouting = true;
    int rc = start_hop(req);
    if (rc < 0) {
        set_error(req->res->error, "cannot start an upstream request: %s", strerror(-rc));
        finish(req, FETCH_ERR_UPSTREAM);
    }
    return true;
}

/* Tells the link table how long the answer took to start and to arrive, under the host
 * connected to: a site cache's answers say nothing of the link to the origin. */
static void record_link(const struct request *req, CURL *easy)
{
    struct linkstats *links = req->engine->cfg.links;
    const char *url = req->wire_url != NULL ? req->wire_url : req->hop_url;
    char host[LINKSTATS_HOST_BYTES];
    if (links == NULL || linkstats_host_of(url, host, sizeof(host)) < 0)
        return;
    curl_off_t pre = 0, start = 0, total = 0, bytes = 0;
    if (curl_easy_getinfo(easy, CURLINFO_PRETRANSFER_TIME_T, &pre) != CURLE_OK ||
        curl_easy_getinfo(easy, CURLINFO_STARTTRANSFER_TIME_T, &start) != CURLE_OK ||
        curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total) != CURLE_OK ||
        curl_easy_getinfo(easy, CURLINFO_SIZE_DOWNLOAD_T, &bytes) != CURLE_OK)
        return;
    if (pre < 0 || start <= 0 || total < 0 || bytes < 0)
        return;
    struct linkstats_sample sample = {.pretransfer_us = (uint64_t)pre,
                                      .starttransfer_us = (uint64_t)start,
                                      .total_us = (uint64_t)total,
                                      .body_bytes = (uint64_t)bytes,
                                      .end_us = uv_hrtime() / 1000u};
    linkstats_record(links, host, &sample);
}

static void attempt_done(struct request *req, CURLcode code)
{
    struct fetch_engine *engine = req->engine;
    CURL *easy = req->easy;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (code == CURLE_OK && status >= 200 && status < 400)
        record_link(req, easy);
    curl_multi_remove_handle(engine->multi, easy);
    curl_easy_cleanup(easy);
    req->easy = NULL;
    if (status != 0)
        req->res->http_status = (int)status;
    /* We cut an error body short on purpose: the answer itself is complete. */
    if (code == CURLE_WRITE_ERROR && req->body_capped)
        code = CURLE_OK;

    enum fetch_status final = FETCH_ERR_UPSTREAM;
    enum verdict verdict;
    req->retry_after_s = -1;
    if (req->policy_refused) {
        count_refusal(req);
        req->res->policy_refused = true;
        verdict = fail_because(req, FETCH_ERR_DENIED, &final,
                               "the URL policy refused an address of the upstream host");
    } else if (code != CURLE_OK) {
        verdict = judge_transport(req, code, &final);
    } else {
        verdict = judge_http(req, status, &final);
    }
    if (reroute_from_parent(req, code, status, verdict, final))
        return;
    if (verdict == VERDICT_REDIRECT)
        verdict = next_hop(req, &final);

    if (verdict == VERDICT_REDIRECT) {
        int rc = start_hop(req);
        if (rc < 0) {
            set_error(req->res->error, "cannot start an upstream request: %s", strerror(-rc));
            finish(req, FETCH_ERR_UPSTREAM);
        }
    } else if (verdict == VERDICT_OK) {
        finish(req, FETCH_OK);
    } else if (verdict == VERDICT_FAIL) {
        finish(req, final);
    } else {
        retry_or_give_up(req);
    }
}

/* ---- attempts ---- */

#define SETOPT(easy, opt, val)                                                                     \
    do {                                                                                           \
        if (curl_easy_setopt(easy, opt, val) != CURLE_OK)                                          \
            return -EINVAL;                                                                        \
    } while (0)

static int configure_easy(struct request *req, CURL *easy)
{
    const struct fetch_engine *engine = req->engine;
    const struct fetch_config *cfg = &engine->cfg;
    char range[RANGE_SPEC_BYTES];
    int n = snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, req->offset,
                     req->offset + req->length - 1);
    if (n < 0 || (size_t)n >= sizeof(range))
        return -EINVAL;
    bool to_parent = req->wire_url != NULL;
    unsigned connect_ms = to_parent && cfg->parent_connect_timeout_ms > 0
                              ? cfg->parent_connect_timeout_ms
                              : cfg->connect_timeout_ms;
    SETOPT(easy, CURLOPT_URL, to_parent ? req->wire_url : req->hop_url);
    SETOPT(easy, CURLOPT_RANGE, range); /* copied by curl */
    SETOPT(easy, CURLOPT_PRIVATE, (void *)req);
    SETOPT(easy, CURLOPT_ERRORBUFFER, req->curl_error);
    SETOPT(easy, CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(easy, CURLOPT_WRITEDATA, (void *)req);
    SETOPT(easy, CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(easy, CURLOPT_HEADERDATA, (void *)req);
    SETOPT(easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SETOPT(easy, CURLOPT_OPENSOCKETDATA, (void *)req);
    SETOPT(easy, CURLOPT_NOSIGNAL, 1L);
    SETOPT(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
    /* A hung parent must not hold a request for the origin's whole timeout. */
    SETOPT(
        easy, CURLOPT_TIMEOUT_MS,
        (long)(to_parent && cfg->parent_timeout_ms > 0 ? cfg->parent_timeout_ms : cfg->timeout_ms));
    /* Redirects are ours to follow (next_hop): libcurl must not. */
    SETOPT(easy, CURLOPT_FOLLOWLOCATION, 0L);
    /* No proxy from the environment: through a proxy the address connected to would be the
     * proxy's, and the policy could not judge the upstream's. */
    SETOPT(easy, CURLOPT_PROXY, "");
#if LIBCURL_VERSION_NUM >= 0x075500
    SETOPT(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SETOPT(easy, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SETOPT(easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    SETOPT(easy, CURLOPT_PIPEWAIT, 1L); /* prefer a multiplexed connection to a new one */
    /* Raw bytes: no CURLOPT_ACCEPT_ENCODING, so curl never decodes. */
    SETOPT(easy, CURLOPT_HTTPHEADER, req->hop_headers != NULL ? req->hop_headers : engine->headers);
    if (engine->user_agent != NULL)
        SETOPT(easy, CURLOPT_USERAGENT, engine->user_agent);
    return 0;
}

/* Appends a copy of header to *list (kept whole when out of memory).  false then. */
static bool append_header(struct curl_slist **list, const char *header)
{
    struct curl_slist *longer = curl_slist_append(*list, header);
    if (longer == NULL)
        return false;
    *list = longer;
    return true;
}

/* Chooses where the hop for req->hop_url goes: a parent (req->wire_url, with a refresh
 * header when the route asks for one) or the origin (wire_url NULL). */
static int route_hop(struct request *req)
{
    struct parents *parents = req->engine->cfg.parents;
    free(req->wire_url);
    req->wire_url = NULL;
    curl_slist_free_all(req->hop_headers);
    req->hop_headers = NULL;
    if (parents == NULL)
        return 0;
    if (!req->rerouting) {
        parents_route_begin(parents, &req->route, req->hop_url, req->offset);
        req->route.refresh |= req->fresh;
        req->route.refreshed |= req->fresh;
    }
    req->rerouting = false;
    req->wire_url = parents_route_next(parents, &req->route, req->hop_url);
    if (req->wire_url == NULL || !req->route.refresh)
        return 0;
    /* The engine's headers, then the refresh. */
    bool ok = true;
    for (const struct curl_slist *h = req->engine->headers; ok && h != NULL; h = h->next)
        ok = append_header(&req->hop_headers, h->data);
    if (!ok || !append_header(&req->hop_headers, PARENTS_REFRESH_HEADER)) {
        parents_report(parents, &req->route, PARENTS_ABANDONED, 0);
        return -ENOMEM;
    }
    return 0;
}

/* Sends the request for req->hop_url: the first hop of an attempt or a redirect's next. */
static int start_hop(struct request *req)
{
    struct fetch_engine *engine = req->engine;
    int routed = route_hop(req);
    if (routed < 0)
        return routed;
    req->body_len = 0;
    req->overflow = false;
    req->body_capped = false;
    req->discarded = 0;
    req->head_bytes = 0;
    req->ignored_range = false;
    req->policy_refused = false;
    req->hop_judged = false;
    req->hop_trusted = false;
    response_reset(&req->resp);
    req->curl_error[0] = '\0';
    req->res->validator[0] = '\0';
    req->res->total_size = UINT64_MAX;
    CURL *easy = curl_easy_init();
    if (easy == NULL)
        return -ENOMEM;
    int rc = configure_easy(req, easy);
    if (rc == 0 && curl_multi_add_handle(engine->multi, easy) != CURLM_OK)
        rc = -ENOMEM;
    if (rc < 0) {
        curl_easy_cleanup(easy);
        return rc;
    }
    req->easy = easy;
    if (engine->cfg.stats != NULL)
        STATS_INC(engine->cfg.stats, upstream_requests);
    return 0;
}

/* A new attempt starts over from the submitted URL: redirect targets (presigned
 * URLs, say) may have expired, and the policy may have changed. */
static int start_attempt(struct request *req)
{
    char *first = strdup(req->url);
    if (first == NULL)
        return -ENOMEM;
    free(req->hop_url);
    req->hop_url = first;
    req->res->redirects = 0;
    req->res->policy_refused = false;
    int rc = start_hop(req);
    if (rc < 0)
        return rc;
    req->res->attempts++;
    if (req->res->attempts > 1 && req->engine->cfg.stats != NULL)
        STATS_INC(req->engine->cfg.stats, upstream_retries);
    return 0;
}

static void start_or_fail(struct request *req)
{
    int rc = start_attempt(req);
    if (rc < 0) {
        set_error(req->res->error, "cannot start an upstream request: %s", strerror(-rc));
        finish(req, FETCH_ERR_UPSTREAM);
    }
}

/* ---- libcurl multi on libuv ---- */

static void check_done(struct fetch_engine *engine)
{
    CURLMsg *msg;
    int pending;
    while ((msg = curl_multi_info_read(engine->multi, &pending)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result; /* msg dies with the handle */
        char *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        attempt_done((struct request *)(void *)priv, code);
    }
}

static void socket_action(struct fetch_engine *engine, curl_socket_t fd, int flags)
{
    int running;
    CURLMcode mc = curl_multi_socket_action(engine->multi, fd, flags, &running);
    if (mc != CURLM_OK)
        log_error("msg=\"curl_multi_socket_action failed\" error=\"%s\"", curl_multi_strerror(mc));
    check_done(engine);
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct sockctx *ctx = (struct sockctx *)handle;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (status == 0 && (events & UV_READABLE))
        flags |= CURL_CSELECT_IN;
    if (status == 0 && (events & UV_WRITABLE))
        flags |= CURL_CSELECT_OUT;
    socket_action(ctx->engine, ctx->fd, flags);
}

static void sockctx_closed(uv_handle_t *handle)
{
    free((struct sockctx *)handle);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct fetch_engine *engine = userp;
    struct sockctx *ctx = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (ctx != NULL) {
            curl_multi_assign(engine->multi, fd, NULL);
            uv_close((uv_handle_t *)&ctx->poll, sockctx_closed);
        }
        return 0;
    }
    if (ctx == NULL) {
        ctx = calloc(1, sizeof(*ctx));
        if (ctx == NULL)
            return -1;
        int rc = uv_poll_init_socket(&engine->loop, &ctx->poll, fd);
        if (rc < 0) {
            log_error("msg=\"uv_poll_init_socket failed\" error=\"%s\"", uv_strerror(rc));
            free(ctx);
            return -1;
        }
        ctx->fd = fd;
        ctx->engine = engine;
        curl_multi_assign(engine->multi, fd, ctx);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    int rc = uv_poll_start(&ctx->poll, events, on_poll);
    if (rc < 0) {
        log_error("msg=\"uv_poll_start failed\" error=\"%s\"", uv_strerror(rc));
        return -1;
    }
    return 0;
}

static void on_curl_timeout(uv_timer_t *timer)
{
    socket_action(timer->data, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct fetch_engine *engine = userp;
    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&engine->curl_timer);
    else
        uv_timer_start(&engine->curl_timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- submission and shutdown ---- */

static void cancel(struct request *req)
{
    if (req->easy != NULL) {
        curl_multi_remove_handle(req->engine->multi, req->easy);
        curl_easy_cleanup(req->easy);
        req->easy = NULL;
    }
    uv_timer_stop(&req->retry_timer);
    finish_with(req, FETCH_ERR_CANCELLED, "the fetch engine is shutting down");
}

static void close_any(uv_handle_t *handle, void *arg)
{
    (void)arg;
    if (uv_is_closing(handle))
        return;
    uv_close(handle, handle->type == UV_POLL ? sockctx_closed : NULL);
}

/* Cancels everything, then closes every handle so that uv_run returns. */
static void stop(struct fetch_engine *engine)
{
    while (engine->active != NULL)
        cancel(engine->active);
    curl_multi_cleanup(engine->multi); /* may still call on_socket/on_curl_timer */
    engine->multi = NULL;
    uv_walk(&engine->loop, close_any, NULL);
}

static void accept_request(struct fetch_engine *engine, struct request *req, bool stopping)
{
    uv_timer_init(&engine->loop, &req->retry_timer); /* cannot fail on an initialised loop */
    req->retry_timer.data = req;
    req->prev = NULL;
    req->next = engine->active;
    if (engine->active != NULL)
        engine->active->prev = req;
    engine->active = req;
    if (stopping)
        cancel(req);
    else
        start_or_fail(req);
}

static void on_wakeup(uv_async_t *handle)
{
    struct fetch_engine *engine = handle->data;
    pthread_mutex_lock(&engine->lock);
    struct request *queue = engine->queue_head;
    engine->queue_head = engine->queue_tail = NULL;
    bool stopping = engine->shutdown;
    pthread_mutex_unlock(&engine->lock);
    while (queue != NULL) {
        struct request *req = queue;
        queue = req->next;
        accept_request(engine, req, stopping);
    }
    if (stopping)
        stop(engine);
}

static void *loop_main(void *arg)
{
    struct fetch_engine *engine = arg;
    uv_run(&engine->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int setup_multi(struct fetch_engine *engine)
{
    const struct fetch_config *cfg = &engine->cfg;
    CURLM *m = engine->multi;
    if (curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
        curl_multi_setopt(m, CURLMOPT_SOCKETDATA, (void *)engine) != CURLM_OK ||
        curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
        curl_multi_setopt(m, CURLMOPT_TIMERDATA, (void *)engine) != CURLM_OK ||
        curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)cfg->max_per_host) != CURLM_OK ||
        curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cfg->max_total) != CURLM_OK ||
        /* Idle connections kept for the next batch: libcurl's default (4 per easy handle
         * added) shrinks as our one-request handles come and go, and a cold batch that
         * fans out then opens connections again, one round trip each (a trace showed 4 of
         * 8). */
        curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)cfg->max_total) != CURLM_OK ||
        curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX) != CURLM_OK)
        return -EINVAL;
    return 0;
}

/* Starts the loop thread with every signal blocked: signals belong to the main thread. */
static int start_thread(struct fetch_engine *engine)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&engine->thread, NULL, loop_main, engine);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -rc;
}

static void engine_destroy(struct fetch_engine *engine)
{
    curl_slist_free_all(engine->headers);
    free(engine->user_agent);
    pthread_mutex_destroy(&engine->lock);
    free(engine);
}

int fetch_new(const struct fetch_config *cfg, struct fetch_engine **out)
{
    if (cfg == NULL || out == NULL)
        return -EINVAL;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_result != CURLE_OK)
        return -EIO;
    struct fetch_engine *engine = calloc(1, sizeof(*engine));
    if (engine == NULL)
        return -ENOMEM;
    engine->cfg = *cfg;
    if (engine->cfg.max_redirects > H5CD_MAX_REDIRECTS)
        engine->cfg.max_redirects = H5CD_MAX_REDIRECTS;
    engine->policy = cfg->policy;
    engine->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)engine ^ 0x9E3779B97F4A7C15ULL;
    if (pthread_mutex_init(&engine->lock, NULL) != 0) {
        free(engine);
        return -ENOMEM;
    }
    int rc = -ENOMEM;
    if (cfg->user_agent != NULL && (engine->user_agent = strdup(cfg->user_agent)) == NULL)
        goto fail;
    engine->cfg.user_agent = engine->user_agent;
    engine->headers = curl_slist_append(NULL, "Accept-Encoding: identity");
    if (engine->headers == NULL)
        goto fail;
    rc = uv_loop_init(&engine->loop);
    if (rc < 0)
        goto fail;
    uv_timer_init(&engine->loop, &engine->curl_timer);
    engine->curl_timer.data = engine;
    rc = uv_async_init(&engine->loop, &engine->wakeup, on_wakeup);
    engine->wakeup.data = engine;
    if (rc == 0 && (engine->multi = curl_multi_init()) == NULL)
        rc = -ENOMEM;
    if (rc == 0)
        rc = setup_multi(engine);
    if (rc == 0)
        rc = start_thread(engine);
    if (rc < 0) {
        if (engine->multi != NULL)
            curl_multi_cleanup(engine->multi);
        uv_walk(&engine->loop, close_any, NULL);
        uv_run(&engine->loop, UV_RUN_DEFAULT);
        uv_loop_close(&engine->loop);
        goto fail;
    }
    *out = engine;
    return 0;
fail:
    engine_destroy(engine);
    return rc;
}

void fetch_free(struct fetch_engine *engine)
{
    if (engine == NULL)
        return;
    pthread_mutex_lock(&engine->lock);
    engine->shutdown = true;
    uv_async_send(&engine->wakeup); /* before the loop can see shutdown and close it */
    pthread_mutex_unlock(&engine->lock);
    pthread_join(engine->thread, NULL);
    int rc = uv_loop_close(&engine->loop);
    if (rc < 0)
        log_error("msg=\"fetch loop still had handles at exit\" error=\"%s\"", uv_strerror(rc));
    engine_destroy(engine);
}

static struct request *request_new(const char *url, uint64_t offset, uint64_t length,
                                   const char *expect, uint8_t *dst, fetch_done_fn done, void *arg)
{
    struct request *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->url = strdup(url);
    req->res = calloc(1, sizeof(*req->res));
    req->borrowed = dst != NULL;
    req->body = dst != NULL ? dst : malloc((size_t)length);
    if (req->url == NULL || req->res == NULL || req->body == NULL) {
        free(req->url);
        free(req->res);
        if (!req->borrowed)
            free(req->body);
        free(req);
        return NULL;
    }
    memcpy(req->expect, expect, strlen(expect) + 1);
    req->offset = offset;
    req->length = length;
    req->done = done;
    req->arg = arg;
    req->submitted_ms = now_ms();
    req->route.current = -1; /* no parent until one is chosen */
    req->res->offset = offset;
    req->res->length = length;
    req->res->total_size = UINT64_MAX;
    return req;
}

struct submit_opts {
    bool fresh;
    uint8_t *dst;
    fetch_progress_fn progress;
};

static int submit(struct fetch_engine *engine, const char *url, uint64_t offset, uint64_t length,
                  const char *expect_validator, const struct submit_opts *opts, fetch_done_fn done,
                  void *arg)
{
    const char *expect = expect_validator != NULL ? expect_validator : "";
    if (engine == NULL || url == NULL || done == NULL || length == 0 ||
        length > H5CD_MAX_FETCH_BYTES || offset > UINT64_MAX - length ||
        strlen(url) > H5CD_MAX_URL_BYTES || strlen(expect) >= H5CD_MAX_VALIDATOR_BYTES)
        return -EINVAL;
    struct request *req = request_new(url, offset, length, expect, opts->dst, done, arg);
    if (req == NULL)
        return -ENOMEM;
    req->engine = engine;
    req->fresh = opts->fresh;
    req->progress = opts->progress;
    /* The wake-up is sent under the lock: once fetch_free has set shutdown
     * the loop may close the async handle, so no send may follow. */
    pthread_mutex_lock(&engine->lock);
    bool shutdown = engine->shutdown;
    if (!shutdown) {
        if (engine->queue_tail != NULL)
            engine->queue_tail->next = req;
        else
            engine->queue_head = req;
        engine->queue_tail = req;
        uv_async_send(&engine->wakeup);
    }
    pthread_mutex_unlock(&engine->lock);
    if (shutdown) {
        fetch_result_free(req->res);
        if (!req->borrowed)
            free(req->body);
        free(req->url);
        free(req);
        return -ESHUTDOWN;
    }
    return 0;
}

int fetch_submit(struct fetch_engine *engine, const char *url, uint64_t offset, uint64_t length,
                 const char *expect_validator, fetch_done_fn done, void *arg)
{
    struct submit_opts opts = {.fresh = false};
    return submit(engine, url, offset, length, expect_validator, &opts, done, arg);
}

int fetch_submit_fresh(struct fetch_engine *engine, const char *url, uint64_t offset,
                       uint64_t length, const char *expect_validator, fetch_done_fn done, void *arg)
{
    struct submit_opts opts = {.fresh = true};
    return submit(engine, url, offset, length, expect_validator, &opts, done, arg);
}

int fetch_submit_into(struct fetch_engine *engine, const char *url, uint64_t offset,
                      uint64_t length, const char *expect_validator, uint8_t *dst,
                      fetch_progress_fn progress, fetch_done_fn done, void *arg)
{
    if (dst == NULL)
        return -EINVAL;
    struct submit_opts opts = {.dst = dst, .progress = progress};
    return submit(engine, url, offset, length, expect_validator, &opts, done, arg);
}

void fetch_result_free(struct fetch_result *res)
{
    if (res == NULL)
        return;
    if (!res->data_borrowed)
        free(res->data);
    free(res->final_url);
    free(res);
}

void fetch_set_policy(struct fetch_engine *engine, const struct urlpolicy *policy)
{
    pthread_mutex_lock(&engine->lock);
    engine->policy = policy;
    pthread_mutex_unlock(&engine->lock);
}
