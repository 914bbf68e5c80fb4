"""When a rank writes a checkpoint inside an epoch: every ``--checkpoint-steps`` steps, every
``--checkpoint-minutes`` minutes, or at once when the run is told to stop (SIGTERM, SIGUSR1).

A signal is noted, not acted on: the step in flight finishes, all ranks agree on the step through one collective
(:func:`agree`), write the checkpoint and the run exits with :data:`PREEMPTED_EXIT`. A second signal ends the
process at once (the signal's default action).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Optional

from . import distributed

#: The exit status of a run stopped by SIGTERM / SIGUSR1 after it wrote its checkpoint (``EX_TEMPFAIL``: try again
#: later, with ``--resume auto``).
PREEMPTED_EXIT = 75
#: The signals that ask a run to checkpoint and stop (SLURM sends SIGTERM, or the one ``--signal`` names).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
#: With several ranks, the steps at which they agree (every this many, and every ``--checkpoint-steps`` step):
#: each agreement is an all-reduce read back on the host, which would stall the GPU's queue if done every step.
#: A stop signal is acted on within this many steps (seconds on a GPU; SLURM warns 30-120 s ahead).
AGREE_EVERY = 20


class Preempted(Exception):
    """The run stopped on SIGTERM / SIGUSR1 after writing its checkpoint; ``line``: where, and how to resume.
    The CLI prints it and exits with :data:`PREEMPTED_EXIT`."""

    def __init__(self, line: str):
        super().__init__(line)
        self.line = line


class StopRequest:
    """Notes SIGTERM / SIGUSR1 while installed (main thread only; elsewhere it installs nothing). ``signal_name``:
    the first signal's name, None until one came. A second signal restores the default action and re-sends
    itself, so the process ends at once."""

    def __init__(self):
        self.signal_name: Optional[str] = None
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None:
            self.uninstall()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signal_name = signal.Signals(signum).name

    def install(self) -> "StopRequest":
        """Install the handlers (a no-op outside the main thread)."""
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


class CheckpointClock:
    """Whether a mid-epoch checkpoint is due after a step: every ``steps`` steps of the epoch (1-based step
    numbers divisible by ``steps``; None = never) or once ``minutes`` passed since the last checkpoint
    (:meth:`written` resets it; None = never). The last step of an epoch is never due: the epoch's own checkpoint
    follows it."""

    def __init__(self, steps: Optional[int], minutes: Optional[float]):
        self.steps, self.minutes = steps, minutes
        self.last = time.monotonic()

    def due(self, step: int, steps_per_epoch: int) -> bool:
        if step >= steps_per_epoch:
            return False
        if self.steps is not None and step % self.steps == 0:
            return True
        return self.minutes is not None and time.monotonic() - self.last >= 60.0 * self.minutes

    def shared(self, step: int) -> bool:
        """Whether ranks agree after ``step``: every :data:`AGREE_EVERY` steps and every ``steps`` step, the same
        steps on every rank (a ``minutes`` checkpoint or a signal waits for the next of them)."""
        return step % AGREE_EVERY == 0 or (self.steps is not None and step % self.steps == 0)

    def written(self) -> None:
        """A checkpoint was just written: the minutes count from now."""
        self.last = time.monotonic()


def agree(*, due: bool, stop: bool, is_main: bool, world_size: int, device, shared: bool = True) -> tuple:
    """``(checkpoint, stop)`` as all ranks agree after this step: a checkpoint when rank 0's clock says so (its
    clock alone, so every rank takes the same step) or when any rank must stop; stop when any rank was signalled.
    One all-reduce of two numbers with several ranks on a ``shared`` step (:meth:`CheckpointClock.shared`, the
    same on every rank), none on the others (``(False, False)``) and none with one rank."""
    if world_size == 1:
        return due or stop, stop
    if not shared:
        return False, False
    import torch

    flags = torch.tensor([float(due and is_main), float(stop)], device=device)
    distributed.all_reduce_max(flags)
    due_all, stop_all = (bool(v) for v in flags.tolist())
    return due_all or stop_all, stop_all
