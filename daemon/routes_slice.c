/*
 * routes_slice.c - GET /v1/slice?url=U&path=P&select=S&format=npy|raw|json:
 * decoded values of a NumPy-like selection, for people and scripts.
 *
 * The chunks the selection touches are fetched first as one coalesced,
 * concurrent batch (lib/prefetch), then libhdf5 decodes the selection from
 * the cache.  The result is bounded by max_slice_bytes (413 beyond); JSON
 * by H5CD_MAX_JSON_ELEMENTS values.  Runs on the connection's thread.
 */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "prefetch.h"
#include "routes.h"
#include "zarrmeta.h"

#define NPY_HEADER_MAX            4096
#define MAX_SLICE_PREFETCH_CHUNKS 100000

/* Decoded values of the selection (from a worker: free with h5index_free_values). */
struct slice_call {
    uint8_t *out;
    size_t len;
    enum h5decode_format format;
    size_t elem_size;
};

/* A structured dtype (Zarr's [["name", "<i4"], ["v", "<f8", [3]]]) as an .npy descr:
 * [('name', '<i4'), ('v', '<f8', (3,))].  0, or -1 if it does not fit. */
static int structured_descr(json_t *fields, char *out, size_t cap)
{
    size_t w = 0;
    int n = snprintf(out, cap, "[");
    if (n < 0 || (size_t)n >= cap)
        return -1;
    w = (size_t)n;
    size_t i;
    json_t *field;
    json_array_foreach(fields, i, field)
    {
        const char *name = json_string_value(json_array_get(field, 0));
        json_t *type = json_array_get(field, 1);
        json_t *shape = json_array_get(field, 2);
        char inner[1024];
        if (name == NULL || strchr(name, '\'') != NULL || strchr(name, '\\') != NULL)
            return -1;
        if (json_is_string(type))
            snprintf(inner, sizeof(inner), "'%s'", json_string_value(type));
        else if (!json_is_array(type) || structured_descr(type, inner, sizeof(inner)) < 0)
            return -1;
        char dims[256] = "";
        if (json_is_array(shape)) {
            size_t dw = (size_t)snprintf(dims, sizeof(dims), ", (");
            size_t j;
            json_t *dim;
            json_array_foreach(shape, j, dim) dw +=
                (size_t)snprintf(dims + dw, sizeof(dims) - (dw < sizeof(dims) ? dw : 0), "%lld,",
                                 (long long)json_integer_value(dim));
            if (dw + 2 >= sizeof(dims))
                return -1;
            memcpy(dims + dw, ")", 2);
        }
        n = snprintf(out + w, cap - w, "%s('%s', %s%s)", i > 0 ? ", " : "", name, inner, dims);
        if (n < 0 || (size_t)n >= cap - w)
            return -1;
        w += (size_t)n;
    }
    if (w + 2 > cap)
        return -1;
    memcpy(out + w, "]", 2);
    return 0;
}

/* "(3, 4)", "(5,)" or "()" */
static void shape_tuple(const uint64_t *shape, int rank, char *out, size_t cap)
{
    size_t w = (size_t)snprintf(out, cap, "(");
    for (int d = 0; d < rank && w < cap; d++)
        w += (size_t)snprintf(out + w, cap - w, d == 0 ? "%" PRIu64 : ", %" PRIu64, shape[d]);
    if (w < cap)
        snprintf(out + w, cap - w, rank == 1 ? ",)" : ")");
}

/* Builds a NumPy .npy (format 1.0) file around the values. */
static uint8_t *npy_wrap(const char *dtype, bool structured, const uint64_t *shape, int rank,
                         const uint8_t *data, size_t len, size_t *outlen)
{
    char tuple[1024], header[NPY_HEADER_MAX];
    shape_tuple(shape, rank, tuple, sizeof(tuple));
    int n = snprintf(header, sizeof(header),
                     structured ? "{'descr': %s, 'fortran_order': False, 'shape': %s, }"
                                : "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     dtype, tuple);
    if (n < 0 || (size_t)n >= sizeof(header) - 64)
        return NULL;
    /* Magic (6) + version (2) + length (2) + header + padding + '\n': a multiple of 64. */
    size_t hlen = (size_t)n + 1;
    size_t pad = (64 - (10 + hlen) % 64) % 64;
    hlen += pad;
    uint8_t *out = malloc(10 + hlen + len);
    if (out == NULL)
        return NULL;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (uint8_t)(hlen & 0xff);
    out[9] = (uint8_t)(hlen >> 8);
    memcpy(out + 10, header, (size_t)n);
    memset(out + 10 + n, ' ', pad);
    out[10 + hlen - 1] = '\n';
    if (len > 0)
        memcpy(out + 10 + hlen, data, len);
    *outlen = 10 + hlen + len;
    return out;
}

/* IEEE 754 binary16 to double. */
static double half_to_double(uint16_t h)
{
    int exponent = (h >> 10) & 0x1f;
    double mantissa = h & 0x3ff;
    double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (exponent == 0)
        return sign * ldexp(mantissa, -24);
    if (exponent == 31)
        return mantissa != 0 ? NAN : sign * INFINITY;
    return sign * ldexp(mantissa + 1024, exponent - 25);
}

/* One value of a simple dtype ("<i2", ">f8", "|u1", "|b1", "|S8") as JSON.
 * Sets *not_utf8 for a string that is not UTF-8: JSON has no form for it. */
static json_t *json_value(const char *dtype, const uint8_t *p, size_t size, bool *not_utf8)
{
    char kind = dtype[1];
    bool big = dtype[0] == '>';
    uint8_t v[16] = {0};
    if (size > sizeof(v) && kind != 'S')
        return json_null();
    if (kind != 'S')
        for (size_t i = 0; i < size; i++)
            v[i] = p[big ? size - 1 - i : i]; /* to little-endian */
    uint64_t u = 0;
    for (size_t i = 0; i < size && i < 8; i++)
        u |= (uint64_t)v[i] << (8 * i);
    switch (kind) {
    case 'b':
        return json_boolean(u != 0);
    case 'u': {
        if (u <= INT64_MAX)
            return json_integer((json_int_t)u);
        char digits[24]; /* beyond JSON integers: a decimal string, as /v1/meta writes it */
        snprintf(digits, sizeof(digits), "%llu", (unsigned long long)u);
        return json_string(digits);
    }
    case 'i': {
        int64_t s = size < 8 && (u >> (8 * size - 1)) & 1 ? (int64_t)(u | (~0ULL << (8 * size)))
                                                          : (int64_t)u;
        return json_integer(s);
    }
    case 'f': {
        double d;
        if (size == 4) {
            float f;
            uint32_t w = (uint32_t)u;
            memcpy(&f, &w, 4);
            d = f;
        } else if (size == 8) {
            memcpy(&d, &u, 8);
        } else if (size == 2) {
            d = half_to_double((uint16_t)u);
        } else {
            return json_null();
        }
        if (isnan(d))
            return json_string("NaN");
        if (isinf(d))
            return json_string(d > 0 ? "Infinity" : "-Infinity");
        return json_real(d);
    }
    case 'S': {
        /* NumPy's bytes_: trailing NULs are padding, NULs inside are kept. */
        size_t n = size;
        while (n > 0 && p[n - 1] == '\0')
            n--;
        json_t *s = json_stringn((const char *)p, n);
        if (s == NULL)
            *not_utf8 = true;
        return s != NULL ? s : json_null();
    }
    default:
        return json_null();
    }
}

/* Nests values[first..] along the result's dimensions. */
static json_t *json_nest(json_t *flat, const uint64_t *shape, int rank, int d, size_t *next)
{
    if (d == rank)
        return json_incref(json_array_get(flat, (*next)++));
    json_t *arr = json_array();
    for (uint64_t i = 0; i < shape[d]; i++)
        json_array_append_new(arr, json_nest(flat, shape, rank, d + 1, next));
    return arr;
}

/* Decodes numcodecs VLenUTF8 into a JSON array of strings. */
static json_t *json_strings(const uint8_t *p, size_t len, bool *not_utf8)
{
    json_t *arr = json_array();
    if (len < 4)
        return arr;
    uint32_t n = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    size_t pos = 4;
    for (uint32_t i = 0; i < n && pos + 4 <= len; i++) {
        uint32_t sl = (uint32_t)p[pos] | (uint32_t)p[pos + 1] << 8 | (uint32_t)p[pos + 2] << 16 |
                      (uint32_t)p[pos + 3] << 24;
        pos += 4;
        if (sl > len - pos)
            break;
        json_t *s = json_stringn((const char *)p + pos, sl);
        if (s == NULL)
            *not_utf8 = true;
        json_array_append_new(arr, s != NULL ? s : json_null());
        pos += sl;
    }
    return arr;
}

/* Bytes per element of a dtype spelling (simple or structured); 0 if malformed. */
static size_t dtype_bytes(json_t *dtype, int depth)
{
    const char *simple = json_string_value(dtype);
    if (simple != NULL) {
        size_t n = 0;
        for (const char *p = simple + (simple[0] != '\0' ? 2 : 0); *p >= '0' && *p <= '9'; p++)
            n = n < (1u << 24) ? n * 10 + (size_t)(*p - '0') : 0;
        return n;
    }
    if (!json_is_array(dtype) || depth > 8)
        return 0;
    size_t total = 0, i;
    json_t *field;
    json_array_foreach(dtype, i, field)
    {
        size_t one = dtype_bytes(json_array_get(field, 1), depth + 1);
        size_t j;
        json_t *dim;
        json_array_foreach(json_array_get(field, 2), j, dim)
        {
            json_int_t d = json_integer_value(dim);
            one = d > 0 && d < (1 << 24) && one < (1u << 24) ? one * (size_t)d : 0;
        }
        if (one == 0)
            return 0;
        total += one;
    }
    return total;
}

/* True if a dtype holds opaque bytes somewhere (they have no JSON form). */
static bool dtype_has_opaque(json_t *dtype)
{
    const char *simple = json_string_value(dtype);
    if (simple != NULL)
        return simple[0] != '\0' && simple[1] == 'V';
    size_t i;
    json_t *field;
    json_array_foreach(dtype, i, field) if (dtype_has_opaque(json_array_get(field, 1))) return true;
    return false;
}

static json_t *element_json(json_t *dtype, const uint8_t *p, bool *not_utf8);

/* count values of dtype at p nested along dims[0..rank). */
static json_t *nested_json(json_t *dtype, size_t esize, json_t *dims, size_t d, const uint8_t **p,
                           bool *not_utf8)
{
    if (d == json_array_size(dims)) {
        json_t *v = element_json(dtype, *p, not_utf8);
        *p += esize;
        return v;
    }
    json_t *arr = json_array();
    json_int_t n = json_integer_value(json_array_get(dims, d));
    for (json_int_t i = 0; arr != NULL && i < n; i++)
        if (json_array_append_new(arr, nested_json(dtype, esize, dims, d + 1, p, not_utf8)) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    return arr;
}

/* One packed element of a dtype: a number/string, or an object of fields (a
 * field of subarray shape is a nested list).  NULL when memory ran out. */
static json_t *element_json(json_t *dtype, const uint8_t *p, bool *not_utf8)
{
    if (json_is_string(dtype))
        return json_value(json_string_value(dtype), p, dtype_bytes(dtype, 0), not_utf8);
    json_t *obj = json_object();
    size_t i;
    json_t *field;
    json_array_foreach(dtype, i, field)
    {
        json_t *type = json_array_get(field, 1);
        size_t esize = dtype_bytes(type, 0);
        json_t *dims = json_array_get(field, 2);
        json_t *v = dims != NULL ? nested_json(type, esize, dims, 0, &p, not_utf8)
                                 : element_json(type, p, not_utf8);
        if (dims == NULL)
            p += esize;
        if (obj == NULL ||
            json_object_set_new(obj, json_string_value(json_array_get(field, 0)), v) < 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

/* The JSON answer; NULL when out of memory or, with *not_utf8 set, when a
 * string value is not UTF-8 (a JSON string cannot hold it; null would not be
 * the value h5py reads). */
static char *json_document(json_t *elem_dtype, const char *dtype, const struct slice_call *sc,
                           const uint64_t *shape, int rank, bool *not_utf8)
{
    json_t *flat;
    if (sc->format == H5DECODE_VLEN_UTF8) {
        flat = json_strings(sc->out, sc->len, not_utf8);
    } else {
        flat = json_array();
        size_t esize = dtype_bytes(elem_dtype, 0);
        size_t n = esize > 0 ? sc->len / esize : 0;
        for (size_t i = 0; i < n; i++)
            json_array_append_new(flat, element_json(elem_dtype, sc->out + i * esize, not_utf8));
    }
    if (*not_utf8) {
        json_decref(flat);
        return NULL;
    }
    size_t next = 0;
    json_t *values =
        rank == 0 ? json_incref(json_array_get(flat, 0)) : json_nest(flat, shape, rank, 0, &next);
    json_decref(flat);
    json_t *shape_json = json_array();
    for (int d = 0; d < rank; d++)
        json_array_append_new(shape_json, json_integer((json_int_t)shape[d]));
    json_t *dt = sc->format == H5DECODE_VLEN_UTF8 ? json_string(dtype) : json_incref(elem_dtype);
    json_t *doc = json_pack("{s:o, s:o, s:o}", "dtype", dt, "shape", shape_json, "data",
                            values != NULL ? values : json_null());
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    return text;
}

/* Sends data, released with `release` once sent. */
static enum MHD_Result send_bytes(struct server *srv, struct MHD_Connection *conn, uint8_t *data,
                                  size_t len, MHD_ContentReaderFreeCallback release,
                                  const char *type, const char *dtype, const uint64_t *shape,
                                  int rank)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(len, data, release);
    if (resp == NULL) {
        release(data);
        return MHD_NO;
    }
    char tuple[1024];
    size_t w = 0;
    tuple[0] = '\0';
    for (int d = 0; d < rank && w < sizeof(tuple); d++)
        w += (size_t)snprintf(tuple + w, sizeof(tuple) - w, d == 0 ? "%" PRIu64 : ",%" PRIu64,
                              shape[d]);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, "X-H5chunkd-Dtype", dtype);
    MHD_add_response_header(resp, "X-H5chunkd-Shape", tuple);
    http_count_sent(srv, len);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Fetches the stored bytes of every chunk the selection needs, as one batch. */
static int warm_selection(struct server *srv, const struct remote_file *file,
                          const struct h5dataset *ds, const struct selection *sel,
                          struct h5cd_error *err)
{
    uint64_t *coords = NULL;
    size_t n = 0;
    struct h5cd_error ignored = {0};
    /* Too many chunks to list: libhdf5 then reads them through the cache one by one. */
    if (prefetch_selection_chunks(ds, sel, MAX_SLICE_PREFETCH_CHUNKS, &coords, &n, &ignored) < 0)
        return 0;
    struct prefetch_progress progress;
    int rc = prefetch_chunks(srv->h5index, srv->remote, file, ds, coords, n,
                             srv->cfg->batch_inflight_bytes, NULL, NULL, &progress, err);
    free(coords);
    return rc;
}

static enum MHD_Result slice_answer(struct server *srv, struct MHD_Connection *conn,
                                    const struct remote_file *file, const char *path,
                                    const char *select, const char *format, json_t *elem_dtype,
                                    json_t *subdims, const char *dtype, bool has_dtype,
                                    const char *h5type);

enum MHD_Result route_slice(struct server *srv, struct MHD_Connection *conn)
{
    const char *url = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "url");
    const char *path = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "path");
    const char *select = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "select");
    const char *format = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "format");
    if (format == NULL)
        format = "npy";
    if (strcmp(format, "npy") != 0 && strcmp(format, "raw") != 0 && strcmp(format, "json") != 0)
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST, "format must be npy, raw or json");
    if (url == NULL || url[0] == '\0' || path == NULL)
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST, "missing query parameter 'url' or 'path'");
    struct remote_file file;
    struct h5cd_error err = {0};
    if (remote_open_as(srv->remote, url, http_dandi_token(conn), srv->cfg->h5_prefix_bytes, &file,
                       &err) < 0)
        return http_send_error(srv, conn, &err);
    json_t *meta = h5index_meta(srv->h5index, &file, path, &err);
    if (meta == NULL)
        return http_send_error(srv, conn, &err);
    /* The element dtype (a subarray dtype's base) and the subarray's dimensions,
     * which NumPy and h5py append to the selection's shape. */
    json_t *elem_dtype = NULL, *subdims = NULL;
    zarrmeta_split_dtype(json_object_get(meta, "dtype"), &elem_dtype, &subdims);
    const char *h5type = json_string_value(json_object_get(meta, "h5type"));
    char h5type_copy[64];
    snprintf(h5type_copy, sizeof(h5type_copy), "%s", h5type != NULL ? h5type : "unknown");
    char dtype[2048];
    bool structured = json_is_array(elem_dtype);
    bool has_dtype = json_is_string(elem_dtype) ||
                     (structured && structured_descr(elem_dtype, dtype, sizeof(dtype)) == 0);
    if (json_is_string(elem_dtype))
        snprintf(dtype, sizeof(dtype), "%s", json_string_value(elem_dtype));
    else if (!structured)
        snprintf(dtype, sizeof(dtype), "|O");
    json_incref(elem_dtype);
    json_incref(subdims);
    json_decref(meta);
    enum MHD_Result ret = slice_answer(srv, conn, &file, path, select, format, elem_dtype, subdims,
                                       dtype, has_dtype, h5type_copy);
    json_decref(elem_dtype);
    json_decref(subdims);
    return ret;
}

static enum MHD_Result slice_answer(struct server *srv, struct MHD_Connection *conn,
                                    const struct remote_file *file, const char *path,
                                    const char *select, const char *format, json_t *elem_dtype,
                                    json_t *subdims, const char *dtype, bool has_dtype,
                                    const char *h5type)
{
    struct h5cd_error err = {0};
    bool structured = json_is_array(elem_dtype);
    struct h5dataset ds;
    if (h5index_dataset(srv->h5index, file, path, &ds, &err) < 0)
        return http_send_error(srv, conn, &err);
    struct selection sel;
    char why[128];
    if (selection_parse(select, ds.grid.rank, ds.grid.shape, &sel, why, sizeof(why)) < 0)
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST, "bad select: %s", why);
    bool json = strcmp(format, "json") == 0;
    bool vlen = elem_dtype == NULL &&
                (strcmp(h5type, "vlen string") == 0 || strcmp(h5type, "reference") == 0);
    if (elem_dtype == NULL && !vlen)
        return http_fail(srv, conn, H5CD_E_UNSUPPORTED,
                         "values of HDF5 type '%s' cannot be served (no exact NumPy or JSON form)",
                         h5type);
    if (json && !vlen && dtype_has_opaque(elem_dtype))
        return http_fail(srv, conn, H5CD_E_UNSUPPORTED,
                         "opaque values have no JSON form: use format=npy");
    uint64_t per_elem = 1;
    size_t i;
    json_t *dim;
    json_array_foreach(subdims, i, dim) per_elem *= (uint64_t)json_integer_value(dim);
    uint64_t nvalues = selection_elements(&sel);
    if (json && (nvalues > H5CD_MAX_JSON_ELEMENTS || per_elem > H5CD_MAX_JSON_ELEMENTS ||
                 nvalues * per_elem > H5CD_MAX_JSON_ELEMENTS))
        return http_fail(srv, conn, H5CD_E_TOO_LARGE,
                         "JSON is for small selections: at most %d values (use format=npy)",
                         H5CD_MAX_JSON_ELEMENTS);
    /* The decoded values, within the daemon's memory budget. */
    uint64_t elems = selection_elements(&sel);
    uint64_t need = ds.elem_size != 0 && elems > srv->cfg->max_slice_bytes / ds.elem_size
                        ? srv->cfg->max_slice_bytes
                        : elems * ds.elem_size;
    if (!http_charge(srv, need))
        return http_fail(srv, conn, H5CD_E_UNAVAILABLE,
                         "the daemon's memory budget is in use by other requests; retry");
    if (warm_selection(srv, file, &ds, &sel, &err) < 0)
        return http_send_error(srv, conn, &err);
    struct h5slice values;
    if (h5index_slice(srv->h5index, file, &ds, &sel, srv->cfg->max_slice_bytes, &values, &err) < 0)
        return http_send_error(srv, conn, &err);
    struct slice_call sc = {.out = values.data,
                            .len = values.len,
                            .format = values.format,
                            .elem_size = values.elem_size};
    uint64_t shape[2 * H5CD_MAX_RANK];
    int rank = selection_shape(&sel, shape);
    json_array_foreach(subdims, i, dim)
    {
        if (rank < 2 * H5CD_MAX_RANK)
            shape[rank++] = (uint64_t)json_integer_value(dim);
    }
    if (sc.format == H5DECODE_FIXED && !vlen &&
        (dtype_bytes(elem_dtype, 0) == 0 ||
         (uint64_t)sc.elem_size != dtype_bytes(elem_dtype, 0) * per_elem)) {
        h5index_free_values(sc.out);
        return http_fail(srv, conn, H5CD_E_INTERNAL,
                         "decoded element size %zu does not match dtype %s", sc.elem_size, dtype);
    }
    if (json) {
        bool not_utf8 = false;
        char *text = json_document(elem_dtype, dtype, &sc, shape, rank, &not_utf8);
        h5index_free_values(sc.out);
        if (text == NULL && not_utf8)
            return http_fail(srv, conn, H5CD_E_UNSUPPORTED,
                             "a string value is not UTF-8 and has no JSON form: use format=npy or "
                             "format=raw for its bytes");
        if (text == NULL)
            return http_fail(srv, conn, H5CD_E_INTERNAL, "out of memory");
        return http_send_text(srv, conn, MHD_HTTP_OK, text, "application/json");
    }
    if (sc.format != H5DECODE_FIXED || !has_dtype) {
        h5index_free_values(sc.out);
        return http_fail(srv, conn, H5CD_E_UNSUPPORTED,
                         sc.format != H5DECODE_FIXED
                             ? "variable-length values have no fixed-size layout: use format=json"
                             : "this structured dtype has no .npy spelling: use format=json");
    }
    if (strcmp(format, "raw") == 0)
        return send_bytes(srv, conn, sc.out, sc.len, h5index_free_values,
                          "application/octet-stream", dtype, shape, rank);
    size_t npy_len = 0;
    uint8_t *npy = npy_wrap(dtype, structured, shape, rank, sc.out, sc.len, &npy_len);
    h5index_free_values(sc.out);
    if (npy == NULL)
        return http_fail(srv, conn, H5CD_E_INTERNAL, "out of memory");
    return send_bytes(srv, conn, npy, npy_len, free, "application/x-npy", dtype, shape, rank);
}
