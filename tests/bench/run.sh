#!/usr/bin/env bash
# zmtpfw benchmark: the same libzmq peers (tests/bench/zbench.c) directly,
# through zmtpfw (enforce mode, pickle scanning on, allowlist on) with
# threads = 1 and threads = 2, through HAProxy in TCP mode and HAProxy with
# splice-auto, in one run. Prints the
# machine, then one markdown table: medians, ratios to direct.
#
#   tests/bench/run.sh [--quick] [--reps N] [--no-haproxy]
#
# Builds nothing: expects build/ (scripts/dev.sh build) or ZMTPFW_BUILD=DIR.
# Installs haproxy from Debian when missing and running as root, except with
# --quick or ZBENCH_NO_INSTALL=1; without it the HAProxy columns say n/a.
#
# Every message is checked on arrival (count, frames, sizes, sequence
# numbers; every byte with --quick), REQ/REP replies byte for byte, idle
# connections by their handshake, and zmtpfw must drop the pickles slipped
# into one extra run. Any failure is listed under "Anomalies" and makes the
# script exit 1, after the table.
#
# --quick: every workload once with tiny counts: the CI smoke test. Its
# figures mean nothing; it only proves that every byte arrives (exit 0).
# --reps N (or ZBENCH_REPS): repetitions, median reported (default 3).
# --no-haproxy: direct and zmtpfw only.
# Env: ZBENCH_PORT (base of 4 ports, < 32768), ZBENCH_KEEP=1 keeps the work
# directory (logs, configs, one raw line per measurement).
# Loopback only; every process is bounded in time and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${ZMTPFW_BUILD:-$PWD/build}
ZB=$BUILD/tests/zbench
FW=$BUILD/zmtpfw
QUICK=0 REPS=${ZBENCH_REPS:-3} USE_HAPROXY=1
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1 ;;
	--reps) REPS=${2:?--reps N}; shift ;;
	--no-haproxy) USE_HAPROXY=0 ;;
	*) sed -n '6,7p' "$0" >&2; exit 3 ;;
	esac
	shift
done
BASE=${ZBENCH_PORT:-$((20000 + $$ % 1000 * 10))}
P_UP=$BASE P_FW=$((BASE + 1)) P_HA=$((BASE + 2)) P_HAS=$((BASE + 3))
T=120 # seconds any one peer may run

# Workloads. Throughput: "key size count header conns" (conns PUSH
# connections from one sender, round robin); latency: "key size count".
# Trickle: TR_CONNS connections × TR_RATE msg/s each × TR_SECS s of 64 B.
if [ $QUICK = 1 ]; then
	REPS=1 VERIFY=2
	TPUT=("64B 64 20000 0 1" "1KiB 1024 10000 0 1" "64KiB 65536 500 0 1" "1MiB 1048576 50 0 1"
	      "16MiB 16777216 5 0 1" "multi 1048576 50 64 1" "1KiBx64 1024 10000 0 64")
	LAT=("64B 64 500" "64KiB 65536 200")
	TR_CONNS=1000 TR_RATE=1 TR_SECS=1 IDLE_TARGET=500 PICKLE_RUN="1024 2000 64 20"
else
	VERIFY=1
	TPUT=("64B 64 4000000 0 1" "1KiB 1024 700000 0 1" "64KiB 65536 30000 0 1" "1MiB 1048576 4000 0 1"
	      "16MiB 16777216 250 0 1" "multi 1048576 4000 64 1" "1KiBx64 1024 1400000 0 64")
	LAT=("64B 64 20000" "64KiB 65536 10000")
	TR_CONNS=1000 TR_RATE=10 TR_SECS=5 IDLE_TARGET=10000 PICKLE_RUN="1024 100000 64 100"
fi
[[ $REPS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --reps needs a positive number" >&2; exit 3; }

for f in "$ZB" "$FW"; do
	[ -x "$f" ] || { echo "run.sh: $f missing: build first (scripts/dev.sh build)" >&2; exit 3; }
done

# A relay holds two descriptors per proxied connection (plus a few of its
# own): 10,000 idle connections need a limit above 20,000. Raise it as far
# as allowed and open as many as fit, the same number through every relay.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
IDLE_N=$IDLE_TARGET
[ "$IDLE_N" -gt $(((NOFILE - 40) / 2)) ] && IDLE_N=$(((NOFILE - 40) / 2))
# HAProxy's maxconn: enough for the trickle; the idle test raises it (not
# for splice-auto, whose pipes would need more descriptors than allowed).
MAXCONN=$((TR_CONNS + 10))

WORK=$(mktemp -d /tmp/zbench.XXXXXX)
RES=$WORK/results # raw lines: key variant value... r=REPETITION
ANOM=$WORK/anomalies
touch "$RES" "$ANOM"
# PIDS, cleanup on exit, start, forget, reap, stop, wait_for, listening
# shellcheck source-path=SCRIPTDIR/../..
. tests/bench/lib.sh

say() { echo "run.sh: $*" >&2; }
anomaly() { say "ANOMALY: $*"; echo "$*" | tr '\n' ' ' | sed 's/ $//' >>"$ANOM"; echo >>"$ANOM"; }
json() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" "$2" | grep . || echo 0; }
json_str() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" "$2"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu_ns() { # CPU time of a live process, all threads, in nanoseconds (schedstat)
	cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { printf "%.0f\n", t }'
}
TCK=$(getconf CLK_TCK)

# ---- the machine, and how busy it is without us ----
# sys_ticks: busy (non-idle, non-iowait, non-steal) and steal ticks of all CPUs.
sys_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat; }
# our_ticks: CPU of this shell's reaped children (every peer and relay).
our_ticks() {
	times | awk -v t="$TCK" 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/)
		printf "%.0f\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * t }'
}
busy_pct() { # SECONDS: % of one CPU busy machine-wide over that time (nothing of ours runs)
	local a b
	a=$(sys_ticks); sleep "$1"; b=$(sys_ticks)
	awk -v a="${a% *}" -v b="${b% *}" -v s="$1" -v t="$TCK" 'BEGIN { printf "%.0f", (b - a) / t / s * 100 }'
}
MACHINE="$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)),"
MACHINE+=" $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo),"
MACHINE+=" kernel $(uname -r), $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME" || echo "unknown OS"),"
MACHINE+=" libzmq $("$ZB" version), libevent $(pkg-config --modversion libevent 2>/dev/null || echo "?"),"
MACHINE+=" zmtpfw $("$FW" --version | awk '{ print $2 }') (binary built $(date -u -r "$FW" '+%Y-%m-%d %H:%M UTC'),"
MACHINE+=" tree now at $(git -C . describe --always --dirty 2>/dev/null || echo "no git"))"
START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY0=$(busy_pct 2)
SYS0=$(sys_ticks) OUR0=$(our_ticks) T0=$(date +%s)

# HAProxy: present, or installable here, unless --quick.
HAPROXY=
if [ $USE_HAPROXY = 1 ]; then
	HAPROXY=$(command -v haproxy || true)
	if [ -z "$HAPROXY" ] && [ $QUICK = 0 ] && [ "${ZBENCH_NO_INSTALL:-0}" != 1 ] && [ "$(id -u)" = 0 ]; then
		say "installing haproxy"
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy; } \
			>"$WORK/apt.log" 2>&1 || say "haproxy install failed: see $WORK/apt.log"
		HAPROXY=$(command -v haproxy || true)
	fi
fi
VARIANTS=(direct zmtpfw zmtpfw2) # zmtpfw2: threads = 2
[ -n "$HAPROXY" ] && VARIANTS+=(haproxy splice)
MACHINE+=", $([ -n "$HAPROXY" ] && "$HAPROXY" -v | awk 'NR == 1 { print "HAProxy " $3 }' || echo "no HAProxy")"

lines_at_least() { [ "$(grep -c "$2" "$1")" -ge "$3" ]; } # FILE PATTERN N
N_RELAY=0
# relay_start VARIANT [LOGNAME]: sets FRONT (port the client dials) and RELAY_PID.
relay_start() {
	N_RELAY=$((N_RELAY + 1))
	RELAY_PID='' RELAY=$1
	local log=$WORK/${2:-$1}.$N_RELAY.log cfg
	case $1 in
	direct) FRONT=$P_UP; return 0 ;;
	zmtpfw | zmtpfw2)
		FRONT=$P_FW cfg=$WORK/$1.conf
		cat >"$cfg" <<-EOF
			threads = $([ "$1" = zmtpfw2 ] && echo 2 || echo 1);
			mode = "enforce";
			routes = ( { name = "bench"; listen = "127.0.0.1:$P_FW"; upstream = "127.0.0.1:$P_UP";
			             allow = [ "127.0.0.0/8" ]; pickle = "drop"; on_violation = "drop-message";
			             max_frame_size = 268435456; max_message_size = 268435456;
			             max_connections = $(((IDLE_N > TR_CONNS ? IDLE_N : TR_CONNS) + 100));
			             max_connections_per_peer = 0; } );
		EOF
		start "$FW" -c "$cfg" 2>"$log"
		RELAY_PID=$LAST
		# every loop listening (threads = 2 logs one line per loop)
		wait_for 10 lines_at_least "$log" '"listening"' "$([ "$1" = zmtpfw2 ] && echo 2 || echo 1)" ||
			{ anomaly "$1 did not start: $(tail -1 "$log")"; return 1; }
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
	local rc=0
	[ -n "$RELAY_PID" ] || return 0
	kill -0 "$RELAY_PID" 2>/dev/null || anomaly "$RELAY exited during a measurement"
	kill "$RELAY_PID" 2>/dev/null || true
	reap "$RELAY_PID" || rc=$?
	# zmtpfw exits 0 on SIGTERM; anything else (a crash, a sanitizer report) is a failure.
	[[ $RELAY == zmtpfw* ]] && [ $rc != 0 ] && anomaly "$RELAY exited with status $rc"
	RELAY_PID=
}

# One PUSH->PULL run: KEY VARIANT SIZE COUNT HEADER CONNS
#   -> "KEY VARIANT msg/s MB/s relay_cpu_ns msgs"
m_tput() {
	local out=$WORK/pull.json pull c0=0 c1=0
	start timeout -k 5 $T "$ZB" pull --bind "tcp://127.0.0.1:$P_UP" --count "$4" --size "$3" --header "$5" \
		--verify $VERIFY --unordered $(($6 > 1)) --timeout-secs 20 >"$out"
	pull=$LAST
	if wait_for 10 listening "$P_UP" && relay_start "$2"; then
		[ -n "$RELAY_PID" ] && c0=$(cpu_ns "$RELAY_PID")
		timeout -k 5 $T "$ZB" push --connect "tcp://127.0.0.1:$FRONT" --size "$3" --count "$4" \
			--header "$5" --conns "$6" >/dev/null || anomaly "$1 $2: push failed ($?)"
	fi
	if reap "$pull"; then
		[ -n "$RELAY_PID" ] && c1=$(cpu_ns "$RELAY_PID")
		echo "$1 $2 $(json msg_per_s "$out") $(json mb_per_s "$out") $(((c1 - c0))) $(json msgs "$out") r=$rep" >>"$RES"
	else anomaly "$1 $2: worker: $(cat "$out")"; fi
	relay_stop
}

# One REQ->REP run: KEY VARIANT SIZE COUNT -> "lat_KEY VARIANT p50 p99"
m_lat() {
	local out=$WORK/req.json rep_pid
	echo '{}' >"$out"
	start timeout -k 5 $T "$ZB" rep --bind "tcp://127.0.0.1:$P_UP" --timeout-secs 20 >/dev/null
	rep_pid=$LAST
	if wait_for 10 listening "$P_UP" && relay_start "$2"; then
		if timeout -k 5 $T "$ZB" req --connect "tcp://127.0.0.1:$FRONT" --size "$3" --count "$4" \
			--warmup 200 >"$out"; then
			echo "lat_$1 $2 $(json p50_us "$out") $(json p99_us "$out") r=$rep" >>"$RES"
		else anomaly "lat $1 $2: req failed"; fi
	fi
	stop "$rep_pid"
	relay_stop
}

# TR_CONNS connections trickling, stamped: VARIANT
#   -> "trickle VARIANT delivered sent delivered/s lat_p50 lat_p99 drain_ms relay_cpu% ready_s"
m_trickle() {
	local out=$WORK/trickle.json pulled=$WORK/pull.json pull total=$((TR_CONNS * TR_RATE * TR_SECS))
	echo '{}' >"$out"
	start timeout -k 5 $T "$ZB" pull --bind "tcp://127.0.0.1:$P_UP" --count $total --size 64 --stamps 1 \
		--verify $VERIFY --timeout-secs 10 >"$pulled"
	pull=$LAST
	if ! { wait_for 10 listening "$P_UP" && relay_start "$1"; }; then
		stop "$pull"
		relay_stop
		return 0
	fi
	timeout -k 5 $T "$ZB" trickle --connect "tcp://127.0.0.1:$FRONT" --conns $TR_CONNS --size 64 \
		--rate $TR_RATE --secs $TR_SECS --watch-pid "${RELAY_PID:-0}" >"$out" ||
		anomaly "trickle $1: sender failed ($?)"
	if reap "$pull"; then
		echo "trickle $1 $(json msgs "$pulled") $total $(json delivered_per_s "$pulled")" \
			"$(json lat_p50_us "$pulled") $(json lat_p99_us "$pulled") $(json drain_ms "$pulled")" \
			"$(json watch_cpu_pct "$out") $(json ready_secs "$out") r=$rep" >>"$RES"
	else anomaly "trickle $1: worker: $(cat "$pulled")"; fi
	relay_stop
}

# Relay RSS before and with IDLE_N idle connections: VARIANT -> "rss VARIANT KiB0 KiB1 opened"
m_rss() {
	local out=$WORK/idle.json pull idle r0 r1 MAXCONN=$((IDLE_N + 10)) # seen by relay_start
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
	wait_for 90 grep -q conns "$out" || anomaly "rss $1: idle connections not opened in 90 s"
	sleep 1
	r1=$(rss_kib "$RELAY_PID")
	if grep -q '"failed":0' "$out"; then echo "rss $1 $r0 $r1 $(json opened "$out") r=$rep" >>"$RES"
	else anomaly "rss $1: $(cat "$out")"; fi
	stop "$idle"
	relay_stop
	stop "$pull"
}

# Enforcement is on: PICKLE_RUN = "SIZE COUNT HEADER K": K extra messages
# whose tensor is a pickle must all be dropped, the COUNT clean ones arrive.
m_pickle() {
	local out=$WORK/pickle.json pull log
	set -- $PICKLE_RUN
	start timeout -k 5 $T "$ZB" pull --bind "tcp://127.0.0.1:$P_UP" --count "$2" --size "$1" --header "$3" \
		--verify 2 --timeout-secs 10 >"$out"
	pull=$LAST
	if wait_for 10 listening "$P_UP" && relay_start zmtpfw pickle; then
		log=$WORK/pickle.$N_RELAY.log
		timeout -k 5 $T "$ZB" push --connect "tcp://127.0.0.1:$FRONT" --size "$1" --count "$2" \
			--header "$3" --pickles "$4" >/dev/null || anomaly "pickle: push failed ($?)"
		if reap "$pull"; then
			relay_stop # the close line, with its drop count, is logged now
			local dropped
			dropped=$(sed -n 's/.*"event":"close".*"dropped":\([0-9]*\).*/\1/p' "$log" | head -1)
			echo "pickle zmtpfw ${dropped:-0} $4 $(json msgs "$out") $2 r=$rep" >>"$RES"
			[ "${dropped:-0}" = "$4" ] || anomaly "pickle: zmtpfw dropped ${dropped:-0} of $4 pickle messages"
		else
			anomaly "pickle: worker: $(cat "$out")"
			relay_stop
		fi
	else
		stop "$pull"
		relay_stop
	fi
}

say "variants: ${VARIANTS[*]}; $REPS repetition(s); ports $P_UP-$P_HAS; work dir $WORK"
say "machine busy before the run: $BUSY0 % of one CPU (load average $LOAD0)"
for ((rep = 1; rep <= REPS; rep++)); do
	for w in "${TPUT[@]}"; do
		set -- $w
		for v in "${VARIANTS[@]}"; do say "rep $rep: $1 $v"; m_tput "$1" "$v" "$2" "$3" "$4" "$5"; done
	done
	for w in "${LAT[@]}"; do
		set -- $w
		for v in "${VARIANTS[@]}"; do say "rep $rep: latency $1 $v"; m_lat "$1" "$v" "$2" "$3"; done
	done
	for v in "${VARIANTS[@]}"; do say "rep $rep: trickle $v"; m_trickle "$v"; done
	for v in "${VARIANTS[@]}"; do
		[ "$v" = direct ] || [ "$v" = splice ] || { say "rep $rep: rss $v ($IDLE_N idle connections)"; m_rss "$v"; }
	done
done
say "pickle enforcement check"
m_pickle

SYS1=$(sys_ticks) OUR1=$(our_ticks) T1=$(date +%s)
# Others' CPU during the run: machine-wide busy ticks minus our children's.
FOREIGN=$(awk -v a="${SYS0% *}" -v b="${SYS1% *}" -v o0="$OUR0" -v o1="$OUR1" -v t="$TCK" \
	-v s=$((T1 - T0)) 'BEGIN { x = ((b - a) - (o1 - o0)) / t / (s ? s : 1) * 100; printf "%.0f", x < 0 ? 0 : x }')
STEAL=$(awk -v a="${SYS0#* }" -v b="${SYS1#* }" -v t="$TCK" -v s=$((T1 - T0)) \
	'BEGIN { printf "%.0f", (b - a) / t / (s ? s : 1) * 100 }')
BUSY1=$(busy_pct 2)
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- completeness: every measurement produced its line in every repetition ----
expect() { # KEY VARIANT N
	local got
	got=$(awk -v k="$1" -v v="$2" '$1 == k && $2 == v' "$RES" | wc -l)
	[ "$got" -ge "$3" ] || anomaly "$1 $2: $got of $3 measurement(s) completed"
}
for v in "${VARIANTS[@]}"; do
	for w in "${TPUT[@]}"; do set -- $w; expect "$1" "$v" "$REPS"; done
	for w in "${LAT[@]}"; do set -- $w; expect "lat_$1" "$v" "$REPS"; done
	expect trickle "$v" "$REPS"
	[ "$v" = direct ] || [ "$v" = splice ] || expect rss "$v" "$REPS"
done
expect pickle zmtpfw 1

# ---- the table: medians over repetitions, ratios to direct ----
ran() { [[ " ${VARIANTS[*]} " == *" $1 "* ]]; }
med() { # KEY VARIANT FIELD: median of that field over the repetitions
	awk -v k="$1" -v v="$2" -v f="$3" '$1 == k && $2 == v { print $f }' "$RES" | sort -g |
		awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'
}
fmt() { # VALUE UNIT
	awk -v x="$1" -v u="$2" 'BEGIN {
		if (u == "msg" && x >= 1e6) printf "%.2f M msg/s", x / 1e6
		else if (u == "msg" && x >= 1e4) printf "%.0f k msg/s", x / 1e3
		else if (u == "msg") printf "%.0f msg/s", x
		else if (u == "mb" && x >= 1000) printf "%.2f GB/s", x / 1000
		else if (u == "mb") printf "%.0f MB/s", x
		else if (u == "kib") printf "%.1f MiB", x / 1024
		else if (u == "ms") printf "%.1f ms", x
		else if (u == "sec") printf "%.2f s", x
		else printf "%.0f %s", x, u }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else printf "n/a" }'; }
# KEY VARIANT FIELD ratio|diff: median over repetitions of VARIANT's value
# divided by (or minus) direct's value in the same repetition.
paired() {
	awk -v k="$1" -v v="$2" -v f="$3" -v m="$4" '$1 == k && ($2 == v || $2 == "direct") { x[$2, $NF] = $f; r[$NF] = 1 }
		END { for (i in r) if ((v, i) in x && ("direct", i) in x) {
			d = x["direct", i]
			if (m == "diff") print x[v, i] - d; else if (d > 0) print x[v, i] / d } }' "$RES" |
		sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'
}
row() { local out="|" c; for c; do out+=" $c |"; done; echo "$out"; }
# A cell without a figure is a failure of the run, even if nothing else said so.
failed() { echo "no figure for: $*" >>"$ANOM"; echo failed; }

# KEY LABEL FIELD UNIT: one row of relay figures with their ratio to direct
ratio_row() {
	local d x cells=()
	d=$(med "$1" direct "$3")
	for v in zmtpfw zmtpfw2 haproxy splice; do
		x=$(med "$1" "$v" "$3")
		if [ -n "$x" ] && [ -n "$(paired "$1" "$v" "$3" ratio)" ]; then
			cells+=("$(fmt "$x" "$4") ($(printf '%.2f' "$(paired "$1" "$v" "$3" ratio)")×)")
		elif ran "$v"; then cells+=("$(failed "$2, $v")"); else cells+=("n/a"); fi
	done
	row "$2" "$([ -n "$d" ] && fmt "$d" "$4" || failed "$2, direct")" "${cells[@]}"
}
# KEY LABEL FIELD: one latency row, added microseconds vs direct
lat_row() {
	local d x cells=()
	d=$(med "$1" direct "$3")
	for v in zmtpfw zmtpfw2 haproxy splice; do
		x=$(med "$1" "$v" "$3")
		if [ -n "$x" ] && [ -n "$d" ] && [ -n "$(paired "$1" "$v" "$3" ratio)" ]; then
			cells+=("$(fmt "$x" µs) ($(printf '%+.0f µs' "$(paired "$1" "$v" "$3" diff)"), $(printf '%.2f' "$(paired "$1" "$v" "$3" ratio)")×)")
		elif ran "$v"; then cells+=("$(failed "$2, $v")"); else cells+=("n/a"); fi
	done
	row "$2" "$([ -n "$d" ] && fmt "$d" µs || failed "$2, direct")" "${cells[@]}"
}
# LABEL FORMAT-FUNCTION: a row with a value per variant
relay_row() {
	local label=$1 cells=()
	shift
	for v in direct zmtpfw zmtpfw2 haproxy splice; do
		if ran "$v"; then cells+=("$("$@" "$v")"); else cells+=("n/a"); fi
	done
	row "$label" "${cells[@]}"
}
delivered() { [ -n "$(med trickle "$1" 3)" ] && echo "$(med trickle "$1" 3) / $(med trickle "$1" 4)" || failed "trickle delivered, $1"; }
tcpu() {
	[ "$1" = direct ] && { echo "—"; return; }
	[ -n "$(med trickle "$1" 9)" ] && awk -v x="$(med trickle "$1" 9)" 'BEGIN { printf "%.1f %% of a CPU", x }' || failed "trickle relay CPU, $1"
}
rss_cell() { # VARIANT FIELD
	[ "$1" = direct ] || [ "$1" = splice ] && { echo "—"; return; }
	[ -n "$(med rss "$1" "$2")" ] && fmt "$(med rss "$1" "$2")" kib || failed "RSS, $1"
}
rss0() { rss_cell "$1" 3; }
rss1() { rss_cell "$1" 4; }
per_conn_val() { # VARIANT: KiB per idle connection, median over repetitions
	awk -v v="$1" '$1 == "rss" && $2 == v && $5 > 0 { print ($4 - $3) / $5 }' "$RES" | sort -g |
		awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'
}
per_conn() {
	[ "$1" = direct ] || [ "$1" = splice ] && { echo "—"; return; }
	[ -n "$(per_conn_val "$1")" ] && printf "%.1f KiB" "$(per_conn_val "$1")" || failed "RSS per connection, $1"
}
cpu_per() { # VARIANT KEY: relay CPU per message (µs), median over repetitions
	awk -v k="$2" -v v="$1" '$1 == k && $2 == v && $6 > 0 { print $5 / $6 / 1e3 }' "$RES" |
		sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'
}

declare -A LABEL=([64B]="64 B" [1KiB]="1 KiB" [64KiB]="64 KiB" [1MiB]="1 MiB" [16MiB]="16 MiB"
	[multi]="64 B header + 1 MiB tensor" [1KiBx64]="1 KiB, 64 connections")
echo
echo "## zmtpfw benchmark, $START_DATE$([ $QUICK = 1 ] && echo ", --quick (smoke test: figures mean nothing)")"
echo
echo "Machine: $MACHINE, RLIMIT_NOFILE $NOFILE."
echo "Load: others used $BUSY0 % of one CPU just before the run, $FOREIGN % on average during it" \
	"(steal $STEAL %), $BUSY1 % just after; load average $LOAD0 before, $LOAD1 after."
echo "Medians of $REPS repetition(s) ($((T1 - T0)) s). Ratios (relay ÷ direct) and added latencies (relay − direct)"
echo "are taken within each repetition, then their median is shown: they need not equal the quotient of the medians."
echo "zmtpfw: enforce mode, pickle scanning on (pickle = \"drop\"), allowlist 127.0.0.0/8; threads = 1, and 2."
echo
echo "| workload | direct | zmtpfw | zmtpfw threads = 2 | HAProxy TCP | HAProxy splice-auto |"
echo "|---|---|---|---|---|---|"
for w in "${TPUT[@]}"; do
	set -- $w
	if [ "$2" -le 1024 ]; then ratio_row "$1" "PUSH→PULL ${LABEL[$1]}, $3 msgs" 3 msg
	else ratio_row "$1" "PUSH→PULL ${LABEL[$1]}, $3 msgs" 4 mb; fi
done
for w in "${LAT[@]}"; do
	set -- $w
	lat_row "lat_$1" "REQ→REP ${LABEL[$1]} p50 ($3 round trips)" 3
	lat_row "lat_$1" "REQ→REP ${LABEL[$1]} p99" 4
done
TRL="$TR_CONNS conns × $TR_RATE msg/s × $TR_SECS s"
ratio_row trickle "$TR_CONNS connections: all handshaken (with the worker) after" 10 sec
relay_row "$TRL, 64 B: delivered" delivered
ratio_row trickle "$TRL: delivered rate" 5 msg
lat_row trickle "$TRL: per-message latency p50" 6
lat_row trickle "$TRL: per-message latency p99" 7
ratio_row trickle "$TRL: last message delivered after last send" 8 ms
relay_row "$TRL: relay CPU" tcpu
relay_row "relay RSS, no connection" rss0
relay_row "relay RSS, $IDLE_N idle connections" rss1
relay_row "RSS per idle connection" per_conn
echo
echo "Relay CPU (user + system) per message in the throughput runs, medians:"
echo
echo "| workload | zmtpfw | zmtpfw threads = 2 | HAProxy TCP | HAProxy splice-auto |"
echo "|---|---|---|---|---|"
for w in "${TPUT[@]}"; do
	set -- $w
	cells=()
	for v in zmtpfw zmtpfw2 haproxy splice; do
		x=$(cpu_per "$v" "$1")
		if [ -n "$x" ]; then cells+=("$(awk -v x="$x" -v s=$(($2 + $4)) 'BEGIN {
			if (x < 10) printf "%.2f µs", x; else printf "%.0f µs", x
			if (s >= 65536) printf " (%.0f ms per GB)", x / s * 1e9 / 1e3 }')")
		else cells+=("n/a"); fi
	done
	row "${LABEL[$1]}" "${cells[@]}"
done
[ "$IDLE_N" -lt "$IDLE_TARGET" ] && echo &&
	echo "Idle connections: $IDLE_N, not $IDLE_TARGET: RLIMIT_NOFILE $NOFILE cannot be raised here, and a relay needs two descriptors per connection."
if [ -n "$(med pickle zmtpfw 3)" ]; then
	echo
	echo "Enforcement check: zmtpfw dropped $(med pickle zmtpfw 3) of $(med pickle zmtpfw 4) pickle messages" \
		"and delivered $(med pickle zmtpfw 5) of $(med pickle zmtpfw 6) clean ones, every byte checked."
fi

# ---- targets (full runs only: quick figures mean nothing) ----
target() { # TEXT VALUE-EXPR CONDITION: "met" when CONDITION (awk) holds
	local verdict
	verdict=$(awk "BEGIN { if ($2) print \"met\"; else print \"**not met**\" }" 2>/dev/null) || verdict="no figure"
	echo "- $1: $verdict"
}
r() { printf '%.2f' "$(paired "$1" "$2" "$3" ratio)"; }
added() { printf '%.0f' "$(paired "$1" "$2" 3 diff)"; }
if [ $QUICK = 0 ] && ran zmtpfw; then
	PER_CONN=$(per_conn_val zmtpfw)
	echo
	echo "Targets (2 CPUs, same run):"
	for k in 64B 1KiB; do
		target "${LABEL[$k]} ≥ 0.95× direct: $(r "$k" zmtpfw 3)×" "$(r "$k" zmtpfw 3) >= 0.95"
	done
	if ran haproxy; then
		for k in 64KiB 1MiB; do
			target "${LABEL[$k]} above HAProxy TCP's ratio: $(r "$k" zmtpfw 4)× vs $(r "$k" haproxy 4)× (splice-auto $(r "$k" splice 4)×)" \
				"$(r "$k" zmtpfw 4) > $(r "$k" haproxy 4)"
		done
		for k in 64B 64KiB; do
			target "added p50 RTT ${LABEL[$k]} ≤ half of HAProxy's: +$(added "lat_$k" zmtpfw) µs vs +$(added "lat_$k" haproxy) µs" \
				"$(added "lat_$k" zmtpfw) <= $(added "lat_$k" haproxy) / 2"
		done
	fi
	target "1 MiB aim 0.6× direct: $(r 1MiB zmtpfw 4)×" "$(r 1MiB zmtpfw 4) >= 0.6"
	if ran zmtpfw2; then
		# threads = 2 against threads = 1, each as a ratio to direct in the same repetition
		target "64 connections, 1 KiB: threads = 2 at least threads = 1: $(r 1KiBx64 zmtpfw2 3)× vs $(r 1KiBx64 zmtpfw 3)×" \
			"$(r 1KiBx64 zmtpfw2 3) >= $(r 1KiBx64 zmtpfw 3)"
		for k in 64B 1KiB 1MiB; do
			f=$([ $k = 1MiB ] && echo 4 || echo 3)
			target "one connection, ${LABEL[$k]}: threads = 2 within 5 % of threads = 1: $(r "$k" zmtpfw2 $f)× vs $(r "$k" zmtpfw $f)×" \
				"$(r "$k" zmtpfw2 $f) >= 0.95 * $(r "$k" zmtpfw $f)"
		done
		ran haproxy && target "added p50 RTT 64 B, threads = 2, ≤ 0.6× HAProxy's: +$(added lat_64B zmtpfw2) µs vs +$(added lat_64B haproxy) µs" \
			"$(added lat_64B zmtpfw2) <= 0.6 * $(added lat_64B haproxy)"
	fi
	target "≤ 16 KiB RSS per idle connection: $(per_conn zmtpfw)" "${PER_CONN:-(} <= 16"
fi

# ---- anomalies: ours, and what zmtpfw logged above info level (the log
# rate limiter's "suppressed" notices for accept/close lines are expected;
# the pickle check's drop lines are its point) ----
fw_logs() { cat "$WORK"/zmtpfw*.*.log 2>/dev/null | grep -v '"event":"suppressed"' || true; }
fw_warn=$(fw_logs | grep -c '"level":"\(warn\|error\)"' || true)
fw_drop=$(fw_logs | grep -c '"dropped":[1-9]' || true)
[ "$fw_warn" -gt 0 ] && anomaly "zmtpfw logged $fw_warn warn/error lines, e.g.: $(fw_logs | grep -m3 '"level":"\(warn\|error\)"')"
[ "$fw_drop" -gt 0 ] && anomaly "zmtpfw closed $fw_drop connections with dropped messages"
echo
if [ -s "$ANOM" ]; then
	echo "Anomalies:"
	sed 's/^/- /' "$ANOM"
	exit 1
fi
echo "No anomaly: every message arrived intact (verify level $VERIFY), every reply matched, every idle" \
	"connection completed its handshake, zmtpfw dropped every pickle and logged no warning or error."
exit 0
