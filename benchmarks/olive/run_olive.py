"""Microsoft Olive 0.13 on an edgeptm FP32 ONNX artifact: its one-command path and a search.

Runs in Olive's venv (benchmarks/olive/.venv, see setup.sh); imports no edgeptm. It reads the
artifact's model.onnx and manifest.json, and the feeds prepare_data.py wrote from the artifact with
edgeptm's own preprocessing (calib.npz, val.npz, latency.npz; loaded by olive_data.py, the
user_script), so Olive calibrates, scores and times exactly edgeptm's inputs.

Runs (each Olive run in its own process, timed from start to exit; summary in
out/<name>/<run>/summary.json and out/<name>-<run>.json; Olive's best model copied to
out/<name>/<run>/model.onnx):

  optimize   `olive optimize -m model.onnx --precision int8 --provider CPUExecutionProvider --device cpu
             --dry_run --save_config_file` writes the workflow (OnnxPeepholeOptimizer ->
             OnnxStaticQuantization, QOperator, calibration provider CUDA: ORT warns and calibrates
             on the CPU); its wikitext-2 data config (a Hub download through the undeclared
             `datasets`, text for a tokenizer an ONNX model has not got) is replaced by our
             calibration feeds and our evaluator (accuracy + latency) is added; then it runs.
  auto-opt   The same with `olive auto-opt ... --precision int8` (OnnxPeepholeOptimizer ->
             OrtTransformersOptimization (skips itself: no model_type for an ONNX input) ->
             OnnxDynamicQuantization -> ExtractAdapters); needs no data, evaluator added.
  search     One workflow: OnnxQuantization over a search space (quant_mode static QDQ / dynamic,
             per_channel, reduce_range, static calibrate_method) -> OrtSessionParamsTuning (2 intra-op
             threads, 1 inter-op, sequential; graph optimization level searched), evaluated on our
             validation split (accuracy; goal: at most --max-drop below FP32) and latency (batch 1,
             edgeptm's feed), search strategy --execution-order/--sampler (joint, sequential = every
             point). Olive 0.13's joint search loses every point that reuses a pass output made
             earlier in the run ("FootprintNode" object has no field "model_config"): it logs the
             point as FAILED and carries on. Those points and their error are recorded; then
             (--search-fallback auto) the same space runs with execution_order pass-by-pass, and if
             that loses points too, each point runs as its own workflow (one shared cache), ranked
             here on Olive's metrics with Olive's rule (accuracy goal first, then latency).

    benchmarks/olive/.venv/bin/python benchmarks/olive/run_olive.py --name minilm \
        --artifact runs/demo/onnx-fp32 --data benchmarks/olive/out/minilm/data [--runs optimize,search] \
        [--val-limit N] [--calib-limit N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
USER_SCRIPT = HERE / "olive_data.py"

# Olive 0.13 sends a telemetry heartbeat even with OLIVE_DISABLE_TELEMETRY=1 (it is logged before
# that variable is read, and cached on disk for a retry when sending fails); only a CI variable
# stops it before it is made. Nothing else in Olive reads CI.
OLIVE_ENV = {
    "OLIVE_DISABLE_TELEMETRY": "1",
    "CI": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}
THREADS = 2  # edgeptm's harness times with 2 intra-op threads, 1 inter-op, sequential
SESSION_OPTIONS = {
    "intra_op_num_threads": THREADS,
    "inter_op_num_threads": 1,
    "execution_mode": 0,
    "graph_optimization_level": 99,
}


def rel(path: Path | str) -> str:
    """A path relative to the repository when it lies inside it (summaries carry no machine paths)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------------------- configs


def data_configs(data: Path, val_limit: int | None, calib_limit: int | None) -> list[dict[str, Any]]:
    def one(name: str, kind: str, limit: int | None, post: str | None = None) -> dict[str, Any]:
        config = {
            "name": name,
            "type": "DataContainer",
            "user_script": str(USER_SCRIPT),
            "script_dir": str(HERE),
            "load_dataset_config": {
                "type": "edgeptm_feeds",
                "params": {"data_dir": str(data), "kind": kind, "limit": limit},
            },
            "dataloader_config": {"type": "no_auto_batch_dataloader"},
        }
        if post:
            config["post_process_data_config"] = {"type": post}
        return config

    return [
        one("edgeptm_calib", "calib", calib_limit),
        one("edgeptm_val", "val", val_limit, post="text_classification_post_process"),  # argmax over dim 1
        one("edgeptm_latency", "latency", None),
    ]


def evaluator(num_classes: int, args: argparse.Namespace, session_options: bool) -> dict[str, Any]:
    latency: dict[str, Any] = {
        "name": "latency",
        "type": "latency",
        "data_config": "edgeptm_latency",
        "sub_types": [
            {
                "name": "avg",
                "priority": 2,
                "metric_config": {"warmup_num": args.warmup, "repeat_test_num": args.repeat},
            },
            {"name": "p50", "metric_config": {"warmup_num": args.warmup, "repeat_test_num": args.repeat}},
        ],
    }
    if session_options:  # the search's models carry the tuned session options instead
        latency["user_config"] = {"inference_settings": {"onnx": {"session_options": SESSION_OPTIONS}}}
    config: dict[str, Any] = {"type": args.evaluator_type} if args.evaluator_type else {}  # see README
    return {
        **config,
        "metrics": [
            {
                "name": "accuracy",
                "type": "accuracy",
                "data_config": "edgeptm_val",
                "sub_types": [
                    {
                        "name": "accuracy_score",
                        "priority": 1,
                        "metric_config": {"task": "multiclass", "num_classes": num_classes},
                        "goal": {"type": "max-degradation", "value": args.max_drop},
                    }
                ],
            },
            latency,
        ],
    }


def local_system() -> dict[str, Any]:
    return {"type": "LocalSystem", "accelerators": [{"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}]}


def input_model(model_path: Path) -> dict[str, Any]:
    return {"type": "ONNXModel", "model_path": str(model_path)}


def search_space(args: argparse.Namespace) -> dict[str, Any]:
    """The searched parameters, as Olive's own search-parameter JSON (built with its classes)."""
    from olive.search.search_parameter import Categorical, Conditional

    def cat(values: list[Any]) -> Any:
        return Categorical(values).to_json() if len(values) > 1 else values[0]

    static_only = Conditional(
        parents=("quant_mode",),
        support={("static",): Categorical(args.calib_methods)},
        default=Conditional.get_ignored_choice(),
    )
    return {
        "quantization": {
            "quant_mode": cat(args.quant_modes),
            "per_channel": cat(args.per_channel),
            "reduce_range": cat(args.reduce_range),
            "calibrate_method": static_only.to_json() if len(args.calib_methods) > 1 else args.calib_methods[0],
        },
        "session_params_tuning": {"opt_level_list": cat(args.opt_levels)},
    }


def search_passes(args: argparse.Namespace, space: dict[str, Any]) -> dict[str, Any]:
    return {
        "quantization": {
            "type": "OnnxQuantization",
            "data_config": "edgeptm_calib",
            "precision": "int8",
            "quant_format": "QDQ",
            "quant_preprocess": True,  # ORT's quant_pre_process (shape inference + graph cleanup) first
            "calibration_providers": ["CPUExecutionProvider"],
            **space["quantization"],
        },
        "session_params_tuning": {
            "type": "OrtSessionParamsTuning",
            "data_config": "edgeptm_latency",
            "providers_list": "CPUExecutionProvider",
            "cpu_cores": THREADS,
            "intra_thread_num_list": THREADS,
            "inter_thread_num_list": 1,
            "execution_mode_list": 0,  # ORT_SEQUENTIAL
            **space["session_params_tuning"],
        },
    }


def search_points(args: argparse.Namespace) -> list[dict[str, dict[str, Any]]]:
    """Every point of the search space, each as fixed pass parameters (the per-point fallback)."""
    points = []
    grid = itertools.product(args.quant_modes, args.per_channel, args.reduce_range, args.opt_levels)
    for mode, per_channel, reduce_range, opt in grid:
        for method in args.calib_methods if mode == "static" else [None]:
            quant = {"quant_mode": mode, "per_channel": per_channel, "reduce_range": reduce_range}
            if method:
                quant["calibrate_method"] = method
            points.append({"quantization": quant, "session_params_tuning": {"opt_level_list": opt}})
    return points


def engine(run_dir: Path, cache: Path, search: dict[str, Any] | None) -> dict[str, Any]:
    config = {
        "host": "local_system",
        "target": "local_system",
        "evaluator": "edgeptm_eval",
        "evaluate_input_model": True,
        "cache_dir": str(cache),
        "output_dir": str(run_dir / "olive"),
        "log_severity_level": 1,
    }
    if search:
        config["search_strategy"] = search
    return config


# -------------------------------------------------------------------------------- running Olive


def run_olive_process(argv: list[str], log: Path) -> tuple[int, float]:
    """Run an Olive command in its own process (Olive's env), its output teed to ``log``; (rc, wall s)."""
    env = {**os.environ, **OLIVE_ENV}
    started = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=str(log.parent))
    return proc.returncode, time.perf_counter() - started


def run_workflow(config: dict[str, Any], run_dir: Path, name: str) -> dict[str, Any]:
    """Run one Olive workflow (``olive.workflows.run``, what `olive run --config` calls) in a child
    process; returns what it wrote (outputs, metrics, chain) plus rc, wall time and the error line."""
    config_path = run_dir / f"{name}.config.json"
    result_path = run_dir / f"{name}.result.json"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    result_path.unlink(missing_ok=True)
    rc, wall = run_olive_process(
        [sys.executable, str(Path(__file__).resolve()), "--_workflow", str(config_path), str(result_path)],
        run_dir / f"{name}.log",
    )
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    result.update(rc=rc, wall_s=round(wall, 2), config=rel(config_path), log=rel(run_dir / f"{name}.log"))
    if rc != 0 and "error" not in result:
        result["error"] = last_error_line(run_dir / f"{name}.log")
    return result


def last_error_line(log: Path) -> str | None:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line or "Exception" in line:
            return line
    return lines[-1] if lines else None


def _workflow_child(config_path: str, result_path: str) -> int:
    """In the child: run the workflow and write its outputs, in plain JSON."""
    from olive.workflows import run as olive_run

    result: dict[str, Any] = {}
    try:
        output = olive_run(config_path)
        result["has_output_model"] = bool(output and output.has_output_model())
        if output is not None:
            result["input_model_metrics"] = output.get_input_model_metrics()
            best = output.get_best_candidate()
            result["best"] = describe_output(output, best) if best else None
            result["outputs"] = [describe_output(output, m) for m in output.get_output_models()]
            result["footprint"] = [
                {
                    "model_id": node.model_id,
                    "parent_model_id": node.parent_model_id,
                    "from_pass": node.from_pass,
                    "pass_run_config": node.pass_run_config,
                    "metrics": node.metrics.value.to_json() if node.metrics and node.metrics.value else None,
                }
                for node in output.footprint.nodes.values()
            ]
        code = 0
    except Exception as exc:  # recorded, not hidden: the summary keeps the exact error
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc().splitlines()[-12:]
        traceback.print_exc()
        code = 1
    Path(result_path).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return code


def describe_output(output: Any, model: Any) -> dict[str, Any]:
    chain, nodes, model_id = [], output.footprint.nodes, model.model_id
    while model_id is not None and model_id in nodes:  # newest first, up to the input model
        node = nodes[model_id]
        if node.from_pass:
            chain.append({"model_id": model_id, "pass": node.from_pass, "config": node.pass_run_config})
        model_id = node.parent_model_id
    return {
        "model_id": model.model_id,
        "model_path": model.model_path,
        "metrics": model.metrics_value,
        "inference_settings": model.get_inference_config(),
        "pass_chain": list(reversed(chain)),
    }


# ---------------------------------------------------------------------------------------- runs


def copy_model(model_path: str | None, dest: Path) -> str | None:
    """Copy Olive's output ONNX (and its external data, if any) to ``dest``/model.onnx."""
    if not model_path:
        return None
    src = Path(model_path)
    if src.is_dir():
        found = sorted(src.glob("*.onnx"))
        if not found:
            return None
        src = found[0]
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest / "model.onnx")
    for extra in src.parent.glob(src.name + ".data"):
        shutil.copy2(extra, dest / "model.onnx.data")
    return rel(dest / "model.onnx")


def summarize(
    name: str, run: str, args: argparse.Namespace, run_dir: Path, result: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    best = result.get("best") or {}
    summary = {
        "model": name,
        "run": run,
        "olive": olive_version(),
        "artifact": rel(args.artifact),
        "input_model": rel(args.artifact / "model.onnx"),
        "data": rel(args.data),
        "val_limit": args.val_limit,
        "calib_limit": args.calib_limit,
        "wall_s": result.get("wall_s"),
        "rc": result.get("rc"),
        "error": result.get("error"),
        "output_model": copy_model(best.get("model_path"), run_dir) if best else None,
        "olive_output_path": rel(best["model_path"]) if best.get("model_path") else None,
        "metrics": best.get("metrics"),
        "input_model_metrics": result.get("input_model_metrics"),
        "inference_settings": best.get("inference_settings"),
        "pass_chain": best.get("pass_chain"),
        **extra,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (args.out / f"{name}-{run}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def olive_version() -> str:
    from importlib.metadata import version

    return version("olive-ai")


CLI_COMMANDS = {
    # Olive's one-command paths for an ONNX input, INT8, CPU
    "optimize": ["optimize", "--precision", "int8", "--provider", "CPUExecutionProvider", "--device", "cpu"],
    "auto-opt": ["auto-opt", "--precision", "int8", "--provider", "CPUExecutionProvider", "--device", "cpu"],
}


def run_cli(args: argparse.Namespace, meta: dict[str, Any], run: str) -> dict[str, Any]:
    """`olive <command> --dry_run --save_config_file`, then the saved workflow with our data and evaluator."""
    run_dir = args.out / args.name / run
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    cli_out = run_dir / "cli"
    olive = str(Path(sys.executable).with_name("olive"))
    argv = [
        olive,
        *CLI_COMMANDS[run],
        "-m",
        str(args.artifact / "model.onnx"),
        "-o",
        str(cli_out),
        "--dry_run",
        "--save_config_file",
    ]
    cli = " ".join(
        [
            "olive",
            *CLI_COMMANDS[run],
            "-m",
            rel(args.artifact / "model.onnx"),
            "-o",
            rel(cli_out),
            "--dry_run",
            "--save_config_file",
        ]
    )
    rc, dry_wall = run_olive_process(argv, run_dir / "cli-dry-run.log")
    saved = cli_out / "config.json"
    if rc != 0 or not saved.is_file():
        return summarize(
            args.name,
            run,
            args,
            run_dir,
            {"rc": rc, "wall_s": round(dry_wall, 2), "error": last_error_line(run_dir / "cli-dry-run.log")},
            cli=cli,
        )
    config = json.loads(saved.read_text())
    cli_passes = json.loads(json.dumps(config["passes"]))
    changes = []
    ours = data_configs(args.data, args.val_limit, args.calib_limit)
    if config.get("data_configs"):
        changes.append(
            "data_configs: "
            + ", ".join(d["name"] for d in config["data_configs"])
            + " (wikitext-2 from the Hub, tokenized for a Hugging Face model; needs the undeclared `datasets`)"
            " -> our calibration feeds"
        )
    for pass_config in config["passes"].values():
        if pass_config.get("data_config") == "wikitext2_train":
            pass_config["data_config"] = "edgeptm_calib"
    config["data_configs"] = ours
    config["evaluators"] = {"edgeptm_eval": evaluator(meta["num_classes"], args, session_options=True)}
    config.update(
        evaluator="edgeptm_eval",
        evaluate_input_model=True,
        no_artifacts=False,
        output_dir=str(run_dir / "olive"),
        cache_dir=str(run_dir / "cache"),
        log_severity_level=1,
    )
    changes.append("added: evaluator (accuracy on our validation split + latency, 2 threads), output/cache dirs")
    result = run_workflow(config, run_dir, "workflow")
    return summarize(
        args.name,
        run,
        args,
        run_dir,
        result,
        cli=cli,
        cli_dry_run_wall_s=round(dry_wall, 2),
        saved_config_changes=changes,
        cli_config=rel(saved),
        cli_passes=cli_passes,
    )


def base_config(
    args: argparse.Namespace,
    meta: dict[str, Any],
    run_dir: Path,
    cache: Path,
    passes: dict[str, Any],
    search: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "input_model": input_model(args.artifact / "model.onnx"),
        "systems": {"local_system": local_system()},
        "data_configs": data_configs(args.data, args.val_limit, args.calib_limit),
        "evaluators": {"edgeptm_eval": evaluator(meta["num_classes"], args, session_options=False)},
        "passes": passes,
        **engine(run_dir, cache, search),
    }


def failed_points(log: Path) -> list[dict[str, str]]:
    """Search points Olive logged as FAILED (it goes on with the others and exits 0), each with the
    exception line of its traceback."""
    failed, lines = [], log.read_text(errors="replace").splitlines() if log.is_file() else []
    for i, line in enumerate(lines):
        if "search point" in line and line.rstrip().endswith("FAILED."):
            error = next(
                (l.strip() for l in lines[i + 1 : i + 60] if re.match(r"^[A-Za-z_.]+(Error|Exception): ", l.strip())),
                None,
            )
            failed.append({"point": line.split("search point", 1)[1].rsplit("...", 1)[0].strip(), "error": error})
    return failed


def run_search(args: argparse.Namespace, meta: dict[str, Any]) -> dict[str, Any]:
    run_dir = args.out / args.name / "search"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    space = search_space(args)
    passes = search_passes(args, space)
    attempts: list[dict[str, Any]] = []
    orders = [args.execution_order] + (
        ["pass-by-pass"] if args.execution_order == "joint" and args.search_fallback == "auto" else []
    )
    result: dict[str, Any] = {}
    for order in orders:
        strategy = {"execution_order": order, "sampler": args.sampler}
        if args.max_iter:
            strategy["max_iter"] = args.max_iter
        name = f"workflow-{order}"
        config = base_config(args, meta, run_dir / order, run_dir / f"cache-{order}", passes, strategy)
        result = run_workflow(config, run_dir, name)
        failed = failed_points(run_dir / f"{name}.log")
        points = sum(1 for n in result.get("footprint") or [] if n["from_pass"] == "ortsessionparamstuning")
        attempts.append(
            {
                "strategy": strategy,
                "rc": result.get("rc"),
                "wall_s": result.get("wall_s"),
                "error": result.get("error"),
                "failed_points": failed,
                "evaluated_outputs": points,
                "config": result.get("config"),
                "log": result.get("log"),
                "best_metrics": (result.get("best") or {}).get("metrics"),
            }
        )
        if result.get("rc") == 0 and result.get("best") and not failed:
            return summarize(
                args.name,
                "search",
                args,
                run_dir,
                result,
                strategy=strategy,
                search_space=space,
                attempts=attempts,
                footprint=result.get("footprint"),
                workaround=None
                if order == args.execution_order
                else f"execution_order {order} (the {args.execution_order} search lost points: see attempts)",
            )
    if args.search_fallback == "none":
        return summarize(
            args.name,
            "search",
            args,
            run_dir,
            result,
            strategy=attempts[-1]["strategy"],
            search_space=space,
            attempts=attempts,
            footprint=result.get("footprint"),
        )

    # last resort: each point of the same space as its own workflow, one cache shared by all
    points_dir = run_dir / "points"
    points_dir.mkdir()
    cache = run_dir / "points-cache"
    rows, started = [], time.perf_counter()
    for i, point in enumerate(search_points(args)):
        point_dir = points_dir / f"p{i:02d}"
        point_dir.mkdir()
        cfg = base_config(args, meta, point_dir, cache, search_passes(args, point), None)
        res = run_workflow(cfg, point_dir, "workflow")
        best = res.get("best") or {}
        rows.append(
            {
                "point": point,
                "rc": res.get("rc"),
                "wall_s": res.get("wall_s"),
                "error": res.get("error"),
                "metrics": best.get("metrics"),
                "model_path": best.get("model_path"),
                "inference_settings": best.get("inference_settings"),
                "pass_chain": best.get("pass_chain"),
                "input_model_metrics": res.get("input_model_metrics"),
            }
        )
    wall = time.perf_counter() - started
    chosen = rank_points(rows, args.max_drop)
    fallback = {
        "best": {k: chosen[k] for k in ("model_path", "metrics", "inference_settings", "pass_chain")}
        if chosen
        else None,
        "input_model_metrics": next((r["input_model_metrics"] for r in rows if r["input_model_metrics"]), None),
        "rc": 0 if chosen else 1,
        "wall_s": round(wall, 2),
        "error": None if chosen else "no search point produced a model",
    }
    for row in rows:
        row["model_path"] = rel(row["model_path"]) if row["model_path"] else None
    return summarize(
        args.name,
        "search",
        args,
        run_dir,
        fallback,
        search_space=space,
        attempts=attempts,
        workaround="each search point run as its own workflow (no search strategy), ranked here on Olive's metrics",
        chosen_point=chosen["point"] if chosen else None,
        points=rows,
    )


def _value(metrics: dict[str, Any] | None, key: str) -> float | None:
    if not metrics or key not in metrics:
        return None
    entry = metrics[key]
    return entry.get("value") if isinstance(entry, dict) else entry


def rank_points(rows: list[dict[str, Any]], max_drop: float) -> dict[str, Any] | None:
    """Olive's rule for the best candidate: goals met first (accuracy at most max_drop below FP32),
    then the objectives in priority order (accuracy, higher first; then latency avg, lower first)."""
    done = [r for r in rows if r["rc"] == 0 and r["metrics"]]
    if not done:
        return None
    fp32 = next((r["input_model_metrics"] for r in done if r["input_model_metrics"]), None)
    base = _value(fp32, "accuracy-accuracy_score")

    def key(row: dict[str, Any]) -> tuple:
        acc = _value(row["metrics"], "accuracy-accuracy_score") or 0.0
        lat = _value(row["metrics"], "latency-avg") or float("inf")
        met = base is None or acc >= base - max_drop
        return (not met, -acc, lat)

    return sorted(done, key=key)[0]


# ------------------------------------------------------------------------------------------ main


def parse_list(kind: type) -> Any:
    def parse(text: str) -> list[Any]:
        if kind is bool:
            return [item.strip().lower() in ("1", "true", "yes") for item in text.split(",")]
        return [kind(item.strip()) for item in text.split(",")]

    return parse


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--_workflow":
        return _workflow_child(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="short model name: out/<name>/<run>/")
    parser.add_argument("--artifact", type=Path, required=True, help="edgeptm FP32 ONNX artifact directory")
    parser.add_argument("--data", type=Path, required=True, help="prepare_data.py's output for this artifact")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--runs", default="optimize,auto-opt,search", help="any of optimize, auto-opt, search")
    parser.add_argument("--val-limit", type=int, default=None, help="first N validation inputs (smoke runs)")
    parser.add_argument("--calib-limit", type=int, default=None, help="first N calibration feeds (smoke runs)")
    parser.add_argument("--max-drop", type=float, default=0.01, help="accuracy goal: at most this below FP32")
    parser.add_argument("--warmup", type=int, default=10, help="Olive latency metric warmup_num (its default)")
    parser.add_argument("--repeat", type=int, default=20, help="Olive latency metric repeat_test_num (its default)")
    parser.add_argument("--evaluator-type", default="OnnxEvaluator")
    parser.add_argument("--quant-modes", type=parse_list(str), default=["static", "dynamic"])
    parser.add_argument("--per-channel", type=parse_list(bool), default=[False, True])
    parser.add_argument("--reduce-range", type=parse_list(bool), default=[False])
    parser.add_argument(
        "--calib-methods", type=parse_list(str), default=["MinMax"], help="static only: MinMax,Entropy,Percentile"
    )
    parser.add_argument(
        "--opt-levels",
        type=parse_list(int),
        default=[2, 99],
        help="ORT graph optimization levels to tune over (1,2,99)",
    )
    parser.add_argument("--sampler", default="sequential", help="Olive search sampler: sequential, random, tpe")
    parser.add_argument("--execution-order", default="joint", help="joint or pass-by-pass")
    parser.add_argument("--max-iter", type=int, default=None)
    parser.add_argument(
        "--search-fallback",
        choices=["auto", "points", "none"],
        default="auto",
        help="when the search loses points: auto = rerun pass-by-pass, then one workflow per point; "
        "points = one workflow per point at once; none = record only",
    )
    args = parser.parse_args()
    os.environ.update(OLIVE_ENV)

    args.artifact, args.data, args.out = args.artifact.resolve(), args.data.resolve(), args.out.resolve()
    meta = json.loads((args.data / "meta.json").read_text())
    for run in args.runs.split(","):
        summary = run_search(args, meta) if run == "search" else run_cli(args, meta, run)
        print(
            json.dumps(
                {k: summary.get(k) for k in ("model", "run", "wall_s", "rc", "error", "output_model", "metrics")},
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
