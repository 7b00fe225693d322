#!/bin/sh
# The VM tier's smoke test: does this kernel carry ESP the way covey will use
# it? Run inside the VM:  tests/vm/run-in-vm -- sh tests/vm/smoke_esp.sh [OUTDIR]
#
#   A (LANs 192.168.31.1, .41.1) --veth-- R (transit, no keys) --veth-- B (LANs .32.1, .42.1)
#      10.99.1.1                    10.99.1.254 | 10.99.2.254              10.99.2.2
#
# Static XFRM tunnel-mode SAs and policies between A and B for two LAN pairs:
# AES-256-CBC + HMAC-SHA-256-128 (31 <-> 32) and 3DES + HMAC-SHA-1-96
# (41 <-> 42). Pings between the LANs must succeed; the capture on R must
# show ESP with each SA's SPI and no LAN address in clear; every SA's own
# counters must have moved, with no XFRM error. Then it reports (never fails
# on) bpftool, tc and XDP. OUTDIR (default $COVEY_VM_OUT, which ctest.sh
# sets), if given, receives R's capture.
#
# Under TCG every exec costs a noticeable fraction of a second (binaries come
# over 9p), so commands for one namespace go through one `ip -batch`.
set -u

out=${1:-${COVEY_VM_OUT:-}}
A=cvm-smoke-a
R=cvm-smoke-r
B=cvm-smoke-b
work=$(mktemp -d /tmp/covey-smoke-esp.XXXXXX)
NAME=smoke_esp
. "$(dirname "$0")/lib.sh"
cleanup() {
  [ -n "$tcpdump_pid" ] && kill "$tcpdump_pid" 2>/dev/null
  for ns in $A $R $B; do ip netns del $ns 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
# Throwaway keys, never printed: `keys BYTES COUNT` prints COUNT hex keys.
keys() { od -An -v -tx1 -w"$1" -N$(($1 * $2)) /dev/urandom | tr -d ' '; }

echo "smoke_esp: kernel $(uname -r)"
for cmd in ip tcpdump ping; do
  command -v $cmd >/dev/null || fail "$cmd is not installed (tools/install-deps.sh installs it)"
done

# ---- topology ----
for ns in $A $R $B; do ip netns add $ns || fail "cannot create namespace $ns"; done
ip link add va netns $A type veth peer name ra netns $R &&
ip link add vb netns $B type veth peer name rb netns $R || fail "cannot create the veth pairs"
batch $A "topology" <<EOF
link add lan type dummy
addr add 10.99.1.1/24 dev va
addr add 192.168.31.1/24 dev lan
addr add 192.168.41.1/24 dev lan
link set lo up
link set va up
link set lan up
route add 10.99.2.0/24 via 10.99.1.254
route add 192.168.32.0/24 via 10.99.1.254 src 192.168.31.1
route add 192.168.42.0/24 via 10.99.1.254 src 192.168.41.1
EOF
batch $B "topology" <<EOF
link add lan type dummy
addr add 10.99.2.2/24 dev vb
addr add 192.168.32.1/24 dev lan
addr add 192.168.42.1/24 dev lan
link set lo up
link set vb up
link set lan up
route add 10.99.1.0/24 via 10.99.2.254
route add 192.168.31.0/24 via 10.99.2.254 src 192.168.32.1
route add 192.168.41.0/24 via 10.99.2.254 src 192.168.42.1
EOF
batch $R "topology" <<EOF
addr add 10.99.1.254/24 dev ra
addr add 10.99.2.254/24 dev rb
link set lo up
link set ra up
link set rb up
EOF
ip netns exec $R sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward' || fail "cannot enable forwarding on $R"

# ---- SAs and policies, the same on both ends ----
# pair SPI-AB SPI-BA REQID LAN-A LAN-B ENC ENC-KEY AUTH AUTH-KEY TRUNC-BITS: commands for ip -batch
sas() {
  spi_ab=$1 spi_ba=$2 reqid=$3 lan_a=$4 lan_b=$5 enc=$6 enc_bytes=$7 auth=$8 auth_bytes=$9
  shift 9
  trunc=$1
  set -- $(keys $enc_bytes 2) $(keys $auth_bytes 2)
  for ns in $A $B; do
    {
      echo "xfrm state add src 10.99.1.1 dst 10.99.2.2 proto esp spi $spi_ab reqid $reqid mode tunnel enc $enc 0x$1 auth-trunc $auth 0x$3 $trunc"
      echo "xfrm state add src 10.99.2.2 dst 10.99.1.1 proto esp spi $spi_ba reqid $reqid mode tunnel enc $enc 0x$2 auth-trunc $auth 0x$4 $trunc"
      if [ $ns = $A ]; then
        here=$lan_a there=$lan_b local=10.99.1.1 remote=10.99.2.2
      else
        here=$lan_b there=$lan_a local=10.99.2.2 remote=10.99.1.1
      fi
      echo "xfrm policy add src $here dst $there dir out tmpl src $local dst $remote proto esp reqid $reqid mode tunnel"
      for dir in in fwd; do
        echo "xfrm policy add src $there dst $here dir $dir tmpl src $remote dst $local proto esp reqid $reqid mode tunnel"
      done
    } >>"$work/xfrm.$ns"
  done
}
sas 0x0a5e0001 0x0a5e0002 1 192.168.31.0/24 192.168.32.0/24 'cbc(aes)' 32 'hmac(sha256)' 32 128
sas 0x3de50001 0x3de50002 2 192.168.41.0/24 192.168.42.0/24 'cbc(des3_ede)' 24 'hmac(sha1)' 20 96
for ns in $A $B; do batch $ns "ip xfrm state/policy add" <"$work/xfrm.$ns"; done
rm -f "$work"/xfrm.*
echo "smoke_esp: SAs in $A and $B: AES-256-CBC + HMAC-SHA-256-128 SPI 0x0a5e0001 (A->B) 0x0a5e0002 (B->A), 192.168.31.0/24 <-> 192.168.32.0/24"
echo "smoke_esp:                   3DES + HMAC-SHA-1-96            SPI 0x3de50001 (A->B) 0x3de50002 (B->A), 192.168.41.0/24 <-> 192.168.42.0/24"

# ---- traffic, captured on R: the wire ----
capture_start $R ra
ping_ok() { # NS FROM TO WHAT
  ip netns exec "$1" ping -c 3 -i 0.2 -W 3 -I "$2" "$3" >"$work/ping" 2>&1 ||
    fail "ping $2 -> $3 ($4) failed: $(tail -2 "$work/ping" | tr '\n' ' ')"
  echo "smoke_esp: ping $2 -> $3 ($4): $(grep -o '[0-9]* received.*loss' "$work/ping")"
}
ping_ok $A 192.168.31.1 192.168.32.1 "AES-256-CBC SAs"
ping_ok $A 192.168.41.1 192.168.42.1 "3DES SAs"
ping_ok $B 192.168.32.1 192.168.31.1 "AES-256-CBC SAs, started on B"
sleep 0.3
kill -INT $tcpdump_pid
wait $tcpdump_pid
tcpdump_pid=
tcpdump -nn -r "$work/wire.pcap" >"$work/wire.txt" 2>/dev/null || fail "cannot read the capture back"
if [ -n "$out" ]; then mkdir -p "$out" && cp "$work/wire.pcap" "$out/smoke_esp_wire.pcap"; fi

# ---- the wire: ESP with each SPI, no LAN address in clear ----
clear=$(grep -E "192\.168\.[34][12]\." "$work/wire.txt")
[ -z "$clear" ] || fail "LAN traffic crossed R in clear:
$clear"
for spi in 0x0a5e0001 0x0a5e0002 0x3de50001 0x3de50002; do
  n=$(grep -c "ESP(spi=$spi," "$work/wire.txt")
  [ "$n" -gt 0 ] || fail "no ESP packet with SPI $spi crossed R; R saw:
$(head -20 "$work/wire.txt")"
done
echo "smoke_esp: R saw $(wc -l <"$work/wire.txt") packets, no LAN address among them; ESP: $(grep -o 'ESP(spi=0x[0-9a-f]*' "$work/wire.txt" | sort | uniq -c | awk '{printf "%s %s) ", $1, $2}')"

# ---- each SA's own counters, on both ends; the XFRM error counters ----
for ns in $A $B; do
  # ip -s: "proto esp spi 0x0a5e0001(...) ...", then "lifetime current:" and
  # "<bytes>(bytes), <packets>(packets)", then "stats:" and "replay-window N replay N failed N"
  ip -n $ns -s xfrm state | awk '
    $1 == "proto" && $3 == "spi" { spi = $4; sub(/\(.*/, "", spi) }
    /lifetime current:/ { getline; sub(/\(packets\)/, "", $2); packets = $2 }
    /^[ \t]*stats:/ { getline; print spi, packets, $6 }' >"$work/counters"
  for spi in 0x0a5e0001 0x0a5e0002 0x3de50001 0x3de50002; do
    set -- $(awk -v s=$spi '$1 == s {print $2, $3}' "$work/counters")
    [ $# = 2 ] || fail "SA $spi is missing in $ns"
    [ "$1" -gt 0 ] || fail "SA $spi in $ns counted no packets"
    [ "$2" = 0 ] || fail "SA $spi in $ns counted $2 failed packets"
  done
  errs=$(ip netns exec $ns cat /proc/net/xfrm_stat | awk '$2 != 0 {printf "%s=%s ", $1, $2}')
  [ -z "$errs" ] || fail "XFRM error counters in $ns: $errs"
done
echo "smoke_esp: every SA counted packets on both ends; no XFRM error counter moved"

# ---- BPF: reported, not required here ----
report() { echo "smoke_esp: bpf: $1: $2"; }
if command -v bpftool >/dev/null; then
  if bpftool prog show >/dev/null 2>"$work/bt.err"; then report bpftool "ok ($(bpftool version | head -1))"
  else report bpftool "FAILED: $(head -1 "$work/bt.err")"; fi
else report bpftool "not installed"; fi
if command -v clang >/dev/null; then
  cat >"$work/pass.c" <<'EOF'
__attribute__((section("xdp"), used)) int xdp_pass(void *ctx) { return 2; /* XDP_PASS */ }
__attribute__((section("tc"), used)) int tc_ok(void *ctx) { return 0; /* TC_ACT_OK */ }
char _license[] __attribute__((section("license"), used)) = "GPL";
EOF
  if clang -O2 -target bpf -c "$work/pass.c" -o "$work/pass.o" 2>"$work/cc.err"; then
    tc_ok=no xdp_ok=no
    tc -n $A -batch - >"$work/tc.err" 2>&1 <<EOF && tc_ok=yes
qdisc add dev va clsact
filter add dev va ingress bpf direct-action obj $work/pass.o sec tc
filter add dev va egress bpf direct-action obj $work/pass.o sec tc
EOF
    if [ $tc_ok = yes ]; then report "tc clsact ingress+egress attach" ok
    else report "tc clsact attach" "FAILED: $(grep -v '^$' "$work/tc.err" | tail -2 | tr '\n' ' ')"; fi
    ip -n $A link set dev va xdp obj "$work/pass.o" sec xdp >"$work/xdp.err" 2>&1 &&
      ip -n $A link show dev va | grep -q "xdp" && xdp_ok=yes
    if [ $xdp_ok = yes ]; then report "XDP attach (veth, native)" ok
    else report "XDP attach" "FAILED: $(grep -v '^$' "$work/xdp.err" | tail -2 | tr '\n' ' ')"; fi
    if [ $tc_ok = yes ] || [ $xdp_ok = yes ]; then
      if ip netns exec $A ping -c 2 -i 0.2 -W 3 -I 192.168.31.1 192.168.32.1 >/dev/null 2>&1; then
        report "ESP with those programs attached" "ping ok"
      else report "ESP with those programs attached" "ping FAILED"; fi
    fi
  else report "tc/XDP" "not tried: clang -target bpf failed: $(head -1 "$work/cc.err")"; fi
else report "tc/XDP" "not tried: no clang"; fi
echo "smoke_esp: PASS"
