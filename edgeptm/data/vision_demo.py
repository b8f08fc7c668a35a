"""The image demo data: Fashion-MNIST (Zalando, MIT licence), fetched on request.

The images ship in Debian's ``dataset-fashion-mnist`` package. edgeptm asks ``apt-get download``
for that one pinned version (no root needed, nothing installed), checks the .deb against a pinned
sha256, unpacks it in Python (a .deb is an ``ar`` archive holding a compressed tar; no dpkg), parses
the IDX files and caches an image folder: ``train/<class>/<index>.png`` (the official 60,000) and
``val/<class>/<index>.png`` (the official 10,000 test images). Nothing here runs unless the user
asked for the demo data; the data is never committed to the repository.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from edgeptm.data.demo import cache_dir
from edgeptm.errors import DataError

log = logging.getLogger(__name__)

DEB_PACKAGE = "dataset-fashion-mnist"
DEB_VERSION = "0.0~git20200523.55506a9-1"
# sha256 of dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb (30,900,652 bytes), as computed
# from the downloaded file and as listed in Debian bookworm's signed package index.
DEB_SHA256 = "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0"
DEB_URL = (
    "http://deb.debian.org/debian/pool/main/d/dataset-fashion-mnist/"
    "dataset-fashion-mnist_0.0%7egit20200523.55506a9-1_all.deb"
)
IDX_DIR = PurePosixPath("usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
EXPECTED_COUNTS = {"train": 60000, "val": 10000}
# The official label order (0..9), made safe as folder names ("T-shirt/top" -> "T-shirt_top").
CLASS_NAMES = (
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
)
LICENSE = "MIT (Expat), Copyright 2017 Zalando SE"
DESCRIPTION = (
    "Fashion-MNIST (Zalando): 28x28 greyscale clothing images in 10 classes; "
    "the official 60,000 training images and the official 10,000 test images as validation"
)

# IDX element types: the third magic byte -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class VisionDemoSplit:
    train: Path
    val: Path
    n_train: int
    n_val: int
    description: str


def fashion_mnist(fetch: bool = True, deb: str | Path | None = None) -> VisionDemoSplit:
    """The cached train/val image folders (one sub-folder per class), fetching them if asked.

    ``deb`` is a copy of the pinned .deb downloaded by other means (checked against the same sha256),
    for machines without apt-get.
    """
    root = cache_dir() / "datasets" / "fashion-mnist"
    info_path = root / "info.json"
    if not info_path.is_file():
        if not fetch and deb is None:
            raise DataError("the Fashion-MNIST demo data is not cached; run 'edgeptm demo' to fetch it")
        _prepare(root, Path(deb) if deb is not None else None)
    info = json.loads(info_path.read_text())
    return VisionDemoSplit(root / "train", root / "val", info["n_train"], info["n_val"], info["description"])


def _download_deb(into: Path) -> Path:
    """``apt-get download`` the pinned version into ``into`` (works without root)."""
    spec = f"{DEB_PACKAGE}={DEB_VERSION}"
    manual = f"or download {DEB_URL} yourself and pass it as fashion_mnist(deb=PATH)"
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise DataError(f"apt-get not found: the Fashion-MNIST demo data comes from Debian's {spec} package; {manual}")
    log.info("fetching %s with apt-get download (31 MB, once)", spec)
    try:
        proc = subprocess.run(
            [apt_get, "download", spec], cwd=into, capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired:
        raise DataError(f"apt-get download {spec} timed out after 600 s; {manual}") from None
    debs = sorted(into.glob("*.deb"))
    if proc.returncode != 0 or not debs:
        lines = proc.stderr.strip().splitlines()
        errors = [line for line in lines if line.startswith("E:")] or lines or ["no output"]
        hint = (
            " (run 'apt-get update' first; the package is in Debian's main archive)"
            if any("Unable to locate" in line or "not found" in line for line in errors)
            else ""
        )
        raise DataError(f"apt-get download {spec} failed: {errors[0]}{hint}; {manual}")
    return debs[0]


def read_ar(data: bytes, source: str = "archive") -> dict[str, bytes]:
    """The members of a Unix ``ar`` archive (the .deb container), by name."""
    if not data.startswith(b"!<arch>\n"):
        raise DataError(f"{source}: not an ar archive (a .deb starts with '!<arch>')")
    members: dict[str, bytes] = {}
    offset = 8
    while offset < len(data):
        header = data[offset : offset + 60]
        if len(header) < 60 or header[58:60] != b"`\n":
            raise DataError(f"{source}: corrupt ar member header at byte {offset}")
        name = header[0:16].decode("ascii", "replace").rstrip()
        if name.endswith("/") and name != "/":  # GNU ar terminates names with '/'
            name = name[:-1]
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise DataError(f"{source}: corrupt ar member size at byte {offset}") from None
        start = offset + 60
        if start + size > len(data):
            raise DataError(f"{source}: ar member '{name}' is truncated ({size} bytes declared)")
        members[name] = data[start : start + size]
        offset = start + size + (size % 2)  # members are padded to an even length
    return members


def deb_data_tar(deb: bytes, source: str = "package") -> tarfile.TarFile:
    """The payload tar of a .deb (``data.tar.xz`` or ``data.tar.gz``), opened in memory."""
    members = read_ar(deb, source)
    for name, opener in (("data.tar.xz", lzma.decompress), ("data.tar.gz", gzip.decompress)):
        if name in members:
            try:
                raw = opener(members[name])
            except (lzma.LZMAError, OSError, EOFError) as exc:
                raise DataError(f"{source}: {name} cannot be decompressed ({exc})") from None
            return tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
    payload = [n for n in members if n.startswith("data.tar")]
    found = payload[0] if payload else "none"
    raise DataError(f"{source}: payload {found} is not data.tar.xz or data.tar.gz (the only formats edgeptm reads)")


def read_idx(data: bytes, source: str = "IDX data") -> np.ndarray:
    """An IDX array (the MNIST format): magic 0 0 <type> <ndim>, big-endian uint32 dims, then the values."""
    if len(data) < 4 or data[0:2] != b"\x00\x00":
        raise DataError(f"{source}: not an IDX file (bad magic)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"{source}: unknown IDX element type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: IDX header is truncated")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(f"{source}: IDX dims {dims} need {expected} bytes of data, found {len(data) - header}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _tar_member(tar: tarfile.TarFile, wanted: PurePosixPath, source: str) -> bytes:
    for member in tar.getmembers():
        if member.isfile() and PurePosixPath(member.name) == wanted:  # "./usr/x" and "usr/x" alike
            handle = tar.extractfile(member)
            if handle is not None:
                return handle.read()
    raise DataError(f"{source}: no {wanted} in the package")


def _write_split(images: np.ndarray, labels: np.ndarray, folder: Path) -> None:
    from PIL import Image

    for name in CLASS_NAMES:
        (folder / name).mkdir(parents=True)
    width = len(str(len(images) - 1))  # zero-padded, so sorted file names are in the official order
    for index, (pixels, label) in enumerate(zip(images, labels)):
        # compress_level=1: 70,000 PNGs in seconds; the files are ~600 bytes either way.
        Image.fromarray(pixels).save(folder / CLASS_NAMES[label] / f"{index:0{width}d}.png", compress_level=1)


def _prepare(root: Path, deb: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="edgeptm-fetch-") as tmp:
        deb_path = deb if deb is not None else _download_deb(Path(tmp))
        try:
            deb_bytes = deb_path.read_bytes()
        except OSError as exc:
            raise DataError(f"{deb_path}: cannot read ({exc.strerror})") from None
    digest = hashlib.sha256(deb_bytes).hexdigest()
    if digest != DEB_SHA256:
        raise DataError(f"{deb_path.name}: sha256 {digest} does not match the pinned {DEB_SHA256}; refusing it")
    source = deb_path.name
    with deb_data_tar(deb_bytes, source) as tar:
        splits = {}
        for split, (images_name, labels_name) in IDX_FILES.items():
            arrays = []
            for name in (images_name, labels_name):
                raw = gzip.decompress(_tar_member(tar, IDX_DIR / name, source))
                arrays.append(read_idx(raw, f"{source}:{name}"))
            images, labels = arrays
            n = EXPECTED_COUNTS[split]
            if images.shape != (n, 28, 28) or labels.shape != (n,) or images.dtype != np.uint8:
                raise DataError(f"{source}: {split} images {images.shape} / labels {labels.shape}, expected {n} 28x28")
            if labels.min() < 0 or labels.max() >= len(CLASS_NAMES):
                raise DataError(f"{source}: {split} labels outside 0..{len(CLASS_NAMES) - 1}")
            splits[split] = (images, labels.astype(np.int64))

    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        started = time.perf_counter()
        for split, (images, labels) in splits.items():
            _write_split(images, labels, staging / split)
        log.info("wrote %d PNGs in %.1f s", sum(len(i) for i, _ in splits.values()), time.perf_counter() - started)
        info = {
            "description": DESCRIPTION,
            "source": f"Debian package {DEB_PACKAGE} {DEB_VERSION}, {IDX_DIR}",
            "deb_sha256": DEB_SHA256,
            "license": LICENSE,
            "classes": list(CLASS_NAMES),
            "n_train": len(splits["train"][0]),
            "n_val": len(splits["val"][0]),
            "per_class": {
                split: {name: int((labels == i).sum()) for i, name in enumerate(CLASS_NAMES)}
                for split, (_, labels) in splits.items()
            },
        }
        (staging / "info.json").write_text(json.dumps(info, indent=2) + "\n")  # last: marks the folder complete
        if (root / "info.json").is_file():  # another process finished first; keep its copy
            return
        shutil.rmtree(root, ignore_errors=True)
        os.replace(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
