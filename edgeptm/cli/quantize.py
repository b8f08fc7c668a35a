from __future__ import annotations

import click

from edgeptm.cli.common import echo_perplexity, force_option, options, out_option, profile_option


@click.command(name="quantize")
@click.argument("onnx_artifact", type=click.Path())
@click.option(
    "--mode",
    type=click.Choice(["dynamic-int8", "static-int8", "fp16", "int4", "int8"]),
    default=None,
    help="Quantization mode [default: profile's, else dynamic-int8 for text, static-int8 (QDQ) for images, "
    "int4 for generators]. Generators: int4 or int8 (= dynamic-int8) weight-only blocks.",
)
@click.option(
    "--val",
    type=click.Path(),
    default=None,
    help="Labelled data to measure accuracy on [default: the split the artifact carries].",
)
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0),
    default=None,
    help="Fail, writing nothing, if accuracy falls by more than this many points (1.0 = 1%).",
)
@click.option(
    "--per-channel/--per-tensor",
    default=None,
    help="Weight scales per output channel or one per tensor [default: per channel].",
)
@click.option(
    "--calib",
    type=click.Path(exists=True),
    default=None,
    help="static-int8: calibration inputs (an image folder, or a data file); generators' int4: calibration text "
    "(JSONL or plain text) [default: the training sample the artifact carries].",
)
@click.option(
    "--calib-samples",
    type=click.IntRange(min=1),
    default=None,
    help="static-int8: calibration inputs [default: 256]; generators: calibration tokens [default: 8192].",
)
@click.option(
    "--calib-method",
    type=click.Choice(["minmax", "entropy", "percentile"]),
    default=None,
    help="static-int8: how activation ranges are set [default: minmax].",
)
@click.option(
    "--activations",
    type=click.Choice(["uint8", "int8"]),
    default=None,
    help="static-int8: uint8 activations (fastest on ONNX Runtime CPU) or symmetric int8 (the form GPU "
    "compilers build) [default: profile's, else uint8].",
)
@click.option(
    "--block-size", type=click.IntRange(min=16), default=None, help="Generators: weights per block [default: 32]."
)
@click.option(
    "--weight-method",
    type=click.Choice(["auto", "rtn", "search", "imatrix", "gptq"]),
    default=None,
    help="Generators: how block scales are chosen: rtn (round to nearest), search (data-free error search), "
    "imatrix (error weighted by activations on calibration text), gptq [default: imatrix when there is "
    "calibration text, else search].",
)
@click.option(
    "--embedding-bits",
    type=click.Choice(["4", "8", "32"]),
    default=None,
    callback=lambda ctx, param, value: int(value) if value else None,
    help="Generators: the token embedding / LM head table [default: 4 for int4 (its first rows 8-bit: "
    "--embedding-8bit-rows), 8 for int8].",
)
@click.option(
    "--accuracy-level",
    type=click.IntRange(0, 4),
    default=None,
    help="Generators: MatMulNBits compute, 4 = int8 activations (fastest on CPU), 0 = float [default: 4].",
)
@click.option(
    "--symmetric",
    is_flag=True,
    help="Generators' int4: blocks without zero points [default: asymmetric blocks with 4-bit zero points, "
    "faster and closer on ONNX Runtime CPU].",
)
@click.option(
    "--grid-offsets",
    type=click.Choice(["none", "widest", "all"]),
    default=None,
    help="Generators' int4, for weights that already lie on a 4-bit grid (de-quantized from a Q4_1 file): "
    "write the widest matmuls (or all) exactly on that grid, their blocks' offsets as extra input columns "
    "[default: widest].",
)
@click.option(
    "--embedding-8bit-rows",
    type=click.IntRange(min=0),
    default=None,
    help="Generators, a 4-bit tied embedding / LM head table: its first N token rows (the most frequent "
    "tokens of a byte-level BPE vocabulary) stay 8-bit [default: 2048; 0: all 4-bit].",
)
@click.option(
    "--max-perplexity-increase",
    type=click.FloatRange(min=0),
    default=None,
    help="Generators: fail, writing nothing, if validation perplexity rises by more than this many percent.",
)
@click.option(
    "--op-types",
    default=None,
    help="INT8: the op types that may be quantized: 'all', or a comma-separated list (MatMul,Gemm) "
    "[default: the model family's recipe].",
)
@click.option(
    "--fallback",
    type=click.Choice(["none", "auto"]),
    default=None,
    help="INT8: auto keeps in float the nodes whose INT8 kernels are no faster here (measured) and the nodes "
    "INT8 costs most accuracy, until --max-accuracy-drop holds; the manifest's quantization.fallback lists "
    "them [default: none].",
)
@click.option("--fp16-io", is_flag=True, help="fp16: float16 inputs and outputs too [default: float32 at the edges].")
@options(profile_option, out_option, force_option)
def command(onnx_artifact: str, out: str, force: bool, **kwargs) -> None:
    """Quantize ONNX_ARTIFACT; records accuracy and its delta from the parent.

    The portable model.onnx is quantized, so the result's model.onnx holds standard ONNX operators
    (static-int8: Q/DQ nodes, the form compile targets read). dynamic-int8 and fp16 also convert
    ONNX Runtime's fused graph (model.onnxruntime.onnx) when the artifact has one, which ONNX
    Runtime then runs; both graphs meet --max-accuracy-drop.
    """
    from edgeptm.quantization import QuantizeOptions, quantize

    artifact = quantize(onnx_artifact, out, QuantizeOptions(**kwargs), force=force)
    m = artifact.metrics
    if artifact.task == "text-generation":
        q = artifact.manifest["quantization"]
        click.echo(f"{q['mode']} ({q['weights']}, {q['method']}): {artifact.path}")
        v = artifact.manifest["validation"]
        click.echo(
            f"greedy tokens agreeing with the parent: {v['greedy_tokens_agreeing']}/{v['greedy_tokens']} "
            f"on {v['prompts']} prompts"
        )
        echo_perplexity(m, "perplexity not measured (no validation examples; pass --val)")
        return
    click.echo(f"{artifact.manifest['quantization']['mode']}: {artifact.path}")
    fallback = artifact.manifest["quantization"].get("fallback")
    if fallback:
        ms = fallback["latency_ms"]
        click.echo(
            f"fallback: {len(fallback['float_nodes'])} of {fallback['eligible_nodes']} quantized nodes kept float "
            f"({', '.join(f'{n} {t}' for t, n in fallback['float_node_types'].items()) or 'none'}); "
            f"p50 {ms['chosen']:.3f} ms against {ms['every_node_int8']:.3f} ms all-INT8 and "
            f"{ms['fp32_graph']:.3f} ms FP32, {fallback['builds']} builds in {fallback['seconds']:.0f} s"
        )
        if fallback["outcome"] != "int8":
            click.echo(f"fallback: {fallback['outcome']}")
    if m.get("accuracy") is None:
        click.echo("accuracy not measured (no labelled data; pass --val)")
        return
    click.echo(
        f"val accuracy {m['accuracy']:.4f} (parent {m['parent_accuracy']:.4f}, "
        f"{m['accuracy_delta_points']:+.2f} points) on {m['val_samples']} samples"
        + (f" ({m['graph']}, the graph ONNX Runtime runs)" if m.get("graph", "model.onnx") != "model.onnx" else "")
    )
    fidelity = artifact.manifest["fidelity"]
    if m.get("graph", "model.onnx") != "model.onnx" and "accuracy" in fidelity:
        click.echo(
            f"model.onnx (portable): val accuracy {fidelity['accuracy']:.4f} "
            f"({fidelity['accuracy_delta_points']:+.2f} points)"
        )
