"""What every runner promises (:class:`Runner`, :class:`Timing`), how a variant says it cannot be measured here
(:class:`VariantUnavailable`), waiting until the device is idle, and timing short steps in turn."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Protocol


@dataclass(frozen=True)
class Timing:
    """One timed run: ``seconds`` spent on ``images`` images.

    For a variant, the wall time of its timed batches. For the mixing stage alone, the time the stage adds to
    its fed batch, over the batches it mixed (may be negative within noise), and ``copy_seconds``: what as many
    copies of the batch took, timed between those batches (None for the other runners).
    """

    seconds: float
    images: int
    copy_seconds: Optional[float] = None


class VariantUnavailable(Exception):
    """A variant that cannot be measured with these settings on this machine (an optional package missing, a
    setting it cannot take); ``str()`` says why. The run records the reason instead of the variant's figures."""


class Runner(Protocol):
    """A variant ready to be timed: built and warmed up, nothing running in the background between calls."""

    def measure(self, batches: int) -> Timing:
        """Time ``batches`` batches; nothing of this run is left running when it returns."""

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


def endless(loader: Iterable) -> Iterator:
    """``loader``'s batches epoch after epoch (a new ``iter(loader)`` when one ends), as a training loop takes
    them."""
    while True:
        yield from loader


def time_batches(take: Callable[[], int], batches: int, device: str) -> Timing:
    """``batches`` calls of ``take`` (one batch as a training loop gets it; returns its size), timed with the
    GPU's work included, then an untimed wait until nothing runs (:func:`wait_until_idle`), so no work spills
    into whatever is timed next."""
    images = 0
    start = time.perf_counter()
    for _ in range(batches):
        images += take()
    synchronize(device)
    seconds = time.perf_counter() - start
    wait_until_idle(device)
    return Timing(seconds, images)


def time_epoch(loader, to_device: Callable[[object], int], device: str) -> Timing:
    """One epoch of ``loader`` (an iterable whose workers are idle when it starts and when it ends, such as a
    DataLoader with persistent workers and a fixed-length epoch), timed from ``iter()`` to its last batch, the
    GPU's work included: ``to_device`` takes each batch as a training loop does and returns its size.

    Timed from idle to idle, an epoch of ``k x workers`` batches keeps every worker busy for ``k`` batches, the
    rate of its steady state; another count leaves workers idle in its last round (the profiler warns of it:
    ``run.worker_warnings``)."""
    images = 0
    start = time.perf_counter()
    for batch in loader:
        images += to_device(batch)
    synchronize(device)
    return Timing(time.perf_counter() - start, images)


def interleaved_times(steps: Mapping[str, Callable[[], object]], batches: int) -> Dict[str, List[float]]:
    """Run every step of ``steps`` once per batch, in their order, ``batches`` times, each timed on its own:
    ``{name: [wall seconds per batch], f"{name}_cpu": [this process's CPU seconds per batch]}``. Taking the steps in
    turn batch by batch lets machine drift hit them alike; a step must finish its work (GPU included) before it
    returns."""
    times: Dict[str, List[float]] = {key: [] for name in steps for key in (name, f"{name}_cpu")}
    for _ in range(batches):
        for name, step in steps.items():
            start, cpu = time.perf_counter(), time.process_time()
            step()
            times[name].append(time.perf_counter() - start)
            times[f"{name}_cpu"].append(time.process_time() - cpu)
    return times
