"""Where the images are: checks a class-per-folder tree or a file list before DALI reads it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Tuple

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(name: str) -> bool:
    """Whether a file name has one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def list_classes(root) -> List[str]:
    """Class names of a class-per-folder tree ``root/<class>/<image>``, sorted as DALI's file reader labels them.

    Raises:
        FileNotFoundError: ``root`` does not exist or is not a directory.
        ValueError: ``root`` has no class folder holding an image.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data path {str(root)!r} does not exist or is not a directory")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    for name in classes:
        with os.scandir(root / name) as it:
            if any(e.is_file() and is_image_file(e.name) for e in it):
                return classes
    raise ValueError(
        f"data path {str(root)!r} holds no images: expected class folders {str(root)}/<class>/<image> "
        f"(extensions {', '.join(IMAGE_EXTENSIONS)})")


def read_file_list(path) -> Tuple[List[str], List[int]]:
    """Parse a DALI file list (``relative/path label`` per line, paths relative to the list's folder).

    Raises:
        FileNotFoundError: the list does not exist. ValueError: it is empty or a line is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file list {str(path)!r} does not exist")
    files, labels = [], []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"file list {str(path)!r} line {lineno}: expected 'path label', got {line!r}")
        files.append(parts[0])
        labels.append(int(parts[1]))
    if not files:
        raise ValueError(f"file list {str(path)!r} holds no images")
    return files, labels


def count_classes(data) -> int:
    """Number of classes of ``data``: class folders of a tree, or ``max(label) + 1`` of a file list."""
    data = Path(data)
    if data.is_file():
        return max(read_file_list(data)[1]) + 1
    return len(list_classes(data))
