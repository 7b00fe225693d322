# Shared by the VM tier's scenario scripts (sourced, POSIX sh). The script
# sets NAME (its name in messages) and work (a scratch folder) first, and
# its cleanup kills $tcpdump_pid.

tcpdump_pid=

fail() {
  echo "$NAME: FAIL: $*"
  # A script's own state dump (counters, kernel tables), once.
  if [ -n "${DIAGNOSE:-}" ]; then d=$DIAGNOSE; DIAGNOSE=; $d; fi
  # What the kernel asked for and could not load (run-in-vm logs it).
  [ -s /run/covey-vm-modprobe.log ] && echo "$NAME: kernel module requests: $(sort -u /run/covey-vm-modprobe.log | tr '\n' ' ')"
  exit 1
}

# One `ip -batch` per namespace: under TCG every exec costs a noticeable
# fraction of a second (binaries come over 9p). Keys are masked in errors.
batch() { # NS WHAT, commands on stdin
  ip -n "$1" -batch - >"$work/batch.out" 2>&1 ||
    fail "$2 in $1 failed: $(grep -v '^$' "$work/batch.out" | tail -3 | sed -E 's/[0-9a-fA-F]{16,}/<key>/g')"
}

# tcpdump on interface IF of namespace NS into $work/wire.pcap, returning
# once it listens; stop it with kill -INT $tcpdump_pid.
capture_start() { # NS IF
  ip netns exec "$1" tcpdump -i "$2" -nn -U --immediate-mode -w "$work/wire.pcap" 2>"$work/tcpdump.err" &
  tcpdump_pid=$!
  i=0
  until grep -q "listening on" "$work/tcpdump.err"; do
    i=$((i + 1))
    [ $i -le 300 ] || fail "tcpdump did not start within 30 s: $(cat "$work/tcpdump.err")"
    kill -0 $tcpdump_pid 2>/dev/null || fail "tcpdump exited: $(cat "$work/tcpdump.err")"
    sleep 0.1
  done
}

# Polls CONDITION (a shell command line, eval'ed) once a second until it
# holds; fails naming WHAT after SECONDS. The scenario scripts wait on what
# they are about to check (a counter, a socket, a packet's fate), not a
# fixed sleep that is too long on a quiet machine and too short on a busy one.
wait_until() { # SECONDS WHAT CONDITION
  wu_i=0
  until eval "$3"; do
    wu_i=$((wu_i + 1))
    [ $wu_i -le "$1" ] || fail "$2 did not happen within $1 s"
    sleep 1
  done
}
