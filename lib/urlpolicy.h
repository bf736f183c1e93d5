/*
 * urlpolicy.h - which upstream URLs h5chunkd may fetch, and what identity a
 * URL has in the cache.
 *
 * A URL is accepted only if it is an absolute http(s) URL of bounded length
 * with a host, no user credentials and no control characters, that starts
 * with an allowed prefix (when any are configured) and with no denied one.
 * Hosts are compared in one canonical spelling (urlpolicy_normalize_host),
 * so that no other spelling of a denied host (127.1, 0x7f.0.0.1,
 * 2130706433, a trailing dot, upper case, [::ffff:127.0.0.1]) slips past a
 * prefix.  Addresses are checked separately, at connect time, by
 * urlpolicy_addr_allowed(), so that DNS answers and redirects are checked
 * too (no SSRF through the daemon).  Read-only after creation: any thread.
 * The parsing functions are pure and bounded (fuzzed).
 */
#ifndef H5CD_URLPOLICY_H
#define H5CD_URLPOLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config.h"
#include "errors.h"

struct urlpolicy;

/* An address block of allow_upstream_networks. */
struct urlpolicy_network {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network order; the first 4 bytes for AF_INET */
    unsigned bits;          /* prefix length */
};

/* Parses "A.B.C.D/N", "V6/N" or a single address (a /32 or /128).  Host bits
 * must be zero.  0, or -1 when text is not such a block. */
int urlpolicy_parse_network(const char *text, struct urlpolicy_network *out);

/*
 * Writes the canonical spelling of a URL's host (as libcurl returns it,
 * without port) into out (capacity cap): lower case, no trailing dot, IPv4
 * in any numeric form (127.1, 0x7f.0.0.1, 017700000001, 2130706433) as a
 * dotted quad, IPv4-mapped and IPv4-compatible IPv6 as their IPv4 address,
 * other IPv6 in RFC 5952 form within brackets.  Refuses (-1, with err
 * H5CD_E_BAD_REQUEST) percent-escapes, characters outside [a-z0-9._-],
 * empty labels, a numeric last label that is not a valid IPv4 address and
 * a numeric host with a trailing dot (no resolver reads it as an address).
 */
int urlpolicy_normalize_host(const char *host, char *out, size_t cap, struct h5cd_error *err);

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
 * unspecified, multicast, broadcast, and the IPv4-mapped, -compatible,
 * NAT64 and 6to4 forms of these (Teredo and site-local IPv6 too) are
 * refused unless allow_private_upstreams is set or addr lies in one of
 * allow_upstream_networks. */
bool urlpolicy_addr_allowed(const struct urlpolicy *policy, const struct sockaddr *addr,
                            socklen_t len);

/* True if host (a Host header value, possibly with :port, possibly a
 * bracketed IPv6 literal) names this machine's loopback interface:
 * "localhost", "*.localhost", 127.0.0.0/8 or ::1. */
bool urlpolicy_host_is_loopback(const char *host);

#endif
