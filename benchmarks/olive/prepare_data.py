"""Write the feeds Olive sees, from an edgeptm artifact, with edgeptm's own preprocessing.

Runs in the PROJECT's venv (it imports edgeptm); run_olive.py, in Olive's venv, only reads the
.npz files it writes, so both tools see exactly the same arrays:

- calib.npz: the calibration inputs edgeptm's static INT8 uses (``draw_calibration``: the seeded
  draw of the training sample the artifact carries, 256 by default), each encoded as edgeptm's
  ``Calibration.feeds()`` does (one input per feed; texts padded to the model's max length).
  Keys ``<input name>``, stacked over the inputs: [N, 1, ...] (one feed per row).
- val.npz: the validation split the artifact carries, in the batches edgeptm's Predictor scores
  it with (32 per batch; texts padded to the longest in the batch, cut at the max length).
  Keys ``b<i>.<input name>`` and ``b<i>.labels`` (label indices in the manifest's label order).
- latency.npz: the one feed edgeptm benches: batch 1, texts padded to exactly --seq-len (128)
  from the first validation sentence (benchmarks/optimum/compare.py's feed); images: the first
  validation image at the artifact's size.
- meta.json: what was written and from where.

    .venv/bin/python benchmarks/olive/prepare_data.py ARTIFACT --out DIR [--val-limit N] [--calib-samples 256]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 32  # edgeptm's Predictor batch size


def _fallback_val(artifact: Any, pre: Any, n: int) -> tuple[list[Any], list[int], str]:
    """An artifact without labelled data (a model used as-is): sample inputs, label 0 -- plumbing only."""
    return pre.sample_inputs(n), [0] * n, "no labelled data: edgeptm sample inputs, labels all 0 (plumbing only)"


def image_encoder(pre: Any) -> Any:
    """Images -> {input name: uint8 (N, H, W, 3)}: edgeptm's decode + resize + crop, not yet normalised
    (a quarter of the float32 bytes: the 10,000 validation images at 224 are 1.5 GB, not 6)."""
    from PIL import Image

    def pixels(image: Any) -> np.ndarray:
        if isinstance(image, (str, Path)):
            with Image.open(image) as im:
                im.load()
                return np.asarray(pre.prep._geometry(pre.prep._decode(im)), dtype=np.uint8)
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        return np.asarray(pre.prep._geometry(pre.prep._decode(image)), dtype=np.uint8)

    def encode(images: Any) -> dict[str, np.ndarray]:
        return {pre.input_names[0]: np.stack([pixels(image) for image in images])}

    return encode


def image_record(prep: Any) -> dict[str, Any]:
    return {
        "scale": prep.scale,
        "mean": list(prep.mean),
        "std": list(prep.std),
        "channel_order": prep.channel_order,
        "layout": prep.layout,
    }


def normalise(pixels: np.ndarray, prep: Any) -> np.ndarray:
    """The float32 ops of edgeptm's ImagePreprocessing._normalise, on a uint8 (N, H, W, 3) batch
    (olive_data.py applies the same ones from meta.json)."""
    x = pixels.astype(np.float32) * np.float32(prep.scale)
    x -= np.asarray(prep.mean, dtype=np.float32)
    x /= np.asarray(prep.std, dtype=np.float32)
    if prep.channel_order == "BGR":
        x = x[..., ::-1]
    if prep.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path, help="edgeptm ONNX artifact directory (manifest.json, model.onnx)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--val-limit", type=int, default=None, help="first N validation inputs only (smoke runs)")
    parser.add_argument("--calib-samples", type=int, default=256, help="edgeptm's static-int8 default: 256")
    parser.add_argument("--seq-len", type=int, default=128, help="text latency feed length (edgeptm bench: 128)")
    args = parser.parse_args()

    from edgeptm.artifacts import open_artifact
    from edgeptm.quantization import Calibration
    from edgeptm.runtime.preprocess import preprocessor_for
    from edgeptm.tasks import carried_val_data, draw_calibration, get_task

    artifact = open_artifact(args.artifact)
    task = get_task(artifact.task)
    pre = preprocessor_for(artifact)
    labels = artifact.labels
    is_text = hasattr(pre, "tokenizer")
    args.out.mkdir(parents=True, exist_ok=True)

    # validation: the carried split, Predictor's batches
    data = carried_val_data(task, artifact)
    if data is not None and labels:
        inputs = list(data.texts if is_text else data.paths)
        targets = [labels.index(label) for label in data.labels]
        val_source = "validation split carried by the artifact"
    else:
        inputs, targets, val_source = _fallback_val(artifact, pre, args.val_limit or 64)
    if args.val_limit:
        inputs, targets = inputs[: args.val_limit], targets[: args.val_limit]
    encode = pre.encode if is_text else image_encoder(pre)
    val: dict[str, np.ndarray] = {}
    for b, start in enumerate(range(0, len(inputs), BATCH)):
        feed = encode(inputs[start : start + BATCH])
        if b == 0 and not is_text:  # the stored pixels give back edgeptm's own float32 feed, bit for bit
            check = pre.encode(inputs[start : start + BATCH])
            for name, array in check.items():
                assert np.array_equal(normalise(feed[name], pre.prep), array), "image feed differs from edgeptm's"
        for name, array in feed.items():
            val[f"b{b:04d}.{name}"] = array
        val[f"b{b:04d}.labels"] = np.asarray(targets[start : start + BATCH], dtype=np.int64)
    (np.savez if is_text else np.savez_compressed)(args.out / "val.npz", **val)

    # calibration: edgeptm's own draw and feeds
    calib_inputs, calib_source = draw_calibration(artifact, args.calib_samples)
    if not calib_inputs:  # an as-is model carries no training sample: calibrate on the validation inputs
        calib_inputs, calib_source = inputs[: args.calib_samples], f"validation inputs ({val_source})"
    if is_text:
        feeds = list(Calibration(calib_inputs, pre, calib_source).feeds())
    else:  # Calibration.feeds() is pre.encode([image]): the same pixels, stored as uint8
        feeds = [encode([item]) for item in calib_inputs]
    (np.savez if is_text else np.savez_compressed)(
        args.out / "calib.npz", **{name: np.stack([f[name] for f in feeds]) for name in feeds[0]}
    )

    # latency: the feed edgeptm bench times
    latency = pre.encode([inputs[0]], args.seq_len) if is_text else pre.encode([inputs[0]])
    np.savez(args.out / "latency.npz", **latency)  # the float32 feed itself, images too

    meta = {
        "artifact": str(args.artifact),
        "manifest_sha256": artifact.manifest_sha256,
        "task": artifact.task,
        "labels": labels,
        "num_classes": len(labels) or int(artifact.view.outputs[0].shape[-1]),
        "inputs": {name: {"dtype": str(a.dtype)} for name, a in latency.items()},
        "preprocessing": artifact.preprocessing,
        # images: val/calib hold uint8 HWC pixels after resize + crop; olive_data.py normalises them
        "stored": "feeds"
        if is_text
        else {"pixels": "uint8 HWC after resize+crop", "normalise": image_record(pre.prep)},
        "runtime_hint": (artifact.manifest.get("runtime") or {}).get("onnxruntime"),
        "val": {"source": val_source, "count": len(inputs), "batches": -(-len(inputs) // BATCH), "batch": BATCH},
        "calib": {"source": calib_source, "count": len(feeds)},
        "latency": {name: list(a.shape) for name, a in latency.items()},
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps({k: meta[k] for k in ("task", "num_classes", "val", "calib", "latency")}))


if __name__ == "__main__":
    main()
