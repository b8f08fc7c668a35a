"""Bench reports for people choosing a model variant for a device: CSV, Markdown and one HTML page.

Every renderer takes the dict ``bench`` returns, schema 1 or 2 (2 adds variants, scenarios, statuses,
per-run samples, end-to-end figures and the offline batch search); a key a report lacks reads as
None. The HTML page is self-contained (inline CSS, charts drawn by matplotlib as inline SVG with their text kept
as text, no scripts, fonts or links), so it opens offline and travels as one file; the same report renders to
the same bytes, so two runs' pages diff line by line.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

import edgeptm.benchmarking.charts as charts
from edgeptm.artifacts import check_output_paths, write_json_atomic
from edgeptm.errors import BenchError

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "artifact", "variant", "backend", "provider", "precision", "scenario", "batch_size", "seq_len", "image_size",
    "threads", "status", "reason", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "std_ms", "cv", "min_ms",
    "max_ms", "throughput_per_s", "iterations", "e2e_p50_ms", "e2e_p90_ms", "load_s", "first_inference_ms",
    "warmup_runs", "peak_rss_mb", "size_mb", "accuracy", "warnings",
)  # fmt: skip
HEADERS = (
    "variant", "backend", "batch", "seq / image", "threads", "p50 ms", "p90 ms", "p99 ms", "throughput /s",
    "end-to-end p50 ms", "peak RSS MB", "size MB", "accuracy", "speedup", "status",
)  # fmt: skip
FIGURES = 5  # HEADERS from here on, up to status, are measurements: a row that did not run shows its reason there
BASE_RUNTIMES = ("torch", "onnxruntime")  # with the targets' packages: prefixes in environment.packages
SCENARIOS = {
    "single-stream": "one request at a time: the latency a user waits for",
    "offline": "the batch size that maximises throughput, searched per variant: the pace of a bulk job",
    "generation": "generators, one request at a time: p50 is the whole request (prefill and every new token); "
    "time to first token and decode speed are in the table below",
}
SPEEDUP_NOTE = (
    "speedup: against the first PyTorch result at the same batch, sequence or image size and threads "
    "(else the first result there); single-stream compares p50 latency, offline throughput."
)


def variant_name(result: dict[str, Any]) -> str:
    """The result's display name: its ``variant``, else its artifact directory and backend."""
    if result.get("variant"):
        return str(result["variant"])
    name = Path(str(result.get("artifact") or "?")).name
    return f"{name} ({result['backend']})" if result.get("backend") else name


def to_csv(report: dict[str, Any]) -> str:
    """One row per result in ``CSV_COLUMNS``; lists (per-run samples, the batch search) are left out.

    Schema 1 results get the derived variant name, scenario "single-stream" and status "ok"."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in _results(report):
        e2e = r.get("end_to_end") if isinstance(r.get("end_to_end"), dict) else {}
        row = {key: r.get(key) for key in CSV_COLUMNS}
        row.update(variant=variant_name(r), scenario=_scenario(r), status=_status(r))
        row.update(e2e_p50_ms=e2e.get("p50_ms"), e2e_p90_ms=e2e.get("p90_ms"))
        row["warnings"] = "; ".join(r.get("warnings") or [])
        writer.writerow(row)  # floats as str(): they read back exactly
    return out.getvalue()


def to_markdown(report: dict[str, Any]) -> str:
    """Title, what was timed and how, the machine, one table per scenario, then trust warnings."""
    results = _results(report)
    lines = [f"# edgeptm benchmark: {_count(results)}", "", _created(report), ""]
    for key, text in _about(report):
        lines += [f"**{key}:** {_md(text)}", ""]
    lines += ["## Environment", ""] + [f"- {key}: {_md(text)}" for key, text in _environment(report)] + [""]
    for scenario, group, searches in _by_scenario(results):
        lines += [f"## {scenario.capitalize()}", "", _md(SCENARIOS.get(scenario, "")), ""]
        lines.append("| " + " | ".join(HEADERS) + " |")
        lines.append("|" + "|".join("---:" if _numeric(i) else "---" for i in range(len(HEADERS))) + "|")
        for row in group:
            figures = row.figures or [row.reason] + [""] * (len(HEADERS) - FIGURES - 2)
            lines.append("| " + " | ".join(_md(c) for c in [*row.head, *figures, row.status]) + " |")
        lines += [""] + [f"- {_md(text)}" for text in searches] + ([""] if searches else [])
    generation = _generation_rows(results)
    if generation:
        lines += ["## Generators: time to first token and decode speed", "", _md(GENERATION_NOTE), ""]
        lines.append("| " + " | ".join(GENERATION_HEADERS) + " |")
        lines.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(GENERATION_HEADERS))) + "|")
        lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in generation] + [""]
    lines += [SPEEDUP_NOTE, "", "## Trust warnings", ""]
    lines += [f"- {_md(who)}: {_md(text)}" for who, text in _warnings(results)] or ["No result carries a warning."]
    return "\n".join(lines) + "\n"


def to_html(report: dict[str, Any]) -> str:
    """One self-contained page: the Markdown's content, plus latency and accuracy plots in inline SVG."""
    results = _results(report)
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>edgeptm benchmark: {e(_count(results))}</title>",
        f"<style>\n{CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>edgeptm benchmark: {e(_count(results))}</h1>",
        f'<p class="meta">{e(_created(report))}</p>',
    ]
    out += [f"<p><b>{e(key)}:</b> {e(text)}</p>" for key, text in _about(report)]
    out += ["<h2>Environment</h2>", '<table class="env">']
    out += [f"<tr><th>{e(key)}</th><td>{e(text)}</td></tr>" for key, text in _environment(report)]
    out.append("</table>")
    for scenario, group, searches in _by_scenario(results):
        out += [f"<h2>{e(scenario.capitalize())}</h2>", f"<p>{e(SCENARIOS.get(scenario, ''))}</p>", "<table>"]
        out.append("<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEADERS) + "</tr></thead>")
        out.append("<tbody>")
        for row in group:
            cells = [
                f'<td class="num">{e(c)}</td>' if _numeric(i) else f"<td>{e(c)}</td>" for i, c in enumerate(row.head)
            ]
            if row.figures is None:
                cells.append(f'<td colspan="{len(HEADERS) - FIGURES - 1}" class="reason">{e(row.reason)}</td>')
            else:
                cells += [f'<td class="num">{e(c)}</td>' for c in row.figures]
            cells.append(f'<td class="{"ok" if row.status == "ok" else "bad"}">{e(row.status)}</td>')
            out.append("<tr>" + "".join(cells) + "</tr>")
        out += ["</tbody>", "</table>"]
        out += ["<ul>", *(f"<li>{e(text)}</li>" for text in searches), "</ul>"] if searches else []
    generation = _generation_rows(results)
    if generation:
        out += ["<h2>Generators: time to first token and decode speed</h2>", f"<p>{e(GENERATION_NOTE)}</p>", "<table>"]
        out.append("<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in GENERATION_HEADERS) + "</tr></thead><tbody>")
        for row in generation:
            cells = [f"<td>{e(c)}</td>" if i < 2 else f'<td class="num">{e(c)}</td>' for i, c in enumerate(row)]
            out.append("<tr>" + "".join(cells) + "</tr>")
        out += ["</tbody>", "</table>"]
    out += [f'<p class="note">{e(SPEEDUP_NOTE)}</p>', "<h2>Plots</h2>"]
    out += [_box_plot(results), _batch_plot(results), _accuracy_plot(results)]
    out += [_tokens_plot(results)] if generation else []
    out.append("<h2>Trust warnings</h2>")
    found = _warnings(results)
    out += ["<ul>", *(f"<li><b>{e(who)}</b>: {e(text)}</li>" for who, text in found), "</ul>"] if found else []
    out += [] if found else ["<p>No result carries a warning.</p>"]
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


REPORT_SUFFIXES = (".json", ".csv", ".md", ".html")


def report_paths(stem: str | os.PathLike[str]) -> list[Path]:
    """The files ``--report STEM`` writes."""
    stem = Path(stem)
    return [stem.with_name(stem.name + suffix) for suffix in REPORT_SUFFIXES]


def write_reports(report: dict[str, Any], stem: str | os.PathLike[str]) -> list[Path]:
    """Write ``stem``.json, .csv, .md and .html, each atomically; returns their paths.

    Everything is rendered before anything is written, so a renderer's failure leaves no mixed set.
    A stem inside an artifact directory is refused (``check_output_paths``)."""
    check_output_paths(report_paths(stem), "--report")
    stem = Path(stem)
    texts = {".csv": to_csv(report), ".md": to_markdown(report), ".html": to_html(report)}
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + REPORT_SUFFIXES[0])]
    write_json_atomic(paths[0], report)
    for suffix, text in texts.items():
        path = stem.with_name(stem.name + suffix)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(path)
    log.info("bench report written: %s", ", ".join(str(p) for p in paths))
    return paths


# ---- what the renderers share ------------------------------------------------------------------


class _Row(NamedTuple):
    head: list[str]  # variant, backend, batch, seq / image, threads
    figures: list[str] | None  # p50 .. speedup; None when the result did not run
    reason: str
    status: str


def _results(report: Any) -> list[dict[str, Any]]:
    if not isinstance(report, dict) or not isinstance(report.get("results"), list):
        raise BenchError(
            "not an edgeptm bench report (no 'results' list): pass the dict edgeptm.bench returns, "
            "or read a saved one with edgeptm.benchmarking.compare.read_report"
        )
    return report["results"]


def _status(r: dict[str, Any]) -> str:
    return r.get("status") or "ok"  # schema 1 kept only the results that ran


def _ok(r: dict[str, Any]) -> bool:
    return _status(r) == "ok" and r.get("p50_ms") is not None


def _scenario(r: dict[str, Any]) -> str:
    return r.get("scenario") or "single-stream"  # schema 1 timed one call after another


def _count(results: list[dict[str, Any]]) -> str:
    names = {variant_name(r) for r in results}
    return f"{len(names)} variant{'s' * (len(names) != 1)}, {len(results)} result{'s' * (len(results) != 1)}"


def _created(report: dict[str, Any]) -> str:
    created = report.get("created_at") or "at an unrecorded time"
    return f"Created {created}; report schema {report.get('schema_version') or 'not recorded'}."


def _about(report: dict[str, Any]) -> list[tuple[str, str]]:
    timed = report.get("timed") or "; ".join(sorted({str(r["timed"]) for r in report["results"] if r.get("timed")}))
    about = [("Timed", timed or "not recorded"), ("Method", report.get("method") or "not recorded")]
    settings = report.get("settings") or {}
    parts = []
    for key, value in settings.items():
        if key == "profile" and isinstance(value, dict):
            value = value.get("name")
        if key == "threads" and value is None:
            value = "runtime default"
        if value is None or value is False or value == {}:
            continue
        shown = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
        parts.append(f"{key.replace('_', ' ')} {shown}")
    return about + ([("Settings", ", ".join(parts))] if parts else [])


def _environment(report: dict[str, Any]) -> list[tuple[str, str]]:
    env = report.get("environment") or {}
    packages = env.get("packages") or {}
    cores = f" ({env['cpu_count']} logical cores)" if env.get("cpu_count") else ""
    rows = [("CPU", f"{env.get('cpu') or 'not recorded'}{cores}")]
    rows.append(("CPU flags", ", ".join(env.get("cpu_flags") or []) or "none of those edgeptm records"))
    for gpu in env.get("gpus") or [{"name": "none recorded"}]:
        details = [f"driver {gpu['driver']}" if gpu.get("driver") else ""]
        details += [f"compute capability {gpu['compute_capability']}" if gpu.get("compute_capability") else ""]
        details += [str(gpu["memory"]) if gpu.get("memory") else ""]
        rows.append(("GPU", ", ".join([str(gpu.get("name") or "unnamed"), *filter(None, details)])))
    from edgeptm import targets

    prefixes = (*BASE_RUNTIMES, *(t.packages[0] for t in targets.TARGETS.values() if t.packages))
    runtimes = [f"{name} {version}" for name, version in packages.items() if name.startswith(prefixes)]
    rows.append(("Runtimes", ", ".join(runtimes) or "none recorded"))
    python = f"Python {env['python']}" if env.get("python") else "Python (version not recorded)"
    edgeptm = f"; edgeptm {packages['edgeptm']}" if packages.get("edgeptm") else ""
    rows.append(("Software", f"{python} on {env.get('platform') or env.get('machine') or 'an unrecorded OS'}{edgeptm}"))
    return rows


def _by_scenario(results: list[dict[str, Any]]) -> list[tuple[str, list[_Row], list[str]]]:
    """Table rows and batch searches per scenario, in the order the scenarios first appear."""
    ratios = speedups(results)
    groups: dict[str, tuple[list[_Row], list[str]]] = {}
    varying = _varying(results)
    for r, ratio in zip(results, ratios):
        rows, searches = groups.setdefault(_scenario(r), ([], []))
        if r.get("search"):
            searches.append(_search(r, _label(r, [k for k in varying if k not in ("scenario", "batch_size")])))
        threads = r.get("threads")
        head = [variant_name(r), str(r.get("backend") or "—"), _int(r.get("batch_size")), _shape(r)]
        head.append("default" if threads is None and _ok(r) else _int(threads))  # the runtime's own
        if _ok(r):
            figures = [_num(r["p50_ms"]), _num(r.get("p90_ms")), _num(r.get("p99_ms")), _num(r.get("throughput_per_s"))]
            figures += [_num((r.get("end_to_end") or {}).get("p50_ms")), _num(r.get("peak_rss_mb"))]
            figures += [_num(r.get("size_mb")), _accuracy(r.get("accuracy")), "—" if ratio is None else f"{ratio:.2f}x"]
            rows.append(_Row(head, figures, "", _status(r)))
        else:
            reason = r.get("reason") or ("no timings recorded" if _status(r) == "ok" else "no reason recorded")
            rows.append(_Row(head, None, str(reason), _status(r)))
    return [(scenario, rows, searches) for scenario, (rows, searches) in groups.items()]


def speedups(results: list[dict[str, Any]]) -> list[float | None]:
    """Each result against the first PyTorch result (else the first) at its setting (same batch,
    sequence or image size, threads): baseline p50 over its p50 single-stream, its throughput over
    the baseline's offline. None for rows that did not run. Tolerates v1 reports' absent keys."""

    def setting(r: dict[str, Any]) -> tuple[Any, ...]:
        if _scenario(r) == "offline":  # batch sizes differ by design: compare at the same threads
            return ("offline", r.get("threads"))
        return (_scenario(r), r.get("batch_size"), r.get("seq_len"), r.get("image_size"), r.get("threads"))

    base: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in sorted((r for r in results if _ok(r)), key=lambda r: not str(r.get("backend")).startswith("torch")):
        base.setdefault(setting(r), r)

    def ratio(top: float | None, bottom: float | None) -> float | None:
        return top / bottom if top and bottom else None

    ratios: list[float | None] = []
    for r in results:
        b = base.get(setting(r)) if _ok(r) else None
        if b is None:
            ratios.append(None)
        elif _scenario(r) == "offline":
            ratios.append(ratio(r.get("throughput_per_s"), b.get("throughput_per_s")))
        else:
            ratios.append(ratio(b["p50_ms"], r["p50_ms"]))
    return ratios


def _search(r: dict[str, Any], label: str) -> str:
    """An offline result's batch search, as tried: "batch 1: 812/s, 2: 1,390/s, ...; timed at 4"."""
    tried = [
        f"{f.get('batch_size')}: {_num(f['throughput_per_s'])}/s"
        if f.get("throughput_per_s") is not None
        else f"{f.get('batch_size')}: stopped ({f.get('stopped') or 'no reason recorded'})"
        for f in r["search"]
    ]
    return f"{label}: batch search {', '.join(tried)}; timed at batch {r.get('batch_size')}"


def _warnings(results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(result, its warnings joined) for each result that has any."""
    varying = _varying(results)
    return [(_label(r, varying), "; ".join(map(str, r["warnings"]))) for r in results if r.get("warnings")]


def _numeric(column: int) -> bool:
    """Right-aligned: batch, threads and the figures."""
    return column in (2, 4) or FIGURES <= column < len(HEADERS) - 1


def _shape(r: dict[str, Any]) -> str:
    parts = [f"seq {r['seq_len']}" if r.get("seq_len") else "", f"{r['image_size']} px" if r.get("image_size") else ""]
    return ", ".join(filter(None, parts)) or "—"


def _int(value: Any) -> str:
    return "—" if value is None else str(value)


def _num(value: Any) -> str:
    """About three significant digits: the next digit of a timing is run-to-run noise."""
    if value is None:
        return "—"
    value = float(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:#.3g}"


def _accuracy(value: Any) -> str:
    return "—" if value is None else f"{float(value):.4f}"


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


LABEL_FIELDS = ("scenario", "backend", "batch_size", "seq_len", "image_size", "threads")  # backend names the provider


def _varying(results: list[dict[str, Any]]) -> list[str]:
    """The settings that differ between results: a label must name them to tell the results apart."""
    return [k for k in LABEL_FIELDS if len({str(r[k]) for r in results if r.get(k) is not None}) > 1]


def _label(r: dict[str, Any], varying: list[str]) -> str:
    """The variant's name, followed by the settings that tell it apart: "int8 · batch 4 · 2 threads"."""
    forms = {"batch_size": "batch {}", "seq_len": "seq {}", "image_size": "{} px", "threads": "{} threads"}
    parts = [variant_name(r)]
    for key in varying:
        if r.get(key) is not None and not (key == "backend" and str(r[key]) in parts[0]):  # schema 1 names hold it
            parts.append(forms.get(key, "{}").format(r[key]))
    return " · ".join(parts)


GENERATION_HEADERS = ["variant", "precision", "prompt", "new", "threads", "TTFT ms", "decode tok/s", "request p50 ms"]
GENERATION_HEADERS += ["perplexity", "size MB", "peak RSS MB"]


def _generation_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """Generators' own figures: time to first token, decode speed, the request, perplexity."""
    rows = []
    for r in results:
        if _ok(r) and r.get("decode_tokens_per_s") is not None:
            rows.append(
                [
                    variant_name(r),
                    str(r.get("precision") or ""),
                    _int(r.get("prompt_len")),
                    _int(r.get("new_tokens")),
                    _int(r.get("threads")),
                    _num(r.get("ttft_ms")),
                    _num(r.get("decode_tokens_per_s")),
                    _num(r.get("p50_ms")),
                    _num(r.get("perplexity")),
                    _num(r.get("size_mb")),
                    _num(r.get("peak_rss_mb")),
                ]
            )
    return rows


GENERATION_NOTE = (
    "Generators: one run is one request (a prompt of 'prompt' tokens, then 'new' tokens greedily, EOS ignored); "
    "TTFT is prefill plus the first token's sampling; perplexity is the artifact's own, on its validation text."
)


# ---- plots: drawn by matplotlib, inlined as SVG (charts.py) -----------------------------------------

DASHES = ("-", (0, (6, 3)), (0, (2, 3)))  # a line sharing its colour with an earlier one gets the next dash pattern
CSS = """\
body { font: 14px/1.45 system-ui, sans-serif; color: #222; max-width: 1240px; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; white-space: nowrap; }
td.reason { color: #7a4a00; font-style: italic; }
td.bad { color: #b00020; font-weight: 600; }
table.env th { background: none; }
.meta, .note, .omitted { color: #666; }
.omitted { font-style: italic; }
figure { margin: 1em 0 2em; }
figcaption { font-weight: 600; margin-bottom: 0.3em; }
svg.chart { display: block; height: auto; }
"""


def _series(r: dict[str, Any]) -> tuple[str, Any, Any]:
    return (variant_name(r), r.get("backend"), r.get("provider"))  # what a user picks: an artifact on a runtime


def _colours(results: list[dict[str, Any]]) -> dict[tuple[str, Any, Any], str]:
    """One colour per series, the same in every plot (past seven series the palette repeats)."""
    order = list(dict.fromkeys(_series(r) for r in results if _ok(r)))
    return {series: charts.PALETTE[i % len(charts.PALETTE)] for i, series in enumerate(order)}


def _figure(title: str, svg: str, note: str) -> str:
    e = html.escape
    return f'<figure>\n<figcaption>{e(title)}</figcaption>\n{svg}<p class="note">{e(note)}</p>\n</figure>'


def _omitted(title: str, why: str) -> str:
    return f'<p class="omitted">{html.escape(title)}: not drawn, because {html.escape(why)}.</p>'


def _legend(fig: Any, handles: list[Any], labels: list[str]) -> None:
    """Under the plot, in full: one column when a label is long, else two."""
    columns = 1 if len(labels) < 2 or max(len(label) for label in labels) > 44 else 2
    fig.legend(handles, labels, loc="outside lower center", ncols=columns, handlelength=2.4)


def _box_plot(results: list[dict[str, Any]]) -> str:
    """Per-run latency of each single-stream result: box p25 to p75, p50 line, whiskers min to p99, max."""
    title = "Latency distribution (single-stream)"
    rows = [r for r in results if _ok(r) and _scenario(r) == "single-stream" and r.get("samples_ms")]
    if not rows:
        return _omitted(title, "no single-stream result carries per-run samples (samples_ms, from report schema 2 on)")
    varying = _varying(rows)
    labels = [_label(r, varying) for r in rows]
    quantiles = [0, 25, 50, 75, 99, 100]
    stats = [[float(v) for v in np.percentile(np.asarray(r["samples_ms"], float), quantiles)] for r in rows]
    colours = _colours(results)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    with charts.chart_style():
        lines = max(charts.wrap_label(label).count("\n") + 1 for label in labels)
        fig = charts.new_figure(height=1.5 + len(rows) * (0.32 + 0.14 * (lines - 1)))
        ax = fig.add_subplot()
        stops = ("whislo", "q1", "med", "q3", "whishi")  # min, p25, p50, p75, p99; the max a flier above p99
        boxes = [{**dict(zip(stops, s)), "fliers": [s[5]] if s[5] > s[4] else []} for s in stats]
        drawn = ax.bxp(boxes, positions=range(len(rows)), orientation="horizontal", widths=0.6, patch_artist=True)
        for i, (r, label, s) in enumerate(zip(rows, labels, stats)):
            c = colours[_series(r)]
            named = ", ".join(f"{n} {_num(v)}" for n, v in zip(("min", "p25", "p50", "p75", "p99", "max"), s))
            tip = f"{label}: {named} ms ({len(r['samples_ms'])} runs)"
            drawn["boxes"][i].set(facecolor=c + "40", edgecolor=c)  # a quarter opaque inside
            drawn["medians"][i].set(color=c, linewidth=2.5)
            drawn["fliers"][i].set(marker="o", markerfacecolor="#ffffff", markeredgecolor=c, markersize=5)
            parts = [drawn["boxes"][i], drawn["medians"][i], drawn["fliers"][i]]
            parts += drawn["whiskers"][2 * i : 2 * i + 2] + drawn["caps"][2 * i : 2 * i + 2]
            for part in parts[3:]:
                part.set(color=c)
            for part in parts:
                charts.tooltip(part, tip)
        charts.category_ticks(ax, "y", range(len(rows)), labels)
        ax.set_ylim(len(rows) - 0.5, -0.5)  # the first result on top
        ax.grid(axis="y", visible=False)
        log = charts.value_scale(ax, "x", [s[0] for s in stats] + [s[5] for s in stats])
        ax.set_xlabel("latency per call (ms)" + (", log scale" if log else ""))
        ax.set_ylabel("variant")
        grey = charts.GREY
        key = [Patch(facecolor=grey + "40", edgecolor=grey), Line2D([], [], color=grey)]
        key.append(Line2D([], [], color=grey, marker="o", markerfacecolor="#ffffff", linestyle="none"))
        text = ["p25 to p75, the line inside at p50", "whiskers: min to p99", "max, when above p99"]
        fig.legend(key, text, loc="outside lower center", ncols=3)
        svg = charts.figure_to_svg(fig, title, name="latency")
    return _figure(title, svg, "Each result's per-run latencies as recorded (up to 1000, spread over the run).")


def _line_plot(
    title: str,
    name: str,
    lines: dict[tuple[Any, ...], dict[int, float]],
    labels: dict[tuple[Any, ...], str],
    colours: dict[tuple[str, Any, Any], str],
    axes: tuple[str, str],
    tip: str,
) -> str:
    """One line per key (its first item the series) over sizes that double, on a log x axis at those sizes.

    ``tip`` formats each point's tooltip from ``label``, ``x`` and ``y`` (already ``_num``-formatted)."""
    from matplotlib.lines import Line2D

    with charts.chart_style():
        fig = charts.new_figure(height=3.6 + 0.2 * len(lines))
        ax = fig.add_subplot()
        used: dict[str, int] = {}
        handles = []
        for key, points in lines.items():
            colour = colours[key[0]]
            dash = DASHES[used.get(colour, 0) % len(DASHES)]
            used[colour] = used.get(colour, 0) + 1
            xs, ys = zip(*sorted(points.items()))
            ax.plot(xs, ys, color=colour, linestyle=dash, linewidth=2)
            for x, y in zip(xs, ys):
                (dot,) = ax.plot([x], [y], "o", color=colour, markersize=5)
                charts.tooltip(dot, tip.format(label=labels[key], x=x, y=_num(y)))
            handles.append(Line2D([], [], color=colour, linestyle=dash, linewidth=2, marker="o", markersize=5))
        charts.log_ticks_at(ax, "x", sorted({x for points in lines.values() for x in points}))
        log = charts.value_scale(ax, "y", [v for points in lines.values() for v in points.values()], zero=True)
        ax.set_xlabel(axes[0])
        ax.set_ylabel(axes[1] + (", log scale" if log else ""))
        _legend(fig, handles, [labels[key] for key in lines])
        return charts.figure_to_svg(fig, title, name=name)


def _batch_plot(results: list[dict[str, Any]]) -> str:
    """p50 latency at each batch size, one line per variant (timed results and the offline search)."""
    title = "p50 latency against batch size"
    lines: dict[tuple[Any, ...], dict[int, float]] = {}
    first: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in results:
        if not _ok(r) or r.get("batch_size") is None:
            continue
        key = (_series(r), r.get("seq_len"), r.get("image_size"), r.get("threads"))
        points = lines.setdefault(key, {})
        first.setdefault(key, r)
        points.setdefault(int(r["batch_size"]), float(r["p50_ms"]))
        for found in r.get("search") or []:
            if found.get("batch_size") and found.get("p50_ms") is not None:
                points.setdefault(int(found["batch_size"]), float(found["p50_ms"]))
    batches = sorted({b for points in lines.values() for b in points})
    if len(batches) < 2:
        return _omitted(title, f"every result ran at batch size {batches[0]}" if batches else "no result has timings")
    varying = [k for k in _varying(list(first.values())) if k != "batch_size"]
    labels = {key: _label(r, varying) for key, r in first.items()}
    axes = ("batch size (samples per call), log scale", "p50 latency per call (ms)")  # sizes double
    svg = _line_plot(title, "batch", lines, labels, _colours(results), axes, "{label}: batch {x}, p50 {y} ms")
    note = "Latency per call: divide by the batch size for the time per sample. Offline results add their search."
    return _figure(title, svg, note)


def _tokens_plot(results: list[dict[str, Any]]) -> str:
    """Generators: decode tokens/s against prompt length, one line per variant (and thread count)."""
    title = "Decode tokens/s against prompt length"
    lines: dict[tuple[Any, ...], dict[int, float]] = {}
    first: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in results:
        if _ok(r) and r.get("decode_tokens_per_s") and r.get("prompt_len"):
            key = (_series(r), r.get("threads"))
            lines.setdefault(key, {})[int(r["prompt_len"])] = float(r["decode_tokens_per_s"])
            first.setdefault(key, r)
    lengths = sorted({n for points in lines.values() for n in points})
    if len(lengths) < 2:
        return _omitted(title, "one prompt length (sweep --prompt-len 64,256,... to draw it)" if lengths else "")
    varying = [k for k in _varying(list(first.values())) if k not in ("prompt_len", "batch_size")]
    labels = {key: _label(r, varying) for key, r in first.items()}
    axes = ("prompt length (tokens), log scale", "decode tokens/s (median step)")
    tip = "{label}: prompt {x} tokens, {y} tokens/s"
    svg = _line_plot(title, "tokens", lines, labels, _colours(results), axes, tip)
    note = "Each point: 1000 / the median decode step over every generated token of every timed request."
    return _figure(title, svg, note)


def _accuracy_plot(results: list[dict[str, Any]]) -> str:
    """Accuracy against p50 latency, one labelled point per variant: the trade-off a user picks from."""
    title = "Accuracy against p50 latency"
    scored = [r for r in results if _ok(r) and r.get("accuracy") is not None]
    chosen: dict[tuple[str, Any, Any], dict[str, Any]] = {}
    for r in sorted(scored, key=lambda r: (_scenario(r) != "single-stream", r.get("batch_size") or 0)):
        chosen.setdefault(_series(r), r)  # each variant at its smallest single-stream batch
    if not chosen:
        return _omitted(
            title, "no result has an accuracy (the artifacts' manifests record none: score them with --val)"
        )
    rows = list(chosen.values())
    batches = {r.get("batch_size") for r in rows}
    where = f"batch {rows[0].get('batch_size')}" if len(batches) == 1 else "each variant's smallest batch"
    colours = _colours(results)
    varying = [k for k in _varying(rows) if k in ("backend", "provider")]
    labels = [_label(r, varying) for r in rows]
    with charts.chart_style():
        fig = charts.new_figure(height=4.2 + 0.2 * len(rows))
        ax = fig.add_subplot()
        handles = []
        for r, label in zip(rows, labels):
            (dot,) = ax.plot([float(r["p50_ms"])], [float(r["accuracy"])], "o", color=colours[_series(r)], markersize=8)
            charts.tooltip(dot, f"{label}: p50 {_num(r['p50_ms'])} ms, accuracy {_accuracy(r['accuracy'])}")
            handles.append(dot)
        log_x = charts.value_scale(ax, "x", [float(r["p50_ms"]) for r in rows], zero=True)
        log_y = charts.value_scale(ax, "y", [float(r["accuracy"]) for r in rows])
        ax.set_xlabel(f"p50 latency at {where} (ms)" + (", log scale" if log_x else ""))
        ax.set_ylabel("accuracy (fraction correct, validation data)" + (", log scale" if log_y else ""))
        ax.margins(x=0.08, y=0.12)
        _legend(fig, handles, labels)
        charts.place_labels(
            ax,
            [(float(r["p50_ms"]), float(r["accuracy"]), charts.shorten(label, 32)) for r, label in zip(rows, labels)],
        )
        svg = charts.figure_to_svg(fig, title, name="accuracy")
    return _figure(title, svg, "Up and to the left is better: more accurate and faster.")
