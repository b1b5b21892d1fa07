"""Pickle attacks through zmtpfw against a worker that really unpickles
every frame: pickles p0-p5 and hand-written bypass forms, alone, in multipart
messages, byte by byte and with long-form sizes, on_violation = close, the C
client, pipelined and multi-MiB pickles, 200-frame messages, REQ envelopes,
concurrent peers, FRAME-straddling pickles, pickle_loader, and one source's
drops not hiding another's. Framing, handshake and admission attacks are in
test_attacks_protocol.py; the shared helpers in attacks_util.py.

A successful attack creates the marker file. Every "dropped" case also sends
a clean message afterwards and waits for it, so a dead connection or a dead
worker cannot pass for a drop.
"""

import subprocess

import pytest
import zmq

import payloads as P
import zmtp_raw as Z
from attacks_util import CLEAN, SENTINEL, assert_safe, clean, raw, sentinel, setup_pull
from conftest import PY, make_route, wait_until, zsock


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
