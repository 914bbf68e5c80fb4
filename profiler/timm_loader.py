"""timm's own loader, the peer timm users take: ``timm.data.create_loader`` over an ``ImageDataset`` with
``FastCollateMixup`` (CutMix/MixUp in the collate function, on the uint8 batch) and its ``PrefetchLoader``
(``use_prefetcher=True``: normalization and the float cast on the loader's device)."""

from __future__ import annotations

from dali_cutmix.helpers.workers import worker_context

from .mixers import TIMM_INSTALL
from .settings import ProfileSettings
from .timing import Timing, VariantUnavailable, time_epoch


#: ``create_loader``'s augmentation arguments that make timm's train transform ours (random-resized-crop with
#: timm's default scale and ratio, bilinear; a horizontal flip with probability 0.5; normalize): each of timm's
#: defaults that adds work ours does not do, set off. timm's ``color_jitter`` default 0.4 adds torchvision's
#: ColorJitter on the PIL image; RandAugment (``auto_augment``), random erasing (``re_prob``), vertical flips,
#: grayscale and blur are off by default and stay off.
AUGMENTATION = dict(color_jitter=None, auto_augment=None, re_prob=0.0, vflip=0.0, hflip=0.5,
                    grayscale_prob=0.0, gaussian_blur_prob=0.0, interpolation="bilinear")


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
    """Times timm's loader (persistent workers = threads), one epoch of exactly the batches asked for per
    :meth:`measure`, from idle to idle (:func:`~.timing.time_epoch`), as :class:`~.runners.ReferenceRunner` does:
    the data set's length is set to the epoch's samples before each epoch (timm's training sampler draws that many
    indices).

    The loader is ``create_loader(ImageDataset(data), input_size=(3, crop, crop), batch_size, is_training=True,
    use_prefetcher=True, num_workers=threads, collate_fn=FastCollateMixup(...), device=..., **augmentation)``,
    with ``augmentation`` the arguments of our pipeline's augmentation (:data:`AUGMENTATION`): timm's defaults
    add work ours does not do (``color_jitter=0.4``), so each is set to what ours does. The collate takes every
    mixing option of the settings with ``mode`` (timm's "batch" or "elem"), ``label_smoothing`` and
    ``num_classes``. ``timm_data`` stands in for ``timm.data`` (the tests' fake); default: timm's.

    Raises:
        VariantUnavailable: timm is not installed, the settings' augmentation is on (``settings.augment``: no
            timm arguments are matched to it here), the data are tar shards, or the batch size is odd
            (FastCollateMixup asks for an even batch).
    """

    def __init__(self, settings: ProfileSettings, num_classes: int, mode: str, timm_data=None):
        import torch

        from dali_cutmix.shard_reader import is_shard_folder

        data = timm_data_module() if timm_data is None else timm_data
        if settings.augment.active:
            raise VariantUnavailable("timm's loader is matched to our pipeline without augmentation only (crop, "
                                     "flip, normalize); the settings' augmentation has no timm equivalent here")
        if is_shard_folder(settings.data):
            raise VariantUnavailable("timm's ImageDataset reads class folders here, not tar shards")
        if settings.batch_size % 2:
            raise VariantUnavailable(f"timm's FastCollateMixup needs an even batch size, got {settings.batch_size}")
        mix = settings.mix
        self.device = settings.device
        self.batch_size = settings.batch_size
        collate = data.FastCollateMixup(
            mixup_alpha=mix.mixup_alpha, cutmix_alpha=mix.cutmix_alpha,
            cutmix_minmax=None if mix.cutmix_minmax is None else list(mix.cutmix_minmax), prob=mix.prob,
            switch_prob=mix.switch_prob, mode=mode, correct_lam=mix.correct_lam,
            label_smoothing=mix.label_smoothing, num_classes=num_classes)
        self.dataset = RepeatedDataset(data.ImageDataset(str(settings.data)), settings.batches * settings.batch_size)
        torch.manual_seed(settings.seed)
        self.loader = data.create_loader(
            self.dataset, input_size=(3, settings.crop, settings.crop), batch_size=settings.batch_size,
            is_training=True, use_prefetcher=True, num_workers=settings.threads, collate_fn=collate,
            pin_memory=self.device == "gpu", persistent_workers=True,
            device=torch.device("cuda", settings.device_id) if self.device == "gpu" else torch.device("cpu"),
            **AUGMENTATION)
        # timm forks its workers from this process, which runs DALI: they start from the fork server instead.
        self.loader.loader.multiprocessing_context = worker_context()
        self.measure(settings.batches)  # start the workers (not timed)

    @staticmethod
    def to_device(batch) -> int:
        """A batch as the loader hands it over (images and targets already on its device); returns its size."""
        return int(batch[0].shape[0])

    def measure(self, batches: int) -> Timing:
        """One epoch of ``batches`` batches, timed from its start to its last batch."""
        self.dataset.length = batches * self.batch_size
        return time_epoch(self.loader, self.to_device, self.device)

    def close(self) -> None:
        """Stop the workers."""
        self.loader = None
