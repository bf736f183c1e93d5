# lib/: the engine, built once and linked by the daemon and every test.
# libh5chunkd.a never calls libhdf5 (the daemon does not link it);
# libh5worker.a is the libhdf5 side, linked by h5chunkd-worker and tests.
noinst_LIBRARIES += lib/libh5chunkd.a lib/libh5worker.a
lib_libh5chunkd_a_CFLAGS = $(AM_CFLAGS) $(DEP_CFLAGS)
lib_libh5chunkd_a_SOURCES = \
	lib/h5cd_limits.h \
	lib/log.c lib/log.h \
	lib/errors.c lib/errors.h \
	lib/stats.c lib/stats.h \
	lib/config.c lib/config.h \
	lib/reload.c lib/reload.h \
	lib/authtoken.c lib/authtoken.h \
	lib/accesslog.c lib/accesslog.h \
	lib/coalesce.c lib/coalesce.h \
	lib/linkstats.c lib/linkstats.h \
	lib/planner.c lib/planner.h \
	lib/urlpolicy.c lib/urlpolicy.h \
	lib/blockcache.c lib/blockcache.h \
	lib/parents.c lib/parents.h \
	lib/fetch.c lib/fetch.h \
	lib/httprange.c lib/httprange.h \
	lib/storeq.c lib/storeq.h \
	lib/remote.c lib/remote.h \
	lib/chunkkey.c lib/chunkkey.h \
	lib/h5index.c lib/h5index.h \
	lib/workerproto.c lib/workerproto.h \
	lib/workerpool.c lib/workerpool.h \
	lib/h5chunkindex.c lib/h5chunkindex.h \
	lib/chunkwalk.c lib/chunkwalk.h \
	lib/selection.c lib/selection.h \
	lib/prefetch.c lib/prefetch.h \
	lib/zarrmeta.c lib/zarrmeta.h \
	lib/jobs.c lib/jobs.h \
	lib/fastdecode.c lib/fastdecode.h \
	lib/urlforms.c lib/urlforms.h \
	lib/presign.c lib/presign.h \
	lib/credentials.c lib/credentials.h \
	lib/httpget.c lib/httpget.h \
	lib/resolve.c lib/resolve.h \
	lib/membudget.c lib/membudget.h \
	lib/batchreq.c lib/batchreq.h
lib_libh5worker_a_CFLAGS = $(AM_CFLAGS) $(DEP_CFLAGS)
lib_libh5worker_a_SOURCES = \
	lib/h5meta.c lib/h5meta.h \
	lib/h5vfd.c lib/h5vfd.h \
	lib/h5decode.c lib/h5decode.h \
	lib/h5filters.c lib/h5filters.h
