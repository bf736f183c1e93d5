#!/bin/bash
# test_realfiles.sh - runs test_realfiles.py (files written by h5py, PyTables
# and bitshuffle's plugin, served and compared with h5py) with the Python that
# has h5py, numpy, PyTables, zarr and fsspec.  About 20 s.
# Environment: see tests/integration/pysuite.sh.
# Exit status: 0 pass, 1 fail, 77 skip.
. "$(dirname "$0")/pysuite.sh"
run_python_suite test_realfiles h5py,numpy,zarr,fsspec,tables "$@"
