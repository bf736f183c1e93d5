/*
 * selection.h - NumPy-like selections of a dataset ("0:1000,5", "::2", "-10:")
 * for /v1/slice.  Pure functions; any thread.
 */
#ifndef H5CD_SELECTION_H
#define H5CD_SELECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chunkkey.h"

#define H5CD_MAX_SELECT_BYTES 2048 /* the select parameter */

struct selection {
    int rank;
    uint64_t start[H5CD_MAX_RANK]; /* first index, in [0, shape) when count > 0 */
    uint64_t step[H5CD_MAX_RANK];  /* >= 1 */
    uint64_t count[H5CD_MAX_RANK]; /* elements selected along the dimension (may be 0) */
    bool keep[H5CD_MAX_RANK];      /* false for a single index: the dimension is dropped */
};

/*
 * Parses `text` (NULL or "" selects everything) against a dataset of the
 * given rank and shape.  Items are separated by ',': an integer index
 * (negative counts from the end) or start:stop[:step] with optional parts
 * and a positive step; missing trailing dimensions select everything.
 * Slices clamp to the extent as NumPy does; an index must lie inside it.
 * Returns 0, or -EINVAL with a short reason in why.
 */
int selection_parse(const char *text, int rank, const uint64_t *shape, struct selection *sel,
                    char *why, size_t whylen);

/* Number of elements selected, or UINT64_MAX on overflow. */
uint64_t selection_elements(const struct selection *sel);

/* Shape of the result (kept dimensions only); returns its rank. */
int selection_shape(const struct selection *sel, uint64_t *shape);

/* The range of chunk indices the selection touches along each dimension:
 * [first[d], last[d]].  Returns false when the selection is empty. */
bool selection_chunk_range(const struct selection *sel, const struct chunkgrid *grid,
                           uint64_t *first, uint64_t *last);

#endif
