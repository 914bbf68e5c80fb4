"""When a rank writes a checkpoint inside an epoch: every ``--checkpoint-steps`` steps, every
``--checkpoint-minutes`` minutes, or at once when the run is told to stop (SIGTERM, SIGUSR1).

A signal is noted, not acted on: the step in flight finishes, all ranks agree on the step through one collective
(:func:`agree`), write the checkpoint and the run exits with :data:`PREEMPTED_EXIT`. A second signal ends the
process at once (the signal's default action).

Ranks started by this command (``--gpus N`` / ``--cpu-procs N``) share the signals of the process that started
them (:class:`LauncherStop`): a first signal to it reaches every rank as a notice file, read at their next
agreement as if each had been signalled itself (a file, not a signal, so that a rank that gets the signal too, as
from SLURM's ``scancel`` or a terminal, still counts one); a second one kills every rank at once.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from dali_cutmix.helpers.atomic import atomic_path

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


def install_stop_handler(handler) -> Dict[signal.Signals, Any]:
    """``handler`` for every signal of :data:`STOP_SIGNALS`, in the main thread (elsewhere signals cannot be
    handled, and nothing is installed); returns the handlers it replaced, for :func:`restore_handlers`."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}


def restore_handlers(previous: Dict[signal.Signals, Any]) -> None:
    """Put back the handlers :func:`install_stop_handler` replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)


class StopRequest:
    """Notes SIGTERM / SIGUSR1 while installed (main thread only; elsewhere it installs nothing). ``signal_name``:
    the first signal's name, None until one came. A second signal restores the default action and re-sends
    itself, so the process ends at once. ``notice``: a file whose appearance asks this rank to stop too (written
    by :class:`LauncherStop` in the process that started the ranks; it holds the signal's name)."""

    def __init__(self, notice: Optional[Path] = None):
        self.signal_name: Optional[str] = None
        self.notice = None if notice is None else Path(notice)
        self._forwarded: Optional[str] = None
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None:
            self.uninstall()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signal_name = signal.Signals(signum).name

    def requested(self) -> Optional[str]:
        """The name of the signal that asks this rank to stop: its own (``signal_name``), else the one the
        ``notice`` file names (one ``stat`` while none came); None while nothing asks it."""
        if self.signal_name is not None or self.notice is None:
            return self.signal_name
        if self._forwarded is None:
            try:
                self._forwarded = self.notice.read_text().strip() or None
            except FileNotFoundError:
                return None
        return self._forwarded

    def install(self) -> "StopRequest":
        """Install the handlers (a no-op outside the main thread)."""
        self._previous = install_stop_handler(self._handle)
        return self

    def uninstall(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        restore_handlers(self._previous)
        self._previous = {}


#: In the launcher's folder shared with its ranks (:class:`LauncherStop`): the notice file that asks them to stop.
NOTICE = "stop"


def pid_file(folder, rank: int) -> Path:
    """Where rank ``rank`` started by the launcher records its process id, in the folder it shares with it."""
    return Path(folder) / f"rank{rank}.pid"


def record_pid(folder, rank: int) -> None:
    """Record this process as rank ``rank`` in the launcher's ``folder`` (written whole, then renamed)."""
    with atomic_path(pid_file(folder, rank)) as tmp:
        tmp.write_text(str(os.getpid()))


class LauncherStop:
    """SIGTERM / SIGUSR1 in the process that started the ranks (``--gpus N`` / ``--cpu-procs N``), while entered
    (main thread only; elsewhere a no-op), so that a signal to it does what a signal to each rank does:

    - the first one writes ``folder/NOTICE`` (the signal's name, written whole then renamed); each rank's
      :class:`StopRequest` reads it at its next agreement, and the ranks checkpoint and stop there as if they had
      been signalled (the launcher then exits :data:`PREEMPTED_EXIT` on their reports);
    - a second one ends the run at once: every rank recorded in ``folder`` (:func:`record_pid`) is killed
      (SIGKILL) and reaped, the temporary files they were writing in ``output`` (``.NAME.*.tmp``: the checkpoint,
      ``run.json``, ...) are removed, so no file is left half-written and ``last.pt`` keeps the checkpoint before,
      ``folder`` is removed, and this process ends with the signal's default action.

    ``signal_name``: the first signal's name, None until one came."""

    def __init__(self, folder, output):
        self.folder, self.output = Path(folder), Path(output)
        self.signal_name: Optional[str] = None
        self._previous = {}

    def __enter__(self) -> "LauncherStop":
        self._previous = install_stop_handler(self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        restore_handlers(self._previous)
        self._previous = {}
        return False

    def _handle(self, signum, frame) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
            with atomic_path(self.folder / NOTICE) as tmp:
                tmp.write_text(self.signal_name)
            return
        self.__exit__()
        kill_ranks(self.rank_pids())
        remove_temporary_files(self.output)
        shutil.rmtree(self.folder, ignore_errors=True)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def rank_pids(self) -> List[int]:
        """The process ids the ranks recorded in the folder (:func:`record_pid`)."""
        pids = []
        for path in sorted(self.folder.glob("rank*.pid")):
            try:
                pids.append(int(path.read_text()))
            except (OSError, ValueError):
                continue
        return pids


def kill_ranks(pids: Iterable[int]) -> None:
    """SIGKILL each of ``pids`` and, for those that are children of this process, wait until each is gone."""
    pids = list(pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # not our child (or already reaped)
            pass


def remove_temporary_files(folder) -> List[Path]:
    """Remove the temporary files of unfinished atomic writes in ``folder`` (``.NAME.XXXXXXXX.tmp``, as
    :func:`dali_cutmix.helpers.atomic.atomic_path` names them); returns those removed."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        try:
            if path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue
    return removed


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
