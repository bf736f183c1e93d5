/*
 * zarrmeta.c - Zarr v2 metadata from /v1/meta documents.
 *
 * Codec mapping: an HDF5 pipeline maps to Zarr when every filter has a
 * numcodecs codec that reads the same bytes: deflate -> zlib, shuffle ->
 * shuffle (element size), blosc -> blosc, zstd -> zstd.  They go, in
 * pipeline order, into "filters" with "compressor": null, which zarr
 * applies exactly as HDF5 did.  Any other filter (fletcher32: Debian's
 * numcodecs 0.11 has no such codec; lz4, whose HDF5 framing differs from
 * numcodecs'; szip, n-bit, scale-offset, bitshuffle) makes the chunks
 * served decoded, with no codec named.
 */
#include "zarrmeta.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define FILTER_DEFLATE 1
#define FILTER_SHUFFLE 2
#define FILTER_BLOSC   32001
#define FILTER_ZSTD    32015

static json_t *zarray_doc(json_t *meta, json_t *dtype, bool subarray, json_t *shape,
                          json_t *chunk_shape, enum zarr_chunks *chunks);

static json_int_t param(json_t *filter, size_t i, json_int_t fallback)
{
    json_t *v = json_array_get(json_object_get(filter, "params"), i);
    return json_is_integer(v) ? json_integer_value(v) : fallback;
}

/* numcodecs' Blosc compressor names by HDF5 blosc filter code. */
static const char *blosc_cname(json_int_t code)
{
    static const char *const names[] = {"blosclz", "lz4", "lz4hc", "snappy", "zlib", "zstd"};
    return code >= 0 && code < 6 ? names[code] : NULL;
}

/* The numcodecs codec of one HDF5 filter, or NULL if there is none. */
static json_t *codec_for(json_t *filter, json_int_t elem_size)
{
    json_int_t id = json_integer_value(json_object_get(filter, "id"));
    switch (id) {
    case FILTER_DEFLATE:
        return json_pack("{s:s, s:I}", "id", "zlib", "level", param(filter, 0, 6));
    case FILTER_SHUFFLE:
        return json_pack("{s:s, s:I}", "id", "shuffle", "elementsize", param(filter, 0, elem_size));
    case FILTER_BLOSC: {
        /* cd_values: 4 clevel, 5 shuffle, 6 compressor code */
        const char *cname = blosc_cname(param(filter, 6, 0));
        if (cname == NULL)
            return NULL;
        return json_pack("{s:s, s:s, s:I, s:I, s:I}", "id", "blosc", "cname", cname, "clevel",
                         param(filter, 4, 5), "shuffle", param(filter, 5, 1), "blocksize",
                         (json_int_t)0);
    }
    case FILTER_ZSTD:
        return json_pack("{s:s, s:I}", "id", "zstd", "level", param(filter, 0, 3));
    default:
        return NULL;
    }
}

/* Bytes per element of a simple dtype string ("<i2" -> 2, "|S16" -> 16). */
static json_int_t dtype_size(const char *dtype)
{
    if (dtype == NULL || strlen(dtype) < 3)
        return 0;
    json_int_t n = 0;
    for (const char *p = dtype + 2; *p >= '0' && *p <= '9' && n < 1 << 30; p++)
        n = n * 10 + (*p - '0');
    return n;
}

/* Zarr encodes fill values of byte-string and structured dtypes as base64. */
static json_t *fill_value(json_t *meta, json_t *dtype)
{
    json_t *fill = json_object_get(meta, "fill_value");
    const char *d = json_string_value(dtype);
    if (d != NULL && (d[1] == 'S' || d[1] == 'V')) {
        json_int_t size = dtype_size(d);
        if (size <= 0 || size > 4096)
            return json_null();
        const char *s = json_string_value(fill);
        unsigned char raw[4096] = {0};
        if (s != NULL)
            memcpy(raw, s, strnlen(s, (size_t)size));
        char b64[4096 * 4 / 3 + 8];
        static const char alphabet[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t w = 0;
        for (json_int_t i = 0; i < size; i += 3) {
            uint32_t v = (uint32_t)raw[i] << 16;
            if (i + 1 < size)
                v |= (uint32_t)raw[i + 1] << 8;
            if (i + 2 < size)
                v |= raw[i + 2];
            b64[w++] = alphabet[(v >> 18) & 63];
            b64[w++] = alphabet[(v >> 12) & 63];
            b64[w++] = i + 1 < size ? alphabet[(v >> 6) & 63] : '=';
            b64[w++] = i + 2 < size ? alphabet[v & 63] : '=';
        }
        b64[w] = '\0';
        return json_string(b64);
    }
    if (json_is_array(dtype))
        return json_null();
    if (d != NULL && strcmp(d, "|O") == 0)
        return json_is_string(fill) ? json_incref(fill) : json_string("");
    return fill != NULL ? json_incref(fill) : json_null();
}

void zarrmeta_split_dtype(json_t *dtype, json_t **elem, json_t **dims)
{
    json_t *second = json_array_get(dtype, 1);
    bool subarray =
        json_array_size(dtype) == 2 && json_is_array(second) &&
        json_is_integer(json_array_get(second, 0)) &&
        (json_is_string(json_array_get(dtype, 0)) || json_is_array(json_array_get(dtype, 0)));
    *elem = subarray                                        ? json_array_get(dtype, 0)
            : json_is_string(dtype) || json_is_array(dtype) ? dtype
                                                            : NULL;
    *dims = subarray ? second : NULL;
}

/* a followed by b (new reference), or NULL. */
static json_t *concat(json_t *a, json_t *b)
{
    json_t *out = json_copy(a);
    if (out != NULL && b != NULL && json_array_extend(out, b) < 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

json_t *zarrmeta_zarray(json_t *meta, enum zarr_chunks *chunks)
{
    json_t *subdims = NULL;
    json_t *dtype = NULL;
    zarrmeta_split_dtype(json_object_get(meta, "dtype"), &dtype, &subdims);
    /* A subarray dtype is a Zarr array with the subarray's dimensions appended,
     * as NumPy and h5py present it; chunks are served decoded. */
    json_t *shape = json_object_get(meta, "shape");
    json_t *chunk_shape = json_object_get(meta, "chunks");
    if (!json_is_array(shape) || !json_is_array(chunk_shape))
        return NULL;
    json_t *full_shape = concat(shape, subdims), *full_chunks = concat(chunk_shape, subdims);
    json_t *doc = zarray_doc(meta, dtype, subdims != NULL, full_shape, full_chunks, chunks);
    json_decref(full_shape);
    json_decref(full_chunks);
    return doc;
}

static json_t *zarray_doc(json_t *meta, json_t *dtype, bool subarray, json_t *shape,
                          json_t *chunk_shape, enum zarr_chunks *chunks)
{
    const char *h5type = json_string_value(json_object_get(meta, "h5type"));
    const char *layout = json_string_value(json_object_get(meta, "layout"));
    if (!json_is_array(shape) || !json_is_array(chunk_shape) || layout == NULL)
        return NULL;
    json_t *filters = json_array();
    /* Object references read as the paths they point to; region references cannot. */
    bool vlen = dtype == NULL && h5type != NULL &&
                (strcmp(h5type, "vlen string") == 0 || strcmp(h5type, "reference") == 0);
    if (vlen) {
        dtype = json_string("|O");
        json_array_append_new(filters, json_pack("{s:s}", "id", "vlen-utf8"));
        *chunks = ZARR_CHUNKS_DECODED;
    } else if (json_is_string(dtype) || json_is_array(dtype)) {
        json_incref(dtype);
        /* Contiguous and compact data are decoded so edge chunks come padded. */
        *chunks = strcmp(layout, "chunked") == 0 ? ZARR_CHUNKS_RAW : ZARR_CHUNKS_DECODED;
        /* Compounds are stored with the file's field offsets (decoding packs them), and
         * padded integers need widening: both are served decoded. */
        if (json_is_array(dtype) || subarray ||
            json_is_false(json_object_get(meta, "raw_matches_dtype")))
            *chunks = ZARR_CHUNKS_DECODED;
        json_int_t elem = dtype_size(json_string_value(dtype));
        size_t i;
        json_t *filter;
        json_array_foreach(json_object_get(meta, "filters"), i, filter)
        {
            json_t *codec = codec_for(filter, elem);
            if (codec == NULL) {
                *chunks = ZARR_CHUNKS_DECODED;
                json_array_clear(filters);
                break;
            }
            json_array_append_new(filters, codec);
        }
        if (*chunks == ZARR_CHUNKS_DECODED)
            json_array_clear(filters);
    } else {
        json_decref(filters);
        return NULL;
    }
    json_t *doc =
        json_pack("{s:i, s:O, s:O, s:o, s:n, s:o, s:s, s:o, s:s}", "zarr_format", 2, "shape", shape,
                  "chunks", chunk_shape, "dtype", dtype, "compressor", "fill_value",
                  fill_value(meta, dtype), "order", "C", "filters",
                  json_array_size(filters) > 0 ? filters : json_null(), "dimension_separator", ".");
    if (json_array_size(filters) == 0)
        json_decref(filters);
    return doc;
}

json_t *zarrmeta_zgroup(void)
{
    return json_pack("{s:i}", "zarr_format", 2);
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int zarrmeta_encode_id(const char *text, char *out, size_t outlen)
{
    size_t n = strlen(text);
    size_t need = (n / 3) * 4 + (n % 3 ? n % 3 + 1 : 0) + 1;
    if (need > outlen)
        return -1;
    size_t w = 0;
    const unsigned char *p = (const unsigned char *)text;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[w++] = b64url[(v >> 18) & 63];
        out[w++] = b64url[(v >> 12) & 63];
        if (i + 1 < n)
            out[w++] = b64url[(v >> 6) & 63];
        if (i + 2 < n)
            out[w++] = b64url[v & 63];
    }
    out[w] = '\0';
    return 0;
}

int zarrmeta_decode_id(const char *id, char *out, size_t outlen)
{
    size_t n = strlen(id);
    if (n % 4 == 1 || (n / 4) * 3 + 3 > outlen + 2)
        return -1;
    size_t w = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        const char *pos = strchr(b64url, id[i]);
        if (id[i] == '\0' || pos == NULL)
            return -1;
        acc = acc << 6 | (uint32_t)(pos - b64url);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (w + 1 >= outlen)
                return -1;
            out[w++] = (char)((acc >> bits) & 0xff);
        }
    }
    /* Leftover bits must be zero in a canonical encoding. */
    if ((acc & ((1u << bits) - 1)) != 0)
        return -1;
    out[w] = '\0';
    return memchr(out, '\0', w) != NULL ? -1 : 0;
}
