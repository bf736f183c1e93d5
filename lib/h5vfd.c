/*
 * h5vfd.c - the "h5chunkd" HDF5 virtual file driver: libhdf5 reads remote
 * files through a caller's byte source (in the worker: the daemon's block
 * cache, over the worker socket).
 *
 * Every callback runs on the thread that called libhdf5, under libhdf5's
 * global lock.  The driver is read-only: write, truncate and allocation
 * callbacks refuse.  A read error from upstream is remembered per thread
 * so the caller can tell "upstream failed" from "not an HDF5 file".
 */
#include "h5vfd.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* What a file access property list carries to open(). */
struct h5vfd_fapl {
    struct h5vfd_source source;
    struct h5vfd_file_desc file;
    struct h5vfd_meta_plan plan;
};

/* One open file.  `pub` must come first: libhdf5 sees only an H5FD_t. */
struct h5vfd_file {
    H5FD_t pub;
    struct h5vfd_fapl fa;
    haddr_t eoa;
    uint8_t *prefix; /* bytes [0, prefix_len) of the file, kept for metadata reads */
    size_t prefix_len;
    uint8_t *window; /* the last metadata window read past the prefix */
    uint64_t window_start;
    size_t window_len;
    size_t window_cap;
    uint64_t window_size; /* the next window's size: doubles on each miss */
    uint64_t window_most; /* ... up to this */
};

/* Metadata windows when the daemon gives no plan: from at most this (and at most half the
 * prefix) up to VFD_WINDOW_MAX_BYTES.  No window is ever larger than VFD_WINDOW_CAP_BYTES. */
#define VFD_WINDOW_BYTES     (2 * 1024 * 1024)
#define VFD_WINDOW_MAX_BYTES (4 * 1024 * 1024)
#define VFD_WINDOW_CAP_BYTES (64 * 1024 * 1024)

static _Thread_local struct h5cd_error last_error;
static _Thread_local bool have_error;

static _Thread_local struct {
    bool on;
    bool seen;
    uint64_t addr;
    uint64_t size;
} capture;

void h5vfd_capture_begin(void)
{
    capture.on = true;
    capture.seen = false;
}

bool h5vfd_capture_end(uint64_t *addr, uint64_t *size)
{
    capture.on = false;
    *addr = capture.addr;
    *size = capture.size;
    return capture.seen;
}

static hid_t driver_id = H5I_INVALID_HID;
static pthread_once_t register_once = PTHREAD_ONCE_INIT;

static void remember_error(const struct h5cd_error *err)
{
    if (!have_error) {
        last_error = *err;
        have_error = true;
    }
}

bool h5vfd_take_error(struct h5cd_error *err)
{
    if (!have_error)
        return false;
    if (err != NULL)
        *err = last_error;
    have_error = false;
    return true;
}

static void *fapl_get(H5FD_t *file)
{
    struct h5vfd_file *f = (struct h5vfd_file *)file;
    struct h5vfd_fapl *copy = malloc(sizeof(*copy));
    if (copy != NULL)
        *copy = f->fa;
    return copy;
}

static void *fapl_copy(const void *fapl)
{
    struct h5vfd_fapl *copy = malloc(sizeof(*copy));
    if (copy != NULL)
        memcpy(copy, fapl, sizeof(*copy));
    return copy;
}

static herr_t fapl_free(void *fapl)
{
    free(fapl);
    return 0;
}

/* Reads the prefix in one call, so its missing blocks are coalesced into one request. */
static int load_prefix(struct h5vfd_file *f)
{
    uint64_t want =
        f->fa.plan.prefix_bytes < f->fa.file.size ? f->fa.plan.prefix_bytes : f->fa.file.size;
    if (want == 0)
        return 0;
    f->prefix = malloc((size_t)want);
    if (f->prefix == NULL) {
        /* A whole small file may not fit a tight worker_memory: windows read it instead. */
        log_warn("msg=\"no memory for the file's prefix; reading it by windows\" bytes=%llu",
                 (unsigned long long)want);
        return 0;
    }
    struct h5cd_error err = {0};
    if (f->fa.source.read(f->fa.source.ctx, &f->fa.file, 0, want, f->prefix, &err) < 0) {
        remember_error(&err);
        free(f->prefix);
        f->prefix = NULL;
        return -1;
    }
    f->prefix_len = (size_t)want;
    return 0;
}

static H5FD_t *vfd_open(const char *name, unsigned flags, hid_t fapl_id, haddr_t maxaddr)
{
    (void)name;
    (void)maxaddr;
    if ((flags & (H5F_ACC_RDWR | H5F_ACC_CREAT | H5F_ACC_TRUNC)) != 0)
        return NULL; /* read-only driver */
    const struct h5vfd_fapl *fa = H5Pget_driver_info(fapl_id);
    if (fa == NULL || fa->source.read == NULL)
        return NULL;
    struct h5vfd_file *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->fa = *fa;
    if (load_prefix(f) < 0) {
        free(f);
        return NULL;
    }
    return &f->pub;
}

static herr_t vfd_close(H5FD_t *file)
{
    struct h5vfd_file *f = (struct h5vfd_file *)file;
    free(f->window);
    free(f->prefix);
    free(f);
    return 0;
}

static int vfd_cmp(const H5FD_t *a, const H5FD_t *b)
{
    const struct h5vfd_file *fa = (const struct h5vfd_file *)a;
    const struct h5vfd_file *fb = (const struct h5vfd_file *)b;
    if (fa->fa.file.file_id != fb->fa.file.file_id)
        return fa->fa.file.file_id < fb->fa.file.file_id ? -1 : 1;
    return strcmp(fa->fa.file.identity, fb->fa.file.identity);
}

static herr_t vfd_query(const H5FD_t *file, unsigned long *flags)
{
    (void)file;
    /* Aggregating metadata and small raw data lets libhdf5 read in larger pieces. */
    *flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_AGGREGATE_SMALLDATA | H5FD_FEAT_DATA_SIEVE |
             H5FD_FEAT_ACCUMULATE_METADATA;
    return 0;
}

static haddr_t vfd_get_eoa(const H5FD_t *file, H5FD_mem_t type)
{
    (void)type;
    return ((const struct h5vfd_file *)file)->eoa;
}

static herr_t vfd_set_eoa(H5FD_t *file, H5FD_mem_t type, haddr_t addr)
{
    (void)type;
    ((struct h5vfd_file *)file)->eoa = addr;
    return 0;
}

static haddr_t vfd_get_eof(const H5FD_t *file, H5FD_mem_t type)
{
    (void)type;
    return (haddr_t)((const struct h5vfd_file *)file)->fa.file.size;
}

/*
 * Metadata past the prefix (chunk index nodes, object headers of a large
 * file) is read a whole window at a time from the miss on, one coalesced request,
 * and the window kept: libhdf5 reads metadata a few hundred bytes at a
 * time, and neighbouring nodes usually share a window, so this turns many
 * round trips into one.  Every miss doubles the next window (up to the
 * plan's largest): a file whose metadata is spread widely (hundreds of
 * groups) is then read in a few large requests rather than many small
 * ones.  The sizes come from the daemon, planned from the link: a miss
 * costs a round trip, so a window is worth about what the link carries in
 * one.  -1 when the read does not fit a window (the caller then reads
 * exactly what was asked).
 */
static int read_window(struct h5vfd_file *f, uint64_t addr, size_t len, uint8_t *out)
{
    if (f->window_size == 0) {
        const struct h5vfd_meta_plan *plan = &f->fa.plan;
        uint64_t half = plan->prefix_bytes / 2;
        f->window_size = plan->window_first > 0    ? plan->window_first
                         : half < VFD_WINDOW_BYTES ? half
                                                   : VFD_WINDOW_BYTES;
        f->window_most = plan->window_most > 0 ? plan->window_most : VFD_WINDOW_MAX_BYTES;
        if (f->window_most > VFD_WINDOW_CAP_BYTES)
            f->window_most = VFD_WINDOW_CAP_BYTES;
        if (f->window_size > f->window_most)
            f->window_size = f->window_most;
    }
    uint64_t wsize = f->window_size;
    if (wsize == 0 || len > wsize)
        return -1;
    if (f->window == NULL || addr < f->window_start ||
        addr + len > f->window_start + f->window_len) {
        /* From the miss onwards (libhdf5 reads a traversal's headers mostly in file
         * order), aligned to the daemon's blocks so the window keeps what it fetches. */
        uint64_t align = f->fa.plan.window_align > 0 ? f->fa.plan.window_align : 4096;
        uint64_t start = addr / align * align;
        uint64_t left = f->fa.file.size - start;
        size_t wlen = (size_t)(left < wsize ? left : wsize);
        if (addr + len > start + wlen)
            return -1; /* the end of the file is nearer than the read: read it exactly */
        if (f->window_cap < wlen) {
            uint8_t *bigger = realloc(f->window, wlen);
            if (bigger == NULL)
                return -1;
            f->window = bigger;
            f->window_cap = wlen;
        }
        struct h5cd_error err = {0};
        f->window_len = 0;
        if (f->fa.source.read(f->fa.source.ctx, &f->fa.file, start, wlen, f->window, &err) < 0) {
            remember_error(&err);
            return -1;
        }
        f->window_start = start;
        f->window_len = wlen;
        f->window_size = f->window_size > f->window_most / 2 ? f->window_most : 2 * f->window_size;
    }
    memcpy(out, f->window + (addr - f->window_start), len);
    return 0;
}

static herr_t vfd_read(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size,
                       void *buffer)
{
    (void)dxpl;
    struct h5vfd_file *f = (struct h5vfd_file *)file;
    uint8_t *out = buffer;
    if (capture.on && type == H5FD_MEM_DRAW) {
        if (!capture.seen) {
            capture.seen = true;
            capture.addr = (uint64_t)addr;
            capture.size = size;
        }
        memset(out, 0, size);
        return 0;
    }
    uint64_t fsize = f->fa.file.size;
    if (addr == HADDR_UNDEF || (uint64_t)addr > UINT64_MAX - size)
        return -1;
    /* libhdf5 may read past the end of file (e.g. probing a superblock); that reads zeros. */
    uint64_t inside = (uint64_t)addr >= fsize ? 0 : fsize - (uint64_t)addr;
    size_t real = inside < size ? (size_t)inside : size;
    if (real < size)
        memset(out + real, 0, size - real);
    if (real == 0)
        return 0;
    if ((uint64_t)addr + real <= f->prefix_len) {
        memcpy(out, f->prefix + addr, real);
        return 0;
    }
    if (type != H5FD_MEM_DRAW && read_window(f, (uint64_t)addr, real, out) == 0)
        return 0;
    struct h5cd_error err = {0};
    if (f->fa.source.read(f->fa.source.ctx, &f->fa.file, (uint64_t)addr, real, out, &err) < 0) {
        remember_error(&err);
        return -1;
    }
    return 0;
}

static herr_t vfd_write(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size,
                        const void *buffer)
{
    (void)file, (void)type, (void)dxpl, (void)addr, (void)size, (void)buffer;
    return -1;
}

static herr_t vfd_truncate(H5FD_t *file, hid_t dxpl, hbool_t closing)
{
    (void)file, (void)dxpl, (void)closing;
    return 0; /* nothing is ever written, so there is nothing to truncate */
}

static const H5FD_class_t h5vfd_class = {
    .name = "h5chunkd",
    .maxaddr = (haddr_t)INT64_MAX,
    .fc_degree = H5F_CLOSE_WEAK,
    .fapl_size = sizeof(struct h5vfd_fapl),
    .fapl_get = fapl_get,
    .fapl_copy = fapl_copy,
    .fapl_free = fapl_free,
    .open = vfd_open,
    .close = vfd_close,
    .cmp = vfd_cmp,
    .query = vfd_query,
    .get_eoa = vfd_get_eoa,
    .set_eoa = vfd_set_eoa,
    .get_eof = vfd_get_eof,
    .read = vfd_read,
    .write = vfd_write,
    .truncate = vfd_truncate,
    .fl_map = {H5FD_MEM_DEFAULT, H5FD_MEM_DEFAULT, H5FD_MEM_DEFAULT, H5FD_MEM_DEFAULT,
               H5FD_MEM_DEFAULT, H5FD_MEM_DEFAULT, H5FD_MEM_DEFAULT},
};

static void register_driver(void)
{
    driver_id = H5FDregister(&h5vfd_class);
    if (driver_id < 0)
        log_error("msg=\"cannot register the HDF5 virtual file driver\"");
}

hid_t h5vfd_register(void)
{
    pthread_once(&register_once, register_driver);
    return driver_id;
}

int h5vfd_set_fapl(hid_t fapl, const struct h5vfd_source *source,
                   const struct h5vfd_file_desc *file, const struct h5vfd_meta_plan *plan)
{
    hid_t id = h5vfd_register();
    if (id < 0)
        return -1;
    struct h5vfd_fapl fa = {.source = *source, .file = *file, .plan = *plan};
    return H5Pset_driver(fapl, id, &fa) < 0 ? -1 : 0;
}
