/*
 * coalesce.h - plan upstream fetches for a set of byte ranges.
 * A pure function: no I/O, no globals, callable from any thread.
 */
#ifndef H5CD_COALESCE_H
#define H5CD_COALESCE_H

#include <stddef.h>
#include <stdint.h>

struct coalesce_range {
    uint64_t offset;
    uint64_t length;
};

struct coalesce_plan {
    struct coalesce_range *fetches; /* sorted by offset, non-overlapping, non-empty */
    size_t nfetches;
    /* For input i: the fetches fetches[first_fetch[i] .. first_fetch[i]+nfetch[i]-1]
     * are contiguous and together cover the input.  nfetch[i] == 0 exactly when the
     * input has length 0 (first_fetch[i] is then 0 and meaningless). */
    size_t *first_fetch;
    size_t *nfetch;
};

/*
 * Plans fetches for n input ranges given in any order, possibly overlapping,
 * duplicated or empty.  Neighbouring ranges are merged when the gap between
 * them is at most `gap` bytes, as long as the merged fetch stays at most
 * `max_fetch` bytes; a single input longer than max_fetch is split into
 * pieces of max_fetch bytes.  No byte outside the union of the inputs and
 * the merged gaps is fetched, and no byte is fetched twice.
 * An input whose offset+length overflows uint64 is rejected.
 * Returns 0, -EINVAL (max_fetch == 0, overflow, n>0 with in == NULL) or -ENOMEM.
 * On success out owns its arrays; release them with coalesce_plan_free().
 */
int coalesce_plan(const struct coalesce_range *in, size_t n, uint64_t gap, uint64_t max_fetch,
                  struct coalesce_plan *out);
/* Frees the arrays of a plan; a zeroed or already freed plan is a no-op. */
void coalesce_plan_free(struct coalesce_plan *plan);

#endif
