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
  - truncations of real pickles at every length (truncations());
  - import names (names_cases, 10 % of the corpus): STACK_GLOBAL operands
    from the memo through every PUT/GET form and MEMOIZE, overwritten and
    colliding memo slots, DUP, strings a real pickle stored as data, names
    around 512 bytes, more than 100 imports in one pickle, more string
    bytes than the scanner's names arena, and real-shaped pickles of many
    classes of one module (dataclasses, Enums, numpy arrays, torch tensors
    when python3-torch is installed), with their mutations.

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
    return real_pickles() + real_pickles_more() + HAND + \
        [p for p in real_shaped_pickles() if len(p) < 20000]


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
    cases += names_cases(rng, target // 10)
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


# --- names: every import named, wherever its operands come from --------------
#
# The "every import" check (difftest.py, oracle path c) compares each
# (module, name) CPython's find_class is asked for with the imports collect
# mode reports. These generators put STACK_GLOBAL operands behind every
# memo form, overwrite and collide memo slots, take them from DUP and from
# strings an earlier part of the pickle stored as data, use names around
# PSCAN_NAME_MAX (512) bytes, put hundreds of imports in one pickle, and
# pickle real-shaped objects (many classes of one module, dataclasses,
# Enums, numpy arrays, torch tensors) with CPython.

NAME_POOL = ["os", "system", "builtins", "getattr", "eval", "posix", "subprocess", "Popen",
             "os.path", "join", "collections", "OrderedDict", "numpy.core.multiarray",
             "_reconstruct", "torch._utils", "_rebuild_tensor_v2", "sglang.srt.managers.io_struct",
             "TokenizedGenerateReqInput", "a", "x", "__builtin__", "copy_reg", "_reconstructor",
             "m\u00e9", "\u4e2d", "\U0001f600", "a.b.c", "<locals>", "Stage.__call__"]


def str_op(rng, s, forms=None):
    """Push str s with one of the opcodes that can make a str."""
    b = s.encode("utf-8", "surrogatepass")
    ascii_plain = all(c < 0x80 for c in b) and b"\\" not in b and b"\n" not in b
    forms = forms or ["8c", "X", "8d", "V", "S", "T", "U"]
    form = rng.choice(forms)
    if form == "8c" and len(b) < 256:
        return b"\x8c" + bytes([len(b)]) + b
    if form == "8d":
        return b"\x8d" + struct.pack("<Q", len(b)) + b
    if form == "V" and ascii_plain:
        return b"V" + b + b"\n"
    if form == "S" and ascii_plain and b"'" not in b:
        return b"S'" + b + b"'\n"
    if form == "U" and len(b) < 256:
        return b"U" + bytes([len(b)]) + b   # BINSTRING: ASCII, or latin1 on path c
    if form == "T":
        return b"T" + struct.pack("<I", len(b)) + b
    return b"X" + struct.pack("<I", len(b)) + b


class Memo:
    """Emits PUT/GET forms and mirrors CPython's memo (index -> value) so
    generated programs mostly stay valid."""

    def __init__(self, rng):
        self.rng, self.memo = rng, {}

    def pick_index(self):
        rng = self.rng
        k = rng.random()
        if self.memo and k < 0.25:
            return rng.choice(list(self.memo))              # overwrite a slot
        if self.memo and k < 0.35:
            return rng.choice(list(self.memo)) + rng.choice([8192, 16384, 2048])  # collide
        return rng.choice([0, 1, 2, 3, 7, 100, 255, 256, 257, 1000, 2047, 2048, 2049,
                           4095, 8191, 8192, 8193, 70000, 10**6]) + rng.randrange(3)

    def put(self, value):
        """Store the stack top (whose value is `value`): returns the bytes
        and the index used."""
        rng = self.rng
        form = rng.choice(["p", "q", "r", "m", "m"])
        if form == "m":
            idx = len(self.memo)
            self.memo[idx] = value
            return b"\x94", idx
        idx = self.pick_index()
        if form == "q" and idx > 255:
            form = "r"
        self.memo[idx] = value
        if form == "p":
            return b"p" + rng.choice([b"%d", b"0%d", b"+%d", b" %d"]) % idx + b"\n", idx
        if form == "q":
            return b"q" + bytes([idx]), idx
        return b"r" + struct.pack("<I", idx), idx

    def get(self, idx):
        rng = self.rng
        form = rng.choice(["g", "h", "j"])
        if form == "h" and idx < 256:
            return b"h" + bytes([idx])
        if form == "g":
            return b"g" + rng.choice([b"%d", b"0%d", b"+%d", b" %d"]) % idx + b"\n"
        return b"j" + struct.pack("<I", idx)

    def find(self, value):
        keys = [k for k, v in self.memo.items() if v == value]
        return self.rng.choice(keys) if keys else None


def gen_memo_names(rng, n_imports=None):
    """STACK_GLOBAL after STACK_GLOBAL whose operands come from the memo
    through every PUT/GET form, from DUP, after overwrites and index
    collisions, with non-str decoys stored in between."""
    out = [b"\x80\x04"] if rng.random() < 0.7 else []
    memo = Memo(rng)
    out.append(b"]")                     # a list to append the results to
    n = n_imports or rng.choice([1, 1, 2, 3, 5, 8])
    for _ in range(n):
        mod, name = rng.choice(NAME_POOL), rng.choice(NAME_POOL)
        ops = []
        step = rng.randrange(10)
        if step == 0:                    # DUP: (x, x)
            ops += [str_op(rng, mod), b"2"]
        elif step == 1:                  # module from DUP, name pushed
            ops += [str_op(rng, mod), b"2", b"0", str_op(rng, name)]
        else:
            for val in (mod, name):
                have = memo.find(val)
                if have is not None and rng.random() < 0.5:
                    ops.append(memo.get(have))
                    continue
                ops.append(str_op(rng, val))
                b, idx = memo.put(val)
                ops.append(b)
                if rng.random() < 0.6:   # pop it and get it back later
                    ops.append(b"0")
                    if rng.random() < 0.4:   # decoy stored in between
                        decoy = rng.choice([("int", 1), "x", "os", ("bytes", b"os")])
                        ops.append(b"K\x01" if decoy == ("int", 1) else
                                   b"C\x02os" if decoy == ("bytes", b"os") else str_op(rng, decoy))
                        d, _ = memo.put(decoy)
                        ops += [d, b"0"]
                    ops.append(memo.get(idx) if memo.memo.get(idx) == val or rng.random() < 0.3
                               else memo.get(memo.find(val) if memo.find(val) is not None else idx))
        out += ops
        out.append(b"\x93")
        k = rng.random()
        if k < 0.3:
            out.append(b")R")            # call it
        elif k < 0.4:
            out.append(b"(" + str_op(rng, "id") + b"tR")
        elif k < 0.5:
            b, _ = memo.put(("obj", mod, name))
            out.append(b)
        out.append(b"a")
    out.append(b".")
    return b"".join(out)


def gen_data_then_names(rng):
    """Strings that a real pickle of data stored in its memo become the
    operands of STACK_GLOBALs appended after it (memo indexes found by
    replaying the pickler's PUT/BINPUT/MEMOIZE)."""
    import pickletools
    words = rng.sample(NAME_POOL, 6)
    obj = rng.choice([words, {w: i for i, w in enumerate(words)},
                      [{"k": words[:3]}, tuple(words[3:])], [words, words]])
    p = pickle.dumps(obj, protocol=rng.randrange(6))
    memo, last = {}, None
    try:
        for op, arg, pos in pickletools.genops(p):
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = last
            elif op.name == "MEMOIZE":
                memo[len(memo)] = last
            elif op.name != "STOP":
                last = arg if isinstance(arg, str) and op.name.endswith(("UNICODE", "STRING")) else None
    except Exception:
        pass
    strs = [k for k, v in memo.items() if isinstance(v, str)]
    if not strs:
        return p
    m = Memo(rng)
    tail = []
    for _ in range(rng.choice([1, 2, 3])):
        i, j = rng.choice(strs), rng.choice(strs)
        tail += [m.get(i), m.get(j), b"\x93", rng.choice([b"0", b")R0", b"\x94" if False else b"0"])]
    return p[:-1] + b"".join(tail) + b"."


def gen_long_names(rng):
    """Names around PSCAN_NAME_MAX: GLOBAL/INST lines, and STACK_GLOBAL
    operands pushed directly or through the memo."""
    lens = [1, 255, 256, 500, 510, 511, 512, 513, 514, 600, 1024, 4096]
    def name(n):
        base = rng.choice(["m", "pkg.mod.", "\u00e9", "Cls_"])
        s = (base * (n // len(base.encode()) + 1)).encode()[:n].decode("utf-8", "ignore")
        return s or "x"
    mod, nm = name(rng.choice(lens)), name(rng.choice(lens))
    k = rng.randrange(5)
    tail = b"." if rng.random() < 0.8 else b"N."
    if k == 0:
        return b"c" + mod.encode() + b"\n" + nm.encode() + b"\n" + tail
    if k == 1:
        m, n = mod.encode("ascii", "replace"), nm.encode("ascii", "replace")
        return b"(" + str_op(rng, "x") + b"i" + m + b"\n" + n + b"\n" + tail
    if k == 2:
        return b"\x80\x04" + str_op(rng, mod) + str_op(rng, nm) + b"\x93" + tail
    memo = Memo(rng)
    a, ia = memo.put(mod)
    b, ib = memo.put(nm)
    body = str_op(rng, mod) + a + b"0" + str_op(rng, nm) + b + b"0"
    body += memo.get(ia) + memo.get(ib) + b"\x93"
    if k == 4:  # then a short import after the long ones
        body += b"0" + str_op(rng, "os") + str_op(rng, "system") + b"\x93"
    return b"\x80\x04" + body + tail


def gen_many_imports(rng):
    """More than 100 imports in one pickle, in every form."""
    n = rng.choice([101, 150, 257, 600])
    memo = Memo(rng)
    out = [b"\x80\x04]"]
    for i in range(n):
        mod = rng.choice(["sglang.srt.managers.io_struct", "torch", "numpy", "m%d" % (i % 7)])
        nm = "C%d" % rng.randrange(300)
        k = rng.randrange(4)
        if k == 0:
            out.append(b"c" + mod.encode() + b"\n" + nm.encode() + b"\n")
        elif k == 1:
            out.append(b"(i" + mod.encode() + b"\n" + nm.encode() + b"\n")
        elif k == 2:
            out.append(str_op(rng, mod) + str_op(rng, nm) + b"\x93")
        else:
            im = memo.find(mod)
            if im is None:
                b, im = memo.put(mod)
                out.append(str_op(rng, mod) + b + b"0")
            b, inn = memo.put(nm)
            out.append(str_op(rng, nm) + b + b"0" + memo.get(im) + memo.get(inn) + b"\x93")
        out.append(b"a")
    out.append(b".")
    return b"".join(out)


def gen_arena_wrap(rng):
    """Push more string bytes than the names arena holds (1 MiB), memoized,
    then import with operands stored early: the scanner must say unknown,
    never a wrong name. Big: generated rarely."""
    memo = Memo(rng)
    out = [b"\x80\x04"]
    b, i0 = memo.put("os")
    out.append(str_op(rng, "os", ["X"]) + b + b"0")
    b, i1 = memo.put("system")
    out.append(str_op(rng, "system", ["X"]) + b + b"0")
    filler = "f" * 500
    for k in range(rng.choice([2100, 2200, 4500])):
        out.append(b"X" + struct.pack("<I", 500) + filler.encode() + b"\x940")
    out.append(memo.get(i0) + memo.get(i1) + b"\x93.")
    return b"".join(out)


_FAKE_MODULE = "zmtpfw_fake_engine.io_struct"


def _fake_engine_module():
    """A module of many dataclasses and Enums (registered in sys.modules so
    pickle can name them; only ever pickled here)."""
    import sys
    import types
    mod = sys.modules.get(_FAKE_MODULE)
    if mod is not None:
        return mod
    pkg = types.ModuleType(_FAKE_MODULE.split(".")[0])
    mod = types.ModuleType(_FAKE_MODULE)
    pkg.io_struct = mod
    sys.modules.setdefault(pkg.__name__, pkg)
    sys.modules[_FAKE_MODULE] = mod
    for i in range(160):
        name = "Req%d" % i
        cls = dataclasses.make_dataclass(name, [("rid", str), ("ids", list), ("x", object, None)])
        cls.__module__ = _FAKE_MODULE
        setattr(mod, name, cls)
    for i in range(40):
        name = "Mode%d" % i
        cls = enum.Enum(name, ["A", "B", "C_%d" % i], module=_FAKE_MODULE)
        setattr(mod, name, cls)
    return mod


_REAL_SHAPED = None


def real_shaped_pickles():
    """CPython pickles of many classes of one module (dataclasses nested in
    each other, Enum members pickled by 3.11.2 as builtins.getattr(cls,
    name)), numpy arrays and scalars, torch tensors (pickle.dumps and the
    legacy torch.save stream, split into its pickles) when installed."""
    global _REAL_SHAPED
    if _REAL_SHAPED is not None:
        return _REAL_SHAPED
    rng = random.Random(5)
    mod = _fake_engine_module()
    out = []
    reqs = [getattr(mod, "Req%d" % i) for i in range(160)]
    modes = [getattr(mod, "Mode%d" % i) for i in range(40)]
    for proto in range(6):
        objs = [r("rid-%d" % i, list(range(i % 9)), rng.choice(list(modes[i % 40])))
                for i, r in enumerate(reqs)]
        out.append(pickle.dumps(objs, protocol=proto))          # 200 distinct globals
        out.append(pickle.dumps(objs[:5], protocol=proto))
        nested = reqs[0]("r", [reqs[1]("s", [], modes[1].B)], [modes[2].A, modes[3].C_3])
        out.append(pickle.dumps(nested, protocol=proto))
        out.append(pickle.dumps([m.A for m in modes[:12]], protocol=proto))
    try:
        import numpy as np
        arrs = [np.arange(6, dtype=np.float32).reshape(2, 3), np.zeros(3, dtype=np.float16),
                np.array([1, 2], dtype=np.int64), np.array(["a", "bc"]),
                np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
                np.array([None, "x", 1], dtype=object), np.float64(1.5), np.int32(7),
                {"emb": np.ones((2, 2), dtype=np.float32), "ids": np.arange(4)}]
        for proto in range(6):
            for a in arrs:
                out.append(pickle.dumps(a, protocol=proto))
        out.append(pickle.dumps([np.arange(3)], protocol=5,
                                buffer_callback=lambda b: False))   # NEXT_BUFFER
    except ImportError:
        pass
    try:
        import io
        import pickletools
        import torch
        ts = [torch.arange(4, dtype=torch.float16), torch.zeros(2, 3),
              torch.tensor([1, 2], dtype=torch.int64), torch.ones(2, dtype=torch.bfloat16)]
        for proto in (2, 4, 5):
            for t in ts:
                out.append(pickle.dumps(t, protocol=proto))
            out.append(pickle.dumps({"w": ts[1], "b": ts[0]}, protocol=proto))
        f = io.BytesIO()
        torch.save({"w": ts[1], "ids": ts[2]}, f, _use_new_zipfile_serialization=False)
        stream, at = f.getvalue(), 0
        while at < len(stream):    # the stream's pickles (then raw storage bytes)
            end = None
            try:
                for op, arg, pos in pickletools.genops(stream[at:]):
                    if op.name == "STOP":
                        end = at + pos + 1
                        break
            except Exception:
                break
            if end is None:
                break
            out.append(stream[at:end])
            at = end
        out.append(stream)
    except ImportError:
        pass
    _REAL_SHAPED = out
    return out


def names_cases(rng, n):
    """n cases stressing import names (see above), plus their mutations."""
    real = real_shaped_pickles()
    gens = [gen_memo_names] * 5 + [gen_data_then_names] * 2 + [gen_long_names] * 2 + \
        [gen_many_imports]
    out = []
    for _ in range(n):
        k = rng.random()
        if k < 0.002:
            c = gen_arena_wrap(rng)
        elif k < 0.05:
            c = rng.choice(real)
            if len(c) > 20000 or rng.random() < 0.5:
                out.append(c)
                continue
            c = mutate_structured(rng, c)
        else:
            c = rng.choice(gens)(rng)
            if rng.random() < 0.25:
                c = mutate_structured(rng, c) if rng.random() < 0.6 else \
                    mutate(rng, c, ins_snippets())
        out.append(c)
    return out
