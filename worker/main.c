/*
 * main.c - h5chunkd-worker: the only program of h5chunkd that runs libhdf5.
 *
 * Started by the daemon (lib/workerpool.c) with one end of a socketpair as
 * descriptor 3.  It confines itself (worker/sandbox.c), then serves
 * operations one at a time: an OP in, READs out for the file bytes it
 * needs (answered by the daemon from its cache), a RESULT out.  A damaged
 * file may crash it, hang it or make it run out of memory: the daemon then
 * kills and replaces it, and nobody else is affected.  It exits when the
 * daemon closes the socket, and (PR_SET_PDEATHSIG) when the daemon dies.
 */
#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "h5filters.h"
#include "h5ops.h"
#include "h5vfd.h"
#include "log.h"
#include "sandbox.h"
#include "workerproto.h"

#define WORKER_FD 3

/* Filter ids libhdf5 may find as plugins; asking for each loads them before the
 * seccomp filter is in place (h5py's LZF, LZO, bzip2, blosc, lz4, bitshuffle,
 * zfp, zstd, blosc2). */
static const H5Z_filter_t plugin_filters[] = {32000, 305,   307,   32001, 32004,
                                              32008, 32013, 32015, 32026};

static _Noreturn void lost_daemon(const char *what)
{
    log_error("msg=\"worker lost the daemon\" during=%s errno=%d", what, errno);
    _exit(2);
}

/* The driver's byte source: READ messages to the daemon, at most WP_MAX_READ_BYTES each. */
static int read_from_daemon(void *ctx, const struct h5vfd_file_desc *file, uint64_t offset,
                            uint64_t length, uint8_t *dst, struct h5cd_error *err)
{
    (void)ctx;
    while (length > 0) {
        uint64_t piece = length < WP_MAX_READ_BYTES ? length : WP_MAX_READ_BYTES;
        struct wp_read rq = {.file_id = file->file_id, .offset = offset, .length = piece};
        if (wp_send(WORKER_FD, WP_READ, &rq, sizeof(rq), NULL, 0, 0) < 0)
            lost_daemon("read request");
        struct wp_header hdr;
        struct wp_read_reply reply;
        if (wp_recv_header(WORKER_FD, &hdr, 0) < 0 || hdr.type != WP_READ_REPLY ||
            hdr.length < sizeof(reply) || hdr.length - sizeof(reply) > WP_MAX_READ_BYTES ||
            wp_read_full(WORKER_FD, &reply, sizeof(reply), 0) < 0)
            lost_daemon("read reply");
        if (reply.error.code != H5CD_OK) {
            reply.error.message[sizeof(reply.error.message) - 1] = '\0';
            if (err != NULL)
                *err = reply.error;
            if (wp_skip(WORKER_FD, hdr.length - sizeof(reply), 0) < 0)
                lost_daemon("read reply");
            return -1;
        }
        if (reply.length != piece || hdr.length - sizeof(reply) != piece)
            lost_daemon("read reply length");
        if (wp_read_full(WORKER_FD, dst, (size_t)piece, 0) < 0)
            lost_daemon("read data");
        dst += piece;
        offset += piece;
        length -= piece;
    }
    return 0;
}

static void serve(void)
{
    const uint64_t max_payload =
        sizeof(struct wp_op) + (uint64_t)WP_MAX_LOCATE_KEYS * H5CD_MAX_RANK * sizeof(uint64_t);
    static struct wp_op op;
    uint64_t *coords = malloc(max_payload - sizeof(op) + sizeof(uint64_t));
    char *paths = malloc(WP_MAX_PATHS_BYTES);
    if (coords == NULL || paths == NULL)
        lost_daemon("start-up");
    for (;;) {
        struct wp_header hdr;
        if (wp_recv_header(WORKER_FD, &hdr, 0) < 0) {
            if (errno == EPIPE)
                break; /* the daemon closed the socket: stop */
            lost_daemon("operation");
        }
        if (hdr.type != WP_OP || hdr.length < sizeof(op) ||
            hdr.length > max_payload + WP_MAX_PATHS_BYTES ||
            wp_read_full(WORKER_FD, &op, sizeof(op), 0) < 0)
            lost_daemon("operation");
        uint64_t extra = hdr.length - sizeof(op);
        int rank = op.ds.grid.rank > 0 && op.ds.grid.rank <= H5CD_MAX_RANK ? op.ds.grid.rank : 0;
        uint64_t coords_len = (uint64_t)op.ncoords * (uint64_t)rank * sizeof(uint64_t);
        if (op.ncoords > WP_MAX_LOCATE_KEYS || op.npaths > WP_MAX_DESCRIBE_PATHS ||
            op.paths_len > WP_MAX_PATHS_BYTES || extra != coords_len + op.paths_len ||
            (coords_len > 0 && wp_read_full(WORKER_FD, coords, (size_t)coords_len, 0) < 0) ||
            (op.paths_len > 0 && wp_read_full(WORKER_FD, paths, op.paths_len, 0) < 0))
            lost_daemon("operation coordinates");
        struct wp_result res;
        uint8_t *data = NULL;
        h5ops_run(&op, coords, paths, &res, &data);
        int rc = wp_send(WORKER_FD, WP_RESULT, &res, sizeof(res), data, (size_t)res.data_len, 0);
        free(data);
        if (rc < 0)
            lost_daemon("result");
    }
    free(coords);
    free(paths);
}

int main(int argc, char **argv)
{
    uint64_t memory = 0;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--memory=", 9) == 0 && config_parse_size(argv[i] + 9, &memory) == 0)
            continue;
        if (strncmp(argv[i], "--log-level=", 12) == 0 && log_level_parse(argv[i] + 12) >= 0) {
            log_set_level((enum log_level)log_level_parse(argv[i] + 12));
            continue;
        }
        fprintf(stderr, "usage: h5chunkd-worker [--memory=SIZE] [--log-level=LEVEL]\n"
                        "(started by h5chunkd with its socket as descriptor 3)\n");
        return 2;
    }
    char why[256];
    if (sandbox_close_fds(WORKER_FD) < 0 || sandbox_limits(memory) < 0) {
        log_error("msg=\"worker cannot confine itself\" errno=%d", errno);
        return 1;
    }
    if (H5open() < 0 || H5Eset_auto2(H5E_DEFAULT, NULL, NULL) < 0 || h5vfd_register() < 0) {
        log_error("msg=\"worker cannot initialise libhdf5\"");
        return 1;
    }
    /* Our own decoders (lib/h5filters.c) first, so no plugin replaces them. */
    if (h5filters_register() < 0)
        log_warn("msg=\"libhdf5 refused a filter decoder\"");
    for (size_t i = 0; i < sizeof(plugin_filters) / sizeof(plugin_filters[0]); i++)
        (void)H5Zfilter_avail(plugin_filters[i]);
    if (sandbox_lock(why, sizeof(why)) < 0) {
        log_error("msg=\"worker cannot install its sandbox\" reason=\"%s\"", why);
        return 1;
    }
    struct h5vfd_source source = {.read = read_from_daemon, .ctx = NULL};
    h5ops_init(&source);
    if (wp_send(WORKER_FD, WP_READY, NULL, 0, NULL, 0, 0) < 0)
        lost_daemon("ready");
    serve();
    h5ops_close_all();
    return 0;
}
