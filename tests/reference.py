"""NumPy reference of the mixing semantics, written from the official CutMix code (clovaai/CutMix-PyTorch,
train.py), timm's mixup.py and the design (shared/design.md). The tests compare the DALI stage against it:
pixels and labels from the stage's returned params, and the distribution of lam against these draws.
"""

from __future__ import annotations

import numpy as np


def official_rand_bbox(rng, height, width, lam):
    """The official ``rand_bbox``: sides int(side*sqrt(1-lam)), centre uniform, corners clipped.
    Returns ``(y0, x0, y1, x1)``."""
    ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = rng.integers(height), rng.integers(width)
    y0, y1 = np.clip(cy - cut_h // 2, 0, height), np.clip(cy + cut_h // 2, 0, height)
    x0, x1 = np.clip(cx - cut_w // 2, 0, width), np.clip(cx + cut_w // 2, 0, width)
    return int(y0), int(x0), int(y1), int(x1)


def official_lams(rng, count, height, width, alpha=1.0):
    """``count`` corrected lams as the official training loop produces them (one per mixed batch)."""
    out = np.empty(count)
    for k in range(count):
        lam = rng.beta(alpha, alpha)
        y0, x0, y1, x1 = official_rand_bbox(rng, height, width, lam)
        out[k] = 1 - (y1 - y0) * (x1 - x0) / (height * width)
    return out


def minmax_lams(rng, count, height, width, lo, hi):
    """lams of timm's ``rand_bbox_minmax`` with inclusive side bounds ``[int(lo*side), int(hi*side)]``."""
    cut_h = rng.integers(int(height * lo), int(height * hi) + 1, size=count)
    cut_w = rng.integers(int(width * lo), int(width * hi) + 1, size=count)
    return 1 - cut_h * cut_w / (height * width)


def timm_label_weights(rng, count, *, cutmix_alpha, mixup_alpha, switch_prob, prob, height, width):
    """Own-label weights of timm's ``Mixup._params_per_elem`` + ``cutmix_bbox_and_lam`` (correct_lam=True):
    one value per sample, 1.0 when not mixed."""
    use_cutmix = rng.random(count) < switch_prob
    lam = np.where(use_cutmix, rng.beta(cutmix_alpha, cutmix_alpha, count), rng.beta(mixup_alpha, mixup_alpha, count))
    for k in np.flatnonzero(use_cutmix):
        y0, x0, y1, x1 = official_rand_bbox(rng, height, width, lam[k])
        lam[k] = 1 - (y1 - y0) * (x1 - x0) / (height * width)
    return np.where(rng.random(count) < prob, lam, 1.0)


def soft_labels(labels, perm, lam, num_classes, label_smoothing=0.0):
    """``lam * smooth(onehot(y)) + (1 - lam) * smooth(onehot(y[perm]))`` (timm's smoothing), float64 [N, C]."""
    labels = np.asarray(labels).reshape(-1)
    off = label_smoothing / num_classes
    on = 1.0 - label_smoothing + off
    eye = np.full((num_classes, num_classes), off)
    np.fill_diagonal(eye, on)
    lam = np.asarray(lam, dtype=np.float64).reshape(-1, 1)
    return lam * eye[labels] + (1 - lam) * eye[labels[np.asarray(perm)]]


def mix_pixels(images, perm, box, method, lam):
    """Expected output images [N, H, W, C] from the params: CutMix pastes the partner's box, MixUp blends
    (rounded half away from zero for integer images), method 0 leaves the image as it is."""
    out = images.copy()
    for i in range(len(images)):
        j = int(perm[i])
        if method[i] == 1:
            y0, x0, y1, x1 = box[i]
            out[i, y0:y1, x0:x1] = images[j, y0:y1, x0:x1]
        elif method[i] == 2:
            l = np.float32(lam[i])
            v = l * images[i].astype(np.float32) + (np.float32(1) - l) * images[j].astype(np.float32)
            if np.issubdtype(images.dtype, np.integer):
                v = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), 0, 255)
            out[i] = v.astype(images.dtype)
    return out
