#!/usr/bin/env bash
# Measures fanout-server beside two peers, nginx answering 204 to the same
# POST and core NATS, and prints one table: each figure measured
# BENCH_REPEAT (3) times, shown as "median (min..max)", with the ratio of
# the medians and whether the issue's targets were met. fanout-server is
# measured with its embedded event log and, for ingest, fan-out and idle
# memory, with its NATS JetStream backend too (--bus=nats://...), as one
# server and as two replicas sharing one stream.
#
#   bench/run.sh [BUILD_DIR]     (`make bench` installs, builds and runs it)
#   BENCH_REPEAT=1 BENCH_QUICK=1 bench/run.sh    a smoke run, about 50 s
#
# Every measurement gets fresh servers (fanout-server, nginx, nats-server,
# or fanout-server replicas with a nats-server running JetStream) on free
# loopback ports, with their files under one temporary folder; nothing is
# downloaded and no traffic leaves 127.0.0.1. Everything started here is
# stopped, and the folder removed, on exit. The load comes from wrk
# (ingest, the same signed requests for fanout-server and nginx; one wrk
# per replica, each with requests of its own), fanout-bench (fanout-server's
# streams) and nats-bench (NATS), all on this machine. docs/performance.md
# says what each figure means.
#
# A peer whose programs are missing gets "-" in its column; the runs of the
# others go on.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build_dir=${1:-"$here/../build-release"}
server_bin="$build_dir/server/fanout-server"
bench_bin="$build_dir/bench/fanout-bench"
nats_bench_bin="$build_dir/bench/nats-bench"
wrk_script="$here/wrk_deliveries.lua"
repeat=${BENCH_REPEAT:-3}
quick=${BENCH_QUICK:-0}

for binary in "$server_bin" "$bench_bin"; do
  if [ ! -x "$binary" ]; then
    echo "run.sh: $binary not built; run \`make bench\`" >&2
    exit 1
  fi
done

# Sizes of the loads; each run stops by itself.
if [ "$quick" = 1 ]; then
  ingest_seconds=2
  fanout_events=2000
  latency_seconds=2
  stalled_events=10000
else
  ingest_seconds=5
  fanout_events=8000
  latency_seconds=5
  stalled_events=100000
fi
latency_rate=1000
latency_subscribers=10
latency_connections=8
fanout_connections=8
idle_subscribers=100
# fanout-server's HTTP threads and nginx's worker processes: the same.
http_threads=2
# Signed requests written for each round of ingest runs: enough for
# 40,000 deliveries/s; fanout-server must never be sent one twice.
request_pool=${BENCH_INGEST_POOL:-$((ingest_seconds * 40000))}
# Four files: one wrk's two threads send two each, or each of two wrk
# processes (one per replica) sends two, so that no delivery reaches both.
request_slices=4
bench_timeout=180  # seconds; a hung run is killed and counted as failed
clock_ticks=$(getconf CLK_TCK)

work=$(mktemp -d "${TMPDIR:-/tmp}/fanout-bench.XXXXXX")
server_pid=""    # the fanout-server started last
server_pids=()   # every fanout-server running, first started first
http_ports=()    # their ports, in the same order
grpc_ports=()
nginx_pid=""
nats_pid=""
http_port=""
grpc_port=""
started=0

# stop_process PID: TERM, then KILL after 10 s; reaps it.
stop_process() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_server() {  # every fanout-server, before the nats-server they use
  local pid
  for pid in "${server_pids[@]}"; do stop_process "$pid"; done
  server_pid=""
  server_pids=()
  http_ports=()
  grpc_ports=()
}
stop_nginx() { stop_process "$nginx_pid"; nginx_pid=""; }
stop_nats() { stop_process "$nats_pid"; nats_pid=""; }

cleanup() {
  stop_server
  stop_nginx
  stop_nats
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# What each peer needs; a reason in `missing` leaves its column empty.
declare -A missing=()
command -v wrk >/dev/null || missing[wrk]="wrk is not installed"
command -v nginx >/dev/null || missing[nginx]="nginx is not installed"
command -v nats-server >/dev/null ||
  missing[nats]="nats-server is not installed"
[ -x "$nats_bench_bin" ] || missing[nats]="nats-bench was not built (no libnats)"
command -v nats-server >/dev/null ||
  missing[jetstream]="nats-server is not installed"
command -v curl >/dev/null || missing[wrk]="curl is not installed"
command -v python3 >/dev/null || missing[nginx]="python3 is not installed"
if [ -n "${missing[wrk]:-}" ]; then
  missing[nginx]=${missing[wrk]}
fi

# A server that verifies signatures gets a throw-away secret through the
# environment (never the command line); fanout-bench signs with it.
server_help=$("$server_bin" --help 2>&1 || true)
grep -q -- '--bus' <<<"$server_help" ||
  missing[jetstream]="this fanout-server has no NATS backend (--bus)"
if grep -q -- '--secrets_file' <<<"$server_help"; then
  secret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  export FANOUT_WEBHOOK_SECRETS="$secret" FANOUT_WEBHOOK_SECRET="$secret"
  signing="HMAC-SHA256 signed, verified by fanout-server"
else
  signing="unsigned (this server verifies no signature)"
fi

# A free TCP port on 127.0.0.1, for servers that cannot be given port 0.
free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# start_server SYNC [BUS]: starts a fresh fanout-server, with its embedded
# event log or, given BUS (nats://...), on that JetStream stream; sets
# server_pid and the ports, and adds them to server_pids and the port lists.
start_server() {
  local sync=$1
  local bus_flags=()
  [ $# -lt 2 ] || bus_flags=(--bus="$2")
  started=$((started + 1))
  local data="$work/data-$started"
  local log="$work/server-$started.log"
  : >"$log"  # exists before the first look below
  "$server_bin" --http_address=127.0.0.1 --http_port=0 \
      --grpc_address=127.0.0.1:0 --data_dir="$data" --sync="$sync" \
      --http_threads="$http_threads" --shutdown_grace=1s \
      "${bus_flags[@]}" >"$log" 2>&1 &
  server_pid=$!
  server_pids+=("$server_pid")
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
  http_ports+=("$http_port")
  grpc_ports+=("$grpc_port")
}

# start_nginx: a fresh nginx, run as the current user from a prefix folder
# of its own, answering 204 to POST /webhooks on 127.0.0.1; sets nginx_pid
# and http_port. Returns 1 when it did not start.
start_nginx() {
  local attempt
  for attempt in 1 2 3; do
    started=$((started + 1))
    local prefix="$work/nginx-$started"
    mkdir -p "$prefix"
    http_port=$(free_port)
    # keepalive_requests: fanout-server keeps a connection for as many
    # requests as the client sends; nginx's default closes it after 1000.
    cat >"$prefix/nginx.conf" <<EOF
worker_processes $http_threads;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $prefix/client_body;
  proxy_temp_path $prefix/proxy;
  fastcgi_temp_path $prefix/fastcgi;
  uwsgi_temp_path $prefix/uwsgi;
  scgi_temp_path $prefix/scgi;
  server {
    listen 127.0.0.1:$http_port;
    location = /webhooks {
      if (\$request_method != POST) { return 405; }
      return 204;
    }
  }
}
EOF
    nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
        -g 'daemon off;' >"$prefix/stdout.log" 2>&1 &
    nginx_pid=$!
    for _ in $(seq 100); do
      if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
          -X POST -H 'Content-Type: application/json' --data '{}' \
          "http://127.0.0.1:$http_port/webhooks")" = 204 ]; then
        return 0
      fi
      kill -0 "$nginx_pid" 2>/dev/null || break
      sleep 0.05
    done
    echo "run.sh: nginx did not start on port $http_port (attempt" \
        "$attempt):" >&2
    cat "$prefix/error.log" "$prefix/stdout.log" >&2 2>/dev/null || true
    stop_nginx
  done
  return 1
}

# start_nats [jetstream]: a fresh nats-server on a port of its choosing on
# 127.0.0.1: core NATS, or with JetStream, its store in a folder of its own
# and taking messages of up to 8 MB (fanout-server refuses to start on a
# smaller max_payload, since an event may be that large). Sets nats_pid and
# nats_port. Returns 1 when it did not start.
start_nats() {
  started=$((started + 1))
  local folder="$work/nats-$started"
  local log="$folder/nats.log"
  mkdir -p "$folder"
  : >"$log"
  echo "listen: 127.0.0.1:-1" >"$folder/nats.conf"
  if [ "${1:-}" = jetstream ]; then
    cat >>"$folder/nats.conf" <<EOF
max_payload: 8MB
jetstream {
  store_dir: "$folder/jetstream"
}
EOF
  fi
  nats-server -c "$folder/nats.conf" -l "$log" >/dev/null 2>&1 &
  nats_pid=$!
  nats_port=""
  for _ in $(seq 100); do
    nats_port=$(sed -n \
        's/.*Listening for client connections on 127\.0\.0\.1:\([0-9]*\).*/\1/p' \
        "$log" | head -n 1)
    [ -z "$nats_port" ] || return 0
    kill -0 "$nats_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "run.sh: nats-server did not start:" >&2
  cat "$log" >&2
  stop_nats
  return 1
}

# Figures: values["<system>|<row>"] holds one value per successful run.
declare -A values=()
declare -A failures=()
record() { values["$1|$2"]+="$3 "; }

# result_value LINE KEY: the value of KEY=... in a "result ..." line.
result_value() {
  sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"
}

# report LABEL STATUS OUTPUT: prints a run's result line, or its failure,
# and sets `result` ("" for a failure).
report() {
  local label=$1 status=$2 output=$3
  result=$(grep '^result ' <<<"$output" || true)
  if [ "$status" -ne 0 ] || [ -z "$result" ]; then
    printf '  %-44s FAILED (exit %s)\n' "$label" "$status"
    printf '      %s\n' "${output//$'\n'/$'\n      '}"
    failures["$label"]=1
    result=""
    return 0
  fi
  printf '  %-44s %s\n' "$label" "${result#result }"
}

# Where a measurement's fanout-servers keep their events, its STORE:
# "normal" or "full", one server with its embedded event log and that
# --sync policy; "jsN", N servers ("replicas") sharing one JetStream stream
# on a fresh nats-server.

# store_label STORE: how run lines name it.
store_label() {
  case $1 in
    js1) echo "bus=nats, 1 replica" ;;
    js*) echo "bus=nats, ${1#js} replicas" ;;
    *) echo "sync=$1" ;;
  esac
}

# start_store STORE: fresh servers for STORE; server_pids, http_ports and
# grpc_ports list the fanout-servers. Returns 1 when the nats-server did
# not start.
start_store() {
  case $1 in
    js*)
      start_nats jetstream || return 1
      for _ in $(seq "${1#js}"); do
        start_server normal "nats://127.0.0.1:$nats_port"
      done
      ;;
    *) start_server "$1" ;;
  esac
}

# stop_store: stops what start_store started, the fanout-servers first.
stop_store() {
  stop_server
  stop_nats
}

# measure LABEL STORE FANOUT-BENCH-FLAGS...: one fanout-bench run on fresh
# servers for STORE: it posts to the first fanout-server and spreads its
# streams over all of them; its CPU figures are the first one's.
measure() {
  local label=$1 store=$2
  shift 2
  result=""
  if ! start_store "$store"; then
    failures["$label"]=1
    return 0
  fi
  local targets
  targets=$(printf '127.0.0.1:%s,' "${grpc_ports[@]}")
  local output status=0
  output=$(timeout "$bench_timeout" "$bench_bin" \
      --http_url="http://127.0.0.1:${http_ports[0]}/webhooks" \
      --grpc_target="${targets%,}" --server_pid="${server_pids[0]}" \
      "$@" 2>&1) || status=$?
  stop_store
  report "$label" "$status" "$output"
}

# measure_nats LABEL NATS-BENCH-FLAGS...: one nats-bench run on a fresh
# nats-server.
measure_nats() {
  local label=$1
  shift
  result=""
  if ! start_nats; then
    failures["$label"]=1
    return 0
  fi
  local output status=0
  output=$(timeout "$bench_timeout" "$nats_bench_bin" \
      --url="nats://127.0.0.1:$nats_port" --server_pid="$nats_pid" \
      "$@" 2>&1) || status=$?
  stop_nats
  report "$label" "$status" "$output"
}

# write_requests: the signed requests for one round of ingest runs, under
# $work/requests.N. Signed now: they must be sent within the server's
# signature tolerance (5 minutes), which one round takes well inside.
write_requests() {
  local output status=0
  output=$("$bench_bin" --mode=requests --requests="$request_pool" \
      --slices="$request_slices" --out="$work/requests" \
      --http_url="http://127.0.0.1/webhooks" 2>&1) || status=$?
  if [ "$status" -ne 0 ]; then
    echo "run.sh: fanout-bench --mode=requests failed: $output" >&2
    exit 1
  fi
}

# run_wrk CONNECTIONS URL...: runs wrk with wrk_deliveries.lua; sets
# `output` and `status`. Given several URLs (replicas), one wrk each runs at
# the same time, with a share of the connections, one thread and request
# files of its own; `output` then ends with one result line for them all:
# rates and counts summed, times the highest of the runs'.
run_wrk() {
  local connections=$1
  shift
  local count=$#
  local threads=1
  [ "$count" -gt 1 ] || [ "$connections" -le 1 ] || threads=2
  local slices=$((request_slices / count)) index=0 url
  local pids=()
  status=0
  for url in "$@"; do
    timeout "$bench_timeout" wrk -t "$threads" \
        -c "$((connections / count))" -d "${ingest_seconds}s" --timeout 10s \
        -s "$wrk_script" "$url" -- "$work/requests" "$slices" "$threads" \
        "$((index * slices))" >"$work/wrk-$index.out" 2>&1 &
    pids+=($!)
    index=$((index + 1))
  done
  for index in "${!pids[@]}"; do
    wait "${pids[$index]}" || status=$?
  done
  output=$(cat "$work"/wrk-*.out)
  rm -f "$work"/wrk-*.out
  [ "$count" -gt 1 ] || return 0
  local runs summed
  runs=$(grep -c '^result ' <<<"$output" || true)
  [ "$runs" = "$count" ] || status=1
  summed=$(grep '^result ' <<<"$output" | awk '
    {
      for (i = 2; i <= NF; i++) {
        split($i, kv, "=")
        if (!(kv[1] in total)) order[++keys] = kv[1]
        if (kv[1] ~ /_ms$|^seconds$/) {
          if (kv[2] > total[kv[1]]) total[kv[1]] = kv[2]
        } else {
          total[kv[1]] += kv[2]
        }
      }
    }
    END {
      line = "result"
      for (k = 1; k <= keys; k++) line = line " " order[k] "=" total[order[k]]
      print line
    }')
  # The summed line is the only "result" line, the one report reads.
  output=$(sed 's/^result /one wrk: /' <<<"$output")$'\n'"$summed"
}

# cpu_ticks PID...: the CPU time the processes used so far (utime + stime
# from /proc/<pid>/stat), summed, in clock ticks.
cpu_ticks() {
  local pid ticks total=0
  for pid in "$@"; do
    # The command name, in brackets, may hold spaces; what follows not.
    ticks=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' \
        "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + ${ticks:-0}))
  done
  echo "$total"
}

# cores TICKS SECONDS: CPU ticks as cores (CPU seconds per wall second).
cores() {
  awk -v t="$1" -v s="$2" -v hz="$clock_ticks" \
      'BEGIN { printf "%.2f", (s > 0 ? t / hz / s : 0) }'
}

# wrk_errors RESULT: what went wrong in a wrk run, or "" when nothing did.
wrk_errors() {
  local key problems=""
  for key in non2xx connect_errors read_errors write_errors timeouts; do
    local count
    count=$(result_value "$1" "$key")
    if [ "${count:-0}" != 0 ]; then problems+="$key=$count "; fi
  done
  echo "$problems"
}

ingest_server_run() {  # CONNECTIONS STORE
  local connections=$1 store=$2
  local label
  label="ingest c=$connections $(store_label "$store") (wrk)"
  local row="ingest_c${connections}_$store"
  if ! start_store "$store"; then
    failures["$label"]=1
    return 0
  fi
  # Replicas share the connections, and none is sent what another is.
  local urls=() port
  for port in "${http_ports[@]}"; do
    urls+=("http://127.0.0.1:$port/webhooks")
  done
  local ticks_before nats_ticks_before started_at_s
  ticks_before=$(cpu_ticks "${server_pids[@]}")
  nats_ticks_before=$(cpu_ticks ${nats_pid:+"$nats_pid"})
  started_at_s=$EPOCHREALTIME
  run_wrk "$connections" "${urls[@]}"
  local seconds cpu_figures
  seconds=$(awk -v a="$started_at_s" -v b="$EPOCHREALTIME" \
      'BEGIN { print b - a }')
  cpu_figures="server_cores=$(cores \
      "$(($(cpu_ticks "${server_pids[@]}") - ticks_before))" "$seconds")"
  if [ -n "$nats_pid" ]; then
    cpu_figures+=" nats_cores=$(cores \
        "$(($(cpu_ticks "$nats_pid") - nats_ticks_before))" "$seconds")"
  fi
  # Every answer must have been a new event: nothing refused and no
  # duplicate, by the servers' own counts.
  local metrics=""
  for port in "${http_ports[@]}"; do
    metrics+=$(curl -s --max-time 5 "http://127.0.0.1:$port/metrics" ||
        true)$'\n'
  done
  stop_store
  local line problems accepted others answered
  line=$(grep '^result ' <<<"$output" || true)
  problems=$(wrk_errors "$line")
  accepted=$(awk '/^fanout_deliveries_total\{.*outcome="accepted"\}/ \
      { sum += $2 } END { print sum + 0 }' <<<"$metrics")
  others=$(awk '/^fanout_deliveries_total\{/ && !/outcome="accepted"/ \
      { sum += $2 } END { print sum + 0 }' <<<"$metrics")
  answered=$(result_value "$line" answered)
  if [ "$others" != 0 ]; then
    problems+="server counted $others deliveries not accepted "
    problems+="(duplicates: raise BENCH_INGEST_POOL) "
  fi
  if [ -n "$line" ] && [ "$accepted" -lt "${answered:-0}" ]; then
    problems+="server accepted $accepted of $answered answered "
  fi
  if [ -n "$problems" ]; then
    output+=$'\n'"FAILED: $problems"
    status=1
  fi
  output=$(sed "s/^result .*/& server_accepted=$accepted $cpu_figures/" \
      <<<"$output")
  report "$label" "$status" "$output"
  [ -n "$result" ] || return 0
  record fanout-server "$row" "$(result_value "$result" deliveries_per_s)"
  record fanout-server "${row}_p50" "$(result_value "$result" p50_ms)"
  record fanout-server "${row}_p99" "$(result_value "$result" p99_ms)"
}

ingest_nginx_run() {  # CONNECTIONS
  local connections=$1
  local label="ingest c=$connections nginx (wrk)"
  local row="ingest_c$connections"
  if ! start_nginx; then
    failures["$label"]=1
    return 0
  fi
  run_wrk "$connections" "http://127.0.0.1:$http_port/webhooks"
  stop_nginx
  local line problems
  line=$(grep '^result ' <<<"$output" || true)
  problems=$(wrk_errors "$line")
  if [ -n "$problems" ]; then
    output+=$'\n'"FAILED: $problems"
    status=1
  fi
  report "$label" "$status" "$output"
  [ -n "$result" ] || return 0
  record nginx "$row" "$(result_value "$result" deliveries_per_s)"
  record nginx "${row}_p50" "$(result_value "$result" p50_ms)"
  record nginx "${row}_p99" "$(result_value "$result" p99_ms)"
}

fanout_run() {  # SUBSCRIBERS [STORE]
  local store=${2:-normal}
  local row="fanout_s$1" label="fanout s=$1"
  if [ "$store" != normal ]; then
    row+="_$store"
    label+=" $(store_label "$store")"
  fi
  measure "$label (fanout-bench)" "$store" --mode=fanout \
      --subscribers="$1" --events="$fanout_events" \
      --connections="$fanout_connections"
  [ -n "$result" ] || return 0
  record fanout-server "$row" "$(result_value "$result" delivered_per_s)"
}

fanout_nats_run() {  # SUBSCRIBERS
  local row="fanout_s$1"
  measure_nats "fanout s=$1 NATS (nats-bench)" --mode=fanout \
      --subscribers="$1" --messages="$fanout_events"
  [ -n "$result" ] || return 0
  record nats "$row" "$(result_value "$result" delivered_per_s)"
}

latency_run() {
  measure "latency ${latency_rate}/s s=$latency_subscribers (fanout-bench)" \
      normal --mode=latency --rate="$latency_rate" \
      --duration="${latency_seconds}s" \
      --subscribers="$latency_subscribers" \
      --connections="$latency_connections"
  [ -n "$result" ] || return 0
  record fanout-server latency_p50 "$(result_value "$result" p50_ms)"
  record fanout-server latency_p99 "$(result_value "$result" p99_ms)"
  record fanout-server latency_p999 "$(result_value "$result" p999_ms)"
}

latency_nats_run() {
  measure_nats "latency ${latency_rate}/s s=$latency_subscribers NATS" \
      --mode=latency --rate="$latency_rate" \
      --duration="${latency_seconds}s" --subscribers="$latency_subscribers"
  [ -n "$result" ] || return 0
  record nats latency_p50 "$(result_value "$result" p50_ms)"
  record nats latency_p99 "$(result_value "$result" p99_ms)"
  record nats latency_p999 "$(result_value "$result" p999_ms)"
}

# record_memory SYSTEM [SUFFIX]: the figures of an idle-memory result,
# under rows ending in SUFFIX.
record_memory() {
  local suffix=${2:-}
  record "$1" "memory_idle$suffix" "$(result_value "$result" idle_rss_mib)"
  local bytes
  bytes=$(result_value "$result" bytes_per_subscriber)
  record "$1" "memory_per_subscriber$suffix" \
      "$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1024 }')"
}

memory_run() {  # [STORE]
  local store=${1:-normal}
  local label="idle-memory s=$idle_subscribers" suffix=""
  if [ "$store" != normal ]; then
    suffix="_$store"
    label+=" $(store_label "$store")"
  fi
  measure "$label (fanout-bench)" "$store" \
      --mode=idle-memory --subscribers="$idle_subscribers"
  [ -n "$result" ] || return 0
  record_memory fanout-server "$suffix"
}

memory_nats_run() {
  measure_nats "idle-memory s=$idle_subscribers NATS (nats-bench)" \
      --mode=idle-memory --subscribers="$idle_subscribers"
  [ -n "$result" ] || return 0
  record_memory nats
}

stalled_run() {
  measure "stalled-memory ${stalled_events} events (fanout-bench)" normal \
      --mode=stalled-memory --events="$stalled_events" \
      --connections="$fanout_connections"
  [ -n "$result" ] || return 0
  record fanout-server memory_stalled "$(result_value "$result" growth_mib)"
}

# The machine and the peers, above the table.
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
memory_total=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' \
    /proc/meminfo)
data_fs=$(df -PT "$work" | awk 'NR == 2 { print $2 " (" $7 ")" }')
revision=$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo "?")
if [ -n "$(git -C "$here/.." status --porcelain 2>/dev/null)" ]; then
  revision="$revision + uncommitted changes"
fi
version_of() {  # COMMAND...: its first line of version output, or "-"
  "$@" 2>&1 | head -n 1 || true
}
nginx_version="-"
nats_version="-"
wrk_version="-"
[ -n "${missing[nginx]:-}" ] || nginx_version=$(version_of nginx -v)
[ -n "${missing[nats]:-}" ] ||
  nats_version=$(version_of nats-server --version)
[ -n "${missing[wrk]:-}" ] || wrk_version=$(version_of wrk --version |
    sed 's/ Copyright.*//')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

echo "fanout-server beside nginx and NATS, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "  machine:   $(nproc) CPUs, ${cpu_model:-unknown CPU}, $memory_total"
echo "  kernel:    $(uname -sr)"
echo "  event log: $data_fs"
echo "  build:     $build_dir (revision $revision)"
echo "  requests:  ~550-byte ticket.created deliveries, $signing"
echo "  peers:     ${nginx_version#nginx version: } ($http_threads workers," \
    "return 204); $nats_version (core, no JetStream); $wrk_version"
if [ -z "${missing[jetstream]:-}" ]; then
  echo "  bus=nats:  fanout-server replicas sharing one JetStream stream" \
      "(file storage, 1 copy) on $nats_version, fresh for each measurement"
fi
for peer in "${!missing[@]}"; do
  echo "  missing:   $peer: ${missing[$peer]}; its figures are \"-\""
done
echo "  runs:      $repeat of each figure, each on a fresh server"
if [ "$quick" = 1 ]; then
  echo "  QUICK:     BENCH_QUICK=1: shorter runs and $stalled_events events" \
      "past the stalled subscriber; a smoke test, not figures to quote"
fi
echo

started_at=$SECONDS
for run in $(seq "$repeat"); do
  echo "run $run of $repeat"
  if [ -z "${missing[wrk]:-}" ]; then
    write_requests
    for connections in 1 32; do
      for sync in normal full; do
        ingest_server_run "$connections" "$sync"
      done
      if [ -z "${missing[jetstream]:-}" ]; then
        ingest_server_run "$connections" js1
        [ "$connections" = 1 ] || ingest_server_run "$connections" js2
      fi
      [ -n "${missing[nginx]:-}" ] || ingest_nginx_run "$connections"
    done
    rm -f "$work"/requests.*
  fi
  for subscribers in 1 10 100; do
    fanout_run "$subscribers"
    [ -n "${missing[nats]:-}" ] || fanout_nats_run "$subscribers"
  done
  if [ -z "${missing[jetstream]:-}" ]; then
    fanout_run 100 js1
    fanout_run 100 js2
  fi
  latency_run
  [ -n "${missing[nats]:-}" ] || latency_nats_run
  memory_run
  [ -n "${missing[jetstream]:-}" ] || memory_run js1
  [ -n "${missing[nats]:-}" ] || memory_nats_run
  stalled_run
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo

# median VALUES...: the median, unformatted; nothing when there is none.
median() {
  [ $# -gt 0 ] || return 0
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# summarize VALUES...: "median (min..max)", or "-" when there is none.
summarize() {
  [ $# -gt 0 ] || { echo "-"; return 0; }
  printf '%s\n' "$@" | sort -g | awk -v want="$repeat" '
    function show(v) {
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

# key_for SYSTEM ROW: the key under which SYSTEM recorded ROW's figure.
# The peers have neither sync policy nor backend: their figures stand
# beside each of fanout-server's.
key_for() {
  local system=$1 row=$2
  if [ "$system" != fanout-server ]; then
    row=${row/_normal/}
    row=${row/_full/}
    row=${row/_js[0-9]/}
  fi
  echo "$row"
}

# median_of SYSTEM ROW: the median of SYSTEM's figure for ROW, or "".
median_of() {
  # shellcheck disable=SC2086  # one word per value
  median ${values["$1|$(key_for "$1" "$2")"]:-}
}

# ratio A B: A / B with two decimals, or "-" when either is missing or B
# is zero.
ratio() {
  if [ -z "$1" ] || [ -z "$2" ]; then echo "-"; return 0; fi
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (b == 0) print "-"; else printf "%.2f\n", a / b }'
}

# Row key | figure | unit | tool | peer of the ratio column, in table order.
# A peer "=KEY" is fanout-server's own figure in row KEY: the rows of the
# NATS backend are set against the embedded log's (sync=normal).
ingest_rows=()
for connections in 1 32; do
  stores="normal full js1"
  [ "$connections" = 1 ] || stores+=" js2"
  for store in $stores; do
    plural="connections"
    [ "$connections" -gt 1 ] || plural="connection"
    what="ingest, $connections $plural, $(store_label "$store")"
    key="ingest_c${connections}_$store"
    peer=nginx
    [ "${store#js}" = "$store" ] || peer="=ingest_c${connections}_normal"
    ingest_rows+=(
      "$key|$what|deliveries/s|wrk|$peer"
      "${key}_p50|$what: time to answer, p50|ms|wrk|${peer/#=*/&_p50}"
      "${key}_p99|$what: time to answer, p99|ms|wrk|${peer/#=*/&_p99}"
    )
  done
done
latency_what="latency, ${latency_rate}/s to ${latency_subscribers} subscribers"
rows=(
  "${ingest_rows[@]}"
  "fanout_s1|fan-out to 1 subscriber|events/s delivered|fanout-bench, nats-bench|nats"
  "fanout_s10|fan-out to 10 subscribers|events/s delivered|fanout-bench, nats-bench|nats"
  "fanout_s100|fan-out to 100 subscribers|events/s delivered|fanout-bench, nats-bench|nats"
  "fanout_s100_js1|fan-out to 100 subscribers, bus=nats, 1 replica|events/s delivered|fanout-bench, nats-bench|=fanout_s100"
  "fanout_s100_js2|fan-out to 100 subscribers, bus=nats, 2 replicas (50 on each)|events/s delivered|fanout-bench, nats-bench|=fanout_s100"
  "latency_p50|$latency_what, p50|ms|fanout-bench, nats-bench|nats"
  "latency_p99|$latency_what, p99|ms|fanout-bench, nats-bench|nats"
  "latency_p999|$latency_what, p99.9|ms|fanout-bench, nats-bench|nats"
  "memory_idle|memory, idle server (VmRSS)|MiB|fanout-bench, nats-bench|nats"
  "memory_idle_js1|memory, idle server (VmRSS), bus=nats|MiB|fanout-bench, nats-bench|=memory_idle"
  "memory_per_subscriber|memory per idle subscriber (${idle_subscribers} attached)|KiB|fanout-bench, nats-bench|nats"
  "memory_per_subscriber_js1|memory per idle subscriber (${idle_subscribers} attached), bus=nats|KiB|fanout-bench, nats-bench|=memory_per_subscriber"
  "memory_stalled|memory growth, 1 stalled subscriber, ${stalled_events} events|MiB|fanout-bench|-"
)
systems=(fanout-server nginx nats)
declare -A titles=([fanout-server]="fanout-server" [nginx]="nginx (204)"
  [nats]="NATS core")

header="| figure | unit | load tool |"
rule="|---|---|---|"
for system in "${systems[@]}"; do
  header+=" ${titles[$system]} |"
  rule+="---|"
done
header+=" ratio |"
rule+="---|"
echo "$header"
echo "$rule"
for row in "${rows[@]}"; do
  IFS='|' read -r key figure unit tool peer <<<"$row"
  line="| $figure | $unit | $tool |"
  for system in "${systems[@]}"; do
    # shellcheck disable=SC2086  # one word per value
    line+=" $(summarize ${values["$system|$(key_for "$system" "$key")"]:-}) |"
  done
  if [ "$peer" = "-" ]; then
    line+=" - |"
  elif [ "${peer#=}" != "$peer" ]; then
    line+=" $(ratio "$(median_of fanout-server "$key")" \
        "$(median_of fanout-server "${peer#=}")") |"
  else
    line+=" $(ratio "$(median_of fanout-server "$key")" \
        "$(median_of "$peer" "$key")") |"
  fi
  echo "$line"
done
echo
echo "Each cell: median (min..max) of $repeat runs. ratio: fanout-server's" \
    "median / the peer's (nginx for ingest, whose figures stand beside" \
    "both sync policies; NATS core below). Rows with bus=nats: the NATS" \
    "JetStream backend, its ratio against the embedded log's row above it" \
    "(sync=normal); the peers' figures stand beside them as well. Above 1" \
    "is more throughput, or more time or memory."

# target NAME MEASURED COMPARISON LIMIT UNIT: one line of the targets block.
target() {
  local name=$1 measured=$2 comparison=$3 limit=$4 unit=$5 verdict
  if [ -z "$measured" ] || [ "$measured" = "-" ]; then
    verdict="not measured"
    measured="-"
  else
    verdict=$(awk -v m="$measured" -v l="$limit" -v c="$comparison" 'BEGIN {
      ok = (c == ">=") ? (m >= l) : (m <= l); print ok ? "met" : "MISSED" }')
    measured=$(awk -v m="$measured" 'BEGIN { printf "%.2f", m }')
  fi
  printf '  %-62s %2s %-8s %10s  %s\n' "$name" "$comparison" "$limit$unit" \
      "$measured$([ "$measured" = "-" ] || echo "$unit")" "$verdict"
}
echo
echo "Targets (from this run's medians):"
target "durable ingest, 32 connections, sync=normal / nginx" \
    "$(ratio "$(median_of fanout-server ingest_c32_normal)" \
        "$(median_of nginx ingest_c32_normal)")" ">=" 0.5 "x"
target "fan-out to 100 subscribers / NATS core" \
    "$(ratio "$(median_of fanout-server fanout_s100)" \
        "$(median_of nats fanout_s100)")" ">=" 0.5 "x"
target "end-to-end p99 at ${latency_rate}/s, ${latency_subscribers} subscribers" \
    "$(median_of fanout-server latency_p99)" "<=" 2 " ms"
target "end-to-end p99 / NATS core p99" \
    "$(ratio "$(median_of fanout-server latency_p99)" \
        "$(median_of nats latency_p99)")" "<=" 3 "x"
target "memory per idle subscriber" \
    "$(median_of fanout-server memory_per_subscriber)" "<=" 64 " KiB"
target "memory per idle subscriber, bus=nats" \
    "$(median_of fanout-server memory_per_subscriber_js1)" "<=" 40 " KiB"
if [ "$stalled_events" -eq 100000 ]; then
  target "memory growth, 1 stalled subscriber, 100,000 events" \
      "$(median_of fanout-server memory_stalled)" "<=" 64 " MiB"
else
  printf '  %-62s not judged: %s events, not 100,000\n' \
      "memory growth, 1 stalled subscriber" "$stalled_events"
fi
echo
echo "Two replicas against one (bus=nats, from this run's medians):"
printf '  %-62s %s\n' "ingest, 32 connections" \
    "$(ratio "$(median_of fanout-server ingest_c32_js2)" \
        "$(median_of fanout-server ingest_c32_js1)")x"
printf '  %-62s %s\n' "fan-out to 100 subscribers" \
    "$(ratio "$(median_of fanout-server fanout_s100_js2)" \
        "$(median_of fanout-server fanout_s100_js1)")x"
echo
echo "Load average before: $load_before, after: $load_after;" \
    "$((SECONDS - started_at)) s."
if [ ${#failures[@]} -gt 0 ]; then
  echo "Failed runs: ${!failures[*]} (see above)."
  exit 1
fi
