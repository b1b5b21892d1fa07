#!/usr/bin/env bash
# Build and run the libFuzzer targets (tests/fuzz/README.md).
#
#   scripts/fuzz.sh [--merge] [SECONDS_PER_TARGET] [TARGET...]
#
# Configures a clang build in build-fuzz (ZMTPFW_FUZZ_BUILD overrides),
# builds every fuzz target (fuzz_pickle_scan too when its source exists),
# and runs each for SECONDS_PER_TARGET (default 60) on a scratch copy of its
# seed corpus, so nothing is written into the repository. Prints the
# executions per target; exits non-zero if any target crashed, leaked, hung
# or ran out of memory (the reproducer is kept under build-fuzz/artifacts/).
#
# --merge: afterwards, minimise what the run found into tests/fuzz/corpus/
#          (only inputs that add coverage are copied). For developers, not CI.
# TARGET:  zmtp, relay, cidr, config, msgpack_scan, pickle_scan (default: all
#          that exist).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${ZMTPFW_FUZZ_BUILD:-$ROOT/build-fuzz}
CORPUS=$ROOT/tests/fuzz/corpus

merge=0
secs=60
want=()
for a in "$@"; do
	case "$a" in
	--merge) merge=1 ;;
	-h | --help) sed -n '2,16p' "$0"; exit 0 ;;
	*[!0-9]*) want+=("${a#fuzz_}") ;;
	*) secs=$a ;;
	esac
done
[ "$secs" -ge 1 ] || { echo "fuzz.sh: SECONDS_PER_TARGET must be >= 1" >&2; exit 2; }

targets=(zmtp relay cidr config msgpack_scan inspect)
[ -f "$ROOT/tests/fuzz/fuzz_pickle_scan.c" ] && targets+=(pickle_scan)
if [ ${#want[@]} -gt 0 ]; then
	for t in "${want[@]}"; do
		[[ " ${targets[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target '$t' (have: ${targets[*]})" >&2; exit 2; }
	done
	targets=("${want[@]}")
fi

# Longest input per target: a few frames past a greeting and READY (a
# 9 KiB command is the largest interesting thing); CIDR text is < 64 bytes
# plus a 16-byte peer; real config files are a few KiB.
max_len() {
	case "$1" in
	zmtp | relay) echo 12288 ;;
	cidr) echo 128 ;;
	config) echo 8192 ;;
	msgpack_scan) echo 4096 ;;
	pickle_scan | inspect) echo "${ZMTPFW_FUZZ_PICKLE_MAX_LEN:-8192}" ;;
	esac
}

CC_BIN=${CC:-clang}
command -v "$CC_BIN" >/dev/null || { echo "fuzz.sh: $CC_BIN not found (apt-get install clang)" >&2; exit 2; }
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_C_COMPILER="$CC_BIN" -DZMTPFW_FUZZ=ON \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]/#/fuzz_}"

run=$(mktemp -d "${TMPDIR:-/tmp}/zmtpfw-fuzz.XXXXXX")
trap 'rm -rf "$run"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/fuzz/lsan.supp}

declare -A execs result
failed=0
for t in "${targets[@]}"; do
	bin=$BUILD/fuzz/fuzz_$t
	work=$run/$t
	art=$BUILD/artifacts/$t
	mkdir -p "$work" "$art"
	[ -d "$CORPUS/$t" ] && cp -r "$CORPUS/$t/." "$work/"
	if [ "$t" = config ]; then
		# Every shipped and unit-test config is a seed, whatever was added since.
		cp "$ROOT/conf/"*.conf "$ROOT/tests/unit/configs/"*.conf "$work/"
	fi
	echo "=== fuzz_$t: ${secs}s, max_len $(max_len "$t"), $(find "$work" -type f | wc -l) seeds"
	set +e
	nice -n 10 "$bin" -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/" "$work" \
		>"$run/$t.log" 2>&1
	rc=$?
	set -e
	execs[$t]=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/$t.log" | tail -1)
	if [ $rc -ne 0 ]; then
		failed=1
		result[$t]="FAILED (rc $rc)"
		echo "--- fuzz_$t failed; last lines of its log:"
		grep -v '^#[0-9]' "$run/$t.log" | tail -60
		echo "--- reproducer(s): $(ls "$art" | sed "s|^|$art/|" | tr '\n' ' ')"
		echo "    replay: $bin <file>"
	else
		result[$t]=ok
		if [ $merge = 1 ]; then
			mkdir -p "$CORPUS/$t"
			nice -n 10 "$bin" -merge=1 -max_len="$(max_len "$t")" "$CORPUS/$t" "$work" \
				>"$run/$t.merge.log" 2>&1 || { echo "fuzz.sh: merge of $t failed" >&2; failed=1; }
			echo "    merged into tests/fuzz/corpus/$t: $(grep -o '[0-9]* new files' "$run/$t.merge.log" | tail -1 || true)"
		fi
	fi
done

echo
echo "target        executions  result"
for t in "${targets[@]}"; do
	printf '%-13s %10s  %s\n' "fuzz_$t" "${execs[$t]:-?}" "${result[$t]}"
done
exit $failed
