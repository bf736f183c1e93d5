/*
 * check_parsers.c - regressions found by the libFuzzer harnesses
 * (tests/fuzz) in parsers of client input that have no suite of their own:
 * the selection parser's unsigned arithmetic on extents above INT64_MAX
 * (fuzz_selection.c).  The config fix has its test in check_config.c.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "selection.h"

/* An extent read from a damaged file may exceed INT64_MAX. */
START_TEST(test_selection_huge_extent)
{
    uint64_t shape[1] = {UINT64_MAX - 1};
    struct selection sel;
    char why[128];
    ck_assert_int_eq(selection_parse("-5", 1, shape, &sel, why, sizeof(why)), 0);
    ck_assert_uint_eq(sel.start[0], UINT64_MAX - 6);
    ck_assert_int_eq(selection_parse("::999999999999999999", 1, shape, &sel, why, sizeof(why)), 0);
    ck_assert_uint_eq(sel.count[0], (UINT64_MAX - 2) / 999999999999999999ULL + 1);
    ck_assert_int_eq(selection_parse("1:", 1, shape, &sel, why, sizeof(why)), 0);
    ck_assert_uint_eq(sel.count[0], UINT64_MAX - 2);
}
END_TEST

/* The bounds around a small extent stay exact. */
START_TEST(test_selection_negative_bounds)
{
    uint64_t small[1] = {10};
    struct selection sel;
    char why[128];
    ck_assert_int_eq(selection_parse("-11", 1, small, &sel, why, sizeof(why)), -EINVAL);
    ck_assert_int_eq(selection_parse("-10", 1, small, &sel, why, sizeof(why)), 0);
    ck_assert_uint_eq(sel.start[0], 0);
    ck_assert_int_eq(selection_parse("10", 1, small, &sel, why, sizeof(why)), -EINVAL);
}
END_TEST

static Suite *parsers_suite(void)
{
    Suite *s = suite_create("parsers");
    TCase *core = tcase_create("selection");
    tcase_add_test(core, test_selection_huge_extent);
    tcase_add_test(core, test_selection_negative_bounds);
    suite_add_tcase(s, core);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(parsers_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
