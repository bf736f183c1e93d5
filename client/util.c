/*
 * util.c - h5chunk's pure helpers: chunk key syntax, base64url, byte
 * counts, durations and the progress line.  No I/O and no global state,
 * so any of them can be unit-tested directly.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5chunk.h"

bool h5c_key_valid(const char *key)
{
    size_t len = 0;
    bool want_digit = true; /* at the start and after each dot */
    if (key == NULL)
        return false;
    for (const char *p = key; *p != '\0'; p++, len++) {
        if (len >= H5C_MAX_KEY_BYTES)
            return false;
        if (*p >= '0' && *p <= '9') {
            want_digit = false;
        } else if (*p == '.' && !want_digit) {
            want_digit = true;
        } else {
            return false;
        }
    }
    return len > 0 && !want_digit;
}

size_t h5c_base64url_len(size_t len)
{
    return len / 3 * 4 + (len % 3 == 0 ? 0 : len % 3 + 1);
}

int h5c_base64url(const uint8_t *in, size_t len, char *out, size_t cap)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if (len > (SIZE_MAX - 4) / 4 * 3 || cap < h5c_base64url_len(len) + 1)
        return -ENOSPC;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
    return 0;
}

const char *h5c_sanitize(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    if (cap == 0)
        return dst;
    for (; src != NULL && src[n] != '\0' && n + 1 < cap; n++) {
        unsigned char c = (unsigned char)src[n];
        dst[n] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    dst[n] = '\0';
    return dst;
}

const char *h5c_format_bytes(uint64_t bytes, char *buf, size_t cap)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int n;
    if (bytes < 1024) {
        n = snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
    } else {
        double v = (double)bytes / 1024.0;
        size_t u = 0;
        while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
            v /= 1024.0;
            u++;
        }
        n = snprintf(buf, cap, "%.1f %s", v, units[u]);
    }
    if (n < 0 && cap > 0)
        buf[0] = '\0';
    return buf;
}

int h5c_parse_duration(const char *text, uint64_t *ms)
{
    static const struct {
        const char *suffix;
        uint64_t ms;
    } units[] = {{"", 1000}, {"s", 1000}, {"ms", 1}, {"m", 60000}, {"h", 3600000}};
    if (text == NULL || text[0] < '0' || text[0] > '9')
        return -EINVAL;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text)
        return -EINVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].suffix) != 0)
            continue;
        if (v == 0 || v > H5C_MAX_TIMEOUT_MS / units[i].ms)
            return -EINVAL;
        *ms = v * units[i].ms;
        return 0;
    }
    return -EINVAL;
}

int h5c_progress_percent(const struct h5c_progress *p)
{
    uint64_t done, total;
    if (p->bytes_total > 0) {
        done = p->bytes_done;
        total = p->bytes_total;
    } else if (p->chunks_total > 0) {
        done = p->chunks_done;
        total = p->chunks_total;
    } else {
        return -1;
    }
    if (done >= total)
        return 100;
    /* done < total, so done / total < 1; divide first when 100 * done could overflow */
    uint64_t pct = done > UINT64_MAX / 100 ? done / (total / 100) : done * 100 / total;
    return pct > 99 ? 99 : (int)pct; /* 100 only when done */
}

/* Appends to buf at *used; a part that does not fit is left out whole. */
static void append(char *buf, size_t cap, size_t *used, const char *text)
{
    size_t len = strlen(text);
    if (*used + len + 1 > cap)
        return;
    memcpy(buf + *used, text, len + 1);
    *used += len;
}

const char *h5c_progress_line(const struct h5c_progress *p, unsigned width, char *buf, size_t cap)
{
    char text[160], a[32], b[32], part[80];
    size_t used = 0;
    int pct = h5c_progress_percent(p);
    int n;

    if (cap == 0)
        return buf;
    buf[0] = '\0';
    text[0] = '\0';
    n = pct < 0 ? snprintf(part, sizeof(part), "  ?%%")
                : snprintf(part, sizeof(part), "%3d%%", pct);
    if (n > 0)
        append(text, sizeof(text), &used, part);
    if (p->bytes_total > 0)
        n = snprintf(part, sizeof(part), "  %s / %s", h5c_format_bytes(p->bytes_done, a, sizeof(a)),
                     h5c_format_bytes(p->bytes_total, b, sizeof(b)));
    else
        n = snprintf(part, sizeof(part), "  %s", h5c_format_bytes(p->bytes_done, a, sizeof(a)));
    if (n > 0 && (size_t)n < sizeof(part))
        append(text, sizeof(text), &used, part);
    if (p->chunks_total > 0)
        n = snprintf(part, sizeof(part), "  %llu/%llu chunks", (unsigned long long)p->chunks_done,
                     (unsigned long long)p->chunks_total);
    else
        n = snprintf(part, sizeof(part), "  %llu chunks", (unsigned long long)p->chunks_done);
    if (n > 0 && (size_t)n < sizeof(part))
        append(text, sizeof(text), &used, part);

    /* "[" bar "] " text: a bar of 10..50 cells when the width leaves room for one */
    size_t bar = 0;
    if (width > used + 3 + 10)
        bar = width - used - 3 < 50 ? width - used - 3 : 50;
    size_t out = 0;
    if (bar > 0 && bar + 3 + used < cap) {
        size_t full = pct < 0 ? 0 : bar * (size_t)pct / 100;
        buf[out++] = '[';
        for (size_t i = 0; i < bar; i++)
            buf[out++] = i < full ? '#' : '.';
        buf[out++] = ']';
        buf[out++] = ' ';
    }
    size_t tlen = used;
    if (width > 0 && out + tlen > width)
        tlen = width > out ? width - out : 0;
    if (out + tlen + 1 > cap)
        tlen = cap - out - 1;
    memcpy(buf + out, text, tlen);
    buf[out + tlen] = '\0';
    return buf;
}
