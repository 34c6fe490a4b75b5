"""The one progress bar: tqdm on stderr, or a silent stand-in when progress is off."""

from __future__ import annotations

import sys

__all__ = ["ProgressBar"]


class ProgressBar:
    """A tqdm bar on stderr (documents, with a total when known), or a silent stand-in.

    ``initial`` starts the count there (a resumed run's documents already done).
    """

    def __init__(self, enabled: bool, total: int | None = None, desc: str = "",
                 unit: str = "doc", initial: int = 0) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, initial=initial,
                             dynamic_ncols=True, mininterval=0.5)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more finished items."""
        if self._bar is not None:
            self._bar.update(n)

    def status(self, text: str, refresh: bool = True) -> None:
        """Show what the run is doing (the window reached in a long document, totals so far)."""
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=refresh)

    def close(self) -> None:
        """Finish the bar (a closed bar ignores further calls)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
