# The two set-up commands of the README, plus their parts.
#   make run   install what is missing, build, start the service
#   make test  install what is missing, build, run every test (and a short
#              pass of each fuzz target, built with clang in build-fuzz/)
#   make bench the same set-up plus nginx, NATS and wrk, a Release build,
#              then the benchmarks beside those peers (bench/run.sh)

BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
RUN_FLAGS ?=
BENCH_BUILD_DIR ?= build-release
# libFuzzer targets (fuzz/), built with clang; skipped where there is none.
FUZZ_BUILD_DIR ?= build-fuzz
CLANGXX ?= clang++
FUZZ_SECONDS ?= 60
FUZZ_TEST_SECONDS ?= 20
# The whole project and test suite under ASan and UBSan.
ASAN_BUILD_DIR ?= build-asan
SANITIZE_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined \
  -fno-omit-frame-pointer -D_GLIBCXX_ASSERTIONS
# A development secret is created on the first run; fanout-send signs with it.
DEV_SECRET_FLAGS = --secrets_file=data/webhook-secrets --create_secrets_file

.PHONY: all deps bench-deps configure build run test bench clean fuzz-build \
  fuzz test-sanitized bazel-test

all: build

deps:
	@scripts/install-deps.sh

bench-deps:
	@scripts/install-deps.sh --bench

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

configure: deps $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/server/fanout-server $(DEV_SECRET_FLAGS) $(RUN_FLAGS)

test: build fuzz-build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 300
	if command -v $(CLANGXX) >/dev/null; then \
	  cd $(FUZZ_BUILD_DIR) && ctest --output-on-failure -j $(JOBS); fi

# The same sources and tests built by Bazel (WORKSPACE, bazel/, the BUILD
# files), offline, against the same system packages; see .bazelrc.
bazel-test: deps
	bazel test //...

# Configures with clang only when it is there, after deps installed it.
fuzz-build: deps
	@if command -v $(CLANGXX) >/dev/null; then \
	  set -x && \
	  cmake -S . -B $(FUZZ_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DCMAKE_CXX_COMPILER=$(CLANGXX) -DFANOUT_BUILD_FUZZERS=ON \
	    -DFANOUT_BUILD_TESTS=OFF \
	    -DFANOUT_FUZZ_TEST_SECONDS=$(FUZZ_TEST_SECONDS) && \
	  cmake --build $(FUZZ_BUILD_DIR) -j $(JOBS) --target fanout_fuzzers; \
	else \
	  echo "fuzz: no $(CLANGXX); the fuzz targets are not built"; \
	fi

# Each fuzz target for FUZZ_SECONDS, growing its corpus in build-fuzz/fuzz/.
fuzz: fuzz-build
	fuzz/run.sh $(FUZZ_BUILD_DIR)/fuzz/fuzz_convert $(FUZZ_SECONDS)
	fuzz/run.sh $(FUZZ_BUILD_DIR)/fuzz/fuzz_http $(FUZZ_SECONDS)

# -O1 keeps the tests' timing close to the plain build's; no NDEBUG. The
# server's memory bound is not checked here: ASan's quarantine alone holds
# up to 256 MiB.
test-sanitized: deps
	cmake -S . -B $(ASAN_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
	  -DCMAKE_CXX_FLAGS="$(SANITIZE_FLAGS)"
	cmake --build $(ASAN_BUILD_DIR) -j $(JOBS)
	cd $(ASAN_BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600 \
	  -E 'StalledSubscriberCostsBoundedMemory'

# About five minutes of loopback runs against servers it starts (fanout-server,
# nginx, nats-server); prints the machine and one table with ratios and the
# targets (docs/performance.md explains the figures). BENCH_REPEAT=1
# BENCH_QUICK=1 make bench is a smoke run of under a minute.
bench: bench-deps
	cmake -S . -B $(BENCH_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DFANOUT_BUILD_TESTS=OFF
	cmake --build $(BENCH_BUILD_DIR) -j $(JOBS) --target fanout-server \
	  fanout-bench nats-bench
	bench/run.sh $(BENCH_BUILD_DIR)

clean:
	rm -rf $(BUILD_DIR) $(FUZZ_BUILD_DIR) $(ASAN_BUILD_DIR)
