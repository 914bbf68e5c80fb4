"""The embedded demo dataset: procedural images in a few classes a network can learn, written once as JPEGs.

Layout (ImageNet's): ``ROOT/train/<class>/*.jpg`` and ``ROOT/val/<class>/*.jpg``. Every class is a texture
family (stripes of two orientations, rings, checkers, blobs, ...) with random colours, frequency, phase and
noise, so the classes are separable but not trivially by colour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from dali_cutmix.errors import UserError
from dali_cutmix.helpers.host import cache_dir

CLASSES = ("horizontal", "vertical", "diagonal", "rings", "checkers", "dots")
DEMO_VERSION = "demo-v1"


def render(class_index: int, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """One procedural uint8 HWC RGB image of class ``class_index`` (0 .. len(CLASSES)-1), ``size`` x ``size``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    freq = rng.uniform(3.0, 7.0)
    phase = rng.uniform(0, 2 * np.pi)
    kind = CLASSES[class_index]
    if kind == "horizontal":
        field = np.sin(2 * np.pi * freq * yy + phase)
    elif kind == "vertical":
        field = np.sin(2 * np.pi * freq * xx + phase)
    elif kind == "diagonal":
        field = np.sin(2 * np.pi * freq * (xx + yy) / np.sqrt(2) + phase)
    elif kind == "rings":
        cy, cx = rng.uniform(0.3, 0.7, size=2)
        field = np.sin(2 * np.pi * freq * np.hypot(yy - cy, xx - cx) * 1.5 + phase)
    elif kind == "checkers":
        field = np.sign(np.sin(2 * np.pi * freq / 2 * xx + phase)) * np.sign(np.sin(2 * np.pi * freq / 2 * yy))
    else:  # dots
        field = np.sin(2 * np.pi * freq * xx + phase) * np.sin(2 * np.pi * freq * yy + phase)
        field = np.where(field > 0.5, 1.0, -1.0)
    c0, c1 = rng.uniform(0, 255, size=(2, 3))
    t = (field[..., None] + 1) / 2
    img = c0 * (1 - t) + c1 * t + rng.normal(0, 12, size=(size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _quiet(_message: str) -> None:
    """A progress sink that says nothing (the default)."""


def check_sizes(*, num_classes: int, train_per_class: int, val_per_class: int, size: int) -> None:
    """Raise UserError naming the first of :func:`write_dataset`'s sizes out of range: ``num_classes`` in
    [1, len(CLASSES)], ``train_per_class``, ``val_per_class`` and ``size`` (pixels) integers >= 1."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 1 <= num_classes <= len(CLASSES):
        raise UserError(f"num_classes must be in [1, {len(CLASSES)}], got {num_classes!r}")
    for name, value in (("train_per_class", train_per_class), ("val_per_class", val_per_class), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be an integer >= 1, got {value!r}")


def write_dataset(root, *, train_per_class: int = 120, val_per_class: int = 30, size: int = 96,
                  num_classes: int = len(CLASSES), seed: int = 0,
                  progress: Callable[[str], None] = _quiet) -> Path:
    """Write the demo tree under ``root`` (created whole, atomically: a partial tree never appears).

    Returns ``root``. An existing complete ``root`` is left as it is (and ``progress`` hears nothing); else
    ``progress`` gets one line before the images are written. Sizes out of range: UserError (:func:`check_sizes`).
    """
    from PIL import Image

    from dali_cutmix.helpers.atomic import atomic_directory

    check_sizes(num_classes=num_classes, train_per_class=train_per_class, val_per_class=val_per_class, size=size)
    root = Path(root)
    if (root / "train").is_dir() and (root / "val").is_dir():
        return root
    total = (train_per_class + val_per_class) * num_classes
    progress(f"generating the demo dataset once: {total} {size}x{size} JPEGs in {num_classes} classes, into {root}")
    with atomic_directory(root) as tmp:
        rng = np.random.default_rng(seed)
        for split, count in (("train", train_per_class), ("val", val_per_class)):
            for c in range(num_classes):
                folder = tmp / split / CLASSES[c]
                folder.mkdir(parents=True)
                for i in range(count):
                    Image.fromarray(render(c, rng, size)).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def ensure_demo_dataset(folder: Optional[Path] = None, progress: Callable[[str], None] = _quiet) -> Path:
    """The demo dataset's root, generated on first use under ``folder`` (default
    :func:`dali_cutmix.helpers.host.cache_dir`); ``progress`` gets one line when it is generated (not when it exists)."""
    return write_dataset(Path(folder or cache_dir()) / DEMO_VERSION, progress=progress)
