/*
 * routes.h - the handlers of the HTTP API, one function per endpoint,
 * grouped by file.  Each runs on the connection's own thread, may block,
 * and must queue exactly one response (or return MHD_NO to drop the
 * connection).
 */
#ifndef H5CD_ROUTES_H
#define H5CD_ROUTES_H

#include <microhttpd.h>
#include <stdbool.h>

#include "batchreq.h"
#include "server.h"

/* routes_info.c */
enum MHD_Result route_health(struct server *srv, struct MHD_Connection *conn);
enum MHD_Result route_stats(struct server *srv, struct MHD_Connection *conn);
enum MHD_Result route_metrics(struct server *srv, struct MHD_Connection *conn);

/* routes_file.c: GET and HEAD /v1/file */
enum MHD_Result route_file(struct server *srv, struct MHD_Connection *conn, bool head);

/* routes_chunks.c: the HDF5 endpoints */
enum MHD_Result route_meta(struct server *srv, struct MHD_Connection *conn);
enum MHD_Result route_chunk(struct server *srv, struct MHD_Connection *conn);
/* routes_zarr.c: GET /v1/zarr and GET /zarr/v2/{id}/{key} */
enum MHD_Result route_zarr_base(struct server *srv, struct MHD_Connection *conn);
enum MHD_Result route_zarr(struct server *srv, struct MHD_Connection *conn, const char *target);

/* routes_admin.c: the cache and prefetch jobs */
enum MHD_Result route_cache(struct server *srv, struct MHD_Connection *conn, const char *method);
enum MHD_Result route_prefetch(struct server *srv, struct MHD_Connection *conn, const char *body,
                               size_t len);
enum MHD_Result route_jobs(struct server *srv, struct MHD_Connection *conn, const char *method,
                           const char *url);

/* routes_slice.c */
enum MHD_Result route_slice(struct server *srv, struct MHD_Connection *conn);

/* POST /v1/chunks: request is the body parsed while it arrived; ownership is taken. */
enum MHD_Result route_chunks(struct server *srv, struct MHD_Connection *conn,
                             struct batchreq *request);

#endif
