"""The preview grid: a PNG of mixed training images, each with its box outlined and its two label weights."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import atomic_path


def render_grid(images: np.ndarray, boxes: np.ndarray, targets: np.ndarray, labels: np.ndarray,
                perm: np.ndarray, class_names: Sequence[str], columns: int = 4, scale: int = 2):
    """Compose a PIL image: one tile per sample with its CutMix box (red) and a caption.

    Args:
        images: uint8 [N, H, W, 3] mixed images. boxes: int [N, 4] ``[y0, x0, y1, x1]``.
        targets: float [N, C] soft labels. labels: int [N] own class ids. perm: int [N] partner indices.
        class_names: names of the C classes. columns: tiles per row. scale: pixel zoom of each tile.
    """
    from PIL import Image, ImageDraw, ImageFont

    n, h, w, _ = images.shape
    th, tw = h * scale, w * scale
    caption = 14 * scale + 6
    rows = (n + columns - 1) // columns
    canvas = Image.new("RGB", (columns * (tw + 8) + 8, rows * (th + caption + 8) + 8), "white")
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=11 * scale // 2 + 4)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        font = ImageFont.load_default()
    for i in range(n):
        r, c = divmod(i, columns)
        x, y = 8 + c * (tw + 8), 8 + r * (th + caption + 8)
        canvas.paste(Image.fromarray(images[i]).resize((tw, th), Image.NEAREST), (x, y))
        y0, x0, y1, x1 = (int(v) * scale for v in boxes[i])
        if y1 > y0 and x1 > x0:
            draw.rectangle([x + x0, y + y0, x + x1 - 1, y + y1 - 1], outline=(255, 0, 0), width=2)
        own, partner = int(labels[i]), int(labels[perm[i]])
        text = f"{class_names[own]} {targets[i, own]:.2f}"
        if partner != own and targets[i, partner] > 0:
            text += f"\n{class_names[partner]} {targets[i, partner]:.2f}"
        elif partner == own:
            text += " (same class)"
        draw.multiline_text((x, y + th + 2), text, fill=(0, 0, 0), font=font, spacing=2)
    return canvas


def write_preview(data, out, *, count: int = 8, crop: int = 160, mix_options=None, seed: int = 0,
                  device: str = "cpu", columns: int = 4) -> Path:
    """Run the training pipeline up to the mixing stage on ``data`` and write the grid to ``out``.

    ``data``: a class-per-folder tree, a DALI file list or an :class:`~dali_cutmix.data.ImageList` (say, the
    usable files of a scan). ``mix_options``: :class:`dali_cutmix.MixOptions` or a mapping of its fields (default
    ``MixOptions()``).

    Returns the PNG's path. Raises FileNotFoundError/ValueError for a bad ``data`` or argument,
    :class:`~dali_cutmix.imagecheck.BadFileError` naming a file DALI cannot read.
    """
    from .data import image_list
    from .loader import CutMixLoader
    from .pipeline import build_cutmix_pipeline

    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    images = image_list(data)
    class_names = list(images.classes) or [str(i) for i in range(images.num_classes)]
    pipe = build_cutmix_pipeline(
        images, batch_size=count, crop=crop, device=device, mix_options=mix_options, seed=seed, stop_after="mix",
        num_threads=2, return_params=True, prefetch_queue_depth=1)
    loader = CutMixLoader(pipe, output_names=("images", "labels", "perm", "box", "lam", "method", "class_id"))
    images, targets, perm, box, _lam, _method, class_id = (t.cpu().numpy() for t in next(iter(loader)))
    grid = render_grid(images, box, targets, class_id.reshape(-1), perm, class_names, columns=columns)
    out = Path(out)
    with atomic_path(out) as tmp:
        grid.save(tmp, format="PNG")
    return out
