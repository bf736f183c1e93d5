#!/bin/bash
# pysuite.sh - sourced by the wrappers of the Python integration suites
# (test_h5chunks.sh, test_clients.sh, test_realfiles.sh, test_corpus.sh,
# test_damaged.sh): the environment they share and how they are started.
#
# Environment (set by `make check`; defaults for a run by hand):
#   PYTHON_H5     python3 with h5py and numpy (default /usr/bin/python3)
#   H5CHUNKD_BIN  the daemon (default: ./daemon/h5chunkd of the build dir)
#   NGINX_BIN     nginx binary (default: nginx on PATH, else /usr/sbin/nginx)
#   TESTS_SRCDIR  the source tree's tests/ (default: derived from this file)
#   KEEP_TMP=1    keep the temp dir (logs, caches, test files)
set -euo pipefail

PYSUITE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${PYTHON_H5:=/usr/bin/python3}"
: "${TESTS_SRCDIR:=$(cd "$PYSUITE_DIR/.." && pwd)}"
if [[ -z "${H5CHUNKD_BIN:-}" && -x "$PWD/daemon/h5chunkd" ]]; then
    H5CHUNKD_BIN="$PWD/daemon/h5chunkd"
fi
if [[ -z "${NGINX_BIN:-}" ]]; then
    NGINX_BIN=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
fi
export PYTHON_H5 TESTS_SRCDIR NGINX_BIN
if [[ -n "${H5CHUNKD_BIN:-}" ]]; then export H5CHUNKD_BIN; fi

# Replaces the shell with tests/integration/NAME.py ARGS..., after checking
# that PYTHON_H5 imports MODULES (comma-separated) and that nginx is there
# (exit 77, automake's "skip", when not).  Every suite bounds its own waits;
# the timeout bounds the whole run as well.
run_python_suite() { # NAME MODULES ARGS...
    local name=$1 modules=$2
    shift 2
    if ! "$PYTHON_H5" -c "import $modules" >/dev/null 2>&1; then
        echo "$name: SKIP: $PYTHON_H5 cannot import ${modules//,/, }"
        exit 77
    fi
    if [[ ! -x "$NGINX_BIN" ]]; then
        echo "$name: SKIP: nginx not found (NGINX_BIN=$NGINX_BIN)"
        exit 77
    fi
    exec timeout --kill-after=10 900 "$PYTHON_H5" "$PYSUITE_DIR/$name.py" "$@"
}
