#!/usr/bin/env bash
# Runs fanout-server's benchmarks and prints one table of figures: each
# figure measured BENCH_REPEAT (3) times, shown as "median (min..max)".
#
#   bench/run.sh [BUILD_DIR]     (`make bench` builds in Release and runs it)
#
# Every measurement gets a fresh fanout-server on free loopback ports with an
# empty data folder under $TMPDIR, driven by fanout-bench from the same
# build; nothing is downloaded and no traffic leaves 127.0.0.1. Everything
# started here is stopped, and the temporary folder removed, on exit.
# The whole run takes about three minutes.
#
# The table has one column per system measured. Only fanout-server is
# measured today; a peer (nginx, NATS, ...) adds its name to `systems` and
# records its figures with `record <system> <row> <value>` under the same
# row keys; rows a peer has no figure for print "-".
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build_dir=${1:-"$here/../build-release"}
server_bin="$build_dir/server/fanout-server"
bench_bin="$build_dir/bench/fanout-bench"
repeat=${BENCH_REPEAT:-3}

for binary in "$server_bin" "$bench_bin"; do
  if [ ! -x "$binary" ]; then
    echo "run.sh: $binary not built; run \`make bench\`" >&2
    exit 1
  fi
done

# Sizes of the loads; each run stops by itself.
ingest_seconds=5
fanout_events=8000
fanout_connections=8
latency_rate=1000
latency_seconds=5
latency_subscribers=10
latency_connections=8
idle_subscribers=100
bench_timeout=180  # seconds; a hung run is killed and counted as failed

work=$(mktemp -d "${TMPDIR:-/tmp}/fanout-bench.XXXXXX")
server_pid=""
http_port=""
grpc_port=""
servers_started=0

stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A server that verifies signatures gets a throw-away secret through the
# environment (never the command line); fanout-bench signs with it.
server_help=$("$server_bin" --help 2>&1 || true)
if grep -q -- '--secrets_file' <<<"$server_help"; then
  secret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  export FANOUT_WEBHOOK_SECRETS="$secret" FANOUT_WEBHOOK_SECRET="$secret"
  signing="HMAC-SHA256 signed, verified by the server"
else
  signing="unsigned (this server verifies no signature)"
fi

# start_server SYNC: starts a fresh server; sets server_pid and the ports.
start_server() {
  local sync=$1
  servers_started=$((servers_started + 1))
  local data="$work/data-$servers_started"
  local log="$work/server-$servers_started.log"
  : >"$log"  # exists before the first look below
  "$server_bin" --http_address=127.0.0.1 --http_port=0 \
      --grpc_address=127.0.0.1:0 --data_dir="$data" --sync="$sync" \
      --shutdown_grace=1s >"$log" 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do
    if grep -q 'listening http=' "$log"; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "run.sh: fanout-server did not start:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.05
  done
  http_port=$(sed -n 's/.*listening http=127\.0\.0\.1:\([0-9]*\) .*/\1/p' \
      "$log" | head -n 1)
  grpc_port=$(sed -n 's/.*listening .* grpc=[^ ]*:\([0-9]*\) .*/\1/p' "$log" |
      head -n 1)
  if [ -z "$http_port" ] || [ -z "$grpc_port" ]; then
    echo "run.sh: no listening line from fanout-server:" >&2
    cat "$log" >&2
    exit 1
  fi
}

# Figures: values["<system>|<row>"] holds one value per successful run.
declare -A values=()
declare -A failures=()
record() { values["$1|$2"]+="$3 "; }

# result_value LINE KEY: the value of KEY=... in a "result ..." line.
result_value() {
  sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"
}

# measure LABEL SYNC FANOUT-BENCH-FLAGS...: one run on a fresh server. Sets
# `result` to its "result" line, or "" when the run failed.
measure() {
  local label=$1 sync=$2
  shift 2
  start_server "$sync"
  local output status=0
  output=$(timeout "$bench_timeout" "$bench_bin" \
      --http_url="http://127.0.0.1:$http_port/webhooks" \
      --grpc_target="127.0.0.1:$grpc_port" --server_pid="$server_pid" \
      "$@" 2>&1) || status=$?
  stop_server
  result=$(grep '^result ' <<<"$output" || true)
  if [ "$status" -ne 0 ] || [ -z "$result" ]; then
    printf '  %-36s FAILED (exit %s)\n' "$label" "$status"
    printf '      %s\n' "${output//$'\n'/$'\n      '}"
    failures["$label"]=1
    result=""
    return 0
  fi
  printf '  %-36s %s\n' "$label" "${result#result }"
}

ingest_run() {  # CONNECTIONS SYNC
  local row="ingest_c$1_$2"
  measure "ingest c=$1 sync=$2" "$2" --mode=ingest --connections="$1" \
      --duration="${ingest_seconds}s"
  [ -n "$result" ] || return 0
  record fanout-server "$row" "$(result_value "$result" deliveries_per_s)"
  record fanout-server "${row}_p50" "$(result_value "$result" p50_ms)"
  record fanout-server "${row}_p99" "$(result_value "$result" p99_ms)"
}

fanout_run() {  # SUBSCRIBERS
  local row="fanout_s$1"
  measure "fanout s=$1" normal --mode=fanout --subscribers="$1" \
      --events="$fanout_events" --connections="$fanout_connections"
  [ -n "$result" ] || return 0
  record fanout-server "$row" "$(result_value "$result" delivered_per_s)"
}

latency_run() {
  measure "latency ${latency_rate}/s s=$latency_subscribers" normal \
      --mode=latency --rate="$latency_rate" \
      --duration="${latency_seconds}s" \
      --subscribers="$latency_subscribers" \
      --connections="$latency_connections"
  [ -n "$result" ] || return 0
  record fanout-server latency_p50 "$(result_value "$result" p50_ms)"
  record fanout-server latency_p99 "$(result_value "$result" p99_ms)"
  record fanout-server latency_p999 "$(result_value "$result" p999_ms)"
}

memory_run() {
  measure "idle-memory s=$idle_subscribers" normal --mode=idle-memory \
      --subscribers="$idle_subscribers"
  [ -n "$result" ] || return 0
  record fanout-server memory_idle "$(result_value "$result" idle_rss_mib)"
  local bytes
  bytes=$(result_value "$result" bytes_per_subscriber)
  record fanout-server memory_per_subscriber \
      "$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1024 }')"
}

# The machine, above the table.
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
memory_total=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' \
    /proc/meminfo)
data_fs=$(df -PT "$work" | awk 'NR == 2 { print $2 " (" $7 ")" }')
revision=$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo "?")
if [ -n "$(git -C "$here/.." status --porcelain 2>/dev/null)" ]; then
  revision="$revision + uncommitted changes"
fi
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

echo "fanout-server benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "  machine:   $(nproc) CPUs, ${cpu_model:-unknown CPU}, $memory_total"
echo "  kernel:    $(uname -sr)"
echo "  event log: $data_fs"
echo "  build:     $build_dir (revision $revision)"
echo "  requests:  ~550-byte ticket.created deliveries, $signing"
echo "  runs:      $repeat of each figure, each on a fresh server"
echo

started=$SECONDS
for run in $(seq "$repeat"); do
  echo "run $run of $repeat"
  for sync in normal full; do
    for connections in 1 32; do
      ingest_run "$connections" "$sync"
    done
  done
  for subscribers in 1 10 100; do
    fanout_run "$subscribers"
  done
  latency_run
  memory_run
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo

# summarize VALUES...: "median (min..max)", or "-" when there is none.
summarize() {
  [ $# -gt 0 ] || { echo "-"; return 0; }
  printf '%s\n' "$@" | sort -g | awk -v want="$repeat" '
    function show(v) {
      if (v >= 1000) return sprintf("%.0f", v)
      if (v >= 100) return sprintf("%.0f", v)
      if (v >= 10) return sprintf("%.1f", v)
      return sprintf("%.2f", v)
    }
    { v[NR] = $1 }
    END {
      median = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      text = show(median) " (" show(v[1]) ".." show(v[NR]) ")"
      if (NR < want) text = text " [" NR " of " want " runs]"
      print text
    }'
}

# Row key | figure | unit, in table order.
rows=(
  "ingest_c1_normal|ingest, 1 connection, sync=normal|deliveries/s"
  "ingest_c1_normal_p50|ingest, 1 connection, sync=normal: time to 200, p50|ms"
  "ingest_c1_normal_p99|ingest, 1 connection, sync=normal: time to 200, p99|ms"
  "ingest_c32_normal|ingest, 32 connections, sync=normal|deliveries/s"
  "ingest_c32_normal_p50|ingest, 32 connections, sync=normal: time to 200, p50|ms"
  "ingest_c32_normal_p99|ingest, 32 connections, sync=normal: time to 200, p99|ms"
  "ingest_c1_full|ingest, 1 connection, sync=full|deliveries/s"
  "ingest_c1_full_p50|ingest, 1 connection, sync=full: time to 200, p50|ms"
  "ingest_c1_full_p99|ingest, 1 connection, sync=full: time to 200, p99|ms"
  "ingest_c32_full|ingest, 32 connections, sync=full|deliveries/s"
  "ingest_c32_full_p50|ingest, 32 connections, sync=full: time to 200, p50|ms"
  "ingest_c32_full_p99|ingest, 32 connections, sync=full: time to 200, p99|ms"
  "fanout_s1|fan-out to 1 subscriber|events/s delivered"
  "fanout_s10|fan-out to 10 subscribers|events/s delivered"
  "fanout_s100|fan-out to 100 subscribers|events/s delivered"
  "latency_p50|latency, ${latency_rate}/s to ${latency_subscribers} subscribers, p50|ms"
  "latency_p99|latency, ${latency_rate}/s to ${latency_subscribers} subscribers, p99|ms"
  "latency_p999|latency, ${latency_rate}/s to ${latency_subscribers} subscribers, p99.9|ms"
  "memory_idle|memory, idle server (VmRSS)|MiB"
  "memory_per_subscriber|memory per idle subscriber (${idle_subscribers} attached)|KiB"
)
systems=(fanout-server)

header="| figure | unit |"
rule="|---|---|"
for system in "${systems[@]}"; do
  header+=" $system |"
  rule+="---|"
done
echo "$header"
echo "$rule"
for row in "${rows[@]}"; do
  IFS='|' read -r key figure unit <<<"$row"
  line="| $figure | $unit |"
  for system in "${systems[@]}"; do
    # shellcheck disable=SC2086  # one word per value
    line+=" $(summarize ${values["$system|$key"]:-}) |"
  done
  echo "$line"
done
echo
echo "Each cell: median (min..max) of $repeat runs. Load average" \
    "before: $load_before, after: $load_after; $((SECONDS - started)) s."
if [ ${#failures[@]} -gt 0 ]; then
  echo "Failed runs: ${!failures[*]} (see above)."
  exit 1
fi
