/*
 * log.c - one-line structured logging.  Any thread may log; each line is
 * formatted into a local buffer and written with one write(2) (or one
 * syslog(3) call) so concurrent lines never interleave.  Never allocates.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_BYTES 2048

static _Atomic int current_level = LOG_LEVEL_INFO;
static _Atomic bool to_syslog = false;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const int syslog_priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

int log_level_parse(const char *name)
{
    for (int i = 0; i <= LOG_LEVEL_DEBUG; i++)
        if (name != NULL && strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void log_set_level(enum log_level level)
{
    atomic_store(&current_level, (int)level);
}

enum log_level log_get_level(void)
{
    return (enum log_level)atomic_load(&current_level);
}

void log_use_syslog(bool on)
{
    if (on)
        openlog("h5chunkd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    atomic_store(&to_syslog, on);
}

/* Appends at most the remaining space; a line that does not fit ends in "...". */
static size_t append_va(char *buf, size_t used, const char *fmt, va_list ap)
{
    if (used >= LOG_LINE_BYTES - 1)
        return used;
    int n = vsnprintf(buf + used, LOG_LINE_BYTES - used, fmt, ap);
    if (n < 0)
        return used;
    if ((size_t)n >= LOG_LINE_BYTES - used) {
        memcpy(buf + LOG_LINE_BYTES - 5, "...", 4);
        return LOG_LINE_BYTES - 2;
    }
    return used + (size_t)n;
}

static size_t append(char *buf, size_t used, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static size_t append(char *buf, size_t used, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    used = append_va(buf, used, fmt, ap);
    va_end(ap);
    return used;
}

void log_printf(enum log_level level, const char *func, const char *fmt, ...)
{
    if ((int)level > atomic_load(&current_level))
        return;
    char line[LOG_LINE_BYTES];
    size_t used = 0;
    bool syslog_on = atomic_load(&to_syslog);
    if (!syslog_on) {
        /* journald adds its own timestamps; a terminal or file needs ours. */
        struct timespec now;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        used = append(line, used, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                      now.tv_nsec / 1000000);
    }
    used = append(line, used, "level=%s func=%s ", level_names[level], func);
    va_list ap;
    va_start(ap, fmt);
    used = append_va(line, used, fmt, ap);
    va_end(ap);
    if (syslog_on) {
        syslog(syslog_priorities[level], "%s", line);
        return;
    }
    line[used++] = '\n';
    ssize_t rc = write(STDERR_FILENO, line, used);
    (void)rc; /* nowhere to report a failed log write */
}
