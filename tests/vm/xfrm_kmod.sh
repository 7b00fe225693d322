#!/bin/sh
# vm.xfrm_kmod: covey's own XFRM kernel boundary (kmod-free/) on a kernel
# with ESP. Run inside the VM:
#   tests/vm/run-in-vm -- sh tests/vm/xfrm_kmod.sh [OUTDIR]
# with COVEY_BUILD set to a build tree (ctest sets it).
#
#   hA 192.168.31.10 -- A -- R (transit, no keys) -- B -- hB 192.168.32.10
#     192.168.31.1 | 10.99.1.1   10.99.1.254 | 10.99.2.254   10.99.2.2 | 192.168.32.1
#
# 1. `covey-gm --probe` must report everything present (exit 0) and leave
#    no link, namespace, state, policy or BPF program behind.
# 2. covey-xfrm-test (the library from a shell) installs a TEK's pair of
#    group states (one SPI and reqid: out LOCAL -> GROUP, in GROUP -> IN,
#    replay window 0) and the out/in/fwd policies in A and B. Anchors are
#    the GMs' own WAN addresses, so no address rewrite is needed here; a
#    two-instruction tc program on each GM's LAN port stands in for covey's
#    classifier and sets the steering mark. Pings between hA and hB cross R
#    as ESP with that one SPI both ways; A's own unmarked ping crosses in
#    clear (the policies match the mark only). Then once more with 3DES +
#    HMAC-SHA1-96 after a flush.
# 3. Ownership: foreign SAs and policies added with `ip xfrm` (covey's
#    reqid without its mark, its mark without its reqid) survive covey's
#    flushes; a foreign state that shadows covey's own in the kernel's
#    lookup makes the flush refuse (and say why) instead of guessing.
# 4. Refusals: a key of the wrong length is refused by the library with the
#    lengths; the kernel's refusals (a bad key length behind the library's
#    back, a duplicate SA) come back with the SA and the kernel's words.
# 5. Cost and expiries: updating or deleting one of covey's states or
#    policies is one lookup (GETSA, GETPOLICY) and one change by the same
#    key, never a dump; foreign states with covey's SPI and destinations
#    but another mark survive, one without a mark that the kernel's lookup
#    reaches first is refused by name. covey-xfrm-test watch-expire hears
#    the kernel expire covey's states (a 3 s hard lifetime) and tells a
#    foreign state's expiry apart.
#
# Under TCG every exec costs a noticeable fraction of a second (binaries come
# over 9p), so commands for one namespace go through one `ip -batch`.
set -u

out=${1:-${COVEY_VM_OUT:-}}
build=${COVEY_BUILD:-}
HA=cvm-kmod-ha
A=cvm-kmod-a
R=cvm-kmod-r
B=cvm-kmod-b
HB=cvm-kmod-hb
work=$(mktemp -d /tmp/covey-xfrm-kmod.XXXXXX)
NAME=xfrm_kmod
. "$(dirname "$0")/lib.sh"

say() { echo "xfrm_kmod: $*"; }
cleanup() {
  [ -n "$tcpdump_pid" ] && kill "$tcpdump_pid" 2>/dev/null
  for ns in $HA $A $R $B $HB; do ip netns del $ns 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

[ -n "$build" ] || fail "COVEY_BUILD is not set (the build tree with covey-gm and covey-xfrm-test)"
GM=$build/userspace/apps/covey-gm
XT=$build/tests/vm/covey-xfrm-test
for f in "$GM" "$XT"; do [ -x "$f" ] || fail "$f is not built (make -C $build covey-gm covey-xfrm-test)"; done
for cmd in ip tc tcpdump ping bpftool clang; do
  command -v $cmd >/dev/null || fail "$cmd is not installed (tools/install-deps.sh installs it)"
done
say "kernel $(uname -r)"

# ---- 1. the probe ----
snapshot() {
  {
    ip -o link | sed 's/^[0-9]*: //; s/ link\/.*//'
    ls /run/netns 2>/dev/null
    ip xfrm state
    ip xfrm policy
    bpftool prog show 2>/dev/null | grep -c '^[0-9]*:' | sed 's/^/bpf programs: /'
  } >"$1"
}
snapshot "$work/before"
"$GM" --probe >"$work/probe.txt" 2>&1
probe_rc=$?
sed 's/^/xfrm_kmod: probe: /' "$work/probe.txt"
[ $probe_rc = 0 ] || fail "covey-gm --probe exited $probe_rc; missing: $(grep -E '^  (MISSING|untested)' "$work/probe.txt" | grep -v optional | sed 's/^ *//' | tr '\n' ';')"
grep -q "^verdict: this kernel has everything" "$work/probe.txt" || fail "the probe exited 0 without its verdict line"
# Programs are freed after an RCU grace period: give them a moment.
i=0
while :; do
  snapshot "$work/after"
  cmp -s "$work/before" "$work/after" && break
  i=$((i + 1))
  [ $i -le 20 ] || fail "the probe left something behind:
$(diff "$work/before" "$work/after")"
  sleep 0.1
done
say "probe: exit 0, $(grep -c '^  ok' "$work/probe.txt") items ok; nothing left behind (links, namespaces, XFRM, BPF programs unchanged)"

# ---- topology ----
for ns in $HA $A $R $B $HB; do ip netns add $ns || fail "cannot create namespace $ns"; done
ip link add va netns $A type veth peer name ra netns $R &&
  ip link add vb netns $B type veth peer name rb netns $R &&
  ip link add la netns $A type veth peer name eth0 netns $HA &&
  ip link add lb netns $B type veth peer name eth0 netns $HB || fail "cannot create the veth pairs"
batch $A topology <<EOF
addr add 10.99.1.1/24 dev va
addr add 192.168.31.1/24 dev la
link set lo up
link set va up
link set la up
route add 10.99.2.0/24 via 10.99.1.254
route add 192.168.32.0/24 via 10.99.1.254 src 192.168.31.1
EOF
batch $B topology <<EOF
addr add 10.99.2.2/24 dev vb
addr add 192.168.32.1/24 dev lb
link set lo up
link set vb up
link set lb up
route add 10.99.1.0/24 via 10.99.2.254
route add 192.168.31.0/24 via 10.99.2.254 src 192.168.32.1
EOF
# R knows every route, as the lab's transit router does: whatever leaks in
# clear would be delivered, so the capture is what decides.
batch $R topology <<EOF
addr add 10.99.1.254/24 dev ra
addr add 10.99.2.254/24 dev rb
link set lo up
link set ra up
link set rb up
route add 192.168.31.0/24 via 10.99.1.1
route add 192.168.32.0/24 via 10.99.2.2
EOF
batch $HA topology <<EOF
addr add 192.168.31.10/24 dev eth0
link set lo up
link set eth0 up
route add default via 192.168.31.1
EOF
batch $HB topology <<EOF
addr add 192.168.32.10/24 dev eth0
link set lo up
link set eth0 up
route add default via 192.168.32.1
EOF
for ns in $A $R $B; do
  ip netns exec $ns sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward' || fail "cannot enable forwarding in $ns"
done

# The stand-in for covey's classifier: every packet entering a GM from its
# LAN gets the steering mark (skb->mark is the third u32 of __sk_buff).
for m in 0xe00 0xd00; do
  cat >"$work/mark.c" <<EOF
struct __sk_buff { unsigned int len, pkt_type, mark; };
__attribute__((section("tc"), used)) int steer(struct __sk_buff *skb) { skb->mark = $m; return 0; }
char _license[] __attribute__((section("license"), used)) = "GPL";
EOF
  clang -O2 -target bpf -c "$work/mark.c" -o "$work/mark$m.o" 2>"$work/cc.err" ||
    fail "clang -target bpf: $(head -3 "$work/cc.err")"
done
steer() { # MARK: on both GMs' LAN ports
  for gw in "$A la" "$B lb"; do
    set -- "$1" $gw
    tc -n "$2" -batch - >"$work/tc.out" 2>&1 <<EOF || fail "tc in $2: $(tail -2 "$work/tc.out")"
qdisc replace dev $3 clsact
filter replace dev $3 ingress pref 1 handle 1 bpf direct-action obj $work/mark$1.o sec tc
EOF
  done
}

# Throwaway keys, never printed: `keyfile FILE ENC_BYTES AUTH_BYTES`.
keyfile() {
  od -An -v -tx1 -w"$2" -N"$2" /dev/urandom | tr -d ' ' >"$1"
  od -An -v -tx1 -w"$3" -N"$3" /dev/urandom | tr -d ' ' >>"$1"
}
hexkey() { od -An -v -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
xt() { # NS ARGS...: covey-xfrm-test in NS, output in $work/xt.out
  ns=$1
  shift
  ip netns exec "$ns" "$XT" "$@" >"$work/xt.out" 2>&1
}
xt_ok() { xt "$@" || fail "covey-xfrm-test $2 in $1 failed: $(cat "$work/xt.out")"; }

# ---- 3a. foreign entries, before covey starts ----
batch $A "foreign SAs and policies (ip xfrm)" <<EOF
xfrm state add src 10.99.7.1 dst 10.99.7.2 proto esp spi 0xf0000001 reqid 0xc0e0fff0 mode tunnel enc cbc(aes) 0x$(hexkey 16) auth-trunc hmac(sha1) 0x$(hexkey 20) 96
xfrm state add src 10.99.9.9 dst 10.99.9.8 proto esp spi 0xf0000002 reqid 77 mark 0xe00 mask 0xf00 mode tunnel enc cbc(aes) 0x$(hexkey 16) auth-trunc hmac(sha1) 0x$(hexkey 20) 96
xfrm policy add src 10.200.0.0/16 dst 10.201.0.0/16 dir out tmpl src 10.99.7.1 dst 10.99.7.2 proto esp reqid 0xc0e0fff0 mode tunnel
xfrm policy add src 10.202.0.0/16 dst 10.203.0.0/16 dir out mark 0xe00 mask 0xf00 tmpl src 10.99.9.9 dst 10.99.9.8 proto esp reqid 77 mode tunnel
EOF
foreign() { ip -n $A xfrm state | grep -c '^src 10\.99\.[79]\.'; }
foreign_pol() { ip -n $A xfrm policy | grep -c '^src 10\.20[02]\.'; }
coveys_left() {
  ip -n $A xfrm state | grep '^src' | grep -v '^src 10\.99\.[79]\.'
  ip -n $A xfrm policy | grep '^src' | grep -v '^src 10\.20[02]\.'
  ip -n $B xfrm state
  ip -n $B xfrm policy
}
[ "$(foreign)" = 2 ] && [ "$(foreign_pol)" = 2 ] || fail "the foreign entries did not go in"
# What a starting GM does: remove leftovers of its own, nothing else.
xt_ok $A flush
grep -q "deleted 0 policies and 0 states; left 2 foreign states and 2 foreign policies alone" "$work/xt.out" ||
  fail "startup flush with nothing of covey's: $(cat "$work/xt.out")"
say "startup flush in $A: $(tail -1 "$work/xt.out")"

# ---- 2. a group SA pair and its policies, in A and B ----
install() { # SPI REQID MARK TRANSFORM KEYFILE
  for side in A B; do
    if [ $side = A ]; then ns=$A local=10.99.1.1 peer=10.99.2.2; else ns=$B local=10.99.2.2 peer=10.99.1.1; fi
    xt_ok $ns group-sa --local $local --group $peer --in $local --spi $1 --reqid $2 --mark $3 --transform "$4" --keys "$5"
    xt_ok $ns group-policies --local $local --group $peer --in $local --reqid $2 --mark $3
  done
}
capture_stop() { # NAME: the capture as text in $work/NAME.txt
  sleep 0.3
  kill -INT $tcpdump_pid
  wait $tcpdump_pid
  tcpdump_pid=
  tcpdump -nn -r "$work/wire.pcap" >"$work/$1.txt" 2>/dev/null || fail "cannot read the capture back"
  if [ -n "$out" ]; then mkdir -p "$out" && cp "$work/wire.pcap" "$out/xfrm_kmod_$1.pcap"; fi
}
ping_ok() { # NS TO WHAT [ping options]
  ns=$1 to=$2 what=$3
  shift 3
  ip netns exec "$ns" ping -c 3 -i 0.2 -W 3 "$@" "$to" >"$work/ping" 2>&1 ||
    fail "ping in $ns -> $to ($what) failed: $(tail -2 "$work/ping" | tr '\n' ' ')"
  say "ping in $ns -> $to ($what): $(grep -o '[0-9]* received.*loss' "$work/ping")"
}
# The wire: ESP with the SPI both ways between the GMs' own addresses, no
# LAN address in clear, no other SPI.
check_wire() { # CAPTURE SPI
  clear=$(grep -E "192\.168\.3[12]\." "$work/$1.txt")
  [ -z "$clear" ] || fail "LAN traffic crossed R in clear:
$clear"
  for dir in "10.99.1.1 > 10.99.2.2" "10.99.2.2 > 10.99.1.1"; do
    grep -q "$dir: ESP(spi=$2," "$work/$1.txt" || fail "no ESP with SPI $2 for $dir crossed R; R saw:
$(head -20 "$work/$1.txt")"
  done
  other=$(grep -o 'ESP(spi=0x[0-9a-f]*' "$work/$1.txt" | grep -v "spi=$2\$" | sort -u)
  [ -z "$other" ] || fail "ESP with another SPI crossed R: $other"
  say "R saw $(wc -l <"$work/$1.txt") packets: $(grep -c "ESP(spi=$2," "$work/$1.txt") ESP with SPI $2, both directions, no LAN address in clear"
}

S1=0xc0e5a001 R1=0xc0e00001 M1=0xe00/0xf00
keyfile "$work/k1" 32 32
install $S1 $R1 $M1 "esp-aes 256 esp-sha256-hmac" "$work/k1"
xt_ok $A list
say "covey's entries in $A:"
sed 's/^/xfrm_kmod:   /' "$work/xt.out"
[ "$(grep -c "^covey ESP SPI $S1 .* replay-window 0" "$work/xt.out")" = 2 ] ||
  fail "expected covey's two states with SPI $S1 and replay window 0"
grep -q "^covey ESP SPI $S1 10.99.1.1 -> 10.99.2.2 reqid $R1 mark 0xe00/0xf00 cbc(aes)/hmac(sha256) trunc 128" "$work/xt.out" ||
  fail "the outbound state is not LOCAL -> GROUP with the steering mark and a 128-bit ICV"
grep -q "^covey ESP SPI $S1 10.99.2.2 -> 10.99.1.1 reqid $R1 mark 0x0/0xf00" "$work/xt.out" ||
  fail "the inbound state is not GROUP -> IN"
[ "$(grep -c '^covey policy' "$work/xt.out")" = 3 ] || fail "expected covey's out, in and fwd policies"
grep -q "^foreign: 2 states, 2 policies" "$work/xt.out" || fail "list miscounts the foreign entries"
# The kernel's own view of the same state.
ip -n $A xfrm state get src 10.99.1.1 dst 10.99.2.2 proto esp spi $S1 mark 0xe00 mask 0xf00 >"$work/state" 2>&1 ||
  fail "ip xfrm state get: $(cat "$work/state")"
grep -q "auth-trunc hmac(sha256) 0x[0-9a-f]* 128" "$work/state" && grep -q "enc cbc(aes)" "$work/state" &&
  grep -q "replay-window 0" "$work/state" && grep -q "af-unspec" "$work/state" ||
  fail "ip xfrm shows another state than covey asked for: $(sed -E 's/0x[0-9a-f]{16,}/<key>/g' "$work/state" | tr '\n' ' ')"

steer 0xe00
capture_start $R ra
ping_ok $HA 192.168.32.10 "AES-256-CBC + HMAC-SHA-256-128 group SA"
ping_ok $HB 192.168.31.10 "same SA, started behind B"
capture_stop marked
check_wire marked $S1

# A's own ping carries no steering mark: no policy matches it and the
# request crosses R in clear (B's in and fwd policies are level use, so
# it passes); hB's reply is marked at B's LAN port and comes back as ESP.
capture_start $R ra
ping_ok $A 192.168.32.10 "A's own traffic, no steering mark" -I 192.168.31.1
capture_stop unmarked
grep -q "192.168.31.1 > 192.168.32.10: ICMP echo request" "$work/unmarked.txt" ||
  fail "an unmarked ping did not cross R in clear; policies must match the mark only. R saw: $(head -5 "$work/unmarked.txt")"
grep -q "192.168.32.10 > 192.168.31.1: ICMP" "$work/unmarked.txt" && fail "the marked reply crossed R in clear"
grep -q "10.99.2.2 > 10.99.1.1: ESP(spi=$S1," "$work/unmarked.txt" || fail "the marked reply did not come back as ESP"
say "unmarked request crossed R in clear, the marked reply as ESP: the policies match the steering mark only"

for ns in $A $B; do
  errs=$(ip netns exec $ns cat /proc/net/xfrm_stat | awk '$2 != 0 {printf "%s=%s ", $1, $2}')
  [ -z "$errs" ] || fail "XFRM error counters in $ns: $errs"
done
say "no XFRM error counter moved in $A or $B"

# UPDSA: the same states, now with a hard lifetime.
xt_ok $A group-sa --update --lifetime 3600 --local 10.99.1.1 --group 10.99.2.2 --in 10.99.1.1 --spi $S1 --reqid $R1 --mark $M1 --keys "$work/k1"
ip -n $A -s xfrm state get src 10.99.1.1 dst 10.99.2.2 proto esp spi $S1 mark 0xe00 mask 0xf00 | grep -q "hard 3600(sec)" ||
  fail "XFRM_MSG_UPDSA did not set the hard lifetime"
ping_ok $HA 192.168.32.10 "after the update"
say "update (XFRM_MSG_UPDSA) set a 3600 s hard lifetime on both states; traffic still flows"

# ---- 4. refusals ----
keyfile "$work/short" 16 32
if xt $A group-sa --local 10.99.1.1 --group 10.99.2.2 --in 10.99.1.1 --spi 0xc0e5a0ff --reqid $R1 --keys "$work/short"; then
  fail "a 16-byte key for esp-aes 256 was accepted"
fi
grep -q "TEK SPI 0xc0e5a0ff: AES-256-CBC with HMAC-SHA-256-128 needs a 32-byte encryption key, the TEK has 16 bytes" "$work/xt.out" ||
  fail "the library's key-length refusal says: $(cat "$work/xt.out")"
say "library refusal: $(cat "$work/xt.out")"

# Behind the library's back (add-sa sends any key): AES with a 20-byte key.
keyfile "$work/bad" 20 32
if xt $A add-sa --src 10.99.1.1 --dst 10.99.2.2 --spi 0xc0e5a0fe --reqid $R1 --enc 'cbc(aes)' --keys "$work/bad"; then
  fail "the kernel accepted AES with a 20-byte key"
fi
grep -qE "^covey-xfrm-test: kernel refused XFRM_MSG_NEWSA ESP SPI 0xc0e5a0fe 10\.99\.1\.1 -> 10\.99\.2\.2 reqid $R1 mark 0xe00/0xf00 cbc\(aes\)/hmac\(sha256\): (\".+\" \()?E[A-Z0-9]+: [A-Za-z ]+" "$work/xt.out" ||
  fail "the kernel's refusal is not reported with the SA and the kernel's words: $(cat "$work/xt.out")"
say "kernel refusal (bad key length): $(cat "$work/xt.out")"
if grep -qE "[0-9a-f]{32}" "$work/xt.out"; then fail "a refusal printed something that looks like key material"; fi

if xt $A group-sa --local 10.99.1.1 --group 10.99.2.2 --in 10.99.1.1 --spi $S1 --reqid $R1 --mark $M1 --keys "$work/k1"; then
  fail "a duplicate SA was accepted"
fi
grep -q "kernel refused XFRM_MSG_NEWSA ESP SPI $S1 10.99.1.1 -> 10.99.2.2 .*EEXIST: File exists" "$work/xt.out" ||
  fail "the duplicate's refusal says: $(cat "$work/xt.out")"
say "kernel refusal (duplicate): $(cat "$work/xt.out")"

# ---- 3b. ownership ----
if xt $A del-sa --dst 10.99.9.8 --spi 0xf0000002 --mark 0xe00/0xf00; then fail "covey deleted a foreign SA"; fi
grep -q "is not covey's" "$work/xt.out" || fail "deleting a foreign SA: $(cat "$work/xt.out")"
say "del-sa of a foreign SA that has covey's mark: $(cat "$work/xt.out")"

# A foreign unmarked state with covey's outbound destination and SPI: the
# kernel's DELSA lookup for covey's state would match it too.
batch $A "foreign twin" <<EOF
xfrm state add src 10.99.1.1 dst 10.99.2.2 proto esp spi $S1 reqid 5 mode tunnel enc cbc(aes) 0x$(hexkey 16) auth-trunc hmac(sha1) 0x$(hexkey 20) 96
EOF
if xt $A flush; then fail "flush succeeded although a foreign state shadows covey's"; fi
grep -q "^refused not deleting covey's ESP SPI $S1 10.99.1.1 -> 10.99.2.2 reqid $R1 mark 0xe00/0xf00: .*foreign ESP SPI $S1 10.99.1.1 -> 10.99.2.2 reqid 0x00000005" "$work/xt.out" ||
  fail "flush with a shadowing foreign state: $(cat "$work/xt.out")"
say "flush with a foreign twin: $(grep '^refused' "$work/xt.out")"
say "  $(tail -1 "$work/xt.out")"
# `ip xfrm state get` would face the same ambiguity: read the full list.
outbound_left() { # is covey's outbound state still there?
  xt_ok $A list
  grep -q "^covey ESP SPI $S1 10.99.1.1 -> 10.99.2.2 reqid $R1 mark 0xe00/0xf00" "$work/xt.out"
}
outbound_left || fail "covey's own shadowed state was deleted"
ip -n $A xfrm state | grep -A1 "^src 10.99.1.1 dst 10.99.2.2" | grep -q "spi $S1 reqid 5 " || fail "the foreign twin is gone"
ip -n $A xfrm state delete src 10.99.1.1 dst 10.99.2.2 proto esp spi $S1 || fail "cannot delete the foreign twin by hand"
outbound_left || fail "ip xfrm's delete of the twin took covey's state instead"
xt_ok $A flush
say "flush in $A: $(tail -1 "$work/xt.out")"
grep -q "deleted 0 policies and 1 states; left 2 foreign states and 2 foreign policies alone" "$work/xt.out" ||
  fail "the second flush should remove just the formerly shadowed state"
xt_ok $B flush
say "flush in $B: $(tail -1 "$work/xt.out")"
grep -q "deleted 3 policies and 2 states; left 0 foreign" "$work/xt.out" || fail "flush in $B"
[ "$(foreign)" = 2 ] && [ "$(foreign_pol)" = 2 ] ||
  fail "covey's flush removed a foreign entry: $(ip -n $A xfrm state | grep '^src'; ip -n $A xfrm policy | grep '^src')"
left=$(coveys_left)
[ -z "$left" ] || fail "covey's entries survived its flush: $left"
say "the foreign states and policies in $A survived every flush; nothing of covey's is left in $A or $B"

# ---- 2, again: 3DES + HMAC-SHA1-96 ----
S2=0xc0e5d001 R2=0xc0e00002 M2=0xd00/0xf00
keyfile "$work/k2" 24 20
install $S2 $R2 $M2 "esp-3des esp-sha-hmac" "$work/k2"
ip -n $A xfrm state get src 10.99.1.1 dst 10.99.2.2 proto esp spi $S2 mark 0xd00 mask 0xf00 | grep -q "auth-trunc hmac(sha1) 0x[0-9a-f]* 96" ||
  fail "the 3DES state does not carry HMAC-SHA1 truncated to 96 bits"
steer 0xd00
capture_start $R ra
ping_ok $HA 192.168.32.10 "3DES-CBC + HMAC-SHA1-96 group SA"
ping_ok $HB 192.168.31.10 "same SA, started behind B"
capture_stop marked2
check_wire marked2 $S2
for ns in $A $B; do xt_ok $ns flush; done
left=$(coveys_left)
[ -z "$left" ] || fail "covey's entries survived its flush: $left"
[ "$(foreign)" = 2 ] && [ "$(foreign_pol)" = 2 ] || fail "covey's flush removed a foreign entry"

# ---- 5. one lookup and one change per entry; the kernel's expiries ----
S3=0xc0e5e001 R3=0xc0e00003
keyfile "$work/k3" 32 32
xt_ok $A group-sa --local 10.99.1.1 --group 10.99.2.2 --in 10.99.1.1 --spi $S3 --reqid $R3 --keys "$work/k3"
xt_ok $A group-policies --local 10.99.1.1 --group 10.99.2.2 --in 10.99.1.1 --reqid $R3
# Foreign states with covey's SPI and both destinations, mark 0x100/0x100:
# covey's lookups (0xe00 and 0x0 under 0xf00) never match them.
batch $A "foreign states with covey's SPI, another mark" <<EOF
xfrm state add src 10.99.1.1 dst 10.99.2.2 proto esp spi $S3 reqid 6 mark 0x100 mask 0x100 mode tunnel enc cbc(aes) 0x$(hexkey 16) auth-trunc hmac(sha1) 0x$(hexkey 20) 96
xfrm state add src 10.99.2.2 dst 10.99.1.1 proto esp spi $S3 reqid 6 mark 0x100 mask 0x100 mode tunnel enc cbc(aes) 0x$(hexkey 16) auth-trunc hmac(sha1) 0x$(hexkey 20) 96
EOF
same_spi_foreign() { ip -n $A xfrm state | grep -c "spi $S3 reqid 6 "; }
[ "$(same_spi_foreign)" = 2 ] || fail "the foreign states with SPI $S3 did not go in"
xt_ok $A group-sa --update --lifetime 600 --local 10.99.1.1 --group 10.99.2.2 --in 10.99.1.1 --spi $S3 --reqid $R3 --keys "$work/k3"
grep -q "^netlink: 4 requests, 0 dumps" "$work/xt.out" ||
  fail "updating covey's two states should take a GETSA and an UPDSA each and no dump: $(cat "$work/xt.out")"
say "update of covey's two states: $(grep '^netlink' "$work/xt.out")"
ip -n $A -s xfrm state get src 10.99.1.1 dst 10.99.2.2 proto esp spi $S3 mark 0xe00 mask 0xf00 | grep -q "hard 600(sec)" ||
  fail "XFRM_MSG_UPDSA did not reach covey's state"

# A foreign twin without a mark matches covey's lookup and sits first in
# the kernel's chain (newest first): the GETSA answers with it.
batch $A "foreign twin without a mark" <<EOF
xfrm state add src 10.99.1.1 dst 10.99.2.2 proto esp spi $S3 reqid 5 mode tunnel enc cbc(aes) 0x$(hexkey 16) auth-trunc hmac(sha1) 0x$(hexkey 20) 96
EOF
if xt $A del-sa --dst 10.99.2.2 --spi $S3 --mark 0xe00/0xf00; then
  # The kernel's chain had covey's state first after all: the DELSA then
  # reached that one, as the GETSA said.
  xt_ok $A list
  grep -q "^covey ESP SPI $S3 10.99.1.1 -> 10.99.2.2" "$work/xt.out" &&
    fail "del-sa said it deleted covey's outbound state, but it is still there"
  say "del-sa with a foreign twin present: the kernel's lookup reached covey's state first, and only that went"
else
  grep -q "not deleting: ESP SPI $S3 -> 10.99.2.2 mark 0xe00/0xf00: the kernel's lookup reaches the foreign ESP SPI $S3 10.99.1.1 -> 10.99.2.2 reqid 0x00000005 first" "$work/xt.out" ||
    fail "del-sa with a shadowing foreign twin: $(cat "$work/xt.out")"
  say "del-sa with a foreign twin: $(grep '^covey-xfrm-test' "$work/xt.out")"
  ip -n $A xfrm state delete src 10.99.1.1 dst 10.99.2.2 proto esp spi $S3 || fail "cannot delete the foreign twin by hand"
  xt_ok $A del-sa --dst 10.99.2.2 --spi $S3 --mark 0xe00/0xf00
  grep -q "^netlink: 2 requests, 0 dumps" "$work/xt.out" ||
    fail "deleting covey's outbound state should take one GETSA and one DELSA and no dump: $(cat "$work/xt.out")"
  say "delete of covey's outbound state: $(grep '^netlink' "$work/xt.out")"
  ip -n $A xfrm state add src 10.99.1.1 dst 10.99.2.2 proto esp spi $S3 reqid 5 mode tunnel enc 'cbc(aes)' 0x$(hexkey 16) auth-trunc 'hmac(sha1)' 0x$(hexkey 20) 96 ||
    fail "cannot put the foreign twin back"
fi
ip -n $A xfrm state | grep -q "spi $S3 reqid 5 " || fail "covey's delete took the foreign twin"
xt_ok $A del-sa --dst 10.99.1.1 --spi $S3 --mark 0x0/0xf00
grep -q "^netlink: 2 requests, 0 dumps" "$work/xt.out" ||
  fail "deleting covey's inbound state should take one GETSA and one DELSA and no dump: $(cat "$work/xt.out")"
say "delete of covey's inbound state: $(grep '^netlink' "$work/xt.out")"
[ "$(same_spi_foreign)" = 2 ] || fail "covey's delete removed a foreign state with its SPI: $(ip -n $A xfrm state | grep "spi $S3")"
ip -n $A xfrm state | grep -q "spi $S3 reqid $R3 " && fail "covey's states with SPI $S3 survived its deletes"
xt_ok $A group-policies --delete --local 10.99.1.1 --group 10.99.2.2 --in 10.99.1.1 --reqid $R3
grep -q "^netlink: 6 requests, 0 dumps" "$work/xt.out" ||
  fail "deleting covey's three policies should take a GETPOLICY and a DELPOLICY each: $(cat "$work/xt.out")"
say "delete of covey's three policies: $(grep '^netlink' "$work/xt.out")"
[ "$(foreign_pol)" = 2 ] || fail "covey's policy delete removed a foreign policy"
say "the foreign states with covey's SPI (another mark; no mark) survived covey's update and deletes"
batch $A "remove the foreign states with SPI $S3" <<EOF
xfrm state delete src 10.99.1.1 dst 10.99.2.2 proto esp spi $S3
xfrm state delete src 10.99.1.1 dst 10.99.2.2 proto esp spi $S3 mark 0x100 mask 0x100
xfrm state delete src 10.99.2.2 dst 10.99.1.1 proto esp spi $S3 mark 0x100 mask 0x100
EOF

# The kernel's expiries: covey's pair with a 3 s hard lifetime, and a
# foreign state with 2 s.
S4=0xc0e5f001 R4=0xc0e00004
keyfile "$work/k4" 32 32
ip netns exec $A "$XT" watch-expire --count 2 --timeout 60 >"$work/watch.out" 2>&1 &
watch_pid=$!
i=0
until grep -q "^watching XFRMNLGRP_EXPIRE" "$work/watch.out"; do
  i=$((i + 1))
  [ $i -le 100 ] || fail "watch-expire did not subscribe: $(cat "$work/watch.out")"
  sleep 0.1
done
batch $A "a foreign state with a 2 s hard lifetime" <<EOF
xfrm state add src 10.99.7.1 dst 10.99.7.3 proto esp spi 0xf0000003 reqid 6 mode tunnel enc cbc(aes) 0x$(hexkey 16) auth-trunc hmac(sha1) 0x$(hexkey 20) 96 limit time-hard 2
EOF
xt_ok $A group-sa --lifetime 3 --local 10.99.1.1 --group 10.99.2.2 --in 10.99.1.1 --spi $S4 --reqid $R4 --keys "$work/k4"
wait $watch_pid || fail "watch-expire: $(cat "$work/watch.out")"
sed 's/^/xfrm_kmod:   /' "$work/watch.out"
for st in "10.99.1.1 -> 10.99.2.2 reqid $R4 mark 0xe00/0xf00" "10.99.2.2 -> 10.99.1.1 reqid $R4 mark 0x0/0xf00"; do
  grep -q "^kernel expired SA spi $S4 (hard): ESP SPI $S4 $st\$" "$work/watch.out" ||
    fail "no hard expiry of covey's ESP SPI $S4 $st was heard"
done
grep -q "^not covey's: kernel expired SA spi 0xf0000003 (hard)" "$work/watch.out" ||
  fail "the foreign state's expiry was not told apart: $(cat "$work/watch.out")"
ip -n $A xfrm state | grep -q "spi $S4 " && fail "the kernel announced the hard expiry but the state is still there"
say "the kernel's hard expiries of covey's two states were heard, the foreign one's told apart"
[ "$(foreign)" = 2 ] && [ "$(foreign_pol)" = 2 ] || fail "a foreign entry went missing"
left=$(coveys_left)
[ -z "$left" ] || fail "covey's entries were left: $left"
say "PASS"
