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
#   lab.sh up --coop         three cooperative key servers instead (make
#                            lab-coop): the KS node also has 10.1.12.11 and
#                            .12 and runs a three-member etcd on its loopback
#                            (data in $COVEY_LAB_RUN/etcd), covey-ks ks1-ks3
#                            (priorities 100/90/80) and the members from
#                            examples/lab/coop/{ks1,ks2,ks3,gm3,gm4}.toml
#   lab.sh topology          the namespaces and links only
#   lab.sh down              every namespace and process the lab made
#   lab.sh wait              until both members are registered (or 30 s)
#   lab.sh show              coveyctl from each daemon
#   lab.sh key [CONFIG_DIR]  make CONFIG_DIR/ks-rekey.pem if it is missing
#   lab.sh key --coop        make examples/lab/coop/{ks-rekey.pem,sealing.key}
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
. "$top/tools/lab/etcd.sh"
coop_configs=$top/examples/lab/coop

topology() {
  need_root
  down_namespaces
  mkdir -p "$run"
  lab_topology "$prefix"
}

start() {  # start NODE PROGRAM CONFIG [NAME], NAME (default NODE) naming its run files
  local node=$1 prog=$2 config=$3 name=${4:-$1}
  # `ip netns exec` gives the daemon a mount namespace of its own with a
  # fresh /sys; the bpffs covey-gm mounts there is its alone, so gm3 and
  # gm4 both pin under /sys/fs/bpf/covey/GET_VPN without meeting. Others
  # see it through the daemon's mount namespace (nsenter -t PID -m).
  # exec all the way down, so the pid file holds the daemon's own pid.
  (exec ip netns exec "$(ns "$node")" "$build/userspace/apps/$prog" --config "$config" \
    --keylog "$run/$name.keylog" >"$run/$name.log" 2>&1) &
  echo $! >"$run/$name.pid"
}

rekey_key() {  # rekey_key [CONFIG_DIR | --coop]: the keys are made here, never committed
  local configs=${1:-$top/examples/lab}
  if [ "$configs" = --coop ]; then
    configs=$coop_configs
    # Every key server of the cluster reads the same sealing key.
    if [ ! -f "$configs/sealing.key" ]; then
      (umask 077 && openssl rand -hex 32 >"$configs/sealing.key")
    fi
  fi
  if [ ! -f "$configs/ks-rekey.pem" ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$configs/ks-rekey.pem" 2>/dev/null
    chmod 600 "$configs/ks-rekey.pem"
  fi
}

up() {
  local configs=${1:-$top/examples/lab}
  if [ "$configs" = --coop ]; then
    up_coop
    return
  fi
  topology
  rekey_key "$configs"
  start ks covey-ks "$configs/ks.toml"
  sleep 0.5
  start gm3 covey-gm "$configs/gm3.toml"
  start gm4 covey-gm "$configs/gm4.toml"
}

up_coop() {
  topology
  rekey_key --coop
  # The three key servers share the KS node, each on its own address (as
  # tests/netns/test_failover.py does), so each pushes from its own.
  printf 'addr add 10.1.12.11/24 dev eth0\naddr add 10.1.12.12/24 dev eth0\n' | ip -n "$(ns ks)" -batch -
  lab_etcd_start "$(ns ks)" "$run/etcd"
  lab_etcd_wait "$(ns ks)" 60
  local k
  for k in ks1 ks2 ks3; do start ks covey-ks "$coop_configs/$k.toml" "$k"; done
  # The members come once a primary is elected: under TCG (the VM) their
  # BPF verification would starve etcd and the key servers' first calls.
  for _ in $(seq 1 120); do
    in_ns ks "$build/tools/coveyctl/coveyctl" ks cluster --json --socket "$run/ks1.sock" 2>/dev/null |
      grep -q '"primary": "[^"]' && break
    for k in ks1 ks2 ks3; do
      kill -0 "$(<"$run/$k.pid")" 2>/dev/null || { echo "lab.sh: $k exited: $(tail -1 "$run/$k.log")" >&2; return 1; }
    done
    sleep 0.5
  done
  start gm3 covey-gm "$coop_configs/gm3.toml"
  start gm4 covey-gm "$coop_configs/gm4.toml"
}

registered() {  # registered NODE
  grep -q "Registration to KS .* complete" "$run/$1.log" 2>/dev/null
}

wait_registered() {
  local n why="members did not register within 30 s"
  for _ in $(seq 1 60); do
    if registered gm3 && registered gm4; then return 0; fi
    # A daemon that exited will not register: say so now, not in 30 s.
    for n in ks ks1 ks2 ks3 gm3 gm4; do
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
  local k ks=ks
  [ -S "$run/ks1.sock" ] && ks="ks1 ks2 ks3"  # up --coop
  for k in $ks; do
    [ $k = ks ] || { echo "=== $k: coveyctl ks cluster"; in_ns ks "$ctl" ks cluster --socket "$run/$k.sock" || true; }
    echo "=== $k: coveyctl ks group";   in_ns ks "$ctl" ks group --socket "$run/$k.sock" || true
    echo "=== $k: coveyctl ks members"; in_ns ks "$ctl" ks members --socket "$run/$k.sock" || true
  done
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
  *) sed -n '2,24p' "$0"; exit 2 ;;
esac
