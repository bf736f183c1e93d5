/*
 * h5chunk.h - the h5chunk command-line client: limits, the parsed command
 * line, and the prototypes of the client's .c files, grouped by file.  The client is
 * single-threaded; nothing here is shared with the daemon.
 */
#ifndef H5C_H5CHUNK_H
#define H5C_H5CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define H5C_DEFAULT_DAEMON "http://127.0.0.1:7661"
#define H5C_UNIX_BASE      "http://localhost" /* the Host a Unix-socket daemon sees */

/* Limits, with their units.  Everything the daemon sends is bounded by them. */
#define H5C_MAX_DAEMON_BYTES   1024                /* a --daemon / H5CHUNKD_URL value */
#define H5C_MAX_UNIX_PATH      107                 /* sockaddr_un.sun_path minus the NUL */
#define H5C_MAX_KEY_BYTES      400                 /* a chunk key (the daemon's own limit) */
#define H5C_MAX_JSON_BODY      (64u * 1024 * 1024) /* a JSON response */
#define H5C_MAX_ERROR_BODY     (64u * 1024)        /* an error body read from a binary endpoint */
#define H5C_MAX_FRAME_HEADER   4096                /* one frame header line, newline included */
#define H5C_MAX_FRAME_PAYLOAD  0xFFFFFFFFull       /* HDF5 chunks are smaller than 4 GiB */
#define H5C_MAX_TOKEN_BYTES    4096                /* a bearer token file */
#define H5C_MAX_TIMEOUT_MS     (7ull * 24 * 3600 * 1000) /* --timeout: one week */
#define H5C_DEFAULT_TIMEOUT_MS (3600ull * 1000)          /* --timeout: one hour */
#define H5C_CONNECT_TIMEOUT_MS 10000
#define H5C_POLL_INTERVAL_MS   200 /* prefetch: job status polls */
#define H5C_MESSAGE_BYTES      512 /* one error line */

/* Exit statuses. */
#define H5C_EXIT_OK        0
#define H5C_EXIT_FAIL      1
#define H5C_EXIT_USAGE     2
#define H5C_EXIT_INTERRUPT 130

enum h5c_command {
    H5C_CMD_NONE = 0, /* only --help or --version */
    H5C_CMD_META,
    H5C_CMD_GET,
    H5C_CMD_SLICE,
    H5C_CMD_PREFETCH,
    H5C_CMD_STATS,
    H5C_CMD_CACHE_LS,
    H5C_CMD_CACHE_PURGE,
    H5C_CMD_ZARR_URL,
};

/* Where the daemon is: a base URL, and a Unix socket path when it listens on one. */
struct h5c_daemon {
    char base[H5C_MAX_DAEMON_BYTES + 1];   /* no trailing '/' */
    char unix_path[H5C_MAX_UNIX_PATH + 1]; /* "" for TCP */
};

/* The command line.  String pointers point into argv. */
struct h5c_args {
    enum h5c_command cmd;
    bool help;                    /* --help: print the (command's) help and exit 0 */
    bool version;                 /* --version */
    bool json;                    /* --json: raw JSON for scripts */
    bool decode;                  /* get --decode */
    bool all;                     /* cache purge --all */
    const char *token_file;       /* --token, else $H5CHUNKD_TOKEN_FILE; NULL for none */
    const char *dandi_token_file; /* --dandi-token: the DANDI API key, sent as X-DANDI-Token */
    const char *dandi_key;        /* else $DANDI_API_KEY (set by main, not by the parser) */
    const char *url;
    const char *path;
    const char *select; /* slice, prefetch; NULL when absent */
    const char *out;    /* -o: a directory (get) or a file (slice); NULL when absent */
    const char **keys;  /* get: the KEY operands (strings in argv) */
    size_t nkeys;
    const char **positional; /* internal: the malloc'd array keys points into */
    uint64_t timeout_ms;     /* --timeout: bound on the whole command */
    struct h5c_daemon daemon;
};

/* ---- args.c: pure; reads neither the environment nor files ---- */

/*
 * Parses argv into args.  env_daemon and env_token are the values of
 * H5CHUNKD_URL and H5CHUNKD_TOKEN_FILE (NULL or "" when unset): --daemon
 * wins over env_daemon, which wins over H5C_DEFAULT_DAEMON.  Options may
 * stand before or after the command; "--" ends them.  Returns 0, or
 * -EINVAL for a usage error with a one-line reason in err.
 */
int h5c_args_parse(int argc, char *const *argv, const char *env_daemon, const char *env_token,
                   struct h5c_args *args, char *err, size_t errlen);

/*
 * Parses a daemon address: "http://HOST:PORT[/PREFIX]", "https://...",
 * "HOST:PORT" (http assumed) or "unix:/ABS/PATH.sock" (base becomes
 * H5C_UNIX_BASE).  Returns 0 or -EINVAL with a reason in err.
 */
int h5c_daemon_parse(const char *text, struct h5c_daemon *daemon, char *err, size_t errlen);

/* The name of a command as typed ("cache ls"). */
const char *h5c_command_name(enum h5c_command cmd);

/* Frees what h5c_args_parse allocated (the key array); args stays usable otherwise. */
void h5c_args_free(struct h5c_args *args);

/* ---- util.c: pure helpers ---- */

/* A chunk key: decimal indices joined by single dots ("0", "12.0.3"), at most
 * H5C_MAX_KEY_BYTES.  Anything else (".", "..", "1/2", "") is refused, so a
 * key is always a safe file name. */
bool h5c_key_valid(const char *key);

/* Unpadded base64url (RFC 4648 section 5) of in[0..len) into out, NUL-terminated.
 * Returns 0, or -ENOSPC if out is too small (it needs h5c_base64url_len + 1). */
size_t h5c_base64url_len(size_t len);
int h5c_base64url(const uint8_t *in, size_t len, char *out, size_t cap);

/* Copies untrusted text (from a remote file or the daemon) for a terminal:
 * control characters become '?', at most cap - 1 bytes.  Returns dst. */
const char *h5c_sanitize(char *dst, size_t cap, const char *src);

/* "1.5 MiB", "512 B".  Returns buf. */
const char *h5c_format_bytes(uint64_t bytes, char *buf, size_t cap);

/* A duration: digits with an optional unit s (default), m, h or ms, at most
 * H5C_MAX_TIMEOUT_MS and more than 0.  Returns 0 or -EINVAL. */
int h5c_parse_duration(const char *text, uint64_t *ms);

/* Progress of a job as reported by GET /v1/jobs/{id}. */
struct h5c_progress {
    uint64_t bytes_done, bytes_total;
    uint64_t chunks_done, chunks_total;
};

/* Percent done, 0..100, from bytes when their total is known, else chunks; -1 if unknown. */
int h5c_progress_percent(const struct h5c_progress *p);

/* One progress line of at most width columns (a bar when width allows):
 * "[#####.....]  42%  1.2 MiB / 3.0 MiB  12/30 chunks".  Returns buf. */
const char *h5c_progress_line(const struct h5c_progress *p, unsigned width, char *buf, size_t cap);

/* ---- frames.c: the application/x-h5chunkd-frames stream ---- */

struct h5c_frame {
    char key[H5C_MAX_KEY_BYTES + 1];
    int status;
    uint64_t length;
    long long filter_mask; /* -1 when absent */
    char error[64];        /* error code of a failed key, "" when none */
    char message[256];     /* its message when the daemon gave one */
};

/* Callbacks return 0 to go on, or -1 to stop the stream (their reason in
 * the parser's err, set with h5c_frames_fail). */
struct h5c_frames_cb {
    int (*begin)(void *ud, const struct h5c_frame *f);
    int (*data)(void *ud, const struct h5c_frame *f, const uint8_t *bytes, size_t len);
    int (*end)(void *ud, const struct h5c_frame *f);
    void *ud;
};

struct h5c_frames {
    struct h5c_frames_cb cb;
    bool in_payload;
    bool failed;
    uint64_t left; /* payload bytes still to come */
    uint64_t nframes;
    struct h5c_frame cur;
    size_t line_len;
    char line[H5C_MAX_FRAME_HEADER];
    char err[H5C_MESSAGE_BYTES];
};

void h5c_frames_init(struct h5c_frames *p, const struct h5c_frames_cb *cb);
/* Feeds bytes in any split.  Returns 0, or -1 with the reason in p->err;
 * after a failure every call fails. */
int h5c_frames_feed(struct h5c_frames *p, const uint8_t *data, size_t len);
/* At the end of the stream: -1 if it stopped inside a frame. */
int h5c_frames_finish(struct h5c_frames *p);
/* Records why a callback stops the stream; returns -1. */
int h5c_frames_fail(struct h5c_frames *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Parses one header line (without its newline).  0 or -1 with a reason in err. */
int h5c_frame_header_parse(const char *line, size_t len, struct h5c_frame *f, char *err,
                           size_t errlen);

/* ---- http.c: requests to the daemon (libcurl) ---- */

struct h5c_http;

/* A failed request: either no HTTP answer (status 0) or the daemon's error. */
struct h5c_failure {
    long status;   /* HTTP status, 0 when there was none */
    char code[64]; /* the daemon's error code, "" when it gave none */
    char message[H5C_MESSAGE_BYTES];
    bool interrupted; /* stopped by SIGINT */
};

/* Where a 2xx body goes when it is not collected: return 0, or -1 to abort
 * (the sink's own message goes in why). */
typedef int (*h5c_sink_fn)(void *ud, const uint8_t *bytes, size_t len, char *why, size_t whylen);

int h5c_http_new(const struct h5c_args *args, struct h5c_http **out, char *err, size_t errlen);
void h5c_http_free(struct h5c_http *h);
/* curl_easy_escape; the result is freed with h5c_http_free_str.  NULL on out of memory. */
char *h5c_http_escape(struct h5c_http *h, const char *text);
void h5c_http_free_str(char *s);
/* The daemon's base URL as the user should see it (e.g. for zarr-url). */
const char *h5c_http_base(const struct h5c_http *h);
/* "PATH?name=value&..." with every value URL-encoded; pairs whose value is
 * NULL are left out; params ends with NULL.  malloc'd; NULL on out of memory. */
char *h5c_http_target(struct h5c_http *h, const char *path, const char *const *params);
/* Milliseconds left before --timeout; 0 when it passed. */
uint64_t h5c_http_remaining_ms(const struct h5c_http *h);

/*
 * Sends METHOD target (a path with query, starting with '/'), with body as
 * application/json when not NULL.  A 2xx answer's body goes to sink, or,
 * with sink NULL, is collected (at most H5C_MAX_JSON_BODY) into *body
 * (malloc'd, NUL-terminated, *body_len bytes).  Any other answer fills
 * fail from its JSON error.  timeout_ms 0 means what is left of --timeout.
 * Returns the 2xx status, or -1 with fail set.
 */
long h5c_http_request(struct h5c_http *h, const char *method, const char *target, const char *body,
                      h5c_sink_fn sink, void *sink_ud, char **resp, size_t *resp_len,
                      uint64_t timeout_ms, struct h5c_failure *fail);

/* Like h5c_http_request with a collected body, parsed as JSON into *doc (an
 * empty body gives an empty object).  With raw not NULL the body text is
 * handed over too (malloc'd, NUL-terminated).  Returns the status or -1
 * with fail set. */
long h5c_http_json(struct h5c_http *h, const char *method, const char *target, const char *body,
                   json_t **doc, char **raw, uint64_t timeout_ms, struct h5c_failure *fail);

/* Whether SIGINT stops transfers (true by default; false while cancelling a job). */
void h5c_http_interruptible(struct h5c_http *h, bool yes);

/* Set by SIGINT while a command waits; transfers stop when it is set. */
extern volatile int h5c_interrupted;

/* ---- h5chunk.c ---- */

/* Writes a JSON body to stdout as received, ending with a newline.  0 or -1. */
int h5c_print_raw(const char *raw);

/* Prints "h5chunk: WHAT: CODE: MESSAGE" (one line) for a failed request. */
void h5c_report(const char *what, const struct h5c_failure *fail);
void h5c_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- cmd_data.c, cmd_admin.c, cmd_prefetch.c: one function per command,
 * each returning an exit status ---- */

int h5c_cmd_meta(struct h5c_http *h, const struct h5c_args *a);
int h5c_cmd_get(struct h5c_http *h, const struct h5c_args *a);
int h5c_cmd_slice(struct h5c_http *h, const struct h5c_args *a);
int h5c_cmd_stats(struct h5c_http *h, const struct h5c_args *a);
int h5c_cmd_cache_ls(struct h5c_http *h, const struct h5c_args *a);
int h5c_cmd_cache_purge(struct h5c_http *h, const struct h5c_args *a);
int h5c_cmd_zarr_url(struct h5c_http *h, const struct h5c_args *a);
int h5c_cmd_prefetch(struct h5c_http *h, const struct h5c_args *a);

#endif
