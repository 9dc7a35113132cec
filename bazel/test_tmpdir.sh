#!/bin/sh
# Runs the command given with TMPDIR pointing at Bazel's TEST_TMPDIR, so
# that tests which make their scratch directories under $TMPDIR (see
# tests/util/temp_dir.cc) stay inside the test's own sandboxed directory,
# which Bazel empties between runs. Outside `bazel test` it changes nothing.
if [ -n "${TEST_TMPDIR:-}" ]; then
  TMPDIR="$TEST_TMPDIR"
  export TMPDIR
fi
exec "$@"
