/*
 * http.c - the HTTP front end: the listening socket, libmicrohttpd in
 * thread-per-connection mode, request admission and routing.
 *
 * Why one thread per connection: a request that misses the cache waits
 * for upstream bytes, and a plain blocking wait on the connection's own
 * thread keeps every route simple and streaming.  Concurrency is bounded
 * by max_connections.  Admission refuses, before any route runs, requests
 * whose Host is not a loopback name or a configured server name (DNS
 * rebinding), and bodies larger than max_request_body.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
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
#include <unistd.h>

#include "log.h"
#include "routes.h"

#define LISTEN_BACKLOG 128
#define MHD_MEMORY_PER_CONNECTION (64 * 1024)

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

/* Listens on a Unix socket path, replacing a stale socket left by a previous run. */
static int listen_unix(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (path[0] != '/' || strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "unix socket path '%s' must be absolute and shorter than %zu bytes",
                 path, sizeof(sun.sun_path));
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a socket", path);
            return -1;
        }
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int http_listen(const char *address, char *err, size_t errlen)
{
    if (strncmp(address, "unix:", 5) == 0)
        return listen_unix(address + 5, err, errlen);
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
        snprintf(err, errlen, "cannot resolve listen address '%s': %s", address,
                 gai_strerror(rc));
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

enum MHD_Result http_send_text(struct server *srv, struct MHD_Connection *conn, unsigned status,
                               char *body, const char *content_type)
{
    (void)srv;
    if (body == NULL)
        return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
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
    return http_send_text(srv, conn, (unsigned)h5cd_errcode_status(err->code), withnl,
                          "application/json");
}

enum MHD_Result http_fail(struct server *srv, struct MHD_Connection *conn,
                          enum h5cd_errcode code, const char *fmt, ...)
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

/* True when the Host header names this daemon (DNS rebinding defence). */
static bool host_allowed(const struct server *srv, struct MHD_Connection *conn)
{
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    if (host == NULL)
        return true; /* HTTP/1.0 without Host: no browser sends this */
    if (strlen(host) > H5CD_MAX_HOST_HEADER_BYTES)
        return false;
    if (urlpolicy_host_is_loopback(host))
        return true;
    const struct strlist *names = &srv->cfg->server_names;
    for (size_t i = 0; i < names->count; i++) {
        size_t n = strlen(names->items[i]);
        if (strncasecmp(host, names->items[i], n) == 0 && (host[n] == '\0' || host[n] == ':'))
            return true;
    }
    return false;
}

/* Per-request state: the body as it arrives, bounded by max_request_body. */
struct request_ctx {
    char *body;
    size_t len;
    size_t cap;
    bool too_large;
};

static void request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                              enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    struct request_ctx *ctx = *req_cls;
    if (ctx != NULL) {
        free(ctx->body);
        free(ctx);
        *req_cls = NULL;
    }
}

/* Appends a piece of the body; past the limit, remembers that instead. */
static void body_append(struct request_ctx *ctx, const char *data, size_t n, uint64_t limit)
{
    if (ctx->too_large || n == 0)
        return;
    if ((uint64_t)ctx->len + n > limit) {
        ctx->too_large = true;
        return;
    }
    if (ctx->len + n + 1 > ctx->cap) {
        size_t cap = ctx->cap ? ctx->cap : 4096;
        while (cap < ctx->len + n + 1)
            cap *= 2;
        char *bigger = realloc(ctx->body, cap);
        if (bigger == NULL) {
            ctx->too_large = true;
            return;
        }
        ctx->body = bigger;
        ctx->cap = cap;
    }
    memcpy(ctx->body + ctx->len, data, n);
    ctx->len += n;
    ctx->body[ctx->len] = '\0';
}

typedef enum MHD_Result (*get_route)(struct server *, struct MHD_Connection *);

static enum MHD_Result dispatch(struct server *srv, struct MHD_Connection *conn,
                                const char *method, const char *url, struct request_ctx *ctx)
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
        return route_chunks(srv, conn, ctx->body != NULL ? ctx->body : "", ctx->len);
    }
    static const struct {
        const char *path;
        get_route handler;
    } simple[] = {
        {"/v1/health", route_health}, {"/v1/stats", route_stats}, {"/metrics", route_metrics},
        {"/v1/meta", route_meta},     {"/v1/chunk", route_chunk},
        {"/v1/slice", route_slice},
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    (void)version;
    struct server *srv = cls;
    struct request_ctx *ctx = *req_cls;
    if (ctx == NULL) {
        ctx = calloc(1, sizeof(*ctx));
        if (ctx == NULL)
            return MHD_NO;
        *req_cls = ctx;
        STATS_INC(&srv->stats, requests);
        if (!host_allowed(srv, conn))
            return http_fail(srv, conn, H5CD_E_HOST_NOT_ALLOWED,
                             "the Host header does not name this daemon");
        const char *clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                       MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (clen != NULL && strtoull(clen, NULL, 10) > srv->cfg->max_request_body)
            return http_fail(srv, conn, H5CD_E_TOO_LARGE, "request body larger than %llu bytes",
                             (unsigned long long)srv->cfg->max_request_body);
        return MHD_YES; /* the body, if any, arrives in the next calls */
    }
    if (*upload_data_size != 0) {
        body_append(ctx, upload_data, *upload_data_size, srv->cfg->max_request_body);
        *upload_data_size = 0;
        return MHD_YES;
    }
    return dispatch(srv, conn, method, url, ctx);
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
    log_warn("source=libmicrohttpd msg=\"%s\"", line);
}

int http_start(struct server *srv, char *err, size_t errlen)
{
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    srv->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, srv->listen_fd,
        MHD_OPTION_CONNECTION_LIMIT, srv->cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        srv->cfg->client_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)MHD_MEMORY_PER_CONNECTION, MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL, MHD_OPTION_END);
    if (srv->mhd == NULL) {
        snprintf(err, errlen, "cannot start the HTTP server");
        return -1;
    }
    return 0;
}

void http_stop(struct server *srv)
{
    if (srv->mhd == NULL)
        return;
    int fd = (int)MHD_quiesce_daemon(srv->mhd);
    MHD_stop_daemon(srv->mhd);
    srv->mhd = NULL;
    if (fd >= 0)
        close(fd);
    srv->listen_fd = -1;
}
