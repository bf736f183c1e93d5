/*
 * fuzz_batchreq.c - libFuzzer harness for the streaming parser of the
 * POST /v1/chunks body (lib/batchreq.c).  Input: one byte choosing the
 * piece size the body is fed in, one byte choosing the memory budget,
 * then the body.  The body is parsed twice, once in a single piece and
 * once in pieces, each under its own budget of the same size.
 * Properties: both parses agree (outcome, error code, fields, keys); an
 * accepted request has url, path and at most max_keys NUL-free keys of
 * bounded length; a refused one has one of the codes the route maps;
 * every byte charged to the budget is released by batchreq_free.
 */
#include "batchreq.h"
#include "chunkkey.h"
#include "fuzz_common.h"

#define FUZZ_MAX_KEYS 64

struct outcome {
    struct batchreq *req;
    struct membudget *mb;
    int rc;
    struct h5cd_error err;
};

static void parse(struct outcome *o, const char *body, size_t len, size_t piece, uint64_t limit)
{
    o->mb = membudget_new(limit);
    FUZZ_ASSERT(o->mb != NULL);
    o->req = batchreq_new(FUZZ_MAX_KEYS, o->mb, 0);
    FUZZ_ASSERT(o->req != NULL);
    memset(&o->err, 0, sizeof(o->err));
    int fed = 0;
    for (size_t done = 0; done < len && fed == 0; done += piece) {
        size_t n = len - done < piece ? len - done : piece;
        fed = batchreq_feed(o->req, body + done, n);
        FUZZ_ASSERT(fed == 0 || fed == -1);
    }
    o->rc = batchreq_finish(o->req, &o->err);
    FUZZ_ASSERT(o->rc == 0 || o->rc == -1);
    FUZZ_ASSERT(fed == 0 || o->rc == -1); /* a refused piece refuses the body */
}

static void check_accepted(const struct batchreq *r)
{
    FUZZ_ASSERT(batchreq_url(r) != NULL && batchreq_path(r) != NULL);
    size_t n = batchreq_nkeys(r);
    FUZZ_ASSERT(n <= FUZZ_MAX_KEYS);
    for (size_t i = 0; i < n; i++) {
        const char *k = batchreq_key(r, i);
        FUZZ_ASSERT(k != NULL && strlen(k) <= H5CD_MAX_KEY_BYTES);
    }
}

static void check_same(const struct outcome *a, const struct outcome *b)
{
    FUZZ_ASSERT(a->rc == b->rc);
    if (a->rc != 0) {
        FUZZ_ASSERT(a->err.code == b->err.code);
        return;
    }
    FUZZ_ASSERT(strcmp(batchreq_url(a->req), batchreq_url(b->req)) == 0);
    FUZZ_ASSERT(strcmp(batchreq_path(a->req), batchreq_path(b->req)) == 0);
    FUZZ_ASSERT(batchreq_decode(a->req) == batchreq_decode(b->req));
    FUZZ_ASSERT(batchreq_nkeys(a->req) == batchreq_nkeys(b->req));
    for (size_t i = 0; i < batchreq_nkeys(a->req); i++)
        FUZZ_ASSERT(strcmp(batchreq_key(a->req, i), batchreq_key(b->req, i)) == 0);
}

static void finish(struct outcome *o)
{
    if (o->rc == 0) {
        check_accepted(o->req);
    } else {
        enum h5cd_errcode c = o->err.code;
        FUZZ_ASSERT(c == H5CD_E_BAD_REQUEST || c == H5CD_E_BAD_KEY || c == H5CD_E_TOO_LARGE ||
                    c == H5CD_E_UNAVAILABLE);
        FUZZ_ASSERT(o->err.message[0] != '\0');
    }
    batchreq_free(o->req);
    FUZZ_ASSERT(membudget_used(o->mb) == 0);
    membudget_free(o->mb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    size_t piece = 1 + (size_t)fuzz_take(&in, 1) % 64;
    uint64_t budget_choice = fuzz_take(&in, 1);
    /* Mostly ample; sometimes a few KiB, so refusals for the budget happen. */
    uint64_t limit = budget_choice < 32 ? 1024 * (1 + budget_choice) : UINT64_C(1) << 30;
    size_t len;
    char *body = fuzz_rest_string(&in, &len);

    struct outcome whole, pieces;
    parse(&whole, body, len, len > 0 ? len : 1, limit);
    parse(&pieces, body, len, piece, limit);
    check_same(&whole, &pieces);
    finish(&whole);
    finish(&pieces);
    free(body);
    return 0;
}
