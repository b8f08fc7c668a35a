"""Text generation (causal LMs): the data a generator trains and is measured on.

Training data is JSONL, one example a line, in one of three forms (a file keeps to one):

- ``{"prompt": "...", "completion": "..."}``: the loss is on the completion only;
- ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``: the loss is on
  the assistant turns only, each rendered through the model's chat template;
- ``{"text": "..."}`` rows, or a plain ``.txt`` file (one document per non-empty line): language
  modelling on every token.

A prompt/completion pair goes through the chat template as one user turn and the assistant's answer
when the model has a template (instruction-tuned models such as SmolLM2-Instruct are used that way
at generation time too), else it is concatenated as it is; the end-of-turn token closes every
completion so the fine-tuned model learns to stop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeptm.errors import DataError

FORMS = ("prompt-completion", "messages", "text")
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class LMExample:
    """One training example: ``prompt`` (a string or messages) and the target ``completion``;
    a ``text`` example has no prompt and is learnt whole."""

    form: str
    prompt: Any = None
    completion: str = ""
    messages: tuple[dict[str, str], ...] = ()

    def as_json(self) -> dict[str, Any]:
        if self.form == "messages":
            return {"messages": list(self.messages)}
        if self.form == "text":
            return {"text": self.completion}
        return {"prompt": self.prompt, "completion": self.completion}


@dataclass
class LMDataset:
    examples: list[LMExample]
    form: str
    source: str

    def __len__(self) -> int:
        return len(self.examples)

    def subset(self, idx: list[int]) -> "LMDataset":
        return LMDataset([self.examples[i] for i in idx], self.form, self.source)

    def to_jsonl(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for example in self.examples:
                fh.write(json.dumps(example.as_json(), ensure_ascii=False) + "\n")

    def texts(self) -> list[str]:
        """The examples' own words (for perplexity of raw text and for calibration)."""
        out = []
        for e in self.examples:
            if e.form == "messages":
                out.extend(m["content"] for m in e.messages)
            else:
                out.append(f"{e.prompt}\n{e.completion}" if e.prompt else e.completion)
        return [t for t in out if t.strip()]


def check_messages(messages: Any, error: type[Exception], where: str = "") -> list[dict[str, str]]:
    """Chat messages as a template takes them ({'role', 'content'}, known roles), or ``error``
    naming the first bad one (DataError for training data, UsageError for a prompt)."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise error(f"{where}'messages' must be a non-empty list of {{'role', 'content'}} objects")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise error(f"{where}message {i}: expected {{'role': ..., 'content': '...'}}")
        if message.get("role") not in ROLES:
            raise error(f"{where}message {i}: unknown chat role {message.get('role')!r} (known: {', '.join(ROLES)})")
        checked.append({"role": message["role"], "content": message["content"]})
    return checked


def _example(row: Any, where: str) -> LMExample:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object with prompt/completion, messages, or text")
    if "messages" in row:
        checked = check_messages(row["messages"], DataError, f"{where}: ")
        if not any(m["role"] == "assistant" for m in checked):
            raise DataError(f"{where}: no assistant message to learn")
        return LMExample("messages", messages=tuple(checked))
    if "prompt" in row or "completion" in row:
        prompt, completion = row.get("prompt"), row.get("completion")
        if not isinstance(prompt, str) or not isinstance(completion, str) or not completion.strip():
            raise DataError(f"{where}: 'prompt' and 'completion' must be strings (a non-empty completion)")
        return LMExample("prompt-completion", prompt=prompt, completion=completion)
    if isinstance(row.get("text"), str):
        if "label" in row:
            raise DataError(
                f"{where}: a labelled row (text, label) is classification data; a generator trains on "
                "prompt/completion pairs, chat messages, or plain text without labels"
            )
        return LMExample("text", completion=row["text"])
    raise DataError(f"{where}: expected 'prompt'/'completion', 'messages', or 'text' (keys: {', '.join(row)})")


def read_lm_data(path: str | Path) -> LMDataset:
    """Examples from a .jsonl file, or a plain-text file (one document per non-empty line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        raise DataError(
            f"{path}: a table is classification data; a generator trains on JSONL (prompt/completion, messages "
            "or text rows) or a plain-text file"
        )
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__})") from None
    examples: list[LMExample] = []
    if suffix in (".jsonl", ".json"):
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise DataError(f"{path}:{number}: not a JSON object") from None
            examples.append(_example(row, f"{path}:{number}"))
    else:
        examples = [LMExample("text", completion=line) for line in lines if line.strip()]
    if not examples:
        raise DataError(f"{path}: no examples")
    forms = {e.form for e in examples}
    if len(forms) > 1:
        raise DataError(f"{path}: mixes {' and '.join(sorted(forms))} rows; keep one form per file")
    return LMDataset(examples, forms.pop(), str(path))


def encode_example(example: LMExample, tokenizer: Any, max_length: int) -> tuple[list[int], list[int]] | None:
    """(input ids, labels) with -100 where no loss is taken; None when nothing learnable fits."""
    template = getattr(tokenizer, "chat_template", None)
    eos = tokenizer.eos_token or ""

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    if example.form == "text":
        tokens = ids(example.completion + eos)
        pieces = [(tokens, True)]
    elif example.form == "prompt-completion":
        if template:
            user = [{"role": "user", "content": example.prompt}]
            prefix = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
            whole = tokenizer.apply_chat_template(
                user + [{"role": "assistant", "content": example.completion}], tokenize=False
            )
            if not whole.startswith(prefix):  # a template that rewrites earlier turns: concatenate
                whole = prefix + example.completion + eos
            pieces = [(ids(prefix), False), (ids(whole[len(prefix) :].rstrip("\n")), True)]
        else:
            pieces = [(ids(example.prompt), False), (ids(example.completion + eos), True)]
    else:
        if not template:
            raise DataError("chat messages need a model with a chat template; give prompt/completion rows instead")
        pieces, done = [], ""
        messages = list(example.messages)
        for i, message in enumerate(messages):
            if message["role"] == "assistant":
                prefix = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
                if prefix.startswith(done) and len(prefix) > len(done):
                    pieces.append((ids(prefix[len(done) :]), False))
                    done = prefix
            upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
            if not upto.startswith(done):
                raise DataError("the chat template rewrites earlier turns; cannot mark the assistant's tokens")
            pieces.append((ids(upto[len(done) :]), message["role"] == "assistant"))
            done = upto
    input_ids: list[int] = []
    labels: list[int] = []
    for tokens, learn in pieces:
        input_ids += tokens
        labels += tokens if learn else [-100] * len(tokens)
    input_ids, labels = input_ids[:max_length], labels[:max_length]
    if all(label == -100 for label in labels[1:]):
        return None
    return input_ids, labels


class TextGeneration:
    name = "text-generation"

    def read_data(self, path: str | Path, opts: Any = None) -> LMDataset:
        return read_lm_data(path)

    def val_data(self, artifact: Any) -> LMDataset:
        return read_lm_data(artifact.file("val_data"))

    def calibration_inputs(self, artifact: Any) -> list[str] | None:
        if not artifact.has_file("calib_data"):
            return None
        return read_lm_data(artifact.file("calib_data")).texts()

    def read_calibration(self, path: str | Path) -> list[str]:
        return read_lm_data(path).texts()


TEXT_GENERATION = TextGeneration()


def masked_perplexity(decoder: Any, encoded: list[tuple[list[int], list[int]]]) -> dict[str, Any]:
    """Perplexity of the labelled tokens (completions) of ``encoded`` examples under ``decoder``
    (edgeptm.runtime.generator's OrtDecoder or TorchDecoder): each example one prefill."""
    import numpy as np

    nll, count = 0.0, 0
    for ids, labels in encoded:
        decoder.reset(len(ids))
        logits = decoder.forward(ids, all_logits=True).astype(np.float64)
        top = logits.max(axis=-1, keepdims=True)
        logp = logits - (top + np.log(np.exp(logits - top).sum(axis=-1, keepdims=True)))
        target = np.asarray(labels[1:])
        keep = target != -100
        nll -= float(logp[:-1][keep, target[keep]].sum())
        count += int(keep.sum())
    mean = nll / max(count, 1)
    return {"perplexity": float(np.exp(min(mean, 50.0))), "loss": mean, "tokens": count}


def perplexity_against(parent: Any, child: Any, encoded: list[tuple[list[int], list[int]]]) -> dict[str, Any]:
    """The manifest's perplexity metrics of ``child`` on the ``encoded`` validation examples, beside
    its ``parent``'s on the same tokens."""
    before, after = masked_perplexity(parent, encoded), masked_perplexity(child, encoded)
    return {
        "perplexity": after["perplexity"],
        "parent_perplexity": before["perplexity"],
        "perplexity_increase_pct": 100.0 * (after["perplexity"] / before["perplexity"] - 1.0),
        "val_tokens": after["tokens"],
        "perplexity_on": "completion tokens of the validation examples",
    }


def greedy_tokens(decoder: Any, prompt: list[int], steps: int) -> tuple[list[int], list[Any]]:
    """``steps`` greedy tokens after ``prompt``, and the logits each step chose from (copies: an ONNX
    Runtime decoder rewrites one output buffer in place on every step)."""
    import numpy as np

    decoder.reset(len(prompt) + steps)
    logits = decoder.forward(prompt)
    tokens, seen = [], [np.array(logits, copy=True)]
    for _ in range(steps):
        tokens.append(int(np.argmax(logits)))
        if len(tokens) == steps:
            break
        logits = decoder.forward([tokens[-1]])
        seen.append(np.array(logits, copy=True))
    return tokens, seen


def compare_decoders(reference: Any, candidate: Any, prompts: list[list[int]], steps: int) -> dict[str, Any]:
    """How ``candidate`` follows ``reference`` on real prompts: the largest logit difference over
    the prefill and ``steps`` decode steps (fed the reference's greedy tokens), and for how many
    tokens each one's own greedy continuation agrees with the reference's."""
    import numpy as np

    max_diff, agreed, total, identical = 0.0, 0, 0, 0
    for prompt in prompts:
        ref_tokens, ref_logits = greedy_tokens(reference, prompt, steps)
        candidate.reset(len(prompt) + steps)
        logits = candidate.forward(prompt)
        for i, expected in enumerate(ref_logits):
            max_diff = max(max_diff, float(np.abs(logits - expected).max()))
            if i + 1 < len(ref_logits):
                logits = candidate.forward([ref_tokens[i]])
        own, _ = greedy_tokens(candidate, prompt, steps)
        same = next((i for i, (a, b) in enumerate(zip(own, ref_tokens)) if a != b), len(ref_tokens))
        agreed += same
        total += len(ref_tokens)
        identical += int(same == len(ref_tokens))
    return {
        "prompts": len(prompts),
        "decode_steps": steps,
        "max_abs_logit_diff": max_diff,
        "greedy_tokens_agreeing": agreed,
        "greedy_tokens": total,
        "greedy_identical_prompts": identical,
    }


def prompt_ids(example: LMExample, tokenizer: Any) -> list[int] | None:
    """A validation example's prompt as the model sees it at generation time (None for plain text)."""
    if example.form == "text":
        return None
    template = getattr(tokenizer, "chat_template", None)
    if example.form == "messages":
        turns = list(example.messages)
        while turns and turns[-1]["role"] == "assistant":
            turns.pop()
        if not turns:
            return None
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    elif template:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": example.prompt}], tokenize=False, add_generation_prompt=True
        )
    else:
        text = example.prompt
    return tokenizer(text, add_special_tokens=False)["input_ids"]
