/*
 * log.h - one-line, key=value structured logging to stderr or syslog.
 * Safe to call from any thread; a line is written with a single write so
 * lines from different threads never interleave.
 */
#ifndef H5CD_LOG_H
#define H5CD_LOG_H

#include <stdbool.h>

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Parses "error", "warn", "info" or "debug"; returns -1 for anything else. */
int log_level_parse(const char *name);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Switches output to syslog (used once the daemon has detached). */
void log_use_syslog(bool on);

void log_printf(enum log_level level, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(...) log_printf(LOG_LEVEL_ERROR, __func__, __VA_ARGS__)
#define log_warn(...)  log_printf(LOG_LEVEL_WARN, __func__, __VA_ARGS__)
#define log_info(...)  log_printf(LOG_LEVEL_INFO, __func__, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= LOG_LEVEL_DEBUG)                                                    \
            log_printf(LOG_LEVEL_DEBUG, __func__, __VA_ARGS__);                                    \
    } while (0)

#endif
