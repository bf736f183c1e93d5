/*
 * http.c - h5chunk's requests to the daemon, over TCP or a Unix socket,
 * with one reused libcurl easy handle.  Owns the bounds on what the daemon
 * may send (JSON bodies, error bodies), the bearer token, the deadline of
 * --timeout, and turning every failure into one struct h5c_failure: the
 * daemon's JSON error when it answered, curl's reason when it did not.
 * Single-threaded.  It must never follow redirects or use a proxy: the
 * daemon is addressed directly.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "h5chunk.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.0.0"
#endif

volatile int h5c_interrupted;

struct h5c_http {
    CURL *curl;
    struct curl_slist *plain_headers; /* Authorization, when a token is set */
    struct curl_slist *json_headers;  /* the same plus Content-Type and no Expect */
    struct h5c_daemon daemon;
    char shown[H5C_MAX_DAEMON_BYTES + 8]; /* the address as messages show it */
    uint64_t deadline_ms;                 /* CLOCK_MONOTONIC */
    bool interruptible;
    char errbuf[CURL_ERROR_SIZE];
};

/* A response being received. */
struct xfer {
    struct h5c_http *h;
    h5c_sink_fn sink;
    void *sink_ud;
    long status;
    bool sink_failed;
    bool too_large;
    char *buf; /* collected body (NUL-terminated when not NULL) */
    size_t len, cap, max;
    char why[H5C_MESSAGE_BYTES]; /* the sink's reason */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void failf(struct h5c_failure *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void failf(struct h5c_failure *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(f->message, sizeof(f->message), fmt, ap);
    va_end(ap);
    if (n < 0)
        f->message[0] = '\0';
}

/* Reads the token file: one line, no spaces or control characters. */
static int read_token(const char *path, char *tok, size_t cap, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open token file %s: %s", path, strerror(errno));
        return -1;
    }
    size_t len = 0;
    ssize_t n = 0;
    while (len < cap && (n = read(fd, tok + len, cap - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
    }
    int saved = errno;
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "cannot read token file %s: %s", path, strerror(saved));
        return -1;
    }
    if (len >= cap) {
        snprintf(err, errlen, "token file %s is longer than %d bytes", path, H5C_MAX_TOKEN_BYTES);
        return -1;
    }
    while (len > 0 && (tok[len - 1] == '\n' || tok[len - 1] == '\r' || tok[len - 1] == ' ' ||
                       tok[len - 1] == '\t'))
        len--;
    tok[len] = '\0';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)tok[i];
        if (c <= 0x20 || c == 0x7f) {
            snprintf(err, errlen, "token file %s must hold one token on one line", path);
            return -1;
        }
    }
    if (len == 0) {
        snprintf(err, errlen, "token file %s is empty", path);
        return -1;
    }
    return 0;
}

static int add_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *l = curl_slist_append(*list, line);
    if (l == NULL)
        return -1;
    *list = l;
    return 0;
}

/* X-DANDI-Token from --dandi-token FILE, else from $DANDI_API_KEY. */
static int add_dandi_token(struct h5c_http *h, const struct h5c_args *args, char *err,
                           size_t errlen)
{
    char key[H5C_MAX_TOKEN_BYTES + 1];
    char line[H5C_MAX_TOKEN_BYTES + 32];
    if (args->dandi_token_file != NULL) {
        if (read_token(args->dandi_token_file, key, sizeof(key), err, errlen) < 0)
            return -1;
    } else if (args->dandi_key != NULL && args->dandi_key[0] != '\0') {
        size_t len = strlen(args->dandi_key);
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)args->dandi_key[i] <= 0x20 ||
                (unsigned char)args->dandi_key[i] >= 0x7f || len > H5C_MAX_TOKEN_BYTES) {
                snprintf(err, errlen, "DANDI_API_KEY must be one printable word");
                return -1;
            }
        memcpy(key, args->dandi_key, len + 1);
    } else {
        return 0;
    }
    int n = snprintf(line, sizeof(line), "X-DANDI-Token: %s", key);
    explicit_bzero(key, sizeof(key));
    int rc = 0;
    if (n < 0 || (size_t)n >= sizeof(line) || add_header(&h->plain_headers, line) < 0 ||
        add_header(&h->json_headers, line) < 0) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    explicit_bzero(line, sizeof(line));
    return rc;
}

static int build_headers(struct h5c_http *h, const char *token_file, char *err, size_t errlen)
{
    if (token_file != NULL) {
        char tok[H5C_MAX_TOKEN_BYTES + 1];
        char line[H5C_MAX_TOKEN_BYTES + 32];
        if (read_token(token_file, tok, sizeof(tok), err, errlen) < 0)
            return -1;
        int n = snprintf(line, sizeof(line), "Authorization: Bearer %s", tok);
        memset(tok, 0, sizeof(tok));
        if (n < 0 || (size_t)n >= sizeof(line) || add_header(&h->plain_headers, line) < 0 ||
            add_header(&h->json_headers, line) < 0) {
            memset(line, 0, sizeof(line));
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        memset(line, 0, sizeof(line));
    }
    if (add_header(&h->json_headers, "Content-Type: application/json") < 0 ||
        add_header(&h->json_headers, "Expect:") < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int h5c_http_new(const struct h5c_args *args, struct h5c_http **out, char *err, size_t errlen)
{
    *out = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return -1;
    }
    struct h5c_http *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    h->daemon = args->daemon;
    h->interruptible = true;
    h->deadline_ms = now_ms() + args->timeout_ms;
    int n = h->daemon.unix_path[0] != '\0'
                ? snprintf(h->shown, sizeof(h->shown), "unix:%s", h->daemon.unix_path)
                : snprintf(h->shown, sizeof(h->shown), "%s", h->daemon.base);
    (void)n; /* both fit by construction */
    h->curl = curl_easy_init();
    if (h->curl == NULL) {
        snprintf(err, errlen, "cannot initialise libcurl");
        goto fail;
    }
    if (build_headers(h, args->token_file, err, errlen) < 0 ||
        add_dandi_token(h, args, err, errlen) < 0)
        goto fail;
    *out = h;
    return 0;
fail:
    h5c_http_free(h);
    return -1;
}

void h5c_http_free(struct h5c_http *h)
{
    if (h == NULL)
        return;
    if (h->curl != NULL)
        curl_easy_cleanup(h->curl);
    curl_slist_free_all(h->plain_headers);
    curl_slist_free_all(h->json_headers);
    free(h);
    curl_global_cleanup();
}

char *h5c_http_escape(struct h5c_http *h, const char *text)
{
    return curl_easy_escape(h->curl, text, 0);
}

void h5c_http_free_str(char *s)
{
    curl_free(s);
}

const char *h5c_http_base(const struct h5c_http *h)
{
    return h->daemon.base;
}

char *h5c_http_target(struct h5c_http *h, const char *path, const char *const *params)
{
    size_t cap = strlen(path) + 1, used = 0;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    memcpy(out, path, cap);
    used = cap - 1;
    char sep = '?';
    for (size_t i = 0; params[i] != NULL; i += 2) {
        if (params[i + 1] == NULL)
            continue;
        char *v = curl_easy_escape(h->curl, params[i + 1], 0);
        if (v == NULL)
            goto fail;
        size_t nlen = strlen(params[i]), vlen = strlen(v);
        char *bigger = realloc(out, used + nlen + vlen + 3);
        if (bigger == NULL) {
            curl_free(v);
            goto fail;
        }
        out = bigger;
        out[used++] = sep;
        memcpy(out + used, params[i], nlen);
        used += nlen;
        out[used++] = '=';
        memcpy(out + used, v, vlen + 1);
        used += vlen;
        curl_free(v);
        sep = '&';
    }
    return out;
fail:
    free(out);
    return NULL;
}

uint64_t h5c_http_remaining_ms(const struct h5c_http *h)
{
    uint64_t now = now_ms();
    return now >= h->deadline_ms ? 0 : h->deadline_ms - now;
}

void h5c_http_interruptible(struct h5c_http *h, bool yes)
{
    h->interruptible = yes;
}

/* ---- one transfer ---- */

static int collect(struct xfer *x, const char *data, size_t n)
{
    if (n > x->max - x->len) {
        x->too_large = true;
        return -1;
    }
    if (x->len + n + 1 > x->cap) {
        size_t cap = x->cap != 0 ? x->cap : 4096;
        while (cap < x->len + n + 1)
            cap *= 2;
        if (cap > x->max + 1)
            cap = x->max + 1;
        char *bigger = realloc(x->buf, cap);
        if (bigger == NULL) {
            x->too_large = true;
            return -1;
        }
        x->buf = bigger;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, data, n);
    x->len += n;
    x->buf[x->len] = '\0';
    return 0;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;
    if (x->status == 0)
        curl_easy_getinfo(x->h->curl, CURLINFO_RESPONSE_CODE, &x->status);
    if (x->sink != NULL && x->status >= 200 && x->status < 300) {
        if (x->sink(x->sink_ud, (const uint8_t *)data, n, x->why, sizeof(x->why)) < 0) {
            x->sink_failed = true;
            return 0; /* CURLE_WRITE_ERROR */
        }
        return n;
    }
    return collect(x, data, n) < 0 ? 0 : n;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    const struct h5c_http *h = ud;
    return h->interruptible && h5c_interrupted ? 1 : 0;
}

static int setup(struct h5c_http *h, const char *method, const char *target, const char *body,
                 struct xfer *x, uint64_t timeout_ms)
{
    CURL *c = h->curl;
    size_t blen = strlen(h->daemon.base), tlen = strlen(target);
    char *url = malloc(blen + tlen + 1);
    if (url == NULL)
        return -1;
    memcpy(url, h->daemon.base, blen);
    memcpy(url + blen, target, tlen + 1);
    curl_easy_reset(c); /* keeps the connection cache, drops the last request's options */
    h->errbuf[0] = '\0';
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, url);
    free(url); /* libcurl keeps its own copy */
    if (h->daemon.unix_path[0] != '\0')
        SET(CURLOPT_UNIX_SOCKET_PATH, h->daemon.unix_path);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_NOPROXY, "*");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, h->errbuf);
    SET(CURLOPT_USERAGENT, "h5chunk/" PACKAGE_VERSION);
    SET(CURLOPT_CONNECTTIMEOUT_MS,
        (long)(timeout_ms < H5C_CONNECT_TIMEOUT_MS ? timeout_ms : H5C_CONNECT_TIMEOUT_MS));
    SET(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_XFERINFOFUNCTION, on_progress);
    SET(CURLOPT_XFERINFODATA, h);
    SET(CURLOPT_NOPROGRESS, 0L);
    if (body != NULL) {
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDS, body);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
        SET(CURLOPT_HTTPHEADER, h->json_headers);
    } else if (h->plain_headers != NULL) {
        SET(CURLOPT_HTTPHEADER, h->plain_headers);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        SET(CURLOPT_CUSTOMREQUEST, method);
#undef SET
    return rc == CURLE_OK ? 0 : -1;
}

/* The daemon answered with an error status: take its JSON error, else the first line. */
static void take_error_body(struct h5c_failure *f, const struct xfer *x)
{
    json_error_t jerr;
    json_t *doc = x->buf != NULL ? json_loadb(x->buf, x->len, 0, &jerr) : NULL;
    json_t *e = json_object_get(doc, "error");
    json_t *code = json_object_get(e, "code");
    json_t *msg = json_object_get(e, "message");
    if (json_is_string(code)) {
        snprintf(f->code, sizeof(f->code), "%s", json_string_value(code));
        failf(f, "%s", json_is_string(msg) ? json_string_value(msg) : "");
    } else if (x->len > 0) {
        size_t n = strcspn(x->buf, "\r\n");
        failf(f, "HTTP %ld: %.*s", x->status, (int)(n < 200 ? n : 200), x->buf);
    } else {
        failf(f, "HTTP %ld", x->status);
    }
    json_decref(doc);
}

static void take_curl_error(struct h5c_http *h, CURLcode rc, const struct xfer *x,
                            uint64_t timeout_ms, struct h5c_failure *f)
{
    const char *why = h->errbuf[0] != '\0' ? h->errbuf : curl_easy_strerror(rc);
    if (rc == CURLE_ABORTED_BY_CALLBACK && h5c_interrupted) {
        f->interrupted = true;
        failf(f, "interrupted");
    } else if (rc == CURLE_WRITE_ERROR && x->sink_failed) {
        failf(f, "%s", x->why);
    } else if (rc == CURLE_WRITE_ERROR && x->too_large) {
        failf(f, "the daemon's answer is larger than %zu bytes", x->max);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        failf(f, "no complete answer from h5chunkd at %s within %.1f s", h->shown,
              (double)timeout_ms / 1000.0);
    } else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST) {
        failf(f, "cannot reach h5chunkd at %s (is it running?): %s", h->shown, why);
    } else {
        failf(f, "request to h5chunkd at %s failed: %s", h->shown, why);
    }
}

long h5c_http_request(struct h5c_http *h, const char *method, const char *target, const char *body,
                      h5c_sink_fn sink, void *sink_ud, char **resp, size_t *resp_len,
                      uint64_t timeout_ms, struct h5c_failure *fail)
{
    struct xfer x = {.h = h, .sink = sink, .sink_ud = sink_ud};
    memset(fail, 0, sizeof(*fail));
    x.max = sink != NULL ? H5C_MAX_ERROR_BODY : H5C_MAX_JSON_BODY;
    if (resp != NULL)
        *resp = NULL;
    if (resp_len != NULL)
        *resp_len = 0;
    if (h->interruptible && h5c_interrupted) {
        fail->interrupted = true;
        failf(fail, "interrupted");
        return -1;
    }
    if (timeout_ms == 0)
        timeout_ms = h5c_http_remaining_ms(h);
    if (timeout_ms == 0) {
        failf(fail, "timed out (--timeout)");
        return -1;
    }
    if (setup(h, method, target, body, &x, timeout_ms) < 0) {
        failf(fail, "cannot set up the request: out of memory");
        return -1;
    }
    CURLcode rc = curl_easy_perform(h->curl);
    if (rc != CURLE_OK) {
        curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &fail->status);
        take_curl_error(h, rc, &x, timeout_ms, fail);
        free(x.buf);
        return -1;
    }
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &x.status);
    fail->status = x.status;
    if (x.status < 200 || x.status >= 300) {
        take_error_body(fail, &x);
        free(x.buf);
        return -1;
    }
    if (resp != NULL) {
        *resp = x.buf;
        x.buf = NULL;
    }
    if (resp_len != NULL)
        *resp_len = x.len;
    free(x.buf);
    return x.status;
}

long h5c_http_json(struct h5c_http *h, const char *method, const char *target, const char *body,
                   json_t **doc, char **raw, uint64_t timeout_ms, struct h5c_failure *fail)
{
    char *text = NULL;
    size_t len = 0;
    *doc = NULL;
    if (raw != NULL)
        *raw = NULL;
    long st = h5c_http_request(h, method, target, body, NULL, NULL, &text, &len, timeout_ms, fail);
    if (st < 0)
        return -1;
    json_error_t jerr;
    *doc = len == 0 ? json_object() : json_loadb(text, len, 0, &jerr);
    if (*doc == NULL) {
        failf(fail, "the daemon sent invalid JSON (%s)", len == 0 ? "out of memory" : jerr.text);
        free(text);
        return -1;
    }
    if (raw != NULL && text == NULL)
        text = calloc(1, 1);
    if (raw != NULL)
        *raw = text;
    else
        free(text);
    return st;
}
