"""The matplotlib chart primitives: the Pareto front, the Pareto chart's SVG, label fitting, SVG for inline use."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from edgeptm.benchmarking.charts import (
    chart_style,
    figure_to_svg,
    new_figure,
    pareto_chart,
    pareto_front,
    shorten,
    tooltip,
    wrap_label,
)

LONG = "int8 static per-channel, calibrated on 512 validation sentences, onnxruntime CPU"


def _point(label: str, x: float | None, y: float | None, status: str = "ok", chosen: bool = False) -> dict:
    return {"label": label, "x": x, "y": y, "status": status, "chosen": chosen}


POINTS = [
    _point("a", 1.0, 0.5),  # the fastest that counts: on the front
    _point("b", 2.0, 0.8),
    _point("c", 3.0, 0.7),  # slower and less accurate than b
    _point("d", 2.0, 0.8, "chosen", True),  # ties b exactly: neither dominates the other
    _point("e", 0.5, 0.99, "rejected"),  # would dominate everything, but was rejected
    _point("f", None, 0.9),  # not measured
    _point("g", 4.0, 0.95),
    _point("h", 2.5, 0.8),  # as accurate as b, slower
    _point("i", float("nan"), 1.0),
    _point("j", 1.0, 0.4),  # as fast as a, less accurate
    _point("k", 0.1, 1.0, "failed"),
]


def test_pareto_front_keeps_the_undominated_ok_and_chosen_points_by_increasing_x():
    assert pareto_front(POINTS) == [0, 1, 3, 6]


def test_pareto_front_of_nothing_that_counts_is_empty():
    assert pareto_front([]) == []
    assert pareto_front([_point("r", 1.0, 1.0, "rejected"), _point("n", None, None)]) == []
    assert pareto_front([_point("only", 3.0, 0.2)]) == [0]


def _dominates(p: dict, q: dict) -> bool:
    return p["x"] <= q["x"] and p["y"] >= q["y"] and (p["x"] < q["x"] or p["y"] > q["y"])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 6).map(float)),
            st.one_of(st.none(), st.integers(0, 6).map(float)),
            st.sampled_from(["ok", "chosen", "rejected", "failed"]),
        ),
        max_size=12,
    )
)
def test_pareto_front_is_undominated_and_dominates_the_rest(raw: list[tuple[float | None, float | None, str]]):
    points = [_point(str(i), x, y, status) for i, (x, y, status) in enumerate(raw)]
    front = pareto_front(points)
    counted = [i for i, p in enumerate(points) if p["x"] is not None and p["y"] is not None]
    counted = [i for i in counted if points[i]["status"] in ("ok", "chosen")]
    assert set(front) <= set(counted) and len(set(front)) == len(front)
    assert [points[i]["x"] for i in front] == sorted(points[i]["x"] for i in front)
    for i in front:
        assert not any(_dominates(points[j], points[i]) for j in counted)
    for i in set(counted) - set(front):
        assert any(_dominates(points[j], points[i]) for j in front)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.hrefs += [v or "" for k, v in attrs if k in ("href", "src", "xlink:href")]

    handle_startendtag = handle_starttag


def test_pareto_chart_is_inline_svg_with_every_label_in_full():
    points = [*POINTS, _point(LONG, 3.5, 0.6), _point("<script>x</script> $q$", 2.2, 0.6)]
    svg = pareto_chart(points, "p50 latency (ms)", "accuracy", title="Candidates")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "<?xml" not in svg and "DOCTYPE" not in svg and "http" not in svg
    parser = _Tags()
    parser.feed(svg)
    assert "script" not in parser.tags and all(h.startswith("#") for h in parser.hrefs)
    for p in points:
        assert html.escape(p["label"], quote=False) in svg, p["label"]
    assert "&lt;script&gt;x&lt;/script&gt; $q$" in svg  # escaped, and no mathtext made of the dollars
    assert (
        f"<title>{LONG} (ok): p50 latency (ms) 3.5, accuracy 0.6</title>" in svg
    )  # the full label, shortened on the chart
    assert "<title>d (chosen): p50 latency (ms) 2, accuracy 0.8, on the Pareto front</title>" in svg
    assert "<title>c (ok): p50 latency (ms) 3, accuracy 0.7</title>" in svg  # dominated: not on the front
    assert ">Pareto front</text>" in svg and ">Candidates</text>" in svg and ">rejected</text>" in svg
    assert "not plotted (a value is missing):" in svg and ">f (ok)</text>" in svg and ">i (ok)</text>" in svg
    assert pareto_chart(points, "p50 latency (ms)", "accuracy", title="Candidates") == svg  # byte for byte


def test_labels_of_crowded_points_do_not_overlap():
    """Points a few pixels apart along the axes' edge (the Lite0 optimize run: two INT8 recipes at
    2.3 and 2.9 ms, four FP32 ones in a row): each label finds its own spot, with a leader line
    when it had to move away, and none overlaps another."""
    from edgeptm.benchmarking.charts import _pareto_figure, _overlap

    rows = [("int8 a", 2.34, 0.827), ("int8 b", 2.85, 0.827), ("fp32 a", 5.05, 0.829), ("fp32 b", 5.75, 0.829),
            ("fp32 c", 6.31, 0.829), ("dyn", 7.2, 0.829), ("ov int8", 2.45, 0.830), ("et int8", 3.48, 0.831),
            ("aoti", 19.1, 0.829)]  # fmt: skip
    points = [_point(f"recipe {name}, every op type", x, y) for name, x, y in rows]
    points.append(_point("chosen one, static shapes", 2.15, 0.830, "chosen", True))
    with chart_style():
        fig = _pareto_figure(points, "p50 ms", "accuracy", "Candidates")
        fig.draw_without_rendering()
        renderer = fig.canvas.get_renderer()
        texts = [t for t in fig.axes[0].texts if t.get_text().startswith(("recipe", "chosen"))]
        assert len(texts) == len(points)
        text_only = [_text_box(t, renderer) for t in texts]
        assert any(t.arrow_patch is not None for t in texts)  # some had to move away from their point
    for i, a in enumerate(text_only):
        for b in text_only[i + 1 :]:
            assert _overlap(a, b) == 0.0, (a, b)


def _text_box(note, renderer) -> tuple[float, float, float, float]:
    """An annotation's text alone (its leader line left out)."""
    from matplotlib.text import Text

    note.update_positions(renderer)
    return tuple(Text.get_window_extent(note, renderer).extents)


def test_pareto_chart_without_plottable_points_still_draws():
    svg = pareto_chart([_point("broken", None, None, "failed")], "ms", "accuracy")
    assert "broken (failed)" in svg and "no point has both values" in svg


def test_figure_to_svg_prefixes_ids_so_charts_share_a_page():
    pages = []
    for name in ("one", "two"):
        with chart_style():
            fig = new_figure(3, 2)
            ax = fig.add_subplot()
            (line,) = ax.plot([1, 2, 3], [3, 1, 2], "o-")
            tooltip(line, "a < b")
            ax.set_title('id="raw" url(#raw)')  # text that looks like markup stays as written
            pages.append(figure_to_svg(fig, title="T", name=name))
    ids = [re.findall(r'<[^<>]*?\sid="([^"]+)"', svg) for svg in pages]  # in markup, not in text
    assert ids[0] and not set(ids[0]) & set(ids[1])
    assert all(i.startswith("one-") for i in ids[0]) and all(i.startswith("two-") for i in ids[1])
    for svg, defined in zip(pages, ids):
        markup = "".join(re.findall(r"<[^<>]*>", svg))
        used = re.findall(r'href="#([^"]+)"', markup) + re.findall(r"url\(#([^)]+)\)", markup)
        assert used and set(used) <= set(defined)
        assert "<title>a &lt; b</title>" in svg and svg.count("<title>T</title>") == 1
        assert '>id="raw" url(#raw)</text>' in svg
        assert 'width="100%"' in svg and 'viewBox="0 0 ' in svg


def test_wrap_label_breaks_after_separators_and_shortens_the_name_not_the_settings():
    assert wrap_label("fp32 torch · batch 1") == "fp32 torch · batch 1"
    assert wrap_label("fp32 onnx · onnxruntime · batch 16") == "fp32 onnx · onnxruntime ·\nbatch 16"
    long = wrap_label(LONG + " · onnxruntime · batch 16")
    lines = long.split("\n")
    assert len(lines) <= 3 and all(len(line) <= 28 for line in lines), lines
    assert long.endswith("onnxruntime · batch 16") and "…" in long
    assert max(len(line) for line in wrap_label("x" * 100).split("\n")) <= 28


def test_shorten_marks_a_cut_with_an_ellipsis():
    assert shorten("int8", 24) == "int8"
    cut = shorten(LONG, 24)
    assert len(cut) <= 24 and cut.endswith("…") and LONG.startswith(cut[:-1])
