"""Image datasets and preprocessing on small real files written with PIL; the Fashion-MNIST fetch."""

from __future__ import annotations

import gzip
import io
import json
import logging
import lzma
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeptm.data import vision_demo
from edgeptm.data.images import (
    ImageDataset,
    ImagePreprocessing,
    check_images,
    load_batch,
    read_image_data,
    read_image_list,
)
from edgeptm.data.text import seeded_split
from edgeptm.data.vision_demo import deb_data_tar, fashion_mnist, read_ar, read_idx
from edgeptm.errors import DataError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _prep(**overrides) -> ImagePreprocessing:
    values = dict(resize=20, crop=16, mean=MEAN, std=STD)
    values.update(overrides)
    return ImagePreprocessing(**values)


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def _noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    _save(Image.new("RGB", (40, 30), (200, 10, 10)), root / "cat" / "b.png")
    _save(Image.new("L", (17, 51), 90), root / "cat" / "a.jpg")
    _save(Image.new("RGBA", (33, 20), (0, 0, 255, 128)), root / "cat" / "deep" / "nested" / "c.webp")
    _save(Image.new("RGB", (5, 5)), root / "cat" / ".hidden.png")
    _save(Image.new("RGB", (5, 5)), root / "cat" / ".thumbs" / "x.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    _save(Image.new("RGB", (64, 20), (0, 255, 0)).convert("P"), root / "dog" / "p.gif")
    _save(Image.new("RGB", (25, 25), (1, 2, 3)), root / "dog" / "q.BMP")
    _save(Image.new("RGB", (5, 5)), root / ".git" / "x.png")
    _save(Image.new("RGB", (5, 5)), root / "loose.png")
    (root / "empty_class").mkdir()
    return root


def test_reads_an_image_folder(image_folder: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING):
        data = read_image_data(image_folder)
    names = [str(Path(p).relative_to(image_folder)) for p in data.paths]
    assert names == ["cat/a.jpg", "cat/b.png", "cat/deep/nested/c.webp", "dog/p.gif", "dog/q.BMP"]
    assert data.labels == ["cat", "cat", "cat", "dog", "dog"]
    assert data.label_set() == ["cat", "dog"]
    assert all(Path(p).is_absolute() for p in data.paths)
    assert "loose.png" in caplog.text and "empty_class" in caplog.text


def test_folder_errors(tmp_path: Path):
    _save(Image.new("RGB", (5, 5)), tmp_path / "one" / "only" / "x.png")
    with pytest.raises(DataError, match="1 class only"):
        read_image_data(tmp_path / "one")
    (tmp_path / "none" / "a").mkdir(parents=True)
    (tmp_path / "none" / "a" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="no images found"):
        read_image_data(tmp_path / "none")
    with pytest.raises(DataError, match="no such file or folder"):
        read_image_data(tmp_path / "missing")
    _save(Image.new("RGB", (5, 5)), tmp_path / "single.png")
    with pytest.raises(DataError, match=r"single\.png: unsupported file type '\.png' \(use an image folder"):
        read_image_data(tmp_path / "single.png")


def test_reads_csv_tsv_and_jsonl_lists(image_folder: Path, tmp_path: Path):
    lists = tmp_path / "lists"
    lists.mkdir()
    absolute = image_folder / "dog" / "q.BMP"
    (lists / "l.csv").write_text(f"path,label\n../photos/cat/b.png,cat\n {absolute} ,dog \n")
    (lists / "l.tsv").write_text(f"label\tpath\ncat\t../photos/cat/b.png\ndog\t{absolute}\n")
    rows = [{"path": "../photos/cat/b.png", "label": "cat"}, {"path": str(absolute), "label": "dog"}]
    (lists / "l.jsonl").write_text("\n\n".join(json.dumps(row) for row in rows))
    for name in ("l.csv", "l.tsv", "l.jsonl"):
        data = read_image_data(lists / name)
        assert [Path(p).resolve() for p in data.paths] == [(image_folder / "cat" / "b.png").resolve(), absolute]
        assert data.labels == ["cat", "dog"] and data.source == str(lists / name)


@pytest.mark.parametrize(
    "content, message",
    [
        ("path,label\nok.png,a\nnot-there.png,b\n", r"l\.csv:3: no such image file 'not-there\.png'"),
        ("file,label\nok.png,a\n", r"l\.csv:2: no column 'path' \(columns: file, label\)"),
        ("path,label\nok.png,\n", r"l\.csv:2: empty label"),
        ("path,label\n,a\n", r"l\.csv:2: empty path"),
        ("path,label\n", r"l\.csv: no rows"),
    ],
)
def test_bad_lists(tmp_path: Path, content: str, message: str):
    _save(Image.new("RGB", (5, 5)), tmp_path / "ok.png")
    (tmp_path / "l.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        read_image_data(tmp_path / "l.csv")


def test_jsonl_round_trip_and_split(image_folder: Path, tmp_path: Path):
    data = read_image_data(image_folder)
    data.to_jsonl(tmp_path / "all.jsonl")
    again = read_image_list(tmp_path / "all.jsonl")
    assert again.paths == data.paths and again.labels == data.labels
    assert ImageDataset.from_jsonl(tmp_path / "all.jsonl").paths == data.paths

    train, val = seeded_split(data, 0.4, seed=3)
    train2, val2 = seeded_split(data, 0.4, seed=3)
    assert isinstance(train, ImageDataset) and isinstance(val, ImageDataset)
    assert (train.paths, val.paths) == (train2.paths, val2.paths)
    assert len(val) == 2 and sorted(train.paths + val.paths) == sorted(data.paths)
    assert dict(zip(val.paths, val.labels)) == {p: lab for p, lab in zip(data.paths, data.labels) if p in val.paths}
    with pytest.raises(DataError, match="label 'bird' never appears"):
        ImageDataset([data.paths[0]], ["bird"], "v.csv").check_labels(data.label_set())
    with pytest.raises(DataError, match="2 images but 1 labels"):
        ImageDataset(["a", "b"], ["x"], "s")


def test_constant_colour_is_exactly_normalised(tmp_path: Path):
    colour = (10, 100, 200)
    path = _save(Image.new("RGB", (53, 31), colour), tmp_path / "c.png")
    prep = _prep()
    out = prep.load(path)
    assert out.shape == (3, 16, 16) and out.dtype == np.float32 and out.flags.c_contiguous
    for channel in range(3):
        expected = (np.float32(colour[channel]) * np.float32(1 / 255) - np.float32(MEAN[channel])) / np.float32(
            STD[channel]
        )
        assert np.all(out[channel] == expected)
    bgr = _prep(channel_order="BGR", layout="NHWC").load(path)
    assert bgr.shape == (16, 16, 3)
    np.testing.assert_array_equal(bgr[..., ::-1], out.transpose(1, 2, 0))
    assert np.all(bgr[..., 0] != bgr[..., 2])


def test_grey_palette_alpha_and_16_bit(tmp_path: Path):
    plain = _prep(mean=(0, 0, 0), std=(1, 1, 1), scale=1.0)
    grey = plain.load(_save(Image.new("L", (30, 20), 77), tmp_path / "g.png"))
    assert np.all(grey == 77)
    blue = Image.new("RGB", (20, 20), (0, 128, 255)).convert("P", palette=Image.Palette.ADAPTIVE)
    palette = plain.load(_save(blue, tmp_path / "p.gif"))
    assert tuple(palette[:, 0, 0]) == (0, 128, 255)
    transparent = plain.load(_save(Image.new("RGBA", (20, 20), (255, 0, 0, 0)), tmp_path / "t.png"))
    assert np.all(transparent == 255)  # fully transparent on white
    half = plain.load(_save(Image.new("RGBA", (20, 20), (0, 0, 0, 128)), tmp_path / "h.png"))
    assert np.all(np.abs(half - 127) <= 1)
    deep = plain.load(_save(Image.fromarray(np.full((20, 20), 25700, np.uint16)), tmp_path / "d16.png"))
    assert np.all(deep == 100)  # 16-bit scaled to 8, not clipped at 255
    with pytest.raises(DataError, match=r"g\.png: cannot read image \(.*grey_to_rgb=False"):
        _prep(grey_to_rgb=False).load(tmp_path / "g.png")


def test_resize_keeps_aspect_and_crops_the_centre(tmp_path: Path):
    plain = _prep(resize=50, crop=50, mean=(0, 0, 0), std=(1, 1, 1), scale=1.0)
    for size, box in (((300, 100), (100, 0, 200, 100)), ((100, 300), (0, 100, 100, 200))):
        image = Image.new("RGB", size, (0, 0, 0))
        image.paste((255, 255, 255), box)  # the centre square is white, the rest black
        out = plain.array(image)
        assert out.shape == (3, 50, 50)
        assert np.all(out[:, 2:-2, 2:-2] == 255)
    wide = Image.new("RGB", (300, 100), (0, 0, 0))
    wide.paste((255, 255, 255), (0, 0, 100, 100))  # white on the left: cropped away
    assert np.all(plain.array(wide)[:, :, 2:] == 0)
    # torchvision's geometry: shorter side to 20 (33x20), then the centre 16x16
    small = _prep(resize=20, crop=16, mean=(0, 0, 0), std=(1, 1, 1), scale=1.0)
    marker = Image.new("RGB", (33, 20), (0, 0, 0))
    marker.putpixel((16, 10), (255, 255, 255))
    assert np.unravel_index(small.array(marker)[0].argmax(), (16, 16)) == (8, 8)


def test_exif_orientation_is_applied(tmp_path: Path):
    image = Image.new("RGB", (40, 40), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 20, 20))  # red top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    path = _save(image, tmp_path / "o.jpg", exif=exif.tobytes(), quality=95)
    out = _prep(resize=40, crop=40, mean=(0, 0, 0), std=(1, 1, 1), scale=1.0).load(path)
    assert out[0, :20, 20:].mean() > 200 and out[0, :20, :20].mean() < 50  # red now top-right


def test_load_is_deterministic_and_matches_array(tmp_path: Path):
    path = _save(_noise((47, 29)), tmp_path / "n.png")
    prep = _prep()
    with Image.open(path) as image:
        via_array = prep.array(image)
    np.testing.assert_array_equal(prep.load(path), via_array)
    np.testing.assert_array_equal(prep.load(path), prep.load(path))


@pytest.fixture
def corrupt_dataset(tmp_path: Path) -> ImageDataset:
    good = [_save(_noise((30, 30), seed), tmp_path / f"good{seed}.png") for seed in range(3)]
    (tmp_path / "random.png").write_bytes(np.random.default_rng(0).bytes(500))
    buffer = io.BytesIO()
    _noise((64, 64)).save(buffer, format="PNG")
    (tmp_path / "truncated.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    paths = [str(good[0]), str(tmp_path / "random.png"), str(good[1]), str(tmp_path / "truncated.png")]
    paths += [str(tmp_path / "empty.jpg"), str(good[2])]
    return ImageDataset(paths, ["a", "b", "a", "b", "a", "b"], "list.csv")


def test_unreadable_images_are_skipped_or_fatal(corrupt_dataset: ImageDataset, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING):
        kept = check_images(corrupt_dataset)
    assert [Path(p).name for p in kept.paths] == ["good0.png", "good1.png", "good2.png"]
    assert kept.labels == ["a", "a", "b"]
    assert "skipped 3 unreadable image(s): first: " in caplog.text and "random.png (" in caplog.text
    with pytest.raises(DataError, match=r"random\.png: cannot read image \(not a recognised image format\)"):
        check_images(corrupt_dataset, strict=True)

    prep = _prep()
    batch, loaded, failures = load_batch(corrupt_dataset.paths, prep)
    assert batch.shape == (3, 3, 16, 16) and batch.dtype == np.float32 and loaded == [0, 2, 5]
    assert [Path(p).name for p, _ in failures] == ["random.png", "truncated.png", "empty.jpg"]
    assert all(reason and "\n" not in reason for _, reason in failures)
    np.testing.assert_array_equal(batch[1], prep.load(corrupt_dataset.paths[2]))
    with pytest.raises(DataError, match=r"random\.png: cannot read image"):
        load_batch(corrupt_dataset.paths, prep, strict=True)
    with pytest.raises(DataError, match=r"truncated\.png: cannot read image"):
        prep.load(corrupt_dataset.paths[3])
    empty, loaded, failures = load_batch(corrupt_dataset.paths[1:2], prep)
    assert empty.shape == (0, 3, 16, 16) and loaded == [] and len(failures) == 1
    with pytest.raises(DataError, match="none of the 2 image"):
        check_images(corrupt_dataset.subset([1, 3]))


def test_record_round_trip_and_validation():
    prep = _prep(channel_order="BGR", scale=1.0, interpolation="bicubic")
    record = json.loads(json.dumps(prep.record()))
    assert set(record) == {
        "resize",
        "crop",
        "mean",
        "std",
        "channel_order",
        "layout",
        "scale",
        "grey_to_rgb",
        "interpolation",
    }
    assert ImagePreprocessing.from_record(record) == prep
    assert prep.mean == MEAN and isinstance(ImagePreprocessing.from_record(record).mean, tuple)
    with pytest.raises(DataError, match="unknown key 'colour'"):
        ImagePreprocessing.from_record({**record, "colour": 1})
    with pytest.raises(DataError, match="missing key 'crop'"):
        ImagePreprocessing.from_record({k: v for k, v in record.items() if k != "crop"})
    for bad, message in (
        ({"crop": 30}, "crop 30 is larger than resize 20"),
        ({"mean": (0.5, 0.5)}, "mean must be 3 numbers"),
        ({"std": (1, 0, 1)}, "std must be positive"),
        ({"channel_order": "RGBA"}, "channel_order 'RGBA'"),
        ({"layout": "CHW"}, "layout 'CHW'"),
        ({"interpolation": "area"}, "interpolation 'area'"),
        ({"resize": 0}, "resize must be a positive integer"),
    ):
        with pytest.raises(DataError, match=message):
            _prep(**bad)


# --- Fashion-MNIST: the .deb container and IDX parsers on synthetic bytes (no network) ---


def _ar(members: dict[str, bytes]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members.items():
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}".encode() + b"`\n"
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _tar_xz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return lzma.compress(buffer.getvalue())


def test_ar_and_idx_parsers():
    members = read_ar(_ar({"debian-binary": b"2.0\n", "odd/": b"abc", "after": b"xy"}))
    assert members == {"debian-binary": b"2.0\n", "odd": b"abc", "after": b"xy"}  # odd size padded, GNU '/' cut
    with pytest.raises(DataError, match="not an ar archive"):
        read_ar(b"PK\x03\x04", "x.deb")
    with pytest.raises(DataError, match="member 'big' is truncated"):
        read_ar(_ar({"big": b"0123456789"})[:-3])

    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(_idx(images)), images)
    labels = np.array([7, 1], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(_idx(labels)), labels)
    shorts = struct.pack(">BBBBI", 0, 0, 0x0B, 1, 2) + np.array([258, -2], dtype=">i2").tobytes()
    assert read_idx(shorts).tolist() == [258, -2]
    with pytest.raises(DataError, match="bad magic"):
        read_idx(b"\x01\x00\x08\x01")
    with pytest.raises(DataError, match="need 24 bytes of data, found 20"):
        read_idx(_idx(images)[:-4], "t.idx")

    tar = deb_data_tar(_ar({"debian-binary": b"2.0\n", "data.tar.xz": _tar_xz({"./usr/a": b"hello"})}))
    assert tar.extractfile("./usr/a").read() == b"hello"
    with pytest.raises(DataError, match=r"payload data\.tar\.zst is not data\.tar\.xz or data\.tar\.gz"):
        deb_data_tar(_ar({"debian-binary": b"2.0\n", "data.tar.zst": b"zz"}))


def _fake_deb(n: dict[str, int]) -> bytes:
    files = {}
    rng = np.random.default_rng(0)
    for split, (images_name, labels_name) in vision_demo.IDX_FILES.items():
        files[f"./{vision_demo.IDX_DIR}/{images_name}"] = gzip.compress(
            _idx(rng.integers(0, 256, (n[split], 28, 28), dtype=np.uint8))
        )
        files[f"./{vision_demo.IDX_DIR}/{labels_name}"] = gzip.compress(_idx(np.arange(n[split], dtype=np.uint8) % 10))
    return _ar({"debian-binary": b"2.0\n", "control.tar.xz": b"", "data.tar.xz": _tar_xz(files)})


def test_fashion_mnist_cache_from_a_synthetic_deb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import hashlib

    monkeypatch.setenv("EDGEPTM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="not cached; run 'edgeptm demo'"):
        fashion_mnist(fetch=False)
    deb = tmp_path / "fake.deb"
    deb.write_bytes(_fake_deb({"train": 12, "val": 10}))
    with pytest.raises(DataError, match=r"fake\.deb: sha256 .* does not match the pinned"):
        fashion_mnist(deb=deb)
    monkeypatch.setattr(vision_demo, "DEB_SHA256", hashlib.sha256(deb.read_bytes()).hexdigest())
    monkeypatch.setattr(vision_demo, "EXPECTED_COUNTS", {"train": 12, "val": 10})
    split = fashion_mnist(deb=deb)
    assert (split.n_train, split.n_val) == (12, 10)
    train = read_image_data(split.train)
    assert len(train) == 12 and train.label_set() == sorted(vision_demo.CLASS_NAMES)
    assert Path(train.paths[0]).relative_to(split.train).as_posix() == "Ankle_boot/09.png"
    assert len(read_image_data(split.val)) == 10
    info = json.loads((split.train.parent / "info.json").read_text())
    assert info["license"].startswith("MIT") and info["per_class"]["train"]["T-shirt_top"] == 2
    assert [p.name for p in split.train.parent.parent.iterdir()] == ["fashion-mnist"]  # no staging left
    assert fashion_mnist(fetch=False) == split


def test_fashion_mnist_without_apt_get(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("EDGEPTM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vision_demo.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match=r"apt-get not found: .* pass it as fashion_mnist\(deb=PATH\)"):
        fashion_mnist()


@pytest.mark.network
@pytest.mark.slow
def test_fashion_mnist_fetch():
    try:
        split = fashion_mnist(fetch=True)
    except DataError as exc:
        pytest.skip(f"Fashion-MNIST unavailable (no apt-get or no Debian mirror?): {exc}")
    assert (split.n_train, split.n_val) == (60000, 10000)
    train, val = read_image_data(split.train), read_image_data(split.val)
    assert (len(train), len(val)) == (60000, 10000)
    assert train.label_set() == val.label_set() == sorted(vision_demo.CLASS_NAMES)
    with Image.open(train.paths[0]) as image:
        assert image.size == (28, 28) and image.mode == "L"
