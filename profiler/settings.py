"""What a profiler run measures and how: :class:`ProfileSettings`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from dali_cutmix.augment_options import AugmentOptions
from dali_cutmix.builder import check_decode
from dali_cutmix.errors import UserError
from dali_cutmix.options import MixOptions

DEVICES = ("cpu", "gpu")


@dataclass(frozen=True)
class ProfileSettings:
    """What to measure and how.

    Attributes:
        data: class-per-folder JPEG tree ``data/<class>/<image>``.
        device: "cpu" or "gpu" (DALI decodes on "mixed" and runs the rest on the GPU).
        batch_size: samples per batch. threads: DALI CPU threads, and the reference's DataLoader workers.
        batches: timed batches per variant per round. repeats: rounds (every variant timed once per round).
        crop: output size. seed: base seed. device_id: the CUDA device for "gpu".
        mix: the mixing stage's options (:class:`dali_cutmix.MixOptions`, checked there); its defaults are
            CutMix alone, one draw per batch (the paper's). The variants that mix after the loader take them too.
        decode: how the training pipeline's variants decode (:data:`dali_cutmix.builder.DECODES`): "roi" (only the
            random crop's region, the default) or "full" (the whole image, then the crop), as the trainer's
            ``--decode``.
        augment: the per-image augmentation of the training pipeline's variants
            (:class:`dali_cutmix.AugmentOptions`, checked there; default: none), as ``build_cutmix_pipeline``'s;
            each peer applies the same or is skipped, saying why.
        async_stages: also time each DALI stage variant and the loader with the builder's prefetching
            (``prefetch_queue_depth`` 2, ``exec_pipelined=True``) besides one batch at a time; None (default): on
            the GPU only (see
            :attr:`times_async_stages`).
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
    mix: MixOptions = field(default_factory=MixOptions)
    decode: str = "roi"
    async_stages: Optional[bool] = None
    augment: AugmentOptions = field(default_factory=AugmentOptions)

    @property
    def times_async_stages(self) -> bool:
        """Whether the DALI stage variants are also timed asynchronously: ``async_stages``, or for None, whether
        the device is "gpu"."""
        return self.device == "gpu" if self.async_stages is None else self.async_stages

    def check(self) -> "ProfileSettings":
        """Return self if every field is valid; raise ValueError naming the first bad one."""
        if self.device not in DEVICES:
            raise UserError(f"device must be one of {DEVICES}, got {self.device!r}")
        for name in ("batch_size", "threads", "batches", "repeats", "crop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{name} must be an integer >= 1, got {value!r}")
        check_decode(self.decode)
        if not isinstance(self.mix, MixOptions):
            raise UserError(f"mix must be dali_cutmix.MixOptions, got {type(self.mix).__name__}")
        if not isinstance(self.augment, AugmentOptions):
            raise UserError(f"augment must be dali_cutmix.AugmentOptions, got {type(self.augment).__name__}")
        if self.async_stages is not None and not isinstance(self.async_stages, bool):
            raise UserError(f"async_stages must be None, True or False, got {self.async_stages!r}")
        return self

    def as_dict(self) -> dict:
        """The settings as plain values (the mixing options under ``mix``), for the JSON."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["mix"] = self.mix.as_dict()
        values["augment"] = self.augment.as_dict()
        return values
