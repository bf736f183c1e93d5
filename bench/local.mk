# bench/: h5chunkd side by side with ROS3, fsspec and nginx's slice cache
# (docs/benchmarks.md).  Never part of `make check`: performance is measured,
# not asserted; tests/integration/test_bench_smoke.sh only checks that the
# harness runs.  `make bench BENCH_ARGS='--rtt-ms 80'` passes options on.
BENCH_FILES = bench/run bench/bench.py bench/clients.py bench/linkemu.py \
	bench/report.py bench/workloads.py bench/notes.md bench/workers.py
EXTRA_DIST += $(BENCH_FILES)

.PHONY: bench
bench: daemon/h5chunkd
	$(srcdir)/bench/run --daemon $(abs_builddir)/daemon/h5chunkd $(BENCH_ARGS)
