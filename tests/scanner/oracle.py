"""CPython as the oracle, and the C scanner through tests/tools/pscan_driver.

Oracle: CPython's C Unpickler (the one pickle.loads uses) in a child process
with a 1 GiB address-space cap (mutated lengths and memo indexes make CPython
allocate up front; the cap turns that into a quick MemoryError, a raise).
Nothing is ever imported or called: find_class and persistent_load raise a
sentinel, and EXT reaches the (empty) extension registry, which raises
ValueError "unregistered extension code".

Per case it reports, space-separated:
  danger  1 when the default policy calls the case dangerous: loads() through
          the Unpickler subclass reaches find_class, persistent_load or the
          extension registry (or plain loads() reaches find_class)
  a       outcome of Oracle(Src(data)).load(): the loads() code path (Src.peek
          hands over the whole input, so the C unpickler buffers it all as
          loads() does) with find_class/persistent_load overridden
  b       outcome of plain pickle.loads(data) with an audit hook that aborts
          at "pickle.find_class": the stock worker
  f       outcome of Oracle(io.BytesIO(data)).load(): the file path
          (pickle.load of a .pkl), where a read straddling a FRAME end
          differs from loads()
  g       outcome of plain pickle.load(io.BytesIO(data)) with the audit hook
  module, name  hex of what find_class received first (path a), or "-"
  c       outcome of the "as if every import succeeded" path (below), or
          "same" when it was skipped because it would run path a's program
  k       how many times find_class was called on that path
  pairs   every (module, name) find_class received on it, in order,
          comma-separated "MODULEHEX/NAMEHEX" ('' for an empty string), or
          "-" when none

Outcomes: find_class, persistent_load, ext (unregistered extension code),
ok, or the exception type name.

The "as if every import succeeded" path (c) is what the scanner's collect
mode models: Collect(Src(data), encoding="latin1", buffers=<stand-ins>)
.load(), where find_class records the pair and returns a stand-in, and
persistent_load returns one too. The stand-in, `Any`, is a class whose
metaclass takes every call and returns `Any` again: REDUCE, NEWOBJ,
NEWOBJ_EX (it is a type with a __new__ taking anything), OBJ, INST, BUILD
(__setstate__), APPEND/APPENDS (append, extend), SETITEM(S) (__setitem__),
ADDITEMS (add) and attribute setting on it and on its results succeed.
Nothing real is imported or called. The extension registry is given an
entry for every code that follows an EXT1/2/4 byte of the case, as
(EXT_MODULE, "<code>") (the loads() of a worker that registered codes),
so EXT reaches find_class too; it is emptied again after the case.
Where the stand-in makes CPython raise and a real object might not (it is
never a str for STACK_GLOBAL, never a buffer, never a dict for BUILD's
default path...), CPython stops early and asks for fewer pairs: the check
is that the pairs asked are a sub-multiset of what the scanner reports.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PY = "/usr/bin/python3"

ORACLE_SRC = r"""
import io, os, pickle, resource, sys, _pickle
assert pickle.Unpickler is _pickle.Unpickler
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

class Hit(Exception):
    pass

class Src:
    def __init__(self, data):
        self.data, self.pos = data, 0
    def peek(self, n=0):
        return self.data[self.pos:]
    def read(self, n):
        r = self.data[self.pos:self.pos + n]
        self.pos += len(r)
        return r
    def readinto(self, b):
        r = self.read(len(b))
        b[:len(r)] = r
        return len(r)
    def readline(self):
        i = self.data.find(b"\n", self.pos)
        end = len(self.data) if i < 0 else i + 1
        r = self.data[self.pos:end]
        self.pos = end
        return r

seen = []
asked = []

class AnyMeta(type):
    def __call__(cls, *a, **k):
        return Any
    def __setitem__(cls, k, v):
        pass
    def __getitem__(cls, k):
        return Any
    def __delitem__(cls, k):
        pass

class Any(metaclass=AnyMeta):
    def __new__(*a, **k):
        return Any
    def __init__(*a, **k):
        pass
    def __call__(*a, **k):
        return Any
    def __setstate__(*a, **k):
        pass
    def __reduce__(*a, **k):
        return (Any, ())
    def __getinitargs__(*a, **k):
        return ()
    def append(*a, **k):
        pass
    def extend(*a, **k):
        pass
    def add(*a, **k):
        pass

class Collect(pickle.Unpickler):
    def find_class(self, module, name):
        asked.append((module, name))
        return Any
    def persistent_load(self, pid):
        return Any

import copyreg, itertools
EXT_MODULE = "zmtpfw.ext-registry"
inverted = copyreg._inverted_registry

def ext_codes(data):
    # The codes EXT1/2/4 could read anywhere in data (a superset).
    out = {}
    for op, n, signed in ((0x82, 1, False), (0x83, 2, False), (0x84, 4, True)):
        b = bytes([op])
        i = data.find(b)
        while i >= 0:
            c = int.from_bytes(data[i + 1:i + 1 + n], "little", signed=signed)
            if c > 0:
                out[c] = (EXT_MODULE, str(c))
            i = data.find(b, i + 1)
    return out

def collect(data):
    codes = ext_codes(data)
    inverted.update(codes)
    copyreg._extension_cache.clear()
    try:
        return outcome(lambda: Collect(Src(data), encoding="latin1",
                                       buffers=itertools.repeat(Any)).load())
    finally:
        inverted.clear()
        copyreg._extension_cache.clear()

class Oracle(pickle.Unpickler):
    def find_class(self, module, name):
        seen.append((module, name))
        raise Hit("find_class")
    def persistent_load(self, pid):
        raise Hit("persistent_load")

def audit(event, args):
    if event == "pickle.find_class":
        raise Hit("find_class")

sys.addaudithook(audit)

last = [None]

def outcome(load):
    last[0] = None
    try:
        load()
        return "ok"
    except Hit as e:
        return str(e)
    except ValueError as e:
        last[0] = e
        if str(e).startswith("unregistered extension code"):
            return "ext"
        return "ValueError"
    except BaseException as e:
        last[0] = e
        return type(e).__name__

# Path c runs exactly path a's program up to the first opcode where they
# part: an import (find_class, persistent_load, EXT), NEXT_BUFFER (no
# buffers= on path a) or a STRING/BINSTRING that is not ASCII (latin1 on
# path c). When path a ended in none of these, path c asks for nothing:
# it is skipped (FULL=1 in the environment runs it anyway).
FULL = os.environ.get("PSCAN_ORACLE_FULL") == "1"

def parts_ways(a):
    e = last[0]
    return (FULL or a in ("find_class", "persistent_load", "ext")
            or isinstance(e, UnicodeDecodeError)
            or (isinstance(e, pickle.UnpicklingError) and "buffers" in str(e)))

def hx(s):
    return s.encode("utf-8", "surrogatepass").hex() or "''"

out = []
for line in sys.stdin:
    data = bytes.fromhex(line.strip())
    del seen[:]
    a = outcome(lambda: Oracle(Src(data)).load())
    run_c = parts_ways(a)
    names = "%s %s" % (hx(seen[0][0]), hx(seen[0][1])) if seen else "- -"
    b = outcome(lambda: pickle.loads(data))
    f = outcome(lambda: Oracle(io.BytesIO(data)).load())
    g = outcome(lambda: pickle.load(io.BytesIO(data)))
    danger = a in ("find_class", "persistent_load", "ext") or b == "find_class"
    del asked[:]
    c = collect(data) if run_c else "same"
    pairs = ",".join("%s/%s" % (hx(m), hx(n)) for m, n in asked) or "-"
    out.append("%d %s %s %s %s %s %s %d %s" % (danger, a, b, f, g, names, c, len(asked), pairs))
sys.stdout.write("\n".join(out) + ("\n" if out else ""))
"""

DANGER = ("find_class", "persistent_load", "ext")
EXT_MODULE = b"zmtpfw.ext-registry"  # find_class module of a registered EXT code


def unhex(h):
    return b"" if h == "''" else bytes.fromhex(h)


class Verdict:
    """One oracle line, parsed."""
    __slots__ = ("danger", "a", "b", "f", "g", "module", "name", "c", "asked")

    def __init__(self, line):
        p = line.split()
        self.danger = p[0] == "1"
        self.a, self.b, self.f, self.g = p[1:5]
        self.module = None if p[5] == "-" else bytes.fromhex("" if p[5] == "''" else p[5])
        self.name = None if p[6] == "-" else bytes.fromhex("" if p[6] == "''" else p[6])
        # Path c: every (module, name) find_class was asked for, in order.
        self.c = p[7]
        self.asked = [] if p[9] == "-" else [
            tuple(unhex(x) for x in pr.split("/")) for pr in p[9].split(",")]
        assert len(self.asked) == int(p[8])

    def dangerous(self, stock=False):
        """Must the scanner flag it? Default policy: loads() or load(file)
        could reach find_class, persistent_load or the extension registry.
        Stock (PSCAN_STOCK): plain loads()/load() reach find_class."""
        if stock:
            return self.b == "find_class" or self.g == "find_class"
        return self.danger or self.f in DANGER


def driver_path():
    p = os.environ.get("PSCAN_DRIVER")
    if p:
        return p
    build = os.environ.get("ZMTPFW_BUILD", os.path.join(REPO, "build"))
    return os.path.join(build, "tests", "pscan_driver")


def _chunks(cases, parts):
    k = (len(cases) + parts - 1) // max(1, parts)
    return [cases[i:i + k] for i in range(0, len(cases), k)] or [[]]


def _run_parallel(argv, cases, procs, timeout):
    """Feed hex lines to `procs` copies of argv; return all output lines."""
    chunks = _chunks(cases, procs)
    running = []
    for ch in chunks:
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        running.append((p, "".join(c.hex() + "\n" for c in ch)))
    import threading
    results = [None] * len(running)

    def talk(i, p, data):
        results[i] = p.communicate(data.encode(), timeout=timeout)

    threads = [threading.Thread(target=talk, args=(i, p, d)) for i, (p, d) in enumerate(running)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = []
    for (p, _), (out, err) in zip(running, results):
        if p.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (argv[0], p.returncode, err.decode()[-2000:]))
        lines += out.decode().splitlines()
    if len(lines) != len(cases):
        raise RuntimeError("%s: %d lines for %d cases" % (argv[0], len(lines), len(cases)))
    return lines


def run_oracle(cases, procs=1, timeout=3600):
    return [Verdict(l) for l in _run_parallel([PY, "-c", ORACLE_SRC], cases, procs, timeout)]


def run_scanner(cases, *args, procs=1, timeout=3600):
    """Driver output lines: 'PICKLE|CLEAN reason offset [imports=N first=...]'
    or 'MISMATCH what' when --check found a broken invariant."""
    return _run_parallel([driver_path(), "--hexlines"] + [str(a) for a in args], cases,
                         procs, timeout)


def parse_first(line):
    """(opcode, offset, module bytes|None, name bytes|None) of the first
    import in a --collect line, or None."""
    i = line.find(" first=")
    if i < 0:
        return None
    j = line.find(" ", i + 1)
    first = line[i + 7:] if j < 0 else line[i + 7:j]
    if first == "-":
        return None
    op_off, mod, name = first.split("/")
    op, off = op_off.rsplit("@", 1)
    un = lambda h: None if h == "?" else bytes.fromhex(h)
    return op, int(off), un(mod), un(name)


class Imp:
    """One import of the scanner's collect mode (pscan_driver --all)."""
    __slots__ = ("op", "off", "module", "name", "truncated", "ext_code")

    def __init__(self, text):
        head, mod, name = text.split("/")
        op, off = head.rsplit("@", 1)
        self.off = int(off)
        self.ext_code = None
        if ":" in op:
            op, code = op.split(":")
            self.ext_code = int(code)
        self.truncated = op.endswith("~")
        self.op = op.rstrip("~")
        self.module = None if mod == "-" else unhex(mod)
        self.name = None if name == "-" else unhex(name)

    def unknown(self):
        return self.module is None or self.name is None

    def __repr__(self):
        return "%s@%d:%r.%r%s" % (self.op, self.off, self.module, self.name,
                                  "~" if self.truncated else "")


def parse_all(line):
    """(outer count, [Imp]) from a --collect --all line, or None."""
    i = line.find(" outer=")
    if i < 0:
        return None
    j = line.index(" all=", i)
    n = int(line[i + 7:j])
    body = line[j + 5:]
    imps = [Imp(t) for t in body.split(",")] if body else []
    return n, imps


def load_regressions(path=os.path.join(HERE, "regressions.txt")):
    """Permanent regression vectors: one hex case per line, '#' comments."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                out.append(bytes.fromhex(line) if line != "''" else b"")
    return out
