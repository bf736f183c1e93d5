/*
 * blockcache.h - the shared, persistent disk cache of remote file blocks.
 *
 * A remote file (identified by its URL identity, see urlpolicy.h) is cut
 * into fixed-size, aligned blocks of `block_size` bytes (the last block may
 * be short).  A cached block may be partial: it holds up to
 * BLOCKCACHE_MAX_SPANS disjoint *spans* of its bytes, because batches fetch
 * exact byte ranges rather than whole blocks; a whole block is the one
 * span (0, block length).  Each span is one file under <dir>/blocks/
 * holding exactly its bytes, indexed in sqlite (WAL) at <dir>/index.sqlite
 * by (file id, block index, span offset) with its length, XXH3-64 checksum
 * and last access time.  A put merges every stored span it touches or
 * overlaps into one (their bytes are read back and verified first), so the
 * spans of a block never touch and neighbouring ranges grow a block to
 * whole; a put disjoint from every span is stored beside them.  Past the
 * bound the shortest other span is dropped (counted in span_drops).  A file
 * row records the remote file's validator (ETag, else Last-Modified + size)
 * and size; when the validator changes the file gets a new id and every
 * block of the old version is dropped, so bytes of two versions are never
 * mixed.
 *
 * Writes are atomic: temp file under <dir>/tmp, rename, then the index row.
 * blockcache_open() reconciles after a crash: temp files and block files
 * without a row are removed, rows without a (correctly sized) file dropped.
 * A size cap is enforced by LRU eviction between high and low watermarks.
 * A second daemon on the same directory is refused (flock on <dir>/lock).
 *
 * If the directory cannot be used (unwritable, full), the cache runs
 * degraded: lookups miss, puts fail with a negative errno, nothing crashes;
 * after ENOSPC/EDQUOT puts are refused for a cool-down period.
 *
 * Thread safety: every function may be called from any thread; the sqlite
 * connection is guarded by one mutex; block file I/O happens outside it.
 */
#ifndef H5CD_BLOCKCACHE_H
#define H5CD_BLOCKCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h5cd_limits.h"

/* Spans one block may hold at most (see blockcache_put_span). */
#define BLOCKCACHE_MAX_SPANS 32

struct blockcache;

/* Spans of one block, sorted by offset, disjoint and never touching. */
struct blockcache_spans {
    size_t n;
    struct blockcache_span {
        size_t off; /* in the block */
        size_t len;
    } span[BLOCKCACHE_MAX_SPANS];
    /* The block's put generation when it was looked at (blockcache_generation). */
    uint64_t gen;
};

struct blockcache_config {
    const char *dir;            /* created (mode 0700) if missing */
    uint64_t cap_bytes;         /* size cap of cached block bytes */
    uint32_t block_size;        /* power of two, H5CD_MIN_BLOCK_BYTES..H5CD_MAX_BLOCK_BYTES */
    unsigned high_watermark;    /* percent of cap that triggers eviction (e.g. 95) */
    unsigned low_watermark;     /* percent of cap eviction brings usage down to (e.g. 85) */
    unsigned enospc_cooldown_s; /* puts refused this long after a full disk; 0 = 30 */
};

/* What start-up reconciliation did (for the log and the tests). */
struct blockcache_report {
    uint64_t orphan_files_removed; /* block files with no index row */
    uint64_t temp_files_removed;   /* leftovers of interrupted writes */
    uint64_t rows_dropped;         /* index rows whose file was missing or the wrong size */
    bool degraded;                 /* the directory could not be used: running without a cache */
    char reason[H5CD_MAX_ERROR_MESSAGE]; /* why degraded */
};

struct blockcache_file {
    int64_t id;    /* changes when the validator changes */
    uint64_t size; /* remote file size in bytes */
    char validator[H5CD_MAX_VALIDATOR_BYTES];
    int64_t checked_at; /* unix seconds when the validator was last confirmed */
};

struct blockcache_stats {
    uint64_t bytes;  /* block bytes currently cached */
    uint64_t blocks; /* blocks currently cached (with at least one span) */
    uint64_t spans;  /* spans currently cached (one file each) */
    uint64_t cap_bytes;
    uint64_t evictions;    /* since open */
    uint64_t corrupt;      /* checksum or size mismatches found since open */
    uint64_t write_errors; /* failed puts since open */
    uint64_t span_drops;   /* spans dropped to keep a block within BLOCKCACHE_MAX_SPANS */
    bool degraded;
};

/*
 * Opens (creating if needed) the cache in cfg->dir and reconciles it.
 * Returns 0 with *out set, even when the directory is unusable (then the
 * cache is degraded and rep->degraded says why).  Returns -EBUSY if another
 * process holds the cache, -EINVAL for a bad config, -ENOMEM.
 * If the stored block size differs from cfg->block_size the cache is wiped.
 */
int blockcache_open(const struct blockcache_config *cfg, struct blockcache **out,
                    struct blockcache_report *rep);
/* Flushes pending access times and closes.  NULL is a no-op. */
void blockcache_close(struct blockcache *bc);

/*
 * The identity of the file-id space: a random number drawn whenever the
 * index starts over (created, rebuilt after corruption, schema or block
 * size change), when ids start again from 1.  State kept elsewhere about a
 * file id (the HDF5 index) is valid only under the epoch it was made in.
 */
uint64_t blockcache_epoch(const struct blockcache *bc);
uint32_t blockcache_block_size(const struct blockcache *bc);

/* Looks up a remote file by URL identity.  0 and *out filled, or -ENOENT. */
int blockcache_file_get(struct blockcache *bc, const char *identity, struct blockcache_file *out);

/*
 * Records what upstream said about a file (validator and size), as of now.
 * If the file is unknown it is created; if the validator or size differs
 * from the stored one, all blocks of the old version are dropped and the
 * file gets a new id (*changed set to true); otherwise only checked_at is
 * refreshed.  Returns 0 with *out filled, or a negative errno (in degraded
 * mode a transient in-memory id is still returned so callers can proceed).
 */
int blockcache_file_put(struct blockcache *bc, const char *identity, const char *validator,
                        uint64_t size, struct blockcache_file *out, bool *changed);

/*
 * Until when a file is known to be readable without credentials (its bytes
 * were fetched with a credential-free URL; see lib/resolve.h): 0 with
 * *until (seconds since the epoch), or -ENOENT.  Kept across restarts so
 * public files keep their fast path.  Any thread.
 */
int blockcache_public_get(struct blockcache *bc, const char *identity, int64_t *until);
/* Records it (and forgets records that have expired).  0 or a negative errno. */
int blockcache_public_set(struct blockcache *bc, const char *identity, int64_t until);

/* Drops a file and all its blocks.  0 or -ENOENT. */
int blockcache_file_drop(struct blockcache *bc, const char *identity);

/*
 * Reads every span cached for block `index` of file `file_id` into buf
 * (capacity cap, at least block_size), each at its place in the block, and
 * lists them in *out (out->gen: the block's put generation, loaded before
 * the spans were looked up).  Returns 0 when every span found verified;
 * -EBADMSG when one or more were corrupt (they have been dropped: refetch
 * their bytes), *out then listing the spans that did verify (maybe none);
 * -ENOENT when nothing is cached; other negative errno on I/O errors
 * (treat as a miss).  Bytes [lo, hi) of the block are cached when one span
 * holds them all (spans never touch).
 */
int blockcache_get_spans(struct blockcache *bc, int64_t file_id, uint64_t index, uint8_t *buf,
                         size_t cap, struct blockcache_spans *out);

/*
 * The block's put generation: it changes after every put that stores bytes
 * of the block (shared by a few blocks: a change may be another block's).
 * A reader that saw the block at generation g and sees g again knows no
 * bytes of the block were cached in between.  Lock-free; any thread.
 */
uint64_t blockcache_generation(struct blockcache *bc, int64_t file_id, uint64_t index);

/*
 * For readers of whole blocks: hit when a span starts the block; *len is
 * its length, which the caller compares with the block's.  Otherwise as
 * blockcache_get_spans (-ENOENT for a block without such a span).
 */
int blockcache_get(struct blockcache *bc, int64_t file_id, uint64_t index, uint8_t *buf, size_t cap,
                   size_t *len);

/*
 * Stores block `index` of file `file_id` (len must be the block's whole
 * length) atomically, evicting least recently used spans if the cap's
 * high watermark is passed.  A block that is already whole is left as is
 * (returns 0); the spans of a partial one are replaced.  Returns 0, or a
 * negative errno (-ENOSPC, -EROFS in degraded mode, -ENOENT if the file id
 * is no longer current, -EBUSY when the block kept changing under this put
 * (evictions, drops), ...) in which case nothing was stored.
 */
int blockcache_put(struct blockcache *bc, int64_t file_id, uint64_t index, const uint8_t *data,
                   size_t len);
/*
 * Stores the bytes [off, off + len) of block `index` (data holds just
 * them): merged with every stored span it touches or overlaps into one
 * span, or beside them when it touches none.  Puts of one block are
 * serialized, so concurrent disjoint puts all end up cached.  When the
 * block would hold more than BLOCKCACHE_MAX_SPANS spans, its shortest
 * other span is dropped (span_drops): the newest bytes are kept.  Bytes a
 * stored span already holds are left as they are (returns 0).
 */
int blockcache_put_span(struct blockcache *bc, int64_t file_id, uint64_t index, size_t off,
                        const uint8_t *data, size_t len);

/*
 * Changes the size cap (the watermarks stay the same percentages).  When
 * the cache is above the new high watermark, least recently used blocks
 * are evicted down to the new low watermark before this returns.  0, or
 * -EINVAL for a zero cap.
 */
int blockcache_set_cap(struct blockcache *bc, uint64_t cap_bytes);

/*
 * Copies bytes [offset, offset+len) of block `index` into dst when the block
 * is one of the hot blocks kept in memory (see blockcache.c) and one of its
 * spans holds them, so a small read of a hot block copies only what it
 * needs.  0 on such a hit; -ENOENT otherwise (use blockcache_get_spans);
 * -EINVAL if the part lies outside the block.
 */
int blockcache_get_hot_part(struct blockcache *bc, int64_t file_id, uint64_t index, size_t offset,
                            size_t len, uint8_t *dst);

void blockcache_get_stats(struct blockcache *bc, struct blockcache_stats *out);

/* One remote file as the admin API lists it. */
struct blockcache_file_info {
    char identity[H5CD_MAX_URL_BYTES + 1];
    char validator[H5CD_MAX_VALIDATOR_BYTES];
    uint64_t size; /* remote file size */
    uint64_t bytes_cached;
    uint64_t blocks;        /* blocks with at least one span cached */
    uint64_t hits;          /* cached block reads */
    int64_t checked_at;     /* unix seconds the validator was last confirmed */
    int64_t last_access_us; /* unix microseconds of the last block access, 0 if none */
};

/* Return non-zero to stop the listing. */
typedef int (*blockcache_list_fn)(const struct blockcache_file_info *info, void *arg);

/* Calls fn for every known remote file, in identity order, under the cache's lock
 * (fn must not call back into the cache).  Returns the count, or -EIO. */
int blockcache_list(struct blockcache *bc, blockcache_list_fn fn, void *arg);

/* Drops every file and block.  0 or a negative errno. */
int blockcache_drop_all(struct blockcache *bc);

#endif
