/*
 * selection.c - parser of NumPy-like selections.  A cursor walks the text
 * once; numbers are bounded in digits, and every index is normalised and
 * checked against the dataset's extent, so a selection can never address
 * outside the dataset.
 */
#include "selection.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define MAX_DIGITS 18

static int reject(char *why, size_t whylen, const char *reason)
{
    if (why != NULL && whylen > 0)
        snprintf(why, whylen, "%s", reason);
    return -EINVAL;
}

/* Reads an optional signed integer.  1 if one was read, 0 if none, -1 if malformed. */
static int read_int(const char **cursor, int64_t *out)
{
    const char *p = *cursor;
    bool negative = false;
    if (*p == '-') {
        negative = true;
        p++;
    }
    int64_t value = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        if (++digits > MAX_DIGITS)
            return -1;
        value = value * 10 + (*p - '0');
        p++;
    }
    if (digits == 0)
        return negative ? -1 : 0;
    *cursor = p;
    *out = negative ? -value : value;
    return 1;
}

/* NumPy's clamping of a slice bound to [0, n]. */
static uint64_t clamp_bound(int64_t v, uint64_t n)
{
    if (v < 0) {
        uint64_t back = (uint64_t)(-v);
        return back >= n ? 0 : n - back;
    }
    return (uint64_t)v > n ? n : (uint64_t)v;
}

static int parse_item(const char **cursor, uint64_t n, struct selection *sel, int d, char *why,
                      size_t whylen)
{
    int64_t a = 0, b = 0, c = 1;
    int has_a = read_int(cursor, &a);
    if (has_a < 0)
        return reject(why, whylen, "malformed number");
    if (**cursor != ':') {
        if (has_a == 0)
            return reject(why, whylen, "empty selection item");
        /* Unsigned arithmetic: an extent read from a file may exceed INT64_MAX. */
        uint64_t back = a < 0 ? (uint64_t)(-a) : 0;
        if (a < 0 ? back > n : (uint64_t)a >= n)
            return reject(why, whylen, "index outside the dataset");
        sel->start[d] = a < 0 ? n - back : (uint64_t)a;
        sel->step[d] = 1;
        sel->count[d] = 1;
        sel->keep[d] = false;
        return 0;
    }
    (*cursor)++;
    int has_b = read_int(cursor, &b);
    int has_c = 0;
    if (has_b < 0)
        return reject(why, whylen, "malformed number");
    if (**cursor == ':') {
        (*cursor)++;
        has_c = read_int(cursor, &c);
        if (has_c < 0)
            return reject(why, whylen, "malformed number");
        if (has_c == 0)
            c = 1;
        if (c <= 0)
            return reject(why, whylen, "the step must be positive");
    }
    uint64_t start = has_a ? clamp_bound(a, n) : 0;
    uint64_t stop = has_b ? clamp_bound(b, n) : n;
    sel->start[d] = start;
    sel->step[d] = (uint64_t)c;
    sel->count[d] = stop > start ? (stop - start - 1) / (uint64_t)c + 1 : 0;
    sel->keep[d] = true;
    return 0;
}

int selection_parse(const char *text, int rank, const uint64_t *shape, struct selection *sel,
                    char *why, size_t whylen)
{
    memset(sel, 0, sizeof(*sel));
    sel->rank = rank;
    for (int d = 0; d < rank; d++) {
        sel->step[d] = 1;
        sel->count[d] = shape[d];
        sel->keep[d] = true;
    }
    if (text == NULL || text[0] == '\0')
        return 0;
    if (strlen(text) > H5CD_MAX_SELECT_BYTES)
        return reject(why, whylen, "selection too long");
    const char *p = text;
    for (int d = 0;; d++) {
        if (d >= rank)
            return reject(why, whylen, "more selection items than dimensions");
        if (parse_item(&p, shape[d], sel, d, why, whylen) < 0)
            return -EINVAL;
        if (*p == '\0')
            return 0;
        if (*p++ != ',')
            return reject(why, whylen, "items must be separated by ','");
    }
}

uint64_t selection_elements(const struct selection *sel)
{
    uint64_t total = 1;
    for (int d = 0; d < sel->rank; d++) {
        if (sel->count[d] != 0 && total > UINT64_MAX / sel->count[d])
            return UINT64_MAX;
        total *= sel->count[d];
    }
    return total;
}

int selection_shape(const struct selection *sel, uint64_t *shape)
{
    int r = 0;
    for (int d = 0; d < sel->rank; d++)
        if (sel->keep[d])
            shape[r++] = sel->count[d];
    return r;
}

bool selection_chunk_range(const struct selection *sel, const struct chunkgrid *grid,
                           uint64_t *first, uint64_t *last)
{
    for (int d = 0; d < sel->rank; d++) {
        if (sel->count[d] == 0)
            return false;
        uint64_t end = sel->start[d] + (sel->count[d] - 1) * sel->step[d];
        first[d] = sel->start[d] / grid->chunk[d];
        last[d] = end / grid->chunk[d];
    }
    return true;
}
