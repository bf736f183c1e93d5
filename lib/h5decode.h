/*
 * h5decode.h - chunk and slice values decoded by libhdf5 itself, so every
 * filter libhdf5 can load (built-in deflate, shuffle, fletcher32, szip,
 * n-bit, scale-offset, and plugins such as lz4 and bitshuffle) works.
 *
 * Runs in h5chunkd-worker only (worker/h5ops.c), on files open through
 * lib/h5vfd.c, whose reads come from the daemon's block cache: fetch the
 * raw chunks first (a remote batch), then decode, and decoding makes no
 * extra upstream trip.  enum h5decode_format is in h5index.h.
 */
#ifndef H5CD_H5DECODE_H
#define H5CD_H5DECODE_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "h5index.h"
#include "selection.h"

/* The layout decode uses for a dataset's type, and its element size
 * (for H5DECODE_FIXED).  -1 with err for types it cannot represent. */
int h5decode_format_of(hid_t fid, const struct h5dataset *ds, enum h5decode_format *format,
                       size_t *elem_size, struct h5cd_error *err);

/*
 * Decodes the chunk at `coords` of ds into a malloc'd buffer: the full
 * chunk shape in C order, cells outside the dataset (edge chunks) and
 * chunks never written filled with the fill value ("" for strings).
 * 0, or -1 with err.
 */
int h5decode_chunk(hid_t fid, const struct h5dataset *ds, const uint64_t *coords, uint8_t **out,
                   size_t *len, struct h5cd_error *err);

/* The values of a chunk of ds that was never written: the full chunk shape filled with the
 * fill value, made from the dataset's creation properties alone (no chunk index lookup, so
 * nothing but the object header is read).  Types whose fill is not a fixed-size value
 * (strings, references) are read through h5decode_chunk instead.  0, or -1 with err. */
int h5decode_fill_chunk(hid_t fid, const struct h5dataset *ds, const uint64_t *coords,
                        uint8_t **out, size_t *len, struct h5cd_error *err);

/* Decodes a selection of ds into a malloc'd buffer (C order, shape of the selection).
 * max_bytes bounds the result (H5CD_E_TOO_LARGE beyond).  0, or -1 with err. */
int h5decode_slice(hid_t fid, const struct h5dataset *ds, const struct selection *sel,
                   uint64_t max_bytes, uint8_t **out, size_t *len, struct h5cd_error *err);

#endif
