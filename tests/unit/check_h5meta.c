/*
 * check_h5meta.c - unit tests of lib/h5meta: every object of a file written
 * by h5py (tests/data/make_meta_fixture.py) is described and compared field
 * by field with what h5py says about it; literal checks of dtypes, chunks,
 * filters, fill values, attributes and links; limits at N and N+1 (path
 * length, soft-link hops, attribute size, nodes, budget and count, group
 * members); types h5py cannot write are made here with libhdf5.  The
 * fixture lives in a temporary directory that main() removes.
 */
#define _XOPEN_SOURCE 700
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "h5meta.h"

#define FIXTURE_TIMEOUT_S 120
#define SOFT_HOPS         16            /* H5META_MAX_SOFT_LINKS */
#define MAX_ATTR_SIDE     4096          /* sqrt(16 MiB): the fixture's string attributes */
#define MAX_ATTR_NODES    (1024 * 1024) /* H5META_MAX_ATTR_NODES */
#define MAX_ATTRS         4096          /* H5META_MAX_ATTRS */
#define MAX_MEMBERS       (256 * 1024)  /* H5META_MAX_MEMBERS */
#define MAX_MEMBER_BYTES  (16 * 1024 * 1024)

extern char **environ;

static char fixture_dir[PATH_MAX];
static json_t *expected; /* {"objects": {path: description}} from h5py */

static void fixture_path(char *out, size_t outlen, const char *name)
{
    int n = snprintf(out, outlen, "%s/%s", fixture_dir, name);
    ck_assert(n > 0 && (size_t)n < outlen);
}

static hid_t open_fixture(const char *name)
{
    char path[PATH_MAX];
    fixture_path(path, sizeof(path), name);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_msg(f >= 0, "cannot open %s", path);
    return f;
}

static json_t *describe_ok(hid_t file, const char *path)
{
    struct h5cd_error err = {0};
    json_t *d = h5meta_describe(file, path, &err);
    ck_assert_msg(d != NULL, "describe(%s): %s %s", path, h5cd_errcode_name(err.code), err.message);
    return d;
}

static void describe_fails(hid_t file, const char *path, enum h5cd_errcode code)
{
    struct h5cd_error err = {0};
    json_t *d = h5meta_describe(file, path, &err);
    ck_assert_msg(d == NULL, "describe(%.60s) should fail", path);
    ck_assert_msg(err.code == code, "describe(%.60s): %s, want %s (%s)", path,
                  h5cd_errcode_name(err.code), h5cd_errcode_name(code), err.message);
    ck_assert_uint_gt(strlen(err.message), 0);
}

/* Asserts that the JSON value of key in obj is exactly the JSON text want. */
static void assert_field(const json_t *obj, const char *key, const char *want)
{
    json_error_t jerr;
    json_t *w = json_loads(want, JSON_DECODE_ANY, &jerr);
    ck_assert_msg(w != NULL, "bad expectation %s", want);
    json_t *got = json_object_get(obj, key);
    char *g = got != NULL ? json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    ck_assert_msg(got != NULL && json_equal(got, w), "%s: got %s, want %s", key,
                  g != NULL ? g : "(missing)", want);
    free(g);
    json_decref(w);
}

/* describe(path)[key] == want. */
static void check_field(hid_t file, const char *path, const char *key, const char *want)
{
    json_t *d = describe_ok(file, path);
    assert_field(d, key, want);
    json_decref(d);
}

/* Filters as h5py sees them; h5py shows only the first 16 parameters. */
static bool filters_match(const json_t *got, const json_t *want)
{
    if (json_array_size(got) != json_array_size(want))
        return false;
    for (size_t i = 0; i < json_array_size(want); i++) {
        json_t *g = json_array_get(got, i), *w = json_array_get(want, i);
        if (!json_equal(json_object_get(g, "id"), json_object_get(w, "id")) ||
            !json_equal(json_object_get(g, "name"), json_object_get(w, "name")))
            return false;
        json_t *gp = json_object_get(g, "params"), *wp = json_object_get(w, "params");
        if (!json_is_true(json_object_get(w, "params_truncated_by_h5py"))) {
            if (!json_equal(gp, wp))
                return false;
            continue;
        }
        if (json_array_size(gp) < json_array_size(wp))
            return false;
        for (size_t k = 0; k < json_array_size(wp); k++)
            if (!json_equal(json_array_get(gp, k), json_array_get(wp, k)))
                return false;
    }
    return true;
}

/* ---- core ---- */

START_TEST(test_matches_h5py)
{
    hid_t f = open_fixture("meta.h5");
    json_t *objects = json_object_get(expected, "objects");
    ck_assert_uint_gt(json_object_size(objects), 60);
    const char *path;
    json_t *want;
    json_object_foreach(objects, path, want)
    {
        json_t *got = describe_ok(f, path);
        const char *key;
        json_t *value;
        json_object_foreach(want, key, value)
        {
            json_t *g = json_object_get(got, key);
            char *ws = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
            char *gs = g != NULL ? json_dumps(g, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
            bool same =
                strcmp(key, "filters") == 0 ? filters_match(g, value) : json_equal(g, value);
            ck_assert_msg(g != NULL && same, "%s %s: got %.400s want %.400s", path, key,
                          gs != NULL ? gs : "(missing)", ws);
            free(ws);
            free(gs);
        }
        ck_assert_msg(json_object_size(got) == json_object_size(want), "%s: extra keys", path);
        json_decref(got);
    }
    H5Fclose(f);
}
END_TEST

START_TEST(test_dtypes)
{
    static const struct {
        const char *path, *dtype;
    } cases[] = {
        {"/ints/i1", "\"|i1\""},
        {"/ints/u1", "\"|u1\""},
        {"/ints/i2_le", "\"<i2\""},
        {"/ints/i2_be", "\">i2\""},
        {"/ints/u4_be", "\">u4\""},
        {"/ints/i8_le", "\"<i8\""},
        {"/ints/u8_be", "\">u8\""},
        {"/floats/f2_le", "\"<f2\""},
        {"/floats/f2_be", "\">f2\""},
        {"/floats/f4_le", "\"<f4\""},
        {"/floats/f8_be", "\">f8\""},
        {"/strings/s16", "\"|S16\""},
        {"/misc/bool", "\"|b1\""},
        {"/misc/enum", "\"<i2\""},
        {"/misc/opaque", "\"|V8\""},
        {"/strings/vlen", "null"},
        {"/misc/compound", "[[\"a\",\"<i4\"],[\"b\",\"<f8\"]]"},
        {"/misc/refs", "null"},
        {"/misc/vlen_ints", "null"},
    };
    hid_t f = open_fixture("meta.h5");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_field(f, cases[i].path, "dtype", cases[i].dtype);
    check_field(f, "/strings/vlen", "h5type", "\"vlen string\"");
    check_field(f, "/misc/refs", "h5type", "\"reference\"");
    check_field(f, "/misc/vlen_ints", "h5type", "\"vlen\"");
    json_t *d = describe_ok(f, "/ints/i4_le");
    ck_assert_ptr_null(json_object_get(d, "h5type"));
    json_decref(d);
    H5Fclose(f);
}
END_TEST

START_TEST(test_dtype_api)
{
    char out[32];
    ck_assert_int_eq(h5meta_dtype(H5T_STD_I32BE, out, sizeof(out)), 0);
    ck_assert_str_eq(out, ">i4");
    ck_assert_int_eq(h5meta_dtype(H5T_STD_U8LE, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "|u1");
    ck_assert_int_eq(h5meta_dtype(H5T_STD_U64LE, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "<u8");
    ck_assert_int_eq(h5meta_dtype(H5T_IEEE_F64LE, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "<f8");
    ck_assert_int_eq(h5meta_dtype(H5T_IEEE_F32BE, out, sizeof(out)), 0);
    ck_assert_str_eq(out, ">f4");
    /* The buffer holds the string and its NUL at N, not at N - 1. */
    ck_assert_int_eq(h5meta_dtype(H5T_STD_I32LE, out, 4), 0);
    ck_assert_str_eq(out, "<i4");
    ck_assert_int_eq(h5meta_dtype(H5T_STD_I32LE, out, 3), -1);
    ck_assert_int_eq(h5meta_dtype(H5T_STD_I32LE, NULL, 8), -1);
    /* Bitfields read as unsigned integers (h5py; PyTables' bool columns). */
    ck_assert_int_eq(h5meta_dtype(H5T_STD_B8LE, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "|u1");
    ck_assert_int_eq(h5meta_dtype(H5T_STD_B16BE, out, sizeof(out)), 0);
    ck_assert_str_eq(out, ">u2");
    hid_t partial = H5Tcopy(H5T_STD_B16LE);
    H5Tset_precision(partial, 12);
    ck_assert_int_eq(h5meta_dtype(partial, out, sizeof(out)), -1);
    H5Tclose(partial);
    /* An array type has no simple spelling (it is [base, dims] in /v1/meta). */
    hsize_t adims[1] = {3};
    hid_t arr = H5Tarray_create2(H5T_IEEE_F32LE, 1, adims);
    ck_assert_int_eq(h5meta_dtype(arr, out, sizeof(out)), -1);
    H5Tclose(arr);
    ck_assert_int_eq(h5meta_dtype(H5T_STD_REF_OBJ, out, sizeof(out)), -1);
    ck_assert_int_eq(h5meta_dtype(H5I_INVALID_HID, out, sizeof(out)), -1);

    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 7);
    H5Tset_cset(t, H5T_CSET_UTF8);
    ck_assert_int_eq(h5meta_dtype(t, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "|S7");
    H5Tset_size(t, H5T_VARIABLE);
    ck_assert_int_eq(h5meta_dtype(t, out, sizeof(out)), -1);
    H5Tclose(t);

    /* A 12-bit integer in 2 bytes is read as "<i2" (decoding widens it, as h5py
     * does); a float with a foreign bias has no NumPy spelling. */
    t = H5Tcopy(H5T_STD_I16LE);
    H5Tset_precision(t, 12);
    ck_assert_int_eq(h5meta_dtype(t, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "<i2");
    H5Tclose(t);
    t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_ebias(t, 100);
    ck_assert_int_eq(h5meta_dtype(t, out, sizeof(out)), -1);
    H5Tclose(t);

    /* Bool is exactly int8 {FALSE=0, TRUE=1}; a uint8 enum of the same names is not. */
    int8_t v0 = 0, v1 = 1;
    t = H5Tenum_create(H5T_NATIVE_INT8);
    H5Tenum_insert(t, "FALSE", &v0);
    H5Tenum_insert(t, "TRUE", &v1);
    ck_assert_int_eq(h5meta_dtype(t, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "|b1");
    H5Tclose(t);
    uint8_t u0 = 0, u1 = 1;
    t = H5Tenum_create(H5T_STD_U8LE);
    H5Tenum_insert(t, "FALSE", &u0);
    H5Tenum_insert(t, "TRUE", &u1);
    ck_assert_int_eq(h5meta_dtype(t, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "|u1");
    H5Tclose(t);
}
END_TEST

START_TEST(test_layouts_and_chunks)
{
    hid_t f = open_fixture("meta.h5");
    check_field(f, "/layout/contiguous", "layout", "\"contiguous\"");
    check_field(f, "/layout/contiguous", "chunks", "[1000]");
    check_field(f, "/layout/compact", "layout", "\"compact\"");
    check_field(f, "/layout/compact", "chunks", "[3, 4]");
    check_field(f, "/layout/scalar", "shape", "[]");
    check_field(f, "/layout/scalar", "chunks", "[]");
    check_field(f, "/layout/scalar", "fill_value", "0.0");
    check_field(f, "/layout/rows_3d", "chunks", "[2097, 100, 10]");
    check_field(f, "/layout/few_rows", "chunks", "[3, 10]");
    check_field(f, "/layout/zero_rows", "chunks", "[1, 10]");
    check_field(f, "/layout/zero_cols", "chunks", "[1, 0]");
    check_field(f, "/layout/empty", "shape", "null");
    check_field(f, "/layout/empty", "chunks", "null");
    check_field(f, "/layout/virtual", "layout", "\"virtual\"");
    check_field(f, "/layout/virtual", "chunks", "null");
    check_field(f, "/chunked/gzip", "layout", "\"chunked\"");
    check_field(f, "/chunked/gzip", "chunks", "[10, 5]");
    check_field(f, "/chunked/gzip", "shape", "[20, 10]");
    H5Fclose(f);
}
END_TEST

START_TEST(test_filters)
{
    hid_t f = open_fixture("meta.h5");
    check_field(f, "/chunked/gzip", "filters",
                "[{\"id\": 1, \"name\": \"deflate\", \"params\": [4]}]");
    check_field(f, "/chunked/shuffle_gzip", "filters",
                "[{\"id\": 2, \"name\": \"shuffle\", \"params\": [4]},"
                " {\"id\": 1, \"name\": \"deflate\", \"params\": [4]}]");
    check_field(f, "/chunked/fletcher32", "filters",
                "[{\"id\": 3, \"name\": \"fletcher32\", \"params\": []}]");
    json_t *d = describe_ok(f, "/chunked/lzf");
    json_t *flt = json_array_get(json_object_get(d, "filters"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(flt, "id")), 32000);
    ck_assert_str_eq(json_string_value(json_object_get(flt, "name")), "lzf");
    json_decref(d);
    d = describe_ok(f, "/chunked/scaleoffset");
    flt = json_array_get(json_object_get(d, "filters"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(flt, "id")), 6);
    ck_assert_str_eq(json_string_value(json_object_get(flt, "name")), "scaleoffset");
    /* libhdf5's scale-offset keeps 20 parameters (type, factor, count, class, size,
     * sign, order, fill defined, then the fill value bytes). */
    json_t *p = json_object_get(flt, "params");
    ck_assert_uint_eq(json_array_size(p), 20);
    static const int head[] = {2, 0, 200, 0, 4, 1, 0, 1};
    for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
        ck_assert_int_eq(json_integer_value(json_array_get(p, i)), head[i]);
    ck_assert_int_eq(json_integer_value(json_array_get(p, 19)), 0);
    json_decref(d);
    check_field(f, "/layout/contiguous", "filters", "[]");
    H5Fclose(f);
}
END_TEST

START_TEST(test_fill_values)
{
    hid_t f = open_fixture("meta.h5");
    check_field(f, "/fill/user", "fill_value", "-7");
    check_field(f, "/fill/default", "fill_value", "0");
    check_field(f, "/fill/nan", "fill_value", "\"NaN\"");
    check_field(f, "/fill/neg_inf", "fill_value", "\"-Infinity\"");
    check_field(f, "/fill/half", "fill_value", "0.5");
    check_field(f, "/fill/u8max", "fill_value", "\"18446744073709551615\"");
    check_field(f, "/fill/i8min", "fill_value", "-9223372036854775808");
    check_field(f, "/fill/string", "fill_value", "\"ab\"");
    check_field(f, "/fill/bool", "fill_value", "true");
    check_field(f, "/misc/compound", "fill_value", "null");
    check_field(f, "/strings/vlen", "fill_value", "null");
    H5Fclose(f);
}
END_TEST

START_TEST(test_attrs)
{
    hid_t f = open_fixture("meta.h5");
    json_t *d = describe_ok(f, "/deep/a/b/c/d/e/dset");
    json_t *a = json_object_get(d, "attrs");
    assert_field(a, "int", "-42");
    assert_field(a, "int_be", "7");
    assert_field(a, "uint64_max", "\"18446744073709551615\"");
    assert_field(a, "float16", "-2.5");
    assert_field(a, "nan", "\"NaN\"");
    assert_field(a, "inf", "\"-Infinity\"");
    assert_field(a, "string", "\"fixed text\"");
    assert_field(a, "vlen_string", "\"vlen \\u00e9t\\u00e9\"");
    assert_field(a, "strings", "[\"a\", \"bc\", \"\"]");
    assert_field(a, "vlen_strings", "[\"x\", \"yz\"]");
    assert_field(a, "array2d", "[[0.0, 0.25, 0.5], [0.75, 1.0, 1.25]]");
    assert_field(a, "empty_array", "[]");
    assert_field(a, "bool", "true");
    assert_field(a, "bools", "[true, false, true]");
    assert_field(a, "ref", "\"/deep/a/b/c/d/e/dset\"");
    assert_field(a, "refs", "[\"/ints\", \"/floats/f8_be\"]");
    assert_field(a, "empty", "null");
    assert_field(a, "compound", "null");
    assert_field(a, "halfs",
                 "[\"Infinity\", \"-Infinity\", \"NaN\", 6.103515625e-05, 1.78813934326171875e-07,"
                 " 65504.0, -0.0]");
    assert_field(a, "enum", "2");
    assert_field(a, "opaque", "null");
    json_decref(d);

    hid_t root = H5Oopen(f, "/", H5P_DEFAULT);
    json_t *attrs = h5meta_attrs(root);
    ck_assert_ptr_nonnull(attrs);
    json_t *want =
        json_object_get(json_object_get(json_object_get(expected, "objects"), "/"), "attrs");
    ck_assert(json_equal(attrs, want));
    json_decref(attrs);
    H5Oclose(root);
    ck_assert_ptr_null(h5meta_attrs(H5I_INVALID_HID));
    H5Fclose(f);
}
END_TEST

START_TEST(test_groups)
{
    hid_t f = open_fixture("meta.h5");
    check_field(f, "/", "kind", "\"group\"");
    check_field(f, "/", "members",
                "[\"chain\", \"chunked\", \"deep\", \"fill\", \"floats\", \"ints\", \"layout\","
                " \"links\", \"long\", \"misc\", \"strings\"]");
    check_field(f, "/links", "members",
                "[\"dangling\", \"ext\", \"loop1\", \"loop2\", \"soft\", \"soft_group\","
                " \"soft_to_ext\"]");
    check_field(f, "/deep/a", "members", "[\"b\", \"rel\"]");
    json_t *d = describe_ok(f, "/links");
    ck_assert_ptr_null(json_object_get(d, "dtype"));
    ck_assert_ptr_nonnull(json_object_get(d, "attrs"));
    json_decref(d);
    H5Fclose(f);
}
END_TEST

START_TEST(test_links)
{
    hid_t f = open_fixture("meta.h5");
    json_t *soft = describe_ok(f, "/links/soft");
    json_t *target = describe_ok(f, "/deep/a/b/c/d/e/dset");
    assert_field(soft, "path", "\"/links/soft\"");
    json_object_del(soft, "path");
    json_object_del(target, "path");
    ck_assert(json_equal(soft, target));
    json_decref(soft);
    json_decref(target);

    check_field(f, "/links/soft_group", "members", "[\"b\", \"rel\"]");
    check_field(f, "/links/soft_group/b/c/d", "members", "[\"e\"]");
    check_field(f, "/deep/a/rel", "members", "[\"d\"]"); /* relative: b/c */
    check_field(f, "/deep/a/rel/d/e/dset", "dtype", "\"<i8\"");

    struct h5cd_error err = {0};
    ck_assert_ptr_null(h5meta_describe(f, "/links/ext", &err));
    ck_assert_int_eq(err.code, H5CD_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.message, "ext.h5"));
    ck_assert_ptr_nonnull(strstr(err.message, "/target"));
    describe_fails(f, "/links/ext/anything", H5CD_E_UNSUPPORTED);
    describe_fails(f, "/links/soft_to_ext", H5CD_E_UNSUPPORTED);
    describe_fails(f, "/links/dangling", H5CD_E_NOT_FOUND);
    describe_fails(f, "/links/loop1", H5CD_E_NOT_FOUND);
    describe_fails(f, "/misc/named_type", H5CD_E_UNSUPPORTED);
    H5Fclose(f);
}
END_TEST

START_TEST(test_paths)
{
    hid_t f = open_fixture("meta.h5");
    static const char *roots[] = {"", "/", "//", ".", "/./"};
    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        json_t *d = describe_ok(f, roots[i]);
        assert_field(d, "path", "\"/\"");
        assert_field(d, "kind", "\"group\"");
        json_decref(d);
    }
    check_field(f, "deep/a/", "path", "\"/deep/a\"");
    check_field(f, "deep//a", "path", "\"/deep/a\"");
    check_field(f, "ints/i1", "path", "\"/ints/i1\"");
    check_field(f, "/ints/i1/", "kind", "\"dataset\"");
    describe_fails(f, "/nope", H5CD_E_NOT_FOUND);
    describe_fails(f, "/nope/x/y", H5CD_E_NOT_FOUND);
    describe_fails(f, "/deep/a/nope/c", H5CD_E_NOT_FOUND);
    describe_fails(f, "/ints/i1/x", H5CD_E_NOT_FOUND);
    describe_fails(f, NULL, H5CD_E_BAD_REQUEST);
    describe_fails(f, "/\xff\xfe", H5CD_E_BAD_REQUEST);
    describe_fails(H5I_INVALID_HID, "/", H5CD_E_INTERNAL);
    H5Fclose(f);
}
END_TEST

/* Every id h5meta opens is closed again, on success and on every failure. */
START_TEST(test_no_id_leaks)
{
    hid_t f = open_fixture("meta.h5");
    json_t *objects = json_object_get(expected, "objects");
    const char *path;
    json_t *want;
    json_object_foreach(objects, path, want) json_decref(describe_ok(f, path));
    static const char *bad[] = {"/links/ext",   "/links/soft_to_ext", "/links/dangling",
                                "/links/loop1", "/misc/named_type",   "/nope/x",
                                "/ints/i1/x",   "/chain/s17",         "/links/soft"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct h5cd_error err;
        json_decref(h5meta_describe(f, bad[i], &err));
    }
    /* Datasets, groups, attributes and named types: only the file is left.
     * (libhdf5 1.10 cannot count transient types, spaces and lists.) */
    ck_assert_int_eq(H5Fget_obj_count(f, H5F_OBJ_ALL), 1);
    ck_assert_int_eq(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 1);
    H5Fclose(f);
}
END_TEST

/* libhdf5 prints its error stack per thread unless told not to. */
START_TEST(test_silent)
{
    char path[PATH_MAX];
    fixture_path(path, sizeof(path), "stderr.txt");
    hid_t f = open_fixture("meta.h5");
    H5Eset_auto2(H5E_DEFAULT, (H5E_auto2_t)H5Eprint2, stderr);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
    struct h5cd_error err;
    json_decref(h5meta_describe(f, "/links/ext", &err));
    json_decref(h5meta_describe(f, "/links/dangling", &err));
    json_decref(h5meta_describe(f, "/ints/i1/x", &err));
    json_decref(h5meta_describe(H5I_INVALID_HID, "/", &err));
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 0);
    H5Fclose(f);
}
END_TEST

/* Types and cases h5py cannot write: made here with libhdf5. */
static void make_exotic(const char *path)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    hsize_t dims[1] = {4}, adims[1] = {3};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t scalar = H5Screate(H5S_SCALAR);

    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_fill_value(dcpl, H5T_NATIVE_INT, NULL); /* undefined */
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    hid_t d = H5Dcreate2(f, "no_fill", H5T_STD_I32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    H5Dclose(d);
    H5Pclose(dcpl);

    hid_t arr = H5Tarray_create2(H5T_STD_I32LE, 1, adims);
    d = H5Dcreate2(f, "array", arr, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    hid_t a = H5Acreate2(d, "array_attr", arr, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Aclose(a);
    H5Dclose(d);
    H5Tclose(arr);

    d = H5Dcreate2(f, "bitfield", H5T_STD_B16LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    H5Dclose(d);

    hid_t odd = H5Tcopy(H5T_STD_I16LE);
    H5Tset_precision(odd, 12);
    d = H5Dcreate2(f, "int12", odd, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    H5Dclose(d);
    H5Tclose(odd);

    d = H5Dcreate2(f, "regref", H5T_STD_REF_DSETREG, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    hdset_reg_ref_t rref;
    hsize_t start = 0, count = 2;
    hid_t sel = H5Scopy(space);
    H5Sselect_hyperslab(sel, H5S_SELECT_SET, &start, NULL, &count, NULL);
    ck_assert_int_ge(H5Rcreate(&rref, f, "/no_fill", H5R_DATASET_REGION, sel), 0);
    H5Sclose(sel);
    a = H5Acreate2(d, "region", H5T_STD_REF_DSETREG, scalar, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(H5Awrite(a, H5T_STD_REF_DSETREG, &rref), 0);
    H5Aclose(a);
    /* Attribute values and names that are not UTF-8. */
    hid_t s4 = H5Tcopy(H5T_C_S1);
    H5Tset_size(s4, 4);
    a = H5Acreate2(d, "latin1", s4, scalar, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(H5Awrite(a, s4, "\xe9t\xe9\0"), 0);
    H5Aclose(a);
    a = H5Acreate2(d, "bad\xffname", s4, scalar, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(H5Awrite(a, s4, "ok\0\0"), 0);
    H5Aclose(a);
    H5Tclose(s4);
    int32_t one = 1;
    hid_t null_space = H5Screate(H5S_NULL);
    a = H5Acreate2(d, "null_space", H5T_STD_I32LE, null_space, H5P_DEFAULT, H5P_DEFAULT);
    H5Aclose(a);
    H5Sclose(null_space);
    a = H5Acreate2(d, "scalar", H5T_STD_I32BE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT32, &one);
    H5Aclose(a);
    H5Dclose(d);

    hid_t g = H5Gcreate2(f, "names", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Lcreate_soft("/no_fill", g, "good", H5P_DEFAULT, H5P_DEFAULT);
    H5Lcreate_soft("/no_fill", g, "\xc3(", H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    H5Sclose(space);
    H5Sclose(scalar);
    H5Fclose(f);
}

START_TEST(test_exotic)
{
    char path[PATH_MAX];
    fixture_path(path, sizeof(path), "exotic.h5");
    make_exotic(path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    check_field(f, "/no_fill", "fill_value", "null");
    check_field(f, "/no_fill", "dtype", "\"<i4\"");
    check_field(f, "/array", "dtype", "[\"<i4\", [3]]"); /* NumPy's (base, shape) */
    check_field(f, "/array", "attrs", "{\"array_attr\": null}");
    check_field(f, "/bitfield", "dtype", "\"<u2\""); /* as h5py reads it */
    check_field(f, "/bitfield", "fill_value", "0");
    check_field(f, "/int12", "dtype", "\"<i2\"");
    check_field(f, "/int12", "raw_matches_dtype", "false");
    check_field(f, "/regref", "h5type", "\"region reference\"");
    check_field(f, "/regref", "attrs",
                "{\"region\": null, \"latin1\": null, \"null_space\": null, \"scalar\": 1}");
    check_field(f, "/names", "members", "[\"good\", null]"); /* byte order: 0xc3 > 'g' */
    H5Fclose(f);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_path_limit)
{
    char path[H5CD_MAX_PATH_BYTES + 2];
    hid_t f = open_fixture("meta.h5");
    /* N bytes: the fixture's object at exactly the limit. */
    memcpy(path, "/long/", 6);
    memset(path + 6, 'x', H5CD_MAX_PATH_BYTES - 6);
    path[H5CD_MAX_PATH_BYTES] = '\0';
    check_field(f, path, "dtype", "\"|u1\"");
    /* N + 1: refused before any lookup. */
    path[H5CD_MAX_PATH_BYTES] = 'x';
    path[H5CD_MAX_PATH_BYTES + 1] = '\0';
    describe_fails(f, path, H5CD_E_BAD_REQUEST);
    /* N bytes that name nothing: looked up, not refused. */
    path[H5CD_MAX_PATH_BYTES] = '\0';
    path[H5CD_MAX_PATH_BYTES - 1] = 'y';
    describe_fails(f, path, H5CD_E_NOT_FOUND);
    /* N + 1 made of slashes only is still too long. */
    memset(path, '/', H5CD_MAX_PATH_BYTES + 1);
    path[H5CD_MAX_PATH_BYTES + 1] = '\0';
    describe_fails(f, path, H5CD_E_BAD_REQUEST);
    path[H5CD_MAX_PATH_BYTES] = '\0';
    check_field(f, path, "path", "\"/\"");
    H5Fclose(f);
}
END_TEST

START_TEST(test_soft_link_hops)
{
    char path[32];
    hid_t f = open_fixture("meta.h5");
    snprintf(path, sizeof(path), "/chain/s%d", SOFT_HOPS);
    check_field(f, path, "dtype", "\"|u1\"");
    snprintf(path, sizeof(path), "/chain/s%d", SOFT_HOPS + 1);
    describe_fails(f, path, H5CD_E_NOT_FOUND);
    H5Fclose(f);
}
END_TEST

START_TEST(test_attr_size_limits)
{
    hid_t f = open_fixture("big.h5");
    json_t *d = describe_ok(f, "/limits");
    json_t *a = json_object_get(d, "attrs");
    json_t *v = json_object_get(a, "bytes_n");
    ck_assert_uint_eq(json_array_size(v), MAX_ATTR_SIDE);
    ck_assert_uint_eq(json_string_length(json_array_get(v, MAX_ATTR_SIDE - 1)), MAX_ATTR_SIDE);
    ck_assert(json_is_null(json_object_get(a, "bytes_n1")));
    v = json_object_get(a, "nodes_n");
    ck_assert_uint_eq(json_array_size(v), MAX_ATTR_NODES - 1);
    ck_assert_int_eq(json_integer_value(json_array_get(v, MAX_ATTR_NODES - 2)), 1);
    ck_assert(json_is_null(json_object_get(a, "nodes_n1")));
    json_decref(d);

    /* 4 x 16 MiB exactly fill one object's budget; one byte more is null. */
    d = describe_ok(f, "/budget");
    a = json_object_get(d, "attrs");
    for (int i = 0; i < 4; i++) {
        char key[8];
        snprintf(key, sizeof(key), "a%d", i);
        ck_assert_uint_eq(json_array_size(json_object_get(a, key)), MAX_ATTR_SIDE);
    }
    ck_assert(json_is_null(json_object_get(a, "a4")));
    json_decref(d);
    H5Fclose(f);
}
END_TEST

START_TEST(test_attr_count_limit)
{
    hid_t f = open_fixture("big.h5");
    json_t *d = describe_ok(f, "/count_n");
    json_t *a = json_object_get(d, "attrs");
    ck_assert_uint_eq(json_object_size(a), MAX_ATTRS);
    ck_assert_int_eq(json_integer_value(json_object_get(a, "a04095")), 4095 % 256);
    json_decref(d);
    describe_fails(f, "/count_n1", H5CD_E_TOO_LARGE);
    hid_t g = H5Oopen(f, "/count_n1", H5P_DEFAULT);
    ck_assert_ptr_null(h5meta_attrs(g));
    H5Oclose(g);
    H5Fclose(f);
}
END_TEST

/* Groups of n soft links named by number, plus groups of long names
 * whose names (with one NUL each) total exactly and just over 16 MiB. */
static void make_members(const char *path)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    ck_assert_int_ge(f, 0);
    H5Pclose(fapl);
    char name[16];
    hid_t n = H5Gcreate2(f, "n", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t n1 = H5Gcreate2(f, "n1", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    for (int i = 0; i <= MAX_MEMBERS; i++) {
        snprintf(name, sizeof(name), "%07d", i);
        if (i < MAX_MEMBERS)
            ck_assert_int_ge(H5Lcreate_soft("/x", n, name, H5P_DEFAULT, H5P_DEFAULT), 0);
        ck_assert_int_ge(H5Lcreate_soft("/x", n1, name, H5P_DEFAULT, H5P_DEFAULT), 0);
    }
    H5Gclose(n);
    H5Gclose(n1);

    enum { LONG = 65536, COUNT = MAX_MEMBER_BYTES / LONG };
    char *lname = malloc(LONG);
    ck_assert_ptr_nonnull(lname);
    hid_t b = H5Gcreate2(f, "bytes_n", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t b1 = H5Gcreate2(f, "bytes_n1", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    for (int i = 0; i < COUNT; i++) {
        memset(lname, 'a' + i % 26, LONG - 1);
        snprintf(lname, 8, "%06d", i);
        lname[6] = '_';
        lname[LONG - 1] = '\0';
        ck_assert_int_ge(H5Lcreate_soft("/x", b, lname, H5P_DEFAULT, H5P_DEFAULT), 0);
        ck_assert_int_ge(H5Lcreate_soft("/x", b1, lname, H5P_DEFAULT, H5P_DEFAULT), 0);
    }
    ck_assert_int_ge(H5Lcreate_soft("/x", b1, "~", H5P_DEFAULT, H5P_DEFAULT), 0);
    free(lname);
    H5Gclose(b);
    H5Gclose(b1);
    H5Fclose(f);
}

START_TEST(test_member_limits)
{
    char path[PATH_MAX];
    fixture_path(path, sizeof(path), "members.h5");
    make_members(path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    json_t *d = describe_ok(f, "/n");
    json_t *m = json_object_get(d, "members");
    ck_assert_uint_eq(json_array_size(m), MAX_MEMBERS);
    ck_assert_str_eq(json_string_value(json_array_get(m, 0)), "0000000");
    ck_assert_str_eq(json_string_value(json_array_get(m, MAX_MEMBERS - 1)), "0262143");
    json_decref(d);
    describe_fails(f, "/n1", H5CD_E_TOO_LARGE);
    d = describe_ok(f, "/bytes_n");
    ck_assert_uint_eq(json_array_size(json_object_get(d, "members")), MAX_MEMBER_BYTES / 65536);
    json_decref(d);
    describe_fails(f, "/bytes_n1", H5CD_E_TOO_LARGE);
    H5Fclose(f);
}
END_TEST

static Suite *h5meta_suite(void)
{
    Suite *s = suite_create("h5meta");
    TCase *core = tcase_create("core");
    tcase_add_test(core, test_matches_h5py);
    tcase_add_test(core, test_dtypes);
    tcase_add_test(core, test_dtype_api);
    tcase_add_test(core, test_layouts_and_chunks);
    tcase_add_test(core, test_filters);
    tcase_add_test(core, test_fill_values);
    tcase_add_test(core, test_attrs);
    tcase_add_test(core, test_groups);
    tcase_add_test(core, test_links);
    tcase_add_test(core, test_paths);
    tcase_add_test(core, test_no_id_leaks);
    tcase_add_test(core, test_silent);
    tcase_add_test(core, test_exotic);
    tcase_set_timeout(core, 60);
    suite_add_tcase(s, core);

    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, test_path_limit);
    tcase_add_test(limits, test_soft_link_hops);
    tcase_add_test(limits, test_attr_size_limits);
    tcase_add_test(limits, test_attr_count_limit);
    tcase_add_test(limits, test_member_limits);
    tcase_set_timeout(limits, 300);
    suite_add_tcase(s, limits);
    return s;
}

/* Runs the fixture generator into fixture_dir, bounded in time. */
static int make_fixture(void)
{
    char *argv[] = {PYTHON_H5, META_FIXTURE_SCRIPT, fixture_dir, NULL};
    pid_t pid;
    int status;

    if (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ) != 0) {
        fprintf(stderr, "cannot run %s\n", argv[0]);
        return -1;
    }
    for (int i = 0; i < FIXTURE_TIMEOUT_S * 20; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
        if (r < 0 && errno != EINTR)
            return -1;
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    fprintf(stderr, "fixture generator timed out\n");
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(fixture_dir, sizeof(fixture_dir), "%s/check_h5meta.XXXXXX",
                     tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (n < 0 || (size_t)n >= sizeof(fixture_dir) || mkdtemp(fixture_dir) == NULL) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    int failed = 1;
    char path[PATH_MAX];
    json_error_t jerr;
    if (make_fixture() < 0)
        goto done;
    n = snprintf(path, sizeof(path), "%s/expected.json", fixture_dir);
    if (n < 0 || (size_t)n >= sizeof(path))
        goto done;
    expected = json_load_file(path, 0, &jerr);
    if (expected == NULL) {
        fprintf(stderr, "%s: %s\n", path, jerr.text);
        goto done;
    }
    SRunner *sr = srunner_create(h5meta_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
done:
    json_decref(expected);
    nftw(fixture_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
