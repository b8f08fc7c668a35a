#!/usr/bin/env bash
# The peers of the generative benchmark in their own venv (benchmarks/generative/.venv, ignored by git
# through the repository's `.venv/` rule), for peers.py, quantize_gguf.py and prepare.py's peer steps.
#
# One venv holds both peers: llama.cpp (llama-cpp-python) and ONNX Runtime GenAI (+ its model builder,
# which needs torch + transformers to read the float HF directory). Their requirements do not
# conflict, and peers.py runs every engine in its own process, so they never share a process.
# It is separate from the project's venv because onnxruntime-genai, llama-cpp-python and a second
# torch have no business in the project's own environment.
#
# What it installs (top-level pins below; the full resolved set goes to requirements.txt):
#   llama-cpp-python 0.3.36, built from source for this CPU (CMAKE_ARGS below: GGML_NATIVE=ON, no
#   GPU backend, OpenMP; ~10 minutes on 2 cores the first time, then pip's wheel cache has it);
#   onnxruntime-genai 0.18.0 with the project's onnxruntime / onnx / numpy / transformers pins
#   (constraints.txt); onnx-ir (the builder imports it); torch 2.13.0+cpu for the builder.
# Why torch 2.13.0+cpu and not the project's 2.14.1: the only torch 2.14.1 this machine's package index
# offers is the CUDA build (555 MB wheel + ~3 GB of nvidia-* wheels); PyTorch's CPU index is not
# reachable here, and the 2.13.0 CPU build (192 MB) is (the precedent: benchmarks/optimum/setup.sh).
# The builder uses torch only to read float32 safetensors, so the version makes no difference to the
# ONNX it writes. Elsewhere: TORCH_SPEC=torch==2.14.1+cpu with PyTorch's CPU index, or torch==2.14.1.
# Nothing here downloads a model: everything runs offline (HF_HUB_OFFLINE=1).
#
#   bash benchmarks/generative/setup.sh            # PYTHON=python3.11 to choose the interpreter
#   TORCH_SPEC=torch==2.14.1 bash benchmarks/generative/setup.sh   # where no +cpu wheel is reachable
#   PIP_NO_CACHE_DIR=1 bash benchmarks/generative/setup.sh         # force a fresh llama.cpp build
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="$HERE/.venv"
REQUIREMENTS="$HERE/requirements.txt"

pin_from_constraints() {  # NAME DEFAULT: the project's pin of NAME, so both sides run the same versions
  local line
  line="$(grep -iE "^$1==" "$REPO/constraints.txt" 2>/dev/null | head -n1 || true)"
  echo "${line:-$1==$2}"
}
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0+cpu}"
LLAMA_PIN="llama-cpp-python==0.3.36"
# CPU only, tuned for this machine's CPU (the wheel is not portable: rebuild on another machine).
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
PINS=(
  "$LLAMA_PIN"
  "onnxruntime-genai==0.18.0"
  "$(pin_from_constraints onnxruntime 1.31.1)"
  "$(pin_from_constraints onnx 1.23.2)"
  "onnx-ir==1.1.0"
  "$(pin_from_constraints numpy 2.4.6)"
  "$(pin_from_constraints transformers 5.23.0)"
  "$(pin_from_constraints tokenizers 0.23.3)"
  "$(pin_from_constraints safetensors 0.8.0)"
  "$(pin_from_constraints huggingface_hub 2.4.0)"
  "$(pin_from_constraints tqdm 4.70.1)"
  "$TORCH_SPEC"
)

"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
if [[ -f "$REQUIREMENTS" ]]; then
  PIP+=(-c "$REQUIREMENTS")  # a rerun resolves to exactly the recorded set
fi
# llama-cpp-python first and alone: it is the long source build, and its failure should read as such.
echo "building $LLAMA_PIN into $VENV (CMAKE_ARGS=$CMAKE_ARGS; ~10 min on 2 cores unless pip's cache has the wheel)"
"${PIP[@]}" "$LLAMA_PIN" "$(pin_from_constraints numpy 2.4.6)"
echo "installing into $VENV: ${PINS[*]}"
if ! "${PIP[@]}" "${PINS[@]}"; then
  cat >&2 <<EOF
setup.sh: the install failed. If it was torch: the CPU build (${TORCH_SPEC}) comes from PyTorch's CPU
wheel index or a local wheel directory that pip is configured with (here: /opt/wheels). Point pip at one
(PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS), or take the default build from PyPI (a CUDA build, ~4 GB with
its nvidia-* wheels, runs fine on a CPU):  TORCH_SPEC=torch==2.14.1 bash $0
EOF
  exit 1
fi

{
  echo "# Written by setup.sh: the exact set installed in benchmarks/generative/.venv (pip freeze)."
  echo "# Top-level pins: ${PINS[*]}"
  echo "# llama-cpp-python built from source with CMAKE_ARGS=$CMAKE_ARGS"
  "$VENV/bin/python" -m pip freeze --disable-pip-version-check | grep -v '^-e '
} > "$REQUIREMENTS.tmp"
mv "$REQUIREMENTS.tmp" "$REQUIREMENTS"

# Smoke test, offline: llama.cpp is a CPU build with its quantize API; GenAI and its builder import;
# the runtime matches the project's.
HF_HUB_OFFLINE=1 "$VENV/bin/python" - <<'EOF'
from importlib.metadata import version

import llama_cpp
import onnxruntime_genai as og

assert not llama_cpp.llama_supports_gpu_offload(), "llama.cpp was built with a GPU backend"
assert callable(llama_cpp.llama_model_quantize)
print("llama.cpp:", llama_cpp.llama_print_system_info().decode().strip())
packages = ("llama_cpp_python", "onnxruntime-genai", "onnxruntime", "onnx", "transformers", "torch", "numpy")
print(", ".join(f"{p} {version(p)}" for p in packages), "| GenAI", og.__version__)
EOF
# (Not `builder --help`: in onnxruntime-genai 0.18.0 it fails in argparse, a stray '%' in the help text.)
HF_HUB_OFFLINE=1 "$VENV/bin/python" -c "from onnxruntime_genai.models.builder import create_model, get_args"
echo "builder: onnxruntime_genai.models.builder imports"
echo "pins written to $REQUIREMENTS"
