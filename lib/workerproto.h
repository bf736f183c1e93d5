/*
 * workerproto.h - the messages between the daemon and h5chunkd-worker.
 *
 * One stream socket (socketpair) per worker; every message is a frame: a
 * fixed header {magic, type, length} and `length` payload bytes.  Both
 * programs come from the same build, so fixed parts are plain C structs in
 * host byte order; every length is bounded (WP_MAX_*) and checked by the
 * receiver before anything is allocated.  The daemon trusts nothing a
 * worker sends: a worker parses hostile files and may be subverted.
 *
 * A worker announces itself with READY once it has confined itself; then
 * a request is one OP from the daemon, any number of READ (worker) /
 * READ_REPLY (daemon) pairs, then one RESULT from the worker.
 *
 * DESCRIBE_MANY describes several objects in one exchange (the Zarr view's
 * walk asks for a whole level of the hierarchy at once): the OP carries
 * their paths, the RESULT one record per path, in order, each a struct
 * wp_doc and its bytes (the description's JSON text, or an error message).
 */
#ifndef H5CD_WORKERPROTO_H
#define H5CD_WORKERPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "h5cd_limits.h"
#include "h5index.h"
#include "selection.h"

#define WP_MAGIC 0x48354357u /* "WC5H" */

/* Bounds of a frame's payload, by type. */
#define WP_MAX_READ_BYTES     (8u * 1024 * 1024)  /* one READ; the worker splits larger reads */
#define WP_MAX_LOCATE_KEYS    4096u               /* chunk coordinates of one LOCATE */
#define WP_MAX_DOC_BYTES      (64u * 1024 * 1024) /* a DESCRIBE result (JSON text) */
#define WP_MAX_RESULT_BYTES   (16ULL * 1024 * 1024 * 1024) /* any result; ops bound it lower */
#define WP_MAX_DESCRIBE_PATHS 4096u                        /* paths of one DESCRIBE_MANY */
#define WP_MAX_PATHS_BYTES    (1024u * 1024)               /* their bytes, one NUL after each */
#define WP_DESCRIBE_MANY_MS   2000u /* a worker starts no new path of one after this */
/* A DESCRIBE_MANY result: its documents, and a record head and message per path. */
#define WP_MAX_DOCS_RESULT_BYTES                                                                   \
    ((uint64_t)WP_MAX_DOC_BYTES +                                                                  \
     (uint64_t)WP_MAX_DESCRIBE_PATHS * (sizeof(struct wp_doc) + H5CD_MAX_ERROR_MESSAGE))

enum wp_type {
    WP_OP = 1,     /* daemon -> worker: struct wp_op, then coords */
    WP_READ,       /* worker -> daemon: struct wp_read */
    WP_READ_REPLY, /* daemon -> worker: struct wp_read_reply, then the bytes */
    WP_RESULT,     /* worker -> daemon: struct wp_result, then data_len bytes */
    WP_READY,      /* worker -> daemon, once: confined and ready for operations (no payload) */
};

enum wp_opcode {
    WP_OP_DESCRIBE = 1,  /* path -> {"meta": /v1/meta document, "facts": layout facts} */
    WP_OP_LOCATE,        /* ds, ncoords chunk coords -> ncoords struct wp_loc */
    WP_OP_COMPACT,       /* ds -> a compact dataset's stored bytes */
    WP_OP_DECODE,        /* ds, one chunk's coords -> its decoded values */
    WP_OP_SLICE,         /* ds, sel -> decoded values of the selection (format, elem_size) */
    WP_OP_DESCRIBE_MANY, /* npaths paths -> npaths or fewer struct wp_doc records, in order */
    WP_OP_COUNT
};

struct wp_header {
    uint32_t magic;
    uint32_t type;
    uint64_t length; /* payload bytes after the header */
};

struct wp_op {
    uint32_t opcode;
    uint32_t ncoords;       /* LOCATE: keys; DECODE: 1; else 0 (coords follow, rank each) */
    uint32_t npaths;        /* DESCRIBE_MANY: paths, each NUL-terminated, after the coords */
    uint32_t paths_len;     /* ... their bytes (0 for other operations) */
    uint32_t never_written; /* DECODE: the daemon's index says the chunk was never written */
    int64_t file_id;        /* the version being read */
    uint64_t file_size;     /* its size: reads past it are refused */
    uint64_t prefix_bytes;  /* read when the file is opened */
    uint64_t window_first;  /* metadata windows (struct h5vfd_meta_plan); 0: the driver's own */
    uint64_t window_most;
    uint64_t window_align;
    uint64_t max_bytes; /* DECODE, SLICE, COMPACT: largest result allowed */
    char identity[H5CD_MAX_URL_BYTES + 1];
    char path[H5CD_MAX_PATH_BYTES + 2]; /* DESCRIBE: the canonical path; else ds.path */
    struct h5dataset ds;
    struct selection sel;
};

struct wp_read {
    int64_t file_id;
    uint64_t offset;
    uint64_t length; /* 1 .. WP_MAX_READ_BYTES */
};

struct wp_read_reply {
    struct h5cd_error error; /* code H5CD_OK: `length` bytes follow */
    uint64_t length;
};

struct wp_result {
    struct h5cd_error error; /* code H5CD_OK: data_len bytes follow */
    uint32_t format;         /* SLICE: enum h5decode_format */
    uint32_t pad;
    uint64_t elem_size; /* SLICE: bytes per element (H5DECODE_FIXED) */
    uint64_t data_len;
};

/* One record of a DESCRIBE_MANY result; `length` bytes follow it: the
 * description's JSON text when code is H5CD_OK, else an error message.  A
 * worker returns fewer records than paths when the next would pass
 * WP_MAX_DOC_BYTES of documents: the daemon asks again for the rest. */
struct wp_doc {
    uint32_t code; /* enum h5cd_errcode */
    uint32_t length;
};

/* One located chunk in a LOCATE result. */
struct wp_loc {
    uint64_t offset;
    uint64_t size;
    uint32_t filter_mask;
    uint32_t allocated;
};

/* Writes a whole frame (header, then the payload pieces), waiting at most until
 * deadline_ms (0: forever) for the peer to take it.  0, or -1 with errno. */
int wp_send(int fd, enum wp_type type, const void *a, size_t alen, const void *b, size_t blen,
            uint64_t deadline_ms);

/* Reads exactly len bytes.  Waits at most until deadline_ms (CLOCK_MONOTONIC
 * milliseconds; 0: forever).  0, or -1 with errno (ETIMEDOUT, EPIPE at EOF). */
int wp_read_full(int fd, void *buf, size_t len, uint64_t deadline_ms);

/* Reads a frame header and checks its magic and type range.  0 or -1 with errno. */
int wp_recv_header(int fd, struct wp_header *hdr, uint64_t deadline_ms);

/* Reads and discards len bytes.  0 or -1 with errno. */
int wp_skip(int fd, uint64_t len, uint64_t deadline_ms);

/*
 * Reads the next record of a DESCRIBE_MANY result (data, len) at *pos and
 * moves *pos past it.  1 with the record (its bytes at *bytes, not
 * NUL-terminated), 0 at the end, -1 when the record does not fit the result
 * or a message is longer than an error message can be.
 */
int wp_doc_next(const uint8_t *data, size_t len, size_t *pos, struct wp_doc *doc,
                const uint8_t **bytes);

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t wp_now_ms(void);

#endif
