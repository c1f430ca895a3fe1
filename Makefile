# The two commands of the README: `make demo` and `make test`. Each installs what is missing
# (libclang for RocksDB's bindings) first. Everything builds in the release profile, into a
# target directory outside the clone, so RocksDB (about 12 minutes on two cores) compiles once
# per machine.

CARGO_TARGET_DIR ?= $(HOME)/.cache/dedupstore/target
export CARGO_TARGET_DIR
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test compare kafka-test bench fuzz deps redis nats

demo: deps
	cargo run --release --quiet -- demo

test: deps nats
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings
	cargo clippy --release --features kafka --lib --examples --tests -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --release --no-deps --features kafka
	cargo test --release
	cargo test --release --features kafka --doc kafka
	cargo run --release --quiet --example consumer
	cargo run --release --quiet --example http_handler
	cargo bench --no-run

# The Kafka end-to-end test (tests/kafka.rs, docs/integrations.md) against tansu, a
# Kafka-compatible broker, installed from crates.io into ~/.cache/tansu when missing (about 10
# minutes on two cores; its default features have no storage engine). Not part of `make test`.
TANSU_HOME ?= $(HOME)/.cache/tansu
kafka-test: deps
	@[ -x "$(TANSU_HOME)/install/bin/tansu" ] || { \
		echo "installing tansu 0.6.0 into $(TANSU_HOME)"; \
		env -u CARGO_TARGET_DIR cargo install tansu --version 0.6.0 --locked --features dynostore \
			--root "$(TANSU_HOME)/install" --target-dir "$(TANSU_HOME)/target"; \
	}
	cargo build --release --features kafka --example kafka_consumer
	PATH="$(TANSU_HOME)/install/bin:$$PATH" cargo test --release --features kafka --test kafka -- --nocapture

bench: deps redis
	cargo bench

# `dedupstore bench`: one workload side by side against raw RocksDB and Redis (installed when
# missing, started on 127.0.0.1 by the command itself); docs/performance.md.
compare: deps redis
	cargo run --release --quiet -- bench

# One fuzz target (FUZZ=ops, wheel or codec) for FUZZ_SECONDS, on the nightly toolchain
# (docs/reliability.md); installs nightly and cargo-fuzz if they are missing. It builds with sanitizers into fuzz/target, apart from the rest.
FUZZ ?= ops
FUZZ_SECONDS ?= 1800
fuzz: deps
	@rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	cd fuzz && env -u CARGO_TARGET_DIR cargo +nightly fuzz run $(FUZZ) -- \
		-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -timeout=120

# libclang (RocksDB's bindings are generated with it) and a C++ compiler. The check looks for
# the file bindgen loads (scripts/find-libclang.sh; tests/install_check.rs tests it), not for
# anything named libclang*: LLVM's libclang-cpp is often installed without libclang.
deps:
	@missing=""; \
	sh scripts/find-libclang.sh >/dev/null || missing=" libclang-dev"; \
	command -v c++ >/dev/null 2>&1 || missing="$$missing g++"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null && \
		sh scripts/find-libclang.sh >/dev/null || { echo "make deps: the install failed, or libclang is still not found" >&2; exit 1; }; \
	fi

# The baseline the benches compare against; they start it on 127.0.0.1 themselves.
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	}

# The broker of the end-to-end test (tests/jetstream.rs), which starts it on 127.0.0.1 itself.
nats:
	@command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || { \
		echo "installing nats-server"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null; \
	}
