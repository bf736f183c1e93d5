/*
 * h5ops.h - the libhdf5 side of every worker operation (describe, locate,
 * compact bytes, decode a chunk, decode a selection), on files opened
 * through lib/h5vfd.c with the worker's socket as byte source.
 *
 * Runs in h5chunkd-worker only, single-threaded.  Keeps a few libhdf5
 * file handles open between operations, keyed by file version.
 */
#ifndef H5CD_WORKER_H5OPS_H
#define H5CD_WORKER_H5OPS_H

#include <stddef.h>
#include <stdint.h>

#include "h5vfd.h"
#include "workerproto.h"

/* Sets the byte source of every file opened from now on (copied). */
void h5ops_init(const struct h5vfd_source *source);

/*
 * Runs one operation (paths: DESCRIBE_MANY's path list, op->paths_len
 * bytes).  On success res->error.code is H5CD_OK and *data
 * (malloc'd, may be NULL when res->data_len is 0) holds res->data_len
 * bytes; otherwise res->error says why (a stable code; never an upstream
 * code unless a READ failed upstream).
 */
void h5ops_run(const struct wp_op *op, const uint64_t *coords, const char *paths,
               struct wp_result *res, uint8_t **data);

/* Closes every open file handle. */
void h5ops_close_all(void);

#endif
