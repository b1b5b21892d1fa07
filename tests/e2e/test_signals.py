"""Operator signals: SIGHUP reloads (every 100 ms under load, invalid and
unbindable files, routes added and removed, allowlists narrowed, a
restart-only key, policy changes reaching live connections), SIGTERM drains
(no message cut in half, the message in flight completed, the drain
deadline, signals while draining), and a SIGHUP or SIGTERM sent at the
first `listening` line (held until the handlers are in, then handled).

Every test runs on loopback and is bounded (timeout_s). Under the ASan build
export ZMTPFW_SANITIZE=1: counts shrink and deadlines stretch.
"""

import fcntl
import os
import re
import signal
import socket
import struct
import threading
import time

import pytest
import zmq

import payloads as P
import zmtp_raw as Z
from conftest import Zmtpfw, free_port, make_route, render_config, wait_consumed, wait_until, zsock
from resilience_util import SLOW, clean, count_msgs, is_open, render, scaled, send_one
from resilience_util import _enough_fds, fw, raw_worker  # noqa: F401 (fixtures, found by name; _enough_fds is autouse)


# --- helpers ---------------------------------------------------------------

def connect_refused(port):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        return True
    finally:
        s.close()
    return False


# --- SIGHUP ---------------------------------------------------------------------

@pytest.mark.timeout_s(45)
def test_sighup_every_100ms_under_load_loses_nothing(start_worker, fw, zctx):
    """Reloads every 100 ms (alternating configs, one of which adds a second
    route) while a PUSH client streams messages and other clients connect,
    send one message and leave: every message arrives, in order per client,
    every reload succeeds, and the streaming connection is never closed."""
    n_msgs = scaled(6000, 2000)
    w = start_worker("PULL")
    w2 = start_worker("PULL")
    base = make_route("w", w.upstream, handshake_timeout_ms=5000)
    extra = make_route("x", w2.upstream)
    variants = [([base], None), ([dict(base, handshake_timeout_ms=6000), extra], {"drain_timeout_ms": 3000})]
    zf = fw(variants[0][0])
    push = zsock(zctx, zmq.PUSH, zf.endpoint("w"), timeout_ms=int(10000 * SLOW))
    push.send(clean(-1))
    w.wait_message([clean(-1)])

    stop = threading.Event()
    hups = [0]
    errors = []

    def n_results():
        data = zf.log_path.read_bytes()
        return data.count(b'"event":"reload","result":"ok"') + data.count(b'"event":"reload","result":"failed"')

    def reloader():
        # Each SIGHUP once the previous one's result is logged: two sent
        # while zmtpfw is not scheduled would be one pending signal.
        k = 0
        while not stop.is_set():
            k += 1
            routes, top = variants[k % 2]
            zf.rewrite(routes, top)
            done = n_results()
            os.kill(zf.proc.pid, signal.SIGHUP)
            hups[0] += 1
            try:
                wait_until(lambda: n_results() > done, 10 * SLOW, interval=0.01, what="the reload result")
            except AssertionError as e:
                errors.append(f"{e}; log:\n{zf.tail(20)}")
                return
            stop.wait(0.1)

    churn_sent = []

    def churner():
        j = 0
        while not stop.is_set():
            send_one(zf.port("w"), 100000 + j)
            churn_sent.append(100000 + j)
            j += 1
            stop.wait(0.05)

    threads = [threading.Thread(target=reloader, daemon=True), threading.Thread(target=churner, daemon=True)]
    for t in threads:
        t.start()
    try:
        # A steady stream with reloads interleaved by construction: every
        # 200 messages, the stream waits for the reloader's next SIGHUP, so
        # n_msgs / 200 of them land mid-stream however the two threads are
        # scheduled.
        for i in range(n_msgs):
            push.send(clean(i))
            if i % 50 == 49:
                time.sleep(0.02)
            if i % 200 == 199:
                seen = hups[0]
                wait_until(lambda: hups[0] > seen or errors, 20 * SLOW, interval=0.01, what="the next SIGHUP")
                assert not errors, errors[0]
        # Keep reloading a little after the last send.
        seen = hups[0]
        wait_until(lambda: hups[0] >= seen + 5 or errors, 20 * SLOW, interval=0.05, what="5 more SIGHUPs")
        assert not errors, errors[0]
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    want = [[clean(i)] for i in range(-1, n_msgs)]
    wait_until(lambda: count_msgs(w) >= len(want) + len(churn_sent), 20 * SLOW, interval=0.2,
               what=f"{len(want)} + {len(churn_sent)} messages (have {count_msgs(w)})")
    msgs = w.messages()
    churn = {clean(j) for j in churn_sent}
    assert [m for m in msgs if m[0] not in churn] == want, "streamed messages lost or reordered"
    assert sorted(m[0] for m in msgs if m[0] in churn) == sorted(churn)
    wait_until(lambda: len(zf.events("reload", result=lambda r: r in ("ok", "failed"))) >= hups[0],
               10 * SLOW, what=f"{hups[0]} reload results")
    results = zf.events("reload", result=lambda r: r in ("ok", "failed"))
    assert hups[0] >= n_msgs // 200 + 5, f"only {hups[0]} SIGHUPs sent"
    assert all(r["result"] == "ok" for r in results), [r for r in results if r["result"] != "ok"][:3]
    print(f"reload under load: {hups[0]} SIGHUPs, {len(want)} streamed + {len(churn_sent)} "
          f"one-shot messages sent, {len(msgs)} received")
    # The streaming connection never closed; only the churners did, cleanly.
    bad = [e for e in zf.events("close", route="w") if e.get("reason") != "client-closed"]
    assert not bad, bad[:3]
    zf.assert_alive()
    print(f"{n_msgs} streamed + {len(churn_sent)} churn messages across {hups[0]} reloads")


def _line_of(text, needle):
    for i, line in enumerate(text.split("\n"), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in config")


@pytest.mark.timeout_s(30)
def test_sighup_with_invalid_file_keeps_running_config(start_worker, fw, zctx):
    w = start_worker("PULL")
    route = make_route("w", w.upstream)
    zf = fw([route])
    push = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    push.send(clean(0))
    w.wait_message([clean(0)])
    path = str(zf.config_path)

    # Semantically invalid: the first change would lock us out, a later line
    # is out of range. Nothing of it may apply.
    text = render([dict(route, allow=["10.0.0.0/8"], max_connections=0)])
    zf.rewrite(None, text=text)
    r = zf.hup()
    line = _line_of(text, "max_connections")
    assert r["result"] == "failed", r
    assert r["detail"].startswith(f"{path}:{line}: "), r
    # Syntax error on a known line.
    good = render([route])
    lines = good.split("\n")
    lines.insert(2, "this is = = not libconfig;")
    zf.rewrite(None, text="\n".join(lines))
    r = zf.hup()
    assert r["result"] == "failed" and r["detail"].startswith(f"{path}:3: "), r
    # An unreadable file.
    os.unlink(zf.config_path)
    r = zf.hup()
    assert r["result"] == "failed" and path in r["detail"], r

    # The running config is intact: live and new connections from
    # 127.0.0.1 work, limits unchanged.
    push.send(clean(1))
    w.wait_message([clean(1)])
    send_one(zf.port("w"), 2)
    w.wait_message([clean(2)])
    assert not zf.events("reject"), zf.events("reject")
    # And a good file is taken again.
    zf.rewrite([route])
    assert zf.hup()["result"] == "ok"
    zf.assert_alive()


@pytest.mark.timeout_s(30)
def test_sighup_that_cannot_bind_changes_nothing(start_worker, fw, zctx):
    """The new file is valid but one of its new listen ports is taken: the
    reload fails with FILE:LINE of that route, and nothing of it applies
    (the route it would have removed still accepts, the one it would have
    added does not exist)."""
    wa, wb = start_worker("PULL"), start_worker("PULL")
    ra, rb = make_route("a", wa.upstream), make_route("b", wb.upstream)
    zf = fw([ra, rb])
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        rc = make_route("c", wb.upstream, listen=f"127.0.0.1:{taken.getsockname()[1]}")
        text = render([ra, rc])
        zf.rewrite(None, text=text)
        r = zf.hup()
        assert r["result"] == "failed", r
        line = _line_of(text, f'name = "c"') - 1  # the route's opening brace
        assert re.match(rf"{re.escape(str(zf.config_path))}:({line}|{line + 1}): ", r["detail"]), r
        assert not zf.events("route-removed")
        send_one(zf.port("b"), 1)
        wb.wait_message([clean(1)])
        send_one(zf.port("a"), 2)
        wa.wait_message([clean(2)])
    finally:
        taken.close()
    zf.assert_alive()


@pytest.mark.timeout_s(40)
def test_sighup_adds_and_removes_routes(start_worker, fw, zctx):
    wa, wb, wc = start_worker("PULL"), start_worker("PULL"), start_worker("PULL")
    ra, rb, rc = make_route("a", wa.upstream), make_route("b", wb.upstream), make_route("c", wc.upstream)
    zf = fw([ra, rb])
    pa = zsock(zctx, zmq.PUSH, zf.endpoint("a"))
    pb = zsock(zctx, zmq.PUSH, zf.endpoint("b"))
    pa.send(clean(1))
    pb.send(clean(2))
    wa.wait_message([clean(1)])
    wb.wait_message([clean(2)])
    assert connect_refused(int(rc["listen"].rsplit(":", 1)[1]))

    zf.rewrite([ra, rc])
    r = zf.hup()
    assert r["result"] == "ok" and (r.get("added"), r.get("removed")) == (1, 1), r
    zf.wait_event("listening", route="c")
    zf.wait_event("route-removed", route="b")
    # The new port accepts.
    pc = zsock(zctx, zmq.PUSH, zf.endpoint("c"))
    pc.send(clean(3))
    wc.wait_message([clean(3)])
    # The removed port refuses new connections...
    assert connect_refused(zf.port("b")), "route b's port still accepts after its removal"
    # ...but the connection made before keeps working, as do the kept route's.
    for i in range(10, 20):
        pb.send(clean(i))
        pa.send(clean(i))
    for i in range(10, 20):
        wb.wait_message([clean(i)])
        wa.wait_message([clean(i)])
    assert not zf.events("close", route="b"), zf.events("close", route="b")
    # Put b back (same port): it accepts again. And route a, kept, moves to
    # another worker: its live connection stays with the old one, new
    # connections go to the new one.
    wa2 = start_worker("PULL")
    zf.rewrite([dict(ra, upstream=wa2.upstream), rb, rc])
    r = zf.hup()
    assert r["result"] == "ok" and r.get("kept") == 2 and r.get("added") == 1, r
    send_one(zf.port("b"), 30)
    wb.wait_message([clean(30)])
    pa.send(clean(31))
    wa.wait_message([clean(31)])
    send_one(zf.port("a"), 32)
    wa2.wait_message([clean(32)])
    assert [clean(32)] not in wa.messages()
    zf.assert_alive()


@pytest.mark.timeout_s(30)
def test_reload_narrowing_allow(start_worker, fw):
    """allow narrows to 127.0.0.1: new peers from 127.0.0.2 are refused at
    once, live ones are kept, until a reload with reload_closes_disallowed
    closes them (reason not-allowed); 127.0.0.1 is never disturbed."""
    w = start_worker("PULL")
    route = make_route("w", w.upstream, allow=["127.0.0.0/8"])
    zf = fw([route])
    port = zf.port("w")
    keep = Z.RawClient("127.0.0.1", port)
    other = Z.RawClient("127.0.0.1", port, source="127.0.0.2")
    try:
        keep.handshake("PUSH")
        other.handshake("PUSH")
        narrow = dict(route, allow=["127.0.0.1/32"])
        zf.rewrite([narrow])
        assert zf.hup()["result"] == "ok"
        with Z.RawClient("127.0.0.1", port, source="127.0.0.2") as late:
            assert late.wait_closed(10 * SLOW), "a newly disallowed peer was kept open"
        zf.wait_event("reject", reason="not-allowed", peer="127.0.0.2:%d" % late.local[1])
        assert not zf.events("accept", peer="127.0.0.2:%d" % late.local[1]), "a newly disallowed peer was admitted"
        other.send(Z.encode_frame(clean(1)))
        keep.send(Z.encode_frame(clean(2)))
        w.wait_message([clean(1)])
        w.wait_message([clean(2)])

        zf.rewrite([narrow], {"reload_closes_disallowed": True})
        assert zf.hup()["result"] == "ok"
        assert other.wait_closed(10 * SLOW), "reload_closes_disallowed left a disallowed peer connected"
        ev = zf.wait_event("close", reason="not-allowed")
        assert ev["peer"].startswith("127.0.0.2:"), ev
        keep.send(Z.encode_frame(clean(3)))
        w.wait_message([clean(3)])
        assert is_open(keep.sock)
    finally:
        keep.close()
        other.close()
    zf.assert_alive()


@pytest.mark.timeout_s(30)
def test_reload_keeps_restart_only_key(start_worker, fw):
    """user is restart-only in the config keyword table: a reload that
    changes it logs a warning naming the key and applies the rest of the
    file; the running user stays in force, so the same file warns again
    and one naming the running user does not. ("root": as root it is a
    no-op switch, otherwise it is ignored with a log line.)"""
    w = start_worker("PULL")
    route = make_route("w", w.upstream)
    zf = fw([route], {"user": '"root"', "drain_timeout_ms": 1000})
    zf.rewrite([route], {"user": '"daemon"', "drain_timeout_ms": 2000})
    assert zf.hup()["result"] == "ok"
    warns = zf.events("reload", result="warning")
    assert len(warns) == 1 and warns[0].get("key") == "user", warns
    assert "restart" in warns[0]["detail"] and warns[0]["detail"].startswith("user: "), warns
    assert zf.hup()["result"] == "ok"
    assert len(zf.events("reload", result="warning")) == 2, zf.tail(10)
    zf.rewrite([route], {"user": '"root"'})
    assert zf.hup()["result"] == "ok"
    assert len(zf.events("reload", result="warning")) == 2, zf.tail(10)
    send_one(zf.port("w"), 1)
    w.wait_message([clean(1)])
    zf.assert_alive()


@pytest.mark.timeout_s(30)
def test_reload_policy_applies_to_live_connections(start_worker, fw, marker):
    """README: a kept route's live connections "follow the new limits and
    policy from their next frame". The documented rollout is log-only first,
    then enforce by SIGHUP: connections opened before the switch must not
    keep delivering pickles. Three live connections, one per policy change:
    mode log-only -> enforce, a peer removed from allow_pickle_from, and
    max_frame_size lowered."""
    w = start_worker("PULL")
    route = make_route("w", w.upstream, mode="log-only", allow_pickle_from=["127.0.0.3/32"],
                       max_frame_size=1 << 20)
    zf = fw([route])
    port = zf.port("w")
    attack = P.evil(marker, 4)
    assert P.reaches_import(attack)
    a = Z.RawClient("127.0.0.1", port)               # log-only -> enforce
    b = Z.RawClient("127.0.0.1", port, source="127.0.0.3")  # trusted -> not trusted
    c = Z.RawClient("127.0.0.1", port)               # 1 MiB -> 1 KiB frames
    problems = []
    try:
        for k in (a, b, c):
            k.handshake("PUSH")
        zf.rewrite([dict(route, mode="enforce", allow_pickle_from=[], max_frame_size=1024)])
        assert zf.hup()["result"] == "ok"

        a.send(Z.encode_frame(attack) + Z.encode_frame(clean(1)))
        w.wait_message([clean(1)])
        if [attack] in w.messages() or marker.exists():
            problems.append("log-only -> enforce: a connection opened before the reload still "
                            "delivered a pickle to the worker")
        b.send(Z.encode_frame(attack) + Z.encode_frame(clean(2)))
        w.wait_message([clean(2)])
        if sum(m == [attack] for m in w.messages()) > len(problems):
            problems.append("allow_pickle_from narrowed: the formerly trusted live peer still "
                            "delivered a pickle")
        c.try_send(Z.encode_frame(b'{"big":"' + b"x" * 4000 + b'"}'))
        if not c.wait_closed(10 * SLOW):
            problems.append("max_frame_size lowered to 1024: a live connection still passed a 4 KiB frame")
    finally:
        for k in (a, b, c):
            k.close()
    assert not problems, "; ".join(problems)
    # New connections do get the new policy.
    with Z.RawClient("127.0.0.1", port) as d:
        d.handshake("PUSH")
        d.send(Z.encode_frame(attack) + Z.encode_frame(clean(3)))
        w.wait_message([clean(3)])
    assert not marker.exists()


# --- SIGTERM ------------------------------------------------------------------------

def _wait_exit(zf, timeout):
    zf.expect_exit = True
    try:
        return zf.proc.wait(timeout)
    except Exception:
        raise AssertionError(f"zmtpfw still running {timeout}s after SIGTERM; log:\n{zf.tail(30)}")


@pytest.mark.timeout_s(40)
def test_sigterm_during_traffic_cuts_no_message(fw, raw_worker, zctx):
    """A PUSH client streams 3-frame messages of 64 KiB frames through to a
    raw worker; SIGTERM mid-stream. zmtpfw exits 0 having drained (no
    connection forced at drain_timeout_ms), and the worker's stream ends on
    a message boundary: no partial frame, no unfinished multipart message,
    no gap."""
    sink = raw_worker()
    drain_ms = 15000  # far off: a drain that ends is one that completed, not a slow machine's
    zf = fw([make_route("w", sink.upstream)], {"drain_timeout_ms": drain_ms})
    push = zsock(zctx, zmq.PUSH, zf.endpoint("w"), timeout_ms=200)
    push.setsockopt(zmq.SNDHWM, 20)
    size = 64 << 10
    stop = threading.Event()
    sent = [0]

    def sender():
        i = 0
        while not stop.is_set():
            frames = [struct.pack(">II", i, k) + bytes([k + 1]) * (size - 8) for k in range(3)]
            try:
                push.send_multipart(frames)
                i += 1
                sent[0] = i
            except zmq.Again:
                pass

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    try:
        wait_until(lambda: len(sink.messages()) >= 30, 10 * SLOW, what="traffic at the worker")
        os.kill(zf.proc.pid, signal.SIGTERM)
        rc = _wait_exit(zf, drain_ms / 1000 + 10 * SLOW)
    finally:
        stop.set()
        t.join(5)
    assert rc == 0, f"exit status {rc}"
    assert zf.events("drain", result="done", forced=0), f"forced, not drained: {zf.tail(10)}"
    wait_until(lambda: all(r["eof"] for r in sink.conns), 10 * SLOW, what="worker connection closed")
    (conn,) = sink.conns
    assert conn["error"] is None, conn["error"]
    assert conn["partial_bytes"] == 0 and conn["open_frames"] == 0, \
        f"stream cut mid-message: {conn['partial_bytes']} bytes of a frame, {conn['open_frames']} frames of a message"
    msgs = conn["messages"]
    assert len(msgs) >= 30
    for i, m in enumerate(msgs):
        assert len(m) == 3 and all(len(f) == size for f in m), f"message {i} malformed"
        assert all(struct.unpack(">II", f[:8]) == (i, k) for k, f in enumerate(m)), f"gap or reorder at {i}"
        assert all(f[8:] == bytes([k + 1]) * (size - 8) for k, f in enumerate(m)), f"message {i} corrupted"
    names = [e["event"] for e in zf.lines() if e.get("event") in ("shutdown", "drain")]
    assert names[:1] == ["shutdown"] and "drain" in names, names
    assert not zf.events("close", reason="drain-timeout")
    print(f"{len(msgs)} whole messages relayed, {sent[0]} sent")


@pytest.mark.timeout_s(40)
def test_sigterm_drain_completes_the_message_in_flight(start_worker, fw):
    """SIGTERM while a client is between the frames of a multipart message:
    the listener stops accepting, an idle connection is closed by the drain
    (reason shutdown) while the busy one is kept, the message is completed
    when its last frame comes and reaches the worker, then zmtpfw exits 0
    without forcing anything at drain_timeout_ms."""
    drain_ms = 15000
    w = start_worker("PULL")
    zf = fw([make_route("w", w.upstream)], {"drain_timeout_ms": drain_ms})
    port = zf.port("w")
    busy = Z.RawClient("127.0.0.1", port)
    idle = Z.RawClient("127.0.0.1", port)
    try:
        busy.handshake("PUSH")
        idle.handshake("PUSH")
        busy.send(Z.encode_frame(b'{"part":1}', more=True))
        wait_consumed(busy.sock)  # zmtpfw holds the first frame: a message is in flight
        os.kill(zf.proc.pid, signal.SIGTERM)
        assert idle.wait_closed(10 * SLOW), "an idle connection was not closed by the drain"
        ev = zf.close_of(idle.local)
        assert ev["reason"] == "shutdown" and ev["detail"] == "drained", ev
        zf.wait_event("drain", result="started")
        assert connect_refused(port), "still accepting while draining"
        assert zf.alive() and is_open(busy.sock), "the connection with a message in flight was cut"
        assert not zf.events("close", peer="127.0.0.1:%d" % busy.local[1])
        time.sleep(0.5)  # the message stays in flight across several drain ticks
        busy.send(Z.encode_frame(b'{"part":2}'))
        w.wait_message([b'{"part":1}', b'{"part":2}'], timeout=10 * SLOW)
        assert busy.wait_closed(10 * SLOW), "drained connection not closed after its message"
        ev = zf.close_of(busy.local)
        assert ev["reason"] == "shutdown" and ev["messages"] == 1, ev
        rc = _wait_exit(zf, 10 * SLOW)
    finally:
        busy.close()
        idle.close()
    assert rc == 0
    assert zf.events("drain", result="done", forced=0), zf.tail(10)
    assert not zf.events("close", reason="drain-timeout")


@pytest.mark.timeout_s(30)
def test_sigterm_drain_deadline(fw, raw_worker):
    """A message that never completes is cut at drain_timeout_ms (no sooner:
    the exit comes at least that long after the signal): exit 0, close
    reason drain-timeout, and the worker never gets the message (a raw
    worker: what it got up to the end of the connection, exactly)."""
    drain_ms = 1000
    sink = raw_worker()
    zf = fw([make_route("w", sink.upstream)], {"drain_timeout_ms": drain_ms})
    with Z.RawClient("127.0.0.1", zf.port("w")) as c:
        c.handshake("PUSH")
        c.send(Z.encode_frame(b'{"never":"ends"}', more=True))
        wait_consumed(c.sock)  # zmtpfw holds the first frame: a message is in flight
        t0 = time.monotonic()
        os.kill(zf.proc.pid, signal.SIGTERM)
        rc = _wait_exit(zf, drain_ms / 1000 + 10 * SLOW)
        took = time.monotonic() - t0
        assert c.wait_closed(5)
    assert rc == 0
    assert took >= drain_ms / 1000 - 0.05, f"exit {took:.2f}s after SIGTERM: before drain_timeout_ms"
    ev = zf.close_of(c.local)
    assert ev["reason"] == "drain-timeout" and ev["messages"] == 0, ev
    assert zf.events("drain", result="done", forced=1)
    wait_until(lambda: sink.conns and all(r["eof"] for r in sink.conns), 10 * SLOW,
               what="the worker's connection closed")
    (conn,) = sink.conns
    assert conn["error"] is None and conn["messages"] == [], conn


@pytest.mark.timeout_s(30)
def test_signals_while_draining(start_worker, fw):
    """During a drain a SIGHUP is refused (reload failed: draining) and a
    second SIGTERM exits at once, status 0: long before drain_timeout_ms
    (20 s), without the drain's own end (no "done" line, nothing forced)."""
    w = start_worker("PULL")
    zf = fw([make_route("w", w.upstream)], {"drain_timeout_ms": 20000})
    with Z.RawClient("127.0.0.1", zf.port("w")) as c:
        c.handshake("PUSH")
        c.send(Z.encode_frame(b'{"open":1}', more=True))
        wait_consumed(c.sock)  # zmtpfw holds the first frame: a message is in flight
        os.kill(zf.proc.pid, signal.SIGTERM)
        zf.wait_event("drain", result="started")
        r = zf.hup()
        assert r["result"] == "failed" and "drain" in r.get("detail", ""), r
        assert zf.alive()
        os.kill(zf.proc.pid, signal.SIGTERM)
        rc = _wait_exit(zf, 10 * SLOW)
        assert rc == 0
        assert not zf.events("drain", result="done"), zf.tail(10)
        assert c.wait_closed(5)
    assert w.messages() == []


@pytest.mark.timeout_s(60)
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_signal_as_soon_as_it_listens(procs, workdir, sig):
    """A supervisor may signal zmtpfw as soon as it logs that it listens.
    With 256 routes the first "listening" line comes well before the last
    route is set up; a signal sent then is held until the handlers are in
    and handled (a reload, a drain), not fatal (SIGHUP's and SIGTERM's
    default action ended the process: failed once in a CI-like run).

    zmtpfw logs into a one-page pipe that the test stops reading at the
    first "listening" line, so zmtpfw blocks in its next few writes: the
    signal lands in the window however the machine schedules the two."""
    dead = free_port()
    routes = [make_route(f"r{i}", f"127.0.0.1:{dead}") for i in range(256)]
    cfg = workdir / "many.conf"
    cfg.write_text(render_config(routes, level="info"))
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    room = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
    zf = Zmtpfw(["-c", cfg], workdir, name="many", stderr=w)
    procs.append(zf)
    os.close(w)
    out = bytearray()
    while b'"listening"' not in out:
        chunk = os.read(r, 65536)
        assert chunk, f"zmtpfw exited before listening: {bytes(out[-2000:])!r}"
        out += chunk
    os.kill(zf.proc.pid, sig)
    # zmtpfw has written at most what was read plus what the pipe holds
    written_at_signal = len(out) + room

    def copy():  # the rest, into the log file the helpers read
        with open(zf.log_path, "ab", buffering=0) as f:
            f.write(out)
            while True:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                out.extend(chunk)
                f.write(chunk)
    t = threading.Thread(target=copy, daemon=True)
    t.start()
    if sig == signal.SIGHUP:
        zf.wait_event("reload", 30, result="ok")
        assert zf.proc.poll() is None
        zf.proc.terminate()
    zf.expect_exit = True
    assert zf.proc.wait(30) == 0, zf.tail()
    t.join(10)
    os.close(r)
    if sig == signal.SIGTERM:
        assert zf.events("drain", result="done")
    lines = 256 * int(os.environ.get("ZMTPFW_THREADS") or 1)  # one per route and loop
    assert len(zf.events("listening")) == lines
    last = out.rindex(b'"listening"')
    # the signal came while routes were still being set up
    assert written_at_signal < last, (written_at_signal, last)
