/*
 * config.h - h5chunkd's configuration: built-in defaults, the config file
 * (INI syntax read with inih, keys optionally under a [h5chunkd] section)
 * and command-line overrides, in that order of precedence.
 *
 * Every option is one row of a table in config.c: name, type, bounds and
 * default.  Values are range-checked when set; a bad value is an error
 * with a one-line message, never silently clamped.  Runs on the main
 * thread at start-up (and on SIGHUP, which builds a new struct); a struct
 * is read-only once the daemon uses it.
 */
#ifndef H5CD_CONFIG_H
#define H5CD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "h5cd_limits.h"

struct strlist {
    char **items; /* owned; NULL when count == 0 */
    size_t count;
};

struct h5cd_config {
    /* Network front end. */
    char *listen;                /* "HOST:PORT" or "[V6]:PORT"; default 127.0.0.1:7661 */
    bool allow_remote_clients;   /* permit a non-loopback listen address; default false */
    struct strlist server_names; /* extra Host names accepted besides loopback names */
    unsigned max_connections;    /* concurrent client connections; default 1024 */
    unsigned client_timeout_s;   /* idle client connection timeout; default 60 */
    unsigned header_timeout_s;   /* total time to send a request's headers; default 10 */
    unsigned body_timeout_s;     /* total time to send a request's body; default 60 */
    uint64_t memory_budget;      /* bytes all requests may hold together; default 512M */
    uint64_t max_request_body;   /* bytes of a POST body; default 8M */
    unsigned unix_socket_mode;   /* permissions of a unix: listen socket; default 0660 */
    char *unix_socket_group;     /* group of a unix: listen socket; "" keeps the daemon's */

    /* Access control. */
    char *token_file;  /* file holding the bearer token; "" = no token */
    char *token_scope; /* "admin" (default) or "all": which endpoints need it */

    /* Cache. */
    char *cache_dir;               /* default $XDG_CACHE_HOME/h5chunkd or ~/.cache/h5chunkd */
    uint64_t cache_size;           /* cap in bytes; default 10G */
    uint64_t block_size;           /* cache block, power of two in [4K, 16M]; default 256K */
    unsigned cache_high_watermark; /* percent of cap that starts eviction; default 95 */
    unsigned cache_low_watermark;  /* percent of cap eviction stops at; default 85 */
    unsigned revalidate_s;         /* seconds a file's validator is trusted; default 60 */

    /* Coalescing of block misses into upstream requests. */
    uint64_t coalesce_gap; /* merge ranges whose gap is at most this; default 256K */
    uint64_t coalesce_max; /* one upstream request at most this; default 8M */
    uint64_t read_window;  /* bytes one client request reads ahead; default 16M */

    /* HDF5 chunk service. */
    uint64_t h5_prefix_bytes;      /* first read of an open on an unmeasured host; default 4M */
    unsigned h5_whole_file_rtts;   /* a file crossing the link in this many RTTs is fetched whole
                                    * when first opened; 0 never; default 3 */
    uint64_t h5_whole_file_max;    /* ... if at most this large; default 32M */
    bool exact_ranges;             /* batches and single chunks fetch only their bytes */
    unsigned max_keys;             /* chunk keys in one batch request; default 100000 */
    uint64_t batch_inflight_bytes; /* chunk bytes one batch holds in memory; default 16M */
    uint64_t max_slice_bytes;      /* decoded bytes one /v1/slice may return; default 256M */

    /* HDF5 worker processes (every libhdf5 call runs in one). */
    unsigned workers;          /* processes; default 2 */
    unsigned worker_timeout_s; /* a worker's own time per operation; default 30 */
    uint64_t worker_memory;    /* RLIMIT_AS of a worker; default 1G */
    uint64_t max_decode_bytes; /* largest decoded chunk or slice; default 256M */
    char *worker_path;         /* h5chunkd-worker; "" = next to h5chunkd, then libexecdir */

    /* Upstream fetch engine. */
    unsigned upstream_max_per_host;         /* concurrent connections per host; default 8 */
    unsigned upstream_max_total;            /* concurrent connections overall; default 64 */
    unsigned upstream_connect_timeout_ms;   /* default 10000 */
    unsigned upstream_timeout_ms;           /* one attempt, whole transfer; default 60000 */
    unsigned upstream_retries;              /* attempts after the first; default 4 */
    unsigned upstream_retry_base_ms;        /* first backoff; doubles with jitter; default 200 */
    unsigned upstream_retry_budget_ms;      /* give up after this much time; default 30000 */
    bool allow_private_upstreams;           /* permit loopback/private/link-local upstreams */
    struct strlist allow_upstream_networks; /* CIDR blocks permitted even if private */
    unsigned max_redirects;                 /* redirect hops followed; default 5 */
    struct strlist allow_prefixes;          /* if non-empty, a URL must start with one of these */
    struct strlist deny_prefixes;           /* a URL starting with one of these is refused */
    struct strlist strip_query_params;      /* dropped from a URL's cache identity */
    char *user_agent;                       /* default "h5chunkd/VERSION" */

    /* Site caches tried before the origin (lib/parents.h). */
    struct strlist parents;             /* nginx site caches: URL[, URL...]; default none */
    uint64_t parent_slice;              /* their slice size; default 1M */
    unsigned parent_retry_ms;           /* first wait before a down one is tried; default 10000 */
    unsigned parent_retry_max_ms;       /* longest such wait; default 300000 */
    unsigned parent_connect_timeout_ms; /* default 2000 */
    unsigned parent_timeout_ms;         /* one request to a parent, whole transfer; default 15000 */

    /* Names, resolution and upstream credentials (lib/resolve.h). */
    char *s3_endpoint;              /* "" = AWS; else http(s)://HOST[:PORT] */
    char *s3_region;                /* default us-east-1 */
    char *s3_addressing;            /* "virtual" (default) or "path" */
    char *dandi_api;                /* API base of instance DANDI */
    struct strlist dandi_instances; /* NAME=API_BASE */
    unsigned resolve_ttl_s;         /* resolutions remembered; default 600 */
    unsigned access_ttl_s;          /* accepted URLs/tokens trusted; default 600 */
    char *credentials_file;         /* "" = none */

    /* Process. */
    bool foreground;  /* do not detach; default false */
    char *log_level;  /* error|warn|info|debug; default info */
    char *access_log; /* one line per finished request; "" = off */
};

/* Fills cfg with the built-in defaults.  Returns 0 or -ENOMEM. */
int config_init(struct h5cd_config *cfg);
void config_free(struct h5cd_config *cfg);

/* Sets one option from its textual value, as in the config file.
 * Returns 0, or -1 with a one-line reason in err. */
int config_set(struct h5cd_config *cfg, const char *key, const char *value, char *err,
               size_t errlen);

/* Reads an INI file; the first bad line stops it.  Returns 0, or -1 with
 * "FILE:LINE: reason" in err. */
int config_load_file(struct h5cd_config *cfg, const char *path, char *err, size_t errlen);

/* Cross-option checks (watermarks ordered, block size vs. coalesce sizes,
 * non-loopback listen needs allow_remote_clients).  0 or -1 with err. */
int config_validate(const struct h5cd_config *cfg, char *err, size_t errlen);

/* "10G" -> 10737418240; suffixes K M G T (powers of 1024), optional "B"/"iB".
 * Returns 0, or -1 for malformed or overflowing input. */
int config_parse_size(const char *text, uint64_t *out);

/* Called by config_diff for each option whose value differs; `reloadable`
 * says whether SIGHUP can apply the new value to a running daemon. */
typedef void (*config_diff_fn)(const char *name, bool reloadable, void *arg);

/* Compares every option of a and b in table order, calling fn (may be NULL)
 * for each that differs.  Returns how many differ. */
size_t config_diff(const struct h5cd_config *a, const struct h5cd_config *b, config_diff_fn fn,
                   void *arg);

/* Copies the value of option `name` from src into dst (strings and lists
 * deeply).  0, -ENOENT for an unknown name, or -ENOMEM. */
int config_copy_option(struct h5cd_config *dst, const struct h5cd_config *src, const char *name);

/* Writes every option with its current value as an INI file to fp
 * (used by `h5chunkd --print-config` and tests). */
void config_print(const struct h5cd_config *cfg, FILE *fp);

#endif
