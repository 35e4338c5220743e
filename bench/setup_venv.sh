#!/usr/bin/env bash
# Creates bench/.venv with PyTorch (CPU use only) for the side-by-side benchmarks. Never part of CI.
#
# The package index reachable from these machines serves only the CUDA build of torch for Linux x86_64, and
# torch's libraries link the CUDA runtime even on CPU, so: torch without dependencies, its small pure-Python
# dependencies, and exactly the NVIDIA runtime wheels its METADATA pins (triton and cuda-bindings left out; pip's
# resolver then prints an "ERROR" about those two and exits 0 — expected). See ../shared/docs/candle-notes.md.
set -euo pipefail
cd "$(dirname "$0")"
TORCH_VERSION="${TORCH_VERSION:-2.15.0}"
PY="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "bench/.venv already has torch $(.venv/bin/python -c 'import torch; print(torch.__version__)')"
  exit 0
fi
"$PY" -m venv .venv
PIP=".venv/bin/pip"
"$PIP" install -q --upgrade pip
"$PIP" install -q --no-deps "torch==${TORCH_VERSION}"
"$PIP" install -q filelock typing-extensions "setuptools>=77.0.3" sympy mpmath networkx jinja2 MarkupSafe fsspec numpy
META=$(ls -d .venv/lib/python3*/site-packages/torch-"${TORCH_VERSION}"*.dist-info)/METADATA
# Every Linux-only Requires-Dist of torch (the CUDA runtime wheels: `cuda-toolkit[...]` and `nvidia-*`) except
# triton and cuda-bindings, markers stripped:
mapfile -t CUDA_DEPS < <(grep '^Requires-Dist: .*platform_system == "Linux"' "$META" \
  | grep -v -E 'Requires-Dist: (triton|cuda-bindings)' | sed -E 's/^Requires-Dist: ([^;]+);.*/\1/' | tr -d ' ')
echo "installing the CUDA runtime wheels torch links against: ${CUDA_DEPS[*]}"
"$PIP" install -q "${CUDA_DEPS[@]}" || true
.venv/bin/python - <<'PY'
import torch
print("torch", torch.__version__, "cpu capability", torch.backends.cpu.get_cpu_capability(),
      "mkldnn", torch.backends.mkldnn.is_available())
PY
