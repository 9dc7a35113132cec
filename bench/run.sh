#!/usr/bin/env bash
# Measures fanout-server beside two peers, nginx answering 204 to the same
# POST and core NATS, and prints one table: each figure measured
# BENCH_REPEAT (3) times, shown as "median (min..max)", with the ratio of
# the medians and whether the issue's targets were met.
#
#   bench/run.sh [BUILD_DIR]     (`make bench` installs, builds and runs it)
#   BENCH_REPEAT=1 BENCH_QUICK=1 bench/run.sh    a smoke run, about 40 s
#
# Every measurement gets a fresh server (fanout-server, nginx or
# nats-server) on free loopback ports, with its files under one temporary
# folder; nothing is downloaded and no traffic leaves 127.0.0.1. Everything
# started here is stopped, and the folder removed, on exit. The load comes
# from wrk (ingest, the same signed requests for fanout-server and nginx),
# fanout-bench (fanout-server's streams) and nats-bench (NATS), all on this
# machine. docs/performance.md says what each figure means.
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
request_slices=2
bench_timeout=180  # seconds; a hung run is killed and counted as failed

work=$(mktemp -d "${TMPDIR:-/tmp}/fanout-bench.XXXXXX")
server_pid=""
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
stop_server() { stop_process "$server_pid"; server_pid=""; }
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
command -v curl >/dev/null || missing[wrk]="curl is not installed"
command -v python3 >/dev/null || missing[nginx]="python3 is not installed"
if [ -n "${missing[wrk]:-}" ]; then
  missing[nginx]=${missing[wrk]}
fi

# A server that verifies signatures gets a throw-away secret through the
# environment (never the command line); fanout-bench signs with it.
server_help=$("$server_bin" --help 2>&1 || true)
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

# start_server SYNC: starts a fresh fanout-server; sets server_pid and the
# ports.
start_server() {
  local sync=$1
  started=$((started + 1))
  local data="$work/data-$started"
  local log="$work/server-$started.log"
  : >"$log"  # exists before the first look below
  "$server_bin" --http_address=127.0.0.1 --http_port=0 \
      --grpc_address=127.0.0.1:0 --data_dir="$data" --sync="$sync" \
      --http_threads="$http_threads" --shutdown_grace=1s >"$log" 2>&1 &
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

# start_nats: a fresh nats-server (core NATS, no JetStream) on a port of
# its choosing on 127.0.0.1; sets nats_pid and nats_port. Returns 1 when it
# did not start.
start_nats() {
  started=$((started + 1))
  local log="$work/nats-$started.log"
  : >"$log"
  nats-server -a 127.0.0.1 -p -1 -l "$log" >/dev/null 2>&1 &
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

# measure LABEL SYNC FANOUT-BENCH-FLAGS...: one fanout-bench run on a fresh
# fanout-server.
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

# run_wrk CONNECTIONS URL: runs wrk with wrk_deliveries.lua; sets `output`
# and `status`.
run_wrk() {
  local connections=$1 url=$2
  local threads=2
  [ "$connections" -gt 1 ] || threads=1
  status=0
  output=$(timeout "$bench_timeout" wrk -t "$threads" -c "$connections" \
      -d "${ingest_seconds}s" --timeout 10s -s "$wrk_script" "$url" \
      -- "$work/requests" "$request_slices" "$threads" 2>&1) || status=$?
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

ingest_server_run() {  # CONNECTIONS SYNC
  local connections=$1 sync=$2
  local label="ingest c=$connections sync=$sync (wrk)"
  local row="ingest_c${connections}_$sync"
  start_server "$sync"
  run_wrk "$connections" "http://127.0.0.1:$http_port/webhooks"
  # Every answer must have been a new event: nothing refused and no
  # duplicate, by the server's own count.
  local metrics
  metrics=$(curl -s --max-time 5 "http://127.0.0.1:$http_port/metrics" ||
      true)
  stop_server
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
  output=$(sed "s/^result .*/& server_accepted=$accepted/" <<<"$output")
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

fanout_run() {  # SUBSCRIBERS
  local row="fanout_s$1"
  measure "fanout s=$1 (fanout-bench)" normal --mode=fanout \
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

# record_memory SYSTEM: the figures of an idle-memory result.
record_memory() {
  record "$1" memory_idle "$(result_value "$result" idle_rss_mib)"
  local bytes
  bytes=$(result_value "$result" bytes_per_subscriber)
  record "$1" memory_per_subscriber \
      "$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1024 }')"
}

memory_run() {
  measure "idle-memory s=$idle_subscribers (fanout-bench)" normal \
      --mode=idle-memory --subscribers="$idle_subscribers"
  [ -n "$result" ] || return 0
  record_memory fanout-server
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
      [ -n "${missing[nginx]:-}" ] || ingest_nginx_run "$connections"
    done
    rm -f "$work"/requests.*
  fi
  for subscribers in 1 10 100; do
    fanout_run "$subscribers"
    [ -n "${missing[nats]:-}" ] || fanout_nats_run "$subscribers"
  done
  latency_run
  [ -n "${missing[nats]:-}" ] || latency_nats_run
  memory_run
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
# nginx has no sync policy: its ingest figures stand beside both.
key_for() {
  local system=$1 row=$2
  if [ "$system" = nginx ]; then
    row=${row/_normal/}
    row=${row/_full/}
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
ingest_rows=()
for connections in 1 32; do
  for sync in normal full; do
    plural="connections"
    [ "$connections" -gt 1 ] || plural="connection"
    what="ingest, $connections $plural, sync=$sync"
    key="ingest_c${connections}_$sync"
    ingest_rows+=(
      "$key|$what|deliveries/s|wrk|nginx"
      "${key}_p50|$what: time to answer, p50|ms|wrk|nginx"
      "${key}_p99|$what: time to answer, p99|ms|wrk|nginx"
    )
  done
done
latency_what="latency, ${latency_rate}/s to ${latency_subscribers} subscribers"
rows=(
  "${ingest_rows[@]}"
  "fanout_s1|fan-out to 1 subscriber|events/s delivered|fanout-bench, nats-bench|nats"
  "fanout_s10|fan-out to 10 subscribers|events/s delivered|fanout-bench, nats-bench|nats"
  "fanout_s100|fan-out to 100 subscribers|events/s delivered|fanout-bench, nats-bench|nats"
  "latency_p50|$latency_what, p50|ms|fanout-bench, nats-bench|nats"
  "latency_p99|$latency_what, p99|ms|fanout-bench, nats-bench|nats"
  "latency_p999|$latency_what, p99.9|ms|fanout-bench, nats-bench|nats"
  "memory_idle|memory, idle server (VmRSS)|MiB|fanout-bench, nats-bench|nats"
  "memory_per_subscriber|memory per idle subscriber (${idle_subscribers} attached)|KiB|fanout-bench, nats-bench|nats"
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
  else
    line+=" $(ratio "$(median_of fanout-server "$key")" \
        "$(median_of "$peer" "$key")") |"
  fi
  echo "$line"
done
echo
echo "Each cell: median (min..max) of $repeat runs. ratio: fanout-server's" \
    "median / the peer's (nginx for ingest, whose figures stand beside" \
    "both sync policies; NATS core below). Above 1 is more throughput, or" \
    "more time or memory."

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
if [ "$stalled_events" -eq 100000 ]; then
  target "memory growth, 1 stalled subscriber, 100,000 events" \
      "$(median_of fanout-server memory_stalled)" "<=" 64 " MiB"
else
  printf '  %-62s not judged: %s events, not 100,000\n' \
      "memory growth, 1 stalled subscriber" "$stalled_events"
fi
echo
echo "Load average before: $load_before, after: $load_after;" \
    "$((SECONDS - started_at)) s."
if [ ${#failures[@]} -gt 0 ]; then
  echo "Failed runs: ${!failures[*]} (see above)."
  exit 1
fi
