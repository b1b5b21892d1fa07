"""Attack and benign payloads for the end-to-end tests.

Every attack, when ``pickle.loads``-ed by the worker, creates the marker file
whose path is embedded in it. ``reaches_import`` is the ground truth from
CPython itself (an Unpickler whose find_class raises): tests assert it on
their attack payloads first, so a broken payload cannot make a test pass.
"""

import builtins
import datetime
import io
import json
import os
import pickle
import pickletools
import shlex
import sys

import msgpack


class EvilOpen:
    """pickle.loads -> open(marker, "w"): creates the file, no shell needed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


class EvilSystem:
    """pickle.loads -> os.system("touch marker") (pickled as posix.system)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, ("touch " + shlex.quote(self.marker),))


class EvilExec:
    """pickle.loads -> exec("open(marker,'w').close()")."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, ("open(%r, 'w').close()" % self.marker,))


def evil(marker, protocol, kind="open"):
    cls = {"open": EvilOpen, "system": EvilSystem, "exec": EvilExec}[kind]
    return pickle.dumps(cls(marker), protocol=protocol)


def handwritten(marker):
    """Hand-made pickles a naive scanner misses. name -> bytes."""
    m = str(marker).encode()
    sh = shlex.quote(str(marker)).encode()
    return {
        # Classic protocol 0, no PROTO header.
        "proto0-os-system": b"cos\nsystem\n(S'touch " + sh + b"'\ntR.",
        # No STOP: open() runs before CPython notices the missing STOP.
        "no-stop": b"cbuiltins\nopen\n(V" + m + b"\nVw\ntR",
        # Trailing garbage after STOP.
        "trailing-garbage": b"cbuiltins\nopen\n(V" + m + b"\nVw\ntR.\xff\xfe garbage",
        # INST instead of GLOBAL+REDUCE.
        "inst": b"(V" + m + b"\nVw\nibuiltins\nopen\n.",
        # C-unpickler leniency: base-0 INT, popped, then GLOBAL.
        "lenient-int": b"I0x10\n0I1_000\n0cbuiltins\nopen\n(V" + m + b"\nVw\ntR.",
        # STACK_GLOBAL without PROTO/FRAME.
        "stack-global-bare": b"\x8c\x08builtins\x8c\x04open\x93(V" + m + b"\nVw\ntR.",
        # PROTO appearing late, after other opcodes.
        "late-proto": b"N0\x80\x02cbuiltins\nopen\n(V" + m + b"\nVw\ntR.",
    }


def frame_straddle(marker):
    """Runs os.system("touch marker") under pickle.load(file) but raises under
    pickle.loads: the FRAME holds "cos\\n\\xff"; the file path finds no
    newline in the rest of the frame, drops it and reads "system\\n" from the
    stream, while loads reads the name "\\xffsystem" and fails to decode it."""
    sh = shlex.quote(str(marker)).encode()
    body = b"cos\n\xff"
    return (b"\x80\x04\x95" + len(body).to_bytes(8, "little") + body
            + b"system\n(S'touch " + sh + b"'\ntR.")


def reaches_import_file_path(data):
    """Ground truth for pickle.load(file-like) instead of pickle.loads."""
    try:
        _Sentinel(io.BytesIO(data)).load()
    except _Found:
        return True
    except Exception:
        return False
    return False


class _Found(Exception):
    pass


class _Sentinel(pickle.Unpickler):
    def find_class(self, module, name):
        raise _Found(f"{module}.{name}")

    def persistent_load(self, pid):
        raise _Found("persistent_load")


_hook = {"armed": False}


def _audit(event, args):
    if _hook["armed"] and event == "pickle.find_class":
        raise _Found(f"{args[0]}.{args[1]}")


sys.addaudithook(_audit)  # inert unless armed by reaches_import


def reaches_import(data):
    """CPython ground truth for pickle.loads(data) (the worker's call): does
    loading reach find_class? An audit hook aborts the import when it would
    happen. (An Unpickler over io.BytesIO would take the file path, which
    handles FRAME differently: see reaches_import_file_path.)"""
    _hook["armed"] = True
    try:
        pickle.loads(data)
    except _Found:
        return True
    except Exception:
        return False
    finally:
        _hook["armed"] = False
    return False


FIRST_IMPORT_OPS = {"GLOBAL", "INST", "STACK_GLOBAL", "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"}


def first_import_op(data):
    """(opcode name, byte offset) of the first import opcode per pickletools."""
    for op, arg, pos in pickletools.genops(data):
        if op.name in FIRST_IMPORT_OPS:
            return op.name, pos
    return None, None


# --- benign -------------------------------------------------------------

def benign_dict_pickle(protocol=4):
    """A pickle with no import at all (loads to a dict)."""
    return pickle.dumps({"a": 1, "b": [1, 2, 3], "c": "text"}, protocol=protocol)


BENIGN_DATE = datetime.date(2024, 1, 2)


def benign_global_pickle(protocol=4):
    """Harmless but it imports (datetime.date): a scanner must flag it."""
    return pickle.dumps(BENIGN_DATE, protocol=protocol)


def json_frame(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def msgpack_frames():
    """Legit msgpack a worker really receives: arrays (request structs) and
    maps with 0-1 or >= 5 keys (2-4 key maps start with 0x82-0x84 = EXT1/2/4
    and are flagged by design)."""
    return {
        "array2": msgpack.packb(["req-1", 42]),
        "array3": msgpack.packb(["req-1", [1, 2, 3], {"temperature": 0.7}]),  # 0x93 = STACK_GLOBAL byte
        "array4": msgpack.packb(["a", "b", 1, 2.5]),                           # 0x94 = MEMOIZE byte
        "array5": msgpack.packb([1, 2, 3, 4, 5]),                              # 0x95 = FRAME byte
        "array8": msgpack.packb(list(range(8))),                               # 0x98
        "array16": msgpack.packb(list(range(16))),                             # 0xdc array16
        "map0": msgpack.packb({}),                                             # 0x80 = PROTO byte
        "map1": msgpack.packb({"prompt": "hello"}),                            # 0x81 = NEWOBJ byte
        "map5": msgpack.packb({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}),       # 0x85 = TUPLE1 byte
        "map6-nested": msgpack.packb({"request_id": "r1", "prompt_token_ids": list(range(20)),
                                      "sampling": [0.7, 0.9, 64], "arrival": 1.5,
                                      "lora": None, "stream": True}),
        "bin": msgpack.packb(b"\x00\x01binary"),
        "str": msgpack.packb("just a string"),
    }


def client_frame(n, f, size):
    """The bytes tests/tools/zmq_client.c generates for frame f of message n."""
    head = ('{"n":%d,"f":%d,"p":"' % (n, f)).encode()
    assert len(head) + 2 <= size
    fill = bytes(ord("a") + (n + f + k) % 26 for k in range(size - len(head) - 2))
    return head + fill + b'"}'
