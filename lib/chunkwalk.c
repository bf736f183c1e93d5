/*
 * chunkwalk.c - the daemon's own chunk lookups: lib/h5chunkindex.c reading
 * through lib/remote.c batches, its answers checked against what libhdf5
 * (in a worker) said about the dataset, and mapped to struct h5chunk_loc.
 */
#include "chunkwalk.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chunkkey.h"
#include "log.h"

/* The read_many context: the first upstream error of the walk is kept so it
 * reaches the client as it is (502, 504, 409 ...), not as a fallback. */
struct walk_io {
    struct remote *remote;
    const struct remote_file *file;
    bool failed;
    struct h5cd_error error;
    uint64_t reserved;     /* node bytes counted against the memory budget */
    uint64_t level_writes; /* the writer's ticket of the last level's cache writes (0: none) */
};

#define BUDGET_WAIT_MS 1000

static int set_reason(char reason[H5CHUNKINDEX_REASON_BYTES], const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int set_reason(char reason[H5CHUNKINDEX_REASON_BYTES], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, H5CHUNKINDEX_REASON_BYTES, fmt, ap);
    va_end(ap);
    return CHUNKWALK_FALLBACK;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int cmp_ref(const void *a, const void *b)
{
    uint64_t x = ((const struct chunkwalk_ref *)a)->offset;
    uint64_t y = ((const struct chunkwalk_ref *)b)->offset;
    return x < y ? -1 : x > y;
}

size_t chunkwalk_plan_spans(const struct h5ci_range *ranges, size_t n, uint64_t gap,
                            uint64_t max_span, struct chunkwalk_ref *order,
                            struct chunkwalk_span *spans)
{
    for (size_t i = 0; i < n; i++)
        order[i] = (struct chunkwalk_ref){ranges[i].offset, i};
    qsort(order, n, sizeof(*order), cmp_ref);
    size_t nspans = 0;
    for (size_t k = 0; k < n; k++) {
        const struct h5ci_range *r = &ranges[order[k].index];
        struct chunkwalk_span *last = nspans > 0 ? &spans[nspans - 1] : NULL;
        uint64_t end = last != NULL ? last->offset + last->length : 0;
        uint64_t r_end = r->offset + r->length;
        uint64_t new_end = r_end > end ? r_end : end;
        if (last != NULL && r->offset <= end + gap && new_end - last->offset <= max_span) {
            last->length = new_end - last->offset;
            last->count++;
            continue;
        }
        spans[nspans++] = (struct chunkwalk_span){r->offset, r->length, k, 1};
    }
    return nspans;
}

/* Hands one span's bytes to the ranges it covers. */
static void scatter_span(const struct h5ci_range *ranges, const struct chunkwalk_ref *order,
                         const struct chunkwalk_span *span, const uint8_t *data)
{
    for (size_t k = span->first; k < span->first + span->count; k++) {
        const struct h5ci_range *r = &ranges[order[k].index];
        memcpy(r->buf, data + (r->offset - span->offset), r->length);
    }
}

static int wait_spans(struct walk_io *io, struct remote_batch *batch,
                      const struct h5ci_range *ranges, const struct chunkwalk_ref *order)
{
    struct remote_batch_result res;
    int got;
    while ((got = remote_batch_next(batch, &res)) == 1) {
        if (res.data != NULL)
            scatter_span(ranges, order, (const struct chunkwalk_span *)res.tag, res.data);
        else if (!io->failed) {
            io->failed = true;
            io->error = res.error;
        }
    }
    if (got < 0)
        return got;
    return io->failed ? -EIO : 0;
}

/* The buffers of a level (its spans) count against the daemon-wide memory
 * budget until the walk ends (a hostile index may ask for up to
 * H5CHUNKINDEX_MAX_WALK_BYTES).  0, or -1 with io->error set. */
static int reserve_nodes(struct walk_io *io, uint64_t bytes)
{
    if (remote_reserve(io->remote, bytes, BUDGET_WAIT_MS) < 0) {
        io->failed = true;
        h5cd_fail(&io->error, H5CD_E_UNAVAILABLE,
                  "the daemon's memory budget stayed full while reading a chunk index: try again");
        return -1;
    }
    io->reserved += bytes;
    return 0;
}

/* h5ci_read_many_fn: every range of one tree level, merged into spans, in
 * one remote batch: the spans' buffers are reserved first, so the batch
 * admits them all at once and plans one set of requests for the level (its
 * holes bridged by the planner's rule, fetched concurrently).  Admitted in
 * rounds, a level of 10,000 nodes trickled out as rounds of tiny requests
 * at the end. */
static int read_ranges(void *ctx, const struct h5ci_range *ranges, size_t n)
{
    struct walk_io *io = ctx;
    if (n == 0)
        return 0;
    struct chunkwalk_ref *order = malloc(n * sizeof(*order));
    struct chunkwalk_span *spans = malloc(n * sizeof(*spans));
    if (order == NULL || spans == NULL) {
        free(order);
        free(spans);
        return -ENOMEM;
    }
    size_t nspans =
        chunkwalk_plan_spans(ranges, n, CHUNKWALK_SPAN_GAP, CHUNKWALK_SPAN_MAX, order, spans);
    uint64_t bytes = 0;
    for (size_t i = 0; i < nspans; i++)
        bytes += spans[i].length;
    /* At most one level's bytes wait for the disk: the previous level's writes went on
     * while this level's nodes were being chosen, and go on while they travel. */
    remote_wait_writes(io->remote, io->level_writes);
    io->level_writes = 0;
    if (reserve_nodes(io, bytes) < 0) {
        free(order);
        free(spans);
        return -EAGAIN;
    }
    struct remote_batch *batch = NULL;
    int rc = 0;
    if (remote_batch_new(io->remote, io->file, bytes, &batch) < 0)
        rc = -ENOMEM;
    else {
        remote_batch_reserved(batch);
        remote_batch_holes_wanted(batch);
    }
    for (size_t i = 0; i < nspans && rc == 0; i++)
        rc = remote_batch_add(batch, spans[i].offset, spans[i].length, NULL, &spans[i]);
    uint64_t started = now_us();
    if (rc == 0)
        rc = wait_spans(io, batch, ranges, order);
    log_debug("msg=\"index level read\" ranges=%zu spans=%zu ms=%llu", n, nspans,
              (unsigned long long)((now_us() - started) / 1000));
    /* The walk goes on without waiting for this level's cache writes: the next level, or
     * the data batch after the walk, joins the bytes in memory (the chunks between the
     * leaves, for one) until the writer has cached them. */
    io->level_writes = remote_batch_free_detached(batch);
    free(order);
    free(spans);
    return rc;
}

bool chunkwalk_possible(const struct h5dataset *ds)
{
    return ds->layout == H5LAYOUT_CHUNKED && ds->ohdr_address != UINT64_MAX && ds->grid.rank > 0 &&
           ds->sizeof_offsets > 0 && ds->sizeof_lengths > 0;
}

int chunkwalk_check_info(const struct h5chunkindex_info *info, const struct h5dataset *ds,
                         char reason[H5CHUNKINDEX_REASON_BYTES])
{
    if (info->rank != (unsigned)ds->grid.rank)
        return set_reason(reason, "rank %u, libhdf5 says %d", info->rank, ds->grid.rank);
    for (unsigned d = 0; d < info->rank; d++) {
        if (info->dims[d] != ds->grid.shape[d] || info->chunk_dims[d] != ds->grid.chunk[d])
            return set_reason(
                reason, "dimension %u: extent %llu chunk %llu, libhdf5 says %llu %llu", d,
                (unsigned long long)info->dims[d], (unsigned long long)info->chunk_dims[d],
                (unsigned long long)ds->grid.shape[d], (unsigned long long)ds->grid.chunk[d]);
    }
    if (info->nfilters != ds->nfilters)
        return set_reason(reason, "%u filters, libhdf5 says %u", info->nfilters, ds->nfilters);
    return 0;
}

int chunkwalk_convert(const struct h5chunkindex_location *in, uint64_t file_size,
                      struct h5chunk_loc *out)
{
    memset(out, 0, sizeof(*out));
    out->filter_mask = in->filter_mask;
    if (!in->allocated || in->size == 0)
        return 0; /* never written: the worker path reports these the same way */
    if (in->offset > file_size || in->size > file_size - in->offset)
        return CHUNKWALK_DAMAGED;
    out->allocated = true;
    out->offset = in->offset;
    out->size = in->size;
    return 0;
}

/* Maps a negative return of the reader: upstream errors as they are, the rest fallback. */
static int read_failure(const struct walk_io *io, int rc, char reason[H5CHUNKINDEX_REASON_BYTES],
                        struct h5cd_error *err)
{
    if (io->failed) {
        *err = io->error;
        return -1;
    }
    if (rc == -ENOMEM)
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    return set_reason(reason, "index read failed: %s", strerror(-rc));
}

static int reader_result(const struct walk_io *io, const struct h5chunkindex *ci, int rc,
                         char reason[H5CHUNKINDEX_REASON_BYTES], struct h5cd_error *err)
{
    if (rc < 0)
        return read_failure(io, rc, reason, err);
    if (rc > 0) {
        set_reason(reason, "%s", h5chunkindex_reason(ci));
        return h5chunkindex_damaged(ci) ? CHUNKWALK_DAMAGED : CHUNKWALK_FALLBACK;
    }
    return 0;
}

static int open_reader(const struct chunkwalk_target *t, struct walk_io *io,
                       struct h5chunkindex **ci, char reason[H5CHUNKINDEX_REASON_BYTES],
                       struct h5cd_error *err)
{
    const struct h5dataset *ds = t->ds;
    struct h5chunkindex_source src = {
        .read_many = read_ranges,
        .ctx = io,
        .file_size = t->file->size,
        .base_address = ds->base_address,
        .sizeof_offsets = ds->sizeof_offsets,
        .sizeof_lengths = ds->sizeof_lengths,
        .btree_k = ds->btree_k,
    };
    *ci = NULL;
    int rc = h5chunkindex_open(&src, ds->ohdr_address, ci, reason);
    if (rc < 0)
        return read_failure(io, rc, reason, err);
    if (rc > 0)
        return CHUNKWALK_FALLBACK;
    rc = chunkwalk_check_info(h5chunkindex_info(*ci), ds, reason);
    if (rc != 0) {
        h5chunkindex_close(*ci);
        *ci = NULL;
    }
    return rc;
}

/* Converts found[k] into locs[slots[k]] for k < m. */
static int store_found(const struct chunkwalk_target *t, const struct h5chunkindex_location *found,
                       const size_t *slots, size_t m, struct h5chunk_loc *locs,
                       char reason[H5CHUNKINDEX_REASON_BYTES])
{
    for (size_t k = 0; k < m; k++) {
        int rc = chunkwalk_convert(&found[k], t->file->size, &locs[slots[k]]);
        if (rc != 0) {
            set_reason(reason, "a chunk at %llu+%llu lies outside the file",
                       (unsigned long long)found[k].offset, (unsigned long long)found[k].size);
            return rc;
        }
    }
    return 0;
}

/* One routed walk for the unknown keys. */
static int locate_routed(const struct chunkwalk_target *t, struct h5chunkindex *ci,
                         struct walk_io *io, const uint64_t *coords, size_t n, const bool *known,
                         struct h5chunk_loc *locs, char reason[H5CHUNKINDEX_REASON_BYTES],
                         struct h5cd_error *err)
{
    size_t rank = (size_t)t->ds->grid.rank, m = 0;
    uint64_t *wanted = malloc((n > 0 ? n : 1) * rank * sizeof(*wanted));
    size_t *slots = malloc((n > 0 ? n : 1) * sizeof(*slots));
    struct h5chunkindex_location *found = calloc(n > 0 ? n : 1, sizeof(*found));
    int rc = 0;
    if (wanted == NULL || slots == NULL || found == NULL)
        rc = h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (known[i])
            continue;
        memcpy(wanted + m * rank, coords + i * rank, rank * sizeof(*wanted));
        slots[m++] = i;
    }
    if (rc == 0 && m > 0)
        rc = reader_result(io, ci, h5chunkindex_locate(ci, wanted, m, found), reason, err);
    if (rc == 0)
        rc = store_found(t, found, slots, m, locs, reason);
    free(wanted);
    free(slots);
    free(found);
    return rc;
}

struct listed {
    uint64_t linear;
    size_t at; /* index in the list */
};

static int cmp_listed(const void *a, const void *b)
{
    uint64_t x = ((const struct listed *)a)->linear, y = ((const struct listed *)b)->linear;
    return x < y ? -1 : x > y;
}

/* The listed chunks by linear index, sorted; a chunk listed twice is inconsistent. */
static int index_list(const struct h5dataset *ds, const struct h5chunkindex_list *list,
                      struct listed *by_linear, char reason[H5CHUNKINDEX_REASON_BYTES])
{
    size_t rank = (size_t)ds->grid.rank;
    for (size_t j = 0; j < list->count; j++)
        by_linear[j] = (struct listed){chunkkey_linear(&ds->grid, list->coords + j * rank), j};
    qsort(by_linear, list->count, sizeof(*by_linear), cmp_listed);
    for (size_t j = 1; j < list->count; j++)
        if (by_linear[j].linear == by_linear[j - 1].linear) {
            set_reason(reason, "chunk %llu listed twice", (unsigned long long)by_linear[j].linear);
            return CHUNKWALK_DAMAGED;
        }
    return 0;
}

/* Picks the unknown keys out of a full listing (absent: never written). */
static int pick_listed(const struct chunkwalk_target *t, const struct h5chunkindex_list *list,
                       const struct listed *by_linear, const uint64_t *coords, size_t n,
                       const bool *known, struct h5chunk_loc *locs,
                       char reason[H5CHUNKINDEX_REASON_BYTES])
{
    size_t rank = (size_t)t->ds->grid.rank;
    for (size_t i = 0; i < n; i++) {
        if (known[i])
            continue;
        struct listed key = {chunkkey_linear(&t->ds->grid, coords + i * rank), 0};
        const struct listed *hit =
            bsearch(&key, by_linear, list->count, sizeof(*by_linear), cmp_listed);
        memset(&locs[i], 0, sizeof(locs[i]));
        int rc = hit != NULL ? store_found(t, &list->locations[hit->at], &i, 1, locs, reason) : 0;
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* One full walk of the index, for batches that want most of the dataset. */
static int locate_listed(const struct chunkwalk_target *t, struct h5chunkindex *ci,
                         struct walk_io *io, const uint64_t *coords, size_t n, const bool *known,
                         struct h5chunk_loc *locs, char reason[H5CHUNKINDEX_REASON_BYTES],
                         struct h5cd_error *err)
{
    struct h5chunkindex_list list = {0};
    int rc = reader_result(io, ci, h5chunkindex_list_all(ci, &list), reason, err);
    if (rc != 0)
        return rc;
    struct listed *by_linear = malloc((list.count > 0 ? list.count : 1) * sizeof(*by_linear));
    if (by_linear == NULL)
        rc = h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    if (rc == 0)
        rc = index_list(t->ds, &list, by_linear, reason);
    if (rc == 0)
        rc = pick_listed(t, &list, by_linear, coords, n, known, locs, reason);
    free(by_linear);
    h5chunkindex_list_free(&list);
    return rc;
}

/* Chunks in the grid, saturated at UINT64_MAX. */
static uint64_t grid_chunks(const struct chunkgrid *grid)
{
    uint64_t total = 1;
    for (int d = 0; d < grid->rank; d++) {
        uint64_t count = chunkgrid_count(grid, d);
        if (count != 0 && total > UINT64_MAX / count)
            return UINT64_MAX;
        total *= count;
    }
    return total;
}

static bool wants_full_walk(const struct h5dataset *ds, const bool *known, size_t n)
{
    uint64_t total = grid_chunks(&ds->grid), unknown = 0;
    if (total > H5CHUNKINDEX_MAX_LIST)
        return false;
    for (size_t i = 0; i < n; i++)
        unknown += !known[i];
    return unknown * 2 >= total;
}

/* What one walk cost, for operators tuning the link (debug level). */
static void log_walk(const struct h5dataset *ds, const struct h5chunkindex *ci, bool full, size_t n,
                     uint64_t elapsed_us, int rc)
{
    struct h5chunkindex_stats st = h5chunkindex_stats(ci);
    log_debug("msg=\"chunk index walked\" path=\"%.200s\" walk=%s keys=%zu rc=%d "
              "batches=%u nodes=%llu ranges=%llu bytes=%llu ms=%llu",
              ds->path, full ? "full" : "routed", n, rc, st.last_batches,
              (unsigned long long)st.nodes, (unsigned long long)st.ranges,
              (unsigned long long)st.bytes, (unsigned long long)(elapsed_us / 1000));
}

int chunkwalk_locate(const struct chunkwalk_target *t, const uint64_t *coords, size_t n,
                     const bool *known, struct h5chunk_loc *locs,
                     char reason[H5CHUNKINDEX_REASON_BYTES], struct h5cd_error *err)
{
    reason[0] = '\0';
    if (!chunkwalk_possible(t->ds))
        return set_reason(reason, "no object header address from libhdf5");
    struct walk_io io = {.remote = t->remote, .file = t->file};
    struct h5chunkindex *ci = NULL;
    int rc = open_reader(t, &io, &ci, reason, err);
    if (rc != 0) {
        remote_unreserve(t->remote, io.reserved);
        return rc;
    }
    bool full = wants_full_walk(t->ds, known, n);
    uint64_t started = now_us();
    if (full)
        rc = locate_listed(t, ci, &io, coords, n, known, locs, reason, err);
    else
        rc = locate_routed(t, ci, &io, coords, n, known, locs, reason, err);
    log_walk(t->ds, ci, full, n, now_us() - started, rc);
    h5chunkindex_close(ci);
    remote_unreserve(t->remote, io.reserved);
    return rc;
}
