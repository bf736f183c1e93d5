/*
 * routes_zarr.c - the Zarr v2 view of a remote HDF5 file,
 * GET /zarr/v2/{id}/{key} (id: the URL as unpadded base64url), and
 * GET /v1/zarr?url=U which tells a client its base.
 *
 * Keys: ".zmetadata" (consolidated metadata of the whole file, built by one
 * walk and cached with the file's version: its descriptions are first asked
 * for a level of the hierarchy at a time, then walked in name order),
 * "{path}/.zgroup",
 * "{path}/.zarray", "{path}/.zattrs", and "{dataset path}/{chunk key}".
 * A chunk is served as stored when .zarray names codecs that undo the
 * dataset's filters, else decoded; a chunk never written is a 404 so zarr
 * fills it with fill_value (when .zarray has none, zarr would leave such
 * cells uninitialised: the chunk is then served decoded, fill values and all).
 * Runs on the connection's thread.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "http.h"
#include "log.h"
#include "prefetch.h"
#include "routes.h"
#include "zarrmeta.h"

#define MAX_WALK_OBJECTS    200000
#define MAX_WALK_DEPTH      64
#define MAX_ZMETADATA_BYTES (64 * H5CD_MIB)
#define MAX_PREFETCH_BYTES  (64 * H5CD_MIB) /* descriptions one walk keeps in memory */
#define MAX_LEVEL_BYTES     (16 * H5CD_MIB) /* paths of one level described at once */
#define ZARR_PREFIX         "/zarr/v2/"
#define ZMETADATA_DOC       "#zmetadata"

static enum MHD_Result send_json_doc(struct server *srv, struct MHD_Connection *conn, json_t *doc)
{
    /* zarr-python 2 decodes metadata as ASCII: escape everything else. */
    char *text = doc != NULL
                     ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII)
                     : NULL;
    json_decref(doc);
    if (text == NULL)
        return http_fail(srv, conn, H5CD_E_INTERNAL, "out of memory");
    return http_send_text(srv, conn, MHD_HTTP_OK, text, "application/json");
}

enum MHD_Result route_zarr_base(struct server *srv, struct MHD_Connection *conn)
{
    const char *url = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "url");
    if (url == NULL || url[0] == '\0')
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST, "missing query parameter 'url'");
    struct remote_file file;
    struct h5cd_error err = {0};
    if (remote_open_as(srv->remote, url, http_dandi_token(conn), srv->cfg->h5_prefix_bytes, &file,
                       &err) < 0)
        return http_send_error(srv, conn, &err);
    char id[H5CD_MAX_URL_BYTES * 2];
    char base[sizeof(id) + 16];
    if (zarrmeta_encode_id(url, id, sizeof(id)) < 0)
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST, "URL too long");
    snprintf(base, sizeof(base), ZARR_PREFIX "%s/", id);
    return send_json_doc(srv, conn, json_pack("{s:s}", "base", base));
}

/* "" -> "/", "a/b" -> "/a/b" */
static void object_path(const char *zarr_path, size_t len, char *out, size_t cap)
{
    snprintf(out, cap, "/%.*s", (int)len, zarr_path);
}

/* Bytes of an HDF5 name that a URL path cannot carry as they are ('#' and '?'
 * end the path, '%' starts an escape) or that clients encode differently. */
static bool needs_escape(unsigned char c)
{
    return c <= 0x20 || c == 0x7f || strchr("%#?\"<>\\^`{|}", c) != NULL;
}

/* A member name as it appears in Zarr keys: those bytes percent-encoded
 * (docs/api.md).  0, or -1 if it does not fit. */
static int zarr_name(const char *name, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        if (w + 4 > cap)
            return -1;
        if (needs_escape(*p)) {
            out[w++] = '%';
            out[w++] = hex[*p >> 4];
            out[w++] = hex[*p & 15];
        } else {
            out[w++] = (char)*p;
        }
    }
    out[w] = '\0';
    return 0;
}

/* Names that are Zarr's own keys, or that URL clients resolve as path
 * segments (".."), cannot be objects in the Zarr view. */
static bool zarr_reserved(const char *name)
{
    return strcmp(name, ".zarray") == 0 || strcmp(name, ".zgroup") == 0 ||
           strcmp(name, ".zattrs") == 0 || strcmp(name, ".zmetadata") == 0 ||
           strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

/* One walk of a file for .zmetadata: each object once, bounded in depth,
 * objects and document bytes. */
struct zwalk {
    struct server *srv;
    const struct remote_file *file;
    json_t *md;
    json_t *seen;   /* object_id -> true */
    json_t *known;  /* path -> its description, asked for by level (prefetch) */
    json_t *failed; /* path -> [code, message]: its description failed */
    size_t objects;
    size_t bytes;
    struct h5cd_error *err;
};

/* Adds doc (consumed) under prefix + leaf, counting its bytes.  0, or -1 with err. */
static int add_doc(struct zwalk *w, const char *prefix, const char *leaf, json_t *doc)
{
    char key[2 * H5CD_MAX_PATH_BYTES + 32];
    int n = snprintf(key, sizeof(key), "%s%s%s", prefix, prefix[0] != '\0' ? "/" : "", leaf);
    size_t size = doc != NULL ? json_dumpb(doc, NULL, 0, JSON_COMPACT | JSON_ENSURE_ASCII) : 0;
    if (doc == NULL || n < 0 || (size_t)n >= sizeof(key)) {
        json_decref(doc);
        return h5cd_fail(w->err, H5CD_E_INTERNAL, "cannot build the Zarr key of %.200s", prefix);
    }
    w->bytes += size + (size_t)n + 8;
    if (w->bytes > MAX_ZMETADATA_BYTES) {
        json_decref(doc);
        return h5cd_fail(w->err, H5CD_E_TOO_LARGE,
                         "the consolidated metadata of this file exceeds %llu MiB",
                         (unsigned long long)(MAX_ZMETADATA_BYTES / H5CD_MIB));
    }
    if (json_object_set_new(w->md, key, doc) < 0)
        return h5cd_fail(w->err, H5CD_E_INTERNAL, "out of memory");
    return 0;
}

/* Errors that mean "this object has no Zarr form" rather than "the walk failed". */
static bool leave_out(enum h5cd_errcode code)
{
    return code == H5CD_E_UNSUPPORTED || code == H5CD_E_NOT_FOUND;
}

/* A member name the Zarr view can list. */
static bool member_listed(const char *name)
{
    return name != NULL && name[0] != '\0' && strchr(name, '/') == NULL && !zarr_reserved(name);
}

/* The path of member name of the group at path.  0, or -1 if it is too long. */
static int child_path(const char *path, const char *name, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", path[1] != '\0' ? path : "", name);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* A description, from the prefetch when it has it.  New reference, or NULL with err. */
static json_t *describe(struct zwalk *w, const char *path, struct h5cd_error *err)
{
    json_t *meta = json_object_get(w->known, path);
    if (meta != NULL)
        return json_incref(meta);
    json_t *failed = json_object_get(w->failed, path);
    if (failed != NULL) {
        h5cd_fail(err, (enum h5cd_errcode)json_integer_value(json_array_get(failed, 0)), "%s",
                  json_string_value(json_array_get(failed, 1)));
        return NULL;
    }
    return h5index_meta(w->srv->h5index, w->file, path, err);
}

/* Adds the paths of a group's listed members to next, as the walk visits them.  False when
 * the level's bound is reached. */
static bool add_members(json_t *meta, const char *path, json_t *next, size_t *bytes)
{
    size_t i;
    json_t *member;
    json_array_foreach(json_object_get(meta, "members"), i, member)
    {
        const char *name = json_string_value(member);
        char child[H5CD_MAX_PATH_BYTES + 2];
        if (!member_listed(name) || child_path(path, name, child, sizeof(child)) < 0)
            continue;
        *bytes += strlen(child) + 1;
        if (*bytes > MAX_LEVEL_BYTES || json_array_append_new(next, json_string(child)) < 0)
            return false;
    }
    return true;
}

/*
 * Describes the hierarchy a level at a time (each group once, by object
 * id), so that its objects cost a few worker operations instead of one
 * each.  Only a cache for the walk: what it could not describe, or did not
 * reach (a group the walk enters by another name, past a bound), the walk
 * asks for itself, and it decides every outcome as before.
 */
static void prefetch(struct zwalk *w)
{
    json_t *level = json_pack("[s]", "/"), *groups = json_object();
    size_t objects = 0, kept = 0;
    for (int depth = 0; depth <= MAX_WALK_DEPTH && level != NULL && groups != NULL; depth++) {
        size_t n = json_array_size(level);
        if (n == 0 || objects + n > MAX_WALK_OBJECTS)
            break;
        objects += n;
        const char **paths = calloc(n, sizeof(*paths));
        json_t **metas = calloc(n, sizeof(*metas));
        struct h5cd_error *errs = calloc(n, sizeof(*errs));
        size_t *bytes = calloc(n, sizeof(*bytes));
        json_t *next = json_array();
        bool more = paths != NULL && metas != NULL && errs != NULL && bytes != NULL && next != NULL;
        if (more) {
            for (size_t i = 0; i < n; i++)
                paths[i] = json_string_value(json_array_get(level, i));
            h5index_meta_many(w->srv->h5index, w->file, paths, n, metas, errs, bytes);
        }
        size_t next_bytes = 0;
        for (size_t i = 0; more && i < n; i++) {
            if (metas[i] == NULL) {
                json_object_set_new(w->failed, paths[i],
                                    json_pack("[i,s]", (int)errs[i].code, errs[i].message));
                continue;
            }
            const char *kind = json_string_value(json_object_get(metas[i], "kind"));
            const char *id = json_string_value(json_object_get(metas[i], "object_id"));
            if (kind != NULL && strcmp(kind, "group") == 0 && id != NULL &&
                json_object_get(groups, id) == NULL) {
                json_object_set_new(groups, id, json_true());
                more = add_members(metas[i], paths[i], next, &next_bytes);
            }
            kept += bytes[i];
            if (kept <= MAX_PREFETCH_BYTES)
                json_object_set(w->known, paths[i], metas[i]);
        }
        for (size_t i = 0; metas != NULL && i < n; i++)
            json_decref(metas[i]);
        free(paths);
        free(metas);
        free(errs);
        free(bytes);
        json_decref(level);
        level = more ? next : NULL;
        if (!more)
            json_decref(next);
    }
    json_decref(level);
    json_decref(groups);
}

static int walk(struct zwalk *w, const char *path, const char *prefix, int depth);

static int walk_members(struct zwalk *w, json_t *meta, const char *path, const char *prefix,
                        int depth)
{
    size_t i;
    json_t *member;
    json_array_foreach(json_object_get(meta, "members"), i, member)
    {
        const char *name = json_string_value(member);
        char child[H5CD_MAX_PATH_BYTES + 2], child_prefix[2 * H5CD_MAX_PATH_BYTES + 2],
            zname[3 * H5CD_MAX_PATH_BYTES + 1];
        if (!member_listed(name)) {
            log_info("msg=\"left out of the Zarr view\" path=\"%s\" reason=\"member name not "
                     "representable\"",
                     path);
            continue;
        }
        if (child_path(path, name, child, sizeof(child)) < 0 ||
            zarr_name(name, zname, sizeof(zname)) < 0 ||
            snprintf(child_prefix, sizeof(child_prefix), "%s%s%s", prefix,
                     prefix[0] != '\0' ? "/" : "", zname) >= (int)sizeof(child_prefix))
            return h5cd_fail(w->err, H5CD_E_TOO_LARGE, "object path under %.200s too long", path);
        if (walk(w, child, child_prefix, depth + 1) < 0)
            return -1;
    }
    return 0;
}

/* Adds the metadata of the object at path (and, for groups, of its members)
 * under the key prefix.  0, or -1 with w->err (the walk stops). */
static int walk(struct zwalk *w, const char *path, const char *prefix, int depth)
{
    if (depth > MAX_WALK_DEPTH)
        return h5cd_fail(w->err, H5CD_E_TOO_LARGE, "groups nested deeper than %d levels at %.200s",
                         MAX_WALK_DEPTH, path);
    if (++w->objects > MAX_WALK_OBJECTS)
        return h5cd_fail(w->err, H5CD_E_TOO_LARGE, "the file has more than %d objects",
                         MAX_WALK_OBJECTS);
    struct h5cd_error err = {0};
    json_t *meta = describe(w, path, &err);
    if (meta == NULL) {
        if (depth > 0 && leave_out(err.code)) {
            log_info("msg=\"left out of the Zarr view\" path=\"%s\" code=%s reason=\"%s\"", path,
                     h5cd_errcode_name(err.code), err.message);
            return 0;
        }
        *w->err = err;
        return -1;
    }
    /* Links may reach one group by several paths, or loop back to a parent: a
     * group is walked once.  A dataset is listed under each of its names. */
    const char *kind = json_string_value(json_object_get(meta, "kind"));
    bool group = kind != NULL && strcmp(kind, "group") == 0;
    const char *object_id = json_string_value(json_object_get(meta, "object_id"));
    if (group && object_id != NULL && json_object_get(w->seen, object_id) != NULL) {
        log_info("msg=\"left out of the Zarr view\" path=\"%s\" reason=\"group already listed "
                 "under another name\"",
                 path);
        json_decref(meta);
        return 0;
    }
    if (group && object_id != NULL && json_object_set_new(w->seen, object_id, json_true()) < 0) {
        json_decref(meta);
        return h5cd_fail(w->err, H5CD_E_INTERNAL, "out of memory");
    }
    json_t *attrs = json_object_get(meta, "attrs");
    attrs = attrs != NULL ? json_incref(attrs) : json_object();
    int rc = 0;
    if (group) {
        rc = add_doc(w, prefix, ".zattrs", attrs);
        if (rc == 0)
            rc = add_doc(w, prefix, ".zgroup", zarrmeta_zgroup());
        if (rc == 0)
            rc = walk_members(w, meta, path, prefix, depth);
    } else {
        enum zarr_chunks mode;
        json_t *zarray = zarrmeta_zarray(meta, &mode);
        if (zarray != NULL) {
            rc = add_doc(w, prefix, ".zarray", zarray);
            if (rc == 0)
                rc = add_doc(w, prefix, ".zattrs", attrs);
            else
                json_decref(attrs);
        } else {
            log_info("msg=\"dataset has no Zarr form\" path=\"%s\"", path);
            json_decref(attrs);
        }
    }
    json_decref(meta);
    return rc;
}

static enum MHD_Result send_zmetadata(struct server *srv, struct MHD_Connection *conn,
                                      const struct remote_file *file)
{
    char *text = h5index_get_doc(srv->h5index, file, ZMETADATA_DOC);
    if (text == NULL) {
        struct h5cd_error err = {0};
        struct zwalk w = {.srv = srv,
                          .file = file,
                          .md = json_object(),
                          .seen = json_object(),
                          .known = json_object(),
                          .failed = json_object(),
                          .err = &err};
        int rc = -1;
        if (w.md != NULL && w.seen != NULL && w.known != NULL && w.failed != NULL) {
            prefetch(&w);
            rc = walk(&w, "/", "", 0);
        } else {
            h5cd_fail(&err, H5CD_E_INTERNAL, "out of memory");
        }
        json_decref(w.seen);
        json_decref(w.known);
        json_decref(w.failed);
        if (rc < 0) { /* nothing is cached: a later request walks again */
            json_decref(w.md);
            return http_send_error(srv, conn, &err);
        }
        json_t *doc = json_pack("{s:i, s:o}", "zarr_consolidated_format", 1, "metadata", w.md);
        text =
            doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII) : NULL;
        json_decref(doc);
        if (text == NULL)
            return http_fail(srv, conn, H5CD_E_INTERNAL, "out of memory");
        h5index_put_doc(srv->h5index, file, ZMETADATA_DOC, text);
    }
    return http_send_text(srv, conn, MHD_HTTP_OK, text, "application/json");
}

/* .zgroup / .zarray / .zattrs of one object. */
static enum MHD_Result send_object_meta(struct server *srv, struct MHD_Connection *conn,
                                        const struct remote_file *file, const char *path,
                                        const char *name)
{
    struct h5cd_error err = {0};
    json_t *meta = h5index_meta(srv->h5index, file, path, &err);
    if (meta == NULL)
        return http_send_error(srv, conn, &err);
    const char *kind = json_string_value(json_object_get(meta, "kind"));
    bool group = kind != NULL && strcmp(kind, "group") == 0;
    json_t *doc = NULL;
    enum zarr_chunks mode;
    if (strcmp(name, ".zattrs") == 0)
        doc = json_incref(json_object_get(meta, "attrs"));
    else if (strcmp(name, ".zgroup") == 0 && group)
        doc = zarrmeta_zgroup();
    else if (strcmp(name, ".zarray") == 0 && !group)
        doc = zarrmeta_zarray(meta, &mode);
    json_decref(meta);
    if (doc == NULL)
        return http_fail(srv, conn, H5CD_E_NOT_FOUND, "no %s at %s", name, path);
    return send_json_doc(srv, conn, doc);
}

/* HDF5 byte shuffle: byte j of every element first, for each j. */
static uint8_t *shuffle_bytes(const uint8_t *in, size_t len, size_t elem)
{
    uint8_t *out = malloc(len > 0 ? len : 1);
    if (out == NULL || elem <= 1 || len % elem != 0) {
        if (out != NULL)
            memcpy(out, in, len);
        return out;
    }
    size_t n = len / elem;
    for (size_t j = 0; j < elem; j++)
        for (size_t i = 0; i < n; i++)
            out[j * n + i] = in[i * elem + j];
    return out;
}

/* Bytes of a Blosc (format 2) header. */
#define BLOSC_HEADER_BYTES  16
#define BLOSC_FLAG_MEMCPYED 0x02

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * Wraps raw bytes in a Blosc frame flagged "memcpyed" (stored as is, as
 * Blosc itself does with data it cannot shrink): every Blosc decoder returns
 * the bytes unchanged, so the daemon needs no Blosc compressor to serve a
 * chunk whose optional Blosc filter HDF5 skipped (PyTables writes such).
 */
static uint8_t *blosc_memcpyed_frame(const uint8_t *in, size_t len, size_t *out_len)
{
    if (len == 0 || len > INT32_MAX - BLOSC_HEADER_BYTES)
        return NULL;
    uint8_t *out = malloc(len + BLOSC_HEADER_BYTES);
    if (out == NULL)
        return NULL;
    out[0] = 2; /* format version */
    out[1] = 1; /* codec format version */
    out[2] = BLOSC_FLAG_MEMCPYED;
    out[3] = 1; /* type size: only unshuffling uses it, and stored bytes are not shuffled */
    put_le32(out + 4, (uint32_t)len);                         /* bytes decoded */
    put_le32(out + 8, (uint32_t)len);                         /* block size */
    put_le32(out + 12, (uint32_t)(len + BLOSC_HEADER_BYTES)); /* bytes of the frame */
    memcpy(out + BLOSC_HEADER_BYTES, in, len);
    *out_len = len + BLOSC_HEADER_BYTES;
    return out;
}

/*
 * A chunk stored with some filters skipped (HDF5 skips an optional filter
 * that fails or would not shrink the data: deflate, PyTables' Blosc) does
 * not match the codecs .zarray names: decode it, then encode it again with
 * every codec.  Shuffle and zlib are re-applied; Blosc gets a stored frame.
 */
static int reencode(json_t *zarray, uint8_t **data, size_t *len, struct h5cd_error *err)
{
    size_t i;
    json_t *codec;
    json_array_foreach(json_object_get(zarray, "filters"), i, codec)
    {
        const char *id = json_string_value(json_object_get(codec, "id"));
        uint8_t *next = NULL;
        size_t next_len = 0;
        if (id != NULL && strcmp(id, "shuffle") == 0) {
            size_t elem = (size_t)json_integer_value(json_object_get(codec, "elementsize"));
            next = shuffle_bytes(*data, *len, elem);
            next_len = *len;
        } else if (id != NULL && strcmp(id, "zlib") == 0) {
            uLongf bound = compressBound((uLong)*len);
            next = malloc(bound);
            int level = (int)json_integer_value(json_object_get(codec, "level"));
            if (next != NULL && compress2(next, &bound, *data, (uLong)*len, level) != Z_OK) {
                free(next);
                next = NULL;
            }
            next_len = bound;
        } else if (id != NULL && strcmp(id, "blosc") == 0) {
            next = blosc_memcpyed_frame(*data, *len, &next_len);
            if (next == NULL && (*len == 0 || *len > INT32_MAX - BLOSC_HEADER_BYTES))
                return h5cd_fail(err, H5CD_E_UNSUPPORTED,
                                 "a chunk of %zu bytes cannot be framed for blosc", *len);
        } else {
            return h5cd_fail(err, H5CD_E_UNSUPPORTED,
                             "chunk stored with skipped filters cannot be re-encoded for %s",
                             id != NULL ? id : "?");
        }
        if (next == NULL)
            return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
        free(*data);
        *data = next;
        *len = next_len;
    }
    return 0;
}

/*
 * A subarray dataset's Zarr keys have one more "0" per subarray dimension
 * (its chunks span the whole subarray): the dataset's own key, without them,
 * into out ("0" for a scalar dataset).  0, or -1 if the key is not such a key.
 */
static int subarray_key(const char *key, size_t extra, char *out, size_t cap)
{
    size_t len = strnlen(key, cap);
    if (len >= cap)
        return -1;
    memcpy(out, key, len + 1);
    for (size_t i = 0; i < extra; i++) {
        char *dot = strrchr(out, '.');
        char *last = dot != NULL ? dot + 1 : out;
        if (strcmp(last, "0") != 0)
            return -1;
        if (dot == NULL) { /* every component was a subarray one: a scalar dataset */
            return i + 1 == extra ? 0 : -1;
        }
        *dot = '\0';
    }
    return 0;
}

static enum MHD_Result send_chunk(struct server *srv, struct MHD_Connection *conn,
                                  const struct remote_file *file, const char *path, const char *key)
{
    struct h5cd_error err = {0};
    json_t *meta = h5index_meta(srv->h5index, file, path, &err);
    if (meta == NULL)
        return http_send_error(srv, conn, &err);
    enum zarr_chunks mode = ZARR_CHUNKS_DECODED;
    json_t *zarray = zarrmeta_zarray(meta, &mode);
    json_t *elem_dtype, *subdims;
    zarrmeta_split_dtype(json_object_get(meta, "dtype"), &elem_dtype, &subdims);
    size_t extra_dims = json_array_size(subdims);
    json_decref(meta);
    char own_key[H5CD_MAX_KEY_BYTES + 1];
    if (extra_dims > 0 && subarray_key(key, extra_dims, own_key, sizeof(own_key)) < 0) {
        json_decref(zarray);
        return http_fail(srv, conn, H5CD_E_NOT_FOUND, "no chunk '%.64s'", key);
    }
    if (extra_dims > 0)
        key = own_key;
    struct h5dataset ds;
    uint64_t coords[H5CD_MAX_RANK];
    char why[128];
    struct h5chunk_loc loc = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = -1;
    bool budgeted = false; /* data came from a worker: h5index_free_values */
    if (zarray == NULL)
        h5cd_fail(&err, H5CD_E_NOT_FOUND, "%s has no Zarr form", path);
    else if (h5index_dataset(srv->h5index, file, path, &ds, &err) < 0)
        ;
    else if (chunkkey_parse(&ds.grid, key, coords, why, sizeof(why)) < 0)
        h5cd_fail(&err, H5CD_E_NOT_FOUND, "no chunk '%.64s': %s", key, why);
    else if (ds.layout != H5LAYOUT_COMPACT &&
             h5index_locate(srv->h5index, file, &ds, coords, 1, &loc, &err) < 0)
        ;
    else if (ds.layout == H5LAYOUT_CHUNKED && !loc.allocated &&
             !json_is_null(json_object_get(zarray, "fill_value")))
        h5cd_fail(&err, H5CD_E_CHUNK_NOT_ALLOCATED, "the chunk was never written");
    else if (mode == ZARR_CHUNKS_RAW && loc.allocated && loc.filter_mask == 0) {
        data = malloc(loc.size > 0 ? (size_t)loc.size : 1);
        len = (size_t)loc.size;
        if (data == NULL)
            h5cd_fail(&err, H5CD_E_INTERNAL, "out of memory");
        else
            rc = remote_read_exact(srv->remote, file, loc.offset, loc.size, data, &err);
    } else if (h5index_check_decode_size(srv->h5index, &ds, &err) == 0) {
        struct prefetch_progress progress;
        if (prefetch_chunks(srv->h5index, srv->remote, file, &ds, coords, 1,
                            srv->cfg->batch_inflight_bytes, NULL, NULL, &progress, &err) == 0 &&
            h5index_decode_chunk(srv->h5index, file, &ds, coords, &data, &len, &err) == 0) {
            rc = 0;
            budgeted = true;
            if (mode == ZARR_CHUNKS_RAW) {
                /* Re-encoding replaces the buffer: work on a plain copy. */
                uint8_t *copy = malloc(len > 0 ? len : 1);
                if (copy != NULL)
                    memcpy(copy, data, len);
                h5index_free_values(data);
                data = copy;
                budgeted = false;
                rc = copy != NULL ? reencode(zarray, &data, &len, &err)
                                  : h5cd_fail(&err, H5CD_E_INTERNAL, "out of memory");
            }
        }
    }
    json_decref(zarray);
    MHD_ContentReaderFreeCallback release = budgeted ? h5index_free_values : free;
    if (rc < 0) {
        release(data);
        return http_send_error(srv, conn, &err);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(len, data, release);
    if (resp == NULL) {
        release(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
    STATS_INC(&srv->stats, chunks_served);
    http_count_sent(srv, len);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result route_zarr(struct server *srv, struct MHD_Connection *conn, const char *target)
{
    const char *rest = target + strlen(ZARR_PREFIX);
    const char *slash = strchr(rest, '/');
    if (slash == NULL)
        return http_fail(srv, conn, H5CD_E_NOT_FOUND, "use /zarr/v2/{id}/{key}");
    char id[H5CD_MAX_URL_BYTES * 2];
    char url[H5CD_MAX_URL_BYTES + 1];
    size_t idlen = (size_t)(slash - rest);
    if (idlen == 0 || idlen >= sizeof(id))
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST, "malformed Zarr id");
    memcpy(id, rest, idlen);
    id[idlen] = '\0';
    if (zarrmeta_decode_id(id, url, sizeof(url)) < 0)
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST,
                         "the Zarr id is not an unpadded base64url URL (see /v1/zarr)");
    struct remote_file file;
    struct h5cd_error err = {0};
    if (remote_open_as(srv->remote, url, http_dandi_token(conn), srv->cfg->h5_prefix_bytes, &file,
                       &err) < 0)
        return http_send_error(srv, conn, &err);
    const char *key = slash + 1;
    if (strcmp(key, ".zmetadata") == 0)
        return send_zmetadata(srv, conn, &file);
    const char *last = strrchr(key, '/');
    const char *name = last != NULL ? last + 1 : key;
    size_t parent_len = last != NULL ? (size_t)(last - key) : 0;
    char path[H5CD_MAX_PATH_BYTES + 2];
    if (parent_len > H5CD_MAX_PATH_BYTES)
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST, "path too long");
    object_path(key, parent_len, path, sizeof(path));
    if (name[0] == '.')
        return send_object_meta(srv, conn, &file, path, name);
    if (name[0] == '\0')
        return http_fail(srv, conn, H5CD_E_NOT_FOUND, "no such key");
    return send_chunk(srv, conn, &file, path, name);
}
