from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeptm.data.text import read_text_table, seeded_split
from edgeptm.errors import DataError

from conftest import REVIEWS


def test_reads_csv_and_jsonl_alike(tmp_path: Path):
    csv_data = read_text_table(REVIEWS)
    jsonl = tmp_path / "r.jsonl"
    with open(jsonl, "w") as fh:
        for t, l in zip(csv_data.texts, csv_data.labels):
            fh.write(json.dumps({"sentence": t, "y": l}) + "\n")
    data = read_text_table(jsonl, text_column="sentence", label_column="y")
    assert data.texts == csv_data.texts and data.labels == csv_data.labels
    assert csv_data.label_set() == ["negative", "positive"]


def test_integer_labels_become_strings(tmp_path: Path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n')
    assert read_text_table(path).labels == ["1", "0"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("sentence,label\nhello,pos\n", r"r\.csv:2: no column 'text' \(columns: sentence, label\)"),
        ("text,label\n   ,pos\n", r"r\.csv:2: empty text"),
        ("text,label\nhello,\n", r"r\.csv:2: empty label"),
        ("", "empty file"),
        ("text,label\n", "no rows"),
    ],
)
def test_bad_csv(tmp_path: Path, content: str, message: str):
    path = tmp_path / "r.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_text_table(path)


def test_bad_files(tmp_path: Path):
    with pytest.raises(DataError, match="no such file"):
        read_text_table(tmp_path / "missing.csv")
    bad = tmp_path / "r.jsonl"
    bad.write_text('{"text": "a", "label": "x"}\nnot json\n')
    with pytest.raises(DataError, match=r"r\.jsonl:2: not valid JSON"):
        read_text_table(bad)
    latin = tmp_path / "l.csv"
    latin.write_bytes("text,label\ncaf\xe9,x\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_text_table(latin)
    other = tmp_path / "r.parquet"
    other.write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        read_text_table(other)


def test_unknown_validation_label():
    data = read_text_table(REVIEWS)
    with pytest.raises(DataError, match="label 'positive' never appears in the training data"):
        data.check_labels(["negative", "neutral"])


def test_seeded_split_is_repeatable_and_disjoint():
    data = read_text_table(REVIEWS)
    a_train, a_val = seeded_split(data, 0.2, seed=3)
    b_train, b_val = seeded_split(data, 0.2, seed=3)
    _, c_val = seeded_split(data, 0.2, seed=4)
    assert a_val.texts == b_val.texts and a_train.texts == b_train.texts
    assert a_val.texts != c_val.texts
    assert len(a_val) == 12 and len(a_train) == 48
    assert not set(a_val.texts) & set(a_train.texts)


def test_json_array_files(tmp_path: Path):
    good = tmp_path / "d.json"
    good.write_text('[\n  {"text": "a", "label": "x"},\n  {"text": "b", "label": "y"}\n]\n')
    assert read_text_table(good).labels == ["x", "y"]
    bad = tmp_path / "e.json"
    bad.write_text('{"text": "a", "label": "x"}')
    with pytest.raises(DataError, match="array of objects"):
        read_text_table(bad)
