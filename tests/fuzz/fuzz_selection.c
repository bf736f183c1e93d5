/*
 * fuzz_selection.c - libFuzzer harness for /v1/slice selections
 * (lib/selection.c).  Input: a rank byte, per dimension the extent and the
 * chunk extent, then the selection text.  Properties: every selected index
 * lies inside the dataset, the result shape matches the counts, and the chunk
 * range lies inside the grid.
 */
#include <errno.h>

#include "fuzz_common.h"
#include "selection.h"

static void check_selection(const struct selection *sel, const struct chunkgrid *grid)
{
    uint64_t shape[H5CD_MAX_RANK];
    int kept = selection_shape(sel, shape);
    FUZZ_ASSERT(kept >= 0 && kept <= sel->rank);
    bool empty = false;
    for (int d = 0, k = 0; d < sel->rank; d++) {
        FUZZ_ASSERT(sel->step[d] >= 1);
        if (sel->count[d] == 0) {
            empty = true;
        } else {
            FUZZ_ASSERT(sel->start[d] < grid->shape[d]);
            uint64_t span = (sel->count[d] - 1) * sel->step[d];
            FUZZ_ASSERT(span / sel->step[d] == sel->count[d] - 1); /* no overflow */
            FUZZ_ASSERT(span < grid->shape[d] - sel->start[d]);
        }
        if (!sel->keep[d])
            FUZZ_ASSERT(sel->count[d] == 1);
        else
            FUZZ_ASSERT(shape[k++] == sel->count[d]);
    }
    uint64_t first[H5CD_MAX_RANK], last[H5CD_MAX_RANK];
    bool any = selection_chunk_range(sel, grid, first, last);
    FUZZ_ASSERT(any == !empty);
    for (int d = 0; any && d < sel->rank; d++) {
        FUZZ_ASSERT(first[d] <= last[d]);
        FUZZ_ASSERT(last[d] < chunkgrid_count(grid, d));
    }
    (void)selection_elements(sel);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    struct chunkgrid grid = {0};
    grid.rank = (int)(fuzz_take(&in, 1) % (H5CD_MAX_RANK + 1));
    for (int d = 0; d < grid.rank; d++) {
        int small = (int)fuzz_take(&in, 1) & 1;
        grid.shape[d] = small ? fuzz_take(&in, 2) : fuzz_take(&in, 8);
        grid.chunk[d] = small ? fuzz_take(&in, 1) : fuzz_take(&in, 8);
        if (grid.chunk[d] == 0)
            grid.chunk[d] = 1;
    }
    char *text = fuzz_rest_string(&in, NULL);
    struct selection sel;
    char why[128];
    int rc = selection_parse(text, grid.rank, grid.shape, &sel, why, sizeof(why));
    FUZZ_ASSERT(rc == 0 || rc == -EINVAL);
    if (rc == 0) {
        FUZZ_ASSERT(sel.rank == grid.rank);
        check_selection(&sel, &grid);
    }
    free(text);
    return 0;
}
