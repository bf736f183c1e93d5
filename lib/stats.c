/*
 * stats.c - rendering of the daemon's counters as JSON (/v1/stats) and
 * Prometheus text (/metrics).  Counters are updated lock-free by every
 * thread (see stats.h); rendering reads a relaxed snapshot.
 */
#include "stats.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void stats_init(struct h5cd_stats *stats)
{
#define H5CD_STATS_ZERO(name, help) atomic_init(&stats->name, 0);
    H5CD_COUNTERS(H5CD_STATS_ZERO)
#undef H5CD_STATS_ZERO
}

char *stats_render_json(const struct h5cd_stats *stats, const struct h5cd_gauges *gauges,
                        const char *version)
{
    json_t *obj = json_object();
    if (obj == NULL)
        return NULL;
    int rc = 0;
#define H5CD_STATS_JSON(name, help)                                                                \
    rc |= json_object_set_new(obj, #name, json_integer((json_int_t)STATS_GET(stats, name)));
    H5CD_COUNTERS(H5CD_STATS_JSON)
#undef H5CD_STATS_JSON
    rc |= json_object_set_new(obj, "cache_bytes", json_integer((json_int_t)gauges->cache_bytes));
    rc |= json_object_set_new(obj, "cache_limit_bytes",
                              json_integer((json_int_t)gauges->cache_limit_bytes));
    rc |= json_object_set_new(obj, "cache_blocks", json_integer((json_int_t)gauges->cache_blocks));
    rc |= json_object_set_new(obj, "cache_spans", json_integer((json_int_t)gauges->cache_spans));
    rc |= json_object_set_new(obj, "cache_span_drops",
                              json_integer((json_int_t)gauges->cache_span_drops));
    rc |= json_object_set_new(obj, "evictions", json_integer((json_int_t)gauges->evictions));
    rc |= json_object_set_new(obj, "uptime_seconds",
                              json_integer((json_int_t)gauges->uptime_seconds));
    rc |= json_object_set_new(obj, "memory_used_bytes",
                              json_integer((json_int_t)gauges->memory_used_bytes));
    rc |= json_object_set_new(obj, "memory_budget_bytes",
                              json_integer((json_int_t)gauges->memory_budget_bytes));
    rc |= json_object_set_new(obj, "memory_refusals",
                              json_integer((json_int_t)gauges->memory_refusals));
    rc |= json_object_set_new(obj, "client_connections",
                              json_integer((json_int_t)gauges->client_connections));
    rc |= json_object_set_new(obj, "version", json_string(version));
    char *text = rc == 0 ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(obj);
    return text;
}

/* A growable text buffer that fails rather than truncates. */
struct textbuf {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
};

static void textbuf_printf(struct textbuf *tb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void textbuf_printf(struct textbuf *tb, const char *fmt, ...)
{
    if (tb->failed)
        return;
    for (int attempt = 0; attempt < 2; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(tb->data + tb->len, tb->cap - tb->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            tb->failed = true;
            return;
        }
        if ((size_t)n < tb->cap - tb->len) {
            tb->len += (size_t)n;
            return;
        }
        size_t want = tb->cap * 2 + (size_t)n + 1;
        char *bigger = realloc(tb->data, want);
        if (bigger == NULL) {
            tb->failed = true;
            return;
        }
        tb->data = bigger;
        tb->cap = want;
    }
}

static void prom_metric(struct textbuf *tb, const char *name, const char *type, const char *help,
                        uint64_t value)
{
    textbuf_printf(tb, "# HELP h5chunkd_%s %s\n# TYPE h5chunkd_%s %s\nh5chunkd_%s %llu\n", name,
                   help, name, type, name, (unsigned long long)value);
}

char *stats_render_prometheus(const struct h5cd_stats *stats, const struct h5cd_gauges *gauges)
{
    struct textbuf tb = {.data = malloc(4096), .len = 0, .cap = 4096, .failed = false};
    if (tb.data == NULL)
        return NULL;
    tb.data[0] = '\0';
#define H5CD_STATS_PROM(name, help)                                                                \
    prom_metric(&tb, #name, "counter", help, STATS_GET(stats, name));
    H5CD_COUNTERS(H5CD_STATS_PROM)
#undef H5CD_STATS_PROM
    prom_metric(&tb, "cache_bytes", "gauge", "block bytes in the disk cache", gauges->cache_bytes);
    prom_metric(&tb, "cache_limit_bytes", "gauge", "configured cache cap",
                gauges->cache_limit_bytes);
    prom_metric(&tb, "cache_blocks", "gauge", "blocks in the disk cache", gauges->cache_blocks);
    prom_metric(&tb, "cache_spans", "gauge", "span files in the disk cache (parts of blocks)",
                gauges->cache_spans);
    prom_metric(&tb, "cache_span_drops", "counter", "spans dropped to keep a block within 32 spans",
                gauges->cache_span_drops);
    prom_metric(&tb, "evictions", "counter", "blocks evicted to keep the cache under its cap",
                gauges->evictions);
    prom_metric(&tb, "uptime_seconds", "gauge", "seconds since start", gauges->uptime_seconds);
    prom_metric(&tb, "memory_used_bytes", "gauge", "memory requests hold under memory_budget",
                gauges->memory_used_bytes);
    prom_metric(&tb, "memory_budget_bytes", "gauge", "configured memory_budget",
                gauges->memory_budget_bytes);
    prom_metric(&tb, "memory_refusals", "counter", "charges refused for want of memory (503)",
                gauges->memory_refusals);
    prom_metric(&tb, "client_connections", "gauge", "client connections open",
                gauges->client_connections);
    if (tb.failed) {
        free(tb.data);
        return NULL;
    }
    return tb.data;
}
