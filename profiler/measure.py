"""The throughput profiler behind ``dali-cutmix profile``: our pipeline stage by stage, against torchvision.

Six variants, measured in one run, interleaved so that machine drift hits all of them alike:

1. ``decode``    read + decode (full-image decode, ``decoders.image``);
2. ``crop``      read + decode with random-resized-crop (``decoders.image_random_crop``, ROI decoding) + resize,
                 the head of our training pipeline;
3. ``cutmix``    + the CutMix stage (:func:`dali_cutmix.cutmix`);
4. ``full``      + flip/normalize (``crop_mirror_normalize``): the whole training pipeline;
5. ``loader``    the whole pipeline through :class:`dali_cutmix.CutMixLoader`, to torch tensors;
6. ``reference`` torchvision ImageFolder + DataLoader (workers = DALI threads) + v2 RandomResizedCrop/flip/
                 normalize + v2.CutMix in the collate function, to torch tensors (:mod:`dali_cutmix.pipelines.reference`).

How it measures (see ``benchmarks/README.md``):

* Every DALI variant makes one batch at a time (``exec_pipelined=False, prefetch_queue_depth=1``; the executor
  stays DALI's dynamic one, as in :func:`build_cutmix_pipeline`): ``run()`` returns when its batch is done and
  nothing is left running, so one variant's prefetching never steals cores from the next one being timed. The
  PyTorch iterator schedules one batch ahead; :class:`DaliLoaderRunner` waits for it, untimed, after each run.
* The reference keeps its workers (``persistent_workers``; start-up is not timed). Each of its timed runs is one
  epoch of ``1 + N + prefetch`` batches: the first batch is untimed (the workers' queues filling), the next N
  (a multiple of the worker count) are timed in steady state, and the last ``prefetch_factor * workers``
  batches, already in flight when the clock stops, are drained untimed so the workers are idle before the
  next variant starts.
* CutMix's cost is also timed on its own each round (``cutmix_stage``): one fixed batch of crops through a
  pipeline with and without the stage. Its ms per batch over the full pipeline's is ``cutmix_share``; the
  difference of variants 3 and 2 (``by_stage_difference``) says the same with the noise of two decodes.
* A round times every variant once; rounds alternate forward and reversed order (A B C ... C B A), which
  cancels linear drift; figures are medians over the rounds with their interquartile range. Paired figures
  (CutMix's share, the speed-up over the reference) are computed within each round, then summarized.

Stages 1-4 are built here from the pieces :func:`dali_cutmix.build_cutmix_pipeline` is made of (``reader``,
``decode_random_crop``, ``mix``, ``flip_normalize``); ``tests/test_profile.py`` checks that the ``full`` variant
yields exactly the builder's batches.
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from dali_cutmix.pipelines.profile_data import _noop, dataset_summary

SCHEMA = "dali-cutmix-profile/1"
DEVICES = ("cpu", "gpu")
MODELS = ("resnet18", "resnet50")


@dataclass(frozen=True)
class Variant:
    """One measured variant: ``key`` (JSON), ``label`` (table, chart) and what it does."""

    key: str
    label: str
    description: str


VARIANTS: Tuple[Variant, ...] = (
    Variant("decode", "1 read + decode", "file reader + full-image JPEG decode (decoders.image)"),
    Variant("crop", "2 + random-resized-crop",
            "file reader + decoders.image_random_crop (ROI decode) + resize to the crop"),
    Variant("cutmix", "3 + CutMix", "stage 2 + dali_cutmix.cutmix (mixed images, soft labels)"),
    Variant("full", "4 + flip/normalize (full)",
            "stage 3 + crop_mirror_normalize: the whole build_cutmix_pipeline graph"),
    Variant("loader", "5 full -> torch (CutMixLoader)", "the full pipeline through CutMixLoader to torch tensors"),
    Variant("reference", "6 torchvision reference",
            "ImageFolder + DataLoader (workers = threads) + v2 RandomResizedCrop/flip/normalize + v2.CutMix "
            "in collate_fn, to torch tensors"),
)
VARIANT_KEYS = tuple(v.key for v in VARIANTS)
STAGES = ("decode", "crop", "cutmix", "full")
ISOLATED = "cutmix_stage"  # the CutMix stage alone, on a fixed batch (see IsolatedStageRunner)
ISOLATED_BATCH_FACTOR = 3  # it is cheap: time it on more batches than the variants
LOAD = "machine_load"  # measure_variants' record of other processes' CPU use (see CpuLoadMeter)
DEFAULT_CPU_TARGETS = dict(speedup=2.0, cutmix_share=0.03)
DEFAULT_GPU_TARGETS = dict(cutmix_share=0.01, full_images_per_s=8000.0, batch_size=256)


@dataclass(frozen=True)
class ProfileSettings:
    """What to measure and how.

    Attributes:
        data: class-per-folder JPEG tree ``data/<class>/<image>``.
        device: "cpu" or "gpu" (DALI decodes on "mixed" and runs the rest on the GPU).
        batch_size: samples per batch. threads: DALI CPU threads, and the reference's DataLoader workers.
        batches: timed batches per variant per round. repeats: rounds (every variant timed once per round).
        crop: output size. seed: base seed. device_id: the CUDA device for "gpu".
        cutmix_alpha, mixup_alpha, switch_prob, mode: the mixing stage's options (:func:`dali_cutmix.mix`);
            the default is CutMix alone, per batch (the paper's).
    """

    data: str
    device: str = "cpu"
    batch_size: int = 64
    threads: int = 2
    batches: int = 8
    repeats: int = 15
    crop: int = 224
    seed: int = 0
    device_id: int = 0
    cutmix_alpha: float = 1.0
    mixup_alpha: float = 0.0
    switch_prob: float = 0.5
    mode: str = "batch"

    def mix_options(self, num_classes: int) -> dict:
        """Keyword arguments of :func:`dali_cutmix.mix` for these settings."""
        return dict(num_classes=num_classes, cutmix_alpha=self.cutmix_alpha, mixup_alpha=self.mixup_alpha,
                    switch_prob=self.switch_prob, mode=self.mode)

    def check(self) -> "ProfileSettings":
        """Return self if every field is valid; raise ValueError naming the first bad one."""
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        for name in ("batch_size", "threads", "batches", "repeats", "crop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        from dali_cutmix.options import check_options

        check_options(**self.mix_options(1))
        return self


# --------------------------------------------------------------------------------------------------------------
# The variants.

def build_stage_pipeline(stage: str, settings: ProfileSettings, num_classes: int, *, synchronous: bool = True):
    """The training pipeline cut after ``stage`` (one of :data:`STAGES`), built and ready to ``run()``.

    The graph, its arguments and its seeds are those of :func:`dali_cutmix.build_cutmix_pipeline` with the
    settings' mixing options (flip, ImageNet mean/std, float32). ``synchronous`` makes one
    batch per ``run()`` with no prefetching (``exec_async=False, exec_pipelined=False, prefetch_queue_depth=1``;
    the dynamic executor still runs operators on its threads, but ``run()`` returns only when the batch is done).
    Outputs: images and labels (integer ids before the CutMix stage, soft labels from it on).
    """
    from nvidia.dali import pipeline_def
    import nvidia.dali.fn as fn

    from dali_cutmix import mix
    from dali_cutmix.pipeline import decode_random_crop, decoder_args, flip_normalize, reader

    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    depth = STAGES.index(stage)

    @pipeline_def(enable_conditionals=False)
    def stage_pipeline():
        jpegs, labels = reader(settings.data, shuffle=True, seed=settings.seed)
        if depth == 0:
            return fn.decoders.image(jpegs, **decoder_args(settings.device)), labels
        images = decode_random_crop(jpegs, device=settings.device, crop=(settings.crop, settings.crop))
        if depth == 1:
            return images, labels
        images, targets = mix(images, labels, **settings.mix_options(num_classes))
        if depth == 2:
            return images, targets
        return flip_normalize(images), targets

    mode = dict(exec_async=False, exec_pipelined=False, prefetch_queue_depth=1) if synchronous else {}
    pipe = stage_pipeline(batch_size=settings.batch_size, num_threads=settings.threads,
                          device_id=settings.device_id if settings.device == "gpu" else None,
                          seed=settings.seed * 1_000_003 + 1, exec_dynamic=True, **mode)
    pipe.build()
    return pipe


def build_isolated_stage_pipeline(settings: ProfileSettings, num_classes: int, *, with_cutmix: bool):
    """The pipeline's tail on one fixed batch: crops -> [CutMix ->] flip/normalize, one batch per ``run()``.

    The batch (random uint8 HWC ``crop`` x ``crop`` images and class ids) is handed to DALI without a copy (on
    the GPU for "gpu"). With and without the stage, the images reach ``crop_mirror_normalize`` as in the full
    pipeline, so the pair's time difference is what the stage adds there, free of decoding's noise.
    """
    from nvidia.dali import pipeline_def
    import nvidia.dali.fn as fn

    from dali_cutmix import mix
    from dali_cutmix.pipeline import flip_normalize

    rng = np.random.default_rng(settings.seed)
    shape = (settings.batch_size, settings.crop, settings.crop, 3)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    labels = rng.integers(0, num_classes, (settings.batch_size, 1), dtype=np.int32)
    gpu = settings.device == "gpu"
    if gpu:
        import torch

        images = torch.from_numpy(images).cuda(settings.device_id)

    @pipeline_def(enable_conditionals=False)
    def isolated_stage():
        pixels = fn.external_source(source=lambda: images, batch=True, no_copy=True, layout="HWC",
                                    device="gpu" if gpu else "cpu")
        ids = fn.external_source(source=lambda: labels, batch=True, no_copy=True)
        if with_cutmix:
            pixels, ids = mix(pixels, ids, **settings.mix_options(num_classes))
        return flip_normalize(pixels), ids

    pipe = isolated_stage(batch_size=settings.batch_size, num_threads=settings.threads,
                          device_id=settings.device_id if gpu else None, seed=settings.seed * 1_000_003 + 1,
                          exec_async=False, exec_pipelined=False, prefetch_queue_depth=1, exec_dynamic=True)
    pipe.build()
    return pipe


class IsolatedStageRunner:
    """Times what the CutMix stage adds: the same fixed batch through the pipeline's tail with and without it."""

    def __init__(self, settings: ProfileSettings, num_classes: int):
        self.device = settings.device
        self.pipes = [build_isolated_stage_pipeline(settings, num_classes, with_cutmix=w) for w in (False, True)]
        for pipe in self.pipes:
            pipe.run()
        _synchronize(self.device)
        self._flip = False

    def _time(self, pipe, batches: int) -> float:
        start = time.perf_counter()
        for _ in range(batches):
            pipe.run()
        _synchronize(self.device)
        return time.perf_counter() - start

    def measure(self, batches: int) -> float:
        """Milliseconds per batch that the stage adds (``batches`` batches each way, alternating which first)."""
        self._flip = not self._flip
        order = self.pipes if self._flip else self.pipes[::-1]
        seconds = {id(pipe): self._time(pipe, batches) for pipe in order}
        return 1000 * (seconds[id(self.pipes[1])] - seconds[id(self.pipes[0])]) / batches

    def close(self) -> None:
        """Free the pipelines."""
        self.pipes = []


def _synchronize(device: str) -> None:
    """Wait for the GPU's queued work (no-op on the CPU)."""
    if device == "gpu":
        import torch

        torch.cuda.synchronize()


def wait_until_idle(device: str, window_s: float = 0.02, timeout_s: float = 10.0) -> None:
    """Return once this process's threads (DALI's included) have been idle for two windows of ``window_s``.

    DALI has no "wait until idle" call; a batch the PyTorch iterator scheduled ahead is still being made when
    the last timed batch is handed over. Idle means less than 10% of one core used during a window; the GPU
    is synchronized before and after. Gives up after ``timeout_s`` (the machine may be that busy).
    """
    _synchronize(device)
    deadline = time.perf_counter() + timeout_s
    quiet = 0
    while quiet < 2 and time.perf_counter() < deadline:
        cpu = time.process_time()
        time.sleep(window_s)
        quiet = quiet + 1 if time.process_time() - cpu < 0.1 * window_s else 0
    _synchronize(device)


class DaliStageRunner:
    """Times a synchronous stage pipeline: :meth:`measure` runs batches, nothing is left running afterwards."""

    def __init__(self, stage: str, settings: ProfileSettings, num_classes: int):
        self.device = settings.device
        self.batch_size = settings.batch_size
        self.pipe = build_stage_pipeline(stage, settings, num_classes)
        self.pipe.run()  # first batch: allocations
        _synchronize(self.device)

    def measure(self, batches: int) -> Tuple[float, int]:
        """Run ``batches`` batches; returns (seconds, images)."""
        start = time.perf_counter()
        for _ in range(batches):
            self.pipe.run()
        _synchronize(self.device)
        return time.perf_counter() - start, batches * self.batch_size

    def close(self) -> None:
        """Free the pipeline."""
        self.pipe = None


class DaliLoaderRunner:
    """Times the full pipeline through :class:`dali_cutmix.CutMixLoader` to torch tensors.

    The pipeline makes one batch at a time, but the PyTorch iterator schedules the next batch as it hands one
    over (one batch of look-ahead, as in training). So each :meth:`measure` first takes the batch made ahead
    after the previous run (untimed), times ``batches`` batches, then waits, untimed, for the batch scheduled
    ahead to finish (:func:`wait_until_idle`): no work spills into the next variant's timing.
    """

    def __init__(self, settings: ProfileSettings, num_classes: int):
        from dali_cutmix import CutMixLoader

        self.device = settings.device
        self.loader = CutMixLoader(build_stage_pipeline("full", settings, num_classes), last_batch="fill")
        self._iter = iter(self.loader)
        self._next()  # first batch: allocations
        wait_until_idle(self.device)

    def _next(self):
        """The next batch, starting a new epoch when one ends."""
        try:
            return next(self._iter)
        except StopIteration:
            self._iter = iter(self.loader)
            return next(self._iter)

    def measure(self, batches: int) -> Tuple[float, int]:
        """Take ``batches`` batches of torch tensors; returns (seconds, images)."""
        self._next()  # made ahead while nothing was timed: not counted
        images = 0
        start = time.perf_counter()
        for _ in range(batches):
            images += int(self._next()[0].shape[0])
        _synchronize(self.device)
        seconds = time.perf_counter() - start
        wait_until_idle(self.device)
        return seconds, images

    def close(self) -> None:
        """Free the loader and its pipeline."""
        self._iter = self.loader = None


class ReferenceRunner:
    """Times the torchvision reference loader in steady state, leaving its workers idle after each run.

    Each :meth:`measure` is one epoch: 1 untimed batch, ``timed`` batches (``batches`` rounded up to a multiple
    of the workers, so that a run starts and ends on the same phase of the workers' round), then the batches
    already in flight (``prefetch_factor * workers``) drained untimed.
    """

    PREFETCH_FACTOR = 2

    def __init__(self, settings: ProfileSettings, num_classes: int, batches: int):
        import torch
        from torch.utils.data import RandomSampler

        from dali_cutmix.pipelines.reference import build_reference_loader, reference_dataset

        workers = settings.threads
        self.device = settings.device
        self.timed = -(-batches // workers) * workers
        self.epoch = 1 + self.timed + self.PREFETCH_FACTOR * workers
        dataset = reference_dataset(settings.data, settings.crop)
        sampler = RandomSampler(dataset, num_samples=self.epoch * settings.batch_size,
                                generator=torch.Generator().manual_seed(settings.seed))
        self.loader = build_reference_loader(
            settings.data, batch_size=settings.batch_size, num_workers=workers, crop=settings.crop,
            num_classes=num_classes, sampler=sampler, prefetch_factor=self.PREFETCH_FACTOR,
            pin_memory=self.device == "gpu", seed=settings.seed)
        self._run(1)  # start the workers (not timed)

    def _to_device(self, batch):
        """Move a batch to the GPU for "gpu" (what a training loop does with it); returns its size."""
        if self.device == "gpu":
            batch = [t.cuda(non_blocking=True) for t in batch]
        return int(batch[0].shape[0])

    def _run(self, timed: int) -> Tuple[float, int]:
        iterator = iter(self.loader)
        self._to_device(next(iterator))
        images = 0
        start = time.perf_counter()
        for _ in range(timed):
            images += self._to_device(next(iterator))
        _synchronize(self.device)
        seconds = time.perf_counter() - start
        for batch in iterator:  # drain the batches in flight: the workers end idle
            self._to_device(batch)
        return seconds, images

    def measure(self, batches: int) -> Tuple[float, int]:
        """One epoch; returns (seconds, images) of its timed batches (``self.timed`` of them, not ``batches``)."""
        return self._run(self.timed)

    def close(self) -> None:
        """Stop the workers."""
        self.loader = None


def make_runners(settings: ProfileSettings, num_classes: int, progress: Callable[[str], None] = _noop) -> dict:
    """Build every variant's runner (each warmed up), keyed as :data:`VARIANT_KEYS`, plus :data:`ISOLATED`."""
    runners = {}
    for key in STAGES:
        progress(f"building variant {key}")
        runners[key] = DaliStageRunner(key, settings, num_classes)
    progress("building variant loader")
    runners["loader"] = DaliLoaderRunner(settings, num_classes)
    progress("starting the reference's DataLoader workers")
    runners["reference"] = ReferenceRunner(settings, num_classes, settings.batches)
    progress("building the isolated CutMix stage")
    runners[ISOLATED] = IsolatedStageRunner(settings, num_classes)
    return runners


class CpuLoadMeter:
    """How busy the machine was with *other* processes while the profiler ran (Linux ``/proc/stat``).

    ``other_cpu_share`` = (all CPU time used on the machine - this process's and its reaped children's)
    / (wall time x cores): 0 on an otherwise idle machine, 0.5 when others kept one of two cores busy.
    """

    def __init__(self):
        self._start = self._sample()

    @staticmethod
    def _busy_seconds() -> Optional[float]:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def _sample(self):
        t = os.times()
        return (time.perf_counter(), self._busy_seconds(),
                t.user + t.system + t.children_user + t.children_system, os.getloadavg()[0])

    def stop(self) -> Dict[str, Optional[float]]:
        """Figures since construction: ``other_cpu_share``, ``own_cpu_s``, ``wall_s``, ``loadavg_1min``."""
        import gc

        gc.collect()  # reap finished DataLoader workers so their CPU time counts as ours
        end = self._sample()
        wall, own = end[0] - self._start[0], end[2] - self._start[2]
        other = None
        if end[1] is not None and self._start[1] is not None and wall > 0:
            other = max(0.0, (end[1] - self._start[1]) - own) / (wall * (os.cpu_count() or 1))
        return dict(other_cpu_share=other, own_cpu_s=round(own, 2), wall_s=round(wall, 2),
                    loadavg_1min_start=self._start[3], loadavg_1min_end=end[3])


def round_order(round_index: int) -> Tuple[str, ...]:
    """Order of a round: forward on even rounds, reversed on odd ones (ABBA, cancels linear drift).

    The isolated CutMix stage (:data:`ISOLATED`) is timed last in forward rounds, first in reversed ones.
    """
    keys = VARIANT_KEYS + (ISOLATED,)
    return keys if round_index % 2 == 0 else keys[::-1]


def measure_variants(settings: ProfileSettings, progress: Callable[[str], None] = _noop
                     ) -> Dict[str, List[float]]:
    """Time every variant once per round, for ``settings.repeats`` interleaved rounds.

    Returns ``{key: [images/s per round]}`` for :data:`VARIANT_KEYS`, ``{ISOLATED: [ms per batch the
    CutMix stage adds, per round]}`` (timed on ``ISOLATED_BATCH_FACTOR * batches`` batches each way) and
    ``{LOAD: CpuLoadMeter.stop()'s dict}`` (how busy other processes kept the machine meanwhile).
    """
    from dali_cutmix.data import count_classes

    settings.check()
    meter = CpuLoadMeter()
    runners = make_runners(settings, count_classes(settings.data), progress)
    samples: Dict[str, List[float]] = {key: [] for key in VARIANT_KEYS + (ISOLATED,)}
    try:
        for r in range(settings.repeats):
            for key in round_order(r):
                if key == ISOLATED:
                    samples[key].append(runners[key].measure(ISOLATED_BATCH_FACTOR * settings.batches))
                else:
                    seconds, images = runners[key].measure(settings.batches)
                    samples[key].append(images / seconds)
            progress(f"round {r + 1}/{settings.repeats}: " + ", ".join(
                f"{key} {samples[key][-1]:,.0f}" for key in VARIANT_KEYS) + " images/s; CutMix stage "
                f"{samples[ISOLATED][-1]:.2f} ms/batch")
    finally:
        for runner in runners.values():
            runner.close()
    samples[LOAD] = meter.stop()
    return samples


# --------------------------------------------------------------------------------------------------------------
# Statistics.

def summarize(values: Sequence[float]) -> Dict[str, float]:
    """Median, quartiles, min, max and n of ``values``; ``iqr_pct`` is the IQR as a percentage of the median."""
    v = np.asarray(values, dtype=np.float64)
    q1, median, q3 = np.percentile(v, [25, 50, 75])
    return dict(median=float(median), q1=float(q1), q3=float(q3), min=float(v.min()), max=float(v.max()),
                n=int(v.size), iqr_pct=float(100 * (q3 - q1) / median) if median else float("nan"))


def cutmix_shares(samples: Dict[str, List[float]]) -> List[float]:
    """CutMix's share of the full pipeline's time per image, per round: ``(1/cutmix - 1/crop) / (1/full)``."""
    return [(1 / c - 1 / p) * f for p, c, f in zip(samples["crop"], samples["cutmix"], samples["full"])]


def isolated_shares(samples: Dict[str, List[float]], batch_size: int) -> List[float]:
    """The isolated CutMix stage's ms per batch over the full pipeline's ms per batch, per round."""
    return [ms / (1000 * batch_size / full) for ms, full in zip(samples[ISOLATED], samples["full"])]


def speedups(samples: Dict[str, List[float]]) -> List[float]:
    """Our loader's images/s over the reference's, per round."""
    return [ours / ref for ours, ref in zip(samples["loader"], samples["reference"])]


# --------------------------------------------------------------------------------------------------------------
# The training step (``--model``).

def make_train_step(model_name: str, num_classes: int, device: str):
    """A ``step(images, targets)`` doing one SGD training step of a torchvision ``model_name``.

    On the GPU: channels-last, bfloat16 autocast (as a training run would); on the CPU: float32.
    """
    import torch
    import torchvision

    from dali_cutmix import soft_target_cross_entropy

    if model_name not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model_name!r}")
    gpu = device == "gpu"
    model = torchvision.models.get_model(model_name, weights=None, num_classes=num_classes)
    if gpu:
        model = model.cuda().to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def step(images, targets):
        if gpu:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda" if gpu else "cpu", dtype=torch.bfloat16, enabled=gpu):
            loss = soft_target_cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def measure_training(settings: ProfileSettings, model_name: str, steps: int, warmup: int = 1,
                     torch_threads: Optional[int] = None, progress: Callable[[str], None] = _noop
                     ) -> Dict[str, object]:
    """Training-step throughput of ``model_name`` fed by our loader, and the share of time waiting for data.

    The loader is the real thing, :func:`build_cutmix_pipeline` + :class:`CutMixLoader` with its default
    asynchronous prefetching (it overlaps the model's step). Each timed step is split into waiting for the
    next batch and the model's forward/backward/update (``compute``); ``warmup`` steps come first, untimed.
    ``torch_threads`` sets PyTorch's intra-op threads for the run (default: PyTorch's own choice); on a CPU
    they share the cores with DALI's threads.
    """
    import torch

    from dali_cutmix.data import count_classes

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if torch_threads is not None and (isinstance(torch_threads, bool) or not isinstance(torch_threads, int)
                                      or torch_threads < 1):
        raise ValueError(f"torch_threads must be an integer >= 1, got {torch_threads!r}")
    num_classes = count_classes(settings.data)
    threads_before = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    try:
        return _train_and_time(settings, model_name, num_classes, steps, warmup, progress)
    finally:
        torch.set_num_threads(threads_before)


def _train_and_time(settings: ProfileSettings, model_name: str, num_classes: int, steps: int, warmup: int,
                    progress: Callable[[str], None]) -> Dict[str, object]:
    """The body of :func:`measure_training`: run the steps, split each into data wait and compute."""
    import torch

    from dali_cutmix import CutMixLoader, build_cutmix_pipeline

    step = make_train_step(model_name, num_classes, settings.device)
    pipe = build_cutmix_pipeline(settings.data, batch_size=settings.batch_size, crop=settings.crop,
                                 device=settings.device, device_id=settings.device_id,
                                 num_threads=settings.threads, seed=settings.seed, alpha=settings.cutmix_alpha,
                                 mixup_alpha=settings.mixup_alpha, switch_prob=settings.switch_prob,
                                 mode=settings.mode)
    loader = CutMixLoader(pipe, last_batch="fill")
    iterator = iter(loader)

    def next_batch():
        nonlocal iterator
        try:
            return next(iterator)
        except StopIteration:
            iterator = iter(loader)
            return next(iterator)

    waits, totals = [], []
    for i in range(warmup + steps):
        start = time.perf_counter()
        images, targets = next_batch()[:2]
        _synchronize(settings.device)
        got = time.perf_counter()
        step(images, targets)
        _synchronize(settings.device)
        end = time.perf_counter()
        kind = "warm-up step" if i < warmup else f"step {i + 1 - warmup}/{steps}"
        progress(f"{model_name} {kind}: {1000 * (end - start):,.0f} ms ({1000 * (got - start):,.0f} ms waiting "
                 "for data)")
        if i >= warmup:
            waits.append(got - start)
            totals.append(end - start)
    computes = [t - w for t, w in zip(totals, waits)]
    return dict(model=model_name, steps=steps, warmup_steps=warmup, batch_size=settings.batch_size,
                torch_threads=torch.get_num_threads(), dali_threads=settings.threads,
                images_per_s=settings.batch_size * len(totals) / sum(totals),
                step_ms=summarize([1000 * t for t in totals]),
                data_wait_share=sum(waits) / sum(totals),
                data_wait_ms=summarize([1000 * t for t in waits]),
                compute_ms=summarize([1000 * t for t in computes]),
                compute_only_images_per_s=settings.batch_size * len(computes) / sum(computes),
                loader="build_cutmix_pipeline + CutMixLoader (asynchronous, prefetch_queue_depth=2)")


# --------------------------------------------------------------------------------------------------------------
# The run.

def build_result(settings: ProfileSettings, samples: Dict[str, List[float]], *, dataset: dict,
                 training: Optional[dict] = None, command: Optional[str] = None, seconds: float = 0.0) -> dict:
    """Everything the run found, as one JSON-ready dict (see ``benchmarks/README.md`` for the keys)."""
    from .report import evaluate_targets, machine_info

    shares, differences = isolated_shares(samples, settings.batch_size), cutmix_shares(samples)
    variants = {}
    for v in VARIANTS:
        ips = summarize(samples[v.key])
        variants[v.key] = dict(label=v.label, description=v.description, images_per_s=ips,
                               ms_per_batch=1000 * settings.batch_size / ips["median"],
                               samples=[round(x, 2) for x in samples[v.key]])
    result = dict(
        schema=SCHEMA,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=command, seconds=round(seconds, 1), machine=machine_info(), settings=asdict(settings),
        dataset=dataset,
        method=dict(
            dali="one batch at a time (exec_pipelined=False, prefetch_queue_depth=1, dynamic executor): nothing "
                 "runs in the background between timed runs; the loader's batch scheduled ahead is awaited "
                 "untimed after each run and taken untimed before the next",
            reference=f"persistent workers = threads, prefetch_factor {ReferenceRunner.PREFETCH_FACTOR}; per run "
                      "one epoch: 1 untimed batch, the timed batches, the in-flight batches drained untimed",
            order="rounds alternate forward and reversed variant order (ABBA); medians and quartiles over rounds",
            cutmix_share="per round: the isolated stage's ms/batch over the full pipeline's ms/batch; "
                         "by_stage_difference: per round (1/ips_cutmix - 1/ips_crop) / (1/ips_full); then median "
                         "and quartiles over rounds"),
        machine_load=samples.get(LOAD),
        variants=variants,
        cutmix_share=dict(
            summarize(shares), samples=[round(x, 5) for x in shares],
            stage_ms_per_batch=dict(summarize(samples[ISOLATED]), samples=[round(x, 3) for x in samples[ISOLATED]]),
            by_stage_difference=dict(summarize(differences), samples=[round(x, 5) for x in differences])),
        loader_vs_reference=dict(summarize(speedups(samples)), samples=[round(x, 4) for x in speedups(samples)]),
        training=training,
    )
    result["targets"] = evaluate_targets(result)
    return result


def run_profile(settings: ProfileSettings, *, model: Optional[str] = None, steps: int = 5,
                torch_threads: Optional[int] = None, progress: Callable[[str], None] = _noop,
                command: Optional[str] = None) -> dict:
    """Measure every variant (and the training step with ``model``); returns :func:`build_result`'s dict."""
    settings.check()
    if model is not None and model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    start = time.perf_counter()
    dataset = dataset_summary(settings.data)
    progress(f"data: {dataset['images']} images in {dataset['classes']} classes, "
             f"~{dataset['mean_file_kb']} KB, ~{dataset['mean_width']:.0f}x{dataset['mean_height']:.0f}")
    samples = measure_variants(settings, progress)
    training = (measure_training(settings, model, steps, torch_threads=torch_threads, progress=progress)
                if model else None)
    return build_result(settings, samples, dataset=dataset, training=training, command=command,
                        seconds=time.perf_counter() - start)
