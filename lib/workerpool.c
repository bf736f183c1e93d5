/*
 * workerpool.c - the daemon side of the worker processes: spawning them
 * (posix_spawn over a socketpair), lending one to a client thread per
 * operation, serving its READs from lib/remote.c, bounding its time and
 * the bytes it may ask for, and replacing it when it dies or overruns.
 *
 * Locking: `lock` guards the busy flags only.  A worker taken by a thread
 * belongs to it alone until given back, so its socket and pid are used
 * without the lock.
 */
#include "workerpool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define WORKER_FD           3
#define MAX_WORKERS         64
#define REAP_WAIT_MS        1000 /* a worker that closed its socket gets this long to exit */
#define BUDGET_WAIT_MS      30000
#define READY_WAIT_MS       10000                /* a new worker has this long to confine itself */
#define SMALL_RESULT_BYTES  (4ULL * 1024 * 1024) /* counted, never waited for */
#define SOCKET_BUFFER_BYTES (4 * 1024 * 1024)
#define MAX_READS_PER_OP    1000000
#define READ_SLACK_BYTES    (256ULL * 1024 * 1024)
#define READ_FILE_MULTIPLE  4 /* READ bytes one operation may ask for: 4 x file + slack */

extern char **environ;

struct worker {
    pid_t pid; /* 0: not running */
    int fd;
    /* READ replies are read into this buffer, kept between READs and operations:
     * fresh pages for every reply cost a page fault each (4 MiB: 1,024 faults). */
    uint8_t *reply;
    size_t reply_cap;
    bool busy;
    bool spawn_wanted; /* asked of the spawner thread */
    int spawn_result;  /* 0 started, -1 failed; valid once spawn_wanted is false */
};

struct workerpool {
    struct workerpool_config cfg;
    char path[PATH_MAX];
    char memory_arg[64];
    char level_arg[64];
    struct remote *remote;
    struct h5cd_stats *stats;
    pthread_mutex_t lock;
    pthread_cond_t freed; /* signalled whenever a worker is given back */
    /* Workers are started by one long-lived thread: PR_SET_PDEATHSIG fires when
     * the *thread* that forked a worker exits, and client threads come and go. */
    pthread_t spawner;
    bool spawner_running;
    bool stopping;
    pthread_cond_t spawn_asked; /* a worker wants starting, or the pool is stopping */
    pthread_cond_t spawn_done;  /* a start finished */
    struct worker workers[MAX_WORKERS];
};

/* A budgeted result: this header precedes the bytes handed out. */
struct held {
    struct remote *remote;
    uint64_t len;
    max_align_t align;
};

int workerpool_find_worker(const char *configured, const char *libexecdir, char *out, size_t cap)
{
    const char *env = getenv("H5CHUNKD_WORKER");
    if (configured != NULL && configured[0] != '\0')
        env = configured;
    if (env != NULL && env[0] != '\0') {
        /* Absolute, so a daemon that detaches (chdir /) still finds it. */
        char resolved[PATH_MAX];
        if (realpath(env, resolved) == NULL || snprintf(out, cap, "%s", resolved) >= (int)cap ||
            access(out, X_OK) < 0)
            return -1;
        return 0;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL) {
            *slash = '\0';
            if (snprintf(out, cap, "%s/h5chunkd-worker", self) < (int)cap && access(out, X_OK) == 0)
                return 0;
        }
    }
    if (libexecdir != NULL &&
        snprintf(out, cap, "%s/h5chunkd/h5chunkd-worker", libexecdir) < (int)cap &&
        access(out, X_OK) == 0)
        return 0;
    return -1;
}

static int spawn_worker(struct workerpool *pool, struct worker *w);

static void *spawner_main(void *arg)
{
    struct workerpool *pool = arg;
    pthread_mutex_lock(&pool->lock);
    while (!pool->stopping) {
        struct worker *w = NULL;
        for (unsigned i = 0; i < pool->cfg.workers && w == NULL; i++)
            if (pool->workers[i].spawn_wanted)
                w = &pool->workers[i];
        if (w == NULL) {
            pthread_cond_wait(&pool->spawn_asked, &pool->lock);
            continue;
        }
        /* The asking thread owns w (busy): only its spawn fields are shared. */
        pthread_mutex_unlock(&pool->lock);
        int rc = spawn_worker(pool, w);
        pthread_mutex_lock(&pool->lock);
        w->spawn_result = rc;
        w->spawn_wanted = false;
        pthread_cond_broadcast(&pool->spawn_done);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* Starts w on the spawner thread and waits for it.  0 or -1. */
static int start_worker(struct workerpool *pool, struct worker *w)
{
    pthread_mutex_lock(&pool->lock);
    w->spawn_wanted = true;
    pthread_cond_signal(&pool->spawn_asked);
    while (w->spawn_wanted)
        pthread_cond_wait(&pool->spawn_done, &pool->lock);
    int rc = w->spawn_result;
    pthread_mutex_unlock(&pool->lock);
    return rc;
}

int workerpool_new(const struct workerpool_config *cfg, struct remote *remote,
                   struct h5cd_stats *stats, struct workerpool **out)
{
    struct workerpool *pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return -ENOMEM;
    pool->cfg = *cfg;
    if (pool->cfg.workers == 0)
        pool->cfg.workers = 1;
    if (pool->cfg.workers > MAX_WORKERS)
        pool->cfg.workers = MAX_WORKERS;
    if (pool->cfg.timeout_ms == 0)
        pool->cfg.timeout_ms = 30000;
    snprintf(pool->path, sizeof(pool->path), "%s", cfg->worker_path);
    pool->cfg.worker_path = pool->path;
    snprintf(pool->memory_arg, sizeof(pool->memory_arg), "--memory=%llu",
             (unsigned long long)cfg->memory_bytes);
    snprintf(pool->level_arg, sizeof(pool->level_arg), "--log-level=%s",
             cfg->log_level != NULL ? cfg->log_level : "info");
    pool->cfg.log_level = NULL;
    pool->remote = remote;
    pool->stats = stats;
    for (size_t i = 0; i < MAX_WORKERS; i++)
        pool->workers[i].fd = -1;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&pool->freed, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0 || pthread_mutex_init(&pool->lock, NULL) != 0 ||
        pthread_cond_init(&pool->spawn_asked, NULL) != 0 ||
        pthread_cond_init(&pool->spawn_done, NULL) != 0) {
        free(pool);
        return -ENOMEM;
    }
    /* The spawner blocks every signal, so workers inherit a clean mask via spawn attrs. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&pool->spawner, NULL, spawner_main, pool);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        free(pool);
        return -ENOMEM;
    }
    pool->spawner_running = true;
    *out = pool;
    return 0;
}

/* Waits up to ms for the process to exit; returns its status, or -1 if it did not. */
static int reap_within(pid_t pid, unsigned ms, int *status)
{
    for (unsigned waited = 0;; waited += 5) {
        pid_t got = waitpid(pid, status, WNOHANG);
        if (got == pid)
            return 0;
        if (got < 0 && errno != EINTR)
            return 0; /* not our child any more: nothing to wait for */
        if (waited >= ms)
            return -1;
        struct timespec pause = {.tv_nsec = 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

/* Ends a worker: closes its socket, kills it unless it already exited, reaps it.
 * Describes how it ended in reason (if not NULL). */
static void stop_worker(struct worker *w, bool kill_first, char *reason, size_t cap)
{
    if (w->pid == 0)
        return;
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    int status = 0;
    if (kill_first || reap_within(w->pid, REAP_WAIT_MS, &status) < 0) {
        kill(w->pid, SIGKILL);
        while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (reason != NULL && !kill_first)
            snprintf(reason, cap, "stopped answering and was killed");
    } else if (reason != NULL) {
        if (WIFSIGNALED(status))
            snprintf(reason, cap, "crashed with signal %d (%s)", WTERMSIG(status),
                     strsignal(WTERMSIG(status)));
        else if (WIFEXITED(status))
            snprintf(reason, cap, "exited with status %d", WEXITSTATUS(status));
    }
    w->pid = 0;
}

void workerpool_free(struct workerpool *pool)
{
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_signal(&pool->spawn_asked);
    pthread_mutex_unlock(&pool->lock);
    if (pool->spawner_running)
        pthread_join(pool->spawner, NULL);
    for (unsigned i = 0; i < pool->cfg.workers; i++) {
        struct worker *w = &pool->workers[i];
        free(w->reply);
        w->reply = NULL;
        if (w->pid == 0)
            continue;
        close(w->fd); /* a worker stops at EOF */
        w->fd = -1;
        stop_worker(w, false, NULL, 0);
    }
    pthread_cond_destroy(&pool->freed);
    pthread_cond_destroy(&pool->spawn_asked);
    pthread_cond_destroy(&pool->spawn_done);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

static int spawn_worker(struct workerpool *pool, struct worker *w)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    /* Large buffers: a chunk crosses in few wake-ups instead of many (best effort:
     * the kernel caps them at net.core.wmem_max). */
    int bufsize = SOCKET_BUFFER_BYTES;
    for (int i = 0; i < 2; i++) {
        setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize));
        setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize));
    }
    if (sv[1] == WORKER_FD) { /* dup2 onto itself would keep close-on-exec */
        int moved = fcntl(sv[1], F_DUPFD_CLOEXEC, WORKER_FD + 1);
        close(sv[1]);
        sv[1] = moved;
        if (moved < 0) {
            close(sv[0]);
            return -1;
        }
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, sv[1], WORKER_FD);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGHUP);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *argv[] = {pool->path, pool->memory_arg, pool->level_arg, NULL};
    pid_t pid = 0;
    int rc = posix_spawn(&pid, pool->path, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(sv[1]);
    if (rc != 0) {
        close(sv[0]);
        log_error("msg=\"cannot start a worker\" path=%s reason=\"%s\"", pool->path, strerror(rc));
        return -1;
    }
    w->pid = pid;
    w->fd = sv[0];
    /* Only a worker that confined itself serves: one that cannot (a service
     * manager's filter, a missing library) is a start failure, not a file's fault. */
    struct wp_header hdr;
    if (wp_recv_header(w->fd, &hdr, wp_now_ms() + READY_WAIT_MS) < 0 || hdr.type != WP_READY ||
        hdr.length != 0) {
        char ended[96] = "";
        stop_worker(w, false, ended, sizeof(ended));
        log_error("msg=\"a new HDF5 worker did not get ready\" path=%s reason=\"%s\"", pool->path,
                  ended[0] != '\0' ? ended : "no READY message");
        return -1;
    }
    log_debug("msg=\"worker started\" pid=%d", (int)pid);
    return 0;
}

/* Takes a free worker, starting it if needed.  NULL with err when none is free in time. */
static struct worker *take_worker(struct workerpool *pool, struct h5cd_error *err)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += pool->cfg.timeout_ms / 1000;
    deadline.tv_nsec += (long)(pool->cfg.timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    struct worker *w = NULL;
    pthread_mutex_lock(&pool->lock);
    while (w == NULL) {
        /* Prefer a running worker: starting one costs libhdf5's initialisation. */
        for (unsigned i = 0; i < pool->cfg.workers; i++) {
            struct worker *c = &pool->workers[i];
            if (!c->busy && (w == NULL || (w->pid == 0 && c->pid != 0)))
                w = c;
        }
        if (w != NULL)
            break;
        if (pthread_cond_timedwait(&pool->freed, &pool->lock, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&pool->lock);
            h5cd_fail(err, H5CD_E_UNAVAILABLE,
                      "all %u HDF5 workers stayed busy for %u s: try again later",
                      pool->cfg.workers, pool->cfg.timeout_ms / 1000);
            return NULL;
        }
    }
    w->busy = true;
    pthread_mutex_unlock(&pool->lock);
    int status;
    if (w->pid != 0 && waitpid(w->pid, &status, WNOHANG) == w->pid) {
        /* Died while idle (killed from outside): no request's fault. */
        log_warn("msg=\"an idle HDF5 worker died: replaced\" pid=%d", (int)w->pid);
        close(w->fd);
        w->fd = -1;
        w->pid = 0;
    }
    if (w->pid == 0 && start_worker(pool, w) < 0) {
        pthread_mutex_lock(&pool->lock);
        w->busy = false;
        pthread_cond_signal(&pool->freed);
        pthread_mutex_unlock(&pool->lock);
        h5cd_fail(err, H5CD_E_UNAVAILABLE, "cannot start an HDF5 worker process");
        return NULL;
    }
    return w;
}

static void give_back(struct workerpool *pool, struct worker *w)
{
    pthread_mutex_lock(&pool->lock);
    w->busy = false;
    pthread_cond_signal(&pool->freed);
    pthread_mutex_unlock(&pool->lock);
}

/* What one call knows while it runs. */
struct exchange {
    struct workerpool *pool;
    struct worker *w;
    struct workerpool_call *call;
    uint64_t own_ms;     /* the worker's own time so far */
    uint64_t since_ms;   /* when the worker's clock last started */
    uint64_t read_bytes; /* asked for by READs */
    uint64_t reads;
    bool upstream_failed; /* a READ failed upstream: upstream_error explains the outcome */
    struct h5cd_error upstream_error;
};

/* The deadline of the next wait: the worker's remaining own time. */
static uint64_t deadline_of(const struct exchange *x)
{
    uint64_t limit = x->pool->cfg.timeout_ms;
    uint64_t left = x->own_ms >= limit ? 1 : limit - x->own_ms;
    return x->since_ms + left;
}

/* The worker's reply buffer, grown to hold len bytes (at most WP_MAX_READ_BYTES).  NULL when
 * out of memory. */
static uint8_t *reply_buffer(struct worker *w, size_t len)
{
    if (len <= w->reply_cap)
        return w->reply;
    free(w->reply); /* its bytes are not needed: no copy */
    w->reply = malloc(len);
    w->reply_cap = w->reply != NULL ? len : 0;
    return w->reply;
}

/* Serves one READ.  0, or -1 when the worker broke the rules (reason set). */
static int serve_read(struct exchange *x, const struct wp_header *hdr)
{
    struct workerpool_call *call = x->call;
    struct wp_read rq;
    if (hdr->length != sizeof(rq) || wp_read_full(x->w->fd, &rq, sizeof(rq), deadline_of(x)) < 0) {
        snprintf(call->reason, sizeof(call->reason), "sent a malformed READ");
        return -1;
    }
    x->own_ms += wp_now_ms() - x->since_ms; /* waiting for upstream is not the worker's time */
    const struct remote_file *file = call->file;
    if (rq.file_id != file->file_id || rq.length == 0 || rq.length > WP_MAX_READ_BYTES ||
        rq.offset > file->size || rq.length > file->size - rq.offset) {
        snprintf(call->reason, sizeof(call->reason), "asked for bytes outside the file");
        return -1;
    }
    x->reads++;
    x->read_bytes += rq.length;
    if (x->reads > MAX_READS_PER_OP ||
        x->read_bytes > READ_FILE_MULTIPLE * file->size + READ_SLACK_BYTES) {
        snprintf(call->reason, sizeof(call->reason),
                 "read the file over and over (%llu bytes in %llu reads) and was killed",
                 (unsigned long long)x->read_bytes, (unsigned long long)x->reads);
        call->fate = WORKERPOOL_TIMED_OUT;
        return -1;
    }
    struct wp_read_reply reply = {.length = rq.length};
    uint8_t *buf = reply_buffer(x->w, (size_t)rq.length);
    /* A worker that asks and then stops reading would otherwise hold this thread. */
    uint64_t send_by = wp_now_ms() + x->pool->cfg.timeout_ms;
    int rc;
    if (buf == NULL) {
        h5cd_fail(&reply.error, H5CD_E_INTERNAL, "out of memory");
        reply.length = 0;
        rc = wp_send(x->w->fd, WP_READ_REPLY, &reply, sizeof(reply), NULL, 0, send_by);
    } else if (remote_read(x->pool->remote, file, rq.offset, rq.length, buf, &reply.error) < 0) {
        if (!x->upstream_failed) {
            x->upstream_failed = true;
            x->upstream_error = reply.error;
            call->upstream_error = reply.error;
        }
        reply.length = 0;
        rc = wp_send(x->w->fd, WP_READ_REPLY, &reply, sizeof(reply), NULL, 0, send_by);
    } else {
        reply.error.code = H5CD_OK;
        rc = wp_send(x->w->fd, WP_READ_REPLY, &reply, sizeof(reply), buf, (size_t)rq.length,
                     send_by);
    }
    x->since_ms = wp_now_ms();
    return rc < 0 ? -1 : 0; /* gone while we read for it: the caller learns how it ended */
}

/* Codes a worker may report as they are; anything else becomes damaged_file. */
static bool trusted_code(uint32_t code)
{
    switch (code) {
    case H5CD_E_BAD_REQUEST:
    case H5CD_E_NOT_FOUND:
    case H5CD_E_TOO_LARGE:
    case H5CD_E_UNSUPPORTED:
    case H5CD_E_DAMAGED_FILE:
    case H5CD_E_FILTER_UNAVAILABLE:
        return true;
    default:
        return false;
    }
}

void workerpool_worker_error(const struct workerpool_call *call, enum h5cd_errcode code,
                             const char *message, struct h5cd_error *out)
{
    if (call->upstream_error.code != H5CD_OK)
        *out = call->upstream_error;
    else if (trusted_code(code))
        h5cd_fail(out, code, "%s", message);
    else
        h5cd_fail(out, H5CD_E_DAMAGED_FILE, "libhdf5 failed on the file: %s", message);
}

/* Reads the RESULT's data into call->data (reserving budget if asked).  0 or -1. */
static int receive_data(struct exchange *x, uint64_t len, struct h5cd_error *err)
{
    struct workerpool_call *call = x->call;
    size_t extra = call->budgeted ? sizeof(struct held) : 0;
    /* Small results are counted but never waited for: a thread waiting here holds a
     * worker and maybe batch bytes of its own. */
    unsigned wait_ms = len <= SMALL_RESULT_BYTES ? 0 : BUDGET_WAIT_MS;
    x->own_ms += wp_now_ms() - x->since_ms; /* waiting for the budget is not the worker's time */
    int reserved = call->budgeted ? remote_reserve(x->pool->remote, len, wait_ms) : 0;
    x->since_ms = wp_now_ms();
    if (reserved < 0) {
        if (wp_skip(x->w->fd, len, deadline_of(x)) < 0) {
            snprintf(call->reason, sizeof(call->reason), "stalled sending its result");
            return -2;
        }
        return h5cd_fail(err, H5CD_E_UNAVAILABLE,
                         "the daemon's memory budget for decoded values stayed full: try again");
    }
    uint8_t *block = malloc(extra + (len > 0 ? (size_t)len : 1));
    if (block == NULL || wp_read_full(x->w->fd, block + extra, (size_t)len, deadline_of(x)) < 0) {
        bool oom = block == NULL;
        free(block);
        if (call->budgeted)
            remote_unreserve(x->pool->remote, len);
        if (oom) {
            h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
            return wp_skip(x->w->fd, len, deadline_of(x)) < 0 ? -2 : -1;
        }
        snprintf(call->reason, sizeof(call->reason), "stalled sending its result");
        return -2;
    }
    if (call->budgeted) {
        struct held *h = (struct held *)block;
        h->remote = x->pool->remote;
        h->len = len;
    }
    call->data = block + extra;
    call->len = (size_t)len;
    return 0;
}

/* Handles the RESULT frame.  0 success, -1 answered with an error, -2 worker misbehaved. */
static int take_result(struct exchange *x, const struct wp_header *hdr, struct h5cd_error *err)
{
    struct workerpool_call *call = x->call;
    struct wp_result res;
    if (hdr->length < sizeof(res) ||
        wp_read_full(x->w->fd, &res, sizeof(res), deadline_of(x)) < 0 ||
        res.data_len != hdr->length - sizeof(res)) {
        snprintf(call->reason, sizeof(call->reason), "sent a malformed result");
        return -2;
    }
    res.error.message[sizeof(res.error.message) - 1] = '\0';
    if (res.error.code != H5CD_OK) {
        if (res.data_len != 0) {
            snprintf(call->reason, sizeof(call->reason), "sent data with an error");
            return -2;
        }
        workerpool_worker_error(call, res.error.code, res.error.message, err);
        return -1;
    }
    if (res.data_len > call->max_result) {
        /* Checked before anything is allocated: the worker's word is not trusted. */
        snprintf(call->reason, sizeof(call->reason), "sent a result larger than allowed");
        return -2;
    }
    call->format = res.format;
    call->elem_size = res.elem_size;
    return receive_data(x, res.data_len, err);
}

/* Runs the exchange on a taken worker.  0, -1 (answered, err set), -2 (worker lost
 * during the operation) or -3 (worker gone before the operation was sent). */
static int exchange(struct exchange *x, struct h5cd_error *err)
{
    struct workerpool_call *call = x->call;
    size_t rank = call->op->ds.grid.rank > 0 ? (size_t)call->op->ds.grid.rank : 0;
    size_t coords_len = (size_t)call->op->ncoords * rank * sizeof(uint64_t);
    /* Coordinates or paths follow the operation, never both. */
    const void *extra = call->op->paths_len > 0 ? (const void *)call->paths : call->coords;
    size_t extra_len = call->op->paths_len > 0 ? call->op->paths_len : coords_len;
    if (wp_send(x->w->fd, WP_OP, call->op, sizeof(*call->op), extra, extra_len,
                wp_now_ms() + x->pool->cfg.timeout_ms) < 0)
        return -3; /* gone before it saw the operation: not the file's doing */
    x->since_ms = wp_now_ms();
    for (;;) {
        struct wp_header hdr;
        if (wp_recv_header(x->w->fd, &hdr, deadline_of(x)) < 0) {
            if (errno == ETIMEDOUT) {
                call->fate = WORKERPOOL_TIMED_OUT;
                snprintf(call->reason, sizeof(call->reason),
                         "ran for more than %u ms and was killed", x->pool->cfg.timeout_ms);
            } else if (errno == EPROTO) {
                snprintf(call->reason, sizeof(call->reason), "sent a malformed frame");
            }
            return -2;
        }
        if (hdr.type == WP_READ) {
            if (serve_read(x, &hdr) < 0)
                return -2;
            continue;
        }
        if (hdr.type == WP_RESULT)
            return take_result(x, &hdr, err);
        snprintf(call->reason, sizeof(call->reason), "sent an unexpected frame");
        return -2;
    }
}

int workerpool_run(struct workerpool *pool, struct workerpool_call *call, struct h5cd_error *err)
{
    call->data = NULL;
    call->len = 0;
    call->fate = WORKERPOOL_NOT_RUN;
    call->reason[0] = '\0';
    call->upstream_error = (struct h5cd_error){0};
    if (call->op->paths_len > 0 && call->op->ncoords > 0)
        return h5cd_fail(err, H5CD_E_INTERNAL, "an operation with both coordinates and paths");
    struct wp_op *op = call->op;
    op->file_id = call->file->file_id;
    op->file_size = call->file->size;
    snprintf(op->identity, sizeof(op->identity), "%s", call->file->identity);
    struct worker *w = take_worker(pool, err);
    if (w == NULL)
        return -1;
    STATS_INC(pool->stats, worker_requests);
    struct exchange x = {.pool = pool, .w = w, .call = call};
    call->fate = WORKERPOOL_ANSWERED;
    uint64_t began_ms = wp_now_ms();
    int rc = exchange(&x, err);
    if (rc == -3) {
        stop_worker(w, true, NULL, 0);
        rc = start_worker(pool, w) == 0 ? exchange(&x, err) : -3;
        if (rc == -3) {
            stop_worker(w, true, NULL, 0);
            give_back(pool, w);
            call->fate = WORKERPOOL_NOT_RUN;
            return h5cd_fail(err, H5CD_E_UNAVAILABLE, "cannot start an HDF5 worker process");
        }
    }
    if (rc == -2) {
        bool timed_out = call->fate == WORKERPOOL_TIMED_OUT;
        if (timed_out || call->reason[0] != '\0') {
            /* Overran or broke the protocol: it is killed whatever it is doing. */
            if (!timed_out)
                call->fate = WORKERPOOL_MISBEHAVED;
            stop_worker(w, true, NULL, 0);
        } else {
            /* The socket closed under us: how the process ended is the story. */
            call->fate = WORKERPOOL_CRASHED;
            stop_worker(w, false, call->reason, sizeof(call->reason));
            if (call->reason[0] == '\0')
                snprintf(call->reason, sizeof(call->reason), "died");
        }
        if (timed_out)
            STATS_INC(pool->stats, worker_timeouts);
        else
            STATS_INC(pool->stats, worker_crashes);
        log_warn("msg=\"HDF5 worker failed: replaced\" url=\"%s\" reason=\"%s\"", call->file->url,
                 call->reason);
        if (x.upstream_failed) {
            /* Our reads failed upstream first: that, not the file, is the story. */
            *err = x.upstream_error;
            call->fate = WORKERPOOL_NOT_RUN;
        } else {
            h5cd_fail(err, H5CD_E_DAMAGED_FILE, "the HDF5 worker %s", call->reason);
        }
        rc = -1;
    }
    /* Where an operation's time went: the worker's own (libhdf5), the rest its READs. */
    log_debug("msg=\"worker operation\" opcode=%u rc=%d ms=%llu own_ms=%llu reads=%llu "
              "read_bytes=%llu",
              op->opcode, rc, (unsigned long long)(wp_now_ms() - began_ms),
              (unsigned long long)x.own_ms, (unsigned long long)x.reads,
              (unsigned long long)x.read_bytes);
    give_back(pool, w);
    return rc;
}

void workerpool_free_values(void *data)
{
    if (data == NULL)
        return;
    struct held *h = (struct held *)((uint8_t *)data - sizeof(struct held));
    remote_unreserve(h->remote, h->len);
    free(h);
}
