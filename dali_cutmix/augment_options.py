"""The augmentation options: each one named, defaulted and checked here, and nowhere else, with one preset per
training recipe.

:class:`AugmentOptions` is what the pipeline builder, the trainer, the profiler and the CLI pass around; its fields,
with ``-`` for ``_``, are the command-line flags (``cli/augmenting.py``). :data:`PRESETS` names the augmentation of
each recipe's source: ``"none"`` (no per-image augmentation beyond the random-resized crop and flip), ``"paper"``
(the official CutMix code's ColorJitter and Lighting), ``"deit"`` (timm's RandAugment ``rand-m9-mstd0.5-inc1`` and
per-pixel random erasing 0.25) and ``"torchvision-v2"`` (TrivialAugmentWide and random erasing 0.1).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Tuple, Union

from .option_errors import OptionError, from_mapping, quote

#: The automatic augmentation policies: none, torchvision's TrivialAugmentWide, timm's RandAugment (``inc1``: the
#: increasing-severity op set).
AUTO_AUGMENTS = ("none", "trivial-augment-wide", "rand-augment")
#: Random erasing's fill: "const" (0 after normalization: the mean colour; torchvision's ``value=0``, timm's
#: "const") or "pixel" (a N(0, 1) value per pixel and channel after normalization: timm's "pixel").
ERASE_MODES = ("const", "pixel")


class AugmentOptionError(OptionError):
    """An augmentation option out of range (:class:`~.option_errors.OptionError` over :class:`AugmentOptions`'
    fields)."""

    @classmethod
    def options(cls) -> type:
        return AugmentOptions


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AugmentOptionError(f"{{{name}}} must be a finite number, got {quote(value)}")
    if not low <= value <= high:
        raise AugmentOptionError(f"{{{name}}} must be in [{low:g}, {high:g}], got {quote(value)}")
    return float(value)


def _choice(name: str, value: Any, choices: Tuple[str, ...]) -> str:
    if value not in choices:
        raise AugmentOptionError(f"{{{name}}} must be one of {choices}, got {quote(value)}")
    return value


def _pair(name: str, value: Any, low: float, high: float) -> Tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise AugmentOptionError(f"{{{name}}} must be a pair (lo, hi), got {quote(value)}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and low < lo <= hi <= high):
        raise AugmentOptionError(f"{{{name}}} must satisfy {low:g} < lo <= hi <= {high:g}, got {quote(value)}")
    return lo, hi


@dataclass(frozen=True)
class AugmentOptions:
    """How each image is augmented after its random-resized crop and flip, before normalization and mixing.
    Checked on construction; raises :class:`AugmentOptionError` (a :class:`~dali_cutmix.errors.UserError`) naming
    the option. The defaults augment nothing (the preset "none").

    Order, per image (the sources' order): crop, flip, ``auto_augment`` (uint8), ColorJitter, Lighting,
    normalize, random erasing; then the batch is mixed.
    """

    color_jitter: float = field(default=0.0, metadata=dict(
        help="The official CutMix ColorJitter: brightness, contrast and saturation, each x + a*(target - x) with "
             "a ~ U(-v, v) per image, on [0, 1] images (no clamping); 0 turns it off. The paper's: 0.4."))
    lighting: float = field(default=0.0, metadata=dict(
        help="AlexNet's PCA lighting noise: alpha ~ N(0, s) per channel, eigvec @ (alpha * eigval) added to the "
             "[0, 1] image; the standard deviation s, 0 off. The paper's: 0.1."))
    auto_augment: str = field(default="none", metadata=dict(
        help="Per-image policy: 'trivial-augment-wide' (torchvision's TrivialAugmentWide), 'rand-augment' "
             "(timm's RandAugment, increasing op set), or 'none'."))
    rand_augment_ops: int = field(default=2, metadata=dict(
        help="RandAugment: operations applied to each image (timm's n)."))
    rand_augment_magnitude: float = field(default=9.0, metadata=dict(
        help="RandAugment: magnitude in [0, 10] (timm's m)."))
    rand_augment_magnitude_std: float = field(default=0.5, metadata=dict(
        help="RandAugment: standard deviation of the normal noise added to the magnitude per operation, the "
             "result clipped to [0, 10] (timm's mstd); 0: the magnitude as it is."))
    erase_prob: float = field(default=0.0, metadata=dict(
        help="Random erasing after normalization: probability per image that a box is erased; 0 off."))
    erase_mode: str = field(default="const", metadata=dict(
        help="Random erasing's fill: 'const' (0 after normalization, torchvision's) or 'pixel' (N(0, 1) per pixel "
             "and channel after normalization, timm's --remode pixel)."))
    erase_scale: Tuple[float, float] = field(default=(0.02, 1 / 3), metadata=dict(
        help="Random erasing: the box's area as a fraction of the image's, uniform in [lo, hi]."))
    erase_ratio: Tuple[float, float] = field(default=(0.3, 1 / 0.3), metadata=dict(
        help="Random erasing: the box's aspect ratio (height / width), log-uniform in [lo, hi]."))

    def __post_init__(self):
        ops = self.rand_augment_ops
        if isinstance(ops, bool) or not isinstance(ops, int) or not 0 <= ops <= 16:
            raise AugmentOptionError(f"{{rand_augment_ops}} must be an integer in [0, 16], got {quote(ops)}")
        values = dict(
            color_jitter=_number("color_jitter", self.color_jitter, 0.0, 1.0),
            lighting=_number("lighting", self.lighting, 0.0, 10.0),
            auto_augment=_choice("auto_augment", self.auto_augment, AUTO_AUGMENTS),
            rand_augment_magnitude=_number("rand_augment_magnitude", self.rand_augment_magnitude, 0.0, 10.0),
            rand_augment_magnitude_std=_number("rand_augment_magnitude_std", self.rand_augment_magnitude_std, 0.0,
                                               10.0),
            erase_prob=_number("erase_prob", self.erase_prob, 0.0, 1.0),
            erase_mode=_choice("erase_mode", self.erase_mode, ERASE_MODES),
            erase_scale=_pair("erase_scale", self.erase_scale, 0.0, 1.0),
            erase_ratio=_pair("erase_ratio", self.erase_ratio, 0.0, math.inf),
        )
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def active(self) -> bool:
        """Whether any transform is on (False: the pipeline is the plain crop, flip, normalize one)."""
        return bool(self.color_jitter or self.lighting or self.auto_augment != "none" or self.erase_prob)

    def replace(self, **changes) -> "AugmentOptions":
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """The options as plain values (pairs as lists), e.g. for JSON and checkpoints."""
        d = dataclasses.asdict(self)
        d["erase_scale"], d["erase_ratio"] = list(self.erase_scale), list(self.erase_ratio)
        return d

    @classmethod
    def coerce(cls, value: Union["AugmentOptions", str, Mapping[str, Any], None]) -> "AugmentOptions":
        """``value`` as AugmentOptions: itself, the preset a name names (:data:`PRESETS`), the options a mapping
        names (the rest defaulted), or the defaults ("none") for None.

        Raises:
            AugmentOptionError: an unknown preset, a value out of range, or a name that is not an option.
        """
        if isinstance(value, cls):
            return value
        if value is None:
            return cls()
        if isinstance(value, str):
            if value not in PRESETS:
                raise AugmentOptionError(f"unknown augmentation preset {quote(value)}; the presets are: "
                                         f"{', '.join(PRESETS)}")
            return PRESETS[value]
        if not isinstance(value, Mapping):
            raise AugmentOptionError(f"augment must be a preset name, AugmentOptions or a mapping of its fields, "
                                     f"got {quote(type(value).__name__)}")
        return from_mapping(cls, value, AugmentOptionError, "augmentation")


#: The augmentation of each recipe's source, by name (``build_cutmix_pipeline(augment=name)``).
PRESETS = {
    # RandomResizedCrop and RandomHorizontalFlip only.
    "none": AugmentOptions(),
    # clovaai/CutMix-PyTorch train.py: ColorJitter(0.4, 0.4, 0.4) and Lighting(alphastd=0.1) of its utils.py.
    "paper": AugmentOptions(color_jitter=0.4, lighting=0.1),
    # DeiT (timm's create_transform): auto_augment 'rand-m9-mstd0.5-inc1', re_prob 0.25, re_mode 'pixel'.
    "deit": AugmentOptions(auto_augment="rand-augment", rand_augment_ops=2, rand_augment_magnitude=9.0,
                           rand_augment_magnitude_std=0.5, erase_prob=0.25, erase_mode="pixel",
                           erase_scale=(0.02, 1 / 3), erase_ratio=(0.3, 1 / 0.3)),
    # torchvision's references/classification (the v2 recipe): TrivialAugmentWide, RandomErasing(p=0.1) with its
    # defaults scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.
    "torchvision-v2": AugmentOptions(auto_augment="trivial-augment-wide", erase_prob=0.1, erase_mode="const",
                                     erase_scale=(0.02, 0.33), erase_ratio=(0.3, 3.3)),
}
