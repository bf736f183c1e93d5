/*
 * args.c - h5chunk's command line: argv (and the values of two environment
 * variables, passed in) to a struct h5c_args, and the daemon address
 * syntax.  Pure: it never reads the environment, files or the clock, so
 * tests/unit/check_h5chunk_args.c can drive it with any input.  It must
 * never accept a chunk key that is not a safe file name.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5chunk.h"

#define ECHO_BYTES 64 /* how much of a bad argument an error repeats */

/* Commands an option applies to, as a bit mask of 1 << enum h5c_command. */
#define ALL_COMMANDS 0xFFFFu
#define BIT(c)       (1u << (c))

enum opt_id {
    O_HELP,
    O_VERSION,
    O_DAEMON,
    O_TOKEN,
    O_DANDI_TOKEN,
    O_JSON,
    O_TIMEOUT,
    O_DECODE,
    O_OUT,
    O_ALL
};

struct opt {
    enum opt_id id;
    const char *name; /* long name, without "--" */
    char short_name;  /* 0 when none */
    bool has_value;
    unsigned commands;
};

static const struct opt opts[] = {
    {O_HELP, "help", 'h', false, ALL_COMMANDS},
    {O_VERSION, "version", 'V', false, ALL_COMMANDS},
    {O_DAEMON, "daemon", 0, true, ALL_COMMANDS},
    {O_TOKEN, "token", 0, true, ALL_COMMANDS},
    {O_DANDI_TOKEN, "dandi-token", 0, true, ALL_COMMANDS},
    {O_JSON, "json", 0, false, ALL_COMMANDS},
    {O_TIMEOUT, "timeout", 0, true, ALL_COMMANDS},
    {O_DECODE, "decode", 0, false, BIT(H5C_CMD_GET)},
    {O_OUT, "output", 'o', true, BIT(H5C_CMD_GET) | BIT(H5C_CMD_SLICE)},
    {O_ALL, "all", 0, false, BIT(H5C_CMD_CACHE_PURGE)},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static int errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        if (n < 0)
            err[0] = '\0';
    }
    return -EINVAL;
}

/* A bad argument repeated in a message: printable, bounded, one line. */
static const char *echo(const char *s, char *buf, size_t cap)
{
    size_t n = 0;
    for (; s[n] != '\0' && n < ECHO_BYTES && n + 4 < cap; n++) {
        unsigned char c = (unsigned char)s[n];
        buf[n] = (c >= 0x20 && c != 0x7f) ? (char)c : '?';
    }
    if (s[n] != '\0' && n + 4 <= cap) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

const char *h5c_command_name(enum h5c_command cmd)
{
    switch (cmd) {
    case H5C_CMD_META:
        return "meta";
    case H5C_CMD_GET:
        return "get";
    case H5C_CMD_SLICE:
        return "slice";
    case H5C_CMD_PREFETCH:
        return "prefetch";
    case H5C_CMD_STATS:
        return "stats";
    case H5C_CMD_CACHE_LS:
        return "cache ls";
    case H5C_CMD_CACHE_PURGE:
        return "cache purge";
    case H5C_CMD_ZARR_URL:
        return "zarr-url";
    case H5C_CMD_NONE:
        break;
    }
    return "";
}

/* ---- daemon addresses ---- */

static bool has_space_or_control(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s == 0x7f)
            return true;
    return false;
}

static int parse_unix(const char *path, struct h5c_daemon *d, char *err, size_t errlen)
{
    size_t len = strlen(path);
    if (path[0] != '/')
        return errf(err, errlen, "a unix: daemon address needs an absolute socket path");
    if (len > H5C_MAX_UNIX_PATH)
        return errf(err, errlen, "unix socket path longer than %d bytes", H5C_MAX_UNIX_PATH);
    memcpy(d->unix_path, path, len + 1);
    memcpy(d->base, H5C_UNIX_BASE, sizeof(H5C_UNIX_BASE));
    return 0;
}

int h5c_daemon_parse(const char *text, struct h5c_daemon *d, char *err, size_t errlen)
{
    char e[ECHO_BYTES + 4];
    memset(d, 0, sizeof(*d));
    if (text == NULL || text[0] == '\0')
        return errf(err, errlen, "empty daemon address");
    if (has_space_or_control(text))
        return errf(err, errlen, "daemon address '%s' contains spaces or control characters",
                    echo(text, e, sizeof(e)));
    if (strncmp(text, "unix:", 5) == 0)
        return parse_unix(text + 5, d, err, errlen);

    const char *scheme = "http://";
    const char *rest = text;
    if (strncmp(text, "http://", 7) == 0) {
        rest = text + 7;
    } else if (strncmp(text, "https://", 8) == 0) {
        scheme = "https://";
        rest = text + 8;
    } else if (strstr(text, "://") != NULL) {
        return errf(err, errlen, "daemon address '%s': only http://, https:// and unix: work",
                    echo(text, e, sizeof(e)));
    }
    if (rest[0] == '\0' || rest[0] == '/' || rest[0] == ':')
        return errf(err, errlen, "daemon address '%s' has no host", echo(text, e, sizeof(e)));
    if (strpbrk(rest, "?#@") != NULL)
        return errf(err, errlen, "daemon address '%s' must not have a query, fragment or user",
                    echo(text, e, sizeof(e)));
    size_t slen = strlen(scheme), rlen = strlen(rest);
    while (rlen > 0 && rest[rlen - 1] == '/')
        rlen--; /* targets start with '/' */
    if (slen + rlen > H5C_MAX_DAEMON_BYTES)
        return errf(err, errlen, "daemon address longer than %d bytes", H5C_MAX_DAEMON_BYTES);
    memcpy(d->base, scheme, slen);
    memcpy(d->base + slen, rest, rlen);
    d->base[slen + rlen] = '\0';
    return 0;
}

/* ---- options ---- */

static const struct opt *find_long(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

static const struct opt *find_short(char c)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].short_name != 0 && opts[i].short_name == c)
            return &opts[i];
    return NULL;
}

/* What the scan of argv found before the command is known. */
struct scan {
    const char **pos; /* positional arguments, in order */
    size_t npos;
    const char *values[NOPTS];  /* option values (or "" for flags) by opt_id; NULL if unseen */
    const char *spelled[NOPTS]; /* how each option was written, for messages */
};

static int set_opt(struct scan *s, const struct opt *o, const char *value, const char *as)
{
    s->values[o->id] = value != NULL ? value : "";
    s->spelled[o->id] = as;
    return 0;
}

/* One argv element that starts with '-'; may consume the next one as a value. */
static int scan_option(struct scan *s, int argc, char *const *argv, int *i, char *err,
                       size_t errlen)
{
    const char *arg = argv[*i];
    char e[ECHO_BYTES + 4];
    const struct opt *o;
    const char *value = NULL;

    if (arg[1] == '-') {
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        o = find_long(name, len);
        if (o == NULL)
            return errf(err, errlen, "unknown option '%s'", echo(arg, e, sizeof(e)));
        if (eq != NULL) {
            if (!o->has_value)
                return errf(err, errlen, "option --%s takes no value", o->name);
            value = eq + 1;
        }
    } else {
        o = find_short(arg[1]);
        if (o == NULL)
            return errf(err, errlen, "unknown option '%s'", echo(arg, e, sizeof(e)));
        if (arg[2] != '\0') {
            if (!o->has_value)
                return errf(err, errlen, "unknown option '%s'", echo(arg, e, sizeof(e)));
            value = arg + 2; /* -oFILE */
        }
    }
    if (o->has_value && value == NULL) {
        if (*i + 1 >= argc)
            return errf(err, errlen, "option %s needs a value", echo(arg, e, sizeof(e)));
        value = argv[++*i];
    }
    if (o->has_value && value[0] == '\0')
        return errf(err, errlen, "option --%s needs a non-empty value", o->name);
    return set_opt(s, o, value, arg);
}

static int scan_argv(int argc, char *const *argv, struct scan *s, char *err, size_t errlen)
{
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (!options_done && arg[0] == '-' && arg[1] != '\0') {
            int rc = scan_option(s, argc, argv, &i, err, errlen);
            if (rc < 0)
                return rc;
            continue;
        }
        s->pos[s->npos++] = arg;
    }
    return 0;
}

/* ---- commands ---- */

/* The command named by the first positional(s); *used is how many it took. */
static int find_command(const struct scan *s, enum h5c_command *cmd, size_t *used, char *err,
                        size_t errlen)
{
    char e[ECHO_BYTES + 4];
    static const struct {
        const char *name;
        enum h5c_command cmd;
    } simple[] = {
        {"meta", H5C_CMD_META},         {"get", H5C_CMD_GET},     {"slice", H5C_CMD_SLICE},
        {"prefetch", H5C_CMD_PREFETCH}, {"stats", H5C_CMD_STATS}, {"zarr-url", H5C_CMD_ZARR_URL},
    };
    const char *name = s->pos[0];
    *used = 1;
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        if (strcmp(name, simple[i].name) == 0) {
            *cmd = simple[i].cmd;
            return 0;
        }
    }
    if (strcmp(name, "cache") != 0)
        return errf(err, errlen, "unknown command '%s' (try --help)", echo(name, e, sizeof(e)));
    if (s->npos < 2) {
        *cmd = H5C_CMD_CACHE_LS; /* for "cache --help"; otherwise an error below */
        return s->values[O_HELP] != NULL
                   ? 0
                   : errf(err, errlen, "cache: missing subcommand 'ls' or 'purge'");
    }
    *used = 2;
    if (strcmp(s->pos[1], "ls") == 0)
        *cmd = H5C_CMD_CACHE_LS;
    else if (strcmp(s->pos[1], "purge") == 0)
        *cmd = H5C_CMD_CACHE_PURGE;
    else
        return errf(err, errlen, "cache: unknown subcommand '%s' (ls or purge)",
                    echo(s->pos[1], e, sizeof(e)));
    return 0;
}

/* Checks the count of operands: between lo and hi (SIZE_MAX: no upper bound). */
static int want(const char *cmd, size_t n, size_t lo, size_t hi, const char *usage, char *err,
                size_t errlen)
{
    if (n < lo)
        return errf(err, errlen, "%s: missing arguments (usage: h5chunk %s %s)", cmd, cmd, usage);
    if (n > hi)
        return errf(err, errlen, "%s: too many arguments (usage: h5chunk %s %s)", cmd, cmd, usage);
    return 0;
}

static int take_operands(struct h5c_args *a, const char **op, size_t n, char *err, size_t errlen)
{
    const char *name = h5c_command_name(a->cmd);
    int rc = 0;
    switch (a->cmd) {
    case H5C_CMD_META:
        rc = want(name, n, 2, 2, "URL PATH", err, errlen);
        break;
    case H5C_CMD_GET:
        rc = want(name, n, 3, SIZE_MAX, "URL PATH KEY... [-o DIR]", err, errlen);
        if (rc == 0) {
            a->keys = op + 2;
            a->nkeys = n - 2;
        }
        break;
    case H5C_CMD_SLICE:
        rc = want(name, n, 3, 3, "URL PATH SELECT [-o FILE]", err, errlen);
        break;
    case H5C_CMD_PREFETCH:
        rc = want(name, n, 2, 3, "URL PATH [SELECT]", err, errlen);
        break;
    case H5C_CMD_STATS:
        rc = want(name, n, 0, 0, "", err, errlen);
        break;
    case H5C_CMD_CACHE_LS:
    case H5C_CMD_ZARR_URL:
        rc = want(name, n, a->cmd == H5C_CMD_ZARR_URL ? 1 : 0, 1, "URL", err, errlen);
        if (rc == 0 && n == 1)
            a->url = op[0];
        return rc;
    case H5C_CMD_CACHE_PURGE:
        rc = want(name, n, 0, 1, "URL | --all", err, errlen);
        if (rc == 0 && n == 0 && !a->all)
            return errf(err, errlen, "cache purge: give a URL, or --all to empty the whole cache");
        if (rc == 0 && n == 1 && a->all)
            return errf(err, errlen, "cache purge: give a URL or --all, not both");
        if (rc == 0 && n == 1)
            a->url = op[0];
        return rc;
    case H5C_CMD_NONE:
        break;
    }
    if (rc < 0)
        return rc;
    if (n >= 1)
        a->url = op[0];
    if (n >= 2)
        a->path = op[1];
    if (n >= 3 && a->cmd != H5C_CMD_GET)
        a->select = op[2];
    return 0;
}

static int check_operands(const struct h5c_args *a, char *err, size_t errlen)
{
    char e[ECHO_BYTES + 4];
    const char *name = h5c_command_name(a->cmd);
    if (a->url != NULL && a->url[0] == '\0')
        return errf(err, errlen, "%s: empty URL", name);
    if (a->path != NULL && a->path[0] == '\0')
        return errf(err, errlen, "%s: empty PATH (use / for the root group)", name);
    if (a->select != NULL && a->select[0] == '\0')
        return errf(err, errlen, "%s: empty SELECT", name);
    for (size_t i = 0; i < a->nkeys; i++)
        if (!h5c_key_valid(a->keys[i]))
            return errf(err, errlen,
                        "%s: invalid chunk key '%s' (chunk indices joined by dots, e.g. 0.3)", name,
                        echo(a->keys[i], e, sizeof(e)));
    return 0;
}

/* Options given to a command they do not apply to are usage errors, not silently ignored. */
static int check_option_scope(const struct scan *s, enum h5c_command cmd, char *err, size_t errlen)
{
    for (size_t i = 0; i < NOPTS; i++) {
        if (s->values[opts[i].id] == NULL || (opts[i].commands & BIT(cmd)) != 0)
            continue;
        char e[ECHO_BYTES + 4];
        return errf(err, errlen, "option %s does not apply to '%s'",
                    echo(s->spelled[opts[i].id], e, sizeof(e)), h5c_command_name(cmd));
    }
    return 0;
}

static int apply_options(const struct scan *s, const char *env_daemon, const char *env_token,
                         struct h5c_args *a, char *err, size_t errlen)
{
    char why[256];
    a->help = s->values[O_HELP] != NULL;
    a->version = s->values[O_VERSION] != NULL;
    a->json = s->values[O_JSON] != NULL;
    a->decode = s->values[O_DECODE] != NULL;
    a->all = s->values[O_ALL] != NULL;
    a->out = s->values[O_OUT];
    a->token_file = s->values[O_TOKEN];
    a->dandi_token_file = s->values[O_DANDI_TOKEN];
    if (a->token_file == NULL && env_token != NULL && env_token[0] != '\0')
        a->token_file = env_token;
    a->timeout_ms = H5C_DEFAULT_TIMEOUT_MS;
    if (s->values[O_TIMEOUT] != NULL &&
        h5c_parse_duration(s->values[O_TIMEOUT], &a->timeout_ms) < 0)
        return errf(err, errlen,
                    "--timeout: expected a duration such as 30, 90s, 10m or 2h (at most 7 days)");

    const char *addr = H5C_DEFAULT_DAEMON, *source = "default";
    if (s->values[O_DAEMON] != NULL) {
        addr = s->values[O_DAEMON];
        source = "--daemon";
    } else if (env_daemon != NULL && env_daemon[0] != '\0') {
        addr = env_daemon;
        source = "H5CHUNKD_URL";
    }
    if (h5c_daemon_parse(addr, &a->daemon, why, sizeof(why)) < 0 && !a->help && !a->version)
        return errf(err, errlen, "%s: %s", source, why);
    return 0;
}

int h5c_args_parse(int argc, char *const *argv, const char *env_daemon, const char *env_token,
                   struct h5c_args *a, char *err, size_t errlen)
{
    struct scan s;
    int rc;
    memset(a, 0, sizeof(*a));
    memset(&s, 0, sizeof(s));
    if (argc < 1)
        return errf(err, errlen, "no arguments");
    s.pos = calloc((size_t)argc, sizeof(*s.pos));
    if (s.pos == NULL)
        return errf(err, errlen, "out of memory");
    a->positional = s.pos; /* owned by a from here on; h5c_args_free releases it */

    if ((rc = scan_argv(argc, argv, &s, err, errlen)) < 0)
        goto fail;
    if ((rc = apply_options(&s, env_daemon, env_token, a, err, errlen)) < 0)
        goto fail;
    if (s.npos > 0 && strcmp(s.pos[0], "help") == 0) {
        s.pos++; /* "h5chunk help [COMMAND]" is "h5chunk [COMMAND] --help" */
        s.npos--;
        s.values[O_HELP] = "";
        a->help = true;
    }
    if (s.npos == 0) {
        if (a->help || a->version)
            return 0;
        rc = errf(err, errlen, "no command given (try --help)");
        goto fail;
    }
    size_t used = 0;
    if ((rc = find_command(&s, &a->cmd, &used, err, errlen)) < 0)
        goto fail;
    if (a->help || a->version)
        return 0; /* "get --help" needs no operands */
    if ((rc = check_option_scope(&s, a->cmd, err, errlen)) < 0)
        goto fail;
    if ((rc = take_operands(a, s.pos + used, s.npos - used, err, errlen)) < 0)
        goto fail;
    if ((rc = check_operands(a, err, errlen)) < 0)
        goto fail;
    return 0;
fail:
    h5c_args_free(a);
    return rc;
}

void h5c_args_free(struct h5c_args *a)
{
    if (a == NULL)
        return;
    free((void *)a->positional);
    a->positional = NULL;
    a->keys = NULL;
    a->nkeys = 0;
}
