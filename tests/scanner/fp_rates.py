"""False-positive rates of the scanner on traffic that is not pickle.

    /usr/bin/python3 tests/scanner/fp_rates.py [--scale K]

Corpora (deterministic): JSON documents (OpenAI/vLLM-style requests and
more), msgpack payloads (vLLM-style EngineCoreRequest arrays and their
one-byte request-type frames, SGLang-style request arrays, generic maps and
arrays), protobuf-like varint streams, raw float32/float16/bfloat16/int64
tensor bytes, and random bytes of lengths 1 B to 64 KiB (generated in C by
pscan_driver --random). Each is scanned with the default options and with
PSCAN_STOCK; every flagged sample is then given to the CPython oracle, which
says whether loading it really reaches find_class / persistent_load / the
extension registry. A flag CPython confirms is a true positive of the
policy (the default policy counts EXT and PERSID; a msgpack map of 2-4
entries starts with EXT1/2/4), not a scanner error; the table shows both.
--scale multiplies the sample counts of SIZES (default 5).
"""
import argparse
import array
import collections
import json
import os
import random
import struct
import subprocess
import sys

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import oracle  # noqa: E402

IMPORT_OPS = ("GLOBAL", "INST", "STACK_GLOBAL")


def json_docs(rng, n):
    out = []
    words = ["hello", "world", "the", "model", "é", "中文", "\\n", "\"q\"", "1.5"]
    for i in range(n):
        k = rng.randrange(6)
        text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 30)))
        if k == 0:
            doc = {"model": "meta-llama/Llama-3-8B", "prompt": text, "max_tokens": rng.randint(1, 4096),
                   "temperature": rng.random(), "stop": [".", "\n"], "stream": rng.random() < 0.5}
        elif k == 1:
            doc = {"messages": [{"role": "user", "content": text}] * rng.randint(1, 4),
                   "n": rng.randint(1, 4), "logprobs": None, "seed": rng.randint(0, 2**31)}
        elif k == 2:
            doc = [rng.randint(-2**40, 2**40) for _ in range(rng.randint(0, 50))]
        elif k == 3:
            doc = {"prompt_token_ids": [rng.randint(0, 128000) for _ in range(rng.randint(1, 200))],
                   "sampling_params": {"top_p": rng.random(), "top_k": -1}}
        elif k == 4:
            doc = rng.choice([text, rng.random() * 1e6, rng.randint(-10**9, 10**9), None, True, False])
        else:
            doc = {"id": "cmpl-%x" % rng.getrandbits(64), "choices": [{"text": text, "index": 0,
                   "finish_reason": rng.choice(["stop", "length", None])}]}
        s = json.dumps(doc, indent=rng.choice([None, None, 2]), ensure_ascii=rng.random() < 0.5)
        if rng.random() < 0.1:
            s = rng.choice([" ", "\n", "\t", "\r\n"]) + s
        out.append(s.encode())
    return out


def vllm_requests(rng, n):
    """msgpack of vLLM V1 EngineCoreRequest (msgspec array_like structs)
    and the one-byte request-type frame that precedes it."""
    out = [b"\x00", b"\x01", b"\x02", b"\x03", b"\x04"]
    for i in range(n):
        sp = [rng.randint(1, 4), None, rng.random(), rng.random() * 2, rng.random(), -1, 0.0,
              rng.random(), 1.0, rng.randint(0, 2**31), [], [], [], False, rng.randint(1, 4096), 0,
              None, None, True, True, True, None, None, None, None, None, False, None]
        req = ["req-%x" % rng.getrandbits(64),
               [rng.randint(0, 150000) for _ in range(rng.randint(1, 500))],
               None, sp, None, rng.randint(0, 150000), 1.7e9 + rng.random() * 1e6, None, None,
               rng.choice([None, 0, 1]), rng.randint(0, 8), rng.randint(0, 100), 0, None]
        out.append(msgpack.packb(req))
        out.append(msgpack.packb(["req-%d" % i, [rng.randint(0, 150000)], rng.random(), None]))
        # outputs batch: [engine_index, [[req_id, new_token_ids, ...], ...], ...]
        outs = [[("req-%d" % j), [rng.randint(0, 150000)], None, None, None, None, 0, None]
                for j in range(rng.randint(1, 16))]
        out.append(msgpack.packb([0, outs, None, None, 1.7e9, None, None, 0]))
    return out


def sglang_requests(rng, n):
    out = []
    for i in range(n):
        sp = {"temperature": rng.random(), "top_p": rng.random(), "max_new_tokens": rng.randint(1, 4096),
              "stop": ["</s>"], "ignore_eos": False, "skip_special_tokens": True}
        req = ["rid-%x" % rng.getrandbits(48), "hello " * rng.randint(0, 10),
               [rng.randint(0, 150000) for _ in range(rng.randint(1, 300))], None, sp,
               rng.random() < 0.5, -1, None, rng.random() < 0.5, None, None, 0]
        out.append(msgpack.packb(req))
        out.append(msgpack.packb([req, req]))
    return out


def msgpack_generic(rng, n):
    out = []
    for i in range(n):
        k = rng.randrange(4)
        if k == 0:
            nkeys = rng.choice([0, 1, 2, 3, 4, 5, 6, 10, 15, 16, 20, 40])
            obj = {rng.choice(["k%d" % t, t, "prompt", "id"]): rng.choice([t, "v", 1.5, None, [t]])
                   for t in range(nkeys)}
        elif k == 1:
            obj = [rng.choice([rng.randint(-2**63, 2**64 - 1), rng.random(), "s" * rng.randint(0, 40),
                               b"\x00" * rng.randint(0, 40), None, True]) for _ in range(rng.randint(0, 20))]
        elif k == 2:
            obj = rng.choice([rng.randint(-2**63, 2**64 - 1), rng.random(), "x" * rng.randint(0, 300),
                              bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))), None, False])
        else:
            obj = [{"a": [1, {"b": None}]}, msgpack.ExtType(rng.randint(0, 127), b"\x01\x02")]
        out.append(msgpack.packb(obj))
    return out


def varint(v):
    b = bytearray()
    while True:
        c = v & 0x7f
        v >>= 7
        b.append(c | (0x80 if v else 0))
        if not v:
            return bytes(b)


def protobuf_msgs(rng, n, depth=0):
    out = []
    for i in range(n):
        m = bytearray()
        for _ in range(rng.randint(1, 12)):
            field = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 16, 20, 100])
            wt = rng.choice([0, 0, 1, 2, 2, 5])
            m += varint(field << 3 | wt)
            if wt == 0:
                m += varint(rng.choice([0, 1, rng.randint(0, 300), rng.getrandbits(40)]))
            elif wt == 1:
                m += struct.pack("<d", rng.random())
            elif wt == 5:
                m += struct.pack("<f", rng.random())
            else:
                body = (protobuf_msgs(rng, 1, depth + 1)[0] if depth < 2 and rng.random() < 0.3
                        else rng.choice([b"hello", "req-%d" % i, bytes(range(rng.randint(0, 40)))]))
                body = body.encode() if isinstance(body, str) else body
                m += varint(len(body)) + body
        out.append(bytes(m))
    return out


def tensors(rng, n):
    """Raw tensor bytes: slices, at random element offsets, of pools of
    i.i.d. values (gaussian float32/float16/bfloat16 at several scales,
    uniform float32, int64 token ids): what an aux-buffer frame carries."""
    m = 1 << 17
    g = [rng.gauss(0, rng.choice([0.02, 1.0, 30.0])) for _ in range(m)]
    f32 = array.array("f", g).tobytes()
    pools = [
        (f32, 4),
        (struct.pack("<%de" % m, *[max(-6e4, min(6e4, v)) for v in g]), 2),
        (b"".join(f32[j + 2:j + 4] for j in range(0, len(f32), 4)), 2),  # bfloat16
        (array.array("q", [rng.randint(0, 150000) for _ in range(m // 4)]).tobytes(), 8),
        (array.array("f", [rng.random() for _ in range(m // 4)]).tobytes(), 4),
    ]
    out = []
    for i in range(n):
        pool, size = rng.choice(pools)
        count = min(int(2 ** rng.uniform(0, 14)), len(pool) // size)
        at = rng.randrange(len(pool) // size - count + 1) * size
        out.append(pool[at:at + count * size])
    return out


def scan(cases, opts):
    return oracle.run_scanner(cases, "--opts", opts)


def random_frames(count, maxlen, seed, opts):
    """(total, [(case, reason)]) of the C-generated random frames."""
    res = subprocess.run([oracle.driver_path(), "--opts", str(opts), "--random", str(count),
                          str(maxlen), str(seed)], capture_output=True, text=True, check=True)
    flagged = []
    for line in res.stdout.splitlines():
        p = line.split()
        if p[0] == "FLAG":
            flagged.append((bytes.fromhex(p[1]), p[2]))
        else:
            assert p[0] == "random" and int(p[3]) == len(flagged), line
    return count, flagged


SIZES = dict(json=6000, vllm=1500, sglang=1500, msgpack=4000, protobuf=20000, tensor=20000,
             random=1000000)


def measure(scale=1.0, seed=7, sizes=SIZES):
    rng = random.Random(seed)
    k = lambda name: max(1, int(sizes[name] * scale))
    corpora = collections.OrderedDict()
    corpora["json"] = json_docs(rng, k("json"))
    corpora["msgpack-vllm"] = vllm_requests(rng, k("vllm"))
    corpora["msgpack-sglang"] = sglang_requests(rng, k("sglang"))
    corpora["msgpack-generic"] = msgpack_generic(rng, k("msgpack"))
    corpora["protobuf"] = protobuf_msgs(rng, k("protobuf"))
    corpora["tensor"] = tensors(rng, k("tensor"))
    rows = []
    for name, cases in corpora.items():
        row = {"corpus": name, "samples": len(cases)}
        for label, opts in (("default", 0), ("stock", 7)):
            out = scan(cases, opts)
            fl = [(c, l.split()[1]) for c, l in zip(cases, out) if l.startswith("PICKLE")]
            row[label] = fl
        rows.append(row)
    n = k("random")
    row = {"corpus": "random", "samples": n}
    for label, opts in (("default", 0), ("stock", 7)):
        row[label] = random_frames(n, 65536, seed, opts)[1]
    rows.append(row)
    # Oracle on every flagged sample.
    for row in rows:
        for label in ("default", "stock"):
            fl = row[label]
            verdicts = oracle.run_oracle([c for c, _ in fl]) if fl else []
            row[label + "_confirmed"] = sum(v.dangerous(stock=label == "stock") for v in verdicts)
            row[label + "_imports"] = sum(r in IMPORT_OPS for _, r in fl)
            row[label + "_reasons"] = dict(collections.Counter(r for _, r in fl))
    return rows


def table(rows):
    out = ["| corpus | samples | default: flagged (rate) | of which find_class | CPython disagrees | "
           "stock: flagged (rate) | CPython disagrees |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        n = r["samples"]
        d, s = len(r["default"]), len(r["stock"])
        out.append("| %s | %d | %d (%.2g) %s | %d | %d | %d (%.2g) | %d |" % (
            r["corpus"], n, d, d / n, r["default_reasons"] or "", r["default_imports"],
            d - r["default_confirmed"], s, s / n, s - r["stock_confirmed"]))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=5)
    a = ap.parse_args()
    print(table(measure(a.scale)))


if __name__ == "__main__":
    main()
