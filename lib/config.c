/*
 * config.c - the option table, the value parsers, the INI loader and the
 * cross-option checks behind config.h.
 *
 * Every option is one row of `options[]`; defaults are text run through
 * the same setter as file and command-line values, so a bad default is
 * caught like any bad value.  Main thread only (start-up and SIGHUP): it
 * reads the environment and the password database.  It must never clamp
 * or guess: a value is either valid for its row or refused with a
 * one-line reason that names the option.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "errors.h"
#include "log.h"
#include "parents.h"
#include "urlpolicy.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.0.0"
#endif

#define STRING_MAX_BYTES   4096 /* a string option (a path, a user agent) */
#define VALUE_ECHO_BYTES   48   /* how much of a bad value an error message repeats */
#define PRINT_LINE_BYTES   160  /* a list longer than this prints one item per line */
#define LOAD_LINE_BYTES    198  /* the longest line inih (INI_MAX_LINE 200) reads whole */
#define HOSTNAME_MAX_BYTES 253

enum opt_type { OPT_BOOL, OPT_UINT, OPT_SIZE, OPT_STRING, OPT_LIST, OPT_LOGLEVEL, OPT_MODE };

/* Extra per-row checks beyond type and range. */
#define F_POW2     0x1   /* a size that must be a power of two */
#define F_NONEMPTY 0x2   /* a string that must not be empty */
#define F_ABSPATH  0x4   /* an absolute path: the daemon chdirs to / when it detaches */
#define F_LISTEN   0x8   /* HOST:PORT, [V6]:PORT or unix:/PATH */
#define F_DYNDEF   0x10  /* default computed at run time (def is NULL) */
#define F_RELOAD   0x20  /* SIGHUP applies a new value to the running daemon */
#define F_OPTPATH  0x40  /* empty, or an absolute path */
#define F_SCOPE    0x80  /* "admin" or "all" */
#define F_S3ADDR   0x100 /* "virtual" or "path" */

struct option {
    const char *name;
    enum opt_type type;
    size_t offset;
    uint64_t min, max;
    unsigned flags;
    const char *def;
    const char *help;
};

#define OFF(field) offsetof(struct h5cd_config, field)
#define K          H5CD_KIB
#define M          H5CD_MIB
#define G          H5CD_GIB

static const struct option options[] = {
    /* Network front end. */
    {"listen", OPT_STRING, OFF(listen), 0, 0, F_NONEMPTY | F_LISTEN, "127.0.0.1:7661",
     "address to listen on: HOST:PORT, [V6]:PORT or unix:/PATH"},
    {"allow_remote_clients", OPT_BOOL, OFF(allow_remote_clients), 0, 1, 0, "false",
     "permit a listen address that is not loopback"},
    {"server_names", OPT_LIST, OFF(server_names), 0, 0, F_RELOAD, "",
     "Host header names accepted besides the loopback names"},
    {"max_connections", OPT_UINT, OFF(max_connections), 1, 4096, 0, "1024",
     "concurrent client connections"},
    {"client_timeout_s", OPT_UINT, OFF(client_timeout_s), 1, 3600, 0, "60",
     "seconds an idle client connection is kept"},
    {"header_timeout_s", OPT_UINT, OFF(header_timeout_s), 1, 3600, 0, "10",
     "seconds a client has to send a request's headers, however slowly"},
    {"body_timeout_s", OPT_UINT, OFF(body_timeout_s), 1, 3600, 0, "60",
     "seconds a client has to send a request's body, however slowly"},
    {"memory_budget", OPT_SIZE, OFF(memory_budget), 16 * M, 1024 * G, F_RELOAD, "512M",
     "memory all requests together may hold (bodies, keys, batches, decoded chunks)"},
    {"max_request_body", OPT_SIZE, OFF(max_request_body), K, G, F_RELOAD, "16M",
     "largest accepted POST body"},
    {"unix_socket_mode", OPT_MODE, OFF(unix_socket_mode), 0, 0777, 0, "0660",
     "permissions of a unix:/PATH listen socket (octal)"},
    {"unix_socket_group", OPT_STRING, OFF(unix_socket_group), 0, 0, 0, "",
     "group given a unix:/PATH listen socket; empty keeps the daemon's"},

    /* Access control. */
    {"token_file", OPT_STRING, OFF(token_file), 0, 0, F_OPTPATH | F_RELOAD, "",
     "file holding the bearer token clients must send; empty: no token"},
    {"token_scope", OPT_STRING, OFF(token_scope), 0, 0, F_SCOPE | F_RELOAD, "admin",
     "endpoints that need the token: admin or all (all but /v1/health)"},

    /* Cache. */
    {"cache_dir", OPT_STRING, OFF(cache_dir), 0, 0, F_NONEMPTY | F_ABSPATH | F_DYNDEF, NULL,
     "cache directory (absolute path)"},
    {"cache_size", OPT_SIZE, OFF(cache_size), M, 1024 * 1024 * G, F_RELOAD, "10G",
     "cap on the bytes kept in the cache"},
    {"block_size", OPT_SIZE, OFF(block_size), H5CD_MIN_BLOCK_BYTES, H5CD_MAX_BLOCK_BYTES, F_POW2,
     "256K", "cache block size, a power of two"},
    {"cache_high_watermark", OPT_UINT, OFF(cache_high_watermark), 1, 100, 0, "95",
     "percent of cache_size at which eviction starts"},
    {"cache_low_watermark", OPT_UINT, OFF(cache_low_watermark), 1, 100, 0, "85",
     "percent of cache_size at which eviction stops"},
    {"revalidate_s", OPT_UINT, OFF(revalidate_s), 0, 86400, F_RELOAD, "60",
     "seconds a remote file's validator is trusted without asking again"},

    /* Coalescing. */
    {"coalesce_gap", OPT_SIZE, OFF(coalesce_gap), 0, H5CD_MAX_FETCH_BYTES, 0, "256K",
     "merge missing ranges separated by at most this many bytes"},
    {"coalesce_max", OPT_SIZE, OFF(coalesce_max), H5CD_MIN_BLOCK_BYTES, H5CD_MAX_FETCH_BYTES, 0,
     "8M", "largest single upstream request (a multiple of block_size)"},
    {"read_window", OPT_SIZE, OFF(read_window), 64 * K, 256 * M, F_RELOAD, "8M",
     "bytes one client request reads ahead"},

    /* HDF5 chunk service. */
    {"h5_prefix_bytes", OPT_SIZE, OFF(h5_prefix_bytes), 0, H5CD_MAX_FETCH_BYTES, 0, "4M",
     "bytes read from the start of a file when it is first opened and its host not yet measured"},
    {"h5_whole_file_rtts", OPT_UINT, OFF(h5_whole_file_rtts), 0, 100, F_RELOAD, "3",
     "fetch a file whole when first opened if it crosses the link in this many round trips; 0: "
     "never"},
    {"h5_whole_file_max", OPT_SIZE, OFF(h5_whole_file_max), 0, 64 * M, F_RELOAD, "32M",
     "never fetch a larger file whole when it is opened"},
    {"exact_ranges", OPT_BOOL, OFF(exact_ranges), 0, 1, 0, "true",
     "batches fetch the bytes they want (plus bridged gaps), not the whole blocks they touch"},
    {"max_keys", OPT_UINT, OFF(max_keys), 1, 1000000, F_RELOAD, "100000",
     "chunk keys in one batch request"},
    {"batch_inflight_bytes", OPT_SIZE, OFF(batch_inflight_bytes), M, 16 * G, F_RELOAD, "16M",
     "chunk bytes one batch request holds in memory"},
    {"max_slice_bytes", OPT_SIZE, OFF(max_slice_bytes), K, 16 * G, F_RELOAD, "256M",
     "decoded bytes one /v1/slice request may return (413 beyond)"},

    /* HDF5 worker processes. */
    {"workers", OPT_UINT, OFF(workers), 1, 64, 0, "2",
     "HDF5 worker processes (every libhdf5 call runs in one)"},
    {"worker_timeout_s", OPT_UINT, OFF(worker_timeout_s), 1, 3600, 0, "30",
     "a worker's own time for one operation before it is killed"},
    {"worker_memory", OPT_SIZE, OFF(worker_memory), 64 * M, 1024 * G, 0, "1G",
     "address space (RLIMIT_AS) of one worker"},
    {"max_decode_bytes", OPT_SIZE, OFF(max_decode_bytes), K, 16 * G, 0, "256M",
     "largest decoded chunk or slice (413 beyond, refused before allocation)"},
    {"worker_path", OPT_STRING, OFF(worker_path), 0, 0, F_OPTPATH, "",
     "the h5chunkd-worker program; empty: next to h5chunkd, then libexecdir"},

    /* Upstream fetch engine. */
    {"upstream_max_per_host", OPT_UINT, OFF(upstream_max_per_host), 1, 256, 0, "8",
     "concurrent upstream connections per host"},
    {"upstream_max_total", OPT_UINT, OFF(upstream_max_total), 1, 1024, 0, "64",
     "concurrent upstream connections overall"},
    {"upstream_connect_timeout_ms", OPT_UINT, OFF(upstream_connect_timeout_ms), 100, 300000, 0,
     "10000", "upstream connect timeout"},
    {"upstream_timeout_ms", OPT_UINT, OFF(upstream_timeout_ms), 100, 3600000, 0, "60000",
     "whole-transfer timeout of one upstream attempt"},
    {"upstream_retries", OPT_UINT, OFF(upstream_retries), 0, 20, 0, "4",
     "upstream attempts after the first"},
    {"upstream_retry_base_ms", OPT_UINT, OFF(upstream_retry_base_ms), 1, 60000, 0, "200",
     "first retry backoff; doubles with jitter"},
    {"upstream_retry_budget_ms", OPT_UINT, OFF(upstream_retry_budget_ms), 0, 3600000, 0, "30000",
     "stop retrying after this much time"},
    {"allow_private_upstreams", OPT_BOOL, OFF(allow_private_upstreams), 0, 1, F_RELOAD, "false",
     "permit upstreams on loopback, private and link-local addresses"},
    {"allow_upstream_networks", OPT_LIST, OFF(allow_upstream_networks), 0, 0, F_RELOAD, "",
     "address blocks (CIDR) permitted as upstreams even if private, e.g. 10.1.0.0/16"},
    {"max_redirects", OPT_UINT, OFF(max_redirects), 0, H5CD_MAX_REDIRECTS, 0, "5",
     "redirect hops followed for one upstream request; each is checked by the policy"},
    {"allow_prefixes", OPT_LIST, OFF(allow_prefixes), 0, 0, F_RELOAD, "",
     "if set, a URL must start with one of these prefixes"},
    {"deny_prefixes", OPT_LIST, OFF(deny_prefixes), 0, 0, F_RELOAD, "",
     "a URL starting with one of these prefixes is refused"},
    {"strip_query_params", OPT_LIST, OFF(strip_query_params), 0, 0, F_RELOAD,
     "X-Amz-Algorithm,X-Amz-Credential,X-Amz-Date,X-Amz-Expires,X-Amz-SignedHeaders,"
     "X-Amz-Signature,X-Amz-Security-Token,Signature,Expires,Key-Pair-Id,Policy",
     "query parameters left out of a URL's cache identity"},
    {"user_agent", OPT_STRING, OFF(user_agent), 0, 0, F_NONEMPTY, "h5chunkd/" PACKAGE_VERSION,
     "User-Agent sent upstream"},

    /* Site caches (parents). */
    {"parents", OPT_LIST, OFF(parents), 0, 0, 0, "",
     "site caches (made by h5chunkd-site-cache) asked before the origin: URL[, URL...]"},
    {"parent_slice", OPT_SIZE, OFF(parent_slice), H5CD_MIN_BLOCK_BYTES, H5CD_MAX_FETCH_BYTES,
     F_POW2, "1M", "slice size of the site caches (their --slice); at least block_size"},
    {"parent_retry_ms", OPT_UINT, OFF(parent_retry_ms), 100, 3600000, 0, "10000",
     "wait before a failed site cache gets a trial request; doubles while trials fail"},
    {"parent_retry_max_ms", OPT_UINT, OFF(parent_retry_max_ms), 100, 86400000, 0, "300000",
     "longest wait before a failed site cache gets a trial request"},
    {"parent_connect_timeout_ms", OPT_UINT, OFF(parent_connect_timeout_ms), 100, 300000, 0, "2000",
     "connect timeout towards a site cache (then the next one, or the origin)"},
    {"parent_timeout_ms", OPT_UINT, OFF(parent_timeout_ms), 100, 3600000, 0, "15000",
     "whole-transfer timeout of one request to a site cache (at most one slice)"},

    /* Names (s3://, dandi://), redirects resolved once, upstream credentials. */
    {"s3_endpoint", OPT_STRING, OFF(s3_endpoint), 0, 0, F_RELOAD, "",
     "where s3:// URLs go: empty for AWS, else http(s)://HOST[:PORT]"},
    {"s3_region", OPT_STRING, OFF(s3_region), 0, 0, F_NONEMPTY | F_RELOAD, "us-east-1",
     "AWS region of s3:// buckets"},
    {"s3_addressing", OPT_STRING, OFF(s3_addressing), 0, 0, F_S3ADDR | F_RELOAD, "virtual",
     "s3:// URLs as BUCKET.endpoint/KEY (virtual) or endpoint/BUCKET/KEY (path)"},
    {"dandi_api", OPT_STRING, OFF(dandi_api), 0, 0, F_NONEMPTY | F_RELOAD,
     "https://api.dandiarchive.org/api", "API base of the DANDI instance named DANDI"},
    {"dandi_instances", OPT_LIST, OFF(dandi_instances), 0, 0, F_RELOAD, "",
     "more DANDI instances for dandi:// URLs, as NAME=API_BASE"},
    {"resolve_ttl_s", OPT_UINT, OFF(resolve_ttl_s), 1, 86400, F_RELOAD, "600",
     "seconds a resolved redirect or DANDI lookup is remembered (less if a signature expires)"},
    {"access_ttl_s", OPT_UINT, OFF(access_ttl_s), 1, 86400, F_RELOAD, "600",
     "seconds a URL or token seen accepted upstream is trusted (less if it expires sooner)"},
    {"credentials_file", OPT_STRING, OFF(credentials_file), 0, 0, F_OPTPATH | F_RELOAD, "",
     "private file of headers to send upstream per URL prefix or host; empty: none"},

    /* Process. */
    {"foreground", OPT_BOOL, OFF(foreground), 0, 1, 0, "false", "do not detach"},
    {"log_level", OPT_LOGLEVEL, OFF(log_level), 0, 0, F_RELOAD, "info",
     "error, warn, info or debug"},
    {"access_log", OPT_STRING, OFF(access_log), 0, 0, F_OPTPATH | F_RELOAD, "",
     "file that gets one line per finished request; empty: off"},
};

#undef K
#undef M
#undef G

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

static void *field(struct h5cd_config *cfg, const struct option *o)
{
    return (char *)cfg + o->offset;
}

static const void *cfield(const struct h5cd_config *cfg, const struct option *o)
{
    return (const char *)cfg + o->offset;
}

static const struct option *find_option(const char *name)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strcmp(options[i].name, name) == 0)
            return &options[i];
    return NULL;
}

/* A bad value is repeated in the message, but only printable and bounded,
 * so a hostile file cannot inject lines into the log. */
static const char *echo(const char *value, char *buf, size_t cap)
{
    size_t n = 0;
    for (; value[n] != '\0' && n < VALUE_ECHO_BYTES && n + 4 < cap; n++) {
        unsigned char c = (unsigned char)value[n];
        buf[n] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (value[n] != '\0' && n + 4 <= cap) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

static bool has_control(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            return true;
    return false;
}

/* ---- value parsers ---- */

static int parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* Decimal digits only: strtoull alone would take a sign, spaces or hex. */
static int parse_decimal(const char *text, const char **end, uint64_t *out)
{
    if (*text < '0' || *text > '9')
        return -1;
    errno = 0;
    char *stop = NULL;
    unsigned long long v = strtoull(text, &stop, 10);
    if (errno != 0 || stop == text)
        return -1;
    *out = v;
    *end = stop;
    return 0;
}

int config_parse_size(const char *text, uint64_t *out)
{
    static const char suffixes[] = "KMGTPE";
    if (text == NULL || out == NULL)
        return -1;
    const char *p = NULL;
    uint64_t v = 0;
    if (parse_decimal(text, &p, &v) < 0)
        return -1;
    unsigned shift = 0;
    if (*p != '\0' && *p != 'b' && *p != 'B') {
        const char *s = strchr(suffixes, *p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
        if (s == NULL || *s == '\0')
            return -1;
        shift = 10 * (unsigned)(s - suffixes + 1);
        p++;
        if (*p == 'i' || *p == 'I') {
            p++;
            if (*p != 'b' && *p != 'B')
                return -1;
        }
    }
    if (*p == 'b' || *p == 'B')
        p++;
    if (*p != '\0')
        return -1;
    if (shift > 0 && v > (UINT64_MAX >> shift))
        return -1;
    *out = v << shift;
    return 0;
}

/* Sizes print with the largest suffix that divides them exactly, so that
 * config_print output reads like the config file and parses back. */
static const char *format_size(uint64_t v, char *buf, size_t cap)
{
    static const char suffixes[] = "KMGTPE";
    int unit = -1;
    while (v != 0 && unit < 5 && (v & 1023) == 0) {
        v >>= 10;
        unit++;
    }
    int n = unit < 0 ? snprintf(buf, cap, "%" PRIu64, v)
                     : snprintf(buf, cap, "%" PRIu64 "%c", v, suffixes[unit]);
    if (n < 0 || (size_t)n >= cap)
        buf[0] = '\0';
    return buf;
}

static bool is_hostname(const char *s, size_t len)
{
    if (len == 0 || len > HOSTNAME_MAX_BYTES)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.'))
            return false;
    }
    return true;
}

static int parse_port(const char *s)
{
    if (*s == '\0' || strlen(s) > 5)
        return -1;
    unsigned v = 0;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (unsigned)(*s - '0');
    }
    return v > 65535 ? -1 : (int)v;
}

/* Parses a listen address; *loopback tells whether only this machine can
 * reach it.  Port 0 asks the kernel for any free port (tests use it). */
static int parse_listen(const char *text, bool *loopback, char *err, size_t errlen)
{
    static const char *const form = "expected HOST:PORT, [IPV6]:PORT or unix:/PATH";
    char host[HOSTNAME_MAX_BYTES + 1];
    const char *port;
    unsigned char addr[sizeof(struct in6_addr)];

    if (strncmp(text, "unix:", 5) == 0) {
        const char *path = text + 5;
        if (path[0] != '/' || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return h5cd_errf(err, errlen,
                             "listen: a unix socket needs an absolute path shorter "
                             "than %zu bytes",
                             sizeof(((struct sockaddr_un *)0)->sun_path));
        *loopback = true;
        return 0;
    }
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        size_t len = close == NULL ? 0 : (size_t)(close - text - 1);
        if (close == NULL || close[1] != ':' || len == 0 || len >= sizeof(host))
            return h5cd_errf(err, errlen, "listen: %s", form);
        memcpy(host, text + 1, len);
        host[len] = '\0';
        if (inet_pton(AF_INET6, host, addr) != 1)
            return h5cd_errf(err, errlen, "listen: '%s' is not an IPv6 address", host);
        *loopback = IN6_IS_ADDR_LOOPBACK((struct in6_addr *)addr);
        port = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL || colon == text)
            return h5cd_errf(err, errlen, "listen: %s", form);
        size_t len = (size_t)(colon - text);
        if (memchr(text, ':', len) != NULL)
            return h5cd_errf(err, errlen, "listen: an IPv6 address needs brackets: [ADDR]:PORT");
        if (!is_hostname(text, len))
            return h5cd_errf(err, errlen, "listen: bad host name");
        port = colon + 1;
        memcpy(host, text, len);
        host[len] = '\0';
        if (inet_pton(AF_INET, host, addr) == 1)
            *loopback = addr[0] == 127;
        else
            *loopback = strcasecmp(host, "localhost") == 0;
    }
    if (parse_port(port) < 0)
        return h5cd_errf(err, errlen, "listen: port must be a number from 0 to 65535");
    return 0;
}

/* ---- lists ---- */

static void strlist_clear(struct strlist *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static bool is_sep(char c)
{
    return c == ',' || c == ' ' || c == '\t';
}

/* Appends the items of text to l (all or nothing). */
static int strlist_append(struct strlist *l, const char *name, const char *text, char *err,
                          size_t errlen)
{
    size_t add = 0;
    for (const char *p = text; *p != '\0';) {
        while (is_sep(*p))
            p++;
        if (*p == '\0')
            break;
        size_t len = 0;
        while (p[len] != '\0' && !is_sep(p[len]))
            len++;
        if (len > H5CD_MAX_URL_BYTES)
            return h5cd_errf(err, errlen, "%s: an item is longer than %d bytes", name,
                             H5CD_MAX_URL_BYTES);
        /* On a continuation line it would read back as a comment (config_print). */
        if (*p == '#' || *p == ';')
            return h5cd_errf(err, errlen, "%s: an item may not start with '%c'", name, *p);
        add++;
        p += len;
    }
    if (add == 0)
        return 0;
    if (l->count + add > H5CD_MAX_LIST_ITEMS)
        return h5cd_errf(err, errlen, "%s: at most %d items", name, H5CD_MAX_LIST_ITEMS);

    char **items = realloc(l->items, (l->count + add) * sizeof(*items));
    if (items == NULL)
        return h5cd_errf(err, errlen, "%s: out of memory", name);
    l->items = items;
    size_t n = l->count;
    for (const char *p = text; *p != '\0';) {
        while (is_sep(*p))
            p++;
        if (*p == '\0')
            break;
        size_t len = 0;
        while (p[len] != '\0' && !is_sep(p[len]))
            len++;
        items[n] = strndup(p, len);
        if (items[n] == NULL)
            goto fail;
        n++;
        p += len;
    }
    l->count = n;
    return 0;
fail:
    while (n > l->count)
        free(items[--n]);
    return h5cd_errf(err, errlen, "%s: out of memory", name);
}

/* ---- setters ---- */

static int set_range_error(const struct option *o, const char *value, char *err, size_t errlen)
{
    char v[VALUE_ECHO_BYTES + 4], lo[32], hi[32];
    echo(value, v, sizeof(v));
    if (o->type == OPT_SIZE)
        return h5cd_errf(err, errlen, "%s: '%s' is out of range (%s..%s)", o->name, v,
                         format_size(o->min, lo, sizeof(lo)), format_size(o->max, hi, sizeof(hi)));
    return h5cd_errf(err, errlen, "%s: '%s' is out of range (%" PRIu64 "..%" PRIu64 ")", o->name, v,
                     o->min, o->max);
}

static int set_number(struct h5cd_config *cfg, const struct option *o, const char *value, char *err,
                      size_t errlen)
{
    char v[VALUE_ECHO_BYTES + 4];
    uint64_t n = 0;
    if (o->type == OPT_SIZE) {
        if (config_parse_size(value, &n) < 0)
            return h5cd_errf(err, errlen,
                             "%s: '%s' is not a size (a whole number with an optional K, M, G, T "
                             "or P suffix)",
                             o->name, echo(value, v, sizeof(v)));
    } else {
        const char *end = NULL;
        if (parse_decimal(value, &end, &n) < 0 || *end != '\0')
            return h5cd_errf(err, errlen, "%s: '%s' is not a whole decimal number", o->name,
                             echo(value, v, sizeof(v)));
    }
    if (n < o->min || n > o->max)
        return set_range_error(o, value, err, errlen);
    if ((o->flags & F_POW2) && (n & (n - 1)) != 0)
        return h5cd_errf(err, errlen, "%s: '%s' is not a power of two", o->name,
                         echo(value, v, sizeof(v)));
    if (o->type == OPT_SIZE)
        *(uint64_t *)field(cfg, o) = n;
    else
        *(unsigned *)field(cfg, o) = (unsigned)n;
    return 0;
}

/* An octal file mode: digits 0-7 only, a leading 0 optional ("0660", "660"). */
static int set_mode(struct h5cd_config *cfg, const struct option *o, const char *value, char *err,
                    size_t errlen)
{
    char v[VALUE_ECHO_BYTES + 4];
    uint64_t n = 0;
    size_t i = 0;
    for (; value[i] >= '0' && value[i] <= '7' && i < 8; i++)
        n = n * 8 + (uint64_t)(value[i] - '0');
    if (i == 0 || value[i] != '\0')
        return h5cd_errf(err, errlen, "%s: '%s' is not an octal mode (e.g. 0660)", o->name,
                         echo(value, v, sizeof(v)));
    if (n < o->min || n > o->max)
        return h5cd_errf(err, errlen, "%s: '%s' is out of range (0..0777)", o->name,
                         echo(value, v, sizeof(v)));
    *(unsigned *)field(cfg, o) = (unsigned)n;
    return 0;
}

static int set_string(struct h5cd_config *cfg, const struct option *o, const char *value, char *err,
                      size_t errlen)
{
    char v[VALUE_ECHO_BYTES + 4];
    if (strlen(value) > STRING_MAX_BYTES)
        return h5cd_errf(err, errlen, "%s: longer than %d bytes", o->name, STRING_MAX_BYTES);
    if (has_control(value))
        return h5cd_errf(err, errlen, "%s: control characters are not allowed", o->name);
    if ((o->flags & F_NONEMPTY) && value[0] == '\0')
        return h5cd_errf(err, errlen, "%s: must not be empty", o->name);
    if ((o->flags & F_ABSPATH) && value[0] != '/')
        return h5cd_errf(err, errlen, "%s: '%s' is not an absolute path", o->name,
                         echo(value, v, sizeof(v)));
    if ((o->flags & F_OPTPATH) && value[0] != '\0' && value[0] != '/')
        return h5cd_errf(err, errlen, "%s: '%s' is not an absolute path (or empty)", o->name,
                         echo(value, v, sizeof(v)));
    if ((o->flags & F_SCOPE) && strcmp(value, "admin") != 0 && strcmp(value, "all") != 0)
        return h5cd_errf(err, errlen, "%s: '%s' is not one of admin, all", o->name,
                         echo(value, v, sizeof(v)));
    if ((o->flags & F_S3ADDR) && strcmp(value, "virtual") != 0 && strcmp(value, "path") != 0)
        return h5cd_errf(err, errlen, "%s: '%s' is not one of virtual, path", o->name,
                         echo(value, v, sizeof(v)));
    bool loopback;
    if ((o->flags & F_LISTEN) && parse_listen(value, &loopback, err, errlen) < 0)
        return -1;
    if (o->type == OPT_LOGLEVEL && log_level_parse(value) < 0)
        return h5cd_errf(err, errlen, "%s: '%s' is not one of error, warn, info, debug", o->name,
                         echo(value, v, sizeof(v)));
    char *copy = strdup(value);
    if (copy == NULL)
        return h5cd_errf(err, errlen, "%s: out of memory", o->name);
    char **slot = field(cfg, o);
    free(*slot);
    *slot = copy;
    return 0;
}

static int set_list(struct h5cd_config *cfg, const struct option *o, const char *value, bool append,
                    char *err, size_t errlen)
{
    for (const char *p = value; *p != '\0'; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || (unsigned char)*p == 0x7f)
            return h5cd_errf(err, errlen, "%s: control characters are not allowed", o->name);
    struct strlist *slot = field(cfg, o);
    if (append)
        return strlist_append(slot, o->name, value, err, errlen);
    struct strlist fresh = {NULL, 0};
    if (strlist_append(&fresh, o->name, value, err, errlen) < 0)
        return -1;
    strlist_clear(slot);
    *slot = fresh;
    return 0;
}

static int set_option(struct h5cd_config *cfg, const struct option *o, const char *value,
                      bool append, char *err, size_t errlen)
{
    char v[VALUE_ECHO_BYTES + 4];
    switch (o->type) {
    case OPT_BOOL:
        if (parse_bool(value, field(cfg, o)) < 0)
            return h5cd_errf(err, errlen,
                             "%s: '%s' is not a boolean (true/false, yes/no, on/off, 1/0)", o->name,
                             echo(value, v, sizeof(v)));
        return 0;
    case OPT_UINT:
    case OPT_SIZE:
        return set_number(cfg, o, value, err, errlen);
    case OPT_MODE:
        return set_mode(cfg, o, value, err, errlen);
    case OPT_STRING:
    case OPT_LOGLEVEL:
        return set_string(cfg, o, value, err, errlen);
    case OPT_LIST:
        return set_list(cfg, o, value, append, err, errlen);
    }
    return h5cd_errf(err, errlen, "%s: bad option type", o->name);
}

int config_set(struct h5cd_config *cfg, const char *key, const char *value, char *err,
               size_t errlen)
{
    char k[VALUE_ECHO_BYTES + 4];
    if (cfg == NULL || key == NULL)
        return h5cd_errf(err, errlen, "no option name");
    const struct option *o = find_option(key);
    if (o == NULL)
        return h5cd_errf(err, errlen, "unknown option '%s'", echo(key, k, sizeof(k)));
    if (value == NULL)
        return h5cd_errf(err, errlen, "%s: a value is required", o->name);
    return set_option(cfg, o, value, false, err, errlen);
}

/* ---- defaults ---- */

/* $XDG_CACHE_HOME/h5chunkd, else $HOME/.cache/h5chunkd, else the password
 * database's home; relative values are ignored as the XDG spec says. */
static int default_cache_dir(char *buf, size_t cap)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    struct passwd pw, *found = NULL;
    char pwbuf[4096];
    int n;

    if (xdg != NULL && xdg[0] == '/') {
        n = snprintf(buf, cap, "%s/h5chunkd", xdg);
    } else {
        if (home == NULL || home[0] != '/') {
            if (getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &found) != 0 || found == NULL ||
                found->pw_dir == NULL || found->pw_dir[0] != '/')
                return -ENOENT;
            home = found->pw_dir;
        }
        n = snprintf(buf, cap, "%s/.cache/h5chunkd", home);
    }
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    return 0;
}

int config_init(struct h5cd_config *cfg)
{
    char err[H5CD_MAX_ERROR_MESSAGE];
    char dir[STRING_MAX_BYTES + 1];
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NOPTIONS; i++) {
        const struct option *o = &options[i];
        const char *def = o->def;
        if (o->flags & F_DYNDEF) {
            if (default_cache_dir(dir, sizeof(dir)) < 0)
                goto fail_inval;
            def = dir;
        }
        if (set_option(cfg, o, def, false, err, sizeof(err)) < 0) {
            if (strstr(err, "out of memory") != NULL)
                goto fail_nomem;
            goto fail_inval;
        }
    }
    return 0;
fail_nomem:
    config_free(cfg);
    return -ENOMEM;
fail_inval:
    /* Only a home directory that is unknown or unusable gets here. */
    config_free(cfg);
    return -EINVAL;
}

void config_free(struct h5cd_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < NOPTIONS; i++) {
        const struct option *o = &options[i];
        if (o->type == OPT_STRING || o->type == OPT_LOGLEVEL) {
            char **slot = field(cfg, o);
            free(*slot);
            *slot = NULL;
        } else if (o->type == OPT_LIST) {
            strlist_clear(field(cfg, o));
        }
    }
}

/* ---- INI file ---- */

/*
 * inih reads lines through our reader so that we know the line number of
 * each handler call, can refuse over-long lines (inih would silently split
 * them) and can stop at the first bad line.  Section headers and syntax
 * are checked here too, so that nothing after a bad line is applied.
 */
struct load_ctx {
    struct h5cd_config *cfg;
    FILE *fp;
    int lineno;
    int max_line;
    bool indented;  /* the current line is a continuation candidate */
    bool have_prev; /* inih has a previous name for continuation lines */
    int err_line;   /* first bad line found by us; 0 if none */
    int read_errno; /* why fgets failed, if it did */
    char reason[H5CD_MAX_ERROR_MESSAGE];
};

static void load_error(struct load_ctx *ctx, const char *reason)
{
    if (ctx->err_line != 0)
        return;
    ctx->err_line = ctx->lineno;
    int n = snprintf(ctx->reason, sizeof(ctx->reason), "%s", reason);
    (void)n; /* reasons are shorter than the buffer; a longer one is cut */
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static bool section_allowed(const char *name, size_t len)
{
    return len == 8 && strncasecmp(name, "h5chunkd", 8) == 0;
}

/* Mirrors what inih will make of the line, to catch bad ones early. */
static void classify_line(struct load_ctx *ctx, const char *line)
{
    if (ctx->lineno == 1 && strncmp(line, "\xEF\xBB\xBF", 3) == 0)
        line += 3;
    const char *p = line;
    while (is_space(*p))
        p++;
    ctx->indented = false;
    if (*p == '\0' || *p == ';' || *p == '#')
        return;
    if (p > line && ctx->have_prev) {
        ctx->indented = true;
        return;
    }
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (close == NULL) {
            load_error(ctx, "unterminated section header");
        } else if (!section_allowed(p + 1, (size_t)(close - p - 1))) {
            char msg[H5CD_MAX_ERROR_MESSAGE], v[VALUE_ECHO_BYTES + 4];
            char name[VALUE_ECHO_BYTES + 1];
            size_t len = (size_t)(close - p - 1);
            if (len > VALUE_ECHO_BYTES)
                len = VALUE_ECHO_BYTES;
            memcpy(name, p + 1, len);
            name[len] = '\0';
            int n = snprintf(msg, sizeof(msg), "unknown section [%s] (only [h5chunkd])",
                             echo(name, v, sizeof(v)));
            (void)n;
            load_error(ctx, msg);
        }
        ctx->have_prev = false;
        return;
    }
    if (strpbrk(p, "=:") == NULL)
        load_error(ctx, "expected 'name = value'");
}

static char *load_reader(char *str, int num, void *stream)
{
    struct load_ctx *ctx = stream;
    if (ctx->err_line != 0)
        return NULL; /* stop at the first bad line */
    if (fgets(str, num, ctx->fp) == NULL) {
        if (ferror(ctx->fp))
            ctx->read_errno = errno != 0 ? errno : EIO;
        return NULL;
    }
    ctx->lineno++;
    size_t len = strlen(str);
    if (len > 0 && str[len - 1] != '\n') {
        int c = getc(ctx->fp);
        if (c != EOF) {
            ungetc(c, ctx->fp);
            char msg[64];
            int n = snprintf(msg, sizeof(msg), "line longer than %d bytes", num - 2);
            (void)n;
            load_error(ctx, msg);
            return NULL;
        }
    }
    classify_line(ctx, str);
    if (ctx->err_line != 0)
        return NULL;
    return str;
}

static int load_handler(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *ctx = user;
    char err[H5CD_MAX_ERROR_MESSAGE], k[VALUE_ECHO_BYTES + 4];
    if (ctx->err_line != 0)
        return 0;
    if (section[0] != '\0' && !section_allowed(section, strlen(section))) {
        load_error(ctx, "options must be at the top or in the [h5chunkd] section");
        return 0;
    }
    bool continuation = ctx->indented;
    ctx->have_prev = true;
    const struct option *o = find_option(name);
    if (o == NULL) {
        int n = snprintf(err, sizeof(err), "unknown option '%s'", echo(name, k, sizeof(k)));
        (void)n;
        load_error(ctx, err);
        return 0;
    }
    if (continuation && o->type != OPT_LIST) {
        int n =
            snprintf(err, sizeof(err), "%s: only list options continue on indented lines", o->name);
        (void)n;
        load_error(ctx, err);
        return 0;
    }
    if (set_option(ctx->cfg, o, value, continuation, err, sizeof(err)) < 0) {
        load_error(ctx, err);
        return 0;
    }
    return 1;
}

int config_load_file(struct h5cd_config *cfg, const char *path, char *err, size_t errlen)
{
    struct load_ctx ctx = {.cfg = cfg};
    ctx.fp = fopen(path, "re");
    if (ctx.fp == NULL)
        return h5cd_errf(err, errlen, "%s: %s", path, strerror(errno));
    int rc = ini_parse_stream(load_reader, &ctx, load_handler, &ctx);
    fclose(ctx.fp);
    if (rc == -2)
        return h5cd_errf(err, errlen, "%s: out of memory", path);
    if (rc < 0)
        return h5cd_errf(err, errlen, "%s: cannot parse", path);
    if (rc > 0 && (ctx.err_line == 0 || rc < ctx.err_line))
        return h5cd_errf(err, errlen, "%s:%d: expected 'name = value'", path, rc);
    if (ctx.err_line != 0)
        return h5cd_errf(err, errlen, "%s:%d: %s", path, ctx.err_line, ctx.reason);
    if (ctx.read_errno != 0)
        return h5cd_errf(err, errlen, "%s: %s", path, strerror(ctx.read_errno));
    return 0;
}

/* ---- checks and printing ---- */

static int validate_parents(const struct h5cd_config *cfg, char *err, size_t errlen)
{
    char a[32], b[32], why[H5CD_MAX_ERROR_MESSAGE];
    if (cfg->parents.count > PARENTS_MAX)
        return h5cd_errf(err, errlen, "parents: at most %d site caches", PARENTS_MAX);
    for (size_t i = 0; i < cfg->parents.count; i++)
        if (parents_check_url(cfg->parents.items[i], why, sizeof(why)) < 0)
            return h5cd_errf(err, errlen, "parents: %s", why);
    if (cfg->parent_slice < cfg->block_size)
        return h5cd_errf(err, errlen, "parent_slice (%s) must be at least block_size (%s)",
                         format_size(cfg->parent_slice, a, sizeof(a)),
                         format_size(cfg->block_size, b, sizeof(b)));
    if (cfg->parent_retry_max_ms < cfg->parent_retry_ms)
        return h5cd_errf(err, errlen,
                         "parent_retry_max_ms (%u) must be at least parent_retry_ms (%u)",
                         cfg->parent_retry_max_ms, cfg->parent_retry_ms);
    return 0;
}

int config_validate(const struct h5cd_config *cfg, char *err, size_t errlen)
{
    char a[32], b[32];
    if (cfg->cache_low_watermark > cfg->cache_high_watermark)
        return h5cd_errf(err, errlen,
                         "cache_low_watermark (%u) must not exceed cache_high_watermark (%u)",
                         cfg->cache_low_watermark, cfg->cache_high_watermark);
    if (cfg->coalesce_max < cfg->block_size || cfg->coalesce_max % cfg->block_size != 0)
        return h5cd_errf(err, errlen, "coalesce_max (%s) must be a multiple of block_size (%s)",
                         format_size(cfg->coalesce_max, a, sizeof(a)),
                         format_size(cfg->block_size, b, sizeof(b)));
    if (cfg->read_window < cfg->block_size)
        return h5cd_errf(err, errlen, "read_window (%s) must be at least block_size (%s)",
                         format_size(cfg->read_window, a, sizeof(a)),
                         format_size(cfg->block_size, b, sizeof(b)));
    if (cfg->memory_budget < cfg->max_slice_bytes || cfg->memory_budget < cfg->batch_inflight_bytes)
        return h5cd_errf(err, errlen,
                         "memory_budget (%s) must be at least max_slice_bytes and "
                         "batch_inflight_bytes (%s)",
                         format_size(cfg->memory_budget, a, sizeof(a)),
                         format_size(cfg->max_slice_bytes > cfg->batch_inflight_bytes
                                         ? cfg->max_slice_bytes
                                         : cfg->batch_inflight_bytes,
                                     b, sizeof(b)));
    if (cfg->upstream_max_per_host > cfg->upstream_max_total)
        return h5cd_errf(err, errlen,
                         "upstream_max_per_host (%u) must not exceed upstream_max_total (%u)",
                         cfg->upstream_max_per_host, cfg->upstream_max_total);
    for (size_t i = 0; i < cfg->allow_upstream_networks.count; i++) {
        struct urlpolicy_network net;
        const char *item = cfg->allow_upstream_networks.items[i];
        if (urlpolicy_parse_network(item, &net) < 0)
            return h5cd_errf(err, errlen,
                             "allow_upstream_networks: '%s' is not an address block such as "
                             "10.1.0.0/16 or fd00::/8",
                             item);
    }
    if (validate_parents(cfg, err, errlen) < 0)
        return -1;
    if (cfg->listen == NULL)
        return h5cd_errf(err, errlen, "listen: not set");
    bool loopback = false;
    if (parse_listen(cfg->listen, &loopback, err, errlen) < 0)
        return -1;
    if (!loopback && !cfg->allow_remote_clients)
        return h5cd_errf(err, errlen,
                         "listen: %s is not a loopback address; set allow_remote_clients = true "
                         "to accept clients from other machines",
                         cfg->listen);
    return 0;
}

/* " = ", or "=" where the spaces would make "name = value" longer than a line
 * the loader reads (a value read from "name=value" may fill that line). */
static const char *assignment(const struct option *o, const char *value)
{
    return strlen(o->name) + 3 + strlen(value) <= LOAD_LINE_BYTES ? " = " : "=";
}

/* An item on a continuation line: indented by four spaces, or by one where four
 * would not fit (an item read from " item" may fill the loader's line). */
static void print_continuation(const char *item, FILE *fp)
{
    fprintf(fp, "\n%s%s", strlen(item) + 4 <= LOAD_LINE_BYTES ? "    " : " ", item);
}

static void print_list(const struct option *o, const struct strlist *l, FILE *fp)
{
    size_t total = 0;
    for (size_t i = 0; i < l->count; i++)
        total += strlen(l->items[i]) + 1;
    /* A first item too long for the name's line goes on a continuation line
     * ("name =" adds nothing to a list). */
    if (l->count == 0 || strlen(o->name) + 1 + strlen(l->items[0]) > LOAD_LINE_BYTES) {
        fprintf(fp, "%s =", o->name);
        for (size_t i = 0; i < l->count; i++)
            print_continuation(l->items[i], fp);
        fputc('\n', fp);
        return;
    }
    /* inih reads short lines only; long lists continue on indented lines. */
    bool split = total > PRINT_LINE_BYTES;
    fprintf(fp, "%s%s%s", o->name, assignment(o, l->items[0]), l->items[0]);
    for (size_t i = 1; i < l->count; i++) {
        if (split)
            print_continuation(l->items[i], fp);
        else
            fprintf(fp, ",%s", l->items[i]);
    }
    fputc('\n', fp);
}

void config_print(const struct h5cd_config *cfg, FILE *fp)
{
    char buf[32];
    fprintf(fp, "# h5chunkd configuration\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        const struct option *o = &options[i];
        const void *p = cfield(cfg, o);
        fprintf(fp, "\n# %s\n", o->help);
        switch (o->type) {
        case OPT_BOOL:
            fprintf(fp, "%s = %s\n", o->name, *(const bool *)p ? "true" : "false");
            break;
        case OPT_UINT:
            fprintf(fp, "%s = %u\n", o->name, *(const unsigned *)p);
            break;
        case OPT_MODE:
            fprintf(fp, "%s = %04o\n", o->name, *(const unsigned *)p);
            break;
        case OPT_SIZE:
            fprintf(fp, "%s = %s\n", o->name, format_size(*(const uint64_t *)p, buf, sizeof(buf)));
            break;
        case OPT_STRING:
        case OPT_LOGLEVEL: {
            const char *s = *(char *const *)p;
            if (s == NULL || s[0] == '\0')
                fprintf(fp, "%s =\n", o->name); /* no trailing blank to copy into a file */
            else
                fprintf(fp, "%s%s%s\n", o->name, assignment(o, s), s);
            break;
        }
        case OPT_LIST:
            print_list(o, p, fp);
            break;
        }
    }
}

/* ---- comparing and copying (SIGHUP) ---- */

static bool strlist_equal(const struct strlist *a, const struct strlist *b)
{
    if (a->count != b->count)
        return false;
    for (size_t i = 0; i < a->count; i++)
        if (strcmp(a->items[i], b->items[i]) != 0)
            return false;
    return true;
}

static bool option_equal(const struct h5cd_config *a, const struct h5cd_config *b,
                         const struct option *o)
{
    const void *pa = cfield(a, o), *pb = cfield(b, o);
    switch (o->type) {
    case OPT_BOOL:
        return *(const bool *)pa == *(const bool *)pb;
    case OPT_UINT:
    case OPT_MODE:
        return *(const unsigned *)pa == *(const unsigned *)pb;
    case OPT_SIZE:
        return *(const uint64_t *)pa == *(const uint64_t *)pb;
    case OPT_STRING:
    case OPT_LOGLEVEL: {
        const char *sa = *(char *const *)pa, *sb = *(char *const *)pb;
        return strcmp(sa != NULL ? sa : "", sb != NULL ? sb : "") == 0;
    }
    case OPT_LIST:
        return strlist_equal(pa, pb);
    }
    return false;
}

size_t config_diff(const struct h5cd_config *a, const struct h5cd_config *b, config_diff_fn fn,
                   void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (option_equal(a, b, &options[i]))
            continue;
        n++;
        if (fn != NULL)
            fn(options[i].name, (options[i].flags & F_RELOAD) != 0, arg);
    }
    return n;
}

static int strlist_copy(struct strlist *dst, const struct strlist *src)
{
    struct strlist fresh = {NULL, 0};
    if (src->count > 0) {
        fresh.items = calloc(src->count, sizeof(*fresh.items));
        if (fresh.items == NULL)
            return -ENOMEM;
        for (; fresh.count < src->count; fresh.count++) {
            fresh.items[fresh.count] = strdup(src->items[fresh.count]);
            if (fresh.items[fresh.count] == NULL) {
                strlist_clear(&fresh);
                return -ENOMEM;
            }
        }
    }
    strlist_clear(dst);
    *dst = fresh;
    return 0;
}

int config_copy_option(struct h5cd_config *dst, const struct h5cd_config *src, const char *name)
{
    const struct option *o = find_option(name);
    if (o == NULL)
        return -ENOENT;
    void *pd = field(dst, o);
    const void *ps = cfield(src, o);
    switch (o->type) {
    case OPT_BOOL:
        *(bool *)pd = *(const bool *)ps;
        return 0;
    case OPT_UINT:
    case OPT_MODE:
        *(unsigned *)pd = *(const unsigned *)ps;
        return 0;
    case OPT_SIZE:
        *(uint64_t *)pd = *(const uint64_t *)ps;
        return 0;
    case OPT_STRING:
    case OPT_LOGLEVEL: {
        const char *from = *(char *const *)ps;
        char *copy = from != NULL ? strdup(from) : NULL;
        if (from != NULL && copy == NULL)
            return -ENOMEM;
        free(*(char **)pd);
        *(char **)pd = copy;
        return 0;
    }
    case OPT_LIST:
        return strlist_copy(pd, ps);
    }
    return -ENOENT;
}
