/*
 * check_h5index.c - the persistent chunk index (lib/h5index.c) between a
 * fake HDF5 worker and its sqlite file: chunk locations learnt once are
 * answered from the index (by range queries over the sorted keys) exactly
 * as the worker answered them, in any key order, with repeated keys, known
 * and unknown keys mixed, never from another dataset, another version of
 * the file or another cache epoch, and never for a grid whose linear chunk
 * indexes do not fit the index's keys.  The test program re-executes
 * itself as the worker (FAKE_H5INDEX_WORKER in the environment): it
 * describes any path as a chunked dataset of the shape given in the
 * environment and locates each chunk by a formula of its linear index.
 */
#include <check.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5index.h"
#include "workerpool.h"
#include "workerproto.h"

#define WORKER_FD 3
#define EPOCH     11

static char self_path[PATH_MAX];

/* ---- what the fake worker says ---- */

/* Where the fake worker says chunk `linear` of the dataset at `path` lies. */
static struct wp_loc expected_loc(const char *path, uint64_t linear)
{
    uint64_t salt = strlen(path) * 1000003u;
    struct wp_loc loc = {.offset = 4096 + salt + linear * 100,
                         .size = 50 + linear % 13,
                         .filter_mask = (uint32_t)(linear % 3),
                         .allocated = linear % 7 != 3};
    if (!loc.allocated)
        loc.offset = loc.size = 0;
    return loc;
}

static void worker_describe(const struct wp_op *op)
{
    /* FAKE_H5INDEX_SHAPE "rows,cols" with chunks FAKE_H5INDEX_CHUNKS "r,c". */
    const char *shape = getenv("FAKE_H5INDEX_SHAPE"), *chunks = getenv("FAKE_H5INDEX_CHUNKS");
    char doc[1024];
    int n = snprintf(doc, sizeof(doc),
                     "{\"meta\":{\"kind\":\"dataset\",\"path\":\"%s\",\"layout\":\"chunked\","
                     "\"shape\":[%s],\"chunks\":[%s],\"dtype\":\"<f4\",\"filters\":[]},"
                     "\"facts\":{\"elem_size\":4}}",
                     op->path, shape, chunks);
    struct wp_result res = {.data_len = (uint64_t)n};
    wp_send(WORKER_FD, WP_RESULT, &res, sizeof(res), doc, (size_t)n, 0);
}

static void worker_locate(const struct wp_op *op, const uint64_t *coords)
{
    size_t rank = (size_t)op->ds.grid.rank;
    struct wp_loc *locs = calloc(op->ncoords > 0 ? op->ncoords : 1, sizeof(*locs));
    if (locs == NULL)
        _exit(5);
    for (uint32_t i = 0; i < op->ncoords; i++)
        locs[i] = expected_loc(op->ds.path, chunkkey_linear(&op->ds.grid, coords + i * rank));
    struct wp_result res = {.data_len = op->ncoords * sizeof(*locs)};
    wp_send(WORKER_FD, WP_RESULT, &res, sizeof(res), locs, (size_t)res.data_len, 0);
    free(locs);
}

static int fake_worker(void)
{
    if (wp_send(WORKER_FD, WP_READY, NULL, 0, NULL, 0, 0) < 0)
        return 2;
    static struct wp_op op;
    static uint64_t coords[WP_MAX_LOCATE_KEYS * H5CD_MAX_RANK];
    for (;;) {
        struct wp_header hdr;
        if (wp_recv_header(WORKER_FD, &hdr, 0) < 0)
            return 0;
        if (hdr.type != WP_OP || hdr.length < sizeof(op) ||
            hdr.length - sizeof(op) > sizeof(coords) ||
            wp_read_full(WORKER_FD, &op, sizeof(op), 0) < 0 ||
            wp_read_full(WORKER_FD, coords, hdr.length - sizeof(op), 0) < 0)
            return 2;
        if (op.opcode == WP_OP_DESCRIBE)
            worker_describe(&op);
        else if (op.opcode == WP_OP_LOCATE)
            worker_locate(&op, coords);
        else
            return 3;
    }
}

/* ---- fixture ---- */

static char dir[PATH_MAX];
static struct h5cd_stats stats;
static struct workerpool *pool;
static struct h5index *index_;

static const struct remote_file file_v1 = {.url = "http://127.0.0.1/f.h5",
                                           .identity = "http://127.0.0.1/f.h5",
                                           .validator = "\"v1\"",
                                           .file_id = 7,
                                           .size = 1 << 30};

static void open_index(uint64_t epoch)
{
    struct h5index_config cfg = {.dir = dir, .prefix_bytes = 4096, .cache_epoch = epoch};
    ck_assert_int_eq(h5index_open(&cfg, pool, &stats, &index_), 0);
}

static void start(const char *shape, const char *chunks)
{
    setenv("FAKE_H5INDEX_WORKER", "1", 1);
    setenv("FAKE_H5INDEX_SHAPE", shape, 1);
    setenv("FAKE_H5INDEX_CHUNKS", chunks, 1);
    snprintf(dir, sizeof(dir), "%s/check_h5index.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    stats_init(&stats);
    struct workerpool_config cfg = {
        .worker_path = self_path, .workers = 1, .timeout_ms = 10000, .log_level = "error"};
    ck_assert_int_eq(workerpool_new(&cfg, NULL, &stats, &pool), 0);
    open_index(EPOCH);
}

static void stop(void)
{
    h5index_close(index_);
    workerpool_free(pool);
    char path[PATH_MAX + 64];
    static const char *const names[] = {"h5index.sqlite", "h5index.sqlite-wal",
                                        "h5index.sqlite-shm"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static struct h5dataset dataset(const struct remote_file *file, const char *path)
{
    struct h5dataset ds;
    struct h5cd_error err = {0};
    ck_assert_msg(h5index_dataset(index_, file, path, &ds, &err) == 0, "%s", err.message);
    ck_assert_int_eq(ds.layout, H5LAYOUT_CHUNKED);
    return ds;
}

/* Locates the chunks of linear indexes `lin` (any order, repeats allowed) and
 * checks every answer against the worker's formula. */
static void locate_checked(const struct remote_file *file, const struct h5dataset *ds,
                           const uint64_t *lin, size_t n)
{
    size_t rank = (size_t)ds->grid.rank;
    uint64_t *coords = calloc(n * rank, sizeof(*coords));
    struct h5chunk_loc *locs = calloc(n, sizeof(*locs));
    ck_assert(coords != NULL && locs != NULL);
    for (size_t i = 0; i < n; i++) {
        uint64_t rest = lin[i];
        for (size_t d = rank; d-- > 0;) {
            uint64_t count = chunkgrid_count(&ds->grid, (int)d);
            coords[i * rank + d] = rest % count;
            rest /= count;
        }
    }
    struct h5cd_error err = {0};
    ck_assert_msg(h5index_locate(index_, file, ds, coords, n, locs, &err) == 0, "%s", err.message);
    for (size_t i = 0; i < n; i++) {
        struct wp_loc want = expected_loc(ds->path, lin[i]);
        ck_assert_msg(locs[i].allocated == (want.allocated != 0), "key %llu (at %zu): allocated",
                      (unsigned long long)lin[i], i);
        if (want.allocated) {
            ck_assert_uint_eq(locs[i].offset, want.offset);
            ck_assert_uint_eq(locs[i].size, want.size);
        }
        ck_assert_uint_eq(locs[i].filter_mask, want.filter_mask);
    }
    free(coords);
    free(locs);
}

static uint64_t marked_worker, marked_index;

/* From here on, count keys sent to the worker and answered by the index. */
static void mark(void)
{
    marked_worker = STATS_GET(&stats, h5_lookups);
    marked_index = STATS_GET(&stats, index_hits);
}

/* Keys sent to the worker and answered by the index since the mark; marks again. */
static void expect_counts(uint64_t worker, uint64_t index)
{
    uint64_t w = STATS_GET(&stats, h5_lookups) - marked_worker;
    uint64_t i = STATS_GET(&stats, index_hits) - marked_index;
    ck_assert_msg(w == worker, "worker lookups %llu, expected %llu", (unsigned long long)w,
                  (unsigned long long)worker);
    ck_assert_msg(i == index, "index hits %llu, expected %llu", (unsigned long long)i,
                  (unsigned long long)index);
    mark();
}

/* ---- tests ---- */

START_TEST(test_learnt_then_answered)
{
    start("6000,8", "3,4"); /* 2000 x 2 chunks */
    struct h5dataset ds = dataset(&file_v1, "/a");
    mark();
    /* Every tenth chunk: all from the worker. */
    uint64_t lin[4000];
    size_t n = 0;
    for (uint64_t k = 0; k < 4000; k += 10)
        lin[n++] = k;
    locate_checked(&file_v1, &ds, lin, n);
    expect_counts(n, 0);
    /* The same again, reversed, with repeats: all from the index. */
    uint64_t rev[800];
    for (size_t i = 0; i < n; i++)
        rev[i] = lin[n - 1 - i], rev[n + i] = lin[(i * 37) % n];
    locate_checked(&file_v1, &ds, rev, 2 * n);
    expect_counts(0, 2 * n);
    /* Every chunk in order: the tenth ones known, the rest from the worker (each once). */
    for (n = 0; n < 4000; n++)
        lin[n] = n;
    locate_checked(&file_v1, &ds, lin, 4000);
    expect_counts(4000 - 400, 400);
    /* Now all known: dense, sparse (gaps past the join distance) and shuffled. */
    locate_checked(&file_v1, &ds, lin, 4000);
    expect_counts(0, 4000);
    for (n = 0; n < 400; n++)
        lin[n] = (n * 7919) % 4000;
    locate_checked(&file_v1, &ds, lin, 400);
    expect_counts(0, 400);
    for (n = 0; n < 40; n++)
        lin[n] = 3999 - n * 97;
    locate_checked(&file_v1, &ds, lin, 40);
    expect_counts(0, 40);
    /* One key, the first and the last. */
    lin[0] = 0;
    locate_checked(&file_v1, &ds, lin, 1);
    lin[0] = 3999;
    locate_checked(&file_v1, &ds, lin, 1);
    expect_counts(0, 2);
    stop();
}
END_TEST

START_TEST(test_no_crosstalk)
{
    start("600,8", "3,4"); /* 200 x 2 chunks */
    struct h5dataset a = dataset(&file_v1, "/a"), b = dataset(&file_v1, "/bb/c");
    mark();
    uint64_t lin[400];
    for (size_t i = 0; i < 400; i++)
        lin[i] = i;
    locate_checked(&file_v1, &a, lin, 400);
    expect_counts(400, 0);
    /* The same keys of another dataset are not known (another formula, too). */
    for (size_t i = 0; i < 200; i++)
        lin[i] = 2 * i + 1;
    locate_checked(&file_v1, &b, lin, 200);
    expect_counts(200, 0);
    for (size_t i = 0; i < 400; i++)
        lin[i] = 399 - i;
    locate_checked(&file_v1, &b, lin, 400); /* b's odd keys known, even ones not */
    expect_counts(200, 200);
    locate_checked(&file_v1, &a, lin, 400);
    expect_counts(0, 400);
    /* A new version of the file (same identity, new cache file id): nothing known. */
    struct remote_file v2 = file_v1;
    v2.file_id = 8;
    snprintf(v2.validator, sizeof(v2.validator), "\"v2\"");
    struct h5dataset a2 = dataset(&v2, "/a");
    mark();
    locate_checked(&v2, &a2, lin, 400);
    expect_counts(400, 0);
    locate_checked(&v2, &a2, lin, 400);
    expect_counts(0, 400);
    stop();
}
END_TEST

START_TEST(test_persisted_per_epoch)
{
    start("300,4", "3,4"); /* 100 chunks */
    struct h5dataset ds = dataset(&file_v1, "/a");
    mark();
    uint64_t lin[100];
    for (size_t i = 0; i < 100; i++)
        lin[i] = (i * 31) % 100;
    locate_checked(&file_v1, &ds, lin, 100);
    expect_counts(100, 0);
    /* Reopened under the same epoch: the rows are still there. */
    h5index_close(index_);
    open_index(EPOCH);
    ds = dataset(&file_v1, "/a");
    mark();
    locate_checked(&file_v1, &ds, lin, 100);
    expect_counts(0, 100);
    /* Under another epoch (the block index was rebuilt) they are gone. */
    h5index_close(index_);
    open_index(EPOCH + 1);
    ds = dataset(&file_v1, "/a");
    mark();
    locate_checked(&file_v1, &ds, lin, 100);
    expect_counts(100, 0);
    stop();
}
END_TEST

START_TEST(test_untrusted_rows)
{
    start("300,4", "3,4"); /* 100 chunks */
    struct h5dataset ds = dataset(&file_v1, "/a");
    mark();
    uint64_t lin[100];
    for (size_t i = 0; i < 100; i++)
        lin[i] = i;
    locate_checked(&file_v1, &ds, lin, 100);
    expect_counts(100, 0);
    h5index_close(index_);
    /* Someone writes rows the daemon did not: a fractional key between two
     * real ones (read as an integer it would be chunk 40) and a text key.
     * They match no chunk: 40 and 41 are located again, right. */
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/h5index.sqlite", dir);
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    char sql[320];
    snprintf(sql, sizeof(sql),
             "DELETE FROM chunks WHERE object_id = %lld AND idx IN (40, 41);"
             "INSERT INTO chunks VALUES (%lld, 40.5, 1, 1, 0, NULL);"
             "INSERT INTO chunks VALUES (%lld, 'x41', 2, 2, 0, NULL);",
             (long long)ds.id, (long long)ds.id, (long long)ds.id);
    ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    open_index(EPOCH);
    ds = dataset(&file_v1, "/a");
    mark();
    locate_checked(&file_v1, &ds, lin, 100);
    expect_counts(2, 98);
    locate_checked(&file_v1, &ds, lin, 100);
    expect_counts(0, 100);
    stop();
}
END_TEST

START_TEST(test_grid_too_large_for_keys)
{
    /* 2^40 x 2^40 chunks: linear indexes wrap; nothing is remembered. */
    start("1099511627776,1099511627776", "1,1");
    struct h5dataset ds = dataset(&file_v1, "/a");
    mark();
    uint64_t coords[4] = {0, 5, 1ULL << 24, 5}; /* linear 5 and (2^64 + 5) mod 2^64 = 5 */
    struct h5chunk_loc locs[2];
    struct h5cd_error err = {0};
    ck_assert_int_eq(h5index_locate(index_, &file_v1, &ds, coords, 2, locs, &err), 0);
    ck_assert_int_eq(h5index_locate(index_, &file_v1, &ds, coords + 2, 1, locs, &err), 0);
    expect_counts(3, 0);
    stop();
}
END_TEST

static Suite *h5index_suite(void)
{
    Suite *s = suite_create("h5index");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_learnt_then_answered);
    tcase_add_test(tc, test_no_crosstalk);
    tcase_add_test(tc, test_persisted_per_epoch);
    tcase_add_test(tc, test_untrusted_rows);
    tcase_add_test(tc, test_grid_too_large_for_keys);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (getenv("FAKE_H5INDEX_WORKER") != NULL && argc > 1 && strncmp(argv[1], "--memory=", 9) == 0)
        return fake_worker();
    if (realpath("/proc/self/exe", self_path) == NULL)
        return 99;
    SRunner *sr = srunner_create(h5index_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
