"""The mixing stage on DALI DataNodes: :func:`cutmix`, :func:`mixup` and :func:`mix`, used in a ``pipeline_def``.

Graph of the stage (on top of the images' producer):

1. ``random.uniform`` draws a 31-bit seed per sample: DALI's RNG, so the pipeline seed, per-rank seeds and DALI
   checkpointing cover every CutMix draw;
2. ``dali_cutmix_params`` (native, CPU, :mod:`dali_cutmix.native`) turns the seeds, the labels and the image
   shape into every per-sample parameter at once (partner, method, lam, box) and the soft labels;
3. the pixels, on the images' device:
   * CPU: ``dali_cutmix_apply`` (native) writes each output image in one pass (copy + box rows, or blend);
   * GPU: DALI's own GPU operators: ``multi_paste`` with the partner's box as a second region (CutMix) and,
     when MixUp is on, ``permute_batch`` + one arithmetic blend. Only the tiny parameters are on the CPU.

Why native operators (``benchmarks/stage_overhead.py``, batch 64, 2-core CPU): a plain composition of DALI
operators (batch_permutation, random.beta, a dozen arithmetic operators for the boxes, a permuted copy of the
batch, one_hot twice) costs ~7 ms per batch, ~9% of a decode + random-resized-crop pipeline; a batch-level
``python_function`` ~2.8 ms, ~3.4%; the native pair ~0.4 ms, about one copy of the batch.
"""

from __future__ import annotations

from typing import Optional, Sequence

from .options import check_alpha, check_options

_SEED_HIGH = 2**31 - 1
IMPLS = ("native", "dali")
PARAM_NAMES = ("perm", "box", "lam", "method")


def mix(
    images,
    labels,
    *,
    num_classes: int,
    cutmix_alpha: float = 1.0,
    mixup_alpha: float = 0.0,
    switch_prob: float = 0.5,
    prob: float = 1.0,
    mode: str = "batch",
    label_smoothing: float = 0.0,
    correct_lam: bool = True,
    minmax: Optional[Sequence[float]] = None,
    return_params: bool = False,
    impl: Optional[str] = None,
    gate=None,
):
    """CutMix and/or MixUp a batch inside a DALI ``pipeline_def``, switching per batch, sample or pair (timm's
    ``Mixup`` semantics, with a random partner permutation).

    Args:
        images: DataNode, a batch of HWC images of one size (uint8 typically; CPU also int16/float32), CPU or GPU.
        labels: DataNode on the CPU, one integer class id per sample (shape ``[]`` or ``[1]``) in
            ``[0, num_classes)``.
        num_classes: soft-label width C (>= 1).
        cutmix_alpha: CutMix lam ~ Beta(a, a); 0 disables CutMix (unless ``minmax`` is set).
        mixup_alpha: MixUp lam ~ Beta(a, a); 0 disables MixUp. MixUp pixels are
            ``lam * own + (1 - lam) * partner``, rounded half away from zero for integer images.
        switch_prob: when both are enabled, the probability of CutMix (else MixUp) for each draw.
        prob: probability that a draw mixes at all, in [0, 1].
        mode: "batch" (one draw for the batch: coin, method, lam, box), "elem" (a draw per sample) or "pair"
            (samples paired at random; i takes j's pixels and j takes i's, with one draw per pair).
        label_smoothing: eps in [0, 1): each one-hot is ``off = eps/C``, ``on = 1 - eps + off`` before mixing.
        correct_lam: CutMix labels weighted by the exact pixel share after the box is clipped (official); if
            False, by the drawn lam. Always exact with ``minmax``.
        minmax: ``(lo, hi)``, ``0 < lo <= hi <= 1``: CutMix box sides uniform in ``[int(lo*side), int(hi*side)]``,
            box fully inside the image (timm's ``cutmix_minmax``).
        return_params: also return a dict of CPU DataNodes: ``perm`` (int32 partner index), ``box`` (int32
            ``[y0, x0, y1, x1]`` half-open, the pasted region; all zero unless CutMix was applied), ``lam``
            (float32, the weight of the sample's own label: the kept pixel share for CutMix, the blend weight
            for MixUp, 1.0 when not mixed) and ``method`` (int32: 0 none, 1 CutMix, 2 MixUp).
        impl: how pixels are mixed: "native" (CPU only, one pass) or "dali" (DALI's own operators, the GPU
            path; also runs on the CPU, which is how the tests check the GPU graph). Default: "native" for
            CPU images, "dali" for GPU images.
        gate: optional CPU DataNode, one integer scalar per sample; where it is 0 the sample is not mixed
            (its image is left as it is and its label is the smoothed one-hot). Random draws are made all the
            same, so a gated run keeps its random stream. :func:`epoch_gate` makes one that closes at an epoch.

    Returns:
        ``(images, soft_labels)``: mixed images (shape, dtype, layout and device of ``images``) and float32
        ``[num_classes]`` soft labels summing to 1 on the images' device; plus the params dict if asked.

    Raises:
        ValueError: for a bad option, naming it. When the pipeline runs, DALI reports images of different
            sizes or labels outside ``[0, num_classes)`` as a pipeline error naming them.
    """
    minmax = check_options(num_classes=num_classes, cutmix_alpha=cutmix_alpha, mixup_alpha=mixup_alpha,
                           switch_prob=switch_prob, prob=prob, mode=mode, label_smoothing=label_smoothing,
                           minmax=minmax)
    gpu = images.device == "gpu"
    impl = impl or ("dali" if gpu else "native")
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "native" and gpu:
        raise ValueError("impl='native' mixes CPU images only; GPU images use impl='dali'")

    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    from .native import load

    load()
    seeds = fn.random.uniform(range=[0, _SEED_HIGH], dtype=types.INT32)
    inputs = (seeds, labels, images.shape(device="cpu")) + (() if gate is None else (gate,))
    targets, perm, box, lam, method, in_ids, anchors, regions, weight = fn.dali_cutmix_params(
        *inputs, num_classes=num_classes, cutmix_alpha=cutmix_alpha,
        mixup_alpha=mixup_alpha, switch_prob=switch_prob, prob=prob, mode=mode, label_smoothing=label_smoothing,
        correct_lam=correct_lam, minmax=list(minmax or ()))
    if impl == "native":
        mixed = fn.dali_cutmix_apply(images, perm, box, method, lam)
    else:
        cutmix_on = cutmix_alpha > 0 or minmax is not None
        mixed = _mix_with_dali_operators(images, perm, in_ids, anchors, regions, weight,
                                         cutmix_on=cutmix_on, mixup_on=mixup_alpha > 0)
    if gpu:
        targets = targets.gpu()
    if return_params:
        return mixed, targets, dict(zip(PARAM_NAMES, (perm, box, lam, method)))
    return mixed, targets


def _mix_with_dali_operators(images, perm, in_ids, anchors, regions, weight, *, cutmix_on, mixup_on):
    """The pixel work with DALI's built-in operators (GPU or CPU), driven by the native operator's outputs."""
    import nvidia.dali.fn as fn

    if not mixup_on:  # CutMix only: region 0 = own image, region 1 = partner's box, from one batch by index
        return fn.multi_paste(images, in_ids=in_ids, in_anchors=anchors, shapes=regions, out_anchors=anchors)
    partner = fn.permute_batch(images, indices=perm)
    w = weight.gpu() if images.device == "gpu" else weight
    blended = fn.cast_like(images * w + partner * (1.0 - w), images)  # rounds half away from zero, saturates
    if not cutmix_on:
        return blended
    # MixUp samples have an empty box; CutMix samples have weight 1, so `blended` is their own image.
    return fn.multi_paste(blended, partner, in_anchors=anchors, shapes=regions, out_anchors=anchors)


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
    impl: Optional[str] = None,
):
    """CutMix a batch inside a DALI ``pipeline_def`` (Yun et al., ICCV 2019; official semantics).

    lam ~ Beta(alpha, alpha); box sides ``int(H*sqrt(1-lam))``, ``int(W*sqrt(1-lam))``; centre uniform over all
    pixels; corners ``centre -/+ side // 2`` clipped to the image; pixels inside the box come from the partner
    (a random permutation of the batch); soft labels ``lam * onehot(y) + (1 - lam) * onehot(y[perm])`` with
    lam corrected to the exact share of own pixels.

    Args:
        images: DataNode, a batch of HWC images of one size (uint8 typically), CPU or GPU.
        labels: DataNode on the CPU, one integer class id per sample, in ``[0, num_classes)``.
        num_classes: soft-label width C (>= 1).
        alpha: lam ~ Beta(alpha, alpha), alpha > 0. Default 1.0 (uniform), as in the paper.
        prob: probability of mixing, in [0, 1]: per batch in mode "batch", per sample in mode "elem".
        mode: "batch" (official: one lam, one box, one coin flip per batch) or "elem" (every sample its own
            lam, box and coin flip); "pair" as in :func:`mix`.
        label_smoothing, correct_lam, minmax, impl: as in :func:`mix`.
        return_params: also return a dict of CPU DataNodes ``perm`` (int32), ``box`` (int32
            ``[y0, x0, y1, x1]`` half-open, all zero for a sample that was not mixed), ``lam`` (float32, the kept
            share of own pixels).

    Returns:
        ``(images, soft_labels)`` (plus the params dict with ``return_params``), as :func:`mix`.
    """
    out = mix(images, labels, num_classes=num_classes, cutmix_alpha=check_alpha(alpha), mixup_alpha=0.0,
              prob=prob, mode=mode, label_smoothing=label_smoothing, correct_lam=correct_lam, minmax=minmax,
              return_params=return_params, impl=impl)
    if return_params:
        out[2].pop("method")
    return out


def mixup(
    images,
    labels,
    *,
    num_classes: int,
    alpha: float = 1.0,
    prob: float = 1.0,
    mode: str = "batch",
    label_smoothing: float = 0.0,
    return_params: bool = False,
    impl: Optional[str] = None,
):
    """MixUp a batch inside a DALI ``pipeline_def`` (Zhang et al., ICLR 2018): lam ~ Beta(alpha, alpha), pixels
    ``lam * x_i + (1 - lam) * x_perm[i]`` (rounded for integer images), soft labels as :func:`cutmix`.

    Args and returns as :func:`mix` with ``mixup_alpha=alpha`` and CutMix off; ``alpha`` must be > 0.
    """
    return mix(images, labels, num_classes=num_classes, cutmix_alpha=0.0, mixup_alpha=check_alpha(alpha),
               prob=prob, mode=mode, label_smoothing=label_smoothing, return_params=return_params, impl=impl)
