/*
 * authtoken.c - loading and checking the API's bearer token.
 *
 * The loader runs on the main thread (start-up, SIGHUP) and refuses a
 * token file others could read: a token anyone on the machine can see
 * protects nothing.  The check runs on connection threads; it must never
 * return early on the first differing byte, so that response times do not
 * tell an attacker how much of a guess was right.  Never logs the token.
 */
#include "authtoken.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"

#define BEARER "Bearer "

/* Reads at most cap bytes; *len < cap means the whole file was read. */
static int read_bounded(int fd, char *buf, size_t cap, size_t *len)
{
    size_t used = 0;
    while (used < cap) {
        ssize_t n = read(fd, buf + used, cap - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        used += (size_t)n;
    }
    *len = used;
    return 0;
}

/* Checks the token's bytes, after the trailing newline has been cut. */
static int check_bytes(const char *path, const char *tok, size_t len, char *err, size_t errlen)
{
    if (len == 0)
        return h5cd_errf(err, errlen, "token_file %s: the file is empty", path);
    if (len > AUTHTOKEN_MAX_BYTES)
        return h5cd_errf(err, errlen, "token_file %s: the token is longer than %d bytes", path,
                         AUTHTOKEN_MAX_BYTES);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)tok[i];
        if (c <= 0x20 || c >= 0x7f)
            return h5cd_errf(err, errlen,
                             "token_file %s: the token must be one line of printable ASCII without "
                             "blanks",
                             path);
    }
    return 0;
}

int authtoken_load(const char *path, char **out, char *err, size_t errlen)
{
    /* Room for the longest token, "\r\n", and one byte to notice a longer file. */
    char buf[AUTHTOKEN_MAX_BYTES + 3];
    size_t len = 0;
    struct stat st;
    int rc = -1;
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return h5cd_errf(err, errlen, "token_file %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        h5cd_errf(err, errlen, "token_file %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        h5cd_errf(err, errlen, "token_file %s: not a regular file", path);
        goto done;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        h5cd_errf(err, errlen,
                  "token_file %s: group or others may access it (mode %04o); chmod 600 it", path,
                  (unsigned)(st.st_mode & 07777));
        goto done;
    }
    int r = read_bounded(fd, buf, sizeof(buf), &len);
    if (r < 0) {
        h5cd_errf(err, errlen, "token_file %s: %s", path, strerror(-r));
        goto done;
    }
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    if (check_bytes(path, buf, len, err, errlen) < 0)
        goto done;
    *out = malloc(len + 1);
    if (*out == NULL) {
        h5cd_errf(err, errlen, "token_file %s: out of memory", path);
        goto done;
    }
    memcpy(*out, buf, len);
    (*out)[len] = '\0';
    rc = 0;
done:
    explicit_bzero(buf, sizeof(buf));
    close(fd);
    return rc;
}

void authtoken_free(char *token)
{
    if (token == NULL)
        return;
    explicit_bzero(token, strlen(token));
    free(token);
}

bool authtoken_check(const char *expected, const char *header)
{
    if (expected == NULL || header == NULL)
        return false;
    size_t plen = strlen(BEARER);
    if (strncasecmp(header, BEARER, plen) != 0)
        return false;
    const unsigned char *given = (const unsigned char *)header + plen;
    const unsigned char *want = (const unsigned char *)expected;
    size_t glen = strlen((const char *)given);
    size_t wlen = strlen(expected);
    /* Walks the whole expected token whatever the input; a length mismatch
     * is folded into the same accumulator instead of returning early. */
    volatile unsigned char diff = glen != wlen;
    for (size_t i = 0; i < wlen; i++)
        diff |= want[i] ^ (i < glen ? given[i] : 0);
    return diff == 0 && wlen > 0;
}
