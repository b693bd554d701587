#!/usr/bin/env bash
# gpu.sh — one-call GPU session: builds clattn, runs the tests on the GPU, benchmarks every family against the naive baseline and PyTorch, prints a short table.
# Usage (device machine, repo root): bash bench/gpu.sh [quick|core|half|families|all]; logs go to $OUT (or ./gpu-out).
set -uo pipefail
what=${1:-all}
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
[ -f .gpu/setup-opencl.sh ] && source .gpu/setup-opencl.sh >/dev/null
export CLATTN_DEVICE=${CLATTN_DEVICE:-nvidia} PYTHONUNBUFFERED=1
CLI=./build/clattn
TOK=262144 H=16

cmake -B build -DCMAKE_BUILD_TYPE=Release >"$OUT/cmake.log" 2>&1 && cmake --build build -j16 >>"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; $CLI devices; } >"$OUT/devices.txt" 2>&1
git rev-parse --short HEAD >"$OUT/commit.txt" 2>/dev/null || true

# run ALGO DTYPE D MASK N [extra...]: one point as a JSON line (B·H·N = TOK tokens·heads)
point() {
  local algo=$1 dt=$2 d=$3 mask=$4 n=$5; shift 5
  local b=$((TOK / n / H)); [ $b -lt 1 ] && b=1
  timeout 120 $CLI run --json --algo "$algo" --dtype "$dt" --head-dim "$d" --mask "$mask" --seq "$n" \
    --batch $b --heads $H --reps 20 --warmup 3 "$@" 2>>"$OUT/run.err" | tail -1
}

if [[ $what == quick || $what == all ]]; then
  timeout 400 ctest --test-dir build -j8 --timeout 200 -E "asan" >"$OUT/ctest.log" 2>&1
  tail -5 "$OUT/ctest.log"
fi

if [[ $what == core || $what == all ]]; then
  for d in 64 128; do for m in none causal; do for n in 1024 2048 4096 8192 16384; do
    point flash f32 $d $m $n; point naive f32 $d $m $n
  done; done; done | tee "$OUT/core.jsonl" >/dev/null
  python3 bench/torch_sdpa.py --tokens $TOK --heads $H --dtypes f32 --backends EFFICIENT_ATTENTION,MATH \
    >"$OUT/torch_f32.jsonl" 2>"$OUT/torch.err"
  python3 bench/summarize.py "$OUT/core.jsonl" "$OUT/torch_f32.jsonl" | tee "$OUT/core.md"
fi

if [[ $what == half || $what == all ]]; then
  for dt in f16 bf16; do for d in 64 128 256; do for m in none causal; do for n in 4096 16384; do
    [ $d = 256 ] && [ $dt = bf16 ] && continue
    point flash $dt $d $m $n
  done; done; done; done | tee "$OUT/half.jsonl" >/dev/null
  python3 bench/torch_sdpa.py --tokens $TOK --heads $H --dtypes f16,bf16 --head-dims 64,128,256 --seqs 4096,16384 \
    --backends FLASH_ATTENTION >"$OUT/torch_half.jsonl" 2>>"$OUT/torch.err"
  python3 bench/summarize.py --algos flash --peer FLASH_ATTENTION "$OUT/half.jsonl" "$OUT/torch_half.jsonl" | tee "$OUT/half.md"
fi
