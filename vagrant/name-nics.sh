#!/bin/sh
# Gives this VM's lab NICs the lab's names (wan0, lan0, ks0...), finding
# each by the MAC address the Vagrantfile gave it: the guest's own names
# (eth1, ens6...) depend on the provider, the box and the slot order.
# Idempotent; covey-lab-net.service runs it at every boot, before the
# provisioning scripts that configure the NICs by those names.
#   name-nics.sh MAC=NAME...
set -eu

for pair; do
  mac=${pair%%=*} name=${pair#*=}
  current=""
  for dev in /sys/class/net/*; do
    if [ "$(cat "$dev/address" 2>/dev/null)" = "$mac" ]; then current=${dev##*/}; fi
  done
  if [ -z "$current" ]; then
    echo "name-nics: no interface has MAC $mac (wanted as $name); the VM has: $(cd /sys/class/net && for d in *; do printf '%s=%s ' "$d" "$(cat "$d/address")"; done)" >&2
    exit 1
  fi
  [ "$current" = "$name" ] && continue
  ip link set dev "$current" down
  ip link set dev "$current" name "$name"
done
