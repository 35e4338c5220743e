#!/usr/bin/env bash
# Side by side in alternating pairs, for machines whose speed drifts from minute to minute (a shared host: the same
# PyTorch step measured 25 and 37 images/s twenty minutes apart). Each round runs one group on both sides, quarc
# first in odd rounds and PyTorch first in even ones; bench/pairs.py prints every round's ratio and their median.
# Never part of CI.
#
#   bench/pairs.sh step 4                 # 4 rounds of the step group, REPS timed runs per side and round
#   OUT=/tmp/gemm.jsonl bench/pairs.sh gemm 6
#   FILTER=smallcnn REPS=40 bench/pairs.sh conv 4   # only the workloads whose name contains FILTER
#   TORCH_ALLOCATOR=both bench/pairs.sh step 4       # PyTorch also under quarc's allocator settings (side torch+retained)
#
#   GLIBC_TUNABLES=…:glibc.malloc.hugetlb=1 bench/pairs.sh step 4   # both sides under one setting (quarc leaves a
#                                                                  # GLIBC_TUNABLES with malloc tunables as it is)
#
# quarc's binary keeps freed memory in the heap (`retain_freed_memory`: glibc's trim off, no block mapped on its own); PyTorch runs on
# glibc's defaults unless TORCH_ALLOCATOR is `retained` (only under the same settings) or `both` (each round runs it
# both ways).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: bench/pairs.sh GROUP ROUNDS"; exit 1; }
GROUP=$1 ROUNDS=$2
REPS="${REPS:-5}" THREADS="${THREADS:-2}"
PY=bench/.venv/bin/python
[ -x "$PY" ] || { echo "bench/.venv missing: run bench/setup_venv.sh first"; exit 1; }
export RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
cargo build --release --example bench_side_by_side
BIN=target/release/examples/bench_side_by_side
mkdir -p bench/results
OUT="${OUT:-bench/results/pairs-$GROUP-$(date -u +%Y%m%dT%H%M%SZ).jsonl}"
CPU="$(lscpu | sed -n 's/^Model name: *//p' | head -1), family $(lscpu | sed -n 's/^CPU family: *//p' | head -1) model $(lscpu | sed -n 's/^Model: *//p' | head -1)"
FLAGS=$(grep -o -w -E 'avx2|avx512f|avx512_vnni|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')
echo "{\"side\":\"machine\",\"cpu\":\"$CPU ($FLAGS)\",\"isa_cap\":\"${QUARC_CPU_ISA:-none}\",\"torch_allocator\":\"${TORCH_ALLOCATOR:-default}\",\"glibc_tunables\":\"${GLIBC_TUNABLES:-}\",\"threads\":$THREADS,\"date\":\"$(date -u +%FT%TZ)\",\"commit\":\"$(git rev-parse --short HEAD)\"}" >> "$OUT"
SELECT=()
[ -n "${FILTER:-}" ] && SELECT=(--filter "$FILTER")
quarc() { "$BIN" --group "$GROUP" --reps "$REPS" --out "$OUT" "${SELECT[@]}"; }
torch_default() { "$PY" bench/torch_side_by_side.py --group "$GROUP" --reps "$REPS" --out "$OUT" --threads "$THREADS" "${SELECT[@]}"; }
RETAINED="glibc.malloc.trim_threshold=2147483647:glibc.malloc.mmap_max=0"
torch_retained() { GLIBC_TUNABLES="$RETAINED" "$PY" bench/torch_side_by_side.py --group "$GROUP" --reps "$REPS" \
  --out "$OUT" --threads "$THREADS" --label +retained "${SELECT[@]}"; }
case "${TORCH_ALLOCATOR:-default}" in
  default) torch() { torch_default; } ;;
  retained) torch() { torch_retained; } ;;
  both) torch() { if ((r % 2)); then torch_default; torch_retained; else torch_retained; torch_default; fi; } ;;
  *) echo "TORCH_ALLOCATOR is default, retained or both"; exit 1 ;;
esac
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then quarc; torch; else torch; quarc; fi
done
python3 bench/pairs.py "$OUT"
