"""A real etcd cluster (Debian's etcd-server) for the netns tier.

The Python twin of tests/common/etcd_cluster.h: three `etcd` processes with
short raft timers, their data in a scratch folder, killed (SIGKILL) and
restarted with the same data and ports, everything removed at the end.

Members run on the caller's loopback on free ports, or on given hosts and
ports, optionally each under a command prefix such as
["ip", "netns", "exec", "ks1"] so that the members live in the lab's
namespaces. The cluster is polled with etcdctl (Debian's etcd-client) under
the same prefix, since a namespace's addresses are not reachable from here.

    with EtcdCluster() as cluster:
        cluster.endpoints()      # ["http://127.0.0.1:41234", ...]
        cluster.kill(cluster.leader())
        cluster.start(0)
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def _free_ports(n):
    """Ports this namespace's kernel hands out as free, all held until every one is picked."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdCluster:
    def __init__(self, members=3, hosts=None, ports=None, prefix=None, workdir=None, start=True, patience=20.0,
                 client_hosts=()):
        """members: how many; hosts: one address for all or one per member
        (default 127.0.0.1); ports: [(client, peer), ...] per member (default:
        free loopback ports here, or 2379/2380 + 10*i under a prefix, where
        the namespace's own loopback is ours); prefix: a command prefix for
        all members or one per member (None: run here); client_hosts: more
        addresses every member takes clients on, on its client port, so that
        clients that reach etcd each at its own address can be cut off one
        by one (endpoints(host))."""
        self.binary = shutil.which("etcd")
        self.etcdctl = shutil.which("etcdctl")
        if not self.binary or not self.etcdctl:
            raise RuntimeError("etcd is not installed (Debian packages etcd-server etcd-client)")
        if hosts is None:
            hosts = "127.0.0.1"
        self.hosts = [hosts] * members if isinstance(hosts, str) else list(hosts)
        if prefix is None or (prefix and isinstance(prefix[0], str)):
            self.prefixes = [list(prefix or [])] * members
        else:
            self.prefixes = [list(p or []) for p in prefix]
        if ports is None:
            if any(self.prefixes):
                ports = [(2379 + 10 * i, 2380 + 10 * i) for i in range(members)]
            else:
                free = _free_ports(2 * members)
                ports = [(free[2 * i], free[2 * i + 1]) for i in range(members)]
        if not (len(self.hosts) == len(ports) == len(self.prefixes) == members):
            raise ValueError("EtcdCluster: hosts, ports and prefixes need one entry per member")
        self.dir = workdir or tempfile.mkdtemp(prefix="covey-etcd-")
        self._own_dir = workdir is None
        self.patience = patience
        self.names = [f"m{i}" for i in range(members)]
        self.client_ports = [c for c, _ in ports]
        self.client_hosts = list(client_hosts)
        self.client_urls = [f"http://{_url_host(h)}:{c}" for h, (c, _) in zip(self.hosts, ports)]
        self.peer_urls = [f"http://{_url_host(h)}:{p}" for h, (_, p) in zip(self.hosts, ports)]
        self.initial_cluster = ",".join(f"{n}={u}" for n, u in zip(self.names, self.peer_urls))
        self.token = "covey-test-" + os.path.basename(self.dir)
        self.procs = [None] * members
        if start:
            try:
                for i in range(members):
                    self.start(i)
                self.leader()
            except BaseException:
                self.close()
                raise

    # -- members -----------------------------------------------------------------

    def endpoints(self, host=None):
        """Every member's client URL, or with HOST (one of client_hosts) the URL at that address."""
        if host is None:
            return list(self.client_urls)
        if host not in self.client_hosts and any(h != host for h in self.hosts):
            raise ValueError(f"EtcdCluster: {host} is not one of the client_hosts {self.client_hosts}")
        return [f"http://{_url_host(host)}:{c}" for c in self.client_ports]

    def log_path(self, i):
        return os.path.join(self.dir, self.names[i] + ".log")

    def start(self, i):
        """Starts member i (again: same data folder, same ports)."""
        if self.procs[i] is not None:
            return
        args = self.prefixes[i] + [
            self.binary,
            "--name", self.names[i],
            "--data-dir", os.path.join(self.dir, self.names[i]),
            "--listen-client-urls", ",".join([self.client_urls[i]] + [
                f"http://{_url_host(h)}:{self.client_ports[i]}" for h in self.client_hosts if h != self.hosts[i]]),
            "--advertise-client-urls", self.client_urls[i],
            "--listen-peer-urls", self.peer_urls[i],
            "--initial-advertise-peer-urls", self.peer_urls[i],
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--logger", "zap",
            "--log-level", "error",
        ]
        with open(self.log_path(i), "ab") as log:
            # Its own session, so kill() takes whatever the prefix started too.
            self.procs[i] = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)

    def kill(self, i):
        """SIGKILL to member i (and its prefix's processes), reaped."""
        p = self.procs[i]
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
        self.procs[i] = None

    def restart(self, i):
        self.kill(i)
        self.start(i)

    def running(self, i):
        return self.procs[i] is not None and self.procs[i].poll() is None

    # -- the cluster ---------------------------------------------------------------

    def status(self, i, timeout=1.0):
        """Member i's /v3/maintenance/status as etcdctl prints it, or None."""
        cmd = self.prefixes[i] + [self.etcdctl, "--endpoints", self.client_urls[i], "--dial-timeout", f"{timeout}s",
                                  "--command-timeout", f"{timeout}s", "endpoint", "status", "-w", "json"]
        try:
            out = subprocess.run(cmd, capture_output=True, timeout=timeout + 5, env=dict(os.environ, ETCDCTL_API="3"))
        except subprocess.TimeoutExpired:
            return None
        if out.returncode != 0:
            return None
        try:
            return json.loads(out.stdout)[0]["Status"]
        except (ValueError, LookupError, TypeError):
            return None

    def leader(self, patience=None):
        """The index of the member that says it leads, once one does."""
        deadline = time.monotonic() + (self.patience if patience is None else patience)
        while time.monotonic() < deadline:
            for i in range(len(self.names)):
                p = self.procs[i]
                if p is not None and p.poll() is not None:
                    self.procs[i] = None
                    raise RuntimeError(f"etcd member {self.names[i]} exited ({p.returncode}):\n{self.logs()}")
            for i in range(len(self.names)):
                if not self.running(i):
                    continue
                s = self.status(i)
                if s and s.get("leader") and s["leader"] == s.get("header", {}).get("member_id"):
                    return i
            time.sleep(0.05)
        raise RuntimeError(f"etcd: no leader within the patience:\n{self.logs()}")

    def logs(self):
        parts = []
        for i, name in enumerate(self.names):
            try:
                with open(self.log_path(i), errors="replace") as f:
                    text = f.read()
            except OSError:
                text = ""
            parts.append(f"--- {name} ({self.client_urls[i]}):\n{text}")
        return "".join(parts)

    def close(self):
        for i in range(len(self.procs)):
            self.kill(i)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    stop = close

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def _url_host(host):
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    # A smoke run: python3 etcd_cluster.py [ip netns exec NAME]
    import sys

    prefix = sys.argv[1:] or None
    with EtcdCluster(prefix=prefix) as c:
        first = c.leader()
        print("endpoints", c.endpoints(), "leader", c.names[first])
        c.kill(first)
        second = c.leader()
        print("after kill -9 of", c.names[first], "leader", c.names[second])
        c.start(first)
        c.leader()
        print("restarted", c.names[first], "running", c.running(first), "status", bool(c.status(first, timeout=3)))
