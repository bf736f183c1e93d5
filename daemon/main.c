/*
 * main.c - h5chunkd's process lifecycle: command line, configuration,
 * detaching, start-up in dependency order, signals, and shutdown in the
 * reverse order.
 *
 * Start-up errors (bad flag, bad config, address in use, cache held by
 * another daemon) end the process with one line on stderr and exit status
 * 1, also when detaching: the parent waits on a pipe until the child is
 * serving or has failed, and reports for it.  Signals are taken
 * synchronously with sigwait() on the main thread, so no handler ever runs
 * in another thread's context.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "server.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.0.0"
#endif

#define ERR_LINE 512

/* Command-line values, applied over the config file's. */
struct cli {
    const char *config_path;
    bool check_only;
    struct {
        const char *key;
        const char *value;
    } overrides[16];
    size_t noverrides;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: h5chunkd [--config FILE] [--listen HOST:PORT] [--cache-dir DIR]\n"
            "                [--cache-size SIZE] [--foreground] [--allow-private-upstreams]\n"
            "                [--log-level LEVEL] [--check-config] [--help] [--version]\n"
            "A caching daemon for chunks and byte ranges of remote HDF5 files.\n"
            "SIZE takes suffixes K M G T (powers of 1024). See h5chunkd.conf for every option.\n");
}

static int add_override(struct cli *cli, const char *key, const char *value)
{
    if (cli->noverrides >= sizeof(cli->overrides) / sizeof(cli->overrides[0]))
        return -1;
    cli->overrides[cli->noverrides].key = key;
    cli->overrides[cli->noverrides].value = value;
    cli->noverrides++;
    return 0;
}

/* Returns 0 to run, 1 to exit successfully (help/version), -1 on a bad flag. */
static int parse_cli(int argc, char **argv, struct cli *cli)
{
    enum { OPT_LISTEN = 256, OPT_CACHE_DIR, OPT_CACHE_SIZE, OPT_ALLOW_PRIVATE, OPT_LOG_LEVEL,
           OPT_CHECK };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
        {"cache-size", required_argument, NULL, OPT_CACHE_SIZE},
        {"foreground", no_argument, NULL, 'f'},
        {"allow-private-upstreams", no_argument, NULL, OPT_ALLOW_PRIVATE},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int opt;
    int rc = 0;
    while (rc == 0 && (opt = getopt_long(argc, argv, "c:fhV", options, NULL)) != -1) {
        switch (opt) {
        case 'c': cli->config_path = optarg; break;
        case 'f': rc = add_override(cli, "foreground", "true"); break;
        case OPT_LISTEN: rc = add_override(cli, "listen", optarg); break;
        case OPT_CACHE_DIR: rc = add_override(cli, "cache_dir", optarg); break;
        case OPT_CACHE_SIZE: rc = add_override(cli, "cache_size", optarg); break;
        case OPT_ALLOW_PRIVATE: rc = add_override(cli, "allow_private_upstreams", "true"); break;
        case OPT_LOG_LEVEL: rc = add_override(cli, "log_level", optarg); break;
        case OPT_CHECK: cli->check_only = true; break;
        case 'h': usage(stdout); return 1;
        case 'V': printf("h5chunkd %s\n", PACKAGE_VERSION); return 1;
        default:
            fprintf(stderr, "h5chunkd: unknown or incomplete option '%s' (try --help)\n",
                    argv[optind - 1]);
            return -1;
        }
    }
    if (rc != 0) {
        fprintf(stderr, "h5chunkd: too many options\n");
        return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "h5chunkd: unexpected argument '%s' (try --help)\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* Defaults, then the config file, then the command line. */
static int build_config(const struct cli *cli, struct h5cd_config *cfg, char *err, size_t len)
{
    if (config_init(cfg) < 0) {
        snprintf(err, len, "out of memory");
        return -1;
    }
    if (cli->config_path != NULL && config_load_file(cfg, cli->config_path, err, len) < 0)
        return -1;
    for (size_t i = 0; i < cli->noverrides; i++) {
        char why[ERR_LINE - 16];
        if (config_set(cfg, cli->overrides[i].key, cli->overrides[i].value, why,
                       sizeof(why)) < 0) {
            int n = snprintf(err, len, "command line: %s", why);
            (void)n; /* a longer reason is cut; the line stays a line */
            return -1;
        }
    }
    return config_validate(cfg, err, len);
}

/* ---- detaching ---- */

static int ready_fd = -1; /* write end of the pipe the waiting parent reads */

/* In the parent: waits for the child's verdict and exits with it. */
static void parent_wait(int fd)
{
    char buf[ERR_LINE];
    size_t used = 0;
    ssize_t n;
    while (used < sizeof(buf) - 1 && (n = read(fd, buf + used, sizeof(buf) - 1 - used)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        used += (size_t)n;
    }
    buf[used] = '\0';
    if (strncmp(buf, "OK", 2) == 0)
        exit(0);
    fprintf(stderr, "h5chunkd: %s\n", used > 0 ? buf : "failed to start");
    exit(1);
}

static int detach(char *err, size_t len)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(err, len, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, len, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid > 0) {
        close(fds[1]);
        parent_wait(fds[0]);
    }
    close(fds[0]);
    ready_fd = fds[1];
    setsid();
    return 0;
}

/* Tells the waiting parent (if any) that we serve, and lets go of the terminal. */
static void announce_ready(void)
{
    if (ready_fd < 0)
        return;
    ssize_t rc = write(ready_fd, "OK", 2);
    (void)rc;
    close(ready_fd);
    ready_fd = -1;
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
        close(devnull);
    }
    log_use_syslog(true);
    if (chdir("/") < 0)
        log_warn("msg=\"cannot chdir to /\" errno=%d", errno);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    char line[ERR_LINE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (ready_fd >= 0) {
        ssize_t rc = write(ready_fd, line, strlen(line));
        (void)rc;
    } else {
        fprintf(stderr, "h5chunkd: %s\n", line);
    }
    exit(1);
}

/* ---- components ---- */

static void start_cache(struct server *srv)
{
    const struct h5cd_config *cfg = srv->cfg;
    struct blockcache_config bcfg = {
        .dir = cfg->cache_dir,
        .cap_bytes = cfg->cache_size,
        .block_size = (uint32_t)cfg->block_size,
        .high_watermark = cfg->cache_high_watermark,
        .low_watermark = cfg->cache_low_watermark,
    };
    struct blockcache_report rep = {0};
    int rc = blockcache_open(&bcfg, &srv->cache, &rep);
    if (rc == -EBUSY)
        die("cache directory %s is in use by another h5chunkd", cfg->cache_dir);
    if (rc < 0)
        die("cannot open the cache in %s: %s", cfg->cache_dir, strerror(-rc));
    if (rep.degraded)
        log_warn("msg=\"running without a disk cache: bytes are served pass-through\" dir=%s "
                 "reason=\"%s\"",
                 cfg->cache_dir, rep.reason);
    if (rep.orphan_files_removed + rep.temp_files_removed + rep.rows_dropped > 0)
        log_info("msg=\"cache reconciled after an unclean stop\" orphans=%llu temps=%llu "
                 "rows_dropped=%llu",
                 (unsigned long long)rep.orphan_files_removed,
                 (unsigned long long)rep.temp_files_removed, (unsigned long long)rep.rows_dropped);
}

static void start_engine(struct server *srv)
{
    const struct h5cd_config *cfg = srv->cfg;
    struct fetch_config fcfg = {
        .max_per_host = cfg->upstream_max_per_host,
        .max_total = cfg->upstream_max_total,
        .connect_timeout_ms = cfg->upstream_connect_timeout_ms,
        .timeout_ms = cfg->upstream_timeout_ms,
        .retries = cfg->upstream_retries,
        .retry_base_ms = cfg->upstream_retry_base_ms,
        .retry_budget_ms = cfg->upstream_retry_budget_ms,
        .user_agent = cfg->user_agent,
        .policy = srv->policy,
        .stats = &srv->stats,
    };
    int rc = fetch_new(&fcfg, &srv->fetch);
    if (rc < 0)
        die("cannot start the fetch engine: %s", strerror(-rc));
    struct remote_config rcfg = {
        .coalesce_gap = cfg->coalesce_gap,
        .coalesce_max = cfg->coalesce_max,
        .revalidate_s = cfg->revalidate_s,
    };
    if (remote_new(&rcfg, srv->cache, srv->fetch, srv->policy, &srv->stats, &srv->remote) < 0)
        die("out of memory");
    struct blockcache_stats cs;
    blockcache_get_stats(srv->cache, &cs);
    struct h5index_config icfg = {
        .dir = cs.degraded ? NULL : cfg->cache_dir,
        .prefix_bytes = cfg->h5_prefix_bytes,
    };
    rc = h5index_open(&icfg, srv->remote, &srv->stats, &srv->h5index);
    if (rc < 0)
        die("cannot open the HDF5 index: %s", strerror(-rc));
}

static void stop_all(struct server *srv)
{
    http_stop(srv);
    h5index_close(srv->h5index);
    fetch_free(srv->fetch);
    remote_free(srv->remote);
    blockcache_close(srv->cache);
    urlpolicy_free(srv->policy);
}

/* Blocks the signals we handle in every thread; returns the set for sigwait. */
static sigset_t block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    return set;
}

static void serve_until_signal(const sigset_t *set)
{
    for (;;) {
        int sig = 0;
        if (sigwait(set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            log_info("msg=\"SIGHUP received: configuration is read at start-up only, restart "
                     "to apply changes\"");
            continue;
        }
        log_info("msg=\"shutting down\" signal=%s", sig == SIGTERM ? "TERM" : "INT");
        return;
    }
}

int main(int argc, char **argv)
{
    struct cli cli = {0};
    int rc = parse_cli(argc, argv, &cli);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    struct h5cd_config cfg;
    char err[ERR_LINE];
    if (build_config(&cli, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "h5chunkd: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    if (cli.check_only) {
        printf("h5chunkd: configuration OK\n");
        config_free(&cfg);
        return 0;
    }
    log_set_level((enum log_level)log_level_parse(cfg.log_level));

    struct server srv = {.cfg = &cfg, .listen_fd = -1, .started = time(NULL)};
    stats_init(&srv.stats);
    srv.listen_fd = http_listen(cfg.listen, err, sizeof(err));
    if (srv.listen_fd < 0)
        die("%s", err);
    if (!cfg.foreground && detach(err, sizeof(err)) < 0)
        die("%s", err);
    sigset_t signals = block_signals();
    srv.policy = urlpolicy_new(&cfg);
    if (srv.policy == NULL)
        die("out of memory");
    start_cache(&srv);
    start_engine(&srv);
    if (http_start(&srv, err, sizeof(err)) < 0)
        die("%s", err);
    char addr[128];
    http_describe_socket(srv.listen_fd, addr, sizeof(addr));
    log_info("msg=\"h5chunkd %s listening\" addr=%s cache_dir=%s cache_size=%llu", PACKAGE_VERSION,
             addr, cfg.cache_dir, (unsigned long long)cfg.cache_size);
    announce_ready();
    serve_until_signal(&signals);
    stop_all(&srv);
    log_info("msg=\"stopped\"");
    config_free(&cfg);
    return 0;
}
