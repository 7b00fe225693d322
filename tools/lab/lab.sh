#!/bin/bash
# The reference lab as network namespaces (../shared/DESIGN.md, "Reference lab"):
#
#   ks 10.1.12.1 --- r2 --- 10.1.23.3 gm3 --- 192.168.3.0/24 (h3 .10)
#                      \--- 10.1.24.4 gm4 --- 192.168.4.0/24 (h4 .10)
#
# r2 is the transit router: it knows every route and nothing about keys.
#   lab.sh up [CONFIG_DIR]   topology, then covey-ks and both covey-gm from
#                            CONFIG_DIR/{ks,gm3,gm4}.toml (default examples/lab)
#   lab.sh topology          the namespaces and links only
#   lab.sh down              every namespace and process the lab made
#   lab.sh wait              until both members are registered (or 30 s)
#   lab.sh show              coveyctl from each daemon
# Runtime files (logs, sockets, keylogs, pids) live in $COVEY_LAB_RUN.
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

link() {  # link A ifA addrA B ifB addrB
  ip link add "$2" netns "$(ns "$1")" type veth peer name "$5" netns "$(ns "$4")"
  in_ns "$1" ip addr add "$3" dev "$2"
  in_ns "$4" ip addr add "$6" dev "$5"
  in_ns "$1" ip link set "$2" up
  in_ns "$4" ip link set "$5" up
}

topology() {
  need_root
  down_namespaces
  mkdir -p "$run"
  for n in "${nodes[@]}"; do
    ip netns add "$(ns "$n")"
    in_ns "$n" ip link set lo up
  done
  link ks eth0 10.1.12.1/24 r2 ks0 10.1.12.2/24
  link r2 gm3 10.1.23.2/24 gm3 wan0 10.1.23.3/24
  link r2 gm4 10.1.24.2/24 gm4 wan0 10.1.24.4/24
  link gm3 lan0 192.168.3.1/24 h3 eth0 192.168.3.10/24
  link gm4 lan0 192.168.4.1/24 h4 eth0 192.168.4.10/24
  in_ns ks ip route add default via 10.1.12.2
  in_ns gm3 ip route add default via 10.1.23.2
  in_ns gm4 ip route add default via 10.1.24.2
  in_ns h3 ip route add default via 192.168.3.1
  in_ns h4 ip route add default via 192.168.4.1
  in_ns r2 ip route add 192.168.3.0/24 via 10.1.23.3
  in_ns r2 ip route add 192.168.4.0/24 via 10.1.24.4
  for n in r2 gm3 gm4; do in_ns "$n" sysctl -qw net.ipv4.ip_forward=1; done
}

start() {  # start NODE PROGRAM CONFIG
  local node=$1 prog=$2 config=$3
  in_ns "$node" "$build/userspace/apps/$prog" --config "$config" --keylog "$run/$node.keylog" \
    >"$run/$node.log" 2>&1 &
  echo $! >"$run/$node.pid"
}

up() {
  local configs=${1:-$top/examples/lab}
  topology
  # The rekey signing key is made here, never committed.
  if [ ! -f "$configs/ks-rekey.pem" ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$configs/ks-rekey.pem" 2>/dev/null
    chmod 600 "$configs/ks-rekey.pem"
  fi
  start ks covey-ks "$configs/ks.toml"
  sleep 0.5
  start gm3 covey-gm "$configs/gm3.toml"
  start gm4 covey-gm "$configs/gm4.toml"
}

registered() {  # registered NODE
  grep -q "Registration to KS .* complete" "$run/$1.log" 2>/dev/null
}

wait_registered() {
  for _ in $(seq 1 60); do
    if registered gm3 && registered gm4; then return 0; fi
    sleep 0.5
  done
  echo "lab.sh: members did not register within 30 s; logs in $run" >&2
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
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
