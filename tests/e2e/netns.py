#!/usr/bin/python3
"""Network-namespace topologies for the deployment tests (test_deploy_netns.py).

As a library:
  - ``netns_unavailable()``: why namespaces cannot be used here, or None.
  - ``Lan``: a private L2 segment (a bridge in its own namespace) and hosts
    (one namespace each, one veth into the bridge, an address in 198.18.0.0/24,
    the RFC 2544 benchmarking range: nothing outside this machine). Every
    namespace carries the test process's pid in its name; ``close()`` kills
    whatever still runs inside them and deletes them, and a new ``Lan`` first
    deletes those left behind by test processes that no longer exist.
  - ``NsWorker`` / ``NsZmtpfw``: conftest's Worker and Zmtpfw, started inside a
    namespace with ``ip netns exec`` (which execs, so the pid and the process
    group stay those of the worker / zmtpfw and conftest's teardown applies).
  - ``client(ns, ...)``: runs this file as a peer inside a namespace.

As a script (the peers, run inside a namespace by ``client``), one JSON line
on stdout:
  netns.py zmq TYPE ENDPOINT MSG...   pyzmq PUSH/REQ/DEALER; each MSG is hex
      frames joined by ',' (or @FILE holding that). Waits for the ZMTP handshake (socket monitor),
      sends every message (REQ/DEALER: and reads each reply), prints
      {"handshake": bool, "sent": n, "replies": [[hex, ...], ...]}.
      Without a handshake within --wait seconds nothing is sent.
  netns.py raw HOST PORT HEX          raw TCP: connect, send HEX at once (a
      greeting, READY and data frames pipelined, as an attacker would),
      read until EOF or --wait; prints {"connect": "ok"|errno name,
      "received": hex, "closed": bool}.
"""

import argparse
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

E2E = Path(__file__).resolve().parent
PY = "/usr/bin/python3"
SUBNET = "198.18.0"  # RFC 2544 benchmarking range; lives only inside our namespaces
PREFIX = "zft"       # namespace names: zft<pid>-<role>
_NAME_RE = re.compile(r"^%s(\d+)-" % PREFIX)


def _run(*args, check=True, timeout=20):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: rc={r.returncode} {r.stderr.strip()}")
    return r


def netns_unavailable():
    """A reason the namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (ip netns, veth, iptables)"
    for tool in ("ip", "iptables", "setpriv", "unshare"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":") + ["/usr/sbin", "/sbin"]):
            return f"'{tool}' not installed (Debian: iproute2, iptables, util-linux)"
    name = f"{PREFIX}{os.getpid()}-probe"
    try:
        _run("ip", "netns", "add", name)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return f"'ip netns add' fails here: {e}"
    try:
        r = _run("ip", "netns", "exec", name, "iptables", "-w", "-t", "nat", "-S", check=False)
        if r.returncode != 0:
            return f"iptables nat table unusable in a namespace: {r.stderr.strip()}"
    finally:
        _run("ip", "netns", "del", name, check=False)
    return None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_ns_pids(name):
    """SIGKILL every process still inside namespace name (all started by this test)."""
    r = _run("ip", "netns", "pids", name, check=False)
    for tok in r.stdout.split():
        try:
            os.kill(int(tok), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass


def _delete_ns(name):
    _kill_ns_pids(name)
    _run("ip", "netns", "del", name, check=False)


def sweep_stale():
    """Delete namespaces left by test processes that died without cleaning up."""
    r = _run("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NAME_RE.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            _delete_ns(name)


class Host:
    def __init__(self, lan, role, index):
        self.role = role
        self.ns = f"{PREFIX}{os.getpid()}-{role}"
        self.ip = f"{SUBNET}.{index}"
        self.lan = lan

    def exec_prefix(self):
        return ["ip", "netns", "exec", self.ns]

    def run(self, *args, check=True, timeout=20):
        return _run(*self.exec_prefix(), *args, check=check, timeout=timeout)


class Lan:
    """A bridge namespace plus hosts. Use as a context manager."""

    def __init__(self):
        sweep_stale()
        self.names = []
        self.hosts = {}
        self.bridge_ns = f"{PREFIX}{os.getpid()}-lan"
        try:
            self._add_ns(self.bridge_ns)
            _run("ip", "-n", self.bridge_ns, "link", "set", "lo", "up")
            _run("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def _add_ns(self, name):
        _run("ip", "netns", "add", name)
        self.names.append(name)

    def add_host(self, role):
        idx = len(self.hosts) + 2
        h = Host(self, role, idx)
        self._add_ns(h.ns)
        port = f"p{idx}"
        _run("ip", "link", "add", "eth0", "netns", h.ns, "type", "veth", "peer", "name", port,
             "netns", self.bridge_ns)
        _run("ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0")
        _run("ip", "-n", self.bridge_ns, "link", "set", port, "up")
        _run("ip", "-n", h.ns, "link", "set", "lo", "up")
        _run("ip", "-n", h.ns, "addr", "add", f"{h.ip}/24", "dev", "eth0")
        _run("ip", "-n", h.ns, "link", "set", "eth0", "up")
        self.hosts[role] = h
        return h

    def close(self):
        for name in reversed(self.names):
            _delete_ns(name)
        self.names = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def client(host, *args, timeout=30):
    """Run this file as a peer inside host's namespace; returns its JSON result."""
    argv, tmp = [], []
    for a in map(str, args):
        if len(a) > 8192:  # beyond what argv takes comfortably: hand it over in a file
            fd, path = tempfile.mkstemp(prefix="zft-arg-", suffix=".hex")
            with os.fdopen(fd, "w") as f:
                f.write(a)
            tmp.append(path)
            a = "@" + path
        argv.append(a)
    try:
        r = host.run(PY, str(Path(__file__).resolve()), *argv, check=False, timeout=timeout)
    finally:
        for path in tmp:
            os.unlink(path)
    if r.returncode != 0:
        raise AssertionError(f"peer in {host.ns} failed rc={r.returncode}: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _import_conftest():
    sys.path.insert(0, str(E2E))
    import conftest  # noqa: E402  (the e2e fixtures' process classes)
    return conftest


def make_ns_classes():
    """NsWorker and NsZmtpfw: conftest's classes started inside a namespace."""
    cf = _import_conftest()

    class NsWorker(cf.Worker):
        def __init__(self, host, workdir, port, sock_type="PULL", bind_ip="0.0.0.0", name=None):
            self.type = sock_type
            self.port = port
            self.bind = f"tcp://{bind_ip}:{port}"
            name = name or f"worker-{host.role}-{port}"
            self.record = Path(workdir) / f"{name}.jsonl"
            self.record.touch()
            self.err_path = Path(workdir) / f"{name}.err"
            args = host.exec_prefix() + [PY, str(E2E / "worker.py"), "--type", sock_type,
                                         "--bind", self.bind, "--record", str(self.record)]
            with open(self.err_path, "wb") as err:
                self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                             stderr=err, start_new_session=True, cwd=workdir)
            self._wait_ready()

    class NsZmtpfw(cf.Zmtpfw):
        def __init__(self, host, args, workdir, name="zmtpfw"):
            self.args = host.exec_prefix() + [str(cf.zmtpfw_bin())] + [str(a) for a in args]
            self.log_path = Path(workdir) / f"{name}.log"
            self.out_path = Path(workdir) / f"{name}.out"
            self.expect_exit = False
            with open(self.log_path, "wb") as err, open(self.out_path, "wb") as out:
                self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=err, start_new_session=True, cwd=workdir)
            self.routes = {}

    return NsWorker, NsZmtpfw


# --- peers (script mode) -----------------------------------------------------

def _peer_zmq(a):
    import zmq
    from zmq.utils.monitor import recv_monitor_message

    ctx = zmq.Context()
    s = ctx.socket(getattr(zmq, a.type))
    s.setsockopt(zmq.LINGER, 5000)
    s.setsockopt(zmq.SNDTIMEO, 5000)
    s.setsockopt(zmq.RCVTIMEO, 5000)
    s.setsockopt(zmq.RECONNECT_IVL, 100)
    mon = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    s.connect(a.endpoint)
    handshake = False
    deadline = time.monotonic() + a.wait
    while time.monotonic() < deadline:
        if mon.poll(50):
            ev = recv_monitor_message(mon)
            if ev["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                handshake = True
                break
    out = {"handshake": handshake, "sent": 0, "replies": []}
    if handshake:
        for m in a.messages:
            if m.startswith("@"):
                m = Path(m[1:]).read_text()
            frames = [bytes.fromhex(h) for h in m.split(",")]
            s.send_multipart(frames)
            out["sent"] += 1
            if a.type in ("REQ", "DEALER"):
                try:
                    out["replies"].append([f.hex() for f in s.recv_multipart()])
                except zmq.Again:  # no reply within RCVTIMEO (e.g. the request was dropped)
                    out["replies"].append(None)
                    break
    mon.close(0)
    s.close()  # LINGER: what was sent is flushed before exit
    ctx.term()
    print(json.dumps(out), flush=True)


def _peer_raw(a):
    data = bytes.fromhex(a.hex)
    out = {"connect": "ok", "received": "", "closed": False}
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(a.wait)
    try:
        s.connect((a.host, a.port))
    except OSError as e:
        out["connect"] = errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__
        print(json.dumps(out), flush=True)
        return
    try:
        s.sendall(data)
    except OSError:
        pass
    buf = b""
    deadline = time.monotonic() + a.wait
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            out["closed"] = True
            break
        if not chunk:
            out["closed"] = True
            break
        buf += chunk
    s.close()
    out["received"] = buf.hex()
    print(json.dumps(out), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    z = sub.add_parser("zmq")
    z.add_argument("type", choices=["PUSH", "REQ", "DEALER"])
    z.add_argument("endpoint")
    z.add_argument("messages", nargs="*")
    z.add_argument("--wait", type=float, default=5.0)
    r = sub.add_parser("raw")
    r.add_argument("host")
    r.add_argument("port", type=int)
    r.add_argument("hex")
    r.add_argument("--wait", type=float, default=3.0)
    a = ap.parse_args(argv)
    if a.cmd == "zmq":
        _peer_zmq(a)
    else:
        _peer_raw(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
