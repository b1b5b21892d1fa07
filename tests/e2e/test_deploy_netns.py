"""The deployment layouts of deploy/, rebuilt in network namespaces.

Sidecar (deploy/kubernetes/sidecar-pod.yaml): a "pod" namespace holds an
unpatched worker bound to 0.0.0.0:WORKER_PORT that pickle.loads every frame,
zmtpfw listening on ZMTPFW_PORT and dialling 127.0.0.1:WORKER_PORT, and the
nat rules installed by deploy/kubernetes/iptables-init.sh, the very script the
init container runs, run here as that container is: CAP_NET_ADMIN as its only
capability, no_new_privs, read-only root filesystem.
A "router" namespace is in allow and allow_pickle_from, an "attacker"
namespace in neither. All share one bridge, as pods share a node network.

Gateway (deploy/kubernetes/gateway.yaml, deploy/systemd): one zmtpfw with
several routes in a "gw" namespace, workers bound to 127.0.0.1 there, and
router / client / attacker namespaces.

Skipped (with the reason) when not root or when namespaces or iptables are
unavailable; every namespace is deleted at teardown whatever happened.

Also here: the image's health probe (deploy/docker/healthcheck.sh, the
Dockerfile's HEALTHCHECK and the pods' exec probes) against zmtpfw's real
metrics listener.
"""

import os
import subprocess
from pathlib import Path

import msgpack
import pytest

import netns as N
import payloads as P
import zmtp_raw as Z
from conftest import Zmtpfw, free_port, render_config, wait_until

REPO = Path(__file__).resolve().parents[2]
INIT_SCRIPT = REPO / "deploy" / "kubernetes" / "iptables-init.sh"

_REASON = N.netns_unavailable()
needs_netns = pytest.mark.skipif(_REASON is not None, reason=f"network namespaces: {_REASON}")
HEALTHCHECK = REPO / "deploy" / "docker" / "healthcheck.sh"

WORKER_PORT = 5555    # what the unpatched worker binds (SGLang diffusion scheduler's default)
ZMTPFW_PORT = 15555   # where iptables-init.sh sends outside traffic for it


def _raw_push(frames_list, socket_type="PUSH"):
    """A ZMTP 3.1 client's whole stream, pipelined: greeting, READY, messages."""
    out = Z.full_greeting() + Z.ready_command(socket_type)
    for frames in frames_list:
        out += Z.encode_message(frames)
    return out.hex()


def _msg_arg(frames):
    return ",".join(f.hex() for f in frames)


@pytest.fixture
def lan():
    with N.Lan() as l:
        yield l


@pytest.fixture
def ns_classes():
    return N.make_ns_classes()


def _run_init_script(host, *args, caps="+net_admin"):
    """iptables-init.sh inside host's namespace as the init container runs it:
    only the given capabilities in the bounding set (capabilities: drop ALL,
    add NET_ADMIN), no_new_privs (allowPrivilegeEscalation: false) and a
    read-only root filesystem (readOnlyRootFilesystem: true, emulated by a
    read-only bind of / in a private mount namespace)."""
    ro_root = 'mount --bind / / && mount -o remount,bind,ro / && exec "$@"'
    return host.run("unshare", "-m", "--propagation", "private", "sh", "-c", ro_root, "sh",
                    "setpriv", f"--bounding-set=-all{',' + caps if caps else ''}", "--inh-caps=-all",
                    "--no-new-privs", "--", "sh", str(INIT_SCRIPT), *args, check=False)


@needs_netns
@pytest.mark.timeout_s(120)
def test_sidecar_redirect_protects_unpatched_worker(lan, ns_classes, procs, workdir, marker):
    NsWorker, NsZmtpfw = ns_classes
    pod = lan.add_host("pod")
    router = lan.add_host("router")
    attacker = lan.add_host("attacker")

    worker = NsWorker(pod, workdir, WORKER_PORT)  # tcp://0.0.0.0:5555, like tcp://*:PORT
    procs.append(worker)
    attack = P.evil(marker, 4)
    assert P.reaches_import(attack)

    # Control: without the rules the worker's own port is the way in, and the
    # attacker's pickle runs. This is the hole the sidecar pattern closes.
    res = N.client(attacker, "zmq", "PUSH", f"tcp://{pod.ip}:{WORKER_PORT}", _msg_arg([attack]))
    assert res["handshake"] and res["sent"] == 1, res
    wait_until(marker.exists, 10, what="control attack to reach the unprotected worker")
    marker.unlink()
    n_before = len(worker.messages())
    assert n_before == 1

    # The init container's step, with nothing but CAP_NET_ADMIN.
    r = _run_init_script(pod, "--check", f"{WORKER_PORT}:{ZMTPFW_PORT}")
    assert r.returncode == 1, "rules present before the init step"
    r = _run_init_script(pod, f"{WORKER_PORT}:{ZMTPFW_PORT}", caps="")
    assert r.returncode != 0, "iptables-init.sh worked without CAP_NET_ADMIN?"
    r = _run_init_script(pod, f"{WORKER_PORT}:{ZMTPFW_PORT}")
    assert r.returncode == 0, r.stderr
    r = _run_init_script(pod, f"{WORKER_PORT}:{ZMTPFW_PORT}")  # a restarted init container
    assert r.returncode == 0, r.stderr
    rules = pod.run("iptables", "-w", "-t", "nat", "-S").stdout
    assert rules.count("-j ZMTPFW_REDIRECT") == 1 and rules.count("--to-ports") == 1, rules
    assert _run_init_script(pod, "--check", f"{WORKER_PORT}:{ZMTPFW_PORT}").returncode == 0

    # zmtpfw as the sidecar container runs it (sidecar-pod.yaml's ConfigMap shape).
    cfg = Path(workdir) / "sidecar.conf"
    cfg.write_text(render_config([{
        "name": "sched", "listen": f"0.0.0.0:{ZMTPFW_PORT}", "upstream": f"127.0.0.1:{WORKER_PORT}",
        "allow": [f"{router.ip}/32"], "allow_pickle_from": [f"{router.ip}/32"],
        "handshake_timeout_ms": 5000,
    }]))
    zf = NsZmtpfw(pod, ["-c", cfg], workdir, name="zmtpfw-sidecar")
    procs.append(zf)
    zf.wait_listening(["sched"])

    # 1. The attacker dials the worker's own port: the connection lands on
    #    zmtpfw (which sees the attacker's real address) and is refused there.
    res = N.client(attacker, "raw", pod.ip, WORKER_PORT, _raw_push([[attack]]))
    assert res["connect"] == "ok" and res["closed"], res
    assert bytes.fromhex(res["received"]) == b"", "refused peers get no greeting byte"
    zf.wait_event("reject", reason="not-allowed",
                  peer=lambda p: bool(p) and p.startswith(attacker.ip + ":"))
    # ... and through libzmq, which retries for its whole --wait.
    res = N.client(attacker, "zmq", "PUSH", f"tcp://{pod.ip}:{WORKER_PORT}", _msg_arg([attack]),
                   "--wait", "2")
    assert not res["handshake"] and res["sent"] == 0, res
    # ... and zmtpfw's own port refuses it just the same.
    res = N.client(attacker, "raw", pod.ip, ZMTPFW_PORT, _raw_push([[attack]]))
    assert res["closed"] and res["received"] == "", res
    assert not zf.events("accept", peer=lambda p: bool(p) and p.startswith(attacker.ip + ":"))

    # 2. The router, dialling the same worker port, is admitted as itself and
    #    its messages, pickle included (it is in allow_pickle_from), arrive
    #    byte-exact.
    big = os.urandom(300_000)
    msgs = [
        [P.json_frame({"rid": "r1", "prompt": "a cat"})],
        [msgpack.packb(["req-2", [1, 2, 3], {"temperature": 0.7}]), big],
        [P.benign_dict_pickle(5)],
    ]
    res = N.client(router, "zmq", "PUSH", f"tcp://{pod.ip}:{WORKER_PORT}", *[_msg_arg(m) for m in msgs])
    assert res["handshake"] and res["sent"] == len(msgs), res
    acc = zf.wait_event("accept", peer=lambda p: bool(p) and p.startswith(router.ip + ":"))
    assert acc.get("pickle_trusted") is True, acc
    got = worker.wait_messages(n_before + len(msgs), timeout=10)[n_before:]
    assert got == msgs, "router traffic not byte-exact"
    loaded = worker.message_records()[-1]["loaded"]
    assert loaded == [repr({"a": 1, "b": [1, 2, 3], "c": "text"})], loaded

    # Nothing the attacker sent after the rules went in ever ran or arrived:
    # its connections had all ended before the router's began, so the
    # router's messages, recorded (after loading) above, came after anything
    # of them.
    assert not marker.exists(), "attacker pickle executed in the worker"
    assert len(worker.messages()) == n_before + len(msgs)
    assert not zf.events("drop"), "nothing should have reached the scanner from the attacker"
    zf.assert_alive()


@needs_netns
@pytest.mark.timeout_s(120)
def test_gateway_routes_workers_on_loopback(lan, ns_classes, procs, workdir, marker):
    NsWorker, NsZmtpfw = ns_classes
    gw = lan.add_host("gw")
    router = lan.add_host("router")    # allow + allow_pickle_from on "sched"
    client = lan.add_host("client")    # allow only
    attacker = lan.add_host("attacker")  # neither

    sched = NsWorker(gw, workdir, 25555, "PULL", bind_ip="127.0.0.1", name="w-sched")
    rpc = NsWorker(gw, workdir, 25556, "REP", bind_ip="127.0.0.1", name="w-rpc")
    procs.extend([sched, rpc])

    allowed = [f"{router.ip}/32", f"{client.ip}/32"]
    cfg = Path(workdir) / "gateway.conf"
    cfg.write_text(render_config([
        {"name": "sched", "listen": "0.0.0.0:35555", "upstream": "127.0.0.1:25555",
         "allow": allowed, "allow_pickle_from": [f"{router.ip}/32"],
         "socket_types": ["PUSH"], "handshake_timeout_ms": 5000},
        {"name": "rpc", "listen": "0.0.0.0:35556", "upstream": "127.0.0.1:25556",
         "allow": allowed, "socket_types": ["REQ", "DEALER"], "handshake_timeout_ms": 5000},
    ]))
    zf = NsZmtpfw(gw, ["-c", cfg], workdir, name="zmtpfw-gw")
    procs.append(zf)
    zf.wait_listening(["sched", "rpc"])

    attack = P.evil(marker, 2, "system")
    assert P.reaches_import(attack)

    # The workers themselves are unreachable from the network.
    for port in (25555, 25556):
        res = N.client(attacker, "raw", gw.ip, port, _raw_push([[attack]]))
        assert res["connect"] == "ECONNREFUSED", res

    # The attacker is refused on every route before the worker is dialled.
    for port, name in ((35555, "sched"), (35556, "rpc")):
        res = N.client(attacker, "raw", gw.ip, port, _raw_push([[attack]], "REQ" if name == "rpc" else "PUSH"))
        assert res["closed"] and res["received"] == "", res
        zf.wait_event("reject", route=name, reason="not-allowed",
                      peer=lambda p: bool(p) and p.startswith(attacker.ip + ":"))

    # The client may connect but not send pickle: its pickle message is
    # dropped, the clean message behind it on the same connection arrives.
    clean = [P.json_frame({"from": "client", "n": 1})]
    res = N.client(client, "zmq", "PUSH", f"tcp://{gw.ip}:35555", _msg_arg([attack]), _msg_arg(clean))
    assert res["handshake"] and res["sent"] == 2, res
    sched.wait_message(clean)
    d = zf.wait_event("drop", route="sched", reason="pickle")
    assert d["peer"].startswith(client.ip + ":"), d

    # The router's pickle passes on "sched" (trusted there) ...
    trusted = [P.benign_dict_pickle(4)]
    res = N.client(router, "zmq", "PUSH", f"tcp://{gw.ip}:35555", _msg_arg(trusted))
    assert res["handshake"], res
    sched.wait_message(trusted)

    # ... but not on "rpc", where nobody is; REQ/REP round trips byte-exact.
    req = [msgpack.packb(["health", 7, {"verbose": True}])]  # (2-4 key maps are flagged by design)
    res = N.client(client, "zmq", "REQ", f"tcp://{gw.ip}:35556", _msg_arg(req))
    assert res["handshake"] and res["replies"] == [[f.hex() for f in req]], res
    rpc.wait_message(req)
    res = N.client(router, "zmq", "REQ", f"tcp://{gw.ip}:35556", _msg_arg([attack]))
    assert res["handshake"] and res["replies"] == [None], res  # dropped: no reply
    zf.wait_event("drop", route="rpc", reason="pickle",
                  peer=lambda p: bool(p) and p.startswith(router.ip + ":"))

    # A PUSH peer is refused on the REQ/REP route (socket_types). (A libzmq
    # PUSH would hang up by itself on seeing the REP's READY; a raw client
    # sends its READY regardless, so it is zmtpfw that refuses it.)
    res = N.client(client, "raw", gw.ip, 35556, _raw_push([clean], "PUSH"))
    assert res["closed"], res
    zf.wait_event("reject", route="rpc", reason="socket-type",
                  peer=lambda p: bool(p) and p.startswith(client.ip + ":"))

    # A sentinel per worker, on connections made after all of the above:
    # once each is in (recorded after loading), so is anything before it.
    done = [P.json_frame({"sentinel": "sched"})]
    res = N.client(client, "zmq", "PUSH", f"tcp://{gw.ip}:35555", _msg_arg(done))
    assert res["handshake"] and res["sent"] == 1, res
    sched.wait_message(done)
    done = [P.json_frame({"sentinel": "rpc"})]
    res = N.client(client, "zmq", "REQ", f"tcp://{gw.ip}:35556", _msg_arg(done))
    assert res["handshake"] and res["replies"] == [[f.hex() for f in done]], res
    rpc.wait_message(done)
    assert not marker.exists(), "attack pickle executed in a gateway worker"
    for w in (sched, rpc):
        for m in w.messages():
            assert attack not in m
    zf.assert_alive()


def _probe(what, metrics):
    r = subprocess.run(["bash", str(HEALTHCHECK), what], env={**os.environ, "ZMTPFW_METRICS": metrics,
                       "ZMTPFW_HEALTH_TIMEOUT": "3"}, capture_output=True, text=True, timeout=10)
    return r.returncode


@pytest.mark.timeout_s(60)
def test_image_healthcheck_follows_healthz_and_readyz(procs, workdir, start_worker):
    worker = start_worker("PULL")
    mport = free_port()
    metrics = f"127.0.0.1:{mport}"
    cfg = Path(workdir) / "image.conf"
    # The shape of deploy/docker/zmtpfw.conf, on free ports.
    cfg.write_text(render_config([{"name": "worker", "listen": f"127.0.0.1:{free_port()}",
                                   "upstream": worker.upstream, "allow": ["127.0.0.0/8"]}])
                   + f'metrics = {{ listen = "{metrics}"; }};\n')
    assert _probe("healthz", metrics) == 1, "probe passed with nothing listening"
    zf = Zmtpfw(["-c", cfg], workdir, name="zmtpfw-image")
    procs.append(zf)
    zf.wait_listening(["worker"])
    wait_until(lambda: _probe("healthz", metrics) == 0, 10, what="/healthz 200 through the probe")
    wait_until(lambda: _probe("readyz", metrics) == 0, 10, what="/readyz 200 with the worker up")
    worker.stop()  # the route's worker goes away: not ready, still alive
    wait_until(lambda: _probe("readyz", metrics) == 1, 10, what="/readyz failing without the worker")
    assert _probe("healthz", metrics) == 0
    assert _probe("nonsense", metrics) == 2
    zf.stop()
    wait_until(lambda: _probe("healthz", metrics) == 1, 10, what="/healthz failing once zmtpfw is gone")
    zf.expect_exit = True
