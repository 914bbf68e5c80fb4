"""What a profiler run measures and how: :class:`ProfileSettings`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

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
            CutMix alone, one draw per batch (the paper's).
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

    def check(self) -> "ProfileSettings":
        """Return self if every field is valid; raise ValueError naming the first bad one."""
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        for name in ("batch_size", "threads", "batches", "repeats", "crop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.mix, MixOptions):
            raise ValueError(f"mix must be dali_cutmix.MixOptions, got {type(self.mix).__name__}")
        return self

    def as_dict(self) -> dict:
        """The settings as plain values (the mixing options under ``mix``), for the JSON."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["mix"] = self.mix.as_dict()
        return values
