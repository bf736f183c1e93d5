/*
 * check_authtoken.c - unit tests of lib/authtoken: what a token file must
 * look like (mode, content, length at N and N+1) and the Authorization
 * header check.  Files live in a private mkdtemp directory removed by
 * each test.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "authtoken.h"

#define ERRLEN 256

static char tmpdir[64];
static char tok_path[128];

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_authtoken.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        abort();
    snprintf(tok_path, sizeof(tok_path), "%s/token", tmpdir);
}

static void teardown(void)
{
    unlink(tok_path);
    rmdir(tmpdir);
}

static void write_token(const char *bytes, size_t len, mode_t mode)
{
    unlink(tok_path);
    int fd = open(tok_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, bytes, len), (ssize_t)len);
    ck_assert_int_eq(fchmod(fd, mode), 0);
    close(fd);
}

/* Loads and expects success with the given token. */
static void load_ok(const char *want)
{
    char err[ERRLEN] = "", *tok = NULL;
    ck_assert_msg(authtoken_load(tok_path, &tok, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(tok, want);
    authtoken_free(tok);
}

/* Loads and expects a refusal whose message contains want. */
static void load_bad(const char *want)
{
    char err[ERRLEN] = "", *tok = (char *)"untouched";
    ck_assert_int_eq(authtoken_load(tok_path, &tok, err, sizeof(err)), -1);
    ck_assert_ptr_null(tok);
    ck_assert_msg(strstr(err, want) != NULL, "'%s' lacks '%s'", err, want);
    ck_assert_msg(strstr(err, tok_path) != NULL, "'%s' does not name the file", err);
    ck_assert_ptr_null(strchr(err, '\n'));
}

START_TEST(test_load_forms)
{
    write_token("s3cret-token-0123", 17, 0600);
    load_ok("s3cret-token-0123");
    write_token("s3cret-token-0123\n", 18, 0400);
    load_ok("s3cret-token-0123");
    write_token("s3cret-token-0123\r\n", 19, 0600);
    load_ok("s3cret-token-0123");
}
END_TEST

START_TEST(test_load_refusals)
{
    write_token("", 0, 0600);
    load_bad("empty");
    write_token("\n", 1, 0600);
    load_bad("empty");
    write_token("abc def", 7, 0600);
    load_bad("printable ASCII without blanks");
    write_token("abc\n\n", 5, 0600); /* two newlines: the second is part of the token */
    load_bad("printable ASCII");
    write_token("abc\tdef", 7, 0600);
    load_bad("printable ASCII");
    write_token("tok\xc3\xa9", 5, 0600);
    load_bad("printable ASCII");
    write_token("good-token", 10, 0640);
    load_bad("group or others may access it (mode 0640)");
    write_token("good-token", 10, 0604);
    load_bad("mode 0604");
    write_token("good-token", 10, 0620);
    load_bad("chmod 600");
    unlink(tok_path);
    load_bad("No such file");
    /* A directory is not a token file. */
    ck_assert_int_eq(mkdir(tok_path, 0700), 0);
    load_bad("not a regular file");
    rmdir(tok_path);
}
END_TEST

START_TEST(test_check_header)
{
    const char *tok = "s3cret-token-0123";
    ck_assert(authtoken_check(tok, "Bearer s3cret-token-0123"));
    ck_assert(authtoken_check(tok, "bearer s3cret-token-0123"));
    ck_assert(authtoken_check(tok, "BEARER s3cret-token-0123"));
    ck_assert(!authtoken_check(tok, NULL));
    ck_assert(!authtoken_check(NULL, "Bearer x"));
    ck_assert(!authtoken_check(tok, ""));
    ck_assert(!authtoken_check(tok, "s3cret-token-0123"));
    ck_assert(!authtoken_check(tok, "Basic s3cret-token-0123"));
    ck_assert(!authtoken_check(tok, "Bearer  s3cret-token-0123"));
    ck_assert(!authtoken_check(tok, "Bearer s3cret-token-0123 "));
    ck_assert(!authtoken_check(tok, "Bearer s3cret-token-012"));   /* a prefix */
    ck_assert(!authtoken_check(tok, "Bearer s3cret-token-01234")); /* longer */
    ck_assert(!authtoken_check(tok, "Bearer S3cret-token-0123"));  /* case matters */
    ck_assert(!authtoken_check(tok, "Bearer "));
    ck_assert(!authtoken_check(tok, "Bearer"));
    ck_assert(!authtoken_check("", "Bearer "));
}
END_TEST

/* Limits: a token of AUTHTOKEN_MAX_BYTES loads, one byte more does not. */
START_TEST(test_length_limit)
{
    char *buf = malloc(AUTHTOKEN_MAX_BYTES + 3);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 'k', AUTHTOKEN_MAX_BYTES + 1);
    buf[AUTHTOKEN_MAX_BYTES] = '\n';
    write_token(buf, AUTHTOKEN_MAX_BYTES + 1, 0600);
    char err[ERRLEN] = "", *tok = NULL;
    ck_assert_msg(authtoken_load(tok_path, &tok, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(strlen(tok), AUTHTOKEN_MAX_BYTES);
    char *hdr = malloc(AUTHTOKEN_MAX_BYTES + 16);
    ck_assert_ptr_nonnull(hdr);
    snprintf(hdr, AUTHTOKEN_MAX_BYTES + 16, "Bearer %s", tok);
    ck_assert(authtoken_check(tok, hdr));
    hdr[strlen(hdr) - 1] = 'j';
    ck_assert(!authtoken_check(tok, hdr));
    authtoken_free(tok);

    memset(buf, 'k', AUTHTOKEN_MAX_BYTES + 1);
    buf[AUTHTOKEN_MAX_BYTES + 1] = '\n';
    write_token(buf, AUTHTOKEN_MAX_BYTES + 2, 0600);
    load_bad("longer than");
    write_token(buf, AUTHTOKEN_MAX_BYTES + 1, 0600); /* no newline, one byte too many */
    load_bad("longer than");
    memset(buf, 'k', AUTHTOKEN_MAX_BYTES + 3); /* far longer: still refused, never truncated */
    write_token(buf, AUTHTOKEN_MAX_BYTES + 3, 0600);
    load_bad("longer than");
    free(buf);
    free(hdr);
}
END_TEST

/* Limits: a one-byte token works both ways. */
START_TEST(test_shortest_token)
{
    write_token("x\n", 2, 0600);
    load_ok("x");
    ck_assert(authtoken_check("x", "Bearer x"));
    ck_assert(!authtoken_check("x", "Bearer y"));
    ck_assert(!authtoken_check("x", "Bearer xx"));
}
END_TEST

static Suite *authtoken_suite(void)
{
    Suite *s = suite_create("authtoken");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_add_test(core, test_load_forms);
    tcase_add_test(core, test_load_refusals);
    tcase_add_test(core, test_check_header);
    suite_add_tcase(s, core);

    TCase *limits = tcase_create("limits");
    tcase_add_checked_fixture(limits, setup, teardown);
    tcase_add_test(limits, test_length_limit);
    tcase_add_test(limits, test_shortest_token);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(authtoken_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
