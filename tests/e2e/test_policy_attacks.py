"""Attacks on routes where trusted peers legitimately send pickles
(allow_pickle_from + pickle_globals, issue 11): every gadget of ENGINES.md
and every shape the policy must refuse (gadgets.py).

For each payload two tests:
- test_control_lands: sent straight to a real worker (worker.py with the
  payload's --decode mode), it lands: the marker file appears, the listener
  gets a connection, the worker dies, or (import-only payloads) the worker's
  record shows the import. Without this the firewall half would prove
  nothing.
- test_firewall_drops: the same bytes from a trusted peer (127.0.0.2, in
  allow_pickle_from) through zmtpfw on a route with
  pickle_globals = [ "@sglang", "@torch", "@numpy", <what the shape needs> ]:
  nothing lands, the worker never receives the message, a legit message
  sent after it does arrive, and the drop line says reason "pickle-global"
  with the right "global" (the first import not allowed, "unknown", or the
  tag of the refused shape). Msgpack and nested forms are also sent from an
  untrusted peer (127.0.0.3) on a route without pickle_globals: reason
  "pickle".
"""

import importlib.util
import pickle
import socket
import threading
from pathlib import Path

import pytest
import zmq

import gadgets as GD
import payloads as P
from conftest import E2E, make_route, wait_until, zsock

NAMES = list(GD.NAMES)
PROFILES = ["@sglang", "@torch", "@numpy"]
TRUSTED, UNTRUSTED = "127.0.0.2", "127.0.0.3"


class Listener:
    """Loopback TCP listener that accepts and closes every connection at
    once (so a payload's connect, TLS or HTTP attempt ends quickly), counting them."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.count += 1
            c.close()

    def close(self):
        self._stop = True
        self._t.join(2)
        self.sock.close()


@pytest.fixture
def listener():
    ls = Listener()
    yield ls
    ls.close()


@pytest.fixture
def planted():
    """Planted files outside the test directory (/dev/shm) are removed after."""
    paths = []
    yield paths
    for f in paths:
        Path(f).unlink(missing_ok=True)


def build(name, tmp_path, listener, planted=None):
    _, meta = GD.meta(name)
    missing = sorted(m for m in meta.get("needs", ()) if m not in GD.NOT_MODULES
                     and importlib.util.find_spec(m) is None)
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)} (Debian: python3-<name>, idle-python3.11)")
    ctx = GD.Ctx(marker=tmp_path / "PWNED", cwd=tmp_path, port=listener.port)
    p = GD.build(name, ctx)
    if planted is not None:
        planted.extend(f for f in p.planted if not str(f).startswith(str(tmp_path)))
    p.plant()
    return p


def start_victim(start_worker, p):
    extra = ["--decode", p.decode]
    if "attackmods" in p.needs:
        extra += ["--sys-path", str(E2E)]
    return start_worker("PULL", extra_args=extra)


def landed(p, w, listener):
    """A string saying how the payload landed, or "" if it did not (yet)."""
    kind = p.check[0]
    if kind == "file":
        return f"{p.check[1]} exists" if Path(p.check[1]).exists() else ""
    if kind == "glob":
        hits = sorted(Path(p.check[1]).glob(p.check[2]))
        return f"{hits[0]} exists" if hits else ""
    if kind == "connect":
        return f"listener got {listener.count} connection(s)" if listener.count else ""
    if kind == "changed":
        try:
            now = Path(p.check[1]).read_bytes()
        except FileNotFoundError:
            return f"{p.check[1]} removed"
        return f"{p.check[1]} now {now[:20]!r}" if now != p.check[2] else ""
    if kind == "exit":
        rc = w.proc.poll()
        return f"worker exited rc={rc}" if rc is not None else ""
    for r in w.message_records():
        if r["frames"] and r["frames"][0] == p.data.hex():
            if kind == "received":
                return "worker received it"
            if kind == "loaded" and r["loaded"][0] and p.check[1] in r["loaded"][0]:
                return f"worker loaded {r['loaded'][0][:80]}"
    return ""


def sentinels(i):
    """A JSON frame and an import-free pickle: legit traffic on any route."""
    return [P.json_frame({"op": "generate", "seq": i}), pickle.dumps({"sentinel": i}, protocol=5)]


# --- the payloads themselves (no zmtpfw) -------------------------------------------

@pytest.mark.nobinary
@pytest.mark.timeout_s(120)
def test_payload_table_covers_engines_gadgets(tmp_path, listener, planted):
    """Every gadget module of ENGINES.md is imported by at least one payload
    (as CPython's find_class sees it), and every shape says which global the
    drop line must name."""
    modules = set()
    for name in NAMES:
        target, meta = GD.meta(name)
        p = build(name, tmp_path, listener, planted)
        modules |= {i.split(":")[0] for i in GD.imports_of(p.data) + sorted(p.expect) + [target]}
        if target.startswith("shape"):
            assert meta.get("expect"), f"{name}: a shape must say which global the drop reports"
        assert p.expect, name
    for mod in GD.ENGINES_GADGET_MODULES:
        assert any(m == mod or m.startswith(mod + ".") for m in modules), f"no payload for {mod}"


@pytest.mark.nobinary
@pytest.mark.timeout_s(120)
@pytest.mark.parametrize("name", NAMES)
def test_control_lands(name, tmp_path, start_worker, zctx, listener, planted):
    p = build(name, tmp_path, listener, planted)
    assert not landed(p, _NoWorker, listener), "landed before it was sent"
    w = start_victim(start_worker, p)
    s = zsock(zctx, zmq.PUSH, f"tcp://127.0.0.1:{w.port}")
    s.send(p.data)
    if p.check[0] != "exit":
        for f in sentinels(1):
            s.send(f)
        w.wait_message([sentinels(1)[1]], timeout=90)
    how = wait_until(lambda: landed(p, w, listener), 90, what=f"{name} to land ({p.check})")
    print(f"{name}: {how}")
    if p.check[0] not in ("exit",):
        assert [p.data] in w.messages(), "the worker did not record the attack frame"


class _NoWorker:
    proc = type("_", (), {"poll": staticmethod(lambda: None)})

    @staticmethod
    def message_records():
        return []


# --- through zmtpfw ----------------------------------------------------------------

def _assert_dropped(p, w, zf, listener, route, reason, sent_before):
    assert not landed(p, w, listener), f"ATTACK LANDED through zmtpfw: {landed(p, w, listener)}"
    assert [p.data] not in w.messages(), "the attack message reached the worker"
    assert w.proc.poll() is None, "the worker died"
    d = zf.wait_event("drop", reason=reason, route=route)
    assert d["frame"] == 0, d
    return d


@pytest.mark.timeout_s(120)
@pytest.mark.parametrize("name", NAMES)
def test_firewall_drops(name, tmp_path, start_worker, start_zmtpfw, zctx, listener, planted):
    p = build(name, tmp_path, listener, planted)
    w = start_victim(start_worker, p)
    routes = [make_route("t", w.upstream, allow=["127.0.0.0/8"], allow_pickle_from=[f"{TRUSTED}/32"],
                         pickle_globals=PROFILES + list(p.allow))]
    if p.untrusted:
        routes.append(make_route("u", w.upstream, allow=["127.0.0.0/8"],
                                 allow_pickle_from=[f"{TRUSTED}/32"]))
    zf = start_zmtpfw(routes)

    t = zsock(zctx, zmq.PUSH, zf.endpoint("t"), source=TRUSTED)
    t.send(p.data)
    for f in sentinels(1):
        t.send(f)
    w.wait_message([sentinels(1)[1]], timeout=30)
    d = _assert_dropped(p, w, zf, listener, "t", "pickle-global", 1)
    assert d.get("global") in p.expect, f"drop names {d.get('global')!r}, expected one of {sorted(p.expect)}: {d}"
    if ":" in d["global"]:  # an import, not a shape tag
        assert d["global"] in d.get("globals", []), d
    assert len(w.messages()) == 2, w.messages()

    if p.untrusted:
        u = zsock(zctx, zmq.PUSH, zf.endpoint("u"), source=UNTRUSTED)
        u.send(p.data)
        for f in sentinels(2):
            u.send(f)
        w.wait_message([sentinels(2)[1]], timeout=30)
        _assert_dropped(p, w, zf, listener, "u", "pickle", 2)
        assert len(w.messages()) == 4, w.messages()
