/*
 * authtoken.h - the optional bearer token that guards the daemon's API on
 * a shared workstation: read from a private file at start-up and on
 * SIGHUP, compared with a client's `Authorization: Bearer <token>` header.
 */
#ifndef H5CD_AUTHTOKEN_H
#define H5CD_AUTHTOKEN_H

#include <stdbool.h>
#include <stddef.h>

#define AUTHTOKEN_MAX_BYTES 1024 /* a token, without its trailing newline */
#define AUTHTOKEN_MIN_BYTES 16   /* shorter tokens are accepted with a warning */

/*
 * Reads the token from path.  The file must be a regular file that neither
 * group nor others may access (mode 0600 or 0400), holding 1 to
 * AUTHTOKEN_MAX_BYTES printable, non-blank ASCII bytes and at most one
 * trailing newline ("\n" or "\r\n").  Returns 0 with *out set (release it
 * with authtoken_free), or -1 with a one-line reason naming the file in err.
 * Main thread (it may block on the file system).
 */
int authtoken_load(const char *path, char **out, char *err, size_t errlen);

/* Wipes and frees a token.  NULL is a no-op. */
void authtoken_free(char *token);

/*
 * True when header (an Authorization header value, may be NULL) is
 * "Bearer <expected>", the scheme case-insensitive.  The comparison takes
 * time that depends only on the lengths involved, never on where the
 * bytes differ.  Any thread.
 */
bool authtoken_check(const char *expected, const char *header);

#endif
