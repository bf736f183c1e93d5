/*
 * blockcache.c - the persistent disk cache of remote file blocks: block
 * files under <dir>/blocks, their index in sqlite, LRU eviction, start-up
 * reconciliation and the degraded (no disk) mode.
 *
 * Any thread may call any function.  One sqlite connection is shared and
 * guarded by bc->lock, which also guards the in-memory totals, counters
 * and the buffer of pending access times.  Reading and writing block bytes
 * happens outside the lock; only a few metadata operations run under it
 * (the rename of a finished block into place, the unlink of a corrupt,
 * vanished or evicted one).  Never hold the lock across a read or write of block
 * bytes, and never let a put store bytes for a file id that is no longer
 * current.
 *
 * On-disk layout (directories 0700, files 0600):
 *   <dir>/lock                   flock(LOCK_EX) held while open
 *   <dir>/index.sqlite(-wal,-shm) the index
 *   <dir>/tmp/blk.XXXXXX         spans being written
 *   <dir>/blocks/<file_id>/<idx % 256 as %02x>/<idx>        the span at offset 0
 *   <dir>/blocks/<file_id>/<idx % 256 as %02x>/<idx>.<off>  the span at offset off > 0
 * The 256-way fan-out keeps directories small for large files.  File ids
 * are AUTOINCREMENT, never reused, so a path always names bytes of one
 * version of one remote file.  A whole block (a span at 0) keeps the name
 * it had before spans existed.
 *
 * Spans (schema 4).  Batches fetch exact byte ranges, so a block is cached
 * as up to BLOCKCACHE_MAX_SPANS disjoint spans, one file and one row each
 * (key: file id, block index, span offset); a row's size is its file's
 * size, which reconciliation checks, and its checksum covers the span.  A
 * put reads the block's rows, reads back (verified) the at most two spans
 * it touches that reach past its own bytes, writes the union to a temp
 * file, and commits under the lock only if the rows it planned with are
 * unchanged and no other span touches the union: rename into place, then
 * one transaction deleting the merged rows and inserting the union's.
 * Puts of one block are serialized by a striped mutex (held across their
 * file I/O, never with bc->lock), so they never overtake each other: only
 * an eviction or a drop makes a put plan again.  A get reads the rows, the
 * files outside the lock, and looks at a row again before calling bytes
 * that do not match it corrupt: a put may have renamed a new file over it.
 * Every put that stores bytes bumps the block's generation (a striped
 * counter), which lets remote.c tell whether bytes were cached between its
 * lookup and its claim.  Schema-2 and schema-3 caches are migrated in
 * place (their one span per block becomes one row; a span not at offset 0
 * is renamed to its new name).  Other schemas are rebuilt.
 *
 * Writes: the temp file is written fully, renamed into place, then the row
 * is inserted.  There is no fsync: a crash of the process cannot tear a
 * renamed file, and a power loss that does is caught by the size and
 * checksum checked on every read (the block is then dropped and refetched).
 * The index runs in WAL mode with synchronous=NORMAL for the same reason:
 * losing the last transactions on power loss only loses cache entries,
 * which reconciliation turns into orphan files to delete.
 */
#include "blockcache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "log.h"

#define HOT_BLOCKS 64 /* verified blocks kept in memory (16 MiB at 256 KiB blocks) */
/* 2: files.hits; 3: blocks.span_off (one span per block); 4: spans keyed by offset */
#define SCHEMA_VERSION            4
#define BUSY_TIMEOUT_MS           5000
#define DEFAULT_ENOSPC_COOLDOWN_S 30
/* Access times buffered before one transaction writes them all. */
#define TOUCH_MAX 4096
/* Blocks evicted per transaction; the lock is released between batches. */
#define EVICT_BATCH 256
/*
 * Longest cfg->dir: sqlite's unix VFS refuses database paths of 512 bytes
 * or more, and "/index.sqlite-wal" must still fit after the directory.
 */
#define BLOCKCACHE_MAX_DIR_BYTES 384
/* remove_tree() gives up below this depth (our tree is 3 levels deep). */
#define TREE_MAX_DEPTH 8
/* Names tried for a new temp file before giving up (another one exists each time). */
#define TEMP_NAME_ATTEMPTS 8
/* Tries of a read or a put that a change of the same block (put, eviction, drop) overtook. */
#define SPAN_RETRIES 8
/* Mutexes serializing puts of one block (by hash); held across their file I/O. */
#define PUT_STRIPES 64
/* Put generation counters (by hash of the block). */
#define GEN_STRIPES 4096
/* Longest leaf name: "<idx>.<off>", both decimal. */
#define LEAF_BYTES 48

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_FILE_BY_IDENTITY,
    ST_FILE_SIZE,
    ST_FILE_INSERT,
    ST_FILE_CHECKED,
    ST_FILE_DELETE,
    ST_FILE_BLOCKS_SUM,
    ST_FILE_BLOCKS_DELETE,
    ST_SPAN_GET,
    ST_SPANS_OF_BLOCK,
    ST_BLOCK_ANY,
    ST_SPAN_INSERT,
    ST_SPAN_DELETE,
    ST_SPAN_TOUCH,
    ST_LRU,
    ST_FILE_HIT,
    ST_LIST,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_FILE_BY_IDENTITY] = "SELECT id, validator, size, checked_at FROM files WHERE identity = ?1",
    [ST_FILE_SIZE] = "SELECT size FROM files WHERE id = ?1",
    [ST_FILE_INSERT] = "INSERT INTO files (identity, validator, size, checked_at, created_at) "
                       "VALUES (?1, ?2, ?3, ?4, ?4)",
    [ST_FILE_CHECKED] = "UPDATE files SET checked_at = ?2 WHERE id = ?1",
    [ST_FILE_DELETE] = "DELETE FROM files WHERE id = ?1",
    [ST_FILE_BLOCKS_SUM] = "SELECT COALESCE(SUM(size), 0), COUNT(DISTINCT idx), COUNT(*)"
                           " FROM blocks WHERE file_id = ?1",
    [ST_FILE_BLOCKS_DELETE] = "DELETE FROM blocks WHERE file_id = ?1",
    [ST_SPAN_GET] = "SELECT size, checksum FROM blocks"
                    " WHERE file_id = ?1 AND idx = ?2 AND span_off = ?3",
    [ST_SPANS_OF_BLOCK] = "SELECT span_off, size, checksum FROM blocks"
                          " WHERE file_id = ?1 AND idx = ?2 ORDER BY span_off LIMIT ?3",
    [ST_BLOCK_ANY] = "SELECT 1 FROM blocks WHERE file_id = ?1 AND idx = ?2 LIMIT 1",
    [ST_SPAN_INSERT] = "INSERT INTO blocks (file_id, idx, size, checksum, last_access, span_off)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_SPAN_DELETE] = "DELETE FROM blocks WHERE file_id = ?1 AND idx = ?2 AND span_off = ?3",
    [ST_SPAN_TOUCH] = "UPDATE blocks SET last_access = ?3 "
                      "WHERE file_id = ?1 AND idx = ?2 AND span_off = ?4 AND last_access < ?3",
    [ST_LRU] = "SELECT file_id, idx, span_off, size FROM blocks"
               " ORDER BY last_access, file_id, idx, span_off LIMIT ?1",
    [ST_FILE_HIT] = "UPDATE files SET hits = hits + ?2 WHERE id = ?1",
    [ST_LIST] = "SELECT f.identity, f.validator, f.size, f.hits, f.checked_at,"
                " COALESCE(SUM(b.size), 0), COUNT(DISTINCT b.idx), COALESCE(MAX(b.last_access), 0)"
                " FROM files f LEFT JOIN blocks b ON b.file_id = f.id"
                " GROUP BY f.id ORDER BY f.identity",
};

/* The blocks table (one row per span) is WITHOUT ROWID: its primary key is the only lookup. */
#define BLOCKS_TABLE_SQL(name)                                                                     \
    "CREATE TABLE IF NOT EXISTS " name " ("                                                        \
    " file_id INTEGER NOT NULL, idx INTEGER NOT NULL, size INTEGER NOT NULL,"                      \
    " checksum INTEGER NOT NULL, last_access INTEGER NOT NULL,"                                    \
    " span_off INTEGER NOT NULL DEFAULT 0,"                                                        \
    " PRIMARY KEY (file_id, idx, span_off)) WITHOUT ROWID;"

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS files ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, identity TEXT NOT NULL UNIQUE,"
    " validator TEXT NOT NULL, size INTEGER NOT NULL, checked_at INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL, hits INTEGER NOT NULL DEFAULT 0);" BLOCKS_TABLE_SQL(
        "blocks") "CREATE INDEX IF NOT EXISTS blocks_lru ON blocks (last_access);";

struct touch {
    int64_t file_id;
    uint64_t index;
    int64_t span_off;
    int64_t at;
    int64_t hits; /* reads of the block this entry stands for */
};

struct victim {
    int64_t file_id;
    uint64_t index;
    int64_t span_off;
};

struct blockcache {
    /* Immutable after open. */
    char *dir;
    uint32_t block_size;
    unsigned high_pct;
    unsigned low_pct;
    unsigned cooldown_s;
    bool degraded;
    int lock_fd;
    int dir_fd;     /* the cache directory, checked at open; -1 when degraded */
    int blocks_fd;  /* <dir>/blocks */
    int tmp_fd;     /* <dir>/tmp */
    uint64_t epoch; /* identity of the file-id space (see blockcache_epoch) */

    _Atomic unsigned tmp_seq; /* names of temp files */

    pthread_mutex_t lock; /* guards everything below */
    uint64_t cap_bytes;   /* changed at run time by blockcache_set_cap */
    uint64_t high_bytes;
    uint64_t low_bytes;
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    uint64_t bytes;
    uint64_t blocks; /* with at least one span */
    uint64_t spans;
    uint64_t evictions;
    uint64_t corrupt;
    uint64_t span_drops;
    uint64_t write_errors; /* I/O failures of puts; refusals (degraded, cool-down) not counted */
    int64_t refuse_until;  /* CLOCK_MONOTONIC ms: puts refused until then (disk full) */
    /*
     * last_access values are unix microseconds made strictly increasing, so
     * two accesses never tie and a wall clock stepping back cannot make a
     * fresh block look old.
     */
    int64_t clock;
    size_t ntouches;
    struct touch touches[TOUCH_MAX];
    /*
     * The most recently read blocks, kept verified in memory: a hot block
     * (the chunk a dozen clients poll) then costs a copy, not a file read and
     * a checksum.  A (file id, index) pair always names the same bytes (ids
     * are never reused), so an entry can only go stale by being dropped on
     * purpose: file drops and corrupt blocks remove it.  Only blocks read
     * back from disk enter, never blocks being written.
     */
    struct hot_block {
        int64_t file_id; /* 0: free */
        uint64_t index;
        struct blockcache_spans spans; /* held: data[off .. off + len) of each */
        uint64_t used;                 /* LRU clock */
        uint8_t *data;
    } hot[HOT_BLOCKS];
    uint64_t hot_clock;

    /* Not guarded by bc->lock: */
    pthread_mutex_t put_lock[PUT_STRIPES]; /* taken before bc->lock, never while holding it */
    _Atomic uint64_t gen[GEN_STRIPES];     /* bumped under bc->lock by every storing put */
};

static size_t block_hash(int64_t file_id, uint64_t index)
{
    uint64_t h = (uint64_t)file_id * 0x9E3779B97F4A7C15ULL ^ index * 0xC2B2AE3D27D4EB4FULL;
    return (size_t)(h ^ (h >> 31));
}

/* ---- hot blocks (caller holds bc->lock) ---- */

static struct hot_block *hot_find(struct blockcache *bc, int64_t file_id, uint64_t index)
{
    for (size_t i = 0; i < HOT_BLOCKS; i++)
        if (bc->hot[i].file_id == file_id && bc->hot[i].index == index && bc->hot[i].data != NULL)
            return &bc->hot[i];
    return NULL;
}

/* data holds the block's bytes at their block offsets, the spans listed in spans. */
static void hot_insert(struct blockcache *bc, int64_t file_id, uint64_t index, const uint8_t *data,
                       const struct blockcache_spans *spans)
{
    if (spans->n == 0 || hot_find(bc, file_id, index) != NULL)
        return;
    struct hot_block *victim = &bc->hot[0];
    for (size_t i = 1; i < HOT_BLOCKS && victim->data != NULL; i++)
        if (bc->hot[i].data == NULL || bc->hot[i].used < victim->used)
            victim = &bc->hot[i];
    if (victim->data == NULL && (victim->data = malloc(bc->block_size)) == NULL)
        return;
    for (size_t i = 0; i < spans->n; i++)
        memcpy(victim->data + spans->span[i].off, data + spans->span[i].off, spans->span[i].len);
    victim->file_id = file_id;
    victim->index = index;
    victim->spans = *spans;
    victim->used = ++bc->hot_clock;
}

/* Forgets a block (index UINT64_MAX: every block of the file; file_id -1: everything). */
static void hot_forget(struct blockcache *bc, int64_t file_id, uint64_t index)
{
    for (size_t i = 0; i < HOT_BLOCKS; i++) {
        struct hot_block *h = &bc->hot[i];
        if (file_id == -1 ||
            (h->file_id == file_id && (index == UINT64_MAX || h->index == index))) {
            free(h->data);
            *h = (struct hot_block){0};
        }
    }
}

/* ---- small helpers ---- */

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Caller holds bc->lock. */
static int64_t next_clock(struct blockcache *bc)
{
    int64_t now = now_us();
    bc->clock = now > bc->clock ? now : bc->clock + 1;
    return bc->clock;
}

/* XXH3 values are stored bit for bit in sqlite's signed 64-bit integers. */
static int64_t checksum_to_db(uint64_t sum)
{
    int64_t v;
    memcpy(&v, &sum, sizeof(v));
    return v;
}

/* Strict decimal: digits only, no sign, no leading zero, value <= max. */
static int parse_dec(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 20 || (s[0] == '0' && n > 1))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* cap * pct / 100 without overflow for any cap. */
static uint64_t percent_of(uint64_t cap, unsigned pct)
{
    return cap / 100 * pct + cap % 100 * pct / 100;
}

static int sql_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EAGAIN;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_CANTOPEN: /* most often a directory we may not write */
        return -EACCES;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EBADMSG;
    default:
        return -EIO;
    }
}

static int db_fail(sqlite3 *db, int rc, const char *what)
{
    log_warn("msg=\"cache index error\" op=\"%s\" err=\"%s\"", what,
             db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    return sql_errno(rc);
}

static int db_exec(sqlite3 *db, const char *sql)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : db_fail(db, rc, sql);
}

/* Steps a statement that returns no rows and resets it.  Caller holds bc->lock. */
static int run(struct blockcache *bc, enum stmt_id id)
{
    sqlite3_stmt *s = bc->st[id];
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : db_fail(bc->db, rc, stmt_sql[id]);
}

/* Steps a one-row query; 0 leaves the row readable (caller resets), -ENOENT if none. */
static int row(struct blockcache *bc, enum stmt_id id)
{
    sqlite3_stmt *s = bc->st[id];
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        return 0;
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? -ENOENT : db_fail(bc->db, rc, stmt_sql[id]);
}

static int tx_begin(struct blockcache *bc)
{
    return run(bc, ST_BEGIN);
}

static int tx_end(struct blockcache *bc, int rc)
{
    if (rc == 0)
        rc = run(bc, ST_COMMIT);
    if (rc < 0 && !sqlite3_get_autocommit(bc->db))
        run(bc, ST_ROLLBACK);
    return rc;
}

/* Human text only, so truncation is acceptable here. */
static void set_reason(struct blockcache_report *rep, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_reason(struct blockcache_report *rep, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->reason, sizeof(rep->reason), fmt, ap);
    va_end(ap);
}

/* ---- paths and directories ---- */

/* A span's path, for log lines only: every access goes through directory descriptors. */
static int block_path(const struct blockcache *bc, int64_t file_id, uint64_t index, size_t off,
                      char *buf, size_t cap)
{
    int n = off == 0 ? snprintf(buf, cap, "%s/blocks/%" PRId64 "/%02x/%" PRIu64, bc->dir, file_id,
                                (unsigned)(index & 0xff), index)
                     : snprintf(buf, cap, "%s/blocks/%" PRId64 "/%02x/%" PRIu64 ".%zu", bc->dir,
                                file_id, (unsigned)(index & 0xff), index, off);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* A span's name inside its directory blocks/<file_id>/<index % 256>. */
struct block_name {
    char id[24];
    char fan[3];
    char leaf[LEAF_BYTES];
};

static void block_name(int64_t file_id, uint64_t index, size_t off, struct block_name *n)
{
    snprintf(n->id, sizeof(n->id), "%" PRId64, file_id);
    snprintf(n->fan, sizeof(n->fan), "%02x", (unsigned)(index & 0xff));
    if (off == 0)
        snprintf(n->leaf, sizeof(n->leaf), "%" PRIu64, index);
    else
        snprintf(n->leaf, sizeof(n->leaf), "%" PRIu64 ".%zu", index, off);
}

/* Opens (with create: makes, 0700) the directory name under dirfd, never through a symlink. */
static int subdir_at(int dirfd, const char *name, bool create)
{
    if (create && mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
        return -errno;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* The descriptor of blocks/<file_id>/<fan>, each component opened without
 * following symlinks.  Returns it or a negative errno (-ENOENT: not there). */
static int block_dir(const struct blockcache *bc, const struct block_name *n, bool create)
{
    if (bc->blocks_fd < 0)
        return -ENOENT;
    int idfd = subdir_at(bc->blocks_fd, n->id, create);
    if (idfd < 0)
        return idfd;
    int fanfd = subdir_at(idfd, n->fan, create);
    close(idfd);
    return fanfd;
}

/* Unlinks a span's file (never following a symlink there).  0, or a negative errno. */
static int unlink_span(const struct blockcache *bc, int64_t file_id, uint64_t index, size_t off)
{
    struct block_name n;
    block_name(file_id, index, off, &n);
    int dfd = block_dir(bc, &n, false);
    if (dfd < 0)
        return dfd == -ENOENT ? 0 : dfd;
    int rc = unlinkat(dfd, n.leaf, 0) < 0 && errno != ENOENT ? -errno : 0;
    close(dfd);
    return rc;
}

static int sub_path(const struct blockcache *bc, const char *name, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s/%s", bc->dir, name);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    return -errno;
}

/* mkdir -p, every missing component 0700; fails unless path ends up a directory. */
static int make_dirs(const char *path)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i < n; i++) {
        if (buf[i] != '/')
            continue;
        buf[i] = '\0';
        int rc = make_dir(buf);
        buf[i] = '/';
        if (rc < 0)
            return rc;
    }
    int rc = make_dir(buf);
    if (rc < 0)
        return rc;
    struct stat st;
    if (stat(buf, &st) < 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* Opens directory name under dirfd (never through a symlink) for reading.
 * Returns its descriptor (owned by *out) or a negative errno. */
static int open_dir_at(int dirfd, const char *name, DIR **out)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    *out = fdopendir(fd);
    if (*out == NULL) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

typedef int (*entry_fn)(int dirfd, const char *name, const struct stat *st, void *arg);

/* Calls fn for every entry of directory name (under dirfd); stops at the first error. */
static int each_entry(int dirfd, const char *name, entry_fn fn, void *arg)
{
    DIR *d = NULL;
    int fd = open_dir_at(dirfd, name, &d);
    if (fd < 0)
        return fd;
    int rc = 0;
    struct dirent *e;
    struct stat st;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            rc = errno == ENOENT ? 0 : -errno;
        else
            rc = fn(fd, e->d_name, &st, arg);
    }
    closedir(d);
    return rc;
}

/* Removes name (under dirfd) and everything below it; counts removed non-directories. */
static int remove_tree(int dirfd, const char *name, int depth, uint64_t *files)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(dirfd, name, 0) < 0)
            return -errno;
        if (files != NULL)
            (*files)++;
        return 0;
    }
    if (depth >= TREE_MAX_DEPTH)
        return -ELOOP;
    DIR *d = NULL;
    int fd = open_dir_at(dirfd, name, &d);
    if (fd < 0)
        return fd;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        int r = remove_tree(fd, e->d_name, depth + 1, files);
        if (r < 0 && rc == 0)
            rc = r;
    }
    closedir(d);
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && rc == 0)
        rc = -errno;
    return rc;
}

/* Removes the block directory of a file version that is gone from the index. */
static void remove_file_dir(struct blockcache *bc, int64_t file_id)
{
    struct block_name n;
    if (bc->degraded || bc->blocks_fd < 0)
        return;
    block_name(file_id, 0, 0, &n);
    int rc = remove_tree(bc->blocks_fd, n.id, 0, NULL);
    if (rc < 0)
        log_warn("msg=\"cannot remove cached file\" dir=%s/blocks/%s err=\"%s\"", bc->dir, n.id,
                 strerror(-rc));
}

/* ---- access times ---- */

/* Writes the buffered access times.  Caller holds bc->lock and has begun a transaction. */
static int touches_flush(struct blockcache *bc)
{
    sqlite3_stmt *s = bc->st[ST_SPAN_TOUCH];
    int rc = 0;
    for (size_t i = 0; i < bc->ntouches && rc == 0; i++) {
        sqlite3_bind_int64(s, 1, bc->touches[i].file_id);
        sqlite3_bind_int64(s, 2, (int64_t)bc->touches[i].index);
        sqlite3_bind_int64(s, 3, bc->touches[i].at);
        sqlite3_bind_int64(s, 4, bc->touches[i].span_off);
        rc = run(bc, ST_SPAN_TOUCH);
        if (rc == 0 && bc->touches[i].hits > 0) {
            sqlite3_bind_int64(bc->st[ST_FILE_HIT], 1, bc->touches[i].file_id);
            sqlite3_bind_int64(bc->st[ST_FILE_HIT], 2, bc->touches[i].hits);
            rc = run(bc, ST_FILE_HIT);
        }
    }
    /* Access times are a hint: on failure they are dropped, not retried forever. */
    bc->ntouches = 0;
    return rc;
}

/* Caller holds bc->lock. */
static void touches_flush_tx(struct blockcache *bc)
{
    if (bc->ntouches == 0)
        return;
    int rc = tx_begin(bc);
    if (rc == 0)
        rc = touches_flush(bc);
    tx_end(bc, rc);
    bc->ntouches = 0;
}

/* Caller holds bc->lock.  Reads of one span in a row (the small chunks of a
 * batch share blocks) make one entry: one write of the access time, hits summed. */
static void touch_span(struct blockcache *bc, int64_t file_id, uint64_t index, size_t off,
                       int64_t hits)
{
    if (bc->ntouches > 0) {
        struct touch *last = &bc->touches[bc->ntouches - 1];
        if (last->file_id == file_id && last->index == index && last->span_off == (int64_t)off) {
            last->at = next_clock(bc);
            last->hits += hits;
            return;
        }
    }
    if (bc->ntouches == TOUCH_MAX)
        touches_flush_tx(bc);
    struct touch *t = &bc->touches[bc->ntouches++];
    t->file_id = file_id;
    t->index = index;
    t->span_off = (int64_t)off;
    t->at = next_clock(bc);
    t->hits = hits;
}

/* A read of a block: every span read is touched, the file's hits count the read once. */
static void touch_spans(struct blockcache *bc, int64_t file_id, uint64_t index,
                        const struct blockcache_spans *spans)
{
    for (size_t i = 0; i < spans->n; i++)
        touch_span(bc, file_id, index, spans->span[i].off, i == 0);
}

/* ---- opening ---- */

static int config_check(const struct blockcache_config *cfg)
{
    uint32_t bs = cfg->block_size;
    if (cfg->dir == NULL || cfg->dir[0] == '\0' || strlen(cfg->dir) > BLOCKCACHE_MAX_DIR_BYTES)
        return -EINVAL;
    if (bs < H5CD_MIN_BLOCK_BYTES || bs > H5CD_MAX_BLOCK_BYTES || (bs & (bs - 1)) != 0)
        return -EINVAL;
    if (cfg->low_watermark == 0 || cfg->low_watermark > cfg->high_watermark ||
        cfg->high_watermark > 100 || cfg->cap_bytes == 0)
        return -EINVAL;
    return 0;
}

static int prepare_all(struct blockcache *bc)
{
    for (int i = 0; i < ST_COUNT; i++) {
        int rc = sqlite3_prepare_v3(bc->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &bc->st[i],
                                    NULL);
        if (rc != SQLITE_OK)
            return db_fail(bc->db, rc, stmt_sql[i]);
    }
    return 0;
}

static void db_close(struct blockcache *bc)
{
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(bc->st[i]);
        bc->st[i] = NULL;
    }
    sqlite3_close(bc->db);
    bc->db = NULL;
}

static int meta_get(sqlite3 *db, const char *key, int64_t *out)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?1", -1, &s, NULL);
    if (rc != SQLITE_OK)
        return db_fail(db, rc, "meta get");
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    int ret = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : db_fail(db, rc, "meta get");
    sqlite3_finalize(s);
    return ret;
}

static int meta_set(sqlite3 *db, const char *key, int64_t value)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", -1,
                                &s, NULL);
    if (rc != SQLITE_OK)
        return db_fail(db, rc, "meta set");
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, value);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : db_fail(db, rc, "meta set");
}

static int wipe_entry(int dirfd, const char *name, const struct stat *st, void *arg)
{
    (void)st;
    (void)arg;
    return remove_tree(dirfd, name, 1, NULL);
}

/* Empties the cache.  Block files left behind are orphans that reconciliation removes. */
static int wipe(struct blockcache *bc)
{
    int rc = db_exec(bc->db, "DELETE FROM blocks; DELETE FROM files;");
    if (rc < 0 || bc->dir_fd < 0)
        return rc;
    int r = each_entry(bc->dir_fd, "blocks", wipe_entry, NULL);
    if (r < 0)
        log_warn("msg=\"cannot empty the cache directory\" dir=%s/blocks err=\"%s\"", bc->dir,
                 strerror(-r));
    return 0;
}

/*
 * Creates the tables; a different schema version is dropped (the cache is
 * only a cache), and a different block size wipes every block because the
 * stored blocks no longer line up with the new ones.
 */
/* A fresh random epoch: the file ids handed out from now on belong to it. */
static int new_epoch(struct blockcache *bc)
{
    uint64_t e = 0;
    while (e == 0 || e > INT64_MAX)
        if (getrandom(&e, sizeof(e), 0) != (ssize_t)sizeof(e))
            return -EIO;
    bc->epoch = e;
    return meta_set(bc->db, "epoch", (int64_t)e);
}

/* Renames the files of schema-3 spans that do not start their block to their new names.
 * A file that cannot be renamed leaves its row without a file: reconciliation drops it. */
static int rename_moved_spans(struct blockcache *bc)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(bc->db,
                                "SELECT file_id, idx, span_off FROM blocks"
                                " WHERE span_off > 0 AND span_off < ?1",
                                -1, &s, NULL);
    if (rc != SQLITE_OK)
        return db_fail(bc->db, rc, "spans to rename");
    sqlite3_bind_int64(s, 1, bc->block_size);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct block_name from, to;
        int64_t file_id = sqlite3_column_int64(s, 0);
        int64_t index = sqlite3_column_int64(s, 1);
        if (file_id <= 0 || index < 0)
            continue;
        block_name(file_id, (uint64_t)index, 0, &from);
        block_name(file_id, (uint64_t)index, (size_t)sqlite3_column_int64(s, 2), &to);
        int dfd = block_dir(bc, &from, false);
        if (dfd < 0)
            continue;
        renameat(dfd, from.leaf, dfd, to.leaf);
        close(dfd);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : db_fail(bc->db, rc, "spans to rename");
}

/*
 * Schema 3 to 4: the blocks table gets the span offset in its key (one row
 * per span).  Inside the caller's transaction; files renamed when a crash
 * rolls the index back are removed by reconciliation as orphans.
 */
static int migrate_spans(struct blockcache *bc, bool on_disk)
{
    int rc = db_exec(
        bc->db, "DROP TABLE IF EXISTS blocks_v4;" BLOCKS_TABLE_SQL(
                    "blocks_v4") "INSERT INTO blocks_v4 (file_id, idx, size, checksum, last_access,"
                                 " span_off) SELECT file_id, idx, size, checksum, last_access,"
                                 " span_off FROM blocks;"
                                 "DROP TABLE blocks;"
                                 "ALTER TABLE blocks_v4 RENAME TO blocks;");
    if (rc == 0 && on_disk)
        rc = rename_moved_spans(bc);
    return rc;
}

static int schema_setup(struct blockcache *bc, bool on_disk)
{
    int64_t version = 0, bs = 0, epoch = 0;
    bool fresh = false; /* the files table starts empty, its ids from 1 */
    int rc = db_exec(bc->db, "CREATE TABLE IF NOT EXISTS meta ("
                             " key TEXT PRIMARY KEY, value INTEGER NOT NULL)");
    bool known = rc == 0 && meta_get(bc->db, "schema_version", &version) == 0;
    int64_t from = version;
    /* Every version-2 row is a whole block: the span (0, size) keeps it as it was. */
    if (known && version == 2 &&
        db_exec(bc->db, "ALTER TABLE blocks ADD COLUMN span_off INTEGER NOT NULL DEFAULT 0") == 0)
        version = 3;
    if (known && version == 3 && migrate_spans(bc, on_disk) == 0)
        version = SCHEMA_VERSION;
    if (known && from != version && version == SCHEMA_VERSION)
        log_info("msg=\"cache index migrated\" from=%" PRId64 " to=%d", from, SCHEMA_VERSION);
    if (known && version != SCHEMA_VERSION) {
        log_warn("msg=\"cache index has another schema: rebuilding\" found=%" PRId64 " expected=%d",
                 version, SCHEMA_VERSION);
        rc = db_exec(bc->db, "DROP TABLE IF EXISTS blocks; DROP TABLE IF EXISTS files;");
        fresh = true;
    }
    if (rc == 0)
        rc = db_exec(bc->db, schema_sql);
    if (rc == 0)
        rc = meta_set(bc->db, "schema_version", SCHEMA_VERSION);
    if (rc == 0 && on_disk && meta_get(bc->db, "block_size", &bs) == 0 && bs != bc->block_size) {
        log_warn("msg=\"cache block size changed: wiping the cache\" old=%" PRId64 " new=%" PRIu32,
                 bs, bc->block_size);
        rc = wipe(bc);
        fresh = true;
    }
    if (rc == 0)
        rc = meta_set(bc->db, "block_size", bc->block_size);
    if (rc == 0 && (fresh || meta_get(bc->db, "epoch", &epoch) < 0 || epoch <= 0))
        rc = new_epoch(bc);
    else if (rc == 0)
        bc->epoch = (uint64_t)epoch;
    return rc;
}

/* journal_mode answers with the mode in force: WAL must really be on. */
static int set_wal(sqlite3 *db)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
    if (rc != SQLITE_OK)
        return db_fail(db, rc, "journal_mode");
    rc = sqlite3_step(s);
    const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(s, 0) : NULL;
    bool wal = mode != NULL && sqlite3_stricmp((const char *)mode, "wal") == 0;
    int ret = wal ? 0 : rc != SQLITE_ROW ? db_fail(db, rc, "journal_mode") : -EIO;
    sqlite3_finalize(s);
    return ret;
}

static int db_open(struct blockcache *bc, const char *path)
{
    bool on_disk = strcmp(path, ":memory:") != 0;
    int flags =
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW;
    int rc = sqlite3_open_v2(path, &bc->db, flags, NULL);
    if (rc != SQLITE_OK) {
        rc = bc->db != NULL ? db_fail(bc->db, rc, "open") : -ENOMEM;
        goto fail;
    }
    sqlite3_busy_timeout(bc->db, BUSY_TIMEOUT_MS);
    if (on_disk) {
        rc = set_wal(bc->db);
        if (rc == 0)
            rc = db_exec(bc->db, "PRAGMA synchronous = NORMAL");
        if (rc < 0)
            goto fail;
    }
    rc = db_exec(bc->db, "BEGIN IMMEDIATE");
    if (rc == 0)
        rc = schema_setup(bc, on_disk);
    if (rc == 0)
        rc = db_exec(bc->db, "COMMIT");
    if (rc < 0) {
        if (!sqlite3_get_autocommit(bc->db))
            db_exec(bc->db, "ROLLBACK");
        goto fail;
    }
    rc = prepare_all(bc);
    if (rc < 0)
        goto fail;
    return 0;
fail:
    db_close(bc);
    return rc;
}

/* Creates name 0600 if missing, so sqlite (and its -wal/-shm, which copy it) stay private. */
static int create_private(const struct blockcache *bc, const char *name)
{
    int fd = openat(bc->dir_fd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}

/* An unreadable index is rebuilt empty: reconciliation then removes every block file. */
static int db_open_disk(struct blockcache *bc)
{
    static const char *const names[] = {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm"};
    char path[PATH_MAX];
    int rc = sub_path(bc, names[0], path, sizeof(path));
    if (rc == 0)
        rc = create_private(bc, names[0]);
    if (rc == 0)
        rc = db_open(bc, path);
    if (rc != -EBADMSG)
        return rc;
    log_warn("msg=\"cache index is corrupt: rebuilding it empty\" path=%s", path);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unlinkat(bc->dir_fd, names[i], 0);
    rc = create_private(bc, names[0]);
    return rc == 0 ? db_open(bc, path) : rc;
}

/*
 * Whether another local user could change what lies under path: every
 * directory on the way must belong to root or to us, and one others may
 * write must be sticky (like /tmp); the cache directory itself must be
 * ours and writable by nobody else.  0, or -EPERM with the reason.
 */
static int check_dir_safe(const char *path, int dir_fd, struct blockcache_report *rep)
{
    struct stat st;
    uid_t me = geteuid();
    if (fstat(dir_fd, &st) < 0) {
        set_reason(rep, "cannot stat %s: %s", path, strerror(errno));
        return -errno;
    }
    if (st.st_uid != me || (st.st_mode & 022) != 0) {
        set_reason(rep,
                   "cache directory %s is unsafe: it must belong to uid %u and be writable by "
                   "nobody else (owner uid %u, mode %04o); fix it with chown and chmod 0700",
                   path, (unsigned)me, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
        return -EPERM;
    }
    char up[PATH_MAX];
    snprintf(up, sizeof(up), "%s", path);
    for (char *slash = strrchr(up, '/'); slash != NULL; slash = strrchr(up, '/')) {
        slash[slash == up ? 1 : 0] = '\0';
        if (lstat(up, &st) < 0) {
            set_reason(rep, "cannot stat %s: %s", up, strerror(errno));
            return -errno;
        }
        bool others_write = (st.st_mode & 022) != 0 && (st.st_mode & S_ISVTX) == 0;
        if ((st.st_uid != 0 && st.st_uid != me) || others_write) {
            set_reason(rep,
                       "cache directory %s is unsafe: its parent %s could be changed by another "
                       "user (owner uid %u, mode %04o)",
                       path, up, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
            return -EPERM;
        }
        if (slash == up)
            break;
    }
    return 0;
}

/*
 * Creates the directory tree, checks that no other user can change it and
 * takes the instance lock.  Returns 0, -EBUSY, -EPERM (unsafe directory:
 * fatal), or another negative errno meaning the directory is unusable
 * (rep->reason says why).
 */
static int dir_open(struct blockcache *bc, struct blockcache_report *rep)
{
    struct stat st;
    int rc = make_dirs(bc->dir);
    if (rc < 0) {
        set_reason(rep, "cannot create %s: %s", bc->dir, strerror(-rc));
        return rc;
    }
    /* Block paths are built from bc->dir: keep them valid if the daemon changes directory. */
    char *abs = realpath(bc->dir, NULL);
    if (abs == NULL || strlen(abs) > BLOCKCACHE_MAX_DIR_BYTES) {
        rc = abs == NULL ? -errno : -ENAMETOOLONG;
        free(abs);
        set_reason(rep, "cannot resolve %s: %s", bc->dir, strerror(-rc));
        return rc;
    }
    free(bc->dir);
    bc->dir = abs;
    bc->dir_fd = open(bc->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (bc->dir_fd < 0) {
        rc = -errno;
        set_reason(rep, "cannot open %s: %s", bc->dir, strerror(-rc));
        return rc;
    }
    rc = check_dir_safe(bc->dir, bc->dir_fd, rep);
    if (rc < 0)
        return rc;
    if (fstat(bc->dir_fd, &st) == 0 && (st.st_mode & 077) != 0)
        log_warn("msg=\"cache directory is readable by others\" dir=%s mode=%03o", bc->dir,
                 (unsigned)(st.st_mode & 0777));
    bc->lock_fd = openat(bc->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (bc->lock_fd < 0)
        rc = -errno;
    if (rc == 0 && flock(bc->lock_fd, LOCK_EX | LOCK_NB) < 0)
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
    if (rc < 0) {
        set_reason(rep, "cannot lock %s/lock: %s", bc->dir, strerror(-rc));
        return rc;
    }
    bc->blocks_fd = subdir_at(bc->dir_fd, "blocks", true);
    bc->tmp_fd = subdir_at(bc->dir_fd, "tmp", true);
    if (bc->blocks_fd < 0 || bc->tmp_fd < 0) {
        rc = bc->blocks_fd < 0 ? bc->blocks_fd : bc->tmp_fd;
        set_reason(rep, "cannot create %s/%s: %s", bc->dir, bc->blocks_fd < 0 ? "blocks" : "tmp",
                   strerror(-rc));
        return rc;
    }
    return 0;
}

static void close_dirs(struct blockcache *bc)
{
    int *fds[] = {&bc->tmp_fd, &bc->blocks_fd, &bc->dir_fd, &bc->lock_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
}

/* ---- start-up reconciliation ---- */

struct recon {
    struct blockcache *bc;
    struct blockcache_report *rep;
    sqlite3_stmt *present; /* INSERT INTO temp.present */
    int64_t file_id;       /* directory being walked */
    const char *fan;
};

static int tmp_entry(int dirfd, const char *name, const struct stat *st, void *arg)
{
    struct blockcache_report *rep = arg;
    (void)st;
    return remove_tree(dirfd, name, 1, &rep->temp_files_removed);
}

static int orphan(struct recon *r, int dirfd, const char *name, int depth)
{
    return remove_tree(dirfd, name, depth, &r->rep->orphan_files_removed);
}

/*
 * Parses a span file's name, "<idx>" or "<idx>.<off>" with 0 < off <
 * block_size, strictly (one spelling per span: no sign, no leading zero).
 * 0, or -EINVAL for anything else.
 */
static int parse_span_name(const char *name, uint32_t block_size, uint64_t *index, size_t *off)
{
    char head[24];
    const char *dot = strchr(name, '.');
    size_t n = dot != NULL ? (size_t)(dot - name) : strlen(name);
    uint64_t o = 0;
    if (n == 0 || n >= sizeof(head))
        return -EINVAL;
    memcpy(head, name, n);
    head[n] = '\0';
    if (parse_dec(head, INT64_MAX, index) < 0)
        return -EINVAL;
    if (dot != NULL && (parse_dec(dot + 1, block_size - 1, &o) < 0 || o == 0))
        return -EINVAL;
    *off = (size_t)o;
    return 0;
}

/* A span file is kept only if its row exists with the same size. */
static int block_entry(int dirfd, const char *name, const struct stat *st, void *arg)
{
    static const char hex[] = "0123456789abcdef";
    struct recon *r = arg;
    struct blockcache *bc = r->bc;
    uint64_t index = 0;
    size_t off = 0;
    if (!S_ISREG(st->st_mode) || parse_span_name(name, bc->block_size, &index, &off) < 0)
        return orphan(r, dirfd, name, 3);
    char fan[3] = {hex[(index >> 4) & 0xf], hex[index & 0xf], '\0'};
    if (strcmp(fan, r->fan) != 0)
        return orphan(r, dirfd, name, 3);
    sqlite3_stmt *s = bc->st[ST_SPAN_GET];
    sqlite3_bind_int64(s, 1, r->file_id);
    sqlite3_bind_int64(s, 2, (int64_t)index);
    sqlite3_bind_int64(s, 3, (int64_t)off);
    int rc = row(bc, ST_SPAN_GET);
    int64_t size = rc == 0 ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_reset(s);
    if (rc == -ENOENT)
        return orphan(r, dirfd, name, 3);
    if (rc < 0)
        return rc;
    if (st->st_size != size || size <= 0 || (uint64_t)size > bc->block_size - off)
        return unlinkat(dirfd, name, 0) < 0 ? -errno : 0; /* its row is dropped below */
    sqlite3_bind_int64(r->present, 1, r->file_id);
    sqlite3_bind_int64(r->present, 2, (int64_t)index);
    sqlite3_bind_int64(r->present, 3, (int64_t)off);
    rc = sqlite3_step(r->present);
    sqlite3_reset(r->present);
    return rc == SQLITE_DONE ? 0 : db_fail(bc->db, rc, "mark present");
}

static int fan_entry(int dirfd, const char *name, const struct stat *st, void *arg)
{
    struct recon *r = arg;
    bool valid = strlen(name) == 2 && strspn(name, "0123456789abcdef") == 2;
    if (!S_ISDIR(st->st_mode) || !valid)
        return orphan(r, dirfd, name, 2);
    r->fan = name;
    int rc = each_entry(dirfd, name, block_entry, r);
    if (rc == 0)
        unlinkat(dirfd, name, AT_REMOVEDIR); /* left by evictions; fails if not empty */
    return rc;
}

static int file_dir_entry(int dirfd, const char *name, const struct stat *st, void *arg)
{
    struct recon *r = arg;
    struct blockcache *bc = r->bc;
    uint64_t id = 0;
    if (!S_ISDIR(st->st_mode) || parse_dec(name, INT64_MAX, &id) < 0)
        return orphan(r, dirfd, name, 1);
    sqlite3_bind_int64(bc->st[ST_FILE_SIZE], 1, (int64_t)id);
    int rc = row(bc, ST_FILE_SIZE);
    sqlite3_reset(bc->st[ST_FILE_SIZE]);
    if (rc == -ENOENT)
        return orphan(r, dirfd, name, 1);
    if (rc < 0)
        return rc;
    r->file_id = (int64_t)id;
    rc = each_entry(dirfd, name, fan_entry, r);
    if (rc == 0)
        unlinkat(dirfd, name, AT_REMOVEDIR);
    return rc;
}

/* Walks blocks/, then drops every row whose file was not found intact. */
static int reconcile_blocks(struct blockcache *bc, struct blockcache_report *rep)
{
    struct recon r = {.bc = bc, .rep = rep};
    int rc =
        db_exec(bc->db, "CREATE TEMP TABLE present (file_id INTEGER, idx INTEGER,"
                        " span_off INTEGER, PRIMARY KEY (file_id, idx, span_off)) WITHOUT ROWID");
    if (rc < 0)
        return rc;
    int sr = sqlite3_prepare_v2(bc->db, "INSERT OR IGNORE INTO temp.present VALUES (?1, ?2, ?3)",
                                -1, &r.present, NULL);
    rc = sr == SQLITE_OK ? tx_begin(bc) : db_fail(bc->db, sr, "prepare present");
    if (rc == 0)
        rc = each_entry(bc->dir_fd, "blocks", file_dir_entry, &r);
    /* Only a complete walk may conclude that a row has no file. */
    if (rc == 0)
        rc = db_exec(bc->db, "DELETE FROM blocks WHERE NOT EXISTS (SELECT 1 FROM temp.present p"
                             " WHERE p.file_id = blocks.file_id AND p.idx = blocks.idx"
                             " AND p.span_off = blocks.span_off)");
    if (rc == 0)
        rep->rows_dropped = (uint64_t)sqlite3_changes(bc->db);
    rc = tx_end(bc, rc);
    sqlite3_finalize(r.present);
    db_exec(bc->db, "DROP TABLE temp.present");
    return rc;
}

static int load_totals(struct blockcache *bc)
{
    sqlite3_stmt *s = NULL;
    int rc =
        sqlite3_prepare_v2(bc->db,
                           "SELECT COALESCE(SUM(size), 0), COUNT(*), "
                           "COALESCE(MAX(last_access), 0),"
                           " (SELECT COUNT(*) FROM (SELECT 1 FROM blocks GROUP BY file_id, idx))"
                           " FROM blocks",
                           -1, &s, NULL);
    if (rc != SQLITE_OK)
        return db_fail(bc->db, rc, "totals");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        bc->bytes = (uint64_t)sqlite3_column_int64(s, 0);
        bc->spans = (uint64_t)sqlite3_column_int64(s, 1);
        bc->clock = sqlite3_column_int64(s, 2);
        bc->blocks = (uint64_t)sqlite3_column_int64(s, 3);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : db_fail(bc->db, rc, "totals");
}

static int open_disk(struct blockcache *bc, struct blockcache_report *rep)
{
    int rc = dir_open(bc, rep);
    if (rc < 0)
        return rc;
    rc = db_open_disk(bc);
    if (rc < 0) {
        set_reason(rep, "cannot open the cache index in %s: %s", bc->dir, strerror(-rc));
        return rc;
    }
    rc = each_entry(bc->dir_fd, "tmp", tmp_entry, rep);
    if (rc == 0)
        rc = reconcile_blocks(bc, rep);
    if (rc < 0)
        log_warn("msg=\"cache reconciliation incomplete\" dir=%s err=\"%s\"", bc->dir,
                 strerror(-rc));
    rc = load_totals(bc);
    if (rc < 0)
        set_reason(rep, "cannot read the cache index in %s: %s", bc->dir, strerror(-rc));
    return rc;
}

/* Without a usable directory file rows still live in memory; blocks are never stored. */
static int go_degraded(struct blockcache *bc, struct blockcache_report *rep)
{
    db_close(bc);
    close_dirs(bc);
    bc->degraded = true;
    rep->degraded = true;
    if (rep->reason[0] == '\0')
        set_reason(rep, "cannot use %s", bc->dir);
    log_warn("msg=\"disk cache unusable: running degraded\" reason=\"%s\"", rep->reason);
    return db_open(bc, ":memory:");
}

int blockcache_open(const struct blockcache_config *cfg, struct blockcache **out,
                    struct blockcache_report *rep)
{
    struct blockcache_report local;
    struct blockcache *bc = NULL;
    if (rep == NULL)
        rep = &local;
    memset(rep, 0, sizeof(*rep));
    *out = NULL;
    int rc = config_check(cfg);
    if (rc < 0)
        return rc;
    bc = calloc(1, sizeof(*bc));
    if (bc == NULL)
        return -ENOMEM;
    bc->lock_fd = bc->dir_fd = bc->blocks_fd = bc->tmp_fd = -1;
    pthread_mutex_init(&bc->lock, NULL);
    for (size_t i = 0; i < PUT_STRIPES; i++)
        pthread_mutex_init(&bc->put_lock[i], NULL);
    bc->dir = strdup(cfg->dir);
    if (bc->dir == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    bc->block_size = cfg->block_size;
    bc->high_pct = cfg->high_watermark;
    bc->low_pct = cfg->low_watermark;
    bc->cap_bytes = cfg->cap_bytes;
    bc->high_bytes = percent_of(cfg->cap_bytes, cfg->high_watermark);
    bc->low_bytes = percent_of(cfg->cap_bytes, cfg->low_watermark);
    bc->cooldown_s =
        cfg->enospc_cooldown_s != 0 ? cfg->enospc_cooldown_s : DEFAULT_ENOSPC_COOLDOWN_S;
    rc = open_disk(bc, rep);
    if (rc == -EBUSY || rc == -ENOMEM || rc == -EPERM)
        goto fail;
    if (rc < 0 && (rc = go_degraded(bc, rep)) < 0)
        goto fail;
    *out = bc;
    return 0;
fail:
    blockcache_close(bc);
    return rc;
}

void blockcache_close(struct blockcache *bc)
{
    if (bc == NULL)
        return;
    pthread_mutex_lock(&bc->lock);
    if (bc->db != NULL)
        touches_flush_tx(bc);
    db_close(bc);
    hot_forget(bc, -1, 0);
    pthread_mutex_unlock(&bc->lock);
    pthread_mutex_destroy(&bc->lock);
    for (size_t i = 0; i < PUT_STRIPES; i++)
        pthread_mutex_destroy(&bc->put_lock[i]);
    close_dirs(bc); /* closing lock_fd releases the flock */
    free(bc->dir);
    free(bc);
}

uint64_t blockcache_epoch(const struct blockcache *bc)
{
    return bc->epoch;
}

uint32_t blockcache_block_size(const struct blockcache *bc)
{
    return bc->block_size;
}

/* ---- files ---- */

/* Caller holds bc->lock. */
static int file_lookup(struct blockcache *bc, const char *identity, struct blockcache_file *out)
{
    sqlite3_stmt *s = bc->st[ST_FILE_BY_IDENTITY];
    sqlite3_bind_text(s, 1, identity, -1, SQLITE_STATIC);
    int rc = row(bc, ST_FILE_BY_IDENTITY);
    if (rc < 0)
        return rc;
    const unsigned char *v = sqlite3_column_text(s, 1);
    size_t n = (size_t)sqlite3_column_bytes(s, 1);
    if (n >= sizeof(out->validator)) {
        rc = -EIO; /* written by something else than us */
    } else {
        out->id = sqlite3_column_int64(s, 0);
        memcpy(out->validator, v != NULL ? (const char *)v : "", n);
        out->validator[n] = '\0';
        out->size = (uint64_t)sqlite3_column_int64(s, 2);
        out->checked_at = sqlite3_column_int64(s, 3);
    }
    sqlite3_reset(s);
    return rc;
}

/* What rows held: bytes, blocks and spans. */
struct tally {
    uint64_t bytes;
    uint64_t blocks;
    uint64_t spans;
};

/* Deletes a file's row and its span rows; *gone says what they held. */
static int file_delete_rows(struct blockcache *bc, int64_t id, struct tally *gone)
{
    hot_forget(bc, id, UINT64_MAX);
    sqlite3_stmt *s = bc->st[ST_FILE_BLOCKS_SUM];
    sqlite3_bind_int64(s, 1, id);
    int rc = row(bc, ST_FILE_BLOCKS_SUM);
    if (rc < 0)
        return rc;
    gone->bytes = (uint64_t)sqlite3_column_int64(s, 0);
    gone->blocks = (uint64_t)sqlite3_column_int64(s, 1);
    gone->spans = (uint64_t)sqlite3_column_int64(s, 2);
    sqlite3_reset(s);
    sqlite3_bind_int64(bc->st[ST_FILE_BLOCKS_DELETE], 1, id);
    rc = run(bc, ST_FILE_BLOCKS_DELETE);
    if (rc == 0) {
        sqlite3_bind_int64(bc->st[ST_FILE_DELETE], 1, id);
        rc = run(bc, ST_FILE_DELETE);
    }
    return rc;
}

static uint64_t minus(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

/* Caller holds bc->lock and has committed the deletion. */
static void uncount(struct blockcache *bc, const struct tally *gone)
{
    bc->bytes = minus(bc->bytes, gone->bytes);
    bc->blocks = minus(bc->blocks, gone->blocks);
    bc->spans = minus(bc->spans, gone->spans);
}

/* Replaces file old_id (0: none) by a new row with a new id.  Caller holds bc->lock. */
static int file_replace(struct blockcache *bc, int64_t old_id, const char *identity,
                        const char *validator, uint64_t size, struct blockcache_file *out)
{
    struct tally gone = {0};
    int64_t now = (int64_t)time(NULL);
    int rc = tx_begin(bc);
    if (rc == 0 && old_id > 0)
        rc = file_delete_rows(bc, old_id, &gone);
    if (rc == 0) {
        sqlite3_stmt *s = bc->st[ST_FILE_INSERT];
        sqlite3_bind_text(s, 1, identity, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, validator, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, (int64_t)size);
        sqlite3_bind_int64(s, 4, now);
        rc = run(bc, ST_FILE_INSERT);
    }
    int64_t id = sqlite3_last_insert_rowid(bc->db);
    rc = tx_end(bc, rc);
    if (rc < 0)
        return rc;
    uncount(bc, &gone);
    out->id = id;
    out->size = size;
    memcpy(out->validator, validator, strlen(validator) + 1);
    out->checked_at = now;
    return 0;
}

int blockcache_file_get(struct blockcache *bc, const char *identity, struct blockcache_file *out)
{
    if (identity == NULL || out == NULL)
        return -EINVAL;
    pthread_mutex_lock(&bc->lock);
    int rc = file_lookup(bc, identity, out);
    pthread_mutex_unlock(&bc->lock);
    return rc;
}

int blockcache_file_put(struct blockcache *bc, const char *identity, const char *validator,
                        uint64_t size, struct blockcache_file *out, bool *changed)
{
    struct blockcache_file cur;
    int64_t old_id = 0;
    if (changed != NULL)
        *changed = false;
    if (identity == NULL || validator == NULL || out == NULL || identity[0] == '\0' ||
        strlen(identity) > H5CD_MAX_URL_BYTES || strlen(validator) >= H5CD_MAX_VALIDATOR_BYTES ||
        size > INT64_MAX)
        return -EINVAL;
    pthread_mutex_lock(&bc->lock);
    int rc = file_lookup(bc, identity, &cur);
    if (rc == 0 && cur.size == size && strcmp(cur.validator, validator) == 0) {
        cur.checked_at = (int64_t)time(NULL);
        sqlite3_bind_int64(bc->st[ST_FILE_CHECKED], 1, cur.id);
        sqlite3_bind_int64(bc->st[ST_FILE_CHECKED], 2, cur.checked_at);
        rc = run(bc, ST_FILE_CHECKED);
        if (rc == 0)
            *out = cur;
    } else if (rc == 0 || rc == -ENOENT) {
        old_id = rc == 0 ? cur.id : 0;
        rc = file_replace(bc, old_id, identity, validator, size, out);
    }
    pthread_mutex_unlock(&bc->lock);
    if (rc == 0 && old_id > 0) {
        /* The old rows are gone, so no reader or writer can reach this directory now. */
        remove_file_dir(bc, old_id);
        if (changed != NULL)
            *changed = true;
        log_debug("msg=\"cached file changed\" old_id=%" PRId64 " new_id=%" PRId64, old_id,
                  out->id);
    }
    return rc;
}

int blockcache_file_drop(struct blockcache *bc, const char *identity)
{
    struct blockcache_file cur;
    struct tally gone = {0};
    if (identity == NULL)
        return -EINVAL;
    pthread_mutex_lock(&bc->lock);
    int rc = file_lookup(bc, identity, &cur);
    if (rc == 0)
        rc = tx_begin(bc);
    if (rc == 0)
        rc = tx_end(bc, file_delete_rows(bc, cur.id, &gone));
    if (rc == 0)
        uncount(bc, &gone);
    pthread_mutex_unlock(&bc->lock);
    if (rc == 0)
        remove_file_dir(bc, cur.id);
    return rc;
}

/* ---- spans ---- */

/* A span's row: where it starts in the block, its length and checksum. */
struct span_row {
    int64_t off;
    int64_t size;
    uint64_t sum;
};

static bool span_row_same(const struct span_row *a, const struct span_row *b)
{
    return a->off == b->off && a->size == b->size && a->sum == b->sum;
}

/* A row is only believed when its span lies inside one block. */
static bool span_row_valid(const struct blockcache *bc, const struct span_row *sr)
{
    return sr->off >= 0 && sr->size > 0 && sr->off < (int64_t)bc->block_size &&
           sr->size <= (int64_t)bc->block_size - sr->off;
}

static _Atomic uint64_t *gen_of(struct blockcache *bc, int64_t file_id, uint64_t index)
{
    return &bc->gen[block_hash(file_id, index) % GEN_STRIPES];
}

uint64_t blockcache_generation(struct blockcache *bc, int64_t file_id, uint64_t index)
{
    return atomic_load(gen_of(bc, file_id, index));
}

/* Reads up to max rows of a block, by offset.  0 or a negative errno.  Caller holds bc->lock. */
static int spans_load(struct blockcache *bc, int64_t file_id, uint64_t index, struct span_row *rows,
                      size_t max, size_t *n)
{
    sqlite3_stmt *s = bc->st[ST_SPANS_OF_BLOCK];
    sqlite3_bind_int64(s, 1, file_id);
    sqlite3_bind_int64(s, 2, (int64_t)index);
    sqlite3_bind_int64(s, 3, (int64_t)max);
    int rc;
    *n = 0;
    while (*n < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct span_row *r = &rows[(*n)++];
        r->off = sqlite3_column_int64(s, 0);
        r->size = sqlite3_column_int64(s, 1);
        int64_t sum = sqlite3_column_int64(s, 2);
        memcpy(&r->sum, &sum, sizeof(r->sum));
    }
    if (*n == max)
        rc = SQLITE_DONE;
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : db_fail(bc->db, rc, stmt_sql[ST_SPANS_OF_BLOCK]);
}

/* The row of one span.  0, -ENOENT or a negative errno.  Caller holds bc->lock. */
static int span_row_get(struct blockcache *bc, int64_t file_id, uint64_t index, int64_t off,
                        struct span_row *out)
{
    sqlite3_stmt *s = bc->st[ST_SPAN_GET];
    sqlite3_bind_int64(s, 1, file_id);
    sqlite3_bind_int64(s, 2, (int64_t)index);
    sqlite3_bind_int64(s, 3, off);
    int rc = row(bc, ST_SPAN_GET);
    if (rc == 0) {
        out->off = off;
        out->size = sqlite3_column_int64(s, 0);
        int64_t sum = sqlite3_column_int64(s, 1);
        memcpy(&out->sum, &sum, sizeof(out->sum));
    }
    sqlite3_reset(s);
    return rc;
}

/* Whether the block has any row left.  Caller holds bc->lock. */
static bool block_has_rows(struct blockcache *bc, int64_t file_id, uint64_t index)
{
    sqlite3_bind_int64(bc->st[ST_BLOCK_ANY], 1, file_id);
    sqlite3_bind_int64(bc->st[ST_BLOCK_ANY], 2, (int64_t)index);
    int rc = row(bc, ST_BLOCK_ANY);
    sqlite3_reset(bc->st[ST_BLOCK_ANY]);
    return rc != -ENOENT;
}

/* Drops a span's row (if any) and its file.  Caller holds bc->lock. */
static void drop_span(struct blockcache *bc, int64_t file_id, uint64_t index, int64_t off)
{
    char path[PATH_MAX];
    struct span_row sr;
    hot_forget(bc, file_id, index);
    if (span_row_get(bc, file_id, index, off, &sr) == 0) {
        sqlite3_bind_int64(bc->st[ST_SPAN_DELETE], 1, file_id);
        sqlite3_bind_int64(bc->st[ST_SPAN_DELETE], 2, (int64_t)index);
        sqlite3_bind_int64(bc->st[ST_SPAN_DELETE], 3, off);
        if (run(bc, ST_SPAN_DELETE) == 0) {
            struct tally gone = {.bytes = (uint64_t)(sr.size > 0 ? sr.size : 0),
                                 .blocks = !block_has_rows(bc, file_id, index),
                                 .spans = 1};
            uncount(bc, &gone);
        }
    }
    if (off < 0 || off >= (int64_t)bc->block_size)
        return; /* a row no put writes: no file of ours has its name */
    int err = unlink_span(bc, file_id, index, (size_t)off);
    if (err < 0 && block_path(bc, file_id, index, (size_t)off, path, sizeof(path)) == 0)
        log_warn("msg=\"cannot remove cached span\" path=%s err=\"%s\"", path, strerror(-err));
}

/* Reads and verifies one span file.  -ENOENT: gone; -EBADMSG: wrong size or
 * checksum, or not a regular file of ours (a symlink or a directory put there). */
static int read_span(const struct blockcache *bc, int64_t file_id, uint64_t index,
                     const struct span_row *sr, uint8_t *buf)
{
    struct block_name name;
    size_t size = (size_t)sr->size;
    block_name(file_id, index, (size_t)sr->off, &name);
    int dfd = block_dir(bc, &name, false);
    if (dfd == -ELOOP || dfd == -ENOTDIR)
        return -EBADMSG;
    if (dfd < 0)
        return dfd;
    int fd = openat(dfd, name.leaf, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    int open_errno = errno;
    close(dfd);
    if (fd < 0)
        return open_errno == ELOOP ? -EBADMSG : -open_errno;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0)
        rc = -errno;
    else if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (uint64_t)st.st_size != size)
        rc = -EBADMSG;
    size_t got = 0;
    while (rc == 0 && got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno != EINTR)
            rc = -errno;
        else if (n == 0)
            rc = -EBADMSG;
        else if (n > 0)
            got += (size_t)n;
    }
    close(fd);
    if (rc == 0 && XXH3_64bits(buf, size) != sr->sum)
        rc = -EBADMSG;
    return rc;
}

/* True when something (anything) is at the span's path. */
static bool span_exists(const struct blockcache *bc, int64_t file_id, uint64_t index, int64_t off)
{
    struct block_name n;
    if (off < 0 || off >= (int64_t)bc->block_size)
        return false;
    block_name(file_id, index, (size_t)off, &n);
    int dfd = block_dir(bc, &n, false);
    if (dfd < 0)
        return dfd != -ENOENT;
    bool there = faccessat(dfd, n.leaf, F_OK, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
    close(dfd);
    return there;
}

static void spans_add(struct blockcache_spans *out, const struct span_row *sr)
{
    out->span[out->n].off = (size_t)sr->off;
    out->span[out->n].len = (size_t)sr->size;
    out->n++;
}

/* Serves a hot block.  Caller holds bc->lock.  True on a hit. */
static bool get_hot(struct blockcache *bc, int64_t file_id, uint64_t index, uint8_t *buf,
                    struct blockcache_spans *out)
{
    struct hot_block *hot = hot_find(bc, file_id, index);
    if (hot == NULL)
        return false;
    for (size_t i = 0; i < hot->spans.n; i++)
        memcpy(buf + hot->spans.span[i].off, hot->data + hot->spans.span[i].off,
               hot->spans.span[i].len);
    uint64_t gen = out->gen;
    *out = hot->spans;
    out->gen = gen;
    hot->used = ++bc->hot_clock;
    touch_spans(bc, file_id, index, out);
    return true;
}

/*
 * One try of blockcache_get_spans.  -EAGAIN: a put replaced a span while we
 * read it (not on the last try: then the spans that verified are kept).
 */
static int get_spans_once(struct blockcache *bc, int64_t file_id, uint64_t index, uint8_t *buf,
                          struct blockcache_spans *out, bool last)
{
    struct span_row rows[BLOCKCACHE_MAX_SPANS];
    int err[BLOCKCACHE_MAX_SPANS];
    bool changed[BLOCKCACHE_MAX_SPANS] = {false};
    size_t n = 0;
    unsigned corrupt = 0;
    out->n = 0;
    out->gen = blockcache_generation(bc, file_id, index);
    pthread_mutex_lock(&bc->lock);
    if (get_hot(bc, file_id, index, buf, out)) {
        pthread_mutex_unlock(&bc->lock);
        return 0;
    }
    int rc = spans_load(bc, file_id, index, rows, BLOCKCACHE_MAX_SPANS, &n);
    pthread_mutex_unlock(&bc->lock);
    if (rc < 0)
        return rc;
    if (n == 0)
        return -ENOENT;
    for (size_t i = 0; i < n; i++)
        err[i] = span_row_valid(bc, &rows[i])
                     ? read_span(bc, file_id, index, &rows[i], buf + rows[i].off)
                     : -EBADMSG;
    pthread_mutex_lock(&bc->lock);
    /* A merge renames a new file over a span's and then replaces its row: bytes
     * that do not match the row we read may be the new file, not damage. */
    bool replaced = false;
    for (size_t i = 0; i < n; i++) {
        struct span_row now;
        if (err[i] == -EBADMSG || err[i] == -ENOENT)
            changed[i] = span_row_get(bc, file_id, index, rows[i].off, &now) != 0 ||
                         !span_row_same(&rows[i], &now);
        replaced |= changed[i];
    }
    if (replaced && !last) {
        pthread_mutex_unlock(&bc->lock);
        return -EAGAIN;
    }
    bool all = true;
    for (size_t i = 0; i < n; i++) {
        all &= err[i] == 0;
        if (err[i] == 0) {
            spans_add(out, &rows[i]);
        } else if (changed[i]) {
            continue;
        } else if (err[i] == -EBADMSG) {
            bc->corrupt++;
            corrupt++;
            drop_span(bc, file_id, index, rows[i].off);
        } else if (err[i] == -ENOENT && !span_exists(bc, file_id, index, rows[i].off)) {
            /* Evicted meanwhile, or lost: if its row is still there it lies.  A put
             * renames and inserts under the lock, so a row seen here without its
             * file is not a put in progress. */
            drop_span(bc, file_id, index, rows[i].off);
        }
    }
    touch_spans(bc, file_id, index, out);
    /* Only a complete view of the block, with no put since the rows were read, is
     * kept hot: readers trust it to say what is cached. */
    if (all && atomic_load(gen_of(bc, file_id, index)) == out->gen)
        hot_insert(bc, file_id, index, buf, out);
    pthread_mutex_unlock(&bc->lock);
    if (corrupt > 0) {
        char path[PATH_MAX];
        if (block_path(bc, file_id, index, 0, path, sizeof(path)) == 0)
            log_warn("msg=\"corrupt cached span dropped\" block=%s spans=%u", path, corrupt);
        return -EBADMSG;
    }
    return out->n > 0 ? 0 : err[0] == -ENOENT || err[0] == -EBADMSG ? -ENOENT : err[0];
}

int blockcache_get_spans(struct blockcache *bc, int64_t file_id, uint64_t index, uint8_t *buf,
                         size_t cap, struct blockcache_spans *out)
{
    if (buf == NULL || out == NULL || cap < bc->block_size)
        return -EINVAL;
    out->n = 0;
    out->gen = 0;
    if (index > INT64_MAX)
        return -ENOENT;
    out->gen = blockcache_generation(bc, file_id, index);
    if (bc->degraded)
        return -ENOENT;
    int rc = -EAGAIN;
    for (int attempt = 0; rc == -EAGAIN && attempt < SPAN_RETRIES; attempt++)
        rc = get_spans_once(bc, file_id, index, buf, out, attempt + 1 == SPAN_RETRIES);
    return rc;
}

int blockcache_get(struct blockcache *bc, int64_t file_id, uint64_t index, uint8_t *buf, size_t cap,
                   size_t *len)
{
    struct blockcache_spans spans;
    if (len == NULL)
        return -EINVAL;
    int rc = blockcache_get_spans(bc, file_id, index, buf, cap, &spans);
    if (rc < 0 && rc != -EBADMSG)
        return rc;
    if (spans.n > 0 && spans.span[0].off == 0) {
        *len = spans.span[0].len;
        return 0;
    }
    return rc == -EBADMSG ? rc : -ENOENT;
}

/* ---- eviction ---- */

/* Deletes up to EVICT_BATCH least recently used span rows.  Caller holds bc->lock. */
static size_t evict_batch(struct blockcache *bc, struct victim *v)
{
    struct tally gone = {0};
    size_t n = 0;
    int rc = tx_begin(bc);
    if (rc < 0)
        return 0;
    /* Pending hits first, or a span just read could be chosen as a victim. */
    touches_flush(bc);
    sqlite3_stmt *s = bc->st[ST_LRU];
    sqlite3_bind_int64(s, 1, EVICT_BATCH);
    while (rc == 0 && n < EVICT_BATCH && gone.bytes < bc->bytes &&
           bc->bytes - gone.bytes > bc->low_bytes) {
        int sr = sqlite3_step(s);
        if (sr == SQLITE_DONE)
            break;
        if (sr != SQLITE_ROW) {
            rc = db_fail(bc->db, sr, stmt_sql[ST_LRU]);
            break;
        }
        v[n].file_id = sqlite3_column_int64(s, 0);
        v[n].index = (uint64_t)sqlite3_column_int64(s, 1);
        v[n].span_off = sqlite3_column_int64(s, 2);
        gone.bytes += (uint64_t)sqlite3_column_int64(s, 3);
        n++;
    }
    sqlite3_reset(s);
    for (size_t i = 0; i < n && rc == 0; i++) {
        sqlite3_bind_int64(bc->st[ST_SPAN_DELETE], 1, v[i].file_id);
        sqlite3_bind_int64(bc->st[ST_SPAN_DELETE], 2, (int64_t)v[i].index);
        sqlite3_bind_int64(bc->st[ST_SPAN_DELETE], 3, v[i].span_off);
        rc = run(bc, ST_SPAN_DELETE);
    }
    /* A block is gone with its last span; count each block once. */
    for (size_t i = 0; i < n && rc == 0; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = v[j].file_id == v[i].file_id && v[j].index == v[i].index;
        if (!seen && !block_has_rows(bc, v[i].file_id, v[i].index))
            gone.blocks++;
    }
    if (tx_end(bc, rc) < 0)
        return 0;
    gone.spans = n;
    uncount(bc, &gone);
    bc->evictions += n;
    return n;
}

/*
 * Evicts down to the low watermark, a batch per transaction.  Files are
 * unlinked after their rows are gone, still under the lock: a put of the
 * same span renaming a new file in between would otherwise lose its file
 * to our unlink and leave its row without one (found by test_concurrent).
 */
static void evict(struct blockcache *bc)
{
    struct victim v[EVICT_BATCH];
    char path[PATH_MAX];
    size_t n;
    do {
        pthread_mutex_lock(&bc->lock);
        n = bc->bytes > bc->low_bytes ? evict_batch(bc, v) : 0;
        for (size_t i = 0; i < n; i++) {
            hot_forget(bc, v[i].file_id, v[i].index);
            if (v[i].span_off < 0 || v[i].span_off >= (int64_t)bc->block_size)
                continue;
            size_t off = (size_t)v[i].span_off;
            int err = unlink_span(bc, v[i].file_id, v[i].index, off);
            if (err < 0 && block_path(bc, v[i].file_id, v[i].index, off, path, sizeof(path)) == 0)
                log_warn("msg=\"cannot remove evicted span\" path=%s err=\"%s\"", path,
                         strerror(-err));
        }
        pthread_mutex_unlock(&bc->lock);
    } while (n > 0);
}

/* ---- puts ---- */

/* What a put found and will do. */
struct put_plan {
    struct span_row rows[BLOCKCACHE_MAX_SPANS + 1]; /* the block's rows when planned */
    size_t n;
    bool gone[BLOCKCACHE_MAX_SPANS + 1]; /* rows the put replaces (merged) or drops (victims) */
    size_t ngone;
    size_t victims; /* of them, dropped to stay within BLOCKCACHE_MAX_SPANS */
    size_t lo, hi;  /* the span written: the union */
    int64_t left;   /* row to read back for [lo, off), or -1 */
    int64_t right;  /* row to read back for [off + len, hi), or -1 */
};

static bool touches(const struct span_row *r, size_t lo, size_t hi)
{
    return (uint64_t)r->off <= hi && lo <= (uint64_t)(r->off + r->size);
}

/*
 * Plans a put of [off, off + len): every valid row it touches or overlaps
 * is merged (the two reaching past it are read back), and while the block
 * would hold too many spans the shortest other one is dropped.  1 when the
 * bytes are held already.  Caller holds bc->lock.
 */
static int put_plan_make(struct blockcache *bc, size_t off, size_t len, struct put_plan *plan)
{
    plan->lo = off;
    plan->hi = off + len;
    plan->left = plan->right = -1;
    size_t kept = 1; /* the new span */
    for (size_t i = 0; i < plan->n; i++) {
        const struct span_row *r = &plan->rows[i];
        if (!span_row_valid(bc, r))
            continue;
        if ((uint64_t)r->off <= off && off + len <= (uint64_t)(r->off + r->size))
            return 1;
        if (!touches(r, off, off + len)) {
            kept++;
            continue;
        }
        plan->gone[i] = true;
        plan->ngone++;
        if ((size_t)r->off < off) {
            plan->left = (int64_t)i;
            plan->lo = (size_t)r->off;
        }
        if ((size_t)(r->off + r->size) > off + len) {
            plan->right = (int64_t)i;
            plan->hi = (size_t)(r->off + r->size);
        }
    }
    while (kept > BLOCKCACHE_MAX_SPANS) {
        size_t shortest = SIZE_MAX;
        for (size_t i = 0; i < plan->n; i++)
            if (!plan->gone[i] && span_row_valid(bc, &plan->rows[i]) &&
                (shortest == SIZE_MAX || plan->rows[i].size < plan->rows[shortest].size))
                shortest = i;
        if (shortest == SIZE_MAX)
            break;
        plan->gone[shortest] = true;
        plan->ngone++;
        plan->victims++;
        kept--;
    }
    return 0;
}

/*
 * Checks that a put of [off, off + len) of block `index` may go ahead and
 * plans it: 1 when there is nothing to do.  With whole, the span must be
 * the whole block.  Caller holds bc->lock.
 */
static int put_admit(struct blockcache *bc, int64_t file_id, uint64_t index, size_t off, size_t len,
                     bool whole, struct put_plan *plan)
{
    if (bc->degraded)
        return -EROFS;
    if (bc->refuse_until > mono_ms())
        return -ENOSPC;
    sqlite3_bind_int64(bc->st[ST_FILE_SIZE], 1, file_id);
    int rc = row(bc, ST_FILE_SIZE);
    uint64_t size = rc == 0 ? (uint64_t)sqlite3_column_int64(bc->st[ST_FILE_SIZE], 0) : 0;
    sqlite3_reset(bc->st[ST_FILE_SIZE]);
    if (rc < 0)
        return rc;
    if (size == 0 || index > (size - 1) / bc->block_size)
        return -EINVAL;
    uint64_t left = size - index * bc->block_size;
    size_t block_len = left < bc->block_size ? (size_t)left : bc->block_size;
    if (whole ? off != 0 || len != block_len : off >= block_len || len > block_len - off)
        return -EINVAL;
    memset(plan, 0, sizeof(*plan));
    rc = spans_load(bc, file_id, index, plan->rows, BLOCKCACHE_MAX_SPANS + 1, &plan->n);
    return rc < 0 ? rc : put_plan_make(bc, off, len, plan);
}

static int write_all(int fd, const uint8_t *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n > 0)
            done += (size_t)n;
    }
    return 0;
}

/* Writes data to a new temp file under tmp/ (its name in tmp, created 0600
 * and exclusively: never an existing file or a symlink). */
static int write_temp(struct blockcache *bc, const uint8_t *data, size_t len, char *tmp, size_t cap)
{
    int fd = -1;
    for (int attempt = 0; fd < 0 && attempt < TEMP_NAME_ATTEMPTS; attempt++) {
        unsigned seq = atomic_fetch_add(&bc->tmp_seq, 1);
        snprintf(tmp, cap, "blk.%ld.%u.%u", (long)getpid(), seq, (unsigned)rand_r(&seq));
        fd = openat(bc->tmp_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            return -errno;
    }
    if (fd < 0)
        return -EEXIST;
    int rc = write_all(fd, data, len);
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0)
        unlinkat(bc->tmp_fd, tmp, 0);
    return rc;
}

/*
 * Whether the block's rows still allow the plan: every row it replaces is
 * there unchanged, no other row touches the union, and the bound holds.
 * Caller holds bc->lock.  0 or -EAGAIN (or a negative errno).
 */
static int put_recheck(struct blockcache *bc, int64_t file_id, uint64_t index,
                       const struct put_plan *plan, size_t *before)
{
    struct span_row now[BLOCKCACHE_MAX_SPANS + 1];
    size_t n = 0;
    int rc = spans_load(bc, file_id, index, now, BLOCKCACHE_MAX_SPANS + 1, &n);
    if (rc < 0)
        return rc;
    *before = n;
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        bool planned = false;
        for (size_t j = 0; j < plan->n && !planned; j++)
            planned = plan->gone[j] && span_row_same(&now[i], &plan->rows[j]);
        if (planned)
            found++;
        else if (span_row_valid(bc, &now[i]) && touches(&now[i], plan->lo, plan->hi))
            return -EAGAIN;
    }
    if (found != plan->ngone || n - found + 1 > BLOCKCACHE_MAX_SPANS)
        return -EAGAIN;
    return 0;
}

/* Replaces the planned rows by the new span's, in one transaction.  Caller holds bc->lock. */
static int put_rows(struct blockcache *bc, int64_t file_id, uint64_t index,
                    const struct put_plan *plan, const struct span_row *span)
{
    int rc = tx_begin(bc);
    if (rc < 0)
        return rc;
    touches_flush(bc); /* a failure only loses access times */
    for (size_t i = 0; i < plan->n && rc == 0; i++) {
        if (!plan->gone[i])
            continue;
        sqlite3_bind_int64(bc->st[ST_SPAN_DELETE], 1, file_id);
        sqlite3_bind_int64(bc->st[ST_SPAN_DELETE], 2, (int64_t)index);
        sqlite3_bind_int64(bc->st[ST_SPAN_DELETE], 3, plan->rows[i].off);
        rc = run(bc, ST_SPAN_DELETE);
    }
    if (rc == 0) {
        sqlite3_stmt *s = bc->st[ST_SPAN_INSERT];
        sqlite3_bind_int64(s, 1, file_id);
        sqlite3_bind_int64(s, 2, (int64_t)index);
        sqlite3_bind_int64(s, 3, span->size);
        sqlite3_bind_int64(s, 4, checksum_to_db(span->sum));
        sqlite3_bind_int64(s, 5, next_clock(bc));
        sqlite3_bind_int64(s, 6, span->off);
        rc = run(bc, ST_SPAN_INSERT);
    }
    return tx_end(bc, rc);
}

/*
 * Moves the temp file into place and replaces the rows, both under the
 * lock so other threads see a row only with its file.  -EAGAIN when the
 * block changed since the plan (an eviction, a drop).
 */
static int put_commit(struct blockcache *bc, int64_t file_id, uint64_t index,
                      const struct put_plan *plan, const struct span_row *span, const char *tmp)
{
    sqlite3_bind_int64(bc->st[ST_FILE_SIZE], 1, file_id);
    int rc = row(bc, ST_FILE_SIZE);
    sqlite3_reset(bc->st[ST_FILE_SIZE]);
    if (rc < 0)
        return rc; /* dropped or replaced while we wrote */
    size_t before = 0;
    rc = put_recheck(bc, file_id, index, plan, &before);
    if (rc < 0)
        return rc;
    struct block_name n;
    block_name(file_id, index, (size_t)span->off, &n);
    int dfd = block_dir(bc, &n, true);
    if (dfd < 0)
        return dfd;
    /* rename replaces whatever is at the name (a symlink too), never what it points to */
    if (renameat(bc->tmp_fd, tmp, dfd, n.leaf) < 0) {
        rc = -errno;
        close(dfd);
        return rc;
    }
    hot_forget(bc, file_id, index);
    rc = put_rows(bc, file_id, index, plan, span);
    if (rc < 0) {
        /* A replaced row of the same offset now names a missing file: gets drop it. */
        unlinkat(dfd, n.leaf, 0);
        close(dfd);
        return rc;
    }
    close(dfd);
    struct tally gone = {.spans = plan->ngone};
    for (size_t i = 0; i < plan->n; i++) {
        if (!plan->gone[i])
            continue;
        gone.bytes += (uint64_t)plan->rows[i].size;
        if (plan->rows[i].off != span->off && span_row_valid(bc, &plan->rows[i]))
            unlink_span(bc, file_id, index, (size_t)plan->rows[i].off);
    }
    uncount(bc, &gone);
    bc->bytes += (uint64_t)span->size;
    bc->spans++;
    bc->blocks += before == 0;
    bc->span_drops += plan->victims;
    atomic_fetch_add(gen_of(bc, file_id, index), 1);
    return 0;
}

/* Counts a failed write; a full disk stops puts for the cool-down.  Returns the errno to report. */
static int put_failed(struct blockcache *bc, int rc)
{
    bool full = rc == -ENOSPC || rc == -EDQUOT;
    pthread_mutex_lock(&bc->lock);
    bc->write_errors++;
    if (full)
        bc->refuse_until = mono_ms() + (int64_t)bc->cooldown_s * 1000;
    pthread_mutex_unlock(&bc->lock);
    if (full)
        log_warn("msg=\"cache disk full: not caching\" dir=%s cooldown_s=%u", bc->dir,
                 bc->cooldown_s);
    else
        log_warn("msg=\"cache write failed\" dir=%s err=\"%s\"", bc->dir, strerror(-rc));
    return full ? -ENOSPC : rc;
}

/* Reads back the planned row i into merged (at its place); false if it did not verify. */
static bool read_back(struct blockcache *bc, int64_t file_id, uint64_t index,
                      const struct put_plan *plan, int64_t i, uint8_t *merged)
{
    const struct span_row *r = &plan->rows[i];
    return read_span(bc, file_id, index, r, merged + r->off) == 0;
}

/*
 * One try of a put: plan under the lock, read back the spans to merge
 * outside it, write the temp file, commit under the lock.  -EAGAIN when
 * the block changed meanwhile.  *over: the cap's high watermark is passed.
 */
static int put_once(struct blockcache *bc, int64_t file_id, uint64_t index, size_t off,
                    const uint8_t *data, size_t len, bool whole, uint8_t *merged, bool *over,
                    struct put_plan *plan)
{
    char tmp[PATH_MAX];
    pthread_mutex_lock(&bc->lock);
    /* A block that alone passes the high watermark would only evict everything else. */
    int rc = len > bc->high_bytes ? -EFBIG : put_admit(bc, file_id, index, off, len, whole, plan);
    pthread_mutex_unlock(&bc->lock);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    /* The stored bytes on either side, verified by their checksums; a span that does
     * not verify is left out (its row is replaced all the same). */
    if (plan->left >= 0 && !read_back(bc, file_id, index, plan, plan->left, merged))
        plan->lo = off;
    if (plan->right >= 0 && !read_back(bc, file_id, index, plan, plan->right, merged))
        plan->hi = off + len;
    memcpy(merged + off, data, len);
    struct span_row span = {.off = (int64_t)plan->lo, .size = (int64_t)(plan->hi - plan->lo)};
    const uint8_t *bytes = merged + plan->lo;
    span.sum = XXH3_64bits(bytes, (size_t)span.size);
    rc = write_temp(bc, bytes, (size_t)span.size, tmp, sizeof(tmp));
    if (rc < 0)
        return put_failed(bc, rc);
    pthread_mutex_lock(&bc->lock);
    rc = put_commit(bc, file_id, index, plan, &span, tmp);
    *over = bc->bytes > bc->high_bytes;
    pthread_mutex_unlock(&bc->lock);
    if (rc != 0)
        unlinkat(bc->tmp_fd, tmp, 0);
    if (rc < 0 && rc != -ENOENT && rc != -EAGAIN)
        return put_failed(bc, rc);
    return rc;
}

static int put_span(struct blockcache *bc, int64_t file_id, uint64_t index, size_t off,
                    const uint8_t *data, size_t len, bool whole)
{
    if (data == NULL || len == 0 || off >= bc->block_size || len > bc->block_size - off ||
        index > INT64_MAX)
        return -EINVAL;
    uint8_t *merged = malloc(bc->block_size);
    struct put_plan *plan = malloc(sizeof(*plan));
    if (merged == NULL || plan == NULL) {
        free(merged);
        free(plan);
        return -ENOMEM;
    }
    bool over = false;
    int rc = -EAGAIN;
    /* Puts of one block one at a time: they merge with each other instead of racing. */
    pthread_mutex_t *serial = &bc->put_lock[block_hash(file_id, index) % PUT_STRIPES];
    pthread_mutex_lock(serial);
    for (int attempt = 0; rc == -EAGAIN && attempt < SPAN_RETRIES; attempt++)
        rc = put_once(bc, file_id, index, off, data, len, whole, merged, &over, plan);
    pthread_mutex_unlock(serial);
    free(merged);
    free(plan);
    if (over)
        evict(bc);
    return rc == -EAGAIN ? -EBUSY : rc;
}

int blockcache_put(struct blockcache *bc, int64_t file_id, uint64_t index, const uint8_t *data,
                   size_t len)
{
    return put_span(bc, file_id, index, 0, data, len, true);
}

int blockcache_put_span(struct blockcache *bc, int64_t file_id, uint64_t index, size_t off,
                        const uint8_t *data, size_t len)
{
    return put_span(bc, file_id, index, off, data, len, false);
}

int blockcache_set_cap(struct blockcache *bc, uint64_t cap_bytes)
{
    if (cap_bytes == 0)
        return -EINVAL;
    pthread_mutex_lock(&bc->lock);
    bc->cap_bytes = cap_bytes;
    bc->high_bytes = percent_of(cap_bytes, bc->high_pct);
    bc->low_bytes = percent_of(cap_bytes, bc->low_pct);
    bool over = bc->bytes > bc->high_bytes;
    pthread_mutex_unlock(&bc->lock);
    if (over)
        evict(bc);
    return 0;
}

void blockcache_get_stats(struct blockcache *bc, struct blockcache_stats *out)
{
    pthread_mutex_lock(&bc->lock);
    out->bytes = bc->bytes;
    out->blocks = bc->blocks;
    out->cap_bytes = bc->cap_bytes;
    out->evictions = bc->evictions;
    out->corrupt = bc->corrupt;
    out->write_errors = bc->write_errors;
    out->spans = bc->spans;
    out->span_drops = bc->span_drops;
    out->degraded = bc->degraded;
    pthread_mutex_unlock(&bc->lock);
}

int blockcache_list(struct blockcache *bc, blockcache_list_fn fn, void *arg)
{
    pthread_mutex_lock(&bc->lock);
    touches_flush_tx(bc); /* so hits and last access are current */
    sqlite3_stmt *s = bc->st[ST_LIST];
    int rc, n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct blockcache_file_info info = {0};
        snprintf(info.identity, sizeof(info.identity), "%s",
                 (const char *)sqlite3_column_text(s, 0));
        snprintf(info.validator, sizeof(info.validator), "%s",
                 (const char *)sqlite3_column_text(s, 1));
        info.size = (uint64_t)sqlite3_column_int64(s, 2);
        info.hits = (uint64_t)sqlite3_column_int64(s, 3);
        info.checked_at = sqlite3_column_int64(s, 4);
        info.bytes_cached = (uint64_t)sqlite3_column_int64(s, 5);
        info.blocks = (uint64_t)sqlite3_column_int64(s, 6);
        info.last_access_us = sqlite3_column_int64(s, 7);
        n++;
        if (fn(&info, arg) != 0)
            break;
    }
    sqlite3_reset(s);
    pthread_mutex_unlock(&bc->lock);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? n : -EIO;
}

int blockcache_drop_all(struct blockcache *bc)
{
    pthread_mutex_lock(&bc->lock);
    bc->ntouches = 0;
    hot_forget(bc, -1, 0);
    int rc = bc->degraded ? db_exec(bc->db, "DELETE FROM blocks; DELETE FROM files;") : wipe(bc);
    if (rc == 0) {
        bc->bytes = 0;
        bc->blocks = 0;
        bc->spans = 0;
    }
    pthread_mutex_unlock(&bc->lock);
    return rc;
}

int blockcache_get_hot_part(struct blockcache *bc, int64_t file_id, uint64_t index, size_t offset,
                            size_t len, uint8_t *dst)
{
    pthread_mutex_lock(&bc->lock);
    struct hot_block *hot = hot_find(bc, file_id, index);
    int rc = -ENOENT;
    if (offset >= bc->block_size || len > bc->block_size - offset) {
        rc = -EINVAL;
    } else if (hot != NULL) {
        for (size_t i = 0; i < hot->spans.n && rc != 0; i++) {
            const struct blockcache_span *sp = &hot->spans.span[i];
            if (offset < sp->off || offset + len > sp->off + sp->len)
                continue;
            memcpy(dst, hot->data + offset, len);
            hot->used = ++bc->hot_clock;
            touch_span(bc, file_id, index, sp->off, 1);
            rc = 0;
        }
    }
    pthread_mutex_unlock(&bc->lock);
    return rc;
}

/* ---- files known readable without credentials (rows "public:IDENTITY" of meta) ---- */

#define PUBLIC_KEY_PREFIX "public:"

static int public_key(const char *identity, char *key, size_t cap)
{
    int n = snprintf(key, cap, PUBLIC_KEY_PREFIX "%s", identity);
    return identity[0] == '\0' || n < 0 || (size_t)n >= cap ? -EINVAL : 0;
}

int blockcache_public_get(struct blockcache *bc, const char *identity, int64_t *until)
{
    char key[sizeof(PUBLIC_KEY_PREFIX) + H5CD_MAX_URL_BYTES];
    if (identity == NULL || until == NULL || public_key(identity, key, sizeof(key)) < 0)
        return -EINVAL;
    pthread_mutex_lock(&bc->lock);
    int rc = meta_get(bc->db, key, until);
    pthread_mutex_unlock(&bc->lock);
    return rc;
}

int blockcache_public_set(struct blockcache *bc, const char *identity, int64_t until)
{
    char key[sizeof(PUBLIC_KEY_PREFIX) + H5CD_MAX_URL_BYTES];
    if (identity == NULL || public_key(identity, key, sizeof(key)) < 0)
        return -EINVAL;
    pthread_mutex_lock(&bc->lock);
    int rc = meta_set(bc->db, key, until);
    sqlite3_stmt *s = NULL;
    if (rc == 0 && sqlite3_prepare_v2(bc->db,
                                      "DELETE FROM meta WHERE key >= 'public:' AND key < 'public;'"
                                      " AND value < ?1",
                                      -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, (int64_t)time(NULL));
        sqlite3_step(s);
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&bc->lock);
    return rc;
}
