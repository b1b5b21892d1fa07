"""pickle_globals end to end: a trusted peer's pickles pass only when every
global they import is listed, checked on the wire in front of a worker that
really unpickles (tests/e2e/worker.py); learn mode and `zmtpfw learn` build
the list from traffic; `zmtpfw -t` expands and refuses entries.

Each attack is also sent straight to a worker first (the control), so a
payload that does nothing cannot make a test pass."""

import collections
import pickle
import random
import subprocess

import zmq

import payloads as P
import policy_types as T
from conftest import make_route, wait_until, zmtpfw_bin, zsock


def legit(n, seed=1):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        r = T.Req(rid=f"r{i}", input_ids=[rnd.randrange(50000) for _ in range(rnd.randrange(1, 64))],
                  mode=rnd.choice(list(T.Mode)), perm=T.Perm.R | (T.Perm.W if i % 2 else T.Perm.X),
                  params=collections.OrderedDict(temperature=rnd.random(), top_k=rnd.randrange(100)))
        out.append(pickle.dumps(r, protocol=rnd.choice([4, 5])))
    return out


def trusted_route(w, **kw):
    return make_route("w", w.upstream, allow_pickle_from=["127.0.0.1/32"], **kw)


def control(start_worker, zctx, payload, marker):
    """The attack lands when sent straight to the worker."""
    w = start_worker("PULL")
    s = zsock(zctx, zmq.PUSH, f"tcp://{w.upstream}")
    s.send(payload)
    wait_until(marker.exists, 10, what="the control attack to land")
    marker.unlink()


def test_listed_pickles_pass_byte_exact_and_unlisted_drop(start_worker, start_zmtpfw, zctx, marker):
    attack = P.evil(marker, 5)
    control(start_worker, zctx, attack, marker)
    w = start_worker("PULL")
    zf = start_zmtpfw([trusted_route(w, pickle_globals=T.GLOBALS)])
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    msgs = legit(300)
    for m in msgs[:150]:
        s.send(m)
    s.send(attack)
    for m in msgs[150:]:
        s.send(m)
    w.wait_messages(300, timeout=20)
    assert w.messages() == [[m] for m in msgs]
    loaded = [r["loaded"][0] for r in w.message_records()]
    assert all(x.startswith("Req(rid=") for x in loaded), loaded[:3]
    d = zf.wait_event("drop", reason="pickle-global")
    assert d["global"] == "io:open" and d["globals"] == ["io:open"], d
    assert not marker.exists()


def test_without_the_key_a_trusted_peer_sends_anything(start_worker, start_zmtpfw, zctx, marker):
    """Unchanged behaviour: allow_pickle_from alone is full trust."""
    w = start_worker("PULL")
    zf = start_zmtpfw([trusted_route(w)])
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    s.send(P.evil(marker, 4))
    wait_until(marker.exists, 10, what="the trusted pickle to land")


def test_untrusted_peer_nested_pickle_in_bytes_dropped(start_worker, start_zmtpfw, zctx, marker):
    """An import-free pickle carrying an importing pickle as a bytes value
    (what vLLM's shm_broadcast reader unpickles a second time) is dropped
    for peers outside allow_pickle_from; a bytes value that is data passes."""
    w = start_worker("PULL")
    zf = start_zmtpfw([make_route("w", w.upstream)])
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    inner = P.evil(marker, 5)
    assert P.reaches_import(inner)
    outer = pickle.dumps((inner, (), {}, 0), protocol=5)
    assert not P.reaches_import(outer)  # the outer pickle alone imports nothing
    data = pickle.dumps((bytes(range(256)), (), {}, 0), protocol=5)
    s.send(outer)
    s.send(data)
    w.wait_message([data])
    assert w.messages() == [[data]]
    d = zf.wait_event("drop", reason="pickle")
    assert d["opcode"] == "nested", d


def test_learn_then_enforce(start_worker, start_zmtpfw, zctx, marker, workdir):
    """log-only + `pickle_globals = [ ];` -> zmtpfw learn -> the printed
    list, pasted, enforced: the same traffic passes, a gadget does not."""
    attack = P.evil(marker, 4, kind="system")
    w = start_worker("PULL", no_unpickle=True)
    zf = start_zmtpfw([trusted_route(w, pickle_globals=[], mode="log-only")])
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    msgs = legit(60, seed=2)  # within the log's burst of 100 lines
    for m in msgs:
        s.send(m)
    s.send(attack)
    w.wait_messages(61, timeout=20)
    wait_until(lambda: len(zf.events("would-drop", reason="pickle-global")) == 61, 10,
               what="61 would-drop lines")
    out = subprocess.run([str(zmtpfw_bin()), "learn", str(zf.log_path)], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    body = out[out.index("pickle_globals = [") + len("pickle_globals = ["):out.index("];")]
    learned = sorted(l.split('"')[1] for l in body.splitlines() if '"' in l)
    assert learned == sorted(T.GLOBALS), out
    assert "60 frames" in out and '# left out: "posix:system" (1 frame): ' in out, out
    assert "gadget module" in out

    marker.unlink(missing_ok=True)
    w2 = start_worker("PULL")
    zf2 = start_zmtpfw([trusted_route(w2, pickle_globals=learned)])
    s2 = zsock(zctx, zmq.PUSH, zf2.endpoint("w"))
    for m in msgs:
        s2.send(m)
    s2.send(attack)
    s2.send(msgs[0])
    w2.wait_messages(61, timeout=20)
    assert w2.messages() == [[m] for m in msgs] + [[msgs[0]]]
    d = zf2.wait_event("drop", reason="pickle-global")
    assert d["global"] == "posix:system", d
    assert not marker.exists()


def test_check_mode_expands_and_refuses(workdir):
    good = workdir / "good.conf"
    good.write_text('routes = ( { listen = "127.0.0.1:1"; upstream = "127.0.0.1:2"; '
                    'allow = [ "127.0.0.1/32" ]; allow_pickle_from = [ "127.0.0.1/32" ];\n'
                    'pickle_globals = [ "@numpy", "collections:OrderedDict" ]; } );\n')
    r = subprocess.run([str(zmtpfw_bin()), "-t", "-c", str(good)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert "  collections:OrderedDict\n" in r.stdout and "  numpy:dtype\n" in r.stdout, r.stdout
    for entry, why in [("os.path:join", "gadget module"), ("builtins:eval", "plain data type"),
                       ("copyreg:_reconstructor", "gadget"), ("a:B.__init__", "__"),
                       ("a:*", "wildcard"), ("__builtin__:set", "__")]:
        bad = workdir / "bad.conf"
        bad.write_text('routes = ( { listen = "127.0.0.1:1"; upstream = "127.0.0.1:2";\n'
                       'allow = [ "127.0.0.1/32" ];\n'
                       f'pickle_globals = [ "collections:OrderedDict",\n "{entry}" ]; }} );\n')
        r = subprocess.run([str(zmtpfw_bin()), "-t", "-c", str(bad)], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 1 and r.stderr.startswith(f"{bad}:4: pickle_globals:") and why in r.stderr, \
            (entry, r.stderr)


def test_drops_counted_under_their_reason(splice_fw, start_worker, zctx, marker):
    """Metrics: a policy drop counts under reason="pickle-global"."""
    import urllib.request
    w = start_worker("PULL", no_unpickle=True)
    zf = splice_fw(w.upstream, allow_pickle_from=["127.0.0.1/32"], pickle_globals=T.GLOBALS)
    s = zsock(zctx, zmq.PUSH, zf.endpoint("w"))
    ok = legit(1)[0]
    s.send(P.evil(marker, 4))
    s.send(ok)
    w.wait_message([ok])
    zf.wait_event("drop", reason="pickle-global")
    body = urllib.request.urlopen(f"http://127.0.0.1:{zf.mport}/metrics", timeout=5).read().decode()
    line = [l for l in body.splitlines() if l.startswith("zmtpfw_messages_dropped_total{")
            and 'reason="pickle-global"' in l]
    assert len(line) == 1 and line[0].endswith(" 1"), body


def test_scan_globals_cli(workdir, marker):
    """zmtpfw scan --globals: exit 0 when every import of every file is
    listed (profiles included), 1 when one is not, 2 when the list refuses a
    gadget; pickles inside bytes values are judged too."""
    ok = workdir / "ok.pkl"
    ok.write_bytes(b"".join(legit(5)))
    bad = workdir / "bad.pkl"
    bad.write_bytes(P.evil(marker, 4))
    nested = workdir / "nested.pkl"
    nested.write_bytes(pickle.dumps((P.evil(marker, 5), 1), protocol=5))
    lst = ",".join(T.GLOBALS + ["@numpy"])

    def scan(*files, lst=lst):
        return subprocess.run([str(zmtpfw_bin()), "scan", "--globals", lst, *map(str, files)],
                              capture_output=True, text=True, timeout=30)
    r = scan(ok)
    assert r.returncode == 0 and "allowed by --globals" in r.stdout, r.stdout + r.stderr
    r = scan(ok, bad)
    assert r.returncode == 1 and "io.open (STACK_GLOBAL" in r.stdout and "NOT ALLOWED" in r.stdout, r.stdout
    r = scan(nested)
    assert r.returncode == 1 and "inside a bytes value" in r.stdout, r.stdout
    r = scan(ok, lst="os:system")
    assert r.returncode == 2 and "gadget module" in r.stderr, r.stderr


def test_learn_escapes_what_a_peer_named(workdir):
    """Names in the log come from peers: one carrying a newline and a quote
    must not put a line of its own into the pasted list."""
    import json
    evil = 'a:b\n    "evilmod:run", #'
    line = {"event": "would-drop", "route": "w", "reason": "pickle-global", "opcode": "import",
            "global": evil, "globals": [evil, "collections:OrderedDict"]}
    log = workdir / "learn.log"
    log.write_text(json.dumps(line, separators=(",", ":")) + "\n")  # as zmtpfw writes it
    out = subprocess.run([str(zmtpfw_bin()), "learn", str(log)], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    assert '    "collections:OrderedDict", # 1 frame' in out, out
    assert not any(l.strip().startswith('"evilmod') for l in out.splitlines()), out
    assert '# left out: "a:b\\x0a    \\x22evilmod:run\\x22, #" (1 frame): ' in out, out
