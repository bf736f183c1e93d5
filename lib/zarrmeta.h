/*
 * zarrmeta.h - the Zarr v2 view of an HDF5 file: .zarray/.zattrs/.zgroup
 * documents made from /v1/meta documents, the mapping of HDF5 filters to
 * numcodecs codecs, and the base64url ids of remote URLs.  Pure functions
 * (no I/O); any thread.
 */
#ifndef H5CD_ZARRMETA_H
#define H5CD_ZARRMETA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* How the chunks of an array are served in the Zarr view. */
enum zarr_chunks {
    ZARR_CHUNKS_RAW,     /* stored bytes; .zarray names the codecs that undo them */
    ZARR_CHUNKS_DECODED, /* decoded values; .zarray names no compression codec */
};

/* The .zarray document of a dataset's /v1/meta document (new reference) and
 * how its chunks are served, or NULL if the dataset has no Zarr form. */
json_t *zarrmeta_zarray(json_t *meta, enum zarr_chunks *chunks);

/* Splits a /v1/meta dtype into the dtype of one element and, for a NumPy
 * subarray dtype [base, [dims...]], the subarray's dims (else *dims = NULL).
 * *elem is NULL for a dtype of null.  Borrowed references. */
void zarrmeta_split_dtype(json_t *dtype, json_t **elem, json_t **dims);

/* {"zarr_format": 2} */
json_t *zarrmeta_zgroup(void);

/* Unpadded base64url (RFC 4648 §5) of text into out.  0, or -1 if out is too small. */
int zarrmeta_encode_id(const char *text, char *out, size_t outlen);

/* Decodes an id into out (NUL-terminated).  0, or -1 if malformed or too long. */
int zarrmeta_decode_id(const char *id, char *out, size_t outlen);

#endif
