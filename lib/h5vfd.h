/*
 * h5vfd.h - an HDF5 virtual file driver whose reads go to a byte source
 * given by the caller: in h5chunkd-worker, READ messages to the daemon,
 * which answers them from the block cache (lib/remote.c).
 *
 * Read-only.  The prefix of a file (where most HDF5 metadata lives; the
 * whole file when the daemon fetched it whole), which the daemon's open
 * brought into its cache, is read in pages of 16 KiB as libhdf5 touches
 * them, and the pages kept; metadata misses past it read a window around
 * them, sized from the link and growing on every miss.  libhdf5 calls these callbacks under its
 * own global lock, on whichever thread called libhdf5; they block on
 * upstream reads, so never call libhdf5 from the fetch loop thread.
 */
#ifndef H5CD_H5VFD_H
#define H5CD_H5VFD_H

#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>

#include "errors.h"
#include "h5cd_limits.h"

/* Registers the driver (once per process; later calls return the same id).
 * Returns the driver id, or a negative value on failure. */
hid_t h5vfd_register(void);

/* The file a driver instance reads: one version of a remote file. */
struct h5vfd_file_desc {
    char identity[H5CD_MAX_URL_BYTES + 1]; /* its cache identity (also the name libhdf5 sees) */
    int64_t file_id;                       /* the cache's id of this version */
    uint64_t size;
};

/* Where the driver's bytes come from.  read() gets ranges inside the file,
 * length > 0; it returns 0, or -1 with err (remembered for h5vfd_take_error). */
struct h5vfd_source {
    int (*read)(void *ctx, const struct h5vfd_file_desc *file, uint64_t offset, uint64_t length,
                uint8_t *dst, struct h5cd_error *err);
    void *ctx; /* must outlive every file opened with it */
};

/* How the driver reads metadata; the daemon plans it from the link (remote_meta_plan). */
struct h5vfd_meta_plan {
    uint64_t prefix_bytes; /* in the daemon's cache: read by pages and kept (0: none) */
    uint64_t window_first; /* a metadata read outside the prefix and the window reads this
                            * much from it on (0: half the prefix, at most 2 MiB; no window
                            * when the prefix is 0 too) ... */
    uint64_t window_most;  /* ... doubling on each such miss up to this (0: 4 MiB) */
    uint64_t window_align; /* a window starts at the miss rounded down to this (0: 4 KiB) */
};

/* Makes fapl open `file` (copied) through `source` (copied), reading metadata as `plan`
 * says.  0 or -1. */
int h5vfd_set_fapl(hid_t fapl, const struct h5vfd_source *source,
                   const struct h5vfd_file_desc *file, const struct h5vfd_meta_plan *plan);

/* After a failed libhdf5 call on this thread: if the failure was an upstream
 * read error, copies it into err, clears it and returns true.  Returns false
 * when no read failed (then the file itself was not readable HDF5). */
bool h5vfd_take_error(struct h5cd_error *err);

/*
 * Chunk-location capture.  libhdf5 1.10 has no fast public call for where a
 * chunk is (H5Dget_chunk_info_by_coord walks the whole chunk index), but
 * H5Dread_chunk finds a chunk in O(log n) and then reads its bytes in one
 * raw-data read.  Between these two calls, raw-data reads on this thread are
 * not performed: the first one's address and size are recorded and zeros
 * returned, so a lookup costs only index reads.
 */
void h5vfd_capture_begin(void);
/* Ends the capture; true with the recorded read when there was one. */
bool h5vfd_capture_end(uint64_t *addr, uint64_t *size);

#endif
