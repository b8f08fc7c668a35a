"""Compare two bench reports: per-variant ratios, and the regressions beyond a threshold (for CI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeptm.errors import BenchError

METRICS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms")


def read_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"{path}: no such report") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"{path}: not a readable JSON bench report ({exc})") from None
    if not isinstance(report, dict) or "results" not in report or "schema_version" not in report:
        raise BenchError(f"{path}: not an edgeptm bench report (no 'schema_version' or 'results')")
    return report


def _key(result: dict[str, Any]) -> tuple[Any, ...]:
    # A variant is the artifact's directory name on a backend at a shape: reports from different
    # checkouts or machines still pair up when the artifacts keep their names.
    return (
        Path(result["artifact"]).name,
        result.get("backend") or result.get("provider") or "",
        result["batch_size"],
        result.get("seq_len") or result.get("image_size"),
        result["threads"],
    )


def compare(
    old: dict[str, Any], new: dict[str, Any], threshold: float = 0.10, metric: str = "p50_ms"
) -> dict[str, Any]:
    """Ratios new/old of ``metric`` per variant; a ratio above 1 + threshold is a regression."""
    if metric not in METRICS:
        raise BenchError(f"metric '{metric}' is not one of {', '.join(METRICS)}")
    if threshold < 0:
        raise BenchError(f"--threshold must be >= 0, got {threshold}")
    # Rows that did not run (schema 2: status unrunnable/failed) have nothing to compare.
    old_by_key = {_key(r): r for r in old["results"] if r.get("status", "ok") == "ok"}
    new_by_key = {_key(r): r for r in new["results"] if r.get("status", "ok") == "ok"}
    rows = []
    for key in sorted(set(old_by_key) | set(new_by_key), key=str):
        before, after = old_by_key.get(key), new_by_key.get(key)
        row = {
            "variant": key[0],
            "backend": key[1],
            "batch_size": key[2],
            "seq_len": key[3],
            "threads": key[4],
            "old": before and before[metric],
            "new": after and after[metric],
            "ratio": None,
            "status": "",
        }
        if before is None or after is None:
            row["status"] = "only in new" if before is None else "only in old"
        else:
            row["ratio"] = after[metric] / before[metric]
            row["status"] = (
                "REGRESSION" if row["ratio"] > 1 + threshold else ("faster" if row["ratio"] < 1 - threshold else "same")
            )
        rows.append(row)
    notes = []
    if old.get("environment", {}).get("cpu") != new.get("environment", {}).get("cpu"):
        notes.append(
            f"different CPUs: {old.get('environment', {}).get('cpu')} vs {new.get('environment', {}).get('cpu')}"
        )
    return {
        "metric": metric,
        "threshold": threshold,
        "rows": rows,
        "notes": notes,
        "regressions": [r for r in rows if r["status"] == "REGRESSION"],
    }
