"""Shared by test_splice.py and test_splice_edges.py (with the splice_fw
fixture in conftest.py): reading what zmtpfw spliced, test bodies."""

import hashlib
import os
import re
import urllib.request

import zmtp_raw as Z


def metric(zf, name, direction="client_to_worker"):
    body = urllib.request.urlopen(f"http://127.0.0.1:{zf.mport}/metrics", timeout=5).read().decode()
    m = re.search(r'^%s\{route="w",direction="%s"\} (\d+)$' % (name, direction), body, re.M)
    assert m, f"{name} {direction} missing from /metrics"
    return int(m.group(1))


def wakeups(zf, direction="client_to_worker"):
    """Read and write events zmtpfw handled for the route: a spinning event
    makes it climb with no bytes behind it, whatever the machine's load."""
    return metric(zf, "zmtpfw_wakeups_total", direction)


def spliced(zf, direction="client_to_worker"):
    return metric(zf, "zmtpfw_spliced_bytes_total", direction)


def body_of(size):
    """Random bytes that are not a pickle: 0x00 is no pickle opcode, so the
    frame is judged clean at its first byte."""
    b = bytearray(os.urandom(size))
    b[0] = 0x00
    return bytes(b)


def digest(b):
    """How worker.py records frames over 1 MiB."""
    return {"len": len(b), "sha256": hashlib.sha256(b).hexdigest()}


def raw_session(zf):
    c = Z.RawClient("127.0.0.1", zf.port("w"))
    c.handshake("PUSH")
    return c
