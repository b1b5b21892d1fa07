#!/usr/bin/env bash
# One entry point for newcomers and CI (Debian 12):
#   scripts/dev.sh run    install dependencies, build, start zmtpfw on conf/zmtpfw.conf
#   scripts/dev.sh test   install dependencies, build, run every test
#   scripts/dev.sh demo   install dependencies, build, a guided tour (scripts/demo.py):
#                         an exploit lands on a bare pyzmq worker, is dropped by zmtpfw
#   scripts/dev.sh deps | build | unit | e2e | asan
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${ZMTPFW_BUILD:-$ROOT/build}
PY=/usr/bin/python3 # Debian's python3: the one that sees python3-zmq and python3-pytest

# Build and test dependencies, all from Debian's archive.
DEPS=(build-essential cmake pkg-config clang libevent-dev libconfig-dev libzmq3-dev
      python3 python3-zmq python3-pytest python3-msgpack iproute2 procps
      iptables yamllint python3-yaml shellcheck systemd
      # pickle policy tests: real tensors and arrays, and the gadgets' modules
      python3-numpy python3-torch python3-cloudpickle python3-dill python3-joblib
      python3-requests idle-python3.11 bc)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

deps() {
	local missing=()
	for p in "${DEPS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "installing: ${missing[*]}"
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
	fi
}

build() {
	cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
	cmake --build "$BUILD" -j"$(nproc)"
}

unit() { ctest --test-dir "$BUILD" --output-on-failure; }

e2e() { ZMTPFW_REQUIRE=1 ZMTPFW_BUILD=$BUILD ZMTPFW_BIN=$BUILD/zmtpfw "$PY" -m pytest -q -p no:cacheprovider tests/e2e "$@"; }

case "${1:-}" in
deps) deps ;;
build) deps; build ;;
run)
	deps; build
	exec "$BUILD/zmtpfw" -c "${2:-$ROOT/conf/zmtpfw.conf}"
	;;
demo)
	deps; build
	exec "$PY" "$ROOT/scripts/demo.py" --zmtpfw "$BUILD/zmtpfw" "${@:2}"
	;;
unit) unit ;;
e2e) shift; e2e "$@" ;;
test)
	deps; build
	unit
	e2e
	;;
asan)
	# The whole suite against an AddressSanitizer + UBSan build, less the
	# attack controls: they send straight to the worker, no zmtpfw runs.
	shift
	deps
	BUILD=$ROOT/build-asan build -DZMTPFW_SANITIZE=ON
	BUILD=$ROOT/build-asan unit
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		BUILD=$ROOT/build-asan e2e -k "not test_control_lands" "$@"
	;;
*)
	sed -n '2,7p' "$0" >&2
	exit 2
	;;
esac
