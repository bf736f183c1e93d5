/*
 * check_fetch_hostile.c - the fetch engine against canned hostile answers:
 * a thread on a free loopback port answers every connection with one
 * scripted response (byte for byte, so codings, framing and headers are
 * exactly what a lying origin would send) and counts the requests and the
 * bytes it managed to write.  What the engine must refuse: encoded bodies,
 * bodies past their Content-Range or Content-Length, answers without the
 * validator the file was opened with, endless error bodies.
 */
#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "fetch.h"
#include "stats.h"
#include "urlpolicy.h"

#define WAIT_MS          15000
#define ENDLESS_MAX      (256u * 1024u * 1024u) /* the origin stops here whatever happens */
#define ENDLESS_SECONDS  20
#define MAX_REQUEST_HEAD 16384

/* ---- the canned origin ---- */

static int listen_fd = -1;
static unsigned origin_port;
static pthread_t origin_thread;
static pthread_mutex_t script_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *script_head; /* the response's status line and headers, "\r\n"-terminated */
static const char *script_body; /* written after the head, or NULL */
static size_t script_body_len;
static bool script_endless; /* after the head, write filler until the peer goes away */
static atomic_uint requests;
static atomic_ullong endless_written;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Reads one request head (bounded); false when the peer closed or sent junk. */
static bool read_request(int fd)
{
    char buf[MAX_REQUEST_HEAD];
    size_t have = 0;
    while (have < sizeof(buf) - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0)
            return false;
        ssize_t n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
        if (n <= 0)
            return false;
        have += (size_t)n;
        buf[have] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL)
            return true;
    }
    return false;
}

static void serve_endless(int fd)
{
    /* Short header-like lines: an endless body, or endless headers after a head that
     * does not end. */
    static char filler[65536];
    static const char line[] = "X-Pad: EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE\r\n";
    for (size_t i = 0; i + sizeof(line) - 1 <= sizeof(filler); i += sizeof(line) - 1)
        memcpy(filler + i, line, sizeof(line) - 1);
    uint64_t deadline = now_ms() + ENDLESS_SECONDS * 1000u;
    unsigned long long sent = 0;
    while (sent < ENDLESS_MAX && now_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 1000) <= 0 || (p.revents & (POLLERR | POLLHUP)))
            break;
        ssize_t n = send(fd, filler, sizeof(filler), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN)
            break;
        if (n > 0)
            sent += (unsigned long long)n;
    }
    atomic_fetch_add(&endless_written, sent);
}

/* One connection: answers each request with the script, keeps the connection unless
 * the script is endless. */
static void serve_connection(int fd)
{
    for (int i = 0; i < 100 && read_request(fd); i++) {
        atomic_fetch_add(&requests, 1);
        pthread_mutex_lock(&script_lock);
        const char *head = script_head;
        const char *body = script_body;
        size_t body_len = script_body_len;
        bool endless = script_endless;
        pthread_mutex_unlock(&script_lock);
        if (!write_all(fd, head, strlen(head)) || (body != NULL && !write_all(fd, body, body_len)))
            break;
        if (endless) {
            serve_endless(fd);
            break;
        }
    }
    close(fd);
}

static void *origin_main(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL; /* the listening socket was shut down */
        }
        serve_connection(fd); /* one at a time: the engine's requests here are sequential */
    }
}

/* Runs before the suite, outside any test: plain checks, no ck_assert. */
static int origin_start(void)
{
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    if (bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(listen_fd, 16) < 0 ||
        getsockname(listen_fd, (struct sockaddr *)&sa, &len) < 0)
        return -1;
    origin_port = ntohs(sa.sin_port);
    return pthread_create(&origin_thread, NULL, origin_main, NULL) == 0 ? 0 : -1;
}

static void origin_stop(void)
{
    shutdown(listen_fd, SHUT_RDWR);
    pthread_join(origin_thread, NULL);
    close(listen_fd);
    listen_fd = -1;
}

static void script(const char *head, const char *body, size_t body_len, bool endless)
{
    pthread_mutex_lock(&script_lock);
    script_head = head;
    script_body = body;
    script_body_len = body_len;
    script_endless = endless;
    pthread_mutex_unlock(&script_lock);
    atomic_store(&requests, 0);
    atomic_store(&endless_written, 0);
}

/* ---- the engine ---- */

static struct h5cd_stats stats;

struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct fetch_result *res;
};

static void on_done(struct fetch_result *res, void *arg)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->lock);
    w->res = res;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* One fetch of [offset, offset+length) of /f with retries disabled. */
static struct fetch_result *fetch(uint64_t offset, uint64_t length, const char *expect)
{
    struct h5cd_config hc;
    char err[256];
    ck_assert_int_eq(config_init(&hc), 0);
    ck_assert_int_eq(config_set(&hc, "allow_private_upstreams", "true", err, sizeof(err)), 0);
    struct urlpolicy *policy = urlpolicy_new(&hc);
    config_free(&hc);
    ck_assert_ptr_nonnull(policy);
    stats_init(&stats);
    struct fetch_config cfg = {.max_per_host = 2,
                               .max_total = 4,
                               .connect_timeout_ms = 2000,
                               .timeout_ms = 10000,
                               .retries = 0,
                               .retry_base_ms = 10,
                               .retry_budget_ms = 1000,
                               .max_redirects = 5,
                               .user_agent = "check_fetch_hostile",
                               .policy = policy,
                               .stats = &stats};
    struct fetch_engine *engine = NULL;
    ck_assert_int_eq(fetch_new(&cfg, &engine), 0);
    struct waiter w = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/f", origin_port);
    ck_assert_int_eq(fetch_submit(engine, url, offset, length, expect, on_done, &w), 0);
    uint64_t deadline = now_ms() + WAIT_MS;
    pthread_mutex_lock(&w.lock);
    while (w.res == NULL && now_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&w.cond, &w.lock, &ts);
    }
    struct fetch_result *res = w.res;
    pthread_mutex_unlock(&w.lock);
    ck_assert_msg(res != NULL, "the fetch did not complete in %u ms", WAIT_MS);
    fetch_free(engine);
    urlpolicy_free(policy);
    return res;
}

#define HEAD_206(extra)                                                                            \
    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\n"                             \
    "ETag: \"v0\"\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\n" extra "\r\n"

static const char ten[] = "0123456789";

START_TEST(test_plain_answer_is_accepted)
{
    script(HEAD_206("Content-Length: 10\r\n"), ten, 10, false);
    struct fetch_result *res = fetch(0, 10, "etag:\"v0\"");
    ck_assert_int_eq(res->status, FETCH_OK);
    ck_assert_uint_eq(res->data_len, 10);
    ck_assert_mem_eq(res->data, ten, 10);
    ck_assert_uint_eq(res->total_size, 100);
    fetch_result_free(res);

    script(HEAD_206("Content-Length: 10\r\nContent-Encoding: identity\r\n"), ten, 10, false);
    res = fetch(0, 10, "");
    ck_assert_int_eq(res->status, FETCH_OK);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_encoded_bodies_are_refused)
{
    static const char *const heads[] = {
        HEAD_206("Content-Length: 10\r\nContent-Encoding: gzip\r\n"),
        HEAD_206("Content-Length: 10\r\nContent-Encoding: identity, br\r\n"),
        HEAD_206("Content-Length: 10\r\ncontent-encoding: GZIP\r\n"),
        HEAD_206("Transfer-Encoding: gzip, chunked\r\n"),
        HEAD_206("Transfer-Encoding: chunked, gzip\r\n"),
    };
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        const char *body = strstr(heads[i], "chunked") ? "a\r\n0123456789\r\n0\r\n\r\n" : ten;
        script(heads[i], body, strlen(body), false);
        struct fetch_result *res = fetch(0, 10, "");
        ck_assert_msg(res->status == FETCH_ERR_UPSTREAM, "answer %zu accepted", i);
        ck_assert_ptr_null(res->data);
        ck_assert_ptr_nonnull(strstr(res->error, "ncoding"));
        ck_assert_uint_eq(STATS_GET(&stats, upstream_refused), 1);
        fetch_result_free(res);
    }
}
END_TEST

START_TEST(test_bodies_past_their_length_are_refused)
{
    /* Content-Length larger than the Content-Range. */
    script(HEAD_206("Content-Length: 20\r\n"), "0123456789abcdefghij", 20, false);
    struct fetch_result *res = fetch(0, 10, "");
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    ck_assert_ptr_null(res->data);
    fetch_result_free(res);

    /* A chunked body running past the Content-Range. */
    static const char chunked[] = "14\r\n0123456789abcdefghij\r\n0\r\n\r\n";
    script(HEAD_206("Transfer-Encoding: chunked\r\n"), chunked, strlen(chunked), false);
    res = fetch(0, 10, "");
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    ck_assert_ptr_nonnull(strstr(res->error, "more bytes"));
    fetch_result_free(res);

    /* A Content-Range shorter than asked (the file ends) with a body past it. */
    static const char head[] = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-4/5\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n";
    script(head, chunked, strlen(chunked), false);
    res = fetch(0, 10, "");
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_missing_validator_is_a_change)
{
    static const char no_etag[] = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\n"
                                  "Last-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\n"
                                  "Content-Length: 10\r\n\r\n";
    static const char nothing[] = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\n"
                                  "Content-Length: 10\r\n\r\n";
    script(no_etag, ten, 10, false);
    struct fetch_result *res = fetch(0, 10, "etag:\"v0\"");
    ck_assert_int_eq(res->status, FETCH_ERR_CHANGED);
    ck_assert_ptr_null(res->data);
    fetch_result_free(res);

    script(nothing, ten, 10, false);
    res = fetch(0, 10, "etag:\"v0\"");
    ck_assert_int_eq(res->status, FETCH_ERR_CHANGED);
    fetch_result_free(res);
    res = fetch(0, 10, "lm:Tue, 01 Dec 2026 10:00:00 GMT");
    ck_assert_int_eq(res->status, FETCH_ERR_CHANGED);
    fetch_result_free(res);

    /* Opened by Last-Modified: an ETag appearing later does not hide the same date. */
    script(HEAD_206("Content-Length: 10\r\n"), ten, 10, false);
    res = fetch(0, 10, "lm:Tue, 01 Dec 2026 10:00:00 GMT");
    ck_assert_int_eq(res->status, FETCH_OK);
    fetch_result_free(res);
    res = fetch(0, 10, "lm:Wed, 02 Dec 2026 10:00:00 GMT");
    ck_assert_int_eq(res->status, FETCH_ERR_CHANGED);
    fetch_result_free(res);
    res = fetch(0, 10, "etag:\"v1\"");
    ck_assert_int_eq(res->status, FETCH_ERR_CHANGED);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_endless_error_body_is_cut)
{
    static const char head[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                               "Connection: close\r\n\r\n";
    script(head, NULL, 0, true);
    uint64_t t0 = now_ms();
    struct fetch_result *res = fetch(0, 10, "");
    uint64_t took = now_ms() - t0;
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    ck_assert_int_eq(res->http_status, 500);
    /* At most the cap plus one libcurl buffer is taken; the transfer timeout is 10 s. */
    ck_assert_uint_le(STATS_GET(&stats, upstream_bytes),
                      H5CD_MAX_ERROR_BODY_BYTES + CURL_MAX_WRITE_SIZE);
    ck_assert_msg(took < 5000, "an endless 500 took %llu ms", (unsigned long long)took);
    fetch_result_free(res);

    /* A redirect with an endless body is still followed (to the same endless origin). */
    static const char moved[] = "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n"
                                "Connection: close\r\n\r\n";
    script(moved, NULL, 0, true);
    res = fetch(0, 10, "");
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM); /* too many redirects */
    ck_assert_uint_eq(res->redirects, 5);
    ck_assert_uint_eq(atomic_load(&requests), 6);
    ck_assert_ptr_nonnull(res->final_url);
    ck_assert_ptr_nonnull(strstr(res->final_url, "/elsewhere"));
    fetch_result_free(res);
}
END_TEST

START_TEST(test_endless_headers_are_cut)
{
    static const char head[] = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\n";
    script(head, NULL, 0, true);
    uint64_t t0 = now_ms();
    struct fetch_result *res = fetch(0, 10, "");
    uint64_t took = now_ms() - t0;
    ck_assert_int_eq(res->status, FETCH_ERR_UPSTREAM);
    ck_assert_ptr_nonnull(strstr(res->error, "header bytes"));
    ck_assert_msg(took < 5000, "endless headers took %llu ms", (unsigned long long)took);
    ck_assert_uint_eq(atomic_load(&requests), 1);
    fetch_result_free(res);
}
END_TEST

START_TEST(test_bad_locations)
{
    static const char *const heads[] = {
        "HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n",              /* no Location */
        "HTTP/1.1 302 Found\r\nLocation:\r\nContent-Length: 0\r\n\r\n", /* empty */
        "HTTP/1.1 301 Moved\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 307 Moved\r\nLocation: gopher://127.0.0.1:70/_x\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 308 Moved\r\nLocation: http://127.0.0.1:1/%00x\r\nContent-Length: 0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        script(heads[i], NULL, 0, false);
        struct fetch_result *res = fetch(0, 10, "");
        ck_assert_msg(res->status == FETCH_ERR_UPSTREAM || res->status == FETCH_ERR_DENIED,
                      "redirect %zu: status %d", i, (int)res->status);
        ck_assert_ptr_null(res->data);
        ck_assert_uint_eq(atomic_load(&requests), 1);
        fetch_result_free(res);
    }
}
END_TEST

int main(void)
{
    if (origin_start() < 0) {
        perror("check_fetch_hostile: cannot start the loopback origin");
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("fetch_hostile");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_plain_answer_is_accepted);
    tcase_add_test(tc, test_encoded_bodies_are_refused);
    tcase_add_test(tc, test_bodies_past_their_length_are_refused);
    tcase_add_test(tc, test_missing_validator_is_a_change);
    tcase_add_test(tc, test_endless_error_body_is_cut);
    tcase_add_test(tc, test_endless_headers_are_cut);
    tcase_add_test(tc, test_bad_locations);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* the origin thread lives in this process */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    origin_stop();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
