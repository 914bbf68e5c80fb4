"""What every runner promises (:class:`Runner`, :class:`Timing`), how a variant says it cannot be measured here
(:class:`VariantUnavailable`), and waiting until the device is idle."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Timing:
    """One timed run: ``seconds`` spent on ``images`` images.

    For a variant, the wall time of its timed batches. For the isolated mixing stage, the time the stage adds
    (with it minus without it, over the same batches: may be negative within noise) to the images it mixed.
    """

    seconds: float
    images: int


class VariantUnavailable(Exception):
    """A variant that cannot be measured with these settings on this machine (an optional package missing, a
    setting it cannot take); ``str()`` says why. The run records the reason instead of the variant's figures."""


class Runner(Protocol):
    """A variant ready to be timed: built and warmed up, nothing running in the background between calls."""

    def measure(self, batches: int) -> Timing:
        """Time about ``batches`` batches (a runner may round the count, and says so); nothing of this run is
        left running when it returns."""

    def close(self) -> None:
        """Free what the runner holds (pipelines, workers)."""


def synchronize(device: str) -> None:
    """Wait for the GPU's queued work ("gpu"; nothing to wait for on "cpu")."""
    if device == "gpu":
        import torch

        torch.cuda.synchronize()


def wait_until_idle(device: str, window_s: float = 0.02, timeout_s: float = 10.0) -> None:
    """Return once this process's threads (DALI's included) have been idle for two windows of ``window_s``.

    DALI has no "wait until idle" call; a batch the PyTorch iterator scheduled ahead is still being made when
    the last timed batch is handed over. Idle means less than 10% of one core used during a window; the GPU
    is synchronized before and after. Gives up after ``timeout_s`` (the machine may be that busy).
    """
    synchronize(device)
    deadline = time.perf_counter() + timeout_s
    quiet = 0
    while quiet < 2 and time.perf_counter() < deadline:
        cpu = time.process_time()
        time.sleep(window_s)
        quiet = quiet + 1 if time.process_time() - cpu < 0.1 * window_s else 0
    synchronize(device)
