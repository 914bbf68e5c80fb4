"""Validation of the mixing options shared by the stage, the pipeline builder and the CLI."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

MODES = ("batch", "elem", "pair")


def _number(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_options(
    *,
    num_classes,
    cutmix_alpha: float = 1.0,
    mixup_alpha: float = 0.0,
    switch_prob: float = 0.5,
    prob: float = 1.0,
    mode: str = "batch",
    label_smoothing: float = 0.0,
    minmax: Optional[Sequence[float]] = None,
    modes: Sequence[str] = MODES,
    alpha_name: str = "cutmix_alpha",
) -> Optional[Tuple[float, float]]:
    """Validate mixing options; returns ``minmax`` as a float pair (or None).

    ``alpha_name`` is the name the caller's users know the CutMix concentration by (``alpha`` in the builder).

    Raises:
        ValueError: naming the offending argument.
    """
    if mode not in modes:
        raise ValueError(f"mode must be one of {tuple(modes)}, got {mode!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    cutmix_alpha = _number(alpha_name, cutmix_alpha)
    mixup_alpha = _number("mixup_alpha", mixup_alpha)
    if cutmix_alpha < 0:
        raise ValueError(f"{alpha_name} must be >= 0 (0 disables CutMix), got {cutmix_alpha!r}")
    if mixup_alpha < 0:
        raise ValueError(f"mixup_alpha must be >= 0 (0 disables MixUp), got {mixup_alpha!r}")
    if not 0.0 <= _number("switch_prob", switch_prob) <= 1.0:
        raise ValueError(f"switch_prob must be in [0, 1], got {switch_prob!r}")
    if not 0.0 <= _number("prob", prob) <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob!r}")
    if not 0.0 <= _number("label_smoothing", label_smoothing) < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if minmax is None:
        if cutmix_alpha == 0 and mixup_alpha == 0:
            raise ValueError("cutmix_alpha and mixup_alpha are both 0 and no minmax is set: nothing to mix")
        return None
    try:
        lo, hi = (float(v) for v in minmax)
    except (TypeError, ValueError):
        raise ValueError(f"minmax must be a pair (lo, hi) with 0 < lo <= hi <= 1, got {minmax!r}") from None
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"minmax must satisfy 0 < lo <= hi <= 1, got {minmax!r}")
    return lo, hi


def check_alpha(alpha) -> float:
    """The Beta concentration of a single-method stage (:func:`cutmix`, :func:`mixup`): a number > 0."""
    if _number("alpha", alpha) <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    return float(alpha)
