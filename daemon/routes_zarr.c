/*
 * routes_zarr.c - the Zarr v2 view of a remote HDF5 file,
 * GET /zarr/v2/{id}/{key} (id: the URL as unpadded base64url), and
 * GET /v1/zarr?url=U which tells a client its base.
 *
 * Keys: ".zmetadata" (consolidated metadata of the whole file, built by one
 * walk and cached with the file's version), "{path}/.zgroup",
 * "{path}/.zarray", "{path}/.zattrs", and "{dataset path}/{chunk key}".
 * A chunk is served as stored when .zarray names codecs that undo the
 * dataset's filters, else decoded; a chunk never written is a 404 so zarr
 * fills it with fill_value.  Runs on the connection's thread.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "h5decode.h"
#include "http.h"
#include "log.h"
#include "prefetch.h"
#include "routes.h"
#include "zarrmeta.h"

#define MAX_WALK_OBJECTS 200000
#define ZARR_PREFIX      "/zarr/v2/"
#define ZMETADATA_DOC    "#zmetadata"

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
    if (remote_open(srv->remote, url, srv->cfg->h5_prefix_bytes, &file, &err) < 0)
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

/* Adds the metadata of the object at path (and, for groups, of its members) to md. */
static void walk(struct server *srv, const struct remote_file *file, const char *path, json_t *md,
                 size_t *budget)
{
    if (*budget == 0)
        return;
    (*budget)--;
    struct h5cd_error err = {0};
    json_t *meta = h5index_meta(srv->h5index, file, path, &err);
    if (meta == NULL) {
        log_info("msg=\"left out of the Zarr view\" path=\"%s\" code=%s reason=\"%s\"", path,
                 h5cd_errcode_name(err.code), err.message);
        return;
    }
    const char *rel = path[1] != '\0' ? path + 1 : "";
    char key[H5CD_MAX_PATH_BYTES + 32];
    const char *sep = rel[0] != '\0' ? "/" : "";
    const char *kind = json_string_value(json_object_get(meta, "kind"));
    json_t *attrs = json_object_get(meta, "attrs");
    if (attrs == NULL)
        attrs = json_object();
    else
        json_incref(attrs);
    if (kind != NULL && strcmp(kind, "group") == 0) {
        snprintf(key, sizeof(key), "%s%s.zattrs", rel, sep);
        json_object_set(md, key, attrs);
        snprintf(key, sizeof(key), "%s%s.zgroup", rel, sep);
        json_object_set_new(md, key, zarrmeta_zgroup());
        size_t i;
        json_t *member;
        json_array_foreach(json_object_get(meta, "members"), i, member)
        {
            const char *name = json_string_value(member);
            char child[H5CD_MAX_PATH_BYTES + 2];
            if (name == NULL || snprintf(child, sizeof(child), "%s/%s", path[1] != '\0' ? path : "",
                                         name) >= (int)sizeof(child))
                continue;
            walk(srv, file, child, md, budget);
        }
    } else {
        enum zarr_chunks mode;
        json_t *zarray = zarrmeta_zarray(meta, &mode);
        snprintf(key, sizeof(key), "%s%s.zarray", rel, sep);
        if (zarray != NULL) {
            json_object_set_new(md, key, zarray);
            snprintf(key, sizeof(key), "%s%s.zattrs", rel, sep);
            json_object_set(md, key, attrs);
        } else {
            log_info("msg=\"dataset has no Zarr form\" path=\"%s\"", path);
        }
    }
    json_decref(attrs);
    json_decref(meta);
}

static enum MHD_Result send_zmetadata(struct server *srv, struct MHD_Connection *conn,
                                      const struct remote_file *file)
{
    char *text = h5index_get_doc(srv->h5index, file, ZMETADATA_DOC);
    if (text == NULL) {
        json_t *md = json_object();
        size_t budget = MAX_WALK_OBJECTS;
        walk(srv, file, "/", md, &budget);
        json_t *doc = json_pack("{s:i, s:o}", "zarr_consolidated_format", 1, "metadata", md);
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

/*
 * A chunk stored with some filters skipped (deflate is optional in HDF5 and
 * skipped when it would not shrink the data) does not match the codecs
 * .zarray names: decode it, then encode it again with every codec.  Only
 * shuffle and zlib can be re-applied here.
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

static enum MHD_Result send_chunk(struct server *srv, struct MHD_Connection *conn,
                                  const struct remote_file *file, const char *path, const char *key)
{
    struct h5cd_error err = {0};
    json_t *meta = h5index_meta(srv->h5index, file, path, &err);
    if (meta == NULL)
        return http_send_error(srv, conn, &err);
    enum zarr_chunks mode = ZARR_CHUNKS_DECODED;
    json_t *zarray = zarrmeta_zarray(meta, &mode);
    json_decref(meta);
    struct h5dataset ds;
    uint64_t coords[H5CD_MAX_RANK];
    char why[128];
    struct h5chunk_loc loc = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = -1;
    if (zarray == NULL)
        h5cd_fail(&err, H5CD_E_NOT_FOUND, "%s has no Zarr form", path);
    else if (h5index_dataset(srv->h5index, file, path, &ds, &err) < 0)
        ;
    else if (chunkkey_parse(&ds.grid, key, coords, why, sizeof(why)) < 0)
        h5cd_fail(&err, H5CD_E_NOT_FOUND, "no chunk '%.64s': %s", key, why);
    else if (ds.layout != H5LAYOUT_COMPACT &&
             h5index_locate(srv->h5index, file, &ds, coords, 1, &loc, &err) < 0)
        ;
    else if (ds.layout == H5LAYOUT_CHUNKED && !loc.allocated)
        h5cd_fail(&err, H5CD_E_CHUNK_NOT_ALLOCATED, "the chunk was never written");
    else if (mode == ZARR_CHUNKS_RAW && loc.filter_mask == 0) {
        data = malloc(loc.size > 0 ? (size_t)loc.size : 1);
        len = (size_t)loc.size;
        if (data == NULL)
            h5cd_fail(&err, H5CD_E_INTERNAL, "out of memory");
        else
            rc = remote_read(srv->remote, file, loc.offset, loc.size, data, &err);
    } else {
        struct prefetch_progress progress;
        if (prefetch_chunks(srv->h5index, srv->remote, file, &ds, coords, 1,
                            srv->cfg->batch_inflight_bytes, NULL, NULL, &progress, &err) == 0 &&
            h5decode_remote_chunk(srv->h5index, file, &ds, coords, &data, &len, &err) == 0)
            rc = mode == ZARR_CHUNKS_RAW ? reencode(zarray, &data, &len, &err) : 0;
    }
    json_decref(zarray);
    if (rc < 0) {
        free(data);
        return http_send_error(srv, conn, &err);
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(data);
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
    if (remote_open(srv->remote, url, srv->cfg->h5_prefix_bytes, &file, &err) < 0)
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
