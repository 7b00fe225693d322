# The reference lab's topology, written once (sourced, POSIX sh) for every
# script that builds it: tools/lab/lab.sh (`make lab`, the netns tier), the
# VM scenarios (tests/vm/) and the VM throughput bench (tests/bench/):
#
#   ks 10.1.12.1 --- r2 --- 10.1.23.3 gm3 --- 192.168.3.0/24 (h3 .10)
#                      |--- 10.1.24.4 gm4 --- 192.168.4.0/24 (h4 .10)
#                      \--- 10.1.25.5 gm5             (extra: gm5)
#   gm3's second LAN: 192.168.33.0/24 (h33 .10)       (extra: h33)
#
# Dual-stack: every link and LAN also has an IPv6 /64 in the documentation
# space, numbered as its IPv4 network: link 10.1.N.0/24 is 2001:db8:N::/64
# and LAN 192.168.N.0/24 is 2001:db8:N::/64 (N = 3, 4, 33), each node's
# host number the same in both (ks 2001:db8:12::1, gm3 2001:db8:23::3 and
# 2001:db8:3::1, h3 2001:db8:3::10...).
#
# r2 is the transit router: it knows every route and nothing about keys.
#   lab_topology PREFIX [gm5] [h33]
# makes a namespace PREFIX<node> per node, the veth wires with each end
# under its lab name, and configures each node with its provisioning script
# (tools/lab/provision/, which vagrant/ runs on the lab's VMs too). Sets
# lab_nodes to the nodes made. r2 has no route to gm3's second LAN: traffic
# between gm3's own LANs must never need one. A failure goes to the caller's `fail` when
# it has one (the VM scripts' lib.sh), else to stderr and exit 1.

# The caller sets `top`, the tree's top folder, before sourcing this.
lab_dir=${top:?topology.sh: the caller sets top, the top folder of the tree}/tools/lab

lab_fail() {
  if command -v fail >/dev/null 2>&1; then fail "$*"; fi
  echo "topology: $*" >&2
  exit 1
}

lab_topology() { # PREFIX [gm5] [h33]
  lab_p=$1
  shift
  lab_nodes="ks r2 gm3 gm4 h3 h4"
  lab_wires="ks eth0 r2 ks0|r2 gm3 gm3 wan0|r2 gm4 gm4 wan0|gm3 lan0 h3 eth0|gm4 lan0 h4 eth0"
  lab_r2="--if ks0 10.1.12.2/24 --if gm3 10.1.23.2/24 --if gm4 10.1.24.2/24"
  lab_r2="$lab_r2 --if ks0 2001:db8:12::2/64 --if gm3 2001:db8:23::2/64 --if gm4 2001:db8:24::2/64"
  lab_gm3=""
  for extra in "$@"; do
    case $extra in
      gm5)
        lab_nodes="$lab_nodes gm5"
        lab_wires="$lab_wires|r2 gm5 gm5 wan0"
        lab_r2="$lab_r2 --if gm5 10.1.25.2/24 --if gm5 2001:db8:25::2/64"
        ;;
      h33)
        lab_nodes="$lab_nodes h33"
        lab_wires="$lab_wires|gm3 lan1 h33 eth0"
        lab_gm3="--lan lan1 192.168.33.1/24 --if lan1 2001:db8:33::1/64"
        ;;
      *) lab_fail "lab_topology: no extra node '$extra' (gm5, h33)" ;;
    esac
  done
  for n in $lab_nodes; do
    ip netns add "$lab_p$n" || lab_fail "cannot create namespace $lab_p$n"
    # Before the wires arrive, so that their link-local addresses are usable
    # at once: duplicate address detection would hold every IPv6 neighbour
    # lookup for its first seconds, and the lab's addresses are planned.
    ip netns exec "$lab_p$n" sh -c 'echo 0 >/proc/sys/net/ipv6/conf/default/accept_dad' ||
      lab_fail "cannot turn off IPv6 duplicate address detection in $lab_p$n"
  done
  # One `ip -batch` for every wire: under TCG each exec costs a noticeable
  # fraction of a second.
  echo "$lab_wires" | tr '|' '\n' | while read -r a ai b bi; do
    echo "link add $ai netns $lab_p$a type veth peer name $bi netns $lab_p$b"
  done | ip -batch - || lab_fail "cannot make the lab's veth wires"
  lab_provision ks ks.sh --if eth0 10.1.12.1/24 --default 10.1.12.2 --if eth0 2001:db8:12::1/64 --default 2001:db8:12::2
  # shellcheck disable=SC2086 # word lists on purpose
  lab_provision r2 r2.sh $lab_r2 --route 192.168.3.0/24 10.1.23.3 --route 192.168.4.0/24 10.1.24.4 \
    --route 2001:db8:3::/64 2001:db8:23::3 --route 2001:db8:4::/64 2001:db8:24::4
  # shellcheck disable=SC2086
  lab_provision gm3 gm.sh --wan wan0 10.1.23.3/24 --lan lan0 192.168.3.1/24 $lab_gm3 --default 10.1.23.2 \
    --if wan0 2001:db8:23::3/64 --if lan0 2001:db8:3::1/64 --default 2001:db8:23::2
  lab_provision gm4 gm.sh --wan wan0 10.1.24.4/24 --lan lan0 192.168.4.1/24 --default 10.1.24.2 \
    --if wan0 2001:db8:24::4/64 --if lan0 2001:db8:4::1/64 --default 2001:db8:24::2
  lab_provision h3 host.sh --if eth0 192.168.3.10/24 --default 192.168.3.1 --if eth0 2001:db8:3::10/64 --default 2001:db8:3::1
  lab_provision h4 host.sh --if eth0 192.168.4.10/24 --default 192.168.4.1 --if eth0 2001:db8:4::10/64 --default 2001:db8:4::1
  case " $lab_nodes " in *" gm5 "*) lab_provision gm5 gm.sh --wan wan0 10.1.25.5/24 --default 10.1.25.2 \
    --if wan0 2001:db8:25::5/64 --default 2001:db8:25::2 ;; esac
  case " $lab_nodes " in *" h33 "*) lab_provision h33 host.sh --if eth0 192.168.33.10/24 --default 192.168.33.1 \
    --if eth0 2001:db8:33::10/64 --default 2001:db8:33::1 ;; esac
}

lab_provision() { # NODE SCRIPT ARGS...: the node's provisioning script, inside its namespace
  lab_node=$1 lab_script=$2
  shift 2
  ip netns exec "$lab_p$lab_node" sh "$lab_dir/provision/$lab_script" "$@" || lab_fail "provisioning $lab_p$lab_node failed"
}
