#!/bin/sh
# TCP throughput through covey's data path against the same transfer through
# hand-installed static XFRM tunnel SAs with no BPF (issue 5: ratio >= 0.9),
# in IPv4 and in IPv6 (issue 12: the same target).
# Runs INSIDE the VM; tests/bench/vm_throughput.py boots it and reports:
#   tests/vm/run-in-vm --share OUT -- sh tests/bench/vm_throughput.sh OUT
# with COVEY_BUILD set to a build tree (covey-ks, covey-gm, coveyctl).
#
# Two copies of the reference lab's topology, side by side in their own
# namespaces (cvm-tps-* static, cvm-tpc-* covey), so the two can alternate
# without restarting covey-gm (its BPF verification costs ~25 s under TCG):
#
#   ks 10.1.12.1 --- r2 --- 10.1.23.3 gm3 --- 192.168.3.0/24 (h3 .10)
#                      \--- 10.1.24.4 gm4 --- 192.168.4.0/24 (h4 .10)
#
#   static: tunnel-mode SAs and policies between gm3 and gm4's WAN addresses
#           for 192.168.3.0/24 <-> 192.168.4.0/24, AES-256-CBC +
#           HMAC-SHA-256-128, no BPF anywhere; the ks namespace stays idle.
#           In IPv6 the same between 2001:db8:23::3 and 2001:db8:24::4 for
#           2001:db8:3::/64 <-> 2001:db8:4::/64 (other SPIs and keys).
#   covey:  covey-ks and covey-gm on gm3/gm4 as in tests/vm/datapath.sh
#           (data path on, TBAR on, fail-close, the default transform, which
#           is the same AES-256-CBC + HMAC-SHA-256-128).
#
# Each topology first carries a 4 MiB warm-up transfer while r2 captures 200
# packets: static must show ESP between the WAN addresses with the static
# SPI, covey ESP with the hosts' own addresses and the group's SPI, neither
# any LAN packet in clear; so in each family. Then COVEY_TPUT_MIB (default
# 32) MiB h3 -> h4, static, covey, static6, covey6 (IPv6), static, ...
# COVEY_TPUT_REPEATS (default 5) times each, timed by the receiver (accept
# to EOF). Every measured run must have moved the SAs' byte counters on
# both members by at least the transfer's size (covey: and covey's encrypt
# and tbar_accepted counters, in both families: each is stamped), else the
# script fails instead of reporting a number.
#
# Results go to OUT/vm_throughput.results, one line of key=value words each
# (shell quoting; kernel, transforms, runs); the host side turns them into JSON.
# Under TCG every exec costs a noticeable fraction of a second: commands for
# one namespace go through one `ip -batch`, and the receivers are started once.
set -u

out=${1:-${COVEY_VM_OUT:-}}
build=${COVEY_BUILD:-}
mib=${COVEY_TPUT_MIB:-32}
repeats=${COVEY_TPUT_REPEATS:-5}
S=cvm-tps-
C=cvm-tpc-
nodes="ks r2 gm3 gm4 h3 h4"
work=$(mktemp -d /tmp/covey-tput.XXXXXX)
NAME=vm_throughput
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/../vm/lib.sh"
. "$top/tools/lab/topology.sh"
# PATH may lead to a pyenv shim (a shell script that starts more processes):
# under TCG that costs seconds per call. Debian's own python3 when present.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

say() { echo "vm_throughput: $*"; }
cleanup() {
  [ -n "$tcpdump_pid" ] && kill "$tcpdump_pid" 2>/dev/null
  for p in $S $C; do
    for n in $nodes; do
      for pid in $(ip netns pids "$p$n" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    done
  done
  if [ -n "$out" ]; then cp "$work"/*.log "$work"/*.txt "$out/" 2>/dev/null; fi
  for p in $S $C; do for n in $nodes; do ip netns del "$p$n" 2>/dev/null; done; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
result() { # one line of the results file (and of the output)
  say "result: $*"
  [ -z "$out" ] || echo "$*" >>"$out/vm_throughput.results"
}

[ -n "$build" ] || fail "COVEY_BUILD is not set (the build tree with covey-ks, covey-gm and coveyctl)"
KS=$build/userspace/apps/covey-ks
GM=$build/userspace/apps/covey-gm
CTL=$build/tools/coveyctl/coveyctl
for f in "$KS" "$GM" "$CTL"; do [ -x "$f" ] || fail "$f is not built"; done
for cmd in ip tcpdump openssl $PY; do
  command -v $cmd >/dev/null || fail "$cmd is not installed (tools/install-deps.sh installs it)"
done
case "$mib" in "" | *[!0-9]* | 0) fail "COVEY_TPUT_MIB must be a positive whole number of MiB, not '$mib'" ;; esac
case "$repeats" in '' | *[!0-9]* | 0) fail "COVEY_TPUT_REPEATS must be a positive number, not '$repeats'" ;; esac
bytes=$((mib * 1048576))
[ -z "$out" ] || { mkdir -p "$out" && : >"$out/vm_throughput.results"; } || fail "cannot write to $out"
result "kernel=$(uname -r) bytes=$bytes repeats=$repeats cpus=$(grep -c ^processor /proc/cpuinfo)"

# ---- two copies of the topology ----
lab_topology $S
lab_topology $C

# ---- covey first: its members verify their BPF while the static side runs ----
lab_ks_config
lab_gm_config gm3 10.1.23.3 '"lan0"'
lab_gm_config gm4 10.1.24.4 '"lan0"'
start() { # NODE PROGRAM; exec all the way down, so the pid is the daemon's
  (exec ip netns exec "$C$1" "$2" --config "$work/$1.toml" >>"$work/$1.log" 2>&1) &
  echo $! >"$work/$1.pid"
}
start ks "$KS"
start gm3 "$GM"
start gm4 "$GM"

# ---- static SAs and policies: the same transform, no BPF ----
keys() { od -An -v -tx1 -w"$1" -N$(($1 * $2)) /dev/urandom | tr -d ' '; }  # never printed
SPI_34=0x57a70001
SPI_43=0x57a70002
SPI6_34=0x57a70601
SPI6_43=0x57a70602
set -- $(keys 32 4) $(keys 32 4)
for g in 3 4; do
  if [ $g = 3 ]; then
    lan=192.168.3.0/24 far=192.168.4.0/24 local=10.1.23.3 remote=10.1.24.4
    lan6=2001:db8:3::/64 far6=2001:db8:4::/64 local6=2001:db8:23::3 remote6=2001:db8:24::4
  else
    lan=192.168.4.0/24 far=192.168.3.0/24 local=10.1.24.4 remote=10.1.23.3
    lan6=2001:db8:4::/64 far6=2001:db8:3::/64 local6=2001:db8:24::4 remote6=2001:db8:23::3
  fi
  batch "${S}gm$g" "ip xfrm state/policy add" <<EOF
xfrm state add src 10.1.23.3 dst 10.1.24.4 proto esp spi $SPI_34 reqid 1 mode tunnel enc cbc(aes) 0x$1 auth-trunc hmac(sha256) 0x$5 128
xfrm state add src 10.1.24.4 dst 10.1.23.3 proto esp spi $SPI_43 reqid 1 mode tunnel enc cbc(aes) 0x$2 auth-trunc hmac(sha256) 0x$6 128
xfrm policy add src $lan dst $far dir out tmpl src $local dst $remote proto esp reqid 1 mode tunnel
xfrm policy add src $far dst $lan dir in tmpl src $remote dst $local proto esp reqid 1 mode tunnel
xfrm policy add src $far dst $lan dir fwd tmpl src $remote dst $local proto esp reqid 1 mode tunnel
xfrm state add src 2001:db8:23::3 dst 2001:db8:24::4 proto esp spi $SPI6_34 reqid 2 mode tunnel enc cbc(aes) 0x$3 auth-trunc hmac(sha256) 0x$7 128
xfrm state add src 2001:db8:24::4 dst 2001:db8:23::3 proto esp spi $SPI6_43 reqid 2 mode tunnel enc cbc(aes) 0x$4 auth-trunc hmac(sha256) 0x$8 128
xfrm policy add src $lan6 dst $far6 dir out tmpl src $local6 dst $remote6 proto esp reqid 2 mode tunnel
xfrm policy add src $far6 dst $lan6 dir in tmpl src $remote6 dst $local6 proto esp reqid 2 mode tunnel
xfrm policy add src $far6 dst $lan6 dir fwd tmpl src $remote6 dst $local6 proto esp reqid 2 mode tunnel
EOF
done
set --

# ---- the transfer: a receiver per topology started once, a sender per run ----
# The receiver times each connection from accept to EOF and answers
# "BYTES SECONDS FIRST-BYTE-TO-EOF-SECONDS" on the same connection.
RECEIVER='
import socket, sys, time
a = sys.argv[1]
s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((a, 5201)); s.listen(4)
buf = bytearray(1 << 18)
while True:
    c, _ = s.accept()
    t0 = time.monotonic(); first = None; n = 0
    while True:
        k = c.recv_into(buf)
        if not k: break
        if first is None: first = time.monotonic()
        n += k
    t1 = time.monotonic()
    c.sendall(("%d %.6f %.6f\n" % (n, t1 - t0, t1 - (first or t1))).encode()); c.close()'
# Sends BYTES (a 1 MiB random block over and over; ESP does not compress),
# prints the receiver'\''s answer, its own send-to-answer time, and from
# TCP_INFO its retransmissions and MSS (loss under TCG explains slow runs).
SENDER='
import os, socket, struct, sys, time
total = int(sys.argv[1]); block = memoryview(os.urandom(1 << 20))
deadline = time.monotonic() + 20
while True:
    try:
        c = socket.create_connection((sys.argv[2], 5201), timeout=90); break
    except ConnectionRefusedError:
        if time.monotonic() > deadline: raise
        time.sleep(0.2)
t0 = time.monotonic(); left = total
while left:
    k = min(left, len(block)); c.sendall(block[:k]); left -= k
c.shutdown(socket.SHUT_WR)
answer = c.makefile().readline().split()
if len(answer) != 3: sys.exit("the receiver did not answer")
t1 = time.monotonic()
info = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
mss, retrans = struct.unpack_from("I", info, 16)[0], struct.unpack_from("I", info, 100)[0]
print(*answer, "%.6f" % (t1 - t0), retrans, mss)'
for p in $S $C; do
  for a in 192.168.4.10 2001:db8:4::10; do
    (exec ip netns exec "${p}h4" $PY -c "$RECEIVER" $a >>"$work/receiver-$p.log" 2>&1) &
  done
done
transfer() { # PREFIX WHAT BYTES [H4-ADDRESS]; sets rx_bytes rx_s first_s tx_s retrans mss
  ip netns exec "${1}h3" $PY -c "$SENDER" "$3" "${4:-192.168.4.10}" >"$work/sender.out" 2>&1 ||
    fail "$2: the transfer h3 -> h4 failed: $(tail -2 "$work/sender.out" | tr '\n' ' ')"
  set -- $(tail -1 "$work/sender.out")
  [ $# = 6 ] || fail "$2: unexpected sender output: $(cat "$work/sender.out")"
  rx_bytes=$1 rx_s=$2 first_s=$3 tx_s=$4 retrans=$5 mss=$6
}
# The wire at r2 during a warm-up transfer: 200 packets, then tcpdump exits.
sample() { # PREFIX WHAT [H4-ADDRESS]; r2's packets as text in $work/WHAT.txt
  capture_start "${1}r2" any "$work/$2.pcap" 200
  transfer "$1" "$2 warm-up" $((4 << 20)) "${3:-}"
  [ "$rx_bytes" = $((4 << 20)) ] || fail "$2 warm-up: sent $((4 << 20)) bytes, h4 received $rx_bytes"
  sleep 0.3
  kill -INT $tcpdump_pid 2>/dev/null
  wait $tcpdump_pid
  tcpdump_pid=
  tcpdump -nn -r "$work/$2.pcap" >"$work/$2.txt" 2>/dev/null || fail "cannot read the $2 capture back"
  [ -z "$out" ] || cp "$work/$2.pcap" "$out/"
  clear=$(grep -E '192\.168\.[34]\.[0-9]+(\.[0-9]+)? > 192\.168\.[34]\.[0-9]+(\.[0-9]+)?: (ICMP|Flags|UDP)|IP6 2001:db8:[34]::' "$work/$2.txt" |
    grep -v ': ESP(spi=')
  [ -z "$clear" ] || fail "$2: h3 -> h4 crossed r2 in clear:
$(echo "$clear" | head -5)"
}
sa_bytes() { # NAMESPACE: the bytes every XFRM state there has carried
  ip -n "$1" -s xfrm state | awk '/lifetime current:/ { getline; sub(/\(bytes\),?/, "", $1); n += $1 } END { print n + 0 }'
}
drops() { # NAMESPACE: packets its links dropped, RX and TX (a veth whose peer
  # has XDP queues into a 256-slot ring and drops when it is full)
  ip -n "$1" -s link | awk '/^ *(RX|TX):/ { getline; n += $4 } END { print n + 0 }'
}
softnet_drops() { # the whole VM: packets the per-CPU backlogs (netif_rx) dropped
  n=0
  while read -r _ d _; do n=$((n + 0x$d)); done </proc/net/softnet_stat
  echo $n
}
transforms() { # NAMESPACE: the SAs' algorithms, keys replaced by their length
  ip -n "$1" xfrm state | awk '$1 == "enc" || $1 == "auth-trunc" || $1 == "aead" || $1 == "auth" {
      l = (length($3) - 2) * 4; $3 = l "-bit key"; print }' | sort -u | tr '\n' ';' | sed 's/;$//; s/;/; /g'
}

# ---- static: verified on the wire ----
sample $S static
n=$(grep -c "10.1.23.3 > 10.1.24.4: ESP(spi=$SPI_34," "$work/static.txt")
m=$(grep -c "10.1.24.4 > 10.1.23.3: ESP(spi=$SPI_43," "$work/static.txt")
[ "$n" -gt 0 ] && [ "$m" -gt 0 ] || fail "static: r2 did not see ESP between the WAN addresses both ways (SPI $SPI_34: $n, $SPI_43: $m); r2 saw:
$(head -10 "$work/static.txt")"
say "static warm-up: 4 MiB in ${rx_s}s; r2 saw ESP $SPI_34 x$n (10.1.23.3 > 10.1.24.4), $SPI_43 x$m back, nothing in clear"
sample $S static6 2001:db8:4::10
n=$(grep -c "2001:db8:23::3 > 2001:db8:24::4: ESP(spi=$SPI6_34," "$work/static6.txt")
m=$(grep -c "2001:db8:24::4 > 2001:db8:23::3: ESP(spi=$SPI6_43," "$work/static6.txt")
[ "$n" -gt 0 ] && [ "$m" -gt 0 ] || fail "static6: r2 did not see IPv6 ESP between the WAN addresses both ways (SPI $SPI6_34: $n, $SPI6_43: $m); r2 saw:
$(head -10 "$work/static6.txt")"
say "static6 warm-up: 4 MiB in ${rx_s}s; r2 saw ESP $SPI6_34 x$n (2001:db8:23::3 > 2001:db8:24::4), $SPI6_43 x$m back, nothing in clear"

# ---- covey: up, then verified on the wire ----
gm() { # NODE: "STATE SPI ENCRYPT TBAR_ACCEPTED" from coveyctl gm status
  "$CTL" gm status --json --socket "$work/$1.sock" 2>/dev/null | $PY -c '
import json, sys
d = json.load(sys.stdin)["data_path"]; st = d["stats"]
print(d["state"], d["sending_spi"], st["encrypt"], st["tbar_accepted"])' 2>/dev/null
}
for g in gm3 gm4; do
  i=0
  until [ "$(gm $g | cut -d' ' -f1)" = active ]; do
    i=$((i + 1))
    [ $i -le 150 ] || fail "covey: $g's data path was not active within 150 s; log:
$(tail -15 "$work/$g.log")"
    kill -0 "$(cat "$work/$g.pid")" 2>/dev/null || fail "covey: $g exited; log:
$(tail -15 "$work/$g.log")"
    sleep 1
  done
done
spi=$(gm gm3 | cut -d' ' -f2)
[ "$spi" = "$(gm gm4 | cut -d' ' -f2)" ] || fail "covey: gm3 and gm4 send on different SPIs"
lspi=$(printf '%s' "$spi" | tr 'A-F' 'a-f')
say "covey: both members active, TEK SPI $spi"
sample $C covey
n=$(grep -c "192.168.3.10 > 192.168.4.10: ESP(spi=$lspi," "$work/covey.txt")
m=$(grep -c "192.168.4.10 > 192.168.3.10: ESP(spi=$lspi," "$work/covey.txt")
[ "$n" -gt 0 ] && [ "$m" -gt 0 ] || fail "covey: r2 did not see the group's ESP with the hosts' own addresses both ways (h3 -> h4: $n, back: $m); r2 saw:
$(head -10 "$work/covey.txt")"
say "covey warm-up: 4 MiB in ${rx_s}s; r2 saw ESP $spi x$n (192.168.3.10 > 192.168.4.10), x$m back, nothing in clear"
sample $C covey6 2001:db8:4::10
n=$(grep -c "2001:db8:3::10 > 2001:db8:4::10: ESP(spi=$lspi," "$work/covey6.txt")
m=$(grep -c "2001:db8:4::10 > 2001:db8:3::10: ESP(spi=$lspi," "$work/covey6.txt")
[ "$n" -gt 0 ] && [ "$m" -gt 0 ] || fail "covey6: r2 did not see the group's IPv6 ESP with the hosts' own addresses both ways (h3 -> h4: $n, back: $m); r2 saw:
$(head -10 "$work/covey6.txt")"
say "covey6 warm-up: 4 MiB in ${rx_s}s; r2 saw ESP $spi x$n (2001:db8:3::10 > 2001:db8:4::10), x$m back, nothing in clear"
ts=$(transforms ${S}gm3) tc=$(transforms ${C}gm3)
result "transform_static='$ts' transform_covey='$tc' spi_covey=$spi"

# ---- the measured runs, alternating ----
i=1
while [ $i -le "$repeats" ]; do
  for mode in static covey static6 covey6; do
    case $mode in static*) p=$S ;; *) p=$C ;; esac
    case $mode in *6) h4=2001:db8:4::10 ;; *) h4=192.168.4.10 ;; esac
    a3=$(sa_bytes ${p}gm3) a4=$(sa_bytes ${p}gm4) r0=$(drops ${p}r2) b0=$(softnet_drops)
    if [ $p = $C ]; then
      set -- $(gm gm3) $(gm gm4)
      [ $# = 8 ] || fail "$mode run $i: coveyctl gm status did not answer (gm3/gm4: $*)"
      e0=$3 t0=$8
    fi
    transfer $p "$mode run $i" $bytes $h4
    [ "$rx_bytes" = $bytes ] || fail "$mode run $i: sent $bytes bytes, h4 received $rx_bytes"
    d3=$(($(sa_bytes ${p}gm3) - a3)) d4=$(($(sa_bytes ${p}gm4) - a4)) dr=$(($(drops ${p}r2) - r0)) db=$(($(softnet_drops) - b0))
    [ $d3 -ge $bytes ] && [ $d4 -ge $bytes ] ||
      fail "$mode run $i: the SAs carried $d3 bytes on gm3 and $d4 on gm4, less than the $bytes transferred: the transfer did not go through them"
    extra=
    if [ $p = $C ]; then
      set -- $(gm gm3) $(gm gm4)
      [ $# = 8 ] || fail "$mode run $i: coveyctl gm status did not answer (gm3/gm4: $*)"
      [ "$1" = active ] && [ "$5" = active ] && [ "$2" = "$spi" ] ||
        fail "$mode run $i: data path states $1/$5, SPI $2 (was $spi)"
      enc=$(($3 - e0)) acc=$(($8 - t0))
      [ $enc -gt 0 ] && [ $acc -gt 0 ] ||
        fail "$mode run $i: covey's counters did not move (gm3 encrypt +$enc, gm4 tbar_accepted +$acc)"
      extra=" encrypt=$enc tbar_accepted=$acc"
    fi
    result "run mode=$mode i=$i bytes=$rx_bytes seconds=$rx_s first_byte_seconds=$first_s sender_seconds=$tx_s retransmits=$retrans mss=$mss r2_link_drops=$dr backlog_drops=$db sa_bytes_gm3=$d3 sa_bytes_gm4=$d4$extra"
  done
  i=$((i + 1))
done
say "done"
