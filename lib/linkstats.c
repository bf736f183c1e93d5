/*
 * linkstats.c - per-host link estimates (round-trip time, per-connection and
 * aggregate bandwidth) smoothed from the fetch engine's own answers.
 *
 * A fixed array of LINKSTATS_MAX_HOSTS rows under one mutex: a lookup is a
 * linear scan of at most 64 short strings, far cheaper than the network
 * round trip it accompanies.  Nothing here blocks but the mutex, so the
 * fetch loop thread may record and any thread may read.
 */
#include "linkstats.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct row {
    bool used;
    uint64_t last_seen; /* recording sequence number, for least-recently-seen replacement */
    struct linkstats_host pub;
    /* The busy period being measured: union of overlapping body times. */
    uint64_t busy_start_us;
    uint64_t busy_end_us;
    uint64_t busy_bytes;
};

struct linkstats {
    pthread_mutex_t lock;
    uint64_t seq;
    struct row rows[LINKSTATS_MAX_HOSTS];
};

struct linkstats *linkstats_new(void)
{
    struct linkstats *links = calloc(1, sizeof(*links));
    if (links == NULL)
        return NULL;
    if (pthread_mutex_init(&links->lock, NULL) != 0) {
        free(links);
        return NULL;
    }
    return links;
}

void linkstats_free(struct linkstats *links)
{
    if (links == NULL)
        return;
    pthread_mutex_destroy(&links->lock);
    free(links);
}

static int format_key(const char *host, const char *port, char *key, size_t cap)
{
    int n = snprintf(key, cap, "%s:%s", host, port);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n >= cap)
        return -ENAMETOOLONG;
    for (char *p = key; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    return 0;
}

int linkstats_host_of(const char *url, char *key, size_t cap)
{
    if (url == NULL || key == NULL || cap == 0)
        return -EINVAL;
    CURLU *u = curl_url();
    if (u == NULL)
        return -ENOMEM;
    char *host = NULL, *port = NULL;
    int rc = -EINVAL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK && host[0] != '\0')
        rc = format_key(host, port, key, cap);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

static uint64_t clamp_u64(uint64_t v, uint64_t hi)
{
    return v > hi ? hi : v;
}

/* The first sample is taken as is; later ones move the average by 1/LINKSTATS_EWMA_DIV. */
static uint64_t ewma(uint64_t avg, uint64_t samples, uint64_t sample)
{
    if (samples == 0)
        return sample;
    return avg - avg / LINKSTATS_EWMA_DIV + sample / LINKSTATS_EWMA_DIV;
}

/* bytes per second for bytes over us (> 0) microseconds, clamped to LINKSTATS_MAX_BPS. */
static uint64_t rate_bps(uint64_t bytes, uint64_t us)
{
    uint64_t whole = bytes / us; /* bytes per microsecond */
    if (whole >= LINKSTATS_MAX_BPS / 1000000u)
        return LINKSTATS_MAX_BPS;
    /* bytes <= 2^44 keeps bytes * 10^6 below 2^64; larger bodies lose a fraction only. */
    if (bytes > (1ull << 44))
        return whole * 1000000u;
    return clamp_u64(bytes * 1000000u / us, LINKSTATS_MAX_BPS);
}

static struct row *find_row(struct linkstats *links, const char *host)
{
    for (size_t i = 0; i < LINKSTATS_MAX_HOSTS; i++)
        if (links->rows[i].used && strcmp(links->rows[i].pub.host, host) == 0)
            return &links->rows[i];
    return NULL;
}

/* The row for host, taking a free row or the least recently seen one. */
static struct row *claim_row(struct linkstats *links, const char *host)
{
    struct row *row = find_row(links, host);
    if (row != NULL)
        return row;
    row = &links->rows[0];
    for (size_t i = 0; i < LINKSTATS_MAX_HOSTS && row->used; i++)
        if (!links->rows[i].used || links->rows[i].last_seen < row->last_seen)
            row = &links->rows[i];
    memset(row, 0, sizeof(*row));
    row->used = true;
    snprintf(row->pub.host, sizeof(row->pub.host), "%s", host);
    return row;
}

static void record_rtt(struct row *row, const struct linkstats_sample *s)
{
    uint64_t rtt = clamp_u64(s->starttransfer_us - s->pretransfer_us, LINKSTATS_MAX_RTT_US);
    row->pub.metrics.rtt_us = ewma(row->pub.metrics.rtt_us, row->pub.rtt_samples, rtt);
    row->pub.metrics.rtt_known = true;
    row->pub.rtt_samples++;
}

static void record_conn(struct row *row, uint64_t body_bytes, uint64_t body_us)
{
    if (body_bytes < LINKSTATS_MIN_BW_BYTES || body_us < LINKSTATS_MIN_BW_US)
        return;
    uint64_t bps = rate_bps(body_bytes, body_us);
    row->pub.metrics.conn_bps = ewma(row->pub.metrics.conn_bps, row->pub.conn_samples, bps);
    row->pub.metrics.conn_known = true;
    row->pub.conn_samples++;
}

/*
 * Answers end in the order they are recorded, so a body that began before
 * the busy period's end overlaps it and extends it; one that began later
 * starts a new period.  Each completion inside a period long and full
 * enough gives a sample of everything the period carried so far.
 */
static void record_link(struct row *row, uint64_t body_bytes, uint64_t body_us, uint64_t end_us)
{
    uint64_t start = end_us >= body_us ? end_us - body_us : 0;
    if (row->busy_bytes == 0 || start > row->busy_end_us || end_us < row->busy_end_us) {
        row->busy_start_us = start;
        row->busy_end_us = end_us;
        row->busy_bytes = 0;
    }
    if (start < row->busy_start_us)
        row->busy_start_us = start;
    row->busy_end_us = end_us;
    row->busy_bytes = clamp_u64(row->busy_bytes + body_bytes, UINT64_MAX / 2);
    uint64_t span = row->busy_end_us - row->busy_start_us;
    if (row->busy_bytes < LINKSTATS_MIN_LINK_BYTES || span < LINKSTATS_MIN_BW_US)
        return;
    uint64_t bps = rate_bps(row->busy_bytes, span);
    uint64_t old = row->pub.metrics.link_bps;
    if (row->pub.link_samples == 0 || bps >= old)
        row->pub.metrics.link_bps = bps;
    else
        row->pub.metrics.link_bps = old - (old - bps) / LINKSTATS_LINK_DECAY_DIV;
    row->pub.metrics.link_known = true;
    row->pub.link_samples++;
}

void linkstats_record(struct linkstats *links, const char *host, const struct linkstats_sample *s)
{
    if (links == NULL || host == NULL || host[0] == '\0' || s == NULL)
        return;
    if (s->starttransfer_us < s->pretransfer_us || s->total_us < s->starttransfer_us)
        return;
    uint64_t body_us = s->total_us - s->starttransfer_us;
    pthread_mutex_lock(&links->lock);
    struct row *row = claim_row(links, host);
    row->last_seen = ++links->seq;
    row->pub.requests++;
    row->pub.bytes += s->body_bytes;
    record_rtt(row, s);
    record_conn(row, s->body_bytes, body_us);
    record_link(row, s->body_bytes, body_us, s->end_us);
    pthread_mutex_unlock(&links->lock);
}

bool linkstats_get(struct linkstats *links, const char *host, struct link_metrics *out)
{
    memset(out, 0, sizeof(*out));
    if (links == NULL || host == NULL)
        return false;
    pthread_mutex_lock(&links->lock);
    const struct row *row = find_row(links, host);
    if (row != NULL)
        *out = row->pub.metrics;
    pthread_mutex_unlock(&links->lock);
    return row != NULL;
}

static int by_recency(const void *a, const void *b)
{
    const struct row *x = *(const struct row *const *)a, *y = *(const struct row *const *)b;
    return x->last_seen > y->last_seen ? -1 : x->last_seen < y->last_seen;
}

size_t linkstats_snapshot(struct linkstats *links, struct linkstats_host *out, size_t cap)
{
    if (links == NULL || out == NULL)
        return 0;
    const struct row *order[LINKSTATS_MAX_HOSTS];
    size_t n = 0;
    pthread_mutex_lock(&links->lock);
    for (size_t i = 0; i < LINKSTATS_MAX_HOSTS; i++)
        if (links->rows[i].used)
            order[n++] = &links->rows[i];
    qsort(order, n, sizeof(order[0]), by_recency);
    if (n > cap)
        n = cap;
    for (size_t i = 0; i < n; i++)
        out[i] = order[i]->pub;
    pthread_mutex_unlock(&links->lock);
    return n;
}
