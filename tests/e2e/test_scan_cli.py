"""`zmtpfw scan`: offline scanning of pickle files (.pkl crash dumps).

Files are written by CPython (pickle.dump of objects with __reduce__,
dataclasses and enums, and benign data) at protocols 0-5. The expected
import list of a real pickle comes from CPython itself: an Unpickler whose
find_class records (module, name) and returns an inert stand-in class, so
loading runs to the end without importing or calling anything real. Also:
exit statuses, not-a-pickle files, streams of several pickles, stdin, a
3 GiB (sparse) file scanned in bounded memory, and hostile names escaped.
"""
import dataclasses
import enum
import io
import json
import os
import pickle
import resource
import subprocess
import sys

import pytest

from conftest import zmtpfw_bin

pytestmark = pytest.mark.timeout_s(120)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class EvalMe:
    def __reduce__(self):
        return (eval, ("1+1",))


class Color(enum.Enum):
    RED = 1


@dataclasses.dataclass
class Req:
    rid: str
    ids: list
    color: Color = Color.RED


BENIGN = [None, 1, -2**70, 3.5, "é", b"\x00\xff", [1, [2, [3]]], {"a": (1, 2), "b": {None}},
          frozenset({1}), list(range(500)), {"x" * 300: b"y" * 70000}]
DANGEROUS = [Evil(), [1, EvalMe()], Req("r1", [1, 2]), {"reqs": [Req("a", []), Req("b", [3])]},
             [Evil(), Evil(), EvalMe()], complex(1, 2)]


class Inert:
    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        return Inert()

    def __setstate__(self, state):
        pass


class Recorder(pickle.Unpickler):
    """Records every find_class; returns a fresh inert class instead."""

    def __init__(self, f):
        super().__init__(f)
        self.seen = []

    def find_class(self, module, name):
        self.seen.append("%s.%s" % (module, name))
        return type(name, (Inert,), {})


def cpython_imports(data):
    f = io.BytesIO(data)
    seen = []
    while f.tell() < len(data):
        r = Recorder(f)
        r.load()
        seen += r.seen
    return seen


def scan(*args, stdin=None):
    res = subprocess.run([str(zmtpfw_bin()), "scan"] + [str(a) for a in args], input=stdin,
                         capture_output=True, timeout=60)
    return res.returncode, res.stdout.decode("utf-8", "replace"), res.stderr.decode()


def scan_json(*args, stdin=None):
    rc, out, err = scan("--json", *args, stdin=stdin)
    return rc, [json.loads(l) for l in out.splitlines()]


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("proto", range(6))
def test_real_pickles(tmp_path, proto):
    files = []
    for i, obj in enumerate(BENIGN + DANGEROUS):
        p = tmp_path / ("obj%d.pkl" % i)
        with open(p, "wb") as f:
            pickle.dump(obj, f, protocol=proto)
        files.append(p)
    rc, reports = scan_json(*files)
    assert rc == 1
    assert [r["file"] for r in reports] == [str(p) for p in files]
    for p, r in zip(files, reports):
        want = cpython_imports(p.read_bytes())
        got = ["%s.%s" % (i["module"], i["name"]) if i["module"] is not None else "unknown"
               for i in r["imports"]]
        # Every import CPython performs is listed, in order, by name.
        assert got == want, (p.name, got, want)
        assert r["status"] == ("imports" if want else "clean"), r
        assert r["end"] == "stop" and r["pickles"] == 1
        for i in r["imports"]:
            assert i["opcode"] in ("GLOBAL", "STACK_GLOBAL", "INST") and i["offset"] >= 0
    # Files CPython loads without an import (bytes and sets need globals
    # at low protocols): alone, exit 0.
    clean = [p for p in files if not cpython_imports(p.read_bytes())]
    assert len(clean) >= len(BENIGN) // 2
    rc, reports = scan_json(*clean)
    assert rc == 0 and all(r["status"] == "clean" for r in reports)


def test_text_output_and_exit_status(tmp_path):
    evil = write(tmp_path, "evil.pkl", pickle.dumps(Evil(), protocol=0))
    benign = write(tmp_path, "ok.pkl", pickle.dumps({"a": 1}, protocol=4))
    rc, out, _ = scan(evil)
    sysmod = os.system.__module__  # posix
    assert rc == 1
    assert out.splitlines() == ["%s: import %s.system (GLOBAL at offset 0)" % (evil, sysmod),
                                "%s: pickle with imports (1)" % evil]
    rc, out, _ = scan(benign)
    assert rc == 0 and out == "%s: pickle without imports\n" % benign
    # 2 (unreadable) wins over 1, every file is still reported.
    rc, out, _ = scan(evil, tmp_path / "missing.pkl", tmp_path, benign)
    assert rc == 2
    lines = out.splitlines()
    assert "%s: error: No such file or directory" % (tmp_path / "missing.pkl") in lines
    assert "%s: error: Is a directory" % tmp_path in lines
    assert lines[-1] == "%s: pickle without imports" % benign
    rc, _, err = scan()
    assert rc == 2 and "usage" in err
    rc, _, err = scan("--bogus", benign)
    assert rc == 2


def test_not_a_pickle(tmp_path):
    cases = {
        "doc.json": (b'{"prompt": "hi"}', "not-an-opcode", 0),
        "empty.pkl": (b"", "truncated", 0),
        "text.txt": (b"hello world\n", "memo-missing", 0),
        "trunc.pkl": (pickle.dumps(list(range(100)), protocol=2)[:50], "truncated", None),
        "stop-only.pkl": (b".", "stack-underflow", 0),
        "zeros.bin": (b"\x00" * 1000, "not-an-opcode", 0),
    }
    paths = [write(tmp_path, n, d) for n, (d, _, _) in cases.items()]
    rc, reports = scan_json(*paths)
    assert rc == 0
    for (n, (_, why, off)), r in zip(cases.items(), reports):
        assert r["status"] == "not-pickle" and r["imports"] == [], r
        assert r["end"] == why, r
        if off is not None:
            assert r["end_offset"] == off
    rc, out, _ = scan(paths[0])
    assert out == "%s: not a pickle (not-an-opcode at offset 0)\n" % paths[0]


def test_stream_of_pickles_and_trailing_data(tmp_path):
    first = pickle.dumps([1, 2], protocol=2)
    data = first + pickle.dumps("x", protocol=0) + pickle.dumps(Evil(), protocol=4) + b"\xffjunk"
    p = write(tmp_path, "stream.pkl", data)
    rc, (r,) = scan_json(p)
    assert rc == 1 and r["status"] == "imports" and r["pickles"] == 3
    (imp,) = r["imports"]
    assert imp["pickle"] == 2 and imp["name"] == "system" and imp["offset"] > len(first)
    assert r["trailing"] == {"reason": "not-an-opcode", "offset": len(data) - 5}
    # A loading loop stops at the first pickle that raises: nothing after
    # the junk is reached, so an import there is not listed.
    p2 = write(tmp_path, "stop.pkl", first + b"\xff" + pickle.dumps(Evil()))
    rc, (r,) = scan_json(p2)
    assert rc == 0 and r["status"] == "clean" and r["trailing"]["reason"] == "not-an-opcode"


def test_stdin():
    rc, out, _ = scan("-", stdin=pickle.dumps(EvalMe(), protocol=5))
    assert rc == 1 and "import builtins.eval (STACK_GLOBAL" in out
    rc, out, _ = scan("-", stdin=b"")
    assert rc == 0 and out == "-: not a pickle (truncated at offset 0)\n"


def test_unknown_and_hostile_names(tmp_path):
    # STACK_GLOBAL operands computed through a PUT whose index is too long
    # to track: the scanner cannot name them, and says so.
    unk = (b"\x80\x04\x8c\x02osq\x00p" + b"0" * 200 + b"1\nh\x00\x8c\x06system\x93.")
    # A module name built to drive a terminal.
    hostile = b"c\x1b[31mos\\x\nsys\ttem\n."
    pu, ph = write(tmp_path, "unk.pkl", unk), write(tmp_path, "hostile.pkl", hostile)
    rc, out, _ = scan(pu, ph)
    assert rc == 1
    assert "%s: import unknown (STACK_GLOBAL at offset %d)" % (pu, len(unk) - 2) in out
    assert "%s: import \\x1b[31mos\\x5cx.sys\\x09tem (GLOBAL at offset 0)" % ph in out
    assert "\x1b" not in out
    rc, reports = scan_json(pu, ph)
    assert reports[0]["imports"][0]["module"] is None
    assert reports[1]["imports"][0]["module"] == "\x1b[31mos\\x"
    assert reports[1]["imports"][0]["name"] == "sys\ttem"


def test_ext_persid_and_straddle(tmp_path):
    cases = [b"\x80\x02\x82\x05.", b"Pstorage0\n.", b"\x95\x05\x00\x00\x00\x00\x00\x00\x00cos\nsystem\n."]
    paths = [write(tmp_path, "c%d.pkl" % i, d) for i, d in enumerate(cases)]
    rc, reports = scan_json(*paths)
    assert rc == 1
    assert reports[0]["imports"] == [{"opcode": "EXT1", "offset": 2, "pickle": 0, "module": None,
                                      "name": None, "ext_code": 5}]
    assert reports[1]["imports"][0]["opcode"] == "PERSID"
    assert reports[2]["imports"][0]["opcode"] == "FRAME-straddle"
    assert reports[2]["end"] == "FRAME-straddle"


def test_huge_file_bounded_memory(tmp_path):
    # 3 GiB of BINBYTES8 body (a sparse file: no disk used), then a GLOBAL.
    size = 3 << 30
    p = tmp_path / "huge.pkl"
    with open(p, "wb") as f:
        f.write(b"\x80\x04\x8e" + size.to_bytes(8, "little"))
        f.seek(11 + size)
        f.write(b"cos\nsystem\n.")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    rc, (r,) = scan_json(p)
    assert rc == 1
    assert r["imports"][0]["offset"] == 11 + size and r["imports"][0]["module"] == "os"
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kib > before:  # this child set a new peak: it must stay small
        assert peak_kib < 64 * 1024, peak_kib
