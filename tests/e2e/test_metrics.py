"""The metrics endpoint (metrics = { listen = ...; }): Prometheus text at
/metrics, /healthz, /readyz, scraped during and after real traffic, with
exact counts.

Counts come from hooks in listener.c / conn.c / relay.c / server.c; the
asserts that depend on the readiness probe (server.c, listener.c probe) and
on SIGHUP reload are marked "lead:" in their messages.
"""

import http.client
import os
import re
import resource
import signal
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
import zmq

import payloads as P
import zmtp_raw as Z
from conftest import Zmtpfw, free_port, make_route, render_config, wait_until, zmtpfw_bin, zsock


# --- helpers ---------------------------------------------------------------------

def metrics_config(routes, mport, mode="enforce", probe=True, extra=""):
    return (render_config(routes, mode) +
            f'metrics = {{ listen = "127.0.0.1:{mport}"; probe_upstream = {"true" if probe else "false"}; }};\n'
            + extra)


@pytest.fixture
def start_fw(procs, workdir):
    """start_fw(routes, mode=..., probe=...) -> Zmtpfw with a metrics block on
    a free port (zf.mport), after every route and the endpoint are up."""
    count = [0]

    def _start(routes, mode="enforce", probe=True, wait=True, mport=None):
        count[0] += 1
        mport = mport or free_port()
        cfg = workdir / f"zmtpfw-metrics{count[0]}.conf"
        cfg.write_text(metrics_config(routes, mport, mode, probe))
        zf = Zmtpfw(["-c", cfg], workdir, name=f"zmtpfw-metrics{count[0]}")
        procs.append(zf)
        zf.config_path = cfg
        zf.mport = mport
        zf.routes = {r["name"]: r for r in routes}
        zf.port = lambda name: int(zf.routes[name]["listen"].rsplit(":", 1)[1])
        zf.endpoint = lambda name: "tcp://" + zf.routes[name]["listen"]
        if wait:
            zf.wait_listening([r["name"] for r in routes])
            zf.wait_event("metrics-listening", 10, listen=f"127.0.0.1:{mport}")
        return zf
    return _start


def http_get(port, path, method="GET", data=None, timeout=5):
    """(status, headers, body) for one request; HTTP errors are returned too."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')


def _unescape(v):
    out, i = [], 0
    while i < len(v):
        if v[i] == "\\":
            nxt = v[i + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}[nxt])
            i += 2
        else:
            out.append(v[i])
            i += 1
    return "".join(out)


class Scrape:
    """A parsed /metrics body. Checks the format strictly while parsing:
    every sample after its family's single # HELP and # TYPE, families
    contiguous, values integers, no duplicate series."""

    def __init__(self, text):
        self.text = text
        self.series = {}
        self.types = {}
        families_done = set()
        cur = None
        seen_help = set()
        assert text.endswith("\n"), "exposition must end with a newline"
        for ln, line in enumerate(text.split("\n")[:-1], 1):
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                name = line[7:].split(" ", 1)[0]
                if cur != name:
                    assert name not in families_done, f"line {ln}: family {name} split"
                    if cur:
                        families_done.add(cur)
                    cur = name
                if line.startswith("# HELP "):
                    assert name not in seen_help, f"line {ln}: second HELP for {name}"
                    seen_help.add(name)
                else:
                    assert name in seen_help, f"line {ln}: TYPE before HELP for {name}"
                    assert name not in self.types, f"line {ln}: second TYPE for {name}"
                    self.types[name] = line.split(" ")[3]
                    assert self.types[name] in ("counter", "gauge"), line
                continue
            assert line and not line.startswith("#"), f"line {ln}: unexpected {line!r}"
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9]+)$", line)
            assert m, f"line {ln}: not a sample: {line!r}"
            name, labels_txt, value = m.group(1), m.group(3), int(m.group(4))
            assert name == cur and name in self.types, f"line {ln}: {name} outside its family"
            labels = {}
            if labels_txt:
                pos = 0
                while pos < len(labels_txt):
                    lm = _LABEL_RE.match(labels_txt, pos)
                    assert lm, f"line {ln}: bad labels {labels_txt!r}"
                    assert lm.group(1) not in labels, f"line {ln}: duplicate label"
                    labels[lm.group(1)] = _unescape(lm.group(2))
                    pos = lm.end()
                    if pos < len(labels_txt):
                        assert labels_txt[pos] == ",", f"line {ln}: bad labels {labels_txt!r}"
                        pos += 1
            key = (name, frozenset(labels.items()))
            assert key not in self.series, f"line {ln}: duplicate series {line!r}"
            self.series[key] = value

    def get(self, name, **labels):
        """The value of the series with exactly these labels, None if absent."""
        return self.series.get((name, frozenset(labels.items())))

    def all(self, name):
        return {k[1]: v for k, v in self.series.items() if k[0] == name}

    def route(self, name, route):
        return {k: v for k, v in self.all(name).items() if ("route", route) in k}


def scrape(zf):
    status, headers, body = http_get(zf.mport, "/metrics")
    assert status == 200, f"/metrics returned {status}: {body[:200]!r}"
    assert headers.get("Content-Type") == "text/plain; version=0.0.4; charset=utf-8", headers
    return Scrape(body.decode("utf-8"))


def wait_metric(zf, name, want, timeout=5.0, **labels):
    last = [None]

    def ok():
        last[0] = scrape(zf).get(name, **labels)
        return last[0] == want
    try:
        wait_until(ok, timeout, what=f"{name}{labels} == {want}")
    except AssertionError:
        raise AssertionError(f"{name}{labels}: expected {want}, got {last[0]}") from None


UP, DOWN = "client_to_worker", "worker_to_client"
FAMILIES = {
    "zmtpfw_connections_accepted_total": "counter",
    "zmtpfw_connections_rejected_total": "counter",
    "zmtpfw_connections_active": "gauge",
    "zmtpfw_connections_closed_total": "counter",
    "zmtpfw_handshake_failures_total": "counter",
    "zmtpfw_upstream_connect_failures_total": "counter",
    "zmtpfw_messages_forwarded_total": "counter",
    "zmtpfw_messages_dropped_total": "counter",
    "zmtpfw_messages_would_drop_total": "counter",
    "zmtpfw_frames_forwarded_total": "counter",
    "zmtpfw_frames_dropped_total": "counter",
    "zmtpfw_relayed_bytes_total": "counter",
    "zmtpfw_spliced_bytes_total": "counter",
    "zmtpfw_wakeups_total": "counter",
    "zmtpfw_memory_bytes": "gauge",
    "zmtpfw_memory_limit_bytes": "gauge",
    "zmtpfw_config_reloads_total": "counter",
    "zmtpfw_build_info": "gauge",
}


def version():
    r = subprocess.run([str(zmtpfw_bin()), "--version"], capture_output=True, text=True, timeout=10)
    m = re.search(r"\d+\.\d+\.\d+", r.stdout + r.stderr)
    return m.group(0) if m else None


def body(i):
    return P.json_frame({"op": "generate", "seq": i})


# --- tests ---------------------------------------------------------------------------

@pytest.mark.timeout_s(60)
def test_metrics_counts_during_and_after_traffic(start_worker, start_fw, zctx):
    """Exact counts on two routes: pyzmq DEALER <-> REP (both directions, a
    dropped pickle) and a raw ZMTP client -> PULL (exact byte counts, a
    refused peer, a bad greeting)."""
    rep = start_worker("REP", no_unpickle=True)
    pull = start_worker("PULL", no_unpickle=True)
    zf = start_fw([make_route("req", rep.upstream), make_route("raw", pull.upstream)])
    bad = []

    def expect(sc, want, name, **labels):
        """Exact-count check, collected so one wrong hook does not hide others."""
        got = sc.get(name, **labels)
        if got != want:
            lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
            bad.append(f"{name}{{{lab}}}: expected {want}, got {got}")

    # -- before any traffic: every family, zero series present
    s = scrape(zf)
    assert s.types == FAMILIES, f"families/types differ: {s.types}"
    for r in ("req", "raw"):
        expect(s, 0, "zmtpfw_connections_accepted_total", route=r)
        expect(s, 0, "zmtpfw_connections_active", route=r)
        for fam in ("zmtpfw_messages_forwarded_total", "zmtpfw_frames_forwarded_total",
                    "zmtpfw_relayed_bytes_total"):
            for d in (UP, DOWN):
                assert s.get(fam, route=r, direction=d) == 0, (fam, r, d)
    assert s.all("zmtpfw_messages_dropped_total") == {}, "reason series before any drop"
    assert s.all("zmtpfw_connections_rejected_total") == {}
    expect(s, 0, "zmtpfw_config_reloads_total", result="success")
    expect(s, 0, "zmtpfw_config_reloads_total", result="failure")
    v = version()
    assert v and s.get("zmtpfw_build_info", version=v) == 1, s.all("zmtpfw_build_info")

    # -- route "req": DEALER -> REP, 3 requests echoed, then a pickle (dropped)
    #    and a 4th request
    d = zsock(zctx, zmq.DEALER, zf.endpoint("req"))
    payload_up = 0
    for i in range(3):
        d.send_multipart([b"", body(i)])
        payload_up += len(body(i))
        assert d.recv_multipart() == [b"", body(i)]
    s = scrape(zf)
    assert s.get("zmtpfw_connections_active", route="req") == 1, "active during traffic"
    expect(s, 1, "zmtpfw_connections_accepted_total", route="req")
    expect(s, 3, "zmtpfw_messages_forwarded_total", route="req", direction=UP)
    expect(s, 3, "zmtpfw_messages_forwarded_total", route="req", direction=DOWN)
    pkl = P.benign_global_pickle()
    d.send_multipart([b"", pkl])
    d.send_multipart([b"", body(3)])
    payload_up += len(body(3))
    assert d.recv_multipart() == [b"", body(3)]
    assert [m[-1] for m in rep.messages()] == [body(i) for i in range(4)], "pickle reached the worker"
    s = scrape(zf)
    expect(s, 4, "zmtpfw_messages_forwarded_total", route="req", direction=UP)
    expect(s, 4, "zmtpfw_messages_forwarded_total", route="req", direction=DOWN)
    expect(s, 8, "zmtpfw_frames_forwarded_total", route="req", direction=UP)
    expect(s, 8, "zmtpfw_frames_forwarded_total", route="req", direction=DOWN)
    expect(s, 1, "zmtpfw_messages_dropped_total", route="req", direction=UP, reason="pickle")
    expect(s, 2, "zmtpfw_frames_dropped_total", route="req", direction=UP, reason="pickle")
    assert s.route("zmtpfw_messages_dropped_total", "req").keys() == {
        frozenset({("route", "req"), ("direction", UP), ("reason", "pickle")})}
    assert s.get("zmtpfw_relayed_bytes_total", route="req", direction=UP) > payload_up + 64
    assert s.get("zmtpfw_relayed_bytes_total", route="req", direction=DOWN) > payload_up + 64
    d.close(linger=0)
    wait_metric(zf, "zmtpfw_connections_active", 0, route="req")
    s = scrape(zf)
    assert s.get("zmtpfw_connections_closed_total", route="req", reason="client-closed") == 1, \
        s.route("zmtpfw_connections_closed_total", "req")
    assert s.route("zmtpfw_handshake_failures_total", "req") == {}

    # -- route "raw": exact bytes both ways
    up = Z.full_greeting() + Z.ready_command("PUSH")
    with Z.RawClient("127.0.0.1", zf.port("raw")) as c:
        c.handshake("PUSH")
        wait_metric(zf, "zmtpfw_connections_active", 1, route="raw")
        msgs = [[body(10)], [body(11), body(12), b""]]
        for m in msgs:
            c.send(Z.encode_message(m))
            up += Z.encode_message(m)
        pk = Z.encode_message([b"head", P.benign_global_pickle(2)])
        c.send(pk)  # dropped: none of its bytes reach the worker
        c.send(Z.encode_message([body(13)]))
        up += Z.encode_message([body(13)])
        pull.wait_message([body(13)])
        down_len = len(c.peer_greeting) + len(Z.encode_frame(c.peer_ready, command=True))
        s = scrape(zf)
        assert s.get("zmtpfw_relayed_bytes_total", route="raw", direction=UP) == len(up), \
            "client_to_worker bytes must be exactly what reached the worker"
        expect(s, down_len, "zmtpfw_relayed_bytes_total", route="raw", direction=DOWN)
        expect(s, 3, "zmtpfw_messages_forwarded_total", route="raw", direction=UP)
        expect(s, 5, "zmtpfw_frames_forwarded_total", route="raw", direction=UP)
        expect(s, 0, "zmtpfw_messages_forwarded_total", route="raw", direction=DOWN)
        expect(s, 1, "zmtpfw_messages_dropped_total", route="raw", direction=UP, reason="pickle")
        expect(s, 2, "zmtpfw_frames_dropped_total", route="raw", direction=UP, reason="pickle")
        expect(s, 1, "zmtpfw_connections_active", route="raw")
    wait_metric(zf, "zmtpfw_connections_active", 0, route="raw")

    # -- a peer outside the allowlist: rejected at accept, never accepted
    with Z.RawClient("127.0.0.1", zf.port("raw"), source="127.0.0.2") as c:
        assert c.wait_closed(5)
    zf.wait_event("reject", reason="not-allowed")
    s = scrape(zf)
    expect(s, 1, "zmtpfw_connections_rejected_total", route="raw", reason="not-allowed")
    expect(s, 1, "zmtpfw_connections_accepted_total", route="raw")
    expect(s, len(up), "zmtpfw_relayed_bytes_total", route="raw", direction=UP)

    # -- a bad greeting: accepted, then a handshake failure
    with Z.RawClient("127.0.0.1", zf.port("raw")) as c:
        c.try_send(b"\x00" * 64)
        assert c.wait_closed(5)
    wait_metric(zf, "zmtpfw_connections_active", 0, route="raw")
    s = scrape(zf)
    expect(s, 2, "zmtpfw_connections_accepted_total", route="raw")
    assert s.get("zmtpfw_handshake_failures_total", route="raw", reason="greeting") == 1, \
        s.route("zmtpfw_handshake_failures_total", "raw")
    expect(s, 1, "zmtpfw_connections_closed_total", route="raw", reason="greeting")
    assert s.get("zmtpfw_relayed_bytes_total", route="raw", direction=UP) == len(up), \
        "bytes of a refused greeting were counted as relayed"
    down = s.get("zmtpfw_relayed_bytes_total", route="raw", direction=DOWN)
    assert down_len <= down <= down_len + 64
    # rejected peers are not a handshake failure, and nothing leaked into "req"
    expect(s, 1, "zmtpfw_connections_accepted_total", route="req")
    assert s.get("zmtpfw_connections_rejected_total", route="req", reason="not-allowed") is None

    # -- health and readiness while everything is up
    st, _, b = http_get(zf.mport, "/healthz")
    assert (st, b) == (200, b"ok\n")
    wait_until(lambda: http_get(zf.mport, "/readyz")[0] == 200, 5,
               what="lead: /readyz 200 while every upstream is up")
    assert http_get(zf.mport, "/readyz")[2] == b"ready\n"
    assert not bad, "metric mismatches:\n  " + "\n  ".join(bad)


@pytest.mark.timeout_s(40)
def test_readyz_follows_upstream(start_worker, start_fw):
    """lead: depends on the upstream probe behind the readiness callback."""
    w = start_worker("PULL", no_unpickle=True)
    zf = start_fw([make_route("a", w.upstream)], probe=True)
    wait_until(lambda: http_get(zf.mport, "/readyz")[0] == 200, 5, what="lead: ready with the worker up")
    w.stop()
    wait_until(lambda: http_get(zf.mport, "/readyz")[0] == 503, 10,
               what="lead: /readyz 503 after the worker stopped")
    st, _, b = http_get(zf.mport, "/readyz")
    text = b.decode()
    assert text.startswith("not ready\n") and "a" in text and w.upstream in text, \
        f"lead: 503 body should name the route and upstream: {text!r}"
    # the process itself is fine
    assert http_get(zf.mport, "/healthz")[:3:2] == (200, b"ok\n")
    zf.assert_alive()


@pytest.mark.timeout_s(30)
def test_readyz_without_probe_ignores_upstream(start_fw):
    """probe_upstream = false: an unreachable upstream does not make it
    unready. (With the probe on, /readyz says 503 from the start: "not
    probed yet", then "unreachable".) A client that zmtpfw fails to dial
    the upstream for does not change that either."""
    dead = f"127.0.0.1:{free_port()}"
    zf = start_fw([make_route("a", dead)], probe=False)
    assert http_get(zf.mport, "/readyz")[:3:2] == (200, b"ready\n")
    with Z.RawClient("127.0.0.1", zf.port("a")) as c:
        c.try_send(Z.full_greeting())
        assert c.wait_closed(10)
    wait_metric(zf, "zmtpfw_connections_closed_total", 1, route="a", reason="upstream-unreachable")
    assert http_get(zf.mport, "/readyz")[:3:2] == (200, b"ready\n")
    assert not zf.events("upstream"), zf.events("upstream")


@pytest.mark.timeout_s(30)
def test_upstream_unreachable_counted(start_fw):
    dead = f"127.0.0.1:{free_port()}"
    zf = start_fw([make_route("a", dead)], probe=False)
    with Z.RawClient("127.0.0.1", zf.port("a")) as c:
        c.try_send(Z.full_greeting())
        assert c.wait_closed(8)
    wait_metric(zf, "zmtpfw_connections_active", 0, route="a")
    s = scrape(zf)
    assert s.get("zmtpfw_upstream_connect_failures_total", route="a",
                 reason="upstream-unreachable") == 1, s.route("zmtpfw_upstream_connect_failures_total", "a")
    assert s.route("zmtpfw_handshake_failures_total", "a") == {}, \
        "an unreachable worker is not a handshake failure of the client"
    assert s.get("zmtpfw_connections_closed_total", route="a", reason="upstream-unreachable") == 1


@pytest.mark.timeout_s(30)
def test_log_only_counts_would_drop(start_worker, start_fw, zctx):
    w = start_worker("PULL", no_unpickle=True)
    zf = start_fw([make_route("a", w.upstream)], mode="log-only")
    s = zsock(zctx, zmq.PUSH, zf.endpoint("a"))
    pkl = P.benign_global_pickle()
    s.send(pkl)
    s.send(body(1))
    w.wait_message([body(1)])
    sc = scrape(zf)
    assert sc.get("zmtpfw_messages_would_drop_total", route="a", direction=UP, reason="pickle") == 1
    assert sc.get("zmtpfw_messages_forwarded_total", route="a", direction=UP) == 2
    assert sc.all("zmtpfw_messages_dropped_total") == {}


@pytest.mark.timeout_s(40)
def test_reload_results_counted(start_worker, start_fw):
    """lead: SIGHUP handling in server.c. Counters survive the reload; a
    route removed by it keeps its counters but loses its gauge."""
    w = start_worker("PULL", no_unpickle=True)
    ra, rb = make_route("a", w.upstream), make_route("b", w.upstream)
    zf = start_fw([ra, rb])
    with Z.RawClient("127.0.0.1", zf.port("b")) as c:
        c.handshake("PUSH")
        c.send(Z.encode_message([body(1)]))
        w.wait_message([body(1)])
    wait_metric(zf, "zmtpfw_connections_active", 0, route="b")
    good = zf.config_path.read_text()
    zf.config_path.write_text(metrics_config([ra], zf.mport))
    os.kill(zf.proc.pid, signal.SIGHUP)
    wait_metric(zf, "zmtpfw_config_reloads_total", 1, result="success")
    s = scrape(zf)
    assert s.get("zmtpfw_config_reloads_total", result="failure") == 0
    assert s.get("zmtpfw_connections_active", route="b") is None, "removed route still has a gauge"
    assert s.get("zmtpfw_connections_accepted_total", route="b") == 1, "removed route lost its counters"
    assert s.get("zmtpfw_messages_forwarded_total", route="b", direction=UP) == 1
    assert s.get("zmtpfw_connections_active", route="a") == 0
    zf.config_path.write_text("routes = ( { oops } );\n")
    os.kill(zf.proc.pid, signal.SIGHUP)
    wait_metric(zf, "zmtpfw_config_reloads_total", 1, result="failure")
    assert scrape(zf).get("zmtpfw_config_reloads_total", result="success") == 1
    zf.config_path.write_text(good)
    os.kill(zf.proc.pid, signal.SIGHUP)
    wait_metric(zf, "zmtpfw_config_reloads_total", 2, result="success")
    wait_metric(zf, "zmtpfw_connections_active", 0, route="b")  # back: gauge again
    assert scrape(zf).get("zmtpfw_connections_accepted_total", route="b") == 1
    zf.assert_alive()


@pytest.mark.timeout_s(30)
def test_http_methods_and_paths(start_worker, start_fw):
    w = start_worker("PULL", no_unpickle=True)
    zf = start_fw([make_route("a", w.upstream)])
    st, h, b = http_get(zf.mport, "/nope")
    assert st == 404
    st, h, b = http_get(zf.mport, "/metricsX")
    assert st == 404
    st, h, b = http_get(zf.mport, "/metrics", method="POST", data=b"x=1")
    assert st == 405 and h.get("Allow") == "GET, HEAD", (st, dict(h))
    st, h, b = http_get(zf.mport, "/healthz", method="DELETE")
    assert st == 405
    st, h, b = http_get(zf.mport, "/metrics?name[]=x")
    assert st == 200 and b"zmtpfw_build_info" in b
    # HEAD then GET on one keep-alive connection: HEAD must send no body, or
    # the GET's response would be read from the HEAD's leftover bytes
    conn = http.client.HTTPConnection("127.0.0.1", zf.mport, timeout=5)
    conn.request("HEAD", "/metrics")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b""
    assert int(r.headers["Content-Length"]) > 0
    conn.request("GET", "/healthz")
    r = conn.getresponse()
    assert (r.status, r.read()) == (200, b"ok\n")
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    assert r.status == 200 and Scrape(r.read().decode())
    conn.close()


@pytest.mark.timeout_s(40)
def test_garbage_http_does_not_disturb_relaying(start_worker, start_fw, zctx):
    w = start_worker("PULL", no_unpickle=True)
    zf = start_fw([make_route("a", w.upstream)])
    push = zsock(zctx, zmq.PUSH, zf.endpoint("a"))
    push.send(body(0))
    w.wait_message([body(0)])

    def raw_http(data, read=True):
        s = socket.create_connection(("127.0.0.1", zf.mport), timeout=5)
        try:
            s.sendall(data)
        except OSError:
            pass
        out = b""
        if read:
            try:
                while True:
                    c = s.recv(65536)
                    if not c:
                        break
                    out += c
            except (socket.timeout, ConnectionResetError):
                pass
        s.close()
        return out

    # binary junk (a TLS ClientHello), oversized headers, a bogus method and
    # request line, a huge declared body, a half request abandoned
    tls = bytes.fromhex("16030100a5010000a10303") + os.urandom(160)
    for data in (tls,
                 b"GET /metrics HTTP/1.1\r\nX-Big: " + b"A" * 20000 + b"\r\n\r\n",
                 b"BREW /metrics HTCPCP/1.0\r\n\r\n",
                 b"\x00\xff\r\n\r\n",
                 b"POST /metrics HTTP/1.1\r\nContent-Length: 100000000\r\n\r\nxx"):
        out = raw_http(data)
        assert not out.startswith(b"HTTP/1.1 200"), f"garbage got a 200: {data[:40]!r} -> {out[:80]!r}"
    raw_http(b"GET /metr", read=False)
    # interleave relaying with more junk
    for i in range(1, 20):
        push.send(body(i))
        raw_http(os.urandom(64), read=False)
    wait_until(lambda: len(w.messages()) >= 20, 5, what="20 messages at the worker")
    assert w.messages() == [[body(i)] for i in range(20)]
    s = scrape(zf)
    assert s.get("zmtpfw_messages_forwarded_total", route="a", direction=UP) == 20
    assert http_get(zf.mport, "/healthz")[0] == 200
    zf.assert_alive()


@pytest.mark.timeout_s(30)
def test_many_idle_http_connections_do_not_block_relaying(start_worker, start_fw, zctx):
    """Slowloris below the endpoint's cap of 32: relaying goes on, and
    scrapes still work (beyond the cap, see
    test_metrics_connection_cap_keeps_routes_working)."""
    w = start_worker("PULL", no_unpickle=True)
    zf = start_fw([make_route("a", w.upstream)])
    idle = []
    for _ in range(24):
        s = socket.create_connection(("127.0.0.1", zf.mport), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\n")  # never finished
        idle.append(s)
    push = zsock(zctx, zmq.PUSH, zf.endpoint("a"))
    push.send(body(1))
    w.wait_message([body(1)])
    assert scrape(zf).get("zmtpfw_messages_forwarded_total", route="a", direction=UP) == 1
    for s in idle:
        s.close()
    zf.assert_alive()


@pytest.mark.timeout_s(30)
def test_metrics_bind_failure_logged(start_worker, start_fw):
    """lead: what main does with a failed metrics bind (exit or go on); the
    error line is metrics.c's."""
    w = start_worker("PULL", no_unpickle=True)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        zf = start_fw([make_route("a", w.upstream)], wait=False, mport=busy.getsockname()[1])
        zf.expect_exit = True
        zf.wait_event("error", 10, reason="metrics-listen")
        wait_until(lambda: not zf.alive(), 10, what="lead: zmtpfw exits when metrics cannot listen")
        assert zf.proc.returncode != 0
    finally:
        busy.close()


def lowest_free_fd(pid):
    used = {int(f) for f in os.listdir(f"/proc/{pid}/fd")}
    n = 0
    while n in used:
        n += 1
    return n


@pytest.mark.timeout_s(30)
def test_metrics_accept_error_names_its_endpoint(start_worker, start_fw):
    """accept() on the metrics endpoint failing with EMFILE: the error line
    names the endpoint (its callback argument is evhttp's, not the
    endpoint's: read as the endpoint it was garbage, or a crash), accepting
    resumes, and the routes never stopped."""
    w = start_worker("PULL", no_unpickle=True)
    zf = start_fw([make_route("a", w.upstream)], probe=False)
    pid = zf.proc.pid
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free_fd(pid), old[1]))
    try:
        c = socket.create_connection(("127.0.0.1", zf.mport), timeout=5)
        zf.wait_event("error", 10, reason="metrics-accept")
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
    bad = zf.events("error", reason="metrics-accept")
    assert all(e["listen"] == f"127.0.0.1:{zf.mport}" for e in bad), bad[:3]
    assert all(e["detail"] == "Too many open files" for e in bad), bad[:3]
    c.close()
    wait_until(lambda: http_get(zf.mport, "/healthz")[0] == 200, 10, what="the endpoint again")
    zf.assert_alive()


@pytest.mark.timeout_s(60)
def test_metrics_connection_cap_keeps_routes_working(start_worker, start_fw, zctx):
    """200 idle connections to the metrics endpoint under a descriptor limit
    with 64 to spare: the endpoint stops accepting at its cap of 32 (logged
    once as metrics-busy), never runs the process out of descriptors, the
    route keeps relaying, and scrapes work again once the idle ones close."""
    w = start_worker("PULL", no_unpickle=True)
    zf = start_fw([make_route("a", w.upstream)], probe=False)
    pid = zf.proc.pid
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free_fd(pid) + 64, old[1]))
    idle = []
    try:
        for _ in range(200):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", zf.mport))
            idle.append(s)
        zf.wait_event("error", 10, reason="metrics-busy")
        z = zsock(zctx, zmq.PUSH, zf.endpoint("a"), timeout_ms=10000)
        for i in range(3):
            z.send(body(i))
        w.wait_messages(3, timeout=10)
        assert w.messages() == [[body(i)] for i in range(3)]
        assert not zf.events("error", reason="metrics-accept"), zf.events("error")[:3]
        assert len(zf.events("error", reason="metrics-busy")) == 1
        zf.assert_alive()
    finally:
        for s in idle:
            s.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
    wait_until(lambda: scrape(zf).get("zmtpfw_messages_forwarded_total", route="a", direction=UP) == 3,
               30, what="a scrape once the idle connections closed")
    zf.assert_alive()


@pytest.mark.timeout_s(40)
def test_reload_renaming_a_route_keeps_gauges_whole(start_worker, start_fw):
    """Three live connections on route alpha; a reload renames it beta (same
    listen address, so the connections live on); the three close. Each
    connection keeps the metrics entry and route name it got at accept: beta's
    active gauge never goes below 0 (it read -3), alpha counts the three
    closes, and the close lines say alpha."""
    w = start_worker("PULL", no_unpickle=True)
    ra = make_route("alpha", w.upstream)
    zf = start_fw([ra])
    conns = []
    for i in range(3):
        c = Z.RawClient("127.0.0.1", zf.port("alpha"))
        c.handshake("PUSH")
        c.send(Z.encode_message([body(i)]))
        conns.append(c)
    w.wait_messages(3)
    wait_metric(zf, "zmtpfw_connections_active", 3, route="alpha")
    zf.config_path.write_text(metrics_config([dict(ra, name="beta")], zf.mport))
    os.kill(zf.proc.pid, signal.SIGHUP)
    wait_metric(zf, "zmtpfw_config_reloads_total", 1, result="success")
    for c in conns:
        c.close()
    wait_until(lambda: len(zf.events("close")) == 3, 10, what="three close lines")
    s = scrape(zf)
    assert s.get("zmtpfw_connections_active", route="beta") == 0
    assert s.get("zmtpfw_connections_closed_total", route="alpha", reason="client-closed") == 3
    assert s.get("zmtpfw_connections_closed_total", route="beta", reason="client-closed") is None
    assert [e["route"] for e in zf.events("close")] == ["alpha"] * 3
    zf.assert_alive()
