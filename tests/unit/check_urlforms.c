/*
 * check_urlforms.c - unit tests of lib/urlforms (s3://, dandi://,
 * dandiasset: parsed and built; DANDI asset listings read) and of
 * lib/presign (credentials and expiry in a presigned URL's query).
 * Every refusal has a case; limits at N and N+1.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "presign.h"
#include "urlforms.h"

#define UUID "0a1b2c3d-4e5f-6789-abcd-ef0123456789"

static struct urlform form;
static struct h5cd_error err;

static int parse(const char *text)
{
    memset(&err, 0, sizeof(err));
    return urlforms_parse(text, &form, &err);
}

START_TEST(test_http_passes)
{
    ck_assert_int_eq(parse("https://example.org/a.nwb"), 0);
    ck_assert_int_eq(form.kind, URLFORM_HTTP);
    ck_assert(!urlforms_is_form("https://example.org/a.nwb"));
    ck_assert(urlforms_is_form("S3://b/k"));
    ck_assert(urlforms_is_form("dandi://DANDI/000003/x.nwb"));
    ck_assert(urlforms_is_form("dandiasset:" UUID));
}
END_TEST

START_TEST(test_s3)
{
    ck_assert_int_eq(parse("s3://dandiarchive/blobs/abc/def/" UUID), 0);
    ck_assert_int_eq(form.kind, URLFORM_S3);
    ck_assert_str_eq(form.bucket, "dandiarchive");
    ck_assert_str_eq(form.path, "blobs/abc/def/" UUID);
    ck_assert_int_eq(parse("s3://my-bucket/dir/a%20b.nwb"), 0);
    ck_assert_str_eq(form.path, "dir/a b.nwb");

    const char *bad[] = {"s3://",
                         "s3://ab/k",
                         "s3://Bucket/k",
                         "s3://bucket",
                         "s3://bucket/",
                         "s3://bucket/a//b",
                         "s3://bucket/a/../b",
                         "s3://bucket/./b",
                         "s3://bucket/dir/",
                         "s3://bucket/a?b",
                         "s3://bucket/a%0Ab",
                         "s3://bucket/a%zz",
                         "s3://bucket/a%2",
                         "s3://-bucket/k",
                         "s3://bu..cket/k",
                         "s3://bucket/a b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(parse(bad[i]) == -1, "%s accepted", bad[i]);
        ck_assert_int_eq(err.code, H5CD_E_BAD_REQUEST);
    }
}
END_TEST

START_TEST(test_s3_urls)
{
    char out[H5CD_MAX_URL_BYTES + 1];
    struct urlforms_s3 aws = {.endpoint = "", .region = "us-east-1"};
    ck_assert_int_eq(urlforms_s3_url(&aws, "dandiarchive", "blobs/a b+c", out, sizeof(out), &err),
                     0);
    ck_assert_str_eq(out, "https://dandiarchive.s3.amazonaws.com/blobs/a%20b%2Bc");
    struct urlforms_s3 west = {.endpoint = "", .region = "us-west-2"};
    ck_assert_int_eq(urlforms_s3_url(&west, "b-1", "k", out, sizeof(out), &err), 0);
    ck_assert_str_eq(out, "https://b-1.s3.us-west-2.amazonaws.com/k");
    /* A dotted bucket over https goes path style: the wildcard certificate would not match. */
    ck_assert_int_eq(urlforms_s3_url(&aws, "my.bucket", "k", out, sizeof(out), &err), 0);
    ck_assert_str_eq(out, "https://s3.amazonaws.com/my.bucket/k");
    struct urlforms_s3 local = {.endpoint = "http://127.0.0.1:9000/", .path_style = true};
    ck_assert_int_eq(urlforms_s3_url(&local, "bkt", "a/b.nwb", out, sizeof(out), &err), 0);
    ck_assert_str_eq(out, "http://127.0.0.1:9000/bkt/a/b.nwb");
    struct urlforms_s3 bad = {.endpoint = "ftp://x"};
    ck_assert_int_eq(urlforms_s3_url(&bad, "bkt", "k", out, sizeof(out), &err), -1);
    struct urlforms_s3 badpath = {.endpoint = "http://x/sub"};
    ck_assert_int_eq(urlforms_s3_url(&badpath, "bkt", "k", out, sizeof(out), &err), -1);
    struct urlforms_s3 badregion = {.endpoint = "", .region = "us/east"};
    ck_assert_int_eq(urlforms_s3_url(&badregion, "bkt", "k", out, sizeof(out), &err), -1);
    ck_assert_int_eq(urlforms_s3_url(&aws, "bkt", "k", out, 20, &err), -1);
}
END_TEST

START_TEST(test_dandi)
{
    ck_assert_int_eq(parse("dandi://DANDI/000003/sub-x/sub-x_ecephys.nwb"), 0);
    ck_assert_int_eq(form.kind, URLFORM_DANDI_PATH);
    ck_assert_str_eq(form.instance, "dandi");
    ck_assert_str_eq(form.dandiset, "000003");
    ck_assert_str_eq(form.version, "draft");
    ck_assert_str_eq(form.path, "sub-x/sub-x_ecephys.nwb");
    ck_assert_int_eq(parse("dandi://dandi-sandbox/000123@0.230101.1234/a%20b.nwb"), 0);
    ck_assert_str_eq(form.instance, "dandi-sandbox");
    ck_assert_str_eq(form.version, "0.230101.1234");
    ck_assert_str_eq(form.path, "a b.nwb");
    ck_assert_int_eq(parse("dandi://LAB/assets/" UUID), 0);
    ck_assert_int_eq(form.kind, URLFORM_DANDI_ASSET);
    ck_assert_str_eq(form.instance, "lab");
    ck_assert_str_eq(form.asset_id, UUID);
    ck_assert_int_eq(parse("dandiasset:0A1B2C3D-4E5F-6789-ABCD-EF0123456789"), 0);
    ck_assert_str_eq(form.asset_id, UUID);
    ck_assert_str_eq(form.instance, "dandi");

    const char *bad[] = {"dandi://",
                         "dandi:///000003/a.nwb",
                         "dandi://DANDI",
                         "dandi://DANDI/00003/a.nwb",
                         "dandi://DANDI/0000033/a.nwb",
                         "dandi://DANDI/000003",
                         "dandi://DANDI/000003/",
                         "dandi://DANDI/000003@/a.nwb",
                         "dandi://DANDI/000003@v1/a.nwb",
                         "dandi://DANDI/000003@1.2/a.nwb",
                         "dandi://DANDI/000003@1..2/a.nwb",
                         "dandi://DANDI/000003/a/../b.nwb",
                         "dandi://DANDI/000003/dir/",
                         "dandi://DA NDI/000003/a.nwb",
                         "dandi://D%41/000003/a.nwb",
                         "dandi://DANDI/assets/not-a-uuid",
                         "dandiasset:" UUID "0",
                         "dandiasset:",
                         "dandi://DANDI/000003/a?x=1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(parse(bad[i]) == -1, "%s accepted", bad[i]);
        ck_assert_int_eq(err.code, H5CD_E_BAD_REQUEST);
    }
}
END_TEST

START_TEST(test_dandi_urls)
{
    char api[URLFORMS_MAX_API_BYTES + 1], out[H5CD_MAX_URL_BYTES + 1];
    struct strlist inst = {0};
    char *items[] = {"LAB=http://127.0.0.1:8000/api/"};
    inst.items = items;
    inst.count = 1;
    ck_assert_int_eq(urlforms_dandi_api("https://api.dandiarchive.org/api/", &inst, "dandi", api,
                                        sizeof(api), &err),
                     0);
    ck_assert_str_eq(api, "https://api.dandiarchive.org/api");
    ck_assert_int_eq(urlforms_dandi_api("https://x/api", &inst, "lab", api, sizeof(api), &err), 0);
    ck_assert_str_eq(api, "http://127.0.0.1:8000/api");
    ck_assert_int_eq(
        urlforms_dandi_api("https://x/api", &inst, "dandi-sandbox", api, sizeof(api), &err), 0);
    ck_assert_str_eq(api, "https://api.sandbox.dandiarchive.org/api");
    ck_assert_int_eq(urlforms_dandi_api("https://x/api", &inst, "nope", api, sizeof(api), &err),
                     -1);
    ck_assert_int_eq(urlforms_dandi_api("ftp://x/api", &inst, "dandi", api, sizeof(api), &err), -1);

    ck_assert_int_eq(parse("dandi://DANDI/000003@draft/sub%201/a&b.nwb"), 0);
    ck_assert_int_eq(urlforms_dandi_assets_url("https://x/api", &form, out, sizeof(out), &err), 0);
    ck_assert_str_eq(
        out, "https://x/api/dandisets/000003/versions/draft/assets/?path=sub%201%2Fa%26b.nwb");
    ck_assert_int_eq(urlforms_dandi_download_url("https://x/api", UUID, out, sizeof(out), &err), 0);
    ck_assert_str_eq(out, "https://x/api/assets/" UUID "/download/");
    ck_assert_int_eq(urlforms_dandi_download_url("https://x/api", "x/../y", out, sizeof(out), &err),
                     -1);
}
END_TEST

START_TEST(test_find_asset)
{
    char id[URLFORMS_ASSET_ID_BYTES + 1], next[256];
    const char *page = "{\"count\":2,\"next\":\"https://x/api/p2\",\"results\":["
                       "{\"asset_id\":\"" UUID "\",\"path\":\"a.nwb.bak\"},"
                       "{\"asset_id\":\"11111111-2222-3333-4444-555555555555\","
                       "\"path\":\"a.nwb\",\"size\":10}]}";
    ck_assert_int_eq(
        urlforms_dandi_find_asset(page, strlen(page), "a.nwb", id, next, sizeof(next), &err), 1);
    ck_assert_str_eq(id, "11111111-2222-3333-4444-555555555555");
    ck_assert_int_eq(
        urlforms_dandi_find_asset(page, strlen(page), "b.nwb", id, next, sizeof(next), &err), 0);
    ck_assert_str_eq(next, "https://x/api/p2");
    const char *last = "{\"count\":0,\"next\":null,\"results\":[]}";
    ck_assert_int_eq(
        urlforms_dandi_find_asset(last, strlen(last), "b", id, next, sizeof(next), &err), 0);
    ck_assert_str_eq(next, "");
    const char *bad[] = {"",
                         "[]",
                         "{\"results\":{}}",
                         "{\"results\":[],\"next\":5}",
                         "{\"results\":[{\"path\":\"b\",\"asset_id\":\"../x\"}]}",
                         "{\"results\":[{\"path\":\"b\"}]}",
                         "{\"results\":[] , \"results\":[]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(urlforms_dandi_find_asset(bad[i], strlen(bad[i]), "b", id, next, sizeof(next),
                                                &err) == -1,
                      "%s accepted", bad[i]);
    ck_assert_int_eq(err.code, H5CD_E_UPSTREAM_ERROR);
    /* A next link longer than the room for it fails, never truncates. */
    ck_assert_int_eq(urlforms_dandi_find_asset(page, strlen(page), "b.nwb", id, next, 16, &err),
                     -1);
}
END_TEST

START_TEST(test_encode_limits)
{
    char out[8];
    ck_assert_int_eq(urlforms_encode("abcdefg", false, out, 8), 0);   /* N: fits with its NUL */
    ck_assert_int_eq(urlforms_encode("abcdefgh", false, out, 8), -1); /* N+1 */
    ck_assert_int_eq(urlforms_encode("a/b", false, out, 8), 0);
    ck_assert_str_eq(out, "a%2Fb");
    ck_assert_int_eq(urlforms_encode("a/b", true, out, 8), 0);
    ck_assert_str_eq(out, "a/b");
    /* The URL bound: H5CD_MAX_URL_BYTES is accepted, one more is not. */
    char *big = malloc(H5CD_MAX_URL_BYTES + 2);
    memcpy(big, "s3://bucket/", 12);
    memset(big + 12, 'k', H5CD_MAX_URL_BYTES - 12);
    big[H5CD_MAX_URL_BYTES] = '\0';
    ck_assert_int_eq(parse(big), 0);
    big[H5CD_MAX_URL_BYTES] = 'k';
    big[H5CD_MAX_URL_BYTES + 1] = '\0';
    ck_assert_int_eq(parse(big), -1);
    free(big);
}
END_TEST

START_TEST(test_presign_credentials)
{
    char *names[] = {"X-Amz-Signature", "Signature", "Expires"};
    struct strlist params = {.items = names, .count = 3};
    ck_assert(presign_has_credentials("https://b/k?X-Amz-Signature=abc", &params));
    ck_assert(presign_has_credentials("https://b/k?a=1&Signature=x&b=2", &params));
    ck_assert(presign_has_credentials("https://b/k?X-Amz-Signature", &params));
    ck_assert(!presign_has_credentials("https://b/k", &params));
    ck_assert(!presign_has_credentials("https://b/k?x-amz-signature=a", &params));
    ck_assert(!presign_has_credentials("https://b/k?XX-Amz-Signature=a", &params));
    ck_assert(!presign_has_credentials("https://b/k#?Signature=a", &params));
}
END_TEST

START_TEST(test_presign_expiry)
{
    time_t t = 0;
    ck_assert_int_eq(presign_expiry("https://b/k", &t), 0);
    ck_assert_int_eq(
        presign_expiry("https://b/k?X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-"
                       "Signature=s",
                       &t),
        1);
    ck_assert_int_eq((long long)t, 1704067200LL + 3600);
    ck_assert_int_eq(presign_expiry("https://b/k?Expires=1700000000&Signature=x", &t), 1);
    ck_assert_int_eq((long long)t, 1700000000LL);
    ck_assert_int_eq(
        presign_expiry("https://b/k?X-Goog-Date=20000229T235959Z&X-Goog-Expires=1", &t), 1);
    ck_assert_int_eq((long long)t, 951868800LL);
    /* Both: the earlier wins. */
    ck_assert_int_eq(presign_expiry("https://b/k?X-Amz-Date=20240101T000000Z&X-Amz-Expires=60&"
                                    "Expires=1704067210",
                                    &t),
                     1);
    ck_assert_int_eq((long long)t, 1704067210LL);
    const char *bad[] = {
        "https://b/k?X-Amz-Date=20240101T000000Z",
        "https://b/k?X-Amz-Expires=60",
        "https://b/k?X-Amz-Date=20240101T000000&X-Amz-Expires=60",
        "https://b/k?X-Amz-Date=20230229T000000Z&X-Amz-Expires=60",
        "https://b/k?X-Amz-Date=20241301T000000Z&X-Amz-Expires=60",
        "https://b/k?X-Amz-Date=20240101T240000Z&X-Amz-Expires=60",
        "https://b/k?X-Amz-Date=20240101T000000Z&X-Amz-Expires=-1",
        "https://b/k?X-Amz-Date=20240101T000000Z&X-Amz-Expires=604801",
        "https://b/k?Expires=12x",
        "https://b/k?Expires=",
        "https://b/k?Expires=1&Expires=2",
        "https://b/k?Expires=1234567890123",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(presign_expiry(bad[i], &t) == -1, "%s accepted", bad[i]);
    /* The limit itself, 7 days, is accepted. */
    ck_assert_int_eq(
        presign_expiry("https://b/k?X-Amz-Date=20240101T000000Z&X-Amz-Expires=604800", &t), 1);
}
END_TEST

static Suite *urlforms_suite(void)
{
    Suite *s = suite_create("urlforms");
    TCase *core = tcase_create("core");
    tcase_add_test(core, test_http_passes);
    tcase_add_test(core, test_s3);
    tcase_add_test(core, test_s3_urls);
    tcase_add_test(core, test_dandi);
    tcase_add_test(core, test_dandi_urls);
    tcase_add_test(core, test_find_asset);
    tcase_add_test(core, test_presign_credentials);
    tcase_add_test(core, test_presign_expiry);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, test_encode_limits);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(urlforms_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
