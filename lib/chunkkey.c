/*
 * chunkkey.c - parsing and formatting of chunk keys.  A cursor walks the
 * key once; each index is bounded in digits and checked against the grid,
 * so no input can overflow or index outside the dataset.
 */
#include "chunkkey.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define MAX_INDEX_DIGITS 19

uint64_t chunkgrid_count(const struct chunkgrid *grid, int d)
{
    uint64_t c = grid->chunk[d] > 0 ? grid->chunk[d] : 1;
    return grid->shape[d] / c + (grid->shape[d] % c != 0);
}

static int reject(char *why, size_t whylen, int rc, const char *reason)
{
    if (why != NULL && whylen > 0)
        snprintf(why, whylen, "%s", reason);
    return rc;
}

/* Reads one canonical decimal index at *cursor. */
static int read_index(const char **cursor, uint64_t *out)
{
    const char *p = *cursor;
    uint64_t value = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        if (++digits > MAX_INDEX_DIGITS)
            return -EINVAL;
        value = value * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (digits == 0 || (digits > 1 && **cursor == '0'))
        return -EINVAL;
    *cursor = p;
    *out = value;
    return 0;
}

int chunkkey_parse(const struct chunkgrid *grid, const char *key, uint64_t *coords, char *why,
                   size_t whylen)
{
    if (key == NULL || strlen(key) > H5CD_MAX_KEY_BYTES)
        return reject(why, whylen, -EINVAL, "key missing or too long");
    if (grid->rank == 0) {
        if (strcmp(key, "0") != 0)
            return reject(why, whylen, -EINVAL, "a scalar dataset has the single key \"0\"");
        return 0;
    }
    const char *p = key;
    for (int d = 0; d < grid->rank; d++) {
        if (d > 0 && *p++ != '.')
            return reject(why, whylen, -EINVAL, "wrong number of indices for the dataset's rank");
        if (read_index(&p, &coords[d]) < 0)
            return reject(why, whylen, -EINVAL, "indices must be decimal numbers joined by '.'");
        if (coords[d] >= chunkgrid_count(grid, d))
            return reject(why, whylen, -ERANGE, "chunk index outside the dataset");
    }
    if (*p != '\0')
        return reject(why, whylen, -EINVAL, "wrong number of indices for the dataset's rank");
    return 0;
}

uint64_t chunkkey_linear(const struct chunkgrid *grid, const uint64_t *coords)
{
    uint64_t linear = 0;
    for (int d = 0; d < grid->rank; d++)
        linear = linear * chunkgrid_count(grid, d) + coords[d];
    return linear;
}

int chunkkey_format(const struct chunkgrid *grid, const uint64_t *coords, char *out, size_t outlen)
{
    size_t used = 0;
    if (grid->rank == 0)
        return snprintf(out, outlen, "0") < (int)outlen ? 0 : -ENOSPC;
    for (int d = 0; d < grid->rank; d++) {
        int n = snprintf(out + used, outlen - used, d == 0 ? "%llu" : ".%llu",
                         (unsigned long long)coords[d]);
        if (n < 0 || (size_t)n >= outlen - used)
            return -ENOSPC;
        used += (size_t)n;
    }
    return 0;
}
