/*
 * cmd_data.c - the commands that read a remote file through the daemon:
 * meta (GET /v1/meta), get (POST /v1/chunks, a frame stream saved one file
 * per chunk) and slice (GET /v1/slice, an .npy file).  Single-threaded.
 * It must never write outside the chosen directory (keys are re-checked
 * and files opened relative to it without following links), never leave a
 * half-written file under a final name, and never write binary data to a
 * terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5chunk.h"

#define LABEL_WIDTH     8
#define VALUE_SHOWN     160 /* bytes of an attribute or fill value shown */
#define NPY_MAGIC       "\x93NUMPY"
#define NPY_MAGIC_BYTES 6

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- meta ---- */

/* A JSON value in one bounded, printable line. */
static const char *show_value(json_t *v, char *buf, size_t cap)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL) {
        snprintf(buf, cap, "?");
        return buf;
    }
    h5c_sanitize(buf, cap, text);
    if (strlen(text) >= cap && cap > 4)
        memcpy(buf + cap - 4, "...", 4);
    free(text);
    return buf;
}

static void print_field(const char *label, const char *value)
{
    printf("%-*s %s\n", LABEL_WIDTH, label, value);
}

/* "(100, 60)"; "()" for a scalar. */
static const char *show_dims(json_t *arr, char *buf, size_t cap)
{
    size_t used = 0, i;
    json_t *v;
    if (!json_is_array(arr))
        return show_value(arr, buf, cap);
    int n = snprintf(buf, cap, "(");
    used = n > 0 ? (size_t)n : 0;
    json_array_foreach(arr, i, v)
    {
        n = snprintf(buf + used, cap - used, "%s%lld", i > 0 ? ", " : "",
                     (long long)json_integer_value(v));
        if (n < 0 || (size_t)n >= cap - used)
            return show_value(arr, buf, cap);
        used += (size_t)n;
    }
    n = snprintf(buf + used, cap - used, json_array_size(arr) == 1 ? ",)" : ")");
    return (n < 0 || (size_t)n >= cap - used) ? show_value(arr, buf, cap) : buf;
}

/* "30 chunks (grid 10 x 3)": the chunk count of the dataset. */
static void print_grid(json_t *shape, json_t *chunks)
{
    char buf[256];
    size_t used = 0, i;
    unsigned long long total = 1;
    bool overflow = false;
    json_t *s;
    if (!json_is_array(shape) || !json_is_array(chunks) ||
        json_array_size(shape) != json_array_size(chunks) || json_array_size(shape) == 0)
        return;
    json_array_foreach(shape, i, s)
    {
        json_int_t ext = json_integer_value(s);
        json_int_t c = json_integer_value(json_array_get(chunks, i));
        if (ext < 0 || c <= 0)
            return;
        unsigned long long count = (unsigned long long)(ext / c + (ext % c != 0));
        if (count != 0 && total > ~0ULL / count)
            overflow = true;
        total *= count;
        int n = snprintf(buf + used, sizeof(buf) - used, "%s%llu", i > 0 ? " x " : "", count);
        if (n < 0 || (size_t)n >= sizeof(buf) - used)
            return;
        used += (size_t)n;
    }
    if (overflow)
        printf("%-*s grid %s\n", LABEL_WIDTH, "grid", buf);
    else
        printf("%-*s %llu chunks (%s)\n", LABEL_WIDTH, "grid", total, buf);
}

static void print_filters(json_t *filters)
{
    char line[512], v[VALUE_SHOWN], name[64];
    size_t used = 0, i;
    json_t *f;
    if (json_array_size(filters) == 0) {
        print_field("filters", "none");
        return;
    }
    line[0] = '\0';
    json_array_foreach(filters, i, f)
    {
        json_t *fname = json_object_get(f, "name");
        json_t *params = json_object_get(f, "params");
        if (json_is_string(fname))
            h5c_sanitize(name, sizeof(name), json_string_value(fname));
        else
            snprintf(name, sizeof(name), "filter %lld",
                     (long long)json_integer_value(json_object_get(f, "id")));
        /* "deflate(4)": the parameters as a call's arguments */
        if (json_array_size(params) > 0) {
            show_value(params, v, sizeof(v));
            size_t vl = strlen(v);
            if (vl >= 2 && v[0] == '[' && v[vl - 1] == ']') {
                v[0] = '(';
                v[vl - 1] = ')';
            }
        } else {
            v[0] = '\0';
        }
        int n = snprintf(line + used, sizeof(line) - used, "%s%s%s", i > 0 ? ", " : "", name, v);
        if (n < 0 || (size_t)n >= sizeof(line) - used)
            break;
        used += (size_t)n;
    }
    print_field("filters", line);
}

static void print_attrs(json_t *attrs)
{
    const char *k;
    json_t *v;
    char key[128], val[VALUE_SHOWN], line[VALUE_SHOWN + 140];
    bool first = true;
    if (json_object_size(attrs) == 0) {
        print_field("attrs", "none");
        return;
    }
    json_object_foreach(attrs, k, v)
    {
        snprintf(line, sizeof(line), "%s = %s", h5c_sanitize(key, sizeof(key), k),
                 show_value(v, val, sizeof(val)));
        print_field(first ? "attrs" : "", line);
        first = false;
    }
}

static void print_members(json_t *members)
{
    char name[256];
    size_t i;
    json_t *m;
    if (json_array_size(members) == 0) {
        print_field("members", "none");
        return;
    }
    json_array_foreach(members, i, m)
    {
        const char *text = json_is_string(m) ? json_string_value(m) : "?";
        print_field(i == 0 ? "members" : "", h5c_sanitize(name, sizeof(name), text));
    }
}

static void print_meta(json_t *doc, const char *path)
{
    char buf[512];
    json_t *p = json_object_get(doc, "path");
    const char *kind = json_string_value(json_object_get(doc, "kind"));
    print_field("path",
                h5c_sanitize(buf, sizeof(buf), json_is_string(p) ? json_string_value(p) : path));
    print_field("kind", h5c_sanitize(buf, sizeof(buf), kind != NULL ? kind : "?"));
    if (kind != NULL && strcmp(kind, "dataset") == 0) {
        json_t *shape = json_object_get(doc, "shape");
        json_t *chunks = json_object_get(doc, "chunks");
        print_field("shape", show_dims(shape, buf, sizeof(buf)));
        print_field("chunks", show_dims(chunks, buf, sizeof(buf)));
        print_grid(shape, chunks);
        json_t *dtype = json_object_get(doc, "dtype");
        print_field("dtype", json_is_string(dtype)
                                 ? h5c_sanitize(buf, sizeof(buf), json_string_value(dtype))
                                 : show_value(dtype, buf, sizeof(buf)));
        const char *layout = json_string_value(json_object_get(doc, "layout"));
        print_field("layout", h5c_sanitize(buf, sizeof(buf), layout != NULL ? layout : "?"));
        print_filters(json_object_get(doc, "filters"));
        print_field("fill", show_value(json_object_get(doc, "fill_value"), buf, sizeof(buf)));
    } else if (kind != NULL && strcmp(kind, "group") == 0) {
        print_members(json_object_get(doc, "members"));
    }
    print_attrs(json_object_get(doc, "attrs"));
}

int h5c_cmd_meta(struct h5c_http *h, const struct h5c_args *a)
{
    const char *params[] = {"url", a->url, "path", a->path, NULL};
    struct h5c_failure fail;
    json_t *doc = NULL;
    char *raw = NULL;
    int status = H5C_EXIT_FAIL;
    char *target = h5c_http_target(h, "/v1/meta", params);
    if (target == NULL) {
        h5c_errorf("meta: out of memory");
        return H5C_EXIT_FAIL;
    }
    if (h5c_http_json(h, "GET", target, NULL, &doc, &raw, 0, &fail) < 0) {
        h5c_report("meta", &fail);
        goto done;
    }
    if (!json_is_object(doc)) {
        h5c_errorf("meta: the daemon's answer is not a JSON object");
        goto done;
    }
    if (a->json) {
        if (h5c_print_raw(raw) < 0)
            goto done;
    } else {
        print_meta(doc, a->path);
    }
    status = H5C_EXIT_OK;
done:
    json_decref(doc);
    free(raw);
    free(target);
    return status;
}

/* ---- get ---- */

struct get_ctx {
    struct h5c_frames parser;
    const struct h5c_args *a;
    const char *dir;
    int dirfd;
    const char **keys; /* sorted, distinct */
    size_t nkeys;
    bool *answered;
    int fd; /* the chunk being written, or -1 */
    char tmp[H5C_MAX_KEY_BYTES + 8];
    size_t nfailed;
};

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static void key_failed(struct get_ctx *g, const struct h5c_frame *f)
{
    g->nfailed++;
    if (f->error[0] != '\0' && f->message[0] != '\0')
        h5c_errorf("get: chunk %s: %s: %s", f->key, f->error, f->message);
    else if (f->error[0] != '\0')
        h5c_errorf("get: chunk %s: %s (HTTP %d)", f->key, f->error, f->status);
    else
        h5c_errorf("get: chunk %s: HTTP %d", f->key, f->status);
}

static void drop_tmp(struct get_ctx *g)
{
    if (g->fd < 0)
        return;
    close(g->fd);
    g->fd = -1;
    unlinkat(g->dirfd, g->tmp, 0);
}

static void print_frame_json(const struct get_ctx *g, const struct h5c_frame *f, bool saved)
{
    char file[4096];
    json_t *o = json_pack("{s:s, s:i, s:I}", "key", f->key, "status", f->status, "length",
                          (json_int_t)f->length);
    if (o == NULL)
        return;
    if (f->filter_mask >= 0)
        json_object_set_new(o, "filter_mask", json_integer(f->filter_mask));
    if (f->error[0] != '\0')
        json_object_set_new(o, "error", json_string(f->error));
    if (saved && snprintf(file, sizeof(file), "%s/%s", g->dir, f->key) < (int)sizeof(file))
        json_object_set_new(o, "file", json_string(file));
    char *text = json_dumps(o, JSON_COMPACT);
    if (text != NULL)
        printf("%s\n", text);
    free(text);
    json_decref(o);
}

static int get_begin(void *ud, const struct h5c_frame *f)
{
    struct get_ctx *g = ud;
    const char *key = f->key;
    const char **hit = bsearch(&key, g->keys, g->nkeys, sizeof(*g->keys), cmp_str);
    if (hit == NULL)
        return h5c_frames_fail(&g->parser, "the daemon answered chunk %s, which was not asked for",
                               f->key);
    size_t i = (size_t)(hit - g->keys);
    if (g->answered[i])
        return h5c_frames_fail(&g->parser, "the daemon answered chunk %s twice", f->key);
    g->answered[i] = true;
    if (f->status != 200) {
        key_failed(g, f);
        if (g->a->json)
            print_frame_json(g, f, false);
        return 0;
    }
    snprintf(g->tmp, sizeof(g->tmp), "%s.part", f->key); /* fits: key <= 400 bytes */
    g->fd = openat(g->dirfd, g->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (g->fd < 0) {
        g->nfailed++;
        h5c_errorf("get: chunk %s: cannot create %s/%s: %s", f->key, g->dir, g->tmp,
                   strerror(errno));
    }
    return 0;
}

static int get_data(void *ud, const struct h5c_frame *f, const uint8_t *bytes, size_t len)
{
    struct get_ctx *g = ud;
    if (g->fd < 0 || f->status != 200)
        return 0; /* a failed key's payload, or a file we could not create */
    int rc = write_all(g->fd, bytes, len);
    if (rc < 0) {
        g->nfailed++;
        h5c_errorf("get: chunk %s: cannot write %s/%s: %s", f->key, g->dir, g->tmp, strerror(-rc));
        drop_tmp(g);
    }
    return 0;
}

static int get_end(void *ud, const struct h5c_frame *f)
{
    struct get_ctx *g = ud;
    if (f->status != 200 || g->fd < 0)
        return 0;
    int fd = g->fd;
    g->fd = -1;
    if (close(fd) < 0 || renameat(g->dirfd, g->tmp, g->dirfd, f->key) < 0) {
        g->nfailed++;
        h5c_errorf("get: chunk %s: cannot save %s/%s: %s", f->key, g->dir, f->key, strerror(errno));
        unlinkat(g->dirfd, g->tmp, 0);
        return 0;
    }
    if (g->a->json)
        print_frame_json(g, f, true);
    return 0;
}

static int get_sink(void *ud, const uint8_t *bytes, size_t len, char *why, size_t whylen)
{
    struct get_ctx *g = ud;
    if (h5c_frames_feed(&g->parser, bytes, len) < 0) {
        snprintf(why, whylen, "%s", g->parser.err);
        return -1;
    }
    return 0;
}

/* The keys sorted, duplicates dropped, and the request body naming them. */
static char *get_body(struct get_ctx *g, const struct h5c_args *a)
{
    qsort(g->keys, g->nkeys, sizeof(*g->keys), cmp_str);
    size_t n = 0;
    for (size_t i = 0; i < g->nkeys; i++)
        if (n == 0 || strcmp(g->keys[n - 1], g->keys[i]) != 0)
            g->keys[n++] = g->keys[i];
    g->nkeys = n;
    json_t *keys = json_array();
    for (size_t i = 0; keys != NULL && i < n; i++)
        if (json_array_append_new(keys, json_string(g->keys[i])) < 0) {
            json_decref(keys);
            keys = NULL;
        }
    json_t *body = keys == NULL ? NULL
                                : json_pack("{s:s, s:s, s:o, s:b}", "url", a->url, "path", a->path,
                                            "keys", keys, "decode", a->decode);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return text;
}

static int open_dir(const char *dir)
{
    if (mkdir(dir, 0777) < 0 && errno != EEXIST) {
        h5c_errorf("get: cannot create directory %s: %s", dir, strerror(errno));
        return -1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        h5c_errorf("get: cannot open directory %s: %s", dir, strerror(errno));
    return fd;
}

int h5c_cmd_get(struct h5c_http *h, const struct h5c_args *a)
{
    struct get_ctx g = {.a = a, .dir = a->out != NULL ? a->out : ".", .dirfd = -1, .fd = -1};
    struct h5c_failure fail;
    char *body = NULL;
    int status = H5C_EXIT_FAIL;
    const struct h5c_frames_cb cb = {get_begin, get_data, get_end, &g};

    g.nkeys = a->nkeys;
    g.keys = calloc(a->nkeys, sizeof(*g.keys));
    g.answered = calloc(a->nkeys, sizeof(*g.answered));
    if (g.keys == NULL || g.answered == NULL) {
        h5c_errorf("get: out of memory");
        goto done;
    }
    memcpy(g.keys, a->keys, a->nkeys * sizeof(*g.keys));
    if ((body = get_body(&g, a)) == NULL) {
        h5c_errorf("get: out of memory");
        goto done;
    }
    if ((g.dirfd = open_dir(g.dir)) < 0)
        goto done;
    h5c_frames_init(&g.parser, &cb);
    if (h5c_http_request(h, "POST", "/v1/chunks", body, get_sink, &g, NULL, NULL, 0, &fail) < 0) {
        h5c_report("get", &fail);
        goto done;
    }
    if (h5c_frames_finish(&g.parser) < 0) {
        h5c_errorf("get: %s", g.parser.err);
        goto done;
    }
    for (size_t i = 0; i < g.nkeys; i++) {
        if (!g.answered[i]) {
            g.nfailed++;
            h5c_errorf("get: chunk %s: the daemon sent no frame for it", g.keys[i]);
        }
    }
    status = g.nfailed > 0 ? H5C_EXIT_FAIL : H5C_EXIT_OK;
done:
    drop_tmp(&g);
    if (g.dirfd >= 0)
        close(g.dirfd);
    free(body);
    free(g.keys);
    free(g.answered);
    return status;
}

/* ---- slice ---- */

struct slice_ctx {
    int fd;
    const char *name; /* for messages */
    uint8_t head[NPY_MAGIC_BYTES];
    size_t nhead;
};

static int slice_sink(void *ud, const uint8_t *bytes, size_t len, char *why, size_t whylen)
{
    struct slice_ctx *s = ud;
    int rc;
    if (s->nhead < NPY_MAGIC_BYTES) {
        /* hold the first bytes back until they prove to be an .npy header */
        size_t n = NPY_MAGIC_BYTES - s->nhead < len ? NPY_MAGIC_BYTES - s->nhead : len;
        memcpy(s->head + s->nhead, bytes, n);
        s->nhead += n;
        bytes += n;
        len -= n;
        if (s->nhead < NPY_MAGIC_BYTES)
            return 0;
        if (memcmp(s->head, NPY_MAGIC, NPY_MAGIC_BYTES) != 0) {
            snprintf(why, whylen, "the daemon's answer is not an .npy file");
            return -1;
        }
        if ((rc = write_all(s->fd, s->head, NPY_MAGIC_BYTES)) < 0)
            goto fail;
    }
    if ((rc = write_all(s->fd, bytes, len)) < 0)
        goto fail;
    return 0;
fail:
    snprintf(why, whylen, "cannot write %s: %s", s->name, strerror(-rc));
    return -1;
}

/* A temp file next to path, to be renamed over it when complete. */
static int open_temp(const char *path, char *tmp, size_t cap)
{
    int n = snprintf(tmp, cap, "%s.XXXXXX", path);
    if (n < 0 || (size_t)n >= cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = mkstemp(tmp);
    if (fd < 0)
        return -1;
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) < 0) {
        int saved = errno;
        close(fd);
        unlink(tmp);
        errno = saved;
        return -1;
    }
    return fd;
}

int h5c_cmd_slice(struct h5c_http *h, const struct h5c_args *a)
{
    const char *params[] = {"url",     a->url,   "path", a->path, "select",
                            a->select, "format", "npy",  NULL};
    bool to_stdout = a->out == NULL || strcmp(a->out, "-") == 0;
    struct slice_ctx s = {.fd = -1, .name = to_stdout ? "stdout" : a->out};
    struct h5c_failure fail;
    char tmp[4096 + 8] = "";
    int status = H5C_EXIT_FAIL;

    if (to_stdout && isatty(STDOUT_FILENO)) {
        h5c_errorf("slice: refusing to write binary data to a terminal (use -o FILE or a pipe)");
        return H5C_EXIT_USAGE;
    }
    char *target = h5c_http_target(h, "/v1/slice", params);
    if (target == NULL) {
        h5c_errorf("slice: out of memory");
        return H5C_EXIT_FAIL;
    }
    if (to_stdout) {
        fflush(stdout);
        s.fd = STDOUT_FILENO;
    } else if ((s.fd = open_temp(a->out, tmp, sizeof(tmp))) < 0) {
        h5c_errorf("slice: cannot create a file next to %s: %s", a->out, strerror(errno));
        goto done;
    }
    if (h5c_http_request(h, "GET", target, NULL, slice_sink, &s, NULL, NULL, 0, &fail) < 0) {
        h5c_report("slice", &fail);
        goto done;
    }
    if (s.nhead < NPY_MAGIC_BYTES) {
        h5c_errorf("slice: the daemon's answer is not an .npy file (%zu bytes)", s.nhead);
        goto done;
    }
    if (!to_stdout) {
        int fd = s.fd;
        s.fd = -1;
        if (close(fd) < 0 || rename(tmp, a->out) < 0) {
            h5c_errorf("slice: cannot save %s: %s", a->out, strerror(errno));
            goto done;
        }
        tmp[0] = '\0';
    }
    status = H5C_EXIT_OK;
done:
    if (!to_stdout && s.fd >= 0)
        close(s.fd);
    if (tmp[0] != '\0')
        unlink(tmp);
    free(target);
    return status;
}
