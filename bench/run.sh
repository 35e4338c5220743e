#!/usr/bin/env bash
# Runs quarc's and PyTorch's halves of the side-by-side benchmark interleaved (group by group, same machine, same
# minutes, 2 threads each) and prints the ratio table. Needs bench/.venv (bench/setup_venv.sh). Never part of CI.
#
#   bench/run.sh                     # every group, 5 timed runs each
#   BENCH_GROUPS="conv step" REPS=7 bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPS="${REPS:-5}"
THREADS="${THREADS:-2}"
GROUPS_TO_RUN="${BENCH_GROUPS:-gemm conv fake_quant step scoring selection memory}"
PY=bench/.venv/bin/python
[ -x "$PY" ] || { echo "bench/.venv missing: run bench/setup_venv.sh first"; exit 1; }
export RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
cargo build --release --example bench_side_by_side
BIN=target/release/examples/bench_side_by_side
mkdir -p bench/results
OUT="${OUT:-bench/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl}"
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
FLAGS=$(grep -o -w -E 'avx2|avx512f|avx512_vnni|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')
echo "{\"side\":\"machine\",\"cpu\":\"$CPU ($FLAGS)\",\"threads\":$THREADS,\"date\":\"$(date -u +%FT%TZ)\",\"commit\":\"$(git rev-parse --short HEAD)\"}" >> "$OUT"
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
