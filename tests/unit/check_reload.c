/*
 * check_reload.c - unit tests of lib/reload (and the config.c helpers it
 * rests on: config_diff, config_copy_option): configuration precedence,
 * refusal of a bad file, and the SIGHUP plan - which changed options take
 * effect, which need a restart and are put back to their running values.
 * Config files live in a private mkdtemp directory removed by each test.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reload.h"

#define ERRLEN 256

static char tmpdir[64];
static char conf_path[128];

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_reload.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        abort();
    snprintf(conf_path, sizeof(conf_path), "%s/h5chunkd.conf", tmpdir);
}

static void teardown(void)
{
    unlink(conf_path);
    rmdir(tmpdir);
}

static void write_conf(const char *text)
{
    FILE *fp = fopen(conf_path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(text, fp);
    ck_assert_int_eq(fclose(fp), 0);
}

/* Builds from conf_path with no overrides; asserts success. */
static void build_ok(struct h5cd_config *cfg)
{
    char err[ERRLEN] = "";
    ck_assert_msg(reload_build(cfg, conf_path, NULL, 0, err, sizeof(err)) == 0, "%s", err);
}

START_TEST(test_build_precedence)
{
    write_conf("[h5chunkd]\ncache_size = 2G\nlog_level = warn\nmax_keys = 7\n");
    const struct reload_override ov[] = {{"cache_size", "3G"}, {"foreground", "true"}};
    struct h5cd_config c;
    char err[ERRLEN] = "";
    ck_assert_msg(reload_build(&c, conf_path, ov, 2, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(c.cache_size, 3ULL << 30); /* the command line wins */
    ck_assert_str_eq(c.log_level, "warn");       /* the file beats the default */
    ck_assert_uint_eq(c.max_keys, 7);
    ck_assert(c.foreground);
    ck_assert_uint_eq(c.max_connections, 1024); /* untouched: the default */
    ck_assert_uint_eq(c.unix_socket_mode, 0660);
    ck_assert_str_eq(c.token_scope, "admin");
    ck_assert_str_eq(c.token_file, "");
    ck_assert_str_eq(c.access_log, "");
    config_free(&c);
}
END_TEST

START_TEST(test_build_without_file)
{
    struct h5cd_config c;
    char err[ERRLEN] = "";
    ck_assert_msg(reload_build(&c, NULL, NULL, 0, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(c.cache_size, 10ULL << 30);
    config_free(&c);
}
END_TEST

START_TEST(test_build_refuses_bad_input)
{
    struct h5cd_config c;
    char err[ERRLEN] = "";

    write_conf("cache_size = 2G\nno_such_option = 1\n");
    ck_assert_int_eq(reload_build(&c, conf_path, NULL, 0, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, ":2: unknown option 'no_such_option'") != NULL, "%s", err);
    ck_assert_ptr_null(c.listen); /* freed */
    config_free(&c);              /* and freeing again is harmless */

    write_conf("cache_low_watermark = 99\n"); /* fine alone, bad against the high mark */
    ck_assert_int_eq(reload_build(&c, conf_path, NULL, 0, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "cache_low_watermark") != NULL, "%s", err);

    write_conf("log_level = info\n");
    const struct reload_override bad[] = {{"log_level", "loud"}};
    ck_assert_int_eq(reload_build(&c, conf_path, bad, 1, err, sizeof(err)), -1);
    ck_assert_msg(strncmp(err, "command line: log_level", 23) == 0, "%s", err);

    char missing[160];
    snprintf(missing, sizeof(missing), "%s/missing.conf", tmpdir);
    ck_assert_int_eq(reload_build(&c, missing, NULL, 0, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "No such file") != NULL, "%s", err);
}
END_TEST

START_TEST(test_new_options)
{
    struct h5cd_config c;
    char err[ERRLEN] = "";
    write_conf("unix_socket_mode = 600\nunix_socket_group = staff\ntoken_file = /etc/tok\n"
               "token_scope = all\naccess_log = /var/log/h5chunkd/access.log\n");
    build_ok(&c);
    ck_assert_uint_eq(c.unix_socket_mode, 0600);
    ck_assert_str_eq(c.unix_socket_group, "staff");
    ck_assert_str_eq(c.token_file, "/etc/tok");
    ck_assert_str_eq(c.token_scope, "all");
    ck_assert_str_eq(c.access_log, "/var/log/h5chunkd/access.log");
    ck_assert_int_eq(config_set(&c, "unix_socket_mode", "0777", err, sizeof(err)), 0);
    ck_assert_int_eq(config_set(&c, "unix_socket_mode", "0", err, sizeof(err)), 0);
    ck_assert_uint_eq(c.unix_socket_mode, 0);
    ck_assert_int_eq(config_set(&c, "unix_socket_mode", "01000", err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "out of range") != NULL, "%s", err);
    ck_assert_int_eq(config_set(&c, "unix_socket_mode", "0668", err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "octal") != NULL, "%s", err);
    ck_assert_int_eq(config_set(&c, "unix_socket_mode", "", err, sizeof(err)), -1);
    ck_assert_int_eq(config_set(&c, "token_scope", "admins", err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "admin, all") != NULL, "%s", err);
    ck_assert_int_eq(config_set(&c, "token_file", "relative/tok", err, sizeof(err)), -1);
    ck_assert_int_eq(config_set(&c, "access_log", "access.log", err, sizeof(err)), -1);
    ck_assert_int_eq(config_set(&c, "access_log", "", err, sizeof(err)), 0);
    ck_assert_str_eq(c.access_log, "");
    config_free(&c);
}
END_TEST

struct seen {
    char names[1024];
    size_t reloadable;
    size_t fixed;
};

static void collect(const char *name, bool reloadable, void *arg)
{
    struct seen *s = arg;
    size_t used = strlen(s->names);
    snprintf(s->names + used, sizeof(s->names) - used, "%s%s%s", used ? "," : "", name,
             reloadable ? "+" : "");
    if (reloadable)
        s->reloadable++;
    else
        s->fixed++;
}

START_TEST(test_diff_and_copy)
{
    struct h5cd_config a, b;
    write_conf("\n");
    build_ok(&a);
    build_ok(&b);
    ck_assert_uint_eq(config_diff(&a, &b, NULL, NULL), 0);
    char err[ERRLEN];
    ck_assert_int_eq(config_set(&b, "listen", "127.0.0.1:9", err, sizeof(err)), 0);
    ck_assert_int_eq(config_set(&b, "deny_prefixes", "http://x/ http://y/", err, sizeof(err)), 0);
    ck_assert_int_eq(config_set(&b, "unix_socket_mode", "0600", err, sizeof(err)), 0);
    struct seen s = {0};
    ck_assert_uint_eq(config_diff(&a, &b, collect, &s), 3);
    /* Table order; '+' marks a reloadable option. */
    ck_assert_str_eq(s.names, "listen,unix_socket_mode,deny_prefixes+");
    ck_assert_int_eq(config_copy_option(&a, &b, "deny_prefixes"), 0);
    ck_assert_uint_eq(a.deny_prefixes.count, 2);
    ck_assert_str_eq(a.deny_prefixes.items[1], "http://y/");
    ck_assert_int_eq(config_copy_option(&a, &b, "listen"), 0);
    ck_assert_int_eq(config_copy_option(&a, &b, "unix_socket_mode"), 0);
    ck_assert_uint_eq(config_diff(&a, &b, NULL, NULL), 0);
    ck_assert_int_eq(config_copy_option(&a, &b, "nope"), -ENOENT);
    /* A list copied from an empty one is empty again. */
    config_free(&b);
    build_ok(&b);
    ck_assert_int_eq(config_copy_option(&a, &b, "deny_prefixes"), 0);
    ck_assert_uint_eq(a.deny_prefixes.count, 0);
    ck_assert_ptr_null(a.deny_prefixes.items);
    config_free(&a);
    config_free(&b);
}
END_TEST

START_TEST(test_plan_reloadable)
{
    struct h5cd_config running, next;
    write_conf("log_level = info\ncache_size = 1G\n");
    build_ok(&running);
    write_conf("log_level = warn\ncache_size = 64M\nallow_prefixes = https://a/\n"
               "revalidate_s = 5\nmax_keys = 10\nmax_request_body = 1M\n"
               "batch_inflight_bytes = 2M\ntoken_scope = all\naccess_log = /tmp/x.log\n");
    build_ok(&next);
    struct reload_plan plan;
    ck_assert_int_eq(reload_plan(&running, &next, &plan), 0);
    ck_assert_uint_eq(plan.nrestart, 0);
    ck_assert_str_eq(plan.restart, "");
    ck_assert_uint_eq(plan.napply, 9);
    ck_assert_str_eq(plan.apply, "max_request_body,token_scope,cache_size,revalidate_s,max_keys,"
                                 "batch_inflight_bytes,allow_prefixes,log_level,access_log");
    ck_assert(plan.log_level && plan.cache_size && plan.policy && plan.revalidate);
    ck_assert_uint_eq(next.cache_size, 64ULL << 20); /* taken over */
    ck_assert_str_eq(next.log_level, "warn");
    config_free(&running);
    config_free(&next);
}
END_TEST

START_TEST(test_plan_restart_reverts)
{
    struct h5cd_config running, next;
    write_conf("listen = 127.0.0.1:7000\nblock_size = 64K\n");
    build_ok(&running);
    write_conf("listen = 127.0.0.1:7001\nblock_size = 128K\nmax_connections = 9\n"
               "upstream_retries = 1\nuser_agent = x/1\ndeny_prefixes = http://bad/\n");
    build_ok(&next);
    struct reload_plan plan;
    ck_assert_int_eq(reload_plan(&running, &next, &plan), 0);
    ck_assert_uint_eq(plan.nrestart, 5);
    ck_assert_str_eq(plan.restart, "listen,max_connections,block_size,upstream_retries,user_agent");
    ck_assert_uint_eq(plan.napply, 1);
    ck_assert_str_eq(plan.apply, "deny_prefixes");
    ck_assert(plan.policy);
    ck_assert(!plan.log_level && !plan.cache_size && !plan.revalidate);
    /* next now says what is in effect: the running values of restart-only options. */
    ck_assert_str_eq(next.listen, "127.0.0.1:7000");
    ck_assert_uint_eq(next.block_size, 64 * 1024);
    ck_assert_uint_eq(next.max_connections, 1024);
    ck_assert_str_eq(next.user_agent, running.user_agent);
    ck_assert_uint_eq(next.deny_prefixes.count, 1);
    /* A second SIGHUP with the same file names the same options again. */
    struct h5cd_config again;
    build_ok(&again);
    ck_assert_int_eq(reload_plan(&next, &again, &plan), 0);
    ck_assert_uint_eq(plan.nrestart, 5);
    ck_assert_uint_eq(plan.napply, 0);
    config_free(&again);
    config_free(&running);
    config_free(&next);
}
END_TEST

START_TEST(test_plan_nothing_changed)
{
    struct h5cd_config running, next;
    write_conf("cache_size = 1G\n");
    build_ok(&running);
    build_ok(&next);
    struct reload_plan plan;
    memset(&plan, 0xff, sizeof(plan)); /* every field must be reset */
    ck_assert_int_eq(reload_plan(&running, &next, &plan), 0);
    ck_assert_uint_eq(plan.napply + plan.nrestart, 0);
    ck_assert_str_eq(plan.apply, "");
    ck_assert(!plan.policy && !plan.log_level && !plan.cache_size && !plan.revalidate);
    config_free(&running);
    config_free(&next);
}
END_TEST

/* Limits: every option changed at once still fits the name lists. */
START_TEST(test_plan_every_option)
{
    struct h5cd_config running, next;
    write_conf("\n");
    build_ok(&running);
    write_conf("listen = 127.0.0.1:1\nallow_remote_clients = true\nserver_names = a.example\n"
               "max_connections = 2\nclient_timeout_s = 3\nmax_request_body = 2K\n"
               "header_timeout_s = 4\nbody_timeout_s = 5\nmemory_budget = 300M\n"
               "unix_socket_mode = 0600\nunix_socket_group = g\ntoken_file = /t\n"
               "token_scope = all\ncache_dir = /c\ncache_size = 2M\nblock_size = 8K\n"
               "cache_high_watermark = 90\ncache_low_watermark = 80\nrevalidate_s = 1\n"
               "coalesce_gap = 8K\ncoalesce_max = 64K\nread_window = 128K\n"
               "h5_prefix_bytes = 8K\nmax_keys = 3\nbatch_inflight_bytes = 3M\n"
               "upstream_max_per_host = 2\nupstream_max_total = 3\n"
               "upstream_connect_timeout_ms = 101\nupstream_timeout_ms = 102\n"
               "upstream_retries = 2\nupstream_retry_base_ms = 3\n"
               "upstream_retry_budget_ms = 4\nallow_private_upstreams = true\n"
               "allow_prefixes = https://a/\ndeny_prefixes = https://b/\n"
               "strip_query_params = x\nuser_agent = u/1\nforeground = true\n"
               "log_level = debug\naccess_log = /a\n");
    build_ok(&next);
    size_t total = config_diff(&running, &next, NULL, NULL);
    struct reload_plan plan;
    ck_assert_int_eq(reload_plan(&running, &next, &plan), 0);
    ck_assert_uint_eq(plan.napply + plan.nrestart, total);
    ck_assert_uint_ge(total, 40);
    ck_assert_uint_eq(plan.napply, 16);
    ck_assert_ptr_nonnull(strstr(plan.apply, "memory_budget"));
    ck_assert_ptr_nonnull(strstr(plan.restart, "header_timeout_s"));
    ck_assert_ptr_nonnull(strstr(plan.restart, "h5_prefix_bytes")); /* lib/h5index keeps a copy */
    ck_assert_uint_lt(strlen(plan.restart), RELOAD_NAMES_BYTES - 1);
    ck_assert_ptr_nonnull(strstr(plan.restart, "foreground"));
    ck_assert_ptr_nonnull(strstr(plan.apply, "access_log"));
    /* After the plan only the reloadable options still differ. */
    ck_assert_uint_eq(config_diff(&running, &next, NULL, NULL), plan.napply);
    config_free(&running);
    config_free(&next);
}
END_TEST

static Suite *reload_suite(void)
{
    Suite *s = suite_create("reload");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_add_test(core, test_build_precedence);
    tcase_add_test(core, test_build_without_file);
    tcase_add_test(core, test_build_refuses_bad_input);
    tcase_add_test(core, test_new_options);
    tcase_add_test(core, test_diff_and_copy);
    tcase_add_test(core, test_plan_reloadable);
    tcase_add_test(core, test_plan_restart_reverts);
    tcase_add_test(core, test_plan_nothing_changed);
    suite_add_tcase(s, core);

    TCase *limits = tcase_create("limits");
    tcase_add_checked_fixture(limits, setup, teardown);
    tcase_add_test(limits, test_plan_every_option);
    suite_add_tcase(s, limits);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(reload_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
