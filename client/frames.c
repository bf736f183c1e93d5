/*
 * frames.c - a push parser for the application/x-h5chunkd-frames stream
 * of POST /v1/chunks: per frame, a JSON header line, then exactly
 * "length" payload bytes.  Bytes may arrive in any split; payloads are
 * handed on as they come and never buffered, so memory stays at one header
 * line whatever the chunk sizes.  Single-threaded.  It must never trust a
 * header: its line is bounded, its length checked and its key re-validated
 * (the caller turns keys into file names).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "h5chunk.h"

void h5c_frames_init(struct h5c_frames *p, const struct h5c_frames_cb *cb)
{
    memset(p, 0, sizeof(*p));
    p->cb = *cb;
}

int h5c_frames_fail(struct h5c_frames *p, const char *fmt, ...)
{
    if (!p->failed) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(p->err, sizeof(p->err), fmt, ap);
        va_end(ap);
        if (n < 0)
            p->err[0] = '\0';
    }
    p->failed = true;
    return -1;
}

static int header_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int header_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        if (n < 0)
            err[0] = '\0';
    }
    return -1;
}

/* Copies a JSON string into dst (bounded), replacing control characters. */
static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    for (; src[n] != '\0' && n + 1 < cap; n++) {
        unsigned char c = (unsigned char)src[n];
        dst[n] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    dst[n] = '\0';
}

/* "error" is a code string, or an object {"code", "message"} like a request error. */
static void take_error(json_t *hdr, struct h5c_frame *f)
{
    json_t *e = json_object_get(hdr, "error");
    json_t *m = json_object_get(hdr, "message");
    if (json_is_object(e)) {
        m = json_object_get(e, "message");
        e = json_object_get(e, "code");
    }
    if (json_is_string(e))
        copy_text(f->error, sizeof(f->error), json_string_value(e));
    if (json_is_string(m))
        copy_text(f->message, sizeof(f->message), json_string_value(m));
}

int h5c_frame_header_parse(const char *line, size_t len, struct h5c_frame *f, char *err,
                           size_t errlen)
{
    json_error_t jerr;
    memset(f, 0, sizeof(*f));
    f->filter_mask = -1;
    json_t *hdr = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (hdr == NULL)
        return header_errf(err, errlen, "frame header is not JSON: %s", jerr.text);
    int rc = -1;
    json_t *key = json_object_get(hdr, "key");
    json_t *status = json_object_get(hdr, "status");
    json_t *length = json_object_get(hdr, "length");
    json_t *mask = json_object_get(hdr, "filter_mask");
    if (!json_is_object(hdr)) {
        header_errf(err, errlen, "frame header is not a JSON object");
    } else if (!json_is_string(key) || !h5c_key_valid(json_string_value(key))) {
        header_errf(err, errlen, "frame header without a valid chunk key");
    } else if (!json_is_integer(status) || json_integer_value(status) < 100 ||
               json_integer_value(status) > 599) {
        header_errf(err, errlen, "frame header without a valid status");
    } else if (!json_is_integer(length) || json_integer_value(length) < 0 ||
               (unsigned long long)json_integer_value(length) > H5C_MAX_FRAME_PAYLOAD) {
        header_errf(err, errlen, "frame header without a valid length");
    } else if (mask != NULL && (!json_is_integer(mask) || json_integer_value(mask) < 0)) {
        header_errf(err, errlen, "frame header with an invalid filter_mask");
    } else {
        memcpy(f->key, json_string_value(key), strlen(json_string_value(key)) + 1);
        f->status = (int)json_integer_value(status);
        f->length = (uint64_t)json_integer_value(length);
        if (mask != NULL)
            f->filter_mask = json_integer_value(mask);
        take_error(hdr, f);
        rc = 0;
    }
    json_decref(hdr);
    return rc;
}

/* A complete header line is in p->line: start its frame. */
static int start_frame(struct h5c_frames *p)
{
    char why[256];
    if (h5c_frame_header_parse(p->line, p->line_len, &p->cur, why, sizeof(why)) < 0)
        return h5c_frames_fail(p, "frame %llu: %s", (unsigned long long)p->nframes + 1, why);
    p->line_len = 0;
    p->nframes++;
    if (p->cb.begin != NULL && p->cb.begin(p->cb.ud, &p->cur) < 0)
        return h5c_frames_fail(p, "frame %llu rejected", (unsigned long long)p->nframes);
    p->left = p->cur.length;
    p->in_payload = p->left > 0;
    if (!p->in_payload && p->cb.end != NULL && p->cb.end(p->cb.ud, &p->cur) < 0)
        return h5c_frames_fail(p, "frame %llu rejected", (unsigned long long)p->nframes);
    return 0;
}

int h5c_frames_feed(struct h5c_frames *p, const uint8_t *data, size_t len)
{
    if (p->failed)
        return -1;
    while (len > 0) {
        if (p->in_payload) {
            size_t n = p->left < len ? (size_t)p->left : len;
            if (p->cb.data != NULL && p->cb.data(p->cb.ud, &p->cur, data, n) < 0)
                return h5c_frames_fail(p, "frame %llu rejected", (unsigned long long)p->nframes);
            data += n;
            len -= n;
            p->left -= n;
            if (p->left == 0) {
                p->in_payload = false;
                if (p->cb.end != NULL && p->cb.end(p->cb.ud, &p->cur) < 0)
                    return h5c_frames_fail(p, "frame %llu rejected",
                                           (unsigned long long)p->nframes);
            }
            continue;
        }
        const uint8_t *nl = memchr(data, '\n', len);
        size_t n = nl != NULL ? (size_t)(nl - data) : len;
        /* the line and its newline must fit in H5C_MAX_FRAME_HEADER */
        if (p->line_len + n + 1 > sizeof(p->line))
            return h5c_frames_fail(p, "frame header longer than %d bytes", H5C_MAX_FRAME_HEADER);
        memcpy(p->line + p->line_len, data, n);
        p->line_len += n;
        if (nl == NULL)
            return 0;
        data += n + 1;
        len -= n + 1;
        if (start_frame(p) < 0)
            return -1;
    }
    return 0;
}

int h5c_frames_finish(struct h5c_frames *p)
{
    if (p->failed)
        return -1;
    if (p->in_payload)
        return h5c_frames_fail(p, "the stream ended inside chunk %s (%llu of %llu bytes missing)",
                               p->cur.key, (unsigned long long)p->left,
                               (unsigned long long)p->cur.length);
    if (p->line_len > 0)
        return h5c_frames_fail(p, "the stream ended inside a frame header");
    return 0;
}
