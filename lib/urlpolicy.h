/*
 * urlpolicy.h - which upstream URLs h5chunkd may fetch, and what identity a
 * URL has in the cache.
 *
 * A URL is accepted only if it is an absolute http(s) URL of bounded length
 * with a host, no user credentials and no control characters, that starts
 * with an allowed prefix (when any are configured) and with no denied one.
 * Addresses are checked separately, at connect time, by
 * urlpolicy_addr_allowed(), so that DNS answers and redirects are checked
 * too (no SSRF through the daemon).  Read-only after creation: any thread.
 */
#ifndef H5CD_URLPOLICY_H
#define H5CD_URLPOLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config.h"
#include "errors.h"

struct urlpolicy;

/* Builds a policy from the allow/deny/strip lists and allow_private_upstreams
 * of cfg (copied; cfg may be freed afterwards).  NULL on allocation failure. */
struct urlpolicy *urlpolicy_new(const struct h5cd_config *cfg);
void urlpolicy_free(struct urlpolicy *policy);

/*
 * Checks url.  On success returns 0 and writes into `identity` (capacity
 * idcap, at least H5CD_MAX_URL_BYTES + 1) the URL's cache identity: scheme
 * and host lower-cased, default port and fragment removed, the configured
 * query parameters (presigned-URL signatures) removed.  The URL to fetch
 * stays the caller's original.  On failure returns -1 and fills err with
 * H5CD_E_BAD_REQUEST (malformed) or H5CD_E_URL_NOT_ALLOWED (policy).
 */
int urlpolicy_check(const struct urlpolicy *policy, const char *url, char *identity, size_t idcap,
                    struct h5cd_error *err);

/* True when an upstream connection to addr is permitted: loopback,
 * private (RFC 1918, RFC 4193 ULA), link-local, CGNAT (100.64/10),
 * unspecified, multicast, broadcast and IPv4-mapped forms of these are
 * refused unless allow_private_upstreams is set. */
bool urlpolicy_addr_allowed(const struct urlpolicy *policy, const struct sockaddr *addr,
                            socklen_t len);

/* True if host (a Host header value, possibly with :port, possibly a
 * bracketed IPv6 literal) names this machine's loopback interface:
 * "localhost", "*.localhost", 127.0.0.0/8 or ::1. */
bool urlpolicy_host_is_loopback(const char *host);

#endif
