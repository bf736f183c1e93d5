/*
 * accesslog.h - the access log: one key=value line per finished HTTP
 * request, appended to a file that logrotate may move away (SIGHUP
 * reopens it by name).
 *
 *   2024-05-01T12:00:00.123Z client=127.0.0.1 method=GET target="/v1/health"
 *   status=200 bytes=35 ms=0           (one line in the file)
 *
 * Lines are written with one write(2) on an O_APPEND descriptor, so lines
 * from concurrent requests never interleave.  The descriptor a writer uses
 * is never closed while the daemon runs: reopening replaces the file behind
 * it with dup2(2), which is atomic, so a line goes either to the old file
 * or to the new one, never to a recycled descriptor.
 */
#ifndef H5CD_ACCESSLOG_H
#define H5CD_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ACCESSLOG_TARGET_BYTES 512 /* of a request target, as logged; longer ends in "..." */
#define ACCESSLOG_METHOD_BYTES 16
#define ACCESSLOG_LINE_BYTES   1024 /* a whole line: the target plus a few short fields */
#define ACCESSLOG_FILE_MODE    0600 /* targets may hold presigned URLs */

struct accesslog;

/* A request target being assembled, percent-encoded, capped at ACCESSLOG_TARGET_BYTES. */
struct accesslog_target {
    char text[ACCESSLOG_TARGET_BYTES + 4]; /* room for "..." and the NUL */
    size_t len;
    unsigned nargs;
    bool cut;
};

/* Starts a target with the (decoded) request path. */
void accesslog_target_init(struct accesslog_target *t, const char *path);
/* Appends one (decoded) query argument; value may be NULL ("?flag"). */
void accesslog_target_arg(struct accesslog_target *t, const char *key, const char *value);

struct accesslog_entry {
    struct timespec when; /* CLOCK_REALTIME when the request finished */
    const char *client;   /* "127.0.0.1", "::1", "unix", "-" */
    const char *method;   /* as received; escaped and capped when written */
    const char *target;   /* from accesslog_target: already encoded */
    unsigned status;      /* 0 when no response was queued */
    uint64_t bytes;       /* body bytes sent */
    uint64_t duration_ms;
};

/* Formats e as one line ending in "\n" into buf (capacity at least
 * ACCESSLOG_LINE_BYTES).  Returns the length. */
size_t accesslog_format(const struct accesslog_entry *e, char *buf, size_t cap);

/* A log that writes nowhere until accesslog_set_path.  0 or -ENOMEM. */
int accesslog_new(struct accesslog **out);
/* Closes the file.  Only once no thread can write any more.  NULL is a no-op. */
void accesslog_free(struct accesslog *log);

/*
 * Points the log at path (created with ACCESSLOG_FILE_MODE if missing,
 * appended to otherwise), or turns it off when path is NULL or "".  Calling
 * it again with the same path reopens the file by name (after logrotate
 * moved it).  On failure the log keeps writing where it wrote before and
 * -1 is returned with a one-line reason.  Main thread; concurrent writers
 * are fine.
 */
int accesslog_set_path(struct accesslog *log, const char *path, char *err, size_t errlen);

/* True when lines are written somewhere.  Any thread. */
bool accesslog_enabled(const struct accesslog *log);

/* Appends e's line.  0, or a negative errno (nothing else is reported:
 * a full disk must not fail requests).  Any thread. */
int accesslog_write(struct accesslog *log, const struct accesslog_entry *e);

#endif
