"""timm's own loader, the peer timm users take: ``timm.data.create_loader`` over an ``ImageDataset`` with
``FastCollateMixup`` (CutMix/MixUp in the collate function, on the uint8 batch) and its ``PrefetchLoader``
(``use_prefetcher=True``: normalization and the float cast on the loader's device)."""

from __future__ import annotations

import time

from .mixers import TIMM_INSTALL
from .settings import ProfileSettings
from .timing import Timing, VariantUnavailable, synchronize


def timm_data_module():
    """``timm.data``; raises VariantUnavailable (how to install it) when timm cannot be imported."""
    try:
        import timm.data
    except ImportError as e:
        raise VariantUnavailable(f"timm is not installed ({e}); {TIMM_INSTALL}") from None
    return timm.data


class RepeatedDataset:
    """``dataset`` read ``length`` times per epoch (index modulo its size), so that an epoch has a fixed number
    of batches whatever the data set's size. ``transform`` is the wrapped dataset's (timm's loader sets it)."""

    def __init__(self, dataset, length: int):
        self.dataset, self.length = dataset, length

    @property
    def transform(self):
        return self.dataset.transform

    @transform.setter
    def transform(self, value):
        self.dataset.transform = value

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        return self.dataset[index % len(self.dataset)]


class TimmLoaderRunner:
    """Times timm's loader in steady state, leaving its workers idle after each run, as
    :class:`~.runners.ReferenceRunner` does: each :meth:`measure` is one epoch of 1 untimed batch, ``timed``
    batches (``settings.batches`` rounded up to a multiple of the workers) and the batches in flight drained
    untimed.

    The loader is ``create_loader(ImageDataset(data), input_size=(3, crop, crop), batch_size, is_training=True,
    use_prefetcher=True, num_workers=threads, collate_fn=FastCollateMixup(...), device=...)``; the collate takes
    every mixing option of the settings with ``mode`` (timm's "batch" or "elem"), ``label_smoothing`` and
    ``num_classes``. ``timm_data`` stands in for ``timm.data`` (the tests' fake); default: timm's.

    Raises:
        VariantUnavailable: timm is not installed, the data are tar shards, or the batch size is odd
            (FastCollateMixup asks for an even batch).
    """

    PREFETCH_FACTOR = 2

    def __init__(self, settings: ProfileSettings, num_classes: int, mode: str, timm_data=None):
        import torch

        from dali_cutmix.shard_reader import is_shard_folder

        data = timm_data_module() if timm_data is None else timm_data
        if is_shard_folder(settings.data):
            raise VariantUnavailable("timm's ImageDataset reads class folders here, not tar shards")
        if settings.batch_size % 2:
            raise VariantUnavailable(f"timm's FastCollateMixup needs an even batch size, got {settings.batch_size}")
        mix = settings.mix
        workers = settings.threads
        self.device = settings.device
        self.timed = -(-settings.batches // workers) * workers
        epoch = 1 + self.timed + self.PREFETCH_FACTOR * workers
        collate = data.FastCollateMixup(
            mixup_alpha=mix.mixup_alpha, cutmix_alpha=mix.cutmix_alpha,
            cutmix_minmax=None if mix.cutmix_minmax is None else list(mix.cutmix_minmax), prob=mix.prob,
            switch_prob=mix.switch_prob, mode=mode, correct_lam=mix.correct_lam,
            label_smoothing=mix.label_smoothing, num_classes=num_classes)
        dataset = RepeatedDataset(data.ImageDataset(str(settings.data)), epoch * settings.batch_size)
        torch.manual_seed(settings.seed)
        self.loader = data.create_loader(
            dataset, input_size=(3, settings.crop, settings.crop), batch_size=settings.batch_size,
            is_training=True, use_prefetcher=True, num_workers=workers, collate_fn=collate,
            pin_memory=self.device == "gpu", persistent_workers=True,
            device=torch.device("cuda", settings.device_id) if self.device == "gpu" else torch.device("cpu"))
        self.run_epoch()  # start the workers (not timed)

    def run_epoch(self) -> Timing:
        """One epoch; the timing of its ``timed`` batches (images and targets on the loader's device)."""
        iterator = iter(self.loader)
        next(iterator)
        images = 0
        start = time.perf_counter()
        for _ in range(self.timed):
            images += int(next(iterator)[0].shape[0])
        synchronize(self.device)
        seconds = time.perf_counter() - start
        for _ in iterator:  # drain the batches in flight: the workers end idle
            pass
        return Timing(seconds, images)

    def measure(self, batches: int) -> Timing:
        """One epoch: the timing of ``self.timed`` batches (``settings.batches`` rounded up), not ``batches``."""
        return self.run_epoch()

    def close(self) -> None:
        """Stop the workers."""
        self.loader = None
