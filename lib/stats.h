/*
 * stats.h - the daemon's counters, shared by every thread.
 * Counters are C11 atomics updated with relaxed ordering: they are
 * monotonic tallies for operators, never used to synchronise anything.
 * Gauges that belong to another module (cache bytes, blocks) are filled
 * in by the caller of stats_render_* at render time.
 */
#ifndef H5CD_STATS_H
#define H5CD_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* X-macro: name, help text.  Order is the order of /v1/stats and /metrics. */
#define H5CD_COUNTERS(X)                                                                           \
    X(requests, "HTTP requests received")                                                          \
    X(chunks_served, "chunks returned to clients")                                                 \
    X(cache_hits, "blocks served from the disk cache")                                             \
    X(cache_misses, "blocks not in the cache when asked for")                                      \
    X(upstream_requests, "upstream HTTP requests sent, retries included")                          \
    X(upstream_bytes, "payload bytes received from upstream")                                      \
    X(upstream_retries, "upstream requests retried after a failure")                               \
    X(upstream_errors, "upstream fetches that failed after all retries")                           \
    X(upstream_redirects, "upstream redirect hops followed (each checked by the policy)")          \
    X(upstream_refused, "upstream hops, addresses or answers refused as unsafe or unusable")       \
    X(bytes_served, "payload bytes sent to clients")                                               \
    X(inflight_joins, "block reads that joined a fetch already under way")                         \
    X(cache_relookups, "claims left because the block was cached into since it was looked up")     \
    X(corrupt_blocks, "cached blocks that failed their checksum and were dropped")                 \
    X(cache_write_errors, "blocks that could not be written to the cache")                         \
    X(passthrough_bytes, "bytes served without being cached")                                      \
    X(validator_changes, "remote files whose ETag/Last-Modified changed")                          \
    X(h5_lookups, "chunk locations resolved through libhdf5")                                      \
    X(index_hits, "chunk locations answered from the persistent index")                            \
    X(walk_lookups, "chunk locations resolved by the daemon's own chunk-index reader")             \
    X(index_fallbacks, "lookup batches handed to libhdf5: our reader does not handle the index")   \
    X(client_timeouts, "client connections closed past their header, body or idle deadline")       \
    X(client_evictions, "idle client connections closed to make room for new clients")             \
    X(errors, "client requests that ended in an error response")                                   \
    X(worker_requests, "operations run by HDF5 worker processes")                                  \
    X(worker_crashes, "HDF5 workers that died or broke the protocol (replaced)")                   \
    X(worker_timeouts, "HDF5 workers killed for overrunning worker_timeout_s")                     \
    X(quarantined_files, "file versions quarantined after a worker crash or timeout")              \
    X(resolutions, "names resolved upstream: redirects followed, signed URLs or tokens checked")   \
    X(redirects_skipped, "opens of a public URL that went straight to where it redirected")        \
    X(whole_file_opens, "never-seen files fetched whole when opened: small for their link")        \
    X(access_checks, "one-byte requests proving a cached file is readable without credentials")

struct h5cd_stats {
#define H5CD_STATS_FIELD(name, help) _Atomic uint64_t name;
    H5CD_COUNTERS(H5CD_STATS_FIELD)
#undef H5CD_STATS_FIELD
};

/* Gauges owned by the block cache, sampled when rendering. */
struct h5cd_gauges {
    uint64_t cache_bytes;
    uint64_t cache_limit_bytes;
    uint64_t cache_blocks;
    uint64_t cache_spans;      /* span files (a partial block may hold several) */
    uint64_t cache_span_drops; /* spans dropped to keep a block within its span bound */
    uint64_t evictions;        /* since start */
    uint64_t uptime_seconds;
    uint64_t memory_used_bytes;   /* held under memory_budget now */
    uint64_t memory_budget_bytes; /* memory_budget */
    uint64_t memory_refusals;     /* requests refused (503) for want of memory, since start */
    uint64_t client_connections;  /* client connections open now */
};

#define STATS_ADD(stats, field, n)                                                                 \
    atomic_fetch_add_explicit(&(stats)->field, (uint64_t)(n), memory_order_relaxed)
#define STATS_INC(stats, field) STATS_ADD(stats, field, 1)
#define STATS_GET(stats, field) atomic_load_explicit(&(stats)->field, memory_order_relaxed)

void stats_init(struct h5cd_stats *stats);
/* Returns a malloc'd NUL-terminated JSON object, or NULL on allocation failure. */
char *stats_render_json(const struct h5cd_stats *stats, const struct h5cd_gauges *gauges,
                        const char *version);
/* Returns a malloc'd Prometheus text exposition, or NULL on allocation failure. */
char *stats_render_prometheus(const struct h5cd_stats *stats, const struct h5cd_gauges *gauges);

#endif
