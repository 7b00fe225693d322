"""covey-ks as systemd runs it (debian/covey.covey-ks.service), without systemd.

The test serves what systemd would: NOTIFY_SOCKET (sd_notify's datagrams),
the journal's native socket at /run/systemd/journal/socket (in the daemon's
own mount namespace, bound to a socket of the test's) and JOURNAL_STREAM
naming the daemon's stderr. The key server runs under setpriv with the
unit's user, bounding and ambient sets, and must serve registrations so;
READY=1 must come once it serves and never from a key server that cannot;
started as root with [server] user, it must become that user. covey-gm is
READY only once registered, and names a capability it lacks.
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

from netns_lab import GM_ADDRESS, GM_BIN, KS_BIN, Lab, gm_config, ks_config

USER, GROUP, UID = "nobody", "nogroup", 65534
# debian/covey.covey-ks.service: User=, CapabilityBoundingSet=, AmbientCapabilities=.
UNIT_CAPS = "-all,+net_bind_service"
CAP_NET_BIND_SERVICE = 1 << 10


def datagram_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    os.chmod(path, 0o666)  # the daemon runs as nobody
    return s


def journal_fields(datagram):
    """journald's native protocol: NAME=value lines, or NAME\\n, 64-bit LE length, value, \\n."""
    fields, i = {}, 0
    while i < len(datagram):
        nl = datagram.index(b"\n", i)
        line = datagram[i:nl]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            i = nl + 1
        else:
            name, n = line, int.from_bytes(datagram[nl + 1:nl + 9], "little")
            value = datagram[nl + 9:nl + 9 + n]
            i = nl + 9 + n + 1
        fields[name.decode()] = value.decode()
    return fields


def proc_status(pid):
    text = open(f"/proc/{pid}/status").read()
    return {k: v.strip() for k, v in re.findall(r"^(\w+):\s*(.*)$", text, re.M)}


class Listener:
    """What arrived on a datagram socket, kept in order."""

    def __init__(self, sock):
        self.sock, self.got = sock, []
        # Read all the time, as journald and systemd do: a unix datagram
        # socket queues only net.unix.max_dgram_qlen (10) datagrams, and a
        # daemon's entries beyond that would go to its stderr instead.
        self.lock = threading.Lock()
        sock.settimeout(0.2)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while self.sock.fileno() >= 0:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return  # closed at cleanup
            with self.lock:
                self.got.append((time.monotonic(), d))

    def drain(self):
        with self.lock:
            return list(self.got)

    def wait(self, predicate, timeout, what, proc=None, log=""):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, d in self.drain():
                if predicate(d):
                    return t, d
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {what} within {timeout} s (daemon {'exited ' + str(proc.poll()) if proc and proc.poll() is not None else 'running'}); "
                             f"got {[d for _, d in self.got]!r}\n{log}")


class ServiceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        lab = cls.lab = Lab("svc")
        cls.addClassCleanup(lab.down)
        lab.up()
        # nobody reaches its files through the run folder, and owns its own.
        os.chmod(lab.run, 0o711)
        cls.home = lab.run / "nobody"
        cls.home.mkdir(mode=0o700)
        key = cls.home / "ks-rekey.pem"
        key.write_bytes(lab.rekey_key.read_bytes())
        os.chmod(key, 0o600)
        for p in (cls.home, key):
            os.chown(p, UID, UID)

    def config(self, name, extra_server=(), state_dir=None):
        text = ks_config(self.lab, name=name, authorization=list(GM_ADDRESS.values()))
        text = text.replace(f'signing_key = "{self.lab.rekey_key}"', f'signing_key = "{self.home / "ks-rekey.pem"}"')
        state = state_dir or self.home / f"{name}-state"
        text = re.sub(r'state_dir = "[^"]*"', f'state_dir = "{state}"', text)
        text = text.replace("[server]\n", "[server]\n" + "".join(line + "\n" for line in extra_server))
        # The socket where nobody may make it; lab.ctl finds it by its usual name.
        text = text.replace(f'control_socket = "{self.lab.socket(name)}"', f'control_socket = "{self.home / name}.sock"')
        if not self.lab.socket(name).is_symlink():
            self.lab.socket(name).symlink_to(self.home / f"{name}.sock")
        return self.lab.write(f"{name}.toml", text)

    def start_ks(self, name, config, *, unit=True, journal=True, watchdog_usec=None):
        """covey-ks in the ks namespace with NOTIFY_SOCKET (and the journal) served by the test."""
        lab = self.lab
        notify = Listener(datagram_socket(lab.run / f"{name}-notify.sock"))
        jsock = Listener(datagram_socket(lab.run / f"{name}-journal.sock"))
        self.addCleanup(notify.sock.close)
        self.addCleanup(jsock.sock.close)
        log = lab.log_path(name)
        out = open(log, "wb")
        self.addCleanup(out.close)
        st = os.fstat(out.fileno())
        env = dict(os.environ, NOTIFY_SOCKET=str(lab.run / f"{name}-notify.sock"))
        if journal:
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        setpriv = ["setpriv", f"--reuid={USER}", f"--regid={GROUP}", "--clear-groups", f"--inh-caps={UNIT_CAPS}",
                   f"--ambient-caps={UNIT_CAPS}", f"--bounding-set={UNIT_CAPS}", "--no-new-privs"] if unit else []
        # A private /run in the daemon's own mount namespace, where the
        # journal's socket is the test's.
        script = ("mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p /run/systemd/journal && "
                  f"touch /run/systemd/journal/socket && mount --bind {lab.run}/{name}-journal.sock "
                  '/run/systemd/journal/socket && exec "$@"')
        cmd = lab.exec_args("ks", "unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                            *setpriv, KS_BIN, "--config", config)
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        lab.procs[name] = (p, log)
        return p, notify, jsock

    def journal_entry(self, jsock, pattern, timeout, proc):
        rx = re.compile(pattern)
        _, d = jsock.wait(lambda d: rx.search(journal_fields(d).get("MESSAGE", "")) is not None, timeout,
                          f"journal entry {pattern!r}", proc, self.lab.logs())
        return journal_fields(d)

    def test_as_the_unit_runs_it(self):
        """setpriv as the unit: READY=1 once it serves, WATCHDOG=1, reload, journal fields, STOPPING=1."""
        lab = self.lab
        # gm3 first, with no key server to register with: it says what it
        # does (STATUS=) but is not ready; it is once it has registered.
        gm_notify = Listener(datagram_socket(lab.run / "gm3-notify.sock"))
        self.addCleanup(gm_notify.sock.close)
        os.environ["NOTIFY_SOCKET"] = str(lab.run / "gm3-notify.sock")
        try:
            lab.start_gm("gm3", gm_config(lab, "gm3"))
        finally:
            del os.environ["NOTIFY_SOCKET"]
        gm_notify.wait(lambda d: d.startswith(b"STATUS=registering with KS 10.1.12.1"), 10, "gm3's first STATUS=",
                       lab.procs["gm3"][0], lab.logs("gm3"))
        self.assertFalse([d for _, d in gm_notify.got if b"READY=1" in d], "gm3 was READY with no key server")
        p, notify, jsock = self.start_ks("ks", self.config("ks"), watchdog_usec=1_000_000)
        _, ready = notify.wait(lambda d: b"READY=1" in d.split(b"\n"), 15, "READY=1", p, lab.logs())
        # It serves at READY: 848 bound, the control socket answering, the state saved.
        udp = lab.sh("ks", "ss", "-Hlun", "sport = :848").stdout
        self.assertIn("0.0.0.0:848", udp, f"READY=1 before covey-ks listens on 848: {udp!r}")
        self.assertTrue((self.home / "ks-state" / "ks-state").exists(), "READY=1 before the state was saved")
        group = lab.ctl("ks", "ks", "group")["groups"][0]
        self.assertEqual(group["name"], "GET_VPN")
        self.assertIn(b"STATUS=serving 1 group(s)", ready, ready)
        # Only the unit's privileges, and after binding not even those.
        s = proc_status(p.pid)
        self.assertEqual(s["Uid"].split()[:2], [str(UID)] * 2, s)
        self.assertEqual(int(s["CapEff"], 16) | int(s["CapPrm"], 16) | int(s["CapAmb"], 16), 0, s)
        self.assertEqual(int(s["CapBnd"], 16), CAP_NET_BIND_SERVICE, s)
        st = os.stat(self.home / "ks.sock")
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (UID, 0o660), "control socket owner and mode")
        print(f"service: READY=1 with {ready!r}; uid {UID}, no capability left after binding 848")

        # Members register with it; gm3 is READY then, not before.
        lab.start_gm("gm4", gm_config(lab, "gm4"))
        entries = {}
        for gm, addr in GM_ADDRESS.items():
            lab.wait_registered(gm, timeout=15)
            entries[gm] = self.journal_entry(jsock, f"Registration of GM {re.escape(addr)} complete", 10, p)
        _, d = gm_notify.wait(lambda d: b"READY=1" in d, 5, "gm3's READY=1 after registering", lab.procs["gm3"][0])
        self.assertIn(b"STATUS=registered with KS 10.1.12.1 for group GET_VPN", d)
        e = entries["gm3"]
        self.assertEqual({k: e.get(k) for k in ("PRIORITY", "SYSLOG_IDENTIFIER", "COVEY_PEER", "COVEY_GROUP", "COVEY_EVENT")},
                         {"PRIORITY": "6", "SYSLOG_IDENTIFIER": "covey-ks", "COVEY_PEER": "10.1.23.3",
                          "COVEY_GROUP": "GET_VPN", "COVEY_EVENT": "registration"}, e)
        self.assertRegex(e.get("COVEY_SEQ", ""), r"^\d+$", e)
        self.assertEqual(lab.log("ks"), "", "with JOURNAL_STREAM its stderr, covey-ks wrote plain lines too")

        # A rekey and its acknowledgements, with SPI and SEQ.
        lab.ctl("ks", "ks", "rekey", "GET_VPN")
        sent = self.journal_entry(jsock, r"^Sending rekey SEQ", 10, p)
        self.assertRegex(sent.get("COVEY_SPI", ""), r"^0x[0-9A-F]{8}$", sent)
        self.assertEqual((sent.get("COVEY_GROUP"), sent.get("COVEY_EVENT")), ("GET_VPN", "rekey"), sent)
        ack = self.journal_entry(jsock, r"^GM 10\.1\.2[34]\.[34] acknowledged rekey SEQ", 10, p)
        self.assertEqual(ack.get("COVEY_SEQ"), sent["COVEY_SEQ"], ack)
        self.assertIn(ack.get("COVEY_PEER"), GM_ADDRESS.values(), ack)
        self.assertEqual(ack.get("COVEY_GROUP"), "GET_VPN", ack)
        print(f"service: journal fields of a registration {e}, a rekey {sent}")

        # The watchdog: pings at half WATCHDOG_USEC (1 s: every 0.5 s).
        notify.drain()
        t0 = time.monotonic()
        time.sleep(1.6)
        pings = [t for t, d in notify.drain() if d == b"WATCHDOG=1" and t > t0]
        self.assertIn(len(pings), range(2, 5), f"WATCHDOG=1 pings in 1.6 s with WATCHDOG_USEC=1000000: {len(pings)}")

        # Reload: RELOADING=1, then READY=1 with the reload's outcome.
        n = len(notify.drain())
        p.send_signal(signal.SIGHUP)
        _, d = notify.wait(lambda d: b"RELOADING=1" in d, 10, "RELOADING=1", p)
        self.assertRegex(d, rb"MONOTONIC_USEC=\d+")
        notify.wait(lambda d: d.startswith(b"READY=1") and b"last reload: configuration reloaded" in d, 10,
                    "READY=1 after the reload", p)
        self.assertGreater(len(notify.got), n)

        p.send_signal(signal.SIGTERM)
        notify.wait(lambda d: d.startswith(b"STOPPING=1"), 10, "STOPPING=1", p)
        self.assertEqual(p.wait(10), 0, lab.logs("ks"))
        self.assertEqual(os.stat(self.home / "ks-state" / "ks-state").st_uid, UID)
        print(f"service: {len(pings)} WATCHDOG=1 in 1.6 s; RELOADING=1 and READY=1 around SIGHUP; STOPPING=1")

    def test_no_ready_from_a_key_server_that_cannot_serve(self):
        """A bad configuration or a state file it cannot read: exit 1 and never READY=1."""
        lab = self.lab
        bad = lab.write("ks-bad.toml", self.config("ks-bad").read_text().replace("identity = 134", "identity = 0x"))
        state = self.home / "ks-unreadable-state"
        state.mkdir(mode=0o700)
        (state / "ks-state").write_text("not a state file\n")
        os.chmod(state / "ks-state", 0o600)  # root's: nobody cannot read it
        os.chown(state, UID, UID)
        for name, config in (("ks-bad", bad), ("ks-unreadable", self.config("ks-unreadable", state_dir=state))):
            p, notify, _ = self.start_ks(name, config, journal=False)
            self.assertEqual(p.wait(15), 1, f"{name}: {lab.log(name)}")
            got = [d for _, d in notify.drain()]
            self.assertFalse([d for d in got if b"READY=1" in d], f"{name} sent READY=1 but exited: {got}")
            self.assertIn("not starting", lab.log(name), f"{name} did not say why")
            print(f"service: {name} exited 1 without READY=1: {lab.log(name).splitlines()[-1]}")

    def test_gm_names_a_missing_capability(self):
        """covey-gm without a capability its configuration needs stops at once, naming it."""
        lab = self.lab
        config = lab.write("gm-nocap.toml", gm_config(lab, "gm4", name="gm-nocap"))
        r = subprocess.run(lab.exec_args("gm4", "setpriv", "--bounding-set=-all,+net_admin", "--inh-caps=-all",
                                         GM_BIN, "--config", config), capture_output=True, text=True, timeout=15)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("not starting: missing capability CAP_NET_BIND_SERVICE (GDOI's UDP port 848)", r.stderr)
        print(f"service: {r.stderr.strip().splitlines()[-1]}")

    def test_started_as_root_becomes_the_user(self):
        """[server] user: after binding, nobody, no capabilities; its state and socket are nobody's."""
        lab = self.lab
        state = lab.run / "ks-root-state"  # made by covey-ks, as root, for nobody
        config = self.config("ks-root", extra_server=[f'user = "{USER}"'], state_dir=state)
        p, notify, _ = self.start_ks("ks-root", config, unit=False, journal=False)
        notify.wait(lambda d: b"READY=1" in d, 15, "READY=1", p, lab.logs("ks-root"))
        self.assertIn(f"running as user {USER}", lab.log("ks-root"))
        s = proc_status(p.pid)
        self.assertEqual(s["Uid"].split(), [str(UID)] * 4, s)
        self.assertEqual(s["Groups"], str(UID), s)
        self.assertEqual(int(s["CapEff"], 16) | int(s["CapPrm"], 16) | int(s["CapAmb"], 16), 0, s)
        for path in (state, state / "ks-state", self.home / "ks-root.sock"):
            self.assertEqual(os.stat(path).st_uid, UID, f"{path} is not {USER}'s")
        # It still serves: a member registers again, and the state is saved as nobody.
        if "gm4" in lab.procs:
            lab.stop("gm4")
        lab.start_gm("gm4", gm_config(lab, "gm4"))
        lab.wait_registered("gm4", timeout=15)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(10), 0, lab.logs("ks-root"))
        print(f"service: started as root, covey-ks became {USER} (uid {UID}, no capabilities) and registered gm4")


if __name__ == "__main__":
    unittest.main()
