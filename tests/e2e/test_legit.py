"""Legitimate traffic through zmtpfw arrives byte-exact, in order, both ways."""

import hashlib
import os
import subprocess
import uuid

import pytest
import zmq

import payloads as P
import zmtp_raw as Z
from conftest import make_route, wait_until, zsock


SENTINEL = P.json_frame({"sentinel": True})

def setup_route(start_worker, start_zmtpfw, sock_type="PULL", mode="enforce", **route_kw):
    w = start_worker(sock_type)
    zf = start_zmtpfw([make_route("w", w.upstream, **route_kw)], mode=mode)
    return w, zf


def no_drops(zf):
    bad = [e for e in zf.lines() if e.get("event") in ("drop", "would-drop", "reject", "error")]
    assert not bad, f"unexpected log lines for legit traffic: {bad}"


def test_json_single_and_multipart(start_worker, start_zmtpfw, zctx):
    w, zf = setup_route(start_worker, start_zmtpfw)
    sent = [
        [P.json_frame({"prompt": "hello", "n": 1})],
        [P.json_frame([1, 2, 3])],
        [P.json_frame({"a": "x"}), P.json_frame({"b": "y"}), P.json_frame("z")],
        [b""],                                  # empty frame
        [b"", P.json_frame({"after": "empty"})],
        [b"plain text, not json"],
    ]
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    for m in sent:
        s.send_multipart(m)
    s.send(SENTINEL)  # PUSH keeps order: nothing of `sent` arrives after it
    w.wait_message([SENTINEL])
    assert w.messages() == sent + [[SENTINEL]]
    no_drops(zf)


def test_msgpack_single_and_multipart(start_worker, start_zmtpfw, zctx):
    """msgpack arrays (vLLM/SGLang request structs) and maps with 0-1 or >= 5
    keys: their first bytes are pickle opcodes (0x93 STACK_GLOBAL, 0x95
    FRAME, 0x80 PROTO...) that CPython would refuse at once."""
    w, zf = setup_route(start_worker, start_zmtpfw)
    frames = P.msgpack_frames()
    sent = [[v] for v in frames.values()]
    sent.append(list(frames.values()))
    sent.append([P.json_frame({"hdr": 1}), frames["array3"], frames["map6-nested"]])
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    for m in sent:
        s.send_multipart(m)
    s.send(SENTINEL)
    w.wait_message([SENTINEL])
    got = w.messages()
    assert got[-1] == [SENTINEL]
    got = got[:-1]
    for name, (a, b) in zip(list(frames) + ["all", "mixed"], zip(sent, got)):
        assert a == b, f"msgpack {name}: sent {a!r:.200}, worker got {b!r:.200}"
    assert got == sent
    no_drops(zf)


def test_req_rep_roundtrip(start_worker, start_zmtpfw, zctx):
    w, zf = setup_route(start_worker, start_zmtpfw, "REP")
    s = zsock(zctx, zmq.REQ, zf.endpoint("w"))
    reqs = [P.json_frame({"i": i}) for i in range(20)]
    reqs += [P.msgpack_frames()["array3"], b"\x00" + os.urandom(5000), b"\x00" + os.urandom(3 << 20)]
    for r in reqs:
        s.send(r)
        assert s.recv() == r
    assert len(w.messages()) == len(reqs)
    big = w.messages()[-1][0]
    assert big == {"len": len(reqs[-1]), "sha256": hashlib.sha256(reqs[-1]).hexdigest()}
    no_drops(zf)


def test_dealer_router_roundtrip(start_worker, start_zmtpfw, zctx):
    w, zf = setup_route(start_worker, start_zmtpfw, "ROUTER")
    s = zsock(zctx, zmq.DEALER, zf.endpoint("w"))
    msgs = [[P.json_frame({"i": i}), P.msgpack_frames()["array2"]] for i in range(10)]
    msgs.append([b"\x00" * 300])  # long-form frame
    for m in msgs:
        s.send_multipart(m)
        assert s.recv_multipart() == m
    assert w.messages() == msgs
    no_drops(zf)


def test_two_dealers_interleaved(start_worker, start_zmtpfw, zctx):
    w, zf = setup_route(start_worker, start_zmtpfw, "ROUTER")
    a = zsock(zctx, zmq.DEALER, zf.endpoint("w"))
    b = zsock(zctx, zmq.DEALER, zf.endpoint("w"))
    for i in range(20):
        a.send(b"A%d" % i)
        b.send(b"B%d" % i)
    assert [a.recv() for _ in range(20)] == [b"A%d" % i for i in range(20)]
    assert [b.recv() for _ in range(20)] == [b"B%d" % i for i in range(20)]


@pytest.mark.timeout_s(90)
def test_10000_messages_in_order(start_worker, start_zmtpfw, zctx):
    w, zf = setup_route(start_worker, start_zmtpfw)
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"), timeout_ms=20000)
    s.setsockopt(zmq.SNDHWM, 0)
    n = 10000
    for i in range(n):
        s.send(b'{"seq":%d}' % i)
    wait_until(lambda: len(w.messages()) >= n, 60, interval=0.2, what=f"{n} messages")
    got = w.messages()
    assert len(got) == n
    bad = [i for i, m in enumerate(got) if m != [b'{"seq":%d}' % i]]
    assert not bad, f"{len(bad)} messages out of order/corrupt, first at {bad[0]}: {got[bad[0]]!r}"
    no_drops(zf)


@pytest.mark.timeout_s(90)
def test_64mib_message(start_worker, start_zmtpfw, zctx):
    """One 64 MiB frame of random bytes starting with 0x00 (not a pickle
    opcode: CPython raises at once) arrives byte-exact."""
    w, zf = setup_route(start_worker, start_zmtpfw)
    big = bytearray(os.urandom(64 << 20))
    big[0] = 0x00
    big = bytes(big)
    assert not P.reaches_import(big[:4096])
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"), timeout_ms=30000)
    s.send_multipart([P.json_frame({"hdr": "big"}), big])
    s.send(P.json_frame({"after": "big"}))
    wait_until(lambda: len(w.messages()) >= 2, 60, interval=0.2, what="the 64 MiB message")
    m = w.messages()
    assert m[0][0] == P.json_frame({"hdr": "big"})
    assert m[0][1] == {"len": len(big), "sha256": hashlib.sha256(big).hexdigest()}
    assert m[1] == [P.json_frame({"after": "big"})]
    no_drops(zf)


def test_allow_pickle_from_trusted_peer(start_worker, start_zmtpfw, zctx, marker):
    """allow_pickle_from = 127.0.0.2/32: a pickle that imports (benign:
    datetime.date) from 127.0.0.2 reaches the worker, which unpickles it;
    the same pickle from 127.0.0.1 is dropped."""
    w, zf = setup_route(start_worker, start_zmtpfw, allow=["127.0.0.0/8"], allow_pickle_from=["127.0.0.2/32"])
    date_p = P.benign_global_pickle(4)
    dict_p = P.benign_dict_pickle(4)
    assert P.reaches_import(date_p)
    trusted = zsock(zctx, zmq.PUSH, zf.endpoint("w"), source="127.0.0.2")
    trusted.send(date_p)
    trusted.send(dict_p)
    trusted.send_multipart([P.json_frame({"x": 1}), P.benign_global_pickle(2)])
    recs = None

    def three():
        nonlocal recs
        recs = w.message_records()
        return len(recs) >= 3
    wait_until(three, 5, what="3 messages from the trusted peer")
    assert w.messages()[:3] == [[date_p], [dict_p], [P.json_frame({"x": 1}), P.benign_global_pickle(2)]]
    assert recs[0]["loaded"] == [repr(P.BENIGN_DATE)]
    assert recs[1]["loaded"] == [repr({"a": 1, "b": [1, 2, 3], "c": "text"})]
    assert recs[2]["loaded"][1] == repr(P.BENIGN_DATE)
    assert not zf.events("drop")
    # Control: untrusted peer on the same route.
    untrusted = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    untrusted.send(date_p)
    untrusted.send(P.json_frame({"untrusted": "clean"}))
    w.wait_message([P.json_frame({"untrusted": "clean"})])
    assert len(w.messages()) == 4
    d = zf.wait_event("drop", reason="pickle")
    assert d["peer"].startswith("127.0.0.1:"), d


def test_pickle_allow_route(start_worker, start_zmtpfw, zctx):
    """pickle = "allow": scanning off on that route."""
    w, zf = setup_route(start_worker, start_zmtpfw, pickle="allow")
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    s.send(P.benign_global_pickle(4))
    w.wait_message([P.benign_global_pickle(4)])
    assert w.message_records()[0]["loaded"] == [repr(P.BENIGN_DATE)]
    assert not zf.events("drop")


def test_unix_upstream(start_worker, start_zmtpfw, zctx, marker):
    path = f"/tmp/zf-e2e-{uuid.uuid4().hex[:12]}.sock"
    try:
        w = start_worker("PULL", bind=f"ipc://{path}")
        assert w.upstream == f"unix:{path}"
        zf = start_zmtpfw([make_route("w", w.upstream)])
        s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
        attack = P.evil(marker, 4)
        s.send(attack)
        s.send_multipart([P.json_frame({"via": "unix"}), P.msgpack_frames()["array3"]])
        w.wait_message([P.json_frame({"via": "unix"}), P.msgpack_frames()["array3"]])
        assert w.messages() == [[P.json_frame({"via": "unix"}), P.msgpack_frames()["array3"]]]
        assert not marker.exists()
        zf.wait_event("drop", reason="pickle")
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def test_upstream_unreachable_then_recovers(start_worker, start_zmtpfw, zctx):
    """Route "down" points at a closed port: the client is closed with reason
    upstream-unreachable; route "up" keeps working meanwhile; once a worker
    listens on the port, "down" works too."""
    from conftest import free_port
    live = start_worker("PULL")
    dead_port = free_port()
    zf = start_zmtpfw([make_route("down", f"127.0.0.1:{dead_port}"), make_route("up", live.upstream)])
    with Z.RawClient("127.0.0.1", zf.port("down")) as c:
        c.try_send(Z.full_greeting())
        assert c.wait_closed(5), "client not closed when the upstream is unreachable"
    zf.wait_event("close", reason="upstream-unreachable", route="down")
    zf.assert_alive()
    s = zsock(zctx, zmq.PUSH, zf.endpoint("up"))
    s.send(b'{"route":"up"}')
    live.wait_message([b'{"route":"up"}'])
    w2 = start_worker("PULL", bind=f"tcp://127.0.0.1:{dead_port}")
    s2 = zsock(zctx, zmq.PUSH, zf.endpoint("down"))
    s2.send(b'{"route":"down"}')
    w2.wait_message([b'{"route":"down"}'], timeout=10)


def test_slow_handshake_and_data(start_worker, start_zmtpfw):
    """Greeting, READY and data one byte per segment: relay must not care."""
    w, zf = setup_route(start_worker, start_zmtpfw)
    with Z.RawClient("127.0.0.1", zf.port("w")) as c:
        c.greet(slow=True)
        c.send_ready("PUSH", slow=True)
        c.recv_ready()
        msg = [P.json_frame({"slow": 1}), P.msgpack_frames()["array5"]]
        c.send_slowly(Z.encode_message(msg), delay=0.0005)
        w.wait_message(msg)
    no_drops(zf)


def test_ready_properties_relayed(start_worker, start_zmtpfw):
    """The worker's READY reaches the client with its Socket-Type; extra
    client properties (Identity, unknown ones) are fine."""
    w, zf = setup_route(start_worker, start_zmtpfw, "ROUTER")
    with Z.RawClient("127.0.0.1", zf.port("w")) as c:
        c.greet()
        assert c.peer_greeting[:1] == b"\xff" and c.peer_greeting[10] == 3
        c.send(Z.ready_command("DEALER", extra=[(b"Identity", b"client-1"), (b"X-Custom", b"v")]))
        body = c.recv_ready()
        assert b"Socket-Type" in body and b"ROUTER" in body
        c.send(Z.encode_message([b"hello", b"world"]))
        assert c.recv_message() == [b"hello", b"world"]
    assert w.messages() == [[b"hello", b"world"]]


# --- the libzmq C client ---------------------------------------------------------------------

def run_client(binpath, *args, timeout=30):
    r = subprocess.run([str(binpath), *map(str, args), "--timeout-ms", "8000"],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"zmq_client {args} rc={r.returncode}: {r.stdout} {r.stderr}"
    return r


def test_c_client_push(start_worker, start_zmtpfw, zmq_client_bin):
    w, zf = setup_route(start_worker, start_zmtpfw)
    n, k, size = 300, 3, 200
    run_client(zmq_client_bin, "--connect", zf.endpoint("w"), "--type", "PUSH",
               "--count", n, "--size", size, "--multipart", k)
    w.wait_messages(n, timeout=10)
    expected = [[P.client_frame(i, f, size) for f in range(k)] for i in range(n)]
    assert w.messages() == expected
    no_drops(zf)


def test_c_client_req(start_worker, start_zmtpfw, zmq_client_bin):
    w, zf = setup_route(start_worker, start_zmtpfw, "REP")
    run_client(zmq_client_bin, "--connect", zf.endpoint("w"), "--type", "REQ",
               "--count", 100, "--size", 1000)
    assert len(w.messages()) == 100
    assert w.messages()[7] == [P.client_frame(7, 0, 1000)]


def test_c_client_dealer_large(start_worker, start_zmtpfw, zmq_client_bin):
    w, zf = setup_route(start_worker, start_zmtpfw, "ROUTER")
    run_client(zmq_client_bin, "--connect", zf.endpoint("w"), "--type", "DEALER",
               "--count", 5, "--size", 2 << 20, "--multipart", 2)
    assert len(w.messages()) == 5
    no_drops(zf)


def test_c_client_from_other_source(start_worker, start_zmtpfw, zmq_client_bin):
    """--source works through libzmq (used to test allowlists from C too)."""
    w, zf = setup_route(start_worker, start_zmtpfw, allow=["127.0.0.5/32"])
    run_client(zmq_client_bin, "--connect", zf.endpoint("w"), "--type", "PUSH",
               "--count", 3, "--size", 50, "--source", "127.0.0.5")
    w.wait_messages(3)
    zf.wait_event("accept", peer=lambda p: p and p.startswith("127.0.0.5:"))


# --- the log itself -----------------------------------------------------------------------------

def test_log_lines_are_json_with_identity(start_worker, start_zmtpfw, zctx, marker):
    w, zf = setup_route(start_worker, start_zmtpfw)
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    s.send(P.evil(marker, 4))
    s.send(b'{"ok":1}')
    w.wait_message([b'{"ok":1}'])
    s.close(0)
    zf.wait_event("close", reason="client-closed")
    lines = zf.lines()
    nonjson = [l["raw"] for l in lines if l.get("event") == "_nonjson"]
    assert not nonjson, f"non-JSON log lines: {nonjson[:5]}"
    for l in lines:
        for k in ("ts", "level", "event"):
            assert k in l, f"log line without {k}: {l}"
    acc = zf.wait_event("accept")
    for ev in ("accept", "drop", "close"):
        e = zf.wait_event(ev, conn=acc["conn"])
        for k in ("route", "conn", "peer"):
            assert e.get(k) not in (None, ""), f"{ev} line without {k}: {e}"
        assert e["peer"] == acc["peer"] and e["route"] == "w"
    cl = zf.wait_event("close", conn=acc["conn"])
    for k in ("bytes_in", "bytes_out", "duration_ms"):
        assert isinstance(cl.get(k), int), f"close line {k}: {cl}"
    assert cl["bytes_in"] > len(P.evil(marker, 4)), cl
    li = zf.wait_event("listening")
    assert li.get("listen") and li.get("upstream"), li


def test_dealer_with_routing_id(start_worker, start_zmtpfw, zctx):
    """libzmq puts routing-id length + 1 in the signature padding: zmtpfw
    must not insist on zero padding."""
    w, zf = setup_route(start_worker, start_zmtpfw, "ROUTER")
    s = zctx.socket(zmq.DEALER)
    s.setsockopt(zmq.ROUTING_ID, b"client-with-a-long-identity")
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 5000)
    s.setsockopt(zmq.SNDTIMEO, 5000)
    s.connect(zf.endpoint("w"))
    s.send_multipart([b'{"id":1}', b"\x00x"])
    assert s.recv_multipart() == [b'{"id":1}', b"\x00x"]


def test_zmtp30_peer(start_worker, start_zmtpfw):
    """A ZMTP 3.0 peer (minor version 0) is legitimate."""
    w, zf = setup_route(start_worker, start_zmtpfw)
    with Z.RawClient("127.0.0.1", zf.port("w")) as c:
        c.greet(minor=0)
        c.send_ready("PUSH")
        c.recv_ready()
        c.send(Z.encode_frame(b'{"v":"3.0"}'))
        w.wait_message([b'{"v":"3.0"}'])
