"""The peers of the generative benchmark, and the driver that runs every engine in its own process.

    .venv/bin/python benchmarks/generative/peers.py [--work DIR] [--engines a,b,c] [--json out.jsonl] \
        [--repeats 3] [--warmup 1] [--no-ppl] [--quiet-wait 300] [--retries 2]

The driver runs the chosen engines one after another, each as a fresh subprocess
(``PYTHON peers.py --worker NAME ...``) on the python of its venv: engines sharing a process would
share (and fight over) thread pools and memory, and each needs its own venv anyway. A worker loads
its runner, hands it to `protocol.measure()` (the one shared protocol: prompt, repeats, timing, row
format), and prints its row as the line ``ROW {json}``; the driver appends the rows to --json.

Adding an engine (edgeptm's own artifacts, say) is one more ENGINES entry: the python that runs it
and a ``module:callable`` (importable from this folder) that takes ``(work, **options)`` and returns a
`protocol.Runner`. This file imports only the standard library and protocol at the top, so every venv
can import it; each runner imports its engine when it is built.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import protocol  # noqa: E402
from protocol import EOS_IDS, EVAL_TOKENS, NEW_TOKENS, PROMPT_TOKENS, THREADS, TokenClock, Work  # noqa: E402

PROJECT_PYTHON = Path(os.environ.get("GENERATIVE_PROJECT_PYTHON", REPO / ".venv" / "bin" / "python"))
PEERS_PYTHON = Path(os.environ.get("GENERATIVE_PEERS_PYTHON", HERE / ".venv" / "bin" / "python"))


@dataclass(frozen=True)
class Engine:
    """How to run one engine: which python, which runner (``module:callable``), with which options."""

    python: Path
    runner: str
    options: dict[str, str] = field(default_factory=dict)


ENGINES: dict[str, Engine] = {
    "transformers": Engine(PROJECT_PYTHON, "peers:TransformersRunner"),
    "llamacpp-q4_1": Engine(PEERS_PYTHON, "peers:LlamaCppRunner", {"gguf": "q4_1"}),
    "llamacpp-q8_0": Engine(PEERS_PYTHON, "peers:LlamaCppRunner", {"gguf": "q8_0"}),
    **{f"ortgenai-{b}": Engine(PEERS_PYTHON, "peers:OrtGenAIRunner", {"build": b}) for b in protocol.ORTGENAI_BUILDS},
    # edgeptm's own artifacts (build_edgeptm.py writes them under WORK/edgeptm/), run by edgeptm.load()
    **{f"edgeptm-{b}": Engine(PROJECT_PYTHON, "peers:EdgeptmRunner", {"build": b}) for b in protocol.EDGEPTM_BUILDS},
    **{f"edgeptm-{b}": Engine(PROJECT_PYTHON, "peers:EdgeptmRunner", {"build": b}) for b in protocol.EDGEPTM_PROGRAMS},
}


def versions_of(*packages: str) -> dict[str, str]:
    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


# --- runners -------------------------------------------------------------------------------------------------------


class TransformersRunner:
    """transformers eager FP32 (no compile), SDPA attention, ``generate`` greedy with ``min_new_tokens``.

    Runs in the project's venv on the float HF directory prepare.py wrote. A streamer ticks the clock
    as ``generate`` emits each token (on CPU it streams every step, not one step late).
    """

    precision = "fp32"
    notes = "eager FP32, attn_implementation=sdpa, generate(do_sample=False, min_new_tokens=max_new_tokens=128)"

    def __init__(self, work: Work) -> None:
        import torch
        from transformers import AutoModelForCausalLM, GenerationConfig

        torch.set_num_threads(THREADS)
        torch.set_num_interop_threads(1)
        self.torch = torch
        self.dir = work.hf_dir
        self.model = AutoModelForCausalLM.from_pretrained(
            self.dir, dtype=torch.float32, attn_implementation="sdpa"
        ).eval()
        self.config = GenerationConfig(
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,  # masks eos_token_id until 128 tokens exist
            eos_token_id=list(EOS_IDS),
            pad_token_id=EOS_IDS[0],
            use_cache=True,
        )

    def artifact_paths(self) -> list[Path]:
        return [self.dir]

    def versions(self) -> dict[str, str]:
        return {**versions_of("transformers"), "torch": self.torch.__version__}

    def generate(self, prompt_ids: Sequence[int], new_tokens: int, clock: TokenClock) -> list[int]:
        torch = self.torch

        class Ticks:  # transformers' streamer interface: the prompt first, then each new token
            seen_prompt = False

            def put(self, value: Any) -> None:
                if self.seen_prompt:
                    clock.tick()
                self.seen_prompt = True

            def end(self) -> None:
                pass

        ids = torch.tensor([list(prompt_ids)], dtype=torch.long)
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            clock.start()
            out = self.model.generate(ids, attention_mask=mask, generation_config=self.config, streamer=Ticks())
        return out[0, len(prompt_ids) :].tolist()

    def logits(self, ids: Sequence[int]) -> Any:
        torch = self.torch
        with torch.inference_mode():
            return self.model(torch.tensor([list(ids)], dtype=torch.long)).logits[0].float().numpy()


class LlamaCppRunner:
    """llama.cpp through llama-cpp-python: a manual greedy loop on ``Llama.eval`` (prompt in one batch).

    The argmax is taken on the last position's logits with EOS_IDS masked (``llama_get_logits_ith``,
    no sampler chain). Timing uses a context of prompt + new tokens and ``logits_all=False``; the
    perplexity pass opens a second context (2,048 tokens, ``logits_all=True``) after the timing one is
    freed, so its logits buffer is outside the peak RSS.
    """

    def __init__(self, work: Work, gguf: str) -> None:
        import llama_cpp

        self.llama_cpp = llama_cpp
        self.path = {"q4_1": work.package_gguf(), "q8_0": work.q8_0_gguf}[gguf]
        self.precision = gguf
        self.notes = f"{self.path.name}; Llama.eval + argmax(llama_get_logits_ith(-1)), default flash-attn/kv settings"
        self.llm = self._open(n_ctx=PROMPT_TOKENS + NEW_TOKENS, logits_all=False)

    def _open(self, n_ctx: int, logits_all: bool) -> Any:
        return self.llama_cpp.Llama(
            model_path=str(self.path),
            n_ctx=n_ctx,
            n_batch=max(n_ctx, 512),
            n_threads=THREADS,
            n_threads_batch=THREADS,
            logits_all=logits_all,
            seed=0,
            verbose=False,
        )

    def artifact_paths(self) -> list[Path]:
        return [self.path]

    def versions(self) -> dict[str, str]:
        info = self.llama_cpp.llama_print_system_info().decode().strip()
        return {**versions_of("llama_cpp_python", "numpy"), "llama_cpp_system_info": info}

    def _last_logits(self) -> Any:
        import numpy as np

        ptr = self.llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.llm.n_vocab(),))

    def generate(self, prompt_ids: Sequence[int], new_tokens: int, clock: TokenClock) -> list[int]:
        import numpy as np

        self.llm.reset()  # n_tokens = 0: the next eval overwrites the KV cache from position 0
        out: list[int] = []
        clock.start()
        self.llm.eval(list(prompt_ids))
        while True:
            token = int(np.argmax(protocol.mask_eos(self._last_logits())))
            clock.tick()
            out.append(token)
            if len(out) == new_tokens:
                return out
            self.llm.eval([token])

    def logits(self, ids: Sequence[int]) -> Any:
        import numpy as np

        self.llm.close()
        self.llm = self._open(n_ctx=len(ids), logits_all=True)
        self.llm.reset()
        self.llm.eval(list(ids))
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)


class OrtGenAIRunner:
    """ONNX Runtime GenAI: ``og.Generator``, ``append_tokens(prompt)`` then ``generate_next_token()`` in a loop.

    Threads come from a config overlay (decoder session options intra_op_num_threads=2,
    inter_op_num_threads=1), so the built artifact is used unchanged. Greedy via search options
    do_sample=False; min_length = max_length = prompt + 128 keeps EOS from ending the generation.
    The generator (and its KV buffers) is created before the clock starts.
    """

    def __init__(self, work: Work, build: str) -> None:
        import onnxruntime_genai as og

        self.og = og
        self.dir = work.ortgenai_dir(build)
        precision, extra = protocol.ORTGENAI_BUILDS[build]
        self.precision = build if build != "int4" else "int4-rtn"
        self.notes = f"builder -p {precision} -e cpu" + (f" --extra_options {' '.join(extra)}" if extra else "")
        config = og.Config(str(self.dir))
        threads = {"intra_op_num_threads": THREADS, "inter_op_num_threads": 1}
        config.overlay(json.dumps({"model": {"decoder": {"session_options": threads}}}))
        self.model = og.Model(config)

    def artifact_paths(self) -> list[Path]:
        return [self.dir]

    def versions(self) -> dict[str, str]:
        return versions_of("onnxruntime-genai", "onnxruntime", "numpy")

    def _generator(self, length: int) -> Any:
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(do_sample=False, max_length=length, min_length=length, batch_size=1)
        return self.og.Generator(self.model, params)

    def generate(self, prompt_ids: Sequence[int], new_tokens: int, clock: TokenClock) -> list[int]:
        import numpy as np

        generator = self._generator(len(prompt_ids) + new_tokens)
        prompt = np.asarray(prompt_ids, dtype=np.int32)
        out: list[int] = []
        clock.start()
        generator.append_tokens(prompt)
        while len(out) < new_tokens:
            generator.generate_next_token()
            out.append(int(generator.get_next_tokens()[0]))
            clock.tick()
        if set(out) & set(EOS_IDS):
            raise RuntimeError("ORT GenAI produced an EOS id: min_length did not mask it")
        return out

    def logits(self, ids: Sequence[int]) -> Any:
        import numpy as np

        generator = self._generator(len(ids))
        generator.append_tokens(np.asarray(ids, dtype=np.int32))
        logits = np.asarray(generator.get_output("logits"), dtype=np.float32)
        if logits.shape[:2] != (1, len(ids)):
            raise RuntimeError(f"GenAI returned logits of shape {logits.shape}, expected (1, {len(ids)}, vocab)")
        return logits[0]


class EdgeptmRunner:
    """An edgeptm artifact through ``edgeptm.load()`` (a Generator) with 2 threads: the same decoder
    steps ``generate()`` runs, in a loop that masks EOS as the protocol asks. The KV cache is
    allocated (``reset``) before the clock starts, as GenAI's generator is created before it."""

    def __init__(self, work: Work, build: str) -> None:
        import edgeptm

        self.dir = work.root / "edgeptm" / build
        self.generator = edgeptm.load(self.dir, threads=THREADS)
        self.precision = self.generator.artifact.manifest.get("precision", build)
        q = self.generator.artifact.manifest.get("quantization") or {}
        self.notes = ", ".join(f"{k}={q[k]}" for k in ("mode", "method", "block_size", "embedding_bits") if k in q)

    def artifact_paths(self) -> list[Path]:
        return [self.generator.artifact.file("model")]

    def versions(self) -> dict[str, str]:
        return versions_of("edgeptm", "onnxruntime", "executorch", "numpy")

    def generate(self, prompt_ids: Sequence[int], new_tokens: int, clock: TokenClock) -> list[int]:
        decoder = self.generator.decoder
        decoder.reset(len(prompt_ids) + new_tokens)
        out: list[int] = []
        clock.start()
        logits = decoder.forward(list(prompt_ids))
        while True:
            out.append(int(np.argmax(protocol.mask_eos(logits))))
            clock.tick()
            if len(out) == new_tokens:
                return out
            logits = decoder.forward([out[-1]])

    def logits(self, ids: Sequence[int]) -> Any:
        decoder = self.generator.decoder
        decoder.reset(len(ids))
        return decoder.forward(list(ids), all_logits=True)


# --- worker and driver ---------------------------------------------------------------------------------------------


def worker(name: str, work: Work, repeats: int, warmup: int, ppl: bool) -> None:
    """In the engine's own process: build its runner, run the protocol, print the row."""
    engine = ENGINES[name]
    module, _, attr = engine.runner.partition(":")
    started = time.perf_counter()
    runner = getattr(importlib.import_module(module), attr)(work, **engine.options)
    load_s = time.perf_counter() - started
    row = protocol.measure(name, runner, work, repeats=repeats, warmup=warmup, ppl=ppl)
    row["notes"] = getattr(runner, "notes", "")
    row["load_s"] = round(load_s, 2)
    row["python"] = sys.executable
    print("ROW " + json.dumps(row), flush=True)


def run_engine(name: str, work: Work, repeats: int, warmup: int, ppl: bool, timeout: float) -> dict[str, Any]:
    """Run one engine's worker as a subprocess on its venv's python and return its row."""
    engine = ENGINES[name]
    if not engine.python.is_file():
        raise RuntimeError(f"{engine.python}: no such python (run benchmarks/generative/setup.sh?)")
    cmd = [str(engine.python), str(Path(__file__).resolve()), "--worker", name, "--work", str(work.root)]
    cmd += ["--repeats", str(repeats), "--warmup", str(warmup)] + ([] if ppl else ["--no-ppl"])
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": str(THREADS),
    }
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=work.root)
    rows = [line[4:] for line in proc.stdout.splitlines() if line.startswith("ROW ")]
    if proc.returncode != 0 or not rows:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise RuntimeError(f"{name}: worker exited with {proc.returncode}\n{tail}")
    return json.loads(rows[-1])


def disturbance(row: dict[str, Any]) -> float:
    others = row.get("others_cpus_during_timing")
    return float("inf") if others is None else float(others)


def run_quietest(name: str, work: Work, args: argparse.Namespace) -> dict[str, Any]:
    """Run an engine, again (up to --retries times) while other processes disturbed its timed runs;
    return the least disturbed row (its `attempts` says how many were made)."""
    best: dict[str, Any] | None = None
    for attempt in range(1, args.retries + 2):
        others = wait_for_quiet(args.quiet_wait, args.quiet_cpus)
        print(f"{name}: attempt {attempt}, others keep {others} CPUs busy before it", flush=True)
        started = time.time()
        row = run_engine(name, work, args.repeats, args.warmup, args.ppl, args.timeout)
        print(
            f"{name}: TTFT {row['ttft_ms']} ms, {row['decode_tokens_per_s']} tok/s, e2e {row['e2e_ms']} ms, "
            f"RSS {row['peak_rss_mb']} MB, size {row['size_mb']} MB, ppl {row['perplexity']}, "
            f"others {row.get('others_cpus_during_timing')} CPUs during timing ({time.time() - started:.0f} s)",
            flush=True,
        )
        if best is None or disturbance(row) < disturbance(best):
            best = row
        best["attempts"] = attempt
        if disturbance(best) < args.quiet_cpus:
            break
    assert best is not None
    return best


def wait_for_quiet(seconds: float, cpus: float) -> float | None:
    """Sample (1 s) how many CPUs other processes keep busy, until under `cpus` or `seconds` have passed."""
    deadline = time.time() + seconds
    while True:
        watch = protocol.CpuWatch()
        time.sleep(1.0)
        others = watch.others_cpus()
        if others is None or others < cpus or time.time() >= deadline:
            return others


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| engine | precision | size MB | TTFT ms | decode tok/s | e2e ms | peak RSS MB | ppl | runs | others' CPUs |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        ppl = "-" if r["perplexity"] is None else f"{r['perplexity']:.2f}"
        lines.append(
            f"| {r['engine']} | {r['precision']} | {r['size_mb']:.1f} | {r['ttft_ms']:.0f} | "
            f"{r['decode_tokens_per_s']:.1f} | {r['e2e_ms']:.0f} | {r['peak_rss_mb']:.0f} | {ppl} | {r['runs']} | "
            f"{r.get('others_cpus_during_timing')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=protocol.DEFAULT_WORK, help="prepare.py's work directory")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of: {', '.join(ENGINES)}")
    parser.add_argument("--json", type=Path, help="append one JSON row per engine to this file")
    parser.add_argument("--repeats", type=int, default=protocol.REPEATS, help="timed runs (median reported)")
    parser.add_argument("--warmup", type=int, default=protocol.WARMUP, help="untimed runs first")
    parser.add_argument("--no-ppl", dest="ppl", action="store_false", help="skip the perplexity pass")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per engine")
    parser.add_argument("--quiet-wait", type=float, default=0, help="wait up to S seconds for a quiet machine")
    parser.add_argument("--quiet-cpus", type=float, default=0.2, help="quiet = others busy on fewer CPUs than this")
    parser.add_argument(
        "--retries", type=int, default=0, help="rerun an engine (up to N times) whose timed runs others disturbed"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Work(args.work.expanduser().resolve())
    if args.worker:
        worker(args.worker, work, args.repeats, args.warmup, args.ppl)
        return
    names = [n for n in args.engines.split(",") if n]
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        parser.error(f"unknown engines: {', '.join(unknown)} (known: {', '.join(ENGINES)})")
    print(
        f"{len(names)} engine(s), each in its own process: {PROMPT_TOKENS}-id prompt, {NEW_TOKENS} new ids, "
        f"{THREADS} threads, warm-up {args.warmup} + {args.repeats} timed run(s), perplexity on {EVAL_TOKENS} ids",
        flush=True,
    )
    rows, failed = [], []
    for name in names:
        try:
            row = run_quietest(name, work, args)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"FAILED {exc}", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        rows.append(row)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            with open(args.json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
    if rows:
        print(table(rows))
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
