#!/bin/sh
# package.install: the .deb that `make deb` made from this build, installed
# by apt into a fresh Debian 12 root (mmdebstrap, minbase), then what an
# administrator does first: the example configurations checked by the
# programs themselves (with a signing key made as the example says; no
# private key is ever shipped), the version, the pages; then apt-get remove
# and purge, and nothing of covey left but the covey user (debian/postrm
# says why it stays).
#   install_test.sh BUILD_DIR
# The root is cached as BUILD/package/base-<hash>.tar (or in
# $COVEY_PACKAGE_CACHE, which may outlive a build), keyed by the .deb's
# dependencies and the host's apt sources: a clean clone makes it from the
# mirror (the only network used), a rerun only unpacks it. Root needed
# (chroot); without it the test is skipped (77).
set -eu
build=$(cd "$1" && pwd)
[ "$(id -u)" = 0 ] || { echo "skipped: needs root (chroot)"; exit 77; }
start=$(date +%s)
fail() { echo "package.install: FAIL: $*" >&2; exit 1; }

deb=$(ls "$build"/deb/covey_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || fail "no $build/deb/covey_*.deb: run make deb (make test does)"
version=$(dpkg-deb -f "$deb" Version)

# The dependencies as apt will want them: first of each alternative, no versions.
deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' | grep . | sort -u | paste -sd, -)
sources=""
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -s "$f" ] && sources="$sources $f"
done
[ -n "$sources" ] || fail "no apt sources in /etc/apt to take the mirror from"
key=$( (echo "$deps"; cat $sources) | sha256sum | cut -c1-16)
cache=${COVEY_PACKAGE_CACHE:-$build/package}
base=$cache/base-$key.tar
mkdir -p "$cache"
if [ ! -s "$base" ]; then
  rm -f "$cache"/base-*.tar
  echo "package.install: making a Debian 12 minbase root with $deps (cached as $base)"
  # shellcheck disable=SC2086 # one argument per sources file
  mmdebstrap --quiet --format=tar --variant=minbase --include="$deps" --skip=cleanup/apt/lists \
    bookworm "$base.tmp" $sources || fail "mmdebstrap could not make the root"
  mv "$base.tmp" "$base"
fi
made=$(date +%s)

root=$cache/root
rm -rf "$root"
mkdir -p "$root"
tar -C "$root" -xf "$base"
cleanup() { rm -rf "$root"; }
trap cleanup EXIT
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }

cp "$deb" "$root/tmp/"
# Its dependencies are in the cached root already (the cache key is the
# .deb's Depends), so apt resolves them without fetching anything.
in_root apt-get install -y -q -o Dpkg::Use-Pty=0 "/tmp/$(basename "$deb")" >"$cache/install.log" 2>&1 ||
  { cat "$cache/install.log"; fail "apt-get install of $(basename "$deb")"; }

# The programs run, and say the package's version.
for p in covey-ks covey-gm coveyctl; do
  got=$(in_root $p --version) || fail "$p --version failed"
  [ "$got" = "$p $version" ] || fail "$p --version says \"$got\", the package is $version"
done
echo "package.install: covey $version installed; coveyctl --version: $(in_root coveyctl --version)"

# The user, the state folder, the examples as 0600 conffiles.
in_root getent passwd covey >/dev/null || fail "postinst made no covey user"
owner=$(in_root stat -c '%U:%G %a' /var/lib/covey) || fail "no /var/lib/covey"
[ "$owner" = "covey:covey 700" ] || fail "/var/lib/covey is $owner, want covey:covey 700"
for f in ks.toml.example gm.toml.example; do
  mode=$(in_root stat -c '%a %U' /etc/covey/$f) || fail "no /etc/covey/$f"
  [ "$mode" = "600 root" ] || fail "/etc/covey/$f is mode $mode, want 600 root"
  in_root dpkg-query -W -f='${Conffiles}\n' covey | grep -q "/etc/covey/$f " || fail "/etc/covey/$f is not a conffile"
done
for page in man8/covey-ks.8 man8/covey-gm.8 man8/coveyctl.8 man5/covey-ks.toml.5 man5/covey-gm.toml.5; do
  [ -s "$root/usr/share/man/$page.gz" ] || fail "no /usr/share/man/$page.gz"
done

# The examples as an administrator starts from them: copied, the signing key
# made where ks.toml says (with the host's openssl: the root has no openssl
# program), then checked by the programs that will read them.
in_root cp /etc/covey/ks.toml.example /etc/covey/ks.toml
in_root cp /etc/covey/gm.toml.example /etc/covey/gm.toml
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$root/etc/covey/ks-rekey.pem" 2>/dev/null
chmod 600 "$root/etc/covey/ks-rekey.pem"
in_root covey-ks --check --config /etc/covey/ks.toml || fail "covey-ks --check on the example ks.toml"
in_root covey-gm --check --config /etc/covey/gm.toml || fail "covey-gm --check on the example gm.toml"

# Remove keeps the configuration and state; purge takes them.
in_root apt-get remove -y -q -o Dpkg::Use-Pty=0 covey >>"$cache/install.log" 2>&1 || { cat "$cache/install.log"; fail "apt-get remove"; }
for p in covey-ks covey-gm coveyctl; do [ ! -e "$root/usr/sbin/$p" ] || fail "remove left /usr/sbin/$p"; done
[ -e "$root/etc/covey/ks.toml.example" ] || fail "remove took the conffiles (only purge should)"
in_root apt-get purge -y -q -o Dpkg::Use-Pty=0 covey >>"$cache/install.log" 2>&1 || { cat "$cache/install.log"; fail "apt-get purge"; }
[ ! -e "$root/etc/covey" ] || fail "purge left /etc/covey: $(ls -A "$root/etc/covey" | paste -sd' ' -)"
[ ! -e "$root/var/lib/covey" ] || fail "purge left /var/lib/covey"
status=$(in_root dpkg-query -W -f='${db:Status-Abbrev}' covey 2>/dev/null || true)
[ -z "$status" ] || [ "$status" = "un " ] || fail "after purge dpkg says covey is \"$status\""
left=$(cd "$root" && find usr etc var -path '*covey*' ! -path 'var/lib/dpkg/*' ! -path 'var/cache/*' ! -path 'var/log/*' 2>/dev/null | head -5)
[ -z "$left" ] || fail "purge left $left"
in_root getent passwd covey >/dev/null || fail "purge removed the covey user (debian/postrm keeps it)"

end=$(date +%s)
echo "package.install: installed, checked, removed and purged in $((end - made)) s (root: $((made - start)) s)"
