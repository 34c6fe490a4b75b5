"""Where a Hugging Face model comes from: a local dir, a ``.gguf`` file, or a hub id.

A hub id (``org/name``) is resolved by transformers as usual while the hub answers. When it does
not (no network, ``HF_HUB_OFFLINE=1``), a copy in the local Hugging Face cache loads offline and an
id without one fails at once with one line, instead of minutes of download retries.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

from deepke_llm.problems import one_line

__all__ = ["HOW_TO_PASS", "looks_like_path", "resolve_hub_id", "resolve_model_path", "split_gguf"]

HOW_TO_PASS = "pass --model DIR (a Hugging Face model dir with config.json), a hub id, or a .gguf file"
HUB_PROBE_TIMEOUT_S = 3.0


def split_gguf(model: str, gguf_file: str | None) -> tuple[str, str | None]:
    """(model dir or hub id, gguf file name) for ``model`` = dir/file.gguf or dir + gguf_file."""
    if gguf_file is None and model.lower().endswith(".gguf"):
        path = Path(model).expanduser()
        return str(path.parent), path.name
    return model, gguf_file


def looks_like_path(model: str) -> bool:
    """Is ``model`` written as a path (rather than an ``org/name`` hub id)?"""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model


def resolve_model_path(model: str, gguf_file: str | None, revision: str | None = None) -> str:
    """What to load for ``model``: itself, or a hub id's cached copy; ValueError (one line) when
    it cannot load."""
    path = Path(model).expanduser()
    if gguf_file is not None:
        if (path.is_dir() or looks_like_path(model)) and not (path / gguf_file).is_file():
            raise ValueError(f"GGUF file {path / gguf_file} does not exist: {HOW_TO_PASS}")
        if importlib.util.find_spec("gguf") is None:
            raise ValueError(f"loading {gguf_file} needs the 'gguf' package: pip install gguf")
        return model if path.is_dir() else resolve_hub_id(model, gguf_file, revision, "--model")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{path} is not a Hugging Face model directory (no config.json): "
                             f"{HOW_TO_PASS}")
    elif path.exists():
        raise ValueError(f"{path} is a file, not a model directory: {HOW_TO_PASS}")
    elif looks_like_path(model):
        raise ValueError(f"model directory {path} does not exist: {HOW_TO_PASS}")
    else:
        return resolve_hub_id(model, "config.json", revision, "--model")
    return model


def resolve_hub_id(name: str, filename: str, revision: str | None, option: str) -> str:
    """For ``name`` that is no local path: ``name`` itself while the hub answers (resolved online
    as usual), else the dir of its copy in the local Hugging Face cache; ValueError (one line)
    when there is neither, so a run without network never sits in download retries."""
    from huggingface_hub import constants

    cached = _cached_snapshot(name, filename, revision)
    dir_hint = (f"pass {option} DIR (a downloaded copy, e.g. from `hf download "
                f"{name} --local-dir DIR`)")
    if constants.HF_HUB_OFFLINE:
        if cached:
            return cached
        raise ValueError(f"{option} {name} is not a local directory and HF_HUB_OFFLINE is set, "
                         f"but it is not in the Hugging Face cache {constants.HF_HUB_CACHE}: "
                         f"{dir_hint}")
    reason = _hub_unreachable(constants.ENDPOINT)
    if reason is None:
        return name
    if cached:
        return cached
    raise ValueError(f"{option} {name} is not a local directory and the Hugging Face hub "
                     f"{constants.ENDPOINT} is unreachable ({reason}): {dir_hint}, or retry "
                     f"with network")


def _cached_snapshot(name: str, filename: str, revision: str | None) -> str | None:
    """The cached snapshot dir of hub repo ``name`` when it holds ``filename``, else None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, filename, revision=revision)
    except ValueError:  # not a valid repo id (HFValidationError)
        return None
    # a dir, not local_files_only=True: peft asks the hub whether files exist even then
    return str(Path(found).parent) if isinstance(found, str) else None


def _hub_unreachable(endpoint: str) -> str | None:
    """None when ``endpoint`` answers HTTP at all (any status), else why not, in a few words.

    One request with short timeouts and no retries; run in a thread with a deadline, because a
    DNS lookup without network is not bounded by socket timeouts.
    """
    import httpx

    outcome: list[str | None] = []

    def probe() -> None:
        try:
            httpx.head(endpoint, timeout=HUB_PROBE_TIMEOUT_S, follow_redirects=False)
            outcome.append(None)
        except httpx.TimeoutException:
            outcome.append(f"no answer within {HUB_PROBE_TIMEOUT_S:g} s")
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            outcome.append(one_line(exc))

    thread = threading.Thread(target=probe, name="deepke-hub-probe", daemon=True)
    thread.start()
    thread.join(2 * HUB_PROBE_TIMEOUT_S)
    return outcome[0] if outcome else f"no answer within {2 * HUB_PROBE_TIMEOUT_S:g} s"
