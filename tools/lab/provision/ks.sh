#!/bin/sh
# The key server node: addresses and routes. covey-ks itself is started by
# tools/lab/lab.sh or by its systemd unit (vagrant/), not here.
#   ks.sh --if IF ADDR/LEN [--if ...] [--route PREFIX GW]... [--default GW] [--dry-run]
# The lab:  ks.sh --if eth0 10.1.12.1/24 --default 10.1.12.2
. "$(dirname "$0")/lib.sh"

while [ $# -gt 0 ]; do
  common_option "$@"
  n=$?
  [ $n -gt 0 ] || usage_error "$1"
  shift $n
done
[ -n "$routes" ] || die "no route to the members: give --default or --route"
apply
