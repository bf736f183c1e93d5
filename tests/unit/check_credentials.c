/*
 * check_credentials.c - unit tests of lib/credentials: the file's mode and
 * owner checks, parsing and its refusals (never echoing a secret), and
 * which headers a URL gets.  Files live in a private mkdtemp directory.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "credentials.h"

#define ERRLEN 256

static char tmpdir[64];
static char path[128];
static char err[ERRLEN];

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_credentials.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(path, sizeof(path), "%s/creds", tmpdir);
}

static void teardown(void)
{
    unlink(path);
    rmdir(tmpdir);
}

static void write_file(const char *text, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    ck_assert_int_eq(chmod(path, mode), 0);
}

static struct credentials *parse_ok(const char *text)
{
    struct credentials *c = NULL;
    ck_assert_msg(credentials_parse("t", text, strlen(text), &c, err, sizeof(err)) == 0, "%s", err);
    return c;
}

static size_t headers(struct credentials *c, const char *url, const char **out)
{
    return credentials_headers(c, url, out, CREDENTIALS_MAX_MATCHED);
}

START_TEST(test_load_modes)
{
    struct credentials *c = NULL;
    write_file("https://api.example.org/api/ Authorization: token SECRET1\n", 0600);
    ck_assert_int_eq(credentials_load(path, &c, err, sizeof(err)), 0);
    ck_assert_uint_eq(credentials_count(c), 1);
    credentials_release(c);
    write_file("https://api.example.org/api/ Authorization: token SECRET1\n", 0400);
    ck_assert_int_eq(credentials_load(path, &c, err, sizeof(err)), 0);
    credentials_release(c);
    mode_t wide[] = {0640, 0604, 0660, 0644};
    for (size_t i = 0; i < sizeof(wide) / sizeof(wide[0]); i++) {
        write_file("host.example.org Authorization: token SECRET1\n", wide[i]);
        ck_assert_int_eq(credentials_load(path, &c, err, sizeof(err)), -1);
        ck_assert_ptr_null(c);
        ck_assert_ptr_nonnull(strstr(err, "chmod 600"));
        ck_assert_ptr_null(strstr(err, "SECRET1"));
    }
    /* A symbolic link is not followed. */
    char link[160];
    snprintf(link, sizeof(link), "%s/link", tmpdir);
    write_file("host.example.org Authorization: token SECRET1\n", 0600);
    ck_assert_int_eq(symlink(path, link), 0);
    ck_assert_int_eq(credentials_load(link, &c, err, sizeof(err)), -1);
    unlink(link);
    ck_assert_int_eq(credentials_load(tmpdir, &c, err, sizeof(err)), -1);
    ck_assert_int_eq(credentials_load("/nonexistent/creds", &c, err, sizeof(err)), -1);
    ck_assert_int_eq(credentials_load("", &c, err, sizeof(err)), 0);
    ck_assert_uint_eq(credentials_count(c), 0);
    credentials_release(c);
}
END_TEST

START_TEST(test_parse_refusals)
{
    const char *bad[] = {
        "justonefield\n",
        "https://api.example.org Authorization: token SECRET1\n", /* no '/' after the host */
        "ftp://api.example.org/ Authorization: token SECRET1\n",
        "https:/// Authorization: token SECRET1\n",
        "host.example.org NoColon SECRET1\n",
        "host.example.org Authorization:\n",
        "host.example.org Authorization:    \n",
        "host.example.org Bad Name: SECRET1\n",
        "host.example.org Range: bytes=0-SECRET1\n",
        "host.example.org Host: SECRET1\n",
        "host_example!org Authorization: token SECRET1\n",
        "host.example.org Authorization: token SECRET1\x01\n",
        "host.example.org Authorization: token SECRET1\xc3\xa9\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct credentials *c = NULL;
        ck_assert_msg(credentials_parse("t", bad[i], strlen(bad[i]), &c, err, sizeof(err)) == -1,
                      "%s accepted", bad[i]);
        ck_assert_ptr_null(strstr(err, "SECRET1"));
        ck_assert_ptr_nonnull(strstr(err, "t:1:"));
    }
    struct credentials *c = NULL;
    const char nul[] = "host.example.org Authorization: a\0b\n";
    ck_assert_int_eq(credentials_parse("t", nul, sizeof(nul) - 1, &c, err, sizeof(err)), -1);
}
END_TEST

START_TEST(test_matching)
{
    struct credentials *c = parse_ok("# comment\n"
                                     "\n"
                                     "  https://API.example.org/api/   Authorization: token A  \r\n"
                                     "https://api.example.org/api/private Authorization: token B\n"
                                     "https://api.example.org/api/private X-Extra: 1\n"
                                     "data.example.org Authorization: Bearer C\n"
                                     "http://plain.example.org:8080/ X-Key: D\n");
    const char *h[CREDENTIALS_MAX_MATCHED];
    ck_assert_uint_eq(headers(c, "https://api.example.org/api/assets/x/", h), 1);
    ck_assert_str_eq(h[0], "Authorization: token A");
    ck_assert_uint_eq(headers(c, "HTTPS://api.EXAMPLE.org/api/x", h), 1);
    /* The longer prefix wins for the same header; other headers add up. */
    ck_assert_uint_eq(headers(c, "https://api.example.org/api/private/x", h), 2);
    ck_assert_str_eq(h[0], "Authorization: token B");
    ck_assert_str_eq(h[1], "X-Extra: 1");
    ck_assert_uint_eq(headers(c, "https://api.example.org/api/private?x=1", h), 2);
    /* Prefixes match at boundaries only. */
    ck_assert_uint_eq(headers(c, "https://api.example.org/api/privateer", h), 1);
    ck_assert_str_eq(h[0], "Authorization: token A");
    ck_assert_uint_eq(headers(c, "https://api.example.org.evil.com/api/x", h), 0);
    ck_assert_uint_eq(headers(c, "https://api.example.org/apix", h), 0);
    ck_assert_uint_eq(headers(c, "http://api.example.org/api/x", h), 0);
    /* Host names: https only, any port, exact host. */
    ck_assert_uint_eq(headers(c, "https://data.example.org/f.nwb", h), 1);
    ck_assert_str_eq(h[0], "Authorization: Bearer C");
    ck_assert_uint_eq(headers(c, "https://DATA.example.org.:8443/f.nwb", h), 1);
    ck_assert_uint_eq(headers(c, "http://data.example.org/f.nwb", h), 0);
    ck_assert_uint_eq(headers(c, "https://sub.data.example.org/f.nwb", h), 0);
    ck_assert_uint_eq(headers(c, "https://xdata.example.org/f.nwb", h), 0);
    ck_assert_uint_eq(headers(c, "http://plain.example.org:8080/f", h), 1);
    ck_assert_uint_eq(headers(c, "http://plain.example.org:80801/f", h), 0);
    ck_assert_uint_eq(headers(c, "not a url", h), 0);
    ck_assert_uint_eq(headers(NULL, "https://data.example.org/f.nwb", h), 0);

    /* The store swaps sets while holders keep theirs. */
    struct credstore *store = credstore_new(c);
    struct credentials *held = credstore_get(store);
    credstore_set(store, parse_ok(""));
    ck_assert_uint_eq(headers(held, "https://data.example.org/f.nwb", h), 1);
    credentials_release(held);
    struct credentials *now = credstore_get(store);
    ck_assert_uint_eq(credentials_count(now), 0);
    credentials_release(now);
    credstore_free(store);
}
END_TEST

START_TEST(test_limits)
{
    /* CREDENTIALS_MAX_RULES rules are accepted, one more is not. */
    size_t line = 64;
    char *text = malloc((CREDENTIALS_MAX_RULES + 1) * line);
    size_t len = 0;
    for (int i = 0; i < CREDENTIALS_MAX_RULES; i++)
        len += (size_t)sprintf(text + len, "h%d.example.org X-K: v\n", i);
    struct credentials *c = NULL;
    ck_assert_int_eq(credentials_parse("t", text, len, &c, err, sizeof(err)), 0);
    credentials_release(c);
    len += (size_t)sprintf(text + len, "last.example.org X-K: v\n");
    ck_assert_int_eq(credentials_parse("t", text, len, &c, err, sizeof(err)), -1);
    free(text);
    /* A header of CREDENTIALS_MAX_HEADER_BYTES is accepted, one more is not. */
    size_t vlen = CREDENTIALS_MAX_HEADER_BYTES - strlen("X-K: ");
    char *big = malloc(vlen + 64);
    sprintf(big, "h.example.org X-K: ");
    size_t at = strlen(big);
    memset(big + at, 'v', vlen);
    big[at + vlen] = '\0';
    ck_assert_int_eq(credentials_parse("t", big, strlen(big), &c, err, sizeof(err)), 0);
    credentials_release(c);
    big[at + vlen] = 'v';
    big[at + vlen + 1] = '\0';
    ck_assert_int_eq(credentials_parse("t", big, strlen(big), &c, err, sizeof(err)), -1);
    free(big);
    /* The file size bound. */
    char *huge = calloc(1, CREDENTIALS_MAX_FILE_BYTES + 1);
    memset(huge, '#', CREDENTIALS_MAX_FILE_BYTES + 1);
    ck_assert_int_eq(credentials_parse("t", huge, CREDENTIALS_MAX_FILE_BYTES, &c, err, sizeof(err)),
                     0);
    credentials_release(c);
    ck_assert_int_eq(
        credentials_parse("t", huge, CREDENTIALS_MAX_FILE_BYTES + 1, &c, err, sizeof(err)), -1);
    free(huge);
}
END_TEST

static Suite *credentials_suite(void)
{
    Suite *s = suite_create("credentials");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_add_test(core, test_load_modes);
    tcase_add_test(core, test_parse_refusals);
    tcase_add_test(core, test_matching);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, test_limits);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(credentials_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
