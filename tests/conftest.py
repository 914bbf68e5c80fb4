"""Shared fixtures: small JPEG trees made by the tests themselves (nothing is downloaded)."""

from __future__ import annotations

import numpy as np
import pytest


def write_jpeg_tree(root, *, classes=4, per_class=6, sizes=((48, 64), (60, 40), (50, 50)), seed=0):
    """Write ``root/<class>/<i>.jpg`` random-noise JPEGs of varied sizes; returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class{c:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            h, w = sizes[(c + i) % len(sizes)]
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i:03d}.jpg")
    return root


@pytest.fixture(scope="session")
def jpeg_tree(tmp_path_factory):
    """4 classes x 6 noise JPEGs (24 images) of three sizes."""
    return write_jpeg_tree(tmp_path_factory.mktemp("jpegs") / "train")


@pytest.fixture(scope="session")
def demo_imagenet(tmp_path_factory):
    """A small demo dataset in ImageNet layout: DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg."""
    from dali_cutmix.pipelines.demo import write_dataset

    return write_dataset(tmp_path_factory.mktemp("demo") / "demo", train_per_class=24, val_per_class=8, size=64,
                         num_classes=4)


@pytest.fixture(autouse=True, scope="session")
def scan_cache_in_tmp(tmp_path_factory):
    """Scans run in this process cache their results in a temporary folder, never in the user's cache folder
    (subprocesses get their own cache folder through DALI_CUTMIX_CACHE)."""
    from dali_cutmix.pipelines import scan

    folder = tmp_path_factory.mktemp("scan-cache")
    original = scan.cache_path
    patch = pytest.MonkeyPatch()
    patch.setattr(scan, "cache_path", lambda root: folder / original(root).name)
    yield folder
    patch.undo()
