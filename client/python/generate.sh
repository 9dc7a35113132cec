#!/usr/bin/env bash
# Generates the Python messages and gRPC stubs of proto/ into OUT_DIR, for
# fanout_subscribe.py: OUT_DIR/staffify/fanout/v1/{events,fanout}_pb2.py and
# fanout_pb2_grpc.py. Uses Debian's protoc and grpc_python_plugin (packages
# protobuf-compiler and protobuf-compiler-grpc), whose output matches
# Debian's python3-protobuf and python3-grpcio. PROTOC and GRPC_PYTHON_PLUGIN
# name other binaries.
#
#   client/python/generate.sh build/client/python
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
out_dir=$1
proto_dir="$(cd "$(dirname "$0")/../../proto" && pwd)"
protoc=${PROTOC:-protoc}
plugin=${GRPC_PYTHON_PLUGIN:-/usr/bin/grpc_python_plugin}

mkdir -p "$out_dir"
"$protoc" \
  --proto_path="$proto_dir" \
  --python_out="$out_dir" \
  --grpc_python_out="$out_dir" \
  --plugin=protoc-gen-grpc_python="$plugin" \
  "$proto_dir"/staffify/fanout/v1/events.proto \
  "$proto_dir"/staffify/fanout/v1/fanout.proto
