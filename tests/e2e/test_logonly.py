"""log-only mode: verdicts are logged (would-drop, would-reject) but traffic
passes. The worker here only records frames (--no-unpickle)."""

import pytest
import zmq

import payloads as P
import zmtp_raw as Z
from conftest import make_route, zsock


@pytest.mark.parametrize("where", ["global", "route"])
def test_log_only_pickle_forwarded_and_logged(start_worker, start_zmtpfw, zctx, marker, where):
    w = start_worker("PULL", no_unpickle=True)
    if where == "global":
        zf = start_zmtpfw([make_route("w", w.upstream)], mode="log-only")
    else:
        zf = start_zmtpfw([make_route("w", w.upstream, mode="log-only")], mode="enforce")
    attack = P.evil(marker, 4)
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    s.send(attack)
    s.send_multipart([b'{"a":1}', P.evil(marker, 0)])
    s.send(b'{"after":1}')
    w.wait_message([b'{"after":1}'])
    assert w.messages() == [[attack], [b'{"a":1}', P.evil(marker, 0)], [b'{"after":1}']]
    d = zf.wait_event("would-drop", reason="pickle")
    assert d["frame"] == 0 and d["opcode"] == "STACK_GLOBAL", d
    zf.wait_event("would-drop", reason="pickle", frame=1)
    assert not zf.events("drop"), "log-only mode logged a real drop"
    assert not marker.exists()  # the worker never unpickles in this test


def test_enforce_route_beside_log_only_route(start_worker, start_zmtpfw, zctx, marker):
    """Per-route mode: the enforce route still drops."""
    w1 = start_worker("PULL", no_unpickle=True)
    w2 = start_worker("PULL")
    zf = start_zmtpfw([make_route("lo", w1.upstream, mode="log-only"),
                       make_route("en", w2.upstream, mode="enforce")], mode="log-only")
    attack = P.evil(marker, 2)
    a = zsock(zctx, zmq.PUSH, zf.endpoint("lo"))
    b = zsock(zctx, zmq.PUSH, zf.endpoint("en"))
    a.send(attack)
    b.send(attack)
    b.send(b'{"en":1}')
    w2.wait_message([b'{"en":1}'])
    w1.wait_message([attack])
    assert w2.messages() == [[b'{"en":1}']]
    zf.wait_event("drop", route="en")
    zf.wait_event("would-drop", route="lo")
    assert not marker.exists()


def test_log_only_allowlist_would_reject(start_worker, start_zmtpfw, zctx):
    w = start_worker("PULL", no_unpickle=True)
    zf = start_zmtpfw([make_route("w", w.upstream, allow=["127.0.0.1/32"])], mode="log-only")
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"), source="127.0.0.2")
    s.send(b'{"from":"127.0.0.2"}')
    w.wait_message([b'{"from":"127.0.0.2"}'])
    d = zf.wait_event("would-reject", reason="not-allowed")
    assert d["peer"].startswith("127.0.0.2:"), d
    assert not zf.events("reject")


def test_log_only_socket_type_would_reject(start_worker, start_zmtpfw):
    w = start_worker("ROUTER", no_unpickle=True)
    zf = start_zmtpfw([make_route("w", w.upstream, socket_types=["DEALER"])], mode="log-only")
    with Z.RawClient("127.0.0.1", zf.port("w")) as c:
        c.greet()
        c.send_ready("REQ")
        c.recv_ready()
        c.send(Z.encode_message([b"", b'{"req":1}']))
        assert c.recv_message() == [b"", b'{"req":1}']
    zf.wait_event("would-reject", reason="socket-type")
    assert not zf.events("reject")


def test_log_only_still_closes_protocol_violations(start_worker, start_zmtpfw, marker):
    """log-only relaxes policy (pickle, allowlist, socket type), not framing:
    a 2^62 frame still closes (the spec names no would-close)."""
    w = start_worker("PULL", no_unpickle=True)
    zf = start_zmtpfw([make_route("w", w.upstream)], mode="log-only")
    with Z.RawClient("127.0.0.1", zf.port("w")) as c:
        c.handshake("PUSH")
        c.try_send(b"\x02" + (1 << 62).to_bytes(8, "big") + b"x" * 64)
        assert c.wait_closed(5)
    zf.wait_event("close", reason="frame-too-large")
    zf.assert_alive()
