#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing staffify-fanout
# needs, skipping those already installed, and, where Node.js and npm are
# installed, the Node.js subscriber's npm packages. Safe to run again.
#
#   scripts/install-deps.sh           what `make run` and `make test` need
#   scripts/install-deps.sh --bench   that, and the other peers and tools
#                                     of `make bench` (bench/run.sh)
set -euo pipefail

bench=0
for argument in "$@"; do
  case "$argument" in
    --bench) bench=1 ;;
    *) echo "install-deps: unknown argument $argument" >&2; exit 2 ;;
  esac
done

packages=(
  build-essential cmake ninja-build pkg-config make curl
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libboost1.81-dev libboost-json1.81-dev libssl-dev
  libsqlite3-dev libgtest-dev libgmock-dev libspdlog-dev
  openssl
  clang libclang-rt-14-dev
  python3-grpcio python3-protobuf
  bazel-bootstrap
  # The NATS server and its C client library: the tests start real servers
  # (tests/util/nats_servers.h), and the benchmarks compare with core NATS.
  nats-server libnats-dev
)
# The benchmarks' other peer (nginx), their load generator, and perf for
# profiles. On Debian 12 the nginx package is the light build (nginx-light
# only pulls it in, with an extra module).
bench_packages=(nginx wrk linux-perf)
if [ "$bench" = 1 ]; then
  packages+=("${bench_packages[@]}")
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null |
      grep -q '^install ok installed$'; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # nginx's and nats-server's maintainer scripts would start system services
  # (nginx on port 80 of every address, nats-server on port 4222). The tests
  # and benchmarks start their own, on free loopback ports, so a policy-rc.d
  # forbids starting any service while apt runs (which invoke-rc.d and
  # deb-systemd-invoke obey), unless the machine already has one of its own.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# Left by install-deps.sh while apt runs.\nexit 101\n' |
      $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  # A fresh machine may have no package lists yet, or stale ones.
  if ! $sudo apt-get install -y --no-install-recommends "${missing[@]}"; then
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends "${missing[@]}"
  fi
fi

# client/node's packages, exactly as its package-lock.json says, when they
# are missing or the lock file changed since they were installed (npm keeps
# its own copy of the lock in node_modules). Nothing else needs them: without
# Node.js the Node.js client tests are left out.
node_client="$(cd "$(dirname "$0")/../client/node" && pwd)"
if command -v node >/dev/null && command -v npm >/dev/null; then
  installed_lock="$node_client/node_modules/.package-lock.json"
  if [ ! -f "$installed_lock" ] ||
      [ "$node_client/package-lock.json" -nt "$installed_lock" ]; then
    echo "install-deps: npm ci in client/node"
    # Every package here is plain JavaScript: no install script is needed.
    (cd "$node_client" && npm ci --ignore-scripts --no-audit --no-fund)
  fi
fi
