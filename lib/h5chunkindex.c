/*
 * h5chunkindex.c - a bounded parser of HDF5 object headers and chunk indexes
 * that resolves chunk coordinates to file locations without libhdf5.
 *
 * Written from the HDF5 File Format Specification.  Every walk proceeds in
 * levels: the nodes, blocks or pages one level needs are requested in one
 * read_many call, so a batch of keys costs one round trip per level however
 * many keys it has.  Every read is checked against the file size and counted
 * against per-walk budgets (nodes, bytes); every structure is checked for
 * signature, version, checksum (version-2 metadata) and internal consistency.
 * Anything unexpected returns H5CHUNKINDEX_FALLBACK with a reason: callers
 * then use libhdf5, so this file must never guess.  No globals; one thread
 * per handle at a time.
 */
#include "h5chunkindex.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNDEF UINT64_MAX

/* Object header message types and flags (format spec IV.A.2). */
#define MSG_DATASPACE    0x0001
#define MSG_LAYOUT       0x0008
#define MSG_PIPELINE     0x000B
#define MSG_CONTINUATION 0x0010
#define MSG_FLAG_SHARED  0x02

/* Layout-4 chunk index types. */
#define IDX_SINGLE   1
#define IDX_IMPLICIT 2
#define IDX_FARRAY   3
#define IDX_EARRAY   4
#define IDX_BTREE2   5

#define LAYOUT4_DONT_FILTER_PARTIAL 0x01
#define LAYOUT4_SINGLE_FILTERED     0x02

#define PREFIX_BYTES     6 /* signature, version, type or client id */
#define CHECKSUM         4
#define MAX_SUPER_BLOCKS 66

struct ea_params {
    unsigned max_bits, idx_elmts, min_elmts, min_ptrs, page_bits;
};

struct h5chunkindex {
    struct h5chunkindex_source src;
    struct h5chunkindex_info info;
    bool filtered;
    /* Single chunk, filtered: stored size and mask from the layout. */
    bool single_filtered;
    uint64_t single_size;
    uint32_t single_mask;
    unsigned fa_page_bits;
    struct ea_params ea;
    uint32_t bt2_node_size;
    uint64_t max_grid[H5CHUNKINDEX_MAX_RANK]; /* UNDEF for an unlimited dimension */
    int unlim_dim;
    struct h5chunkindex_stats stats;
    uint64_t walk_nodes, walk_bytes;
    char reason[H5CHUNKINDEX_REASON_BYTES];
    bool damaged; /* the last fallback was for index bytes that break the format */
};

static int fallback(struct h5chunkindex *ci, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fallback(struct h5chunkindex *ci, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ci->reason, sizeof(ci->reason), fmt, ap);
    va_end(ap);
    return H5CHUNKINDEX_FALLBACK;
}

/* A fallback for index bytes no valid file has (signature, checksum, order,
 * level, a chunk outside the file): libhdf5 may read such an index without
 * noticing and answer wrong locations, so the caller refuses the file. */
static int damaged(struct h5chunkindex *ci, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int damaged(struct h5chunkindex *ci, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ci->reason, sizeof(ci->reason), fmt, ap);
    va_end(ap);
    ci->damaged = true;
    return H5CHUNKINDEX_FALLBACK;
}

/* ---- Jenkins lookup3 (hashlittle, byte at a time) ---- */

static uint32_t rot32(uint32_t x, unsigned k)
{
    return (x << k) | (x >> (32 - k));
}

static void lookup3_mix(uint32_t *a, uint32_t *b, uint32_t *c)
{
    *a -= *c, *a ^= rot32(*c, 4), *c += *b;
    *b -= *a, *b ^= rot32(*a, 6), *a += *c;
    *c -= *b, *c ^= rot32(*b, 8), *b += *a;
    *a -= *c, *a ^= rot32(*c, 16), *c += *b;
    *b -= *a, *b ^= rot32(*a, 19), *a += *c;
    *c -= *b, *c ^= rot32(*b, 4), *b += *a;
}

static void lookup3_final(uint32_t *a, uint32_t *b, uint32_t *c)
{
    *c ^= *b, *c -= rot32(*b, 14);
    *a ^= *c, *a -= rot32(*c, 11);
    *b ^= *a, *b -= rot32(*a, 25);
    *c ^= *b, *c -= rot32(*b, 16);
    *a ^= *c, *a -= rot32(*c, 4);
    *b ^= *a, *b -= rot32(*a, 14);
    *c ^= *b, *c -= rot32(*b, 24);
}

static uint32_t le32_at(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t h5chunkindex_lookup3(const unsigned char *k, size_t len)
{
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefU + (uint32_t)len;
    while (len > 12) {
        a += le32_at(k);
        b += le32_at(k + 4);
        c += le32_at(k + 8);
        lookup3_mix(&a, &b, &c);
        len -= 12;
        k += 12;
    }
    if (len == 0)
        return c;
    unsigned char tail[12] = {0};
    memcpy(tail, k, len);
    a += le32_at(tail);
    b += le32_at(tail + 4);
    c += le32_at(tail + 8);
    lookup3_final(&a, &b, &c);
    return c;
}

/* ---- cursor over untrusted bytes ---- */

struct cur {
    const unsigned char *p, *end;
    bool bad;
};

static struct cur cur_make(const unsigned char *p, size_t len)
{
    struct cur c = {p, p + len, false};
    return c;
}

static size_t cur_left(const struct cur *c)
{
    return c->bad ? 0 : (size_t)(c->end - c->p);
}

static uint64_t get_uint(struct cur *c, unsigned n)
{
    if (c->bad || n > 8 || (size_t)(c->end - c->p) < n) {
        c->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)c->p[i] << (8 * i);
    c->p += n;
    return v;
}

static void skip(struct cur *c, size_t n)
{
    if (c->bad || (size_t)(c->end - c->p) < n) {
        c->bad = true;
        return;
    }
    c->p += n;
}

static bool all_ones(uint64_t v, unsigned nbytes)
{
    return nbytes >= 8 ? v == UINT64_MAX : v == (1ULL << (8 * nbytes)) - 1;
}

/* A file address made absolute, or UNDEF for the undefined address. */
static uint64_t get_addr(const struct h5chunkindex *ci, struct cur *c)
{
    uint64_t v = get_uint(c, ci->src.sizeof_offsets);
    if (c->bad || all_ones(v, ci->src.sizeof_offsets))
        return UNDEF;
    if (v > UINT64_MAX - 1 - ci->src.base_address)
        return UINT64_MAX - 1; /* fails every span check */
    return v + ci->src.base_address;
}

static bool span_ok(const struct h5chunkindex *ci, uint64_t addr, uint64_t len)
{
    return addr != UNDEF && addr <= ci->src.file_size && len <= ci->src.file_size - addr;
}

static bool sig_is(const unsigned char *p, const char *sig)
{
    return memcmp(p, sig, 4) == 0;
}

/* Checks the lookup3 checksum stored after the first len bytes.  A fuzzing
 * build skips the comparison so that mutations reach the parsers behind it. */
static bool checksum_ok(const unsigned char *p, size_t len)
{
    bool ok = h5chunkindex_lookup3(p, len) == le32_at(p + len);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    ok = true;
#endif
    return ok;
}

static unsigned log2_floor(uint64_t v)
{
    unsigned r = 0;
    while (v >>= 1)
        r++;
    return r;
}

static bool mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a)
        return false;
    *out = a * b;
    return true;
}

/* ---- batches of reads ---- */

struct batch {
    struct h5ci_range *r;
    size_t n, cap;
};

static void batch_reset(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->r[i].buf);
    b->n = 0;
}

static void batch_free(struct batch *b)
{
    batch_reset(b);
    free(b->r);
    b->r = NULL;
    b->cap = 0;
}

/* Queues a read of len bytes at addr (absolute) within the walk's budgets. */
static int batch_add(struct h5chunkindex *ci, struct batch *b, uint64_t addr, uint64_t len,
                     size_t *slot)
{
    if (!span_ok(ci, addr, len))
        return fallback(ci, "read of %llu bytes at %llu outside the file", (unsigned long long)len,
                        (unsigned long long)addr);
    if (len == 0 || len > H5CHUNKINDEX_MAX_NODE_BYTES)
        return fallback(ci, "index block of %llu bytes", (unsigned long long)len);
    if (++ci->walk_nodes > H5CHUNKINDEX_MAX_NODES)
        return fallback(ci, "more than %d index nodes", H5CHUNKINDEX_MAX_NODES);
    ci->walk_bytes += len;
    if (ci->walk_bytes > H5CHUNKINDEX_MAX_WALK_BYTES)
        return fallback(ci, "index larger than %llu bytes", H5CHUNKINDEX_MAX_WALK_BYTES);
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        struct h5ci_range *r = realloc(b->r, cap * sizeof(*r));
        if (!r)
            return -ENOMEM;
        b->r = r;
        b->cap = cap;
    }
    unsigned char *buf = malloc(len);
    if (!buf)
        return -ENOMEM;
    b->r[b->n] = (struct h5ci_range){.offset = addr, .length = len, .buf = buf};
    *slot = b->n++;
    return 0;
}

static int batch_run(struct h5chunkindex *ci, struct batch *b)
{
    if (b->n == 0)
        return 0;
    int rc = ci->src.read_many(ci->src.ctx, b->r, b->n);
    ci->stats.batches++;
    ci->stats.ranges += b->n;
    for (size_t i = 0; i < b->n; i++)
        ci->stats.bytes += b->r[i].length;
    ci->stats.nodes += b->n;
    if (rc > 0)
        rc = -EIO;
    return rc;
}

/* ---- object header ---- */

struct ohdr_walk {
    bool have_space, have_layout, have_pipeline;
    uint64_t cont_addr[H5CHUNKINDEX_MAX_HEADER_BLOCKS];
    uint64_t cont_len[H5CHUNKINDEX_MAX_HEADER_BLOCKS];
    size_t ncont, next_cont;
    uint64_t header_bytes;
    unsigned version, oh_flags, layout_ndims;
};

static uint64_t get_dim(struct h5chunkindex *ci, struct cur *c)
{
    uint64_t v = get_uint(c, ci->src.sizeof_lengths);
    return all_ones(v, ci->src.sizeof_lengths) ? H5CHUNKINDEX_UNLIMITED : v;
}

static int parse_dataspace(struct h5chunkindex *ci, struct cur c)
{
    unsigned version = (unsigned)get_uint(&c, 1);
    unsigned rank = (unsigned)get_uint(&c, 1);
    unsigned flags = (unsigned)get_uint(&c, 1);
    if (version == 1) {
        skip(&c, 5);
    } else if (version == 2) {
        if (get_uint(&c, 1) != 1)
            return fallback(ci, "dataspace is not simple");
    } else {
        return fallback(ci, "dataspace message version %u", version);
    }
    if (rank < 1 || rank > H5CHUNKINDEX_MAX_RANK)
        return fallback(ci, "dataspace rank %u", rank);
    ci->info.rank = rank;
    for (unsigned d = 0; d < rank; d++)
        ci->info.dims[d] = get_dim(ci, &c);
    for (unsigned d = 0; d < rank; d++)
        ci->info.max_dims[d] = (flags & 1) ? get_dim(ci, &c) : ci->info.dims[d];
    if (c.bad)
        return fallback(ci, "truncated dataspace message");
    return 0;
}

static int parse_pipeline(struct h5chunkindex *ci, struct cur c)
{
    unsigned version = (unsigned)get_uint(&c, 1);
    unsigned n = (unsigned)get_uint(&c, 1);
    if (version != 1 && version != 2)
        return fallback(ci, "filter pipeline message version %u", version);
    if (n > H5CHUNKINDEX_MAX_FILTERS)
        return fallback(ci, "%u filters", n);
    if (version == 1)
        skip(&c, 6);
    for (unsigned i = 0; i < n && !c.bad; i++) {
        unsigned id = (unsigned)get_uint(&c, 2);
        unsigned name_len = (version == 1 || id >= 256) ? (unsigned)get_uint(&c, 2) : 0;
        get_uint(&c, 2); /* flags */
        unsigned nvalues = (unsigned)get_uint(&c, 2);
        skip(&c, name_len);
        skip(&c, (size_t)nvalues * 4);
        if (version == 1 && (nvalues & 1))
            skip(&c, 4);
        ci->info.filter_ids[i] = (uint16_t)id;
    }
    if (c.bad)
        return fallback(ci, "truncated filter pipeline message");
    ci->info.nfilters = n;
    return 0;
}

static int parse_layout_v4_index(struct h5chunkindex *ci, struct cur *c, unsigned flags)
{
    unsigned type = (unsigned)get_uint(c, 1);
    switch (type) {
    case IDX_SINGLE:
        ci->info.type = H5CHUNKINDEX_SINGLE;
        if (flags & LAYOUT4_SINGLE_FILTERED) {
            ci->single_filtered = true;
            ci->single_size = get_uint(c, ci->src.sizeof_lengths);
            ci->single_mask = (uint32_t)get_uint(c, 4);
        }
        return 0;
    case IDX_IMPLICIT:
        ci->info.type = H5CHUNKINDEX_IMPLICIT;
        return 0;
    case IDX_FARRAY:
        ci->info.type = H5CHUNKINDEX_FIXED_ARRAY;
        ci->fa_page_bits = (unsigned)get_uint(c, 1);
        return 0;
    case IDX_EARRAY:
        ci->info.type = H5CHUNKINDEX_EXTENSIBLE_ARRAY;
        ci->ea.max_bits = (unsigned)get_uint(c, 1);
        ci->ea.idx_elmts = (unsigned)get_uint(c, 1);
        ci->ea.min_ptrs = (unsigned)get_uint(c, 1);
        ci->ea.min_elmts = (unsigned)get_uint(c, 1);
        ci->ea.page_bits = (unsigned)get_uint(c, 1);
        return 0;
    case IDX_BTREE2:
        ci->info.type = H5CHUNKINDEX_BTREE_V2;
        ci->bt2_node_size = (uint32_t)get_uint(c, 4);
        skip(c, 2); /* split and merge percentages */
        return 0;
    default:
        return fallback(ci, "chunk index type %u", type);
    }
}

static int parse_layout(struct h5chunkindex *ci, struct cur c, unsigned *ndims)
{
    unsigned version = (unsigned)get_uint(&c, 1);
    /* Versions 1 and 2 (HDF5 1.4 and 1.6 files, old PyTables): dimensionality
     * before the class, five reserved bytes, then as version 3. */
    if (version == 1 || version == 2)
        *ndims = (unsigned)get_uint(&c, 1);
    unsigned cls = (unsigned)get_uint(&c, 1);
    if (version < 1 || version > 4)
        return fallback(ci, "data layout message version %u", version);
    if (cls != 2)
        return fallback(ci, "layout class %u is not chunked", cls);
    ci->info.layout_version = version;
    uint64_t dims[H5CHUNKINDEX_MAX_RANK + 1];
    if (version < 3)
        skip(&c, 5);
    if (version <= 3) {
        if (version == 3)
            *ndims = (unsigned)get_uint(&c, 1);
        if (*ndims < 2 || *ndims > H5CHUNKINDEX_MAX_RANK + 1)
            return fallback(ci, "chunk dimensionality %u", *ndims);
        ci->info.type = H5CHUNKINDEX_BTREE_V1;
        ci->info.index_address = get_addr(ci, &c);
        for (unsigned d = 0; d < *ndims; d++)
            dims[d] = get_uint(&c, 4);
    } else {
        unsigned flags = (unsigned)get_uint(&c, 1);
        *ndims = (unsigned)get_uint(&c, 1);
        unsigned enc = (unsigned)get_uint(&c, 1);
        if (flags & ~(unsigned)(LAYOUT4_DONT_FILTER_PARTIAL | LAYOUT4_SINGLE_FILTERED))
            return fallback(ci, "layout flags 0x%x", flags);
        if (*ndims < 2 || *ndims > H5CHUNKINDEX_MAX_RANK + 1 || enc < 1 || enc > 8)
            return fallback(ci, "chunk dimensionality %u, %u bytes each", *ndims, enc);
        for (unsigned d = 0; d < *ndims; d++)
            dims[d] = get_uint(&c, enc);
        int rc = parse_layout_v4_index(ci, &c, flags);
        if (rc)
            return rc;
        if ((flags & LAYOUT4_SINGLE_FILTERED) && ci->info.type != H5CHUNKINDEX_SINGLE)
            return fallback(ci, "filtered-single flag on another index");
        ci->info.index_address = get_addr(ci, &c);
    }
    if (c.bad)
        return fallback(ci, "truncated data layout message");
    for (unsigned d = 0; d + 1 < *ndims; d++)
        ci->info.chunk_dims[d] = dims[d];
    if (dims[*ndims - 1] == 0 || dims[*ndims - 1] > UINT32_MAX)
        return fallback(ci, "element size %llu", (unsigned long long)dims[*ndims - 1]);
    ci->info.element_size = (uint32_t)dims[*ndims - 1];
    return 0;
}

static int header_message(struct h5chunkindex *ci, struct ohdr_walk *w, unsigned type,
                          unsigned flags, const unsigned char *data, size_t size)
{
    struct cur c = cur_make(data, size);
    bool shared = (flags & MSG_FLAG_SHARED) != 0;
    switch (type) {
    case MSG_DATASPACE:
        if (w->have_space || shared)
            return fallback(ci, "repeated or shared dataspace message");
        w->have_space = true;
        return parse_dataspace(ci, c);
    case MSG_PIPELINE:
        if (w->have_pipeline || shared)
            return fallback(ci, "repeated or shared filter pipeline message");
        w->have_pipeline = true;
        return parse_pipeline(ci, c);
    case MSG_LAYOUT:
        if (w->have_layout || shared)
            return fallback(ci, "repeated or shared layout message");
        w->have_layout = true;
        return parse_layout(ci, c, &w->layout_ndims);
    case MSG_CONTINUATION:
        if (w->ncont == H5CHUNKINDEX_MAX_HEADER_BLOCKS)
            return fallback(ci, "more than %d object header blocks",
                            H5CHUNKINDEX_MAX_HEADER_BLOCKS);
        w->cont_addr[w->ncont] = get_addr(ci, &c);
        w->cont_len[w->ncont] = get_uint(&c, ci->src.sizeof_lengths);
        if (c.bad)
            return fallback(ci, "truncated continuation message");
        for (size_t i = 0; i < w->ncont; i++)
            if (w->cont_addr[i] == w->cont_addr[w->ncont])
                return fallback(ci, "object header continuation loop");
        w->ncont++;
        return 0;
    default:
        return 0;
    }
}

/* Messages of one block: version-1 (8-byte headers) or version-2 layout. */
static int header_messages(struct h5chunkindex *ci, struct ohdr_walk *w, const unsigned char *p,
                           size_t len, unsigned oh_flags)
{
    struct cur c = cur_make(p, len);
    size_t head = w->version == 1 ? 8 : ((oh_flags & 0x04) ? 6 : 4);
    while (cur_left(&c) >= head) {
        unsigned type, flags;
        size_t size;
        if (w->version == 1) {
            type = (unsigned)get_uint(&c, 2);
            size = (size_t)get_uint(&c, 2);
            flags = (unsigned)get_uint(&c, 1);
            skip(&c, 3);
        } else {
            type = (unsigned)get_uint(&c, 1);
            size = (size_t)get_uint(&c, 2);
            flags = (unsigned)get_uint(&c, 1);
            skip(&c, head - 4);
        }
        if (size > cur_left(&c))
            return fallback(ci, "object header message of %zu bytes overruns its block", size);
        int rc = header_message(ci, w, type, flags, c.p, size);
        if (rc)
            return rc;
        skip(&c, size);
    }
    return 0;
}

/* Size of a version-2 header's prefix and of its first chunk's messages. */
static int ohdr2_prefix(struct h5chunkindex *ci, const unsigned char *p, size_t len, size_t *prefix,
                        uint64_t *chunk0, unsigned *flags)
{
    struct cur c = cur_make(p, len);
    skip(&c, 4);
    unsigned version = (unsigned)get_uint(&c, 1);
    *flags = (unsigned)get_uint(&c, 1);
    if (version != 2)
        return fallback(ci, "object header version %u", version);
    if (*flags & ~0x3FU)
        return fallback(ci, "object header flags 0x%x", *flags);
    if (*flags & 0x20)
        skip(&c, 16);
    if (*flags & 0x10)
        skip(&c, 4);
    *chunk0 = get_uint(&c, 1U << (*flags & 3));
    if (c.bad)
        return fallback(ci, "truncated object header");
    /* Bounded here, so that prefix + chunk0 + checksum cannot wrap around. */
    if (*chunk0 > H5CHUNKINDEX_MAX_HEADER_BYTES)
        return fallback(ci, "object header block of %llu bytes", (unsigned long long)*chunk0);
    *prefix = (size_t)(c.p - p);
    return 0;
}

/* Reads the rest of a header block when the first read was too short. */
static int ensure_block(struct h5chunkindex *ci, struct batch *b, size_t slot, uint64_t need)
{
    if (need > H5CHUNKINDEX_MAX_HEADER_BYTES)
        return fallback(ci, "object header block of %llu bytes", (unsigned long long)need);
    if (b->r[slot].length >= need)
        return 0;
    struct batch more = {0};
    size_t s;
    int rc = batch_add(ci, &more, b->r[slot].offset, need, &s);
    if (rc == 0)
        rc = batch_run(ci, &more);
    if (rc == 0) {
        free(b->r[slot].buf);
        b->r[slot] = more.r[s];
        more.n = 0;
    }
    batch_free(&more);
    return rc;
}

static int ohdr_first_block(struct h5chunkindex *ci, struct ohdr_walk *w, uint64_t addr)
{
    struct batch b = {0};
    size_t s;
    uint64_t guess = H5CHUNKINDEX_HEADER_GUESS;
    if (addr < ci->src.file_size && ci->src.file_size - addr < guess)
        guess = ci->src.file_size - addr;
    int rc = batch_add(ci, &b, addr, guess, &s);
    if (rc == 0)
        rc = batch_run(ci, &b);
    if (rc)
        goto done;
    if (b.r[s].length >= 16 && sig_is(b.r[s].buf, "OHDR")) {
        size_t prefix = 0;
        uint64_t chunk0 = 0;
        unsigned flags = 0;
        w->version = 2;
        rc = ohdr2_prefix(ci, b.r[s].buf, b.r[s].length, &prefix, &chunk0, &flags);
        if (rc == 0)
            rc = ensure_block(ci, &b, s, prefix + chunk0 + CHECKSUM);
        if (rc == 0 && !checksum_ok(b.r[s].buf, prefix + chunk0))
            rc = fallback(ci, "object header checksum mismatch");
        if (rc == 0)
            rc = header_messages(ci, w, b.r[s].buf + prefix, chunk0, flags);
        w->header_bytes = prefix + chunk0 + CHECKSUM;
        w->oh_flags = flags;
    } else if (b.r[s].length >= 16 && b.r[s].buf[0] == 1) {
        uint64_t size = le32_at(b.r[s].buf + 8);
        w->version = 1;
        rc = ensure_block(ci, &b, s, 16 + size);
        if (rc == 0)
            rc = header_messages(ci, w, b.r[s].buf + 16, size, 0);
        w->header_bytes = 16 + size;
    } else {
        rc = fallback(ci, "no object header at %llu", (unsigned long long)addr);
    }
done:
    batch_free(&b);
    return rc;
}

/* Reads every known continuation block in one batch, until none is new. */
static int ohdr_continuations(struct h5chunkindex *ci, struct ohdr_walk *w)
{
    struct batch b = {0};
    int rc = 0;
    while (rc == 0 && w->next_cont < w->ncont) {
        size_t first = w->next_cont, end = w->ncont, slot;
        for (size_t i = first; i < end && rc == 0; i++) {
            w->header_bytes += w->cont_len[i];
            if (w->header_bytes > H5CHUNKINDEX_MAX_HEADER_BYTES)
                rc = fallback(ci, "object header larger than %d bytes",
                              H5CHUNKINDEX_MAX_HEADER_BYTES);
            else
                rc = batch_add(ci, &b, w->cont_addr[i], w->cont_len[i], &slot);
        }
        if (rc == 0)
            rc = batch_run(ci, &b);
        w->next_cont = end;
        for (size_t i = 0; i < b.n && rc == 0; i++) {
            const unsigned char *p = b.r[i].buf;
            size_t len = b.r[i].length;
            if (w->version == 1) {
                rc = header_messages(ci, w, p, len, 0);
            } else if (len < 8 || !sig_is(p, "OCHK")) {
                rc = fallback(ci, "object header continuation without OCHK");
            } else if (!checksum_ok(p, len - CHECKSUM)) {
                rc = fallback(ci, "object header continuation checksum mismatch");
            } else {
                rc = header_messages(ci, w, p + 4, len - 8, w->oh_flags);
            }
        }
        batch_reset(&b);
    }
    batch_free(&b);
    return rc;
}

/* ---- what the header says, checked ---- */

static int check_dataset(struct h5chunkindex *ci)
{
    struct h5chunkindex_info *in = &ci->info;
    uint64_t bytes = in->element_size;
    unsigned unlimited = 0;
    for (unsigned d = 0; d < in->rank; d++) {
        uint64_t chunk = in->chunk_dims[d];
        if (chunk == 0 || in->dims[d] > (1ULL << 62))
            return fallback(ci, "dimension %u: size %llu, chunk %llu", d,
                            (unsigned long long)in->dims[d], (unsigned long long)chunk);
        if (!mul_ok(bytes, chunk, &bytes) || bytes > UINT32_MAX)
            return fallback(ci, "chunk larger than 4 GiB");
        in->grid[d] = in->dims[d] / chunk + (in->dims[d] % chunk != 0);
        if (in->max_dims[d] == H5CHUNKINDEX_UNLIMITED) {
            ci->max_grid[d] = UNDEF;
            ci->unlim_dim = (int)d;
            unlimited++;
            continue;
        }
        if (in->max_dims[d] < in->dims[d] || in->max_dims[d] > (1ULL << 62))
            return fallback(ci, "maximum dimension %u below its size", d);
        ci->max_grid[d] = in->max_dims[d] / chunk + (in->max_dims[d] % chunk != 0);
    }
    in->chunk_bytes = bytes;
    ci->filtered = in->nfilters > 0;
    switch (in->type) {
    case H5CHUNKINDEX_SINGLE:
        for (unsigned d = 0; d < in->rank; d++)
            if (in->grid[d] != 1)
                return fallback(ci, "single-chunk index with more than one chunk");
        if (ci->filtered != ci->single_filtered)
            return fallback(ci, "single chunk %sfiltered, pipeline of %u filters",
                            ci->single_filtered ? "" : "not ", in->nfilters);
        break;
    case H5CHUNKINDEX_IMPLICIT:
    case H5CHUNKINDEX_FIXED_ARRAY:
        if (unlimited)
            return fallback(ci, "fixed-size index with an unlimited dimension");
        if (in->type == H5CHUNKINDEX_IMPLICIT && ci->filtered)
            return fallback(ci, "implicit index with filters");
        break;
    case H5CHUNKINDEX_EXTENSIBLE_ARRAY:
        if (unlimited != 1)
            return fallback(ci, "extensible array with %u unlimited dimensions", unlimited);
        break;
    default:
        break;
    }
    return 0;
}

int h5chunkindex_open(const struct h5chunkindex_source *src, uint64_t ohdr_address,
                      struct h5chunkindex **out, char reason[H5CHUNKINDEX_REASON_BYTES])
{
    *out = NULL;
    if (reason)
        reason[0] = '\0';
    if (!src || !src->read_many)
        return -EINVAL;
    unsigned o = src->sizeof_offsets, l = src->sizeof_lengths;
    if ((o != 2 && o != 4 && o != 8) || (l != 2 && l != 4 && l != 8)) {
        if (reason)
            snprintf(reason, H5CHUNKINDEX_REASON_BYTES, "sizes of offsets %u, lengths %u", o, l);
        return H5CHUNKINDEX_FALLBACK;
    }
    struct h5chunkindex *ci = calloc(1, sizeof(*ci));
    if (!ci)
        return -ENOMEM;
    ci->src = *src;
    if (ci->src.btree_k == 0)
        ci->src.btree_k = 32;
    ci->unlim_dim = -1;
    struct ohdr_walk w = {0};
    int rc;
    uint64_t addr = ohdr_address + src->base_address;
    if (ohdr_address > UINT64_MAX - 1 - src->base_address || !span_ok(ci, addr, 16))
        rc = fallback(ci, "object header address %llu outside the file",
                      (unsigned long long)ohdr_address);
    else
        rc = ohdr_first_block(ci, &w, addr);
    if (rc == 0)
        rc = ohdr_continuations(ci, &w);
    if (rc == 0 && (!w.have_space || !w.have_layout))
        rc = fallback(ci, "object header without %s", w.have_space ? "layout" : "dataspace");
    if (rc == 0 && w.layout_ndims != ci->info.rank + 1)
        rc = fallback(ci, "chunk rank %u for dataspace rank %u", w.layout_ndims - 1, ci->info.rank);
    if (rc == 0)
        rc = check_dataset(ci);
    ci->walk_nodes = ci->walk_bytes = 0;
    if (rc == 0) {
        *out = ci;
        return 0;
    }
    if (reason)
        snprintf(reason, H5CHUNKINDEX_REASON_BYTES, "%s", ci->reason);
    free(ci);
    return rc;
}

void h5chunkindex_close(struct h5chunkindex *ci)
{
    free(ci);
}

const struct h5chunkindex_info *h5chunkindex_info(const struct h5chunkindex *ci)
{
    return &ci->info;
}

struct h5chunkindex_stats h5chunkindex_stats(const struct h5chunkindex *ci)
{
    return ci->stats;
}

const char *h5chunkindex_reason(const struct h5chunkindex *ci)
{
    return ci->reason;
}

bool h5chunkindex_damaged(const struct h5chunkindex *ci)
{
    return ci->damaged;
}

/* ---- keys ---- */

struct key {
    const uint64_t *scaled;
    uint64_t linear; /* array indexes: position in the array */
    size_t out;      /* index into the caller's output */
    unsigned rank;
};

static int cmp_scaled(const uint64_t *a, const uint64_t *b, unsigned rank)
{
    for (unsigned d = 0; d < rank; d++)
        if (a[d] != b[d])
            return a[d] < b[d] ? -1 : 1;
    return 0;
}

static int key_by_scaled(const void *x, const void *y)
{
    const struct key *a = x, *b = y;
    return cmp_scaled(a->scaled, b->scaled, a->rank);
}

static int key_by_linear(const void *x, const void *y)
{
    const struct key *a = x, *b = y;
    return a->linear < b->linear ? -1 : a->linear > b->linear;
}

/* Where located chunks go: the caller's array, or a growing list. */
struct sink {
    struct h5chunkindex_location *out; /* locate */
    struct h5chunkindex_list *list;    /* list_all */
    size_t cap;
};

static int sink_add(struct h5chunkindex *ci, struct sink *s, const struct key *k,
                    const uint64_t *scaled, struct h5chunkindex_location loc)
{
    if (loc.offset == UNDEF)
        return 0;
    if (!span_ok(ci, loc.offset, loc.size) || loc.size == 0)
        return damaged(ci, "chunk of %llu bytes at %llu outside the file",
                       (unsigned long long)loc.size, (unsigned long long)loc.offset);
    loc.allocated = true;
    if (s->out) {
        s->out[k->out] = loc;
        return 0;
    }
    unsigned rank = ci->info.rank;
    for (unsigned d = 0; d < rank; d++)
        if (scaled[d] >= ci->info.grid[d])
            return 0; /* outside the current extent: not addressable */
    struct h5chunkindex_list *l = s->list;
    if (l->count == s->cap) {
        if (s->cap >= H5CHUNKINDEX_MAX_LIST)
            return fallback(ci, "more than %d chunks", H5CHUNKINDEX_MAX_LIST);
        size_t cap = s->cap ? s->cap * 2 : 1024;
        uint64_t *c = realloc(l->coords, cap * rank * sizeof(*c));
        if (!c)
            return -ENOMEM;
        l->coords = c;
        struct h5chunkindex_location *locs = realloc(l->locations, cap * sizeof(*locs));
        if (!locs)
            return -ENOMEM;
        l->locations = locs;
        s->cap = cap;
    }
    memcpy(l->coords + l->count * rank, scaled, rank * sizeof(*scaled));
    l->locations[l->count++] = loc;
    return 0;
}

/* ---- version-1 B-tree (layout 3) ---- */

struct visit {
    uint64_t addr;
    uint64_t nrec; /* version-2 B-trees: records in the node */
    size_t kb, ke; /* keys [kb, ke) routed here */
};

struct visits {
    struct visit *v;
    size_t n, cap;
};

static int by_addr(const void *a, const void *b)
{
    const struct visit *x = a, *y = b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* A full walk reaching one node twice is a damaged tree, and would
 * otherwise multiply its work at every level. */
static int visits_unique(struct h5chunkindex *ci, struct visits *vs)
{
    if (vs->n < 2)
        return 0;
    struct visit *copy = malloc(vs->n * sizeof(*copy));
    if (!copy)
        return -ENOMEM;
    memcpy(copy, vs->v, vs->n * sizeof(*copy));
    qsort(copy, vs->n, sizeof(*copy), by_addr);
    int rc = 0;
    for (size_t i = 1; i < vs->n && rc == 0; i++)
        if (copy[i].addr == copy[i - 1].addr)
            rc = damaged(ci, "index node reached twice");
    free(copy);
    return rc;
}

static int visits_push(struct visits *vs, struct visit v)
{
    if (vs->n == vs->cap) {
        size_t cap = vs->cap ? vs->cap * 2 : 64;
        struct visit *nv = realloc(vs->v, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        vs->v = nv;
        vs->cap = cap;
    }
    vs->v[vs->n++] = v;
    return 0;
}

/* Routes keys [kb, ke) (or, with no keys, everything) to a child. */
static int route_child(struct visits *next, uint64_t child, uint64_t nrec, size_t j, bool all)
{
    if (all)
        return visits_push(next, (struct visit){child, nrec, 0, 0});
    if (next->n && next->v[next->n - 1].addr == child && next->v[next->n - 1].ke == j) {
        next->v[next->n - 1].ke = j + 1;
        return 0;
    }
    return visits_push(next, (struct visit){child, nrec, j, j + 1});
}

struct bt1_node {
    unsigned level, entries;
    uint64_t *scaled; /* (entries) keys, rank each */
    uint32_t *nbytes; /* (entries) */
    uint32_t *mask;   /* (entries) */
    uint64_t *child;  /* (entries) */
};

static size_t bt1_key_bytes(const struct h5chunkindex *ci)
{
    return 8 + 8 * ((size_t)ci->info.rank + 1);
}

static size_t bt1_node_bytes(const struct h5chunkindex *ci, size_t entries)
{
    size_t o = ci->src.sizeof_offsets;
    return 8 + 2 * o + (entries + 1) * bt1_key_bytes(ci) + entries * o;
}

static int bt1_parse(struct h5chunkindex *ci, const unsigned char *p, size_t len,
                     struct bt1_node *n)
{
    unsigned rank = ci->info.rank;
    struct cur c = cur_make(p, len);
    if (len < 8 || !sig_is(p, "TREE") || p[4] != 1)
        return damaged(ci, "not a chunk B-tree node");
    skip(&c, 5);
    n->level = (unsigned)get_uint(&c, 1);
    n->entries = (unsigned)get_uint(&c, 2);
    skip(&c, 2 * (size_t)ci->src.sizeof_offsets); /* siblings */
    if (len < bt1_node_bytes(ci, n->entries))
        return fallback(ci, "truncated B-tree node");
    n->scaled = malloc(((size_t)n->entries + 1) * rank * sizeof(uint64_t));
    n->nbytes = malloc(((size_t)n->entries + 1) * sizeof(uint32_t));
    n->mask = malloc(((size_t)n->entries + 1) * sizeof(uint32_t));
    n->child = malloc(((size_t)n->entries + 1) * sizeof(uint64_t));
    if (!n->scaled || !n->nbytes || !n->mask || !n->child)
        return -ENOMEM;
    for (unsigned i = 0; i < n->entries; i++) {
        n->nbytes[i] = (uint32_t)get_uint(&c, 4);
        n->mask[i] = (uint32_t)get_uint(&c, 4);
        uint64_t *s = n->scaled + (size_t)i * rank;
        for (unsigned d = 0; d < rank; d++) {
            uint64_t off = get_uint(&c, 8);
            if (off % ci->info.chunk_dims[d])
                return damaged(ci, "B-tree key not on a chunk boundary");
            s[d] = off / ci->info.chunk_dims[d];
        }
        if (get_uint(&c, 8) != 0)
            return damaged(ci, "B-tree key with an element offset");
        if (i > 0 && cmp_scaled(s - rank, s, rank) >= 0)
            return damaged(ci, "B-tree keys out of order");
        n->child[i] = get_addr(ci, &c);
    }
    return c.bad ? fallback(ci, "truncated B-tree node") : 0;
}

static void bt1_node_free(struct bt1_node *n)
{
    free(n->scaled);
    free(n->nbytes);
    free(n->mask);
    free(n->child);
    memset(n, 0, sizeof(*n));
}

/* One node: keys [v->kb, v->ke) to children or results. */
static int bt1_route(struct h5chunkindex *ci, const struct bt1_node *n, const struct visit *v,
                     const struct key *keys, struct visits *next, struct sink *sink)
{
    unsigned rank = ci->info.rank;
    int rc = 0;
    if (!keys) {
        for (unsigned i = 0; i < n->entries && rc == 0; i++) {
            if (n->level > 0)
                rc = route_child(next, n->child[i], 0, 0, true);
            else
                rc = sink_add(ci, sink, NULL, n->scaled + (size_t)i * rank,
                              (struct h5chunkindex_location){.offset = n->child[i],
                                                             .size = n->nbytes[i],
                                                             .filter_mask = n->mask[i]});
        }
        return rc;
    }
    unsigned i = 0;
    for (size_t j = v->kb; j < v->ke && rc == 0 && n->entries > 0; j++) {
        const uint64_t *want = keys[j].scaled;
        while (i + 1 < n->entries &&
               cmp_scaled(n->scaled + (size_t)(i + 1) * rank, want, rank) <= 0)
            i++;
        int c = cmp_scaled(n->scaled + (size_t)i * rank, want, rank);
        if (c > 0)
            continue; /* before the node's first key: never written */
        if (n->level > 0)
            rc = route_child(next, n->child[i], 0, j, false);
        else if (c == 0)
            rc = sink_add(ci, sink, &keys[j], want,
                          (struct h5chunkindex_location){.offset = n->child[i],
                                                         .size = n->nbytes[i],
                                                         .filter_mask = n->mask[i]});
    }
    return rc;
}

/* Reads the nodes of one level; nodes larger than guessed are read again. */
static int bt1_read_level(struct h5chunkindex *ci, const struct visits *cur, struct batch *b)
{
    size_t guess = bt1_node_bytes(ci, 2 * (size_t)ci->src.btree_k), slot;
    int rc = 0;
    for (size_t i = 0; i < cur->n && rc == 0; i++) {
        uint64_t addr = cur->v[i].addr, len = guess;
        if (addr != UNDEF && addr < ci->src.file_size && ci->src.file_size - addr < len)
            len = ci->src.file_size - addr;
        rc = batch_add(ci, b, addr, len, &slot);
    }
    if (rc == 0)
        rc = batch_run(ci, b);
    struct batch again = {0};
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        if (b->r[i].length < 8)
            continue; /* bt1_parse reports it */
        size_t need = bt1_node_bytes(ci, (size_t)b->r[i].buf[6] | (size_t)b->r[i].buf[7] << 8);
        if (need > b->r[i].length)
            rc = batch_add(ci, &again, b->r[i].offset, need, &slot);
    }
    if (rc == 0)
        rc = batch_run(ci, &again);
    for (size_t i = 0, k = 0; i < b->n && k < again.n && rc == 0; i++) {
        if (b->r[i].offset != again.r[k].offset)
            continue;
        free(b->r[i].buf);
        b->r[i] = again.r[k];
        again.r[k++].buf = NULL;
    }
    batch_free(&again);
    return rc;
}

static int walk_btree1(struct h5chunkindex *ci, const struct key *keys, size_t nkeys,
                       struct sink *sink)
{
    struct visits cur = {0}, next = {0};
    struct batch b = {0};
    int rc = visits_push(&cur, (struct visit){ci->info.index_address, 0, 0, nkeys});
    int want = -1; /* level of the nodes being read; -1: the root's, unknown */
    unsigned depth = 0;
    while (rc == 0 && cur.n > 0) {
        if (++depth > H5CHUNKINDEX_MAX_DEPTH) {
            rc = fallback(ci, "B-tree deeper than %d", H5CHUNKINDEX_MAX_DEPTH);
            break;
        }
        rc = bt1_read_level(ci, &cur, &b);
        for (size_t i = 0; i < cur.n && rc == 0; i++) {
            struct bt1_node n = {0};
            rc = bt1_parse(ci, b.r[i].buf, b.r[i].length, &n);
            if (rc == 0 && want < 0 && n.level < H5CHUNKINDEX_MAX_DEPTH)
                want = (int)n.level;
            if (rc == 0 && (int)n.level != want)
                rc = damaged(ci, "B-tree node at level %u, expected %d", n.level, want);
            if (rc == 0 && n.entries == 0 && depth > 1)
                rc = fallback(ci, "empty B-tree node below the root");
            if (rc == 0)
                rc = bt1_route(ci, &n, &cur.v[i], keys, &next, sink);
            bt1_node_free(&n);
        }
        if (rc == 0 && !keys)
            rc = visits_unique(ci, &next);
        want--;
        batch_reset(&b);
        struct visits t = cur;
        cur = next;
        next = t;
        next.n = 0;
    }
    free(cur.v);
    free(next.v);
    batch_free(&b);
    return rc;
}

/* ---- version-2 B-tree (layout 4, record types 10 and 11) ---- */

struct bt2 {
    uint32_t node_size;
    unsigned rec_size, depth, size_len; /* size_len: filtered chunk size bytes */
    uint64_t root, root_nrec;
    uint64_t max_nrec[H5CHUNKINDEX_MAX_DEPTH + 1];
    uint64_t cum_max_nrec[H5CHUNKINDEX_MAX_DEPTH + 1];
    unsigned cum_size[H5CHUNKINDEX_MAX_DEPTH + 1];
    unsigned nrec_size;
};

static unsigned enc_size(uint64_t v)
{
    return log2_floor(v) / 8 + 1;
}

static size_t bt2_ptr_bytes(const struct h5chunkindex *ci, const struct bt2 *t, unsigned level)
{
    return ci->src.sizeof_offsets + t->nrec_size + (level > 1 ? t->cum_size[level - 1] : 0);
}

static int bt2_node_info(struct h5chunkindex *ci, struct bt2 *t)
{
    if (t->node_size <= PREFIX_BYTES + CHECKSUM + t->rec_size)
        return fallback(ci, "B-tree node size %u", t->node_size);
    t->max_nrec[0] = (t->node_size - PREFIX_BYTES - CHECKSUM) / t->rec_size;
    t->cum_max_nrec[0] = t->max_nrec[0];
    t->cum_size[0] = 0;
    t->nrec_size = enc_size(t->max_nrec[0]);
    for (unsigned u = 1; u <= t->depth; u++) {
        size_t ptr = bt2_ptr_bytes(ci, t, u);
        if (t->node_size < PREFIX_BYTES + CHECKSUM + ptr + t->rec_size + ptr)
            return fallback(ci, "B-tree node size %u too small for depth %u", t->node_size, u);
        t->max_nrec[u] = (t->node_size - (PREFIX_BYTES + CHECKSUM + ptr)) / (t->rec_size + ptr);
        uint64_t cum;
        if (!mul_ok(t->max_nrec[u] + 1, t->cum_max_nrec[u - 1], &cum) ||
            cum > UINT64_MAX - t->max_nrec[u])
            return fallback(ci, "B-tree too deep");
        t->cum_max_nrec[u] = cum + t->max_nrec[u];
        t->cum_size[u] = enc_size(t->cum_max_nrec[u]);
    }
    return 0;
}

static int bt2_header(struct h5chunkindex *ci, struct bt2 *t)
{
    struct batch b = {0};
    size_t slot, o = ci->src.sizeof_offsets, l = ci->src.sizeof_lengths;
    size_t len = PREFIX_BYTES + 4 + 2 + 2 + 2 + o + 2 + l + CHECKSUM;
    int rc = batch_add(ci, &b, ci->info.index_address, len, &slot);
    if (rc == 0)
        rc = batch_run(ci, &b);
    if (rc)
        goto done;
    const unsigned char *p = b.r[0].buf;
    unsigned want_type = ci->filtered ? 11 : 10;
    if (!sig_is(p, "BTHD") || p[4] != 0 || p[5] != want_type) {
        rc = damaged(ci, "no version-2 B-tree header of type %u", want_type);
        goto done;
    }
    if (!checksum_ok(p, len - CHECKSUM)) {
        rc = damaged(ci, "B-tree header checksum mismatch");
        goto done;
    }
    struct cur c = cur_make(p + PREFIX_BYTES, len - PREFIX_BYTES);
    t->node_size = (uint32_t)get_uint(&c, 4);
    t->rec_size = (unsigned)get_uint(&c, 2);
    t->depth = (unsigned)get_uint(&c, 2);
    skip(&c, 2);
    t->root = get_addr(ci, &c);
    t->root_nrec = get_uint(&c, 2);
    size_t fixed = o + 8 * (size_t)ci->info.rank;
    t->size_len = ci->filtered ? (unsigned)(t->rec_size - fixed - 4) : 0;
    if (t->node_size > H5CHUNKINDEX_MAX_NODE_BYTES || t->depth >= H5CHUNKINDEX_MAX_DEPTH ||
        (!ci->filtered && t->rec_size != fixed) ||
        (ci->filtered && (t->rec_size < fixed + 5 || t->rec_size > fixed + 12))) {
        rc = fallback(ci, "B-tree node size %u, record %u bytes, depth %u", t->node_size,
                      t->rec_size, t->depth);
        goto done;
    }
    rc = bt2_node_info(ci, t);
    if (rc == 0 && t->root_nrec > t->max_nrec[t->depth])
        rc = fallback(ci, "B-tree root with %llu records", (unsigned long long)t->root_nrec);
done:
    batch_free(&b);
    return rc;
}

struct bt2_rec {
    uint64_t scaled[H5CHUNKINDEX_MAX_RANK];
    struct h5chunkindex_location loc;
};

static void bt2_record(const struct h5chunkindex *ci, const struct bt2 *t, struct cur *c,
                       struct bt2_rec *r)
{
    r->loc.offset = get_addr(ci, c);
    r->loc.size = ci->filtered ? get_uint(c, t->size_len) : ci->info.chunk_bytes;
    r->loc.filter_mask = ci->filtered ? (uint32_t)get_uint(c, 4) : 0;
    for (unsigned d = 0; d < ci->info.rank; d++)
        r->scaled[d] = get_uint(c, 8);
}

static size_t bt2_node_bytes(const struct h5chunkindex *ci, const struct bt2 *t, unsigned level,
                             uint64_t nrec)
{
    size_t n = PREFIX_BYTES + (size_t)nrec * t->rec_size + CHECKSUM;
    if (level > 0)
        n += ((size_t)nrec + 1) * bt2_ptr_bytes(ci, t, level);
    return n;
}

static int bt2_node(struct h5chunkindex *ci, const struct bt2 *t, unsigned level,
                    const struct visit *v, const struct h5ci_range *r, const struct key *keys,
                    struct visits *next, struct sink *sink)
{
    const unsigned char *p = r->buf;
    unsigned rank = ci->info.rank;
    if (!sig_is(p, level ? "BTIN" : "BTLF") || p[4] != 0 || p[5] != (ci->filtered ? 11 : 10))
        return damaged(ci, "no version-2 B-tree node at level %u", level);
    if (!checksum_ok(p, r->length - CHECKSUM))
        return damaged(ci, "B-tree node checksum mismatch");
    size_t nrec = (size_t)v->nrec;
    struct bt2_rec *recs = malloc((nrec + 1) * sizeof(*recs));
    uint64_t *child = malloc((nrec + 1) * 2 * sizeof(*child));
    int rc = (recs && child) ? 0 : -ENOMEM;
    struct cur c = cur_make(p + PREFIX_BYTES, r->length - PREFIX_BYTES - CHECKSUM);
    for (size_t i = 0; i < nrec && rc == 0; i++) {
        bt2_record(ci, t, &c, &recs[i]);
        if (i > 0 && cmp_scaled(recs[i - 1].scaled, recs[i].scaled, rank) >= 0)
            rc = damaged(ci, "B-tree records out of order");
    }
    for (size_t i = 0; level > 0 && i <= nrec && rc == 0; i++) {
        child[2 * i] = get_addr(ci, &c);
        child[2 * i + 1] = get_uint(&c, t->nrec_size);
        if (level > 1)
            get_uint(&c, t->cum_size[level - 1]);
        if (child[2 * i + 1] > t->max_nrec[level - 1])
            rc = fallback(ci, "B-tree child with %llu records",
                          (unsigned long long)child[2 * i + 1]);
    }
    if (rc == 0 && c.bad)
        rc = fallback(ci, "truncated B-tree node");
    if (rc == 0 && !keys) {
        for (size_t i = 0; i < nrec && rc == 0; i++)
            rc = sink_add(ci, sink, NULL, recs[i].scaled, recs[i].loc);
        for (size_t i = 0; level > 0 && i <= nrec && rc == 0; i++)
            rc = route_child(next, child[2 * i], child[2 * i + 1], 0, true);
    }
    size_t pos = 0;
    for (size_t j = v->kb; keys && j < v->ke && rc == 0; j++) {
        while (pos < nrec && cmp_scaled(recs[pos].scaled, keys[j].scaled, rank) < 0)
            pos++;
        if (pos < nrec && cmp_scaled(recs[pos].scaled, keys[j].scaled, rank) == 0)
            rc = sink_add(ci, sink, &keys[j], keys[j].scaled, recs[pos].loc);
        else if (level > 0)
            rc = route_child(next, child[2 * pos], child[2 * pos + 1], j, false);
    }
    free(recs);
    free(child);
    return rc;
}

static int walk_btree2(struct h5chunkindex *ci, const struct key *keys, size_t nkeys,
                       struct sink *sink)
{
    struct bt2 t = {0};
    int rc = bt2_header(ci, &t);
    if (rc || t.root_nrec == 0)
        return rc;
    struct visits cur = {0}, next = {0};
    struct batch b = {0};
    rc = visits_push(&cur, (struct visit){t.root, t.root_nrec, 0, nkeys});
    unsigned depth = 0;
    for (int level = (int)t.depth; rc == 0 && cur.n > 0 && level >= 0; level--) {
        size_t slot;
        depth++;
        for (size_t i = 0; i < cur.n && rc == 0; i++)
            rc = batch_add(ci, &b, cur.v[i].addr,
                           bt2_node_bytes(ci, &t, (unsigned)level, cur.v[i].nrec), &slot);
        if (rc == 0)
            rc = batch_run(ci, &b);
        for (size_t i = 0; i < cur.n && rc == 0; i++)
            rc = bt2_node(ci, &t, (unsigned)level, &cur.v[i], &b.r[i], keys, &next, sink);
        if (rc == 0 && !keys)
            rc = visits_unique(ci, &next);
        batch_reset(&b);
        struct visits tmp = cur;
        cur = next;
        next = tmp;
        next.n = 0;
    }
    free(cur.v);
    free(next.v);
    batch_free(&b);
    return rc;
}

/* ---- array indexes: linear positions ---- */

/* Row-major position over the maximum chunk grid; for an extensible array
 * the unlimited dimension is moved first (it is the slowest). */
static uint64_t linear_index(const struct h5chunkindex *ci, const uint64_t *scaled)
{
    unsigned rank = ci->info.rank;
    uint64_t idx = 0;
    if (ci->unlim_dim >= 0)
        idx = scaled[ci->unlim_dim];
    for (unsigned d = 0; d < rank; d++) {
        if ((int)d == ci->unlim_dim)
            continue;
        idx = idx * ci->max_grid[d] + scaled[d];
    }
    return idx;
}

static int array_element(struct h5chunkindex *ci, struct cur *c, unsigned size_len,
                         struct h5chunkindex_location *loc)
{
    loc->offset = get_addr(ci, c);
    loc->size = ci->filtered ? get_uint(c, size_len) : ci->info.chunk_bytes;
    loc->filter_mask = ci->filtered ? (uint32_t)get_uint(c, 4) : 0;
    return c->bad ? fallback(ci, "truncated index element") : 0;
}

/* Element size of array indexes: an address, plus size and mask if filtered. */
static int check_element_size(struct h5chunkindex *ci, unsigned esize, unsigned *size_len)
{
    unsigned o = ci->src.sizeof_offsets;
    *size_len = 0;
    if (!ci->filtered)
        return esize == o ? 0 : fallback(ci, "index element of %u bytes", esize);
    if (esize < o + 5 || esize > o + 12)
        return fallback(ci, "filtered index element of %u bytes", esize);
    *size_len = esize - o - 4;
    return 0;
}

/* ---- fixed array ---- */

struct farray {
    unsigned esize, size_len, page_bits;
    uint64_t nelmts, dblk, npages, page_nelmts;
    size_t prefix; /* data block bytes before the first page */
};

/*
 * Reads the len-byte header of a fixed or extensible array index (signature
 * sig) at the index address and checks its version, client id and checksum.
 * 0 with *out pointing into b's buffer (the caller frees b).
 */
static int array_header(struct h5chunkindex *ci, struct batch *b, const char *sig, size_t len,
                        const char *what, const unsigned char **out)
{
    size_t slot;
    int rc = batch_add(ci, b, ci->info.index_address, len, &slot);
    if (rc == 0)
        rc = batch_run(ci, b);
    if (rc)
        return rc;
    const unsigned char *p = b->r[0].buf;
    if (!sig_is(p, sig) || p[4] != 0 || p[5] != (ci->filtered ? 1 : 0))
        return damaged(ci, "no %s header", what);
    if (!checksum_ok(p, len - CHECKSUM))
        return damaged(ci, "%s header checksum mismatch", what);
    *out = p;
    return 0;
}

static int fa_header(struct h5chunkindex *ci, struct farray *fa)
{
    struct batch b = {0};
    size_t o = ci->src.sizeof_offsets, l = ci->src.sizeof_lengths;
    size_t len = PREFIX_BYTES + 2 + l + o + CHECKSUM;
    const unsigned char *p = NULL;
    int rc = array_header(ci, &b, "FAHD", len, "fixed array", &p);
    if (rc)
        goto done;
    struct cur c = cur_make(p + PREFIX_BYTES, len - PREFIX_BYTES);
    fa->esize = (unsigned)get_uint(&c, 1);
    fa->page_bits = (unsigned)get_uint(&c, 1);
    fa->nelmts = get_uint(&c, l);
    fa->dblk = get_addr(ci, &c);
    uint64_t want = 1;
    for (unsigned d = 0; d < ci->info.rank && want != 0; d++)
        if (!mul_ok(want, ci->max_grid[d], &want) || want > (1ULL << 48))
            want = 0; /* no fixed array holds that many chunks */
    if (want == 0 || fa->nelmts != want || fa->page_bits != ci->fa_page_bits ||
        fa->page_bits > 32) {
        rc = fallback(ci, "fixed array of %llu elements, page bits %u",
                      (unsigned long long)fa->nelmts, fa->page_bits);
        goto done;
    }
    rc = check_element_size(ci, fa->esize, &fa->size_len);
    fa->page_nelmts = 1ULL << fa->page_bits;
    fa->npages =
        fa->nelmts > fa->page_nelmts ? (fa->nelmts + fa->page_nelmts - 1) / fa->page_nelmts : 0;
    fa->prefix = PREFIX_BYTES + o + (size_t)((fa->npages + 7) / 8) + CHECKSUM;
done:
    batch_free(&b);
    return rc;
}

/* Checks a data block's prefix: signature, client, owner, checksum. */
static int block_prefix_ok(struct h5chunkindex *ci, const unsigned char *p, size_t sum_len,
                           const char *sig)
{
    struct cur c = cur_make(p + PREFIX_BYTES, sum_len - PREFIX_BYTES);
    if (!sig_is(p, sig) || p[4] != 0 || p[5] != (ci->filtered ? 1 : 0))
        return damaged(ci, "no %s block", sig);
    if (get_addr(ci, &c) != ci->info.index_address)
        return damaged(ci, "%s block of another index", sig);
    if (!checksum_ok(p, sum_len))
        return damaged(ci, "%s block checksum mismatch", sig);
    return 0;
}

static bool bit_set(const unsigned char *bitmap, uint64_t i)
{
    return (bitmap[i / 8] & (0x80 >> (i % 8))) != 0;
}

static int fa_locate(struct h5chunkindex *ci, struct key *keys, size_t nkeys, struct sink *sink)
{
    struct farray fa = {0};
    int rc = fa_header(ci, &fa);
    if (rc || fa.dblk == UNDEF)
        return rc;
    struct batch b = {0};
    size_t slot, o = ci->src.sizeof_offsets;
    if (fa.npages == 0) {
        size_t len = PREFIX_BYTES + o + (size_t)fa.nelmts * fa.esize + CHECKSUM;
        rc = batch_add(ci, &b, fa.dblk, len, &slot);
        if (rc == 0)
            rc = batch_run(ci, &b);
        if (rc == 0)
            rc = block_prefix_ok(ci, b.r[0].buf, len - CHECKSUM, "FADB");
        for (size_t j = 0; j < nkeys && rc == 0; j++) {
            struct h5chunkindex_location loc;
            struct cur c =
                cur_make(b.r[0].buf + PREFIX_BYTES + o + keys[j].linear * fa.esize, fa.esize);
            rc = array_element(ci, &c, fa.size_len, &loc);
            if (rc == 0)
                rc = sink_add(ci, sink, &keys[j], keys[j].scaled, loc);
        }
        batch_free(&b);
        return rc;
    }
    /* Paged: the prefix (with its page bitmap) and every page a key needs. */
    uint64_t page_bytes = fa.page_nelmts * fa.esize + CHECKSUM;
    rc = batch_add(ci, &b, fa.dblk, fa.prefix, &slot);
    uint64_t last_page = UNDEF;
    for (size_t j = 0; j < nkeys && rc == 0; j++) {
        uint64_t page = keys[j].linear / fa.page_nelmts;
        if (page == last_page)
            continue;
        uint64_t nel = page + 1 == fa.npages ? fa.nelmts - page * fa.page_nelmts : fa.page_nelmts;
        rc = batch_add(ci, &b, fa.dblk + fa.prefix + page * page_bytes, nel * fa.esize + CHECKSUM,
                       &slot);
        last_page = page;
    }
    if (rc == 0)
        rc = batch_run(ci, &b);
    if (rc == 0)
        rc = block_prefix_ok(ci, b.r[0].buf, fa.prefix - CHECKSUM, "FADB");
    const unsigned char *bitmap = rc == 0 ? b.r[0].buf + PREFIX_BYTES + o : NULL;
    size_t r = 0;
    last_page = UNDEF;
    for (size_t j = 0; j < nkeys && rc == 0; j++) {
        uint64_t page = keys[j].linear / fa.page_nelmts;
        if (page != last_page) {
            r++;
            last_page = page;
            if (bit_set(bitmap, page) && !checksum_ok(b.r[r].buf, b.r[r].length - CHECKSUM))
                rc = damaged(ci, "fixed array page checksum mismatch");
        }
        if (rc || !bit_set(bitmap, page))
            continue; /* a page never written: its chunks neither */
        struct h5chunkindex_location loc;
        struct cur c =
            cur_make(b.r[r].buf + (keys[j].linear - page * fa.page_nelmts) * fa.esize, fa.esize);
        rc = array_element(ci, &c, fa.size_len, &loc);
        if (rc == 0)
            rc = sink_add(ci, sink, &keys[j], keys[j].scaled, loc);
    }
    batch_free(&b);
    return rc;
}

/* ---- extensible array ---- */

struct ea_sblock_info {
    uint64_t ndblks, dblk_nelmts, start_idx, start_dblk;
};

struct earray {
    struct ea_params p;
    unsigned esize, size_len, arr_off_size;
    uint64_t iblock;
    unsigned nsblks, iblock_nsblks;
    uint64_t iblock_ndblk, iblock_nsblk;
    uint64_t page_nelmts;
    struct ea_sblock_info sb[MAX_SUPER_BLOCKS];
};

static bool is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

static int ea_geometry(struct h5chunkindex *ci, struct earray *ea)
{
    const struct ea_params *p = &ea->p;
    if (p->max_bits < 1 || p->max_bits > 63 || !is_pow2(p->min_elmts) || !is_pow2(p->min_ptrs) ||
        p->min_ptrs < 2 || log2_floor(p->min_elmts) > p->max_bits || p->page_bits > p->max_bits ||
        p->page_bits > 32)
        return fallback(ci, "extensible array parameters");
    ea->nsblks = 1 + p->max_bits - log2_floor(p->min_elmts);
    if (ea->nsblks > MAX_SUPER_BLOCKS)
        return fallback(ci, "extensible array of %u super blocks", ea->nsblks);
    uint64_t idx = 0, dblk = 0;
    for (unsigned s = 0; s < ea->nsblks; s++) {
        ea->sb[s].ndblks = 1ULL << (s / 2);
        ea->sb[s].dblk_nelmts = (1ULL << ((s + 1) / 2)) * p->min_elmts;
        ea->sb[s].start_idx = idx;
        ea->sb[s].start_dblk = dblk;
        idx += ea->sb[s].ndblks * ea->sb[s].dblk_nelmts;
        dblk += ea->sb[s].ndblks;
    }
    ea->iblock_nsblks = 2 * log2_floor(p->min_ptrs);
    ea->iblock_ndblk = 2 * ((uint64_t)p->min_ptrs - 1);
    if (ea->iblock_nsblks > ea->nsblks)
        return fallback(ci, "extensible array index block larger than the array");
    ea->iblock_nsblk = ea->nsblks - ea->iblock_nsblks;
    ea->arr_off_size = (p->max_bits + 7) / 8;
    ea->page_nelmts = 1ULL << p->page_bits;
    return 0;
}

static int ea_header(struct h5chunkindex *ci, struct earray *ea)
{
    struct batch b = {0};
    size_t o = ci->src.sizeof_offsets, l = ci->src.sizeof_lengths;
    size_t len = PREFIX_BYTES + 6 + 6 * l + o + CHECKSUM;
    const unsigned char *p = NULL;
    int rc = array_header(ci, &b, "EAHD", len, "extensible array", &p);
    if (rc)
        goto done;
    struct cur c = cur_make(p + PREFIX_BYTES, len - PREFIX_BYTES);
    ea->esize = (unsigned)get_uint(&c, 1);
    ea->p.max_bits = (unsigned)get_uint(&c, 1);
    ea->p.idx_elmts = (unsigned)get_uint(&c, 1);
    ea->p.min_elmts = (unsigned)get_uint(&c, 1);
    ea->p.min_ptrs = (unsigned)get_uint(&c, 1);
    ea->p.page_bits = (unsigned)get_uint(&c, 1);
    skip(&c, 6 * l); /* statistics */
    ea->iblock = get_addr(ci, &c);
    if (memcmp(&ea->p, &ci->ea, sizeof(ea->p)) != 0) {
        rc = fallback(ci, "extensible array parameters differ from the layout's");
        goto done;
    }
    rc = check_element_size(ci, ea->esize, &ea->size_len);
    if (rc == 0)
        rc = ea_geometry(ci, ea);
done:
    batch_free(&b);
    return rc;
}

/* Where an element lives: super block s, data block d within it, slot e. */
struct ea_pos {
    unsigned s;
    uint64_t d, e;
};

static int ea_position(struct h5chunkindex *ci, const struct earray *ea, uint64_t idx,
                       struct ea_pos *pos)
{
    idx -= ea->p.idx_elmts;
    unsigned s = log2_floor(idx / ea->p.min_elmts + 1);
    if (s >= ea->nsblks)
        return fallback(ci, "chunk beyond the extensible array's maximum");
    uint64_t rel = idx - ea->sb[s].start_idx;
    pos->s = s;
    pos->d = rel / ea->sb[s].dblk_nelmts;
    pos->e = rel % ea->sb[s].dblk_nelmts;
    return 0;
}

static size_t ea_dblock_prefix(const struct h5chunkindex *ci, const struct earray *ea)
{
    return PREFIX_BYTES + ci->src.sizeof_offsets + ea->arr_off_size;
}

/* A data block a key needs: where it is and which of its pages to read. */
struct ea_need {
    uint64_t addr;                    /* data block */
    unsigned s;                       /* super block */
    uint64_t d;                       /* data block within the super block */
    const unsigned char *page_bitmap; /* from the super block, or NULL */
    size_t kb, ke;                    /* keys */
};

/* Reads data blocks (whole, or prefix + needed pages) and resolves keys. */
static int ea_dblocks(struct h5chunkindex *ci, const struct earray *ea, struct ea_need *need,
                      size_t nneed, struct key *keys, struct sink *sink)
{
    struct batch b = {0};
    size_t slot, prefix = ea_dblock_prefix(ci, ea);
    int rc = 0;
    uint64_t page_bytes = ea->page_nelmts * ea->esize + CHECKSUM;
    for (size_t i = 0; i < nneed && rc == 0; i++) {
        uint64_t nel = ea->sb[need[i].s].dblk_nelmts;
        if (nel > ea->page_nelmts && !need[i].page_bitmap)
            rc = fallback(ci, "paged data block named by the index block");
        if (rc == 0 && nel <= ea->page_nelmts) {
            rc = batch_add(ci, &b, need[i].addr, prefix + nel * ea->esize + CHECKSUM, &slot);
            continue;
        }
        if (rc == 0)
            rc = batch_add(ci, &b, need[i].addr, prefix + CHECKSUM, &slot);
        uint64_t last = UNDEF;
        for (size_t j = need[i].kb; j < need[i].ke && rc == 0; j++) {
            struct ea_pos pos;
            rc = ea_position(ci, ea, keys[j].linear, &pos);
            uint64_t page = pos.e / ea->page_nelmts;
            if (rc == 0 && page != last)
                rc = batch_add(ci, &b, need[i].addr + prefix + CHECKSUM + page * page_bytes,
                               page_bytes, &slot);
            last = page;
        }
    }
    if (rc == 0)
        rc = batch_run(ci, &b);
    size_t r = 0;
    for (size_t i = 0; i < nneed && rc == 0; i++) {
        uint64_t nel = ea->sb[need[i].s].dblk_nelmts;
        bool paged = nel > ea->page_nelmts;
        const struct h5ci_range *blk = &b.r[r++];
        rc = block_prefix_ok(ci, blk->buf, paged ? prefix : blk->length - CHECKSUM, "EADB");
        uint64_t last = UNDEF, npages = nel / ea->page_nelmts;
        const struct h5ci_range *pg = blk;
        for (size_t j = need[i].kb; j < need[i].ke && rc == 0; j++) {
            struct ea_pos pos;
            rc = ea_position(ci, ea, keys[j].linear, &pos);
            uint64_t page = pos.e / ea->page_nelmts, slot_in = pos.e;
            const unsigned char *base = blk->buf + prefix;
            if (rc == 0 && paged) {
                if (page != last) {
                    pg = &b.r[r++];
                    last = page;
                    bool init = !need[i].page_bitmap ||
                                bit_set(need[i].page_bitmap, need[i].d * npages + page);
                    if (init && !checksum_ok(pg->buf, pg->length - CHECKSUM))
                        rc = damaged(ci, "extensible array page checksum mismatch");
                }
                if (need[i].page_bitmap && !bit_set(need[i].page_bitmap, need[i].d * npages + page))
                    continue;
                base = pg->buf;
                slot_in = pos.e - page * ea->page_nelmts;
            }
            struct h5chunkindex_location loc;
            struct cur c = cur_make(base + slot_in * ea->esize, ea->esize);
            if (rc == 0)
                rc = array_element(ci, &c, ea->size_len, &loc);
            if (rc == 0)
                rc = sink_add(ci, sink, &keys[j], keys[j].scaled, loc);
        }
    }
    batch_free(&b);
    return rc;
}

static int ea_need_push(struct ea_need **v, size_t *n, size_t *cap, struct ea_need x)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 32;
        struct ea_need *nv = realloc(*v, nc * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = x;
    return 0;
}

/* Groups keys [kb, ke) (sorted by position) by the data block they need. */
static int ea_group(struct h5chunkindex *ci, const struct earray *ea, const struct key *keys,
                    size_t kb, size_t ke, struct ea_need **need, size_t *nneed, size_t *cap)
{
    int rc = 0;
    for (size_t j = kb; j < ke && rc == 0; j++) {
        struct ea_pos pos;
        rc = ea_position(ci, ea, keys[j].linear, &pos);
        if (rc)
            break;
        struct ea_need *last = *nneed ? &(*need)[*nneed - 1] : NULL;
        if (last && last->s == pos.s && last->d == pos.d && last->ke == j) {
            last->ke = j + 1;
            continue;
        }
        rc = ea_need_push(need, nneed, cap, (struct ea_need){UNDEF, pos.s, pos.d, NULL, j, j + 1});
    }
    return rc;
}

static size_t ea_sblock_bytes(const struct h5chunkindex *ci, const struct earray *ea, unsigned s,
                              size_t *bitmap)
{
    uint64_t nel = ea->sb[s].dblk_nelmts;
    uint64_t npages = nel > ea->page_nelmts ? nel / ea->page_nelmts : 0;
    *bitmap = (size_t)((ea->sb[s].ndblks * npages + 7) / 8);
    return PREFIX_BYTES + ci->src.sizeof_offsets + ea->arr_off_size + *bitmap +
           (size_t)ea->sb[s].ndblks * ci->src.sizeof_offsets + CHECKSUM;
}

/* Data blocks below super blocks: read the super blocks, then the blocks. */
static int ea_via_sblocks(struct h5chunkindex *ci, const struct earray *ea,
                          const unsigned char *sblk_addrs, struct ea_need *need, size_t nneed,
                          struct key *keys, struct sink *sink)
{
    struct batch b = {0};
    size_t slot, o = ci->src.sizeof_offsets;
    int rc = 0;
    unsigned last_s = UINT32_MAX;
    for (size_t i = 0; i < nneed && rc == 0; i++) {
        if (need[i].s == last_s)
            continue;
        last_s = need[i].s;
        struct cur c = cur_make(sblk_addrs + (need[i].s - ea->iblock_nsblks) * o, o);
        uint64_t addr = get_addr(ci, &c);
        size_t bitmap;
        if (addr != UNDEF)
            rc = batch_add(ci, &b, addr, ea_sblock_bytes(ci, ea, need[i].s, &bitmap), &slot);
    }
    if (rc == 0)
        rc = batch_run(ci, &b);
    size_t r = 0, kept = 0;
    last_s = UINT32_MAX;
    const struct h5ci_range *sb = NULL;
    for (size_t i = 0; i < nneed && rc == 0; i++) {
        if (need[i].s != last_s) {
            last_s = need[i].s;
            struct cur c = cur_make(sblk_addrs + (need[i].s - ea->iblock_nsblks) * o, o);
            sb = get_addr(ci, &c) == UNDEF ? NULL : &b.r[r++];
            if (sb)
                rc = block_prefix_ok(ci, sb->buf, sb->length - CHECKSUM, "EASB");
        }
        if (!sb || rc)
            continue; /* a super block never allocated: its chunks neither */
        size_t bitmap;
        ea_sblock_bytes(ci, ea, need[i].s, &bitmap);
        const unsigned char *bm = sb->buf + PREFIX_BYTES + o + ea->arr_off_size;
        struct cur c = cur_make(bm + bitmap + need[i].d * o, o);
        need[i].addr = get_addr(ci, &c);
        need[i].page_bitmap = bitmap ? bm : NULL;
        if (need[i].addr != UNDEF)
            need[kept++] = need[i];
    }
    if (rc == 0)
        rc = ea_dblocks(ci, ea, need, kept, keys, sink);
    batch_free(&b);
    return rc;
}

static int ea_locate(struct h5chunkindex *ci, struct key *keys, size_t nkeys, struct sink *sink)
{
    struct earray ea = {0};
    int rc = ea_header(ci, &ea);
    if (rc || ea.iblock == UNDEF)
        return rc;
    size_t o = ci->src.sizeof_offsets, slot;
    size_t elems = PREFIX_BYTES + o;
    size_t dblks = elems + (size_t)ea.p.idx_elmts * ea.esize;
    size_t sblks = dblks + (size_t)ea.iblock_ndblk * o;
    size_t len = sblks + (size_t)ea.iblock_nsblk * o + CHECKSUM;
    struct batch b = {0};
    struct ea_need *direct = NULL, *below = NULL;
    size_t ndirect = 0, nbelow = 0, cap1 = 0, cap2 = 0;
    rc = batch_add(ci, &b, ea.iblock, len, &slot);
    if (rc == 0)
        rc = batch_run(ci, &b);
    if (rc == 0)
        rc = block_prefix_ok(ci, b.r[0].buf, len - CHECKSUM, "EAIB");
    size_t j = 0;
    for (; rc == 0 && j < nkeys && keys[j].linear < ea.p.idx_elmts; j++) {
        struct h5chunkindex_location loc;
        struct cur c = cur_make(b.r[0].buf + elems + keys[j].linear * ea.esize, ea.esize);
        rc = array_element(ci, &c, ea.size_len, &loc);
        if (rc == 0)
            rc = sink_add(ci, sink, &keys[j], keys[j].scaled, loc);
    }
    size_t first_below = j;
    while (rc == 0 && first_below < nkeys) {
        struct ea_pos pos;
        rc = ea_position(ci, &ea, keys[first_below].linear, &pos);
        if (rc || pos.s >= ea.iblock_nsblks)
            break;
        first_below++;
    }
    if (rc == 0)
        rc = ea_group(ci, &ea, keys, j, first_below, &direct, &ndirect, &cap1);
    if (rc == 0)
        rc = ea_group(ci, &ea, keys, first_below, nkeys, &below, &nbelow, &cap2);
    size_t kept = 0;
    for (size_t i = 0; i < ndirect && rc == 0; i++) {
        struct cur c =
            cur_make(b.r[0].buf + dblks + (ea.sb[direct[i].s].start_dblk + direct[i].d) * o, o);
        direct[i].addr = get_addr(ci, &c);
        if (direct[i].addr != UNDEF)
            direct[kept++] = direct[i];
    }
    /* Blocks named by the index block and super blocks are read together;
     * the blocks below super blocks follow in one more batch. */
    if (rc == 0)
        rc = ea_dblocks(ci, &ea, direct, kept, keys, sink);
    if (rc == 0 && nbelow)
        rc = ea_via_sblocks(ci, &ea, b.r[0].buf + sblks, below, nbelow, keys, sink);
    free(direct);
    free(below);
    batch_free(&b);
    return rc;
}

/* ---- single chunk and implicit ---- */

static int single_locate(struct h5chunkindex *ci, struct key *keys, size_t nkeys, struct sink *sink)
{
    struct h5chunkindex_location loc = {
        .offset = ci->info.index_address,
        .size = ci->filtered ? ci->single_size : ci->info.chunk_bytes,
        .filter_mask = ci->filtered ? ci->single_mask : 0,
    };
    int rc = 0;
    for (size_t j = 0; j < nkeys && rc == 0; j++)
        rc = sink_add(ci, sink, &keys[j], keys[j].scaled, loc);
    return rc;
}

static int implicit_locate(struct h5chunkindex *ci, struct key *keys, size_t nkeys,
                           struct sink *sink)
{
    int rc = 0;
    for (size_t j = 0; j < nkeys && rc == 0; j++) {
        uint64_t off;
        if (!mul_ok(keys[j].linear, ci->info.chunk_bytes, &off) ||
            off > UINT64_MAX - ci->info.index_address)
            return fallback(ci, "implicit chunk address overflows");
        struct h5chunkindex_location loc = {.offset = ci->info.index_address + off,
                                            .size = ci->info.chunk_bytes};
        rc = sink_add(ci, sink, &keys[j], keys[j].scaled, loc);
    }
    return rc;
}

/* ---- entry points ---- */

static int walk(struct h5chunkindex *ci, struct key *keys, size_t nkeys, struct sink *sink)
{
    ci->reason[0] = '\0';
    ci->damaged = false;
    ci->walk_nodes = ci->walk_bytes = 0;
    if (ci->info.index_address == UNDEF)
        return 0; /* no chunk ever written */
    switch (ci->info.type) {
    case H5CHUNKINDEX_BTREE_V1:
        if (keys)
            qsort(keys, nkeys, sizeof(*keys), key_by_scaled);
        return walk_btree1(ci, keys, nkeys, sink);
    case H5CHUNKINDEX_BTREE_V2:
        if (keys)
            qsort(keys, nkeys, sizeof(*keys), key_by_scaled);
        return walk_btree2(ci, keys, nkeys, sink);
    case H5CHUNKINDEX_SINGLE:
        return single_locate(ci, keys, nkeys, sink);
    default:
        break;
    }
    for (size_t j = 0; j < nkeys; j++)
        keys[j].linear = linear_index(ci, keys[j].scaled);
    qsort(keys, nkeys, sizeof(*keys), key_by_linear);
    if (ci->info.type == H5CHUNKINDEX_IMPLICIT)
        return implicit_locate(ci, keys, nkeys, sink);
    if (ci->info.type == H5CHUNKINDEX_FIXED_ARRAY)
        return fa_locate(ci, keys, nkeys, sink);
    return ea_locate(ci, keys, nkeys, sink);
}

static int dispatch(struct h5chunkindex *ci, struct key *keys, size_t nkeys, struct sink *sink)
{
    uint64_t before = ci->stats.batches;
    int rc = walk(ci, keys, nkeys, sink);
    ci->stats.last_batches = (unsigned)(ci->stats.batches - before);
    return rc;
}

static struct key *make_keys(struct h5chunkindex *ci, const uint64_t *coords, size_t n)
{
    struct key *keys = malloc((n ? n : 1) * sizeof(*keys));
    if (!keys)
        return NULL;
    for (size_t j = 0; j < n; j++)
        keys[j] = (struct key){coords + j * ci->info.rank, 0, j, ci->info.rank};
    return keys;
}

int h5chunkindex_locate(struct h5chunkindex *ci, const uint64_t *coords, size_t n,
                        struct h5chunkindex_location *out)
{
    if (n > H5CHUNKINDEX_MAX_KEYS || (n && (!coords || !out)))
        return -EINVAL;
    unsigned rank = ci->info.rank;
    for (size_t j = 0; j < n; j++) {
        for (unsigned d = 0; d < rank; d++)
            if (coords[j * rank + d] >= ci->info.grid[d])
                return -EINVAL;
        out[j] = (struct h5chunkindex_location){.allocated = false};
    }
    struct key *keys = make_keys(ci, coords, n);
    if (!keys)
        return -ENOMEM;
    struct sink sink = {.out = out};
    int rc = dispatch(ci, keys, n, &sink);
    free(keys);
    if (rc != 0)
        for (size_t j = 0; j < n; j++)
            out[j] = (struct h5chunkindex_location){.allocated = false};
    return rc;
}

/* Every coordinate of the current extent, for array indexes. */
static int grid_coords(struct h5chunkindex *ci, uint64_t **coords, size_t *n)
{
    unsigned rank = ci->info.rank;
    uint64_t total = 1;
    for (unsigned d = 0; d < rank; d++)
        if (!mul_ok(total, ci->info.grid[d], &total) || total > H5CHUNKINDEX_MAX_LIST ||
            total * rank > H5CHUNKINDEX_MAX_GRID_VALUES)
            return fallback(ci, "too many chunks to list");
    *coords = malloc((total ? total : 1) * rank * sizeof(uint64_t));
    if (!*coords)
        return -ENOMEM;
    uint64_t pos[H5CHUNKINDEX_MAX_RANK] = {0};
    for (uint64_t i = 0; i < total; i++) {
        memcpy(*coords + i * rank, pos, rank * sizeof(uint64_t));
        for (int d = (int)rank - 1; d >= 0; d--) {
            if (++pos[d] < ci->info.grid[d])
                break;
            pos[d] = 0;
        }
    }
    *n = (size_t)total;
    return 0;
}

static int list_by_locate(struct h5chunkindex *ci, struct h5chunkindex_list *out)
{
    uint64_t *coords = NULL;
    size_t n = 0;
    int rc = grid_coords(ci, &coords, &n);
    if (rc)
        return rc;
    struct h5chunkindex_location *locs = malloc((n ? n : 1) * sizeof(*locs));
    rc = locs ? h5chunkindex_locate(ci, coords, n, locs) : -ENOMEM;
    size_t kept = 0;
    unsigned rank = ci->info.rank;
    for (size_t j = 0; j < n && rc == 0; j++) {
        if (!locs[j].allocated)
            continue;
        memmove(coords + kept * rank, coords + j * rank, rank * sizeof(uint64_t));
        locs[kept++] = locs[j];
    }
    if (rc == 0) {
        out->count = kept;
        out->coords = coords;
        out->locations = locs;
        return 0;
    }
    free(coords);
    free(locs);
    return rc;
}

/* A listing with one coordinate twice is inconsistent (a node reached from
 * two parents): refuse it rather than hand out two locations. */
static int list_unique(struct h5chunkindex *ci, struct h5chunkindex_list *l)
{
    struct key *keys = make_keys(ci, l->coords, l->count);
    if (!keys)
        return -ENOMEM;
    qsort(keys, l->count, sizeof(*keys), key_by_scaled);
    int rc = 0;
    for (size_t j = 1; j < l->count && rc == 0; j++)
        if (cmp_scaled(keys[j - 1].scaled, keys[j].scaled, ci->info.rank) == 0)
            rc = damaged(ci, "chunk listed twice");
    free(keys);
    return rc;
}

int h5chunkindex_list_all(struct h5chunkindex *ci, struct h5chunkindex_list *out)
{
    memset(out, 0, sizeof(*out));
    if (ci->info.type != H5CHUNKINDEX_BTREE_V1 && ci->info.type != H5CHUNKINDEX_BTREE_V2)
        return list_by_locate(ci, out);
    struct sink sink = {.list = out};
    int rc = dispatch(ci, NULL, 0, &sink);
    if (rc == 0)
        rc = list_unique(ci, out);
    if (rc != 0)
        h5chunkindex_list_free(out);
    return rc;
}

void h5chunkindex_list_free(struct h5chunkindex_list *list)
{
    if (!list)
        return;
    free(list->coords);
    free(list->locations);
    memset(list, 0, sizeof(*list));
}
