/*
 * remote.h - read byte ranges of remote files through the block cache.
 *
 * This is where the cache, the coalescer and the fetch engine meet.  A read
 * is served block by block from the cache; the blocks it misses are
 * coalesced into a few upstream range requests sent concurrently.  A block
 * already being fetched for anyone is joined, never fetched twice
 * (single-flight).  The thread that fetched a block writes it to the cache,
 * so disk writes never run on the fetch loop.  If the cache refuses a block
 * (full disk, unwritable directory) the bytes are still served.
 *
 * Calls block until their bytes are in: call them from client threads or
 * workers, never from the fetch loop thread.
 */
#ifndef H5CD_REMOTE_H
#define H5CD_REMOTE_H

#include <stdbool.h>
#include <stdint.h>

#include "blockcache.h"
#include "errors.h"
#include "fetch.h"
#include "h5cd_limits.h"
#include "linkstats.h"
#include "membudget.h"
#include "resolve.h"
#include "stats.h"
#include "urlpolicy.h"

struct remote;
struct resolve;

struct remote_config {
    uint64_t coalesce_gap;    /* see config.h */
    uint64_t coalesce_max;    /* a multiple of the cache block size */
    unsigned revalidate_s;    /* how long a file's validator is trusted without asking upstream */
    unsigned wait_timeout_ms; /* longest wait for a fetch before giving up; 0 = 10 minutes */
    unsigned max_fetches_per_batch; /* upstream requests one batch has in flight; 0 = 8 */
    uint64_t total_budget;          /* range bytes all batches hold at once (each may hold one
                                     * range more); 0 = 64 MiB.  Unused when budget is set. */
    struct membudget *budget;       /* the daemon-wide memory budget batches charge; may be NULL */
    uint64_t parent_slice;    /* with site caches: no upstream request crosses a multiple of this
                               * (a multiple of the block size); 0 without */
    struct linkstats *links;  /* borrowed; may be NULL.  When the file's host has been measured,
                               * a batch's gap and request size come from planner.h instead of
                               * coalesce_gap and coalesce_max (never above coalesce_max) */
    unsigned whole_file_rtts; /* an HDF5 open fetches a never-seen file whole when it crosses
                               * the link in this many round trips (planner_whole_file); 0 never */
    uint64_t whole_file_max;  /* ... and is at most this large */
    bool exact_ranges;        /* batches fetch only the bytes wanted (plus bridged gaps) instead
                               * of the whole blocks they touch; a batch of one range smaller
                               * than a block reads its blocks whole all the same */
};

/* What is known about one version of a remote file. */
struct remote_file {
    char url[H5CD_MAX_URL_BYTES + 1];      /* the URL fetched: the client's, or what its
                                            * name resolved to (see resolve.h) */
    char identity[H5CD_MAX_URL_BYTES + 1]; /* its cache identity (see urlpolicy.h) */
    int64_t file_id;                       /* the cache's id of this version */
    uint64_t size;
    char validator[H5CD_MAX_VALIDATOR_BYTES];
    /* What the client named, and its DANDI token: a read refused upstream (a
     * signature expired mid-batch) re-resolves the name once and goes on. */
    char name[H5CD_MAX_URL_BYTES + 1];
    char token[RESOLVE_MAX_TOKEN_BYTES + 1]; /* "" for none; never logged */
    bool resolved;                           /* url came from the resolver */
    uint64_t opened_bytes; /* bytes [0, opened_bytes) were fetched by this open (its prefix,
                            * or the whole file); 0 when the open fetched nothing */
};

/* All pointers are borrowed and must outlive the remote.  0 or -ENOMEM. */
int remote_new(const struct remote_config *cfg, struct blockcache *cache,
               struct fetch_engine *fetch, const struct urlpolicy *policy, struct h5cd_stats *stats,
               struct remote **out);
/* Every read must have returned before this is called.  NULL is a no-op. */
void remote_free(struct remote *remote);

/* Replaces the URL policy and revalidate_s for opens from now on (SIGHUP).
 * Opens under way may still use the old policy: keep it until remote_free.
 * Any thread. */
void remote_reconfigure(struct remote *remote, const struct urlpolicy *policy,
                        unsigned revalidate_s);

/* Replaces whole_file_rtts and whole_file_max for opens from now on (SIGHUP).  Any thread. */
void remote_set_whole_file(struct remote *remote, unsigned rtts, uint64_t max_bytes);

/*
 * Checks url against the policy and learns the file's size and validator:
 * from the cache when they were confirmed less than revalidate_s ago, else
 * by fetching the start of the file (cached too, so a caller about to read
 * a file's header pays one round trip for both).  Concurrent opens of one
 * cold file share that fetch.
 *
 * probe_bytes 0 fetches one block.  Otherwise the caller is about to read
 * HDF5 metadata: the first request brings one round trip's worth of bytes
 * of the file's host (planner_open_prefix; probe_bytes until the host is
 * measured), and a never-seen file small for the link (planner_whole_file)
 * is then fetched whole, its rest in parallel pieces, before the open
 * returns (openers that join it wait for that too).  out->opened_bytes
 * says how much was fetched.  0, or -1 with err set.
 */
int remote_open(struct remote *remote, const char *url, uint64_t probe_bytes,
                struct remote_file *out, struct h5cd_error *err);

/*
 * Lets the remote resolve names (s3://, dandi://, redirects, signed URLs;
 * see resolve.h) and refuse cached bytes to requests upstream would refuse.
 * Without a resolver, URLs are fetched as given (tests of the read path).
 * Call before the first open; resolve must outlive the remote.
 */
void remote_set_resolver(struct remote *remote, struct resolve *resolve);

/*
 * remote_open for a name a client gave, with the client's DANDI token
 * (NULL for none).  The name is resolved first; cached bytes are used only
 * when upstream accepted this name and token (now, or remembered until
 * they expire), or when the file is known to be readable without
 * credentials.  Errors as remote_open, plus H5CD_E_UPSTREAM_DENIED (403)
 * when upstream refused the name, its signature or the token.
 */
int remote_open_as(struct remote *remote, const char *name, const char *token, uint64_t probe_bytes,
                   struct remote_file *out, struct h5cd_error *err);

/*
 * How an HDF5 driver reading `file` should read metadata (planner.h); with
 * default_prefix 0 (h5_prefix_bytes 0) none, every read as asked.  Else the
 * prefix it reads when it opens the file (what this open fetched, else one
 * round trip's worth and at most default_prefix, within the file and
 * REMOTE_MAX_DRIVER_PREFIX) and its metadata windows, in whole cache blocks.
 * Any thread.
 */
#define REMOTE_MAX_DRIVER_PREFIX (32ull * 1024 * 1024)
void remote_meta_plan(struct remote *remote, const struct remote_file *file,
                      uint64_t default_prefix, uint64_t *prefix, uint64_t *window_first,
                      uint64_t *window_most, uint64_t *window_align);

/* Checks url against the current policy and writes its cache identity (a name such as
 * s3:// or dandi:// is resolved first, without a token).  0, or -1 with err. */
int remote_identity(struct remote *remote, const char *url, char *identity, size_t cap,
                    struct h5cd_error *err);

/*
 * Reads bytes [offset, offset+length) of an opened file into dst.  The range
 * must lie inside the file.  What the cache lacks is fetched as whole blocks
 * (minus the bytes their cached spans hold), for readers that read near what
 * they read before (libhdf5's metadata, mirror windows).  If upstream reports
 * another version of the file, everything cached for it is dropped and the
 * read fails with H5CD_E_UPSTREAM_CHANGED (no byte of two versions is ever
 * returned): open the file again.  0, or -1 with err set.
 */
int remote_read(struct remote *remote, const struct remote_file *file, uint64_t offset,
                uint64_t length, uint8_t *dst, struct h5cd_error *err);
/* remote_read of one chunk as a batch of one range reads it: exactly its bytes when it
 * spans a block or more, else (and with exact_ranges false) the whole blocks it touches. */
int remote_read_exact(struct remote *remote, const struct remote_file *file, uint64_t offset,
                      uint64_t length, uint8_t *dst, struct h5cd_error *err);

/*
 * Batches: many ranges of one file read together.  The bytes they lack
 * (exactly those, plus the holes worth bridging; see docs/architecture.md,
 * "Partial blocks"; a batch of one range smaller than a block reads the
 * whole blocks it touches) are coalesced into few concurrent upstream requests, and each range is
 * handed back as soon as all its bytes are in (completion order, not the order of
 * remote_batch_add).  At most `budget` bytes of ranges are admitted at
 * once (at least one range), so memory stays bounded for any batch size.
 * A batch belongs to one thread.
 */
struct remote_batch;

struct remote_batch_result {
    void *tag; /* as given to remote_batch_add */
    uint64_t offset;
    uint64_t length;
    const uint8_t *data;     /* the range's bytes, or NULL when it failed; valid until the
                              * next remote_batch_next() or remote_batch_free() */
    struct h5cd_error error; /* code H5CD_OK when data is set */
};

/* Starts an empty batch over an opened file.  0 or -ENOMEM. */
int remote_batch_new(struct remote *remote, const struct remote_file *file, uint64_t budget,
                     struct remote_batch **out);
/* The caller reserved every range's bytes with remote_reserve (at most the batch's budget in
 * all): ranges are charged to the batch's own budget only, not again to the daemon-wide one,
 * so that all of them are admitted at once and one plan bridges the holes between them. */
void remote_batch_reserved(struct remote_batch *batch);
/* The bytes between the batch's ranges are likely read next (an index level's nodes lie among
 * the chunks they index): bridge every hole up to the planner's gap, not only the holes that
 * save a round of requests (planner.h, "bridge"). */
void remote_batch_holes_wanted(struct remote_batch *batch);
/* Adds a range (inside the file, length > 0).  dst, if not NULL, receives the bytes
 * (and must stay valid until the range is returned); otherwise the batch allocates.
 * Every range must be added before the first remote_batch_next().
 * 0, -ERANGE, -EBUSY or -ENOMEM. */
int remote_batch_add(struct remote_batch *batch, uint64_t offset, uint64_t length, uint8_t *dst,
                     void *tag);
/* Starts fetching what the batch's ranges need (as many as its budget admits) without
 * waiting, so that the caller can do other work meanwhile; remote_batch_next() does it
 * otherwise.  Every range must have been added.  0 or -ENOMEM. */
int remote_batch_start(struct remote_batch *batch);
/* Waits for the next finished range: 1 with *res filled, 0 when every range has been
 * returned, or a negative errno. */
int remote_batch_next(struct remote_batch *batch, struct remote_batch_result *res);
/* True when remote_batch_next() would return a range without waiting (one is
 * finished, in the cache or fetched).  Ends the validity of the data of the
 * range last returned, as remote_batch_next() does. */
bool remote_batch_has_ready(struct remote_batch *batch);
/* Releases the batch; ranges not yet returned are abandoned.  NULL is a no-op. */
void remote_batch_free(struct remote_batch *batch);
/* As remote_batch_free, but its end does not wait for the cache writes of what it fetched:
 * their entries keep the bytes (a reader joins them in memory) until the writer has cached
 * them.  Returns the writer's ticket of its last write (0: none), for remote_wait_writes.
 * A batch that fetched more than REMOTE_DETACH_MAX_BYTES waits for its writes after all
 * (memory), and returns 0. */
#define REMOTE_DETACH_MAX_BYTES (16ull * 1024 * 1024)
uint64_t remote_batch_free_detached(struct remote_batch *batch);
/* Waits until the writer has cached what the batch whose ticket this is handed it, and
 * everything handed it before.  Ticket 0 returns at once. */
void remote_wait_writes(struct remote *remote, uint64_t ticket);

/* Counts `bytes` held outside batches (decoded values) against the daemon-wide
 * budget that batches share (total_budget), waiting up to timeout_ms for room;
 * alone, a reservation may exceed the budget; timeout_ms 0 counts without
 * waiting.  0, or -1 on timeout. */
int remote_reserve(struct remote *remote, uint64_t bytes, unsigned timeout_ms);
/* Returns bytes reserved with remote_reserve. */
void remote_unreserve(struct remote *remote, uint64_t bytes);

#endif
