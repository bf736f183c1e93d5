/*
 * chunkwalk.h - chunk locations found in the daemon itself: our own index
 * reader (lib/h5chunkindex.c) walking a dataset's chunk index through the
 * cache (lib/remote.c), every node of one tree level fetched in one
 * concurrent batch.
 *
 * It starts from the facts a worker reported with the dataset's
 * description (object header address, superblock sizes).  What the reader
 * does not handle, or finds inconsistent with those facts, or any location
 * ends in CHUNKWALK_FALLBACK: the caller then asks libhdf5 in a worker.
 * Index bytes that break the format (checksums, signatures, key order,
 * tree levels, chunks outside the file) end in CHUNKWALK_DAMAGED.
 * Upstream failures keep their own errors (502/504/409...).
 *
 * Calls block on upstream reads: call them from client threads.
 */
#ifndef H5CD_CHUNKWALK_H
#define H5CD_CHUNKWALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "h5chunkindex.h"
#include "h5index.h"
#include "remote.h"

#define CHUNKWALK_FALLBACK 1
/* The index has bytes no valid file has: the file is refused (422), not
 * handed to libhdf5, which may walk such an index without noticing. */
#define CHUNKWALK_DAMAGED 2
/* A level's node reads that touch or nearly touch are merged into spans:
 * fewer ranges for the remote batch's bookkeeping, hardly more bytes read
 * from the cache.  (Measured on a 1,000,000-chunk file: a 64 KiB gap merged
 * 10,000 leaves into 21 spans but read 4x their bytes from the cache, no
 * faster; the cost of a level is its upstream fetch, not its ranges.) */
#define CHUNKWALK_SPAN_GAP 4096
#define CHUNKWALK_SPAN_MAX (4 * 1024 * 1024)

struct chunkwalk_ref {
    uint64_t offset;
    size_t index; /* in the caller's ranges */
};

struct chunkwalk_span {
    uint64_t offset;
    uint64_t length;
    size_t first; /* its ranges are order[first .. first + count) */
    size_t count;
};

/*
 * Sorts references to n ranges by offset into order[] and merges ranges
 * whose gap is at most `gap` into spans of at most max_span bytes (a longer
 * range is a span of its own).  spans must hold n entries.  Returns the
 * number of spans.
 */
size_t chunkwalk_plan_spans(const struct h5ci_range *ranges, size_t n, uint64_t gap,
                            uint64_t max_span, struct chunkwalk_ref *order,
                            struct chunkwalk_span *spans);

struct chunkwalk_target {
    struct remote *remote;
    const struct remote_file *file;
    const struct h5dataset *ds;
};

/*
 * Locates every key not marked in `known` (n keys of ds->grid.rank
 * coordinates each, inside the grid) into locs.  When the keys cover at
 * least half of the dataset's chunks, one full walk (h5chunkindex_list_all)
 * replaces the routed one.  0; CHUNKWALK_FALLBACK or CHUNKWALK_DAMAGED with
 * `reason` set; or -1 with err (upstream failure, out of memory).
 */
int chunkwalk_locate(const struct chunkwalk_target *t, const uint64_t *coords, size_t n,
                     const bool *known, struct h5chunk_loc *locs,
                     char reason[H5CHUNKINDEX_REASON_BYTES], struct h5cd_error *err);

/* True when ds carries the facts a walk starts from (a worker reported them). */
bool chunkwalk_possible(const struct h5dataset *ds);

/* The reader's view of the dataset must be the worker's: rank, extent, chunk
 * shape and number of filters.  0, or CHUNKWALK_FALLBACK with `reason`. */
int chunkwalk_check_info(const struct h5chunkindex_info *info, const struct h5dataset *ds,
                         char reason[H5CHUNKINDEX_REASON_BYTES]);

/* One location as the index stores it: a chunk inside the file, or never
 * written.  0, or CHUNKWALK_DAMAGED for a chunk outside the file. */
int chunkwalk_convert(const struct h5chunkindex_location *in, uint64_t file_size,
                      struct h5chunk_loc *out);

#endif
