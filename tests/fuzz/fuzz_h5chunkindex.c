/*
 * fuzz_h5chunkindex.c - libFuzzer harness for the chunk-index reader
 * (lib/h5chunkindex.c), built with -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
 * so that checksums do not stop mutations at the first structure.
 * Input: 4 bytes of object header address (little-endian), one byte of
 * sizes (low nibble: size of offsets, high: size of lengths), then the file
 * image that read_many serves (seeds: tests/fuzz/make_h5chunkindex_seeds.py,
 * small h5py files of every index type).
 * Properties: no read outside the image; every located chunk lies inside
 * the image; a chunk listed by list_all is located at the same place.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5chunkindex.h"

#define MAX_KEYS 4096

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "property failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct image {
    const uint8_t *data;
    size_t size;
};

static int image_read_many(void *ctx, const struct h5ci_range *r, size_t n)
{
    const struct image *im = ctx;
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(r[i].offset <= im->size && r[i].length <= im->size - r[i].offset);
        memcpy(r[i].buf, im->data + r[i].offset, r[i].length);
    }
    return 0;
}

/* Up to MAX_KEYS coordinates of the grid, spread over all of it. */
static size_t some_keys(const struct h5chunkindex_info *in, uint64_t *coords)
{
    uint64_t total = 1;
    for (unsigned d = 0; d < in->rank; d++) {
        if (in->grid[d] == 0)
            return 0; /* an empty extent has no chunks */
        total = total <= UINT64_MAX / in->grid[d] ? total * in->grid[d] : UINT64_MAX;
    }
    size_t n = total < MAX_KEYS ? (size_t)total : MAX_KEYS;
    uint64_t step = n ? total / n : 1;
    for (size_t k = 0; k < n; k++) {
        uint64_t lin = (uint64_t)k * step;
        for (int d = (int)in->rank - 1; d >= 0; d--) {
            coords[k * in->rank + (unsigned)d] = lin % in->grid[d];
            lin /= in->grid[d];
        }
    }
    return n;
}

static void check_list(struct h5chunkindex *ci, const struct image *im)
{
    struct h5chunkindex_list list;
    int rc = h5chunkindex_list_all(ci, &list);
    FUZZ_CHECK(rc == 0 || rc == H5CHUNKINDEX_FALLBACK || rc == -ENOMEM);
    if (rc != 0)
        return;
    unsigned rank = h5chunkindex_info(ci)->rank;
    size_t n = list.count < 64 ? list.count : 64;
    for (size_t i = 0; i < n; i++) {
        const struct h5chunkindex_location *l = &list.locations[i];
        FUZZ_CHECK(l->allocated && l->offset <= im->size && l->size <= im->size - l->offset);
        struct h5chunkindex_location again;
        rc = h5chunkindex_locate(ci, list.coords + i * rank, 1, &again);
        /* A damaged tree may hide a listed chunk from a lookup; never move it. */
        if (rc == 0 && again.allocated)
            FUZZ_CHECK(again.offset == l->offset && again.size == l->size);
    }
    h5chunkindex_list_free(&list);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    uint64_t ohdr = (uint64_t)data[0] | (uint64_t)data[1] << 8 | (uint64_t)data[2] << 16 |
                    (uint64_t)data[3] << 24;
    struct image im = {data + 5, size - 5};
    struct h5chunkindex_source src = {.read_many = image_read_many,
                                      .ctx = &im,
                                      .file_size = im.size,
                                      .sizeof_offsets = data[4] & 0x0F,
                                      .sizeof_lengths = data[4] >> 4};
    struct h5chunkindex *ci = NULL;
    char reason[H5CHUNKINDEX_REASON_BYTES];
    int rc = h5chunkindex_open(&src, ohdr, &ci, reason);
    FUZZ_CHECK(rc == 0 || rc == H5CHUNKINDEX_FALLBACK || rc == -ENOMEM);
    if (rc != 0)
        return 0;
    const struct h5chunkindex_info *in = h5chunkindex_info(ci);
    static uint64_t coords[MAX_KEYS * H5CHUNKINDEX_MAX_RANK];
    static struct h5chunkindex_location locs[MAX_KEYS];
    size_t n = some_keys(in, coords);
    rc = h5chunkindex_locate(ci, coords, n, locs);
    FUZZ_CHECK(rc == 0 || rc == H5CHUNKINDEX_FALLBACK || rc == -ENOMEM);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (locs[i].allocated)
            FUZZ_CHECK(locs[i].offset <= im.size && locs[i].size <= im.size - locs[i].offset);
    /* list_all of an array index enumerates the grid (bounded, but seconds
     * for millions of chunks): only on grids a fuzzing run can afford. */
    if (n < MAX_KEYS || in->type == H5CHUNKINDEX_BTREE_V1 || in->type == H5CHUNKINDEX_BTREE_V2)
        check_list(ci, &im);
    h5chunkindex_close(ci);
    return 0;
}
