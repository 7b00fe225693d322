#!/bin/sh
# The reference lab with three cooperative key servers: what `make lab-coop`
# shows, on the host when its kernel has what covey's data path needs, else
# inside the VM (tools/lab/make-lab.sh --coop decides).
#   coop-demo.sh [--up] [OUTDIR]
# --up first brings the lab up (lab.sh up --coop, lab.sh wait): ks1, ks2,
# ks3 (priorities 100/90/80) on the KS node at 10.1.12.1, .11, .12 with a
# three-member etcd there, members gm3 and gm4 listing all three. Then:
# waits for a primary and both members' data path; prints `coveyctl ks
# cluster`; h3 pings h4 at 50 packets/s while r2 captures on its link to
# gm3; kill -9 of the primary; waits for a new one; `coveyctl ks rekey` on
# it, until both members send on its TEK; prints `coveyctl ks cluster`
# again, what r2 saw (ESP by SPI with its first and last SEQ, GDOI by key
# server) and the ping's count. The last line is the verdict: exit 0 when
# a secondary took over, its rekey reached both members without either
# registering again, and no ping was lost or crossed r2 in clear.
# OUTDIR (or $COVEY_LAB_OUT) receives r2.pcap and the daemons' logs.
# Environment as lab.sh: COVEY_BUILD, COVEY_LAB_RUN, COVEY_LAB_PREFIX.
#
# POSIX sh, and few commands: under TCG every exec costs 0.1-0.5 s.
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${COVEY_BUILD:-$top/build}
run=${COVEY_LAB_RUN:-/run/covey-lab}
prefix=${COVEY_LAB_PREFIX:-covey-}
ctl=$build/tools/coveyctl/coveyctl
KS=${prefix}ks R2=${prefix}r2 H3=${prefix}h3
H3_ADDR=192.168.3.10 H4_ADDR=192.168.4.10

up=no
if [ "${1:-}" = --up ]; then
  up=yes
  shift
fi
out=${1:-${COVEY_LAB_OUT:-}}
work=$(mktemp -d /tmp/covey-lab-coop.XXXXXX)
tcpdump_pid= ping_pid=
cleanup() {
  [ -n "$tcpdump_pid" ] && kill "$tcpdump_pid" 2>/dev/null
  [ -n "$ping_pid" ] && kill "$ping_pid" 2>/dev/null
  # Whatever happened, the logs and the capture leave with it.
  if [ -n "$out" ]; then
    mkdir -p "$out" && cp "$run"/*.log "$run"/etcd/*.log "$out/" 2>/dev/null
    [ -f "$work/r2.pcap" ] && cp "$work/r2.pcap" "$out/r2.pcap"
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

say() { echo "lab-coop: $*"; }
section() {
  echo
  echo "=== $*"
}
fail() {
  say "FAIL: $*"
  exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

for f in "$ctl" "$build/userspace/apps/covey-gm" "$build/userspace/apps/covey-ks"; do
  [ -x "$f" ] || fail "$f is not built (COVEY_BUILD=$build)"
done
for cmd in ip tcpdump ping etcd etcdctl; do
  command -v $cmd >/dev/null || fail "$cmd is not installed (tools/install-deps.sh installs it)"
done
say "kernel $(uname -r)"

if [ $up = yes ]; then
  bash "$top/tools/lab/lab.sh" up --coop || fail "lab.sh up --coop failed"
  bash "$top/tools/lab/lab.sh" wait || fail "the members did not register"
  say "up: etcd (3 members), ks1 ks2 ks3, r2, gm3, gm4, h3, h4; both members registered"
fi

# A string field of a daemon's status JSON: for a key server, KEY at the
# top of `ks cluster`; for a member, KEY inside "data_path" of `gm status`.
# sed, not python: under TCG python's start alone costs a second.
field() { # NODE KEY
  case $1 in
    ks*) ip netns exec "$KS" "$ctl" ks cluster --json --socket "$run/$1.sock" 2>/dev/null |
      sed -n "s/^  \"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}\$/\1/p" ;;
    *) ip netns exec "$prefix$1" "$ctl" gm status --json --socket "$run/$1.sock" 2>/dev/null |
      sed -n '/^  "data_path": {/,/^  }/p' | sed -n "s/^    \"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}\$/\1/p" ;;
  esac
}
alive() { [ -f "$run/$1.pid" ] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }
primary() { # the primary as the first live key server (other than $1) sees it
  for k in ks1 ks2 ks3; do
    [ "$k" != "${1:-}" ] && alive $k || continue
    field $k primary
    return
  done
}
wait_for() { # SECONDS WHAT CONDITION, polled every half second
  wf_i=0
  until eval "$3"; do
    wf_i=$((wf_i + 1))
    [ $wf_i -le $(($1 * 2)) ] || fail "$2 did not happen within $1 s (logs in $run)"
    sleep 0.5
  done
}

wait_for 60 "the election of a primary" '[ -n "$(primary)" ]'
old=$(primary)
for g in gm3 gm4; do
  wait_for 60 "$g's data path becoming active" "[ \"\$(field $g state)\" = active ]"
done
spi=$(field gm3 sending_spi)
say "primary $old; both members' data path active, sending on TEK SPI $spi"

section "before: coveyctl ks cluster (on ks2)"
ip netns exec "$KS" "$ctl" ks cluster --socket "$run/ks2.sock" 2>&1

# ---- 50 packets/s h3 -> h4 across the failover and a rekey ----
: >"$work/tcpdump.err"
ip netns exec "$R2" tcpdump -i gm3 -nn -U --immediate-mode -w "$work/r2.pcap" 2>"$work/tcpdump.err" &
tcpdump_pid=$!
wait_for 30 "tcpdump on r2 listening" 'grep -q "listening on" "$work/tcpdump.err"'
# A count, not an interrupt, ends it: an interrupted ping counts the echo
# still in flight as lost. 60 s (more under TCG) covers the failover and the
# rekey, which take 10-20 s in the VM.
ip netns exec "$H3" ping -c 3000 -i 0.02 -W 2 $H4_ADDR >"$work/ping" 2>&1 &
ping_pid=$!
sleep 3

section "kill -9 of the primary, $old, while h3 pings h4 at 50 packets/s"
t0=$(now)
kill -9 "$(cat "$run/$old.pid")"
wait_for 30 "a new primary" '[ -n "$(primary $old)" ] && [ "$(primary $old)" != "$old" ]'
new=$(primary $old)
took=$(since "$t0")
say "$new is primary $took s after the kill (lease_ttl $(field $new lease_ttl) s)"
ip netns exec "$KS" "$ctl" ks rekey GET_VPN --socket "$run/$new.sock" >"$work/rekey" 2>&1 ||
  fail "coveyctl ks rekey on $new: $(cat "$work/rekey")"
say "coveyctl ks rekey GET_VPN on $new: $(head -1 "$work/rekey")"
for g in gm3 gm4; do
  wait_for 60 "$g sending on the new primary's TEK" "[ \"\$(field $g sending_spi)\" != $spi ]"
done
spi2=$(field gm3 sending_spi)
say "both members send on TEK SPI $spi2 ($(since "$t0") s after the kill)"
kill -0 $ping_pid 2>/dev/null || fail "the ping ended before the rekey was over: $(tail -2 "$work/ping" | head -1)"
say "waiting for the ping's last echo"
wait $ping_pid
ping_pid=
sleep 0.3
kill -INT $tcpdump_pid
wait $tcpdump_pid
tcpdump_pid=

section "after: coveyctl ks cluster (on $new)"
ip netns exec "$KS" "$ctl" ks cluster --socket "$run/$new.sock" 2>&1

section "h3 -> h4: ping"
tail -3 "$work/ping"

section "what r2 saw on its link to gm3"
tcpdump -nn -r "$work/r2.pcap" >"$work/wire.txt" 2>/dev/null || fail "cannot read r2's capture back"
# "IP A > B: ESP(spi=0x...,seq=0x...)": per direction and SPI, packets and
# SEQ range; UDP 848 (GDOI) per sender and receiver.
awk '
  / ESP\(spi=/ {
    flow = $3 " > " $5; sub(/:$/, "", flow)
    match($0, /spi=0x[0-9a-f]+/); spi = substr($0, RSTART + 4, RLENGTH - 4)
    match($0, /seq=0x[0-9a-f]+/); seq = substr($0, RSTART + 4, RLENGTH - 4)
    k = flow " spi " spi
    if (!(k in n)) { order[++keys] = k; first[k] = seq }
    n[k]++; last[k] = seq
    next
  }
  /\.848 > .*\.848:/ { g = $3 " > " $5; sub(/:$/, "", g); if (!(g in gdoi)) gorder[++gk] = g; gdoi[g]++ }
  END {
    printf "  %-40s %8s %10s %10s\n", "ESP", "packets", "first SEQ", "last SEQ"
    for (i = 1; i <= keys; i++) printf "  %-40s %8d %10s %10s\n", order[i], n[order[i]], first[order[i]], last[order[i]]
    printf "  %-40s %8s\n", "GDOI (UDP 848)", "packets"
    for (i = 1; i <= gk; i++) printf "  %-40s %8d\n", gorder[i], gdoi[gorder[i]]
  }' "$work/wire.txt"

# ---- the verdict ----
echo
[ -n "$out" ] && say "r2's capture and the daemons' logs are in $out"
clear=$(grep -cE "IP ($H3_ADDR > $H4_ADDR|$H4_ADDR > $H3_ADDR): ICMP" "$work/wire.txt")
[ "$clear" = 0 ] || fail "$clear ICMP packets between h3 and h4 crossed r2 in clear"
case $new in ks1) naddr=10.1.12.1 ;; ks2) naddr=10.1.12.11 ;; *) naddr=10.1.12.12 ;; esac
pushes=$(grep -c "IP $naddr.848 > 10.1.23.3.848:" "$work/wire.txt")
[ "$pushes" -gt 0 ] || fail "r2 saw no push from the new primary $new ($naddr) to gm3"
for g in gm3 gm4; do
  regs=$(grep -c "Registration to KS .* complete" "$run/$g.log")
  [ "$regs" = 1 ] || fail "$g registered $regs times; the change of primary should cost it none"
done
got=$(grep -o '[0-9]* packets transmitted, [0-9]* received' "$work/ping")
sent=${got%% packets*} rcvd=${got#*, }
rcvd=${rcvd%% received}
[ -n "$sent" ] && [ "$sent" = "$rcvd" ] || fail "h3 -> h4 across the failover and the rekey: $got"
say "PASS: $old killed, $new primary after $took s and rekeyed (TEK SPI $spi -> $spi2, $pushes GDOI packets from $naddr to gm3); $got, 0 lost, nothing in clear; neither member registered again"
