/*
 * presign.h - what a presigned URL says about itself: whether it carries
 * credentials in its query, and until when it is valid.
 *
 * Recognised expiries: AWS Signature V4 (X-Amz-Date + X-Amz-Expires), the
 * same in Google's spelling (X-Goog-Date + X-Goog-Expires), and an absolute
 * Expires=EPOCH-SECONDS (AWS Signature V2, CloudFront canned policies).
 * Pure string work: any thread.
 */
#ifndef H5CD_PRESIGN_H
#define H5CD_PRESIGN_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "config.h"

#define PRESIGN_MAX_EXPIRES_S (7 * 24 * 3600) /* AWS's own upper bound on X-Amz-Expires */

/* True when url's query holds a parameter named in `params` (the
 * configured strip_query_params: signatures and their companions). */
bool presign_has_credentials(const char *url, const struct strlist *params);

/*
 * Finds the expiry the URL's query states.  Returns 1 and writes the
 * absolute time (seconds since the epoch) to *expires; 0 when the URL
 * states none; -1 when it states one malformed (then the URL should be
 * treated as already expired).
 */
int presign_expiry(const char *url, time_t *expires);

/* "20240101T000000Z" -> seconds since the epoch (UTC).  0 or -1. */
int presign_parse_amz_date(const char *text, size_t len, time_t *out);

#endif
