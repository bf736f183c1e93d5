/*
 * main.c - h5chunkd's process lifecycle: command line, configuration,
 * detaching, start-up in dependency order, signals, SIGHUP reloads, the
 * systemd notify protocol, and shutdown in the reverse order.
 *
 * Start-up errors (bad flag, bad config, address in use, cache held by
 * another daemon, unusable token file) end the process with one line on
 * stderr and exit status 1, also when detaching: the parent waits on a
 * pipe until the child is serving or has failed, and reports for it.
 * Under systemd (NOTIFY_SOCKET set) the daemon never detaches and reports
 * READY/RELOADING/STOPPING and a STATUS line instead.  Signals are taken
 * synchronously with sigtimedwait() on the main thread, so no handler ever
 * runs in another thread's context, and a reload runs on the main thread
 * while connection threads keep serving with the configuration they hold.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "authtoken.h"
#include "conntrack.h"
#include "http.h"
#include "log.h"
#include "reload.h"
#include "server.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.0.0"
#endif

#define ERR_LINE            512
#define MALLOC_ARENAS       2                   /* glibc malloc arenas (M_ARENA_MAX) */
#define MALLOC_MMAP_BYTES   (32 * 1024 * 1024)  /* M_MMAP_THRESHOLD: glibc's largest */
#define MALLOC_TRIM_BYTES   (128 * 1024 * 1024) /* M_TRIM_THRESHOLD */
#define MAX_RUNNING_JOBS    4                   /* prefetch jobs running at once */
#define MAX_KEPT_JOBS       256                 /* finished jobs remembered for GET /v1/jobs */
#define STATUS_INTERVAL_S   30                  /* systemd STATUS= refresh while idle */
#define STATUS_BYTES        512
#define FDS_BESIDES_CLIENTS 256 /* cache, sqlite, upstream connections, logs */

/* Command-line values, applied over the config file's (at start and on SIGHUP). */
struct cli {
    const char *config_path;
    bool check_only;
    struct reload_override overrides[16];
    size_t noverrides;
    char *parents; /* every --parent, joined with commas; NULL for none */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: h5chunkd [--config FILE] [--listen HOST:PORT] [--cache-dir DIR]\n"
            "                [--cache-size SIZE] [--foreground] [--allow-private-upstreams]\n"
            "                [--parent URL]... [--log-level LEVEL] [--check-config] [--help]\n"
            "                [--version]\n"
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

/* --parent may be given many times: the URLs are joined into one value of `parents`. */
static int add_parent_flag(struct cli *cli, const char *url)
{
    size_t had = cli->parents != NULL ? strlen(cli->parents) : 0;
    if (had + strlen(url) > H5CD_MAX_URL_BYTES * PARENTS_MAX)
        return -1;
    char *joined = realloc(cli->parents, had + strlen(url) + 2);
    if (joined == NULL)
        return -1;
    snprintf(joined + had, strlen(url) + 2, "%s%s", had > 0 ? "," : "", url);
    cli->parents = joined;
    return 0;
}

/* Returns 0 to run, 1 to exit successfully (help/version), -1 on a bad flag. */
static int parse_cli(int argc, char **argv, struct cli *cli)
{
    enum {
        OPT_LISTEN = 256,
        OPT_CACHE_DIR,
        OPT_CACHE_SIZE,
        OPT_ALLOW_PRIVATE,
        OPT_LOG_LEVEL,
        OPT_CHECK,
        OPT_PARENT
    };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
        {"cache-size", required_argument, NULL, OPT_CACHE_SIZE},
        {"foreground", no_argument, NULL, 'f'},
        {"allow-private-upstreams", no_argument, NULL, OPT_ALLOW_PRIVATE},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"parent", required_argument, NULL, OPT_PARENT},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int opt;
    int rc = 0;
    while (rc == 0 && (opt = getopt_long(argc, argv, "c:fhV", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            cli->config_path = optarg;
            break;
        case 'f':
            rc = add_override(cli, "foreground", "true");
            break;
        case OPT_LISTEN:
            rc = add_override(cli, "listen", optarg);
            break;
        case OPT_CACHE_DIR:
            rc = add_override(cli, "cache_dir", optarg);
            break;
        case OPT_CACHE_SIZE:
            rc = add_override(cli, "cache_size", optarg);
            break;
        case OPT_ALLOW_PRIVATE:
            rc = add_override(cli, "allow_private_upstreams", "true");
            break;
        case OPT_LOG_LEVEL:
            rc = add_override(cli, "log_level", optarg);
            break;
        case OPT_CHECK:
            cli->check_only = true;
            break;
        case OPT_PARENT:
            rc = add_parent_flag(cli, optarg);
            break;
        case 'h':
            usage(stdout);
            return 1;
        case 'V':
            printf("h5chunkd %s\n", PACKAGE_VERSION);
            return 1;
        default:
            fprintf(stderr, "h5chunkd: unknown or incomplete option '%s' (try --help)\n",
                    argv[optind - 1]);
            return -1;
        }
    }
    if (rc == 0 && cli->parents != NULL)
        rc = add_override(cli, "parents", cli->parents);
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

/* ---- what SIGHUP swaps ---- */

/*
 * One published configuration and what was built from it.  Routes read
 * srv->cfg and srv->token without a lock, so a generation is never freed
 * while the daemon runs: a reload pushes a new one and exit frees them all
 * once every thread has been joined.  Reloads are rare and a generation is
 * a few kilobytes; a reload that changes nothing publishes nothing.
 */
struct generation {
    struct h5cd_config cfg;
    char *token;              /* NULL: no token_file */
    struct urlpolicy *policy; /* NULL: an older generation's policy still applies */
    struct generation *older;
};

struct daemon {
    struct server srv;
    struct cli cli;
    struct generation *gen;         /* newest first; gen->cfg is srv.cfg */
    const struct urlpolicy *policy; /* the policy in force */
    bool notify;                    /* NOTIFY_SOCKET is set: systemd listens */
};

static void generation_free(struct generation *g)
{
    while (g != NULL) {
        struct generation *older = g->older;
        config_free(&g->cfg);
        authtoken_free(g->token);
        urlpolicy_free(g->policy);
        free(g);
        g = older;
    }
}

/* Reads token_file, if one is configured.  0, or -1 with a reason. */
static int load_token(const struct h5cd_config *cfg, char **token, char *err, size_t errlen)
{
    *token = NULL;
    if (cfg->token_file[0] == '\0')
        return 0;
    if (authtoken_load(cfg->token_file, token, err, errlen) < 0)
        return -1;
    if (strlen(*token) < AUTHTOKEN_MIN_BYTES)
        log_warn("msg=\"the bearer token is short: use at least %d random characters\" "
                 "token_file=%s",
                 AUTHTOKEN_MIN_BYTES, cfg->token_file);
    return 0;
}

/* ---- systemd ---- */

/* "1.5 GiB"-style sizes for STATUS= lines. */
static void human_size(uint64_t bytes, char *out, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    snprintf(out, cap, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

/* One line for systemctl status: where we listen, the cache, and the traffic so far. */
static void status_line(struct server *srv, char *out, size_t cap)
{
    char addrs[STATUS_BYTES / 2] = "", one[128], used[32], limit[32];
    size_t len = 0;
    for (size_t i = 0; i < srv->nlisten; i++) {
        http_describe_socket(srv->listen_fd[i], one, sizeof(one));
        int n = snprintf(addrs + len, sizeof(addrs) - len, "%s%s", i > 0 ? ", " : "", one);
        if (n < 0 || (size_t)n >= sizeof(addrs) - len)
            break; /* a cut list of addresses is still a useful status */
        len += (size_t)n;
    }
    struct h5cd_gauges g;
    server_gauges(srv, &g);
    human_size(g.cache_bytes, used, sizeof(used));
    human_size(g.cache_limit_bytes, limit, sizeof(limit));
    uint64_t hits = STATS_GET(&srv->stats, cache_hits);
    uint64_t misses = STATS_GET(&srv->stats, cache_misses);
    double ratio = hits + misses > 0 ? 100.0 * (double)hits / (double)(hits + misses) : 0.0;
    snprintf(out, cap, "Serving on %s; cache %s of %s; %llu requests, block hit ratio %.1f%%",
             addrs, used, limit, (unsigned long long)STATS_GET(&srv->stats, requests), ratio);
}

/* Sends state (READY=1, ...) plus a fresh STATUS= line to systemd, if it listens. */
static void notify(struct daemon *d, const char *state)
{
    if (!d->notify)
        return;
    char status[STATUS_BYTES];
    status_line(&d->srv, status, sizeof(status));
    int rc = sd_notifyf(0, "%s%sSTATUS=%s", state, state[0] != '\0' ? "\n" : "", status);
    if (rc < 0)
        log_warn("msg=\"cannot notify systemd\" err=\"%s\"", strerror(-rc));
}

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
    if (rc == -EPERM)
        die("%s", rep.reason);
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

/* The site caches named by `parents`, or NULL when there are none. */
static struct parents *start_parents(const struct h5cd_config *cfg, struct parents **out)
{
    *out = NULL;
    if (cfg->parents.count == 0)
        return NULL;
    struct parents_config pcfg = {
        .urls = (const char *const *)cfg->parents.items,
        .count = cfg->parents.count,
        .slice = cfg->parent_slice,
        .retry_ms = cfg->parent_retry_ms,
        .retry_max_ms = cfg->parent_retry_max_ms,
    };
    char err[ERR_LINE];
    int rc = parents_new(&pcfg, out, err, sizeof(err));
    if (rc < 0)
        die("parents: %s", rc == -ENOMEM ? "out of memory" : err);
    log_info("msg=\"site caches before the origin\" parents=%zu slice=%llu", cfg->parents.count,
             (unsigned long long)cfg->parent_slice);
    return *out;
}

static void start_engine(struct server *srv)
{
    const struct h5cd_config *cfg = srv->cfg;
    srv->budget = membudget_new(cfg->memory_budget);
    if (srv->budget == NULL)
        die("out of memory");
    if ((srv->links = linkstats_new()) == NULL)
        die("out of memory");
    struct fetch_config fcfg = {
        .max_per_host = cfg->upstream_max_per_host,
        .max_total = cfg->upstream_max_total,
        .connect_timeout_ms = cfg->upstream_connect_timeout_ms,
        .timeout_ms = cfg->upstream_timeout_ms,
        .retries = cfg->upstream_retries,
        .retry_base_ms = cfg->upstream_retry_base_ms,
        .retry_budget_ms = cfg->upstream_retry_budget_ms,
        .max_redirects = cfg->max_redirects,
        .user_agent = cfg->user_agent,
        .policy = srv->policy,
        .stats = &srv->stats,
        .parents = start_parents(cfg, &srv->parents),
        .parent_connect_timeout_ms = cfg->parent_connect_timeout_ms,
        .parent_timeout_ms = cfg->parent_timeout_ms,
        .links = srv->links,
    };
    int rc = fetch_new(&fcfg, &srv->fetch);
    if (rc < 0)
        die("cannot start the fetch engine: %s", strerror(-rc));
    struct remote_config rcfg = {
        .coalesce_gap = cfg->coalesce_gap,
        .coalesce_max = cfg->coalesce_max,
        .revalidate_s = cfg->revalidate_s,
        .max_fetches_per_batch = cfg->upstream_max_per_host,
        .budget = srv->budget,
        .parent_slice = srv->parents != NULL ? cfg->parent_slice : 0,
        .links = srv->links,
        .whole_file_rtts = cfg->h5_whole_file_rtts,
        .whole_file_max = cfg->h5_whole_file_max,
        .exact_ranges = cfg->exact_ranges,
    };
    if (remote_new(&rcfg, srv->cache, srv->fetch, srv->policy, &srv->stats, &srv->remote) < 0)
        die("out of memory");
    char err[ERR_LINE];
    struct credentials *creds = NULL;
    if (credentials_load(cfg->credentials_file, &creds, err, sizeof(err)) < 0)
        die("%s", err);
    if (credentials_count(creds) > 0)
        log_info("msg=\"upstream credentials loaded\" rules=%zu", credentials_count(creds));
    if ((srv->creds = credstore_new(creds)) == NULL)
        die("out of memory");
    if ((srv->resolve = resolve_new(cfg, srv->creds, &srv->stats, err, sizeof(err))) == NULL)
        die("%s", err);
    remote_set_resolver(srv->remote, srv->resolve);
    struct blockcache_stats cs;
    blockcache_get_stats(srv->cache, &cs);
    char worker[PATH_MAX];
    if (workerpool_find_worker(cfg->worker_path, LIBEXECDIR, worker, sizeof(worker)) < 0)
        die("cannot find the h5chunkd-worker program (worker_path, H5CHUNKD_WORKER, next to "
            "h5chunkd, or %s/h5chunkd)",
            LIBEXECDIR);
    struct workerpool_config wcfg = {
        .worker_path = worker,
        .workers = cfg->workers,
        .timeout_ms = cfg->worker_timeout_s * 1000,
        .memory_bytes = cfg->worker_memory,
        .log_level = cfg->log_level,
    };
    if (workerpool_new(&wcfg, srv->remote, &srv->stats, &srv->workers) < 0)
        die("out of memory");
    struct h5index_config icfg = {
        .dir = cs.degraded ? NULL : cfg->cache_dir,
        .prefix_bytes = cfg->h5_prefix_bytes,
        .max_decode_bytes = cfg->max_decode_bytes,
        .cache_epoch = blockcache_epoch(srv->cache),
        .remote = srv->remote,
    };
    rc = h5index_open(&icfg, srv->workers, &srv->stats, &srv->h5index);
    if (rc < 0)
        die("cannot open the HDF5 index: %s", strerror(-rc));
    if (jobs_new(MAX_RUNNING_JOBS, MAX_KEPT_JOBS, &srv->jobs) < 0)
        die("out of memory");
}

static void start_conntrack(struct server *srv)
{
    const struct h5cd_config *cfg = srv->cfg;
    struct conntrack_config ccfg = {
        .max_connections = cfg->max_connections,
        .header_timeout_s = cfg->header_timeout_s,
        .body_timeout_s = cfg->body_timeout_s,
        .idle_timeout_s = cfg->client_timeout_s,
        .stats = &srv->stats,
    };
    int rc = conntrack_new(&ccfg, &srv->conns);
    if (rc < 0)
        die("cannot start the connection sweeper: %s", strerror(-rc));
}

/*
 * Each client connection needs two descriptors (its socket and the
 * sweeper's duplicate) besides the cache's and upstream's: the soft limit
 * (often 1024) is raised to the hard one, with a warning if that is short.
 */
static void raise_fd_limit(unsigned max_connections)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t want = (rlim_t)http_connection_slots(max_connections) * 2 + FDS_BESIDES_CLIENTS;
    if (rl.rlim_cur < want && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want)
        log_warn("msg=\"the open-file limit is lower than max_connections needs: raise LimitNOFILE "
                 "or lower max_connections\" limit=%llu needed=%llu",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

/* Reverse order of start-up; every thread is joined before the generations go. */
static void stop_all(struct daemon *d)
{
    struct server *srv = &d->srv;
    http_stop(srv);
    conntrack_free(srv->conns);
    jobs_free(srv->jobs); /* cancels prefetches; they need the engine until they end */
    h5index_close(srv->h5index);
    workerpool_free(srv->workers); /* no request uses a worker any more */
    fetch_free(srv->fetch);
    parents_free(srv->parents);
    remote_free(srv->remote);
    linkstats_free(srv->links);
    resolve_free(srv->resolve);
    credstore_free(srv->creds);
    membudget_free(srv->budget);
    blockcache_close(srv->cache);
    accesslog_free(srv->access_log);
    generation_free(d->gen);
    d->gen = NULL;
}

/* ---- SIGHUP ---- */

/* Makes next the configuration in effect.  Fallible steps are done already. */
static void publish(struct daemon *d, struct generation *next, const struct reload_plan *plan)
{
    struct server *srv = &d->srv;
    if (plan->log_level)
        log_set_level((enum log_level)log_level_parse(next->cfg.log_level));
    if (plan->cache_size)
        blockcache_set_cap(srv->cache, next->cfg.cache_size);
    membudget_set_limit(srv->budget, next->cfg.memory_budget);
    if (next->policy != NULL) {
        d->policy = next->policy;
        fetch_set_policy(srv->fetch, d->policy);
    }
    if (next->policy != NULL || plan->revalidate)
        remote_reconfigure(srv->remote, d->policy, next->cfg.revalidate_s);
    remote_set_whole_file(srv->remote, next->cfg.h5_whole_file_rtts, next->cfg.h5_whole_file_max);
    char err[ERR_LINE];
    if (plan->resolve && resolve_reconfigure(srv->resolve, &next->cfg, err, sizeof(err)) < 0)
        log_error("msg=\"cannot apply the new s3/dandi options; the old ones stay\" "
                  "reason=\"%s\"",
                  err);
    atomic_store(&srv->token, next->token);
    atomic_store(&srv->cfg, &next->cfg);
    next->older = d->gen;
    d->gen = next;
}

static bool same_token(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Builds the new generation; NULL (logged) when the running one must stay. */
static struct generation *prepare(struct daemon *d, struct reload_plan *plan)
{
    char err[ERR_LINE];
    struct generation *next = calloc(1, sizeof(*next));
    if (next == NULL) {
        log_error("msg=\"reload failed: out of memory; keeping the running configuration\"");
        return NULL;
    }
    if (reload_build(&next->cfg, d->cli.config_path, d->cli.overrides, d->cli.noverrides, err,
                     sizeof(err)) < 0)
        goto fail;
    if (reload_plan(&d->gen->cfg, &next->cfg, plan) < 0) {
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    if (load_token(&next->cfg, &next->token, err, sizeof(err)) < 0)
        goto fail;
    if (plan->policy && (next->policy = urlpolicy_new(&next->cfg)) == NULL) {
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    return next;
fail:
    log_error("msg=\"reload failed: keeping the running configuration\" reason=\"%s\"", err);
    generation_free(next);
    return NULL;
}

/*
 * Re-reads the same config file with the same command-line overrides.
 * Options that can change at run time take effect; others are logged as
 * needing a restart.  The access log is reopened either way (logrotate).
 */
static void reload(struct daemon *d)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    char state[96];
    snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000);
    notify(d, state);
    log_info("msg=\"SIGHUP: reloading the configuration\" config=%s",
             d->cli.config_path != NULL ? d->cli.config_path : "(none)");
    struct reload_plan plan;
    struct generation *next = prepare(d, &plan);
    if (next != NULL) {
        if (plan.nrestart > 0)
            log_warn("msg=\"changed options need a restart to take effect\" options=%s",
                     plan.restart);
        if (plan.napply > 0 || !same_token(next->token, d->gen->token)) {
            publish(d, next, &plan);
            log_info("msg=\"configuration reloaded\" applied=%s",
                     plan.napply > 0 ? plan.apply : "token");
        } else {
            generation_free(next);
            log_info("msg=\"configuration reloaded: nothing changed\"");
        }
    }
    char err[ERR_LINE];
    const struct h5cd_config *cfg = d->srv.cfg;
    struct credentials *creds = NULL;
    if (credentials_load(cfg->credentials_file, &creds, err, sizeof(err)) < 0)
        log_error("msg=\"cannot read the credentials file: the running credentials stay\" "
                  "reason=\"%s\"",
                  err);
    else
        credstore_set(d->srv.creds, creds);
    /* What the old credentials unlocked is asked again with the new ones. */
    resolve_forget_all(d->srv.resolve);
    if (accesslog_set_path(d->srv.access_log, cfg->access_log, err, sizeof(err)) < 0)
        log_error("msg=\"cannot reopen the access log: it keeps its previous file\" reason=\"%s\"",
                  err);
    notify(d, "READY=1");
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

static void serve_until_signal(struct daemon *d, const sigset_t *set)
{
    for (;;) {
        struct timespec wait = {.tv_sec = STATUS_INTERVAL_S};
        int sig = sigtimedwait(set, NULL, &wait);
        if (sig < 0) {
            if (errno == EAGAIN)
                notify(d, ""); /* a fresh STATUS= line every STATUS_INTERVAL_S */
            continue;
        }
        if (sig == SIGHUP) {
            reload(d);
            continue;
        }
        log_info("msg=\"shutting down\" signal=%s", sig == SIGTERM ? "TERM" : "INT");
        return;
    }
}

/* Binds `listen`, unless systemd passed the sockets. */
static void open_sockets(struct server *srv)
{
    const struct h5cd_config *cfg = srv->cfg;
    char err[ERR_LINE];
    int n = http_adopt_sockets(srv, cfg->allow_remote_clients, err, sizeof(err));
    if (n < 0)
        die("%s", err);
    if (n > 0)
        return;
    int fd =
        http_listen(cfg->listen, cfg->unix_socket_mode, cfg->unix_socket_group, err, sizeof(err));
    if (fd < 0)
        die("%s", err);
    srv->listen_fd[0] = fd;
    srv->nlisten = 1;
}

static void log_listening(struct daemon *d)
{
    struct server *srv = &d->srv;
    const struct h5cd_config *cfg = srv->cfg;
    char addr[128];
    http_describe_socket(srv->listen_fd[0], addr, sizeof(addr));
    log_info("msg=\"h5chunkd %s listening\" addr=%s cache_dir=%s cache_size=%llu sockets=%zu "
             "socket_activation=%s token=%s access_log=%s",
             PACKAGE_VERSION, addr, cfg->cache_dir, (unsigned long long)cfg->cache_size,
             srv->nlisten, srv->socket_activated ? "yes" : "no",
             srv->token != NULL ? cfg->token_scope : "none",
             cfg->access_log[0] != '\0' ? cfg->access_log : "off");
    for (size_t i = 1; i < srv->nlisten; i++) {
        http_describe_socket(srv->listen_fd[i], addr, sizeof(addr));
        log_info("msg=\"also listening\" addr=%s", addr);
    }
}

/* Everything that can fail because of the configuration, before detaching. */
static void prepare_start(struct daemon *d)
{
    struct server *srv = &d->srv;
    const struct h5cd_config *cfg = srv->cfg;
    char err[ERR_LINE];
    if (load_token(cfg, &d->gen->token, err, sizeof(err)) < 0)
        die("%s", err);
    srv->token = d->gen->token;
    if (accesslog_new(&srv->access_log) < 0)
        die("out of memory");
    if (accesslog_set_path(srv->access_log, cfg->access_log, err, sizeof(err)) < 0)
        die("%s", err);
    open_sockets(srv);
}

/*
 * A batch allocates a buffer per range and frees them all when it ends: a
 * warm 20-chunk batch, 10.8 MB.  With glibc's defaults such buffers are
 * mapped and unmapped, or trimmed from the heap's top, so the next batch
 * page-faults all of it in again; on this machine's VM that was 40 ms of
 * every other warm batch (perf: page faults under the copies out of the
 * block cache), against 2 ms when the memory is kept.  Freed memory is
 * therefore kept for reuse (up to MALLOC_TRIM_BYTES at a heap's top, in at
 * most MALLOC_ARENAS arenas): RSS stays near its peak instead of falling
 * back between bursts.  The MALLOC_*_ environment variables, when set,
 * still decide.
 */
static void keep_freed_memory(void)
{
    if (getenv("MALLOC_MMAP_THRESHOLD_") == NULL)
        mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_BYTES);
    if (getenv("MALLOC_TRIM_THRESHOLD_") == NULL)
        mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_BYTES);
}

int main(int argc, char **argv)
{
    /* One thread per connection would otherwise get up to 8 malloc arenas per core,
     * each keeping freed chunk buffers: a few arenas keep RSS close to live data. */
    mallopt(M_ARENA_MAX, MALLOC_ARENAS);
    keep_freed_memory();
    /* The cache, its indexes and the access log name other users' URLs: private. */
    umask(077);
    static struct daemon d; /* zeroed; lives as long as the process */
    int rc = parse_cli(argc, argv, &d.cli);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    char err[ERR_LINE];
    d.gen = calloc(1, sizeof(*d.gen));
    if (d.gen == NULL) {
        fprintf(stderr, "h5chunkd: out of memory\n");
        return 1;
    }
    struct h5cd_config *cfg = &d.gen->cfg;
    rc = reload_build(cfg, d.cli.config_path, d.cli.overrides, d.cli.noverrides, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "h5chunkd: %s\n", err);
        generation_free(d.gen);
        return 1;
    }
    if (d.cli.check_only) {
        printf("h5chunkd: configuration OK\n");
        generation_free(d.gen);
        return 0;
    }
    log_set_level((enum log_level)log_level_parse(cfg->log_level));
    const char *notify_socket = getenv("NOTIFY_SOCKET");
    d.notify = notify_socket != NULL && notify_socket[0] != '\0';

    struct server *srv = &d.srv;
    srv->cfg = cfg;
    srv->started = time(NULL);
    stats_init(&srv->stats);
    raise_fd_limit(cfg->max_connections);
    prepare_start(&d);
    if (!cfg->foreground && !d.notify && detach(err, sizeof(err)) < 0)
        die("%s", err);
    if (!cfg->foreground && d.notify)
        log_info("msg=\"NOTIFY_SOCKET is set: staying in the foreground for systemd\"");
    sigset_t signals = block_signals();
    d.gen->policy = urlpolicy_new(cfg);
    if (d.gen->policy == NULL)
        die("out of memory");
    srv->policy = d.gen->policy;
    d.policy = d.gen->policy;
    start_cache(srv);
    start_engine(srv);
    start_conntrack(srv);
    if (http_start(srv, err, sizeof(err)) < 0)
        die("%s", err);
    log_listening(&d);
    announce_ready();
    notify(&d, "READY=1");
    serve_until_signal(&d, &signals);
    notify(&d, "STOPPING=1");
    stop_all(&d);
    log_info("msg=\"stopped\"");
    return 0;
}
