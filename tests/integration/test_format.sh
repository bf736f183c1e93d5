#!/bin/bash
# test_format.sh - the C sources follow the repository's .clang-format.
# Skipped (exit 77) when clang-format is not installed.
set -euo pipefail
src="${TESTS_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}/.."
command -v clang-format >/dev/null 2>&1 || { echo "test_format: SKIP: clang-format not installed"; exit 77; }
cd "$src"
files=$(find lib daemon worker client tests/unit tests/fuzz -name '*.[ch]' | sort)
bad=0
for f in $files; do
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
        echo "test_format: $f does not follow .clang-format (run: clang-format -i $f)"
        bad=$((bad + 1))
    fi
done
n=$(echo "$files" | wc -w)
echo "test_format: $n files checked, $bad not formatted"
[ "$bad" -eq 0 ]
