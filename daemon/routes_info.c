/*
 * routes_info.c - GET /v1/health, /v1/stats and /metrics: what an operator
 * or a monitoring system asks of the daemon.  Runs on connection threads;
 * reads counters only.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "conntrack.h"
#include "http.h"
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

enum MHD_Result route_stats(struct server *srv, struct MHD_Connection *conn)
{
    struct h5cd_gauges gauges;
    server_gauges(srv, &gauges);
    char *text = stats_render_json(&srv->stats, &gauges, PACKAGE_VERSION);
    return http_send_text(srv, conn, MHD_HTTP_OK, with_newline(text), "application/json");
}

enum MHD_Result route_metrics(struct server *srv, struct MHD_Connection *conn)
{
    struct h5cd_gauges gauges;
    server_gauges(srv, &gauges);
    return http_send_text(srv, conn, MHD_HTTP_OK, stats_render_prometheus(&srv->stats, &gauges),
                          "text/plain; version=0.0.4");
}
