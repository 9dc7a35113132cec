#!/usr/bin/env bash
# A local cluster of staffify-fanout, on 127.0.0.1 only: three nats-server
# nodes forming one JetStream cluster, and two fanout-server replicas that
# share one stream on it (--bus listing the three nodes,
# --nats_stream_replicas=3), as docs/scaling.md describes.
#
#   scripts/local-cluster.sh [--build-dir DIR] [--dir DIR]
#       Starts everything, waits until both replicas answer /readyz, prints
#       how to post to and subscribe on each replica, and runs until Ctrl-C.
#   scripts/local-cluster.sh --smoke [--build-dir DIR] [--dir NEW_DIR]
#       Starts everything on free ports, posts an example delivery to
#       replica 1 and sees it arrive on replica 2 with sequence 1, posts it
#       again to replica 2 and expects "duplicate", kills the NATS node that
#       leads the stream, posts another delivery (retrying while JetStream
#       elects a new leader) and sees it arrive on replica 2 too. Exits 0
#       when all of that held, 1 with the reason otherwise, and 77 (what
#       ctest counts as skipped) when nats-server is not installed.
#
# Signatures are verified: a development secret is generated into the
# cluster's folder (webhook-secrets, mode 0600), both replicas read it with
# --secrets_file, and the printed fanout-send commands sign with it.
#
# Binaries: DIR/server/fanout-server, DIR/client/fanout-send and
# DIR/client/fanout-subscribe, DIR being --build-dir or, by default, the
# checkout's build/. nats-server is taken from $NATS_SERVER, else PATH,
# else /usr/sbin (Debian's package nats-server). curl and python3 are
# needed too.
#
# Ports, from these variables (defaults in brackets); --smoke ignores them
# and takes free ones, so that it runs beside such a cluster or other
# tests:
#   LOCAL_CLUSTER_NATS_PORTS     [4222 4223 4224]  NATS clients
#   LOCAL_CLUSTER_ROUTE_PORTS    [6222 6223 6224]  routes between the nodes
#   LOCAL_CLUSTER_MONITOR_PORTS  [8222 8223 8224]  NATS monitoring (/jsz)
#   LOCAL_CLUSTER_HTTP_PORTS     [8081 8082]       replicas' HTTP
#   LOCAL_CLUSTER_GRPC_PORTS     [9081 9082]       replicas' gRPC
#
# Files: the node configurations (nats-N.conf), their JetStream stores
# (nats-N/), the secret and the logs (logs/) go to --dir, which is kept
# (a later run on it finds the stream and its events again), or to a
# temporary folder that is removed on exit. Every process started here is
# stopped on exit, Ctrl-C included.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
checkout=$(cd "$here/.." && pwd)
build_dir="$checkout/build"
folder=""
smoke=0
usage="Usage: scripts/local-cluster.sh [--smoke] [--build-dir DIR] [--dir DIR]"

while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --build-dir) build_dir=${2:?"$usage"}; shift ;;
    --build-dir=*) build_dir=${1#*=} ;;
    --dir) folder=${2:?"$usage"}; shift ;;
    --dir=*) folder=${1#*=} ;;
    -h|--help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  shift
done

# fail MESSAGE: the reason on stderr, then exit 1 (stopping everything).
fail() {
  echo "local-cluster: FAILED: $*" >&2
  exit 1
}

server_bin="$build_dir/server/fanout-server"
send_bin="$build_dir/client/fanout-send"
subscribe_bin="$build_dir/client/fanout-subscribe"
for binary in "$server_bin" "$send_bin" "$subscribe_bin"; do
  if [ ! -x "$binary" ]; then
    echo "local-cluster: $binary is missing: build first" \
      "(cmake -S . -B build -G Ninja && cmake --build build)," \
      "or give --build-dir" >&2
    exit 1
  fi
done
nats_server=${NATS_SERVER:-$(command -v nats-server || true)}
if [ -z "$nats_server" ] && [ -x /usr/sbin/nats-server ]; then
  nats_server=/usr/sbin/nats-server
fi
if [ -z "$nats_server" ] || [ ! -x "$nats_server" ]; then
  echo "local-cluster: nats-server not found (Debian package nats-server," \
    "or set NATS_SERVER)" >&2
  [ "$smoke" = 1 ] && exit 77
  exit 1
fi
for tool in curl python3 setsid; do
  if ! command -v "$tool" >/dev/null; then
    echo "local-cluster: $tool not found" >&2
    exit 1
  fi
done

# Free TCP ports on 127.0.0.1, all different: COUNT of them on one line.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
EOF
}

if [ "$smoke" = 1 ]; then
  read -r -a all_ports <<<"$(free_ports 9)"
  nats_ports=("${all_ports[@]:0:3}")
  route_ports=("${all_ports[@]:3:3}")
  monitor_ports=("${all_ports[@]:6:3}")
  http_ports=(0 0)   # fanout-server picks; its log line names them
  grpc_ports=(0 0)
else
  read -r -a nats_ports <<<"${LOCAL_CLUSTER_NATS_PORTS:-4222 4223 4224}"
  read -r -a route_ports <<<"${LOCAL_CLUSTER_ROUTE_PORTS:-6222 6223 6224}"
  read -r -a monitor_ports <<<"${LOCAL_CLUSTER_MONITOR_PORTS:-8222 8223 8224}"
  read -r -a http_ports <<<"${LOCAL_CLUSTER_HTTP_PORTS:-8081 8082}"
  read -r -a grpc_ports <<<"${LOCAL_CLUSTER_GRPC_PORTS:-9081 9082}"
fi
for list in "3 nats_ports" "3 route_ports" "3 monitor_ports" "2 http_ports" \
    "2 grpc_ports"; do
  read -r count name <<<"$list"
  declare -n ports="$name"
  if [ "${#ports[@]}" != "$count" ]; then
    echo "local-cluster: ${name%_ports} ports: give $count," \
      "not '${ports[*]}'" >&2
    exit 2
  fi
  for port in "${ports[@]}"; do
    if ! [[ "$port" =~ ^[0-9]+$ ]]; then
      echo "local-cluster: port '$port' is not a number" >&2
      exit 2
    fi
  done
  unset -n ports
done

if [ -n "$folder" ]; then
  if [ "$smoke" = 1 ] && [ -n "$(ls -A "$folder" 2>/dev/null)" ]; then
    echo "local-cluster: --smoke needs a new or empty --dir" \
      "($folder holds files)" >&2
    exit 2
  fi
  mkdir -p "$folder"
  folder=$(cd "$folder" && pwd)
  keep_folder=1
else
  folder=$(mktemp -d "${TMPDIR:-/tmp}/fanout-cluster.XXXXXX")
  keep_folder=0
fi
mkdir -p "$folder/logs"

nats_pids=("" "" "")
replica_pids=("" "")
subscriber_pid=""

# stop_together PID...: TERM to each, KILL to those left after 10 s; reaps
# them. Empty arguments (processes not started, or gone) are skipped.
stop_together() {
  local pids=() pid alive
  for pid in "$@"; do
    if [ -n "$pid" ]; then pids+=("$pid"); fi
  done
  [ "${#pids[@]}" -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 100); do
    alive=0
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    [ "$alive" = 1 ] || break
    sleep 0.1
  done
  { kill -KILL "${pids[@]}"; wait "${pids[@]}"; } 2>/dev/null || true
}

# The replicas go first: without NATS their stop would wait for it.
cleanup() {
  stop_together "$subscriber_pid" "${replica_pids[@]}"
  stop_together "${nats_pids[@]}"
  if [ "$keep_folder" = 1 ]; then
    echo "local-cluster: stopped; files kept in $folder" >&2
  else
    rm -rf "$folder"
    [ "$smoke" = 1 ] || echo "local-cluster: stopped; removed $folder" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# show_log FILE: its last lines, for a failure's reason.
show_log() {
  echo "--- last lines of $1:" >&2
  tail -n 20 "$1" >&2 || true
}

# The development secret, made once per folder.
secrets="$folder/webhook-secrets"
if [ ! -s "$secrets" ]; then
  (umask 077 && {
    echo "# Development webhook secret of scripts/local-cluster.sh."
    od -An -tx1 -N32 /dev/urandom | tr -d ' \n'
    echo
  } >"$secrets")
fi

# start_nats I (0..2): writes the node's configuration and starts it.
start_nats() {
  local i=$1 routes="" j
  for j in 0 1 2; do
    [ "$j" = "$i" ] && continue
    routes="$routes${routes:+, }nats-route://127.0.0.1:${route_ports[$j]}"
  done
  local conf="$folder/nats-$((i + 1)).conf"
  cat >"$conf" <<EOF
# Node $((i + 1)) of the local JetStream cluster of scripts/local-cluster.sh.
server_name: nats-$((i + 1))
listen: 127.0.0.1:${nats_ports[$i]}
http: 127.0.0.1:${monitor_ports[$i]}
# fanout-server refuses to start when this is below --max_event_bytes
# (about 3.9 MiB by default); nats-server's own default is 1 MB.
max_payload: 8MB
jetstream {
  store_dir: "$folder/nats-$((i + 1))"
}
cluster {
  name: fanout-local
  listen: 127.0.0.1:${route_ports[$i]}
  routes: [$routes]
}
EOF
  # In a session of their own, so that Ctrl-C, which reaches every process
  # of the terminal, leaves them to cleanup: they stop after the replicas,
  # whose own stop is quick only while NATS is there.
  setsid "$nats_server" -c "$conf" \
      >>"$folder/logs/nats-$((i + 1)).log" 2>&1 </dev/null &
  nats_pids[i]=$!
}

# wait_nats_healthy I: until the node is in touch with a JetStream meta
# leader, at most 20 s.
wait_nats_healthy() {
  local i=$1 log="$folder/logs/nats-$(($1 + 1)).log"
  for _ in $(seq 200); do
    if curl -fs --max-time 1 \
        "http://127.0.0.1:${monitor_ports[$i]}/healthz" >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "${nats_pids[$i]}" 2>/dev/null; then
      show_log "$log"
      fail "NATS node $((i + 1)) exited"
    fi
    sleep 0.1
  done
  show_log "$log"
  fail "NATS node $((i + 1)) was not healthy within 20 s"
}

nats_urls=""
for i in 0 1 2; do
  nats_urls="$nats_urls${nats_urls:+,}nats://127.0.0.1:${nats_ports[$i]}"
done

# start_replica R (0..1): starts fanout-server on the cluster.
start_replica() {
  local r=$1
  local log="$folder/logs/replica-$((r + 1)).log"
  : >"$log"
  "$server_bin" --bus="$nats_urls" --nats_stream_replicas=3 \
      --nats_connect_timeout=20s --secrets_file="$secrets" \
      --http_address=127.0.0.1 --http_port="${http_ports[$r]}" \
      --grpc_address="127.0.0.1:${grpc_ports[$r]}" --shutdown_grace=1s \
      >>"$log" 2>&1 </dev/null &
  replica_pids[r]=$!
}

# wait_replica_ready R: until its /readyz answers 200, at most 30 s (the
# replica itself gives up on NATS after 20 s); then sets the replica's
# ports from its `listening` log line.
wait_replica_ready() {
  local r=$1 line=""
  local log="$folder/logs/replica-$((r + 1)).log"
  for _ in $(seq 300); do
    line=$(grep -m 1 'listening http=' "$log" || true)
    if [ -n "$line" ]; then
      http_ports[r]=$(sed 's/.* http=[0-9.]*:\([0-9]*\) .*/\1/' <<<"$line")
      grpc_ports[r]=$(sed 's/.* grpc=[0-9.]*:\([0-9]*\) .*/\1/' <<<"$line")
      if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
          "http://127.0.0.1:${http_ports[$r]}/readyz")" = 200 ]; then
        return 0
      fi
    fi
    if ! kill -0 "${replica_pids[$r]}" 2>/dev/null; then
      show_log "$log"
      fail "replica $((r + 1)) exited"
    fi
    sleep 0.1
  done
  show_log "$log"
  fail "replica $((r + 1)) was not ready within 30 s"
}

started_at=$SECONDS
for i in 0 1 2; do start_nats "$i"; done
for i in 0 1 2; do wait_nats_healthy "$i"; done
# One after the other: the first creates the stream, which the second then
# finds at once (started together, one may wait out a request timeout).
for r in 0 1; do
  start_replica "$r"
  wait_replica_ready "$r"
done

url() { echo "http://127.0.0.1:${http_ports[$1]}/webhooks"; }

if [ "$smoke" = 0 ]; then
  cat <<EOF

A local cluster runs; its files are in $folder, the logs in logs/ there.
  NATS node 1  nats://127.0.0.1:${nats_ports[0]}, monitoring http://127.0.0.1:${monitor_ports[0]}/jsz, pid ${nats_pids[0]}
  NATS node 2  nats://127.0.0.1:${nats_ports[1]}, monitoring http://127.0.0.1:${monitor_ports[1]}/jsz, pid ${nats_pids[1]}
  NATS node 3  nats://127.0.0.1:${nats_ports[2]}, monitoring http://127.0.0.1:${monitor_ports[2]}/jsz, pid ${nats_pids[2]}
  replica 1    $(url 0), gRPC 127.0.0.1:${grpc_ports[0]}, pid ${replica_pids[0]}
  replica 2    $(url 1), gRPC 127.0.0.1:${grpc_ports[1]}, pid ${replica_pids[1]}

Post a delivery to replica 1, then the same one to replica 2 ("duplicate"):
  $send_bin --secrets_file=$secrets --url=$(url 0) $checkout/examples/ticket.created.json
  $send_bin --secrets_file=$secrets --url=$(url 1) $checkout/examples/ticket.created.json

Subscribe on replica 1, on replica 2, or on either (the client moves to the
other when one stops, resuming after the last sequence it saw):
  $subscribe_bin --target=127.0.0.1:${grpc_ports[0]} --from_start '*'
  $subscribe_bin --target=127.0.0.1:${grpc_ports[1]} --from_start '*'
  $subscribe_bin --target=ipv4:127.0.0.1:${grpc_ports[0]},127.0.0.1:${grpc_ports[1]} --from_start '*'

Kill a NATS node or a replica (kill PID) to see the others carry on; the
stream's leader is named at /jsz?accounts=true&streams=true. A killed node
comes back with: nats-server -c $folder/nats-N.conf
Ctrl-C stops everything.
EOF
  # Until Ctrl-C, or until every process has exited; each exit is named.
  declare -A names=()
  for i in 0 1 2; do names[${nats_pids[$i]}]="NATS node $((i + 1))"; done
  for r in 0 1; do names[${replica_pids[$r]}]="replica $((r + 1))"; done
  while [ "${#names[@]}" -gt 0 ]; do
    exited=""
    status=0
    wait -n -p exited "${!names[@]}" || status=$?
    [ -n "$exited" ] || continue
    echo "local-cluster: ${names[$exited]} (pid $exited) exited" \
      "with status $status" >&2
    unset "names[$exited]"
  done
  exit 0
fi

# --- The smoke test. ---

# post R FILE: POSTs the example to replica R; sets `answer` to
# fanout-send's line without the file's name ("200 {...}") and returns its
# exit status.
post() {
  local status=0
  answer=$("$send_bin" --timeout=10s --secrets_file="$secrets" \
      --url="$(url "$1")" "$2" 2>&1) || status=$?
  answer=${answer#"$2: "}
  return "$status"
}

# wait_for_line FILE PATTERN SECONDS: until a line of FILE holds PATTERN
# (fixed text).
wait_for_line() {
  local tries=$(($3 * 10))
  for _ in $(seq "$tries"); do
    grep -qF -- "$2" "$1" && return 0
    sleep 0.1
  done
  return 1
}

first="$checkout/examples/ticket.created.json"
second="$checkout/examples/ticket.resolved.json"
events="$folder/subscriber.out"

# A subscriber on replica 2, from the start, before anything is posted.
: >"$events"
"$subscribe_bin" --target="127.0.0.1:${grpc_ports[1]}" --after=0 '*' \
    >"$events" 2>"$folder/logs/subscriber.log" </dev/null &
subscriber_pid=$!

post 0 "$first" || fail "posting to replica 1: $answer"
echo "replica 1, $(basename "$first"): $answer"
case "$answer" in
  '200 {"status":"accepted","sequence":1,'*) ;;
  *) fail "replica 1 did not accept the first delivery as sequence 1" ;;
esac
id=$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' <<<"$answer")
wait_for_line "$events" "{\"sequence\":1,\"id\":\"$id\"" 10 ||
  fail "the subscriber on replica 2 did not get sequence 1 within 10 s" \
    "(it printed: $(head -c 300 "$events"))"
echo "replica 2: the subscriber got sequence 1, $id"

post 1 "$first" || fail "posting again to replica 2: $answer"
echo "replica 2, $(basename "$first") again: $answer"
case "$answer" in
  '200 {"status":"duplicate","sequence":1,'*) ;;
  *) fail "replica 2 did not answer the retry as a duplicate of sequence 1" ;;
esac

# stream_leader I: the name of the node that leads the stream, as node I's
# monitoring port tells it, or nothing.
stream_leader() {
  local url="http://127.0.0.1:${monitor_ports[$1]}/jsz"
  curl -fs --max-time 5 "$url?accounts=true&streams=true" |
    python3 -c 'import json, sys
for account in json.load(sys.stdin).get("account_details", []):
    for stream in account.get("stream_detail", []):
        if stream["name"] == "FANOUT":
            print(stream.get("cluster", {}).get("leader", ""))' || true
}
leader=""
for i in 0 1 2; do
  leader=$(stream_leader "$i")
  [ -n "$leader" ] && break
done
case "$leader" in
  nats-[123]) ;;
  *) fail "no NATS node names a leader of the stream FANOUT (/jsz)" ;;
esac
node=${leader#nats-}
# (Braces, so that bash's "Killed" notice goes to /dev/null as well.)
{ kill -KILL "${nats_pids[$((node - 1))]}" &&
    wait "${nats_pids[$((node - 1))]}"; } 2>/dev/null || true
nats_pids[node - 1]=""
echo "killed NATS node $node, the stream's leader"

# While the two others elect a leader, deliveries are answered 503; retried
# for 25 s. An attempt answered 503 after JetStream's timeout may still have
# been stored, and then the next is a duplicate of sequence 2: fine too.
refused=0
deadline=$((SECONDS + 25))
until post 0 "$second"; do
  refused=$((refused + 1))
  [ "$refused" != 1 ] || echo "replica 1, $(basename "$second"): $answer"
  [ "$SECONDS" -lt "$deadline" ] ||
    fail "replica 1 did not store a delivery within 25 s of the kill:" \
      "$answer"
  sleep 0.5
done
[ "$refused" = 0 ] || echo "replica 1: refused $refused times, then:"
echo "replica 1, $(basename "$second"): $answer"
case "$answer" in
  '200 {"status":"accepted","sequence":2,'*) ;;
  '200 {"status":"duplicate","sequence":2,'*) ;;
  *) fail "replica 1 did not store the second delivery as sequence 2" ;;
esac
id=$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' <<<"$answer")
# Replica 2's tail may have followed the stream through the killed node; it
# follows it anew once the stream has a leader again (docs/scaling.md).
wait_for_line "$events" "{\"sequence\":2,\"id\":\"$id\"" 45 ||
  fail "the subscriber on replica 2 did not get sequence 2 within 45 s"
echo "replica 2: the subscriber got sequence 2, $id"

echo "local-cluster: smoke test passed in $((SECONDS - started_at)) s"
