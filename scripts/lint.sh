#!/usr/bin/env bash
# Static checks of the deployment files and scripts (CI runs this).
#
#   scripts/lint.sh [ZMTPFW_BINARY]      (default: $ZMTPFW_BIN, else build/zmtpfw)
#
#   yamllint          deploy/ (settings in deploy/.yamllint)
#   ShellCheck        scripts/*.sh, deploy/**/*.sh, tests/bench/run.sh (and the
#                     lib.sh it sources), .ci/run
#                     fail on warnings and errors; the deployment scripts
#                     (build-image.sh, lint.sh, deploy/) on every level
#   systemd-analyze   verify deploy/systemd/zmtpfw.service, and its offline
#                     security exposure must stay <= 2.5 ("OK")
#   zmtpfw -t         conf/*.conf, conf/examples/*.conf, deploy/**/*.conf
#   check-manifests   deploy/check-manifests.py: securityContext policy,
#                     sidecar wiring, NetworkPolicy, ConfigMap configs
#                     (zmtpfw -t), Dockerfile invariants
#   kubectl           `kubectl kustomize` of deploy/kubernetes and of every
#                     overlay in deploy/kubernetes/examples/ (offline, the
#                     kubectl of scripts/kubectl.sh), each output checked by
#                     check-manifests; `kubectl apply --dry-run=client` only
#                     when a cluster answers (it needs discovery data)
#   promtool          deploy/monitoring: `promtool check rules` on the alerts,
#                     deploy/monitoring/check-monitoring.py: metric names
#                     exist, the dashboard is sound, its queries parse
# Every failure is reported; the exit status is 1 if any check failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ZF=${1:-${ZMTPFW_BIN:-build/zmtpfw}}
PY=/usr/bin/python3
failed=()

run() {
	local name=$1
	shift
	echo "== $name"
	if "$@"; then
		echo "   ok"
	else
		echo "   FAILED: $name"
		failed+=("$name")
	fi
}

need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	echo "== $1: not installed (Debian package: $2)"
	failed+=("$1 missing")
	return 1
}

[ -x "$ZF" ] || { echo "lint: zmtpfw binary $ZF not found (build first)" >&2; exit 2; }
ZF=$(readlink -f "$ZF")

if need yamllint yamllint; then
	run yamllint yamllint -s -c deploy/.yamllint deploy/
fi

if need shellcheck shellcheck; then
	mapfile -t shells < <(ls scripts/*.sh tests/bench/*.sh .ci/run 2>/dev/null; find deploy -name '*.sh')
	run "shellcheck -S warning (${#shells[@]} files)" shellcheck -x -S warning "${shells[@]}"
	mapfile -t mine < <(printf '%s\n' scripts/build-image.sh scripts/lint.sh scripts/image-test.sh scripts/kubectl.sh; find deploy -name '*.sh')
	run "shellcheck, all levels (${#mine[@]} deployment scripts)" shellcheck -x "${mine[@]}"
fi

unit_check() {
	local tmp rc=0
	tmp=$(mktemp -d)
	# verify resolves ExecStart= binaries: point them at the one just built.
	sed "s|/usr/local/bin/zmtpfw|$ZF|g" deploy/systemd/zmtpfw.service >"$tmp/zmtpfw.service"
	SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$tmp/zmtpfw.service" || rc=1
	systemd-analyze security --offline=yes --threshold=25 "$tmp/zmtpfw.service" >"$tmp/security.txt" 2>&1 ||
		{ tail -5 "$tmp/security.txt"; rc=1; }
	grep 'Overall exposure' "$tmp/security.txt" | sed 's/^/   /'
	rm -rf "$tmp"
	return $rc
}
if need systemd-analyze systemd; then
	run "systemd-analyze verify + security" unit_check
fi

conf_check() {
	local f rc=0
	for f in conf/*.conf conf/examples/*.conf $(find deploy -name '*.conf'); do
		"$ZF" -t -c "$f" || rc=1
	done
	return $rc
}
run "zmtpfw -t" conf_check

run check-manifests "$PY" deploy/check-manifests.py "$ZF"

# kubectl: scripts/kubectl.sh installs a pinned one (Debian 12's is too old
# for kustomize Components). Each overlay is rendered and its output checked.
render_check() {
	local out rc=0
	out=$(mktemp)
	scripts/kubectl.sh kustomize "$1" >"$out" || rc=1
	[ $rc = 0 ] && { "$PY" deploy/check-manifests.py "$ZF" "$out" || rc=1; }
	rm -f "$out"
	return $rc
}
if KUBECTL=$(scripts/kubectl.sh --path); then
	for k in deploy/kubernetes deploy/kubernetes/examples/*/; do
		run "kubectl kustomize ${k%/} + check-manifests" render_check "${k%/}"
	done
	if timeout 10 "$KUBECTL" version --request-timeout=5s >/dev/null 2>&1; then
		run "kubectl apply --dry-run=client" "$KUBECTL" apply --dry-run=client --validate=false -k deploy/kubernetes
	else
		echo "== kubectl apply --dry-run=client: skipped, no API server answers (it needs discovery data)"
	fi
else
	failed+=("kubectl install")
fi

if need promtool prometheus; then
	run "promtool check rules" promtool check rules deploy/monitoring/zmtpfw-alerts.yaml
	run "check-monitoring (metric names, dashboard, PromQL)" "$PY" deploy/monitoring/check-monitoring.py
fi

if [ ${#failed[@]} -gt 0 ]; then
	echo "lint: FAILED: ${failed[*]}"
	exit 1
fi
echo "lint: all checks passed"
