"""A dependency-free progress display (the trainer's epochs on rank 0, the data scan).

On a terminal: one line redrawn in place (``\\r``), at most 5 times a second. Elsewhere (a log file, SLURM's
output, a pipe): a plain line every ``every`` steps, or every 30 seconds when ``every`` is 0.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

BAR_WIDTH = 24


class Progress:
    """Progress of one epoch: ``update(step, text)`` after each step, ``close()`` at the end.

    ``text`` is a callable (only called when a line is drawn, so the loop does not pay for formatting or for
    reading a GPU value when nothing is shown).
    """

    def __init__(self, total: int, prefix: str, *, enabled: bool = True, every: int = 0,
                 stream: Optional[TextIO] = None, interval_s: float = 30.0):
        self.total = max(int(total), 1)
        self.prefix = prefix
        self.enabled = enabled
        self.every = int(every)
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = 0.2 if self.tty else interval_s
        self._last = time.monotonic()
        self._drawn = False

    def _due(self, step: int) -> bool:
        if step >= self.total:
            return self.tty
        if not self.tty and self.every > 0:
            return step % self.every == 0
        return time.monotonic() - self._last >= self.interval_s

    def update(self, step: int, text: Callable[[], str] = lambda: "") -> None:
        """Show progress after ``step`` (1-based) steps of ``total``, if a line is due."""
        if not self.enabled or not self._due(step):
            return
        self._last = time.monotonic()
        if self.tty:
            filled = int(BAR_WIDTH * step / self.total)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            self.stream.write(f"\r{self.prefix} [{bar}] {step}/{self.total} {text()}\033[K")
            self._drawn = True
        else:
            self.stream.write(f"{self.prefix} step {step}/{self.total} {text()}\n")
        self.stream.flush()

    def close(self) -> None:
        """End the redrawn line (terminal only)."""
        if self.enabled and self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
