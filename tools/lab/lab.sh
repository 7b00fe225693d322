#!/bin/bash
# The reference lab as network namespaces (../shared/DESIGN.md, "Reference lab"):
#
#   ks 10.1.12.1 --- r2 --- 10.1.23.3 gm3 --- 192.168.3.0/24 (h3 .10)
#                      \--- 10.1.24.4 gm4 --- 192.168.4.0/24 (h4 .10)
#
# r2 is the transit router: it knows every route and nothing about keys.
# The topology is tools/lab/topology.sh's, which the VM tier builds too.
#   lab.sh up [CONFIG_DIR]   topology, then covey-ks and both covey-gm from
#                            CONFIG_DIR/{ks,gm3,gm4}.toml (default examples/lab)
#   lab.sh topology          the namespaces and links only
#   lab.sh down              every namespace and process the lab made
#   lab.sh wait              until both members are registered (or 30 s)
#   lab.sh show              coveyctl from each daemon
#   lab.sh key [CONFIG_DIR]  make CONFIG_DIR/ks-rekey.pem if it is missing
# Runtime files (logs, sockets, keylogs, pids) live in $COVEY_LAB_RUN.
# `make lab` (tools/lab/make-lab.sh) adds traffic: tools/lab/demo.sh.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${COVEY_BUILD:-$top/build}
run=${COVEY_LAB_RUN:-/run/covey-lab}
prefix=${COVEY_LAB_PREFIX:-covey-}
nodes=(ks r2 gm3 gm4 h3 h4)

ns() { echo "${prefix}$1"; }
in_ns() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

need_root() {
  if [ "$(id -u)" != 0 ]; then echo "lab.sh: the lab makes network namespaces and needs root" >&2; exit 1; fi
}

. "$top/tools/lab/topology.sh"

topology() {
  need_root
  down_namespaces
  mkdir -p "$run"
  lab_topology "$prefix"
}

start() {  # start NODE PROGRAM CONFIG
  local node=$1 prog=$2 config=$3
  # `ip netns exec` gives the daemon a mount namespace of its own with a
  # fresh /sys; the bpffs covey-gm mounts there is its alone, so gm3 and
  # gm4 both pin under /sys/fs/bpf/covey/GET_VPN without meeting. Others
  # see it through the daemon's mount namespace (nsenter -t PID -m).
  # exec all the way down, so the pid file holds the daemon's own pid.
  (exec ip netns exec "$(ns "$node")" "$build/userspace/apps/$prog" --config "$config" \
    --keylog "$run/$node.keylog" >"$run/$node.log" 2>&1) &
  echo $! >"$run/$node.pid"
}

rekey_key() {  # rekey_key CONFIG_DIR: the rekey signing key is made here, never committed
  local configs=${1:-$top/examples/lab}
  if [ ! -f "$configs/ks-rekey.pem" ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$configs/ks-rekey.pem" 2>/dev/null
    chmod 600 "$configs/ks-rekey.pem"
  fi
}

up() {
  local configs=${1:-$top/examples/lab}
  topology
  rekey_key "$configs"
  start ks covey-ks "$configs/ks.toml"
  sleep 0.5
  start gm3 covey-gm "$configs/gm3.toml"
  start gm4 covey-gm "$configs/gm4.toml"
}

registered() {  # registered NODE
  grep -q "Registration to KS .* complete" "$run/$1.log" 2>/dev/null
}

wait_registered() {
  local n why="members did not register within 30 s"
  for _ in $(seq 1 60); do
    if registered gm3 && registered gm4; then return 0; fi
    # A daemon that exited will not register: say so now, not in 30 s.
    for n in ks gm3 gm4; do
      if [ -f "$run/$n.pid" ] && ! kill -0 "$(<"$run/$n.pid")" 2>/dev/null; then why="the daemon on $n exited"; break 2; fi
    done
    sleep 0.5
  done
  echo "lab.sh: $why; logs in $run" >&2
  tail -n 20 "$run"/*.log >&2 || true
  return 1
}

show() {
  local ctl="$build/tools/coveyctl/coveyctl"
  echo "=== ks: coveyctl ks group";   in_ns ks "$ctl" ks group --socket "$run/ks.sock" || true
  echo "=== ks: coveyctl ks members"; in_ns ks "$ctl" ks members --socket "$run/ks.sock" || true
  for g in gm3 gm4; do
    echo "=== $g: coveyctl gm status"; in_ns "$g" "$ctl" gm status --socket "$run/$g.sock" || true
  done
}

down_namespaces() {
  for n in "${nodes[@]}"; do
    if ip netns list | grep -qw "$(ns "$n")"; then
      # Whatever still runs inside goes first, so nothing outlives the lab.
      for pid in $(ip netns pids "$(ns "$n")" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
      sleep 0.1
      for pid in $(ip netns pids "$(ns "$n")" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del "$(ns "$n")"
    fi
  done
}

down() {
  need_root
  for f in "$run"/*.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  down_namespaces
}

case "${1:-}" in
  up) shift; up "$@" ;;
  topology) topology ;;
  wait) wait_registered ;;
  show) show ;;
  down) down ;;
  key) shift; rekey_key "$@" ;;
  *) sed -n '2,18p' "$0"; exit 2 ;;
esac
