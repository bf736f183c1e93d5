/*
 * check_blockcache.c - the disk block cache: round trips, LRU eviction
 * between watermarks, corruption and crash recovery, version changes,
 * persistence, the instance lock, degraded mode, limits and concurrent use;
 * partial blocks (spans): coverage, disjoint spans side by side, merges
 * bridging spans, the span bound, reconciliation (hostile names too),
 * damage, eviction accounting, schema 3 and 2 migrations, concurrent
 * puts (random, and disjoint pieces of one block at once).
 *
 * Each test works in its own directory under a per-TCase root in /tmp that
 * the (unforked) parent creates and removes, so a failing test still
 * leaves nothing behind.  The tests know the on-disk layout documented in
 * lib/blockcache.c (blocks/<file_id>/<idx % 256 as %02x>/<idx>[.<span offset>]).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "blockcache.h"
#include "log.h"

#define BS            4096u
#define MAX_DIR_BYTES 384 /* mirrors BLOCKCACHE_MAX_DIR_BYTES in lib/blockcache.c */
#define THREADS       4
#define ITERATIONS    300

static char root[PATH_MAX];

/*
 * Fault injection: this definition takes the place of libc's for the
 * whole test program, so while inject_errno is set the cache cannot
 * create a temp file (tmp/blk.*), as on a full disk.
 */
static int inject_errno;

int openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (inject_errno != 0 && (flags & O_CREAT) && strncmp(path, "blk.", 4) == 0) {
        errno = inject_errno;
        return -1;
    }
    return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

static void root_setup(void)
{
    snprintf(root, sizeof(root), "/tmp/check_blockcache.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    log_set_level(LOG_LEVEL_ERROR); /* the warnings under test would only clutter the output */
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void root_teardown(void)
{
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* snprintf that fails the test instead of truncating. */
static void pathf(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pathf(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    ck_assert(n > 0 && (size_t)n < cap);
}

/* A fresh directory for one test (created inside the per-TCase root). */
static void test_dir(char *out, size_t cap)
{
    ck_assert_int_lt(snprintf(out, cap, "%s/t.XXXXXX", root), (int)cap);
    ck_assert_ptr_nonnull(mkdtemp(out));
}

static struct blockcache_config config(const char *dir, uint64_t cap, unsigned high, unsigned low)
{
    struct blockcache_config cfg = {.dir = dir,
                                    .cap_bytes = cap,
                                    .block_size = BS,
                                    .high_watermark = high,
                                    .low_watermark = low};
    return cfg;
}

static struct blockcache *open_ok(const struct blockcache_config *cfg,
                                  struct blockcache_report *rep)
{
    struct blockcache *bc = NULL;
    ck_assert_int_eq(blockcache_open(cfg, &bc, rep), 0);
    ck_assert_ptr_nonnull(bc);
    return bc;
}

/* The bytes of block `index` of test file `seed`. */
static void fill(uint8_t *buf, size_t len, unsigned seed, uint64_t index)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed * 131u + index * 31u + i * 7u + (i >> 8));
}

static void put_block(struct blockcache *bc, int64_t id, uint64_t index, size_t len)
{
    uint8_t buf[BS];
    fill(buf, len, (unsigned)id, index);
    ck_assert_int_eq(blockcache_put(bc, id, index, buf, len), 0);
}

static void expect_block(struct blockcache *bc, int64_t id, uint64_t index, size_t len)
{
    uint8_t want[BS], got[BS];
    size_t n = 0;
    fill(want, len, (unsigned)id, index);
    ck_assert_int_eq(blockcache_get(bc, id, index, got, sizeof(got), &n), 0);
    ck_assert_uint_eq(n, len);
    ck_assert_mem_eq(got, want, len);
}

static void expect_miss(struct blockcache *bc, int64_t id, uint64_t index, int rc)
{
    uint8_t got[BS];
    size_t n = 0;
    ck_assert_int_eq(blockcache_get(bc, id, index, got, sizeof(got), &n), rc);
}

static int64_t new_file(struct blockcache *bc, const char *identity, uint64_t size)
{
    struct blockcache_file f;
    bool changed = true;
    ck_assert_int_eq(blockcache_file_put(bc, identity, "\"v1\"", size, &f, &changed), 0);
    ck_assert(!changed);
    ck_assert_int_gt(f.id, 0);
    return f.id;
}

static void path_of(char *out, size_t cap, const char *dir, int64_t id, uint64_t index)
{
    int n = snprintf(out, cap, "%s/blocks/%" PRId64 "/%02x/%" PRIu64, dir, id,
                     (unsigned)(index & 0xff), index);
    ck_assert(n > 0 && (size_t)n < cap);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static struct blockcache_stats stats(struct blockcache *bc)
{
    struct blockcache_stats s;
    blockcache_get_stats(bc, &s);
    return s;
}

/* ---- core ---- */

START_TEST(test_roundtrip)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 1024 * BS, 95, 85);
    struct blockcache_report rep;
    struct blockcache *bc = open_ok(&cfg, &rep);
    ck_assert(!rep.degraded);
    ck_assert_uint_eq(blockcache_block_size(bc), BS);
    int64_t id = new_file(bc, "https://example.org/a.h5", 3 * BS + 100);
    for (uint64_t i = 0; i < 3; i++)
        put_block(bc, id, i, BS);
    put_block(bc, id, 3, 100); /* the short last block */
    for (uint64_t i = 0; i < 3; i++)
        expect_block(bc, id, i, BS);
    expect_block(bc, id, 3, 100);
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_eq(s.bytes, 3 * BS + 100);
    ck_assert_uint_eq(s.blocks, 4);
    ck_assert_uint_eq(s.cap_bytes, 1024 * BS);
    ck_assert_uint_eq(s.evictions + s.corrupt + s.write_errors, 0);
    ck_assert(!s.degraded);
    /* Block and directory permissions stay private. */
    char path[PATH_MAX];
    struct stat st;
    path_of(path, sizeof(path), dir, id, 3);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    ck_assert_uint_eq(st.st_size, 100);
    ck_assert_int_eq(stat(dir, &st), 0);
    ck_assert_uint_eq(st.st_mode & 077, 0);
    blockcache_close(bc);
    blockcache_close(NULL);
}
END_TEST

START_TEST(test_miss)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    struct blockcache_file f;
    ck_assert_int_eq(blockcache_file_get(bc, "https://example.org/none", &f), -ENOENT);
    ck_assert_int_eq(blockcache_file_drop(bc, "https://example.org/none"), -ENOENT);
    int64_t id = new_file(bc, "https://example.org/a.h5", 2 * BS);
    expect_miss(bc, id, 0, -ENOENT);
    expect_miss(bc, id + 1, 0, -ENOENT);
    put_block(bc, id, 0, BS);
    expect_miss(bc, id, 1, -ENOENT);
    ck_assert_int_eq(blockcache_put(bc, id + 1, 0, (const uint8_t *)"x", 1), -ENOENT);
    ck_assert_int_eq(blockcache_file_get(bc, "https://example.org/a.h5", &f), 0);
    ck_assert_int_eq(f.id, id);
    ck_assert_uint_eq(f.size, 2 * BS);
    ck_assert_str_eq(f.validator, "\"v1\"");
    blockcache_close(bc);
}
END_TEST

START_TEST(test_duplicate_put)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", BS);
    put_block(bc, id, 0, BS);
    put_block(bc, id, 0, BS);
    uint8_t other[BS];
    memset(other, 0xee, sizeof(other));
    ck_assert_int_eq(blockcache_put(bc, id, 0, other, BS), 0); /* left as is */
    expect_block(bc, id, 0, BS);
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_eq(s.blocks, 1);
    ck_assert_uint_eq(s.bytes, BS);
    blockcache_close(bc);
}
END_TEST

START_TEST(test_lru_order)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 10 * BS, 100, 90);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 64 * BS);
    for (uint64_t i = 0; i < 10; i++)
        put_block(bc, id, i, BS);
    ck_assert_uint_eq(stats(bc).evictions, 0);
    expect_block(bc, id, 0, BS); /* block 0 is now the most recently used but one */
    put_block(bc, id, 10, BS);   /* 11 blocks > cap: down to 9 */
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_eq(s.evictions, 2);
    ck_assert_uint_eq(s.blocks, 9);
    ck_assert_uint_eq(s.bytes, 9 * BS);
    expect_block(bc, id, 0, BS);
    expect_miss(bc, id, 1, -ENOENT);
    expect_miss(bc, id, 2, -ENOENT);
    for (uint64_t i = 3; i <= 10; i++)
        expect_block(bc, id, i, BS);
    char path[PATH_MAX];
    path_of(path, sizeof(path), dir, id, 1);
    ck_assert(!exists(path));
    blockcache_close(bc);
}
END_TEST

START_TEST(test_watermarks)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    /* high = 38912 bytes (9.5 blocks), low = 34816 (8.5 blocks). */
    struct blockcache_config cfg = config(dir, 10 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 64 * BS);
    for (uint64_t i = 0; i < 30; i++) {
        put_block(bc, id, i, BS);
        struct blockcache_stats s = stats(bc);
        ck_assert_uint_le(s.bytes, 10 * BS);
        ck_assert_uint_le(s.bytes, 38912);
        ck_assert_uint_eq(s.bytes, s.blocks * BS);
        if (i == 8)
            ck_assert_uint_eq(s.blocks, 9); /* at 9 blocks, still under high */
        if (i == 9)
            ck_assert_uint_eq(s.blocks, 8); /* the 10th passed high: down under low */
    }
    /* Evictions at puts 10, 12, ..., 30: eleven rounds of two. */
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_eq(s.evictions, 22);
    ck_assert_uint_eq(s.blocks, 8);
    for (uint64_t i = 0; i < 22; i++)
        expect_miss(bc, id, i, -ENOENT);
    for (uint64_t i = 22; i < 30; i++)
        expect_block(bc, id, i, BS);
    blockcache_close(bc);
}
END_TEST

static void damage_test(bool truncate_it)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 2 * BS);
    put_block(bc, id, 0, BS);
    put_block(bc, id, 1, BS);
    path_of(path, sizeof(path), dir, id, 0);
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    if (truncate_it) {
        ck_assert_int_eq(ftruncate(fd, BS / 2), 0);
    } else {
        uint8_t b;
        ck_assert_int_eq(pread(fd, &b, 1, 1000), 1);
        b ^= 0x01;
        ck_assert_int_eq(pwrite(fd, &b, 1, 1000), 1);
    }
    close(fd);
    expect_miss(bc, id, 0, -EBADMSG);
    expect_miss(bc, id, 0, -ENOENT);
    ck_assert(!exists(path));
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_eq(s.corrupt, 1);
    ck_assert_uint_eq(s.blocks, 1);
    ck_assert_uint_eq(s.bytes, BS);
    expect_block(bc, id, 1, BS);
    put_block(bc, id, 0, BS); /* refetched */
    expect_block(bc, id, 0, BS);
    blockcache_close(bc);
}

START_TEST(test_corrupt_block)
{
    damage_test(false);
}
END_TEST

START_TEST(test_truncated_block)
{
    damage_test(true);
}
END_TEST

/* A block read once is served from memory afterwards; dropping its file forgets it. */
START_TEST(test_hot_blocks)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 2 * BS);
    put_block(bc, id, 0, BS);
    put_block(bc, id, 1, BS);
    expect_block(bc, id, 0, BS); /* read from disk, verified, kept */
    path_of(path, sizeof(path), dir, id, 0);
    ck_assert_int_eq(unlink(path), 0);
    expect_block(bc, id, 0, BS); /* served from memory: same bytes */
    uint8_t want[BS], part[64];
    fill(want, BS, (unsigned)id, 0);
    ck_assert_int_eq(blockcache_get_hot_part(bc, id, 0, BS - 64, 64, part), 0); /* last bytes */
    ck_assert_mem_eq(part, want + BS - 64, 64);
    ck_assert_int_eq(blockcache_get_hot_part(bc, id, 0, BS - 63, 64, part), -EINVAL); /* +1 */
    ck_assert_int_eq(blockcache_get_hot_part(bc, id, 1, 0, 64, part), -ENOENT);       /* not hot */
    path_of(path, sizeof(path), dir, id, 1);
    ck_assert_int_eq(unlink(path), 0);
    expect_miss(bc, id, 1, -ENOENT); /* never read: not in memory */
    ck_assert_int_eq(blockcache_file_drop(bc, "https://example.org/a.h5"), 0);
    expect_miss(bc, id, 0, -ENOENT); /* the drop forgot it */
    blockcache_close(bc);
}
END_TEST

START_TEST(test_vanished_block)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", BS);
    put_block(bc, id, 0, BS);
    path_of(path, sizeof(path), dir, id, 0);
    ck_assert_int_eq(unlink(path), 0);
    expect_miss(bc, id, 0, -ENOENT);
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_eq(s.blocks, 0);
    ck_assert_uint_eq(s.bytes, 0);
    ck_assert_uint_eq(s.corrupt, 0);
    put_block(bc, id, 0, BS);
    expect_block(bc, id, 0, BS);
    blockcache_close(bc);
}
END_TEST

START_TEST(test_reconcile)
{
    char dir[PATH_MAX], path[PATH_MAX], orphan[PATH_MAX], p1[PATH_MAX], p2[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache_report rep;
    struct blockcache *bc = open_ok(&cfg, &rep);
    int64_t id = new_file(bc, "https://example.org/a.h5", 4 * BS);
    for (uint64_t i = 0; i < 4; i++)
        put_block(bc, id, i, BS);
    blockcache_close(bc);

    /* What a crash (or a careless hand) leaves behind. */
    pathf(path, sizeof(path), "%s/tmp/blk.leftover", dir);
    write_file(path, "half a block");
    path_of(orphan, sizeof(orphan), dir, id, 99); /* fan dir 63 does not exist yet */
    pathf(p1, sizeof(p1), "%s/blocks/%" PRId64 "/63", dir, id);
    ck_assert_int_eq(mkdir(p1, 0700), 0);
    write_file(orphan, "no row");
    pathf(p1, sizeof(p1), "%s/blocks/777", dir);
    ck_assert_int_eq(mkdir(p1, 0700), 0);
    pathf(p1, sizeof(p1), "%s/blocks/777/00", dir);
    ck_assert_int_eq(mkdir(p1, 0700), 0);
    pathf(p1, sizeof(p1), "%s/blocks/777/00/0", dir);
    write_file(p1, "unknown file id");
    pathf(p1, sizeof(p1), "%s/blocks/junk", dir);
    write_file(p1, "junk");
    path_of(p1, sizeof(p1), dir, id, 1);
    ck_assert_int_eq(unlink(p1), 0); /* row without file */
    path_of(p2, sizeof(p2), dir, id, 2);
    ck_assert_int_eq(truncate(p2, 10), 0); /* row with a wrong-size file */

    bc = open_ok(&cfg, &rep);
    ck_assert(!rep.degraded);
    ck_assert_uint_eq(rep.temp_files_removed, 1);
    ck_assert_uint_eq(rep.orphan_files_removed, 3);
    ck_assert_uint_eq(rep.rows_dropped, 2);
    ck_assert(!exists(path));
    ck_assert(!exists(orphan));
    ck_assert(!exists(p2));
    pathf(p1, sizeof(p1), "%s/blocks/777", dir);
    ck_assert(!exists(p1));
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_eq(s.blocks, 2);
    ck_assert_uint_eq(s.bytes, 2 * BS);
    expect_block(bc, id, 0, BS);
    expect_block(bc, id, 3, BS);
    expect_miss(bc, id, 1, -ENOENT);
    expect_miss(bc, id, 2, -ENOENT);
    blockcache_close(bc);

    /* A clean reopen finds nothing to do. */
    bc = open_ok(&cfg, &rep);
    ck_assert_uint_eq(rep.temp_files_removed + rep.orphan_files_removed + rep.rows_dropped, 0);
    ck_assert_uint_eq(stats(bc).blocks, 2);
    blockcache_close(bc);
}
END_TEST

START_TEST(test_validator_change)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    const char *url = "https://example.org/a.h5";
    struct blockcache_file f;
    bool changed = true;
    int64_t id1 = new_file(bc, url, 2 * BS);
    put_block(bc, id1, 0, BS);
    put_block(bc, id1, 1, BS);

    ck_assert_int_eq(blockcache_file_put(bc, url, "\"v1\"", 2 * BS, &f, &changed), 0);
    ck_assert(!changed);
    ck_assert_int_eq(f.id, id1);
    ck_assert_int_gt(f.checked_at, 0);
    expect_block(bc, id1, 0, BS);

    ck_assert_int_eq(blockcache_file_put(bc, url, "\"v2\"", 2 * BS, &f, &changed), 0);
    ck_assert(changed);
    int64_t id2 = f.id;
    ck_assert_int_ne(id2, id1);
    ck_assert_str_eq(f.validator, "\"v2\"");
    expect_miss(bc, id1, 0, -ENOENT);
    ck_assert_int_eq(blockcache_put(bc, id1, 0, (const uint8_t *)"x", 1), -ENOENT);
    pathf(path, sizeof(path), "%s/blocks/%" PRId64, dir, id1);
    ck_assert(!exists(path));
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_eq(s.blocks, 0);
    ck_assert_uint_eq(s.bytes, 0);
    ck_assert_uint_eq(s.write_errors, 0);
    put_block(bc, id2, 0, BS);
    expect_block(bc, id2, 0, BS);

    /* Same validator, other size: a new version as well. */
    ck_assert_int_eq(blockcache_file_put(bc, url, "\"v2\"", 3 * BS, &f, &changed), 0);
    ck_assert(changed);
    int64_t id3 = f.id;
    ck_assert_int_gt(id3, id2);
    expect_miss(bc, id2, 0, -ENOENT);
    ck_assert_int_eq(blockcache_file_get(bc, url, &f), 0);
    ck_assert_int_eq(f.id, id3);
    ck_assert_uint_eq(f.size, 3 * BS);

    /* Dropping and recreating never reuses an id, not even the largest. */
    put_block(bc, id3, 2, BS);
    ck_assert_int_eq(blockcache_file_drop(bc, url), 0);
    ck_assert_int_eq(blockcache_file_get(bc, url, &f), -ENOENT);
    ck_assert_uint_eq(stats(bc).blocks, 0);
    pathf(path, sizeof(path), "%s/blocks/%" PRId64, dir, id3);
    ck_assert(!exists(path));
    ck_assert_int_eq(blockcache_put(bc, id3, 0, (const uint8_t *)"x", 1), -ENOENT);
    ck_assert_int_gt(new_file(bc, url, BS), id3);
    blockcache_close(bc);
}
END_TEST

START_TEST(test_persistence)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    /* Three blocks fit; the fourth evicts down to 8232 bytes (two blocks). */
    struct blockcache_config cfg = config(dir, 3 * BS, 100, 67);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 8 * BS);
    for (uint64_t i = 0; i < 3; i++)
        put_block(bc, id, i, BS);
    expect_block(bc, id, 0, BS); /* an access time only buffered: close must keep it */
    blockcache_close(bc);

    struct blockcache_report rep;
    bc = open_ok(&cfg, &rep);
    ck_assert_uint_eq(rep.orphan_files_removed + rep.rows_dropped + rep.temp_files_removed, 0);
    struct blockcache_file f;
    ck_assert_int_eq(blockcache_file_get(bc, "https://example.org/a.h5", &f), 0);
    ck_assert_int_eq(f.id, id);
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_eq(s.blocks, 3);
    ck_assert_uint_eq(s.bytes, 3 * BS);
    ck_assert_uint_eq(s.evictions, 0);
    put_block(bc, id, 3, BS);
    ck_assert_uint_eq(stats(bc).evictions, 2);
    expect_block(bc, id, 0, BS);
    expect_miss(bc, id, 1, -ENOENT);
    expect_miss(bc, id, 2, -ENOENT);
    expect_block(bc, id, 3, BS);
    blockcache_close(bc);
}
END_TEST

/* A relative directory keeps working after the daemon changes directory. */
START_TEST(test_relative_dir)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir(dir, sizeof(dir));
    ck_assert_int_eq(chdir(dir), 0);
    struct blockcache_config cfg = config("parent/cache", 64 * BS, 95, 85);
    struct blockcache_report rep;
    struct blockcache *bc = open_ok(&cfg, &rep);
    ck_assert(!rep.degraded);
    ck_assert_int_eq(chdir("/"), 0);
    int64_t id = new_file(bc, "https://example.org/a.h5", BS);
    put_block(bc, id, 0, BS);
    expect_block(bc, id, 0, BS);
    pathf(path, sizeof(path), "%s/parent/cache/blocks/%" PRId64 "/00/0", dir, id);
    ck_assert(exists(path));
    blockcache_close(bc);
}
END_TEST

START_TEST(test_busy)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *a = open_ok(&cfg, NULL);
    int64_t id = new_file(a, "https://example.org/a.h5", BS);
    put_block(a, id, 0, BS);
    struct blockcache *b = (struct blockcache *)&b;
    ck_assert_int_eq(blockcache_open(&cfg, &b, NULL), -EBUSY);
    ck_assert_ptr_null(b);
    expect_block(a, id, 0, BS); /* the refused open touched nothing */
    blockcache_close(a);
    b = open_ok(&cfg, NULL);
    expect_block(b, id, 0, BS);
    blockcache_close(b);
}
END_TEST

START_TEST(test_block_size_change)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 2 * BS);
    put_block(bc, id, 0, BS);
    put_block(bc, id, 1, BS);
    blockcache_close(bc);

    cfg.block_size = 2 * BS;
    struct blockcache_report rep;
    bc = open_ok(&cfg, &rep);
    ck_assert_uint_eq(blockcache_block_size(bc), 2 * BS);
    struct blockcache_file f;
    ck_assert_int_eq(blockcache_file_get(bc, "https://example.org/a.h5", &f), -ENOENT);
    ck_assert_uint_eq(stats(bc).blocks, 0);
    ck_assert_uint_eq(stats(bc).bytes, 0);
    pathf(path, sizeof(path), "%s/blocks/%" PRId64, dir, id);
    ck_assert(!exists(path));
    int64_t id2 = new_file(bc, "https://example.org/a.h5", 2 * BS);
    uint8_t buf[2 * BS], got[2 * BS];
    size_t n = 0;
    memset(buf, 0x5a, sizeof(buf));
    ck_assert_int_eq(blockcache_put(bc, id2, 0, buf, sizeof(buf)), 0);
    blockcache_close(bc);

    /* The same size again keeps everything. */
    bc = open_ok(&cfg, &rep);
    ck_assert_int_eq(blockcache_get(bc, id2, 0, got, sizeof(got), &n), 0);
    ck_assert_uint_eq(n, sizeof(buf));
    ck_assert_mem_eq(got, buf, sizeof(buf));
    blockcache_close(bc);
}
END_TEST

START_TEST(test_degraded)
{
    char dir[PATH_MAX], file[PATH_MAX], cache[PATH_MAX];
    test_dir(dir, sizeof(dir));
    /* A path below a regular file cannot be created, even by root. */
    pathf(file, sizeof(file), "%s/file", dir);
    write_file(file, "not a directory");
    pathf(cache, sizeof(cache), "%s/cache", file);
    struct blockcache_config cfg = config(cache, 64 * BS, 95, 85);
    struct blockcache_report rep;
    struct blockcache *bc = open_ok(&cfg, &rep);
    ck_assert(rep.degraded);
    ck_assert_ptr_nonnull(strstr(rep.reason, cache));
    ck_assert(stats(bc).degraded);
    /* File rows still work, so callers can proceed pass-through. */
    int64_t id = new_file(bc, "https://example.org/a.h5", BS);
    struct blockcache_file f;
    ck_assert_int_eq(blockcache_file_get(bc, "https://example.org/a.h5", &f), 0);
    ck_assert_int_eq(f.id, id);
    uint8_t buf[BS];
    fill(buf, BS, 1, 0);
    ck_assert_int_eq(blockcache_put(bc, id, 0, buf, BS), -EROFS);
    expect_miss(bc, id, 0, -ENOENT);
    bool changed = false;
    ck_assert_int_eq(
        blockcache_file_put(bc, "https://example.org/a.h5", "\"v2\"", BS, &f, &changed), 0);
    ck_assert(changed);
    ck_assert_int_eq(blockcache_file_drop(bc, "https://example.org/a.h5"), 0);
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_eq(s.blocks, 0);
    ck_assert_uint_eq(s.write_errors, 0);
    blockcache_close(bc);
}
END_TEST

START_TEST(test_corrupt_index)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 2 * BS);
    put_block(bc, id, 0, BS);
    put_block(bc, id, 1, BS);
    blockcache_close(bc);
    pathf(path, sizeof(path), "%s/index.sqlite", dir);
    char junk[8192];
    memset(junk, 'j', sizeof(junk) - 1);
    junk[sizeof(junk) - 1] = '\0';
    write_file(path, junk);
    pathf(path, sizeof(path), "%s/index.sqlite-wal", dir);
    unlink(path);
    pathf(path, sizeof(path), "%s/index.sqlite-shm", dir);
    unlink(path);

    struct blockcache_report rep;
    bc = open_ok(&cfg, &rep);
    ck_assert(!rep.degraded);
    ck_assert_uint_eq(rep.orphan_files_removed, 2);
    struct blockcache_file f;
    ck_assert_int_eq(blockcache_file_get(bc, "https://example.org/a.h5", &f), -ENOENT);
    id = new_file(bc, "https://example.org/a.h5", BS);
    put_block(bc, id, 0, BS);
    expect_block(bc, id, 0, BS);
    blockcache_close(bc);
}
END_TEST

static unsigned dir_entries(const char *path)
{
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

START_TEST(test_disk_full)
{
    char dir[PATH_MAX], tmp[PATH_MAX];
    test_dir(dir, sizeof(dir));
    pathf(tmp, sizeof(tmp), "%s/tmp", dir);
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    cfg.enospc_cooldown_s = 1;
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 4 * BS);
    uint8_t buf[BS];
    fill(buf, BS, (unsigned)id, 0);

    /* Any other write error fails that put only. */
    inject_errno = EIO;
    ck_assert_int_eq(blockcache_put(bc, id, 0, buf, BS), -EIO);
    inject_errno = 0;
    ck_assert_uint_eq(stats(bc).write_errors, 1);
    put_block(bc, id, 0, BS);

    /* A full disk (or quota) refuses puts for the cool-down, then lets them try again. */
    inject_errno = EDQUOT;
    ck_assert_int_eq(blockcache_put(bc, id, 1, buf, BS), -ENOSPC);
    inject_errno = 0;
    ck_assert_int_eq(blockcache_put(bc, id, 1, buf, BS), -ENOSPC);
    ck_assert_uint_eq(stats(bc).write_errors, 2); /* refusals are not write errors */
    expect_block(bc, id, 0, BS);                  /* reads go on */
    expect_miss(bc, id, 1, -ENOENT);
    int rc = -ENOSPC;
    for (unsigned i = 0; i < 40 && rc == -ENOSPC; i++) {
        usleep(50 * 1000);
        rc = blockcache_put(bc, id, 1, buf, BS);
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(dir_entries(tmp), 0);
    ck_assert_uint_eq(stats(bc).blocks, 2);

    inject_errno = ENOSPC;
    ck_assert_int_eq(blockcache_put(bc, id, 2, buf, BS), -ENOSPC);
    inject_errno = 0;
    ck_assert_uint_eq(stats(bc).write_errors, 3);
    blockcache_close(bc);
}
END_TEST

struct worker {
    struct blockcache *bc;
    int64_t id;
    unsigned seed;
    _Atomic unsigned *errors;
    unsigned hits;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint8_t want[BS], got[BS];
    for (unsigned i = 0; i < ITERATIONS; i++) {
        uint64_t index = (uint64_t)(rand_r(&w->seed) % 16);
        size_t n = 0;
        fill(want, BS, (unsigned)w->id, index);
        int rc = blockcache_get(w->bc, w->id, index, got, sizeof(got), &n);
        if (rc == 0) {
            w->hits++;
            if (n != BS || memcmp(got, want, BS) != 0)
                atomic_fetch_add(w->errors, 1);
        } else if (rc != -ENOENT || blockcache_put(w->bc, w->id, index, want, BS) != 0) {
            atomic_fetch_add(w->errors, 1);
        }
    }
    return NULL;
}

START_TEST(test_concurrent)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    /* Eight of the sixteen blocks fit, so gets race with evictions. */
    struct blockcache_config cfg = config(dir, 8 * BS, 95, 70);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 16 * BS);
    _Atomic unsigned errors = 0;
    struct worker w[THREADS];
    pthread_t t[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.bc = bc, .id = id, .seed = i + 1, .errors = &errors};
        ck_assert_int_eq(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    unsigned hits = 0;
    for (unsigned i = 0; i < THREADS; i++) {
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
        hits += w[i].hits;
    }
    ck_assert_uint_eq(atomic_load(&errors), 0);
    ck_assert_uint_gt(hits, 0);
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_eq(s.corrupt, 0);
    ck_assert_uint_eq(s.write_errors, 0);
    ck_assert_uint_gt(s.evictions, 0);
    ck_assert_uint_le(s.bytes, 8 * BS);
    ck_assert_uint_eq(s.bytes, s.blocks * BS);
    blockcache_close(bc);

    /* The totals kept in memory agree with what reconciliation finds. */
    struct blockcache_report rep;
    bc = open_ok(&cfg, &rep);
    ck_assert_uint_eq(rep.orphan_files_removed + rep.rows_dropped + rep.temp_files_removed, 0);
    ck_assert_uint_eq(stats(bc).blocks, s.blocks);
    ck_assert_uint_eq(stats(bc).bytes, s.bytes);
    blockcache_close(bc);
}
END_TEST

/* ---- limits ---- */

static int try_open(const struct blockcache_config *cfg)
{
    struct blockcache *bc = NULL;
    int rc = blockcache_open(cfg, &bc, NULL);
    ck_assert(rc == 0 ? bc != NULL : bc == NULL);
    blockcache_close(bc);
    return rc;
}

START_TEST(test_config_limits)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    static const struct {
        uint32_t bs;
        int rc;
    } sizes[] = {
        {0, -EINVAL},
        {2048, -EINVAL},
        {H5CD_MIN_BLOCK_BYTES - 1, -EINVAL},
        {H5CD_MIN_BLOCK_BYTES, 0},
        {H5CD_MIN_BLOCK_BYTES + 1, -EINVAL},
        {3 * H5CD_MIN_BLOCK_BYTES, -EINVAL},
        {H5CD_MAX_BLOCK_BYTES, 0},
        {H5CD_MAX_BLOCK_BYTES + 1, -EINVAL},
        {2 * H5CD_MAX_BLOCK_BYTES, -EINVAL},
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        cfg.block_size = sizes[i].bs;
        ck_assert_int_eq(try_open(&cfg), sizes[i].rc);
    }
    cfg.block_size = BS;
    static const struct {
        unsigned high, low;
        int rc;
    } marks[] = {
        {100, 85, 0}, {101, 85, -EINVAL}, {95, 0, -EINVAL}, {1, 1, 0},
        {50, 50, 0},  {50, 51, -EINVAL},  {0, 0, -EINVAL},
    };
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
        cfg.high_watermark = marks[i].high;
        cfg.low_watermark = marks[i].low;
        ck_assert_int_eq(try_open(&cfg), marks[i].rc);
    }
    cfg.high_watermark = 95;
    cfg.low_watermark = 85;
    cfg.cap_bytes = 0;
    ck_assert_int_eq(try_open(&cfg), -EINVAL);
    cfg.cap_bytes = 1;
    ck_assert_int_eq(try_open(&cfg), 0);
    cfg.cap_bytes = UINT64_MAX; /* watermark arithmetic must not overflow */
    ck_assert_int_eq(try_open(&cfg), 0);
    cfg.dir = NULL;
    ck_assert_int_eq(try_open(&cfg), -EINVAL);
    cfg.dir = "";
    ck_assert_int_eq(try_open(&cfg), -EINVAL);

    /* The directory name at its limit and one past it. */
    char longdir[MAX_DIR_BYTES + 2];
    size_t n = strlen(dir);
    ck_assert_uint_lt(n + 2, MAX_DIR_BYTES);
    memcpy(longdir, dir, n);
    for (size_t i = n; i < MAX_DIR_BYTES + 1; i++)
        longdir[i] = (i - n) % 200 == 0 ? '/' : 'd';
    longdir[MAX_DIR_BYTES + 1] = '\0';
    cfg.dir = longdir;
    cfg.cap_bytes = 64 * BS;
    ck_assert_int_eq(try_open(&cfg), -EINVAL);
    longdir[MAX_DIR_BYTES] = '\0';
    struct blockcache_report rep;
    struct blockcache *bc = open_ok(&cfg, &rep);
    ck_assert(!rep.degraded);
    int64_t id = new_file(bc, "https://example.org/a.h5", BS);
    put_block(bc, id, 0, BS);
    expect_block(bc, id, 0, BS);
    blockcache_close(bc);
}
END_TEST

START_TEST(test_io_limits)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    struct blockcache_file f;
    int64_t id = new_file(bc, "https://example.org/a.h5", 2 * BS + 1);
    uint8_t buf[BS + 1];
    size_t n = 0;
    fill(buf, sizeof(buf), (unsigned)id, 0);
    ck_assert_int_eq(blockcache_put(bc, id, 0, buf, 0), -EINVAL);
    ck_assert_int_eq(blockcache_put(bc, id, 0, NULL, BS), -EINVAL);
    ck_assert_int_eq(blockcache_put(bc, id, 0, buf, BS + 1), -EINVAL);
    ck_assert_int_eq(blockcache_put(bc, id, 0, buf, BS - 1), -EINVAL); /* not the last block */
    ck_assert_int_eq(blockcache_put(bc, id, 0, buf, BS), 0);
    /* The last block is exactly one byte; past the end nothing exists. */
    ck_assert_int_eq(blockcache_put(bc, id, 2, buf, 2), -EINVAL);
    ck_assert_int_eq(blockcache_put(bc, id, 3, buf, 1), -EINVAL);
    ck_assert_int_eq(blockcache_put(bc, id, UINT64_MAX, buf, 1), -EINVAL);
    put_block(bc, id, 2, 1);
    expect_block(bc, id, 2, 1);
    /* The read buffer must hold a whole block. */
    ck_assert_int_eq(blockcache_get(bc, id, 0, buf, BS - 1, &n), -EINVAL);
    ck_assert_int_eq(blockcache_get(bc, id, 0, buf, BS, &n), 0);
    ck_assert_uint_eq(n, BS);
    ck_assert_int_eq(blockcache_get(bc, id, UINT64_MAX, buf, BS, &n), -ENOENT);

    /* Identity up to H5CD_MAX_URL_BYTES, validator below H5CD_MAX_VALIDATOR_BYTES. */
    static char url[H5CD_MAX_URL_BYTES + 2], validator[H5CD_MAX_VALIDATOR_BYTES + 1];
    memset(url, 'u', H5CD_MAX_URL_BYTES + 1);
    memset(validator, 'v', H5CD_MAX_VALIDATOR_BYTES);
    ck_assert_int_eq(blockcache_file_put(bc, url, "v", 1, &f, NULL), -EINVAL);
    url[H5CD_MAX_URL_BYTES] = '\0';
    ck_assert_int_eq(blockcache_file_put(bc, url, "v", 1, &f, NULL), 0);
    ck_assert_int_eq(blockcache_file_put(bc, "", "v", 1, &f, NULL), -EINVAL);
    ck_assert_int_eq(blockcache_file_put(bc, "https://x/b", validator, 1, &f, NULL), -EINVAL);
    validator[H5CD_MAX_VALIDATOR_BYTES - 1] = '\0';
    ck_assert_int_eq(blockcache_file_put(bc, "https://x/b", validator, 1, &f, NULL), 0);
    ck_assert_int_eq(blockcache_file_get(bc, "https://x/b", &f), 0);
    ck_assert_str_eq(f.validator, validator);
    ck_assert_int_eq(blockcache_file_put(bc, "https://x/c", "", (uint64_t)INT64_MAX, &f, NULL), 0);
    ck_assert_uint_eq(f.size, (uint64_t)INT64_MAX);
    ck_assert_int_eq(blockcache_file_put(bc, "https://x/d", "", (uint64_t)INT64_MAX + 1, &f, NULL),
                     -EINVAL);
    blockcache_close(bc);
}
END_TEST

START_TEST(test_block_over_watermark)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    uint8_t buf[BS];
    fill(buf, BS, 1, 0);
    /* high = 50% of 8191 = 4095 bytes: one block alone would pass it. */
    struct blockcache_config cfg = config(dir, 2 * BS - 1, 50, 25);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", BS);
    ck_assert_int_eq(blockcache_put(bc, id, 0, buf, BS), -EFBIG);
    ck_assert_uint_eq(stats(bc).blocks, 0);
    ck_assert_uint_eq(stats(bc).evictions, 0);
    blockcache_close(bc);
    cfg.cap_bytes = 2 * BS; /* high = 4096: exactly one block */
    bc = open_ok(&cfg, NULL);
    put_block(bc, id, 0, BS);
    ck_assert_uint_eq(stats(bc).blocks, 1);
    expect_block(bc, id, 0, BS);
    blockcache_close(bc);
}
END_TEST

/* More hits than the access-time buffer holds: the flush when full keeps LRU order. */
START_TEST(test_touch_buffer_full)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 10 * BS, 100, 90);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 64 * BS);
    for (uint64_t i = 0; i < 10; i++)
        put_block(bc, id, i, BS);
    expect_block(bc, id, 0, BS);
    /* Two blocks in turn: reads of one block in a row share one entry. */
    for (unsigned i = 0; i < 4100; i++)
        expect_block(bc, id, 1 - (i & 1), BS);
    put_block(bc, id, 10, BS);
    ck_assert_uint_eq(stats(bc).evictions, 2);
    expect_block(bc, id, 0, BS);
    expect_block(bc, id, 1, BS);
    expect_miss(bc, id, 2, -ENOENT);
    expect_miss(bc, id, 3, -ENOENT);
    blockcache_close(bc);
}
END_TEST

static int hits_of(const struct blockcache_file_info *info, void *arg)
{
    *(uint64_t *)arg = info->hits;
    return 0;
}

/* Many reads of one block in a row (the small chunks of a batch) are one
 * access-time entry, yet every read counts as a hit and the block is the
 * most recently used. */
START_TEST(test_touch_runs)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 10 * BS, 100, 90);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 64 * BS);
    for (uint64_t i = 0; i < 10; i++)
        put_block(bc, id, i, BS);
    uint8_t want[BS], part[64];
    fill(want, BS, (unsigned)id, 5);
    expect_block(bc, id, 5, BS); /* read from disk: hot from now on */
    for (unsigned i = 0; i < 100; i++) {
        size_t off = (i * 64) % (BS - 64);
        ck_assert_int_eq(blockcache_get_hot_part(bc, id, 5, off, 64, part), 0);
        ck_assert_mem_eq(part, want + off, 64);
    }
    expect_block(bc, id, 0, BS);
    expect_block(bc, id, 5, BS);
    expect_block(bc, id, 5, BS);
    uint64_t hits = 0;
    ck_assert_int_eq(blockcache_list(bc, hits_of, &hits), 1);
    ck_assert_uint_eq(hits, 1 + 100 + 1 + 2);
    /* LRU: 1..4 and 6..9 are older than 0 and 5; two new blocks evict 1 and 2. */
    put_block(bc, id, 10, BS);
    put_block(bc, id, 11, BS);
    expect_miss(bc, id, 1, -ENOENT);
    expect_block(bc, id, 0, BS);
    expect_block(bc, id, 5, BS);
    blockcache_close(bc);
}
END_TEST

/* blockcache_set_cap (SIGHUP): shrinking evicts at once; a cap of exactly
 * the cached bytes (N) evicts nothing, one byte less (N-1) evicts. */
START_TEST(test_set_cap)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 20 * BS, 100, 50);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 64 * BS);
    for (uint64_t i = 0; i < 16; i++)
        put_block(bc, id, i, BS);
    ck_assert_uint_eq(stats(bc).blocks, 16);
    ck_assert_int_eq(blockcache_set_cap(bc, 0), -EINVAL);
    ck_assert_uint_eq(stats(bc).cap_bytes, 20 * BS);
    /* high = 10 blocks, low = 5: 16 blocks are evicted down to the 5 newest. */
    ck_assert_int_eq(blockcache_set_cap(bc, 10 * BS), 0);
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_eq(s.cap_bytes, 10 * BS);
    ck_assert_uint_eq(s.blocks, 5);
    ck_assert_uint_eq(s.evictions, 11);
    expect_miss(bc, id, 10, -ENOENT);
    expect_block(bc, id, 11, BS);
    ck_assert_int_eq(blockcache_set_cap(bc, 5 * BS), 0); /* high == bytes: nothing to do */
    ck_assert_uint_eq(stats(bc).blocks, 5);
    ck_assert_int_eq(blockcache_set_cap(bc, 5 * BS - 1), 0); /* low = 10239 bytes */
    s = stats(bc);
    ck_assert_uint_eq(s.blocks, 2);
    ck_assert_uint_eq(s.evictions, 14);
    /* Later puts keep to the new cap; growing it again evicts nothing. */
    put_block(bc, id, 20, BS);
    put_block(bc, id, 21, BS);
    ck_assert_uint_le(stats(bc).bytes, 5 * BS - 1);
    ck_assert_int_eq(blockcache_set_cap(bc, 100 * BS), 0);
    for (uint64_t i = 30; i < 40; i++)
        put_block(bc, id, i, BS);
    ck_assert_uint_eq(stats(bc).blocks, 14);
    blockcache_close(bc);
}
END_TEST

/* The epoch survives a restart and changes when the index starts over. */
START_TEST(test_epoch)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    uint64_t first = blockcache_epoch(bc);
    ck_assert_uint_ne(first, 0);
    ck_assert_int_eq(new_file(bc, "https://example.org/x.h5", BS), 1);
    blockcache_close(bc);
    bc = open_ok(&cfg, NULL);
    ck_assert_uint_eq(blockcache_epoch(bc), first);
    blockcache_close(bc);
    pathf(path, sizeof(path), "%s/index.sqlite", dir);
    char junk[8192];
    memset(junk, 'j', sizeof(junk) - 1);
    junk[sizeof(junk) - 1] = '\0';
    write_file(path, junk);
    bc = open_ok(&cfg, NULL);
    ck_assert_uint_ne(blockcache_epoch(bc), first);
    ck_assert_uint_ne(blockcache_epoch(bc), 0);
    /* ids restart from 1 under the new epoch: only the epoch tells them apart */
    ck_assert_int_eq(new_file(bc, "https://example.org/y.h5", BS), 1);
    blockcache_close(bc);
}
END_TEST

/* A block (or its directory) replaced by a symlink is never read through: it is
 * dropped as corrupt, and the next put puts a regular file back. */
START_TEST(test_symlink_block)
{
    char dir[PATH_MAX], path[PATH_MAX], outside[PATH_MAX], fan[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 2 * BS);
    put_block(bc, id, 0, BS);
    put_block(bc, id, 1, BS);
    /* a file of the same size elsewhere, with other bytes */
    pathf(outside, sizeof(outside), "%s/outside", root);
    char other[BS + 1];
    memset(other, 'x', BS);
    other[BS] = '\0';
    write_file(outside, other);
    path_of(path, sizeof(path), dir, id, 0);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(symlink(outside, path), 0);
    expect_miss(bc, id, 0, -EBADMSG);
    ck_assert(!exists(path)); /* the symlink itself was removed, not its target */
    ck_assert(exists(outside));
    put_block(bc, id, 0, BS);
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    expect_block(bc, id, 0, BS);
    /* a directory on the way replaced by a symlink */
    char moved[PATH_MAX];
    pathf(fan, sizeof(fan), "%s/blocks/%" PRId64 "/01", dir, id);
    pathf(moved, sizeof(moved), "%s/moved", root);
    ck_assert_int_eq(rename(fan, moved), 0);
    ck_assert_int_eq(symlink(moved, fan), 0);
    expect_miss(bc, id, 1, -EBADMSG);
    blockcache_close(bc);
}
END_TEST

/* A cache directory others could change is refused, with the reason. */
START_TEST(test_unsafe_dir)
{
    char dir[PATH_MAX], inner[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_report rep;
    struct blockcache *bc = NULL;
    ck_assert_int_eq(chmod(dir, 0777), 0);
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    ck_assert_int_eq(blockcache_open(&cfg, &bc, &rep), -EPERM);
    ck_assert_ptr_null(bc);
    ck_assert_ptr_nonnull(strstr(rep.reason, "unsafe"));
    ck_assert_int_eq(chmod(dir, 01777), 0); /* sticky: still others may write it */
    ck_assert_int_eq(blockcache_open(&cfg, &bc, &rep), -EPERM);
    /* a world-writable, non-sticky parent lets others swap the directory */
    ck_assert_int_eq(chmod(dir, 0777), 0);
    pathf(inner, sizeof(inner), "%s/cache", dir);
    cfg = config(inner, 64 * BS, 95, 85);
    ck_assert_int_eq(blockcache_open(&cfg, &bc, &rep), -EPERM);
    ck_assert_ptr_nonnull(strstr(rep.reason, "parent"));
    /* sticky parent (like /tmp): accepted; everything created private */
    ck_assert_int_eq(chmod(dir, 01777), 0);
    mode_t old = umask(0);
    bc = open_ok(&cfg, NULL);
    umask(old);
    int64_t id = new_file(bc, "https://example.org/a.h5", BS);
    put_block(bc, id, 0, BS);
    blockcache_close(bc);
    static const char *const dirs[] = {"", "/blocks", "/tmp"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char p[PATH_MAX];
        struct stat st;
        pathf(p, sizeof(p), "%s%s", inner, dirs[i]);
        ck_assert_int_eq(stat(p, &st), 0);
        ck_assert_uint_eq(st.st_mode & 0777, 0700);
    }
    char p[PATH_MAX];
    struct stat st;
    pathf(p, sizeof(p), "%s/index.sqlite", inner);
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
}
END_TEST

/* ---- partial blocks (spans) ---- */

/* A span's file: blocks/<id>/<fan>/<idx> at offset 0, <idx>.<off> elsewhere. */
static void span_path(char *out, size_t cap, const char *dir, int64_t id, uint64_t index,
                      size_t off)
{
    if (off == 0)
        path_of(out, cap, dir, id, index);
    else
        pathf(out, cap, "%s/blocks/%" PRId64 "/%02x/%" PRIu64 ".%zu", dir, id,
              (unsigned)(index & 0xff), index, off);
}

/* The bytes [off, off + len) of block index of test file id, as put_span stores them. */
static void put_span(struct blockcache *bc, int64_t id, uint64_t index, size_t off, size_t len)
{
    uint8_t ref[BS];
    fill(ref, BS, (unsigned)id, index);
    ck_assert_int_eq(blockcache_put_span(bc, id, index, off, ref + off, len), 0);
}

/* The block's cached spans are exactly the n pairs (off, len) of want, with the right bytes. */
static void expect_spans(struct blockcache *bc, int64_t id, uint64_t index, size_t n,
                         const size_t *want)
{
    uint8_t ref[BS], got[BS];
    struct blockcache_spans spans;
    fill(ref, BS, (unsigned)id, index);
    ck_assert_int_eq(blockcache_get_spans(bc, id, index, got, sizeof(got), &spans), 0);
    ck_assert_uint_eq(spans.n, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(spans.span[i].off, want[2 * i]);
        ck_assert_uint_eq(spans.span[i].len, want[2 * i + 1]);
        ck_assert_mem_eq(got + want[2 * i], ref + want[2 * i], want[2 * i + 1]);
    }
}

/* The block holds one span, [off, off + len). */
static void expect_span(struct blockcache *bc, int64_t id, uint64_t index, size_t off, size_t len)
{
    size_t want[2] = {off, len};
    expect_spans(bc, id, index, 1, want);
}

/* Lookups hit by coverage; puts that touch or overlap merge until the block is whole. */
START_TEST(test_span_merge)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 3 * BS + 100);
    uint8_t ref[BS], part[BS];
    fill(ref, BS, (unsigned)id, 1);

    put_span(bc, id, 1, 1000, 500);
    expect_span(bc, id, 1, 1000, 500);
    span_path(path, sizeof(path), dir, id, 1, 1000);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 500); /* the file holds the span only */
    ck_assert_uint_eq(stats(bc).bytes, 500);
    expect_miss(bc, id, 1, -ENOENT); /* a whole-block reader misses a partial block */
    /* Coverage decides: inside the span hits, one byte outside misses. */
    ck_assert_int_eq(blockcache_get_hot_part(bc, id, 1, 1100, 100, part), 0);
    ck_assert_mem_eq(part, ref + 1100, 100);
    ck_assert_int_eq(blockcache_get_hot_part(bc, id, 1, 999, 10, part), -ENOENT);
    ck_assert_int_eq(blockcache_get_hot_part(bc, id, 1, 1495, 10, part), -ENOENT);

    put_span(bc, id, 1, 1200, 100); /* already held: nothing written */
    expect_span(bc, id, 1, 1000, 500);
    put_span(bc, id, 1, 1500, 1000); /* touches the end */
    expect_span(bc, id, 1, 1000, 1500);
    put_span(bc, id, 1, 200, 900); /* overlaps the start: the union is renamed to its offset */
    expect_span(bc, id, 1, 200, 2300);
    ck_assert(!exists(path)); /* the merged span's file went with its row */
    ck_assert_uint_eq(stats(bc).bytes, 2300);
    ck_assert_uint_eq(stats(bc).blocks, 1);
    ck_assert_uint_eq(stats(bc).spans, 1);
    put_span(bc, id, 1, 0, 200);
    put_span(bc, id, 1, 2500, BS - 2500);
    expect_block(bc, id, 1, BS); /* grown whole */
    ck_assert_uint_eq(stats(bc).bytes, BS);

    /* Disjoint spans are all kept, side by side. */
    put_span(bc, id, 2, 0, 100);
    put_span(bc, id, 2, 1000, 50);
    put_span(bc, id, 2, 2000, 500);
    size_t three[] = {0, 100, 1000, 50, 2000, 500};
    expect_spans(bc, id, 2, 3, three);
    ck_assert_uint_eq(stats(bc).bytes, BS + 650);
    ck_assert_uint_eq(stats(bc).blocks, 2);
    ck_assert_uint_eq(stats(bc).spans, 4);
    uint8_t ref2[BS];
    fill(ref2, BS, (unsigned)id, 2);
    ck_assert_int_eq(blockcache_get_hot_part(bc, id, 2, 1010, 40, part), 0); /* the middle one */
    ck_assert_mem_eq(part, ref2 + 1010, 40);
    ck_assert_int_eq(blockcache_get_hot_part(bc, id, 2, 1040, 20, part), -ENOENT); /* past it */
    /* A whole block replaces every span. */
    put_block(bc, id, 2, BS);
    expect_block(bc, id, 2, BS);
    ck_assert_uint_eq(stats(bc).bytes, 2 * BS);
    ck_assert_uint_eq(stats(bc).spans, 2);
    span_path(path, sizeof(path), dir, id, 2, 2000);
    ck_assert(!exists(path));

    /* Spans must lie inside their block; the short last block counts. */
    ck_assert_int_eq(blockcache_put_span(bc, id, 1, BS, ref, 1), -EINVAL);
    ck_assert_int_eq(blockcache_put_span(bc, id, 1, BS - 10, ref, 11), -EINVAL);
    ck_assert_int_eq(blockcache_put_span(bc, id, 3, 0, ref, 101), -EINVAL);
    ck_assert_int_eq(blockcache_put_span(bc, id, 3, 100, ref, 1), -EINVAL);
    ck_assert_int_eq(blockcache_put_span(bc, id, 4, 0, ref, 1), -EINVAL);
    ck_assert_int_eq(blockcache_put_span(bc, id, 1, 0, ref, 0), -EINVAL);
    ck_assert_int_eq(blockcache_put(bc, id, 3, ref, 50), -EINVAL); /* not the whole block */
    put_span(bc, id, 3, 50, 50);
    expect_span(bc, id, 3, 50, 50);
    blockcache_close(bc);

    /* Spans survive a restart as they were. */
    struct blockcache_report rep;
    bc = open_ok(&cfg, &rep);
    ck_assert_uint_eq(rep.orphan_files_removed + rep.rows_dropped + rep.temp_files_removed, 0);
    expect_block(bc, id, 1, BS);
    expect_span(bc, id, 3, 50, 50);
    ck_assert_uint_eq(stats(bc).bytes, 2 * BS + 50);
    ck_assert_uint_eq(stats(bc).spans, 3);
    blockcache_close(bc);
}
END_TEST

/* A put that bridges spans merges them all (and everything it overlaps) into one. */
START_TEST(test_span_bridge)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 2 * BS);
    put_span(bc, id, 0, 100, 100);
    put_span(bc, id, 0, 300, 100);
    put_span(bc, id, 0, 500, 100);
    put_span(bc, id, 0, 900, 100);
    /* [150, 550) overlaps the first, holds the second, overlaps the third. */
    put_span(bc, id, 0, 150, 400);
    size_t two[] = {100, 500, 900, 100};
    expect_spans(bc, id, 0, 2, two);
    ck_assert_uint_eq(stats(bc).bytes, 600);
    ck_assert_uint_eq(stats(bc).spans, 2);
    /* Exactly filling the hole: three spans become one (both neighbours read back). */
    put_span(bc, id, 0, 600, 300);
    expect_span(bc, id, 0, 100, 900);
    ck_assert_uint_eq(stats(bc).bytes, 900);
    ck_assert_uint_eq(stats(bc).spans, 1);
    ck_assert_uint_eq(stats(bc).blocks, 1);
    blockcache_close(bc);
    struct blockcache_report rep;
    bc = open_ok(&cfg, &rep);
    ck_assert_uint_eq(rep.orphan_files_removed + rep.rows_dropped + rep.temp_files_removed, 0);
    expect_span(bc, id, 0, 100, 900);
    blockcache_close(bc);
}
END_TEST

/* Past BLOCKCACHE_MAX_SPANS the shortest other span goes and the new one stays, counted. */
START_TEST(test_span_bound)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", BS);
    size_t want[2 * BLOCKCACHE_MAX_SPANS];
    uint64_t bytes = 0;
    for (size_t i = 0; i < BLOCKCACHE_MAX_SPANS; i++) {
        size_t len = i == 7 ? 3 : 10; /* span 7 is the shortest */
        put_span(bc, id, 0, i * 100, len);
        want[2 * i] = i * 100;
        want[2 * i + 1] = len;
        bytes += len;
    }
    expect_spans(bc, id, 0, BLOCKCACHE_MAX_SPANS, want);
    ck_assert_uint_eq(stats(bc).span_drops, 0);
    put_span(bc, id, 0, BS - 20, 20); /* one more, touching nothing */
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_eq(s.span_drops, 1);
    ck_assert_uint_eq(s.spans, BLOCKCACHE_MAX_SPANS);
    ck_assert_uint_eq(s.bytes, bytes - 3 + 20);
    memmove(want + 14, want + 16, (2 * BLOCKCACHE_MAX_SPANS - 16) * sizeof(want[0]));
    want[2 * BLOCKCACHE_MAX_SPANS - 2] = BS - 20;
    want[2 * BLOCKCACHE_MAX_SPANS - 1] = 20;
    expect_spans(bc, id, 0, BLOCKCACHE_MAX_SPANS, want);
    /* A put merging spans never drops one: 0..10 and 100..110 become one. */
    put_span(bc, id, 0, 10, 90);
    ck_assert_uint_eq(stats(bc).span_drops, 1);
    ck_assert_uint_eq(stats(bc).spans, BLOCKCACHE_MAX_SPANS - 1);
    blockcache_close(bc);
    struct blockcache_report rep;
    bc = open_ok(&cfg, &rep);
    ck_assert_uint_eq(rep.orphan_files_removed + rep.rows_dropped + rep.temp_files_removed, 0);
    ck_assert_uint_eq(stats(bc).spans, BLOCKCACHE_MAX_SPANS - 1);
    blockcache_close(bc);
}
END_TEST

/* Crash leftovers with spans: sizes are checked per span, hostile names are orphans. */
START_TEST(test_span_reconcile)
{
    char dir[PATH_MAX], p0[PATH_MAX], p1[PATH_MAX], p2[PATH_MAX], p3[PATH_MAX], odd[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache_report rep;
    struct blockcache *bc = open_ok(&cfg, &rep);
    int64_t id = new_file(bc, "https://example.org/a.h5", 4 * BS);
    put_span(bc, id, 0, 100, 300);
    put_span(bc, id, 0, 1000, 300);
    put_span(bc, id, 1, 0, 700);
    put_span(bc, id, 1, 2000, 100);
    put_span(bc, id, 2, 4000, 96);
    blockcache_close(bc);
    span_path(p0, sizeof(p0), dir, id, 0, 1000);
    span_path(p1, sizeof(p1), dir, id, 1, 0);
    span_path(p2, sizeof(p2), dir, id, 2, 4000);
    span_path(p3, sizeof(p3), dir, id, 1, 2000);
    ck_assert_int_eq(truncate(p1, BS), 0); /* a whole block's size, but the row says 700 */
    ck_assert_int_eq(unlink(p2), 0);       /* a row without its file */
    ck_assert_int_eq(truncate(p0, 299), 0);
    /* Names no put writes: not canonical, out of the block, not numbers. */
    static const char *const names[] = {"1.0",
                                        "1.02",
                                        "1.4096",
                                        "1.",
                                        "1.2000.1",
                                        "1.-5",
                                        "1.+20",
                                        "01",
                                        ".2000",
                                        "1.1e3",
                                        "1.99999999999999999999"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        pathf(odd, sizeof(odd), "%s/blocks/%" PRId64 "/01/%s", dir, id, names[i]);
        write_file(odd, "x");
    }
    bc = open_ok(&cfg, &rep);
    ck_assert_uint_eq(rep.rows_dropped, 3);
    ck_assert_uint_eq(rep.orphan_files_removed, sizeof(names) / sizeof(names[0]));
    ck_assert(!exists(p1));
    ck_assert(!exists(p0));
    ck_assert(exists(p3));
    expect_span(bc, id, 0, 100, 300);
    expect_span(bc, id, 1, 2000, 100);
    expect_miss(bc, id, 2, -ENOENT);
    ck_assert_uint_eq(stats(bc).bytes, 400);
    ck_assert_uint_eq(stats(bc).blocks, 2);
    ck_assert_uint_eq(stats(bc).spans, 2);
    blockcache_close(bc);
}
END_TEST

/* A damaged span is dropped, never served, and never merged into a new one. */
START_TEST(test_span_corrupt)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 2 * BS);
    uint8_t got[BS];
    struct blockcache_spans spans;
    put_span(bc, id, 0, 1000, 1000);
    put_span(bc, id, 0, 3000, 100); /* a good neighbour */
    put_span(bc, id, 1, 1000, 1000);
    for (uint64_t index = 0; index < 2; index++) {
        span_path(path, sizeof(path), dir, id, index, 1000);
        int fd = open(path, O_RDWR);
        ck_assert_int_ge(fd, 0);
        uint8_t b = 0;
        ck_assert_int_eq(pread(fd, &b, 1, 10), 1);
        b ^= 0x40;
        ck_assert_int_eq(pwrite(fd, &b, 1, 10), 1);
        close(fd);
    }
    /* The damaged span is reported and dropped; the good one is still served. */
    ck_assert_int_eq(blockcache_get_spans(bc, id, 0, got, sizeof(got), &spans), -EBADMSG);
    ck_assert_uint_eq(spans.n, 1);
    ck_assert_uint_eq(spans.span[0].off, 3000);
    expect_span(bc, id, 0, 3000, 100);
    ck_assert_uint_eq(stats(bc).corrupt, 1);
    /* Block 1 is merged with before anyone read it: the damaged bytes are left out. */
    put_span(bc, id, 1, 2000, 500);
    expect_span(bc, id, 1, 2000, 500);
    ck_assert_uint_eq(stats(bc).bytes, 600);
    ck_assert_uint_eq(stats(bc).blocks, 2);
    ck_assert_uint_eq(stats(bc).spans, 2);
    blockcache_close(bc);
}
END_TEST

/* Eviction counts span bytes, one span at a time; merges change the count by what they add. */
START_TEST(test_span_eviction)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    /* high 95 % of 8 blocks, low 50 %. */
    struct blockcache_config cfg = config(dir, 8 * BS, 95, 50);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 32 * BS);
    uint64_t want = 0;
    for (uint64_t i = 0; i < 7; i++) {
        put_span(bc, id, i, 0, BS / 4); /* two disjoint quarters a block */
        put_span(bc, id, i, BS / 2, BS / 4);
        want += BS / 2;
    }
    /* 7 half blocks of bytes: under the high watermark, nothing evicted. */
    ck_assert_uint_eq(stats(bc).evictions, 0);
    ck_assert_uint_eq(stats(bc).bytes, want);
    ck_assert_uint_eq(stats(bc).blocks, 7);
    ck_assert_uint_eq(stats(bc).spans, 14);
    put_span(bc, id, 6, BS / 4, BS / 4); /* bridges both quarters of block 6 */
    size_t merged[] = {0, 3 * BS / 4};
    expect_spans(bc, id, 6, 1, merged);
    want += BS / 4;
    ck_assert_uint_eq(stats(bc).bytes, want);
    ck_assert_uint_eq(stats(bc).spans, 13);
    for (uint64_t i = 7; i < 16; i++)
        put_span(bc, id, i, 0, BS / 2); /* past 95 % */
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_gt(s.evictions, 0);
    ck_assert_uint_le(s.bytes, 8 * BS * 95 / 100);
    ck_assert_uint_eq(s.spans, s.bytes / (BS / 2)); /* the merged 3/4 block went early */
    expect_span(bc, id, 15, 0, BS / 2);             /* the newest stayed */
    expect_miss(bc, id, 0, -ENOENT);                /* the oldest went */
    /* Blocks and spans are counted as the rows say. */
    blockcache_close(bc);
    struct blockcache_report rep;
    bc = open_ok(&cfg, &rep);
    ck_assert_uint_eq(rep.orphan_files_removed + rep.rows_dropped + rep.temp_files_removed, 0);
    ck_assert_uint_eq(stats(bc).bytes, s.bytes);
    ck_assert_uint_eq(stats(bc).blocks, s.blocks);
    ck_assert_uint_eq(stats(bc).spans, s.spans);
    blockcache_close(bc);
}
END_TEST

/* Runs SQL on a closed cache's index. */
static void index_exec(const char *dir, const char *sql)
{
    char path[PATH_MAX];
    pathf(path, sizeof(path), "%s/index.sqlite", dir);
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* Turns a closed schema-4 cache into what a schema-3 daemon left (one span a block). */
static void make_schema3(const char *dir)
{
    index_exec(dir, "CREATE TABLE b3 (file_id INTEGER NOT NULL, idx INTEGER NOT NULL,"
                    " size INTEGER NOT NULL, checksum INTEGER NOT NULL,"
                    " last_access INTEGER NOT NULL, span_off INTEGER NOT NULL DEFAULT 0,"
                    " PRIMARY KEY (file_id, idx)) WITHOUT ROWID;"
                    "INSERT INTO b3 SELECT file_id, idx, size, checksum, last_access, span_off"
                    " FROM blocks;"
                    "DROP TABLE blocks; ALTER TABLE b3 RENAME TO blocks;"
                    "CREATE INDEX blocks_lru ON blocks (last_access);"
                    "UPDATE meta SET value = 3 WHERE key = 'schema_version'");
}

/* Schema-3 and schema-2 indexes are migrated and kept (spans renamed); others rebuilt. */
START_TEST(test_schema_upgrade)
{
    char dir[PATH_MAX], path[PATH_MAX], old[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache_report rep;
    struct blockcache *bc = open_ok(&cfg, &rep);
    int64_t id = new_file(bc, "https://example.org/a.h5", 3 * BS);
    put_block(bc, id, 0, BS);
    put_span(bc, id, 1, 0, 100);
    put_span(bc, id, 2, 500, 100);
    blockcache_close(bc);
    /* Schema 3: the span at 500 was named after its block only. */
    make_schema3(dir);
    span_path(path, sizeof(path), dir, id, 2, 500);
    path_of(old, sizeof(old), dir, id, 2);
    ck_assert_int_eq(rename(path, old), 0);
    bc = open_ok(&cfg, &rep);
    ck_assert_uint_eq(rep.orphan_files_removed + rep.rows_dropped, 0);
    expect_block(bc, id, 0, BS);
    expect_span(bc, id, 1, 0, 100);
    expect_span(bc, id, 2, 500, 100);
    ck_assert(exists(path));
    ck_assert(!exists(old));
    put_span(bc, id, 2, 700, 100); /* a second span beside the migrated one */
    size_t two[] = {500, 100, 700, 100};
    expect_spans(bc, id, 2, 2, two);
    ck_assert_uint_eq(stats(bc).spans, 4);
    blockcache_close(bc);
    /* Schema 2: whole blocks, no span column. */
    bc = open_ok(&cfg, &rep);
    ck_assert_int_eq(blockcache_file_drop(bc, "https://example.org/a.h5"), 0);
    id = new_file(bc, "https://example.org/a.h5", 2 * BS);
    put_block(bc, id, 0, BS);
    put_block(bc, id, 1, BS);
    blockcache_close(bc);
    make_schema3(dir);
    index_exec(dir, "ALTER TABLE blocks DROP COLUMN span_off;"
                    "UPDATE meta SET value = 2 WHERE key = 'schema_version'");
    bc = open_ok(&cfg, &rep);
    ck_assert_uint_eq(rep.orphan_files_removed + rep.rows_dropped, 0);
    expect_block(bc, id, 0, BS);
    expect_block(bc, id, 1, BS);
    put_span(bc, id, 0, 10, 10); /* held already */
    expect_block(bc, id, 0, BS);
    ck_assert_uint_eq(stats(bc).blocks, 2);
    blockcache_close(bc);
    index_exec(dir, "UPDATE meta SET value = 1 WHERE key = 'schema_version'");
    bc = open_ok(&cfg, &rep);
    ck_assert_uint_eq(rep.orphan_files_removed, 2); /* their rows went with the old schema */
    path_of(path, sizeof(path), dir, id, 0);
    ck_assert(!exists(path));
    ck_assert_uint_eq(stats(bc).blocks, 0);
    blockcache_close(bc);
}
END_TEST

struct span_worker {
    struct blockcache *bc;
    int64_t id;
    unsigned seed;
    _Atomic unsigned *errors;
    _Atomic unsigned *overtaken; /* puts that gave up with -EBUSY: documented, nothing stored */
};

/* Random spans of four blocks, put and read back by several threads at once. */
static void *span_worker_main(void *arg)
{
    struct span_worker *w = arg;
    uint8_t ref[BS], got[BS];
    for (unsigned i = 0; i < ITERATIONS; i++) {
        uint64_t index = (uint64_t)(rand_r(&w->seed) % 4);
        size_t off = (size_t)(rand_r(&w->seed) % BS);
        size_t len = 1 + (size_t)(rand_r(&w->seed) % ((BS - off) < 300 ? BS - off : 300));
        fill(ref, BS, (unsigned)w->id, index);
        int put = blockcache_put_span(w->bc, w->id, index, off, ref + off, len);
        if (put == -EBUSY)
            atomic_fetch_add(w->overtaken, 1);
        else if (put != 0)
            atomic_fetch_add(w->errors, 1);
        struct blockcache_spans spans;
        int rc = blockcache_get_spans(w->bc, w->id, index, got, sizeof(got), &spans);
        bool held = false;
        for (size_t k = 0; rc == 0 && k < spans.n; k++) {
            const struct blockcache_span *sp = &spans.span[k];
            if (sp->off + sp->len > BS || memcmp(got + sp->off, ref + sp->off, sp->len) != 0 ||
                (k > 0 && spans.span[k - 1].off + spans.span[k - 1].len >= sp->off))
                atomic_fetch_add(w->errors, 1); /* wrong bytes, or spans that touch */
            held |= sp->off <= off && off + len <= sp->off + sp->len;
        }
        /* Nothing evicts here: what a put stored is still there (merged, maybe). */
        if (rc != 0 || (put == 0 && !held))
            atomic_fetch_add(w->errors, 1);
    }
    return NULL;
}

START_TEST(test_span_concurrent)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    int64_t id = new_file(bc, "https://example.org/a.h5", 4 * BS);
    _Atomic unsigned errors = 0, overtaken = 0;
    struct span_worker w[THREADS];
    pthread_t t[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        w[i] = (struct span_worker){
            .bc = bc, .id = id, .seed = i + 7, .errors = &errors, .overtaken = &overtaken};
        ck_assert_int_eq(pthread_create(&t[i], NULL, span_worker_main, &w[i]), 0);
    }
    for (unsigned i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
    ck_assert_uint_eq(atomic_load(&errors), 0);
    /* Puts of one block are serialized: none is overtaken without evictions. */
    ck_assert_uint_eq(atomic_load(&overtaken), 0);
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_eq(s.corrupt, 0);
    ck_assert_uint_eq(s.write_errors, 0);
    blockcache_close(bc);
    struct blockcache_report rep;
    bc = open_ok(&cfg, &rep);
    ck_assert_uint_eq(rep.orphan_files_removed + rep.rows_dropped + rep.temp_files_removed, 0);
    ck_assert_uint_eq(stats(bc).bytes, s.bytes);
    ck_assert_uint_eq(stats(bc).spans, s.spans);
    blockcache_close(bc);
}
END_TEST

#define PIECES 16 /* threads putting pieces of one block at once */

struct piece_worker {
    struct blockcache *bc;
    int64_t id;
    size_t off, len;
    pthread_barrier_t *start;
    int rc;
};

static void *piece_worker_main(void *arg)
{
    struct piece_worker *w = arg;
    uint8_t ref[BS];
    fill(ref, BS, (unsigned)w->id, 0);
    pthread_barrier_wait(w->start);
    w->rc = blockcache_put_span(w->bc, w->id, 0, w->off, ref + w->off, w->len);
    return NULL;
}

/* Runs PIECES puts of block 0 at once: piece i is [i * stride + shift, + len). */
static void put_pieces(struct blockcache *bc, int64_t id, size_t stride, size_t shift, size_t len)
{
    struct piece_worker w[PIECES];
    pthread_t t[PIECES];
    pthread_barrier_t start;
    ck_assert_int_eq(pthread_barrier_init(&start, NULL, PIECES), 0);
    for (size_t i = 0; i < PIECES; i++) {
        w[i] = (struct piece_worker){
            .bc = bc, .id = id, .off = i * stride + shift, .len = len, .start = &start};
        ck_assert_int_eq(pthread_create(&t[i], NULL, piece_worker_main, &w[i]), 0);
    }
    for (size_t i = 0; i < PIECES; i++) {
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
        ck_assert_int_eq(w[i].rc, 0);
    }
    pthread_barrier_destroy(&start);
}

/* Concurrent disjoint puts of one block are all kept; then the holes, at once, make it whole. */
START_TEST(test_span_concurrent_disjoint)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof(dir));
    struct blockcache_config cfg = config(dir, 64 * BS, 95, 85);
    struct blockcache *bc = open_ok(&cfg, NULL);
    for (unsigned round = 0; round < 20; round++) {
        char url[64];
        pathf(url, sizeof(url), "https://example.org/%u.h5", round);
        int64_t id = new_file(bc, url, BS);
        size_t stride = BS / PIECES;
        put_pieces(bc, id, stride, 0, stride / 2);
        size_t want[2 * PIECES];
        for (size_t i = 0; i < PIECES; i++) {
            want[2 * i] = i * stride;
            want[2 * i + 1] = stride / 2;
        }
        expect_spans(bc, id, 0, PIECES, want);
        put_pieces(bc, id, stride, stride / 2, stride / 2);
        expect_block(bc, id, 0, BS);
        ck_assert_int_eq(blockcache_file_drop(bc, url), 0);
    }
    struct blockcache_stats s = stats(bc);
    ck_assert_uint_eq(s.write_errors, 0);
    ck_assert_uint_eq(s.span_drops, 0);
    ck_assert_uint_eq(s.spans, 0);
    blockcache_close(bc);
}
END_TEST

static Suite *blockcache_suite(void)
{
    Suite *s = suite_create("blockcache");
    TCase *core = tcase_create("core");
    tcase_add_unchecked_fixture(core, root_setup, root_teardown);
    tcase_set_timeout(core, 30);
    tcase_add_test(core, test_roundtrip);
    tcase_add_test(core, test_touch_runs);
    tcase_add_test(core, test_miss);
    tcase_add_test(core, test_duplicate_put);
    tcase_add_test(core, test_lru_order);
    tcase_add_test(core, test_watermarks);
    tcase_add_test(core, test_corrupt_block);
    tcase_add_test(core, test_truncated_block);
    tcase_add_test(core, test_vanished_block);
    tcase_add_test(core, test_hot_blocks);
    tcase_add_test(core, test_reconcile);
    tcase_add_test(core, test_validator_change);
    tcase_add_test(core, test_persistence);
    tcase_add_test(core, test_relative_dir);
    tcase_add_test(core, test_busy);
    tcase_add_test(core, test_block_size_change);
    tcase_add_test(core, test_degraded);
    tcase_add_test(core, test_corrupt_index);
    tcase_add_test(core, test_epoch);
    tcase_add_test(core, test_symlink_block);
    tcase_add_test(core, test_unsafe_dir);
    tcase_add_test(core, test_disk_full);
    tcase_add_test(core, test_concurrent);
    tcase_add_test(core, test_span_merge);
    tcase_add_test(core, test_span_bridge);
    tcase_add_test(core, test_span_bound);
    tcase_add_test(core, test_span_concurrent_disjoint);
    tcase_add_test(core, test_span_reconcile);
    tcase_add_test(core, test_span_corrupt);
    tcase_add_test(core, test_span_eviction);
    tcase_add_test(core, test_schema_upgrade);
    tcase_add_test(core, test_span_concurrent);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_unchecked_fixture(limits, root_setup, root_teardown);
    tcase_set_timeout(limits, 30);
    tcase_add_test(limits, test_config_limits);
    tcase_add_test(limits, test_io_limits);
    tcase_add_test(limits, test_block_over_watermark);
    tcase_add_test(limits, test_touch_buffer_full);
    tcase_add_test(limits, test_set_cap);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(blockcache_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
