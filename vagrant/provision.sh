#!/bin/sh
# Vagrant's shell provisioner for one VM of the reference lab (Vagrantfile),
# run as root inside the VM:
#   provision.sh ROLE NODE        ROLE: ks | r2 | gm | host; NODE: ks, r2, gm3, h3...
# with COVEY_REPO (the synced repository, /covey) and COVEY_LAB_NET (this
# node's network, shell lines the Vagrantfile writes) in the environment.
#  1. packages: ks and gm the whole build set (tools/install-deps.sh); r2
#     tcpdump and tshark (it only routes and captures); host ping and tcpdump
#  2. ks and gm: build covey-ks, covey-gm and coveyctl from the synced
#     folder into COVEY_REPO/build and install them to /usr/local
#  3. the network: /etc/covey/lab-net.sh from COVEY_LAB_NET, run now and at
#     every boot by covey-lab-net.service (name-nics.sh, then the same
#     tools/lab/provision/*.sh scripts tools/lab/lab.sh runs in namespaces)
#  4. ks and gm: /etc/covey/{ks,gm}.toml from examples/lab, and the daemon as
#     a systemd unit (vagrant/systemd/), started
# Packages come first: the lab's default route (via r2) leaves ks, gm3 and
# gm4 without a way out once step 3 has run. Running it again converges.
set -eu

role=${1:?role: ks, r2, gm or host}
node=${2:?node name}
repo=${COVEY_REPO:-/covey}
net=${COVEY_LAB_NET:?COVEY_LAB_NET must hold the network commands of this node, from the Vagrantfile}
export DEBIAN_FRONTEND=noninteractive
say() { echo "covey-lab $node: $*"; }

apt_install() { # PACKAGE...: only what is missing, so a re-run needs no network
  missing=""
  for p; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  say "installing$missing"
  apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  apt-get install -y -qq --no-install-recommends $missing
}

# ---- 1. packages ----
case $role in
  ks | gm) sh "$repo/tools/install-deps.sh" ;;
  r2) apt_install iproute2 tcpdump tshark ;;
  host) apt_install iproute2 iputils-ping tcpdump ;;
  *) echo "provision.sh: unknown role $role (ks, r2, gm or host)" >&2; exit 2 ;;
esac

# ---- 2. covey ----
if [ "$role" = ks ] || [ "$role" = gm ]; then
  # The daemons and coveyctl only: the test and benchmark targets would
  # take a VM half an hour and serve nothing here.
  say "building covey-ks, covey-gm and coveyctl in $repo/build"
  [ -f "$repo/build/CMakeCache.txt" ] || cmake -S "$repo" -B "$repo/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$repo/build" -j "$(nproc)" --target covey-ks covey-gm coveyctl
  install -m 0755 "$repo/build/userspace/apps/covey-ks" "$repo/build/userspace/apps/covey-gm" /usr/local/sbin/
  install -m 0755 "$repo/build/tools/coveyctl/coveyctl" /usr/local/bin/
fi

# ---- 3. the network, now and at every boot ----
mkdir -p /etc/covey
chmod 0700 /etc/covey
{
  echo "#!/bin/sh"
  echo "# $node's part of the covey reference lab. Written by vagrant/provision.sh"
  echo "# from the Vagrantfile; run at boot by covey-lab-net.service."
  echo "set -eu"
  printf '%s\n' "$net"
} >/etc/covey/lab-net.sh
install -m 0644 "$repo/vagrant/systemd/covey-lab-net.service" /etc/systemd/system/
systemctl daemon-reload
systemctl enable -q covey-lab-net.service
say "network: /etc/covey/lab-net.sh"
systemctl restart covey-lab-net.service || {
  journalctl -u covey-lab-net.service -n 20 --no-pager
  exit 1
}

# ---- 4. the daemon ----
# The lab's configurations, with the default control socket and a state
# folder that survives a reboot (the namespace lab keeps both in /run/covey-lab).
config() { # EXAMPLE DEST SOCKET
  sed -e 's#^state_dir = .*#state_dir = "/var/lib/covey"#' \
    -e "s#^control_socket = .*#control_socket = \"$3\"#" "$1" >"$2"
  chmod 0600 "$2"
}
daemon() { # UNIT
  install -m 0644 "$repo/vagrant/systemd/$1.service" /etc/systemd/system/
  systemctl daemon-reload
  systemctl enable -q "$1.service"
  systemctl restart "$1.service"
}
case $role in
  ks)
    config "$repo/examples/lab/ks.toml" /etc/covey/ks.toml /run/covey/ks.sock
    # The rekey signing key is made on the key server and never leaves it.
    if [ ! -f /etc/covey/ks-rekey.pem ]; then
      openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out /etc/covey/ks-rekey.pem 2>/dev/null
      chmod 0600 /etc/covey/ks-rekey.pem
    fi
    covey-ks --check --config /etc/covey/ks.toml
    daemon covey-ks
    say "covey-ks runs (systemctl status covey-ks; coveyctl ks group; coveyctl ks members)"
    ;;
  gm)
    config "$repo/examples/lab/$node.toml" /etc/covey/gm.toml /run/covey-gm/gm.sock
    covey-gm --check --config /etc/covey/gm.toml
    daemon covey-gm
    # The key server may not be up yet (vagrant-libvirt brings VMs up in
    # parallel): covey-gm keeps trying by itself, so this only reports.
    i=0
    until coveyctl gm status 2>/dev/null | grep -q "Registration Status *: Registered"; do
      i=$((i + 1))
      if [ $i -gt 30 ]; then
        say "covey-gm has not registered yet (is ks up?); it keeps trying: journalctl -u covey-gm"
        exit 0
      fi
      sleep 2
    done
    say "covey-gm registered to the key server (coveyctl gm status)"
    ;;
esac
