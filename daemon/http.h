/*
 * http.h - the HTTP front end (libmicrohttpd, one thread per connection):
 * listening socket, request admission (Host check, methods, body limits),
 * routing, and the helpers routes use to answer.
 */
#ifndef H5CD_HTTP_H
#define H5CD_HTTP_H

#include <microhttpd.h>
#include <stddef.h>

#include "errors.h"
#include "server.h"

/* Binds and listens on cfg->listen ("HOST:PORT" or "[V6]:PORT").  Returns the
 * socket, or -1 with a one-line reason in err. */
int http_listen(const char *address, char *err, size_t errlen);
/* Writes the bound address of fd as "HOST:PORT" into out. */
void http_describe_socket(int fd, char *out, size_t outlen);

/* Starts serving on srv->listen_fd.  0, or -1 with a reason in err. */
int http_start(struct server *srv, char *err, size_t errlen);
/* Stops accepting, lets in-flight requests finish, joins every thread. */
void http_stop(struct server *srv);

/* Queues a JSON error response {"error": {"code", "message"}} and counts it. */
enum MHD_Result http_send_error(struct server *srv, struct MHD_Connection *conn,
                                const struct h5cd_error *err);
/* Shorthand: build the error, then send it. */
enum MHD_Result http_fail(struct server *srv, struct MHD_Connection *conn,
                          enum h5cd_errcode code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Queues `body` (malloc'd, ownership taken) with the given status and type. */
enum MHD_Result http_send_text(struct server *srv, struct MHD_Connection *conn, unsigned status,
                               char *body, const char *content_type);

#endif
