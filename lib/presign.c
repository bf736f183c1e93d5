/*
 * presign.c - reads the credentials and expiry a presigned URL carries in
 * its query string (see presign.h).  Values are matched by exact parameter
 * name; every number is parsed with bounds.  Any thread.
 */
#include "presign.h"

#include <stddef.h>
#include <string.h>

#define MAX_DIGITS 12 /* seconds fit comfortably; more is hostile */

/* Calls fn for each name=value of url's query (fragment excluded); stops when fn returns true. */
typedef bool (*param_fn)(const char *name, size_t nlen, const char *value, size_t vlen, void *arg);

static void each_param(const char *url, param_fn fn, void *arg)
{
    size_t before = strcspn(url, "?#");
    if (url[before] != '?')
        return; /* no query, or a '?' only inside the fragment */
    const char *q = url + before;
    const char *end = q + 1 + strcspn(q + 1, "#");
    for (const char *p = q + 1; p < end;) {
        size_t len = strcspn(p, "&#");
        if (p + len > end)
            len = (size_t)(end - p);
        const char *eq = memchr(p, '=', len);
        size_t nlen = eq != NULL ? (size_t)(eq - p) : len;
        const char *value = eq != NULL ? eq + 1 : p + len;
        size_t vlen = eq != NULL ? len - nlen - 1 : 0;
        if (nlen > 0 && fn(p, nlen, value, vlen, arg))
            return;
        p += len;
        if (p < end && *p == '&')
            p++;
    }
}

struct has_ctx {
    const struct strlist *params;
    bool found;
};

static bool has_one(const char *name, size_t nlen, const char *value, size_t vlen, void *arg)
{
    (void)value;
    (void)vlen;
    struct has_ctx *ctx = arg;
    for (size_t i = 0; i < ctx->params->count; i++) {
        const char *p = ctx->params->items[i];
        if (strlen(p) == nlen && memcmp(p, name, nlen) == 0) {
            ctx->found = true;
            return true;
        }
    }
    return false;
}

bool presign_has_credentials(const char *url, const struct strlist *params)
{
    struct has_ctx ctx = {.params = params, .found = false};
    if (url == NULL || params == NULL)
        return false;
    each_param(url, has_one, &ctx);
    return ctx.found;
}

static bool read_number(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > MAX_DIGITS)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), Howard Hinnant's civil algorithm. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool digits_at(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}

int presign_parse_amz_date(const char *t, size_t len, time_t *out)
{
    static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned y, mo, d, h, mi, s;
    if (len != 16 || t[8] != 'T' || t[15] != 'Z' || !digits_at(t, 4, &y) ||
        !digits_at(t + 4, 2, &mo) || !digits_at(t + 6, 2, &d) || !digits_at(t + 9, 2, &h) ||
        !digits_at(t + 11, 2, &mi) || !digits_at(t + 13, 2, &s))
        return -1;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) ||
        h > 23 || mi > 59 || s > 60 || y < 1970)
        return -1;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
    *out = (time_t)secs;
    return 0;
}

struct expiry_ctx {
    const char *date, *expires, *goog_date, *goog_expires, *absolute;
    size_t date_len, expires_len, goog_date_len, goog_expires_len, absolute_len;
    int dup; /* a parameter seen twice: ambiguous, refuse */
};

static bool note(const char *name, size_t nlen, const char *want, const char *value, size_t vlen,
                 const char **slot, size_t *slot_len, int *dup)
{
    if (strlen(want) != nlen || memcmp(name, want, nlen) != 0)
        return false;
    if (*slot != NULL)
        (*dup)++;
    *slot = value;
    *slot_len = vlen;
    return true;
}

static bool collect(const char *name, size_t nlen, const char *value, size_t vlen, void *arg)
{
    struct expiry_ctx *c = arg;
    if (!note(name, nlen, "X-Amz-Date", value, vlen, &c->date, &c->date_len, &c->dup) &&
        !note(name, nlen, "X-Amz-Expires", value, vlen, &c->expires, &c->expires_len, &c->dup) &&
        !note(name, nlen, "X-Goog-Date", value, vlen, &c->goog_date, &c->goog_date_len, &c->dup) &&
        !note(name, nlen, "X-Goog-Expires", value, vlen, &c->goog_expires, &c->goog_expires_len,
              &c->dup))
        note(name, nlen, "Expires", value, vlen, &c->absolute, &c->absolute_len, &c->dup);
    return false;
}

static int relative_expiry(const char *date, size_t dlen, const char *exp, size_t elen, time_t *out)
{
    time_t start;
    uint64_t secs;
    if (date == NULL || exp == NULL || presign_parse_amz_date(date, dlen, &start) < 0 ||
        !read_number(exp, elen, &secs) || secs > PRESIGN_MAX_EXPIRES_S)
        return -1;
    *out = start + (time_t)secs;
    return 1;
}

int presign_expiry(const char *url, time_t *expires)
{
    struct expiry_ctx c = {0};
    if (url == NULL)
        return 0;
    each_param(url, collect, &c);
    if (c.dup > 0)
        return -1;
    int found = 0;
    time_t best = 0;
    if (c.date != NULL || c.expires != NULL) {
        if (relative_expiry(c.date, c.date_len, c.expires, c.expires_len, &best) < 0)
            return -1;
        found = 1;
    }
    if (c.goog_date != NULL || c.goog_expires != NULL) {
        time_t t;
        if (relative_expiry(c.goog_date, c.goog_date_len, c.goog_expires, c.goog_expires_len, &t) <
            0)
            return -1;
        best = found && best < t ? best : t;
        found = 1;
    }
    if (c.absolute != NULL) {
        uint64_t secs;
        if (!read_number(c.absolute, c.absolute_len, &secs))
            return -1;
        best = found && best < (time_t)secs ? best : (time_t)secs;
        found = 1;
    }
    if (found)
        *expires = best;
    return found;
}
