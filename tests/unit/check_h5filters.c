/*
 * check_h5filters.c - the third-party filter decoders of lib/h5filters.c:
 * round trips through each library's own encoder and the filters' framings,
 * limits on the decoded size, lying headers, truncation, and random
 * mutations of valid chunks (never a crash, never output past the limit).
 * Files written by the real writers (h5py, PyTables, bitshuffle's plugin)
 * are checked by tests/integration/test_realfiles.sh.
 */
#include <blosc.h>
#include <bzlib.h>
#include <check.h>
#include <hdf5.h>
#include <lz4.h>
#include <lzf.h>
#include <lzo/lzo1x.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "h5filters.h"

#define N_ELEMS   3001 /* not a multiple of 8: bitshuffle leaves a tail */
#define MUTATIONS 3000

static uint8_t plain[N_ELEMS * 4];

static void make_plain(void)
{
    uint32_t x = 12345;
    for (size_t i = 0; i < N_ELEMS; i++) {
        uint32_t v = (uint32_t)(i % 300) * 7 + (i % 13 == 0 ? (x = x * 1103515245 + 12345) : 0);
        memcpy(plain + 4 * i, &v, 4);
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

/* Decodes and checks the output equals plain. */
static void assert_decodes(int id, const unsigned *cd, size_t ncd, const uint8_t *in, size_t len,
                           size_t limit)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    ck_assert_int_eq(h5filters_decode(id, cd, ncd, in, len, limit, &out, &out_len), 0);
    ck_assert_uint_eq(out_len, sizeof(plain));
    ck_assert(memcmp(out, plain, sizeof(plain)) == 0);
    free(out);
}

static void assert_refused(int id, const unsigned *cd, size_t ncd, const uint8_t *in, size_t len,
                           size_t limit)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    ck_assert_int_eq(h5filters_decode(id, cd, ncd, in, len, limit, &out, &out_len), -1);
}

/* Random byte flips, truncations and extensions of a valid chunk: any answer
 * but a crash, and never more output than the limit. */
static void mutate_n(int id, const unsigned *cd, size_t ncd, const uint8_t *in, size_t len,
                     int rounds)
{
    uint8_t *buf = malloc(len + 64);
    ck_assert_ptr_nonnull(buf);
    uint32_t seed = (uint32_t)id * 2654435761u;
    for (int round = 0; round < rounds; round++) {
        memcpy(buf, in, len);
        size_t n = len;
        int flips = 1 + (int)((seed = seed * 1664525 + 1013904223) >> 29);
        for (int k = 0; k < flips; k++) {
            seed = seed * 1664525 + 1013904223;
            buf[(seed >> 8) % n] ^= (uint8_t)(1u << (seed & 7));
        }
        seed = seed * 1664525 + 1013904223;
        if ((seed >> 28) == 0)
            n = (seed >> 4) % len; /* truncated */
        else if ((seed >> 28) == 1)
            n = len + (seed >> 4) % 64; /* trailing bytes */
        uint8_t *out = NULL;
        size_t out_len = 0;
        size_t limit = sizeof(plain);
        if (h5filters_decode(id, cd, ncd, buf, n, limit, &out, &out_len) == 0) {
            ck_assert_uint_le(out_len, limit);
            free(out);
        }
    }
    free(buf);
}

static void mutate(int id, const unsigned *cd, size_t ncd, const uint8_t *in, size_t len)
{
    mutate_n(id, cd, ncd, in, len, MUTATIONS);
}

START_TEST(test_lzf)
{
    uint8_t comp[sizeof(plain)];
    unsigned n = lzf_compress(plain, sizeof(plain), comp, sizeof(comp));
    ck_assert_uint_gt(n, 0);
    const unsigned cd[] = {4, 261, sizeof(plain)};
    assert_decodes(32000, cd, 3, comp, n, sizeof(plain));
    assert_decodes(32000, cd, 0, comp, n, sizeof(plain)); /* no size recorded: the limit */
    assert_refused(32000, cd, 3, comp, n, sizeof(plain) - 1);
    assert_refused(32000, cd, 3, comp, n / 2, sizeof(plain));
    assert_refused(32000, cd, 3, comp, 0, sizeof(plain));
    mutate(32000, cd, 3, comp, n);
}
END_TEST

START_TEST(test_lzo)
{
    static uint8_t work[LZO1X_1_MEM_COMPRESS];
    uint8_t comp[sizeof(plain) + sizeof(plain) / 16 + 64 + 8];
    lzo_uint n = sizeof(comp);
    ck_assert_int_eq(lzo_init(), LZO_E_OK);
    ck_assert_int_eq(lzo1x_1_compress(plain, sizeof(plain), comp, &n, work), LZO_E_OK);
    const unsigned cd[] = {5, 11, 4};
    assert_decodes(305, cd, 3, comp, n, sizeof(plain));
    assert_refused(305, cd, 3, comp, n, sizeof(plain) - 1);
    assert_refused(305, cd, 3, comp, n - 5, sizeof(plain));
    mutate(305, cd, 3, comp, n);
    /* The trailer of some PyTables 2.x files: adler32 and length, little-endian. */
    uint32_t sum = lzo_adler32(lzo_adler32(0, NULL, 0), plain, sizeof(plain));
    uint32_t len = sizeof(plain);
    memcpy(comp + n, &sum, 4);
    memcpy(comp + n + 4, &len, 4);
    assert_decodes(305, cd, 3, comp, n + 8, sizeof(plain));
    mutate(305, cd, 3, comp, n + 8);
    comp[n] ^= 1; /* a wrong checksum */
    assert_refused(305, cd, 3, comp, n + 8, sizeof(plain));
    comp[n] ^= 1;
    len = sizeof(plain) + 1; /* a length that is not the stream's */
    memcpy(comp + n + 4, &len, 4);
    assert_refused(305, cd, 3, comp, n + 8, sizeof(plain) * 2);
}
END_TEST

START_TEST(test_bzip2)
{
    char comp[sizeof(plain) + sizeof(plain) / 100 + 700];
    unsigned n = sizeof(comp);
    ck_assert_int_eq(BZ2_bzBuffToBuffCompress(comp, &n, (char *)plain, sizeof(plain), 9, 0, 0),
                     BZ_OK);
    const unsigned cd[] = {9};
    assert_decodes(307, cd, 1, (uint8_t *)comp, n, sizeof(plain));
    assert_refused(307, cd, 1, (uint8_t *)comp, n, sizeof(plain) - 1);
    assert_refused(307, cd, 1, (uint8_t *)comp, n - 1, sizeof(plain));
    mutate_n(307, cd, 1, (uint8_t *)comp, n, MUTATIONS / 10); /* bzip2 is slow to decode */
}
END_TEST

START_TEST(test_blosc)
{
    static const char *const codecs[] = {"blosclz", "lz4", "lz4hc", "zlib", "zstd"};
    uint8_t comp[sizeof(plain) + BLOSC_MAX_OVERHEAD];
    for (size_t c = 0; c < sizeof(codecs) / sizeof(codecs[0]); c++) {
        for (int shuffle = 0; shuffle <= 2; shuffle++) {
            int n = blosc_compress_ctx(5, shuffle, 4, sizeof(plain), plain, comp, sizeof(comp),
                                       codecs[c], 0, 1);
            ck_assert_int_gt(n, 0);
            const unsigned cd[] = {2, 2, 4, sizeof(plain), 5, (unsigned)shuffle, (unsigned)c};
            assert_decodes(32001, cd, 7, comp, (size_t)n, sizeof(plain));
            assert_refused(32001, cd, 7, comp, (size_t)n, sizeof(plain) - 1);
            assert_refused(32001, cd, 7, comp, (size_t)n - 1, sizeof(plain));
            if (shuffle == 1)
                mutate(32001, cd, 7, comp, (size_t)n);
        }
    }
}
END_TEST

START_TEST(test_zstd)
{
    uint8_t comp[ZSTD_COMPRESSBOUND(sizeof(plain))];
    size_t n = ZSTD_compress(comp, sizeof(comp), plain, sizeof(plain), 3);
    ck_assert(!ZSTD_isError(n));
    const unsigned cd[] = {3};
    assert_decodes(32015, cd, 1, comp, n, sizeof(plain));
    assert_refused(32015, cd, 1, comp, n, sizeof(plain) - 1);
    assert_refused(32015, cd, 1, comp, n - 1, sizeof(plain));
    mutate(32015, cd, 1, comp, n);
    /* A frame that does not state its size: the limit still holds. */
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
    ZSTD_inBuffer src = {plain, sizeof(plain), 0};
    ZSTD_outBuffer dst = {comp, sizeof(comp), 0};
    ck_assert_uint_eq(ZSTD_compressStream2(cctx, &dst, &src, ZSTD_e_end), 0);
    ZSTD_freeCCtx(cctx);
    ck_assert_uint_eq(ZSTD_getFrameContentSize(comp, dst.pos), ZSTD_CONTENTSIZE_UNKNOWN);
    assert_decodes(32015, cd, 1, comp, dst.pos, sizeof(plain));
    assert_decodes(32015, cd, 1, comp, dst.pos, sizeof(plain) * 4);
    assert_refused(32015, cd, 1, comp, dst.pos, sizeof(plain) - 1);
    mutate(32015, cd, 1, comp, dst.pos);
}
END_TEST

/* The HDF5 lz4 plugin's framing, with blocks of `block` bytes; the last block stored raw. */
static size_t lz4_frame(uint8_t *out, size_t cap, uint32_t block)
{
    put_be64(out, sizeof(plain));
    put_be32(out + 8, block);
    size_t w = 12;
    for (size_t done = 0; done < sizeof(plain); done += block) {
        size_t want = sizeof(plain) - done < block ? sizeof(plain) - done : block;
        int n = done + want == sizeof(plain)
                    ? (int)want
                    : LZ4_compress_default((const char *)plain + done, (char *)out + w + 4,
                                           (int)want, (int)(cap - w - 4));
        ck_assert_int_gt(n, 0);
        if (done + want == sizeof(plain))
            memcpy(out + w + 4, plain + done, want);
        put_be32(out + w, (uint32_t)n);
        w += 4 + (size_t)n;
    }
    return w;
}

START_TEST(test_lz4)
{
    uint8_t comp[2 * sizeof(plain) + 256];
    size_t n = lz4_frame(comp, sizeof(comp), 4096);
    assert_decodes(32004, NULL, 0, comp, n, sizeof(plain));
    assert_refused(32004, NULL, 0, comp, n, sizeof(plain) - 1);
    assert_refused(32004, NULL, 0, comp, n - 1, sizeof(plain));
    comp[n] = 0;
    assert_refused(32004, NULL, 0, comp, n + 1, sizeof(plain)); /* trailing bytes */
    mutate(32004, NULL, 0, comp, n);
    put_be32(comp + 8, 0); /* a block size of 0 */
    assert_refused(32004, NULL, 0, comp, n, sizeof(plain));
}
END_TEST

/* Bitshuffle's transpose of n elements (n a multiple of 8), from its definition. */
static void bit_shuffle(const uint8_t *in, uint8_t *out, size_t n, size_t esize)
{
    memset(out, 0, n * esize);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < esize; j++)
            for (unsigned b = 0; b < 8; b++)
                if (in[i * esize + j] >> b & 1)
                    out[(j * 8 + b) * (n / 8) + i / 8] |= (uint8_t)(1u << (i % 8));
}

/* The bitshuffle filter's stream: blocks of `block` elements, a last block of a multiple
 * of 8, the rest as is; compressed with LZ4 (framed) or not. */
static size_t bshuf_stream(uint8_t *out, size_t cap, size_t esize, size_t block, bool lz4)
{
    size_t n = sizeof(plain) / esize, w = 0, done = 0;
    uint8_t tmp[sizeof(plain)];
    if (lz4) {
        put_be64(out, sizeof(plain));
        put_be32(out + 8, (uint32_t)(block * esize));
        w = 12;
    }
    while (n - done >= 8) {
        size_t count = n - done >= block ? block : (n - done) / 8 * 8;
        bit_shuffle(plain + done * esize, tmp, count, esize);
        if (lz4) {
            int c = LZ4_compress_default((const char *)tmp, (char *)out + w + 4,
                                         (int)(count * esize), (int)(cap - w - 4));
            ck_assert_int_gt(c, 0);
            put_be32(out + w, (uint32_t)c);
            w += 4 + (size_t)c;
        } else {
            memcpy(out + w, tmp, count * esize);
            w += count * esize;
        }
        done += count;
    }
    memcpy(out + w, plain + done * esize, (n - done) * esize);
    return w + (n - done) * esize;
}

START_TEST(test_bitshuffle)
{
    uint8_t comp[2 * sizeof(plain) + 1024];
    /* Uncompressed, the default block size (cd[3] = 0): 2048 elements of 4 bytes. */
    size_t n = bshuf_stream(comp, sizeof(comp), 4, 2048, false);
    const unsigned plain_cd[] = {0, 3, 4, 0, 0};
    assert_decodes(32008, plain_cd, 5, comp, n, sizeof(plain));
    assert_refused(32008, plain_cd, 5, comp, n, sizeof(plain) - 1);
    mutate(32008, plain_cd, 5, comp, n);
    const unsigned elem2_cd[] = {0, 3, 2, 0, 0}; /* 2-byte elements: 4096 per block */
    n = bshuf_stream(comp, sizeof(comp), 2, 4096, false);
    assert_decodes(32008, elem2_cd, 5, comp, n, sizeof(plain));
    /* LZ4, blocks of 256 elements of 4 bytes. */
    n = bshuf_stream(comp, sizeof(comp), 4, 256, true);
    const unsigned lz4_cd[] = {0, 3, 4, 256, 2};
    assert_decodes(32008, lz4_cd, 5, comp, n, sizeof(plain));
    assert_refused(32008, lz4_cd, 5, comp, n - 1, sizeof(plain));
    assert_refused(32008, lz4_cd, 5, comp, n, sizeof(plain) - 4);
    mutate(32008, lz4_cd, 5, comp, n);
    /* Malformed parameters and headers. */
    const unsigned no_elem[] = {0, 3, 0, 0, 2};
    assert_refused(32008, no_elem, 5, comp, n, sizeof(plain));
    const unsigned bad_codec[] = {0, 3, 4, 0, 7};
    assert_refused(32008, bad_codec, 5, comp, n, sizeof(plain));
    put_be32(comp + 8, 4 * 12); /* 12 elements per block: not a multiple of 8 */
    assert_refused(32008, lz4_cd, 5, comp, n, sizeof(plain));
    put_be32(comp + 8, 4 * 256);
    put_be64(comp, sizeof(plain) + 2); /* not a whole number of elements */
    assert_refused(32008, lz4_cd, 5, comp, n, sizeof(plain) + 8);
}
END_TEST

START_TEST(test_register)
{
    ck_assert_int_eq(h5filters_register(), 0);
    ck_assert_int_eq(h5filters_register(), 0); /* once per process */
    static const int ids[] = {305, 307, 32000, 32001, 32004, 32008, 32015};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        ck_assert_int_gt(H5Zfilter_avail(ids[i]), 0);
        unsigned config = 0;
        ck_assert_int_ge(H5Zget_filter_info(ids[i], &config), 0);
        ck_assert(config & H5Z_FILTER_CONFIG_DECODE_ENABLED);
        ck_assert_ptr_nonnull(h5filters_name(ids[i]));
    }
    ck_assert_str_eq(h5filters_name(32000), "lzf");
    ck_assert_ptr_null(h5filters_name(32099));
    assert_refused(32099, NULL, 0, plain, sizeof(plain), sizeof(plain));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("h5filters");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300); /* sanitizers on a loaded machine */
    tcase_add_test(tc, test_lzf);
    tcase_add_test(tc, test_lzo);
    tcase_add_test(tc, test_bzip2);
    tcase_add_test(tc, test_blosc);
    tcase_add_test(tc, test_zstd);
    tcase_add_test(tc, test_lz4);
    tcase_add_test(tc, test_bitshuffle);
    tcase_add_test(tc, test_register);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    make_plain();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
