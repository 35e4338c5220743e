#!/usr/bin/env bash
# A/B of quarc builds: runs each variant's bench_side_by_side binary on the same workloads, alternating, ROUNDS
# times (7 timed runs each), and prints the median of the round medians and, for every variant after the first,
# the median of its round-by-round ratios to the first. Never part of CI.
#
#   cp target/release/examples/bench_side_by_side /tmp/bench_before   # build, copy, change, build again
#   bench/ab.sh step/ step 3 /tmp/bench_before target/release/examples/bench_side_by_side
#   bench/ab.sh dw conv 3 /tmp/bench_after /tmp/bench_after:CANDLE_NUM_THREADS=1   # BINARY:ENV=VALUE variants
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: bench/ab.sh FILTER GROUP ROUNDS BINARY[:ENV=VALUE]..."; exit 1; }
FILTER=$1 GROUP=$2 ROUNDS=$3
shift 3
export RAYON_NUM_THREADS="${THREADS:-2}"
RAW=$(mktemp)
trap 'rm -f "$RAW" "$RAW.jsonl"' EXIT
# Odd rounds run the variants in the given order, even rounds in reverse: the same binary twice
# measured ~3 % faster in the first slot of a round (2 threads, ResNet-18 steps, session 17).
VARIANTS=("$@")
REVERSED=()
for ((i = ${#VARIANTS[@]} - 1; i >= 0; i--)); do REVERSED+=("${VARIANTS[i]}"); done
for round in $(seq "$ROUNDS"); do
  if ((round % 2)); then order=("${VARIANTS[@]}"); else order=("${REVERSED[@]}"); fi
  for v in "${order[@]}"; do
    bin=${v%%:*} env_set=QUARC_AB=1
    [[ $v == *:* ]] && env_set=${v#*:}
    env "$env_set" "$bin" --group "$GROUP" --filter "$FILTER" --reps 7 --out "$RAW.jsonl" 2>/dev/null |
      while read -r name value _; do echo "$v $name $value"; done >> "$RAW"
  done
done
python3 - "$RAW" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    variant, name, value = line.split()
    runs[(name, variant)].append(float(value))
first = {}
for (name, variant), xs in runs.items():
    first.setdefault(name, (variant, xs))
for (name, variant), xs in sorted(runs.items()):
    base_variant, base = first[name]
    # the ratio to the first variant round by round (same minutes), robust to the VM's slow spells
    paired = "" if variant == base_variant else \
        f"   paired ratio {statistics.median(x / b for x, b in zip(xs, base)):.3f}"
    print(f"{name:44s} {variant:40s} median {statistics.median(xs):9.2f}{paired}   rounds {' '.join(f'{x:.1f}' for x in xs)}")
PY
