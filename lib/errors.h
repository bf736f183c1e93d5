/*
 * errors.h - the API's error vocabulary: a stable code string, an HTTP
 * status and a human sentence.  Every module that can fail a client
 * request fills a struct h5cd_error; only the HTTP layer turns it into a
 * response body {"error": {"code": ..., "message": ...}}.
 */
#ifndef H5CD_ERRORS_H
#define H5CD_ERRORS_H

#include <stddef.h>

#include "h5cd_limits.h"

enum h5cd_errcode {
    H5CD_OK = 0,
    H5CD_E_BAD_REQUEST,           /* 400 bad_request */
    H5CD_E_BAD_KEY,               /* 400 bad_key */
    H5CD_E_UNAUTHORIZED,          /* 401 unauthorized */
    H5CD_E_URL_NOT_ALLOWED,       /* 403 url_not_allowed */
    H5CD_E_HOST_NOT_ALLOWED,      /* 403 host_not_allowed */
    H5CD_E_UPSTREAM_DENIED,       /* 403 upstream_denied: upstream refused this URL or token */
    H5CD_E_NOT_FOUND,             /* 404 not_found */
    H5CD_E_CHUNK_NOT_ALLOCATED,   /* 404 chunk_not_allocated */
    H5CD_E_METHOD_NOT_ALLOWED,    /* 405 method_not_allowed */
    H5CD_E_UPSTREAM_CHANGED,      /* 409 upstream_changed */
    H5CD_E_TOO_LARGE,             /* 413 too_large */
    H5CD_E_RANGE_NOT_SATISFIABLE, /* 416 range_not_satisfiable */
    H5CD_E_UNSUPPORTED,           /* 422 unsupported */
    H5CD_E_DAMAGED_FILE,          /* 422 damaged_file */
    H5CD_E_FILTER_UNAVAILABLE,    /* 422 filter_unavailable */
    H5CD_E_INTERNAL,              /* 500 internal */
    H5CD_E_UPSTREAM_ERROR,        /* 502 upstream_error */
    H5CD_E_UNAVAILABLE,           /* 503 unavailable */
    H5CD_E_UPSTREAM_TIMEOUT,      /* 504 upstream_timeout */
    H5CD_E_COUNT
};

struct h5cd_error {
    enum h5cd_errcode code;
    char message[H5CD_MAX_ERROR_MESSAGE];
};

const char *h5cd_errcode_name(enum h5cd_errcode code);
int h5cd_errcode_status(enum h5cd_errcode code);
/* Formats a one-line reason into err (if not NULL and errlen > 0) and returns -1,
 * for functions that report errors as text (config, token and log files). */
int h5cd_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Sets err (if not NULL) and returns -1, so callers can `return h5cd_fail(...)`. */
int h5cd_fail(struct h5cd_error *err, enum h5cd_errcode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
