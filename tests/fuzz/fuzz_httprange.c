/*
 * fuzz_httprange.c - libFuzzer harness for the client Range header parser
 * (lib/httprange.c).  Input: 8 bytes of resource size, then the header.
 * Properties: an accepted range lies inside the resource and is not empty.
 */
#include <errno.h>

#include "fuzz_common.h"
#include "httprange.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    uint64_t resource = fuzz_take(&in, 8);
    char *header = fuzz_rest_string(&in, NULL);
    uint64_t start = 0, length = 0;
    int rc = httprange_parse(header, resource, &start, &length);
    FUZZ_ASSERT(rc == 0 || rc == -EINVAL || rc == -ERANGE);
    if (rc == 0) {
        FUZZ_ASSERT(length > 0);
        FUZZ_ASSERT(start < resource);
        FUZZ_ASSERT(length <= resource - start);
    }
    const char *cursor = header;
    uint64_t number = 0;
    if (httprange_read_decimal(&cursor, &number))
        FUZZ_ASSERT(cursor > header && cursor - header <= 19);
    else
        FUZZ_ASSERT(cursor == header);
    free(header);
    return 0;
}
