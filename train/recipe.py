"""Training recipes: named sets of defaults, each overridable by a command-line flag.

``paper`` is the CutMix paper's ImageNet ResNet-50 recipe (Yun et al., ICCV 2019, section 4.1.1 and the
official code, clovaai/CutMix-PyTorch): 300 epochs, batch 256, SGD (momentum 0.9, Nesterov) at lr 0.1 per 256
images, weight decay 1e-4, lr divided by 10 at epochs 75, 150 and 225, CutMix alpha 1.0 applied to every batch
(prob 1.0), one box per batch.

``demo`` is sized for the embedded demo dataset (6 classes of 96x96 textures) on a small CPU: a ResNet-18 at
48x48, started with identity residual blocks (``zero_init_residual``, which it needs to learn in a few hundred
steps), CutMix on half the samples; it reaches well above chance in about two minutes on 2 cores.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Dict, Mapping

#: Every setting a recipe must define; the flag that overrides each is ``--`` + the name with ``_`` -> ``-``.
RECIPE_KEYS = (
    "arch", "zero_init_residual", "crop", "val_resize", "min_area", "epochs", "batch_size", "lr_per_256",
    "momentum", "nesterov", "weight_decay", "schedule", "milestones", "lr_gamma", "warmup_epochs", "cutmix", "alpha",
    "prob", "mode", "label_smoothing",
)

PAPER: Mapping[str, Any] = MappingProxyType(dict(
    arch="resnet50",
    zero_init_residual=False,
    crop=224,
    val_resize=256,
    min_area=0.08,
    epochs=300,
    batch_size=256,
    lr_per_256=0.1,
    momentum=0.9,
    nesterov=True,
    weight_decay=1e-4,
    schedule="step",
    milestones=(75, 150, 225),
    lr_gamma=0.1,
    warmup_epochs=0,
    cutmix=True,
    alpha=1.0,
    prob=1.0,
    mode="batch",
    label_smoothing=0.0,
))

DEMO: Mapping[str, Any] = MappingProxyType(dict(
    arch="resnet18",
    zero_init_residual=True,
    crop=48,
    val_resize=55,
    min_area=0.25,
    epochs=12,
    batch_size=32,
    lr_per_256=0.8,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    schedule="cosine",
    milestones=(),
    lr_gamma=0.1,
    warmup_epochs=1,
    cutmix=True,
    alpha=1.0,
    prob=0.5,
    mode="elem",
    label_smoothing=0.0,
))

RECIPES: Mapping[str, Mapping[str, Any]] = MappingProxyType({"paper": PAPER, "demo": DEMO})


def recipe_settings(name: str) -> Dict[str, Any]:
    """A fresh dict of recipe ``name``'s settings (every key of :data:`RECIPE_KEYS`).

    Raises:
        ValueError: unknown recipe name (the message lists the known ones).
    """
    if name not in RECIPES:
        raise ValueError(f"--recipe must be one of {', '.join(RECIPES)}, got {name!r}")
    return dict(RECIPES[name])


def default_recipe(data) -> str:
    """The recipe used when ``--recipe`` is not given: ``paper`` for a user's data set, ``demo`` without ``--data``."""
    return "demo" if data is None else "paper"
