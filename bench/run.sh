#!/usr/bin/env bash
# Runs quarc's and PyTorch's halves of the side-by-side benchmark interleaved (group by group, same machine, same
# minutes, 2 threads each) and prints the ratio table. Needs bench/.venv (bench/setup_venv.sh). Never part of CI.
#
#   bench/run.sh                     # every group, 5 timed runs each
#   BENCH_GROUPS="conv step" REPS=7 bench/run.sh
#   ISA=avx2 bench/run.sh            # both sides held to AVX2 on an AVX-512 machine (see below)
#
# ISA=avx2 measures the AVX2 code paths on a machine that has AVX-512: quarc's kernels through
# QUARC_CPU_ISA=avx2, the gemm crate through a copy of gemm-common whose feature check honours the
# same variable (built into target/isa-avx2, never part of the workspace), PyTorch through
# ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA and MKL_ENABLE_INSTRUCTIONS. It is the AVX2 code on this
# core, not an AVX2-only CPU: cache sizes, clocks and the core's 256-bit throughput stay this machine's.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS="${REPS:-5}"
THREADS="${THREADS:-2}"
GROUPS_TO_RUN="${BENCH_GROUPS:-gemm conv norm fake_quant step scoring selection memory}"
PY=bench/.venv/bin/python
[ -x "$PY" ] || { echo "bench/.venv missing: run bench/setup_venv.sh first"; exit 1; }
export RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
if [ "${ISA:-}" = avx2 ]; then
  export QUARC_CPU_ISA=avx2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
  SRC=$(dirname "$(cargo metadata --format-version 1 | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "gemm-common"))')")
  PATCHED=target/isa-avx2/gemm-common
  rm -rf "$PATCHED" && mkdir -p target/isa-avx2 && cp -r "$SRC" "$PATCHED" && chmod -R u+w "$PATCHED"
  python3 - "$PATCHED/src/lib.rs" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
old = "::std::arch::is_x86_feature_detected!($tt)\n"
assert old in s, "gemm-common's feature check moved: update bench/run.sh"
s = s.replace(old, "(::std::arch::is_x86_feature_detected!($tt) && !($tt == \"avx512f\" && ::std::env::var_os(\"QUARC_CPU_ISA\").is_some_and(|v| v == \"avx2\")))\n", 1)
open(p, "w").write(s)
PY
  # the patch rewrites Cargo.lock's gemm-common entry: keep the workspace's lock file as it was
  cp Cargo.lock target/isa-avx2/Cargo.lock.orig
  trap 'cp target/isa-avx2/Cargo.lock.orig Cargo.lock' EXIT
  CARGO_TARGET_DIR=target/isa-avx2 cargo build --release --example bench_side_by_side \
    --config "patch.crates-io.gemm-common.path=\"$PATCHED\""
  BIN=target/isa-avx2/release/examples/bench_side_by_side
else
  cargo build --release --example bench_side_by_side
  BIN=target/release/examples/bench_side_by_side
fi
mkdir -p bench/results
OUT="${OUT:-bench/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl}"
CPU="$(lscpu | sed -n 's/^Model name: *//p' | head -1), family $(lscpu | sed -n 's/^CPU family: *//p' | head -1) model $(lscpu | sed -n 's/^Model: *//p' | head -1)"
FLAGS=$(grep -o -w -E 'avx2|avx512f|avx512_vnni|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')
echo "{\"side\":\"machine\",\"cpu\":\"$CPU ($FLAGS)\",\"isa_cap\":\"${ISA:-none}\",\"threads\":$THREADS,\"date\":\"$(date -u +%FT%TZ)\",\"commit\":\"$(git rev-parse --short HEAD)\"}" >> "$OUT"
for g in $GROUPS_TO_RUN; do
  if [ "$g" = memory ]; then
    for m in resnet18-fp32 resnet18-w4a4; do
      "$BIN" --group "memory-$m" --out "$OUT"
      "$PY" bench/torch_side_by_side.py --group "memory-$m" --out "$OUT" --threads "$THREADS"
    done
  else
    "$BIN" --group "$g" --reps "$REPS" --out "$OUT"
    "$PY" bench/torch_side_by_side.py --group "$g" --reps "$REPS" --out "$OUT" --threads "$THREADS"
  fi
done
echo "results: $OUT"
python3 bench/report.py "$OUT"
