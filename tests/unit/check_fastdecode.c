/*
 * check_fastdecode.c - decoding shuffle+deflate chunks without libhdf5: the
 * bytes must equal the original values, and every case it must not handle
 * (edge chunks, skipped filters, other filters, damaged data, padded types)
 * must be handed back to libhdf5 (return 1), never decoded wrongly.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fastdecode.h"

/* A 100x10 int16 dataset in 10x10 chunks. */
static struct h5dataset dataset(int nfilters, const int *filters)
{
    struct h5dataset ds;
    memset(&ds, 0, sizeof(ds));
    ds.layout = H5LAYOUT_CHUNKED;
    ds.grid.rank = 2;
    ds.grid.shape[0] = 100, ds.grid.shape[1] = 10;
    ds.grid.chunk[0] = 10, ds.grid.chunk[1] = 10;
    ds.elem_size = 2;
    ds.shuffle_elem = 2; /* the shuffle filter's parameter, as libhdf5 sets it */
    ds.raw_is_values = true;
    ds.nfilters = (unsigned)nfilters;
    for (int i = 0; i < nfilters; i++)
        ds.filters[i] = filters[i];
    return ds;
}

static void values(uint8_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        v[i] = (uint8_t)(i * 7 + (i >> 3));
}

/* shuffle (element size 2), then deflate: what HDF5 stores for [shuffle, deflate]. */
static uint8_t *encode(const uint8_t *v, size_t n, bool shuffle, size_t *len)
{
    uint8_t *s = malloc(n);
    for (size_t i = 0; i < n / 2; i++) {
        s[i] = shuffle ? v[2 * i] : v[i];
        s[n / 2 + i] = shuffle ? v[2 * i + 1] : v[n / 2 + i];
    }
    if (!shuffle)
        memcpy(s, v, n);
    uLongf bound = compressBound((uLong)n);
    uint8_t *z = malloc(bound);
    ck_assert_int_eq(compress2(z, &bound, s, (uLong)n, 4), Z_OK);
    free(s);
    *len = bound;
    return z;
}

START_TEST(test_shuffle_deflate)
{
    int f[] = {2, 1};
    struct h5dataset ds = dataset(2, f);
    uint8_t v[200];
    values(v, sizeof(v));
    size_t zlen;
    uint8_t *z = encode(v, sizeof(v), true, &zlen);
    uint64_t coords[2] = {3, 0};
    uint8_t *out = NULL;
    size_t out_len = 0;
    ck_assert_int_eq(fastdecode_chunk(&ds, coords, 0, z, zlen, &out, &out_len), 0);
    ck_assert_uint_eq(out_len, sizeof(v));
    ck_assert_mem_eq(out, v, sizeof(v));
    free(out);
    free(z);
}
END_TEST

START_TEST(test_deflate_and_none)
{
    int f[] = {1};
    struct h5dataset ds = dataset(1, f);
    uint8_t v[200];
    values(v, sizeof(v));
    size_t zlen;
    uint8_t *z = encode(v, sizeof(v), false, &zlen);
    uint64_t coords[2] = {0, 0};
    uint8_t *out = NULL;
    size_t out_len = 0;
    ck_assert_int_eq(fastdecode_chunk(&ds, coords, 0, z, zlen, &out, &out_len), 0);
    ck_assert_mem_eq(out, v, sizeof(v));
    free(out);
    free(z);
    struct h5dataset plain = dataset(0, NULL);
    ck_assert_int_eq(fastdecode_chunk(&plain, coords, 0, v, sizeof(v), &out, &out_len), 0);
    ck_assert_mem_eq(out, v, sizeof(v));
    free(out);
}
END_TEST

START_TEST(test_hands_back)
{
    int f[] = {2, 1};
    struct h5dataset ds = dataset(2, f);
    uint8_t v[200];
    values(v, sizeof(v));
    size_t zlen;
    uint8_t *z = encode(v, sizeof(v), true, &zlen);
    uint64_t inside[2] = {9, 0};
    uint8_t *out = NULL;
    size_t out_len = 0;
    /* the last row of chunks is still inside (100 = 10 x 10) ... */
    ck_assert_int_eq(fastdecode_chunk(&ds, inside, 0, z, zlen, &out, &out_len), 0);
    free(out);
    /* ... a dataset one row shorter makes it an edge chunk to pad */
    ds.grid.shape[0] = 99;
    ck_assert_int_eq(fastdecode_chunk(&ds, inside, 0, z, zlen, &out, &out_len), 1);
    ds.grid.shape[0] = 100;
    ck_assert_int_eq(fastdecode_chunk(&ds, inside, 2, z, zlen, &out, &out_len), 1); /* skipped */
    z[zlen / 2] ^= 0xff;
    ck_assert_int_eq(fastdecode_chunk(&ds, inside, 0, z, zlen, &out, &out_len), 1); /* damaged */
    ck_assert_int_eq(fastdecode_chunk(&ds, inside, 0, z, zlen - 5, &out, &out_len), 1);
    int other[] = {3, 1}; /* fletcher32 */
    struct h5dataset ds2 = dataset(2, other);
    ck_assert_int_eq(fastdecode_chunk(&ds2, inside, 0, z, zlen, &out, &out_len), 1);
    /* a shuffle parameter other than the type's size (an edited file): libhdf5 decodes */
    struct h5dataset edited = dataset(2, f);
    edited.shuffle_elem = 4;
    ck_assert_int_eq(fastdecode_chunk(&edited, inside, 0, z, zlen, &out, &out_len), 1);
    struct h5dataset padded = dataset(2, f);
    padded.raw_is_values = false;
    ck_assert_int_eq(fastdecode_chunk(&padded, inside, 0, z, zlen, &out, &out_len), 1);
    padded.raw_is_values = true;
    padded.layout = H5LAYOUT_CONTIGUOUS;
    ck_assert_int_eq(fastdecode_chunk(&padded, inside, 0, z, zlen, &out, &out_len), 1);
    free(z);
}
END_TEST

START_TEST(test_filter_count_limit)
{
    int f[H5INDEX_MAX_FILTERS] = {2, 2, 2, 2, 2, 2, 2, 2};
    struct h5dataset ds = dataset(H5INDEX_MAX_FILTERS, f);
    uint8_t v[200];
    values(v, sizeof(v));
    uint64_t coords[2] = {0, 0};
    uint8_t *out = NULL;
    size_t out_len = 0;
    /* eight shuffles of a 2-byte type: N filters decode ... */
    ck_assert_int_eq(fastdecode_chunk(&ds, coords, 0, v, sizeof(v), &out, &out_len), 0);
    free(out);
    /* ... N+1 are more than the index records: libhdf5 decides */
    ds.nfilters = H5INDEX_MAX_FILTERS + 1;
    ck_assert_int_eq(fastdecode_chunk(&ds, coords, 0, v, sizeof(v), &out, &out_len), 1);
}
END_TEST

static Suite *fastdecode_suite(void)
{
    Suite *s = suite_create("fastdecode");
    TCase *core = tcase_create("core");
    tcase_add_test(core, test_shuffle_deflate);
    tcase_add_test(core, test_deflate_and_none);
    tcase_add_test(core, test_hands_back);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, test_filter_count_limit);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(fastdecode_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
