/*
 * http.c - the HTTP front end: the listening sockets (bound here, or passed
 * by systemd's socket activation), libmicrohttpd in thread-per-connection
 * mode (one MHD daemon per socket: libmicrohttpd takes one listening
 * socket each), request admission, routing and the access log.
 *
 * Why one thread per connection: a request that misses the cache waits
 * for upstream bytes, and a plain blocking wait on the connection's own
 * thread keeps every route simple and streaming.  Concurrency is bounded
 * by max_connections.  Admission refuses, before any route runs, requests
 * whose Host is not a loopback name or a configured server name (DNS
 * rebinding), requests without the bearer token where one is configured,
 * and bodies larger than max_request_body.  Everything a request needs for
 * its access-log line lives in its request_ctx; the routes' content
 * readers reach it through a thread-local pointer, which is sound because
 * a connection's handler, readers and completion all run on its thread.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "authtoken.h"
#include "batchreq.h"
#include "conntrack.h"
#include "log.h"
#include "membudget.h"
#include "routes.h"

#define LISTEN_BACKLOG            128
#define MHD_MEMORY_PER_CONNECTION (64 * 1024)
#define GROUP_BUFFER_BYTES        16384 /* getgrnam_r's scratch space: member lists can be long */
#define CLOSING_SLACK_MIN         16    /* see http_connection_slots */

/* Splits "HOST:PORT" / "[V6]:PORT" into host and port strings. */
static int split_host_port(const char *listen, char *host, size_t hostcap, char *port,
                           size_t portcap)
{
    const char *colon;
    const char *hstart = listen;
    size_t hlen;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        hstart = listen + 1;
        hlen = (size_t)(close - hstart);
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (colon == NULL)
            return -1;
        hlen = (size_t)(colon - listen);
    }
    size_t plen = strlen(colon + 1);
    if (hlen == 0 || hlen >= hostcap || plen == 0 || plen >= portcap)
        return -1;
    memcpy(host, hstart, hlen);
    host[hlen] = '\0';
    memcpy(port, colon + 1, plen + 1);
    return 0;
}

/* True when a process accepts connections on the unix socket at sun. */
static bool unix_socket_live(const struct sockaddr_un *sun)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool live = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
    close(fd);
    return live;
}

static int group_id(const char *name, gid_t *gid, char *err, size_t errlen)
{
    struct group gr, *found = NULL;
    char *buf = malloc(GROUP_BUFFER_BYTES);
    if (buf == NULL) {
        snprintf(err, errlen, "unix_socket_group: out of memory");
        return -1;
    }
    int rc = getgrnam_r(name, &gr, buf, GROUP_BUFFER_BYTES, &found);
    if (rc == 0 && found != NULL)
        *gid = found->gr_gid;
    free(buf);
    if (rc != 0 || found == NULL) {
        snprintf(err, errlen, "unix_socket_group: no group named '%s'", name);
        return -1;
    }
    return 0;
}

/* Gives the bound socket at path its group and mode: connecting needs write permission. */
static int unix_socket_access(const char *path, unsigned mode, gid_t gid, const char *group,
                              char *err, size_t errlen)
{
    if (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0) {
        snprintf(err, errlen, "unix_socket_group: cannot give %s to group %s: %s", path, group,
                 strerror(errno));
        return -1;
    }
    if (chmod(path, (mode_t)mode) < 0) {
        snprintf(err, errlen, "unix_socket_mode: cannot chmod %s to %04o: %s", path, mode,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * Listens on a Unix socket path, replacing a stale socket left by a
 * previous run (but never one another process still serves on).  The
 * socket is bound under umask 0777, so nobody can connect before it has
 * its group and mode.  The parent directory must exist.
 */
static int listen_unix(const char *path, unsigned mode, const char *group, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (path[0] != '/' || strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "unix socket path '%s' must be absolute and shorter than %zu bytes",
                 path, sizeof(sun.sun_path));
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    gid_t gid = (gid_t)-1;
    if (group != NULL && group[0] != '\0' && group_id(group, &gid, err, errlen) < 0)
        return -1;
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a socket", path);
            return -1;
        }
        if (unix_socket_live(&sun)) {
            snprintf(err, errlen, "%s is in use by another process", path);
            return -1;
        }
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    mode_t old_umask = umask(0777);
    int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    int bind_errno = errno;
    umask(old_umask);
    if (rc < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(bind_errno));
        close(fd);
        return -1;
    }
    if (unix_socket_access(path, mode, gid, group, err, errlen) < 0)
        goto fail;
    if (listen(fd, LISTEN_BACKLOG) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
        goto fail;
    }
    return fd;
fail:
    close(fd);
    unlink(path);
    return -1;
}

int http_listen(const char *address, unsigned unix_mode, const char *unix_group, char *err,
                size_t errlen)
{
    if (strncmp(address, "unix:", 5) == 0)
        return listen_unix(address + 5, unix_mode, unix_group, err, errlen);
    char host[256], port[16];
    if (split_host_port(address, host, sizeof(host), port, sizeof(port)) < 0) {
        snprintf(err, errlen, "listen address '%s' is not HOST:PORT", address);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve listen address '%s': %s", address, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", address, strerror(errno));
        close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

void http_describe_socket(int fd, char *out, size_t outlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_UNIX) {
            snprintf(out, outlen, "unix:%s", ((struct sockaddr_un *)&ss)->sun_path);
            return;
        }
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
            port = ntohs(sin->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
            port = ntohs(sin6->sin6_port);
            snprintf(out, outlen, "[%s]:%u", host, port);
            return;
        }
    }
    snprintf(out, outlen, "%s:%u", host, port);
}

/* True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
static bool sockaddr_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

/* A socket systemd passed must listen, stream, and be loopback unless allowed. */
static int check_passed_socket(int fd, bool allow_remote, char *err, size_t errlen)
{
    if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
        snprintf(err, errlen,
                 "socket activation: descriptor %d is not a listening stream socket "
                 "(the socket unit needs ListenStream=)",
                 fd);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        snprintf(err, errlen, "socket activation: descriptor %d: %s", fd, strerror(errno));
        return -1;
    }
    if (ss.ss_family == AF_UNIX)
        return 0;
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) {
        snprintf(err, errlen, "socket activation: descriptor %d has address family %d", fd,
                 (int)ss.ss_family);
        return -1;
    }
    if (!allow_remote && !sockaddr_is_loopback(&ss)) {
        char addr[128];
        http_describe_socket(fd, addr, sizeof(addr));
        snprintf(err, errlen,
                 "socket activation: %s is not a loopback address; set allow_remote_clients = "
                 "true to accept clients from other machines",
                 addr);
        return -1;
    }
    return 0;
}

int http_adopt_sockets(struct server *srv, bool allow_remote, char *err, size_t errlen)
{
    int n = sd_listen_fds(1); /* 1: unset LISTEN_* so that no child inherits them */
    if (n < 0) {
        snprintf(err, errlen, "socket activation: %s", strerror(-n));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int fd = SD_LISTEN_FDS_START + i;
        if (srv->nlisten >= H5CD_MAX_LISTEN_SOCKETS) {
            close(fd);
            continue;
        }
        if (check_passed_socket(fd, allow_remote, err, errlen) < 0)
            return -1;
        srv->listen_fd[srv->nlisten++] = fd;
    }
    if ((size_t)n > srv->nlisten)
        log_warn("msg=\"systemd passed more listening sockets than are served; the rest are "
                 "closed\" passed=%d served=%zu",
                 n, srv->nlisten);
    srv->socket_activated = n > 0;
    return (int)srv->nlisten;
}

/* What happens to a request's body as it arrives. */
enum body_kind {
    BODY_DISCARD, /* the route takes no body: bytes are dropped */
    BODY_SMALL,   /* kept in memory, at most H5CD_MAX_SMALL_BODY (POST /v1/prefetch) */
    BODY_BATCH,   /* parsed as it arrives (POST /v1/chunks), never kept whole */
};

/* Per-request state: the body as it arrives, the memory budget it holds,
 * and what the access log needs once the request is over. */
struct request_ctx {
    struct server *srv;
    enum body_kind body_kind;
    char *body; /* BODY_SMALL */
    size_t len;
    size_t cap;
    struct batchreq *batch; /* BODY_BATCH, until route_chunks takes it */
    bool too_large;
    bool over_budget;      /* the budget refused memory for the body */
    uint64_t charged;      /* bytes of the memory budget held until the request ends */
    struct timespec start; /* CLOCK_MONOTONIC */
    unsigned status;       /* of the queued response; 0 if none */
    uint64_t bytes;        /* payload bytes handed to the client */
    bool logged;           /* the access log was on when the request began */
    char method[ACCESSLOG_METHOD_BYTES + 1];
    struct accesslog_target target;
};

/* The request this connection thread serves (see the comment at the top). */
static _Thread_local struct request_ctx *current_request;

bool http_charge(struct server *srv, uint64_t n)
{
    if (!membudget_acquire(srv->budget, n, H5CD_BUDGET_WAIT_MS))
        return false;
    if (current_request != NULL)
        current_request->charged += n;
    else
        membudget_release(srv->budget, n); /* no request to hold it: nothing to bound */
    return true;
}

void http_count_sent(struct server *srv, uint64_t n)
{
    STATS_ADD(&srv->stats, bytes_served, n);
    if (current_request != NULL)
        current_request->bytes += n;
}

/* Queues body with status, content type and at most one extra header. */
static enum MHD_Result send_body(struct MHD_Connection *conn, unsigned status, char *body,
                                 const char *content_type, const char *hname, const char *hvalue)
{
    if (body == NULL)
        return MHD_NO;
    size_t len = strlen(body);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (hname != NULL)
        MHD_add_response_header(resp, hname, hvalue);
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    if (ret == MHD_YES && current_request != NULL)
        current_request->bytes += len;
    return ret;
}

enum MHD_Result http_send_text(struct server *srv, struct MHD_Connection *conn, unsigned status,
                               char *body, const char *content_type)
{
    (void)srv;
    /* JSON answers end with a newline, so they print cleanly from curl. */
    size_t len = body != NULL ? strlen(body) : 0;
    if (body != NULL && strncmp(content_type, "application/json", 16) == 0 &&
        (len == 0 || body[len - 1] != '\n')) {
        char *line = realloc(body, len + 2);
        if (line == NULL) {
            free(body);
            return MHD_NO;
        }
        memcpy(line + len, "\n", 2);
        body = line;
    }
    return send_body(conn, status, body, content_type, NULL, NULL);
}

enum MHD_Result http_send_error(struct server *srv, struct MHD_Connection *conn,
                                const struct h5cd_error *err)
{
    STATS_INC(&srv->stats, errors);
    /* Messages may quote file contents; JSON needs valid UTF-8. */
    char message[sizeof(err->message)];
    memcpy(message, err->message, sizeof(message));
    message[sizeof(message) - 1] = '\0';
    json_t *text_value = json_string(message);
    if (text_value == NULL) {
        for (char *p = message; *p != '\0'; p++)
            if ((unsigned char)*p >= 0x80 || (unsigned char)*p < 0x20)
                *p = '?';
        text_value = json_string(message);
    }
    json_t *body = json_pack("{s:{s:s, s:o}}", "error", "code", h5cd_errcode_name(err->code),
                             "message", text_value);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL)
        return MHD_NO;
    size_t len = strlen(text);
    char *withnl = realloc(text, len + 2);
    if (withnl == NULL) {
        free(text);
        return MHD_NO;
    }
    memcpy(withnl + len, "\n", 2);
    log_debug("code=%s msg=\"%s\"", h5cd_errcode_name(err->code), err->message);
    /* A 503 we answer ourselves (memory budget, job slots) passes quickly. */
    char retry[16];
    snprintf(retry, sizeof(retry), "%d", H5CD_RETRY_AFTER_SECONDS);
    bool busy = err->code == H5CD_E_UNAVAILABLE;
    return send_body(conn, (unsigned)h5cd_errcode_status(err->code), withnl, "application/json",
                     busy ? MHD_HTTP_HEADER_RETRY_AFTER : NULL, busy ? retry : NULL);
}

enum MHD_Result http_fail(struct server *srv, struct MHD_Connection *conn, enum h5cd_errcode code,
                          const char *fmt, ...)
{
    struct h5cd_error err = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err.message, sizeof(err.message), fmt, ap);
    va_end(ap);
    if (n < 0)
        err.message[0] = '\0';
    return http_send_error(srv, conn, &err);
}

/* ---- request hygiene ---- */

/* What the request's headers say about one header name. */
struct header_count {
    const char *name;
    size_t count;
    const char *value; /* the first one */
    bool has_nul;      /* some value holds a NUL byte */
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    struct header_count *hc = cls;
    if (key == NULL || strlen(hc->name) != key_size || strcasecmp(key, hc->name) != 0)
        return MHD_YES;
    if (hc->count++ == 0)
        hc->value = value;
    if (value == NULL || strlen(value) != value_size)
        hc->has_nul = true;
    return MHD_YES;
}

static struct header_count header_count(struct MHD_Connection *conn, const char *name)
{
    struct header_count hc = {.name = name};
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, count_header, &hc);
    return hc;
}

/* A Host value made of the characters a host name, an IP literal and a port use. */
static bool host_syntax_ok(const char *host)
{
    size_t n = strlen(host);
    if (n == 0 || n > H5CD_MAX_HOST_HEADER_BYTES)
        return false;
    return strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]") ==
           n;
}

/* A configured server name, optionally followed by ":PORT". */
static bool host_is_server_name(const struct server *srv, const char *host)
{
    const struct strlist *names = &srv->cfg->server_names;
    for (size_t i = 0; i < names->count; i++) {
        size_t n = strlen(names->items[i]);
        if (strncasecmp(host, names->items[i], n) != 0)
            continue;
        const char *port = host + n;
        if (port[0] == '\0' || (port[0] == ':' && port[1] != '\0' &&
                                strspn(port + 1, "0123456789") == strlen(port + 1)))
            return true;
    }
    return false;
}

/*
 * The DNS-rebinding defence: exactly one Host, well formed, naming a
 * loopback address or a configured server name.  HTTP/1.1 requires Host;
 * an HTTP/1.0 request without one comes from no browser and passes.
 * 0: allowed; else the error code to answer with (400 malformed, 403 other host).
 */
static enum h5cd_errcode check_host(const struct server *srv, struct MHD_Connection *conn,
                                    const char *version, const char **why)
{
    struct header_count hc = header_count(conn, MHD_HTTP_HEADER_HOST);
    if (hc.count == 0) {
        *why = "HTTP/1.1 requests need a Host header";
        return strcmp(version, MHD_HTTP_VERSION_1_0) == 0 ? H5CD_OK : H5CD_E_BAD_REQUEST;
    }
    if (hc.count > 1) {
        *why = "more than one Host header";
        return H5CD_E_BAD_REQUEST;
    }
    if (hc.has_nul || !host_syntax_ok(hc.value)) {
        *why = "the Host header is malformed";
        return H5CD_E_BAD_REQUEST;
    }
    if (urlpolicy_host_is_loopback(hc.value) || host_is_server_name(srv, hc.value))
        return H5CD_OK;
    *why = "the Host header does not name this daemon";
    return H5CD_E_HOST_NOT_ALLOWED;
}

static enum MHD_Result find_control_char(void *cls, enum MHD_ValueKind kind, const char *key,
                                         size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    bool *bad = cls;
    for (size_t i = 0; i < key_size && !*bad; i++)
        *bad = (unsigned char)key[i] < 0x20 || key[i] == 0x7f;
    for (size_t i = 0; value != NULL && i < value_size && !*bad; i++)
        *bad = (unsigned char)value[i] < 0x20 || value[i] == 0x7f;
    return *bad ? MHD_NO : MHD_YES;
}

/* True when a query argument, once percent-decoded, holds a control
 * character (a NUL would otherwise silently cut the value short). */
static bool arguments_have_control_chars(struct MHD_Connection *conn)
{
    bool bad = false;
    MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, find_control_char, &bad);
    return bad;
}

/*
 * Framing a proxy and we could read differently is refused (request
 * smuggling): two Content-Length headers, Content-Length together with
 * Transfer-Encoding, or a Transfer-Encoding other than chunked.
 */
static const char *framing_problem(struct MHD_Connection *conn)
{
    struct header_count cl = header_count(conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
    struct header_count te = header_count(conn, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (cl.count > 1)
        return "more than one Content-Length header";
    if (cl.count == 1 &&
        (cl.has_nul || cl.value[0] == '\0' || strspn(cl.value, "0123456789") != strlen(cl.value)))
        return "the Content-Length header is malformed";
    if (te.count > 0 && cl.count > 0)
        return "both Content-Length and Transfer-Encoding";
    if (te.count > 1 || (te.count == 1 && strcasecmp(te.value, "chunked") != 0))
        return "a Transfer-Encoding other than chunked";
    return NULL;
}

/* ---- bearer token ---- */

/* path is prefix itself or lies below it. */
static bool path_under(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Admin endpoints change or reveal the daemon's state; with scope "all"
 * everything but the liveness probe needs the token. */
static bool needs_token(const struct h5cd_config *cfg, const char *url)
{
    if (strcmp(cfg->token_scope, "all") == 0)
        return strcmp(url, "/v1/health") != 0;
    return path_under(url, "/v1/cache") || path_under(url, "/v1/jobs") ||
           path_under(url, "/v1/prefetch");
}

static bool authorized(struct server *srv, struct MHD_Connection *conn, const char *url)
{
    const char *token = srv->token;
    if (token == NULL || !needs_token(srv->cfg, url))
        return true;
    const char *header =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    return authtoken_check(token, header);
}

static enum MHD_Result send_unauthorized(struct server *srv, struct MHD_Connection *conn)
{
    STATS_INC(&srv->stats, errors);
    char *body = strdup("{\"error\":{\"code\":\"unauthorized\",\"message\":\"this endpoint "
                        "needs the header Authorization: Bearer <token>\"}}\n");
    return send_body(conn, MHD_HTTP_UNAUTHORIZED, body, "application/json",
                     MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"h5chunkd\"");
}

/* ---- access log ---- */

static enum MHD_Result add_target_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    (void)kind;
    accesslog_target_arg(cls, key, value);
    return MHD_YES;
}

/* "127.0.0.1", "::1", or "unix" for a unix socket peer. */
static void client_name(struct MHD_Connection *conn, char *out, size_t cap)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;
    snprintf(out, cap, "unix");
    if (sa != NULL && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
    else if (sa != NULL && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)cap);
}

static uint64_t ms_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ms =
        (int64_t)(now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
    return ms > 0 ? (uint64_t)ms : 0;
}

static void log_request(struct server *srv, struct MHD_Connection *conn,
                        const struct request_ctx *ctx)
{
    char client[INET6_ADDRSTRLEN];
    client_name(conn, client, sizeof(client));
    struct accesslog_entry e = {
        .client = client,
        .method = ctx->method,
        .target = ctx->target.text,
        .status = ctx->status,
        .bytes = ctx->bytes,
        .duration_ms = ms_since(&ctx->start),
    };
    clock_gettime(CLOCK_REALTIME, &e.when);
    accesslog_write(srv->access_log, &e);
}

/* The connection's tracking handle, set when it was accepted. */
static struct conntrack_conn *tracked(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                              enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    struct server *srv = cls;
    conntrack_phase(srv->conns, tracked(conn), CONNTRACK_IDLE);
    struct request_ctx *ctx = *req_cls;
    if (ctx == NULL)
        return;
    if (ctx->logged)
        log_request(srv, conn, ctx);
    if (current_request == ctx)
        current_request = NULL;
    batchreq_free(ctx->batch);
    membudget_release(srv->budget, ctx->charged);
    free(ctx->body);
    free(ctx);
    *req_cls = NULL;
}

/* A new request's context; NULL when out of memory. */
static struct request_ctx *request_begin(struct server *srv, struct MHD_Connection *conn,
                                         const char *url, const char *method)
{
    struct request_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    ctx->srv = srv;
    clock_gettime(CLOCK_MONOTONIC, &ctx->start);
    current_request = ctx;
    if (accesslog_enabled(srv->access_log)) {
        ctx->logged = true;
        snprintf(ctx->method, sizeof(ctx->method), "%s", method);
        accesslog_target_init(&ctx->target, url);
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, add_target_arg, &ctx->target);
    }
    return ctx;
}

/* Appends a piece of a small body, charging its memory; past the limit or
 * the budget, remembers that instead. */
static void body_append(struct request_ctx *ctx, const char *data, size_t n, uint64_t limit)
{
    if (ctx->too_large || ctx->over_budget || n == 0)
        return;
    if ((uint64_t)ctx->len + n > limit) {
        ctx->too_large = true;
        return;
    }
    if (ctx->len + n + 1 > ctx->cap) {
        size_t cap = ctx->cap ? ctx->cap : 4096;
        while (cap < ctx->len + n + 1)
            cap *= 2;
        if (!membudget_acquire(ctx->srv->budget, cap - ctx->cap, H5CD_BUDGET_WAIT_MS)) {
            ctx->over_budget = true;
            return;
        }
        ctx->charged += cap - ctx->cap;
        char *bigger = realloc(ctx->body, cap);
        if (bigger == NULL) {
            ctx->over_budget = true;
            return;
        }
        ctx->body = bigger;
        ctx->cap = cap;
    }
    memcpy(ctx->body + ctx->len, data, n);
    ctx->len += n;
    ctx->body[ctx->len] = '\0';
}

/* Takes the next piece of the body as its route needs it. */
static void body_piece(struct server *srv, struct request_ctx *ctx, const char *data, size_t n)
{
    switch (ctx->body_kind) {
    case BODY_SMALL:
        body_append(ctx, data, n, H5CD_MAX_SMALL_BODY);
        break;
    case BODY_BATCH:
        if (ctx->len + n > srv->cfg->max_request_body)
            ctx->too_large = true;
        else if (!ctx->too_large)
            batchreq_feed(ctx->batch, data, n); /* a refusal is reported when the body ends */
        ctx->len += n;
        break;
    case BODY_DISCARD:
        break;
    }
}

typedef enum MHD_Result (*get_route)(struct server *, struct MHD_Connection *);

static enum MHD_Result dispatch(struct server *srv, struct MHD_Connection *conn, const char *method,
                                const char *url, struct request_ctx *ctx)
{
    bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    if (strcmp(url, "/v1/file") == 0) {
        if (!get && !head)
            return http_fail(srv, conn, H5CD_E_METHOD_NOT_ALLOWED, "use GET or HEAD");
        return route_file(srv, conn, head);
    }
    if (strcmp(url, "/v1/chunks") == 0) {
        if (!post)
            return http_fail(srv, conn, H5CD_E_METHOD_NOT_ALLOWED, "use POST");
        if (ctx->too_large)
            return http_fail(srv, conn, H5CD_E_TOO_LARGE, "request body larger than %llu bytes",
                             (unsigned long long)srv->cfg->max_request_body);
        struct batchreq *batch = ctx->batch;
        ctx->batch = NULL;
        return route_chunks(srv, conn, batch);
    }
    if (strcmp(url, "/v1/cache") == 0)
        return route_cache(srv, conn, method);
    if (strcmp(url, "/v1/jobs") == 0 || strncmp(url, "/v1/jobs/", 9) == 0)
        return route_jobs(srv, conn, method, url);
    if (strcmp(url, "/v1/prefetch") == 0) {
        if (!post)
            return http_fail(srv, conn, H5CD_E_METHOD_NOT_ALLOWED, "use POST");
        if (ctx->too_large)
            return http_fail(srv, conn, H5CD_E_TOO_LARGE, "request body larger than %d bytes",
                             (int)H5CD_MAX_SMALL_BODY);
        if (ctx->over_budget)
            return http_fail(srv, conn, H5CD_E_UNAVAILABLE,
                             "the daemon's memory budget is in use by other requests; retry");
        return route_prefetch(srv, conn, ctx->body != NULL ? ctx->body : "", ctx->len);
    }
    if (strncmp(url, "/zarr/v2/", 9) == 0) {
        if (!get && !head)
            return http_fail(srv, conn, H5CD_E_METHOD_NOT_ALLOWED, "use GET");
        return route_zarr(srv, conn, url);
    }
    static const struct {
        const char *path;
        get_route handler;
    } simple[] = {
        {"/v1/health", route_health},  {"/v1/stats", route_stats}, {"/metrics", route_metrics},
        {"/v1/meta", route_meta},      {"/v1/chunk", route_chunk}, {"/v1/slice", route_slice},
        {"/v1/zarr", route_zarr_base},
    };
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        if (strcmp(url, simple[i].path) != 0)
            continue;
        if (!get && !head)
            return http_fail(srv, conn, H5CD_E_METHOD_NOT_ALLOWED, "use GET");
        return simple[i].handler(srv, conn);
    }
    return http_fail(srv, conn, H5CD_E_NOT_FOUND, "no such endpoint: %s", url);
}

/* Admission, once the headers are complete: Host, framing, token, body size
 * and memory.  MHD_YES to read the body (or dispatch), or a queued error. */
static enum MHD_Result admit(struct server *srv, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *version, struct request_ctx *ctx)
{
    const char *why = NULL;
    enum h5cd_errcode host = check_host(srv, conn, version, &why);
    if (host != H5CD_OK)
        return http_fail(srv, conn, host, "%s", why);
    if ((why = framing_problem(conn)) != NULL)
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST, "%s", why);
    if (arguments_have_control_chars(conn))
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST,
                         "a query argument holds a control character (%%00..%%1f, %%7f)");
    /* Before the body: an unauthorised client uploads nothing. */
    if (!authorized(srv, conn, url))
        return send_unauthorized(srv, conn);
    const char *clen =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t declared = clen != NULL ? strtoull(clen, NULL, 10) : 0;
    bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    if (post && strcmp(url, "/v1/chunks") == 0) {
        if (declared > srv->cfg->max_request_body)
            return http_fail(srv, conn, H5CD_E_TOO_LARGE, "request body larger than %llu bytes",
                             (unsigned long long)srv->cfg->max_request_body);
        ctx->batch = batchreq_new(srv->cfg->max_keys, srv->budget, H5CD_BUDGET_WAIT_MS);
        if (ctx->batch == NULL)
            return http_fail(srv, conn, H5CD_E_INTERNAL, "out of memory");
        ctx->body_kind = BODY_BATCH;
    } else if (post && strcmp(url, "/v1/prefetch") == 0) {
        if (declared > H5CD_MAX_SMALL_BODY)
            return http_fail(srv, conn, H5CD_E_TOO_LARGE, "request body larger than %d bytes",
                             (int)H5CD_MAX_SMALL_BODY);
        ctx->body_kind = BODY_SMALL;
    }
    return MHD_YES; /* the body, if any, arrives in the next calls */
}

static enum MHD_Result handle_request(struct server *srv, struct MHD_Connection *conn,
                                      const char *url, const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_cls)
{
    struct request_ctx *ctx = *req_cls;
    if (ctx == NULL) {
        ctx = request_begin(srv, conn, url, method);
        if (ctx == NULL)
            return MHD_NO;
        *req_cls = ctx;
        STATS_INC(&srv->stats, requests);
        conntrack_phase(srv->conns, tracked(conn), CONNTRACK_BODY);
        return admit(srv, conn, url, method, version, ctx);
    }
    if (*upload_data_size != 0) {
        body_piece(srv, ctx, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    conntrack_phase(srv->conns, tracked(conn), CONNTRACK_ACTIVE);
    return dispatch(srv, conn, method, url, ctx);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    enum MHD_Result ret =
        handle_request(cls, conn, url, method, version, upload_data, upload_data_size, req_cls);
    /* Routes queue responses in many ways; libmicrohttpd knows the status of each. */
    struct request_ctx *ctx = *req_cls;
    if (ctx != NULL && ctx->status == 0) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (ci != NULL)
            ctx->status = ci->http_status;
    }
    return ret;
}

/* Called when a request line has arrived: the header deadline starts. */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)uri;
    struct server *srv = cls;
    conntrack_phase(srv->conns, tracked(conn), CONNTRACK_HEADERS);
    return NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conntrack_closed(srv->conns, *socket_context);
        *socket_context = NULL;
        return;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    *socket_context = ci != NULL ? conntrack_opened(srv->conns, ci->connect_fd) : NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    if (n < 0)
        return;
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = '\0';
    /* Clients going away (or being sent away by the sweeper) are routine. */
    if (strstr(line, "connection closure") != NULL || strstr(line, "Connection reset") != NULL)
        log_debug("source=libmicrohttpd msg=\"%s\"", line);
    else
        log_warn("source=libmicrohttpd msg=\"%s\"", line);
}

unsigned http_connection_slots(unsigned max_connections)
{
    unsigned slack = max_connections / 4;
    return max_connections + (slack < CLOSING_SLACK_MIN ? CLOSING_SLACK_MIN : slack);
}

/* libmicrohttpd takes one listening socket per daemon, so each socket gets
 * its own; max_connections and the timeout apply to each. */
int http_start(struct server *srv, char *err, size_t errlen)
{
    const struct h5cd_config *cfg = srv->cfg;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    for (size_t i = 0; i < srv->nlisten; i++) {
        srv->mhd[i] = MHD_start_daemon(
            flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
            MHD_OPTION_LISTEN_SOCKET, srv->listen_fd[i], MHD_OPTION_CONNECTION_LIMIT,
            http_connection_slots(cfg->max_connections), MHD_OPTION_CONNECTION_TIMEOUT,
            cfg->client_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
            (size_t)MHD_MEMORY_PER_CONNECTION, MHD_OPTION_NOTIFY_COMPLETED, request_completed, srv,
            MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_URI_LOG_CALLBACK,
            on_request_line, srv, MHD_OPTION_END);
        if (srv->mhd[i] == NULL) {
            char addr[128];
            http_describe_socket(srv->listen_fd[i], addr, sizeof(addr));
            snprintf(err, errlen, "cannot start the HTTP server on %s", addr);
            return -1;
        }
    }
    return 0;
}

void http_stop(struct server *srv)
{
    int quiet[H5CD_MAX_LISTEN_SOCKETS];
    /* Stop accepting on every socket first, then let each daemon finish. */
    for (size_t i = 0; i < srv->nlisten; i++)
        quiet[i] = srv->mhd[i] != NULL ? (int)MHD_quiesce_daemon(srv->mhd[i]) : -1;
    for (size_t i = 0; i < srv->nlisten; i++) {
        if (srv->mhd[i] != NULL)
            MHD_stop_daemon(srv->mhd[i]);
        else
            close(srv->listen_fd[i]);
        if (quiet[i] >= 0)
            close(quiet[i]);
        srv->mhd[i] = NULL;
        srv->listen_fd[i] = -1;
    }
    srv->nlisten = 0;
}

const char *http_dandi_token(struct MHD_Connection *conn)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-DANDI-Token");
}
