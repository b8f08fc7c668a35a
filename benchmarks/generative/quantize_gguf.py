"""Requantize a GGUF with llama.cpp's own quantize API (``llama_model_quantize``), in the peers venv.

prepare.py calls it to make the Q8_0 GGUF from the package's Q4_1 file. ``allow_requantize`` is needed
because the source is already quantized: the Q8_0 file encodes the Q4_1 weights (de-quantized) at
8 bits, so it holds no more information than the Q4_1 file -- the same float weights that
prepare.py's HF directory holds -- only a different kernel and memory traffic.

    benchmarks/generative/.venv/bin/python benchmarks/generative/quantize_gguf.py SRC.gguf DST.gguf [--type q8_0]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
from pathlib import Path

TYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1"}
THREADS = 2


def quantize(src: Path, dst: Path, kind: str) -> None:
    """Write `dst` as `src` requantized to `kind`, via a temporary file (no half-written GGUF left behind)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = THREADS
    params.ftype = getattr(llama_cpp, TYPES[kind])
    params.allow_requantize = True
    tmp = dst.with_name(dst.name + ".tmp")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        sys.exit(f"llama_model_quantize failed ({rc}) for {src} -> {kind}")
    os.replace(tmp, dst)
    print(f"wrote {dst} ({dst.stat().st_size / 1e6:.1f} MB, llama-cpp-python {llama_cpp.__version__})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--type", choices=sorted(TYPES), default="q8_0")
    args = parser.parse_args()
    quantize(args.src, args.dst, args.type)


if __name__ == "__main__":
    main()
