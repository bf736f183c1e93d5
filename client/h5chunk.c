/*
 * h5chunk.c - the h5chunk command-line client: main, help texts, SIGINT,
 * and the one-line error reports every command shares.  Single-threaded.
 * It must never print more than one line per error, nor write anything
 * but what the user asked for to stdout (scripts read it).
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5chunk.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.0.0"
#endif

static const char general_help[] =
    "usage: h5chunk [OPTIONS] COMMAND [ARGS]\n"
    "Talk to h5chunkd, the local cache of remote HDF5 chunks.\n"
    "\n"
    "Commands:\n"
    "  meta URL PATH                  describe a dataset or group\n"
    "  get URL PATH KEY... [-o DIR]   save chunks (as stored) to DIR/KEY\n"
    "  slice URL PATH SELECT [-o FILE]  read a selection as a NumPy .npy file\n"
    "  prefetch URL PATH [SELECT]     warm the cache with a dataset (or a selection)\n"
    "  stats                          the daemon's counters\n"
    "  cache ls [URL]                 the remote files in the cache\n"
    "  cache purge URL | --all        drop a file (or everything) from the cache\n"
    "  zarr-url URL                   the Zarr v2 URL of a remote file\n"
    "\n"
    "Options:\n"
    "  --daemon ADDR    the daemon: http://HOST:PORT or unix:/PATH (default: $H5CHUNKD_URL,\n"
    "                   else " H5C_DEFAULT_DAEMON ")\n"
    "  --token FILE     send the token in FILE as a bearer token (default:\n"
    "                   $H5CHUNKD_TOKEN_FILE)\n"
    "  --dandi-token FILE  send the DANDI API key in FILE for embargoed Dandisets\n"
    "                   (default: the key in $DANDI_API_KEY)\n"
    "  --json           print the daemon's JSON instead of a summary\n"
    "  --timeout TIME   give up after TIME (30, 90s, 10m, 2h; default 1h)\n"
    "  -h, --help       this help; COMMAND --help for a command's\n"
    "  -V, --version    the version\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error, 130 interrupted.\n"
    "See h5chunk(1).\n";

struct command_help {
    enum h5c_command cmd;
    const char *text;
};

static const struct command_help command_help[] = {
    {H5C_CMD_META, "usage: h5chunk meta URL PATH [--json]\n"
                   "Describes the object PATH of the remote HDF5 file URL: kind, shape, chunk\n"
                   "shape and grid, dtype, layout, filters, fill value and attributes (a group:\n"
                   "its members).  --json prints the daemon's JSON.\n"},
    {H5C_CMD_GET, "usage: h5chunk get URL PATH KEY... [-o DIR] [--decode] [--json]\n"
                  "Fetches the chunks KEY (chunk indices joined by dots, e.g. 0.3) of dataset\n"
                  "PATH in one batch and writes each to DIR/KEY (default: the current\n"
                  "directory), as stored in the file (filters applied), or with --decode as\n"
                  "plain array bytes.  A key that fails (e.g. a chunk never written) is\n"
                  "reported on stderr and the exit status is 1; the others are still saved.\n"
                  "--json prints one JSON line per chunk.\n"},
    {H5C_CMD_SLICE, "usage: h5chunk slice URL PATH SELECT [-o FILE]\n"
                    "Reads the selection SELECT of dataset PATH (NumPy syntax, e.g.\n"
                    "'0:1000,5' or '::2') as a NumPy .npy file, written to FILE or to stdout\n"
                    "(never to a terminal).\n"},
    {H5C_CMD_PREFETCH, "usage: h5chunk prefetch URL PATH [SELECT] [--timeout TIME] [--json]\n"
                       "Asks the daemon to load dataset PATH (or the chunks SELECT touches)\n"
                       "into its cache and waits for the job, with a progress bar on a\n"
                       "terminal, a line per 10 % otherwise.  Ctrl-C cancels the job.\n"},
    {H5C_CMD_STATS, "usage: h5chunk stats [--json]\n"
                    "Prints the daemon's counters, one per line.\n"},
    {H5C_CMD_CACHE_LS, "usage: h5chunk cache ls [URL] [--json]\n"
                       "Lists the remote files in the cache: bytes cached, hits, last access,\n"
                       "validator (ETag or Last-Modified), URL; with URL only that file.\n"},
    {H5C_CMD_CACHE_PURGE, "usage: h5chunk cache purge URL | --all\n"
                          "Drops everything cached for URL, or with --all the whole cache.\n"},
    {H5C_CMD_ZARR_URL, "usage: h5chunk zarr-url URL [--json]\n"
                       "Prints the URL under which the daemon shows the remote HDF5 file URL\n"
                       "as a Zarr v2 hierarchy (for zarr.open_consolidated).\n"},
};

static void print_help(enum h5c_command cmd)
{
    for (size_t i = 0; i < sizeof(command_help) / sizeof(command_help[0]); i++) {
        if (command_help[i].cmd == cmd) {
            fputs(command_help[i].text, stdout);
            printf("Options for every command: --daemon ADDR, --token FILE, --timeout TIME, "
                   "--json.\n");
            return;
        }
    }
    fputs(general_help, stdout);
}

int h5c_print_raw(const char *raw)
{
    size_t len = strlen(raw);
    if (fwrite(raw, 1, len, stdout) != len)
        return -1;
    if ((len == 0 || raw[len - 1] != '\n') && putchar('\n') == EOF)
        return -1;
    return 0;
}

void h5c_errorf(const char *fmt, ...)
{
    char raw[H5C_MESSAGE_BYTES * 2], line[H5C_MESSAGE_BYTES * 2];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    if (n < 0)
        raw[0] = '\0';
    h5c_sanitize(line, sizeof(line), raw);
    fprintf(stderr, "h5chunk: %s\n", line);
}

void h5c_report(const char *what, const struct h5c_failure *f)
{
    if (f->interrupted)
        h5c_errorf("%s: interrupted", what);
    else if (f->code[0] != '\0' && f->message[0] != '\0')
        h5c_errorf("%s: %s: %s", what, f->code, f->message);
    else if (f->code[0] != '\0')
        h5c_errorf("%s: %s (HTTP %ld)", what, f->code, f->status);
    else
        h5c_errorf("%s: %s", what, f->message);
}

static void on_sigint(int sig)
{
    (void)sig;
    h5c_interrupted = 1;
}

/* The first Ctrl-C lets the command clean up (prefetch cancels its job);
 * SA_RESETHAND makes a second one end the process at once. */
static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed stdout is a write error, reported once */
}

static int run(struct h5c_http *h, const struct h5c_args *a)
{
    switch (a->cmd) {
    case H5C_CMD_META:
        return h5c_cmd_meta(h, a);
    case H5C_CMD_GET:
        return h5c_cmd_get(h, a);
    case H5C_CMD_SLICE:
        return h5c_cmd_slice(h, a);
    case H5C_CMD_PREFETCH:
        return h5c_cmd_prefetch(h, a);
    case H5C_CMD_STATS:
        return h5c_cmd_stats(h, a);
    case H5C_CMD_CACHE_LS:
        return h5c_cmd_cache_ls(h, a);
    case H5C_CMD_CACHE_PURGE:
        return h5c_cmd_cache_purge(h, a);
    case H5C_CMD_ZARR_URL:
        return h5c_cmd_zarr_url(h, a);
    case H5C_CMD_NONE:
        break;
    }
    return H5C_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    struct h5c_args a;
    char err[H5C_MESSAGE_BYTES];
    if (h5c_args_parse(argc, argv, getenv("H5CHUNKD_URL"), getenv("H5CHUNKD_TOKEN_FILE"), &a, err,
                       sizeof(err)) < 0) {
        h5c_errorf("%s", err);
        return H5C_EXIT_USAGE;
    }
    if (a.dandi_token_file == NULL)
        a.dandi_key = getenv("DANDI_API_KEY");
    if (a.help || a.version) {
        if (a.help)
            print_help(a.cmd);
        else
            printf("h5chunk %s\n", PACKAGE_VERSION);
        h5c_args_free(&a);
        return fflush(stdout) == 0 ? H5C_EXIT_OK : H5C_EXIT_FAIL;
    }
    catch_signals();
    struct h5c_http *h = NULL;
    if (h5c_http_new(&a, &h, err, sizeof(err)) < 0) {
        h5c_errorf("%s", err);
        h5c_args_free(&a);
        return H5C_EXIT_FAIL;
    }
    int status = run(h, &a);
    h5c_http_free(h);
    h5c_args_free(&a);
    if (fflush(stdout) != 0 && status == H5C_EXIT_OK) {
        h5c_errorf("cannot write to stdout");
        status = H5C_EXIT_FAIL;
    }
    if (h5c_interrupted && status != H5C_EXIT_OK)
        status = H5C_EXIT_INTERRUPT;
    return status;
}
