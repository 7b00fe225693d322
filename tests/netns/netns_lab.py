"""The reference lab (tools/lab/lab.sh) as a test fixture.

A Lab is one copy of the lab under its own namespace prefix and run folder,
so a test class never meets a running `make lab` or another class. The
topology comes from lab.sh itself; the daemons are started here, with
configurations the test writes, so every process is ours to stop. Failure
messages carry the daemons' logs.
"""

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("COVEY_BUILD", TOP / "build"))
LAB_SH = TOP / "tools" / "lab" / "lab.sh"
COVEYCTL = BUILD / "tools" / "coveyctl" / "coveyctl"
KS_BIN = BUILD / "userspace" / "apps" / "covey-ks"
GM_BIN = BUILD / "userspace" / "apps" / "covey-gm"

PSK = "covey-netns-test-not-a-secret"
GM_ADDRESS = {"gm3": "10.1.23.3", "gm4": "10.1.24.4"}
REGISTERED = "Registration to KS {ks} complete"

_live_labs = []


def teardown_all():
    for lab in list(_live_labs):
        lab.down()


def _on_signal(signum, _frame):
    # Nothing of ours may outlive the run: not on SIGTERM, not when run.py's
    # deadline (SIGALRM) comes before ctest's TIMEOUT, whose kill cannot be caught.
    why = "deadline passed" if signum == signal.SIGALRM else signal.Signals(signum).name
    print(f"netns tier: {why}; tearing down {len(_live_labs)} lab(s)", file=sys.stderr, flush=True)
    teardown_all()
    os._exit(1 if signum == signal.SIGALRM else 128 + signum)


atexit.register(teardown_all)
for _s in (signal.SIGTERM, signal.SIGALRM):
    signal.signal(_s, _on_signal)


LAB_ACL = ("deny udp any eq 848 any eq 848", "permit ip 192.168.0.0/16 192.168.0.0/16")


def ks_config(lab, *, name="ks", address="10.1.12.1", listen=None, authorization=None, pki=None, psk=PSK,
              lifetime=3600, rekey=(), acl=LAB_ACL, metrics=None):
    """REKEY: extra [group.rekey] lines, e.g. ['retransmit_period = 1']. ACL: the group's lines.
    METRICS: [metrics] listen, e.g. "127.0.0.1:9848"."""
    lines = _metrics(metrics) + ["[server]", f'address = "{address}"']
    if listen:
        lines.append("listen = [" + ", ".join(f'"{a}"' for a in listen) + "]")
    lines += [f'state_dir = "{lab.run}/{name}-state"', f'control_socket = "{lab.socket(name)}"', "", "[isakmp]"]
    lines += _isakmp(psk, pki, "ks")
    lines += ["", "[[group]]", 'name = "GET_VPN"', "identity = 134",
              "acl = [" + ", ".join(f'"{a}"' for a in acl) + "]",
              f"lifetime = {lifetime}"]
    if authorization is not None:
        lines.append("authorization = [" + ", ".join(f'"{a}"' for a in authorization) + "]")
    lines += ["", "[group.rekey]", f'signing_key = "{lab.rekey_key}"', *rekey]
    if not any(r.startswith("transport") for r in rekey):
        lines.append('transport = "unicast"')
    return "\n".join(lines) + "\n"


def gm_config(lab, node, *, name=None, key_servers=("10.1.12.1",), pki=None, psk=PSK, local_address=None,
              metrics=None):
    lines = _metrics(metrics) + ["[member]", f'local_address = "{local_address or GM_ADDRESS[node]}"', 'wan_interface = "wan0"',
             'lan_interfaces = ["lan0"]', f'state_dir = "{lab.run}/{name or node}-state"',
             f'control_socket = "{lab.socket(name or node)}"',
             # The host kernel has no ESP: these tests are about keys; the
             # data path is the VM tier's.
             "data_path = false", "", "[group]", 'name = "GET_VPN"', "identity = 134",
             "key_servers = [" + ", ".join(f'"{k}"' for k in key_servers) + "]", "", "[isakmp]"]
    lines += _isakmp(psk, pki, node)
    return "\n".join(lines) + "\n"


def _metrics(listen):
    return ["[metrics]", f'listen = "{listen}"', ""] if listen else []


def _isakmp(psk, pki, node):
    lines = [f'pre_shared_key = "{psk}"'] if psk else []
    if pki:
        lines += [f'certificate = "{pki[node + ".crt"]}"', f'private_key = "{pki[node + ".key"]}"',
                  f'ca = "{pki["ca.crt"]}"']
    return lines


class Lab:
    def __init__(self, tag):
        self.tag = tag
        self.prefix = f"cvt-{tag}-"
        self.run = Path(tempfile.mkdtemp(prefix=f"covey-netns-{tag}-"))
        os.chmod(self.run, 0o700)
        self.procs = {}    # name -> (Popen, log path)
        self.captures = {}  # path -> Popen
        self.rekey_key = self.run / "ks-rekey.pem"
        self._env = dict(os.environ, COVEY_BUILD=str(BUILD), COVEY_LAB_RUN=str(self.run),
                         COVEY_LAB_PREFIX=self.prefix)
        self._up = False

    # -- topology -----------------------------------------------------------

    def up(self):
        for b in (KS_BIN, GM_BIN, COVEYCTL):
            if not b.exists():
                raise RuntimeError(f"{b} missing: build first (cmake --build {BUILD})")
        _live_labs.append(self)
        self._up = True
        self._sh("topology")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", str(self.rekey_key)], check=True, capture_output=True)
        os.chmod(self.rekey_key, 0o600)
        return self

    def down(self):
        if not self._up:
            return
        self._up = False
        # Each step on its own: one that fails must not leave the rest standing.
        for p in [*self.captures.values(), *(p for p, _ in self.procs.values())]:
            try:
                _stop(p)
            except Exception as e:  # noqa: BLE001
                print(f"netns lab {self.tag}: stopping {p.args}: {e}", file=sys.stderr)
        self.captures.clear()
        self.procs.clear()
        # lab.sh down kills whatever else runs in the namespaces and deletes them.
        r = subprocess.run([str(LAB_SH), "down"], env=self._env, capture_output=True, text=True)
        if r.returncode:
            print(f"netns lab {self.tag}: lab.sh down: {r.stderr}", file=sys.stderr)
        if self in _live_labs:
            _live_labs.remove(self)
        if os.environ.get("COVEY_NETNS_KEEP"):
            print(f"netns lab {self.tag}: run folder kept at {self.run}")
        else:
            shutil.rmtree(self.run, ignore_errors=True)

    def _sh(self, *args):
        r = subprocess.run([str(LAB_SH), *args], env=self._env, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"lab.sh {' '.join(args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")

    def ns(self, node):
        return self.prefix + node

    def exec_args(self, node, *cmd):
        return ["ip", "netns", "exec", self.ns(node), *map(str, cmd)]

    def sh(self, node, *cmd, check=True):
        return subprocess.run(self.exec_args(node, *cmd), capture_output=True, text=True, check=check)

    # -- daemons ------------------------------------------------------------

    def socket(self, name):
        return self.run / f"{name}.sock"

    def keylog(self, name):
        return self.run / f"{name}.keylog"

    def log_path(self, name):
        return self.run / f"{name}.log"

    def write(self, filename, text):
        path = self.run / filename
        path.write_text(text)
        return path

    def start(self, name, node, program, config_text, log_level="info"):
        """Starts covey-ks or covey-gm in NODE's namespace as NAME (log, socket and keylog names)."""
        if name in self.procs:
            self.stop(name)
        config = self.write(f"{name}.toml", config_text)
        log = self.log_path(name)
        with open(log, "wb") as out:
            p = subprocess.Popen(self.exec_args(node, program, "--config", config, "--keylog", self.keylog(name),
                                                "--log-level", log_level),
                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs[name] = (p, log)
        return p

    def start_ks(self, config_text, name="ks", **kw):
        p = self.start(name, "ks", KS_BIN, config_text, **kw)
        self.wait_log(name, "control socket", 10, f"{name} to start")
        return p

    def start_gm(self, node, config_text, name=None, **kw):
        return self.start(name or node, node, GM_BIN, config_text, **kw)

    def stop(self, name):
        p, _ = self.procs.pop(name)
        _stop(p)

    def alive(self, name):
        return name in self.procs and self.procs[name][0].poll() is None

    def log(self, name):
        try:
            return self.log_path(name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def logs(self, *names, tail=60):
        """The logs of NAMES (default: every daemon) for a failure message."""
        out = []
        for n in names or sorted({p.stem for p in self.run.glob("*.log")}):
            lines = self.log(n).splitlines()
            state = ""
            if n in self.procs:
                rc = self.procs[n][0].poll()
                state = " (running)" if rc is None else f" (exited {rc})"
            out.append(f"--- {n}.log{state}, last {min(tail, len(lines))} of {len(lines)} lines ---")
            out += lines[-tail:]
        return "\n".join(out)

    def wait_for(self, predicate, timeout, what, logs=()):
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{self.logs(*logs)}")
            time.sleep(0.1)

    def wait_log(self, name, pattern, timeout, what=None, since=0):
        rx = re.compile(pattern)

        def found():
            if name in self.procs and self.procs[name][0].poll() is not None:
                raise AssertionError(f"{name} exited ({self.procs[name][0].poll()}) while waiting for "
                                     f"{what or pattern!r}\n{self.logs()}")
            return rx.search(self.log(name)[since:])

        return self.wait_for(found, timeout, what or f"{name} to log {pattern!r}", logs=())

    def wait_registered(self, name, ks="10.1.12.1", timeout=10):
        return self.wait_log(name, re.escape(REGISTERED.format(ks=ks)), timeout, f"{name} to register with KS {ks}")

    # -- control socket -----------------------------------------------------

    def ctl(self, node, *args, name=None, check=True):
        """coveyctl ARGS --json against NAME's socket, from NODE's namespace; the parsed reply."""
        r = subprocess.run(self.exec_args(node, COVEYCTL, *args, "--json", "--socket", self.socket(name or node)),
                           capture_output=True, text=True, timeout=15)
        if check and r.returncode:
            raise AssertionError(f"coveyctl {' '.join(args)} on {name or node} failed ({r.returncode}): "
                                 f"{r.stderr}{r.stdout}\n{self.logs()}")
        try:
            return json.loads(r.stdout)
        except ValueError:
            raise AssertionError(f"coveyctl {' '.join(args)} printed no JSON: {r.stdout!r} {r.stderr!r}")

    # -- captures -----------------------------------------------------------

    def start_capture(self, node, interface, filename, expression="udp", immediate=True, buffer_kib=None):
        """tcpdump of EXPRESSION on NODE's INTERFACE ("any": every interface) to FILENAME.
        IMMEDIATE: each packet is in the file at once; without, and with a BUFFER_KIB kernel
        buffer, packets reach it up to a second late, but a burst (a rekey of a thousand
        members) is not dropped while tcpdump catches up."""
        path = self.run / filename
        err = self.run / (filename + ".stderr")
        with open(err, "wb") as e:
            # -Z root: Debian's tcpdump otherwise drops to a user who cannot write here.
            p = subprocess.Popen(self.exec_args(node, "tcpdump", "-i", interface,
                                                *(["--immediate-mode"] if immediate else []), "-U", "-n",
                                                *(["-B", buffer_kib] if buffer_kib else []),
                                                "-Z", "root", "-w", path, expression),
                                 stdout=subprocess.DEVNULL, stderr=e)
        self.captures[path] = p
        self.wait_for(lambda: "listening on" in err.read_text(errors="replace") or p.poll() is not None, 10,
                      f"tcpdump on {node} {interface} to start")
        if p.poll() is not None:
            raise RuntimeError(f"tcpdump failed: {err.read_text()}")
        return path

    def stop_capture(self, path):
        _stop(self.captures.pop(path), signal.SIGINT)
        return path


def _stop(p, sig=signal.SIGTERM):
    if p.poll() is not None:
        return
    p.send_signal(sig)
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def make_pki(folder, names=("ks", "gm3", "gm4"), ca_name="covey netns test CA"):
    """A throwaway RSA 2048 CA and one certificate per name (CN=name), with the openssl CLI.
    Returns {"ca.crt": path, "<name>.crt": path, "<name>.key": path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def ssl(*args):
        r = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"openssl {' '.join(map(str, args))}: {r.stderr}")

    pki = {"ca.crt": folder / "ca.crt", "ca.key": folder / "ca.key"}
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", pki["ca.key"], "-out", pki["ca.crt"],
        "-days", "2", "-subj", f"/O=covey tests/CN={ca_name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ext = folder / "leaf.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n")
    for n in names:
        key, csr, crt = folder / f"{n}.key", folder / f"{n}.csr", folder / f"{n}.crt"
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/O=covey tests/CN={n}")
        ssl("x509", "-req", "-in", csr, "-CA", pki["ca.crt"], "-CAkey", pki["ca.key"], "-CAcreateserial",
            "-days", "2", "-out", crt, "-extfile", ext)
        os.chmod(key, 0o600)
        pki[f"{n}.crt"], pki[f"{n}.key"] = crt, key
    return pki
