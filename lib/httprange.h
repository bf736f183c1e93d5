/*
 * httprange.h - parsing of a client's single HTTP Range header
 * (RFC 9110 §14.1.2: "bytes=A-B", "bytes=A-", "bytes=-N").  Pure; any thread.
 */
#ifndef H5CD_HTTPRANGE_H
#define H5CD_HTTPRANGE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Resolves `header` (may be NULL) against a resource of `size` bytes.
 * Returns 0 with [*start, *start + *length) set (B past the end is clamped);
 * 1 when header is NULL (the whole resource, *start = 0, *length = size);
 * -EINVAL when the header is malformed, names another unit or several ranges;
 * -ERANGE when the range cannot be satisfied (A >= size, or "-0").
 */
int httprange_parse(const char *header, uint64_t size, uint64_t *start, uint64_t *length);

/* Reads 1 to 19 decimal digits at *cursor (no sign, so no overflow) and advances it.
 * False, with *cursor unchanged, when there are none or too many.  Shared by every
 * parser of HTTP numbers (Range, Content-Range, Content-Length, status codes). */
bool httprange_read_decimal(const char **cursor, uint64_t *out);

#endif
