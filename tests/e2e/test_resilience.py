"""Resilience under load, floods and broken workers: slow greetings,
connection floods, absurd frame sizes, a worker that goes away and comes
back, the per-peer, idle and connect limits, and a failed event_add. The
operator signals (SIGHUP reloads, SIGTERM drains) are in test_signals.py;
the shared fixtures and helpers in resilience_util.py.

Every test runs on loopback and is bounded (timeout_s). Under the ASan build
export ZMTPFW_SANITIZE=1: counts shrink and deadlines stretch.
"""

import os
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest
import zmq

import zmtp_raw as Z
from conftest import fd_count, free_port, listen_queue, make_route, rss_kib, wait_until, zmtpfw_bin, zsock
from resilience_util import SLOW, clean, count_msgs, is_open, scaled, send_one
from resilience_util import _enough_fds, fw, raw_worker  # noqa: F401 (fixtures, found by name; _enough_fds is autouse)


# --- helpers ---------------------------------------------------------------

def established_to(port):
    """Established TCP connections whose local end is 127.0.0.1:port (the
    accepted side: what a worker listening there has, accept queue included)."""
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, state = parts[1], parts[3]
            if state == "01" and int(local.split(":")[1], 16) == port:
                n += 1
    return n


# --- load and floods ---------------------------------------------------------

@pytest.mark.timeout_s(60)
def test_slow_greetings_do_not_starve_a_legit_client(start_worker, fw, zctx):
    """500 connections trickle their greeting one byte per round while a
    legitimate client pushes 10,000 messages: every message arrives, in
    order, and every slow peer is still connected (served, not dropped)."""
    n_slow = scaled(500, 150)
    n_msgs = scaled(10000, 3000)
    w = start_worker("PULL")
    zf = fw([make_route("w", w.upstream, max_connections=n_slow + 16, max_connections_per_peer=0,
                        handshake_timeout_ms=60000)])
    port = zf.port("w")

    slow = []
    try:
        # In batches: zmtpfw dials the worker at accept, and a burst of 500
        # would overflow the worker's own listen backlog (libzmq: 100), whose
        # kernel then resets connections: the worker's limit, not ours.
        while len(slow) < n_slow:
            for _ in range(min(50, n_slow - len(slow))):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                slow.append(s)
            wait_until(lambda: established_to(w.port) >= len(slow), 10 * SLOW, interval=0.02,
                       what=f"{len(slow)} upstream connections at the worker (have {established_to(w.port)})")
        greeting = Z.full_greeting()
        rounds = 0

        def trickle():
            # One byte per peer per round, every 0.1 s, but never the last
            # bytes of the 64-byte greeting: however long the legit burst
            # takes on this machine, every slow peer is mid-greeting through
            # it (the pacing is the scenario, not something asserted).
            nonlocal rounds
            if rounds < len(greeting) - 4:
                for s in slow:
                    s.send(greeting[rounds:rounds + 1])
                rounds += 1
            time.sleep(0.1)

        # Every slow peer has been accepted and dialled through (zmtpfw dials
        # the worker at accept), and is mid-greeting.
        wait_until(lambda: trickle() or established_to(w.port) >= n_slow, 15 * SLOW, interval=0,
                   what=f"{n_slow} upstream connections at the worker (have {established_to(w.port)})")
        trickle()

        push = zsock(zctx, zmq.PUSH, zf.endpoint("w"), timeout_ms=int(20000 * SLOW))
        sent = []

        def legit():
            for i in range(n_msgs):
                push.send(clean(i))
            sent.append(True)

        t = threading.Thread(target=legit, daemon=True)
        t.start()
        started = rounds
        deadline = time.monotonic() + 30 * SLOW
        while count_msgs(w) < n_msgs and time.monotonic() < deadline:
            trickle()
        trickle()  # the slow peers outlive the legit burst
        t.join(5)
        assert sent, "the legit client could not send all its messages"
        assert count_msgs(w) >= n_msgs, f"only {count_msgs(w)} of {n_msgs} messages arrived"
        msgs = w.messages()
        assert msgs == [[clean(i)] for i in range(n_msgs)], "messages lost, duplicated or reordered"
        still = sum(is_open(s) for s in slow)
        assert still == n_slow, f"{n_slow - still} slow peers were disconnected before their deadline"
        assert rounds < len(greeting), "a slow peer finished its greeting"
        assert not zf.events("close"), zf.events("close")[:3]
        zf.assert_alive()
        print(f"{n_msgs} messages delivered during trickle rounds {started}..{rounds} over {n_slow} peers")
    finally:
        for s in slow:
            s.close()


@pytest.mark.timeout_s(45)
def test_connection_flood_past_the_limit(start_worker, fw, zctx):
    """max_connections = 32 and a flood of 400 connections: the excess is
    refused at accept (closed at once, never dialled through to the worker,
    logged as max-connections), a legitimate REQ/REP peer connected before
    the flood keeps its round trips, and once the flood ends the slots and
    descriptors are all back."""
    limit = 32
    n_flood = scaled(400, 200)
    w = start_worker("REP")
    # The admitted flood peers never greet: a long handshake deadline keeps
    # them open, so every flood connection that closes was refused.
    zf = fw([make_route("w", w.upstream, max_connections=limit, handshake_timeout_ms=120000)])
    pid = zf.proc.pid
    req = zsock(zctx, zmq.REQ, zf.endpoint("w"), timeout_ms=int(5000 * SLOW))
    req.send(b'{"hello":0}')
    assert req.recv() == b'{"hello":0}'  # both of its descriptors are open now
    base_fds = fd_count(pid)

    flood = []
    try:
        for _ in range(n_flood):
            s = socket.socket()
            s.settimeout(5)
            s.connect(("127.0.0.1", zf.port("w")))
            flood.append(s)
        # Legit round trips while the flood holds every slot.
        for i in range(20):
            req.send(b'{"during":%d}' % i)
            assert req.recv() == b'{"during":%d}' % i
        # The req connection holds one slot: limit - 1 flood peers are
        # admitted (and held open), every other one is closed at accept.
        want = n_flood - (limit - 1)
        closed = set()

        def refusals():
            closed.update(k for k, s in enumerate(flood) if k not in closed and not is_open(s))
            return len(closed) >= want
        wait_until(refusals, 20 * SLOW, interval=0.05,
                   what=f"{want} of the {n_flood} flood connections refused (have {len(closed)})")
        refused = len(closed)
        assert refused == want, f"{refused} of the {n_flood} flood connections were closed (limit {limit})"
        rejects = zf.events("reject", reason="max-connections")
        suppressed = sum(e.get("suppressed", 0) for e in rejects) + \
            sum(e.get("count", 0) for e in zf.events("suppressed", of="reject"))
        assert rejects, "no reject/max-connections line"
        accepted_up = sum(e["event"] == "ACCEPTED" for e in w.conn_events())
        assert accepted_up <= limit + 1, f"refused peers were dialled through: {accepted_up} worker connections"
    finally:
        for s in flood:
            s.close()
    # Slots free again: a fresh peer gets through; descriptors are back.
    wait_until(lambda: fd_count(pid) <= base_fds, 10 * SLOW, interval=0.1,
               what=f"zmtpfw fd count back to {base_fds} (now {fd_count(pid)})")
    req2 = zsock(zctx, zmq.REQ, zf.endpoint("w"), timeout_ms=int(5000 * SLOW))
    req2.send(b'{"after":1}')
    assert req2.recv() == b'{"after":1}'
    req.send(b'{"still":1}')
    assert req.recv() == b'{"still":1}'
    zf.assert_alive()
    print(f"{refused} refused, {len(rejects)} reject lines (+{suppressed} suppressed)")


@pytest.mark.timeout_s(45)
def test_frame_declaring_2_62_bytes(start_worker, fw, raw_worker, marker):
    """A frame header declaring 2^62 (and 2^64 - 1) bytes: closed with
    frame-too-large at the header, RSS unchanged. With max_frame_size at its
    ceiling (2^62) the same header is legal: zmtpfw streams the body without
    allocating for the declared size."""
    w = start_worker("PULL")
    sink = raw_worker(discard=True)
    zf = fw([make_route("w", w.upstream),
             make_route("huge", sink.upstream, max_frame_size=1 << 62, max_message_size=1 << 62,
                        pickle="allow")])
    pid = zf.proc.pid
    send_one(zf.port("w"), 0)
    w.wait_message([clean(0)])
    rss0 = rss_kib(pid)
    for flags, size in [(0x02, 1 << 62), (0x03, 1 << 62), (0x02, (1 << 64) - 1), (0x06, 1 << 62),
                        (0x02, (1 << 62) + 1)]:
        with Z.RawClient("127.0.0.1", zf.port("w")) as c:
            c.handshake("PUSH")
            c.try_send(bytes([flags]) + struct.pack(">Q", size) + b"\x80\x04" + b"A" * 4096)
            assert c.wait_closed(10 * SLOW), f"flags {flags:#x} size {size}: connection left open"
    grown = rss_kib(pid) - rss0
    assert grown < 4096, f"zmtpfw RSS grew by {grown} KiB for headers it should refuse"
    closes = zf.events("close", reason="frame-too-large")
    assert len(closes) == 5, zf.tail(30)
    assert all(e.get("from") == "client" for e in closes)

    # Legal at the ceiling: stream 16 MiB of a 2^62-byte frame.
    c = Z.RawClient("127.0.0.1", zf.port("huge"))
    try:
        c.handshake("PUSH")
        rss1 = rss_kib(pid)
        c.send(b"\x02" + struct.pack(">Q", 1 << 62))
        chunk = b"\x00" * (1 << 20)
        for _ in range(16):
            c.send(chunk)
        wait_until(lambda: sum(r["bytes"] for r in sink.conns) >= 16 << 20, 10 * SLOW, interval=0.1,
                   what="16 MiB of the huge frame at the worker")
        grown = rss_kib(pid) - rss1
        assert grown < 24 * 1024, f"zmtpfw RSS grew by {grown} KiB while streaming a 2^62-byte frame"
    finally:
        c.close()
    zf.assert_alive()
    send_one(zf.port("w"), 1)
    w.wait_message([clean(1)])
    assert not marker.exists()


@pytest.mark.timeout_s(45)
def test_upstream_down_then_back_up(start_worker, fw, zctx):
    """No worker: every connection is closed as upstream-unreachable and
    zmtpfw stays up. The worker starts: the client's queued messages arrive.
    The worker dies and comes back: new messages arrive again."""
    port = free_port()
    zf = fw([make_route("w", f"127.0.0.1:{port}")])
    for _ in range(3):
        with Z.RawClient("127.0.0.1", zf.port("w")) as c:
            c.try_send(Z.SIGNATURE)
            assert c.wait_closed(10 * SLOW)
    wait_until(lambda: len(zf.events("close", reason="upstream-unreachable")) >= 3, 5 * SLOW,
               what="upstream-unreachable closes")
    push = zsock(zctx, zmq.PUSH, zf.endpoint("w"), timeout_ms=int(5000 * SLOW))
    for i in range(50):
        push.send(clean(i))  # queued by libzmq while the worker is away
    # The PUSH's own connection attempts meet the missing worker too.
    wait_until(lambda: len(zf.events("close", reason="upstream-unreachable")) >= 4, 5 * SLOW,
               what="the PUSH client's connection closed as upstream-unreachable")
    zf.assert_alive()

    w = start_worker("PULL", bind=f"tcp://127.0.0.1:{port}")
    got = w.wait_messages(50, timeout=10 * SLOW)
    assert got[:50] == [[clean(i)] for i in range(50)]

    w.stop()
    wait_until(lambda: zf.events("close", reason="upstream-closed"), 5 * SLOW,
               what="the connection to the dead worker closed")
    w2 = start_worker("PULL", bind=f"tcp://127.0.0.1:{port}")
    # Messages in flight when the worker died may be lost with it; from the
    # first one that makes it, none may be.
    k = 1000

    def probe():
        nonlocal k
        push.send(clean(k))
        k += 1
        return count_msgs(w2) > 0
    wait_until(probe, 10 * SLOW, interval=0.2, what="traffic through the restarted worker")
    first = k
    for i in range(first, first + 100):
        push.send(clean(i))
    after = {clean(i) for i in range(first, first + 100)}
    wait_until(lambda: sum(m[0] in after for m in w2.messages()) >= 100, 10 * SLOW,
               interval=0.2, what="the 100 messages sent after the restart")
    assert [m for m in w2.messages() if m[0] in after] == [[clean(i)] for i in range(first, first + 100)]
    zf.assert_alive()


# --- per-route limits --------------------------------------------------------

@pytest.mark.timeout_s(30)
def test_max_connections_per_peer(start_worker, fw):
    w = start_worker("PULL")
    zf = fw([make_route("w", w.upstream, allow=["127.0.0.0/8"], max_connections_per_peer=3)])
    port = zf.port("w")
    held = [Z.RawClient("127.0.0.1", port) for _ in range(3)]
    try:
        for c in held:
            c.handshake("PUSH")
        with Z.RawClient("127.0.0.1", port) as fourth:
            # refused at accept: a reject line, never an accept line (an
            # admitted one would close too, at its handshake deadline)
            assert fourth.wait_closed(10 * SLOW), "a 4th connection from one address was kept open"
        zf.wait_event("reject", reason="max-connections-per-peer", peer="127.0.0.1:%d" % fourth.local[1])
        assert not zf.events("accept", peer="127.0.0.1:%d" % fourth.local[1]), "a 4th connection was admitted"
        # Another source address has its own budget.
        other = [Z.RawClient("127.0.0.1", port, source="127.0.0.2") for _ in range(3)]
        try:
            for k, c in enumerate(other):
                c.handshake("PUSH")
                c.send(Z.encode_frame(clean(200 + k)))
            for k in range(3):
                w.wait_message([clean(200 + k)])
        finally:
            for c in other:
                c.close()
        # One of the first three leaves: its slot is free again.
        held.pop().close()
        wait_until(lambda: zf.events("close", reason="client-closed", peer=lambda p: p and p.startswith("127.0.0.1:")),
                   3 * SLOW, what="the close of the first peer")
        c = Z.RawClient("127.0.0.1", port)
        held.append(c)
        c.handshake("PUSH")
        c.send(Z.encode_frame(clean(300)))
        w.wait_message([clean(300)])
        for k, c in enumerate(held):
            c.send(Z.encode_frame(clean(400 + k)))
        for k in range(3):
            w.wait_message([clean(400 + k)])
    finally:
        for c in held:
            c.close()
    assert len(zf.events("reject", reason="max-connections-per-peer")) == 1


@pytest.mark.timeout_s(30)
def test_idle_timeout_closes_only_quiet_connections(start_worker, fw):
    """idle_timeout_ms = 1500: a connection silent since its handshake is
    closed as idle-timeout, having relayed nothing, no sooner than 1500 ms
    after it opened (zmtpfw's own clock, in its close line); one that sends
    every 50 ms meanwhile is kept, and once it falls silent it goes the
    same way, every message it sent through."""
    idle_ms = 1500
    w = start_worker("PULL")
    zf = fw([make_route("w", w.upstream, idle_timeout_ms=idle_ms)])
    port = zf.port("w")
    quiet = Z.RawClient("127.0.0.1", port)
    busy = Z.RawClient("127.0.0.1", port)
    busy_peer = "127.0.0.1:%d" % busy.local[1]
    try:
        quiet.handshake("PUSH")
        busy.handshake("PUSH")
        i = 0

        def busy_sends_until_quiet_closed():
            nonlocal i
            busy.send(Z.encode_frame(clean(i)))
            i += 1
            return not is_open(quiet.sock)
        wait_until(busy_sends_until_quiet_closed, idle_ms / 1000 + 10 * SLOW, interval=0.05,
                   what="the quiet connection closed")
        ev = zf.close_of(quiet.local)
        assert ev["reason"] == "idle-timeout" and ev["messages"] == 0, ev
        assert ev["duration_ms"] >= idle_ms - 20, f"closed as idle {ev['duration_ms']} ms after it opened"
        assert is_open(busy.sock), "the active connection was closed"
        assert not zf.events("close", peer=busy_peer), zf.events("close", peer=busy_peer)
        w.wait_messages(i, timeout=10 * SLOW)
        assert w.messages() == [[clean(k)] for k in range(i)]
        # Once it stops talking, the busy one goes the same way.
        assert busy.wait_closed(idle_ms / 1000 + 10 * SLOW), "the connection fallen silent was kept"
        ev = zf.close_of(busy.local)
        assert ev["reason"] == "idle-timeout" and ev["messages"] == i, ev
        assert len(zf.events("close", reason="idle-timeout")) == 2
    finally:
        quiet.close()
        busy.close()


@pytest.mark.timeout_s(30)
def test_idle_timeout_spares_a_connection_blocked_by_a_busy_worker(start_worker, fw):
    """A worker busy for longer than idle_timeout_ms (here: SIGSTOPped until
    the client has been unable to send a byte for 2.5 idle periods) stops
    reading; zmtpfw then stops reading the client (backpressure). That
    connection is not idle: it has megabytes queued. Closing it as
    idle-timeout would throw the queued messages away. After the worker
    resumes, every message the client sent must arrive."""
    idle_ms = 1000
    w = start_worker("PULL")
    zf = fw([make_route("w", w.upstream, idle_timeout_ms=idle_ms)])
    size = (1 << 20) + 1  # > 1 MiB: the worker records a sha256
    frame = Z.encode_frame(b"\x00" + bytes(size - 1))
    c = Z.RawClient("127.0.0.1", zf.port("w"))
    sent = 0
    try:
        c.handshake("PUSH")
        os.kill(w.proc.pid, signal.SIGSTOP)
        try:
            c.sock.setblocking(False)
            # Push until the client has been stuck for 2.5 idle periods on
            # end (zmtpfw's buffers and both sockets' full): that long, the
            # connection has had queued bytes and no traffic.
            t0 = progress = time.monotonic()
            while time.monotonic() - progress < 2.5 * idle_ms / 1000:
                assert time.monotonic() - t0 < 15 * SLOW, \
                    f"zmtpfw kept reading with the worker stopped ({sent >> 20} MiB): no backpressure"
                try:
                    sent += c.sock.send(frame[sent % len(frame):])
                    progress = time.monotonic()
                except BlockingIOError:
                    select.select([], [c.sock], [], 0.05)
                except OSError:
                    break  # closed under us: asserted below
            stuck = is_open(c.sock)
        finally:
            os.kill(w.proc.pid, signal.SIGCONT)
        closed = zf.events("close", reason="idle-timeout")
        assert not closed and stuck, (f"a connection blocked by backpressure ({sent >> 20} MiB sent, "
                                      f"worker busy) was closed: {closed[:1]}")
        c.sock.setblocking(True)
        c.sock.settimeout(10)
        rest = (len(frame) - sent % len(frame)) % len(frame)
        c.sock.sendall(frame[len(frame) - rest:])
        n = (sent + rest) // len(frame)
        w.wait_messages(n, timeout=20 * SLOW)
        assert len(w.messages()) == n
    finally:
        c.close()


@pytest.mark.timeout_s(30)
def test_connect_timeout_to_a_worker_that_never_answers(fw):
    """The upstream's accept queue is full, so its kernel drops our SYNs:
    connect() would hang for minutes. connect_timeout_ms = 500 closes the
    client with upstream-timeout instead (well before the 5 s handshake
    deadline)."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        wait_until(lambda: listen_queue(port) >= 1, 5, what="the worker's accept queue filled")
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", port))
            pytest.fail("precondition: the full backlog still completes handshakes "
                        "(net.ipv4.tcp_abort_on_overflow or a kernel that does not drop SYNs)")
        except socket.timeout:
            pass
        finally:
            probe.close()

        zf = fw([make_route("w", f"127.0.0.1:{port}", connect_timeout_ms=500, handshake_timeout_ms=5000)])
        with Z.RawClient("127.0.0.1", zf.port("w")) as c:
            c.try_send(Z.SIGNATURE)
            assert c.wait_closed(10 * SLOW), "client not closed while the worker never answered"
        # Which deadline fired is in the reason, how long after accept in
        # zmtpfw's own clock: no wall time of this process is asserted.
        ev = zf.close_of(c.local)
        assert ev["reason"] == "upstream-timeout" and ev["detail"] == "connect_timeout_ms", ev
        assert ev["duration_ms"] >= 500 - 20, ev
        assert not zf.events("close", reason="handshake-timeout")
        zf.assert_alive()
    finally:
        for s in fillers:
            s.close()
        lst.close()


@pytest.mark.timeout_s(60)
def test_per_peer_limit_on_by_default(start_worker, fw):
    """Without max_connections_per_peer in the config, one source address
    holding 64 idle connections gets its 65th refused
    (max-connections-per-peer), while another source is still served."""
    w = start_worker("PULL")
    zf = fw([make_route("w", w.upstream, allow=["127.0.0.0/8"])])
    port = zf.port("w")
    held = []
    try:
        for _ in range(64):
            c = Z.RawClient("127.0.0.1", port, timeout=10 * SLOW)
            held.append(c)
            c.handshake("PUSH")
        with Z.RawClient("127.0.0.1", port) as extra:
            assert extra.wait_closed(10 * SLOW), "a 65th connection from one address was kept open"
        zf.wait_event("reject", reason="max-connections-per-peer", peer="127.0.0.1:%d" % extra.local[1])
        assert not zf.events("accept", peer="127.0.0.1:%d" % extra.local[1]), "a 65th connection was admitted"
        with Z.RawClient("127.0.0.1", port, source="127.0.0.2") as other:
            other.handshake("PUSH")
            other.send(Z.encode_frame(clean(1)))
            w.wait_message([clean(1)], timeout=10 * SLOW)
    finally:
        for c in held:
            c.close()
    zf.assert_alive()


def evfail_env():
    """LD_PRELOAD of tests/tools/evfail.c (after libasan on a sanitizer build,
    whose runtime must come first)."""
    shim = zmtpfw_bin().parent / "tests" / "libevfail.so"
    if not shim.exists():
        pytest.skip(f"{shim} not built")
    ldd = subprocess.run(["ldd", str(zmtpfw_bin())], capture_output=True, text=True, timeout=10).stdout
    asan = re.search(r"(/\S*libasan\.so\S*)", ldd)
    return {"LD_PRELOAD": (asan.group(1) + " " if asan else "") + str(shim), "ZMTPFW_EVFAIL": "write-add"}


@pytest.mark.timeout_s(60)
def test_failed_event_add_closes_the_connection(start_worker, fw):
    """event_add failing for a socket's write event (ENOMEM, injected with
    an LD_PRELOAD shim) when the worker stops reading: the connection is
    closed with reason internal and an error line saying which call failed,
    instead of keeping its queued bytes forever; the route keeps accepting."""
    w = start_worker("PULL", no_unpickle=True)
    zf = fw([make_route("w", w.upstream)], env=evfail_env())
    c = Z.RawClient("127.0.0.1", zf.port("w"))
    c.handshake("PUSH")
    os.kill(w.proc.pid, signal.SIGSTOP)
    try:
        chunk = Z.encode_frame(os.urandom(1 << 16))
        c.sock.settimeout(0.2)
        for _ in range(512):  # 32 MiB: more than the socket buffers hold
            try:
                c.sock.sendall(chunk)
            except (socket.timeout, OSError):
                break
        zf.wait_event("close", 20 * SLOW, reason="internal", detail="event_add failed")
        assert zf.events("error", reason="internal", detail="event_add failed")
    finally:
        os.kill(w.proc.pid, signal.SIGCONT)
        c.close()
    with Z.RawClient("127.0.0.1", zf.port("w")) as c2:
        c2.handshake("PUSH")
    zf.assert_alive()
