/*
 * membudget.c - the daemon-wide memory budget (see membudget.h).  A mutex
 * and a condition variable: waiters are woken whenever bytes are
 * released and give up at their deadline.
 */
#include "membudget.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct membudget {
    pthread_mutex_t lock;
    pthread_cond_t released;
    uint64_t limit;
    uint64_t used;
    uint64_t refusals;
};

struct membudget *membudget_new(uint64_t limit)
{
    struct membudget *mb = calloc(1, sizeof(*mb));
    if (mb == NULL)
        return NULL;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&mb->released, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        free(mb);
        return NULL;
    }
    pthread_mutex_init(&mb->lock, NULL);
    mb->limit = limit;
    return mb;
}

void membudget_free(struct membudget *mb)
{
    if (mb == NULL)
        return;
    pthread_cond_destroy(&mb->released);
    pthread_mutex_destroy(&mb->lock);
    free(mb);
}

void membudget_set_limit(struct membudget *mb, uint64_t limit)
{
    pthread_mutex_lock(&mb->lock);
    mb->limit = limit;
    pthread_cond_broadcast(&mb->released);
    pthread_mutex_unlock(&mb->lock);
}

static bool fits_locked(const struct membudget *mb, uint64_t n)
{
    return n <= mb->limit && mb->used <= mb->limit - n;
}

bool membudget_try(struct membudget *mb, uint64_t n)
{
    pthread_mutex_lock(&mb->lock);
    bool ok = fits_locked(mb, n);
    if (ok)
        mb->used += n;
    pthread_mutex_unlock(&mb->lock);
    return ok;
}

bool membudget_acquire(struct membudget *mb, uint64_t n, unsigned wait_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&mb->lock);
    bool ok = fits_locked(mb, n);
    while (!ok && n <= mb->limit) {
        if (pthread_cond_timedwait(&mb->released, &mb->lock, &until) != 0)
            break;
        ok = fits_locked(mb, n);
    }
    ok = ok || fits_locked(mb, n);
    if (ok)
        mb->used += n;
    else
        mb->refusals++;
    pthread_mutex_unlock(&mb->lock);
    return ok;
}

void membudget_force(struct membudget *mb, uint64_t n)
{
    pthread_mutex_lock(&mb->lock);
    mb->used += n;
    pthread_mutex_unlock(&mb->lock);
}

void membudget_release(struct membudget *mb, uint64_t n)
{
    if (n == 0)
        return;
    pthread_mutex_lock(&mb->lock);
    mb->used = n <= mb->used ? mb->used - n : 0;
    pthread_cond_broadcast(&mb->released);
    pthread_mutex_unlock(&mb->lock);
}

uint64_t membudget_used(struct membudget *mb)
{
    pthread_mutex_lock(&mb->lock);
    uint64_t v = mb->used;
    pthread_mutex_unlock(&mb->lock);
    return v;
}

uint64_t membudget_limit(struct membudget *mb)
{
    pthread_mutex_lock(&mb->lock);
    uint64_t v = mb->limit;
    pthread_mutex_unlock(&mb->lock);
    return v;
}

uint64_t membudget_refusals(struct membudget *mb)
{
    pthread_mutex_lock(&mb->lock);
    uint64_t v = mb->refusals;
    pthread_mutex_unlock(&mb->lock);
    return v;
}
