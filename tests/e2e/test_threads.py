"""threads = N: several event loops (issue 13, part 3). Each loop accepts on
every route (SO_REUSEPORT), limits stay exact across loops, reload and drain
reach every loop, /metrics sums the loops' shards."""

import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
import urllib.request

import pytest
import zmq

import zmtp_raw as Z
from conftest import (MIB, free_port, make_route, render_config, wait_until, zmtpfw_bin, zsock,
                      Zmtpfw)


@pytest.fixture
def tfw(procs, workdir):
    def _start(routes, threads=2, extra=""):
        mport = free_port()
        cfg = workdir / "threads.conf"
        text = render_config(routes).replace(f"threads = ", "# threads = ")
        cfg.write_text(f"threads = {threads};\n" + text + extra +
                       f'metrics = {{ listen = "127.0.0.1:{mport}"; probe_upstream = false; }};\n')
        zf = Zmtpfw(["-c", cfg], workdir, name="zmtpfw-threads")
        procs.append(zf)
        zf.config_path = cfg
        zf.mport = mport
        zf.routes = {r["name"]: r for r in routes}
        zf.port = lambda name: int(zf.routes[name]["listen"].rsplit(":", 1)[1])
        for n in zf.routes:
            if threads == 1:  # one loop: its lines carry no "thread"
                zf.wait_event("listening", 10, route=n)
            for t in range(threads if threads > 1 else 0):
                zf.wait_event("listening", 10, route=n, thread=t)
        return zf
    return _start


def scrape(port):
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + "{" + want + "}") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_connections_on_both_loops_and_metrics_sum(start_worker, tfw, zctx):
    w = start_worker("PULL")
    zf = tfw([make_route("w", w.upstream)])
    socks = []
    for i in range(24):
        s = zsock(zctx, zmq.PUSH, "tcp://" + zf.routes["w"]["listen"])
        s.send(b"hello %d" % i)
        socks.append(s)
    w.wait_messages(24, timeout=10)
    accepts = zf.events("accept", route="w")
    assert len(accepts) == 24
    threads = {a["thread"] for a in accepts}
    assert threads == {0, 1}, threads
    text = scrape(zf.mport)
    assert metric(text, "zmtpfw_connections_accepted_total", route="w") == 24
    assert metric(text, "zmtpfw_connections_active", route="w") == 24
    assert metric(text, "zmtpfw_messages_forwarded_total", route="w",
                  direction="client_to_worker") == 24
    for s in socks:
        s.close()


def _hammer(port, n):
    """n raw TCP connects at once; returns the sockets."""
    out = []
    lock = threading.Lock()

    def one():
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        with lock:
            out.append(s)
    ts = [threading.Thread(target=one) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


@pytest.mark.parametrize("key", ["max_connections", "max_connections_per_peer"])
def test_limits_exact_across_loops(tcp_sink, tfw, key):
    limit = 10
    zf = tfw([make_route("w", tcp_sink.upstream, **{key: limit})])
    socks = _hammer(zf.port("w"), 60)
    try:
        def settled():
            return len(zf.events("accept")) + len(zf.events("reject")) >= 60
        deadline = time.monotonic() + 10
        while not settled() and time.monotonic() < deadline:
            time.sleep(0.05)
        accepts = zf.events("accept")
        assert len(accepts) == limit, len(accepts)
        reason = key.replace("_", "-")
        rejects = zf.events("reject", reason=reason)
        assert len(rejects) == 60 - limit
        # both loops took connects (60 spread by the kernel's hash); which
        # loop won the slots depends on timing, not the total
        assert {e["thread"] for e in accepts + rejects} == {0, 1}
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("key", ["max_connections", "max_connections_per_peer"])
def test_a_close_line_means_the_slot_is_free(start_worker, tfw, key):
    """Limit 1. A peer's connection closes; once its close line is written,
    the next connection is admitted on either loop. The slot used to be
    given back after the line: the other loop could refuse a connection
    made after the line (test_max_connections_per_peer failed so, once in
    about ten runs with threads = 2)."""
    w = start_worker("PULL")
    zf = tfw([make_route("w", w.upstream, allow=["127.0.0.0/8"], **{key: 1})])
    port = zf.port("w")
    n = 60  # each a line per event: under the log limiter's burst for one source
    for i in range(n):
        c = Z.RawClient("127.0.0.1", port)
        try:
            c.handshake("PUSH")
        except Z.Closed:
            rejects = zf.events("reject")
            raise AssertionError(f"round {i}: refused after the close line: {rejects[-1:]}")
        peer = "127.0.0.1:%d" % c.local[1]
        c.close()
        zf.wait_event("close", 10, peer=peer)
    assert not zf.events("reject")
    assert len(zf.events("accept")) == n
    # both loops took part (the kernel's hash: one loop for all 60, 2 ** -59)
    assert {e["thread"] for e in zf.events("accept")} == {0, 1}


def test_log_rate_limit_is_the_routes_not_each_loops(tcp_sink, tfw):
    """One source flooding a route's rejects is held to one bucket (burst
    100, 20 lines/s) across both loops, not one bucket per loop, and no
    reject goes unaccounted: each is a line or in a suppressed count. With
    a limiter per loop, 400 quick rejects split over two loops write about
    200 lines."""
    n, first = 400, 30
    zf = tfw([make_route("w", tcp_sink.upstream, allow=["10.0.0.0/8"])])

    def lines():
        return zf.events("reject", reason="not-allowed")

    def connect():
        s = socket.create_connection(("127.0.0.1", zf.port("w")), timeout=5)
        s.close()
    # The first rejects one at a time, each line awaited: the burst has
    # tokens for all of them, so each is a line, and the kernel's hash
    # gives them to both loops (one loop for all 30: 2 ** -29). Flooded,
    # one loop may drain the burst before the other runs at all.
    for i in range(first):
        connect()
        wait_until(lambda: len(lines()) > i, 10, what=f"reject line {i + 1}")
    assert {e["thread"] for e in lines()} == {0, 1}, "both loops rejected"
    for _ in range(n - first):
        connect()

    def accounted():
        carried = sum(e.get("suppressed", 0) for e in lines())
        counted = sum(e["count"] for e in zf.events("suppressed", of="reject", peer="127.0.0.1"))
        return len(lines()) + carried + counted
    wait_until(lambda: accounted() == n, 10, what=f"{n} rejects as lines or suppressed counts")
    got = lines()
    stamps = [datetime.fromisoformat(e["ts"]) for e in got]
    span = (max(stamps) - min(stamps)).total_seconds()
    # burst + refill over the lines' own span (+ 1 for millisecond stamps)
    assert len(got) <= 100 + 20 * span + 1, (len(got), span)
    assert accounted() == n


def test_reload_and_drain_reach_both_loops(start_worker, tfw, zctx):
    w = start_worker("PULL")
    zf = tfw([make_route("w", w.upstream)])
    route2 = make_route("v", w.upstream)
    zf.config_path.write_text(zf.config_path.read_text().replace(
        "routes = (", "routes = (\n  { " + " ".join(
            f'{k} = {v!r};'.replace("'", '"') if not isinstance(v, list) else
            f'{k} = [ ' + ", ".join(f'"{x}"' for x in v) + ' ];'
            for k, v in route2.items() if k != "handshake_timeout_ms") + " },"))
    zf.proc.send_signal(__import__("signal").SIGHUP)
    zf.wait_event("reload", 10, result="ok")
    for t in (0, 1):
        zf.wait_event("listening", 10, route="v", thread=t)
    # 32 connects: the kernel's hash puts all on one loop once in 2 ** 31
    socks = [zsock(zctx, zmq.PUSH, "tcp://" + zf.routes["w"]["listen"]) for _ in range(32)]
    for s in socks:
        s.send(b"x")
    w.wait_messages(32, timeout=10)
    assert {a["thread"] for a in zf.events("accept")} == {0, 1}
    zf.proc.send_signal(__import__("signal").SIGTERM)
    zf.expect_exit = True
    assert zf.proc.wait(15) == 0
    closes = zf.events("close", reason="shutdown")
    assert len(closes) == 32, zf.tail(30)
    assert zf.events("drain", result="done")
    for s in socks:
        s.close()


def _peer_on(zf, port, source, want=None, tries=64):
    """A raw ZMTP peer from source whose connection landed on loop want
    (None: any); returns (client, thread). The kernel
    spreads connects over the loops' SO_REUSEPORT sockets by hash, so try
    fresh source ports until one lands where wanted."""
    for _ in range(tries):
        c = Z.RawClient("127.0.0.1", port, source=source)
        peer = "%s:%d" % c.local
        ev = zf.wait_event("accept", 10, peer=peer)
        if want is None or ev["thread"] == want:
            c.greet()
            c.send_ready("PUSH")
            c.recv_ready()
            return c, ev["thread"]
        c.close()
    raise AssertionError(f"no connection from {source} landed on loop {want}")


def test_memory_budget_closes_the_biggest_holder_on_another_loop(start_worker, tfw, zctx):
    """max_memory is one budget for the process: a read on loop B that
    finds the process over it closes the biggest holder even when that
    holder lives on loop A (B wakes A, A closes it), not B's own, smaller
    holder. With a budget per loop, or a loop closing its own biggest, the
    small holder would go."""
    w = start_worker("PULL")
    zf = tfw([make_route("w", w.upstream, allow=["127.0.0.0/8"])],
             extra="max_memory = 268435456L;\n")
    port = zf.port("w")
    a, ta = _peer_on(zf, port, "127.0.0.2")
    b, tb = _peer_on(zf, port, "127.0.0.3", want=1 - ta)
    assert ta != tb

    # A: a clean 40 MiB frame with MORE, judged at its first byte and held.
    a.send(Z.encode_frame(b'{"pad": "' + b"x" * (40 * MIB - 9), more=True))
    wait_until(lambda: metric(scrape(zf.mport), "zmtpfw_memory_bytes") >= 40 * MIB, 20,
               what="A's held frame counted")
    # B: a pickle frame with no verdict before its end; 8 MiB of it.
    b.send(Z.encode_frame(b"", long=True, size=200 * MIB) +
           b"\x80\x04\x8e" + struct.pack("<Q", 200 * MIB - 11))
    b.send(b"\x00" * (8 * MIB))
    wait_until(lambda: metric(scrape(zf.mport), "zmtpfw_memory_bytes") >= 48 * MIB, 20,
               what="B counted")

    # 32 MiB: A alone is over it, B is not. The next read is B's, on B's loop.
    done = len(zf.events("reload", result="ok"))
    zf.config_path.write_text(zf.config_path.read_text().replace(
        "max_memory = 268435456L;", "max_memory = 33554432L;"))
    zf.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(zf.events("reload", result="ok")) > done, 10, what="reload ok")
    wait_until(lambda: metric(scrape(zf.mport), "zmtpfw_memory_limit_bytes") == 32 * MIB, 10,
               what="new limit")
    b.send(b"\x00" * 1024)
    zf.wait_event("close", 20, reason="memory")
    assert a.wait_closed(10), "A (the biggest holder, on the other loop) was not closed"
    closes = zf.events("close", reason="memory")
    assert len(closes) == 1 and closes[0]["peer"] == "%s:%d" % a.local, closes
    assert closes[0]["held"] >= 40 * MIB

    # B keeps its connection: more of its frame is still taken in.
    b.send(b"\x00" * MIB)
    wait_until(lambda: metric(scrape(zf.mport), "zmtpfw_memory_bytes") >= 9 * MIB, 20,
               what="B still read")
    s = zsock(zctx, zmq.PUSH, "tcp://" + zf.routes["w"]["listen"])
    s.send_multipart([b"legit", b"1"])
    w.wait_message([b"legit", b"1"], 10)
    assert len(zf.events("close", reason="memory")) == 1
    assert not zf.events("close", peer="%s:%d" % b.local)
    a.close()
    b.close()
    s.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="runs zmtpfw as another user under RLIMIT_NPROC")
def test_a_loop_thread_that_cannot_start_is_logged(tcp_sink):
    """threads = 3 under RLIMIT_NPROC = 2 (as nobody: the limit binds only
    non-root users): loop 1's thread starts and listens, loop 2's cannot be
    created, and startup fails. It must say why: exiting 1 after 'listening'
    lines with no error line leaves the operator nothing to go on (a
    container's pids limit or systemd's TasksMax with threads = "auto")."""
    d = Path(tempfile.mkdtemp(prefix="zmtpfw-nproc-"))
    try:
        os.chmod(d, 0o755)
        cfg = d / "nproc.conf"
        cfg.write_text("threads = 3;\n" + render_config(
            [make_route("w", tcp_sink.upstream)]).replace("threads = ", "# threads = "))
        os.chmod(cfg, 0o644)

        def as_nobody():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            resource.setrlimit(resource.RLIMIT_NPROC, (2, 2))
        p = subprocess.run([str(zmtpfw_bin()), "-c", str(cfg)], preexec_fn=as_nobody, cwd=d,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    lines = [json.loads(l) for l in p.stderr.decode().splitlines() if l.startswith("{")]
    assert p.returncode == 1, p.stderr.decode()[-2000:]
    errors = [e for e in lines if e["event"] == "error" and e.get("reason") == "threads"]
    assert errors, "no error line says why startup failed:\n" + p.stderr.decode()[-2000:]
    assert "thread" in errors[0] and errors[0]["detail"], errors[0]


@pytest.mark.parametrize("threads", [1, 2])
def test_a_port_another_process_listens_on_is_refused(tcp_sink, workdir, threads):
    """Another process of this user listens on the route's port with
    SO_REUSEPORT. threads = 1 cannot bind there; threads = 2 binds with
    SO_REUSEPORT, which the kernel accepts: zmtpfw joined that process's
    group and the kernel split the clients between the two (each peer
    had its chance of never meeting the firewall). Startup must fail the
    same way for any number of threads."""
    port = free_port()
    other = socket.socket()
    try:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", port))
        other.listen(8)
        cfg = workdir / "taken.conf"
        cfg.write_text(f"threads = {threads};\n" + render_config(
            [make_route("w", tcp_sink.upstream, listen=f"127.0.0.1:{port}")]).replace(
                "threads = ", "# threads = "))
        p = subprocess.run([str(zmtpfw_bin()), "-c", str(cfg)], cwd=workdir,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    finally:
        other.close()
    err = p.stderr.decode()
    assert p.returncode == 1, err[-2000:]
    lines = [json.loads(l) for l in err.splitlines() if l.startswith("{")]
    refused = [e for e in lines if e["event"] == "error" and e.get("reason") == "listen"]
    assert refused and refused[0]["detail"] == "Address already in use", err[-2000:]
    assert not [e for e in lines if e["event"] == "listening"], err[-2000:]


@pytest.mark.parametrize("threads", [1, 2])
def test_a_reload_to_an_overlapping_address_is_refused(start_worker, tfw, zctx, threads):
    """A reload moves a route from 127.0.0.1:P to 0.0.0.0:P. The new socket
    is bound while the old one still listens: threads = 1 cannot, so the
    reload fails and the running route stays. threads = 2 binds with
    SO_REUSEPORT and used to succeed: the same config must get the same
    answer."""
    w = start_worker("PULL")
    zf = tfw([make_route("w", w.upstream)], threads=threads)
    port = zf.port("w")
    zf.config_path.write_text(zf.config_path.read_text().replace(
        f'"127.0.0.1:{port}"', f'"0.0.0.0:{port}"'))
    zf.proc.send_signal(signal.SIGHUP)
    ev = zf.wait_event("reload", 10, result="failed")
    assert "cannot listen on 0.0.0.0:%d" % port in ev["detail"], ev
    assert not zf.events("reload", result="ok")
    s = zsock(zctx, zmq.PUSH, f"tcp://127.0.0.1:{port}")
    s.send(b"still served")
    assert w.wait_messages(1, timeout=10)[0] == [b"still served"]
    s.close()
