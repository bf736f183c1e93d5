/*
 * h5index.h - where an HDF5 dataset's chunks are, remembered for good.
 *
 * Answers, for a remote file version and a dataset path: the /v1/meta
 * document, the dataset's layout and chunk grid, and for chunk keys their
 * (file offset, stored size, filter mask).  Everything learnt is stored in
 * sqlite (<cache dir>/h5index.sqlite), so a warm request needs no libhdf5
 * at all; chunk locations it misses are found by the daemon's own index
 * reader (lib/chunkwalk.c), breadth-first, for a whole batch in one walk;
 * descriptions, decoding, slices and what the reader does not handle are
 * done by an HDF5 worker process (lib/workerpool.c, worker/h5ops.c).
 * When a file's version (its cache file id) changes, everything known
 * about the old version is dropped.  A version on which a worker crashed
 * or overran is quarantined: refused (422 damaged_file) without a worker
 * until it changes upstream or h5index_forget() purges it.
 *
 * Thread-safe: one mutex guards sqlite.  Calls block (workers, upstream
 * reads): call them from client threads, never from the fetch loop.
 */
#ifndef H5CD_H5INDEX_H
#define H5CD_H5INDEX_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "chunkkey.h"
#include "errors.h"
#include "remote.h"
#include "selection.h"
#include "stats.h"

#define H5INDEX_MAX_FILTERS 8
#define H5INDEX_CONTIGUOUS_CHUNK_BYTES                                                             \
    (16 * 1024 * 1024) /* virtual chunk of a contiguous dataset */

struct h5index;
struct workerpool;

struct h5index_config {
    const char *dir;           /* where h5index.sqlite lives; NULL or unusable: in memory only */
    uint64_t prefix_bytes;     /* read when a file is opened (most metadata lives there) */
    uint64_t max_decode_bytes; /* largest decoded chunk or slice; 0 = 256 MiB */
    uint64_t cache_epoch;      /* blockcache_epoch(): rows of another epoch are dropped */
    struct remote *remote;     /* chunk indexes are walked in the daemon through it (must
                                * outlive the index); NULL: every lookup asks a worker */
};

/* How decoded values are laid out. */
enum h5decode_format {
    H5DECODE_FIXED,     /* fixed-size elements, C order, in the dataset's dtype */
    H5DECODE_VLEN_UTF8, /* numcodecs VLenUTF8: u32le count, then u32le length + bytes each */
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
    /* Where our own index reader (lib/chunkwalk.c) starts, as libhdf5 reported it:
     * the object header address (relative to base_address; UINT64_MAX: unknown,
     * use the worker) and the superblock's sizes and chunk B-tree K. */
    uint64_t ohdr_address;
    uint64_t base_address; /* the user block's size: libhdf5 uses it as the base */
    unsigned sizeof_offsets;
    unsigned sizeof_lengths;
    unsigned btree_k;
};

struct h5chunk_loc {
    bool allocated;  /* false: never written (not found for the client) */
    uint64_t offset; /* file offset of the stored bytes */
    uint64_t size;   /* stored (filtered) size */
    uint32_t filter_mask;
};

/* 0, or a negative errno.  An unusable directory falls back to an in-memory index.
 * `pool` runs every libhdf5 operation and must outlive the index. */
int h5index_open(const struct h5index_config *cfg, struct workerpool *pool,
                 struct h5cd_stats *stats, struct h5index **out);
void h5index_close(struct h5index *index);

/* The /v1/meta document of a dataset or group (new reference), or NULL with err. */
json_t *h5index_meta(struct h5index *index, const struct remote_file *file, const char *path,
                     struct h5cd_error *err);

/*
 * h5index_meta of n paths at once: metas[i] (a new reference) or NULL with
 * errs[i], and doc_bytes[i] (if not NULL) the size of the stored document,
 * for the caller's memory bounds.  Documents not in the index are described
 * by as few worker operations as their number and size allow (one per
 * WP_MAX_DESCRIBE_PATHS paths) and stored in one transaction each: a
 * worker round trip and a commit per object cost more than describing it.
 */
void h5index_meta_many(struct h5index *index, const struct remote_file *file,
                       const char *const *paths, size_t n, json_t **metas, struct h5cd_error *errs,
                       size_t *doc_bytes);

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

/*
 * Decodes the chunk at `coords` of ds (a worker's libhdf5, reading through
 * the cache: fetch the raw chunk first and decoding makes no upstream
 * trip): the full chunk shape in C order, cells outside the dataset and
 * chunks never written filled with the fill value.  More than
 * max_decode_bytes is refused (413) before anything is allocated.  The
 * buffer counts against the daemon-wide memory budget until freed with
 * h5index_free_values().  0, or -1 with err.
 */
int h5index_decode_chunk(struct h5index *index, const struct remote_file *file,
                         const struct h5dataset *ds, const uint64_t *coords, uint8_t **out,
                         size_t *len, struct h5cd_error *err);
/* The values of a chunk the index says was never written, as h5index_decode_chunk gives
 * them, made from the dataset's fill value without looking the chunk up in libhdf5's index
 * (whose nodes, read through the cache, could cost upstream requests of their own).
 * Budgeted and freed like h5index_decode_chunk's.  0, or -1 with err. */
int h5index_fill_chunk(struct h5index *index, const struct remote_file *file,
                       const struct h5dataset *ds, const uint64_t *coords, uint8_t **out,
                       size_t *len, struct h5cd_error *err);

/* 413 too_large (-1 with err) when one decoded chunk of ds exceeds max_decode_bytes;
 * for decoding done in the daemon itself (lib/fastdecode.c), before it allocates.  0 if not. */
int h5index_check_decode_size(const struct h5index *index, const struct h5dataset *ds,
                              struct h5cd_error *err);

/* Decoded values of a selection (C order, shape of the selection). */
struct h5slice {
    uint8_t *data; /* free with h5index_free_values() */
    size_t len;
    enum h5decode_format format;
    size_t elem_size; /* bytes per element (H5DECODE_FIXED) */
};

/* Decodes a selection of ds in a worker; at most min(max_bytes, max_decode_bytes)
 * bytes (413 too_large beyond, refused before allocation).  0, or -1 with err. */
int h5index_slice(struct h5index *index, const struct remote_file *file, const struct h5dataset *ds,
                  const struct selection *sel, uint64_t max_bytes, struct h5slice *out,
                  struct h5cd_error *err);

/* Frees values from h5index_decode_chunk / h5index_slice and returns their bytes
 * to the budget.  NULL is a no-op. */
void h5index_free_values(void *data);

/* A derived document cached with the file's version (e.g. Zarr's .zmetadata):
 * malloc'd text, or NULL if none is stored.  `name` must not start with '/'. */
char *h5index_get_doc(struct h5index *index, const struct remote_file *file, const char *name);
void h5index_put_doc(struct h5index *index, const struct remote_file *file, const char *name,
                     const char *text);

/* Forgets everything known about one remote file (by identity), or about every
 * file when identity is NULL, its quarantine included.  0 or -EIO. */
int h5index_forget(struct h5index *index, const char *identity);

/* Canonical form of a client path ("a/b/" -> "/a/b").  0, or -1 if too long or malformed. */
int h5index_canonical_path(const char *path, char *out, size_t outlen);

#endif
