/*
 * prefetch.h - bring the stored bytes of a set of chunks into the block
 * cache: locate them all (lib/h5index), then read them as one coalesced,
 * concurrent remote batch.  Used before libhdf5 decodes (so decoding makes
 * no upstream trip of its own) and by background prefetch jobs.
 * Blocks; client or worker threads only.
 */
#ifndef H5CD_PREFETCH_H
#define H5CD_PREFETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chunkkey.h"
#include "errors.h"
#include "h5index.h"
#include "remote.h"
#include "selection.h"

struct prefetch_progress {
    uint64_t chunks_total, chunks_done;
    uint64_t bytes_total, bytes_done;
    unsigned errors;
};

/* Called after each chunk; return false to stop early (cancellation). */
typedef bool (*prefetch_fn)(const struct prefetch_progress *progress, void *arg);

/*
 * Fetches the n chunks at coords (n * rank values) of ds.  Chunks never
 * written cost nothing.  budget bounds the bytes held at once.  Returns 0
 * (some chunks may still have failed: progress->errors), or -1 with err
 * when they could not even be located.
 */
int prefetch_chunks(struct h5index *index, struct remote *remote, const struct remote_file *file,
                    const struct h5dataset *ds, const uint64_t *coords, size_t n, uint64_t budget,
                    prefetch_fn fn, void *arg, struct prefetch_progress *progress,
                    struct h5cd_error *err);

/*
 * The coordinates of every chunk a selection touches (only chunks that hold
 * a selected element), malloc'd, n * rank values.  Fails with
 * H5CD_E_TOO_LARGE past max_chunks.  0, or -1 with err.
 */
int prefetch_selection_chunks(const struct h5dataset *ds, const struct selection *sel,
                              size_t max_chunks, uint64_t **coords, size_t *n,
                              struct h5cd_error *err);

#endif
