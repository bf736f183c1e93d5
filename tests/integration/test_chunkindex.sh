#!/bin/bash
# test_chunkindex.sh - runs test_chunkindex.py (the daemon's own chunk-index
# reader on h5py-written files of every index kind, Debian's HDF5 files and
# damaged copies, compared with h5py) with the Python that has h5py and
# numpy.  About 20 s.
#
# Environment: as tests/integration/test_h5chunks.sh.
# Exit status: 0 pass, 1 fail, 77 skip.
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
    echo "test_chunkindex: SKIP: $PYTHON_H5 cannot import h5py and numpy"
    exit 77
fi
exec "$PYTHON_H5" "$HERE/test_chunkindex.py" "$@"
