/*
 * check_coalesce.c - unit tests of lib/coalesce: hand-picked plans, their
 * limits at N and N+1, and a brute-force property test over thousands of
 * small pseudo-random cases (fixed seed, so a failure always reproduces).
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coalesce.h"

#define R(o, l)  ((struct coalesce_range){(o), (l)})
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Byte-level universe of the property test. */
#define SPACE 256

/* Checks every promise of coalesce.h for a plan over inputs in [0, SPACE). */
static void verify(const struct coalesce_range *in, size_t n, uint64_t gap, uint64_t max,
                   const struct coalesce_plan *p)
{
    bool wanted[SPACE] = {false};
    int owner[SPACE]; /* fetch index of a fetched byte, -1 if not fetched */
    for (size_t b = 0; b < SPACE; b++)
        owner[b] = -1;
    for (size_t i = 0; i < n; i++)
        for (uint64_t b = in[i].offset; b < in[i].offset + in[i].length; b++)
            wanted[b] = true;

    for (size_t f = 0; f < p->nfetches; f++) {
        const struct coalesce_range *x = &p->fetches[f];
        ck_assert_uint_gt(x->length, 0);
        ck_assert_uint_le(x->length, max);
        ck_assert_uint_le(x->offset + x->length, SPACE);
        if (f > 0)
            ck_assert_uint_le(p->fetches[f - 1].offset + p->fetches[f - 1].length, x->offset);
        for (uint64_t b = x->offset; b < x->offset + x->length; b++)
            owner[b] = (int)f;
    }
    /* Greedy: two neighbours within the gap could not have been one fetch. */
    for (size_t f = 1; f < p->nfetches; f++) {
        const struct coalesce_range *a = &p->fetches[f - 1], *b = &p->fetches[f];
        if (b->offset - (a->offset + a->length) <= gap)
            ck_assert_uint_gt(b->offset + b->length - a->offset, max);
    }
    /* Every input is covered by exactly its mapped, adjacent fetches. */
    for (size_t i = 0; i < n; i++) {
        uint64_t o = in[i].offset, e = in[i].offset + in[i].length;
        if (in[i].length == 0) {
            ck_assert_uint_eq(p->nfetch[i], 0);
            continue;
        }
        ck_assert_uint_ge(p->nfetch[i], 1);
        size_t first = p->first_fetch[i], last = first + p->nfetch[i] - 1;
        ck_assert_uint_lt(last, p->nfetches);
        ck_assert_uint_le(p->fetches[first].offset, o);
        ck_assert_uint_ge(p->fetches[last].offset + p->fetches[last].length, e);
        for (size_t f = first; f < last; f++)
            ck_assert_uint_eq(p->fetches[f].offset + p->fetches[f].length,
                              p->fetches[f + 1].offset);
        for (size_t f = first; f <= last; f++) {
            ck_assert_uint_lt(p->fetches[f].offset, e);
            ck_assert_uint_gt(p->fetches[f].offset + p->fetches[f].length, o);
        }
        for (uint64_t b = o; b < e; b++)
            ck_assert_int_ge(owner[b], 0);
    }
    /* A fetched byte nobody wanted lies in a bridged gap of its own fetch. */
    for (size_t b = 0; b < SPACE; b++) {
        if (owner[b] < 0 || wanted[b])
            continue;
        long l = (long)b - 1, r = (long)b + 1;
        while (l >= 0 && owner[l] == owner[b] && !wanted[l])
            l--;
        while (r < SPACE && owner[r] == owner[b] && !wanted[r])
            r++;
        ck_assert_msg(l >= 0 && owner[l] == owner[b] && wanted[l], "byte %zu: no input left", b);
        ck_assert_msg(r < SPACE && owner[r] == owner[b] && wanted[r], "byte %zu: no input right",
                      b);
        ck_assert_uint_le((uint64_t)(r - l - 1), gap);
    }
}

static void expect_fetches(const struct coalesce_plan *p, const struct coalesce_range *want,
                           size_t nwant)
{
    ck_assert_uint_eq(p->nfetches, nwant);
    for (size_t i = 0; i < nwant; i++) {
        ck_assert_uint_eq(p->fetches[i].offset, want[i].offset);
        ck_assert_uint_eq(p->fetches[i].length, want[i].length);
    }
}

/* Plans, checks the properties and the expected fetches, frees. */
static void check_plan(const struct coalesce_range *in, size_t n, uint64_t gap, uint64_t max,
                       const struct coalesce_range *want, size_t nwant)
{
    struct coalesce_plan p;
    ck_assert_int_eq(coalesce_plan(in, n, gap, max, &p), 0);
    verify(in, n, gap, max, &p);
    expect_fetches(&p, want, nwant);
    coalesce_plan_free(&p);
}

START_TEST(test_empty)
{
    struct coalesce_plan p;
    ck_assert_int_eq(coalesce_plan(NULL, 0, 10, 100, &p), 0);
    ck_assert_uint_eq(p.nfetches, 0);
    ck_assert_ptr_null(p.fetches);
    coalesce_plan_free(&p);
    coalesce_plan_free(&p); /* freeing twice is a no-op */
    struct coalesce_plan zero = {0};
    coalesce_plan_free(&zero);
    coalesce_plan_free(NULL);
}
END_TEST

START_TEST(test_bad_arguments)
{
    struct coalesce_plan p;
    struct coalesce_range one = R(0, 10);
    ck_assert_int_eq(coalesce_plan(&one, 1, 0, 0, &p), -EINVAL);
    ck_assert_int_eq(coalesce_plan(NULL, 1, 0, 10, &p), -EINVAL);
    ck_assert_int_eq(coalesce_plan(&one, 1, 0, 10, NULL), -EINVAL);
}
END_TEST

START_TEST(test_one_range)
{
    struct coalesce_range in[] = {R(100, 50)};
    struct coalesce_range want[] = {R(100, 50)};
    struct coalesce_plan p;
    check_plan(in, 1, 10, 1000, want, 1);
    ck_assert_int_eq(coalesce_plan(in, 1, 10, 1000, &p), 0);
    ck_assert_uint_eq(p.first_fetch[0], 0);
    ck_assert_uint_eq(p.nfetch[0], 1);
    coalesce_plan_free(&p);
}
END_TEST

START_TEST(test_zero_length)
{
    struct coalesce_range in[] = {R(5, 0), R(10, 4), R(0, 0), R(12, 0)};
    struct coalesce_range want[] = {R(10, 4)};
    check_plan(in, NELEM(in), 0, 100, want, 1);
    struct coalesce_plan p;
    ck_assert_int_eq(coalesce_plan(in, NELEM(in), 0, 100, &p), 0);
    ck_assert_uint_eq(p.nfetch[0], 0);
    ck_assert_uint_eq(p.nfetch[1], 1);
    ck_assert_uint_eq(p.nfetch[2], 0);
    ck_assert_uint_eq(p.nfetch[3], 0);
    coalesce_plan_free(&p);

    struct coalesce_range none[] = {R(5, 0), R(7, 0)};
    check_plan(none, NELEM(none), 100, 100, NULL, 0);
}
END_TEST

START_TEST(test_duplicates_and_overlaps)
{
    struct coalesce_range dup[] = {R(10, 5), R(10, 5), R(10, 5)};
    struct coalesce_range dup_want[] = {R(10, 5)};
    check_plan(dup, NELEM(dup), 0, 100, dup_want, 1);

    struct coalesce_range ov[] = {R(0, 10), R(5, 10), R(2, 3)};
    struct coalesce_range ov_want[] = {R(0, 15)};
    check_plan(ov, NELEM(ov), 0, 100, ov_want, 1);

    /* Overlapping, but merging would exceed max: the second fetch starts
     * where the first ends, so no byte is fetched twice. */
    struct coalesce_range cut[] = {R(0, 8), R(4, 8)};
    struct coalesce_range cut_want[] = {R(0, 8), R(8, 4)};
    check_plan(cut, NELEM(cut), 0, 10, cut_want, 2);
    struct coalesce_plan p;
    ck_assert_int_eq(coalesce_plan(cut, NELEM(cut), 0, 10, &p), 0);
    ck_assert_uint_eq(p.first_fetch[1], 0);
    ck_assert_uint_eq(p.nfetch[1], 2);
    coalesce_plan_free(&p);
}
END_TEST

START_TEST(test_unsorted)
{
    struct coalesce_range in[] = {R(100, 10), R(0, 10), R(50, 10)};
    struct coalesce_range want[] = {R(0, 10), R(50, 10), R(100, 10)};
    check_plan(in, NELEM(in), 0, 1000, want, 3);
    struct coalesce_plan p;
    ck_assert_int_eq(coalesce_plan(in, NELEM(in), 0, 1000, &p), 0);
    ck_assert_uint_eq(p.first_fetch[0], 2);
    ck_assert_uint_eq(p.first_fetch[1], 0);
    ck_assert_uint_eq(p.first_fetch[2], 1);
    coalesce_plan_free(&p);
}
END_TEST

START_TEST(test_split_long_input)
{
    struct coalesce_range in[] = {R(0, 25)};
    struct coalesce_range want[] = {R(0, 10), R(10, 10), R(20, 5)};
    check_plan(in, 1, 0, 10, want, 3);

    /* The last piece stays open and takes in a neighbour. */
    struct coalesce_range in2[] = {R(0, 25), R(27, 2)};
    struct coalesce_range want2[] = {R(0, 10), R(10, 10), R(20, 9)};
    check_plan(in2, 2, 5, 10, want2, 3);
    struct coalesce_plan p;
    ck_assert_int_eq(coalesce_plan(in2, 2, 5, 10, &p), 0);
    ck_assert_uint_eq(p.first_fetch[0], 0);
    ck_assert_uint_eq(p.nfetch[0], 3);
    ck_assert_uint_eq(p.first_fetch[1], 2);
    ck_assert_uint_eq(p.nfetch[1], 1);
    coalesce_plan_free(&p);
}
END_TEST

START_TEST(test_many_ranges)
{
    /* 100000 block-sized ranges in reverse order: every other block. */
    enum { N = 100000 };
    struct coalesce_range *in = malloc(N * sizeof(*in));
    ck_assert_ptr_nonnull(in);
    for (size_t i = 0; i < N; i++)
        in[i] = R((uint64_t)(N - 1 - i) * 2 * 4096, 4096);
    struct coalesce_plan p;
    ck_assert_int_eq(coalesce_plan(in, N, 4096, 8 * 4096, &p), 0);
    /* Each fetch takes 4 blocks and the 3 gaps between them: 7 blocks <= 8. */
    ck_assert_uint_eq(p.nfetches, N / 4);
    ck_assert_uint_eq(p.fetches[0].offset, 0);
    ck_assert_uint_eq(p.fetches[0].length, 7 * 4096);
    for (size_t i = 0; i < N; i++) {
        ck_assert_uint_eq(p.nfetch[i], 1);
        const struct coalesce_range *f = &p.fetches[p.first_fetch[i]];
        ck_assert_uint_le(f->offset, in[i].offset);
        ck_assert_uint_ge(f->offset + f->length, in[i].offset + in[i].length);
    }
    coalesce_plan_free(&p);
    free(in);
}
END_TEST

/* A small deterministic generator, so the cases do not depend on libc. */
static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

static unsigned rnd(unsigned bound)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % bound);
}

START_TEST(test_property_random)
{
    enum { CASES = 5000, MAXN = 12 };
    for (int c = 0; c < CASES; c++) {
        struct coalesce_range in[MAXN];
        size_t n = rnd(MAXN + 1);
        for (size_t i = 0; i < n; i++) {
            uint64_t len = rnd(4) == 0 ? 0 : rnd(40);
            in[i] = R(rnd(SPACE - 40), len);
        }
        if (n > 1 && rnd(4) == 0)
            in[n - 1] = in[0]; /* duplicates */
        uint64_t gap = rnd(4) == 0 ? 0 : rnd(20);
        uint64_t max = 1 + rnd(rnd(2) == 0 ? 8 : 64);
        struct coalesce_plan p;
        ck_assert_int_eq(coalesce_plan(in, n, gap, max, &p), 0);
        verify(in, n, gap, max, &p);
        coalesce_plan_free(&p);
    }
}
END_TEST

/* ---- limits ---- */

START_TEST(test_gap_limit)
{
    struct coalesce_range in[] = {R(0, 10), R(20, 10)};
    struct coalesce_range merged[] = {R(0, 30)};
    struct coalesce_range apart[] = {R(0, 10), R(20, 10)};
    check_plan(in, 2, 10, 100, merged, 1); /* gap == 10: merged */
    check_plan(in, 2, 9, 100, apart, 2);   /* gap + 1: not merged */

    struct coalesce_range touching[] = {R(0, 10), R(10, 10)};
    struct coalesce_range touching_want[] = {R(0, 20)};
    check_plan(touching, 2, 0, 100, touching_want, 1);
}
END_TEST

START_TEST(test_max_fetch_limit)
{
    struct coalesce_range in[] = {R(0, 10), R(20, 10)};
    struct coalesce_range merged[] = {R(0, 30)};
    struct coalesce_range apart[] = {R(0, 10), R(20, 10)};
    check_plan(in, 2, 10, 30, merged, 1); /* exactly max_fetch */
    check_plan(in, 2, 10, 29, apart, 2);  /* one byte more than max_fetch */

    struct coalesce_range exact[] = {R(0, 10)};
    struct coalesce_range exact_want[] = {R(0, 10)};
    check_plan(exact, 1, 0, 10, exact_want, 1);
    struct coalesce_range over[] = {R(0, 11)};
    struct coalesce_range over_want[] = {R(0, 10), R(10, 1)};
    check_plan(over, 1, 0, 10, over_want, 2);
}
END_TEST

START_TEST(test_overflow)
{
    struct coalesce_plan p;
    struct coalesce_range bad[] = {R(0, 1), R(UINT64_MAX, 1)};
    ck_assert_int_eq(coalesce_plan(bad, 2, 0, 100, &p), -EINVAL);
    struct coalesce_range bad2[] = {R(1, UINT64_MAX)};
    ck_assert_int_eq(coalesce_plan(bad2, 1, 0, 100, &p), -EINVAL);

    /* Ending exactly at UINT64_MAX is fine, and so is an empty range there. */
    struct coalesce_range edge[] = {R(UINT64_MAX - 1, 1), R(UINT64_MAX, 0)};
    ck_assert_int_eq(coalesce_plan(edge, 2, 0, 100, &p), 0);
    ck_assert_uint_eq(p.nfetches, 1);
    ck_assert_uint_eq(p.fetches[0].offset, UINT64_MAX - 1);
    ck_assert_uint_eq(p.nfetch[1], 0);
    coalesce_plan_free(&p);

    /* Gap arithmetic near the top must not wrap. */
    struct coalesce_range far[] = {R(0, 1), R(UINT64_MAX - 1, 1)};
    ck_assert_int_eq(coalesce_plan(far, 2, UINT64_MAX, UINT64_MAX, &p), 0);
    ck_assert_uint_eq(p.nfetches, 1);
    ck_assert_uint_eq(p.fetches[0].length, UINT64_MAX);
    coalesce_plan_free(&p);
    ck_assert_int_eq(coalesce_plan(far, 2, UINT64_MAX - 3, UINT64_MAX, &p), 0);
    ck_assert_uint_eq(p.nfetches, 2);
    coalesce_plan_free(&p);

    /* A huge range splits into a countable number of pieces. */
    struct coalesce_range huge[] = {R(0, UINT64_MAX)};
    ck_assert_int_eq(coalesce_plan(huge, 1, 0, 1ULL << 62, &p), 0);
    ck_assert_uint_eq(p.nfetches, 4);
    ck_assert_uint_eq(p.fetches[3].length, (1ULL << 62) - 1);
    ck_assert_uint_eq(p.nfetch[0], 4);
    coalesce_plan_free(&p);
}
END_TEST

static Suite *coalesce_suite(void)
{
    Suite *s = suite_create("coalesce");
    TCase *core = tcase_create("core");
    tcase_add_test(core, test_empty);
    tcase_add_test(core, test_bad_arguments);
    tcase_add_test(core, test_one_range);
    tcase_add_test(core, test_zero_length);
    tcase_add_test(core, test_duplicates_and_overlaps);
    tcase_add_test(core, test_unsorted);
    tcase_add_test(core, test_split_long_input);
    tcase_add_test(core, test_many_ranges);
    tcase_add_test(core, test_property_random);
    tcase_set_timeout(core, 60);
    suite_add_tcase(s, core);

    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, test_gap_limit);
    tcase_add_test(limits, test_max_fetch_limit);
    tcase_add_test(limits, test_overflow);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(coalesce_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
