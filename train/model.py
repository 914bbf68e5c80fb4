"""The network: any torchvision classification model by name, on a device, optionally channels_last and compiled."""

from __future__ import annotations

from typing import List

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
        raise ValueError(f"--arch {arch!r} is not a torchvision classification model{hint}")


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
        raise ValueError(f"--arch {arch} takes images whose side is a multiple of {patch}: --crop {crop} is not")
    if eval_crop != crop:
        raise ValueError(f"--arch {arch} is built for one input size: --val-crop ({eval_crop}) must equal "
                         f"--crop ({crop})")


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


def to_model_input(images, *, channels_last: bool):
    """``images`` (NCHW) in the memory format the model expects (a copy only when the format changes)."""
    import torch

    return images.contiguous(memory_format=torch.channels_last) if channels_last else images
