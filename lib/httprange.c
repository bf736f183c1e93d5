/*
 * httprange.c - strict parser for a single byte range.  A cursor walks the
 * header once; every number is bounded (at most 19 digits, no sign, no
 * overflow), anything unexpected is an error rather than a guess.
 */
#include "httprange.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define MAX_DIGITS 19 /* 10^19 > UINT64_MAX / 2: no overflow below this */

bool httprange_read_decimal(const char **cursor, uint64_t *out)
{
    const char *p = *cursor;
    uint64_t value = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        if (++digits > MAX_DIGITS)
            return false;
        value = value * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (digits == 0)
        return false;
    *cursor = p;
    *out = value;
    return true;
}

static const char *skip_spaces(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

int httprange_parse(const char *header, uint64_t size, uint64_t *start, uint64_t *length)
{
    if (header == NULL) {
        *start = 0;
        *length = size;
        return 1;
    }
    const char *p = skip_spaces(header);
    if (strncmp(p, "bytes=", 6) != 0)
        return -EINVAL;
    p = skip_spaces(p + 6);
    uint64_t first = 0, last = 0;
    bool has_first = httprange_read_decimal(&p, &first);
    p = skip_spaces(p);
    if (*p++ != '-')
        return -EINVAL;
    p = skip_spaces(p);
    bool has_last = httprange_read_decimal(&p, &last);
    p = skip_spaces(p);
    if (*p != '\0' || (!has_first && !has_last))
        return -EINVAL; /* trailing junk, a second range, or "bytes=-" */
    if (!has_first) {
        /* suffix range: the last N bytes */
        if (last == 0 || size == 0)
            return -ERANGE;
        *length = last < size ? last : size;
        *start = size - *length;
        return 0;
    }
    if (has_last && last < first)
        return -EINVAL;
    if (first >= size)
        return -ERANGE;
    uint64_t end = has_last && last < size - 1 ? last : size - 1;
    *start = first;
    *length = end - first + 1;
    return 0;
}
