/*
 * httpget.c - a bounded, policy-checked, synchronous GET with libcurl's
 * easy interface (see httpget.h).  Runs entirely on the calling thread;
 * the process-wide curl_global_init is done by fetch_new before any
 * request can arrive.  Never logs request headers: they carry secrets.
 */
#include "httpget.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "httprange.h"

#define DISCARD_MAX_BYTES (64 * 1024) /* body read and dropped before a discarded answer is cut */

struct state {
    const struct httpget_request *req;
    struct httpget_response *res;
    size_t cap;
    bool overflow;
    size_t discarded;
    bool cut; /* a body nobody wants was cut short: the answer itself is complete */
};

static curl_socket_t open_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct state *st = userp;
    (void)purpose;
    if (st->req->policy != NULL &&
        !urlpolicy_addr_allowed(st->req->policy, &addr->addr, addr->addrlen)) {
        st->res->policy_refused = true;
        return CURL_SOCKET_BAD;
    }
    int type = addr->socktype;
#ifdef SOCK_CLOEXEC
    type |= SOCK_CLOEXEC;
#endif
    return socket(addr->family, type, addr->protocol);
}

/* "Content-Range: bytes A-B/N": keeps N. */
static void parse_content_range(const char *v, struct httpget_response *res)
{
    const char *p = v;
    uint64_t a, b, n;
    if (strncasecmp(p, "bytes ", 6) != 0)
        return;
    p += 6;
    if (!httprange_read_decimal(&p, &a) || *p++ != '-' || !httprange_read_decimal(&p, &b) ||
        *p++ != '/' || !httprange_read_decimal(&p, &n) || b < a || b >= n)
        return;
    res->total_size = n;
}

static size_t on_header(char *data, size_t size, size_t nitems, void *userp)
{
    struct state *st = userp;
    size_t len = size * nitems;
    char line[H5CD_MAX_UPSTREAM_HEADER_BYTES + 1];
    if (len > H5CD_MAX_UPSTREAM_HEADER_BYTES)
        return len; /* ignored: nothing we read is that long */
    memcpy(line, data, len);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    line[len] = '\0';
    if (strncmp(line, "HTTP/", 5) == 0)
        st->res->total_size = UINT64_MAX; /* a new response: forget the last one's */
    else if (strncasecmp(line, "Content-Range:", 14) == 0)
        parse_content_range(line + 14 + strspn(line + 14, " \t"), st->res);
    return size * nitems;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct state *st = userp;
    size_t len = size * nmemb;
    struct httpget_response *res = st->res;
    if (st->req->max_body == 0) {
        /* A server that ignores Range sends the whole file: stop reading it. */
        st->discarded += len;
        if (st->discarded > DISCARD_MAX_BYTES) {
            st->cut = true;
            return 0;
        }
        return len;
    }
    if (len > st->req->max_body - res->body_len) {
        st->overflow = true;
        return 0; /* aborts the transfer */
    }
    if (res->body_len + len + 1 > st->cap) {
        size_t cap = st->cap ? st->cap : 4096;
        while (cap < res->body_len + len + 1)
            cap *= 2;
        char *bigger = realloc(res->body, cap);
        if (bigger == NULL)
            return 0;
        res->body = bigger;
        st->cap = cap;
    }
    memcpy(res->body + res->body_len, data, len);
    res->body_len += len;
    res->body[res->body_len] = '\0';
    return len;
}

#define SETOPT(h, opt, val)                                                                        \
    do {                                                                                           \
        if (curl_easy_setopt(h, opt, val) != CURLE_OK)                                             \
            goto setup_failed;                                                                     \
    } while (0)

int httpget_run(const struct httpget_request *req, struct httpget_response *res)
{
    memset(res, 0, sizeof(*res));
    res->total_size = UINT64_MAX;
    struct state st = {.req = req, .res = res};
    struct curl_slist *headers = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    int rc = -1;
    CURL *h = curl_easy_init();
    if (h == NULL) {
        snprintf(res->error, sizeof(res->error), "out of memory");
        return -1;
    }
    for (size_t i = 0; i < req->nheaders && i < HTTPGET_MAX_HEADERS; i++) {
        struct curl_slist *next = curl_slist_append(headers, req->headers[i]);
        if (next == NULL)
            goto setup_failed;
        headers = next;
    }
    SETOPT(h, CURLOPT_URL, req->url);
    if (req->first_byte)
        SETOPT(h, CURLOPT_RANGE, "0-0");
    SETOPT(h, CURLOPT_HTTPHEADER, headers);
    SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(h, CURLOPT_ERRORBUFFER, errbuf);
    SETOPT(h, CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(h, CURLOPT_WRITEDATA, (void *)&st);
    SETOPT(h, CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(h, CURLOPT_HEADERDATA, (void *)&st);
    SETOPT(h, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    SETOPT(h, CURLOPT_OPENSOCKETDATA, (void *)&st);
    SETOPT(h, CURLOPT_NOSIGNAL, 1L);
    SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
    SETOPT(h, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
#if LIBCURL_VERSION_NUM >= 0x075500
    SETOPT(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SETOPT(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (req->user_agent != NULL)
        SETOPT(h, CURLOPT_USERAGENT, req->user_agent);
    CURLcode code = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
    if (code == CURLE_WRITE_ERROR && st.cut && res->status != 0)
        code = CURLE_OK;
    if (code != CURLE_OK) {
        res->timed_out = code == CURLE_OPERATION_TIMEDOUT;
        if (st.overflow)
            snprintf(res->error, sizeof(res->error), "upstream answer larger than %zu bytes",
                     req->max_body);
        else if (res->policy_refused)
            snprintf(res->error, sizeof(res->error), "upstream address refused by the URL policy");
        else
            snprintf(res->error, sizeof(res->error), "upstream request failed: %s",
                     errbuf[0] != '\0' ? errbuf : curl_easy_strerror(code));
        goto done;
    }
    if (res->status >= 300 && res->status < 400) {
        char *target = NULL;
        if (curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &target) == CURLE_OK && target != NULL &&
            strlen(target) <= H5CD_MAX_URL_BYTES)
            memcpy(res->location, target, strlen(target) + 1);
    }
    rc = 0;
    goto done;
setup_failed:
    snprintf(res->error, sizeof(res->error), "cannot set up the upstream request");
done:
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
    return rc;
}

void httpget_response_free(struct httpget_response *res)
{
    if (res == NULL)
        return;
    free(res->body);
    res->body = NULL;
    res->body_len = 0;
}
