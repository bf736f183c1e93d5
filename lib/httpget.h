/*
 * httpget.h - one synchronous upstream GET on the caller's thread, for the
 * few control requests of name resolution: DANDI API lookups and the
 * one-byte ranged GETs that follow redirects hop by hop and check that a
 * URL is accepted.  Bulk bytes never come this way (lib/fetch.c does them).
 *
 * Redirects are never followed here: the caller gets the Location and
 * decides.  Addresses are checked against the URL policy at connect time,
 * as in lib/fetch.c.  The body is kept up to a bound, and a response body
 * past it fails the request.  Blocks: call from client threads only.
 */
#ifndef H5CD_HTTPGET_H
#define H5CD_HTTPGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h5cd_limits.h"
#include "urlpolicy.h"

#define HTTPGET_MAX_HEADERS 20 /* extra request headers */

struct httpget_request {
    const char *url;
    const char *const *headers; /* "Name: value" lines, borrowed */
    size_t nheaders;
    bool first_byte; /* send Range: bytes=0-0 */
    size_t max_body; /* bytes of body kept; a longer body is an error; 0 = discard */
    unsigned connect_timeout_ms;
    unsigned timeout_ms;
    const char *user_agent;
    const struct urlpolicy *policy; /* addresses; NULL only in tests */
};

struct httpget_response {
    long status;                           /* 0 when no response came */
    char location[H5CD_MAX_URL_BYTES + 1]; /* a 3xx's target, absolute; "" if none */
    uint64_t total_size;                   /* from Content-Range, UINT64_MAX if unknown */
    char *body;                            /* NUL-terminated copy, or NULL */
    size_t body_len;
    bool timed_out;
    bool policy_refused;                /* an address was refused */
    char error[H5CD_MAX_ERROR_MESSAGE]; /* a sentence when run fails */
};

/* Returns 0 when a response arrived (any status), -1 with res->error set
 * otherwise.  Free res with httpget_response_free either way. */
int httpget_run(const struct httpget_request *req, struct httpget_response *res);
void httpget_response_free(struct httpget_response *res);

#endif
