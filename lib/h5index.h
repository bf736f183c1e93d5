/*
 * h5index.h - where an HDF5 dataset's chunks are, remembered for good.
 *
 * Answers, for a remote file version and a dataset path: the /v1/meta
 * document, the dataset's layout and chunk grid, and for chunk keys their
 * (file offset, stored size, filter mask).  Everything learnt is stored in
 * sqlite (<cache dir>/h5index.sqlite), so a warm request makes no libhdf5
 * call at all; misses are resolved with libhdf5 through lib/h5vfd.c, for a
 * whole batch in one pass.  In libhdf5 1.10 both H5Dget_chunk_info calls
 * walk the whole chunk index per call, so a chunk is found with
 * H5Dget_chunk_storage_size and H5Dread_chunk under an h5vfd capture
 * (O(log n) index reads, no data read); H5Dget_chunk_info_by_coord is the
 * fallback.
 * When a file's version (its cache file id) changes, everything known
 * about the old version is dropped.
 *
 * Thread-safe: one mutex guards sqlite and the open-file table; libhdf5
 * serialises its own calls.  Calls block (libhdf5, upstream reads): call
 * them from client threads, never from the fetch loop.
 */
#ifndef H5CD_H5INDEX_H
#define H5CD_H5INDEX_H

#include <hdf5.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "chunkkey.h"
#include "errors.h"
#include "remote.h"
#include "stats.h"

#define H5INDEX_MAX_FILTERS 8
#define H5INDEX_CONTIGUOUS_CHUNK_BYTES                                                             \
    (16 * 1024 * 1024) /* virtual chunk of a contiguous dataset */

struct h5index;

struct h5index_config {
    const char *dir;         /* where h5index.sqlite lives; NULL or unusable: in memory only */
    uint64_t prefix_bytes;   /* read when a file is opened (most metadata lives there) */
    unsigned max_open_files; /* libhdf5 file handles kept open; 0 = 16 */
    uint64_t cache_epoch;    /* blockcache_epoch(): rows of another epoch are dropped */
};

enum h5layout { H5LAYOUT_CHUNKED = 0, H5LAYOUT_CONTIGUOUS, H5LAYOUT_COMPACT };

struct h5dataset {
    int64_t id;                         /* index row of the dataset */
    char path[H5CD_MAX_PATH_BYTES + 2]; /* canonical: leading '/', no trailing '/' */
    struct chunkgrid grid; /* chunk grid as clients see it (virtual for contiguous/compact) */
    enum h5layout layout;
    size_t elem_size;
    uint64_t data_offset; /* contiguous: file offset of the data; UINT64_MAX if never written */
    uint64_t row_bytes;   /* contiguous: bytes of one step along the first dimension */
    unsigned nfilters;
    int filters[H5INDEX_MAX_FILTERS]; /* filter ids in pipeline order (the first ones) */
    uint64_t shuffle_elem;            /* the shuffle filter's own element size (its parameter) */
    bool raw_is_values;               /* stored bytes, once unfiltered, are the dtype's values */
};

struct h5chunk_loc {
    bool allocated;  /* false: never written (not found for the client) */
    uint64_t offset; /* file offset of the stored bytes */
    uint64_t size;   /* stored (filtered) size */
    uint32_t filter_mask;
};

/* 0, or a negative errno.  An unusable directory falls back to an in-memory index. */
int h5index_open(const struct h5index_config *cfg, struct remote *remote, struct h5cd_stats *stats,
                 struct h5index **out);
void h5index_close(struct h5index *index);

/* The /v1/meta document of a dataset or group (new reference), or NULL with err. */
json_t *h5index_meta(struct h5index *index, const struct remote_file *file, const char *path,
                     struct h5cd_error *err);

/* The dataset at path.  -1 with err: not_found, or bad_request for a group. */
int h5index_dataset(struct h5index *index, const struct remote_file *file, const char *path,
                    struct h5dataset *out, struct h5cd_error *err);

/*
 * Locates n chunks given by their grid coordinates (n * rank values, row
 * major) into locs.  Known chunks come from the index; the rest are
 * resolved in one libhdf5 pass and remembered.  Compact datasets have no
 * location of their own: use h5index_compact_bytes.  0, or -1 with err.
 */
int h5index_locate(struct h5index *index, const struct remote_file *file,
                   const struct h5dataset *ds, const uint64_t *coords, size_t n,
                   struct h5chunk_loc *locs, struct h5cd_error *err);

/* The raw bytes of a compact dataset (its one chunk), malloc'd.  0, or -1 with err. */
int h5index_compact_bytes(struct h5index *index, const struct remote_file *file,
                          const struct h5dataset *ds, uint8_t **data, size_t *len,
                          struct h5cd_error *err);

/* Runs fn with a libhdf5 handle of the file (opened through the cache, shared
 * with other threads).  Returns fn's result, or -1 with err if the file
 * cannot be opened.  fn must not keep the handle. */
int h5index_with_file(struct h5index *index, const struct remote_file *file,
                      int (*fn)(hid_t fid, void *arg, struct h5cd_error *err), void *arg,
                      struct h5cd_error *err);

/* A derived document cached with the file's version (e.g. Zarr's .zmetadata):
 * malloc'd text, or NULL if none is stored.  `name` must not start with '/'. */
char *h5index_get_doc(struct h5index *index, const struct remote_file *file, const char *name);
void h5index_put_doc(struct h5index *index, const struct remote_file *file, const char *name,
                     const char *text);

/* Forgets everything known about one remote file (by identity), or about every
 * file when identity is NULL.  0 or -EIO. */
int h5index_forget(struct h5index *index, const char *identity);

/* Canonical form of a client path ("a/b/" -> "/a/b").  0, or -1 if too long or malformed. */
int h5index_canonical_path(const char *path, char *out, size_t outlen);

#endif
