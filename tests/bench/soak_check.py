#!/usr/bin/python3
"""Observer and judge of the soak benchmark (tests/bench/soak.sh).

  soak_check.py watch --pid PID --metrics HOST:PORT --dir WORK
      Every second: zmtpfw's VmRSS (WORK/rss.txt, "seconds KiB"). Meanwhile,
      one after the other, GET /healthz and GET /metrics (30 s allowed for
      each: the metrics flood keeps the endpoint's 32 connections busy).
      At SIGTERM: a last /metrics scrape (WORK/metrics.txt) and /healthz,
      then WORK/watch.json.

  soak_check.py report --dir WORK --max-memory BYTES --slack BYTES ...
      Reads what every process wrote, zmtpfw's log and the last scrape,
      prints the results, and exits 1 when an assertion failed.
"""

import argparse
import collections
import json
import os
import re
import signal
import socket
import sys
import threading
import time

STOP = threading.Event()


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def http_get(addr, path, timeout=30.0, source=None):
    """(status, body) or (None, error text)."""
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout,
                                      source_address=(source, 0) if source else None) as s:
            s.settimeout(timeout)
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode(errors="replace")
    except (OSError, ValueError, IndexError) as e:
        return None, repr(e)


def watch(a):
    samples = []
    probes = collections.Counter()
    slowest = [0.0]
    held = []
    t0 = time.monotonic()

    def prober():
        while not STOP.is_set():
            for path in ("/healthz", "/metrics"):
                t = time.monotonic()
                code, body = http_get(a.metrics, path)
                slowest[0] = max(slowest[0], time.monotonic() - t)
                m = re.search(r"^zmtpfw_memory_bytes (\d+)", body, re.M) if code == 200 else None
                if m:  # the budget's own count, next to RSS at the same moment
                    held.append((int(m.group(1)), rss_kib(a.pid) or 0))
                probes[f"{path} {'ok' if code == 200 else 'failed'}"] += 1
            STOP.wait(1.0)

    th = threading.Thread(target=prober, daemon=True)
    th.start()
    with open(os.path.join(a.dir, "rss.txt"), "w") as out:
        while not STOP.is_set():
            r = rss_kib(a.pid)
            if r is None:
                break
            samples.append(r)
            out.write(f"{time.monotonic() - t0:.1f} {r}\n")
            out.flush()
            STOP.wait(1.0)
    th.join(35)
    code, text = http_get(a.metrics, "/metrics")
    with open(os.path.join(a.dir, "metrics.txt"), "w") as f:
        f.write(text if code == 200 else "")
    hz, _ = http_get(a.metrics, "/healthz")
    with open(os.path.join(a.dir, "watch.json"), "w") as f:
        json.dump({"samples": len(samples), "baseline_kib": samples[0] if samples else None,
                   "peak_kib": max(samples) if samples else None,
                   "last_kib": samples[-1] if samples else None, "alive": rss_kib(a.pid) is not None,
                   "probes": dict(probes), "slowest_probe_s": round(slowest[0], 1),
                   "held_max": max(held) if held else None, "held_scrapes": len(held),
                   "final_metrics": code == 200, "final_healthz": hz == 200}, f)


# ---- report ------------------------------------------------------------------

def load(work, name):
    try:
        with open(os.path.join(work, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def metric_sums(text):
    """{(name, reason or ""): value}, summed over routes and directions."""
    out = collections.Counter()
    for line in text.splitlines():
        m = re.match(r'(zmtpfw_\w+)(?:\{([^}]*)\})? (\S+)$', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels.get("reason", ""))] += float(m.group(3))
    return out


def report(a):
    w = a.dir
    fail = []
    worker, legit, watchd = load(w, "worker.json"), load(w, "legit.json"), load(w, "watch.json")
    att = {m: load(w, f"attack-{m}.json") or {} for m in ("slow", "slots", "memory-more", "memory-scan",
                                                           "metrics", "flood")}
    for name, d in (("worker", worker), ("legit clients", legit), ("watcher", watchd)):
        if d is None:
            fail.append(f"{name}: no summary written")
    for m, d in att.items():
        if not d:
            fail.append(f"attacker {m}: no summary written")
    worker, legit, watchd = worker or {}, legit or {}, watchd or {}

    # -- legitimate traffic: every stream complete, in order, byte for byte --
    sent_msgs = sum(s["sent"] for s in legit.get("streams", {}).values())
    sent_bytes = sum(s["bytes"] for s in legit.get("streams", {}).values())
    got = worker.get("streams", {})
    for key, s in legit.get("streams", {}).items():
        g = got.get(key, {"next": 0, "bytes": 0})
        if (g["next"], g["bytes"]) != (s["sent"], s["bytes"]):
            fail.append(f"stream {key}: sent {s['sent']} messages ({s['bytes']} B), "
                        f"worker has {g['next']} ({g['bytes']} B)")
    for key in got.keys() - legit.get("streams", {}).keys():
        fail.append(f"stream {key} reached the worker but no client sent it")
    if worker.get("n_errors"):
        fail.append(f"worker saw {worker['n_errors']} error(s), e.g. {worker['errors'][:3]}")
    if worker.get("messages") != sent_msgs:
        fail.append(f"worker received {worker.get('messages')} messages, clients sent {sent_msgs}")
    churn = legit.get("churn", {})
    if not churn.get("opened") or churn.get("handshaken") != churn.get("opened"):
        fail.append(f"fresh legit connections: {churn.get('handshaken')} of {churn.get('opened')} handshaken")
    req = legit.get("req", {})
    if not req.get("ok") or req.get("mismatch") or req.get("timeouts"):
        fail.append(f"REQ/REP: {req}")

    # -- zmtpfw's log, per source address --
    per = collections.defaultdict(collections.Counter)
    closes = collections.defaultdict(collections.Counter)
    flood_dropped = 0
    with open(os.path.join(w, "zmtpfw.log"), errors="replace") as f:
        for line in f:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            ev = d.get("event")
            peer = d.get("peer") or "-"
            peer = peer.rsplit(":", 1)[0] if ev != "suppressed" else peer  # "suppressed" has no port
            per[peer][ev] += 1
            # The rate limiter's count of lines it did not write: on the
            # source's next line of that event, or in a "suppressed" line.
            n, of = (d.get("count", 0), d.get("of")) if ev == "suppressed" else (d.get("suppressed", 0), ev)
            per[peer]["suppressed lines"] += n
            per[peer]["suppressed " + str(of)] += n
            if ev == "close":
                closes[peer][d.get("reason")] += 1
                if peer == a.flood_source:
                    flood_dropped += d.get("dropped", 0)
    legit_peer = per.get("127.0.0.1", collections.Counter())
    bad_legit = {r: n for r, n in closes.get("127.0.0.1", {}).items() if r not in ("client-closed", "shutdown")}
    if bad_legit:
        fail.append(f"zmtpfw closed legit connections: {bad_legit}")
    if legit_peer["suppressed lines"]:
        fail.append(f"{legit_peer['suppressed lines']} log lines of the legit peer were suppressed")
    if legit_peer["accept"] < legit.get("connections", 1):
        fail.append(f"legit peer: {legit_peer['accept']} accept lines for {legit.get('connections')} connections")
    if legit_peer["reject"]:
        fail.append(f"legit peer: {legit_peer['reject']} connections rejected")
    fl = per.get(a.flood_source, collections.Counter())
    fsent = att["flood"].get("sent", 0)
    if not fsent:
        fail.append("the pickle flood sent nothing")
    if att["flood"].get("closed_by_zmtpfw"):
        if flood_dropped > fsent:
            fail.append(f"flood: {flood_dropped} drops for {fsent} pickles sent")
    elif flood_dropped != fsent:
        fail.append(f"flood: zmtpfw dropped {flood_dropped} of {fsent} pickle messages")
    # Its drops are visible: the first burst written, the rest counted.
    if fl["drop"] < min(100, fsent) or fl["drop"] + fl["suppressed drop"] != flood_dropped:
        fail.append(f"flood: {fl['drop']} drop lines + {fl['suppressed drop']} suppressed "
                    f"for {flood_dropped} drops")

    # -- attackers got what they deserved --
    if att["slow"].get("greeting_completed"):
        fail.append("a slow greeting completed: handshake_timeout_ms did not fire")
    if not att["slow"].get("closed_by_zmtpfw"):
        fail.append("no slow greeting was closed by zmtpfw")
    if att["slots"].get("max_held") != a.per_peer:
        fail.append(f"slot holder held {att['slots'].get('max_held')} connections, limit {a.per_peer}")
    mem_closed = att["memory-more"].get("closed_by_zmtpfw", 0) + att["memory-scan"].get("closed_by_zmtpfw", 0)
    if not mem_closed:
        fail.append("no memory-holding connection was ever closed")

    # -- metrics, RSS, liveness --
    ms = metric_sums(open(os.path.join(w, "metrics.txt")).read()) if os.path.exists(
        os.path.join(w, "metrics.txt")) else collections.Counter()
    if not ms:
        fail.append("the last /metrics scrape failed")
    elif a.max_memory and not ms[("zmtpfw_connections_closed_total", "memory")]:
        fail.append("no connection closed with reason memory")
    pr = watchd.get("probes", {})
    for p in ("/healthz", "/metrics"):
        if not pr.get(f"{p} ok") or pr.get(f"{p} failed"):
            fail.append(f"{p} during the flood: {pr.get(p + ' ok', 0)} ok, {pr.get(p + ' failed', 0)} failed")
    if not watchd.get("alive") or not watchd.get("final_healthz"):
        fail.append("zmtpfw was not alive and healthy at the end")
    if a.exit_status != 0:
        fail.append(f"zmtpfw exited with status {a.exit_status} on SIGTERM")
    base, peak = watchd.get("baseline_kib") or 0, watchd.get("peak_kib") or 0
    try:  # RSS a minute in: against the peak, whether it still grew later
        with open(os.path.join(w, "rss.txt")) as f:
            at60 = next((int(k) for t, k in (ln.split() for ln in f) if float(t) >= 60), 0)
    except (OSError, ValueError):
        at60 = 0
    bound = (a.max_memory + a.slack) // 1024 + base
    if a.max_memory and not peak < bound:
        fail.append(f"peak RSS {peak} KiB >= bound {bound} KiB")

    # -- the table --
    mib = lambda k: f"{k / 1024:.1f} MiB"  # noqa: E731
    rows = [
        ("legit messages sent / received (checked byte for byte, in order per connection)",
         f"{sent_msgs} / {worker.get('messages')}"),
        ("legit bytes sent / received", f"{sent_bytes} / {worker.get('bytes')}"),
        ("legit connections (fresh ones handshaken)",
         f"{legit.get('connections')} ({churn.get('handshaken')} of {churn.get('opened')})"),
        ("REQ→REP round trips ok / sent", f"{req.get('ok')} / {req.get('sent')}"),
        ("zmtpfw RSS: at start / after 60 s / peak / bound / after the attacks",
         f"{mib(base)} / {mib(at60)} / {mib(peak)} / {mib(bound)} / {mib(watchd.get('last_kib') or 0)}"
         + ("" if a.max_memory else " (no max_memory)")),
        ("RSS samples", watchd.get("samples")),
        ("largest zmtpfw_memory_bytes scraped (RSS at that moment)",
         f"{(watchd.get('held_max') or [0])[0] / (1 << 20):.1f} MiB ({mib((watchd.get('held_max') or [0, 0])[1])}), "
         f"{watchd.get('held_scrapes')} scrapes"),
        ("/healthz, /metrics during the flood (ok/failed; slowest)",
         f"{pr.get('/healthz ok', 0)}/{pr.get('/healthz failed', 0)}, "
         f"{pr.get('/metrics ok', 0)}/{pr.get('/metrics failed', 0)}; {watchd.get('slowest_probe_s')} s"),
        ("slow greetings: opened / closed by zmtpfw / most bytes before close",
         f"{att['slow'].get('opened')} / {att['slow'].get('closed_by_zmtpfw')} / "
         f"{att['slow'].get('max_greeting_bytes')}"),
        ("slot holder: most held / refused / closed by zmtpfw",
         f"{att['slots'].get('max_held')} / {att['slots'].get('refused')} / {att['slots'].get('closed_by_zmtpfw')}"),
        ("memory (MORE): opened / closed / most MiB sent on one",
         f"{att['memory-more'].get('opened')} / {att['memory-more'].get('closed_by_zmtpfw')} / "
         f"{att['memory-more'].get('max_bytes_one_conn', 0) / (1 << 20):.0f}"),
        ("memory (BINBYTES8): opened / closed / most MiB sent on one",
         f"{att['memory-scan'].get('opened')} / {att['memory-scan'].get('closed_by_zmtpfw')} / "
         f"{att['memory-scan'].get('max_bytes_one_conn', 0) / (1 << 20):.0f}"),
        ("metrics flood: GETs ok / failed, idle connections opened / closed by zmtpfw",
         f"{att['metrics'].get('gets_ok')} / {att['metrics'].get('gets_failed', 0)}, "
         f"{att['metrics'].get('idle_opened')} / {att['metrics'].get('idle_closed')}"),
        ("pickle flood: sent / dropped (close lines)", f"{fsent} / {flood_dropped}"),
    ]
    print("| soak | result |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print("\nClosed connections by reason (/metrics), and drops:\n")
    print("| counter | value |\n|---|---|")
    for (name, reason), v in sorted(ms.items()):
        if name in ("zmtpfw_connections_closed_total", "zmtpfw_connections_rejected_total",
                    "zmtpfw_handshake_failures_total", "zmtpfw_messages_dropped_total",
                    "zmtpfw_connections_accepted_total", "zmtpfw_messages_forwarded_total") and v:
            print(f"| {name}{{reason=\"{reason}\"}} | {v:.0f} |" if reason else f"| {name} | {v:.0f} |")
    print("\nzmtpfw's log per source address (lines written; suppressed = counted by the rate limiter):\n")
    evs = ["accept", "reject", "close", "drop", "suppressed lines"]
    print("| source | " + " | ".join(evs) + " | close reasons |\n|---|" + "---|" * (len(evs) + 1))
    for peer in sorted(per):
        if peer.startswith("127."):
            print(f"| {peer} | " + " | ".join(str(per[peer][e]) for e in evs) + " | "
                  + ", ".join(f"{r} {n}" for r, n in closes[peer].most_common()) + " |")
    print()
    if fail:
        print("FAILED:")
        for f in fail:
            print(f"- {f}")
        return 1
    print("PASS: every legit message arrived once, in order, byte for byte; every attacker was bounded.")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    wa = sub.add_parser("watch")
    wa.add_argument("--pid", type=int, required=True)
    wa.add_argument("--metrics", required=True)
    wa.add_argument("--dir", required=True)
    r = sub.add_parser("report")
    r.add_argument("--dir", required=True)
    r.add_argument("--max-memory", type=int, required=True)
    r.add_argument("--slack", type=int, required=True)
    r.add_argument("--per-peer", type=int, required=True)
    r.add_argument("--flood-source", required=True)
    r.add_argument("--exit-status", type=int, required=True)
    a = ap.parse_args()
    if a.cmd == "watch":
        signal.signal(signal.SIGTERM, lambda *_: STOP.set())
        watch(a)
        return 0
    return report(a)


if __name__ == "__main__":
    sys.exit(main())
