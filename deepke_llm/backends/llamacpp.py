"""Generation with llama.cpp (``llama-cpp-python``): a GGUF model, an optional LoRA, many rows at once.

The fast CPU engine. The high-level ``llama_cpp.Llama`` generates one sequence at a time, so this
backend drives the C API directly: up to ``parallel`` prompts share one KV cache as separate
sequences and every ``llama_decode`` call advances all of them (continuous batching: a row that
finishes hands its slot to the next prompt at once, and a new prompt's prefill rides in the same
call as the other rows' next tokens). Decoding is greedy unless ``config.temperature > 0``.

Prompts are rendered by the one renderer (:func:`~deepke_llm.prompts.chat.render_prompt`) and
tokenized by the GGUF's own tokenizer, which gives the ids transformers gives for the same text
(tested), so a model sees the same input under either engine. A LoRA adapter is applied at run
time from a GGUF LoRA file; a PEFT adapter directory is converted to one once
(:mod:`deepke_llm.training.weights.gguf`) and cached beside the other converted models.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from deepke_llm.prompts.chat import Prompt, render_prompt

__all__ = ["LlamaCppBackend", "quiet_logs"]

DEFAULT_PARALLEL = 16
DEFAULT_CONTEXT = 2048
BATCH_TOKENS = 512  # tokens per llama_decode call (prefill chunks + one token per live row)


@dataclass
class _Row:
    """One prompt in a slot: what is left to prefill, what it generated, where it stands."""

    index: int
    ids: list[int]
    fed: int = 0
    out: list[int] = field(default_factory=list)
    feed: list[int] = field(default_factory=list)  # tokens the next call feeds (logits: last)
    constraint: Any = None  # a RowConstraint when the answer is constrained


class LlamaCppBackend:
    """A GGUF model (+ LoRA) generating many prompts per ``llama_decode`` call on the CPU."""

    engine = "llamacpp"
    supports_constraints = True

    def __init__(self, model: str | Path, lora: str | Path | None = None,
                 chat_template: str = "auto", threads: int | None = None,
                 parallel: int = DEFAULT_PARALLEL, context_length: int = DEFAULT_CONTEXT,
                 extra_buffers: bool = False, share_prefix: bool = False,
                 jump_forward: bool = False, escape: bool = False) -> None:
        import llama_cpp

        quiet_logs(llama_cpp)
        self._lib = llama_cpp
        path = Path(model)
        if not path.is_file():
            raise ValueError(f"GGUF file {path} does not exist: pass --model FILE.gguf")
        self.model_name = str(path)
        self.chat_template = chat_template
        self.parallel = max(1, parallel)
        self.context_length = context_length
        self.threads = threads or _default_threads()
        # Off by default: the shared prefix's cache, computed in a batch of its own, differs in
        # the last bits from the one each row computes itself, and on CoNLL-2003 test[:300] the
        # answers moved enough to cost 0.9 strict F1 for 1.2x (benchmarks/perf/engines.py).
        self.share_prefix = share_prefix
        # Under a decoding constraint, the answer's forced structure (`, "location": [`) can be
        # fed in the same call as the token before it, without logits over the vocabulary for
        # it (RowConstraint.forced). Off by default: tokens computed several per call differ in
        # the last bits from tokens computed one per call, and on People's Daily test[:300]
        # the answers moved enough to cost 1.08 strict F1 (62.22 without it) for 1.16x
        # (benchmarks/perf/constrained.py).
        self.jump_forward = jump_forward
        # Under a decoding constraint, a mention the model cannot start from the text is
        # dropped by going back and closing its list (RowConstraint.escaped).
        self.escape = escape
        self.escapes = 0  # items dropped that way
        self.vocab_logits = 0  # rows whose logits over the vocabulary were computed and read
        self.cancel = threading.Event()
        """Set from another thread to stop the call in progress (GenerationCancelled)."""
        self.stats = GenerationStats()
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        # Extra buffer types (AMX, weight repacking) are off by default: the AMX one crashed
        # (SIGSEGV in llama_decode) on a VM whose CPU lists AMX but whose kernel does not
        # grant it; ``extra_buffers=True`` turns them back on where they work.
        params.use_extra_bufts = extra_buffers
        self._model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self._model:
            raise ValueError(f"{path} is not a GGUF model llama.cpp can load")
        self._ctx = self._new_context()
        self._adapter = None
        if lora is not None:
            self._set_lora(Path(lora))
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(BATCH_TOKENS, 0, 1)
        self._prefix_seq = self.parallel  # holds the prompts' shared prefix (see _run)
        self._template_source = _metadata(llama_cpp, self._model, "tokenizer.chat_template")
        self._specials = self._special_texts()  # read per prompt when rendering and encoding
        self._token_index: Any = None  # built on the first constrained call

    def _new_context(self) -> Any:
        lib = self._lib
        params = lib.llama_context_default_params()
        params.n_ctx = self.context_length * (self.parallel + 1)
        params.n_batch = params.n_ubatch = BATCH_TOKENS
        params.n_seq_max = self.parallel + 1  # one more: the prompts' shared prefix
        # logits are read for at most one token per row and call (a 262k vocabulary would
        # otherwise reserve 512 rows of logits: 0.5 GB)
        params.n_outputs_max = self.parallel + 1  # llama.cpp reserves at least n_seq_max
        params.n_threads = params.n_threads_batch = self.threads
        params.kv_unified = True  # rows share the cache cells: long and short prompts mix
        params.swa_full = False  # sliding-window layers keep only their window
        ctx = lib.llama_init_from_model(self._model, params)
        if not ctx:
            raise ValueError(f"llama.cpp could not create a context of {params.n_ctx} tokens for "
                             f"{self.model_name}: lower the batch size or the context length")
        return ctx

    def _set_lora(self, path: Path) -> None:
        from deepke_llm.training.weights.gguf import lora_gguf_for

        gguf_path = lora_gguf_for(path, self.model_name)
        lib = self._lib
        self._adapter = lib.llama_adapter_lora_init(self._model, str(gguf_path).encode())
        if not self._adapter:
            raise ValueError(f"{gguf_path} is not a LoRA adapter for {self.model_name}")
        adapters = (lib.llama_adapter_lora_p_ctypes * 1)(self._adapter)
        scales = (ctypes.c_float * 1)(1.0)
        if lib.llama_set_adapters_lora(self._ctx, adapters, 1, scales) != 0:
            raise ValueError(f"llama.cpp could not apply the LoRA adapter {path}")

    def __repr__(self) -> str:
        return f"LlamaCppBackend({self.model_name!r}, threads={self.threads})"

    def close(self) -> None:
        """Free the context, batch and model (also done when the object is collected)."""
        lib = getattr(self, "_lib", None)
        if lib is None or getattr(self, "_model", None) is None:
            return
        # a constructor that failed half way (a context too big, a wrong adapter) left some unset
        if getattr(self, "_batch", None) is not None:
            lib.llama_batch_free(self._batch)
        if getattr(self, "_ctx", None):
            lib.llama_free(self._ctx)
        lib.llama_model_free(self._model)
        self._model = None

    def __del__(self) -> None:
        # at interpreter exit llama_cpp's own globals may be gone already (its wrappers then
        # raise "'NoneType' object is not callable"); the process is ending, the OS frees it all
        if not sys.is_finalizing():
            self.close()

    # -- text <-> tokens ----------------------------------------------------------------------

    def render(self, prompt: Prompt) -> str:
        """The exact string the model is conditioned on for ``prompt``."""
        if self.chat_template in ("auto", "tokenizer") and self._template_source and \
                not prompt.template:
            return _render_gguf_template(self._template_source, prompt, self._specials)
        return render_prompt(prompt, self.chat_template)

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids of the rendered prompt, with BOS added unless the template already wrote it."""
        text = self.render(prompt)
        bos = self._specials.get("bos_token")
        return self._tokenize(text, add_special=not (bos and text.startswith(bos)))

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without special tokens (what a window of input text costs)."""
        return len(self._tokenize(text, add_special=False))

    def _tokenize(self, text: str, add_special: bool) -> list[int]:
        return self._tokenize_bytes(text.encode("utf-8", "replace"), add_special)

    def _tokenize_bytes(self, data: bytes, add_special: bool = False) -> list[int]:
        size = len(data) + 16
        buffer = (self._lib.llama_token * size)()
        count = self._lib.llama_tokenize(self._vocab, data, len(data), buffer, size, add_special,
                                         True)
        return list(buffer[:count])

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        size = self._lib.llama_token_to_piece(self._vocab, token, buffer, 64, 0, False)
        if size < 0:  # a longer piece: ask again with room for it
            buffer = ctypes.create_string_buffer(-size)
            size = self._lib.llama_token_to_piece(self._vocab, token, buffer, -size, 0, False)
        return buffer.raw[:size]

    def _special_texts(self) -> dict[str, str]:
        lib = self._lib
        out = {}
        for name, getter in (("bos_token", lib.llama_vocab_bos), ("eos_token", lib.llama_vocab_eos)):
            token = getter(self._vocab)
            if token >= 0:
                buffer = ctypes.create_string_buffer(64)
                size = lib.llama_token_to_piece(self._vocab, token, buffer, 64, 0, True)
                out[name] = buffer.raw[:max(size, 0)].decode("utf-8", "replace")
        return out

    def _decode_tokens(self, ids: list[int]) -> str:
        # special tokens are skipped (their pieces are written only with special=True)
        return b"".join(self._piece(t) for t in ids).decode("utf-8", "replace")

    # -- generation ---------------------------------------------------------------------------

    def token_index(self) -> Any:
        """The vocabulary as bytes for decoding constraints (built once, ~0.6 s for 262k)."""
        if self._token_index is None:
            from deepke_llm.decoding import TokenIndex

            lib, vocab = self._lib, self._vocab
            ends = [t for t in (lib.llama_vocab_eos(vocab), lib.llama_vocab_eot(vocab)) if t >= 0]
            pieces = [None if lib.llama_vocab_is_control(vocab, t) else self._piece(t)
                      for t in range(self._n_vocab)]
            self._token_index = TokenIndex(pieces, ends)
        return self._token_index

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig,
                 constraints: Sequence[Any] | None = None) -> list[str]:
        """One decoded output per prompt, in input order (special tokens skipped, cut at stops);
        ``constraints`` (one :class:`~deepke_llm.decoding.Constraint` or None per prompt) mask
        each row's logits."""
        started = time.perf_counter()
        encoded = [self.encode_prompt(p) for p in prompts]
        too_long = [i for i, ids in enumerate(encoded)
                    if len(ids) + config.max_new_tokens > self.context_length]
        if too_long:
            raise ValueError(f"a prompt of {len(encoded[too_long[0]])} tokens plus "
                             f"{config.max_new_tokens} new tokens exceeds the context of "
                             f"{self.context_length}: pass a larger context length")
        rows = [_Row(i, ids) for i, ids in enumerate(encoded)]
        if constraints is not None:
            from deepke_llm.decoding import RowConstraint

            for row, constraint in zip(rows, constraints, strict=True):
                if constraint is not None:
                    row.constraint = RowConstraint(
                        constraint.automaton, self.token_index(), config.max_new_tokens,
                        self._tokenize_bytes if self.jump_forward else None,
                        escape=self.escape)
        outputs = self._run(rows, config)
        self.stats.prompts += len(encoded)
        self.stats.prompt_tokens += sum(len(e) for e in encoded)
        self.stats.generated_tokens += sum(len(o) for o in outputs)
        self.stats.seconds += time.perf_counter() - started
        return [cut_at_stop(self._decode_tokens(o), config.stop) for o in outputs]

    def _run(self, rows: list[_Row], config: GenerationConfig) -> list[list[int]]:
        """Continuous batching: free slots take the next prompts; every call feeds all rows."""
        lib = self._lib
        pick = _Picker(config, self._n_vocab)
        waiting = deque(rows)
        slots: dict[int, _Row] = {}
        results: list[list[int]] = [[] for _ in rows]
        lib.llama_memory_clear(self._memory, True)
        shared = self._prefill_shared_prefix([row.ids for row in rows])
        width = min(self.parallel, max(1, config.batch_size))
        while waiting or slots:
            if self.cancel.is_set():
                raise GenerationCancelled("generation cancelled")
            for seq in range(width):
                if seq not in slots and waiting:
                    lib.llama_memory_seq_rm(self._memory, seq, -1, -1)
                    slots[seq] = row = waiting.popleft()
                    if shared:  # the prefix's cache cells, shared, not recomputed
                        lib.llama_memory_seq_cp(self._memory, self._prefix_seq, seq, 0, shared)
                        row.fed = shared
            wanted = self._fill_batch(slots)
            self._decode()
            self.vocab_logits += len(wanted)
            for position, seq in wanted:
                row = slots[seq]
                logits = pick.logits(lib.llama_get_logits_ith(self._ctx, position))
                escaped = row.constraint.escaped(logits) if row.constraint is not None else None
                if escaped is not None:  # the row takes tokens back: their cache cells go too
                    back, row.feed = escaped
                    row.out = row.out[:len(row.out) - back]
                    lib.llama_memory_seq_rm(self._memory, seq, len(row.ids) + len(row.out), -1)
                    self.escapes += 1
                else:
                    token = pick(logits, row.constraint)
                    if lib.llama_vocab_is_eog(self._vocab, token):
                        results[row.index] = row.out
                        del slots[seq]
                        continue
                    row.feed = [token]
                    if row.constraint is not None:
                        row.constraint.advance(token)
                        row.feed += row.constraint.forced()[:BATCH_TOKENS // width - 1]
                row.out += row.feed
                if len(row.out) >= config.max_new_tokens or \
                        (row.constraint is not None and row.constraint.finished):
                    results[row.index] = row.out
                    del slots[seq]
        return results

    def _prefill_shared_prefix(self, encoded: list[list[int]]) -> int:
        """Compute the tokens every prompt starts with once, in a sequence of their own; returns
        how many (0 when too few to be worth it). Extraction prompts of one schema chunk share
        the task sentence and the schema: most of an IEPile prompt."""
        if not self.share_prefix or len(encoded) < 2:
            return 0
        shared = min(common_prefix_length(encoded), min(len(e) for e in encoded) - 1)
        if shared < MIN_SHARED_PREFIX:
            return 0
        batch = self._batch
        for start in range(0, shared, BATCH_TOKENS):
            chunk = encoded[0][start:min(start + BATCH_TOKENS, shared)]
            for i, token in enumerate(chunk):
                batch.token[i], batch.pos[i] = token, start + i
                batch.n_seq_id[i], batch.logits[i] = 1, False
                batch.seq_id[i][0] = self._prefix_seq
            batch.n_tokens = len(chunk)
            self._decode()
        return shared

    def _decode(self) -> None:
        if self._lib.llama_decode(self._ctx, self._batch) != 0:
            raise RuntimeError("llama_decode failed (the KV cache is full): lower the batch size "
                               "or raise the context length")

    def _fill_batch(self, slots: dict[int, _Row]) -> list[tuple[int, int]]:
        """Put each live row's next token, then prefill chunks, into the batch; returns
        ``(batch position, seq)`` for the rows whose logits are read after this call."""
        batch, count, wanted = self._batch, 0, []

        def add(token: int, pos: int, seq: int, logits: bool) -> None:
            nonlocal count
            batch.token[count], batch.pos[count] = token, pos
            batch.n_seq_id[count], batch.logits[count] = 1, logits
            batch.seq_id[count][0] = seq
            if logits:
                wanted.append((count, seq))
            count += 1

        for seq, row in slots.items():  # decoding rows first: their next token(s)
            if row.fed == len(row.ids) and row.feed:
                start = len(row.ids) + len(row.out) - len(row.feed)
                for j, token in enumerate(row.feed):
                    add(token, start + j, seq, j == len(row.feed) - 1)
        for seq, row in slots.items():
            while row.fed < len(row.ids) and count < BATCH_TOKENS:
                last = row.fed == len(row.ids) - 1
                add(row.ids[row.fed], row.fed, seq, last)
                row.fed += 1
        batch.n_tokens = count
        return wanted


class _Picker:
    """The next token from a row of logits: argmax, or a seeded temperature / top-p draw."""

    def __init__(self, config: GenerationConfig, n_vocab: int) -> None:
        import numpy as np

        self.np, self.n_vocab, self.config = np, n_vocab, config
        self.rng = np.random.default_rng(config.seed)

    def logits(self, pointer: Any) -> Any:
        """A row's logits as a numpy view of llama.cpp's buffer (valid until the next decode)."""
        return self.np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def __call__(self, logits: Any, constraint: Any = None) -> int:
        np = self.np
        if constraint is not None:
            return constraint.pick(logits, self.rng, self.config.temperature, self.config.top_p)
        if self.config.temperature <= 0:
            return int(np.argmax(logits))
        from deepke_llm.decoding.tokens import sample

        return sample(logits, self.rng, self.config.temperature, self.config.top_p)


_LOG_CALLBACK: list[Any] = []  # the ctypes callback must outlive every call llama.cpp makes
GGML_LOG_LEVEL_ERROR = 4  # ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5


def quiet_logs(lib: Any) -> None:
    """Pass only llama.cpp's errors to stderr (its load and context logs are dozens of lines)."""
    if _LOG_CALLBACK:
        return

    @lib.llama_log_callback
    def errors_only(level: int, text: bytes, user_data: Any) -> None:
        if level == GGML_LOG_LEVEL_ERROR:
            print(text.decode("utf-8", "replace"), end="", file=sys.stderr, flush=True)

    _LOG_CALLBACK.append(errors_only)
    lib.llama_log_set(errors_only, ctypes.c_void_p(0))


def _default_threads() -> int:
    """Physical cores are what llama.cpp scales with; without a way to count them, all CPUs."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _metadata(lib: Any, model: Any, key: str) -> str | None:
    buffer = ctypes.create_string_buffer(1 << 16)
    size = lib.llama_model_meta_val_str(model, key.encode(), buffer, len(buffer))
    if size < 0:
        return None
    if size >= len(buffer):
        buffer = ctypes.create_string_buffer(size + 1)
        lib.llama_model_meta_val_str(model, key.encode(), buffer, len(buffer))
    return buffer.value.decode("utf-8", "replace")


def _render_gguf_template(source: str, prompt: Prompt, specials: dict[str, str]) -> str:
    """A GGUF's chat template rendered by transformers' own Jinja renderer (the same string
    ``apply_chat_template`` gives for that template)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[prompt.messages()], chat_template=source,
                                        add_generation_prompt=True, **specials)
    return rendered[0]
