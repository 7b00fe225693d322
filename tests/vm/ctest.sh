#!/bin/sh
# ctest's way into the VM tier:  ctest.sh BUILD NAME TIMEOUT -- COMMAND...
# Runs COMMAND in the VM (run-in-vm) with BUILD/vm as the kernel and initramfs
# cache and BUILD/vm/NAME, cleared first, as the writable share for logs and
# captures (COVEY_VM_OUT inside; the console log lands there too).
# Skips (exit 77, the tests' SKIP_RETURN_CODE) only when the VM cannot run at
# all: without root. A missing package is an error for tools/install-deps.sh
# to fix, not a skip.
set -eu
build=$1 name=$2 timeout=$3
shift 3
[ "${1:-}" = "--" ] && shift
if [ "$(id -u)" != 0 ]; then
  echo "vm.$name: skipped: needs root (the VM mounts the host's root over 9p and runs as root in it)"
  exit 77
fi
out=$build/vm/$name
rm -rf "$out"
mkdir -p "$out"
COVEY_VM_OUT=$out exec "$(dirname "$0")/run-in-vm" --cache "$build/vm" --share "$out" \
  --log "$out/console.log" --timeout "$timeout" -- "$@"
