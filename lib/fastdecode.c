/*
 * fastdecode.c - shuffle and deflate undone in the daemon, bit for bit what
 * libhdf5's built-in filters produce.  Deflate is undone by libdeflate
 * (whole buffers, about twice zlib's speed, same zlib format and Adler-32
 * check): the output size is known, so nothing streams.  Anything unexpected returns 1 so the
 * caller falls back to libhdf5: this path may be skipped, never wrong.
 */
#include "fastdecode.h"

#include <libdeflate.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define FILTER_DEFLATE 1
#define FILTER_SHUFFLE 2

/* True when every cell of the chunk lies inside the dataset (nothing to pad). */
static bool interior(const struct h5dataset *ds, const uint64_t *coords)
{
    for (int d = 0; d < ds->grid.rank; d++)
        if ((coords[d] + 1) * ds->grid.chunk[d] > ds->grid.shape[d])
            return false;
    return true;
}

static uint8_t *inflate_exact(const uint8_t *in, size_t in_len, size_t want)
{
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    uint8_t *out = malloc(want > 0 ? want : 1);
    size_t got = 0;
    if (d == NULL || out == NULL ||
        libdeflate_zlib_decompress(d, in, in_len, out, want, &got) != LIBDEFLATE_SUCCESS ||
        got != want) {
        free(out);
        out = NULL;
    }
    if (d != NULL)
        libdeflate_free_decompressor(d);
    return out;
}

static uint8_t *unshuffle(const uint8_t *in, size_t len, size_t elem)
{
    uint8_t *out = malloc(len > 0 ? len : 1);
    if (out == NULL)
        return NULL;
    size_t n = elem > 0 ? len / elem : 0;
    if (elem <= 1 || n * elem != len) {
        memcpy(out, in, len);
        return out;
    }
    for (size_t j = 0; j < elem; j++)
        for (size_t i = 0; i < n; i++)
            out[i * elem + j] = in[j * n + i];
    return out;
}

int fastdecode_chunk(const struct h5dataset *ds, const uint64_t *coords, uint32_t filter_mask,
                     const uint8_t *raw, size_t raw_len, uint8_t **out, size_t *out_len)
{
    if (ds->layout != H5LAYOUT_CHUNKED || !ds->raw_is_values || filter_mask != 0 ||
        ds->nfilters > H5INDEX_MAX_FILTERS || !interior(ds, coords))
        return 1;
    size_t want = ds->elem_size;
    for (int d = 0; d < ds->grid.rank; d++) {
        if (ds->grid.chunk[d] != 0 && want > SIZE_MAX / ds->grid.chunk[d])
            return 1;
        want *= ds->grid.chunk[d];
    }
    for (unsigned i = 0; i < ds->nfilters; i++) {
        if (ds->filters[i] != FILTER_DEFLATE && ds->filters[i] != FILTER_SHUFFLE)
            return 1;
        /* A shuffle parameter that is not the type's size (an edited file) is libhdf5's to undo. */
        if (ds->filters[i] == FILTER_SHUFFLE && ds->shuffle_elem != ds->elem_size)
            return 1;
    }
    /* Undo the pipeline from its last filter to its first; each stage reads the
     * previous one's output (the first reads the stored bytes as they are). */
    const uint8_t *cur = raw;
    uint8_t *owned = NULL;
    size_t cur_len = raw_len;
    for (unsigned i = ds->nfilters; i-- > 0;) {
        uint8_t *next = ds->filters[i] == FILTER_DEFLATE ? inflate_exact(cur, cur_len, want)
                                                         : unshuffle(cur, cur_len, ds->elem_size);
        free(owned);
        if (next == NULL)
            return 1;
        cur = owned = next;
        cur_len = ds->filters[i] == FILTER_DEFLATE ? want : cur_len;
    }
    if (owned == NULL) { /* no filter: the values are the stored bytes */
        owned = malloc(raw_len > 0 ? raw_len : 1);
        if (owned == NULL)
            return -1;
        memcpy(owned, raw, raw_len);
    }
    if (cur_len != want) {
        free(owned);
        return 1;
    }
    *out = owned;
    *out_len = cur_len;
    return 0;
}
