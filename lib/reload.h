/*
 * reload.h - building a configuration the way the daemon does (defaults,
 * then the file, then the command line) and deciding what a SIGHUP may
 * change in a running daemon.
 *
 * SIGHUP builds a fresh struct h5cd_config from the same file and the same
 * command-line overrides.  If that fails the running configuration stays.
 * Otherwise reload_plan() compares the two: options marked reloadable in
 * config.c are taken over, every other changed option is put back to its
 * running value in the new struct (so the new struct describes what is in
 * effect) and named in the plan so the daemon can log "needs a restart".
 * Main thread only.
 */
#ifndef H5CD_RELOAD_H
#define H5CD_RELOAD_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define RELOAD_NAMES_BYTES 1024 /* comma-separated option names; every name fits */

struct reload_override {
    const char *key;   /* an option name */
    const char *value; /* its textual value */
};

/*
 * Fills cfg from the built-in defaults, then the INI file at path (skipped
 * when path is NULL), then the overrides in order, then config_validate.
 * Returns 0, or -1 with a one-line reason in err; cfg is then empty (freed)
 * either way the caller may call config_free on it.
 */
int reload_build(struct h5cd_config *cfg, const char *path, const struct reload_override *ov,
                 size_t nov, char *err, size_t errlen);

struct reload_plan {
    size_t napply;                  /* changed options that take effect */
    size_t nrestart;                /* changed options that need a restart */
    char apply[RELOAD_NAMES_BYTES]; /* their names, "a,b,c" ("" if none) */
    char restart[RELOAD_NAMES_BYTES];
    /* What the daemon must redo for the options that take effect. */
    bool log_level;
    bool cache_size;
    bool policy;     /* allow/deny/strip lists or allow_private_upstreams */
    bool revalidate; /* revalidate_s */
    bool resolve;    /* s3_*, dandi_*, resolve_ttl_s, access_ttl_s, strip_query_params */
};

/*
 * Compares the running configuration with next (a fresh reload_build) and
 * fills plan.  Options that need a restart are copied back from running
 * into next.  Returns 0, or -ENOMEM (next is then partly reverted: free it
 * and keep running).
 */
int reload_plan(const struct h5cd_config *running, struct h5cd_config *next,
                struct reload_plan *plan);

#endif
