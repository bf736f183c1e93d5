#!/bin/bash
# test_chunkindex.sh - runs test_chunkindex.py (the daemon's own chunk-index
# reader on h5py-written files of every index kind, Debian's HDF5 files and
# damaged copies, compared with h5py).  About 10 s (30 s under ASan).
# Environment: see tests/integration/pysuite.sh.
# Exit status: 0 pass, 1 fail, 77 skip.
. "$(dirname "$0")/pysuite.sh"
run_python_suite test_chunkindex h5py,numpy "$@"
