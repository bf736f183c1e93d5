/*
 * check_h5vfd.c - unit tests of lib/h5vfd: libhdf5 reading a file written
 * here through the driver, from a byte source that counts what it is asked.
 * The prefix is read in pages as libhdf5 touches them (aligned, each page
 * once, far less than the prefix), values and descriptions equal what the
 * default driver reads, raw data is not kept, a failed read is reported as
 * the source's error, and without a prefix every read goes as asked.  Each
 * test runs in its own process (libhdf5 shares an open file by name).
 */
#define _XOPEN_SOURCE 700
#include <check.h>
#include <hdf5.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5meta.h"
#include "h5vfd.h"

#define PAGE      (16 * 1024)
#define GROUPS    40
#define ROWS      3000
#define MAX_READS 100000
#define BIG_ROWS  100000 /* /big: chunks of BIG_CHUNK floats, after the groups */
#define BIG_CHUNK 20000

static char file_path[64];
static uint8_t *file_bytes;
static size_t file_size;

/* What the source was asked. */
struct counter {
    size_t reads;
    uint64_t bytes;
    uint64_t offsets[MAX_READS];
    uint64_t lengths[MAX_READS];
    uint64_t fail_from; /* reads at or past this offset fail (UINT64_MAX: none) */
};

static int count_read(void *ctx, const struct h5vfd_file_desc *file, uint64_t offset,
                      uint64_t length, uint8_t *dst, struct h5cd_error *err)
{
    struct counter *c = ctx;
    ck_assert_uint_le(offset + length, file->size);
    if (offset + length > c->fail_from)
        return h5cd_fail(err, H5CD_E_UPSTREAM_TIMEOUT, "the origin did not answer");
    if (c->reads < MAX_READS) {
        c->offsets[c->reads] = offset;
        c->lengths[c->reads] = length;
    }
    c->reads++;
    c->bytes += length;
    memcpy(dst, file_bytes + offset, (size_t)length);
    return 0;
}

/* An NWB-like file: groups with attributes, each holding a chunked dataset, so that
 * metadata is spread between the datasets' bytes. */
/* Set-up outside any test: a failure ends the program. */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "check_h5vfd: set-up failed: %s\n", #cond);                            \
            exit(99);                                                                              \
        }                                                                                          \
    } while (0)

/* A 1-D chunked float32 dataset `name` in loc holding values[0 .. rows). */
static void write_floats(hid_t loc, const char *name, const float *values, hsize_t rows,
                         hsize_t chunk_rows)
{
    hsize_t dims[1] = {rows}, chunk[1] = {chunk_rows};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, chunk);
    hid_t d = H5Dcreate2(loc, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    REQUIRE(d >= 0);
    REQUIRE(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values) >= 0);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
}

static void write_file(void)
{
    snprintf(file_path, sizeof(file_path), "/tmp/check_h5vfd.%d.h5", (int)getpid());
    hid_t f = H5Fcreate(file_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(f >= 0);
    static float values[ROWS];
    for (int i = 0; i < ROWS; i++)
        values[i] = (float)i * 0.5f;
    for (int g = 0; g < GROUPS; g++) {
        char name[32];
        snprintf(name, sizeof(name), "g%02d", g);
        hid_t grp = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hid_t scalar = H5Screate(H5S_SCALAR);
        hid_t attr = H5Acreate2(grp, "index", H5T_STD_I32LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(attr, H5T_NATIVE_INT, &g);
        H5Aclose(attr);
        H5Sclose(scalar);
        write_floats(grp, "data", values, ROWS, 500);
        H5Gclose(grp);
    }
    static float big[BIG_ROWS];
    for (int i = 0; i < BIG_ROWS; i++)
        big[i] = (float)i;
    write_floats(f, "big", big, BIG_ROWS, BIG_CHUNK);
    H5Fclose(f);
    FILE *in = fopen(file_path, "rb");
    REQUIRE(in != NULL);
    fseek(in, 0, SEEK_END);
    file_size = (size_t)ftell(in);
    fseek(in, 0, SEEK_SET);
    file_bytes = malloc(file_size);
    REQUIRE(file_bytes != NULL);
    REQUIRE(fread(file_bytes, 1, file_size, in) == file_size);
    fclose(in);
}

/* Opens the file through the driver with the given prefix. */
static hid_t open_through(struct counter *c, uint64_t prefix)
{
    struct h5vfd_source source = {.read = count_read, .ctx = c};
    struct h5vfd_file_desc desc = {.file_id = 7, .size = file_size};
    snprintf(desc.identity, sizeof(desc.identity), "%s", "http://origin.test/file.h5");
    struct h5vfd_meta_plan plan = {.prefix_bytes = prefix, .window_align = 4096};
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    ck_assert_int_eq(h5vfd_set_fapl(fapl, &source, &desc, &plan), 0);
    hid_t f = H5Fopen(desc.identity, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    return f;
}

static char *describe_text(hid_t f, const char *path)
{
    struct h5cd_error err = {0};
    json_t *meta = h5meta_describe(f, path, &err);
    ck_assert_msg(meta != NULL, "describe %s: %s", path, err.message);
    char *text = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(meta);
    ck_assert_ptr_nonnull(text);
    return text;
}

START_TEST(test_pages)
{
    struct counter *c = calloc(1, sizeof(*c));
    c->fail_from = UINT64_MAX;
    hid_t f = open_through(c, file_size);
    ck_assert_int_ge(f, 0);
    char *got = describe_text(f, "/g17/data");
    H5Fclose(f);
    hid_t plain = H5Fopen(file_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    char *want = describe_text(plain, "/g17/data");
    H5Fclose(plain);
    ck_assert_str_eq(got, want);
    free(got);
    free(want);
    /* Whole pages, each once, and far fewer bytes than the prefix. */
    ck_assert_uint_gt(c->reads, 0);
    ck_assert_uint_le(c->reads, MAX_READS);
    for (size_t i = 0; i < c->reads; i++) {
        ck_assert_uint_eq(c->offsets[i] % PAGE, 0);
        ck_assert(c->lengths[i] % PAGE == 0 || c->offsets[i] + c->lengths[i] == file_size);
        for (size_t j = 0; j < i; j++)
            ck_assert(c->offsets[j] + c->lengths[j] <= c->offsets[i] ||
                      c->offsets[i] + c->lengths[i] <= c->offsets[j]);
    }
    ck_assert_uint_lt(c->bytes, file_size / 4);
    free(c);
}
END_TEST

START_TEST(test_values_and_listing)
{
    struct counter *c = calloc(1, sizeof(*c));
    c->fail_from = UINT64_MAX;
    hid_t f = open_through(c, file_size / 2); /* half the file paged, the rest by windows */
    ck_assert_int_ge(f, 0);
    hid_t plain = H5Fopen(file_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    static float a[ROWS], b[ROWS];
    for (int g = 0; g < GROUPS; g++) {
        char path[32];
        snprintf(path, sizeof(path), "/g%02d", g);
        char *got = describe_text(f, path), *want = describe_text(plain, path);
        ck_assert_str_eq(got, want);
        free(got);
        free(want);
        snprintf(path, sizeof(path), "/g%02d/data", g);
        hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
        ck_assert_int_ge(d, 0);
        memset(a, 0, sizeof(a));
        ck_assert_int_ge(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a), 0);
        H5Dclose(d);
        d = H5Dopen2(plain, path, H5P_DEFAULT);
        ck_assert_int_ge(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, b), 0);
        H5Dclose(d);
        ck_assert_mem_eq(a, b, sizeof(a));
    }
    H5Fclose(plain);
    H5Fclose(f);
    free(c);
}
END_TEST

/* A dataset opened without libhdf5's chunk cache: every H5Dread reads its chunks. */
static hid_t open_uncached(hid_t f, const char *path)
{
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    ck_assert_int_ge(H5Pset_chunk_cache(dapl, H5D_CHUNK_CACHE_NSLOTS_DEFAULT, 0, 1.0), 0);
    hid_t d = H5Dopen2(f, path, dapl);
    H5Pclose(dapl);
    ck_assert_int_ge(d, 0);
    return d;
}

/* Raw data that misses a page is read as asked (whole chunks of 80,000 bytes), not by
 * pages, and not kept: read again, it is asked again. */
START_TEST(test_raw_not_kept)
{
    struct counter *c = calloc(1, sizeof(*c));
    c->fail_from = UINT64_MAX;
    hid_t f = open_through(c, file_size);
    ck_assert_int_ge(f, 0);
    hid_t d = open_uncached(f, "/big");
    static float a[BIG_ROWS];
    size_t before = c->reads;
    ck_assert_int_ge(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a), 0);
    size_t chunk_reads = 0;
    for (size_t i = before; i < c->reads && i < MAX_READS; i++)
        chunk_reads += c->lengths[i] == BIG_CHUNK * sizeof(float);
    ck_assert_uint_gt(chunk_reads, 0);
    uint64_t after_first = c->bytes;
    ck_assert_int_ge(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a), 0);
    ck_assert_uint_ge(c->bytes - after_first, chunk_reads * BIG_CHUNK * sizeof(float));
    for (int i = 0; i < BIG_ROWS; i++)
        ck_assert_float_eq(a[i], (float)i);
    H5Dclose(d);
    H5Fclose(f);
    free(c);
}
END_TEST

/* A read that fails: libhdf5 fails, and the source's error is what the driver reports;
 * pages that failed are not kept as if read. */
START_TEST(test_failed_read)
{
    struct counter *c = calloc(1, sizeof(*c));
    c->fail_from = 0;
    h5vfd_take_error(NULL);
    ck_assert_int_lt(open_through(c, file_size), 0);
    struct h5cd_error read_err = {0};
    ck_assert(h5vfd_take_error(&read_err));
    ck_assert_int_eq(read_err.code, H5CD_E_UPSTREAM_TIMEOUT);
    ck_assert(!h5vfd_take_error(NULL));
    c->fail_from = UINT64_MAX;
    hid_t f = open_through(c, file_size);
    ck_assert_int_ge(f, 0);
    hid_t d = open_uncached(f, "/g39/data");
    static float a[ROWS];
    c->fail_from = 0;
    ck_assert_int_lt(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a), 0);
    ck_assert(h5vfd_take_error(&read_err));
    ck_assert_int_eq(read_err.code, H5CD_E_UPSTREAM_TIMEOUT);
    c->fail_from = UINT64_MAX;
    ck_assert_int_ge(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a), 0);
    ck_assert_float_eq(a[ROWS - 1], (float)(ROWS - 1) * 0.5f);
    H5Dclose(d);
    H5Fclose(f);
    free(c);
}
END_TEST

/* Without a prefix (h5_prefix_bytes = 0) every read goes to the source as libhdf5 asks. */
START_TEST(test_no_prefix)
{
    struct counter *c = calloc(1, sizeof(*c));
    c->fail_from = UINT64_MAX;
    hid_t f = open_through(c, 0);
    ck_assert_int_ge(f, 0);
    free(describe_text(f, "/g01/data"));
    H5Fclose(f);
    bool small = false;
    for (size_t i = 0; i < c->reads && i < MAX_READS; i++)
        small = small || c->lengths[i] < 4096;
    ck_assert_msg(small, "no read smaller than a page: were reads paged without a prefix?");
    free(c);
}
END_TEST

static Suite *h5vfd_suite(void)
{
    Suite *s = suite_create("h5vfd");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_pages);
    tcase_add_test(tc, test_values_and_listing);
    tcase_add_test(tc, test_raw_not_kept);
    tcase_add_test(tc, test_failed_read);
    tcase_add_test(tc, test_no_prefix);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    write_file();
    SRunner *sr = srunner_create(h5vfd_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    unlink(file_path);
    free(file_bytes);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
