"""Differential test: the msgpack walker against msgpack-python.

    /usr/bin/python3 tests/scanner/msgpack_difftest.py [--cases N] [--seed S]

Generates N frames (default 120,000): objects packed by msgpack.packb
(with and without use_bin_type, pickles inside bin and ext 1/2 as vLLM and
SGLang send them), frames written byte by byte in every encoding form
(non-minimal widths, every ext code, any map key, deep chains around 64 and
1024 levels), mutations of both (truncation, bit flips, byte replacement,
insertion, deletion, trailing bytes, two objects in a row, interesting type
bytes) and random bytes. Each frame goes through
$MPSCAN_DRIVER, else $ZMTPFW_BUILD/tests/mpscan_driver (default build/), with
--hexlines, which also
checks that byte-by-byte and random-chunk feeds give the same line.

The rules (msgpack-python is the Debian 12 C extension):
  - driver MISMATCH (split variance) or STUCK: failure.
  - msgpack.unpackb(frame) succeeds (defaults): the walker says MSGPACK and
    its payloads equal, in order, the bin values and the ext 1/2 data of
    the object, or it says TOO_DEEP and the object nests deeper than 64.
    The payloads are read from a second decode that loses nothing:
    object_pairs_hook keeps every map entry (duplicate keys), ext_hook
    records every ext, unicode_errors='surrogateescape' and
    strict_map_key=False only widen what decodes.
  - that lenient decode succeeds: the same (a stronger rule than the
    above; no options of unpackb hide a payload from the walker).
  - the walker says NOT_MSGPACK: the lenient decode, and so unpackb with
    any options, must fail.
Frames the walker accepts but msgpack-python refuses are counted by the
exception (they are the documented leniencies of src/msgpack_scan.c).
Exits 1 on any failure; failing frames go to $MPSCAN_FAILURES (default
/tmp/mpscan-failures.txt) as "hex reason" lines.
"""
import argparse
import collections
import os
import pickle
import random
import struct
import subprocess
import sys
import time

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MAX_DEPTH = 64  # MPSCAN_MAX_DEPTH


class Ext:
    """What the recording ext_hook leaves in the decoded object."""
    __slots__ = ("code", "data")

    def __init__(self, code, data):
        self.code, self.data = code, data


def lenient(frame):
    return msgpack.unpackb(frame, strict_map_key=False, object_pairs_hook=list,
                           ext_hook=Ext, unicode_errors="surrogateescape")


def payloads(obj, out):
    """Payloads in wire order: bin values and ext 1/2 data; map entries are
    (key, value) tuples from object_pairs_hook."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, (list, tuple)):
            stack.extend(reversed(o))
        elif isinstance(o, bytes):
            out.append("B:" + o.hex())
        elif isinstance(o, Ext) and o.code in (1, 2):
            out.append("%d:%s" % (o.code, o.data.hex()))
    return out


def depth(obj):
    """Container nesting: lists are arrays or maps (pairs hook), tuples are
    map entries (no level of their own)."""
    best, stack = 0, [(obj, 0)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, list):
            best = max(best, d + 1)
            stack.extend((x, d + 1) for x in o)
        elif isinstance(o, tuple):
            stack.extend((x, d) for x in o)
    return best


# ---------------------------------------------------------------- generators

PICKLES = [pickle.dumps(x, protocol=p) for p in range(6)
           for x in (1, "s", [1, 2], {"a": b"b"}, None)]
PICKLES.append(b"cos\nsystem\n(S'id'\ntR.")
PICKLES.append(b"\x80\x05\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.")


def py_obj(r, d=0):
    k = r.randrange(12 if d < 5 else 7)
    if k == 0:
        return r.choice([None, True, False])
    if k == 1:
        return r.choice([0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1,
                         2**64 - 1, -1, -32, -33, -128, -129, -32768, -32769, -2**31,
                         -2**31 - 1, -2**63, r.randrange(-2**63, 2**64)])
    if k == 2:
        return r.random() * 10 ** r.randrange(-5, 20)
    if k == 3:
        n = r.choice([0, 1, 5, 31, 32, 40, 255, 256, 300])
        return "".join(chr(r.choice([0x61, 0xe9, 0x4e2d, 0x1f600])) for _ in range(n))
    if k == 4:
        return bytes(r.randrange(256) for _ in range(r.choice([0, 1, 3, 8, 255, 256, 300])))
    if k == 5:
        return r.choice(PICKLES)
    if k == 6:
        code = r.choice([1, 2, 1, 2, 0, 3, 4, 5, 127])
        data = r.choice(PICKLES) if code in (1, 2) and r.random() < .7 else \
            bytes(r.randrange(256) for _ in range(r.choice([0, 1, 2, 4, 8, 16, 3, 17, 300])))
        return msgpack.ExtType(code, data)
    if k == 7:  # SGLang PickleWrapper
        return ["PickleWrapper", r.choice(PICKLES)]
    if k in (8, 9):
        return [py_obj(r, d + 1) for _ in range(r.choice(counts(d) + [5, 16, 17][:3 - d]))]
    return {py_key(r): py_obj(r, d + 1) for _ in range(r.choice(counts(d) + [16][:2 - d]))}


def counts(d):
    """Container sizes: the long forms (16+) only near the top, so a frame
    stays a few KiB at most."""
    return [0, 1, 2, 3, 4] if d < 2 else [0, 1, 2]


def py_key(r):
    return r.choice(["k%d" % r.randrange(50), bytes([r.randrange(256)]), r.randrange(100)])


def packed(r):
    o = py_obj(r)
    return msgpack.packb(o, use_bin_type=r.random() < .85, use_single_float=r.random() < .3)


def be(n, w):
    return n.to_bytes(w, "big")


def raw_len(r, n, fix_max, fix_base, codes):
    """Header for a length n in a random legal form (fix or 8/16/32)."""
    forms = [i for i, (c, w) in enumerate(codes) if c is not None and n < 256 ** w]
    if n <= fix_max and fix_base is not None:
        forms.append(-1)
    f = r.choice(forms)
    if f == -1:
        return bytes([fix_base | n])
    c, w = codes[f]
    return bytes([c]) + be(n, w)


def raw_obj(r, d=0):
    """One object in any legal encoding, written by hand."""
    k = r.randrange(10 if d < 6 else 6)
    if k == 0:
        return bytes([r.choice([0xc0, 0xc2, 0xc3, r.randrange(0x80), r.randrange(0xe0, 0x100)])])
    if k == 1:
        t, w = r.choice([(0xcc, 1), (0xcd, 2), (0xce, 4), (0xcf, 8), (0xd0, 1), (0xd1, 2),
                         (0xd2, 4), (0xd3, 8), (0xca, 4), (0xcb, 8)])
        return bytes([t]) + bytes(r.randrange(256) for _ in range(w))
    if k == 2:  # str, sometimes invalid UTF-8
        n = r.choice([0, 1, 2, 31, 5])
        body = bytes(r.randrange(256) if r.random() < .2 else 0x61 for _ in range(n))
        return raw_len(r, n, 31, 0xa0, [(0xd9, 1), (0xda, 2), (0xdb, 4)]) + body
    if k == 3:  # bin
        body = r.choice(PICKLES) if r.random() < .3 else bytes(r.randrange(256) for _ in range(r.choice([0, 1, 7])))
        return raw_len(r, len(body), -1, None, [(0xc4, 1), (0xc5, 2), (0xc6, 4)]) + body
    if k == 4:  # ext, any code
        code = r.choice([1, 2, 1, 2, 0, 3, 127, -1, -2, -128, r.randrange(-128, 128)])
        if code == -1 and r.random() < .7:
            body = r.choice([b"\0" * 4, b"\0" * 8, b"\0" * 12])
        elif code in (1, 2) and r.random() < .6:
            body = r.choice(PICKLES)
        else:
            body = bytes(r.randrange(256) for _ in range(r.choice([0, 1, 2, 4, 8, 16, 3, 5])))
        n = len(body)
        forms = [(0xc7, 1), (0xc8, 2), (0xc9, 4)]
        fix = {1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8}
        if n in fix and r.random() < .6:
            hdr = bytes([fix[n]])
        else:
            c, w = r.choice(forms)
            hdr = bytes([c]) + be(n, w)
        return hdr + struct.pack("b", code) + body
    if k == 5 and d < 3 and r.random() < .05:
        return deep_chain(r)
    n = r.choice(counts(d) + [15, 16][:2 - d])
    if k < 8:  # array
        hdr = raw_len(r, n, 15, 0x90, [(0xdc, 2), (0xdd, 4)])
        return hdr + b"".join(raw_obj(r, d + 1) for _ in range(n))
    hdr = raw_len(r, n, 15, 0x80, [(0xde, 2), (0xdf, 4)])
    return hdr + b"".join(raw_obj(r, d + 1) + raw_obj(r, d + 1) for _ in range(n))


def deep_chain(r):
    n = r.choice([r.randrange(60, 70), 64, 65, r.randrange(1020, 1030), 1024, 1025])
    inner = r.choice([b"\x01", b"\x90", b"\x80", b"\xc4\x01\x2e", b"\xd4\x01\x2e"])
    out = []
    for _ in range(n):
        out.append(r.choice([b"\x91", b"\x81\xc0", b"\xdc\x00\x01", b"\x92\x01"]))
    # \x92\x01 puts the sibling first: the chain stays a valid object.
    return b"".join(out) + inner


INTERESTING = [0xc1, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xd4, 0xd8, 0xd9, 0xdc, 0xdd, 0xde,
               0xdf, 0x80, 0x82, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xff, 0x00]


def mutate(r, f):
    f = bytearray(f)
    k = r.randrange(8)
    if k == 0 and f:
        return bytes(f[:r.randrange(len(f))])
    if k == 1 and f:
        f[r.randrange(len(f))] ^= 1 << r.randrange(8)
    elif k == 2 and f:
        f[r.randrange(len(f))] = r.randrange(256)
    elif k == 3:
        f.insert(r.randrange(len(f) + 1), r.choice(INTERESTING + [r.randrange(256)]))
    elif k == 4 and f:
        del f[r.randrange(len(f))]
    elif k == 5:
        f += bytes(r.randrange(256) for _ in range(r.randrange(1, 4)))
    elif k == 6:
        f += raw_obj(r)
    elif f:
        f[r.randrange(len(f))] = r.choice(INTERESTING)
    return bytes(f)


def gen(r):
    k = r.random()
    if k < .25:
        return "packed", packed(r)
    if k < .5:
        return "raw", raw_obj(r)
    if k < .85:
        f = packed(r) if r.random() < .5 else raw_obj(r)
        for _ in range(r.choice([1, 1, 1, 2, 3])):
            f = mutate(r, f)
        return "mutated", f
    n = r.choice([0, 1, 2, 3, 5, 8, 16, 64])
    return "random", bytes(r.randrange(256) for _ in range(n))


# ---------------------------------------------------------------- compare

def judge(frame, line, st, fails):
    if line.startswith("MISMATCH") or line.startswith("STUCK"):
        st["invariant"] += 1
        fails.append((frame, line))
        return
    try:
        msgpack.unpackb(frame)
        default_ok = True
    except Exception:
        default_ok = False
    try:
        obj = lenient(frame)
        lenient_ok = True
    except Exception as e:
        lenient_ok = False
        err = "%s: %s" % (type(e).__name__, str(e)[:60])
    st["decoder accepts (defaults)"] += default_ok
    st["decoder accepts (lenient)"] += lenient_ok
    if default_ok and not lenient_ok:
        st["defaults accept, lenient refuses"] += 1
        fails.append((frame, "lenient decode refused what the defaults accept"))
    if lenient_ok:
        want = payloads(obj, [])
        st["payloads in accepted frames"] += len(want)
        if line.startswith("TOO_DEEP"):
            st["walker TOO_DEEP, decoder accepts"] += 1
            if depth(obj) <= MAX_DEPTH:
                fails.append((frame, "TOO_DEEP at depth %d" % depth(obj)))
            return
        got = line[len("MSGPACK "):] if line.startswith("MSGPACK ") else None
        if got is None:
            st["false NOT_MSGPACK"] += 1
            fails.append((frame, "walker: %s, decoder accepts" % line))
        elif got != (",".join(want) or "-"):
            st["payload differences"] += 1
            fails.append((frame, "payloads: walker %s, decoder %s" % (got, ",".join(want))))
        return
    if line.startswith("MSGPACK"):
        st["walker more lenient"] += 1
        st["  lenient: " + err.split(":")[0] + (" (" + err[err.index(":") + 2:][:40] + ")")] += 1
    elif line.startswith("TOO_DEEP"):
        st["walker TOO_DEEP, decoder refuses"] += 1
    else:
        st["both refuse"] += 1


def driver_path():
    build = os.environ.get("ZMTPFW_BUILD", os.path.join(ROOT, "build"))
    return os.environ.get("MPSCAN_DRIVER", os.path.join(build, "tests", "mpscan_driver"))


def run(n, seed):
    """Generate n frames, walk and decode them: (stats, failures, report)."""
    sys.setrecursionlimit(10000)
    r = random.Random(seed)
    t0 = time.time()
    kinds, frames = collections.Counter(), []
    for _ in range(n):
        kind, f = gen(r)
        kinds[kind] += 1
        frames.append(f)
    t1 = time.time()
    out = subprocess.run([driver_path(), "--hexlines"],
                         input="".join(f.hex() + "\n" for f in frames),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    t2 = time.time()
    assert len(out) == len(frames), (len(out), len(frames))
    st, fails = collections.Counter(), []
    for f, line in zip(frames, out):
        judge(f, line, st, fails)
        st["walker " + line.split(" ")[0]] += 1
    t3 = time.time()
    rep = ["msgpack-python %s; seed %d; %d frames (%s)" % (
        ".".join(map(str, msgpack.version)), seed, len(frames),
        ", ".join("%s %d" % kv for kv in sorted(kinds.items()))),
        "time: generation %.1fs, walker %.1fs, decoder %.1fs" % (t1 - t0, t2 - t1, t3 - t2)]
    rep += ["  %-60s %d" % (k, st[k]) for k in sorted(st)]
    rep.append("failures: %d" % len(fails))
    return st, fails, rep


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=120000)
    ap.add_argument("--seed", type=int, default=20261204)
    a = ap.parse_args()
    st, fails, rep = run(a.cases, a.seed)
    print("\n".join(rep))
    if fails:
        path = os.environ.get("MPSCAN_FAILURES", "/tmp/mpscan-failures.txt")
        with open(path, "w") as fh:
            for f, why in fails:
                fh.write("%s %s\n" % (f.hex(), why))
        for f, why in fails[:10]:
            print("  %s  %s" % (f.hex()[:80], why[:160]))
        print("written to %s" % path)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
