"""The runners: each variant (and the mixing stage alone) built, warmed up, and timed by ``measure(batches)``.

Every runner is a :class:`~.timing.Runner`: ``measure`` returns a :class:`~.timing.Timing` and leaves nothing
running, so one variant never steals cores from the next one being timed; ``close`` frees it.
"""

from __future__ import annotations

import time
from typing import Callable, Dict

from dali_cutmix.pipelines.profile_data import quiet

from .graphs import build_isolated_stage_pipeline, build_stage_pipeline
from .settings import ProfileSettings
from .timing import Runner, Timing, synchronize, wait_until_idle
from .variants import ISOLATED, STAGES, VARIANT_KEYS


def _run_batches(pipe, batches: int, device: str) -> float:
    """Seconds for ``batches`` synchronous ``pipe.run()`` calls, the GPU's work included."""
    start = time.perf_counter()
    for _ in range(batches):
        pipe.run()
    synchronize(device)
    return time.perf_counter() - start


class DaliStageRunner:
    """Times a synchronous stage pipeline (:func:`~.graphs.build_stage_pipeline`)."""

    def __init__(self, stage: str, settings: ProfileSettings, num_classes: int):
        self.device = settings.device
        self.batch_size = settings.batch_size
        self.pipe = build_stage_pipeline(stage, settings, num_classes)
        self.pipe.run()  # first batch: allocations
        synchronize(self.device)

    def measure(self, batches: int) -> Timing:
        """Run ``batches`` batches."""
        return Timing(_run_batches(self.pipe, batches, self.device), batches * self.batch_size)

    def close(self) -> None:
        """Free the pipeline."""
        self.pipe = None


class IsolatedStageRunner:
    """Times what the mixing stage adds: the same fixed batch through the pipeline's tail with and without it
    (:func:`~.graphs.build_isolated_stage_pipeline`), on ``factor`` times the batches asked for (it is cheap)."""

    def __init__(self, settings: ProfileSettings, num_classes: int, factor: int = 3):
        self.device = settings.device
        self.batch_size = settings.batch_size
        self.factor = factor
        self.pipes = [build_isolated_stage_pipeline(settings, num_classes, with_mixing=w) for w in (False, True)]
        for pipe in self.pipes:
            pipe.run()
        synchronize(self.device)
        self.flip = False

    def measure(self, batches: int) -> Timing:
        """Run ``factor * batches`` batches each way, alternating which way goes first; the timing is the
        difference (with - without) over the images mixed."""
        total = self.factor * batches
        self.flip = not self.flip
        order = (0, 1) if self.flip else (1, 0)
        seconds = {i: _run_batches(self.pipes[i], total, self.device) for i in order}
        return Timing(seconds[1] - seconds[0], total * self.batch_size)

    def close(self) -> None:
        """Free the pipelines."""
        self.pipes = []


class DaliLoaderRunner:
    """Times the full pipeline through :class:`dali_cutmix.CutMixLoader` to torch tensors.

    The pipeline makes one batch at a time, but the PyTorch iterator schedules the next batch as it hands one
    over (one batch of look-ahead, as in training). So each :meth:`measure` first takes the batch made ahead
    after the previous run (untimed), times ``batches`` batches, then waits, untimed, for the batch scheduled
    ahead to finish (:func:`~.timing.wait_until_idle`): no work spills into the next variant's timing.
    """

    def __init__(self, settings: ProfileSettings, num_classes: int):
        from dali_cutmix.loader import CutMixLoader

        self.device = settings.device
        self.loader = CutMixLoader(build_stage_pipeline("full", settings, num_classes), last_batch="fill")
        self.iterator = iter(self.loader)
        self.next_batch()  # first batch: allocations
        wait_until_idle(self.device)

    def next_batch(self):
        """The next batch, starting a new epoch when one ends."""
        try:
            return next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            return next(self.iterator)

    def measure(self, batches: int) -> Timing:
        """Take ``batches`` batches of torch tensors."""
        self.next_batch()  # made ahead while nothing was timed: not counted
        images = 0
        start = time.perf_counter()
        for _ in range(batches):
            images += int(self.next_batch()[0].shape[0])
        synchronize(self.device)
        seconds = time.perf_counter() - start
        wait_until_idle(self.device)
        return Timing(seconds, images)

    def close(self) -> None:
        """Free the loader and its pipeline."""
        self.iterator = self.loader = None


class ReferenceRunner:
    """Times the torchvision reference loader in steady state, leaving its workers idle after each run.

    Each :meth:`measure` is one epoch: 1 untimed batch, ``timed`` batches (``batches`` rounded up to a multiple
    of the workers, so that a run starts and ends on the same phase of the workers' round), then the batches
    already in flight (``prefetch_factor * workers``) drained untimed. The epoch's length is fixed when the
    runner is made, for ``settings.batches``.
    """

    PREFETCH_FACTOR = 2

    def __init__(self, settings: ProfileSettings, num_classes: int):
        import torch
        from torch.utils.data import RandomSampler

        from dali_cutmix.pipelines.reference import build_reference_loader, reference_dataset

        workers = settings.threads
        self.device = settings.device
        self.timed = -(-settings.batches // workers) * workers
        self.epoch = 1 + self.timed + self.PREFETCH_FACTOR * workers
        dataset = reference_dataset(settings.data, settings.crop)
        sampler = RandomSampler(dataset, num_samples=self.epoch * settings.batch_size,
                                generator=torch.Generator().manual_seed(settings.seed))
        self.loader = build_reference_loader(
            settings.data, batch_size=settings.batch_size, num_workers=workers, crop=settings.crop,
            num_classes=num_classes, sampler=sampler, prefetch_factor=self.PREFETCH_FACTOR,
            pin_memory=self.device == "gpu", seed=settings.seed)
        self.run_epoch()  # start the workers (not timed)

    def to_device(self, batch) -> int:
        """Move a batch to the GPU for "gpu" (what a training loop does with it); returns its size."""
        if self.device == "gpu":
            batch = [t.cuda(non_blocking=True) for t in batch]
        return int(batch[0].shape[0])

    def run_epoch(self) -> Timing:
        """One epoch; the timing of its ``timed`` batches."""
        iterator = iter(self.loader)
        self.to_device(next(iterator))
        images = 0
        start = time.perf_counter()
        for _ in range(self.timed):
            images += self.to_device(next(iterator))
        synchronize(self.device)
        seconds = time.perf_counter() - start
        for batch in iterator:  # drain the batches in flight: the workers end idle
            self.to_device(batch)
        return Timing(seconds, images)

    def measure(self, batches: int) -> Timing:
        """One epoch: the timing of ``self.timed`` batches (``settings.batches`` rounded up), not ``batches``."""
        return self.run_epoch()

    def close(self) -> None:
        """Stop the workers."""
        self.loader = None


def make_runner(key: str, settings: ProfileSettings, num_classes: int) -> Runner:
    """The runner of ``key`` (one of :data:`~.variants.VARIANT_KEYS`, or :data:`~.variants.ISOLATED`), warmed up.

    Raises:
        ValueError: an unknown ``key``.
    """
    if key in STAGES:
        return DaliStageRunner(key, settings, num_classes)
    if key == "loader":
        return DaliLoaderRunner(settings, num_classes)
    if key == "reference":
        return ReferenceRunner(settings, num_classes)
    if key == ISOLATED:
        return IsolatedStageRunner(settings, num_classes)
    raise ValueError(f"variant must be one of {VARIANT_KEYS + (ISOLATED,)}, got {key!r}")


def make_runners(settings: ProfileSettings, num_classes: int, progress: Callable[[str], None] = quiet
                 ) -> Dict[str, Runner]:
    """Every variant's runner (each warmed up), keyed as :data:`~.variants.VARIANT_KEYS`, plus
    :data:`~.variants.ISOLATED`. If one fails to build, those already built are closed."""
    runners: Dict[str, Runner] = {}
    try:
        for key in VARIANT_KEYS + (ISOLATED,):
            progress(f"building variant {key}")
            runners[key] = make_runner(key, settings, num_classes)
    except BaseException:
        for runner in runners.values():
            runner.close()
        raise
    return runners
