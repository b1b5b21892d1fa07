"""Command line: -t config check, --version, --help, and the flag-only route."""

import re
import subprocess
from pathlib import Path

import pytest
import zmq

import payloads as P
from conftest import REPO, free_port, make_route, render_config, zmtpfw_bin, zsock


def run(*args, timeout=10):
    return subprocess.run([str(zmtpfw_bin()), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_version():
    r = run("--version")
    assert r.returncode == 0, r
    assert re.search(r"\d+\.\d+", r.stdout + r.stderr), r


def test_help():
    r = run("--help")
    assert r.returncode == 0, r
    out = r.stdout + r.stderr
    for opt in ("-c", "-t", "--listen", "--upstream", "--allow"):
        assert opt in out, f"--help does not mention {opt}:\n{out}"


def full_route():
    return make_route("w", f"127.0.0.1:{free_port()}", allow=["127.0.0.1/32", "10.0.0.0/8", "::1/128"],
                      allow_pickle_from=[], pickle="drop", on_violation="drop-message",
                      socket_types=["PUSH", "DEALER"], max_frame_size=268435456,
                      max_message_size=268435456, handshake_timeout_ms=10000,
                      max_connections=1024, mode="enforce")


def test_check_good_config(tmp_path):
    cfg = tmp_path / "good.conf"
    cfg.write_text(render_config([full_route(), make_route("u", "unix:/tmp/zf-none.sock", on_violation="close",
                                                           pickle="allow", mode="log-only")]))
    r = run("-t", "-c", cfg)
    assert r.returncode == 0, f"-t rejected a good config: {r.stdout}{r.stderr}\n{cfg.read_text()}"


def test_check_shipped_configs():
    confs = sorted((REPO / "conf").glob("*.conf"))
    if not confs:
        pytest.skip("no conf/*.conf yet")
    for c in confs:
        r = run("-t", "-c", c)
        assert r.returncode == 0, f"{c}: {r.stdout}{r.stderr}"


GOOD_HEAD = 'mode = "enforce";\nlog = { level = "info"; format = "json"; };\n'


def route_text(lines):
    return "routes = (\n  {\n" + "".join(f"    {l}\n" for l in lines) + "  }\n);\n"


BASE = ['name = "w";', 'listen = "127.0.0.1:15555";', 'upstream = "127.0.0.1:15556";',
        'allow = [ "127.0.0.1/32" ];']


def _with(i, line):
    b = list(BASE)
    b[i] = line
    return b


# (name, text, expected line or None for "any line")
BAD = [
    ("syntax", GOOD_HEAD + route_text(BASE[:2] + ['upstream = = "127.0.0.1:15556";', BASE[3]]), 7),
    ("syntax-garbage", GOOD_HEAD + "this is not libconfig\n", 3),
    ("bad-cidr-host-bits", GOOD_HEAD + route_text(_with(3, 'allow = [ "10.0.0.1/8" ];')), 8),
    ("bad-cidr-prefix", GOOD_HEAD + route_text(_with(3, 'allow = [ "127.0.0.1/33" ];')), 8),
    ("bad-cidr-text", GOOD_HEAD + route_text(_with(3, 'allow = [ "localhost" ];')), 8),
    ("bad-mode", 'mode = "permissive";\nlog = { level = "info"; format = "json"; };\n' + route_text(BASE), 1),
    ("bad-pickle", GOOD_HEAD + route_text(BASE + ['pickle = "maybe";']), 9),
    ("bad-on-violation", GOOD_HEAD + route_text(BASE + ['on_violation = "explode";']), 9),
    ("bad-listen", GOOD_HEAD + route_text(_with(1, 'listen = "127.0.0.1";')), 6),
    ("bad-listen-port", GOOD_HEAD + route_text(_with(1, 'listen = "127.0.0.1:99999";')), 6),
    ("unix-listen", GOOD_HEAD + route_text(_with(1, 'listen = "unix:/tmp/x.sock";')), 6),
    ("bad-upstream", GOOD_HEAD + route_text(_with(2, 'upstream = "nowhere";')), 7),
    ("bad-socket-type", GOOD_HEAD + route_text(BASE + ['socket_types = [ "TOASTER" ];']), 9),
    ("bad-route-mode", GOOD_HEAD + route_text(BASE + ['mode = "sometimes";']), 9),
    ("missing-upstream", GOOD_HEAD + route_text([BASE[0], BASE[1], BASE[3]]), None),
    ("missing-allow", GOOD_HEAD + route_text(BASE[:3]), None),
    ("no-routes", GOOD_HEAD, None),
    ("duplicate-route-name", GOOD_HEAD + "routes = (\n  { " + " ".join(BASE) + " },\n  { " +
     " ".join(_with(1, 'listen = "127.0.0.1:15557";')) + " }\n);\n", None),
]


@pytest.mark.parametrize("name,text,line", BAD, ids=[b[0] for b in BAD])
def test_check_bad_config(tmp_path, name, text, line):
    cfg = tmp_path / f"{name}.conf"
    cfg.write_text(text)
    r = run("-t", "-c", cfg)
    out = r.stdout + r.stderr
    assert r.returncode == 1, f"-t exit {r.returncode} on bad config {name}:\n{text}\noutput: {out}"
    lines = out.splitlines()
    pat = re.compile(re.escape(str(cfg)) + r":(\d+): \S")
    hits = [m for m in map(pat.match, lines) if m]
    assert hits, f"no 'FILE:LINE: message' line for {name}; output:\n{out}"
    if line is not None:
        assert int(hits[0].group(1)) == line, f"{name}: expected line {line}, got:\n{out}\n--\n" + \
            "\n".join(f"{i + 1}: {l}" for i, l in enumerate(text.splitlines()))


def test_check_missing_file(tmp_path):
    r = run("-t", "-c", tmp_path / "nope.conf")
    assert r.returncode == 1
    assert "nope.conf" in r.stdout + r.stderr


def test_check_does_not_listen(tmp_path):
    """-t validates only: it exits 0 even when the listen port is taken."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        r = make_route("w", "127.0.0.1:1")
        r["listen"] = "127.0.0.1:%d" % s.getsockname()[1]
        cfg = tmp_path / "c.conf"
        cfg.write_text(render_config([r]))
        assert run("-t", "-c", cfg).returncode == 0
    finally:
        s.close()


# --- flag-only route "cli" ----------------------------------------------------------------------

def cli_args(w, port, *extra):
    return ["--listen", f"127.0.0.1:{port}", "--upstream", w.upstream, "--allow", "127.0.0.0/8", *extra]


def test_cli_route(start_worker, start_zmtpfw_args, zctx, marker):
    w = start_worker("PULL")
    port = free_port()
    zf = start_zmtpfw_args(cli_args(w, port))
    zf.wait_event("listening", timeout=10, route="cli")
    s = zsock(zctx, zmq.PUSH, f"tcp://127.0.0.1:{port}")
    attack = P.evil(marker, 1)
    s.send(attack)
    s.send(b'{"cli":1}')
    w.wait_message([b'{"cli":1}'])
    assert w.messages() == [[b'{"cli":1}']]
    assert not marker.exists()
    zf.wait_event("drop", route="cli", reason="pickle")


def test_cli_allow_list_and_pickle_from(start_worker, start_zmtpfw_args, zctx):
    w = start_worker("PULL")
    port = free_port()
    zf = start_zmtpfw_args(["--listen", f"127.0.0.1:{port}", "--upstream", w.upstream,
                            "--allow", "127.0.0.1/32,127.0.0.2/32",
                            "--allow-pickle-from", "127.0.0.2/32,10.0.0.0/8"])
    zf.wait_event("listening", timeout=10, route="cli")
    t = zsock(zctx, zmq.PUSH, f"tcp://127.0.0.1:{port}", source="127.0.0.2")
    t.send(P.benign_global_pickle())
    w.wait_message([P.benign_global_pickle()])
    assert w.message_records()[0]["loaded"] == [repr(P.BENIGN_DATE)]
    x = zsock(zctx, zmq.PUSH, f"tcp://127.0.0.1:{port}", source="127.0.0.3")
    x.send(b'{"x":1}')
    zf.wait_event("reject", reason="not-allowed", peer=lambda p: p and p.startswith("127.0.0.3:"))


def test_cli_log_only(start_worker, start_zmtpfw_args, zctx, marker):
    w = start_worker("PULL", no_unpickle=True)
    port = free_port()
    zf = start_zmtpfw_args(cli_args(w, port, "--log-only"))
    zf.wait_event("listening", timeout=10, route="cli")
    s = zsock(zctx, zmq.PUSH, f"tcp://127.0.0.1:{port}")
    attack = P.evil(marker, 3)
    s.send(attack)
    w.wait_message([attack])
    zf.wait_event("would-drop", route="cli")
    assert not zf.events("drop")


def test_runs_from_config_and_sigterm_exits(start_worker, start_zmtpfw):
    import os
    import signal
    w = start_worker("PULL")
    zf = start_zmtpfw([make_route("w", w.upstream)])
    os.kill(zf.proc.pid, signal.SIGTERM)
    try:
        rc = zf.proc.wait(5)
    except subprocess.TimeoutExpired:
        pytest.fail("zmtpfw did not exit within 5 s of SIGTERM")
    zf.expect_exit = True
    assert rc == 0 or rc == -signal.SIGTERM, rc


def _free_low_port():
    import socket
    for port in range(900, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port below 1024")


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() != 0,
                    reason="needs root to bind a port below 1024 and drop privileges")
def test_user_drops_privileges_after_binding(start_worker, start_zmtpfw_args, workdir, zctx):
    """Started as root with user = "nobody": the privileged port is bound
    first, then every uid and gid is nobody's; traffic still flows, and a
    reload that needs a new privileged port fails and changes nothing."""
    import os
    import pwd
    import signal
    nobody = pwd.getpwnam("nobody")
    w = start_worker("PULL")
    low = _free_low_port()
    route = make_route("w", w.upstream, listen=f"127.0.0.1:{low}")
    cfg = Path(workdir) / "user.conf"
    cfg.write_text('user = "nobody";\n' + render_config([route], "enforce", "debug"))
    zf = start_zmtpfw_args(["-c", cfg])
    zf.wait_event("listening", timeout=10)
    zf.wait_event("privileges", user="nobody")
    status = Path(f"/proc/{zf.proc.pid}/status").read_text()
    uids = next(l for l in status.splitlines() if l.startswith("Uid:")).split()[1:]
    gids = next(l for l in status.splitlines() if l.startswith("Gid:")).split()[1:]
    assert uids == [str(nobody.pw_uid)] * 4, status
    assert gids == [str(nobody.pw_gid)] * 4, status
    s = zsock(zctx, zmq.PUSH, f"tcp://127.0.0.1:{low}")
    s.send(b'{"after":"drop"}')
    w.wait_message([b'{"after":"drop"}'])
    # A second privileged port cannot be bound any more: the reload fails.
    low2 = _free_low_port()  # zmtpfw holds `low`, so this is another port
    extra = make_route("x", w.upstream, listen=f"127.0.0.1:{low2}")
    cfg.write_text('user = "nobody";\n' + render_config([route, extra], "enforce", "debug"))
    os.kill(zf.proc.pid, signal.SIGHUP)
    zf.wait_event("reload", result="failed")
    s.send(b'{"still":"up"}')
    w.wait_message([b'{"still":"up"}'])
