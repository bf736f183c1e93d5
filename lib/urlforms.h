/*
 * urlforms.h - the names users give files besides http(s) URLs, turned
 * into the http(s) URLs h5chunkd fetches.
 *
 *   s3://BUCKET/KEY                      a public S3 object, fetched over HTTPS
 *   dandi://INSTANCE/DANDISET[@VERSION]/PATH
 *                                        dandi-cli's form: an asset of a Dandiset
 *                                        version (draft by default) by its path
 *   dandiasset:ASSET_ID                  a DANDI asset by id, the form of the "id"
 *                                        in DANDI asset metadata; on the instance
 *                                        named DANDI
 *   dandi://INSTANCE/assets/ASSET_ID     an asset by id on a named instance
 *
 * Everything here is pure: parsing and building strings, and reading the
 * JSON the DANDI API answers.  No I/O, no locks: any thread.  Every input is
 * hostile: lengths are bounded, characters checked, nothing is guessed.
 */
#ifndef H5CD_URLFORMS_H
#define H5CD_URLFORMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "errors.h"
#include "h5cd_limits.h"

#define URLFORMS_MAX_INSTANCE_BYTES 64  /* an instance name */
#define URLFORMS_MAX_VERSION_BYTES  32  /* "draft" or "0.230101.1234" */
#define URLFORMS_MAX_BUCKET_BYTES   63  /* S3's own limit */
#define URLFORMS_ASSET_ID_BYTES     36  /* a UUID in its 8-4-4-4-12 form */
#define URLFORMS_MAX_API_BYTES      512 /* an API base URL */
#define URLFORMS_MAX_ASSET_PAGES    10  /* pages of an asset listing read to find one path */

enum urlform_kind {
    URLFORM_HTTP,        /* http:// or https://: used as given */
    URLFORM_S3,          /* s3://BUCKET/KEY */
    URLFORM_DANDI_PATH,  /* dandi://INSTANCE/DANDISET[@VERSION]/PATH */
    URLFORM_DANDI_ASSET, /* dandiasset:ID or dandi://INSTANCE/assets/ID */
};

struct urlform {
    enum urlform_kind kind;
    char instance[URLFORMS_MAX_INSTANCE_BYTES + 1]; /* lower-cased; DANDI forms */
    char dandiset[7];                               /* six digits */
    char version[URLFORMS_MAX_VERSION_BYTES + 1];   /* "draft" when not given */
    char asset_id[URLFORMS_ASSET_ID_BYTES + 1];     /* lower-cased UUID */
    char bucket[URLFORMS_MAX_BUCKET_BYTES + 1];
    char path[H5CD_MAX_URL_BYTES + 1]; /* S3 key or asset path, percent-decoded */
};

/* Where s3:// URLs go. */
struct urlforms_s3 {
    const char *endpoint; /* "" for AWS, else "https://host[:port]" or "http://..." */
    const char *region;   /* AWS region; us-east-1 uses the global endpoint */
    bool path_style;      /* endpoint/BUCKET/KEY instead of BUCKET.endpoint/KEY */
};

/* True when text starts with one of the schemes above (not http/https). */
bool urlforms_is_form(const char *text);

/* Parses text into out.  Anything that is not one of the forms above is
 * URLFORM_HTTP with nothing else filled (the URL policy judges it).
 * 0, or -1 with err (H5CD_E_BAD_REQUEST) for a malformed form. */
int urlforms_parse(const char *text, struct urlform *out, struct h5cd_error *err);

/* The https URL of s3://bucket/key: the key percent-encoded byte by byte
 * except unreserved characters and '/'.  Buckets whose names hold dots use
 * path style over https (a dotted host breaks the certificate wildcard).
 * 0, or -1 with err. */
int urlforms_s3_url(const struct urlforms_s3 *s3, const char *bucket, const char *key, char *out,
                    size_t cap, struct h5cd_error *err);

/* The API base URL (no trailing '/') of a DANDI instance: "dandi" is
 * dandi_api; other names come from `instances` ("NAME=URL" items, names
 * compared case-insensitively), then the built-in "dandi-sandbox".
 * 0, or -1 with err (H5CD_E_BAD_REQUEST for an unknown name). */
int urlforms_dandi_api(const char *dandi_api, const struct strlist *instances, const char *name,
                       char *out, size_t cap, struct h5cd_error *err);

/* {api}/dandisets/{dandiset}/versions/{version}/assets/?path={path, encoded}. */
int urlforms_dandi_assets_url(const char *api, const struct urlform *form, char *out, size_t cap,
                              struct h5cd_error *err);

/* {api}/assets/{asset_id}/download/ */
int urlforms_dandi_download_url(const char *api, const char *asset_id, char *out, size_t cap,
                                struct h5cd_error *err);

/*
 * Reads one page of a DANDI asset listing ({"count", "next", "results":
 * [{"asset_id", "path", ...}]}) and looks for the asset whose path is
 * exactly `path` (the API matches prefixes).  On a match returns 1 and
 * writes its id; returns 0 when this page has none and writes the next
 * page's URL into next (empty when there is none); -1 with err when the
 * document is malformed.
 */
int urlforms_dandi_find_asset(const char *json, size_t len, const char *path,
                              char asset_id[URLFORMS_ASSET_ID_BYTES + 1], char *next,
                              size_t next_cap, struct h5cd_error *err);

/* Percent-encodes src into out: every byte but unreserved ones and, when
 * keep_slash, '/'.  0, or -1 when out is too small. */
int urlforms_encode(const char *src, bool keep_slash, char *out, size_t cap);

#endif
