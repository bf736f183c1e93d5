/*
 * h5chunkindex.h - our own reader of HDF5 chunk indexes, without libhdf5.
 *
 * Given the address of a chunked dataset's object header, it parses the
 * header (versions 1 and 2, continuation blocks) for the dataspace, the
 * filter pipeline and the data layout, then walks the chunk index: version-1
 * B-trees (layout version 3) and the layout-version-4 indexes (single chunk,
 * implicit, fixed array, extensible array, version-2 B-tree).  Walks are
 * breadth-first: every node one level needs is fetched in one call of the
 * caller's read_many, so a batch of keys costs one round trip per tree level.
 *
 * The bytes are untrusted: every address and length is checked against the
 * file size, every count, depth and byte total is bounded, signatures and
 * Jenkins lookup3 checksums of version-2 structures are verified.  Whatever
 * it does not know or finds inconsistent ends in H5CHUNKINDEX_FALLBACK (the
 * caller then asks libhdf5), never in a wrong location.
 *
 * A handle is used by one thread at a time; read_many is called on that
 * thread and may block.
 */
#ifndef H5CD_H5CHUNKINDEX_H
#define H5CD_H5CHUNKINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define H5CHUNKINDEX_MAX_RANK          32
#define H5CHUNKINDEX_MAX_FILTERS       32
#define H5CHUNKINDEX_HEADER_GUESS      4096                   /* bytes read first at a header */
#define H5CHUNKINDEX_MAX_HEADER_BYTES  (1024 * 1024)          /* object header, all blocks */
#define H5CHUNKINDEX_MAX_HEADER_BLOCKS 64                     /* continuation blocks */
#define H5CHUNKINDEX_MAX_DEPTH         32                     /* tree levels */
#define H5CHUNKINDEX_MAX_NODES         (1024 * 1024)          /* index nodes read by one walk */
#define H5CHUNKINDEX_MAX_WALK_BYTES    (512ULL * 1024 * 1024) /* bytes read by one walk */
#define H5CHUNKINDEX_MAX_NODE_BYTES    (16 * 1024 * 1024)     /* one node, block or page */
#define H5CHUNKINDEX_MAX_LIST          (16 * 1024 * 1024)     /* chunks listed by one walk */
#define H5CHUNKINDEX_MAX_GRID_VALUES   (32 * 1024 * 1024)     /* chunks x rank enumerated */
#define H5CHUNKINDEX_MAX_KEYS          (32 * 1024 * 1024)     /* keys of one locate */

/* Returned (positive) when the file uses something this reader does not
 * handle or its bytes are inconsistent: the caller falls back to libhdf5. */
#define H5CHUNKINDEX_FALLBACK 1

struct h5ci_range {
    uint64_t offset; /* absolute position in the file */
    uint64_t length;
    unsigned char *buf; /* length bytes to fill */
};

/* Fills every range completely, all requested at once (the caller coalesces
 * and fetches them concurrently).  0, or a negative errno (I/O failure). */
typedef int (*h5ci_read_many_fn)(void *ctx, const struct h5ci_range *ranges, size_t n);

struct h5chunkindex_source {
    h5ci_read_many_fn read_many;
    void *ctx;
    uint64_t file_size;
    uint64_t base_address;   /* the superblock's base address (usually 0) */
    unsigned sizeof_offsets; /* 2, 4 or 8, from the superblock */
    unsigned sizeof_lengths; /* 2, 4 or 8 */
    unsigned btree_k;        /* chunk B-tree K of version-1 B-trees; 0: 32 */
};

enum h5chunkindex_type {
    H5CHUNKINDEX_BTREE_V1,
    H5CHUNKINDEX_SINGLE,
    H5CHUNKINDEX_IMPLICIT,
    H5CHUNKINDEX_FIXED_ARRAY,
    H5CHUNKINDEX_EXTENSIBLE_ARRAY,
    H5CHUNKINDEX_BTREE_V2,
};

#define H5CHUNKINDEX_UNLIMITED UINT64_MAX

struct h5chunkindex_info {
    enum h5chunkindex_type type;
    unsigned layout_version;
    unsigned rank;
    uint64_t dims[H5CHUNKINDEX_MAX_RANK];
    uint64_t max_dims[H5CHUNKINDEX_MAX_RANK]; /* H5CHUNKINDEX_UNLIMITED */
    uint64_t chunk_dims[H5CHUNKINDEX_MAX_RANK];
    uint64_t grid[H5CHUNKINDEX_MAX_RANK]; /* chunks per dimension, current extent */
    uint32_t element_size;
    uint64_t chunk_bytes; /* unfiltered size of one chunk */
    unsigned nfilters;
    uint16_t filter_ids[H5CHUNKINDEX_MAX_FILTERS];
    uint64_t index_address; /* absolute; UINT64_MAX when nothing is allocated */
};

struct h5chunkindex_location {
    bool allocated;  /* false: never written (read the fill value) */
    uint64_t offset; /* absolute position of the stored chunk */
    uint64_t size;   /* stored bytes (after filters) */
    uint32_t filter_mask;
};

/* Chunks found by h5chunkindex_list_all, in no particular order. */
struct h5chunkindex_list {
    size_t count;
    uint64_t *coords; /* count * rank chunk-grid coordinates */
    struct h5chunkindex_location *locations;
};

/* Cumulative since open, for measurements and tests. */
struct h5chunkindex_stats {
    uint64_t batches; /* read_many calls */
    uint64_t ranges;
    uint64_t bytes;
    uint64_t nodes;        /* index nodes, blocks and pages parsed */
    unsigned last_batches; /* read_many calls of the last locate or list */
};

struct h5chunkindex;

#define H5CHUNKINDEX_REASON_BYTES 160

/*
 * Parses the object header at ohdr_address (relative to the base address,
 * as libhdf5 reports it).  0 with *out set; H5CHUNKINDEX_FALLBACK with the
 * reason in `reason`; or a negative errno (-EIO etc. from read_many,
 * -ENOMEM, -EINVAL for a bad source).  `reason` may be NULL.
 */
int h5chunkindex_open(const struct h5chunkindex_source *src, uint64_t ohdr_address,
                      struct h5chunkindex **out, char reason[H5CHUNKINDEX_REASON_BYTES]);
void h5chunkindex_close(struct h5chunkindex *ci);

const struct h5chunkindex_info *h5chunkindex_info(const struct h5chunkindex *ci);
struct h5chunkindex_stats h5chunkindex_stats(const struct h5chunkindex *ci);
/* Why the last call returned H5CHUNKINDEX_FALLBACK ("" otherwise). */
const char *h5chunkindex_reason(const struct h5chunkindex *ci);
/* True when the last H5CHUNKINDEX_FALLBACK of a locate or list was for index
 * bytes no valid file has (a signature, a checksum, keys out of order, a
 * child at the wrong level, a chunk outside the file), not for something
 * this reader does not handle.  libhdf5 may walk such an index without
 * noticing and answer wrong locations. */
bool h5chunkindex_damaged(const struct h5chunkindex *ci);

/*
 * Resolves n chunks at once: coords holds n * rank chunk-grid coordinates,
 * each inside the current extent (-EINVAL otherwise).  One walk visits only
 * the nodes its keys need.  0 with out[0..n) filled; H5CHUNKINDEX_FALLBACK;
 * or a negative errno.
 */
int h5chunkindex_locate(struct h5chunkindex *ci, const uint64_t *coords, size_t n,
                        struct h5chunkindex_location *out);

/* Every allocated chunk inside the current extent, in one full walk.  Same
 * returns as h5chunkindex_locate; on 0 free the list with
 * h5chunkindex_list_free. */
int h5chunkindex_list_all(struct h5chunkindex *ci, struct h5chunkindex_list *out);
void h5chunkindex_list_free(struct h5chunkindex_list *list);

/* Jenkins' lookup3 hashlittle() with initval 0: the checksum of version-2
 * HDF5 metadata.  Exposed for tests. */
uint32_t h5chunkindex_lookup3(const unsigned char *data, size_t len);

#endif
