#!/bin/sh
# Bazel's coverage tools are downloaded in a normal set-up; this project
# builds offline, so `bazel coverage` stops here with a reason.
echo "remote_coverage_tools: not available in this offline build" >&2
exit 1
