"""The network: any torchvision classification model by name, on a device, optionally channels_last and compiled."""

from __future__ import annotations

from typing import List, Optional

from dali_cutmix.errors import UserError

#: torchvision builders that take ``zero_init_residual``.
RESIDUAL_FAMILIES = ("resnet", "resnext", "wide_resnet")


def classification_models() -> List[str]:
    """Names of torchvision's classification models (``resnet50``, ``resnet18``, ``vit_b_16``, ...), sorted."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_arch(arch: str) -> None:
    """Raise ValueError naming ``--arch`` if ``arch`` is not a torchvision classification model."""
    names = classification_models()
    if arch not in names:
        close = [n for n in names if n.startswith(arch[:4])][:8] if arch else []
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise UserError(f"--arch {arch!r} is not a torchvision classification model{hint}")


def _vit_patch(arch: str):
    """The patch size of a torchvision ViT (``vit_b_16`` -> 16), None for other models."""
    if arch.startswith("vit_"):
        return int(arch.rsplit("_", 1)[1])
    return None


def check_input_size(arch: str, crop: int, eval_crop: int) -> None:
    """Raise ValueError naming the flag if ``arch`` cannot take the training and validation crops: torchvision's
    ViTs are built for one input size (``crop``, a multiple of the patch size) and must be validated at it."""
    patch = _vit_patch(arch)
    if patch is None:
        return
    if crop % patch:
        raise UserError(f"--arch {arch} takes images whose side is a multiple of {patch}: --crop {crop} is not")
    if eval_crop != crop:
        raise UserError(f"--arch {arch} is built for one input size: --val-crop ({eval_crop}) must equal "
                         f"--crop ({crop})")


def _meta_model(arch: str, num_classes: int, image_size: int):
    """``arch`` built on the meta device (shapes only, no memory, no init work), or None when it cannot be
    (RegNets compute their widths from tensor values at construction)."""
    import warnings

    import torch
    import torchvision

    kwargs = dict(image_size=int(image_size)) if _vit_patch(arch) is not None else {}
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Inception's and GoogLeNet's note on their init: said by the run itself
            return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    except Exception:  # noqa: BLE001 - the check is skipped for such models; the run itself will tell
        return None


def _dry_forward(model, size: int, batch: int, train: bool) -> Optional[str]:
    """None if ``model`` (on the meta device) takes a batch of ``batch`` images of ``size`` x ``size`` pixels in
    training (``train``) or evaluation mode, else why not (one line)."""
    import torch

    from dali_cutmix.errors import first_line

    model.train(train)
    try:
        with torch.no_grad():
            model(torch.empty(batch, 3, size, size, device="meta"))
    except NotImplementedError:  # an op the meta device cannot run: no verdict
        return None
    except (RuntimeError, ValueError, AssertionError) as e:
        return first_line(e)
    return None


def _smallest_size(model, start: int, batch: int, train: bool, limit: int = 1024) -> Optional[int]:
    """The smallest side above ``start`` that ``model`` takes (bisection, checked), or None."""
    if _dry_forward(model, limit, batch, train) is not None:
        return None
    lo, hi = start, limit  # lo fails, hi works
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _dry_forward(model, mid, batch, train) is None:
            hi = mid
        else:
            lo = mid
    return hi if _dry_forward(model, hi, batch, train) is None else None


def check_model_input(arch: str, *, crop: int, eval_crop: int, batch: int, num_classes: int) -> None:
    """Raise ValueError naming the flag if ``arch`` cannot train on ``batch`` images of ``crop`` pixels or validate
    at ``eval_crop``: a dry forward pass on the meta device (exact, and fast: no weights, no arithmetic), so a run
    that would fail in its first step stops before anything starts. (GoogLeNet / Inception's auxiliary heads need
    larger images in training than in evaluation; BatchNorm cannot train on 1 image of 1 x 1 feature maps.)"""
    check_input_size(arch, crop, eval_crop)
    model = _meta_model(arch, num_classes, crop)
    if model is None:
        return
    for size, train, flag in ((crop, True, "--crop"), (eval_crop, False, "--val-crop" if eval_crop != crop
                                                        else "--crop")):
        why = _dry_forward(model, size, max(batch, 1), train)
        if why is None:
            continue
        if "more than 1 value per channel" in why:
            raise UserError(f"--arch {arch} cannot train on {batch} image(s) of {size}x{size} per step (BatchNorm "
                             f"needs more than one value per channel): raise --batch-size or {flag}")
        smallest = _smallest_size(model, size, max(batch, 1), train)
        what = "train" if train else "validate"
        if smallest:
            raise UserError(f"--arch {arch} cannot {what} at {flag} {size}: it needs {smallest} pixels or more "
                             f"(its layers shrink smaller images to nothing)")
        raise UserError(f"--arch {arch} cannot {what} at {flag} {size} ({why})")


def build_model(arch: str, num_classes: int, *, device, channels_last: bool = True,
                zero_init_residual: bool = False, image_size: int = 224):
    """A freshly initialised ``arch`` with a ``num_classes``-way head, on ``device``.

    ``zero_init_residual`` (ResNet / ResNeXt / Wide ResNet only, ignored for other models) starts every residual
    branch's last BatchNorm at zero, so each block starts as the identity: steadier early training with few steps.
    ``image_size`` is the input side of the models built for one size (torchvision's ViTs; see
    :func:`check_input_size`); other models take any size and ignore it.

    The initialisation draws from torch's global RNG: seed it first for identical weights. With
    ``channels_last`` the parameters use the NHWC memory format (faster convolutions with tensor cores and
    oneDNN); feed it channels_last inputs (see :func:`to_model_input`).
    """
    import torch
    import torchvision

    check_arch(arch)
    kwargs = dict(zero_init_residual=True) if zero_init_residual and arch.startswith(RESIDUAL_FAMILIES) else {}
    if _vit_patch(arch) is not None:
        kwargs["image_size"] = int(image_size)
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def to_model_input(images, *, nhwc: bool):
    """The (N, C, H, W) batch the model takes, from ``images`` as the pipeline made them: (N, H, W, C) when ``nhwc``
    (returned as a permuted view, which has channels_last strides: no copy), else (N, C, H, W) as they are. The
    dtype is left as it is (the pipeline emits the model's input dtype)."""
    return images.permute(0, 3, 1, 2) if nhwc else images
