# Toolgate — build, run and test. `make run` and `make test` install what is missing first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO_LEPTOS_VERSION := 0.3.11
WASM_BINDGEN_VERSION := 0.2.130
TOOLCHAIN := $(shell sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
CARGO_BIN := $(HOME)/.cargo/bin
export PATH := $(CARGO_BIN):$(PATH)

# The same environment cargo-leptos gives its server build, so `cargo test` and `cargo clippy`
# reuse its compiled dependencies instead of building everything a second time.
LEPTOS_ENV := LEPTOS_OUTPUT_NAME=toolgate LEPTOS_SITE_ROOT=target/site LEPTOS_SITE_PKG_DIR=pkg \
	LEPTOS_SITE_ADDR=127.0.0.1:8080 LEPTOS_RELOAD_PORT=3011 LEPTOS_LIB_DIR=frontend LEPTOS_BIN_DIR=server \
	LEPTOS_JS_MINIFY=false LEPTOS_HASH_FILES=false RUSTFLAGS="--cfg erase_components"
SERVER_PKGS := -p toolgate -p toolgate-domain -p toolgate-app -p toolgate-loadgen
TOOLGATE_TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test
export TOOLGATE_TEST_POSTGRES_URL

.PHONY: help deps rust-deps test-deps build release run test lint fmt unit fuzz external bench bench-audit bench-dlp bench-scim bench-policy bench-auth bench-proxy soak clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

rust-deps: ## Pinned toolchain with the wasm target, cargo-leptos and wasm-bindgen-cli
	@command -v rustup >/dev/null || { echo "rustup is required"; exit 1; }
	@rustup toolchain list | grep -q "^$(TOOLCHAIN)" || rustup toolchain install $(TOOLCHAIN) --profile minimal -c rustfmt -c clippy -t wasm32-unknown-unknown
	@rustup +$(TOOLCHAIN) target list --installed | grep -q wasm32-unknown-unknown || rustup +$(TOOLCHAIN) target add wasm32-unknown-unknown
	@cargo leptos --version 2>/dev/null | grep -q "$(CARGO_LEPTOS_VERSION)" || \
		{ echo "installing cargo-leptos $(CARGO_LEPTOS_VERSION) (debug build: minutes, not the release build's half hour)"; \
		  cargo +$(TOOLCHAIN) install cargo-leptos --version $(CARGO_LEPTOS_VERSION) --locked --debug; }
	@wasm-bindgen --version 2>/dev/null | grep -q "$(WASM_BINDGEN_VERSION)" || \
		{ echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION)"; \
		  cargo +$(TOOLCHAIN) install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --debug; }

deps: rust-deps ## Everything `make run` needs

test-deps: rust-deps ## Everything `make test` needs: also Chromium, Node and Python test tools
	@bash scripts/test-deps.sh

build: deps ## Debug build of server + hydrated wasm (target/debug/toolgate, target/site)
	cargo leptos build

release: deps ## Release build; wasm-opt comes from Debian's binaryen when missing
	@command -v wasm-opt >/dev/null || { apt-get update -qq && apt-get install -y -qq binaryen; }
	cargo leptos build --release
	@ls -la target/release/toolgate target/site/pkg

run: build ## Build, create data/ and a first admin (password printed once), serve on :8080
	@mkdir -p data
	@if [ ! -f data/.admin-created ]; then \
		pw=$$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 20); \
		TOOLGATE_ADMIN_PASSWORD=$$pw ./target/debug/toolgate admin create --username admin && \
		touch data/.admin-created && \
		echo "" && echo "  First admin: user 'admin', password '$$pw' (shown once)" && echo ""; \
	fi
	./target/debug/toolgate serve

fmt: ## Format the code
	cargo fmt --all

lint: rust-deps ## rustfmt check, clippy (server and wasm) with warnings as errors
	cargo fmt --all -- --check
	$(LEPTOS_ENV) cargo clippy $(SERVER_PKGS) --all-targets -- -D warnings
	cargo clippy -p toolgate-frontend --target wasm32-unknown-unknown -- -D warnings

unit: build ## Rust unit and integration tests (SQLite and PostgreSQL)
	$(LEPTOS_ENV) cargo test $(SERVER_PKGS)

# Fuzz targets: every test named `fuzz_…` (proptest). `make unit` runs them with a small fixed
# number of cases each; this runs many more (PROPTEST_CASES), the HTTP ones fewer (a request each).
FUZZ_CASES ?= 20000
FUZZ_HTTP_CASES ?= 2000

fuzz: rust-deps ## Fuzz targets (JSON-RPC, SCIM, OAuth, CIMD, policy files) with $(FUZZ_CASES) cases each, $(FUZZ_HTTP_CASES) over HTTP
	$(LEPTOS_ENV) PROPTEST_CASES=$(FUZZ_CASES) cargo test $(SERVER_PKGS) --lib fuzz_
	$(LEPTOS_ENV) PROPTEST_CASES=$(FUZZ_HTTP_CASES) cargo test $(SERVER_PKGS) --test integration fuzz_

external: build test-deps ## Third-party client (MCP Python SDK) and browser (Playwright) tests
	bash scripts/test-external.sh

test: test-deps lint build unit external ## Everything CI runs

AUDIT_BENCH_EVENTS ?= 10000000

bench: bench-audit bench-dlp bench-scim bench-policy bench-auth bench-proxy ## All benchmarks (figures go to BENCHMARKS.md)

bench-audit: rust-deps ## Audit append rate, record latency under load, search over $(AUDIT_BENCH_EVENTS) events (SQLite)
	cargo run --release -p toolgate-domain --features ssr --example audit_bench -- --events $(AUDIT_BENCH_EVENTS)

bench-dlp: rust-deps ## DLP scan throughput on a 1 MB tool response
	cargo run --release -p toolgate-domain --features ssr --example dlp_bench

bench-policy: rust-deps ## Policy decision, tools/list assembly and snapshot rebuild at 1,000 groups x 100 connectors x 50 tools (criterion)
	cargo bench -p toolgate-domain --features test-util --bench policy

bench-auth: rust-deps ## Bearer credential resolution on the /mcp path: personal token, HS256 access token, Entra RS256 (criterion)
	$(LEPTOS_ENV) cargo bench -p toolgate --bench credentials

EVERYTHING_JS := end2end/node_modules/@modelcontextprotocol/server-everything/dist/index.js
BENCH_PROXY_ARGS ?=

bench-proxy: release test-deps ## MCP proxy: tools/call direct vs through toolgate (auth, policy, audit, DLP) at 1/32/256 sessions, 1 MB via DLP, tools/list 100x50, memory, start-up
	cargo build --release -p toolgate-loadgen
	set -o pipefail; target/release/toolgate-loadgen suite --toolgate target/release/toolgate \
		--everything $(EVERYTHING_JS) --out target/bench-proxy.json $(BENCH_PROXY_ARGS) | tee target/bench-proxy.md

# Soak (issue 9, not part of `make test` or `make bench`): a fresh release toolgate, 1,000 MCP
# sessions (each with its GET stream) over 10 principals calling at 200 calls/s for 10 minutes,
# a policy change every 2 s and a SCIM churn step every second; prints the RSS / fd / thread
# curve and fails on any error, RSS growth over 10 % or fd growth over 32 from minute 4 (after
# the warm-up, see loadgen/src/soak.rs) to the end. SOAK_ARGS="--duration 2m" for a shorter run.
SOAK_ARGS ?=

soak: release ## 10-minute soak: 1,000 sessions at 200 calls/s with policy changes and SCIM churn; RSS/fd curve, fails on errors or growth
	cargo build --release -p toolgate-loadgen
	set -o pipefail; target/release/toolgate-loadgen soak --toolgate target/release/toolgate \
		--out target/soak.json $(SOAK_ARGS) | tee target/soak.md

bench-scim: release test-deps ## SCIM provisioning benchmark: Entra-like initial cycle, then disables (figures in BENCHMARKS.md)
	target/pyenv/bin/python bench/scim_bench.py --binary target/release/toolgate --out target/bench-scim.json

clean: ## Remove build output
	cargo clean
