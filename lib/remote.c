/*
 * remote.c - reads of remote files through the block cache, with
 * single-flight fetching of missing blocks.
 *
 * Owns the in-flight table: one entry per span of bytes of one block of a
 * file version being fetched, found by the cache's file id and the block
 * index; the entries of one block never overlap.  Batches fetch the exact
 * bytes they want (plus bridged gaps), so an entry is usually a part of a
 * block; reads of whole blocks (remote_read) want every byte of theirs.
 * The reader that creates an entry owns it: it submits the fetch and,
 * once the answer is in, hands it to the cache writer (lib/storeq, one
 * thread), which writes it to the cache (one span per block, see
 * blockcache.h) and only then removes the entry, so a reader that finds
 * neither the bytes in the cache nor an entry holding them knows nobody
 * has them.  Other readers join the entries holding their bytes and wait.
 * Meanwhile the reader serves the answer: a range that lies whole in one
 * answer is handed out where it lies (no copy), others are copied; a
 * batch is freed only after the writer has cached its answers.  Fetch
 * callbacks (on the fetch loop thread) only attach bytes to entries and
 * broadcast; they never touch the disk.
 *
 * Called from client threads; never from the fetch loop thread.
 */
#include "remote.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coalesce.h"
#include "log.h"
#include "parents.h"
#include "planner.h"
#include "storeq.h"
#include "urlforms.h"

#define INFLIGHT_BUCKETS        4096
#define DEFAULT_WAIT_TIMEOUT_MS (10u * 60u * 1000u)

/* The body of one upstream response, shared by the entries it fills. */
struct fetchbuf {
    _Atomic unsigned refs;
    uint64_t offset; /* the file offset of data[0] */
    uint8_t *data;
    size_t start; /* data[start .. len) are the file's bytes (a cached span may start late) */
    size_t len;
};

enum entry_state { ENTRY_PENDING, ENTRY_DONE, ENTRY_FAILED };

struct entry {
    struct entry *next; /* bucket chain */
    int64_t file_id;
    uint64_t index;
    size_t lo, hi;     /* the bytes [lo, hi) of the block it fetches */
    unsigned refs;     /* readers holding it (owner included); guarded by remote->lock */
    const void *owner; /* the batch that created it (joins by it are not counted) */
    bool in_table;     /* still findable by joiners */
    bool abandoned;    /* the owner gave up waiting: the callback removes it */
    bool planned;      /* part of an upstream request: unlisted once the request is cached */
    enum entry_state state;
    struct fetchbuf *buf; /* ENTRY_DONE: bytes [lo, hi) are buf->data[buf_off .. buf_off+len) */
    size_t buf_off;
    size_t len;
    struct h5cd_error error; /* ENTRY_FAILED */
};

/* An open of a file whose validator must be learnt from upstream. */
struct probe {
    struct probe *next;
    char identity[H5CD_MAX_URL_BYTES + 1];
    unsigned refs;
    bool done;
    int result;
    struct remote_file file;
    struct h5cd_error error;
};

struct remote {
    struct remote_config cfg;
    struct blockcache *cache;
    struct fetch_engine *fetch;
    const struct urlpolicy *policy;
    struct h5cd_stats *stats;
    struct resolve *resolve; /* NULL: URLs are fetched as given */
    uint32_t block_size;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* broadcast whenever an entry or probe completes */
    struct entry *buckets[INFLIGHT_BUCKETS];
    _Atomic size_t listed; /* entries in the table (read without the lock: held_in_memory) */
    struct probe *probes;
    struct storeq *writer;           /* writes answers to the cache off the readers' threads */
    _Atomic uint64_t admitted_bytes; /* range bytes admitted by every batch together */
};

/* One submitted upstream request and the owned entries it will fill (sorted by offset,
 * covering the request's bytes), each held by it until the request ends. */
struct fetchctx {
    struct remote *remote;
    uint64_t offset;
    int64_t file_id;      /* the cache's id of the version its entries belong to */
    uint64_t file_size;   /* of the version opened: an answer about another size is a change */
    struct fetchbuf *buf; /* where the body lands; entries finish into it as their bytes do */
    size_t next_entry;    /* entries before this one are finished (loop thread) */
    size_t nentries;
    struct entry *entries[];
};

static void fetchbuf_release(struct fetchbuf *buf)
{
    if (buf != NULL && atomic_fetch_sub(&buf->refs, 1) == 1) {
        free(buf->data);
        free(buf);
    }
}

static size_t bucket_of(int64_t file_id, uint64_t index)
{
    uint64_t h = (uint64_t)file_id * 0x9E3779B97F4A7C15ULL ^ index * 0xC2B2AE3D27D4EB4FULL;
    return (size_t)((h ^ (h >> 29)) % INFLIGHT_BUCKETS);
}

/*
 * The listed entry of block `index` that holds byte `pos` of the block, or
 * NULL; then *next is where the first entry after pos begins (SIZE_MAX: no
 * entry after pos).  Caller holds remote->lock.
 */
static struct entry *table_at(struct remote *r, int64_t file_id, uint64_t index, size_t pos,
                              size_t *next)
{
    *next = SIZE_MAX;
    for (struct entry *e = r->buckets[bucket_of(file_id, index)]; e != NULL; e = e->next) {
        if (e->file_id != file_id || e->index != index)
            continue;
        if (e->lo <= pos && pos < e->hi)
            return e;
        if (e->lo > pos && e->lo < *next)
            *next = e->lo;
    }
    return NULL;
}

/* Lists a new entry owned by `owner`.  Caller holds remote->lock. */
static struct entry *table_add(struct remote *r, const void *owner, int64_t file_id, uint64_t index,
                               size_t lo, size_t hi)
{
    struct entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    *e = (struct entry){.file_id = file_id,
                        .index = index,
                        .lo = lo,
                        .hi = hi,
                        .owner = owner,
                        .refs = 1,
                        .in_table = true,
                        .state = ENTRY_PENDING};
    size_t bucket = bucket_of(file_id, index);
    e->next = r->buckets[bucket];
    r->buckets[bucket] = e;
    atomic_fetch_add_explicit(&r->listed, 1, memory_order_relaxed);
    return e;
}

/* Caller holds remote->lock. */
static void table_remove(struct remote *r, struct entry *entry)
{
    if (!entry->in_table)
        return;
    struct entry **link = &r->buckets[bucket_of(entry->file_id, entry->index)];
    while (*link != entry)
        link = &(*link)->next;
    *link = entry->next;
    entry->in_table = false;
    atomic_fetch_sub_explicit(&r->listed, 1, memory_order_relaxed);
}

/* Caller holds remote->lock. */
static void entry_release_locked(struct entry *entry)
{
    if (--entry->refs > 0 || entry->in_table)
        return;
    fetchbuf_release(entry->buf);
    free(entry);
}

static int errcode_for_fetch(const struct fetch_result *res)
{
    switch (res->status) {
    case FETCH_OK:
        return H5CD_OK;
    case FETCH_ERR_TIMEOUT:
        return H5CD_E_UPSTREAM_TIMEOUT;
    case FETCH_ERR_NOT_FOUND:
        return H5CD_E_NOT_FOUND;
    case FETCH_ERR_DENIED:
        /* Upstream refused this URL (its signature, its token); a refusal by our policy is ours. */
        return res->policy_refused ? H5CD_E_URL_NOT_ALLOWED : H5CD_E_UPSTREAM_DENIED;
    case FETCH_ERR_RANGE:
        return H5CD_E_RANGE_NOT_SATISFIABLE;
    case FETCH_ERR_CHANGED:
        return H5CD_E_UPSTREAM_CHANGED;
    case FETCH_ERR_CANCELLED:
        return H5CD_E_UNAVAILABLE;
    case FETCH_ERR_UPSTREAM:
        break;
    }
    return H5CD_E_UPSTREAM_ERROR;
}

static void set_fetch_error(struct h5cd_error *err, const struct fetch_result *res)
{
    h5cd_fail(err, errcode_for_fetch(res), "%s",
              res->error[0] != '\0' ? res->error : "upstream fetch failed");
}

static struct timespec deadline_after_ms(unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

int remote_new(const struct remote_config *cfg, struct blockcache *cache,
               struct fetch_engine *fetch, const struct urlpolicy *policy, struct h5cd_stats *stats,
               struct remote **out)
{
    struct remote *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->cfg = *cfg;
    if (r->cfg.wait_timeout_ms == 0)
        r->cfg.wait_timeout_ms = DEFAULT_WAIT_TIMEOUT_MS;
    if (r->cfg.max_fetches_per_batch == 0)
        r->cfg.max_fetches_per_batch = 8;
    if (r->cfg.total_budget == 0)
        r->cfg.total_budget = 64ULL * 1024 * 1024;
    atomic_init(&r->admitted_bytes, 0);
    atomic_init(&r->listed, 0);
    r->cache = cache;
    r->fetch = fetch;
    r->policy = policy;
    r->stats = stats;
    r->block_size = blockcache_block_size(cache);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&r->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0 || pthread_mutex_init(&r->lock, NULL) != 0) {
        if (rc == 0)
            pthread_cond_destroy(&r->cond);
        free(r);
        return -ENOMEM;
    }
    if (storeq_new(&r->writer) < 0) {
        pthread_mutex_destroy(&r->lock);
        pthread_cond_destroy(&r->cond);
        free(r);
        return -ENOMEM;
    }
    *out = r;
    return 0;
}

void remote_free(struct remote *r)
{
    if (r == NULL)
        return;
    storeq_free(r->writer); /* every batch waited for its writes: this only stops the thread */
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
}

/* ---- synchronous fetch, used to probe a file ---- */

struct sync_fetch {
    struct remote *remote;
    struct fetch_result *result;
    bool done;
};

static void sync_fetch_done(struct fetch_result *res, void *arg)
{
    struct sync_fetch *sf = arg;
    pthread_mutex_lock(&sf->remote->lock);
    sf->result = res;
    sf->done = true;
    pthread_cond_broadcast(&sf->remote->cond);
    pthread_mutex_unlock(&sf->remote->lock);
}

/* Returns the result (caller frees) or NULL with err set. */
static struct fetch_result *fetch_sync(struct remote *r, const char *url, uint64_t offset,
                                       uint64_t length, bool fresh, struct h5cd_error *err)
{
    struct sync_fetch *sf = calloc(1, sizeof(*sf));
    if (sf == NULL) {
        h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
        return NULL;
    }
    sf->remote = r;
    int rc = (fresh ? fetch_submit_fresh : fetch_submit)(r->fetch, url, offset, length, "",
                                                         sync_fetch_done, sf);
    if (rc < 0) {
        free(sf);
        h5cd_fail(err, rc == -ESHUTDOWN ? H5CD_E_UNAVAILABLE : H5CD_E_INTERNAL,
                  "cannot start upstream request: %s", strerror(-rc));
        return NULL;
    }
    struct timespec deadline = deadline_after_ms(r->cfg.wait_timeout_ms);
    pthread_mutex_lock(&r->lock);
    while (!sf->done)
        if (pthread_cond_timedwait(&r->cond, &r->lock, &deadline) == ETIMEDOUT)
            break;
    struct fetch_result *res = sf->result;
    bool done = sf->done;
    pthread_mutex_unlock(&r->lock);
    if (!done) {
        /* The callback still owns sf; leaking it is safer than a use after free. */
        log_error("msg=\"upstream request never completed\" url_len=%zu", strlen(url));
        h5cd_fail(err, H5CD_E_UPSTREAM_TIMEOUT, "upstream request did not complete in time");
        return NULL;
    }
    free(sf);
    return res;
}

/* ---- opening a file ---- */

/* Fetches the first block to learn size and validator, records both, and caches the block. */
/* Caches every whole block of a probe's body. */
/* Caches the first `bytes` bytes of one upstream answer (one span per block they touch),
 * the body of the response that starts at file offset `offset`.  No lock held. */
static void store_body(struct remote *r, int64_t file_id, uint64_t offset,
                       const struct fetchbuf *body, size_t bytes)
{
    uint64_t end = offset + bytes;
    for (uint64_t pos = offset; pos < end;) {
        uint64_t index = pos / r->block_size;
        uint64_t bstart = index * r->block_size;
        uint64_t stop = bstart + r->block_size < end ? bstart + r->block_size : end;
        size_t len = (size_t)(stop - pos);
        if (blockcache_put_span(r->cache, file_id, index, (size_t)(pos - bstart),
                                body->data + (pos - offset), len) < 0) {
            STATS_INC(r->stats, cache_write_errors);
            STATS_ADD(r->stats, passthrough_bytes, len);
        }
        pos = stop;
    }
}

/* The caching of one settled plan: its answer is written, then its entries are unlisted.
 * It holds its own references, so it outlives the batch that made it. */
struct store_job {
    struct remote *remote;
    int64_t file_id;
    uint64_t offset;
    struct fetchbuf *body; /* NULL: nothing to write (the request failed) */
    size_t len;            /* its first len bytes: those of its finished entries */
    size_t nentries;
    struct entry *entries[];
};

static void run_store_job(void *arg)
{
    struct store_job *job = arg;
    struct remote *r = job->remote;
    if (job->body != NULL)
        store_body(r, job->file_id, job->offset, job->body, job->len);
    fetchbuf_release(job->body);
    pthread_mutex_lock(&r->lock);
    for (size_t k = 0; k < job->nentries; k++) {
        table_remove(r, job->entries[k]);
        entry_release_locked(job->entries[k]);
    }
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    free(job);
}

/*
 * Caches the whole blocks a probe brought.  They are listed as finished
 * entries and handed to the cache writer (which caches them, then unlists
 * the entries), so the open does not wait for the disk: openers and
 * workers read them from the entries meanwhile.  A block some batch has an
 * entry for is only written.  Takes res->data.
 */
static void store_probe_blocks(struct remote *r, int64_t file_id, uint64_t size,
                               struct fetch_result *res)
{
    size_t nblocks = 0;
    uint64_t stored = 0;
    for (uint64_t start = 0; start < size; start += r->block_size) {
        uint64_t left = size - start;
        uint64_t len = left < r->block_size ? left : r->block_size;
        if (start + len > res->data_len)
            break;
        nblocks++;
        stored = start + len;
    }
    struct fetchbuf *buf = nblocks > 0 ? malloc(sizeof(*buf)) : NULL;
    struct store_job *job =
        nblocks > 0 ? malloc(sizeof(*job) + nblocks * sizeof(job->entries[0])) : NULL;
    if (buf == NULL || job == NULL) {
        free(buf);
        free(job);
        /* No memory to hand them over: write them here and now, as the writer would. */
        struct fetchbuf here = {.data = res->data, .len = (size_t)stored};
        if (stored > 0)
            store_body(r, file_id, 0, &here, here.len);
        return;
    }
    *buf = (struct fetchbuf){.offset = 0, .data = res->data, .start = 0, .len = (size_t)stored};
    atomic_init(&buf->refs, 1); /* the job's */
    res->data = NULL;
    *job = (struct store_job){
        .remote = r, .file_id = file_id, .offset = 0, .body = buf, .len = (size_t)stored};
    pthread_mutex_lock(&r->lock);
    for (size_t index = 0; index < nblocks; index++) {
        uint64_t bstart = (uint64_t)index * r->block_size;
        size_t len = stored - bstart < r->block_size ? (size_t)(stored - bstart) : r->block_size;
        size_t next = SIZE_MAX;
        if (table_at(r, file_id, index, 0, &next) != NULL || next != SIZE_MAX)
            continue;
        struct entry *e = table_add(r, NULL, file_id, index, 0, len);
        if (e == NULL)
            continue;
        atomic_fetch_add(&buf->refs, 1);
        e->buf = buf;
        e->buf_off = (size_t)bstart;
        e->len = len;
        e->state = ENTRY_DONE;
        job->entries[job->nentries++] = e; /* the entry's one reference is now the job's */
    }
    pthread_mutex_unlock(&r->lock);
    storeq_push(r->writer, run_store_job, job);
}

static int probe_upstream(struct remote *r, const char *url, const char *identity,
                          uint64_t probe_bytes, bool remember_redirect, bool revalidating,
                          struct remote_file *file, bool *new_version, struct h5cd_error *err)
{
    uint64_t want = probe_bytes < r->block_size ? r->block_size : probe_bytes;
    want = (want + r->block_size - 1) / r->block_size * r->block_size;
    if (want > H5CD_MAX_FETCH_BYTES)
        want = H5CD_MAX_FETCH_BYTES / r->block_size * r->block_size;
    /* Through site caches, one request stays in one slice (the rest is read by batches). */
    if (r->cfg.parent_slice > 0 && want > r->cfg.parent_slice)
        want = r->cfg.parent_slice;
    /* A revalidation must reach the origin: a site cache's copy may be older. */
    struct fetch_result *res = fetch_sync(r, url, 0, want, revalidating, err);
    if (res == NULL)
        return -1;
    uint64_t size;
    if (res->status == FETCH_OK) {
        size = res->total_size;
        if (size == UINT64_MAX && res->data_len < want)
            size = res->data_len; /* the whole file fit in the probe */
    } else if (res->status == FETCH_ERR_RANGE && res->total_size == 0) {
        size = 0; /* an empty file answers any range with 416 */
    } else {
        set_fetch_error(err, res);
        fetch_result_free(res);
        return -1;
    }
    if (size == UINT64_MAX) {
        fetch_result_free(res);
        return h5cd_fail(err, H5CD_E_UPSTREAM_ERROR, "upstream did not report the file size");
    }
    struct blockcache_file row;
    bool changed = false;
    int rc = blockcache_file_put(r->cache, identity, res->validator, size, &row, &changed);
    if (rc < 0) {
        fetch_result_free(res);
        return h5cd_fail(err, H5CD_E_INTERNAL, "cache index error: %s", strerror(-rc));
    }
    if (changed) {
        STATS_INC(r->stats, validator_changes);
        log_info("msg=\"remote file changed, cached blocks dropped\" validator=\"%s\"",
                 res->validator);
    }
    if (res->status == FETCH_OK)
        store_probe_blocks(r, row.id, size, res); /* takes res->data */
    file->opened_bytes = res->status == FETCH_OK ? (want < size ? want : size) : 0;
    *new_version = changed || !revalidating;
    if (remember_redirect && res->final_url != NULL && strcmp(res->final_url, url) != 0) {
        resolve_note_redirect(r->resolve, identity, res->final_url);
        snprintf(file->url, sizeof(file->url), "%s", res->final_url);
    }
    file->file_id = row.id;
    file->size = size;
    snprintf(file->validator, sizeof(file->validator), "%s", row.validator);
    fetch_result_free(res);
    return 0;
}

/* Caller holds remote->lock. */
static struct probe *probe_find(struct remote *r, const char *identity)
{
    for (struct probe *p = r->probes; p != NULL; p = p->next)
        if (strcmp(p->identity, identity) == 0)
            return p;
    return NULL;
}

/* Caller holds remote->lock. */
static void probe_release_locked(struct remote *r, struct probe *probe)
{
    if (--probe->refs > 0)
        return;
    struct probe **link = &r->probes;
    while (*link != NULL && *link != probe)
        link = &(*link)->next;
    if (*link == probe)
        *link = probe->next;
    free(probe);
}

/* Learns size and validator from upstream, sharing the probe with concurrent openers. */
/* True (and *out filled) when the cache knows the file and confirmed it recently. */
static bool fresh_in_cache(struct remote *r, const char *identity, unsigned revalidate_s,
                           struct remote_file *out, bool *known)
{
    struct blockcache_file row;
    *known = false;
    if (blockcache_file_get(r->cache, identity, &row) != 0)
        return false;
    *known = true;
    int64_t age = (int64_t)time(NULL) - row.checked_at;
    if (age < 0 || age >= (int64_t)revalidate_s)
        return false;
    out->file_id = row.id;
    out->size = row.size;
    snprintf(out->validator, sizeof(out->validator), "%s", row.validator);
    return true;
}

/* ---- how an HDF5 open reads metadata (planner.h) ---- */

/* What has been measured of url's host; false (m zeroed) when nothing. */
static bool host_metrics(struct remote *r, const char *url, struct link_metrics *m)
{
    char host[LINKSTATS_HOST_BYTES];
    memset(m, 0, sizeof(*m));
    return r->cfg.links != NULL && linkstats_host_of(url, host, sizeof(host)) == 0 &&
           linkstats_get(r->cfg.links, host, m);
}

static struct planner_open_limits open_limits(struct remote *r, uint64_t default_prefix)
{
    pthread_mutex_lock(&r->lock);
    struct planner_open_limits lim = {.default_prefix = default_prefix,
                                      .min_bytes = r->block_size,
                                      .max_bytes = r->cfg.coalesce_max,
                                      .whole_rtts = r->cfg.whole_file_rtts,
                                      .whole_max = r->cfg.whole_file_max};
    pthread_mutex_unlock(&r->lock);
    return lim;
}

/* The first request of an HDF5 open of url: one round trip's worth of its host. */
static uint64_t open_prefix(struct remote *r, const char *url, uint64_t default_prefix)
{
    struct link_metrics m;
    host_metrics(r, url, &m);
    struct planner_open_limits lim = open_limits(r, default_prefix);
    uint64_t prefix = planner_open_prefix(&m, &lim);
    log_debug("msg=\"HDF5 open\" prefix=%llu measured=%d", (unsigned long long)prefix,
              planner_bdp(&m) > 0);
    return prefix;
}

/*
 * After the probe of a never-seen file: when the whole file crosses the link
 * in a few round trips (measured by the probe itself on a new host), its
 * rest is fetched now, as one batch whose blocks the planner cuts into
 * parallel requests, rather than as the metadata misses of the reads to
 * come, one round trip after another.  The batch's ranges count against the
 * memory budget like any batch's.  A failed piece is not the open's
 * failure (the read that needs it fetches it again), a changed file is.
 */
static uint64_t free_detached(struct remote_batch *b, uint64_t wait_above);

static int open_whole_file(struct remote *r, struct remote_file *file, struct h5cd_error *err)
{
    struct link_metrics m;
    host_metrics(r, file->url, &m);
    struct planner_open_limits lim = open_limits(r, 0);
    uint64_t from = file->opened_bytes;
    if (from >= file->size || !planner_whole_file(&m, &lim, file->size))
        return 0;
    /* Only what one round of parallel requests brings: with small requests (coalesce_max)
     * the rest would take round after round, the cost this is meant to save. */
    if ((file->size - from) / r->cfg.max_fetches_per_batch > r->cfg.coalesce_max)
        return 0;
    uint64_t piece = r->cfg.coalesce_max;
    struct remote_batch *b = NULL;
    if (remote_batch_new(r, file, file->size - from, &b) < 0)
        return 0;
    /* Nobody reads these bytes from the disk soon: the in-flight entries hold them until the
     * writer has cached them, so the open frees its batch without waiting for the writes. */
    for (uint64_t at = from; at < file->size; at += piece) {
        uint64_t len = file->size - at < piece ? file->size - at : piece;
        if (remote_batch_add(b, at, len, NULL, NULL) < 0) {
            (void)free_detached(b, UINT64_MAX);
            return 0;
        }
    }
    struct remote_batch_result res;
    uint64_t fetched = from;
    bool whole = true;
    int rc;
    while ((rc = remote_batch_next(b, &res)) == 1) {
        if (res.data == NULL && res.error.code == H5CD_E_UPSTREAM_CHANGED) {
            if (err != NULL)
                *err = res.error;
            (void)free_detached(b, UINT64_MAX);
            return -1;
        }
        if (res.data == NULL)
            whole = false;
        else
            fetched += res.length;
    }
    (void)free_detached(b, UINT64_MAX);
    if (rc == 0 && whole) {
        file->opened_bytes = file->size;
        STATS_INC(r->stats, whole_file_opens);
    }
    log_debug("msg=\"file fetched whole at open\" bytes=%llu fetched=%llu complete=%d",
              (unsigned long long)file->size, (unsigned long long)fetched, rc == 0 && whole);
    return 0;
}

void remote_set_whole_file(struct remote *r, unsigned rtts, uint64_t max_bytes)
{
    pthread_mutex_lock(&r->lock);
    r->cfg.whole_file_rtts = rtts;
    r->cfg.whole_file_max = max_bytes;
    pthread_mutex_unlock(&r->lock);
}

void remote_meta_plan(struct remote *r, const struct remote_file *file, uint64_t default_prefix,
                      uint64_t *prefix, uint64_t *window_first, uint64_t *window_most,
                      uint64_t *window_align)
{
    if (default_prefix == 0) {
        /* h5_prefix_bytes 0: libhdf5's reads are read as asked, no prefix, no windows. */
        *prefix = *window_first = *window_most = *window_align = 0;
        return;
    }
    *window_align = r->block_size;
    struct link_metrics m;
    host_metrics(r, file->url, &m);
    struct planner_open_limits lim = open_limits(r, default_prefix);
    planner_meta_window(&m, &lim, window_first, window_most);
    /* Whole blocks: a window's ends would otherwise fetch blocks it does not keep. */
    *window_first = *window_first / r->block_size * r->block_size;
    *window_most = *window_most / r->block_size * r->block_size;
    /* Reopened later (another worker, a closed handle): the blocks may be cached, but a
     * prefix larger than the configured one could fetch more than any open did. */
    uint64_t p = file->opened_bytes;
    if (p == 0) {
        p = planner_open_prefix(&m, &lim);
        p = p < default_prefix ? p : default_prefix;
    }
    p = p < file->size ? p : file->size;
    *prefix = p < REMOTE_MAX_DRIVER_PREFIX ? p : REMOTE_MAX_DRIVER_PREFIX;
}

/*
 * Learns size and validator, sharing one probe between concurrent openers.
 * A probe stays listed until its blocks are cached, and the cache row is
 * checked under the same lock, so an opener either joins the probe or finds
 * the row with its blocks: the file's first bytes are fetched once.
 */
static int open_shared(struct remote *r, const char *url, const char *identity,
                       uint64_t probe_bytes, unsigned revalidate_s, bool mark_public,
                       struct remote_file *out, bool *probed, struct h5cd_error *err)
{
    *probed = false; /* true only when this caller's own URL was just accepted upstream */
    pthread_mutex_lock(&r->lock);
    struct probe *probe = probe_find(r, identity);
    if (probe != NULL) {
        probe->refs++;
        STATS_INC(r->stats, inflight_joins);
        struct timespec deadline = deadline_after_ms(r->cfg.wait_timeout_ms);
        while (!probe->done)
            if (pthread_cond_timedwait(&r->cond, &r->lock, &deadline) == ETIMEDOUT)
                break;
        int rc = probe->done ? probe->result : -1;
        if (!probe->done)
            h5cd_fail(err, H5CD_E_UPSTREAM_TIMEOUT, "timed out waiting for the file to open");
        else if (rc == 0)
            *out = probe->file;
        else if (err != NULL)
            *err = probe->error;
        probe_release_locked(r, probe);
        pthread_mutex_unlock(&r->lock);
        return rc;
    }
    bool known;
    if (fresh_in_cache(r, identity, revalidate_s, out, &known)) {
        pthread_mutex_unlock(&r->lock);
        return 0;
    }
    probe = calloc(1, sizeof(*probe));
    if (probe == NULL) {
        pthread_mutex_unlock(&r->lock);
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    }
    snprintf(probe->identity, sizeof(probe->identity), "%s", identity);
    probe->refs = 1;
    probe->next = r->probes;
    r->probes = probe;
    pthread_mutex_unlock(&r->lock);

    probe->file = *out;
    bool new_version = false;
    uint64_t prefix = probe_bytes > 0 ? open_prefix(r, url, probe_bytes) : 0;
    int rc = probe_upstream(r, url, identity, prefix, mark_public, known, &probe->file,
                            &new_version, &probe->error);
    *probed = rc == 0;
    /* Marked before the probe is unlisted: whoever joined it or comes after it finds the
     * mark, so concurrent openers of a public file ask upstream nothing more. */
    if (rc == 0 && mark_public)
        blockcache_public_set(r->cache, identity,
                              (int64_t)time(NULL) + (int64_t)resolve_access_ttl(r->resolve));
    /* Still listed: openers that join wait for the whole file, and find it cached. */
    if (rc == 0 && probe_bytes > 0 && new_version)
        rc = open_whole_file(r, &probe->file, &probe->error);

    pthread_mutex_lock(&r->lock);
    probe->result = rc;
    probe->done = true;
    if (rc == 0)
        *out = probe->file;
    else if (err != NULL)
        *err = probe->error;
    /* Later openers find the cache row; only current waiters need the probe. */
    struct probe **link = &r->probes;
    while (*link != probe)
        link = &(*link)->next;
    *link = probe->next;
    probe->next = NULL;
    probe->refs--;
    bool last = probe->refs == 0;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    if (last)
        free(probe);
    return rc;
}

void remote_reconfigure(struct remote *r, const struct urlpolicy *policy, unsigned revalidate_s)
{
    pthread_mutex_lock(&r->lock);
    r->policy = policy;
    r->cfg.revalidate_s = revalidate_s;
    pthread_mutex_unlock(&r->lock);
}

void remote_set_resolver(struct remote *r, struct resolve *resolve)
{
    r->resolve = resolve;
}

/*
 * A public URL that redirected when last probed: opens (and reads) where it
 * led, without the hops.  A failure there forgets that target and the caller
 * opens the URL itself.  0 when opened this way, -1 otherwise.
 */
static int open_public_redirect(struct remote *r, unsigned revalidate_s, bool public,
                                uint64_t probe_bytes, struct remote_file *out, bool *probed)
{
    char target[H5CD_MAX_URL_BYTES + 1];
    if (!public || !resolve_redirect_target(r->resolve, out->identity, target, sizeof(target)))
        return -1;
    struct remote_file file = *out;
    struct h5cd_error ignored;
    snprintf(file.url, sizeof(file.url), "%s", target);
    if (open_shared(r, target, file.identity, probe_bytes, revalidate_s, true, &file, probed,
                    &ignored) < 0) {
        resolve_forget_redirect(r->resolve, out->identity);
        return -1;
    }
    *out = file;
    STATS_INC(r->stats, redirects_skipped);
    return 0;
}

/* Opens the URL a name resolved to; the gate of cached bytes for credential-free URLs. */
static int open_resolved(struct remote *r, const struct urlpolicy *policy, unsigned revalidate_s,
                         const struct resolve_result *rr, uint64_t probe_bytes,
                         struct remote_file *out, struct h5cd_error *err)
{
    bool probed = false;
    if (urlpolicy_check(policy, rr->url, out->identity, sizeof(out->identity), err) < 0)
        return -1;
    snprintf(out->url, sizeof(out->url), "%s", rr->url);
    bool mark_public = r->resolve != NULL && !rr->credentialed;
    if (open_public_redirect(r, revalidate_s, mark_public, probe_bytes, out, &probed) == 0)
        ; /* went straight to where the URL redirected last time */
    else if (open_shared(r, rr->url, out->identity, probe_bytes, revalidate_s, mark_public, out,
                         &probed, err) < 0)
        return -1;
    if (!mark_public || probed)
        return 0; /* a credentialed name was checked upstream by the resolver */
    /* Bytes fetched for one credential are never served to a request without one
     * unless upstream serves this URL to anybody. */
    int64_t now = (int64_t)time(NULL), until = 0;
    int64_t ttl = (int64_t)resolve_access_ttl(r->resolve);
    if (blockcache_public_get(r->cache, out->identity, &until) == 0 && until > now &&
        until <= now + ttl)
        return 0;
    if (resolve_check_public(r->resolve, policy, rr->url, out->identity, err) < 0)
        return -1;
    blockcache_public_set(r->cache, out->identity, now + ttl);
    return 0;
}

int remote_open_as(struct remote *r, const char *name, const char *token, uint64_t probe_bytes,
                   struct remote_file *out, struct h5cd_error *err)
{
    memset(out, 0, sizeof(*out));
    /* remote_reconfigure may swap these; the lock orders the reads after it. */
    pthread_mutex_lock(&r->lock);
    const struct urlpolicy *policy = r->policy;
    unsigned revalidate_s = r->cfg.revalidate_s;
    pthread_mutex_unlock(&r->lock);
    struct resolve_result rr = {0};
    if (strlen(name) > H5CD_MAX_URL_BYTES)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "URL longer than %d bytes", H5CD_MAX_URL_BYTES);
    if (token != NULL && token[0] == '\0')
        token = NULL;
    if (r->resolve == NULL) {
        if (token != NULL)
            return h5cd_fail(err, H5CD_E_BAD_REQUEST, "this daemon does not resolve names");
        snprintf(rr.url, sizeof(rr.url), "%s", name);
        return open_resolved(r, policy, revalidate_s, &rr, probe_bytes, out, err);
    }
    if (resolve_name(r->resolve, policy, name, token, false, &rr, err) < 0)
        return -1;
    int rc = open_resolved(r, policy, revalidate_s, &rr, probe_bytes, out, err);
    if (rc < 0 && rr.remembered && err != NULL && err->code == H5CD_E_UPSTREAM_DENIED) {
        /* A remembered final URL was refused (expired, revoked): resolve once more. */
        if (resolve_name(r->resolve, policy, name, token, true, &rr, err) < 0)
            return -1;
        rc = open_resolved(r, policy, revalidate_s, &rr, probe_bytes, out, err);
    }
    if (rc < 0)
        return -1;
    snprintf(out->name, sizeof(out->name), "%s", name);
    snprintf(out->token, sizeof(out->token), "%s", token != NULL ? token : "");
    out->resolved = true;
    return 0;
}

int remote_open(struct remote *r, const char *url, uint64_t probe_bytes, struct remote_file *out,
                struct h5cd_error *err)
{
    return remote_open_as(r, url, NULL, probe_bytes, out, err);
}

/* ---- reading: batches of ranges ---- */

#define GAP_SLOT SIZE_MAX /* a slot that fills a gap between wanted blocks: no range */

/* A piece of one block that a range wants and the cache did not have when the range was
 * admitted: the bytes [lo, hi) of block `index`, all inside the entry that fetches them. */
struct slot {
    struct entry *entry;
    uint64_t index;
    size_t lo, hi;
    size_t range; /* or GAP_SLOT */
    uint64_t gen; /* the block's cache generation when the cache was looked at */
    bool owned;   /* this slot created the entry: it stores the block and unlists the entry */
    bool stale;   /* not claimed: bytes of its block were cached since the lookup */
    bool done;
};

/* An upstream request planned by a batch: submitted only while fewer than
 * max_fetches_per_batch of the batch's requests are in flight, so that a
 * batch given up (a cancelled prefetch, a client gone) leaves at most that
 * many requests running instead of its whole plan. */
struct planned_fetch {
    struct coalesce_range range;
    size_t first; /* its entries: plan_entries[first .. first + n) */
    size_t n;
    bool submitted;
    bool stored;   /* its answer went to the cache and its entries were unlisted */
    bool finished; /* every entry settled; the plan's references are released */
};

struct batch_range {
    uint64_t offset;
    uint64_t length;
    uint8_t *dst; /* its bytes: the caller's buffer, our own (own_dst), or in `view` */
    bool own_dst;
    bool cached_any;       /* some of its bytes were copied from the cache into dst */
    struct fetchbuf *view; /* the answer that holds all its bytes, which dst points into */
    void *tag;
    size_t pending; /* slots not consumed yet */
    bool failed;
    bool retried; /* admitted again after its URL was re-resolved */
    struct h5cd_error error;
};

struct remote_batch {
    struct remote *remote;
    struct remote_file file;
    uint64_t budget; /* bytes of admitted, unreturned ranges allowed at once */
    uint64_t admitted_bytes;
    struct batch_range *ranges;
    size_t nranges, rangecap;
    size_t next_admit; /* ranges before this index have been admitted */
    struct slot *slots;
    size_t nslots, slotcap;
    size_t scan_from; /* slots before this index are all consumed */
    size_t *ready;    /* ranges complete and not yet returned: a FIFO */
    size_t ready_head, ready_tail;
    size_t returned;
    size_t last;            /* the range handed out by the previous next(), or SIZE_MAX */
    bool changed;           /* upstream reported another version of the file */
    bool reresolved;        /* the name was resolved again after a refusal (once a batch) */
    bool reresolve_ok;      /* ... and gave another URL for the same file */
    bool whole_blocks;      /* fetch whole blocks, not just the bytes wanted (remote_read) */
    bool check_gen;         /* claims refuse slots whose block was cached into since lookup */
    uint8_t *scratch;       /* one block, for cache reads */
    uint64_t scratch_index; /* the block whose spans scratch holds (verified), or UINT64_MAX */
    struct blockcache_spans scratch_spans; /* they are scratch[off .. off + len) */
    struct planned_fetch *plans;           /* in submission order */
    size_t nplans, plancap, next_plan, first_open_plan;
    struct entry **plan_entries; /* each holds a reference until its plan finishes */
    size_t nplan_entries, plan_entries_cap;
    struct link_metrics link; /* the file's host as measured when the batch began */
    uint64_t last_write;      /* the writer's ticket of its last store job (0: none) */
    bool reserved;            /* its ranges were reserved by the caller (remote_batch_reserved) */
    bool holes_wanted;        /* its holes are read next: bridge each up to the gap */
};

static struct planner_limits batch_limits(const struct remote_batch *b)
{
    const struct remote_config *cfg = &b->remote->cfg;
    return (struct planner_limits){.default_gap = cfg->coalesce_gap,
                                   .max_fetch = cfg->coalesce_max,
                                   .max_streams = cfg->max_fetches_per_batch};
}

/* The largest request for this batch, in whole blocks (at least one, at most coalesce_max). */
static uint64_t batch_piece(const struct remote_batch *b, uint64_t total)
{
    struct planner_limits lim = batch_limits(b);
    uint64_t block = b->remote->block_size;
    uint64_t piece = planner_piece(&b->link, &lim, total) / block * block;
    return piece < block ? block : piece;
}

static size_t block_length(const struct remote *r, const struct remote_file *f, uint64_t index)
{
    uint64_t start = index * r->block_size;
    uint64_t left = f->size - start;
    return left < r->block_size ? (size_t)left : r->block_size;
}

/* Copies what the range wants of the bytes [lo, hi) of block `index` (at `bytes`). */
static void copy_block_part(const struct remote *r, uint64_t index, const uint8_t *bytes, size_t lo,
                            size_t hi, const struct batch_range *range)
{
    uint64_t bstart = index * r->block_size;
    uint64_t from = range->offset > bstart + lo ? range->offset : bstart + lo;
    uint64_t rend = range->offset + range->length;
    uint64_t to = rend < bstart + hi ? rend : bstart + hi;
    if (to > from)
        memcpy(range->dst + (from - range->offset), bytes + (from - bstart - lo),
               (size_t)(to - from));
}

/*
 * Serves the bytes [lo, hi) of block `index` to a range from the cache.
 * True when the cache held them all (one span holds them: spans never
 * touch).  Otherwise what the block's spans hold of them is copied all the
 * same, and *spans tells what they are (n 0: none) and the block's cache
 * generation, so that only the rest is fetched.
 */
static bool read_cached(struct remote_batch *b, uint64_t index, size_t lo, size_t hi,
                        struct batch_range *range, struct blockcache_spans *spans)
{
    struct remote *r = b->remote;
    uint64_t bstart = index * r->block_size;
    if (range->view != NULL)
        return true; /* an answer already holds all its bytes: never copy into it */
    if (range->dst == NULL) {
        /* Looked up again after admission (relookup_stale), when admit_one had let an
         * untouched buffer go: cached bytes need somewhere to go. */
        if ((range->dst = malloc(range->length)) == NULL)
            return false;
        range->own_dst = true;
    }
    /* A hot block: copy just the part this range needs. */
    if (b->scratch_index != index &&
        blockcache_get_hot_part(r->cache, b->file.file_id, index, lo, hi - lo,
                                range->dst + (bstart + lo - range->offset)) == 0) {
        STATS_INC(r->stats, cache_hits);
        range->cached_any = true;
        return true;
    }
    /* Neighbouring small chunks share blocks: read and verify each block once. */
    if (b->scratch_index != index) {
        int rc = blockcache_get_spans(r->cache, b->file.file_id, index, b->scratch, r->block_size,
                                      &b->scratch_spans);
        if (rc == -EBADMSG)
            STATS_INC(r->stats, corrupt_blocks);
        if (rc < 0 && rc != -EBADMSG)
            b->scratch_spans.n = 0; /* a miss; the generation stays */
        b->scratch_index = index;
    }
    *spans = b->scratch_spans;
    bool hit = false;
    for (size_t i = 0; i < spans->n; i++) {
        const struct blockcache_span *sp = &spans->span[i];
        copy_block_part(r, index, b->scratch + sp->off, sp->off, sp->off + sp->len, range);
        hit |= sp->off <= lo && hi <= sp->off + sp->len;
    }
    if (spans->n > 0)
        range->cached_any = true; /* dst may hold cached bytes: it is not to be dropped */
    if (hit)
        STATS_INC(r->stats, cache_hits);
    else
        STATS_INC(r->stats, cache_misses);
    return hit;
}

/* Where entry e's bytes [lo, hi) of its block lie in the answer of ctx. */
static uint64_t entry_start(const struct fetchctx *ctx, const struct entry *e)
{
    return e->index * ctx->remote->block_size + e->lo - ctx->offset;
}

static uint64_t entry_end(const struct fetchctx *ctx, const struct entry *e)
{
    return e->index * ctx->remote->block_size + e->hi - ctx->offset;
}

/* Finishes entry e of an answer whose bytes [0, landed) are in buf.  Caller holds the lock. */
static void finish_entry_locked(struct fetchctx *ctx, struct entry *e, size_t landed)
{
    uint64_t start = entry_start(ctx, e);
    atomic_fetch_add(&ctx->buf->refs, 1);
    e->buf = ctx->buf;
    e->buf_off = (size_t)start;
    size_t left = landed - (size_t)start;
    e->len = left < e->hi - e->lo ? left : e->hi - e->lo;
    e->state = ENTRY_DONE;
}

/*
 * As the body lands (loop thread): entries whose bytes are all in are
 * finished at once, so that a reader copies or decodes a chunk while the
 * rest of the request is still on the wire.
 */
static void fetch_progress(void *arg, size_t landed, uint64_t total_size)
{
    struct fetchctx *ctx = arg;
    struct remote *r = ctx->remote;
    if (total_size != ctx->file_size || ctx->next_entry >= ctx->nentries)
        return; /* another version: fetch_done fails it */
    struct entry *e = ctx->entries[ctx->next_entry];
    if (entry_end(ctx, e) > landed)
        return;
    pthread_mutex_lock(&r->lock);
    while (ctx->next_entry < ctx->nentries) {
        e = ctx->entries[ctx->next_entry];
        if (entry_end(ctx, e) > landed)
            break;
        if (e->state == ENTRY_PENDING)
            finish_entry_locked(ctx, e, landed);
        ctx->next_entry++;
    }
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void fetch_done(struct fetch_result *res, void *arg)
{
    struct fetchctx *ctx = arg;
    struct remote *r = ctx->remote;
    if (res->status == FETCH_OK && res->total_size != UINT64_MAX &&
        res->total_size != ctx->file_size) {
        /* Same validator (or none to compare), another length: not the version opened. */
        res->status = FETCH_ERR_CHANGED;
        snprintf(res->error, sizeof(res->error),
                 "upstream file changed (its size is no longer the size it was opened with)");
    }
    /* Entries finished as their bytes landed keep them, whatever the end. */
    size_t landed = res->status == FETCH_OK ? res->data_len : 0;
    /* Abandoned stays abandoned: looked at once, the job is only made when needed. */
    pthread_mutex_lock(&r->lock);
    bool all_abandoned = ctx->nentries > 0;
    for (size_t i = 0; i < ctx->nentries; i++)
        all_abandoned &= ctx->entries[i]->abandoned;
    pthread_mutex_unlock(&r->lock);
    struct store_job *orphan =
        all_abandoned ? malloc(sizeof(*orphan) + ctx->nentries * sizeof(orphan->entries[0])) : NULL;
    if (orphan != NULL)
        *orphan = (struct store_job){
            .remote = r, .file_id = ctx->file_id, .offset = ctx->offset, .body = ctx->buf};
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < ctx->nentries; i++) {
        struct entry *e = ctx->entries[i];
        if (e->state != ENTRY_PENDING) {
            /* finished as it landed */
        } else if (res->status == FETCH_OK && entry_start(ctx, e) < landed) {
            finish_entry_locked(ctx, e, landed);
        } else {
            e->state = ENTRY_FAILED;
            if (res->status == FETCH_OK)
                h5cd_fail(&e->error, H5CD_E_UPSTREAM_ERROR, "upstream body ended early");
            else
                set_fetch_error(&e->error, res);
        }
        if (orphan != NULL && e->state == ENTRY_DONE) {
            /* Its batch is gone (its last range came before the rest of this answer):
             * the writer caches what landed and then unlists it, as for any answer. */
            e->refs++;
            orphan->entries[orphan->nentries++] = e;
            if (e->buf_off + e->len > orphan->len)
                orphan->len = e->buf_off + e->len;
        } else if (e->abandoned) {
            table_remove(r, e);
        }
        entry_release_locked(e); /* the request's reference */
    }
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    if (orphan != NULL && orphan->nentries > 0) {
        atomic_fetch_add(&ctx->buf->refs, 1); /* orphan->body's */
        storeq_push(r->writer, run_store_job, orphan);
    } else {
        free(orphan);
    }
    fetchbuf_release(ctx->buf);
    fetch_result_free(res);
    free(ctx);
}

static int slots_reserve(struct remote_batch *b, size_t more)
{
    if (b->nslots + more <= b->slotcap)
        return 0;
    size_t cap = b->slotcap ? b->slotcap : 64;
    while (cap < b->nslots + more)
        cap *= 2;
    struct slot *bigger = realloc(b->slots, cap * sizeof(*bigger));
    if (bigger == NULL)
        return -ENOMEM;
    b->slots = bigger;
    b->slotcap = cap;
    return 0;
}

static void ready_push(struct remote_batch *b, size_t range)
{
    b->ready[b->ready_tail++] = range;
}

/*
 * Gives slot i an entry: the entry holding the slot's first byte is joined,
 * or, if none does, a new one is created for the bytes up to the next
 * entry.  The rest of the slot's bytes become new slots, one per entry, at
 * the end of the array (they are claimed by the same loop).  Caller holds
 * the lock.
 */
static int claim_slot_locked(struct remote_batch *b, size_t i)
{
    struct remote *r = b->remote;
    if (slots_reserve(b, 1) < 0)
        return -ENOMEM;
    struct slot *s = &b->slots[i];
    size_t next = SIZE_MAX;
    struct entry *e = table_at(r, b->file.file_id, s->index, s->lo, &next);
    if (e != NULL) {
        e->refs++;
        if (e->owner != b)
            STATS_INC(r->stats, inflight_joins);
    } else if (b->check_gen && s->range != GAP_SLOT &&
               blockcache_generation(r->cache, b->file.file_id, s->index) != s->gen) {
        /* Nobody fetches these bytes, but some bytes of the block were cached after we
         * looked (their owner unlisted its entry since): look again before fetching. */
        s->stale = true;
        STATS_INC(r->stats, cache_relookups);
        return 0;
    } else {
        e = table_add(r, b, b->file.file_id, s->index, s->lo, next < s->hi ? next : s->hi);
        if (e == NULL)
            return -ENOMEM;
        s->owned = true;
    }
    s->entry = e;
    if (e->hi < s->hi) {
        /* The rest of the piece: another slot (room reserved above). */
        b->slots[b->nslots++] = (struct slot){
            .index = s->index, .lo = e->hi, .hi = s->hi, .range = s->range, .gen = s->gen};
        s->hi = e->hi;
        if (s->range != GAP_SLOT)
            b->ranges[s->range].pending++;
    }
    return 0;
}

/* Claims or joins entries for every slot in [from, nslots).  Caller holds the lock. */
static int claim_slots_locked(struct remote_batch *b, size_t from)
{
    for (size_t i = from; i < b->nslots; i++)
        if (b->slots[i].entry == NULL && !b->slots[i].stale && !b->slots[i].done &&
            claim_slot_locked(b, i) < 0)
            return -ENOMEM;
    return 0;
}

/* Completes an owned entry whose bytes a previous owner cached meanwhile. */
static void complete_from_cache(struct remote_batch *b, struct entry *e)
{
    struct remote *r = b->remote;
    struct fetchbuf *buf = malloc(sizeof(*buf));
    uint8_t *block = malloc(r->block_size);
    struct blockcache_spans spans = {0};
    bool held = false;
    size_t span_off = 0;
    if (buf != NULL && block != NULL) {
        int rc =
            blockcache_get_spans(r->cache, b->file.file_id, e->index, block, r->block_size, &spans);
        if (rc == -EBADMSG)
            STATS_INC(r->stats, corrupt_blocks);
        for (size_t i = 0; (rc == 0 || rc == -EBADMSG) && i < spans.n && !held; i++) {
            held = spans.span[i].off <= e->lo && e->hi <= spans.span[i].off + spans.span[i].len;
            span_off = spans.span[i].off;
        }
    }
    if (!held) {
        free(buf);
        free(block);
        return;
    }
    /* The entry's bytes are block[e->lo .. e->hi): keep the block, point into it. */
    atomic_init(&buf->refs, 1);
    buf->offset = e->index * r->block_size;
    buf->data = block;
    buf->start = span_off; /* the block's other bytes may be other spans' or none */
    buf->len = e->hi;
    pthread_mutex_lock(&r->lock);
    e->buf = buf;
    e->buf_off = e->lo;
    e->len = e->hi - e->lo;
    e->state = ENTRY_DONE;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void fail_entries(struct remote *r, struct entry **entries, size_t n, enum h5cd_errcode code,
                         const char *message)
{
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < n; i++) {
        if (entries[i]->state != ENTRY_PENDING)
            continue;
        entries[i]->state = ENTRY_FAILED;
        h5cd_fail(&entries[i]->error, code, "%s", message);
    }
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

/* Submits one upstream request that fills `owned` (sorted blocks inside `range`). */
static void submit_fetch(struct remote_batch *b, const struct coalesce_range *range,
                         struct entry **owned, size_t nowned)
{
    struct remote *r = b->remote;
    struct fetchctx *ctx = malloc(sizeof(*ctx) + nowned * sizeof(ctx->entries[0]));
    if (ctx == NULL) {
        fail_entries(r, owned, nowned, H5CD_E_INTERNAL, "out of memory");
        return;
    }
    struct fetchbuf *buf = malloc(sizeof(*buf));
    uint8_t *data = malloc((size_t)range->length);
    if (buf == NULL || data == NULL) {
        free(buf);
        free(data);
        free(ctx);
        fail_entries(r, owned, nowned, H5CD_E_INTERNAL, "out of memory");
        return;
    }
    atomic_init(&buf->refs, 1); /* the request's */
    buf->offset = range->offset;
    buf->data = data;
    buf->start = 0;
    buf->len = (size_t)range->length; /* what it holds once all has landed */
    *ctx = (struct fetchctx){.remote = r,
                             .offset = range->offset,
                             .file_id = b->file.file_id,
                             .file_size = b->file.size,
                             .buf = buf,
                             .nentries = nowned};
    memcpy(ctx->entries, owned, nowned * sizeof(owned[0]));
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < nowned; i++)
        owned[i]->refs++; /* the request's, released by fetch_done */
    pthread_mutex_unlock(&r->lock);
    int rc = fetch_submit_into(r->fetch, b->file.url, range->offset, range->length,
                               b->file.validator, data, fetch_progress, fetch_done, ctx);
    if (rc < 0) {
        pthread_mutex_lock(&r->lock);
        for (size_t i = 0; i < nowned; i++)
            entry_release_locked(owned[i]);
        pthread_mutex_unlock(&r->lock);
        fetchbuf_release(buf);
        free(ctx);
        fail_entries(r, owned, nowned, rc == -ESHUTDOWN ? H5CD_E_UNAVAILABLE : H5CD_E_INTERNAL,
                     "cannot start an upstream request");
    }
}

/* Queues an upstream request for `owned` (sorted blocks inside `range`).  Caller holds no lock. */
static int plan_fetch(struct remote_batch *b, const struct coalesce_range *range,
                      struct entry **owned, size_t nowned)
{
    if (b->nplans == b->plancap) {
        size_t cap = b->plancap ? b->plancap * 2 : 16;
        struct planned_fetch *bigger = realloc(b->plans, cap * sizeof(*bigger));
        if (bigger == NULL)
            return -ENOMEM;
        b->plans = bigger;
        b->plancap = cap;
    }
    if (b->nplan_entries + nowned > b->plan_entries_cap) {
        size_t cap = b->plan_entries_cap ? b->plan_entries_cap : 64;
        while (cap < b->nplan_entries + nowned)
            cap *= 2;
        struct entry **bigger = realloc(b->plan_entries, cap * sizeof(*bigger));
        if (bigger == NULL)
            return -ENOMEM;
        b->plan_entries = bigger;
        b->plan_entries_cap = cap;
    }
    pthread_mutex_lock(&b->remote->lock);
    for (size_t i = 0; i < nowned; i++) {
        owned[i]->refs++;
        owned[i]->planned = true;
        b->plan_entries[b->nplan_entries + i] = owned[i];
    }
    pthread_mutex_unlock(&b->remote->lock);
    b->plans[b->nplans++] =
        (struct planned_fetch){.range = *range, .first = b->nplan_entries, .n = nowned};
    b->nplan_entries += nowned;
    return 0;
}

/* Releases a plan's references.  Caller holds the lock. */
static void plan_release_locked(struct remote_batch *b, struct planned_fetch *p)
{
    for (size_t k = 0; k < p->n; k++)
        entry_release_locked(b->plan_entries[p->first + k]);
    p->finished = true;
}

/*
 * Hands the answers of submitted plans whose entries have all settled to
 * the writer, which caches them and then unlists their entries: in that
 * order, so that a reader who finds neither the bytes cached nor an entry
 * for them knows nobody has them.  The reader's thread goes on copying and
 * decoding meanwhile.
 */
static void store_settled(struct remote_batch *b)
{
    struct remote *r = b->remote;
    for (size_t i = b->first_open_plan; i < b->next_plan; i++) {
        struct planned_fetch *p = &b->plans[i];
        if (p->finished || p->stored || !p->submitted)
            continue;
        struct store_job *job = malloc(sizeof(*job) + p->n * sizeof(job->entries[0]));
        struct store_job local = {0};
        bool pending = false;
        pthread_mutex_lock(&r->lock);
        for (size_t k = 0; k < p->n && !pending; k++)
            pending = b->plan_entries[p->first + k]->state == ENTRY_PENDING;
        if (pending) {
            pthread_mutex_unlock(&r->lock);
            free(job);
            continue;
        }
        struct store_job *j = job != NULL ? job : &local;
        *j = (struct store_job){.remote = r, .file_id = b->file.file_id, .offset = p->range.offset};
        for (size_t k = 0; k < p->n; k++) {
            struct entry *e = b->plan_entries[p->first + k];
            if (e->state != ENTRY_DONE) {
                /* Failed: unlisted now, so that a reader asking again (a URL resolved
                 * again after a refusal) starts a fetch instead of joining the failure. */
                table_remove(r, e);
                continue;
            }
            if (j->body == NULL && e->buf != NULL) {
                j->body = e->buf;
                atomic_fetch_add(&j->body->refs, 1);
            }
            /* A request that failed part way holds only its finished entries' bytes. */
            if (e->buf == j->body && e->buf_off + e->len > j->len)
                j->len = e->buf_off + e->len;
            if (job != NULL) {
                e->refs++;
                job->entries[job->nentries++] = e;
            }
        }
        p->stored = true;
        if (job == NULL || job->body == NULL) {
            /* Nothing to write, or no memory for a job: done here and now. */
            pthread_mutex_unlock(&r->lock);
            if (local.body != NULL)
                store_body(r, local.file_id, local.offset, local.body, local.len);
            fetchbuf_release(local.body);
            pthread_mutex_lock(&r->lock);
            for (size_t k = 0; k < p->n; k++)
                table_remove(r, b->plan_entries[p->first + k]);
            for (size_t k = 0; job != NULL && k < job->nentries; k++)
                entry_release_locked(job->entries[k]);
            pthread_mutex_unlock(&r->lock);
            free(job);
            b->scratch_index = UINT64_MAX;
            continue;
        }
        pthread_mutex_unlock(&r->lock);
        b->scratch_index = UINT64_MAX; /* it may hold less than the cache will */
        uint64_t ticket = storeq_push(r->writer, run_store_job, job);
        if (ticket > b->last_write)
            b->last_write = ticket;
    }
}

/* Waits until the writer has cached every answer this batch handed it, so that once a
 * batch is freed its bytes are in the cache, and a thread that keeps starting batches cannot
 * queue writes faster than the disk takes them.  A /v1/chunks answer frees its batch after
 * its last byte went out: the client does not wait for the disk, its connection does. */
static void wait_for_writes(struct remote_batch *b)
{
    storeq_wait(b->remote->writer, b->last_write);
}

/* Caches settled requests, marks them finished and submits planned ones while fewer than
 * max_fetches_per_batch are in flight. */
static void pump(struct remote_batch *b)
{
    struct remote *r = b->remote;
    size_t inflight = 0;
    store_settled(b);
    pthread_mutex_lock(&r->lock);
    for (size_t i = b->first_open_plan; i < b->next_plan; i++) {
        struct planned_fetch *p = &b->plans[i];
        if (p->finished)
            continue;
        bool pending = false;
        for (size_t k = 0; k < p->n && !pending; k++)
            pending = b->plan_entries[p->first + k]->state == ENTRY_PENDING;
        if (pending)
            inflight++;
        else if (p->stored)
            plan_release_locked(b, p);
    }
    while (b->first_open_plan < b->next_plan && b->plans[b->first_open_plan].finished)
        b->first_open_plan++;
    pthread_mutex_unlock(&r->lock);
    while (b->next_plan < b->nplans && inflight < r->cfg.max_fetches_per_batch) {
        struct planned_fetch *p = &b->plans[b->next_plan++];
        p->submitted = true;
        submit_fetch(b, &p->range, &b->plan_entries[p->first], p->n);
        inflight++;
    }
}

/* Gives up on every plan: requests never submitted fail their entries (so joiners do not
 * wait for them), and every plan's references are released. */
static void drop_plans(struct remote_batch *b)
{
    struct remote *r = b->remote;
    store_settled(b); /* answers already in are worth keeping */
    pthread_mutex_lock(&r->lock);
    for (size_t i = b->first_open_plan; i < b->nplans; i++) {
        struct planned_fetch *p = &b->plans[i];
        if (p->finished)
            continue;
        for (size_t k = 0; !p->submitted && k < p->n; k++) {
            struct entry *e = b->plan_entries[p->first + k];
            if (e->state == ENTRY_PENDING) {
                e->state = ENTRY_FAILED;
                h5cd_fail(&e->error, H5CD_E_UNAVAILABLE, "the read was given up; try again");
                table_remove(r, e);
            }
        }
        /* Submitted and not stored: nobody will hand its answer to the writer.  Its end
         * (fetch_done) unlists its entries, those finished as they landed too (listed with
         * their bytes until then); if every entry settled since store_settled looked, the
         * end may have come already: they are unlisted now. */
        bool pending = false;
        for (size_t k = 0; p->submitted && !p->stored && k < p->n; k++) {
            b->plan_entries[p->first + k]->abandoned = true;
            pending |= b->plan_entries[p->first + k]->state == ENTRY_PENDING;
        }
        for (size_t k = 0; p->submitted && !p->stored && !pending && k < p->n; k++)
            table_remove(r, b->plan_entries[p->first + k]);
        plan_release_locked(b, p);
    }
    b->first_open_plan = b->nplans;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static int cmp_entry_index(const void *a, const void *b)
{
    const struct entry *ea = *(struct entry *const *)a;
    const struct entry *eb = *(struct entry *const *)b;
    if (ea->index != eb->index)
        return ea->index < eb->index ? -1 : 1;
    return ea->lo < eb->lo ? -1 : ea->lo > eb->lo;
}

/* Coalesces the pending entries owned by slots [from, nslots) and submits their fetches. */
static void fetch_owned(struct remote_batch *b, size_t from)
{
    struct remote *r = b->remote;
    size_t nowned = 0;
    for (size_t i = from; i < b->nslots; i++)
        nowned += b->slots[i].owned && b->slots[i].entry->state == ENTRY_PENDING;
    if (nowned == 0)
        return;
    struct entry **owned = malloc(nowned * sizeof(*owned));
    struct coalesce_range *ranges = malloc(nowned * sizeof(*ranges));
    struct coalesce_plan plan = {0};
    size_t k = 0;
    for (size_t i = from; owned != NULL && i < b->nslots; i++)
        if (b->slots[i].owned && b->slots[i].entry->state == ENTRY_PENDING)
            owned[k++] = b->slots[i].entry;
    if (owned == NULL || ranges == NULL) {
        for (size_t i = from; i < b->nslots; i++)
            if (b->slots[i].owned)
                fail_entries(r, &b->slots[i].entry, 1, H5CD_E_INTERNAL, "out of memory");
        goto done;
    }
    qsort(owned, nowned, sizeof(*owned), cmp_entry_index);
    uint64_t total = 0;
    for (size_t i = 0; i < nowned; i++) {
        ranges[i].offset = owned[i]->index * r->block_size + owned[i]->lo;
        ranges[i].length = owned[i]->hi - owned[i]->lo;
        total += ranges[i].length;
    }
    /* Gaps were filled by claiming their bytes (claim_gaps): merge only neighbours. */
    uint64_t piece = batch_piece(b, total);
    if (coalesce_plan(ranges, nowned, 0, piece, &plan) < 0 ||
        (r->cfg.parent_slice > 0 && parents_split_plan(&plan, r->cfg.parent_slice) < 0)) {
        fail_entries(r, owned, nowned, H5CD_E_INTERNAL, "cannot plan upstream requests");
        goto done;
    }
    /* Owned entries are sorted, disjoint, and each lies in exactly one fetch (each is
     * inside one block and the piece is a multiple of the block size), so one sweep
     * assigns them. */
    size_t next = 0;
    for (size_t j = 0; j < plan.nfetches; j++) {
        size_t begin = next;
        uint64_t end = plan.fetches[j].offset + plan.fetches[j].length;
        while (next < nowned && ranges[next].offset < end)
            next++;
        if (next > begin && plan_fetch(b, &plan.fetches[j], owned + begin, next - begin) < 0)
            fail_entries(r, owned + begin, next - begin, H5CD_E_INTERNAL, "out of memory");
    }
    fail_entries(r, owned + next, nowned - next, H5CD_E_INTERNAL, "fetch planning error");
    pump(b);
done:
    coalesce_plan_free(&plan);
    free(ranges);
    free(owned);
}

static void fail_range(struct batch_range *range, enum h5cd_errcode code, const char *message);

/* Adds an unclaimed slot for the bytes [lo, hi) of block index (room reserved). */
static void add_slot(struct remote_batch *b, size_t ri, uint64_t index, size_t lo, size_t hi,
                     uint64_t gen)
{
    b->slots[b->nslots++] =
        (struct slot){.index = index, .lo = lo, .hi = hi, .range = ri, .gen = gen};
    b->ranges[ri].pending++;
}

/*
 * Adds slots for the bytes [lo, hi) of block index that the block's cached
 * spans lack: one per hole, so that only missing bytes are fetched (the
 * cache keeps disjoint spans side by side, see blockcache.h).  -ENOMEM.
 */
static int add_missing(struct remote_batch *b, size_t ri, uint64_t index, size_t lo, size_t hi,
                       const struct blockcache_spans *spans)
{
    if (slots_reserve(b, spans->n + 1) < 0)
        return -ENOMEM;
    size_t pos = lo;
    for (size_t i = 0; i < spans->n && pos < hi; i++) {
        const struct blockcache_span *sp = &spans->span[i];
        if (sp->off + sp->len <= pos)
            continue;
        if (sp->off >= hi)
            break;
        if (sp->off > pos)
            add_slot(b, ri, index, pos, sp->off, spans->gen);
        pos = sp->off + sp->len;
    }
    if (pos < hi)
        add_slot(b, ri, index, pos, hi, spans->gen);
    return 0;
}

/*
 * Whether listed entries hold every byte [lo, hi) of block index in memory
 * (then *spans is an empty set of cached spans for add_missing): fetched and
 * not unlisted yet, so either still on their way to the cache or
 * being written to it (an index walk's level hands its bytes to the writer
 * and goes on: remote_batch_free_detached).  Such bytes are joined, not read
 * back from the disk, where the writer may still be writing that very block.
 */
static bool held_in_memory(struct remote_batch *b, uint64_t index, size_t lo, size_t hi,
                           struct blockcache_spans *spans)
{
    struct remote *r = b->remote;
    /* Nothing listed (a warm read): no lock taken.  An entry listed meanwhile is missed,
     * and its bytes are read from the cache or joined by the claim, as before. */
    if (atomic_load_explicit(&r->listed, memory_order_relaxed) == 0)
        return false;
    /* The generation before the entries: if they are unlisted before the claim, they were
     * cached, the generation moved, and the claim looks at the cache again. */
    *spans = (struct blockcache_spans){
        .n = 0, .gen = blockcache_generation(r->cache, b->file.file_id, index)};
    bool held = lo < hi;
    pthread_mutex_lock(&r->lock);
    for (size_t pos = lo; held && pos < hi;) {
        size_t next;
        const struct entry *e = table_at(r, b->file.file_id, index, pos, &next);
        held = e != NULL && e->state == ENTRY_DONE;
        if (held)
            pos = e->hi;
    }
    pthread_mutex_unlock(&r->lock);
    return held;
}

/* Adds slots for every byte of the range that the cache did not have. */
static int admit_one(struct remote_batch *b, size_t ri)
{
    struct remote *r = b->remote;
    struct batch_range *range = &b->ranges[ri];
    if (range->dst == NULL) {
        range->dst = malloc(range->length);
        if (range->dst == NULL)
            return -ENOMEM;
        range->own_dst = true;
    }
    uint64_t first = range->offset / r->block_size;
    uint64_t last = (range->offset + range->length - 1) / r->block_size;
    uint64_t end = range->offset + range->length;
    for (uint64_t index = first; index <= last; index++) {
        uint64_t bstart = index * r->block_size;
        size_t lo = range->offset > bstart ? (size_t)(range->offset - bstart) : 0;
        size_t hi = end < bstart + r->block_size ? (size_t)(end - bstart) : r->block_size;
        struct blockcache_spans spans;
        bool in_memory = !b->whole_blocks && held_in_memory(b, index, lo, hi, &spans);
        if (!in_memory && read_cached(b, index, lo, hi, range, &spans))
            continue;
        if (b->whole_blocks) {
            lo = 0;
            hi = block_length(r, &b->file, index);
        }
        if (add_missing(b, ri, index, lo, hi, &spans) < 0)
            return -ENOMEM;
    }
    if (range->own_dst && !range->cached_any) {
        /* Nothing came from the cache: its bytes may be served where they land (in_place). */
        free(range->dst);
        range->dst = NULL;
        range->own_dst = false;
    }
    return 0;
}

/*
 * Looks again at the blocks of the stale slots in [from, to) (bytes of
 * their blocks were cached after the first look): what is cached now is
 * served, what is still missing gets new slots, claimed by the caller's
 * next pass.  A stale slot itself is finished without an entry.
 */
static void relookup_stale(struct remote_batch *b, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        if (!b->slots[i].stale || b->slots[i].done)
            continue;
        struct slot s = b->slots[i];
        b->slots[i].done = true;
        if (s.range == GAP_SLOT)
            continue; /* a gap is only worth fetching with its neighbours: let it go */
        struct batch_range *range = &b->ranges[s.range];
        /* The slot may be wider than the range (whole blocks): the cache is asked only for
         * the range's own bytes, which are all that may be copied into its buffer. */
        uint64_t bstart = s.index * b->remote->block_size;
        uint64_t rend = range->offset + range->length;
        size_t lo = range->offset > bstart ? (size_t)(range->offset - bstart) : 0;
        size_t hi = rend < bstart + s.hi ? (size_t)(rend - bstart) : s.hi;
        lo = lo > s.lo ? lo : s.lo;
        struct blockcache_spans spans;
        b->scratch_index = UINT64_MAX; /* the cache holds more than it did */
        if (lo < hi && !read_cached(b, s.index, lo, hi, range, &spans) &&
            add_missing(b, s.range, s.index, s.lo, s.hi, &spans) < 0)
            fail_range(range, H5CD_E_INTERNAL, "out of memory");
        if (--range->pending == 0)
            ready_push(b, s.range);
    }
}

static void fail_range(struct batch_range *range, enum h5cd_errcode code, const char *message)
{
    if (!range->failed)
        h5cd_fail(&range->error, code, "%s", message);
    range->failed = true;
}

/* Owned slots ordered by the file offset of their bytes. */
static int cmp_slot_pos(const void *a, const void *b)
{
    const struct slot *x = *(struct slot *const *)a, *y = *(struct slot *const *)b;
    if (x->index != y->index)
        return x->index < y->index ? -1 : 1;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Claims, as gap slots, the bytes [lo, hi) of block index that nobody is fetching (bytes
 * some entry holds are left to it, so no byte is in flight twice).  false when out of
 * memory.  Caller holds the lock. */
static bool claim_gap_locked(struct remote_batch *b, uint64_t index, size_t lo, size_t hi)
{
    struct remote *r = b->remote;
    for (size_t pos = lo; pos < hi;) {
        size_t next = SIZE_MAX;
        struct entry *e = table_at(r, b->file.file_id, index, pos, &next);
        if (e != NULL) {
            pos = e->hi;
            continue;
        }
        size_t stop = next < hi ? next : hi;
        if (slots_reserve(b, 1) < 0 ||
            (e = table_add(r, b, b->file.file_id, index, pos, stop)) == NULL)
            return false;
        b->slots[b->nslots++] = (struct slot){
            .entry = e, .index = index, .lo = pos, .hi = stop, .range = GAP_SLOT, .owned = true};
        pos = stop;
    }
    return true;
}

/* Claims the free bytes of the file in [from, to) as gap slots, whatever the cache holds
 * (gaps worth bridging, site-cache slices).  Caller holds the lock. */
static bool claim_hole_locked(struct remote_batch *b, uint64_t from, uint64_t to)
{
    uint64_t bs = b->remote->block_size;
    for (uint64_t pos = from; pos < to;) {
        uint64_t index = pos / bs;
        uint64_t stop = (index + 1) * bs < to ? (index + 1) * bs : to;
        if (!claim_gap_locked(b, index, (size_t)(pos - index * bs), (size_t)(stop - index * bs)))
            return false;
        pos = stop;
    }
    return true;
}

/* A hole between two of a batch's runs of wanted bytes: its size and where it lies. */
struct hole {
    uint64_t size;
    uint32_t spread; /* ties among equal holes are broken by this (spread_of) */
    size_t after;    /* it follows the owned slot of this rank */
};

/* Bit-reversed rank: holes of one size taken in this order are spread evenly over the
 * batch (0, 16, 8, 24, ...), so bridging some of them makes runs of even length. */
static uint32_t spread_of(size_t rank)
{
    uint32_t v = (uint32_t)rank, r = 0;
    for (int i = 0; i < 32; i++, v >>= 1)
        r = (r << 1) | (v & 1u);
    return r;
}

static int cmp_hole(const void *a, const void *b)
{
    const struct hole *x = a, *y = b;
    if (x->size != y->size)
        return x->size < y->size ? -1 : 1;
    return x->spread < y->spread ? -1 : x->spread > y->spread;
}

/* Which holes to bridge: marks bridge[i] for the hole after owned rank i.  An index walk's
 * level bridges every hole up to the gap (the chunks between its nodes are what the walk
 * wants next); a data batch the holes planner_bridge says save a round.  false when out of
 * memory. */
static bool choose_holes(const struct remote_batch *b, const uint64_t *start, const uint64_t *stop,
                         size_t k, bool *bridge)
{
    struct planner_limits lim = batch_limits(b);
    struct hole *holes = malloc(k * sizeof(*holes));
    uint64_t *sizes = malloc(k * sizeof(*sizes));
    if (holes == NULL || sizes == NULL) {
        free(holes);
        free(sizes);
        return false;
    }
    size_t n = 0;
    uint64_t wanted = 0;
    for (size_t i = 0; i < k; i++) {
        wanted += stop[i] - start[i];
        if (i + 1 < k && start[i + 1] > stop[i])
            holes[n++] =
                (struct hole){.size = start[i + 1] - stop[i], .spread = spread_of(n), .after = i};
    }
    qsort(holes, n, sizeof(*holes), cmp_hole);
    for (size_t i = 0; i < n; i++)
        sizes[i] = holes[i].size;
    size_t take = b->holes_wanted ? planner_bridge_upto_gap(&b->link, &lim, sizes, n)
                                  : planner_bridge(&b->link, &lim, sizes, n, wanted);
    for (size_t i = 0; i < take; i++)
        bridge[holes[i].after] = true;
    log_debug("msg=\"holes bridged\" pieces=%zu holes=%zu bridged=%zu wanted=%llu walk=%d", k, n,
              take, (unsigned long long)wanted, b->holes_wanted);
    free(holes);
    free(sizes);
    return true;
}

/*
 * Claims the free bytes of the holes between the bytes this batch will
 * fetch (its owned slots from `from`) that choose_holes says to bridge,
 * so that one request covers both sides.  Bytes the cache holds inside
 * such a hole are claimed too and fetched again: by the same rule an
 * island (an index node cached by the walk, a chunk read before) costs
 * less to read again than the request it would split off; a million-chunk
 * batch otherwise split into thousands of requests around its cached index
 * nodes.  Bytes another request is bringing are left to it (they split the
 * request: no byte is in flight twice).  Takes the lock itself.
 */
static void claim_gaps(struct remote_batch *b, size_t from)
{
    struct remote *r = b->remote;
    size_t n = b->nslots - from;
    if (n < 2)
        return;
    struct slot **owned = malloc(n * sizeof(*owned));
    uint64_t *start = malloc(n * sizeof(*start)), *stop = malloc(n * sizeof(*stop));
    bool *bridge = calloc(n, sizeof(*bridge));
    size_t k = 0;
    for (size_t i = from; owned != NULL && i < b->nslots; i++)
        if (b->slots[i].owned && !b->slots[i].done)
            owned[k++] = &b->slots[i];
    if (owned != NULL && start != NULL && stop != NULL && bridge != NULL) {
        qsort(owned, k, sizeof(*owned), cmp_slot_pos);
        /* Positions first: claiming may move the slots array. */
        for (size_t i = 0; i < k; i++) {
            start[i] = owned[i]->index * r->block_size + owned[i]->lo;
            stop[i] = owned[i]->index * r->block_size + owned[i]->hi;
        }
        bool ok = k >= 2 && choose_holes(b, start, stop, k, bridge);
        for (size_t i = 0; ok && i + 1 < k; i++) {
            if (bridge[i]) {
                pthread_mutex_lock(&r->lock);
                ok = claim_hole_locked(b, stop[i], start[i + 1]);
                pthread_mutex_unlock(&r->lock);
            }
        }
    }
    free(owned);
    free(start);
    free(stop);
    free(bridge);
}

/*
 * With site caches: claims the free bytes of every slice the batch fetches
 * from (slots [from, nslots)), so that one request fetches each slice whole
 * (aligned to parent_slice) and no second request for the same slice waits
 * on the site cache's lock.  Caller holds the lock.
 */
static void claim_slices_locked(struct remote_batch *b, size_t from)
{
    struct remote *r = b->remote;
    uint64_t slice_bytes = r->cfg.parent_slice;
    size_t end = b->nslots;
    uint64_t last = UINT64_MAX;
    for (size_t i = from; slice_bytes > r->block_size && i < end; i++) {
        uint64_t slice = b->slots[i].index * r->block_size / slice_bytes;
        if (!b->slots[i].owned || slice == last)
            continue;
        last = slice;
        uint64_t lo = slice * slice_bytes;
        uint64_t hi = lo + slice_bytes < b->file.size ? lo + slice_bytes : b->file.size;
        if (!claim_hole_locked(b, lo, hi))
            return;
    }
}

static void start_slots(struct remote_batch *b, size_t slots_before, bool with_gaps);

/* Charges n bytes of a range about to be admitted to the batch's budget and the
 * daemon-wide one; a batch holding nothing may always take one range. */
static bool charge_range(struct remote_batch *b, uint64_t n)
{
    struct remote *r = b->remote;
    bool first = b->admitted_bytes == 0;
    if (!first && b->admitted_bytes + n > b->budget)
        return false;
    if (b->reserved)
        return true;
    if (r->cfg.budget != NULL) {
        if (first)
            membudget_force(r->cfg.budget, n);
        return first || membudget_try(r->cfg.budget, n);
    }
    if (!first && atomic_load(&r->admitted_bytes) + n > r->cfg.total_budget)
        return false;
    atomic_fetch_add(&r->admitted_bytes, n);
    return true;
}

static void uncharge_range(struct remote_batch *b, uint64_t n)
{
    if (b->reserved)
        return;
    if (b->remote->cfg.budget != NULL)
        membudget_release(b->remote->cfg.budget, n);
    else
        atomic_fetch_sub(&b->remote->admitted_bytes, n);
}

/* Admits ranges while the byte budget allows (always at least one), then fetches their misses. */
static void admit_ranges(struct remote_batch *b)
{
    size_t slots_before = b->nslots;
    while (b->next_admit < b->nranges) {
        struct batch_range *range = &b->ranges[b->next_admit];
        /* A batch may always hold one range, so every batch progresses; beyond that,
         * its own budget and the daemon-wide one bound memory. */
        if (!charge_range(b, range->length))
            break;
        size_t ri = b->next_admit++;
        b->admitted_bytes += range->length;
        size_t slots_mark = b->nslots;
        if (admit_one(b, ri) < 0) {
            b->nslots = slots_mark;
            range->pending = 0;
            fail_range(range, H5CD_E_INTERNAL, "out of memory");
        }
        if (range->pending == 0)
            ready_push(b, ri);
    }
    start_slots(b, slots_before, true);
}

/* Claim passes that look at the cache again for blocks cached into meanwhile; the last
 * pass claims what it finds (complete_from_cache still catches whole hits). */
#define CLAIM_PASSES 4

/* Claims the slots [slots_before, nslots) and fetches what nobody has (gaps too, with_gaps). */
static void start_slots(struct remote_batch *b, size_t slots_before, bool with_gaps)
{
    if (b->nslots == slots_before)
        return;
    int rc = 0;
    for (size_t from = slots_before, pass = 0; rc == 0 && from < b->nslots; pass++) {
        b->check_gen = pass + 1 < CLAIM_PASSES;
        pthread_mutex_lock(&b->remote->lock);
        rc = claim_slots_locked(b, from);
        pthread_mutex_unlock(&b->remote->lock);
        size_t to = b->nslots;
        if (rc == 0)
            relookup_stale(b, from, to);
        from = to;
    }
    b->check_gen = false;
    if (rc == 0 && with_gaps)
        claim_gaps(b, slots_before);
    if (rc == 0 && with_gaps && b->remote->cfg.parent_slice > 0) {
        pthread_mutex_lock(&b->remote->lock);
        claim_slices_locked(b, slots_before);
        pthread_mutex_unlock(&b->remote->lock);
    }
    if (rc < 0) {
        /* Slots that got no entry are failed now; the rest proceed. */
        for (size_t i = slots_before; i < b->nslots; i++) {
            struct slot *s = &b->slots[i];
            if (s->entry != NULL || s->done)
                continue;
            s->done = true;
            struct batch_range *range = &b->ranges[s->range];
            fail_range(range, H5CD_E_INTERNAL, "out of memory");
            if (--range->pending == 0)
                ready_push(b, s->range);
        }
    }
    /* A block cached between our lookup and our claim needs no fetch. */
    for (size_t i = slots_before; i < b->nslots; i++)
        if (b->slots[i].owned)
            complete_from_cache(b, b->slots[i].entry);
    fetch_owned(b, slots_before);
}

/*
 * Whether the range's bytes are served from the answer `buf` as they lie
 * there, without a copy: when nothing of the range was copied yet and the
 * answer holds every byte of it (any answer about the file version holds
 * its true bytes, whichever slot brought it).  The range keeps the answer
 * until it is retired.
 */
static bool in_place(struct batch_range *range, struct fetchbuf *buf)
{
    if (range->view != NULL)
        return true;
    if (range->dst != NULL || range->failed || buf->offset + buf->start > range->offset ||
        range->offset + range->length > buf->offset + buf->len)
        return false;
    atomic_fetch_add(&buf->refs, 1);
    range->view = buf;
    range->dst = buf->data + (range->offset - buf->offset);
    return true;
}

/* Lets go of a range's bytes. */
static void release_dst(struct batch_range *range)
{
    if (range->own_dst)
        free(range->dst);
    fetchbuf_release(range->view);
    range->view = NULL;
    range->dst = NULL;
    range->own_dst = false;
}

/* Uses a finished slot: copy its bytes, let go of the entry.  Requests are cached as a
 * whole (store_settled); an owned entry completed from the cache is unlisted here. */
static void consume_slot(struct remote_batch *b, struct slot *s)
{
    struct remote *r = b->remote;
    struct entry *e = s->entry;
    if (s->range != GAP_SLOT) {
        struct batch_range *range = &b->ranges[s->range];
        if (e->state != ENTRY_DONE) {
            if (e->error.code == H5CD_E_UPSTREAM_CHANGED)
                b->changed = true;
            if (!range->failed)
                range->error = e->error;
            range->failed = true;
        } else if (e->len != e->hi - e->lo) {
            fail_range(range, H5CD_E_UPSTREAM_ERROR, "upstream returned a short block");
        } else if (!range->failed && !in_place(range, e->buf)) {
            if (range->dst == NULL && (range->dst = malloc(range->length)) != NULL)
                range->own_dst = true;
            if (range->dst == NULL) {
                fail_range(range, H5CD_E_INTERNAL, "out of memory");
            } else {
                const uint8_t *bytes = e->buf->data + e->buf_off + (s->lo - e->lo);
                copy_block_part(r, s->index, bytes, s->lo, s->hi, range);
            }
        }
    }
    pthread_mutex_lock(&r->lock);
    if (s->owned && !e->planned)
        table_remove(r, e);
    entry_release_locked(e);
    pthread_mutex_unlock(&r->lock);
    s->done = true;
    if (s->range != GAP_SLOT && --b->ranges[s->range].pending == 0)
        ready_push(b, s->range);
}

/* Consumes every finished slot, waiting for at least one.  False if the wait timed out. */
static bool progress(struct remote_batch *b)
{
    struct remote *r = b->remote;
    struct timespec deadline = deadline_after_ms(r->cfg.wait_timeout_ms);
    for (;;) {
        pump(b);
        while (b->scan_from < b->nslots && b->slots[b->scan_from].done)
            b->scan_from++;
        size_t finished = 0;
        pthread_mutex_lock(&r->lock);
        for (size_t i = b->scan_from; i < b->nslots; i++)
            finished += !b->slots[i].done && b->slots[i].entry->state != ENTRY_PENDING;
        if (finished == 0 && pthread_cond_timedwait(&r->cond, &r->lock, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&r->lock);
            return false;
        }
        pthread_mutex_unlock(&r->lock);
        if (finished == 0)
            continue;
        store_settled(b);
        /* The state of an entry only moves away from PENDING, so no lock is needed to
         * re-read it once it was seen finished. */
        for (size_t i = b->scan_from; i < b->nslots; i++) {
            struct slot *s = &b->slots[i];
            if (s->done)
                continue;
            pthread_mutex_lock(&r->lock);
            bool ready = s->entry->state != ENTRY_PENDING;
            pthread_mutex_unlock(&r->lock);
            if (ready)
                consume_slot(b, s);
        }
        return true;
    }
}

/* Gives up on every unconsumed slot; entries we own are left for their callbacks to unlist. */
static void abandon_slots(struct remote_batch *b, bool fail_ranges)
{
    struct remote *r = b->remote;
    pthread_mutex_lock(&r->lock);
    for (size_t i = b->scan_from; i < b->nslots; i++) {
        struct slot *s = &b->slots[i];
        if (s->done)
            continue;
        s->done = true;
        if (s->owned) {
            if (s->entry->state == ENTRY_PENDING)
                s->entry->abandoned = true;
            else
                table_remove(r, s->entry);
        }
        entry_release_locked(s->entry);
        if (fail_ranges && s->range != GAP_SLOT) {
            struct batch_range *range = &b->ranges[s->range];
            fail_range(range, H5CD_E_UPSTREAM_TIMEOUT, "timed out waiting for upstream");
            if (--range->pending == 0)
                ready_push(b, s->range);
        }
    }
    pthread_mutex_unlock(&r->lock);
}

int remote_batch_new(struct remote *r, const struct remote_file *file, uint64_t budget,
                     struct remote_batch **out)
{
    struct remote_batch *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    b->remote = r;
    b->file = *file;
    b->budget = budget > 0 ? budget : 1;
    b->last = SIZE_MAX;
    b->whole_blocks = !r->cfg.exact_ranges;
    host_metrics(r, file->url, &b->link);
    b->scratch_index = UINT64_MAX;
    b->scratch = malloc(r->block_size);
    if (b->scratch == NULL) {
        free(b);
        return -ENOMEM;
    }
    *out = b;
    return 0;
}

void remote_batch_holes_wanted(struct remote_batch *b)
{
    b->holes_wanted = true;
}

void remote_batch_reserved(struct remote_batch *b)
{
    b->reserved = true;
}

int remote_batch_add(struct remote_batch *b, uint64_t offset, uint64_t length, uint8_t *dst,
                     void *tag)
{
    if (b->next_admit > 0)
        return -EBUSY; /* ranges are added before the first remote_batch_next() */
    if (length == 0 || offset > b->file.size || length > b->file.size - offset)
        return -ERANGE;
    if (b->nranges == b->rangecap) {
        size_t cap = b->rangecap ? b->rangecap * 2 : 16;
        struct batch_range *bigger = realloc(b->ranges, cap * sizeof(*bigger));
        if (bigger == NULL)
            return -ENOMEM;
        b->ranges = bigger;
        b->rangecap = cap;
    }
    b->ranges[b->nranges++] =
        (struct batch_range){.offset = offset, .length = length, .dst = dst, .tag = tag};
    return 0;
}

/* Frees the buffer of the range handed out last and lets more ranges in. */
static void retire_last(struct remote_batch *b)
{
    if (b->last == SIZE_MAX)
        return;
    struct batch_range *range = &b->ranges[b->last];
    if (range->own_dst || range->view != NULL)
        release_dst(range);
    b->admitted_bytes -= range->length;
    uncharge_range(b, range->length);
    b->last = SIZE_MAX;
}

/*
 * After upstream refused the batch's URL (a presigned URL expired during a
 * long read): the name is resolved again, once per batch, and the batch
 * goes on with the new URL if it names the same file.  True when it does.
 */
static bool reresolve(struct remote_batch *b)
{
    struct remote *r = b->remote;
    if (!b->file.resolved || r->resolve == NULL || b->reresolved)
        return b->reresolve_ok;
    b->reresolved = true;
    pthread_mutex_lock(&r->lock);
    const struct urlpolicy *policy = r->policy;
    pthread_mutex_unlock(&r->lock);
    const char *token = b->file.token[0] != '\0' ? b->file.token : NULL;
    struct resolve_result rr;
    struct h5cd_error e;
    char identity[H5CD_MAX_URL_BYTES + 1];
    /* Another reader may have resolved it again already; else ask upstream. */
    if (resolve_name(r->resolve, policy, b->file.name, token, false, &rr, &e) < 0 ||
        strcmp(rr.url, b->file.url) == 0) {
        if (resolve_name(r->resolve, policy, b->file.name, token, true, &rr, &e) < 0)
            return false;
    }
    /* A public URL's remembered redirect target was refused: hop by hop from now on. */
    resolve_forget_redirect(r->resolve, b->file.identity);
    if (strcmp(rr.url, b->file.url) == 0 ||
        urlpolicy_check(policy, rr.url, identity, sizeof(identity), &e) < 0 ||
        strcmp(identity, b->file.identity) != 0)
        return false;
    snprintf(b->file.url, sizeof(b->file.url), "%s", rr.url);
    b->reresolve_ok = true;
    log_info("msg=\"upstream refused a resolved URL; resolved again\"");
    return true;
}

/* Reads a failed range again, with the batch's new URL. */
static void readmit(struct remote_batch *b, size_t ri)
{
    struct batch_range *range = &b->ranges[ri];
    if (range->view != NULL)
        release_dst(range); /* never copy into an answer: the range starts over */
    range->cached_any = false;
    range->failed = false;
    range->retried = true;
    range->pending = 0;
    memset(&range->error, 0, sizeof(range->error));
    size_t slots_before = b->nslots;
    if (admit_one(b, ri) < 0) {
        b->nslots = slots_before;
        range->pending = 0;
        fail_range(range, H5CD_E_INTERNAL, "out of memory");
    }
    if (range->pending == 0) {
        ready_push(b, ri);
        return;
    }
    start_slots(b, slots_before, false);
}

bool remote_batch_has_ready(struct remote_batch *b)
{
    if (b->ready == NULL) /* remote_batch_next() has not started the batch */
        return false;
    retire_last(b);
    admit_ranges(b);
    return b->ready_head != b->ready_tail;
}

int remote_batch_start(struct remote_batch *b)
{
    if (b->ready == NULL && b->nranges > 0) {
        /* Room for every range twice: each may be read again once (readmit). */
        b->ready = malloc(2 * b->nranges * sizeof(*b->ready));
        if (b->ready == NULL)
            return -ENOMEM;
        /* A lone small range (one chunk asked at a time, as zarr over HTTP asks) reads the
         * whole blocks it touches: the next read is most likely its neighbour, and the
         * block costs a few ms of transfer against a round trip.  Read exactly, the Zarr
         * view's 1000 small chunks took 1021 requests and 6 s instead of 0.8. */
        if (b->nranges == 1 && b->ranges[0].length < b->remote->block_size)
            b->whole_blocks = true;
    }
    admit_ranges(b);
    return 0;
}

int remote_batch_next(struct remote_batch *b, struct remote_batch_result *res)
{
    if (b->ready == NULL && remote_batch_start(b) < 0)
        return -ENOMEM;
    retire_last(b);
    if (b->returned == b->nranges) {
        store_settled(b); /* remote_batch_free waits for the writes */
        return 0;
    }
    admit_ranges(b);
    for (;;) {
        while (b->ready_head == b->ready_tail) {
            if (!progress(b)) {
                drop_plans(b);
                abandon_slots(b, true);
            }
            if (b->ready_head == b->ready_tail && b->scan_from >= b->nslots)
                return -EIO; /* nothing pending and nothing ready: cannot happen */
        }
        size_t ri = b->ready[b->ready_head];
        struct batch_range *range = &b->ranges[ri];
        if (!range->failed || range->error.code != H5CD_E_UPSTREAM_DENIED || range->retried ||
            !reresolve(b))
            break;
        b->ready_head++;
        readmit(b, ri);
    }
    if (b->changed) {
        b->changed = false;
        STATS_INC(b->remote->stats, validator_changes);
        blockcache_file_drop(b->remote->cache, b->file.identity);
        log_info("msg=\"remote file changed during a read, cached blocks dropped\"");
    }
    size_t ri = b->ready[b->ready_head++];
    struct batch_range *range = &b->ranges[ri];
    b->returned++;
    b->last = ri;
    res->tag = range->tag;
    res->offset = range->offset;
    res->length = range->length;
    res->data = range->failed ? NULL : range->dst;
    res->error = range->error;
    if (!range->failed)
        res->error.code = H5CD_OK;
    return 1;
}

static void batch_release(struct remote_batch *b);

void remote_batch_free(struct remote_batch *b)
{
    if (b == NULL)
        return;
    drop_plans(b);
    abandon_slots(b, false);
    wait_for_writes(b);
    batch_release(b);
}

/*
 * Frees a batch without waiting for its cache writes unless it handed the writer more than
 * wait_above bytes; returns the ticket of its last write, or 0 when it waited.  The entries
 * hold the bytes until the writer has cached them.  The rest of a small file fetched whole
 * at open (open_whole_file) never waits: nobody reads those bytes from the disk soon.
 */
static uint64_t free_detached(struct remote_batch *b, uint64_t wait_above)
{
    drop_plans(b); /* hands the writer what it has; last_write is final after this */
    abandon_slots(b, false);
    uint64_t queued = 0;
    for (size_t i = 0; i < b->nplans; i++)
        if (b->plans[i].stored)
            queued += b->plans[i].range.length;
    uint64_t ticket = b->last_write;
    if (queued > wait_above) {
        /* Its entries would hold that much in memory until the disk took it (a walk's
         * level that bridged a whole file's chunks): wait, as remote_batch_free does. */
        wait_for_writes(b);
        ticket = 0;
    }
    batch_release(b);
    return ticket;
}

uint64_t remote_batch_free_detached(struct remote_batch *b)
{
    return b == NULL ? 0 : free_detached(b, REMOTE_DETACH_MAX_BYTES);
}

void remote_wait_writes(struct remote *r, uint64_t ticket)
{
    storeq_wait(r->writer, ticket);
}

static void batch_release(struct remote_batch *b)
{
    uncharge_range(b, b->admitted_bytes);
    for (size_t i = 0; i < b->nranges; i++)
        if (b->ranges[i].own_dst || b->ranges[i].view != NULL)
            release_dst(&b->ranges[i]);
    free(b->ranges);
    free(b->slots);
    free(b->ready);
    free(b->scratch);
    free(b->plans);
    free(b->plan_entries);
    free(b);
}

static int read_range(struct remote *r, const struct remote_file *f, uint64_t offset,
                      uint64_t length, uint8_t *dst, bool whole_blocks, struct h5cd_error *err)
{
    if (length == 0)
        return 0;
    if (offset > f->size || length > f->size - offset)
        return h5cd_fail(err, H5CD_E_RANGE_NOT_SATISFIABLE, "range outside the file");
    struct remote_batch *b = NULL;
    if (remote_batch_new(r, f, length, &b) == 0)
        b->whole_blocks = whole_blocks;
    if (b == NULL || remote_batch_add(b, offset, length, dst, NULL) < 0) {
        remote_batch_free(b);
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    }
    struct remote_batch_result res;
    int rc = remote_batch_next(b, &res);
    if (rc < 0)
        h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    else if (res.data == NULL && err != NULL)
        *err = res.error;
    remote_batch_free(b);
    return rc == 1 && res.data != NULL ? 0 : -1;
}

int remote_read(struct remote *r, const struct remote_file *f, uint64_t offset, uint64_t length,
                uint8_t *dst, struct h5cd_error *err)
{
    return read_range(r, f, offset, length, dst, true, err);
}

int remote_read_exact(struct remote *r, const struct remote_file *f, uint64_t offset,
                      uint64_t length, uint8_t *dst, struct h5cd_error *err)
{
    return read_range(r, f, offset, length, dst, !r->cfg.exact_ranges, err);
}

int remote_identity(struct remote *r, const char *url, char *identity, size_t cap,
                    struct h5cd_error *err)
{
    pthread_mutex_lock(&r->lock);
    const struct urlpolicy *policy = r->policy;
    pthread_mutex_unlock(&r->lock);
    if (r->resolve == NULL || !urlforms_is_form(url))
        return urlpolicy_check(policy, url, identity, cap, err);
    /* A name (s3://, dandi://) is the blob it resolves to. */
    struct resolve_result rr;
    if (resolve_name(r->resolve, policy, url, NULL, false, &rr, err) < 0)
        return -1;
    return urlpolicy_check(policy, rr.url, identity, cap, err);
}

/* ---- memory held outside batches ---- */

int remote_reserve(struct remote *r, uint64_t bytes, unsigned timeout_ms)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        uint64_t held = atomic_load(&r->admitted_bytes);
        /* Like a batch's first range, a reservation alone may exceed the budget. */
        if (held == 0 || held + bytes <= r->cfg.total_budget || timeout_ms == 0) {
            if (atomic_compare_exchange_weak(&r->admitted_bytes, &held, held + bytes))
                return 0;
            continue;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t waited_ms =
            (int64_t)(now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (waited_ms >= (int64_t)timeout_ms)
            return -1;
        /* Batches release their ranges without signalling: look again shortly. */
        struct timespec pause = {.tv_nsec = 2 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

void remote_unreserve(struct remote *r, uint64_t bytes)
{
    atomic_fetch_sub(&r->admitted_bytes, bytes);
}
