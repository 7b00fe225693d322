#!/bin/sh
# A LAN host behind a group member (h3, h4): its address and the member as
# its gateway. It runs nothing of covey's.
#   host.sh --if IF ADDR/LEN --default GW [--route PREFIX GW]... [--dry-run]
# The lab:  host.sh --if eth0 192.168.3.10/24 --default 192.168.3.1
. "$(dirname "$0")/lib.sh"

while [ $# -gt 0 ]; do
  common_option "$@"
  n=$?
  [ $n -gt 0 ] || usage_error "$1"
  shift $n
done
[ -n "$routes" ] || die "no route off the LAN: give --default"
apply
