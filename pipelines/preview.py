"""The preview grid: a PNG of mixed training images, each with its box outlined and its two label weights."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from dali_cutmix.errors import UserError
from dali_cutmix.helpers.atomic import atomic_path

#: The arrays :func:`preview_batch` returns, in the order the preview pipeline outputs them.
PREVIEW_OUTPUTS = ("images", "targets", "perm", "box", "lam", "method", "class_id")


def caption(own: int, partner: Optional[int], method: int, targets: np.ndarray, class_names: Sequence[str]) -> str:
    """A tile's caption: the own class and its label weight, then the partner's class and weight. ``partner``:
    the partner's class id, None when the sample was paired with itself. "(not mixed)" for a sample the stage
    left as it is (``method`` 0), "(mixed with itself)" for one paired with itself, "(same class)" for a partner
    of the own class (one weight)."""
    if method == 0:
        return f"{class_names[own]} (not mixed)"
    if partner is None:
        return f"{class_names[own]} (mixed with itself)"
    text = f"{class_names[own]} {targets[own]:.2f}"
    if partner == own:
        return text + " (same class)"
    return text + f"\n{class_names[partner]} {targets[partner]:.2f}"


def render_grid(images: np.ndarray, boxes: np.ndarray, targets: np.ndarray, labels: np.ndarray,
                perm: np.ndarray, class_names: Sequence[str], columns: int = 4, scale: int = 2,
                methods: Optional[np.ndarray] = None, title: Optional[str] = None):
    """Compose a PIL image: one tile per sample with its CutMix box (red) and a caption (:func:`caption`).

    Args:
        images: uint8 [N, H, W, 3] mixed images. boxes: int [N, 4] ``[y0, x0, y1, x1]``.
        targets: float [N, C] soft labels. labels: int [N] own class ids. perm: int [N] partner indices (in
            ``[0, N)``). class_names: names of the C classes. columns: tiles per row. scale: pixel zoom of each
            tile. methods: int [N], the stage's ``method`` (0 not mixed, 1 CutMix, 2 MixUp); default: every sample
            mixed. title: a line above the tiles, or None.
    """
    from PIL import Image, ImageDraw, ImageFont

    n, h, w, _ = images.shape
    methods = np.ones(n, dtype=np.int32) if methods is None else np.asarray(methods).reshape(-1)
    th, tw = h * scale, w * scale
    caption_h = 14 * scale + 6
    top = 0 if title is None else caption_h
    rows = (n + columns - 1) // columns
    canvas = Image.new("RGB", (columns * (tw + 8) + 8, top + rows * (th + caption_h + 8) + 8), "white")
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=11 * scale // 2 + 4)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        font = ImageFont.load_default()
    if title is not None:
        draw.text((8, 6), title, fill=(0, 0, 0), font=font)
    for i in range(n):
        r, c = divmod(i, columns)
        x, y = 8 + c * (tw + 8), top + 8 + r * (th + caption_h + 8)
        canvas.paste(Image.fromarray(images[i]).resize((tw, th), Image.NEAREST), (x, y))
        y0, x0, y1, x1 = (int(v) * scale for v in boxes[i])
        if y1 > y0 and x1 > x0:
            draw.rectangle([x + x0, y + y0, x + x1 - 1, y + y1 - 1], outline=(255, 0, 0), width=2)
        j = int(perm[i])
        text = caption(int(labels[i]), None if j == i else int(labels[j]), int(methods[i]), targets[i], class_names)
        draw.multiline_text((x, y + th + 2), text, fill=(0, 0, 0), font=font, spacing=2)
    return canvas


def check_count(count, name: str = "count") -> int:
    """``count`` if it is an integer >= 2 (one image cannot be mixed with another); ValueError naming it as
    ``name`` (a caller's argument or flag name) otherwise."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 2:
        raise UserError(f"{name} must be an integer >= 2 (a preview mixes each image with another one), got "
                         f"{count!r}")
    return count


def preview_batch(data, *, count: int = 8, crop: int = 160, mix_options=None, seed: int = 0,
                  device: str = "cpu", augment="none") -> Dict[str, np.ndarray]:
    """The first batch of the training pipeline cut after the mixing stage, as NumPy arrays named by
    :data:`PREVIEW_OUTPUTS` (images uint8 [N, crop, crop, 3]; ``class_id`` int [N]; the rest as
    :func:`dali_cutmix.mix`'s params).

    Partners are drawn with ``self_pairs=False`` whatever ``mix_options`` says: every mixed tile shows another
    image. ``N`` is ``count``, or every image of ``data`` when it holds fewer (the partial batch: they are mixed
    among themselves). ``data``, ``mix_options``, ``augment``: as :func:`write_preview`; augmented images (mixed
    after normalization) are shown de-normalized, rounded and clipped to uint8.
    """
    from dali_cutmix.augment_options import AugmentOptions
    from dali_cutmix.builder import IMAGENET_MEAN, IMAGENET_STD, build_cutmix_pipeline
    from dali_cutmix.folder_reader import image_list
    from dali_cutmix.loader import CutMixLoader
    from dali_cutmix.options import MixOptions
    from dali_cutmix.shard_reader import as_shards, is_shard_folder

    check_count(count)
    options = MixOptions.coerce(mix_options).replace(self_pairs=False)
    augmenting = AugmentOptions.coerce(augment)
    images = as_shards(data) if is_shard_folder(data) else image_list(data)
    pipe = build_cutmix_pipeline(
        images, batch_size=count, crop=crop, device=device, mix_options=options, seed=seed, stop_after="mix",
        num_threads=2, return_params=True, prefetch_queue_depth=1, shuffle=True, augment=augmenting)
    loader = CutMixLoader(pipe, output_names=("images", "labels", "perm", "box", "lam", "method", "class_id"))
    arrays = [t.cpu().numpy() for t in next(iter(loader))]
    arrays[-1] = arrays[-1].reshape(-1)
    if augmenting.active:  # normalized floats: back to pixels for display
        pixels = arrays[0] * np.float32(IMAGENET_STD) + np.float32(IMAGENET_MEAN)
        arrays[0] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return dict(zip(PREVIEW_OUTPUTS, arrays))


def write_preview(data, out, *, count: int = 8, crop: int = 160, mix_options=None, seed: int = 0,
                  device: str = "cpu", columns: int = 4, augment="none") -> Path:
    """Run the training pipeline up to the mixing stage on ``data`` and write the grid to ``out``.

    ``data``: a class-per-folder tree, a DALI file list, an :class:`~dali_cutmix.folder_reader.ImageList` (say, the
    usable files of a scan) or a shard folder (:mod:`dali_cutmix.shard_reader`). ``mix_options``:
    :class:`dali_cutmix.MixOptions` or a mapping of its fields (default ``MixOptions()``); its ``self_pairs`` is
    ignored: every tile is mixed with another image (:func:`preview_batch`), unless the options leave it unmixed
    (``prob`` < 1, the odd one out in pair mode), which its caption says ("not mixed"). ``count`` (>= 2) tiles;
    when ``data`` holds fewer images, all of them, and a line above the grid says so. ``augment``: the per-image
    augmentation before mixing, as :func:`dali_cutmix.build_cutmix_pipeline` takes it (a preset name or
    :class:`dali_cutmix.AugmentOptions`).

    Returns the PNG's path. Raises UserError for a bad ``data`` or argument (``count`` < 2),
    :class:`~dali_cutmix.imagecheck.BadFileError` naming a file DALI cannot read.
    """
    from dali_cutmix.folder_reader import image_list
    from dali_cutmix.shard_reader import as_shards, is_shard_folder

    check_count(count)
    source = as_shards(data) if is_shard_folder(data) else image_list(data)  # both know their classes
    class_names = list(source.classes) or [str(i) for i in range(source.num_classes)]
    batch = preview_batch(source, count=count, crop=crop, mix_options=mix_options, seed=seed, device=device,
                          augment=augment)
    shown = len(batch["images"])
    title = None if shown == count else f"all {shown} images of the data (fewer than count={count})"
    grid = render_grid(batch["images"], batch["box"], batch["targets"], batch["class_id"], batch["perm"],
                       class_names, columns=columns, methods=batch["method"], title=title)
    out = Path(out)
    with atomic_path(out) as tmp:
        grid.save(tmp, format="PNG")
    return out
