#!/bin/bash
# `make lab`: the reference lab carrying traffic, on the kernel that can.
#   make-lab.sh            (COVEY_BUILD: the build tree, default build/)
#   make-lab.sh --coop     `make lab-coop`: the lab with three cooperative key
#                          servers and etcd (lab.sh up --coop), the primary
#                          killed while h3 pings h4 (tools/lab/coop-demo.sh);
#                          output in BUILD/lab-coop/
# When `covey-gm --probe` says this kernel has everything covey's data path
# needs, the lab runs here in network namespaces (lab.sh up, wait) and
# tools/lab/demo.sh pings across it and prints what covey made of it; the
# lab stays up for a look around until `make lab-down`.
# Otherwise (no ESP, no bpffs...) the same demo runs inside a VM on Debian's
# kernel (tests/vm/run-in-vm), lab and all, and its output is printed here;
# nothing stays up. Either way r2's capture and the daemons' logs land in
# BUILD/lab/. Exit status: demo.sh's (0 = the IPv4 and IPv6 pings crossed r2
# as ESP).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${COVEY_BUILD:-$top/build}" && pwd)
export COVEY_BUILD=$build
gm=$build/userspace/apps/covey-gm
out=$build/lab up=up demo=demo.sh target=lab timeout=300
if [ "${1:-}" = --coop ]; then
  out=$build/lab-coop up="up --coop" demo=coop-demo.sh target=lab-coop timeout=600
fi

if [ "$(id -u)" != 0 ]; then
  echo "make $target: the lab makes network namespaces (here or in the VM) and needs root" >&2
  exit 1
fi
[ -x "$gm" ] || { echo "make $target: $gm is not built (make)" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
if "$gm" --probe >"$out/probe.txt" 2>&1; then
  echo "make $target: covey-gm --probe: $(uname -r) has what covey's data path needs; the lab runs here"
  # shellcheck disable=SC2086 # "up --coop" is two words
  "$top/tools/lab/lab.sh" $up
  "$top/tools/lab/lab.sh" wait
  rc=0
  sh "$top/tools/lab/$demo" "$out" || rc=$?
  echo "make $target: the lab stays up (namespaces covey-*, logs in ${COVEY_LAB_RUN:-/run/covey-lab}); make lab-down removes it"
  exit $rc
fi

missing=$(sed -n 's/^  - //p' "$out/probe.txt" | head -3 | paste -sd ';' | sed 's/;/; /g')
echo "make $target: covey-gm --probe: $(uname -r) lacks what covey's data path needs ($missing; full report in $out/probe.txt)"
echo "make $target: running the lab inside a VM on Debian's kernel instead (tests/vm/run-in-vm; a minute or more under TCG)"
# The VM sees this machine's root read-only: the keys are made out here,
# before it boots.
if [ $target = lab-coop ]; then "$top/tools/lab/lab.sh" key --coop; else "$top/tools/lab/lab.sh" key; fi
exec "$top/tests/vm/run-in-vm" --cache "$build/vm" --share "$out" --log "$out/console.log" --timeout $timeout \
  -- sh "$top/tools/lab/$demo" --up "$out"
