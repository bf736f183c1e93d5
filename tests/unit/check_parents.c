/*
 * check_parents.c - unit tests of lib/parents: parent URLs refused, the
 * mapping of origin URLs onto a site cache, rendezvous ranking (spread and
 * stability when a parent goes), the circuit breaker (trips, trials,
 * backoff, recovery), stale answers and refreshes, and slice-aligned plans.
 */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parents.h"

#define MIB (1024u * 1024u)

static struct parents *make(const char *const *urls, size_t n, unsigned retry_ms)
{
    struct parents_config cfg = {
        .urls = urls, .count = n, .slice = MIB, .retry_ms = retry_ms, .retry_max_ms = 8 * retry_ms};
    struct parents *p = NULL;
    char msg[256];
    ck_assert_int_eq(parents_new(&cfg, &p, msg, sizeof(msg)), 0);
    return p;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The parent the next hop of a fresh route goes to, or -1 for the origin. */
static int first_choice(struct parents *p, const char *url, uint64_t offset)
{
    struct parents_route route;
    parents_route_begin(p, &route, url, offset);
    char *wire = parents_route_next(p, &route, url);
    int chosen = route.current;
    free(wire);
    parents_report(p, &route, PARENTS_SERVED, 0);
    return chosen;
}

START_TEST(test_bad_urls)
{
    static const char *const bad[] = {
        "ftp://cache:8080",
        "cache:8080",
        "http://cache:8080/?x=1",
        "http://cache:8080/#f",
        "http://u:pw@cache/",
        "http://cache:8080/a b",
        "http://cache:8080/\"x\"",
        "http://cache:8080/\\x",
        "",
    };
    char msg[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(parents_check_url(bad[i], msg, sizeof(msg)) == -EINVAL, "accepted %s",
                      bad[i]);
    ck_assert_int_eq(parents_check_url("http://10.1.2.3:8080", msg, sizeof(msg)), 0);
    ck_assert_int_eq(parents_check_url("https://cache.lab.example/h5/", msg, sizeof(msg)), 0);

    static const char *const twice[] = {"http://a:1", "http://a:1/"};
    struct parents_config cfg = {
        .urls = twice, .count = 2, .slice = MIB, .retry_ms = 100, .retry_max_ms = 1000};
    struct parents *p = NULL;
    ck_assert_int_eq(parents_new(&cfg, &p, msg, sizeof(msg)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(msg, "twice"));
    cfg.count = 1;
    cfg.slice = 3 * MIB;
    ck_assert_int_eq(parents_new(&cfg, &p, msg, sizeof(msg)), -EINVAL);
    cfg.slice = MIB;
    cfg.count = 0;
    ck_assert_int_eq(parents_new(&cfg, &p, msg, sizeof(msg)), -EINVAL);
    cfg.count = PARENTS_MAX + 1;
    ck_assert_int_eq(parents_new(&cfg, &p, msg, sizeof(msg)), -EINVAL);
    cfg.count = 1;
    cfg.retry_max_ms = 10;
    ck_assert_int_eq(parents_new(&cfg, &p, msg, sizeof(msg)), -EINVAL);
}
END_TEST

START_TEST(test_wire_urls)
{
    static const char *const one[] = {"http://cache.lab:8080/prefix/"};
    struct parents *p = make(one, 1, 1000);
    struct parents_route route;
    static const struct {
        const char *origin;
        const char *wire; /* NULL: the origin must be asked directly */
    } cases[] = {
        {"https://bucket.s3.amazonaws.com/blobs/ab/cd?versionId=3",
         "http://cache.lab:8080/prefix/https/bucket.s3.amazonaws.com/blobs/ab/cd?versionId=3"},
        {"http://127.0.0.1:8081/a%20b/f.nwb",
         "http://cache.lab:8080/prefix/http/127.0.0.1:8081/a%20b/f.nwb"},
        {"HTTP://Data.Example.ORG/Path/F.nwb",
         "http://cache.lab:8080/prefix/http/data.example.org/Path/F.nwb"},
        {"https://user:pw@host/f", NULL},
        {"ftp://host/f", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parents_route_begin(p, &route, cases[i].origin, 0);
        char *wire = parents_route_next(p, &route, cases[i].origin);
        if (cases[i].wire == NULL) {
            ck_assert_ptr_null(wire);
            ck_assert_int_eq(route.current, -1);
        } else {
            ck_assert_ptr_nonnull(wire);
            ck_assert_str_eq(wire, cases[i].wire);
            ck_assert_int_eq(route.current, 0);
            parents_report(p, &route, PARENTS_SERVED, 10);
        }
        free(wire);
    }
    parents_free(p);
}
END_TEST

START_TEST(test_rendezvous_spread_and_stability)
{
    static const char *const three[] = {"http://a:1", "http://b:1", "http://c:1"};
    struct parents *p3 = make(three, 3, 1000);
    struct parents *p2 = make(three, 2, 1000); /* c gone */
    unsigned count[3] = {0};
    const unsigned slices = 3000;
    for (unsigned s = 0; s < slices; s++) {
        const char *url = s % 2 ? "https://h/f1.nwb?X-Amz-Signature=1" : "https://h/f2.nwb";
        int best3 = first_choice(p3, url, (uint64_t)s * MIB + 5);
        ck_assert_int_ge(best3, 0);
        count[best3]++;
        /* The same file and slice always rank the same, whatever the query. */
        ck_assert_int_eq(
            best3, first_choice(p3, s % 2 ? "https://h/f1.nwb?other=2" : url, (uint64_t)s * MIB));
        if (best3 != 2)
            ck_assert_int_eq(best3, first_choice(p2, url, (uint64_t)s * MIB));
    }
    for (int i = 0; i < 3; i++)
        ck_assert_msg(count[i] > slices / 4, "parent %d got %u of %u slices", i, count[i], slices);
    parents_free(p3);
    parents_free(p2);
}
END_TEST

START_TEST(test_breaker_trips_and_recovers)
{
    static const char *const two[] = {"http://a:1", "http://b:1"};
    struct parents *p = make(two, 2, 150);
    const char *url = "https://h/f.nwb";
    int best = first_choice(p, url, 0);
    int other = 1 - best;

    /* A connect error trips at once; the request goes on to the other parent. */
    struct parents_route route;
    parents_route_begin(p, &route, url, 0);
    free(parents_route_next(p, &route, url));
    ck_assert_int_eq(route.current, best);
    parents_report(p, &route, PARENTS_UNREACHABLE, 0);
    free(parents_route_next(p, &route, url));
    ck_assert_int_eq(route.current, other);
    parents_report(p, &route, PARENTS_SERVED, 100);
    ck_assert_int_eq(first_choice(p, url, 0), other);

    /* A 421 (a host the parent does not serve) is no failure; other failures trip after
     * PARENTS_FAILS_TO_TRIP in a row. */
    parents_route_begin(p, &route, url, 0);
    free(parents_route_next(p, &route, url));
    ck_assert_int_eq(route.current, other);
    parents_report(p, &route, PARENTS_NOT_SERVED, 0);
    for (int i = 0; i < PARENTS_FAILS_TO_TRIP; i++) {
        parents_route_begin(p, &route, url, 0);
        free(parents_route_next(p, &route, url));
        ck_assert_int_eq(route.current, other);
        parents_report(p, &route, PARENTS_FAILED, 0);
    }
    /* Both down: the origin. */
    ck_assert_int_eq(first_choice(p, url, 0), -1);

    /* After retry_ms, one trial at a time. */
    sleep_ms(200);
    struct parents_route trial, concurrent;
    parents_route_begin(p, &trial, url, 0);
    free(parents_route_next(p, &trial, url));
    ck_assert_int_eq(trial.current, best);
    ck_assert(trial.trial);
    parents_route_begin(p, &concurrent, url, 0);
    free(parents_route_next(p, &concurrent, url));
    ck_assert_int_eq(concurrent.current, other); /* best's trial is taken */
    ck_assert(concurrent.trial);
    parents_report(p, &concurrent, PARENTS_FAILED, 0); /* a failed trial doubles the wait */
    parents_report(p, &trial, PARENTS_SERVED, 1);
    ck_assert_int_eq(first_choice(p, url, 0), best);

    json_t *stats = parents_stats_json(p);
    ck_assert_ptr_nonnull(stats);
    json_t *b = json_array_get(stats, (size_t)other);
    ck_assert_str_eq(json_string_value(json_object_get(b, "state")), "down");
    ck_assert_int_gt(json_integer_value(json_object_get(b, "retry_in_ms")), 150);
    ck_assert_int_eq(json_integer_value(json_object_get(b, "not_served")), 1);
    json_t *a = json_array_get(stats, (size_t)best);
    ck_assert_str_eq(json_string_value(json_object_get(a, "state")), "up");
    ck_assert_int_eq(json_integer_value(json_object_get(a, "trips")), 1);
    json_decref(stats);
    char *prom = parents_render_prometheus(p);
    ck_assert_ptr_nonnull(strstr(prom, "h5chunkd_parent_up{parent=\"http://a:1\"}"));
    free(prom);
    parents_free(p);
}
END_TEST

START_TEST(test_abandoned_trial_is_released)
{
    static const char *const one[] = {"http://a:1"};
    struct parents *p = make(one, 1, 100);
    const char *url = "https://h/f.nwb";
    struct parents_route route;
    parents_route_begin(p, &route, url, 0);
    free(parents_route_next(p, &route, url));
    parents_report(p, &route, PARENTS_TIMEOUT, 0);
    ck_assert_int_eq(first_choice(p, url, 0), -1);
    sleep_ms(150);
    parents_route_begin(p, &route, url, 0);
    free(parents_route_next(p, &route, url));
    ck_assert(route.trial);
    parents_report(p, &route, PARENTS_ABANDONED, 0);
    parents_report(p, &route, PARENTS_ABANDONED, 0); /* twice is harmless */
    ck_assert_int_eq(first_choice(p, url, 0), 0);    /* the next request gets the trial */
    parents_free(p);
}
END_TEST

START_TEST(test_stale_answers)
{
    static const char *const two[] = {"http://a:1", "http://b:1"};
    struct parents *p = make(two, 2, 1000);
    const char *url = "https://h/changed.nwb?sig=1";
    struct parents_route route;
    parents_route_begin(p, &route, url, 7 * MIB);
    ck_assert(!route.refresh);
    free(parents_route_next(p, &route, url));
    int chosen = route.current;
    /* First stale answer: the same parent again, with a refresh. */
    ck_assert(parents_stale(p, &route));
    free(parents_route_next(p, &route, url));
    ck_assert_int_eq(route.current, chosen);
    ck_assert(route.refresh);
    /* Still stale: the origin decides. */
    ck_assert(!parents_stale(p, &route));
    ck_assert_ptr_null(parents_route_next(p, &route, url));
    ck_assert_int_eq(route.current, -1);
    /* The file is remembered: its next request refreshes at once, until one is served. */
    parents_route_begin(p, &route, "https://h/changed.nwb", 0);
    ck_assert(route.refresh);
    free(parents_route_next(p, &route, url));
    parents_report(p, &route, PARENTS_SERVED, 5);
    parents_route_begin(p, &route, url, 0);
    ck_assert(!route.refresh);
    parents_free(p);
}
END_TEST

START_TEST(test_split_plan)
{
    const uint64_t slice = 4, unit = 1;
    for (unsigned seed = 1; seed < 500; seed++) {
        srand(seed);
        struct coalesce_plan plan = {0};
        size_t n = 1 + (size_t)rand() % 6;
        plan.fetches = malloc(n * sizeof(*plan.fetches));
        ck_assert_ptr_nonnull(plan.fetches);
        uint64_t at = 0, covered = 0;
        for (size_t i = 0; i < n; i++) {
            at += (uint64_t)(rand() % 5) * unit;
            uint64_t len = (1 + (uint64_t)(rand() % 12)) * unit;
            plan.fetches[i] = (struct coalesce_range){at, len};
            at += len;
            covered += len;
        }
        plan.nfetches = n;
        ck_assert_int_eq(parents_split_plan(&plan, slice), 0);
        uint64_t sum = 0;
        for (size_t i = 0; i < plan.nfetches; i++) {
            const struct coalesce_range *r = &plan.fetches[i];
            ck_assert_uint_gt(r->length, 0);
            ck_assert_uint_eq(r->offset / slice, (r->offset + r->length - 1) / slice);
            if (i > 0)
                ck_assert_uint_le(plan.fetches[i - 1].offset + plan.fetches[i - 1].length,
                                  r->offset);
            sum += r->length;
        }
        ck_assert_uint_eq(sum, covered);
        coalesce_plan_free(&plan);
    }
}
END_TEST

static Suite *parents_suite(void)
{
    Suite *s = suite_create("parents");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_bad_urls);
    tcase_add_test(tc, test_wire_urls);
    tcase_add_test(tc, test_rendezvous_spread_and_stability);
    tcase_add_test(tc, test_breaker_trips_and_recovers);
    tcase_add_test(tc, test_abandoned_trial_is_released);
    tcase_add_test(tc, test_stale_answers);
    tcase_add_test(tc, test_split_plan);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(parents_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
