#!/usr/bin/env bash
# gpu.sh — one-call GPU session: builds clattn, runs the tests on the GPU, benchmarks every family against the naive baseline and PyTorch, prints a short table.
# Usage (device machine, repo root): bash bench/gpu.sh [quick|core|half|compare|families|linear|all]; logs go to $OUT (or ./gpu-out).
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
    point flash $dt $d $m $n --no-verify   # agreement: ctest on the GPU and compare_torch.py
  done; done; done; done | tee "$OUT/half.jsonl" >/dev/null
  python3 bench/torch_sdpa.py --tokens $TOK --heads $H --dtypes f16,bf16 --head-dims 64,128,256 --seqs 4096,16384 \
    --backends FLASH_ATTENTION >"$OUT/torch_half.jsonl" 2>>"$OUT/torch.err"
  python3 bench/summarize.py --algos flash --peer FLASH_ATTENTION "$OUT/half.jsonl" "$OUT/torch_half.jsonl" | tee "$OUT/half.md"
fi

if [[ $what == compare || $what == all ]]; then
  CLATTN_LIB=build/libclattn.so timeout 300 python3 bench/compare_torch.py --dtypes ${CMP_DTYPES:-f16,bf16,f32} \
    --head-dims ${CMP_DIMS:-64,128} --seqs ${CMP_SEQS:-4096,16384} --json "$OUT/compare.jsonl" 2>"$OUT/compare.err" | tee "$OUT/compare.md"
fi

if [[ $what == families || $what == all ]]; then
  # sparse: sliding window 256 each side vs dense flash, B·H = 16, d = 64; BigBird at 16k
  for dt in f32 f16; do for n in 4096 16384 65536 131072; do
    for m in none window:256,256; do
      r=10; [ $m = none ] && [ $n -ge 65536 ] && r=2
      timeout 120 $CLI run --json --algo flash --dtype $dt --head-dim 64 --mask $m --seq $n --batch 1 --heads 16 \
        --reps $r --warmup 1 2>>"$OUT/run.err" | tail -1
    done; done; done >"$OUT/sparse.jsonl"
  timeout 120 $CLI run --json --algo flash --head-dim 64 --mask bigbird:64,3,2,3 --seq 16384 --batch 1 --heads 16 \
    --reps 10 2>>"$OUT/run.err" | tail -1 >>"$OUT/sparse.jsonl"
  # linear: elu+1 and FAVOR+ m=256, causal and not, d = 64, B·H = 16 (flash alongside up to 32k)
  for n in 1024 4096 16384 32768 65536 131072; do for m in none causal; do
    for f in elu favor:256; do
      timeout 120 $CLI run --json --algo linear --feature $f --head-dim 64 --mask $m --seq $n --batch 1 --heads 16 \
        --reps 10 --warmup 2 2>>"$OUT/run.err" | tail -1
    done
    [ $n -le 32768 ] && timeout 120 $CLI run --json --algo flash --head-dim 64 --mask $m --seq $n --batch 1 \
      --heads 16 --reps 5 --warmup 1 --no-verify 2>>"$OUT/run.err" | tail -1
  done; done >"$OUT/linear.jsonl"
  python3 - "$OUT/sparse.jsonl" "$OUT/linear.jsonl" <<'PY' | tee "$OUT/families.md"
import json, sys
for path in sys.argv[1:]:
    print(f"\n{path.split('/')[-1]}:\n| algo | dtype | mask/feature | N | ms | TFLOP/s | workspace B | rel err | verified |\n|---|---|---|---|---|---|---|---|---|")
    for line in open(path):
        if not line.startswith("{"): continue
        r = json.loads(line)
        if "error" in r: print(f"| {r.get('algo')} | {r.get('dtype')} | {r.get('mask')} | {r.get('seq_q')} | error: {r['error'][:50]} |"); continue
        print(f"| {r['algo']} | {r['dtype']} | {r.get('mask')} {r.get('feature','')} | {r['seq_q']} | {r['median_ms']:.3f} | {r['tflops']:.2f} | "
              f"{r.get('workspace_bytes')} | {r.get('rel_err') if r.get('rel_err') is None else format(r['rel_err'], '.1e')} | {r.get('verified')} |")
PY
fi

if [[ $what == linear ]]; then
  # linear family in depth: per-kernel times, bandwidth, crossover, 16-bit, tile variants (bench/RESULTS.md §4)
  OUT=$OUT bash bench/linear_sweep.sh all | tail -120
fi
