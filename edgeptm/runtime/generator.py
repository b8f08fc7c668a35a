"""Text generation: a causal LM artifact behind ``generate()`` and a streaming iterator.

gen = edgeptm.load("runs/smollm2-int4")
print(gen.generate("Write a haiku about rain", max_new_tokens=64).text)
for piece in gen.stream([{"role": "user", "content": "Hi!"}]):
    print(piece, end="", flush=True)

The prompt is a string (wrapped in the model's chat template as one user turn when the model has
a template; ``chat=False`` feeds it raw) or a list of chat messages. Tokenization uses the
``tokenizers`` library and the chat template a sandboxed Jinja environment, so an ONNX artifact
generates without importing torch or transformers. The KV cache is allocated once per request, at
the longest length the request can reach, and every step writes into it in place (see
edgeptm.decoder); prefill asks the graph for the last position's logits only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from edgeptm.artifacts import Artifact
from edgeptm.errors import ArtifactError, BackendError, UsageError
from edgeptm.tasks.generation import check_messages

Messages = Sequence[dict[str, str]]


class ChatTokenizer:
    """A tokenizer.json and the chat template of a tokenizer directory, without transformers."""

    def __init__(self, directory: Path) -> None:
        from tokenizers import Tokenizer

        path = directory / "tokenizer.json"
        if not path.is_file():
            raise ArtifactError(f"{directory}: no tokenizer.json (a generator needs a fast tokenizer)")
        self.tokenizer = Tokenizer.from_file(str(path))
        config_path = directory / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        template = config.get("chat_template")
        jinja = directory / "chat_template.jinja"
        if jinja.is_file():
            template = jinja.read_text()
        self.template = template if isinstance(template, str) and template.strip() else None
        self.bos_token = _token_text(config.get("bos_token"))
        self.eos_token = _token_text(config.get("eos_token"))
        self.add_bos = bool(config.get("add_bos_token", False))

    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        bos = self.tokenizer.token_to_id(self.bos_token) if self.bos_token else None
        if self.add_bos and bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        return list(ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def token_id(self, token: str | None) -> int | None:
        return self.tokenizer.token_to_id(token) if token else None

    def apply_chat_template(self, messages: Messages, add_generation_prompt: bool = True) -> str:
        if self.template is None:
            raise UsageError("this model has no chat template: give a plain prompt (chat=False)")
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise UsageError(f"chat template: {message}")

        # What Hugging Face templates expect of their environment: loop controls, tojson, strftime_now.
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: time.strftime(fmt)
        try:
            return env.from_string(self.template).render(
                messages=list(messages),
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
            )
        except TemplateError as exc:
            raise UsageError(f"the model's chat template failed on these messages ({exc})") from None


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # an AddedToken record
        value = value.get("content")
    return value if isinstance(value, str) else None


@dataclass
class Generation:
    """One request's result: the text, its tokens and where the time went."""

    text: str
    prompt_tokens: int
    token_ids: list[int]
    finish_reason: str  # "eos" | "length" | "stop"
    ttft_ms: float  # prompt in -> first new token out (prefill, sampling included)
    step_ms: list[float] = field(default_factory=list)  # each later token's decode step

    @property
    def new_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def decode_tokens_per_s(self) -> float | None:
        """1000 / the median decode step: robust to the odd slow step."""
        return 1000.0 / float(np.median(self.step_ms)) if self.step_ms else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "finish_reason": self.finish_reason,
            "ttft_ms": round(self.ttft_ms, 3),
            "decode_tokens_per_s": None if not self.step_ms else round(self.decode_tokens_per_s or 0.0, 2),
        }


class Sampler:
    """Greedy when temperature is 0; else temperature, top-k, top-p, with a seeded generator.
    The repetition penalty is Hugging Face's (a seen token's logit divided by it when positive,
    multiplied when negative)."""

    def __init__(
        self, temperature: float, top_k: int, top_p: float, repetition_penalty: float, seed: int | None
    ) -> None:
        if temperature < 0:
            raise UsageError(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1], got {top_p}")
        if top_k < 0:
            raise UsageError(f"top_k must be >= 0, got {top_k}")
        if repetition_penalty <= 0:
            raise UsageError(f"repetition_penalty must be > 0, got {repetition_penalty}")
        self.temperature, self.top_k, self.top_p, self.penalty = temperature, top_k, top_p, repetition_penalty
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray, seen: list[int]) -> int:
        if self.penalty != 1.0 and seen:
            logits = logits.copy()
            idx = np.unique(np.asarray(seen))
            vals = logits[idx]
            logits[idx] = np.where(vals > 0, vals / self.penalty, vals * self.penalty)
        if self.temperature == 0:
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / self.temperature
        if self.top_k and self.top_k < scaled.size:
            cut = np.partition(scaled, -self.top_k)[-self.top_k]
            scaled = np.where(scaled < cut, -np.inf, scaled)
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        if self.top_p < 1.0:
            order = np.argsort(-probs)
            keep = np.cumsum(probs[order]) - probs[order] < self.top_p  # the smallest set reaching top_p
            mask = np.zeros_like(probs, dtype=bool)
            mask[order[keep]] = True
            probs = np.where(mask, probs, 0.0)
            probs /= probs.sum()
        return int(self.rng.choice(probs.size, p=probs))


class OrtDecoder:
    """Steps the edgeptm decoder graph on ONNX Runtime with IO binding over one shared KV buffer."""

    def __init__(self, backend: Any, shape: Any) -> None:
        import onnxruntime as ort

        self.backend, self.shape, self.onnxruntime = backend, shape, ort
        self.session = backend.session
        self.length = 0
        self.capacity = 0
        self._binding: Any = None

    def reset(self, capacity: int) -> None:
        """A fresh cache for a request reaching ``capacity`` tokens (allocated here, once)."""
        s, value = self.shape, self.onnxruntime.OrtValue.ortvalue_from_numpy
        self.length, self.capacity = 0, capacity
        binding = self.session.io_binding()
        self._cache = []
        for past, present in zip(s.past_names(), s.present_names()):
            cache = value(np.zeros((1, s.kv_heads, capacity, s.head_dim), np.float32))
            binding.bind_ortvalue_input(past, cache)
            binding.bind_ortvalue_output(present, cache)  # in place: GroupQueryAttention shares the buffer
            self._cache.append(cache)
        # The per-step inputs live in buffers bound once and rewritten in place: a decode step
        # allocates nothing (the token, the cache length, and one logits row for every step).
        self._token = value(np.zeros((1, 1), np.int64))
        self._seqlens = value(np.zeros(1, np.int32))
        self._total = value(np.zeros((), np.int32))
        self._keep = value(np.ones(1, np.int64))
        self._last = value(np.zeros((1, 1, s.vocab_size), np.float32))
        binding.bind_ortvalue_input("seqlens_k", self._seqlens)
        binding.bind_ortvalue_input("total_sequence_length", self._total)
        binding.bind_ortvalue_input("logits_to_keep", self._keep)
        binding.bind_ortvalue_output("logits", self._last)
        self._binding, self._decoding, self._keeping_all = binding, False, False

    def forward(self, ids: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Logits for the new ``ids`` ([len(ids), vocab] with ``all_logits``, else [vocab] for the last).
        The [vocab] array is a view of the bound output buffer, rewritten by the next call: copy it to keep it."""
        total = self.length + len(ids)
        if total > self.capacity:
            raise UsageError(f"the request needs {total} positions; its cache holds {self.capacity}")
        b = self._binding
        if len(ids) == 1 and not all_logits:
            self._token.update_inplace(np.asarray([ids], dtype=np.int64))
            if not self._decoding:
                b.bind_ortvalue_input("input_ids", self._token)
                self._decoding = True
        else:
            b.bind_cpu_input("input_ids", np.asarray([ids], dtype=np.int64))
            self._decoding = False
        self._seqlens.update_inplace(np.asarray([total - 1], dtype=np.int32))
        self._total.update_inplace(np.asarray(total, dtype=np.int32))
        out = self._last
        if all_logits or self._keeping_all:
            self._keep.update_inplace(np.asarray([0 if all_logits else 1], dtype=np.int64))
            self._keeping_all = all_logits
            if all_logits:
                out = self.onnxruntime.OrtValue.ortvalue_from_numpy(
                    np.zeros((1, len(ids), self.shape.vocab_size), np.float32)
                )
            b.bind_ortvalue_output("logits", out)
        self.session.run_with_iobinding(b)
        self.length = total
        logits = out.numpy()[0]
        return logits if all_logits else logits[-1]


class TorchDecoder:
    """Steps a checkpoint's torch model with its own KV cache (use as-is, and the reference)."""

    def __init__(self, model: Any) -> None:
        self.model, self.past, self.length = model, None, 0

    def reset(self, capacity: int) -> None:
        self.past, self.length = None, 0

    def forward(self, ids: Sequence[int], all_logits: bool = False) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor([list(ids)], dtype=torch.long),
                past_key_values=self.past,
                use_cache=True,
                logits_to_keep=0 if all_logits else 1,
            )
        self.past = out.past_key_values
        self.length += len(ids)
        logits = out.logits[0].float().numpy()
        return logits if all_logits else logits[-1]


class Generator:
    """A causal LM artifact with its tokenizer and chat template: ``generate``, ``stream``, ``perplexity``."""

    def __init__(self, artifact: Artifact, decoder: Any, backend: Any = None) -> None:
        self.artifact, self.decoder, self.backend = artifact, decoder, backend
        record = artifact.manifest.get("model") or {}
        self.context_length = int(record.get("context_length") or 2048)
        pre = artifact.preprocessing
        self.tokenizer = ChatTokenizer(artifact.path / pre["tokenizer"])
        self.eos_ids = [int(i) for i in pre.get("eos_token_ids") or []]
        if not self.eos_ids:
            eos = self.tokenizer.token_id(self.tokenizer.eos_token)
            self.eos_ids = [eos] if eos is not None else []
        self.name = getattr(backend, "name", "torch-eager")

    # -- prompts ---------------------------------------------------------------------------------

    def prompt_ids(self, prompt: str | Messages, chat: bool | None = None) -> list[int]:
        """Token ids for a prompt: messages through the chat template; a string as one user turn
        when the model has a template (unless ``chat=False``), else as it is."""
        if isinstance(prompt, str):
            if not prompt.strip():
                raise UsageError("the prompt is empty")
            use_chat = self.tokenizer.template is not None if chat is None else chat
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}]) if use_chat else prompt
        else:
            text = self.tokenizer.apply_chat_template(check_messages(prompt, UsageError))
        return self.tokenizer.encode(text)

    def _check_length(self, n_prompt: int, max_new_tokens: int) -> None:
        if max_new_tokens < 1:
            raise UsageError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if n_prompt == 0:
            raise UsageError("the prompt is empty")
        if n_prompt >= self.context_length:
            raise UsageError(
                f"the prompt is {n_prompt} tokens; the model's context holds {self.context_length} (shorten the prompt)"
            )

    # -- generation ------------------------------------------------------------------------------

    def generate_ids(
        self,
        ids: Sequence[int],
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        ignore_eos: bool = False,
    ) -> Iterator[tuple[int, float]]:
        """Yield (token id, milliseconds the step took) for each new token; the first step's time
        is the time to first token (prefill and sampling). Stops at EOS unless ``ignore_eos``, or at
        the context's end."""
        ids = [int(i) for i in ids]
        self._check_length(len(ids), max_new_tokens)
        sampler = Sampler(temperature, top_k, top_p, repetition_penalty, seed)
        budget = min(max_new_tokens, self.context_length - len(ids))
        self.decoder.reset(len(ids) + budget)
        seen = list(ids)
        start = time.perf_counter()
        logits = self.decoder.forward(ids)
        for step in range(budget):
            token = sampler(logits, seen)
            now = time.perf_counter()
            yield token, (now - start) * 1000.0
            if (token in self.eos_ids and not ignore_eos) or step == budget - 1:
                return
            seen.append(token)
            start = time.perf_counter()
            logits = self.decoder.forward([token])

    def stream(
        self,
        prompt: str | Messages,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        chat: bool | None = None,
    ) -> Iterator[str]:
        """The answer's text, piece by piece as tokens arrive."""
        result = self._run(prompt, max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop, seed, chat)
        yield from result

    def generate(
        self,
        prompt: str | Messages,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        chat: bool | None = None,
    ) -> Generation:
        run = self._run(prompt, max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop, seed, chat)
        for _ in run:
            pass
        return run.result

    def _run(self, prompt, max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop, seed, chat) -> "_Run":
        ids = self.prompt_ids(prompt, chat)
        self._check_length(len(ids), max_new_tokens)
        steps = self.generate_ids(ids, max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed)
        return _Run(self, len(ids), steps, [s for s in stop if s])

    # -- quality ---------------------------------------------------------------------------------

    def perplexity(self, ids: Sequence[int], window: int = 1024) -> float:
        """exp(mean negative log-likelihood) of ``ids[1:]``, over non-overlapping windows of
        ``window`` tokens (each window predicts its own tokens after the first)."""
        limit = min(window, self.context_length, getattr(self.decoder, "max_cache_len", None) or window)
        return perplexity(self.decoder, [int(i) for i in ids], limit)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()

    def __enter__(self) -> "Generator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Run:
    """Iterates text pieces of one request; ``result`` holds the Generation once it ends."""

    def __init__(self, gen: Generator, n_prompt: int, steps: Iterator[tuple[int, float]], stop: list[str]) -> None:
        self.gen, self.n_prompt, self.steps, self.stop = gen, n_prompt, steps, stop
        self.result: Generation | None = None

    def __iter__(self) -> Iterator[str]:
        tokens: list[int] = []
        times: list[float] = []
        emitted, text, reason = 0, "", "length"
        for token, ms in self.steps:
            times.append(ms)
            if token in self.gen.eos_ids:
                reason = "eos"
                break
            tokens.append(token)
            text = self.gen.tokenizer.decode(tokens)
            hit = [text.find(s) for s in self.stop if s in text]
            if hit:
                text, reason = text[: min(hit)], "stop"
                if len(text) > emitted:
                    yield text[emitted:]
                emitted = len(text)
                break
            # hold back a partial UTF-8 character and a possible start of a stop string
            safe = len(text.rstrip("\ufffd"))
            for s in self.stop:
                for k in range(min(len(s) - 1, safe), 0, -1):
                    if text[:safe].endswith(s[:k]):
                        safe -= k
                        break
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
        if reason != "stop" and len(text) > emitted:
            yield text[emitted:]
        self.result = Generation(
            text=text,
            prompt_tokens=self.n_prompt,
            token_ids=tokens,
            finish_reason=reason,
            ttft_ms=times[0] if times else 0.0,
            step_ms=times[1:],
        )


def perplexity(decoder: Any, ids: list[int], window: int) -> float:
    """exp(mean NLL) of each window's tokens after its first, windows laid end to end."""
    if len(ids) < 2:
        raise UsageError("perplexity needs at least 2 tokens of text")
    nll, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start : start + window]
        if len(chunk) < 2:
            break
        decoder.reset(len(chunk))
        logits = decoder.forward(chunk, all_logits=True).astype(np.float64)
        top = logits.max(axis=-1, keepdims=True)
        logp = logits - (top + np.log(np.exp(logits - top).sum(axis=-1, keepdims=True)))
        targets = np.asarray(chunk[1:])
        nll -= float(logp[np.arange(len(targets)), targets].sum())
        count += len(targets)
    return float(np.exp(nll / count))


def open_generator(artifact: Artifact, backend: Any | None, threads: int | None = None) -> Generator:
    """The generator for a causal LM artifact: ONNX on ``backend`` (opened by load()), a compiled
    engine through its backend's ``decoder()``, a checkpoint in PyTorch."""
    if artifact.kind == "engine":
        decoder = getattr(backend, "decoder", None)
        if decoder is None:
            raise BackendError(f"{artifact.path}: the {backend.name} backend does not run generators")
        return Generator(artifact, decoder(), backend)
    if artifact.kind == "checkpoint":
        import torch

        from edgeptm.models.causal import load_lm

        if threads:
            torch.set_num_threads(threads)
        return Generator(artifact, TorchDecoder(load_lm(artifact)))
    from edgeptm.models.causal import DecoderShape

    return Generator(artifact, OrtDecoder(backend, DecoderShape.of(artifact.manifest["model"])), backend)
