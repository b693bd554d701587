#!/usr/bin/env bash
# check_nvptx.sh — compiles the NVIDIA-only kernel code (tensor-core flash and backward, linear on tensor cores, warp decode) to PTX with clang, so that a machine without an NVIDIA GPU still catches their C and inline-asm operand errors and functions called but never defined; with ptxas on PATH the PTX is assembled too (registers, spills, serialised wgmma), with nvdisasm the SASS of the overlapped wgmma schedule is read.
# usage: check_nvptx.sh CLANG CL_DIR [TEST_PTX]  (TEST_PTX: the patcher, tests/test_ptx.c, for the wgmma kernels)
set -uo pipefail
clang=${1:-clang}
cl=${2:-cl}
patcher=${3:-}
if ! "$clang" --version >/dev/null 2>&1; then echo "check_nvptx: no clang ($clang)"; exit 1; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 runs=0
# max_spill PTXAS_LOG: the largest "N bytes spill stores" of ptxas -v (empty: none)
max_spill() { grep -oE "[1-9][0-9]* bytes spill stores" "$1" | grep -oE "^[0-9]+" | sort -n | tail -1; }
compile() { # NAME SOURCES... -- OPTIONS...
  local name=$1; shift
  local srcs=() opts=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do srcs+=("$cl/$1"); shift; done
  shift
  opts=("$@")
  cat "$(dirname "$0")/nvptx_builtins.cl" "$cl/common.cl" "${srcs[@]}" >"$tmp/$name.cl"
  runs=$((runs + 1))
  if ! "$clang" -x cl -cl-std=CL1.2 -target nvptx64-nvidia-nvcl -Xclang -finclude-default-header \
      -Xclang -target-cpu -Xclang sm_80 -Xclang -target-feature -Xclang +ptx75 -Werror=implicit-function-declaration \
      "${opts[@]}" -S -o "$tmp/$name.ptx" "$tmp/$name.cl" 2>"$tmp/$name.err"; then
    echo "FAIL $name: ${opts[*]}"; head -20 "$tmp/$name.err"; fails=$((fails + 1)); return 1
  fi
  # a function of ours declared but never defined (an `inline` definition the compiler did not
  # inline, C99 semantics): the real build would fail to link; built-ins (mangled _Z...) are exempt
  local undef
  undef=$(python3 - "$tmp/$name.ptx" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
decl, defd = set(), set()
for m in re.finditer(r'^(?:\.visible |\.extern |\.weak )?\.func\s+(?:\([^)]*\)\s*)?(\w+)\s*(\([^)]*\))?\s*([;{])',
                     t, re.M | re.S):
    (defd if m.group(3) == '{' else decl).add(m.group(1))
print(' '.join(sorted(n for n in decl - defd if not n.startswith(('_Z', '__')))))
PY
  )
  if [ -n "$undef" ]; then
    echo "FAIL $name: called but never defined: $undef"; fails=$((fails + 1)); return 1
  fi
  if command -v ptxas >/dev/null 2>&1; then
    # the OpenCL built-ins stay unresolved here (no libclc): only syntax errors count
    if ptxas -arch=sm_90 "$tmp/$name.ptx" -o /dev/null 2>&1 | grep -v "Unresolved extern" | grep -q "error"; then
      echo "FAIL $name (ptxas):"; ptxas -arch=sm_90 "$tmp/$name.ptx" -o /dev/null 2>&1 | grep error | head -10
      fails=$((fails + 1)); return 1
    fi
  fi
  echo "ok   $name"
}
for dt in 1 2; do for d in 64 80 128 256; do for c in 0 1 2; do
  compile "flash_tc_t${dt}_d${d}_c${c}" nv_mma.cl flash_tc.cl -- -DCLATTN_DTYPE=$dt -DD=$d -DWARPS=4 -DMT=$((d <= 64 ? 2 : 1)) \
    -DBN=$((d >= 256 ? 32 : 64)) -DCAUSAL=$c -DVEC_GLOBAL=$((d % 8 == 0)) -DLDM_ADDR=1 -DASYNC=$((d % 8 == 0))
done; done; done
# ALiBi alone with a positive scale (-DALIBI_RAW=1): its term as the S accumulators' start, both signs of tiles
for x in "1 64 0 2 64" "2 128 1 1 64"; do
  set -- $x
  compile "flash_tc_alibi_raw_t$1_d$2_c$3" nv_mma.cl flash_tc.cl -- -DCLATTN_DTYPE=$1 -DD=$2 -DWARPS=4 -DMT=$4 -DBN=$5 \
    -DCAUSAL=$3 -DVEC_GLOBAL=1 -DLDM_ADDR=1 -DASYNC=1 -DALIBI=1 -DALIBI_BIAS=8.0f -DALIBI_RAW=1
done
# decode_tc with its softcap in MUFU operations (-DCLATTN_NV_SOFTCAP=1), f16 and bf16
for dt in 1 2; do
  compile "decode_tc_softcap_t${dt}" nv_mma.cl decode.cl -- -DCLATTN_DTYPE=$dt -DD=128 -DKT=64 -DWG=32 -DQR=4 \
    -DCAUSAL=0 -DPAGED=0 -DRAGGED=0 -DVEC8=1 -DALIGN16=1 -DTC=1 -DBN=16 -DNS=3 -DLDM_ADDR=1 -DMW=128 \
    -DSOFTCAP=1 -DSOFTCAP2=43.2809f -DCLATTN_NV_SOFTCAP=1 -DCLATTN_SOFT_HALF=$((dt == 1))
done
# flash_tf32: the same kernel on f32 (3xTF32 from tf32.cl), head dims to 128, unit and other strides
for d in 40 64 128; do for c in 0 1; do
  compile "flash_tf32_d${d}_c${c}" nv_mma.cl tf32.cl flash_tc.cl -- -DCLATTN_DTYPE=0 -DTF32=1 -DD=$d -DWARPS=8 -DMT=1 \
    -DBN=32 -DCAUSAL=$c -DVEC_GLOBAL=$((d != 40)) -DLDM_ADDR=1 -DASYNC=$((d != 40))
done; done
lin="linear_common.cl tf32.cl linear_feat.cl linear_state.cl linear_scan.cl"
for map in 0 2; do for causal in 0 1; do
  out=linear_apply.cl; [ $causal = 1 ] && out=linear_causal.cl
  f=64; [ $map = 2 ] && f=256
  compile "linear_tc_m${map}_c${causal}" $lin $out -- -DCLATTN_DTYPE=0 -DD=64 -DF=$f -DMAP=$map -DCAUSAL=$causal \
    -DVEC=1 -DOVEC=1 -DBD=64 -DBKS=16 -DTC=1 -DSTW=$((f / 16)) -DSTM=1 -DTAW=4 -DTAM=1 -DBQ=64 -DSPRE=1 -DZLOC=1
done; done
# decode_warp: the warp-stream decode (shuffles in inline PTX), f32 and bf16 (clang's header
# here lacks vload_half), paged, causal, strided
# (f16 with the software Q loads: its K/V lanes take the PTX conversion), 16-byte lanes (ALIGN16), quantized K/V,
# softcap and ALiBi
for dt in 0 1 2; do for d in 8 64 128 256; do
  [ $dt = 1 ] && [ $d = 8 ] && continue # f16 without VEC8 needs vload_half
  compile "decode_warp_t${dt}_d${d}" decode.cl -- -DCLATTN_DTYPE=$dt -DD=$d -DKT=64 -DWG=128 -DQR=4 \
    -DCAUSAL=$((d % 3)) -DPAGED=$((dt == 2)) -DPAGE=16 -DRAGGED=0 -DVEC8=$((d != 8)) -DALIGN16=$((d != 8)) \
    -DWARP=1 -DUNROLL=4 -DCLATTN_NV_SHFL=1 -DKVQ=$(((d / 64) % 4)) -DKVS=$((d % 4)) -DCLATTN_SOFT_HALF=$((dt == 1)) \
    -DSOFTCAP=$((d == 64)) -DSOFTCAP2=28.8539f -DALIBI=$((d >= 128)) -DALIBI_BIAS=8.0f
done; done
# flash_wgmma: Hopper wgmma placeholders (-DMINCTAS=1: the register cap of the work-group size, as
# NVIDIA's compiler derives from reqd_work_group_size; clang emits no .reqntid). clang emits PTX 7.5 for sm_80; the
# text is relabelled 8.0 / sm_90 (what NVIDIA's compiler emits), patched by
# the library's patcher and, with ptxas, assembled for sm_90a with the
# OpenCL built-ins stubbed (opaque values, so nothing folds away): the
# placeholders' operands, the patched syntax and ptxas's wgmma diagnostics
# (serialised MMAs are a failure) are checked without a GPU.
wgmma_check() { # NAME
  local name=$1
  [ -n "$patcher" ] || return 0
  sed -e 's/^\.version 7\.5/.version 8.0/' -e 's/^\.target sm_80/.target sm_90/' \
    "$tmp/$name.ptx" >"$tmp/$name.90.ptx"
  if ! "$patcher" --patch "$tmp/$name.90.ptx" "$tmp/$name.90a.ptx" >/dev/null 2>"$tmp/$name.perr"; then
    echo "FAIL $name (patch): $(cat "$tmp/$name.perr")"; fails=$((fails + 1)); return
  fi
  command -v ptxas >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1 || return 0
  python3 - "$tmp/$name.90a.ptx" "$tmp/$name.stub.ptx" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
def body(m):
    ret, name = m.group(1), m.group(2)
    if ret:
        src = "%clock64" if ret == "b64" else "%clock"
        b = ("{\n\t.reg .%s %%clattn_stub;\n\tmov.u%s %%clattn_stub, %s;\n"
             "\tst.param.%s [func_retval0+0], %%clattn_stub;\n\tret;\n}") % (ret, ret[1:], src, ret)
    elif "barrier" in name:
        b = "{\n\tbar.sync 0;\n\tret;\n}"
    else:
        b = "{\n\tret;\n}"
    return m.group(0)[:-1] + b
s = re.sub(r"\.func\s+(?:\(\.param \.(b32|b64) func_retval0\)\s+)?(\w+)\s*\([^)]*\)\s*;", body, s)
open(sys.argv[2], "w").write(s)
PY
  local spill ok=1
  ptxas -arch=sm_90a -v "$tmp/$name.stub.ptx" -o "$tmp/$name.cubin" >"$tmp/$name.pt" 2>&1 || ok=0
  spill=$(max_spill "$tmp/$name.pt")
  if [ $ok = 0 ] || grep -qiE "error|serializ" "$tmp/$name.pt" || [ "${spill:-0}" -gt 64 ]; then
    echo "FAIL $name (ptxas sm_90a):"; grep -iE "error|serializ|warn|[1-9][0-9]* bytes spill" "$tmp/$name.pt" | head -10
    fails=$((fails + 1)); return
  fi
  # with nvdisasm, the overlapped schedule (ST=3) is checked in the SASS: in the loop, the softmax's
  # MUFU.EX2 lie between WARPGROUP.DEPBAR.LE gsb0,1 (S done) and the next DEPBAR.LE gsb0,0 (P·V done);
  # ptxas hoists a wait_group 0 that follows the softmax in the same block to right after the wait 1
  local sass=""
  if [[ $name == *st3* ]] && command -v nvdisasm >/dev/null 2>&1; then
    local ex2
    ex2=$(nvdisasm -c "$tmp/$name.cubin" 2>/dev/null | awk '/WARPGROUP.DEPBAR.LE gsb0, 0x1/ {on = 1; n = 0; next}
      on && /MUFU.EX2/ {n++} on && /WARPGROUP.DEPBAR.LE gsb0, 0x0/ {print n; exit}')
    if [ "${ex2:-0}" -lt 8 ]; then
      echo "FAIL $name (SASS): ${ex2:-no} MUFU.EX2 between wait_group 1 and wait_group 0: the softmax does not overlap P·V"
      fails=$((fails + 1)); return
    fi
    sass=", SASS: $ex2 MUFU.EX2 under P·V"
  fi
  echo "ok   $name (sm_90a: $(grep -o 'Used [0-9]* registers' "$tmp/$name.pt" | tail -1)${spill:+, spills $spill B}$sass)"
}
for dt in 1 2; do for d in 40 64 128 192; do for c in 0 1; do # (d = 256: refused by the legality check, 216 fragment registers)
  wgs=2; bn=64; st=2; [ $d = 128 ] && bn=32; [ $d = 192 ] && { wgs=1; bn=32; st=1; }
  n="flash_wgmma_t${dt}_d${d}_c${c}"
  compile "$n" nv_mma.cl wgmma.cl flash_wgmma.cl -- -DCLATTN_DTYPE=$dt -DD=$d -DWGS=$wgs -DBN=$bn -DCAUSAL=$c \
    -DVEC_GLOBAL=$((d % 8 == 0 && c == 0)) -DST=$st -DMINCTAS=1 && wgmma_check "$n"
done; done; done
# without the ping-pong, and with the register cap for two work-groups per SM (minctas)
# (at d = 64: at d = 128 the 128 registers of two work-groups an SM make ptxas serialise the MMAs, C7512,
# the cause of the 0.90x measured in bench/RESULTS.md §24)
compile flash_wgmma_pp0_mc2 nv_mma.cl wgmma.cl flash_wgmma.cl -- -DCLATTN_DTYPE=2 -DD=64 -DWGS=2 -DBN=64 \
  -DCAUSAL=1 -DVEC_GLOBAL=1 -DST=2 -DPP=0 -DMINCTAS=2 && wgmma_check flash_wgmma_pp0_mc2
# three warpgroups taking turns
for d in 64 128; do
  compile flash_wgmma_wgs3_d$d nv_mma.cl wgmma.cl flash_wgmma.cl -- -DCLATTN_DTYPE=1 -DD=$d -DWGS=3 \
    -DBN=$((d == 64 ? 64 : 32)) -DCAUSAL=$((d == 64)) -DVEC_GLOBAL=1 -DST=2 -DMINCTAS=1 && wgmma_check flash_wgmma_wgs3_d$d
done
# the overlapped schedule (ST=3: S of the next tile issued with P·V of this one, wait_group 1): two
# and three warpgroups, with and without the ping-pong; ptxas must not serialise the MMAs
for x in "1 128 3 32 0 1" "2 128 3 32 1 1" "1 64 2 64 1 1" "2 64 2 64 0 0" "1 96 2 32 0 1"; do
  set -- $x
  n="flash_wgmma_st3_t$1_d$2_w$3_c$5_pp$6"
  compile "$n" nv_mma.cl wgmma.cl flash_wgmma.cl -- -DCLATTN_DTYPE=$1 -DD=$2 -DWGS=$3 -DBN=$4 -DCAUSAL=$5 \
    -DVEC_GLOBAL=1 -DST=3 -DPP=$6 -DMINCTAS=1 && wgmma_check "$n"
done
# the loader warpgroup (-DLDW=1: 128 more work-items issue the copies, in a loop of their own): two and
# one computing warpgroups, d = 128 and 64, with lazy rescaling; no spill, no serialised MMA, the softmax under P·V
for x in "2 128 2 32 1 0" "1 128 1 32 0 1" "2 64 2 64 1 0"; do
  set -- $x
  n="flash_wgmma_st3_ldw_t$1_d$2_w$3_c$5_lazy$6"
  compile "$n" nv_mma.cl wgmma.cl flash_wgmma.cl -- -DCLATTN_DTYPE=$1 -DD=$2 -DWGS=$3 -DBN=$4 -DCAUSAL=$5 \
    -DVEC_GLOBAL=1 -DST=3 -DLDW=1 -DCLATTN_LAZY_RESCALE=$6 -DMINCTAS=1 && wgmma_check "$n"
done
# softcap and ALiBi (d = 128 f16 causal ALiBi and softcap, bf16 non-causal ALiBi alone, d = 64 bf16 and d = 128 f16
# softcap alone, f16 causal ALiBi alone; ALIBI_RAW=1: a positive scale, ALiBi alone as the S accumulators' start)
for x in "1 128 1 1 1 1" "2 128 0 0 1 1" "2 64 1 1 0 1" "1 128 0 1 0 1" "1 128 1 0 1 0" "1 64 1 0 1 1"; do
  set -- $x
  n="flash_wgmma_st3_mods_t$1_d$2_c$3_cap$4_alibi$5_raw$6"
  compile "$n" nv_mma.cl wgmma.cl flash_wgmma.cl -- -DCLATTN_DTYPE=$1 -DD=$2 -DWGS=3 -DBN=$((128 / $2 * 32)) -DCAUSAL=$3 \
    -DVEC_GLOBAL=1 -DST=3 -DSOFTCAP=$4 -DSOFTCAP2=43.2809f -DALIBI=$5 -DALIBI_BIAS=8.0f -DALIBI_RAW=$6 -DMINCTAS=1 &&
    wgmma_check "$n"
done
# the overlapped schedule with eager rescaling (-DWG_LAZY=0; lazy is its default): no serialised MMA
compile flash_wgmma_st3_eager nv_mma.cl wgmma.cl flash_wgmma.cl -- -DCLATTN_DTYPE=2 -DD=128 -DWGS=3 -DBN=32 \
  -DCAUSAL=1 -DVEC_GLOBAL=1 -DST=3 -DMINCTAS=1 -DWG_LAZY=0 && wgmma_check flash_wgmma_st3_eager
# -DWIDE=1: P·V as one m64nDk16 (D = 64, 128: 38 and 70 operands); the default in st=3, an experiment in st=1/2
for x in "1 128 3 32 2 1" "2 128 3 32 3 1" "1 64 2 64 2 0" "2 64 3 64 3 1" "1 96 2 32 2 0"; do
  set -- $x
  n="flash_wgmma_wide_t$1_d$2_w$3_st$5_c$6"
  compile "$n" nv_mma.cl wgmma.cl flash_wgmma.cl -- -DCLATTN_DTYPE=$1 -DD=$2 -DWGS=$3 -DBN=$4 -DCAUSAL=$6 \
    -DVEC_GLOBAL=1 -DST=$5 -DWIDE=1 -DMINCTAS=1 && wgmma_check "$n"
done
# flash_bwd_tc: the tensor-core backward (after flash_bwd.cl -DTC=1), the
# configurations its fallback picks (d <= 64, d <= 128) and the extremes of
# its parameters; assembled with the built-ins stubbed, a spill or too much
# shared memory is a failure (stub_check, which needs ptxas and python3).
stub_check() { # NAME
  local name=$1
  command -v ptxas >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1 || return 0
  sed -e 's/^\.version 7\.5/.version 8.0/' -e 's/^\.target sm_80/.target sm_90/' \
    "$tmp/$name.ptx" >"$tmp/$name.90.ptx"
  sed -n '/^  python3 - "\$tmp\/\$name.90a.ptx"/,/^PY$/p' "$0" | sed '1d;$d' >"$tmp/stub.py"
  python3 "$tmp/stub.py" "$tmp/$name.90.ptx" "$tmp/$name.stub.ptx"
  # spills of more than 64 bytes fail; a few bytes (clang's PTX, not NVIDIA's) are reported
  local spill ok=1
  ptxas -arch=sm_90 -v "$tmp/$name.stub.ptx" -o /dev/null >"$tmp/$name.pt" 2>&1 || ok=0
  spill=$(max_spill "$tmp/$name.pt")
  if [ $ok = 0 ] || grep -qi "error" "$tmp/$name.pt" || [ "${spill:-0}" -gt 64 ]; then
    echo "FAIL $name (ptxas sm_90):"; grep -iE "error|[1-9][0-9]* bytes spill" "$tmp/$name.pt" | head -6
    fails=$((fails + 1)); return
  fi
  echo "ok   $name (sm_90: $(grep -o 'Used [0-9]* registers' "$tmp/$name.pt" | tr '\n' ' ')${spill:+, spills $spill B})"
}
# the softmax with lazy rescaling (cl/nv_mma.cl, off by default), f16 and bf16
for dt in 1 2; do
  compile "flash_tc_lazy_t${dt}" nv_mma.cl flash_tc.cl -- -DCLATTN_DTYPE=$dt -DD=128 -DWARPS=4 -DMT=2 -DBN=32 \
    -DCAUSAL=1 -DVEC_GLOBAL=1 -DLDM_ADDR=1 -DASYNC=1 -DQLOC=1 -DCLATTN_LAZY_RESCALE=1 &&
    stub_check "flash_tc_lazy_t${dt}"
done
# flash_tcq: Q in local memory (-DQLOC=1), swizzled tiles, its default tilings (no spill, assembled
# with the built-ins stubbed); bf16 softcap
# alone (the fixed-maximum softmax below and above C = 48, the running maximum above 80)
for cfg in 1:60:1 2:64:0 1:120:1 2:128:0 1:128:1 2:256:1; do
  IFS=: read -r dt d c <<<"$cfg"
  mt=2; bn=32; [ $d = 256 ] && { mt=1; bn=16; }
  compile "flash_tcq_t${dt}_d${d}_c${c}" nv_mma.cl flash_tc.cl -- -DCLATTN_DTYPE=$dt -DD=$d -DWARPS=4 -DMT=$mt \
    -DBN=$bn -DCAUSAL=$c -DVEC_GLOBAL=$((d % 8 == 0)) -DLDM_ADDR=1 -DASYNC=$((d % 8 == 0)) -DQLOC=1 &&
    stub_check "flash_tcq_t${dt}_d${d}_c${c}"
done
# f16 softcap alone (paired reciprocals, min.NaN), flash_tc and flash_wgmma
compile flash_tc_softcap_pair nv_mma.cl flash_tc.cl -- -DCLATTN_DTYPE=1 -DD=64 -DWARPS=4 -DMT=2 -DBN=64 \
  -DCAUSAL=0 -DVEC_GLOBAL=1 -DLDM_ADDR=1 -DASYNC=1 -DSOFTCAP=1 -DSOFTCAP2=43.2809f &&
  stub_check flash_tc_softcap_pair
compile flash_wgmma_softcap_pair nv_mma.cl wgmma.cl flash_wgmma.cl -- -DCLATTN_DTYPE=1 -DD=128 -DWGS=3 -DBN=32 \
  -DCAUSAL=0 -DVEC_GLOBAL=1 -DST=3 -DSOFTCAP=1 -DSOFTCAP2=43.2809f -DMINCTAS=1 &&
  wgmma_check flash_wgmma_softcap_pair
for cap in 14.4270f 72.1348f 86.5617f; do
  compile "flash_tc_softcap_${cap%f}" nv_mma.cl flash_tc.cl -- -DCLATTN_DTYPE=2 -DD=64 -DWARPS=4 -DMT=2 -DBN=64 \
    -DCAUSAL=1 -DVEC_GLOBAL=1 -DLDM_ADDR=1 -DASYNC=1 -DSOFTCAP=1 -DSOFTCAP2=$cap &&
    stub_check "flash_tc_softcap_${cap%f}"
done
for d in 8 40 64 80 128; do for c in 0 1 2; do
  dt=$((1 + (c + d / 8) % 2)) # f16 and bf16 in turn
  v=$((d % 8 == 0)); cfg="-DKW=4 -DKMT=1 -DQM=64 -DKST=1 -DQW=4 -DQMT=2 -DKN=32 -DQST=$((1 + v))"
  [ $d -gt 64 ] && cfg="-DKW=4 -DQM=64 -DKST=1 -DQW=4 -DKN=64 -DQST=$((1 + v))"
  [ $d -gt 80 ] && cfg="-DKW=2 -DQM=32 -DKST=1 -DQW=4 -DKN=32 -DQST=$((1 + v))"
  n="flash_bwd_tc_t${dt}_d${d}_c${c}"
  compile "$n" flash_bwd.cl nv_mma.cl flash_bwd_tc.cl -- -DCLATTN_DTYPE=$dt -DCLATTN_SOFT_HALF=$((dt == 1)) \
    -DD=$d -DCAUSAL=$c -DTC=1 -DVEC_GLOBAL=$v -DASYNC=$v -DLDM_ADDR=1 -DRAGGED=$((c == 2)) $cfg && stub_check "$n"
done; done
for cfg in "1 16 1 1 16 1 1 1" "8 16 2 8 64 1 1 1" "1 16 2 1 32 2 1 1" "2 16 1 1 16 1 2 2"; do
  set -- $cfg
  n="flash_bwd_tc_kw$1_qm$2_kst$3_qw$4_kn$5_qst$6_kmt$7_qmt$8"
  compile "$n" flash_bwd.cl nv_mma.cl flash_bwd_tc.cl -- -DCLATTN_DTYPE=2 -DD=64 -DCAUSAL=1 -DTC=1 \
    -DVEC_GLOBAL=1 -DASYNC=1 -DLDM_ADDR=1 -DKW=$1 -DQM=$2 -DKST=$3 -DQW=$4 -DKN=$5 -DQST=$6 -DKMT=$7 -DQMT=$8 && stub_check "$n"
done
# with the modifiers (softcap, ALiBi, a bf16 bias, a user mask_mod) at the configuration the
# fallback picks for them (one dQ m-tile: the modifiers' registers)
for c in 0 1; do
  n="flash_bwd_tc_mods_c$c"
  compile "$n" ../tests/mask_mod_window.cl flash_bwd.cl nv_mma.cl flash_bwd_tc.cl -- -DCLATTN_DTYPE=2 -DD=64 \
    -DCAUSAL=$c -DTC=1 -DVEC_GLOBAL=1 -DASYNC=1 -DLDM_ADDR=1 -DKW=4 -DQM=64 -DKST=1 -DQW=4 -DQMT=1 -DKN=64 -DQST=2 \
    -DSOFTCAP=1 -DSOFTCAP2=28.8539f -DALIBI=1 -DALIBI_BIAS=8.0f -DBIAS=1 -DBIAS_T=2 -DUSER_MASK=1 && stub_check "$n"
done
# decode_tc: the tensor-core decode (nv_mma.cl before decode.cl -DTC=1): f16 and bf16, every
# head dim it takes, both step sizes and stage counts, contiguous (cp.async and element loads),
# paged walked page by page (PAGE % BN == 0) and key by key, ragged, causal, 1, 2 or 4 warps
for cfg in "1 16 16 2 0 0 1 1 1" "2 32 16 3 1 16 1 0 2" "1 64 32 4 2 12 1 1 1" "2 128 16 2 1 256 0 1 2" \
    "1 128 32 2 0 0 1 2 1" "2 64 16 4 1 1 1 0 2" "1 64 16 3 0 0 0 0 1"; do
  set -- $cfg
  n="decode_tc_t$1_d$2_bn$3_ns$4_c$5_p$6_a$7_r$8_w$9"
  compile "$n" nv_mma.cl decode.cl -- -DCLATTN_DTYPE=$1 -DCLATTN_SOFT_HALF=$(($1 == 1)) -DD=$2 -DBN=$3 -DNS=$4 \
    -DCAUSAL=$5 -DPAGED=$(($6 > 0)) -DPAGE=$(($6 > 0 ? $6 : 1)) -DALIGN16=$7 -DVEC8=$7 -DRAGGED=$(($8 == 1)) \
    -DKT=64 -DWG=$((32 * $9)) -DTW=$9 -DQR=16 -DTC=1 -DLDM_ADDR=1 && stub_check "$n"
done
# decode_tc with its merge fused (-DFUSE=1: the last work-group of a unit merges its rows, merge_unit):
# 16-bit and int8 K/V, paged and ragged, 1 or 2 warps, head dim 16 (4 chunks a row), sinks
for cfg in "2 128 16 3 0 0 1 0 1 0 0" "1 64 16 2 1 16 1 1 2 0 0" "2 16 16 2 0 0 1 0 1 0 1" \
    "2 128 16 3 0 256 1 0 1 1 0" "1 32 32 2 1 0 0 2 2 1 1"; do
  set -- $cfg
  n="decode_tc_fuse_t$1_d$2_bn$3_ns$4_c$5_p$6_a$7_r$8_w$9_q${10}_s${11}"
  compile "$n" nv_mma.cl decode.cl -- -DCLATTN_DTYPE=$1 -DCLATTN_SOFT_HALF=$(($1 == 1)) -DD=$2 -DBN=$3 -DNS=$4 \
    -DCAUSAL=$5 -DPAGED=$(($6 > 0)) -DPAGE=$(($6 > 0 ? $6 : 1)) -DALIGN16=$7 -DVEC8=$7 -DRAGGED=$(($8 == 1)) \
    -DKT=64 -DWG=$((32 * $9)) -DTW=$9 -DMW=128 -DFUSE=1 -DQR=16 -DTC=1 -DLDM_ADDR=1 \
    $([ ${10} = 1 ] && echo -DKVQ=1 -DKVS=0) -DSINKS=${11} && stub_check "$n"
done
# decode_tc over int8 K/V: token (0), tensor (1) and head (2) scales
for cfg in "1 32 32 3 1 16 1 0 1" "2 64 16 2 0 0 1 1 2" "2 128 16 3 2 256 1 2 1" "1 128 32 2 0 0 0 0 2" \
    "2 128 16 2 0 0 1 0 4" "2 128 64 2 0 0 1 0 1"; do
  set -- $cfg
  n="decode_tc_i8_t$1_d$2_bn$3_ns$4_c$5_p$6_a$7_s$8_w$9"
  compile "$n" nv_mma.cl decode.cl -- -DCLATTN_DTYPE=$1 -DCLATTN_SOFT_HALF=$(($1 == 1)) -DD=$2 -DBN=$3 -DNS=$4 \
    -DCAUSAL=$5 -DPAGED=$(($6 > 0)) -DPAGE=$(($6 > 0 ? $6 : 1)) -DALIGN16=$7 -DVEC8=$7 -DRAGGED=0 \
    -DKVQ=1 -DKVS=$8 -DKT=64 -DWG=$((32 * $9)) -DTW=$9 -DQR=16 -DTC=1 -DLDM_ADDR=1 && stub_check "$n"
done
echo "$runs compiled, $fails failed"
[ $fails -eq 0 ]
