/*
 * limits.h - every fixed limit of h5chunkd, with its unit, in one place.
 * Limits that an operator may change live in config.h instead and are
 * range-checked there; these are the hard outer bounds that protect the
 * daemon from hostile input whatever the configuration says.
 */
#ifndef H5CD_LIMITS_H
#define H5CD_LIMITS_H

#define H5CD_KIB (1024ULL)
#define H5CD_MIB (1024ULL * 1024ULL)
#define H5CD_GIB (1024ULL * 1024ULL * 1024ULL)

/* Client input. */
#define H5CD_MAX_URL_BYTES          4096 /* a remote URL, after percent-decoding */
#define H5CD_MAX_PATH_BYTES         1024 /* an HDF5 object path */
#define H5CD_MAX_HOST_HEADER_BYTES  255  /* the Host header we are willing to parse */
#define H5CD_MAX_RANGE_HEADER_BYTES 128
#define H5CD_MAX_SMALL_BODY         (64 * 1024) /* POST bodies other than /v1/chunks */
#define H5CD_BUDGET_WAIT_MS         1000        /* a request waits this long for memory, then 503 */
#define H5CD_RETRY_AFTER_SECONDS    1           /* Retry-After of a 503 the daemon answers itself */

/* Upstream responses. */
#define H5CD_MAX_VALIDATOR_BYTES       256         /* an ETag or Last-Modified value */
#define H5CD_MAX_UPSTREAM_HEADER_BYTES 8192        /* one response header line */
#define H5CD_MAX_UPSTREAM_HEAD_BYTES   (64 * 1024) /* all header lines of one hop */
#define H5CD_MAX_REDIRECTS             20          /* outer bound of the max_redirects option */
#define H5CD_MAX_ERROR_BODY_BYTES      4096 /* read of a non-2xx body before dropping the connection */
#define H5CD_MAX_RETRY_AFTER_SECONDS   60 /* a longer Retry-After is clamped */

/* Internal sizes. */
#define H5CD_MAX_FETCH_BYTES   (64 * H5CD_MIB) /* one upstream range request */
#define H5CD_MIN_BLOCK_BYTES   (4 * H5CD_KIB)
#define H5CD_MAX_BLOCK_BYTES   (16 * H5CD_MIB)
#define H5CD_MAX_ERROR_MESSAGE 256    /* a human-readable error sentence */
#define H5CD_MAX_LIST_ITEMS    64     /* entries of a configured list */
#define H5CD_MAX_JSON_ELEMENTS 100000 /* values in a format=json slice */

#endif
