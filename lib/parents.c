/*
 * parents.c - routing block-range fetches through site caches, with a
 * circuit breaker per site cache.  See parents.h.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "h5cd_limits.h"
#include "parents.h"

enum parent_state { PARENT_UP, PARENT_DOWN };

struct parent {
    char *base; /* without a trailing slash */
    uint64_t hash;
    enum parent_state state;
    uint64_t down_until_ms;
    unsigned backoff_ms;
    unsigned fails_in_row;
    bool trial_inflight;
    /* Counters since start. */
    uint64_t requests;
    uint64_t bytes;
    uint64_t failures;
    uint64_t timeouts;
    uint64_t not_served;
    uint64_t refreshes;
    uint64_t trips;
};

struct stale_file {
    uint64_t key;
    uint64_t until_ms;
};

struct parents {
    pthread_mutex_t lock;
    struct parent list[PARENTS_MAX];
    size_t count;
    uint64_t slice;
    unsigned retry_ms;
    unsigned retry_max_ms;
    struct stale_file stale[PARENTS_STALE_SLOTS];
    size_t stale_next; /* the slot the next stale file overwrites */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int fail_msg(char *msg, size_t msglen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_msg(char *msg, size_t msglen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (msg != NULL && msglen > 0)
        vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* FNV-1a over `len` bytes, then a finalizer that spreads every bit. */
static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3u;
    }
    return h;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    x ^= x >> 31;
    return x;
}

/* ---- configuration ---- */

/* Characters a parent URL may hold: they are echoed in JSON and in logs as is. */
static bool safe_url_chars(const char *url)
{
    for (const char *p = url; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '?' || c == '#')
            return false;
    }
    return true;
}

int parents_check_url(const char *url, char *msg, size_t msglen)
{
    if (url == NULL || strlen(url) > H5CD_MAX_URL_BYTES / 4)
        return fail_msg(msg, msglen, "a parent URL must be at most %d bytes",
                        H5CD_MAX_URL_BYTES / 4);
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return fail_msg(msg, msglen, "parent \"%.80s\" must start with http:// or https://", url);
    if (!safe_url_chars(url))
        return fail_msg(msg, msglen,
                        "parent \"%.80s\" must not hold spaces, quotes, a query or a fragment",
                        url);
    CURLU *h = curl_url();
    if (h == NULL)
        return -ENOMEM;
    char *user = NULL;
    CURLUcode rc = curl_url_set(h, CURLUPART_URL, url, 0);
    bool has_user = rc == CURLUE_OK && curl_url_get(h, CURLUPART_USER, &user, 0) == CURLUE_OK;
    curl_free(user);
    curl_url_cleanup(h);
    if (rc != CURLUE_OK)
        return fail_msg(msg, msglen, "parent \"%.80s\" is not a URL", url);
    if (has_user)
        return fail_msg(msg, msglen, "parent \"%.80s\" must not hold credentials", url);
    return 0;
}

static int add_parent(struct parents *p, const char *url, char *msg, size_t msglen)
{
    int rc = parents_check_url(url, msg, msglen);
    if (rc < 0)
        return rc;
    size_t len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    for (size_t i = 0; i < p->count; i++)
        if (strlen(p->list[i].base) == len && strncmp(p->list[i].base, url, len) == 0)
            return fail_msg(msg, msglen, "parent \"%.80s\" is named twice", url);
    struct parent *parent = &p->list[p->count];
    parent->base = strndup(url, len);
    if (parent->base == NULL)
        return -ENOMEM;
    parent->hash = mix64(hash_bytes(parent->base, len));
    parent->backoff_ms = p->retry_ms;
    p->count++;
    return 0;
}

int parents_new(const struct parents_config *cfg, struct parents **out, char *msg, size_t msglen)
{
    if (cfg->count == 0 || cfg->count > PARENTS_MAX)
        return fail_msg(msg, msglen, "between 1 and %d parents may be named", PARENTS_MAX);
    if (cfg->slice == 0 || (cfg->slice & (cfg->slice - 1)) != 0)
        return fail_msg(msg, msglen, "the parent slice size must be a power of two");
    if (cfg->retry_ms == 0 || cfg->retry_max_ms < cfg->retry_ms)
        return fail_msg(msg, msglen, "parent retry times must be positive and ordered");
    struct parents *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    p->slice = cfg->slice;
    p->retry_ms = cfg->retry_ms;
    p->retry_max_ms = cfg->retry_max_ms;
    for (size_t i = 0; i < cfg->count; i++) {
        int rc = add_parent(p, cfg->urls[i], msg, msglen);
        if (rc < 0) {
            parents_free(p);
            return rc;
        }
    }
    *out = p;
    return 0;
}

void parents_free(struct parents *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->count; i++)
        free(p->list[i].base);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* ---- routing ---- */

static bool stale_known_locked(struct parents *p, uint64_t key, uint64_t now)
{
    for (size_t i = 0; i < PARENTS_STALE_SLOTS; i++)
        if (p->stale[i].key == key && p->stale[i].until_ms > now)
            return true;
    return false;
}

static void stale_forget_locked(struct parents *p, uint64_t key)
{
    for (size_t i = 0; i < PARENTS_STALE_SLOTS; i++)
        if (p->stale[i].key == key)
            p->stale[i].until_ms = 0;
}

static void stale_remember_locked(struct parents *p, uint64_t key)
{
    uint64_t now = now_ms();
    if (stale_known_locked(p, key, now))
        return;
    p->stale[p->stale_next] =
        (struct stale_file){.key = key, .until_ms = now + PARENTS_STALE_TTL_MS};
    p->stale_next = (p->stale_next + 1) % PARENTS_STALE_SLOTS;
}

/* The file part of a URL: everything before its query or fragment. */
static uint64_t file_key(const char *url)
{
    return mix64(hash_bytes(url, strcspn(url, "?#")));
}

void parents_route_begin(struct parents *p, struct parents_route *route, const char *origin_url,
                         uint64_t offset)
{
    memset(route, 0, sizeof(*route));
    route->current = -1;
    route->key = file_key(origin_url);
    uint64_t slot = mix64(route->key ^ mix64(offset / p->slice + 1));
    uint64_t weight[PARENTS_MAX];
    for (size_t i = 0; i < p->count; i++) {
        weight[i] = mix64(slot ^ p->list[i].hash);
        size_t at = route->count++;
        while (at > 0 && weight[route->order[at - 1]] < weight[i]) {
            route->order[at] = route->order[at - 1];
            at--;
        }
        route->order[at] = (uint8_t)i;
    }
    pthread_mutex_lock(&p->lock);
    route->refresh = route->refreshed = stale_known_locked(p, route->key, now_ms());
    pthread_mutex_unlock(&p->lock);
}

/* Whether a parent may take a request now; claims its trial when one is due. */
static bool usable_locked(struct parent *parent, uint64_t now, bool *trial)
{
    *trial = false;
    if (parent->state == PARENT_UP)
        return true;
    if (parent->trial_inflight || now < parent->down_until_ms)
        return false;
    parent->trial_inflight = true;
    *trial = true;
    return true;
}

/* base + "/" + scheme + "/" + host[:port] + path[?query], or NULL. */
static char *wire_url(const char *base, const char *origin_url)
{
    CURLU *h = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *user = NULL;
    char *out = NULL;
    if (h == NULL || curl_url_set(h, CURLUPART_URL, origin_url, 0) != CURLUE_OK)
        goto done;
    if (curl_url_get(h, CURLUPART_USER, &user, 0) == CURLUE_OK)
        goto done; /* credentials in the URL are not for a site cache */
    if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) ||
        curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        goto done;
    for (char *c = host; *c != '\0'; c++)
        *c = (char)tolower((unsigned char)*c);   /* the site cache allows lower-case names */
    curl_url_get(h, CURLUPART_PORT, &port, 0);   /* only when the URL names one */
    curl_url_get(h, CURLUPART_QUERY, &query, 0); /* absent is fine */
    size_t cap = strlen(base) + strlen(scheme) + strlen(host) + strlen(path) + 16 +
                 (port != NULL ? strlen(port) : 0) + (query != NULL ? strlen(query) : 0);
    out = malloc(cap);
    if (out != NULL)
        snprintf(out, cap, "%s/%s/%s%s%s%s%s%s", base, scheme, host, port != NULL ? ":" : "",
                 port != NULL ? port : "", path, query != NULL ? "?" : "",
                 query != NULL ? query : "");
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(user);
    curl_url_cleanup(h);
    return out;
}

char *parents_route_next(struct parents *p, struct parents_route *route, const char *origin_url)
{
    route->current = -1;
    route->trial = false;
    if (route->origin_only)
        return NULL;
    uint64_t now = now_ms();
    pthread_mutex_lock(&p->lock);
    int chosen = -1;
    while (chosen < 0 && route->next < route->count) {
        int i = route->order[route->next++];
        if (usable_locked(&p->list[i], now, &route->trial))
            chosen = i;
    }
    char *url = chosen >= 0 ? wire_url(p->list[chosen].base, origin_url) : NULL;
    if (url == NULL && chosen >= 0) {
        if (route->trial)
            p->list[chosen].trial_inflight = false;
        route->trial = false;
        route->origin_only = true; /* no parent can carry this URL */
        chosen = -1;
    }
    if (chosen >= 0)
        p->list[chosen].requests++;
    pthread_mutex_unlock(&p->lock);
    route->current = chosen;
    return url;
}

/* Marks a parent down: its next trial waits backoff_ms, doubled after a failed trial. */
static void trip_locked(struct parents *p, struct parent *parent, bool failed_trial)
{
    if (failed_trial) {
        unsigned doubled = parent->backoff_ms * 2u;
        parent->backoff_ms =
            doubled > p->retry_max_ms || doubled < parent->backoff_ms ? p->retry_max_ms : doubled;
    } else if (parent->state == PARENT_UP) {
        parent->backoff_ms = p->retry_ms;
        parent->trips++;
    }
    parent->state = PARENT_DOWN;
    parent->down_until_ms = now_ms() + parent->backoff_ms;
}

static void report_locked(struct parents *p, struct parent *parent, bool trial,
                          enum parents_outcome outcome, uint64_t bytes)
{
    if (trial)
        parent->trial_inflight = false;
    switch (outcome) {
    case PARENTS_SERVED:
        parent->bytes += bytes;
        parent->fails_in_row = 0;
        parent->state = PARENT_UP;
        parent->backoff_ms = p->retry_ms;
        break;
    case PARENTS_TIMEOUT:
        parent->timeouts++;
        /* fallthrough */
    case PARENTS_UNREACHABLE:
    case PARENTS_FAILED:
        parent->failures++;
        parent->fails_in_row++;
        if (trial || outcome != PARENTS_FAILED || parent->fails_in_row >= PARENTS_FAILS_TO_TRIP)
            trip_locked(p, parent, trial);
        break;
    case PARENTS_NOT_SERVED:
        parent->not_served++;
        break;
    case PARENTS_ABANDONED:
        break;
    }
}

void parents_report(struct parents *p, struct parents_route *route, enum parents_outcome outcome,
                    uint64_t bytes)
{
    if (route->current < 0 || (size_t)route->current >= p->count)
        return;
    pthread_mutex_lock(&p->lock);
    report_locked(p, &p->list[route->current], route->trial, outcome, bytes);
    if (outcome == PARENTS_SERVED && route->refresh)
        stale_forget_locked(p, route->key);
    pthread_mutex_unlock(&p->lock);
    route->trial = false;
    route->current = -1;
}

bool parents_stale(struct parents *p, struct parents_route *route)
{
    int current = route->current;
    if (current < 0 || (size_t)current >= p->count)
        return false;
    pthread_mutex_lock(&p->lock);
    stale_remember_locked(p, route->key);
    bool again = !route->refreshed;
    if (again)
        p->list[current].refreshes++;
    report_locked(p, &p->list[current], route->trial, PARENTS_ABANDONED, 0);
    pthread_mutex_unlock(&p->lock);
    route->trial = false;
    if (again) {
        route->refresh = route->refreshed = true;
        route->next--; /* the same parent once more */
    } else {
        route->origin_only = true;
    }
    route->current = -1;
    return again;
}

/* ---- slices ---- */

static size_t pieces_of(const struct coalesce_range *r, uint64_t slice)
{
    if (r->length == 0)
        return 1;
    return (size_t)((r->offset + r->length - 1) / slice - r->offset / slice + 1);
}

int parents_split_plan(struct coalesce_plan *plan, uint64_t slice)
{
    size_t total = 0;
    for (size_t i = 0; i < plan->nfetches; i++)
        total += pieces_of(&plan->fetches[i], slice);
    if (total == plan->nfetches)
        return 0;
    struct coalesce_range *out = malloc(total * sizeof(*out));
    if (out == NULL)
        return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < plan->nfetches; i++) {
        uint64_t at = plan->fetches[i].offset;
        uint64_t end = at + plan->fetches[i].length;
        do {
            uint64_t cut = (at / slice + 1) * slice;
            uint64_t stop = cut < end ? cut : end;
            out[n++] = (struct coalesce_range){.offset = at, .length = stop - at};
            at = stop;
        } while (at < end && n < total);
    }
    free(plan->fetches);
    plan->fetches = out;
    plan->nfetches = n;
    return 0;
}

/* ---- counters ---- */

struct strbuf {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
};

static void sb_printf(struct strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(struct strbuf *sb, const char *fmt, ...)
{
    for (int round = 0; round < 2 && !sb->failed; round++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(sb->data + sb->len, sb->cap - sb->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            sb->failed = true;
        } else if ((size_t)n < sb->cap - sb->len) {
            sb->len += (size_t)n;
            return;
        } else {
            size_t cap = (sb->len + (size_t)n + 1) * 2;
            char *bigger = realloc(sb->data, cap);
            if (bigger == NULL)
                sb->failed = true;
            else {
                sb->data = bigger;
                sb->cap = cap;
            }
        }
    }
}

static char *sb_finish(struct strbuf *sb)
{
    if (sb->failed) {
        free(sb->data);
        return NULL;
    }
    return sb->data;
}

static const char *state_name(const struct parent *parent, uint64_t now)
{
    if (parent->state == PARENT_UP)
        return "up";
    return parent->trial_inflight || now >= parent->down_until_ms ? "trial" : "down";
}

static bool sb_init(struct strbuf *sb)
{
    *sb = (struct strbuf){.data = malloc(256), .cap = 256};
    if (sb->data == NULL)
        return false;
    sb->data[0] = '\0';
    return true;
}

json_t *parents_stats_json(struct parents *p)
{
    json_t *list = json_array();
    uint64_t now = now_ms();
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; list != NULL && i < p->count; i++) {
        const struct parent *q = &p->list[i];
        uint64_t retry_in =
            q->state == PARENT_DOWN && q->down_until_ms > now ? q->down_until_ms - now : 0;
        json_t *one = json_pack(
            "{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "url", q->base, "state",
            state_name(q, now), "requests", (json_int_t)q->requests, "bytes", (json_int_t)q->bytes,
            "failures", (json_int_t)q->failures, "timeouts", (json_int_t)q->timeouts, "not_served",
            (json_int_t)q->not_served, "refreshes", (json_int_t)q->refreshes, "trips",
            (json_int_t)q->trips, "retry_in_ms", (json_int_t)retry_in);
        if (one == NULL || json_array_append_new(list, one) < 0) {
            json_decref(list);
            list = NULL;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return list;
}

char *parents_render_prometheus(struct parents *p)
{
    static const char *const names[] = {"requests", "bytes", "failures", "timeouts", "up"};
    static const char *const helps[] = {
        "requests sent to the site cache", "payload bytes received from the site cache",
        "requests the site cache failed", "requests to the site cache that timed out",
        "1 when the site cache is taking requests"};
    struct strbuf sb;
    if (!sb_init(&sb))
        return NULL;
    pthread_mutex_lock(&p->lock);
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        sb_printf(&sb, "# HELP h5chunkd_parent_%s %s\n# TYPE h5chunkd_parent_%s %s\n", names[k],
                  helps[k], names[k], k == 4 ? "gauge" : "counter");
        for (size_t i = 0; i < p->count; i++) {
            const struct parent *q = &p->list[i];
            uint64_t v[] = {q->requests, q->bytes, q->failures, q->timeouts, q->state == PARENT_UP};
            sb_printf(&sb, "h5chunkd_parent_%s{parent=\"%s\"} %" PRIu64 "\n", names[k], q->base,
                      v[k]);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return sb_finish(&sb);
}
