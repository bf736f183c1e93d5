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

enum MHD_Result route_stats(struct server *srv, struct MHD_Connection *conn)
{
    struct h5cd_gauges gauges;
    server_gauges(srv, &gauges);
    char *text = with_parents_json(srv, stats_render_json(&srv->stats, &gauges, PACKAGE_VERSION));
    return http_send_text(srv, conn, MHD_HTTP_OK, with_newline(text), "application/json");
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
    return http_send_text(srv, conn, MHD_HTTP_OK, text, "text/plain; version=0.0.4");
}
