/*
 * resolve.c - names to fetchable URLs, redirects resolved once, and the
 * memory of what upstream accepted (see resolve.h).
 *
 * Owns two bounded tables under one mutex: resolutions keyed by (name,
 * token) and public identities.  Keys hold secrets (signed URLs, tokens):
 * they are compared, never printed, and wiped when dropped.  Upstream
 * requests (lib/httpget.c) run on the calling client thread with no lock
 * held.
 */
#include "resolve.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httpget.h"
#include "log.h"
#include "presign.h"
#include "urlforms.h"

#define TOKEN_HEADER_BYTES (RESOLVE_MAX_TOKEN_BYTES + 32)

struct memo {
    char *key; /* resolutions: name "\n" token; public: identity */
    char *url; /* resolutions: the URL to fetch */
    bool credentialed;
    time_t expires;
};

struct table {
    struct memo items[RESOLVE_MAX_ENTRIES];
    size_t count;
};

struct settings {
    struct settings *older; /* replaced generations: requests may still read them */
    struct urlforms_s3 s3;
    char *s3_endpoint, *s3_region;
    char *dandi_api;
    struct strlist instances;   /* NAME=URL */
    struct strlist apis;        /* every API base: dandi_api, instances, built-ins */
    struct strlist cred_params; /* strip_query_params */
    unsigned resolve_ttl_s, access_ttl_s;
    unsigned connect_timeout_ms, timeout_ms;
    char *user_agent;
};

struct resolve {
    pthread_mutex_t lock;
    struct settings *set; /* replaced whole on reconfigure; old ones kept until free */
    struct credstore *creds;
    struct h5cd_stats *stats;
    struct table resolved;
    struct table public;
    struct table redirects; /* public identity -> where its URL redirected */
};

/* ---- settings ---- */

static void list_free(struct strlist *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static int list_push(struct strlist *l, const char *s)
{
    char **bigger = realloc(l->items, (l->count + 1) * sizeof(*bigger));
    if (bigger == NULL)
        return -1;
    l->items = bigger;
    l->items[l->count] = strdup(s);
    if (l->items[l->count] == NULL)
        return -1;
    l->count++;
    return 0;
}

static void settings_free(struct settings *s)
{
    if (s == NULL)
        return;
    free(s->s3_endpoint);
    free(s->s3_region);
    free(s->dandi_api);
    free(s->user_agent);
    list_free(&s->instances);
    list_free(&s->apis);
    list_free(&s->cred_params);
    free(s);
}

static struct settings *settings_new(const struct h5cd_config *cfg, char *err, size_t errlen)
{
    struct settings *s = calloc(1, sizeof(*s));
    char base[URLFORMS_MAX_API_BYTES + 1];
    struct h5cd_error e = {0};
    if (s == NULL)
        return NULL;
    s->s3_endpoint = strdup(cfg->s3_endpoint);
    s->s3_region = strdup(cfg->s3_region);
    s->dandi_api = strdup(cfg->dandi_api);
    s->user_agent = strdup(cfg->user_agent);
    if (s->s3_endpoint == NULL || s->s3_region == NULL || s->dandi_api == NULL ||
        s->user_agent == NULL)
        goto nomem;
    s->s3 = (struct urlforms_s3){.endpoint = s->s3_endpoint,
                                 .region = s->s3_region,
                                 .path_style = strcmp(cfg->s3_addressing, "path") == 0};
    for (size_t i = 0; i < cfg->dandi_instances.count; i++)
        if (list_push(&s->instances, cfg->dandi_instances.items[i]) < 0)
            goto nomem;
    for (size_t i = 0; i < cfg->strip_query_params.count; i++)
        if (list_push(&s->cred_params, cfg->strip_query_params.items[i]) < 0)
            goto nomem;
    /* Every base a token may go to: the default instance, the configured ones, the sandbox. */
    if (urlforms_dandi_api(s->dandi_api, &s->instances, "dandi", base, sizeof(base), &e) < 0)
        goto bad;
    if (list_push(&s->apis, base) < 0)
        goto nomem;
    for (size_t i = 0; i < s->instances.count; i++) {
        const char *eq = strchr(s->instances.items[i], '=');
        char name[URLFORMS_MAX_INSTANCE_BYTES + 1];
        if (eq == NULL || eq == s->instances.items[i] ||
            (size_t)(eq - s->instances.items[i]) > URLFORMS_MAX_INSTANCE_BYTES) {
            h5cd_errf(err, errlen, "dandi_instances: items are NAME=URL");
            settings_free(s);
            return NULL;
        }
        snprintf(name, sizeof(name), "%.*s", (int)(eq - s->instances.items[i]),
                 s->instances.items[i]);
        if (urlforms_dandi_api(s->dandi_api, &s->instances, name, base, sizeof(base), &e) < 0)
            goto bad;
        if (list_push(&s->apis, base) < 0)
            goto nomem;
    }
    if (urlforms_dandi_api(s->dandi_api, &s->instances, "dandi-sandbox", base, sizeof(base), &e) <
            0 ||
        list_push(&s->apis, base) < 0)
        goto nomem;
    s->resolve_ttl_s = cfg->resolve_ttl_s;
    s->access_ttl_s = cfg->access_ttl_s;
    s->connect_timeout_ms = cfg->upstream_connect_timeout_ms;
    s->timeout_ms = cfg->upstream_timeout_ms;
    return s;
bad:
    h5cd_errf(err, errlen, "%s", e.message);
    settings_free(s);
    return NULL;
nomem:
    h5cd_errf(err, errlen, "out of memory");
    settings_free(s);
    return NULL;
}

/* ---- tables ---- */

static void memo_clear(struct memo *m)
{
    if (m->key != NULL) {
        explicit_bzero(m->key, strlen(m->key));
        free(m->key);
    }
    if (m->url != NULL) {
        explicit_bzero(m->url, strlen(m->url));
        free(m->url);
    }
    memset(m, 0, sizeof(*m));
}

static void table_clear(struct table *t)
{
    for (size_t i = 0; i < t->count; i++)
        memo_clear(&t->items[i]);
    t->count = 0;
}

static void table_drop(struct table *t, size_t i)
{
    memo_clear(&t->items[i]);
    t->items[i] = t->items[--t->count];
    memset(&t->items[t->count], 0, sizeof(t->items[0]));
}

/* Caller holds the lock.  Expired entries are dropped on the way. */
static struct memo *table_find(struct table *t, const char *key, time_t now)
{
    for (size_t i = 0; i < t->count;) {
        if (t->items[i].expires <= now) {
            table_drop(t, i);
            continue;
        }
        if (strcmp(t->items[i].key, key) == 0)
            return &t->items[i];
        i++;
    }
    return NULL;
}

/* Caller holds the lock. */
static void table_drop_key(struct table *t, const char *key, time_t now)
{
    struct memo *m = table_find(t, key, now);
    if (m != NULL)
        table_drop(t, (size_t)(m - t->items));
}

/* Caller holds the lock.  A full table gives up the entry that expires first. */
static void table_put(struct table *t, const char *key, const char *url, bool credentialed,
                      time_t expires, time_t now)
{
    struct memo *m = table_find(t, key, now);
    if (m == NULL) {
        if (t->count == RESOLVE_MAX_ENTRIES) {
            size_t soonest = 0;
            for (size_t i = 1; i < t->count; i++)
                if (t->items[i].expires < t->items[soonest].expires)
                    soonest = i;
            table_drop(t, soonest);
        }
        m = &t->items[t->count];
        m->key = strdup(key);
        if (m->key == NULL)
            return;
        t->count++;
    }
    free(m->url);
    m->url = url != NULL ? strdup(url) : NULL;
    if (url != NULL && m->url == NULL) {
        table_drop(t, (size_t)(m - t->items));
        return;
    }
    m->credentialed = credentialed;
    m->expires = expires;
}

/* ---- life cycle ---- */

struct resolve *resolve_new(const struct h5cd_config *cfg, struct credstore *creds,
                            struct h5cd_stats *stats, char *err, size_t errlen)
{
    struct resolve *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        h5cd_errf(err, errlen, "out of memory");
        return NULL;
    }
    r->set = settings_new(cfg, err, errlen);
    if (r->set == NULL || pthread_mutex_init(&r->lock, NULL) != 0) {
        settings_free(r->set);
        free(r);
        return NULL;
    }
    r->creds = creds;
    r->stats = stats;
    return r;
}

void resolve_free(struct resolve *r)
{
    if (r == NULL)
        return;
    table_clear(&r->resolved);
    table_clear(&r->public);
    table_clear(&r->redirects);
    while (r->set != NULL) {
        struct settings *older = r->set->older;
        settings_free(r->set);
        r->set = older;
    }
    pthread_mutex_destroy(&r->lock);
    free(r);
}

int resolve_reconfigure(struct resolve *r, const struct h5cd_config *cfg, char *err, size_t errlen)
{
    struct settings *s = settings_new(cfg, err, errlen);
    if (s == NULL)
        return -1;
    pthread_mutex_lock(&r->lock);
    /* Requests under way may still read the old settings: they stay until resolve_free
     * (a few hundred bytes per SIGHUP that changed these options). */
    s->older = r->set;
    r->set = s;
    table_clear(&r->resolved);
    table_clear(&r->public);
    table_clear(&r->redirects);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static struct settings *current(struct resolve *r)
{
    pthread_mutex_lock(&r->lock);
    struct settings *s = r->set;
    pthread_mutex_unlock(&r->lock);
    return s;
}

int resolve_token_ok(const char *token, struct h5cd_error *err)
{
    size_t len = token != NULL ? strlen(token) : 0;
    if (len == 0 || len > RESOLVE_MAX_TOKEN_BYTES)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "X-DANDI-Token must be 1 to %d bytes",
                         RESOLVE_MAX_TOKEN_BYTES);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)token[i] <= 0x20 || (unsigned char)token[i] >= 0x7f)
            return h5cd_fail(err, H5CD_E_BAD_REQUEST,
                             "X-DANDI-Token must be printable ASCII without blanks");
    return 0;
}

/* ---- upstream requests ---- */

/* True when url lies under one of the DANDI API bases (at a '/' boundary). */
static bool under_api(const struct settings *s, const char *url)
{
    for (size_t i = 0; i < s->apis.count; i++) {
        size_t n = strlen(s->apis.items[i]);
        if (strncasecmp(url, s->apis.items[i], n) == 0 && (url[n] == '/' || url[n] == '\0'))
            return true;
    }
    return false;
}

struct hop_headers {
    struct credentials *creds;
    const char *lines[HTTPGET_MAX_HEADERS];
    size_t n;
    char token_line[TOKEN_HEADER_BYTES];
};

/* The headers for one request to url: the credentials file's, and the client's
 * token as DANDI expects it when url is the DANDI API's. */
static void headers_for(struct resolve *r, const struct settings *s, const char *url,
                        const char *token, struct hop_headers *h)
{
    h->n = credentials_headers(h->creds, url, h->lines, HTTPGET_MAX_HEADERS - 1);
    if (token != NULL && under_api(s, url)) {
        snprintf(h->token_line, sizeof(h->token_line), "Authorization: token %s", token);
        /* The client's own token replaces an Authorization from the file. */
        for (size_t i = 0; i < h->n; i++)
            if (strncasecmp(h->lines[i], "Authorization:", 14) == 0)
                h->lines[i] = h->lines[--h->n];
        h->lines[h->n++] = h->token_line;
    }
    (void)r;
}

static int status_error(long status, struct h5cd_error *err)
{
    if (status == 401 || status == 403)
        return h5cd_fail(err, H5CD_E_UPSTREAM_DENIED,
                         "upstream refused access (HTTP %ld): the URL, its signature or the "
                         "token is not accepted",
                         status);
    if (status == 404 || status == 410)
        return h5cd_fail(err, H5CD_E_NOT_FOUND, "upstream has no such file (HTTP %ld)", status);
    return h5cd_fail(err, H5CD_E_UPSTREAM_ERROR, "upstream answered HTTP %ld", status);
}

static int run(struct resolve *r, const struct settings *s, const struct urlpolicy *policy,
               const char *url, const char *token, bool first_byte, size_t max_body,
               struct httpget_response *res, struct h5cd_error *err)
{
    struct hop_headers h = {.creds = credstore_get(r->creds)};
    char identity[H5CD_MAX_URL_BYTES + 1];
    if (urlpolicy_check(policy, url, identity, sizeof(identity), err) < 0) {
        credentials_release(h.creds);
        memset(res, 0, sizeof(*res));
        return -1;
    }
    headers_for(r, s, url, token, &h);
    struct httpget_request req = {.url = url,
                                  .headers = h.lines,
                                  .nheaders = h.n,
                                  .first_byte = first_byte,
                                  .max_body = max_body,
                                  .connect_timeout_ms = s->connect_timeout_ms,
                                  .timeout_ms = s->timeout_ms,
                                  .user_agent = s->user_agent,
                                  .policy = policy};
    int rc = httpget_run(&req, res);
    explicit_bzero(h.token_line, sizeof(h.token_line));
    credentials_release(h.creds);
    if (r->stats != NULL)
        STATS_INC(r->stats, upstream_requests);
    if (rc < 0)
        return h5cd_fail(err,
                         res->policy_refused ? H5CD_E_URL_NOT_ALLOWED
                         : res->timed_out    ? H5CD_E_UPSTREAM_TIMEOUT
                                             : H5CD_E_UPSTREAM_ERROR,
                         "%s", res->error);
    return 0;
}

/* Follows url's redirects with one-byte GETs until a 2xx; writes the final URL. */
static int follow(struct resolve *r, const struct settings *s, const struct urlpolicy *policy,
                  const char *url, const char *token, char *final, size_t cap,
                  struct h5cd_error *err)
{
    char hop[H5CD_MAX_URL_BYTES + 1];
    snprintf(hop, sizeof(hop), "%s", url);
    for (int hops = 0; hops <= H5CD_MAX_REDIRECTS; hops++) {
        struct httpget_response res;
        int rc = run(r, s, policy, hop, token, true, 0, &res, err);
        long status = res.status;
        if (rc == 0 && status >= 300 && status < 400 && status != 304) {
            if (res.location[0] == '\0') {
                httpget_response_free(&res);
                return h5cd_fail(err, H5CD_E_UPSTREAM_ERROR, "redirect without a Location");
            }
            snprintf(hop, sizeof(hop), "%s", res.location);
            httpget_response_free(&res);
            continue;
        }
        httpget_response_free(&res);
        if (rc < 0)
            return -1;
        if (status != 200 && status != 206 && status != 416)
            return status_error(status, err);
        if (strlen(hop) >= cap)
            return h5cd_fail(err, H5CD_E_UPSTREAM_ERROR, "final URL too long");
        memcpy(final, hop, strlen(hop) + 1);
        return 0;
    }
    return h5cd_fail(err, H5CD_E_UPSTREAM_ERROR, "more than %d redirects", H5CD_MAX_REDIRECTS);
}

/* Looks up a dandi:// path in the asset listing; writes the download URL. */
static int dandi_path(struct resolve *r, const struct settings *s, const struct urlpolicy *policy,
                      const struct urlform *form, const char *token, char *out, size_t cap,
                      struct h5cd_error *err)
{
    char api[URLFORMS_MAX_API_BYTES + 1];
    char page[H5CD_MAX_URL_BYTES + 1];
    char next[H5CD_MAX_URL_BYTES + 1];
    char asset_id[URLFORMS_ASSET_ID_BYTES + 1];
    if (urlforms_dandi_api(s->dandi_api, &s->instances, form->instance, api, sizeof(api), err) <
            0 ||
        urlforms_dandi_assets_url(api, form, page, sizeof(page), err) < 0)
        return -1;
    for (int n = 0; n < URLFORMS_MAX_ASSET_PAGES; n++) {
        struct httpget_response res;
        if (run(r, s, policy, page, token, false, RESOLVE_MAX_JSON_BYTES, &res, err) < 0) {
            httpget_response_free(&res);
            return -1;
        }
        if (res.status != 200) {
            long status = res.status;
            httpget_response_free(&res);
            if (status == 404)
                return h5cd_fail(err, H5CD_E_NOT_FOUND, "no such Dandiset or version");
            return status_error(status, err);
        }
        int found = urlforms_dandi_find_asset(res.body != NULL ? res.body : "", res.body_len,
                                              form->path, asset_id, next, sizeof(next), err);
        httpget_response_free(&res);
        if (found < 0)
            return -1;
        if (found == 1)
            return urlforms_dandi_download_url(api, asset_id, out, cap, err);
        if (next[0] == '\0')
            break;
        /* A next link must stay on the same API: the token goes with it. */
        size_t alen = strlen(api);
        if (strncmp(next, api, alen) != 0 || next[alen] != '/')
            return h5cd_fail(err, H5CD_E_UPSTREAM_ERROR, "DANDI API paginated to another server");
        memcpy(page, next, strlen(next) + 1);
    }
    return h5cd_fail(err, H5CD_E_NOT_FOUND, "no asset with that path in the Dandiset version");
}

/* Turns a form into an http(s) URL (s3 at once; DANDI through the API). */
static int to_http(struct resolve *r, const struct settings *s, const struct urlpolicy *policy,
                   const char *name, const char *token, char *out, size_t cap,
                   struct h5cd_error *err)
{
    struct urlform form;
    char api[URLFORMS_MAX_API_BYTES + 1];
    if (urlforms_parse(name, &form, err) < 0)
        return -1;
    switch (form.kind) {
    case URLFORM_HTTP:
        if (strlen(name) >= cap)
            return h5cd_fail(err, H5CD_E_BAD_REQUEST, "URL too long");
        memcpy(out, name, strlen(name) + 1);
        return 0;
    case URLFORM_S3:
        return urlforms_s3_url(&s->s3, form.bucket, form.path, out, cap, err);
    case URLFORM_DANDI_ASSET:
        if (urlforms_dandi_api(s->dandi_api, &s->instances, form.instance, api, sizeof(api), err) <
            0)
            return -1;
        return urlforms_dandi_download_url(api, form.asset_id, out, cap, err);
    case URLFORM_DANDI_PATH:
        return dandi_path(r, s, policy, &form, token, out, cap, err);
    }
    return h5cd_fail(err, H5CD_E_INTERNAL, "unknown URL form");
}

bool resolve_url_has_credentials(struct resolve *r, const char *url)
{
    struct settings *s = current(r);
    if (presign_has_credentials(url, &s->cred_params))
        return true;
    struct credentials *c = credstore_get(r->creds);
    const char *lines[1];
    size_t n = credentials_headers(c, url, lines, 1);
    credentials_release(c);
    return n > 0;
}

static char *memo_key(const char *name, const char *token)
{
    size_t nlen = strlen(name), tlen = token != NULL ? strlen(token) : 0;
    char *key = malloc(nlen + tlen + 2);
    if (key == NULL)
        return NULL;
    memcpy(key, name, nlen);
    key[nlen] = '\n';
    memcpy(key + nlen + 1, token != NULL ? token : "", tlen + 1);
    return key;
}

static void wipe_key(char *key)
{
    if (key != NULL) {
        explicit_bzero(key, strlen(key));
        free(key);
    }
}

/* When a resolution of (name -> final) must be redone. */
static time_t expiry_of(const struct settings *s, const char *name, const char *final,
                        bool credentialed, time_t now)
{
    time_t until = now + (time_t)s->resolve_ttl_s;
    if (credentialed && now + (time_t)s->access_ttl_s < until)
        until = now + (time_t)s->access_ttl_s;
    const char *urls[2] = {name, final};
    for (int i = 0; i < 2; i++) {
        time_t t;
        int found = presign_expiry(urls[i], &t);
        if (found < 0)
            return now; /* a malformed expiry: never remembered */
        if (found == 1 && t - RESOLVE_EXPIRY_MARGIN_S < until)
            until = t - RESOLVE_EXPIRY_MARGIN_S;
    }
    return until;
}

int resolve_name(struct resolve *r, const struct urlpolicy *policy, const char *name,
                 const char *token, bool refresh, struct resolve_result *out,
                 struct h5cd_error *err)
{
    memset(out, 0, sizeof(*out));
    if (token != NULL && resolve_token_ok(token, err) < 0)
        return -1;
    struct settings *s = current(r);
    time_t now = time(NULL);
    char *key = memo_key(name, token);
    if (key == NULL)
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    if (!refresh) {
        pthread_mutex_lock(&r->lock);
        struct memo *m = table_find(&r->resolved, key, now);
        if (m != NULL) {
            snprintf(out->url, sizeof(out->url), "%s", m->url);
            out->credentialed = m->credentialed;
            out->checked = m->url != NULL;
            out->remembered = true;
            out->expires = m->expires;
        }
        pthread_mutex_unlock(&r->lock);
        if (m != NULL) {
            wipe_key(key);
            return 0;
        }
    }
    char http[H5CD_MAX_URL_BYTES + 1];
    int rc = to_http(r, s, policy, name, token, http, sizeof(http), err);
    if (rc < 0)
        goto done;
    bool credentialed = token != NULL || resolve_url_has_credentials(r, http);
    bool lookup = strncasecmp(name, "dandi://", 8) == 0;
    if (!credentialed && !under_api(s, http)) {
        /* A public URL: fetched as it is, judged by resolve_check_public. */
        snprintf(out->url, sizeof(out->url), "%s", http);
        if (lookup) {
            out->expires = now + (time_t)s->resolve_ttl_s;
            pthread_mutex_lock(&r->lock);
            table_put(&r->resolved, key, http, false, out->expires, now);
            pthread_mutex_unlock(&r->lock);
        }
        goto done;
    }
    rc = follow(r, s, policy, http, token, out->url, sizeof(out->url), err);
    if (rc < 0)
        goto done;
    if (r->stats != NULL)
        STATS_INC(r->stats, resolutions);
    out->credentialed = credentialed || resolve_url_has_credentials(r, out->url);
    out->checked = true;
    out->expires = expiry_of(s, name, out->url, out->credentialed, now);
    if (out->expires > now) {
        pthread_mutex_lock(&r->lock);
        table_put(&r->resolved, key, out->url, out->credentialed, out->expires, now);
        pthread_mutex_unlock(&r->lock);
    }
done:
    wipe_key(key);
    return rc;
}

void resolve_forget_all(struct resolve *r)
{
    pthread_mutex_lock(&r->lock);
    table_clear(&r->resolved);
    table_clear(&r->redirects);
    pthread_mutex_unlock(&r->lock);
}

void resolve_forget(struct resolve *r, const char *name, const char *token)
{
    char *key = memo_key(name, token);
    if (key == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    struct memo *m = table_find(&r->resolved, key, time(NULL));
    if (m != NULL)
        table_drop(&r->resolved, (size_t)(m - r->resolved.items));
    pthread_mutex_unlock(&r->lock);
    wipe_key(key);
}

void resolve_mark_public(struct resolve *r, const char *identity)
{
    struct settings *s = current(r);
    time_t now = time(NULL);
    pthread_mutex_lock(&r->lock);
    table_put(&r->public, identity, NULL, false, now + (time_t)s->access_ttl_s, now);
    pthread_mutex_unlock(&r->lock);
}

int resolve_check_public(struct resolve *r, const struct urlpolicy *policy, const char *url,
                         const char *identity, struct h5cd_error *err)
{
    struct settings *s = current(r);
    pthread_mutex_lock(&r->lock);
    bool known = table_find(&r->public, identity, time(NULL)) != NULL;
    pthread_mutex_unlock(&r->lock);
    if (known)
        return 0;
    char final[H5CD_MAX_URL_BYTES + 1];
    if (r->stats != NULL)
        STATS_INC(r->stats, access_checks);
    if (follow(r, s, policy, url, NULL, final, sizeof(final), err) < 0)
        return -1;
    resolve_mark_public(r, identity);
    return 0;
}

void resolve_note_redirect(struct resolve *r, const char *identity, const char *final_url)
{
    struct settings *s = current(r);
    time_t now = time(NULL);
    bool credentialed = resolve_url_has_credentials(r, final_url);
    time_t until = expiry_of(s, final_url, final_url, credentialed, now);
    pthread_mutex_lock(&r->lock);
    if (until > now)
        table_put(&r->redirects, identity, final_url, credentialed, until, now);
    else
        table_drop_key(&r->redirects, identity, now);
    pthread_mutex_unlock(&r->lock);
}

bool resolve_redirect_target(struct resolve *r, const char *identity, char *out, size_t cap)
{
    pthread_mutex_lock(&r->lock);
    struct memo *m = table_find(&r->redirects, identity, time(NULL));
    bool found = m != NULL && m->url != NULL && strlen(m->url) < cap;
    if (found)
        memcpy(out, m->url, strlen(m->url) + 1);
    pthread_mutex_unlock(&r->lock);
    return found;
}

void resolve_forget_redirect(struct resolve *r, const char *identity)
{
    pthread_mutex_lock(&r->lock);
    table_drop_key(&r->redirects, identity, time(NULL));
    pthread_mutex_unlock(&r->lock);
}

unsigned resolve_access_ttl(struct resolve *r)
{
    return current(r)->access_ttl_s;
}
