/*
 * check_linkstats.c - unit tests of lib/linkstats: host keys, the smoothed
 * estimates from hand-made libcurl timings, the busy-period rule for the
 * aggregate bandwidth, the bounded table (least recently seen replaced) and
 * its locking under concurrent writers and readers.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "linkstats.h"

#define MB 1000000ull

/* One answer: request sent at `pre`, first byte after rtt, body_us of body, ending at end_us. */
static struct linkstats_sample sample(uint64_t rtt, uint64_t body_us, uint64_t bytes,
                                      uint64_t end_us)
{
    return (struct linkstats_sample){.pretransfer_us = 1000,
                                     .starttransfer_us = 1000 + rtt,
                                     .total_us = 1000 + rtt + body_us,
                                     .body_bytes = bytes,
                                     .end_us = end_us};
}

START_TEST(host_keys)
{
    char key[LINKSTATS_HOST_BYTES];
    ck_assert_int_eq(linkstats_host_of("http://Example.COM/a/b?x=1", key, sizeof(key)), 0);
    ck_assert_str_eq(key, "example.com:80");
    ck_assert_int_eq(linkstats_host_of("https://s3.amazonaws.com/bucket/k", key, sizeof(key)), 0);
    ck_assert_str_eq(key, "s3.amazonaws.com:443");
    ck_assert_int_eq(linkstats_host_of("http://127.0.0.1:8080/f.h5", key, sizeof(key)), 0);
    ck_assert_str_eq(key, "127.0.0.1:8080");
    ck_assert_int_eq(linkstats_host_of("http://[::1]:9/f", key, sizeof(key)), 0);
    ck_assert_str_eq(key, "[::1]:9");
    ck_assert_int_eq(linkstats_host_of("not a url", key, sizeof(key)), -EINVAL);
    ck_assert_int_eq(linkstats_host_of("", key, sizeof(key)), -EINVAL);
    ck_assert_int_eq(linkstats_host_of(NULL, key, sizeof(key)), -EINVAL);
    /* "a.b:80" needs 7 bytes: 7 fits, 6 does not. */
    ck_assert_int_eq(linkstats_host_of("http://a.b/", key, 7), 0);
    ck_assert_int_eq(linkstats_host_of("http://a.b/", key, 6), -ENAMETOOLONG);
}
END_TEST

START_TEST(first_sample_then_ewma)
{
    struct linkstats *links = linkstats_new();
    ck_assert_ptr_nonnull(links);
    struct link_metrics m;
    ck_assert(!linkstats_get(links, "h:80", &m));
    ck_assert(!m.rtt_known && !m.conn_known && !m.link_known);

    /* 40 ms to the first byte, 1 MB in 8 ms: 125 MB/s. */
    struct linkstats_sample s = sample(40000, 8000, MB, 100000);
    linkstats_record(links, "h:80", &s);
    ck_assert(linkstats_get(links, "h:80", &m));
    ck_assert(m.rtt_known && m.conn_known && m.link_known);
    ck_assert_uint_eq(m.rtt_us, 40000);
    ck_assert_uint_eq(m.conn_bps, 125 * MB);
    ck_assert_uint_eq(m.link_bps, 125 * MB);

    /* 80 ms, 1 MB in 20 ms (50 MB/s), long after: each moves the average by a quarter. */
    s = sample(80000, 20000, MB, 10000000);
    linkstats_record(links, "h:80", &s);
    ck_assert(linkstats_get(links, "h:80", &m));
    ck_assert_uint_eq(m.rtt_us, 40000 - 10000 + 20000);
    ck_assert_uint_eq(m.conn_bps, 125 * MB - 125 * MB / 4 + 50 * MB / 4);
    /* The link keeps the largest rate seen, pulled 1/16 of the way towards a lower one. */
    ck_assert_uint_eq(m.link_bps, 125 * MB - (125 * MB - 50 * MB) / LINKSTATS_LINK_DECAY_DIV);
    /* A higher rate replaces it at once. */
    s = sample(40000, 4000, MB, 20000000);
    linkstats_record(links, "h:80", &s);
    ck_assert(linkstats_get(links, "h:80", &m));
    ck_assert_uint_eq(m.link_bps, 250 * MB);
    linkstats_free(links);
}
END_TEST

START_TEST(small_and_disordered_samples)
{
    struct linkstats *links = linkstats_new();
    struct link_metrics m;
    /* A small body: its round trip counts, its rate does not. */
    struct linkstats_sample s = sample(30000, 100, LINKSTATS_MIN_BW_BYTES - 1, 1000000);
    linkstats_record(links, "h:80", &s);
    ck_assert(linkstats_get(links, "h:80", &m));
    ck_assert(m.rtt_known && !m.conn_known && !m.link_known);
    ck_assert_uint_eq(m.rtt_us, 30000);
    /* Enough bytes but a body time below LINKSTATS_MIN_BW_US: no rate either. */
    s = sample(30000, LINKSTATS_MIN_BW_US - 1, MB, 2000000);
    linkstats_record(links, "h:80", &s);
    ck_assert(linkstats_get(links, "h:80", &m));
    ck_assert(!m.conn_known);
    /* At the minimum, a rate. */
    s = sample(30000, LINKSTATS_MIN_BW_US, LINKSTATS_MIN_BW_BYTES, 3000000);
    linkstats_record(links, "h:80", &s);
    ck_assert(linkstats_get(links, "h:80", &m));
    ck_assert(m.conn_known);
    ck_assert_uint_eq(m.conn_bps, LINKSTATS_MIN_BW_BYTES * 1000000ull / LINKSTATS_MIN_BW_US);
    /* Times out of order are ignored, not folded in. */
    struct linkstats_sample bad = {.pretransfer_us = 5000, .starttransfer_us = 4000};
    linkstats_record(links, "h:80", &bad);
    bad = (struct linkstats_sample){.starttransfer_us = 5000, .total_us = 4000};
    linkstats_record(links, "h:80", &bad);
    struct linkstats_host row;
    ck_assert_uint_eq(linkstats_snapshot(links, &row, 1), 1);
    ck_assert_uint_eq(row.requests, 3);
    ck_assert_uint_eq(row.rtt_samples, 3);
    linkstats_free(links);
}
END_TEST

START_TEST(busy_periods_measure_the_link)
{
    struct linkstats *links = linkstats_new();
    struct link_metrics m;
    /* Two 1 MB bodies over [0, 8] ms and [4, 12] ms: 2 MB in 12 ms together. */
    struct linkstats_sample s = sample(40000, 8000, MB, 8000);
    linkstats_record(links, "h:80", &s);
    s = sample(40000, 8000, MB, 12000);
    linkstats_record(links, "h:80", &s);
    ck_assert(linkstats_get(links, "h:80", &m));
    ck_assert_uint_eq(m.conn_bps, 125 * MB);
    uint64_t both = 2 * MB * 1000000 / 12000;
    ck_assert_uint_eq(m.link_bps, both);
    /* A body that starts after the period ended opens a new one: its own rate only. */
    s = sample(40000, 8000, MB, 100000);
    linkstats_record(links, "h:80", &s);
    ck_assert(linkstats_get(links, "h:80", &m));
    ck_assert_uint_eq(m.link_bps, both - (both - 125 * MB) / LINKSTATS_LINK_DECAY_DIV);
    linkstats_free(links);
}
END_TEST

START_TEST(samples_clamped)
{
    struct linkstats *links = linkstats_new();
    struct link_metrics m;
    struct linkstats_sample s = sample(UINT64_MAX / 4, LINKSTATS_MIN_BW_US, UINT64_MAX / 4, MB);
    linkstats_record(links, "h:80", &s);
    ck_assert(linkstats_get(links, "h:80", &m));
    ck_assert_uint_eq(m.rtt_us, LINKSTATS_MAX_RTT_US);
    ck_assert_uint_eq(m.conn_bps, LINKSTATS_MAX_BPS);
    ck_assert_uint_eq(m.link_bps, LINKSTATS_MAX_BPS);
    linkstats_free(links);
}
END_TEST

static void record_host(struct linkstats *links, unsigned i)
{
    char host[32];
    snprintf(host, sizeof(host), "h%u:80", i);
    struct linkstats_sample s = sample(1000 + i, 1000, MB, 1000000ull * (i + 1));
    linkstats_record(links, host, &s);
}

START_TEST(table_bounded)
{
    struct linkstats *links = linkstats_new();
    struct linkstats_host rows[LINKSTATS_MAX_HOSTS + 1];
    struct link_metrics m;
    for (unsigned i = 0; i < LINKSTATS_MAX_HOSTS; i++)
        record_host(links, i);
    ck_assert_uint_eq(linkstats_snapshot(links, rows, LINKSTATS_MAX_HOSTS + 1),
                      LINKSTATS_MAX_HOSTS);
    ck_assert_str_eq(rows[0].host, "h63:80"); /* most recently seen first */
    /* Seeing h0 again makes h1 the least recently seen: host 64 replaces h1. */
    record_host(links, 0);
    record_host(links, LINKSTATS_MAX_HOSTS);
    ck_assert_uint_eq(linkstats_snapshot(links, rows, LINKSTATS_MAX_HOSTS + 1),
                      LINKSTATS_MAX_HOSTS);
    ck_assert(linkstats_get(links, "h0:80", &m));
    ck_assert(!linkstats_get(links, "h1:80", &m));
    ck_assert(linkstats_get(links, "h64:80", &m));
    ck_assert_uint_eq(m.rtt_us, 1000 + LINKSTATS_MAX_HOSTS); /* a fresh row, no old average */
    ck_assert_uint_eq(linkstats_snapshot(links, rows, 2), 2);
    ck_assert_str_eq(rows[0].host, "h64:80");
    ck_assert_str_eq(rows[1].host, "h0:80");
    ck_assert_uint_eq(linkstats_snapshot(links, rows, 0), 0);
    ck_assert_uint_eq(linkstats_snapshot(NULL, rows, 1), 0);
    linkstats_free(links);
    linkstats_free(NULL);
}
END_TEST

#define WRITERS  4
#define ROUNDS   5000
#define PRIVATES 40 /* per writer: 160 hosts churn through 64 rows */

struct writer_arg {
    struct linkstats *links;
    unsigned id;
};

static void *writer(void *arg)
{
    struct linkstats *links = ((struct writer_arg *)arg)->links;
    unsigned id = ((struct writer_arg *)arg)->id;
    for (unsigned i = 0; i < ROUNDS; i++) {
        struct linkstats_sample s = sample(1000, 1000, MB, i);
        linkstats_record(links, "shared:80", &s);
        if (i % 10 == 0)
            record_host(links, 1000 + id * PRIVATES + (i / 10) % PRIVATES);
    }
    return NULL;
}

static void *reader(void *arg)
{
    struct linkstats *links = arg;
    struct linkstats_host rows[LINKSTATS_MAX_HOSTS];
    struct link_metrics m;
    for (unsigned i = 0; i < ROUNDS; i++) {
        size_t n = linkstats_snapshot(links, rows, LINKSTATS_MAX_HOSTS);
        ck_assert_uint_le(n, LINKSTATS_MAX_HOSTS);
        for (size_t k = 0; k < n; k++)
            ck_assert_uint_gt(strlen(rows[k].host), 0);
        linkstats_get(links, "shared:80", &m);
    }
    return NULL;
}

START_TEST(concurrent_writers_and_readers)
{
    struct linkstats *links = linkstats_new();
    pthread_t w[WRITERS], r;
    struct writer_arg args[WRITERS];
    for (unsigned i = 0; i < WRITERS; i++) {
        args[i] = (struct writer_arg){.links = links, .id = i};
        ck_assert_int_eq(pthread_create(&w[i], NULL, writer, &args[i]), 0);
    }
    ck_assert_int_eq(pthread_create(&r, NULL, reader, links), 0);
    for (unsigned i = 0; i < WRITERS; i++)
        pthread_join(w[i], NULL);
    pthread_join(r, NULL);
    /* The shared host is seen constantly, so never replaced: every answer counted once. */
    struct linkstats_host rows[LINKSTATS_MAX_HOSTS];
    size_t n = linkstats_snapshot(links, rows, LINKSTATS_MAX_HOSTS);
    ck_assert_uint_eq(n, LINKSTATS_MAX_HOSTS);
    uint64_t shared = 0;
    for (size_t k = 0; k < n; k++)
        if (strcmp(rows[k].host, "shared:80") == 0)
            shared = rows[k].requests;
    ck_assert_uint_eq(shared, (uint64_t)WRITERS * ROUNDS);
    linkstats_free(links);
}
END_TEST

static Suite *linkstats_suite(void)
{
    Suite *s = suite_create("linkstats");
    TCase *core = tcase_create("core");
    tcase_add_test(core, host_keys);
    tcase_add_test(core, first_sample_then_ewma);
    tcase_add_test(core, small_and_disordered_samples);
    tcase_add_test(core, busy_periods_measure_the_link);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, samples_clamped);
    tcase_add_test(limits, table_bounded);
    tcase_add_test(limits, concurrent_writers_and_readers);
    tcase_set_timeout(limits, 60);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(linkstats_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
