#!/bin/bash
# test_corpus.sh - runs test_corpus.py (every dataset of a corpus of real HDF5
# files written by other software, read through h5chunkd and compared with
# h5py) with the Python that has h5py, zarr, fsspec and PyTables.  About a
# minute of corpus building and one to two minutes of checks.
# Environment: PYTHON_H5 (default /usr/bin/python3), H5CHUNKD_BIN, NGINX_BIN,
# TESTS_SRCDIR, KEEP_TMP=1, CORPUS_DIR, CORPUS_ONLY, CORPUS_MAX_KEYS (see the .py).
# Exit status: 0 pass, 1 fail, 77 skip (no nginx).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${PYTHON_H5:=/usr/bin/python3}"
: "${TESTS_SRCDIR:=$(cd "$HERE/.." && pwd)}"
if [[ -z "${H5CHUNKD_BIN:-}" && -x "$PWD/daemon/h5chunkd" ]]; then
    H5CHUNKD_BIN="$PWD/daemon/h5chunkd"
fi
export PYTHON_H5 TESTS_SRCDIR
if [[ -n "${H5CHUNKD_BIN:-}" ]]; then export H5CHUNKD_BIN; fi
if [[ -n "${NGINX_BIN:-}" ]]; then export NGINX_BIN; fi
exec "$PYTHON_H5" "$HERE/test_corpus.py" "$@"
