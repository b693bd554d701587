#!/usr/bin/env bash
# gpu.sh — one-call GPU session: builds clattn, runs the tests on the GPU, benchmarks every family against the naive baseline and PyTorch, prints a short table.
# Usage (device machine, repo root): bash bench/gpu.sh MODE[,MODE...] with MODE one of quick|core|half|tc|tcextra|compare|families|linear|lintc|regress|ab|decode|dectc|ragged|kvquant|backward|bwdtc|wgmma|wgdefault|wgprof|alibi|mods|modstc|sparsetc|tf32|softcap|tcchecks|decsweep|tma|dectorch|all|plots;
# logs go to $OUT (or ./gpu-out), packed into $OUT/logs.tgz on exit (CLATTN_GPU_PACK=0 keeps them loose); pipe the output into $OUT/summary.txt.
# `regress` (not part of `all`): the same CLI points on this tree and on an older one in .base/
# (`git archive REV | tar -x -C .base`, passed with carry), alternating, same process group: speed must not move.
# `ab` (not part of `all`): AB_POINTS ("LABEL|VARIANTS|CLI run ARGS;..."), each point alternating its VARIANTS
# (old: .base's CLI; new: this tree; new@OVERRIDE: CLATTN_TUNE_OVERRIDE; new%-DX=Y,...: CLATTN_BUILD_DEFINES;
# new@OVERRIDE%-DX=Y,...: both), 2 rounds, best median.
# `decsweep` (not part of `all`): decode points DS_POINTS ("B:N:KVDTYPE;...", KVDTYPE same|int8|fp8-e4m3...)
# x decode_tc configurations DS_CONFIGS (';'-separated, "auto" = the plan's own; CONFIG%-DX=Y,-DZ=W adds
# CLATTN_BUILD_DEFINES), bf16 Hq=32 Hk=8 d=128,
# 2 alternating rounds, best median; then each point's per-kernel profile (split, merge, gap) per configuration.
# `plots` (not part of `all`): the issue-7 sweep, peak, memory table + OOM check and PNGs, in $OUT/plots.tar.gz (log: $OUT/plots.log).
# setup-opencl.sh tests `ldconfig -p | grep -q`, which pipefail turns false (SIGPIPE): source it first
[ -f .gpu/setup-opencl.sh ] && source .gpu/setup-opencl.sh >/dev/null
set -uo pipefail
what=${1:-all}
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export CLATTN_DEVICE=${CLATTN_DEVICE:-nvidia} PYTHONUNBUFFERED=1
CLI=./build/clattn
TOK=262144 H=16
# want MODE [all]: MODE is in the comma list of modes asked for ("all" counts for the modes that name it)
want() { [[ ",$what," == *",$1,"* ]] || { [[ ${2:-} == all ]] && [[ ",$what," == *",all,"* ]]; }; }
# at most 8 files come back from $OUT: on exit every log goes into one tarball beside summary.txt
pack() {
  (cd "$OUT" && ls | grep -vE '^(logs\.tgz|summary\.txt|plots\.tar\.gz|tc_ptx\.tgz)$' >"$OUT/.list" &&
    [ -s "$OUT/.list" ] && tar czf logs.tgz -T .list && xargs rm -rf <.list; rm -f .list)
}
[ -n "${CLATTN_GPU_PACK:-1}" ] && [ "${CLATTN_GPU_PACK:-1}" != 0 ] && trap pack EXIT

cmake -B build -DCMAKE_BUILD_TYPE=Release >"$OUT/cmake.log" 2>&1 && cmake --build build -j16 >>"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; $CLI devices; } >"$OUT/devices.txt" 2>&1
git rev-parse --short HEAD >"$OUT/commit.txt" 2>/dev/null || true

# kernel_ms RUN-ARGS...: "KERNEL MEDIAN ms" of one `clattn run --no-verify` (or its error)
kernel_ms() {
  timeout 60 $CLI run --no-verify "$@" 2>&1 | grep -E "^time|^config|rror" |
    sed 's/time *: median //; s/, min.*//; s/^config *: \([a-z_]*\) .*/\1/' | tr '\n' ' '
}

# run ALGO DTYPE D MASK N [extra...]: one point as a JSON line (B·H·N = TOK tokens·heads)
point() {
  local algo=$1 dt=$2 d=$3 mask=$4 n=$5; shift 5
  local b=$((TOK / n / H)); [ $b -lt 1 ] && b=1
  timeout 120 $CLI run --json --algo "$algo" --dtype "$dt" --head-dim "$d" --mask "$mask" --seq "$n" \
    --batch $b --heads $H --reps 20 --warmup 3 "$@" 2>>"$OUT/run.err" | tail -1
}

# wg_run OVERRIDE DEFINES ARGS...: one `clattn run` of a wgmma schedule, 30 s at most; a run that
# hangs is noted in $OUT/wgmma_hung.txt (runs in subshells: the flag is a file) and stops every later
# flash_wgmma run with the ping-pong (a deadlocked barrier would hang them all)
wg_run() {
  local ov=$1 defs=$2; shift 2
  if [ -f "$OUT/wgmma_hung.txt" ] && [[ "$ov" == flash_wgmma* && "$defs" != *-DPP=0* ]]; then echo "skipped (an earlier run hung)"; return; fi
  CLATTN_BUILD_DEFINES="${defs//,/ }" CLATTN_TUNE_OVERRIDE=$ov timeout 30 $CLI run "$@" >"$OUT/wg_run.txt" 2>&1
  [ $? = 124 ] && echo "HUNG ($ov ${defs}: $*)" >>"$OUT/wgmma_hung.txt"
  cat "$OUT/wg_run.txt"
}

if want quick all; then
  timeout ${CTEST_LIMIT:-400} ctest --test-dir build -j8 --timeout 200 -E "asan" >"$OUT/ctest.log" 2>&1
  tail -5 "$OUT/ctest.log"
fi

if want core all; then
  for d in 64 128; do for m in none causal; do for n in 1024 2048 4096 8192 16384; do
    point flash f32 $d $m $n; point naive f32 $d $m $n
  done; done; done | tee "$OUT/core.jsonl" >/dev/null
  python3 bench/torch_sdpa.py --tokens $TOK --heads $H --dtypes f32 --backends EFFICIENT_ATTENTION,MATH \
    >"$OUT/torch_f32.jsonl" 2>"$OUT/torch.err"
  python3 bench/summarize.py "$OUT/core.jsonl" "$OUT/torch_f32.jsonl" | tee "$OUT/core.md"
fi

if want half all; then
  for dt in f16 bf16; do for d in 64 128 256; do for m in none causal; do for n in 4096 16384; do
    [ $d = 256 ] && [ $dt = bf16 ] && continue
    point flash $dt $d $m $n --no-verify   # agreement: ctest on the GPU and compare_torch.py
  done; done; done; done | tee "$OUT/half.jsonl" >/dev/null
  python3 bench/torch_sdpa.py --tokens $TOK --heads $H --dtypes f16,bf16 --head-dims 64,128,256 --seqs 4096,16384 \
    --backends CUDNN_ATTENTION,FLASH_ATTENTION,EFFICIENT_ATTENTION >"$OUT/torch_half.jsonl" 2>>"$OUT/torch.err"
  python3 bench/summarize.py --algos flash --peer fastest "$OUT/half.jsonl" "$OUT/torch_half.jsonl" | tee "$OUT/half.md"
fi

if want tc; then
  # tensor-core kernel: correctness of each m-tile variant on odd shapes, register/spill counts,
  # then the configuration sweep (f16, N = 4096) next to PyTorch's FLASH_ATTENTION.
  for cfg in warps=4,mt=1,bn=32 warps=4,mt=2,bn=32 warps=2,mt=2,bn=64; do
    for shape in "--seq 257 --head-dim 80 --mask causal" "--seq-q 100 --seq-kv 333 --head-dim 64 --mask causal --heads 8 --kv-heads 2" \
                 "--seq 300 --head-dim 128 --layout bshd" "--seq 65 --head-dim 256 --mask causal"; do
      CLATTN_TUNE_OVERRIDE=$cfg timeout 60 $CLI run --dtype bf16 --verify $shape 2>&1 | grep -E 'verify|over|error' | tr '\n' ' '
      echo " <- $cfg $shape"
    done
  done >"$OUT/tc_verify.txt" 2>&1
  grep -c PASS "$OUT/tc_verify.txt"; grep -v PASS "$OUT/tc_verify.txt" | head -5
  gcc -O2 bench/nv_build_log.c -lOpenCL -o build/nv_build_log
  for d in 64 128; do for cfg in "8 1 64" "4 2 64" "4 2 32" "4 1 64" "2 2 64" "4 2 128"; do set -- $cfg
    echo "== d=$d warps=$1 mt=$2 bn=$3"
    ./build/nv_build_log NVIDIA cl/flash_tc.cl "-cl-std=CL1.2 -DCLATTN_DTYPE=1 -DD=$d -DWARPS=$1 -DMT=$2 -DBN=$3 -DVEC_GLOBAL=1 -DASYNC=1" \
      "$OUT/tc_d${d}_w$1_m$2_b$3.ptx" | grep -iE 'registers|spill|FAILED|error' | head -4
  done; done >"$OUT/tc_regs.txt" 2>&1
  for d in 64 128; do for m in none causal; do
    for cfg in warps=8,mt=1,bn=64 warps=4,mt=2,bn=64 warps=4,mt=2,bn=32 warps=4,mt=1,bn=64 warps=2,mt=2,bn=64 \
               warps=4,mt=2,bn=128 warps=8,mt=2,bn=32 warps=8,mt=1,bn=32 warps=2,mt=2,bn=32; do
      r=$(CLATTN_TUNE_OVERRIDE=$cfg point flash f16 $d $m 4096 --no-verify)
      [ -n "$r" ] && echo "$r" | python3 -c "import json,sys; j=json.loads(sys.stdin.read()); print(j.get('tflops'), j.get('median_ms'), '$cfg d=$d $m')"
    done
  done; done | tee "$OUT/tc_sweep.txt"
  python3 bench/torch_sdpa.py --tokens $TOK --heads $H --dtypes f16 --head-dims 64,128 --seqs 4096 \
    --backends CUDNN_ATTENTION,FLASH_ATTENTION,EFFICIENT_ATTENTION >"$OUT/torch_tc.jsonl" 2>>"$OUT/torch.err"; cat "$OUT/torch_tc.jsonl"
  cat "$OUT/tc_regs.txt"
  rm -f "$OUT"/tc_d64_w4_m1*.ptx "$OUT"/tc_d128_w4_m1*.ptx "$OUT"/tc_d*_w2_*.ptx "$OUT"/tc_d*_m2_b128.ptx
  tar czf "$OUT/tc_ptx.tgz" -C "$OUT" $(cd "$OUT" && ls *.ptx) && rm -f "$OUT"/*.ptx
fi

if want tcextra; then
  # the tuner over the tensor-core space, and the naive family in 16-bit storage on the GPU
  CLATTN_CACHE_DIR=$PWD/build/tune-cache timeout 200 $CLI tune --dtype f16 --head-dim 64,128 --seq 4096 --budget 120 \
    --exhaustive >"$OUT/tune_tc.txt" 2>&1; tail -6 "$OUT/tune_tc.txt"
  for dt in f16 bf16; do for shape in "--seq 257 --head-dim 80 --mask causal" "--seq 2048 --head-dim 128 --heads 8 --kv-heads 2" \
      "--seq-q 100 --seq-kv 333 --head-dim 64 --layout bshd --mask causal"; do
    timeout 60 $CLI run --algo naive --dtype $dt --verify $shape 2>&1 | grep -E 'verify|over' | tr '\n' ' '; echo " <- naive $dt $shape"
  done; done | tee "$OUT/naive_half.txt"
fi

if want compare all; then
  CLATTN_LIB=build/libclattn.so timeout 300 python3 bench/compare_torch.py --dtypes ${CMP_DTYPES:-f16,bf16,f32} \
    --head-dims ${CMP_DIMS:-64,128} --seqs ${CMP_SEQS:-4096,16384} --json "$OUT/compare.jsonl" 2>"$OUT/compare.err" | tee "$OUT/compare.md"
fi

if want families all; then
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

if want plots; then
  # Issue 7: bench sweeps (naive, flash, sparse window, linear; f32, d = 64, causal and not;
  # B = 1, H = 16, so naive reaches its 2^31-score limit at N = 16384), the measured peak,
  # the memory table and the largest-N check, and the PNGs of bench/plot.py.
  # Everything goes into one tarball ($OUT takes few files); the log beside it.
  P=$(mktemp -d)/plots; mkdir -p "$P"; LOG="$OUT/plots.log"; : >"$LOG"
  SEQS=${PLOT_SEQS:-512,1024,2048,4096,8192,16384,32768,65536} PH=${PLOT_HEADS:-16}  # env: smoke-test sizes
  {
    echo "== peak"; timeout 120 $CLI devices --peak --json --device "$CLATTN_DEVICE" >"$P/gpu_peak.json"
    timeout 120 $CLI devices --peak --device "$CLATTN_DEVICE" | tee "$P/gpu_peak.txt" | grep -E "^[0-9]|peak"
    echo "== bench dense (flash, naive, linear elu; none + causal)"
    timeout 420 $CLI bench --algo flash,naive,linear --seq $SEQS --head-dim 64 --heads $PH --mask both \
      --reps 5 --warmup 1 --peak --no-progress --csv "$P/gpu_dense.csv" --json "$P/gpu_dense.json" | tee "$P/gpu_dense.txt"
    for pat in window:256,256 window:256,0,causal; do
      echo "== bench sparse $pat"
      timeout 300 $CLI bench --family sparse --pattern $pat --seq $SEQS --head-dim 64 --heads $PH \
        --reps 5 --warmup 1 --no-progress --csv "$P/gpu_sparse_${pat//[:,]/_}.csv" | tee "$P/gpu_sparse_${pat//[:,]/_}.txt"
    done
    echo "== memory table (device's global memory)"
    $CLI memory | tee "$P/gpu_memory.txt"; $CLI memory --json >"$P/gpu_memory.json"
    # The check runs one layer at the largest stack N with the rest of the stack held on the
    # GPU. The driver keeps some memory for itself: check both against the device's global
    # memory and against what nvidia-smi says is free now (minus 1 GiB of margin).
    echo "== memory --check (global memory)"
    timeout 400 $CLI memory --check | tee "$P/gpu_memory_check.txt" | grep -E "check|stack|N ="
    free=$(nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits 2>/dev/null | head -1)
    if [[ $free =~ ^[0-9]+$ ]]; then
      echo "== memory --check (free memory ${free} MiB - 1 GiB)"
      timeout 400 $CLI memory --check --memory-bytes $(( (free - 1024) * 1048576 )) \
        | tee "$P/gpu_memory_check_free.txt" | grep -E "check|stack|N ="
    fi
  } >>"$LOG" 2>&1
  if python3 -c "import matplotlib" 2>/dev/null; then
    python3 bench/plot.py --peak "$P/gpu_peak.json" --prefix "$P/gpu" "$P"/gpu_dense.csv "$P"/gpu_sparse_*.csv >>"$LOG" 2>&1
  else
    echo "matplotlib missing here: run bench/plot.py on the CSVs of plots.tar.gz elsewhere" | tee -a "$LOG"
  fi
  cp "$LOG" "$P/"; git rev-parse --short HEAD >"$P/commit.txt" 2>/dev/null
  tar czf "$OUT/plots.tar.gz" -C "$(dirname "$P")" plots
  grep -E "^== |check |flash: N|naive: N|wrote|FMA|copy" "$LOG" | tail -40
fi

if want ab; then
  # the same CLI run under several builds / overrides / defines, alternating (eighth session's .gpu/ab2.sh)
  OLD=.base/build-base/clattn
  if [[ "${AB_POINTS:-old}" == *old* ]]; then
    [ -d .base ] || { echo "ab: no .base/ (git archive REV | tar -x -C .base)"; exit 1; }
    (cd .base && cmake -B build-base -DCMAKE_BUILD_TYPE=Release >"$OUT/cmake-base.log" 2>&1 && \
      cmake --build build-base -j16 --target clattn_cli >>"$OUT/cmake-base.log" 2>&1) || { tail -20 "$OUT/cmake-base.log"; exit 1; }
  fi
  ab_ms() { # CLI OVERRIDE DEFINES ARGS...: the median ms of one `clattn run --no-verify`
    local cli=$1 ov=$2 defs=$3; shift 3
    CLATTN_BUILD_DEFINES=$defs CLATTN_TUNE_OVERRIDE=$ov timeout 60 $cli run --no-verify "$@" --reps 20 --warmup 3 2>&1 |
      grep -E '^time' | sed 's/time *: median //; s/ ms.*//'
  }
  DEC="--seq-q 1 --heads 32 --kv-heads 8 --head-dim 128 --dtype bf16"
  IFS=';' read -r -a pts <<<"${AB_POINTS:-decode B1 131k|old new new%-DCLATTN_CP_L2=0|$DEC --batch 1 --seq-kv 131072;decode B64 4k|old new|$DEC --batch 64 --seq-kv 4096;int8 decode B1 32k|old new|$DEC --batch 1 --seq-kv 32768 --kv-dtype int8;softcap bf16 d64 causal 4k|old new|--dtype bf16 --head-dim 64 --mask causal --seq 4096 --batch 4 --heads 16 --softcap 30}"
  for pt in "${pts[@]}"; do
    IFS='|' read -r label vars args <<<"$pt"
    declare -A best=()
    for round in 1 2; do for v in $vars; do
      case $v in
        old) t=$(ab_ms $OLD "" "" $args) ;;
        new) t=$(ab_ms $CLI "" "" $args) ;;
        new@*%*) x=${v#new@}; t=$(ab_ms $CLI "${x%%\%*}" "$(echo "${x#*%}" | tr ',' ' ')" $args) ;;
        new@*) t=$(ab_ms $CLI "${v#new@}" "" $args) ;;
        new%*) t=$(ab_ms $CLI "" "$(echo "${v#new%}" | tr ',' ' ')" $args) ;;
      esac
      [ -n "$t" ] && best[$v]=$(python3 -c "print(min($t, ${best[$v]:-1e30}))")
    done; done
    line="$label:"; for v in $vars; do line="$line $v=${best[$v]:-failed}"; done; echo "$line"
    unset best
  done | tee "$OUT/ab.txt"
fi

if want regress; then
  # the same points with the old tree's CLI (.base, built in build-base) and this one, alternating
  [ -d .base ] || { echo "regress: no .base/ (git archive REV | tar -x -C .base)"; exit 1; }
  (cd .base && cmake -B build-base -DCMAKE_BUILD_TYPE=Release >"$OUT/cmake-base.log" 2>&1 && \
    cmake --build build-base -j16 --target clattn_cli >>"$OUT/cmake-base.log" 2>&1) || { tail -20 "$OUT/cmake-base.log"; exit 1; }
  OLD=.base/build-base/clattn
  rpoint() { # CLI ALGO DTYPE D MASK N [extra...]
    local cli=$1 algo=$2 dt=$3 d=$4 mask=$5 n=$6; shift 6
    local b=$((TOK / n / H)); [ $b -lt 1 ] && b=1
    timeout 120 $cli run --json --algo "$algo" --dtype "$dt" --head-dim "$d" --mask "$mask" --seq "$n" \
      --batch $b --heads $H --reps 20 --warmup 3 --no-verify "$@" 2>>"$OUT/run.err" | tail -1 | \
      python3 -c "import json,sys; j=json.loads(sys.stdin.read()); print(j.get('median_ms'), j.get('describe','')[:60])" 2>/dev/null
  }
  {
    printf "%-32s %10s %10s %7s\n" point old_ms new_ms new/old
    IFS=';' read -r -a pts <<<"${REG_POINTS:-flash f32 64 none 4096;flash f32 128 causal 4096;flash f16 64 none 4096;flash f16 64 causal 16384;flash bf16 128 none 4096;flash bf16 128 causal 16384;flash f16 256 none 4096;naive f32 64 none 4096;linear f32 64 none 65536;linear f32 64 causal 65536;flash f32 64 window:256,256 16384}"
    for pt in "${pts[@]}"; do
      set -- $pt
      o1=$(rpoint $OLD $@ | cut -d' ' -f1); n1=$(rpoint $CLI $@ | cut -d' ' -f1)
      o2=$(rpoint $OLD $@ | cut -d' ' -f1); n2=$(rpoint $CLI $@ | cut -d' ' -f1)
      python3 -c "
o=min($o1,$o2); n=min($n1,$n2); print('%-32s %10.4f %10.4f %7.3f' % ('$pt', o, n, n/o))" 2>/dev/null || echo "$pt: failed ($o1 $o2 $n1 $n2)"
    done
  } | tee "$OUT/regress.txt"
fi

if want kvquant; then
  # issue 18: quantized K/V in the decode kernels: int8 / fp8 against bf16 in the same process
  # (Hq=32 Hk=8 d=128, scales per token), the speed-up of reading half the bytes, and --verify
  # against the dequantized cache (the error against the bf16 cache reported).
  for kv in same int8 fp8e4m3 fp8e5m2; do
    echo "== kv $kv"
    timeout 400 $CLI bench --family decode --heads 32 --kv-heads 8 --head-dim 128 --dtype bf16 --kv-dtype $kv \
      --batches ${KVQ_BATCHES:-1,8} --seq ${KVQ_SEQS:-32768,131072} --pages ${KVQ_PAGES:-0} --reps 20 --warmup 3 2>>"$OUT/run.err"
  done | tee "$OUT/kvquant.txt" | grep -vE "^decode:" | cut -c1-110
  # a prefill over the quantized cache (flash_tc on NVIDIA: codes turned into 16-bit tiles), against bf16 K/V
  for kv in same int8 fp8e4m3 fp8e5m2; do for m in none causal; do
    t=$(kernel_ms --dtype bf16 --seq 4096 --batch 4 --heads 16 --head-dim 128 --mask $m --kv-dtype $kv --reps 10)
    echo "prefill N=4096 d=128 kv=$kv $m: $t"
  done; done | tee "$OUT/kvquant_prefill.txt"
  for kv in int8 fp8e4m3 fp8e5m2; do for sc in token channel; do
    timeout 120 $CLI run --seq-q 4 --seq-kv 4099 --heads 32 --kv-heads 8 --head-dim 128 --dtype bf16 --mask causal \
      --kv-dtype $kv --kv-scale $sc --paged 16 --ragged 1,17,1000,4096 --verify 2>&1 | grep -E "verify|quantized|error" | tr '\n' ' '
    echo " <- $kv $sc"
  done; done | tee "$OUT/kvquant_verify.txt"
fi

if want dectc; then
  # issue 14/15: the tensor-core decode (decode_tc) against decode_warp: its tests, registers and
  # spills (-cl-nv-verbose), and KV GB/s per configuration (DECTC_CONFIGS, ';'-separated
  # CLATTN_TUNE_OVERRIDE values) on contiguous and paged caches, bf16 Hq=32 Hk=8 d=128.
  if [ "${DECTC_TEST:-1}" = 1 ]; then
  timeout 300 ./build/tests/test_decode --only "test_decode_tc*" >"$OUT/test_decode_tc.log" 2>&1
  echo "test_decode_tc rc=$?"; grep -E "PASSED|FAILED|SKIPPED|rror|fail" "$OUT/test_decode_tc.log" | head -12
  gcc -O2 bench/nv_build_log.c -lOpenCL -o build/nv_build_log 2>>"$OUT/run.err" &&
    cat cl/nv_mma.cl cl/decode.cl >build/decode_tc_all.cl && for cfg in "16 3" "32 2" "32 3"; do set -- $cfg
      ./build/nv_build_log NVIDIA build/decode_tc_all.cl "-cl-std=CL1.2 -DCLATTN_DTYPE=2 -DD=128 -DKT=64 -DWG=32 -DQR=4 \
        -DTC=1 -DBN=$1 -DNS=$2 -DLDM_ADDR=1 -DVEC8=1 -DALIGN16=1 -DPAGED=1 -DPAGE=16" "$OUT/decode_tc_bn$1_ns$2.ptx" 2>&1 |
        grep -A1 "decode_split" | grep -oE "Used [0-9]+ registers|[0-9]+ bytes spill[a-z ]*" | tr '\n' ' '; echo " <- bn=$1 ns=$2"
    done
  fi
  IFS=';' read -r -a dconfigs <<<"${DECTC_CONFIGS:-decode_warp:wg=128,qr=4,unroll=4;decode_tc:bn=16,ns=3;decode_tc:bn=32,ns=2}"
  [ "${DECTC_CONFIGS:-}" = none ] && dconfigs=()
  for cfg in ${dconfigs[@]+"${dconfigs[@]}"}; do
    echo "== config $cfg"
    CLATTN_TUNE_OVERRIDE=$cfg timeout 300 $CLI bench --family decode --heads 32 --kv-heads 8 --head-dim 128 \
      --dtype ${DECTC_DTYPE:-bf16} --batches ${DECTC_BATCHES:-1,8,64} --seq ${DECTC_SEQS:-4096,32768} \
      --pages ${DECTC_PAGES:-0,16} --reps 20 --warmup 3 2>>"$OUT/run.err"
  done | tee "$OUT/dectc.txt" | grep -vE "^(copy|peak)" | cut -c1-150 | head -60
  # DECTC_SPLITS: "batch:KV:s1,s2,..." groups, the split count forced (the auto heuristic's check)
  IFS=';' read -r -a sgroups <<<"${DECTC_SPLITS:-}"
  for g in ${sgroups[@]+"${sgroups[@]}"}; do
    IFS=: read -r gb gs gl <<<"$g"
    for sp in ${gl//,/ }; do
      CLATTN_TUNE_OVERRIDE=decode_tc:splits=$sp timeout 100 $CLI bench --family decode --heads 32 --kv-heads 8 \
        --head-dim 128 --dtype bf16 --batches $gb --seq $gs --pages 0 --reps 20 --warmup 3 2>>"$OUT/run.err" |
        awk -v sp=$sp '$1 ~ /^[0-9]+$/ {print "splits=" sp, $1, $2, $4, $5}'
    done
  done | tee "$OUT/dectc_splits.txt"
fi
if want ragged; then
  # issue 14: ragged prefill against the fixed-length rate. The ragged batch (RAG_LENS, causal, each
  # sequence L queries over L keys) against, for each length, the time per sequence of a fixed-length
  # batch of about RAG_TOKENS tokens at that length: ratio = ragged time / sum over the sequences.
  lens=${RAG_LENS:-8192,4096,3000,2048,1024,512,512,300}
  rargs="--heads 32 --kv-heads 8 --head-dim 128 --dtype ${RAG_DTYPE:-bf16} --mask causal --reps 20 --warmup 3 --no-verify"
  max=0; for L in ${lens//,/ }; do [ $L -gt $max ] && max=$L; done
  tr=$(timeout 120 $CLI run --seq-q $max --seq-kv $max --ragged $lens $rargs 2>>"$OUT/run.err" | tee "$OUT/ragged.txt" |
       sed -n 's/^time *: median \([0-9.]*\) ms.*/\1/p')
  grep -E "^config" "$OUT/ragged.txt" | cut -c1-140
  sum=0
  for L in ${lens//,/ }; do
    bl=$(( ${RAG_TOKENS:-16384} / L )); [ $bl -lt 1 ] && bl=1
    tf=$(timeout 120 $CLI run --seq $L --batch $bl $rargs 2>>"$OUT/run.err" | sed -n 's/^time *: median \([0-9.]*\) ms.*/\1/p')
    per=$(python3 -c "print(${tf:-0} / $bl)")
    echo "fixed L=$L batch=$bl: $tf ms, $per ms a sequence"
    sum=$(python3 -c "print($sum + $per)")
  done | tee "$OUT/ragged_fixed.txt"
  sum=$(awk '{s += $(NF-3)} END {print s}' "$OUT/ragged_fixed.txt")
  echo "ragged prefill ($lens): $tr ms; at the fixed-length rate: $sum ms; ratio $(python3 -c "print(round(${tr:-0} / $sum, 3))")"
fi
if want decode; then
  # issue 14: decode (split-KV) on contiguous and paged caches vs PyTorch SDPA (enable_gqa), Hq=32
  # Hk=8 d=128, batch 1/8/64 x KV 4k/32k/128k; KV GB/s and % of the measured copy rate.
  DEC_DTYPES=${DEC_DTYPES:-bf16}
  if [ "${DEC_TEST:-1}" = 1 ]; then # DEC_TEST=0: the tests ran elsewhere (mode dectc)
    timeout 300 ./build/tests/test_decode >"$OUT/test_decode.log" 2>&1; echo "test_decode rc=$?"; tail -3 "$OUT/test_decode.log"
  fi
  # DEC_RUNS: groups "batches:KV lengths[:pages]" (the largest cache, 64 x 131072 tokens, is 34 GB of bf16 K/V and
  # slow to fill on the host, so it is left out by default); DEC_DTYPES, DEC_PAGES as named.
  # DEC_CONFIGS: kernels to compare, ';'-separated CLATTN_TUNE_OVERRIDE values ("default": none).
  IFS=';' read -r -a groups <<<"${DEC_RUNS:-1,8:4096,32768,131072;64:4096,32768}"
  IFS=';' read -r -a dconfigs <<<"${DEC_CONFIGS:-default}"
  for cfg in "${dconfigs[@]}"; do
    echo "== config $cfg"
    ov=$cfg; [ "$cfg" = default ] && ov=
    for dt in ${DEC_DTYPES//,/ }; do for g in "${groups[@]}"; do
      IFS=: read -r gb gs gp <<<"$g"
      CLATTN_TUNE_OVERRIDE=$ov timeout 400 $CLI bench --family decode --heads 32 --kv-heads 8 --head-dim 128 \
        --dtype $dt --batches $gb --seq $gs --pages ${gp:-${DEC_PAGES:-0,16,256}} --reps 20 --warmup 3 --peak \
        2>>"$OUT/run.err"
    done; done
  done | tee "$OUT/decode.txt" | grep -vE "^(decode:|copy|peak)" | cut -c1-150 | head -80
  timeout 200 $CLI run --seq-q 4 --seq-kv 32768 --paged 16 --ragged 1,17,1000,4096,32768 --heads 32 --kv-heads 8 \
    --head-dim 128 --dtype bf16 --mask causal --verify 2>>"$OUT/run.err" | tee "$OUT/decode_ragged.txt" | grep -iE "verif|ms|error"
  for g in "${groups[@]}"; do
    IFS=: read -r gb gs gp <<<"$g"
    python3 bench/torch_decode.py --dtypes ${DEC_DTYPES:-bf16} --batches $gb --seqs $gs
  done >"$OUT/torch_decode.jsonl" 2>"$OUT/torch_decode.err"
  python3 - "$OUT/decode.txt" "$OUT/torch_decode.jsonl" <<'PY'
import json, re, sys
best = {}
for line in open(sys.argv[2]):
    r = json.loads(line)
    if "median_ms" in r:
        k = (r["dtype"], r["batch"], r["seq_kv"])
        if k not in best or r["median_ms"] < best[k][0]:
            best[k] = (r["median_ms"], r["backend"], r["kv_gbps"])
ours, dt, cfg, cfgs = {}, None, "default", []
for line in open(sys.argv[1]):
    if line.startswith("== config "):
        cfg = line.split(None, 2)[2].strip(); cfgs.append(cfg); continue
    m = re.match(r"decode: .* (f32|f16|bf16),", line)
    if m: dt = m.group(1)
    f = line.split()
    if len(f) >= 5 and f[0].isdigit() and f[1].isdigit() and not f[3].startswith("error"):
        ours.setdefault((dt, int(f[0]), int(f[1]), f[2]), {})[cfg] = (float(f[3]), float(f[4]))
print("decode, Hq=32 Hk=8 d=128: clattn (page '-' = contiguous; ms per kernel configuration) vs PyTorch's "
      "fastest SDPA backend; ratio = torch ms / the best clattn ms")
for i, c in enumerate(cfgs): print(f"  c{i}: {c}")
print(f"{'dtype':5} {'batch':>5} {'KV':>7} {'page':>5} " + " ".join(f"{'c%d ms' % i:>9}" for i in range(len(cfgs)))
      + f" {'GB/s':>7} {'torch ms':>9} {'GB/s':>7} {'backend':>16} {'ratio':>6}")
for (d, b, n, p), per in sorted(ours.items()):
    t = best.get((d, b, n))
    ms, gb = min(per.values())
    cols = " ".join(f"{per[c][0]:9.4f}" if c in per else f"{'-':>9}" for c in cfgs)
    print(f"{d:5} {b:5d} {n:7d} {p:>5} {cols} {gb:7.1f} " + (f"{t[0]:9.4f} {t[2]:7.1f} {t[1]:>16} {t[0] / ms:6.2f}" if t else "        -"))
PY
fi

if want backward all; then
  # Issue 16: the backward pass. Gradients verified on the GPU (test_backward, odd shapes per
  # dtype), then clattn's deterministic backward next to PyTorch's backward timed alone:
  # f16/bf16 vs the fastest of cuDNN, FLASH and EFFICIENT, f32 vs EFFICIENT_ATTENTION (TFLOP/s on 2.5x the forward's FLOPs).
  timeout 300 ./build/tests/test_backward >"$OUT/test_backward.log" 2>&1; echo "test_backward rc=$?"
  tail -3 "$OUT/test_backward.log"
  for dt in f32 f16 bf16; do for shape in "--seq 257 --head-dim 80 --mask causal" \
      "--seq-q 100 --seq-kv 333 --head-dim 64 --mask causal --heads 8 --kv-heads 2" "--seq 300 --head-dim 128 --layout bshd" \
      "--seq 1000 --head-dim 64 --mask window:64,64"; do
    timeout 120 $CLI run --backward --dtype $dt --verify $shape 2>&1 | grep -E 'backward:|verify|over|error' | sed 's/.*backward: //' | tr '\n' ' '
    echo " <- $dt $shape"
  done; done | tee "$OUT/backward_verify.txt" | grep -vc PASS | sed 's/^/backward verify lines without PASS: /'
  for dt in f16 bf16 f32; do for d in 64 128; do for m in none causal; do for n in 4096 16384; do
    point flash $dt $d $m $n --backward --no-verify --reps 10 --warmup 2
  done; done; done; done >"$OUT/backward.jsonl"
  python3 bench/torch_sdpa.py --backward --tokens $TOK --heads $H --dtypes f16,bf16 --head-dims 64,128 --seqs 4096,16384 \
    --backends CUDNN_ATTENTION,FLASH_ATTENTION,EFFICIENT_ATTENTION --reps 10 >"$OUT/torch_backward.jsonl" 2>>"$OUT/torch.err"
  python3 bench/torch_sdpa.py --backward --tokens $TOK --heads $H --dtypes f32 --head-dims 64,128 --seqs 4096,16384 \
    --backends EFFICIENT_ATTENTION --reps 10 >>"$OUT/torch_backward.jsonl" 2>>"$OUT/torch.err"
  python3 - "$OUT/backward.jsonl" "$OUT/torch_backward.jsonl" <<'PY' | tee "$OUT/backward.md"
import json, sys
ours, peer = {}, {}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        r = json.loads(line); ours[(r["dtype"], r["head_dim"], r["mask"], r["seq_q"])] = r
for line in open(sys.argv[2]):
    if line.startswith("{"):
        r = json.loads(line); k = (r["dtype"], r["head_dim"], r["mask"], r["seq"])
        if "median_ms" in r and (k not in peer or r["median_ms"] < peer[k]["median_ms"]):
            peer[k] = r  # the fastest backend that took the shape
print("| dtype | d | mask | N | clattn bwd ms | TFLOP/s | kernel | torch backend | ms | TFLOP/s | clattn/torch |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(ours, key=lambda k: (k[0], k[1], k[2], k[3])):
    r, t = ours[key], peer.get(key, {})
    if "error" in r:
        print(f"| {' | '.join(map(str, key))} | error: {r['error'][:60]} |"); continue
    kern = r.get("config", "").split("backward: ")[-1].split(" ")[0]
    tms = t.get("median_ms"); ratio = f"{t['tflops'] and r['tflops'] / t['tflops']:.2f}" if tms else "-"
    print(f"| {' | '.join(map(str, key))} | {r['median_ms']:.3f} | {r['tflops']:.1f} | {kern} | {t.get('backend', '-')} | "
          f"{tms if tms is None else format(tms, '.3f')} | {t.get('tflops') if t.get('tflops') is None else format(t['tflops'], '.1f')} | {ratio} |")
PY
fi

if want lintc; then
  # linear on tensor cores: the linear tests on the GPU, registers, TC vs FMA kernels (RESULTS §4)
  timeout 300 ./build/tests/test_linear >"$OUT/test_linear.log" 2>&1; echo "test_linear rc=$?"; tail -3 "$OUT/test_linear.log"
  OUT=$OUT bash bench/linear_sweep.sh regs; grep -A4 "TC=1" "$OUT/regs.txt" | grep -E "==|Compiling|registers|spill" | cut -c1-160
  OUT=$OUT bash bench/linear_sweep.sh tc | cut -d'|' -f2-10 | tail -30
fi

if want linear; then
  # linear family in depth: per-kernel times, bandwidth, crossover, 16-bit, tile variants (bench/RESULTS.md §4)
  OUT=$OUT bash bench/linear_sweep.sh all | tail -120
fi

if want bwdtc; then
  # Issue 16, the tensor-core backward (flash_bwd_tc, RESULTS §9): test_backward and test_decode on the GPU,
  # forced configurations at one point, the modifiers' cost, paged vs contiguous decode in pool order and
  # shuffled (the --page-order check of §14). The side-by-side table with PyTorch: mode `backward`.
  timeout 300 ./build/tests/test_backward >"$OUT/test_backward.log" 2>&1; echo "test_backward rc=$?"; tail -3 "$OUT/test_backward.log"
  timeout 300 ./build/tests/test_decode >"$OUT/test_decode.log" 2>&1; echo "test_decode rc=$?"; tail -3 "$OUT/test_decode.log"
  for n in 4096 16384; do for cfg in "kw=4,qm=64,kst=1,qw=4,kn=32,qst=2,kmt=1,qmt=2" "kw=4,qm=64,kst=1,qw=4,kn=64,qst=2,kmt=1,qmt=1" \
      "kw=4,qm=16,kst=2,qw=4,kn=32,qst=2,kmt=2,qmt=2" "kw=2,qm=16,kst=2,qw=2,kn=32,qst=2,kmt=2,qmt=2"; do
    echo "bf16 d64 causal N=$n $cfg: $(CLATTN_TUNE_OVERRIDE=flash_bwd_tc:$cfg point flash bf16 64 causal $n --backward --no-verify --reps 10 --warmup 2 |
      python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r.get("median_ms"), "ms", r.get("tflops"), "TFLOP/s")')"
  done; done | tee "$OUT/bwdtc_configs.txt"
  for mod in "" "--softcap 30" "--alibi 8" "--softcap 30 --alibi 8"; do
    echo "bf16 d64 causal N=4096 backward ${mod:-(no modifier)}: $($CLI run --backward --dtype bf16 --head-dim 64 --mask causal --seq 4096 \
      --batch 4 --heads $H --reps 10 --warmup 2 --no-verify $mod 2>&1 | grep -oE 'median [0-9.]+ ms')"
  done | tee "$OUT/bwdtc_mods.txt"
  for po in shuffled sequential; do
    timeout 200 $CLI bench --family decode --heads 32 --kv-heads 8 --head-dim 128 --dtype bf16 --batches 8,64 --seq 32768 \
      --pages 0,16,256 --page-order $po --reps 20 --warmup 3 2>&1 | grep -vE '^decode:|^clattn' | sed "s/^/$po /"
  done | tee "$OUT/decode_page_order.txt"
fi

if want wgmma; then
  # Hopper: flash_tc vs flash_wgmma vs PyTorch (cuDNN, FA2), f16, one process group (RESULTS §13);
  # the wgmma probe first when its source is there (../shared/probes, copied into .gpu/)
  if [ -f .gpu/wgprobe.c ]; then
    (cd /tmp && gcc -O2 -o wgprobe "$OLDPWD/.gpu/wgprobe.c" -lOpenCL -lm && ./wgprobe) >"$OUT/wgprobe.txt" 2>&1
    grep -E "^\[3\]|^\[4\]" "$OUT/wgprobe.txt"
  fi
  # correctness of each schedule (WGMMA_DEFS: build-define sets, comma-separated, besides the kernel's
  # defaults, e.g. the ping-pong off with -DPP=0, the register cap with -DMINCTAS=2) on shapes that are
  # not tile multiples; then the timings (WGMMA_SEQS, default 4096 16384); each run through wg_run.
  WGMMA_DEFS=${WGMMA_DEFS:-"-DPP=1 -DWIDE=0"}
  rm -f "$OUT/wgmma_hung.txt"
  [ "${WGMMA_VERIFY:-1}" = 1 ] && for defs in "" $(echo "$WGMMA_DEFS" | tr ' ' '\n' | grep .); do
    for shape in "--seq 257 --head-dim 80 --mask causal" "--seq-q 100 --seq-kv 333 --head-dim 64 --mask causal --heads 8 --kv-heads 2" \
                 "--seq 300 --head-dim 128 --layout bshd" "--seq 1000 --head-dim 128 --mask causal --dtype f16" \
                 "--seq 190 --head-dim 112 --mask causal" "--seq-q 77 --seq-kv 1500 --head-dim 64"; do
      echo "$(wg_run flash_wgmma: "$defs" --dtype bf16 --verify $shape | grep -E 'verify|over|rror|skipped' | tr '\n' ' ')" \
        "<- flash_wgmma [${defs:-defaults}] $shape"
      [ -n "$defs" ] && continue # the other schedules (WGMMA_VCFGS), defaults only
      for vc in ${WGMMA_VCFGS:-wgs=2 st=2 wgs=3,st=2 wgs=2,st=3}; do
        echo "$(wg_run flash_wgmma:$vc "" --dtype bf16 --verify $shape | grep -E 'verify|over|rror|skipped' | tr '\n' ' ')" \
          "<- flash_wgmma:$vc $shape"
      done
    done
  done >"$OUT/wgmma_verify.txt" 2>&1
  echo "wgmma verify: $(grep -c PASS "$OUT/wgmma_verify.txt") passed"; grep -v PASS "$OUT/wgmma_verify.txt" | head -5
  [ -f "$OUT/wgmma_hung.txt" ] && head -3 "$OUT/wgmma_hung.txt"
  [ "${WGMMA_SEQS:-}" = - ] && WGMMA_SEQS= WGMMA_TIMES=0 # "-": the verification only
  [ "${WGMMA_TIMES:-1}" = 1 ] && for d in 64 128; do for m in none causal; do for n in ${WGMMA_SEQS:-4096 16384}; do
    bn=64; [ $d = 128 ] && bn=32
    for cfg in flash_tc:warps=4 flash_tcq: flash_wgmma:wgs=2,bn=$bn,st=2 flash_wgmma:wgs=3,bn=$bn,st=2 \
        flash_wgmma:wgs=2,bn=$bn,st=3 flash_wgmma:wgs=3,bn=$bn,st=3 \
        $(for x in $WGMMA_DEFS; do echo "flash_wgmma:wgs=2,bn=$bn,st=2%$x flash_wgmma:wgs=3,bn=$bn,st=3%$x"; done); do
      [ $d = 64 ] && [ "$cfg" = flash_tcq: ] && continue
      b=$((TOK / n / H)); [ $b -lt 1 ] && b=1
      defs=; [[ $cfg == *%* ]] && defs=${cfg#*%}
      o=$(wg_run "${cfg%%\%*}" "$defs" --dtype f16 --head-dim $d --mask $m --seq $n --batch $b --heads $H --reps 10 \
          --no-verify | grep -E "^time|^speed|rror|skipped" | sed -e 's/time *: median/ms/' \
          -e 's/, min.*//' -e 's/speed *: //' -e 's/ TFLOP.*/ TF/' | tr '\n' ' ')
      echo "d$d $m $n $cfg: $o"
    done
  done; done; done | tee "$OUT/wgmma.txt"
  [ "${WGMMA_TIMES:-1}" = 1 ] && timeout 100 python3 bench/torch_sdpa.py --tokens $TOK --heads $H --dtypes f16 --head-dims 64,128 --seqs "$(echo ${WGMMA_SEQS:-4096 16384} | tr " " ",")" \
    --backends CUDNN_ATTENTION,FLASH_ATTENTION 2>>"$OUT/torch.err" | tee "$OUT/torch_wgmma.jsonl" | python3 -c "
import json, sys
for l in sys.stdin:
    r = json.loads(l); print('torch', r['backend'], 'd%d' % r['head_dim'], r['mask'], r['seq'], round(r['median_ms'], 4), 'ms', round(r.get('tflops', 0), 1))"
fi

if want wgdefault; then
  # flash_wgmma's defaults (the overlapped schedule, three warpgroups; first at d = 128): its test on
  # the GPU, the selection and verification on odd shapes, the issue-15 GQA shape (B 1, Hq 32, Hk 8,
  # N 8192, d 128, causal) against flash_tcq and every PyTorch backend, alternating
  timeout 120 ./build/tests/test_flash --only test_warpgroup_mma >"$OUT/test_wgmma.log" 2>&1
  echo "test_warpgroup_mma rc=$?"; grep -E "rel err|FAILED  \]|PASSED" "$OUT/test_wgmma.log" | cut -c1-150 | head -4
  for sh in "--seq 257 --head-dim 128 --mask causal" "--seq-q 100 --seq-kv 333 --head-dim 128 --mask causal --heads 8 --kv-heads 2" \
            "--seq 300 --head-dim 128 --layout bshd" "--seq-q 77 --seq-kv 1500 --head-dim 120" "--seq 1000 --head-dim 128 --mask causal --dtype f16"; do
    echo "$(timeout 30 $CLI run --dtype bf16 --verify $sh 2>&1 | grep -E '^config|verify|rror' | cut -c1-60 | tr '\n' ' ') <- $sh"
  done | tee "$OUT/wgdefault_verify.txt"
  G="--seq 8192 --batch 1 --heads 32 --kv-heads 8 --head-dim 128 --mask causal --reps 20 --warmup 3 --no-verify"
  for dt in bf16 f16; do for r in 1 2; do
    echo "GQA $dt default: $(timeout 30 $CLI run --dtype $dt $G 2>&1 | grep -E '^config|^time|^speed' | cut -c1-50 | tr '\n' ' ')"
    echo "GQA $dt flash_tcq: $(CLATTN_TUNE_OVERRIDE=flash_tcq: timeout 30 $CLI run --dtype $dt $G 2>&1 | grep -E '^time|^speed' | cut -c1-50 | tr '\n' ' ')"
  done; done | tee "$OUT/wgdefault_gqa.txt"
  timeout 90 python3 - <<'PY' 2>&1 | tee "$OUT/wgdefault_torch.txt"
import torch, torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
for dt in (torch.bfloat16, torch.float16):
    q = torch.randn(1, 32, 8192, 128, device="cuda", dtype=dt)
    k = torch.randn(1, 8, 8192, 128, device="cuda", dtype=dt)
    v = torch.randn_like(k)
    for be in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
        try:
            with sdpa_kernel(be):
                for _ in range(3):
                    F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                torch.cuda.synchronize()
                ts = []
                for _ in range(20):
                    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    s.record()
                    F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                    e.record()
                    torch.cuda.synchronize()
                    ts.append(s.elapsed_time(e))
            ts.sort()
            print("torch GQA", str(dt)[6:], be.name, round(ts[10], 4), "ms")
        except Exception as ex:
            print("torch GQA", str(dt)[6:], be.name, "error", str(ex)[:80])
PY
fi

if want wgprof; then
  # flash_wgmma's phase profile (-DWG_PROFILE=1: the kernel prints the mean clock a tile spends in
  # each phase for one work-group) under its schedules, then wgs=3 with and without the ping-pong
  rm -f "$OUT/wgmma_hung.txt"
  P="--dtype f16 --seq 16384 --batch 1 --heads 16 --reps 1 --warmup 0 --no-verify"
  for x in "wgs=3,bn=32,st=3||--head-dim 128" "wgs=3,bn=32,st=3|-DPP=1|--head-dim 128" "wgs=3,bn=64,st=3||--head-dim 64" \
           "wgs=3,bn=32,st=2||--head-dim 128" "wgs=3,bn=32,st=2|-DPP=0|--head-dim 128" \
           "wgs=2,bn=32,st=2||--head-dim 128" "wgs=2,bn=32,st=2|-DPP=0|--head-dim 128" \
           "wgs=2,bn=64,st=2||--head-dim 64" "wgs=3,bn=32,st=2||--head-dim 128 --mask causal"; do
    IFS='|' read -r cfg defs a <<<"$x"
    echo "== flash_wgmma:$cfg [${defs:-defaults}] $a"
    CLATTN_NV_VERBOSE=1 wg_run flash_wgmma:$cfg "-DWG_PROFILE=1 $defs" $P $a |
      grep -oE "wgprof.*|.*rror.*|skipped.*|[0-9]+ registers|[0-9]+ bytes spill[a-z ]*|warpgroup.arrive[^|]*|[^|]*erializ[^|]*" | cut -c1-220
  done | tee "$OUT/wgprof.txt"
  R="--dtype f16 --head-dim 128 --seq 16384 --batch 1 --heads 16 --reps 10 --warmup 2 --no-verify"
  for r in $(seq ${WGPROF_ROUNDS:-2}); do for m in none causal; do for st in 2 3; do for defs in "-DPP=0" "-DPP=1"; do
    echo "wgs=3 st=$st $m [$defs]: $(wg_run flash_wgmma:wgs=3,bn=32,st=$st "$defs" $R --mask $m |
      grep -E '^time|rror|skipped' | cut -c1-50)"
  done; done; done; done | tee -a "$OUT/wgprof.txt"
fi

if want sparsetc; then
  # issue 15 step 4: sparse patterns on flash_tc (f16/bf16): its test, then a window of 256 (causal, and
  # 256 each side) at N = 16k and BigBird against dense flash_tc on the same shape; TFLOP/s on the
  # attended pairs (the CLI's --json "tflops" counts the visible pairs) and the ratio to dense.
  timeout 200 ./build/tests/test_sparse --only test_flash_tc >"$OUT/test_sparse_tc.log" 2>&1
  echo "test_sparse flash_tc rc=$?"; grep -E "PASSED|FAILED|SKIPPED|ERROR" "$OUT/test_sparse_tc.log" | head -3
  for dt in ${SPTC_DTYPES:-f16}; do for n in ${SPTC_SEQS:-16384}; do
    for m in none window:256,0 window:256,256 bigbird:64,3,2,3; do
      timeout 120 $CLI run --json --algo flash --dtype $dt --head-dim ${SPTC_D:-64} --mask $m --seq $n --batch 1 \
        --heads 16 --reps 10 --warmup 2 --no-verify 2>>"$OUT/run.err" | tail -1
    done; done; done | tee "$OUT/sparsetc.jsonl" | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip().startswith("{")]
dense = {(r.get("dtype"), r.get("seq_q")): r for r in rows if r.get("mask") == "none"}
for r in rows:
    d = dense.get((r.get("dtype"), r.get("seq_q")), {})
    ratio = r.get("tflops", 0) / d["tflops"] if d.get("tflops") else float("nan")
    print(r.get("dtype"), r.get("seq_q"), r.get("mask"), r.get("median_ms"), "ms", r.get("tflops"), "TFLOP/s",
          "%.2f of dense" % ratio, (r.get("config") or "")[:60])'
fi

if want tf32; then
  # issue 15 step 3: f32 on tensor cores (flash_tf32, 3xTF32 mma.sync m16n8k8): the GPU tests, registers /
  # spills, a tiling sweep at N = 4096 (B·H = 64; TFLOP/s of the two GEMMs), then compare_torch.py (f32
  # against EFFICIENT_ATTENTION, TF32 off in PyTorch)
  for t in "test_flash test_f32_tensor_cores" "test_mods test_flash_tf32" "test_sparse test_flash_tf32"; do
    set -- $t
    timeout 240 ./build/tests/$1 --only $2 >"$OUT/$1_tf32.log" 2>&1
    echo "$1 $2 rc=$? $(grep -cE '^\[       OK' "$OUT/$1_tf32.log") ok $(grep -E 'FAILED|SKIPPED|rel err' "$OUT/$1_tf32.log" | head -2)"
  done
  for d in 64 128; do
    CLATTN_NV_VERBOSE=1 timeout 60 $CLI run --no-verify --dtype f32 --head-dim $d --seq 4096 --batch 4 --heads 16 \
      --reps 3 2>&1 | grep -E "^config" | sed 's/^config *: //' | cut -c1-400
    for cfg in ${TF32_CFGS:-warps=4,mt=2,bn=64 warps=4,mt=1,bn=32 warps=8,mt=1,bn=32 warps=4,mt=2,bn=32 warps=8,mt=1,bn=16 warps=4,mt=1,bn=16}; do
      for m in none causal; do
        ms=$(CLATTN_TUNE_OVERRIDE=flash_tf32:$cfg kernel_ms --dtype f32 --head-dim $d --mask $m --seq 4096 --batch 4 \
          --heads 16 --reps 10 --warmup 2)
        echo "d=$d $cfg $m: $ms $(python3 -c "import sys; ms=float(sys.argv[1]); print('%.1f TFLOP/s' % (4*4*16*4096*4096*$d/ms/1e9*(0.5 if '$m'=='causal' else 1)))" "$(echo $ms | awk '{print $2}')" 2>/dev/null)"
      done
    done
  done | tee "$OUT/tf32_sweep.txt"
  CLATTN_LIB=build/libclattn.so timeout 300 python3 bench/compare_torch.py --dtypes f32 --head-dims ${CMP_DIMS:-64,128} \
    --seqs ${CMP_SEQS:-4096,16384} --json "$OUT/compare_tf32.jsonl" 2>"$OUT/compare_tf32.err" | tee "$OUT/compare_tf32.md"
fi

if want softcap; then
  # issue 18: softcap on flash_tc against the kernels of an older tree (SC_OLD: a cl/ folder, e.g.
  # `git archive REV cl | tar -x -C .oldcl` passed with carry; default .oldcl/cl), alternating in one
  # process group; the GPU tests first. B·H·N = TOK·H... as `point`; ms, median of 10.
  timeout 240 ./build/tests/test_mods --only "test_flash_t*" >"$OUT/test_mods_tc.log" 2>&1
  echo "test_mods flash_tc/tf32 rc=$? $(grep -E 'PASSED|FAILED' "$OUT/test_mods_tc.log" | head -1)"
  old=${SC_OLD:-.oldcl/cl}
  for dt in ${SC_DTYPES:-bf16 f16}; do for d in ${SC_DIMS:-64 128}; do for n in 4096 16384; do
    b=$((TOK / n / H))
    for spec in "--mask none" "--mask none --softcap 30" "--mask causal" "--mask causal --softcap 30"; do
      a=$(kernel_ms --dtype $dt --head-dim $d --seq $n --batch $b --heads $H --reps 10 --warmup 2 $spec)
      c=$([ -d "$old" ] && CLATTN_KERNEL_DIR="$old" kernel_ms --dtype $dt --head-dim $d --seq $n --batch $b --heads $H --reps 10 --warmup 2 $spec)
      echo "$dt d=$d N=$n $spec: this ${a#* } old ${c#* }"
    done
  done; done; done | tee "$OUT/softcap.txt"
fi

if want tcchecks; then
  # seventh session's checks: decode_tc's tests on the GPU (fp8, every code, modifiers), decode with
  # modifiers against plain decode, window tilings on flash_tc, f32 against PyTorch at the new defaults
  timeout 300 ./build/tests/test_decode --only "test_decode_tc*" >"$OUT/test_decode_tc.log" 2>&1
  echo "test_decode_tc rc=$? $(grep -cE '^\[       OK' "$OUT/test_decode_tc.log") ok $(grep -E 'FAILED|SKIPPED' "$OUT/test_decode_tc.log" | head -2)"
  for spec in "" "--softcap 30" "--alibi 8" "--mask causal --seq-q 4"; do
    echo "decode B=8 KV=32768 bf16 $spec: $(kernel_ms --seq-q 1 --seq-kv 32768 --batch 8 --heads 32 --kv-heads 8 --head-dim 128 \
      --dtype bf16 --reps 20 --warmup 3 $spec)"
  done
  for cfg in default warps=4,mt=1,bn=64 warps=2,mt=1,bn=64 warps=4,mt=2,bn=32 warps=4,mt=1,bn=32; do
    ov=flash_tc:$cfg; [ $cfg = default ] && ov=
    for m in none window:256,0 window:256,256; do
      echo "f16 d=64 N=16384 $m $cfg: $(CLATTN_TUNE_OVERRIDE=$ov kernel_ms --dtype f16 --head-dim 64 --mask $m --seq 16384 \
        --batch 1 --heads 16 --reps 10 --warmup 2)"
    done
  done
  CLATTN_LIB=build/libclattn.so timeout 200 python3 bench/compare_torch.py --dtypes f32 --head-dims 64,128 \
    --seqs 4096 --json "$OUT/compare_tf32.jsonl" 2>"$OUT/compare_tf32.err" | tee "$OUT/compare_tf32.md"
fi

if want modstc; then
  # issue 18: the forward modifiers on the tensor-core kernel (flash_tc), 16-bit, against plain flash
  # in the same process (B·H·N = TOK·H... as `point`): softcap, ALiBi, sinks, a bias tensor, user
  # mask_mods = causal / a window (block lists) against the native masks; the GPU tests first.
  if [ "${MODSTC_TEST:-1}" = 1 ]; then
    for t in test_mods test_user_fns; do
      timeout 200 ./build/tests/$t --only test_flash_tc >"$OUT/${t}_tc.log" 2>&1; echo "$t flash_tc rc=$?"
      grep -E "PASSED|FAILED|SKIPPED|ERROR" "$OUT/${t}_tc.log" | head -4
    done
  fi
  printf 'int clattn_mask_mod(int b, int h, int q_idx, int kv_idx, __global const uchar *user) { return kv_idx <= q_idx; }\n' >"$OUT/c.cl"
  printf 'int clattn_mask_mod(int b, int h, int q_idx, int kv_idx, __global const uchar *user) { return kv_idx <= q_idx && kv_idx >= q_idx - 256; }\n' >"$OUT/w.cl"
  for d in ${MODSTC_DIMS:-64 128}; do for n in ${MODSTC_SEQS:-4096 16384}; do
    b=$((TOK / n / H)); [ $b -lt 1 ] && b=1
    for spec in "--mask none" "--mask none --softcap 30" "--mask none --alibi 8" "--mask causal" "--mask causal --softcap 30" \
        "--mask causal --alibi 8" "--mask causal --softcap 30 --alibi 8" "--mask causal --sinks 1" "--mask-mod $OUT/c.cl" \
        "--mask window:256,0" "--mask-mod $OUT/w.cl" "--mask none --bias random-bool"; do
      t=$(kernel_ms --dtype ${MODSTC_DTYPE:-bf16} --seq $n --batch $b --heads $H --head-dim $d --reps 10 $spec)
      echo "d=$d N=$n ${spec//$OUT\//}: $t"
    done
  done; done | tee "$OUT/modstc.txt"
fi

if want alibi; then
  # issue 18: ALiBi alone over plain flash on the default kernels (d = 64 flash_tc, d = 128 flash_wgmma),
  # f16/bf16, none/causal, N = 4k (B = 16) and 16k (B = 4), H = 16, 2 rounds, best of the medians;
  # ALIBI_OLD=1 adds the log2-unit form (-DNO_ALIBI_INIT=1) beside the default (its term as S's start)
  declare -A ab_t=()
  for round in 1 2; do
    for dt in f16 bf16; do for d in 64 128; do for m in none causal; do for n in 4096 16384; do
      for lab in plain alibi $([ "${ALIBI_OLD:-0}" = 1 ] && echo alibi-log2); do
        a=""; defs=""; [ $lab != plain ] && a="--alibi 8"; [ $lab = alibi-log2 ] && defs=-DNO_ALIBI_INIT=1
        t=$(CLATTN_BUILD_DEFINES=$defs timeout 40 $CLI run --dtype $dt --head-dim $d --mask $m --seq $n --batch $((65536 / n)) \
          --heads 16 $a --reps 10 --warmup 2 --no-verify 2>&1 | grep -E '^time' | sed 's/time *: median //; s/ ms.*//')
        k="d$d $dt $m N$n"; [ -n "$t" ] && ab_t[$k $lab]=$(python3 -c "print(min($t, ${ab_t[$k $lab]:-1e30}))")
      done
    done; done; done; done
  done
  for k in "${!ab_t[@]}"; do [[ $k == *" plain" ]] && echo "${k% plain}"; done | sort | while read -r k; do
    p=${ab_t[$k plain]}; line="$k: plain $p ms"
    for lab in alibi alibi-log2; do
      [ -n "${ab_t[$k $lab]:-}" ] && line="$line, $lab ${ab_t[$k $lab]} ($(python3 -c "print('%+.1f %%' % (100 * (${ab_t[$k $lab]} / $p - 1)))"))"
    done
    echo "$line"
  done | tee "$OUT/alibi.txt"
fi

if want mods; then
  # programmable attention on the portable flash kernel, f32 (RESULTS §15): a mask_mod against the native
  # causal and window masks, with and without block classes; sinks
  printf 'int clattn_mask_mod(int b, int h, int q_idx, int kv_idx, __global const uchar *user) { return kv_idx <= q_idx; }\n' >"$OUT/c.cl"
  printf 'int clattn_mask_mod(int b, int h, int q_idx, int kv_idx, __global const uchar *user) { return kv_idx <= q_idx && kv_idx >= q_idx - 256; }\n' >"$OUT/w.cl"
  for n in 4096 16384; do
    b=$((TOK / n / H)); [ $b -lt 1 ] && b=1
    for spec in "--mask causal" "--mask-mod $OUT/c.cl" "--mask-mod $OUT/c.cl --no-mask-blocks" "--mask window:256,0" \
        "--mask-mod $OUT/w.cl" "--mask-mod $OUT/w.cl --no-mask-blocks" "--mask causal --sinks 1"; do
      t=$(timeout 60 $CLI run --seq $n --batch $b --heads $H --head-dim 64 --reps 10 --no-verify $spec 2>&1 |
          grep -E "^time|rror" | sed 's/time *: median //; s/, min.*//')
      echo "N=$n ${spec//$OUT\//}: $t"
    done
  done | tee "$OUT/mods.txt"
fi

if want decsweep; then
  IFS=';' read -r -a dpts <<<"${DS_POINTS:-1:131072:int8;1:131072:same;8:131072:int8}" # KV: DTYPE[/SCALE]
  IFS=';' read -r -a dcfgs <<<"${DS_CONFIGS:-auto;splits=128,bn=16,ns=3,warps=1;splits=128,bn=16,ns=2,warps=2;splits=128,bn=16,ns=2,warps=4}"
  DSARGS="--seq-q 1 --heads 32 --kv-heads 8 --head-dim 128 --dtype bf16 --no-verify --reps 20 --warmup 3"
  declare -A dsbest=()
  for round in 1 2; do
    for pt in "${dpts[@]}"; do
      IFS=: read -r b n kv <<<"$pt"
      for cfg in "${dcfgs[@]}"; do
        c=${cfg%%\%*} defs=""; [[ "$cfg" == *%* ]] && defs=${cfg#*%}
        ov=""; [ "$c" != auto ] && ov="--config decode_tc:$c"
        t=$(CLATTN_BUILD_DEFINES="${defs//,/ }" timeout 60 $CLI run $DSARGS --batch $b --seq-kv $n --kv-dtype ${kv%%/*} $([[ $kv == */* ]] && echo --kv-scale ${kv#*/}) $ov 2>>"$OUT/run.err" |
          grep -E '^time' | sed 's/time *: median //; s/ ms.*//')
        k="$b:$n:${kv:-same}|$cfg"
        [ -n "$t" ] && dsbest[$k]=$(python3 -c "print(min($t, ${dsbest[$k]:-1e30}))")
      done
    done
  done
  echo "decode sweep (bf16 Q/O, Hq=32 Hk=8 d=128, one query; ms, best of 2 medians; B:N:KV | decode_tc config)"
  for k in "${!dsbest[@]}"; do echo "$k ${dsbest[$k]}"; done | sort | tee "$OUT/decsweep.txt"
  echo "per-kernel (clattn run --profile: split kernel, merge, gap; medians)"
  for pt in "${dpts[@]}"; do
    IFS=: read -r b n kv <<<"$pt"
    for cfg in "${dcfgs[@]}"; do
      c=${cfg%%\%*} defs=""; [[ "$cfg" == *%* ]] && defs=${cfg#*%}
      ov=""; [ "$c" != auto ] && ov="--config decode_tc:$c"
      echo "$pt|$cfg: $(CLATTN_BUILD_DEFINES="${defs//,/ }" timeout 60 $CLI run $DSARGS --profile --batch $b --seq-kv $n --kv-dtype ${kv%%/*} $([[ $kv == */* ]] && echo --kv-scale ${kv#*/}) $ov 2>&1 |
        grep -E '^kernels|^config|rror' | sed 's/^config *: [^:]*: flash-decoding split-KV//; s/ (4 query rows.*//; s/^kernels *: //' | tr '\n' ' ' | cut -c1-220)"
    done
  done | tee "$OUT/decsweep_profile.txt"
fi

# `tma` (not part of `all`): bench/tma_probe.c — TMA tensor maps built on the device (tensormap.replace through
# patched PTX), one box checked (both swizzles, zero fill), then a decode-shaped K/V stream through them against
# the same stream through cp.async and the copy, beside clattn's own bf16 decode (B 8 x 32k, B 1 x 131k)
if want tma; then
  gcc -O2 bench/tma_probe.c -lOpenCL -o build/tma_probe 2>>"$OUT/run.err" &&
    TMA_PTX="$OUT/tma_probe.ptx" timeout 240 ./build/tma_probe bench/tma_probe.cl 2>&1 | tee "$OUT/tma.txt"
  for pt in "8 32768" "1 131072"; do
    set -- $pt
    echo "clattn decode B$1 N$2 bf16 (Hq 32, Hk 8, d 128): $(kernel_ms --seq-q 1 --heads 32 --kv-heads 8 --head-dim 128 --dtype bf16 --reps 20 --warmup 3 --batch $1 --seq-kv $2)"
  done | tee -a "$OUT/tma.txt"
fi

# `dectorch` (not part of `all`): issue 14's decode table in one call: clattn's automatic decode_tc plan (bf16, Hq 32,
# Hk 8, d 128) at B 1/8/64 x 4k/32k and B 1/8 x 131k (DT_POINTS "B N;..." to choose), two alternating rounds, each
# point also with the configurations of DT_ALT (';'-separated --config values; default the fused merge,
# decode_tc:fuse=1), then PyTorch's CUDNN and FLASH backends on the same points (bench/torch_decode.py, timed back
# to back)
if want dectorch; then
  DTARGS="--seq-q 1 --heads 32 --kv-heads 8 --head-dim 128 --dtype bf16 --reps 20 --warmup 3"
  DTPTS=${DT_POINTS:-"1 4096;1 32768;1 131072;8 4096;8 32768;8 131072;64 4096;64 32768"}
  IFS=';' read -ra pts <<<"$DTPTS"
  IFS=';' read -ra alts <<<"${DT_ALT:-decode_tc:fuse=1}"
  for round in 1 2; do
    for pt in "${pts[@]}"; do
      set -- $pt
      line="r$round B$1 N$2 clattn $(kernel_ms $DTARGS --batch $1 --seq-kv $2)"
      for alt in "${alts[@]}"; do line="$line | $alt: $(kernel_ms $DTARGS --batch $1 --seq-kv $2 --config "$alt")"; done
      echo "$line"
    done
  done | tee "$OUT/dectorch.txt"
  timeout 60 $CLI run $DTARGS --batch 8 --seq-kv 32768 --no-verify 2>&1 | grep -E '^config' >>"$OUT/dectorch.txt"
  { python3 bench/torch_decode.py --dtypes bf16 --batches 1,8 --seqs 4096,32768,131072 --backends CUDNN_ATTENTION,FLASH_ATTENTION
    python3 bench/torch_decode.py --dtypes bf16 --batches 64 --seqs 4096,32768 --backends CUDNN_ATTENTION,FLASH_ATTENTION; } 2>>"$OUT/run.err" |
    tee "$OUT/dectorch_torch.jsonl" | python3 -c "
import json, sys
for l in sys.stdin:
    r = json.loads(l); print('torch', r.get('backend'), 'B%d N%d' % (r['batch'], r['seq_kv']), r.get('median_ms', r.get('error')))"
fi
