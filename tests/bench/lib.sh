# shellcheck shell=bash
# Process bookkeeping shared by tests/bench/run.sh and tests/bench/profile.sh,
# sourced (from the repository root) once WORK, the work directory, exists.
#
# Every background process goes through start, so that whatever ends the
# script (the end, an error under set -e, ^C or SIGTERM) kills and reaps
# what still runs, then removes WORK (kept with ZBENCH_KEEP=1).

PIDS=() # started and not yet reaped

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ "${ZBENCH_KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start COMMAND...: run it in the background; its pid is LAST.
start() { "$@" & LAST=$!; PIDS+=("$LAST"); }
forget() {
	local keep=() p
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}
reap() { local rc=0; wait "$1" || rc=$?; forget "$1"; return $rc; }
stop() { kill "$1" 2>/dev/null || true; reap "$1" || true; }
wait_for() { # SECONDS COMMAND...: poll until it succeeds
	local i n=$(($1 * 20))
	shift
	for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 0.05; done
	return 1
}
listening() { # PORT on 127.0.0.1 in LISTEN state
	awk -v p="$(printf ':%04X' "$1")" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 }
		END { exit !f }' /proc/net/tcp
}
