"""The CutMix math: pure NumPy functions that draw the per-sample parameters and build soft labels.

These follow the official CutMix code (clovaai/CutMix-PyTorch, ``train.py``) and timm's ``mixup.py``:

* ``lam ~ Beta(alpha, alpha)``; a sample is mixed with probability ``prob``;
* partner ``perm`` is a random permutation of the batch;
* box: ``r = sqrt(1 - lam)``, sides ``(int(H*r), int(W*r))``, centre uniform over all pixel positions,
  corners ``centre -/+ side // 2`` clipped to the image (the box may shrink at the border);
* corrected ``lam = 1 - box_area / (H*W)``, the exact share of the sample's own pixels;
* ``minmax=(lo, hi)``: box sides uniform in ``[int(lo*side), int(hi*side)]``, box fully inside the image,
  lam always from the box's area (timm's ``rand_bbox_minmax``);
* soft labels ``lam * onehot(y) + (1 - lam) * onehot(y[perm])`` with timm's label smoothing
  (``off = eps / C``, ``on = 1 - eps + off``) applied to each one-hot before mixing.

Nothing here knows about DALI: the stage in :mod:`dali_cutmix.stage` calls these functions on the CPU
argument inputs and the tests compare the pipeline's pixels against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

MODES = ("batch", "elem")


@dataclass(frozen=True)
class CutMixParams:
    """Per-sample CutMix parameters of one batch of N samples.

    Attributes:
        perm: int32 [N], the partner index of each sample (a permutation of ``range(N)``).
        box: int32 [N, 4], ``[y0, x0, y1, x1]`` half-open, the region pasted from the partner;
            ``[0, 0, 0, 0]`` for a sample that was not mixed.
        lam: float32 [N] in ``[0, 1]``, the weight of the sample's own label (1.0 if not mixed).
    """

    perm: np.ndarray
    box: np.ndarray
    lam: np.ndarray


def check_options(
    *,
    num_classes: int,
    alpha: float,
    prob: float,
    mode: str,
    label_smoothing: float,
    minmax: Optional[Sequence[float]],
) -> Optional[Tuple[float, float]]:
    """Validate CutMix options; returns ``minmax`` as a float pair (or None).

    Raises:
        ValueError: naming the offending argument.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if minmax is None:
        return None
    try:
        lo, hi = (float(v) for v in minmax)
    except (TypeError, ValueError):
        raise ValueError(f"minmax must be a pair (lo, hi) with 0 < lo <= hi <= 1, got {minmax!r}") from None
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"minmax must satisfy 0 < lo <= hi <= 1, got {minmax!r}")
    return lo, hi


def _official_boxes(rng: np.random.Generator, lam: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boxes of the official ``rand_bbox``: sides from ``sqrt(1 - lam)``, centre uniform, clipped."""
    ratio = np.sqrt(1.0 - lam)
    cut_h = (height * ratio).astype(np.int64)
    cut_w = (width * ratio).astype(np.int64)
    cy = rng.integers(0, height, size=lam.shape)
    cx = rng.integers(0, width, size=lam.shape)
    y0 = np.clip(cy - cut_h // 2, 0, height)
    y1 = np.clip(cy + cut_h // 2, 0, height)
    x0 = np.clip(cx - cut_w // 2, 0, width)
    x1 = np.clip(cx + cut_w // 2, 0, width)
    return np.stack([y0, x0, y1, x1], axis=-1)


def _minmax_boxes(rng: np.random.Generator, n: int, height: int, width: int, lo: float, hi: float) -> np.ndarray:
    """Boxes of timm's ``rand_bbox_minmax``, bounds inclusive: sides in [lo*side, hi*side], inside the image."""
    cut_h = rng.integers(max(int(height * lo), 0), int(height * hi) + 1, size=n)
    cut_w = rng.integers(max(int(width * lo), 0), int(width * hi) + 1, size=n)
    y0 = rng.integers(0, height - cut_h + 1)
    x0 = rng.integers(0, width - cut_w + 1)
    return np.stack([y0, x0, y0 + cut_h, x0 + cut_w], axis=-1)


def draw_cutmix_params(
    rng: np.random.Generator,
    batch_size: int,
    height: int,
    width: int,
    *,
    alpha: float = 1.0,
    prob: float = 1.0,
    mode: str = "batch",
    correct_lam: bool = True,
    minmax: Optional[Tuple[float, float]] = None,
) -> CutMixParams:
    """Draw the CutMix parameters of one batch.

    Args:
        rng: the random stream (the only source of randomness).
        batch_size, height, width: the batch's N and image size H x W (pixels).
        alpha: Beta(alpha, alpha) concentration (> 0).
        prob: probability that mixing happens (per batch in mode "batch", per sample in mode "elem").
        mode: "batch" draws one coin flip, lam and box for the whole batch (the official algorithm);
            "elem" draws them per sample.
        correct_lam: report lam as the exact share of own pixels left after clipping (official behaviour);
            if False, the drawn lam is reported. Always corrected with ``minmax``.
        minmax: ``(lo, hi)`` to draw box sides uniformly in ``[int(lo*side), int(hi*side)]`` instead.

    Returns:
        :class:`CutMixParams` for the batch; the partner permutation is drawn in every call.
    """
    n = int(batch_size)
    draws = n if mode == "elem" else 1
    mixed = rng.random(draws) < prob
    perm = rng.permutation(n).astype(np.int32)
    if minmax is not None:
        box = _minmax_boxes(rng, draws, height, width, *minmax)
        lam = None
    else:
        lam = rng.beta(alpha, alpha, size=draws)
        box = _official_boxes(rng, lam, height, width)
    if correct_lam or lam is None:
        area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
        lam = 1.0 - area / float(height * width)
    box = np.where(mixed[:, None], box, 0)
    lam = np.where(mixed, lam, 1.0)
    if draws != n:
        box = np.repeat(box, n, axis=0)
        lam = np.repeat(lam, n)
    return CutMixParams(perm=perm, box=box.astype(np.int32), lam=lam.astype(np.float32))


def soft_labels(
    labels: np.ndarray, perm: np.ndarray, lam: np.ndarray, num_classes: int, label_smoothing: float = 0.0
) -> np.ndarray:
    """Mixed soft labels: ``lam * smooth(onehot(y)) + (1 - lam) * smooth(onehot(y[perm]))``.

    Args:
        labels: integer class ids [N] in ``[0, num_classes)``.
        perm: int [N] partner indices; lam: float [N] own-label weights.

    Returns:
        float32 [N, num_classes]; each row sums to 1.

    Raises:
        ValueError: if a label is outside ``[0, num_classes)``.
    """
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise ValueError(
            f"labels must be in [0, num_classes={num_classes}), got {labels[bad][:5].tolist()}"
        )
    n = labels.shape[0]
    off = label_smoothing / num_classes
    on = 1.0 - label_smoothing + off
    lam = np.asarray(lam, dtype=np.float32).reshape(n)
    out = np.full((n, num_classes), off, dtype=np.float32)
    rows = np.arange(n)
    out[rows, labels] += lam * (on - off)
    out[rows, labels[np.asarray(perm).reshape(n)]] += (1.0 - lam) * (on - off)
    return out
