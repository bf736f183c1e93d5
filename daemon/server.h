/*
 * server.h - the daemon's one context struct, handed to every route.
 * Built by main.c at start-up and torn down in reverse order at exit;
 * read-only while requests are served except for the atomic counters and
 * the two pointers a SIGHUP swaps (cfg, token).  Whatever those pointers
 * ever pointed to stays alive until exit, so a route may read srv->cfg
 * once and keep using it for the whole request.
 */
#ifndef H5CD_SERVER_H
#define H5CD_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "blockcache.h"
#include "config.h"
#include "credentials.h"
#include "fetch.h"
#include "h5index.h"
#include "jobs.h"
#include "membudget.h"
#include "remote.h"
#include "resolve.h"
#include "stats.h"
#include "urlpolicy.h"
#include "workerpool.h"

#define H5CD_MAX_LISTEN_SOCKETS 8 /* sockets served at once (systemd may pass several) */

struct accesslog;
struct conntrack;

struct server {
    _Atomic(struct h5cd_config *) cfg; /* the configuration in effect; SIGHUP swaps it */
    _Atomic(const char *) token;       /* bearer token, NULL for none; SIGHUP swaps it */
    struct accesslog *access_log;      /* always set; writes nowhere when access_log is "" */
    struct h5cd_stats stats;
    struct urlpolicy *policy;
    struct blockcache *cache;
    struct fetch_engine *fetch;
    struct parents *parents; /* site caches before the origin, or NULL */
    struct linkstats *links; /* each upstream host's measured round trip and bandwidth */
    struct remote *remote;
    struct credstore *creds; /* upstream headers from credentials_file; SIGHUP swaps the set */
    struct resolve *resolve; /* names, redirects and what upstream accepted */
    struct h5index *h5index;
    struct workerpool *workers;                      /* the HDF5 worker processes */
    struct jobs *jobs;                               /* background prefetch jobs */
    struct membudget *budget;                        /* memory clients can make us hold */
    struct conntrack *conns;                         /* open client connections, deadlines */
    struct MHD_Daemon *mhd[H5CD_MAX_LISTEN_SOCKETS]; /* one per listening socket */
    int listen_fd[H5CD_MAX_LISTEN_SOCKETS];
    size_t nlisten;
    bool socket_activated; /* the sockets came from systemd, not from `listen` */
    time_t started;
};

/* Fills the cache gauges of /v1/stats and /metrics. */
void server_gauges(struct server *srv, struct h5cd_gauges *gauges);

#endif
