#!/bin/bash
# test_damaged.sh - runs test_damaged.py (damaged copies of HDF5 files driven
# through /v1/meta, .zmetadata, POST /v1/chunks and /v1/slice: the daemon must
# never die, hang or answer 5xx, and every 200 must equal h5py's reading of the
# same damaged file) with the Python that has h5py and PyTables.  Bounded to
# DAMAGED_BUDGET seconds (default 170) of checks after ~15 s of file building.
# Environment: PYTHON_H5 (default /usr/bin/python3), H5CHUNKD_BIN, NGINX_BIN,
# TESTS_SRCDIR, KEEP_TMP=1, DAMAGED_DAEMON_CONFIG (see the .py).
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
exec "$PYTHON_H5" "$HERE/test_damaged.py" "$@"
