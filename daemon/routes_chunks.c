/*
 * routes_chunks.c - the HDF5 endpoints: GET /v1/meta, GET /v1/chunk and
 * POST /v1/chunks (a batch of keys answered as a stream of frames).
 *
 * A batch is validated whole before the first frame (bad JSON, unknown
 * dataset, any malformed key: one JSON error and no frames).  Its keys are
 * located in one pass (lib/h5index), then frames go out in completion
 * order: chunks never written and compact datasets at once, the rest as
 * lib/remote's batch hands them over, so memory stays bounded by
 * batch_inflight_bytes whatever the number of keys.  Runs on the
 * connection's thread and blocks there.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchreq.h"
#include "chunkkey.h"
#include "fastdecode.h"
#include "http.h"
#include "log.h"
#include "prefetch.h"
#include "routes.h"

#define FRAME_HEADER_BYTES     640 /* a frame's JSON line: key (<= 400) and a few numbers */
#define CHUNKS_RESPONSE_PIECE  (256 * 1024)
#define MAX_SINGLE_CHUNK_BYTES (256ULL * 1024 * 1024)
#define BATCH_RANGE_BYTES      160 /* lib/remote's range, slot and queue entries for one key */

static const char *query(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
}

/* "1", "true": yes; absent, "0", "false": no; else -1. */
static int parse_flag(const char *value)
{
    if (value == NULL || strcmp(value, "0") == 0 || strcmp(value, "false") == 0)
        return 0;
    if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0)
        return 1;
    return -1;
}

/* Opens the remote file and finds the dataset.  0, or -1 with err. */
static int open_dataset(struct server *srv, const char *url, const char *token, const char *path,
                        struct remote_file *file, struct h5dataset *ds, struct h5cd_error *err)
{
    if (url == NULL || url[0] == '\0')
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "missing 'url'");
    if (path == NULL)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "missing 'path'");
    if (remote_open_as(srv->remote, url, token, srv->cfg->h5_prefix_bytes, file, err) < 0)
        return -1;
    return h5index_dataset(srv->h5index, file, path, ds, err);
}

static enum MHD_Result send_json(struct server *srv, struct MHD_Connection *conn, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (text == NULL)
        return http_fail(srv, conn, H5CD_E_INTERNAL, "out of memory");
    size_t len = strlen(text);
    char *line = realloc(text, len + 2);
    if (line == NULL) {
        free(text);
        return http_fail(srv, conn, H5CD_E_INTERNAL, "out of memory");
    }
    memcpy(line + len, "\n", 2);
    return http_send_text(srv, conn, MHD_HTTP_OK, line, "application/json");
}

enum MHD_Result route_meta(struct server *srv, struct MHD_Connection *conn)
{
    const char *url = query(conn, "url");
    const char *path = query(conn, "path");
    if (url == NULL || url[0] == '\0')
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST, "missing query parameter 'url'");
    struct remote_file file;
    struct h5cd_error err = {0};
    if (remote_open_as(srv->remote, url, http_dandi_token(conn), srv->cfg->h5_prefix_bytes, &file,
                       &err) < 0)
        return http_send_error(srv, conn, &err);
    json_t *meta = h5index_meta(srv->h5index, &file, path != NULL ? path : "/", &err);
    if (meta == NULL)
        return http_send_error(srv, conn, &err);
    return send_json(srv, conn, meta);
}

/* The stored bytes of one located chunk, malloc'd.  0, or -1 with err. */
static int read_chunk(struct server *srv, const struct remote_file *file,
                      const struct h5dataset *ds, const struct h5chunk_loc *loc, uint8_t **data,
                      size_t *len, struct h5cd_error *err)
{
    if (ds->layout == H5LAYOUT_COMPACT)
        return h5index_compact_bytes(srv->h5index, file, ds, data, len, err);
    if (!loc->allocated)
        return h5cd_fail(err, H5CD_E_CHUNK_NOT_ALLOCATED, "the chunk was never written");
    if (loc->size > MAX_SINGLE_CHUNK_BYTES)
        return h5cd_fail(err, H5CD_E_TOO_LARGE, "chunk of %" PRIu64 " bytes is too large",
                         loc->size);
    if (!http_charge(srv, loc->size))
        return h5cd_fail(err, H5CD_E_UNAVAILABLE,
                         "the daemon's memory budget is in use by other requests; retry");
    *len = (size_t)loc->size;
    *data = malloc(*len > 0 ? *len : 1);
    if (*data == NULL)
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    if (loc->size > 0 &&
        remote_read_exact(srv->remote, file, loc->offset, loc->size, *data, err) < 0) {
        free(*data);
        *data = NULL;
        return -1;
    }
    return 0;
}

/* Bytes one decoded chunk takes (an upper bound for edge chunks). */
static uint64_t decoded_bytes(const struct h5dataset *ds)
{
    uint64_t n = ds->elem_size;
    for (int d = 0; d < ds->grid.rank; d++)
        n = ds->grid.chunk[d] != 0 && n > UINT64_MAX / ds->grid.chunk[d] ? UINT64_MAX
                                                                         : n * ds->grid.chunk[d];
    return n;
}

/* GET /v1/chunk with decode=1: fetch the stored bytes into the cache, then decode. */
static enum MHD_Result send_decoded_chunk(struct server *srv, struct MHD_Connection *conn,
                                          const struct remote_file *file,
                                          const struct h5dataset *ds, const uint64_t *coords)
{
    struct h5cd_error err = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    struct h5chunk_loc loc = {0};
    int fast = 1;
    if (h5index_check_decode_size(srv->h5index, ds, &err) < 0)
        return http_send_error(srv, conn, &err);
    if (!http_charge(srv, decoded_bytes(ds)))
        return http_fail(srv, conn, H5CD_E_UNAVAILABLE,
                         "the daemon's memory budget is in use by other requests; retry");
    if (ds->layout == H5LAYOUT_CHUNKED) {
        /* Read the stored bytes (into the cache too); decode them here if we can. */
        uint8_t *raw = NULL;
        size_t raw_len = 0;
        if (h5index_locate(srv->h5index, file, ds, coords, 1, &loc, &err) < 0)
            return http_send_error(srv, conn, &err);
        if (loc.allocated && read_chunk(srv, file, ds, &loc, &raw, &raw_len, &err) < 0)
            return http_send_error(srv, conn, &err);
        if (raw != NULL)
            fast = fastdecode_chunk(ds, coords, loc.filter_mask, raw, raw_len, &data, &len);
        free(raw);
        if (fast < 0)
            return http_fail(srv, conn, H5CD_E_INTERNAL, "out of memory");
    } else {
        struct prefetch_progress progress;
        if (prefetch_chunks(srv->h5index, srv->remote, file, ds, coords, 1,
                            srv->cfg->batch_inflight_bytes, NULL, NULL, &progress, &err) < 0)
            return http_send_error(srv, conn, &err);
    }
    bool never_written = ds->layout == H5LAYOUT_CHUNKED && !loc.allocated;
    if (fast != 0 &&
        (never_written
             ? h5index_fill_chunk(srv->h5index, file, ds, coords, &data, &len, &err)
             : h5index_decode_chunk(srv->h5index, file, ds, coords, &data, &len, &err)) < 0)
        return http_send_error(srv, conn, &err);
    /* Values from a worker count against the memory budget until sent. */
    MHD_ContentReaderFreeCallback release = fast != 0 ? h5index_free_values : free;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(len, data, release);
    if (resp == NULL) {
        release(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
    MHD_add_response_header(resp, "X-H5chunkd-Filter-Mask", "0");
    STATS_INC(&srv->stats, chunks_served);
    http_count_sent(srv, len);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result route_chunk(struct server *srv, struct MHD_Connection *conn)
{
    const char *key = query(conn, "key");
    int decode = parse_flag(query(conn, "decode"));
    if (decode < 0)
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST, "decode must be 0 or 1");
    if (key == NULL)
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST, "missing query parameter 'key'");
    struct remote_file file;
    struct h5dataset ds;
    struct h5cd_error err = {0};
    if (open_dataset(srv, query(conn, "url"), http_dandi_token(conn), query(conn, "path"), &file,
                     &ds, &err) < 0)
        return http_send_error(srv, conn, &err);
    uint64_t coords[H5CD_MAX_RANK];
    char why[128];
    if (chunkkey_parse(&ds.grid, key, coords, why, sizeof(why)) < 0)
        return http_fail(srv, conn, H5CD_E_BAD_KEY, "bad key '%.64s': %s", key, why);
    if (decode)
        return send_decoded_chunk(srv, conn, &file, &ds, coords);
    struct h5chunk_loc loc = {0};
    if (ds.layout != H5LAYOUT_COMPACT &&
        h5index_locate(srv->h5index, &file, &ds, coords, 1, &loc, &err) < 0)
        return http_send_error(srv, conn, &err);
    uint8_t *data = NULL;
    size_t len = 0;
    if (read_chunk(srv, &file, &ds, &loc, &data, &len, &err) < 0)
        return http_send_error(srv, conn, &err);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(data);
        return MHD_NO;
    }
    char mask[16];
    snprintf(mask, sizeof(mask), "%u", loc.filter_mask);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
    MHD_add_response_header(resp, "X-H5chunkd-Filter-Mask", mask);
    STATS_INC(&srv->stats, chunks_served);
    http_count_sent(srv, len);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- POST /v1/chunks ---- */

/* One requested key after validation. */
struct batch_key {
    const char *key; /* borrowed from the parsed request */
    uint64_t linear; /* for de-duplication */
    struct h5chunk_loc loc;
};

struct chunks_stream {
    struct server *srv;
    struct batchreq *request; /* keeps the key strings alive */
    uint64_t charged;         /* bytes of the daemon's memory budget this batch holds */
    struct remote_file file;
    struct h5dataset ds;
    struct batch_key *keys;
    size_t nkeys;
    size_t next_immediate; /* keys answered without the batch are emitted first */
    struct remote_batch *batch;
    bool batch_done;
    bool decode;       /* frames carry decoded values instead of stored bytes */
    const char *token; /* the client's DANDI token (the connection's), or NULL */
    /* the frame being written */
    char header[FRAME_HEADER_BYTES];
    size_t header_len, header_pos;
    const uint8_t *payload;
    size_t payload_len, payload_pos;
    uint8_t *owned_payload;
    bool owned_budgeted;     /* owned_payload came from a worker: free with h5index_free_values */
    uint64_t payload_charge; /* budget held by owned_payload */
};

/* Frees the payload this stream owns, then owns `data` (NULL for none). */
static void own_payload(struct chunks_stream *cs, uint8_t *data, bool budgeted)
{
    if (cs->owned_budgeted)
        h5index_free_values(cs->owned_payload);
    else
        free(cs->owned_payload);
    cs->owned_payload = data;
    cs->owned_budgeted = budgeted;
}

static void chunks_stream_free(void *cls)
{
    struct chunks_stream *cs = cls;
    remote_batch_free(cs->batch);
    own_payload(cs, NULL, false);
    free(cs->keys);
    batchreq_free(cs->request);
    membudget_release(cs->srv->budget, cs->charged + cs->payload_charge);
    free(cs);
}

static void frame_ok(struct chunks_stream *cs, const struct batch_key *k, const uint8_t *data,
                     size_t len)
{
    cs->header_len =
        (size_t)snprintf(cs->header, sizeof(cs->header),
                         "{\"key\":\"%s\",\"status\":200,\"length\":%zu,\"filter_mask\":%u}\n",
                         k->key, len, k->loc.filter_mask);
    cs->header_pos = 0;
    cs->payload = data;
    cs->payload_len = len;
    cs->payload_pos = 0;
    STATS_INC(&cs->srv->stats, chunks_served);
    http_count_sent(cs->srv, len);
}

static void frame_error(struct chunks_stream *cs, const struct batch_key *k, enum h5cd_errcode code)
{
    cs->header_len =
        (size_t)snprintf(cs->header, sizeof(cs->header),
                         "{\"key\":\"%s\",\"status\":%d,\"length\":0,\"error\":\"%s\"}\n", k->key,
                         h5cd_errcode_status(code), h5cd_errcode_name(code));
    cs->header_pos = 0;
    cs->payload = NULL;
    cs->payload_len = 0;
    cs->payload_pos = 0;
}

/* Makes the budget held for the frame's payload n bytes.  A stream already
 * under way cannot be refused, so the charge is forced: one chunk at a time. */
static void charge_payload(struct chunks_stream *cs, uint64_t n)
{
    membudget_release(cs->srv->budget, cs->payload_charge);
    membudget_force(cs->srv->budget, n);
    cs->payload_charge = n;
}

/* The key's values from a worker: its fill value when the index says it was never written. */
static int decode_key(struct chunks_stream *cs, const struct batch_key *k, const uint64_t *coords,
                      uint8_t **data, size_t *len, struct h5cd_error *err)
{
    struct h5index *index = cs->srv->h5index;
    if (cs->ds.layout == H5LAYOUT_CHUNKED && !k->loc.allocated)
        return h5index_fill_chunk(index, &cs->file, &cs->ds, coords, data, len, err);
    return h5index_decode_chunk(index, &cs->file, &cs->ds, coords, data, len, err);
}

/* Replaces the frame's payload by the key's decoded values (or an error frame). */
static void frame_decoded(struct chunks_stream *cs, const struct batch_key *k)
{
    uint64_t coords[H5CD_MAX_RANK];
    char why[8];
    struct h5cd_error err = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    own_payload(cs, NULL, false);
    if (chunkkey_parse(&cs->ds.grid, k->key, coords, why, sizeof(why)) < 0 ||
        decode_key(cs, k, coords, &data, &len, &err) < 0) {
        STATS_INC(&cs->srv->stats, errors);
        frame_error(cs, k, err.code != H5CD_OK ? err.code : H5CD_E_INTERNAL);
        return;
    }
    own_payload(cs, data, true);
    charge_payload(cs, len);
    frame_ok(cs, k, data, len);
}

/* True for keys answered without fetching: never written, or a compact dataset's chunk. */
static bool is_immediate(const struct chunks_stream *cs, const struct batch_key *k)
{
    return cs->ds.layout == H5LAYOUT_COMPACT || !k->loc.allocated || k->loc.size == 0;
}

/* Prepares the next immediate frame.  False when there is none left. */
static bool next_immediate_frame(struct chunks_stream *cs)
{
    while (cs->next_immediate < cs->nkeys) {
        struct batch_key *k = &cs->keys[cs->next_immediate++];
        if (!is_immediate(cs, k))
            continue;
        if (cs->decode) {
            frame_decoded(cs, k);
            return true;
        }
        if (cs->ds.layout != H5LAYOUT_COMPACT) {
            if (k->loc.allocated)
                frame_ok(cs, k, NULL, 0);
            else
                frame_error(cs, k, H5CD_E_CHUNK_NOT_ALLOCATED);
            return true;
        }
        struct h5cd_error err = {0};
        uint8_t *data = NULL;
        size_t len = 0;
        own_payload(cs, NULL, false);
        if (h5index_compact_bytes(cs->srv->h5index, &cs->file, &cs->ds, &data, &len, &err) < 0) {
            frame_error(cs, k, err.code);
            return true;
        }
        own_payload(cs, data, false);
        charge_payload(cs, len);
        frame_ok(cs, k, data, len);
        return true;
    }
    return false;
}

/* Waits for the batch's next chunk and prepares its frame.  False when it is exhausted. */
static bool next_batch_frame(struct chunks_stream *cs)
{
    if (cs->batch == NULL || cs->batch_done)
        return false;
    struct remote_batch_result res;
    int rc = remote_batch_next(cs->batch, &res);
    if (rc <= 0) {
        if (rc < 0)
            log_error("msg=\"batch failed\" errno=%d", -rc);
        cs->batch_done = true;
        return false;
    }
    const struct batch_key *k = res.tag;
    if (res.data == NULL) {
        STATS_INC(&cs->srv->stats, errors);
        frame_error(cs, k, res.error.code);
    } else if (cs->decode) {
        uint64_t coords[H5CD_MAX_RANK];
        char why[8];
        uint8_t *data = NULL;
        size_t len = 0;
        int fast = chunkkey_parse(&cs->ds.grid, k->key, coords, why, sizeof(why)) == 0
                       ? fastdecode_chunk(&cs->ds, coords, k->loc.filter_mask, res.data,
                                          (size_t)res.length, &data, &len)
                       : 1;
        if (fast == 0) {
            own_payload(cs, data, false);
            charge_payload(cs, len);
            frame_ok(cs, k, data, len);
        } else {
            frame_decoded(cs, k); /* libhdf5 decides, from the now cached bytes */
        }
    } else {
        frame_ok(cs, k, res.data, (size_t)res.length);
    }
    return true;
}

/* Whether the batch's next chunk is there without waiting for upstream. */
static bool batch_frame_ready(struct chunks_stream *cs)
{
    return cs->batch != NULL && !cs->batch_done && remote_batch_has_ready(cs->batch);
}

static ssize_t chunks_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct chunks_stream *cs = cls;
    size_t written = 0;
    while (written < max) {
        if (cs->header_pos < cs->header_len) {
            size_t n = cs->header_len - cs->header_pos;
            n = n < max - written ? n : max - written;
            memcpy(buf + written, cs->header + cs->header_pos, n);
            cs->header_pos += n;
            written += n;
            continue;
        }
        if (cs->payload_pos < cs->payload_len) {
            size_t n = cs->payload_len - cs->payload_pos;
            n = n < max - written ? n : max - written;
            memcpy(buf + written, cs->payload + cs->payload_pos, n);
            cs->payload_pos += n;
            written += n;
            continue;
        }
        if (next_immediate_frame(cs))
            continue;
        /* Frames already at hand go out together (a client parses one HTTP chunk
         * per call, not one per frame); send what we have before waiting. */
        if (written > 0 && !batch_frame_ready(cs))
            break;
        if (!next_batch_frame(cs)) {
            if (written > 0)
                break;
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
    }
    return (ssize_t)written;
}

static int cmp_keys(const void *a, const void *b)
{
    const struct batch_key *ka = a, *kb = b;
    return ka->linear < kb->linear ? -1 : ka->linear > kb->linear;
}

/* Budget bytes a batch holds per key: its entry, coordinates, location,
 * and the batch's range and slot bookkeeping in lib/remote. */
static uint64_t per_key_bytes(int rank)
{
    return sizeof(struct batch_key) + sizeof(struct h5chunk_loc) +
           (uint64_t)(rank > 0 ? rank : 1) * sizeof(uint64_t) + BATCH_RANGE_BYTES;
}

/* Parses and de-duplicates every key; any bad key fails the whole request. */
static int parse_keys(struct chunks_stream *cs, struct h5cd_error *err, uint64_t **coords_out)
{
    size_t n = batchreq_nkeys(cs->request);
    int rank = cs->ds.grid.rank;
    uint64_t charge = (uint64_t)n * per_key_bytes(rank);
    if (!membudget_acquire(cs->srv->budget, charge, H5CD_BUDGET_WAIT_MS))
        return h5cd_fail(err, H5CD_E_UNAVAILABLE,
                         "the daemon's memory budget is in use by other requests; retry");
    cs->charged += charge;
    cs->keys = calloc(n > 0 ? n : 1, sizeof(*cs->keys));
    uint64_t *coords = calloc(n > 0 ? n * (size_t)(rank > 0 ? rank : 1) : 1, sizeof(*coords));
    if (cs->keys == NULL || coords == NULL) {
        free(coords);
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const char *key = batchreq_key(cs->request, i);
        char why[128];
        uint64_t c[H5CD_MAX_RANK];
        if (chunkkey_parse(&cs->ds.grid, key, c, why, sizeof(why)) < 0) {
            free(coords);
            return h5cd_fail(err, H5CD_E_BAD_KEY, "bad key '%.64s': %s", key, why);
        }
        cs->keys[i].key = key;
        cs->keys[i].linear = chunkkey_linear(&cs->ds.grid, c);
    }
    qsort(cs->keys, n, sizeof(*cs->keys), cmp_keys);
    size_t unique = 0;
    for (size_t i = 0; i < n; i++)
        if (unique == 0 || cs->keys[unique - 1].linear != cs->keys[i].linear)
            cs->keys[unique++] = cs->keys[i];
    cs->nkeys = unique;
    /* Re-derive coordinates in sorted order (neighbouring keys coalesce best). */
    for (size_t i = 0; i < unique; i++) {
        char why[8];
        chunkkey_parse(&cs->ds.grid, cs->keys[i].key, coords + i * (size_t)rank, why, sizeof(why));
    }
    *coords_out = coords;
    return 0;
}

/* Queues every chunk that must be read for the batch. */
static int plan_batch(struct chunks_stream *cs, struct h5cd_error *err)
{
    if (remote_batch_new(cs->srv->remote, &cs->file, cs->srv->cfg->batch_inflight_bytes,
                         &cs->batch) < 0)
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    for (size_t i = 0; i < cs->nkeys; i++) {
        struct batch_key *k = &cs->keys[i];
        if (is_immediate(cs, k))
            continue;
        int rc = remote_batch_add(cs->batch, k->loc.offset, k->loc.size, NULL, k);
        if (rc == -ERANGE) /* the file's own index points past its end */
            return h5cd_fail(err, H5CD_E_DAMAGED_FILE,
                             "chunk %s lies outside the remote file: the file is damaged", k->key);
        if (rc < 0)
            return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    }
    /* Upstream requests go out now: the never-written keys' frames (answered first, some
     * through the worker) are made while the bytes travel. */
    if (remote_batch_start(cs->batch) < 0)
        return h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
    return 0;
}

static int prepare_stream(struct chunks_stream *cs, struct h5cd_error *err)
{
    if (batchreq_finish(cs->request, err) < 0)
        return -1;
    cs->decode = batchreq_decode(cs->request);
    if (open_dataset(cs->srv, batchreq_url(cs->request), cs->token, batchreq_path(cs->request),
                     &cs->file, &cs->ds, err) < 0)
        return -1;
    if (cs->decode && h5index_check_decode_size(cs->srv->h5index, &cs->ds, err) < 0)
        return -1;
    uint64_t *coords = NULL;
    if (parse_keys(cs, err, &coords) < 0)
        return -1;
    int rc = 0;
    if (cs->ds.layout != H5LAYOUT_COMPACT) {
        struct h5chunk_loc *locs = calloc(cs->nkeys > 0 ? cs->nkeys : 1, sizeof(*locs));
        if (locs == NULL)
            rc = h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
        else
            rc = h5index_locate(cs->srv->h5index, &cs->file, &cs->ds, coords, cs->nkeys, locs, err);
        for (size_t i = 0; rc == 0 && i < cs->nkeys; i++)
            cs->keys[i].loc = locs[i];
        free(locs);
    }
    free(coords);
    return rc < 0 ? -1 : plan_batch(cs, err);
}

enum MHD_Result route_chunks(struct server *srv, struct MHD_Connection *conn,
                             struct batchreq *request)
{
    struct chunks_stream *cs = calloc(1, sizeof(*cs));
    if (cs == NULL) {
        batchreq_free(request);
        return http_fail(srv, conn, H5CD_E_INTERNAL, "out of memory");
    }
    cs->srv = srv;
    cs->token = http_dandi_token(conn);
    cs->request = request;
    struct h5cd_error err = {0};
    if (prepare_stream(cs, &err) < 0) {
        chunks_stream_free(cs);
        return http_send_error(srv, conn, &err);
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, CHUNKS_RESPONSE_PIECE, chunks_stream_read, cs, chunks_stream_free);
    if (resp == NULL) {
        chunks_stream_free(cs);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-h5chunkd-frames");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}
