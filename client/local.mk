# client/: h5chunk, the command-line client.  It links libcurl and jansson
# only (not the daemon's engine or its other libraries).
bin_PROGRAMS += client/h5chunk
client_h5chunk_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS) $(JANSSON_CFLAGS)
client_h5chunk_SOURCES = \
	client/h5chunk.c client/h5chunk.h \
	client/args.c \
	client/util.c \
	client/frames.c \
	client/http.c \
	client/cmd_data.c \
	client/cmd_admin.c \
	client/cmd_prefetch.c
client_h5chunk_LDADD = $(CURL_LIBS) $(JANSSON_LIBS)
