#!/bin/bash
# test_damaged.sh - runs test_damaged.py (damaged copies of HDF5 files driven
# through /v1/meta, .zmetadata, POST /v1/chunks and /v1/slice: the daemon must
# never die, hang or answer 5xx, and every 200 must equal h5py's reading of the
# same damaged file) with the Python that has h5py and PyTables.  Bounded to
# DAMAGED_BUDGET seconds (default 420: a bound against hangs; a 2-core machine
# with other jobs took 122 s, one at load average 14 took 185) of checks after ~15 s
# of file building.
# Environment: see tests/integration/pysuite.sh; also DAMAGED_DAEMON_CONFIG.
# Exit status: 0 pass, 1 fail, 77 skip (no h5py, no nginx).
. "$(dirname "$0")/pysuite.sh"
run_python_suite test_damaged h5py,numpy "$@"
