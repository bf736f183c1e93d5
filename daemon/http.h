/*
 * http.h - the HTTP front end (libmicrohttpd, one thread per connection):
 * listening sockets (bound here or passed by systemd), request admission
 * (Host check, bearer token, methods, body limits), routing, the access
 * log, and the helpers routes use to answer.
 */
#ifndef H5CD_HTTP_H
#define H5CD_HTTP_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "server.h"

/* Binds and listens on address ("HOST:PORT", "[V6]:PORT" or "unix:/PATH"; a
 * unix socket gets unix_mode and, unless unix_group is empty, that group).
 * Returns the socket, or -1 with a one-line reason in err.  Main thread,
 * before any other thread exists (it changes the umask for a moment). */
int http_listen(const char *address, unsigned unix_mode, const char *unix_group, char *err,
                size_t errlen);
/* Takes the listening sockets systemd passed (LISTEN_FDS for this pid) into
 * srv->listen_fd, at most H5CD_MAX_LISTEN_SOCKETS (more are closed, with a
 * warning).  A TCP socket that is not loopback needs allow_remote.  Returns
 * how many (0: none were passed), or -1 with a reason in err. */
int http_adopt_sockets(struct server *srv, bool allow_remote, char *err, size_t errlen);
/* Writes the bound address of fd as "HOST:PORT" into out. */
void http_describe_socket(int fd, char *out, size_t outlen);

/* Connections libmicrohttpd may hold on one socket: max_connections are served,
 * and the slack above it absorbs connections the sweeper has ended that are
 * still closing, so a burst of attackers cannot fill the table meanwhile. */
unsigned http_connection_slots(unsigned max_connections);

/* Starts serving on every srv->listen_fd.  0, or -1 with a reason in err. */
int http_start(struct server *srv, char *err, size_t errlen);
/* Stops accepting, lets in-flight requests finish, joins every thread. */
void http_stop(struct server *srv);

/* Queues a JSON error response {"error": {"code", "message"}} and counts it. */
enum MHD_Result http_send_error(struct server *srv, struct MHD_Connection *conn,
                                const struct h5cd_error *err);
/* Shorthand: build the error, then send it. */
enum MHD_Result http_fail(struct server *srv, struct MHD_Connection *conn, enum h5cd_errcode code,
                          const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Queues `body` (malloc'd, ownership taken) with the given status and type. */
enum MHD_Result http_send_text(struct server *srv, struct MHD_Connection *conn, unsigned status,
                               char *body, const char *content_type);
/* The client's DANDI API token (header X-DANDI-Token), or NULL.  Forwarded
 * only to the DANDI API; what it unlocks is served only to requests bearing
 * it (lib/resolve.h).  Never logged. */
const char *http_dandi_token(struct MHD_Connection *conn);

/* Counts n payload bytes a route hands to the client (bytes_served, and the
 * access log's bytes= of the current request).  Call it from the route or
 * its content reader: both run on the connection's thread. */
void http_count_sent(struct server *srv, uint64_t n);
/* Charges n bytes to the daemon's memory budget until the current request
 * ends, waiting up to H5CD_BUDGET_WAIT_MS.  False: over budget (answer 503). */
bool http_charge(struct server *srv, uint64_t n);

#endif
