/*
 * chunkindex_measure.c - measures lib/h5chunkindex against libhdf5 on one
 * large chunked dataset: locating every STRIDE-th chunk as one batch.
 *
 * Ours: reads go through a counting read_many (one call = one round trip
 * on a remote file); libhdf5: H5Dget_chunk_storage_size + H5Dread_chunk per
 * chunk (the daemon's capture path), its reads counted by libhdf5's own log
 * driver; each of them is a separate, serial read.  CPU time is the
 * process's.  Usage: chunkindex_measure FILE [STRIDE] - FILE is written
 * first when missing (1,000,000 chunks of 20 float32, deflate).
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "h5chunkindex.h"

#define CHUNKS      1000000
#define CHUNK_ELEMS 20

struct counting {
    int fd;
    unsigned long long batches, ranges, bytes, max_batch;
};

static int counting_read_many(void *ctx, const struct h5ci_range *r, size_t n)
{
    struct counting *c = ctx;
    c->batches++;
    c->ranges += n;
    if (n > c->max_batch)
        c->max_batch = n;
    for (size_t i = 0; i < n; i++) {
        c->bytes += r[i].length;
        if (pread(c->fd, r[i].buf, r[i].length, (off_t)r[i].offset) != (ssize_t)r[i].length)
            return -EIO;
    }
    return 0;
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int write_file(const char *path)
{
    /* libhdf5 frees and grows the heap's top once per chunk written: without
     * a trim threshold that is one brk pair per chunk (30 s of system time). */
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    mallopt(M_TOP_PAD, 64 << 20);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, 64 * 1024 * 1024, 1);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    hsize_t dims[1] = {(hsize_t)CHUNKS * CHUNK_ELEMS}, chunk[1] = {CHUNK_ELEMS};
    hid_t space = H5Screate_simple(1, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, chunk);
    H5Pset_deflate(dcpl, 4);
    hid_t d = H5Dcreate2(f, "big", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    int rc = d < 0 ? -1 : 0;
    for (hsize_t c = 0; c < CHUNKS && rc == 0; c++) {
        float v[CHUNK_ELEMS];
        unsigned char packed[256];
        uLongf len = sizeof(packed);
        for (int i = 0; i < CHUNK_ELEMS; i++)
            v[i] = (float)(c * CHUNK_ELEMS + (hsize_t)i);
        hsize_t off[1] = {c * CHUNK_ELEMS};
        if (compress2(packed, &len, (const Bytef *)v, sizeof(v), 1) != Z_OK ||
            H5Dwrite_chunk(d, H5P_DEFAULT, 0, off, len, packed) < 0)
            rc = -1;
    }
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Pclose(fapl);
    H5Sclose(space);
    H5Fclose(f);
    return rc;
}

static int measure_ours(const char *path, hid_t file, hid_t dset, size_t stride)
{
    struct counting c = {.fd = open(path, O_RDONLY)};
    struct stat st;
    if (c.fd < 0 || fstat(c.fd, &st) != 0)
        return -1;
    H5O_info_t oi;
    H5Oget_info2(dset, &oi, H5O_INFO_BASIC);
    hid_t fcpl = H5Fget_create_plist(file);
    size_t so, sl;
    unsigned ik;
    H5Pget_sizes(fcpl, &so, &sl);
    H5Pget_istore_k(fcpl, &ik);
    H5Pclose(fcpl);
    struct h5chunkindex_source src = {counting_read_many, &c, (uint64_t)st.st_size, 0, (unsigned)so,
                                      (unsigned)sl,       ik};
    double t0 = cpu_ms();
    struct h5chunkindex *ci = NULL;
    char reason[H5CHUNKINDEX_REASON_BYTES];
    if (h5chunkindex_open(&src, oi.addr, &ci, reason) != 0) {
        fprintf(stderr, "open: %s\n", reason);
        return -1;
    }
    const struct h5chunkindex_info *in = h5chunkindex_info(ci);
    size_t n = (size_t)(in->grid[0] + stride - 1) / stride;
    uint64_t *keys = malloc(n * sizeof(uint64_t));
    struct h5chunkindex_location *locs = malloc(n * sizeof(*locs));
    for (size_t i = 0; i < n; i++)
        keys[i] = (uint64_t)i * stride;
    unsigned long long open_batches = c.batches, open_bytes = c.bytes;
    int rc = h5chunkindex_locate(ci, keys, n, locs);
    double t1 = cpu_ms();
    printf("ours:    %zu keys, rc %d; open %llu batches %llu bytes; locate %llu batches "
           "(largest %llu ranges) %llu ranges %llu bytes; cpu %.1f ms\n",
           n, rc, open_batches, open_bytes, c.batches - open_batches, c.max_batch,
           c.ranges - open_batches, c.bytes - open_bytes, t1 - t0);
    h5chunkindex_close(ci);
    free(keys);
    free(locs);
    close(c.fd);
    return rc;
}

/* Reads of libhdf5's log driver: "<from>-<to> (<n> bytes) (<type>) Read". */
static void count_log(const char *log, unsigned long long *meta, unsigned long long *meta_bytes,
                      unsigned long long *raw, unsigned long long *raw_bytes)
{
    FILE *fp = fopen(log, "r");
    char line[512];
    *meta = *meta_bytes = *raw = *raw_bytes = 0;
    while (fp && fgets(line, sizeof(line), fp)) {
        char *open = strchr(line, '(');
        if (!open || !strstr(line, ") Read"))
            continue;
        unsigned long long n = strtoull(open + 1, NULL, 10);
        if (strstr(line, "H5FD_MEM_DRAW")) {
            (*raw)++;
            *raw_bytes += n;
        } else {
            (*meta)++;
            *meta_bytes += n;
        }
    }
    if (fp)
        fclose(fp);
}

static int measure_libhdf5(const char *path, size_t stride)
{
    char log[] = "/tmp/chunkindex_measure.XXXXXX";
    int lfd = mkstemp(log);
    if (lfd < 0)
        return -1;
    close(lfd);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_log(fapl, log, H5FD_LOG_LOC_READ, 0);
    double t0 = cpu_ms();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    hid_t d = H5Dopen2(f, "big", H5P_DEFAULT);
    hid_t space = H5Dget_space(d);
    hsize_t dims[1];
    H5Sget_simple_extent_dims(space, dims, NULL);
    size_t nchunks = (size_t)(dims[0] / CHUNK_ELEMS), n = 0;
    unsigned char buf[4096];
    for (size_t i = 0; i < nchunks; i += stride, n++) {
        hsize_t off[1] = {(hsize_t)i * CHUNK_ELEMS}, size = 0;
        uint32_t mask;
        if (H5Dget_chunk_storage_size(d, off, &size) < 0 || size > sizeof(buf) ||
            H5Dread_chunk(d, H5P_DEFAULT, off, &mask, buf) < 0)
            return -1;
    }
    double t1 = cpu_ms();
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
    H5Pclose(fapl);
    unsigned long long meta, meta_bytes, raw, raw_bytes;
    count_log(log, &meta, &meta_bytes, &raw, &raw_bytes);
    unlink(log);
    printf("libhdf5: %zu keys; %llu metadata reads (%llu bytes), each serial; %llu chunk reads "
           "(%llu bytes); cpu %.1f ms (open included)\n",
           n, meta, meta_bytes, raw, raw_bytes, t1 - t0);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s FILE [STRIDE]\n", argv[0]);
        return 2;
    }
    size_t stride = argc == 3 ? (size_t)strtoul(argv[2], NULL, 10) : 100;
    if (stride == 0)
        stride = 1;
    if (access(argv[1], R_OK) != 0 && write_file(argv[1]) != 0) {
        fprintf(stderr, "cannot write %s\n", argv[1]);
        return 1;
    }
    hid_t f = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f < 0 ? -1 : H5Dopen2(f, "big", H5P_DEFAULT);
    if (d < 0) {
        fprintf(stderr, "%s has no dataset /big\n", argv[1]);
        return 1;
    }
    int rc = measure_ours(argv[1], f, d, stride);
    H5Dclose(d);
    H5Fclose(f);
    if (rc == 0)
        rc = measure_libhdf5(argv[1], stride);
    return rc == 0 ? 0 : 1;
}
