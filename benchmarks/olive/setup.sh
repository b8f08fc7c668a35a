#!/usr/bin/env bash
# Microsoft Olive in its own venv (benchmarks/olive/.venv), for run_olive.py.
#
# Why a separate venv: Olive drags in its own transformers / torch / optuna / pandas stack, and its
# versions are not the project's. What it installs (top-level pins below; the full resolved set
# goes to requirements.txt):
#   olive-ai 0.13.0 (+ its tune-session-params extra: psutil), requests (Olive imports it and does
#   not declare it), torch 2.13.0+cpu (Olive declares torch and imports it in its evaluator, its
#   accuracy metrics (torchmetrics) and its data loaders, so even ONNX-only work needs it; the CPU
#   build is ~750 MB instead of the ~5 GB CUDA build), and the same onnx / onnxruntime / onnxscript
#   versions as the project's constraints.txt, so both sides run one ONNX Runtime.
#   Nothing here downloads a model or a data set: run everything with OLIVE_DISABLE_TELEMETRY=1
#   and CI=1 (Olive's telemetry is on by default, and the first alone does not stop its heartbeat)
#   and HF_HUB_OFFLINE=1; run_olive.py sets them.
#
#   bash benchmarks/olive/setup.sh            # PYTHON=python3.11 to choose the interpreter
#   TORCH_SPEC=torch==2.13.0 bash benchmarks/olive/setup.sh   # where no +cpu wheel is reachable
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="$HERE/.venv"
REQUIREMENTS="$HERE/requirements.txt"

# The project's own ONNX pins, so Olive's passes run the same onnx/onnxruntime as edgeptm.
pin_from_constraints() {  # NAME DEFAULT
  local line
  line="$(grep -iE "^$1==" "$REPO/constraints.txt" 2>/dev/null | head -n1 || true)"
  echo "${line:-$1==$2}"
}
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0+cpu}"
PINS=(
  "olive-ai[tune-session-params]==0.13.0"
  "requests"
  "$TORCH_SPEC"
  "$(pin_from_constraints onnxruntime 1.31.1)"
  "$(pin_from_constraints onnx 1.23.2)"
  "$(pin_from_constraints onnxscript 0.7.2)"
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
  echo "# Written by setup.sh: the exact set installed in benchmarks/olive/.venv (pip freeze)."
  echo "# Top-level pins: ${PINS[*]}"
  "$VENV/bin/python" -m pip freeze --disable-pip-version-check | grep -v '^-e '
} > "$REQUIREMENTS.tmp"
mv "$REQUIREMENTS.tmp" "$REQUIREMENTS"

# Smoke test: Olive's CLI, engine, evaluator and the ORT passes run_olive.py uses import offline
# with telemetry off, and the runtime matches the project's. (CI=1: OLIVE_DISABLE_TELEMETRY=1 alone
# still lets Olive make and try to send a heartbeat; see README.)
export OLIVE_DISABLE_TELEMETRY=1 CI=1 HF_HUB_OFFLINE=1
"$VENV/bin/python" - <<'EOF'
from importlib.metadata import version

import olive.cli.launcher  # noqa: F401
from olive.evaluator.olive_evaluator import OliveEvaluatorConfig  # noqa: F401
from olive.passes.onnx.quantization import OnnxDynamicQuantization, OnnxStaticQuantization  # noqa: F401
from olive.passes.onnx.session_params_tuning import OrtSessionParamsTuning  # noqa: F401
from olive.workflows import run  # noqa: F401

print(", ".join(f"{p} {version(p)}" for p in ("olive-ai", "torch", "transformers", "onnx", "onnxruntime", "onnxscript")))
EOF
"$VENV/bin/olive" --help >/dev/null
echo "pins written to $REQUIREMENTS"
