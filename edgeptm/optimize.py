"""``edgeptm optimize``: the fastest artifact for a device that keeps its accuracy.

From a fine-tuned checkpoint and a device profile, optimize builds every recipe the device can run
-- ONNX Runtime FP32, dynamic and static INT8, static INT8 on every op type with the automatic
fallback (quantization/fallback.py), and each registry target that serves the profile's device
family with the builds it offers (``Target.recipes``: precisions, static or dynamic shapes, the
target's own accuracy-driven INT8) -- then times every one that built with the bench harness
(each artifact in its own process, interleaved rounds, at each thread count asked), and keeps the
fastest whose accuracy drop from the FP32 export is within ``--max-accuracy-drop``.

Each build is the stage's own command (``edgeptm export|quantize|compile``) run in a child process,
so a recipe that fails or crashes is a row with its reason and the search goes on; the report keeps
the command that rebuilds each candidate. Accuracy is each stage's own record, measured on the
validation split the checkpoint carries, against the same split for every candidate. A recipe that
built the very model an earlier one built (same files, same run-time settings) is not timed twice: its
row names that one. Candidates within 5% of the chosen p50 are named as ties. A time budget
(``--max-minutes``) stops new builds in time for the bench; what was not built is a row saying so.
The report (``optimize-report.json|md|html``) lists every candidate, the chosen one, why each other
one lost, and plots accuracy against p50 latency with the Pareto front.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeptm.artifacts import Artifact, check_out_dir, open_artifact, set_aside, write_json_atomic
from edgeptm.errors import EdgeptmError, UsageError
from edgeptm.profiles import Profile, resolve_profile
from edgeptm.sources import open_source

log = logging.getLogger(__name__)

REPORT_SCHEMA_VERSION = 1
REPORT_NAME = "optimize-report"
BENCH_RESERVE_S = 12.0  # per candidate timed, on top of its timed seconds: worker start, warm-up
MIN_BUILD_S = 30.0  # a build is not started with less time than this left (one-pass builds take 20-40 s here)
# Within this fraction of the chosen p50, a candidate is named as a tie: one bench run's order of two
# such candidates need not repeat (two byte-identical models timed in their own processes in one run
# differed by up to 22% on a 2-core VM here: process placement, not the model).
TIE = 0.05


@dataclass
class OptimizeOptions:
    profile: str | Profile | None = None
    max_accuracy_drop: float = 1.0  # points, against the FP32 export on the checkpoint's validation split
    max_minutes: float | None = None
    calib: str | None = None  # static INT8 and the compilers' INT8: calibration inputs
    threads: list[int] | None = None  # thread counts to time each candidate at [default: the profile's]
    duration: float = 3.0  # bench: seconds timed per candidate and thread count
    recipes: list[str] | None = None  # only these recipe names (the others are rows saying so)


@dataclass
class Candidate:
    recipe: str
    runtime: str
    stage: list[str]  # the edgeptm command line that builds it, without --out
    source: str  # "checkpoint" | "fp32" | "int8": what it is built from
    out: Path
    status: str = "pending"  # chosen | ok | rejected | failed | unavailable | skipped | not timed | duplicate
    reason: str = ""
    accuracy: float | None = None
    accuracy_delta_points: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    threads: int | None = None
    size_mb: float | None = None
    build_s: float | None = None
    timings: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        row = asdict(self)
        row["artifact"] = str(self.out) if self.out.is_dir() else None
        row["command"] = " ".join(["edgeptm", *self.stage, "--out", str(self.out)])
        row.pop("out")
        row.pop("stage")
        return row


def optimize(
    checkpoint: str | Path | Artifact, out: str | Path, options: OptimizeOptions, force: bool = False
) -> dict[str, Any]:
    """Build, validate and time every recipe; returns the report (also written under ``out``)."""
    profile = resolve_profile(options.profile)
    if profile is None:
        raise UsageError("optimize needs --profile NAME (see 'edgeptm profiles list')")
    if options.max_accuracy_drop is None or options.max_accuracy_drop < 0:
        raise UsageError("optimize needs --max-accuracy-drop POINTS (>= 0)")
    out = Path(out)
    given = None if isinstance(checkpoint, Artifact) or not Path(checkpoint).exists() else checkpoint
    inputs = [options.calib, profile.path, given]
    check_out_dir(out, force, inputs)
    source = open_source(checkpoint)
    inputs.append(source.path)
    if source.kind != "checkpoint" or source.task not in ("text-classification", "image-classification"):
        raise UsageError(
            f"{source.path}: optimize takes a classifier's checkpoint artifact (from 'edgeptm finetune'), "
            f"not a {source.task} {source.kind}"
        )
    if not source.has_file("val_data"):
        raise UsageError(
            f"{source.path}: optimize compares accuracy on the validation split a checkpoint carries, and this "
            "one carries none: fine-tune with --val"
        )
    check_out_dir(out, force, inputs)
    with set_aside(out):
        return _optimize(source, out, options, profile)


def _optimize(source: Artifact, out: Path, options: OptimizeOptions, profile: Profile) -> dict[str, Any]:
    from edgeptm.environment import describe

    started = time.perf_counter()
    deadline = started + options.max_minutes * 60 if options.max_minutes else None
    out.mkdir(parents=True, exist_ok=True)
    work = out / "candidates"
    work.mkdir(exist_ok=True)
    threads = options.threads or [profile.runtime.threads]
    candidates = plan(source, profile, work, options)
    for c in candidates:
        if options.recipes and c.recipe not in options.recipes and c.status == "pending" and c.source != "base":
            c.status, c.reason = "skipped", "not among --recipes"
    built = [c for c in candidates if c.status == "pending"]
    per_bench = len(threads) * options.duration + BENCH_RESERVE_S
    for i, c in enumerate(built, 1):
        if c.status != "pending":
            continue
        if not _parent_ok(c, candidates):
            c.status, c.reason = "skipped", f"its source ({c.source}) did not build"
            continue
        timeout = None
        if deadline is not None:  # what is left, less the bench of what built so far and of this one
            timed_later = (sum(1 for x in candidates if x.status == "ok") + 1) * per_bench
            timeout = deadline - time.perf_counter() - timed_later
            if timeout < MIN_BUILD_S and c.source != "base":
                c.status, c.reason = "skipped", f"time budget (--max-minutes {options.max_minutes:g}) spent"
                continue
        log.info("[%d/%d] %s: building (%s)", i, len(built), c.recipe, " ".join(c.stage[:1]))
        _build(c, source, timeout)
        log.info("[%d/%d] %s: %s%s", i, len(built), c.recipe, c.status, f" ({c.reason})" if c.reason else "")
        if c.source == "base" and c.status != "ok":
            raise EdgeptmError(f"optimize: the FP32 export failed, nothing to compare against: {c.reason}")
    reference = candidates[0]
    for c in candidates:
        if c.status == "ok" and c.accuracy is not None and reference.accuracy is not None:
            c.accuracy_delta_points = round((c.accuracy - reference.accuracy) * 100, 4)
    bench_report = _bench(candidates, profile, threads, options)
    chosen = _choose(candidates, options.max_accuracy_drop)
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(source.path),
        "profile": profile.record() | {"description": profile.description},
        "max_accuracy_drop": options.max_accuracy_drop,
        "max_minutes": options.max_minutes,
        "reference": {"recipe": reference.recipe, "accuracy": reference.accuracy},
        "validation": "the validation split the checkpoint carries, as every stage scores it",
        "chosen": str(chosen.out) if chosen else None,
        "chosen_recipe": chosen.recipe if chosen else None,
        "candidates": [c.row() for c in candidates],
        "bench": {
            "method": bench_report.get("method") if bench_report else None,
            "timed": bench_report.get("timed") if bench_report else None,
            "settings": bench_report.get("settings") if bench_report else None,
        },
        "environment": describe(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_reports(report, out)
    return report


def plan(source: Artifact, profile: Profile, work: Path, options: OptimizeOptions) -> list[Candidate]:
    """Every recipe, in build order (the FP32 export first: the others are built from it)."""
    from edgeptm import targets

    text = source.task == "text-classification"
    base = ["--profile", profile.path and str(profile.path) or profile.name]
    calib = ["--calib", options.calib] if options.calib else []
    fp32 = work / "onnxruntime-fp32"
    int8 = work / "onnxruntime-static-int8"
    drop = ["--max-accuracy-drop", f"{options.max_accuracy_drop:g}"]
    found = [
        Candidate("onnxruntime fp32", "onnxruntime", ["export", str(source.path), *base], "base", fp32),
        Candidate(
            "onnxruntime static-int8",
            "onnxruntime",
            ["quantize", str(fp32), "--mode", "static-int8", *calib, *base],
            "fp32",
            int8,
        ),
        Candidate(
            "onnxruntime static-int8, every op type, fallback auto",
            "onnxruntime",
            ["quantize", str(fp32), "--mode", "static-int8", "--op-types", "all", "--fallback", "auto", *drop]
            + [*calib, *base],
            "fp32",
            work / "onnxruntime-static-int8-fallback",
        ),
        Candidate(
            "onnxruntime dynamic-int8",
            "onnxruntime",
            ["quantize", str(fp32), "--mode", "dynamic-int8", *base],
            "fp32",
            work / "onnxruntime-dynamic-int8",
        ),
    ]
    if text:
        found.append(
            Candidate(
                "onnxruntime dynamic-int8, every op type, fallback auto",
                "onnxruntime",
                ["quantize", str(fp32), "--mode", "dynamic-int8", "--op-types", "all", "--fallback", "auto", *drop]
                + base,
                "fp32",
                work / "onnxruntime-dynamic-int8-fallback",
            )
        )
    if profile.device.family != "cpu":
        found.append(
            Candidate("onnxruntime fp16", "onnxruntime", ["quantize", str(fp32), "--mode", "fp16", *base], "fp32",
                      work / "onnxruntime-fp16")
        )  # fmt: skip
    shapes = _shape_flags(source, profile)
    sources = {"checkpoint": str(source.path), "fp32": str(fp32), "int8": str(int8)}
    for target in targets.TARGETS.values():
        slug = target.name
        if target.not_searched:
            found.append(_row(target.name, f"{target.title}", "skipped", target.not_searched, work / slug))
            continue
        if profile.device.family not in target.devices:
            continue  # not a runtime of this device family: no row
        recipes = target.recipes(source.task, profile, shapes)
        try:
            target.check_runtime(target.make_options({}, lambda e: str(e)))
        except EdgeptmError as exc:
            for label, _, _ in recipes or [("", "", [])]:
                found.append(_row(f"{target.name} {label}".strip(), target.title, "unavailable", str(exc), work / slug))
            continue
        for label, origin, flags in recipes:
            name = f"{target.name} {label}".strip()
            command = ["compile", sources[origin], "--target", target.name, *flags, *base]
            if "--fallback" in flags:  # the target's own accuracy-driven search, held to optimize's budget
                command += drop
            if target.calibrates(source.task, _precision(flags)) and options.calib:
                command += calib
            found.append(Candidate(name, target.title, command, origin, work / _slug(name)))
    return sorted(found, key=_cost_order)


def _cost_order(c: Candidate) -> int:
    """Build order: the FP32 export (every ONNX recipe's source), then one-pass builds from ONNX, then
    builds from the checkpoint (torch.export and a compiler: minutes), then the accuracy searches
    (many builds each). Under --max-minutes the cheap, likely answers are in before the budget ends."""
    if c.source == "base":
        return 0
    if "--fallback" in c.stage:
        return 3
    return 2 if c.source == "checkpoint" else 1


def _row(recipe: str, runtime: str, status: str, reason: str, out: Path) -> Candidate:
    return Candidate(recipe, runtime, [], "", out, status=status, reason=reason)


def _precision(flags: list[str]) -> str:
    return flags[flags.index("--precision") + 1] if "--precision" in flags else "fp32"


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in name.lower()).strip("-")


def _shape_flags(source: Artifact, profile: Profile) -> dict[str, list[str]]:
    """One request's fixed shapes (batch 1; text: the bench's sequence length cut to the model's
    max length), and batch 1 with any length, as compile flags."""
    pre = source.preprocessing
    if source.task == "text-classification":
        longest = int(pre["max_length"])
        seq = min(profile.bench.seq_len or longest, longest)
        static: list[str] = []
        for name in source.view.input_names:
            static += ["--shapes", f"{name}:1x{seq}"]
        return {"static": static, "dynamic": ["--max-batch", "1", "--max-seq-len", str(longest)]}
    return {"static": ["--max-batch", "1"], "dynamic": ["--max-batch", "1"]}


def _parent_ok(c: Candidate, candidates: list[Candidate]) -> bool:
    if c.source in ("base", "checkpoint"):
        return True
    parent = {"fp32": "onnxruntime fp32", "int8": "onnxruntime static-int8"}[c.source]
    return any(x.recipe == parent and x.status == "ok" for x in candidates)


def _build(c: Candidate, source: Artifact, timeout: float | None) -> None:
    """Run the stage's command in a child process; read accuracy and size from what it wrote."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "edgeptm", *c.stage, "--out", str(c.out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        c.status, c.reason = "skipped", f"time budget: the build ran past {timeout:.0f} s and was stopped"
        c.build_s = round(time.perf_counter() - started, 1)
        return
    c.build_s = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
        c.reason = _last_error(done.stderr) or f"exit status {done.returncode}"
        # the stage's own accuracy guard (the profile's quantize.max_accuracy_drop) refused it: built, too lossy
        c.status = "rejected" if "above the allowed drop" in c.reason else "failed"
        return
    try:
        artifact = open_artifact(c.out)
    except EdgeptmError as exc:
        c.status, c.reason = "failed", f"built, but the artifact does not open: {exc}"
        return
    c.accuracy = artifact.metrics.get("accuracy")
    c.size_mb = round(artifact.size_bytes(["model", "weights"]) / 1e6, 2)
    c.status = "ok" if c.accuracy is not None else "rejected"
    if c.accuracy is None:
        c.reason = "accuracy not measured: nothing to hold it to the budget"


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("edgeptm: error:")]
    text = (errors or lines or [""])[-1]
    return text.removeprefix("edgeptm: error:").strip()[:500]


def _bench(
    candidates: list[Candidate], profile: Profile, threads: list[int | None], options: OptimizeOptions
) -> dict[str, Any] | None:
    """Every built candidate in one bench run (each in its own process, interleaved rounds)."""
    from edgeptm.benchmarking import BenchOptions, bench

    _mark_duplicates(candidates)
    ready = [c for c in candidates if c.status == "ok"]
    if not ready:
        return None
    artifacts = [open_artifact(c.out) for c in ready]
    served = [int(a.preprocessing["max_length"]) for a in artifacts if a.view.text]
    seq_len = min(profile.bench.seq_len or min(served), min(served)) if served else None
    settings = BenchOptions(
        profile=profile,
        duration=options.duration,
        seq_len=seq_len,
        thread_counts=None if threads == [None] else [t for t in threads if t],
    )
    log.info("timing %d candidates (%s threads, %g s each)", len(ready), threads, options.duration)
    try:
        report = bench([c.out for c in ready], settings)
    except EdgeptmError as exc:
        for c in ready:
            c.status, c.reason = "not timed", f"bench failed: {exc}"
        return None
    by_path: dict[str, list[dict[str, Any]]] = {}
    for r in report["results"]:
        by_path.setdefault(str(Path(r["artifact"]).resolve()), []).append(r)
    for c in ready:
        rows = by_path.get(str(c.out.resolve()), [])
        c.timings = [
            {k: r.get(k) for k in ("threads", "status", "p50_ms", "p90_ms", "reason")} for r in rows
        ]  # fmt: skip
        timed = [r for r in rows if r.get("status", "ok") == "ok" and r.get("p50_ms") is not None]
        if not timed:
            c.status = "not timed"
            c.reason = next((str(r.get("reason")) for r in rows if r.get("reason")), "no timing")
            continue
        best = min(timed, key=lambda r: r["p50_ms"])
        c.p50_ms, c.p90_ms, c.threads = best["p50_ms"], best.get("p90_ms"), best.get("threads")
    return report


def identity(artifact: Artifact) -> str:
    """What decides how an artifact runs: its runtime, the bytes of every file it runs (data files
    excluded: the validation and calibration samples it carries) and the run-time settings its
    manifest gives the runtime. Two artifacts with the same identity run the same computation."""
    import json

    files = sorted(
        (role, f["sha256"]) for role, f in artifact.manifest.get("files", {}).items() if not role.endswith("_data")
    )
    compiled = artifact.manifest.get("compile") or {}
    settings = {
        "runtime": artifact.manifest.get("runtime"),
        "target": compiled.get("target"),
        "hints": {k: v for k, v in compiled.items() if k.endswith("_hint") or k == "static_shapes"},
    }
    return json.dumps([artifact.kind, files, settings], sort_keys=True, default=str)


def _mark_duplicates(candidates: list[Candidate]) -> None:
    """A recipe that built the very model an earlier one built (a fallback search that kept every node
    INT8, an accuracy control that reverted nothing) is not timed twice: its row names the twin. The
    earlier recipe (the cheaper build) stands for both."""
    seen: dict[str, Candidate] = {}
    for c in candidates:
        if c.status != "ok":
            continue
        try:  # verified when it was built (_build): the recorded digests stand for the files
            key = identity(open_artifact(c.out, verify=False))
        except (EdgeptmError, KeyError):
            continue
        twin = seen.setdefault(key, c)
        if twin is not c:
            c.status = "duplicate"
            c.reason = f"the same model as '{twin.recipe}' (byte for byte, same run-time settings): timed once, there"


def _choose(candidates: list[Candidate], max_drop: float) -> Candidate | None:
    """The fastest timed candidate within the budget; the others get why they lost."""
    timed = [c for c in candidates if c.status == "ok" and c.p50_ms is not None]
    within = [c for c in timed if c.accuracy_delta_points is not None and -c.accuracy_delta_points <= max_drop + 1e-9]
    for c in timed:
        if c not in within:
            c.status = "rejected"
            c.reason = f"lost {-c.accuracy_delta_points:.2f} accuracy points, above the allowed {max_drop:g}"
    if not within:
        return None
    chosen = min(within, key=lambda c: c.p50_ms)
    chosen.status, chosen.reason = "chosen", "the fastest within the accuracy budget"
    ties = [c for c in within if c is not chosen and c.p50_ms <= chosen.p50_ms * (1 + TIE)]
    if ties:
        names = ", ".join(f"'{c.recipe}'" for c in ties)
        chosen.reason += f"; within {TIE:.0%} of it: {names} (a tie in one run; rerun to order them)"
    for c in within:
        if c is not chosen:
            c.reason = f"slower: p50 {c.p50_ms / chosen.p50_ms:.2f}x the chosen one's"
            if c in ties:
                c.reason += f" (within {TIE:.0%}: a tie)"
    for c in timed:
        if c.status == "rejected" and c.p50_ms < chosen.p50_ms:
            c.reason += f" (p50 {c.p50_ms / chosen.p50_ms:.2f}x the chosen one's)"
    return chosen


# ---- reports -----------------------------------------------------------------------------------

HEADERS = ("recipe", "status", "accuracy", "vs FP32 (pt)", "p50 ms", "p90 ms", "threads", "size MB", "build s", "why")


def _cells(c: dict[str, Any]) -> list[str]:
    def num(v: Any, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    return [
        c["recipe"],
        c["status"],
        num(c["accuracy"], ".4f"),
        num(c["accuracy_delta_points"], "+.2f"),
        num(c["p50_ms"], ".3f"),
        num(c["p90_ms"], ".3f"),
        "" if c["threads"] is None else str(c["threads"]),
        num(c["size_mb"], ".2f"),
        num(c["build_s"], ".1f"),
        c["reason"],
    ]


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# edgeptm optimize: {report['profile']['name']}",
        "",
        f"Checkpoint `{report['checkpoint']}`; accuracy budget {report['max_accuracy_drop']:g} points from the "
        f"FP32 export ({_acc(report['reference']['accuracy'])}) on {report['validation']}.",
        "",
        f"**Chosen:** {report['chosen_recipe'] or 'none'}" + (f" (`{report['chosen']}`)" if report["chosen"] else ""),
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" for _ in HEADERS) + "|",
    ]
    for c in report["candidates"]:
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in _cells(c)) + " |")
    bench = report.get("bench") or {}
    lines += ["", f"Timed: {bench.get('timed') or '-'}; {bench.get('method') or 'nothing timed'}."]
    env = report.get("environment", {})
    lines += [
        "",
        f"Measured on {env.get('cpu')} ({env.get('cpu_count')} cores) in {report['seconds']:.0f} s"
        + (f" (budget {report['max_minutes']:g} min)" if report.get("max_minutes") else "")
        + "; every candidate's command is in the JSON report.",
        "",
    ]
    return "\n".join(lines)


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def to_html(report: dict[str, Any]) -> str:
    import html

    from edgeptm.benchmarking.charts import pareto_chart
    from edgeptm.benchmarking.report import CSS

    e = html.escape
    points = [
        {
            "label": c["recipe"],
            "x": c["p50_ms"],
            "y": c["accuracy"],
            "status": c["status"],
            "chosen": c["status"] == "chosen",
        }
        for c in report["candidates"]
    ]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>edgeptm optimize: {e(report['profile']['name'])}</title>",
        f"<style>\n{CSS}</style></head><body>",
        f"<h1>edgeptm optimize: {e(report['profile']['name'])}</h1>",
        f"<p>{e(report['profile'].get('description') or '')}</p>",
        f"<p>Checkpoint <code>{e(report['checkpoint'])}</code>; accuracy budget {report['max_accuracy_drop']:g} "
        f"points from the FP32 export ({_acc(report['reference']['accuracy'])}).</p>",
        f"<p><b>Chosen:</b> {e(report['chosen_recipe'] or 'none')}"
        + (f" (<code>{e(report['chosen'])}</code>)" if report["chosen"] else "")
        + "</p>",
        "<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEADERS) + "</tr></thead><tbody>",
    ]
    for c in report["candidates"]:
        cls = {"chosen": "ok", "failed": "bad", "rejected": "bad"}.get(c["status"], "")
        out.append(
            f'<tr class="{cls}">' + "".join(f"<td>{e(x)}</td>" for x in _cells(c)) + "</tr>"
        )  # fmt: skip
    out += ["</tbody></table>", "<h2>Accuracy against latency</h2>"]
    out.append(pareto_chart(points, "p50 latency, ms (lower is better)", "validation accuracy", title="Candidates"))
    bench = report.get("bench") or {}
    out += [f"<p>Timed: {e(str(bench.get('timed') or '-'))}; {e(str(bench.get('method') or 'nothing timed'))}.</p>"]
    out += ["</body></html>"]
    return "\n".join(out) + "\n"


def write_reports(report: dict[str, Any], out: Path) -> list[Path]:
    texts = {".md": to_markdown(report), ".html": to_html(report)}
    paths = [out / f"{REPORT_NAME}.json"]
    write_json_atomic(paths[0], report)
    for suffix, text in texts.items():
        path = out / f"{REPORT_NAME}{suffix}"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        paths.append(path)
    return paths
