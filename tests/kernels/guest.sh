#!/bin/sh
# Runs inside a virtme-ng guest (or on the host): each test binary given, its
# output and exit code written into OUT (the guest's stdout may not come back
# through virtio-serial under TCG).
# usage: guest.sh OUT BINARY...
out=$1; shift
uname -r > "$out/kernel"
# What the fixtures use, loaded up front (a guest has no udev to autoload).
for m in veth nf_tables nft_numgen nft_ct nf_conntrack sch_ingress cls_bpf; do
  modprobe -q "$m" 2>/dev/null
done
export NETPROBE_REQUIRE_KERNEL_TESTS=1 RUST_BACKTRACE=1
# libtest prints each test's name as it starts: with one thread a hang shows
# where it hung.
for bin in "$@"; do
  name=$(basename "$bin" | sed 's/-[0-9a-f]*$//')
  "$bin" --test-threads=1 --nocapture > "$out/$name.log" 2>&1
  echo $? > "$out/$name.rc"
done
echo done > "$out/finished"
