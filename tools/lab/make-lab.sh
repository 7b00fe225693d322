#!/bin/bash
# `make lab`: the reference lab carrying traffic, on the kernel that can.
#   make-lab.sh            (COVEY_BUILD: the build tree, default build/)
# When `covey-gm --probe` says this kernel has everything covey's data path
# needs, the lab runs here in network namespaces (lab.sh up, wait) and
# tools/lab/demo.sh pings across it and prints what covey made of it; the
# lab stays up for a look around until `make lab-down`.
# Otherwise (no ESP, no bpffs...) the same demo runs inside a VM on Debian's
# kernel (tests/vm/run-in-vm), lab and all, and its output is printed here;
# nothing stays up. Either way r2's capture and the daemons' logs land in
# BUILD/lab/. Exit status: demo.sh's (0 = the ping crossed r2 as ESP).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${COVEY_BUILD:-$top/build}" && pwd)
export COVEY_BUILD=$build
gm=$build/userspace/apps/covey-gm
out=$build/lab

if [ "$(id -u)" != 0 ]; then
  echo "make lab: the lab makes network namespaces (here or in the VM) and needs root" >&2
  exit 1
fi
[ -x "$gm" ] || { echo "make lab: $gm is not built (make)" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
if "$gm" --probe >"$out/probe.txt" 2>&1; then
  echo "make lab: covey-gm --probe: $(uname -r) has what covey's data path needs; the lab runs here"
  "$top/tools/lab/lab.sh" up
  "$top/tools/lab/lab.sh" wait
  rc=0
  sh "$top/tools/lab/demo.sh" "$out" || rc=$?
  echo "make lab: the lab stays up (namespaces covey-*, logs in ${COVEY_LAB_RUN:-/run/covey-lab}); make lab-down removes it"
  exit $rc
fi

missing=$(sed -n 's/^  - //p' "$out/probe.txt" | head -3 | paste -sd ';' | sed 's/;/; /g')
echo "make lab: covey-gm --probe: $(uname -r) lacks what covey's data path needs ($missing; full report in $out/probe.txt)"
echo "make lab: running the lab inside a VM on Debian's kernel instead (tests/vm/run-in-vm; about a minute under TCG)"
# The VM sees this machine's root read-only: the rekey signing key is made
# out here, before it boots.
"$top/tools/lab/lab.sh" key
exec "$top/tests/vm/run-in-vm" --cache "$build/vm" --share "$out" --log "$out/console.log" --timeout 300 \
  -- sh "$top/tools/lab/demo.sh" --up "$out"
