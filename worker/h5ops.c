/*
 * h5ops.c - every libhdf5 call h5chunkd makes, run inside h5chunkd-worker:
 * the open-file table, describing objects (lib/h5meta.c plus the layout
 * facts batches need), locating chunks, reading compact datasets and
 * decoding values (lib/h5decode.c).
 *
 * The bodies of the libhdf5 parts moved here from lib/h5index.c when
 * libhdf5 left the daemon.  Errors are classified for the client: a
 * failure of libhdf5 on the file's bytes is damaged_file, a filter libhdf5
 * cannot apply is filter_unavailable, an upstream failure during a READ is
 * reported as the daemon sent it.
 */
#include "h5ops.h"

#include <errno.h>
#include <hdf5.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5decode.h"
#include "h5meta.h"

#define MAX_OPEN_FILES     8
#define MAX_FILTER_NAME    64
#define MAX_LOCATE_SCRATCH (1024ULL * 1024 * 1024)

struct openfile {
    int64_t file_id; /* 0: free slot */
    hid_t fid;
    uint64_t last_used;
};

static struct h5vfd_source source;
static struct openfile files[MAX_OPEN_FILES];
static uint64_t tick;

void h5ops_init(const struct h5vfd_source *src)
{
    source = *src;
}

void h5ops_close_all(void)
{
    for (size_t i = 0; i < MAX_OPEN_FILES; i++) {
        if (files[i].file_id != 0)
            H5Fclose(files[i].fid);
        files[i].file_id = 0;
    }
}

/* True if the HDF5 signature is at 0, 512, 1024, 2048... (where libhdf5 looks for it). */
static bool has_signature(const struct h5vfd_file_desc *desc)
{
    static const uint8_t signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    for (uint64_t at = 0; at + sizeof(signature) <= desc->size; at = at == 0 ? 512 : at * 2) {
        uint8_t got[sizeof(signature)];
        if (source.read(source.ctx, desc, at, sizeof(got), got, NULL) < 0)
            return true; /* cannot tell: let the caller call it damaged */
        if (memcmp(got, signature, sizeof(got)) == 0)
            return true;
    }
    return false;
}

/* Opens the file version through the daemon, or reuses its open handle.  -1 with err. */
static hid_t acquire_file(const struct wp_op *op, struct h5cd_error *err)
{
    struct openfile *slot = &files[0];
    for (size_t i = 0; i < MAX_OPEN_FILES; i++) {
        if (files[i].file_id == op->file_id) {
            files[i].last_used = ++tick;
            return files[i].fid;
        }
        if (files[i].file_id == 0 || (slot->file_id != 0 && files[i].last_used < slot->last_used))
            slot = &files[i];
    }
    if (slot->file_id != 0) {
        H5Fclose(slot->fid);
        slot->file_id = 0;
    }
    struct h5vfd_file_desc desc = {.file_id = op->file_id, .size = op->file_size};
    snprintf(desc.identity, sizeof(desc.identity), "%s", op->identity);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    struct h5vfd_meta_plan plan = {.prefix_bytes = op->prefix_bytes,
                                   .window_first = op->window_first,
                                   .window_most = op->window_most,
                                   .window_align = op->window_align};
    if (fapl < 0 || h5vfd_set_fapl(fapl, &source, &desc, &plan) < 0) {
        if (fapl >= 0)
            H5Pclose(fapl);
        h5cd_fail(err, H5CD_E_INTERNAL, "cannot set up the HDF5 file driver");
        return -1;
    }
    h5vfd_take_error(NULL);
    hid_t fid = H5Fopen(desc.identity, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (fid < 0) {
        if (!h5vfd_take_error(err)) {
            if (has_signature(&desc))
                h5cd_fail(err, H5CD_E_DAMAGED_FILE,
                          "libhdf5 cannot open the remote file: its superblock is damaged");
            else
                h5cd_fail(err, H5CD_E_UNSUPPORTED, "the remote file is not an HDF5 file");
        }
        return -1;
    }
    *slot = (struct openfile){.file_id = op->file_id, .fid = fid, .last_used = ++tick};
    return fid;
}

/* ---- describe ---- */

/*
 * What the daemon's own chunk-index reader needs (lib/chunkwalk.c): the
 * dataset's object header address and the superblock's sizes, chunk
 * B-tree K and base address.  libhdf5 takes the superblock's position, the
 * user block's size, as the base of every address, whatever the stored
 * base address says.  Left out when libhdf5 cannot tell: the daemon then
 * asks a worker for every chunk.
 */
static void add_index_facts(hid_t fid, hid_t dset, json_t *facts)
{
    H5O_info_t info;
    size_t sizeof_offsets = 0, sizeof_lengths = 0;
    unsigned btree_k = 0;
    hsize_t userblock = 0;
    hid_t fcpl = H5Fget_create_plist(fid);
    bool known = fcpl >= 0 && H5Oget_info2(dset, &info, H5O_INFO_BASIC) >= 0 &&
                 info.addr != HADDR_UNDEF &&
                 H5Pget_sizes(fcpl, &sizeof_offsets, &sizeof_lengths) >= 0 &&
                 H5Pget_istore_k(fcpl, &btree_k) >= 0 && H5Pget_userblock(fcpl, &userblock) >= 0;
    if (fcpl >= 0)
        H5Pclose(fcpl);
    if (!known)
        return;
    json_object_set_new(facts, "ohdr_address", json_integer((json_int_t)info.addr));
    json_object_set_new(facts, "base_address", json_integer((json_int_t)userblock));
    json_object_set_new(facts, "sizeof_offsets", json_integer((json_int_t)sizeof_offsets));
    json_object_set_new(facts, "sizeof_lengths", json_integer((json_int_t)sizeof_lengths));
    json_object_set_new(facts, "btree_k", json_integer((json_int_t)btree_k));
}

/* Layout facts a batch needs, derived from the /v1/meta document and libhdf5.
 * Only contiguous data needs its address: asking a chunked dataset for its
 * storage size would walk its whole chunk index. */
static json_t *index_facts(hid_t fid, const char *path, bool contiguous)
{
    hid_t dset = H5Dopen2(fid, path, H5P_DEFAULT);
    if (dset < 0)
        return NULL;
    hid_t type = H5Dget_type(dset);
    size_t elem = type >= 0 ? H5Tget_size(type) : 0;
    if (type >= 0)
        H5Tclose(type);
    haddr_t addr = contiguous ? H5Dget_offset(dset) : HADDR_UNDEF;
    hsize_t storage = contiguous ? H5Dget_storage_size(dset) : 0;
    /* H5Dget_type gives variable-length types in their memory form (a pointer),
     * not the 16-byte heap id the file stores: contiguous storage tells the truth. */
    hid_t space = H5Dget_space(dset);
    hssize_t npoints = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (space >= 0)
        H5Sclose(space);
    if (storage > 0 && npoints > 0 && storage % (hsize_t)npoints == 0)
        elem = (size_t)(storage / (hsize_t)npoints);
    json_t *facts = json_object();
    json_object_set_new(facts, "elem_size", json_integer((json_int_t)elem));
    json_object_set_new(facts, "data_offset",
                        addr == HADDR_UNDEF || storage == 0 ? json_null()
                                                            : json_integer((json_int_t)addr));
    if (!contiguous)
        add_index_facts(fid, dset, facts);
    H5Dclose(dset);
    return facts;
}

/* The description of one object as JSON text (malloc'd).  0, or -1 with err. */
static int describe_text(hid_t fid, const char *path, char **text, size_t *len,
                         struct h5cd_error *err)
{
    json_t *meta = h5meta_describe(fid, path, err);
    if (meta == NULL)
        return -1;
    json_t *doc = json_pack("{s:o}", "meta", meta);
    const char *kind = json_string_value(json_object_get(meta, "kind"));
    if (doc != NULL && kind != NULL && strcmp(kind, "dataset") == 0) {
        const char *layout = json_string_value(json_object_get(meta, "layout"));
        json_t *facts = index_facts(fid, path, layout != NULL && strcmp(layout, "contiguous") == 0);
        if (facts == NULL) {
            json_decref(doc);
            return h5cd_fail(err, H5CD_E_DAMAGED_FILE, "cannot read the layout of %.200s", path);
        }
        json_object_set_new(doc, "facts", facts);
    }
    *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (*text == NULL)
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    *len = strlen(*text);
    if (*len > WP_MAX_DOC_BYTES) {
        free(*text);
        *text = NULL;
        return h5cd_fail(err, H5CD_E_TOO_LARGE, "the description of %.200s is too large", path);
    }
    return 0;
}

static int op_describe(hid_t fid, const struct wp_op *op, uint8_t **data, size_t *len,
                       struct h5cd_error *err)
{
    char *text = NULL;
    if (describe_text(fid, op->path, &text, len, err) < 0)
        return -1;
    *data = (uint8_t *)text;
    return 0;
}

/* ---- describe many ---- */

/* A growing DESCRIBE_MANY result. */
struct records {
    uint8_t *data;
    size_t len;
    size_t cap;
};

static int records_add(struct records *r, uint32_t code, const void *bytes, size_t n)
{
    struct wp_doc head = {.code = code, .length = (uint32_t)n};
    size_t need = r->len + sizeof(head) + n;
    if (need > r->cap) {
        size_t cap = r->cap > 0 ? r->cap : 64 * 1024;
        while (cap < need)
            cap *= 2;
        uint8_t *bigger = realloc(r->data, cap);
        if (bigger == NULL)
            return -1;
        r->data = bigger;
        r->cap = cap;
    }
    memcpy(r->data + r->len, &head, sizeof(head));
    memcpy(r->data + r->len + sizeof(head), bytes, n);
    r->len = need;
    return 0;
}

/* A failed description's error, classified as a single DESCRIBE would be.
 * True when a READ failed (upstream): that explains it best. */
static bool classify_describe_failure(struct h5cd_error *err)
{
    bool read_failed = h5vfd_take_error(err);
    if (err->code == H5CD_OK || err->code == H5CD_E_INTERNAL)
        err->code = H5CD_E_DAMAGED_FILE;
    err->message[sizeof(err->message) - 1] = '\0';
    return read_failed;
}

/*
 * Describes each path (valid_op checked the list), one record each, in
 * order.  Stops before a document that would take the documents past
 * WP_MAX_DOC_BYTES, or after WP_DESCRIBE_MANY_MS: the daemon asks again
 * for the rest.  A path that fails
 * is an error record; one whose READ failed ends the list (the next paths
 * would only wait for upstream again).  The operation itself fails only
 * when out of memory.
 */
static int op_describe_many(hid_t fid, const struct wp_op *op, const char *paths, uint8_t **data,
                            size_t *len, struct h5cd_error *err)
{
    struct records out = {0};
    uint64_t doc_bytes = 0;
    bool read_failed = false;
    const char *path = paths;
    uint64_t started = wp_now_ms();
    for (uint32_t i = 0; i < op->npaths; i++, path += strlen(path) + 1) {
        if (i > 0 && wp_now_ms() - started > WP_DESCRIBE_MANY_MS)
            break; /* the operation stays far inside worker_timeout_s, however slow each object */
        struct h5cd_error one = {0};
        char *text = NULL;
        size_t n = 0;
        h5vfd_take_error(NULL);
        int rc;
        if (describe_text(fid, path, &text, &n, &one) == 0) {
            if (i > 0 && n > WP_MAX_DOC_BYTES - doc_bytes) {
                free(text);
                break;
            }
            doc_bytes += n;
            rc = records_add(&out, H5CD_OK, text, n);
            free(text);
        } else {
            read_failed = classify_describe_failure(&one);
            rc = records_add(&out, one.code, one.message, strlen(one.message));
        }
        if (rc < 0) {
            free(out.data);
            return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
        }
        if (read_failed)
            break;
    }
    *data = out.data;
    *len = out.len;
    return 0;
}

/* ---- locate ---- */

/* A reusable buffer for H5Dread_chunk's (zero-filled, never fetched) output. */
struct scratch {
    uint8_t *data;
    size_t cap;
};

/*
 * Finds a chunk in O(log n) index reads: H5Dget_chunk_storage_size gives its
 * stored size (0: never written), and H5Dread_chunk under an h5vfd capture
 * gives its address without reading its bytes.  -1 when that did not work
 * (the caller falls back to H5Dget_chunk_info_by_coord).
 */
static int locate_fast(hid_t dset, const hsize_t *offset, struct scratch *scratch, unsigned *mask,
                       haddr_t *addr, hsize_t *size)
{
    hsize_t nbytes = 0;
    if (H5Dget_chunk_storage_size(dset, offset, &nbytes) < 0)
        return -1;
    if (nbytes == 0) {
        *addr = HADDR_UNDEF;
        *size = 0;
        *mask = 0;
        return 0;
    }
    if (nbytes > scratch->cap) {
        if (nbytes > MAX_LOCATE_SCRATCH)
            return -1;
        uint8_t *bigger = realloc(scratch->data, (size_t)nbytes);
        if (bigger == NULL)
            return -1;
        scratch->data = bigger;
        scratch->cap = (size_t)nbytes;
    }
    uint32_t filters = 0;
    uint64_t at = 0, len = 0;
    h5vfd_capture_begin();
    herr_t rc = H5Dread_chunk(dset, H5P_DEFAULT, offset, &filters, scratch->data);
    bool seen = h5vfd_capture_end(&at, &len);
    if (rc < 0 || !seen || len != nbytes)
        return -1;
    *addr = (haddr_t)at;
    *size = nbytes;
    *mask = filters;
    return 0;
}

/* Resolves chunks of a chunked dataset with libhdf5, in one pass. */
static int op_locate(hid_t fid, const struct wp_op *op, const uint64_t *coords, uint8_t **data,
                     size_t *len, struct h5cd_error *err)
{
    const struct h5dataset *ds = &op->ds;
    size_t n = op->ncoords;
    struct wp_loc *locs = calloc(n > 0 ? n : 1, sizeof(*locs));
    if (locs == NULL)
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    hid_t dset = H5Dopen2(fid, ds->path, H5P_DEFAULT);
    if (dset < 0) {
        free(locs);
        return h5cd_fail(err, H5CD_E_NOT_FOUND, "no dataset at %.200s", ds->path);
    }
    int rank = ds->grid.rank;
    int rc = 0;
    struct scratch scratch = {0};
    for (size_t i = 0; i < n && rc == 0; i++) {
        hsize_t offset[H5CD_MAX_RANK];
        for (int d = 0; d < rank; d++)
            offset[d] = coords[i * (size_t)rank + (size_t)d] * ds->grid.chunk[d];
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        hsize_t size = 0;
        if (locate_fast(dset, offset, &scratch, &mask, &addr, &size) < 0 &&
            H5Dget_chunk_info_by_coord(dset, offset, &mask, &addr, &size) < 0) {
            rc = h5cd_fail(err, H5CD_E_DAMAGED_FILE,
                           "libhdf5 could not locate a chunk of %.200s: its chunk index is damaged",
                           ds->path);
            break;
        }
        bool allocated = addr != HADDR_UNDEF && size > 0;
        locs[i] = (struct wp_loc){.allocated = allocated,
                                  .offset = allocated ? (uint64_t)addr : 0,
                                  .size = allocated ? (uint64_t)size : 0,
                                  .filter_mask = mask};
    }
    free(scratch.data);
    H5Dclose(dset);
    if (rc < 0) {
        free(locs);
        return -1;
    }
    *data = (uint8_t *)locs;
    *len = n * sizeof(*locs);
    return 0;
}

/* ---- compact ---- */

/* Reads a compact dataset's bytes, as stored, through libhdf5. */
static int op_compact(hid_t fid, const struct wp_op *op, uint8_t **data, size_t *len,
                      struct h5cd_error *err)
{
    const struct h5dataset *ds = &op->ds;
    hid_t dset = H5Dopen2(fid, ds->path, H5P_DEFAULT);
    hid_t type = dset >= 0 ? H5Dget_type(dset) : -1;
    hssize_t count = -1;
    if (dset >= 0) {
        hid_t space = H5Dget_space(dset);
        count = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
        if (space >= 0)
            H5Sclose(space);
    }
    int rc = -1;
    bool refused = false;
    if (type >= 0 && count >= 0 && H5Tis_variable_str(type) == 0 &&
        H5Tdetect_class(type, H5T_VLEN) == 0 && H5Tdetect_class(type, H5T_REFERENCE) == 0) {
        size_t size = H5Tget_size(type);
        if (size == 0 || (uint64_t)count > op->max_bytes / size) {
            refused = true;
            h5cd_fail(err, H5CD_E_TOO_LARGE, "compact dataset %.200s is larger than %llu bytes",
                      ds->path, (unsigned long long)op->max_bytes);
        } else {
            *len = (size_t)count * size;
            *data = malloc(*len > 0 ? *len : 1);
            if (*data != NULL && H5Dread(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) >= 0)
                rc = 0;
            else if (*data != NULL) {
                free(*data);
                *data = NULL;
            }
        }
    }
    if (type >= 0)
        H5Tclose(type);
    if (dset >= 0)
        H5Dclose(dset);
    if (rc < 0 && !refused && !h5vfd_take_error(err))
        h5cd_fail(err, H5CD_E_UNSUPPORTED, "cannot read compact dataset %.200s as raw bytes",
                  ds->path);
    return rc;
}

/* ---- decode ---- */

/*
 * After libhdf5 failed to read values: a filter of the pipeline that libhdf5
 * cannot apply is filter_unavailable (naming it); otherwise the stored bytes
 * did not decode, and the file is damaged.
 */
static void classify_decode_failure(hid_t fid, const char *path, struct h5cd_error *err)
{
    if (errno == ENOMEM) { /* libhdf5 or we could not allocate: the address-space limit */
        h5cd_fail(err, H5CD_E_DAMAGED_FILE,
                  "decoding %.200s needs more memory than worker_memory allows", path);
        return;
    }
    hid_t dset = H5Dopen2(fid, path, H5P_DEFAULT);
    hid_t dcpl = dset >= 0 ? H5Dget_create_plist(dset) : -1;
    int nfilters = dcpl >= 0 ? H5Pget_nfilters(dcpl) : -1;
    bool named = false;
    for (int i = 0; i < nfilters && i < 32 && !named; i++) {
        unsigned flags = 0, config = 0;
        size_t nvalues = 0;
        char name[MAX_FILTER_NAME] = "";
        H5Z_filter_t id =
            H5Pget_filter2(dcpl, (unsigned)i, &flags, &nvalues, NULL, sizeof(name), name, &config);
        if (id < 0)
            continue;
        name[sizeof(name) - 1] = '\0';
        for (char *p = name; *p != '\0'; p++)
            if ((unsigned char)*p < 0x20 || *p == '"' || *p == '\\' || (unsigned char)*p > 0x7e)
                *p = '?';
        if (H5Zfilter_avail(id) <= 0) {
            h5cd_fail(err, H5CD_E_FILTER_UNAVAILABLE,
                      "%.200s: filter %d (%s) is not available to libhdf5", path, (int)id,
                      name[0] != '\0' ? name : "unnamed");
            named = true;
        }
    }
    if (!named)
        h5cd_fail(err, H5CD_E_DAMAGED_FILE,
                  "libhdf5 could not decode %.200s: its stored bytes are damaged", path);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (dset >= 0)
        H5Dclose(dset);
}

/* Codes lib/h5decode.c gives when it does not know why libhdf5 failed. */
static bool unclassified(enum h5cd_errcode code)
{
    return code == H5CD_E_UPSTREAM_ERROR || code == H5CD_E_INTERNAL || code == H5CD_OK;
}

/* Bytes of one full chunk in the file type; refuses before anything is allocated. */
static int check_chunk_size(hid_t fid, const struct wp_op *op, struct h5cd_error *err)
{
    const struct h5dataset *ds = &op->ds;
    hid_t dset = H5Dopen2(fid, ds->path, H5P_DEFAULT);
    if (dset < 0)
        return h5cd_fail(err, H5CD_E_NOT_FOUND, "no dataset at %.200s", ds->path);
    hid_t type = H5Dget_type(dset);
    uint64_t size = type >= 0 ? H5Tget_size(type) : 0;
    if (type >= 0)
        H5Tclose(type);
    H5Dclose(dset);
    if (size == 0)
        return h5cd_fail(err, H5CD_E_DAMAGED_FILE, "cannot read the type of %.200s", ds->path);
    uint64_t total = size;
    for (int d = 0; d < ds->grid.rank; d++) {
        if (total > op->max_bytes / ds->grid.chunk[d])
            return h5cd_fail(err, H5CD_E_TOO_LARGE,
                             "a chunk of %.200s decodes to more than max_decode_bytes (%llu)",
                             ds->path, (unsigned long long)op->max_bytes);
        total *= ds->grid.chunk[d];
    }
    if (total > op->max_bytes)
        return h5cd_fail(err, H5CD_E_TOO_LARGE,
                         "a chunk of %.200s decodes to more than max_decode_bytes (%llu)", ds->path,
                         (unsigned long long)op->max_bytes);
    return 0;
}

static int op_decode(hid_t fid, const struct wp_op *op, const uint64_t *coords, uint8_t **data,
                     size_t *len, struct h5cd_error *err)
{
    if (check_chunk_size(fid, op, err) < 0)
        return -1;
    h5vfd_take_error(NULL);
    errno = 0;
    int rc = op->never_written ? h5decode_fill_chunk(fid, &op->ds, coords, data, len, err)
                               : h5decode_chunk(fid, &op->ds, coords, data, len, err);
    if (rc < 0) {
        if (!h5vfd_take_error(err) && unclassified(err->code))
            classify_decode_failure(fid, op->ds.path, err);
        return -1;
    }
    return 0;
}

static int op_slice(hid_t fid, const struct wp_op *op, struct wp_result *res, uint8_t **data,
                    size_t *len, struct h5cd_error *err)
{
    enum h5decode_format format;
    size_t elem_size = 0;
    h5vfd_take_error(NULL);
    errno = 0;
    if (h5decode_format_of(fid, &op->ds, &format, &elem_size, err) < 0 ||
        h5decode_slice(fid, &op->ds, &op->sel, op->max_bytes, data, len, err) < 0) {
        if (!h5vfd_take_error(err) && unclassified(err->code))
            classify_decode_failure(fid, op->ds.path, err);
        return -1;
    }
    res->format = (uint32_t)format;
    res->elem_size = elem_size;
    return 0;
}

/* ---- dispatch ---- */

/* True when paths holds exactly npaths NUL-terminated paths of at most H5CD_MAX_PATH_BYTES + 1. */
static bool valid_paths(const struct wp_op *op, const char *paths)
{
    size_t at = 0;
    for (uint32_t i = 0; i < op->npaths; i++) {
        const char *end = memchr(paths + at, '\0', op->paths_len - at);
        if (end == NULL || (size_t)(end - (paths + at)) > H5CD_MAX_PATH_BYTES + 1)
            return false;
        at = (size_t)(end - paths) + 1;
    }
    return at == op->paths_len;
}

/* Checks what the daemon sent before libhdf5 sees it. */
static int valid_op(const struct wp_op *op, const uint64_t *coords, const char *paths,
                    struct h5cd_error *err)
{
    if (op->opcode == WP_OP_DESCRIBE_MANY ? !valid_paths(op, paths)
                                          : op->npaths != 0 || op->paths_len != 0)
        return h5cd_fail(err, H5CD_E_INTERNAL, "malformed path list");
    if (memchr(op->identity, '\0', sizeof(op->identity)) == NULL ||
        memchr(op->path, '\0', sizeof(op->path)) == NULL ||
        memchr(op->ds.path, '\0', sizeof(op->ds.path)) == NULL || op->ds.grid.rank < 0 ||
        op->ds.grid.rank > H5CD_MAX_RANK || op->sel.rank < 0 || op->sel.rank > H5CD_MAX_RANK)
        return h5cd_fail(err, H5CD_E_INTERNAL, "malformed operation");
    for (int d = 0; d < op->ds.grid.rank; d++)
        if (op->ds.grid.chunk[d] == 0)
            return h5cd_fail(err, H5CD_E_INTERNAL, "malformed chunk grid");
    for (size_t i = 0; i < op->ncoords; i++)
        for (int d = 0; d < op->ds.grid.rank; d++)
            if (coords[i * (size_t)op->ds.grid.rank + (size_t)d] >=
                chunkgrid_count(&op->ds.grid, d))
                return h5cd_fail(err, H5CD_E_INTERNAL, "chunk coordinates outside the grid");
    return 0;
}

void h5ops_run(const struct wp_op *op, const uint64_t *coords, const char *paths,
               struct wp_result *res, uint8_t **data)
{
    memset(res, 0, sizeof(*res));
    *data = NULL;
    struct h5cd_error *err = &res->error;
    size_t len = 0;
    int rc = valid_op(op, coords, paths, err);
    hid_t fid = rc == 0 ? acquire_file(op, err) : -1;
    if (fid < 0)
        rc = -1;
    h5vfd_take_error(NULL);
    if (rc == 0) {
        switch (op->opcode) {
        case WP_OP_DESCRIBE:
            rc = op_describe(fid, op, data, &len, err);
            break;
        case WP_OP_DESCRIBE_MANY:
            rc = op_describe_many(fid, op, paths, data, &len, err);
            break;
        case WP_OP_LOCATE:
            rc = op_locate(fid, op, coords, data, &len, err);
            break;
        case WP_OP_COMPACT:
            rc = op_compact(fid, op, data, &len, err);
            break;
        case WP_OP_DECODE:
            rc = op->ncoords == 1 ? op_decode(fid, op, coords, data, &len, err)
                                  : h5cd_fail(err, H5CD_E_INTERNAL, "malformed operation");
            break;
        case WP_OP_SLICE:
            rc = op_slice(fid, op, res, data, &len, err);
            break;
        default:
            rc = h5cd_fail(err, H5CD_E_INTERNAL, "unknown operation %u", op->opcode);
        }
    }
    if (rc == 0 && op->opcode != WP_OP_DESCRIBE && op->opcode != WP_OP_DESCRIBE_MANY &&
        op->opcode != WP_OP_LOCATE && len > op->max_bytes) {
        free(*data);
        *data = NULL;
        rc = h5cd_fail(err, H5CD_E_TOO_LARGE, "decoded values larger than %llu bytes",
                       (unsigned long long)op->max_bytes);
    }
    if (rc < 0) {
        /* An upstream failure during a READ explains any libhdf5 failure best. */
        h5vfd_take_error(err);
        if (err->code == H5CD_OK || err->code == H5CD_E_INTERNAL)
            err->code = H5CD_E_DAMAGED_FILE; /* libhdf5 failed on the file's bytes */
        free(*data);
        *data = NULL;
        return;
    }
    res->error.code = H5CD_OK;
    res->data_len = len;
}
