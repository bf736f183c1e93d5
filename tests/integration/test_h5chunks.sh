#!/bin/bash
# test_h5chunks.sh - runs test_h5chunks.py (the HDF5 chunk endpoints checked
# against h5py) with the Python that has h5py and numpy.  The Python test
# starts and stops its own nginx and h5chunkd; see its docstring.
#
# Environment (set by `make check`; defaults for a run by hand):
#   PYTHON_H5     python3 with h5py and numpy (default /usr/bin/python3)
#   H5CHUNKD_BIN  the daemon (default: ./daemon/h5chunkd of the build dir)
#   NGINX_BIN         nginx binary (default: nginx on PATH, else /usr/sbin/nginx)
#   TESTS_SRCDIR  the source tree's tests/ (default: derived from this file)
#   KEEP_TMP=1    keep the temp dir (logs, caches, test files)
# Exit status: 0 pass, 1 fail, 77 skip (no h5py/numpy, no nginx).
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

if ! "$PYTHON_H5" -c 'import h5py, numpy' >/dev/null 2>&1; then
    echo "test_h5chunks: SKIP: $PYTHON_H5 cannot import h5py and numpy"
    exit 77
fi
exec "$PYTHON_H5" "$HERE/test_h5chunks.py" "$@"
