/*
 * chunkkey.h - Zarr v2 chunk keys ("12.0", "0" for 1-D) and the chunk grid
 * of a dataset.  Pure functions; any thread.
 */
#ifndef H5CD_CHUNKKEY_H
#define H5CD_CHUNKKEY_H

#include <stddef.h>
#include <stdint.h>

#define H5CD_MAX_RANK      32  /* HDF5's own limit on dimensions */
#define H5CD_MAX_KEY_BYTES 400 /* 32 indices of up to 11 digits and their dots */

struct chunkgrid {
    int rank;                      /* 0 for a scalar dataset */
    uint64_t shape[H5CD_MAX_RANK]; /* dataset extent */
    uint64_t chunk[H5CD_MAX_RANK]; /* chunk extent, every entry >= 1 */
};

/* Number of chunks along dimension d: ceil(shape / chunk), 0 for an empty dimension. */
uint64_t chunkgrid_count(const struct chunkgrid *grid, int d);

/*
 * Parses key against grid into coords (chunk indices).  A scalar dataset
 * (rank 0) has the single key "0".  Every index must be a canonical decimal
 * number (no sign, no leading zeros except "0") below the chunk count of its
 * dimension.  Returns 0, -EINVAL (malformed, wrong rank), -ERANGE (an index
 * past the grid).  On failure `why` (if not NULL) gets a short reason.
 */
int chunkkey_parse(const struct chunkgrid *grid, const char *key, uint64_t *coords, char *why,
                   size_t whylen);

/* The row-major linear index of coords in the grid (0 for rank 0). */
uint64_t chunkkey_linear(const struct chunkgrid *grid, const uint64_t *coords);

/* Writes the key of coords ("i.j.k") into out.  0, or -ENOSPC if it does not fit. */
int chunkkey_format(const struct chunkgrid *grid, const uint64_t *coords, char *out, size_t outlen);

#endif
