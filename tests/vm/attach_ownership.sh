#!/bin/sh
# vm.attach_ownership: covey-gm shares its interfaces with other tools'
# XDP programs and tc filters, and touches only its own. Run inside the VM:
#   tests/vm/run-in-vm -- sh tests/vm/attach_ownership.sh [OUTDIR]
# with COVEY_BUILD set to a build tree (ctest sets it) that holds
# tests/vm/foreign.bpf.o (foreign_xdp, foreign_tc: both pass everything).
#
#   gm: wan0 10.1.23.3 --- r (10.1.23.2); lan0 192.168.3.1 --- r
#
# covey-gm runs with xdp_mode = "generic" (on a veth, "auto" would attach no
# XDP). No key server: the data path comes up fail-close before registration.
#   refusal, XDP: foreign_xdp on wan0 -> covey-gm exits naming it and its id;
#     foreign_xdp (same id) and the foreign filters stay, covey's are gone.
#   refusal, tc: foreign_tc at covey's handle and priority on lan0 ingress ->
#     covey-gm exits naming it; it stays.
#   run: beside foreign_tc at wan0 ingress prio 7 and egress prio 5, covey's
#     XDP and three filters attached, the foreign ones untouched;
#   kill -9 and restart: covey replaces its own leftovers (new ids, no
#     duplicates), the foreign ones untouched;
#   another tool takes wan0's XDP over, then SIGTERM: covey-gm's stop leaves
#     that program and the foreign filters, and nothing of covey's.
set -u

out=${1:-${COVEY_VM_OUT:-}}
build=${COVEY_BUILD:-}
work=$(mktemp -d /tmp/covey-attach.XXXXXX)
NAME=attach_ownership
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
G=cvm-ao-gm R=cvm-ao-r

say() { echo "$NAME: $*"; }
cleanup() {
  for n in $G $R; do
    for pid in $(ip netns pids $n 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  done
  if [ -n "$out" ]; then cp "$work"/*.log "$out/" 2>/dev/null; fi
  for n in $G $R; do ip netns del $n 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

[ -n "$build" ] || fail "COVEY_BUILD is not set (the build tree with covey-gm and tests/vm/foreign.bpf.o)"
GM=$build/userspace/apps/covey-gm
OBJ=$build/tests/vm/foreign.bpf.o
for f in "$GM" "$OBJ"; do [ -e "$f" ] || fail "$f is not built"; done
say "kernel $(uname -r)"

for n in $G $R; do ip netns add $n || fail "cannot create namespace $n"; done
ip link add wan0 netns $G type veth peer name gm netns $R || fail "veth wan0"
ip link add lan0 netns $G type veth peer name lan netns $R || fail "veth lan0"
batch $G topology <<EOF
link set lo up
addr add 10.1.23.3/24 dev wan0
addr add 192.168.3.1/24 dev lan0
link set wan0 up
link set lan0 up
route add default via 10.1.23.2
EOF
batch $R topology <<EOF
link set lo up
addr add 10.1.23.2/24 dev gm
link set gm up
link set lan up
EOF
lab_gm_config gm 10.1.23.3 '"lan0"' 'xdp_mode = "generic"'

# The BPF programs on gm's interfaces, one line each, sorted:
#   DEV xdp NAME ID
#   DEV DIRECTION PREF HANDLE NAME ID
# (the kernel keeps 15 characters of a program's name: covey_lan_ingre).
attached() {
  for dev in wan0 lan0; do
    ip -n $G -d link show dev $dev | sed -n "s/.*prog\/xdp id \([0-9]*\) name \([a-z_]*\).*/$dev xdp \2 \1/p"
    for dir in ingress egress; do
      tc -n $G filter show dev $dev $dir 2>/dev/null |
        sed -n "s/.*pref \([0-9]*\) bpf .*handle \(0x[0-9a-f]*\) .* id \([0-9]*\) name \([a-z_]*\).*/$dev $dir \1 \2 \4 \3/p"
    done
  done | sort
}
foreign() { attached | grep -v ' covey_'; }
covey() { attached | grep ' covey_'; }
# Starts covey-gm and waits until its data path is up (gm=up) or it exits
# (gm=exited, its status in $work/gm.status).
run_gm() {
  : >"$work/gm.log"
  rm -f "$work/gm.status"
  (ip netns exec $G "$GM" --config "$work/gm.toml" >>"$work/gm.log" 2>&1; echo $? >"$work/gm.status") \
    >/dev/null 2>&1 &
  i=0 gm=up
  until grep -q "data path on WAN" "$work/gm.log"; do
    if [ -e "$work/gm.status" ]; then gm=exited; return; fi
    i=$((i + 1))
    [ $i -le 240 ] || fail "covey-gm neither brought its data path up nor exited within 120 s; log:
$(tail -5 "$work/gm.log")"
    sleep 0.5
  done
}
gm_pid() { ip netns pids $G; }
stop_gm() { # SIGNAL
  pid=$(gm_pid)
  [ -n "$pid" ] || fail "covey-gm is not running"
  kill -"$1" $pid
  i=0
  until [ -e "$work/gm.status" ]; do
    i=$((i + 1))
    [ $i -le 120 ] || fail "covey-gm did not exit within 60 s of SIG$1"
    sleep 0.5
  done
}
diagnose() {
  echo "---- attached"
  attached
  echo "---- covey-gm log tail"
  tail -8 "$work/gm.log"
}
DIAGNOSE=diagnose
same() { # WHAT EXPECTED: the foreign programs are exactly EXPECTED
  now=$(foreign)
  [ "$now" = "$2" ] || fail "$1: the foreign programs changed; before:
$2
now:
$now"
}

# ---- another tool's programs, before covey-gm ----
ip -n $G link set dev wan0 xdpgeneric obj "$OBJ" sec xdp || fail "loading foreign_xdp on wan0"
tc -n $G -batch - <<EOF || fail "adding the foreign tc filters"
qdisc add dev wan0 clsact
filter add dev wan0 ingress prio 7 bpf da obj $OBJ sec tc
filter add dev wan0 egress prio 5 bpf da obj $OBJ sec tc
EOF
before=$(foreign)
xdp_id=$(echo "$before" | sed -n 's/^wan0 xdp foreign_xdp //p')
[ -n "$xdp_id" ] && [ "$(echo "$before" | grep -c foreign_tc)" = 2 ] || fail "the foreign programs did not attach:
$before"
say "foreign programs: $(echo "$before" | tr '\n' ';')"

# ---- refusal: a foreign XDP program on the WAN ----
run_gm; [ $gm = exited ] || fail "covey-gm started its data path on wan0 with foreign_xdp (id $xdp_id) attached"
[ "$(cat "$work/gm.status")" != 0 ] || fail "covey-gm exited 0 refusing foreign_xdp"
grep -q "wan0.*XDP program 'foreign_xdp' (id $xdp_id)" "$work/gm.log" ||
  fail "covey-gm did not name the foreign XDP program and its id; log:
$(tail -3 "$work/gm.log")"
same "after the XDP refusal" "$before"
[ -z "$(covey)" ] || fail "covey-gm refused but left its programs: $(covey | tr '\n' ';')"
say "refusal (XDP), foreign programs untouched: $(grep -o "covey datapath: wan0.*'foreign_xdp' (id $xdp_id).*" "$work/gm.log" | head -1)"

# ---- refusal: a foreign filter at covey's tc handle and priority ----
# (datapath.cpp's kTcHandle and kTcPriority)
ip -n $G link set dev wan0 xdpgeneric off || fail "removing foreign_xdp"
tc -n $G -batch - <<EOF || fail "adding foreign_tc at covey's handle"
qdisc replace dev lan0 clsact
filter add dev lan0 ingress prio 1 handle 0xc0e1 bpf da obj $OBJ sec tc
EOF
before=$(foreign)
tc_id=$(echo "$before" | sed -n 's/^lan0 ingress 1 0xc0e1 foreign_tc //p')
run_gm; [ $gm = exited ] || fail "covey-gm started with foreign_tc (id $tc_id) at its handle on lan0 ingress"
grep -q "lan0.*'foreign_tc' (id $tc_id)" "$work/gm.log" ||
  fail "covey-gm did not name the foreign filter at its handle; log:
$(tail -3 "$work/gm.log")"
same "after the tc refusal" "$before"
[ -z "$(covey)" ] || fail "covey-gm refused but left its programs: $(covey | tr '\n' ';')"
say "refusal (tc), foreign programs untouched: $(grep -o "covey datapath: attaching.*lan0.*'foreign_tc' (id $tc_id).*" "$work/gm.log" | head -1)"
tc -n $G filter del dev lan0 ingress pref 1 handle 0xc0e1 bpf || fail "removing foreign_tc from lan0"
before=$(foreign)

# ---- covey-gm beside the foreign filters ----
run_gm; [ $gm = up ] || fail "covey-gm did not start beside the foreign filters; log:
$(tail -5 "$work/gm.log")"
mine=$(covey)
want="lan0 ingress 1 0xc0e1 covey_lan_ingre
wan0 egress 1 0xc0e1 covey_wan_egres
wan0 ingress 1 0xc0e1 covey_wan_ingre
wan0 xdp covey_wan_xdp"
[ "$(echo "$mine" | sed 's/ [0-9]*$//')" = "$want" ] || fail "covey's programs attached:
$mine
expected:
$want"
same "with covey-gm running" "$before"
say "running: covey's $(echo "$mine" | wc -l) programs beside the foreign ones"

# ---- kill -9, restart: covey's leftovers replaced, no more ----
stop_gm 9
[ "$(covey)" = "$mine" ] || fail "covey's programs changed with covey-gm killed (they stay: fail-close)"
run_gm; [ $gm = up ] || fail "covey-gm did not restart over its own leftovers; log:
$(tail -5 "$work/gm.log")"
again=$(covey)
[ "$(echo "$again" | sed 's/ [0-9]*$//')" = "$want" ] || fail "covey's programs after the restart:
$again
expected:
$want"
kept=$(printf '%s\n%s\n' "$mine" "$again" | sort | uniq -d)
[ -z "$kept" ] || fail "the restarted covey-gm kept the killed one's programs:
$kept"
same "after kill -9 and restart" "$before"
say "kill -9 and restart: covey's programs replaced by the new run's, foreign ones untouched"

# ---- another tool takes wan0's XDP over; covey-gm stops ----
ip -force -n $G link set dev wan0 xdpgeneric obj "$OBJ" sec xdp || fail "replacing covey_wan_xdp by foreign_xdp"
before=$(foreign)
stop_gm TERM
grep -q "data path removed from the kernel" "$work/gm.log" || fail "covey-gm did not log its clean stop"
same "after SIGTERM" "$before"
[ -z "$(covey)" ] || fail "covey-gm stopped (SIGTERM) but left: $(covey | tr '\n' ';')"
say "SIGTERM: covey's programs gone; $(echo "$before" | grep -c .) foreign ones left as they were, foreign_xdp (id $(echo "$before" | sed -n 's/^wan0 xdp foreign_xdp //p')) included"

say "PASS"
