/*
 * cmd_prefetch.c - h5chunk prefetch: starts a job (POST /v1/prefetch),
 * polls it (GET /v1/jobs/{id}) every H5C_POLL_INTERVAL_MS until it ends or
 * --timeout passes, and shows its progress: a bar redrawn in place on a
 * terminal, a plain line per 10 % otherwise.  Single-threaded; SIGINT only
 * sets a flag, which the loop turns into DELETE /v1/jobs/{id}.  It must
 * never leave a job it started running when it gives up (timeout, Ctrl-C).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "h5chunk.h"

#define MAX_JOB_ID_BYTES  128
#define POLL_TIMEOUT_MS   30000 /* one status request */
#define CANCEL_TIMEOUT_MS 5000
#define DEFAULT_COLUMNS   80

struct job {
    char id[MAX_JOB_ID_BYTES + 1];
    struct h5c_progress progress;
    uint64_t errors; /* chunks the job could not read */
    char state[32];
    char error[H5C_MESSAGE_BYTES];
    char *raw; /* the last status document, for --json */
};

/* How progress is shown. */
struct view {
    bool quiet; /* --json: only the final document */
    bool tty;
    unsigned width;
    size_t drawn;   /* columns of the bar line on screen */
    int last_tenth; /* plain lines: the last 10 % step printed */
    bool printed;
};

static bool job_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > MAX_JOB_ID_BYTES)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

static uint64_t count_of(json_t *doc, const char *name)
{
    json_t *v = json_object_get(doc, name);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static void take_status(struct job *j, json_t *doc)
{
    j->progress.bytes_done = count_of(doc, "bytes_done");
    j->progress.bytes_total = count_of(doc, "bytes_total");
    j->progress.chunks_done = count_of(doc, "chunks_done");
    j->progress.chunks_total = count_of(doc, "chunks_total");
    j->errors = count_of(doc, "errors");
    const char *state = json_string_value(json_object_get(doc, "state"));
    h5c_sanitize(j->state, sizeof(j->state), state != NULL ? state : "");
    json_t *e = json_object_get(doc, "error");
    json_t *code = json_is_object(e) ? json_object_get(e, "code") : e;
    json_t *msg = json_is_object(e) ? json_object_get(e, "message") : NULL;
    j->error[0] = '\0';
    if (json_is_string(code) && json_is_string(msg))
        snprintf(j->error, sizeof(j->error), "%s: %s", json_string_value(code),
                 json_string_value(msg));
    else if (json_is_string(code))
        snprintf(j->error, sizeof(j->error), "%s", json_string_value(code));
}

static int start_job(struct h5c_http *h, const struct h5c_args *a, struct job *j)
{
    struct h5c_failure fail;
    json_t *doc = NULL;
    int rc = -1;
    json_t *req = json_pack("{s:s, s:s}", "url", a->url, "path", a->path);
    if (req != NULL && a->select != NULL)
        json_object_set_new(req, "select", json_string(a->select));
    char *body = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (body == NULL) {
        h5c_errorf("prefetch: out of memory");
        return -1;
    }
    if (h5c_http_json(h, "POST", "/v1/prefetch", body, &doc, NULL, 0, &fail) < 0) {
        h5c_report("prefetch", &fail);
        goto done;
    }
    json_t *id = json_object_get(doc, "job");
    if (json_is_integer(id))
        snprintf(j->id, sizeof(j->id), "%lld", (long long)json_integer_value(id));
    else if (json_is_string(id) && job_id_valid(json_string_value(id)))
        snprintf(j->id, sizeof(j->id), "%s", json_string_value(id));
    if (j->id[0] == '\0') {
        h5c_errorf("prefetch: the daemon's answer has no valid \"job\"");
        goto done;
    }
    rc = 0;
done:
    json_decref(doc);
    free(body);
    return rc;
}

static char *job_target(struct h5c_http *h, const struct job *j)
{
    char *id = h5c_http_escape(h, j->id);
    if (id == NULL)
        return NULL;
    size_t n = strlen("/v1/jobs/") + strlen(id) + 1;
    char *t = malloc(n);
    if (t != NULL)
        snprintf(t, n, "/v1/jobs/%s", id);
    h5c_http_free_str(id);
    return t;
}

/* One status request.  0, or -1 with fail set. */
static int poll_job(struct h5c_http *h, const char *target, struct job *j, struct h5c_failure *fail)
{
    json_t *doc = NULL;
    uint64_t left = h5c_http_remaining_ms(h);
    free(j->raw);
    j->raw = NULL;
    if (left == 0) {
        memset(fail, 0, sizeof(*fail));
        snprintf(fail->message, sizeof(fail->message), "timed out");
        return -1;
    }
    if (h5c_http_json(h, "GET", target, NULL, &doc, &j->raw,
                      left < POLL_TIMEOUT_MS ? left : POLL_TIMEOUT_MS, fail) < 0)
        return -1;
    take_status(j, doc);
    json_decref(doc);
    return 0;
}

static void cancel_job(struct h5c_http *h, const char *target, const struct job *j)
{
    struct h5c_failure fail;
    char what[MAX_JOB_ID_BYTES + 48];
    h5c_http_interruptible(h, false);
    if (h5c_http_request(h, "DELETE", target, NULL, NULL, NULL, NULL, NULL, CANCEL_TIMEOUT_MS,
                         &fail) < 0) {
        snprintf(what, sizeof(what), "prefetch: cannot cancel job %s", j->id);
        h5c_report(what, &fail);
    }
    h5c_http_interruptible(h, true);
}

static void show(struct view *v, const struct h5c_progress *p)
{
    char line[512];
    if (v->quiet)
        return;
    if (v->tty) {
        h5c_progress_line(p, v->width, line, sizeof(line));
        size_t len = strlen(line);
        /* pad over what a longer previous line left on screen */
        printf("\r%s%*s", line, len < v->drawn ? (int)(v->drawn - len) : 0, "");
        v->drawn = len;
        fflush(stdout);
        return;
    }
    int pct = h5c_progress_percent(p);
    int tenth = pct < 0 ? 0 : pct / 10;
    if (v->printed && tenth <= v->last_tenth)
        return;
    printf("prefetch: %s\n", h5c_progress_line(p, 0, line, sizeof(line)));
    fflush(stdout);
    v->last_tenth = tenth;
    v->printed = true;
}

static void end_view(struct view *v)
{
    if (!v->quiet && v->tty && v->drawn > 0) {
        printf("\n");
        v->drawn = 0;
    }
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !h5c_interrupted)
        ;
}

static void init_view(struct view *v, const struct h5c_args *a)
{
    memset(v, 0, sizeof(*v));
    v->quiet = a->json;
    v->tty = isatty(STDOUT_FILENO);
    v->width = DEFAULT_COLUMNS - 1;
    struct winsize ws;
    if (v->tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1)
        v->width = ws.ws_col - 1; /* the last column would wrap on some terminals */
}

/* Polls until the job ends; returns the exit status. */
static int follow(struct h5c_http *h, const struct h5c_args *a, struct job *j, const char *target)
{
    struct view v;
    struct h5c_failure fail;
    char size[32];
    init_view(&v, a);
    for (;;) {
        if (h5c_interrupted) {
            end_view(&v);
            cancel_job(h, target, j);
            h5c_errorf("prefetch: interrupted; job %s cancelled", j->id);
            return H5C_EXIT_INTERRUPT;
        }
        if (h5c_http_remaining_ms(h) == 0) {
            end_view(&v);
            cancel_job(h, target, j);
            h5c_errorf("prefetch: job %s not done within --timeout %.0f s; cancelled", j->id,
                       (double)a->timeout_ms / 1000.0);
            return H5C_EXIT_FAIL;
        }
        if (poll_job(h, target, j, &fail) < 0) {
            end_view(&v);
            if (h5c_interrupted || h5c_http_remaining_ms(h) == 0)
                continue; /* handled above, with a cancel */
            h5c_report("prefetch", &fail);
            return H5C_EXIT_FAIL;
        }
        show(&v, &j->progress);
        if (strcmp(j->state, "done") == 0) {
            end_view(&v);
            if (a->json && h5c_print_raw(j->raw) < 0)
                return H5C_EXIT_FAIL;
            if (!a->json)
                printf("prefetch: job %s done: %llu chunks, %s\n", j->id,
                       (unsigned long long)j->progress.chunks_done,
                       h5c_format_bytes(j->progress.bytes_done, size, sizeof(size)));
            if (j->errors == 0)
                return H5C_EXIT_OK;
            /* the job ended, but the cache is not warm: a script must know */
            h5c_errorf("prefetch: job %s could not read %llu chunks (see the daemon's log)", j->id,
                       (unsigned long long)j->errors);
            return H5C_EXIT_FAIL;
        }
        if (strcmp(j->state, "failed") == 0 || strcmp(j->state, "cancelled") == 0) {
            end_view(&v);
            if (a->json)
                h5c_print_raw(j->raw);
            if (j->state[0] == 'f')
                h5c_errorf("prefetch: job %s failed: %s", j->id,
                           j->error[0] != '\0' ? j->error : "no reason given");
            else
                h5c_errorf("prefetch: job %s was cancelled", j->id);
            return H5C_EXIT_FAIL;
        }
        sleep_ms(H5C_POLL_INTERVAL_MS);
    }
}

int h5c_cmd_prefetch(struct h5c_http *h, const struct h5c_args *a)
{
    struct job j;
    memset(&j, 0, sizeof(j));
    if (start_job(h, a, &j) < 0)
        return h5c_interrupted ? H5C_EXIT_INTERRUPT : H5C_EXIT_FAIL;
    char *target = job_target(h, &j);
    if (target == NULL) {
        h5c_errorf("prefetch: out of memory");
        return H5C_EXIT_FAIL;
    }
    int status = follow(h, a, &j, target);
    free(target);
    free(j.raw);
    return status;
}
