#!/usr/bin/env bash
# Runs one fuzz target for a bounded time:
#   fuzz/run.sh <fuzz target binary> [seconds, default 60]
# Inputs that add coverage are kept in <binary dir>/corpus/<kind>/ and reused
# by the next run; seeds come from <binary dir>/seeds/<kind>/ (made from
# examples/ at build time) and fuzz/corpus/<kind>/ (committed), where <kind>
# is the target's name without "fuzz_". Exits non-zero when the target
# crashes, leaving the input in <binary dir>/artifacts/.
set -euo pipefail

binary=$1
seconds=${2:-60}
name=$(basename "$binary")
kind=${name#fuzz_}
source_dir=$(cd "$(dirname "$0")" && pwd)
out=$(cd "$(dirname "$binary")" && pwd)
mkdir -p "$out/corpus/$kind" "$out/artifacts"

options=(
  -max_total_time="$seconds"
  -timeout=30
  -rss_limit_mb=2048
  -print_final_stats=1
  -dict="$source_dir/$kind.dict"
  -artifact_prefix="$out/artifacts/$name-"
)
# Room for headers, a body and a second pipelined request.
[ "$kind" = http ] && options+=(-max_len=8192)

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
"$binary" "${options[@]}" "$out/corpus/$kind" "$out/seeds/$kind" \
  "$source_dir/corpus/$kind" || status=$?
if [ "$status" -ne 0 ]; then
  echo "$name failed (exit $status); the input is in $out/artifacts/." >&2
  echo "Reproduce with: $binary $out/artifacts/<file>" >&2
fi
exit "$status"
