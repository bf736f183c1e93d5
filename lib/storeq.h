/*
 * storeq.h - one background thread that runs jobs in the order they were
 * queued.
 *
 * lib/remote hands it the writing of fetched bytes to the disk cache, so
 * that a batch's answer does not wait behind its own cache writes: the
 * client thread copies and decodes while this thread writes.  A job that
 * cannot be queued (no memory, no thread) runs at once in the caller, so
 * nothing queued is ever lost; storeq_free() runs every job still queued.
 */
#ifndef H5CD_STOREQ_H
#define H5CD_STOREQ_H

#include <stdint.h>

struct storeq;

typedef void (*storeq_fn)(void *arg);

/* 0 with *out set, or -ENOMEM.  Without a thread (pthread_create failed) jobs run inline. */
int storeq_new(struct storeq **out);

/* Runs fn(arg) on the queue's thread after every job queued before it, and returns its
 * ticket; or runs it now, inline, when it cannot be queued, and returns 0.  Any thread.
 * fn must not wait for a job of its own queue. */
uint64_t storeq_push(struct storeq *q, storeq_fn fn, void *arg);

/* Waits until the job with this ticket, and so every job queued before it, has run.
 * Ticket 0 returns at once. */
void storeq_wait(struct storeq *q, uint64_t ticket);

/* Runs every queued job, then stops the thread and frees the queue.  NULL is a no-op. */
void storeq_free(struct storeq *q);

#endif
