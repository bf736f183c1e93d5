# Integration tests (bash): each starts and cleans up its own processes
# (nginx, tests/integration/fault_origin.py, h5chunkd) on free loopback ports.
INTEGRATION_TESTS += \
	tests/integration/test_cli.sh \
	tests/integration/test_mirror.sh \
	tests/integration/test_faults.sh \
	tests/integration/test_singleflight.sh \
	tests/integration/test_cap.sh \
	tests/integration/test_kill9.sh \
	tests/integration/test_security.sh
INTEGRATION_TESTS += tests/integration/test_h5chunks.sh
INTEGRATION_TESTS += tests/integration/test_systemd.sh
INTEGRATION_TESTS += tests/integration/test_client.sh tests/integration/test_man.sh
INTEGRATION_TESTS += tests/integration/test_clients.sh tests/integration/test_docs_curl.sh
INTEGRATION_TESTS += tests/integration/test_admin.sh tests/integration/test_attacks_clients.sh
INTEGRATION_TESTS += tests/integration/test_isolation.sh
INTEGRATION_TESTS += tests/integration/test_format.sh
INTEGRATION_TESTS += tests/integration/test_bench_smoke.sh
# /v1/stats "links" and reads planned from the measured link (about 5 s).
INTEGRATION_TESTS += tests/integration/test_linkstats.sh
# Opening never-seen NWB-like files behind an emulated link: requests and rounds (about 15 s).
INTEGRATION_TESTS += tests/integration/test_metaopen.sh
# Files written by h5py, PyTables and bitshuffle's plugin, compared with h5py (about 20 s).
INTEGRATION_TESTS += tests/integration/test_realfiles.sh
EXTRA_DIST += tests/data/make_realfiles.py tests/integration/test_realfiles.py
INTEGRATION_TESTS += tests/integration/test_python.sh
# Keep-alive on /v1/file with raw sockets, aiohttp and fsspec (about 8 s).
INTEGRATION_TESTS += tests/integration/test_keepalive.sh
# /v1/slice of h5py-written string datasets, non-UTF-8 bytes included (a few seconds).
INTEGRATION_TESTS += tests/integration/test_slice_strings.sh
# The upstream attack suite (issue 10): hostile_origin.py on 127.0.0.1-3; ~30 s.
INTEGRATION_TESTS += tests/integration/test_attacks_origin.sh
EXTRA_DIST += tests/integration/hostile_origin.py
# DANDI and S3 names, resolve once, signatures and tokens (about 60 s).
INTEGRATION_TESTS += tests/integration/test_dandi.sh
INTEGRATION_TESTS += tests/integration/test_fuzz.sh
INTEGRATION_TESTS += tests/integration/test_damaged.sh
# About 85 real HDF5 files from Debian packages and other writers, every route vs h5py (~2 min).
INTEGRATION_TESTS += tests/integration/test_corpus.sh
# The site cache tier (issue 13): two nginx site caches, two daemons (about 35 s, 70 s under ASan).
INTEGRATION_TESTS += tests/integration/test_sitecache.sh
# The daemon's own chunk-index reader on h5py files of every index kind,
# Debian's HDF5 files and damaged copies, compared with h5py (about 10 s).
INTEGRATION_TESTS += tests/integration/test_chunkindex.sh
EXTRA_DIST += tests/integration/test_chunkindex.py
# Exact-range fetches and partial cache blocks, measured in nginx's access log (about 5 s).
INTEGRATION_TESTS += tests/integration/test_exactrange.sh
EXTRA_DIST += tests/integration/test_exactrange.py
