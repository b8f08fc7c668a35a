#!/usr/bin/env bash
# Hugging Face Optimum in its own venv (benchmarks/optimum/.venv), for export_optimum.py.
#
# Why a separate venv: optimum-onnx 0.1.0 (the ONNX half of Optimum 2.x) requires
# transformers<4.58 and optimum~=2.1.0, while the project runs transformers 5.x.
# What it installs (top-level pins below; the full resolved set goes to requirements.txt):
#   optimum 2.1.0 + optimum-onnx 0.1.0, transformers 4.57.6, torch 2.13.0+cpu (the CPU build:
#   ~750 MB instead of the ~5 GB CUDA build a plain `pip install torch` brings), and the same
#   onnx / onnxruntime versions as the project's constraints.txt, so both sides run one ONNX
#   Runtime. Nothing here downloads a model: everything works offline (HF_HUB_OFFLINE=1).
#
#   bash benchmarks/optimum/setup.sh            # PYTHON=python3.11 to choose the interpreter
#   TORCH_SPEC=torch==2.13.0 bash benchmarks/optimum/setup.sh   # where no +cpu wheel is reachable
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="$HERE/.venv"
REQUIREMENTS="$HERE/requirements.txt"

# The project's own ONNX pins, so the graphs Optimum writes are made by the same onnx/onnxruntime.
pin_from_constraints() {  # NAME DEFAULT
  local line
  line="$(grep -iE "^$1==" "$REPO/constraints.txt" 2>/dev/null | head -n1 || true)"
  echo "${line:-$1==$2}"
}
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0+cpu}"
PINS=(
  "$TORCH_SPEC"
  "optimum==2.1.0"
  "optimum-onnx==0.1.0"
  "transformers==4.57.6"
  "$(pin_from_constraints onnxruntime 1.31.1)"
  "$(pin_from_constraints onnx 1.23.2)"
)

"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
if [[ -f "$REQUIREMENTS" ]]; then
  PIP+=(-c "$REQUIREMENTS")  # a rerun resolves to exactly the recorded set
fi
echo "installing into $VENV: ${PINS[*]}"
if ! "${PIP[@]}" "${PINS[@]}"; then
  cat >&2 <<EOF
setup.sh: the install failed. If it was torch: the CPU build (${TORCH_SPEC}) is not on PyPI
itself; it comes from PyTorch's CPU wheel index or a local wheel directory that pip is configured
with. Point pip at one (PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS), or take the default build from PyPI
(a CUDA build, ~5 GB, runs fine on a CPU):  TORCH_SPEC=torch==2.13.0 bash $0
EOF
  exit 1
fi

{
  echo "# Written by setup.sh: the exact set installed in benchmarks/optimum/.venv (pip freeze)."
  echo "# Top-level pins: ${PINS[*]}"
  "$VENV/bin/python" -m pip freeze --disable-pip-version-check | grep -v '^-e '
} > "$REQUIREMENTS.tmp"
mv "$REQUIREMENTS.tmp" "$REQUIREMENTS"

# Smoke test: Optimum's ONNX Runtime API imports offline, and the runtime matches the project's.
HF_HUB_OFFLINE=1 "$VENV/bin/python" - <<'EOF'
from importlib.metadata import version

from optimum.onnxruntime import ORTModelForSequenceClassification, ORTOptimizer, ORTQuantizer  # noqa: F401

print(", ".join(f"{p} {version(p)}" for p in ("optimum", "optimum-onnx", "transformers", "torch", "onnx", "onnxruntime")))
EOF
echo "pins written to $REQUIREMENTS"
