#!/bin/bash
# test_h5chunks.sh - runs test_h5chunks.py (the HDF5 chunk endpoints checked
# against h5py) with the Python that has h5py and numpy.  The Python test
# starts and stops its own nginx and h5chunkd; see its docstring.
# Environment: see tests/integration/pysuite.sh.
# Exit status: 0 pass, 1 fail, 77 skip (no h5py/numpy, no nginx).
. "$(dirname "$0")/pysuite.sh"
run_python_suite test_h5chunks h5py,numpy "$@"
