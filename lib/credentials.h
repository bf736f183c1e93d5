/*
 * credentials.h - headers h5chunkd adds to upstream requests, from a
 * private file mapping URL prefixes or host names to headers:
 *
 *   # MATCH                               HEADER
 *   https://api.dandiarchive.org/api/     Authorization: token 0123abcd...
 *   data.example.org                      Authorization: Bearer eyJ...
 *
 * MATCH is a URL prefix (it has "://"; it matches at a '/', '?' or the end
 * of the URL, never inside a host name or a path segment) or a host name
 * (it matches https URLs of exactly that host, any port: a secret never
 * goes out over plain http unless a prefix says so).  When several rules
 * set one header for a URL, the longest prefix wins and prefixes win over
 * host names.  Several headers per MATCH are several lines.
 *
 * A set is immutable and reference counted: the daemon swaps in a new one
 * on SIGHUP while requests still hold the old one.  Header values are
 * secrets: never logged, never echoed, wiped when freed.
 */
#ifndef H5CD_CREDENTIALS_H
#define H5CD_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>

#define CREDENTIALS_MAX_FILE_BYTES   (64 * 1024) /* the whole file */
#define CREDENTIALS_MAX_RULES        256         /* lines with a rule */
#define CREDENTIALS_MAX_HEADER_BYTES 4096        /* one "Name: value" */
#define CREDENTIALS_MAX_MATCHED      16          /* headers one URL may get */

struct credentials;

/*
 * Reads path ("" gives an empty set).  The file must be a regular file
 * owned by the daemon's user (or root) that neither group nor others may access
 * (0600 or 0400), and not a symbolic link.  Returns 0 with *out (release
 * with credentials_release), or -1 with a one-line reason naming the file
 * and line (never a header value) in err.  Main thread.
 */
int credentials_load(const char *path, struct credentials **out, char *err, size_t errlen);

/* Parses text (what a file holds; `name` is used in messages only). */
int credentials_parse(const char *name, const char *text, size_t len, struct credentials **out,
                      char *err, size_t errlen);

/* Reference counting; any thread.  release(NULL) is a no-op. */
struct credentials *credentials_retain(struct credentials *creds);
void credentials_release(struct credentials *creds);

/* Number of rules (for the start-up log line). */
size_t credentials_count(const struct credentials *creds);

/*
 * Writes into headers[] (at most max) the "Name: value" lines to send with
 * a request to url; pointers are borrowed from creds.  Returns how many.
 * Any thread.
 */
size_t credentials_headers(const struct credentials *creds, const char *url, const char **headers,
                           size_t max);

/* A swappable current set, for the daemon. */
struct credstore;
struct credstore *credstore_new(struct credentials *initial); /* takes the reference */
void credstore_free(struct credstore *store);
void credstore_set(struct credstore *store, struct credentials *creds); /* takes the reference */
struct credentials *credstore_get(struct credstore *store); /* a new reference; release it */

#endif
