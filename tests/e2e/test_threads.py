"""threads = N: several event loops (issue 13, part 3). Each loop accepts on
every route (SO_REUSEPORT), limits stay exact across loops, reload and drain
reach every loop, /metrics sums the loops' shards."""

import socket
import threading
import time
import urllib.request

import pytest
import zmq

from conftest import free_port, make_route, render_config, zsock, Zmtpfw


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
            for t in range(threads):
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
        assert {a["thread"] for a in accepts} == {0, 1}
        reason = key.replace("_", "-")
        assert len(zf.events("reject", reason=reason)) == 60 - limit
    finally:
        for s in socks:
            s.close()


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
    socks = [zsock(zctx, zmq.PUSH, "tcp://" + zf.routes["w"]["listen"]) for _ in range(12)]
    for s in socks:
        s.send(b"x")
    w.wait_messages(12, timeout=10)
    assert {a["thread"] for a in zf.events("accept")} == {0, 1}
    zf.proc.send_signal(__import__("signal").SIGTERM)
    zf.expect_exit = True
    assert zf.proc.wait(15) == 0
    closes = zf.events("close", reason="shutdown")
    assert len(closes) == 12, zf.tail(30)
    assert zf.events("drain", result="done")
    for s in socks:
        s.close()
