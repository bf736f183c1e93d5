/*
 * fuzz_chunkkey.c - libFuzzer harness for chunk keys (lib/chunkkey.c).
 * Input: a rank byte, then per dimension 8 bytes of extent and 8 of chunk
 * extent (a zero chunk extent becomes 1, as the grid requires), then the key.
 * Properties: accepted coordinates are inside the grid, the linear index is
 * inside the chunk count, and formatting them gives back the key.
 */
#include <errno.h>

#include "chunkkey.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    struct chunkgrid grid = {0};
    grid.rank = (int)(fuzz_take(&in, 1) % (H5CD_MAX_RANK + 1));
    for (int d = 0; d < grid.rank; d++) {
        /* Small extents most of the time, so that keys can be inside the grid. */
        int small = (int)fuzz_take(&in, 1) & 1;
        grid.shape[d] = small ? fuzz_take(&in, 1) : fuzz_take(&in, 8);
        grid.chunk[d] = small ? fuzz_take(&in, 1) : fuzz_take(&in, 8);
        if (grid.chunk[d] == 0)
            grid.chunk[d] = 1;
    }
    char *key = fuzz_rest_string(&in, NULL);
    uint64_t coords[H5CD_MAX_RANK];
    char why[128];
    int rc = chunkkey_parse(&grid, key, coords, why, sizeof(why));
    FUZZ_ASSERT(rc == 0 || rc == -EINVAL || rc == -ERANGE);
    if (rc == 0) {
        for (int d = 0; d < grid.rank; d++)
            FUZZ_ASSERT(coords[d] < chunkgrid_count(&grid, d));
        (void)chunkkey_linear(&grid, coords);
        char back[H5CD_MAX_KEY_BYTES + 1];
        FUZZ_ASSERT(chunkkey_format(&grid, coords, back, sizeof(back)) == 0);
        FUZZ_ASSERT(strcmp(back, key) == 0);
    }
    free(key);
    return 0;
}
