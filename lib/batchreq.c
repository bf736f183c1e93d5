/*
 * batchreq.c - POST /v1/chunks bodies parsed with yajl's event parser as
 * they arrive (see batchreq.h).
 *
 * Why not a document tree: jansson holds about sixteen times the body
 * (a json_t and a malloc'd string per key), so eight concurrent 16 MB
 * bodies took gigabytes.  Here the keys live in one character arena
 * (each NUL-terminated) and one offset array; memory is the key bytes
 * plus four bytes per key, charged to the daemon's budget as it grows.
 * yajl itself buffers only the token being lexed: a token longer than
 * MAX_TOKEN_BYTES (no legitimate url, path or key is) refuses the body,
 * and nesting deeper than MAX_SKIP_DEPTH inside an unknown field is refused
 * at once (yajl keeps a byte per level).
 */
#include "batchreq.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "chunkkey.h"
#include "h5cd_limits.h"

#define MAX_TOKEN_BYTES (64 * 1024) /* bytes fed without a complete token */
#define MAX_SKIP_DEPTH  8           /* nesting inside a field we ignore */
#define ARENA_FIRST     4096

enum field { F_NONE, F_URL, F_PATH, F_KEYS, F_DECODE, F_OTHER };

struct batchreq {
    yajl_handle yajl;
    struct membudget *mb;
    unsigned wait_ms;
    unsigned max_keys;
    uint64_t charged;
    int depth;        /* 1: in the object, 2: in an array */
    int skip_depth;   /* > 0: inside an unknown field's value */
    enum field field; /* the field whose value comes next */
    unsigned seen;    /* bit per field: duplicates are refused */
    bool done;        /* the top-level object closed */
    bool failed;
    size_t since_event; /* bytes fed since yajl last reported a token */
    struct h5cd_error error;
    char *url, *path;
    bool decode;
    char *arena; /* keys, each NUL-terminated */
    size_t arena_len, arena_cap;
    uint32_t *offsets;
    size_t nkeys, offsets_cap;
};

/* Refuses the body (the first reason sticks).  Returns 0, which cancels the parse. */
static int fail(struct batchreq *r, enum h5cd_errcode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct batchreq *r, enum h5cd_errcode code, const char *fmt, ...)
{
    if (r->failed)
        return 0;
    r->failed = true;
    r->error.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error.message, sizeof(r->error.message), fmt, ap);
    va_end(ap);
    return 0;
}

/* Grows *buf to hold need bytes, charging the growth to the budget. */
static int grow(struct batchreq *r, void **buf, size_t *cap, size_t need, size_t unit)
{
    if (need <= *cap)
        return 1;
    size_t cap2 = *cap > 0 ? *cap : ARENA_FIRST / unit;
    while (cap2 < need)
        cap2 *= 2;
    uint64_t more = (uint64_t)(cap2 - *cap) * unit;
    if (r->mb != NULL && !membudget_acquire(r->mb, more, r->wait_ms))
        return fail(r, H5CD_E_UNAVAILABLE, "%s", "the daemon's memory budget is in use; retry");
    void *bigger = realloc(*buf, cap2 * unit);
    if (bigger == NULL) {
        if (r->mb != NULL)
            membudget_release(r->mb, more);
        return fail(r, H5CD_E_INTERNAL, "%s", "out of memory");
    }
    r->charged += more;
    *buf = bigger;
    *cap = cap2;
    return 1;
}

static int add_key(struct batchreq *r, const unsigned char *s, size_t len)
{
    if (r->nkeys >= r->max_keys) {
        return fail(r, H5CD_E_TOO_LARGE, "more than %u keys in one request", r->max_keys);
    }
    if (len > H5CD_MAX_KEY_BYTES || memchr(s, '\0', len) != NULL)
        return fail(r, H5CD_E_BAD_KEY, "%s", "a key is longer than any chunk key or holds a NUL");
    if (!grow(r, (void **)&r->arena, &r->arena_cap, r->arena_len + len + 1, 1) ||
        !grow(r, (void **)&r->offsets, &r->offsets_cap, r->nkeys + 1, sizeof(uint32_t)))
        return 0;
    r->offsets[r->nkeys++] = (uint32_t)r->arena_len;
    memcpy(r->arena + r->arena_len, s, len);
    r->arena[r->arena_len + len] = '\0';
    r->arena_len += len + 1;
    return 1;
}

static int set_text(struct batchreq *r, char **out, const unsigned char *s, size_t len, size_t max,
                    const char *name)
{
    if (len > max)
        return fail(r, H5CD_E_BAD_REQUEST, "'%s' is too long", name);
    if (memchr(s, '\0', len) != NULL)
        return fail(r, H5CD_E_BAD_REQUEST, "'%s' holds a NUL character", name);
    *out = malloc(len + 1);
    if (*out == NULL)
        return fail(r, H5CD_E_INTERNAL, "%s", "out of memory");
    memcpy(*out, s, len);
    (*out)[len] = '\0';
    return 1;
}

/* A scalar or container where a field value or key is expected; type names it. */
static int value_event(struct batchreq *r, const char *type)
{
    r->since_event = 0;
    if (r->skip_depth > 0)
        return 1;
    if (r->depth == 0)
        return fail(r, H5CD_E_BAD_REQUEST, "%s", "the body must be a JSON object");
    if (r->depth == 2)
        return fail(r, H5CD_E_BAD_KEY, "a key is %s, not a string", type);
    switch (r->field) {
    case F_URL:
        return fail(r, H5CD_E_BAD_REQUEST, "%s", "'url' must be a string");
    case F_PATH:
        return fail(r, H5CD_E_BAD_REQUEST, "%s", "'path' must be a string");
    case F_KEYS:
        return fail(r, H5CD_E_BAD_REQUEST, "%s", "'keys' must be an array of strings");
    case F_DECODE:
        return fail(r, H5CD_E_BAD_REQUEST, "%s", "'decode' must be true or false");
    default:
        return 1; /* an unknown field's scalar value: ignored */
    }
}

static int on_null(void *ctx)
{
    return value_event(ctx, "null");
}

static int on_boolean(void *ctx, int value)
{
    struct batchreq *r = ctx;
    if (r->skip_depth == 0 && r->depth == 1 && r->field == F_DECODE) {
        r->since_event = 0;
        r->decode = value != 0;
        return 1;
    }
    return value_event(r, "a boolean");
}

static int on_number(void *ctx, const char *s, size_t len)
{
    (void)s;
    (void)len;
    return value_event(ctx, "a number");
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    struct batchreq *r = ctx;
    r->since_event = 0;
    if (r->skip_depth > 0)
        return 1;
    if (r->depth == 2)
        return add_key(r, s, len);
    if (r->depth == 1 && r->field == F_URL)
        return set_text(r, &r->url, s, len, H5CD_MAX_URL_BYTES, "url");
    if (r->depth == 1 && r->field == F_PATH)
        return set_text(r, &r->path, s, len, H5CD_MAX_PATH_BYTES, "path");
    return value_event(r, "a string");
}

static int on_map_key(void *ctx, const unsigned char *s, size_t len)
{
    static const struct {
        const char *name;
        enum field field;
    } fields[] = {{"url", F_URL}, {"path", F_PATH}, {"keys", F_KEYS}, {"decode", F_DECODE}};
    struct batchreq *r = ctx;
    r->since_event = 0;
    if (r->skip_depth > 0)
        return 1;
    r->field = F_OTHER;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (strlen(fields[i].name) != len || memcmp(fields[i].name, s, len) != 0)
            continue;
        if (r->seen & (1u << fields[i].field))
            return fail(r, H5CD_E_BAD_REQUEST, "'%s' appears twice", fields[i].name);
        r->seen |= 1u << fields[i].field;
        r->field = fields[i].field;
    }
    return 1;
}

/* True when a container opens inside a skipped value or as an unknown field's value. */
static bool skipping_into(const struct batchreq *r)
{
    return r->skip_depth > 0 || (r->depth == 1 && r->field == F_OTHER);
}

static int on_start_map(void *ctx)
{
    struct batchreq *r = ctx;
    r->since_event = 0;
    if (skipping_into(r))
        return ++r->skip_depth > MAX_SKIP_DEPTH
                   ? fail(r, H5CD_E_BAD_REQUEST, "%s", "unknown fields may not nest deeper")
                   : 1;
    if (r->depth != 0 || r->done)
        return value_event(r, "an object");
    r->depth = 1;
    return 1;
}

static int on_end_map(void *ctx)
{
    struct batchreq *r = ctx;
    r->since_event = 0;
    if (r->skip_depth > 0) {
        r->skip_depth--;
        return 1;
    }
    r->depth = 0;
    r->done = true;
    return 1;
}

static int on_start_array(void *ctx)
{
    struct batchreq *r = ctx;
    r->since_event = 0;
    if (skipping_into(r))
        return ++r->skip_depth > MAX_SKIP_DEPTH
                   ? fail(r, H5CD_E_BAD_REQUEST, "%s", "unknown fields may not nest deeper")
                   : 1;
    if (r->depth == 1 && r->field == F_KEYS) {
        r->depth = 2;
        return 1;
    }
    return value_event(r, "an array");
}

static int on_end_array(void *ctx)
{
    struct batchreq *r = ctx;
    r->since_event = 0;
    if (r->skip_depth > 0) {
        r->skip_depth--;
        return 1;
    }
    r->depth = 1;
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end_map,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end_array,
};

struct batchreq *batchreq_new(unsigned max_keys, struct membudget *mb, unsigned wait_ms)
{
    struct batchreq *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->yajl = yajl_alloc(&callbacks, NULL, r);
    if (r->yajl == NULL) {
        free(r);
        return NULL;
    }
    r->mb = mb;
    r->wait_ms = wait_ms;
    r->max_keys = max_keys;
    return r;
}

void batchreq_free(struct batchreq *r)
{
    if (r == NULL)
        return;
    yajl_free(r->yajl);
    if (r->mb != NULL)
        membudget_release(r->mb, r->charged);
    free(r->url);
    free(r->path);
    free(r->arena);
    free(r->offsets);
    free(r);
}

/* yajl's own message for a syntax error, as our error. */
static void syntax_error(struct batchreq *r, const char *data, size_t len)
{
    unsigned char *text = yajl_get_error(r->yajl, 0, (const unsigned char *)data, len);
    r->failed = true;
    h5cd_fail(&r->error, H5CD_E_BAD_REQUEST, "malformed JSON: %s",
              text != NULL ? (const char *)text : "syntax error");
    if (text != NULL)
        yajl_free_error(r->yajl, text);
}

int batchreq_feed(struct batchreq *r, const char *data, size_t len)
{
    if (r->failed)
        return -1;
    for (size_t done = 0; done < len;) {
        /* Feed in pieces, so no token grows past MAX_TOKEN_BYTES unnoticed. */
        size_t n = len - done < MAX_TOKEN_BYTES / 2 ? len - done : MAX_TOKEN_BYTES / 2;
        r->since_event += n;
        yajl_status st = yajl_parse(r->yajl, (const unsigned char *)data + done, n);
        if (r->failed)
            return -1;
        if (st != yajl_status_ok) {
            syntax_error(r, data + done, n);
            return -1;
        }
        if (r->since_event > MAX_TOKEN_BYTES) {
            fail(r, H5CD_E_BAD_REQUEST, "%s", "a JSON value or a run of spaces is too long");
            return -1;
        }
        done += n;
    }
    return 0;
}

int batchreq_finish(struct batchreq *r, struct h5cd_error *err)
{
    if (!r->failed && yajl_complete_parse(r->yajl) != yajl_status_ok && !r->failed)
        syntax_error(r, NULL, 0);
    if (!r->failed && !r->done)
        fail(r, H5CD_E_BAD_REQUEST, "%s", "the body must be a JSON object");
    if (!r->failed && r->url == NULL)
        fail(r, H5CD_E_BAD_REQUEST, "%s", "'url' must be a string");
    if (!r->failed && r->path == NULL)
        fail(r, H5CD_E_BAD_REQUEST, "%s", "'path' must be a string");
    if (!r->failed && !(r->seen & (1u << F_KEYS)))
        fail(r, H5CD_E_BAD_REQUEST, "%s", "'keys' must be an array of strings");
    if (r->failed) {
        *err = r->error;
        return -1;
    }
    return 0;
}

const char *batchreq_url(const struct batchreq *r)
{
    return r->url;
}

const char *batchreq_path(const struct batchreq *r)
{
    return r->path;
}

bool batchreq_decode(const struct batchreq *r)
{
    return r->decode;
}

size_t batchreq_nkeys(const struct batchreq *r)
{
    return r->nkeys;
}

const char *batchreq_key(const struct batchreq *r, size_t i)
{
    return r->arena + r->offsets[i];
}
