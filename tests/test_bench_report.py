"""Bench reports as CSV, Markdown and HTML: from a real report, and from a copy extended with every
schema 2 field (samples, statuses, scenarios, a second batch size, the offline search)."""

from __future__ import annotations

import copy
import csv
import html
import io
import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from edgeptm.benchmarking import BenchOptions, bench
from edgeptm.benchmarking.report import CSV_COLUMNS, to_csv, to_html, to_markdown, variant_name, write_reports
from edgeptm.benchmarking.stats import summarize
from edgeptm.errors import BenchError

UNRUNNABLE = "the graph's input is fixed at 1x128; export with a dynamic batch axis"
HOSTILE = "<script>alert(1)</script> int8"
SEQ_LEN = 32  # the tiny model's fine-tuning length: the measured samples need not be long


SCHEMA_2_KEYS = ("variant", "provider", "scenario", "image_size", "status", "reason", "samples_ms", "end_to_end")


@pytest.fixture(scope="module")
def real_report(tiny_checkpoint, tiny_onnx, tiny_int8) -> dict[str, Any]:
    paths = [tiny_checkpoint.path, tiny_onnx.path, tiny_int8.path]
    return bench(paths, BenchOptions(iterations=20, warmup=2, rounds=2))


@pytest.fixture(scope="module")
def v1_report(real_report) -> dict[str, Any]:
    """The real report as schema 1 had it (bench may write schema 2 by now): without the newer keys."""
    report = copy.deepcopy(real_report)
    report["schema_version"] = 1
    for key in ("scenario", "sweep", "max_batch"):
        report["settings"].pop(key, None)
    report["environment"].pop("gpus", None)
    for r in report["results"]:
        for key in (*SCHEMA_2_KEYS, "search"):
            r.pop(key, None)
    return report


def _measure(path: Path, batch_size: int, runs: int = 25) -> list[float]:
    """Per-run latencies (ms) of one loaded predictor: real samples for the plots."""
    from edgeptm.runtime import load

    with load(path, threads=1) as predictor:
        feed = predictor.encode(predictor.preprocessor.sample_inputs(batch_size), SEQ_LEN)
        predictor.backend.run(feed)  # the first call pays for allocation
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            predictor.backend.run(feed)
            times.append((time.perf_counter() - start) * 1000)
    return times


@pytest.fixture(scope="module")
def v2_report(v1_report, tiny_checkpoint, tiny_onnx, tiny_int8) -> dict[str, Any]:
    """The real report, extended with every schema 2 field from latencies measured here."""
    report = copy.deepcopy(v1_report)
    report["schema_version"] = 2
    report["settings"].update(seq_len=SEQ_LEN, scenario="single-stream", sweep={"batch_size": [1, 4]})
    gpu = {"name": "Test GPU", "driver": "999.1", "compute_capability": "9.0", "memory": "1024 MiB"}
    report["environment"]["gpus"] = [gpu]
    names = ["fp32 torch", "fp32 onnx", HOSTILE]
    results = []
    for artifact, name, base in zip((tiny_checkpoint, tiny_onnx, tiny_int8), names, report["results"]):
        by_batch = {b: _measure(artifact.path, b) for b in (1, 4)}
        for b, samples in by_batch.items():
            stats = summarize(samples, b)
            row = {**base, **stats, "variant": name, "scenario": "single-stream", "batch_size": b, "seq_len": SEQ_LEN}
            row.update(status="ok", reason=None, image_size=None, samples_ms=samples)
            row.update(provider="CPUExecutionProvider" if base["kind"] == "onnx" else None)
            row["end_to_end"] = {"p50_ms": stats["p50_ms"] * 1.4, "p90_ms": stats["p90_ms"] * 1.4, "mean_ms": 1.0}
            results.append(row)
        if base["kind"] == "onnx":  # offline: the search tried 1 and 4, then a size that ran out of memory
            found = {b: summarize(t, b) for b, t in by_batch.items()}
            search = [
                {"batch_size": b, "throughput_per_s": f["throughput_per_s"], "p50_ms": f["p50_ms"]}
                for b, f in found.items()
            ]
            search.append({"batch_size": 8, "stopped": "RuntimeError: out of memory"})
            best = max(found, key=lambda b: found[b]["throughput_per_s"])
            offline = {**results[-1], **found[best], "scenario": "offline", "batch_size": best, "search": search}
            results.append({**offline, "samples_ms": by_batch[best]})
    results.append(
        {
            "artifact": "/runs/engine-fp16",
            "variant": "fp16 tensorrt",
            "kind": "engine",
            "precision": "fp16",
            "scenario": "single-stream",
            "batch_size": 1,
            "seq_len": SEQ_LEN,
            "image_size": None,
            "threads": None,
            "provider": None,
            "status": "unrunnable",
            "reason": UNRUNNABLE,
            "size_mb": 1.0,
            "accuracy": None,
        }
    )
    report["results"] = results
    return report


def _without_accuracy(report: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(report)
    for r in stripped["results"]:
        r["accuracy"] = None
    return stripped


class _StrictParser(HTMLParser):
    """Fails on a closing tag that does not match the open one (html.parser itself forgives all)."""

    VOID = {"meta", "br", "hr", "img", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.tags: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.hrefs += [v or "" for k, v in attrs if k in ("href", "src", "xlink:href")]
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.hrefs += [v or "" for k, v in attrs if k in ("href", "src", "xlink:href")]

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()


def _parse(page: str) -> _StrictParser:
    parser = _StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.open == [], f"unclosed: {parser.open}"
    return parser


@pytest.mark.parametrize("which", ["real_report", "v1_report", "v2_report"])
def test_csv_has_one_row_per_result_with_the_reports_figures(which: str, request: pytest.FixtureRequest):
    report = request.getfixturevalue(which)
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert len(rows) == len(report["results"]) and tuple(rows[0]) == CSV_COLUMNS
    for row, r in zip(rows, report["results"]):
        assert row["variant"] == variant_name(r)
        if r.get("status", "ok") == "ok":
            assert float(row["p50_ms"]) == r["p50_ms"] and row["status"] == "ok"
            assert row["warnings"] == "; ".join(r["warnings"])
        else:
            assert row["p50_ms"] == "" and row["reason"] == UNRUNNABLE
    assert "samples_ms" not in rows[0] and "search" not in rows[0]


def test_variant_name_comes_from_the_directory_and_backend_in_schema_1(v1_report):
    names = [variant_name(r) for r in v1_report["results"]]
    assert names == ["ckpt (torch-eager)", "onnx (onnxruntime-cpu)", "int8 (onnxruntime-cpu)"]
    assert variant_name({"artifact": "/runs/int8", "backend": "onnxruntime-cpu"}) == "int8 (onnxruntime-cpu)"
    assert variant_name({"variant": "int8 on cpu", "artifact": "/runs/int8"}) == "int8 on cpu"


def test_markdown_lists_every_variant_and_the_reason_in_place_of_numbers(v2_report, v1_report):
    text = to_markdown(v2_report)
    for r in v2_report["results"]:
        assert variant_name(r) in text
    row = next(line for line in text.splitlines() if line.startswith("| fp16 tensorrt "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5] == UNRUNNABLE and cells[-1] == "unrunnable" and set(cells[6:-1]) == {""}
    assert "## Single-stream" in text and "## Offline" in text and "batch search" in text
    assert "stopped (RuntimeError: out of memory)" in text
    assert "Test GPU, driver 999.1, compute capability 9.0" in text
    assert f"onnxruntime {v2_report['environment']['packages']['onnxruntime']}" in text
    assert "1.00x" in text  # the PyTorch baseline against itself
    assert "## Trust warnings" in text
    plain = to_markdown(v1_report)
    assert all(variant_name(r) in plain for r in v1_report["results"]) and "**Method:**" in plain
    assert "- GPU: none recorded" in plain and "## Offline" not in plain


def test_html_is_self_contained_escaped_and_draws_three_plots(v2_report):
    page = to_html(v2_report)
    parser = _parse(page)
    assert parser.tags.count("svg") == 3 and "not drawn" not in page
    assert "http://" not in page and "https://" not in page and "<?xml" not in page and "<!DOCTYPE svg" not in page
    assert parser.hrefs and all(h.startswith("#") for h in parser.hrefs)  # only the SVGs' own markers
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)) and {h[1:] for h in parser.hrefs} <= set(ids)  # three charts, no clashes
    assert set(re.findall(r"url\(#([^)]+)\)", page)) <= set(ids)
    assert "script" not in parser.tags and "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; int8" in page
    assert UNRUNNABLE.replace("'", "&#x27;") in page
    for text in ("latency per call (ms)", "batch size (samples per call)", "accuracy (fraction correct"):
        assert text in page
    assert page.count("<table") == 3  # environment, single-stream, offline


def test_html_charts_carry_their_title_and_every_variant_in_full(v2_report):
    page = to_html(v2_report)
    charts = re.findall(r"<figcaption>(.*?)</figcaption>\n(<svg .*?</svg>)", page, re.S)
    titles = ["Latency distribution (single-stream)", "p50 latency against batch size", "Accuracy against p50 latency"]
    assert [title for title, _ in charts] == titles
    ran = {variant_name(r) for r in v2_report["results"] if r.get("status") == "ok"}
    assert len(ran) == 3
    for title, svg in charts:
        assert f"<title>{title}</title>" in svg and 'width="100%"' in svg
        for name in ran:  # the legend, or the tooltip of a wrapped tick label: never cut to "validation dat"
            assert re.search(f">{re.escape(html.escape(name, quote=False))}( · [^<]*)?</", svg), (title, name)
    assert to_html(copy.deepcopy(v2_report)) == page  # byte for byte: two runs' pages diff cleanly


def test_html_says_why_a_plot_is_missing(v2_report, v1_report, real_report):
    page = to_html(_without_accuracy(v2_report))
    assert _parse(page).tags.count("svg") == 2
    assert "Accuracy against p50 latency: not drawn, because no result has an accuracy" in page
    page = to_html(_without_accuracy(v1_report))  # one batch size, no samples, no accuracy: nothing to draw
    assert _parse(page).tags.count("svg") == 0 and page.count("not drawn, because") == 3
    assert "every result ran at batch size 1" in page and "no single-stream result carries per-run samples" in page
    real = _parse(to_html(real_report))  # whatever schema bench writes today
    assert real.tags.count("svg") == 1 + ("samples_ms" in real_report["results"][0])  # accuracy; samples from 2 on


def test_write_reports_writes_four_files_atomically(v2_report, tmp_path: Path):
    paths = write_reports(v2_report, tmp_path / "out" / "bench")
    assert [p.name for p in paths] == ["bench.json", "bench.csv", "bench.md", "bench.html"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)  # no temp files
    assert json.loads(paths[0].read_text()) == v2_report
    assert paths[3].read_text() == to_html(v2_report)


def test_a_non_report_is_refused_with_what_to_do():
    with pytest.raises(BenchError, match="not an edgeptm bench report"):
        to_markdown({"results": None})
