/*
 * errors.c - the stable error codes of the HTTP API and their statuses.
 * Pure data and formatting; any thread.
 */
#include "errors.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
    const char *name;
    int status;
} codes[H5CD_E_COUNT] = {
    [H5CD_OK] = {"ok", 200},
    [H5CD_E_BAD_REQUEST] = {"bad_request", 400},
    [H5CD_E_BAD_KEY] = {"bad_key", 400},
    [H5CD_E_UNAUTHORIZED] = {"unauthorized", 401},
    [H5CD_E_URL_NOT_ALLOWED] = {"url_not_allowed", 403},
    [H5CD_E_HOST_NOT_ALLOWED] = {"host_not_allowed", 403},
    [H5CD_E_UPSTREAM_DENIED] = {"upstream_denied", 403},
    [H5CD_E_NOT_FOUND] = {"not_found", 404},
    [H5CD_E_CHUNK_NOT_ALLOCATED] = {"chunk_not_allocated", 404},
    [H5CD_E_METHOD_NOT_ALLOWED] = {"method_not_allowed", 405},
    [H5CD_E_UPSTREAM_CHANGED] = {"upstream_changed", 409},
    [H5CD_E_TOO_LARGE] = {"too_large", 413},
    [H5CD_E_RANGE_NOT_SATISFIABLE] = {"range_not_satisfiable", 416},
    [H5CD_E_UNSUPPORTED] = {"unsupported", 422},
    [H5CD_E_DAMAGED_FILE] = {"damaged_file", 422},
    [H5CD_E_FILTER_UNAVAILABLE] = {"filter_unavailable", 422},
    [H5CD_E_INTERNAL] = {"internal", 500},
    [H5CD_E_UPSTREAM_ERROR] = {"upstream_error", 502},
    [H5CD_E_UNAVAILABLE] = {"unavailable", 503},
    [H5CD_E_UPSTREAM_TIMEOUT] = {"upstream_timeout", 504},
};

const char *h5cd_errcode_name(enum h5cd_errcode code)
{
    if ((int)code < 0 || code >= H5CD_E_COUNT)
        return "internal";
    return codes[code].name;
}

int h5cd_errcode_status(enum h5cd_errcode code)
{
    if ((int)code < 0 || code >= H5CD_E_COUNT)
        return 500;
    return codes[code].status;
}

int h5cd_fail(struct h5cd_error *err, enum h5cd_errcode code, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    if (n < 0)
        err->message[0] = '\0';
    return -1;
}

int h5cd_errf(char *err, size_t errlen, const char *fmt, ...)
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
