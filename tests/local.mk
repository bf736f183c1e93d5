# tests/: Check unit suites (tests/unit) and integration scripts against real peers.
TEST_CFLAGS = $(AM_CFLAGS) $(DEP_CFLAGS) $(CHECK_CFLAGS)
TEST_LIBS = lib/libh5worker.a lib/libh5chunkd.a $(DEP_LIBS) $(CHECK_LIBS)

# The cache writer's job queue: order, draining; < 1 s.
check_PROGRAMS += tests/unit/check_storeq
tests_unit_check_storeq_SOURCES = tests/unit/check_storeq.c
tests_unit_check_storeq_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_storeq_LDADD = $(TEST_LIBS)

# The link table and the planner's arithmetic; < 1 s.
check_PROGRAMS += tests/unit/check_linkstats tests/unit/check_planner
tests_unit_check_linkstats_SOURCES = tests/unit/check_linkstats.c
tests_unit_check_linkstats_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_linkstats_LDADD = $(TEST_LIBS)
tests_unit_check_planner_SOURCES = tests/unit/check_planner.c
tests_unit_check_planner_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_planner_LDADD = $(TEST_LIBS)
check_PROGRAMS += tests/unit/check_coalesce tests/unit/check_config tests/unit/check_httprange \
	tests/unit/check_chunkkey tests/unit/check_fastdecode \
	tests/unit/check_h5meta \
	tests/unit/check_urlpolicy tests/unit/check_blockcache tests/unit/check_fetch
check_PROGRAMS += tests/unit/check_parents
tests_unit_check_parents_SOURCES = tests/unit/check_parents.c
tests_unit_check_parents_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_parents_LDADD = $(TEST_LIBS)
tests_unit_check_coalesce_SOURCES = tests/unit/check_coalesce.c
tests_unit_check_coalesce_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_coalesce_LDADD = $(TEST_LIBS)
tests_unit_check_config_SOURCES = tests/unit/check_config.c
tests_unit_check_config_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_config_LDADD = $(TEST_LIBS)
tests_unit_check_httprange_SOURCES = tests/unit/check_httprange.c
tests_unit_check_httprange_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_httprange_LDADD = $(TEST_LIBS)
tests_unit_check_chunkkey_SOURCES = tests/unit/check_chunkkey.c
tests_unit_check_chunkkey_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_chunkkey_LDADD = $(TEST_LIBS)
tests_unit_check_fastdecode_SOURCES = tests/unit/check_fastdecode.c
tests_unit_check_fastdecode_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_fastdecode_LDADD = $(TEST_LIBS)
tests_unit_check_urlpolicy_SOURCES = tests/unit/check_urlpolicy.c
tests_unit_check_urlpolicy_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_urlpolicy_LDADD = $(TEST_LIBS)
tests_unit_check_blockcache_SOURCES = tests/unit/check_blockcache.c
tests_unit_check_blockcache_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_blockcache_LDADD = $(TEST_LIBS)
tests_unit_check_fetch_SOURCES = tests/unit/check_fetch.c
tests_unit_check_fetch_CFLAGS = $(TEST_CFLAGS) -DFAULT_ORIGIN='"$(abs_top_srcdir)/tests/integration/fault_origin.py"'
tests_unit_check_fetch_LDADD = $(TEST_LIBS)
# Canned hostile answers from an in-process origin thread (issue 10); ~2 s.
check_PROGRAMS += tests/unit/check_fetch_hostile
tests_unit_check_fetch_hostile_SOURCES = tests/unit/check_fetch_hostile.c
tests_unit_check_fetch_hostile_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_fetch_hostile_LDADD = $(TEST_LIBS)
tests_unit_check_h5meta_SOURCES = tests/unit/check_h5meta.c
tests_unit_check_h5meta_CFLAGS = $(TEST_CFLAGS) \
	-DMETA_FIXTURE_SCRIPT='"$(abs_top_srcdir)/tests/data/make_meta_fixture.py"' \
	-DPYTHON_H5='"$(PYTHON_H5)"'
tests_unit_check_h5meta_LDADD = $(TEST_LIBS)
EXTRA_DIST += tests/data/make_meta_fixture.py

# The HDF5 driver's prefix pages and reads, on a file written by libhdf5; < 1 s.
check_PROGRAMS += tests/unit/check_h5vfd
tests_unit_check_h5vfd_SOURCES = tests/unit/check_h5vfd.c
tests_unit_check_h5vfd_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_h5vfd_LDADD = $(TEST_LIBS)

# Our chunk-index reader against libhdf5 on files written by h5py.
check_PROGRAMS += tests/unit/check_h5chunkindex
tests_unit_check_h5chunkindex_SOURCES = tests/unit/check_h5chunkindex.c
tests_unit_check_h5chunkindex_CFLAGS = $(TEST_CFLAGS) \
	-DCHUNKINDEX_FIXTURE_SCRIPT='"$(abs_top_srcdir)/tests/data/make_chunkindex_fixture.py"' \
	-DPYTHON_H5='"$(PYTHON_H5)"'
tests_unit_check_h5chunkindex_LDADD = $(TEST_LIBS)
EXTRA_DIST += tests/data/make_chunkindex_fixture.py tests/fuzz/fuzz_h5chunkindex.c \
	tests/fuzz/make_h5chunkindex_seeds.py

# The pure parts of the daemon's chunk lookups through our own index reader.
check_PROGRAMS += tests/unit/check_chunkwalk
tests_unit_check_chunkwalk_SOURCES = tests/unit/check_chunkwalk.c
tests_unit_check_chunkwalk_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_chunkwalk_LDADD = $(TEST_LIBS)

# Operations: SIGHUP reload plan, bearer token, access log.
check_PROGRAMS += tests/unit/check_reload tests/unit/check_authtoken tests/unit/check_accesslog
tests_unit_check_reload_SOURCES = tests/unit/check_reload.c
tests_unit_check_reload_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_reload_LDADD = $(TEST_LIBS)
tests_unit_check_authtoken_SOURCES = tests/unit/check_authtoken.c
tests_unit_check_authtoken_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_authtoken_LDADD = $(TEST_LIBS)
tests_unit_check_accesslog_SOURCES = tests/unit/check_accesslog.c
tests_unit_check_accesslog_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_accesslog_LDADD = $(TEST_LIBS)

# The worker pool against fake workers (the test program re-executed).
check_PROGRAMS += tests/unit/check_workerpool
tests_unit_check_workerpool_SOURCES = tests/unit/check_workerpool.c
tests_unit_check_workerpool_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_workerpool_LDADD = $(TEST_LIBS)
# The persistent chunk index between a fake worker and its sqlite file.
check_PROGRAMS += tests/unit/check_h5index
tests_unit_check_h5index_SOURCES = tests/unit/check_h5index.c
tests_unit_check_h5index_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_h5index_LDADD = $(TEST_LIBS)
# Hostile clients: the streaming batch-body parser and the memory budget.
check_PROGRAMS += tests/unit/check_batchreq
tests_unit_check_batchreq_SOURCES = tests/unit/check_batchreq.c
tests_unit_check_batchreq_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_batchreq_LDADD = $(TEST_LIBS)

# Regressions found by the fuzz harnesses in parsers without their own suite.
check_PROGRAMS += tests/unit/check_parsers
tests_unit_check_parsers_SOURCES = tests/unit/check_parsers.c
tests_unit_check_parsers_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_parsers_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/unit/check_h5chunk_args
tests_unit_check_h5chunk_args_SOURCES = tests/unit/check_h5chunk_args.c \
	client/args.c client/util.c client/frames.c client/h5chunk.h
tests_unit_check_h5chunk_args_CFLAGS = $(AM_CFLAGS) -I$(top_srcdir)/client $(JANSSON_CFLAGS) $(CHECK_CFLAGS)
tests_unit_check_h5chunk_args_LDADD = $(JANSSON_LIBS) $(CHECK_LIBS)

TESTS += $(check_PROGRAMS)

# Integration scripts start their own origin and daemon on free loopback ports.
INTEGRATION_TESTS =
include tests/integration/local.mk
TESTS += $(INTEGRATION_TESTS)
EXTRA_DIST += $(INTEGRATION_TESTS) tests/integration/lib.sh tests/integration/pysuite.sh tests/integration/fault_origin.py \
	tests/integration/fake_dandi.py
EXTRA_DIST += tests/data/make_h5_testset.py tests/integration/test_h5chunks.py
EXTRA_DIST += tests/data/make_nwb_like.py tests/integration/test_clients.py
EXTRA_DIST += tests/integration/attack_clients.py
AM_TESTS_ENVIRONMENT = \
	H5CHUNKD_BIN='$(abs_top_builddir)/daemon/h5chunkd'; \
	NGINX_BIN='$(NGINX)'; PYTHON_H5='$(PYTHON_H5)'; \
	H5CD_SANITIZERS='$(enable_sanitizers)'; \
	TESTS_SRCDIR='$(abs_top_srcdir)/tests'; \
	export H5CHUNKD_BIN NGINX_BIN PYTHON_H5 TESTS_SRCDIR H5CD_SANITIZERS;

# Third-party filter decoders (lib/h5filters.c).
check_PROGRAMS += tests/unit/check_h5filters
tests_unit_check_h5filters_SOURCES = tests/unit/check_h5filters.c
tests_unit_check_h5filters_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_h5filters_LDADD = $(TEST_LIBS)

# Names, presigned URLs and upstream credentials.
check_PROGRAMS += tests/unit/check_urlforms tests/unit/check_credentials
tests_unit_check_urlforms_SOURCES = tests/unit/check_urlforms.c
tests_unit_check_urlforms_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_urlforms_LDADD = $(TEST_LIBS)
tests_unit_check_credentials_SOURCES = tests/unit/check_credentials.c
tests_unit_check_credentials_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_credentials_LDADD = $(TEST_LIBS)

# libFuzzer harnesses (tests/fuzz/run, driven by tests/integration/test_fuzz.sh).
EXTRA_DIST += tests/fuzz/run tests/fuzz/fuzz_common.h tests/fuzz/fuzz_httprange.c \
	tests/fuzz/fuzz_chunkkey.c tests/fuzz/fuzz_selection.c tests/fuzz/fuzz_urlpolicy.c \
	tests/fuzz/fuzz_config.c tests/fuzz/fuzz_batchreq.c tests/fuzz/corpus
# The real-files corpus (tests/integration/test_corpus.sh) and the damaged-files suite share the corpus builder and the h5py peers.
EXTRA_DIST += tests/data/make_corpus.py tests/integration/h5peers.py tests/integration/test_corpus.py \
	tests/data/make_damaged.py tests/integration/test_damaged.py
