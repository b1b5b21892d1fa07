#!/usr/bin/python3
"""Attackers of the soak benchmark (tests/bench/soak.sh). Each mode runs
until SIGTERM, then writes a JSON summary to --out.

  slow     --conns N: raw connections sending the greeting one byte a
           second; when zmtpfw closes one (handshake_timeout_ms), reconnect.
  slots    open connections, complete the ZMTP handshake, idle; refill until
           refused (max_connections_per_peer), and again after every close
           (idle_timeout_ms).
  memory   --conns N --kind more|scan: handshake, then hold memory in zmtpfw
           at --mibps MiB/s per connection: "more" sends clean 1 MiB frames
           with MORE and never ends the message; "scan" sends one frame
           (MORE) of --frame-mib MiB that is a PROTO 5 + BINBYTES8 pickle
           whose bytes value fills the frame, so no verdict is possible
           before the frame's last byte. Reconnect when closed.
  metrics  --conns N idle connections to the metrics port (reconnected when
           closed) and --getters threads fetching /metrics back to back.
  flood    one connection sending pickle messages (GLOBAL os.system) as
           fast as it can (or --rate msg/s); at SIGTERM it half-closes and
           waits for zmtpfw to finish, so "sent" is exactly what zmtpfw read.

--source ADDR binds every connection to that loopback address.
"""

import argparse
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import zmtp_raw as Z  # noqa: E402
from soak_check import http_get  # noqa: E402

STOP = threading.Event()
LOCK = threading.Lock()
MIB = 1 << 20


def bump(st, key, n=1):
    with LOCK:
        st[key] = st.get(key, 0) + n


def closed_by_peer(sock):
    """True when the peer has closed or reset (what it sent is discarded)."""
    try:
        while select.select([sock], [], [], 0)[0]:
            if sock.recv(65536) == b"":
                return True
        return False
    except OSError:
        return True


def dial(a, timeout=10.0):
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.bind((a.source, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", a.port))
    return s


def zmtp(a):
    """A connection that completed the handshake (through zmtpfw, with the
    worker), or None when it was refused or closed before."""
    try:
        c = Z.RawClient("127.0.0.1", a.port, source=a.source, timeout=10)
        c.handshake("PUSH")
        return c
    except (Z.Closed, OSError, TimeoutError, AssertionError):
        return None


def slow(a, st):
    greeting = Z.full_greeting()
    conns = []  # [socket, bytes sent]
    while not STOP.is_set():
        while len(conns) < a.conns:
            try:
                conns.append([dial(a), 0])
                bump(st, "opened")
            except OSError:
                bump(st, "refused")
                break
        for c in conns[:]:
            if closed_by_peer(c[0]):
                bump(st, "closed_by_zmtpfw")
                st["max_greeting_bytes"] = max(st.get("max_greeting_bytes", 0), c[1])
                c[0].close()
                conns.remove(c)
                continue
            try:
                c[0].send(greeting[c[1]:c[1] + 1])
                c[1] += 1
            except OSError:
                pass  # seen as closed next round
            if c[1] >= len(greeting):
                bump(st, "greeting_completed")  # would mean the timeout never fired
        STOP.wait(1.0)
    for c in conns:
        c[0].close()


def slots(a, st):
    held = []

    def prune():
        for c in held[:]:
            if closed_by_peer(c.sock):
                bump(st, "closed_by_zmtpfw")
                c.close()
                held.remove(c)

    def fill():  # 8 of these at once: a loaded machine handshakes slowly
        while not STOP.is_set():
            c = zmtp(a)
            if c is None:
                bump(st, "refused")
                return
            bump(st, "opened")
            with LOCK:
                held.append(c)

    while not STOP.is_set():
        prune()
        ts = [threading.Thread(target=fill) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        # zmtpfw closed whatever it closed before refusing: on loopback
        # those FINs are here, so what is left is what zmtpfw counts.
        prune()
        st["max_held"] = max(st.get("max_held", 0), len(held))
        STOP.wait(1.0)
    for c in held:
        c.close()


def zmtp_counted(a, st):
    """zmtp(), counted as opened or refused (then a second's pause)."""
    c = zmtp(a)
    bump(st, "refused" if c is None else "opened")
    if c is None:
        STOP.wait(1.0)
    return c


def memory_conn(a, st):
    chunk = Z.encode_frame(b"{" + bytes(MIB - 1), more=True)
    fsize = a.frame_mib * MIB
    pick = b"\x80\x05\x8e" + struct.pack("<Q", fsize - 11)  # PROTO 5, BINBYTES8 to the frame's end
    scan_head = Z.encode_frame(b"", more=True, long=True, size=fsize) + pick
    zeros = bytes(MIB)
    while not STOP.is_set():
        c = zmtp_counted(a, st)
        if c is None:
            continue
        sent, left, t0 = 0, 0, time.monotonic()
        try:
            while not STOP.is_set():
                if a.kind == "more":
                    data = chunk
                elif left == 0:  # a new frame (the next one breaks max_message_size)
                    data, left = scan_head, fsize - len(pick)
                else:
                    data = zeros[:min(MIB, left)]
                    left -= len(data)
                c.sock.settimeout(30)
                c.sock.sendall(data)
                sent += len(data)
                # Paced: a loaded 2-core machine must not be saturated by it.
                STOP.wait(max(0.0, t0 + sent / (a.mibps * MIB) - time.monotonic()))
        except OSError:
            bump(st, "closed_by_zmtpfw")
        with LOCK:
            st["max_bytes_one_conn"] = max(st.get("max_bytes_one_conn", 0), sent)
            st["bytes"] = st.get("bytes", 0) + sent
        c.close()


def memory(a, st):
    ts = [threading.Thread(target=memory_conn, args=(a, st)) for _ in range(a.conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def metrics_get(a, st):
    while not STOP.is_set():
        code, _ = http_get(f"127.0.0.1:{a.port}", "/metrics", timeout=10, source=a.source)
        bump(st, "gets_ok" if code == 200 else "gets_failed")
        if code is None:
            STOP.wait(0.05)


def metrics(a, st):
    ts = [threading.Thread(target=metrics_get, args=(a, st)) for _ in range(a.getters)]
    for t in ts:
        t.start()
    idle = []
    while not STOP.is_set():
        for s in idle[:]:
            if closed_by_peer(s):
                bump(st, "idle_closed")
                s.close()
                idle.remove(s)
        while len(idle) < a.conns:
            try:
                idle.append(dial(a, 2))
                bump(st, "idle_opened")
            except OSError:
                bump(st, "idle_refused")
                break
        STOP.wait(0.5)
    for s in idle:
        s.close()
    for t in ts:
        t.join()


def flood(a, st):
    pickle = b"cos\nsystem\n(S'true'\ntR."  # protocol 0: GLOBAL os.system
    batch = 100
    msgs = Z.encode_frame(pickle) * (batch // 2) + \
        (Z.encode_message([b'{"job":1}', pickle])) * (batch // 2)
    c, t0 = None, time.monotonic()
    while not STOP.is_set():
        if c is None:
            c = zmtp_counted(a, st)
            if c is None:
                continue
            c.sock.settimeout(30)
        try:
            c.sock.sendall(msgs)
            bump(st, "sent", batch)
        except OSError:
            bump(st, "closed_by_zmtpfw")  # the batch's fate is unknown
            c.close()
            c = None
            continue
        if a.rate:
            STOP.wait(max(0.0, t0 + st["sent"] / a.rate - time.monotonic()))
    if c is not None:  # zmtpfw closes after reading everything: "sent" was all judged
        c.sock.shutdown(socket.SHUT_WR)
        st["drained"] = c.wait_closed(60)
        c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["slow", "slots", "memory", "metrics", "flood"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--source", default="127.0.0.1")
    ap.add_argument("--out", required=True)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--kind", choices=["more", "scan"], default="more")
    ap.add_argument("--mibps", type=float, default=32.0)
    ap.add_argument("--frame-mib", type=int, default=40)
    ap.add_argument("--getters", type=int, default=2)
    ap.add_argument("--rate", type=float, default=0.0)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    signal.signal(signal.SIGINT, lambda *_: STOP.set())
    st = {"mode": a.mode, "source": a.source}
    t = threading.Thread(target=globals()[a.mode], args=(a, st))
    t.start()
    print("ready", flush=True)
    while t.is_alive():
        t.join(0.5)
    with open(a.out, "w") as f:
        json.dump(st, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
