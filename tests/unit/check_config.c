/*
 * check_config.c - unit tests of lib/config: defaults, every value type,
 * range limits at N and N+1, INI files (good, bad, missing), cross-option
 * validation, config_print round trips and the shipped conf/h5chunkd.conf.
 * Temporary files live in a private mkdtemp directory removed by each test.
 */
#include <check.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define ERRLEN 256

static char tmpdir[64];
static char tmpfile_path[128];

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_config.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        abort();
    snprintf(tmpfile_path, sizeof(tmpfile_path), "%s/test.conf", tmpdir);
}

static void teardown(void)
{
    unlink(tmpfile_path);
    rmdir(tmpdir);
}

static const char *write_file(const char *text)
{
    FILE *fp = fopen(tmpfile_path, "w");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fputs(text, fp) >= 0, 1);
    ck_assert_int_eq(fclose(fp), 0);
    return tmpfile_path;
}

static void init(struct h5cd_config *cfg)
{
    ck_assert_int_eq(config_init(cfg), 0);
}

static void set_ok(struct h5cd_config *cfg, const char *key, const char *value)
{
    char err[ERRLEN] = "";
    ck_assert_msg(config_set(cfg, key, value, err, sizeof(err)) == 0, "%s = '%s': %s", key, value,
                  err);
}

/* Expects a refusal whose message names the option (or contains `want`). */
static void set_bad(struct h5cd_config *cfg, const char *key, const char *value, const char *want)
{
    char err[ERRLEN] = "";
    ck_assert_msg(config_set(cfg, key, value, err, sizeof(err)) == -1, "%s = '%s' accepted", key,
                  value);
    ck_assert_msg(strstr(err, want != NULL ? want : key) != NULL, "message '%s' lacks '%s'", err,
                  want != NULL ? want : key);
    ck_assert_ptr_null(strchr(err, '\n'));
}

static uint64_t size_of(const char *text)
{
    uint64_t v = 0;
    ck_assert_msg(config_parse_size(text, &v) == 0, "'%s' refused", text);
    return v;
}

static void size_bad(const char *text)
{
    uint64_t v = 12345;
    ck_assert_msg(config_parse_size(text, &v) == -1, "'%s' accepted", text);
    ck_assert_uint_eq(v, 12345);
}

static void validate_bad(const struct h5cd_config *cfg, const char *want)
{
    char err[ERRLEN] = "";
    ck_assert_int_eq(config_validate(cfg, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, want) != NULL, "message '%s' lacks '%s'", err, want);
}

static void validate_ok(const struct h5cd_config *cfg)
{
    char err[ERRLEN] = "";
    ck_assert_msg(config_validate(cfg, err, sizeof(err)) == 0, "%s", err);
}

static char *print_to_string(const struct h5cd_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(fp);
    config_print(cfg, fp);
    ck_assert_int_eq(fclose(fp), 0);
    return buf;
}

/* ---- core ---- */

START_TEST(test_defaults)
{
    struct h5cd_config c;
    setenv("XDG_CACHE_HOME", "/srv/xdg", 1);
    init(&c);
    ck_assert_str_eq(c.listen, "127.0.0.1:7661");
    ck_assert(!c.allow_remote_clients);
    ck_assert_uint_eq(c.server_names.count, 0);
    ck_assert_ptr_null(c.server_names.items);
    ck_assert_uint_eq(c.max_connections, 1024);
    ck_assert_uint_eq(c.header_timeout_s, 10);
    ck_assert_uint_eq(c.body_timeout_s, 60);
    ck_assert_uint_eq(c.memory_budget, 512 * H5CD_MIB);
    ck_assert_uint_eq(c.client_timeout_s, 60);
    ck_assert_uint_eq(c.max_request_body, 16 * H5CD_MIB);
    ck_assert_str_eq(c.cache_dir, "/srv/xdg/h5chunkd");
    ck_assert_uint_eq(c.cache_size, 10 * H5CD_GIB);
    ck_assert_uint_eq(c.block_size, 256 * H5CD_KIB);
    ck_assert_uint_eq(c.cache_high_watermark, 95);
    ck_assert_uint_eq(c.cache_low_watermark, 85);
    ck_assert_uint_eq(c.revalidate_s, 60);
    ck_assert_uint_eq(c.coalesce_gap, 256 * H5CD_KIB);
    ck_assert_uint_eq(c.coalesce_max, 8 * H5CD_MIB);
    ck_assert_uint_eq(c.read_window, 8 * H5CD_MIB);
    ck_assert_uint_eq(c.h5_prefix_bytes, 4 * H5CD_MIB);
    ck_assert_uint_eq(c.max_keys, 100000);
    ck_assert_uint_eq(c.batch_inflight_bytes, 16 * H5CD_MIB);
    ck_assert_uint_eq(c.upstream_max_per_host, 8);
    ck_assert_uint_eq(c.upstream_max_total, 64);
    ck_assert_uint_eq(c.upstream_connect_timeout_ms, 10000);
    ck_assert_uint_eq(c.upstream_timeout_ms, 60000);
    ck_assert_uint_eq(c.upstream_retries, 4);
    ck_assert_uint_eq(c.upstream_retry_base_ms, 200);
    ck_assert_uint_eq(c.upstream_retry_budget_ms, 30000);
    ck_assert(!c.allow_private_upstreams);
    ck_assert_uint_eq(c.allow_prefixes.count, 0);
    ck_assert_uint_eq(c.deny_prefixes.count, 0);
    ck_assert_uint_eq(c.strip_query_params.count, 11);
    ck_assert_str_eq(c.strip_query_params.items[0], "X-Amz-Algorithm");
    ck_assert_str_eq(c.strip_query_params.items[5], "X-Amz-Signature");
    ck_assert_str_eq(c.strip_query_params.items[10], "Policy");
    ck_assert_str_eq(c.user_agent, "h5chunkd/" PACKAGE_VERSION);
    ck_assert(!c.foreground);
    ck_assert_str_eq(c.log_level, "info");
    validate_ok(&c);
    config_free(&c);
    config_free(&c); /* a freed config frees again harmlessly */
}
END_TEST

START_TEST(test_cache_dir_default)
{
    struct h5cd_config c;
    setenv("HOME", "/home/someone", 1);
    setenv("XDG_CACHE_HOME", "relative/ignored", 1);
    init(&c);
    ck_assert_str_eq(c.cache_dir, "/home/someone/.cache/h5chunkd");
    config_free(&c);

    unsetenv("XDG_CACHE_HOME");
    init(&c);
    ck_assert_str_eq(c.cache_dir, "/home/someone/.cache/h5chunkd");
    config_free(&c);

    unsetenv("HOME");
    struct passwd *pw = getpwuid(getuid());
    if (pw != NULL && pw->pw_dir != NULL && pw->pw_dir[0] == '/') {
        char want[512];
        snprintf(want, sizeof(want), "%s/.cache/h5chunkd", pw->pw_dir);
        init(&c);
        ck_assert_str_eq(c.cache_dir, want);
        config_free(&c);
    }
}
END_TEST

START_TEST(test_bools)
{
    struct h5cd_config c;
    init(&c);
    const char *yes[] = {"true", "TRUE", "yes", "Yes", "on", "1"};
    const char *no[] = {"false", "False", "no", "NO", "off", "0"};
    for (size_t i = 0; i < 6; i++) {
        set_ok(&c, "foreground", yes[i]);
        ck_assert(c.foreground);
        set_ok(&c, "foreground", no[i]);
        ck_assert(!c.foreground);
    }
    set_bad(&c, "foreground", "maybe", NULL);
    set_bad(&c, "foreground", "", NULL);
    set_bad(&c, "foreground", "2", NULL);
    set_bad(&c, "foreground", "true ", NULL);
    ck_assert(!c.foreground);
    config_free(&c);
}
END_TEST

START_TEST(test_uints)
{
    struct h5cd_config c;
    init(&c);
    set_ok(&c, "max_connections", "42");
    ck_assert_uint_eq(c.max_connections, 42);
    set_ok(&c, "max_connections", "007");
    ck_assert_uint_eq(c.max_connections, 7);
    const char *bad[] = {
        "-1", "+1", " 1", "1 ", "0x10", "1e3", "", "abc", "12abc", "1K", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        set_bad(&c, "max_connections", bad[i], NULL);
    ck_assert_uint_eq(c.max_connections, 7); /* unchanged by refusals */
    set_bad(&c, "max_connections", "0", "1..4096");
    config_free(&c);
}
END_TEST

START_TEST(test_sizes)
{
    ck_assert_uint_eq(size_of("0"), 0);
    ck_assert_uint_eq(size_of("123"), 123);
    ck_assert_uint_eq(size_of("123B"), 123);
    ck_assert_uint_eq(size_of("4K"), 4096);
    ck_assert_uint_eq(size_of("4k"), 4096);
    ck_assert_uint_eq(size_of("4KB"), 4096);
    ck_assert_uint_eq(size_of("4kib"), 4096);
    ck_assert_uint_eq(size_of("4KiB"), 4096);
    ck_assert_uint_eq(size_of("16M"), 16 * H5CD_MIB);
    ck_assert_uint_eq(size_of("10G"), 10 * H5CD_GIB);
    ck_assert_uint_eq(size_of("2T"), 2 * 1024 * H5CD_GIB);
    ck_assert_uint_eq(size_of("1P"), 1024 * 1024 * H5CD_GIB);
    ck_assert_uint_eq(size_of("1E"), 1ULL << 60);
    const char *bad[] = {"",    "-1",  "+1",  "1.5G", " 1G",  "1G ", "1 G", "G",  "1X",
                         "1Gi", "1iB", "1BB", "1GBx", "0x10", "1e3", "16E", "1Z", "K1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        size_bad(bad[i]);
    size_bad(NULL);

    struct h5cd_config c;
    init(&c);
    set_ok(&c, "cache_size", "20G");
    ck_assert_uint_eq(c.cache_size, 20 * H5CD_GIB);
    set_bad(&c, "cache_size", "1.5G", NULL);
    set_bad(&c, "cache_size", "-1", NULL);
    set_bad(&c, "cache_size", "16E", NULL);
    set_bad(&c, "cache_size", "2P", "1M..1P");
    ck_assert_uint_eq(c.cache_size, 20 * H5CD_GIB);
    config_free(&c);
}
END_TEST

START_TEST(test_strings)
{
    struct h5cd_config c;
    init(&c);
    set_ok(&c, "user_agent", "my agent/1.0");
    ck_assert_str_eq(c.user_agent, "my agent/1.0");
    set_bad(&c, "user_agent", "", NULL);
    set_bad(&c, "user_agent", "a\r\nX-Injected: 1", NULL);
    set_bad(&c, "user_agent", "tab\there", NULL);
    set_bad(&c, "user_agent", "del\x7f", NULL);
    ck_assert_str_eq(c.user_agent, "my agent/1.0");

    set_ok(&c, "cache_dir", "/var/cache/h5chunkd");
    ck_assert_str_eq(c.cache_dir, "/var/cache/h5chunkd");
    set_bad(&c, "cache_dir", "relative/dir", "absolute");
    set_bad(&c, "cache_dir", "", NULL);

    set_ok(&c, "log_level", "debug");
    ck_assert_str_eq(c.log_level, "debug");
    set_bad(&c, "log_level", "verbose", NULL);
    ck_assert_str_eq(c.log_level, "debug");

    set_ok(&c, "listen", "[::1]:0");
    set_ok(&c, "listen", "localhost:8080");
    set_ok(&c, "listen", "unix:/run/h5chunkd.sock");
    set_ok(&c, "listen", "0.0.0.0:7661");
    const char *bad_listen[] = {"7661",     ":7661",      "host",       "1.2.3.4:65536",
                                "[::1]",    "::1:80",     "[::1]:",     "[nope]:80",
                                "unix:rel", "h_o_s_t:80", "1.2.3.4:-1", "1.2.3.4:8O"};
    for (size_t i = 0; i < sizeof(bad_listen) / sizeof(bad_listen[0]); i++)
        set_bad(&c, "listen", bad_listen[i], "listen");
    config_free(&c);
}
END_TEST

START_TEST(test_lists)
{
    struct h5cd_config c;
    init(&c);
    set_ok(&c, "allow_prefixes", "https://a.example/, https://b.example/\thttps://c.example/,,");
    ck_assert_uint_eq(c.allow_prefixes.count, 3);
    ck_assert_str_eq(c.allow_prefixes.items[0], "https://a.example/");
    ck_assert_str_eq(c.allow_prefixes.items[1], "https://b.example/");
    ck_assert_str_eq(c.allow_prefixes.items[2], "https://c.example/");
    set_ok(&c, "allow_prefixes", "https://d.example/"); /* replaces */
    ck_assert_uint_eq(c.allow_prefixes.count, 1);
    ck_assert_str_eq(c.allow_prefixes.items[0], "https://d.example/");
    set_bad(&c, "allow_prefixes", "a\nb", NULL);
    ck_assert_uint_eq(c.allow_prefixes.count, 1); /* a refusal keeps the old list */
    set_ok(&c, "allow_prefixes", " , ");
    ck_assert_uint_eq(c.allow_prefixes.count, 0);
    ck_assert_ptr_null(c.allow_prefixes.items);
    set_ok(&c, "strip_query_params", "");
    ck_assert_uint_eq(c.strip_query_params.count, 0);
    set_ok(&c, "server_names", "h5.example.org");
    ck_assert_str_eq(c.server_names.items[0], "h5.example.org");
    config_free(&c);
}
END_TEST

START_TEST(test_unknown_option)
{
    struct h5cd_config c;
    char err[ERRLEN];
    init(&c);
    ck_assert_int_eq(config_set(&c, "nope", "1", err, sizeof(err)), -1);
    ck_assert_str_eq(err, "unknown option 'nope'");
    ck_assert_int_eq(config_set(&c, "Listen", "x", err, sizeof(err)), -1);
    ck_assert_int_eq(config_set(&c, "listen", NULL, err, sizeof(err)), -1);
    ck_assert_int_eq(config_set(&c, NULL, "1", err, sizeof(err)), -1);
    /* A tiny error buffer is cut, never overrun. */
    char small[8];
    ck_assert_int_eq(config_set(&c, "nope", "1", small, sizeof(small)), -1);
    ck_assert_uint_eq(strlen(small), 7);
    config_free(&c);
}
END_TEST

START_TEST(test_file_good)
{
    struct h5cd_config c;
    char err[ERRLEN] = "";
    init(&c);
    const char *path = write_file("; comment\n"
                                  "# another comment\n"
                                  "max_connections = 100\n"
                                  "\n"
                                  "[h5chunkd]\n"
                                  "cache_size = 2G  ; inline comment\n"
                                  "listen: 127.0.0.1:9000\n"
                                  "deny_prefixes = https://a.example/\n"
                                  "    https://b.example/, https://c.example/\n"
                                  "\n"
                                  "    https://d.example/\n"
                                  "foreground = yes\n");
    ck_assert_msg(config_load_file(&c, path, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(c.max_connections, 100);
    ck_assert_uint_eq(c.cache_size, 2 * H5CD_GIB);
    ck_assert_str_eq(c.listen, "127.0.0.1:9000");
    ck_assert_uint_eq(c.deny_prefixes.count, 4);
    ck_assert_str_eq(c.deny_prefixes.items[3], "https://d.example/");
    ck_assert(c.foreground);
    validate_ok(&c);

    /* A later file replaces a list instead of extending it. */
    path = write_file("\xEF\xBB\xBF[H5CHUNKD]\ndeny_prefixes = https://e.example/\n");
    ck_assert_msg(config_load_file(&c, path, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(c.deny_prefixes.count, 1);
    config_free(&c);
}
END_TEST

static void load_bad(const char *text, const char *want)
{
    struct h5cd_config c;
    char err[ERRLEN] = "", prefix[160];
    init(&c);
    const char *path = write_file(text);
    ck_assert_int_eq(config_load_file(&c, path, err, sizeof(err)), -1);
    snprintf(prefix, sizeof(prefix), "%s:%s", path, want);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "'%s' does not start with '%s'", err,
                  prefix);
    /* Nothing after the first bad line is applied. */
    ck_assert_uint_eq(c.max_connections, 1024);
    ck_assert_uint_eq(c.header_timeout_s, 10);
    ck_assert_uint_eq(c.body_timeout_s, 60);
    ck_assert_uint_eq(c.memory_budget, 512 * H5CD_MIB);
    config_free(&c);
}

START_TEST(test_file_bad)
{
    load_bad("foreground = true\n\nbogus = 1\nmax_connections = 5\n", "3: unknown option 'bogus'");
    load_bad("[h5chunkd]\nforeground = true\n[other]\nmax_connections = 5\n",
             "3: unknown section [other]");
    load_bad("[other\nmax_connections = 5\n", "1: unterminated section");
    load_bad("foreground = true\njust some words\nmax_connections = 5\n",
             "2: expected 'name = value'");
    load_bad("client_timeout_s = 0\nmax_connections = 5\n",
             "1: client_timeout_s: '0' is out of range (1..3600)");
    load_bad("foreground = true\n  false\nmax_connections = 5\n",
             "2: foreground: only list options");
    char longline[400];
    memset(longline, 'a', sizeof(longline));
    memcpy(longline, "user_agent = ", 13);
    memcpy(longline + sizeof(longline) - 25, "\nmax_connections = 5\n", 22);
    load_bad(longline, "1: line longer than");
}
END_TEST

START_TEST(test_file_missing)
{
    struct h5cd_config c;
    char err[ERRLEN] = "", want[200];
    init(&c);
    snprintf(want, sizeof(want), "%s/absent.conf", tmpdir);
    ck_assert_int_eq(config_load_file(&c, want, err, sizeof(err)), -1);
    strncat(want, ": ", sizeof(want) - strlen(want) - 1);
    strncat(want, strerror(ENOENT), sizeof(want) - strlen(want) - 1);
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(config_load_file(&c, tmpdir, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, strerror(EISDIR)));
    config_free(&c);
}
END_TEST

START_TEST(test_validate)
{
    struct h5cd_config c;
    init(&c);
    set_ok(&c, "cache_low_watermark", "96");
    validate_bad(&c, "cache_low_watermark");
    set_ok(&c, "cache_low_watermark", "95"); /* equal is fine */
    validate_ok(&c);

    set_ok(&c, "listen", "0.0.0.0:7661");
    validate_bad(&c, "allow_remote_clients");
    set_ok(&c, "listen", "[::]:7661");
    validate_bad(&c, "allow_remote_clients");
    set_ok(&c, "listen", "myhost.example:7661");
    validate_bad(&c, "allow_remote_clients");
    set_ok(&c, "allow_remote_clients", "true");
    validate_ok(&c);
    set_ok(&c, "allow_remote_clients", "false");
    const char *local[] = {"127.0.0.1:7661", "127.1.2.3:1", "localhost:7661",
                           "LocalHost:0",    "[::1]:7661",  "unix:/run/h5.sock"};
    for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
        set_ok(&c, "listen", local[i]);
        validate_ok(&c);
    }

    set_ok(&c, "coalesce_max", "1028K");
    validate_bad(&c, "multiple of block_size");
    set_ok(&c, "coalesce_max", "128K");
    validate_bad(&c, "coalesce_max");
    set_ok(&c, "coalesce_max", "512K");
    validate_ok(&c);
    set_ok(&c, "read_window", "128K");
    validate_bad(&c, "read_window");
    set_ok(&c, "read_window", "256K");
    validate_ok(&c);
    set_ok(&c, "upstream_max_per_host", "65");
    validate_bad(&c, "upstream_max_per_host");
    set_ok(&c, "upstream_max_per_host", "64");
    validate_ok(&c);
    config_free(&c);
}
END_TEST

START_TEST(test_print_round_trip)
{
    struct h5cd_config c, d;
    char err[ERRLEN] = "";
    init(&c);
    set_ok(&c, "cache_size", "1536M");
    set_ok(&c, "coalesce_gap", "0");
    set_ok(&c, "max_request_body", "1025");
    set_ok(&c, "allow_remote_clients", "on");
    set_ok(&c, "server_names", "a.example,b.example");
    /* Long enough to be printed one item per line. */
    set_ok(&c, "allow_prefixes",
           "https://one.example.org/some/long/prefix/, https://two.example.org/some/long/prefix/,"
           "https://three.example.org/some/long/prefix/, https://four.example.org/long/prefix/,"
           "https://five.example.org/some/long/prefix/");
    char *text = print_to_string(&c);
    ck_assert_ptr_nonnull(strstr(text, "\nmax_connections = 1024\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ncache_size = 1536M\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ncoalesce_gap = 0\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nmax_request_body = 1025\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nserver_names = a.example,b.example\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ndeny_prefixes =\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nallow_remote_clients = true\n"));
    ck_assert_ptr_nonnull(strstr(text, "\n    https://two.example.org/some/long/prefix/\n"));
    /* Table order. */
    ck_assert(strstr(text, "\nlisten =") < strstr(text, "\nallow_remote_clients ="));
    ck_assert(strstr(text, "\nuser_agent =") < strstr(text, "\nlog_level ="));

    write_file(text);
    init(&d);
    ck_assert_msg(config_load_file(&d, tmpfile_path, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(d.allow_prefixes.count, 5);
    char *again = print_to_string(&d);
    ck_assert_str_eq(text, again);
    free(text);
    free(again);
    config_free(&c);
    config_free(&d);
}
END_TEST

/* Every option of config_print appears in conf/h5chunkd.conf as
 * "# name = default", and the file loads. */
START_TEST(test_shipped_conf)
{
    const char *srcdir = getenv("TESTS_SRCDIR");
    if (srcdir == NULL)
        return; /* not run by make check */
    char path[1024], err[ERRLEN] = "";
    snprintf(path, sizeof(path), "%s/../conf/h5chunkd.conf", srcdir);
    struct h5cd_config c;
    init(&c);
    ck_assert_msg(config_load_file(&c, path, err, sizeof(err)) == 0, "%s", err);

    FILE *fp = fopen(path, "r");
    ck_assert_ptr_nonnull(fp);
    char *conf = NULL;
    size_t cap = 0;
    ck_assert_int_gt(getdelim(&conf, &cap, '\0', fp), 0);
    fclose(fp);

    /* Uncommented, the documented defaults load and equal the built-in ones. */
    char *printed = print_to_string(&c);
    char *uncommented = malloc(strlen(conf) + 1);
    ck_assert_ptr_nonnull(uncommented);
    uncommented[0] = '\0';
    size_t options = 0;
    for (char *line = printed; *line != '\0';) {
        char *nl = strchr(line, '\n');
        size_t len = nl != NULL ? (size_t)(nl - line) : strlen(line);
        if (len > 0 && line[0] != '#') {
            char want[600];
            snprintf(want, sizeof(want), "\n# %.*s\n", (int)len, line);
            bool dynamic =
                strncmp(line, "cache_dir ", 10) == 0 || strncmp(line, "user_agent ", 11) == 0;
            if (dynamic) {
                char name[64];
                snprintf(name, sizeof(name), "\n# %.*s = ", (int)strcspn(line, " "), line);
                ck_assert_msg(strstr(conf, name) != NULL, "conf lacks '%s'", name + 1);
            } else {
                ck_assert_msg(strstr(conf, want) != NULL, "conf lacks '%s'", want + 1);
                strncat(uncommented, want + 3, strlen(conf) - strlen(uncommented));
            }
            options++;
        }
        line += len + (nl != NULL);
    }
    ck_assert_uint_ge(options, 32); /* every field of struct h5cd_config */
    write_file(uncommented);
    struct h5cd_config d;
    init(&d);
    ck_assert_msg(config_load_file(&d, tmpfile_path, err, sizeof(err)) == 0, "%s", err);
    char *printed2 = print_to_string(&d);
    ck_assert_str_eq(printed, printed2);
    free(printed);
    free(printed2);
    free(uncommented);
    free(conf);
    config_free(&c);
    config_free(&d);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_uint_limits)
{
    struct h5cd_config c;
    init(&c);
    set_ok(&c, "max_connections", "4096");
    set_bad(&c, "max_connections", "4097", "1..4096");
    set_ok(&c, "max_connections", "1");
    set_bad(&c, "max_connections", "0", "1..4096");
    set_ok(&c, "upstream_timeout_ms", "3600000");
    set_bad(&c, "upstream_timeout_ms", "3600001", "100..3600000");
    set_ok(&c, "upstream_timeout_ms", "100");
    set_bad(&c, "upstream_timeout_ms", "99", NULL);
    set_ok(&c, "upstream_retries", "0");
    set_ok(&c, "upstream_retries", "20");
    set_bad(&c, "upstream_retries", "21", "0..20");
    set_ok(&c, "cache_high_watermark", "100");
    set_bad(&c, "cache_high_watermark", "101", NULL);
    set_ok(&c, "max_keys", "1000000");
    set_bad(&c, "max_keys", "1000001", "1..1000000");
    set_ok(&c, "revalidate_s", "86400");
    set_bad(&c, "revalidate_s", "86401", NULL);
    /* Beyond unsigned: must not wrap into range. */
    set_bad(&c, "max_connections", "4294967297", NULL);
    set_bad(&c, "max_connections", "18446744073709551617", NULL);
    ck_assert_uint_eq(c.max_connections, 1);
    config_free(&c);
}
END_TEST

START_TEST(test_size_limits)
{
    struct h5cd_config c;
    init(&c);
    set_ok(&c, "block_size", "16M");
    set_bad(&c, "block_size", "32M", "4K..16M");
    set_ok(&c, "block_size", "4K");
    set_bad(&c, "block_size", "2K", "4K..16M");
    set_bad(&c, "block_size", "12K", "power of two");
    set_bad(&c, "block_size", "4097", NULL);
    ck_assert_uint_eq(c.block_size, 4096);
    set_ok(&c, "cache_size", "1M");
    set_bad(&c, "cache_size", "1048575", "1M..1P");
    set_ok(&c, "cache_size", "1P");
    set_bad(&c, "cache_size", "1125899906842625", NULL);
    set_ok(&c, "max_request_body", "1G");
    set_bad(&c, "max_request_body", "1073741825", "1K..1G");
    set_ok(&c, "max_request_body", "1K");
    set_bad(&c, "max_request_body", "1023", NULL);
    set_ok(&c, "coalesce_gap", "0");
    set_ok(&c, "coalesce_gap", "64M");
    set_bad(&c, "coalesce_gap", "67108865", "0..64M");
    set_ok(&c, "h5_prefix_bytes", "0");
    set_ok(&c, "h5_prefix_bytes", "64M");
    set_bad(&c, "h5_prefix_bytes", "67108865", "0..64M");
    set_ok(&c, "batch_inflight_bytes", "16G");
    set_bad(&c, "batch_inflight_bytes", "17179869185", "1M..16G");
    set_ok(&c, "read_window", "64K");
    set_bad(&c, "read_window", "65535", "64K..256M");
    set_ok(&c, "read_window", "256M");
    set_bad(&c, "read_window", "268435457", NULL);

    ck_assert_uint_eq(size_of("15E"), 15ULL << 60);
    size_bad("16E");
    ck_assert_uint_eq(size_of("17179869183G"), 17179869183ULL << 30);
    size_bad("17179869184G");
    ck_assert_uint_eq(size_of("18446744073709551615"), UINT64_MAX);
    size_bad("18446744073709551616");
    config_free(&c);
}
END_TEST

START_TEST(test_list_limits)
{
    struct h5cd_config c;
    init(&c);
    char buf[H5CD_MAX_LIST_ITEMS * 4 + 8] = "";
    for (int i = 0; i < H5CD_MAX_LIST_ITEMS; i++)
        strcat(buf, "ab,");
    set_ok(&c, "server_names", buf);
    ck_assert_uint_eq(c.server_names.count, H5CD_MAX_LIST_ITEMS);
    strcat(buf, "cd");
    set_bad(&c, "server_names", buf, "at most 64");
    ck_assert_uint_eq(c.server_names.count, H5CD_MAX_LIST_ITEMS);

    char *item = malloc(H5CD_MAX_URL_BYTES + 2);
    ck_assert_ptr_nonnull(item);
    memset(item, 'x', H5CD_MAX_URL_BYTES);
    item[H5CD_MAX_URL_BYTES] = '\0';
    set_ok(&c, "allow_prefixes", item);
    ck_assert_uint_eq(strlen(c.allow_prefixes.items[0]), H5CD_MAX_URL_BYTES);
    strcat(item, "x");
    set_bad(&c, "allow_prefixes", item, "longer than 4096");
    free(item);
    /* config_print would put such an item at the start of a continuation
     * line, where it reads back as a comment (found by tests/fuzz). */
    set_bad(&c, "allow_prefixes", "https://a/,#b", "may not start with '#'");
    set_bad(&c, "deny_prefixes", "https://a/ ;b", "may not start with ';'");

    char *ua = malloc(4098);
    ck_assert_ptr_nonnull(ua);
    memset(ua, 'u', 4096);
    ua[4096] = '\0';
    set_ok(&c, "user_agent", ua);
    strcat(ua, "u");
    set_bad(&c, "user_agent", ua, NULL);
    free(ua);
    config_free(&c);
}
END_TEST

/* A value that fills the loader's longest line as "name=value" prints so that
 * it loads again (found by tests/fuzz: " = " made the line 2 bytes longer). */
START_TEST(test_print_full_lines)
{
    char line[300], err[ERRLEN] = "";
    char *text = NULL;
    struct h5cd_config c, d;
    /* A value after the name, an item alone on a continuation line, and a
     * list whose first item comes from a continuation line. */
    const char *heads[] = {"user_agent=", "deny_prefixes=", "deny_prefixes = a\n ",
                           "deny_prefixes =\n "};
    for (int i = 0; i < 4; i++) {
        const char *name = i == 0 ? "user_agent" : "deny_prefixes";
        const char *nl = strrchr(heads[i], '\n');
        size_t line_start = nl != NULL ? (size_t)(nl + 1 - heads[i]) : 0;
        int n = snprintf(line, sizeof(line), "%shttps://a/", heads[i]);
        memset(line + n, 'x', line_start + 198 - (size_t)n);
        memcpy(line + line_start + 198, "\n", 2);
        init(&c);
        ck_assert_msg(config_load_file(&c, write_file(line), err, sizeof(err)) == 0, "%s", err);
        text = print_to_string(&c);
        write_file(text);
        init(&d);
        ck_assert_msg(config_load_file(&d, tmpfile_path, err, sizeof(err)) == 0, "%s: %s", name,
                      err);
        ck_assert_int_eq(config_diff(&c, &d, NULL, NULL), 0);
        free(text);
        config_free(&c);
        config_free(&d);
    }
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *core = tcase_create("core");
    /* Unchecked: runs in the parent, so the directory goes even if a test fails. */
    tcase_add_unchecked_fixture(core, setup, teardown);
    tcase_add_test(core, test_defaults);
    tcase_add_test(core, test_print_full_lines);
    tcase_add_test(core, test_cache_dir_default);
    tcase_add_test(core, test_bools);
    tcase_add_test(core, test_uints);
    tcase_add_test(core, test_sizes);
    tcase_add_test(core, test_strings);
    tcase_add_test(core, test_lists);
    tcase_add_test(core, test_unknown_option);
    tcase_add_test(core, test_file_good);
    tcase_add_test(core, test_file_bad);
    tcase_add_test(core, test_file_missing);
    tcase_add_test(core, test_validate);
    tcase_add_test(core, test_print_round_trip);
    tcase_add_test(core, test_shipped_conf);
    suite_add_tcase(s, core);

    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, test_uint_limits);
    tcase_add_test(limits, test_size_limits);
    tcase_add_test(limits, test_list_limits);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
