"""Local generation with Hugging Face transformers (+ an optional peft LoRA adapter).

Prompts are rendered with :func:`~deepke_llm.prompts.chat.render_prompt`, tokenized, sorted by
length and generated in left-padded batches of ``config.batch_size``, ``stage_tokens`` new tokens
per call, after which finished rows leave and waiting prompts join; outputs come back in input
order. Greedy decoding unless ``config.temperature > 0``. A ``.gguf`` file loads through
transformers' GGUF reader (dequantized; needs the ``gguf`` package).

A hub id (``org/name``) is resolved by transformers as usual while the hub answers. When it does
not (no network, ``HF_HUB_OFFLINE=1``), a copy in the local Hugging Face cache loads offline and an
id without one fails at once with one line, instead of minutes of download retries.
"""

from __future__ import annotations

import copy
import importlib.util
import threading
import time
from collections import deque
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from deepke_llm.backends.base import (
    MIN_SHARED_PREFIX,
    GenerationCancelled,
    GenerationConfig,
    GenerationStats,
    common_prefix_length,
    cut_at_stop,
)
from deepke_llm.backends.hf_hub import (
    HOW_TO_PASS,
    looks_like_path,
    resolve_hub_id,
    resolve_model_path,
    split_gguf,
)
from deepke_llm.problems import one_line
from deepke_llm.prompts.chat import Prompt, encode_rendered, render_prompt

__all__ = ["HFBackend"]

# Context lengths above this are placeholders (tokenizers report 1e30 when they do not know).
MAX_SANE_CONTEXT = 1_048_576
DEFAULT_CONTEXT = 2048
CONTEXT_TOKENS_FOR_DECODING = 4
# New tokens per generate() call; then finished rows leave the batch and waiting prompts join
# (most extraction answers take 10-40 tokens, a few take hundreds).
STAGE_TOKENS = 32
DTYPE_NAMES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
               "half": "float16", "fp32": "float32", "float32": "float32", "float": "float32"}
# The reachability probe: one request, no retries; a hub that has not answered by then is down.


class HFBackend:
    """A causal LM from a local dir, a hub id or a GGUF file, generating in length-sorted batches."""

    engine = "hf"
    # decoding constraints need the vocabulary as bytes: xgrammar's tokenizer reader (the
    # `decoding` extra) knows every tokenizer family's byte encoding
    supports_constraints = importlib.util.find_spec("xgrammar") is not None

    def __init__(self, model: str | Path, lora: str | Path | None = None,
                 chat_template: str = "auto", dtype: str = "auto",
                 device_map: str | dict | None = None, load_in_8bit: bool = False,
                 load_in_4bit: bool = False, trust_remote_code: bool = False,
                 revision: str | None = None, gguf_file: str | None = None,
                 merge_lora: bool = True, prefix_cache: bool = True,
                 stage_tokens: int | None = STAGE_TOKENS) -> None:
        import torch

        self.model_name = str(model)
        self.prefix_cache = prefix_cache
        self.stage_tokens = stage_tokens  # None: one generate() call per batch, to the end
        self.row_steps = 0  # rows x decoding steps computed (finished rows leaving saves them)
        self.chat_template = chat_template
        self.stats = GenerationStats()
        model_path, gguf_file = split_gguf(str(model), gguf_file)
        model_path = resolve_model_path(model_path, gguf_file, revision)
        quant = _quantization_config(load_in_8bit, load_in_4bit)
        torch_dtype = _resolve_dtype(dtype)
        if quant is not None and device_map is None:
            device_map = "auto"  # bitsandbytes weights must be placed on the GPU while loading
        self.tokenizer = _load_tokenizer(model_path, gguf_file, trust_remote_code, revision)
        self.model = _load_model(model_path, gguf_file, torch_dtype, device_map, quant,
                                 trust_remote_code, revision)
        if device_map is None:
            self.model.to("cuda" if torch.cuda.is_available() else "cpu")
        if lora is not None:
            self.model = _attach_lora(self.model, str(lora))
            if merge_lora and quant is None:
                # inference only: folding the adapter into the weights removes the extra LoRA
                # matmuls on every linear layer (3.7x faster generation measured on Gemma 3 270M
                # with an all-linear r16 adapter on CPU); outputs are unchanged
                self.model = self.model.merge_and_unload()
        self.model.eval()
        self.context_length = _context_length(self.model, self.tokenizer)
        self._eos_ids = _eos_token_ids(self.model, self.tokenizer)
        self._token_index: Any = None  # built on the first constrained call
        self.cancel = threading.Event()
        """Set from another thread to stop the call in progress (GenerationCancelled)."""

    @property
    def device(self) -> Any:
        return self.model.device

    def render(self, prompt: Prompt) -> str:
        """The exact string the model is conditioned on for ``prompt``."""
        return render_prompt(prompt, self.chat_template, self.tokenizer)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without special tokens (what a window of input text costs)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids of the rendered prompt, with BOS added unless the template already wrote it."""
        return encode_rendered(self.tokenizer, self.render(prompt))

    def token_index(self) -> Any:
        """The vocabulary as bytes for decoding constraints (built once)."""
        if self._token_index is None:
            from deepke_llm.decoding import TokenIndex

            vocab_size = self.model.get_output_embeddings().weight.shape[0]
            self._token_index = TokenIndex.from_huggingface(self.tokenizer, vocab_size,
                                                            self._eos_ids)
        return self._token_index

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig,
                 constraints: Sequence[Any] | None = None) -> list[str]:
        """One decoded output per prompt, in input order (special tokens skipped, cut at stops);
        ``constraints`` (one :class:`~deepke_llm.decoding.Constraint` or None per prompt) mask
        each row's logits."""
        encoded, generated = self._generate(prompts, config, constraints)
        return [cut_at_stop(self._decode_continuation(p, g), config.stop)
                for p, g in zip(encoded, generated, strict=True)]

    def _generate(self, prompts: Sequence[Prompt], config: GenerationConfig,
                  constraints: Sequence[Any] | None = None
                  ) -> tuple[list[list[int]], list[list[int]]]:
        """Batches of ``config.batch_size`` rows, ``stage_tokens`` new tokens per generate()
        call: after each call finished rows leave the batch and waiting prompts take their
        places (a batch of 16 no longer waits 128 steps for one long answer); a row that goes on
        is fed its prompt and what it wrote so far, and its decoding constraint keeps its state."""
        import torch

        started = time.perf_counter()
        encoded = [self.encode_prompt(p) for p in prompts]
        # Longest prompts first keeps padding (wasted compute) small inside each batch.
        waiting = deque(sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True))
        results: list[list[int]] = [[] for _ in encoded]
        rows = self._row_constraints(constraints, config, len(encoded))
        gen_kwargs = self._generate_kwargs(config)
        active: list[int] = []
        calls = 0
        while waiting or active:
            while waiting and len(active) < config.batch_size:
                active.append(waiting.popleft())
            budget = max(config.max_new_tokens - len(results[i]) for i in active)
            stage = min(budget, self.stage_tokens or budget)
            inputs = self._batch_inputs([encoded[i] + results[i] for i in active])
            if config.seed is not None and config.temperature > 0:
                torch.manual_seed(config.seed + calls)
            settings = copy.deepcopy(gen_kwargs["generation_config"])
            settings.max_new_tokens = stage  # (a max_new_tokens argument beside it warns)
            kwargs = {**gen_kwargs, "generation_config": settings,
                      "stopping_criteria": [self._cancelled]}
            if any(rows[i] is not None for i in active):
                kwargs = self._constrained_kwargs(kwargs, [rows[i] for i in active])
            with torch.inference_mode():
                out = self.model.generate(**inputs, **kwargs)
            if self.cancel.is_set():
                raise GenerationCancelled("generation cancelled")
            calls += 1
            width = inputs["input_ids"].shape[1]
            self.row_steps += len(active) * (out.shape[1] - width)
            going_on = []
            for i, ids in zip(active, out[:, width:].tolist(), strict=True):
                kept = self._strip_after_end(ids)
                results[i] += kept
                row = rows[i]
                ended = len(kept) < stage or kept[-1] in self._eos_ids or \
                    len(results[i]) >= config.max_new_tokens or (row is not None and row.finished)
                if ended:
                    results[i] = results[i][:config.max_new_tokens]
                    continue
                if row is not None:  # a call's last token is never seen by its processor
                    row.advance(kept[-1])
                going_on.append(i)
            active = going_on
        self.stats.prompts += len(encoded)
        self.stats.prompt_tokens += sum(len(e) for e in encoded)
        self.stats.generated_tokens += sum(len(r) for r in results)
        self.stats.seconds += time.perf_counter() - started
        return encoded, results

    def _batch_inputs(self, rows: list[list[int]]) -> dict[str, Any]:
        """generate() inputs for one batch: left-padded, or with a shared-prefix KV cache.

        Extraction prompts of one schema chunk share a long prefix (the task sentence and the
        schema: about half the tokens of an IEPile prompt). It is computed once and the cache
        copied to every row; rows are then ``prefix + padding + rest``, the padding masked out
        (positions come from the attention mask, so every token keeps its position).
        """
        import torch

        prefix = common_prefix_length(rows) if self.prefix_cache and len(rows) > 1 else 0
        prefix = min(prefix, min(len(r) for r in rows) - 1)  # each row keeps a token to feed
        pad = self.tokenizer.pad_token_id
        if prefix < MIN_SHARED_PREFIX:
            inputs = self.tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt")
            return {k: v.to(self.device) for k, v in inputs.items()}
        rests = [r[prefix:] for r in rows]
        width = max(len(r) for r in rests)
        ids = [rows[0][:prefix] + [pad] * (width - len(r)) + r for r in rests]
        mask = [[1] * prefix + [0] * (width - len(r)) + [1] * len(r) for r in rests]
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([rows[0][:prefix]], device=self.device),
                             use_cache=True)
        cache = out[_cache_name()]
        cache.batch_repeat_interleave(len(rows))
        return {"input_ids": torch.tensor(ids, device=self.device),
                "attention_mask": torch.tensor(mask, device=self.device), _cache_name(): cache}

    def _decode_continuation(self, prompt_ids: list[int], new_ids: list[int]) -> str:
        # Decoded alone, a sentencepiece continuation loses its leading space ("▁Paris" ->
        # "Paris"), which would hide a stop string such as " e"; decoding it after a few prompt
        # tokens and removing their text keeps it (the incremental detokenizing of TGI/vLLM).
        decode = self.tokenizer.decode
        prefix = prompt_ids[-CONTEXT_TOKENS_FOR_DECODING:]
        head = decode(prefix, skip_special_tokens=True)
        full = decode(prefix + new_ids, skip_special_tokens=True)
        if head and full.startswith(head):
            return full[len(head):]
        return decode(new_ids, skip_special_tokens=True)

    def _generate_kwargs(self, config: GenerationConfig) -> dict[str, Any]:
        from transformers import GenerationConfig as HFGenerationConfig

        # A fresh config, so sampling defaults shipped in a model's generation_config.json
        # (temperature 0.6, do_sample) never turn our greedy decoding into sampling.
        settings: dict[str, Any] = {
            "max_new_tokens": config.max_new_tokens, "do_sample": config.temperature > 0,
            "eos_token_id": self._eos_ids, "pad_token_id": self.tokenizer.pad_token_id,
        }
        if config.temperature > 0:
            settings.update(temperature=config.temperature, top_p=config.top_p)
        if config.stop:
            settings["stop_strings"] = list(config.stop)
        defaults = HFGenerationConfig()
        # Keys of config.extra that transformers understands (repetition_penalty, num_beams...)
        # apply here; the rest belong to other backends (e.g. response_format) and are ignored.
        settings.update({k: v for k, v in config.extra.items() if hasattr(defaults, k)})
        kwargs: dict[str, Any] = {"generation_config": HFGenerationConfig(**settings)}
        if config.stop:
            kwargs["tokenizer"] = self.tokenizer
        # Seam for constrained decoding: a LogitsProcessorList given by the caller.
        if "logits_processor" in config.extra:
            kwargs["logits_processor"] = config.extra["logits_processor"]
        return kwargs

    def _row_constraints(self, constraints: Sequence[Any] | None, config: GenerationConfig,
                         count: int) -> list[Any]:
        """One :class:`~deepke_llm.decoding.RowConstraint` (or None) per prompt."""
        if constraints is None:
            return [None] * count
        from deepke_llm.decoding import RowConstraint

        return [None if c is None else
                RowConstraint(c.automaton, self.token_index(), config.max_new_tokens)
                for c in constraints]

    def _constrained_kwargs(self, kwargs: dict[str, Any], rows: Sequence[Any]) -> dict[str, Any]:
        from transformers import LogitsProcessorList

        processors = LogitsProcessorList(kwargs.get("logits_processor") or [])
        processors.append(_ConstraintLogits(rows, self._eos_ids))
        return {**kwargs, "logits_processor": processors}

    def _cancelled(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch  # a StoppingCriteria: True for every row once the cancel event is set

        return torch.full((input_ids.shape[0],), self.cancel.is_set(), dtype=torch.bool,
                          device=input_ids.device)

    def _strip_after_end(self, ids: list[int]) -> list[int]:
        # Rows that finished early (EOS or a stop string) are padded to the batch's longest row.
        end_ids = set(self._eos_ids)
        for pos, token in enumerate(ids):
            if token in end_ids:
                return ids[:pos + 1]
        pad = self.tokenizer.pad_token_id
        end = len(ids)
        while end and ids[end - 1] == pad:
            end -= 1
        return ids[:end]


class _ConstraintLogits:
    """A transformers logits processor: each row's logits masked by its constraint (rows
    without one, and rows already ended, are left as they are)."""

    def __init__(self, rows: Sequence[Any], end_ids: Sequence[int]) -> None:
        self.rows, self.end_ids = list(rows), set(end_ids)
        self.ended = [row is None for row in self.rows]
        self.width: int | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self.width is None:
            self.width = input_ids.shape[1]
        else:
            for i, token in enumerate(input_ids[:, -1].tolist()):
                if not self.ended[i]:
                    if token in self.end_ids:
                        self.ended[i] = True
                    else:
                        self.rows[i].advance(token)
        mask = torch.full_like(scores, float("-inf"))
        for i, row in enumerate(self.rows):
            if self.ended[i]:
                mask[i] = 0
            else:
                mask[i, torch.from_numpy(row.options().ids)] = 0
        return scores + mask


@lru_cache(maxsize=1)
def _cache_name() -> str:
    # transformers renamed `past_key_values` to `cache` (5.x); both name the same object
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {}) \
        else "past_key_values"



def _resolve_dtype(dtype: str) -> Any:
    import torch

    if dtype == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32  # half precision matmuls are slow or unsupported on most CPUs
    try:
        return getattr(torch, DTYPE_NAMES[dtype])
    except KeyError:
        raise ValueError(f"unknown dtype '{dtype}': use auto, bf16, fp16 or fp32") from None


def _quantization_config(load_in_8bit: bool, load_in_4bit: bool) -> Any:
    if not (load_in_8bit or load_in_4bit):
        return None
    import torch

    flag = "--load-in-8bit" if load_in_8bit else "--load-in-4bit"
    if load_in_8bit and load_in_4bit:
        raise ValueError("choose one of --load-in-8bit and --load-in-4bit")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(f"{flag} needs the bitsandbytes package: pip install bitsandbytes")
    if not torch.cuda.is_available():
        raise ValueError(f"{flag} needs a CUDA GPU (bitsandbytes); drop the flag to run on CPU")
    from transformers import BitsAndBytesConfig

    if load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=compute)


def _load_tokenizer(model: str, gguf_file: str | None, trust_remote_code: bool,
                    revision: str | None) -> Any:
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "revision": revision}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"could not load a tokenizer from {model}"
                         f"{'/' + gguf_file if gguf_file else ''} ({one_line(exc)}): "
                         f"{HOW_TO_PASS}") from exc
    tokenizer.padding_side = "left"  # decoder-only models continue from the last position
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def _load_model(model: str, gguf_file: str | None, torch_dtype: Any, device_map: Any,
                quant: Any, trust_remote_code: bool, revision: str | None) -> Any:
    import transformers
    from transformers import AutoModelForCausalLM

    # transformers renamed torch_dtype= to dtype= in 4.56
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    dtype_key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    kwargs: dict[str, Any] = {dtype_key: torch_dtype, "trust_remote_code": trust_remote_code,
                              "revision": revision}
    if device_map is not None:
        kwargs["device_map"] = device_map
    if quant is not None:
        kwargs["quantization_config"] = quant
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    try:
        return AutoModelForCausalLM.from_pretrained(model, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        where = f"{model}/{gguf_file}" if gguf_file else model
        raise ValueError(f"could not load a causal LM from {where} ({one_line(exc)}): "
                         f"{HOW_TO_PASS}") from exc


def _attach_lora(model: Any, lora: str) -> Any:
    from peft import PeftModel

    path = Path(lora).expanduser()
    if path.is_dir() and not (path / "adapter_config.json").is_file():
        raise ValueError(f"{path} is not a LoRA adapter dir (no adapter_config.json): pass --lora "
                         "DIR saved by peft (adapter_config.json + adapter weights)")
    if not path.exists() and looks_like_path(lora):
        raise ValueError(f"LoRA adapter dir {path} does not exist: pass --lora DIR saved by peft")
    source = lora if path.exists() else resolve_hub_id(lora, "adapter_config.json", None, "--lora")
    try:
        return PeftModel.from_pretrained(model, source)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ValueError(f"could not load LoRA adapter {lora} ({one_line(exc)}): pass --lora DIR "
                         "trained for this base model") from exc


def _context_length(model: Any, tokenizer: Any) -> int:
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    candidates = [getattr(text_config, "max_position_embeddings", None),
                  getattr(tokenizer, "model_max_length", None)]
    valid = [int(c) for c in candidates if isinstance(c, int | float) and 0 < c <= MAX_SANE_CONTEXT]
    return min(valid) if valid else DEFAULT_CONTEXT


def _eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    # Chat models often end turns with a token other than the tokenizer's eos (Gemma's
    # <end_of_turn>); their generation_config lists all of them.
    ids: list[int] = []
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if value is not None:
            ids.extend(value if isinstance(value, list | tuple) else [value])
            break
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(int(i) for i in ids))
