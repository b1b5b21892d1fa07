#!/usr/bin/python3
"""Offline policy checks on deploy/kubernetes/*.yaml and the Dockerfile.

  deploy/check-manifests.py ZMTPFW_BINARY [RENDERED.yaml ...]

Without files it checks deploy/kubernetes/*.yaml; with files, those (the
output of `kubectl kustomize` of an overlay, e.g. deploy/kubernetes/examples/*).

What kubectl cannot check without a cluster, and what matters here:
- every container: allowPrivilegeEscalation false, capabilities drop ALL,
  not privileged, seccomp RuntimeDefault or Localhost (its own or the pod's);
  zmtpfw and the init container also readOnlyRootFilesystem; zmtpfw runs as
  uid 10001, non-root, with no added capability;
- only the iptables init container adds a capability, and only NET_ADMIN;
- every zmtpfw.conf in a ConfigMap passes `zmtpfw -t`;
- sidecar wiring: each WORKER:ZMTPFW mapping of the init container (its
  args, or $ZMTPFW_REDIRECTS, literal or from a ConfigMap key) has a route
  listening on ZMTPFW and dialling 127.0.0.1:WORKER, and every route is
  reachable through a mapping;
- pods of Deployments, StatefulSets, DaemonSets, Jobs and LeaderWorkerSets
  (leader and worker templates) are checked like Pods;
- the sidecar component adds the same pod spec to LeaderWorkerSets as to
  Deployments (sidecar/leaderworkerset.yaml against sidecar/pod-template.yaml);
- NetworkPolicy: no ingress rule admits zmtpfw's own ports of a sidecar pod
  (outside traffic must come through the redirect);
- gateway (no redirect): every route's listen port is a declared container
  port, every Service targetPort names one;
- Dockerfile: non-root numeric USER, HEALTHCHECK, config at
  /etc/zmtpfw/zmtpfw.conf, steps run through scripts/build-image.sh.
Exit 1 with one line per problem.
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
K8S = DEPLOY / "kubernetes"
INIT_NAME = "zmtpfw-redirect"
ZF_UID = 10001

problems = []


def bad(where, msg):
    problems.append(f"{where}: {msg}")


def load_docs(files):
    docs = []
    for f in files or sorted(K8S.glob("*.yaml")):
        f = Path(f)
        if f.name == "kustomization.yaml":
            continue
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                docs.append((f.name, d))
    return docs


def pod_specs(docs):
    """(file, object, name for messages, pod spec, pod labels) of every pod."""
    for fname, d in docs:
        kind, name = d.get("kind"), d["metadata"]["name"]
        if kind == "Pod":
            yield fname, d, name, d["spec"], d["metadata"].get("labels") or {}
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            t = d["spec"]["template"]
            yield fname, d, name, t["spec"], (t.get("metadata") or {}).get("labels") or {}
        elif kind == "LeaderWorkerSet":
            lwt = d["spec"]["leaderWorkerTemplate"]
            for role in ("leaderTemplate", "workerTemplate"):
                if role in lwt:
                    t = lwt[role]
                    yield (fname, d, f"{name}.{role}", t["spec"],
                           (t.get("metadata") or {}).get("labels") or {})


def init_mappings(where, c, docs):
    """The WORKER:ZMTPFW strings an init container is given."""
    if c.get("args"):
        return c["args"]
    for e in c.get("env") or []:
        if e.get("name") != "ZMTPFW_REDIRECTS":
            continue
        if "value" in e:
            return e["value"].split()
        ref = (e.get("valueFrom") or {}).get("configMapKeyRef") or {}
        for _, d in docs:
            if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == ref.get("name"):
                return str((d.get("data") or {}).get(ref.get("key"), "")).split()
        bad(where, f"ZMTPFW_REDIRECTS refers to a missing ConfigMap key {ref}")
    return []


def check_component():
    """The LeaderWorkerSet patch must add exactly what the Deployment one does."""
    comp = K8S / "sidecar"
    dep = [d for d in yaml.safe_load_all((comp / "pod-template.yaml").read_text()) if d][0]
    lws = [d for d in yaml.safe_load_all((comp / "leaderworkerset.yaml").read_text()) if d][0]
    want = dep["spec"]["template"]["spec"]
    for role, t in lws["spec"]["leaderWorkerTemplate"].items():
        if t.get("spec") != want:
            bad(f"sidecar/leaderworkerset.yaml {role}", "differs from sidecar/pod-template.yaml")


def seccomp_ok(sc):
    t = ((sc or {}).get("seccompProfile") or {}).get("type")
    return t in ("RuntimeDefault", "Localhost")


def is_zmtpfw(c):
    return c.get("image", "").split("/")[-1].startswith("zmtpfw:")


def check_container(where, c, pod_sc, init):
    sc = c.get("securityContext") or {}
    caps = sc.get("capabilities") or {}
    if sc.get("allowPrivilegeEscalation") is not False:
        bad(where, "allowPrivilegeEscalation must be false")
    if sc.get("privileged"):
        bad(where, "privileged")
    if "ALL" not in (caps.get("drop") or []):
        bad(where, "capabilities.drop must contain ALL")
    if not (seccomp_ok(sc) or seccomp_ok(pod_sc)):
        bad(where, "no seccompProfile RuntimeDefault/Localhost")
    add = caps.get("add") or []
    if init and c.get("name") == INIT_NAME:
        if add != ["NET_ADMIN"]:
            bad(where, f"init container must add exactly NET_ADMIN, adds {add}")
    elif add:
        bad(where, f"adds capabilities {add}")
    if is_zmtpfw(c) or (init and c.get("name") == INIT_NAME):
        if sc.get("readOnlyRootFilesystem") is not True:
            bad(where, "readOnlyRootFilesystem must be true")
    if is_zmtpfw(c):
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        nonroot = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if uid != ZF_UID or nonroot is not True:
            bad(where, f"zmtpfw must run as uid {ZF_UID} with runAsNonRoot (has {uid}, {nonroot})")


def parse_routes(conf):
    """(name, listen_port, upstream) of each route, from libconfig text."""
    out = []
    for block in re.findall(r"\{([^{}]*listen\s*=[^{}]*)\}", conf):
        if not re.search(r"(?<![\w])upstream\s*=", block):  # the metrics block
            continue
        name = re.search(r'name\s*=\s*"([^"]+)"', block)
        listen = re.search(r'listen\s*=\s*"[^"]*:(\d+)"', block)
        up = re.search(r'upstream\s*=\s*"([^"]+)"', block)
        out.append((name.group(1) if name else "?", int(listen.group(1)) if listen else None,
                    up.group(1) if up else None))
    return out


def check_configs(docs, zf):
    confs = {}
    for fname, d in docs:
        if d.get("kind") != "ConfigMap":
            continue
        for key, text in (d.get("data") or {}).items():
            if not key.endswith(".conf"):
                continue
            where = f"{fname} ConfigMap {d['metadata']['name']} {key}"
            with tempfile.NamedTemporaryFile("w", suffix=".conf") as t:
                t.write(text)
                t.flush()
                r = subprocess.run([zf, "-t", "-c", t.name], capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                bad(where, f"zmtpfw -t failed: {(r.stderr or r.stdout).strip()}")
            confs[d["metadata"]["name"]] = parse_routes(text)
    return confs


def check_pods(docs, confs):
    policies = [d for _, d in docs if d.get("kind") == "NetworkPolicy"]
    services = [(f, d) for f, d in docs if d.get("kind") == "Service"]
    for fname, obj, pname, spec, labels in pod_specs(docs):
        pod_sc = spec.get("securityContext") or {}
        if spec.get("hostNetwork"):
            bad(f"{fname} {pname}", "hostNetwork would apply the REDIRECT rules to the node")
        if spec.get("automountServiceAccountToken") is not False:
            bad(f"{fname} {pname}", "automountServiceAccountToken should be false")
        for init, key in ((True, "initContainers"), (False, "containers")):
            for c in spec.get(key) or []:
                check_container(f"{fname} {pname}/{c['name']}", c, pod_sc, init)
        zfs = [c for c in spec.get("containers") or [] if is_zmtpfw(c)]
        if not zfs:
            bad(f"{fname} {pname}", "no zmtpfw container")
            continue
        zc = zfs[0]
        vols = {v["name"]: v for v in spec.get("volumes") or []}
        cm = None
        for m in zc.get("volumeMounts") or []:
            if m.get("mountPath") == "/etc/zmtpfw":
                cm = ((vols.get(m["name"]) or {}).get("configMap") or {}).get("name")
        if cm not in confs:
            bad(f"{fname} {pname}", "zmtpfw does not mount a checked ConfigMap at /etc/zmtpfw")
            continue
        routes = confs[cm]
        inits = [c for c in spec.get("initContainers") or [] if c["name"] == INIT_NAME]
        if not inits:  # gateway: clients dial zmtpfw's ports (a sidecar's come through REDIRECT)
            zports = {p["containerPort"] for p in zc.get("ports") or []}
            for name, lport, _ in routes:
                if lport not in zports:
                    bad(f"{fname} {pname}", f"route {name} listens on {lport}, not a declared container port")
        if inits:  # sidecar
            maps = [a.split(":") for a in init_mappings(f"{fname} {pname}", inits[0], docs)]
            maps = {int(f): int(w) for w, f in maps}
            if not maps:
                bad(f"{fname} {pname}", "the init container is given no WORKER:ZMTPFW mapping")
            for name, lport, up in routes:
                if lport not in maps:
                    bad(f"{fname} {pname}", f"route {name} ({lport}) has no REDIRECT mapping")
                elif up != f"127.0.0.1:{maps[lport]}":
                    bad(f"{fname} {pname}", f"route {name} must dial 127.0.0.1:{maps[lport]}, dials {up}")
            for f, w in maps.items():
                if f not in {r[1] for r in routes}:
                    bad(f"{fname} {pname}", f"mapping {w}:{f} leads to no route")
            covered = False
            for pol in policies:
                sel = pol["spec"]["podSelector"].get("matchLabels") or {}
                if not all(labels.get(k) == v for k, v in sel.items()):
                    continue
                covered = True
                for rule in pol["spec"].get("ingress") or []:
                    if not rule.get("ports"):
                        bad(f"NetworkPolicy {pol['metadata']['name']}", "ingress rule without ports")
                    for p in rule.get("ports") or []:
                        lo, hi = p.get("port"), p.get("endPort", p.get("port"))
                        for f in maps:
                            if isinstance(lo, int) and lo <= f <= hi:
                                bad(f"NetworkPolicy {pol['metadata']['name']}",
                                    f"admits zmtpfw's port {f} directly")
            if not covered:
                bad(f"{fname} {pname}", "no NetworkPolicy selects this sidecar pod")
        names = {p.get("name") for p in zc.get("ports") or []}
        for sf, svc in services:
            sel = svc["spec"].get("selector") or {}
            if sel and all(labels.get(k) == v for k, v in sel.items()):
                for p in svc["spec"]["ports"]:
                    t = p.get("targetPort")
                    if isinstance(t, str) and t not in names:
                        bad(f"{sf} Service {svc['metadata']['name']}", f"targetPort {t} is no container port")


def check_dockerfile():
    df = (REPO / "Dockerfile").read_text()
    stages = re.split(r"(?m)^FROM ", df)
    final = stages[-1]
    if not re.search(r"(?m)^ARG DEBIAN_IMAGE=debian:12-slim$", df):
        bad("Dockerfile", "base image must be debian:12-slim")
    if not re.search(r"(?m)^USER [1-9][0-9]*:[1-9][0-9]*$", final):
        bad("Dockerfile", "final stage needs a numeric non-root USER uid:gid")
    if "HEALTHCHECK" not in final or "healthz" not in final:
        bad("Dockerfile", "final stage needs a HEALTHCHECK on /healthz")
    if "/etc/zmtpfw/zmtpfw.conf" not in final:
        bad("Dockerfile", "config path /etc/zmtpfw/zmtpfw.conf")
    if not re.search(r"build-image\.sh .*\bcheck\b", final):
        bad("Dockerfile", "final stage must run build-image.sh check (zmtpfw -t on the shipped config)")
    for line in re.findall(r"(?m)^RUN .*$", df):
        if "build-image.sh" not in line:
            bad("Dockerfile", f"RUN step outside scripts/build-image.sh: {line}")


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    docs = load_docs(argv[2:])
    confs = check_configs(docs, argv[1])
    check_pods(docs, confs)
    check_component()
    check_dockerfile()
    for p in problems:
        print(f"check-manifests: {p}", file=sys.stderr)
    kinds = sorted({d.get("kind") for _, d in docs})
    print(f"check-manifests: {len(docs)} objects ({', '.join(kinds)}), {len(confs)} configs: "
          f"{'FAILED' if problems else 'ok'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
