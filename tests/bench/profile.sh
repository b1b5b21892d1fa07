#!/usr/bin/env bash
# Where zmtpfw spends its CPU: PUSH->PULL through zmtpfw (the run.sh config:
# enforce, pickle scanning, allowlist) for each message size, twice:
#   1. perf stat on zmtpfw: CPU time, context switches, page faults and every
#      syscall, divided by the messages relayed; CPU time of the sender and
#      the worker beside it (is the 2-CPU machine saturated?);
#   2. perf record -g (cpu-clock, DWARF unwinding) on zmtpfw: the top
#      functions by self time, by inclusive time in zmtpfw's own code, and
#      the self time grouped by what it is (copies, memory churn, TCP stack,
#      scheduler and epoll, zmtpfw, libevent, libc).
#
#   tests/bench/profile.sh [--sizes "64 1024 65536 1048576"] [--header H] [--secs S] [--no-record]
#
# --header H makes every message two frames: an H-byte header, then the tensor.
#
# Builds nothing (ZMTPFW_BUILD=DIR, default build/). Needs perf (linux-perf)
# and read access to the syscalls:* tracepoints (root). ZMTPFW_ENV="VAR=VALUE
# ..." is put in zmtpfw's environment (e.g. GLIBC_TUNABLES=... to try malloc
# settings without rebuilding). Output: one report on stdout; the perf data
# stay in the work directory with ZBENCH_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${ZMTPFW_BUILD:-$PWD/build}
ZB=$BUILD/tests/zbench
FW=$BUILD/zmtpfw
SIZES="64 1024 65536 1048576" SECS=3 RECORD=1 HEADER=0
while [ $# -gt 0 ]; do
	case $1 in
	--sizes) SIZES=$2; shift ;;
	--secs) SECS=$2; shift ;;
	--header) HEADER=$2; shift ;;
	--no-record) RECORD=0 ;;
	*) sed -n '12,14p' "$0" >&2; exit 3 ;;
	esac
	shift
done
for f in "$ZB" "$FW"; do [ -x "$f" ] || { echo "profile.sh: $f missing: build first" >&2; exit 3; }; done
command -v perf >/dev/null || { echo "profile.sh: perf missing (apt-get install linux-perf)" >&2; exit 3; }
BASE=${ZBENCH_PORT:-$((21000 + $$ % 1000 * 10))}
P_UP=$BASE P_FW=$((BASE + 1))
WORK=$(mktemp -d /tmp/zprof.XXXXXX)
# PIDS, cleanup on exit, start, reap, wait_for, listening
# shellcheck source-path=SCRIPTDIR/../..
. tests/bench/lib.sh
say() { echo "profile.sh: $*" >&2; }
json() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" "$2"; }

cat >"$WORK/zmtpfw.conf" <<EOF
mode = "enforce";
routes = ( { name = "bench"; listen = "127.0.0.1:$P_FW"; upstream = "127.0.0.1:$P_UP";
             allow = [ "127.0.0.0/8" ]; pickle = "drop";
             max_frame_size = 268435456; max_message_size = 268435456; } );
EOF

# Messages for about SECS seconds at what zmtpfw did on this kind of machine.
count_for() {
	awk -v s="$1" -v t="$SECS" 'BEGIN { r = s <= 64 ? 3e6 : s <= 1024 ? 4e5 : 1.5e9 / s
		n = int(r * t); print n < 20 ? 20 : n }'
}

# run SIZE COUNT MODE(stat|record): one relayed PUSH->PULL run under perf.
run() {
	local size=$1 count=$2 mode=$3 pull fw perf
	start perf stat -x, -e task-clock -o "$WORK/pull.cpu" \
		"$ZB" pull --bind "tcp://127.0.0.1:$P_UP" --count "$count" --size "$size" --header "$HEADER" --timeout-secs 20 >"$WORK/pull.json"
	pull=$LAST
	wait_for 10 listening "$P_UP" || { say "worker did not start"; return 1; }
	# shellcheck disable=SC2086
	start env ${ZMTPFW_ENV:-} "$FW" -c "$WORK/zmtpfw.conf" 2>"$WORK/zmtpfw.log"
	fw=$LAST
	wait_for 10 grep -q '"listening"' "$WORK/zmtpfw.log" || { say "zmtpfw did not start"; return 1; }
	if [ "$mode" = stat ]; then
		start perf stat -x, -e task-clock,context-switches,page-faults -e 'syscalls:sys_enter_*' \
			-p "$fw" -o "$WORK/fw.stat"
	else
		start perf record -q -F 1999 -e cpu-clock --call-graph dwarf,16384 -p "$fw" -o "$WORK/perf.$size.data"
	fi
	perf=$LAST
	sleep 0.3
	T_START=$(date +%s.%N)
	perf stat -x, -e task-clock -o "$WORK/push.cpu" \
		"$ZB" push --connect "tcp://127.0.0.1:$P_FW" --size "$size" --header "$HEADER" --count "$count" >/dev/null
	reap "$pull" || say "worker incomplete: $(cat "$WORK/pull.json")"
	T_END=$(date +%s.%N)
	kill -INT "$perf"
	reap "$perf" || true
	kill "$fw"
	reap "$fw" || true
}

cpu_ms() { awk -F, '$3 == "task-clock" { printf "%.0f", $1 }' "$1"; }
stat_of() { awk -F, -v e="$1" '$3 == e { print $1 }' "$WORK/fw.stat"; }

echo "# zmtpfw profile, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r)," \
	"zmtpfw at $FW$([ -n "${ZMTPFW_ENV:-}" ] && echo " with $ZMTPFW_ENV"), load average $(cut -d' ' -f1-3 /proc/loadavg)."
for size in $SIZES; do
	count=$(count_for "$size")
	say "$size B × $count: perf stat"
	run "$size" "$count" stat
	msgs=$(json msgs "$WORK/pull.json") secs=$(json secs "$WORK/pull.json")
	echo
	echo "## $([ "$HEADER" != 0 ] && echo "$HEADER B header + ")$size B PUSH→PULL through zmtpfw, $count messages"
	echo
	awk -v n="$msgs" -v s="$secs" -v size="$size" -v fw="$(stat_of task-clock)" -v push="$(cpu_ms "$WORK/push.cpu")" \
		-v pull="$(cpu_ms "$WORK/pull.cpu")" -v wall="$(awk -v a="$T_START" -v b="$T_END" 'BEGIN { print b - a }')" -v cs="$(stat_of context-switches)" -v pf="$(stat_of page-faults)" 'BEGIN {
		printf "Delivered %d in %.3f s (%.0f msg/s, %.0f MB/s). CPU ms: zmtpfw %.0f, sender %.0f, worker %.0f", n, s, n / s, n * size / s / 1e6, fw, push, pull
		printf ": %.2f CPUs busy on average from the sender'"'"'s start to the worker'"'"'s end (%.2f s).\n", (fw + push + pull) / 1000 / wall, wall
		printf "zmtpfw per message: %.3f µs CPU, %.4f context switches, %.4f page faults.\n", fw * 1000 / n, cs / n, pf / n }'
	echo
	echo "Syscalls by zmtpfw per message (per 1,000 messages):"
	echo
	awk -F, -v n="$msgs" '$3 ~ /^syscalls:sys_enter_/ && $1 + 0 > 0 { sub(/syscalls:sys_enter_/, "", $3); printf "%s %d %.3f\n", $3, $1, $1 / n * 1000 }' \
		"$WORK/fw.stat" | sort -k2,2nr | awk '{ printf "%s%s %s (%s)", (NR > 1 ? ", " : ""), $1, $3, $2 } END { print "" }'
	if [ "$RECORD" = 1 ]; then
		say "$size B × $count: perf record"
		run "$size" "$count" record
		data=$WORK/perf.$size.data
		perf report -i "$data" --no-children --sort dso,sym -g none --stdio 2>/dev/null | grep '%' >"$WORK/self.txt" || true
		perf report -i "$data" --children --sort sym -g none --stdio 2>/dev/null | grep '%' | grep -v '\[k\]' |
			grep -v -E '_start|__libc_start|main$|event_base_loop|0x0000' >"$WORK/incl.txt" || true
		echo
		echo "Self time, top 15 (% of zmtpfw's samples):"
		echo
		echo '```'
		head -15 "$WORK/self.txt"
		echo '```'
		echo
		echo "Inclusive time in zmtpfw, libevent and libc functions, top 15:"
		echo
		echo '```'
		head -15 "$WORK/incl.txt"
		echo '```'
		echo
		echo "Self time by kind:"
		echo
		awk '
			{ p = $1 + 0; dso = $2; sym = $NF
			  if (dso != "[kernel.kallsyms]") k = dso ~ /zmtpfw/ ? "zmtpfw" : dso ~ /libevent/ ? "libevent" : dso ~ /libc/ ? "libc (malloc, memcpy)" : dso
			  else if (sym ~ /copy_(to|from)_iter|copy_user|memcpy|skb_copy|__check_object_size|__virt_addr_valid/) k = "kernel: copies to/from user space"
			  else if (sym ~ /page_fault|clear_page|handle_mm|anonymous_page|unmap|free_.*pages|free_unref|alloc_.*pages|get_page_from_freelist|folio|lruvec|memcg|mem_cgroup|rmap|pte_|brk|vma|mt_find|tlb/) k = "kernel: page faults, zeroing, unmapping (malloc churn)"
			  else if (sym ~ /epoll|schedule|switch|pick_next|enqueue|dequeue|wake|futex|update_curr|hrtimer/) k = "kernel: epoll, wakeups, scheduler"
			  else k = "kernel: TCP/IP, softirq, sockets, other"
			  s[k] += p }
			END { for (k in s) printf "%.1f %s\n", s[k], k }' "$WORK/self.txt" | sort -nr | awk '{ p = $1; $1 = ""; printf "- %s %%:%s\n", p, $0 }'
	fi
done
