/*
 * routes_file.c - GET and HEAD /v1/file?url=U: a byte-range mirror of a
 * remote file served through the cache.
 *
 * The first window of the answer is read before the status line is sent,
 * so the common failures (bad URL, upstream down, file gone) reach the
 * client as a JSON error.  The rest streams one window at a time; a failure
 * after the status line was sent can only cut the connection short, which
 * a client sees as a short body rather than as wrong bytes.  Runs on the
 * connection's thread and blocks there.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "httprange.h"
#include "log.h"
#include "routes.h"

/* Largest piece handed to libmicrohttpd per callback: one default cache block. */
#define FILE_RESPONSE_PIECE (256 * 1024)

struct file_stream {
    struct server *srv;
    struct remote_file file;
    uint64_t start;  /* first byte of the response in the remote file */
    uint64_t length; /* bytes in the response */
    uint8_t *window; /* bytes [win_pos, win_pos + win_len) of the response */
    uint64_t win_pos;
    size_t win_len;
    size_t win_cap;
};

static void stream_free(void *cls)
{
    struct file_stream *fs = cls;
    free(fs->window);
    free(fs);
}

/* Reads the window that starts at response position pos. */
static int stream_fill(struct file_stream *fs, uint64_t pos, struct h5cd_error *err)
{
    /* A HEAD answer has no window; should libmicrohttpd ever ask it for body
     * bytes, it must get bytes or an error, never the 0 that means "call again". */
    if (fs->window == NULL) {
        uint64_t window = fs->srv->cfg->read_window;
        fs->win_cap = (size_t)(fs->length < window ? fs->length : window);
        fs->window = fs->win_cap > 0 ? malloc(fs->win_cap) : NULL;
        if (fs->window == NULL) {
            h5cd_fail(err, H5CD_E_INTERNAL, "out of memory");
            return -1;
        }
    }
    uint64_t left = fs->length - pos;
    size_t want = left < fs->win_cap ? (size_t)left : fs->win_cap;
    if (remote_read(fs->srv->remote, &fs->file, fs->start + pos, want, fs->window, err) < 0)
        return -1;
    fs->win_pos = pos;
    fs->win_len = want;
    return 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct file_stream *fs = cls;
    if (pos >= fs->length)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (pos < fs->win_pos || pos >= fs->win_pos + fs->win_len) {
        struct h5cd_error err = {0};
        if (stream_fill(fs, pos, &err) < 0) {
            STATS_INC(&fs->srv->stats, errors);
            log_warn("msg=\"mirror read failed mid-response\" code=%s reason=\"%s\"",
                     h5cd_errcode_name(err.code), err.message);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t off = (size_t)(pos - fs->win_pos);
    size_t n = fs->win_len - off < max ? fs->win_len - off : max;
    memcpy(buf, fs->window + off, n);
    http_count_sent(fs->srv, n);
    return (ssize_t)n;
}

static enum MHD_Result send_unsatisfiable(struct server *srv, struct MHD_Connection *conn,
                                          uint64_t size)
{
    STATS_INC(&srv->stats, errors);
    char *body = strdup("{\"error\":{\"code\":\"range_not_satisfiable\","
                        "\"message\":\"the range starts past the end of the file\"}}\n");
    if (body == NULL)
        return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    char crange[64];
    snprintf(crange, sizeof(crange), "bytes */%" PRIu64, size);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, crange);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_RANGE_NOT_SATISFIABLE, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result queue_stream(struct MHD_Connection *conn, struct file_stream *fs,
                                    bool ranged, bool head)
{
    struct MHD_Response *resp = MHD_create_response_from_callback(fs->length, FILE_RESPONSE_PIECE,
                                                                  stream_read, fs, stream_free);
    if (resp == NULL) {
        stream_free(fs);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    if (strncmp(fs->file.validator, "etag:", 5) == 0)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, fs->file.validator + 5);
    /* A whole-file answer ends its connection.  fsspec (HTTPFileSystem.exists,
     * run by fsspec.open on any URL with a '?') GETs the file, reads only the
     * status and lets the response go; aiohttp before 3.11 then pools the
     * connection with reading paused once the unread body passed its 128 KiB
     * high-water mark, and the next request on it waits for an answer that
     * sits unread in the client's socket (aio-libs/aiohttp#10169).  Closing
     * costs a whole-file reader one reconnect; range readers keep alive. */
    if (!ranged && !head && fs->length > 0)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    unsigned status = MHD_HTTP_OK;
    if (ranged) {
        char crange[96];
        snprintf(crange, sizeof(crange), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, fs->start,
                 fs->start + fs->length - 1, fs->file.size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, crange);
        status = MHD_HTTP_PARTIAL_CONTENT;
    }
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result route_file(struct server *srv, struct MHD_Connection *conn, bool head)
{
    const char *url = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "url");
    if (url == NULL || url[0] == '\0')
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST, "missing query parameter 'url'");
    const char *range = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
    if (range != NULL && strlen(range) > H5CD_MAX_RANGE_HEADER_BYTES)
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST, "Range header too long");

    struct file_stream *fs = calloc(1, sizeof(*fs));
    if (fs == NULL)
        return http_fail(srv, conn, H5CD_E_INTERNAL, "out of memory");
    fs->srv = srv;
    struct h5cd_error err = {0};
    if (remote_open_as(srv->remote, url, http_dandi_token(conn), 0, &fs->file, &err) < 0) {
        free(fs);
        return http_send_error(srv, conn, &err);
    }
    int rc = httprange_parse(range, fs->file.size, &fs->start, &fs->length);
    if (rc == -EINVAL) {
        free(fs);
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST,
                         "Range must be one range: bytes=A-B, bytes=A- or bytes=-N");
    }
    if (rc == -ERANGE) {
        uint64_t size = fs->file.size;
        free(fs);
        return send_unsatisfiable(srv, conn, size);
    }
    bool ranged = rc == 0;
    if (!head && fs->length > 0) {
        uint64_t window = srv->cfg->read_window;
        fs->win_cap = (size_t)(fs->length < window ? fs->length : window);
        fs->window = malloc(fs->win_cap);
        if (fs->window == NULL) {
            stream_free(fs);
            return http_fail(srv, conn, H5CD_E_INTERNAL, "out of memory");
        }
        if (stream_fill(fs, 0, &err) < 0) {
            stream_free(fs);
            return http_send_error(srv, conn, &err);
        }
    }
    return queue_stream(conn, fs, ranged, head);
}
