# The two set-up commands of the README, plus their parts.
#   make run   install what is missing, build, start the service
#   make test  install what is missing, build, run every test

BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
RUN_FLAGS ?=
# A development secret is created on the first run; fanout-send signs with it.
DEV_SECRET_FLAGS = --secrets_file=data/webhook-secrets --create_secrets_file

.PHONY: all deps configure build run test clean

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

clean:
	rm -rf $(BUILD_DIR)
