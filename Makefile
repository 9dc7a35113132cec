# The two set-up commands of the README, plus their parts.
#   make run   install what is missing, build, start the service
#   make test  install what is missing, build, run every test
#   make bench the same set-up in Release, then the benchmarks (bench/run.sh)

BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
RUN_FLAGS ?=
BENCH_BUILD_DIR ?= build-release
# A development secret is created on the first run; fanout-send signs with it.
DEV_SECRET_FLAGS = --secrets_file=data/webhook-secrets --create_secrets_file

.PHONY: all deps configure build run test bench bazel-test clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

configure: deps $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/server/fanout-server $(DEV_SECRET_FLAGS) $(RUN_FLAGS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 300

# The same sources and tests built by Bazel (WORKSPACE, bazel/, the BUILD
# files), offline, against the same system packages; see .bazelrc.
bazel-test: deps
	bazel test //...

# About three minutes of loopback runs against servers it starts; prints the
# machine and one table (bench/RESULTS.md explains the figures).
bench: deps
	cmake -S . -B $(BENCH_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DFANOUT_BUILD_TESTS=OFF
	cmake --build $(BENCH_BUILD_DIR) -j $(JOBS) --target fanout-server \
	  fanout-bench
	bench/run.sh $(BENCH_BUILD_DIR)

clean:
	rm -rf $(BUILD_DIR)
