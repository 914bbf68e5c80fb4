"""A data set as data sets are: an ImageNet-layout tree with bad files, odd but usable ones, files that are not
images and a hidden folder, made by the tests themselves (nothing is downloaded).

:data:`BAD` and :data:`ODD` name every planted file (relative to the root) with what the scan must say.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

PALETTE = ((200, 40, 40), (40, 170, 60), (50, 70, 210), (210, 190, 40))
CLASSES = tuple(f"class{c}" for c in range(len(PALETTE)))

#: Bad files: path -> a fragment of the reason the scan gives.
BAD = {
    "train/class0/zero.jpg": "empty file",
    "train/class0/half.jpg": "truncated",
    "train/class1/no_end.jpg": "no JPEG end marker",
    "train/class1/notes.JPEG": "text",
    "train/class2/error_page.jpg": "HTML page",
    "train/class2/garbage.jpg": "JPEG header",
    "val/class3/broken.jpg": "truncated",
}
#: Odd but usable files: path -> a fragment of the kinds the scan names.
ODD = {
    "train/class0/png_named.jpg": "PNG named .jpg",
    "train/class1/cmyk.jpg": "CMYK",
    "train/class2/gray.jpg": "grayscale",
    "train/class3/progressive.jpg": "progressive",
    "train/class3/rotated.jpg": "EXIF-rotated",
    "train/class0/tiny.jpg": "tiny (2x2)",
}
#: Not images: left out, never samples.
NOT_IMAGES = ("train/class0/.DS_Store", "train/class1/README.txt")
HIDDEN_FOLDER = "train/.ipynb_checkpoints"


def colour_image(colour, rng, size=40) -> np.ndarray:
    """A learnable image of one colour with random brightness, a faint wave and noise (uint8 HWC RGB)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    wave = np.sin(2 * np.pi * rng.uniform(1, 4) * (xx * rng.uniform(-1, 1) + yy) + rng.uniform(0, 6.3))
    img = np.array(colour) * rng.uniform(0.6, 1.1) + 40 * wave[..., None] + rng.normal(0, 20, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(image, fmt="JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def write_zoo(root, *, train_per_class=16, val_per_class=6, size=40, seed=0) -> Path:
    """Write the zoo under ``root`` (ImageNet layout, 4 colour classes): ``train_per_class`` / ``val_per_class``
    good JPEGs per class plus the files of :data:`BAD`, :data:`ODD`, :data:`NOT_IMAGES` and the empty hidden
    folder :data:`HIDDEN_FOLDER`. The odd files are images of their class's colour. Returns ``root``."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c, colour in enumerate(PALETTE):
            folder = root / split / CLASSES[c]
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(colour_image(colour, rng, size)).save(folder / f"{i:03d}.jpg", quality=90)
    good = (root / "train" / "class0" / "000.jpg").read_bytes()

    def pixels(path):
        return Image.fromarray(colour_image(PALETTE[CLASSES.index(Path(path).parent.name)], rng, size))

    contents = {
        "train/class0/zero.jpg": b"",
        "train/class0/half.jpg": good[:len(good) // 2],
        "train/class1/no_end.jpg": good[:-2],
        "train/class1/notes.JPEG": b"class notes: these images were scraped on Tuesday\n",
        "train/class2/error_page.jpg": b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
                                       b"<body><h1>Not Found</h1></body></html>\n",
        "train/class2/garbage.jpg": b"\xff\xd8\xff" + np.random.default_rng(1).bytes(700),
        "val/class3/broken.jpg": (root / "val" / "class3" / "000.jpg").read_bytes()[:300],
    }
    exif = Image.Exif()
    exif[0x0112] = 6
    odd = {
        "train/class0/png_named.jpg": lambda p: encode(pixels(p), "PNG"),
        "train/class1/cmyk.jpg": lambda p: encode(pixels(p).convert("CMYK"), quality=90),
        "train/class2/gray.jpg": lambda p: encode(pixels(p).convert("L"), quality=90),
        "train/class3/progressive.jpg": lambda p: encode(pixels(p), quality=90, progressive=True),
        "train/class3/rotated.jpg": lambda p: encode(pixels(p), quality=90, exif=exif.tobytes()),
        "train/class0/tiny.jpg": lambda p: encode(pixels(p).resize((2, 2)), quality=90),
    }
    for path, make in odd.items():
        contents[path] = make(path)
    contents["train/class0/.DS_Store"] = b"\x00\x00\x00\x01Bud1" + bytes(64)
    contents["train/class1/README.txt"] = b"where these images came from\n"
    for path, data in contents.items():
        (root / path).write_bytes(data)
    (root / HIDDEN_FOLDER).mkdir()
    return root


def good_files(root, split):
    """Every usable image file of ``split`` (the good JPEGs and the odd ones), relative to ``root/split``."""
    root = Path(root) / split
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            if name.startswith(".") or not name.lower().endswith((".jpg", ".jpeg")):
                continue
            if f"{split}/{rel}" not in BAD:
                found.add(rel)
    return found


def without_segments(jpeg: bytes, code: int) -> bytes:
    """``jpeg`` with every header segment of marker ``0xFF<code>`` removed (0xDB: the quantization tables): the
    header still parses, the end marker is there, only a decoder finds the file broken."""
    import struct

    out, pos = bytearray(jpeg[:2]), 2
    while jpeg[pos + 1] != 0xDA:
        (length,) = struct.unpack(">H", jpeg[pos + 2:pos + 4])
        if jpeg[pos + 1] != code:
            out += jpeg[pos:pos + 2 + length]
        pos += 2 + length
    return bytes(out + jpeg[pos:])
