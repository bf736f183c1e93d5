/*
 * jobs.c - a registry of background jobs.  Each job runs on its own
 * thread; the registry keeps a bounded ring of job records so clients can
 * poll them after they end.  Finished threads are joined lazily (when a
 * new job starts, and at shutdown), so no thread is ever left detached.
 */
#include "jobs.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct job {
    struct jobs *jobs;
    struct job_status st;
    _Atomic bool cancel;
    bool thread_ended; /* fn returned: the thread can be joined */
    bool joined;
    pthread_t thread;
    job_fn fn;
    void *arg;
    void (*free_arg)(void *);
};

struct jobs {
    pthread_mutex_t lock;
    struct job **ring; /* job records in no particular order; NULL when free */
    unsigned kept;
    unsigned max_running;
    uint64_t next_id;
};

int jobs_new(unsigned max_running, unsigned max_kept, struct jobs **out)
{
    struct jobs *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return -ENOMEM;
    j->kept = max_kept > 0 ? max_kept : 1;
    j->max_running = max_running > 0 ? max_running : 1;
    j->next_id = 1;
    j->ring = calloc(j->kept, sizeof(*j->ring));
    if (j->ring == NULL || pthread_mutex_init(&j->lock, NULL) != 0) {
        free(j->ring);
        free(j);
        return -ENOMEM;
    }
    *out = j;
    return 0;
}

/* Joins the thread of a job whose function has returned.  Caller holds no lock. */
static void join_job(struct job *job)
{
    if (!job->joined) {
        pthread_join(job->thread, NULL);
        job->joined = true;
    }
}

void jobs_free(struct jobs *j)
{
    if (j == NULL)
        return;
    pthread_mutex_lock(&j->lock);
    for (unsigned i = 0; i < j->kept; i++)
        if (j->ring[i] != NULL)
            j->ring[i]->cancel = true;
    pthread_mutex_unlock(&j->lock);
    for (unsigned i = 0; i < j->kept; i++) {
        if (j->ring[i] == NULL)
            continue;
        join_job(j->ring[i]);
        free(j->ring[i]);
    }
    pthread_mutex_destroy(&j->lock);
    free(j->ring);
    free(j);
}

static void *job_main(void *p)
{
    struct job *job = p;
    job->fn(job, job->arg);
    if (job->free_arg != NULL)
        job->free_arg(job->arg);
    pthread_mutex_lock(&job->jobs->lock);
    if (job->st.state == JOB_RUNNING) {
        job->st.state = job->cancel ? JOB_CANCELLED : JOB_DONE;
        job->st.finished = time(NULL);
    }
    job->thread_ended = true;
    pthread_mutex_unlock(&job->jobs->lock);
    return NULL;
}

/* Picks a slot for a new job: an empty one, else the one of the oldest job that has
 * ended (its record is then replaced).  UINT32_MAX when every slot holds a running job.
 * Counts running jobs into *running.  Caller holds the lock. */
static unsigned pick_slot(struct jobs *j, unsigned *running)
{
    unsigned empty = UINT32_MAX, oldest = UINT32_MAX;
    *running = 0;
    for (unsigned i = 0; i < j->kept; i++) {
        struct job *job = j->ring[i];
        if (job == NULL) {
            if (empty == UINT32_MAX)
                empty = i;
        } else if (!job->thread_ended) {
            (*running)++;
        } else if (oldest == UINT32_MAX || job->st.id < j->ring[oldest]->st.id) {
            oldest = i;
        }
    }
    return empty != UINT32_MAX ? empty : oldest;
}

int jobs_start(struct jobs *j, const char *description, job_fn fn, void *arg,
               void (*free_arg)(void *), uint64_t *id)
{
    struct job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return -ENOMEM;
    job->jobs = j;
    job->fn = fn;
    job->arg = arg;
    job->free_arg = free_arg;
    job->st.state = JOB_RUNNING;
    job->st.started = time(NULL);
    snprintf(job->st.description, sizeof(job->st.description), "%s", description);
    pthread_mutex_lock(&j->lock);
    unsigned running;
    unsigned slot = pick_slot(j, &running);
    if (slot == UINT32_MAX || running >= j->max_running) {
        pthread_mutex_unlock(&j->lock);
        free(job);
        return -EAGAIN;
    }
    struct job *old = j->ring[slot];
    job->st.id = j->next_id++;
    j->ring[slot] = job;
    if (pthread_create(&job->thread, NULL, job_main, job) != 0) {
        j->ring[slot] = old;
        pthread_mutex_unlock(&j->lock);
        free(job);
        return -EAGAIN;
    }
    *id = job->st.id;
    pthread_mutex_unlock(&j->lock);
    if (old != NULL) {
        join_job(old); /* its thread has ended: this returns at once */
        free(old);
    }
    return 0;
}

static struct job *find_locked(struct jobs *j, uint64_t id)
{
    for (unsigned i = 0; i < j->kept; i++)
        if (j->ring[i] != NULL && j->ring[i]->st.id == id)
            return j->ring[i];
    return NULL;
}

int jobs_get(struct jobs *j, uint64_t id, struct job_status *out)
{
    pthread_mutex_lock(&j->lock);
    struct job *job = find_locked(j, id);
    if (job != NULL)
        *out = job->st;
    pthread_mutex_unlock(&j->lock);
    return job != NULL ? 0 : -ENOENT;
}

int jobs_cancel(struct jobs *j, uint64_t id)
{
    pthread_mutex_lock(&j->lock);
    struct job *job = find_locked(j, id);
    if (job != NULL)
        job->cancel = true;
    pthread_mutex_unlock(&j->lock);
    return job != NULL ? 0 : -ENOENT;
}

void jobs_each(struct jobs *j, void (*fn)(const struct job_status *st, void *arg), void *arg)
{
    pthread_mutex_lock(&j->lock);
    for (uint64_t id = j->next_id; id-- > 1;) {
        struct job *job = find_locked(j, id);
        if (job != NULL)
            fn(&job->st, arg);
    }
    pthread_mutex_unlock(&j->lock);
}

bool job_cancelled(struct job *job)
{
    return job->cancel;
}

void job_progress(struct job *job, uint64_t chunks_done, uint64_t chunks_total, uint64_t bytes_done,
                  uint64_t bytes_total, unsigned errors)
{
    pthread_mutex_lock(&job->jobs->lock);
    job->st.chunks_done = chunks_done;
    job->st.chunks_total = chunks_total;
    job->st.bytes_done = bytes_done;
    job->st.bytes_total = bytes_total;
    job->st.errors = errors;
    pthread_mutex_unlock(&job->jobs->lock);
}

void job_finish(struct job *job, const char *error)
{
    pthread_mutex_lock(&job->jobs->lock);
    if (error != NULL) {
        job->st.state = JOB_FAILED;
        snprintf(job->st.error, sizeof(job->st.error), "%s", error);
    } else {
        job->st.state = job->cancel ? JOB_CANCELLED : JOB_DONE;
    }
    job->st.finished = time(NULL);
    pthread_mutex_unlock(&job->jobs->lock);
}
