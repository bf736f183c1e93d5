/*
 * accesslog.c - the access log file and its line format (see accesslog.h).
 *
 * Writers are connection threads; accesslog_set_path runs on the main
 * thread (start-up, SIGHUP).  No lock: writers read an atomic descriptor
 * that stays open until accesslog_free, and reopening swaps the file
 * behind it with dup3(2).  A line never carries raw client bytes: the
 * target is percent-encoded and the method is escaped, so a request
 * cannot forge log lines.  Never allocates on the write path.
 */
#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"

struct accesslog {
    _Atomic int fd;  /* -1 until a file is first opened; then never closed before free */
    _Atomic bool on; /* false: lines are dropped */
    char *path;      /* main thread only */
};

/* ---- the target ---- */

/* RFC 3986 unreserved characters and a few sub-delimiters that read well;
 * '&', '=', '+', '?', '#', '%', quotes, blanks and controls are encoded. */
static bool keep_byte(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("-._~/:@!$()*,;", c) != NULL;
}

static void target_put(struct accesslog_target *t, const char *piece, size_t n)
{
    if (t->cut)
        return;
    if (t->len + n > ACCESSLOG_TARGET_BYTES) {
        memcpy(t->text + t->len, "...", 4);
        t->len += 3;
        t->cut = true;
        return;
    }
    memcpy(t->text + t->len, piece, n);
    t->len += n;
    t->text[t->len] = '\0';
}

static void target_encode(struct accesslog_target *t, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && !t->cut; p++) {
        if (keep_byte(*p)) {
            target_put(t, (const char *)p, 1);
        } else {
            char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            target_put(t, esc, 3);
        }
    }
}

void accesslog_target_init(struct accesslog_target *t, const char *path)
{
    t->len = 0;
    t->nargs = 0;
    t->cut = false;
    t->text[0] = '\0';
    target_encode(t, path != NULL ? path : "");
}

void accesslog_target_arg(struct accesslog_target *t, const char *key, const char *value)
{
    target_put(t, t->nargs == 0 ? "?" : "&", 1);
    t->nargs++;
    target_encode(t, key != NULL ? key : "");
    if (value != NULL) {
        target_put(t, "=", 1);
        target_encode(t, value);
    }
}

/* ---- the line ---- */

static void copy_method(const char *method, char *out)
{
    size_t n = 0;
    for (; method != NULL && method[n] != '\0' && n < ACCESSLOG_METHOD_BYTES; n++) {
        unsigned char c = (unsigned char)method[n];
        out[n] = (c > 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
    }
    if (n == 0)
        out[n++] = '-';
    out[n] = '\0';
}

size_t accesslog_format(const struct accesslog_entry *e, char *buf, size_t cap)
{
    char method[ACCESSLOG_METHOD_BYTES + 1];
    struct tm tm;
    copy_method(e->method, method);
    gmtime_r(&e->when.tv_sec, &tm);
    int n = snprintf(buf, cap,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ client=%s method=%s target=\"%s\" "
                     "status=%u bytes=%llu ms=%llu\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     e->when.tv_nsec / 1000000, e->client != NULL ? e->client : "-", method,
                     e->target != NULL ? e->target : "", e->status, (unsigned long long)e->bytes,
                     (unsigned long long)e->duration_ms);
    if (n < 0)
        return 0;
    if ((size_t)n >= cap) {
        /* Cannot happen with the documented capacity; keep the line a line. */
        buf[cap - 2] = '\n';
        return cap - 1;
    }
    return (size_t)n;
}

/* ---- the file ---- */

int accesslog_new(struct accesslog **out)
{
    struct accesslog *log = calloc(1, sizeof(*log));
    if (log == NULL)
        return -ENOMEM;
    atomic_init(&log->fd, -1);
    atomic_init(&log->on, false);
    *out = log;
    return 0;
}

void accesslog_free(struct accesslog *log)
{
    if (log == NULL)
        return;
    int fd = atomic_load(&log->fd);
    if (fd >= 0)
        close(fd);
    free(log->path);
    free(log);
}

/* Puts the file open as newfd behind the writers' descriptor; consumes newfd. */
static int install(struct accesslog *log, int newfd)
{
    int fd = atomic_load(&log->fd);
    if (fd < 0) {
        atomic_store(&log->fd, newfd);
        return 0;
    }
    int rc = dup3(newfd, fd, O_CLOEXEC) < 0 ? -errno : 0;
    close(newfd);
    return rc;
}

int accesslog_set_path(struct accesslog *log, const char *path, char *err, size_t errlen)
{
    if (path == NULL || path[0] == '\0') {
        atomic_store(&log->on, false);
        free(log->path);
        log->path = NULL;
        /* Let go of the old file (logrotate may wait for it) without closing the slot. */
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0 && atomic_load(&log->fd) >= 0)
            install(log, null);
        else if (null >= 0)
            close(null);
        return 0;
    }
    char *copy = strdup(path);
    if (copy == NULL)
        return h5cd_errf(err, errlen, "access_log %s: out of memory", path);
    int newfd =
        open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, ACCESSLOG_FILE_MODE);
    if (newfd < 0) {
        int e = errno;
        free(copy);
        return h5cd_errf(err, errlen, "access_log %s: %s", path, strerror(e));
    }
    int rc = install(log, newfd);
    if (rc < 0) {
        free(copy);
        return h5cd_errf(err, errlen, "access_log %s: %s", path, strerror(-rc));
    }
    free(log->path);
    log->path = copy;
    atomic_store(&log->on, true);
    return 0;
}

bool accesslog_enabled(const struct accesslog *log)
{
    return log != NULL && atomic_load(&log->on);
}

int accesslog_write(struct accesslog *log, const struct accesslog_entry *e)
{
    if (!accesslog_enabled(log))
        return 0;
    int fd = atomic_load(&log->fd);
    if (fd < 0)
        return 0;
    char line[ACCESSLOG_LINE_BYTES];
    size_t len = accesslog_format(e, line, sizeof(line));
    for (;;) {
        ssize_t n = write(fd, line, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        return (size_t)n == len ? 0 : -EIO; /* a short write on a full disk: the line is lost */
    }
}
