/*
 * h5index.c - the persistent index of HDF5 objects and chunk locations.
 *
 * Owns <cache dir>/h5index.sqlite (WAL): which cache file id each remote
 * file identity had when it was indexed, one row per described object
 * (its /v1/meta document plus the few layout facts batches need), and one
 * row per located chunk (NULL offset for a chunk never written, a BLOB for
 * a compact dataset's bytes).  Also owns a small table of open libhdf5
 * file handles (through lib/h5vfd.c), shared by all threads and closed
 * least-recently-used first.
 *
 * Locking: `lock` guards sqlite and the handle table and is never held
 * across a libhdf5 call (libhdf5 has its own global lock and its calls may
 * wait on upstream reads).
 */
#include "h5index.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5filters.h"
#include "h5meta.h"
#include "h5vfd.h"
#include "log.h"

#define DEFAULT_MAX_OPEN_FILES 16
#define MAX_OPEN_FILES         64
#define SCHEMA_VERSION         1
/* How objects are described: documents of another version are dropped at
 * open (the index only caches libhdf5's answers).  2: object_id, bitfield and
 * H5T_ARRAY dtypes, stored element size of contiguous variable-length data. */
#define DOC_VERSION     2
#define RECENT_DATASETS 64 /* parsed dataset descriptions kept in memory */

struct openfile {
    int64_t file_id;
    hid_t fid;
    unsigned refs;
    uint64_t last_used;
    bool stale; /* its version was superseded: close once unused */
};

enum stmt_id {
    ST_FILE_GET,
    ST_FILE_PUT,
    ST_FILE_DROP_CHUNKS,
    ST_FILE_DROP_OBJECTS,
    ST_OBJECT_GET,
    ST_OBJECT_PUT,
    ST_CHUNK_GET,
    ST_CHUNK_PUT,
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
    [ST_CHUNK_PUT] = "INSERT OR REPLACE INTO chunks(object_id, idx, offset, size, mask, data) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
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
    " PRIMARY KEY(object_id, idx)) WITHOUT ROWID;";

struct h5index {
    struct remote *remote;
    struct h5cd_stats *stats;
    uint64_t prefix_bytes;
    pthread_mutex_t lock;
    sqlite3 *db;
    sqlite3_stmt *stmts[ST_COUNT];
    struct openfile *files;
    size_t nfiles, maxfiles;
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
    snprintf(sql, sizeof(sql),
             "BEGIN; DELETE FROM chunks; DELETE FROM objects; DELETE FROM files;"
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

int h5index_open(const struct h5index_config *cfg, struct remote *remote, struct h5cd_stats *stats,
                 struct h5index **out)
{
    /* Our own decoders for LZF, LZO, blosc, bitshuffle, zstd and lz4 (lib/h5filters.c). */
    if (h5filters_register() < 0)
        log_warn("msg=\"libhdf5 refused a filter decoder\"");
    struct h5index *idx = calloc(1, sizeof(*idx));
    if (idx == NULL)
        return -ENOMEM;
    idx->remote = remote;
    idx->stats = stats;
    idx->prefix_bytes = cfg->prefix_bytes;
    idx->maxfiles = cfg->max_open_files ? cfg->max_open_files : DEFAULT_MAX_OPEN_FILES;
    if (idx->maxfiles > MAX_OPEN_FILES)
        idx->maxfiles = MAX_OPEN_FILES;
    idx->files = calloc(idx->maxfiles, sizeof(*idx->files));
    if (idx->files == NULL || pthread_mutex_init(&idx->lock, NULL) != 0) {
        free(idx->files);
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
        free(idx->files);
        free(idx);
        return -ENOMEM;
    }
    if (h5vfd_register() < 0) {
        h5index_close(idx);
        return -EIO;
    }
    *out = idx;
    return 0;
}

void h5index_close(struct h5index *idx)
{
    if (idx == NULL)
        return;
    for (size_t i = 0; i < idx->nfiles; i++)
        H5Fclose(idx->files[i].fid);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(idx->stmts[i]);
    sqlite3_close(idx->db);
    pthread_mutex_destroy(&idx->lock);
    free(idx->files);
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
    sqlite3_exec(idx->db, "COMMIT", NULL, NULL, NULL);
    if (known >= 0) {
        for (size_t i = 0; i < idx->nfiles; i++)
            if (idx->files[i].file_id == known)
                idx->files[i].stale = true;
        log_info("msg=\"remote file changed: its HDF5 index was dropped\"");
    }
    s = stmt(idx, ST_FILE_PUT);
    sqlite3_bind_text(s, 1, file->identity, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, file->file_id);
    if (sqlite3_step(s) != SQLITE_DONE)
        log_warn("msg=\"cannot record file version\" reason=\"%s\"", sqlite3_errmsg(idx->db));
    sqlite3_reset(s);
}

/* ---- libhdf5 file handles ---- */

/* Closes handles that are stale and unused, and the least recently used unused one
 * when the table is full.  Collects them in `close_ids` (closed after unlocking). */
static size_t prune_locked(struct h5index *idx, hid_t *close_ids, bool need_slot)
{
    size_t n = 0;
    for (size_t i = 0; i < idx->nfiles;) {
        if (idx->files[i].stale && idx->files[i].refs == 0) {
            close_ids[n++] = idx->files[i].fid;
            idx->files[i] = idx->files[--idx->nfiles];
            continue;
        }
        i++;
    }
    if (!need_slot || idx->nfiles < idx->maxfiles)
        return n;
    size_t victim = SIZE_MAX;
    for (size_t i = 0; i < idx->nfiles; i++)
        if (idx->files[i].refs == 0 &&
            (victim == SIZE_MAX || idx->files[i].last_used < idx->files[victim].last_used))
            victim = i;
    if (victim != SIZE_MAX) {
        close_ids[n++] = idx->files[victim].fid;
        idx->files[victim] = idx->files[--idx->nfiles];
    }
    return n;
}

static void close_all(hid_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        H5Fclose(ids[i]);
}

/* Opens the file through the cache, or shares a handle already open.  -1 with err. */
static hid_t acquire_file(struct h5index *idx, const struct remote_file *file,
                          struct h5cd_error *err)
{
    pthread_mutex_lock(&idx->lock);
    for (size_t i = 0; i < idx->nfiles; i++) {
        struct openfile *of = &idx->files[i];
        if (of->file_id == file->file_id && !of->stale) {
            of->refs++;
            of->last_used = ++idx->tick;
            pthread_mutex_unlock(&idx->lock);
            return of->fid;
        }
    }
    pthread_mutex_unlock(&idx->lock);

    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || h5vfd_set_fapl(fapl, idx->remote, file, idx->prefix_bytes) < 0) {
        if (fapl >= 0)
            H5Pclose(fapl);
        h5cd_fail(err, H5CD_E_INTERNAL, "cannot set up the HDF5 file driver");
        return -1;
    }
    h5vfd_take_error(NULL);
    hid_t fid = H5Fopen(file->identity, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (fid < 0) {
        if (!h5vfd_take_error(err))
            h5cd_fail(err, H5CD_E_BAD_REQUEST, "the remote file is not an HDF5 file");
        return -1;
    }
    hid_t to_close[MAX_OPEN_FILES + 1];
    pthread_mutex_lock(&idx->lock);
    size_t nclose = prune_locked(idx, to_close, true);
    if (idx->nfiles < idx->maxfiles) {
        idx->files[idx->nfiles++] = (struct openfile){
            .file_id = file->file_id, .fid = fid, .refs = 1, .last_used = ++idx->tick};
    } else {
        /* Every handle is in use: this one lives for this call only. */
        log_debug("msg=\"open-file table full\"");
    }
    pthread_mutex_unlock(&idx->lock);
    close_all(to_close, nclose);
    return fid;
}

static void release_file(struct h5index *idx, hid_t fid)
{
    bool listed = false;
    hid_t to_close[MAX_OPEN_FILES + 1];
    pthread_mutex_lock(&idx->lock);
    for (size_t i = 0; i < idx->nfiles; i++) {
        if (idx->files[i].fid == fid) {
            idx->files[i].refs--;
            listed = true;
            break;
        }
    }
    size_t nclose = prune_locked(idx, to_close, false);
    pthread_mutex_unlock(&idx->lock);
    close_all(to_close, nclose);
    if (!listed)
        H5Fclose(fid);
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

/* Layout facts a batch needs, derived from the /v1/meta document and libhdf5.
 * Only contiguous data needs its address: asking a chunked dataset for its
 * storage size would walk its whole chunk index. */
static json_t *index_facts(hid_t fid, const char *path, bool contiguous)
{
    hid_t dset = H5Dopen2(fid, path, H5P_DEFAULT);
    if (dset < 0)
        return NULL;
    hid_t type = H5Dget_type(dset);
    size_t elem = type >= 0 ? H5Tget_size(type) : 0;
    if (type >= 0)
        H5Tclose(type);
    haddr_t addr = contiguous ? H5Dget_offset(dset) : HADDR_UNDEF;
    hsize_t storage = contiguous ? H5Dget_storage_size(dset) : 0;
    /* H5Dget_type gives variable-length types in their memory form (a pointer),
     * not the 16-byte heap id the file stores: contiguous storage tells the truth. */
    hid_t space = H5Dget_space(dset);
    hssize_t npoints = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (space >= 0)
        H5Sclose(space);
    if (storage > 0 && npoints > 0 && storage % (hsize_t)npoints == 0)
        elem = (size_t)(storage / (hsize_t)npoints);
    H5Dclose(dset);
    json_t *facts = json_object();
    json_object_set_new(facts, "elem_size", json_integer((json_int_t)elem));
    json_object_set_new(facts, "data_offset",
                        addr == HADDR_UNDEF || storage == 0 ? json_null()
                                                            : json_integer((json_int_t)addr));
    return facts;
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
    return 0;
}

/* Finds the stored document of an object, or describes it with libhdf5 and stores it.
 * Returns a new reference to {"meta": ..., "facts": ...} and its row id, or NULL. */
static json_t *object_doc(struct h5index *idx, const struct remote_file *file, const char *path,
                          int64_t *row_id, struct h5cd_error *err)
{
    pthread_mutex_lock(&idx->lock);
    sync_version_locked(idx, file);
    sqlite3_stmt *s = stmt(idx, ST_OBJECT_GET);
    sqlite3_bind_int64(s, 1, file->file_id);
    sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
    json_t *doc = NULL;
    if (sqlite3_step(s) == SQLITE_ROW) {
        *row_id = sqlite3_column_int64(s, 0);
        doc = json_loads((const char *)sqlite3_column_text(s, 1), 0, NULL);
    }
    sqlite3_reset(s);
    pthread_mutex_unlock(&idx->lock);
    if (doc != NULL)
        return doc;

    hid_t fid = acquire_file(idx, file, err);
    if (fid < 0)
        return NULL;
    h5vfd_take_error(NULL);
    json_t *meta = h5meta_describe(fid, path, err);
    if (meta == NULL) {
        h5vfd_take_error(err); /* an upstream failure explains it better than "not found" */
        release_file(idx, fid);
        return NULL;
    }
    doc = json_pack("{s:o}", "meta", meta);
    const char *kind = json_string_value(json_object_get(meta, "kind"));
    if (doc != NULL && kind != NULL && strcmp(kind, "dataset") == 0) {
        const char *layout = json_string_value(json_object_get(meta, "layout"));
        json_t *facts = index_facts(fid, path, layout != NULL && strcmp(layout, "contiguous") == 0);
        if (facts == NULL) {
            json_decref(doc);
            release_file(idx, fid);
            if (!h5vfd_take_error(err))
                h5cd_fail(err, H5CD_E_INTERNAL, "cannot read the dataset's layout");
            return NULL;
        }
        json_object_set_new(doc, "facts", facts);
    }
    release_file(idx, fid);
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (text == NULL) {
        json_decref(doc);
        h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
        return NULL;
    }
    pthread_mutex_lock(&idx->lock);
    s = stmt(idx, ST_OBJECT_PUT);
    sqlite3_bind_int64(s, 1, file->file_id);
    sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, text, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE)
        log_warn("msg=\"cannot store object\" reason=\"%s\"", sqlite3_errmsg(idx->db));
    sqlite3_reset(s);
    *row_id = sqlite3_last_insert_rowid(idx->db);
    pthread_mutex_unlock(&idx->lock);
    free(text);
    return doc;
}

json_t *h5index_meta(struct h5index *idx, const struct remote_file *file, const char *path,
                     struct h5cd_error *err)
{
    char canon[H5CD_MAX_PATH_BYTES + 2];
    if (h5index_canonical_path(path, canon, sizeof(canon)) < 0) {
        h5cd_fail(err, H5CD_E_BAD_REQUEST, "malformed or too long object path");
        return NULL;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
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
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
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

/* Index lookups; returns how many chunks were found, marking them in `known`. */
static size_t lookup_known(struct h5index *idx, const struct h5dataset *ds, const uint64_t *coords,
                           size_t n, struct h5chunk_loc *locs, bool *known)
{
    size_t found = 0;
    int rank = ds->grid.rank;
    pthread_mutex_lock(&idx->lock);
    /* One read transaction for many lookups; a single lookup needs none. */
    if (n > 1)
        sqlite3_exec(idx->db, "BEGIN", NULL, NULL, NULL);
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *s = stmt(idx, ST_CHUNK_GET);
        sqlite3_bind_int64(s, 1, ds->id);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)chunkkey_linear(&ds->grid, coords + i * rank));
        if (sqlite3_step(s) == SQLITE_ROW) {
            known[i] = true;
            found++;
            locs[i].allocated = sqlite3_column_type(s, 0) != SQLITE_NULL;
            locs[i].offset = (uint64_t)sqlite3_column_int64(s, 0);
            locs[i].size = (uint64_t)sqlite3_column_int64(s, 1);
            locs[i].filter_mask = (uint32_t)sqlite3_column_int64(s, 2);
        }
        sqlite3_reset(s);
    }
    if (n > 1)
        sqlite3_exec(idx->db, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_unlock(&idx->lock);
    return found;
}

static void store_locations(struct h5index *idx, const struct h5dataset *ds, const uint64_t *coords,
                            size_t n, const struct h5chunk_loc *locs, const bool *known)
{
    int rank = ds->grid.rank;
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

/* A reusable buffer for H5Dread_chunk's (zero-filled, never fetched) output. */
struct scratch {
    uint8_t *data;
    size_t cap;
};

/*
 * Finds a chunk in O(log n) index reads: H5Dget_chunk_storage_size gives its
 * stored size (0: never written), and H5Dread_chunk under an h5vfd capture
 * gives its address without reading its bytes.  -1 when that did not work
 * (the caller falls back to H5Dget_chunk_info_by_coord).
 */
static int locate_fast(hid_t dset, const hsize_t *offset, struct scratch *scratch, unsigned *mask,
                       haddr_t *addr, hsize_t *size)
{
    hsize_t nbytes = 0;
    if (H5Dget_chunk_storage_size(dset, offset, &nbytes) < 0)
        return -1;
    if (nbytes == 0) {
        *addr = HADDR_UNDEF;
        *size = 0;
        *mask = 0;
        return 0;
    }
    if (nbytes > scratch->cap) {
        if (nbytes > 1024ULL * 1024 * 1024)
            return -1;
        uint8_t *bigger = realloc(scratch->data, (size_t)nbytes);
        if (bigger == NULL)
            return -1;
        scratch->data = bigger;
        scratch->cap = (size_t)nbytes;
    }
    uint32_t filters = 0;
    uint64_t at = 0, len = 0;
    h5vfd_capture_begin();
    herr_t rc = H5Dread_chunk(dset, H5P_DEFAULT, offset, &filters, scratch->data);
    bool seen = h5vfd_capture_end(&at, &len);
    if (rc < 0 || !seen || len != nbytes)
        return -1;
    *addr = (haddr_t)at;
    *size = nbytes;
    *mask = filters;
    return 0;
}

/* Resolves the unknown chunks of a chunked dataset with libhdf5, in one pass. */
static int resolve_with_hdf5(struct h5index *idx, const struct remote_file *file,
                             const struct h5dataset *ds, const uint64_t *coords, size_t n,
                             struct h5chunk_loc *locs, const bool *known, struct h5cd_error *err)
{
    hid_t fid = acquire_file(idx, file, err);
    if (fid < 0)
        return -1;
    int rc = 0;
    hid_t dset = H5Dopen2(fid, ds->path, H5P_DEFAULT);
    if (dset < 0) {
        release_file(idx, fid);
        if (!h5vfd_take_error(err))
            h5cd_fail(err, H5CD_E_NOT_FOUND, "no dataset at %s", ds->path);
        return -1;
    }
    int rank = ds->grid.rank;
    uint64_t lookups = 0;
    struct scratch scratch = {0};
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (known[i])
            continue;
        hsize_t offset[H5CD_MAX_RANK];
        for (int d = 0; d < rank; d++)
            offset[d] = coords[i * rank + d] * ds->grid.chunk[d];
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        hsize_t size = 0;
        if (locate_fast(dset, offset, &scratch, &mask, &addr, &size) < 0 &&
            H5Dget_chunk_info_by_coord(dset, offset, &mask, &addr, &size) < 0) {
            if (!h5vfd_take_error(err))
                h5cd_fail(err, H5CD_E_INTERNAL, "libhdf5 could not locate a chunk of %s", ds->path);
            rc = -1;
            break;
        }
        lookups++;
        locs[i].allocated = addr != HADDR_UNDEF && size > 0;
        locs[i].offset = locs[i].allocated ? (uint64_t)addr : 0;
        locs[i].size = locs[i].allocated ? (uint64_t)size : 0;
        locs[i].filter_mask = mask;
    }
    free(scratch.data);
    H5Dclose(dset);
    release_file(idx, fid);
    STATS_ADD(idx->stats, h5_lookups, lookups);
    return rc;
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
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        rc = resolve_with_hdf5(idx, file, ds, coords, n, locs, known, err);
        if (rc == 0)
            store_locations(idx, ds, coords, n, locs, known);
    }
    free(known);
    return rc;
}

/* Reads a compact dataset's bytes, as stored, through libhdf5. */
static int read_compact(struct h5index *idx, const struct remote_file *file,
                        const struct h5dataset *ds, uint8_t **data, size_t *len,
                        struct h5cd_error *err)
{
    hid_t fid = acquire_file(idx, file, err);
    if (fid < 0)
        return -1;
    hid_t dset = H5Dopen2(fid, ds->path, H5P_DEFAULT);
    hid_t type = dset >= 0 ? H5Dget_type(dset) : -1;
    hssize_t count = -1;
    if (dset >= 0) {
        hid_t space = H5Dget_space(dset);
        count = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
        if (space >= 0)
            H5Sclose(space);
    }
    int rc = -1;
    if (type >= 0 && count >= 0 && H5Tis_variable_str(type) == 0 &&
        H5Tdetect_class(type, H5T_VLEN) == 0 && H5Tdetect_class(type, H5T_REFERENCE) == 0) {
        *len = (size_t)count * H5Tget_size(type);
        *data = malloc(*len > 0 ? *len : 1);
        if (*data != NULL && H5Dread(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) >= 0)
            rc = 0;
        else if (*data != NULL) {
            free(*data);
            *data = NULL;
        }
    }
    if (type >= 0)
        H5Tclose(type);
    if (dset >= 0)
        H5Dclose(dset);
    release_file(idx, fid);
    if (rc < 0 && !h5vfd_take_error(err))
        h5cd_fail(err, H5CD_E_UNSUPPORTED, "cannot read compact dataset %s as raw bytes", ds->path);
    STATS_INC(idx->stats, h5_lookups);
    return rc;
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
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
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

int h5index_with_file(struct h5index *idx, const struct remote_file *file,
                      int (*fn)(hid_t fid, void *arg, struct h5cd_error *err), void *arg,
                      struct h5cd_error *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fid = acquire_file(idx, file, err);
    if (fid < 0)
        return -1;
    h5vfd_take_error(NULL);
    int rc = fn(fid, arg, err);
    if (rc < 0)
        h5vfd_take_error(err); /* an upstream failure explains it better */
    release_file(idx, fid);
    return rc;
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
    hid_t to_close[MAX_OPEN_FILES + 1];
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
        rc = sqlite3_exec(idx->db, "DELETE FROM chunks; DELETE FROM objects; DELETE FROM files;",
                          NULL, NULL, NULL) == SQLITE_OK
                 ? 0
                 : -EIO;
    } else if (file_id >= 0) {
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
    for (size_t i = 0; i < idx->nfiles; i++)
        if (identity == NULL || idx->files[i].file_id == file_id)
            idx->files[i].stale = true;
    for (size_t i = 0; i < RECENT_DATASETS; i++)
        if (identity == NULL || idx->recent[i].file_id == file_id)
            idx->recent[i].file_id = 0;
    size_t nclose = prune_locked(idx, to_close, false);
    pthread_mutex_unlock(&idx->lock);
    close_all(to_close, nclose);
    return rc;
}
