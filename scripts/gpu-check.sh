#!/usr/bin/env bash
# The CUDA check, in two halves, for a GPU machine that has a driver, PyTorch with its CUDA libraries and no Rust:
#
#   scripts/gpu-check.sh build        # here, no GPU needed: builds the `cuda` test binary and examples,
#                                     # strips them and packs them into gpu-pack/quarc-cuda.tar.xz (≈ 30 MB)
#   scripts/gpu-check.sh run OUT      # on the GPU machine, in a copy of this repository with gpu-pack/ in it:
#                                     # GPU tests, quarc vs PyTorch side by side on that GPU, a short training run
#
# `run` writes to OUT: machine.txt (GPU, driver, CPU), tests.log (tests/cuda.rs with QUARC_REQUIRE_GPU=1, so a
# missing GPU fails instead of skipping), bench.jsonl (one JSON line per workload and side), bench.md (the ratio
# table of bench/report.py), train.log and train.json (a W2A2 run on the bundled Fashion-MNIST subset on the GPU).
# Each step has its own time limit and a failing step does not stop the others; the exit status is that of the tests.
#
# QUARC_CUDNN=1 at build time (with the toolchain made by `QUARC_CUDNN=1 scripts/cuda-toolchain.sh`) also packs a
# build with candle's `cudnn` feature (its convolutions through cuDNN) of the tests and the benchmark; `run` then runs those too and writes bench-cudnn.jsonl / bench-cudnn.md (quarc+cuDNN vs the same PyTorch).
#
# Environment: GPU_CHECK_REPS (timed runs per workload, default 5), GPU_CHECK_GROUPS (default "step scoring gemm
# fake_quant conv"), GPU_CHECK_EPOCHS (QAT epochs of the training run, default 4).
set -uo pipefail
cd "$(dirname "$0")/.."
PACK=gpu-pack
BINS=(tests/cuda examples/bench_side_by_side examples/train)

build() {
  set -e
  [ -f target/cuda-toolchain/env.sh ] || scripts/cuda-toolchain.sh
  # shellcheck disable=SC1091
  source target/cuda-toolchain/env.sh
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
  rm -rf "$PACK/stage" && mkdir -p "$PACK/stage/tests" "$PACK/stage/examples"
  if [ "${QUARC_CUDNN:-0}" = 1 ]; then
    stage_build cuda,candle-core/cudnn _cudnn bench_side_by_side
  fi
  stage_build cuda "" bench_side_by_side train
  strip "$PACK"/stage/tests/* "$PACK"/stage/examples/*
  ls -l "$PACK"/stage/tests "$PACK"/stage/examples
  tar -C "$PACK/stage" -cf - . | xz -6 -T0 > "$PACK/quarc-cuda.tar.xz"
  rm -rf "$PACK/stage"
  ls -l "$PACK/quarc-cuda.tar.xz"
}

# stage_build FEATURE SUFFIX EXAMPLE… : builds tests/cuda.rs and the examples with FEATURE into the stage folder.
stage_build() {
  local feature=$1 suffix=$2 t0=$SECONDS test_bin
  shift 2
  local args=()
  for e in "$@"; do args+=(--example "$e"); done
  cargo build --release --features "$feature" "${args[@]}" --test cuda
  test_bin=$(cargo build --release --features "$feature" --test cuda --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
  [ -x "$test_bin" ] || { echo "could not find the test binary" >&2; exit 1; }
  echo "== --features $feature built in $((SECONDS - t0)) s"
  cp "$test_bin" "$PACK/stage/tests/cuda$suffix"
  for e in "$@"; do cp "$CARGO_TARGET_DIR/release/examples/$e" "$PACK/stage/examples/$e$suffix"; done
}

# LD_LIBRARY_PATH with the driver's libcuda and PyTorch's CUDA wheels (cuBLAS, cuRAND, the runtime, NVRTC).
cuda_library_path() {
  local sp dirs
  sp=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null)
  dirs=$( { [ -n "$sp" ] && find "$sp/nvidia" -name 'lib*.so*' -printf '%h\n'; ls -d /usr/local/nvidia/lib64 2>/dev/null; } | sort -u | tr '\n' ':')
  echo "${dirs}${LD_LIBRARY_PATH:-}"
}

step() { # name limit_s command… ; logs the outcome, never stops the script
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@"
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/machine.txt"
  return $rc
}

run() {
  OUT=$(realpath -m "${1:?usage: scripts/gpu-check.sh run OUT}")
  mkdir -p "$OUT" /tmp/quarc-gpu
  tar -C /tmp/quarc-gpu -xJf "$PACK/quarc-cuda.tar.xz" || { echo "no $PACK/quarc-cuda.tar.xz: run 'build' first" >&2; exit 2; }
  export LD_LIBRARY_PATH; LD_LIBRARY_PATH=$(cuda_library_path)
  local bin=/tmp/quarc-gpu reps=${GPU_CHECK_REPS:-5}
  {
    date -u +%FT%TZ
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    lscpu | sed -n 's/^Model name: *//p' | head -1
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
  } > "$OUT/machine.txt" 2>&1
  cat "$OUT/machine.txt"

  export QUARC_REQUIRE_GPU=1
  step tests 150 "$bin/tests/cuda" --test-threads=1 --nocapture 2>&1 | tee "$OUT/tests.log"
  local tests_rc=${PIPESTATUS[0]}

  local gpu cpu
  gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
  cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
  echo "{\"side\":\"machine\",\"cpu\":\"GPU $gpu; host $cpu\",\"threads\":\"cuda\",\"date\":\"$(date -u +%FT%TZ)\",\"commit\":\"$(git rev-parse --short HEAD 2>/dev/null || echo '?')\"}" > "$OUT/bench.jsonl"
  for g in ${GPU_CHECK_GROUPS:-step scoring gemm fake_quant conv}; do
    step "quarc $g" 90 "$bin/examples/bench_side_by_side" --device cuda --group "$g" --reps "$reps" --out "$OUT/bench.jsonl"
    step "torch $g" 90 python3 bench/torch_side_by_side.py --device cuda --group "$g" --reps "$reps" --out "$OUT/bench.jsonl"
  done
  python3 bench/report.py "$OUT/bench.jsonl" | tee "$OUT/bench.md"

  if [ -x "$bin/examples/bench_side_by_side_cudnn" ]; then
    step "tests (cudnn build)" 120 "$bin/tests/cuda_cudnn" --test-threads=1 --nocapture 2>&1 | tee -a "$OUT/tests.log"
    tests_rc=$(( tests_rc | PIPESTATUS[0] ))
    head -1 "$OUT/bench.jsonl" > "$OUT/bench-cudnn.jsonl"
    for g in step scoring; do
      step "quarc+cudnn $g" 90 "$bin/examples/bench_side_by_side_cudnn" --device cuda --group "$g" --reps "$reps" --out "$OUT/bench-cudnn.jsonl"
    done
    grep '"side": "torch' "$OUT/bench.jsonl" >> "$OUT/bench-cudnn.jsonl"
    python3 bench/report.py "$OUT/bench-cudnn.jsonl" | tee "$OUT/bench-cudnn.md"
  fi

  step train 180 "$bin/examples/train" --device cuda --method acs --fraction 0.1 --epochs "${GPU_CHECK_EPOCHS:-4}" \
    --out /tmp/quarc-gpu/run 2> "$OUT/train.log" > "$OUT/train.json"
  tail -5 "$OUT/train.log"
  return "$tests_rc"
}

case "${1:-}" in
  build) build ;;
  run) run "${2:-}" ;;
  *) echo "usage: scripts/gpu-check.sh build | run OUT" >&2; exit 2 ;;
esac
