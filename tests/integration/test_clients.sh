#!/bin/bash
# test_clients.sh - runs test_clients.py: real Python clients (zarr over the
# Zarr view, numpy over /v1/slice, h5py over fsspec on /v1/file, decoded
# chunks) read an NWB-like file through h5chunkd and must see what h5py sees
# locally.  The Python test starts and stops its own nginx and h5chunkd; see
# its docstring.
#
# Environment (set by `make check`; defaults for a run by hand):
#   PYTHON_H5     python3 with h5py, numpy, zarr, fsspec, aiohttp (default /usr/bin/python3)
#   H5CHUNKD_BIN  the daemon (default: ./daemon/h5chunkd of the build dir)
#   NGINX_BIN         nginx binary (default: nginx on PATH, else /usr/sbin/nginx)
#   TESTS_SRCDIR  the source tree's tests/ (default: derived from this file)
#   KEEP_TMP=1    keep the temp dir (logs, access log, caches, test file)
# Exit status: 0 pass, 1 fail, 77 skip (a client library or nginx missing).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${PYTHON_H5:=/usr/bin/python3}"
: "${TESTS_SRCDIR:=$(cd "$HERE/.." && pwd)}"
if [[ -z "${H5CHUNKD_BIN:-}" && -x "$PWD/daemon/h5chunkd" ]]; then
    H5CHUNKD_BIN="$PWD/daemon/h5chunkd"
fi
if [[ -z "${NGINX_BIN:-}" ]]; then
    NGINX_BIN=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
fi
export PYTHON_H5 TESTS_SRCDIR NGINX_BIN
if [[ -n "${H5CHUNKD_BIN:-}" ]]; then export H5CHUNKD_BIN; fi

if ! "$PYTHON_H5" -c 'import h5py, numpy, zarr, fsspec, aiohttp' >/dev/null 2>&1; then
    echo "test_clients: SKIP: $PYTHON_H5 cannot import h5py, numpy, zarr, fsspec and aiohttp"
    exit 77
fi
if [[ ! -x "$NGINX_BIN" ]]; then
    echo "test_clients: SKIP: nginx not found (NGINX_BIN=$NGINX_BIN)"
    exit 77
fi
# Every wait inside is bounded; this bounds the whole run as well.
exec timeout --kill-after=10 900 "$PYTHON_H5" "$HERE/test_clients.py" "$@"
