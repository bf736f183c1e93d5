/*
 * h5meta.c - describes one HDF5 object (dataset or group) as the JSON of
 * GET /v1/meta, and spells HDF5 datatypes the way NumPy does.
 *
 * Calls libhdf5, so it runs on client or worker threads (libhdf5's own lock
 * serializes it), never on the fetch loop.  It must never follow an
 * external link (that would open another, possibly local, file on behalf of
 * a remote one), never print libhdf5's error stack, and never report a
 * value it cannot represent exactly: such values become null.  Everything
 * read from the file is bounded by the limits below before it is read.
 *
 * Paths are resolved one link at a time rather than by handing the whole
 * path to libhdf5: that is what lets us refuse external links anywhere in
 * the path (also behind a soft link) and tell "missing" from "failed".
 * Values are read in the file's own datatype (no conversion) and decoded
 * here from their bytes, so every supported type takes one code path.
 * Names that are not UTF-8 cannot be JSON: such an attribute is left out
 * of "attrs" and such a member is listed as null.
 */
#include "h5meta.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A contiguous dataset is presented in virtual chunks of whole rows that
 * fit in this many bytes (api-v1 Conventions; h5index must agree). */
#define H5META_CONTIG_CHUNK_BYTES (16 * H5CD_MIB)

#define H5META_MAX_ATTR_BYTES     (16 * H5CD_MIB) /* one attribute value, as read */
#define H5META_MAX_ATTR_NODES     (1024 * 1024) /* JSON values of one attribute, arrays included */
#define H5META_MAX_ATTR_REFS      1024          /* object references in one attribute */
#define H5META_MAX_OBJ_ATTR_BYTES (64 * H5CD_MIB) /* all attribute values of one object */
#define H5META_MAX_ATTRS          4096            /* attributes of one object */
#define H5META_MAX_MEMBERS        (256 * 1024)    /* links listed for one group */
#define H5META_MAX_MEMBER_BYTES   (16 * H5CD_MIB) /* their names, one NUL each included */
#define H5META_MAX_SOFT_LINKS     16              /* hops resolving one path (libhdf5's default) */
#define H5META_MAX_LINK_BYTES     (4 * H5CD_MAX_PATH_BYTES) /* a link value; a path being resolved */
#define H5META_MAX_REF_NAME_BYTES (64 * H5CD_KIB)           /* the path a reference names */
#define H5META_MAX_FILL_BYTES     (16 * H5CD_MIB)           /* one fill value */
#define H5META_MAX_FILTER_PARAMS  256 /* libhdf5 refuses to return more in one call */

/* How the bytes of one element of a supported type are read. */
enum kind { K_INT, K_UINT, K_FLOAT, K_BOOL, K_STR, K_OPAQUE };

struct scalar {
    enum kind kind;
    size_t size; /* bytes per element */
    bool big;    /* big-endian (numbers only) */
};

/* ---- JSON helpers ---- */

/* Adds v (consumed, may be NULL) under key.  0, or -1 if v is NULL or on OOM. */
static int put(json_t *obj, const char *key, json_t *v)
{
    if (v == NULL)
        return -1;
    return json_object_set_new(obj, key, v);
}

/* A uint64 that JSON integers (int64) cannot hold becomes a decimal string. */
static json_t *json_u64(uint64_t v)
{
    if (v <= INT64_MAX)
        return json_integer((json_int_t)v);
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%" PRIu64, v);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return NULL;
    return json_string(buf);
}

/* Non-finite numbers are spelled as zarr v2 spells them. */
static json_t *json_f64(double v)
{
    if (isnan(v))
        return json_string("NaN");
    if (isinf(v))
        return json_string(v > 0 ? "Infinity" : "-Infinity");
    return json_real(v);
}

/* Bytes as a JSON string, or null when they are not UTF-8. */
static json_t *json_bytes(const char *p, size_t len)
{
    json_t *s = json_stringn(p, len);
    return s != NULL ? s : json_null();
}

static bool is_utf8(const char *s)
{
    json_t *t = json_string(s);
    json_decref(t);
    return t != NULL;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    if (a != 0 && b > UINT64_MAX / a)
        return UINT64_MAX;
    return a * b;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ---- datatypes ---- */

static int byte_order(hid_t type, bool *big)
{
    H5T_order_t o = H5Tget_order(type);
    if (o != H5T_ORDER_LE && o != H5T_ORDER_BE)
        return -1;
    *big = o == H5T_ORDER_BE;
    return 0;
}

/* Integers of 1, 2, 4 or 8 bytes.  One with fewer significant bits (n-bit
 * data) is spelt by its size, as h5py reads it: decoding converts it to the
 * full width (see "raw_matches_dtype"). */
static int classify_int(hid_t type, size_t size, struct scalar *sc)
{
    if (size != 1 && size != 2 && size != 4 && size != 8)
        return -1;
    size_t precision = H5Tget_precision(type);
    int offset = H5Tget_offset(type);
    if (precision == 0 || offset < 0 || precision + (size_t)offset > 8 * size)
        return -1;
    H5T_sign_t sign = H5Tget_sign(type);
    if (sign != H5T_SGN_NONE && sign != H5T_SGN_2)
        return -1;
    if (byte_order(type, &sc->big) < 0)
        return -1;
    sc->kind = sign == H5T_SGN_2 ? K_INT : K_UINT;
    sc->size = size;
    return 0;
}

/* Only the IEEE 754 binary16/32/64 layouts. */
static int classify_float(hid_t type, size_t size, struct scalar *sc)
{
    static const struct {
        size_t size, epos, esize, msize, ebias;
    } ieee[] = {{2, 10, 5, 10, 15}, {4, 23, 8, 23, 127}, {8, 52, 11, 52, 1023}};
    size_t spos, epos, esize, mpos, msize;

    if (H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) < 0)
        return -1;
    if (H5Tget_precision(type) != 8 * size || H5Tget_offset(type) != 0 ||
        H5Tget_norm(type) != H5T_NORM_IMPLIED || spos != 8 * size - 1 || mpos != 0)
        return -1;
    for (size_t i = 0; i < sizeof(ieee) / sizeof(ieee[0]); i++) {
        if (ieee[i].size == size && ieee[i].epos == epos && ieee[i].esize == esize &&
            ieee[i].msize == msize && ieee[i].ebias == H5Tget_ebias(type)) {
            if (byte_order(type, &sc->big) < 0)
                return -1;
            sc->kind = K_FLOAT;
            sc->size = size;
            return 0;
        }
    }
    return -1;
}

/* h5py stores bool as an int8 enum {FALSE = 0, TRUE = 1}. */
static bool is_bool_enum(hid_t type, const struct scalar *base)
{
    if (base->kind != K_INT || base->size != 1 || H5Tget_nmembers(type) != 2)
        return false;
    int found = 0;
    for (unsigned i = 0; i < 2; i++) {
        int8_t value;
        char *name = H5Tget_member_name(type, i);
        if (name == NULL)
            return false;
        if (H5Tget_member_value(type, i, &value) >= 0) {
            if (strcmp(name, "FALSE") == 0 && value == 0)
                found |= 1;
            else if (strcmp(name, "TRUE") == 0 && value == 1)
                found |= 2;
        }
        H5free_memory(name);
    }
    return found == 3;
}

/* Other enums read as their base integers, as h5py reads them. */
static int classify_enum(hid_t type, struct scalar *sc)
{
    hid_t base = H5Tget_super(type);
    if (base < 0)
        return -1;
    int rc = -1;
    size_t size = H5Tget_size(base);
    if (H5Tget_class(base) == H5T_INTEGER && classify_int(base, size, sc) == 0) {
        if (is_bool_enum(type, sc))
            *sc = (struct scalar){K_BOOL, 1, false};
        rc = 0;
    }
    H5Tclose(base);
    return rc;
}

/* Bitfields read as unsigned integers of their size, as h5py reads them (PyTables
 * stores bool columns as 8-bit bitfields).  Only whole bytes of bits: a partial
 * bitfield would need masking that h5py does not do either. */
static int classify_bitfield(hid_t type, size_t size, struct scalar *sc)
{
    if ((size != 1 && size != 2 && size != 4 && size != 8) || H5Tget_precision(type) != 8 * size ||
        H5Tget_offset(type) != 0 || byte_order(type, &sc->big) < 0)
        return -1;
    sc->kind = K_UINT;
    sc->size = size;
    return 0;
}

/* Fills sc for the types that have a fixed NumPy spelling; -1 otherwise. */
static int classify(hid_t type, struct scalar *sc)
{
    size_t size = H5Tget_size(type);
    if (size == 0)
        return -1;
    switch (H5Tget_class(type)) {
    case H5T_INTEGER:
        return classify_int(type, size, sc);
    case H5T_FLOAT:
        return classify_float(type, size, sc);
    case H5T_STRING:
        if (H5Tis_variable_str(type) != 0)
            return -1;
        *sc = (struct scalar){K_STR, size, false};
        return 0;
    case H5T_ENUM:
        return classify_enum(type, sc);
    case H5T_BITFIELD:
        return classify_bitfield(type, size, sc);
    case H5T_OPAQUE:
        *sc = (struct scalar){K_OPAQUE, size, false};
        return 0;
    default:
        return -1;
    }
}

int h5meta_dtype(hid_t type, char *out, size_t outlen)
{
    struct scalar sc;
    int n;

    if (out == NULL || outlen == 0)
        return -1;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (classify(type, &sc) < 0)
        return -1;
    char order = sc.size == 1 ? '|' : sc.big ? '>' : '<';
    switch (sc.kind) {
    case K_INT:
        n = snprintf(out, outlen, "%ci%zu", order, sc.size);
        break;
    case K_UINT:
        n = snprintf(out, outlen, "%cu%zu", order, sc.size);
        break;
    case K_FLOAT:
        n = snprintf(out, outlen, "%cf%zu", order, sc.size);
        break;
    case K_BOOL:
        n = snprintf(out, outlen, "|b1");
        break;
    case K_STR:
        n = snprintf(out, outlen, "|S%zu", sc.size);
        break;
    default:
        n = snprintf(out, outlen, "|V%zu", sc.size);
        break;
    }
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

/* What a type with no NumPy spelling is, for "h5type". */
static const char *h5type_name(hid_t type)
{
    switch (H5Tget_class(type)) {
    case H5T_STRING:
        return H5Tis_variable_str(type) > 0 ? "vlen string" : "unknown";
    case H5T_COMPOUND:
        return "compound";
    case H5T_REFERENCE:
        return H5Tequal(type, H5T_STD_REF_OBJ) > 0 ? "reference" : "region reference";
    case H5T_ARRAY:
        return "array";
    case H5T_VLEN:
        return "vlen";
    case H5T_BITFIELD:
        return "bitfield";
    case H5T_TIME:
        return "time";
    case H5T_FLOAT:
        return H5Tget_size(type) > 8 ? "long double" : "non-IEEE float";
    case H5T_INTEGER:
        return "integer of unusual size";
    default:
        return "unknown";
    }
}

/* ---- values ---- */

static uint64_t load_uint(const unsigned char *p, size_t n, bool big)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[big ? i : n - 1 - i];
    return v;
}

static double half_to_double(uint64_t h)
{
    int exp = (int)((h >> 10) & 0x1f);
    double mant = (double)(h & 0x3ff);
    double v;
    if (exp == 0)
        v = ldexp(mant, -24);
    else if (exp == 31)
        v = mant != 0 ? NAN : INFINITY;
    else
        v = ldexp(mant + 1024, exp - 25);
    return (h & 0x8000) ? -v : v;
}

/* One element of a supported type as JSON; NULL only when memory ran out. */
static json_t *scalar_json(const struct scalar *sc, const unsigned char *p)
{
    uint64_t u;
    switch (sc->kind) {
    case K_INT: {
        u = load_uint(p, sc->size, sc->big);
        uint64_t mask = sc->size == 8 ? UINT64_MAX : (UINT64_C(1) << (8 * sc->size)) - 1;
        uint64_t sign = UINT64_C(1) << (8 * sc->size - 1);
        if (u & sign)
            return json_integer(-(json_int_t)(~u & mask) - 1);
        return json_integer((json_int_t)u);
    }
    case K_UINT:
        return json_u64(load_uint(p, sc->size, sc->big));
    case K_FLOAT:
        u = load_uint(p, sc->size, sc->big);
        if (sc->size == 2)
            return json_f64(half_to_double(u));
        if (sc->size == 4) {
            uint32_t bits = (uint32_t)u;
            float f;
            memcpy(&f, &bits, sizeof(f));
            return json_f64(f);
        }
        double d;
        memcpy(&d, &u, sizeof(d));
        return json_f64(d);
    case K_BOOL:
        return json_boolean(p[0] != 0);
    case K_STR: {
        size_t len = sc->size;
        while (len > 0 && p[len - 1] == '\0')
            len--;
        return json_bytes((const char *)p, len);
    }
    default:
        return json_null();
    }
}

/* ---- attributes ---- */

/* How the elements of one attribute buffer become JSON. */
enum how { H_SCALAR, H_VSTR, H_REF };

struct values {
    enum how how;
    struct scalar sc;
    const unsigned char *buf;
    hid_t loc; /* where references are resolved */
};

struct attr_walk {
    json_t *out;
    uint64_t bytes; /* attribute bytes read so far for this object */
    size_t count;
    bool too_many;
    bool failed; /* err already set */
    struct h5cd_error *err;
};

static json_t *ref_json(hid_t loc, const hobj_ref_t *ref)
{
    ssize_t len = H5Rget_name(loc, H5R_OBJECT, ref, NULL, 0);
    if (len <= 0 || (size_t)len >= H5META_MAX_REF_NAME_BYTES)
        return json_null();
    char *name = malloc((size_t)len + 1);
    if (name == NULL)
        return NULL;
    json_t *v = json_null();
    if (H5Rget_name(loc, H5R_OBJECT, ref, name, (size_t)len + 1) == len)
        v = json_bytes(name, (size_t)len);
    free(name);
    return v;
}

static json_t *element(const struct values *v, size_t i)
{
    switch (v->how) {
    case H_SCALAR:
        return scalar_json(&v->sc, v->buf + i * v->sc.size);
    case H_VSTR: {
        const char *s = ((char *const *)v->buf)[i];
        return s != NULL ? json_bytes(s, strlen(s)) : json_string("");
    }
    default:
        return ref_json(v->loc, (const hobj_ref_t *)v->buf + i);
    }
}

/* Elements in C order, nested as the dataspace.  NULL when memory ran out. */
static json_t *nest(const struct values *v, int rank, const hsize_t *dims, int level, size_t *next)
{
    if (level == rank)
        return element(v, (*next)++);
    json_t *arr = json_array();
    if (arr == NULL)
        return NULL;
    for (hsize_t i = 0; i < dims[level]; i++) {
        if (json_array_append_new(arr, nest(v, rank, dims, level + 1, next)) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* JSON values that nest() makes for these dims: elements plus arrays. */
static uint64_t count_nodes(int rank, const hsize_t *dims)
{
    uint64_t nodes = 0, run = 1;
    for (int k = 0; k < rank; k++) {
        nodes = sat_add(nodes, run);
        run = sat_mul(run, dims[k]);
    }
    return sat_add(nodes, run);
}

/* The memory type an attribute is read with, or -1 if we cannot show it.
 * *owned says whether the caller must close it. */
static hid_t attr_memtype(hid_t type, struct values *v, size_t *esize, bool *owned)
{
    *owned = false;
    if (classify(type, &v->sc) == 0 && v->sc.kind != K_OPAQUE) {
        v->how = H_SCALAR;
        *esize = v->sc.size;
        return type;
    }
    H5T_class_t cls = H5Tget_class(type);
    if (cls == H5T_STRING && H5Tis_variable_str(type) > 0) {
        H5T_cset_t cset = H5Tget_cset(type);
        hid_t mem = H5Tcopy(H5T_C_S1);
        if (mem < 0)
            return -1;
        if (cset < 0 || H5Tset_size(mem, H5T_VARIABLE) < 0 || H5Tset_cset(mem, cset) < 0) {
            H5Tclose(mem);
            return -1;
        }
        v->how = H_VSTR;
        *esize = sizeof(char *);
        *owned = true;
        return mem;
    }
    if (cls == H5T_REFERENCE && H5Tequal(type, H5T_STD_REF_OBJ) > 0) {
        v->how = H_REF;
        *esize = sizeof(hobj_ref_t);
        return H5T_STD_REF_OBJ;
    }
    return -1;
}

static uint64_t vstr_bytes(const struct values *v, size_t n)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = ((char *const *)v->buf)[i];
        if (s != NULL)
            total = sat_add(total, strlen(s));
    }
    return total;
}

/*
 * Reads the attribute within the limits and makes its JSON (null when it
 * cannot be shown).  0 with *out set, or -1 when libhdf5 failed or memory
 * ran out (w->err set).
 */
static int attr_value(hid_t attr, struct attr_walk *w, json_t **out)
{
    hid_t space = -1, type = -1, mem = -1;
    bool owned = false, reclaim = false;
    unsigned char *buf = NULL;
    json_t *val = NULL;
    struct values v = {.loc = attr};
    hsize_t dims[H5S_MAX_RANK];
    size_t esize = 0, next = 0;
    uint64_t npoints = 1, bytes;

    if ((space = H5Aget_space(attr)) < 0 || (type = H5Aget_type(attr)) < 0)
        goto hdf5_fail;
    H5S_class_t cls = H5Sget_simple_extent_type(space);
    int rank = H5Sget_simple_extent_ndims(space);
    if (cls < 0 || rank < 0 || rank > H5S_MAX_RANK ||
        H5Sget_simple_extent_dims(space, dims, NULL) < 0)
        goto hdf5_fail;
    for (int k = 0; k < rank; k++)
        npoints = sat_mul(npoints, dims[k]);
    if (cls == H5S_NULL || count_nodes(rank, dims) > H5META_MAX_ATTR_NODES)
        goto null_value;
    mem = attr_memtype(type, &v, &esize, &owned);
    if (mem < 0 || (v.how == H_REF && npoints > H5META_MAX_ATTR_REFS))
        goto null_value;
    bytes = sat_mul(npoints, esize);
    if (bytes > H5META_MAX_ATTR_BYTES || bytes > H5META_MAX_OBJ_ATTR_BYTES - w->bytes)
        goto null_value;
    buf = calloc(npoints > 0 ? npoints : 1, esize);
    if (buf == NULL)
        goto oom;
    reclaim = v.how == H_VSTR; /* also after a failed read: it may have allocated */
    if (H5Aread(attr, mem, buf) < 0)
        goto hdf5_fail;
    v.buf = buf;
    if (reclaim) {
        bytes = sat_add(bytes, vstr_bytes(&v, npoints));
        if (bytes > H5META_MAX_ATTR_BYTES || bytes > H5META_MAX_OBJ_ATTR_BYTES - w->bytes)
            goto null_value;
    }
    w->bytes += bytes;
    if ((val = nest(&v, rank, dims, 0, &next)) == NULL)
        goto oom;
    goto done;

null_value:
    val = json_null();
    goto done;
hdf5_fail:
    h5cd_fail(w->err, H5CD_E_INTERNAL, "cannot read an attribute");
    goto fail;
oom:
    h5cd_fail(w->err, H5CD_E_INTERNAL, "out of memory reading an attribute");
fail:
    w->failed = true;
done:
    if (reclaim)
        H5Dvlen_reclaim(mem, space, H5P_DEFAULT, buf);
    free(buf);
    if (owned)
        H5Tclose(mem);
    if (type >= 0)
        H5Tclose(type);
    if (space >= 0)
        H5Sclose(space);
    *out = val;
    return val != NULL ? 0 : -1;
}

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    struct attr_walk *w = data;
    json_t *v;
    (void)info;

    if (w->count >= H5META_MAX_ATTRS) {
        w->too_many = true;
        return 1;
    }
    w->count++;
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    if (attr < 0) {
        h5cd_fail(w->err, H5CD_E_INTERNAL, "cannot open attribute %.100s", name);
        w->failed = true;
        return -1;
    }
    int rc = attr_value(attr, w, &v);
    H5Aclose(attr);
    if (rc < 0)
        return -1;
    if (!is_utf8(name)) {
        json_decref(v);
        return 0;
    }
    if (json_object_set_new(w->out, name, v) < 0) {
        h5cd_fail(w->err, H5CD_E_INTERNAL, "out of memory listing attributes");
        w->failed = true;
        return -1;
    }
    return 0;
}

static json_t *attrs_collect(hid_t obj, struct h5cd_error *err)
{
    struct attr_walk w = {.out = json_object(), .err = err};
    hsize_t idx = 0;

    if (w.out == NULL) {
        h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
        return NULL;
    }
    herr_t rc = H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_cb, &w);
    if (w.too_many) {
        h5cd_fail(err, H5CD_E_TOO_LARGE, "object has more than %d attributes", H5META_MAX_ATTRS);
        goto fail;
    }
    if (rc < 0) {
        if (!w.failed)
            h5cd_fail(err, H5CD_E_INTERNAL, "cannot list attributes");
        goto fail;
    }
    return w.out;
fail:
    json_decref(w.out);
    return NULL;
}

json_t *h5meta_attrs(hid_t obj)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return attrs_collect(obj, NULL);
}

/* ---- path resolution ---- */

static hid_t fail_id(struct h5cd_error *err, enum h5cd_errcode code, const char *what,
                     const char *path)
{
    h5cd_fail(err, code, "%s: %.200s", what, path);
    return -1;
}

/*
 * Checks the length and spelling of a client path and writes it as
 * "/a/b" (empty and "." components dropped, so "a/b/" is "/a/b").
 */
static int normalize(const char *path, char *out, size_t outlen, struct h5cd_error *err)
{
    if (path == NULL)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "no object path");
    size_t len = strnlen(path, H5CD_MAX_PATH_BYTES + 1);
    if (len > H5CD_MAX_PATH_BYTES)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "object path longer than %d bytes",
                         H5CD_MAX_PATH_BYTES);
    if (!is_utf8(path))
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "object path is not UTF-8");
    size_t o = 0;
    const char *p = path;
    while (*p != '\0') {
        const char *e = strchr(p, '/');
        size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
        if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (o + 1 + n + 1 > outlen) /* cannot happen: out is len + 2 bytes */
                return h5cd_fail(err, H5CD_E_BAD_REQUEST, "object path too long");
            out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
        }
        p += n + (e != NULL);
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    return 0;
}

/* The target of the external link name in group g, for the error message. */
static void refuse_external(hid_t g, const char *name, size_t size, const char *path,
                            struct h5cd_error *err)
{
    const char *file = NULL, *obj = NULL;
    unsigned flags;
    char *val = size > 0 && size <= H5META_MAX_LINK_BYTES ? malloc(size) : NULL;

    if (val != NULL && H5Lget_val(g, name, val, size, H5P_DEFAULT) >= 0 &&
        H5Lunpack_elink_val(val, size, &flags, &file, &obj) >= 0 && file != NULL && obj != NULL)
        h5cd_fail(err, H5CD_E_UNSUPPORTED,
                  "%.200s: external link to %.200s in file %.200s is not followed", path, obj,
                  file);
    else
        h5cd_fail(err, H5CD_E_UNSUPPORTED, "%.200s: external links are not followed", path);
    free(val);
}

/*
 * Replaces work (whose remainder after the soft link starts at rest) by
 * the link's value followed by that remainder.  *absolute says whether the
 * value starts at the root.  0, or -1 with err set.
 */
static int splice_soft(hid_t g, const char *name, size_t size, char *work, const char *rest,
                       bool *absolute, const char *path, struct h5cd_error *err)
{
    char tmp[H5META_MAX_LINK_BYTES + 1];
    size_t rlen = strlen(rest);

    if (size == 0 || size > sizeof(tmp) || size + 1 + rlen > sizeof(tmp))
        return h5cd_fail(err, H5CD_E_UNSUPPORTED, "%.200s: soft link value too long", path);
    if (H5Lget_val(g, name, tmp, size, H5P_DEFAULT) < 0)
        return h5cd_fail(err, H5CD_E_INTERNAL, "%.200s: cannot read a soft link", path);
    tmp[size - 1] = '\0';
    size_t vlen = strlen(tmp);
    tmp[vlen] = '/';
    memcpy(tmp + vlen + 1, rest, rlen + 1);
    *absolute = tmp[0] == '/';
    memcpy(work, tmp, vlen + 1 + rlen + 1);
    return 0;
}

/*
 * Opens the object at the normalized path, one link at a time: hard links
 * are opened, soft links spliced into the rest of the path (at most
 * H5META_MAX_SOFT_LINKS of them), external and user-defined links refused.
 * Returns an object id (close with H5Oclose) or -1 with err set.
 */
static hid_t resolve(hid_t file, const char *path, struct h5cd_error *err)
{
    char work[H5META_MAX_LINK_BYTES + 1];
    int hops = 0;
    size_t plen = strlen(path);

    if (plen >= sizeof(work))
        return fail_id(err, H5CD_E_BAD_REQUEST, "object path too long", path);
    memcpy(work, path, plen + 1);
    hid_t cur = H5Oopen(file, "/", H5P_DEFAULT);
    if (cur < 0)
        return fail_id(err, H5CD_E_INTERNAL, "cannot open the root group", path);

    char *p = work;
    for (;;) {
        while (*p == '/')
            p++;
        if (*p == '\0')
            return cur;
        char *name = p, *end = strchr(p, '/');
        char *rest = end != NULL ? end + 1 : p + strlen(p);
        if (end != NULL)
            *end = '\0';
        p = rest;
        if (strcmp(name, ".") == 0)
            continue;

        if (H5Iget_type(cur) != H5I_GROUP) {
            fail_id(err, H5CD_E_NOT_FOUND, "no such object (a parent is not a group)", path);
            goto fail;
        }
        htri_t exists = H5Lexists(cur, name, H5P_DEFAULT);
        H5L_info_t li;
        if (exists == 0) {
            fail_id(err, H5CD_E_NOT_FOUND, "no such object", path);
            goto fail;
        }
        if (exists < 0 || H5Lget_info(cur, name, &li, H5P_DEFAULT) < 0) {
            fail_id(err, H5CD_E_INTERNAL, "cannot read a link", path);
            goto fail;
        }
        if (li.type == H5L_TYPE_HARD) {
            hid_t next = H5Oopen(cur, name, H5P_DEFAULT);
            if (next < 0) {
                fail_id(err, H5CD_E_INTERNAL, "cannot open an object", path);
                goto fail;
            }
            H5Oclose(cur);
            cur = next;
        } else if (li.type == H5L_TYPE_SOFT) {
            bool absolute = false;
            if (++hops > H5META_MAX_SOFT_LINKS) {
                fail_id(err, H5CD_E_NOT_FOUND, "too many soft links", path);
                goto fail;
            }
            if (splice_soft(cur, name, li.u.val_size, work, rest, &absolute, path, err) < 0)
                goto fail;
            p = work;
            if (absolute) {
                hid_t root = H5Oopen(file, "/", H5P_DEFAULT);
                if (root < 0) {
                    fail_id(err, H5CD_E_INTERNAL, "cannot open the root group", path);
                    goto fail;
                }
                H5Oclose(cur);
                cur = root;
            }
        } else if (li.type == H5L_TYPE_EXTERNAL) {
            refuse_external(cur, name, li.u.val_size, path, err);
            goto fail;
        } else {
            fail_id(err, H5CD_E_UNSUPPORTED, "user-defined links are not followed", path);
            goto fail;
        }
    }
fail:
    H5Oclose(cur);
    return -1;
}

/* ---- datasets ---- */

static json_t *dims_json(int rank, const hsize_t *dims)
{
    json_t *arr = json_array();
    for (int k = 0; arr != NULL && k < rank; k++) {
        if (dims[k] > INT64_MAX ||
            json_array_append_new(arr, json_integer((json_int_t)dims[k])) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

/* See h5meta.h for the chunks of each layout. */
static json_t *chunks_json(hid_t dcpl, H5D_layout_t layout, int rank, const hsize_t *dims,
                           size_t esize)
{
    hsize_t chunks[H5S_MAX_RANK];

    if (layout == H5D_CHUNKED) {
        if (H5Pget_chunk(dcpl, rank, chunks) != rank)
            return NULL;
        return dims_json(rank, chunks);
    }
    if (layout == H5D_COMPACT || rank == 0)
        return dims_json(rank, dims);
    /* Contiguous: whole rows per 16 MiB.  A row of 0 bytes (a 0 in the
     * other dimensions) and a first dimension of 0 give 1 row: chunk sizes
     * must be at least 1 and such a dataset has no data to serve anyway. */
    uint64_t row = esize;
    for (int k = 1; k < rank; k++)
        row = sat_mul(row, dims[k]);
    uint64_t rows = row == 0 ? 1 : H5META_CONTIG_CHUNK_BYTES / row;
    if (rows > dims[0])
        rows = dims[0];
    if (rows < 1)
        rows = 1;
    memcpy(chunks, dims, (size_t)rank * sizeof(hsize_t));
    chunks[0] = rows;
    return dims_json(rank, chunks);
}

static const char *filter_name(H5Z_filter_t id, const char *reported)
{
    static const struct {
        H5Z_filter_t id;
        const char *name;
    } known[] = {{1, "deflate"}, {2, "shuffle"},        {3, "fletcher32"}, {4, "szip"},
                 {5, "nbit"},    {6, "scaleoffset"},    {32000, "lzf"},    {32001, "blosc"},
                 {32004, "lz4"}, {32008, "bitshuffle"}, {32015, "zstd"}};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (known[i].id == id)
            return known[i].name;
    return reported;
}

static json_t *one_filter(hid_t dcpl, unsigned idx)
{
    unsigned flags, config, values[H5META_MAX_FILTER_PARAMS];
    size_t nvalues = H5META_MAX_FILTER_PARAMS;
    char name[256];

    name[0] = '\0';
    H5Z_filter_t id =
        H5Pget_filter2(dcpl, idx, &flags, &nvalues, values, sizeof(name), name, &config);
    if (id < 0)
        return NULL;
    name[sizeof(name) - 1] = '\0';
    const char *fname = filter_name(id, name);
    json_t *f = json_object(), *params = NULL;
    if (f == NULL)
        return NULL;
    if (nvalues <= H5META_MAX_FILTER_PARAMS) {
        params = json_array();
        for (size_t i = 0; params != NULL && i < nvalues; i++)
            if (json_array_append_new(params, json_integer(values[i])) < 0) {
                json_decref(params);
                params = NULL;
            }
    } else {
        params = json_null(); /* more than libhdf5 lets us read: not shown partially */
    }
    if (put(f, "id", json_integer(id)) < 0 ||
        put(f, "name", json_bytes(fname, strlen(fname))) < 0 || put(f, "params", params) < 0) {
        json_decref(f);
        return NULL;
    }
    return f;
}

static json_t *filters_json(hid_t dcpl)
{
    int n = H5Pget_nfilters(dcpl);
    json_t *arr = n >= 0 ? json_array() : NULL;
    for (int i = 0; arr != NULL && i < n; i++) {
        if (json_array_append_new(arr, one_filter(dcpl, (unsigned)i)) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

/* The fill value in the dataset's own type, or null (none defined, or a
 * type we do not show).  NULL on failure. */
static json_t *fill_json(hid_t dcpl, hid_t type)
{
    H5D_fill_value_t status;
    struct scalar sc;

    if (H5Pfill_value_defined(dcpl, &status) < 0)
        return NULL;
    if (status == H5D_FILL_VALUE_UNDEFINED || classify(type, &sc) < 0 || sc.kind == K_OPAQUE ||
        sc.size > H5META_MAX_FILL_BYTES)
        return json_null();
    unsigned char *buf = calloc(1, sc.size);
    if (buf == NULL)
        return NULL;
    json_t *v = NULL;
    if (H5Pget_fill_value(dcpl, type, buf) >= 0)
        v = scalar_json(&sc, buf);
    free(buf);
    return v;
}

static const char *layout_name(H5D_layout_t layout)
{
    switch (layout) {
    case H5D_COMPACT:
        return "compact";
    case H5D_CONTIGUOUS:
        return "contiguous";
    case H5D_CHUNKED:
        return "chunked";
    case H5D_VIRTUAL:
        return "virtual";
    default:
        return NULL;
    }
}

static json_t *compound_dtype(hid_t type, int depth);

/* A member's NumPy type: a simple string or a nested structure; for a
 * fixed-size array member, its element type with *shape set to the array's
 * dimensions.  NULL if it has no NumPy spelling. */
static json_t *member_dtype(hid_t type, int depth, json_t **shape)
{
    char simple[32];
    *shape = NULL;
    if (h5meta_dtype(type, simple, sizeof(simple)) == 0)
        return json_string(simple);
    H5T_class_t cls = H5Tget_class(type);
    if (cls == H5T_COMPOUND)
        return compound_dtype(type, depth + 1);
    if (cls != H5T_ARRAY)
        return NULL;
    hsize_t dims[H5S_MAX_RANK];
    int rank = H5Tget_array_ndims(type);
    hid_t base = H5Tget_super(type);
    json_t *inner = NULL, *inner_shape = NULL;
    if (rank > 0 && rank <= H5S_MAX_RANK && H5Tget_array_dims2(type, dims) == rank && base >= 0)
        inner = member_dtype(base, depth, &inner_shape);
    if (base >= 0)
        H5Tclose(base);
    if (inner_shape != NULL) { /* arrays of arrays have no structured spelling */
        json_decref(inner_shape);
        json_decref(inner);
        return NULL;
    }
    if (inner != NULL)
        *shape = dims_json(rank, dims);
    return inner;
}

/* Members ordered by their offset in the type. */
struct member_order {
    unsigned index;
    size_t offset;
};

static int cmp_member(const void *a, const void *b)
{
    const struct member_order *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/*
 * A compound type as a NumPy structured dtype in Zarr v2's spelling,
 * [["name", "<i4"], ["pos", "<f8", [3]], ...], fields in offset order.
 * Values are served packed (no padding), which is what this dtype means.
 * NULL when a field has no fixed-size NumPy type (e.g. a vlen string).
 */
static json_t *compound_dtype(hid_t type, int depth)
{
    int n = H5Tget_nmembers(type);
    if (depth > 8 || n <= 0 || n > 1024)
        return NULL;
    struct member_order order[1024];
    for (int i = 0; i < n; i++) {
        order[i].index = (unsigned)i;
        order[i].offset = H5Tget_member_offset(type, (unsigned)i);
    }
    qsort(order, (size_t)n, sizeof(order[0]), cmp_member);
    json_t *fields = json_array();
    for (int i = 0; i < n && fields != NULL; i++) {
        char *name = H5Tget_member_name(type, order[i].index);
        hid_t mtype = H5Tget_member_type(type, order[i].index);
        json_t *shape = NULL;
        json_t *mdtype = mtype >= 0 ? member_dtype(mtype, depth, &shape) : NULL;
        json_t *field = NULL;
        if (name != NULL && mdtype != NULL && is_utf8(name))
            field = shape != NULL ? json_pack("[s, O, O]", name, mdtype, shape)
                                  : json_pack("[s, O]", name, mdtype);
        json_decref(mdtype);
        json_decref(shape);
        if (mtype >= 0)
            H5Tclose(mtype);
        H5free_memory(name);
        if (field == NULL) {
            json_decref(fields);
            return NULL;
        }
        json_array_append_new(fields, field);
    }
    return fields;
}

/* Adds "dtype" (and "h5type" when dtype is null). */
static int put_dtype(json_t *o, hid_t type)
{
    char dtype[32];
    if (h5meta_dtype(type, dtype, sizeof(dtype)) == 0) {
        /* Stored integers with padding bits are not their dtype's bytes: only decoded
         * values are (clients must not read raw chunks as the dtype). */
        if (H5Tget_class(type) == H5T_INTEGER &&
            (H5Tget_precision(type) != 8 * H5Tget_size(type) || H5Tget_offset(type) != 0) &&
            put(o, "raw_matches_dtype", json_false()) < 0)
            return -1;
        return put(o, "dtype", json_string(dtype));
    }
    if (H5Tget_class(type) == H5T_COMPOUND) {
        json_t *structured = compound_dtype(type, 0);
        if (structured != NULL)
            return put(o, "dtype", structured);
    }
    if (H5Tget_class(type) == H5T_ARRAY) { /* NumPy's (base, shape) subarray dtype */
        json_t *shape = NULL;
        json_t *base = member_dtype(type, 0, &shape);
        if (base != NULL && shape != NULL)
            return put(o, "dtype", json_pack("[o, o]", base, shape));
        json_decref(base);
        json_decref(shape);
    }
    if (put(o, "dtype", json_null()) < 0)
        return -1;
    return put(o, "h5type", json_string(h5type_name(type)));
}

/* Adds shape, chunks and layout.  A null dataspace has shape and chunks
 * null; a virtual dataset has chunks null (it has no chunks to serve). */
static int put_geometry(json_t *o, hid_t dset, hid_t dcpl, hid_t type, const char *path,
                        struct h5cd_error *err)
{
    hsize_t dims[H5S_MAX_RANK];
    hid_t space = H5Dget_space(dset);
    if (space < 0)
        return h5cd_fail(err, H5CD_E_INTERNAL, "%.200s: cannot read the dataspace", path);
    H5S_class_t cls = H5Sget_simple_extent_type(space);
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank >= 0 && rank <= H5S_MAX_RANK && H5Sget_simple_extent_dims(space, dims, NULL) < 0)
        rank = -1;
    H5Sclose(space);
    H5D_layout_t layout = H5Pget_layout(dcpl);
    const char *lname = layout_name(layout);
    if (cls < 0 || rank < 0 || rank > H5S_MAX_RANK || lname == NULL)
        return h5cd_fail(err, H5CD_E_INTERNAL, "%.200s: cannot read shape or layout", path);

    json_t *shape, *chunks;
    if (cls == H5S_NULL) {
        shape = json_null();
        chunks = json_null();
    } else {
        shape = dims_json(rank, dims);
        chunks = layout == H5D_VIRTUAL ? json_null()
                                       : chunks_json(dcpl, layout, rank, dims, H5Tget_size(type));
    }
    if (put(o, "shape", shape) < 0 || put(o, "chunks", chunks) < 0 ||
        put(o, "layout", json_string(lname)) < 0)
        return h5cd_fail(err, H5CD_E_INTERNAL, "%.200s: cannot describe shape or chunks", path);
    return 0;
}

/* ---- identity ---- */

/* "object_id": the object's header address in the file, the same for every
 * hard link to it.  Walks of the hierarchy use it to visit each object once
 * (hard-link cycles are valid HDF5). */
static int put_object_id(json_t *o, hid_t obj, const char *path, struct h5cd_error *err)
{
    H5O_info_t info;
    if (H5Oget_info2(obj, &info, H5O_INFO_BASIC) < 0)
        return h5cd_fail(err, H5CD_E_DAMAGED_FILE, "%.200s: cannot read the object header", path);
    char id[32];
    snprintf(id, sizeof(id), "%" PRIx64, (uint64_t)info.addr);
    if (put(o, "object_id", json_string(id)) < 0)
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    return 0;
}

static json_t *describe_dataset(hid_t dset, const char *path, struct h5cd_error *err)
{
    hid_t type = H5Dget_type(dset), dcpl = H5Dget_create_plist(dset);
    json_t *o = json_object();

    if (type < 0 || dcpl < 0) {
        h5cd_fail(err, H5CD_E_INTERNAL, "%.200s: cannot read type or properties", path);
        goto fail;
    }
    if (o == NULL || put(o, "path", json_string(path)) < 0 ||
        put(o, "kind", json_string("dataset")) < 0)
        goto oom;
    if (put_geometry(o, dset, dcpl, type, path, err) < 0 || put_object_id(o, dset, path, err) < 0)
        goto fail;
    if (put_dtype(o, type) < 0)
        goto oom;
    if (put(o, "filters", filters_json(dcpl)) < 0) {
        h5cd_fail(err, H5CD_E_INTERNAL, "%.200s: cannot read filters", path);
        goto fail;
    }
    if (put(o, "fill_value", fill_json(dcpl, type)) < 0) {
        h5cd_fail(err, H5CD_E_INTERNAL, "%.200s: cannot read the fill value", path);
        goto fail;
    }
    json_t *attrs = attrs_collect(dset, err);
    if (attrs == NULL || put(o, "attrs", attrs) < 0)
        goto fail;
    H5Pclose(dcpl);
    H5Tclose(type);
    return o;

oom:
    h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
fail:
    json_decref(o);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (type >= 0)
        H5Tclose(type);
    return NULL;
}

/* ---- groups ---- */

struct member_walk {
    json_t *out;
    size_t count;
    uint64_t bytes;
    bool too_many;
    bool malformed; /* a name no valid file has: empty, ".", or with a '/' */
};

static herr_t member_cb(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    struct member_walk *w = data;
    size_t len = strlen(name) + 1;
    (void)g;
    (void)info;

    if (w->count >= H5META_MAX_MEMBERS || len > H5META_MAX_MEMBER_BYTES - w->bytes) {
        w->too_many = true;
        return 1;
    }
    if (len == 1 || strchr(name, '/') != NULL || strcmp(name, ".") == 0) {
        w->malformed = true;
        return 1;
    }
    w->count++;
    w->bytes += len;
    return json_array_append_new(w->out, json_bytes(name, len - 1)) < 0 ? -1 : 0;
}

static json_t *describe_group(hid_t group, const char *path, struct h5cd_error *err)
{
    struct member_walk w = {.out = json_array()};
    json_t *o = json_object();
    hsize_t idx = 0;

    if (o == NULL || w.out == NULL || put(o, "path", json_string(path)) < 0 ||
        put(o, "kind", json_string("group")) < 0) {
        json_decref(w.out);
        goto oom;
    }
    herr_t rc = H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, &idx, member_cb, &w);
    if (w.too_many) {
        json_decref(w.out);
        h5cd_fail(err, H5CD_E_TOO_LARGE,
                  "%.200s: group has more than %d members or %llu bytes of names", path,
                  H5META_MAX_MEMBERS, (unsigned long long)H5META_MAX_MEMBER_BYTES);
        goto fail;
    }
    if (w.malformed) {
        json_decref(w.out);
        h5cd_fail(err, H5CD_E_DAMAGED_FILE,
                  "%.200s: a member of the group has an empty or malformed name", path);
        goto fail;
    }
    if (rc < 0) {
        json_decref(w.out);
        h5cd_fail(err, H5CD_E_DAMAGED_FILE, "%.200s: cannot list the group", path);
        goto fail;
    }
    if (put(o, "members", w.out) < 0)
        goto oom;
    if (put_object_id(o, group, path, err) < 0)
        goto fail;
    json_t *attrs = attrs_collect(group, err);
    if (attrs == NULL || put(o, "attrs", attrs) < 0)
        goto fail;
    return o;

oom:
    h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
fail:
    json_decref(o);
    return NULL;
}

json_t *h5meta_describe(hid_t file, const char *path, struct h5cd_error *err)
{
    char canon[H5CD_MAX_PATH_BYTES + 2];
    json_t *out = NULL;

    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (normalize(path, canon, sizeof(canon), err) < 0)
        return NULL;
    hid_t obj = resolve(file, canon, err);
    if (obj < 0)
        return NULL;
    switch (H5Iget_type(obj)) {
    case H5I_GROUP:
        out = describe_group(obj, canon, err);
        break;
    case H5I_DATASET:
        out = describe_dataset(obj, canon, err);
        break;
    default:
        h5cd_fail(err, H5CD_E_UNSUPPORTED, "%.200s: not a dataset or a group", canon);
        break;
    }
    H5Oclose(obj);
    return out;
}
