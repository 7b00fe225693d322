#!/bin/sh
# The transit router: it knows every route and nothing about keys, so
# whatever a member lets out in clear is delivered, and a capture here
# shows what the wire carries.
#   r2.sh --if IF ADDR/LEN [--if ...] --route PREFIX GW [--route ...] [--dry-run]
# The lab:  r2.sh --if ks0 10.1.12.2/24 --if gm3 10.1.23.2/24 --if gm4 10.1.24.2/24 \
#             --route 192.168.3.0/24 10.1.23.3 --route 192.168.4.0/24 10.1.24.4
. "$(dirname "$0")/lib.sh"

while [ $# -gt 0 ]; do
  common_option "$@"
  n=$?
  [ $n -gt 0 ] || usage_error "$1"
  shift $n
done
add_sysctl net.ipv4.ip_forward 1
add_sysctl net.ipv6.conf.all.forwarding 1
apply
