"""The profiler's data set: ImageNet-like JPEGs (500x375, ~100 KB each), generated once into a cache folder."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np

from dali_cutmix.errors import UserError
from dali_cutmix.helpers.host import cache_dir

PROFILE_DATA_VERSION = "profile-v1"


def quiet(_message: str) -> None:
    """A progress sink that says nothing (the default)."""


def render_photo_like(rng: np.random.Generator, height: int = 375, width: int = 500, grain: float = 18.0
                      ) -> np.ndarray:
    """A uint8 HWC RGB image with a JPEG cost close to a photo's: waves of several scales plus grain.

    At 500x375, JPEG quality 90, ``grain=18`` gives ~100 KB files (ImageNet's average is ~110 KB).
    """
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    waves = []
    for _ in range(6):
        fx, fy = rng.uniform(0.005, 0.12, size=2).astype(np.float32)
        phase = np.float32(rng.uniform(0, 2 * np.pi))
        u, v = x * fx + phase, y * fy  # sin(u + v) from 1-D tables: cheap
        waves.append(np.sin(v) * np.cos(u) + np.cos(v) * np.sin(u))
    amplitude = rng.uniform(10, 45, size=(len(waves), 3)).astype(np.float32)
    image = np.tensordot(np.stack(waves, -1), amplitude, axes=1)
    image += rng.uniform(60, 190, size=3).astype(np.float32)
    coarse = rng.standard_normal((height // 2 + 1, width // 2 + 1, 3), dtype=np.float32)
    image += grain * coarse.repeat(2, 0).repeat(2, 1)[:height, :width]
    image += grain / 2 * rng.standard_normal((height, width, 3), dtype=np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_profile_dataset(root, *, images: int = 1024, classes: int = 10, size: Tuple[int, int] = (375, 500),
                         quality: int = 90, seed: int = 0, progress: Callable[[str], None] = quiet) -> Path:
    """Write ``images`` photo-like JPEGs as ``root/<class>/<i>.jpg`` (class-per-folder), atomically.

    The tree appears whole or not at all (written in a temporary folder, then renamed); an existing ``root``
    holding class folders is returned as it is. ``size`` is (height, width); images are spread evenly over
    ``min(classes, images)`` classes. Returns ``root``.

    Raises:
        UserError: ``images``, ``classes``, ``size`` or ``quality`` out of range.
    """
    from PIL import Image

    from dali_cutmix.helpers.atomic import atomic_directory

    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise UserError(f"images must be an integer >= 1, got {images!r}")
    if classes < 1:
        raise UserError(f"classes must be >= 1, got {classes!r}")
    if len(size) != 2 or min(size) < 8:
        raise UserError(f"size must be (height, width), each >= 8, got {size!r}")
    if not 1 <= quality <= 100:
        raise UserError(f"quality must be in [1, 100], got {quality!r}")
    root = Path(root)
    if root.is_dir() and any(p.is_dir() for p in root.iterdir()):
        return root
    classes = min(classes, images)
    with atomic_directory(root) as tmp:
        rng = np.random.default_rng(seed)
        for c in range(classes):
            (tmp / f"class{c:03d}").mkdir()
        for i in range(images):
            if i % 128 == 0:
                progress(f"generating JPEGs: {i}/{images}")
            pixels = render_photo_like(rng, *size)
            Image.fromarray(pixels).save(tmp / f"class{i % classes:03d}" / f"{i:06d}.jpg", quality=quality)
    return root


def default_profile_dataset(images: int = 1024, progress: Callable[[str], None] = quiet) -> Path:
    """The generated data set of ``images`` ~100 KB JPEGs in the cache folder, made on first use."""
    return make_profile_dataset(cache_dir() / f"{PROFILE_DATA_VERSION}-{images}", images=images,
                                progress=progress)


def dataset_summary(data, sample: int = 256) -> Dict[str, object]:
    """Count the images and classes of ``data`` (a class-per-folder tree, read through our class list, a DALI
    file list, or a shard folder); mean file size and pixel size over up to ``sample`` files (a shard folder's
    first ``sample`` samples).

    Raises:
        UserError: ``data`` is missing or holds no images (from
            :func:`dali_cutmix.folder_reader.image_list`).
    """
    from PIL import Image

    from dali_cutmix.folder_reader import image_list
    from dali_cutmix.shard_reader import as_shards, first_images, is_shard_folder

    if is_shard_folder(data):  # tar shards (dali-cutmix shard): sizes of the first samples, read through DALI
        import io

        shards = as_shards(data)
        encoded = first_images(shards, sample)
        dims = []
        for blob in encoded:
            with Image.open(io.BytesIO(blob)) as im:
                dims.append(im.size)
        return dict(path=shards.location, images=shards.samples, classes=shards.num_classes,
                    mean_file_kb=round(float(np.mean([len(b) for b in encoded])) / 1000, 1),
                    mean_width=round(float(np.mean([d[0] for d in dims])), 1),
                    mean_height=round(float(np.mean([d[1] for d in dims])), 1))
    images = image_list(data)
    files = sorted(images.path(f) for f in images.files)
    picked = files[:: max(1, len(files) // sample)][:sample]
    sizes = [p.stat().st_size for p in picked]
    dims = []
    for p in picked:
        with Image.open(p) as im:
            dims.append(im.size)
    return dict(path=str(data), images=len(files), classes=images.num_classes,
                mean_file_kb=round(float(np.mean(sizes)) / 1000, 1),
                mean_width=round(float(np.mean([d[0] for d in dims])), 1),
                mean_height=round(float(np.mean([d[1] for d in dims])), 1))
