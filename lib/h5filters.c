/*
 * h5filters.c - decode callbacks for third-party HDF5 filters, written
 * against the libraries Debian ships (liblzf, liblzo2, c-blosc, libzstd,
 * liblz4) and the published framings of the HDF5 filters that use them.
 * Bitshuffle's bit transpose is done here: Debian has no C library for it.
 *
 * Framings (all multi-byte header fields big-endian unless said):
 *   lzf 32000      raw LZF stream; cd[2] = decoded chunk bytes (h5py).
 *   lzo 305        LZO1X stream; files of some PyTables 2.x versions append the
 *                  adler32 of the decoded bytes and their length (4-byte
 *                  little-endian each), told apart by where the stream's
 *                  end marker (0x11 0 0) lies.
 *   blosc 32001    one blosc frame (its header names size and codec).
 *   bitshuffle     cd[2] element size, cd[3] block size in elements (0 = default),
 *     32008        cd[4] 0 none / 2 LZ4 / 3 zstd.  Compressed: u64 decoded
 *                  bytes, u32 block bytes, then per block u32 size + data.
 *                  Blocks are bit-transposed; a tail of fewer than 8
 *                  elements is stored as is.
 *   bzip2 307      one bzip2 stream (PyTables; the HDF5 bzip2 plugin).
 *   zstd 32015     zstd frames.
 *   lz4 32004      u64 decoded bytes, u32 block bytes, then per block u32
 *                  size + LZ4 block (a block whose size equals its decoded
 *                  size is stored as is).
 */
#include "h5filters.h"

#include <blosc.h>
#include <bzlib.h>
#include <hdf5.h>
#include <limits.h>
#include <lz4.h>
#include <lzf.h>
#include <lzo/lzo1x.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define FILTER_LZO        305
#define FILTER_BZIP2      307
#define FILTER_LZF        32000
#define FILTER_BLOSC      32001
#define FILTER_LZ4        32004
#define FILTER_BITSHUFFLE 32008
#define FILTER_ZSTD       32015

#define H5FILTERS_CHECKSUM_SLACK 16

#define BSHUF_NONE          0
#define BSHUF_LZ4           2
#define BSHUF_ZSTD          3
#define BSHUF_DEFAULT_BYTES 8192 /* bitshuffle's target block size */
#define BSHUF_MIN_BLOCK     128  /* elements */
#define BSHUF_MAX_ELEM      (64 * 1024)

/* The last three bytes of every LZO1X stream. */
static const uint8_t lzo_end_marker[3] = {0x11, 0, 0};

static _Thread_local uint64_t expected_bytes;

struct outbuf {
    void *(*alloc)(size_t);
    void (*release)(void *);
    uint8_t *data;
    size_t cap;
    size_t len;
};

void h5filters_expect_chunk_bytes(uint64_t bytes)
{
    expected_bytes = bytes;
}

const char *h5filters_name(int id)
{
    static const struct {
        int id;
        const char *name;
    } known[] = {{1, "deflate"},        {2, "shuffle"},
                 {3, "fletcher32"},     {4, "szip"},
                 {5, "nbit"},           {6, "scaleoffset"},
                 {FILTER_LZO, "lzo"},   {FILTER_BZIP2, "bzip2"},
                 {FILTER_LZF, "lzf"},   {FILTER_BLOSC, "blosc"},
                 {FILTER_LZ4, "lz4"},   {FILTER_BITSHUFFLE, "bitshuffle"},
                 {FILTER_ZSTD, "zstd"}, {32013, "zfp"},
                 {32017, "sz"}};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (known[i].id == id)
            return known[i].name;
    return NULL;
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* Allocates the output of `size` bytes (at least 1).  0, or -1. */
static int out_alloc(struct outbuf *o, size_t size)
{
    o->data = o->alloc(size > 0 ? size : 1);
    o->cap = size;
    o->len = 0;
    return o->data != NULL ? 0 : -1;
}

/* ---- lzf, lzo ---- */

static int decode_lzf(const unsigned *cd, size_t ncd, const uint8_t *in, size_t in_len,
                      size_t limit, struct outbuf *o)
{
    /* h5py records the decoded chunk size; older writers may not have. */
    bool known = ncd >= 3 && cd[2] > 0 && cd[2] <= limit;
    size_t size = known ? cd[2] : limit;
    if (in_len == 0 || in_len > UINT32_MAX || size > UINT32_MAX || out_alloc(o, size) < 0)
        return -1;
    unsigned n = lzf_decompress(in, (unsigned)in_len, o->data, (unsigned)size);
    /* An LZF stream has no end marker: a truncated one decodes short. */
    if (n == 0 || (known && n != size))
        return -1;
    o->len = n;
    return 0;
}

static int decode_lzo(const uint8_t *in, size_t in_len, size_t limit, struct outbuf *o)
{
    if (in_len < 3)
        return -1;
    bool trailer = memcmp(in + in_len - 3, lzo_end_marker, 3) != 0;
    if (trailer && (in_len < 11 || memcmp(in + in_len - 11, lzo_end_marker, 3) != 0))
        return -1;
    size_t size = limit;
    uint32_t sum = 0;
    if (trailer) {
        if (in_len < 8)
            return -1;
        sum = le32(in + in_len - 8);
        size = le32(in + in_len - 4);
        in_len -= 8;
        if (size > limit)
            return -1;
    }
    if (out_alloc(o, size) < 0)
        return -1;
    lzo_uint got = size;
    if (lzo1x_decompress_safe(in, in_len, o->data, &got, NULL) != LZO_E_OK ||
        (trailer && got != size))
        return -1;
    if (trailer && lzo_adler32(lzo_adler32(0, NULL, 0), o->data, got) != sum)
        return -1;
    o->len = got;
    return 0;
}

/* ---- bzip2 ---- */

static int decode_bzip2(const uint8_t *in, size_t in_len, size_t limit, struct outbuf *o)
{
    if (in_len > UINT_MAX || limit > UINT_MAX || out_alloc(o, limit) < 0)
        return -1;
    unsigned got = (unsigned)limit;
    /* BZ_OUTBUFF_FULL when the stream decodes to more than the limit. */
    if (BZ2_bzBuffToBuffDecompress((char *)o->data, &got, (char *)in, (unsigned)in_len, 0, 0) !=
        BZ_OK)
        return -1;
    o->len = got;
    return 0;
}

/* ---- blosc ---- */

static int decode_blosc(const uint8_t *in, size_t in_len, size_t limit, struct outbuf *o)
{
    size_t size = 0;
    if (in_len < BLOSC_MIN_HEADER_LENGTH || blosc_cbuffer_validate(in, in_len, &size) < 0 ||
        size > limit || size > INT32_MAX || out_alloc(o, size) < 0)
        return -1;
    if (size == 0)
        return 0;
    int n = blosc_decompress_ctx(in, o->data, size, 1);
    if (n < 0 || (size_t)n != size)
        return -1;
    o->len = size;
    return 0;
}

/* ---- zstd ---- */

static int decode_zstd(const uint8_t *in, size_t in_len, size_t limit, struct outbuf *o)
{
    /* The HDF5 zstd filter writes one frame; its header may state the size. */
    unsigned long long known = ZSTD_getFrameContentSize(in, in_len);
    if (known == ZSTD_CONTENTSIZE_ERROR || (known != ZSTD_CONTENTSIZE_UNKNOWN && known > limit))
        return -1;
    size_t size = known != ZSTD_CONTENTSIZE_UNKNOWN ? (size_t)known : limit;
    if (out_alloc(o, size) < 0)
        return -1;
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (dctx == NULL)
        return -1;
    /* Streaming with the output as the only buffer: frames that would write
     * past it (an unknown or lying content size) stop at its end. */
    ZSTD_inBuffer src = {in, in_len, 0};
    ZSTD_outBuffer dst = {o->data, size, 0};
    int rc = 0;
    for (;;) {
        size_t r = ZSTD_decompressStream(dctx, &dst, &src);
        if (ZSTD_isError(r)) {
            rc = -1;
            break;
        }
        if (src.pos == src.size && r == 0)
            break; /* every frame complete */
        if (dst.pos == dst.size && (src.pos < src.size || r != 0)) {
            /* Output full: fine only if nothing more would come out. */
            uint8_t probe;
            ZSTD_outBuffer more = {&probe, 1, 0};
            r = ZSTD_decompressStream(dctx, &more, &src);
            if (ZSTD_isError(r) || more.pos > 0 || src.pos < src.size || r != 0)
                rc = -1;
            break;
        }
        if (src.pos == src.size && dst.pos < dst.size) {
            rc = -1; /* truncated frame */
            break;
        }
    }
    ZSTD_freeDCtx(dctx);
    if (rc == 0)
        o->len = dst.pos;
    return rc;
}

/* ---- lz4 (the HDF5 plugin's framing) ---- */

static int decode_lz4(const uint8_t *in, size_t in_len, size_t limit, struct outbuf *o)
{
    if (in_len < 12)
        return -1;
    uint64_t total = be64(in);
    uint64_t block = be32(in + 8);
    if (total > limit || block == 0 || block > INT32_MAX || out_alloc(o, (size_t)total) < 0)
        return -1;
    size_t pos = 12;
    while (o->len < total) {
        size_t want = total - o->len < block ? (size_t)(total - o->len) : (size_t)block;
        if (in_len - pos < 4)
            return -1;
        uint32_t csize = be32(in + pos);
        pos += 4;
        if (csize > in_len - pos || csize > INT32_MAX)
            return -1;
        if (csize == want) {
            memcpy(o->data + o->len, in + pos, want);
        } else {
            int n = LZ4_decompress_safe((const char *)in + pos, (char *)o->data + o->len,
                                        (int)csize, (int)want);
            if (n < 0 || (size_t)n != want)
                return -1;
        }
        pos += csize;
        o->len += want;
    }
    return pos == in_len ? 0 : -1;
}

/* ---- bitshuffle ---- */

/* Transposes the 8x8 bit matrix x (bit c of byte r is element [r][c]). */
static uint64_t transpose8x8(uint64_t x)
{
    uint64_t t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAULL;
    x ^= t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCULL;
    x ^= t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ULL;
    x ^= t ^ (t << 28);
    return x;
}

/*
 * Undoes bitshuffle's transpose of one block of n elements (n a multiple
 * of 8): the input is 8 * esize rows of n bits, row 8j+b holding bit b of
 * byte j of every element, element i at bit i % 8 of byte i / 8.  Eight
 * elements at a time: the 8 row bytes of byte j are an 8x8 bit matrix whose
 * transpose is byte j of those 8 elements.
 */
static void bit_unshuffle(const uint8_t *in, uint8_t *out, size_t n, size_t esize)
{
    size_t row_bytes = n / 8;
    for (size_t j = 0; j < esize; j++) {
        const uint8_t *rows = in + j * 8 * row_bytes;
        for (size_t k = 0; k < row_bytes; k++) {
            uint64_t x = 0;
            for (unsigned b = 0; b < 8; b++)
                x |= (uint64_t)rows[b * row_bytes + k] << (8 * b);
            x = transpose8x8(x);
            uint8_t *dst = out + k * 8 * esize + j;
            for (unsigned e = 0; e < 8; e++)
                dst[e * esize] = (uint8_t)(x >> (8 * e));
        }
    }
}

/* One compressed bitshuffle block of `bytes` decoded bytes into tmp.  Bytes consumed, or 0. */
static size_t bshuf_block(int codec, const uint8_t *in, size_t in_len, uint8_t *tmp, size_t bytes)
{
    if (in_len < 4)
        return 0;
    uint32_t csize = be32(in);
    if (csize > in_len - 4 || csize > INT32_MAX || bytes > INT32_MAX)
        return 0;
    if (codec == BSHUF_LZ4) {
        int n = LZ4_decompress_safe((const char *)in + 4, (char *)tmp, (int)csize, (int)bytes);
        if (n < 0 || (size_t)n != bytes)
            return 0;
    } else {
        size_t n = ZSTD_decompress(tmp, bytes, in + 4, csize);
        if (ZSTD_isError(n) || n != bytes)
            return 0;
    }
    return 4 + (size_t)csize;
}

static int decode_bitshuffle(const unsigned *cd, size_t ncd, const uint8_t *in, size_t in_len,
                             size_t limit, struct outbuf *o)
{
    if (ncd < 3 || cd[2] == 0 || cd[2] > BSHUF_MAX_ELEM)
        return -1;
    size_t esize = cd[2];
    int codec = ncd >= 5 ? (int)cd[4] : BSHUF_NONE;
    if (codec != BSHUF_NONE && codec != BSHUF_LZ4 && codec != BSHUF_ZSTD)
        return -1;
    uint64_t total = in_len;
    uint64_t block = ncd >= 4 ? cd[3] : 0;
    size_t pos = 0;
    if (codec != BSHUF_NONE) {
        if (in_len < 12)
            return -1;
        total = be64(in);
        uint32_t block_bytes = be32(in + 8);
        if (block_bytes % esize != 0)
            return -1;
        block = block_bytes / esize;
        pos = 12;
    }
    if (block == 0) {
        block = (BSHUF_DEFAULT_BYTES / esize) / 8 * 8;
        if (block < BSHUF_MIN_BLOCK)
            block = BSHUF_MIN_BLOCK;
    }
    if (total > limit || total % esize != 0 || block % 8 != 0 || block == 0)
        return -1;
    size_t n = (size_t)(total / esize);
    if (block > n)
        block = n / 8 * 8;
    if (out_alloc(o, (size_t)total) < 0)
        return -1;
    uint8_t *tmp = block > 0 ? malloc((size_t)block * esize) : NULL;
    if (block > 0 && tmp == NULL)
        return -1;
    int rc = 0;
    size_t done = 0; /* elements */
    while (rc == 0 && n - done >= 8) {
        size_t count = n - done >= block ? (size_t)block : (n - done) / 8 * 8;
        size_t bytes = count * esize;
        const uint8_t *shuffled = in + pos;
        if (codec == BSHUF_NONE) {
            if (in_len - pos < bytes)
                rc = -1;
            else
                pos += bytes;
        } else {
            size_t used = bshuf_block(codec, in + pos, in_len - pos, tmp, bytes);
            if (used == 0)
                rc = -1;
            pos += used;
            shuffled = tmp;
        }
        if (rc == 0)
            bit_unshuffle(shuffled, o->data + done * esize, count, esize);
        done += count;
    }
    size_t tail = (n - done) * esize;
    if (rc == 0 && in_len - pos == tail) {
        memcpy(o->data + done * esize, in + pos, tail);
        o->len = (size_t)total;
    } else {
        rc = -1;
    }
    free(tmp);
    return rc;
}

/* ---- dispatch ---- */

static int decode_into(int id, const unsigned *cd, size_t ncd, const uint8_t *in, size_t in_len,
                       size_t limit, struct outbuf *o)
{
    int rc;
    o->data = NULL;
    o->len = 0;
    switch (id) {
    case FILTER_LZF:
        rc = decode_lzf(cd, ncd, in, in_len, limit, o);
        break;
    case FILTER_LZO:
        rc = decode_lzo(in, in_len, limit, o);
        break;
    case FILTER_BLOSC:
        rc = decode_blosc(in, in_len, limit, o);
        break;
    case FILTER_ZSTD:
        rc = decode_zstd(in, in_len, limit, o);
        break;
    case FILTER_BZIP2:
        rc = decode_bzip2(in, in_len, limit, o);
        break;
    case FILTER_LZ4:
        rc = decode_lz4(in, in_len, limit, o);
        break;
    case FILTER_BITSHUFFLE:
        rc = decode_bitshuffle(cd, ncd, in, in_len, limit, o);
        break;
    default:
        rc = -1;
        break;
    }
    if (rc < 0 && o->data != NULL) {
        o->release(o->data);
        o->data = NULL;
    }
    return rc;
}

int h5filters_decode(int id, const unsigned *cd, size_t ncd, const uint8_t *in, size_t in_len,
                     size_t limit, uint8_t **out, size_t *out_len)
{
    struct outbuf o = {.alloc = malloc, .release = free};
    if (in == NULL || decode_into(id, cd, ncd, in, in_len, limit, &o) < 0)
        return -1;
    *out = o.data;
    *out_len = o.len;
    return 0;
}

/* ---- libhdf5 callbacks ---- */

static void *h5_alloc(size_t n)
{
    return H5allocate_memory(n, false);
}

static void h5_release(void *p)
{
    H5free_memory(p);
}

/* The H5Z_func_t shape shared by every filter: decode only. */
static size_t run_filter(int id, unsigned flags, size_t ncd, const unsigned cd[], size_t nbytes,
                         size_t *buf_size, void **buf)
{
    if (!(flags & H5Z_FLAG_REVERSE))
        return 0; /* we never write HDF5 */
    /* A checksum filter (fletcher32, 4 bytes) may come before ours in the pipeline. */
    uint64_t limit = expected_bytes > 0 && expected_bytes < H5FILTERS_MAX_CHUNK_BYTES
                         ? expected_bytes + H5FILTERS_CHECKSUM_SLACK
                         : H5FILTERS_MAX_CHUNK_BYTES;
    struct outbuf o = {.alloc = h5_alloc, .release = h5_release};
    if (nbytes > *buf_size || decode_into(id, cd, ncd, *buf, nbytes, (size_t)limit, &o) < 0)
        return 0;
    H5free_memory(*buf);
    *buf = o.data;
    *buf_size = o.cap > 0 ? o.cap : 1;
    return o.len;
}

#define FILTER_FUNC(fname, id)                                                                     \
    static size_t fname(unsigned flags, size_t ncd, const unsigned cd[], size_t nbytes,            \
                        size_t *buf_size, void **buf)                                              \
    {                                                                                              \
        return run_filter(id, flags, ncd, cd, nbytes, buf_size, buf);                              \
    }

FILTER_FUNC(filter_lzf, FILTER_LZF)
FILTER_FUNC(filter_lzo, FILTER_LZO)
FILTER_FUNC(filter_blosc, FILTER_BLOSC)
FILTER_FUNC(filter_zstd, FILTER_ZSTD)
FILTER_FUNC(filter_lz4, FILTER_LZ4)
FILTER_FUNC(filter_bitshuffle, FILTER_BITSHUFFLE)
FILTER_FUNC(filter_bzip2, FILTER_BZIP2)

static int register_result;
static pthread_once_t register_once = PTHREAD_ONCE_INIT;

static void register_all(void)
{
    static const struct {
        int id;
        H5Z_func_t func;
    } filters[] = {{FILTER_LZF, filter_lzf},     {FILTER_LZO, filter_lzo},
                   {FILTER_BLOSC, filter_blosc}, {FILTER_ZSTD, filter_zstd},
                   {FILTER_LZ4, filter_lz4},     {FILTER_BITSHUFFLE, filter_bitshuffle},
                   {FILTER_BZIP2, filter_bzip2}};
    if (lzo_init() != LZO_E_OK)
        register_result = -1;
    for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++) {
        H5Z_class2_t cls = {
            .version = H5Z_CLASS_T_VERS,
            .id = (H5Z_filter_t)filters[i].id,
            .encoder_present = 0,
            .decoder_present = 1,
            .name = h5filters_name(filters[i].id),
            .filter = filters[i].func,
        };
        if (H5Zregister(&cls) < 0)
            register_result = -1;
    }
}

int h5filters_register(void)
{
    pthread_once(&register_once, register_all);
    return register_result;
}
