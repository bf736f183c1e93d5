/*
 * prefetch.c - warming the cache for chunks of a dataset.  Locates every
 * chunk in one pass, then hands the allocated ones to one remote batch so
 * their blocks are coalesced and fetched concurrently; the bytes
 * themselves are dropped as they arrive (the cache keeps them).
 */
#include "prefetch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int prefetch_chunks(struct h5index *index, struct remote *remote, const struct remote_file *file,
                    const struct h5dataset *ds, const uint64_t *coords, size_t n, uint64_t budget,
                    prefetch_fn fn, void *arg, struct prefetch_progress *progress,
                    struct h5cd_error *err)
{
    memset(progress, 0, sizeof(*progress));
    progress->chunks_total = n;
    if (n == 0 || ds->layout == H5LAYOUT_COMPACT) {
        progress->chunks_done = n;
        return 0;
    }
    struct h5chunk_loc *locs = calloc(n, sizeof(*locs));
    struct remote_batch *batch = NULL;
    int rc = -1;
    if (locs == NULL) {
        h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
        goto done;
    }
    if (h5index_locate(index, file, ds, coords, n, locs, err) < 0)
        goto done;
    if (remote_batch_new(remote, file, budget, &batch) < 0) {
        h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (!locs[i].allocated || locs[i].size == 0) {
            progress->chunks_done++;
            continue;
        }
        progress->bytes_total += locs[i].size;
        int added = remote_batch_add(batch, locs[i].offset, locs[i].size, NULL, NULL);
        if (added == -ERANGE) {
            /* The file's own index points past its end: damage, not an upstream failure. */
            h5cd_fail(err, H5CD_E_DAMAGED_FILE,
                      "a chunk lies outside the remote file: the file is damaged");
            goto done;
        }
        if (added < 0) {
            h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
            goto done;
        }
    }
    struct remote_batch_result res;
    while (remote_batch_next(batch, &res) == 1) {
        progress->chunks_done++;
        if (res.data != NULL)
            progress->bytes_done += res.length;
        else
            progress->errors++;
        if (fn != NULL && !fn(progress, arg))
            break;
    }
    rc = 0;
done:
    remote_batch_free(batch);
    free(locs);
    return rc;
}

/* The chunk indices along one dimension that hold a selected element. */
static size_t dim_chunks(const struct selection *sel, const struct chunkgrid *grid, int d,
                         uint64_t *out, size_t cap)
{
    size_t k = 0;
    uint64_t c = grid->chunk[d];
    for (uint64_t i = 0; i < sel->count[d]; i++) {
        uint64_t chunk = (sel->start[d] + i * sel->step[d]) / c;
        if (k > 0 && out[k - 1] == chunk)
            continue;
        if (k == cap)
            return SIZE_MAX;
        out[k++] = chunk;
        if (sel->step[d] < c) {
            /* Dense along this dimension: jump to the next chunk boundary. */
            uint64_t next = (chunk + 1) * c;
            if (next <= sel->start[d])
                break;
            uint64_t skip = (next - sel->start[d] + sel->step[d] - 1) / sel->step[d];
            if (skip > i + 1)
                i = skip - 1;
        }
    }
    return k;
}

int prefetch_selection_chunks(const struct h5dataset *ds, const struct selection *sel,
                              size_t max_chunks, uint64_t **coords, size_t *n,
                              struct h5cd_error *err)
{
    int rank = sel->rank;
    uint64_t *lists[H5CD_MAX_RANK] = {0};
    size_t counts[H5CD_MAX_RANK];
    size_t total = 1;
    int rc = -1;
    *coords = NULL;
    *n = 0;
    for (int d = 0; d < rank; d++) {
        lists[d] = malloc((max_chunks > 0 ? max_chunks : 1) * sizeof(uint64_t));
        if (lists[d] == NULL) {
            h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
            goto done;
        }
        counts[d] = dim_chunks(sel, &ds->grid, d, lists[d], max_chunks);
        if (counts[d] == SIZE_MAX || (counts[d] > 0 && total > max_chunks / counts[d])) {
            h5cd_fail(err, H5CD_E_TOO_LARGE, "the selection touches more than %zu chunks",
                      max_chunks);
            goto done;
        }
        total *= counts[d];
    }
    if (rank == 0)
        total = 1;
    *coords = malloc((total > 0 ? total : 1) * (size_t)(rank > 0 ? rank : 1) * sizeof(uint64_t));
    if (*coords == NULL) {
        h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
        goto done;
    }
    /* Odometer over the per-dimension lists, row major. */
    for (size_t i = 0; i < total; i++) {
        size_t rest = i;
        for (int d = rank - 1; d >= 0; d--) {
            (*coords)[i * (size_t)rank + (size_t)d] = lists[d][rest % counts[d]];
            rest /= counts[d];
        }
    }
    *n = total;
    rc = 0;
done:
    for (int d = 0; d < rank; d++)
        free(lists[d]);
    if (rc < 0) {
        free(*coords);
        *coords = NULL;
    }
    return rc;
}
