/*
 * check_batchreq.c - the streaming parser of POST /v1/chunks bodies
 * (lib/batchreq.c) and the daemon-wide memory budget (lib/membudget.c):
 * valid bodies fed whole and a byte at a time, every field rule, the key
 * limit enforced while parsing, long tokens and deep nesting refused at
 * once, memory charged and released, and budget waits that end.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "batchreq.h"
#include "membudget.h"

/* Parses text (in pieces of `piece` bytes); returns 0 or -1 with err set. */
static int parse(struct batchreq *r, const char *text, size_t piece, struct h5cd_error *err)
{
    size_t len = strlen(text);
    for (size_t i = 0; i < len; i += piece) {
        size_t n = len - i < piece ? len - i : piece;
        if (batchreq_feed(r, text + i, n) < 0)
            break;
    }
    return batchreq_finish(r, err);
}

START_TEST(test_valid)
{
    static const char body[] =
        " {\"path\": \"/a/b\", \"keys\": [\"0.0\", \"1.2\", \"10\"], \"extra\": {\"x\": [1, "
        "{\"y\": null}]},\n \"url\": \"http://example.org/f\\u00e9.h5\", \"decode\": true} ";
    size_t pieces[] = {1, 2, 7, sizeof(body)};
    for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
        struct batchreq *r = batchreq_new(100, NULL, 0);
        struct h5cd_error err = {0};
        ck_assert_int_eq(parse(r, body, pieces[p], &err), 0);
        ck_assert_str_eq(batchreq_url(r), "http://example.org/f\xc3\xa9.h5");
        ck_assert_str_eq(batchreq_path(r), "/a/b");
        ck_assert(batchreq_decode(r));
        ck_assert_uint_eq(batchreq_nkeys(r), 3);
        ck_assert_str_eq(batchreq_key(r, 0), "0.0");
        ck_assert_str_eq(batchreq_key(r, 1), "1.2");
        ck_assert_str_eq(batchreq_key(r, 2), "10");
        batchreq_free(r);
    }
}
END_TEST

/* Each body is refused with the code and a message containing `says`. */
static void refused(const char *body, enum h5cd_errcode code, const char *says)
{
    struct batchreq *r = batchreq_new(3, NULL, 0);
    struct h5cd_error err = {0};
    ck_assert_msg(parse(r, body, 5, &err) == -1, "accepted: %s", body);
    ck_assert_msg(err.code == code, "%s: code %d, want %d (%s)", body, err.code, code, err.message);
    ck_assert_msg(strstr(err.message, says) != NULL, "%s: '%s' lacks '%s'", body, err.message,
                  says);
    batchreq_free(r);
}

START_TEST(test_refused)
{
    refused("", H5CD_E_BAD_REQUEST, "malformed JSON");
    refused("[]", H5CD_E_BAD_REQUEST, "must be a JSON object");
    refused("\"x\"", H5CD_E_BAD_REQUEST, "must be a JSON object");
    refused("{\"url\": \"u\", \"path\": \"/\"", H5CD_E_BAD_REQUEST, "malformed JSON");
    refused("{\"url\": \"u\", \"path\": \"/\", \"keys\": []} {}", H5CD_E_BAD_REQUEST, "malformed");
    refused("{\"path\": \"/\", \"keys\": []}", H5CD_E_BAD_REQUEST, "'url' must be a string");
    refused("{\"url\": 5, \"path\": \"/\", \"keys\": []}", H5CD_E_BAD_REQUEST, "'url' must be");
    refused("{\"url\": \"u\", \"keys\": []}", H5CD_E_BAD_REQUEST, "'path' must be a string");
    refused("{\"url\": \"u\", \"path\": \"/\"}", H5CD_E_BAD_REQUEST, "'keys' must be an array");
    refused("{\"url\": \"u\", \"path\": \"/\", \"keys\": \"0\"}", H5CD_E_BAD_REQUEST,
            "'keys' must");
    refused("{\"url\": \"u\", \"path\": \"/\", \"keys\": [0]}", H5CD_E_BAD_KEY, "a number");
    refused("{\"url\": \"u\", \"path\": \"/\", \"keys\": [[\"0\"]]}", H5CD_E_BAD_KEY, "an array");
    refused("{\"url\": \"u\", \"path\": \"/\", \"keys\": [], \"decode\": 1}", H5CD_E_BAD_REQUEST,
            "'decode' must be true or false");
    refused("{\"url\": \"u\", \"url\": \"v\", \"path\": \"/\", \"keys\": []}", H5CD_E_BAD_REQUEST,
            "appears twice");
    refused("{\"url\": \"u\\u0000x\", \"path\": \"/\", \"keys\": []}", H5CD_E_BAD_REQUEST, "NUL");
    refused("{\"url\": \"u\", \"path\": \"/\", \"keys\": [\"a\\u0000\"]}", H5CD_E_BAD_KEY, "NUL");
    refused("{\"url\": \"u\", \"path\": \"/\", \"keys\": [\"1\", \"2\", \"3\", \"4\"]}",
            H5CD_E_TOO_LARGE, "more than 3 keys");
    refused("{\"x\": [[[[[[[[[[1]]]]]]]]]], \"url\": \"u\", \"path\": \"/\", \"keys\": []}",
            H5CD_E_BAD_REQUEST, "nest");
    refused("{\"url\": \"\xff\", \"path\": \"/\", \"keys\": []}", H5CD_E_BAD_REQUEST, "malformed");
}
END_TEST

/* The key limit stops the parse at the first key past it, however long the body. */
START_TEST(test_limit_while_parsing)
{
    struct batchreq *r = batchreq_new(1000, NULL, 0);
    static const char head[] = "{\"url\": \"u\", \"path\": \"/\", \"keys\": [";
    ck_assert_int_eq(batchreq_feed(r, head, strlen(head)), 0);
    int rc = 0;
    size_t fed = 0;
    for (; fed < 100000 && rc == 0; fed++)
        rc = batchreq_feed(r, "\"0.0\",", 6);
    ck_assert_int_eq(rc, -1);
    ck_assert_uint_le(fed, 1002);
    ck_assert_int_eq(batchreq_feed(r, "\"0.0\",", 6), -1); /* refused for good */
    struct h5cd_error err = {0};
    ck_assert_int_eq(batchreq_finish(r, &err), -1);
    ck_assert_int_eq(err.code, H5CD_E_TOO_LARGE);
    batchreq_free(r);
}
END_TEST

/* A token (or run of spaces) past 64 KiB is refused without being buffered whole. */
START_TEST(test_long_token)
{
    size_t n = 1 << 20;
    char *big = malloc(n);
    ck_assert_ptr_nonnull(big);
    memset(big, 'a', n);
    struct batchreq *r = batchreq_new(10, NULL, 0);
    ck_assert_int_eq(batchreq_feed(r, "{\"url\": \"", 9), 0);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += 4096)
        rc = batchreq_feed(r, big, 4096);
    ck_assert_int_eq(rc, -1);
    struct h5cd_error err = {0};
    ck_assert_int_eq(batchreq_finish(r, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.message, "too long"));
    batchreq_free(r);
    memset(big, ' ', n);
    r = batchreq_new(10, NULL, 0);
    ck_assert_int_eq(batchreq_feed(r, big, n), -1);
    batchreq_free(r);
    free(big);
}
END_TEST

/* Key storage is charged to the budget, refused past it, released on free. */
START_TEST(test_budget_charges)
{
    struct membudget *mb = membudget_new(64 * 1024);
    struct batchreq *r = batchreq_new(1000000, mb, 10);
    static const char head[] = "{\"url\": \"u\", \"path\": \"/\", \"keys\": [";
    ck_assert_int_eq(batchreq_feed(r, head, strlen(head)), 0);
    ck_assert_int_eq(batchreq_feed(r, "\"1.2\",", 6), 0);
    ck_assert_uint_gt(membudget_used(mb), 0);
    int rc = 0;
    for (int i = 0; i < 100000 && rc == 0; i++)
        rc = batchreq_feed(r, "\"123.456\",", 10);
    ck_assert_int_eq(rc, -1);
    struct h5cd_error err = {0};
    ck_assert_int_eq(batchreq_finish(r, &err), -1);
    ck_assert_int_eq(err.code, H5CD_E_UNAVAILABLE);
    ck_assert_uint_le(membudget_used(mb), 64 * 1024);
    ck_assert_uint_ge(membudget_refusals(mb), 1);
    batchreq_free(r);
    ck_assert_uint_eq(membudget_used(mb), 0);
    membudget_free(mb);
}
END_TEST

struct releaser {
    struct membudget *mb;
    uint64_t n;
};

static void *release_later(void *arg)
{
    struct releaser *rl = arg;
    usleep(50 * 1000);
    membudget_release(rl->mb, rl->n);
    return NULL;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

START_TEST(test_membudget)
{
    struct membudget *mb = membudget_new(1000);
    ck_assert(membudget_try(mb, 600));
    ck_assert(!membudget_try(mb, 500));
    ck_assert(!membudget_acquire(mb, 2000, 5000)); /* never fits: no wait at all */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert(!membudget_acquire(mb, 500, 50)); /* waits its 50 ms, then gives up */
    ck_assert(seconds_since(&t0) >= 0.04);
    /* a release by another thread lets a waiter in */
    pthread_t t;
    struct releaser rl = {mb, 600};
    ck_assert_int_eq(pthread_create(&t, NULL, release_later, &rl), 0);
    ck_assert(membudget_acquire(mb, 900, 5000));
    pthread_join(t, NULL);
    ck_assert_uint_eq(membudget_used(mb), 900);
    membudget_force(mb, 500); /* past the limit: allowed, and nothing else fits */
    ck_assert(!membudget_try(mb, 1));
    membudget_release(mb, 1400);
    ck_assert_uint_eq(membudget_used(mb), 0);
    membudget_set_limit(mb, 10);
    ck_assert(!membudget_try(mb, 11));
    ck_assert_uint_eq(membudget_limit(mb), 10);
    membudget_free(mb);
}
END_TEST

static Suite *batchreq_suite(void)
{
    Suite *s = suite_create("batchreq");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_valid);
    tcase_add_test(tc, test_refused);
    tcase_add_test(tc, test_limit_while_parsing);
    tcase_add_test(tc, test_long_token);
    tcase_add_test(tc, test_budget_charges);
    tcase_add_test(tc, test_membudget);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(batchreq_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
