"""Edge cases of the splice(2) data path, beyond test_splice.py:

- a TCP urgent (MSG_OOB) byte inside a spliced body (busy loop, stalled frame);
- unix-socket upstreams spliced both ways;
- no pipe to be had (EMFILE): the buffered path takes the frame;
- a non-root process whose pipes cannot grow (F_SETPIPE_SZ refused);
- SIGTERM drain, idle timeout, log-only would-drop and trusted multipart
  messages while frames are spliced.
"""

import fcntl
import os
import re
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import pytest
import zmq

import payloads as P
import zmtp_raw as Z
from conftest import MIB, Zmtpfw, fd_count, free_port, make_route, render_config, wait_until
from splice_util import body_of, digest, metric, raw_session, spliced, wakeups



@pytest.mark.timeout_s(60)
@pytest.mark.parametrize("splice", [False, True])
def test_tcp_urgent_byte_inside_spliced_body(start_worker, splice_fw, splice):
    """A client sends one TCP urgent (MSG_OOB) byte inside a long frame body.
    readv() steps over the urgent mark (the byte is out of band), but
    splice() from a TCP socket stops in front of it and returns EAGAIN while
    the socket stays readable: with a level-triggered read event the pump
    spins at 100% CPU and the frame never completes. The buffered path
    (splice = false) relays the frame and stays idle."""
    w = start_worker("PULL", no_unpickle=True)
    zf = splice_fw(w.upstream, splice=splice)
    c = raw_session(zf)
    size = 1 * MIB
    body = body_of(size)
    c.send(bytes([Z.FLAG_LONG]) + struct.pack(">Q", size) + body[:256 << 10])
    if splice:
        wait_until(lambda: spliced(zf) > 0, 5, what="the splice to start")
    c.sock.send(b"!", socket.MSG_OOB)  # out of band: not part of the stream
    c.send(body[256 << 10:512 << 10])
    # Everything before the rest of the body has reached the worker (the
    # greeting, READY, the frame header and 512 KiB of body): from here on
    # zmtpfw has nothing to do until the client sends more.
    before = 64 + len(Z.ready_command("PUSH")) + 9 + (512 << 10)
    try:
        wait_until(lambda: metric(zf, "zmtpfw_relayed_bytes_total") >= before, 10,
                   what="the body up to the urgent byte and past it at the worker")
    except AssertionError:
        pytest.fail(f"stuck at the urgent byte: {metric(zf, 'zmtpfw_relayed_bytes_total')} of {before} "
                    f"bytes relayed, {wakeups(zf)} wakeups")
    w0 = wakeups(zf)
    time.sleep(1.0)  # a spinning read event would handle thousands of events here
    idle = wakeups(zf) - w0
    c.send(body[512 << 10:])
    c.send(Z.encode_frame(b'{"after":1}'))
    # the worker gets the frame (without the out-of-band byte) and the next one
    wait_until(lambda: len(w.messages()) >= 2, 10, what="both messages at the worker")
    assert idle == 0 and w.messages() == [[body], [b'{"after":1}']], (
        f"zmtpfw handled {idle} events while idle; worker has {len(w.messages())} message(s)")


@pytest.mark.timeout_s(60)
def test_unix_upstream_spliced_both_ways(start_worker, splice_fw, workdir):
    """upstream = "unix:/path": long frames spliced TCP -> pipe -> unix
    socket and back arrive exact, and the next frame is parsed where the
    spliced body ends."""
    w = start_worker("REP", bind=f"ipc://{workdir}/w.sock", no_unpickle=True)
    zf = splice_fw(w.upstream)
    ctx = zmq.Context()
    try:
        s = ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVTIMEO, 20000)
        s.setsockopt(zmq.SNDTIMEO, 20000)
        s.connect(f"tcp://127.0.0.1:{zf.port('w')}")
        for size in (3 * MIB + 5, 200 << 10):
            req = body_of(size)
            s.send(req)
            assert s.recv() == req
        s.close()
    finally:
        ctx.term()
    assert spliced(zf) > 3 * MIB
    assert spliced(zf, "worker_to_client") > 3 * MIB
    zf.assert_alive()


@pytest.mark.timeout_s(60)
def test_no_pipe_available_falls_back_to_buffered(start_worker, splice_fw):
    """pipe2() failing with EMFILE (descriptor limit reached) must leave
    the long frame on the buffered path, byte-exact, without spinning."""
    w = start_worker("PULL", no_unpickle=True)
    zf = splice_fw(w.upstream)
    c = raw_session(zf)
    pid = zf.proc.pid
    fds0 = fd_count(pid)
    w0 = wakeups(zf)  # scraped while descriptors are plentiful
    # the scrape's descriptor must be gone before the limit is computed
    wait_until(lambda: fd_count(pid) <= fds0, 10, what="the scrape connection closed")
    used = {int(f) for f in os.listdir(f"/proc/{pid}/fd")}
    lowest = next(n for n in range(len(used) + 1) if n not in used)
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    # exactly one more descriptor fits (every one below it is taken): pipe2 (two) fails with EMFILE
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest + 1, old[1]))
    try:
        size = 4 * MIB
        body = body_of(size)
        c.send(bytes([Z.FLAG_LONG]) + struct.pack(">Q", size) + body)
        c.send(Z.encode_frame(b'{"after":1}'))
        wait_until(lambda: len(w.messages()) >= 2, 10, what="both messages")
        assert w.messages() == [[digest(body)], [b'{"after":1}']]
        time.sleep(0.5)  # a spinning event would handle thousands of events here
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
    # 4 MiB in reads of at least 16 KiB, each maybe followed by a write event
    n = wakeups(zf) - w0
    assert n <= 2 * (size >> 14) + 16, n
    assert spliced(zf) == 0


@pytest.mark.timeout_s(30)
def test_sigterm_mid_splice_completes_frame_then_stops(start_worker, splice_fw):
    """SIGTERM while a long last frame is being spliced: the frame completes
    and reaches the worker, the message queued right behind it in the same
    TCP stream is not taken (drain stops at the boundary the spliced frame
    ends on), and zmtpfw exits 0 with the connection drained, not forced."""
    w = start_worker("PULL", no_unpickle=True)
    zf = splice_fw(w.upstream)
    c = raw_session(zf)
    size = 4 * MIB
    body = body_of(size)
    c.send(bytes([Z.FLAG_LONG]) + struct.pack(">Q", size) + body[:256 << 10])
    wait_until(lambda: spliced(zf) > 0, 5, what="the splice to start")
    os.kill(zf.proc.pid, signal.SIGTERM)
    zf.wait_event("drain", 5, result="started")
    c.send(body[256 << 10:] + Z.encode_frame(b'{"late":1}'))
    zf.expect_exit = True
    assert zf.proc.wait(8) == 0
    # zmtpfw is gone: what it relayed is final. The worker records at its own pace.
    closes = zf.events("close", reason="shutdown")
    assert closes and closes[0]["messages"] == 1, closes  # the late one was never taken
    assert not zf.events("close", reason="drain-timeout")
    w.wait_messages(1, timeout=10)
    assert w.messages() == [[digest(body)]]


@pytest.mark.timeout_s(30)
def test_log_only_long_pickle_spliced_and_counted(start_worker, splice_fw, marker):
    """log-only: a long pickle as a message's last frame is logged as
    would-drop, then forwarded (its rest spliced), and the would-drop and
    forwarded counters are bumped once when the spliced frame ends."""
    w = start_worker("PULL", no_unpickle=True)
    zf = splice_fw(w.upstream, mode="log-only")
    c = raw_session(zf)
    evil = P.evil(marker, 5)
    frame = evil + os.urandom(4 * MIB)  # flagged at its head; loads() stops at STOP
    assert P.reaches_import(frame)
    c.send(Z.encode_message([b'{"hdr":1}', frame]) + Z.encode_frame(b'{"after":1}'))
    wait_until(lambda: len(w.messages()) >= 2, 10, what="both messages")
    assert w.messages() == [[b'{"hdr":1}', digest(frame)], [b'{"after":1}']]
    assert len(zf.events("would-drop", reason="pickle")) == 1
    assert spliced(zf) > 3 * MIB
    body = urllib.request.urlopen(f"http://127.0.0.1:{zf.mport}/metrics", timeout=5).read().decode()
    assert re.search(r'^zmtpfw_messages_would_drop_total\{route="w",direction="client_to_worker",'
                     r'reason="pickle"\} 1$', body, re.M), body
    assert metric(zf, "zmtpfw_messages_forwarded_total") == 2
    assert metric(zf, "zmtpfw_frames_forwarded_total") == 3


@pytest.mark.timeout_s(30)
def test_trusted_peer_long_frames_with_more_spliced(start_worker, splice_fw):
    """A peer trusted to send pickle is not scanned: every long frame of a
    multipart message is spliced, MORE included, and the message boundary
    (and the counters) come out right at the end of the last spliced body."""
    w = start_worker("PULL", no_unpickle=True)
    zf = splice_fw(w.upstream, allow_pickle_from=["127.0.0.1/32"])
    c = raw_session(zf)
    a, b = body_of(2 * MIB + 3), body_of(3 * MIB)
    c.send(Z.encode_message([a, b"", b]) + Z.encode_frame(b'{"after":1}'))
    wait_until(lambda: len(w.messages()) >= 2, 10, what="both messages")
    assert w.messages() == [[digest(a), b"", digest(b)], [b'{"after":1}']]
    assert spliced(zf) > 4 * MIB
    assert metric(zf, "zmtpfw_messages_forwarded_total") == 2
    assert metric(zf, "zmtpfw_frames_forwarded_total") == 4


@pytest.mark.timeout_s(40)
def test_idle_timeout_spares_spliced_frames(start_worker, splice_fw):
    """idle_timeout_ms counts bytes pulled by splice as activity (a body
    trickling in for longer than the timeout is not idle), and a pipe
    waiting on a stopped worker is backpressure, not idleness: with the
    worker stopped, the client pushes until it cannot send a byte more, then
    stays blocked for 1.5 idle periods before the worker resumes."""
    idle_ms = 2000
    w = start_worker("PULL", no_unpickle=True)
    zf = splice_fw(w.upstream, idle_timeout_ms=idle_ms)
    size = 2 * MIB
    body = body_of(size)
    big = body_of(64 * MIB)  # more than the socket buffers and pipes on the way hold
    piece = 64 << 10
    c = raw_session(zf)
    c.send(bytes([Z.FLAG_LONG]) + struct.pack(">Q", size) + body[:piece])
    for off in range(piece, 1 * MIB, piece):  # 3.75 s, a piece every 0.25 s
        time.sleep(0.25)
        c.send(body[off:off + piece])
    os.kill(w.proc.pid, signal.SIGSTOP)
    sent = 0
    try:
        c.send(body[1 * MIB:] + bytes([Z.FLAG_LONG]) + struct.pack(">Q", len(big)))
        # Non-blocking: a send that takes nothing means zmtpfw stopped reading
        # (its pipe and buffers towards the worker are full). The silence that
        # follows is the worker's, not the client's.
        c.sock.setblocking(False)
        t0 = progress = time.monotonic()
        while time.monotonic() - progress < 1.5 * idle_ms / 1000:
            assert sent < len(big), "64 MiB went through a stopped worker: no backpressure"
            assert time.monotonic() - t0 < 20, "the client was never blocked for 1.5 idle periods"
            try:
                sent += c.sock.send(big[sent:sent + (1 << 20)])
                progress = time.monotonic()
            except BlockingIOError:
                select.select([], [c.sock], [], 0.05)
        c.sock.setblocking(True)
    finally:
        os.kill(w.proc.pid, signal.SIGCONT)
    c.send(big[sent:])
    wait_until(lambda: len(w.messages()) >= 2, 20, interval=0.1, what="both frames")
    assert w.messages() == [[digest(body)], [digest(big)]]
    # Once both are through, the connection is idle for real and may close
    # while the worker records them: only a close before both counts.
    early = [e for e in zf.events("close", reason="idle-timeout") if e["messages"] < 2]
    assert not early, early
    assert spliced(zf) > 16 * MIB


@pytest.mark.timeout_s(30)
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run zmtpfw and a helper as nobody")
def test_non_root_pipes_that_cannot_grow(start_worker, procs, workdir):
    """Production runs as a non-root user. With that user over its pipe
    quota (fs.pipe-user-pages-soft), F_SETPIPE_SZ fails and new pipes get
    the kernel's minimum (2 pages): long frames are still spliced exact."""
    F_GETPIPE_SZ = 1032
    hog = subprocess.Popen([sys.executable, "-c", r'''
import fcntl, os, time
os.setgid(65534); os.setuid(65534)
pipes = []
while True:
    r, w = os.pipe()
    pipes.append((r, w))
    try:
        fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ
    except OSError:
        break
print(len(pipes), flush=True)
time.sleep(120)
'''], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert int(hog.stdout.readline()) > 0
        w = start_worker("PULL", no_unpickle=True)
        mport = free_port()
        route = make_route("w", w.upstream, max_frame_size=64 * MIB, max_message_size=64 * MIB)
        cfg = workdir / "zmtpfw-nobody.conf"
        cfg.write_text(render_config([route]) + 'user = "nobody";\n' +
                       f'metrics = {{ listen = "127.0.0.1:{mport}"; probe_upstream = false; }};\n')
        zf = Zmtpfw(["-c", cfg], workdir, name="zmtpfw-nobody")
        procs.append(zf)
        zf.mport = mport
        zf.port = lambda name: int(route["listen"].rsplit(":", 1)[1])
        zf.wait_listening(["w"])
        zf.wait_event("privileges", 5, user="nobody")
        c = raw_session(zf)
        body = body_of(6 * MIB)
        c.send(bytes([Z.FLAG_LONG]) + struct.pack(">Q", len(body)) + body + Z.encode_frame(b"{}"))
        wait_until(lambda: len(w.messages()) >= 2, 15, interval=0.1, what="both frames")
        assert w.messages() == [[digest(body)], [b"{}"]]
        assert spliced(zf) > 5 * MIB
        sizes = []
        for fd in os.listdir(f"/proc/{zf.proc.pid}/fd"):
            p = f"/proc/{zf.proc.pid}/fd/{fd}"
            try:
                if not os.readlink(p).startswith("pipe:"):
                    continue
                f = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
            except FileNotFoundError:
                # closed since the listing: the /metrics scrape's connection
                # (spliced() above), not a pooled pipe, which stays open
                continue
            try:
                sizes.append(fcntl.fcntl(f, F_GETPIPE_SZ))
            finally:
                os.close(f)
        # the pool kept the splice pipe: minimum size, never grown to 1 MiB
        small = 2 * os.sysconf("SC_PAGE_SIZE")
        assert sizes.count(small) == 2 and (1 << 20) not in sizes, sizes
    finally:
        hog.kill()
        hog.wait()


@pytest.mark.timeout_s(30)
@pytest.mark.parametrize("case", ["message-too-large", "frame-too-large", "reserved-flags",
                                  "pickle"])
def test_fast_path_keeps_every_check(start_worker, splice_fw, marker, case):
    """relay_fast_message: a message of short frames inside one buffer span
    is judged in place. Sent in one segment behind a clean message, a bad
    one must meet exactly what the general path does: the clean message
    before it goes, no frame of the bad one reaches the worker, and the
    connection is closed (limits, flags) or the message dropped (pickle)."""
    w = start_worker("PULL")
    zf = splice_fw(w.upstream, max_frame_size=200, max_message_size=600)
    c = raw_session(zf)
    ok = [b'{"ok":0}', b'{"ok":1}']
    part = b"{" + b"x" * 148 + b"}"
    bad = {
        "message-too-large": Z.encode_message([part] * 5),
        "frame-too-large": Z.encode_message([part, b"{" + b"x" * 200 + b"}"]),
        "reserved-flags": Z.encode_frame(part, more=True) * 2 + Z.encode_frame(part, flags=0x08),
        "pickle": Z.encode_message([part, part, P.evil(marker, 2)]),
    }[case]
    after = Z.encode_frame(b'{"after":1}')
    c.send(Z.encode_message(ok) + bad + after)
    if case == "pickle":
        wait_until(lambda: len(w.messages()) >= 2, 5, what="the clean messages")
        assert w.messages() == [ok, [b'{"after":1}']]
        assert zf.events("drop", reason="pickle")
    else:
        assert c.wait_closed(5)
        zf.wait_event("close", 5, reason=case)
        # a new connection's message, sent after this one closed, comes
        # after anything of it that went through
        s2 = raw_session(zf)
        s2.send(Z.encode_frame(b'{"sentinel":1}'))
        w.wait_message([b'{"sentinel":1}'])
        s2.close()
        assert w.messages() == [ok, [b'{"sentinel":1}']]
    assert not marker.exists()
