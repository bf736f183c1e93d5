/*
 * workerproto.c - framing of the daemon <-> worker messages: whole frames
 * out, exact reads in, every wait bounded by a deadline (see workerproto.h).
 */
#include "workerproto.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

uint64_t wp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for `events` or the deadline passes.  0 or -1 with errno. */
static int wait_ready(int fd, short events, uint64_t deadline_ms)
{
    for (;;) {
        int timeout = -1;
        if (deadline_ms != 0) {
            uint64_t now = wp_now_ms();
            if (now >= deadline_ms) {
                errno = ETIMEDOUT;
                return -1;
            }
            uint64_t left = deadline_ms - now;
            timeout = left > 60000 ? 60000 : (int)left;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, timeout);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n > 0)
            return 0;
    }
}

/* Never blocks past the deadline: a peer that stops reading cannot hold us. */
static int write_all(int fd, const uint8_t *p, size_t len, uint64_t deadline_ms)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_ready(fd, POLLOUT, deadline_ms) < 0)
                return -1;
            continue;
        }
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int wp_send(int fd, enum wp_type type, const void *a, size_t alen, const void *b, size_t blen,
            uint64_t deadline_ms)
{
    struct wp_header hdr = {.magic = WP_MAGIC, .type = (uint32_t)type, .length = alen + blen};
    if (write_all(fd, (const uint8_t *)&hdr, sizeof(hdr), deadline_ms) < 0)
        return -1;
    if (alen > 0 && write_all(fd, a, alen, deadline_ms) < 0)
        return -1;
    if (blen > 0 && write_all(fd, b, blen, deadline_ms) < 0)
        return -1;
    return 0;
}

int wp_read_full(int fd, void *buf, size_t len, uint64_t deadline_ms)
{
    uint8_t *p = buf;
    while (len > 0) {
        if (wait_ready(fd, POLLIN, deadline_ms) < 0)
            return -1;
        ssize_t n = read(fd, p, len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = EPIPE;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int wp_recv_header(int fd, struct wp_header *hdr, uint64_t deadline_ms)
{
    if (wp_read_full(fd, hdr, sizeof(*hdr), deadline_ms) < 0)
        return -1;
    if (hdr->magic != WP_MAGIC || hdr->type < WP_OP || hdr->type > WP_READY) {
        errno = EPROTO;
        return -1;
    }
    return 0;
}

int wp_skip(int fd, uint64_t len, uint64_t deadline_ms)
{
    uint8_t buf[4096];
    while (len > 0) {
        size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
        if (wp_read_full(fd, buf, n, deadline_ms) < 0)
            return -1;
        len -= n;
    }
    return 0;
}

int wp_doc_next(const uint8_t *data, size_t len, size_t *pos, struct wp_doc *doc,
                const uint8_t **bytes)
{
    if (*pos == len)
        return 0;
    if (*pos > len || len - *pos < sizeof(*doc))
        return -1;
    memcpy(doc, data + *pos, sizeof(*doc));
    size_t at = *pos + sizeof(*doc);
    if (doc->length > len - at || (doc->code != H5CD_OK && doc->length >= H5CD_MAX_ERROR_MESSAGE))
        return -1;
    *bytes = data + at;
    *pos = at + doc->length;
    return 1;
}
