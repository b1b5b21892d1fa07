"""Fixtures for the zmtpfw end-to-end tests: real processes on loopback.

- zmtpfw binary: $ZMTPFW_BIN, default <repo>/build/zmtpfw. Tests that need it
  are skipped when it is missing (set ZMTPFW_REQUIRE=1 to fail instead).
- libzmq C client: $ZMTPFW_BUILD/tests/zmq_client (default <repo>/build);
  compiled into a temp dir from tests/tools/zmq_client.c when absent.
- Every process is started in its own process group and killed (group-wide)
  at teardown, whatever the test outcome. Every test runs under a SIGALRM
  deadline (marker ``timeout_s``, default 30 s).
"""

import fcntl
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import zmq

REPO = Path(__file__).resolve().parents[2]
E2E = Path(__file__).resolve().parent
PY = "/usr/bin/python3"
DEFAULT_TIMEOUT_S = 30


def zmtpfw_bin():
    return Path(os.environ.get("ZMTPFW_BIN", REPO / "build" / "zmtpfw"))


# --- per-test deadline ----------------------------------------------------

class TestTimeout(Exception):
    pass


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout_s(n): fail the test after n seconds")
    config.addinivalue_line("markers", "nobinary: does not need the zmtpfw binary")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    m = item.get_closest_marker("timeout_s")
    limit = int(m.args[0]) if m else DEFAULT_TIMEOUT_S

    def _expired(signum, frame):
        raise TestTimeout(f"test exceeded {limit}s")

    old = signal.signal(signal.SIGALRM, _expired)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def pytest_collection_modifyitems(config, items):
    if zmtpfw_bin().exists() or os.environ.get("ZMTPFW_REQUIRE") == "1":
        return
    skip = pytest.mark.skip(reason=f"zmtpfw binary not found at {zmtpfw_bin()} (set ZMTPFW_BIN)")
    for it in items:
        if "nobinary" not in it.keywords:
            it.add_marker(skip)


# --- helpers --------------------------------------------------------------

_used_ports = set()


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now, never handed out twice per run."""
    for _ in range(200):
        s = socket.socket()
        s.bind((host, 0))
        p = s.getsockname()[1]
        s.close()
        if p not in _used_ports:
            _used_ports.add(p)
            return p
    raise RuntimeError("no free port")


def wait_until(pred, timeout, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def tcp_rows():
    """(local_port, remote_port, state, tx_queue, rx_queue) of every IPv4 TCP
    socket of this network namespace (/proc/net/tcp)."""
    rows = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            tx, rx = p[4].split(":")
            rows.append((int(p[1].split(":")[1], 16), int(p[2].split(":")[1], 16), p[3],
                         int(tx, 16), int(rx, 16)))
    return rows


def listen_queue(port):
    """Connections waiting in the accept queue of the IPv4 listener on port."""
    return sum(rx for lp, _, st, _, rx in tcp_rows() if lp == port and st == "0A")


def unsent(sock):
    """Bytes sock has not yet had acknowledged by its peer (TIOCOUTQ)."""
    buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
    return struct.unpack("i", buf)[0]


def unread_by_peer(sock):
    """Bytes sent on the loopback TCP socket sock that the process at the
    other end has not read yet (None once its end is no longer established)."""
    me, peer = sock.getsockname()[1], sock.getpeername()[1]
    rows = [rx for lp, rp, st, _, rx in tcp_rows() if lp == peer and rp == me and st == "01"]
    return unsent(sock) + rows[0] if rows else None


def wait_consumed(sock, timeout=10.0):
    """Wait until the process at the other end of the loopback TCP socket sock
    has read every byte sent on it: nothing unacknowledged on our side, nothing
    unread in its receive queue. zmtpfw parses what it reads in the callback
    that read it, so whatever it does with those bytes is done, and a signal
    sent from here on is handled after them. Replaces sleeping for 'zmtpfw
    has taken the bytes in'."""
    wait_until(lambda: unread_by_peer(sock) == 0, timeout,
               what=f"the peer to read all sent bytes (unread {unread_by_peer(sock)})")


def rss_kib(pid):
    """Resident set size of a live process, in KiB (0 if /proc has none)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    """Open file descriptors of a live process."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def _kill_group(proc, grace=3.0):
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def _lc_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}L" if not -(2**31) <= v < 2**31 else str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(_lc_value(x) for x in v) + " ]"
    raise TypeError(v)


def render_config(routes, mode="enforce", level="debug"):
    """libconfig text for the given route dicts. With ZMTPFW_THREADS=N in
    the environment every generated config runs N event loops."""
    out = [f'mode = "{mode}";', f'log = {{ level = "{level}"; format = "json"; }};', "routes = ("]
    if os.environ.get("ZMTPFW_THREADS"):
        out.insert(0, f'threads = {int(os.environ["ZMTPFW_THREADS"])};')
    for i, r in enumerate(routes):
        out.append("  {")
        for k, v in r.items():
            out.append(f"    {k} = {_lc_value(v)};")
        out.append("  }" + ("," if i < len(routes) - 1 else ""))
    out.append(");")
    return "\n".join(out) + "\n"


def parse_log_line(line):
    try:
        d = json.loads(line)
        if isinstance(d, dict):
            return d
    except ValueError:
        pass
    return {"event": "_nonjson", "raw": line}


def matches(d, crit):
    for k, v in crit.items():
        if callable(v):
            if not v(d.get(k)):
                return False
        elif d.get(k) != v:
            return False
    return True


# --- zmtpfw process -----------------------------------------------------------

class Zmtpfw:
    def __init__(self, args, workdir, name="zmtpfw", env=None, stderr=None):
        """stderr: a descriptor to log to instead of name.log (whoever
        reads it copies the lines to log_path for the helpers below)."""
        self.args = [str(zmtpfw_bin())] + [str(a) for a in args]
        self.log_path = Path(workdir) / f"{name}.log"
        self.out_path = Path(workdir) / f"{name}.out"
        self.expect_exit = False
        with open(self.log_path, "wb") as err, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err if stderr is None else stderr,
                                         start_new_session=True, cwd=workdir,
                                         env=None if env is None else {**os.environ, **env})
        self.routes = {}

    def raw_lines(self):
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return []
        text = data.decode("utf-8", "replace")
        lines = text.split("\n")
        if not text.endswith("\n"):
            lines = lines[:-1]  # an incomplete last line is still being written
        return [l for l in lines if l.strip()]

    def lines(self):
        return [parse_log_line(l) for l in self.raw_lines()]

    def events(self, event=None, **crit):
        return [d for d in self.lines() if (event is None or d.get("event") == event) and matches(d, crit)]

    def tail(self, n=80):
        return "\n".join(self.raw_lines()[-n:])

    def wait_event(self, event, timeout=5.0, **crit):
        deadline = time.monotonic() + timeout
        while True:
            ev = self.events(event, **crit)
            if ev:
                return ev[0]
            if self.proc.poll() is not None:
                raise AssertionError(f"zmtpfw exited (rc={self.proc.returncode}) while waiting for "
                                     f"{event} {crit}; log:\n{self.tail()}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"no '{event}' {crit} log line within {timeout}s; log:\n{self.tail()}")
            time.sleep(0.02)

    def close_of(self, addr, timeout=5.0):
        """The close line of the client connection from addr ((host, port),
        e.g. RawClient.local), waited for."""
        return self.wait_event("close", timeout, peer="%s:%d" % tuple(addr[:2]))

    def wait_listening(self, names, timeout=10.0):
        for n in names:
            self.wait_event("listening", timeout, route=n)

    def alive(self):
        return self.proc.poll() is None

    def assert_alive(self):
        assert self.alive(), f"zmtpfw died rc={self.proc.returncode}; log:\n{self.tail()}"

    def stop(self):
        _kill_group(self.proc)


# --- worker process -------------------------------------------------------------

class Worker:
    def __init__(self, workdir, sock_type="PULL", bind=None, no_unpickle=False, name=None, load="loads",
                 extra_args=()):
        self.type = sock_type
        if bind is None:
            self.port = free_port()
            bind = f"tcp://127.0.0.1:{self.port}"
        elif bind.startswith("tcp://"):
            self.port = int(bind.rsplit(":", 1)[1])
        else:
            self.port = None
        self.bind = bind
        name = name or f"worker-{sock_type.lower()}-{self.port or 'ipc'}"
        self.record = Path(workdir) / f"{name}.jsonl"
        self.record.touch()
        self.err_path = Path(workdir) / f"{name}.err"
        args = [PY, str(E2E / "worker.py"), "--type", sock_type, "--bind", bind, "--record", str(self.record)]
        if no_unpickle:
            args.append("--no-unpickle")
        args += ["--load", load] + [str(a) for a in extra_args]
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=err, start_new_session=True, cwd=workdir)
        self._wait_ready()

    @property
    def upstream(self):
        if self.port is not None:
            return f"127.0.0.1:{self.port}"
        assert self.bind.startswith("ipc://")
        return "unix:" + self.bind[len("ipc://"):]

    def _wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        buf = b""
        while b"ready" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError(f"worker not ready: {self.err_path.read_text(errors='replace')}")
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    continue
                buf += chunk

    def records(self):
        out = []
        text = self.record.read_text()
        lines = text.split("\n")
        if not text.endswith("\n"):
            lines = lines[:-1]
        for l in lines:
            if l.strip():
                out.append(json.loads(l))
        return out

    def messages(self):
        """Received messages as lists of frames (bytes, or the {len, sha256} dict)."""
        return [[bytes.fromhex(f) if isinstance(f, str) else f for f in r["frames"]]
                for r in self.records() if r["type"] == "msg"]

    def message_records(self):
        return [r for r in self.records() if r["type"] == "msg"]

    def conn_events(self):
        return [r for r in self.records() if r["type"] == "event"]

    def wait_messages(self, n, timeout=5.0):
        wait_until(lambda: len(self.messages()) >= n, timeout,
                   what=f"{n} message(s) at the worker (have {len(self.messages())})")
        return self.messages()

    def wait_message(self, frames, timeout=5.0):
        """Wait until a message equal to frames arrived; returns its index."""
        def found():
            msgs = self.messages()
            for i, m in enumerate(msgs):
                if m == list(frames):
                    return i + 1
            return 0
        try:
            return wait_until(found, timeout, what=f"message {frames!r:.200} at the worker") - 1
        except AssertionError:
            raise AssertionError(f"message {frames!r:.200} not received within {timeout}s; worker has: "
                                 f"{[[f[:40] for f in m] if all(isinstance(f, bytes) for f in m) else m for m in self.messages()][:20]!r:.2000}")

    def stop(self):
        _kill_group(self.proc)


class TcpSink:
    """A plain TCP listener standing in for a worker; counts connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.accepted = []

    @property
    def upstream(self):
        return f"127.0.0.1:{self.port}"

    def poll(self):
        while True:
            try:
                c, a = self.sock.accept()
            except BlockingIOError:
                return self.accepted
            self.accepted.append((c, a))

    def close(self):
        for c, _ in self.accepted:
            c.close()
        self.sock.close()


# --- fixtures ----------------------------------------------------------------------

@pytest.fixture
def workdir(tmp_path):
    return tmp_path


@pytest.fixture
def marker(tmp_path):
    p = tmp_path / "PWNED"
    assert not p.exists()
    return p


@pytest.fixture
def procs():
    """Registry of started processes; all killed at teardown (tails printed,
    shown by pytest only when the test fails)."""
    started = []
    yield started
    crashed = []
    for p in reversed(started):
        if isinstance(p, Zmtpfw):
            rc = p.proc.poll()
            if rc is not None and not p.expect_exit:
                crashed.append(f"zmtpfw exited unexpectedly rc={rc}")
            print(f"--- {p.log_path.name} (last lines) ---\n{p.tail(120)}")
        elif isinstance(p, Worker):
            err = p.err_path.read_text(errors="replace") if p.err_path.exists() else ""
            if err.strip():
                print(f"--- {p.err_path.name} ---\n{err[-3000:]}")
        p.stop()
    if crashed:
        pytest.fail("; ".join(crashed), pytrace=False)


@pytest.fixture
def start_worker(procs, workdir):
    def _start(sock_type="PULL", **kw):
        w = Worker(workdir, sock_type, **kw)
        procs.append(w)
        return w
    return _start


@pytest.fixture
def tcp_sink():
    s = TcpSink()
    yield s
    s.close()


MIB = 1 << 20


def make_route(name, upstream, **kw):
    r = {
        "name": name,
        "listen": f"127.0.0.1:{free_port()}",
        "upstream": upstream,
        "allow": ["127.0.0.1/32"],
        "handshake_timeout_ms": 5000,
    }
    r.update(kw)
    return r


@pytest.fixture
def start_zmtpfw(procs, workdir):
    """start_zmtpfw(routes, mode=...) -> Zmtpfw, started from a generated
    config, after every route logged `listening`. Route dicts from
    make_route(); zf.port(name) gives a route's listen port."""
    count = [0]

    def _start(routes, mode="enforce", level="debug", wait=True):
        count[0] += 1
        cfg = Path(workdir) / f"zmtpfw{count[0]}.conf"
        cfg.write_text(render_config(routes, mode, level))
        zf = Zmtpfw(["-c", cfg], workdir, name=f"zmtpfw{count[0]}")
        zf.config_path = cfg
        procs.append(zf)
        zf.routes = {r["name"]: r for r in routes}
        zf.port = lambda name: int(zf.routes[name]["listen"].rsplit(":", 1)[1])
        zf.endpoint = lambda name: "tcp://" + zf.routes[name]["listen"]
        if wait:
            zf.wait_listening([r["name"] for r in routes])
        return zf
    return _start


@pytest.fixture
def splice_fw(procs, workdir):
    """splice_fw(upstream, mode=..., **route) -> Zmtpfw with one route "w"
    to upstream ("HOST:PORT" or "unix:PATH") and metrics on zf.mport."""
    count = [0]

    def _start(upstream, mode="enforce", **kw):
        count[0] += 1
        mport = free_port()
        kw.setdefault("max_frame_size", 256 * MIB)
        kw.setdefault("max_message_size", 256 * MIB)
        route = make_route("w", upstream, **kw)
        name = f"zmtpfw-splice{count[0]}"
        cfg = workdir / f"{name}.conf"
        cfg.write_text(render_config([route], mode) +
                       f'metrics = {{ listen = "127.0.0.1:{mport}"; probe_upstream = false; }};\n')
        zf = Zmtpfw(["-c", cfg], workdir, name=name)
        procs.append(zf)
        zf.mport = mport
        zf.routes = {"w": route}
        zf.port = lambda name: int(route["listen"].rsplit(":", 1)[1])
        zf.endpoint = lambda name: "tcp://" + route["listen"]
        zf.wait_listening(["w"])
        zf.wait_event("metrics-listening", 10)
        return zf
    return _start



@pytest.fixture
def start_zmtpfw_args(procs, workdir):
    """Run zmtpfw with raw command-line args (no config generated)."""
    def _start(args, name="zmtpfw-cli"):
        zf = Zmtpfw(args, workdir, name=name)
        procs.append(zf)
        return zf
    return _start


@pytest.fixture
def zctx():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def zsock(ctx, kind, endpoint, source=None, timeout_ms=5000):
    """A connected pyzmq socket with bounded send/recv."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDTIMEO, timeout_ms)
    s.setsockopt(zmq.RCVTIMEO, timeout_ms)
    s.setsockopt(zmq.RECONNECT_IVL, 50)
    assert endpoint.startswith("tcp://")
    s.connect(f"tcp://{source}:0;{endpoint[6:]}" if source else endpoint)
    return s


@pytest.fixture(scope="session")
def zmq_client_bin(tmp_path_factory):
    build = Path(os.environ.get("ZMTPFW_BUILD", REPO / "build"))
    p = build / "tests" / "zmq_client"
    if p.exists():
        return p
    src = REPO / "tests" / "tools" / "zmq_client.c"
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip(f"{p} missing and no C compiler to build it")
    out = tmp_path_factory.mktemp("zmq_client") / "zmq_client"
    try:
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libzmq"], capture_output=True,
                               text=True, check=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        flags = ["-lzmq"]
    r = subprocess.run([cc, "-std=c11", "-O1", "-Wall", "-o", str(out), str(src)] + flags,
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.fail(f"building zmq_client failed:\n{r.stderr}")
    return out
