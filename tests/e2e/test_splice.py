"""Long frame bodies moved by splice(2) once their verdict is known.

The rest of a judged frame goes socket -> pipe -> socket without entering
user space, so these tests check what splicing must never change: bytes
arrive exact and in order, the parser finds the next frame header exactly
where the spliced body ends (a pickle right behind a spliced frame is still
dropped), a pickle is never spliced, held frames wait for the last verdict,
backpressure and peers closing mid-body behave as on the buffered path.
zmtpfw_spliced_bytes_total proves the splice path ran; `splice = false`
proves the same traffic takes the buffered path with the counter at 0.
"""

import os
import signal
import socket
import struct
import threading
import time

import pytest
import zmq

import payloads as P
import zmtp_raw as Z
from conftest import MIB, fd_count, rss_kib, tcp_rows, wait_until, zsock
from splice_util import body_of, digest, metric, raw_session, spliced, wakeups



def no_warnings(zf):
    bad = [d for d in zf.lines() if d.get("level") in ("warn", "error")]
    assert not bad, bad[:5]


@pytest.mark.timeout_s(90)
@pytest.mark.parametrize("splice", [True, False])
def test_long_frames_byte_exact_and_counted(start_worker, splice_fw, zctx, splice):
    """Single-frame and header + tensor messages of 2..32 MiB arrive exact,
    in order, between small ones. With splice on, most of their bytes went
    through the kernel; with it off, none did."""
    w = start_worker("PULL")
    zf = splice_fw(w.upstream, splice=splice)
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"), timeout_ms=30000)
    sent = []
    for i, size in enumerate([2 * MIB, 32 * MIB, 3 * MIB + 7, 8 * MIB]):
        big = body_of(size)
        msg = [big] if i % 2 == 0 else [P.json_frame({"hdr": i}), big]
        s.send_multipart(msg)
        s.send(P.json_frame({"small": i}))
        sent += [msg, [P.json_frame({"small": i})]]
    want = [[digest(f) if len(f) > MIB else f for f in m] for m in sent]
    wait_until(lambda: len(w.messages()) >= len(want), 60, interval=0.2, what="all messages")
    assert w.messages() == want
    total = sum(len(f) for m in sent for f in m)
    if splice:
        assert spliced(zf) > total // 2, (spliced(zf), total)
    else:
        assert spliced(zf) == 0
    assert metric(zf, "zmtpfw_relayed_bytes_total") > total
    no_warnings(zf)


@pytest.mark.timeout_s(90)
def test_pickle_right_after_spliced_frame_is_dropped(start_worker, splice_fw, zctx, marker):
    """The parser resumes at the exact end of each spliced body: a pickle
    sent right behind a spliced frame, in the same TCP stream, is found and
    dropped, and the clean messages around it arrive."""
    w = start_worker("PULL")
    zf = splice_fw(w.upstream)
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"), timeout_ms=30000)
    a, b = body_of(4 * MIB), body_of(4 * MIB + 123)
    s.send(a)
    s.send(P.evil(marker, 5))
    s.send(b)
    s.send_multipart([P.json_frame({"hdr": 1}), P.evil(marker, 2)])
    s.send(P.json_frame({"after": True}))
    wait_until(lambda: len(w.messages()) >= 3, 60, interval=0.2, what="three clean messages")
    assert w.messages() == [[digest(a)], [digest(b)], [P.json_frame({"after": True})]]
    assert not marker.exists()
    assert len(zf.events("drop", reason="pickle")) == 2
    assert spliced(zf) > 6 * MIB


@pytest.mark.timeout_s(90)
def test_long_pickle_is_never_spliced(start_worker, splice_fw, zctx, marker):
    """An 8 MiB frame that is a pickle (a dangerous prefix, then padding in
    a BINBYTES8 argument) is judged at its head and drained, not spliced."""
    w = start_worker("PULL")
    zf = splice_fw(w.upstream)
    evil = P.evil(marker, 5)
    pad = 8 * MIB
    # PROTO 5, then BINBYTES8 <pad>, POP, then the attack's own opcodes.
    frame = b"\x80\x05" + b"\x8e" + struct.pack("<Q", pad) + os.urandom(pad) + b"0" + evil[2:]
    assert P.reaches_import(frame)  # CPython imports only after the 8 MiB argument
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"), timeout_ms=30000)
    s.send(frame)
    s.send(P.json_frame({"after": True}))
    w.wait_message([P.json_frame({"after": True})], timeout=30)
    assert not marker.exists()
    assert zf.events("drop", reason="pickle")
    assert spliced(zf) == 0


@pytest.mark.timeout_s(90)
def test_held_frames_wait_for_the_last_verdict(start_worker, splice_fw, zctx, marker):
    """Clean 4 MiB frames with MORE are held (not spliced): a pickle in the
    last frame still drops the whole message; a clean last frame releases
    it, and only that last frame may be spliced."""
    w = start_worker("PULL")
    zf = splice_fw(w.upstream)
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"), timeout_ms=30000)
    f1, f2 = body_of(4 * MIB), body_of(4 * MIB)
    s.send_multipart([f1, f2, P.evil(marker, 4)])
    tail = body_of(6 * MIB)
    s.send_multipart([f1, tail])
    s.send(P.json_frame({"sentinel": 1}))  # PUSH keeps order: nothing else arrives after it
    wait_until(lambda: len(w.messages()) >= 2, 60, interval=0.2, what="the clean message and the sentinel")
    assert w.messages() == [[digest(f1), digest(tail)], [P.json_frame({"sentinel": 1})]]
    assert not marker.exists()
    n = spliced(zf)
    assert 0 < n <= len(tail), n


class SlowRawWorker:
    """A ZMTP PULL worker by hand that reads 64 KiB at a time with a pause
    between reads, through a small receive buffer: zmtpfw's queue towards
    it is never empty right after zmtpfw read from the client. Records the
    bytes it received after the handshake."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.data = bytearray()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def upstream(self):
        return "127.0.0.1:%d" % self.lsock.getsockname()[1]

    def _recv_exact(self, c, n):
        buf = b""
        while len(buf) < n:
            chunk = c.recv(n - len(buf))
            if not chunk:
                raise Z.Closed("EOF in handshake")
            buf += chunk
        return buf

    def _run(self):
        try:
            self.lsock.settimeout(60)
            c, _ = self.lsock.accept()
            c.settimeout(60)
            with c:
                c.sendall(Z.full_greeting())
                self._recv_exact(c, 64)
                c.sendall(Z.ready_command("PULL"))
                flags, size = self._recv_exact(c, 2)
                self._recv_exact(c, size)
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    self.data += chunk
                    time.sleep(0.002)
        except Exception as e:  # reported by the test
            self.error = e


@pytest.mark.timeout_s(90)
def test_splice_starts_when_a_slow_worker_drains(splice_fw):
    """Against a worker slower than the client, zmtpfw's queue towards it is
    never empty right after a read. The decision to splice the rest of a
    judged 8 MiB frame is taken again when that queue drains, so the body
    is spliced (and arrives exact) instead of staying on the buffered path
    for good."""
    w = SlowRawWorker()
    zf = splice_fw(w.upstream)
    c = raw_session(zf)
    head, tail = body_of(4 * MIB), body_of(8 * MIB)
    wire = Z.encode_message([head, tail])
    c.send(wire)
    wait_until(lambda: len(w.data) >= len(wire) or w.error, 60, interval=0.1, what="the message at the worker")
    assert w.error is None, w.error
    assert bytes(w.data) == wire
    n = spliced(zf)
    assert 4 * MIB < n <= len(tail), n
    c.close()


@pytest.mark.timeout_s(90)
def test_worker_to_client_replies_spliced(start_worker, splice_fw, zctx):
    """The worker's direction is not scanned: long replies are spliced from
    the first body bytes on and reach the client exact."""
    w = start_worker("REP")
    zf = splice_fw(w.upstream)
    s = zsock(zctx, zmq.REQ, zf.endpoint("w"), timeout_ms=30000)
    for size in (3 * MIB, 16 * MIB):
        req = body_of(size)
        s.send(req)
        assert s.recv() == req
    assert spliced(zf, "worker_to_client") > 16 * MIB
    no_warnings(zf)


@pytest.mark.timeout_s(120)
def test_backpressure_while_splicing(start_worker, splice_fw, zctx, workdir):
    """A worker that stops reading while 96 MiB are in flight: once zmtpfw has
    stopped reading the client (the backpressure reached it), the pipe and
    socket buffers bound what zmtpfw holds (RSS grows by less than 8 MiB),
    and everything arrives once the worker reads again."""
    w = start_worker("PULL")
    zf = splice_fw(w.upstream)
    rss0 = rss_kib(zf.proc.pid)
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"), timeout_ms=60000)
    # Handshake done first: a worker stopped before it would hold the
    # connection at its greeting, with nothing in flight at all.
    s.send(b'{"first":1}')
    w.wait_message([b'{"first":1}'])
    os.kill(w.proc.pid, signal.SIGSTOP)
    try:
        bigs = [body_of(16 * MIB) for _ in range(6)]
        for b in bigs:
            s.send(b, copy=False)
        # zmtpfw has stopped reading the client: bytes wait unread in its
        # socket, and no read event was handled between two looks at them.
        port, last = zf.port("w"), [None]

        def stopped_reading():
            now = (wakeups(zf), sum(rx for lp, _, st, _, rx in tcp_rows() if lp == port and st == "01"))
            prev, last[0] = last[0], now
            return prev is not None and prev[1] > 0 and now[1] > 0 and now[0] == prev[0]
        wait_until(stopped_reading, 60, interval=0.2, what="zmtpfw to stop reading the client")
        peak = rss_kib(zf.proc.pid)
    finally:
        os.kill(w.proc.pid, signal.SIGCONT)
    wait_until(lambda: len(w.messages()) >= 1 + len(bigs), 90, interval=0.2, what="six 16 MiB messages")
    assert w.messages() == [[b'{"first":1}']] + [[digest(b)] for b in bigs]
    assert peak - rss0 < 8 * 1024, (rss0, peak)
    assert spliced(zf) > 48 * MIB


@pytest.mark.timeout_s(120)
def test_peers_closing_mid_splice(start_worker, splice_fw, zctx):
    """Clients that declare 8 MiB, send 3 MiB slowly and close; a worker
    killed while a long frame is spliced to it. zmtpfw logs each close,
    keeps serving, and holds no more than its pool of pipes afterwards."""
    w = start_worker("PULL", no_unpickle=True)
    zf = splice_fw(w.upstream)
    fds0 = fd_count(zf.proc.pid)
    for i in range(20):
        c = raw_session(zf)
        c.send(bytes([Z.FLAG_LONG]) + struct.pack(">Q", 8 * MIB) + b"\x00" + os.urandom(64 << 10))
        time.sleep(0.02)
        c.send(os.urandom(3 * MIB))
        c.sock.close()
    wait_until(lambda: len(zf.events("close", reason="client-closed")) >= 20, 20,
               what="20 client closes")
    assert spliced(zf) > 20 * 2 * MIB
    # the pool keeps at most 16 pipes (two descriptors each)
    wait_until(lambda: fd_count(zf.proc.pid) <= fds0 + 32, 10,
               what=f"descriptors back near {fds0} (have {fd_count(zf.proc.pid)})")
    # Clean traffic still flows.
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"), timeout_ms=30000)
    s.send(P.json_frame({"ok": 1}))
    w.wait_message([P.json_frame({"ok": 1})], timeout=10)

    # The worker dies while a long frame is being spliced into it.
    c = raw_session(zf)
    c.send(bytes([Z.FLAG_LONG]) + struct.pack(">Q", 64 * MIB) + b"\x00" + os.urandom(4 * MIB))
    wait_until(lambda: spliced(zf) > 20 * 2 * MIB + MIB, 10, what="the splice to start")
    w.stop()
    try:
        for _ in range(100):
            c.send(os.urandom(256 << 10))
    except OSError:
        pass
    zf.wait_event("close", 10, reason=lambda r: r in ("upstream-error", "upstream-closed"))
    zf.assert_alive()


@pytest.mark.timeout_s(60)
def test_body_trickling_in(start_worker, splice_fw):
    """A long frame whose body arrives in 64 KiB pieces with pauses: the
    splice waits for its source without spinning (zmtpfw's CPU stays low)
    and the frame arrives exact."""
    w = start_worker("PULL", no_unpickle=True)
    zf = splice_fw(w.upstream)
    c = raw_session(zf)
    body = body_of(4 * MIB)
    c.send(bytes([Z.FLAG_LONG]) + struct.pack(">Q", len(body)) + body[:100 << 10])
    w0 = wakeups(zf)
    pieces = 0
    for off in range(100 << 10, len(body), 256 << 10):
        c.send(body[off:off + (256 << 10)])
        pieces += 1
        time.sleep(0.05)  # gives a spinning pump time to show
    w.wait_message([digest(body)], timeout=10)
    # each 256 KiB piece: a few reads into the pipe and writes out of it
    # (the socket hands over 64 KiB or more at a time); a pump spinning on
    # an empty socket would count thousands
    n = wakeups(zf) - w0
    assert n <= 16 * pieces, (n, pieces)
    assert spliced(zf) > 3 * MIB
