/*
 * check_urlpolicy.c - unit tests of lib/urlpolicy: URL acceptance and cache
 * identities, allow/deny prefixes, every refused address class (and its
 * neighbours that must pass), and Host-header loopback names.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "urlpolicy.h"

/* Builds a policy from config_set-style overrides, NULL-terminated pairs. */
static struct urlpolicy *policy_with(const char *const *kv)
{
    struct h5cd_config cfg;
    char err[256];
    ck_assert_int_eq(config_init(&cfg), 0);
    for (size_t i = 0; kv != NULL && kv[i] != NULL; i += 2)
        ck_assert_msg(config_set(&cfg, kv[i], kv[i + 1], err, sizeof(err)) == 0, "%s", err);
    struct urlpolicy *p = urlpolicy_new(&cfg);
    config_free(&cfg); /* the policy keeps its own copies */
    ck_assert_ptr_nonnull(p);
    return p;
}

static void url_ok(const struct urlpolicy *p, const char *url, const char *identity)
{
    char id[H5CD_MAX_URL_BYTES + 1];
    struct h5cd_error err = {0};
    ck_assert_msg(urlpolicy_check(p, url, id, sizeof(id), &err) == 0, "%s refused: %s", url,
                  err.message);
    ck_assert_str_eq(id, identity);
}

static void url_bad(const struct urlpolicy *p, const char *url, enum h5cd_errcode code)
{
    char id[H5CD_MAX_URL_BYTES + 1] = "junk";
    struct h5cd_error err = {0};
    ck_assert_msg(urlpolicy_check(p, url, id, sizeof(id), &err) == -1, "%s accepted as %s", url,
                  id);
    ck_assert_msg(err.code == code, "%s: code %s, want %s (%s)", url, h5cd_errcode_name(err.code),
                  h5cd_errcode_name(code), err.message);
    ck_assert_str_ne(err.message, "");
    ck_assert_str_eq(id, "");
}

START_TEST(test_identity)
{
    struct urlpolicy *p = policy_with(NULL);
    url_ok(p, "https://data.example.org/a/b.h5", "https://data.example.org/a/b.h5");
    url_ok(p, "HTTPS://Data.Example.ORG:443/a/B.h5#frag", "https://data.example.org/a/B.h5");
    url_ok(p, "HtTp://h.example:80/x", "http://h.example/x");
    url_ok(p, "http://h.example:8080/x", "http://h.example:8080/x");
    url_ok(p, "https://h.example:80/x", "https://h.example:80/x");
    url_ok(p, "http://h.example:443/x", "http://h.example:443/x");
    url_ok(p, "http://h.example", "http://h.example/");
    url_ok(p, "http://h.example./x", "http://h.example/x");
    url_ok(p, "http://h.example/a/../b/./c", "http://h.example/b/c");
    url_ok(p, "http://h.example/p?", "http://h.example/p");
    url_ok(p, "http://h.example/p?#f", "http://h.example/p");
    url_ok(p, "http://[2001:DB8::1]:8080/x", "http://[2001:db8::1]:8080/x");
    url_ok(p, "http://h.example/p%20q?a=%2F", "http://h.example/p%20q?a=%2F");
    urlpolicy_free(p);
    urlpolicy_free(NULL);
}
END_TEST

START_TEST(test_signature_stripping)
{
    struct urlpolicy *p = policy_with(NULL);
    url_ok(p,
           "https://bucket.s3.amazonaws.com/k.h5?X-Amz-Algorithm=AWS4-HMAC-SHA256"
           "&X-Amz-Credential=AKIA%2F20240101&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600"
           "&versionId=3&X-Amz-SignedHeaders=host&X-Amz-Signature=abcdef"
           "&X-Amz-Security-Token=tok&x-amz-signature=kept&partNumber=1",
           "https://bucket.s3.amazonaws.com/k.h5?versionId=3&x-amz-signature=kept&partNumber=1");
    url_ok(p, "https://d.cloudfront.net/f.h5?Expires=1&Signature=s&Key-Pair-Id=k&Policy=p",
           "https://d.cloudfront.net/f.h5");
    url_ok(p, "https://h.example/f?a=1&&b&Signature&=x", "https://h.example/f?a=1&b&=x");
    url_ok(p, "https://h.example/f?Signatures=1&XSignature=2",
           "https://h.example/f?Signatures=1&XSignature=2");
    /* DANDI's presigned URLs name the file in a response-header override. */
    url_ok(p,
           "https://b.s3.amazonaws.com/blobs/abc?response-content-disposition=attachment%3B"
           "%20filename%3D%22x.nwb%22&X-Amz-Signature=s&response-content-type=a%2Fb"
           "&response-cache-control=no&response-expires=1&response-content-language=en"
           "&response-content-encoding=identity",
           "https://b.s3.amazonaws.com/blobs/abc");
    url_ok(p, "https://h.example/f?response-content-typo=1&Response-Content-Type=2",
           "https://h.example/f?response-content-typo=1&Response-Content-Type=2");
    urlpolicy_free(p);

    const char *kv[] = {"strip_query_params", "token", NULL};
    p = policy_with(kv);
    url_ok(p, "https://h.example/f?token=1&Signature=2", "https://h.example/f?Signature=2");
    urlpolicy_free(p);
}
END_TEST

START_TEST(test_bad_urls)
{
    struct urlpolicy *p = policy_with(NULL);
    url_bad(p, "ftp://h.example/f.h5", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "file:///etc/passwd", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "javascript:alert(1)", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "gopher://h.example/", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "http://user:pw@h.example/", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "http://user@h.example/", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "http://@h.example/", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "http://", H5CD_E_BAD_REQUEST);
    url_bad(p, "http:///", H5CD_E_BAD_REQUEST);
    url_bad(p, "", H5CD_E_BAD_REQUEST);
    url_bad(p, "/relative/f.h5", H5CD_E_BAD_REQUEST);
    url_bad(p, "f.h5", H5CD_E_BAD_REQUEST);
    url_bad(p, "h.example/f.h5", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://h.example/a b", H5CD_E_BAD_REQUEST);
    url_bad(p, " http://h.example/", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://h.example/\r\nX-Injected: 1", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://h.example/\n", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://h.example/\t", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://h.example/\x7f", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://h.example/\x01", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://h.example:0/", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://h.example:65536/", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://h.example:x/", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://[fe80::1%25eth0]/", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://h\xc3\xa9.example/", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://[::1/", H5CD_E_BAD_REQUEST);
    urlpolicy_free(p);
}
END_TEST

START_TEST(test_prefixes)
{
    const char *kv[] = {"allow_prefixes", "HTTPS://Data.Example.ORG:443/pub/ https://example.com",
                        "deny_prefixes", "https://data.example.org/pub/private/", NULL};
    struct urlpolicy *p = policy_with(kv);
    url_ok(p, "https://data.example.org/pub/x.h5", "https://data.example.org/pub/x.h5");
    url_ok(p, "https://DATA.example.org:443/pub/x.h5", "https://data.example.org/pub/x.h5");
    url_ok(p, "https://example.com/anything", "https://example.com/anything");
    url_bad(p, "https://data.example.org/other/x.h5", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "http://data.example.org/pub/x.h5", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "https://data.example.org.evil.net/pub/x.h5", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "https://data.example.org:8443/pub/x.h5", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "https://example.com.evil.net/x", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "https://data.example.org/pub/private/x.h5", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "https://Data.Example.org/pub/private/x.h5", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "https://data.example.org/pub/a/../private/x.h5", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "https://data.example.org./pub/private/x.h5", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "https://data.example.org/pub/private/x.h5", H5CD_E_URL_NOT_ALLOWED);
    urlpolicy_free(p);

    /* A prefix that is not a whole URL is compared as written. */
    const char *kv2[] = {"allow_prefixes", "https://", NULL};
    p = policy_with(kv2);
    url_ok(p, "https://any.example/x", "https://any.example/x");
    url_bad(p, "http://any.example/x", H5CD_E_URL_NOT_ALLOWED);
    urlpolicy_free(p);

    const char *kv3[] = {"deny_prefixes", "http://", NULL};
    p = policy_with(kv3);
    url_ok(p, "https://any.example/x", "https://any.example/x");
    url_bad(p, "HTTP://any.example/x", H5CD_E_URL_NOT_ALLOWED);
    urlpolicy_free(p);
}
END_TEST

/* ---- addresses ---- */

static bool v4_allowed(const struct urlpolicy *p, const char *text)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(443)};
    ck_assert_int_eq(inet_pton(AF_INET, text, &sa.sin_addr), 1);
    return urlpolicy_addr_allowed(p, (const struct sockaddr *)&sa, sizeof(sa));
}

static bool v6_allowed(const struct urlpolicy *p, const char *text)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
    ck_assert_int_eq(inet_pton(AF_INET6, text, &sa.sin6_addr), 1);
    return urlpolicy_addr_allowed(p, (const struct sockaddr *)&sa, sizeof(sa));
}

static const char *const refused_v4[] = {
    "0.0.0.0",         "0.255.255.255",  "10.0.0.1",        "10.255.255.255",  "100.64.0.0",
    "100.127.255.255", "127.0.0.1",      "127.255.255.254", "169.254.169.254", "172.16.0.0",
    "172.31.255.255",  "192.0.0.0",      "192.0.0.255",     "192.168.0.1",     "192.168.255.255",
    "198.18.0.0",      "198.19.255.255", "224.0.0.1",       "239.255.255.255", "240.0.0.1",
    "255.255.255.255",
};
static const char *const public_v4[] = {
    "1.1.1.1",        "8.8.8.8",         "9.255.255.255",   "11.0.0.0",        "100.63.255.255",
    "100.128.0.0",    "126.255.255.255", "128.0.0.0",       "169.253.255.255", "169.255.0.0",
    "172.15.255.255", "172.32.0.0",      "192.0.1.0",       "192.167.255.255", "192.169.0.0",
    "198.17.255.255", "198.20.0.0",      "223.255.255.255", "93.184.216.34",
};
static const char *const refused_v6[] = {
    "::",
    "::1",
    "fc00::1",
    "fdff:ffff::1",
    "fe80::1",
    "febf::1",
    "ff02::1",
    "ff0e::1",
    "::ffff:127.0.0.1",
    "::ffff:10.1.2.3",
    "::ffff:169.254.169.254",
    "::ffff:0.0.0.0",
    "64:ff9b::a00:1",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "::127.0.0.1", /* IPv4-compatible */
    "::10.0.0.1",
    "::2",            /* IPv4-compatible 0.0.0.2 */
    "2002:7f00:1::1", /* 6to4 of 127.0.0.1 */
    "2002:a9fe:a9fe::",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2", /* Teredo */
    "64:ff9b:1::a00:1",
    "fec0::1", /* site-local, deprecated */
};
static const char *const public_v6[] = {
    "2606:4700:4700::1111", "2001:db8::1", "fbff::1",         "::ffff:8.8.8.8",
    "64:ff9b::808:808",     "::8.8.8.8",   "2002:808:808::1", "2001:4860:4860::8888",
};

/* Escapes, dot segments and doubled slashes must not carry a URL past the lists. */
START_TEST(test_prefix_evasion)
{
    const char *kv[] = {"allow_prefixes", "http://h.example/pub/", "deny_prefixes",
                        "http://h.example/pub/secret/", NULL};
    struct urlpolicy *p = policy_with(kv);
    url_bad(p, "http://h.example/pub/%73ecret/s.bin", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "http://h.example/pub/secre%74/s.bin", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "http://h.example/pub/%2e%2e/other/b.bin", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "http://h.example/pub/%2E/secret/s.bin", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "http://h.example/pub//secret/s.bin", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "http://h.example//pub/secret/s.bin", H5CD_E_URL_NOT_ALLOWED);
    url_bad(p, "http://h.example/pub%2Fsecret/s.bin", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://h.example/pub/%5Csecret/s.bin", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://h.example/pub/%zz", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://h.example/pub/%4", H5CD_E_BAD_REQUEST);
    /* Unreserved escapes are decoded in the identity; others keep upper-case hex. */
    url_ok(p, "http://h.example/pub/%61%2d%7e", "http://h.example/pub/a-~");
    url_ok(p, "http://h.example/pub/a%20b%3f", "http://h.example/pub/a%20b%3F");
    url_ok(p, "http://h.example/pub/x/./y/../z", "http://h.example/pub/x/z");
    /* Doubled slashes are kept in the identity (distinct S3 keys) but compared merged. */
    url_ok(p, "http://h.example/pub//x", "http://h.example/pub//x");
    urlpolicy_free(p);
}
END_TEST

START_TEST(test_addresses_refused)
{
    struct urlpolicy *p = policy_with(NULL);
    for (size_t i = 0; i < sizeof(refused_v4) / sizeof(refused_v4[0]); i++)
        ck_assert_msg(!v4_allowed(p, refused_v4[i]), "%s allowed", refused_v4[i]);
    for (size_t i = 0; i < sizeof(public_v4) / sizeof(public_v4[0]); i++)
        ck_assert_msg(v4_allowed(p, public_v4[i]), "%s refused", public_v4[i]);
    for (size_t i = 0; i < sizeof(refused_v6) / sizeof(refused_v6[0]); i++)
        ck_assert_msg(!v6_allowed(p, refused_v6[i]), "%s allowed", refused_v6[i]);
    for (size_t i = 0; i < sizeof(public_v6) / sizeof(public_v6[0]); i++)
        ck_assert_msg(v6_allowed(p, public_v6[i]), "%s refused", public_v6[i]);
    urlpolicy_free(p);
}
END_TEST

START_TEST(test_addresses_allow_private)
{
    const char *kv[] = {"allow_private_upstreams", "true", NULL};
    struct urlpolicy *p = policy_with(kv);
    for (size_t i = 0; i < sizeof(refused_v4) / sizeof(refused_v4[0]); i++)
        ck_assert_msg(v4_allowed(p, refused_v4[i]), "%s refused", refused_v4[i]);
    for (size_t i = 0; i < sizeof(public_v4) / sizeof(public_v4[0]); i++)
        ck_assert_msg(v4_allowed(p, public_v4[i]), "%s refused", public_v4[i]);
    for (size_t i = 0; i < sizeof(refused_v6) / sizeof(refused_v6[0]); i++)
        ck_assert_msg(v6_allowed(p, refused_v6[i]), "%s refused", refused_v6[i]);

    /* Unix sockets, unknown families and short lengths: never. */
    struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "/run/x"};
    ck_assert(!urlpolicy_addr_allowed(p, (const struct sockaddr *)&un, sizeof(un)));
    struct sockaddr_storage other = {.ss_family = AF_APPLETALK};
    ck_assert(!urlpolicy_addr_allowed(p, (const struct sockaddr *)&other, sizeof(other)));
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "8.8.8.8", &sa.sin_addr);
    ck_assert(urlpolicy_addr_allowed(p, (const struct sockaddr *)&sa, sizeof(sa)));
    ck_assert(!urlpolicy_addr_allowed(p, (const struct sockaddr *)&sa, sizeof(sa) - 1));
    ck_assert(!urlpolicy_addr_allowed(p, NULL, 0));
    ck_assert(!urlpolicy_addr_allowed(NULL, (const struct sockaddr *)&sa, sizeof(sa)));
    urlpolicy_free(p);
}
END_TEST

/* Every spelling of one host gets one identity, so deny_prefixes catches them all. */
START_TEST(test_host_spellings)
{
    static const char *const loopback[] = {
        "http://127.0.0.1:8080/secret/x",
        "http://127.1:8080/secret/x",
        "http://0x7f.0.0.1:8080/secret/x",
        "http://0x7f.1:8080/secret/x",
        "http://017700000001:8080/secret/x",
        "http://2130706433:8080/secret/x",
        "http://0x7f000001:8080/secret/x",
        "http://0177.0.0.01:8080/secret/x",
        "http://127.0.0.1.:8080/secret/x",
        "http://[::ffff:127.0.0.1]:8080/secret/x",
        "http://2130706433.:8080/secret/x",
        "http://[::127.0.0.1]:8080/secret/x",
        "http://[0:0:0:0:0:ffff:7f00:1]:8080/secret/x",
        "http://%31%32%37.0.0.1:8080/secret/x",
        "HTTP://127.0.0.1:8080/SECRET/../secret/x",
        "http://127.0.0.1:08080/secret/x",
    };
    struct urlpolicy *open = policy_with(NULL);
    const char *kv[] = {"deny_prefixes", "http://127.0.0.1:8080/secret/", NULL};
    struct urlpolicy *deny = policy_with(kv);
    const char *kv2[] = {"deny_prefixes", "http://0x7f.1:8080/secret/", NULL};
    struct urlpolicy *deny2 = policy_with(kv2);
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
        char id[H5CD_MAX_URL_BYTES + 1];
        struct h5cd_error err = {0};
        int rc = urlpolicy_check(open, loopback[i], id, sizeof(id), &err);
        if (rc == 0)
            ck_assert_msg(strcmp(id, "http://127.0.0.1:8080/secret/x") == 0, "%s -> %s",
                          loopback[i], id);
        url_bad(deny, loopback[i], rc == 0 ? H5CD_E_URL_NOT_ALLOWED : err.code);
        url_bad(deny2, loopback[i], rc == 0 ? H5CD_E_URL_NOT_ALLOWED : err.code);
    }
    url_ok(deny, "http://127.0.0.2:8080/secret/x", "http://127.0.0.2:8080/secret/x");
    url_ok(open, "http://[2001:0DB8:0:0::0001]/x", "http://[2001:db8::1]/x");
    url_ok(open, "http://[::1]/x", "http://[::1]/x");
    url_ok(open, "http://[::]/x", "http://[::]/x");
    url_ok(open, "http://a_b.Example.COM./x", "http://a_b.example.com/x");
    url_ok(open, "http://1e100.net/x", "http://1e100.net/x");
    urlpolicy_free(open);
    urlpolicy_free(deny);
    urlpolicy_free(deny2);
}
END_TEST

/* Checking an identity gives the identity back: a cache key is spelled
 * one way only, whichever of its spellings a client sent. */
START_TEST(test_identity_idempotent)
{
    static const char *const spellings[] = {
        "http://1./x",
        "http://1/x",
        "http://%31/x",
        "http://%31./x",
        "http://1.2./x",
        "http://0x7f.1/x",
        "http://0x7f.1./x",
        "http://017700000001/x",
        "http://2130706433./x",
        "http://127.0.0.1./x",
        "http://%31%32%37.0.0.1/x",
        "http://%31%32%37%2e0.0.1/x",
        "http://%65xample.com/x",
        "http://EXAMPLE.com./x",
        "http://example.com../x",
        "http://a_b.Example.COM./x",
        "http://1e100.net/x",
        "http://0x100000000/x",
        "http://4294967295/x",
        "http://4294967296/x",
        "http://0/x",
        "http://00/x",
        "http://0x/x",
        "http://1.0x/x",
        "http://1.08/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://[::127.0.0.1]/x",
        "http://[0:0:0:0:0:ffff:7f00:1]/x",
        "http://[2001:0DB8:0:0::0001]:80/x",
        "https://example.com:443/a/../b//c?X-Amz-Signature=1&b=2#frag",
        "http://example.com:0080/%7euser/%2fx",
        "http://example.com/a%2F..%2Fb",
        "http://example.com/?",
        "http://example.com?q",
    };
    const char *kv[] = {"strip_query_params", "X-Amz-Signature", NULL};
    struct urlpolicy *p = policy_with(kv);
    size_t accepted = 0;
    for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
        char id[H5CD_MAX_URL_BYTES + 1], again[H5CD_MAX_URL_BYTES + 1];
        struct h5cd_error err = {0};
        if (urlpolicy_check(p, spellings[i], id, sizeof(id), &err) < 0)
            continue; /* refused: no identity to be stable */
        accepted++;
        ck_assert_msg(urlpolicy_check(p, id, again, sizeof(again), &err) == 0,
                      "%s -> %s, which is refused: %s", spellings[i], id, err.message);
        ck_assert_msg(strcmp(id, again) == 0, "%s -> %s -> %s", spellings[i], id, again);
    }
    ck_assert_uint_ge(accepted, 20); /* the list exercises accepted spellings */
    /* One host, one identity: every spelling of 0.0.0.1 that is accepted. */
    url_ok(p, "http://1/x", "http://0.0.0.1/x");
    urlpolicy_free(p);
}
END_TEST

/* The pure host normalizer on its own (what the fuzzer drives). */
START_TEST(test_normalize_host)
{
    static const struct {
        const char *in, *out;
    } ok[] = {
        {"127.1", "127.0.0.1"},
        {"0x7f.0.0.1", "127.0.0.1"},
        {"017700000001", "127.0.0.1"},
        {"2130706433", "127.0.0.1"},
        {"0X7F.0x00.0.1", "127.0.0.1"},
        {"1.2.65535", "1.2.255.255"},
        {"0x", "0.0.0.0"},
        {"4294967295", "255.255.255.255"},
        {"Example.ORG.", "example.org"},
        {"[::FFFF:10.0.0.1]", "10.0.0.1"},
        {"[::10.0.0.1]", "10.0.0.1"},
        {"[::1]", "[::1]"},
        {"[2001:db8:0:0:0:0:0:1]", "[2001:db8::1]"},
    };
    static const char *const bad[] = {
        "",
        "4294967296",
        "1.2.3.256",
        "1.2.3.4.5",
        "1.2.3.999",
        "08.1.1.1",
        "0x1g.1",
        "256.1",
        "1.2.16777216",
        "a..b",
        ".a",
        "a.b..",
        "..",
        "%31.2.3.4",
        "a b",
        "a/b",
        "a\\b",
        "a@b",
        "ex\x80mple",
        "[::1",
        "[1.2.3.4]",
        "[::1]x",
        "[]",
        "[fe80::1%25eth0]",
        "example.123",
        "0x.0x.0x.0x.0x",
        "127.0.0.1.",
        "2130706433.",
    };
    char out[300];
    struct h5cd_error err;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        ck_assert_msg(urlpolicy_normalize_host(ok[i].in, out, sizeof(out), &err) == 0,
                      "%s refused: %s", ok[i].in, err.message);
        ck_assert_str_eq(out, ok[i].out);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(urlpolicy_normalize_host(bad[i], out, sizeof(out), &err) == -1,
                      "%s accepted as %s", bad[i], out);
        ck_assert_int_eq(err.code, H5CD_E_BAD_REQUEST);
    }
    char longhost[400];
    memset(longhost, 'a', sizeof(longhost) - 1);
    longhost[sizeof(longhost) - 1] = '\0';
    ck_assert_int_eq(urlpolicy_normalize_host(longhost, out, sizeof(out), &err), -1);
    ck_assert_int_eq(urlpolicy_normalize_host("example.org", out, 5, &err), -1);
}
END_TEST

/* Control characters, raw or escaped, anywhere in a URL. */
START_TEST(test_control_characters)
{
    struct urlpolicy *p = policy_with(NULL);
    static const char *const bad[] = {
        "http://h.example/a%00b",    "http://h.example/a?x=%00",
        "http://h.example/a#%0a",    "http://h.example/a%0D%0AHost:%20evil",
        "http://h.example/%7f",      "http://h.example/%1F",
        "http://h.example/a\x01b",   "http://h.example/a\x7f",
        "http://h.example/a\tb",     "http://h%00.example/",
        "http://h.example/%2500%00",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        url_bad(p, bad[i], H5CD_E_BAD_REQUEST);
    url_ok(p, "http://h.example/a%2500", "http://h.example/a%2500");
    url_ok(p, "http://h.example/a%20b", "http://h.example/a%20b");
    urlpolicy_free(p);
}
END_TEST

START_TEST(test_networks)
{
    static const struct {
        const char *text;
        int family;
        unsigned bits;
    } ok[] = {{"10.1.0.0/16", AF_INET, 16}, {"127.0.0.2", AF_INET, 32},
              {"0.0.0.0/0", AF_INET, 0},    {"fd00:1::/64", AF_INET6, 64},
              {"::1", AF_INET6, 128},       {"10.1.2.3/32", AF_INET, 32}};
    static const char *const bad[] = {
        "10.1.0.1/16", "10.1.0.0/33", "10.1.0.0/",     "/8", "10.1/16",     "fd00::1/8",
        "fd00::/129",  "x",           "10.1.0.0/016x", "",   "10.0.0.0/-1", "10.0.0.0/1000"};
    struct urlpolicy_network n;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        ck_assert_msg(urlpolicy_parse_network(ok[i].text, &n) == 0, "%s refused", ok[i].text);
        ck_assert_int_eq(n.family, ok[i].family);
        ck_assert_uint_eq(n.bits, ok[i].bits);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(urlpolicy_parse_network(bad[i], &n) == -1, "%s accepted", bad[i]);

    const char *kv[] = {"allow_upstream_networks", "127.0.0.2/32, 10.1.0.0/16, fd00:1::/64", NULL};
    struct urlpolicy *p = policy_with(kv);
    ck_assert(v4_allowed(p, "127.0.0.2"));
    ck_assert(v4_allowed(p, "10.1.255.255"));
    ck_assert(!v4_allowed(p, "127.0.0.1"));
    ck_assert(!v4_allowed(p, "10.2.0.1"));
    ck_assert(!v4_allowed(p, "169.254.169.254"));
    ck_assert(v4_allowed(p, "8.8.8.8"));
    ck_assert(v6_allowed(p, "fd00:1::5"));
    ck_assert(v6_allowed(p, "::ffff:127.0.0.2"));
    ck_assert(!v6_allowed(p, "::ffff:127.0.0.1"));
    ck_assert(!v6_allowed(p, "fd00:2::5"));
    ck_assert(!v6_allowed(p, "::1"));
    urlpolicy_free(p);

    struct h5cd_config cfg;
    char err[256];
    ck_assert_int_eq(config_init(&cfg), 0);
    ck_assert_int_eq(config_set(&cfg, "allow_upstream_networks", "10.1.0.1/16", err, sizeof(err)),
                     0);
    ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "allow_upstream_networks"));
    config_free(&cfg);
}
END_TEST

START_TEST(test_host_is_loopback)
{
    const char *yes[] = {"localhost",      "LOCALHOST:80",      "localhost:7661",
                         "x.localhost",    "a.b-c.Localhost:1", "127.0.0.1",
                         "127.0.0.1:7661", "127.255.255.254",   "127.1.2.3:65535",
                         "[::1]",          "[::1]:7661",        "[0:0:0:0:0:0:0:1]:80"};
    const char *no[] = {"",
                        "127.0.0.1.evil.com",
                        "localhost.evil.com",
                        "evil.com",
                        "evillocalhost",
                        ".localhost",
                        "a..localhost",
                        "x_y.localhost",
                        "localhost.",
                        "128.0.0.1",
                        "0.0.0.0",
                        "127.1",
                        "2130706433",
                        "0x7f.0.0.1",
                        "127.000.0.1",
                        "127.0.0.1:",
                        "127.0.0.1:x",
                        "127.0.0.1:80:80",
                        "localhost:123456",
                        "localhost:65536",
                        "localhost :80",
                        "::1",
                        "[::1",
                        "[::2]:80",
                        "[::ffff:127.0.0.1]",
                        "[::1]x",
                        "[::1]:",
                        "[]:80",
                        "localhost\r\n"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        ck_assert_msg(urlpolicy_host_is_loopback(yes[i]), "'%s' not loopback", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        ck_assert_msg(!urlpolicy_host_is_loopback(no[i]), "'%s' loopback", no[i]);
    ck_assert(!urlpolicy_host_is_loopback(NULL));
}
END_TEST

/* ---- limits ---- */

START_TEST(test_url_length_limit)
{
    struct urlpolicy *p = policy_with(NULL);
    const char *head = "https://h.example/";
    char *url = malloc(H5CD_MAX_URL_BYTES + 2);
    ck_assert_ptr_nonnull(url);
    memset(url, 'a', H5CD_MAX_URL_BYTES + 1);
    memcpy(url, head, strlen(head));
    url[H5CD_MAX_URL_BYTES] = '\0';
    url_ok(p, url, url); /* exactly the limit */
    url[H5CD_MAX_URL_BYTES] = 'a';
    url[H5CD_MAX_URL_BYTES + 1] = '\0';
    url_bad(p, url, H5CD_E_BAD_REQUEST); /* one byte more */

    /* The identity must fit the caller's buffer or the call fails. */
    char small[32];
    struct h5cd_error err = {0};
    ck_assert_int_eq(urlpolicy_check(p, "https://h.example/0123456789", small, 29, &err), 0);
    ck_assert_str_eq(small, "https://h.example/0123456789");
    ck_assert_int_eq(urlpolicy_check(p, "https://h.example/0123456789", small, 28, &err), -1);
    ck_assert_int_eq(err.code, H5CD_E_BAD_REQUEST);
    /* Normalization may lengthen a URL: "http://1" names 0.0.0.1. */
    ck_assert_int_eq(urlpolicy_check(p, "http://1", small, sizeof(small), &err), 0);
    ck_assert_str_eq(small, "http://0.0.0.1/");
    free(url);
    urlpolicy_free(p);
}
END_TEST

START_TEST(test_port_limits)
{
    struct urlpolicy *p = policy_with(NULL);
    url_ok(p, "http://h.example:1/", "http://h.example:1/");
    url_ok(p, "http://h.example:65535/", "http://h.example:65535/");
    url_ok(p, "http://h.example:080/", "http://h.example/");
    url_bad(p, "http://h.example:0/", H5CD_E_BAD_REQUEST);
    url_bad(p, "http://h.example:65536/", H5CD_E_BAD_REQUEST);
    urlpolicy_free(p);
}
END_TEST

static Suite *urlpolicy_suite(void)
{
    Suite *s = suite_create("urlpolicy");
    TCase *core = tcase_create("core");
    tcase_add_test(core, test_identity);
    tcase_add_test(core, test_signature_stripping);
    tcase_add_test(core, test_bad_urls);
    tcase_add_test(core, test_prefixes);
    tcase_add_test(core, test_prefix_evasion);
    tcase_add_test(core, test_addresses_refused);
    tcase_add_test(core, test_addresses_allow_private);
    tcase_add_test(core, test_host_is_loopback);
    tcase_add_test(core, test_host_spellings);
    tcase_add_test(core, test_normalize_host);
    tcase_add_test(core, test_identity_idempotent);
    tcase_add_test(core, test_control_characters);
    tcase_add_test(core, test_networks);
    suite_add_tcase(s, core);

    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, test_url_length_limit);
    tcase_add_test(limits, test_port_limits);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(urlpolicy_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
