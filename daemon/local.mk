# daemon/: process lifecycle and the HTTP front end.
bin_PROGRAMS += daemon/h5chunkd
daemon_h5chunkd_CFLAGS = $(AM_CFLAGS) $(DEP_CFLAGS) -DSYSCONFDIR='"$(sysconfdir)"' \
	-DLIBEXECDIR='"$(libexecdir)"'
daemon_h5chunkd_SOURCES = \
	daemon/main.c \
	daemon/server.h \
	daemon/http.c daemon/http.h \
	daemon/conntrack.c daemon/conntrack.h \
	daemon/routes_info.c \
	daemon/routes_file.c \
	daemon/routes_chunks.c \
	daemon/routes_slice.c \
	daemon/routes_zarr.c \
	daemon/routes_admin.c \
	daemon/routes.h
# The daemon does not link libhdf5: every libhdf5 call runs in h5chunkd-worker.
daemon_h5chunkd_LDADD = lib/libh5chunkd.a $(DAEMON_LIBS)

# worker/: h5chunkd-worker, the only program that runs libhdf5.  Built next to
# h5chunkd (where the daemon looks first), installed in $(pkglibexecdir).
pkglibexec_PROGRAMS = daemon/h5chunkd-worker
daemon_h5chunkd_worker_CFLAGS = $(AM_CFLAGS) $(DEP_CFLAGS) $(SECCOMP_CFLAGS)
daemon_h5chunkd_worker_SOURCES = \
	worker/main.c \
	worker/h5ops.c worker/h5ops.h \
	worker/sandbox.c worker/sandbox.h
daemon_h5chunkd_worker_LDADD = lib/libh5worker.a lib/libh5chunkd.a $(DEP_LIBS) $(SECCOMP_LIBS)
