#!/bin/sh
# The reference lab carrying traffic: what `make lab` shows, run on the host
# when its kernel has what covey's data path needs, else inside the VM
# (tools/lab/make-lab.sh decides).
#   demo.sh [--up] [OUTDIR]
# --up first brings the lab up (lab.sh up, lab.sh wait): the VM starts with
# nothing running. Then: waits (up to ~20 s) for both members' data path to
# be active; pings h3 -> h4 in IPv4 and in IPv6 while r2 captures on its
# link to gm3; prints
# what r2 saw (tshark), each member's `coveyctl gm status` and XFRM states
# (keys masked), and gm3's BPF ACL and counters (bpftool, from inside
# covey-gm's mount namespace, where its bpffs is). The last line is the
# verdict; exit 0 when both pings crossed r2 as ESP with the hosts' own
# addresses (IPv4 and IPv6) on the outer header and nothing of them in
# clear, 1 otherwise.
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
# covey-gm pins its maps under /sys/fs/bpf/covey/<group name>.
pin=/sys/fs/bpf/covey/GET_VPN
R2=${prefix}r2 H3=${prefix}h3
H3_ADDR=192.168.3.10 H4_ADDR=192.168.4.10
H3_ADDR6=2001:db8:3::10 H4_ADDR6=2001:db8:4::10

up=no
if [ "${1:-}" = --up ]; then
  up=yes
  shift
fi
out=${1:-${COVEY_LAB_OUT:-}}
work=$(mktemp -d /tmp/covey-lab-demo.XXXXXX)
tcpdump_pid=
cleanup() {
  [ -n "$tcpdump_pid" ] && kill "$tcpdump_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

say() { echo "lab: $*"; }
section() {
  echo
  echo "=== $*"
}
fail() {
  say "FAIL: $*"
  exit 1
}
# Long hex runs are keys (SPIs, reqids and marks are at most 8 digits).
mask() { sed -E 's/0x[0-9a-fA-F]{16,}/<key>/g; s/\b[0-9a-fA-F]{32,}\b/<key>/g'; }
# At most N lines of a file, saying how many more there were.
head_of() { # FILE N
  awk -v n="$2" 'NR <= n { print } END { if (NR > n) printf "  ... %d more lines\n", NR - n }' "$1"
}

for f in "$ctl" "$build/userspace/apps/covey-gm" "$build/userspace/apps/covey-ks"; do
  [ -x "$f" ] || fail "$f is not built (COVEY_BUILD=$build)"
done
for cmd in ip tcpdump ping nsenter; do
  command -v $cmd >/dev/null || fail "$cmd is not installed (tools/install-deps.sh installs it)"
done
say "kernel $(uname -r)"

if [ $up = yes ]; then
  bash "$top/tools/lab/lab.sh" up || fail "lab.sh up failed"
  bash "$top/tools/lab/lab.sh" wait || fail "the members did not register"
  say "up: ks, r2, gm3, gm4, h3, h4; both members registered"
fi
for g in gm3 gm4; do
  [ -S "$run/$g.sock" ] || fail "no $run/$g.sock: is the lab up? (lab.sh up; COVEY_LAB_RUN=$run)"
done

# ---- the members' data path ----
# The "state" of "data_path" in `gm status --json` (two-space indentation:
# the top level's own "state" is registration's), or "none" when this
# covey-gm reports no data path, or "unreachable".
dp_state() { # GM
  "$ctl" gm status --json --socket "$run/$1.sock" >"$work/$1.json" 2>"$work/$1.err" || {
    echo unreachable
    return
  }
  awk '/^  "data_path": \{/ { in_dp = 1; next }
       in_dp && /^  \}/ { exit }
       in_dp && /^    "state": / { gsub(/[",]/, "", $2); print $2; found = 1; exit }
       END { if (!found) print "none" }' "$work/$1.json"
}
i=0
while :; do
  s3=$(dp_state gm3) s4=$(dp_state gm4)
  [ "$s3" = active ] && [ "$s4" = active ] && break
  # Only fail-close (registered, no TEK active yet) is worth waiting for.
  case "$s3 $s4" in *none* | *off* | *error* | *unreachable*) break ;; esac
  i=$((i + 1))
  [ $i -lt 40 ] || break
  sleep 0.5
done
say "data path: gm3 $s3, gm4 $s4"

# ---- a ping across, captured on r2's link to gm3 ----
: >"$work/tcpdump.err"  # before tcpdump starts: listening() reads it at once
ip netns exec "$R2" tcpdump -i gm3 -nn -U --immediate-mode -w "$work/r2.pcap" 2>"$work/tcpdump.err" &
tcpdump_pid=$!
listening() {
  while IFS= read -r l; do
    case $l in *"listening on"*) return 0 ;; esac
  done <"$work/tcpdump.err"
  return 1
}
i=0
until listening; do
  kill -0 $tcpdump_pid 2>/dev/null || fail "tcpdump on r2 exited: $(cat "$work/tcpdump.err")"
  i=$((i + 1))
  [ $i -le 300 ] || fail "tcpdump on r2 did not start within 30 s"
  sleep 0.1
done
section "h3 ($H3_ADDR, $H3_ADDR6) pings h4 ($H4_ADDR, $H4_ADDR6); r2 captures on its link to gm3"
ip netns exec "$H3" ping -c 4 -i 0.3 -W 2 $H4_ADDR >"$work/ping" 2>&1
ping_rc=$?
cat "$work/ping"
ip netns exec "$H3" ping -6 -c 4 -i 0.3 -W 2 $H4_ADDR6 >"$work/ping6" 2>&1
ping6_rc=$?
cat "$work/ping6"
sleep 0.3
kill -INT $tcpdump_pid
wait $tcpdump_pid
tcpdump_pid=

section "what r2 saw"
if command -v tshark >/dev/null; then
  # tshark as root warns on stderr that it runs as root: shown only on failure.
  tshark -r "$work/r2.pcap" -n -z conv,ip -z conv,ipv6 >"$work/tshark.txt" 2>"$work/tshark.err" ||
    echo "tshark failed: $(grep -v 'Running as user' "$work/tshark.err" | head -3)"
  head_of "$work/tshark.txt" 80
else
  tcpdump -nn -r "$work/r2.pcap" 2>/dev/null | head -n 40
fi

for g in gm3 gm4; do
  section "$g: coveyctl gm status"
  "$ctl" gm status --socket "$run/$g.sock" 2>&1
done

for g in gm3 gm4; do
  section "$g: ip xfrm state (keys masked)"
  ip -n "$prefix$g" xfrm state >"$work/xfrm" 2>&1
  if [ -s "$work/xfrm" ]; then mask <"$work/xfrm"; else echo "(none)"; fi
done

# covey-gm mounts its bpffs in the mount namespace `ip netns exec` gave it
# (lab.sh start), so bpftool looks from there, and from the daemon's root
# (-r: entering a mount namespace resets the root, which in the VM tier is
# a chroot).
section "gm3: bpftool map dump pinned $pin/{covey_acl,covey_acl_hits,covey_stats}"
pid=$(cat "$run/gm3.pid" 2>/dev/null)
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
  echo "(gm3's covey-gm is not running)"
elif ! command -v bpftool >/dev/null; then
  echo "(bpftool is not installed)"
else
  # shellcheck disable=SC2016 # $1 is expanded by the inner sh
  # covey_acl and covey_acl_hits have a slot per possible entry; the ones in
  # use are shown (`bpftool map dump pinned ...` prints them all, by name).
  nsenter -t "$pid" -m -n -r -w sh -c '
    if [ ! -d "$1" ]; then echo "(nothing pinned at $1)"; exit 0; fi
    for m in covey_acl covey_acl_hits; do
      echo "--- $m (slots in use)"
      bpftool -j map dump pinned "$1/$m" | python3 -c "
import json, sys
for e in json.load(sys.stdin):
    f = e.get(\"formatted\", e)
    v = f.get(\"value\", f.get(\"values\"))
    used = v.get(\"action\") != \"COVEY_ACL_UNUSED\" if isinstance(v, dict) else any(c[\"value\"] for c in v)
    if used: print(json.dumps(f))"
    done
    echo "--- covey_stats"
    bpftool map dump pinned "$1/covey_stats" 2>&1' sh "$pin" >"$work/maps" 2>&1
  head_of "$work/maps" 150
fi

if [ -n "$out" ]; then
  mkdir -p "$out" && cp "$work/r2.pcap" "$out/r2.pcap" && cp "$run"/*.log "$out/" 2>/dev/null
fi

# ---- the verdict, from the capture ----
tcpdump -nn -r "$work/r2.pcap" >"$work/wire.txt" 2>/dev/null || fail "cannot read r2's capture back"
# One family's verdict: "ok OUT BACK" or why not, from the ping's exit
# status and the capture (IP or IP6 lines of tcpdump).
verdict() { # IP|IP6 H3 H4 PING-RC PING-FILE
  v_clear=$(grep -cE "$1 ($2 > $3|$3 > $2): ICMP" "$work/wire.txt")
  v_out=$(grep -c "$1 $2 > $3: ESP(spi=" "$work/wire.txt")
  v_back=$(grep -c "$1 $3 > $2: ESP(spi=" "$work/wire.txt")
  if [ "$4" != 0 ]; then
    echo "h3 could not reach h4 ($3): $(tail -2 "$5" | head -1)"
  elif [ "$v_clear" -gt 0 ]; then
    echo "the ping crossed r2 in clear ($v_clear ICMP packets between $2 and $3): covey's data path is not carrying it (data path: gm3 $s3, gm4 $s4)"
  elif [ "$v_out" = 0 ] || [ "$v_back" = 0 ]; then
    echo "r2 saw neither the ping in clear nor ESP between $2 and $3 both ways ($v_out out, $v_back back)"
  else
    echo "ok $v_out $v_back"
  fi
}
v4=$(verdict IP "$H3_ADDR" "$H4_ADDR" $ping_rc "$work/ping")
v6=$(verdict IP6 "$H3_ADDR6" "$H4_ADDR6" $ping6_rc "$work/ping6")
spis=$(grep -o 'ESP(spi=0x[0-9a-f]*' "$work/wire.txt" | sed 's/ESP(spi=//' | sort -u | tr '\n' ' ')
echo
[ -n "$out" ] && say "r2's capture and the daemons' logs are in $out"
case $v4 in ok*) ;; *) fail "IPv4: $v4" ;; esac
case $v6 in ok*) ;; *) fail "IPv6: $v6" ;; esac
# shellcheck disable=SC2086 # "ok OUT BACK": three words each
set -- $v4 $v6
say "PASS: both pings crossed r2 as ESP both ways with the hosts' own addresses outside (IPv4 $H3_ADDR <-> $H4_ADDR: $2 out, $3 back; IPv6 $H3_ADDR6 <-> $H4_ADDR6: $5 out, $6 back; SPI ${spis% }); nothing in clear"
