"""Labelled text in CSV or JSONL: read, validate, split.

Labels are kept as strings (a JSONL label of ``1`` and a CSV label of ``"1"`` are the same class),
and the label set of a model is the sorted set of its training labels.
"""

from __future__ import annotations

import csv
import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import random

from edgeptm.data.labelled import Labelled
from edgeptm.errors import DataError


@dataclass
class TextDataset(Labelled):
    texts: list[str]
    labels: list[str]
    source: str = ""

    INPUTS = "texts"
    NOUN = "texts"

    def to_jsonl(self, path: Path, text_column: str = "text", label_column: str = "label") -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for text, label in zip(self.texts, self.labels):
                fh.write(json.dumps({text_column: text, label_column: label}, ensure_ascii=False) + "\n")


def _allow_long_fields() -> None:
    """csv refuses a field over 128 KiB by default (as "malformed CSV"), while JSONL takes any
    length: lift the limit to the largest the platform's C long holds, for CSV as for JSONL."""
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:  # a 32-bit C long (Windows)
            limit //= 2


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix == ".json":  # one JSON array of objects
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DataError(f"{path}: a .json data file must be an array of objects (or use .jsonl, one per line)")
        yield from enumerate(rows, start=1)
    elif suffix in (".jsonl", ".ndjson"):
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{number}: each JSONL line must be an object")
                yield number, row
    elif suffix in (".csv", ".tsv"):
        _allow_long_fields()
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            if reader.fieldnames is None:
                raise DataError(f"{path}: empty file (no header row)")
            for number, row in enumerate(reader, start=2):
                yield number, row
    else:
        raise DataError(f"{path}: unsupported file type '{suffix or '(none)'}' (use .csv, .tsv, .jsonl or .json)")


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn what reading a data file can raise (encoding, I/O, CSV syntax) into one-line DataErrors."""
    try:
        yield
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None


def labelled_rows(path: Path, input_column: str, label_column: str, what: str) -> Iterator[tuple[int, str, str]]:
    """(line number, input, label) for every row of a data file; a missing column, an empty input
    or an empty label is a DataError naming the file and line."""
    for number, row in _rows(path):
        for column in (input_column, label_column):
            if column not in row:
                columns = ", ".join(str(c) for c in row) or "none"
                raise DataError(f"{path}:{number}: no column '{column}' (columns: {columns})")
        value, label = row[input_column], row[label_column]
        if value is None or not str(value).strip():
            raise DataError(f"{path}:{number}: empty {what} in column '{input_column}'")
        if label is None or str(label).strip() == "":
            raise DataError(f"{path}:{number}: empty label in column '{label_column}'")
        yield number, str(value), str(label).strip()


def read_text_table(path: str | Path, text_column: str = "text", label_column: str = "label") -> TextDataset:
    """Read labelled text; every row needs a non-empty text and label."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    texts: list[str] = []
    labels: list[str] = []
    with reading(path):
        for _, text, label in labelled_rows(path, text_column, label_column, "text"):
            texts.append(text)
            labels.append(label)
    if not texts:
        raise DataError(f"{path}: no rows")
    return TextDataset(texts, labels, str(path))


def seeded_split(data: TextDataset, fraction: float, seed: int) -> tuple[TextDataset, TextDataset]:
    """Hold out ``fraction`` of the rows (at least one), chosen by a seeded shuffle."""
    if len(data) < 2:
        raise DataError(f"{data.source}: {len(data)} row(s) cannot be split into training and validation")
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    n_val = min(len(data) - 1, max(1, round(len(data) * fraction)))
    return data.subset(sorted(order[n_val:])), data.subset(sorted(order[:n_val]))


def artifact_val_data(artifact) -> TextDataset:
    """The validation split an artifact carries: written by finetune, passed on by every stage."""
    return read_text_table(artifact.file("val_data"), "text", "label")
