# The two commands of the README: `make demo` and `make test`. Each installs what is missing
# (libclang for RocksDB's bindings) first. Everything builds in the release profile, into a
# target directory outside the clone, so RocksDB (about 12 minutes on two cores) compiles once
# per machine.

CARGO_TARGET_DIR ?= $(HOME)/.cache/dedupstore/target
export CARGO_TARGET_DIR
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench deps redis

demo: deps
	cargo run --release --quiet -- demo

test: deps
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --release --no-deps
	cargo test --release
	cargo run --release --quiet --example consumer
	cargo bench --no-run

bench: deps redis
	cargo bench

# libclang (RocksDB's bindings are generated with it) and a C++ compiler.
deps:
	@if ! command -v c++ >/dev/null 2>&1 || ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then \
		echo "installing libclang-dev and clang"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev clang >/dev/null; \
	fi

# The baseline the benches compare against; they start it on 127.0.0.1 themselves.
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	}
