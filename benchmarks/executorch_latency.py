"""EfficientNet-Lite0 at 224: PyTorch eager vs ONNX Runtime FP32 / QDQ INT8 vs ExecuTorch (XNNPACK)
FP32 / INT8, batch 1, 2 threads, each variant in its own process (edgeptm.bench), interleaved rounds.

Prints the p50 table, the ratio of the fastest INT8 artifact to ONNX Runtime's QDQ INT8 (target
<= 0.85), and how often each INT8 artifact picks the same top-1 ImageNet class as its FP32 parent
on Fashion-MNIST validation images. The model is the pretrained one as-is (ImageNet head), so its
ImageNet accuracy cannot be measured here (no ImageNet images on this machine): agreement with
FP32 is the fidelity figure. ``--accuracy`` adds real accuracy: the demo checkpoint fine-tuned
on Fashion-MNIST (``runs/demo-vision``, from ``edgeptm demo-vision``) compiled to ExecuTorch FP32
and INT8, scored on its 2,000 validation images against its ONNX Runtime INT8 sibling.

INT8 for both runtimes is calibrated on Fashion-MNIST training images (latency does not depend on
what the pixels show): ONNX Runtime's QDQ on 256 (``vision_latency.py --imagenet-224``), ExecuTorch
on ``--calib-samples`` (100 by default, edgeptm's default), written into a copy of the as-is
checkpoint as its calibration sample, since an as-is model carries none.

    .venv/bin/python benchmarks/executorch_latency.py [--rounds 13] [--accuracy] [--json FILE]
        [--also runs/vision-224/openvino-int8]   # other INT8 artifacts to time in the same run
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from vision_latency import imagenet_224  # noqa: E402  (ORT FP32 + QDQ INT8 at 224, cached)

from edgeptm.benchmarking import BenchOptions, bench  # noqa: E402
from edgeptm.cli.bench import format_report  # noqa: E402
from edgeptm.environment import describe_lines

TARGET_VS_ORT_QDQ = 0.85
AGREEMENT_IMAGES = 500


def calibrated_checkpoint(ckpt_path: Path, out: Path, samples: int) -> Path:
    """The as-is checkpoint plus a calibration sample of Fashion-MNIST training images."""
    from edgeptm.artifacts import ArtifactWriter, open_artifact
    from edgeptm.data.images import IMAGE_SUFFIXES, ImageDataset
    from edgeptm.data.vision_demo import fashion_mnist

    if (out / "manifest.json").is_file():
        return out
    ckpt = open_artifact(ckpt_path)
    train = fashion_mnist(fetch=True).train
    files = sorted(str(p) for p in Path(train).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    chosen = sorted(random.Random(0).sample(files, samples))
    with ArtifactWriter(out, force=True) as writer:
        for role, entry in ckpt.manifest["files"].items():
            shutil.copy2(ckpt.path / entry["path"], writer.add(role, entry["path"]))
        labels = [Path(p).parent.name for p in chosen]  # Fashion-MNIST's classes: calibration ignores them
        ImageDataset(chosen, labels, str(train)).to_jsonl(writer.add("calib_data", "calib.jsonl"))
        keep = ("task", "labels", "model", "io", "preprocessing", "precision", "metrics")
        manifest = {k: ckpt.manifest[k] for k in keep if k in ckpt.manifest}
        manifest["parents"] = [ckpt.as_parent()]
        manifest["note"] = f"as-is checkpoint + {samples} Fashion-MNIST training images as its calibration sample"
        writer.finish("checkpoint", manifest)
    return out


def executorch_programs(source: Path, work: Path, prefix: str = "executorch") -> list[Path]:
    """ExecuTorch FP32 and INT8 programs of ``source`` (static batch 1), built once."""
    from edgeptm.compile import CompileOptions, compile

    paths = []
    for precision in ("fp32", "int8"):
        out = work / f"{prefix}-{precision}"
        if not (out / "manifest.json").is_file():
            compile(source, out, CompileOptions(target="executorch", precision=precision), force=True)
        paths.append(out)
    return paths


def top1_agreement(pairs: list[tuple[str, Path, Path]], images: list[str]) -> list[tuple[str, float]]:
    """Share of ``images`` on which each (INT8, FP32) pair picks the same top-1 class."""

    import edgeptm

    rows = []
    for name, quantized, parent in pairs:
        with edgeptm.load(quantized) as q, edgeptm.load(parent) as p:
            rows.append((name, float((q.logits(images).argmax(-1) == p.logits(images).argmax(-1)).mean())))
    return rows


def fashion_val_images(n: int) -> list[str]:
    from edgeptm.data.images import IMAGE_SUFFIXES
    from edgeptm.data.vision_demo import fashion_mnist

    val = fashion_mnist(fetch=True).val
    files = sorted(str(p) for p in Path(val).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(random.Random(1).sample(files, min(n, len(files))))


def accuracy_rows(root: Path, work: Path) -> list[list[str]]:
    """The Fashion-MNIST fine-tuned demo model: accuracy of each precision on its validation split."""
    from edgeptm.artifacts import open_artifact

    paths = [root / "checkpoint", root / "onnx-fp32", root / "onnx-int8"]
    paths += executorch_programs(root / "checkpoint", work, prefix="demo-executorch")
    rows = []
    for path in paths:
        a = open_artifact(path)
        m = a.metrics
        kind = (a.manifest.get("compile") or {}).get("target") or a.kind
        delta = m.get("accuracy_delta_points")
        rows.append(
            [
                str(path),
                kind,
                a.manifest.get("precision", "fp32"),
                f"{m.get('accuracy', 0):.4f}",
                "" if delta is None else f"{delta:+.2f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/vision-224", help="where the 224 artifacts are kept")
    parser.add_argument("--rounds", type=int, default=13)
    parser.add_argument("--iterations", type=int, default=650, help="timed runs per variant, split over the rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calib-samples", type=int, default=100)
    parser.add_argument("--also", nargs="*", default=[], help="more artifacts to time in the same run")
    parser.add_argument("--accuracy", action="store_true", help="also the demo model's accuracy per precision")
    parser.add_argument("--demo-root", default="runs/demo-vision")
    parser.add_argument("--json", default=None, help="also write the bench report here")
    args = parser.parse_args()

    work = Path(args.work)
    ckpt, onnx_fp32, onnx_int8 = imagenet_224(work)
    calibrated = calibrated_checkpoint(Path(ckpt), work / "checkpoint-calib", args.calib_samples)
    et_fp32, et_int8 = executorch_programs(calibrated, work)
    paths = [Path(ckpt), onnx_fp32, onnx_int8, et_fp32, et_int8, *map(Path, args.also)]
    options = BenchOptions(
        batch_size=1, threads=args.threads, iterations=args.iterations, warmup=50, rounds=args.rounds
    )
    report = bench(paths, options)
    print(format_report(report))
    print("\n" + "\n".join(describe_lines(report["environment"])))

    results = report["results"]
    by_path = {str(Path(r["artifact"]).resolve()): r for r in results}
    p50 = {str(p.resolve()): by_path.get(str(p.resolve()), {}).get("p50_ms") for p in paths}
    qdq = p50[str(onnx_int8.resolve())]
    int8 = [(r["backend"], r["p50_ms"]) for r in results if "int8" in str(r.get("precision", "")) and r.get("p50_ms")]
    if qdq and int8:
        backend, fastest = min(int8, key=lambda x: x[1])
        ratio = fastest / qdq
        verdict = "met" if ratio <= TARGET_VS_ORT_QDQ else "MISSED"
        print(
            f"\nfastest INT8: {backend} {fastest:.3f} ms; / ONNX Runtime QDQ {qdq:.3f} ms = {ratio:.3f} "
            f"(target <= {TARGET_VS_ORT_QDQ}: {verdict})"
        )
        et = p50[str(et_int8.resolve())]
        if et:
            print(
                f"ExecuTorch INT8 / ONNX Runtime QDQ: {et / qdq:.3f}; ExecuTorch INT8 / FP32: "
                f"{et / p50[str(et_fp32.resolve())]:.3f}"
            )

    images = fashion_val_images(AGREEMENT_IMAGES)
    pairs = [
        ("ONNX Runtime QDQ INT8 vs ONNX Runtime FP32", onnx_int8, onnx_fp32),
        ("ExecuTorch INT8 vs ExecuTorch FP32", et_int8, et_fp32),
        ("ExecuTorch INT8 vs PyTorch eager FP32", et_int8, Path(ckpt)),
        ("ExecuTorch FP32 vs PyTorch eager FP32", et_fp32, Path(ckpt)),
        ("ONNX Runtime FP32 vs PyTorch eager FP32", onnx_fp32, Path(ckpt)),
    ]
    print(f"\ntop-1 agreement (ImageNet classes) on {len(images)} Fashion-MNIST validation images:")
    for name, share in top1_agreement(pairs, images):
        print(f"  {name}: {share:.3f}")
    if args.accuracy:
        print(f"\naccuracy of the Fashion-MNIST fine-tuned demo model ({args.demo_root}), on its validation split:")
        for row in accuracy_rows(Path(args.demo_root), work):
            print("  " + " | ".join(row))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
