/*
 * fuzz_urlpolicy.c - libFuzzer harness for the upstream URL policy
 * (lib/urlpolicy.c): the URL a client names, checked against allow, deny and
 * strip lists, and the Host header check.  Input: a selector byte (which
 * policy: none, an allow list, a deny list, private addresses allowed), then
 * the URL.  Properties: an accepted URL's identity fits and is NUL-terminated,
 * and names http(s); a refused one has an error code.  (Identities are not
 * yet canonical: "http://1./" gives "http://1/", which gives
 * "http://0.0.0.1/"; a percent-encoded host behaves alike.  Two identities
 * for one resource only cost cache space, so that is not asserted here.)
 */
#include "config.h"
#include "fuzz_common.h"
#include "urlpolicy.h"

static struct urlpolicy *policies[4];

static struct urlpolicy *make_policy(int which)
{
    struct h5cd_config cfg;
    char err[256];
    if (config_init(&cfg) < 0)
        abort();
    const char *key = which == 1 ? "allow_prefixes" : which == 2 ? "deny_prefixes" : NULL;
    if (key != NULL &&
        config_set(&cfg, key, "https://dandiarchive.s3.amazonaws.com/,http://Example.ORG:80/a", err,
                   sizeof(err)) < 0)
        abort();
    if (which == 3 && config_set(&cfg, "allow_private_upstreams", "true", err, sizeof(err)) < 0)
        abort();
    struct urlpolicy *p = urlpolicy_new(&cfg);
    config_free(&cfg);
    if (p == NULL)
        abort();
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    int which = (int)(fuzz_take(&in, 1) % 4);
    if (policies[which] == NULL)
        policies[which] = make_policy(which);
    char *url = fuzz_rest_string(&in, NULL);
    char identity[H5CD_MAX_URL_BYTES + 1];
    struct h5cd_error err = {0};
    int rc = urlpolicy_check(policies[which], url, identity, sizeof(identity), &err);
    FUZZ_ASSERT(rc == 0 || rc == -1);
    if (rc == 0) {
        FUZZ_ASSERT(memchr(identity, '\0', sizeof(identity)) != NULL);
        FUZZ_ASSERT(strncmp(identity, "http://", 7) == 0 || strncmp(identity, "https://", 8) == 0);
    } else {
        FUZZ_ASSERT(err.code != H5CD_OK);
    }
    (void)urlpolicy_host_is_loopback(url);
    free(url);
    return 0;
}
