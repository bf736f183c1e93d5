/*
 * fuzz_common.h - helpers shared by the libFuzzer harnesses: a byte reader
 * that takes typed values off the front of the fuzzer's input, and an
 * assertion that aborts (libFuzzer reports an abort as a crash).
 */
#ifndef H5CD_FUZZ_COMMON_H
#define H5CD_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fuzz_input {
    const uint8_t *data;
    size_t left;
};

/* The next n bytes as a little-endian number (zero bytes past the end). */
static inline uint64_t fuzz_take(struct fuzz_input *in, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && in->left > 0; i++, in->left--, in->data++)
        v |= (uint64_t)in->data[0] << (8 * i);
    return v;
}

/* The rest of the input as a NUL-terminated string (malloc'd; embedded NULs kept). */
static inline char *fuzz_rest_string(struct fuzz_input *in, size_t *len)
{
    char *s = malloc(in->left + 1);
    if (s == NULL)
        abort();
    memcpy(s, in->data, in->left);
    s[in->left] = '\0';
    if (len != NULL)
        *len = in->left;
    in->data += in->left;
    in->left = 0;
    return s;
}

#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
