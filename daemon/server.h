/*
 * server.h - the daemon's one context struct, handed to every route.
 * Built by main.c at start-up and torn down in reverse order at exit;
 * read-only while requests are served except for the atomic counters.
 */
#ifndef H5CD_SERVER_H
#define H5CD_SERVER_H

#include <time.h>

#include "blockcache.h"
#include "config.h"
#include "fetch.h"
#include "h5index.h"
#include "remote.h"
#include "stats.h"
#include "urlpolicy.h"

struct server {
    struct h5cd_config *cfg;
    struct h5cd_stats stats;
    struct urlpolicy *policy;
    struct blockcache *cache;
    struct fetch_engine *fetch;
    struct remote *remote;
    struct h5index *h5index;
    struct MHD_Daemon *mhd;
    int listen_fd;
    time_t started;
};

/* Fills the cache gauges of /v1/stats and /metrics. */
void server_gauges(struct server *srv, struct h5cd_gauges *gauges);

#endif
