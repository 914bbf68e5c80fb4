"""The profiler's arithmetic: timings to figures, and figures to medians, quartiles, shares and speed-ups."""

from __future__ import annotations

from typing import Dict, List, Mapping, Sequence

import numpy as np

from .timing import Timing
from .variants import ISOLATED, MS_KEYS, copy_key

#: The percentile that is a run's quiet figure (:func:`quiet_figure`).
QUIET_PERCENTILE = 0.1


def figures(timings: Mapping[str, Sequence[Timing]], batch_size: int) -> Dict[str, List[float]]:
    """Per round: images/s of every runner timed (the variants of :data:`~.variants.VARIANT_KEYS`, the stages'
    asynchronous twins), and for the runners of :data:`~.variants.MS_KEYS` ms per batch of ``batch_size`` (what
    the mixing stage adds to its fed batch) with, under :func:`~.variants.copy_key`, what one copy of the batch
    took in the same round."""
    values = {key: [t.images / t.seconds for t in ts] for key, ts in timings.items() if key not in MS_KEYS}
    for key in MS_KEYS:
        if key in timings:
            values[key] = [1000 * t.seconds * batch_size / t.images for t in timings[key]]
            if all(t.copy_seconds is not None for t in timings[key]):
                values[copy_key(key)] = [1000 * t.copy_seconds * batch_size / t.images for t in timings[key]]
    return values


def quiet_figure(values: Sequence[float]) -> float:
    """The :data:`QUIET_PERCENTILE` of ``values`` (the nearest rank at or below it): what a piece of work costs
    when the machine leaves it alone. A shared machine only ever slows a batch down, so the low end of many short
    timings is the work's own cost, where their median carries the machine's noise."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(QUIET_PERCENTILE * len(ordered)))]


def describe_round(timings: Mapping[str, Timing], batch_size: int) -> str:
    """One round's figures in one line (progress)."""
    values = figures({key: [t] for key, t in timings.items()}, batch_size)
    rates = {key: v for key, v in values.items() if key not in MS_KEYS and key not in map(copy_key, MS_KEYS)}
    line = ", ".join(f"{key} {v[0]:,.0f}" for key, v in rates.items()) + " images/s"
    if ISOLATED in values:
        line += f"; CutMix stage {values[ISOLATED][0]:.2f} ms/batch"
    return line


def summarize(values: Sequence[float]) -> Dict[str, float]:
    """Median, quartiles, min, max and n of ``values``; ``iqr_pct`` is the IQR as a percentage of the median."""
    v = np.asarray(values, dtype=np.float64)
    q1, median, q3 = np.percentile(v, [25, 50, 75])
    return dict(median=float(median), q1=float(q1), q3=float(q3), min=float(v.min()), max=float(v.max()),
                n=int(v.size), iqr_pct=float(100 * (q3 - q1) / median) if median else float("nan"))


def cutmix_shares(samples: Mapping[str, Sequence[float]]) -> List[float]:
    """CutMix's share of the full pipeline's time per image, per round: ``(1/cutmix - 1/crop) / (1/full)``
    (``samples`` in images/s, as :func:`figures`)."""
    return [(1 / c - 1 / p) * f for p, c, f in zip(samples["crop"], samples["cutmix"], samples["full"])]


def isolated_shares(samples: Mapping[str, Sequence[float]], batch_size: int) -> List[float]:
    """The isolated CutMix stage's ms per batch over the full pipeline's ms per batch, per round."""
    return [ms / (1000 * batch_size / full) for ms, full in zip(samples[ISOLATED], samples["full"])]


def in_copies(samples: Mapping[str, Sequence[float]], key: str, copy_key: str) -> List[float]:
    """Per round: runner ``key``'s ms per batch over ``copy_key``'s (one copy of the batch), as :func:`figures`
    gives them."""
    return [ms / copy for ms, copy in zip(samples[key], samples[copy_key])]


def speedups(samples: Mapping[str, Sequence[float]], other: str = "reference", ours: str = "loader") -> List[float]:
    """Variant ``ours``'s images/s (default: our loader's) over variant ``other``'s (default: the torchvision
    reference), per round (the rounds both were timed in)."""
    return [a / b for a, b in zip(samples[ours], samples[other])]
