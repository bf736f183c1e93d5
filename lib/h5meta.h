/*
 * h5meta.h - what an HDF5 object is, as JSON: the /v1/meta document of a
 * dataset or group, and the NumPy spelling of HDF5 datatypes.
 *
 * Works on any open HDF5 file id (local or through lib/h5vfd.c).  Calls
 * libhdf5, so it runs on client or worker threads, never on the fetch loop.
 * Never returns wrong data: a type or value it cannot represent is reported
 * as such (dtype null plus a description), not approximated.
 */
#ifndef H5CD_H5META_H
#define H5CD_H5META_H

#include <hdf5.h>
#include <jansson.h>
#include <stddef.h>

#include "errors.h"

/*
 * Describes the object at `path` (leading '/' optional; "/" or "" is the
 * root group).  For a dataset:
 *   {"path", "kind":"dataset", "shape":[...], "chunks":[...], "dtype", "layout",
 *    "filters":[{"id","name","params":[...]}...], "fill_value", "attrs":{...}}
 * where "chunks" is the chunk shape for chunked datasets, the dataset's
 * shape for compact ones, and for contiguous ones [rows, rest of shape...]
 * with rows = max(1, floor(16 MiB / bytes per row)) clamped to the first
 * dimension (see api-v1 Conventions; scalar datasets have shape [] and
 * chunks []).  dtype is the NumPy type string ("<i2", ">f8", "|u1",
 * "|S16", "|b1" for HDF5 enums of bool); for types with no fixed NumPy
 * spelling dtype is null and "h5type" says what it is ("vlen string",
 * "compound", "reference", ...); bitfields are unsigned integers and H5T_ARRAY
 * types NumPy subarray dtypes [base, dims].  fill_value is a JSON number/string, or
 * null when the dataset has none defined.
 * For a group: {"path", "kind":"group", "members":[names sorted], "attrs":{...}}.
 * Both carry "object_id", the object header's address (hex): equal for hard
 * links to one object, so walks can visit each object once.
 * Returns a new reference, or NULL with err set (H5CD_E_NOT_FOUND for a
 * missing path; H5CD_E_UNSUPPORTED for other object kinds; H5CD_E_DAMAGED_FILE
 * for a group whose member names no valid file has).
 */
json_t *h5meta_describe(hid_t file, const char *path, struct h5cd_error *err);

/* Writes the NumPy type string of an HDF5 datatype into out ("<i4", "|S8").
 * Returns 0, or -1 when the type has no fixed-size NumPy spelling. */
int h5meta_dtype(hid_t type, char *out, size_t outlen);

/* Attributes of an object as a JSON object: numbers, strings, (nested) arrays
 * of them; values that cannot be represented become null.  NULL on failure. */
json_t *h5meta_attrs(hid_t obj);

#endif
