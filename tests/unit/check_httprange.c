/*
 * check_httprange.c - the client Range header parser: every accepted form,
 * clamping at the end of the resource, and the malformed and
 * unsatisfiable cases at their edges.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "httprange.h"

static void expect_range(const char *header, uint64_t size, uint64_t start, uint64_t length)
{
    uint64_t s = 99, l = 99;
    ck_assert_int_eq(httprange_parse(header, size, &s, &l), 0);
    ck_assert_uint_eq(s, start);
    ck_assert_uint_eq(l, length);
}

static void expect_rc(const char *header, uint64_t size, int rc)
{
    uint64_t s, l;
    ck_assert_int_eq(httprange_parse(header, size, &s, &l), rc);
}

START_TEST(test_forms)
{
    expect_range("bytes=0-0", 100, 0, 1);
    expect_range("bytes=10-19", 100, 10, 10);
    expect_range("bytes=90-", 100, 90, 10);
    expect_range("bytes=-10", 100, 90, 10);
    expect_range(" bytes= 5 - 6 ", 100, 5, 2);
    uint64_t s = 7, l = 7;
    ck_assert_int_eq(httprange_parse(NULL, 100, &s, &l), 1);
    ck_assert_uint_eq(s, 0);
    ck_assert_uint_eq(l, 100);
}
END_TEST

START_TEST(test_clamping)
{
    expect_range("bytes=0-99", 100, 0, 100);  /* last byte exactly */
    expect_range("bytes=0-100", 100, 0, 100); /* one past: clamped */
    expect_range("bytes=50-999999", 100, 50, 50);
    expect_range("bytes=-100", 100, 0, 100); /* suffix of exactly the size */
    expect_range("bytes=-101", 100, 0, 100); /* one more: the whole file */
}
END_TEST

START_TEST(test_unsatisfiable)
{
    expect_rc("bytes=99-", 100, 0);
    expect_rc("bytes=100-", 100, -ERANGE);
    expect_rc("bytes=100-200", 100, -ERANGE);
    expect_rc("bytes=-0", 100, -ERANGE);
    expect_rc("bytes=0-", 0, -ERANGE);
    expect_rc("bytes=-5", 0, -ERANGE);
}
END_TEST

START_TEST(test_malformed)
{
    expect_rc("", 100, -EINVAL);
    expect_rc("bytes=", 100, -EINVAL);
    expect_rc("bytes=-", 100, -EINVAL);
    expect_rc("bytes=5-2", 100, -EINVAL);
    expect_rc("bytes=0-1,5-6", 100, -EINVAL);
    expect_rc("items=0-1", 100, -EINVAL);
    expect_rc("bytes=+1-2", 100, -EINVAL);
    expect_rc("bytes=1-2x", 100, -EINVAL);
    expect_rc("bytes=0x10-20", 100, -EINVAL);
    expect_rc("bytes 0-1", 100, -EINVAL);
}
END_TEST

START_TEST(test_number_limits)
{
    /* 19 digits parse; 20 digits (which could overflow) are refused. */
    expect_rc("bytes=1000000000000000000-", UINT64_MAX, 0);
    expect_rc("bytes=10000000000000000000-", UINT64_MAX, -EINVAL);
    expect_range("bytes=-9999999999999999999", 100, 0, 100);
    expect_rc("bytes=-99999999999999999999", 100, -EINVAL);
}
END_TEST

static Suite *httprange_suite(void)
{
    Suite *s = suite_create("httprange");
    TCase *core = tcase_create("core");
    tcase_add_test(core, test_forms);
    tcase_add_test(core, test_malformed);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, test_clamping);
    tcase_add_test(limits, test_unsatisfiable);
    tcase_add_test(limits, test_number_limits);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(httprange_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
