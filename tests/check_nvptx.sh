#!/usr/bin/env bash
# check_nvptx.sh — compiles the NVIDIA-only kernel code (tensor-core flash, linear on tensor cores, warp decode) to PTX with clang, so that a machine without an NVIDIA GPU still catches their C and inline-asm operand errors; with ptxas on PATH the PTX is parsed too.
# usage: check_nvptx.sh CLANG CL_DIR
set -uo pipefail
clang=${1:-clang}
cl=${2:-cl}
if ! "$clang" --version >/dev/null 2>&1; then echo "check_nvptx: no clang ($clang)"; exit 1; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 runs=0
compile() { # NAME SOURCES... -- OPTIONS...
  local name=$1; shift
  local srcs=() opts=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do srcs+=("$cl/$1"); shift; done
  shift
  opts=("$@")
  cat "$cl/common.cl" "${srcs[@]}" >"$tmp/$name.cl"
  runs=$((runs + 1))
  if ! "$clang" -x cl -cl-std=CL1.2 -target nvptx64-nvidia-nvcl -Xclang -finclude-default-header \
      -Xclang -target-cpu -Xclang sm_80 -Xclang -target-feature -Xclang +ptx75 -Werror=implicit-function-declaration \
      "${opts[@]}" -S -o "$tmp/$name.ptx" "$tmp/$name.cl" 2>"$tmp/$name.err"; then
    echo "FAIL $name: ${opts[*]}"; head -20 "$tmp/$name.err"; fails=$((fails + 1)); return
  fi
  if command -v ptxas >/dev/null 2>&1; then
    # the OpenCL built-ins stay unresolved here (no libclc): only syntax errors count
    if ptxas -arch=sm_90 "$tmp/$name.ptx" -o /dev/null 2>&1 | grep -v "Unresolved extern" | grep -q "error"; then
      echo "FAIL $name (ptxas):"; ptxas -arch=sm_90 "$tmp/$name.ptx" -o /dev/null 2>&1 | grep error | head -10
      fails=$((fails + 1)); return
    fi
  fi
  echo "ok   $name"
}
for dt in 1 2; do for d in 64 80 128 256; do for c in 0 1 2; do
  compile "flash_tc_t${dt}_d${d}_c${c}" flash_tc.cl -- -DCLATTN_DTYPE=$dt -DD=$d -DWARPS=4 -DMT=$((d <= 64 ? 2 : 1)) \
    -DBN=$((d >= 256 ? 32 : 64)) -DCAUSAL=$c -DVEC_GLOBAL=$((d % 8 == 0)) -DLDM_ADDR=1 -DASYNC=$((d % 8 == 0))
done; done; done
lin="linear_common.cl linear_feat.cl linear_state.cl linear_scan.cl"
for map in 0 2; do for causal in 0 1; do
  out=linear_apply.cl; [ $causal = 1 ] && out=linear_causal.cl
  f=64; [ $map = 2 ] && f=256
  compile "linear_tc_m${map}_c${causal}" $lin $out -- -DCLATTN_DTYPE=0 -DD=64 -DF=$f -DMAP=$map -DCAUSAL=$causal \
    -DVEC=1 -DOVEC=1 -DBD=64 -DBKS=16 -DTC=1 -DSTW=$((f / 16)) -DSTM=1 -DTAW=4 -DTAM=1 -DBQ=64 -DSPRE=1 -DZLOC=1
done; done
# decode_warp: the warp-stream decode (shuffles in inline PTX), f32 and bf16 (clang's header
# here lacks vload_half), paged, causal, strided
for dt in 0 2; do for d in 8 64 128 256; do
  compile "decode_warp_t${dt}_d${d}" decode.cl -- -DCLATTN_DTYPE=$dt -DD=$d -DKT=64 -DWG=128 -DQR=4 \
    -DCAUSAL=$((d % 3)) -DPAGED=$((dt == 2)) -DRAGGED=0 -DVEC8=$((d != 8)) -DWARP=1 -DUNROLL=4 -DCLATTN_NV_SHFL=1
done; done
echo "$runs compiled, $fails failed"
[ $fails -eq 0 ]
