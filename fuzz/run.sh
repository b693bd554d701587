#!/usr/bin/env bash
# fuzz/run.sh — builds the libFuzzer harnesses (build-fuzz, CC=clang, CLATTN_FUZZ=ON) and runs each for N seconds on a copy of its seed corpus; fails on any crash.
# Usage: fuzz/run.sh [SECONDS_PER_HARNESS (default 60)] [HARNESS...]  (default: all four)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(desc layout tunedb binary_cache)

CC=clang cmake -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLATTN_WERROR=ON \
  -DCLATTN_FUZZ=ON -DCLATTN_BUILD_TESTS=OFF -DCLATTN_BUILD_CLI=OFF >/dev/null
cmake --build build-fuzz -j2 --target $(printf 'fuzz_%s ' "${targets[@]}")

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${targets[@]}"; do
  work=build-fuzz/run/$t
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp tests/fuzz/"$t"/* "$work/corpus/"
  echo "== fuzz_$t: ${secs} s"
  # -close_fd_mask=2: the CLI's layout parser reports bad input on stderr.
  if ! ./build-fuzz/fuzz/fuzz_"$t" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -close_fd_mask=2 \
      -artifact_prefix="$work/artifacts/" -print_final_stats=1 "$work/corpus" \
      >"$work/log.txt" 2>&1; then
    echo "fuzz_$t FAILED: see $work/log.txt; reproducer(s):"
    ls "$work/artifacts"
    tail -40 "$work/log.txt"
    status=1
  else
    grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$work/log.txt" || true
    echo "fuzz_$t: no crash ($(ls "$work/corpus" | wc -l) corpus files)"
  fi
done
exit $status
