#!/bin/sh
# Installs the Debian 12 packages covey builds and tests with, and nothing
# when all are present. Run as root (make test does it for you).
set -eu

PACKAGES="
  build-essential cmake pkg-config clang llvm libclang-rt-14-dev libbpf-dev
  libssl-dev libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libpcap-dev libtomlplusplus-dev libboost-dev libmnl-dev
  tshark tcpdump python3 iproute2 openssl
  qemu-system-x86 busybox-static iputils-ping bpftool
  python3-cryptography nftables
  etcd-server etcd-client
  debhelper lintian mmdebstrap scdoc
  prometheus
  systemd
"
# qemu..bpftool: the VM tier (tests/vm/): qemu boots Debian's kernel, which
# tests/vm/run-in-vm fetches itself with apt-get download into the build tree.
# python3-cryptography: tests/netns/pushes.py forges a push as a KEK holder could;
# nftables: the netns rekey tests drop a member's inbound pushes.
# etcd-server etcd-client: the etcd client's tests run a real three-member
# cluster (tests/common/etcd_cluster.h, tests/netns/etcd_cluster.py).
# debhelper lintian mmdebstrap scdoc: `make deb` builds the package with
# debhelper, package.lintian checks it with lintian, package.install installs
# it into a Debian 12 root mmdebstrap makes from the mirror, and scdoc turns
# docs/man/*.scd into the man pages the build installs.
# prometheus: promtool checks both daemons' /metrics and examples/monitoring's
# alerting rules, and netns.registration scrapes the lab with a real server.
# systemd: systemd-analyze verifies the units and scores their exposure
# (tests/service/units.sh); no systemd needs to run.

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

echo "covey: installing missing Debian packages:$missing"
if [ "$(id -u)" != 0 ]; then
  echo "covey: these packages are missing and installing them needs root: sudo apt-get install$missing" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing
