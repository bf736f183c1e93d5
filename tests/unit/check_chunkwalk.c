/*
 * check_chunkwalk.c - the pure parts of lib/chunkwalk.c: which datasets a
 * walk may start from, the reader's view checked against libhdf5's, and
 * locations mapped (never one outside the file).
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chunkwalk.h"

/* A 100x30 float32 dataset in 10x7 chunks, gzip, as a worker described it. */
static struct h5dataset dataset(void)
{
    struct h5dataset ds;
    memset(&ds, 0, sizeof(ds));
    ds.layout = H5LAYOUT_CHUNKED;
    ds.grid.rank = 2;
    ds.grid.shape[0] = 100, ds.grid.shape[1] = 30;
    ds.grid.chunk[0] = 10, ds.grid.chunk[1] = 7;
    ds.elem_size = 4;
    ds.nfilters = 1;
    ds.filters[0] = 1;
    ds.ohdr_address = 800;
    ds.sizeof_offsets = 8;
    ds.sizeof_lengths = 8;
    ds.btree_k = 32;
    return ds;
}

static struct h5chunkindex_info info_of(const struct h5dataset *ds)
{
    struct h5chunkindex_info info;
    memset(&info, 0, sizeof(info));
    info.rank = (unsigned)ds->grid.rank;
    for (int d = 0; d < ds->grid.rank; d++) {
        info.dims[d] = ds->grid.shape[d];
        info.chunk_dims[d] = ds->grid.chunk[d];
    }
    info.nfilters = ds->nfilters;
    return info;
}

START_TEST(test_possible)
{
    struct h5dataset ds = dataset();
    ck_assert(chunkwalk_possible(&ds));
    ds.ohdr_address = UINT64_MAX; /* the worker did not say */
    ck_assert(!chunkwalk_possible(&ds));
    ds = dataset();
    ds.layout = H5LAYOUT_CONTIGUOUS;
    ck_assert(!chunkwalk_possible(&ds));
    ds = dataset();
    ds.grid.rank = 0;
    ck_assert(!chunkwalk_possible(&ds));
    ds = dataset();
    ds.sizeof_offsets = 0;
    ck_assert(!chunkwalk_possible(&ds));
}
END_TEST

START_TEST(test_check_info)
{
    struct h5dataset ds = dataset();
    char reason[H5CHUNKINDEX_REASON_BYTES];
    struct h5chunkindex_info info = info_of(&ds);
    ck_assert_int_eq(chunkwalk_check_info(&info, &ds, reason), 0);
    info.rank = 3;
    ck_assert_int_eq(chunkwalk_check_info(&info, &ds, reason), CHUNKWALK_FALLBACK);
    ck_assert_ptr_nonnull(strstr(reason, "rank"));
    info = info_of(&ds);
    info.dims[1] = 31; /* the extent grew since libhdf5 described it */
    ck_assert_int_eq(chunkwalk_check_info(&info, &ds, reason), CHUNKWALK_FALLBACK);
    ck_assert_ptr_nonnull(strstr(reason, "dimension 1"));
    info = info_of(&ds);
    info.chunk_dims[0] = 5;
    ck_assert_int_eq(chunkwalk_check_info(&info, &ds, reason), CHUNKWALK_FALLBACK);
    info = info_of(&ds);
    info.nfilters = 0;
    ck_assert_int_eq(chunkwalk_check_info(&info, &ds, reason), CHUNKWALK_FALLBACK);
    ck_assert_ptr_nonnull(strstr(reason, "filters"));
}
END_TEST

START_TEST(test_convert)
{
    struct h5chunk_loc out;
    struct h5chunkindex_location in = {
        .allocated = true, .offset = 1000, .size = 24, .filter_mask = 2};
    ck_assert_int_eq(chunkwalk_convert(&in, 1024, &out), 0); /* ends at the last byte */
    ck_assert(out.allocated);
    ck_assert_uint_eq(out.offset, 1000);
    ck_assert_uint_eq(out.size, 24);
    ck_assert_uint_eq(out.filter_mask, 2);
    ck_assert_int_eq(chunkwalk_convert(&in, 1023, &out), CHUNKWALK_DAMAGED);
    in.offset = UINT64_MAX - 8; /* offset + size overflows */
    ck_assert_int_eq(chunkwalk_convert(&in, 1024, &out), CHUNKWALK_DAMAGED);
    in.offset = 2000;
    in.size = UINT64_MAX;
    ck_assert_int_eq(chunkwalk_convert(&in, 4096, &out), CHUNKWALK_DAMAGED);
}
END_TEST

START_TEST(test_convert_unwritten)
{
    struct h5chunk_loc out;
    struct h5chunkindex_location in = {.allocated = false, .offset = UINT64_MAX, .size = 9};
    ck_assert_int_eq(chunkwalk_convert(&in, 1024, &out), 0);
    ck_assert(!out.allocated);
    ck_assert_uint_eq(out.offset, 0);
    ck_assert_uint_eq(out.size, 0);
    /* Allocated but empty: never written, as the worker path reports it. */
    in = (struct h5chunkindex_location){.allocated = true, .offset = 100, .size = 0};
    ck_assert_int_eq(chunkwalk_convert(&in, 1024, &out), 0);
    ck_assert(!out.allocated);
}
END_TEST

START_TEST(test_spans)
{
    unsigned char buf[1];
    /* Unsorted; 0-99 and 150-199 within a gap of 50; 300 is 101 past 199. */
    struct h5ci_range r[] = {
        {300, 10, buf},
        {0, 100, buf},
        {150, 50, buf},
        {160, 10, buf} /* inside 150-199 */,
    };
    struct chunkwalk_ref order[4];
    struct chunkwalk_span spans[4];
    size_t n = chunkwalk_plan_spans(r, 4, 50, 1000, order, spans);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(spans[0].offset, 0);
    ck_assert_uint_eq(spans[0].length, 200);
    ck_assert_uint_eq(spans[0].count, 3);
    ck_assert_uint_eq(order[spans[0].first].index, 1);
    ck_assert_uint_eq(spans[1].offset, 300);
    ck_assert_uint_eq(spans[1].length, 10);
    ck_assert_uint_eq(order[spans[1].first].index, 0);
    /* Every range lies inside its span. */
    for (size_t s = 0; s < n; s++)
        for (size_t k = spans[s].first; k < spans[s].first + spans[s].count; k++) {
            const struct h5ci_range *x = &r[order[k].index];
            ck_assert_uint_ge(x->offset, spans[s].offset);
            ck_assert_uint_le(x->offset + x->length, spans[s].offset + spans[s].length);
        }
    /* A gap one byte wider than allowed splits. */
    ck_assert_uint_eq(chunkwalk_plan_spans(r, 4, 100, 1000, order, spans), 1);
    ck_assert_uint_eq(chunkwalk_plan_spans(r, 4, 99, 1000, order, spans), 2);
}
END_TEST

START_TEST(test_span_max)
{
    unsigned char buf[1];
    struct h5ci_range r[] = {{0, 60, buf}, {60, 60, buf}, {120, 500, buf}, {620, 1, buf}};
    struct chunkwalk_ref order[4];
    struct chunkwalk_span spans[4];
    /* 0-119 fits 128; the 500-byte range is a span of its own; 620 follows it. */
    size_t n = chunkwalk_plan_spans(r, 4, 0, 128, order, spans);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(spans[0].length, 120);
    ck_assert_uint_eq(spans[1].offset, 120);
    ck_assert_uint_eq(spans[1].length, 500);
    ck_assert_uint_eq(spans[2].offset, 620);
    ck_assert_uint_eq(chunkwalk_plan_spans(r, 0, 0, 128, order, spans), 0);
}
END_TEST

static Suite *chunkwalk_suite(void)
{
    Suite *s = suite_create("chunkwalk");
    TCase *core = tcase_create("core");
    tcase_add_test(core, test_possible);
    tcase_add_test(core, test_check_info);
    tcase_add_test(core, test_convert);
    tcase_add_test(core, test_convert_unwritten);
    tcase_add_test(core, test_spans);
    tcase_add_test(core, test_span_max);
    suite_add_tcase(s, core);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(chunkwalk_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
