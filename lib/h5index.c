/*
 * h5index.c - the persistent index of HDF5 objects and chunk locations.
 *
 * Owns <cache dir>/h5index.sqlite (WAL): which cache file id each remote
 * file identity had when it was indexed, one row per described object
 * (its /v1/meta document plus the few layout facts batches need), and one
 * row per located chunk (NULL offset for a chunk never written, a BLOB for
 * a compact dataset's bytes), and the quarantine: file versions on which
 * an HDF5 worker crashed or overran, refused without a worker until the
 * file changes upstream or an admin purges it.  Unknown chunk locations are
 * walked by the daemon's own index reader (lib/chunkwalk.c); the rest of
 * what is not known yet is asked of an HDF5 worker process
 * (lib/workerpool.c): the daemon itself never calls libhdf5.
 *
 * Locking: `lock` guards sqlite and is never held across a worker call.
 */
#include "h5index.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "chunkwalk.h"
#include "log.h"
#include "workerpool.h"

#define SCHEMA_VERSION 1
/* How objects are described: documents of another version are dropped at
 * open (the index only caches libhdf5's answers).  2: object_id, bitfield and
 * H5T_ARRAY dtypes, stored element size of contiguous variable-length data.
 * 3: object header address and superblock sizes of chunked datasets (the
 * daemon's own index reader starts from them). */
#define DOC_VERSION     3
#define RECENT_DATASETS 64 /* parsed dataset descriptions kept in memory */
/* Wanted chunks whose sorted linear indexes are at most this far apart share
 * one range query: each row in between costs one step of the walk, far less
 * than a query of its own (bind, seek, reset). */
#define RANGE_JOIN_GAP 8

enum stmt_id {
    ST_FILE_GET,
    ST_FILE_PUT,
    ST_FILE_DROP_CHUNKS,
    ST_FILE_DROP_OBJECTS,
    ST_OBJECT_GET,
    ST_OBJECT_PUT,
    ST_CHUNK_GET,
    ST_CHUNK_RANGE,
    ST_CHUNK_PUT,
    ST_QUARANTINE_GET,
    ST_QUARANTINE_PUT,
    ST_QUARANTINE_DROP,
    ST_QUARANTINE_DROP_STALE,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_FILE_GET] = "SELECT file_id FROM files WHERE identity = ?1",
    [ST_FILE_PUT] = "INSERT OR REPLACE INTO files(identity, file_id) VALUES (?1, ?2)",
    [ST_FILE_DROP_CHUNKS] = "DELETE FROM chunks WHERE object_id IN "
                            "(SELECT id FROM objects WHERE file_id = ?1)",
    [ST_FILE_DROP_OBJECTS] = "DELETE FROM objects WHERE file_id = ?1",
    [ST_OBJECT_GET] = "SELECT id, doc FROM objects WHERE file_id = ?1 AND path = ?2",
    [ST_OBJECT_PUT] = "INSERT OR REPLACE INTO objects(file_id, path, doc) VALUES (?1, ?2, ?3)",
    [ST_CHUNK_GET] = "SELECT offset, size, mask, data FROM chunks "
                     "WHERE object_id = ?1 AND idx = ?2",
    /* The primary key (object_id, idx) gives the rows in idx order: one seek, then a walk. */
    [ST_CHUNK_RANGE] = "SELECT idx, offset, size, mask FROM chunks "
                       "WHERE object_id = ?1 AND idx BETWEEN ?2 AND ?3 ORDER BY idx",
    [ST_CHUNK_PUT] = "INSERT OR REPLACE INTO chunks(object_id, idx, offset, size, mask, data) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    /* A version is the cache's file id, or the same validator (the cache may have
     * forgotten the file and given the same bytes a new id). */
    [ST_QUARANTINE_GET] = "SELECT reason, at FROM quarantine WHERE identity = ?1 AND "
                          "(file_id = ?2 OR (validator <> '' AND validator = ?3))",
    [ST_QUARANTINE_PUT] = "INSERT OR REPLACE INTO quarantine(identity, file_id, validator, reason, "
                          "at) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_QUARANTINE_DROP] = "DELETE FROM quarantine WHERE identity = ?1",
    [ST_QUARANTINE_DROP_STALE] = "DELETE FROM quarantine WHERE identity = ?1 AND file_id <> ?2 "
                                 "AND (validator = '' OR validator <> ?3)",
};

static const char schema_sql[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER);"
    "CREATE TABLE IF NOT EXISTS files(identity TEXT PRIMARY KEY, file_id INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS objects(id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL,"
    " path TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE(file_id, path));"
    "CREATE TABLE IF NOT EXISTS chunks(object_id INTEGER NOT NULL, idx INTEGER NOT NULL,"
    " offset INTEGER, size INTEGER, mask INTEGER, data BLOB,"
    " PRIMARY KEY(object_id, idx)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS quarantine(identity TEXT PRIMARY KEY, file_id INTEGER NOT NULL,"
    " validator TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL);";

struct h5index {
    struct workerpool *pool;
    struct remote *remote; /* NULL: no walks in the daemon */
    struct h5cd_stats *stats;
    uint64_t prefix_bytes;
    uint64_t max_decode_bytes;
    pthread_mutex_t lock;
    sqlite3 *db;
    sqlite3_stmt *stmts[ST_COUNT];
    uint64_t tick;
    /* Datasets recently described, so a warm request parses no stored document.
     * Keyed by file version and path: a new version simply never matches. */
    struct recent_dataset {
        int64_t file_id; /* 0: free */
        uint64_t used;
        struct h5dataset ds;
    } recent[RECENT_DATASETS];
};

/* ---- sqlite ---- */

static sqlite3_stmt *stmt(struct h5index *idx, enum stmt_id id)
{
    sqlite3_stmt *s = idx->stmts[id];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Empties the index when its documents were written by another DOC_VERSION. */
static int drop_stale_docs(sqlite3 *db)
{
    sqlite3_stmt *s = NULL;
    sqlite3_int64 version = -1;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'doc_version'", -1, &s, NULL) !=
        SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        version = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    if (version == DOC_VERSION)
        return 0;
    char sql[192];
    snprintf(sql, sizeof(sql),
             "BEGIN; DELETE FROM chunks; DELETE FROM objects;"
             " INSERT OR REPLACE INTO meta(key, value) VALUES('doc_version', %d); COMMIT;",
             DOC_VERSION);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (version >= 0)
        log_info("msg=\"HDF5 index emptied: written by another version\" doc_version=%lld",
                 (long long)version);
    return 0;
}

/*
 * Rows are keyed by the block cache's file ids, which mean something only
 * within the cache's epoch: when the block index was rebuilt (ids start
 * again from 1), every row made under another epoch is dropped.
 */
static int bind_epoch(sqlite3 *db, uint64_t epoch)
{
    sqlite3_stmt *s = NULL;
    int64_t stored = 0;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'cache_epoch'", -1, &s, NULL) !=
        SQLITE_OK)
        return -1;
    bool known = sqlite3_step(s) == SQLITE_ROW;
    if (known)
        stored = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    if (known && (uint64_t)stored == epoch)
        return 0;
    char sql[256];
    snprintf(
        sql, sizeof(sql),
        "BEGIN; DELETE FROM chunks; DELETE FROM objects; DELETE FROM files; DELETE FROM quarantine;"
        " INSERT OR REPLACE INTO meta(key, value) VALUES ('cache_epoch', %lld); COMMIT;",
        (long long)epoch);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (known)
        log_info("msg=\"the block index was rebuilt: HDF5 index entries of its old file ids "
                 "dropped\"");
    return 0;
}

static int open_db(struct h5index *idx, const char *path, uint64_t epoch)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW;
    if (sqlite3_open_v2(path, &idx->db, flags, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(idx->db, 5000);
    if (sqlite3_exec(idx->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK ||
        drop_stale_docs(idx->db) < 0 || bind_epoch(idx->db, epoch) < 0)
        goto fail;
    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v3(idx->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &idx->stmts[i],
                               NULL) != SQLITE_OK)
            goto fail;
    return 0;
fail:
    log_warn("msg=\"cannot use the HDF5 index database\" path=%s reason=\"%s\"", path,
             idx->db != NULL ? sqlite3_errmsg(idx->db) : "out of memory");
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(idx->stmts[i]);
        idx->stmts[i] = NULL;
    }
    sqlite3_close(idx->db);
    idx->db = NULL;
    return -1;
}

int h5index_open(const struct h5index_config *cfg, struct workerpool *pool,
                 struct h5cd_stats *stats, struct h5index **out)
{
    struct h5index *idx = calloc(1, sizeof(*idx));
    if (idx == NULL)
        return -ENOMEM;
    idx->pool = pool;
    idx->remote = cfg->remote;
    idx->stats = stats;
    idx->prefix_bytes = cfg->prefix_bytes;
    idx->max_decode_bytes = cfg->max_decode_bytes > 0 ? cfg->max_decode_bytes : 256ULL << 20;
    if (pthread_mutex_init(&idx->lock, NULL) != 0) {
        free(idx);
        return -ENOMEM;
    }
    char path[4096];
    bool on_disk = false;
    if (cfg->dir != NULL &&
        snprintf(path, sizeof(path), "%s/h5index.sqlite", cfg->dir) < (int)sizeof(path))
        on_disk = open_db(idx, path, cfg->cache_epoch) == 0;
    if (!on_disk && open_db(idx, ":memory:", cfg->cache_epoch) < 0) {
        pthread_mutex_destroy(&idx->lock);
        free(idx);
        return -ENOMEM;
    }
    *out = idx;
    return 0;
}

void h5index_close(struct h5index *idx)
{
    if (idx == NULL)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(idx->stmts[i]);
    sqlite3_close(idx->db);
    pthread_mutex_destroy(&idx->lock);
    free(idx);
}

/* ---- file versions ---- */

/* Drops what was learnt about an older version of the file.  Caller holds the lock. */
static void sync_version_locked(struct h5index *idx, const struct remote_file *file)
{
    sqlite3_stmt *s = stmt(idx, ST_FILE_GET);
    sqlite3_bind_text(s, 1, file->identity, -1, SQLITE_STATIC);
    int64_t known = -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        known = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (known == file->file_id)
        return;
    /* Rows under the new id belong to no one this identity knows: drop them too. */
    sqlite3_exec(idx->db, "BEGIN", NULL, NULL, NULL);
    for (int which = 0; which < 2; which++) {
        int64_t id_to_drop = which == 0 ? known : file->file_id;
        for (enum stmt_id id = ST_FILE_DROP_CHUNKS; id_to_drop >= 0 && id <= ST_FILE_DROP_OBJECTS;
             id++) {
            s = stmt(idx, id);
            sqlite3_bind_int64(s, 1, id_to_drop);
            sqlite3_step(s);
            sqlite3_reset(s);
        }
    }
    s = stmt(idx, ST_QUARANTINE_DROP_STALE); /* a new version gets a new chance */
    sqlite3_bind_text(s, 1, file->identity, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, file->file_id);
    sqlite3_bind_text(s, 3, file->validator, -1, SQLITE_STATIC);
    sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_exec(idx->db, "COMMIT", NULL, NULL, NULL);
    if (known >= 0)
        log_info("msg=\"remote file changed: its HDF5 index was dropped\"");
    s = stmt(idx, ST_FILE_PUT);
    sqlite3_bind_text(s, 1, file->identity, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, file->file_id);
    if (sqlite3_step(s) != SQLITE_DONE)
        log_warn("msg=\"cannot record file version\" reason=\"%s\"", sqlite3_errmsg(idx->db));
    sqlite3_reset(s);
}

/* ---- quarantine ---- */

/* -1 with err if the version is quarantined. */
static int check_quarantine(struct h5index *idx, const struct remote_file *file, const char *what,
                            struct h5cd_error *err)
{
    pthread_mutex_lock(&idx->lock);
    sqlite3_stmt *s = stmt(idx, ST_QUARANTINE_GET);
    sqlite3_bind_text(s, 1, file->identity, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, file->file_id);
    sqlite3_bind_text(s, 3, file->validator, -1, SQLITE_STATIC);
    int rc = 0;
    if (sqlite3_step(s) == SQLITE_ROW)
        rc = h5cd_fail(err, H5CD_E_DAMAGED_FILE,
                       "%.200s: quarantined: an HDF5 worker %.120s on this version of the file "
                       "(until it changes upstream or is purged)",
                       what, (const char *)sqlite3_column_text(s, 0));
    sqlite3_reset(s);
    pthread_mutex_unlock(&idx->lock);
    return rc;
}

static void quarantine(struct h5index *idx, const struct remote_file *file, const char *reason)
{
    pthread_mutex_lock(&idx->lock);
    sync_version_locked(idx, file);
    sqlite3_stmt *s = stmt(idx, ST_QUARANTINE_PUT);
    sqlite3_bind_text(s, 1, file->identity, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, file->file_id);
    sqlite3_bind_text(s, 3, file->validator, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)time(NULL));
    if (sqlite3_step(s) != SQLITE_DONE)
        log_warn("msg=\"cannot record a quarantine\" reason=\"%s\"", sqlite3_errmsg(idx->db));
    sqlite3_reset(s);
    pthread_mutex_unlock(&idx->lock);
    STATS_INC(idx->stats, quarantined_files);
    log_warn("msg=\"file version quarantined\" url=\"%s\" reason=\"%s\"", file->url, reason);
}

/*
 * Runs one worker operation for `what` (an object path, for messages).
 * The quarantine is checked first; a worker that crashes or overruns
 * quarantines the version.  0 with call->data, or -1 with err.
 */
static int run_worker(struct h5index *idx, const struct remote_file *file, const char *what,
                      struct workerpool_call *call, struct h5cd_error *err)
{
    if (check_quarantine(idx, file, what, err) < 0)
        return -1;
    call->file = file;
    call->op->prefix_bytes = idx->prefix_bytes;
    call->op->window_first = 0;
    call->op->window_most = 0;
    call->op->window_align = 0;
    if (idx->remote != NULL)
        remote_meta_plan(idx->remote, file, idx->prefix_bytes, &call->op->prefix_bytes,
                         &call->op->window_first, &call->op->window_most, &call->op->window_align);
    if (workerpool_run(idx->pool, call, err) == 0)
        return 0;
    if (call->fate == WORKERPOOL_CRASHED || call->fate == WORKERPOOL_TIMED_OUT ||
        call->fate == WORKERPOOL_MISBEHAVED) {
        quarantine(idx, file, call->reason);
        h5cd_fail(err, H5CD_E_DAMAGED_FILE, "%.200s: the HDF5 worker reading it %.120s", what,
                  call->reason);
    }
    return -1;
}

/* ---- objects ---- */

int h5index_canonical_path(const char *path, char *out, size_t outlen)
{
    if (path == NULL || outlen < 2)
        return -1;
    size_t len = strlen(path);
    if (len > H5CD_MAX_PATH_BYTES)
        return -1;
    while (len > 0 && path[len - 1] == '/')
        len--;
    const char *start = path;
    while (len > 0 && *start == '/') {
        start++;
        len--;
    }
    if (len + 2 > outlen)
        return -1;
    out[0] = '/';
    memcpy(out + 1, start, len);
    out[len + 1] = '\0';
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)out[i + 1] < 0x20 || (out[i + 1] == '/' && out[i + 2] == '/'))
            return -1;
    return 0;
}

/* A fact the worker reported, or UINT64_MAX when it is absent or out of [0, max]. */
static uint64_t fact_value(json_t *facts, const char *name, uint64_t max)
{
    json_t *v = json_object_get(facts, name);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return UINT64_MAX;
    return (uint64_t)json_integer_value(v);
}

/* Where the daemon's own index reader starts; ohdr_address UINT64_MAX when
 * the worker did not say, or said something no HDF5 file has. */
static void reader_facts(json_t *facts, struct h5dataset *ds)
{
    uint64_t so = fact_value(facts, "sizeof_offsets", 8),
             sl = fact_value(facts, "sizeof_lengths", 8);
    uint64_t k = fact_value(facts, "btree_k", 65535);
    uint64_t base = fact_value(facts, "base_address", INT64_MAX);
    ds->ohdr_address = UINT64_MAX;
    if (so == UINT64_MAX || sl == UINT64_MAX || k == UINT64_MAX || base == UINT64_MAX)
        return;
    ds->sizeof_offsets = (unsigned)so;
    ds->sizeof_lengths = (unsigned)sl;
    ds->btree_k = (unsigned)k;
    ds->base_address = base;
    ds->ohdr_address = fact_value(facts, "ohdr_address", INT64_MAX);
}

/* Parses a stored document into the dataset struct.  0, or -1 if it is not a dataset. */
static int dataset_from_doc(json_t *doc, int64_t id, const char *path, struct h5dataset *ds)
{
    json_t *meta = json_object_get(doc, "meta");
    json_t *facts = json_object_get(doc, "facts");
    const char *layout = json_string_value(json_object_get(meta, "layout"));
    json_t *shape = json_object_get(meta, "shape");
    json_t *chunks = json_object_get(meta, "chunks");
    if (facts == NULL || layout == NULL || !json_is_array(shape) || !json_is_array(chunks) ||
        json_array_size(shape) != json_array_size(chunks) || json_array_size(shape) > H5CD_MAX_RANK)
        return -1;
    memset(ds, 0, sizeof(*ds));
    ds->id = id;
    snprintf(ds->path, sizeof(ds->path), "%s", path);
    ds->layout = strcmp(layout, "contiguous") == 0 ? H5LAYOUT_CONTIGUOUS
                 : strcmp(layout, "compact") == 0  ? H5LAYOUT_COMPACT
                                                   : H5LAYOUT_CHUNKED;
    if (strcmp(layout, "virtual") == 0)
        return -1;
    ds->grid.rank = (int)json_array_size(shape);
    ds->row_bytes = (uint64_t)json_integer_value(json_object_get(facts, "elem_size"));
    ds->elem_size = (size_t)ds->row_bytes;
    for (int d = 0; d < ds->grid.rank; d++) {
        ds->grid.shape[d] = (uint64_t)json_integer_value(json_array_get(shape, (size_t)d));
        ds->grid.chunk[d] = (uint64_t)json_integer_value(json_array_get(chunks, (size_t)d));
        if (ds->grid.chunk[d] == 0)
            ds->grid.chunk[d] = 1;
        if (d > 0)
            ds->row_bytes *= ds->grid.shape[d];
    }
    json_t *off = json_object_get(facts, "data_offset");
    ds->data_offset = json_is_integer(off) ? (uint64_t)json_integer_value(off) : UINT64_MAX;
    json_t *filters = json_object_get(meta, "filters");
    ds->nfilters = (unsigned)json_array_size(filters);
    for (unsigned i = 0; i < ds->nfilters && i < H5INDEX_MAX_FILTERS; i++) {
        json_t *filter = json_array_get(filters, i);
        ds->filters[i] = (int)json_integer_value(json_object_get(filter, "id"));
        if (ds->filters[i] == 2) /* H5Z_FILTER_SHUFFLE: libhdf5 unshuffles by its parameter */
            ds->shuffle_elem =
                (uint64_t)json_integer_value(json_array_get(json_object_get(filter, "params"), 0));
    }
    /* Simple dtypes whose stored layout is the value layout (not compounds, which
     * are stored with the file's offsets, nor padded integers). */
    ds->raw_is_values = json_is_string(json_object_get(meta, "dtype")) &&
                        !json_is_false(json_object_get(meta, "raw_matches_dtype"));
    reader_facts(facts, ds);
    return 0;
}

/* The stored document of an object (a new reference, its row id and text size), or NULL.
 * Caller holds the lock and has synced the file's version. */
static json_t *stored_doc_locked(struct h5index *idx, const struct remote_file *file,
                                 const char *path, int64_t *row_id, size_t *bytes)
{
    sqlite3_stmt *s = stmt(idx, ST_OBJECT_GET);
    sqlite3_bind_int64(s, 1, file->file_id);
    sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
    json_t *doc = NULL;
    if (sqlite3_step(s) == SQLITE_ROW) {
        *row_id = sqlite3_column_int64(s, 0);
        doc = json_loads((const char *)sqlite3_column_text(s, 1), 0, NULL);
        *bytes = (size_t)sqlite3_column_bytes(s, 1);
    }
    sqlite3_reset(s);
    return doc;
}

/*
 * Parses a description a worker sent (text, len) and checks its shape:
 * the worker parsed a hostile file.  A new reference and its compact text
 * (malloc'd, to store), or NULL with err.
 */
static json_t *worker_doc(const char *path, const uint8_t *text, size_t len, char **compact,
                          struct h5cd_error *err)
{
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *meta = json_object_get(doc, "meta");
    const char *kind = json_string_value(json_object_get(meta, "kind"));
    if (!json_is_object(meta) || kind == NULL ||
        (strcmp(kind, "dataset") == 0 && !json_is_object(json_object_get(doc, "facts")))) {
        json_decref(doc);
        h5cd_fail(err, H5CD_E_DAMAGED_FILE, "%.200s: the HDF5 worker's description is malformed",
                  path);
        return NULL;
    }
    *compact = json_dumps(doc, JSON_COMPACT);
    if (*compact == NULL) {
        json_decref(doc);
        h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
        return NULL;
    }
    return doc;
}

/* Stores a document's text; its row id.  Caller holds the lock. */
static int64_t store_doc_locked(struct h5index *idx, const struct remote_file *file,
                                const char *path, const char *text)
{
    sqlite3_stmt *s = stmt(idx, ST_OBJECT_PUT);
    sqlite3_bind_int64(s, 1, file->file_id);
    sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, text, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE)
        log_warn("msg=\"cannot store object\" reason=\"%s\"", sqlite3_errmsg(idx->db));
    sqlite3_reset(s);
    return sqlite3_last_insert_rowid(idx->db);
}

/* Finds the stored document of an object, or describes it with libhdf5 and stores it.
 * Returns a new reference to {"meta": ..., "facts": ...} and its row id, or NULL. */
static json_t *object_doc(struct h5index *idx, const struct remote_file *file, const char *path,
                          int64_t *row_id, struct h5cd_error *err)
{
    size_t bytes = 0;
    pthread_mutex_lock(&idx->lock);
    sync_version_locked(idx, file);
    json_t *doc = stored_doc_locked(idx, file, path, row_id, &bytes);
    pthread_mutex_unlock(&idx->lock);
    if (doc != NULL)
        return doc;

    struct wp_op op = {.opcode = WP_OP_DESCRIBE};
    snprintf(op.path, sizeof(op.path), "%s", path);
    struct workerpool_call call = {.op = &op, .max_result = WP_MAX_DOC_BYTES};
    if (run_worker(idx, file, path, &call, err) < 0)
        return NULL;
    char *text = NULL;
    doc = worker_doc(path, call.data, call.len, &text, err);
    free(call.data);
    if (doc == NULL)
        return NULL;
    pthread_mutex_lock(&idx->lock);
    *row_id = store_doc_locked(idx, file, path, text);
    pthread_mutex_unlock(&idx->lock);
    free(text);
    return doc;
}

/* ---- many objects ---- */

/* What h5index_meta_many is filling. */
struct meta_many {
    const struct remote_file *file;
    const char *const *paths; /* canonical; NULL: already answered */
    json_t **metas;
    struct h5cd_error *errs;
    size_t *bytes;
};

/* The meta part of a document (consumed) into slot i. */
static void answer(struct meta_many *m, size_t i, json_t *doc, size_t bytes)
{
    m->metas[i] = json_incref(json_object_get(doc, "meta"));
    json_decref(doc);
    if (m->metas[i] == NULL)
        h5cd_fail(&m->errs[i], H5CD_E_INTERNAL, "corrupt index entry");
    if (m->bytes != NULL)
        m->bytes[i] = bytes;
}

/*
 * Takes the records of one DESCRIBE_MANY answer for the paths want[0..n):
 * documents are checked, stored (one transaction) and answered, errors
 * classified as a single description's would be.  How many paths were
 * answered (a worker may answer fewer), or -1 when the records are
 * malformed or -2 when out of memory (then none is answered).
 */
static ssize_t take_records(struct h5index *idx, struct meta_many *m, const size_t *want, size_t n,
                            const struct workerpool_call *call)
{
    /* The whole answer is checked before any of it is used. */
    size_t pos = 0, done = 0;
    struct wp_doc rec;
    const uint8_t *bytes = NULL;
    int rc = 0;
    while (done < n && (rc = wp_doc_next(call->data, call->len, &pos, &rec, &bytes)) > 0)
        done++;
    if (rc < 0 || done == 0 || (done == n && pos != call->len))
        return -1;
    /* Parsed outside the lock (up to 64 MiB of documents), stored in one transaction. */
    json_t **docs = calloc(done, sizeof(*docs));
    char **texts = calloc(done, sizeof(*texts));
    size_t *lengths = calloc(done, sizeof(*lengths));
    if (docs == NULL || texts == NULL || lengths == NULL) {
        free(docs);
        free(texts);
        free(lengths);
        return -2;
    }
    pos = 0;
    for (size_t k = 0; k < done && wp_doc_next(call->data, call->len, &pos, &rec, &bytes) > 0;
         k++) {
        size_t i = want[k];
        lengths[k] = rec.length;
        if (rec.code == H5CD_OK) {
            docs[k] = worker_doc(m->paths[i], bytes, rec.length, &texts[k], &m->errs[i]);
            continue;
        }
        char message[H5CD_MAX_ERROR_MESSAGE];
        memcpy(message, bytes, rec.length); /* wp_doc_next bounded it */
        message[rec.length] = '\0';
        workerpool_worker_error(call, (enum h5cd_errcode)rec.code, message, &m->errs[i]);
    }
    pthread_mutex_lock(&idx->lock);
    sqlite3_exec(idx->db, "BEGIN", NULL, NULL, NULL);
    for (size_t k = 0; k < done; k++)
        if (docs[k] != NULL)
            store_doc_locked(idx, m->file, m->paths[want[k]], texts[k]);
    sqlite3_exec(idx->db, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_unlock(&idx->lock);
    for (size_t k = 0; k < done; k++) {
        if (docs[k] != NULL)
            answer(m, want[k], docs[k], lengths[k]);
        free(texts[k]);
    }
    free(docs);
    free(texts);
    free(lengths);
    return (ssize_t)done;
}

/* Describes the paths want[0..n) (at most WP_MAX_DESCRIBE_PATHS, WP_MAX_PATHS_BYTES of names)
 * in one worker operation.  How many were answered, or -1 with every one of them failed. */
static ssize_t describe_some(struct h5index *idx, struct meta_many *m, const size_t *want, size_t n,
                             char *names, size_t names_len)
{
    struct wp_op *op = calloc(1, sizeof(*op));
    struct h5cd_error err = {0};
    ssize_t done = -1;
    if (op == NULL) {
        h5cd_fail(&err, H5CD_E_INTERNAL, "out of memory");
    } else {
        op->opcode = WP_OP_DESCRIBE_MANY;
        op->npaths = (uint32_t)n;
        op->paths_len = (uint32_t)names_len;
        snprintf(op->path, sizeof(op->path), "%s", m->paths[want[0]]);
        struct workerpool_call call = {
            .op = op, .paths = names, .max_result = WP_MAX_DOCS_RESULT_BYTES};
        if (run_worker(idx, m->file, m->paths[want[0]], &call, &err) == 0) {
            done = take_records(idx, m, want, n, &call);
            if (done == -2) {
                h5cd_fail(&err, H5CD_E_INTERNAL, "out of memory");
            } else if (done < 0) {
                h5cd_fail(&err, H5CD_E_DAMAGED_FILE,
                          "%.200s: the HDF5 worker's descriptions are malformed",
                          m->paths[want[0]]);
            } else if ((size_t)done < n && call.upstream_error.code != H5CD_OK) {
                /* The worker stopped at a read that failed upstream: so would the rest. */
                for (size_t k = (size_t)done; k < n; k++)
                    m->errs[want[k]] = call.upstream_error;
                done = (ssize_t)n;
            }
        }
        free(call.data);
    }
    free(op);
    if (done < 0) {
        for (size_t k = 0; k < n; k++)
            m->errs[want[k]] = err;
        return -1;
    }
    return done;
}

void h5index_meta_many(struct h5index *idx, const struct remote_file *file,
                       const char *const *paths, size_t n, json_t **metas, struct h5cd_error *errs,
                       size_t *doc_bytes)
{
    char(*canon)[H5CD_MAX_PATH_BYTES + 2] = calloc(n > 0 ? n : 1, sizeof(*canon));
    const char **canon_paths = calloc(n > 0 ? n : 1, sizeof(*canon_paths));
    size_t *want = calloc(n > 0 ? n : 1, sizeof(*want));
    char *names = malloc(WP_MAX_PATHS_BYTES);
    struct meta_many m = {
        .file = file, .paths = canon_paths, .metas = metas, .errs = errs, .bytes = doc_bytes};
    for (size_t i = 0; i < n; i++) {
        metas[i] = NULL;
        errs[i] = (struct h5cd_error){0};
        if (doc_bytes != NULL)
            doc_bytes[i] = 0;
    }
    if (canon == NULL || canon_paths == NULL || want == NULL || names == NULL) {
        for (size_t i = 0; i < n; i++)
            h5cd_fail(&errs[i], H5CD_E_INTERNAL, "out of memory");
        goto done;
    }
    size_t nwant = 0;
    pthread_mutex_lock(&idx->lock);
    sync_version_locked(idx, file);
    for (size_t i = 0; i < n; i++) {
        if (h5index_canonical_path(paths[i], canon[i], sizeof(canon[i])) < 0) {
            h5cd_fail(&errs[i], H5CD_E_BAD_REQUEST, "malformed or too long object path");
            continue;
        }
        canon_paths[i] = canon[i];
        int64_t row_id;
        size_t bytes = 0;
        json_t *doc = stored_doc_locked(idx, file, canon[i], &row_id, &bytes);
        if (doc != NULL)
            answer(&m, i, doc, bytes);
        else
            want[nwant++] = i;
    }
    pthread_mutex_unlock(&idx->lock);
    /* The rest in operations of at most WP_MAX_DESCRIBE_PATHS paths and WP_MAX_PATHS_BYTES. */
    for (size_t from = 0; from < nwant;) {
        size_t count = 0, len = 0;
        while (from + count < nwant && count < WP_MAX_DESCRIBE_PATHS) {
            size_t one = strlen(canon[want[from + count]]) + 1;
            if (one > WP_MAX_PATHS_BYTES - len)
                break;
            memcpy(names + len, canon[want[from + count]], one);
            len += one;
            count++;
        }
        ssize_t done = describe_some(idx, &m, want + from, count, names, len);
        if (done < 0) { /* the rest would fail alike (a quarantine, a lost worker) */
            for (size_t k = from + count; k < nwant; k++)
                errs[want[k]] = errs[want[from]];
            break;
        }
        from += (size_t)done;
    }
done:
    free(names);
    free(want);
    free(canon_paths);
    free(canon);
}

json_t *h5index_meta(struct h5index *idx, const struct remote_file *file, const char *path,
                     struct h5cd_error *err)
{
    char canon[H5CD_MAX_PATH_BYTES + 2];
    if (h5index_canonical_path(path, canon, sizeof(canon)) < 0) {
        h5cd_fail(err, H5CD_E_BAD_REQUEST, "malformed or too long object path");
        return NULL;
    }
    int64_t row_id;
    json_t *doc = object_doc(idx, file, canon, &row_id, err);
    if (doc == NULL)
        return NULL;
    json_t *meta = json_incref(json_object_get(doc, "meta"));
    json_decref(doc);
    if (meta == NULL)
        h5cd_fail(err, H5CD_E_INTERNAL, "corrupt index entry");
    return meta;
}

/* Caller holds the lock. */
static struct recent_dataset *recent_find(struct h5index *idx, int64_t file_id, const char *path)
{
    for (size_t i = 0; i < RECENT_DATASETS; i++)
        if (idx->recent[i].file_id == file_id && strcmp(idx->recent[i].ds.path, path) == 0)
            return &idx->recent[i];
    return NULL;
}

/* Remembers a parsed dataset, replacing the least recently used one. */
static void recent_put(struct h5index *idx, int64_t file_id, const struct h5dataset *ds)
{
    pthread_mutex_lock(&idx->lock);
    struct recent_dataset *slot = recent_find(idx, file_id, ds->path);
    if (slot == NULL) {
        slot = &idx->recent[0];
        for (size_t i = 0; i < RECENT_DATASETS; i++) {
            if (idx->recent[i].file_id == 0) {
                slot = &idx->recent[i];
                break;
            }
            if (idx->recent[i].used < slot->used)
                slot = &idx->recent[i];
        }
    }
    slot->file_id = file_id;
    slot->used = ++idx->tick;
    slot->ds = *ds;
    pthread_mutex_unlock(&idx->lock);
}

int h5index_dataset(struct h5index *idx, const struct remote_file *file, const char *path,
                    struct h5dataset *out, struct h5cd_error *err)
{
    char canon[H5CD_MAX_PATH_BYTES + 2];
    if (h5index_canonical_path(path, canon, sizeof(canon)) < 0)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "malformed or too long object path");
    pthread_mutex_lock(&idx->lock);
    struct recent_dataset *hit = recent_find(idx, file->file_id, canon);
    if (hit != NULL) {
        hit->used = ++idx->tick;
        *out = hit->ds;
    }
    pthread_mutex_unlock(&idx->lock);
    if (hit != NULL)
        return 0;
    int64_t row_id;
    json_t *doc = object_doc(idx, file, canon, &row_id, err);
    if (doc == NULL)
        return -1;
    const char *kind = json_string_value(json_object_get(json_object_get(doc, "meta"), "kind"));
    int rc = 0;
    if (kind == NULL || strcmp(kind, "dataset") != 0)
        rc = h5cd_fail(err, H5CD_E_BAD_REQUEST, "%s is a group, not a dataset", canon);
    else if (dataset_from_doc(doc, row_id, canon, out) < 0)
        rc = h5cd_fail(err, H5CD_E_UNSUPPORTED, "%s has a layout h5chunkd cannot serve", canon);
    else
        recent_put(idx, file->file_id, out);
    json_decref(doc);
    return rc;
}

/* ---- chunk locations ---- */

static void locate_contiguous(const struct h5dataset *ds, const uint64_t *coords,
                              struct h5chunk_loc *loc)
{
    memset(loc, 0, sizeof(*loc));
    if (ds->data_offset == UINT64_MAX)
        return;
    loc->allocated = true;
    if (ds->grid.rank == 0) {
        loc->offset = ds->data_offset;
        loc->size = ds->elem_size;
        return;
    }
    uint64_t rows = ds->grid.chunk[0];
    uint64_t first = coords[0] * rows;
    uint64_t left = ds->grid.shape[0] - first;
    loc->offset = ds->data_offset + first * ds->row_bytes;
    loc->size = (left < rows ? left : rows) * ds->row_bytes;
}

/*
 * Whether the grid's linear chunk indexes, the index's row keys, fit in a
 * sqlite integer.  A hostile file can declare a grid of more than 2^63
 * chunks; its indexes would wrap and two chunks share a row, so such a
 * dataset is never remembered: every lookup walks its index.
 */
static bool grid_indexable(const struct chunkgrid *grid)
{
    uint64_t total = 1;
    for (int d = 0; d < grid->rank; d++) {
        uint64_t count = chunkgrid_count(grid, d);
        if (count != 0 && total > (uint64_t)INT64_MAX / count)
            return false;
        total *= count;
    }
    return true;
}

struct wanted_chunk {
    uint64_t linear; /* row key */
    size_t at;       /* position in the caller's arrays */
};

static int cmp_wanted(const void *a, const void *b)
{
    uint64_t x = ((const struct wanted_chunk *)a)->linear;
    uint64_t y = ((const struct wanted_chunk *)b)->linear;
    return x < y ? -1 : x > y;
}

/* The keys by linear index, ascending (a batch comes sorted already); NULL if out of memory. */
static struct wanted_chunk *sorted_wanted(const struct h5dataset *ds, const uint64_t *coords,
                                          size_t n)
{
    struct wanted_chunk *w = malloc((n > 0 ? n : 1) * sizeof(*w));
    if (w == NULL)
        return NULL;
    bool sorted = true;
    for (size_t i = 0; i < n; i++) {
        w[i] = (struct wanted_chunk){chunkkey_linear(&ds->grid, coords + i * ds->grid.rank), i};
        sorted = sorted && (i == 0 || w[i - 1].linear <= w[i].linear);
    }
    if (!sorted)
        qsort(w, n, sizeof(*w), cmp_wanted);
    return w;
}

/* End of the run of sorted keys from `first` that one range query serves. */
static size_t range_end(const struct wanted_chunk *w, size_t n, size_t first)
{
    size_t end = first + 1;
    while (end < n && w[end].linear - w[end - 1].linear <= RANGE_JOIN_GAP)
        end++;
    return end;
}

/*
 * One range query for the sorted keys w[first, end): the stored rows from
 * the first key to the last, matched to the keys as both advance (a key
 * asked twice gets the row twice).  A failing step leaves the rest unknown:
 * they are then located as if never seen.  Caller holds the lock.
 */
static size_t lookup_range(struct h5index *idx, int64_t object_id, const struct wanted_chunk *w,
                           size_t first, size_t end, struct h5chunk_loc *locs, bool *known)
{
    sqlite3_stmt *s = stmt(idx, ST_CHUNK_RANGE);
    sqlite3_bind_int64(s, 1, object_id);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)w[first].linear);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)w[end - 1].linear);
    size_t k = first, found = 0;
    while (k < end && sqlite3_step(s) == SQLITE_ROW) {
        if (sqlite3_column_type(s, 0) != SQLITE_INTEGER)
            continue; /* not a row we wrote (the database is not trusted) */
        uint64_t linear = (uint64_t)sqlite3_column_int64(s, 0);
        while (k < end && w[k].linear < linear)
            k++;
        for (; k < end && w[k].linear == linear; k++) {
            struct h5chunk_loc *loc = &locs[w[k].at];
            loc->allocated = sqlite3_column_type(s, 1) != SQLITE_NULL;
            loc->offset = (uint64_t)sqlite3_column_int64(s, 1);
            loc->size = (uint64_t)sqlite3_column_int64(s, 2);
            loc->filter_mask = (uint32_t)sqlite3_column_int64(s, 3);
            known[w[k].at] = true;
            found++;
        }
    }
    sqlite3_reset(s);
    return found;
}

/*
 * Index lookups; returns how many chunks were found, marking them in
 * `known`.  The keys are sorted and runs of nearby ones read with one range
 * query each (a warm batch of 1000 adjacent chunks: one query, not 1000).
 * Out of memory for the sort, each key is its own range.
 */
static size_t lookup_known(struct h5index *idx, const struct h5dataset *ds, const uint64_t *coords,
                           size_t n, struct h5chunk_loc *locs, bool *known)
{
    if (n == 0 || !grid_indexable(&ds->grid))
        return 0;
    struct wanted_chunk one;
    struct wanted_chunk *w = sorted_wanted(ds, coords, n);
    size_t ranges = 0;
    for (size_t first = 0; w != NULL && first < n; ranges++)
        first = range_end(w, n, first);
    size_t found = 0;
    pthread_mutex_lock(&idx->lock);
    /* One read transaction for many queries; a single one needs none. */
    bool txn = w == NULL ? n > 1 : ranges > 1;
    if (txn)
        sqlite3_exec(idx->db, "BEGIN", NULL, NULL, NULL);
    if (w != NULL) {
        for (size_t first = 0, end; first < n; first = end) {
            end = range_end(w, n, first);
            found += lookup_range(idx, ds->id, w, first, end, locs, known);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            one = (struct wanted_chunk){chunkkey_linear(&ds->grid, coords + i * ds->grid.rank), i};
            found += lookup_range(idx, ds->id, &one, 0, 1, locs, known);
        }
    }
    if (txn)
        sqlite3_exec(idx->db, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_unlock(&idx->lock);
    free(w);
    return found;
}

static void store_locations(struct h5index *idx, const struct h5dataset *ds, const uint64_t *coords,
                            size_t n, const struct h5chunk_loc *locs, const bool *known)
{
    int rank = ds->grid.rank;
    if (!grid_indexable(&ds->grid))
        return;
    pthread_mutex_lock(&idx->lock);
    sqlite3_exec(idx->db, "BEGIN", NULL, NULL, NULL);
    for (size_t i = 0; i < n; i++) {
        if (known[i])
            continue;
        sqlite3_stmt *s = stmt(idx, ST_CHUNK_PUT);
        sqlite3_bind_int64(s, 1, ds->id);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)chunkkey_linear(&ds->grid, coords + i * rank));
        if (locs[i].allocated)
            sqlite3_bind_int64(s, 3, (sqlite3_int64)locs[i].offset);
        sqlite3_bind_int64(s, 4, (sqlite3_int64)locs[i].size);
        sqlite3_bind_int64(s, 5, locs[i].filter_mask);
        if (sqlite3_step(s) != SQLITE_DONE)
            log_warn("msg=\"cannot store chunk location\" reason=\"%s\"", sqlite3_errmsg(idx->db));
        sqlite3_reset(s);
    }
    sqlite3_exec(idx->db, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_unlock(&idx->lock);
}

/* Resolves the unknown chunks of a chunked dataset in a worker, in pieces of
 * WP_MAX_LOCATE_KEYS, all on one file version. */
static int resolve_with_worker(struct h5index *idx, const struct remote_file *file,
                               const struct h5dataset *ds, const uint64_t *coords, size_t n,
                               struct h5chunk_loc *locs, const bool *known, struct h5cd_error *err)
{
    size_t rank = (size_t)ds->grid.rank;
    uint64_t *batch = malloc(WP_MAX_LOCATE_KEYS * (rank > 0 ? rank : 1) * sizeof(*batch));
    size_t *slots = malloc(WP_MAX_LOCATE_KEYS * sizeof(*slots));
    struct wp_op *op = calloc(1, sizeof(*op));
    if (batch == NULL || slots == NULL || op == NULL) {
        free(batch);
        free(slots);
        free(op);
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    }
    op->opcode = WP_OP_LOCATE;
    op->ds = *ds;
    int rc = 0;
    uint64_t lookups = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t m = 0;
        for (; i < n && m < WP_MAX_LOCATE_KEYS; i++) {
            if (known[i])
                continue;
            memcpy(batch + m * rank, coords + i * rank, rank * sizeof(*batch));
            slots[m++] = i;
        }
        if (m == 0)
            break;
        op->ncoords = (uint32_t)m;
        struct workerpool_call call = {
            .op = op, .coords = batch, .max_result = m * sizeof(struct wp_loc)};
        rc = run_worker(idx, file, ds->path, &call, err);
        if (rc == 0 && call.len != m * sizeof(struct wp_loc))
            rc = h5cd_fail(err, H5CD_E_DAMAGED_FILE, "%.200s: the HDF5 worker's answer is short",
                           ds->path);
        for (size_t k = 0; rc == 0 && k < m; k++) {
            struct wp_loc loc;
            memcpy(&loc, call.data + k * sizeof(loc), sizeof(loc));
            struct h5chunk_loc *out = &locs[slots[k]];
            out->allocated = loc.allocated != 0 && loc.size > 0;
            out->offset = out->allocated ? loc.offset : 0;
            out->size = out->allocated ? loc.size : 0;
            out->filter_mask = loc.filter_mask;
            /* Where a chunk lies is checked when it is read (inside the file). */
        }
        free(call.data);
        lookups += m;
    }
    free(batch);
    free(slots);
    free(op);
    STATS_ADD(idx->stats, h5_lookups, lookups);
    return rc;
}

/*
 * The unknown chunks: walked by our own reader in the daemon when the
 * worker gave its facts, else (or when the reader falls back: something it
 * does not handle, or facts that disagree with libhdf5's) by libhdf5 in a
 * worker.  An index whose bytes break the format is refused (422): libhdf5
 * may walk it without noticing and answer another chunk's bytes.  Upstream
 * failures of the walk are the request's errors, not fallbacks.
 */
static int resolve_unknown(struct h5index *idx, const struct remote_file *file,
                           const struct h5dataset *ds, const uint64_t *coords, size_t n,
                           struct h5chunk_loc *locs, const bool *known, struct h5cd_error *err)
{
    if (idx->remote != NULL && check_quarantine(idx, file, ds->path, err) < 0)
        return -1;
    if (idx->remote != NULL) { /* without facts from libhdf5 it falls back, counted */
        struct chunkwalk_target target = {.remote = idx->remote, .file = file, .ds = ds};
        char reason[H5CHUNKINDEX_REASON_BYTES];
        int rc = chunkwalk_locate(&target, coords, n, known, locs, reason, err);
        if (rc <= 0) {
            for (size_t i = 0; rc == 0 && i < n; i++)
                STATS_ADD(idx->stats, walk_lookups, !known[i]);
            return rc;
        }
        if (rc == CHUNKWALK_DAMAGED)
            return h5cd_fail(err, H5CD_E_DAMAGED_FILE, "%.200s: its chunk index is damaged: %s",
                             ds->path, reason);
        STATS_INC(idx->stats, index_fallbacks);
        log_info("msg=\"chunk index read by libhdf5 instead\" path=\"%.200s\" reason=\"%s\"",
                 ds->path, reason);
    }
    return resolve_with_worker(idx, file, ds, coords, n, locs, known, err);
}

int h5index_locate(struct h5index *idx, const struct remote_file *file, const struct h5dataset *ds,
                   const uint64_t *coords, size_t n, struct h5chunk_loc *locs,
                   struct h5cd_error *err)
{
    if (ds->layout == H5LAYOUT_CONTIGUOUS) {
        for (size_t i = 0; i < n; i++)
            locate_contiguous(ds, coords + i * ds->grid.rank, &locs[i]);
        STATS_ADD(idx->stats, index_hits, n);
        return 0;
    }
    if (ds->layout != H5LAYOUT_CHUNKED)
        return h5cd_fail(err, H5CD_E_INTERNAL, "compact datasets have no chunk locations");
    bool *known = calloc(n > 0 ? n : 1, sizeof(*known));
    if (known == NULL)
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    memset(locs, 0, n * sizeof(*locs));
    size_t found = lookup_known(idx, ds, coords, n, locs, known);
    STATS_ADD(idx->stats, index_hits, found);
    int rc = 0;
    if (found < n) {
        rc = resolve_unknown(idx, file, ds, coords, n, locs, known, err);
        if (rc == 0)
            store_locations(idx, ds, coords, n, locs, known);
    }
    free(known);
    return rc;
}

/* Reads a compact dataset's bytes, as stored, in a worker. */
static int read_compact(struct h5index *idx, const struct remote_file *file,
                        const struct h5dataset *ds, uint8_t **data, size_t *len,
                        struct h5cd_error *err)
{
    struct wp_op op = {.opcode = WP_OP_COMPACT, .ds = *ds, .max_bytes = idx->max_decode_bytes};
    struct workerpool_call call = {.op = &op, .max_result = idx->max_decode_bytes};
    int rc = run_worker(idx, file, ds->path, &call, err);
    STATS_INC(idx->stats, h5_lookups);
    if (rc < 0)
        return -1;
    if (call.len > INT32_MAX) {
        free(call.data);
        return h5cd_fail(err, H5CD_E_TOO_LARGE, "compact dataset %.200s is too large", ds->path);
    }
    *data = call.data;
    *len = call.len;
    return 0;
}

int h5index_compact_bytes(struct h5index *idx, const struct remote_file *file,
                          const struct h5dataset *ds, uint8_t **data, size_t *len,
                          struct h5cd_error *err)
{
    *data = NULL;
    *len = 0;
    pthread_mutex_lock(&idx->lock);
    sqlite3_stmt *s = stmt(idx, ST_CHUNK_GET);
    sqlite3_bind_int64(s, 1, ds->id);
    sqlite3_bind_int64(s, 2, 0);
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 3) == SQLITE_BLOB) {
        int n = sqlite3_column_bytes(s, 3);
        *data = malloc(n > 0 ? (size_t)n : 1);
        if (*data != NULL) {
            memcpy(*data, sqlite3_column_blob(s, 3), (size_t)n);
            *len = (size_t)n;
        }
    }
    sqlite3_reset(s);
    pthread_mutex_unlock(&idx->lock);
    if (*data != NULL) {
        STATS_INC(idx->stats, index_hits);
        return 0;
    }
    if (read_compact(idx, file, ds, data, len, err) < 0)
        return -1;
    pthread_mutex_lock(&idx->lock);
    s = stmt(idx, ST_CHUNK_PUT);
    sqlite3_bind_int64(s, 1, ds->id);
    sqlite3_bind_int64(s, 2, 0);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)*len);
    sqlite3_bind_int64(s, 5, 0);
    sqlite3_bind_blob(s, 6, *data, (int)*len, SQLITE_STATIC);
    sqlite3_step(s);
    sqlite3_reset(s);
    pthread_mutex_unlock(&idx->lock);
    return 0;
}

int h5index_check_decode_size(const struct h5index *idx, const struct h5dataset *ds,
                              struct h5cd_error *err)
{
    uint64_t bytes = ds->elem_size > 0 ? ds->elem_size : 1;
    for (int d = 0; d < ds->grid.rank; d++) {
        if (ds->grid.chunk[d] != 0 && bytes > idx->max_decode_bytes / ds->grid.chunk[d])
            bytes = UINT64_MAX;
        else
            bytes *= ds->grid.chunk[d];
    }
    if (bytes <= idx->max_decode_bytes)
        return 0;
    return h5cd_fail(err, H5CD_E_TOO_LARGE,
                     "a chunk of %.200s decodes to more than max_decode_bytes (%llu bytes)",
                     ds->path, (unsigned long long)idx->max_decode_bytes);
}

static int decode_in_worker(struct h5index *idx, const struct remote_file *file,
                            const struct h5dataset *ds, const uint64_t *coords, bool never_written,
                            uint8_t **out, size_t *len, struct h5cd_error *err)
{
    struct wp_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    *op = (struct wp_op){.opcode = WP_OP_DECODE,
                         .ncoords = 1,
                         .never_written = never_written,
                         .ds = *ds,
                         .max_bytes = idx->max_decode_bytes};
    struct workerpool_call call = {
        .op = op, .coords = coords, .max_result = idx->max_decode_bytes, .budgeted = true};
    int rc = run_worker(idx, file, ds->path, &call, err);
    free(op);
    if (rc < 0)
        return -1;
    *out = call.data;
    *len = call.len;
    return 0;
}

int h5index_decode_chunk(struct h5index *idx, const struct remote_file *file,
                         const struct h5dataset *ds, const uint64_t *coords, uint8_t **out,
                         size_t *len, struct h5cd_error *err)
{
    return decode_in_worker(idx, file, ds, coords, false, out, len, err);
}

int h5index_fill_chunk(struct h5index *idx, const struct remote_file *file,
                       const struct h5dataset *ds, const uint64_t *coords, uint8_t **out,
                       size_t *len, struct h5cd_error *err)
{
    return decode_in_worker(idx, file, ds, coords, true, out, len, err);
}

int h5index_slice(struct h5index *idx, const struct remote_file *file, const struct h5dataset *ds,
                  const struct selection *sel, uint64_t max_bytes, struct h5slice *out,
                  struct h5cd_error *err)
{
    if (max_bytes > idx->max_decode_bytes)
        max_bytes = idx->max_decode_bytes;
    struct wp_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    *op = (struct wp_op){.opcode = WP_OP_SLICE, .ds = *ds, .sel = *sel, .max_bytes = max_bytes};
    struct workerpool_call call = {.op = op, .max_result = max_bytes, .budgeted = true};
    int rc = run_worker(idx, file, ds->path, &call, err);
    free(op);
    if (rc < 0)
        return -1;
    if (call.format != H5DECODE_FIXED && call.format != H5DECODE_VLEN_UTF8) {
        workerpool_free_values(call.data);
        return h5cd_fail(err, H5CD_E_DAMAGED_FILE, "%.200s: the HDF5 worker's answer is malformed",
                         ds->path);
    }
    out->data = call.data;
    out->len = call.len;
    out->format = (enum h5decode_format)call.format;
    out->elem_size = (size_t)call.elem_size;
    return 0;
}

void h5index_free_values(void *data)
{
    workerpool_free_values(data);
}

char *h5index_get_doc(struct h5index *idx, const struct remote_file *file, const char *name)
{
    char *text = NULL;
    pthread_mutex_lock(&idx->lock);
    sync_version_locked(idx, file);
    sqlite3_stmt *s = stmt(idx, ST_OBJECT_GET);
    sqlite3_bind_int64(s, 1, file->file_id);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
        text = strdup((const char *)sqlite3_column_text(s, 1));
    sqlite3_reset(s);
    pthread_mutex_unlock(&idx->lock);
    return text;
}

void h5index_put_doc(struct h5index *idx, const struct remote_file *file, const char *name,
                     const char *text)
{
    pthread_mutex_lock(&idx->lock);
    sqlite3_stmt *s = stmt(idx, ST_OBJECT_PUT);
    sqlite3_bind_int64(s, 1, file->file_id);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, text, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE)
        log_warn("msg=\"cannot store document\" reason=\"%s\"", sqlite3_errmsg(idx->db));
    sqlite3_reset(s);
    pthread_mutex_unlock(&idx->lock);
}

/* Forgets one file (identity) or, with identity NULL, every file. */
int h5index_forget(struct h5index *idx, const char *identity)
{
    pthread_mutex_lock(&idx->lock);
    int64_t file_id = -1;
    if (identity != NULL) {
        sqlite3_stmt *s = stmt(idx, ST_FILE_GET);
        sqlite3_bind_text(s, 1, identity, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW)
            file_id = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
    }
    int rc = 0;
    sqlite3_exec(idx->db, "BEGIN", NULL, NULL, NULL);
    if (identity == NULL) {
        rc = sqlite3_exec(idx->db,
                          "DELETE FROM chunks; DELETE FROM objects; DELETE FROM files;"
                          "DELETE FROM quarantine;",
                          NULL, NULL, NULL) == SQLITE_OK
                 ? 0
                 : -EIO;
    } else {
        sqlite3_stmt *q = stmt(idx, ST_QUARANTINE_DROP);
        sqlite3_bind_text(q, 1, identity, -1, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE)
            rc = -EIO;
        sqlite3_reset(q);
    }
    if (identity != NULL && file_id >= 0) {
        for (enum stmt_id id = ST_FILE_DROP_CHUNKS; id <= ST_FILE_DROP_OBJECTS; id++) {
            sqlite3_stmt *s = stmt(idx, id);
            sqlite3_bind_int64(s, 1, file_id);
            if (sqlite3_step(s) != SQLITE_DONE)
                rc = -EIO;
            sqlite3_reset(s);
        }
        char *sql = sqlite3_mprintf("DELETE FROM files WHERE identity = %Q", identity);
        if (sql == NULL || sqlite3_exec(idx->db, sql, NULL, NULL, NULL) != SQLITE_OK)
            rc = -EIO;
        sqlite3_free(sql);
    }
    sqlite3_exec(idx->db, rc == 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
    for (size_t i = 0; i < RECENT_DATASETS; i++)
        if (identity == NULL || idx->recent[i].file_id == file_id)
            idx->recent[i].file_id = 0;
    pthread_mutex_unlock(&idx->lock);
    return rc;
}
