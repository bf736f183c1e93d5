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
    /* Bytes [0, prefix_len) are in the daemon's cache (its open fetched them): they are
     * read a page at a time as libhdf5 touches them, and the pages kept. */
    uint64_t prefix_len;
    uint8_t **pages; /* prefix page i, or NULL while not read */
    size_t npages;
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
/* Prefix pages: libhdf5 reads metadata a few hundred bytes at a time, spread
 * through the prefix (describing one NWB dataset touched 4 pages of 4 KiB
 * in a 2.9 MB prefix; listing 670 objects 331 pages of a 9.6 MB file).  A
 * page costs a READ round trip to the daemon's cache; a byte read and not
 * used costs its copies and, in fresh memory, a page fault per 4 KiB. */
#define VFD_PAGE_BYTES       (16 * 1024)
#define VFD_MAX_PREFIX_BYTES (64ULL * 1024 * 1024)

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

/* Sets up the (empty) page table of the prefix.  No table: every read goes as asked. */
static void plan_prefix(struct h5vfd_file *f)
{
    uint64_t want =
        f->fa.plan.prefix_bytes < f->fa.file.size ? f->fa.plan.prefix_bytes : f->fa.file.size;
    if (want > VFD_MAX_PREFIX_BYTES)
        want = VFD_MAX_PREFIX_BYTES;
    if (want == 0)
        return;
    size_t n = (size_t)((want + VFD_PAGE_BYTES - 1) / VFD_PAGE_BYTES);
    f->pages = calloc(n, sizeof(*f->pages));
    if (f->pages == NULL) {
        log_warn("msg=\"no memory for the file's page table; reading it by windows\"");
        return;
    }
    f->npages = n;
    f->prefix_len = want;
}

static void free_pages(struct h5vfd_file *f)
{
    for (size_t i = 0; i < f->npages; i++)
        free(f->pages[i]);
    free(f->pages);
}

/* Bytes of prefix page i (the last one may be short). */
static size_t page_length(const struct h5vfd_file *f, size_t i)
{
    uint64_t start = (uint64_t)i * VFD_PAGE_BYTES;
    uint64_t left = f->prefix_len - start;
    return left < VFD_PAGE_BYTES ? (size_t)left : VFD_PAGE_BYTES;
}

/* Reads the missing pages [first, end) of the prefix with one READ.  0, 1 when out of
 * memory, or -1 when the read failed (error remembered). */
static int fill_pages(struct h5vfd_file *f, size_t first, size_t end)
{
    uint64_t start = (uint64_t)first * VFD_PAGE_BYTES;
    uint64_t len = (uint64_t)(end - 1 - first) * VFD_PAGE_BYTES + page_length(f, end - 1);
    uint8_t *run = malloc((size_t)len);
    bool ok = run != NULL;
    for (size_t i = first; ok && i < end; i++)
        ok = (f->pages[i] = malloc(VFD_PAGE_BYTES)) != NULL;
    int rc = ok ? 0 : 1;
    struct h5cd_error err = {0};
    if (ok && f->fa.source.read(f->fa.source.ctx, &f->fa.file, start, len, run, &err) < 0) {
        remember_error(&err);
        ok = false;
        rc = -1;
    }
    for (size_t i = first; i < end; i++) {
        if (ok) {
            memcpy(f->pages[i], run + (i - first) * VFD_PAGE_BYTES, page_length(f, i));
        } else {
            free(f->pages[i]);
            f->pages[i] = NULL;
        }
    }
    free(run);
    return rc;
}

/*
 * A read inside the prefix, from its pages.  Metadata reads fill the pages
 * they miss (each run of missing pages is one READ); raw data is not kept:
 * a raw read that misses a page is read as asked.  0, 1 when the caller
 * must read it another way (raw, or out of memory), or -1 when a READ failed.
 */
static int read_prefix(struct h5vfd_file *f, bool raw, uint64_t addr, size_t len, uint8_t *out)
{
    size_t first = (size_t)(addr / VFD_PAGE_BYTES);
    size_t last = (size_t)((addr + len - 1) / VFD_PAGE_BYTES);
    for (size_t i = first; i <= last; i++) {
        if (f->pages[i] != NULL)
            continue;
        if (raw)
            return 1;
        size_t end = i + 1;
        while (end <= last && f->pages[end] == NULL)
            end++;
        int rc = fill_pages(f, i, end);
        if (rc != 0)
            return rc;
        i = end - 1;
    }
    for (size_t i = first; i <= last; i++) {
        uint64_t pstart = (uint64_t)i * VFD_PAGE_BYTES;
        uint64_t from = addr > pstart ? addr : pstart;
        uint64_t to = addr + len < pstart + VFD_PAGE_BYTES ? addr + len : pstart + VFD_PAGE_BYTES;
        memcpy(out + (from - addr), f->pages[i] + (from - pstart), (size_t)(to - from));
    }
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
    plan_prefix(f);
    return &f->pub;
}

static herr_t vfd_close(H5FD_t *file)
{
    struct h5vfd_file *f = (struct h5vfd_file *)file;
    free(f->window);
    free_pages(f);
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
        int rc = read_prefix(f, type == H5FD_MEM_DRAW, (uint64_t)addr, real, out);
        if (rc <= 0)
            return rc < 0 ? -1 : 0; /* a failed READ would fail again */
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
