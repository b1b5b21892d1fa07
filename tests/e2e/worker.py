#!/usr/bin/python3
"""A stand-in for a Python inference worker, for the end-to-end tests.

(--load file uses pickle.load(io.BytesIO(frame)) instead: CPython's file
path, which treats FRAME boundaries differently from loads.)

It binds a PULL, REP or ROUTER socket and, for every message, does what a
real worker using ``recv_pyobj`` does to every payload frame:
``pickle.loads(frame)`` inside try/except. That call is the attack surface
zmtpfw protects: an attack pickle that gets through creates a marker file.

Every received message is appended as one JSON line to the record file:
  {"type": "msg", "frames": ["<hex>" | {"len": N, "sha256": "<hex>"}, ...],
   "loaded": [<repr of pickle.loads result> | null, ...]}
(ROUTER: the identity frame and an empty delimiter are not recorded.)
Frames over 1 MiB are recorded as length + sha256, never as hex.
Connection events of the bound socket (from a libzmq socket monitor) are
recorded too: {"type": "event", "event": "ACCEPTED", ...}, so a test can
assert that nobody ever connected.

REP and ROUTER echo every message back unchanged.

--decode says what the worker does with each payload frame (default
"pickle": pickle.loads, as above). The other modes stand in for engines that
unpickle inside other formats (tests/e2e/gadgets.py):
  vllm-shm        pickle.loads, then, when the result is a tuple or list
                  whose first item is bytes (shm_broadcast's
                  (method, args, kwargs, rank)), pickle.loads of that item too
  msgpack-vllm    msgpack.unpackb with an ext_hook that unpickles ext types 1
                  (pickle) and 2 (cloudpickle), as vLLM V1 does under
                  VLLM_ALLOW_INSECURE_SERIALIZATION
  msgpack-sglang  msgpack.unpackb, then every ["PickleWrapper", <bin>] found
                  at top level or inside lists and map values is unpickled
--sys-path DIR (repeatable) puts DIR first on sys.path, for fake engine modules.

Prints "ready" on stdout once bound. Stops on SIGTERM/SIGINT.
"""

import argparse
import hashlib
import io
import json
import os
import pickle
import signal
import sys

import zmq
from zmq.utils.monitor import recv_monitor_message

BIG = 1 << 20

_stop = False


def _on_signal(signum, frame):
    global _stop
    _stop = True


def frame_repr(f):
    if len(f) > BIG:
        return {"len": len(f), "sha256": hashlib.sha256(f).hexdigest()}
    return f.hex()


def _vllm_ext_hook(code, data):
    import msgpack
    if code == 1:
        return pickle.loads(data)
    if code == 2:
        try:
            import cloudpickle
            return cloudpickle.loads(data)
        except ImportError:
            return pickle.loads(data)
    return msgpack.ExtType(code, data)


def _sglang_unwrap(obj):
    if isinstance(obj, (list, tuple)):
        if len(obj) == 2 and obj[0] == "PickleWrapper" and isinstance(obj[1], (bytes, bytearray)):
            return pickle.loads(obj[1])
        return [_sglang_unwrap(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _sglang_unwrap(v) for k, v in obj.items()}
    return obj


def decode(f, how):
    if how == "vllm-shm":
        obj = pickle.loads(f)
        if isinstance(obj, (tuple, list)) and obj and isinstance(obj[0], (bytes, bytearray)):
            obj = (pickle.loads(obj[0]),) + tuple(obj[1:])
        return obj
    import msgpack
    if how == "msgpack-vllm":
        return msgpack.unpackb(f, ext_hook=_vllm_ext_hook, raw=False, strict_map_key=False)
    if how == "msgpack-sglang":
        return _sglang_unwrap(msgpack.unpackb(f, raw=False, strict_map_key=False))
    raise ValueError(how)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--type", choices=["PULL", "REP", "ROUTER"], default="PULL")
    ap.add_argument("--bind", required=True, help="tcp://127.0.0.1:PORT or ipc:///path")
    ap.add_argument("--record", required=True)
    ap.add_argument("--no-unpickle", action="store_true",
                    help="only record frames, never pickle.loads them")
    ap.add_argument("--load", choices=["loads", "file"], default="loads",
                    help="loads: pickle.loads(frame) (recv_pyobj); file: pickle.load(BytesIO(frame)), "
                         "the path a worker replaying frames saved as .pkl files takes")
    ap.add_argument("--decode", choices=["pickle", "vllm-shm", "msgpack-vllm", "msgpack-sglang"],
                    default="pickle", help="what to do with each payload frame (see above)")
    ap.add_argument("--sys-path", action="append", default=[], metavar="DIR",
                    help="prepend DIR to sys.path (fake engine modules)")
    args = ap.parse_args()
    for d in reversed(args.sys_path):
        sys.path.insert(0, d)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    ctx = zmq.Context()
    sock = ctx.socket(getattr(zmq, args.type))
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    # 64 MiB test message and larger must get through libzmq unhindered.
    sock.setsockopt(zmq.MAXMSGSIZE, -1)
    mon = sock.get_monitor_socket()
    sock.bind(args.bind)

    rec = open(args.record, "a", buffering=1)
    print("ready", flush=True)

    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(mon, zmq.POLLIN)
    while not _stop:
        try:
            ready = dict(poller.poll(100))
        except zmq.ZMQError:
            continue  # EINTR on signal
        if mon in ready:
            while True:
                try:
                    ev = recv_monitor_message(mon, zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    name = zmq.Event(ev["event"]).name
                except ValueError:
                    name = str(ev["event"])
                rec.write(json.dumps({"type": "event", "event": name,
                                      "endpoint": ev["endpoint"].decode(errors="replace")}) + "\n")
        if sock in ready:
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                payload = frames
                if args.type == "ROUTER":
                    payload = frames[1:]
                    if payload and payload[0] == b"":
                        payload = payload[1:]
                loaded = []
                for f in payload:
                    if args.no_unpickle:
                        loaded.append(None)
                        continue
                    try:
                        if args.decode != "pickle":
                            obj = decode(f, args.decode)
                        elif args.load == "file":
                            obj = pickle.load(io.BytesIO(f))
                        else:
                            obj = pickle.loads(f)  # what recv_pyobj does
                        loaded.append(repr(obj))
                    except Exception:
                        loaded.append(None)
                rec.write(json.dumps({"type": "msg",
                                      "frames": [frame_repr(f) for f in payload],
                                      "loaded": loaded}) + "\n")
                if args.type in ("REP", "ROUTER"):
                    sock.send_multipart(frames)
                if args.type == "REP":
                    break  # REP must alternate recv/send
    rec.close()
    mon.close(0)
    sock.close(0)
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
