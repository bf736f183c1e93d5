/*
 * check_h5chunkindex.c - unit tests of lib/h5chunkindex: every chunk of a
 * matrix of datasets written by h5py (tests/data/make_chunkindex_fixture.py:
 * every chunk index type x ranks 1, 2, 3, 8 x no filter, gzip, shuffle+gzip
 * x full and sparse, all with edge chunks) is located by our reader and by
 * libhdf5 (H5Dget_chunk_info, H5Dget_chunk_storage_size, H5Dread_chunk) and
 * the answers must be equal, never-written chunks included; a file of
 * 1,000,000 gzip chunks (written here with libhdf5) proves that a batch
 * costs one read_many per B-tree level; damaged copies must give fallback,
 * never a location outside the file.  Fixtures live in a temporary
 * directory that main() removes.
 */
#define _XOPEN_SOURCE 700
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "h5chunkindex.h"

#define FIXTURE_TIMEOUT_S 120
/* The sanitizer build (CI runs the suite twice) writes a fifth of the chunks:
 * libhdf5 under ASan's allocator makes the 1,000,000-chunk file cost a
 * minute of CPU there, and the walk it checks is the same, one level less. */
#if defined(__SANITIZE_ADDRESS__)
#define BIG_CHUNKS 200000
#else
#define BIG_CHUNKS 1000000
#endif
#define BIG_CHUNK_ELEMS 20
#define SMALL_DATASET   2000 /* chunks: also compared with H5Dget_chunk_info */
#define DAMAGE_KEYS     256  /* keys located in each damaged copy */

extern char **environ;

static char fixture_dir[PATH_MAX];

/* ---- a read_many over a file or a buffer ---- */

struct file_source {
    int fd;
    const unsigned char *mem; /* instead of fd */
    uint64_t size;
    unsigned batches;
    uint64_t ranges, bytes;
    int fail_with; /* nonzero: every call fails so */
};

static int file_read_many(void *ctx, const struct h5ci_range *r, size_t n)
{
    struct file_source *s = ctx;
    s->batches++;
    if (s->fail_with)
        return s->fail_with;
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(r[i].offset + r[i].length <= s->size, "read past the end of the file");
        s->ranges++;
        s->bytes += r[i].length;
        if (s->mem) {
            memcpy(r[i].buf, s->mem + r[i].offset, r[i].length);
            continue;
        }
        ssize_t got = pread(s->fd, r[i].buf, r[i].length, (off_t)r[i].offset);
        if (got != (ssize_t)r[i].length)
            return -EIO;
    }
    return 0;
}

static void fixture_path(char *out, size_t outlen, const char *name)
{
    int n = snprintf(out, outlen, "%s/%s", fixture_dir, name);
    ck_assert(n > 0 && (size_t)n < outlen);
}

/* The source for a file, with the superblock facts libhdf5 reports. */
static struct h5chunkindex_source source_for(hid_t file, struct file_source *fs, const char *name)
{
    char path[PATH_MAX];
    fixture_path(path, sizeof(path), name);
    memset(fs, 0, sizeof(*fs));
    fs->fd = open(path, O_RDONLY);
    ck_assert_int_ge(fs->fd, 0);
    struct stat st;
    ck_assert_int_eq(fstat(fs->fd, &st), 0);
    fs->size = (uint64_t)st.st_size;
    hid_t fcpl = H5Fget_create_plist(file);
    size_t so = 0, sl = 0;
    unsigned ik = 0;
    hsize_t userblock = 0;
    ck_assert_int_ge(H5Pget_sizes(fcpl, &so, &sl), 0);
    ck_assert_int_ge(H5Pget_istore_k(fcpl, &ik), 0);
    ck_assert_int_ge(H5Pget_userblock(fcpl, &userblock), 0);
    H5Pclose(fcpl);
    return (struct h5chunkindex_source){.read_many = file_read_many,
                                        .ctx = fs,
                                        .file_size = fs->size,
                                        .base_address = userblock,
                                        .sizeof_offsets = (unsigned)so,
                                        .sizeof_lengths = (unsigned)sl,
                                        .btree_k = ik};
}

static hid_t open_fixture(const char *name)
{
    char path[PATH_MAX];
    fixture_path(path, sizeof(path), name);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_msg(f >= 0, "cannot open %s", path);
    return f;
}

static uint64_t object_address(hid_t obj)
{
    H5O_info_t oi;
    ck_assert_int_ge(H5Oget_info2(obj, &oi, H5O_INFO_BASIC), 0);
    return (uint64_t)oi.addr;
}

static const char *const TYPE_NAMES[] = {"btree1", "single", "implicit",
                                         "farray", "earray", "btree2"};

/* ---- comparison with libhdf5 ---- */

struct expect {
    hid_t dset, space;
    const struct h5chunkindex_info *info;
    size_t nchunks;
    uint64_t *coords; /* nchunks * rank */
};

static void grid_coords(struct expect *e)
{
    unsigned rank = e->info->rank;
    e->nchunks = 1;
    for (unsigned d = 0; d < rank; d++)
        e->nchunks *= e->info->grid[d];
    e->coords = malloc(e->nchunks * rank * sizeof(uint64_t));
    ck_assert_ptr_nonnull(e->coords);
    uint64_t pos[H5CHUNKINDEX_MAX_RANK] = {0};
    for (size_t i = 0; i < e->nchunks; i++) {
        memcpy(e->coords + i * rank, pos, rank * sizeof(uint64_t));
        for (int d = (int)rank - 1; d >= 0; d--) {
            if (++pos[d] < e->info->grid[d])
                break;
            pos[d] = 0;
        }
    }
}

/* One chunk against libhdf5: allocation, size, filter mask, and the stored
 * bytes at our offset equal to what H5Dread_chunk returns. */
static void compare_chunk(const struct expect *e, struct file_source *fs, const uint64_t *scaled,
                          const struct h5chunkindex_location *loc, const char *name)
{
    hsize_t off[H5CHUNKINDEX_MAX_RANK];
    for (unsigned d = 0; d < e->info->rank; d++)
        off[d] = scaled[d] * e->info->chunk_dims[d];
    hsize_t stored = 0;
    if (H5Dget_chunk_storage_size(e->dset, off, &stored) < 0)
        stored = 0; /* libhdf5 1.10: fails when the dataset has no storage yet */
    if (e->info->type != H5CHUNKINDEX_IMPLICIT)
        ck_assert_msg(loc->allocated == (stored > 0),
                      "%s: chunk %llu... allocated %d, libhdf5 %llu", name,
                      (unsigned long long)scaled[0], loc->allocated, (unsigned long long)stored);
    if (!loc->allocated)
        return;
    ck_assert_msg(loc->size == stored, "%s: size %llu, libhdf5 %llu", name,
                  (unsigned long long)loc->size, (unsigned long long)stored);
    unsigned char *want = malloc(stored), *got = malloc(stored);
    ck_assert(want && got);
    uint32_t mask = 0;
    ck_assert_int_ge(H5Dread_chunk(e->dset, H5P_DEFAULT, off, &mask, want), 0);
    ck_assert_uint_eq(loc->filter_mask, mask);
    ck_assert_int_eq(pread(fs->fd, got, stored, (off_t)loc->offset), (ssize_t)stored);
    ck_assert_msg(memcmp(want, got, stored) == 0, "%s: bytes at %llu differ", name,
                  (unsigned long long)loc->offset);
    free(want);
    free(got);
}

static size_t grid_position(const struct h5chunkindex_info *in, const uint64_t *scaled)
{
    size_t idx = 0;
    for (unsigned d = 0; d < in->rank; d++)
        idx = idx * in->grid[d] + scaled[d];
    return idx;
}

static int by_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* libhdf5 1.10.8 reports wrong coordinates from H5Dget_chunk_info for an
 * extensible array whose unlimited dimension is not the first (h5py's
 * read_direct_chunk at those coordinates says "not allocated"); there only
 * the set of chunk addresses can be compared with it. */
static bool chunk_info_coords_broken(const struct h5chunkindex_info *in)
{
    if (in->type != H5CHUNKINDEX_EXTENSIBLE_ARRAY)
        return false;
    return in->max_dims[0] != H5CHUNKINDEX_UNLIMITED;
}

/* Every chunk H5Dget_chunk_info lists is where we say; as many as we say. */
static void compare_chunk_info(const struct expect *e, const struct h5chunkindex_location *locs,
                               const char *name)
{
    hsize_t n = 0;
    ck_assert_int_ge(H5Dget_num_chunks(e->dset, e->space, &n), 0);
    size_t allocated = 0;
    for (size_t i = 0; i < e->nchunks; i++)
        allocated += locs[i].allocated;
    ck_assert_msg(allocated == n, "%s: %zu allocated, libhdf5 lists %llu", name, allocated,
                  (unsigned long long)n);
    uint64_t *ours = malloc((n + 1) * sizeof(uint64_t)),
             *theirs = malloc((n + 1) * sizeof(uint64_t));
    ck_assert(ours && theirs);
    for (size_t i = 0, k = 0; i < e->nchunks; i++)
        if (locs[i].allocated)
            ours[k++] = locs[i].offset;
    for (hsize_t i = 0; i < n; i++) {
        hsize_t off[H5CHUNKINDEX_MAX_RANK], size = 0;
        unsigned mask = 0;
        haddr_t addr = 0;
        uint64_t scaled[H5CHUNKINDEX_MAX_RANK];
        ck_assert_int_ge(H5Dget_chunk_info(e->dset, e->space, i, off, &mask, &addr, &size), 0);
        theirs[i] = addr;
        if (chunk_info_coords_broken(e->info))
            continue;
        for (unsigned d = 0; d < e->info->rank; d++)
            scaled[d] = off[d] / e->info->chunk_dims[d];
        const struct h5chunkindex_location *l = &locs[grid_position(e->info, scaled)];
        ck_assert_msg(l->allocated && l->offset == addr && l->size == size &&
                          l->filter_mask == mask,
                      "%s: chunk %llu at %llu+%llu, libhdf5 %llu+%llu", name, (unsigned long long)i,
                      (unsigned long long)l->offset, (unsigned long long)l->size,
                      (unsigned long long)addr, (unsigned long long)size);
    }
    qsort(ours, n, sizeof(uint64_t), by_u64);
    qsort(theirs, n, sizeof(uint64_t), by_u64);
    ck_assert_msg(memcmp(ours, theirs, n * sizeof(uint64_t)) == 0, "%s: chunk addresses differ",
                  name);
    free(ours);
    free(theirs);
}

static void compare_list(struct h5chunkindex *ci, const struct expect *e,
                         const struct h5chunkindex_location *locs, const char *name)
{
    struct h5chunkindex_list list;
    int rc = h5chunkindex_list_all(ci, &list);
    ck_assert_msg(rc == 0, "%s: list_all %d (%s)", name, rc, h5chunkindex_reason(ci));
    size_t allocated = 0;
    for (size_t i = 0; i < e->nchunks; i++)
        allocated += locs[i].allocated;
    ck_assert_uint_eq(list.count, allocated);
    for (size_t i = 0; i < list.count; i++) {
        const struct h5chunkindex_location *l =
            &locs[grid_position(e->info, list.coords + i * e->info->rank)];
        ck_assert(l->allocated && l->offset == list.locations[i].offset &&
                  l->size == list.locations[i].size &&
                  l->filter_mask == list.locations[i].filter_mask);
    }
    h5chunkindex_list_free(&list);
}

static void check_info(const struct h5chunkindex_info *in, hid_t dset, const char *name)
{
    ck_assert_msg(strncmp(name, TYPE_NAMES[in->type], strlen(TYPE_NAMES[in->type])) == 0 &&
                      name[strlen(TYPE_NAMES[in->type])] == '_',
                  "%s: index type %s", name, TYPE_NAMES[in->type]);
    hid_t space = H5Dget_space(dset), dcpl = H5Dget_create_plist(dset);
    hsize_t dims[H5CHUNKINDEX_MAX_RANK], maxd[H5CHUNKINDEX_MAX_RANK], chunk[H5CHUNKINDEX_MAX_RANK];
    int rank = H5Sget_simple_extent_dims(space, dims, maxd);
    ck_assert_int_eq(rank, (int)in->rank);
    ck_assert_int_eq(H5Pget_chunk(dcpl, rank, chunk), rank);
    for (int d = 0; d < rank; d++) {
        ck_assert_uint_eq(in->dims[d], dims[d]);
        ck_assert_uint_eq(in->max_dims[d],
                          maxd[d] == H5S_UNLIMITED ? H5CHUNKINDEX_UNLIMITED : maxd[d]);
        ck_assert_uint_eq(in->chunk_dims[d], chunk[d]);
    }
    ck_assert_int_eq((int)in->nfilters, H5Pget_nfilters(dcpl));
    hid_t type = H5Dget_type(dset);
    ck_assert_uint_eq(in->element_size, H5Tget_size(type));
    H5Tclose(type);
    H5Pclose(dcpl);
    H5Sclose(space);
}

/* Opens our reader on one dataset, locates every chunk of its grid in one
 * batch, and compares everything with libhdf5. */
static void check_dataset(hid_t file, const char *fname, const char *name)
{
    struct file_source fs;
    struct h5chunkindex_source src = source_for(file, &fs, fname);
    hid_t dset = H5Dopen2(file, name, H5P_DEFAULT);
    ck_assert_int_ge(dset, 0);
    struct h5chunkindex *ci = NULL;
    char reason[H5CHUNKINDEX_REASON_BYTES];
    int rc = h5chunkindex_open(&src, object_address(dset), &ci, reason);
    ck_assert_msg(rc == 0, "%s: open %d (%s)", name, rc, reason);
    ck_assert_uint_le(fs.batches, 3);
    struct expect e = {.dset = dset, .info = h5chunkindex_info(ci)};
    check_info(e.info, dset, name);
    grid_coords(&e);
    struct h5chunkindex_location *locs = calloc(e.nchunks, sizeof(*locs));
    ck_assert_ptr_nonnull(locs);
    rc = h5chunkindex_locate(ci, e.coords, e.nchunks, locs);
    ck_assert_msg(rc == 0, "%s: locate %d (%s)", name, rc, h5chunkindex_reason(ci));
    ck_assert_uint_le(h5chunkindex_stats(ci).last_batches, 8);
    for (size_t i = 0; i < e.nchunks; i++)
        compare_chunk(&e, &fs, e.coords + i * e.info->rank, &locs[i], name);
    if (e.nchunks <= SMALL_DATASET) {
        e.space = H5Dget_space(dset);
        compare_chunk_info(&e, locs, name);
        H5Sclose(e.space);
    }
    compare_list(ci, &e, locs, name);
    /* Single keys, one locate each, agree with the batch. */
    for (size_t i = 0; i < e.nchunks; i += e.nchunks / 7 + 1) {
        struct h5chunkindex_location one;
        ck_assert_int_eq(h5chunkindex_locate(ci, e.coords + i * e.info->rank, 1, &one), 0);
        ck_assert(one.allocated == locs[i].allocated && one.offset == locs[i].offset);
    }
    free(locs);
    free(e.coords);
    h5chunkindex_close(ci);
    H5Dclose(dset);
    close(fs.fd);
}

struct names {
    char *v[256];
    size_t n;
};

static herr_t collect(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)g;
    (void)info;
    struct names *ns = data;
    if (ns->n < 256)
        ns->v[ns->n++] = strdup(name);
    return 0;
}

static size_t check_file(const char *fname)
{
    hid_t f = open_fixture(fname);
    struct names ns = {0};
    ck_assert_int_ge(H5Literate(f, H5_INDEX_NAME, H5_ITER_INC, NULL, collect, &ns), 0);
    for (size_t i = 0; i < ns.n; i++) {
        check_dataset(f, fname, ns.v[i]);
        free(ns.v[i]);
    }
    H5Fclose(f);
    return ns.n;
}

START_TEST(test_matrix_btree1)
{
    ck_assert_uint_eq(check_file("default.h5"), 26);
}
END_TEST

START_TEST(test_matrix_layout4)
{
    ck_assert_uint_eq(check_file("latest.h5"), 110);
}
END_TEST

START_TEST(test_lookup3)
{
    /* Values published with Bob Jenkins' lookup3.c driver. */
    ck_assert_uint_eq(h5chunkindex_lookup3((const unsigned char *)"", 0), 0xdeadbeefU);
    ck_assert_uint_eq(
        h5chunkindex_lookup3((const unsigned char *)"Four score and seven years ago", 30),
        0x17770551U);
}
END_TEST

/* ---- the 1,000,000-chunk file ---- */

/* Written with H5Dwrite_chunk: h5py's chunk-by-chunk write of this file takes
 * minutes; the bytes on disk are the same kind (deflate, version-1 B-tree). */
static void make_big_file(const char *path)
{
    /* libhdf5 frees and grows the heap's top once per chunk written: without
     * a trim threshold that is one brk pair per chunk (30 s of system time). */
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    mallopt(M_TOP_PAD, 64 << 20);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, 64 * 1024 * 1024, 1); /* one write at close, not one per node */
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    hsize_t dims[1] = {(hsize_t)BIG_CHUNKS * BIG_CHUNK_ELEMS}, chunk[1] = {BIG_CHUNK_ELEMS};
    hid_t space = H5Screate_simple(1, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, chunk);
    H5Pset_deflate(dcpl, 4);
    hid_t d = H5Dcreate2(f, "big", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    float values[BIG_CHUNK_ELEMS];
    unsigned char packed[256];
    for (hsize_t c = 0; c < BIG_CHUNKS; c++) {
        for (int i = 0; i < BIG_CHUNK_ELEMS; i++)
            values[i] = (float)(c * BIG_CHUNK_ELEMS + (hsize_t)i);
        uLongf len = sizeof(packed);
        ck_assert_int_eq(compress2(packed, &len, (const Bytef *)values, sizeof(values), 1), Z_OK);
        hsize_t off[1] = {c * BIG_CHUNK_ELEMS};
        ck_assert_int_ge(H5Dwrite_chunk(d, H5P_DEFAULT, 0, off, len, packed), 0);
    }
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Fclose(f);
}

START_TEST(test_big_breadth_first)
{
    char path[PATH_MAX];
    fixture_path(path, sizeof(path), "big.h5");
    make_big_file(path);
    hid_t f = open_fixture("big.h5");
    struct file_source fs;
    struct h5chunkindex_source src = source_for(f, &fs, "big.h5");
    hid_t dset = H5Dopen2(f, "big", H5P_DEFAULT);
    struct h5chunkindex *ci = NULL;
    char reason[H5CHUNKINDEX_REASON_BYTES];
    ck_assert_int_eq(h5chunkindex_open(&src, object_address(dset), &ci, reason), 0);
    ck_assert_uint_eq(fs.batches, 1); /* a dataset header fits the first read */
    const struct h5chunkindex_info *in = h5chunkindex_info(ci);
    ck_assert_uint_eq(in->grid[0], BIG_CHUNKS);

    /* The root's level, read here from the bytes: the walk must make exactly
     * one batch per level, whatever the number of keys. */
    unsigned char root[8];
    ck_assert_int_eq(pread(fs.fd, root, sizeof(root), (off_t)in->index_address), 8);
    ck_assert(memcmp(root, "TREE", 4) == 0);
    unsigned levels = root[5] + 1u;
    ck_assert_uint_ge(levels, 3);

    size_t nkeys = BIG_CHUNKS / 100;
    uint64_t *coords = malloc(nkeys * sizeof(uint64_t));
    struct h5chunkindex_location *locs = calloc(nkeys, sizeof(*locs));
    for (size_t i = 0; i < nkeys; i++)
        coords[i] = (uint64_t)i * 100;
    fs.batches = 0;
    ck_assert_int_eq(h5chunkindex_locate(ci, coords, nkeys, locs), 0);
    ck_assert_uint_eq(fs.batches, levels);
    ck_assert_uint_eq(h5chunkindex_stats(ci).last_batches, levels);
    struct expect e = {.dset = dset, .info = in};
    for (size_t i = 0; i < nkeys; i += 10) {
        ck_assert(locs[i].allocated);
        compare_chunk(&e, &fs, &coords[i], &locs[i], "big");
    }
    /* One key costs the same number of batches. */
    fs.batches = 0;
    ck_assert_int_eq(h5chunkindex_locate(ci, &coords[nkeys / 2], 1, locs), 0);
    ck_assert_uint_eq(fs.batches, levels);

    struct h5chunkindex_list list;
    fs.batches = 0;
    ck_assert_int_eq(h5chunkindex_list_all(ci, &list), 0);
    ck_assert_uint_eq(list.count, BIG_CHUNKS);
    ck_assert_uint_eq(fs.batches, levels);
    h5chunkindex_list_free(&list);
    free(coords);
    free(locs);
    h5chunkindex_close(ci);
    H5Dclose(dset);
    H5Fclose(f);
    close(fs.fd);
}
END_TEST

/* ---- hostile bytes ---- */

static unsigned char *slurp(const char *name, uint64_t *size)
{
    char path[PATH_MAX];
    fixture_path(path, sizeof(path), name);
    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    fseek(fp, 0, SEEK_END);
    *size = (uint64_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc(*size);
    ck_assert_uint_eq(fread(buf, 1, *size, fp), *size);
    fclose(fp);
    return buf;
}

/* Locates every chunk of a damaged copy: the result is fallback, an error,
 * or locations inside the file - never a crash or a read outside it.  With
 * must_match (checksummed metadata), a success must give the true answer. */
static int damaged_run(struct h5chunkindex_source *src, uint64_t ohdr,
                       const struct h5chunkindex_location *truth, const uint64_t *coords, size_t n,
                       bool must_match)
{
    struct h5chunkindex *ci = NULL;
    int rc = h5chunkindex_open(src, ohdr, &ci, NULL);
    if (rc != 0)
        return rc;
    struct h5chunkindex_location *locs = calloc(n, sizeof(*locs));
    rc = h5chunkindex_locate(ci, coords, n, locs);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (locs[i].allocated)
            ck_assert(locs[i].offset + locs[i].size <= src->file_size);
        if (must_match)
            ck_assert_msg(locs[i].allocated == truth[i].allocated &&
                              locs[i].offset == truth[i].offset && locs[i].size == truth[i].size,
                          "wrong location %zu after damage", i);
    }
    free(locs);
    struct h5chunkindex_list list;
    /* Listing an array index locates its whole grid: only small ones here. */
    const struct h5chunkindex_info *in = h5chunkindex_info(ci);
    uint64_t grid = 1;
    for (unsigned d = 0; d < in->rank && grid <= 4 * DAMAGE_KEYS; d++)
        grid *= in->grid[d];
    bool tree = in->type == H5CHUNKINDEX_BTREE_V1 || in->type == H5CHUNKINDEX_BTREE_V2;
    if ((tree || grid <= 4 * DAMAGE_KEYS) && h5chunkindex_list_all(ci, &list) == 0)
        h5chunkindex_list_free(&list);
    h5chunkindex_close(ci);
    return rc;
}

/* Every byte of a checksummed structure changed: always fallback. */
static void damage_each_byte(const char *fname, const char *dname, bool checksummed, uint64_t span)
{
    hid_t f = open_fixture(fname);
    struct file_source fs;
    struct h5chunkindex_source src = source_for(f, &fs, fname);
    hid_t dset = H5Dopen2(f, dname, H5P_DEFAULT);
    uint64_t ohdr = object_address(dset);
    H5Dclose(dset);
    H5Fclose(f);
    close(fs.fd);
    uint64_t size;
    unsigned char *bytes = slurp(fname, &size);
    fs.mem = bytes;
    fs.fd = -1;

    struct h5chunkindex *ci = NULL;
    ck_assert_int_eq(h5chunkindex_open(&src, ohdr, &ci, NULL), 0);
    struct expect e = {.info = h5chunkindex_info(ci)};
    grid_coords(&e);
    /* A sample spread over the grid keeps a run cheap (this test is run
     * about a thousand times, under ASan too); small grids are taken whole. */
    size_t step = e.nchunks / DAMAGE_KEYS + 1, rank = e.info->rank, n = 0;
    for (size_t i = 0; i < e.nchunks; i += step, n++)
        memmove(e.coords + n * rank, e.coords + i * rank, rank * sizeof(uint64_t));
    e.nchunks = n;
    struct h5chunkindex_location *truth = calloc(e.nchunks, sizeof(*truth));
    ck_assert_int_eq(h5chunkindex_locate(ci, e.coords, e.nchunks, truth), 0);
    uint64_t index = e.info->index_address;
    h5chunkindex_close(ci);

    /* The object header's first 512 bytes and the index's first 512: a
     * change inside the index header must be caught by its checksum. */
    size_t header = 0;
    if (memcmp(bytes + index, "BTHD", 4) == 0)
        header = 38;
    else if (memcmp(bytes + index, "FAHD", 4) == 0)
        header = 28;
    else if (memcmp(bytes + index, "EAHD", 4) == 0)
        header = 72;
    uint64_t spots[2][2] = {{ohdr, span}, {index, span}};
    for (int s = 0; s < 2; s++) {
        for (uint64_t at = spots[s][0]; at < spots[s][0] + spots[s][1] && at < size; at++) {
            unsigned char old = bytes[at];
            bytes[at] ^= 0x5A;
            int rc = damaged_run(&src, ohdr, truth, e.coords, e.nchunks, checksummed);
            if (checksummed && s == 1 && at - index < header)
                ck_assert_msg(rc == H5CHUNKINDEX_FALLBACK, "byte %llu changed: %d",
                              (unsigned long long)(at - index), rc);
            else
                ck_assert(rc == 0 || rc == H5CHUNKINDEX_FALLBACK ||
                          (!checksummed && rc == -EINVAL));
            bytes[at] = old;
        }
    }
    /* A file cut short anywhere. */
    for (uint64_t cut = 0; cut < size; cut += size / 31 + 1) {
        src.file_size = cut;
        fs.size = cut;
        int rc = damaged_run(&src, ohdr, truth, e.coords, e.nchunks, false);
        ck_assert(rc == 0 || rc == H5CHUNKINDEX_FALLBACK);
    }
    free(truth);
    free(e.coords);
    free(bytes);
}

START_TEST(test_damaged_btree1)
{
    /* Damaged dimensions may put the undamaged keys outside the grid. */
    damage_each_byte("default.h5", "btree1__r2_gzip_sparse", false, 512);
}
END_TEST

START_TEST(test_damaged_layout4)
{
    damage_each_byte("latest.h5", "btree2__r3_shufgzip_sparse", true, 512);
    damage_each_byte("latest.h5", "earray__r2_gzip_full", true, 512);
    damage_each_byte("latest.h5", "farray__paged_sparse", true, 160);
    damage_each_byte("latest.h5", "earray__many_sparse", true, 100);
}
END_TEST

START_TEST(test_errors)
{
    hid_t f = open_fixture("latest.h5");
    struct file_source fs;
    struct h5chunkindex_source src = source_for(f, &fs, "latest.h5");
    hid_t dset = H5Dopen2(f, "earray__r2_gzip_full", H5P_DEFAULT);
    uint64_t ohdr = object_address(dset);
    struct h5chunkindex *ci = NULL;
    char reason[H5CHUNKINDEX_REASON_BYTES];

    /* An upstream failure is an error, not a fallback. */
    fs.fail_with = -EIO;
    ck_assert_int_eq(h5chunkindex_open(&src, ohdr, &ci, reason), -EIO);
    fs.fail_with = 0;
    ck_assert_int_eq(h5chunkindex_open(&src, ohdr, &ci, reason), 0);
    uint64_t key[2] = {0, 0};
    struct h5chunkindex_location loc;
    fs.fail_with = -ETIMEDOUT;
    ck_assert_int_eq(h5chunkindex_locate(ci, key, 1, &loc), -ETIMEDOUT);
    fs.fail_with = 0;
    /* Keys outside the grid are the caller's mistake. */
    key[1] = h5chunkindex_info(ci)->grid[1];
    ck_assert_int_eq(h5chunkindex_locate(ci, key, 1, &loc), -EINVAL);
    h5chunkindex_close(ci);

    /* Not an object header; outside the file; unsupported sizes. */
    ck_assert_int_eq(h5chunkindex_open(&src, 0, &ci, reason), H5CHUNKINDEX_FALLBACK);
    ck_assert_uint_gt(strlen(reason), 0);
    ck_assert_int_eq(h5chunkindex_open(&src, fs.size, &ci, reason), H5CHUNKINDEX_FALLBACK);
    src.sizeof_offsets = 16;
    ck_assert_int_eq(h5chunkindex_open(&src, ohdr, &ci, reason), H5CHUNKINDEX_FALLBACK);
    src.sizeof_offsets = 8;
    H5Dclose(dset);

    /* A group and a contiguous dataset are not chunked. */
    ck_assert_int_eq(h5chunkindex_open(&src, object_address(f), &ci, reason),
                     H5CHUNKINDEX_FALLBACK);
    H5Fclose(f);
    close(fs.fd);
}
END_TEST

/* ---- fixture ---- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int make_fixture(void)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(fixture_dir, sizeof(fixture_dir), "%s/check_h5chunkindex.XXXXXX", tmp);
    if (!mkdtemp(fixture_dir))
        return -1;
    char *argv[] = {(char *)PYTHON_H5, (char *)CHUNKINDEX_FIXTURE_SCRIPT, fixture_dir, NULL};
    pid_t pid;
    if (posix_spawn(&pid, PYTHON_H5, NULL, NULL, argv, environ) != 0)
        return -1;
    for (int waited = 0; waited < FIXTURE_TIMEOUT_S * 10; waited++) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static Suite *suite(void)
{
    Suite *s = suite_create("h5chunkindex");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 120);
    tcase_add_test(core, test_lookup3);
    tcase_add_test(core, test_matrix_btree1);
    tcase_add_test(core, test_matrix_layout4);
    suite_add_tcase(s, core);
    /* Writing 1,000,000 chunks takes ~10 s of CPU; the wall-clock bound
     * leaves room for a loaded machine. */
    TCase *large = tcase_create("large");
    tcase_set_timeout(large, 300);
    tcase_add_test(large, test_big_breadth_first);
    suite_add_tcase(s, large);
    TCase *hostile = tcase_create("hostile");
    tcase_set_timeout(hostile, 120);
    tcase_add_test(hostile, test_errors);
    tcase_add_test(hostile, test_damaged_btree1);
    tcase_add_test(hostile, test_damaged_layout4);
    suite_add_tcase(s, hostile);
    return s;
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (make_fixture() != 0) {
        fprintf(stderr, "cannot write the fixture with %s\n", PYTHON_H5);
        return 1;
    }
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    nftw(fixture_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failed ? 1 : 0;
}
