#!/usr/bin/env bash
# The kernel matrix: the kernel tier's test binaries (real programs, real
# sockets, kernel counters as the oracle) on the host kernel and inside VMs
# booted with Debian's kernels (virtme-ng, qemu under TCG, the host's root
# file system over 9p), one table of results at the end.
#
# Needs root, qemu-system-x86_64, kmod, apt-get (to fetch the kernels) and
# virtme-ng in .venv (`make pyenv`). Without them it prints SKIPPED, or fails
# when NETPROBE_REQUIRE_KERNEL_TESTS=1 (CI).
#
# NETPROBE_KERNELS selects kernels (default "6.1 6.12"); the host column runs
# unless NETPROBE_MATRIX_HOST=0; NETPROBE_MATRIX_TESTS picks test binaries.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# Not under /var/cache or /tmp: the guest mounts tmpfs there, and virtme-ng
# finds the modules next to the kernel image.
cache=${NETPROBE_KERNEL_CACHE:-$root/target/kernels}
kernels=${NETPROBE_KERNELS:-6.1 6.12}
work=$(mktemp -d /tmp/netprobe-matrix.XXXXXX)
# A matrix stopped early (timeout, ^C) stops its VMs too: every process of
# a VM (timeout, vng, qemu) names the work directory on its command line.
trap 'pkill -f -- "$work/" 2>/dev/null; rm -rf "$work"' EXIT

skip() {
  echo
  echo "!!!!! KERNEL MATRIX SKIPPED: $* !!!!!"
  echo
  [ "${NETPROBE_REQUIRE_KERNEL_TESTS:-}" = 1 ] && { echo "NETPROBE_REQUIRE_KERNEL_TESTS=1 forbids skipping"; exit 1; }
  exit 0
}
[ "$(id -u)" = 0 ] || skip "not root"
# The host column needs only root; the VMs need qemu, kmod and virtme-ng.
vm_missing=()
command -v qemu-system-x86_64 >/dev/null || vm_missing+=("qemu-system-x86_64 (Debian: qemu-system-x86)")
command -v depmod >/dev/null || vm_missing+=("depmod (Debian: kmod)")
[ -x "$root/.venv/bin/vng" ] || vm_missing+=("virtme-ng in .venv (make pyenv)")
export PATH="$root/.venv/bin:$PATH"

# The newest Debian package of a kernel series (generic amd64 flavour: the
# cloud flavour lacks the 9p modules virtme-ng needs).
package_of() {
  case $1 in
    6.1) apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' ;;
    *) apt-cache search --names-only "^linux-image-${1//./\\.}\.[0-9]+\+deb[0-9]+-amd64-unsigned\$" ;;
  esac | awk '{print $1}' | sort -V | tail -1
}

# Fetch and unpack a kernel once, with its module index (virtme-ng mounts the
# modules beside the image as the guest's /lib/modules; nothing is installed
# on the host). Prints "<vmlinuz> <release>".
fetch() {
  local pkg=$1 dir="$cache/$1"
  if [ ! -d "$dir/boot" ]; then
    mkdir -p "$cache/debs" "$dir"
    (cd "$cache/debs" && apt-get download -q "$pkg" >/dev/null 2>&1) || return 1
    dpkg -x "$cache/debs/${pkg}"_*.deb "$dir" || return 1
  fi
  local vmlinuz rel
  vmlinuz=$(ls "$dir"/boot/vmlinuz-* 2>/dev/null | head -1)
  [ -n "$vmlinuz" ] || return 1
  rel=${vmlinuz##*/vmlinuz-}
  if [ ! -e "$dir/lib/modules/$rel/modules.dep" ]; then
    depmod -b "$dir" "$rel" || return 1
  fi
  echo "$vmlinuz $rel"
}

echo "kernel matrix: building the kernel tier's test binaries"
# Every node-agent/tests/kernel*.rs is a kernel-tier binary: a new one runs
# on every kernel without being listed here.
# NETPROBE_MATRIX_TESTS="kernel_traffic kernel_dns" runs only those (a
# developer's re-run of one binary; CI runs them all).
if [ -n "${NETPROBE_MATRIX_TESTS:-}" ]; then
  tests=$(for t in $NETPROBE_MATRIX_TESTS; do printf -- '--test %s ' "$t"; done)
else
  tests=$(cd "$root/node-agent/tests" && for f in kernel*.rs; do printf -- '--test %s ' "${f%.rs}"; done)
fi
bins=$(cd "$root" && cargo test --locked -p netprobe-agent $tests --no-run \
  --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])
' | tr '\n' ' ')
[ -n "$bins" ] || { echo "kernel matrix: building the test binaries failed"; exit 1; }

columns=()
status=0
run_host() {
  local out="$work/host"
  mkdir -p "$out"
  echo "kernel matrix: host kernel $(uname -r)"
  sh "$root/tests/kernels/guest.sh" "$out" $bins
  columns+=("host")
}
# Resolve and fetch a series' kernel into $work/<series>/ (its package in
# "package", "<vmlinuz> <release>" in "image"), or say why not in "error".
prepare_vm() {
  local series=$1 pkg got out="$work/$1"
  mkdir -p "$out"
  pkg=$(package_of "$series")
  if [ -z "$pkg" ]; then echo "kernel matrix: no Debian package for $series (apt-get update?)" > "$out/error"; return; fi
  if ! got=$(fetch "$pkg"); then echo "kernel matrix: fetching $pkg failed" > "$out/error"; return; fi
  echo "$pkg" > "$out/package"
  echo "$got" > "$out/image"
}
run_vm() {
  local series=$1 pkg vmlinuz out="$work/$1"
  [ -e "$out/image" ] || return
  pkg=$(cat "$out/package")
  read -r vmlinuz _ < "$out/image"
  echo "kernel matrix: $series ($pkg) in a VM"
  local start=$SECONDS
  # A VM under TCG runs the tier 6-8x slower than the host, and this
  # machine's speed varies between boots: side by side, 6.1 and 6.12 have
  # taken from 1,245 s to 1,916 s (2026-12-02). 50 minutes leaves a slow
  # boot room and still stops a hung guest within CI's 90.
  timeout 3000 vng --run "$vmlinuz" --disable-kvm --force-9p --disable-microvm --memory 4G --cpus 2 \
    --rwdir "$out" --cwd "$root" --exec "sh $root/tests/kernels/guest.sh $out $bins" \
    > "$out/console.log" 2>&1
  echo "kernel matrix: $series took $((SECONDS - start)) s"
  [ -e "$out/finished" ] || echo "the VM did not finish (boot failure or timeout): see its console" > "$out/error"
}

# `make test` has run the kernel tier on the host already (in `cargo test`)
# and sets NETPROBE_MATRIX_HOST=0 not to run it twice.
[ "${NETPROBE_MATRIX_HOST:-1}" = 0 ] || run_host
if [ ${#vm_missing[@]} -gt 0 ]; then
  echo
  echo "!!!!! KERNEL MATRIX: VMs SKIPPED, missing: ${vm_missing[*]} !!!!!"
  echo
  [ "${NETPROBE_REQUIRE_KERNEL_TESTS:-}" = 1 ] && { echo "NETPROBE_REQUIRE_KERNEL_TESTS=1 forbids skipping"; status=1; }
  kernels=""
fi
# The VMs run side by side: one guest under TCG leaves part of the host's
# two cores idle, so the pair finishes before the two in a row would (each
# takes longer than alone); the host column runs first and alone, as its
# tests time real traffic.
# Kernels are fetched one after the other (one apt-get at a time), then
# booted together.
for k in $kernels; do prepare_vm "$k"; done
vm_pids=()
for k in $kernels; do
  columns+=("$k")
  run_vm "$k" > "$work/$k.progress" 2>&1 &
  vm_pids+=($!)
done
for p in "${vm_pids[@]}"; do wait "$p"; done
for k in $kernels; do cat "$work/$k.progress"; done

# One table: a row per test, a column per kernel.
python3 - "$work" "${columns[@]}" <<'PY' || status=1
import os, re, sys
work, cols = sys.argv[1], sys.argv[2:]
results, kernels, errors, failed_logs = {}, {}, {}, []
for c in cols:
    d = os.path.join(work, c)
    kernels[c] = open(os.path.join(d, "kernel")).read().strip() if os.path.exists(os.path.join(d, "kernel")) else "?"
    if os.path.exists(os.path.join(d, "error")):
        errors[c] = open(os.path.join(d, "error")).read().strip()
        con = os.path.join(d, "console.log")
        if os.path.exists(con):
            errors[c] += "\n" + "".join(open(con, errors="replace").readlines()[-30:])
    for f in sorted(os.listdir(d)):
        if not f.endswith(".log") or f == "console.log":
            continue
        text = open(os.path.join(d, f), errors="replace").read()
        rc = open(os.path.join(d, f[:-4] + ".rc")).read().strip() if os.path.exists(os.path.join(d, f[:-4] + ".rc")) else "?"
        # With --nocapture a test's output sits between its name and its
        # verdict: take the names that started, and the failures libtest
        # lists at the end; a binary that died mid-test has no summary.
        started = re.findall(r"^test (\S+) \.\.\. ", text, re.M)
        finished = re.search(r"^test result: ", text, re.M) is not None
        failed = set()
        for block in re.findall(r"^failures:\n((?:    \S+\n)+)", text, re.M):
            failed.update(l.strip() for l in block.splitlines())
        for i, name in enumerate(started):
            if name in failed:
                v = "FAILED"
            elif not finished and i == len(started) - 1:
                v = "died"
            else:
                v = "ok"
            results.setdefault(f"{f[:-4]}::{name}", {})[c] = v
        seen = bool(started)
        if rc != "0" or not seen or not finished:
            failed_logs.append((c, f, text))
rows = sorted(results)
w = max([len(r) for r in rows] + [4])
head = f"{'test':<{w}}  " + "  ".join(f"{c + ' ' + kernels[c]:<24}" for c in cols)
print("\n=== kernel matrix ===")
print(head)
bad = bool(errors) or bool(failed_logs)
for r in rows:
    cells = []
    for c in cols:
        v = results[r].get(c, "not run")
        bad |= v != "ok"
        cells.append(f"{v:<24}")
    print(f"{r:<{w}}  " + "  ".join(cells))
# The figures each test printed (netprobe against its kernel oracle), and
# what the agent reported partial, per kernel.
for c in cols:
    d = os.path.join(work, c)
    lines = []
    for f in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if f.endswith(".log") and f != "console.log":
            for l in open(os.path.join(d, f), errors="replace").read().splitlines():
                if re.search(r"netprobe|Partial|partial", l) and "panicked" not in l and len(l) < 300:
                    lines.append(l.split(" ... ")[-1].strip())
    if lines:
        print(f"\n--- {c} ({kernels[c]}): figures ---")
        print("\n".join(dict.fromkeys(lines)))
for c, e in errors.items():
    print(f"\n--- {c}: {e}")
for c, f, text in failed_logs:
    print(f"\n--- {c}: {f} failed; its output (last 80 lines) ---")
    print("\n".join(text.splitlines()[-80:]))
passed = sum(1 for r in rows for c in cols if results[r].get(c) == "ok")
total = len(rows) * len(cols)
print(f"\nmatrix: {passed} passed, {total - passed} failed")
sys.exit(1 if bad else 0)
PY
exit $status
