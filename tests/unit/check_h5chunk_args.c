/*
 * check_h5chunk_args.c - unit tests of the h5chunk client's pure parts:
 * the command line (client/args.c: every command, operands, options,
 * daemon address precedence, unix: addresses, usage errors), the helpers
 * of client/util.c (chunk keys, base64url, durations, progress lines) and
 * the frame stream parser of client/frames.c, each with its limits at N
 * and N + 1.
 */
#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "h5chunk.h"

#define MAXARGS 32

static struct h5c_args A;
static char ERR[512];

/* Parses the NULL-terminated words (the program name is added) with the
 * given environment values; returns h5c_args_parse's result. */
static int parse_env(const char *env_url, const char *env_token, ...)
{
    char *argv[MAXARGS];
    int argc = 0;
    va_list ap;
    argv[argc++] = (char *)"h5chunk";
    va_start(ap, env_token);
    const char *w;
    while ((w = va_arg(ap, const char *)) != NULL && argc < MAXARGS - 1)
        argv[argc++] = (char *)w;
    va_end(ap);
    argv[argc] = NULL;
    h5c_args_free(&A);
    ERR[0] = '\0';
    return h5c_args_parse(argc, argv, env_url, env_token, &A, ERR, sizeof(ERR));
}

#define parse(...) parse_env(NULL, NULL, __VA_ARGS__, (const char *)NULL)

static void teardown(void)
{
    h5c_args_free(&A);
}

/* ---- commands ---- */

START_TEST(test_meta)
{
    ck_assert_int_eq(parse("meta", "http://h/f.h5", "/a/b"), 0);
    ck_assert_int_eq(A.cmd, H5C_CMD_META);
    ck_assert_str_eq(A.url, "http://h/f.h5");
    ck_assert_str_eq(A.path, "/a/b");
    ck_assert_ptr_null(A.select);
    ck_assert(!A.json);
    ck_assert_str_eq(A.daemon.base, H5C_DEFAULT_DAEMON);
    ck_assert_str_eq(A.daemon.unix_path, "");
    ck_assert_uint_eq(A.timeout_ms, H5C_DEFAULT_TIMEOUT_MS);
    ck_assert_int_eq(parse("--json", "meta", "u", "p"), 0);
    ck_assert(A.json);
    ck_assert_int_eq(parse("meta", "u", "p", "--json"), 0);
    ck_assert(A.json);
}
END_TEST

START_TEST(test_get)
{
    ck_assert_int_eq(parse("get", "u", "/d", "0.0", "1.2", "-o", "out", "3.4", "--decode"), 0);
    ck_assert_int_eq(A.cmd, H5C_CMD_GET);
    ck_assert_str_eq(A.url, "u");
    ck_assert_str_eq(A.path, "/d");
    ck_assert_uint_eq(A.nkeys, 3);
    ck_assert_str_eq(A.keys[0], "0.0");
    ck_assert_str_eq(A.keys[1], "1.2");
    ck_assert_str_eq(A.keys[2], "3.4");
    ck_assert_str_eq(A.out, "out");
    ck_assert(A.decode);
    ck_assert_ptr_null(A.select);
    /* -oDIR, --output=DIR, and "--" before keys */
    ck_assert_int_eq(parse("get", "-oD", "u", "/d", "--", "7"), 0);
    ck_assert_str_eq(A.out, "D");
    ck_assert_uint_eq(A.nkeys, 1);
    ck_assert_str_eq(A.keys[0], "7");
    ck_assert_int_eq(parse("get", "--output=E", "u", "/d", "0"), 0);
    ck_assert_str_eq(A.out, "E");
    ck_assert(!A.decode);
}
END_TEST

START_TEST(test_slice_prefetch)
{
    ck_assert_int_eq(parse("slice", "u", "/d", "0:10,5", "-o", "x.npy"), 0);
    ck_assert_int_eq(A.cmd, H5C_CMD_SLICE);
    ck_assert_str_eq(A.select, "0:10,5");
    ck_assert_str_eq(A.out, "x.npy");
    ck_assert_int_eq(parse("prefetch", "u", "/d"), 0);
    ck_assert_int_eq(A.cmd, H5C_CMD_PREFETCH);
    ck_assert_ptr_null(A.select);
    ck_assert_int_eq(parse("prefetch", "u", "/d", "::2", "--timeout", "90s"), 0);
    ck_assert_str_eq(A.select, "::2");
    ck_assert_uint_eq(A.timeout_ms, 90000);
    /* a negative index is an operand after "--" */
    ck_assert_int_eq(parse("slice", "u", "/d", "--", "-1"), 0);
    ck_assert_str_eq(A.select, "-1");
}
END_TEST

START_TEST(test_admin_commands)
{
    ck_assert_int_eq(parse("stats"), 0);
    ck_assert_int_eq(A.cmd, H5C_CMD_STATS);
    ck_assert_int_eq(parse("cache", "ls"), 0);
    ck_assert_int_eq(A.cmd, H5C_CMD_CACHE_LS);
    ck_assert_ptr_null(A.url);
    ck_assert_int_eq(parse("cache", "ls", "u"), 0);
    ck_assert_str_eq(A.url, "u");
    ck_assert_int_eq(parse("cache", "purge", "u"), 0);
    ck_assert_int_eq(A.cmd, H5C_CMD_CACHE_PURGE);
    ck_assert_str_eq(A.url, "u");
    ck_assert(!A.all);
    ck_assert_int_eq(parse("cache", "purge", "--all"), 0);
    ck_assert(A.all);
    ck_assert_ptr_null(A.url);
    ck_assert_int_eq(parse("zarr-url", "http://h/f"), 0);
    ck_assert_int_eq(A.cmd, H5C_CMD_ZARR_URL);
    ck_assert_str_eq(A.url, "http://h/f");
    ck_assert_str_eq(h5c_command_name(H5C_CMD_CACHE_PURGE), "cache purge");
}
END_TEST

START_TEST(test_help_version)
{
    ck_assert_int_eq(parse("--help"), 0);
    ck_assert(A.help);
    ck_assert_int_eq(A.cmd, H5C_CMD_NONE);
    ck_assert_int_eq(parse("-h"), 0);
    ck_assert(A.help);
    ck_assert_int_eq(parse("get", "--help"), 0); /* no operands needed */
    ck_assert(A.help);
    ck_assert_int_eq(A.cmd, H5C_CMD_GET);
    ck_assert_int_eq(parse("help", "slice"), 0);
    ck_assert(A.help);
    ck_assert_int_eq(A.cmd, H5C_CMD_SLICE);
    ck_assert_int_eq(parse("cache", "--help"), 0);
    ck_assert(A.help);
    ck_assert_int_eq(parse("--version"), 0);
    ck_assert(A.version);
    ck_assert_int_eq(parse("-V"), 0);
    ck_assert(A.version);
    /* help wins over a bad daemon address, so it can always be read */
    ck_assert_int_eq(parse_env("ftp://x", NULL, "--help", (const char *)NULL), 0);
}
END_TEST

/* ---- daemon address and token: precedence ---- */

START_TEST(test_daemon_precedence)
{
    ck_assert_int_eq(parse_env("http://127.0.0.1:9000", NULL, "stats", (const char *)NULL), 0);
    ck_assert_str_eq(A.daemon.base, "http://127.0.0.1:9000");
    ck_assert_int_eq(parse_env("http://127.0.0.1:9000", NULL, "--daemon", "http://[::1]:9001/",
                               "stats", (const char *)NULL),
                     0);
    ck_assert_str_eq(A.daemon.base, "http://[::1]:9001");
    ck_assert_int_eq(parse_env("", NULL, "stats", (const char *)NULL), 0);
    ck_assert_str_eq(A.daemon.base, H5C_DEFAULT_DAEMON);
    ck_assert_int_eq(parse_env("unix:/run/h5chunkd.sock", NULL, "stats", (const char *)NULL), 0);
    ck_assert_str_eq(A.daemon.unix_path, "/run/h5chunkd.sock");
    ck_assert_str_eq(A.daemon.base, H5C_UNIX_BASE);
    ck_assert_int_eq(
        parse_env("unix:/run/a.sock", NULL, "--daemon=127.0.0.1:7000", "stats", (const char *)NULL),
        0);
    ck_assert_str_eq(A.daemon.base, "http://127.0.0.1:7000");
    ck_assert_str_eq(A.daemon.unix_path, "");
    /* a bad environment value is named in the error */
    ck_assert_int_eq(parse_env("ftp://h", NULL, "stats", (const char *)NULL), -EINVAL);
    ck_assert_ptr_nonnull(strstr(ERR, "H5CHUNKD_URL"));
    ck_assert_int_eq(parse("--daemon", "unix:rel.sock", "stats"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(ERR, "--daemon"));
}
END_TEST

START_TEST(test_token_precedence)
{
    ck_assert_int_eq(parse_env(NULL, "/env/tok", "stats", (const char *)NULL), 0);
    ck_assert_str_eq(A.token_file, "/env/tok");
    ck_assert_int_eq(
        parse_env(NULL, "/env/tok", "--token", "/flag/tok", "stats", (const char *)NULL), 0);
    ck_assert_str_eq(A.token_file, "/flag/tok");
    ck_assert_int_eq(parse_env(NULL, "", "stats", (const char *)NULL), 0);
    ck_assert_ptr_null(A.token_file);
}
END_TEST

START_TEST(test_daemon_parse)
{
    struct h5c_daemon d;
    char err[256];
    ck_assert_int_eq(h5c_daemon_parse("http://127.0.0.1:7661", &d, err, sizeof(err)), 0);
    ck_assert_str_eq(d.base, "http://127.0.0.1:7661");
    ck_assert_int_eq(h5c_daemon_parse("localhost:8080", &d, err, sizeof(err)), 0);
    ck_assert_str_eq(d.base, "http://localhost:8080");
    ck_assert_int_eq(h5c_daemon_parse("https://proxy.example/h5c///", &d, err, sizeof(err)), 0);
    ck_assert_str_eq(d.base, "https://proxy.example/h5c");
    ck_assert_int_eq(h5c_daemon_parse("unix:/tmp/x.sock", &d, err, sizeof(err)), 0);
    ck_assert_str_eq(d.unix_path, "/tmp/x.sock");
    ck_assert_str_eq(d.base, "http://localhost");
    const char *bad[] = {"",           "ftp://h",    "http://", "http:///x",   "http://h/?q=1",
                         "http://u@h", "http://h x", "unix:",   "unix:x.sock", "http://h\n",
                         ":80",        NULL};
    for (size_t i = 0; bad[i] != NULL; i++)
        ck_assert_msg(h5c_daemon_parse(bad[i], &d, err, sizeof(err)) == -EINVAL, "accepted '%s'",
                      bad[i]);
}
END_TEST

/* ---- usage errors ---- */

START_TEST(test_usage_errors)
{
    ck_assert_int_eq(parse("bogus"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(ERR, "unknown command"));
    ck_assert_int_eq(parse_env(NULL, NULL, (const char *)NULL), -EINVAL); /* no command */
    ck_assert_int_eq(parse("meta", "u"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(ERR, "missing"));
    ck_assert_int_eq(parse("meta", "u", "p", "x"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(ERR, "too many"));
    ck_assert_int_eq(parse("get", "u", "p"), -EINVAL);
    ck_assert_int_eq(parse("slice", "u", "p"), -EINVAL);
    ck_assert_int_eq(parse("slice", "u", "p", "0", "1"), -EINVAL);
    ck_assert_int_eq(parse("prefetch", "u"), -EINVAL);
    ck_assert_int_eq(parse("prefetch", "u", "p", "s", "t"), -EINVAL);
    ck_assert_int_eq(parse("stats", "x"), -EINVAL);
    ck_assert_int_eq(parse("zarr-url"), -EINVAL);
    ck_assert_int_eq(parse("zarr-url", "a", "b"), -EINVAL);
    ck_assert_int_eq(parse("cache"), -EINVAL);
    ck_assert_int_eq(parse("cache", "rm"), -EINVAL);
    ck_assert_int_eq(parse("cache", "purge"), -EINVAL); /* purging everything needs --all */
    ck_assert_ptr_nonnull(strstr(ERR, "--all"));
    ck_assert_int_eq(parse("cache", "purge", "u", "--all"), -EINVAL);
    ck_assert_int_eq(parse("meta", "", "p"), -EINVAL);
    ck_assert_int_eq(parse("meta", "u", ""), -EINVAL);
    ck_assert_int_eq(parse("slice", "u", "p", ""), -EINVAL);
}
END_TEST

START_TEST(test_option_errors)
{
    ck_assert_int_eq(parse("stats", "--bogus"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(ERR, "unknown option"));
    ck_assert_int_eq(parse("stats", "-x"), -EINVAL);
    ck_assert_int_eq(parse("stats", "-hx"), -EINVAL);
    ck_assert_int_eq(parse("meta", "u", "p", "--decode"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(ERR, "does not apply"));
    ck_assert_int_eq(parse("stats", "-o", "f"), -EINVAL);
    ck_assert_int_eq(parse("cache", "ls", "--all"), -EINVAL);
    ck_assert_int_eq(parse("get", "u", "p", "0", "-o"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(ERR, "needs a value"));
    ck_assert_int_eq(parse("stats", "--json=1"), -EINVAL);
    ck_assert_int_eq(parse("stats", "--daemon="), -EINVAL);
    ck_assert_int_eq(parse("stats", "--timeout", "0"), -EINVAL);
    ck_assert_int_eq(parse("stats", "--timeout", "soon"), -EINVAL);
}
END_TEST

START_TEST(test_invalid_keys)
{
    const char *bad[] = {"../x", "..",  ".", "",    "1..2", "1.",   ".1",
                         "-1",   "1/2", "a", "0x1", "1 ",   "1.2/", NULL};
    for (size_t i = 0; bad[i] != NULL; i++) {
        ck_assert_msg(parse("get", "u", "p", "0.0", bad[i]) == -EINVAL, "accepted key '%s'",
                      bad[i]);
        if (bad[i][0] != '-') /* "-1" reads as an option; refused as unknown */
            ck_assert_ptr_nonnull(strstr(ERR, "invalid chunk key"));
    }
    ck_assert_int_eq(parse("get", "u", "p", "--", "-1"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(ERR, "invalid chunk key"));
    /* the message repeats a hostile key only as printable text */
    ck_assert_int_eq(parse("get", "u", "p", "1\n2"), -EINVAL);
    ck_assert_ptr_null(strchr(ERR, '\n'));
}
END_TEST

/* ---- util ---- */

START_TEST(test_keys)
{
    ck_assert(h5c_key_valid("0"));
    ck_assert(h5c_key_valid("12.0.3"));
    ck_assert(h5c_key_valid("007")); /* the daemon judges canonical form; no path danger here */
    ck_assert(!h5c_key_valid(NULL));
    ck_assert(!h5c_key_valid(""));
    ck_assert(!h5c_key_valid("."));
    ck_assert(!h5c_key_valid(".."));
    ck_assert(!h5c_key_valid("1..2"));
    ck_assert(!h5c_key_valid("1/2"));
}
END_TEST

START_TEST(test_base64url_vectors)
{
    /* RFC 4648 section 10, without padding */
    static const struct {
        const char *in, *out;
    } v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
             {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    char out[128];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t len = strlen(v[i].in);
        ck_assert_uint_eq(h5c_base64url_len(len), strlen(v[i].out));
        ck_assert_int_eq(h5c_base64url((const uint8_t *)v[i].in, len, out, sizeof(out)), 0);
        ck_assert_str_eq(out, v[i].out);
    }
    /* the URL-safe alphabet: '-' and '_' where base64 has '+' and '/' */
    const uint8_t bin[] = {0xfb, 0xff, 0xbf};
    ck_assert_int_eq(h5c_base64url(bin, 3, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "-_-_");
    const char *url = "https://dandiarchive.s3.amazonaws.com/blobs/a?x=1";
    ck_assert_int_eq(h5c_base64url((const uint8_t *)url, strlen(url), out, sizeof(out)), 0);
    ck_assert_str_eq(out, "aHR0cHM6Ly9kYW5kaWFyY2hpdmUuczMuYW1hem9uYXdzLmNvbS9ibG9icy9hP3g9MQ");
}
END_TEST

START_TEST(test_base64url_limits)
{
    char out[8];
    /* "foob" -> 6 characters: a buffer of 7 (N + 1 with the NUL) fits, 6 does not */
    ck_assert_int_eq(h5c_base64url((const uint8_t *)"foob", 4, out, 7), 0);
    ck_assert_str_eq(out, "Zm9vYg");
    ck_assert_int_eq(h5c_base64url((const uint8_t *)"foob", 4, out, 6), -ENOSPC);
}
END_TEST

START_TEST(test_durations)
{
    uint64_t ms = 0;
    ck_assert_int_eq(h5c_parse_duration("30", &ms), 0);
    ck_assert_uint_eq(ms, 30000);
    ck_assert_int_eq(h5c_parse_duration("90s", &ms), 0);
    ck_assert_uint_eq(ms, 90000);
    ck_assert_int_eq(h5c_parse_duration("10m", &ms), 0);
    ck_assert_uint_eq(ms, 600000);
    ck_assert_int_eq(h5c_parse_duration("2h", &ms), 0);
    ck_assert_uint_eq(ms, 7200000);
    ck_assert_int_eq(h5c_parse_duration("250ms", &ms), 0);
    ck_assert_uint_eq(ms, 250);
    const char *bad[] = {"",  "0", "-1", "+5", "1d", "s", "1.5", "1 s", "99999999999999999999",
                         NULL};
    for (size_t i = 0; bad[i] != NULL; i++)
        ck_assert_msg(h5c_parse_duration(bad[i], &ms) == -EINVAL, "accepted '%s'", bad[i]);
    /* the upper bound, one week: N and N + 1 */
    ck_assert_int_eq(h5c_parse_duration("604800", &ms), 0);
    ck_assert_uint_eq(ms, H5C_MAX_TIMEOUT_MS);
    ck_assert_int_eq(h5c_parse_duration("604801", &ms), -EINVAL);
    ck_assert_int_eq(h5c_parse_duration("168h", &ms), 0);
    ck_assert_int_eq(h5c_parse_duration("169h", &ms), -EINVAL);
}
END_TEST

START_TEST(test_format_bytes)
{
    char b[32];
    ck_assert_str_eq(h5c_format_bytes(0, b, sizeof(b)), "0 B");
    ck_assert_str_eq(h5c_format_bytes(1023, b, sizeof(b)), "1023 B");
    ck_assert_str_eq(h5c_format_bytes(1024, b, sizeof(b)), "1.0 KiB");
    ck_assert_str_eq(h5c_format_bytes(1536 * 1024, b, sizeof(b)), "1.5 MiB");
    ck_assert_str_eq(h5c_format_bytes(10ull << 30, b, sizeof(b)), "10.0 GiB");
    ck_assert_str_eq(h5c_format_bytes(UINT64_MAX, b, sizeof(b)), "16.0 EiB");
}
END_TEST

START_TEST(test_progress)
{
    struct h5c_progress p = {
        .bytes_done = 50, .bytes_total = 200, .chunks_done = 3, .chunks_total = 30};
    char line[256];
    ck_assert_int_eq(h5c_progress_percent(&p), 25);
    ck_assert_str_eq(h5c_progress_line(&p, 0, line, sizeof(line)),
                     " 25%  50 B / 200 B  3/30 chunks");
    h5c_progress_line(&p, 79, line, sizeof(line));
    ck_assert_uint_le(strlen(line), 79);
    ck_assert_int_eq(line[0], '[');
    ck_assert_ptr_nonnull(strstr(line, "]  25%  50 B / 200 B  3/30 chunks"));
    ck_assert_ptr_nonnull(strstr(line, "[#"));
    /* a narrow terminal gets no bar and a cut line */
    h5c_progress_line(&p, 20, line, sizeof(line));
    ck_assert_uint_eq(strlen(line), 20);
    ck_assert_int_ne(line[0], '[');
    /* chunks decide when bytes are unknown; nothing known: "?" */
    struct h5c_progress c = {.chunks_done = 1, .chunks_total = 3};
    ck_assert_int_eq(h5c_progress_percent(&c), 33);
    struct h5c_progress none = {0};
    ck_assert_int_eq(h5c_progress_percent(&none), -1);
    ck_assert_ptr_nonnull(strstr(h5c_progress_line(&none, 0, line, sizeof(line)), "?%"));
    /* 100 % only when done; a huge total does not overflow */
    struct h5c_progress almost = {.bytes_done = 999, .bytes_total = 1000};
    ck_assert_int_eq(h5c_progress_percent(&almost), 99);
    almost.bytes_done = 1000;
    ck_assert_int_eq(h5c_progress_percent(&almost), 100);
    struct h5c_progress big = {.bytes_done = UINT64_MAX / 2, .bytes_total = UINT64_MAX};
    ck_assert_int_eq(h5c_progress_percent(&big), 50);
}
END_TEST

/* ---- frames ---- */

struct got {
    char keys[8][H5C_MAX_KEY_BYTES + 1];
    int status[8];
    char payload[8][64];
    size_t plen[8];
    char error[8][64];
    int begins, ends;
};

static int got_begin(void *ud, const struct h5c_frame *f)
{
    struct got *g = ud;
    if (g->begins >= 8)
        return -1;
    memcpy(g->keys[g->begins], f->key, sizeof(f->key));
    g->status[g->begins] = f->status;
    memcpy(g->error[g->begins], f->error, sizeof(f->error));
    g->begins++;
    return 0;
}

static int got_data(void *ud, const struct h5c_frame *f, const uint8_t *b, size_t n)
{
    struct got *g = ud;
    size_t i = (size_t)g->begins - 1;
    ck_assert_str_eq(f->key, g->keys[i]);
    ck_assert_uint_le(g->plen[i] + n, sizeof(g->payload[i]));
    memcpy(g->payload[i] + g->plen[i], b, n);
    g->plen[i] += n;
    return 0;
}

static int got_end(void *ud, const struct h5c_frame *f)
{
    struct got *g = ud;
    ck_assert_uint_eq(g->plen[g->begins - 1], f->length);
    g->ends++;
    return 0;
}

static const char STREAM[] =
    "{\"key\":\"1.0\",\"status\":200,\"length\":5,\"filter_mask\":0}\nhello"
    "{\"key\":\"2.0\",\"status\":404,\"length\":0,\"error\":\"chunk_not_allocated\"}\n"
    "{\"key\":\"0.0\",\"status\":200,\"length\":3}\n\n\nx";

static void check_stream(const struct got *g)
{
    ck_assert_int_eq(g->begins, 3);
    ck_assert_int_eq(g->ends, 3);
    ck_assert_str_eq(g->keys[0], "1.0");
    ck_assert_uint_eq(g->plen[0], 5);
    ck_assert(memcmp(g->payload[0], "hello", 5) == 0);
    ck_assert_str_eq(g->keys[1], "2.0");
    ck_assert_int_eq(g->status[1], 404);
    ck_assert_str_eq(g->error[1], "chunk_not_allocated");
    ck_assert_uint_eq(g->plen[1], 0);
    ck_assert_str_eq(g->keys[2], "0.0");
    ck_assert_uint_eq(g->plen[2], 3); /* payload bytes may be newlines */
    ck_assert(memcmp(g->payload[2], "\n\nx", 3) == 0);
}

START_TEST(test_frames_whole_and_bytewise)
{
    struct h5c_frames p;
    struct got g;
    struct h5c_frames_cb cb = {got_begin, got_data, got_end, &g};
    size_t len = sizeof(STREAM) - 1;

    memset(&g, 0, sizeof(g));
    h5c_frames_init(&p, &cb);
    ck_assert_int_eq(h5c_frames_feed(&p, (const uint8_t *)STREAM, len), 0);
    ck_assert_int_eq(h5c_frames_finish(&p), 0);
    check_stream(&g);

    memset(&g, 0, sizeof(g));
    h5c_frames_init(&p, &cb);
    for (size_t i = 0; i < len; i++)
        ck_assert_int_eq(h5c_frames_feed(&p, (const uint8_t *)STREAM + i, 1), 0);
    ck_assert_int_eq(h5c_frames_finish(&p), 0);
    check_stream(&g);
}
END_TEST

START_TEST(test_frames_truncated)
{
    struct h5c_frames p;
    struct got g;
    struct h5c_frames_cb cb = {got_begin, got_data, got_end, &g};
    size_t len = sizeof(STREAM) - 1;
    for (size_t cut = 1; cut < len; cut++) {
        memset(&g, 0, sizeof(g));
        h5c_frames_init(&p, &cb);
        ck_assert_int_eq(h5c_frames_feed(&p, (const uint8_t *)STREAM, cut), 0);
        int rc = h5c_frames_finish(&p);
        /* ends of frames are the only clean cuts */
        bool clean = g.begins == g.ends && p.line_len == 0 && !p.in_payload;
        ck_assert_int_eq(rc, clean ? 0 : -1);
    }
}
END_TEST

START_TEST(test_frame_headers)
{
    struct h5c_frame f;
    char err[256];
    const char *ok = "{\"key\":\"3.1\",\"status\":502,\"length\":0,"
                     "\"error\":{\"code\":\"upstream_error\",\"message\":\"boom\"}}";
    ck_assert_int_eq(h5c_frame_header_parse(ok, strlen(ok), &f, err, sizeof(err)), 0);
    ck_assert_str_eq(f.error, "upstream_error");
    ck_assert_str_eq(f.message, "boom");
    ck_assert_int_eq(f.filter_mask, -1);
    const char *bad[] = {
        "not json",
        "[1]",
        "{\"key\":\"../x\",\"status\":200,\"length\":1}",
        "{\"key\":\"1\",\"status\":200}",
        "{\"key\":\"1\",\"status\":99,\"length\":0}",
        "{\"key\":\"1\",\"status\":200,\"length\":-1}",
        "{\"key\":\"1\",\"status\":200,\"length\":4294967296}",
        "{\"key\":\"1\",\"status\":200,\"length\":1,\"filter_mask\":\"x\"}",
        "{\"key\":\"1\",\"key\":\"2\",\"status\":200,\"length\":1}",
        "{\"key\":1,\"status\":200,\"length\":1}",
        NULL,
    };
    for (size_t i = 0; bad[i] != NULL; i++)
        ck_assert_msg(h5c_frame_header_parse(bad[i], strlen(bad[i]), &f, err, sizeof(err)) < 0,
                      "accepted %s", bad[i]);
    /* the largest length: 4 GiB - 1 */
    const char *max = "{\"key\":\"1\",\"status\":200,\"length\":4294967295}";
    ck_assert_int_eq(h5c_frame_header_parse(max, strlen(max), &f, err, sizeof(err)), 0);
    ck_assert_uint_eq(f.length, 4294967295u);
}
END_TEST

/* A header line padded with spaces to `total` bytes, newline included. */
static char *padded_header(size_t total)
{
    const char *h = "{\"key\":\"0\",\"status\":200,\"length\":0}";
    char *s = malloc(total + 1);
    ck_assert_ptr_nonnull(s);
    size_t hl = strlen(h);
    ck_assert_uint_gt(total, hl + 1);
    memcpy(s, h, hl - 1);
    memset(s + hl - 1, ' ', total - hl);
    s[total - 2] = '}';
    s[total - 1] = '\n';
    s[total] = '\0';
    return s;
}

START_TEST(test_frames_header_limit)
{
    struct h5c_frames p;
    struct got g;
    struct h5c_frames_cb cb = {got_begin, got_data, got_end, &g};
    char *at = padded_header(H5C_MAX_FRAME_HEADER);
    char *over = padded_header(H5C_MAX_FRAME_HEADER + 1);

    memset(&g, 0, sizeof(g));
    h5c_frames_init(&p, &cb);
    ck_assert_int_eq(h5c_frames_feed(&p, (const uint8_t *)at, strlen(at)), 0);
    ck_assert_int_eq(g.ends, 1);

    memset(&g, 0, sizeof(g));
    h5c_frames_init(&p, &cb);
    ck_assert_int_eq(h5c_frames_feed(&p, (const uint8_t *)over, strlen(over)), -1);
    ck_assert_ptr_nonnull(strstr(p.err, "longer than"));
    ck_assert_int_eq(g.begins, 0);
    /* a failed parser stays failed */
    ck_assert_int_eq(h5c_frames_feed(&p, (const uint8_t *)at, strlen(at)), -1);
    free(at);
    free(over);
}
END_TEST

static int refuse_begin(void *ud, const struct h5c_frame *f)
{
    struct h5c_frames *p = ud;
    return h5c_frames_fail(p, "refused %s", f->key);
}

START_TEST(test_frames_callback_stops)
{
    struct h5c_frames p;
    struct h5c_frames_cb cb = {refuse_begin, NULL, NULL, &p};
    h5c_frames_init(&p, &cb);
    ck_assert_int_eq(h5c_frames_feed(&p, (const uint8_t *)STREAM, sizeof(STREAM) - 1), -1);
    ck_assert_str_eq(p.err, "refused 1.0");
}
END_TEST

/* ---- limits ---- */

START_TEST(test_key_limit)
{
    char key[H5C_MAX_KEY_BYTES + 2];
    memset(key, '1', sizeof(key));
    key[H5C_MAX_KEY_BYTES] = '\0';
    ck_assert(h5c_key_valid(key));
    ck_assert_int_eq(parse("get", "u", "p", key), 0);
    key[H5C_MAX_KEY_BYTES] = '1';
    key[H5C_MAX_KEY_BYTES + 1] = '\0';
    ck_assert(!h5c_key_valid(key));
    ck_assert_int_eq(parse("get", "u", "p", key), -EINVAL);
}
END_TEST

START_TEST(test_unix_path_limit)
{
    struct h5c_daemon d;
    char err[256], addr[5 + H5C_MAX_UNIX_PATH + 2];
    memcpy(addr, "unix:/", 6);
    memset(addr + 6, 's', H5C_MAX_UNIX_PATH - 1);
    addr[5 + H5C_MAX_UNIX_PATH] = '\0'; /* a path of exactly 107 bytes */
    ck_assert_int_eq(h5c_daemon_parse(addr, &d, err, sizeof(err)), 0);
    ck_assert_uint_eq(strlen(d.unix_path), H5C_MAX_UNIX_PATH);
    addr[5 + H5C_MAX_UNIX_PATH] = 's';
    addr[5 + H5C_MAX_UNIX_PATH + 1] = '\0';
    ck_assert_int_eq(h5c_daemon_parse(addr, &d, err, sizeof(err)), -EINVAL);
}
END_TEST

START_TEST(test_daemon_length_limit)
{
    struct h5c_daemon d;
    char err[256], addr[H5C_MAX_DAEMON_BYTES + 2];
    memcpy(addr, "http://", 7);
    memset(addr + 7, 'h', H5C_MAX_DAEMON_BYTES - 7);
    addr[H5C_MAX_DAEMON_BYTES] = '\0';
    ck_assert_int_eq(h5c_daemon_parse(addr, &d, err, sizeof(err)), 0);
    ck_assert_uint_eq(strlen(d.base), H5C_MAX_DAEMON_BYTES);
    addr[H5C_MAX_DAEMON_BYTES] = 'h';
    addr[H5C_MAX_DAEMON_BYTES + 1] = '\0';
    ck_assert_int_eq(h5c_daemon_parse(addr, &d, err, sizeof(err)), -EINVAL);
}
END_TEST

static Suite *h5chunk_args_suite(void)
{
    Suite *s = suite_create("h5chunk_args");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, NULL, teardown);
    tcase_add_test(core, test_meta);
    tcase_add_test(core, test_get);
    tcase_add_test(core, test_slice_prefetch);
    tcase_add_test(core, test_admin_commands);
    tcase_add_test(core, test_help_version);
    tcase_add_test(core, test_daemon_precedence);
    tcase_add_test(core, test_token_precedence);
    tcase_add_test(core, test_daemon_parse);
    tcase_add_test(core, test_usage_errors);
    tcase_add_test(core, test_option_errors);
    tcase_add_test(core, test_invalid_keys);
    tcase_add_test(core, test_keys);
    tcase_add_test(core, test_base64url_vectors);
    tcase_add_test(core, test_durations);
    tcase_add_test(core, test_format_bytes);
    tcase_add_test(core, test_progress);
    tcase_add_test(core, test_frames_whole_and_bytewise);
    tcase_add_test(core, test_frames_truncated);
    tcase_add_test(core, test_frame_headers);
    tcase_add_test(core, test_frames_callback_stops);
    suite_add_tcase(s, core);

    TCase *limits = tcase_create("limits");
    tcase_add_checked_fixture(limits, NULL, teardown);
    tcase_add_test(limits, test_key_limit);
    tcase_add_test(limits, test_unix_path_limit);
    tcase_add_test(limits, test_daemon_length_limit);
    tcase_add_test(limits, test_base64url_limits);
    tcase_add_test(limits, test_frames_header_limit);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(h5chunk_args_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
