#!/bin/sh
# vm.datapath: the reference lab with real covey-ks and covey-gm on a kernel
# with ESP, every claim checked on the wire at r2 and in the members'
# counters. Run inside the VM:
#   tests/vm/run-in-vm -- sh tests/vm/datapath.sh [OUTDIR]
# with COVEY_BUILD set to a build tree (ctest sets it).
#
#   ks 10.1.12.1 --- r2 --- 10.1.23.3 gm3 --- 192.168.3.0/24 (h3 .10)
#                      |--- 10.1.24.4 gm4 --- 192.168.4.0/24 (h4 .10)
#                      \--- 10.1.25.5 gm5 (not authorized)
#   gm3's second LAN: 192.168.33.0/24 (h33 .10)
# and dual-stack (issue 12): every link and LAN also 2001:db8:N::/64, the
# hosts numbered alike (h3 2001:db8:3::10, h4 2001:db8:4::10); the group
# protects 192.168.0.0/16 and the IPv6 LANs (lib.sh, lab_ks_config).
#
# Scenarios (issue 5; each for IPv6 too, issue 12), in the order they run:
#   5a fail-close before registration: GMs up, no KS yet: h3 -> h4 is
#      dropped at gm3 (fail_close_drop), r2 sees none of it; IPv6 alike.
#   2  the KS starts; registration (UDP 848) crosses r2 in clear.
#   1  ping and a TCP transfer h3 -> h4, and pings gm3 and gm4 originate
#      from their LAN addresses: on r2 only ESP, one SPI both ways, outer
#      addresses the hosts' own; nothing of 192.168.x in clear. The same
#      in IPv6 (ping, the GMs' own pings, TCP): IPv6 ESP with the hosts'
#      IPv6 addresses, the same SPI. Traffic between gm3's two LANs stays
#      inside gm3, in clear, in both families. The IPv6 pings are
#      stamped and checked (tbar_accepted on both members), the IPv6 SYN's
#      MSS clamped (mss_clamped).
#   2a path MTU: UDP with DF just under the usable size arrives; just over
#      gets ICMP fragmentation-needed from gm3, and the size it names gets
#      through (the TCP transfer of 1 runs with full-size, clamped segments).
#      IPv6 alike, at the same time: Packet Too Big from gm3 naming the
#      usable MTU, not the kernel's (which would not count the stamp).
#   4  replay: an ESP packet captured on r2 and sent again to gm4 within
#      the window is counted tbar_duplicate, after it tbar_late; fresh
#      traffic flows throughout. IPv4 and IPv6 at the same time.
#   metrics: gm3's and gm4's GET /metrics pass promtool check metrics and
#      say what their control sockets say (fail_close_drop, tbar_duplicate,
#      tbar_late, the permit's ACL hits).
#   3  50 packets/s h3 -> h4 in IPv4 and 50 in IPv6 at the same time,
#      across two operator TEK rekeys: none lost in either, and gm4 checks
#      the stamps of both (tbar_accepted grows by both flows).
#   6  gm5, refused at registration, holds no SA and cannot decrypt the
#      group's ESP (IPv4 and IPv6) sent to it. gm4 (drop_unknown_spi)
#      drops IPv6 ESP of an SPI not the group's (esp_unknown_drop) and
#      clear IPv6 that its ACL says arrives encrypted (clear_drop).
#   C  container hosts (issue 13): gm3 and gm4 each protect a bridge br0
#      (172.20.3.0/24, 172.20.4.0/24) with three containers (namespaces,
#      veth into br0): container -> remote container and gm3 itself (from
#      its bridge address) -> remote container cross r2 as ESP with the
#      containers' own addresses, the payload never in clear; IPv6 alike.
#      A container on a new subnet of gm3's bridge (172.20.13.1/24 added
#      to br0 while covey-gm runs) reaches the remote containers as ESP and
#      its neighbours on br0 in clear inside gm3: the own-LAN bypass
#      followed the address, covey-gm was not restarted.
#   5b kill -9 of gm3: h3 -> h4 dropped within the lease, nothing in clear
#      on r2 (either family); gm3 restarted: traffic flows again.
#   and a clean stop (SIGTERM) of gm4 leaves nothing of covey in its kernel.
# Under TCG every exec costs a noticeable fraction of a second: commands for
# one namespace go through one `ip -batch`, and waits poll sparingly.
set -u

out=${1:-${COVEY_VM_OUT:-}}
build=${COVEY_BUILD:-}
P=cvm-dp-
work=$(mktemp -d /tmp/covey-datapath.XXXXXX)
NAME=datapath
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
. "$top/tools/lab/topology.sh"
nodes="ks r2 gm3 gm4 gm5 h3 h4 h33 c31 c32 c33 c34 c41 c42 c43"

say() { echo "datapath: $*"; }
H3_6=2001:db8:3::10 H4_6=2001:db8:4::10 GM3_6=2001:db8:3::1 GM4_6=2001:db8:4::1 H33_6=2001:db8:33::10
# Anything of the protected LANs (either family) on r2's links but ESP.
lan_clear() { # CAPTURE-TEXT
  grep -E '192\.168\.[0-9]+\.[0-9]+(\.[0-9]+)? > 192\.168\.[0-9]+\.[0-9]+(\.[0-9]+)?: (ICMP|Flags|UDP)|IP6 2001:db8:(3|4|33)::' "$1" |
    grep -v ': ESP(spi='
}
ns() { echo "$P$1"; }
in_ns() { n=$1; shift; ip netns exec "$P$n" "$@"; }
cleanup() {
  [ -n "$tcpdump_pid" ] && kill "$tcpdump_pid" 2>/dev/null
  for n in $nodes; do
    for pid in $(ip netns pids "$P$n" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  done
  if [ -n "$out" ]; then cp "$work"/*.log "$work"/*.txt "$out/" 2>/dev/null; fi
  for n in $nodes; do ip netns del "$P$n" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

[ -n "$build" ] || fail "COVEY_BUILD is not set (the build tree with covey-ks, covey-gm and coveyctl)"
KS=$build/userspace/apps/covey-ks
GM=$build/userspace/apps/covey-gm
CTL=$build/tools/coveyctl/coveyctl
for f in "$KS" "$GM" "$CTL"; do [ -x "$f" ] || fail "$f is not built"; done
for cmd in ip tcpdump ping python3 openssl curl promtool; do
  command -v $cmd >/dev/null || fail "$cmd is not installed (tools/install-deps.sh installs it)"
done
say "kernel $(uname -r)"

# ---- topology: the reference lab and gm5, h33 ----
lab_topology "$P" gm5 h33

# Container hosts (scenario C): on gmN (N = 3, 4) a bridge br0 on its own
# subnet (172.20.N.0/24, and IPv6 V6NET::/64) and three containers
# cN1-cN3 (.10-.12), each a namespace with a veth into br0.
containers() { # N V6NET
  ip -batch - <<EOF || fail "cannot make the containers of gm$1"
netns add ${P}c${1}1
netns add ${P}c${1}2
netns add ${P}c${1}3
EOF
  for i in 1 2 3; do
    echo "link add c$1$i netns $(ns gm$1) type veth peer name eth0 netns ${P}c$1$i"
  done | ip -batch - || fail "cannot wire the containers of gm$1"
  batch "$(ns gm$1)" "the bridge of gm$1" <<EOF
link add br0 type bridge
addr add 172.20.$1.1/24 dev br0
addr add $2::1/64 dev br0 nodad
link set br0 up
$(for i in 1 2 3; do echo "link set c$1$i master br0 up"; done)
EOF
  for i in 1 2 3; do
    batch "${P}c$1$i" "container c$1$i" <<EOF
addr add 172.20.$1.$((9 + i))/24 dev eth0
addr add $2::$((9 + i))/64 dev eth0 nodad
link set eth0 up
link set lo up
route add default via 172.20.$1.1
route add default via $2::1
EOF
  done
}
containers 3 2001:db8:5
containers 4 2001:db8:6
batch "$(ns r2)" "r2's routes to the containers" <<EOF
route add 172.20.3.0/24 via 10.1.23.3
route add 172.20.4.0/24 via 10.1.24.4
route add 2001:db8:5::/64 via 2001:db8:23::3
route add 2001:db8:6::/64 via 2001:db8:24::4
EOF

# ---- configuration ----
lab_ks_config
# gm3 and gm4 serve GET /metrics on their loopback (checked after 4).
lab_gm_config gm3 10.1.23.3 '"lan0", "lan1", "br0"' '[metrics]' 'listen = "127.0.0.1:9849"'
lab_gm_config gm4 10.1.24.4 '"lan0", "br0"' 'drop_unknown_spi = true' '[metrics]' 'listen = "127.0.0.1:9849"'
lab_gm_config gm5 10.1.25.5 ''

# covey-gm runs as its systemd unit runs it: root's uid with only the
# unit's capabilities (CapabilityBoundingSet= of debian/covey.covey-gm.service,
# read from the unit so the two cannot drift), no new privileges, the BPF
# filesystem mounted as systemd mounts it at boot (ip netns exec gives a
# fresh /sys without it).
GM_CAPS=$(sed -n 's/^CapabilityBoundingSet=//p' "$top/debian/covey.covey-gm.service" | tr 'A-Z ' 'a-z\n' |
  sed 's/^cap_/+/' | paste -sd, -)
case $GM_CAPS in +net_admin,*) ;; *) fail "no CapabilityBoundingSet= in debian/covey.covey-gm.service: '$GM_CAPS'" ;; esac
start() { # NODE PROGRAM; exec all the way down, so the pid is the daemon's
  if [ "$2" = "$GM" ]; then
    (exec ip netns exec "$P$1" sh -c 'mount -t bpf bpf /sys/fs/bpf && exec setpriv --no-new-privs \
      --bounding-set=-all,$0 --inh-caps=-all,$0 --ambient-caps=-all,$0 "$1" --config "$2"' \
      "$GM_CAPS" "$GM" "$work/$1.toml" >>"$work/$1.log" 2>&1) &
  else
    (exec ip netns exec "$P$1" "$2" --config "$work/$1.toml" >>"$work/$1.log" 2>&1) &
  fi
  echo $! >"$work/$1.pid"
}
# The capability mask of the unit's set, and a daemon's effective one.
caps_mask() {
  python3 -c "import sys; n = {'net_bind_service': 10, 'net_admin': 12, 'sys_admin': 21, 'perfmon': 38, 'bpf': 39}
print('%016x' % sum(1 << n[c.lstrip('+')] for c in sys.argv[1].split(',')))" "$GM_CAPS"
}
cap_eff() { sed -n 's/^CapEff:[[:space:]]*//p' "/proc/$(cat "$work/$1.pid")/status"; }
# Until the control socket of NODE answers with data_path STATE (or 60 s).
status() { in_ns "$1" "$CTL" gm status --json --socket "$work/$1.sock" 2>/dev/null; }
field() { # NODE PYTHON-EXPR over the status JSON `s`
  status "$1" | python3 -c "import json,sys; s=json.load(sys.stdin); print($2)" 2>/dev/null
}
wait_for() { # NODE EXPR VALUE WHAT
  i=0
  until [ "$(field "$1" "$2")" = "$3" ]; do
    i=$((i + 1))
    [ $i -le 60 ] || fail "$1: $4 did not happen within 60 s; log:
$(tail -15 "$work/$1.log")"
    kill -0 "$(cat "$work/$1.pid")" 2>/dev/null || fail "$1 exited; log:
$(tail -15 "$work/$1.log")"
    sleep 1
  done
}
stat() { field "$1" "s['data_path']['stats']['$2']"; }
capture_stop() { # NAME: r2's capture as text in $work/NAME.txt
  sleep 0.5
  kill -INT $tcpdump_pid
  wait $tcpdump_pid
  tcpdump_pid=
  cp "$work/wire.pcap" "$work/$1.pcap"
  tcpdump -nn -r "$work/$1.pcap" >"$work/$1.txt" 2>/dev/null || fail "cannot read the capture back"
  [ -n "$out" ] && cp "$work/$1.pcap" "$out/"
}
diagnose() {
  for g in gm3 gm4; do
    echo "---- $g: data path"
    field $g "json.dumps(s.get('data_path'), indent=1)"
    echo "---- $g: ip -s xfrm state (keys masked), policies, xfrm_stat"
    ip -n "$(ns $g)" -s xfrm state | sed -E 's/0x[0-9a-f]{16,}/<key>/g'
    ip -n "$(ns $g)" xfrm policy
    in_ns $g cat /proc/net/xfrm_stat | grep -v ' 0$'
    echo "---- $g: log tail"
    tail -8 "$work/$g.log"
  done
  [ -f "$work/traffic.txt" ] && { echo "---- r2 (last capture)"; tail -20 "$work/traffic.txt"; }
}
DIAGNOSE=diagnose
# r2 sees every link; tcpdump -i any there captures all of them.
capture_r2() { capture_start "$(ns r2)" any; }

# ---- 5a. fail-close before registration ----
start gm3 "$GM"
start gm4 "$GM"
start gm5 "$GM"
for g in gm3 gm4; do wait_for $g "s['data_path']['state']" fail-close "the data path coming up"; done
want=$(caps_mask)
for g in gm3 gm4; do [ "$(cap_eff $g)" = "$want" ] || fail "$g runs with capabilities $(cap_eff $g), the unit grants $want ($GM_CAPS)"; done
say "covey-gm runs as its unit does: uid 0, capabilities $GM_CAPS only (CapEff $want)"
capture_r2
in_ns h3 ping -c 3 -i 0.3 -W 1 192.168.4.10 >"$work/ping" 2>&1 && fail "h3 -> h4 got through before any registration"
in_ns h3 ping -6 -c 3 -i 0.3 -W 1 $H4_6 >"$work/ping" 2>&1 && fail "h3 -> h4 (IPv6) got through before any registration"
capture_stop before
drops=$(stat gm3 fail_close_drop)
[ "${drops:-0}" -ge 6 ] || fail "gm3 counted ${drops:-?} fail_close_drop for 3 IPv4 and 3 IPv6 pings before registration"
leaked=$(grep -E '192\.168\.|2001:db8:(3|4|33)::' "$work/before.txt")
[ -z "$leaked" ] || fail "protected traffic crossed r2 before registration:
$leaked"
say "5a fail-close before registration: 3 IPv4 and 3 IPv6 pings dropped at gm3 (fail_close_drop $drops), r2 saw none"

# ---- 2. the KS; registration in clear ----
capture_r2
start ks "$KS"
for g in gm3 gm4; do wait_for $g "s['data_path']['state']" active "registration and the first TEK"; done
capture_stop registration
n848=$(grep -c 'UDP\|isakmp' "$work/registration.txt")
grep -q '10.1.23.3.848 > 10.1.12.1.848' "$work/registration.txt" ||
  fail "no GDOI (UDP 848) from gm3 to the KS in clear on r2; r2 saw:
$(head "$work/registration.txt")"
say "2 registration in clear: $n848 GDOI datagrams on r2 (deny udp any eq 848 any eq 848 bypasses)"
spi=$(field gm3 "s['data_path']['sending_spi']")
[ "$spi" = "$(field gm4 "s['data_path']['sending_spi']")" ] || fail "gm3 and gm4 send on different SPIs"
say "both members send on TEK SPI $spi"
# A second member in gm4's namespace (another control socket) must refuse,
# not flush gm4's SAs.
sed "s#$work/gm4.sock#$work/gm4b.sock#; s#$work/gm4-state#$work/gm4b-state#; s#:9849#:9850#" "$work/gm4.toml" >"$work/gm4b.toml"
in_ns gm4 "$GM" --config "$work/gm4b.toml" >"$work/gm4b.log" 2>&1 && fail "a second covey-gm started its data path beside gm4's"
grep -q "another covey-gm already drives the data path in this network namespace" "$work/gm4b.log" ||
  fail "the second covey-gm in gm4 did not say why it stopped: $(tail -2 "$work/gm4b.log")"
[ "$(field gm4 "s['data_path']['sending_spi']")" = "$spi" ] || fail "gm4 lost its SA to the second covey-gm"
say "a second covey-gm beside gm4 refused: $(grep -o 'another covey-gm already drives[^(]*' "$work/gm4b.log")"

# ---- 1. traffic between the LANs and from the GMs themselves ----
capture_r2
in_ns h3 ping -c 3 -i 0.3 -W 3 192.168.4.10 >"$work/ping" 2>&1 || fail "h3 -> h4 ping failed: $(tail -2 "$work/ping")"
in_ns h4 ping -c 3 -i 0.3 -W 3 192.168.3.10 >"$work/ping" 2>&1 || fail "h4 -> h3 ping failed: $(tail -2 "$work/ping")"
in_ns gm3 ping -c 3 -i 0.3 -W 3 -I 192.168.3.1 192.168.4.10 >"$work/ping" 2>&1 ||
  fail "gm3 (from 192.168.3.1) -> h4 ping failed: $(tail -2 "$work/ping")"
in_ns gm4 ping -c 3 -i 0.3 -W 3 -I 192.168.4.1 192.168.3.1 >"$work/ping" 2>&1 ||
  fail "gm4 (192.168.4.1) -> gm3 (192.168.3.1) ping failed: $(tail -2 "$work/ping")"
acc3=$(stat gm3 tbar_accepted) acc4=$(stat gm4 tbar_accepted)
in_ns h3 ping -6 -c 3 -i 0.3 -W 3 $H4_6 >"$work/ping" 2>&1 || fail "h3 -> h4 IPv6 ping failed: $(tail -2 "$work/ping")"
in_ns h4 ping -6 -c 3 -i 0.3 -W 3 $H3_6 >"$work/ping" 2>&1 || fail "h4 -> h3 IPv6 ping failed: $(tail -2 "$work/ping")"
in_ns gm3 ping -6 -c 3 -i 0.3 -W 3 -I $GM3_6 $H4_6 >"$work/ping" 2>&1 ||
  fail "gm3 (from $GM3_6) -> h4 IPv6 ping failed: $(tail -2 "$work/ping")"
in_ns gm4 ping -6 -c 3 -i 0.3 -W 3 -I $GM4_6 $GM3_6 >"$work/ping" 2>&1 ||
  fail "gm4 ($GM4_6) -> gm3 ($GM3_6) IPv6 ping failed: $(tail -2 "$work/ping")"
# Each member decrypted 12 of those 24 IPv6 packets: each must have checked
# and stripped an IPv6 stamp on every one.
acc3=$(( $(stat gm3 tbar_accepted) - acc3 )) acc4=$(( $(stat gm4 tbar_accepted) - acc4 ))
[ $acc3 -ge 12 ] && [ $acc4 -ge 12 ] ||
  fail "12 IPv6 pings each way decrypted by gm3 and gm4, but tbar_accepted grew by $acc3 and $acc4: IPv6 not stamped or not checked"
# A TCP transfer of 1 MiB h3 -> h4 in each family, checked by length and digest.
tcp_transfer() { # ADDRESS-OF-H4 PORT
  in_ns h4 python3 -c '
import hashlib, socket, sys
a, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((a, port)); s.listen(1)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
open(sys.argv[3], "w").write("%d\n" % c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
while True:
    b = c.recv(65536)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest())' "$1" "$2" "$work/tcp.mss" >"$work/tcp.rx" 2>&1 &
  rx=$! tcp_port=$2
  wait_until 30 "h4's TCP listener on $1" '[ -n "$(in_ns h4 ss -Hltn sport = :$tcp_port)" ]'
  in_ns h3 python3 -c '
import hashlib, socket, random, sys, time
data = random.Random(5).randbytes(1 << 20)
for attempt in range(30):  # the listener in h4 may still be starting (TCG)
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
        break
    except ConnectionRefusedError:
        time.sleep(0.5)
c.sendall(data); c.close()
print(len(data), hashlib.sha256(data).hexdigest())' "$1" "$2" >"$work/tcp.tx" 2>&1 ||
    { capture_stop traffic; fail "TCP h3 -> h4 ($1): $(tail -1 "$work/tcp.tx")"; }
  wait $rx
  [ "$(cat "$work/tcp.rx")" = "$(cat "$work/tcp.tx")" ] ||
    fail "TCP h3 -> h4 ($1): sent $(cat "$work/tcp.tx"), received $(cat "$work/tcp.rx")"
}
tcp_transfer 192.168.4.10 5001
mss3=$(stat gm3 mss_clamped)
tcp_transfer $H4_6 5004
mss3=$(( $(stat gm3 mss_clamped) - mss3 ))
# h4 sends with the MSS h3's SYN arrived with: tcp_mss_v6 = 1406 - 40 -
# 20 - 16 = 1330, less the 12-byte timestamp option both ends use.
[ $mss3 -ge 1 ] && [ "$(cat "$work/tcp.mss")" = 1318 ] ||
  fail "gm3 did not clamp h3's IPv6 SYN to MSS 1330: mss_clamped +$mss3, h4's MSS $(cat "$work/tcp.mss") (1318 with timestamps expected)"
capture_stop traffic
clear=$(lan_clear "$work/traffic.txt")
[ -z "$clear" ] || fail "protected traffic crossed r2 in clear:
$(echo "$clear" | head -5)"
for dir in "192.168.3.10 > 192.168.4.10" "192.168.4.10 > 192.168.3.10" "192.168.3.1 > 192.168.4.10" \
  "192.168.4.10 > 192.168.3.1" "192.168.4.1 > 192.168.3.1" \
  "$H3_6 > $H4_6" "$H4_6 > $H3_6" "$GM3_6 > $H4_6" "$H4_6 > $GM3_6" "$GM4_6 > $GM3_6" "$GM3_6 > $GM4_6"; do
  grep -q "$dir: ESP(spi=$(printf '%s' "$spi" | tr 'A-F' 'a-f')," "$work/traffic.txt" ||
    fail "no ESP with SPI $spi for $dir on r2; r2 saw:
$(head -20 "$work/traffic.txt")"
done
other=$(grep -o 'ESP(spi=0x[0-9a-f]*' "$work/traffic.txt" | sort -u | wc -l)
[ "$other" = 1 ] || fail "r2 saw ESP with $other SPIs, expected one: $(grep -o 'ESP(spi=0x[0-9a-f]*' "$work/traffic.txt" | sort -u)"
esp=$(grep -c 'ESP(spi=' "$work/traffic.txt")
esp6=$(grep -c 'IP6 .*ESP(spi=' "$work/traffic.txt")
say "1 ping both ways, pings from gm3 and gm4 themselves, TCP 1 MiB h3 -> h4 intact, each in IPv4 and IPv6: r2 saw $esp ESP packets ($esp6 of them IPv6), one SPI, hosts' own addresses, nothing in clear; IPv6 pings' stamps accepted: gm3 +$acc3, gm4 +$acc4; IPv6 SYN clamped at gm3 (mss_clamped +$mss3) to 1330: h4's MSS $(cat "$work/tcp.mss") with timestamps"

# Between gm3's own LANs (the ACL permits 192.168.0.0/16 both ways): routed
# by gm3 in clear, never steered out of the WAN or sent as ESP to h33.
capture_r2
in_ns h3 ping -c 3 -i 0.3 -W 3 192.168.33.10 >"$work/ping" 2>&1 || fail "h3 -> h33 (gm3's other LAN) failed: $(tail -2 "$work/ping")"
in_ns h3 ping -6 -c 3 -i 0.3 -W 3 $H33_6 >"$work/ping" 2>&1 || fail "h3 -> h33 (IPv6, gm3's other LAN) failed: $(tail -2 "$work/ping")"
capture_stop hairpin
! grep -qE '192\.168\.33\.|2001:db8:33::' "$work/hairpin.txt" ||
  fail "traffic between gm3's own LANs crossed r2: $(grep -E '192\.168\.33\.|2001:db8:33::' "$work/hairpin.txt" | head -3)"
grep -q 'deny ip 192.168.3.0/24 192.168.33.0/24' "$work/gm3.log" || fail "gm3 did not log its own-LAN bypass"
grep -q ' 2001:db8:3::/64 2001:db8:33::/64' "$work/gm3.log" || fail "gm3 did not log its IPv6 own-LAN bypass"
say "1 between gm3's own LANs (h3 -> h33): ping in clear through gm3 alone in both families (deny ip 192.168.3.0/24 192.168.33.0/24 and its IPv6 twin put before the group's ACL), nothing on r2"

# ---- C. container hosts: containers behind gm3's and gm4's bridges ----
# The pings carry a pattern that must never be readable on r2.
pattern=636f7665792d636f6e7461696e6572  # "covey-container"
cping() { # NODE ARGS...: 3 pings with the pattern; the test fails on a loss
  cp_n=$1
  shift
  in_ns "$cp_n" ping -c 3 -i 0.3 -W 3 -p $pattern "$@" >"$work/ping" 2>&1 ||
    fail "$cp_n -> $*: ping failed: $(tail -2 "$work/ping")"
}
esp_both_ways() { # CAPTURE A B: ESP of the group's SPI A -> B and B -> A on r2
  for dir in "$2 > $3" "$3 > $2"; do
    grep -q "$dir: ESP(spi=$(printf '%s' "$spi" | tr 'A-F' 'a-f')," "$work/$1.txt" ||
      fail "no ESP with SPI $spi for $dir on r2; r2 saw:
$(head -20 "$work/$1.txt")"
  done
}
no_container_clear() { # CAPTURE: no container address in clear, no payload readable
  clear=$(grep -E '172\.20\.[0-9]+\.[0-9]+ > |IP6 2001:db8:(5|6|7)::' "$work/$1.txt" | grep -v ': ESP(spi=')
  [ -z "$clear" ] || fail "container traffic crossed r2 in clear:
$(echo "$clear" | head -5)"
  ! grep -aq covey-container "$work/$1.pcap" || fail "the containers' ping payload was readable on r2 ($1.pcap)"
}
capture_r2
cping c31 172.20.4.10
cping c42 172.20.3.12
cping gm3 -I 172.20.3.1 172.20.4.11
cping c31 -6 2001:db8:6::10
capture_stop containers
no_container_clear containers
esp_both_ways containers 172.20.3.10 172.20.4.10
esp_both_ways containers 172.20.4.11 172.20.3.12
esp_both_ways containers 172.20.3.1 172.20.4.11
esp_both_ways containers 2001:db8:5::10 2001:db8:6::10
say "C containers: c31 -> c41, c42 -> c33, gm3 (from 172.20.3.1) -> c42, c31 -> c41 in IPv6: on r2 only ESP of SPI $spi between the containers' own addresses ($(grep -c 'ESP(spi=' "$work/containers.txt") packets), the payload never in clear"

# A container started after covey-gm: a new subnet on gm3's bridge (and an
# IPv6 one), its namespace wired in; r2 is told the route, as a routing
# protocol would tell it.
gm3_pid=$(cat "$work/gm3.pid")
ip netns add "${P}c34" || fail "cannot create the late container's namespace"
ip link add c34 netns "$(ns gm3)" type veth peer name eth0 netns "${P}c34" || fail "cannot wire the late container"
batch "$(ns gm3)" "a new subnet on gm3's bridge" <<EOF
addr add 172.20.13.1/24 dev br0
addr add 2001:db8:7::1/64 dev br0 nodad
link set c34 master br0 up
EOF
batch "${P}c34" "the late container c34" <<EOF
addr add 172.20.13.10/24 dev eth0
link set eth0 up
route add default via 172.20.13.1
EOF
batch "$(ns r2)" "r2's route to the late container" <<EOF
route add 172.20.13.0/24 via 10.1.23.3
EOF
bypassed() { # NODE ACL-LINE: the hits of that line of NODE's ACL ("" if it has none)
  field "$1" "[h['hits'] for h in s['data_path']['acl_hits'] if h['line'] == '$2'][0]"
}
wait_until 10 "gm3 putting its bridge's new subnets (172.20.13.0/24, 2001:db8:7::/64) into its own-LAN bypass" \
  '[ -n "$(bypassed gm3 "deny ip 172.20.13.0/24 172.20.3.0/24")" ] && [ -n "$(bypassed gm3 "deny ip 2001:db8:7::/64 2001:db8:5::/64")" ]'
capture_r2
cping c34 172.20.4.10
cping c34 172.20.3.11
cp "$work/ping" "$work/late-ping.txt"
capture_stop late
no_container_clear late
esp_both_ways late 172.20.13.10 172.20.4.10
! grep -q '172\.20\.3\.11' "$work/late.txt" || fail "c34 -> c32 (both behind gm3's bridge) crossed r2: $(grep '172\.20\.3\.11' "$work/late.txt" | head -3)"
# gm3 routes c34's first echo request (and may answer it with an ICMP
# redirect: c32 is on the same bridge, so the next ones may go straight).
hits=$(bypassed gm3 "deny ip 172.20.13.0/24 172.20.3.0/24")
got=$(grep -o '[0-9]* received' "$work/late-ping.txt")
[ "${hits:-0}" -ge 1 ] ||
  fail "gm3 counted ${hits:-?} hits of deny ip 172.20.13.0/24 172.20.3.0/24 for c34's pings to c32 ($got)"
kill -0 "$gm3_pid" && [ "$(cat "$work/gm3.pid")" = "$gm3_pid" ] || fail "gm3's covey-gm did not live through the new container"
say "C late container: 172.20.13.1/24 added to gm3's br0 while covey-gm ran: c34 -> c41 as ESP with c34's own address on r2; c34 -> c32 in clear inside gm3 ($got of 3, deny ip 172.20.13.0/24 172.20.3.0/24: $hits hits), nothing on r2; the IPv6 subnet followed too; the same covey-gm (pid $gm3_pid)"

# ---- 2a. path MTU: DF datagrams at and beyond the usable size ----
# The group SA carries inner packets up to 1438 bytes on a 1500-byte WAN
# (AES-256-CBC + HMAC-SHA-256-128); the stamp takes 12: 1426, so UDP
# payloads up to 1398 fit. Over IPv6 the outer header is 40 bytes: inner
# MTU ((1500 - 40 - 8 - 16 - 16) & ~15) - 2 = 1406, the stamp's header
# takes 16: 1390, UDP payloads up to 1342 (kmod::esp_tunnel_inner_mtu).
# Both families in one receiver and one sender (TCG: every exec counts).
in_ns h4 python3 -c '
import select, socket
socks = {}
for af, a in ((socket.AF_INET, "192.168.4.10"), (socket.AF_INET6, "2001:db8:4::10")):
    s = socket.socket(af, socket.SOCK_DGRAM); s.bind((a, 5002)); socks[s] = []
# Until the sender says "end" on both (a time limit alone raced a sender
# that TCG under load started late: its datagrams met a closed port).
ended = set()
while len(ended) < len(socks) and select.select(list(socks), [], [], 120)[0]:
    for s in select.select(list(socks), [], [], 0)[0]:
        d = s.recv(65535)
        if d == b"end": ended.add(s)
        else: socks[s].append(len(d))
for sizes in socks.values(): print(" ".join(map(str, sizes)))' >"$work/udp.rx" 2>&1 &
rx=$!
wait_until 30 "h4's UDP receivers" '[ "$(in_ns h4 ss -Hlun sport = :5002 | wc -l)" = 2 ]'
fn0=$(stat gm3 frag_needed_sent)
in_ns h3 python3 -c '
import errno, socket, time
# (family, h4, level, MTU_DISCOVER, PMTUDISC_DO, MTU, IP + UDP header, usable MTU)
fams = ((socket.AF_INET, "192.168.4.10", socket.IPPROTO_IP, 10, 2, 14, 28, 1426),
        (socket.AF_INET6, "2001:db8:4::10", socket.IPPROTO_IPV6, 23, 2, 24, 48, 1390))
socks = []
for af, h4, level, disc, do, _, hdr, usable in fams:
    s = socket.socket(af, socket.SOCK_DGRAM)
    s.setsockopt(level, disc, do)
    s.connect((h4, 5002))
    s.send(b"u" * (usable - hdr))      # just under: arrives
    s.send(b"o" * (usable - hdr + 1))  # just over: answered, not delivered
    socks.append(s)
time.sleep(1)
for s, (af, h4, level, _, _, opt_mtu, hdr, usable) in zip(socks, fams):
    try:
        s.send(b"o" * (usable - hdr + 1))
        word = "oversize-accepted"
    except OSError as e:
        word = "EMSGSIZE" if e.errno == errno.EMSGSIZE else "error-%d" % e.errno
    mtu = s.getsockopt(level, opt_mtu)
    s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # the ICMP also left its EMSGSIZE pending on the socket
    s.send(b"m" * (mtu - hdr))            # the MTU the ICMP named
    print(word, mtu, "sent", mtu - hdr, flush=True)
for s in socks:
    s.send(b"end")' >"$work/udp.tx" 2>&1 || fail "UDP with DF from h3: $(cat "$work/udp.tx")"
wait $rx
fn=$(( $(stat gm3 frag_needed_sent) - fn0 ))
[ "$(sed -n 1p "$work/udp.tx")" = "EMSGSIZE 1426 sent 1398" ] ||
  fail "h3 did not learn the path MTU 1426 from gm3: $(tr '\n' ' ' <"$work/udp.tx") (frag_needed_sent +$fn)"
[ "$(sed -n 2p "$work/udp.tx")" = "EMSGSIZE 1390 sent 1342" ] ||
  fail "h3 did not learn the IPv6 path MTU 1390 from gm3's Packet Too Big (1406 would be the kernel's, blind to the stamp): $(tr '\n' ' ' <"$work/udp.tx") (frag_needed_sent +$fn)"
[ "$(sed -n 1p "$work/udp.rx")" = "1398 1398" ] ||
  fail "h4 received UDP payloads of sizes '$(sed -n 1p "$work/udp.rx")', expected 1398 (just under) and 1398 (at the learned MTU)"
[ "$(sed -n 2p "$work/udp.rx")" = "1342 1342" ] ||
  fail "h4 received IPv6 UDP payloads of sizes '$(sed -n 2p "$work/udp.rx")', expected 1342 (just under) and 1342 (at the learned MTU)"
[ $fn -ge 2 ] || fail "gm3 counted frag_needed_sent +$fn for one oversized datagram in each family"
say "2a path MTU: DF UDP 1398 bytes arrives; 1399 answered by gm3 with fragmentation-needed, h3 learned MTU 1426 and its 1398-byte datagram arrived; IPv6: 1342 arrives, 1343 answered with Packet Too Big, h3 learned 1390 and its 1342 arrived (frag_needed_sent +$fn); TCP above: $(stat gm3 mss_clamped) SYNs clamped"

mac() { ip -n "$(ns $1)" -o link show "$2" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2; }
xfrm_stat() { in_ns "$1" cat /proc/net/xfrm_stat | awk -v k="$2" '$1 == k { print $2 }'; }

# ---- 4. replay: the same ESP packet again, within and after the window ----
# One IPv4 and one IPv6 packet, replayed at the same moments. Each copy
# makes one count: the first copies are inside the 3 s window (so not
# late, and their counters were seen: tbar_duplicate), the copies 5 s
# later outside it (the window is checked first: tbar_late), so 2 and 2
# means each family's pair was counted so.
dup0=$(stat gm4 tbar_duplicate) late0=$(stat gm4 tbar_late)
in_ns h3 ping -c 25 -i 0.4 -W 3 192.168.4.10 >"$work/ping.fresh" 2>&1 &
fresh=$!
in_ns h3 ping -6 -c 25 -i 0.4 -W 3 $H4_6 >"$work/ping6.fresh" 2>&1 &
fresh6=$!
in_ns r2 python3 "$here/replay.py" gm4 $H3_6 $H4_6 --after 5 >"$work/replay4v6.out" 2>&1 &
replay6=$!
in_ns r2 python3 "$here/replay.py" gm4 192.168.3.10 192.168.4.10 --after 5 >"$work/replay.out" 2>&1 ||
  fail "replay: $(cat "$work/replay.out")"
wait $replay6 || fail "replay (IPv6): $(cat "$work/replay4v6.out")"
wait $fresh || fail "fresh traffic h3 -> h4 during the replays lost packets: $(grep -o '[0-9]* received.*loss' "$work/ping.fresh")"
wait $fresh6 || fail "fresh IPv6 traffic h3 -> h4 during the replays lost packets: $(grep -o '[0-9]* received.*loss' "$work/ping6.fresh")"
wait_until 5 "gm4 counting the four replays" \
  '[ $(( $(stat gm4 tbar_duplicate) - dup0 + $(stat gm4 tbar_late) - late0 )) -ge 4 ]'
dup=$(( $(stat gm4 tbar_duplicate) - dup0 )) late=$(( $(stat gm4 tbar_late) - late0 ))
[ $dup = 2 ] && [ $late = 2 ] || fail "replays of one IPv4 and one IPv6 ESP packet to gm4: expected 2 tbar_duplicate and 2 tbar_late, counted $dup and $late
$(cat "$work/replay.out" "$work/replay4v6.out")"
say "4 replay at gm4 of IPv4 $(head -1 "$work/replay.out" | cut -d' ' -f1-2) and IPv6 $(head -1 "$work/replay4v6.out" | cut -d' ' -f1-2): within the 3 s window tbar_duplicate +$dup, $(tail -1 "$work/replay.out" | cut -d' ' -f4) and $(tail -1 "$work/replay4v6.out" | cut -d' ' -f4) s later tbar_late +$late; fresh pings: IPv4 $(grep -o '[0-9]* received.*loss' "$work/ping.fresh"), IPv6 $(grep -o '[0-9]* received.*loss' "$work/ping6.fresh")"

# ---- metrics: the members' GET /metrics ----
# Well formed (promtool), and the BPF counters the same as the control
# socket reads from the same maps: gm3's fail-close drops of 5a, gm4's
# replays of 4, and gm3's hits of the group's permit.
drop_sample() { # NODE REASON: covey_gm_datapath_drops_total{reason=REASON} in NODE's scrape
  sed -n "s/^covey_gm_datapath_drops_total{group=\"GET_VPN\",stage=\"[a-z_]*\",reason=\"$2\"} //p" "$work/$1.metrics"
}
for g in gm3 gm4; do
  in_ns $g curl -sS --max-time 5 http://127.0.0.1:9849/metrics >"$work/$g.metrics" || fail "$g: GET /metrics failed"
  promtool check metrics <"$work/$g.metrics" >"$work/$g.promtool" 2>&1 ||
    fail "$g: promtool check metrics: $(cat "$work/$g.promtool")"
done
m_fc=$(drop_sample gm3 fail_close_drop) m_dup=$(drop_sample gm4 tbar_duplicate) m_late=$(drop_sample gm4 tbar_late)
[ "$m_fc" = "$(stat gm3 fail_close_drop)" ] && [ "$m_fc" -ge 6 ] ||
  fail "gm3's metrics say fail_close_drop ${m_fc:-none}, its control socket $(stat gm3 fail_close_drop)"
[ "$m_dup" = "$(stat gm4 tbar_duplicate)" ] && [ "$m_late" = "$(stat gm4 tbar_late)" ] && [ "$m_dup" -ge 2 ] ||
  fail "gm4's metrics say tbar_duplicate ${m_dup:-none} tbar_late ${m_late:-none}, its control socket $(stat gm4 tbar_duplicate) and $(stat gm4 tbar_late)"
m_hits=$(sed -n 's/^covey_gm_acl_hits_total{group="GET_VPN",acl="main",entry="[0-9]*",line="permit ip 192.168.0.0\/16 192.168.0.0\/16"} //p' "$work/gm3.metrics")
[ "${m_hits:-0}" -gt 0 ] || fail "gm3's metrics count no hits of permit ip 192.168.0.0/16 192.168.0.0/16:
$(grep acl_hits "$work/gm3.metrics")"
say "metrics: promtool check metrics passes on gm3 and gm4 ($(grep -vc '^#' "$work/gm3.metrics") and $(grep -vc '^#' "$work/gm4.metrics") samples); gm3 fail_close_drop $m_fc, gm4 tbar_duplicate $m_dup, tbar_late $m_late as the control socket says; gm3's permit 192.168.0.0/16 hit $m_hits times"

# ---- 3. 50 packets/s across two TEK rekeys ----
acc0=$(stat gm4 tbar_accepted)
in_ns h3 ping -c 1250 -i 0.02 -W 2 192.168.4.10 >"$work/ping.rekey" 2>&1 &
flow=$!
in_ns h3 ping -6 -c 1250 -i 0.02 -W 2 $H4_6 >"$work/ping6.rekey" 2>&1 &
flow6=$!
wait_until 30 "the 50 pps flow reaching gm4" '[ $(( $(stat gm4 tbar_accepted) - acc0 )) -ge 50 ]'
for r in 1 2; do
  was=$(field gm3 "s['data_path']['sending_spi']")
  in_ns ks "$CTL" ks rekey GET_VPN --socket "$work/ks.sock" >"$work/rekey.out" 2>&1 || fail "ks rekey: $(cat "$work/rekey.out")"
  # Both members send on the new TEK once its activation delay is over.
  for g in gm3 gm4; do
    wait_until 30 "rekey $r: $g sending on the new TEK" \
      '[ "$(field $g "s[\"data_path\"][\"sending_spi\"]")" != "$was" ]'
  done
done
wait $flow
wait $flow6
got=$(grep -o '[0-9]* packets transmitted, [0-9]* received' "$work/ping.rekey")
case "$got" in "1250 packets transmitted, 1250 received") ;; *) fail "50 pps across two rekeys: $got" ;; esac
got6=$(grep -o '[0-9]* packets transmitted, [0-9]* received' "$work/ping6.rekey")
case "$got6" in "1250 packets transmitted, 1250 received") ;; *) fail "50 pps IPv6 across two rekeys: $got6" ;; esac
spi2=$(field gm3 "s['data_path']['sending_spi']")
[ "$spi2" != "$spi" ] && [ "$spi2" = "$(field gm4 "s['data_path']['sending_spi']")" ] ||
  fail "after two rekeys gm3 sends on $spi2, gm4 on $(field gm4 "s['data_path']['sending_spi']") (was $spi)"
seen=$(grep -c 'sending on TEK SPI' "$work/gm3.log")
[ "$seen" -ge 3 ] || fail "gm3 switched its sending TEK $seen times, expected 3 (first TEK and two rekeys)"
# gm4 decrypted 1250 echo requests of each family: every one's stamp checked.
acc=$(( $(stat gm4 tbar_accepted) - acc0 ))
[ $acc -ge 2500 ] || fail "gm4 decrypted 1250 IPv4 and 1250 IPv6 echo requests but tbar_accepted grew by $acc"
say "3 50 pps h3 -> h4 in each family at once across two rekeys: IPv4 $got, IPv6 $got6, 0 lost; gm4 tbar_accepted +$acc; members moved $spi -> $spi2"

# Pings from NODE until the process PID ends (replay.py waiting to catch a
# packet: a fixed count raced a replay.py that TCG started late); PID's status.
ping_until() { # PID NODE PING-ARGS...
  pu_pid=$1 pu_node=$2
  shift 2
  in_ns "$pu_node" ping -i 0.3 -W 2 "$@" >/dev/null 2>&1 &
  pu_ping=$!
  pu_rc=0
  wait "$pu_pid" || pu_rc=$?
  kill "$pu_ping" 2>/dev/null
  wait "$pu_ping" 2>/dev/null
  return $pu_rc
}

# ---- 6. an unauthorized member ----
grep -q "refused\|not authorized\|NOT_AUTHORIZED\|AUTHORIZATION" "$work/gm5.log" ||
  fail "gm5 was not refused at registration; its log: $(tail -5 "$work/gm5.log")"
[ "$(field gm5 "s['state']")" != registered ] || fail "gm5 registered although it is not authorized"
[ -z "$(ip -n "$(ns gm5)" xfrm state)" ] || fail "gm5 holds XFRM states: $(ip -n "$(ns gm5)" xfrm state | grep -c '^src')"
nostates0=$(xfrm_stat gm5 XfrmInNoStates)
in_ns r2 python3 "$here/replay.py" gm4 192.168.3.10 192.168.4.10 --out gm5 --dst-mac "$(mac gm5 wan0)" \
  --set-dst 169.254.77.3 >"$work/replay6.out" 2>&1 &
offer=$!
ping_until $offer h3 192.168.4.10 || fail "offering group ESP to gm5: $(cat "$work/replay6.out")"
wait_until 5 "gm5's ESP input seeing the group's packet" '[ $(xfrm_stat gm5 XfrmInNoStates) -gt $nostates0 ]'
nostates=$(( $(xfrm_stat gm5 XfrmInNoStates) - nostates0 ))
[ $nostates -ge 1 ] || fail "gm5's ESP input did not see the group's packet (XfrmInNoStates +$nostates)"
nostates0=$(xfrm_stat gm5 XfrmInNoStates)
in_ns r2 python3 "$here/replay.py" gm4 $H3_6 $H4_6 --out gm5 --dst-mac "$(mac gm5 wan0)" \
  --set-dst fd00:c0e1:77::3 >"$work/replay6.out" 2>&1 &
offer=$!
ping_until $offer h3 -6 $H4_6 || fail "offering the group's IPv6 ESP to gm5: $(cat "$work/replay6.out")"
wait_until 5 "gm5's ESP input seeing the group's IPv6 packet" '[ $(xfrm_stat gm5 XfrmInNoStates) -gt $nostates0 ]'
nostates6=$(( $(xfrm_stat gm5 XfrmInNoStates) - nostates0 ))
say "6 gm5 refused at registration, no SA; the group's ESP offered to its ESP input: XfrmInNoStates +$nostates (IPv4), +$nostates6 (IPv6), nothing decrypted"

# gm4 drops IPv6 ESP of an SPI it does not hold, and clear IPv6 its ACL
# protects, on arrival.
unknown0=$(stat gm4 esp_unknown_drop) clear0=$(stat gm4 clear_drop)
in_ns r2 python3 "$here/replay.py" gm4 $H3_6 $H4_6 --set-spi 0x0c0e1bad >"$work/replay7.out" 2>&1 &
offer=$!
ping_until $offer h3 -6 $H4_6 || fail "sending IPv6 ESP of an unknown SPI to gm4: $(cat "$work/replay7.out")"
in_ns r2 python3 "$here/replay.py" gm4 $H3_6 $H4_6 --clear-udp --dst-mac "$(mac gm4 wan0)" >>"$work/replay7.out" 2>&1 ||
  fail "sending clear IPv6 to gm4: $(cat "$work/replay7.out")"
wait_until 5 "gm4 counting the unknown SPI and the clear datagram" \
  '[ $(stat gm4 esp_unknown_drop) -gt $unknown0 ] && [ $(stat gm4 clear_drop) -gt $clear0 ]'
say "6 gm4: IPv6 ESP of SPI 0x0c0e1bad dropped (esp_unknown_drop +$(( $(stat gm4 esp_unknown_drop) - unknown0 ))), clear IPv6 $H3_6 -> $H4_6 dropped (clear_drop +$(( $(stat gm4 clear_drop) - clear0 )))"

# ---- 5b. fail-close after kill -9 ----
kill -9 "$(cat "$work/gm3.pid")"
wait "$(cat "$work/gm3.pid")" 2>/dev/null
[ -z "$(ip netns pids "$(ns gm3)")" ] || fail "gm3 survived kill -9"
# Until the lease (5 s) runs out, gm3's programs still steer into the SAs
# it left; then the fail-close ACL holds and the probe is dropped.
wait_until 20 "gm3's lease running out after kill -9" '! in_ns h3 ping -c 1 -W 1 192.168.4.10 >/dev/null 2>&1'
capture_r2
in_ns h3 ping -c 3 -i 0.3 -W 1 192.168.4.10 >"$work/ping" 2>&1 && fail "h3 -> h4 got through with gm3 killed"
in_ns h3 ping -6 -c 3 -i 0.3 -W 1 $H4_6 >"$work/ping" 2>&1 && fail "h3 -> h4 (IPv6) got through with gm3 killed"
capture_stop killed
leaked=$(grep -E '192\.168\.|2001:db8:(3|4|33)::' "$work/killed.txt")
[ -z "$leaked" ] || fail "with gm3 killed, r2 saw:
$leaked"
say "5b gm3 killed (kill -9): h3 -> h4 dropped after the lease in both families, r2 saw nothing of it"
start gm3 "$GM"
wait_for gm3 "s['data_path']['state']" active "gm3 coming back"
in_ns h3 ping -c 3 -i 0.3 -W 3 192.168.4.10 >"$work/ping" 2>&1 || fail "h3 -> h4 after gm3's restart: $(tail -2 "$work/ping")"
in_ns h3 ping -6 -c 3 -i 0.3 -W 3 $H4_6 >"$work/ping" 2>&1 || fail "h3 -> h4 (IPv6) after gm3's restart: $(tail -2 "$work/ping")"
say "5b gm3 restarted: registered again, h3 -> h4 flows in both families"

# ---- a clean stop leaves the host as it was ----
kill -TERM "$(cat "$work/gm4.pid")"
wait "$(cat "$work/gm4.pid")" 2>/dev/null
left=$( {
  ip -n "$(ns gm4)" xfrm state
  ip -n "$(ns gm4)" xfrm policy
  tc -n "$(ns gm4)" filter show dev wan0 ingress
  tc -n "$(ns gm4)" filter show dev wan0 egress
  tc -n "$(ns gm4)" filter show dev lan0 ingress
  ip -n "$(ns gm4)" link show wan0 | grep -o 'xdp[a-z]*'
  ip -n "$(ns gm4)" addr show dev lo | grep -oE '169\.254\.77\.[0-9]*|fd00:c0e1:77::[0-9]*'
  ip -n "$(ns gm4)" route show 169.254.77.2
  ip -n "$(ns gm4)" -6 route show fd00:c0e1:77::2
  ip -n "$(ns gm4)" neigh show dev wan0 nud permanent
} 2>&1)
[ -z "$left" ] || fail "gm4 stopped (SIGTERM) but left behind:
$left"
grep -q "data path removed from the kernel" "$work/gm4.log" || fail "gm4 did not log its clean stop"
say "clean stop (SIGTERM) of gm4: no XFRM state or policy, tc filter, XDP program, anchor address or route left"

say "PASS"
