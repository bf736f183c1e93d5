/*
 * conntrack.c - open client connections, their phases and deadlines (see
 * conntrack.h).
 *
 * libmicrohttpd's own timeout is an idle timeout: a client that sends one
 * header byte every few seconds keeps a connection, and its thread,
 * forever.  Here each phase has a total deadline instead, and when the
 * connections in use come near max_connections the oldest connection
 * that is idle or still sending headers is ended at once, so a burst of
 * idle or slow sockets cannot keep new clients out.  Connections whose
 * request is being answered are never ended here.
 *
 * Each tracked connection holds a dup() of its socket: shutdown() on our
 * own descriptor ends the connection without racing against
 * libmicrohttpd closing and the kernel reusing the descriptor number.
 * One mutex guards the list; the sweeper wakes every SWEEP_INTERVAL_MS.
 */
#include "conntrack.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "stats.h"

#define SWEEP_INTERVAL_MS 250
/* Eviction starts when fewer than this many connections are left below the limit. */
#define RESERVE_MIN     4
#define RESERVE_DIVISOR 16

struct conntrack_conn {
    int fd; /* our dup of the socket; -1 once shut down */
    enum conntrack_phase phase;
    int64_t since_ms; /* CLOCK_MONOTONIC, when the phase began */
    struct conntrack_conn *prev, *next;
};

struct conntrack {
    struct conntrack_config cfg;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t sweeper;
    bool stopping;
    struct conntrack_conn *head; /* newest first */
    size_t count;                /* tracked connections */
    size_t ending;               /* of which ended by us, not yet closed by libmicrohttpd */
    size_t reserve;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The total time a phase may last, in ms; 0 for no deadline. */
static int64_t phase_limit_ms(const struct conntrack *ct, enum conntrack_phase phase)
{
    switch (phase) {
    case CONNTRACK_IDLE:
        return (int64_t)ct->cfg.idle_timeout_s * 1000;
    case CONNTRACK_HEADERS:
        return (int64_t)ct->cfg.header_timeout_s * 1000;
    case CONNTRACK_BODY:
        return (int64_t)ct->cfg.body_timeout_s * 1000;
    case CONNTRACK_ACTIVE:
        break;
    }
    return 0;
}

/* Ends c's connection: its thread sees end of file and closes it.  Caller holds the lock. */
static void end_locked(struct conntrack *ct, struct conntrack_conn *c)
{
    if (c->fd < 0)
        return;
    shutdown(c->fd, SHUT_RDWR);
    close(c->fd);
    c->fd = -1;
    ct->ending++;
}

/* Ends every connection past its phase's deadline.  Caller holds the lock. */
static void sweep_locked(struct conntrack *ct)
{
    int64_t now = mono_ms();
    for (struct conntrack_conn *c = ct->head; c != NULL; c = c->next) {
        int64_t limit = phase_limit_ms(ct, c->phase);
        if (c->fd < 0 || limit == 0 || now - c->since_ms < limit)
            continue;
        log_debug("msg=\"client connection past its deadline: closed\" phase=%d", (int)c->phase);
        end_locked(ct, c);
        if (ct->cfg.stats != NULL)
            STATS_INC(ct->cfg.stats, client_timeouts);
    }
}

/* Ends the connection, other than keep, idle or in its headers for the longest.
 * Caller holds the lock. */
static void evict_one_locked(struct conntrack *ct, const struct conntrack_conn *keep)
{
    struct conntrack_conn *victim = NULL;
    for (struct conntrack_conn *c = ct->head; c != NULL; c = c->next) {
        if (c == keep || c->fd < 0 || (c->phase != CONNTRACK_IDLE && c->phase != CONNTRACK_HEADERS))
            continue;
        if (victim == NULL || c->since_ms < victim->since_ms)
            victim = c;
    }
    if (victim == NULL)
        return;
    end_locked(ct, victim);
    if (ct->cfg.stats != NULL)
        STATS_INC(ct->cfg.stats, client_evictions);
}

static void *sweeper_main(void *arg)
{
    struct conntrack *ct = arg;
    pthread_mutex_lock(&ct->lock);
    while (!ct->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += SWEEP_INTERVAL_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ct->wake, &ct->lock, &until);
        if (!ct->stopping)
            sweep_locked(ct);
    }
    pthread_mutex_unlock(&ct->lock);
    return NULL;
}

int conntrack_new(const struct conntrack_config *cfg, struct conntrack **out)
{
    struct conntrack *ct = calloc(1, sizeof(*ct));
    if (ct == NULL)
        return -ENOMEM;
    ct->cfg = *cfg;
    ct->reserve = cfg->max_connections / RESERVE_DIVISOR;
    if (ct->reserve < RESERVE_MIN)
        ct->reserve = RESERVE_MIN;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&ct->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        free(ct);
        return -rc;
    }
    pthread_mutex_init(&ct->lock, NULL);
    rc = pthread_create(&ct->sweeper, NULL, sweeper_main, ct);
    if (rc != 0) {
        pthread_cond_destroy(&ct->wake);
        pthread_mutex_destroy(&ct->lock);
        free(ct);
        return -rc;
    }
    *out = ct;
    return 0;
}

void conntrack_free(struct conntrack *ct)
{
    if (ct == NULL)
        return;
    pthread_mutex_lock(&ct->lock);
    ct->stopping = true;
    pthread_cond_signal(&ct->wake);
    pthread_mutex_unlock(&ct->lock);
    pthread_join(ct->sweeper, NULL);
    while (ct->head != NULL) { /* none, unless the front end stopped abnormally */
        struct conntrack_conn *c = ct->head;
        ct->head = c->next;
        if (c->fd >= 0)
            close(c->fd);
        free(c);
    }
    pthread_cond_destroy(&ct->wake);
    pthread_mutex_destroy(&ct->lock);
    free(ct);
}

struct conntrack_conn *conntrack_opened(struct conntrack *ct, int fd)
{
    struct conntrack_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (c->fd < 0) {
        log_warn("msg=\"cannot track a client connection\" err=\"%s\"", strerror(errno));
        free(c);
        return NULL;
    }
    c->phase = CONNTRACK_IDLE;
    c->since_ms = mono_ms();
    pthread_mutex_lock(&ct->lock);
    c->next = ct->head;
    if (ct->head != NULL)
        ct->head->prev = c;
    ct->head = c;
    ct->count++;
    if (ct->count - ct->ending + ct->reserve > ct->cfg.max_connections)
        evict_one_locked(ct, c);
    pthread_mutex_unlock(&ct->lock);
    return c;
}

void conntrack_closed(struct conntrack *ct, struct conntrack_conn *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&ct->lock);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        ct->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    ct->count--;
    if (c->fd >= 0)
        close(c->fd);
    else
        ct->ending--;
    pthread_mutex_unlock(&ct->lock);
    free(c);
}

void conntrack_phase(struct conntrack *ct, struct conntrack_conn *c, enum conntrack_phase phase)
{
    if (c == NULL)
        return;
    int64_t now = mono_ms();
    pthread_mutex_lock(&ct->lock);
    c->phase = phase;
    c->since_ms = now;
    pthread_mutex_unlock(&ct->lock);
}

size_t conntrack_count(struct conntrack *ct)
{
    pthread_mutex_lock(&ct->lock);
    size_t n = ct->count;
    pthread_mutex_unlock(&ct->lock);
    return n;
}
