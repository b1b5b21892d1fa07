"""Shared by test_attacks.py and test_attacks_protocol.py: the CLEAN and
clean(i) messages, assert_safe (no marker file, no attack frame at the
worker), the SENTINEL message and sentinel() (a clean message on a new
connection, waited for at the worker, in place of sleeping for "nothing else
arrives"), setup_pull (a PULL worker behind route "w") and raw (a raw ZMTP
client to a route).
"""

import payloads as P
import zmtp_raw as Z
from conftest import make_route

CLEAN = P.json_frame({"op": "generate", "prompt": "hello", "max_tokens": 8})


def clean(i):
    return P.json_frame({"op": "generate", "seq": i})


def assert_not_received(worker, payload):
    for m in worker.messages():
        assert payload not in m, f"attack frame reached the worker: {payload[:60]!r}"


def assert_safe(worker, marker, *payloads):
    assert not marker.exists(), "ATTACK SUCCEEDED: marker file created by the worker"
    for p in payloads:
        assert_not_received(worker, p)


SENTINEL = P.json_frame({"sentinel": True})


def sentinel(zf, w, name="w"):
    """A clean message on a new connection, waited for at the worker: what an
    earlier, closed connection got through reached the worker before it
    (its bytes were sent before this connection existed). Replaces sleeping
    for 'nothing else arrives'."""
    with Z.RawClient("127.0.0.1", zf.port(name)) as c:
        c.handshake("PUSH")
        c.send(Z.encode_frame(SENTINEL))
        w.wait_message([SENTINEL], timeout=10)


def setup_pull(start_worker, start_zmtpfw, mode="enforce", **route_kw):
    w = start_worker("PULL")
    zf = start_zmtpfw([make_route("w", w.upstream, **route_kw)], mode=mode)
    return w, zf


def raw(zf, name="w", **kw):
    return Z.RawClient("127.0.0.1", zf.port(name), **kw)
