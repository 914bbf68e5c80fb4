"""The mixing options: each one named (timm's ``Mixup`` names), defaulted and checked here, and nowhere else.

:class:`MixOptions` is what the stage, the pipeline builder, the trainer, the profiler and the CLI pass around;
its fields are also the native operator's argument names and, with ``-`` for ``_``, the command-line flags.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple, Union

from .errors import UserError
from .option_errors import OptionError, from_mapping, quote

MODES = ("batch", "elem", "pair")


def flag_name(name: str) -> str:
    """The command-line flag of a setting: ``cutmix_alpha`` -> ``--cutmix-alpha``."""
    return "--" + name.replace("_", "-")


class MixOptionError(OptionError):
    """A mixing option out of range (:class:`~.option_errors.OptionError` over :class:`MixOptions`' fields)."""

    @classmethod
    def options(cls) -> type:
        return MixOptions


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MixOptionError(f"{{{name}}} must be a finite number, got {quote(value)}")
    return float(value)


def _in_range(name: str, value: Any, low: float, high: float, *, high_open: bool = False) -> float:
    number = _number(name, value)
    if not (low <= number < high if high_open else low <= number <= high):
        interval = f"[{low:g}, {high:g}{')' if high_open else ']'}"
        raise MixOptionError(f"{{{name}}} must be in {interval}, got {quote(value)}")
    return number


def _alpha(name: str, value: Any, method: str) -> float:
    number = _number(name, value)
    if number < 0:
        raise MixOptionError(f"{{{name}}} must be >= 0 (0 turns {method} off), got {quote(value)}")
    return number


def _minmax(value: Any) -> Optional[Tuple[float, float]]:
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise MixOptionError(
            f"{{cutmix_minmax}} must be a pair (lo, hi) with 0 < lo <= hi <= 1, got {quote(value)}") from None
    if not 0.0 < lo <= hi <= 1.0:
        raise MixOptionError(f"{{cutmix_minmax}} must satisfy 0 < lo <= hi <= 1, got {quote(value)}")
    return lo, hi


@dataclass(frozen=True)
class MixOptions:
    """How a batch is mixed: CutMix (Yun et al., ICCV 2019) and/or MixUp (Zhang et al., ICLR 2018), with timm's
    ``Mixup`` option names and semantics. Checked on construction; raises :class:`MixOptionError` (a
    ``ValueError``) naming the option.

    A *draw* (one coin flip, one method choice, one lam, one box) is made per batch, per sample or per pair of
    samples, by ``mode``.
    """

    cutmix_alpha: float = field(default=1.0, metadata=dict(
        help="CutMix: lam ~ Beta(a, a), box sides H*sqrt(1-lam), W*sqrt(1-lam); 0 turns CutMix off."))
    mixup_alpha: float = field(default=0.0, metadata=dict(
        help="MixUp: lam ~ Beta(a, a), pixels lam * own + (1 - lam) * partner; 0 turns MixUp off."))
    cutmix_minmax: Optional[Tuple[float, float]] = field(default=None, metadata=dict(
        help="CutMix box sides uniform in [lo*side, hi*side], box inside the image (0 < lo <= hi <= 1); "
             "replaces the boxes drawn from the CutMix alpha."))
    prob: float = field(default=1.0, metadata=dict(
        help="Probability that a draw mixes at all, in [0, 1]."))
    switch_prob: float = field(default=0.5, metadata=dict(
        help="With CutMix and MixUp both on: probability that a draw uses CutMix (else MixUp), in [0, 1]."))
    mode: str = field(default="batch", metadata=dict(
        help="One draw per batch (official CutMix, timm, torchvision), per sample ('elem'), or per pair of "
             "samples that swap regions ('pair')."))
    correct_lam: bool = field(default=True, metadata=dict(
        help="Weight CutMix labels by the exact pixel share left after the box is clipped (official)."))
    label_smoothing: float = field(default=0.0, metadata=dict(
        help="Label smoothing eps in [0, 1), applied to each one-hot before mixing (timm)."))
    self_pairs: bool = field(default=True, metadata=dict(
        help="Partners from a random permutation of the batch, so a sample may draw itself and stay as it is "
             "(the paper's); off: a random derangement, every sample's partner is another sample (a lone "
             "sample is then not mixed). Pair mode never pairs a sample with itself."))

    def __post_init__(self):
        if self.mode not in MODES:
            raise MixOptionError(f"{{mode}} must be one of {MODES}, got {quote(self.mode)}")
        for name in ("correct_lam", "self_pairs"):
            if not isinstance(getattr(self, name), bool):
                raise MixOptionError(f"{{{name}}} must be True or False, got {quote(getattr(self, name))}")
        values = dict(
            cutmix_alpha=_alpha("cutmix_alpha", self.cutmix_alpha, "CutMix"),
            mixup_alpha=_alpha("mixup_alpha", self.mixup_alpha, "MixUp"),
            cutmix_minmax=_minmax(self.cutmix_minmax),
            prob=_in_range("prob", self.prob, 0.0, 1.0),
            switch_prob=_in_range("switch_prob", self.switch_prob, 0.0, 1.0),
            label_smoothing=_in_range("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True),
        )
        for name, value in values.items():
            object.__setattr__(self, name, value)
        if not (self.cutmix_on or self.mixup_on):
            raise MixOptionError("nothing to mix: {cutmix_alpha} is 0, no {cutmix_minmax} is set and {mixup_alpha} "
                                 "is 0")

    @property
    def cutmix_on(self) -> bool:
        """Whether draws may use CutMix."""
        return self.cutmix_alpha > 0 or self.cutmix_minmax is not None

    @property
    def mixup_on(self) -> bool:
        """Whether draws may use MixUp."""
        return self.mixup_alpha > 0

    def replace(self, **changes) -> "MixOptions":
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """The options as plain values (``cutmix_minmax`` a list or None), e.g. for JSON and checkpoints."""
        d = dataclasses.asdict(self)
        d["cutmix_minmax"] = None if self.cutmix_minmax is None else list(self.cutmix_minmax)
        return d

    @classmethod
    def coerce(cls, value: Union["MixOptions", Mapping[str, Any], None]) -> "MixOptions":
        """``value`` as MixOptions: itself, the options a mapping names (the rest defaulted), or the defaults for
        None.

        Raises:
            MixOptionError: a value out of range, or a name that is not an option.
        """
        if isinstance(value, cls):
            return value
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise MixOptionError(f"mixing options must be MixOptions or a mapping of its fields, got "
                                 f"{quote(type(value).__name__)}")
        return from_mapping(cls, value, MixOptionError, "mixing")


def check_num_classes(num_classes: Any) -> int:
    """``num_classes`` if it is an integer >= 1; raises UserError naming it otherwise."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    return num_classes
