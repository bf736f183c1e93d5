/*
 * check_chunkkey.c - chunk key parsing against a grid: canonical forms,
 * rank and range errors at their edges, linear indices and formatting.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chunkkey.h"

/* A 10x7 dataset in 4x3 chunks: a 3x3 grid with partial edge chunks. */
static struct chunkgrid grid2d(void)
{
    struct chunkgrid g = {.rank = 2};
    g.shape[0] = 10, g.shape[1] = 7;
    g.chunk[0] = 4, g.chunk[1] = 3;
    return g;
}

START_TEST(test_parse_good)
{
    struct chunkgrid g = grid2d();
    uint64_t c[H5CD_MAX_RANK];
    ck_assert_int_eq(chunkkey_parse(&g, "0.0", c, NULL, 0), 0);
    ck_assert_uint_eq(c[0], 0);
    ck_assert_uint_eq(c[1], 0);
    ck_assert_int_eq(chunkkey_parse(&g, "2.1", c, NULL, 0), 0);
    ck_assert_uint_eq(c[0], 2);
    ck_assert_uint_eq(c[1], 1);
    ck_assert_uint_eq(chunkkey_linear(&g, c), 7);
}
END_TEST

START_TEST(test_parse_bad)
{
    struct chunkgrid g = grid2d();
    uint64_t c[H5CD_MAX_RANK];
    char why[64];
    const char *bad[] = {"",     "0",    "0.0.0", "a.0", "0.b",  "-1.0", "+1.0",  "01.0",
                         "0.00", "0..0", ".0",    "0.",  " 0.0", "0.0 ", "0x1.0", "1e2.0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(chunkkey_parse(&g, bad[i], c, why, sizeof(why)) == -EINVAL,
                      "key '%s' should be malformed", bad[i]);
    ck_assert_int_eq(chunkkey_parse(&g, NULL, c, why, sizeof(why)), -EINVAL);
}
END_TEST

START_TEST(test_range_edges)
{
    struct chunkgrid g = grid2d();
    uint64_t c[H5CD_MAX_RANK];
    /* ceil(10/4) = 3 and ceil(7/3) = 3 chunks: index 2 is the last, 3 is out. */
    ck_assert_int_eq(chunkkey_parse(&g, "2.2", c, NULL, 0), 0);
    ck_assert_int_eq(chunkkey_parse(&g, "3.0", c, NULL, 0), -ERANGE);
    ck_assert_int_eq(chunkkey_parse(&g, "0.3", c, NULL, 0), -ERANGE);
    ck_assert_int_eq(chunkkey_parse(&g, "18446744073709551615.0", c, NULL, 0), -EINVAL);
    ck_assert_int_eq(chunkkey_parse(&g, "9999999999999999999.0", c, NULL, 0), -ERANGE);
}
END_TEST

START_TEST(test_scalar_and_empty)
{
    struct chunkgrid scalar = {.rank = 0};
    uint64_t c[H5CD_MAX_RANK];
    ck_assert_int_eq(chunkkey_parse(&scalar, "0", c, NULL, 0), 0);
    ck_assert_int_eq(chunkkey_parse(&scalar, "1", c, NULL, 0), -EINVAL);
    ck_assert_int_eq(chunkkey_parse(&scalar, "0.0", c, NULL, 0), -EINVAL);
    ck_assert_uint_eq(chunkkey_linear(&scalar, c), 0);
    struct chunkgrid empty = {.rank = 1};
    empty.shape[0] = 0;
    empty.chunk[0] = 5;
    ck_assert_uint_eq(chunkgrid_count(&empty, 0), 0);
    ck_assert_int_eq(chunkkey_parse(&empty, "0", c, NULL, 0), -ERANGE);
}
END_TEST

START_TEST(test_key_length_limit)
{
    /* A key of exactly the byte limit reaches the grid checks; one byte more is refused
     * for its length before any parsing. */
    struct chunkgrid g = {.rank = 1};
    g.shape[0] = 1;
    g.chunk[0] = 1;
    char key[H5CD_MAX_KEY_BYTES + 2];
    char why[64];
    uint64_t c[H5CD_MAX_RANK];
    memset(key, '1', H5CD_MAX_KEY_BYTES);
    key[H5CD_MAX_KEY_BYTES] = '\0';
    ck_assert_int_eq(chunkkey_parse(&g, key, c, why, sizeof(why)), -EINVAL);
    ck_assert_ptr_null(strstr(why, "too long"));
    memset(key, '1', H5CD_MAX_KEY_BYTES + 1);
    key[H5CD_MAX_KEY_BYTES + 1] = '\0';
    ck_assert_int_eq(chunkkey_parse(&g, key, c, why, sizeof(why)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "too long"));
}
END_TEST

START_TEST(test_format_roundtrip)
{
    struct chunkgrid g = grid2d();
    uint64_t c[2] = {2, 1}, back[H5CD_MAX_RANK];
    char out[32];
    ck_assert_int_eq(chunkkey_format(&g, c, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "2.1");
    ck_assert_int_eq(chunkkey_parse(&g, out, back, NULL, 0), 0);
    ck_assert_uint_eq(back[0], 2);
    ck_assert_uint_eq(back[1], 1);
    ck_assert_int_eq(chunkkey_format(&g, c, out, 3), -ENOSPC); /* "2.1" needs 4 bytes */
    ck_assert_int_eq(chunkkey_format(&g, c, out, 4), 0);
}
END_TEST

static Suite *chunkkey_suite(void)
{
    Suite *s = suite_create("chunkkey");
    TCase *core = tcase_create("core");
    tcase_add_test(core, test_parse_good);
    tcase_add_test(core, test_parse_bad);
    tcase_add_test(core, test_format_roundtrip);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, test_range_edges);
    tcase_add_test(limits, test_scalar_and_empty);
    tcase_add_test(limits, test_key_length_limit);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(chunkkey_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
