/*
 * urlpolicy.c - decides which upstream URLs and addresses h5chunkd may use,
 * and computes a URL's cache identity.
 *
 * URLs are parsed by libcurl's URL API, the same parser the fetcher's
 * libcurl uses, so that the URL we judge is the URL that gets fetched.
 * The policy is immutable after urlpolicy_new(): any thread may use it.
 * It must never resolve names or touch the network; addresses are judged
 * only when the fetcher hands one over at connect time.
 */
#include "urlpolicy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct urlpolicy {
    bool allow_private;
    struct urlpolicy_network *networks; /* private blocks allowed all the same */
    size_t nnetworks;
    struct strlist allow; /* normalized prefixes */
    struct strlist deny;
    struct strlist strip; /* query parameter names, compared case-sensitively */
};

/* ---- creation ---- */

static void list_free(struct strlist *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static int normalize(const struct urlpolicy *policy, const char *url, char *out, size_t cap,
                     struct h5cd_error *err);
static void comparison_form(const char *identity, char *out, size_t cap);

/* Copies src into dst; with policy set, items that are valid URLs are
 * replaced by their identity so that prefix and URL compare alike. */
static int list_copy(struct strlist *dst, const struct strlist *src, const struct urlpolicy *policy)
{
    char id[H5CD_MAX_URL_BYTES + 1];
    dst->items = NULL;
    dst->count = 0;
    if (src->count == 0)
        return 0;
    dst->items = calloc(src->count, sizeof(*dst->items));
    if (dst->items == NULL)
        return -1;
    for (size_t i = 0; i < src->count; i++) {
        const char *item = src->items[i];
        char cmp[H5CD_MAX_URL_BYTES + 1];
        if (policy != NULL && normalize(policy, item, id, sizeof(id), NULL) == 0) {
            comparison_form(id, cmp, sizeof(cmp));
            item = cmp;
        }
        dst->items[i] = strdup(item);
        if (dst->items[i] == NULL)
            return -1;
        dst->count++;
    }
    return 0;
}

struct urlpolicy *urlpolicy_new(const struct h5cd_config *cfg)
{
    struct urlpolicy *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->allow_private = cfg->allow_private_upstreams;
    if (cfg->allow_upstream_networks.count > 0) {
        p->networks = calloc(cfg->allow_upstream_networks.count, sizeof(*p->networks));
        if (p->networks == NULL)
            goto fail;
        /* config_validate refused unparsable blocks; one that slips through allows nothing. */
        for (size_t i = 0; i < cfg->allow_upstream_networks.count; i++)
            if (urlpolicy_parse_network(cfg->allow_upstream_networks.items[i],
                                        &p->networks[p->nnetworks]) == 0)
                p->nnetworks++;
    }
    /* The strip list comes first: prefixes are normalized with it. */
    if (list_copy(&p->strip, &cfg->strip_query_params, NULL) < 0 ||
        list_copy(&p->allow, &cfg->allow_prefixes, p) < 0 ||
        list_copy(&p->deny, &cfg->deny_prefixes, p) < 0)
        goto fail;
    return p;
fail:
    urlpolicy_free(p);
    return NULL;
}

void urlpolicy_free(struct urlpolicy *policy)
{
    if (policy == NULL)
        return;
    list_free(&policy->allow);
    list_free(&policy->deny);
    list_free(&policy->strip);
    free(policy->networks);
    free(policy);
}

/* ---- identity ---- */

/*
 * S3's response-header overrides change the headers of an answer, never its
 * bytes: DANDI's presigned URLs carry response-content-disposition with the
 * asset's file name, and the blob they name is the one s3:// names.  Always
 * left out of the identity (and, unlike strip_query_params, not credentials).
 */
static const char *const header_only_params[] = {
    "response-cache-control",    "response-content-disposition", "response-content-encoding",
    "response-content-language", "response-content-type",        "response-expires",
};

static bool stripped(const struct urlpolicy *policy, const char *param, size_t len)
{
    size_t name = 0;
    while (name < len && param[name] != '=')
        name++;
    for (size_t i = 0; i < sizeof(header_only_params) / sizeof(header_only_params[0]); i++) {
        const char *s = header_only_params[i];
        if (strlen(s) == name && memcmp(s, param, name) == 0)
            return true;
    }
    for (size_t i = 0; i < policy->strip.count; i++) {
        const char *s = policy->strip.items[i];
        if (strlen(s) == name && memcmp(s, param, name) == 0)
            return true;
    }
    return false;
}

/* Appends to out the query without the stripped parameters (and without
 * empty ones), keeping the order.  Returns the new length or -1 if full. */
static int append_query(const struct urlpolicy *policy, const char *query, char *out, size_t pos,
                        size_t cap)
{
    bool first = true;
    for (const char *p = query; *p != '\0';) {
        size_t len = strcspn(p, "&");
        if (len > 0 && !stripped(policy, p, len)) {
            if (pos + len + 1 >= cap)
                return -1;
            out[pos++] = first ? '?' : '&';
            memcpy(out + pos, p, len);
            pos += len;
            first = false;
        }
        p += len;
        if (*p == '&')
            p++;
    }
    out[pos] = '\0';
    return (int)pos;
}

struct parts {
    char *scheme, *host, *port, *path, *query;
};

static void parts_free(struct parts *p)
{
    curl_free(p->scheme);
    curl_free(p->host);
    curl_free(p->port);
    curl_free(p->path);
    curl_free(p->query);
}

/* Splits url with libcurl and applies the checks that need its parts. */
static int split_url(const char *url, struct parts *out, struct h5cd_error *err)
{
    int rc = -1;
    char *user = NULL, *password = NULL, *zone = NULL;
    CURLU *h = curl_url();
    if (h == NULL)
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    CURLUcode uc = curl_url_set(h, CURLUPART_URL, url, 0);
    if (uc == CURLUE_UNSUPPORTED_SCHEME) {
        h5cd_fail(err, H5CD_E_URL_NOT_ALLOWED, "only http and https URLs are allowed");
        goto fail;
    }
    if (uc != CURLUE_OK) {
        h5cd_fail(err, H5CD_E_BAD_REQUEST, "malformed URL: %s", curl_url_strerror(uc));
        goto fail;
    }
    if (curl_url_get(h, CURLUPART_SCHEME, &out->scheme, 0) != CURLUE_OK ||
        (strcasecmp(out->scheme, "http") != 0 && strcasecmp(out->scheme, "https") != 0)) {
        h5cd_fail(err, H5CD_E_URL_NOT_ALLOWED, "only http and https URLs are allowed");
        goto fail;
    }
    if (curl_url_get(h, CURLUPART_HOST, &out->host, 0) != CURLUE_OK || out->host[0] == '\0') {
        h5cd_fail(err, H5CD_E_BAD_REQUEST, "URL has no host");
        goto fail;
    }
    if (curl_url_get(h, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(h, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK) {
        h5cd_fail(err, H5CD_E_URL_NOT_ALLOWED, "URLs with user credentials are not allowed");
        goto fail;
    }
    if (curl_url_get(h, CURLUPART_ZONEID, &zone, 0) == CURLUE_OK) {
        h5cd_fail(err, H5CD_E_BAD_REQUEST, "IPv6 zone identifiers are not allowed");
        goto fail;
    }
    if (curl_url_get(h, CURLUPART_PORT, &out->port, 0) != CURLUE_OK)
        out->port = NULL; /* no explicit port */
    if (curl_url_get(h, CURLUPART_PATH, &out->path, 0) != CURLUE_OK) {
        h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
        goto fail;
    }
    uc = curl_url_get(h, CURLUPART_QUERY, &out->query, 0);
    if (uc == CURLUE_OUT_OF_MEMORY) {
        h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
        goto fail;
    }
    if (uc != CURLUE_OK)
        out->query = NULL; /* no query: nothing was allocated */
    rc = 0;
fail:
    curl_free(user);
    curl_free(password);
    curl_free(zone);
    curl_url_cleanup(h);
    return rc;
}

/* ---- hosts ---- */

/* One part of a numeric IPv4 host: decimal, octal (leading 0) or hex (0x). */
static bool read_ipv4_part(const char *s, size_t len, uint64_t *out)
{
    unsigned base = 10;
    if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
        len -= 2;
        if (len == 0) {
            *out = 0; /* "0x" is zero, as in inet_aton and WHATWG */
            return true;
        }
    } else if (len >= 2 && s[0] == '0') {
        base = 8;
        s++;
        len--;
    }
    if (len == 0 || len > 32)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        int c = tolower((unsigned char)s[i]);
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return false;
        if (d >= base)
            return false;
        v = v * base + d;
        if (v > UINT32_MAX)
            return false;
    }
    *out = v;
    return true;
}

/* inet_aton's forms: a, a.b, a.b.c, a.b.c.d, each part in any base; the last part
 * fills the remaining bytes.  -1 when host is not such an address. */
static int parse_ipv4_any(const char *host, uint32_t *out)
{
    uint64_t parts[4];
    size_t n = 0;
    for (const char *p = host;;) {
        size_t len = strcspn(p, ".");
        if (n == 4 || !read_ipv4_part(p, len, &parts[n]))
            return -1;
        n++;
        p += len;
        if (*p == '\0')
            break;
        p++;
    }
    uint64_t v = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (parts[i] > 255)
            return -1;
        v |= parts[i] << (8 * (3 - i));
    }
    uint64_t room = n == 1 ? UINT32_MAX : (1ULL << (8 * (5 - n))) - 1;
    if (parts[n - 1] > room)
        return -1;
    *out = (uint32_t)(v | parts[n - 1]);
    return 0;
}

/* True when the last label is numeric (decimal or 0x-hex): such a host can only be
 * an IPv4 address, and browsers and libcurl read it as one. */
static bool last_label_numeric(const char *host)
{
    const char *dot = strrchr(host, '.');
    const char *label = dot != NULL ? dot + 1 : host;
    if (label[0] == '0' && (label[1] == 'x' || label[1] == 'X'))
        return strspn(label + 2, "0123456789abcdefABCDEF") == strlen(label + 2);
    return label[0] != '\0' && strspn(label, "0123456789") == strlen(label);
}

static int format_ipv4(uint32_t a, char *out, size_t cap, struct h5cd_error *err)
{
    int n = snprintf(out, cap, "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
    if (n < 0 || (size_t)n >= cap)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "host too long");
    return 0;
}

/* "[v6]": IPv4-mapped and -compatible addresses become IPv4, the rest RFC 5952 text. */
static int normalize_ipv6_host(const char *host, size_t len, char *out, size_t cap,
                               struct h5cd_error *err)
{
    char inner[INET6_ADDRSTRLEN + 1];
    struct in6_addr a;
    if (len < 3 || host[len - 1] != ']' || len - 2 >= sizeof(inner))
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "malformed IPv6 host");
    memcpy(inner, host + 1, len - 2);
    inner[len - 2] = '\0';
    if (inet_pton(AF_INET6, inner, &a) != 1)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "malformed IPv6 host");
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char zero[12] = {0};
    const unsigned char *b = a.s6_addr;
    bool compat = memcmp(b, zero, 12) == 0 && (b[12] | b[13] | b[14]) != 0;
    if (memcmp(b, mapped, 12) == 0 || compat)
        return format_ipv4((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 |
                               b[15],
                           out, cap, err);
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(AF_INET6, &a, text, sizeof(text)) == NULL)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "malformed IPv6 host");
    int n = snprintf(out, cap, "[%s]", text);
    if (n < 0 || (size_t)n >= cap)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "host too long");
    return 0;
}

int urlpolicy_normalize_host(const char *host, char *out, size_t cap, struct h5cd_error *err)
{
    char name[256];
    if (host == NULL || out == NULL || cap == 0)
        return h5cd_fail(err, H5CD_E_INTERNAL, "bad arguments");
    size_t len = strnlen(host, sizeof(name));
    if (len == 0 || len >= sizeof(name))
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "URL host is empty or longer than 255 bytes");
    if (host[0] == '[')
        return normalize_ipv6_host(host, len, out, cap, err);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c >= 0x80)
            return h5cd_fail(err, H5CD_E_BAD_REQUEST,
                             "host name must be ASCII (use the punycode form)");
        if (c == '%')
            return h5cd_fail(err, H5CD_E_BAD_REQUEST, "percent-escapes are not allowed in hosts");
        name[i] = (char)tolower(c);
        if (!isalnum((unsigned char)name[i]) && c != '.' && c != '-' && c != '_')
            return h5cd_fail(err, H5CD_E_BAD_REQUEST, "URL host contains a '%c'", c);
    }
    name[len] = '\0';
    bool rooted = len > 1 && name[len - 1] == '.';
    if (rooted)
        name[--len] = '\0'; /* the root label: the same host */
    if (name[0] == '.' || strstr(name, "..") != NULL || name[len - 1] == '.')
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "URL host has an empty label");
    if (last_label_numeric(name)) {
        /* Resolvers do not read "127.0.0.1." as an address: it could never be fetched. */
        if (rooted)
            return h5cd_fail(err, H5CD_E_BAD_REQUEST, "a numeric host has no trailing dot");
        uint32_t a;
        if (parse_ipv4_any(name, &a) < 0)
            return h5cd_fail(err, H5CD_E_BAD_REQUEST, "URL host is not a valid IPv4 address");
        return format_ipv4(a, out, cap, err);
    }
    if (len >= cap)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "host too long");
    memcpy(out, name, len + 1);
    return 0;
}

/* A percent-escape of a control character (C0 or DEL) anywhere: servers and
 * libraries that decode it see a different URL than the one we judged. */
static bool has_encoded_control(const char *url)
{
    for (const char *p = strchr(url, '%'); p != NULL; p = strchr(p + 1, '%')) {
        if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2]))
            continue;
        char hex[3] = {p[1], p[2], '\0'};
        unsigned long c = strtoul(hex, NULL, 16);
        if (c < 0x20 || c == 0x7f)
            return true;
    }
    return false;
}

/* RFC 3986 6.2.2: decode escapes of unreserved characters and upper-case the
 * hex of the others, in place.  An encoded '/' or '\\' is refused: servers
 * disagree on whether it separates segments, so no prefix rule could be trusted. */
static int normalize_escapes(char *path, struct h5cd_error *err)
{
    static const char hex[] = "0123456789ABCDEF";
    char *w = path;
    for (const char *r = path; *r != '\0'; r++) {
        if (*r == '\\')
            return h5cd_fail(err, H5CD_E_BAD_REQUEST, "URL path contains a backslash");
        if (*r != '%') {
            *w++ = *r;
            continue;
        }
        const char *h1 = strchr(hex, toupper((unsigned char)r[1]));
        const char *h2 = r[1] != '\0' ? strchr(hex, toupper((unsigned char)r[2])) : NULL;
        if (r[1] == '\0' || r[2] == '\0' || h1 == NULL || h2 == NULL)
            return h5cd_fail(err, H5CD_E_BAD_REQUEST, "malformed percent-escape in URL path");
        int c = (int)((h1 - hex) * 16 + (h2 - hex));
        if (c == '/' || c == '\\')
            return h5cd_fail(err, H5CD_E_BAD_REQUEST, "URL path contains an encoded '/' or '\\'");
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            *w++ = (char)c;
        } else {
            *w++ = '%';
            *w++ = *h1;
            *w++ = *h2;
        }
        r += 2;
    }
    *w = '\0';
    return 0;
}

/* RFC 3986 5.2.4: removes "." and ".." segments of an absolute path, in place. */
static void remove_dot_segments(char *path)
{
    char *out = path; /* output so far: path[0 .. out) */
    const char *in = path;
    while (*in != '\0') {
        if (strncmp(in, "/./", 3) == 0) {
            in += 2;
        } else if (strcmp(in, "/.") == 0) {
            in += 1;
            *out++ = '/';
            break;
        } else if (strncmp(in, "/../", 4) == 0 || strcmp(in, "/..") == 0) {
            bool last = in[3] == '\0';
            in += 3;
            while (out > path && *--out != '/')
                ;
            if (last) {
                *out++ = '/';
                break;
            }
        } else {
            do
                *out++ = *in++;
            while (*in != '\0' && *in != '/');
        }
    }
    if (out == path)
        *out++ = '/';
    *out = '\0';
}

/* The form prefixes are compared in: runs of '/' in the path count as one,
 * since many servers (nginx by default) merge them. */
static void comparison_form(const char *identity, char *out, size_t cap)
{
    const char *path = strstr(identity, "://");
    path = path != NULL ? strchr(path + 3, '/') : NULL;
    size_t w = 0;
    for (const char *r = identity; *r != '\0' && w + 1 < cap; r++) {
        if (*r == '?')
            path = NULL; /* stop merging at the query */
        if (path != NULL && r > path && *r == '/' && r[-1] == '/')
            continue;
        out[w++] = *r;
    }
    out[w] = '\0';
}

/* Validates url (syntax only, no prefix lists) and writes its identity. */
static int normalize(const struct urlpolicy *policy, const char *url, char *out, size_t cap,
                     struct h5cd_error *err)
{
    struct parts p = {0};
    int rc = -1;
    size_t len = strlen(url);
    if (len > H5CD_MAX_URL_BYTES)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "URL longer than %d bytes", H5CD_MAX_URL_BYTES);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] < 0x21 || (unsigned char)url[i] == 0x7f)
            return h5cd_fail(err, H5CD_E_BAD_REQUEST,
                             "URL contains a space or a control character");
    if (has_encoded_control(url))
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "URL contains an encoded control character");
    char host[256];
    if (split_url(url, &p, err) < 0)
        goto fail;
    if (urlpolicy_normalize_host(p.host, host, sizeof(host), err) < 0 ||
        normalize_escapes(p.path, err) < 0)
        goto fail;
    remove_dot_segments(p.path);

    bool https = strcasecmp(p.scheme, "https") == 0;
    const char *port = p.port;
    if (port != NULL) {
        unsigned long v = strtoul(port, NULL, 10);
        if (v == 0) {
            h5cd_fail(err, H5CD_E_BAD_REQUEST, "URL port 0 is not allowed");
            goto fail;
        }
        if (v == (https ? 443UL : 80UL))
            port = NULL;
    }
    int n = snprintf(out, cap, "%s://%s%s%s%s", https ? "https" : "http", host,
                     port != NULL ? ":" : "", port != NULL ? port : "", p.path);
    if (n < 0 || (size_t)n >= cap ||
        (p.query != NULL && append_query(policy, p.query, out, (size_t)n, cap) < 0)) {
        h5cd_fail(err, H5CD_E_BAD_REQUEST, "URL identity longer than %zu bytes", cap - 1);
        goto fail;
    }
    rc = 0;
fail:
    parts_free(&p);
    return rc;
}

static bool has_prefix(const struct strlist *l, const char *s)
{
    for (size_t i = 0; i < l->count; i++)
        if (strncmp(s, l->items[i], strlen(l->items[i])) == 0)
            return true;
    return false;
}

int urlpolicy_check(const struct urlpolicy *policy, const char *url, char *identity, size_t idcap,
                    struct h5cd_error *err)
{
    if (policy == NULL || url == NULL || identity == NULL || idcap == 0)
        return h5cd_fail(err, H5CD_E_INTERNAL, "bad arguments");
    identity[0] = '\0';
    if (normalize(policy, url, identity, idcap, err) < 0) {
        identity[0] = '\0';
        return -1;
    }
    char compare[H5CD_MAX_URL_BYTES + 1];
    comparison_form(identity, compare, sizeof(compare));
    if (has_prefix(&policy->deny, compare) ||
        (policy->allow.count > 0 && !has_prefix(&policy->allow, compare))) {
        identity[0] = '\0';
        return h5cd_fail(err, H5CD_E_URL_NOT_ALLOWED, "URL is not allowed by the URL policy");
    }
    return 0;
}

/* ---- addresses ---- */

static bool v4_in(uint32_t a, uint32_t net, unsigned bits)
{
    uint32_t mask = bits == 0 ? 0 : UINT32_MAX << (32 - bits);
    return (a & mask) == net;
}

/* a in host byte order. */
static bool v4_private(uint32_t a)
{
    static const struct {
        uint32_t net;
        unsigned bits;
    } nets[] = {
        {0x00000000, 8},  /* 0/8 "this network" */
        {0x0a000000, 8},  /* 10/8 */
        {0x64400000, 10}, /* 100.64/10 CGNAT */
        {0x7f000000, 8},  /* 127/8 loopback */
        {0xa9fe0000, 16}, /* 169.254/16 link-local (cloud metadata) */
        {0xac100000, 12}, /* 172.16/12 */
        {0xc0000000, 24}, /* 192.0.0/24 IETF protocol assignments */
        {0xc0a80000, 16}, /* 192.168/16 */
        {0xc6120000, 15}, /* 198.18/15 benchmarking */
        {0xe0000000, 4},  /* 224/4 multicast */
        {0xf0000000, 4},  /* 240/4 reserved, includes broadcast */
    };
    for (size_t i = 0; i < sizeof(nets) / sizeof(nets[0]); i++)
        if (v4_in(a, nets[i].net, nets[i].bits))
            return true;
    return false;
}

static uint32_t v4_tail(const unsigned char *b)
{
    return (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
}

/* IPv6 forms that carry an IPv4 address are judged by that address. */
static bool v6_private(const struct in6_addr *a)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};
    static const unsigned char zero[12] = {0};
    const unsigned char *b = a->s6_addr;
    if (IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LOOPBACK(a))
        return true;
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0 ||
        memcmp(b, zero, 12) == 0) /* ::a.b.c.d, IPv4-compatible (deprecated) */
        return v4_private(v4_tail(b));
    if (b[0] == 0x20 && b[1] == 0x02) /* 2002::/16 6to4: the IPv4 address follows */
        return v4_private((uint32_t)b[2] << 24 | (uint32_t)b[3] << 16 | (uint32_t)b[4] << 8 | b[5]);
    return (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0) /* 2001::/32 Teredo */
           || (b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0 &&
               b[5] == 1)                             /* 64:ff9b:1::/48 local NAT64 */
           || (b[0] & 0xfe) == 0xfc                   /* fc00::/7 unique local */
           || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) /* fe80::/10 link-local */
           || (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) /* fec0::/10 site-local (deprecated) */
           || b[0] == 0xff;                           /* ff00::/8 multicast */
}

static bool bits_match(const unsigned char *a, const unsigned char *net, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, net, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (net[whole] & mask);
}

static bool in_networks(const struct urlpolicy *policy, int family, const unsigned char *a)
{
    for (size_t i = 0; i < policy->nnetworks; i++) {
        const struct urlpolicy_network *n = &policy->networks[i];
        if (n->family == family && bits_match(a, n->addr, n->bits))
            return true;
    }
    return false;
}

int urlpolicy_parse_network(const char *text, struct urlpolicy_network *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    if (text == NULL || out == NULL)
        return -1;
    size_t len = strnlen(text, sizeof(buf));
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, text, len + 1);
    char *slash = strchr(buf, '/');
    long bits = -1;
    if (slash != NULL) {
        *slash++ = '\0';
        size_t digits = strspn(slash, "0123456789");
        if (digits == 0 || digits > 3 || slash[digits] != '\0')
            return -1;
        bits = strtol(slash, NULL, 10);
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, buf, out->addr) == 1)
        out->family = AF_INET6;
    else
        return -1;
    long max = out->family == AF_INET ? 32 : 128;
    if (bits < 0)
        bits = max;
    if (bits > max)
        return -1;
    out->bits = (unsigned)bits;
    /* Host bits set usually mean a typo in the length: refuse rather than guess. */
    for (unsigned i = out->bits; i < (unsigned)max; i++)
        if (out->addr[i / 8] & (0x80 >> (i % 8)))
            return -1;
    return 0;
}

bool urlpolicy_addr_allowed(const struct urlpolicy *policy, const struct sockaddr *addr,
                            socklen_t len)
{
    if (policy == NULL || addr == NULL)
        return false;
    bool private;
    bool listed;
    if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        private = v4_private(ntohl(in->sin_addr.s_addr));
        listed = in_networks(policy, AF_INET, (const unsigned char *)&in->sin_addr);
    } else if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        const unsigned char *b = in6->sin6_addr.s6_addr;
        private = v6_private(&in6->sin6_addr);
        listed = in_networks(policy, AF_INET6, b);
        /* An IPv4-mapped address is the IPv4 host: its block applies. */
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (!listed && memcmp(b, mapped, 12) == 0)
            listed = in_networks(policy, AF_INET, b + 12);
    } else {
        return false; /* unix sockets and unknown families never */
    }
    return !private || policy->allow_private || listed;
}

/* ---- Host header ---- */

static bool port_suffix_ok(const char *s)
{
    if (*s == '\0')
        return true;
    if (*s != ':')
        return false;
    size_t n = strlen(++s);
    if (n == 0 || n > 5 || strspn(s, "0123456789") != n)
        return false;
    return strtoul(s, NULL, 10) <= 65535;
}

static bool is_label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* "localhost" or NAME.localhost where NAME is dot-separated labels. */
static bool is_localhost_name(const char *h, size_t len)
{
    static const char suffix[] = "localhost";
    size_t slen = sizeof(suffix) - 1;
    if (len < slen || strncasecmp(h + len - slen, suffix, slen) != 0)
        return false;
    if (len == slen)
        return true;
    if (len == slen + 1 || h[len - slen - 1] != '.')
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len - slen; i++) {
        if (h[i] == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (is_label_char(h[i])) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

bool urlpolicy_host_is_loopback(const char *host)
{
    char buf[H5CD_MAX_HOST_HEADER_BYTES + 1];
    unsigned char addr[sizeof(struct in6_addr)];
    if (host == NULL)
        return false;
    size_t total = strlen(host);
    if (total == 0 || total > H5CD_MAX_HOST_HEADER_BYTES)
        return false;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (close == NULL || !port_suffix_ok(close + 1))
            return false;
        size_t len = (size_t)(close - host - 1);
        memcpy(buf, host + 1, len);
        buf[len] = '\0';
        return inet_pton(AF_INET6, buf, addr) == 1 &&
               IN6_IS_ADDR_LOOPBACK((const struct in6_addr *)addr);
    }
    size_t len = strcspn(host, ":");
    if (len == 0 || !port_suffix_ok(host + len))
        return false;
    if (is_localhost_name(host, len))
        return true;
    memcpy(buf, host, len);
    buf[len] = '\0';
    return inet_pton(AF_INET, buf, addr) == 1 && addr[0] == 127;
}
