#!/usr/bin/python3
"""Offline checks of deploy/monitoring (scripts/lint.sh runs it).

  deploy/monitoring/check-monitoring.py

- every zmtpfw_* metric named by the alert rules or the Grafana dashboard
  exists in include/zmtpfw/metrics.h (a renamed metric cannot leave a
  silent panel or an alert that never fires);
- the dashboard is valid JSON with unique panel ids, panels inside the
  24-column grid, a Prometheus datasource on every query;
- every dashboard query is valid PromQL: each, with Grafana's variables
  replaced, becomes a recording rule for `promtool check rules`.
Exit 1 with one line per problem.
"""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RULES = HERE / "zmtpfw-alerts.yaml"
DASHBOARD = HERE / "zmtpfw-dashboard.json"

problems = []


def known_metrics():
    text = (REPO / "include" / "zmtpfw" / "metrics.h").read_text()
    return set(re.findall(r'"(zmtpfw_[a-z_]+)"', text))


def names_in(expr):
    return set(re.findall(r"\b(zmtpfw_[a-z_]+)\b", expr))


def grafana_to_promql(expr):
    expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h")
    return re.sub(r"\$\{?[a-z_]+\}?", ".*", expr)


def main():
    known = known_metrics()
    if not known:
        problems.append("no metric names found in include/zmtpfw/metrics.h")
    rules = yaml.safe_load(RULES.read_text())
    for g in rules["groups"]:
        for r in g["rules"]:
            for n in names_in(r["expr"]) - known:
                problems.append(f"{RULES.name} {r.get('alert')}: unknown metric {n}")

    dash = json.loads(DASHBOARD.read_text())
    ids, exprs = set(), []
    for p in dash["panels"]:
        where = f"{DASHBOARD.name} panel {p.get('id')} '{p.get('title')}'"
        if p.get("id") in ids:
            problems.append(f"{where}: duplicate id")
        ids.add(p.get("id"))
        gp = p.get("gridPos") or {}
        if gp.get("x", 0) + gp.get("w", 0) > 24:
            problems.append(f"{where}: wider than the grid")
        if not p.get("targets"):
            problems.append(f"{where}: no query")
        for t in p.get("targets") or []:
            if (t.get("datasource") or p.get("datasource") or {}).get("type") != "prometheus":
                problems.append(f"{where}: query {t.get('refId')} without a Prometheus datasource")
            for n in names_in(t["expr"]) - known:
                problems.append(f"{where}: unknown metric {n}")
            exprs.append(grafana_to_promql(t["expr"]))

    record = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"zmtpfw_dashboard_query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(record, f)
        f.flush()
        r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"dashboard queries: promtool: {(r.stdout + r.stderr).strip()}")

    for p in problems:
        print(f"check-monitoring: {p}", file=sys.stderr)
    print(f"check-monitoring: {sum(len(g['rules']) for g in rules['groups'])} alerts, "
          f"{len(dash['panels'])} panels, {len(exprs)} queries: {'FAILED' if problems else 'ok'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
