/*
 * jobs.h - background jobs (cache prefetches) with progress and
 * cancellation, each on its own thread, kept for inspection after they
 * end.  Thread-safe.
 */
#ifndef H5CD_JOBS_H
#define H5CD_JOBS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "h5cd_limits.h"

enum job_state { JOB_RUNNING = 0, JOB_DONE, JOB_FAILED, JOB_CANCELLED };

struct job_status {
    uint64_t id;
    enum job_state state;
    uint64_t chunks_done, chunks_total, bytes_done, bytes_total;
    unsigned errors;
    char error[H5CD_MAX_ERROR_MESSAGE];
    char description[H5CD_MAX_URL_BYTES + 512]; /* what the job does, as JSON text */
    time_t started, finished;
};

struct jobs;
struct job;

/* Runs on the job's thread; reports with job_progress, ends with job_finish. */
typedef void (*job_fn)(struct job *job, void *arg);

/* At most max_running jobs at once; the last max_kept are remembered. 0 or -ENOMEM. */
int jobs_new(unsigned max_running, unsigned max_kept, struct jobs **out);
/* Cancels every running job and waits for its thread.  NULL is a no-op. */
void jobs_free(struct jobs *jobs);

/* Starts fn(job, arg) on a new thread; free_arg(arg) runs after fn.
 * 0 with *id, -EAGAIN when max_running jobs run, -ENOMEM. */
int jobs_start(struct jobs *jobs, const char *description, job_fn fn, void *arg,
               void (*free_arg)(void *), uint64_t *id);
/* 0 with *out, or -ENOENT. */
int jobs_get(struct jobs *jobs, uint64_t id, struct job_status *out);
/* Asks a running job to stop.  0, or -ENOENT. */
int jobs_cancel(struct jobs *jobs, uint64_t id);
/* Calls fn for every remembered job, newest first. */
void jobs_each(struct jobs *jobs, void (*fn)(const struct job_status *st, void *arg), void *arg);

/* For job functions. */
bool job_cancelled(struct job *job);
void job_progress(struct job *job, uint64_t chunks_done, uint64_t chunks_total, uint64_t bytes_done,
                  uint64_t bytes_total, unsigned errors);
/* error NULL: done (or cancelled if it was); else failed with that message. */
void job_finish(struct job *job, const char *error);

#endif
