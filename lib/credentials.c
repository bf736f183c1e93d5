/*
 * credentials.c - the upstream credentials file (see credentials.h):
 * loading with ownership and mode checks, parsing, matching URLs to
 * headers, and the swappable current set.
 *
 * Loading runs on the main thread; matching on any thread (a set is
 * immutable once built).  Header values never reach a log line or an
 * error message, and are wiped before their memory is freed.
 */
#include "credentials.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"

#define PREFIX_BIAS 1024 /* any prefix rule outranks any host rule (hosts are <= 253) */

struct rule {
    char *match;     /* prefix, or host name (lower-cased) */
    bool is_prefix;  /* has "://" */
    size_t name_len; /* length of the header name in header */
    char *header;    /* "Name: value" */
};

struct credentials {
    _Atomic unsigned refs;
    size_t nrules;
    struct rule rules[];
};

struct credstore {
    pthread_mutex_t lock;
    struct credentials *current;
};

static void wipe_free(char *s)
{
    if (s == NULL)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

static void creds_free(struct credentials *c)
{
    for (size_t i = 0; i < c->nrules; i++) {
        free(c->rules[i].match);
        wipe_free(c->rules[i].header);
    }
    free(c);
}

struct credentials *credentials_retain(struct credentials *c)
{
    if (c != NULL)
        atomic_fetch_add(&c->refs, 1);
    return c;
}

void credentials_release(struct credentials *c)
{
    if (c != NULL && atomic_fetch_sub(&c->refs, 1) == 1)
        creds_free(c);
}

size_t credentials_count(const struct credentials *c)
{
    return c != NULL ? c->nrules : 0;
}

/* ---- parsing ---- */

static bool is_tchar(unsigned char c)
{
    return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Headers the fetcher sets itself or that change how the exchange works. */
static bool header_reserved(const char *name, size_t len)
{
    static const char *const reserved[] = {"host",
                                           "range",
                                           "content-length",
                                           "connection",
                                           "te",
                                           "transfer-encoding",
                                           "upgrade",
                                           "expect",
                                           "if-range",
                                           "if-match",
                                           "if-none-match",
                                           "user-agent"};
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (strlen(reserved[i]) == len && strncasecmp(reserved[i], name, len) == 0)
            return true;
    return false;
}

/* The authority's end: the first '/', '?' or '#' after "://", or the end. */
static const char *authority_end(const char *url)
{
    const char *s = strstr(url, "://");
    if (s == NULL)
        return NULL;
    return s + 3 + strcspn(s + 3, "/?#");
}

static bool host_name_ok(const char *h, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '[' && c != ']' && c != ':')
            return false;
    }
    return true;
}

static int parse_match(const char *name, unsigned line, const char *m, size_t len, struct rule *r,
                       char *err, size_t errlen)
{
    r->match = strndup(m, len);
    if (r->match == NULL)
        return h5cd_errf(err, errlen, "%s:%u: out of memory", name, line);
    r->is_prefix = strstr(r->match, "://") != NULL;
    if (r->is_prefix) {
        const char *aend = authority_end(r->match);
        bool http =
            strncasecmp(r->match, "http://", 7) == 0 || strncasecmp(r->match, "https://", 8) == 0;
        if (!http || aend == NULL || *aend != '/' || aend == strstr(r->match, "://") + 3)
            return h5cd_errf(err, errlen,
                             "%s:%u: a prefix is http(s)://HOST/... (with the '/' after the host)",
                             name, line);
        for (char *p = r->match; p < aend; p++)
            *p = (char)tolower((unsigned char)*p);
        return 0;
    }
    if (!host_name_ok(r->match, len))
        return h5cd_errf(err, errlen, "%s:%u: not a URL prefix nor a host name", name, line);
    for (char *p = r->match; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    return 0;
}

static int parse_header(const char *name, unsigned line, const char *h, size_t len, struct rule *r,
                        char *err, size_t errlen)
{
    size_t nlen = 0;
    while (nlen < len && is_tchar((unsigned char)h[nlen]))
        nlen++;
    if (nlen == 0 || nlen >= len || h[nlen] != ':')
        return h5cd_errf(err, errlen, "%s:%u: expected MATCH followed by 'Name: value'", name,
                         line);
    if (header_reserved(h, nlen))
        return h5cd_errf(err, errlen, "%s:%u: header %.*s is set by h5chunkd itself", name, line,
                         (int)nlen, h);
    const char *v = h + nlen + 1;
    const char *vend = h + len;
    while (v < vend && (*v == ' ' || *v == '\t'))
        v++;
    while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
        vend--;
    if (v == vend)
        return h5cd_errf(err, errlen, "%s:%u: header %.*s has no value", name, line, (int)nlen, h);
    for (const char *p = v; p < vend; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t')
            return h5cd_errf(err, errlen, "%s:%u: header value has a control character", name,
                             line);
        else if ((unsigned char)*p >= 0x7f)
            return h5cd_errf(err, errlen, "%s:%u: header value must be ASCII", name, line);
    size_t total = nlen + 2 + (size_t)(vend - v);
    if (total > CREDENTIALS_MAX_HEADER_BYTES)
        return h5cd_errf(err, errlen, "%s:%u: header longer than %d bytes", name, line,
                         CREDENTIALS_MAX_HEADER_BYTES);
    r->header = malloc(total + 1);
    if (r->header == NULL)
        return h5cd_errf(err, errlen, "%s:%u: out of memory", name, line);
    memcpy(r->header, h, nlen);
    memcpy(r->header + nlen, ": ", 2);
    memcpy(r->header + nlen + 2, v, (size_t)(vend - v));
    r->header[total] = '\0';
    r->name_len = nlen;
    return 0;
}

/* Parses one non-blank, non-comment line into r. */
static int parse_line(const char *name, unsigned line, const char *s, size_t len, struct rule *r,
                      char *err, size_t errlen)
{
    size_t mlen = 0;
    while (mlen < len && s[mlen] != ' ' && s[mlen] != '\t')
        mlen++;
    size_t rest = mlen;
    while (rest < len && (s[rest] == ' ' || s[rest] == '\t'))
        rest++;
    if (rest == len)
        return h5cd_errf(err, errlen, "%s:%u: expected MATCH followed by 'Name: value'", name,
                         line);
    if (parse_match(name, line, s, mlen, r, err, errlen) < 0)
        return -1;
    return parse_header(name, line, s + rest, len - rest, r, err, errlen);
}

int credentials_parse(const char *name, const char *text, size_t len, struct credentials **out,
                      char *err, size_t errlen)
{
    *out = NULL;
    if (len > CREDENTIALS_MAX_FILE_BYTES)
        return h5cd_errf(err, errlen, "%s: larger than %d bytes", name, CREDENTIALS_MAX_FILE_BYTES);
    struct credentials *c = calloc(1, sizeof(*c) + CREDENTIALS_MAX_RULES * sizeof(c->rules[0]));
    if (c == NULL)
        return h5cd_errf(err, errlen, "%s: out of memory", name);
    atomic_init(&c->refs, 1);
    unsigned line = 0;
    for (size_t pos = 0; pos < len;) {
        line++;
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t llen = nl != NULL ? (size_t)(nl - s) : len - pos;
        pos += llen + (nl != NULL);
        if (llen > 0 && s[llen - 1] == '\r')
            llen--;
        if (memchr(s, '\0', llen) != NULL) {
            h5cd_errf(err, errlen, "%s:%u: NUL byte", name, line);
            goto fail;
        }
        while (llen > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            llen--;
        }
        while (llen > 0 && (s[llen - 1] == ' ' || s[llen - 1] == '\t'))
            llen--;
        if (llen == 0 || *s == '#')
            continue;
        if (c->nrules == CREDENTIALS_MAX_RULES) {
            h5cd_errf(err, errlen, "%s:%u: more than %d rules", name, line, CREDENTIALS_MAX_RULES);
            goto fail;
        }
        struct rule *r = &c->rules[c->nrules++];
        if (parse_line(name, line, s, llen, r, err, errlen) < 0)
            goto fail;
    }
    *out = c;
    return 0;
fail:
    creds_free(c);
    return -1;
}

int credentials_load(const char *path, struct credentials **out, char *err, size_t errlen)
{
    *out = NULL;
    if (path == NULL || path[0] == '\0')
        return credentials_parse("credentials", "", 0, out, err, errlen);
    char *buf = NULL;
    int rc = -1;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
    if (fd < 0)
        return h5cd_errf(err, errlen, "credentials_file %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        h5cd_errf(err, errlen, "credentials_file %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        h5cd_errf(err, errlen, "credentials_file %s: not a regular file", path);
        goto done;
    }
    /* root may own it: systemd's LoadCredential= hands files over that way. */
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        h5cd_errf(err, errlen,
                  "credentials_file %s: owned by uid %u, not by the daemon's user or root", path,
                  (unsigned)st.st_uid);
        goto done;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        h5cd_errf(err, errlen,
                  "credentials_file %s: group or others may access it (mode %04o); chmod 600 it",
                  path, (unsigned)(st.st_mode & 07777));
        goto done;
    }
    if (st.st_size > CREDENTIALS_MAX_FILE_BYTES) {
        h5cd_errf(err, errlen, "credentials_file %s: larger than %d bytes", path,
                  CREDENTIALS_MAX_FILE_BYTES);
        goto done;
    }
    buf = malloc(CREDENTIALS_MAX_FILE_BYTES + 1);
    if (buf == NULL) {
        h5cd_errf(err, errlen, "credentials_file %s: out of memory", path);
        goto done;
    }
    size_t used = 0;
    while (used <= CREDENTIALS_MAX_FILE_BYTES) {
        ssize_t n = read(fd, buf + used, CREDENTIALS_MAX_FILE_BYTES + 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            h5cd_errf(err, errlen, "credentials_file %s: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    char name[128];
    snprintf(name, sizeof(name), "credentials_file %.100s", path);
    rc = credentials_parse(name, buf, used, out, err, errlen);
done:
    if (buf != NULL) {
        explicit_bzero(buf, CREDENTIALS_MAX_FILE_BYTES + 1);
        free(buf);
    }
    close(fd);
    return rc;
}

/* ---- matching ---- */

/* 0 when the rule does not apply; else a strength (longer and prefix is stronger). */
static size_t rule_strength(const struct rule *r, const char *url, const char *aend)
{
    if (r->is_prefix) {
        const char *rend = authority_end(r->match);
        size_t alen = (size_t)(aend - url), ralen = (size_t)(rend - r->match);
        size_t plen = strlen(rend);
        if (alen != ralen || strncasecmp(url, r->match, alen) != 0 ||
            strncmp(aend, rend, plen) != 0)
            return 0;
        char next = aend[plen];
        if (rend[plen - 1] != '/' && next != '\0' && next != '/' && next != '?' && next != '#')
            return 0;
        return PREFIX_BIAS + ralen + plen;
    }
    if (strncasecmp(url, "https://", 8) != 0)
        return 0;
    const char *host = url + 8;
    size_t hlen = (size_t)(aend - host);
    const char *at = memchr(host, '@', hlen);
    if (at != NULL) {
        hlen -= (size_t)(at + 1 - host);
        host = at + 1;
    }
    /* Drop a port (not inside an IPv6 literal's brackets). */
    const char *colon = NULL;
    for (size_t i = hlen; i-- > 0;) {
        if (host[i] == ']')
            break;
        if (host[i] == ':') {
            colon = host + i;
            break;
        }
    }
    if (colon != NULL)
        hlen = (size_t)(colon - host);
    if (hlen > 0 && host[hlen - 1] == '.')
        hlen--; /* a trailing dot names the same host */
    if (strlen(r->match) != hlen || strncasecmp(host, r->match, hlen) != 0)
        return 0;
    return 1 + hlen;
}

size_t credentials_headers(const struct credentials *c, const char *url, const char **headers,
                           size_t max)
{
    size_t strength[CREDENTIALS_MAX_MATCHED];
    const struct rule *chosen[CREDENTIALS_MAX_MATCHED];
    size_t n = 0;
    const char *aend = url != NULL ? authority_end(url) : NULL;
    if (c == NULL || aend == NULL)
        return 0;
    if (max > CREDENTIALS_MAX_MATCHED)
        max = CREDENTIALS_MAX_MATCHED;
    for (size_t i = 0; i < c->nrules; i++) {
        const struct rule *r = &c->rules[i];
        size_t s = rule_strength(r, url, aend);
        if (s == 0)
            continue;
        size_t k = 0;
        while (k < n && !(chosen[k]->name_len == r->name_len &&
                          strncasecmp(chosen[k]->header, r->header, r->name_len) == 0))
            k++;
        if (k < n) {
            if (s > strength[k]) { /* same header from a more specific rule */
                chosen[k] = r;
                strength[k] = s;
            }
            continue;
        }
        if (n == max)
            continue;
        chosen[n] = r;
        strength[n++] = s;
    }
    for (size_t k = 0; k < n; k++)
        headers[k] = chosen[k]->header;
    return n;
}

/* ---- the current set ---- */

struct credstore *credstore_new(struct credentials *initial)
{
    struct credstore *s = calloc(1, sizeof(*s));
    if (s == NULL || pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        credentials_release(initial);
        return NULL;
    }
    s->current = initial;
    return s;
}

void credstore_free(struct credstore *s)
{
    if (s == NULL)
        return;
    credentials_release(s->current);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void credstore_set(struct credstore *s, struct credentials *creds)
{
    pthread_mutex_lock(&s->lock);
    struct credentials *old = s->current;
    s->current = creds;
    pthread_mutex_unlock(&s->lock);
    credentials_release(old);
}

struct credentials *credstore_get(struct credstore *s)
{
    if (s == NULL)
        return NULL;
    pthread_mutex_lock(&s->lock);
    struct credentials *c = credentials_retain(s->current);
    pthread_mutex_unlock(&s->lock);
    return c;
}
