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

Outcomes: find_class, persistent_load, ext (unregistered extension code),
ok, or the exception type name.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PY = "/usr/bin/python3"

ORACLE_SRC = r"""
import io, pickle, resource, sys, _pickle
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

def outcome(load):
    try:
        load()
        return "ok"
    except Hit as e:
        return str(e)
    except ValueError as e:
        if str(e).startswith("unregistered extension code"):
            return "ext"
        return "ValueError"
    except BaseException as e:
        return type(e).__name__

def hx(s):
    return s.encode("utf-8", "surrogatepass").hex() or "''"

out = []
for line in sys.stdin:
    data = bytes.fromhex(line.strip())
    del seen[:]
    a = outcome(lambda: Oracle(Src(data)).load())
    names = "%s %s" % (hx(seen[0][0]), hx(seen[0][1])) if seen else "- -"
    b = outcome(lambda: pickle.loads(data))
    f = outcome(lambda: Oracle(io.BytesIO(data)).load())
    g = outcome(lambda: pickle.load(io.BytesIO(data)))
    danger = a in ("find_class", "persistent_load", "ext") or b == "find_class"
    out.append("%d %s %s %s %s %s" % (danger, a, b, f, g, names))
sys.stdout.write("\n".join(out) + ("\n" if out else ""))
"""

DANGER = ("find_class", "persistent_load", "ext")


class Verdict:
    """One oracle line, parsed."""
    __slots__ = ("danger", "a", "b", "f", "g", "module", "name")

    def __init__(self, line):
        p = line.split()
        self.danger = p[0] == "1"
        self.a, self.b, self.f, self.g = p[1:5]
        self.module = None if p[5] == "-" else bytes.fromhex("" if p[5] == "''" else p[5])
        self.name = None if p[6] == "-" else bytes.fromhex("" if p[6] == "''" else p[6])

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
    if i < 0 or line.endswith("first=-"):
        return None
    op_off, mod, name = line[i + 7:].split("/")
    op, off = op_off.rsplit("@", 1)
    un = lambda h: None if h == "?" else bytes.fromhex(h)
    return op, int(off), un(mod), un(name)


def load_regressions(path=os.path.join(HERE, "regressions.txt")):
    """Permanent regression vectors: one hex case per line, '#' comments."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                out.append(bytes.fromhex(line) if line != "''" else b"")
    return out
