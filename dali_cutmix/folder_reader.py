"""Where the images are: the class list of a class-per-folder tree (ours: the one DALI reads), its samples and
file lists. :mod:`dali_cutmix.imagecheck` checks one file.

Hidden names (starting with ".") are never classes or samples: an empty ``train/.ipynb_checkpoints`` left by
Jupyter, macOS's ``.DS_Store`` and ``._photo.jpg``. DALI's own folder reader would count a hidden folder as a
class; every pipeline here hands DALI a file list made from :func:`list_classes` and :func:`list_samples`
instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

from .errors import UserError
from .helpers.text import plural

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: How the ImageNet validation images that ship as one flat folder are usually sorted into class folders.
FLAT_VAL_HINT = ("sort them into class folders first, e.g. with the widely used valprep.sh that the PyTorch "
                 "ImageNet example's extract_ILSVRC.sh runs (github.com/pytorch/examples, imagenet/)")


def is_image_file(name: str) -> bool:
    """Whether a file name has one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is hidden (starts with "."): never a class, never a sample."""
    return name.startswith(".")


def _loose_images(root: Path) -> List[str]:
    with os.scandir(root) as it:
        return [e.name for e in it if not is_hidden(e.name) and e.is_file() and is_image_file(e.name)]


def is_imagenet_val(root: Path, images: Sequence[str]) -> bool:
    """Whether a flat folder looks like ImageNet's validation split as it ships: named ``val`` (or ``val/`` under
    an ImageNet root), or holding images named ``ILSVRC2012_val_*``."""
    return Path(root).name == "val" or any(name.startswith("ILSVRC2012_val_") for name in images)


def not_a_folder(root) -> UserError:
    """The one line for a data path that is not a folder: it is missing, or a file (an image, a list) where a
    class-per-folder tree ``root/<class>/<image>`` is expected."""
    root = Path(root)
    if root.is_file():
        what = "an image file" if is_image_file(root.name) else "a file"
        return UserError(f"data path {str(root)!r} is {what}, expected a folder {str(root)}/<class>/<image>")
    return UserError(f"data path {str(root)!r} does not exist")


def list_classes(root) -> List[str]:
    """Class names of a class-per-folder tree ``root/<class>/<image>``, sorted: label ``i`` is ``classes[i]``.

    Hidden folders are not classes; a class folder may be empty (it keeps its label).

    Raises:
        UserError: ``root`` does not exist or is not a directory.
        UserError: ``root`` has no class folder holding an image; the message says when ``root`` is a flat
            folder of images (as ImageNet's ``val/`` ships) and how to sort it.
    """
    root = Path(root)
    if not root.is_dir():
        raise not_a_folder(root)
    with os.scandir(root) as it:
        classes = sorted(e.name for e in it if e.is_dir() and not is_hidden(e.name))
    for name in classes:
        if next(iter_samples(root / name), None) is not None:
            return classes
    loose = _loose_images(root)
    if loose:
        start = (f"data path {str(root)!r} is a flat folder: it holds {plural(len(loose), 'image')} directly and none in "
                 f"class folders")
        if is_imagenet_val(root, loose):
            raise UserError(f"{start} (ImageNet's val/ ships this way); {FLAT_VAL_HINT}, so that it reads "
                            f"{str(root)}/<class>/<image>")
        raise UserError(f"{start}: sort them into one folder per class, so that it reads "
                        f"{str(root)}/<class>/<image>")
    raise UserError(
        f"data path {str(root)!r} holds no images: expected class folders {str(root)}/<class>/<image> "
        f"(extensions {', '.join(IMAGE_EXTENSIONS)})")


#: What :func:`walk_tree` says about an entry.
IMAGE, OTHER, HIDDEN = "image", "other", "hidden"


def walk_tree(folder) -> Iterator[Tuple[str, os.DirEntry, str]]:
    """Every entry under ``folder`` (its subfolders too, following links, each real folder once), as
    ``(path relative to folder with "/", entry, kind)``: kind :data:`IMAGE` (a file name with an image
    extension), :data:`OTHER` (another file) or :data:`HIDDEN` (a dot-name: never descended into). Folders are
    descended, not yielded. Per folder, entries come sorted by name, files before the subfolders' entries; a
    folder that vanishes or cannot be read is passed over."""
    folder = Path(folder)
    stack, seen = [""], set()
    while stack:
        rel = stack.pop()
        here = folder / rel if rel else folder
        try:
            st = here.stat()
            if (st.st_dev, st.st_ino) in seen:  # a link back up the tree
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(here) as it:
                entries = sorted(it, key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        subdirs = []
        for e in entries:
            path = f"{rel}/{e.name}" if rel else e.name
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            if is_hidden(e.name):
                yield path, e, HIDDEN
            elif is_dir:
                subdirs.append(path)
            else:
                yield path, e, IMAGE if is_image_file(e.name) else OTHER
        stack.extend(reversed(subdirs))


def iter_samples(folder) -> Iterator[str]:
    """Image files under ``folder`` (:func:`walk_tree`: its subfolders too, following links, hidden names left
    out), as paths relative to it with "/"."""
    for path, entry, kind in walk_tree(folder):
        if kind == IMAGE and entry.is_file():
            yield path


def list_samples(root, classes: Optional[Sequence[str]] = None) -> Tuple[List[str], List[int]]:
    """``(files, labels)`` of a class-per-folder tree: every image file under ``root/<class>/`` (relative to
    ``root``, sorted by class, then by path as a string) and its class's position in ``classes`` (default:
    :func:`list_classes` of ``root``; pass the training split's classes for a validation split). Hidden names
    are left out; a class of ``classes`` without a folder under ``root`` has no samples.
    """
    root = Path(root)
    classes = list_classes(root) if classes is None else list(classes)
    files, labels = [], []
    for label, name in enumerate(classes):
        for rel in sorted(iter_samples(root / name)):
            files.append(f"{name}/{rel}")
            labels.append(label)
    return files, labels


@dataclass(frozen=True)
class ImageList:
    """Image files and their labels, what a DALI file list holds, in memory (for
    :func:`dali_cutmix.build_cutmix_pipeline` and the validation pipeline).

    ``files`` are relative to ``root`` (or absolute); ``labels[i]`` is the class id of ``files[i]``, in
    ``[0, len(classes))`` when ``classes`` (the class names in label order) is given.
    """

    root: Path
    files: Tuple[str, ...]
    labels: Tuple[int, ...]
    classes: Tuple[str, ...] = ()

    def __post_init__(self):
        if len(self.files) != len(self.labels):
            raise UserError(f"ImageList has {len(self.files)} files but {len(self.labels)} labels")
        if not self.files:
            raise UserError(f"image list of {str(self.root)!r} holds no images")

    @classmethod
    def from_folder(cls, root) -> "ImageList":
        """Every image of the class-per-folder tree ``root`` with its label (:func:`list_samples`)."""
        root = Path(root)
        classes = list_classes(root)
        files, labels = list_samples(root, classes)
        return cls(root=root, files=tuple(files), labels=tuple(labels), classes=tuple(classes))

    @property
    def num_classes(self) -> int:
        """``len(classes)`` when known, else ``max(labels) + 1``."""
        return len(self.classes) if self.classes else max(self.labels) + 1

    def path(self, file: str) -> Path:
        """The full path of one of ``files``."""
        return self.root / file


def read_file_list(path) -> Tuple[List[str], List[int]]:
    """Parse a DALI file list (``path label`` per line; paths relative to the list's folder, or absolute; a
    path may hold spaces: the label is the last field).

    Raises:
        UserError: the list does not exist; it is empty or a line is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file list {str(path)!r} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        what = "an image file" if is_image_file(path.name) else "a file that is not text"
        raise UserError(f"{str(path)!r} is {what}, expected a folder DIR/<class>/<image> or a DALI file list "
                        f"('path label' lines)") from None
    files, labels = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise UserError(f"file list {str(path)!r} line {lineno}: expected 'path label', got {line!r}")
        files.append(parts[0])
        labels.append(int(parts[1]))
    if not files:
        raise UserError(f"file list {str(path)!r} holds no images")
    return files, labels


def image_list(data) -> ImageList:
    """``data`` as an :class:`ImageList`: a class-per-folder tree (:meth:`ImageList.from_folder`), a DALI file
    list (paths relative to its folder), or an ImageList (returned as it is).

    Raises:
        UserError: as :func:`list_classes` / :func:`read_file_list`.
    """
    if isinstance(data, ImageList):
        return data
    from .shard_reader import is_shard_folder

    if is_shard_folder(data):
        raise UserError(f"{str(getattr(data, 'location', data))!r} is a shard folder (dali-cutmix shard): its images "
                         f"are in tar files, not a file list or class folders")
    data = Path(data)
    if data.is_file():
        files, labels = read_file_list(data)
        return ImageList(root=data.parent, files=tuple(files), labels=tuple(labels))
    return ImageList.from_folder(data)


def count_classes(data) -> int:
    """Number of classes of ``data``: class folders of a tree, ``max(label) + 1`` of a file list or of an
    :class:`ImageList` without class names, the manifest's classes of a shard folder (local or ``s3://``, see
    :mod:`dali_cutmix.shard_reader`)."""
    if isinstance(data, ImageList):
        return data.num_classes
    from .shard_reader import as_shards, is_shard_folder

    if is_shard_folder(data):
        return as_shards(data).num_classes
    data = Path(data)
    if data.is_file():
        return max(read_file_list(data)[1]) + 1
    return len(list_classes(data))
