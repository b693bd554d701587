#!/bin/sh
# cli_parse.sh — exit codes and messages of the clattn CLI on malformed numbers, layout files and memory limits.
# usage: cli_parse.sh CLATTN_CLI WORK_DIR
set -u
cli=$1
dir=$2
mkdir -p "$dir" || exit 1
fails=0
n=0

# expect NAME WANT_RC PATTERN -- ARGS...: runs the CLI, checks its exit code
# and that stderr+stdout match the (grep -E) pattern; '!' PATTERN: must not.
expect() {
  name=$1 want=$2 pat=$3
  shift 4
  n=$((n + 1))
  out=$("$cli" "$@" 2>&1)
  rc=$?
  ok=1
  [ "$rc" -eq "$want" ] || ok=0
  case $pat in
  '!'*) printf '%s' "$out" | grep -Eq -- "${pat#!}" && ok=0 ;;
  *) printf '%s' "$out" | grep -Eq -- "$pat" || ok=0 ;;
  esac
  if [ $ok -eq 1 ]; then
    echo "ok   $name"
  else
    echo "FAIL $name: exit $rc (want $want), output:"
    printf '%s\n' "$out" | tail -5
    fails=$((fails + 1))
  fi
}

small="--seq 16 --head-dim 8 --heads 1 --reps 1 --warmup 0"

# Layout files (item 14).
printf '4 2\n0\n-2\n' >"$dir/neg.txt"
expect "layout row -2" 2 "not a block index" -- run $small --mask "layout:$dir/neg.txt"
printf '4 3 causal trailing-garbage\n0\n1\n2\n' >"$dir/garbage.txt"
expect "layout header garbage" 2 "expected 'BLOCK_SIZE ROWS" -- run $small --mask "layout:$dir/garbage.txt"
printf '4294967300 1\n0\n' >"$dir/bighdr.txt"
expect "layout block size > INT_MAX" 2 "expected 'BLOCK_SIZE ROWS" -- run $small --mask "layout:$dir/bighdr.txt"
printf '4 1\n0\0001\n' >"$dir/nul.txt"
expect "layout NUL byte" 2 "NUL byte" -- run $small --mask "layout:$dir/nul.txt"
printf '4 2147483647\n0\n' >"$dir/hugerows.txt"
expect "layout huge ROWS" 2 "announces 2147483647 rows but the file has 1" -- run $small --mask "layout:$dir/hugerows.txt"
printf '4 4\n0 1x\n' >"$dir/token.txt"
expect "layout partial token" 2 "'1x' is not a block index" -- run $small --mask "layout:$dir/token.txt"
printf '# ok\n4 4 causal\n0\n0,1\n-\n2 3\n' >"$dir/good.txt"
expect "layout valid" 0 "PASS" -- run $small --mask "layout:$dir/good.txt" --verify

# Seeds and counts.
expect "favor seed overflow" 2 "SEED out of range" -- run $small --algo linear --feature favor:16,99999999999999999999999
expect "bigbird full uint64 seed" 0 "PASS" -- run $small --seq 64 --mask bigbird:16,1,1,1,18446744073709551615 --verify
expect "window count overflow" 2 "out of range" -- run $small --mask window:4294967297,1
expect "tune list message" 2 "--head-dim x:" -- tune --head-dim x
expect "tune list message, no ----" 2 '!----' -- tune --head-dim x
# --config reaches the plan on every path (contiguous decode, prefill) and a bad one is an error
expect "run --config, decode" 0 "3 splits, kt=32" -- run --seq-q 1 --seq-kv 300 --heads 4 --kv-heads 1 --head-dim 16 --config decode:splits=3,kt=32 --profile
expect "run --profile, decode" 0 "decode_merge [0-9.]+ ms, gap" -- run --seq-q 1 --seq-kv 300 --heads 4 --kv-heads 1 --head-dim 16 --config decode:splits=3,kt=32 --profile
expect "run --config, bad" 3 "not a parameter of the flash kernel" -- run $small --config flash:bogus=1

# Memory checks (item 12): refused with exit 3 before anything is allocated.
expect "reserve UINT64_MAX" 3 "reserve" -- run $small --reserve 18446744073709551615
# On a CPU device the host copies of the inputs share its memory: k and v of
# 0.3 of the device memory each fit the device alone, not with their copies.
# (Sized from the device, so that no machine really allocates them.)
info=$("$cli" devices --json 2>/dev/null)
global=$(printf '%s' "$info" | grep -o '"global_mem_bytes": *[0-9]*' | head -1 | grep -o '[0-9]*$')
maxalloc=$(printf '%s' "$info" | grep -o '"max_alloc_bytes": *[0-9]*' | head -1 | grep -o '[0-9]*$')
if printf '%s' "$info" | grep -q '"type": *"cpu"\|CPU' && [ -n "$global" ] && [ -n "$maxalloc" ]; then
  seqkv=$((global * 3 / 10 / 4))
  if [ "$seqkv" -le 2147483647 ] && [ $((seqkv * 4)) -le "$maxalloc" ]; then
    expect "host copies counted" 3 "host copies of q, k, v" -- run --seq 1 --seq-kv "$seqkv" --head-dim 1 --heads 1 --no-verify
  else
    echo "skip host copies counted (device memory too large for one shape)"
  fi
fi

echo "$((n - fails)) passed, $fails failed"
[ $fails -eq 0 ]
