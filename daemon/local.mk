# daemon/: process lifecycle and the HTTP front end.
bin_PROGRAMS += daemon/h5chunkd
daemon_h5chunkd_CFLAGS = $(AM_CFLAGS) $(DEP_CFLAGS) -DSYSCONFDIR='"$(sysconfdir)"'
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
daemon_h5chunkd_LDADD = lib/libh5chunkd.a $(DEP_LIBS)
