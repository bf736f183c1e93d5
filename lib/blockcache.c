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
 *   <dir>/tmp/blk.XXXXXX         blocks being written
 *   <dir>/blocks/<file_id>/<idx % 256 as %02x>/<idx>
 * The 256-way fan-out keeps directories small for large files.  File ids
 * are AUTOINCREMENT, never reused, so a path always names bytes of one
 * version of one remote file.
 *
 * Partial blocks (schema 3).  Batches fetch exact byte ranges, so a block
 * file holds one span of its block: the row says where it starts in the
 * block (span_off) and how long it is (size, also the file's size, which
 * reconciliation checks as before); the checksum covers the span.  Gets
 * return the span; a reader decides whether it holds the bytes it needs.
 * A put of a span that touches or overlaps the stored span reads the
 * stored one back (verified), writes the union to a temp file and renames
 * it over the block's file, then updates the row, both under the lock and
 * only if the row is still the one it merged with (else it plans again, a
 * few times at most).  A get that finds bytes not matching the row it read
 * looks at the row again: if a put replaced it meanwhile it reads again,
 * otherwise the block is corrupt and dropped.  One span per block keeps
 * lookups one row and a read one file; two disjoint spans of one block
 * keep the longer (remote.c bridges holes inside a block so that one batch
 * does not make such pairs).  A schema-2 cache is migrated in place: its
 * rows are whole blocks, span_off 0.  Other schemas are rebuilt.
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

#define HOT_BLOCKS                64 /* verified blocks kept in memory (16 MiB at 256 KiB blocks) */
#define SCHEMA_VERSION            3  /* 2: files.hits; 3: blocks.span_off (partial blocks) */
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
/* Tries of a read or a merge that another thread's put of the same block overtook. */
#define SPAN_RETRIES 4

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
    ST_BLOCK_GET,
    ST_BLOCK_INSERT,
    ST_BLOCK_REPLACE,
    ST_BLOCK_DELETE,
    ST_BLOCK_TOUCH,
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
    [ST_FILE_BLOCKS_SUM] = "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM blocks WHERE file_id = ?1",
    [ST_FILE_BLOCKS_DELETE] = "DELETE FROM blocks WHERE file_id = ?1",
    [ST_BLOCK_GET] = "SELECT size, checksum, span_off FROM blocks WHERE file_id = ?1 AND idx = ?2",
    [ST_BLOCK_INSERT] = "INSERT OR IGNORE INTO blocks (file_id, idx, size, checksum, last_access,"
                        " span_off) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_BLOCK_REPLACE] = "UPDATE blocks SET size = ?3, checksum = ?4, last_access = ?5,"
                         " span_off = ?6 WHERE file_id = ?1 AND idx = ?2",
    [ST_BLOCK_DELETE] = "DELETE FROM blocks WHERE file_id = ?1 AND idx = ?2",
    [ST_BLOCK_TOUCH] = "UPDATE blocks SET last_access = ?3 "
                       "WHERE file_id = ?1 AND idx = ?2 AND last_access < ?3",
    [ST_LRU] = "SELECT file_id, idx, size FROM blocks ORDER BY last_access, file_id, idx LIMIT ?1",
    [ST_FILE_HIT] = "UPDATE files SET hits = hits + ?2 WHERE id = ?1",
    [ST_LIST] = "SELECT f.identity, f.validator, f.size, f.hits, f.checked_at,"
                " COALESCE(SUM(b.size), 0), COUNT(b.idx), COALESCE(MAX(b.last_access), 0)"
                " FROM files f LEFT JOIN blocks b ON b.file_id = f.id"
                " GROUP BY f.id ORDER BY f.identity",
};

/* The blocks table is WITHOUT ROWID: its primary key is the only lookup. */
static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS files ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, identity TEXT NOT NULL UNIQUE,"
    " validator TEXT NOT NULL, size INTEGER NOT NULL, checked_at INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL, hits INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS blocks ("
    " file_id INTEGER NOT NULL, idx INTEGER NOT NULL, size INTEGER NOT NULL,"
    " checksum INTEGER NOT NULL, last_access INTEGER NOT NULL,"
    " span_off INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (file_id, idx)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS blocks_lru ON blocks (last_access);";

struct touch {
    int64_t file_id;
    uint64_t index;
    int64_t at;
    int64_t hits; /* reads of the block this entry stands for */
};

struct victim {
    int64_t file_id;
    uint64_t index;
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
    uint64_t blocks;
    uint64_t evictions;
    uint64_t corrupt;
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
        size_t off; /* the span held: data[off .. off + len) */
        size_t len;
        uint64_t used; /* LRU clock */
        uint8_t *data;
    } hot[HOT_BLOCKS];
    uint64_t hot_clock;
};

/* ---- hot blocks (caller holds bc->lock) ---- */

static struct hot_block *hot_find(struct blockcache *bc, int64_t file_id, uint64_t index)
{
    for (size_t i = 0; i < HOT_BLOCKS; i++)
        if (bc->hot[i].file_id == file_id && bc->hot[i].index == index && bc->hot[i].data != NULL)
            return &bc->hot[i];
    return NULL;
}

/* data holds the block's bytes at their block offsets: the span is data[off .. off + len). */
static void hot_insert(struct blockcache *bc, int64_t file_id, uint64_t index, const uint8_t *data,
                       size_t off, size_t len)
{
    if (hot_find(bc, file_id, index) != NULL)
        return;
    struct hot_block *victim = &bc->hot[0];
    for (size_t i = 1; i < HOT_BLOCKS && victim->data != NULL; i++)
        if (bc->hot[i].data == NULL || bc->hot[i].used < victim->used)
            victim = &bc->hot[i];
    if (victim->data == NULL && (victim->data = malloc(bc->block_size)) == NULL)
        return;
    memcpy(victim->data + off, data + off, len);
    victim->file_id = file_id;
    victim->index = index;
    victim->off = off;
    victim->len = len;
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

/* The block's path, for log lines only: every access goes through directory descriptors. */
static int block_path(const struct blockcache *bc, int64_t file_id, uint64_t index, char *buf,
                      size_t cap)
{
    int n = snprintf(buf, cap, "%s/blocks/%" PRId64 "/%02x/%" PRIu64, bc->dir, file_id,
                     (unsigned)(index & 0xff), index);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* A block's name inside its directory blocks/<file_id>/<index % 256>. */
struct block_name {
    char id[24];
    char fan[3];
    char leaf[24];
};

static void block_name(int64_t file_id, uint64_t index, struct block_name *n)
{
    snprintf(n->id, sizeof(n->id), "%" PRId64, file_id);
    snprintf(n->fan, sizeof(n->fan), "%02x", (unsigned)(index & 0xff));
    snprintf(n->leaf, sizeof(n->leaf), "%" PRIu64, index);
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

/* Unlinks a block's file (never following a symlink there).  0, or a negative errno. */
static int unlink_block(const struct blockcache *bc, int64_t file_id, uint64_t index)
{
    struct block_name n;
    block_name(file_id, index, &n);
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
    block_name(file_id, 0, &n);
    int rc = remove_tree(bc->blocks_fd, n.id, 0, NULL);
    if (rc < 0)
        log_warn("msg=\"cannot remove cached file\" dir=%s/blocks/%s err=\"%s\"", bc->dir, n.id,
                 strerror(-rc));
}

/* ---- access times ---- */

/* Writes the buffered access times.  Caller holds bc->lock and has begun a transaction. */
static int touches_flush(struct blockcache *bc)
{
    sqlite3_stmt *s = bc->st[ST_BLOCK_TOUCH];
    int rc = 0;
    for (size_t i = 0; i < bc->ntouches && rc == 0; i++) {
        sqlite3_bind_int64(s, 1, bc->touches[i].file_id);
        sqlite3_bind_int64(s, 2, (int64_t)bc->touches[i].index);
        sqlite3_bind_int64(s, 3, bc->touches[i].at);
        rc = run(bc, ST_BLOCK_TOUCH);
        if (rc == 0) {
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

/* Caller holds bc->lock.  Reads of one block in a row (the small chunks of a
 * batch share blocks) make one entry: one write of the access time, hits summed. */
static void touch(struct blockcache *bc, int64_t file_id, uint64_t index)
{
    if (bc->ntouches > 0) {
        struct touch *last = &bc->touches[bc->ntouches - 1];
        if (last->file_id == file_id && last->index == index) {
            last->at = next_clock(bc);
            last->hits++;
            return;
        }
    }
    if (bc->ntouches == TOUCH_MAX)
        touches_flush_tx(bc);
    struct touch *t = &bc->touches[bc->ntouches++];
    t->file_id = file_id;
    t->index = index;
    t->at = next_clock(bc);
    t->hits = 1;
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

static int schema_setup(struct blockcache *bc, bool on_disk)
{
    int64_t version = 0, bs = 0, epoch = 0;
    bool fresh = false; /* the files table starts empty, its ids from 1 */
    int rc = db_exec(bc->db, "CREATE TABLE IF NOT EXISTS meta ("
                             " key TEXT PRIMARY KEY, value INTEGER NOT NULL)");
    bool known = rc == 0 && meta_get(bc->db, "schema_version", &version) == 0;
    /* Every version-2 row is a whole block: the span (0, size) keeps it as it was. */
    if (known && version == 2 &&
        db_exec(bc->db, "ALTER TABLE blocks ADD COLUMN span_off INTEGER NOT NULL DEFAULT 0") == 0) {
        log_info("msg=\"cache index migrated\" from=2 to=%d", SCHEMA_VERSION);
        version = SCHEMA_VERSION;
    }
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

/* A block file is kept only if its row exists with the same size. */
static int block_entry(int dirfd, const char *name, const struct stat *st, void *arg)
{
    static const char hex[] = "0123456789abcdef";
    struct recon *r = arg;
    struct blockcache *bc = r->bc;
    uint64_t index = 0;
    if (!S_ISREG(st->st_mode) || parse_dec(name, INT64_MAX, &index) < 0)
        return orphan(r, dirfd, name, 3);
    char fan[3] = {hex[(index >> 4) & 0xf], hex[index & 0xf], '\0'};
    if (strcmp(fan, r->fan) != 0)
        return orphan(r, dirfd, name, 3);
    sqlite3_stmt *s = bc->st[ST_BLOCK_GET];
    sqlite3_bind_int64(s, 1, r->file_id);
    sqlite3_bind_int64(s, 2, (int64_t)index);
    int rc = row(bc, ST_BLOCK_GET);
    int64_t size = rc == 0 ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_reset(s);
    if (rc == -ENOENT)
        return orphan(r, dirfd, name, 3);
    if (rc < 0)
        return rc;
    if (st->st_size != size) /* its row is dropped below: it is not marked present */
        return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
    sqlite3_bind_int64(r->present, 1, r->file_id);
    sqlite3_bind_int64(r->present, 2, (int64_t)index);
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
    int rc = db_exec(bc->db, "CREATE TEMP TABLE present (file_id INTEGER, idx INTEGER,"
                             " PRIMARY KEY (file_id, idx)) WITHOUT ROWID");
    if (rc < 0)
        return rc;
    int sr = sqlite3_prepare_v2(bc->db, "INSERT OR IGNORE INTO temp.present VALUES (?1, ?2)", -1,
                                &r.present, NULL);
    rc = sr == SQLITE_OK ? tx_begin(bc) : db_fail(bc->db, sr, "prepare present");
    if (rc == 0)
        rc = each_entry(bc->dir_fd, "blocks", file_dir_entry, &r);
    /* Only a complete walk may conclude that a row has no file. */
    if (rc == 0)
        rc = db_exec(bc->db, "DELETE FROM blocks WHERE NOT EXISTS (SELECT 1 FROM temp.present p"
                             " WHERE p.file_id = blocks.file_id AND p.idx = blocks.idx)");
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
    int rc = sqlite3_prepare_v2(bc->db,
                                "SELECT COALESCE(SUM(size), 0), COUNT(*), "
                                "COALESCE(MAX(last_access), 0) FROM blocks",
                                -1, &s, NULL);
    if (rc != SQLITE_OK)
        return db_fail(bc->db, rc, "totals");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        bc->bytes = (uint64_t)sqlite3_column_int64(s, 0);
        bc->blocks = (uint64_t)sqlite3_column_int64(s, 1);
        bc->clock = sqlite3_column_int64(s, 2);
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

/* Deletes a file's row and its block rows; *bytes and *blocks say what they held. */
static int file_delete_rows(struct blockcache *bc, int64_t id, uint64_t *bytes, uint64_t *blocks)
{
    hot_forget(bc, id, UINT64_MAX);
    sqlite3_stmt *s = bc->st[ST_FILE_BLOCKS_SUM];
    sqlite3_bind_int64(s, 1, id);
    int rc = row(bc, ST_FILE_BLOCKS_SUM);
    if (rc < 0)
        return rc;
    *bytes = (uint64_t)sqlite3_column_int64(s, 0);
    *blocks = (uint64_t)sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    sqlite3_bind_int64(bc->st[ST_FILE_BLOCKS_DELETE], 1, id);
    rc = run(bc, ST_FILE_BLOCKS_DELETE);
    if (rc == 0) {
        sqlite3_bind_int64(bc->st[ST_FILE_DELETE], 1, id);
        rc = run(bc, ST_FILE_DELETE);
    }
    return rc;
}

/* Caller holds bc->lock and has committed the deletion. */
static void uncount(struct blockcache *bc, uint64_t bytes, uint64_t blocks)
{
    bc->bytes = bc->bytes > bytes ? bc->bytes - bytes : 0;
    bc->blocks = bc->blocks > blocks ? bc->blocks - blocks : 0;
}

/* Replaces file old_id (0: none) by a new row with a new id.  Caller holds bc->lock. */
static int file_replace(struct blockcache *bc, int64_t old_id, const char *identity,
                        const char *validator, uint64_t size, struct blockcache_file *out)
{
    uint64_t bytes = 0, blocks = 0;
    int64_t now = (int64_t)time(NULL);
    int rc = tx_begin(bc);
    if (rc == 0 && old_id > 0)
        rc = file_delete_rows(bc, old_id, &bytes, &blocks);
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
    uncount(bc, bytes, blocks);
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
    uint64_t bytes = 0, blocks = 0;
    if (identity == NULL)
        return -EINVAL;
    pthread_mutex_lock(&bc->lock);
    int rc = file_lookup(bc, identity, &cur);
    if (rc == 0)
        rc = tx_begin(bc);
    if (rc == 0)
        rc = tx_end(bc, file_delete_rows(bc, cur.id, &bytes, &blocks));
    if (rc == 0)
        uncount(bc, bytes, blocks);
    pthread_mutex_unlock(&bc->lock);
    if (rc == 0)
        remove_file_dir(bc, cur.id);
    return rc;
}

/* ---- blocks ---- */

/* Drops a block's row (if any) and its file.  Caller holds bc->lock. */
static void drop_block(struct blockcache *bc, int64_t file_id, uint64_t index, const char *path)
{
    int err;
    hot_forget(bc, file_id, index);
    sqlite3_stmt *s = bc->st[ST_BLOCK_GET];
    sqlite3_bind_int64(s, 1, file_id);
    sqlite3_bind_int64(s, 2, (int64_t)index);
    int rc = row(bc, ST_BLOCK_GET);
    uint64_t size = rc == 0 ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc == 0) {
        sqlite3_bind_int64(bc->st[ST_BLOCK_DELETE], 1, file_id);
        sqlite3_bind_int64(bc->st[ST_BLOCK_DELETE], 2, (int64_t)index);
        if (run(bc, ST_BLOCK_DELETE) == 0)
            uncount(bc, size, 1);
    }
    if ((err = unlink_block(bc, file_id, index)) < 0)
        log_warn("msg=\"cannot remove cached block\" path=%s err=\"%s\"", path, strerror(-err));
}

/* Reads and verifies one block file.  -ENOENT: gone; -EBADMSG: wrong size or
 * checksum, or not a regular file of ours (a symlink or a directory put there). */
static int read_block(const struct blockcache *bc, int64_t file_id, uint64_t index, uint8_t *buf,
                      size_t size, uint64_t sum)
{
    struct block_name name;
    block_name(file_id, index, &name);
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
    if (rc == 0 && XXH3_64bits(buf, size) != sum)
        rc = -EBADMSG;
    return rc;
}

/* True when something (anything) is at the block's path. */
static bool block_exists(const struct blockcache *bc, int64_t file_id, uint64_t index)
{
    struct block_name n;
    block_name(file_id, index, &n);
    int dfd = block_dir(bc, &n, false);
    if (dfd < 0)
        return dfd != -ENOENT;
    bool there = faccessat(dfd, n.leaf, F_OK, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
    close(dfd);
    return there;
}

/* A block's row: its span and the span's checksum. */
struct span_row {
    int64_t off;
    int64_t size;
    uint64_t sum;
};

/* Reads the row of a block.  0, -ENOENT or a negative errno.  Caller holds bc->lock. */
static int span_row_get(struct blockcache *bc, int64_t file_id, uint64_t index,
                        struct span_row *out)
{
    sqlite3_stmt *s = bc->st[ST_BLOCK_GET];
    sqlite3_bind_int64(s, 1, file_id);
    sqlite3_bind_int64(s, 2, (int64_t)index);
    int rc = row(bc, ST_BLOCK_GET);
    if (rc == 0) {
        out->size = sqlite3_column_int64(s, 0);
        int64_t sum = sqlite3_column_int64(s, 1);
        memcpy(&out->sum, &sum, sizeof(out->sum));
        out->off = sqlite3_column_int64(s, 2);
    }
    sqlite3_reset(s);
    return rc;
}

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

/* One try of blockcache_get_span.  -EAGAIN: a put replaced the block while we read it. */
static int get_span_once(struct blockcache *bc, int64_t file_id, uint64_t index, uint8_t *buf,
                         size_t *off, size_t *len, const char *path)
{
    struct span_row sr = {0}, now = {0};
    pthread_mutex_lock(&bc->lock);
    struct hot_block *hot = hot_find(bc, file_id, index);
    if (hot != NULL) {
        memcpy(buf + hot->off, hot->data + hot->off, hot->len);
        *off = hot->off;
        *len = hot->len;
        hot->used = ++bc->hot_clock;
        touch(bc, file_id, index);
        pthread_mutex_unlock(&bc->lock);
        return 0;
    }
    int rc = span_row_get(bc, file_id, index, &sr);
    pthread_mutex_unlock(&bc->lock);
    if (rc < 0)
        return rc;
    if (!span_row_valid(bc, &sr))
        rc = -EBADMSG;
    else
        rc = read_block(bc, file_id, index, buf + sr.off, (size_t)sr.size, sr.sum);
    pthread_mutex_lock(&bc->lock);
    /* A merge renames a new file over the block's and then updates its row: bytes that
     * do not match the row we read may be the new file, not damage.  Read again. */
    bool replaced = (rc == -EBADMSG || rc == -ENOENT) &&
                    (span_row_get(bc, file_id, index, &now) != 0 || !span_row_same(&sr, &now));
    if (replaced) {
        rc = -EAGAIN;
    } else if (rc == 0) {
        touch(bc, file_id, index);
        hot_insert(bc, file_id, index, buf, (size_t)sr.off, (size_t)sr.size);
    } else if (rc == -EBADMSG) {
        bc->corrupt++;
        drop_block(bc, file_id, index, path);
    } else if (rc == -ENOENT && !block_exists(bc, file_id, index)) {
        /* Evicted meanwhile, or lost: if its row is still there it lies.  A put
         * renames and inserts under the lock, so a row seen here without its
         * file is not a put in progress. */
        drop_block(bc, file_id, index, path);
    }
    pthread_mutex_unlock(&bc->lock);
    if (rc == -EBADMSG)
        log_warn("msg=\"corrupt cached block dropped\" path=%s", path);
    if (rc == 0) {
        *off = (size_t)sr.off;
        *len = (size_t)sr.size;
    }
    return rc;
}

int blockcache_get_span(struct blockcache *bc, int64_t file_id, uint64_t index, uint8_t *buf,
                        size_t cap, size_t *off, size_t *len)
{
    char path[PATH_MAX];
    if (buf == NULL || off == NULL || len == NULL || cap < bc->block_size)
        return -EINVAL;
    if (bc->degraded || index > INT64_MAX)
        return -ENOENT;
    int rc = block_path(bc, file_id, index, path, sizeof(path));
    if (rc < 0)
        return rc;
    for (int attempt = 0; attempt < SPAN_RETRIES; attempt++) {
        rc = get_span_once(bc, file_id, index, buf, off, len, path);
        if (rc != -EAGAIN)
            return rc;
    }
    return -ENOENT; /* overtaken by puts every time: a miss */
}

int blockcache_get(struct blockcache *bc, int64_t file_id, uint64_t index, uint8_t *buf, size_t cap,
                   size_t *len)
{
    size_t off = 0;
    int rc = blockcache_get_span(bc, file_id, index, buf, cap, &off, len);
    return rc == 0 && off != 0 ? -ENOENT : rc;
}

/* Deletes up to EVICT_BATCH least recently used rows.  Caller holds bc->lock. */
static size_t evict_batch(struct blockcache *bc, struct victim *v)
{
    uint64_t freed = 0;
    size_t n = 0;
    int rc = tx_begin(bc);
    if (rc < 0)
        return 0;
    /* Pending hits first, or a block just read could be chosen as a victim. */
    touches_flush(bc);
    sqlite3_stmt *s = bc->st[ST_LRU];
    sqlite3_bind_int64(s, 1, EVICT_BATCH);
    while (rc == 0 && n < EVICT_BATCH && freed < bc->bytes && bc->bytes - freed > bc->low_bytes) {
        int sr = sqlite3_step(s);
        if (sr == SQLITE_DONE)
            break;
        if (sr != SQLITE_ROW) {
            rc = db_fail(bc->db, sr, stmt_sql[ST_LRU]);
            break;
        }
        v[n].file_id = sqlite3_column_int64(s, 0);
        v[n].index = (uint64_t)sqlite3_column_int64(s, 1);
        freed += (uint64_t)sqlite3_column_int64(s, 2);
        n++;
    }
    sqlite3_reset(s);
    for (size_t i = 0; i < n && rc == 0; i++) {
        sqlite3_bind_int64(bc->st[ST_BLOCK_DELETE], 1, v[i].file_id);
        sqlite3_bind_int64(bc->st[ST_BLOCK_DELETE], 2, (int64_t)v[i].index);
        rc = run(bc, ST_BLOCK_DELETE);
    }
    if (tx_end(bc, rc) < 0)
        return 0;
    uncount(bc, freed, n);
    bc->evictions += n;
    return n;
}

/*
 * Evicts down to the low watermark, a batch per transaction.  Files are
 * unlinked after their rows are gone, still under the lock: a put of the
 * same block renaming a new file in between would otherwise lose its file
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
            int err = unlink_block(bc, v[i].file_id, v[i].index);
            if (err < 0 && block_path(bc, v[i].file_id, v[i].index, path, sizeof(path)) == 0)
                log_warn("msg=\"cannot remove evicted block\" path=%s err=\"%s\"", path,
                         strerror(-err));
        }
        pthread_mutex_unlock(&bc->lock);
    } while (n > 0);
}

/* What a put of a span finds: whether to write, and what to write over. */
struct put_plan {
    struct span_row old; /* the row found; size 0: none */
    bool merge;          /* the new span touches or overlaps old: write their union */
};

/*
 * Checks that a put of [off, off + len) of block `index` may go ahead and
 * plans it: 1 when there is nothing to do (the stored span holds it, or
 * holds more bytes than a disjoint new span).  With whole, the span must be
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
    *plan = (struct put_plan){0};
    rc = span_row_get(bc, file_id, index, &plan->old);
    if (rc == -ENOENT) {
        plan->old.size = 0;
        return 0;
    }
    if (rc < 0)
        return rc;
    if (!span_row_valid(bc, &plan->old))
        return 0; /* a row no put writes: replaced */
    uint64_t lo = (uint64_t)plan->old.off, hi = lo + (uint64_t)plan->old.size;
    if (lo <= off && off + len <= hi)
        return 1;
    /* A span that holds the stored one replaces it without reading it back. */
    plan->merge = off <= hi && lo <= off + len && (lo < off || off + len < hi);
    /* One span per block: of two disjoint spans the longer is kept. */
    return !plan->merge && len <= (uint64_t)plan->old.size ? 1 : 0;
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
 * Moves the temp file into place and writes the row, both under the lock
 * so other threads see a row only with its file.  -EAGAIN when the block's
 * row is no longer the one planned with (another put got there first).
 */
static int put_commit(struct blockcache *bc, int64_t file_id, uint64_t index,
                      const struct span_row *old, const struct span_row *span, const char *tmp)
{
    sqlite3_bind_int64(bc->st[ST_FILE_SIZE], 1, file_id);
    int rc = row(bc, ST_FILE_SIZE);
    sqlite3_reset(bc->st[ST_FILE_SIZE]);
    if (rc < 0)
        return rc; /* dropped or replaced while we wrote */
    struct span_row cur;
    rc = span_row_get(bc, file_id, index, &cur);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    if ((rc == 0) != (old->size > 0) || (rc == 0 && !span_row_same(&cur, old)))
        return -EAGAIN;
    struct block_name n;
    block_name(file_id, index, &n);
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
    rc = tx_begin(bc);
    if (rc == 0) {
        touches_flush(bc); /* a failure only loses access times */
        enum stmt_id id = old->size > 0 ? ST_BLOCK_REPLACE : ST_BLOCK_INSERT;
        sqlite3_stmt *s = bc->st[id];
        sqlite3_bind_int64(s, 1, file_id);
        sqlite3_bind_int64(s, 2, (int64_t)index);
        sqlite3_bind_int64(s, 3, span->size);
        sqlite3_bind_int64(s, 4, checksum_to_db(span->sum));
        sqlite3_bind_int64(s, 5, next_clock(bc));
        sqlite3_bind_int64(s, 6, span->off);
        rc = tx_end(bc, run(bc, id));
    }
    if (rc < 0) {
        /* The old row, if any, now names a missing file: gets drop it. */
        unlinkat(dfd, n.leaf, 0);
        close(dfd);
        return rc;
    }
    close(dfd);
    bc->bytes += (uint64_t)span->size;
    bc->bytes -= (uint64_t)old->size;
    bc->blocks += old->size == 0;
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

/*
 * One try of a put: plan under the lock, read the stored span to merge
 * outside it, write the temp file, commit under the lock.  -EAGAIN when
 * another put of the block overtook us.  *over: the cap's high watermark
 * is passed.
 */
static int put_once(struct blockcache *bc, int64_t file_id, uint64_t index, size_t off,
                    const uint8_t *data, size_t len, bool whole, uint8_t *merged, bool *over)
{
    char tmp[PATH_MAX];
    struct put_plan plan;
    pthread_mutex_lock(&bc->lock);
    /* A block that alone passes the high watermark would only evict everything else. */
    int rc = len > bc->high_bytes ? -EFBIG : put_admit(bc, file_id, index, off, len, whole, &plan);
    pthread_mutex_unlock(&bc->lock);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    struct span_row span = {.off = (int64_t)off, .size = (int64_t)len};
    if (plan.merge && read_block(bc, file_id, index, merged + plan.old.off, (size_t)plan.old.size,
                                 plan.old.sum) == 0) {
        /* Old and new bytes both verified (old by its checksum): their union. */
        memcpy(merged + off, data, len);
        size_t lo = off < (size_t)plan.old.off ? off : (size_t)plan.old.off;
        size_t hi = off + len;
        if ((size_t)(plan.old.off + plan.old.size) > hi)
            hi = (size_t)(plan.old.off + plan.old.size);
        span = (struct span_row){.off = (int64_t)lo, .size = (int64_t)(hi - lo)};
        data = merged + lo;
    }
    span.sum = XXH3_64bits(data, (size_t)span.size);
    rc = write_temp(bc, data, (size_t)span.size, tmp, sizeof(tmp));
    if (rc < 0)
        return put_failed(bc, rc);
    pthread_mutex_lock(&bc->lock);
    rc = put_commit(bc, file_id, index, &plan.old, &span, tmp);
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
    if (data == NULL || len == 0 || off >= bc->block_size || len > bc->block_size - off)
        return -EINVAL;
    uint8_t *merged = malloc(bc->block_size);
    if (merged == NULL)
        return -ENOMEM;
    bool over = false;
    int rc = -EAGAIN;
    for (int attempt = 0; rc == -EAGAIN && attempt < SPAN_RETRIES; attempt++)
        rc = put_once(bc, file_id, index, off, data, len, whole, merged, &over);
    free(merged);
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
    } else if (hot != NULL && offset >= hot->off && offset + len <= hot->off + hot->len) {
        memcpy(dst, hot->data + offset, len);
        hot->used = ++bc->hot_clock;
        touch(bc, file_id, index);
        rc = 0;
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
