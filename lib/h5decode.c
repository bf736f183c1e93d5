/*
 * h5decode.c - values of chunks and selections, decoded by libhdf5.
 *
 * Reads go through H5Dread with a memory type that keeps the stored
 * representation (the file's byte order; compounds packed), so the bytes
 * are those of the dataset's dtype as /v1/meta reports it.  Variable-length
 * strings and object references (as the referenced object's path) are
 * encoded as numcodecs' VLenUTF8.  Never returns approximate data: a type
 * it cannot represent is an H5CD_E_UNSUPPORTED error.
 */
#include "h5decode.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "h5cd_limits.h"
#include "h5filters.h"

#define MAX_DECODED_CHUNK_BYTES (1024ULL * 1024 * 1024)
#define MAX_REF_PATH_BYTES      4096

/* How one dataset's values are read into memory. */
struct memtype {
    enum h5decode_format format;
    hid_t type;  /* memory type for H5Dread */
    size_t size; /* bytes per element in memory */
    bool is_ref; /* object references, turned into paths */
};

/* True if values of the type hold pointers (variable-length data or references). */
static bool has_pointers(hid_t type)
{
    if (H5Tis_variable_str(type) > 0)
        return true;
    H5T_class_t cls = H5Tget_class(type);
    if (cls == H5T_VLEN || cls == H5T_REFERENCE)
        return true;
    if (cls == H5T_ARRAY) {
        hid_t base = H5Tget_super(type);
        bool p = base >= 0 && has_pointers(base);
        if (base >= 0)
            H5Tclose(base);
        return p;
    }
    if (cls == H5T_COMPOUND) {
        int n = H5Tget_nmembers(type);
        for (int i = 0; i < n; i++) {
            hid_t member = H5Tget_member_type(type, (unsigned)i);
            bool p = member < 0 || has_pointers(member);
            if (member >= 0)
                H5Tclose(member);
            if (p)
                return true;
        }
    }
    return false;
}

/* The full-width standard integer type of the same size, sign and byte order:
 * libhdf5 widens n-bit and padded integers into it (with sign extension). */
static hid_t full_width_int(hid_t ftype)
{
    static const struct {
        size_t size;
        bool is_signed, big;
        hid_t *type;
    } table[] = {
        {1, true, false, &H5T_STD_I8LE_g},  {1, false, false, &H5T_STD_U8LE_g},
        {2, true, false, &H5T_STD_I16LE_g}, {2, false, false, &H5T_STD_U16LE_g},
        {4, true, false, &H5T_STD_I32LE_g}, {4, false, false, &H5T_STD_U32LE_g},
        {8, true, false, &H5T_STD_I64LE_g}, {8, false, false, &H5T_STD_U64LE_g},
        {1, true, true, &H5T_STD_I8BE_g},   {1, false, true, &H5T_STD_U8BE_g},
        {2, true, true, &H5T_STD_I16BE_g},  {2, false, true, &H5T_STD_U16BE_g},
        {4, true, true, &H5T_STD_I32BE_g},  {4, false, true, &H5T_STD_U32BE_g},
        {8, true, true, &H5T_STD_I64BE_g},  {8, false, true, &H5T_STD_U64BE_g},
    };
    size_t size = H5Tget_size(ftype);
    bool is_signed = H5Tget_sign(ftype) == H5T_SGN_2;
    bool big = H5Tget_order(ftype) == H5T_ORDER_BE;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (table[i].size == size && table[i].is_signed == is_signed && table[i].big == big)
            return H5Tcopy(*table[i].type);
    return -1;
}

static int memtype_for(hid_t ftype, struct memtype *mt, struct h5cd_error *err)
{
    memset(mt, 0, sizeof(*mt));
    mt->type = -1;
    H5T_class_t cls = H5Tget_class(ftype);
    if (H5Tis_variable_str(ftype) > 0) {
        mt->type = H5Tcopy(H5T_C_S1);
        if (mt->type < 0 || H5Tset_size(mt->type, H5T_VARIABLE) < 0 ||
            H5Tset_cset(mt->type, H5Tget_cset(ftype)) < 0)
            goto fail;
        mt->format = H5DECODE_VLEN_UTF8;
        mt->size = sizeof(char *);
        return 0;
    }
    if (cls == H5T_REFERENCE) {
        if (H5Tequal(ftype, H5T_STD_REF_OBJ) <= 0)
            return h5cd_fail(err, H5CD_E_UNSUPPORTED, "region references cannot be served");
        mt->type = H5Tcopy(H5T_STD_REF_OBJ);
        mt->format = H5DECODE_VLEN_UTF8;
        mt->size = sizeof(hobj_ref_t);
        mt->is_ref = true;
        return mt->type < 0 ? -1 : 0;
    }
    if (cls == H5T_VLEN || has_pointers(ftype))
        return h5cd_fail(err, H5CD_E_UNSUPPORTED,
                         "variable-length sequences cannot be served as fixed-size values");
    mt->type = cls == H5T_INTEGER ? full_width_int(ftype) : H5Tcopy(ftype);
    if (mt->type < 0 || (cls == H5T_COMPOUND && H5Tpack(mt->type) < 0))
        goto fail;
    mt->format = H5DECODE_FIXED;
    mt->size = H5Tget_size(mt->type);
    return mt->size > 0 ? 0 : -1;
fail:
    if (mt->type >= 0)
        H5Tclose(mt->type);
    mt->type = -1;
    return h5cd_fail(err, H5CD_E_INTERNAL, "cannot build a memory type");
}

/* Fills n elements of buf with the dataset's fill value (zeros when it has none). */
static void prefill(hid_t dset, const struct memtype *mt, uint8_t *buf, size_t n)
{
    memset(buf, 0, n * mt->size);
    if (mt->format != H5DECODE_FIXED)
        return;
    hid_t dcpl = H5Dget_create_plist(dset);
    H5D_fill_value_t defined = H5D_FILL_VALUE_UNDEFINED;
    uint8_t *fill = malloc(mt->size);
    if (dcpl >= 0 && fill != NULL && H5Pfill_value_defined(dcpl, &defined) >= 0 &&
        defined != H5D_FILL_VALUE_UNDEFINED && H5Pget_fill_value(dcpl, mt->type, fill) >= 0) {
        bool zero = true;
        for (size_t i = 0; i < mt->size && zero; i++)
            zero = fill[i] == 0;
        for (size_t i = 0; !zero && i < n; i++)
            memcpy(buf + i * mt->size, fill, mt->size);
    }
    free(fill);
    if (dcpl >= 0)
        H5Pclose(dcpl);
}

/* Appends a little-endian u32. */
static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
    return p + 4;
}

/* Encodes n strings (NULL = "") as numcodecs VLenUTF8. */
static int encode_vlen(char **strings, size_t n, uint8_t **out, size_t *len, struct h5cd_error *err)
{
    if (n > UINT32_MAX)
        return h5cd_fail(err, H5CD_E_TOO_LARGE, "too many strings");
    uint64_t total = 4;
    for (size_t i = 0; i < n; i++) {
        size_t sl = strings[i] != NULL ? strlen(strings[i]) : 0;
        if (sl > UINT32_MAX)
            return h5cd_fail(err, H5CD_E_TOO_LARGE, "string too long");
        total += 4 + sl;
    }
    if (total > MAX_DECODED_CHUNK_BYTES)
        return h5cd_fail(err, H5CD_E_TOO_LARGE, "decoded strings larger than %llu bytes",
                         (unsigned long long)MAX_DECODED_CHUNK_BYTES);
    uint8_t *buf = malloc((size_t)total);
    if (buf == NULL)
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    uint8_t *p = put_u32(buf, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        size_t sl = strings[i] != NULL ? strlen(strings[i]) : 0;
        p = put_u32(p, (uint32_t)sl);
        if (sl > 0)
            memcpy(p, strings[i], sl);
        p += sl;
    }
    *out = buf;
    *len = (size_t)total;
    return 0;
}

/* Turns object references into the paths they point to (malloc'd strings). */
static char **ref_paths(hid_t fid, const hobj_ref_t *refs, size_t n)
{
    char **paths = calloc(n > 0 ? n : 1, sizeof(*paths));
    if (paths == NULL)
        return NULL;
    static const hobj_ref_t null_ref;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&refs[i], &null_ref, sizeof(null_ref)) == 0)
            continue;
        char name[MAX_REF_PATH_BYTES];
        ssize_t got = H5Rget_name(fid, H5R_OBJECT, &refs[i], name, sizeof(name));
        if (got > 0 && (size_t)got < sizeof(name))
            paths[i] = strdup(name);
    }
    return paths;
}

/* Bytes one decoded chunk of dset can have, the bound for filter output: chunk
 * elements times the element size (doubled when the type holds variable-length
 * data, whose stored heap ids are larger than pointers).  0 when not chunked. */
static uint64_t stored_chunk_bytes(hid_t dset)
{
    hid_t dcpl = H5Dget_create_plist(dset);
    hid_t type = H5Dget_type(dset);
    hsize_t dims[H5S_MAX_RANK];
    uint64_t bytes = 0;
    int rank = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED
                   ? H5Pget_chunk(dcpl, H5S_MAX_RANK, dims)
                   : -1;
    if (rank >= 0 && type >= 0) {
        bytes = H5Tget_size(type);
        if (has_pointers(type))
            bytes *= 2;
        for (int d = 0; d < rank && bytes > 0; d++)
            bytes = dims[d] != 0 && bytes > UINT64_MAX / dims[d] ? UINT64_MAX : bytes * dims[d];
    }
    if (type >= 0)
        H5Tclose(type);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    return bytes;
}

/* A filter of the pipeline that libhdf5 has no decoder for (not ours, no
 * plugin): 422 filter_unavailable naming it, rather than a decode failure. */
static int check_filters(hid_t dset, const char *path, struct h5cd_error *err)
{
    hid_t dcpl = H5Dget_create_plist(dset);
    int n = dcpl >= 0 ? H5Pget_nfilters(dcpl) : 0;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        unsigned flags, config, cd[8];
        size_t ncd = sizeof(cd) / sizeof(cd[0]);
        char name[64] = "";
        H5Z_filter_t id =
            H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, sizeof(name), name, &config);
        if (id < 0 || H5Zfilter_avail(id) > 0)
            continue;
        const char *known = h5filters_name((int)id);
        rc = h5cd_fail(err, H5CD_E_FILTER_UNAVAILABLE,
                       "%.200s: HDF5 filter %d (%s) is not available to decode this dataset", path,
                       (int)id, known != NULL ? known : "unregistered third-party filter");
    }
    if (dcpl >= 0)
        H5Pclose(dcpl);
    return rc;
}

/* Reads the selection of filespace into memspace, then lays the values out in *out. */
static int read_values(hid_t fid, hid_t dset, const struct memtype *mt, hid_t memspace,
                       hid_t filespace, size_t nelem, uint8_t **out, size_t *len,
                       struct h5cd_error *err)
{
    if (nelem > MAX_DECODED_CHUNK_BYTES / mt->size)
        return h5cd_fail(err, H5CD_E_TOO_LARGE, "decoded values larger than %llu bytes",
                         (unsigned long long)MAX_DECODED_CHUNK_BYTES);
    uint8_t *buf = malloc(nelem * mt->size > 0 ? nelem * mt->size : 1);
    if (buf == NULL)
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    prefill(dset, mt, buf, nelem);
    bool selected = H5Sget_select_npoints(memspace) > 0;
    h5filters_expect_chunk_bytes(stored_chunk_bytes(dset));
    herr_t read = selected ? H5Dread(dset, mt->type, memspace, filespace, H5P_DEFAULT, buf) : 0;
    h5filters_expect_chunk_bytes(0);
    if (read < 0) {
        free(buf);
        /* An upstream failure, if there was one, replaces this (h5index_with_file). */
        return h5cd_fail(err, H5CD_E_DAMAGED_FILE,
                         "libhdf5 could not decode the data (damaged chunk or filter data)");
    }
    if (mt->format == H5DECODE_FIXED) {
        *out = buf;
        *len = nelem * mt->size;
        return 0;
    }
    int rc;
    if (mt->is_ref) {
        char **paths = ref_paths(fid, (const hobj_ref_t *)buf, nelem);
        rc = paths != NULL ? encode_vlen(paths, nelem, out, len, err)
                           : h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
        for (size_t i = 0; paths != NULL && i < nelem; i++)
            free(paths[i]);
        free(paths);
    } else {
        rc = encode_vlen((char **)buf, nelem, out, len, err);
        if (selected)
            H5Dvlen_reclaim(mt->type, memspace, H5P_DEFAULT, buf);
    }
    free(buf);
    return rc;
}

int h5decode_format_of(hid_t fid, const struct h5dataset *ds, enum h5decode_format *format,
                       size_t *elem_size, struct h5cd_error *err)
{
    hid_t dset = H5Dopen2(fid, ds->path, H5P_DEFAULT);
    if (dset < 0)
        return h5cd_fail(err, H5CD_E_NOT_FOUND, "no dataset at %s", ds->path);
    hid_t ftype = H5Dget_type(dset);
    struct memtype mt;
    int rc = ftype >= 0 ? memtype_for(ftype, &mt, err) : -1;
    if (rc == 0) {
        *format = mt.format;
        *elem_size = mt.size;
        H5Tclose(mt.type);
    }
    if (ftype >= 0)
        H5Tclose(ftype);
    H5Dclose(dset);
    return rc;
}

/* Opens the dataset and its memory type; 0, or -1 with err (nothing left open). */
static int open_for_read(hid_t fid, const struct h5dataset *ds, hid_t *dset, struct memtype *mt,
                         struct h5cd_error *err)
{
    *dset = H5Dopen2(fid, ds->path, H5P_DEFAULT);
    if (*dset < 0)
        return h5cd_fail(err, H5CD_E_NOT_FOUND, "no dataset at %s", ds->path);
    if (check_filters(*dset, ds->path, err) < 0) {
        H5Dclose(*dset);
        return -1;
    }
    hid_t ftype = H5Dget_type(*dset);
    int rc = ftype >= 0 ? memtype_for(ftype, mt, err) : -1;
    if (ftype >= 0)
        H5Tclose(ftype);
    if (rc < 0) {
        H5Dclose(*dset);
        if (ftype < 0)
            h5cd_fail(err, H5CD_E_INTERNAL, "cannot read the dataset's type");
    }
    return rc;
}

/* Elements in one full chunk of ds; false when the count does not fit a size_t. */
static bool chunk_elements(const struct h5dataset *ds, size_t *nelem)
{
    size_t n = 1;
    for (int d = 0; d < ds->grid.rank; d++) {
        if (ds->grid.chunk[d] != 0 && n > SIZE_MAX / ds->grid.chunk[d])
            return false;
        n *= (size_t)ds->grid.chunk[d];
    }
    *nelem = n;
    return true;
}

int h5decode_chunk(hid_t fid, const struct h5dataset *ds, const uint64_t *coords, uint8_t **out,
                   size_t *len, struct h5cd_error *err)
{
    hid_t dset;
    struct memtype mt;
    if (open_for_read(fid, ds, &dset, &mt, err) < 0)
        return -1;
    int rank = ds->grid.rank;
    hsize_t full[H5CD_MAX_RANK], start[H5CD_MAX_RANK], count[H5CD_MAX_RANK],
        zero[H5CD_MAX_RANK] = {0};
    size_t nelem = 0;
    bool overflow = !chunk_elements(ds, &nelem);
    for (int d = 0; d < rank; d++) {
        full[d] = ds->grid.chunk[d];
        start[d] = coords[d] * ds->grid.chunk[d];
        uint64_t left = ds->grid.shape[d] - start[d];
        count[d] = left < full[d] ? left : full[d];
    }
    hid_t filespace = H5Dget_space(dset);
    hid_t memspace = rank > 0 ? H5Screate_simple(rank, full, NULL) : H5Screate(H5S_SCALAR);
    int rc = -1;
    if (overflow)
        h5cd_fail(err, H5CD_E_TOO_LARGE, "chunk too large to decode");
    else if (filespace < 0 || memspace < 0 ||
             (rank > 0 &&
              (H5Sselect_hyperslab(filespace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
               H5Sselect_hyperslab(memspace, H5S_SELECT_SET, zero, NULL, count, NULL) < 0)))
        h5cd_fail(err, H5CD_E_INTERNAL, "cannot select the chunk");
    else
        rc = read_values(fid, dset, &mt, memspace, filespace, nelem, out, len, err);
    if (memspace >= 0)
        H5Sclose(memspace);
    if (filespace >= 0)
        H5Sclose(filespace);
    H5Tclose(mt.type);
    H5Dclose(dset);
    return rc;
}

int h5decode_fill_chunk(hid_t fid, const struct h5dataset *ds, const uint64_t *coords,
                        uint8_t **out, size_t *len, struct h5cd_error *err)
{
    hid_t dset;
    struct memtype mt;
    if (open_for_read(fid, ds, &dset, &mt, err) < 0)
        return -1;
    if (mt.format != H5DECODE_FIXED) {
        H5Tclose(mt.type);
        H5Dclose(dset);
        return h5decode_chunk(fid, ds, coords, out, len, err);
    }
    size_t nelem = 0;
    hid_t nothing = H5Screate(H5S_NULL);
    int rc = -1;
    if (!chunk_elements(ds, &nelem))
        h5cd_fail(err, H5CD_E_TOO_LARGE, "chunk too large to decode");
    else if (nothing < 0)
        h5cd_fail(err, H5CD_E_INTERNAL, "cannot make a dataspace");
    else /* nothing selected: read_values fills the chunk and reads no byte */
        rc = read_values(fid, dset, &mt, nothing, H5S_ALL, nelem, out, len, err);
    if (nothing >= 0)
        H5Sclose(nothing);
    H5Tclose(mt.type);
    H5Dclose(dset);
    return rc;
}

int h5decode_slice(hid_t fid, const struct h5dataset *ds, const struct selection *sel,
                   uint64_t max_bytes, uint8_t **out, size_t *len, struct h5cd_error *err)
{
    hid_t dset;
    struct memtype mt;
    if (open_for_read(fid, ds, &dset, &mt, err) < 0)
        return -1;
    uint64_t nelem = selection_elements(sel);
    if (nelem == UINT64_MAX || nelem > max_bytes / mt.size) {
        H5Tclose(mt.type);
        H5Dclose(dset);
        return h5cd_fail(err, H5CD_E_TOO_LARGE,
                         "the selection is larger than the configured %llu bytes",
                         (unsigned long long)max_bytes);
    }
    int rank = sel->rank;
    hsize_t start[H5CD_MAX_RANK], stride[H5CD_MAX_RANK], count[H5CD_MAX_RANK];
    for (int d = 0; d < rank; d++) {
        start[d] = sel->start[d];
        stride[d] = sel->step[d];
        count[d] = sel->count[d];
    }
    hid_t filespace = H5Dget_space(dset);
    hid_t memspace = rank > 0 ? H5Screate_simple(rank, count, NULL) : H5Screate(H5S_SCALAR);
    int rc = -1;
    if (filespace < 0 || memspace < 0)
        h5cd_fail(err, H5CD_E_INTERNAL, "cannot build dataspaces");
    else if (nelem == 0 && rank > 0)
        rc = read_values(fid, dset, &mt, memspace, filespace, 0, out, len, err);
    else if (rank > 0 &&
             H5Sselect_hyperslab(filespace, H5S_SELECT_SET, start, stride, count, NULL) < 0)
        h5cd_fail(err, H5CD_E_INTERNAL, "cannot select the slice");
    else
        rc = read_values(fid, dset, &mt, memspace, filespace, (size_t)nelem, out, len, err);
    if (memspace >= 0)
        H5Sclose(memspace);
    if (filespace >= 0)
        H5Sclose(filespace);
    H5Tclose(mt.type);
    H5Dclose(dset);
    return rc;
}
