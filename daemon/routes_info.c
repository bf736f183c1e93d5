/*
 * routes_info.c - GET /v1/health, /v1/stats and /metrics: what an operator
 * or a monitoring system asks of the daemon.  Runs on connection threads;
 * reads counters only.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conntrack.h"
#include "http.h"
#include "linkstats.h"
#include "planner.h"
#include "routes.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.0.0"
#endif

void server_gauges(struct server *srv, struct h5cd_gauges *gauges)
{
    struct blockcache_stats cs;
    blockcache_get_stats(srv->cache, &cs);
    gauges->cache_bytes = cs.bytes;
    gauges->cache_limit_bytes = cs.cap_bytes;
    gauges->cache_blocks = cs.blocks;
    gauges->cache_spans = cs.spans;
    gauges->cache_span_drops = cs.span_drops;
    gauges->evictions = cs.evictions;
    time_t now = time(NULL);
    gauges->uptime_seconds = now > srv->started ? (uint64_t)(now - srv->started) : 0;
    if (srv->budget != NULL) {
        gauges->memory_used_bytes = membudget_used(srv->budget);
        gauges->memory_budget_bytes = membudget_limit(srv->budget);
        gauges->memory_refusals = membudget_refusals(srv->budget);
    }
    if (srv->conns != NULL)
        gauges->client_connections = conntrack_count(srv->conns);
}

static char *with_newline(char *text)
{
    if (text == NULL)
        return NULL;
    size_t len = strlen(text);
    char *out = realloc(text, len + 2);
    if (out == NULL) {
        free(text);
        return NULL;
    }
    memcpy(out + len, "\n", 2);
    return out;
}

enum MHD_Result route_health(struct server *srv, struct MHD_Connection *conn)
{
    json_t *body = json_pack("{s:s, s:s}", "status", "ok", "version", PACKAGE_VERSION);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(body);
    return http_send_text(srv, conn, MHD_HTTP_OK, with_newline(text), "application/json");
}

/* Adds the site caches' counters ("parents") to the stats object text; NULL on failure. */
static char *with_parents_json(struct server *srv, char *text)
{
    if (srv->parents == NULL || text == NULL)
        return text;
    json_t *obj = json_loads(text, 0, NULL);
    free(text);
    json_t *list = parents_stats_json(srv->parents);
    char *out = NULL;
    if (obj != NULL && list != NULL && json_object_set(obj, "parents", list) == 0)
        out = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(list);
    json_decref(obj);
    return out;
}

/* An estimate, or null when it has not been measured yet. */
static json_t *known_or_null(bool known, json_t *value)
{
    return known ? value : (json_decref(value), json_null());
}

/* One host's measurements and the plan the daemon derives from them (planner.h). */
static json_t *link_json(const struct linkstats_host *h, const struct planner_limits *lim)
{
    const struct link_metrics *m = &h->metrics;
    return json_pack(
        "{s:s, s:I, s:I, s:o, s:o, s:o, s:I, s:I, s:I, s:I}", "host", h->host, "requests",
        (json_int_t)h->requests, "bytes", (json_int_t)h->bytes, "rtt_ms",
        known_or_null(m->rtt_known, json_real((double)m->rtt_us / 1000.0)), "conn_bytes_per_s",
        known_or_null(m->conn_known, json_integer((json_int_t)m->conn_bps)), "link_bytes_per_s",
        known_or_null(m->link_known, json_integer((json_int_t)m->link_bps)), "samples",
        (json_int_t)h->rtt_samples, "coalesce_gap", (json_int_t)planner_gap(m, lim), "streams",
        (json_int_t)planner_streams(m, lim), "split_min", (json_int_t)planner_piece(m, lim, 1));
}

/* Adds "links": the measured upstream hosts, most recently seen first. */
static char *with_links(struct server *srv, char *text)
{
    json_t *doc = text != NULL ? json_loads(text, 0, NULL) : NULL;
    free(text);
    json_t *links = json_array();
    struct linkstats_host *hosts = calloc(LINKSTATS_MAX_HOSTS, sizeof(*hosts));
    const struct h5cd_config *cfg = srv->cfg;
    struct planner_limits lim = {.default_gap = cfg->coalesce_gap,
                                 .max_fetch = cfg->coalesce_max,
                                 .max_streams = cfg->upstream_max_per_host};
    size_t n = hosts != NULL ? linkstats_snapshot(srv->links, hosts, LINKSTATS_MAX_HOSTS) : 0;
    int rc = doc != NULL && links != NULL && hosts != NULL ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = json_array_append_new(links, link_json(&hosts[i], &lim));
    free(hosts);
    if (rc == 0)
        rc = json_object_set_new(doc, "links", links);
    else
        json_decref(links);
    char *out = rc == 0 ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    return out;
}

enum MHD_Result route_stats(struct server *srv, struct MHD_Connection *conn)
{
    struct h5cd_gauges gauges;
    server_gauges(srv, &gauges);
    char *text = with_links(
        srv, with_parents_json(srv, stats_render_json(&srv->stats, &gauges, PACKAGE_VERSION)));
    return http_send_text(srv, conn, MHD_HTTP_OK, with_newline(text), "application/json");
}

/* Appends fmt's expansion to the malloc'd text; on failure frees it and returns NULL. */
static char *append_text(char *text, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *append_text(char *text, const char *fmt, ...)
{
    if (text == NULL)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    size_t len = strlen(text);
    char *out = n >= 0 ? realloc(text, len + (size_t)n + 1) : NULL;
    if (out == NULL) {
        free(text);
        return NULL;
    }
    va_start(ap, fmt);
    vsnprintf(out + len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return out;
}

/* A Prometheus label value: backslash, quote and newline escaped; others copied. */
static void label_value(const char *in, char *out, size_t cap)
{
    size_t k = 0;
    for (; *in != '\0' && k + 3 < cap; in++) {
        char c = *in == '\n' ? 'n' : *in;
        if (*in == '\\' || *in == '"' || *in == '\n')
            out[k++] = '\\';
        out[k++] = c;
    }
    out[k] = '\0';
}

/* The measured links as gauges labelled by host (rtt and bandwidths once measured). */
static char *with_link_metrics(struct server *srv, char *text)
{
    struct linkstats_host *hosts = calloc(LINKSTATS_MAX_HOSTS, sizeof(*hosts));
    size_t n = hosts != NULL ? linkstats_snapshot(srv->links, hosts, LINKSTATS_MAX_HOSTS) : 0;
    if (hosts == NULL) {
        free(text);
        return NULL;
    }
    text = append_text(text, "# HELP h5chunkd_link_rtt_seconds smoothed time to first byte per "
                             "upstream host\n# TYPE h5chunkd_link_rtt_seconds gauge\n"
                             "# HELP h5chunkd_link_bytes_per_second smoothed bandwidth per "
                             "upstream host (scope: one connection, or the link)\n"
                             "# TYPE h5chunkd_link_bytes_per_second gauge\n");
    for (size_t i = 0; i < n; i++) {
        char host[2 * LINKSTATS_HOST_BYTES];
        label_value(hosts[i].host, host, sizeof(host));
        const struct link_metrics *m = &hosts[i].metrics;
        if (m->rtt_known)
            text = append_text(text, "h5chunkd_link_rtt_seconds{host=\"%s\"} %.6f\n", host,
                               (double)m->rtt_us / 1e6);
        if (m->conn_known)
            text = append_text(text,
                               "h5chunkd_link_bytes_per_second{host=\"%s\",scope=\"connection\"} "
                               "%llu\n",
                               host, (unsigned long long)m->conn_bps);
        if (m->link_known)
            text = append_text(text,
                               "h5chunkd_link_bytes_per_second{host=\"%s\",scope=\"link\"} %llu\n",
                               host, (unsigned long long)m->link_bps);
    }
    free(hosts);
    return text;
}

enum MHD_Result route_metrics(struct server *srv, struct MHD_Connection *conn)
{
    struct h5cd_gauges gauges;
    server_gauges(srv, &gauges);
    char *text = stats_render_prometheus(&srv->stats, &gauges);
    if (srv->parents != NULL && text != NULL) {
        char *more = parents_render_prometheus(srv->parents);
        size_t len = strlen(text), extra = more != NULL ? strlen(more) : 0;
        char *both = more != NULL ? realloc(text, len + extra + 1) : NULL;
        if (both != NULL)
            memcpy(both + len, more, extra + 1);
        else
            free(text);
        free(more);
        text = both;
    }
    text = with_link_metrics(srv, text);
    return http_send_text(srv, conn, MHD_HTTP_OK, text, "text/plain; version=0.0.4");
}
