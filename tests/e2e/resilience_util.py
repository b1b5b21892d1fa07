"""Shared by test_resilience.py and test_signals.py: the fw fixture (zmtpfw
from a generated config, with rewrite() and hup() for reloads), the raw_worker
fixture (a hand-written ZMTP worker that shows exactly what was relayed), the
autouse _enough_fds fixture (import it by name into each test module), and
small helpers for messages and connections. SANITIZE / SLOW / scaled(): under
the ASan build (ZMTPFW_SANITIZE=1) counts shrink and deadlines stretch.
"""

import os
import resource
import signal
import socket
import struct
import threading

import pytest

import payloads as P
import zmtp_raw as Z
from conftest import Zmtpfw, render_config, wait_until

SANITIZE = os.environ.get("ZMTPFW_SANITIZE") == "1"
SLOW = 2.5 if SANITIZE else 1.0  # deadline stretch


def scaled(n, asan):
    return asan if SANITIZE else n


def clean(i):
    return P.json_frame({"i": i})


def render(routes, top=None, mode="enforce", level="debug"):
    """render_config plus top-level keys (drain_timeout_ms, ...)."""
    text = render_config(routes, mode, level)
    extra = "".join(f"{k} = {_lc(v)};\n" for k, v in (top or {}).items())
    return extra + text


def _lc(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@pytest.fixture
def fw(procs, workdir):
    """fw(routes, top={...}) -> Zmtpfw started from a generated config, after
    every route logged `listening`. zf.rewrite(routes, top) replaces the
    file; zf.hup() sends SIGHUP and returns the reload result line."""
    count = [0]

    def _start(routes, top=None, wait=True, env=None):
        count[0] += 1
        cfg = workdir / f"res{count[0]}.conf"
        cfg.write_text(render(routes, top))
        zf = Zmtpfw(["-c", cfg], workdir, name=f"res{count[0]}", env=env)
        procs.append(zf)
        zf.config_path = cfg
        zf.routes = {r["name"]: r for r in routes}
        zf.port = lambda name: int(zf.routes[name]["listen"].rsplit(":", 1)[1])
        zf.endpoint = lambda name: "tcp://" + zf.routes[name]["listen"]

        def rewrite(new_routes, new_top=None, text=None):
            tmp = cfg.with_suffix(".tmp")
            tmp.write_text(text if text is not None else render(new_routes, new_top))
            os.replace(tmp, cfg)  # atomic: a reload never reads half a file
            if new_routes is not None:
                zf.routes.update({r["name"]: r for r in new_routes})

        def hup(timeout=5.0 * SLOW):
            done = len(zf.events("reload", result=lambda r: r in ("ok", "failed")))
            os.kill(zf.proc.pid, signal.SIGHUP)
            wait_until(lambda: len(zf.events("reload", result=lambda r: r in ("ok", "failed"))) > done,
                       timeout, what=f"reload result; log:\n{zf.tail(20)}")
            return zf.events("reload", result=lambda r: r in ("ok", "failed"))[done]

        zf.rewrite = rewrite
        zf.hup = hup
        if wait:
            zf.wait_listening([r["name"] for r in routes])
        return zf
    return _start


@pytest.fixture(autouse=True)
def _enough_fds():
    """500 slow peers cost zmtpfw ~1000 descriptors: raise the soft limit for
    the children this test starts, restore it afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def count_msgs(w):
    """Messages recorded by a worker, cheaply (no JSON decoding)."""
    try:
        data = w.record.read_bytes()
    except FileNotFoundError:
        return 0
    return data.count(b'{"type": "msg"')


def send_one(port, tag, source=None):
    with Z.RawClient("127.0.0.1", port, source=source) as c:
        c.handshake("PUSH")
        c.send(Z.encode_frame(clean(tag)))


def is_open(sock):
    """True while the peer has neither closed nor reset the connection. Reads
    (and discards) whatever it sent meanwhile: data followed by a FIN must
    not pass for an open connection."""
    prev = sock.gettimeout()
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(prev)


class RawWorker:
    """A worker speaking ZMTP by hand (PULL), to see exactly what zmtpfw
    relays: each connection's complete messages, and what was left over when
    it ended (bytes of a partial frame, frames of an unfinished message).
    With discard=True it only counts bytes after the handshake (a 2^62-byte
    frame costs it nothing)."""

    def __init__(self, discard=False):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.discard = discard
        self.conns = []
        self.lock = threading.Lock()
        self.stop = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    @property
    def upstream(self):
        return f"127.0.0.1:{self.port}"

    def _accept(self):
        self.sock.settimeout(0.1)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            rec = {"messages": [], "partial_bytes": 0, "open_frames": 0, "eof": False,
                   "bytes": 0, "error": None}
            with self.lock:
                self.conns.append(rec)
            t = threading.Thread(target=self._serve, args=(c, rec), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, c, rec):
        buf = bytearray()
        cur = []
        phase = "greeting"  # then "ready" (the client's READY), then "traffic"
        try:
            c.sendall(Z.full_greeting() + Z.ready_command("PULL"))
            c.settimeout(0.1)
            while not self.stop:
                try:
                    data = c.recv(1 << 20)
                except socket.timeout:
                    continue
                except OSError:
                    data = b""
                if not data:
                    rec["eof"] = True
                    break
                if self.discard and phase == "traffic":
                    rec["bytes"] += len(data)
                    continue
                buf += data
                if phase == "greeting":
                    if len(buf) < 64:
                        continue
                    del buf[:64]
                    phase = "ready"
                while True:
                    if len(buf) < 2:
                        break
                    f = buf[0]
                    hl = 9 if f & Z.FLAG_LONG else 2
                    if len(buf) < hl:
                        break
                    size = struct.unpack(">Q", bytes(buf[1:9]))[0] if hl == 9 else buf[1]
                    if phase == "ready":
                        if len(buf) < hl + size:
                            break
                        del buf[:hl + size]
                        phase = "traffic"
                        if self.discard:
                            rec["bytes"] += len(buf)
                            buf.clear()
                            break
                        continue
                    if len(buf) < hl + size:
                        break
                    body = bytes(buf[hl:hl + size])
                    del buf[:hl + size]
                    if f & Z.FLAG_COMMAND:
                        continue
                    cur.append(body)
                    if not f & Z.FLAG_MORE:
                        with self.lock:
                            rec["messages"].append(cur)
                        cur = []
        except Exception as e:  # recorded, asserted by the tests
            rec["error"] = repr(e)
        finally:
            rec["partial_bytes"] = len(buf)
            rec["open_frames"] = len(cur)
            c.close()

    def messages(self):
        with self.lock:
            return [m for r in self.conns for m in r["messages"]]

    def close(self):
        self.stop = True
        self.sock.close()
        for t in self.threads:
            t.join(2)


@pytest.fixture
def raw_worker():
    made = []

    def _make(**kw):
        w = RawWorker(**kw)
        made.append(w)
        return w
    yield _make
    for w in made:
        w.close()
