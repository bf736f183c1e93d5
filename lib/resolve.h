/*
 * resolve.h - from the name a client gives (an http(s) URL, s3://,
 * dandi://, dandiasset:) to the URL whose bytes are fetched, and whether
 * that client may be served cached bytes.
 *
 * - s3:// becomes an https URL (no request).
 * - dandi:// paths are looked up in the DANDI API (asset listing by path),
 *   asset ids become {api}/assets/{id}/download/.
 * - A URL under a DANDI API base, or one that carries credentials (signature
 *   parameters, a header from the credentials file, the client's DANDI
 *   token), is *resolved*: one GET of its first byte, following redirects
 *   hop by hop (each hop checked by the URL policy; credentials-file headers
 *   chosen per hop; the client's token sent only to the DANDI API).  That
 *   request both finds the final URL and proves the name is accepted
 *   upstream.  The result is remembered per (name, token) until the final
 *   URL's own signature expires (less a margin) or resolve_ttl_s, and for a
 *   credentialed name at most access_ttl_s.  A refusal is never remembered.
 * - Credential-free URLs go the fast way; resolve_check_public() proves
 *   that a cache identity is readable without credentials, remembered for
 *   access_ttl_s, so bytes first fetched with credentials are never served
 *   to a request without them.
 *
 * Any client thread; requests block the caller.  Tokens and credentials
 * never reach a log line or an error message.
 */
#ifndef H5CD_RESOLVE_H
#define H5CD_RESOLVE_H

#include <stdbool.h>
#include <time.h>

#include "config.h"
#include "credentials.h"
#include "errors.h"
#include "stats.h"
#include "urlpolicy.h"

#define RESOLVE_MAX_ENTRIES     4096 /* remembered resolutions and public identities, each */
#define RESOLVE_EXPIRY_MARGIN_S 30   /* a signed URL is re-resolved this long before it expires */
#define RESOLVE_MAX_TOKEN_BYTES 512  /* a client's DANDI token */
#define RESOLVE_MAX_JSON_BYTES  (4 * 1024 * 1024)

struct resolve;

struct resolve_result {
    char url[H5CD_MAX_URL_BYTES + 1]; /* the http(s) URL to fetch */
    bool credentialed;                /* reached with credentials: never marks anything public */
    bool checked;                     /* upstream accepted it (now or remembered) */
    bool remembered;                  /* from memory, not from a request just made */
    time_t expires;                   /* when the resolution must be redone; 0 = never stored */
};

/* Copies what it needs from cfg.  NULL on allocation failure or a bad
 * s3/dandi option (then *err says why). */
struct resolve *resolve_new(const struct h5cd_config *cfg, struct credstore *creds,
                            struct h5cd_stats *stats, char *err, size_t errlen);
void resolve_free(struct resolve *r);
/* SIGHUP: new options; remembered resolutions are dropped.  0 or -1 with err. */
int resolve_reconfigure(struct resolve *r, const struct h5cd_config *cfg, char *err, size_t errlen);

/* Checks a client's DANDI token (printable ASCII, bounded).  0 or -1 with err. */
int resolve_token_ok(const char *token, struct h5cd_error *err);

/*
 * Turns name into the URL to fetch (see above).  token may be NULL.  With
 * refresh, a remembered resolution is not used (after upstream refused its
 * URL).  0, or -1 with err: H5CD_E_UPSTREAM_DENIED when upstream refused.
 */
int resolve_name(struct resolve *r, const struct urlpolicy *policy, const char *name,
                 const char *token, bool refresh, struct resolve_result *out,
                 struct h5cd_error *err);

/*
 * Plain public URLs that redirect (a landing URL sending every request to a
 * mirror or a presigned S3 URL): the final URL a probe reached is
 * remembered per cache identity until it expires (its own signature less
 * RESOLVE_EXPIRY_MARGIN_S, resolve_ttl_s, and access_ttl_s when it carries
 * credentials), so range requests go straight to it instead of following
 * the hops every time.  Only for names that carry no credentials: their
 * redirects are what anybody asking gets.
 */
void resolve_note_redirect(struct resolve *r, const char *identity, const char *final_url);
/* True, with the remembered final URL in out, when there is one. */
bool resolve_redirect_target(struct resolve *r, const char *identity, char *out, size_t cap);
/* Upstream refused the remembered URL: follow the hops again next time. */
void resolve_forget_redirect(struct resolve *r, const char *identity);

/* Drops every remembered resolution (the credentials changed). */
void resolve_forget_all(struct resolve *r);

/* Drops what is remembered for (name, token). */
void resolve_forget(struct resolve *r, const char *name, const char *token);

/* Marks a cache identity readable without credentials (its bytes were just
 * fetched with a credential-free URL). */
void resolve_mark_public(struct resolve *r, const char *identity);

/*
 * Before cached bytes of `identity` go to a credential-free request for
 * url: returns 0 at once when the identity is known public, else asks
 * upstream for url's first byte and marks it public when accepted.  -1
 * with err (H5CD_E_UPSTREAM_DENIED ...) otherwise.
 */
int resolve_check_public(struct resolve *r, const struct urlpolicy *policy, const char *url,
                         const char *identity, struct h5cd_error *err);

/* access_ttl_s in effect. */
unsigned resolve_access_ttl(struct resolve *r);

/* True when url carries credentials: signature parameters or a header
 * from the credentials file. */
bool resolve_url_has_credentials(struct resolve *r, const char *url);

#endif
