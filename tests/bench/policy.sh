#!/usr/bin/env bash
# pickle_globals benchmark (issue 11): what checking every import of a
# trusted peer's pickles costs, on the SGLang-shaped corpus of
# tests/e2e/engine_msgs.py (msgspec-era and dataclass-era messages, some
# with real torch tensors and numpy arrays).
#
#   tests/bench/policy.sh [--reps N] [--count N]
#
# Same run, same corpus, a C PUSH peer (zreplay) and a C PULL sink (zbench):
#   direct     the sink bound where zmtpfw's route would dial
#   trusted    zmtpfw, the peer in allow_pickle_from, no pickle_globals:
#              today's behaviour for trusted peers (frames are not scanned)
#   allowlist  zmtpfw, the same peer under pickle_globals = [ "@sglang" ]:
#              every import of every message checked
# and the scanner alone (tests/tools/inspect_driver --bench) in deny mode
# (a peer outside allow_pickle_from: the first import decides) and in
# allowlist mode (every byte of every pickle), in MB/s over pickle bytes.
# Prints medians; the ratios are allowlist / trusted and allowlist / direct.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=${ZMTPFW_BUILD:-$ROOT/build}
PY=/usr/bin/python3
REPS=3
COUNT=200000
while [ $# -gt 0 ]; do
	case "$1" in
	--reps) REPS=$2; shift ;;
	--count) COUNT=$2; shift ;;
	*) sed -n '2,18p' "$0" >&2; exit 2 ;;
	esac
	shift
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/zmtpfw-policy.XXXXXX")
# shellcheck source=tests/bench/lib.sh
. tests/bench/lib.sh

say() { echo "policy.sh: $*" >&2; }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "generating the corpus (2,000 SGLang-shaped messages)"
"$PY" - "$WORK/corpus.frames" <<'PYEOF'
import struct, sys
sys.path.insert(0, "tests/e2e")
import engine_msgs as E
E.add_engines_path()
frames = []
for gen in (E.sglang_msgspec, E.sglang_dataclass):
    for msg in gen(1000, 7):
        frames.extend(msg)
with open(sys.argv[1], "wb") as f:
    for fr in frames:
        f.write(struct.pack("<I", len(fr)) + fr)
print(len(frames), sum(map(len, frames)), file=sys.stderr)
PYEOF

run_one() { # VARIANT -> msg/s on stdout
	local v=$1 up fw sink cfg
	up=$(free_port)
	start "$BUILD/tests/zbench" pull --bind "tcp://127.0.0.1:$up" --count "$COUNT" --verify 0 --timeout-secs 120 >"$WORK/pull.json"
	sink=$LAST
	wait_for 10 listening "$up"
	if [ "$v" = direct ]; then
		fw=$up
	else
		fw=$(free_port)
		cfg=$WORK/$v.conf
		{
			echo 'log = { level = "warn"; };'
			echo "routes = ( { listen = \"127.0.0.1:$fw\"; upstream = \"127.0.0.1:$up\";"
			echo '  allow = [ "127.0.0.1/32" ]; allow_pickle_from = [ "127.0.0.1/32" ];'
			[ "$v" = allowlist ] && echo '  pickle_globals = [ "@sglang" ];'
			echo '} );'
		} >"$cfg"
		start "$BUILD/zmtpfw" -c "$cfg" 2>"$WORK/$v.log"
		wait_for 10 listening "$fw"
	fi
	"$BUILD/tests/zreplay" --connect "tcp://127.0.0.1:$fw" --file "$WORK/corpus.frames" --count "$COUNT" >/dev/null
	reap "$sink"
	[ "$v" = direct ] || stop "$LAST"
	if grep -q '"event":"drop"' "$WORK/$v.log" 2>/dev/null; then
		say "$v: zmtpfw dropped a legitimate message:"; grep -m1 '"event":"drop"' "$WORK/$v.log" >&2; exit 1
	fi
	"$PY" -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["msg_per_s"]))' "$WORK/pull.json"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A R
for v in direct trusted allowlist; do
	vals=()
	for ((i = 0; i < REPS; i++)); do vals+=("$(run_one "$v")"); done
	R[$v]=$(printf '%s\n' "${vals[@]}" | median)
	say "$v: ${vals[*]} msg/s (median ${R[$v]})"
done
deny=$("$BUILD/tests/inspect_driver" --bench 3 <"$WORK/corpus.frames")
allow=$("$BUILD/tests/inspect_driver" --bench 3 --globals @sglang <"$WORK/corpus.frames")
"$BUILD/tests/inspect_driver" --globals @sglang <"$WORK/corpus.frames" | tail -1 | grep -q ' drop 0 ' ||
	{ say "the scanner drops part of the corpus under @sglang"; exit 1; }
printf '\n| setup | msg/s (median of %d) | vs trusted | vs direct |\n|---|---|---|---|\n' "$REPS"
for v in direct trusted allowlist; do
	printf '| %s | %s | %.2f× | %.2f× |\n' "$v" "${R[$v]}" \
		"$(echo "${R[$v]} / ${R[trusted]}" | bc -l)" "$(echo "${R[$v]} / ${R[direct]}" | bc -l)"
done
printf '\nscanner alone over the corpus: deny mode %s; allowlist @sglang %s\n' "$deny" "$allow"
