#!/bin/bash
# test_clients.sh - runs test_clients.py: real Python clients (zarr over the
# Zarr view, numpy over /v1/slice, h5py over fsspec on /v1/file, decoded
# chunks) read an NWB-like file through h5chunkd and must see what h5py sees
# locally.  The Python test starts and stops its own nginx and h5chunkd; see
# its docstring.
# Environment: see tests/integration/pysuite.sh (PYTHON_H5 also needs zarr,
# fsspec and aiohttp).
# Exit status: 0 pass, 1 fail, 77 skip (a client library or nginx missing).
. "$(dirname "$0")/pysuite.sh"
run_python_suite test_clients h5py,numpy,zarr,fsspec,aiohttp "$@"
