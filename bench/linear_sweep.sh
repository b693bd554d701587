# linear_sweep.sh — linear-attention GPU sweep: per-kernel times, bandwidth, crossover with flash.
# Usage (device machine, repo root, after building ./build/clattn):
#   bash bench/linear_sweep.sh [sweep|crossover|extra|variants|tc|regs|all] ; JSON lines and tables go to $OUT.
# tc: tensor-core lin_state / lin_apply (the default on NVIDIA sm_80+) against the FMA kernels
# (CLATTN_TUNE_OVERRIDE=linear: , the FMA variant) on the same shapes in the same run, plus TC tile variants.
# Problem: d = 64, f32, B·H = 16 (B = 1, H = 16), elu+1 and FAVOR+ m = 256, causal and not.
set -uo pipefail
what=${1:-all}
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export CLATTN_DEVICE=${CLATTN_DEVICE:-nvidia}
CLI=./build/clattn

# lin FEATURE MASK N [extra...]: one JSON line with per-kernel times
lin() {
  local f=$1 m=$2 n=$3; shift 3
  timeout 120 $CLI run --json --profile --algo linear --feature "$f" --head-dim 64 --mask "$m" --seq "$n" \
    --batch 1 --heads 16 --reps 10 --warmup 2 "$@" 2>>"$OUT/run.err" | tail -1
}

if [[ $what == sweep || $what == all ]]; then
  for n in ${SWEEP_NS:-1024 4096 16384 32768 65536 131072}; do for m in none causal; do for f in elu favor:256; do
    v=--no-verify; [ $n -le 16384 ] && v=--verify
    lin $f $m $n $v
  done; done; done >"$OUT/linear_sweep.jsonl"
fi

if [[ $what == crossover || $what == all ]]; then
  for n in 128 256 512 1024 2048; do for m in none causal; do
    for f in elu favor:256; do lin $f $m $n --no-verify; done
    timeout 60 $CLI run --json --algo flash --head-dim 64 --mask $m --seq $n --batch 1 --heads 16 \
      --reps 20 --warmup 3 --no-verify 2>>"$OUT/run.err" | tail -1
  done; done >"$OUT/linear_crossover.jsonl"
fi

if [[ $what == extra || $what == all ]]; then
  # flash causal at 64k (the 10x target's reference) and 16-bit storage points
  {
    timeout 120 $CLI run --json --algo flash --head-dim 64 --mask causal --seq 65536 --batch 1 --heads 16 \
      --reps 3 --warmup 1 --no-verify 2>>"$OUT/run.err" | tail -1
    for dt in f16 bf16; do
      lin elu none 131072 --dtype $dt --no-verify
      lin favor:256 causal 65536 --dtype $dt --no-verify
      lin elu causal 16384 --dtype $dt --verify
    done
  } >"$OUT/linear_extra.jsonl"
fi

if [[ $what == variants || $what == all ]]; then
  # forced linear configurations at large N (CLATTN_TUNE_OVERRIDE; keys: src/families/linear.h)
  {
    for ov in ${VAR_ELU:-"" bpw=8 bq=64,arq=4 afs=32 split=1024 kunroll=2}; do
      CLATTN_TUNE_OVERRIDE=$ov lin elu none 131072 --no-verify
    done
    for ov in ${VAR_FAVOR:-"" frf=4}; do
      CLATTN_TUNE_OVERRIDE=$ov lin favor:256 none 65536 --no-verify
    done
    for ov in ${VAR_ELU_C:-"" ctr=8,ctc=16}; do
      CLATTN_TUNE_OVERRIDE=$ov lin elu causal 65536 --no-verify
    done
    for ov in ${VAR_FAVOR_C:-"" split=2048}; do
      CLATTN_TUNE_OVERRIDE=$ov lin favor:256 causal 65536 --no-verify
    done
  } >"$OUT/linear_variants.jsonl"
fi

if [[ $what == tc || $what == all ]]; then
  {
    for pt in "elu none 131072" "elu none 65536" "favor:256 none 65536" "elu causal 65536" "favor:256 causal 65536"; do
      set -- $pt
      for ov in "" linear:; do CLATTN_TUNE_OVERRIDE=$ov lin $1 $2 $3 --no-verify; done
    done
    lin elu none 16384 --verify
    lin favor:256 none 16384 --verify
    for ov in ${VAR_TC:-taw=8 taw=2,tam=2 bks=8 nosres=1 tsw=2,tsm=2 bpw=1 bpw=16 split=4096 split=1024}; do
      CLATTN_TUNE_OVERRIDE=$ov lin elu none 131072 --no-verify
    done
  } >"$OUT/linear_tc.jsonl"
fi

if [[ $what == regs ]]; then
  # registers and spills of every kernel (NVIDIA: -cl-nv-verbose), default GPU configurations
  cc -O2 -o build/nv_build_log bench/nv_build_log.c -lOpenCL || exit 1
  # the linear kernels are one file each over linear_common.cl: one file with all of them
  cat cl/linear_common.cl cl/linear_feat.cl cl/linear_state.cl cl/linear_scan.cl cl/linear_apply.cl \
    cl/linear_causal.cl >build/linear_all.cl
  base="-cl-std=CL1.2 -cl-mad-enable -DCLATTN_DTYPE=0 -DD=64 -DVEC=1 -DOVEC=1 -DBD=64 -DUNROLL_HINTS=1"
  d="-DKUNROLL_STATE=1 -DAFS=16 -DFBR=32 -DFRR=4"
  for v in "-DF=64 -DMAP=0 -DCAUSAL=0 -DSRES=1 -DSRF=4 -DBKS=32 -DZLOC=1 $d" "-DF=256 -DMAP=2 -DCAUSAL=0 -DSRES=0 -DBKS=16 $d" \
           "-DF=64 -DMAP=0 -DCAUSAL=1 -DSRF=4 -DBKS=32 -DZLOC=1 $d" "-DF=256 -DMAP=2 -DCAUSAL=1 -DBKS=16 $d"; do
    echo "== $v"; ./build/nv_build_log NVIDIA build/linear_all.cl "$base $v ${REGS_EXTRA:-}" | grep -E "Function properties|Compiling entry|registers|spill|bytes stack|build"
  done >"$OUT/regs.txt" 2>&1
  t="-DTC=1 -DSTW=4 -DSTM=1 -DTAW=4 -DTAM=1 -DBQ=64 -DBKS=16 -DZLOC=1 -DSPRE=1 -DF=64 -DMAP=0"
  for v in "$t -DCAUSAL=0" "$t -DCAUSAL=0 -DTAM=2 -DBQ=128"; do
    echo "== $v"; ./build/nv_build_log NVIDIA build/linear_all.cl "$base $v" | grep -E "Compiling entry|registers|spill|bytes stack|build"
  done >>"$OUT/regs.txt" 2>&1
  exit 0
fi

python3 - "$OUT"/linear_*.jsonl <<'PY' | tee "$OUT/linear.md"
import json, sys
for path in sys.argv[1:]:
    print(f"\n{path.split('/')[-1]}:\n| algo | dtype | feature | mask | N | ms | GB/s | kernels (ms) | rel err | config |\n|---|---|---|---|---|---|---|---|---|---|")
    for line in open(path):
        if not line.startswith("{"): continue
        r = json.loads(line)
        if "error" in r:
            print(f"| {r.get('algo')} | {r.get('feature','')} | {r.get('mask')} | {r.get('seq_q')} | error: {str(r.get('message', r['error']))[:80]} |"); continue
        k = ", ".join(f"{a} {b:.3f}" for a, b in r.get("kernels", {}).items())
        cfg = r.get("config", "")
        cfg = cfg[cfg.find(":") + 2:cfg.find(", workspace")] if "workspace" in cfg else cfg
        err = r.get("rel_err")
        print(f"| {r['algo']} | {r['dtype']} | {r.get('feature','')} | {r['mask']} | {r['seq_q']} | {r['median_ms']:.3f} | {r['gbps']:.0f} | {k} | "
              f"{'-' if err is None else format(err, '.1e')} | {cfg} |")
PY
