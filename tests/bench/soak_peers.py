#!/usr/bin/python3
"""Legitimate side of the soak benchmark (tests/bench/soak.sh).

  soak_peers.py worker --pull PORT --rep PORT --out FILE
      A pyzmq PULL and a REP socket. Every PULL message is checked: its
      header frame names the stream (client, connection number), the
      sequence number, the size of every body frame and the SHA-256 of
      the body; the stream's messages must arrive in order, each once,
      byte for byte. REP echoes. FILE (JSON, rewritten every second and at
      SIGTERM): per stream the next expected sequence number and bytes,
      plus every error seen (foreign messages, gaps, bad digests).

  soak_peers.py legit --push EP --req EP --out FILE [--clients N] [--rate R]
                      [--churn-every S]
      N persistent PUSH clients (R messages/s each), one churn client that
      opens a fresh PUSH connection every S seconds (confirms its
      handshake, sends 10 messages, closes and flushes), one REQ client
      checking every reply byte for byte. All from 127.0.0.1. At SIGTERM
      they stop, flush (linger) and FILE says what each stream sent.

Messages: a JSON header frame, then 1..4 body frames, each 64 B .. 1 MiB
(log-uniform), at most 2 MiB in all; a body frame starts with "{" so it is
neither a pickle nor a msgpack object.
"""

import argparse
import hashlib
import json
import math
import os
import random
import signal
import sys
import threading
import time

import zmq

STOP = threading.Event()
MAX_MSG = 2 << 20


def on_term(*_):
    STOP.set()


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def digest(frames):
    h = hashlib.sha256()
    for f in frames:
        h.update(len(f).to_bytes(8, "big"))
        h.update(f)
    return h.hexdigest()


# ---- worker ----------------------------------------------------------------

def worker(a):
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    rep = ctx.socket(zmq.REP)
    for s in (pull, rep):
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.MAXMSGSIZE, -1)
    pull.bind(f"tcp://127.0.0.1:{a.pull}")
    rep.bind(f"tcp://127.0.0.1:{a.rep}")
    streams = {}   # "client/conn" -> {"next": seq expected, "bytes": body bytes}
    errors = []    # first 50 problems
    nerr = [0]
    st = {"messages": 0, "bytes": 0, "foreign": 0, "rep_echoed": 0}

    def error(msg):
        nerr[0] += 1
        if len(errors) < 50:
            errors.append(msg)

    def check(frames):
        try:
            h = json.loads(frames[0])
            key = f'{h["c"]}/{h["k"]}'
            seq, sizes, want = h["q"], h["z"], h["h"]
        except (ValueError, KeyError, TypeError):
            st["foreign"] += 1
            error(f"foreign message: {len(frames)} frame(s), first {frames[0][:48]!r}")
            return
        body = frames[1:]
        s = streams.setdefault(key, {"next": 0, "bytes": 0})
        if [len(f) for f in body] != sizes or digest(body) != want:
            error(f"{key} #{seq}: body differs (sizes {[len(f) for f in body]} vs {sizes})")
        if seq != s["next"]:
            error(f"{key}: got #{seq}, expected #{s['next']} (gap, duplicate or reorder)")
        s["next"] = max(s["next"], seq + 1)
        s["bytes"] += sum(sizes)
        st["messages"] += 1
        st["bytes"] += sum(sizes)

    def dump():
        write_json(a.out, dict(st, streams=streams, errors=errors, n_errors=nerr[0]))

    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    poller.register(rep, zmq.POLLIN)
    print("ready", flush=True)
    last = 0.0
    while not STOP.is_set():
        try:
            ready = dict(poller.poll(100))
        except zmq.ZMQError:
            continue
        for _ in range(200):
            if pull not in ready:
                break
            try:
                check(pull.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
        if rep in ready:
            try:
                rep.send_multipart(rep.recv_multipart(zmq.NOBLOCK))
                st["rep_echoed"] += 1
            except zmq.Again:
                pass
        if time.monotonic() - last >= 1.0:
            dump()
            last = time.monotonic()
    dump()
    ctx.destroy(0)


# ---- legitimate clients ----------------------------------------------------

POOL = os.urandom(4 << 20)


class Stream:
    """One connection's message sequence: makes messages, counts them."""

    def __init__(self, client, k, rnd):
        self.client, self.k, self.rnd = client, k, rnd
        self.sent = self.bytes = 0

    def frame(self, n):
        off = self.rnd.randrange(len(POOL) - n)
        return b"{" + POOL[off:off + n - 1]

    def next_message(self):
        sizes = []
        for _ in range(self.rnd.choice((1, 1, 1, 2, 3, 4))):
            n = int(math.exp(self.rnd.uniform(math.log(64), math.log(1 << 20))))
            if sum(sizes) + n > MAX_MSG:
                break
            sizes.append(n)
        sizes = sizes or [64]
        body = [self.frame(n) for n in sizes]
        head = json.dumps({"c": self.client, "k": self.k, "q": self.sent, "z": sizes,
                           "h": digest(body)}, separators=(",", ":")).encode()
        return [head] + body

    def count(self, msg):
        self.sent += 1
        self.bytes += sum(len(f) for f in msg[1:])

    def summary(self):
        return {"sent": self.sent, "bytes": self.bytes}


def handshaken(mon, timeout):
    """True once the monitor reports the ZMTP handshake done (with the worker,
    through zmtpfw: zmtpfw relays the worker's greeting and READY)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mon.poll(200):
            ev = mon.recv_multipart()
            if int.from_bytes(ev[0][:2], "little") == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return True
    return False


def pusher(ep, name, rate, streams, rnd):
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 60000)
    s.connect(ep)
    st = streams[f"{name}/0"] = Stream(name, 0, rnd)
    t = time.monotonic()
    s.setsockopt(zmq.SNDTIMEO, 1000)
    while not STOP.is_set():
        msg = st.next_message()
        while not STOP.is_set():
            try:
                s.send_multipart(msg)
            except zmq.Again:  # high-water mark: zmtpfw or the worker is behind
                continue
            st.count(msg)
            break
        t += rnd.expovariate(rate)
        STOP.wait(max(0.0, t - time.monotonic()))
    s.close()
    ctx.term()  # returns once every queued message is written (linger)


def churner(ep, every, streams, conns, rnd):
    k = 0
    while not STOP.wait(every if k else 0):
        ctx = zmq.Context()
        s = ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.LINGER, 60000)
        mon = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        s.connect(ep)
        conns["opened"] += 1
        ok = handshaken(mon, 30)
        conns["handshaken"] += ok
        st = streams[f"churn/{k}"] = Stream("churn", k, rnd)
        for _ in range(10):
            msg = st.next_message()
            s.send_multipart(msg)
            st.count(msg)
        s.disable_monitor()
        mon.close(0)
        s.close()
        ctx.term()
        k += 1


def requester(ep, req, rnd):
    ctx = zmq.Context()
    s = None
    while not STOP.is_set():
        if s is None:
            s = ctx.socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVTIMEO, 30000)
            s.connect(ep)
            req["sockets"] += 1
        n = int(math.exp(rnd.uniform(math.log(64), math.log(256 << 10))))
        off = rnd.randrange(len(POOL) - n)
        msg = [b'{"req":%d}' % req["sent"], b"{" + POOL[off:off + n - 1]]
        s.send_multipart(msg)
        req["sent"] += 1
        try:
            got = s.recv_multipart()
        except zmq.Again:
            req["timeouts"] += 1  # a REQ must be reset after a lost reply
            s.close()
            s = None
            continue
        if got == msg:
            req["ok"] += 1
        else:
            req["mismatch"] += 1
        STOP.wait(0.02)
    if s is not None:
        s.close()
    ctx.term()


def legit(a):
    streams, conns = {}, {"opened": 0, "handshaken": 0}
    req = {"sent": 0, "ok": 0, "mismatch": 0, "timeouts": 0, "sockets": 0}
    seed = random.Random(a.seed)
    threads = [threading.Thread(target=pusher, args=(a.push, f"push{i}", a.rate, streams,
                                                     random.Random(seed.random())))
               for i in range(a.clients)]
    threads.append(threading.Thread(target=churner, args=(a.push, a.churn_every, streams, conns,
                                                          random.Random(seed.random()))))
    threads.append(threading.Thread(target=requester, args=(a.req, req, random.Random(seed.random()))))
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join()
    write_json(a.out, {"streams": {k: s.summary() for k, s in streams.items()},
                       "churn": conns, "req": req,
                       "connections": a.clients + conns["opened"] + req["sockets"]})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--pull", type=int, required=True)
    w.add_argument("--rep", type=int, required=True)
    w.add_argument("--out", required=True)
    c = sub.add_parser("legit")
    c.add_argument("--push", required=True)
    c.add_argument("--req", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--clients", type=int, default=4)
    c.add_argument("--rate", type=float, default=20.0)
    c.add_argument("--churn-every", type=float, default=3.0)
    c.add_argument("--seed", type=int, default=12)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    (worker if a.cmd == "worker" else legit)(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
