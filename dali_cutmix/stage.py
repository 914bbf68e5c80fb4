"""The CutMix stage on DALI DataNodes: :func:`cutmix`, used inside a ``pipeline_def``.

Graph (three operators on top of the images' producer):

1. ``random.uniform`` draws one 31-bit seed per sample (DALI's RNG, so the pipeline seed, per-rank seeds and
   DALI checkpointing all cover it);
2. one batch-level CPU ``python_function`` turns the seeds, the labels and the image shape into every
   per-sample parameter at once with the NumPy math of :mod:`dali_cutmix.params` (partner permutation, box,
   lam, soft labels) and the ``multi_paste`` arguments;
3. ``multi_paste`` writes each output image in one pass: region 0 is the sample's own image, region 1 the
   partner's box on top of it. On GPU images this runs on the GPU; its arguments are tiny CPU tensors.

Why this shape: a plain composition of DALI operators (batch_permutation, random.beta, a dozen arithmetic
operators for the boxes, a permuted copy of the batch, one_hot twice) costs ~9 ms per batch of 64 on a 2-core
CPU, ~9% of a decode + random-resized-crop pipeline; this stage costs ~2-3 ms. See ``benchmarks/README.md``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .params import check_options, draw_cutmix_params, soft_labels

_SEED_HIGH = 2**31 - 1


class _CutMixBatchFunction:
    """Batch-level CPU function of the stage: (seeds, labels, image shapes) -> paste arguments and labels."""

    def __init__(self, *, num_classes, alpha, prob, mode, label_smoothing, correct_lam, minmax, return_params):
        self.return_params = bool(return_params)
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.draw_options = dict(alpha=float(alpha), prob=float(prob), mode=mode, correct_lam=bool(correct_lam),
                                 minmax=minmax)

    def __call__(self, seeds, labels, shapes):
        n = len(labels)
        shapes = np.stack([np.asarray(s).reshape(-1) for s in shapes])
        if (shapes != shapes[0]).any():
            sizes = sorted({tuple(int(v) for v in s[:2]) for s in shapes})
            raise ValueError(
                f"images reaching the cutmix stage must all have one size (resize or crop them first); "
                f"got sizes (H, W) {sizes[:4]}")
        if shapes.shape[1] != 3:
            raise ValueError(f"images reaching the cutmix stage must be HWC, got shape {tuple(shapes[0])}")
        height, width = int(shapes[0, 0]), int(shapes[0, 1])
        flat = [np.asarray(y).reshape(-1) for y in labels]
        if any(f.size != 1 for f in flat):
            raise ValueError("labels reaching the cutmix stage must hold exactly one class id per sample")
        labels = np.array([f[0] for f in flat], dtype=np.int64)
        seed = np.stack([np.asarray(s).reshape(-1) for s in seeds]).astype(np.uint32).ravel()
        rng = np.random.default_rng(seed)
        p = draw_cutmix_params(rng, n, height, width, **self.draw_options)
        targets = soft_labels(labels, p.perm, p.lam, self.num_classes, self.label_smoothing)
        in_ids = np.stack([np.arange(n, dtype=np.int32), p.perm], axis=1)
        anchors = np.zeros((n, 2, 2), np.int32)
        anchors[:, 1] = p.box[:, :2]
        regions = np.empty((n, 2, 2), np.int32)
        regions[:, 0] = (height, width)
        regions[:, 1] = p.box[:, 2:] - p.box[:, :2]
        outputs = (in_ids, anchors, regions, targets) + ((p.perm, p.box, p.lam) if self.return_params else ())
        # python_function hands DALI one array per sample (views, no copies).
        return tuple([a[i, ...] for i in range(n)] for a in outputs)


def cutmix(
    images,
    labels,
    *,
    num_classes: int,
    alpha: float = 1.0,
    prob: float = 1.0,
    mode: str = "batch",
    label_smoothing: float = 0.0,
    correct_lam: bool = True,
    minmax: Optional[Sequence[float]] = None,
    return_params: bool = False,
):
    """CutMix a batch inside a DALI ``pipeline_def`` (Yun et al., ICCV 2019).

    Args:
        images: DataNode, a batch of HWC images of one size (any dtype, uint8 typically), CPU or GPU.
        labels: DataNode on the CPU, one integer class id per sample (shape ``[]`` or ``[1]``), in
            ``[0, num_classes)``.
        num_classes: number of classes C (>= 1).
        alpha: lam ~ Beta(alpha, alpha), alpha > 0. Default 1.0 (uniform), as in the paper.
        prob: probability of mixing, in [0, 1]: per batch in mode "batch", per sample in mode "elem".
        mode: "batch" (official: one lam, one box, one coin flip per batch, random pairing) or "elem"
            (every sample its own lam, box and coin flip; pairing by one random permutation).
        label_smoothing: eps in [0, 1): each one-hot becomes ``off = eps/C``, ``on = 1 - eps + off``.
        correct_lam: weight labels by the exact pixel shares after the box is clipped (official); if False,
            by the drawn lam.
        minmax: optional ``(lo, hi)``, ``0 < lo <= hi <= 1``: box sides uniform in ``[lo*side, hi*side]``,
            box fully inside the image, lam from its area (timm's ``cutmix_minmax``).
        return_params: also return a dict of DataNodes (CPU) describing what was done: ``perm`` (int32
            partner index), ``box`` (int32 ``[y0, x0, y1, x1]`` half-open, the pasted region, all zero for
            a sample that was not mixed), ``lam`` (float32 scalar, the kept share of own pixels).

    Returns:
        ``(images, soft_labels)``: mixed images (same shape, dtype and device as ``images``) and float32
        ``[num_classes]`` soft labels summing to 1, on the images' device; plus the params dict with
        ``return_params=True``.

    Raises:
        ValueError: at graph definition for a bad option (naming it); when the pipeline runs, for images of
            different sizes or labels outside ``[0, num_classes)`` (DALI reports it as a pipeline error).
    """
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    minmax = check_options(num_classes=num_classes, alpha=alpha, prob=prob, mode=mode,
                           label_smoothing=label_smoothing, minmax=minmax)
    function = _CutMixBatchFunction(num_classes=num_classes, alpha=alpha, prob=prob, mode=mode,
                                    label_smoothing=label_smoothing, correct_lam=correct_lam, minmax=minmax,
                                    return_params=return_params)
    seeds = fn.random.uniform(range=[0, _SEED_HIGH], dtype=types.INT32)
    in_ids, anchors, regions, targets, *params = fn.python_function(
        seeds, labels, images.shape(device="cpu"), function=function, batch_processing=True,
        num_outputs=7 if return_params else 4)
    mixed = fn.multi_paste(images, in_ids=in_ids, in_anchors=anchors, shapes=regions, out_anchors=anchors)
    if images.device == "gpu":
        targets = targets.gpu()
    if return_params:
        return mixed, targets, dict(zip(("perm", "box", "lam"), params))
    return mixed, targets
