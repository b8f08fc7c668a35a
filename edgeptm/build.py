"""One command per device: export, quantize, compile and bench a checkpoint for a device profile.

``build`` chains the public stage functions with the profile's settings and writes one report.
Each stage's artifact is written atomically into its own directory under ``out``; a stage whose
runtime this machine lacks (``RuntimeUnavailable``: a GPU compiler without a GPU, say) is recorded
as skipped, with the reason and the command that runs it on the device, and the stages after it go
on with what exists. A stage that fails stops the build, an engine that was built and then fails to
load or validate included; the report (written last, atomically) says which and why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeptm.artifacts import Artifact, check_out_dir, set_aside, write_json_atomic
from edgeptm.sources import open_source
from edgeptm.errors import EdgeptmError, RuntimeUnavailable, UsageError
from edgeptm.profiles import Profile, resolve_profile

log = logging.getLogger(__name__)

REPORT_SCHEMA_VERSION = 1


@dataclass
class BuildOptions:
    profile: str | Profile | None = None
    calib: str | None = None  # static INT8 and compilers' INT8 calibration inputs (default: the checkpoint's sample)
    val: str | None = None  # labelled data to score on (default: the checkpoint's validation split)
    bench: bool = True
    duration: float | None = None  # bench: seconds per variant instead of the profile's iteration count
    max_length: int | None = None  # text: the export (and what is built from it) serves up to this many tokens


@dataclass
class Stage:
    name: str
    status: str = "pending"  # done | skipped | failed
    artifact: str | None = None
    detail: str = ""
    seconds: float = 0.0
    record: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}, "")}


def _run(stage: Stage, work: Callable[[], Any], skippable: bool = False) -> Any:
    started = time.perf_counter()
    try:
        result = work()
    except RuntimeUnavailable as exc:
        if not skippable:
            stage.status, stage.detail = "failed", str(exc)
            raise
        stage.status, stage.detail = "skipped", str(exc)  # a runtime that is not here: go on without it
        return None
    except EdgeptmError as exc:
        stage.status, stage.detail = "failed", str(exc)
        raise
    finally:
        stage.seconds = round(time.perf_counter() - started, 1)
    stage.status = "done"
    if isinstance(result, Artifact):
        stage.artifact = str(result.path)
    return result


def build(
    checkpoint: str | Path | Artifact, out: str | Path, options: BuildOptions, force: bool = False
) -> dict[str, Any]:
    """Build every artifact the profile asks for; returns the report (also written to ``out``).

    With ``force`` an existing ``out`` is set aside, and deleted only once the new build is complete
    (restored if it fails): artifacts are built at their final paths, which manifests record."""
    from edgeptm import targets
    from edgeptm.exporter import serving_preprocessing

    profile = resolve_profile(options.profile)
    if profile is None:
        raise UsageError("build needs --profile NAME (see 'edgeptm profiles list')")
    out = Path(out)
    # What the build reads, which --out (replaced with --force) may not equal, contain or lie in.
    given = None if isinstance(checkpoint, Artifact) or not Path(checkpoint).exists() else checkpoint  # not a name
    inputs = [options.calib, options.val, profile.path, given]
    check_out_dir(out, force, inputs)
    source = open_source(checkpoint)
    inputs.append(source.path)  # a registered model's cached checkpoint, or the artifact given
    if source.kind != "checkpoint":
        raise UsageError(
            f"{source.path}: build takes a checkpoint artifact (from 'edgeptm finetune'), not {source.kind}"
        )
    if source.task == "text-generation":
        raise UsageError(
            f"{source.path}: build runs the classifier path; for a generator use 'edgeptm export' then "
            "'edgeptm quantize --mode int4|int8'"
        )
    target = targets.find(profile.compile.target)
    if options.max_length is not None:
        serving_preprocessing(source, options.max_length)  # refused here, before any work, if it cannot be served
        tuned = source.preprocessing["max_length"]
        if target is not None and target.build_from == "checkpoint" and options.max_length != tuned:
            raise UsageError(
                f"--max-length: the {profile.name} profile compiles {target.name} from the checkpoint, which serves "
                f"{tuned} tokens; fine-tune with --max-length {options.max_length}"
            )
    check_out_dir(out, force, inputs)  # again, with the opened source, before --out is touched
    # The old --out stays aside until the new build is complete (put back if it fails or is killed).
    with set_aside(out) as replacing:
        return _build(source, out, options, profile, replacing)


def _build(source: Artifact, out: Path, options: BuildOptions, profile: Profile, replacing: bool) -> dict[str, Any]:
    """The stages, into ``out``; ``replacing``: an old --out waits aside, restored if this fails."""
    from edgeptm import targets
    from edgeptm.compile import CompileOptions, compile
    from edgeptm.environment import describe
    from edgeptm.exporter import ExportOptions, export
    from edgeptm.quantization import DEFAULT_MODE, QuantizeOptions, quantize

    target = targets.find(profile.compile.target)
    mode = profile.quantize.mode or DEFAULT_MODE.get(source.task, "dynamic-int8")
    stages = [
        Stage("export"),
        Stage(f"quantize ({mode})"),
        Stage(f"compile ({target.name if target else 'none'})"),
        Stage("bench"),
    ]
    export_stage, quantize_stage, compile_stage, bench_stage = stages
    report: dict[str, Any] = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "checkpoint": str(source.path),
        "profile": profile.record() | {"description": profile.description},
        "out": str(out),
        "stages": stages,
        "environment": describe(),
    }
    if options.max_length is not None:
        report["max_length"] = {"served": options.max_length, "checkpoint": source.preprocessing["max_length"]}
    variants: list[tuple[str, Artifact]] = [("PyTorch FP32 (checkpoint)", source)]
    try:
        export_options = ExportOptions(profile=profile, max_length=options.max_length)
        onnx = _run(export_stage, lambda: export(source, out / "onnx", export_options))
        variants.append(("ONNX Runtime FP32", onnx))
        quantized = _run(
            quantize_stage,
            lambda: quantize(onnx, out / mode, QuantizeOptions(profile=profile, calib=options.calib, val=options.val)),
        )
        variants.append((f"ONNX Runtime {mode}", quantized))
        quantize_stage.record = {"metrics": quantized.metrics}
        if target is None:
            compile_stage.status = "skipped"
            compile_stage.detail = "the profile compiles nothing: ONNX Runtime runs the ONNX artifacts directly"
        else:
            # the checkpoint, the FP32 export (a target that quantizes it itself) or the quantized ONNX
            parent = {"checkpoint": source, "export": onnx, "quantize": quantized}[target.build_from]
            # --calib reaches the compilers that calibrate, as it reaches static INT8
            precision = profile.compile.precision or "fp32"
            calib = options.calib if target.calibrates(source.task, precision) else None
            compile_options = CompileOptions(profile=profile, calib=calib)

            def compile_engine() -> Artifact:
                from edgeptm.compile import resolve

                _, resolved = resolve(compile_options)
                target.check_runtime(resolved.settings)  # RuntimeUnavailable: skipped, before any work
                return compile(parent, out / "engine", compile_options)

            engine = _run(compile_stage, compile_engine, skippable=True)
            if engine is None:
                command = f"edgeptm compile {parent.path} --profile {profile.name} --out {out / 'engine'}"
                command += f" --calib {calib}" if calib else ""
                compile_stage.detail += f". On the device, run: {command}"
            else:
                variants.append((f"{target.name} engine", engine))
                compile_stage.record = {"compile": engine.manifest["compile"], "metrics": engine.metrics}
        if options.bench:
            _run(bench_stage, lambda: _bench(variants, profile, options, report))
        else:
            bench_stage.status, bench_stage.detail = "skipped", "--no-bench"
    except EdgeptmError as exc:
        failed = next((s.name for s in stages if s.status == "failed"), "build")
        for stage in stages:
            if stage.status == "pending":
                stage.status, stage.detail = "skipped", "an earlier stage failed"
        where = f"{out} left as it was" if replacing else f"report: {out / 'build-report.md'}"
        raise type(exc)(f"{failed}: {exc} ({where})") from None
    finally:
        report["variants"] = [{"variant": name, "artifact": str(a.path), **_summary(a)} for name, a in variants]
        report["stages"] = [s.as_dict() for s in stages]
        write_json_atomic(out / "build-report.json", report)
        _write_atomic_text(out / "build-report.md", markdown(report))
    return report


def _summary(artifact: Artifact) -> dict[str, Any]:
    m = artifact.metrics
    return {
        "precision": artifact.manifest.get("precision", "fp32"),
        "size_mb": round(artifact.size_bytes(["model", "weights"]) / 1e6, 2),
        "accuracy": m.get("accuracy"),
        "accuracy_delta_points": m.get("accuracy_delta_points"),
    }


def _bench(variants: list[tuple[str, Artifact]], profile: Profile, options: BuildOptions, report: dict) -> None:
    from edgeptm.benchmarking import BenchOptions, bench

    # The profile's sequence is meant for any model, as in compile: cut to what the built artifacts serve
    # (a static IR compiled at that length takes nothing longer, and the predictor cuts texts to it): the
    # export's length (--max-length, else the checkpoint's). The checkpoint itself runs any length.
    built = [a for _, a in variants if a.kind != "checkpoint"] or [variants[0][1]]
    served = [a.view.preprocessing.max_length for a in built if a.view.text]
    longest = min(served) if served else None
    seq_len = min(profile.bench.seq_len, int(longest)) if longest and profile.bench.seq_len else None
    settings = BenchOptions(profile=profile, duration=options.duration, seq_len=seq_len)
    report["bench"] = bench([a.path for _, a in variants], settings)


def _write_atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def markdown(report: dict[str, Any]) -> str:
    """The report for people: stages, then variants with accuracy and latency."""
    lines = [
        f"# edgeptm build: {report['profile']['name']}",
        "",
        f"{report['profile']['description']}",
        "",
        f"Checkpoint: `{report['checkpoint']}`"
        + (
            f" (fine-tuned at {report['max_length']['checkpoint']} tokens; built to serve "
            f"{report['max_length']['served']})"
            if report.get("max_length")
            else ""
        ),
        "",
        "| stage | status | seconds | artifact | detail |",
        "|---|---|---|---|---|",
    ]
    for s in report["stages"]:
        detail = s.get("detail", "").replace("|", "\\|")
        lines.append(f"| {s['name']} | {s['status']} | {s.get('seconds', '')} | {s.get('artifact', '')} | {detail} |")
    timings = {r["artifact"]: r for r in (report.get("bench") or {}).get("results", [])}
    lines += [
        "",
        "| variant | precision | size MB | accuracy | vs parent (pt) | p50 ms | p90 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in report.get("variants", []):
        t = timings.get(v["artifact"], {})
        acc = f"{v['accuracy']:.4f}" if v.get("accuracy") is not None else ""
        delta = f"{v['accuracy_delta_points']:+.2f}" if v.get("accuracy_delta_points") is not None else ""
        p50 = f"{t['p50_ms']:.3f}" if t.get("p50_ms") is not None else ""
        p90 = f"{t['p90_ms']:.3f}" if t.get("p90_ms") is not None else ""
        if t.get("status") == "unrunnable":  # say why there is no time, where the time would be
            p50, p90 = "not timed: " + str(t.get("reason", "")).replace("|", "\\|"), ""
        lines.append(f"| {v['variant']} | {v['precision']} | {v['size_mb']} | {acc} | {delta} | {p50} | {p90} |")
    timed = next(iter(timings.values()), None)
    if timed is not None:
        sequence = f", sequence {timed['seq_len']}" if timed.get("seq_len") else ""
        threads = f"{timed['threads']} threads" if timed.get("threads") else "the runtime's default threads"
        lines += ["", f"Timed at batch {timed['batch_size']}{sequence}, {threads}, each in its own process."]
    env = report.get("environment", {})
    gpus = ", ".join(g["name"] for g in env.get("gpus", [])) or "none"
    lines += [
        "",
        f"Measured on this machine: {env.get('cpu')} ({env.get('cpu_count')} cores), GPU: {gpus}; "
        "latency on the profile's device will differ.",
        "",
    ]
    return "\n".join(lines)
