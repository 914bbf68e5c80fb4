"""The batch mixers of the variants that mix after the loader: torchvision's and timm's, as a DALI user adds them
to a training loop today.

A mixer is a callable ``(images, class_ids) -> (images, targets)`` on one batch: images ``[N, C, H, W]`` float,
class ids int64 ``[N]``, both on the same device; it returns the mixed images and float soft targets
``[N, num_classes]`` on that device. A mixer that cannot be built with the settings raises
:class:`~.timing.VariantUnavailable`, saying why.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

from dali_cutmix.options import MixOptions

from .timing import VariantUnavailable

Mixer = Callable[..., Tuple[object, object]]

#: How to get timm, for the reason recorded when it is missing.
TIMM_INSTALL = "pip install 'dali-cutmix[bench]'"


def torchvision_mixer(options: MixOptions, num_classes: int) -> Mixer:
    """torchvision's batch mixer for ``options``, as its classification recipe builds it: ``v2.CutMix(alpha=
    cutmix_alpha)``; with MixUp on too, ``v2.RandomChoice([v2.CutMix, v2.MixUp(alpha=mixup_alpha)])`` choosing
    CutMix with probability ``switch_prob``; ``v2.MixUp`` alone when only MixUp is on.

    torchvision mixes every batch (``prob`` 1), one draw per batch (``mode`` "batch"), always corrects lam to
    the clipped box, and has no ``cutmix_minmax`` or label smoothing: those options are not applied.

    Raises:
        VariantUnavailable: neither alpha is above 0 (``cutmix_minmax`` alone has no torchvision equivalent).
    """
    from torchvision.transforms import v2

    mixers, weights = [], []
    if options.cutmix_alpha > 0:
        mixers.append(v2.CutMix(num_classes=num_classes, alpha=options.cutmix_alpha))
        weights.append(options.switch_prob)
    if options.mixup_alpha > 0:
        mixers.append(v2.MixUp(num_classes=num_classes, alpha=options.mixup_alpha))
        weights.append(1.0 - options.switch_prob)
    if not mixers:
        raise VariantUnavailable("torchvision's v2.CutMix needs --cutmix-alpha above 0 (it has no --cutmix-minmax)")
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers, p=weights)


def timm_mixer(options: MixOptions, num_classes: int, batch_size: int, mixup_class: Optional[type] = None) -> Mixer:
    """``timm.data.Mixup`` (or ``mixup_class``, a class with its constructor and call) made with every mixing
    option: ``mixup_alpha``, ``cutmix_alpha``, ``cutmix_minmax``, ``prob``, ``switch_prob``, ``mode``,
    ``correct_lam``, ``label_smoothing`` and ``num_classes``. It mixes the batch in place and returns it with
    smoothed, mixed one-hot targets.

    Raises:
        VariantUnavailable: timm cannot be imported (``mixup_class`` None), or ``batch_size`` is odd (timm's
            Mixup asks for an even batch).
    """
    if mixup_class is None:
        try:
            from timm.data import Mixup as mixup_class
        except ImportError as e:
            raise VariantUnavailable(f"timm is not installed ({e}); {TIMM_INSTALL}") from None
    if batch_size % 2:
        raise VariantUnavailable(f"timm's Mixup needs an even batch size, got {batch_size}")
    return mixup_class(
        mixup_alpha=options.mixup_alpha, cutmix_alpha=options.cutmix_alpha,
        cutmix_minmax=None if options.cutmix_minmax is None else list(options.cutmix_minmax), prob=options.prob,
        switch_prob=options.switch_prob, mode=options.mode, correct_lam=options.correct_lam,
        label_smoothing=options.label_smoothing, num_classes=num_classes)
