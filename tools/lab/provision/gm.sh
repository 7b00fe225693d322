#!/bin/sh
# A group member's node: WAN and LAN addresses, routes, and the sysctls
# covey's data path needs on the WAN (covey-gm sets them too when it starts;
# setting them here makes the node right before the daemon runs):
#   net.ipv4.ip_forward=1                  it routes between LAN and WAN
#   net.ipv6.conf.all.forwarding=1         (both families)
#   net.ipv4.conf.WAN.accept_local=1       the member's own traffic is bounced
#                                          back in on the WAN with a local source
#   net.ipv4.conf.{all,WAN}.rp_filter=2    loose: decrypted packets arrive on
#                                          the WAN with LAN sources
#   net.ipv4.conf.{all,WAN}.send_redirects=0
#                                          no ICMP redirect for the bounce
#                                          (the kernel ORs all and the device)
#   gm.sh --wan IF ADDR/LEN --lan IF ADDR/LEN [--lan ...] [--default GW]
#         [--route PREFIX GW]... [--if IF ADDR/LEN]... [--dry-run]
# The lab:  gm.sh --wan wan0 10.1.23.3/24 --lan lan0 192.168.3.1/24 --default 10.1.23.2 \
#             --if wan0 2001:db8:23::3/64 --if lan0 2001:db8:3::1/64 --default 2001:db8:23::2
. "$(dirname "$0")/lib.sh"

wan=""
while [ $# -gt 0 ]; do
  case $1 in
    --wan)
      [ $# -ge 3 ] || die "--wan takes IF ADDR/LEN"
      [ -z "$wan" ] || die "one --wan only (covey-gm has one wan_interface)"
      wan=$2
      add_if "$2" "$3"
      shift 3
      ;;
    --lan)
      [ $# -ge 3 ] || die "--lan takes IF ADDR/LEN"
      add_if "$2" "$3"
      shift 3
      ;;
    *)
      common_option "$@"
      n=$?
      [ $n -gt 0 ] || usage_error "$1"
      shift $n
      ;;
  esac
done
[ -n "$wan" ] || die "--wan IF ADDR/LEN is required"
[ -n "$routes" ] || die "no route to the key server and the other members: give --default or --route"
add_sysctl net.ipv4.ip_forward 1
add_sysctl net.ipv6.conf.all.forwarding 1
add_sysctl net.ipv4.conf.all.rp_filter 2
add_sysctl "net.ipv4.conf.$wan.rp_filter" 2
add_sysctl "net.ipv4.conf.$wan.accept_local" 1
add_sysctl net.ipv4.conf.all.send_redirects 0
add_sysctl "net.ipv4.conf.$wan.send_redirects" 0
apply
