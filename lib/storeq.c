/*
 * storeq.c - a FIFO of jobs run by one background thread (see storeq.h).
 */
#include "storeq.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct job {
    struct job *next;
    storeq_fn fn;
    void *arg;
};

struct storeq {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* a job was queued, or the queue is stopping */
    pthread_cond_t ran;  /* a job has run */
    uint64_t queued;     /* tickets handed out: jobs are numbered from 1 in queue order */
    uint64_t done;       /* jobs run: every ticket up to this one */
    struct job *head, *tail;
    bool stopping;
    bool has_thread;
    pthread_t thread;
};

static void *run_jobs(void *arg)
{
    struct storeq *q = arg;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (q->head == NULL && !q->stopping)
            pthread_cond_wait(&q->wake, &q->lock);
        struct job *job = q->head;
        if (job == NULL)
            break; /* stopping and drained */
        q->head = job->next;
        if (q->head == NULL)
            q->tail = NULL;
        pthread_mutex_unlock(&q->lock);
        job->fn(job->arg);
        free(job);
        pthread_mutex_lock(&q->lock);
        q->done++;
        pthread_cond_broadcast(&q->ran);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

int storeq_new(struct storeq **out)
{
    struct storeq *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return -ENOMEM;
    if (pthread_mutex_init(&q->lock, NULL) != 0) {
        free(q);
        return -ENOMEM;
    }
    if (pthread_cond_init(&q->wake, NULL) != 0) {
        pthread_mutex_destroy(&q->lock);
        free(q);
        return -ENOMEM;
    }
    if (pthread_cond_init(&q->ran, NULL) != 0) {
        pthread_cond_destroy(&q->wake);
        pthread_mutex_destroy(&q->lock);
        free(q);
        return -ENOMEM;
    }
    q->has_thread = pthread_create(&q->thread, NULL, run_jobs, q) == 0;
    *out = q;
    return 0;
}

uint64_t storeq_push(struct storeq *q, storeq_fn fn, void *arg)
{
    struct job *job = q != NULL && q->has_thread ? malloc(sizeof(*job)) : NULL;
    if (job == NULL) {
        fn(arg);
        return 0;
    }
    *job = (struct job){.fn = fn, .arg = arg};
    pthread_mutex_lock(&q->lock);
    if (q->tail != NULL)
        q->tail->next = job;
    else
        q->head = job;
    q->tail = job;
    uint64_t ticket = ++q->queued;
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
    return ticket;
}

void storeq_wait(struct storeq *q, uint64_t ticket)
{
    if (q == NULL || ticket == 0)
        return;
    pthread_mutex_lock(&q->lock);
    while (q->done < ticket)
        pthread_cond_wait(&q->ran, &q->lock);
    pthread_mutex_unlock(&q->lock);
}

void storeq_free(struct storeq *q)
{
    if (q == NULL)
        return;
    if (q->has_thread) {
        pthread_mutex_lock(&q->lock);
        q->stopping = true;
        pthread_cond_signal(&q->wake);
        pthread_mutex_unlock(&q->lock);
        pthread_join(q->thread, NULL);
    }
    pthread_cond_destroy(&q->ran);
    pthread_cond_destroy(&q->wake);
    pthread_mutex_destroy(&q->lock);
    free(q);
}
