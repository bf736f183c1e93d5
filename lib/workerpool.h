/*
 * workerpool.h - the daemon's pool of h5chunkd-worker processes: every
 * libhdf5 call runs in one of them, never in the daemon.
 *
 * A client thread that needs libhdf5 takes a free worker for the whole
 * operation (waiting a bounded time when all are busy: 503 beyond), sends
 * the operation and answers the worker's READs from lib/remote.c (so the
 * cache, single-flight and coalescing apply), until the RESULT arrives.
 * The worker's own time is bounded (time spent waiting for upstream is not
 * its time); a worker that dies, overruns or misbehaves is killed and
 * replaced, and the call reports that as a damaged file (the caller
 * quarantines the file version).  Decoded values received count against the
 * daemon-wide memory budget of lib/remote.c until freed with
 * workerpool_free_values().
 *
 * Thread-safe; calls block (use client threads, never the fetch loop).
 */
#ifndef H5CD_WORKERPOOL_H
#define H5CD_WORKERPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "remote.h"
#include "stats.h"
#include "workerproto.h"

struct workerpool;

struct workerpool_config {
    const char *worker_path; /* the h5chunkd-worker executable (absolute) */
    unsigned workers;        /* processes; >= 1 */
    unsigned timeout_ms;     /* a worker's own time per operation; also the longest wait for
                              * a free worker */
    uint64_t memory_bytes;   /* RLIMIT_AS of a worker; 0 = none */
    const char *log_level;   /* passed to workers */
};

/* Why a call failed in a way that says something about the file. */
enum workerpool_fate {
    WORKERPOOL_ANSWERED = 0, /* the worker answered (success or a classified error) */
    WORKERPOOL_CRASHED,      /* died: signal, exit, or memory limit */
    WORKERPOOL_TIMED_OUT,    /* overran its time or read budget and was killed */
    WORKERPOOL_MISBEHAVED,   /* broke the protocol and was killed */
    WORKERPOOL_NOT_RUN,      /* no worker (saturated pool, spawn failure, budget, upstream) */
};

struct workerpool_call {
    /* in */
    const struct remote_file *file;
    struct wp_op *op; /* filled by the caller except file fields, which run() sets */
    const uint64_t *coords;
    const char *paths;   /* DESCRIBE_MANY: op->paths_len bytes (op->npaths paths) */
    uint64_t max_result; /* largest data_len accepted */
    bool budgeted;       /* reserve the result's bytes in the daemon-wide budget */
    /* out */
    uint32_t format;    /* SLICE */
    uint64_t elem_size; /* SLICE */
    uint8_t *data;      /* the result; free with free() or, when budgeted,
                         * workerpool_free_values() */
    size_t len;
    enum workerpool_fate fate;
    char reason[128]; /* what happened to the worker, for logs and quarantine */
    /* One of the daemon's reads for the worker failed upstream (code H5CD_OK: none):
     * that, not the file, explains whatever failed after it. */
    struct h5cd_error upstream_error;
};

/* Locates the worker program: H5CHUNKD_WORKER from the environment, else
 * h5chunkd-worker next to the running executable, else in `libexecdir`.
 * 0 with the path in out, or -1. */
int workerpool_find_worker(const char *configured, const char *libexecdir, char *out, size_t cap);

/* Starts the pool (workers are spawned on first use).  0 or -ENOMEM. */
int workerpool_new(const struct workerpool_config *cfg, struct remote *remote,
                   struct h5cd_stats *stats, struct workerpool **out);
/* Stops every worker (closing its socket, then SIGKILL after a short wait). */
void workerpool_free(struct workerpool *pool);

/* Runs one operation.  0 with call->data/len, or -1 with err (a stable code:
 * damaged_file when the worker failed on the file, upstream codes only when
 * one of our reads of the file failed upstream, unavailable when no worker
 * was free in time) and call->fate. */
int workerpool_run(struct workerpool *pool, struct workerpool_call *call, struct h5cd_error *err);

/* Frees a budgeted result and returns its bytes to the budget.  NULL is a no-op.
 * Usable as a libmicrohttpd free callback. */
void workerpool_free_values(void *data);

/*
 * The error a client gets for an error a worker reported (a DESCRIBE_MANY
 * record's): an upstream failure of the call's own reads if there was one;
 * else the worker's code if it is one a worker may report (bad_request,
 * not_found, too_large, unsupported, damaged_file, filter_unavailable);
 * else damaged_file.  The worker's message is kept.
 */
void workerpool_worker_error(const struct workerpool_call *call, enum h5cd_errcode code,
                             const char *message, struct h5cd_error *out);

#endif
