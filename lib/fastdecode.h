/*
 * fastdecode.h - decoding of the commonest chunks without libhdf5: no
 * filter, or deflate with or without shuffle, on a simple dtype.  Such
 * chunks are the bulk of NWB data; decoding them here keeps them off
 * libhdf5's global lock, so many clients decode in parallel.  Pure
 * functions; any thread.
 */
#ifndef H5CD_FASTDECODE_H
#define H5CD_FASTDECODE_H

#include <stddef.h>
#include <stdint.h>

#include "h5index.h"

/*
 * Decodes the stored bytes of the chunk at coords.  Returns 0 with a
 * malloc'd *out (the full chunk, C order), or 1 when this chunk needs
 * libhdf5 (another filter, a skipped filter, an edge chunk that must be
 * padded with the fill value, a type whose stored layout differs, or bytes
 * that do not decode as expected: libhdf5 then decides).  -1 out of memory.
 */
int fastdecode_chunk(const struct h5dataset *ds, const uint64_t *coords, uint32_t filter_mask,
                     const uint8_t *raw, size_t raw_len, uint8_t **out, size_t *out_len);

#endif
