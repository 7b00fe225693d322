# Shared by the VM tier's scenario scripts (sourced, POSIX sh). The script
# sets NAME (its name in messages) and work (a scratch folder) first, and
# its cleanup kills $tcpdump_pid.

tcpdump_pid=

fail() {
  echo "$NAME: FAIL: $*"
  # A script's own state dump (counters, kernel tables), once.
  if [ -n "${DIAGNOSE:-}" ]; then d=$DIAGNOSE; DIAGNOSE=; $d; fi
  # What the kernel asked for and could not load (run-in-vm logs it).
  [ -s /run/covey-vm-modprobe.log ] && echo "$NAME: kernel module requests: $(sort -u /run/covey-vm-modprobe.log | tr '\n' ' ')"
  exit 1
}

# One `ip -batch` per namespace: under TCG every exec costs a noticeable
# fraction of a second (binaries come over 9p). Keys are masked in errors.
batch() { # NS WHAT, commands on stdin
  ip -n "$1" -batch - >"$work/batch.out" 2>&1 ||
    fail "$2 in $1 failed: $(grep -v '^$' "$work/batch.out" | tail -3 | sed -E 's/[0-9a-fA-F]{16,}/<key>/g')"
}

# tcpdump on interface IF of namespace NS into FILE (default
# $work/wire.pcap), returning once it listens; stop it with
# kill -INT $tcpdump_pid, or give COUNT and it stops after that many packets.
capture_start() { # NS IF [FILE [COUNT]]
  ip netns exec "$1" tcpdump -i "$2" -nn ${4:+-c "$4"} -U --immediate-mode -w "${3:-$work/wire.pcap}" \
    2>"$work/tcpdump.err" &
  tcpdump_pid=$!
  i=0
  until grep -q "listening on" "$work/tcpdump.err"; do
    i=$((i + 1))
    [ $i -le 300 ] || fail "tcpdump did not start within 30 s: $(cat "$work/tcpdump.err")"
    kill -0 $tcpdump_pid 2>/dev/null || fail "tcpdump exited: $(cat "$work/tcpdump.err")"
    sleep 0.1
  done
}

# Polls CONDITION (a shell command line, eval'ed) once a second until it
# holds; fails naming WHAT after SECONDS. The scenario scripts wait on what
# they are about to check (a counter, a socket, a packet's fate), not a
# fixed sleep that is too long on a quiet machine and too short on a busy one.
wait_until() { # SECONDS WHAT CONDITION
  wu_i=0
  until eval "$3"; do
    wu_i=$((wu_i + 1))
    [ $wu_i -le "$1" ] || fail "$2 did not happen within $1 s"
    sleep 1
  done
}

# The reference lab's configuration (tools/lab/topology.sh's addresses),
# written once for the VM scripts: $work/ks.toml with the lab's group
# (both families' LANs protected: 192.168.0.0/16 and the container
# networks 172.20.0.0/16 (datapath.sh's scenario C), and IPv6's LANs 3 and 4
# as 2001:db8::/45 with gm3's second LAN 2001:db8:33::/64 listed, so that
# the links 2001:db8:12, 23, 24, 25::/64 stay clear as 10.1.0.0/16 does)
# (TBAR, activation and deactivation delays, fail-close on the members)
# and a fresh rekey signing key, and $work/NAME.toml per member.
lab_ks_config() {
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rekey.pem" 2>/dev/null || fail "openssl genpkey"
  cat >"$work/ks.toml" <<EOF
[server]
address = "10.1.12.1"
state_dir = "$work/ks-state"
control_socket = "$work/ks.sock"

[isakmp]
pre_shared_key = "covey-vm-not-a-secret"

[[group]]
name = "GET_VPN"
identity = 134
acl = [
  "deny udp any eq 848 any eq 848",
  "permit ip 192.168.0.0/16 192.168.0.0/16",
  "permit ip 172.20.0.0/16 172.20.0.0/16",
  "permit ipv6 2001:db8::/45 2001:db8::/45",
  "permit ipv6 2001:db8::/45 2001:db8:33::/64",
  "permit ipv6 2001:db8:33::/64 2001:db8::/45",
]
lifetime = 3600
activation_delay = 2
deactivation_delay = 10
tbar_window = 3
authorization = ["10.1.23.3", "10.1.24.4"]

[group.rekey]
transport = "unicast"
signing_key = "$work/rekey.pem"
EOF
}
lab_gm_config() { # NAME WAN-ADDRESS LAN-LIST [MEMBER-LINE...], e.g. gm3 10.1.23.3 '"lan0", "lan1"' 'xdp_mode = "generic"'
  lgc_name=$1 lgc_address=$2 lgc_lans=$3
  shift 3
  {
    cat <<EOF
[member]
local_address = "$lgc_address"
wan_interface = "wan0"
lan_interfaces = [$lgc_lans]
state_dir = "$work/$lgc_name-state"
control_socket = "$work/$lgc_name.sock"
fail_close = ["permit ip 192.168.0.0/16 192.168.0.0/16", "permit ip 172.20.0.0/16 172.20.0.0/16",
              "permit ipv6 2001:db8::/45 2001:db8::/45"]
EOF
    for line in "$@"; do echo "$line"; done
    cat <<EOF

[group]
name = "GET_VPN"
identity = 134
key_servers = ["10.1.12.1"]

[isakmp]
pre_shared_key = "covey-vm-not-a-secret"
EOF
  } >"$work/$lgc_name.toml"
}
