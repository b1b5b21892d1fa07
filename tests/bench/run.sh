#!/usr/bin/env bash
# zmtpfw benchmark: the same libzmq peers (tests/bench/zbench.c) directly,
# through zmtpfw, through HAProxy in TCP mode and HAProxy with splice-auto,
# in one run. Prints one markdown table: medians, and ratios to direct.
#
#   tests/bench/run.sh [--quick]
#
# Builds nothing: expects build/ (scripts/dev.sh build) or ZMTPFW_BUILD=DIR.
# Installs haproxy from Debian when missing and running as root (set
# ZBENCH_NO_INSTALL=1 to skip); without it the HAProxy columns say n/a.
# --quick: one repetition, tiny counts, no HAProxy: a smoke test for CI that
# only has to exit 0 and print the table; its figures mean nothing.
# Env: ZBENCH_REPS (default 3), ZBENCH_PORT (base of 4 ports, < 32768),
# ZBENCH_KEEP=1 keeps the work directory (logs, configs, raw results).
# Loopback only; every process is bounded in time and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${ZMTPFW_BUILD:-$PWD/build}
ZB=$BUILD/tests/zbench
FW=$BUILD/zmtpfw
QUICK=0
[ "${1:-}" = --quick ] && QUICK=1
REPS=${ZBENCH_REPS:-3}
BASE=${ZBENCH_PORT:-$((20000 + $$ % 1000 * 10))}
P_UP=$BASE P_FW=$((BASE + 1)) P_HA=$((BASE + 2)) P_HAS=$((BASE + 3))
T=120 # seconds any one peer may run

# Workloads. Throughput: "key size count header"; latency: "key size count".
if [ $QUICK = 1 ]; then
	REPS=1
	TPUT=("64B 64 20000 0" "1KiB 1024 10000 0" "64KiB 65536 1000 0" "1MiB 1048576 100 0"
	      "16MiB 16777216 10 0" "multi 1048576 100 64")
	LAT=("64B 64 1000" "64KiB 65536 300")
	TR_CONNS=100 TR_RATE=10 TR_SECS=1 IDLE_N=200
else
	TPUT=("64B 64 4000000 0" "1KiB 1024 700000 0" "64KiB 65536 30000 0" "1MiB 1048576 4000 0"
	      "16MiB 16777216 250 0" "multi 1048576 4000 64")
	LAT=("64B 64 20000" "64KiB 65536 10000")
	TR_CONNS=1000 TR_RATE=10 TR_SECS=5 IDLE_N=10000
fi

for f in "$ZB" "$FW"; do
	[ -x "$f" ] || { echo "run.sh: $f missing: build first (scripts/dev.sh build)" >&2; exit 3; }
done

# A relay holds two descriptors per connection, and HAProxy wants its
# maxconn (IDLE_N + 100) times two plus ~150 spare: the idle test fits that.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
[ "$IDLE_N" -gt $(((NOFILE - 400) / 2 - 100)) ] && IDLE_N=$(((NOFILE - 400) / 2 - 100))
MAXCONN=2000 # HAProxy's, except in the idle test

WORK=$(mktemp -d /tmp/zbench.XXXXXX)
RES=$WORK/results # raw lines: key variant value...
ANOM=$WORK/anomalies
touch "$RES" "$ANOM"
PIDS=() # started and not yet reaped

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ "${ZBENCH_KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "run.sh: $*" >&2; }
anomaly() { say "ANOMALY: $*"; echo "$*" >>"$ANOM"; }
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
json() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" "$2" | grep . || echo 0; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# HAProxy: present, or installable here, unless --quick.
HAPROXY=$(command -v haproxy || true)
if [ -z "$HAPROXY" ] && [ $QUICK = 0 ] && [ "${ZBENCH_NO_INSTALL:-0}" != 1 ] && [ "$(id -u)" = 0 ]; then
	say "installing haproxy"
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy; } \
		>"$WORK/apt.log" 2>&1 || say "haproxy install failed: see $WORK/apt.log"
	HAPROXY=$(command -v haproxy || true)
fi
VARIANTS=(direct zmtpfw)
[ -n "$HAPROXY" ] && [ $QUICK = 0 ] && VARIANTS+=(haproxy splice)

N_RELAY=0
# relay_start VARIANT: sets FRONT (port the client dials) and RELAY_PID.
relay_start() {
	N_RELAY=$((N_RELAY + 1))
	RELAY_PID='' RELAY=$1
	local log=$WORK/$1.$N_RELAY.log cfg
	case $1 in
	direct) FRONT=$P_UP; return 0 ;;
	zmtpfw)
		FRONT=$P_FW cfg=$WORK/zmtpfw.conf
		cat >"$cfg" <<-EOF
			routes = ( { name = "bench"; listen = "127.0.0.1:$P_FW"; upstream = "127.0.0.1:$P_UP";
			             allow = [ "127.0.0.0/8" ]; max_frame_size = 268435456;
			             max_message_size = 268435456; max_connections = $((IDLE_N + 100)); } );
		EOF
		start "$FW" -c "$cfg" 2>"$log"
		RELAY_PID=$LAST
		wait_for 10 grep -q '"listening"' "$log" || { anomaly "zmtpfw did not start: $(tail -1 "$log")"; return 1; }
		;;
	haproxy | splice)
		FRONT=$P_HA cfg=$WORK/haproxy.cfg
		[ "$1" = splice ] && FRONT=$P_HAS
		sed -e "s/@LISTEN@/$FRONT/; s/@UPSTREAM@/$P_UP/; s/@MAXCONN@/$MAXCONN/" \
			-e "s/@SPLICE@/$([ "$1" = splice ] && echo 'option splice-auto')/" \
			tests/bench/haproxy.cfg.in >"$cfg"
		start "$HAPROXY" -db -f "$cfg" 2>"$log" >&2
		RELAY_PID=$LAST
		wait_for 10 listening "$FRONT" || { anomaly "haproxy did not start: $(grep -m1 ALERT "$log")"; return 1; }
		;;
	esac
}
relay_stop() {
	[ -n "$RELAY_PID" ] || return 0
	kill -0 "$RELAY_PID" 2>/dev/null || anomaly "$RELAY exited during a measurement"
	stop "$RELAY_PID"
	RELAY_PID=
}

# One PUSH->PULL run: KEY VARIANT SIZE COUNT HEADER -> "KEY VARIANT msg/s MB/s"
m_tput() {
	local out=$WORK/pull.json pull
	start timeout -k 5 $T "$ZB" pull --bind "tcp://127.0.0.1:$P_UP" --count "$4" --timeout-secs 20 >"$out"
	pull=$LAST
	wait_for 10 listening "$P_UP" && relay_start "$2" &&
		{ timeout -k 5 $T "$ZB" push --connect "tcp://127.0.0.1:$FRONT" --size "$3" --count "$4" \
			--header "$5" >/dev/null || anomaly "$1 $2: push failed ($?)"; }
	if reap "$pull"; then echo "$1 $2 $(json msg_per_s "$out") $(json mb_per_s "$out")" >>"$RES"
	else anomaly "$1 $2: worker incomplete: $(cat "$out")"; fi
	relay_stop
}

# One REQ->REP run: KEY VARIANT SIZE COUNT -> "lat_KEY VARIANT p50 p99"
m_lat() {
	local out=$WORK/req.json rep
	echo '{}' >"$out"
	start timeout -k 5 $T "$ZB" rep --bind "tcp://127.0.0.1:$P_UP" --timeout-secs 20 >/dev/null
	rep=$LAST
	if wait_for 10 listening "$P_UP" && relay_start "$2"; then
		if timeout -k 5 $T "$ZB" req --connect "tcp://127.0.0.1:$FRONT" --size "$3" --count "$4" \
			--warmup 200 >"$out"; then
			echo "lat_$1 $2 $(json p50_us "$out") $(json p99_us "$out")" >>"$RES"
		else anomaly "lat $1 $2: req failed"; fi
	fi
	stop "$rep"
	relay_stop
}

# TR_CONNS connections trickling: VARIANT -> "trickle VARIANT delivered sent relay_cpu%"
m_trickle() {
	local out=$WORK/trickle.json pulled=$WORK/pull.json pull total=$((TR_CONNS * TR_RATE * TR_SECS))
	echo '{}' >"$out"
	start timeout -k 5 $T "$ZB" pull --bind "tcp://127.0.0.1:$P_UP" --count $total --timeout-secs 10 >"$pulled"
	pull=$LAST
	if ! { wait_for 10 listening "$P_UP" && relay_start "$1"; }; then
		stop "$pull"
		relay_stop
		return 0
	fi
	timeout -k 5 $T "$ZB" trickle --connect "tcp://127.0.0.1:$FRONT" --conns $TR_CONNS \
		--rate $TR_RATE --secs $TR_SECS --watch-pid "${RELAY_PID:-0}" >"$out" ||
		anomaly "trickle $1: sender failed ($?)"
	reap "$pull" || anomaly "trickle $1: worker incomplete: $(cat "$pulled")"
	relay_stop
	echo "trickle $1 $(json msgs "$pulled") $total $(json watch_cpu_pct "$out")" >>"$RES"
}

# Relay RSS before and with IDLE_N idle connections: VARIANT -> "rss VARIANT KiB0 KiB1 opened"
m_rss() {
	local out=$WORK/idle.json pull idle r0 r1 MAXCONN=$((IDLE_N + 100))
	: >"$out"
	start timeout -k 5 $T "$ZB" pull --bind "tcp://127.0.0.1:$P_UP" --count 1 --timeout-secs $T >/dev/null
	pull=$LAST
	if ! { wait_for 10 listening "$P_UP" && relay_start "$1"; }; then
		stop "$pull"
		relay_stop
		return 0
	fi
	sleep 0.5
	r0=$(rss_kib "$RELAY_PID")
	start timeout -k 5 $T "$ZB" idle --connect "tcp://127.0.0.1:$FRONT" --conns "$IDLE_N" --sources 4 \
		--hold-secs $T >"$out"
	idle=$LAST
	wait_for 60 grep -q conns "$out" || anomaly "rss $1: idle connections not opened in 60 s"
	sleep 1
	r1=$(rss_kib "$RELAY_PID")
	grep -q '"failed":0' "$out" || anomaly "rss $1: $(cat "$out")"
	stop "$idle"
	relay_stop
	stop "$pull"
	echo "rss $1 $r0 $r1 $(json opened "$out")" >>"$RES"
}

say "variants: ${VARIANTS[*]}; $REPS repetition(s); ports $P_UP-$P_HAS; work dir $WORK"
for ((rep = 1; rep <= REPS; rep++)); do
	for w in "${TPUT[@]}"; do
		set -- $w
		for v in "${VARIANTS[@]}"; do say "rep $rep: $1 $v"; m_tput "$1" "$v" "$2" "$3" "$4"; done
	done
	for w in "${LAT[@]}"; do
		set -- $w
		for v in "${VARIANTS[@]}"; do say "rep $rep: latency $1 $v"; m_lat "$1" "$v" "$2" "$3"; done
	done
	for v in "${VARIANTS[@]}"; do say "rep $rep: trickle $v"; m_trickle "$v"; done
done
for v in "${VARIANTS[@]}"; do
	[ "$v" = direct ] || [ "$v" = splice ] || { say "rss $v"; m_rss "$v"; }
done

# ---- the table: medians over repetitions, ratios to direct ----
ran() { [[ " ${VARIANTS[*]} " == *" $1 "* ]]; }
med() { # KEY VARIANT FIELD: median of that field over the repetitions
	awk -v k="$1" -v v="$2" -v f="$3" '$1 == k && $2 == v { print $f }' "$RES" | sort -g |
		awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'
}
fmt() { # VALUE UNIT
	awk -v x="$1" -v u="$2" 'BEGIN {
		if (u == "msg" && x >= 1e6) printf "%.2f M msg/s", x / 1e6
		else if (u == "msg") printf "%.0f k msg/s", x / 1e3
		else if (u == "mb" && x >= 1000) printf "%.2f GB/s", x / 1000
		else if (u == "mb") printf "%.0f MB/s", x
		else if (u == "kib") printf "%.1f MiB", x / 1024
		else printf "%.0f %s", x, u }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else printf "n/a" }'; }
row() { local out="|" c; for c; do out+=" $c |"; done; echo "$out"; }

# KEY LABEL FIELD UNIT: one throughput row
tput_row() {
	local d x cells=()
	d=$(med "$1" direct "$3")
	for v in zmtpfw haproxy splice; do
		x=$(med "$1" "$v" "$3")
		if [ -n "$x" ]; then cells+=("$(fmt "$x" "$4") ($(ratio "$x" "$d"))")
		elif ran "$v"; then cells+=("failed"); else cells+=("n/a"); fi
	done
	row "$2" "$(fmt "$d" "$4")" "${cells[@]}"
}
# KEY LABEL FIELD: one latency row, added microseconds vs direct
lat_row() {
	local d x cells=()
	d=$(med "$1" direct "$3")
	for v in zmtpfw haproxy splice; do
		x=$(med "$1" "$v" "$3")
		if [ -n "$x" ]; then
			cells+=("$(fmt "$x" µs) ($(awk -v a="$x" -v b="$d" 'BEGIN { printf "%+.0f µs", a - b }'), $(ratio "$x" "$d"))")
		elif ran "$v"; then cells+=("failed"); else cells+=("n/a"); fi
	done
	row "$2" "$(fmt "$d" µs)" "${cells[@]}"
}
# LABEL FORMAT-FUNCTION: a row with a value per relay (no direct, no ratio)
relay_row() {
	local label=$1 cells=()
	shift
	for v in direct zmtpfw haproxy splice; do
		if ran "$v"; then cells+=("$("$@" "$v")"); else cells+=("n/a"); fi
	done
	row "$label" "${cells[@]}"
}
delivered() { [ -n "$(med trickle "$1" 3)" ] && echo "$(med trickle "$1" 3) / $(med trickle "$1" 4)" || echo failed; }
cpu() {
	[ "$1" = direct ] || [ -z "$(med trickle "$1" 5)" ] && { echo "—"; return; }
	awk -v x="$(med trickle "$1" 5)" 'BEGIN { printf "%.1f %%", x }'
}
rss0() { [ -n "$(med rss "$1" 3)" ] && fmt "$(med rss "$1" 3)" kib || echo "—"; }
rss1() { [ -n "$(med rss "$1" 4)" ] && fmt "$(med rss "$1" 4)" kib || echo "—"; }
per_conn() {
	local a b n
	a=$(med rss "$1" 3) b=$(med rss "$1" 4) n=$(med rss "$1" 5)
	[ -n "$a" ] && awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN { printf "%.1f KiB", n ? (b - a) / n : 0 }' || echo "—"
}

declare -A LABEL=([64B]="64 B" [1KiB]="1 KiB" [64KiB]="64 KiB" [1MiB]="1 MiB" [16MiB]="16 MiB"
	[multi]="64 B header + 1 MiB tensor")
echo
echo "| workload | direct | zmtpfw | HAProxy TCP | HAProxy splice-auto |"
echo "|---|---|---|---|---|"
for w in "${TPUT[@]}"; do
	set -- $w
	if [ "$2" -le 1024 ]; then tput_row "$1" "PUSH→PULL ${LABEL[$1]}, $3 msgs" 3 msg
	else tput_row "$1" "PUSH→PULL ${LABEL[$1]}, $3 msgs" 4 mb; fi
done
for w in "${LAT[@]}"; do
	set -- $w
	lat_row "lat_$1" "REQ→REP ${LABEL[$1]} p50 ($3 round trips)" 3
	lat_row "lat_$1" "REQ→REP ${LABEL[$1]} p99" 4
done
relay_row "$TR_CONNS conns × $TR_RATE msg/s × $TR_SECS s: delivered" delivered
relay_row "$TR_CONNS conns trickling: relay CPU" cpu
relay_row "relay RSS, no connection" rss0
relay_row "relay RSS, $IDLE_N idle connections" rss1
relay_row "RSS per idle connection" per_conn
echo
echo "Medians of $REPS run(s); ratio = relay ÷ direct (throughput and latency)."
echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
	"kernel $(uname -r), libzmq $("$ZB" version), zmtpfw $("$FW" --version | awk '{ print $2 }')," \
	"$([ -n "$HAPROXY" ] && "$HAPROXY" -v | awk 'NR == 1 { print "HAProxy " $3 }' || echo "no HAProxy")," \
	"RLIMIT_NOFILE $NOFILE."

# ---- anomalies: ours, and what zmtpfw logged above info level (the log
# rate limiter's "suppressed" notices for accept/close lines are expected) ----
fw_logs() { cat "$WORK"/zmtpfw.*.log 2>/dev/null | grep -v '"event":"suppressed"' || true; }
fw_warn=$(fw_logs | grep -c '"level":"\(warn\|error\)"' || true)
fw_drop=$(fw_logs | grep -c '"dropped":[1-9]' || true)
[ "$fw_warn" -gt 0 ] && anomaly "zmtpfw logged $fw_warn warn/error lines, e.g.: $(fw_logs | grep -m3 '"level":"\(warn\|error\)"')"
[ "$fw_drop" -gt 0 ] && anomaly "zmtpfw closed $fw_drop connections with dropped messages"
if [ -s "$ANOM" ]; then
	echo
	echo "Anomalies:"
	sed 's/^/- /' "$ANOM"
else
	echo "No anomaly: every message delivered, no zmtpfw warning or error."
fi
exit 0
