/*
 * cmd_admin.c - the commands about the daemon itself rather than a file's
 * data: stats (GET /v1/stats), cache ls / purge (GET and DELETE
 * /v1/cache) and zarr-url (GET /v1/zarr, computed locally when the daemon
 * predates it).  Single-threaded.  It must never purge the whole cache
 * unless --all was given (args.c enforces it; purge checks again).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "h5chunk.h"

#define ZARR_PREFIX "/zarr/v2/"

/* GET target; prints the raw JSON with --json, else hands the document over. */
static int fetch_json(struct h5c_http *h, const char *what, const char *method, const char *target,
                      bool raw_out, json_t **doc)
{
    struct h5c_failure fail;
    char *raw = NULL;
    *doc = NULL;
    if (h5c_http_json(h, method, target, NULL, doc, &raw, 0, &fail) < 0) {
        h5c_report(what, &fail);
        return -1;
    }
    int rc = raw_out ? h5c_print_raw(raw) : 0;
    free(raw);
    if (rc < 0) {
        json_decref(*doc);
        *doc = NULL;
    }
    return rc;
}

/* ---- stats ---- */

static bool is_byte_counter(const char *name)
{
    return strstr(name, "bytes") != NULL;
}

static void print_stats(json_t *doc)
{
    const char *k;
    json_t *v;
    int width = 0;
    char name[128], val[256], human[32];
    json_object_foreach(doc, k, v)
    {
        int len = (int)strlen(k);
        if (len > width && len < (int)sizeof(name))
            width = len;
    }
    json_object_foreach(doc, k, v)
    {
        h5c_sanitize(name, sizeof(name), k);
        if (json_is_integer(v)) {
            json_int_t n = json_integer_value(v);
            if (is_byte_counter(k) && n >= 1024)
                printf("%-*s %lld (%s)\n", width, name, (long long)n,
                       h5c_format_bytes((uint64_t)n, human, sizeof(human)));
            else
                printf("%-*s %lld\n", width, name, (long long)n);
        } else if (json_is_string(v)) {
            printf("%-*s %s\n", width, name, h5c_sanitize(val, sizeof(val), json_string_value(v)));
        } else {
            char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            printf("%-*s %s\n", width, name,
                   h5c_sanitize(val, sizeof(val), text != NULL ? text : "?"));
            free(text);
        }
    }
}

int h5c_cmd_stats(struct h5c_http *h, const struct h5c_args *a)
{
    json_t *doc;
    if (fetch_json(h, "stats", "GET", "/v1/stats", a->json, &doc) < 0)
        return H5C_EXIT_FAIL;
    if (!a->json) {
        if (!json_is_object(doc)) {
            h5c_errorf("stats: the daemon's answer is not a JSON object");
            json_decref(doc);
            return H5C_EXIT_FAIL;
        }
        print_stats(doc);
    }
    json_decref(doc);
    return H5C_EXIT_OK;
}

/* ---- cache ls ---- */

/* The first member of obj among names that exists. */
static json_t *any_of(json_t *obj, const char *const *names)
{
    for (size_t i = 0; names[i] != NULL; i++) {
        json_t *v = json_object_get(obj, names[i]);
        if (v != NULL && !json_is_null(v))
            return v;
    }
    return NULL;
}

/* The list of entries: the document itself, or its first array member
 * ("files", "entries", ...), so that the table survives small changes to
 * the endpoint's shape. */
static json_t *cache_entries(json_t *doc)
{
    static const char *const names[] = {"files", "entries", "urls", "cache", NULL};
    if (json_is_array(doc))
        return doc;
    json_t *v = any_of(doc, names);
    if (json_is_array(v))
        return v;
    const char *k;
    json_object_foreach(doc, k, v)
    {
        if (json_is_array(v))
            return v;
    }
    return NULL;
}

static const char *show_time(json_t *v, char *buf, size_t cap)
{
    if (json_is_integer(v) || json_is_real(v)) {
        double t = json_number_value(v);
        if (t > 1e11)
            t /= 1000.0; /* milliseconds */
        time_t s = (time_t)t;
        struct tm tm;
        if (localtime_r(&s, &tm) != NULL && strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm) > 0)
            return buf;
    }
    if (json_is_string(v))
        return h5c_sanitize(buf, cap, json_string_value(v));
    snprintf(buf, cap, "-");
    return buf;
}

static void print_entry(json_t *e)
{
    static const char *const url_names[] = {"url", NULL};
    static const char *const byte_names[] = {"bytes", "bytes_cached", "cached_bytes", "size", NULL};
    static const char *const hit_names[] = {"hits", "cache_hits", NULL};
    static const char *const time_names[] = {"last_access", "last_access_s", "atime", "last_used",
                                             NULL};
    static const char *const val_names[] = {"validator", "etag", "last_modified", NULL};
    char url[4200], bytes[32], when[64], validator[80], hits[32];
    json_t *b = any_of(e, byte_names), *n = any_of(e, hit_names), *u = any_of(e, url_names);
    json_t *val = any_of(e, val_names);
    if (json_is_integer(b))
        h5c_format_bytes((uint64_t)json_integer_value(b), bytes, sizeof(bytes));
    else
        snprintf(bytes, sizeof(bytes), "-");
    if (json_is_integer(n))
        snprintf(hits, sizeof(hits), "%lld", (long long)json_integer_value(n));
    else
        snprintf(hits, sizeof(hits), "-");
    h5c_sanitize(validator, sizeof(validator), json_is_string(val) ? json_string_value(val) : "-");
    printf("%10s  %8s  %-19s  %-24s  %s\n", bytes, hits,
           show_time(any_of(e, time_names), when, sizeof(when)), validator,
           h5c_sanitize(url, sizeof(url), json_is_string(u) ? json_string_value(u) : "?"));
}

int h5c_cmd_cache_ls(struct h5c_http *h, const struct h5c_args *a)
{
    json_t *doc;
    if (fetch_json(h, "cache ls", "GET", "/v1/cache", a->json && a->url == NULL, &doc) < 0)
        return H5C_EXIT_FAIL;
    int status = H5C_EXIT_OK;
    json_t *entries = cache_entries(doc);
    size_t i;
    json_t *e;
    if (entries == NULL) {
        h5c_errorf("cache ls: the daemon's answer lists no files");
        status = H5C_EXIT_FAIL;
    } else if (a->json && a->url != NULL) {
        /* the one entry asked for, as JSON */
        json_array_foreach(entries, i, e)
        {
            const char *u = json_string_value(json_object_get(e, "url"));
            char *text = u != NULL && strcmp(u, a->url) == 0 ? json_dumps(e, JSON_COMPACT) : NULL;
            if (text != NULL)
                printf("%s\n", text);
            free(text);
        }
    } else if (!a->json) {
        printf("%10s  %8s  %-19s  %-24s  %s\n", "BYTES", "HITS", "LAST ACCESS", "VALIDATOR", "URL");
        json_array_foreach(entries, i, e)
        {
            const char *u = json_string_value(json_object_get(e, "url"));
            if (a->url == NULL || (u != NULL && strcmp(u, a->url) == 0))
                print_entry(e);
        }
    }
    json_decref(doc);
    return status;
}

/* ---- cache purge ---- */

int h5c_cmd_cache_purge(struct h5c_http *h, const struct h5c_args *a)
{
    const char *params[] = {"url", a->url, NULL};
    if (a->url == NULL && !a->all) {
        h5c_errorf("cache purge: give a URL, or --all to empty the whole cache");
        return H5C_EXIT_USAGE;
    }
    char *target = h5c_http_target(h, "/v1/cache", params);
    if (target == NULL) {
        h5c_errorf("cache purge: out of memory");
        return H5C_EXIT_FAIL;
    }
    json_t *doc;
    int rc = fetch_json(h, "cache purge", "DELETE", target, a->json, &doc);
    free(target);
    if (rc < 0)
        return H5C_EXIT_FAIL;
    if (!a->json) {
        /* "purged: blocks=12 bytes=3145728", from whatever counts the daemon reports */
        const char *k;
        json_t *v;
        char name[64], url[4200];
        printf("purged %s",
               a->url != NULL ? h5c_sanitize(url, sizeof(url), a->url) : "the whole cache");
        json_object_foreach(doc, k, v)
        {
            if (json_is_integer(v))
                printf(" %s=%lld", h5c_sanitize(name, sizeof(name), k),
                       (long long)json_integer_value(v));
        }
        printf("\n");
    }
    json_decref(doc);
    return H5C_EXIT_OK;
}

/* ---- zarr-url ---- */

/* The base computed here: "/zarr/v2/" + base64url(URL) + "/". */
static char *local_zarr_base(const char *url)
{
    size_t len = strlen(url);
    size_t cap = sizeof(ZARR_PREFIX) + h5c_base64url_len(len) + 2;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    memcpy(out, ZARR_PREFIX, sizeof(ZARR_PREFIX) - 1);
    char *id = out + sizeof(ZARR_PREFIX) - 1;
    if (h5c_base64url((const uint8_t *)url, len, id, cap - (sizeof(ZARR_PREFIX) - 1)) < 0) {
        free(out);
        return NULL;
    }
    size_t n = strlen(out);
    out[n] = '/';
    out[n + 1] = '\0';
    return out;
}

static bool base_valid(const char *base)
{
    if (strncmp(base, ZARR_PREFIX, sizeof(ZARR_PREFIX) - 1) != 0)
        return false;
    for (const char *p = base; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return false;
    return true;
}

int h5c_cmd_zarr_url(struct h5c_http *h, const struct h5c_args *a)
{
    const char *params[] = {"url", a->url, NULL};
    struct h5c_failure fail;
    json_t *doc = NULL;
    char *base = NULL, *raw = NULL;
    int status = H5C_EXIT_FAIL;
    char *target = h5c_http_target(h, "/v1/zarr", params);
    if (target == NULL) {
        h5c_errorf("zarr-url: out of memory");
        return H5C_EXIT_FAIL;
    }
    if (h5c_http_json(h, "GET", target, NULL, &doc, &raw, 0, &fail) >= 0) {
        const char *b = json_string_value(json_object_get(doc, "base"));
        if (b == NULL || !base_valid(b)) {
            h5c_errorf("zarr-url: the daemon's answer has no valid \"base\"");
            goto done;
        }
        base = strdup(b);
    } else if (fail.status == 404 &&
               (fail.code[0] == '\0' || strstr(fail.message, "no such endpoint") != NULL)) {
        /* a daemon without /v1/zarr: the id is defined by the API, compute it */
        base = local_zarr_base(a->url);
    } else {
        h5c_report("zarr-url", &fail);
        goto done;
    }
    if (base == NULL) {
        h5c_errorf("zarr-url: out of memory");
        goto done;
    }
    if (a->json) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "url", a->url, "base", base, "zarr_url", "");
        char *full = NULL;
        size_t n = strlen(h5c_http_base(h)) + strlen(base) + 1;
        if (o != NULL && (full = malloc(n)) != NULL) {
            snprintf(full, n, "%s%s", h5c_http_base(h), base);
            json_object_set_new(o, "zarr_url", json_string(full));
        }
        char *text = o != NULL && full != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        if (text != NULL)
            printf("%s\n", text);
        free(text);
        free(full);
        json_decref(o);
        if (text == NULL)
            goto done;
    } else {
        printf("%s%s\n", h5c_http_base(h), base);
    }
    status = H5C_EXIT_OK;
done:
    json_decref(doc);
    free(raw);
    free(base);
    free(target);
    return status;
}
