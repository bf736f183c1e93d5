/*
 * reload.c - configuration precedence and the SIGHUP plan (see reload.h).
 *
 * Which options are reloadable is a property of their row in config.c
 * (F_RELOAD); this file only turns a config_diff into the list of things
 * the daemon must redo.  Main thread only; it reads the config file and
 * allocates, and never touches the running daemon itself.
 */
#include "reload.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int reload_build(struct h5cd_config *cfg, const char *path, const struct reload_override *ov,
                 size_t nov, char *err, size_t errlen)
{
    if (config_init(cfg) < 0) {
        memset(cfg, 0, sizeof(*cfg));
        snprintf(err, errlen, "cannot set the defaults (out of memory, or no home directory)");
        return -1;
    }
    if (path != NULL && config_load_file(cfg, path, err, errlen) < 0)
        goto fail;
    for (size_t i = 0; i < nov; i++) {
        char why[H5CD_MAX_ERROR_MESSAGE];
        if (config_set(cfg, ov[i].key, ov[i].value, why, sizeof(why)) < 0) {
            int n = snprintf(err, errlen, "command line: %s", why);
            (void)n; /* a longer reason is cut; the line stays a line */
            goto fail;
        }
    }
    if (config_validate(cfg, err, errlen) < 0)
        goto fail;
    return 0;
fail:
    config_free(cfg);
    return -1;
}

struct plan_ctx {
    struct reload_plan *plan;
    const struct h5cd_config *running;
    struct h5cd_config *next;
    int rc;
};

/* Appends name to a comma-separated list; the buffer holds every option name. */
static void add_name(char *list, const char *name)
{
    size_t used = strlen(list);
    int n = snprintf(list + used, RELOAD_NAMES_BYTES - used, "%s%s", used > 0 ? "," : "", name);
    (void)n; /* RELOAD_NAMES_BYTES exceeds the sum of all option names */
}

static void on_diff(const char *name, bool reloadable, void *arg)
{
    struct plan_ctx *ctx = arg;
    struct reload_plan *plan = ctx->plan;
    if (!reloadable) {
        plan->nrestart++;
        add_name(plan->restart, name);
        int rc = config_copy_option(ctx->next, ctx->running, name);
        if (rc < 0 && ctx->rc == 0)
            ctx->rc = rc;
        return;
    }
    plan->napply++;
    add_name(plan->apply, name);
    if (strcmp(name, "log_level") == 0)
        plan->log_level = true;
    else if (strcmp(name, "cache_size") == 0)
        plan->cache_size = true;
    else if (strcmp(name, "revalidate_s") == 0)
        plan->revalidate = true;
    else if (strcmp(name, "allow_prefixes") == 0 || strcmp(name, "deny_prefixes") == 0 ||
             strcmp(name, "strip_query_params") == 0 ||
             strcmp(name, "allow_private_upstreams") == 0 ||
             strcmp(name, "allow_upstream_networks") == 0)
        plan->policy = true;
    if (strncmp(name, "s3_", 3) == 0 || strncmp(name, "dandi_", 6) == 0 ||
        strcmp(name, "resolve_ttl_s") == 0 || strcmp(name, "access_ttl_s") == 0 ||
        strcmp(name, "strip_query_params") == 0)
        plan->resolve = true;
}

int reload_plan(const struct h5cd_config *running, struct h5cd_config *next,
                struct reload_plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    struct plan_ctx ctx = {.plan = plan, .running = running, .next = next};
    config_diff(running, next, on_diff, &ctx);
    return ctx.rc;
}
