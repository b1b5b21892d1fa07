"""Framing, handshake and admission attacks through zmtpfw against a worker
that really unpickles every frame: reserved flag bits, READY as data or with
MORE, malformed or duplicate READY properties, a missing Socket-Type, frames
before the peer's READY, ZMTP 1.0/2.0 greetings, other mechanisms, the
allowlist (incl. dual-stack and allow_pickle_from), size limits (scanned and
unscanned routes), commands with MORE, SUBSCRIBE/CANCEL out of place, the
handshake timeout, socket types, max_connections, half-close, worker exit and
a worker's ERROR. Pickle-payload attacks are in test_attacks.py; the shared
helpers in attacks_util.py.

A successful attack creates the marker file. Every "dropped" case also sends
a clean message afterwards and waits for it, so a dead connection or a dead
worker cannot pass for a drop.
"""

import struct
import time

import pytest
import zmq

import payloads as P
import zmtp_raw as Z
from attacks_util import CLEAN, SENTINEL, assert_safe, clean, raw, sentinel, setup_pull
from conftest import free_port, make_route, unread_by_peer, wait_until, zsock


# --- framing and handshake from a raw peer ------------------------------------------

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


# --- harder cases ---------------------------------------------------------------------------

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
