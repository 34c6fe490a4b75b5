"""Start DeepSpeed without compiling C++ ops it does not need, and never wait on a dead build.

Why this exists. ``deepspeed.comm.torch.TorchBackend.__init__`` (DeepSpeed 0.19) calls
``build_shm_op()``, which on the CPU accelerator JIT-compiles the ``deepspeed_shm_comm`` op
through ``torch.utils.cpp_extension.load``: about a minute on a fresh machine, for a kernel whose
only user is ``inference_all_reduce`` (AutoTP layers) across several processes; with one process
it returns before touching the op. torch guards each build directory with a ``lock`` file
(``FileBaton``) that every other process polls until it disappears, with no timeout: a build killed
mid-way (a test timeout, Ctrl-C, OOM) leaves the file behind and every later run on that machine
waits forever (``~/.cache/torch_extensions/py311_cpu/deepspeed_shm_comm/lock``, or under
``$TORCH_EXTENSIONS_DIR``).

``prepare_deepspeed()`` therefore (1) skips the shm op when the run has one process (DeepSpeed's
fallback, ``torch.distributed.all_reduce``, is what it would use anyway), and (2) replaces the
endless wait by an error naming the lock to delete, once the lock is older than any build takes
and no process on this machine holds it open (the builder keeps it open while it compiles).
"""

from __future__ import annotations

import functools
import importlib
import os
import time
from pathlib import Path

# the shm and CPU Adam ops build in about a minute; ten is well past any real build
STALE_LOCK_SECONDS = 600.0


class StaleBuildLockError(RuntimeError):
    """A torch extension build lock left behind by a killed build."""


def prepare_deepspeed() -> None:
    """Call before DeepSpeed initialises (before ``TrainingArguments(deepspeed=...)``)."""
    _skip_shm_op_for_one_process()
    _guard_extension_build_locks()


def _world_size() -> int | None:
    """The run's process count as known when DeepSpeed creates its comm backend, or None."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    value = os.environ.get("WORLD_SIZE", "")
    return int(value) if value.isdigit() else None


def _skip_shm_op_for_one_process() -> None:
    # importlib, not `import deepspeed.comm.torch as m`: deepspeed.comm re-exports the real torch
    # under the name `torch`, so that form binds torch itself and a patch on it changes nothing
    module = importlib.import_module("deepspeed.comm.torch")
    original = getattr(module, "build_shm_op", None)
    if original is None or getattr(original, "deepke_llm_wrapped", False):
        return

    @functools.wraps(original)
    def build_shm_op() -> object:
        if _world_size() == 1:
            return None
        return original()

    build_shm_op.deepke_llm_wrapped = True  # type: ignore[attr-defined]
    module.build_shm_op = build_shm_op


def lock_holders(lock: Path) -> list[int] | None:
    """Pids of processes on this machine with ``lock`` open; None where /proc cannot tell."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    target = str(lock.resolve())
    holders = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) == target for fd in (entry / "fd").iterdir()):
                holders.append(int(entry.name))
        except OSError:  # gone, or another user's process
            continue
    return holders


def check_build_lock(lock: Path, stale_after: float = STALE_LOCK_SECONDS) -> None:
    """Raise ``StaleBuildLockError`` if ``lock`` is a leftover no build will ever remove."""
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age < stale_after or lock_holders(lock):
        return
    raise StaleBuildLockError(
        f"{lock}: a torch extension build lock {age / 60:.0f} min old that no process holds; a "
        f"build was killed and left it behind, so this run would wait forever: delete {lock} "
        f"and run again")


def _guard_extension_build_locks() -> None:
    from torch.utils import cpp_extension

    baton = getattr(cpp_extension, "FileBaton", None)  # a torch internal: leave a renamed one be
    if baton is None or getattr(baton, "deepke_llm_guarded", False):
        return

    class GuardedFileBaton(baton):
        """torch's FileBaton whose wait() gives up on a stale lock instead of polling forever."""

        deepke_llm_guarded = True

        def wait(self) -> None:
            lock = Path(self.lock_file_path)
            while lock.exists():
                check_build_lock(lock)
                time.sleep(self.wait_seconds)

    # _jit_compile looks FileBaton up in the module at call time
    cpp_extension.FileBaton = GuardedFileBaton
