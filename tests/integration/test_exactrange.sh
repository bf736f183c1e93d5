#!/bin/bash
# test_exactrange.sh - runs test_exactrange.py (cold batches fetch exact byte
# ranges: nginx's access log shows link bytes <= 1.1x the chunks'; warm
# batches make no origin request; partially cached blocks).  About 5 s.
# Environment: see tests/integration/pysuite.sh.
# Exit status: 0 pass, 1 fail, 77 skip.
. "$(dirname "$0")/pysuite.sh"
run_python_suite test_exactrange h5py,numpy "$@"
