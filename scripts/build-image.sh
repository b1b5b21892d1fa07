#!/usr/bin/env bash
# The steps of the container image (Dockerfile), as a script CI runs on the
# host too, so they are proven without a Docker engine.
#
#   scripts/build-image.sh [--destdir DIR] [--build-dir DIR] STAGE...
#
# Stages, in the order the Dockerfile runs them:
#   build-deps    apt-get install the build dependencies (build stage only)
#   build         cmake build (RelWithDebInfo), ctest, install into DESTDIR:
#                   /usr/local/bin/zmtpfw
#                   /usr/local/libexec/zmtpfw/healthcheck
#                   /usr/local/share/zmtpfw/examples/*.conf
#                   /usr/local/share/zmtpfw/runtime-packages (from ldd + dpkg)
#                   /etc/zmtpfw/zmtpfw.conf (deploy/docker/zmtpfw.conf)
#   runtime-deps  apt-get install exactly runtime-packages, nothing else
#   user          create the unprivileged user zmtpfw (uid/gid 10001)
#   check         zmtpfw -t on the shipped config and every example; every
#                 shared library resolves; runtime-packages are installed
#   iptables-init the init-container image: iptables (nf_tables backend) and
#                 deploy/kubernetes/iptables-init.sh as
#                 /usr/local/bin/zmtpfw-iptables-init
#
# DESTDIR defaults to / (inside the image). On a host: --destdir "$(mktemp -d)".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DESTDIR=/
BUILD_DIR=${ZMTPFW_IMAGE_BUILD:-$ROOT/build-image}
PREFIX=/usr/local
UID_GID=10001

BUILD_DEPS=(build-essential cmake pkg-config libevent-dev libconfig-dev)

while [ $# -gt 0 ]; do
	case "$1" in
	--destdir) DESTDIR=$2; shift 2 ;;
	--build-dir) BUILD_DIR=$2; shift 2 ;;
	-h | --help) sed -n '2,25p' "$0"; exit 0 ;;
	--*) echo "build-image: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || { sed -n '2,25p' "$0" >&2; exit 2; }
DESTDIR=${DESTDIR%/}
BIN=$DESTDIR$PREFIX/bin/zmtpfw
SHARE=$DESTDIR$PREFIX/share/zmtpfw
CONF=$DESTDIR/etc/zmtpfw/zmtpfw.conf

log() { echo "build-image: $*" >&2; }

apt_install() {
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "$@"
}

stage_build_deps() {
	apt_install "${BUILD_DEPS[@]}"
}

stage_build() {
	cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build "$BUILD_DIR" -j"$(nproc)"
	ctest --test-dir "$BUILD_DIR" --output-on-failure
	install -D -m 0755 "$BUILD_DIR/zmtpfw" "$BIN"
	install -D -m 0755 deploy/docker/healthcheck.sh "$DESTDIR$PREFIX/libexec/zmtpfw/healthcheck"
	install -D -m 0644 deploy/docker/zmtpfw.conf "$CONF"
	install -d "$SHARE/examples"
	install -m 0644 conf/zmtpfw.conf "$SHARE/zmtpfw.conf.reference"
	install -m 0644 conf/examples/*.conf "$SHARE/examples/"
	# The runtime image gets the Debian packages owning the libraries this
	# binary links, and nothing more.
	local libs pkgs=()
	libs=$(ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }')
	for l in $libs; do
		local owner
		owner=$(dpkg -S "$(readlink -f "$l")" 2>/dev/null || dpkg -S "$l" 2>/dev/null) ||
			{ log "no Debian package owns $l"; exit 1; }
		pkgs+=("${owner%%:*}")
	done
	printf '%s\n' "${pkgs[@]}" | sort -u >"$SHARE/runtime-packages"
	log "runtime packages: $(tr '\n' ' ' <"$SHARE/runtime-packages")"
}

stage_runtime_deps() {
	local pkgs
	mapfile -t pkgs <"$SHARE/runtime-packages"
	[ ${#pkgs[@]} -gt 0 ] || { log "empty runtime-packages"; exit 1; }
	apt_install "${pkgs[@]}"
	apt-get clean
	rm -rf /var/lib/apt/lists/*
}

stage_user() {
	getent group zmtpfw >/dev/null || groupadd --gid "$UID_GID" zmtpfw
	getent passwd zmtpfw >/dev/null ||
		useradd --uid "$UID_GID" --gid "$UID_GID" --no-create-home \
			--home-dir /nonexistent --shell /usr/sbin/nologin zmtpfw
}

stage_iptables_init() {
	apt_install iptables
	apt-get clean
	rm -rf /var/lib/apt/lists/*
	install -D -m 0755 deploy/kubernetes/iptables-init.sh "$DESTDIR$PREFIX/bin/zmtpfw-iptables-init"
	local usage
	usage=$("$DESTDIR$PREFIX/bin/zmtpfw-iptables-init" --help 2>&1 || true)
	grep -q WORKER_PORT:ZMTPFW_PORT <<<"$usage"
}

stage_check() {
	[ -x "$BIN" ] || { log "$BIN missing (run the build stage)"; exit 1; }
	if ldd "$BIN" | grep -q 'not found'; then
		ldd "$BIN" >&2
		log "unresolved shared libraries"
		exit 1
	fi
	local p
	while read -r p; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			{ log "runtime package $p is not installed"; exit 1; }
	done <"$SHARE/runtime-packages"
	"$BIN" --version
	"$BIN" -t -c "$CONF"
	local f
	for f in "$SHARE"/examples/*.conf "$SHARE/zmtpfw.conf.reference"; do
		"$BIN" -t -c "$f" >/dev/null || { log "zmtpfw -t failed on $f"; exit 1; }
	done
	bash -n "$DESTDIR$PREFIX/libexec/zmtpfw/healthcheck"
	log "check ok: $("$BIN" --version 2>&1 | head -1)"
}

for s in "$@"; do
	case "$s" in
	build-deps) stage_build_deps ;;
	build) stage_build ;;
	runtime-deps) stage_runtime_deps ;;
	user) stage_user ;;
	check) stage_check ;;
	iptables-init) stage_iptables_init ;;
	*) echo "build-image: unknown stage '$s'" >&2; exit 2 ;;
	esac
done
