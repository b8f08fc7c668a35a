"""Graphs side by side in one loop: edgeptm's INT4 decoder graphs and ONNX Runtime GenAI's builder
graphs, each stepped by the same kind of Python loop over ONNX Runtime (project venv, 2 threads, IO
binding, KV buffer shared between past and present, greedy), alternating engines round by round in
one process. It separates the graph from the runtime around it: `peers.py` times GenAI through its
own C++ `generate()`.

    .venv/bin/python benchmarks/generative/graph_ab.py [--work DIR] [--rounds 5]

Prints each engine's median decode step (ms) per round, and the median over rounds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from protocol import DEFAULT_WORK, NEW_TOKENS, PROMPT_TOKENS, THREADS, Work, load_ids  # noqa: E402


class GenAIGraph:
    """A GenAI builder graph (inputs input_ids, attention_mask, past_key_values.*; outputs logits,
    present.*), past and present bound to one buffer per layer as GenAI's shared-buffer mode does."""

    def __init__(self, path: Path, layers: int, kv_heads: int, head_dim: int) -> None:
        import onnxruntime as ort

        from edgeptm.runtime.ort_backend import session_options

        self.ort, self.dims = ort, (layers, kv_heads, head_dim)
        self.session = ort.InferenceSession(str(path), session_options(THREADS), providers=["CPUExecutionProvider"])

    def decode_ms(self, prompt: Sequence[int], new: int) -> float:
        layers, heads, dim = self.dims
        binding, capacity = self.session.io_binding(), len(prompt) + new
        caches = []
        for i in range(layers):
            for kind in ("key", "value"):
                cache = self.ort.OrtValue.ortvalue_from_numpy(np.zeros((1, heads, capacity, dim), np.float32))
                binding.bind_ortvalue_input(f"past_key_values.{i}.{kind}", cache)
                binding.bind_ortvalue_output(f"present.{i}.{kind}", cache)
                caches.append(cache)
        total = len(prompt)
        binding.bind_output("logits", "cpu")
        binding.bind_cpu_input("input_ids", np.asarray([prompt], np.int64))
        binding.bind_cpu_input("attention_mask", np.ones((1, total), np.int64))
        self.session.run_with_iobinding(binding)
        token = int(binding.get_outputs()[0].numpy()[0, -1].argmax())
        binding.bind_output("logits", "cpu")  # decode steps: [1, 1, vocab]
        steps = []
        for _ in range(new - 1):
            started = time.perf_counter()
            total += 1
            binding.bind_cpu_input("input_ids", np.asarray([[token]], np.int64))
            binding.bind_cpu_input("attention_mask", np.ones((1, total), np.int64))
            self.session.run_with_iobinding(binding)
            token = int(binding.get_outputs()[0].numpy()[0, -1].argmax())
            steps.append(time.perf_counter() - started)
        return float(np.median(steps) * 1e3)


class EdgeptmGraph:
    """An edgeptm artifact's decoder as ``edgeptm.load()`` steps it."""

    def __init__(self, path: Path) -> None:
        import edgeptm

        self.decoder = edgeptm.load(path, threads=THREADS).decoder

    def decode_ms(self, prompt: Sequence[int], new: int) -> float:
        self.decoder.reset(len(prompt) + new)
        token = int(self.decoder.forward(list(prompt)).argmax())
        steps = []
        for _ in range(new - 1):
            started = time.perf_counter()
            token = int(self.decoder.forward([token]).argmax())
            steps.append(time.perf_counter() - started)
        return float(np.median(steps) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Work(args.work)
    dims = (30, 3, 64)  # SmolLM2-135M: layers, KV heads, head size
    engines = {
        "ortgenai-int4 graph": GenAIGraph(work.root / "ortgenai" / "int4" / "model.onnx", *dims),
        "ortgenai-int4-kquant graph": GenAIGraph(work.root / "ortgenai" / "int4-kquant" / "model.onnx", *dims),
        "edgeptm-int4": EdgeptmGraph(work.root / "edgeptm" / "int4"),
        "edgeptm-int4-asym": EdgeptmGraph(work.root / "edgeptm" / "int4-asym"),
    }
    prompt = load_ids(work.prompt_ids, PROMPT_TOKENS)
    for engine in engines.values():  # warm-up
        engine.decode_ms(prompt, 16)
    results: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(args.rounds):
        for name, engine in engines.items():
            results[name].append(engine.decode_ms(prompt, NEW_TOKENS))
    for name, values in results.items():
        print(f"{name:28s} {' '.join(f'{v:6.2f}' for v in values)}   median {np.median(values):.2f} ms/step")


if __name__ == "__main__":
    main()
