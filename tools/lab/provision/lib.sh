# Shared by the node scripts beside it (sourced; POSIX sh). A node script
# configures the node it runs on, as root: a network namespace (lab.sh runs
# it under `ip netns exec`) or a VM (vagrant/ runs it at provisioning and at
# every boot). It sets addresses, routes and sysctls, nothing else: the
# interfaces exist already under the names given (lab.sh's veth pairs, a
# VM's NICs renamed by MAC), and no daemon is started here.
#
# Every change is idempotent (replace, never add), so running a script
# again converges instead of failing. Every `ip` change goes through one
# `ip -batch` and sysctls are written to /proc/sys by the shell itself:
# under TCG (tests/vm/) each exec costs a noticeable fraction of a second.
#
# Options every node script takes (each script says which more it has):
#   --if NAME ADDR/LEN       an interface to bring up with that address (repeatable;
#                            IPv4 or IPv6: give --if twice for both)
#   --route PREFIX GATEWAY   a static route (repeatable)
#   --default GATEWAY        the default route (once per family)
#   --dry-run                print the commands instead of running them

node=$(basename "$0" .sh)
dry=no
ipcmds="link set dev lo up
"
routes=""
sysctls=""

die() {
  echo "provision/$node.sh: $*" >&2
  exit 1
}

add_if() { # NAME ADDR/LEN
  case $2 in */*) ;; *) die "address $2 for $1 needs a prefix length (e.g. $2/24)" ;; esac
  # IPv6: no duplicate address detection. The lab's addresses are planned,
  # and a tentative address would refuse traffic for its first second.
  case $2 in *:*) nodad=" nodad" ;; *) nodad="" ;; esac
  ipcmds="${ipcmds}link set dev $1 up
addr replace $2 dev $1$nodad
"
}

add_route() { # PREFIX GATEWAY
  routes="${routes}route replace $1 via $2
"
}

# NAME VALUE, NAME as sysctl(8) spells it. Interface names with a dot
# (VLANs) would need sysctl's slash form: the lab has none.
add_sysctl() {
  sysctls="$sysctls$1 $2
"
}

# common_option "$@": takes the common option at $1; returns how many words
# it used, 0 when $1 is not a common option (the node script's own, or wrong).
common_option() {
  case $1 in
    --if) [ $# -ge 3 ] || die "--if takes NAME ADDR/LEN"; add_if "$2" "$3"; return 3 ;;
    --route) [ $# -ge 3 ] || die "--route takes PREFIX GATEWAY"; add_route "$2" "$3"; return 3 ;;
    --default) [ $# -ge 2 ] || die "--default takes GATEWAY"; add_route default "$2"; return 2 ;;
    --dry-run) dry=yes; return 1 ;;
  esac
  return 0
}

usage_error() {
  echo "provision/$node.sh: unknown option $1" >&2
  sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

apply() {
  if [ $dry = yes ]; then
    printf '%s' "$ipcmds$routes" | sed 's/^/ip /'
    printf '%s' "$sysctls" | sed 's/^\([^ ]*\) /sysctl -w \1=/'
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "needs root"
  err=$(printf '%s' "$ipcmds$routes" | ip -batch - 2>&1) ||
    die "ip -batch failed: $(printf '%s\n' "$err" | grep -v '^$' | tail -3)"
  # After the addresses: interface sysctls need the interface up. A here
  # document, not a pipe, so that die() leaves the script, not a subshell.
  while read -r name value; do
    [ -n "$name" ] || continue
    # ${name} with dots -> /proc/sys path with slashes, without an exec.
    path=/proc/sys
    rest=$name
    while :; do
      case $rest in
        *.*) path=$path/${rest%%.*}; rest=${rest#*.} ;;
        *) path=$path/$rest; break ;;
      esac
    done
    [ -w "$path" ] || die "no sysctl $name ($path)"
    echo "$value" >"$path" || die "cannot set $name=$value"
  done <<END
$sysctls
END
}
