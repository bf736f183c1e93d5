/*
 * coalesce.c - turns a set of wanted byte ranges into few, bounded upstream
 * fetches and tells, for each wanted range, which fetches cover it.
 *
 * A pure function of its arguments: no I/O, no globals, any thread.  It
 * must never fetch a byte twice, never fetch a byte that is neither wanted
 * nor inside a bridged gap, and never plan a fetch above max_fetch.
 * O(n log n): one sort, one sweep that is run twice (count, then fill, so
 * the output is allocated once and exactly), one binary search per input.
 */
#include "coalesce.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static int by_offset(const void *a, const void *b)
{
    const struct coalesce_range *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->length != y->length)
        return x->length < y->length ? -1 : 1;
    return 0;
}

/* Number of max_fetch-sized pieces in len bytes, rounded up. */
static uint64_t pieces(uint64_t len, uint64_t max_fetch)
{
    return len / max_fetch + (len % max_fetch != 0);
}

/*
 * Sweeps the sorted, non-empty ranges.  The open fetch [start, end) grows
 * while the next range begins within `gap` of its end and the grown fetch
 * stays within max_fetch; otherwise it is closed and the next fetch
 * starts at max(offset, end), so fetches never overlap.  A range longer
 * than max_fetch is cut into full pieces; its last piece stays open.
 * With out == NULL only counts.  Returns the number of fetches, or
 * UINT64_MAX if that count does not fit (only counting can see that).
 */
static uint64_t sweep(const struct coalesce_range *r, size_t n, uint64_t gap, uint64_t max_fetch,
                      struct coalesce_range *out)
{
    uint64_t count = 0;
    bool open = false;
    uint64_t start = 0, end = 0;

    for (size_t i = 0; i < n; i++) {
        uint64_t o = r[i].offset, e = r[i].offset + r[i].length;
        if (open && e <= end)
            continue; /* already inside the open fetch */
        if (open && (o <= end || o - end <= gap) && e - start <= max_fetch) {
            end = e;
            continue;
        }
        if (open) {
            if (out != NULL)
                out[count] = (struct coalesce_range){start, end - start};
            count++;
        }
        start = open && o < end ? end : o;
        uint64_t full = pieces(e - start, max_fetch) - 1;
        if (count > UINT64_MAX - full - 1)
            return UINT64_MAX;
        for (uint64_t k = 0; out != NULL && k < full; k++)
            out[count + k] = (struct coalesce_range){start + k * max_fetch, max_fetch};
        count += full;
        start += full * max_fetch;
        end = e;
        open = true;
    }
    if (open) {
        if (out != NULL)
            out[count] = (struct coalesce_range){start, end - start};
        count++;
    }
    return count;
}

/* First fetch whose end is beyond pos (nf if none). */
static size_t first_ending_after(const struct coalesce_range *f, size_t nf, uint64_t pos)
{
    size_t lo = 0, hi = nf;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f[mid].offset + f[mid].length <= pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* First fetch that starts at or beyond pos (nf if none). */
static size_t first_starting_at(const struct coalesce_range *f, size_t nf, uint64_t pos)
{
    size_t lo = 0, hi = nf;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f[mid].offset < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int coalesce_plan(const struct coalesce_range *in, size_t n, uint64_t gap, uint64_t max_fetch,
                  struct coalesce_plan *out)
{
    struct coalesce_range *sorted = NULL;
    size_t nsorted = 0;
    int rc = -ENOMEM;

    if (out == NULL || max_fetch == 0 || (n > 0 && in == NULL))
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < n; i++)
        if (in[i].length > UINT64_MAX - in[i].offset)
            return -EINVAL;
    if (n == 0)
        return 0;
    if (n > SIZE_MAX / sizeof(*sorted))
        return -ENOMEM;

    sorted = malloc(n * sizeof(*sorted));
    out->first_fetch = calloc(n, sizeof(*out->first_fetch));
    out->nfetch = calloc(n, sizeof(*out->nfetch));
    if (sorted == NULL || out->first_fetch == NULL || out->nfetch == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (in[i].length > 0)
            sorted[nsorted++] = in[i];
    qsort(sorted, nsorted, sizeof(*sorted), by_offset);

    uint64_t count = sweep(sorted, nsorted, gap, max_fetch, NULL);
    if (count > SIZE_MAX / sizeof(*out->fetches))
        goto fail;
    if (count > 0) {
        out->fetches = malloc((size_t)count * sizeof(*out->fetches));
        if (out->fetches == NULL)
            goto fail;
        sweep(sorted, nsorted, gap, max_fetch, out->fetches);
    }
    out->nfetches = (size_t)count;

    for (size_t i = 0; i < n; i++) {
        if (in[i].length == 0)
            continue;
        size_t first = first_ending_after(out->fetches, out->nfetches, in[i].offset);
        size_t last = first_starting_at(out->fetches, out->nfetches, in[i].offset + in[i].length);
        out->first_fetch[i] = first;
        out->nfetch[i] = last - first;
    }
    free(sorted);
    return 0;
fail:
    free(sorted);
    coalesce_plan_free(out);
    return rc;
}

void coalesce_plan_free(struct coalesce_plan *plan)
{
    if (plan == NULL)
        return;
    free(plan->fetches);
    free(plan->first_fetch);
    free(plan->nfetch);
    memset(plan, 0, sizeof(*plan));
}
