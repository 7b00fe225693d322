# A three-member etcd for the cooperative key servers of the lab (sourced,
# POSIX sh): `make lab-coop` (lab.sh up --coop) and the VM tier's
# coop_failover.sh. Debian's etcd-server, all three members inside one
# namespace on its loopback (so only the key servers there reach it), on
# fixed ports: clients 2379, 2389, 2399; peers 2380, 2390, 2400. Raft
# timers twice etcd's defaults (heartbeat 200 ms, election 2 s): under TCG on
# a busy host the leader misses 100 ms heartbeats. A lease is then at least
# 3 s (1.5 election timeouts); the lab's key servers use 5.
#   lab_etcd_start NS DIR     starts the members, data and logs in DIR/e<i>
#   lab_etcd_wait NS SECONDS  until every member answers healthy
# lab_etcd_endpoints is the client URLs as a TOML list's inside.

lab_etcd_endpoints='"http://127.0.0.1:2379", "http://127.0.0.1:2389", "http://127.0.0.1:2399"'

lab_etcd_start() { # NS DIR
  le_ns=$1 le_dir=$2
  command -v etcd >/dev/null || lab_fail "etcd is not installed (tools/install-deps.sh installs etcd-server)"
  mkdir -p "$le_dir" || lab_fail "cannot make $le_dir"
  le_cluster=e0=http://127.0.0.1:2380,e1=http://127.0.0.1:2390,e2=http://127.0.0.1:2400
  for le_i in 0 1 2; do
    le_c=http://127.0.0.1:$((2379 + 10 * le_i)) le_p=http://127.0.0.1:$((2380 + 10 * le_i))
    # exec all the way down: the pid file holds etcd's own pid.
    (exec ip netns exec "$le_ns" etcd --name "e$le_i" --data-dir "$le_dir/e$le_i" \
      --listen-client-urls "$le_c" --advertise-client-urls "$le_c" \
      --listen-peer-urls "$le_p" --initial-advertise-peer-urls "$le_p" \
      --initial-cluster "$le_cluster" --initial-cluster-token covey-lab --initial-cluster-state new \
      --heartbeat-interval 200 --election-timeout 2000 \
      --logger zap --log-level warn >"$le_dir/e$le_i.log" 2>&1) &
    echo $! >"$le_dir/e$le_i.pid"
  done
}

lab_etcd_wait() { # NS SECONDS
  le_i=0
  until ip netns exec "$1" env ETCDCTL_API=3 etcdctl --dial-timeout 2s --command-timeout 2s \
    --endpoints http://127.0.0.1:2379,http://127.0.0.1:2389,http://127.0.0.1:2399 endpoint health >/dev/null 2>&1; do
    le_i=$((le_i + 1))
    [ $le_i -le "$2" ] || lab_fail "etcd in $1 is not healthy after $2 s"
    sleep 1
  done
}
