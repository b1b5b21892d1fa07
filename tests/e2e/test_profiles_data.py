"""The shipped pickle_globals profiles against real-shaped engine traffic.

No zmtpfw binary needed: the profiles come from tests/tools/pprof_dump
(built by CMake into $ZMTPFW_BUILD/tests, or compiled here from
src/pickle_profiles.c when that one is missing or older than the source).

* For every generator of engine_msgs.py, 1,000 messages: every global
  CPython's find_class is asked for when a worker loads the message (frame 0
  with the out-of-band frames as buffers, the legacy torch.save stream
  torch.storage._load_from_bytes unpickles, vLLM's cloudpickled method) is in
  the expanded profiles of PROFILE_OF plus EXTRA_GLOBALS.
* Real torch tensors / numpy arrays of every common dtype, protocols 3-5,
  import only @torch / @numpy globals, and every entry measured here is used.
* No profile entry is a gadget by the config checker's rules.
* Every entry naming a module present here resolves; engine entries are all
  exercised by the generators (no dead entries).
"""

import collections
import importlib
import io
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

for _mod in ("numpy", "torch", "cloudpickle"):  # Debian: python3-numpy, python3-torch, python3-cloudpickle
    pytest.importorskip(_mod)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine_msgs  # noqa: E402

pytestmark = [pytest.mark.nobinary, pytest.mark.timeout_s(300)]

REPO = Path(__file__).resolve().parents[2]
NMSG = 1000


# --- profiles ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def pprof_bin(tmp_path_factory):
    build = Path(os.environ.get("ZMTPFW_BUILD", REPO / "build"))
    p = build / "tests" / "pprof_dump"
    srcs = [REPO / "src" / "pickle_profiles.c", REPO / "tests" / "tools" / "pprof_dump.c",
            REPO / "include" / "zmtpfw" / "pickle_profiles.h"]
    if p.exists() and p.stat().st_mtime >= max(s.stat().st_mtime for s in srcs):
        return p
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip(f"{p} missing or stale and no C compiler to build it")
    out = tmp_path_factory.mktemp("pprof") / "pprof_dump"
    r = subprocess.run([cc, "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-I", str(REPO / "include"),
                        "-o", str(out), str(srcs[0]), str(srcs[1])],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.fail(f"building pprof_dump failed:\n{r.stderr}")
    return out


@pytest.fixture(scope="module")
def profiles(pprof_bin):
    """{profile: [(global, source), ...]} as declared (includes unexpanded)."""
    out = subprocess.run([str(pprof_bin)], capture_output=True, text=True, check=True, timeout=30).stdout
    prof = collections.OrderedDict()
    for line in out.splitlines():
        name, glob, source = line.split("\t")
        prof.setdefault(name, []).append((glob, source))
    return prof


def expand(profiles, name, seen=None):
    seen = set() if seen is None else seen
    if name in seen:
        return set()
    seen.add(name)
    out = set()
    for glob, _ in profiles[name]:
        if glob.startswith("@"):
            assert glob[1:] in profiles, f"@{name} includes unknown profile {glob}"
            out |= expand(profiles, glob[1:], seen)
        else:
            out.add(glob)
    return out


def test_profile_set(profiles, pprof_bin):
    assert list(profiles) == ["sglang", "sarathi-serve", "vllm", "numpy", "torch"]
    for name, entries in profiles.items():
        globs = [g for g, _ in entries]
        assert len(globs) == len(set(globs)), f"@{name} lists an entry twice"
        for g, src in entries:
            assert len(src) > 20, f"@{name} {g}: no real source"
    r = subprocess.run([str(pprof_bin), "@nosuch"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "\t" in subprocess.run([str(pprof_bin), "--summary"], capture_output=True, text=True,
                                  timeout=30).stdout


# --- gadget rules (the config checker's) ----------------------------------------------

GADGET_MODULES = {
    # code
    "code", "codeop", "runpy", "marshal", "types", "cProfile", "profile", "pdb", "bdb", "timeit",
    "trace", "doctest", "idlelib", "pydoc", "numpy.f2py", "numpy.testing", "cloudpickle",
    # any attribute / calls through wrappers
    "operator", "_operator", "pkgutil", "inspect", "importlib", "_imp", "zipimport", "functools",
    "_functools",
    # processes, files, network
    "os", "posix", "nt", "sys", "subprocess", "_posixsubprocess", "pty", "multiprocessing", "shutil",
    "tempfile", "io", "_io", "pathlib", "logging", "tarfile", "zipfile", "shelve", "sqlite3", "mmap",
    "ctypes", "socket", "ssl", "http", "urllib", "requests", "asyncio", "webbrowser",
    # nested deserialisation
    "pickle", "_pickle", "dill", "joblib", "torch.serialization", "torch.hub", "torch.jit",
    "torch.multiprocessing", "torch._C", "torch.package",
    # copyreg (_reconstructor) and Python 2 aliases
    "copyreg", "copy_reg", "__builtin__",
}
GADGET_PAIRS = {"torch:load", "torch:save", "torch._tensor:_rebuild_from_type_v2",
                "torch.storage:_load_from_bytes_unsafe"}
BUILTIN_DATA = {"set", "frozenset", "bytearray", "slice", "complex", "range", "list", "dict", "tuple",
                "int", "float", "str", "bytes", "bool"}
ENUM_SHAPE = {"builtins:getattr", "_operator:or_"}
ENUM_SHAPE_PROFILES = {"sglang", "sarathi-serve", "vllm"}
PY2_ALIASES = {"copy_reg", "__builtin__", "commands", "cPickle", "cStringIO", "UserDict", "urllib2",
               "Queue", "SocketServer", "exceptions", "string"}


def gadget_reason(glob, profile):
    if glob in ENUM_SHAPE:
        return None if profile in ENUM_SHAPE_PROFILES else f"{glob} outside the engine profiles"
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_][A-Za-z0-9_]*)", glob)
    if not m:
        return "not module:qualname with an undotted identifier name"
    mod, name = m.groups()
    parts = mod.split(".") + [name]
    if any("__" in p for p in parts) or "<locals>" in glob:
        return "a __ part"
    for i in range(1, len(mod.split(".")) + 1):
        prefix = ".".join(mod.split(".")[:i])
        if prefix in GADGET_MODULES or prefix in PY2_ALIASES:
            return f"gadget module {prefix}"
    if mod == "builtins" and name not in BUILTIN_DATA:
        return "builtins other than a data type"
    if glob in GADGET_PAIRS:
        return "gadget"
    if mod.startswith("torch._") and mod not in ("torch._utils",):
        return "torch internals"
    if mod == "torch" and name in {"load", "save", "compile", "jit", "hub", "ops", "classes"}:
        return "torch entry point"
    return None


def test_no_gadget_in_profiles(profiles):
    bad = [(name, g, gadget_reason(g, name)) for name, entries in profiles.items()
           for g, _ in entries if not g.startswith("@") and gadget_reason(g, name)]
    assert not bad, bad


@pytest.mark.parametrize("glob", ["os:system", "os.path:join", "builtins:eval", "builtins:getattr",
                                  "_operator:attrgetter", "functools:partial", "copyreg:_reconstructor",
                                  "copy_reg:_reconstructor", "__builtin__:object", "builtins:object",
                                  "torch._tensor:_rebuild_from_type_v2", "torch._C:_x", "torch:load",
                                  "pickle:loads", "numpy.testing:x", "a.b:C.__init__", "a:__class__",
                                  "cloudpickle.cloudpickle:_make_function", "torch.serialization:load"])
def test_gadget_rules_catch(glob):
    assert gadget_reason(glob, "numpy") is not None


# --- the engines' traffic ----------------------------------------------------------------

def _check_generator(profiles, gen):
    allowed = set(engine_msgs.EXTRA_GLOBALS[gen])
    for p in engine_msgs.PROFILE_OF[gen]:
        allowed |= expand(profiles, p)
    seen = collections.Counter()
    missing = collections.Counter()
    example = {}
    for i, frames in enumerate(engine_msgs.GENERATORS[gen](NMSG, 20261204)):
        assert all(isinstance(f, bytes) for f in frames)
        for glob, where in engine_msgs.imports_of(frames):
            seen[glob] += 1
            if glob not in allowed:
                missing[(glob, where)] += 1
                example.setdefault((glob, where), i)
    assert not missing, f"{gen}: imports outside {engine_msgs.PROFILE_OF[gen]}: " + ", ".join(
        f"{g} ({w}, {n} times, first in message {example[(g, w)]})" for (g, w), n in missing.items())
    return seen


_SEEN = {}


@pytest.mark.parametrize("gen", list(engine_msgs.GENERATORS))
def test_engine_traffic_within_profile(profiles, gen):
    _SEEN[gen] = _check_generator(profiles, gen)
    assert sum(_SEEN[gen].values()) > 0


def test_engine_entries_all_exercised(profiles):
    """Every class an engine profile lists turns up in its generator's
    traffic: the lists carry no dead names (and no typos)."""
    for gen in engine_msgs.GENERATORS:
        if gen not in _SEEN:
            _SEEN[gen] = _check_generator(profiles, gen)
    used = set()
    for c in _SEEN.values():
        used |= set(c)
    for name in ("sglang", "sarathi-serve", "vllm"):
        dead = [g for g, _ in profiles[name] if not g.startswith("@") and g not in used]
        assert not dead, f"@{name} entries no generated message imports: {dead}"


def test_nested_streams_are_checked():
    """The recorder really sees the nested loads (else the traffic test
    would pass vacuously for them)."""
    import torch
    where = collections.defaultdict(set)
    for g, w in engine_msgs.imports_of([pickle.dumps(torch.zeros(2, dtype=torch.float16), protocol=5)]):
        where[w].add(g)
    assert "torch:HalfStorage" in where["nested"]
    assert "torch.storage:_load_from_bytes" in where["top"]
    import cloudpickle
    import rlhf_utils
    obj = (cloudpickle.dumps(rlhf_utils.report_weight_checksum, protocol=5), (), {}, None)
    assert ("rlhf_utils:report_weight_checksum", "nested") in engine_msgs.imports_of([pickle.dumps(obj, protocol=5)])


# --- torch and numpy, measured ---------------------------------------------------------------

def _torch_numpy_samples():
    import numpy as np
    import torch
    tdt = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8,
           torch.int16, torch.int32, torch.int64, torch.bool, torch.complex64, torch.complex128]
    ndt = ["f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "?", "c8", "c16",
           "M8[ns]", "m8[s]", "U5", "S5", "V4", [("a", "i4"), ("b", "f8")]]
    for p in (3, 4, 5):
        for dt in tdt:
            t = torch.arange(12).reshape(3, 4).to(dt)
            yield "torch", p, [t, t[:, 1:], t.storage(), dt, torch.Size([3, 4]), torch.device("cpu"),
                               {"w": t, "shape": t.shape, "dtype": t.dtype}]
        for dt in ndt:
            a = np.zeros((3, 4), dtype=dt)
            yield "numpy", p, [a, np.asfortranarray(a), a[:, ::2], a[0, 0], np.dtype(dt), np.zeros(0, dtype=dt)]
        yield "numpy", p, [np.float32(1.5), np.int64(7), np.bool_(True)]


def test_torch_numpy_within_profiles(profiles):
    allowed = {"torch": expand(profiles, "torch"), "numpy": expand(profiles, "numpy")}
    used = collections.defaultdict(set)
    for prof, proto, objs in _torch_numpy_samples():
        for obj in objs:
            bufs = []
            b = pickle.dumps(obj, protocol=proto, buffer_callback=bufs.append if proto == 5 else None)
            frames = [b] + [bytes(x.raw()) for x in bufs]
            for g, w in engine_msgs.imports_of(frames):
                assert g in allowed[prof], f"{prof} p{proto} {type(obj).__name__}: {g} ({w})"
                used[prof].add(g)
    # Every entry measured here (the sources say so) is used by a sample.
    for prof in ("torch", "numpy"):
        measured = {g for g, s in profiles[prof] if "measured" in s}
        assert measured <= used[prof], f"@{prof} measured entries never seen: {measured - used[prof]}"


def test_entries_resolve(profiles):
    """Every entry whose module exists here names a real attribute; entries
    of newer releases (numpy >= 2, torch >= 2.x) are the only ones allowed
    not to import here."""
    engine_msgs.add_engines_path()
    for name, entries in profiles.items():
        for g, src in entries:
            if g.startswith("@"):
                continue
            mod, qual = g.split(":")
            try:
                m = importlib.import_module(mod)
            except ImportError:
                assert re.search(r">= ?2", src), f"@{name} {g}: module missing here and not marked as newer"
                continue
            if not hasattr(m, qual):
                assert re.search(r">= ?2", src), f"@{name} {g}: no such attribute"


# --- the helpers the end-to-end tests rely on ------------------------------------------------

def test_generators_deterministic():
    """Same (n, seed), same messages: same imports, and the same frame sizes
    where no tensor travels. Not the same bytes, nor always the same size,
    with a tensor: torch 1.13's legacy torch.save (inside _load_from_bytes)
    names each storage by str(storage._cdata), a pointer, whose decimal
    length varies from run to run."""
    def shape(msgs):
        out = []
        for fr in msgs:
            imports = engine_msgs.imports_of(fr)
            tensor = any(g == "torch.storage:_load_from_bytes" for g, _ in imports)
            out.append((None if tensor else [len(f) for f in fr], imports))
        return out
    for name, gen in engine_msgs.GENERATORS.items():
        a = list(gen(60, 99))
        assert shape(a) == shape(gen(60, 99)), f"{name} is not a function of (n, seed)"
        assert list(gen(60, 98)) != a
        if name in ("sarathi", "vllm_shm"):  # no tensor there but rare prompt_embeds
            b = list(gen(60, 99))
            assert sum(x == y for x, y in zip(a, b)) >= 55


def test_worker_process_loads_every_generator(tmp_path):
    """A separate Python process given worker_env() unpickles every message
    (frame 0 with the out-of-band frames as buffers) and the nested streams,
    as a worker would: the fake engines resolve there too."""
    data = tmp_path / "msgs.pkl"
    msgs = [(name, frames) for name, gen in engine_msgs.GENERATORS.items() for frames in gen(50, 5)]
    data.write_bytes(pickle.dumps(msgs, protocol=5))
    code = (
        "import pickle, sys\n"
        "n = 0\n"
        "for name, frames in pickle.load(open(sys.argv[1], 'rb')):\n"
        "    obj = pickle.loads(frames[0], buffers=frames[1:])\n"
        "    if isinstance(obj, tuple) and len(obj) == 4 and isinstance(obj[0], bytes):\n"
        "        pickle.loads(obj[0])\n"
        "    n += 1\n"
        "print(n)\n")
    # The driver itself unpickles only (name, [bytes]) pairs; the worker env
    # must be what makes the inner loads resolve.
    r = subprocess.run(["/usr/bin/python3", "-c", code, str(data)], env=engine_msgs.worker_env(),
                       capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout) == len(msgs)
    bare = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(["/usr/bin/python3", "-c", code, str(data)], env=bare,
                       capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr
