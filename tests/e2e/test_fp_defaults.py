"""No false positives by guesswork (issue 11, item 9): with the route
defaults (pickle_loader "stock": empty copyreg extension registry, no
persistent_load; pickles inside msgpack judged), the relay's inspector
drops nothing that is not a pickle: msgpack maps of every size (they begin
with 0x80-0x8f, pickle's EXT1/2/4 among them), 100,000 random frames and
100,000 float16/float32/int32/int64 tensor frames. The figures are in
tests/scanner/README.md. The same corpora under pickle_loader "any" show
what the old default cost.

Runs the inspector itself (tests/tools/inspect_driver: the code the relay
calls on every data frame), so 200,000 frames take seconds."""

import os
import random
import struct
import subprocess
from pathlib import Path

import msgpack
import numpy as np
import pytest

pytestmark = pytest.mark.nobinary

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(os.environ.get("ZMTPFW_BUILD", REPO / "build")) / "tests" / "inspect_driver"


def run(frames, *args):
    if not DRIVER.exists():
        if os.environ.get("ZMTPFW_REQUIRE"):
            pytest.fail(f"{DRIVER} missing")
        pytest.skip(f"{DRIVER} missing")
    data = b"".join(struct.pack("<I", len(f)) + f for f in frames)
    out = subprocess.run([str(DRIVER), *args], input=data, capture_output=True, check=True,
                         timeout=120).stdout.decode()
    last = out.strip().splitlines()[-1].split()
    assert last[0] == "frames" and int(last[1]) == len(frames), out[-500:]
    return int(last[5]), out


def msgpack_maps():
    rnd = random.Random(11)
    frames = []
    for n in list(range(0, 40)) + [15, 16, 17, 100, 1000, 70000]:
        for _ in range(20 if n < 40 else 2):
            d = {}
            for i in range(n):
                v = rnd.choice([rnd.randint(-2**63, 2**64 - 1), rnd.random(), "s" * rnd.randint(0, 40),
                                bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 64))),
                                [1, 2, 3], None, True])
                d[f"k{i}"] = v
            frames.append(msgpack.packb(d, use_bin_type=True))
    return frames


def random_frames(n=100_000):
    rnd = random.Random(12)
    return [rnd.randbytes(rnd.randint(1, 256)) for _ in range(n)]


def tensor_frames(n=100_000):
    rng = np.random.default_rng(13)
    frames = []
    dtypes = [np.float16, np.float32, np.int32, np.int64]
    for i in range(n):
        dt = dtypes[i % 4]
        k = int(rng.integers(1, 512))
        if dt in (np.float16, np.float32):
            a = rng.standard_normal(k).astype(dt)
        else:
            a = rng.integers(-2**31, 2**31 - 1, size=k).astype(dt)
        frames.append(a.tobytes())
    return frames


@pytest.mark.timeout_s(300)
@pytest.mark.parametrize("corpus", ["msgpack-maps", "random", "tensors"])
def test_defaults_drop_nothing_that_is_not_pickle(corpus):
    frames = {"msgpack-maps": msgpack_maps, "random": random_frames, "tensors": tensor_frames}[corpus]()
    drops, out = run(frames)
    assert drops == 0, out[:2000]


@pytest.mark.timeout_s(300)
def test_the_old_default_would_drop_msgpack_maps():
    """pickle_loader "any" (a worker with copyreg extensions) counts EXT as an
    import: every map of 2-4 entries starts with one. The check can fail."""
    maps = [msgpack.packb({"a": 1, "b": 2}), msgpack.packb({"a": 1, "b": 2, "c": 3})]
    drops, _ = run(maps, "--loader", "any")
    assert drops == 2


@pytest.mark.timeout_s(120)
def test_a_pickle_among_them_is_dropped():
    """The same driver drops a pickle and a pickle inside msgpack: the zero
    above is not a driver that never drops."""
    pk = b"cos\nsystem\n(S'id'\ntR."
    frames = random_frames(1000) + [pk, msgpack.packb({"x": msgpack.ExtType(1, pk)})]
    drops, out = run(frames)
    assert drops == 2, out
