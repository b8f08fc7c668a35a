"""Write edgeptm's artifacts for the generative benchmark under WORK/edgeptm/ with the CLI a user runs.

    .venv/bin/python benchmarks/generative/build_edgeptm.py [--work DIR]

fp32: ``edgeptm export smollm2-135m`` (the packaged GGUF, de-quantized, as every peer but llama.cpp
uses it). INT8 / INT4: ``edgeptm quantize`` of that export with the options in
``protocol.EDGEPTM_BUILDS``; ExecuTorch programs: ``edgeptm compile smollm2-135m --target executorch``
with ``protocol.EDGEPTM_PROGRAMS``. The data-aware INT4 calibrates on Rotten Tomatoes *training* sentences
(WORK/data/calib.jsonl, written here from the project's cached demo split); the evaluation text is
the *validation* split's, so the two never overlap.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from protocol import DEFAULT_WORK, EDGEPTM_BUILDS, EDGEPTM_PROGRAMS, Work  # noqa: E402

CALIB_SENTENCES = 600  # ~12,000 tokens; quantize takes the first 8,192


def calibration_file(work: Work) -> Path:
    """Training sentences of the demo split, as JSONL text rows (no labels: a generator's data)."""
    from edgeptm.data.demo import rotten_tomatoes
    from edgeptm.data.text import read_text_table

    path = work.root / "data" / "calib.jsonl"
    if not path.is_file():
        train = read_text_table(rotten_tomatoes(fetch=True).train)
        with open(path, "w", encoding="utf-8") as fh:
            for text in train.texts[:CALIB_SENTENCES]:
                fh.write(json.dumps({"text": text}) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--force", action="store_true", help="rebuild artifacts that exist")
    args = parser.parse_args()
    work = Work(args.work)
    root = work.root / "edgeptm"
    cli = [sys.executable, "-m", "edgeptm.cli"]
    calib = calibration_file(work)
    for name, options in EDGEPTM_BUILDS.items():
        out = root / name
        if out.is_dir() and not args.force:
            print(f"{out}: exists")
            continue
        force = ["--force"] if args.force else []
        if not options:
            cmd = cli + ["export", "smollm2-135m", "--out", str(out)] + force
        else:
            cmd = cli + ["quantize", str(root / "fp32"), "--out", str(out), "--calib", str(calib), *options] + force
        print(" ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)
    for name, options in EDGEPTM_PROGRAMS.items():
        out = root / name
        if out.is_dir() and not args.force:
            print(f"{out}: exists")
            continue
        cmd = cli + ["compile", "smollm2-135m", "--out", str(out), *options] + (["--force"] if args.force else [])
        print(" ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
