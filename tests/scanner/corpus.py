"""Pickle corpus for differential testing of the C scanner against CPython.

Every generator is deterministic given its random.Random. Kinds of cases:
  - real pickles written by CPython (pickle.dumps at protocols 0-5) of data
    objects (nested containers, bytes, floats, big ints, sets, recursive
    structures) and of objects needing globals (__reduce__, dataclasses and
    enums shaped like inference engines' request structs, stdlib types);
  - hand-written opcode streams (HAND): lenient text arguments, PROTO/FRAME
    anywhere, memo tricks, computed STACK_GLOBAL operands, EXT, marks;
  - random programs of well-formed opcodes (gen_program), including ones that
    overflow the scanner's bounded state;
  - text-argument parse differentials (gen_text_arg);
  - mutations of all of these (mutate, mutate_structured): byte flips,
    opcode insertions and deletions, PROTO and FRAME inserted anywhere,
    lenient rewrites of text arguments, STOP removed, trailing garbage,
    truncation, memo rewrites, STACK_GLOBAL operands computed via memo/DUP;
  - truncations of real pickles at every length (truncations()).

Only pickling happens here; nothing is ever unpickled in this process.
"""
import collections
import dataclasses
import datetime
import decimal
import enum
import os
import pickle
import random
import struct
import typing

class Evil:
    """Pickles to a call of os.system; only ever pickled, never loaded."""
    def __reduce__(self):
        return (os.system, ("id",))


class EvilEval:
    def __reduce__(self):
        return (eval, ("1+1",))


class Plain:
    def __init__(self):
        self.a = 1
        self.b = [1, 2]


def data_objects():
    """Objects whose pickles contain no global at any protocol."""
    rec = []
    rec.append(rec)
    shared = [1, "s"]
    d = {"k": 1}
    d["self"] = d
    objs = [
        None, True, False, 0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1,
        -2**31, 2**31, 2**63, -2**100, 2**1000, 3.14, -0.0, 1e300,
        float("inf"), "", "abc", "é中😀", "x" * 300, "\n\\'\"", b"", b"abc",
        b"\x00" * 300, (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [], [1],
        [1, "a", b"b", None, 2.5], {}, {"a": 1}, {"a": 1, "b": [1, 2]},
        {1: "x", (1, 2): b"y"}, set(), {1, 2, 3}, frozenset(), frozenset({1, 2}),
        [[[[[[[[1]]]]]]]], {"a": {"b": {"c": {"d": [1, {"e": ()}]}}}},
        rec, [shared, shared, shared], d, list(range(300)),
        ["s%d" % i for i in range(2500)],  # memo indexes past 2048
        [(i, str(i)) for i in range(100)], tuple(range(70)),
        {"ids": list(range(50)), "text": "hello " * 40, "f": [0.5] * 10},
    ]
    return objs


def global_objects():
    """Objects whose pickles reach find_class at every protocol."""
    return [
        Evil(), EvilEval(), Plain(), [1, Evil()], {"x": EvilEval()},
        complex(1, 2), datetime.datetime(2024, 1, 2, 3, 4, 5),
        decimal.Decimal("1.5"), collections.OrderedDict(a=1), range(5),
        slice(1, 2), Ellipsis, bytearray(b"xy"), os.system, len,
        collections.Counter("abc"), [Plain(), Plain()],
    ]


def real_pickles():
    out = []
    for proto in range(6):
        for o in data_objects() + global_objects():
            out.append(pickle.dumps(o, protocol=proto))
    out.append(pickle.dumps(pickle.PickleBuffer(b"ab"), protocol=5))
    out.append(pickle.dumps(pickle.PickleBuffer(bytearray(b"ab")), protocol=5))
    # Out-of-band buffers: NEXT_BUFFER opcodes, loads() without buffers raises.
    out.append(pickle.dumps([pickle.PickleBuffer(b"ab")], protocol=5,
                            buffer_callback=lambda b: False))
    return out


def su(s):
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


HAND = [
    # protocol 0 text
    b"cos\nsystem\n(S'id'\ntR.",
    b"cos\nsystem\n",
    b"c__builtin__\neval\n(Vprint(1)\ntR.",
    b"(ios\nsystem\nS'id'\n.",
    b"(S'id'\nios\nsystem\n.",
    b"ios\nsystem\n.",               # INST without MARK: raises
    b"c\nsystem\n.",                 # empty module: raises
    b"cos\n\n.",                     # empty name: raises
    b"c\xff\nx\n.", b"cos\n\xc3\x28\n.", b"c\xe9\xa0\x80\nx\n.",
    b"c\xed\xa0\x80\nx\n.",         # surrogate: strict utf-8 rejects
    b"c\xf0\x9f\x98\x80\nx\n.",
    b"(i\xc3\xa9\nx\n.", b"Pabc\n.", b"P\n.", b"P\x80\n.", b"NQ.", b"Q.",
    # lenient INT/LONG then GLOBAL
    b"I0x1\ncos\nsystem\n.", b"I 1\ncos\nsystem\n.", b"I1_0\ncos\nsystem\n.",
    b"L12\ncos\nsystem\n.", b"I010\ncos\nsystem\n.", b"I0b101\ncos\nsystem\n.",
    b"I+5\ncos\nsystem\n.", b"I-0x_f\ncos\nsystem\n.", b"I\x00junk\ncos\nsystem\n.",
    b"I\x00\ncos\nsystem\n.", b"I08\ncos\nsystem\n.", b"I0_1\ncos\nsystem\n.",
    b"I1__0\ncos\nsystem\n.", b"I1_\ncos\nsystem\n.", b"I_1\ncos\nsystem\n.",
    b"I 0x\ncos\nsystem\n.", b"I1 \ncos\nsystem\n.", b"I\ncos\nsystem\n.",
    b"I99999999999999999999999\ncos\nsystem\n.", b"I0777777777777777777777777\ncos\nsystem\n.",
    b"L12L\ncos\nsystem\n.", b"LL\ncos\nsystem\n.", b"L012\ncos\nsystem\n.",
    b"L0o17\ncos\nsystem\n.", b"L 0x1_0 \ncos\nsystem\n.", b"L1.5\ncos\nsystem\n.",
    b"F1.5\ncos\nsystem\n.", b"F 1.5\ncos\nsystem\n.", b"F1.5 \ncos\nsystem\n.",
    b"Finfinity\ncos\nsystem\n.", b"F-nan\ncos\nsystem\n.", b"F1e\ncos\nsystem\n.",
    b"F.5e-3\ncos\nsystem\n.", b"F1e999\ncos\nsystem\n.", b"F\ncos\nsystem\n.",
    b"S'a'\ncos\nsystem\n.", b"S'a\ncos\nsystem\n.", b"S'\ncos\nsystem\n.",
    b"S\"x\"\ncos\nsystem\n.", b"Vabc\ncos\nsystem\n.", b"V\\u12\ncos\nsystem\n.",
    # PUT/GET text forms
    b"Np1_0\n0g10\ncos\nsystem\n.", b"Np+1\n0g1\ncos\nsystem\n.",
    b"Np1\n0g2\ncos\nsystem\n.", b"Np0x1\ncos\nsystem\n.", b"Np-1\ncos\nsystem\n.",
    b"Ng0x0\ncos\nsystem\n.", b"Np 1 \ng1\ncos\nsystem\n.", b"p1\ncos\nsystem\n.",
    b"g0\ncos\nsystem\n.", b"Np0\ng-0\ncos\nsystem\n.",
    # STACK_GLOBAL
    b"\x80\x04" + su("os") + su("system") + b"\x93.",
    b"\x80\x05\x95\x10\x00\x00\x00\x00\x00\x00\x00" + su("os") + su("system") + b"\x93.",
    b"\x80\x04X\x02\x00\x00\x00osX\x06\x00\x00\x00system\x93.",
    b"\x80\x04\x8d\x02\x00\x00\x00\x00\x00\x00\x00os" + su("system") + b"\x93.",
    b"\x80\x04S'os'\nS'system'\n\x93.", b"\x80\x04U\x02osU\x06system\x93.",
    b"Vos\nVsystem\n\x93.", b"\x93.", su("os") + b"\x93.",
    su("os") + b"C\x06system\x93.", b"C\x02os" + su("system") + b"\x93.",
    su("os") + b"K\x01\x93.", su("os") + b"N\x93.", su("os") + b"]\x93.",
    su("os") + b"\x94K\x01h\x00\x93.",       # MEMOIZE then GET str: flagged
    b"K\x01\x94" + su("os") + b"h\x00\x93.",   # GET an int: raises
    su("os") + b"q\x05" + su("x") + b"h\x05\x93.",
    su("os") + b"p5\n" + su("x") + b"g5\n\x93.",
    b"K\x01p0\n0" + su("os") + b"\x94h\x00\x93.",   # PUT 0 then MEMOIZE -> idx 1
    b"K\x01p0\n0" + su("os") + b"\x94h\x01\x93.",
    su("os") + b"2\x93.", su("os") + b"(\x93.", su("os") + b"(" + su("x") + b"\x93.",
    su("os") + su("x") + b"\x98\x93.", b"C\x01a\x98" + su("x") + b"\x93.",
    su("os") + su("system") + b"\x85\x93.",
    b"N\x97" + su("x") + b"\x93.",   # NEXT_BUFFER: raises without buffers
    # FRAME / PROTO anywhere
    b"\x95\x05\x00\x00\x00\x00\x00\x00\x00cos\nsystem\n.",
    b"cos\n\x95\x02\x00\x00\x00\x00\x00\x00\x00system\n.",
    b"N\x95\x00\x00\x00\x00\x00\x00\x00\x01" + su("os") + su("system") + b"\x93.",
    b"\x95\xff\xff\xff\xff\xff\xff\xff\xffcos\nsystem\n.",
    b"\x80\x02\x80\x05\x80\x00cos\nsystem\n.", b"\x80\x06cos\nsystem\n.",
    # reads straddling a frame end: loads() and pickle.load(file) differ
    b"\x80\x03\x95\x03\x00\x00\x00\x00\x00\x00\x00P\x80id\n.",
    b"\x95\x03\x00\x00\x00\x00\x00\x00\x00U\x02os1Pid\n.",
    b"\x95\x05\x00\x00\x00\x00\x00\x00\x00cos\n\xffsystem\n.",
    b"\x80\x02N\x80\x04cos\nsystem\n.",
    # STOP, missing STOP, trailing garbage
    b"N.cos\nsystem\n.", b"Ncos\nsystem\n", b"cos\nsystem\n.garbage\xff\xfe",
    b"\x80\x04N" + su("os") + su("system") + b"\x93",
    # EXT
    b"\x82\x01.", b"\x82\x00.", b"\x83\x01\x00.", b"\x83\x00\x00.",
    b"\x84\x01\x00\x00\x00.", b"\x84\x00\x00\x00\x00.", b"\x84\xff\xff\xff\xff.",
    b"\x84\x00\x00\x00\x80.", b"N\x82\xff.",
    # calls without a callable, marks, underflow
    b"NN)R.", b"(NNo.", b"NN\x81.", b"NNN\x92.", b"R.", b"(o.", b"o.",
    b"(N0N.", b"(0N.", b"0.", b"1.", b"2.", b"(1cos\nsystem\n.",
    b"(I1\nK\x02ecos\nsystem\n.", b"]I1\necos\nsystem\n.",
    b"](K\x01ecos\nsystem\n.", b"}(K\x01K\x02ucos\nsystem\n.",
    b"}(K\x01ucos\nsystem\n.", b"(K\x01K\x02K\x03dcos\nsystem\n.",
    b"\x8f(K\x01\x90cos\nsystem\n.", b"(\x90cos\nsystem\n.",
    b"NNscos\nsystem\n.", b"NNNscos\nsystem\n.", b"(NNscos\nsystem\n.",
    b"Nacos\nsystem\n.", b"(Nacos\nsystem\n.", b"NNbcos\nsystem\n.", b"(NNbcos\nsystem\n.",
    b"(" * 100 + b"N" + b"t" * 100 + b"cos\nsystem\n.",
    b"(" * 100 + b"N" + b"t" * 101 + b"cos\nsystem\n.",
    # counted lengths
    b"\x8e\x00\x00\x00\x00\x00\x00\x00\x01cos\nsystem\n.",
    b"\x8b\xff\xff\xff\xffcos\nsystem\n.", b"\x8b\x01\x00\x00\x00\x05cos\nsystem\n.",
    b"\x8a\x00cos\nsystem\n.", b"B\x03\x00\x00\x00abccos\nsystem\n.",
    b"T\x01\x00\x00\x00\xffcos\nsystem\n.",
]


OPS_INTERESTING = (b"(.0123FGIJKLMNPQRSTUVXabcdeghijlopqrstu})]"
                   + bytes(range(0x80, 0x99)))


def ins_snippets():
    return [
        b"cos\nsystem\n", su("os") + su("system") + b"\x93", b"\x93",
        b"(ios\nsystem\n", b"NQ", b"Pid\n", b"\x82\x07", b"(", b"0", b"1",
        b"2", b"N", b"\x94", b"h\x00", b"h\x01", b"q\x00", b"p0\n", b"g0\n",
        b"t", b"e", b"u", b"s", b"a", b"\x85", b"\x86", b"R", b".",
        su("os"), b"K\x07", b"\x95\x02\x00\x00\x00\x00\x00\x00\x00",
    ]


def mutate(rng, b, snippets):
    b = bytearray(b)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        i = rng.randint(0, len(b))
        if op == 0 and b:
            b[min(i, len(b) - 1)] = rng.randrange(256)
        elif op == 1 and b:
            b[min(i, len(b) - 1)] = rng.choice(OPS_INTERESTING)
        elif op == 2:
            b[i:i] = bytes([rng.choice(OPS_INTERESTING)])
        elif op == 3 and b:
            del b[min(i, len(b) - 1)]
        elif op == 4:
            del b[i:]
        elif op == 5:
            b[i:i] = rng.choice(snippets)
        elif op == 6 and b:
            j = rng.randint(i, min(len(b), i + 16))
            b[i:i] = b[i:j]
        else:
            b[i:i] = rng.choice(snippets)
    return bytes(b)


def gen_program(rng):
    """A random opcode stream built from well-formed opcodes, so that stack,
    mark and memo logic is exercised far from the happy path."""
    strs = ["os", "system", "x", "builtins", "eval"]
    out = []
    if rng.random() < 0.5:
        out.append(b"\x80" + bytes([rng.choice([2, 3, 4, 5, 5, 6])]))
    gens = [
        lambda: b"(", lambda: b"0", lambda: b"1", lambda: b"2", lambda: b"N",
        lambda: b")", lambda: b"]", lambda: b"}", lambda: b"\x8f",
        lambda: b"\x88", lambda: b"K" + bytes([rng.randrange(256)]),
        lambda: su(rng.choice(strs)), lambda: b"X" + struct.pack("<I", 2) + b"os",
        lambda: b"C\x02os", lambda: b"B\x01\x00\x00\x00z",
        lambda: b"U\x02os", lambda: b"S'os'\n", lambda: b"Vos\n",
        lambda: b"I" + rng.choice([b"1", b"0x1", b" 2", b"1_0", b"08", b"x", b"00"]) + b"\n",
        lambda: b"L" + rng.choice([b"1", b"1L", b"0o7", b"012", b"", b"L"]) + b"\n",
        lambda: b"F" + rng.choice([b"1.0", b"nan", b"1e", b"x"]) + b"\n",
        lambda: b"a", lambda: b"e", lambda: b"s", lambda: b"u", lambda: b"d",
        lambda: b"l", lambda: b"t", lambda: b"\x85", lambda: b"\x86",
        lambda: b"\x87", lambda: b"\x90", lambda: b"\x91", lambda: b"b",
        lambda: b"\x94", lambda: b"q" + bytes([rng.randrange(4)]),
        lambda: b"h" + bytes([rng.randrange(4)]),
        lambda: b"r" + struct.pack("<I", rng.choice([0, 1, 3000, 5000])),
        lambda: b"j" + struct.pack("<I", rng.choice([0, 1, 3000, 5000])),
        lambda: b"p" + rng.choice([b"0", b"1", b"+2", b"1_0", b"0x1", b"-1", b" 3"]) + b"\n",
        lambda: b"g" + rng.choice([b"0", b"1", b"+2", b"1_0", b"0x1", b"-0", b" 3"]) + b"\n",
        lambda: b"\x98", lambda: b"\x97", lambda: b"R", lambda: b"o",
        lambda: b"\x81",
        lambda: b"\x95" + struct.pack("<Q", rng.choice([0, 1, 2, 3, 5, 8, 13, 1 << 40])),
    ]
    # Bulk steps push the model past its bounds: 64 marks, 64 typed stack
    # items, 2048 memo map entries, 8 far memo entries.
    big = lambda: rng.choice([1, 2, 63, 64, 65, 66, 130])
    far = lambda: rng.choice([0, 1, 2047, 2048, 2049, 2050, 3000, 70000, 10**6]) + rng.randrange(3)
    gens += [
        lambda: b"(" * big(), lambda: b"N" * big(), lambda: b"t" * big(),
        lambda: b"0" * big(), lambda: b"1" * big(), lambda: b"\x85" * big(),
        lambda: (su("os") + b"\x94") * big(), lambda: b"N\x94" * big(),
        lambda: b"N\x94" * rng.choice([2040, 2047, 2048, 2049, 2058, 2070]),
        lambda: b"(N" * big(), lambda: b"(" + su("os") * big(),
        lambda: b"r" + struct.pack("<I", far()), lambda: b"j" + struct.pack("<I", far()),
        lambda: b"p%d\n" % far(), lambda: b"g%d\n" % far(),
        lambda: b"".join(b"r" + struct.pack("<I", far()) for _ in range(big())),
        lambda: b"h" + bytes([rng.randrange(256)]), lambda: b"q" + bytes([rng.randrange(256)]),
    ]
    danger = [
        lambda: b"\x93", lambda: b"cos\nsystem\n", lambda: b"ios\nsystem\n",
        lambda: b"Pid\n", lambda: b"Q", lambda: b"\x82" + bytes([rng.randrange(3)]),
    ]
    for _ in range(rng.randint(1, 14)):
        out.append(rng.choice(gens)())
        if rng.random() < 0.12:
            out.append(rng.choice(danger)())
    out.append(rng.choice(danger)())
    if rng.random() < 0.7:
        out.append(b".")
    return b"".join(out)


TEXT_ALPHABET = b" \t\r\x0b+-_0123456789abcdefxXoObBLlEeiInNtyfF.'\"\\\x00\x80\xc3\xa9\xed\xa0\xf0\x9f"


def gen_text_arg(rng):
    """Text-argument parse differentials: CPython's strtol/PyLong/float
    parsers are more lenient than pickletools; the scanner must never call
    an argument invalid that CPython accepts."""
    arg = bytes(rng.choice(TEXT_ALPHABET) for _ in range(rng.randint(0, 7)))
    if rng.random() < 0.3:  # mostly-valid numbers with one twist
        arg = rng.choice([b"", b" ", b"-", b"+", b"0", b"0x", b"0o", b"0b", b"0_"]) + \
            bytes(rng.choice(b"0123456789_abfxL ") for _ in range(rng.randint(0, 5)))
    tail = rng.choice([b"cos\nsystem\n.", su("os") + su("system") + b"\x93."])
    kind = rng.randrange(7)
    if kind < 3:
        return b"IFL"[kind:kind + 1] + arg + b"\n" + tail
    if kind == 3:  # PUT then GET with independent arguments
        arg2 = bytes(rng.choice(b" +-_0123456789x") for _ in range(rng.randint(0, 4)))
        return su("os") + b"p" + arg + b"\n" + su("system") + b"g" + arg2 + b"\n\x93."
    if kind == 4:
        return b"S" + arg + b"\n" + tail
    if kind == 5:
        return b"c" + arg + b"\n" + bytes(rng.choice(TEXT_ALPHABET) for _ in range(rng.randint(0, 3))) + b"\n."
    return b"(i" + arg + b"\nx\n."




# --- request structs of inference engines (pickled by SGLang, Sarathi) -------

class Stage(enum.Enum):
    PREFILL = 1
    DECODE = 2


class Finish(str, enum.Enum):
    LENGTH = "length"
    STOP = "stop"


@dataclasses.dataclass
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 128
    stop: typing.List[str] = dataclasses.field(default_factory=lambda: ["</s>"])
    logit_bias: typing.Optional[typing.Dict[int, float]] = None


@dataclasses.dataclass
class TokenizedGenerateReqInput:
    rid: str
    input_text: str
    input_ids: typing.List[int]
    sampling_params: SamplingParams
    stage: Stage = Stage.PREFILL
    finish: typing.Optional[Finish] = None
    mm_inputs: typing.Optional[bytes] = None
    stream: bool = False


@dataclasses.dataclass(frozen=True)
class BatchTokenIDOut:
    rids: tuple
    output_ids: tuple
    finished: tuple


def struct_objects(rng=None):
    """Instances of the request structs: each needs find_class."""
    rng = rng or random.Random(1)
    out = []
    for i in range(3):
        sp = SamplingParams(temperature=rng.random(), max_new_tokens=rng.randint(1, 4096),
                            logit_bias={1: -100.0} if i else None)
        out.append(TokenizedGenerateReqInput(
            rid="req-%d" % i, input_text="hello " * i, input_ids=list(range(i * 7)),
            sampling_params=sp, stage=Stage.DECODE if i else Stage.PREFILL,
            finish=Finish.STOP if i == 2 else None, mm_inputs=b"\x00\xff" * i, stream=bool(i)))
    out.append(BatchTokenIDOut(("a", "b"), ((1, 2), (3,)), (False, True)))
    out.append([Stage.PREFILL, Finish.LENGTH, {"k": Stage.DECODE}])
    return out


def data_objects_more():
    """More pure data: nested and shared containers, floats, big ints."""
    a = [1]
    b = [a, a]
    t = (b, b)
    d = {}
    d[1] = [d, {2: d}]
    s = {"x": set(range(40)), "f": frozenset({1, 2.5, -7}), "n": [None] * 5}
    return [
        t, d, s, [0.1, -1e-300, 1e308, float("nan"), float("-inf")],
        [2**64, -(2**64) - 1, 10**50, -1, 0, 2**31, 2**32 - 1, -2**63],
        {"ids": list(range(1000))}, [b"\x00" * 70000], "x" * 70000,
        {("t", 1): {frozenset(): ()}}, [[]] * 10, bytearray(b"abc"),
        {"text": "\u00e9\u4e2d\U0001f600\ud800" .encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")},
    ]


def real_pickles_more():
    out = []
    for proto in range(6):
        for o in data_objects_more() + struct_objects():
            try:
                out.append(pickle.dumps(o, protocol=proto))
            except Exception:  # bytearray at 0/1 etc. are fine, just in case
                pass
        # Many pickles in one stream (pickle.dump called repeatedly).
        out.append(pickle.dumps(1, protocol=proto) + pickle.dumps(Evil(), protocol=proto))
    # Pickler subclass with persistent ids (torch-style).
    import io

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage-%d" % len(obj) if isinstance(obj, bytes) else None
    for proto in range(6):
        f = io.BytesIO()
        P(f, protocol=proto).dump({"w": b"abcd", "n": 1})
        out.append(f.getvalue())
    return out



# --- structured mutations ------------------------------------------------------

LENIENT_INTS = [b"I0x1\n", b"I 1\n", b"I1_0\n", b"I+5\n", b"I010\n", b"I0b1\n", b"L12\n",
                b"L12L\n", b"L 0x_1f\n", b"I00\n", b"I01\n", b"F1.5\n", b"F 1\n", b"I1\r\n",
                b"I1\n\r", b"L0o7\n", b"I\x00\n", b"I-0\n", b"I 0x\n", b"I1__0\n"]
LENIENT_MEMO = [b"p1_0\n", b"p+1\n", b"p 1 \n", b"p01\n", b"p0x1\n", b"g1_0\n", b"g+1\n",
                b"g 1\n", b"g-0\n", b"p1\r\n", b"g1\r\n"]
QUOTED = [b"S'os'\n", b'S"os"\n', b"S'o\\x73'\n", b"S'os\n", b"S'os'\r\n", b"Vos\n",
          b"Vo\\u0073\n", b"Vos\r\n", b"U\x02os", b"T\x02\x00\x00\x00os", b"X\x02\x00\x00\x00os",
          b"\x8c\x02os", b"\x8d\x02\x00\x00\x00\x00\x00\x00\x00os", b"C\x02os"]


def frame_op(n):
    return b"\x95" + struct.pack("<Q", n)


def opcode_bounds(b):
    """Start offsets of opcodes per pickletools (best effort: stops at the
    first error)."""
    import pickletools
    out = []
    try:
        for op, arg, pos in pickletools.genops(b):
            out.append(pos)
    except Exception:
        pass
    return out


def computed_stack_global(rng):
    """STACK_GLOBAL whose operands come from memo, DUP, PUT vs MEMOIZE
    index confusion, or non-str look-alikes."""
    mod, name = rng.choice([("os", "system"), ("builtins", "eval"), ("posix", "system"),
                            ("subprocess", "Popen"), ("x", "y")])
    m, n = su(mod), su(name)
    forms = [
        m + b"\x94" + n + b"\x94h\x00h\x01\x93",
        m + b"q\x07" + n + b"h\x07\x86\x93",           # tuple: underflow
        m + b"q\x07" + b"0" + n + b"h\x07" + b"\x93",   # popped, then swapped order
        n + b"\x94" + m + b"h\x00\x93",                 # name below module
        m + b"p3\n0" + n + b"\x94g3\nh\x00\x93",        # PUT 3 then MEMOIZE at 1
        m + b"p0\n0" + n + b"\x94h\x01\x93",            # MEMOIZE after PUT 0 goes to 1
        m + b"p0\n0" + n + b"\x94h\x00\x93",            # GET 0 is the module: (mod, mod)
        b"K\x01\x94" + m + b"\x94h\x00h\x01\x93",       # int at 0
        m + b"2\x93",                                   # DUP: module.module
        m + n + b"\x94\x94\x93",                        # memoize twice
        m + b"(" + n + b"1" + n + b"\x93",              # POP_MARK drops name
        m + b"r" + struct.pack("<I", 5000) + b"0" + n + b"j" + struct.pack("<I", 5000) + b"\x93",
        b"(" + m + n + b"t" + b"\x93",                   # tuple of both
        m + n + b"\x93" + b"\x94" + m + b"h\x00\x93",
        m + b"C\x06system" + b"\x93",                    # bytes name
        m + n + b"\x98\x93",                            # memoryview of str: raises
    ]
    return rng.choice(forms)


def mutate_structured(rng, b):
    """One structure-aware mutation at an opcode boundary."""
    b = bytearray(b)
    bounds = opcode_bounds(bytes(b)) or [0]
    at = rng.choice(bounds + [len(b)])
    k = rng.randrange(12)
    if k == 0:
        b[at:at] = b"\x80" + bytes([rng.choice([0, 1, 2, 3, 4, 5, 5, 6, 255])])
    elif k == 1:
        b[at:at] = frame_op(rng.choice([0, 1, 2, 5, 9, 12, len(b) - at, len(b) - at + 1,
                                        max(0, len(b) - at - 1), 1 << 40]))
    elif k == 2:
        b[at:at] = rng.choice(LENIENT_INTS)
    elif k == 3:
        b[at:at] = b"N" + rng.choice(LENIENT_MEMO)
    elif k == 4:
        b[at:at] = rng.choice(QUOTED) + rng.choice(QUOTED) + b"\x93"
    elif k == 5:   # drop STOP / add trailing garbage
        if b.endswith(b"."):
            del b[-1]
        else:
            b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif k == 6:
        b[at:at] = computed_stack_global(rng)
    elif k == 7 and len(bounds) > 1:  # delete one opcode with its argument
        i = rng.randrange(len(bounds) - 1)
        del b[bounds[i]:bounds[i + 1]]
    elif k == 8:   # swap MEMOIZE <-> BINPUT
        i = b.find(b"\x94")
        if i >= 0:
            b[i:i + 1] = b"q" + bytes([rng.randrange(4)])
        else:
            b[at:at] = b"\x94"
    elif k == 9:   # \r before \n in a text argument
        i = b.find(b"\n")
        if i >= 0:
            b[i:i] = b"\r"
    elif k == 10:
        del b[at:]
    else:
        b[at:at] = b"cos\nsystem\n" if rng.random() < 0.5 else b"(ios\nsystem\n"
    return bytes(b)


def truncations(pickles, limit=400):
    """Every prefix of each pickle (up to `limit` bytes long)."""
    out = []
    for p in pickles:
        for i in range(min(len(p), limit)):
            out.append(p[:i])
    return out


def seed_pickles():
    return real_pickles() + real_pickles_more() + HAND


def build_corpus(n, seed):
    """About n cases, deterministic for (n, seed)."""
    rng = random.Random(seed)
    seeds = seed_pickles()
    cases = list(seeds)
    short = [p for p in seeds if len(p) < 300]
    cases += truncations(rng.sample(short, min(len(short), max(1, n // 2000))))
    target = max(n, len(cases))
    programs = [gen_program(rng) for _ in range(target * 6 // 20)]
    cases += programs
    cases += [gen_text_arg(rng) for _ in range(target * 2 // 20)]
    cases += [computed_stack_global(rng) + (b"." if rng.random() < 0.5 else b"")
              for _ in range(target // 40)]
    snippets = ins_snippets()
    pool = seeds + programs[:3000]
    while len(cases) < target:
        base = rng.choice(pool)
        r = rng.random()
        if r < 0.45:
            c = mutate(rng, base, snippets)
        elif r < 0.9:
            c = mutate_structured(rng, base)
            if rng.random() < 0.3:
                c = mutate_structured(rng, c)
        else:
            c = mutate(rng, mutate_structured(rng, base), snippets)
        cases.append(c)
    return cases[:target]
