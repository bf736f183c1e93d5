/*
 * routes_admin.c - the admin API: what is cached (GET /v1/cache), dropping
 * it (DELETE /v1/cache[?url=U]), and background prefetch jobs
 * (POST /v1/prefetch, GET /v1/jobs[/{id}], DELETE /v1/jobs/{id}).
 * When a token is configured these need it (daemon/http.c checks).
 * Handlers run on connection threads; prefetch jobs on their own threads
 * (lib/jobs.c), which the server joins at shutdown.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "jobs.h"
#include "log.h"
#include "prefetch.h"
#include "routes.h"

#define MAX_PREFETCH_CHUNKS 10000000

static enum MHD_Result send_doc(struct server *srv, struct MHD_Connection *conn, unsigned status,
                                json_t *doc)
{
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    if (text == NULL)
        return http_fail(srv, conn, H5CD_E_INTERNAL, "out of memory");
    return http_send_text(srv, conn, status, text, "application/json");
}

/* ---- the cache ---- */

static int list_one(const struct blockcache_file_info *info, void *arg)
{
    json_t *files = arg;
    json_t *entry =
        json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:I, s:I}", "url", info->identity, "size",
                  (json_int_t)info->size, "bytes_cached", (json_int_t)info->bytes_cached, "blocks",
                  (json_int_t)info->blocks, "hits", (json_int_t)info->hits, "validator",
                  info->validator, "last_access", (json_int_t)(info->last_access_us / 1000000),
                  "checked_at", (json_int_t)info->checked_at);
    return entry != NULL ? json_array_append_new(files, entry) : -1;
}

static enum MHD_Result cache_list(struct server *srv, struct MHD_Connection *conn)
{
    json_t *files = json_array();
    if (files == NULL || blockcache_list(srv->cache, list_one, files) < 0) {
        json_decref(files);
        return http_fail(srv, conn, H5CD_E_INTERNAL, "cannot list the cache");
    }
    struct h5cd_gauges g;
    server_gauges(srv, &g);
    return send_doc(srv, conn, MHD_HTTP_OK,
                    json_pack("{s:o, s:I, s:I, s:I}", "files", files, "cache_bytes",
                              (json_int_t)g.cache_bytes, "cache_limit_bytes",
                              (json_int_t)g.cache_limit_bytes, "cache_blocks",
                              (json_int_t)g.cache_blocks));
}

static enum MHD_Result cache_drop(struct server *srv, struct MHD_Connection *conn)
{
    const char *url = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "url");
    if (url == NULL) {
        if (blockcache_drop_all(srv->cache) < 0 || h5index_forget(srv->h5index, NULL) < 0)
            return http_fail(srv, conn, H5CD_E_INTERNAL, "cannot empty the cache");
        log_info("msg=\"cache emptied by the admin API\"");
        return send_doc(srv, conn, MHD_HTTP_OK, json_pack("{s:b}", "dropped", 1));
    }
    char identity[H5CD_MAX_URL_BYTES + 1];
    struct h5cd_error err = {0};
    if (remote_identity(srv->remote, url, identity, sizeof(identity), &err) < 0)
        return http_send_error(srv, conn, &err);
    int rc = blockcache_file_drop(srv->cache, identity);
    h5index_forget(srv->h5index, identity);
    if (rc == -ENOENT)
        return http_fail(srv, conn, H5CD_E_NOT_FOUND, "nothing is cached for that URL");
    if (rc < 0)
        return http_fail(srv, conn, H5CD_E_INTERNAL, "cannot drop the file: %s", strerror(-rc));
    log_info("msg=\"file dropped from the cache by the admin API\"");
    return send_doc(srv, conn, MHD_HTTP_OK, json_pack("{s:b, s:s}", "dropped", 1, "url", identity));
}

enum MHD_Result route_cache(struct server *srv, struct MHD_Connection *conn, const char *method)
{
    if (strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0)
        return cache_list(srv, conn);
    if (strcmp(method, MHD_HTTP_METHOD_DELETE) == 0)
        return cache_drop(srv, conn);
    return http_fail(srv, conn, H5CD_E_METHOD_NOT_ALLOWED, "use GET or DELETE");
}

/* ---- prefetch jobs ---- */

struct prefetch_task {
    struct server *srv;
    char token[RESOLVE_MAX_TOKEN_BYTES + 1]; /* the client's DANDI token, "" for none */
    char url[H5CD_MAX_URL_BYTES + 1];
    char path[H5CD_MAX_PATH_BYTES + 2];
    char select[H5CD_MAX_SELECT_BYTES + 1];
};

struct progress_ctx {
    struct job *job;
};

static bool on_progress(const struct prefetch_progress *p, void *arg)
{
    struct progress_ctx *pc = arg;
    job_progress(pc->job, p->chunks_done, p->chunks_total, p->bytes_done, p->bytes_total,
                 p->errors);
    return !job_cancelled(pc->job);
}

/* Frees a task, wiping the token it may carry. */
static void task_free(void *arg)
{
    struct prefetch_task *t = arg;
    if (t != NULL)
        explicit_bzero(t->token, sizeof(t->token));
    free(t);
}

static void prefetch_job(struct job *job, void *arg)
{
    struct prefetch_task *t = arg;
    struct server *srv = t->srv;
    struct remote_file file;
    struct h5dataset ds;
    struct selection sel;
    struct h5cd_error err = {0};
    char why[128];
    uint64_t *coords = NULL;
    size_t n = 0;
    if (remote_open_as(srv->remote, t->url, t->token, srv->cfg->h5_prefix_bytes, &file, &err) < 0 ||
        h5index_dataset(srv->h5index, &file, t->path, &ds, &err) < 0) {
        job_finish(job, err.message);
        return;
    }
    if (selection_parse(t->select, ds.grid.rank, ds.grid.shape, &sel, why, sizeof(why)) < 0) {
        job_finish(job, why);
        return;
    }
    if (prefetch_selection_chunks(&ds, &sel, MAX_PREFETCH_CHUNKS, &coords, &n, &err) < 0) {
        job_finish(job, err.message);
        return;
    }
    job_progress(job, 0, n, 0, 0, 0);
    struct progress_ctx pc = {.job = job};
    struct prefetch_progress progress;
    int rc = prefetch_chunks(srv->h5index, srv->remote, &file, &ds, coords, n,
                             srv->cfg->batch_inflight_bytes, on_progress, &pc, &progress, &err);
    free(coords);
    job_progress(job, progress.chunks_done, progress.chunks_total, progress.bytes_done,
                 progress.bytes_total, progress.errors);
    if (rc < 0)
        job_finish(job, err.message);
    else if (progress.errors > 0 && !job_cancelled(job))
        job_finish(job, "some chunks could not be fetched");
    else
        job_finish(job, NULL);
}

/* Validates the request fully before a job starts, so errors reach the client. */
static int check_task(struct server *srv, const struct prefetch_task *t, struct h5cd_error *err)
{
    struct remote_file file;
    struct h5dataset ds;
    struct selection sel;
    char why[128];
    if (remote_open_as(srv->remote, t->url, t->token, srv->cfg->h5_prefix_bytes, &file, err) < 0 ||
        h5index_dataset(srv->h5index, &file, t->path, &ds, err) < 0)
        return -1;
    if (selection_parse(t->select, ds.grid.rank, ds.grid.shape, &sel, why, sizeof(why)) < 0)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "bad select: %s", why);
    return 0;
}

static int copy_field(json_t *doc, const char *name, bool required, char *out, size_t cap,
                      struct h5cd_error *err)
{
    json_t *v = json_object_get(doc, name);
    if (v == NULL && !required) {
        out[0] = '\0';
        return 0;
    }
    const char *s = json_string_value(v);
    if (s == NULL)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "'%s' must be a string", name);
    if (strlen(s) >= cap)
        return h5cd_fail(err, H5CD_E_BAD_REQUEST, "'%s' is too long", name);
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

enum MHD_Result route_prefetch(struct server *srv, struct MHD_Connection *conn, const char *body,
                               size_t len)
{
    struct h5cd_error err = {0};
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return http_fail(srv, conn, H5CD_E_BAD_REQUEST, "the body must be a JSON object");
    }
    struct prefetch_task *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        json_decref(doc);
        return http_fail(srv, conn, H5CD_E_INTERNAL, "out of memory");
    }
    t->srv = srv;
    const char *token = http_dandi_token(conn);
    int rc = 0;
    if (token != NULL && strlen(token) >= sizeof(t->token))
        rc = h5cd_fail(&err, H5CD_E_BAD_REQUEST, "X-DANDI-Token too long");
    else if (token != NULL)
        snprintf(t->token, sizeof(t->token), "%s", token);
    if (rc == 0)
        rc = copy_field(doc, "url", true, t->url, sizeof(t->url), &err);
    if (rc == 0)
        rc = copy_field(doc, "path", true, t->path, sizeof(t->path), &err);
    if (rc == 0)
        rc = copy_field(doc, "select", false, t->select, sizeof(t->select), &err);
    json_decref(doc);
    if (rc == 0)
        rc = check_task(srv, t, &err);
    if (rc < 0) {
        task_free(t);
        return http_send_error(srv, conn, &err);
    }
    json_t *desc =
        json_pack("{s:s, s:s, s:s}", "url", t->url, "path", t->path, "select", t->select);
    char *desc_text = desc != NULL ? json_dumps(desc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(desc);
    uint64_t id = 0;
    rc = desc_text != NULL ? jobs_start(srv->jobs, desc_text, prefetch_job, t, task_free, &id)
                           : -ENOMEM;
    free(desc_text);
    if (rc < 0) {
        task_free(t);
        return http_fail(srv, conn, rc == -EAGAIN ? H5CD_E_UNAVAILABLE : H5CD_E_INTERNAL,
                         rc == -EAGAIN ? "too many prefetch jobs running; try again later"
                                       : "cannot start the job");
    }
    return send_doc(srv, conn, MHD_HTTP_ACCEPTED,
                    json_pack("{s:I, s:s}", "job", (json_int_t)id, "state", "running"));
}

static const char *state_name(enum job_state s)
{
    static const char *const names[] = {"running", "done", "failed", "cancelled"};
    return (unsigned)s < 4 ? names[s] : "unknown";
}

static json_t *job_json(const struct job_status *st)
{
    json_t *desc = json_loads(st->description, 0, NULL);
    json_t *doc = json_pack(
        "{s:I, s:s, s:I, s:I, s:I, s:I, s:i, s:I, s:I}", "id", (json_int_t)st->id, "state",
        state_name(st->state), "chunks_done", (json_int_t)st->chunks_done, "chunks_total",
        (json_int_t)st->chunks_total, "bytes_done", (json_int_t)st->bytes_done, "bytes_total",
        (json_int_t)st->bytes_total, "errors", (int)st->errors, "started", (json_int_t)st->started,
        "finished", (json_int_t)st->finished);
    if (doc != NULL && desc != NULL)
        json_object_update(doc, desc);
    json_decref(desc);
    if (doc != NULL && st->error[0] != '\0')
        json_object_set_new(doc, "error", json_string(st->error));
    return doc;
}

static void collect_job(const struct job_status *st, void *arg)
{
    json_array_append_new(arg, job_json(st));
}

enum MHD_Result route_jobs(struct server *srv, struct MHD_Connection *conn, const char *method,
                           const char *url)
{
    const char *rest = url + strlen("/v1/jobs");
    bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    if (rest[0] == '\0' || strcmp(rest, "/") == 0) {
        if (!get)
            return http_fail(srv, conn, H5CD_E_METHOD_NOT_ALLOWED, "use GET");
        json_t *list = json_array();
        jobs_each(srv->jobs, collect_job, list);
        return send_doc(srv, conn, MHD_HTTP_OK, json_pack("{s:o}", "jobs", list));
    }
    char *end = NULL;
    uint64_t id = strtoull(rest + 1, &end, 10);
    if (rest[0] != '/' || end == rest + 1 || *end != '\0' || rest[1] == '-' || rest[1] == '+')
        return http_fail(srv, conn, H5CD_E_NOT_FOUND, "no such job");
    if (strcmp(method, MHD_HTTP_METHOD_DELETE) == 0 && jobs_cancel(srv->jobs, id) < 0)
        return http_fail(srv, conn, H5CD_E_NOT_FOUND, "no job %" PRIu64, id);
    if (!get && strcmp(method, MHD_HTTP_METHOD_DELETE) != 0)
        return http_fail(srv, conn, H5CD_E_METHOD_NOT_ALLOWED, "use GET or DELETE");
    struct job_status st;
    if (jobs_get(srv->jobs, id, &st) < 0)
        return http_fail(srv, conn, H5CD_E_NOT_FOUND, "no job %" PRIu64, id);
    return send_doc(srv, conn, MHD_HTTP_OK, job_json(&st));
}
