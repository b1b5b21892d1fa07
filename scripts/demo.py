#!/usr/bin/python3
"""A guided tour of zmtpfw with real processes (scripts/dev.sh demo runs it).

  scripts/demo.py [--zmtpfw BIN] [--dir DIR] [--fw-cmd CMD] [--health-cmd CMD]

In a scratch directory it starts
  - a vulnerable pyzmq worker: a PULL socket whose every message goes through
    recv_pyobj(), i.e. pickle.loads, as in the inference engines zmtpfw
    protects;
  - zmtpfw in front of it (enforce mode, loopback peers admitted, nobody
    trusted to send pickle), with its metrics endpoint on;
then a legitimate client and an attacker. It shows, and checks:
  1. the exploit lands when sent straight to the worker (a marker file);
  2. the same exploit sent through zmtpfw is dropped (no marker file, a
     "drop" log line, zmtpfw_messages_dropped_total 1);
  3. legitimate messages sent through zmtpfw, before and after the attack,
     all arrive (the worker's record, zmtpfw_messages_forwarded_total).
Exit 0 only when every check held; 1 otherwise, saying which failed.

--fw-cmd runs zmtpfw some other way (scripts/image-test.sh: from the
container image); the config path is appended as "-c PATH". --health-cmd is
run while zmtpfw is up, with {metrics} replaced by the metrics HOST:PORT;
it must exit 0 (the image's HEALTHCHECK).
"""

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import zmq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from payloads import evil, reaches_import  # noqa: E402  (the e2e tests' attack pickles)

LEGIT = 5  # legitimate messages on each side of the attack

WORKER = '''\
# The vulnerable worker: what a scheduler or tokenizer process does with
# every message on its ZeroMQ socket (recv_pyobj = pickle.loads).
import json, sys, zmq
ctx = zmq.Context()
sock = ctx.socket(zmq.PULL)
sock.bind(sys.argv[1])
print("ready", flush=True)
with open(sys.argv[2], "a", buffering=1) as rec:
    while True:
        obj = sock.recv_pyobj()          # <- pickle.loads on untrusted bytes
        rec.write(json.dumps(repr(obj)) + "\\n")
'''

CONFIG = '''\
# Written by scripts/demo.py: one route in front of the demo worker.
mode = "enforce";
log = {{ level = "info"; format = "json"; }};
metrics = {{ listen = "{metrics}"; }};
routes = (
  {{
    name = "demo-worker";
    listen = "127.0.0.1:{fw_port}";
    upstream = "127.0.0.1:{worker_port}";
    allow = [ "127.0.0.0/8" ];     # who may connect at all
    allow_pickle_from = [ ];       # nobody may send a pickle that imports
  }}
);
'''

failures = []


def say(msg=""):
    print(msg, flush=True)


def check(ok, what):
    say(f"   [{'ok' if ok else 'FAILED'}] {what}")
    if not ok:
        failures.append(what)
    return ok


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def send(port, objs=(), raw=()):
    """A PUSH client: send_pyobj each object, send each raw payload."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 2000)
    s.connect(f"tcp://127.0.0.1:{port}")
    for o in objs:
        s.send_pyobj(o)
    for r in raw:
        s.send(r)
    s.close()  # lingers until the queue is flushed
    ctx.term()


def scrape(metrics):
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(text, name, **labels):
    """Sum of the samples of a metric whose labels include these."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        series, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


def received(rec):
    try:
        return [json.loads(l) for l in rec.read_text().splitlines() if l.strip()]
    except FileNotFoundError:
        return []


def log_events(log, event):
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if d.get("event") == event:
            out.append(line)
    return out


def zmtpfw_pid(proc):
    """The pid of zmtpfw itself: proc, or its descendant named zmtpfw when a
    wrapper started it (buildah run does not pass SIGTERM on)."""
    todo, seen = [proc.pid], set()
    while todo:
        pid = todo.pop(0)
        if pid in seen:
            continue
        seen.add(pid)
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "zmtpfw":
                return pid
            for t in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (t / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zmtpfw", default=str(REPO / "build" / "zmtpfw"))
    ap.add_argument("--fw-cmd", help="command that runs zmtpfw (default: --zmtpfw)")
    ap.add_argument("--health-cmd", help="health probe to run while zmtpfw is up")
    ap.add_argument("--dir", help="scratch directory (default: a new one under /tmp)")
    ap.add_argument("--metrics-out", help="also save the /metrics scrape to this file")
    args = ap.parse_args()

    d = Path(args.dir or tempfile.mkdtemp(prefix="zmtpfw-demo-"))
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o755)  # zmtpfw may run as another user (the image's uid 10001)
    worker_port, fw_port, metrics_port = free_port(), free_port(), free_port()
    metrics = f"127.0.0.1:{metrics_port}"
    (d / "worker.py").write_text(WORKER)
    conf = d / "zmtpfw.conf"
    conf.write_text(CONFIG.format(metrics=metrics, fw_port=fw_port, worker_port=worker_port))
    conf.chmod(0o644)
    rec, log = d / "received.jsonl", d / "zmtpfw.log"
    direct_marker, fw_marker = d / "PWNED-direct", d / "PWNED-through-zmtpfw"
    for f in (rec, log, direct_marker, fw_marker):
        f.unlink(missing_ok=True)  # a reused --dir starts clean
    fw_cmd = shlex.split(args.fw_cmd) if args.fw_cmd else [args.zmtpfw]

    say(f"zmtpfw demo, scratch directory {d}")
    say(f"  worker  {d}/worker.py   PULL tcp://127.0.0.1:{worker_port}, recv_pyobj() on every message")
    say(f"  zmtpfw  {d}/zmtpfw.conf listens 127.0.0.1:{fw_port}, forwards to the worker,"
        f" metrics http://{metrics}/metrics")
    say()

    procs = []
    try:
        w = subprocess.Popen([sys.executable, str(d / "worker.py"), f"tcp://127.0.0.1:{worker_port}",
                              str(rec)], stdout=subprocess.PIPE, stderr=open(d / "worker.err", "wb"),
                             text=True, start_new_session=True)
        procs.append(w)
        if w.stdout.readline().strip() != "ready":
            raise SystemExit(f"demo: the worker did not start: {(d / 'worker.err').read_text()}")
        with open(log, "wb") as err:
            fw = subprocess.Popen(fw_cmd + ["-c", str(conf)], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        procs.append(fw)
        if not wait_until(lambda: log_events(log, "listening") or fw.poll() is not None, 60):
            raise SystemExit("demo: zmtpfw did not start listening within 60 s")
        if fw.poll() is not None:
            raise SystemExit(f"demo: zmtpfw exited ({fw.returncode}):\n{log.read_text()}")

        # The attack: a pickle whose loading calls open(marker, "w").
        def attack(marker):
            p = evil(marker, 4)
            assert reaches_import(p), "the attack pickle must reach an import"
            return p

        say("1. The attacker sends a pickle straight to the worker (no zmtpfw):")
        say(f"   {attack(direct_marker)[:60]!r}...")
        send(worker_port, raw=[attack(direct_marker)])
        check(wait_until(direct_marker.exists, 10),
              f"the exploit lands: the worker's recv_pyobj() ran open() and created {direct_marker.name}")
        say()

        say(f"2. A legitimate client sends {LEGIT} requests through zmtpfw, the attacker the same"
            f" exploit, then the client {LEGIT} more:")
        say("   (the client uses send_pyobj too: a pickle of plain data, which cannot import"
            " anything, passes; a pickle that would import a callable is dropped)")
        before = [{"rid": i, "prompt": f"hello {i}", "max_new_tokens": 16} for i in range(LEGIT)]
        after = [{"rid": LEGIT + i, "prompt": f"hello {LEGIT + i}", "max_new_tokens": 16}
                 for i in range(LEGIT)]
        send(fw_port, objs=before)
        send(fw_port, raw=[attack(fw_marker)])
        send(fw_port, objs=after)
        want = [repr(o) for o in before + after]
        wait_until(lambda: len(received(rec)) >= 1 + 2 * LEGIT, 10)
        time.sleep(0.3)  # anything late (an attack that got through) lands now
        got = received(rec)
        check(not fw_marker.exists(), f"the exploit is dropped: no {fw_marker.name}")
        check([g for g in got if "hello" in g] == want,
              f"all {2 * LEGIT} legitimate messages arrived, in order, intact")
        check(len(got) == 1 + 2 * LEGIT, "the worker received nothing else (the direct attack + "
              f"{2 * LEGIT} legitimate messages: {len(got)} in all)")
        say()

        say("3. What zmtpfw logged (JSON lines on stderr):")
        drops = log_events(log, "drop")
        for line in log_events(log, "listening") + log_events(log, "accept")[:1] + drops:
            say(f"   {line}")
        check(len(drops) == 1, f"exactly one 'drop' line (reason pickle): {len(drops)}")
        say()

        say(f"4. What Prometheus scrapes from http://{metrics}/metrics:")
        text = scrape(metrics)
        if args.metrics_out:
            Path(args.metrics_out).write_text(text)
        for line in text.splitlines():
            if line.startswith("zmtpfw_connections_accepted") or (
                    line.startswith("zmtpfw_messages_") and "client_to_worker" in line):
                say(f"   {line}")
        check(metric(text, "zmtpfw_messages_dropped_total", route="demo-worker", reason="pickle") == 1,
              "zmtpfw_messages_dropped_total{reason=\"pickle\"} is 1")
        check(metric(text, "zmtpfw_messages_forwarded_total", route="demo-worker",
                     direction="client_to_worker") == 2 * LEGIT,
              f"zmtpfw_messages_forwarded_total{{direction=\"client_to_worker\"}} is {2 * LEGIT}")
        say()

        if args.health_cmd:
            cmd = args.health_cmd.replace("{metrics}", metrics)
            say(f"5. Health probe: {cmd}")
            r = subprocess.run(cmd, shell=True, timeout=60)
            check(r.returncode == 0, "the health probe reports healthy (exit 0)")
            say()

        pid = zmtpfw_pid(fw)
        check(pid is not None, f"zmtpfw runs (pid {pid})")
        if pid:
            os.kill(pid, signal.SIGTERM)
            try:
                fw.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            check(fw.returncode == 0 and any('"done"' in l for l in log_events(log, "drain")),
                  f"zmtpfw drained and exited 0 on SIGTERM (rc {fw.returncode})")
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()

    say()
    if failures:
        say(f"demo: FAILED: {len(failures)} check(s): " + "; ".join(failures))
        say(f"demo: files kept in {d}")
        return 1
    say("demo: every check passed. The worker, config and log are in " + str(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
