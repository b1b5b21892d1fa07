"""Attacks through zmtpfw against a worker that really unpickles every frame.

A successful attack creates the marker file. Every "dropped" case also sends
a clean message afterwards and waits for it, so a dead connection or a dead
worker cannot pass for a drop.
"""

import struct
import subprocess
import time

import pytest
import zmq

import payloads as P
import zmtp_raw as Z
from conftest import PY, free_port, make_route, unread_by_peer, wait_until, zsock

CLEAN = P.json_frame({"op": "generate", "prompt": "hello", "max_tokens": 8})


def clean(i):
    return P.json_frame({"op": "generate", "seq": i})


def assert_not_received(worker, payload):
    for m in worker.messages():
        assert payload not in m, f"attack frame reached the worker: {payload[:60]!r}"


def assert_safe(worker, marker, *payloads):
    assert not marker.exists(), "ATTACK SUCCEEDED: marker file created by the worker"
    for p in payloads:
        assert_not_received(worker, p)


SENTINEL = P.json_frame({"sentinel": True})


def sentinel(zf, w, name="w"):
    """A clean message on a new connection, waited for at the worker: what an
    earlier, closed connection got through reached the worker before it
    (its bytes were sent before this connection existed). Replaces sleeping
    for 'nothing else arrives'."""
    with Z.RawClient("127.0.0.1", zf.port(name)) as c:
        c.handshake("PUSH")
        c.send(Z.encode_frame(SENTINEL))
        w.wait_message([SENTINEL], timeout=10)


def setup_pull(start_worker, start_zmtpfw, mode="enforce", **route_kw):
    w = start_worker("PULL")
    zf = start_zmtpfw([make_route("w", w.upstream, **route_kw)], mode=mode)
    return w, zf


def raw(zf, name="w", **kw):
    return Z.RawClient("127.0.0.1", zf.port(name), **kw)


# --- sanity of the payloads themselves (no zmtpfw needed) -------------------------

@pytest.mark.nobinary
def test_attack_payloads_really_execute(tmp_path):
    """Every attack used below does create the marker when a worker loads it,
    and every legit msgpack frame does not import: otherwise the tests prove
    nothing."""
    cases = {f"p{p}-{k}": P.evil(tmp_path / f"m-p{p}-{k}", p, k)
             for p in range(6) for k in ("open", "system", "exec")}
    cases.update({f"hw-{k}": v for k, v in P.handwritten(tmp_path / "m-hw").items()})
    for name, data in cases.items():
        assert P.reaches_import(data), name
    for name, data in P.msgpack_frames().items():
        assert not P.reaches_import(data), name
    assert not P.reaches_import(CLEAN)
    # Load them in a separate interpreter exactly like the worker does.
    script = ("import pickle,sys\n"
              "for h in sys.stdin.read().split():\n"
              "    try: pickle.loads(bytes.fromhex(h))\n"
              "    except Exception: pass\n")
    subprocess.run([PY, "-c", script], input=" ".join(
        P.evil(tmp_path / f"m-p{p}-{k}", p, k).hex() for p in range(6) for k in ("open", "system", "exec")),
        text=True, check=True, timeout=30)
    for p in range(6):
        for k in ("open", "system", "exec"):
            assert (tmp_path / f"m-p{p}-{k}").exists(), f"protocol {p} {k} attack does not work"
    for name, data in P.handwritten(tmp_path / "m-hw").items():
        (tmp_path / "m-hw").unlink(missing_ok=True)
        subprocess.run([PY, "-c", script], input=data.hex(), text=True, check=True, timeout=30)
        assert (tmp_path / "m-hw").exists(), f"handwritten {name} does not work"


# --- pickles from a real pyzmq PUSH peer ----------------------------------------------

@pytest.mark.parametrize("kind", ["open", "system", "exec"])
@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_pickle_protocol_dropped(start_worker, start_zmtpfw, zctx, marker, protocol, kind):
    w, zf = setup_pull(start_worker, start_zmtpfw)
    attack = P.evil(marker, protocol, kind)
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    s.send(attack)
    s.send(CLEAN)
    w.wait_message([CLEAN])
    assert_safe(w, marker, attack)
    assert w.messages() == [[CLEAN]]
    d = zf.wait_event("drop", reason="pickle")
    assert d["route"] == "w"
    assert d["frame"] == 0
    assert d["frame_size"] == len(attack)
    op, off = P.first_import_op(attack)
    assert d["opcode"] == op, d
    assert d["offset"] == off, d
    assert isinstance(d.get("head"), str) and d["head"], d
    assert d["head"].encode("latin-1") == attack[:32], (d["head"], attack[:32])
    for k in ("ts", "level", "conn", "peer"):
        assert k in d, f"drop line lacks {k}: {d}"


@pytest.mark.parametrize("name", list(P.handwritten("/x")))
def test_handwritten_pickle_dropped(start_worker, start_zmtpfw, zctx, marker, name):
    w, zf = setup_pull(start_worker, start_zmtpfw)
    attack = P.handwritten(marker)[name]
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    s.send(attack)
    s.send(CLEAN)
    w.wait_message([CLEAN])
    assert_safe(w, marker, attack)
    zf.wait_event("drop", reason="pickle", frame=0)


@pytest.mark.parametrize("pos", [0, 1, 2])
def test_pickle_in_multipart_drops_whole_message(start_worker, start_zmtpfw, zctx, marker, pos):
    w, zf = setup_pull(start_worker, start_zmtpfw)
    attack = P.evil(marker, 4)
    frames = [P.json_frame({"part": i}) for i in range(3)]
    frames[pos] = attack
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    s.send_multipart(frames)
    nxt = [P.json_frame({"next": 1}), P.msgpack_frames()["array3"]]
    s.send_multipart(nxt)
    w.wait_message(nxt)
    assert_safe(w, marker, attack)
    # No frame of the dropped message reached the worker.
    assert w.messages() == [nxt]
    d = zf.wait_event("drop", reason="pickle")
    assert d["frame"] == pos, d


def test_pickle_byte_by_byte(start_worker, start_zmtpfw, marker):
    """After a proper handshake, the pickle frame (header included) arrives one
    byte per TCP segment; the scanner must decide the same as for one read."""
    w, zf = setup_pull(start_worker, start_zmtpfw)
    attack = P.handwritten(marker)["proto0-os-system"]
    with raw(zf) as c:
        c.handshake("PUSH")
        c.send_slowly(Z.encode_frame(attack), delay=0.001)
        c.send_slowly(Z.encode_frame(clean(1)), delay=0.001)
        c.send(Z.encode_frame(clean(2)))
        w.wait_message([clean(2)])
        assert_safe(w, marker, attack)
        assert w.messages() == [[clean(1)], [clean(2)]]
        zf.wait_event("drop", reason="pickle", frame=0)


def test_pickle_multipart_byte_by_byte(start_worker, start_zmtpfw, marker):
    w, zf = setup_pull(start_worker, start_zmtpfw)
    attack = P.evil(marker, 2)
    with raw(zf) as c:
        c.handshake("PUSH")
        c.send_slowly(Z.encode_message([clean(0), attack, clean(9)]), delay=0.0005)
        c.send(Z.encode_message([clean(1), clean(2)]))
        w.wait_message([clean(1), clean(2)])
        assert_safe(w, marker, attack)
        assert w.messages() == [[clean(1), clean(2)]]
        assert zf.wait_event("drop", reason="pickle")["frame"] == 1


@pytest.mark.parametrize("where", ["single", "second-of-two"])
def test_long_form_size_small_pickle(start_worker, start_zmtpfw, marker, where):
    """Long form (flags 0x02, 8-byte size) for a frame < 256 bytes is legal
    and libzmq accepts it: the scanner must still see the pickle."""
    w, zf = setup_pull(start_worker, start_zmtpfw)
    attack = P.evil(marker, 3)
    assert len(attack) < 256
    with raw(zf) as c:
        c.handshake("PUSH")
        if where == "single":
            c.send(Z.encode_frame(attack, long=True))
        else:
            c.send(Z.encode_frame(clean(0), more=True) + Z.encode_frame(attack, long=True))
        # A clean long-form frame must arrive byte-exact.
        c.send(Z.encode_frame(clean(1), long=True))
        c.send(Z.encode_frame(clean(2)))
        w.wait_message([clean(2)])
        assert_safe(w, marker, attack)
        assert w.messages() == [[clean(1)], [clean(2)]]
        d = zf.wait_event("drop", reason="pickle")
        assert d["frame"] == (0 if where == "single" else 1)
        assert d["frame_size"] == len(attack)


@pytest.mark.parametrize("flags,body", [(0x08, "clean"), (0x80, "pickle"), (0x10, "pickle"), (0x09, "clean")],
                         ids=["0x08-clean", "0x80-pickle", "0x10-pickle", "0x09-more-clean"])
def test_reserved_flag_bits_close(start_worker, start_zmtpfw, zctx, marker, flags, body):
    """libzmq ignores bits 3-7, so a frame with them is an ordinary data frame
    to the worker: zmtpfw must close the connection and forward nothing."""
    w, zf = setup_pull(start_worker, start_zmtpfw)
    payload = P.evil(marker, 0) if body == "pickle" else clean(7)
    with raw(zf) as c:
        c.handshake("PUSH")
        c.send(Z.encode_frame(clean(0)))
        w.wait_message([clean(0)])
        c.send(Z.encode_frame(payload, flags=flags))
        c.try_send(Z.encode_frame(clean(1)))
        closed = c.wait_closed(5)
    assert closed, "zmtpfw kept the connection open after reserved flag bits"
    zf.wait_event("close", reason="reserved-flags")
    # A new connection still works; the bad frame never reached the worker.
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    s.send(clean(2))
    w.wait_message([clean(2)])
    assert_safe(w, marker, payload)
    assert [clean(1)] not in w.messages()
    assert w.messages() == [[clean(0)], [clean(2)]]


def test_ready_in_data_frame_refused(start_worker, start_zmtpfw, marker):
    """libzmq accepts a READY whose flags say data (0x00); zmtpfw must refuse
    it rather than get out of step with the worker."""
    w, zf = setup_pull(start_worker, start_zmtpfw)
    attack = P.evil(marker, 0)
    with raw(zf) as c:
        c.greet()
        c.send(Z.encode_frame(Z.ready_body("PUSH"), flags=0x00))
        try:
            c.recv_ready(timeout=2)  # the worker's READY may or may not be relayed
        except (Z.Closed, TimeoutError, AssertionError):
            pass
        c.try_send(Z.encode_frame(attack))
        c.try_send(Z.encode_frame(clean(1)))
        closed = c.wait_closed(5)
    sentinel(zf, w)  # anything wrongly forwarded reached the worker before it
    assert_safe(w, marker, attack)
    assert w.messages() == [[SENTINEL]]
    assert closed, "connection with READY in a data frame stayed open"
    zf.wait_event("reject", reason="handshake")


def test_ready_with_more_flag_not_a_command_refused(start_worker, start_zmtpfw, marker):
    """A READY with flags 0x01 (data + MORE) is still not a flagged command."""
    w, zf = setup_pull(start_worker, start_zmtpfw)
    attack = P.evil(marker, 0)
    with raw(zf) as c:
        c.greet()
        c.send(Z.encode_frame(Z.ready_body("PUSH"), flags=0x01))
        c.try_send(Z.encode_frame(attack))
        closed = c.wait_closed(5)
    sentinel(zf, w)
    assert_safe(w, marker, attack)
    assert w.messages() == [[SENTINEL]]
    assert closed, "connection with READY flagged 0x01 stayed open"
    zf.wait_event("reject", reason="handshake")


def _zmtp1_frame(body):
    n = len(body) + 1
    if n < 255:
        return bytes([n, 0]) + body
    return b"\xff" + struct.pack(">Q", n) + b"\x00" + body


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_old_zmtp_greeting_refused(start_worker, start_zmtpfw, marker, version):
    """libzmq silently speaks 1.0/2.0 framing to such peers (no READY, no
    Socket-Type check): zmtpfw must refuse the greeting."""
    w, zf = setup_pull(start_worker, start_zmtpfw)
    attack = P.evil(marker, 0)
    if version == "1.0":
        # Unversioned: first byte is the identity frame's length, not 0xFF.
        data = _zmtp1_frame(b"") + _zmtp1_frame(attack) + _zmtp1_frame(clean(1))
    else:
        # ZMTP 2.0: signature, revision 0x01, socket type 8 (PUSH), then
        # an identity frame and data frames in 2.0 framing.
        data = Z.SIGNATURE + b"\x01\x08" + b"\x00\x00" + Z.encode_frame(attack) + Z.encode_frame(clean(1))
    with raw(zf) as c:
        c.try_send(data)
        closed = c.wait_closed(5)
    sentinel(zf, w)
    assert_safe(w, marker, attack)  # first: the most telling failure
    assert w.messages() == [[SENTINEL]]
    assert closed, f"ZMTP {version} greeting not refused"
    d = zf.wait_event("reject", reason="greeting")
    assert d.get("detail"), d


def test_zmtp20_greeting_libzmq_order_refused(start_worker, start_zmtpfw, marker):
    """Same as above, but the 2.0 client waits for the peer's signature
    first, like libzmq: refusal must come at the revision byte."""
    w, zf = setup_pull(start_worker, start_zmtpfw)
    with raw(zf) as c:
        c.send(Z.SIGNATURE)
        try:
            c.recv_exact(10, timeout=3)
        except (Z.Closed, TimeoutError):
            pass
        c.try_send(b"\x01\x08\x00\x00" + Z.encode_frame(P.evil(marker, 0)))
        assert c.wait_closed(5)
    zf.wait_event("reject", reason="greeting")
    assert not marker.exists()


def test_wrong_mechanism_refused(start_worker, start_zmtpfw):
    w, zf = setup_pull(start_worker, start_zmtpfw)
    with raw(zf) as c:
        c.send(Z.SIGNATURE)
        c.recv_exact(10)
        c.send(b"\x03")
        c.recv_exact(1)
        c.try_send(Z.greeting_rest(1, b"PLAIN" + b"\x00" * 15))
        assert c.wait_closed(5)
    zf.wait_event("reject", reason="greeting")


# --- allowlist ----------------------------------------------------------------------

def test_not_allowed_source_never_dials_upstream(start_zmtpfw, tcp_sink):
    """allow=127.0.0.1/32, client from 127.0.0.2: refused before the upstream
    is dialled (the upstream here is a plain listener we watch)."""
    zf = start_zmtpfw([make_route("w", tcp_sink.upstream, allow=["127.0.0.1/32"])])
    with raw(zf, source="127.0.0.2") as c:
        assert c.local[0] == "127.0.0.2"
        c.try_send(Z.full_greeting())
        assert c.wait_closed(5), "connection from a non-allowed source stayed open"
        src = "%s:%d" % c.local
    d = zf.wait_event("reject", reason="not-allowed")
    assert d.get("peer") == src, d
    assert not zf.events("accept", peer=src), "non-allowed peer logged as accepted"
    # Positive control, and the sentinel: an allowed peer does make zmtpfw
    # dial the upstream. zmtpfw takes connections in order, so a dial for
    # the refused peer would have reached the upstream's accept queue first.
    with raw(zf) as c:
        c.send(Z.full_greeting())
        wait_until(lambda: len(tcp_sink.poll()) >= 1, 10, what="upstream connection for an allowed peer")
    zf.wait_event("accept", peer=lambda p: p and p.startswith("127.0.0.1:"))
    assert len(tcp_sink.poll()) == 1, "zmtpfw dialled the upstream for a non-allowed peer"


def test_not_allowed_source_real_worker(start_worker, start_zmtpfw, zctx, marker):
    w, zf = setup_pull(start_worker, start_zmtpfw, allow=["127.0.0.1/32"])
    attack = P.evil(marker, 4)
    bad = zsock(zctx, zmq.PUSH, zf.endpoint("w"), source="127.0.0.2")
    bad.send(attack)  # queued; libzmq keeps retrying the refused connection
    zf.wait_event("reject", reason="not-allowed", peer=lambda p: p and p.startswith("127.0.0.2:"))
    # Control from an allowed address on the same route.
    good = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    good.send(CLEAN)
    w.wait_message([CLEAN])
    accepted = [e for e in w.conn_events() if e["event"] == "ACCEPTED"]
    assert len(accepted) == 1, f"worker saw connections {w.conn_events()} (only the allowed peer should appear)"
    assert w.messages() == [[CLEAN]]
    assert not marker.exists()


def test_allowlist_cidr_range(start_worker, start_zmtpfw, zctx):
    """A /24 that covers 127.0.0.x but a /32 that does not cover 127.0.0.3."""
    w = start_worker("PULL")
    zf = start_zmtpfw([make_route("w", w.upstream, allow=["127.0.0.0/24", "10.0.0.0/8"]),
                       make_route("n", w.upstream, allow=["127.0.0.2/32"])])
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"), source="127.0.0.3")
    s.send(clean(1))
    w.wait_message([clean(1)])
    with Z.RawClient("127.0.0.1", zf.port("n"), source="127.0.0.3") as c:
        assert c.wait_closed(5)
    zf.wait_event("reject", reason="not-allowed", route="n")
    with Z.RawClient("127.0.0.1", zf.port("n"), source="127.0.0.2") as c:
        c.handshake("PUSH")
        c.send(Z.encode_frame(clean(2)))
        w.wait_message([clean(2)])


# --- on_violation = close -------------------------------------------------------------

def test_on_violation_close(start_worker, start_zmtpfw, marker):
    w, zf = setup_pull(start_worker, start_zmtpfw, on_violation="close")
    attack = P.evil(marker, 2)
    with raw(zf) as c:
        c.handshake("PUSH")
        c.send(Z.encode_frame(clean(0)))
        w.wait_message([clean(0)])
        c.send(Z.encode_frame(attack))
        c.try_send(Z.encode_frame(clean(1)))
        closed = c.wait_closed(5)
    sentinel(zf, w)
    assert_safe(w, marker, attack)
    assert closed, "on_violation=close did not close the connection"
    assert w.messages() == [[clean(0)], [SENTINEL]]
    zf.wait_event("close", reason="pickle")


# --- size limits and malformed frames ---------------------------------------------------

def _close_case(start_worker, start_zmtpfw, zctx, marker, send_bad, reason, **route_kw):
    w, zf = setup_pull(start_worker, start_zmtpfw, **route_kw)
    with raw(zf) as c:
        c.handshake("PUSH")
        c.send(Z.encode_frame(clean(0)))
        w.wait_message([clean(0)])
        send_bad(c)
        assert c.wait_closed(5), f"expected close ({reason})"
    d = zf.wait_event("close", reason=reason)
    zf.assert_alive()
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    s.send(clean(5))
    w.wait_message([clean(5)])
    assert w.messages() == [[clean(0)], [clean(5)]]
    assert not marker.exists()
    return d


def test_frame_size_2_pow_62(start_worker, start_zmtpfw, zctx, marker):
    def bad(c):
        c.try_send(b"\x02" + struct.pack(">Q", 1 << 62) + P.evil(marker, 0))
    _close_case(start_worker, start_zmtpfw, zctx, marker, bad, "frame-too-large")


def test_frame_size_max_u64(start_worker, start_zmtpfw, zctx, marker):
    def bad(c):
        c.try_send(b"\x02" + b"\xff" * 8 + b"x" * 16)
    _close_case(start_worker, start_zmtpfw, zctx, marker, bad, "frame-too-large")


def test_frame_over_configured_limit(start_worker, start_zmtpfw, zctx, marker):
    def bad(c):
        c.try_send(Z.encode_frame(b"{" + b"x" * 2000))
    _close_case(start_worker, start_zmtpfw, zctx, marker, bad, "frame-too-large",
                max_frame_size=1024, max_message_size=4096)


@pytest.mark.parametrize("pickle_policy", ["drop", "allow"])
def test_message_over_configured_limit(start_worker, start_zmtpfw, zctx, marker, pickle_policy):
    """The message limits hold on unscanned routes too (pickle = "allow"):
    message size is counted from MORE flags, not from scanner state."""
    def bad(c):
        part = b"{" + b"x" * 999
        c.try_send(Z.encode_message([part, part, part, part, part]))
    _close_case(start_worker, start_zmtpfw, zctx, marker, bad, "message-too-large",
                max_frame_size=1024, max_message_size=4096, pickle=pickle_policy)


def test_command_with_more_flag(start_worker, start_zmtpfw, zctx, marker):
    def bad(c):
        c.try_send(Z.encode_frame(b"\x04PING\x00\x00", flags=0x05) + Z.encode_frame(P.evil(marker, 0)))
    _close_case(start_worker, start_zmtpfw, zctx, marker, bad, "command-more")


def test_ping_command_passes(start_worker, start_zmtpfw):
    """Legit commands after the handshake are fine and do not desync parsing."""
    w, zf = setup_pull(start_worker, start_zmtpfw)
    with raw(zf) as c:
        c.handshake("PUSH")
        c.send(Z.encode_frame(b"\x04PING\x00\x0a", command=True))
        c.send(Z.encode_frame(clean(1)))
        w.wait_message([clean(1)])


# --- handshake policing -------------------------------------------------------------------

def test_handshake_timeout(start_worker, start_zmtpfw):
    """A half-open handshake is closed at handshake_timeout_ms (500), by
    zmtpfw's own clock in its close line: no sooner, and at that setting,
    not the default's 10 s (or any other later deadline)."""
    w, zf = setup_pull(start_worker, start_zmtpfw, handshake_timeout_ms=500)
    with raw(zf) as c:
        c.send(Z.SIGNATURE)
        assert c.wait_closed(10), "half-open handshake not timed out"
    ev = zf.close_of(c.local)
    assert ev["reason"] == "handshake-timeout" and ev["detail"] == "handshake_timeout_ms", ev
    assert 500 - 20 <= ev["duration_ms"] < 5000, ev


def test_socket_type_not_allowed(start_worker, start_zmtpfw, zctx, marker):
    """socket_types = ["DEALER"]: a REQ peer (valid for the ROUTER worker as
    far as libzmq is concerned) is refused; a DEALER peer works."""
    w = start_worker("ROUTER")
    zf = start_zmtpfw([make_route("w", w.upstream, socket_types=["DEALER"])])
    with raw(zf) as c:
        c.greet()
        c.send_ready("REQ")
        try:
            c.recv_ready(timeout=2)
        except (Z.Closed, TimeoutError, AssertionError):
            pass
        c.try_send(Z.encode_message([b"", P.evil(marker, 0)]))
        assert c.wait_closed(5)
    zf.wait_event("reject", reason="socket-type")
    d = zsock(zctx, zmq.DEALER, zf.endpoint("w"))
    d.send_multipart([clean(1)])
    assert d.recv_multipart() == [clean(1)]
    assert not marker.exists()
    assert w.messages() == [[clean(1)]]


# --- connection limits ------------------------------------------------------------------------

def test_max_connections(start_worker, start_zmtpfw):
    w, zf = setup_pull(start_worker, start_zmtpfw, max_connections=1)
    c1 = raw(zf)
    try:
        c1.handshake("PUSH")
        with raw(zf) as c2:
            assert c2.wait_closed(5), "second connection admitted over max_connections=1"
        zf.wait_event("reject", reason="max-connections")
        c1.send(Z.encode_frame(clean(1)))
        w.wait_message([clean(1)])
    finally:
        c1.close()
    zf.wait_event("close", reason="client-closed")
    # The slot is free again.
    def third():
        with raw(zf) as c3:
            try:
                c3.handshake("PUSH")
            except (Z.Closed, TimeoutError):
                return False
            c3.send(Z.encode_frame(clean(2)))
            w.wait_message([clean(2)])
            return True
    wait_until(third, 5, interval=0.1, what="a connection after the first one closed")


# --- the C client sending an attack ------------------------------------------------------------

def test_c_client_pickle_dropped(start_worker, start_zmtpfw, zmq_client_bin, marker):
    w, zf = setup_pull(start_worker, start_zmtpfw)
    attack = P.evil(marker, 5)
    r = subprocess.run([str(zmq_client_bin), "--connect", zf.endpoint("w"), "--type", "PUSH",
                        "--count", "3", "--hexframe", CLEAN.hex(), "--hexframe", attack.hex(),
                        "--timeout-ms", "5000"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(zmq_client_bin), "--connect", zf.endpoint("w"), "--type", "PUSH",
                        "--count", "2", "--size", "64", "--timeout-ms", "5000"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    w.wait_messages(2)
    sentinel(zf, w)  # both clients have exited: all they got through is in before it
    assert w.messages() == [[P.client_frame(0, 0, 64)], [P.client_frame(1, 0, 64)], [SENTINEL]]
    assert_safe(w, marker, attack)
    wait_until(lambda: len(zf.events("drop", reason="pickle", frame=1)) == 3, 5, what="3 drop lines")


# --- harder cases ---------------------------------------------------------------------------

def test_attack_pipelined_in_one_segment(start_worker, start_zmtpfw, marker):
    """Clean and attack messages back to back in a single write: the drop
    must cover exactly the bad message, not its neighbours."""
    w, zf = setup_pull(start_worker, start_zmtpfw)
    attack = P.evil(marker, 4)
    with raw(zf) as c:
        c.handshake("PUSH")
        c.send(Z.encode_frame(clean(0)) + Z.encode_frame(attack) + Z.encode_frame(clean(1))
               + Z.encode_message([clean(9), attack]) + Z.encode_message([attack, clean(9)])
               + Z.encode_message([clean(2), clean(3)]))
        w.wait_message([clean(2), clean(3)])
    assert_safe(w, marker, attack)
    assert w.messages() == [[clean(0)], [clean(1)], [clean(2), clean(3)]]
    wait_until(lambda: len(zf.events("drop", reason="pickle")) == 3, 5, what="3 drop lines")
    assert sorted(d["frame"] for d in zf.events("drop")) == [0, 0, 1]


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_big_pickle_import_after_2mib(start_worker, start_zmtpfw, zctx, marker, protocol):
    """The import comes after 4 MiB of BINUNICODE/BINBYTES data spread over
    many TCP reads: the scanner must keep going to the end of the frame."""
    w, zf = setup_pull(start_worker, start_zmtpfw)
    attack = pickle_big(marker, protocol)
    assert len(attack) > 4 << 20 and P.reaches_import(attack)
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    s.send(attack)
    s.send(clean(1))
    w.wait_message([clean(1)], timeout=10)
    assert not marker.exists(), "ATTACK SUCCEEDED"
    assert w.messages() == [[clean(1)]]
    d = zf.wait_event("drop", reason="pickle")
    assert d["frame_size"] == len(attack)
    op, off = P.first_import_op(attack)
    assert d["offset"] == off, d


def pickle_big(marker, protocol):
    import pickle
    return pickle.dumps(["s" * (2 << 20), b"\x00" * (2 << 20), P.EvilOpen(marker)], protocol=protocol)


def test_multipart_big_clean_frame_then_pickle(start_worker, start_zmtpfw, zctx, marker):
    """[8 MiB clean, pickle]: dropped whole, so zmtpfw must not have passed
    the first 8 MiB on before seeing the second frame."""
    w, zf = setup_pull(start_worker, start_zmtpfw)
    big = b"\x00" + bytes(8 << 20)
    attack = P.evil(marker, 4)
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    s.send_multipart([big, attack])
    s.send_multipart([clean(1), b"\x00" * 100])
    w.wait_message([clean(1), b"\x00" * 100], timeout=10)
    assert not marker.exists(), "ATTACK SUCCEEDED"
    assert len(w.messages()) == 1, f"worker got {len(w.messages())} messages, expected only the clean one"
    assert zf.wait_event("drop", reason="pickle")["frame"] == 1


def test_pickle_last_of_200_frames(start_worker, start_zmtpfw, zctx, marker):
    w, zf = setup_pull(start_worker, start_zmtpfw)
    attack = P.evil(marker, 0)
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    s.send_multipart([clean(i) for i in range(199)] + [attack])
    s.send_multipart([clean(i) for i in range(200)])
    w.wait_message([clean(i) for i in range(200)])
    assert not marker.exists()
    assert len(w.messages()) == 1
    assert zf.wait_event("drop", reason="pickle")["frame"] == 199


def test_req_envelope_pickle_dropped(start_worker, start_zmtpfw, zctx, marker):
    """A REQ-style envelope ([empty][payload]) to a REP worker: the pickle is
    frame 1; the next request still gets its reply."""
    w = start_worker("REP")
    zf = start_zmtpfw([make_route("w", w.upstream)])
    attack = P.evil(marker, 5)
    d = zsock(zctx, zmq.DEALER, zf.endpoint("w"))
    d.send_multipart([b"", attack])
    d.send_multipart([b"", clean(1)])
    assert d.recv_multipart() == [b"", clean(1)]
    assert not marker.exists()
    assert zf.wait_event("drop", reason="pickle")["frame"] == 1


@pytest.mark.timeout_s(45)
def test_concurrent_clients_isolated(start_worker, start_zmtpfw, zctx, tmp_path):
    """Four peers interleave attacks and clean traffic: per-connection parser
    state must not leak between them."""
    w, zf = setup_pull(start_worker, start_zmtpfw)
    socks = [zsock(zctx, zmq.PUSH, zf.endpoint("w")) for _ in range(4)]
    markers = [tmp_path / f"PWNED-{k}" for k in range(4)]
    expected = {k: [] for k in range(4)}
    for i in range(100):
        for k, s in enumerate(socks):
            if i % 10 == 3:
                s.send_multipart([clean(i), P.evil(markers[k], i % 6)])
            else:
                m = P.json_frame({"c": k, "i": i})
                s.send(m)
                expected[k].append([m])
    # After its traffic, each peer's sentinel: once all four are in,
    # everything before them is too (one connection keeps its order).
    for k, s in enumerate(socks):
        s.send(P.json_frame({"c": k, "sentinel": True}))
    for k in range(4):
        w.wait_message([P.json_frame({"c": k, "sentinel": True})], timeout=20)
    msgs = w.messages()
    total = sum(len(v) for v in expected.values())
    assert len(msgs) == total + 4
    for k in range(4):
        assert [m for m in msgs if m[0].startswith(b'{"c":%d,' % k)] == \
            expected[k] + [[P.json_frame({"c": k, "sentinel": True})]]
        assert not markers[k].exists()
    wait_until(lambda: len(zf.events("drop", reason="pickle")) == 40, 5, what="40 drop lines")


def test_duplicate_socket_type_property(start_worker, start_zmtpfw, zctx, marker):
    """libzmq checks every Socket-Type occurrence; so must the policy: a READY
    saying DEALER and then REQ does not pass socket_types = ["DEALER"]."""
    w = start_worker("ROUTER")
    zf = start_zmtpfw([make_route("w", w.upstream, socket_types=["DEALER"])])
    with raw(zf) as c:
        c.greet()
        c.send_ready("DEALER", extra=[(b"Socket-Type", b"REQ")])
        try:
            c.recv_ready(timeout=2)
        except (Z.Closed, TimeoutError, AssertionError):
            pass
        c.try_send(Z.encode_message([b"", clean(1)]))
        closed = c.wait_closed(3)
    assert closed, "READY with Socket-Type DEALER then REQ admitted under socket_types=[DEALER]"
    assert [e for e in zf.events("reject") if e.get("reason") in ("socket-type", "handshake")]


def test_malformed_ready_property_refused(start_worker, start_zmtpfw, marker):
    w, zf = setup_pull(start_worker, start_zmtpfw)
    body = b"\x05READY" + bytes([11]) + b"Socket-Type" + struct.pack(">I", 1000) + b"PUSH"
    with raw(zf) as c:
        c.greet()
        c.send(Z.encode_frame(body, command=True))
        c.try_send(Z.encode_frame(P.evil(marker, 0)))
        closed = c.wait_closed(5)
    sentinel(zf, w)
    assert not marker.exists()
    assert w.messages() == [[SENTINEL]]
    assert closed
    zf.wait_event("reject", reason="handshake")


def test_idle_after_handshake_not_timed_out(start_worker, start_zmtpfw):
    """handshake_timeout_ms bounds the handshake only: a connection quiet for
    three times that long after its handshake still relays, and ends as the
    client closes it. (A handshake that misses the 300 ms itself, as on a
    busy machine it may, is tried again: that deadline is not under test.)"""
    w, zf = setup_pull(start_worker, start_zmtpfw, handshake_timeout_ms=300)

    def handshaken():
        c = raw(zf)
        try:
            c.handshake("PUSH")
            # zmtpfw has read our READY (its handshake is over) or closed us
            peer = "127.0.0.1:%d" % c.local[1]
            wait_until(lambda: unread_by_peer(c.sock) == 0 or zf.events("close", peer=peer), 10,
                       what="zmtpfw to take the READY in")
            if unread_by_peer(c.sock) == 0:
                return c
        except (Z.Closed, TimeoutError, OSError):
            pass
        c.close()
        return None
    c = wait_until(handshaken, 20, interval=0.1, what="a handshake within 300 ms")
    with c:
        time.sleep(0.9)  # the scenario: quiet for 3 handshake deadlines
        c.send(Z.encode_frame(clean(1)))
        w.wait_message([clean(1)])
    ev = zf.close_of(c.local)
    assert ev["reason"] == "client-closed" and ev["messages"] == 1, ev


def test_client_half_close_flushes(start_worker, start_zmtpfw):
    import socket as so
    w, zf = setup_pull(start_worker, start_zmtpfw)
    with raw(zf) as c:
        c.handshake("PUSH")
        c.send(Z.encode_message([clean(1), b"\x00" * 70000]))
        c.sock.shutdown(so.SHUT_WR)
        w.wait_message([clean(1), b"\x00" * 70000])
        assert c.wait_closed(5)
    zf.wait_event("close", reason="client-closed")


def test_worker_exit_closes_client(start_worker, start_zmtpfw):
    w, zf = setup_pull(start_worker, start_zmtpfw)
    with raw(zf) as c:
        c.handshake("PUSH")
        c.send(Z.encode_frame(clean(1)))
        w.wait_message([clean(1)])
        w.stop()
        assert c.wait_closed(5), "client not closed after the worker went away"
    zf.wait_event("close", reason="upstream-closed")
    zf.assert_alive()


def _has_ipv6():
    import socket as so
    try:
        s = so.socket(so.AF_INET6, so.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")
def test_dual_stack_listener_matches_ipv4_rules(start_worker, start_zmtpfw, zctx, marker):
    """Listening on [::]: IPv4 peers arrive as ::ffff:a.b.c.d and must match
    IPv4 rules both ways (admit 127.0.0.1, refuse 127.0.0.2)."""
    w = start_worker("PULL")
    port = free_port()
    r = make_route("w", w.upstream, allow=["127.0.0.1/32", "::1/128"])
    r["listen"] = f"[::]:{port}"
    zf = start_zmtpfw([r])
    s = zsock(zctx, zmq.PUSH, f"tcp://127.0.0.1:{port}")
    s.send(P.evil(marker, 2))
    s.send(clean(1))
    w.wait_message([clean(1)])
    zf.wait_event("drop", reason="pickle")
    with Z.RawClient("127.0.0.1", port, source="127.0.0.2") as c:
        assert c.wait_closed(5), "127.0.0.2 admitted through a [::] listener with allow 127.0.0.1/32"
    zf.wait_event("reject", reason="not-allowed")
    s6 = zctx.socket(zmq.PUSH)
    s6.setsockopt(zmq.IPV6, 1)
    s6.setsockopt(zmq.LINGER, 0)
    s6.setsockopt(zmq.SNDTIMEO, 5000)
    s6.connect(f"tcp://[::1]:{port}")
    s6.send(clean(6))
    w.wait_message([clean(6)])
    assert not marker.exists()


def test_frame_straddle_pickle_file_path(start_worker, start_zmtpfw, zctx, marker):
    """A worker that replays frames with pickle.load(file) (e.g. saved .pkl
    dumps) runs this pickle; pickle.loads would raise. A frame that CPython's
    unpickler executes on either path is a pickle and must be dropped."""
    attack = P.frame_straddle(marker)
    assert P.reaches_import_file_path(attack) and not P.reaches_import(attack)
    w = start_worker("PULL", load="file")
    zf = start_zmtpfw([make_route("w", w.upstream)])
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    s.send(attack)
    s.send(CLEAN)
    w.wait_message([CLEAN])
    assert not marker.exists(), ("ATTACK SUCCEEDED via pickle.load(file): zmtpfw forwarded a FRAME-straddling "
                                 "pickle; drop lines: %s" % zf.events("drop"))
    assert_safe(w, marker, attack)
    zf.wait_event("drop", reason="pickle")


def test_size_limits_are_inclusive(start_worker, start_zmtpfw, zctx):
    """max_frame_size / max_message_size are maxima: exactly at the limit
    passes byte-exact, one byte over closes."""
    w, zf = setup_pull(start_worker, start_zmtpfw, max_frame_size=1024, max_message_size=4096)
    at_frame = b"{" + b"f" * 1023
    at_msg = [b"{" + b"m" * 1023] * 4
    with raw(zf) as c:
        c.handshake("PUSH")
        c.send(Z.encode_frame(at_frame))
        c.send(Z.encode_message(at_msg))
        w.wait_message(at_msg)
        assert w.messages() == [[at_frame], at_msg]
        c.try_send(Z.encode_message([b"{" + b"m" * 1023] * 4 + [b"x"]))
        assert c.wait_closed(5)
    zf.wait_event("close", reason="message-too-large")
    with raw(zf) as c:
        c.handshake("PUSH")
        c.try_send(Z.encode_frame(b"{" + b"f" * 1024))
        assert c.wait_closed(5)
    zf.wait_event("close", reason="frame-too-large")
    assert len(w.messages()) == 2


def test_allow_pickle_from_does_not_admit(start_worker, start_zmtpfw):
    """allow_pickle_from relaxes scanning for admitted peers only."""
    w, zf = setup_pull(start_worker, start_zmtpfw, allow=["127.0.0.1/32"], allow_pickle_from=["127.0.0.2/32"])
    with raw(zf, source="127.0.0.2") as c:
        assert c.wait_closed(5)
    zf.wait_event("reject", reason="not-allowed")
    # The worker's monitor reports connections in the order they came: once
    # the sentinel's is in, a dial for the refused peer would be before it.
    sentinel(zf, w)
    wait_until(lambda: [e for e in w.conn_events() if e["event"] == "ACCEPTED"], 10,
               what="the sentinel's connection at the worker")
    assert len([e for e in w.conn_events() if e["event"] == "ACCEPTED"]) == 1, w.conn_events()


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")
def test_dual_stack_listener_allow_pickle_from_ipv4(start_worker, start_zmtpfw, zctx, marker):
    """An IPv4 allow_pickle_from rule matches the ::ffff:-mapped peer, and
    only that peer."""
    w = start_worker("PULL")
    port = free_port()
    r = make_route("w", w.upstream, allow=["127.0.0.0/8"], allow_pickle_from=["127.0.0.2/32"])
    r["listen"] = f"[::]:{port}"
    zf = start_zmtpfw([r])
    t = zsock(zctx, zmq.PUSH, f"tcp://127.0.0.1:{port}", source="127.0.0.2")
    t.send(P.benign_global_pickle())
    w.wait_message([P.benign_global_pickle()])
    u = zsock(zctx, zmq.PUSH, f"tcp://127.0.0.1:{port}", source="127.0.0.3")
    u.send(P.evil(marker, 4))
    u.send(clean(3))
    w.wait_message([clean(3)])
    assert not marker.exists()
    assert len(w.messages()) == 2


@pytest.mark.parametrize("props", [[], [(b"socket-type", b"REQ")]], ids=["missing", "misspelled"])
def test_socket_type_policy_not_bypassed_by_omission(start_worker, start_zmtpfw, props):
    """libzmq skips its check when Socket-Type is absent (and ignores a
    wrongly-cased name): with socket_types configured, zmtpfw must not."""
    w = start_worker("ROUTER")
    zf = start_zmtpfw([make_route("w", w.upstream, socket_types=["DEALER"])])
    with raw(zf) as c:
        c.greet()
        c.send_ready(None, extra=props)
        try:
            c.recv_ready(timeout=2)
        except (Z.Closed, TimeoutError, AssertionError):
            pass
        c.try_send(Z.encode_message([b"", clean(1)]))
        closed = c.wait_closed(3)
    assert closed, "READY without a proper Socket-Type admitted under socket_types"
    assert [e for e in zf.events("reject") if e.get("reason") in ("socket-type", "handshake")]
    assert w.messages() == []


def test_worker_error_reaches_client(start_zmtpfw):
    """A worker that answers the handshake with ERROR: the client receives
    that ERROR command byte-exact, and nothing the client sends after it
    is forwarded as a message."""
    import socket
    import threading

    reason = b"Access denied by test worker"
    error_frame = Z.encode_frame(b"\x05ERROR" + bytes([len(reason)]) + reason, command=True)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    got = {}

    def worker():
        conn, _ = srv.accept()
        conn.settimeout(10)
        conn.sendall(Z.full_greeting())
        data = b""
        while len(data) < 64:  # the client's greeting, relayed by zmtpfw
            chunk = conn.recv(64 - len(data))
            if not chunk:
                break
            data += chunk
        got["greeting"] = data
        conn.sendall(error_frame)
        time.sleep(0.5)
        conn.close()

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    try:
        zf = start_zmtpfw([make_route("w", f"127.0.0.1:{srv.getsockname()[1]}")])
        with raw(zf) as c:
            c.greet()
            c.send_ready("PUSH")
            flags, body = c.recv_frame(timeout=5)
            assert flags == Z.FLAG_COMMAND
            assert Z.encode_frame(body, command=True) == error_frame
            assert c.wait_closed(5)
        t.join(5)
        assert got["greeting"][:10] == Z.full_greeting()[:10]
    finally:
        srv.close()


def test_frame_before_peer_ready_refused(start_worker, start_zmtpfw, marker):
    """libzmq sends nothing after its READY until it has read the peer's. A
    client that pipelines a message behind its READY, in the same write,
    reaches zmtpfw before the worker's READY could have been relayed: the
    frame would land on a worker still handshaking, so the connection closes
    and nothing of it is forwarded."""
    w, zf = setup_pull(start_worker, start_zmtpfw)
    attack = P.evil(marker, 0)
    with raw(zf) as c:
        c.send(Z.full_greeting() + Z.ready_command("PUSH") + Z.encode_frame(attack))
        closed = c.wait_closed(5)
    sentinel(zf, w)
    assert_safe(w, marker, attack)
    assert w.messages() == [[SENTINEL]]
    assert closed, "a frame before the worker's READY was accepted"
    zf.wait_event("close", reason="protocol", detail="frame before the peer's handshake")


@pytest.mark.parametrize("loader", ["any", "plain"])
def test_pickle_loader_policy(start_worker, start_zmtpfw, zctx, marker, loader):
    """A msgpack map with 2-4 keys starts with EXT1/2/4 (0x82-0x84). With
    pickle_loader = "any" (the default) the worker might have copyreg
    extensions, so it is dropped; with "plain" (plain pickle.loads: EXT raises)
    it passes. Real pickles are dropped either way."""
    import msgpack
    w, zf = setup_pull(start_worker, start_zmtpfw, pickle_loader=loader)
    ext_map = msgpack.packb({"request_id": "r1", "prompt": "hi"})
    assert ext_map[0] == 0x82
    attacks = [P.evil(marker, p) for p in range(6)]
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    for a in attacks:
        s.send(a)
    s.send(ext_map)
    s.send(CLEAN)
    w.wait_message([CLEAN])
    assert_safe(w, marker, *attacks)
    want = [[CLEAN]] if loader == "any" else [[ext_map], [CLEAN]]
    assert w.messages() == want
    drops = zf.events("drop", reason="pickle")
    assert len(drops) == (7 if loader == "any" else 6), drops


@pytest.mark.timeout_s(60)
def test_one_source_flooding_drops_hides_nobody(start_worker, start_zmtpfw, zctx, marker):
    """The log rate limit is per (route, event, source address): 150 pickles
    from 127.0.0.2 exhaust that source's burst, yet the first drop line of
    127.0.0.3 still appears, and every one of the 150 is accounted for, as a
    line or in a suppressed count naming 127.0.0.2."""
    w = start_worker("PULL")
    zf = start_zmtpfw([make_route("w", w.upstream, allow=["127.0.0.0/8"])], level="info")
    bad = zsock(zctx, zmq.PUSH, zf.endpoint("w"), source="127.0.0.2", timeout_ms=10000)
    for _ in range(150):
        bad.send(P.evil(marker, 4))
    bad.send(P.json_frame({"sentinel": "bad"}))
    w.wait_message([P.json_frame({"sentinel": "bad"})], timeout=20)
    other = zsock(zctx, zmq.PUSH, zf.endpoint("w"), source="127.0.0.3", timeout_ms=10000)
    other.send(P.evil(marker, 2))
    other.send(P.json_frame({"sentinel": "other"}))
    w.wait_message([P.json_frame({"sentinel": "other"})], timeout=20)
    assert w.messages() == [[P.json_frame({"sentinel": "bad"})], [P.json_frame({"sentinel": "other"})]]
    assert not marker.exists()
    drops = zf.events("drop", reason="pickle")
    assert [d for d in drops if d["peer"].startswith("127.0.0.3:")], "127.0.0.3's drop line was suppressed"

    def accounted():
        lines = [d for d in zf.events("drop") if d["peer"].startswith("127.0.0.2:")]
        carried = sum(d.get("suppressed", 0) for d in lines)
        counted = sum(e["count"] for e in zf.events("suppressed", of="drop", peer="127.0.0.2"))
        return len(lines) + carried + counted
    wait_until(lambda: accounted() == 150, 10, what="150 drops of 127.0.0.2 as lines or suppressed counts")
    assert len([d for d in drops if d["peer"].startswith("127.0.0.2:")]) < 150


def subscribe_cmd(topic, cancel=False):
    return Z.encode_frame((b"\x06CANCEL" if cancel else b"\x09SUBSCRIBE") + topic, command=True)


@pytest.mark.timeout_s(30)
@pytest.mark.parametrize("cancel", [False, True])
def test_subscribe_from_a_non_subscriber_is_refused(start_worker, start_zmtpfw, cancel):
    """A PUSH peer sends SUBSCRIBE (or CANCEL): libzmq would hand the PULL
    application the message \\x09SUBSCRIBE<topic>. zmtpfw closes with
    bad-command instead; the worker's first message is the next client's."""
    w, zf = setup_pull(start_worker, start_zmtpfw)
    with raw(zf) as c:
        c.handshake("PUSH")
        c.send(subscribe_cmd(b"topic", cancel))
        assert c.wait_closed(5), "SUBSCRIBE/CANCEL from a PUSH peer was accepted"
    ev = zf.wait_event("close", 5, reason="bad-command")
    assert ev["from"] == "client" and "not SUB or XSUB" in ev["detail"], ev
    with raw(zf) as c2:
        c2.handshake("PUSH")
        c2.send(Z.encode_frame(clean(1)))
        w.wait_messages(1)
    assert w.messages() == [[clean(1)]]


@pytest.fixture
def xpub(zctx):
    """A pyzmq XPUB worker: receives subscriptions as \\x01topic / \\x00topic."""
    s = zctx.socket(zmq.XPUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 10000)
    port = s.bind_to_random_port("tcp://127.0.0.1")
    yield s, f"127.0.0.1:{port}"
    s.close()


@pytest.mark.timeout_s(30)
def test_subscriber_subscribes_but_never_inside_a_message(start_zmtpfw, xpub):
    """A SUB peer's SUBSCRIBE reaches an XPUB worker. An XSUB peer that sends
    [f1 (MORE), SUBSCRIBE, f2] is closed with bad-command: f1 is held for
    scanning, and the command passed ahead of it would reach the worker
    before f1 (libzmq delivers [f1, SUB], [f2]); nothing of it arrives."""
    sock, upstream = xpub
    zf = start_zmtpfw([make_route("w", upstream)])
    with raw(zf) as sub:
        sub.handshake("SUB")
        sub.send(subscribe_cmd(b"first"))
        assert sock.recv() == b"\x01first"
    with raw(zf) as xsub:
        xsub.handshake("XSUB")
        xsub.send(Z.encode_frame(b'{"f":1}', more=True) + subscribe_cmd(b"early") +
                  Z.encode_frame(b'{"f":2}'))
        assert xsub.wait_closed(5), "SUBSCRIBE inside a message was accepted"
    ev = zf.wait_event("close", 5, reason="bad-command")
    assert ev["detail"] == "SUBSCRIBE or CANCEL inside a message", ev
    with raw(zf) as sub2:
        sub2.handshake("SUB")
        sub2.send(subscribe_cmd(b"sentinel"))
        got = []
        while not got or got[-1] != b"\x01sentinel":
            got.append(sock.recv())
    # nothing of the closed one came first (the first SUB leaving unsubscribes)
    assert [m for m in got if m != b"\x00first"] == [b"\x01sentinel"], got
    assert len(zf.events("close", reason="bad-command")) == 1
