# bench/: h5chunkd side by side with ROS3, fsspec and nginx's slice cache
# (docs/benchmarks.md).  Never part of `make check`: performance is measured,
# not asserted; tests/integration/test_bench_smoke.sh only checks that the
# harness runs.  `make bench BENCH_ARGS='--rtt-ms 80'` passes options on.
BENCH_FILES = bench/run bench/bench.py bench/clients.py bench/linkemu.py \
	bench/report.py bench/workloads.py bench/notes.md bench/workers.py \
	bench/compare.py bench/compare_python.py bench/trace.py bench/batchcpu.py
EXTRA_DIST += $(BENCH_FILES)

.PHONY: bench
bench: daemon/h5chunkd
	$(srcdir)/bench/run --daemon $(abs_builddir)/daemon/h5chunkd $(BENCH_ARGS)

# Our chunk-index reader against libhdf5 on a 1,000,000-chunk dataset
# (docs/benchmarks.md): `make bench-chunkindex`.
EXTRA_PROGRAMS += bench/chunkindex_measure
bench_chunkindex_measure_SOURCES = bench/chunkindex_measure.c
bench_chunkindex_measure_CFLAGS = $(AM_CFLAGS) $(DEP_CFLAGS)
bench_chunkindex_measure_LDADD = lib/libh5chunkd.a $(DEP_LIBS)
CLEANFILES += bench/chunkindex_measure

.PHONY: bench-chunkindex
bench-chunkindex: bench/chunkindex_measure
	bench/chunkindex_measure $(abs_builddir)/bench/chunkindex_1m.h5 100

# The site cache tier (issue 13): two workstations, straight vs through an nginx
# site cache, and failover figures (docs/benchmarks.md): `make bench-site`,
# `make bench-site BENCH_SITE_ARGS='--rtt-ms 80 --repeat 5'`.
EXTRA_DIST += bench/sitetier.py
.PHONY: bench-site
bench-site: daemon/h5chunkd
	/usr/bin/python3 $(srcdir)/bench/sitetier.py --daemon $(abs_builddir)/daemon/h5chunkd $(BENCH_SITE_ARGS)
