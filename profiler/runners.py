"""The runners: each variant (and the mixing stage alone) built, warmed up, and timed by ``measure(batches)``.

Every runner is a :class:`~.timing.Runner`: ``measure`` returns a :class:`~.timing.Timing` and leaves nothing
running, so one variant never steals cores from the next one being timed; ``close`` frees it.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional, Tuple

from dali_cutmix.errors import UserError
from dali_cutmix.pipelines.profile_data import quiet

from .dynamic_runner import DynamicRunner
from .graphs import build_stage_alone_pipeline, build_stage_pipeline, fixed_batch
from .mixers import Mixer, timm_mixer, torchvision_mixer
from .settings import ProfileSettings
from .stats import quiet_figure
from .timing import (Runner, Timing, VariantUnavailable, endless, interleaved_times, synchronize, time_batches,
                     time_epoch, wait_until_idle)
from .timm_loader import TimmLoaderRunner
from .variants import (ASYNC_SUFFIX, ASYNC_TWINS, AUGMENTS, ISOLATED, REFERENCE_BACKENDS, STAGE_METHODS, STAGES,
                       TIMM_LOADERS, VARIANT_KEYS, async_key, stage_key, variant_options)


def method_options(settings: ProfileSettings, method: str):
    """The :class:`dali_cutmix.MixOptions` of the stage method ``method`` (of :data:`~.variants.STAGE_METHODS`):
    the settings' options with the method's fields set."""
    from dali_cutmix.options import MixOptions

    return MixOptions.coerce({**settings.mix.as_dict(), **STAGE_METHODS[method]})


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


class DaliAsyncStageRunner:
    """Times a stage pipeline with the builder's prefetching (``build_stage_pipeline(synchronous=False)``:
    ``prefetch_queue_depth`` 2, ``exec_pipelined=True``), as training runs it: DALI makes batches ahead while the
    caller takes one.

    Each :meth:`measure` first takes, untimed, as many batches as the queue holds (those made ahead while
    nothing was timed, and the one after), times ``batches`` batches in steady state, then waits, untimed, until
    the batches scheduled ahead are done (:func:`~.timing.wait_until_idle`): no work spills into the next
    variant's timing.
    """

    def __init__(self, stage: str, settings: ProfileSettings, num_classes: int):
        self.device = settings.device
        self.batch_size = settings.batch_size
        self.pipe = build_stage_pipeline(stage, settings, num_classes, synchronous=False)
        depth = self.pipe.prefetch_queue_depth
        self.ahead = max(depth.values()) if isinstance(depth, dict) else int(depth)
        self.pipe.run()  # first batches: allocations, the queue filled
        wait_until_idle(self.device)

    def measure(self, batches: int) -> Timing:
        """Run ``batches`` batches with prefetching, after the untimed ones made ahead."""
        for _ in range(self.ahead):
            self.pipe.run()
        seconds = _run_batches(self.pipe, batches, self.device)
        wait_until_idle(self.device)
        return Timing(seconds, batches * self.batch_size)

    def close(self) -> None:
        """Free the pipeline."""
        self.pipe = None


class StageAloneRunner:
    """Times what the mixing stage costs on the fixed batch, against one copy of that batch.

    Per batch, in turn: the fed batch alone, the fed batch through the stage (both
    :func:`~.graphs.build_stage_alone_pipeline`), and one copy of the batch (``np.copyto`` into a preallocated
    array on the CPU, ``Tensor.copy_`` on the GPU), each timed on its own (:func:`~.timing.interleaved_times`), on
    ``factor`` times the batches asked for (they are cheap). A run's figures are the quiet ones
    (:func:`~.stats.quiet_figure`): the stage's cost is the quiet stage batch less the quiet baseline, the copy's
    the quiet copy.
    """

    def __init__(self, settings: ProfileSettings, num_classes: int, factor: int = 3, options=None):
        import numpy as np

        self.device = settings.device
        self.batch_size = settings.batch_size
        self.factor = factor
        batch = fixed_batch(settings, num_classes)  # one batch: the pipelines read it, the copy copies it
        self.pipes = {name: build_stage_alone_pipeline(settings, num_classes, batch, with_mixing=with_mixing,
                                                       options=options)
                      for name, with_mixing in (("source", False), ("stage", True))}
        source = batch[0]
        gpu = self.device == "gpu"
        target = source.clone() if gpu else np.empty_like(source)
        copy = (lambda: target.copy_(source)) if gpu else (lambda: np.copyto(target, source))
        self.steps = {name: self._synchronized(pipe.run) for name, pipe in self.pipes.items()}
        self.steps["copy"] = self._synchronized(copy)
        for step in self.steps.values():  # first batch: allocations, the copy's first touch of its pages
            step()

    def _synchronized(self, work: Callable[[], object]) -> Callable[[], None]:
        """``work``, then wait for the GPU's queued work (a batch's time includes its kernels)."""
        def step():
            work()
            synchronize(self.device)
        return step

    def measure(self, batches: int) -> Timing:
        """Time ``factor * batches`` batches of each step, in turn."""
        total = self.factor * batches
        times = interleaved_times(self.steps, total)
        cost = quiet_figure(times["stage"]) - quiet_figure(times["source"])
        return Timing(cost * total, total * self.batch_size, copy_seconds=quiet_figure(times["copy"]) * total)

    def close(self) -> None:
        """Free the pipelines and the batch."""
        self.pipes, self.steps = {}, {}


class DaliLoaderRunner:
    """Times the full pipeline through :class:`dali_cutmix.CutMixLoader` to torch tensors.

    The pipeline makes one batch at a time, but the PyTorch iterator schedules the next batch as it hands one
    over (one batch of look-ahead, as in training). So each :meth:`measure` first takes the batch made ahead
    after the previous run (untimed), times ``batches`` batches, then waits, untimed, for the batch scheduled
    ahead to finish (:func:`~.timing.wait_until_idle`): no work spills into the next variant's timing.
    ``augment``: the builder's augmentation preset (None: the settings').
    """

    #: Batches made ahead of the one handed over, taken untimed before each run.
    ahead = 1

    def __init__(self, settings: ProfileSettings, num_classes: int, augment: Optional[str] = None):
        from dali_cutmix.loader import CutMixLoader

        self.device = settings.device
        self.augment = augment
        self.loader = CutMixLoader(self.build_pipeline(settings, num_classes), last_batch="fill")
        self.batches = endless(self.loader)
        self.batch()  # first batch: allocations
        wait_until_idle(self.device)

    def build_pipeline(self, settings: ProfileSettings, num_classes: int):
        """The loader's pipeline: the full one (with the builder's ``augment`` preset given), one batch per
        ``run()``."""
        return build_stage_pipeline("full", settings, num_classes, augment=self.augment)

    def next_batch(self):
        """The next batch, starting a new epoch when one ends."""
        return next(self.batches)

    def batch(self):
        """The next ``(images, targets)`` batch as a training loop gets it: images ``[N, 3, crop, crop]`` and soft
        targets ``[N, num_classes]``, float32, on the pipeline's device."""
        return self.next_batch()[:2]

    def measure(self, batches: int) -> Timing:
        """Take ``batches`` batches of torch tensors (:meth:`batch`)."""
        for _ in range(self.ahead):  # made ahead while nothing was timed: not counted
            self.next_batch()
        return time_batches(lambda: int(self.batch()[0].shape[0]), batches, self.device)

    def close(self) -> None:
        """Free the loader and its pipeline."""
        self.batches = self.loader = None


class DaliAsyncLoaderRunner(DaliLoaderRunner):
    """Times the full pipeline through :class:`dali_cutmix.CutMixLoader` as training runs it: with the builder's
    prefetching (``build_stage_pipeline(synchronous=False)``: ``prefetch_queue_depth`` 2, ``exec_pipelined=True``),
    DALI makes batches ahead while the caller takes one. Timed as :class:`DaliAsyncStageRunner`: per run, as many
    batches as the queue holds taken untimed, ``batches`` timed, then the batches scheduled ahead awaited
    untimed."""

    def build_pipeline(self, settings: ProfileSettings, num_classes: int):
        """The full pipeline with the builder's prefetching."""
        pipe = build_stage_pipeline("full", settings, num_classes, synchronous=False, augment=self.augment)
        depth = pipe.prefetch_queue_depth
        self.ahead = max(depth.values()) if isinstance(depth, dict) else int(depth)
        return pipe


class AfterLoaderRunner(DaliLoaderRunner):
    """Times mixing after the loader, as a DALI user does it today: the full pipeline without the mixing stage
    (``mixing=False``) through :class:`dali_cutmix.CutMixLoader`, then ``mixer`` (:mod:`.mixers`) on each batch, on
    the batch's device. Timed as :class:`DaliLoaderRunner` (the same look-ahead, awaited after each run).

    The pipeline's one-hot labels are dropped: the mixer takes the integer class ids (the builder's
    ``return_params`` output), as int64 ``[N]`` on the images' device.
    """

    def __init__(self, settings: ProfileSettings, num_classes: int, mixer: Mixer):
        self.mixer = mixer
        super().__init__(settings, num_classes)

    def build_pipeline(self, settings: ProfileSettings, num_classes: int):
        """The full pipeline without the mixing stage, with the class ids as its last output."""
        return build_stage_pipeline("full", settings, num_classes, mixing=False, return_params=True)

    def batch(self):
        """The next batch, mixed by the mixer: ``(images, targets)`` as the mixer returns them."""
        outputs = self.next_batch()
        images, class_ids = outputs[0], outputs[-1]
        return self.mixer(images, class_ids.reshape(-1).long().to(images.device, non_blocking=True))


class RandomIndices:
    """A sampler of ``count`` random indices into a data set of ``size`` samples (random permutations, one after
    another, cut to ``count``), drawn from ``generator``; ``count`` may change between epochs."""

    def __init__(self, size: int, count: int, generator):
        self.size, self.count, self.generator = size, count, generator

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        import torch

        rounds = -(-self.count // self.size)
        order = torch.cat([torch.randperm(self.size, generator=self.generator) for _ in range(rounds)])
        return iter(order[:self.count].tolist())


class ReferenceRunner:
    """Times the torchvision reference loader (persistent workers = threads), one epoch of exactly the batches
    asked for per :meth:`measure`, from idle to idle (:func:`~.timing.time_epoch`): nothing is made ahead of the
    epoch or left in flight after it, whatever the worker count. ``backend`` and ``augment`` (the augmentation of
    ours it is paired with) are the transform's (see :func:`dali_cutmix.pipelines.reference.reference_transform`).

    Raises:
        VariantUnavailable: tar shards; an augmentation the reference does not apply (a policy, random erasing).
    """

    PREFETCH_FACTOR = 2

    def __init__(self, settings: ProfileSettings, num_classes: int, backend: str = "pil", augment="none"):
        import torch

        from dali_cutmix.pipelines.reference import build_reference_loader, reference_augment, reference_dataset
        from dali_cutmix.shard_reader import is_shard_folder

        if is_shard_folder(settings.data):
            raise VariantUnavailable("torchvision's ImageFolder reads class folders, not tar shards")
        try:
            augment = reference_augment(augment)
        except UserError as e:  # ours would run an augmentation the peer does not: no like-for-like figure
            raise VariantUnavailable(str(e)) from None
        self.device = settings.device
        self.batch_size = settings.batch_size
        dataset = reference_dataset(settings.data, settings.crop, backend, augment)
        self.sampler = RandomIndices(len(dataset), settings.batches * settings.batch_size,
                                     torch.Generator().manual_seed(settings.seed))
        self.loader = build_reference_loader(
            settings.data, batch_size=settings.batch_size, num_workers=settings.threads, crop=settings.crop,
            num_classes=num_classes, sampler=self.sampler, prefetch_factor=self.PREFETCH_FACTOR,
            pin_memory=self.device == "gpu", seed=settings.seed, backend=backend, augment=augment)
        self.measure(settings.batches)  # start the workers (not timed)

    def to_device(self, batch) -> int:
        """Move a batch to the GPU for "gpu" (what a training loop does with it); returns its size."""
        if self.device == "gpu":
            batch = [t.cuda(non_blocking=True) for t in batch]
        return int(batch[0].shape[0])

    def measure(self, batches: int) -> Timing:
        """One epoch of ``batches`` batches, timed from its start to its last batch."""
        self.sampler.count = batches * self.batch_size
        return time_epoch(self.loader, self.to_device, self.device)

    def close(self) -> None:
        """Stop the workers."""
        self.loader = None


#: The runners after the variants: the settings' stage alone and each method's (each with its batch copies).
EXTRA_KEYS = (ISOLATED,) + tuple(stage_key(m) for m in STAGE_METHODS)


def make_runner(key: str, settings: ProfileSettings, num_classes: int) -> Runner:
    """The runner of ``key`` (one of :data:`~.variants.VARIANT_KEYS`, the :func:`~.variants.async_key` of one of
    :data:`~.variants.ASYNC_TWINS`, or
    :data:`~.variants.ISOLATED`), warmed up.

    Raises:
        VariantUnavailable: the variant cannot be measured here (e.g. timm is not installed), saying why.
        UserError: an unknown ``key``.
    """
    if key in STAGES:
        return DaliStageRunner(key, settings, num_classes)
    if key.endswith(ASYNC_SUFFIX) and key[:-len(ASYNC_SUFFIX)] in STAGES:
        return DaliAsyncStageRunner(key[:-len(ASYNC_SUFFIX)], settings, num_classes)
    if key == async_key("loader"):
        return DaliAsyncLoaderRunner(settings, num_classes)
    if key in ("loader", "loader_paper"):
        return DaliLoaderRunner(settings, num_classes, AUGMENTS[key])
    if key == "dynamic":
        return DynamicRunner(settings, num_classes)
    if key == "after_loader":
        return AfterLoaderRunner(settings, num_classes, torchvision_mixer(settings.mix, num_classes))
    if key == "after_loader_timm":
        return AfterLoaderRunner(settings, num_classes, timm_mixer(settings.mix, num_classes, settings.batch_size))
    if key in REFERENCE_BACKENDS:
        return ReferenceRunner(settings, num_classes, REFERENCE_BACKENDS[key], variant_options(key, settings.augment))
    if key in TIMM_LOADERS:
        return TimmLoaderRunner(settings, num_classes, TIMM_LOADERS[key])
    if key == ISOLATED:
        return StageAloneRunner(settings, num_classes)
    for method in STAGE_METHODS:
        if key == stage_key(method):
            return StageAloneRunner(settings, num_classes, options=method_options(settings, method))
    raise UserError(f"variant must be one of {VARIANT_KEYS + EXTRA_KEYS} or a stage's async key, got {key!r}")


def runner_keys(settings: ProfileSettings) -> Tuple[str, ...]:
    """The runners a run times, in forward order: :data:`~.variants.VARIANT_KEYS`, each of
    :data:`~.variants.ASYNC_TWINS` followed by its asynchronous twin when ``settings.times_async_stages``, then
    :data:`EXTRA_KEYS` (the stage alone, with the settings' options and with each method)."""
    keys = []
    for key in VARIANT_KEYS:
        keys.append(key)
        if key in ASYNC_TWINS and settings.times_async_stages:
            keys.append(async_key(key))
    return tuple(keys) + EXTRA_KEYS


def make_runners(settings: ProfileSettings, num_classes: int, progress: Callable[[str], None] = quiet
                 ) -> Tuple[Dict[str, Runner], Dict[str, str]]:
    """``(runners, skipped)``: the runner of every key of :func:`runner_keys` (each warmed up, in that order)
    that can be measured here, and for each that cannot, why (:class:`~.timing.VariantUnavailable`). If one fails
    to build otherwise, those already built are closed."""
    runners: Dict[str, Runner] = {}
    skipped: Dict[str, str] = {}
    try:
        for key in runner_keys(settings):
            progress(f"building variant {key}")
            try:
                runners[key] = make_runner(key, settings, num_classes)
            except VariantUnavailable as e:
                skipped[key] = str(e)
                progress(f"skipping variant {key}: {e}")
    except BaseException:
        for runner in runners.values():
            runner.close()
        raise
    return runners, skipped
