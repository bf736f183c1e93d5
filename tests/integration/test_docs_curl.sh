#!/bin/bash
# test_docs_curl.sh - runs the examples of docs/api.md that are marked as
# tests against a real daemon and origin, and checks their output.
#
# THE CONVENTION (docs/api.md is written to it):
#
# 1. A tested example is a fenced block whose info string is `sh` (run with
#    bash -euo pipefail) or `python` (run with python3), and whose FIRST line
#    is exactly `# test: NAME` (NAME: letters, digits, `_`, `-`, `.`; unique
#    in the file).  Other blocks are documentation only and never run.
# 2. Tested blocks run in document order, each with a 60 s limit, in one
#    scratch directory (the working directory, shared: a block may read a
#    file an earlier tested block wrote).  The environment holds:
#      D   the daemon's base URL, e.g. http://127.0.0.1:PORT (no trailing /)
#      U   the remote URL of the test file, http://127.0.0.1:PORT/session.nwb
#      E   U percent-encoded for a query string (quote(U, safe=""))
#      ID  the Zarr id of U (unpadded base64url): $D/zarr/v2/$ID/ is its base
#    and `python3` on PATH is the Python with h5py, numpy, zarr and fsspec.
#    Python blocks read them from os.environ, or use the literals below.
# 3. Literals replaced in tested blocks before they run, so that examples
#    can show the usual values:
#      http://127.0.0.1:7661                 -> $D
#      https://example.org/data/session.nwb  -> $U
#      https%3A%2F%2Fexample.org%2Fdata%2Fsession.nwb -> $E
# 4. The test file is session.nwb written by tests/data/make_nwb_like.py
#    (its docstring lists every object): e.g. /acquisition/ElectricalSeries/
#    data, int16 (20000, 32), chunks (2000, 32), shuffle+gzip.
# 5. A block passes when it exits 0 (use `curl -sf` to make an HTTP error
#    fail it; `curl -s` prints the JSON error and exits 0) and, if the next
#    fenced block (only blank lines between) is `json` or `text`, its stdout
#    matches that block:
#    - json: the block holds one or more JSON values (one per line, or
#      spread over lines); stdout must hold as many JSON values, matched in
#      order.  Objects: every key of the expected object must be present
#      with a matching value (more keys are allowed).  Arrays: same length,
#      element by element, except that a last element "..." matches any
#      number (zero or more) of further elements.  The string "..." matches
#      any value.  Numbers compare numerically; anything else exactly.
#    - text: each expected line other than `...` must appear as a line of
#      stdout (trailing spaces ignored), in the same order; `...` lines
#      stand for any lines.
#    Any other following block (or none): only the exit status counts.
# 6. At least one tested block must exist (otherwise the test fails).
#
# Example, in docs/api.md:
#     ```sh
#     # test: meta-data
#     curl -s "$D/v1/meta?url=$E&path=/acquisition/ElectricalSeries/data"
#     ```
#     ```json
#     {"kind": "dataset", "shape": [20000, 32], "chunks": [2000, 32],
#      "dtype": "<i2", "attrs": "..."}
#     ```
#
# Environment: as lib.sh (H5CHUNKD_BIN, NGINX_BIN, PYTHON_H5, TESTS_SRCDIR,
# KEEP_TMP=1); DOCS_MD=FILE checks another Markdown file than docs/api.md.
# Exit status: 0 pass, 1 fail, 77 skip (no h5py for the test file, no nginx).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${DOCS_MD:=$TESTS_SRCDIR/../docs/api.md}"
[[ -r "$DOCS_MD" ]] || fail "cannot read $DOCS_MD"
"$PYTHON_H5" -c 'import h5py, numpy' >/dev/null 2>&1 ||
    skip "$PYTHON_H5 cannot import h5py and numpy (needed to write the test file)"

mkdir -p "$T/www" "$T/work" "$T/bin"
timeout 120 "$PYTHON_H5" "$TESTS_SRCDIR/data/make_nwb_like.py" "$T/www" >"$T/make_data.log" 2>&1 ||
    fail "make_nwb_like.py failed: $(tail -n 5 "$T/make_data.log")"
ln -s "$(command -v "$PYTHON_H5")" "$T/bin/python3"

start_nginx "$T/www"
start_daemon
U="$ORIGIN_URL/session.nwb"
E=$(urlencode "$U")
ID=$("$PYTHON_H5" -c 'import base64, sys
print(base64.urlsafe_b64encode(sys.argv[1].encode()).decode().rstrip("="))' "$U")

rc=0
D="$DAEMON_URL" U="$U" E="$E" ID="$ID" PATH="$T/bin:$PATH" \
    timeout --kill-after=10 900 "$PYTHON_H5" - "$DOCS_MD" "$T/work" "$PYTHON_H5" <<'EOF' || rc=$?
import json
import os
import re
import subprocess
import sys

docs, workdir, python = sys.argv[1], sys.argv[2], sys.argv[3]
NAME = "test_docs_curl"
BLOCK_TIMEOUT = 60
FENCE = re.compile(r"^ {0,3}```\s*([A-Za-z0-9_+-]*)\s*$")
MARK = re.compile(r"^# test: ([A-Za-z0-9_.-]+)\s*$")
env = dict(os.environ)
SUBST = (("http://127.0.0.1:7661", env["D"]),
         ("https://example.org/data/session.nwb", env["U"]),
         ("https%3A%2F%2Fexample.org%2Fdata%2Fsession.nwb", env["E"]))


def blocks(lines):
    """(kind, first line number, text, index of the line after the fence) of each fenced block."""
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        kind, start, body = m.group(1), i + 1, []
        i += 1
        while i < len(lines) and not re.match(r"^ {0,3}```\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        out.append((kind, start, "\n".join(body) + "\n", i + 1))
        i += 1
    return out


def json_values(text):
    dec, pos, vals = json.JSONDecoder(), 0, []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return vals
        v, pos = dec.raw_decode(text, pos)
        vals.append(v)


def match(want, got, where="$"):
    """None when got matches want, else why not."""
    if want == "...":
        return None
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return "%s: expected an object, got %s" % (where, json.dumps(got)[:200])
        for k, v in want.items():
            if k not in got:
                return "%s: key %r missing (have %s)" % (where, k, sorted(got))
            why = match(v, got[k], "%s.%s" % (where, k))
            if why:
                return why
        return None
    if isinstance(want, list):
        if not isinstance(got, list):
            return "%s: expected an array, got %s" % (where, json.dumps(got)[:200])
        open_end = len(want) > 0 and want[-1] == "..."
        fixed = want[:-1] if open_end else want
        if len(got) < len(fixed) or (not open_end and len(got) != len(fixed)):
            return "%s: expected %s%d elements, got %d" % (
                where, "at least " if open_end else "", len(fixed), len(got))
        for i, w in enumerate(fixed):
            why = match(w, got[i], "%s[%d]" % (where, i))
            if why:
                return why
        return None
    if isinstance(want, bool) or isinstance(got, bool):
        return None if want is got else "%s: expected %r, got %r" % (where, want, got)
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return None if want == got else "%s: expected %r, got %r" % (where, want, got)
    return None if want == got else "%s: expected %r, got %r" % (where, want, got)


def match_text(want, got):
    lines = [l.rstrip() for l in got.splitlines()]
    pos = 0
    for w in want.splitlines():
        w = w.rstrip()
        if w == "..." or w == "":
            continue
        while pos < len(lines) and lines[pos] != w:
            pos += 1
        if pos == len(lines):
            return "line %r not found (in order) in the output" % w
        pos += 1
    return None


with open(docs, encoding="utf-8") as fh:
    lines = fh.read().split("\n")
all_blocks = blocks(lines)
tests, names, failures = [], set(), []
for n, (kind, start, text, after) in enumerate(all_blocks):
    first = text.split("\n", 1)[0]
    m = MARK.match(first)
    if not m:
        if first.startswith("# test:"):
            failures.append("%s:%d: malformed marker %r" % (docs, start, first))
        continue
    if kind not in ("sh", "python"):
        failures.append("%s:%d: test %s: block must be sh or python, is %r"
                        % (docs, start, m.group(1), kind))
        continue
    name = m.group(1)
    if name in names:
        failures.append("%s:%d: test name %s used twice" % (docs, start, name))
    names.add(name)
    expect = None
    if n + 1 < len(all_blocks):
        nkind, nstart, ntext, _ = all_blocks[n + 1]
        between = lines[after:nstart - 1]
        if all(not l.strip() for l in between) and nkind in ("json", "text"):
            expect = (nkind, ntext, nstart)
    tests.append((name, kind, start, text, expect))

if not tests:
    failures.append("%s has no tested blocks (a ```sh or ```python block starting with "
                    "'# test: NAME')" % docs)
for name, kind, start, text, expect in tests:
    code = text
    for lit, value in SUBST:
        code = code.replace(lit, value)
    cmd = ["bash", "-euo", "pipefail", "-c", code] if kind == "sh" else [python, "-c", code]
    where = "%s (%s:%d)" % (name, os.path.basename(docs), start)
    try:
        p = subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        failures.append("%s: did not finish within %d s" % (where, BLOCK_TIMEOUT))
        continue
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    why = None
    if p.returncode != 0:
        why = "exit status %d" % p.returncode
    elif expect is not None and expect[0] == "json":
        try:
            want = json_values(expect[1])
        except ValueError as e:
            want = None
            why = "the expected block (line %d) is not JSON: %s" % (expect[2], e)
        if want is not None:
            try:
                got = json_values(out)
            except ValueError as e:
                got = None
                why = "stdout is not JSON: %s" % e
            if got is not None and len(got) != len(want):
                why = "expected %d JSON values, got %d" % (len(want), len(got))
            elif got is not None:
                for i, (w, g) in enumerate(zip(want, got)):
                    why = match(w, g, "value %d" % (i + 1))
                    if why:
                        break
    elif expect is not None:
        why = match_text(expect[1], out)
    if why:
        failures.append("%s: %s\n  ran:\n%s\n  stdout: %s\n  stderr: %s" % (
            where, why, "\n".join("    " + l for l in code.strip().split("\n")),
            out[:1500], err[:800]))
        print("%s: FAIL %s" % (NAME, where), flush=True)
    else:
        print("%s: ok   %s%s" % (NAME, where, "" if expect else " (exit status only)"),
              flush=True)
for f in failures:
    print("%s: FAIL: %s" % (NAME, f), file=sys.stderr)
print("%s: %d tested blocks, %d failures" % (NAME, len(tests), len(failures)))
sys.exit(1 if failures else 0)
EOF
if ((rc != 0)); then
    fail "docs examples failed (exit $rc), see above"
fi
stop_daemon
finish_test
