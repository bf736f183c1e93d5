/*
 * h5vfd.h - an HDF5 virtual file driver whose reads go through the block
 * cache and, on a miss, the fetch engine (lib/remote.c).
 *
 * Read-only.  Opening a file reads a prefix of it (where most HDF5
 * metadata lives) in one coalesced request and keeps that prefix in memory,
 * so opening costs one round trip in the common case; later metadata
 * misses fetch whole cache blocks.  libhdf5 calls these callbacks under its
 * own global lock, on whichever thread called libhdf5; they block on
 * upstream reads, so never call libhdf5 from the fetch loop thread.
 */
#ifndef H5CD_H5VFD_H
#define H5CD_H5VFD_H

#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>

#include "errors.h"
#include "remote.h"

/* Registers the driver (once per process; later calls return the same id).
 * Returns the driver id, or a negative value on failure. */
hid_t h5vfd_register(void);

/* Makes fapl open files through remote: `file` must come from remote_open
 * and is copied; `prefix_bytes` (0 for none) are read at open.  0 or -1. */
int h5vfd_set_fapl(hid_t fapl, struct remote *remote, const struct remote_file *file,
                   uint64_t prefix_bytes);

/* After a failed libhdf5 call on this thread: if the failure was an upstream
 * read error, copies it into err, clears it and returns true.  Returns false
 * when no read failed (then the file itself was not readable HDF5). */
bool h5vfd_take_error(struct h5cd_error *err);

#endif
