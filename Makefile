# skiff: build and test entry points (see README.md).
CARGO ?= cargo

.PHONY: all build test lint fmt bench bench-node deps up

all: build

deps:
	bash scripts/deps.sh

build:
	$(CARGO) build --workspace --all-targets

# The whole suite: unit tests, API tests on loopback, the SQLite and etcd store suites,
# durability (kill -9), stock kubectl, skiffctl end to end, and the API fuzz test.
test: build
	$(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench:
	bash scripts/bench.sh

# The node: pods, containers vs crun/runc, pod network vs CNI (root; see README).
bench-node:
	bash scripts/bench-node.sh
