"""Input shape ranges for an engine: min/opt/max of every dynamic axis, for every input.

A target builds for these ranges: kernels tuned for ``opt`` and valid from ``min`` to ``max``, or
only the min..max bounds, or one static shape when min == max. They come, in order of
precedence, from ``--shapes``, the device profile's ``compile.batch``/``compile.seq_len``, then
defaults from the artifact (batch 1..max_batch tuned for 1; sequence 1..the model's max length,
tuned for 128). Inputs that share a symbolic axis (``input_ids`` and ``attention_mask`` share
``batch`` and ``sequence``) share its range, since a feed always has them equal.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from edgeptm.errors import UsageError

DEFAULT_MAX_BATCH = 32
DEFAULT_OPT_SEQ = 128  # the bench default and a common serving length

Triple = tuple[int, int, int]
_SHAPE = re.compile(r"^\d+(x\d+)*$")


def parse_shapes(specs: Sequence[str]) -> dict[str, list[tuple[int, ...]]]:
    """``NAME:1x128`` (static) or ``NAME:1x1,4x128,8x128`` (min,opt,max), trtexec's ``x`` notation."""
    parsed: dict[str, list[tuple[int, ...]]] = {}
    for spec in specs:
        name, sep, dims = spec.partition(":")
        shapes = dims.split(",") if sep else []
        if not name or len(shapes) not in (1, 3) or not all(_SHAPE.match(s) for s in shapes):
            raise UsageError(f"--shapes {spec!r}: expected NAME:DIMS (static) or NAME:MIN,OPT,MAX with dims like 1x128")
        if name in parsed:
            raise UsageError(f"--shapes: input '{name}' given twice")
        values = [tuple(int(d) for d in s.split("x")) for s in shapes]
        parsed[name] = values * 3 if len(values) == 1 else values
    return parsed


def _triple(value: Sequence[int] | None, what: str) -> Triple | None:
    if value is None:
        return None
    low, opt, high = (int(v) for v in value)
    if not 1 <= low <= opt <= high:
        raise UsageError(f"{what}: need 1 <= min <= opt <= max, got {low}/{opt}/{high}")
    return low, opt, high


def shape_ranges(
    inputs: list[dict[str, Any]],
    preprocessing: dict[str, Any],
    explicit: dict[str, list[tuple[int, ...]]] | None = None,
    batch: Sequence[int] | None = None,
    seq_len: Sequence[int] | None = None,
    fit_seq_len: bool = False,
) -> dict[str, dict[str, list[int]]]:
    """``{input: {"min": [...], "opt": [...], "max": [...]}}`` for the artifact's inputs (the
    manifest's ``io.inputs``: each axis an int or a symbolic name). ``fit_seq_len``: ``seq_len``
    is a device profile's, meant for any model, so it is cut to this model's max length."""
    explicit = dict(explicit or {})
    names = [i["name"] for i in inputs]
    unknown = sorted(set(explicit) - set(names))
    if unknown:
        raise UsageError(f"--shapes names input '{unknown[0]}'; the model's inputs are {', '.join(names)}")
    symbols: dict[str, Triple] = {}
    for entry in inputs:  # 1. what --shapes says, checked against the model's axes
        shapes = explicit.get(entry["name"])
        if shapes is None:
            continue
        axes = entry["shape"]
        if any(len(s) != len(axes) for s in shapes):
            raise UsageError(
                f"--shapes {entry['name']}: {len(shapes[0])} dims given, the input has {len(axes)} ({_show(axes)})"
            )
        for i, axis in enumerate(axes):
            low, opt, high = (s[i] for s in shapes)
            where = f"--shapes {entry['name']} axis {i}"
            if isinstance(axis, int):
                if not low == opt == high == axis:
                    raise UsageError(f"{where} is fixed at {axis} in the model, got {low}/{opt}/{high}")
                continue
            triple = _triple((low, opt, high), f"{where} ({axis})")
            if symbols.setdefault(axis, triple) != triple:
                raise UsageError(
                    f"{where}: '{axis}' is shared by several inputs and must have one range; got "
                    f"{'/'.join(map(str, symbols[axis]))} and {low}/{opt}/{high}"
                )
    longest = preprocessing.get("max_length")
    if fit_seq_len and seq_len is not None and longest:
        seq_len = [min(int(v), int(longest)) for v in seq_len]
    defaults = {  # 2. the profile, then the artifact's own limits
        "batch": _triple(batch, "batch") or (1, 1, DEFAULT_MAX_BATCH),
        "sequence": _triple(seq_len, "seq_len")
        or ((1, min(DEFAULT_OPT_SEQ, int(longest)), int(longest)) if longest else None),
    }
    sequence = symbols.get("sequence") or defaults["sequence"]
    if longest and sequence and sequence[2] > int(longest):
        raise UsageError(
            f"sequence max {sequence[2]} exceeds the model's max length {longest} (the length its texts are cut "
            f"to); ask for at most {longest}, or serve longer texts from an artifact made for them, within the "
            f"encoder's position limit (512 for BERT): 'edgeptm export CHECKPOINT --max-length {sequence[2]}' (ONNX "
            f"targets) or fine-tuning with --max-length {sequence[2]}"
        )
    ranges: dict[str, dict[str, list[int]]] = {}
    for entry in inputs:
        columns: list[Triple] = []
        for axis in entry["shape"]:
            if isinstance(axis, int):
                columns.append((axis, axis, axis))
                continue
            triple = symbols.get(axis) or defaults.get(axis)
            if triple is None:
                raise UsageError(
                    f"input '{entry['name']}' has a dynamic axis '{axis}' edgeptm cannot size; "
                    f"give it with --shapes {entry['name']}:MIN,OPT,MAX"
                )
            columns.append(triple)
        ranges[entry["name"]] = {key: [c[k] for c in columns] for k, key in enumerate(("min", "opt", "max"))}
    return ranges


def axis_bounds(ranges: dict[str, dict[str, list[int]]], inputs: list[dict[str, Any]]) -> dict[str, dict[str, list]]:
    """The min..max of each named dynamic axis per input, as manifests record it."""
    bounds: dict[str, dict[str, list]] = {}
    for entry in inputs:
        r = ranges[entry["name"]]
        bounds[entry["name"]] = {
            str(axis): [r["min"][i], r["max"][i]] for i, axis in enumerate(entry["shape"]) if not isinstance(axis, int)
        }
    return bounds


def _show(axes: Sequence[Any]) -> str:
    return "x".join(str(a) for a in axes)
