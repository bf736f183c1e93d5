/*
 * check_workerpool.c - the daemon side of the worker processes against
 * workers that misbehave on purpose: this test program re-executes itself
 * as a fake h5chunkd-worker (FAKE_WORKER_MODE in the environment) that
 * answers, crashes, hangs, lies about its result size or its errors, asks
 * for bytes outside the file, or never gets ready.  Also the framing of
 * lib/workerproto.c (bad magic, EOF, deadlines), DESCRIBE_MANY's path list
 * and result records, and how a worker's error codes are trusted.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "workerpool.h"
#include "workerproto.h"

#define WORKER_FD    3
#define CRASH_REASON "signal 11"

static char self_path[PATH_MAX];

/* ---- the fake worker ---- */

static void fake_reply(const char *mode, const struct wp_op *op)
{
    struct wp_result res = {0};
    if (strcmp(mode, "crash") == 0)
        raise(SIGSEGV);
    if (strcmp(mode, "hang") == 0)
        for (;;)
            pause();
    if (strcmp(mode, "exit") == 0)
        _exit(3);
    if (strcmp(mode, "badread") == 0) {
        struct wp_read rq = {.file_id = op->file_id, .offset = op->file_size, .length = 16};
        wp_send(WORKER_FD, WP_READ, &rq, sizeof(rq), NULL, 0, 0);
        pause();
    }
    if (strcmp(mode, "oversize") == 0) {
        res.data_len = 1ULL << 40; /* a consistent frame claiming a terabyte */
        struct wp_header hdr = {
            .magic = WP_MAGIC, .type = WP_RESULT, .length = sizeof(res) + res.data_len};
        if (write(WORKER_FD, &hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr) &&
            write(WORKER_FD, &res, sizeof(res)) == (ssize_t)sizeof(res))
            pause();
        _exit(4);
    }
    if (strcmp(mode, "liar") == 0) {
        h5cd_fail(&res.error, H5CD_E_UPSTREAM_ERROR, "upstream failed (it did not)");
        wp_send(WORKER_FD, WP_RESULT, &res, sizeof(res), NULL, 0, 0);
        return;
    }
    if (strcmp(mode, "classified") == 0) {
        h5cd_fail(&res.error, H5CD_E_FILTER_UNAVAILABLE, "filter 32000 (lzf) is not available");
        wp_send(WORKER_FD, WP_RESULT, &res, sizeof(res), NULL, 0, 0);
        return;
    }
    /* echo: the path as the result */
    res.data_len = strlen(op->path);
    res.format = 1;
    res.elem_size = 7;
    wp_send(WORKER_FD, WP_RESULT, &res, sizeof(res), op->path, (size_t)res.data_len, 0);
}

static int fake_worker(const char *mode)
{
    if (strcmp(mode, "noready") == 0)
        return 1;
    if (wp_send(WORKER_FD, WP_READY, NULL, 0, NULL, 0, 0) < 0)
        return 2;
    for (;;) {
        struct wp_header hdr;
        static struct wp_op op;
        if (wp_recv_header(WORKER_FD, &hdr, 0) < 0)
            return 0;
        if (hdr.type != WP_OP || hdr.length < sizeof(op) ||
            wp_read_full(WORKER_FD, &op, sizeof(op), 0) < 0)
            return 2;
        if (strcmp(mode, "paths") == 0) { /* echo what follows the operation */
            static char extra[WP_MAX_PATHS_BYTES];
            struct wp_result res = {.data_len = hdr.length - sizeof(op)};
            if (res.data_len > sizeof(extra) ||
                wp_read_full(WORKER_FD, extra, (size_t)res.data_len, 0) < 0 ||
                wp_send(WORKER_FD, WP_RESULT, &res, sizeof(res), extra, (size_t)res.data_len, 0) <
                    0)
                return 2;
            continue;
        }
        if (wp_skip(WORKER_FD, hdr.length - sizeof(op), 0) < 0)
            return 2;
        fake_reply(mode, &op);
    }
}

/* ---- helpers ---- */

static struct workerpool *pool_for(const char *mode, unsigned timeout_ms, struct h5cd_stats *stats)
{
    setenv("FAKE_WORKER_MODE", mode, 1);
    /* In sanitizer builds, let a fake worker's SIGSEGV kill it as in production
     * (AddressSanitizer would report it slowly and exit 1). */
    setenv("ASAN_OPTIONS", "handle_segv=0", 1);
    stats_init(stats);
    struct workerpool_config cfg = {
        .worker_path = self_path, .workers = 1, .timeout_ms = timeout_ms, .log_level = "error"};
    struct workerpool *pool = NULL;
    ck_assert_int_eq(workerpool_new(&cfg, NULL, stats, &pool), 0);
    return pool;
}

static const struct remote_file test_file = {.url = "http://127.0.0.1/f.h5",
                                             .identity = "http://127.0.0.1/f.h5",
                                             .file_id = 7,
                                             .size = 4096};

static int run_op(struct workerpool *pool, struct workerpool_call *call, struct h5cd_error *err)
{
    static struct wp_op op;
    memset(&op, 0, sizeof(op));
    op.opcode = WP_OP_DESCRIBE;
    strcpy(op.path, "/group/dataset");
    memset(call, 0, sizeof(*call));
    call->file = &test_file;
    call->op = &op;
    call->max_result = 1024;
    memset(err, 0, sizeof(*err));
    return workerpool_run(pool, call, err);
}

/* ---- tests ---- */

START_TEST(test_answer)
{
    struct h5cd_stats stats;
    struct workerpool *pool = pool_for("echo", 5000, &stats);
    struct workerpool_call call;
    struct h5cd_error err;
    for (int i = 0; i < 3; i++) { /* the same worker serves one operation after another */
        ck_assert_int_eq(run_op(pool, &call, &err), 0);
        ck_assert_int_eq(call.fate, WORKERPOOL_ANSWERED);
        ck_assert_uint_eq(call.len, strlen("/group/dataset"));
        ck_assert_mem_eq(call.data, "/group/dataset", call.len);
        ck_assert_uint_eq(call.format, 1);
        ck_assert_uint_eq(call.elem_size, 7);
        free(call.data);
    }
    ck_assert_uint_eq(STATS_GET(&stats, worker_requests), 3);
    ck_assert_uint_eq(STATS_GET(&stats, worker_crashes), 0);
    workerpool_free(pool);
}
END_TEST

START_TEST(test_crash)
{
    struct h5cd_stats stats;
    struct workerpool *pool = pool_for("crash", 5000, &stats);
    struct workerpool_call call;
    struct h5cd_error err;
    ck_assert_int_eq(run_op(pool, &call, &err), -1);
    ck_assert_int_eq(call.fate, WORKERPOOL_CRASHED);
    ck_assert_int_eq(err.code, H5CD_E_DAMAGED_FILE);
    ck_assert_ptr_nonnull(strstr(call.reason, CRASH_REASON));
    ck_assert_ptr_nonnull(strstr(err.message, CRASH_REASON));
    ck_assert_ptr_null(call.data);
    ck_assert_uint_eq(STATS_GET(&stats, worker_crashes), 1);
    /* the next operation gets a new worker (which crashes again, as it must) */
    ck_assert_int_eq(run_op(pool, &call, &err), -1);
    ck_assert_int_eq(call.fate, WORKERPOOL_CRASHED);
    ck_assert_uint_eq(STATS_GET(&stats, worker_crashes), 2);
    workerpool_free(pool);
}
END_TEST

START_TEST(test_exit)
{
    struct h5cd_stats stats;
    struct workerpool *pool = pool_for("exit", 5000, &stats);
    struct workerpool_call call;
    struct h5cd_error err;
    ck_assert_int_eq(run_op(pool, &call, &err), -1);
    ck_assert_int_eq(call.fate, WORKERPOOL_CRASHED);
    ck_assert_int_eq(err.code, H5CD_E_DAMAGED_FILE);
    ck_assert_ptr_nonnull(strstr(call.reason, "exited with status 3"));
    workerpool_free(pool);
}
END_TEST

START_TEST(test_hang)
{
    struct h5cd_stats stats;
    struct workerpool *pool = pool_for("hang", 300, &stats);
    struct workerpool_call call;
    struct h5cd_error err;
    uint64_t t0 = wp_now_ms();
    ck_assert_int_eq(run_op(pool, &call, &err), -1);
    uint64_t took = wp_now_ms() - t0;
    ck_assert_int_eq(call.fate, WORKERPOOL_TIMED_OUT);
    ck_assert_int_eq(err.code, H5CD_E_DAMAGED_FILE);
    ck_assert_uint_ge(took, 290);
    ck_assert_uint_lt(took, 30000); /* includes starting the worker */
    ck_assert_uint_eq(STATS_GET(&stats, worker_timeouts), 1);
    ck_assert_uint_eq(STATS_GET(&stats, worker_crashes), 0);
    workerpool_free(pool);
}
END_TEST

START_TEST(test_oversize)
{
    struct h5cd_stats stats;
    struct workerpool *pool = pool_for("oversize", 5000, &stats);
    struct workerpool_call call;
    struct h5cd_error err;
    ck_assert_int_eq(run_op(pool, &call, &err), -1);
    ck_assert_int_eq(call.fate, WORKERPOOL_MISBEHAVED);
    ck_assert_int_eq(err.code, H5CD_E_DAMAGED_FILE);
    ck_assert_ptr_nonnull(strstr(call.reason, "larger than allowed"));
    ck_assert_ptr_null(call.data);
    workerpool_free(pool);
}
END_TEST

START_TEST(test_read_outside_file)
{
    struct h5cd_stats stats;
    struct workerpool *pool = pool_for("badread", 5000, &stats);
    struct workerpool_call call;
    struct h5cd_error err;
    ck_assert_int_eq(run_op(pool, &call, &err), -1);
    ck_assert_int_eq(call.fate, WORKERPOOL_MISBEHAVED);
    ck_assert_ptr_nonnull(strstr(call.reason, "outside the file"));
    workerpool_free(pool);
}
END_TEST

START_TEST(test_error_codes)
{
    struct h5cd_stats stats;
    struct workerpool *pool = pool_for("liar", 5000, &stats);
    struct workerpool_call call;
    struct h5cd_error err;
    /* an upstream failure the daemon never saw is not believed */
    ck_assert_int_eq(run_op(pool, &call, &err), -1);
    ck_assert_int_eq(call.fate, WORKERPOOL_ANSWERED);
    ck_assert_int_eq(err.code, H5CD_E_DAMAGED_FILE);
    workerpool_free(pool);
    pool = pool_for("classified", 5000, &stats);
    ck_assert_int_eq(run_op(pool, &call, &err), -1);
    ck_assert_int_eq(call.fate, WORKERPOOL_ANSWERED);
    ck_assert_int_eq(err.code, H5CD_E_FILTER_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(err.message, "32000"));
    workerpool_free(pool);
}
END_TEST

START_TEST(test_not_ready)
{
    struct h5cd_stats stats;
    struct workerpool *pool = pool_for("noready", 5000, &stats);
    struct workerpool_call call;
    struct h5cd_error err;
    ck_assert_int_eq(run_op(pool, &call, &err), -1);
    ck_assert_int_eq(call.fate, WORKERPOOL_NOT_RUN); /* not the file's fault */
    ck_assert_int_eq(err.code, H5CD_E_UNAVAILABLE);
    ck_assert_uint_eq(STATS_GET(&stats, worker_crashes), 0);
    workerpool_free(pool);
}
END_TEST

START_TEST(test_framing)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct wp_header hdr;
    /* a whole frame round-trips */
    ck_assert_int_eq(wp_send(sv[0], WP_READ, "ab", 2, "cde", 3, 0), 0);
    ck_assert_int_eq(wp_recv_header(sv[1], &hdr, wp_now_ms() + 1000), 0);
    ck_assert_uint_eq(hdr.type, WP_READ);
    ck_assert_uint_eq(hdr.length, 5);
    char buf[8];
    ck_assert_int_eq(wp_read_full(sv[1], buf, 5, 0), 0);
    ck_assert_mem_eq(buf, "abcde", 5);
    /* nothing arrives: the deadline holds */
    uint64_t t0 = wp_now_ms();
    ck_assert_int_eq(wp_recv_header(sv[1], &hdr, t0 + 100), -1);
    ck_assert_int_eq(errno, ETIMEDOUT);
    ck_assert_uint_ge(wp_now_ms() - t0, 90);
    /* a bad magic or type is a protocol error */
    struct wp_header bad = {.magic = 0x12345678, .type = WP_OP, .length = 0};
    ck_assert_int_eq((int)write(sv[0], &bad, sizeof(bad)), (int)sizeof(bad));
    ck_assert_int_eq(wp_recv_header(sv[1], &hdr, 0), -1);
    ck_assert_int_eq(errno, EPROTO);
    bad = (struct wp_header){.magic = WP_MAGIC, .type = 99, .length = 0};
    ck_assert_int_eq((int)write(sv[0], &bad, sizeof(bad)), (int)sizeof(bad));
    ck_assert_int_eq(wp_recv_header(sv[1], &hdr, 0), -1);
    ck_assert_int_eq(errno, EPROTO);
    /* a peer that stops reading cannot hold a sender past its deadline */
    size_t big = 16u * 1024 * 1024;
    char *payload = calloc(1, big);
    ck_assert_ptr_nonnull(payload);
    t0 = wp_now_ms();
    ck_assert_int_eq(wp_send(sv[0], WP_READ_REPLY, payload, big, NULL, 0, t0 + 200), -1);
    ck_assert_int_eq(errno, ETIMEDOUT);
    ck_assert_uint_lt(wp_now_ms() - t0, 5000);
    free(payload);
    close(sv[1]);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    /* EOF in the middle of a header */
    ck_assert_int_eq((int)write(sv[0], "abc", 3), 3);
    close(sv[0]);
    ck_assert_int_eq(wp_recv_header(sv[1], &hdr, 0), -1);
    ck_assert_int_eq(errno, EPIPE);
    close(sv[1]);
}
END_TEST

/* DESCRIBE_MANY's paths follow the operation as they were given. */
START_TEST(test_paths_sent)
{
    struct h5cd_stats stats;
    struct workerpool *pool = pool_for("paths", 5000, &stats);
    static struct wp_op op;
    memset(&op, 0, sizeof(op));
    op.opcode = WP_OP_DESCRIBE_MANY;
    static const char paths[] = "/a\0/a/b\0/c\0";
    op.npaths = 3;
    op.paths_len = sizeof(paths) - 1;
    struct workerpool_call call = {
        .file = &test_file, .op = &op, .paths = paths, .max_result = WP_MAX_DOCS_RESULT_BYTES};
    struct h5cd_error err = {0};
    ck_assert_int_eq(workerpool_run(pool, &call, &err), 0);
    ck_assert_uint_eq(call.len, sizeof(paths) - 1);
    ck_assert_mem_eq(call.data, paths, sizeof(paths) - 1);
    ck_assert_int_eq(call.upstream_error.code, H5CD_OK);
    free(call.data);
    /* coordinates and paths at once is our bug, refused before any worker sees it */
    op.ncoords = 1;
    ck_assert_int_eq(workerpool_run(pool, &call, &err), -1);
    ck_assert_int_eq(err.code, H5CD_E_INTERNAL);
    workerpool_free(pool);
}
END_TEST

/* Records of a DESCRIBE_MANY result, parsed as hostile input. */
START_TEST(test_doc_records)
{
    uint8_t buf[512];
    size_t len = 0;
    struct wp_doc d = {.code = H5CD_OK, .length = 4};
    memcpy(buf + len, &d, sizeof(d));
    memcpy(buf + len + sizeof(d), "{}{}", 4);
    len += sizeof(d) + 4;
    d = (struct wp_doc){.code = H5CD_E_NOT_FOUND, .length = 3};
    memcpy(buf + len, &d, sizeof(d));
    memcpy(buf + len + sizeof(d), "gone", 3);
    len += sizeof(d) + 3;
    size_t pos = 0;
    struct wp_doc got;
    const uint8_t *bytes = NULL;
    ck_assert_int_eq(wp_doc_next(buf, len, &pos, &got, &bytes), 1);
    ck_assert_uint_eq(got.length, 4);
    ck_assert_mem_eq(bytes, "{}{}", 4);
    ck_assert_int_eq(wp_doc_next(buf, len, &pos, &got, &bytes), 1);
    ck_assert_uint_eq(got.code, H5CD_E_NOT_FOUND);
    ck_assert_mem_eq(bytes, "gon", 3);
    ck_assert_int_eq(wp_doc_next(buf, len, &pos, &got, &bytes), 0);
    /* a record longer than what is left, a cut head, a message longer than an error's */
    pos = 0;
    ck_assert_int_eq(wp_doc_next(buf, sizeof(d) + 3, &pos, &got, &bytes), -1);
    pos = 0;
    ck_assert_int_eq(wp_doc_next(buf, sizeof(d) - 1, &pos, &got, &bytes), -1);
    d = (struct wp_doc){.code = H5CD_E_DAMAGED_FILE, .length = H5CD_MAX_ERROR_MESSAGE};
    memcpy(buf, &d, sizeof(d));
    pos = 0;
    ck_assert_int_eq(wp_doc_next(buf, sizeof(d) + H5CD_MAX_ERROR_MESSAGE, &pos, &got, &bytes), -1);
    d = (struct wp_doc){.code = H5CD_OK, .length = UINT32_MAX};
    memcpy(buf, &d, sizeof(d));
    pos = 0;
    ck_assert_int_eq(wp_doc_next(buf, sizeof(buf), &pos, &got, &bytes), -1);
}
END_TEST

/* A worker's own codes: the ones it may report are kept, others are damaged_file, and a
 * failed read of ours explains everything after it. */
START_TEST(test_worker_error)
{
    struct workerpool_call call = {0};
    struct h5cd_error out;
    workerpool_worker_error(&call, H5CD_E_NOT_FOUND, "no such object", &out);
    ck_assert_int_eq(out.code, H5CD_E_NOT_FOUND);
    ck_assert_str_eq(out.message, "no such object");
    workerpool_worker_error(&call, H5CD_E_UPSTREAM_ERROR, "the origin failed", &out);
    ck_assert_int_eq(out.code, H5CD_E_DAMAGED_FILE);
    ck_assert_ptr_nonnull(strstr(out.message, "the origin failed"));
    workerpool_worker_error(&call, (enum h5cd_errcode)1000, "nonsense", &out);
    ck_assert_int_eq(out.code, H5CD_E_DAMAGED_FILE);
    h5cd_fail(&call.upstream_error, H5CD_E_UPSTREAM_TIMEOUT, "the origin did not answer");
    workerpool_worker_error(&call, H5CD_E_NOT_FOUND, "no such object", &out);
    ck_assert_int_eq(out.code, H5CD_E_UPSTREAM_TIMEOUT);
}
END_TEST

static Suite *workerpool_suite(void)
{
    Suite *s = suite_create("workerpool");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_framing);
    tcase_add_test(tc, test_answer);
    tcase_add_test(tc, test_crash);
    tcase_add_test(tc, test_exit);
    tcase_add_test(tc, test_hang);
    tcase_add_test(tc, test_oversize);
    tcase_add_test(tc, test_read_outside_file);
    tcase_add_test(tc, test_error_codes);
    tcase_add_test(tc, test_not_ready);
    tcase_add_test(tc, test_paths_sent);
    tcase_add_test(tc, test_doc_records);
    tcase_add_test(tc, test_worker_error);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    (void)argc;
    const char *mode = getenv("FAKE_WORKER_MODE");
    if (mode != NULL && argc > 1 && strncmp(argv[1], "--memory=", 9) == 0)
        return fake_worker(mode);
    if (realpath("/proc/self/exe", self_path) == NULL)
        return 99;
    SRunner *sr = srunner_create(workerpool_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
