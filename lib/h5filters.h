/*
 * h5filters.h - our own decoders for the third-party HDF5 filters common in
 * real files: LZF (32000, h5py), LZO (305, PyTables), bzip2 (307), blosc (32001),
 * bitshuffle (32008, plain, LZ4 and zstd), zstd (32015) and lz4 (32004,
 * the HDF5 lz4 plugin's framing).  Registered with libhdf5 so a file never
 * depends on a plugin that may be missing or broken.  Only the decode
 * direction works: encoding fails (the daemon never writes HDF5).
 *
 * Every decoder treats its input as hostile: headers are checked against the
 * input length, and output is bounded by the decoded chunk size the dataset
 * implies (h5filters_expect_chunk_bytes), else by H5FILTERS_MAX_CHUNK_BYTES.
 */
#ifndef H5CD_H5FILTERS_H
#define H5CD_H5FILTERS_H

#include <stddef.h>
#include <stdint.h>

/* Decoded chunks larger than this are refused when the caller gave no bound. */
#define H5FILTERS_MAX_CHUNK_BYTES (1024ULL * 1024 * 1024)

/* Registers every decoder with libhdf5 (H5Zregister), once per process.
 * 0, or -1 if libhdf5 refused one (the others stay registered). */
int h5filters_register(void);

/* The name of a filter id we know ("lzf", "deflate", ...), or NULL. */
const char *h5filters_name(int id);

/*
 * Sets, for the calling thread, how many bytes one decoded chunk of the
 * dataset about to be read can have (chunk elements times stored element
 * size); 0 clears it.  libhdf5 runs filters on the thread that reads, so
 * the decoders see the bound of the read in progress.
 */
void h5filters_expect_chunk_bytes(uint64_t bytes);

/*
 * Decodes one stored chunk filtered by filter `id` with its client data
 * cd[0..ncd).  The output is at most `limit` bytes.  Returns 0 with a
 * malloc'd *out of *out_len bytes, or -1 (unknown id, malformed or
 * hostile input, output past the limit, out of memory).  Pure; any thread.
 */
int h5filters_decode(int id, const unsigned *cd, size_t ncd, const uint8_t *in, size_t in_len,
                     size_t limit, uint8_t **out, size_t *out_len);

#endif
