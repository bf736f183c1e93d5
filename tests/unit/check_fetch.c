/*
 * check_fetch.c - the fetch engine against a real origin: fault_origin.py
 * on a free loopback port, serving files generated here, with faults
 * switched on per test through its /_control endpoint.  The origin is
 * started once by main() and killed at exit; every test resets it first.
 */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "fetch.h"
#include "stats.h"
#include "urlpolicy.h"

#ifndef FAULT_ORIGIN
#error "FAULT_ORIGIN must name tests/integration/fault_origin.py"
#endif

#define BIG_SIZE       (1024u * 1024u)
#define SMALL_SIZE     1000u
#define WAIT_MS        15000u
#define MAX_SLOTS      64
#define ORIGIN_WAIT_MS 10000u

static char tmpdir[256];
static char rootdir[300];
static pid_t origin_pid = -1;
static unsigned origin_port;
static struct urlpolicy *open_policy; /* allow_private_upstreams = true */

/* ---- the origin ---- */

static uint8_t pattern_byte(uint64_t i)
{
    return (uint8_t)((i * 2654435761u) >> 11);
}

static int write_file(const char *name, size_t size)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s", rootdir, name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL)
        return -1;
    for (size_t i = 0; i < size; i++)
        fputc(pattern_byte(i), fp);
    return fclose(fp);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int read_port(const char *path)
{
    char buf[32] = {0};
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    char *end;
    unsigned long port = strtoul(buf, &end, 10);
    if (n == 0 || end == buf || port == 0 || port > 65535)
        return -1;
    return (int)port;
}

static int origin_start(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_fetch.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(rootdir, sizeof(rootdir), "%s/root", tmpdir);
    if (mkdir(rootdir, 0700) < 0 || write_file("big.bin", BIG_SIZE) < 0 ||
        write_file("small.bin", SMALL_SIZE) < 0 || write_file("empty.bin", 0) < 0)
        return -1;
    char portfile[400];
    snprintf(portfile, sizeof(portfile), "%s/port", tmpdir);
    const char *python = getenv("FAULT_ORIGIN_PYTHON");
    if (python == NULL)
        python = "python3";
    origin_pid = fork();
    if (origin_pid < 0)
        return -1;
    if (origin_pid == 0) {
        execlp(python, python, FAULT_ORIGIN, "--port", "0", "--root", rootdir, "--port-file",
               portfile, (char *)NULL);
        _exit(127);
    }
    uint64_t deadline = now_ms() + ORIGIN_WAIT_MS;
    while (now_ms() < deadline) {
        int port = read_port(portfile);
        if (port > 0) {
            origin_port = (unsigned)port;
            return 0;
        }
        if (waitpid(origin_pid, NULL, WNOHANG) == origin_pid) {
            origin_pid = -1;
            return -1;
        }
        usleep(20000);
    }
    return -1;
}

static void origin_stop(void)
{
    if (origin_pid > 0) {
        kill(origin_pid, SIGTERM);
        waitpid(origin_pid, NULL, 0);
        origin_pid = -1;
    }
    const char *names[] = {"root/big.bin", "root/small.bin", "root/empty.bin", "port"};
    char path[400];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(rootdir);
    rmdir(tmpdir);
}

static void url_for(char *buf, size_t cap, const char *name)
{
    int n = snprintf(buf, cap, "http://127.0.0.1:%u/%s", origin_port, name);
    ck_assert(n > 0 && (size_t)n < cap);
}

struct membuf {
    char data[4096];
    size_t len;
};

static size_t membuf_write(char *ptr, size_t size, size_t nmemb, void *userp)
{
    struct membuf *m = userp;
    size_t len = size * nmemb;
    if (len >= sizeof(m->data) - m->len)
        return 0;
    memcpy(m->data + m->len, ptr, len);
    m->len += len;
    m->data[m->len] = '\0';
    return len;
}

/* One synchronous request to the origin's control plane; returns the HTTP status. */
static long origin_call(const char *path, const char *post, struct membuf *out)
{
    char url[128];
    url_for(url, sizeof(url), path);
    CURL *easy = curl_easy_init();
    ck_assert_ptr_nonnull(easy);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, membuf_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, (void *)out);
    if (post != NULL)
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, post);
    CURLcode rc = curl_easy_perform(easy);
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(easy);
    ck_assert_msg(rc == CURLE_OK, "origin call %s failed: %s", path, curl_easy_strerror(rc));
    return status;
}

static void control(const char *json)
{
    struct membuf out = {.len = 0};
    ck_assert_int_eq(origin_call("_control", json, &out), 200);
}

static long origin_requests(void)
{
    struct membuf out = {.len = 0};
    ck_assert_int_eq(origin_call("_stats", NULL, &out), 200);
    json_error_t jerr;
    json_t *root = json_loads(out.data, 0, &jerr);
    ck_assert_ptr_nonnull(root);
    json_t *n = json_object_get(root, "requests");
    ck_assert(json_is_integer(n));
    long value = (long)json_integer_value(n);
    json_decref(root);
    return value;
}

static void reset_origin(void)
{
    control("{\"mode\": \"reset_all\"}");
}

/* ---- engine and waiting ---- */

struct waiter;

struct slot {
    struct waiter *w;
    struct fetch_result *res;
    int calls;
    int resubmit_rc; /* what fetch_submit said when called from the callback */
};

struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned done;
    struct slot slots[MAX_SLOTS];
    struct fetch_engine *resubmit_to; /* non-NULL: callbacks try to submit again */
};

static void waiter_init(struct waiter *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    for (int i = 0; i < MAX_SLOTS; i++)
        w->slots[i].w = w;
}

static void waiter_cleanup(struct waiter *w)
{
    for (int i = 0; i < MAX_SLOTS; i++)
        fetch_result_free(w->slots[i].res);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
}

static void on_done(struct fetch_result *res, void *arg)
{
    struct slot *s = arg;
    struct waiter *w = s->w;
    if (w->resubmit_to != NULL && res->status == FETCH_ERR_CANCELLED)
        s->resubmit_rc =
            fetch_submit(w->resubmit_to, "http://127.0.0.1:1/x", 0, 1, "", on_done, arg);
    pthread_mutex_lock(&w->lock);
    fetch_result_free(s->res);
    s->res = res;
    s->calls++;
    w->done++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Waits until n callbacks have run, at most WAIT_MS. */
static bool wait_for(struct waiter *w, unsigned n)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&w->lock);
    int rc = 0;
    while (w->done < n && rc == 0)
        rc = pthread_cond_timedwait(&w->cond, &w->lock, &deadline);
    bool ok = w->done >= n;
    pthread_mutex_unlock(&w->lock);
    return ok;
}

static struct h5cd_stats stats;

static struct fetch_config default_config(void)
{
    stats_init(&stats);
    struct fetch_config cfg = {
        .max_per_host = 8,
        .max_total = 64,
        .connect_timeout_ms = 2000,
        .timeout_ms = 5000,
        .retries = 3,
        .retry_base_ms = 20,
        .retry_budget_ms = 10000,
        .max_redirects = 5,
        .user_agent = "check_fetch",
        .policy = open_policy,
        .stats = &stats,
    };
    return cfg;
}

static struct fetch_engine *engine_with(const struct fetch_config *cfg)
{
    struct fetch_engine *engine = NULL;
    ck_assert_int_eq(fetch_new(cfg, &engine), 0);
    ck_assert_ptr_nonnull(engine);
    return engine;
}

/* One fetch through a fresh engine; the caller frees the result. */
static struct fetch_result *fetch_with(const struct fetch_config *cfg, const char *name,
                                       uint64_t offset, uint64_t length, const char *expect)
{
    struct fetch_engine *engine = engine_with(cfg);
    struct waiter w;
    waiter_init(&w);
    char url[128];
    url_for(url, sizeof(url), name);
    ck_assert_int_eq(fetch_submit(engine, url, offset, length, expect, on_done, &w.slots[0]), 0);
    ck_assert_msg(wait_for(&w, 1), "fetch did not complete in time");
    fetch_free(engine);
    ck_assert_int_eq(w.slots[0].calls, 1);
    struct fetch_result *res = w.slots[0].res;
    w.slots[0].res = NULL;
    waiter_cleanup(&w);
    return res;
}

static struct fetch_result *fetch_one(const char *name, uint64_t offset, uint64_t length,
                                      const char *expect)
{
    struct fetch_config cfg = default_config();
    return fetch_with(&cfg, name, offset, length, expect);
}

static void assert_pattern(const struct fetch_result *res, uint64_t offset, size_t len)
{
    ck_assert_int_eq(res->status, FETCH_OK);
    ck_assert_ptr_nonnull(res->data);
    ck_assert_uint_eq(res->data_len, len);
    for (size_t i = 0; i < len; i++)
        if (res->data[i] != pattern_byte(offset + i))
            ck_abort_msg("byte %zu of the range at %llu differs", i, (unsigned long long)offset);
}

/* ---- core ---- */

START_TEST(test_exact_range)
{
    long before = origin_requests();
    struct fetch_result *res = fetch_one("big.bin", 100, 5000, "");
    assert_pattern(res, 100, 5000);
    ck_assert_int_eq(res->http_status, 206);
    ck_assert_uint_eq(res->total_size, BIG_SIZE);
    ck_assert_uint_eq(res->offset, 100);
    ck_assert_uint_eq(res->length, 5000);
    ck_assert_uint_eq(res->attempts, 1);
    ck_assert_str_eq(res->error, "");
    ck_assert(strncmp(res->validator, "etag:\"", 6) == 0);
    ck_assert_int_eq(origin_requests() - before, 1);
    ck_assert_uint_eq(STATS_GET(&stats, upstream_requests), 1);
    ck_assert_uint_eq(STATS_GET(&stats, upstream_bytes), 5000);
    ck_assert_uint_eq(STATS_GET(&stats, upstream_retries), 0);
    ck_assert_uint_eq(STATS_GET(&stats, upstream_errors), 0);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_range_trimmed_at_eof)
{
    struct fetch_result *res = fetch_one("small.bin", 900, 500, "");
    assert_pattern(res, 900, 100);
    ck_assert_uint_eq(res->total_size, SMALL_SIZE);
    ck_assert_uint_eq(res->length, 500);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_past_eof)
{
    struct fetch_result *res = fetch_one("small.bin", SMALL_SIZE, 10, "");
    ck_assert_int_eq(res->status, FETCH_ERR_RANGE);
    ck_assert_int_eq(res->http_status, 416);
    ck_assert_uint_eq(res->total_size, SMALL_SIZE);
    ck_assert_ptr_null(res->data);
    ck_assert_uint_eq(res->attempts, 1);
    ck_assert_uint_eq(STATS_GET(&stats, upstream_errors), 0); /* an answer, not a failure */
    fetch_result_free(res);
    res = fetch_one("empty.bin", 0, 4096, "");
    ck_assert_int_eq(res->status, FETCH_ERR_RANGE);
    ck_assert_uint_eq(res->total_size, 0);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_503_then_ok)
{
    control("{\"mode\": \"status\", \"status\": 503, \"count\": 2}");
    long before = origin_requests();
    struct fetch_result *res = fetch_one("big.bin", 4096, 4096, "");
    assert_pattern(res, 4096, 4096);
    ck_assert_uint_eq(res->attempts, 3);
    ck_assert_int_eq(origin_requests() - before, 3);
    ck_assert_uint_eq(STATS_GET(&stats, upstream_requests), 3);
    ck_assert_uint_eq(STATS_GET(&stats, upstream_retries), 2);
    ck_assert_uint_eq(STATS_GET(&stats, upstream_errors), 0);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_retry_after)
{
    control("{\"mode\": \"retry_after\", \"status\": 429, \"seconds\": 1, \"count\": 1}");
    uint64_t start = now_ms();
    struct fetch_result *res = fetch_one("small.bin", 0, 100, "");
    uint64_t elapsed = now_ms() - start;
    assert_pattern(res, 0, 100);
    ck_assert_uint_eq(res->attempts, 2);
    ck_assert_msg(elapsed >= 950, "Retry-After ignored: retried after %llu ms",
                  (unsigned long long)elapsed);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_reset_retried)
{
    control("{\"mode\": \"reset\", \"count\": 1}");
    struct fetch_result *res = fetch_one("big.bin", 0, 200000, "");
    assert_pattern(res, 0, 200000);
    ck_assert_uint_eq(res->attempts, 2);
    fetch_result_free(res);
    control("{\"mode\": \"reset\", \"when\": \"before\", \"count\": 1}");
    res = fetch_one("big.bin", 10, 20, "");
    assert_pattern(res, 10, 20);
    ck_assert_uint_eq(res->attempts, 2);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_truncate_retried)
{
    control("{\"mode\": \"truncate\", \"count\": 1}");
    struct fetch_result *res = fetch_one("big.bin", 1000, 100000, "");
    assert_pattern(res, 1000, 100000);
    ck_assert_uint_eq(res->attempts, 2);
    fetch_result_free(res);

    /* Framed correctly, but fewer bytes than its Content-Range promises. */
    control("{\"mode\": \"short_body\"}");
    struct fetch_config cfg = default_config();
    cfg.retries = 1;
    res = fetch_with(&cfg, "big.bin", 1000, 100000, "");
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    ck_assert_uint_eq(res->attempts, 2);
    ck_assert_msg(strstr(res->error, "short body") != NULL, "error: %s", res->error);
    fetch_result_free(res);
}
END_TEST

/* What fetch_submit_into reported as it went; the test owns dst.  One argument serves
 * both callbacks: on_done sees the slot, first. */
struct progress_log {
    struct slot slot;
    uint8_t *dst;
    uint64_t offset;
    size_t calls;
    size_t landed;
    uint64_t total;
    bool shrank;   /* landed went down */
    bool wrong;    /* a reported byte was not the file's */
    bool scribble; /* overwrite dst[0] at the first report: no retry may write it again */
};

static void on_progress(void *arg, size_t landed, uint64_t total_size)
{
    struct progress_log *log = arg;
    log->shrank |= landed <= log->landed;
    for (size_t i = log->landed; i < landed; i++)
        log->wrong |= log->dst[i] != pattern_byte(log->offset + i);
    if (log->calls++ == 0 && log->scribble)
        log->dst[0] = (uint8_t)~pattern_byte(log->offset);
    log->landed = landed;
    log->total = total_size;
}

/* One fetch_submit_into, progress into log; the caller frees the result. */
static struct fetch_result *fetch_into(const char *name, uint64_t offset, uint64_t length,
                                       const char *expect, struct progress_log *log)
{
    struct fetch_config cfg = default_config();
    struct fetch_engine *engine = engine_with(&cfg);
    struct waiter w;
    waiter_init(&w);
    char url[128];
    url_for(url, sizeof(url), name);
    log->offset = offset;
    log->slot = (struct slot){.w = &w};
    ck_assert_int_eq(
        fetch_submit_into(engine, url, offset, length, expect, log->dst, on_progress, on_done, log),
        0);
    ck_assert_msg(wait_for(&w, 1), "fetch did not complete in time");
    fetch_free(engine);
    ck_assert_int_eq(log->slot.calls, 1);
    struct fetch_result *res = log->slot.res;
    waiter_cleanup(&w);
    return res;
}

START_TEST(test_into_progress)
{
    struct fetch_result *res = fetch_one("big.bin", 0, 1, "");
    char v[H5CD_MAX_VALIDATOR_BYTES];
    memcpy(v, res->validator, sizeof(v));
    fetch_result_free(res);
    const size_t len = 150000;
    uint8_t *dst = malloc(len);
    ck_assert_ptr_nonnull(dst);

    /* Reported as it lands, in the caller's buffer, which the result borrows. */
    struct progress_log log = {.dst = dst};
    res = fetch_into("big.bin", 1000, len, v, &log);
    assert_pattern(res, 1000, len);
    ck_assert_ptr_eq(res->data, dst);
    ck_assert(res->data_borrowed);
    ck_assert_uint_ge(log.calls, 1);
    ck_assert_uint_eq(log.landed, len);
    ck_assert_uint_eq(log.total, BIG_SIZE);
    ck_assert(!log.shrank && !log.wrong);
    fetch_result_free(res); /* leaves dst alone */

    /* Cut half way, then retried: what was reported is never written again (the
     * scribble survives), the rest lands, landed never goes back. */
    control("{\"mode\": \"truncate\", \"count\": 1}");
    memset(dst, 0, len);
    log = (struct progress_log){.dst = dst, .scribble = true};
    res = fetch_into("big.bin", 1000, len, v, &log);
    ck_assert_int_eq(res->status, FETCH_OK);
    ck_assert_uint_eq(res->attempts, 2);
    ck_assert(!log.shrank && !log.wrong);
    ck_assert_uint_eq(log.landed, len);
    ck_assert_uint_eq(dst[0], (uint8_t)~pattern_byte(1000));
    for (size_t i = 1; i < len; i++)
        if (dst[i] != pattern_byte(1000 + i))
            ck_abort_msg("byte %zu differs after the retry", i);
    fetch_result_free(res);

    /* Nothing is reported early without a validator to hold a retry to, nor for an
     * answer of another version. */
    log = (struct progress_log){.dst = dst};
    res = fetch_into("big.bin", 1000, len, "", &log);
    assert_pattern(res, 1000, len);
    ck_assert_uint_eq(log.calls, 0);
    fetch_result_free(res);
    control("{\"mode\": \"etag\", \"value\": \"W/\\\"v2\\\"\"}");
    log = (struct progress_log){.dst = dst};
    res = fetch_into("big.bin", 1000, len, v, &log);
    ck_assert_int_eq(res->status, FETCH_ERR_CHANGED);
    ck_assert_ptr_null(res->data);
    ck_assert_uint_eq(log.calls, 0);
    fetch_result_free(res);
    free(dst);
}
END_TEST

START_TEST(test_wrong_range)
{
    control("{\"mode\": \"wrong_range\", \"count\": 1}");
    struct fetch_result *res = fetch_one("big.bin", 500, 1000, "");
    assert_pattern(res, 500, 1000);
    ck_assert_uint_eq(res->attempts, 2);
    fetch_result_free(res);

    control("{\"mode\": \"wrong_range\"}");
    struct fetch_config cfg = default_config();
    cfg.retries = 2;
    res = fetch_with(&cfg, "big.bin", 500, 1000, "");
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    ck_assert_uint_eq(res->attempts, 3);
    ck_assert_ptr_null(res->data);
    ck_assert_msg(strstr(res->error, "mismatched range") != NULL, "error: %s", res->error);
    ck_assert_msg(strstr(res->error, "after 3 attempts") != NULL, "error: %s", res->error);
    ck_assert_uint_eq(STATS_GET(&stats, upstream_errors), 1);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_ignore_range)
{
    control("{\"mode\": \"ignore_range\"}");
    long before = origin_requests();
    struct fetch_result *res = fetch_one("big.bin", 4096, 4096, "");
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    ck_assert_int_eq(res->http_status, 200);
    ck_assert_uint_eq(res->attempts, 1);
    fetch_result_free(res);
    /* Starting at 0 but shorter than the file: the body overflows the request. */
    res = fetch_one("big.bin", 0, 4096, "");
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    ck_assert_msg(strstr(res->error, "Range") != NULL, "error: %s", res->error);
    fetch_result_free(res);
    ck_assert_int_eq(origin_requests() - before, 2);
    /* The whole file was asked for: a 200 is the answer. */
    res = fetch_one("small.bin", 0, 4096, "");
    assert_pattern(res, 0, SMALL_SIZE);
    ck_assert_int_eq(res->http_status, 200);
    ck_assert_uint_eq(res->total_size, SMALL_SIZE);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_not_found)
{
    long before = origin_requests();
    struct fetch_result *res = fetch_one("missing.bin", 0, 100, "");
    ck_assert_int_eq(res->status, FETCH_ERR_NOT_FOUND);
    ck_assert_int_eq(res->http_status, 404);
    ck_assert_uint_eq(res->attempts, 1);
    ck_assert_str_ne(res->error, "");
    ck_assert_int_eq(origin_requests() - before, 1);
    ck_assert_uint_eq(STATS_GET(&stats, upstream_errors), 1);
    ck_assert_uint_eq(STATS_GET(&stats, upstream_retries), 0);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_upstream_denied)
{
    control("{\"mode\": \"status\", \"status\": 403, \"count\": 1}");
    struct fetch_result *res = fetch_one("small.bin", 0, 100, "");
    ck_assert_int_eq(res->status, FETCH_ERR_DENIED);
    ck_assert_int_eq(res->http_status, 403);
    ck_assert_uint_eq(res->attempts, 1);
    fetch_result_free(res);
    control("{\"mode\": \"status\", \"status\": 400, \"count\": 1}");
    res = fetch_one("small.bin", 0, 100, "");
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    ck_assert_uint_eq(res->attempts, 1);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_validator_change)
{
    struct fetch_result *res = fetch_one("small.bin", 0, 100, "");
    ck_assert_int_eq(res->status, FETCH_OK);
    char first[H5CD_MAX_VALIDATOR_BYTES];
    memcpy(first, res->validator, sizeof(first));
    fetch_result_free(res);

    res = fetch_one("small.bin", 100, 100, first);
    assert_pattern(res, 100, 100);
    ck_assert_str_eq(res->validator, first);
    fetch_result_free(res);

    control("{\"mode\": \"etag\", \"value\": \"W/\\\"v2\\\"\"}");
    res = fetch_one("small.bin", 100, 100, first);
    ck_assert_int_eq(res->status, FETCH_ERR_CHANGED);
    ck_assert_str_eq(res->validator, "etag:W/\"v2\"");
    ck_assert_ptr_null(res->data);
    ck_assert_uint_eq(res->attempts, 1);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_timeout)
{
    control("{\"mode\": \"delay\", \"ms\": 1500, \"count\": 2}");
    struct fetch_config cfg = default_config();
    cfg.timeout_ms = 300;
    cfg.retries = 1;
    uint64_t start = now_ms();
    struct fetch_result *res = fetch_with(&cfg, "small.bin", 0, 100, "");
    ck_assert_int_eq(res->status, FETCH_ERR_TIMEOUT);
    ck_assert_uint_eq(res->attempts, 2);
    ck_assert_msg(strstr(res->error, "timed out") != NULL, "error: %s", res->error);
    ck_assert_uint_lt(now_ms() - start, 1500);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_concurrent)
{
    struct fetch_config cfg = default_config();
    struct fetch_engine *engine = engine_with(&cfg);
    struct waiter w;
    waiter_init(&w);
    char url[128];
    url_for(url, sizeof(url), "big.bin");
    for (int i = 0; i < MAX_SLOTS; i++)
        ck_assert_int_eq(fetch_submit(engine, url, (uint64_t)i * 16000u, 16000u + (uint64_t)i, "",
                                      on_done, &w.slots[i]),
                         0);
    ck_assert_msg(wait_for(&w, MAX_SLOTS), "only %u of %d fetches completed", w.done, MAX_SLOTS);
    fetch_free(engine);
    for (int i = 0; i < MAX_SLOTS; i++) {
        ck_assert_int_eq(w.slots[i].calls, 1);
        assert_pattern(w.slots[i].res, (uint64_t)i * 16000u, 16000u + (size_t)i);
    }
    ck_assert_uint_eq(STATS_GET(&stats, upstream_requests), MAX_SLOTS);
    waiter_cleanup(&w);
}
END_TEST

START_TEST(test_free_in_flight)
{
    control("{\"mode\": \"delay\", \"ms\": 400, \"count\": 8}");
    struct fetch_config cfg = default_config();
    cfg.max_per_host = 4;
    struct fetch_engine *engine = engine_with(&cfg);
    struct waiter w;
    waiter_init(&w);
    w.resubmit_to = engine;
    char url[128];
    url_for(url, sizeof(url), "big.bin");
    enum { N = 16 };
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(
            fetch_submit(engine, url, (uint64_t)i * 100u, 100, "", on_done, &w.slots[i]), 0);
    usleep(100000);
    uint64_t start = now_ms();
    fetch_free(engine);
    ck_assert_uint_lt(now_ms() - start, 2000);
    ck_assert_uint_eq(w.done, N);
    unsigned cancelled = 0;
    for (int i = 0; i < N; i++) {
        struct fetch_result *res = w.slots[i].res;
        ck_assert_int_eq(w.slots[i].calls, 1);
        ck_assert(res->status == FETCH_OK || res->status == FETCH_ERR_CANCELLED);
        if (res->status == FETCH_ERR_CANCELLED) {
            cancelled++;
            ck_assert_ptr_null(res->data);
            ck_assert_int_eq(w.slots[i].resubmit_rc, -ESHUTDOWN);
        }
    }
    ck_assert_uint_gt(cancelled, 0);
    waiter_cleanup(&w);
}
END_TEST

START_TEST(test_policy_refuses_address)
{
    struct h5cd_config hc;
    ck_assert_int_eq(config_init(&hc), 0); /* allow_private_upstreams defaults to false */
    struct urlpolicy *strict = urlpolicy_new(&hc);
    config_free(&hc);
    ck_assert_ptr_nonnull(strict);
    struct fetch_config cfg = default_config();
    cfg.policy = strict;
    long before = origin_requests();
    struct fetch_result *res = fetch_with(&cfg, "small.bin", 0, 100, "");
    ck_assert_int_eq(res->status, FETCH_ERR_DENIED);
    ck_assert_int_eq(res->http_status, 0);
    ck_assert_uint_eq(res->attempts, 1);
    ck_assert_int_eq(origin_requests() - before, 0);
    fetch_result_free(res);
    urlpolicy_free(strict);
}
END_TEST

START_TEST(test_redirects)
{
    char json[512], target[128];
    url_for(target, sizeof(target), "small.bin");
    snprintf(json, sizeof(json),
             "{\"mode\": \"redirect\", \"path\": \"/moved\", \"location\": \"%s\"}", target);
    control(json);
    struct fetch_result *res = fetch_one("moved", 10, 100, "");
    assert_pattern(res, 10, 100);
    ck_assert_uint_eq(res->redirects, 1);
    ck_assert_ptr_nonnull(res->final_url);
    ck_assert_str_eq(res->final_url, target); /* what "resolve once" will remember */
    ck_assert(!res->policy_refused);
    fetch_result_free(res);

    /* The same redirect, to a host name the policy denies. */
    snprintf(json, sizeof(json),
             "{\"mode\": \"redirect\", \"path\": \"/elsewhere\", "
             "\"location\": \"http://localhost:%u/small.bin\"}",
             origin_port);
    control(json);
    char deny[128], err[256];
    snprintf(deny, sizeof(deny), "http://localhost:%u/", origin_port);
    struct h5cd_config hc;
    ck_assert_int_eq(config_init(&hc), 0);
    ck_assert_int_eq(config_set(&hc, "allow_private_upstreams", "true", err, sizeof(err)), 0);
    ck_assert_int_eq(config_set(&hc, "deny_prefixes", deny, err, sizeof(err)), 0);
    struct urlpolicy *policy = urlpolicy_new(&hc);
    config_free(&hc);
    ck_assert_ptr_nonnull(policy);
    struct fetch_config cfg = default_config();
    cfg.policy = policy;
    res = fetch_with(&cfg, "elsewhere", 10, 100, "");
    ck_assert_int_eq(res->status, FETCH_ERR_DENIED);
    ck_assert(res->policy_refused);
    ck_assert_uint_eq(res->attempts, 1);
    ck_assert_ptr_null(res->data);
    fetch_result_free(res);
    urlpolicy_free(policy);

    /* More hops than H5CD_MAX_REDIRECTS. */
    snprintf(json, sizeof(json),
             "{\"mode\": \"redirect\", \"path\": \"/loop\", \"location\": \"/loop\"}");
    control(json);
    res = fetch_one("loop", 0, 100, "");
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    ck_assert_uint_eq(res->attempts, 1);
    ck_assert_uint_eq(res->redirects, 5);
    fetch_result_free(res);

    /* max_redirects = 0: a redirect is not followed at all. */
    struct fetch_config none = default_config();
    none.max_redirects = 0;
    res = fetch_with(&none, "moved", 10, 100, "");
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    ck_assert_uint_eq(res->redirects, 0);
    fetch_result_free(res);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_submit_arguments)
{
    struct fetch_config cfg = default_config();
    struct fetch_engine *engine = engine_with(&cfg);
    struct waiter w;
    waiter_init(&w);
    char url[128];
    url_for(url, sizeof(url), "small.bin");
    struct slot *s = &w.slots[0];
    ck_assert_int_eq(fetch_submit(engine, NULL, 0, 1, "", on_done, s), -EINVAL);
    ck_assert_int_eq(fetch_submit(engine, url, 0, 1, "", NULL, s), -EINVAL);
    ck_assert_int_eq(fetch_submit(engine, url, 0, 0, "", on_done, s), -EINVAL);
    ck_assert_int_eq(fetch_submit(engine, url, 0, H5CD_MAX_FETCH_BYTES + 1, "", on_done, s),
                     -EINVAL);
    ck_assert_int_eq(fetch_submit(engine, url, UINT64_MAX - 9, 11, "", on_done, s), -EINVAL);
    char expect[H5CD_MAX_VALIDATOR_BYTES + 1];
    memset(expect, 'x', sizeof(expect));
    expect[H5CD_MAX_VALIDATOR_BYTES] = '\0';
    ck_assert_int_eq(fetch_submit(engine, url, 0, 1, expect, on_done, s), -EINVAL);
    char *longurl = malloc(H5CD_MAX_URL_BYTES + 2);
    ck_assert_ptr_nonnull(longurl);
    size_t base = strlen(url);
    memcpy(longurl, url, base);
    memset(longurl + base, 'a', H5CD_MAX_URL_BYTES + 1 - base);
    longurl[H5CD_MAX_URL_BYTES + 1] = '\0';
    ck_assert_int_eq(fetch_submit(engine, longurl, 0, 1, "", on_done, s), -EINVAL);
    ck_assert_uint_eq(w.done, 0);

    /* At the limits: accepted, and answered. */
    longurl[H5CD_MAX_URL_BYTES] = '\0';
    expect[H5CD_MAX_VALIDATOR_BYTES - 1] = '\0';
    ck_assert_int_eq(fetch_submit(engine, longurl, 0, 1, "", on_done, &w.slots[0]), 0);
    ck_assert_int_eq(
        fetch_submit(engine, url, 0, H5CD_MAX_FETCH_BYTES, expect, on_done, &w.slots[1]), 0);
    ck_assert_int_eq(fetch_submit(engine, url, UINT64_MAX - 10, 10, "", on_done, &w.slots[2]), 0);
    ck_assert(wait_for(&w, 3));
    fetch_free(engine);
    free(longurl);
    ck_assert_int_eq(w.slots[0].res->status, FETCH_ERR_NOT_FOUND);
    ck_assert_int_eq(w.slots[1].res->status, FETCH_ERR_CHANGED); /* "xxx..." is not its ETag */
    ck_assert_int_eq(w.slots[2].res->status, FETCH_ERR_RANGE);
    ck_assert_uint_eq(w.slots[2].res->total_size, SMALL_SIZE);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(w.slots[i].calls, 1);
    waiter_cleanup(&w);
    fetch_free(NULL);
}
END_TEST

START_TEST(test_retry_count)
{
    struct fetch_config cfg = default_config();
    cfg.retries = 2;
    control("{\"mode\": \"status\", \"status\": 502, \"count\": 2}");
    struct fetch_result *res = fetch_with(&cfg, "small.bin", 0, 10, "");
    assert_pattern(res, 0, 10);
    ck_assert_uint_eq(res->attempts, 3);
    fetch_result_free(res);

    control("{\"mode\": \"status\", \"status\": 503, \"count\": 3}");
    res = fetch_with(&cfg, "small.bin", 0, 10, "");
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    ck_assert_int_eq(res->http_status, 503);
    ck_assert_uint_eq(res->attempts, 3);
    ck_assert_str_eq(res->error, "upstream returned 503 after 3 attempts");
    ck_assert_uint_eq(STATS_GET(&stats, upstream_errors), 1);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_retry_budget)
{
    struct fetch_config cfg = default_config();
    cfg.retry_base_ms = 400;
    cfg.retry_budget_ms = 150;
    control("{\"mode\": \"status\", \"status\": 503, \"count\": 5}");
    uint64_t start = now_ms();
    struct fetch_result *res = fetch_with(&cfg, "small.bin", 0, 10, "");
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    ck_assert_uint_eq(res->attempts, 1); /* a backoff of 200..400 ms overruns 150 ms */
    ck_assert_uint_lt(now_ms() - start, 1000);
    fetch_result_free(res);

    /* A Retry-After beyond the budget gives up at once too (60 s clamp > 10 s). */
    cfg = default_config();
    reset_origin();
    control("{\"mode\": \"retry_after\", \"status\": 503, \"seconds\": 3600, \"count\": 1}");
    start = now_ms();
    res = fetch_with(&cfg, "small.bin", 0, 10, "");
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    ck_assert_uint_eq(res->attempts, 1);
    ck_assert_uint_lt(now_ms() - start, 1000);
    fetch_result_free(res);
}
END_TEST

/* "etag:" + value + NUL must fit in H5CD_MAX_VALIDATOR_BYTES. */
START_TEST(test_validator_length)
{
    size_t fits = H5CD_MAX_VALIDATOR_BYTES - sizeof("etag:");
    char json[H5CD_MAX_VALIDATOR_BYTES + 64];
    char value[H5CD_MAX_VALIDATOR_BYTES + 1];
    memset(value, 'e', sizeof(value));

    value[fits] = '\0';
    snprintf(json, sizeof(json), "{\"mode\": \"etag\", \"value\": \"%s\"}", value);
    control(json);
    struct fetch_result *res = fetch_one("small.bin", 0, 10, "");
    assert_pattern(res, 0, 10);
    ck_assert_uint_eq(strlen(res->validator), H5CD_MAX_VALIDATOR_BYTES - 1);
    fetch_result_free(res);

    value[fits] = 'e';
    value[fits + 1] = '\0';
    snprintf(json, sizeof(json), "{\"mode\": \"etag\", \"value\": \"%s\"}", value);
    control(json);
    res = fetch_one("small.bin", 0, 10, "");
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    ck_assert_uint_eq(res->attempts, 1);
    ck_assert_msg(strstr(res->error, "ETag") != NULL, "error: %s", res->error);
    fetch_result_free(res);
}
END_TEST

static void setup(void)
{
    reset_origin();
    control("{\"mode\": \"reset_stats\"}");
}

static Suite *fetch_suite(void)
{
    Suite *s = suite_create("fetch");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, NULL);
    tcase_set_timeout(core, 30);
    tcase_add_test(core, test_exact_range);
    tcase_add_test(core, test_range_trimmed_at_eof);
    tcase_add_test(core, test_past_eof);
    tcase_add_test(core, test_503_then_ok);
    tcase_add_test(core, test_retry_after);
    tcase_add_test(core, test_reset_retried);
    tcase_add_test(core, test_truncate_retried);
    tcase_add_test(core, test_into_progress);
    tcase_add_test(core, test_wrong_range);
    tcase_add_test(core, test_ignore_range);
    tcase_add_test(core, test_not_found);
    tcase_add_test(core, test_upstream_denied);
    tcase_add_test(core, test_validator_change);
    tcase_add_test(core, test_timeout);
    tcase_add_test(core, test_concurrent);
    tcase_add_test(core, test_free_in_flight);
    tcase_add_test(core, test_policy_refuses_address);
    tcase_add_test(core, test_redirects);
    suite_add_tcase(s, core);

    TCase *limits = tcase_create("limits");
    tcase_add_checked_fixture(limits, setup, NULL);
    tcase_set_timeout(limits, 30);
    tcase_add_test(limits, test_submit_arguments);
    tcase_add_test(limits, test_retry_count);
    tcase_add_test(limits, test_retry_budget);
    tcase_add_test(limits, test_validator_length);
    suite_add_tcase(s, limits);
    return s;
}

static struct urlpolicy *make_open_policy(void)
{
    struct h5cd_config hc;
    char err[256];
    if (config_init(&hc) < 0)
        return NULL;
    struct urlpolicy *p = NULL;
    if (config_set(&hc, "allow_private_upstreams", "true", err, sizeof(err)) == 0)
        p = urlpolicy_new(&hc);
    config_free(&hc);
    return p;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "check_fetch: curl_global_init failed\n");
        return EXIT_FAILURE;
    }
    open_policy = make_open_policy();
    if (open_policy == NULL) {
        fprintf(stderr, "check_fetch: cannot build the URL policy\n");
        return EXIT_FAILURE;
    }
    if (origin_start() < 0) {
        fprintf(stderr, "check_fetch: cannot start %s\n", FAULT_ORIGIN);
        origin_stop();
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(fetch_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    origin_stop();
    urlpolicy_free(open_policy);
    curl_global_cleanup();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
