#!/bin/bash
# test_fuzz.sh - runs the libFuzzer harnesses of every parser of client input
# (tests/fuzz/run: Range headers, chunk keys, selections, URL policy, config
# files, the POST /v1/chunks body) and of the chunk-index reader for
# FUZZ_SECONDS each (default 15: 7 x 15 s = 105 s of fuzzing, about
# 2.5 minutes with the builds).  The harnesses are built with clang and their
# own sanitizers whatever the configure options, so the --enable-sanitizers
# pass of CI skips them (H5CD_SANITIZERS=yes) instead of running them twice.
# Exit status: 0 pass, 1 fail (a crash, or clang missing), 77 skip.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${TESTS_SRCDIR:=$(cd "$HERE/.." && pwd)}"
if [[ "${H5CD_SANITIZERS:-no}" == yes && -z "${FUZZ_SECONDS:-}" ]]; then
    echo "test_fuzz: SKIP: the fuzzers ran in the first pass (set FUZZ_SECONDS to run them here)"
    exit 77
fi
exec bash "$TESTS_SRCDIR/fuzz/run" -t "${FUZZ_SECONDS:-15}"
