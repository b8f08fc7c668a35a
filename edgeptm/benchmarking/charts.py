"""Charts drawn by matplotlib as inline SVG, for HTML pages that must open offline as one file.

``figure_to_svg`` turns a matplotlib Figure into an ``<svg>`` element to paste into HTML: text stays text
(``svg.fonttype`` none: small, searchable), the output is byte-identical between runs (fixed hash salt, no
date), the XML prolog and namespace declarations are dropped (an HTML parser puts ``<svg>`` in its namespace
itself), element ids are prefixed so that several charts share a page, and the width follows the page. Every
chart is laid out by matplotlib (constrained layout, then saved with a tight bounding box), so no axis title
or label is cut off or drawn over another.

Build charts inside ``with chart_style():`` (a ``matplotlib.rc_context``: nothing global changes), on a
``new_figure()``; ``tooltip`` gives any artist a hover text (an SVG ``<title>``), ``place_labels`` annotates
points while keeping the labels apart, ``wrap_label`` and ``shorten`` fit long names. ``pareto_chart`` draws
candidates' trade-off (say latency against accuracy) with their Pareto front; ``pareto_front`` computes it.
matplotlib is imported only when a chart is drawn.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import io
import itertools
import math
import re
import textwrap
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

WIDTH = 7.6  # inches, at 96 px each when shown: fits a laptop window and a printed page
FONT_SIZE = 9  # pt
LOG_RATIO = 10  # values spanning more than this factor get a log axis, else the small ones squash into a line
# Okabe and Ito's palette, told apart with colour-blindness; its yellow is left out (unreadable on white).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
GREY = "#555555"
FRONT_STATUSES = ("ok", "chosen")  # the points that may be on a Pareto front
_RC = {
    "svg.fonttype": "none",  # text as <text>: small, selectable, and the page's reader can search it
    "svg.hashsalt": "edgeptm",  # ids derived from content, not random: reruns give identical files
    "svg.image_inline": True,
    "text.parse_math": False,  # a "$" in a variant's name is a dollar sign, not mathtext
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # matplotlib's own font; the browser falls back to its sans-serif
    "font.size": FONT_SIZE,
    "axes.titlesize": FONT_SIZE + 2,
    "axes.labelsize": FONT_SIZE,
    "axes.edgecolor": "#999999",
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e6e6e6",
    "xtick.color": "#444444",
    "ytick.color": "#444444",
    "legend.frameon": False,
    "legend.fontsize": FONT_SIZE - 0.5,
    "figure.dpi": 72,  # 1 pt = 1 px in the SVG's own units
}
_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}  # no block that changes or links out
_TIP = "edgeptm-tip-"  # gid prefix: the tooltip's text, hex-encoded, until figure_to_svg turns it into <title>


@contextlib.contextmanager
def chart_style() -> Iterator[None]:
    """The charts' matplotlib settings, for the block only (``matplotlib.rc_context``)."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        yield


def new_figure(width: float = WIDTH, height: float = 3.6) -> Figure:
    """A Figure (inches) with constrained layout on an Agg canvas; no pyplot, so no global figure registry."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def tooltip(artist: Artist, text: str) -> None:
    """Show ``text`` when the pointer rests on ``artist`` (an SVG ``<title>``, added by ``figure_to_svg``)."""
    artist.set_gid(_TIP + text.encode("utf-8").hex())


def figure_to_svg(fig: Figure, title: str = "", name: str = "") -> str:
    """The figure as an ``<svg>`` element for inline use in HTML, deterministic for the same figure.

    ``title`` becomes the SVG's ``<title>`` (what screen readers say); ``name`` prefixes its element ids
    (letters, digits, ``-``; default: a hash of the drawing), which must differ between charts on one page."""
    out = io.StringIO()
    with chart_style():
        fig.savefig(out, format="svg", metadata=_METADATA, bbox_inches="tight", pad_inches=0.08)
    text = out.getvalue()
    text = text[text.index("<svg") :]  # no XML prolog or DOCTYPE: both are errors inside HTML
    end = text.index(">") + 1
    width, height = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', text[:end]).groups()
    body = text[end:]
    # matplotlib's default stroke style, which would otherwise apply to every SVG on the page
    body = body.replace('<style type="text/css">*{', '<style type="text/css">svg.chart *{', 1)
    prefix = re.sub(r"[^A-Za-z0-9-]", "", name) or "c" + hashlib.sha256(body.encode()).hexdigest()[:8]

    def rename(tag: re.Match[str]) -> str:  # ids and references to them, in markup only (text has no "<")
        out = re.sub(r'(\sid="|href="#|url\(#)', rf"\1{prefix}-", tag.group(0))
        return out.replace(f'id="{prefix}-{_TIP}', f'id="{prefix}-tip-', 1)

    body = re.sub(r"<[^<>]*>", rename, body)
    count = itertools.count(1)

    def tip(match: re.Match[str]) -> str:
        said = bytes.fromhex(match.group(1)).decode("utf-8")
        return f'<g id="{prefix}-tip{next(count)}">\n<title>{html.escape(said, quote=False)}</title>'

    body = re.sub(rf'<g id="{prefix}-tip-([0-9a-f]*)">', tip, body)
    shown = round(float(width) * 96 / 72)  # the SVG's units are pt; CSS px are 1/96 inch
    root = f'<svg class="chart" width="100%" viewBox="0 0 {width} {height}" style="max-width: {shown}px; height: auto"'
    root += ' role="img" version="1.1">'
    head = f"\n<title>{html.escape(title, quote=False)}</title>" if title else ""
    return root + head + body.rstrip() + "\n"


def wrap_label(text: str, width: int = 28, lines: int = 3, sep: str = " · ") -> str:
    """``text`` on at most ``lines`` lines of about ``width`` characters, breaking after ``sep`` where it can.

    When it does not fit, its longest ``sep``-separated parts are shortened (with …) first, so that the short
    settings telling similar names apart ("batch 16") stay readable."""
    parts = text.split(sep)
    while True:
        out: list[str] = []
        for part in parts:
            pieces = textwrap.wrap(part, width, break_on_hyphens=False) or [""]
            if out and len(out[-1]) + len(sep) + len(pieces[0]) <= width:
                out[-1] += sep + pieces.pop(0)
            elif out:
                out[-1] += sep.rstrip()
            out += pieces
        longest = max(range(len(parts)), key=lambda i: len(parts[i]))
        if len(out) <= lines or len(parts[longest]) <= 12:
            break
        parts[longest] = shorten(parts[longest], len(parts[longest]) - 4)
    if len(out) > lines:
        out = out[: lines - 1] + [shorten(" ".join(out[lines - 1 :]), width)]
    return "\n".join(out)


def shorten(text: str, limit: int = 28) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when something was cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def value_scale(ax: Axes, axis: str, values: Sequence[float], zero: bool = False) -> bool:
    """Scale ``ax``'s ``axis`` ("x" or "y") for ``values``: logarithmic with plain tick labels (1, 2, 5, 10, 20,
    ...) when they are positive and span over ``LOG_RATIO``, else linear, from zero when ``zero``. True if log."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    shown = [v for v in values if v is not None and math.isfinite(v)]
    target = ax.xaxis if axis == "x" else ax.yaxis
    if shown and min(shown) > 0 and max(shown) / min(shown) > LOG_RATIO:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        decades = math.log10(max(shown) / min(shown))
        target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)))
        target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        target.set_minor_formatter(NullFormatter())
        return True
    if zero and shown and min(shown) >= 0:
        (ax.set_xlim if axis == "x" else ax.set_ylim)(0, max(shown) * 1.08 or 1.0)
    return False


def category_ticks(ax: Axes, axis: str, positions: Sequence[float], labels: Sequence[str], width: int = 28) -> None:
    """Tick labels for categories, wrapped to ``width`` characters, each with its full text as a tooltip."""
    from matplotlib.ticker import NullLocator

    wrapped = [wrap_label(label, width) for label in labels]
    (ax.set_xticks if axis == "x" else ax.set_yticks)(list(positions), wrapped)
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_minor_locator(NullLocator())
    for text, label in zip(target.get_ticklabels(), labels):
        tooltip(text, label)


def log_ticks_at(ax: Axes, axis: str, values: Sequence[float]) -> None:
    """A base-2 log ``axis`` ticked at ``values`` only (sizes that double: batches, prompt lengths), plainly."""
    from matplotlib.ticker import NullLocator

    (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=2)
    (ax.set_xticks if axis == "x" else ax.set_yticks)(list(values), [f"{v:g}" for v in values])
    (ax.xaxis if axis == "x" else ax.yaxis).set_minor_locator(NullLocator())


def place_labels(ax: Axes, points: Sequence[tuple[Any, ...]], size: float = FONT_SIZE - 1) -> list[Any]:
    """Annotate each (x, y, text) or (x, y, text, text properties), in order, at the first spot around its point
    where the label overlaps no earlier label and no point and stays inside the axes; labels pushed further out
    get a thin leader line. Returns the annotations.

    Call it last: the figure's layout is settled first so that positions on screen are final."""
    fig = ax.figure
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    scale = fig.dpi / 72  # points to display units
    marks = []
    for x, y, *_ in points:
        px, py = ax.transData.transform((x, y))
        r = 4 * scale
        marks.append((px - r, py - r, px + r, py + r))
    taken: list[tuple[float, float, float, float]] = []
    made = []
    for x, y, text, *more in points:
        style = more[0] if more else {}
        best: tuple[float, Any, tuple[float, float, float, float], dict[str, Any]] | None = None
        for distance in (6, 16, 28):
            for dx, dy in ((1, 0.6), (1, -0.6), (-1, 0.6), (-1, -0.6), (0, 1.2), (0, -1.4), (1, 1.6), (-1, -1.6)):
                at = {
                    "xytext": (dx * distance, dy * distance * 0.6 + (dy > 0) - (dy < 0)),
                    "ha": "left" if dx > 0 else "right" if dx < 0 else "center",
                    "va": "bottom" if dy > 0 else "top",
                    "far": distance > 6,
                }
                note = _label(ax, x, y, text, at, size, style, lead=False)  # measured without its leader line
                box = note.get_window_extent(renderer)
                edges = (box.x0, box.y0, box.x1, box.y1)
                cost = sum(_overlap(edges, other) for other in taken + marks)
                cost += 4 * _outside(edges, (frame.x0, frame.y0, frame.x1, frame.y1))
                cost += distance / 1000  # of equals, the nearest
                if best is None or cost < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (cost, note, edges, at)
                else:
                    note.remove()
            if best is not None and best[0] < 1:
                break
        _, note, edges, at = best
        if at["far"]:  # drawn again with a thin line back to its point
            note.remove()
            note = _label(ax, x, y, text, at, size, style, lead=True)
        taken.append(edges)
        made.append(note)
    return made


def _label(ax: Axes, x: Any, y: Any, text: str, at: dict[str, Any], size: float, style: dict, lead: bool) -> Any:
    arrow = {"arrowprops": {"arrowstyle": "-", "color": "#999999", "lw": 0.6}} if lead else {}
    note = ax.annotate(
        text, (x, y), xytext=at["xytext"], textcoords="offset points", ha=at["ha"], va=at["va"], fontsize=size,
        annotation_clip=False, **arrow, **style,
    )  # fmt: skip
    note.set_in_layout(False)  # the layout is settled: labels must not move the axes
    return note


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """1 when boxes (x0, y0, x1, y1) cross, plus their shared area over ``a``'s; else 0."""
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return 1.0 + w * h / max((a[2] - a[0]) * (a[3] - a[1]), 1e-9)


def _outside(a: tuple[float, ...], frame: tuple[float, ...]) -> float:
    return float(a[0] < frame[0] or a[1] < frame[1] or a[2] > frame[2] or a[3] > frame[3])


# ---- the Pareto chart ------------------------------------------------------------------------------

STATUS_STYLES = {  # marker, colour, size (pt), legend label
    "chosen": ("*", "#D55E00", 15, "chosen"),
    "ok": ("o", "#0072B2", 7, "ok"),
    "rejected": ("X", "#999999", 7, "rejected"),
    "failed": ("s", "#B00020", 6, "failed"),
}
OTHER_STYLE = ("D", GREY, 6, "")  # any other status, named in the legend as itself


def _number(value: Any) -> float | None:
    """``value`` as a finite float, else None (absent, NaN, not a number)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def pareto_front(points: Sequence[dict[str, Any]]) -> list[int]:
    """Indices of the points on the Pareto front, by increasing x: lower ``x`` and higher ``y`` are better.

    Only points whose ``status`` is "ok" or "chosen" and whose x and y are finite numbers count. A point is on
    the front when no other such point is at least as good in both and better in one: points that tie
    exactly are all on it."""
    found = [(i, _number(p.get("x")), _number(p.get("y"))) for i, p in enumerate(points)]
    found = [(i, x, y) for i, x, y in found if x is not None and y is not None]
    found = [(i, x, y) for i, x, y in found if points[i].get("status") in FRONT_STATUSES]
    front = [
        (x, -y, i) for i, x, y in found if not any(x2 <= x and y2 >= y and (x2 < x or y2 > y) for _, x2, y2 in found)
    ]
    return [i for _, _, i in sorted(front)]


def pareto_chart(points: Sequence[dict[str, Any]], x_label: str, y_label: str, title: str = "Pareto front") -> str:
    """Every point (marker and colour by ``status``), the chosen one highlighted and labelled, and the Pareto
    front (``pareto_front``) as a step line: the best ``y`` reachable within each ``x``. Returns inline SVG.

    ``points``: dicts with ``label`` (str), ``x`` and ``y`` (float or None: a point missing either is listed
    under the chart, not plotted), ``status`` (str: "ok", "rejected", "failed", "chosen", ...) and ``chosen``
    (bool). Labels on the chart are shortened; each point's tooltip holds its full label and values."""
    with chart_style():
        return figure_to_svg(_pareto_figure(points, x_label, y_label, title), title or f"{y_label} against {x_label}")


def _pareto_figure(points: Sequence[dict[str, Any]], x_label: str, y_label: str, title: str) -> Figure:
    fig = new_figure(WIDTH, 4.2)
    ax = fig.add_subplot()
    front = set(pareto_front(points))
    plotted, missing, legend = [], [], {}
    for i, p in enumerate(points):
        x, y, label = _number(p.get("x")), _number(p.get("y")), str(p.get("label", ""))
        said = str(p.get("status") or "no status") + (
            ", chosen" if p.get("chosen") and p.get("status") != "chosen" else ""
        )
        if x is None or y is None:
            missing.append(f"{label} ({said})")
            continue
        status = "chosen" if p.get("chosen") else str(p.get("status") or "")
        marker, colour, size, name = STATUS_STYLES.get(status, OTHER_STYLE)
        edge = "#000000" if status == "chosen" else colour
        (mark,) = ax.plot([x], [y], marker=marker, markersize=size, color=colour, markeredgecolor=edge, linestyle="")
        mark.set_zorder(4 if status == "chosen" else 3)
        on_front = ", on the Pareto front" if i in front else ""
        tooltip(mark, f"{label} ({said}): {x_label} {x:.4g}, {y_label} {y:.4g}{on_front}")
        legend.setdefault(name or status or "no status", mark)
        plotted.append((i, x, y, label, status))
    log_x = value_scale(ax, "x", [x for _, x, _, _, _ in plotted])
    if front:
        steps = sorted((_number(points[i]["x"]), _number(points[i]["y"])) for i in front)
        (line,) = ax.step(*zip(*steps), where="post", color="#009E73", linewidth=1.5, alpha=0.8, zorder=2)
        legend["Pareto front"] = line
    ax.set_xlabel(x_label + (", log scale" if log_x else ""))
    ax.set_ylabel(y_label)
    if title:
        ax.set_title(title, loc="left")
    if not plotted:
        ax.text(0.5, 0.5, "no point has both values", transform=ax.transAxes, ha="center", color=GREY)
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="outside right upper", handlelength=1.6)
    if missing:  # one a line, in full; past eight, run together
        head = "not plotted (a value is missing):"
        shown = "\n".join([head, *missing]) if len(missing) <= 8 else textwrap.fill(f"{head} {'; '.join(missing)}", 110)
        fig.supxlabel(shown, fontsize=FONT_SIZE - 1, color=GREY, ha="left", x=0.01)
    bold = {"fontweight": "bold"}
    order = sorted(plotted, key=lambda p: (p[4] != "chosen", p[0]))  # the chosen one gets the best spot
    place_labels(
        ax, [(x, y, shorten(label, 24), bold if status == "chosen" else {}) for _, x, y, label, status in order]
    )
    return fig
