/*
 * urlforms.c - s3://, dandi:// and dandiasset: names parsed and turned
 * into http(s) URLs, and the DANDI API's asset listings read.
 *
 * Pure functions over bounded strings (see urlforms.h); the JSON of the
 * DANDI API is read with jansson with a size bound.  Any thread.
 */
#include "urlforms.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_LISTING_BYTES (4 * H5CD_MIB) /* one page of an asset listing */

static const char builtin_sandbox[] = "https://api.sandbox.dandiarchive.org/api";

bool urlforms_is_form(const char *text)
{
    return text != NULL &&
           (strncasecmp(text, "s3://", 5) == 0 || strncasecmp(text, "dandi://", 8) == 0 ||
            strncasecmp(text, "dandiasset:", 11) == 0);
}

static bool is_unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

int urlforms_encode(const char *src, bool keep_slash, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p != '\0'; p++) {
        bool plain = is_unreserved(*p) || (keep_slash && *p == '/');
        if (w + (plain ? 1 : 3) >= cap)
            return -1;
        if (plain) {
            out[w++] = (char)*p;
        } else {
            out[w++] = '%';
            out[w++] = hex[*p >> 4];
            out[w++] = hex[*p & 15];
        }
    }
    if (w >= cap)
        return -1;
    out[w] = '\0';
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes src[0..len) into out; refuses NUL and control bytes. */
static int decode(const char *src, size_t len, char *out, size_t cap, struct h5cd_error *err)
{
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)src[i];
        if (c == '%') {
            if (i + 2 >= len)
                return h5cd_fail(err, H5CD_E_BAD_REQUEST, "malformed percent-escape");
            int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0)
                return h5cd_fail(err, H5CD_E_BAD_REQUEST, "malformed percent-escape");
            c = hi * 16 + lo;
            i += 2;
        }
        if (c < 0x20 || c == 0x7f)
            return h5cd_fail(err, H5CD_E_BAD_REQUEST, "name contains a control character");
        if (w + 1 >= cap)
            return h5cd_fail(err, H5CD_E_BAD_REQUEST, "name too long");
        out[w++] = (char)c;
    }
    out[w] = '\0';
    return 0;
}

/* S3 bucket names: 3-63 of [a-z0-9.-], starting and ending alphanumeric. */
static bool bucket_ok(const char *b, size_t len)
{
    if (len < 3 || len > URLFORMS_MAX_BUCKET_BYTES)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = b[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && c != '.' && c != '-')
            return false;
        if ((i == 0 || i == len - 1) && !alnum)
            return false;
        if (c == '.' && i > 0 && b[i - 1] == '.')
            return false;
    }
    return true;
}

/* A path of '/'-separated segments with no empty, "." or ".." segment:
 * URL normalisation would rewrite those, so another object would be read. */
static bool segments_ok(const char *path)
{
    if (path[0] == '\0' || path[0] == '/')
        return false;
    for (const char *p = path; *p != '\0';) {
        size_t len = strcspn(p, "/");
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += len;
        if (*p == '/') {
            p++;
            if (*p == '\0')
                return false; /* a trailing '/' names a folder, not a file */
        }
    }
    return true;
}

static int parse_s3(const char *rest, struct urlform *out, struct h5cd_error *err)
{
    size_t blen = strcspn(rest, "/");
    if (!bucket_ok(rest, blen))
        return h5cd_fail(err, H5CD_E_BAD_REQUEST,
                         "s3:// URL: bucket must be 3-63 of a-z, 0-9, '.' and '-'");
    memcpy(out->bucket, rest, blen);
    out->bucket[blen] = '\0';
    if (rest[blen] != '/')
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "s3:// URL has no key");
    const char *key = rest + blen + 1;
    if (strpbrk(key, "?#") != NULL)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "s3:// URL: encode '?' and '#' in the key");
    if (decode(key, strlen(key), out->path, sizeof(out->path), err) < 0)
        return -1;
    if (!segments_ok(out->path))
        return h5cd_fail(err, H5CD_E_BAD_REQUEST,
                         "s3:// URL: key has an empty, '.' or '..' segment or ends in '/'");
    out->kind = URLFORM_S3;
    return 0;
}

static bool uuid_ok(const char *s, size_t len)
{
    if (len != URLFORMS_ASSET_ID_BYTES)
        return false;
    for (size_t i = 0; i < len; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

static int take_asset_id(const char *s, struct urlform *out, struct h5cd_error *err)
{
    size_t len = strlen(s);
    if (len > 0 && s[len - 1] == '/')
        len--;
    if (!uuid_ok(s, len))
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "a DANDI asset id is a UUID");
    for (size_t i = 0; i < len; i++)
        out->asset_id[i] = (char)tolower((unsigned char)s[i]);
    out->asset_id[len] = '\0';
    out->kind = URLFORM_DANDI_ASSET;
    return 0;
}

/* dandi-cli's versions: "draft" or N.N.N (published). */
static bool version_ok(const char *v, size_t len)
{
    if (len == 5 && memcmp(v, "draft", 5) == 0)
        return true;
    int dots = 0;
    size_t digits = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '.') {
            if (digits == 0)
                return false;
            dots++;
            digits = 0;
        } else if (v[i] >= '0' && v[i] <= '9') {
            digits++;
        } else {
            return false;
        }
    }
    return dots == 2 && digits > 0 && len <= URLFORMS_MAX_VERSION_BYTES;
}

static int parse_dandi(const char *rest, struct urlform *out, struct h5cd_error *err)
{
    size_t ilen = strcspn(rest, "/");
    if (ilen == 0 || ilen > URLFORMS_MAX_INSTANCE_BYTES)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "dandi:// URL: bad instance name");
    for (size_t i = 0; i < ilen; i++) {
        unsigned char c = (unsigned char)rest[i];
        if (!isalnum(c) && c != '-' && c != '_' && c != '.')
            return h5cd_fail(err, H5CD_E_BAD_REQUEST, "dandi:// URL: bad instance name");
        out->instance[i] = (char)tolower(c);
    }
    out->instance[ilen] = '\0';
    if (rest[ilen] != '/')
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "dandi:// URL names no Dandiset");
    const char *p = rest + ilen + 1;
    if (strncmp(p, "assets/", 7) == 0)
        return take_asset_id(p + 7, out, err);
    size_t dlen = strspn(p, "0123456789");
    if (dlen != 6)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "dandi:// URL: a Dandiset id is six digits");
    memcpy(out->dandiset, p, 6);
    out->dandiset[6] = '\0';
    p += 6;
    snprintf(out->version, sizeof(out->version), "draft");
    if (*p == '@') {
        size_t vlen = strcspn(++p, "/");
        if (!version_ok(p, vlen))
            return h5cd_fail(err, H5CD_E_BAD_REQUEST,
                             "dandi:// URL: a version is 'draft' or N.N.N");
        memcpy(out->version, p, vlen);
        out->version[vlen] = '\0';
        p += vlen;
    }
    if (*p != '/' || p[1] == '\0')
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "dandi:// URL names no asset path");
    p++;
    if (strpbrk(p, "?#") != NULL)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "dandi:// URL: encode '?' and '#' in the path");
    if (decode(p, strlen(p), out->path, sizeof(out->path), err) < 0)
        return -1;
    if (!segments_ok(out->path))
        return h5cd_fail(err, H5CD_E_BAD_REQUEST,
                         "dandi:// URL: path has an empty, '.' or '..' segment or ends in '/'");
    out->kind = URLFORM_DANDI_PATH;
    return 0;
}

int urlforms_parse(const char *text, struct urlform *out, struct h5cd_error *err)
{
    memset(out, 0, sizeof(*out));
    out->kind = URLFORM_HTTP;
    if (text == NULL)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "no URL");
    if (strlen(text) > H5CD_MAX_URL_BYTES)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "URL longer than %d bytes", H5CD_MAX_URL_BYTES);
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++)
        if (*p <= 0x20 || *p == 0x7f)
            return h5cd_fail(err, H5CD_E_BAD_REQUEST,
                             "URL contains a space or a control character");
    if (strncasecmp(text, "s3://", 5) == 0)
        return parse_s3(text + 5, out, err);
    if (strncasecmp(text, "dandi://", 8) == 0)
        return parse_dandi(text + 8, out, err);
    if (strncasecmp(text, "dandiasset:", 11) == 0) {
        snprintf(out->instance, sizeof(out->instance), "dandi");
        return take_asset_id(text + 11, out, err);
    }
    return 0;
}

/* Splits "scheme://host[:port][/]" into its scheme and authority. */
static int split_endpoint(const char *endpoint, bool *https, const char **host, size_t *hostlen)
{
    const char *rest;
    if (strncasecmp(endpoint, "https://", 8) == 0) {
        *https = true;
        rest = endpoint + 8;
    } else if (strncasecmp(endpoint, "http://", 7) == 0) {
        *https = false;
        rest = endpoint + 7;
    } else {
        return -1;
    }
    size_t len = strcspn(rest, "/?#");
    if (len == 0 || (rest[len] != '\0' && strcmp(rest + len, "/") != 0))
        return -1;
    *host = rest;
    *hostlen = len;
    return 0;
}

int urlforms_s3_url(const struct urlforms_s3 *s3, const char *bucket, const char *key, char *out,
                    size_t cap, struct h5cd_error *err)
{
    char enc[H5CD_MAX_URL_BYTES + 1];
    char aws[128];
    const char *endpoint = s3->endpoint != NULL ? s3->endpoint : "";
    const char *region = s3->region != NULL && s3->region[0] != '\0' ? s3->region : "us-east-1";
    if (!bucket_ok(bucket, strlen(bucket)) || !segments_ok(key))
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "malformed S3 bucket or key");
    if (urlforms_encode(key, true, enc, sizeof(enc)) < 0)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "S3 key too long");
    if (endpoint[0] == '\0') {
        for (const char *r = region; *r != '\0'; r++)
            if (!isalnum((unsigned char)*r) && *r != '-')
                return h5cd_fail(err, H5CD_E_BAD_REQUEST, "malformed s3_region");
        /* us-east-1 keeps the global name, the one DANDI's API redirects to. */
        int n = strcmp(region, "us-east-1") == 0
                    ? snprintf(aws, sizeof(aws), "https://s3.amazonaws.com")
                    : snprintf(aws, sizeof(aws), "https://s3.%s.amazonaws.com", region);
        if (n < 0 || (size_t)n >= sizeof(aws))
            return h5cd_fail(err, H5CD_E_BAD_REQUEST, "malformed s3_region");
        endpoint = aws;
    }
    bool https;
    const char *host;
    size_t hostlen;
    if (split_endpoint(endpoint, &https, &host, &hostlen) < 0)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "s3_endpoint must be http(s)://HOST[:PORT]");
    bool path_style = s3->path_style || (https && strchr(bucket, '.') != NULL);
    int n = path_style ? snprintf(out, cap, "%s://%.*s/%s/%s", https ? "https" : "http",
                                  (int)hostlen, host, bucket, enc)
                       : snprintf(out, cap, "%s://%s.%.*s/%s", https ? "https" : "http", bucket,
                                  (int)hostlen, host, enc);
    if (n < 0 || (size_t)n >= cap)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "S3 URL longer than %zu bytes", cap - 1);
    return 0;
}

/* Copies an API base without its trailing '/'s; it must be http(s). */
static int copy_base(const char *base, char *out, size_t cap, struct h5cd_error *err)
{
    size_t len = strlen(base);
    while (len > 0 && base[len - 1] == '/')
        len--;
    if ((strncasecmp(base, "https://", 8) != 0 && strncasecmp(base, "http://", 7) != 0) ||
        len >= cap || len > URLFORMS_MAX_API_BYTES || strpbrk(base, "?# ") != NULL)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "DANDI API base must be an http(s) URL");
    memcpy(out, base, len);
    out[len] = '\0';
    return 0;
}

int urlforms_dandi_api(const char *dandi_api, const struct strlist *instances, const char *name,
                       char *out, size_t cap, struct h5cd_error *err)
{
    if (strcasecmp(name, "dandi") == 0)
        return copy_base(dandi_api, out, cap, err);
    size_t nlen = strlen(name);
    for (size_t i = 0; instances != NULL && i < instances->count; i++) {
        const char *item = instances->items[i];
        const char *eq = strchr(item, '=');
        if (eq != NULL && (size_t)(eq - item) == nlen && strncasecmp(item, name, nlen) == 0)
            return copy_base(eq + 1, out, cap, err);
    }
    if (strcasecmp(name, "dandi-sandbox") == 0)
        return copy_base(builtin_sandbox, out, cap, err);
    return h5cd_fail(err, H5CD_E_BAD_REQUEST,
                     "unknown DANDI instance (configure it in dandi_instances)");
}

int urlforms_dandi_assets_url(const char *api, const struct urlform *form, char *out, size_t cap,
                              struct h5cd_error *err)
{
    char enc[H5CD_MAX_URL_BYTES + 1];
    if (urlforms_encode(form->path, false, enc, sizeof(enc)) < 0)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "asset path too long");
    int n = snprintf(out, cap, "%s/dandisets/%s/versions/%s/assets/?path=%s", api, form->dandiset,
                     form->version, enc);
    if (n < 0 || (size_t)n >= cap)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "DANDI API URL too long");
    return 0;
}

int urlforms_dandi_download_url(const char *api, const char *asset_id, char *out, size_t cap,
                                struct h5cd_error *err)
{
    if (!uuid_ok(asset_id, strlen(asset_id)))
        return h5cd_fail(err, H5CD_E_UPSTREAM_ERROR, "malformed DANDI asset id");
    int n = snprintf(out, cap, "%s/assets/%s/download/", api, asset_id);
    if (n < 0 || (size_t)n >= cap)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "DANDI API URL too long");
    return 0;
}

int urlforms_dandi_find_asset(const char *json, size_t len, const char *path,
                              char asset_id[URLFORMS_ASSET_ID_BYTES + 1], char *next,
                              size_t next_cap, struct h5cd_error *err)
{
    int rc = -1;
    json_error_t jerr;
    if (next_cap > 0)
        next[0] = '\0';
    if (len > MAX_LISTING_BYTES)
        return h5cd_fail(err, H5CD_E_UPSTREAM_ERROR, "DANDI asset listing too large");
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *results = json_is_object(doc) ? json_object_get(doc, "results") : NULL;
    if (!json_is_array(results)) {
        h5cd_fail(err, H5CD_E_UPSTREAM_ERROR, "DANDI API answered no asset listing");
        goto done;
    }
    size_t i;
    json_t *asset;
    json_array_foreach(results, i, asset)
    {
        const char *p = json_string_value(json_object_get(asset, "path"));
        const char *id = json_string_value(json_object_get(asset, "asset_id"));
        if (p == NULL || strcmp(p, path) != 0)
            continue;
        if (id == NULL || !uuid_ok(id, strlen(id))) {
            h5cd_fail(err, H5CD_E_UPSTREAM_ERROR, "DANDI API answered a malformed asset id");
            goto done;
        }
        for (size_t k = 0; k < URLFORMS_ASSET_ID_BYTES; k++)
            asset_id[k] = (char)tolower((unsigned char)id[k]);
        asset_id[URLFORMS_ASSET_ID_BYTES] = '\0';
        rc = 1;
        goto done;
    }
    json_t *jnext = json_object_get(doc, "next");
    const char *n = json_string_value(jnext);
    if (n != NULL) {
        if (strlen(n) >= next_cap) {
            h5cd_fail(err, H5CD_E_UPSTREAM_ERROR, "DANDI API answered an overlong next link");
            goto done;
        }
        memcpy(next, n, strlen(n) + 1);
    } else if (jnext != NULL && !json_is_null(jnext)) {
        h5cd_fail(err, H5CD_E_UPSTREAM_ERROR, "DANDI API answered a malformed next link");
        goto done;
    }
    rc = 0;
done:
    json_decref(doc);
    return rc;
}
