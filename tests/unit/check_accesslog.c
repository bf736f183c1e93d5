/*
 * check_accesslog.c - unit tests of lib/accesslog: the line format, the
 * encoding of request targets (at the cap, N and N+1), turning the log on
 * and off, reopening after a logrotate-style move, and concurrent writers
 * never interleaving.  Files live in a private mkdtemp directory removed by
 * each test.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accesslog.h"

#define ERRLEN 256

static char tmpdir[64];
static char log_path[128];
static char moved_path[128];

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_accesslog.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        abort();
    snprintf(log_path, sizeof(log_path), "%s/access.log", tmpdir);
    snprintf(moved_path, sizeof(moved_path), "%s/access.log.1", tmpdir);
}

static void teardown(void)
{
    unlink(log_path);
    unlink(moved_path);
    rmdir(tmpdir);
}

/* The whole file as a malloc'd string ("" if missing). */
static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *text = NULL;
    size_t cap = 0;
    if (fp == NULL || getdelim(&text, &cap, '\0', fp) < 0) {
        free(text);
        text = strdup("");
    }
    if (fp != NULL)
        fclose(fp);
    return text;
}

static size_t count_lines(const char *text)
{
    size_t n = 0;
    for (; *text != '\0'; text++)
        n += *text == '\n';
    return n;
}

static struct accesslog_entry entry(const char *target, unsigned status)
{
    struct accesslog_entry e = {
        .when = {.tv_sec = 1714564800, .tv_nsec = 123456789}, /* 2024-05-01T12:00:00.123Z */
        .client = "127.0.0.1",
        .method = "GET",
        .target = target,
        .status = status,
        .bytes = 35,
        .duration_ms = 7,
    };
    return e;
}

START_TEST(test_format)
{
    char line[ACCESSLOG_LINE_BYTES];
    struct accesslog_entry e = entry("/v1/health", 200);
    size_t n = accesslog_format(&e, line, sizeof(line));
    const char *want = "2024-05-01T12:00:00.123Z client=127.0.0.1 method=GET "
                       "target=\"/v1/health\" status=200 bytes=35 ms=7\n";
    ck_assert_str_eq(line, want);
    ck_assert_uint_eq(n, strlen(want));
    /* A hostile method cannot break the line or the quoting. */
    e.method = "G\"E T\n\\";
    e.client = "unix";
    accesslog_format(&e, line, sizeof(line));
    ck_assert_ptr_nonnull(strstr(line, "client=unix method=G?E?T?? target="));
    ck_assert_uint_eq(count_lines(line), 1);
    e.method = "";
    e.client = NULL;
    e.target = NULL;
    e.status = 0;
    accesslog_format(&e, line, sizeof(line));
    ck_assert_ptr_nonnull(strstr(line, "client=- method=- target=\"\" status=0"));
}
END_TEST

START_TEST(test_target_encoding)
{
    struct accesslog_target t;
    accesslog_target_init(&t, "/v1/file");
    ck_assert_str_eq(t.text, "/v1/file");
    accesslog_target_arg(&t, "url", "https://h.example/a b?x=1&y=\"2\"#f");
    accesslog_target_arg(&t, "flag", NULL);
    accesslog_target_arg(&t, "k", "");
    ck_assert_str_eq(t.text, "/v1/file?url=https://h.example/a%20b%3Fx%3D1%26y%3D%222%22%23f"
                             "&flag&k=");
    ck_assert(!t.cut);
    accesslog_target_init(&t, "/p\n\x01\xff%");
    ck_assert_str_eq(t.text, "/p%0A%01%FF%25");
    accesslog_target_init(&t, NULL);
    ck_assert_str_eq(t.text, "");
}
END_TEST

START_TEST(test_on_off_reopen)
{
    struct accesslog *log = NULL;
    char err[ERRLEN] = "";
    ck_assert_int_eq(accesslog_new(&log), 0);
    struct accesslog_entry e = entry("/one", 200);
    ck_assert(!accesslog_enabled(log));
    ck_assert_int_eq(accesslog_write(log, &e), 0); /* off: dropped */
    ck_assert_msg(accesslog_set_path(log, log_path, err, sizeof(err)) == 0, "%s", err);
    ck_assert(accesslog_enabled(log));
    struct stat st;
    ck_assert_int_eq(stat(log_path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, ACCESSLOG_FILE_MODE);
    ck_assert_int_eq(accesslog_write(log, &e), 0);

    /* logrotate moves the file; lines follow it until the reopen. */
    ck_assert_int_eq(rename(log_path, moved_path), 0);
    e.target = "/two";
    ck_assert_int_eq(accesslog_write(log, &e), 0);
    ck_assert_msg(accesslog_set_path(log, log_path, err, sizeof(err)) == 0, "%s", err);
    e.target = "/three";
    ck_assert_int_eq(accesslog_write(log, &e), 0);
    char *old = slurp(moved_path), *cur = slurp(log_path);
    ck_assert_uint_eq(count_lines(old), 2);
    ck_assert_ptr_nonnull(strstr(old, "target=\"/one\""));
    ck_assert_ptr_nonnull(strstr(old, "target=\"/two\""));
    ck_assert_uint_eq(count_lines(cur), 1);
    ck_assert_ptr_nonnull(strstr(cur, "target=\"/three\""));
    free(old);
    free(cur);

    /* A failed reopen keeps the current file. */
    char bad[200];
    snprintf(bad, sizeof(bad), "%s/no/such/dir/access.log", tmpdir);
    ck_assert_int_eq(accesslog_set_path(log, bad, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "access_log") != NULL && strstr(err, "No such file") != NULL, "%s",
                  err);
    e.target = "/four";
    ck_assert_int_eq(accesslog_write(log, &e), 0);

    /* Off, then on again. */
    ck_assert_int_eq(accesslog_set_path(log, "", err, sizeof(err)), 0);
    ck_assert(!accesslog_enabled(log));
    e.target = "/five";
    ck_assert_int_eq(accesslog_write(log, &e), 0);
    ck_assert_int_eq(accesslog_set_path(log, log_path, err, sizeof(err)), 0);
    e.target = "/six";
    ck_assert_int_eq(accesslog_write(log, &e), 0);
    cur = slurp(log_path);
    ck_assert_uint_eq(count_lines(cur), 3);
    ck_assert_ptr_nonnull(strstr(cur, "/four"));
    ck_assert_ptr_null(strstr(cur, "/five"));
    ck_assert_ptr_nonnull(strstr(cur, "/six"));
    free(cur);
    accesslog_free(log);
    accesslog_free(NULL);
}
END_TEST

#define WRITERS    8
#define LINES_EACH 500

static void *writer(void *arg)
{
    struct accesslog *log = arg;
    struct accesslog_target t;
    accesslog_target_init(&t, "/v1/file");
    char big[400];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    accesslog_target_arg(&t, "url", big);
    struct accesslog_entry e = entry(t.text, 206);
    for (int i = 0; i < LINES_EACH; i++)
        if (accesslog_write(log, &e) < 0)
            return (void *)1;
    return NULL;
}

/* Writers racing with reopens: every line whole, none lost. */
START_TEST(test_concurrent_writers)
{
    struct accesslog *log = NULL;
    char err[ERRLEN] = "";
    ck_assert_int_eq(accesslog_new(&log), 0);
    ck_assert_int_eq(accesslog_set_path(log, log_path, err, sizeof(err)), 0);
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, writer, log), 0);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(accesslog_set_path(log, log_path, err, sizeof(err)), 0);
    for (int i = 0; i < WRITERS; i++) {
        void *rv = NULL;
        pthread_join(th[i], &rv);
        ck_assert_ptr_null(rv);
    }
    accesslog_free(log);
    char *text = slurp(log_path);
    ck_assert_uint_eq(count_lines(text), WRITERS * LINES_EACH);
    size_t first = strcspn(text, "\n") + 1;
    for (size_t off = 0; text[off] != '\0'; off += first)
        ck_assert_msg(strncmp(text + off, text, first) == 0, "line at %zu differs", off);
    free(text);
}
END_TEST

/* Limits: a target of exactly ACCESSLOG_TARGET_BYTES is kept whole; one byte more is cut. */
START_TEST(test_target_cap)
{
    char path[ACCESSLOG_TARGET_BYTES + 2];
    struct accesslog_target t;
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    path[ACCESSLOG_TARGET_BYTES] = '\0';
    accesslog_target_init(&t, path);
    ck_assert(!t.cut);
    ck_assert_uint_eq(t.len, ACCESSLOG_TARGET_BYTES);
    ck_assert_str_eq(t.text, path);
    accesslog_target_arg(&t, "x", NULL); /* N+1 */
    ck_assert(t.cut);
    ck_assert_uint_eq(strlen(t.text), ACCESSLOG_TARGET_BYTES + 3);
    ck_assert_str_eq(t.text + ACCESSLOG_TARGET_BYTES, "...");
    accesslog_target_arg(&t, "y", "z"); /* nothing more after a cut */
    ck_assert_uint_eq(strlen(t.text), ACCESSLOG_TARGET_BYTES + 3);

    /* An escape is never split: 511 bytes plus a 3-byte escape is cut before it. */
    path[ACCESSLOG_TARGET_BYTES - 1] = ' ';
    accesslog_target_init(&t, path);
    ck_assert(t.cut);
    ck_assert_uint_eq(t.len, ACCESSLOG_TARGET_BYTES - 1 + 3);
    ck_assert_str_eq(t.text + ACCESSLOG_TARGET_BYTES - 1, "...");

    /* The longest target still makes one line within ACCESSLOG_LINE_BYTES. */
    char line[ACCESSLOG_LINE_BYTES];
    struct accesslog_entry e = entry(t.text, 200);
    e.method = "VERYLONGMETHODNAMEXXXXXXXX";
    e.bytes = UINT64_MAX;
    e.duration_ms = UINT64_MAX;
    e.client = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
    size_t n = accesslog_format(&e, line, sizeof(line));
    ck_assert_uint_lt(n, sizeof(line) - 1);
    ck_assert_uint_eq(count_lines(line), 1);
    ck_assert_ptr_nonnull(strstr(line, "method=VERYLONGMETHODNA target="));
    ck_assert_ptr_nonnull(strstr(line, "ms=18446744073709551615\n"));
}
END_TEST

static Suite *accesslog_suite(void)
{
    Suite *s = suite_create("accesslog");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_add_test(core, test_format);
    tcase_add_test(core, test_target_encoding);
    tcase_add_test(core, test_on_off_reopen);
    tcase_add_test(core, test_concurrent_writers);
    tcase_set_timeout(core, 30);
    suite_add_tcase(s, core);

    TCase *limits = tcase_create("limits");
    tcase_add_checked_fixture(limits, setup, teardown);
    tcase_add_test(limits, test_target_cap);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(accesslog_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
