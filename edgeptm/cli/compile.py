from __future__ import annotations

import click

from edgeptm.cli.common import force_option, options, out_option, profile_option


@click.command(name="compile")
@click.argument("source", type=click.Path())
@click.option(
    "--target",
    type=click.Choice(["tensorrt", "aoti", "openvino", "executorch"]),
    default=None,
    help="Runtime to compile for [default: the profile's, else aoti].",
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="aoti: where it runs [default: cpu].")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "int8"]),
    default=None,
    help="openvino: fp32, bf16 or int8 (NNCF, calibrated on the artifact's data); executorch: fp32 or int8 "
    "(PT2E + XNNPACK quantizer) [default: the profile's, else fp32].",
)
@click.option(
    "--calib",
    type=click.Path(exists=True),
    default=None,
    help="openvino/executorch int8: calibration data (images: a folder or a path,label list; text: a file with a "
    "'text' column) [default: the training sample the artifact carries].",
)
@click.option(
    "--calib-samples", type=click.IntRange(min=1), default=None, help="openvino/executorch int8: calibration inputs."
)
@click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0),
    default=None,
    help="openvino/executorch int8 or bf16: write nothing if accuracy on the carried validation split drops more "
    "than this many points [default: the profile's quantize.max_accuracy_drop].",
)
@click.option("--max-batch", type=click.IntRange(min=1), default=None, help="Largest batch accepted [default: 32].")
@click.option(
    "--max-seq-len", type=click.IntRange(min=1), default=None, help="Text: longest sequence [default: max length]."
)
@click.option(
    "--shapes",
    multiple=True,
    metavar="NAME:MIN,OPT,MAX",
    help="Shape range of one input, e.g. input_ids:1x1,1x128,8x128 (or NAME:1x128 for a static shape); repeat "
    "per input [default: from --max-batch/--max-seq-len, the profile, then the model].",
)
@click.option("--workspace-mb", type=click.IntRange(min=1), default=None, help="tensorrt: builder scratch memory.")
@click.option(
    "--optimization-level", type=click.IntRange(0, 5), default=None, help="tensorrt: builder level 0-5 [default: 3]."
)
@click.option("--dla-core", type=click.IntRange(min=0), default=None, help="tensorrt: run on this DLA core (Jetson).")
@click.option("--gpu-fallback/--no-gpu-fallback", default=None, help="tensorrt: layers DLA lacks run on the GPU.")
@click.option(
    "--hardware-compatibility",
    type=click.Choice(["none", "ampere_plus", "same_compute_capability"]),
    default=None,
    help="tensorrt: which GPUs the engine may run on [default: the one it is built on].",
)
@click.option(
    "--version-compatible/--no-version-compatible",
    default=None,
    help="tensorrt: the engine also runs on later TensorRT of the same major version.",
)
@click.option("--cuda-graph/--no-cuda-graph", default=None, help="tensorrt: the backend replays a captured CUDA graph.")
@click.option("--timing-cache", type=click.Path(dir_okay=False), default=None, help="tensorrt: timing cache file.")
@options(profile_option, out_option, force_option)
def command(source: str, out: str, force: bool, shapes: tuple[str, ...], **kwargs) -> None:
    """Compile SOURCE into an engine for one runtime, validated before it is written.

    \b
    --target tensorrt: SOURCE is an ONNX artifact (FP32, FP16, or INT8 Q/DQ from
      'quantize --mode static-int8 --activations int8'); the engine is built for this GPU and
      TensorRT version, with one optimization profile over the shape ranges, and checked against
      ONNX Runtime. Needs: pip install 'edgeptm[tensorrt]'.
    --target aoti: SOURCE is a checkpoint artifact or a registered model name; torch.export +
      AOTInductor -> a .pt2 package (CPU, or CUDA with --device cuda), dynamic batch (and
      sequence), checked against eager PyTorch; loads with the same torch version.
    --target openvino: SOURCE is an ONNX artifact (the plain export: 'export --no-optimize'); an
      OpenVINO IR in fp32, bf16 or int8 (NNCF, or the Q/DQ graph as it is), static when the shapes
      are fixed, checked against ONNX Runtime.
    --target executorch: SOURCE is a checkpoint artifact; a .pte program with the XNNPACK delegate
      (fp32, or int8 with PT2E), checked against eager PyTorch.
    INT8 and bf16 are scored on the validation split the source carries and held to
    --max-accuracy-drop.
    """
    from edgeptm.compile import CompileOptions, compile

    artifact = compile(source, out, CompileOptions(shapes=list(shapes) or None, **kwargs), force=force)
    info, v, m = artifact.manifest["compile"], artifact.manifest["validation"], artifact.metrics
    where, against = _SUMMARY[info["target"]](info)
    seconds = info.get("build_seconds", info.get("compile_seconds"))
    click.echo(f"engine: {artifact.path} ({info['target']}, {where}, {seconds} s)")
    if m.get("accuracy") is not None:
        delta = m.get("accuracy_delta_points")
        accuracy = f"val accuracy {m['accuracy']:.4f}" + (f" ({delta:+.2f} points)" if delta is not None else "")
    else:
        accuracy = "no labelled data"
    click.echo(
        f"vs {against}: max |output diff| {v['max_abs_diff']:.2e}, min cosine {v['min_cosine']:.5f}, top-1 "
        f"agreement {v['label_agreement']:.3f} on {v['samples']} samples; {accuracy}"
    )


def _shapes(info: dict) -> str:
    return "static shapes" if info.get("static_shapes") else "dynamic shapes"


_SUMMARY = {  # target -> what the engine is, and what it was validated against
    "tensorrt": lambda i: (
        f"TensorRT {i['tensorrt']}, {i['gpu']} (cc {i['compute_capability']}), {i['network']}",
        "ONNX Runtime",
    ),
    "openvino": lambda i: (
        f"OpenVINO {i['openvino']}, {i['precision']} running {i.get('inference_precision')}, {_shapes(i)}",
        "ONNX Runtime",
    ),
    "executorch": lambda i: (
        f"ExecuTorch {i['executorch']} XNNPACK, {i['precision']}, {_shapes(i)}, "
        f"{i['delegate']['delegated_nodes']} of "
        f"{i['delegate']['delegated_nodes'] + i['delegate']['non_delegated_nodes']} nodes delegated",
        "eager PyTorch",
    ),
    "aoti": lambda i: (f"{i.get('device', 'cpu')}, torch {i.get('torch')}", "eager PyTorch"),
}
