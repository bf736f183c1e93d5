#!/bin/bash
# test_corpus.sh - runs test_corpus.py (every dataset of a corpus of real HDF5
# files written by other software, read through h5chunkd and compared with
# h5py) with the Python that has h5py, zarr, fsspec and PyTables.  About 30 s
# of corpus building and 30 s of checks.
# Environment: see tests/integration/pysuite.sh; also CORPUS_DIR, CORPUS_ONLY,
# CORPUS_MAX_KEYS (see the .py).
# Exit status: 0 pass, 1 fail, 77 skip (no h5py, no nginx).
. "$(dirname "$0")/pysuite.sh"
run_python_suite test_corpus h5py,numpy "$@"
