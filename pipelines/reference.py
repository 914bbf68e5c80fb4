"""The usual alternative the profiler measures against: torchvision ImageFolder + DataLoader with CutMix.

This is the loader most PyTorch training scripts use (torchvision's classification reference recipe):

* ``datasets.ImageFolder`` reads and decodes each JPEG with PIL, in ``num_workers`` worker processes;
* per sample, ``transforms.v2`` (:func:`reference_transform`), with either of the recipe's two backends:
  ``backend="pil"`` (its default): ``RandomResizedCrop`` -> ``RandomHorizontalFlip`` on the PIL image, then
  ``PILToTensor``; ``backend="tensor"`` (its ``--backend tensor``): ``PILToTensor`` first, then
  ``RandomResizedCrop`` -> ``RandomHorizontalFlip`` on the uint8 tensor; then, either way,
  ``ToDtype(float32, scale=True)`` -> ``Normalize`` (ImageNet mean/std);
* per batch, in the collate function (so also in the workers): ``default_collate`` then ``v2.CutMix``,
  which turns the integer labels into float soft labels ``[N, num_classes]``.

The loader yields ``(images, targets)``: float32 ``[N, 3, crop, crop]`` and float32 ``[N, num_classes]`` CPU
tensors, the same shapes and meaning as :class:`dali_cutmix.CutMixLoader` on a CPU pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from dali_cutmix.builder import IMAGENET_MEAN_01, IMAGENET_STD_01
from dali_cutmix.errors import UserError

#: The backends of torchvision's classification recipe (``references/classification/presets.py``): where the
#: PIL image becomes a tensor, after ("pil") or before ("tensor") the random-resized-crop and the flip.
BACKENDS = ("pil", "tensor")


def check_backend(backend) -> str:
    """``backend`` if it is one of :data:`BACKENDS`; raises UserError naming it otherwise."""
    if backend not in BACKENDS:
        raise UserError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def reference_transform(crop: int = 224, backend: str = "pil"):
    """The per-sample torchvision v2 transform of a PIL image: random-resized-crop (bilinear, antialiased) and
    a random horizontal flip, on the PIL image (``backend="pil"``) or on its uint8 tensor (``"tensor"``, as the
    recipe's ``--backend tensor``), then a float32 tensor in [0, 1], normalized: float32 ``[3, crop, crop]``.

    Raises:
        UserError: ``backend`` is not one of :data:`BACKENDS`.
    """
    import torch
    from torchvision.transforms import v2

    to_tensor = [v2.PILToTensor()]
    tensor_first = check_backend(backend) == "tensor"
    return v2.Compose([
        *(to_tensor if tensor_first else []),
        v2.RandomResizedCrop(crop, antialias=True),
        v2.RandomHorizontalFlip(),
        *([] if tensor_first else to_tensor),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(IMAGENET_MEAN_01), std=list(IMAGENET_STD_01)),
    ])


class CutMixCollate:
    """Collate function: stack the samples, then apply ``v2.CutMix`` to the whole batch (torchvision's recipe).

    Returns ``(images, targets)`` with float soft ``targets`` of shape ``[N, num_classes]``.
    """

    def __init__(self, num_classes: int, alpha: float = 1.0):
        from torchvision.transforms import v2

        self.cutmix = v2.CutMix(num_classes=num_classes, alpha=alpha)

    def __call__(self, samples):
        from torch.utils.data import default_collate

        return self.cutmix(*default_collate(samples))


class ListDataset:
    """A map-style dataset over a DALI file list (``path label`` lines, paths relative to the list's folder or
    absolute): item ``i`` is ``(transform(PIL RGB image), label)``, as ``ImageFolder`` gives it. ``classes``
    holds one name per label (``"0"``, ``"1"``, ...)."""

    def __init__(self, path, transform=None):
        from dali_cutmix.folder_reader import read_file_list

        files, labels = read_file_list(path)
        root = Path(path).parent
        self.samples = [(str(root / f), label) for f, label in zip(files, labels)]
        self.targets = list(labels)
        self.classes = [str(i) for i in range(max(labels) + 1)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):
        from torchvision.datasets.folder import default_loader

        path, label = self.samples[index]
        image = default_loader(path)
        return (self.transform(image) if self.transform is not None else image), label


class VisibleImage:
    """``is_valid_file`` for ``ImageFolder`` over ``root``: an image file name with no hidden part below ``root``."""

    def __init__(self, root):
        self.root = str(root)

    def __call__(self, path: str) -> bool:
        import os

        from dali_cutmix.folder_reader import is_hidden, is_image_file

        rel = os.path.relpath(path, self.root)
        return is_image_file(path) and not any(is_hidden(part) for part in Path(rel).parts)


def reference_dataset(data, crop: int = 224, backend: str = "pil"):
    """torchvision's ``ImageFolder`` over the class-per-folder tree ``data``, or a :class:`ListDataset` over a
    DALI file list ``data``, with :func:`reference_transform` (``backend``). The folder's classes are ours
    (:func:`dali_cutmix.folder_reader.list_classes`: a hidden folder is no class) and hidden files are no samples, so its
    labels are the DALI pipeline's.

    Raises:
        UserError: ``data`` is missing or holds no class folder with images; a bad
            ``backend``.
    """
    from torchvision.datasets import ImageFolder

    from dali_cutmix.folder_reader import list_classes

    transform = reference_transform(crop, backend)
    if Path(data).is_file():
        return ListDataset(data, transform)
    classes = list_classes(data)  # a clear error naming the path before torchvision's own
    visible = VisibleImage(data)
    dataset = ImageFolder(str(Path(data)), transform=transform, is_valid_file=visible, allow_empty=True)
    if dataset.classes != classes:  # torchvision counts hidden folders as classes: ours do not
        dataset.classes, dataset.class_to_idx = classes, {c: i for i, c in enumerate(classes)}
        dataset.samples = dataset.make_dataset(str(Path(data)), dataset.class_to_idx, is_valid_file=visible,
                                               allow_empty=True)
        dataset.imgs, dataset.targets = dataset.samples, [label for _, label in dataset.samples]
    return dataset


def build_reference_loader(data, *, batch_size: int, num_workers: int, crop: int = 224,
                           num_classes: Optional[int] = None, alpha: float = 1.0, sampler=None,
                           persistent_workers: bool = True, prefetch_factor: int = 2, pin_memory: bool = False,
                           seed: int = 0, backend: str = "pil"):
    """A ``torch.utils.data.DataLoader`` yielding CutMix-ed ``(images, targets)`` batches from ``data``.

    Args:
        data: class-per-folder image tree ``data/<class>/<image>``, or a DALI file list.
        batch_size: samples per batch; full batches only (``drop_last=True``), like a training loop.
        num_workers: worker processes (>= 1); the profiler sets it to DALI's thread count.
        crop: output size. num_classes: soft-label width (default: the classes found). alpha: CutMix's Beta alpha.
        sampler: optional sampler (e.g. a fixed number of random indices per epoch); default: shuffle.
        persistent_workers: keep the workers between epochs, so their start-up is paid once.
        prefetch_factor: batches each worker prepares ahead (PyTorch's default 2).
        pin_memory: pin the batches (for a fast copy to a GPU). seed: seeds the shuffle.
        backend: where the transform makes the tensor, "pil" (after the crop) or "tensor" (before it): see
            :func:`reference_transform`.

    Raises:
        UserError: a bad argument, naming it; ``data`` does not exist.
    """
    import torch
    from torch.utils.data import DataLoader

    for name, value in (("batch_size", batch_size), ("num_workers", num_workers), ("crop", crop)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be an integer >= 1, got {value!r}")
    dataset = reference_dataset(data, crop, backend)
    num_classes = len(dataset.classes) if num_classes is None else num_classes
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, drop_last=True,
        num_workers=num_workers, collate_fn=CutMixCollate(num_classes, alpha), pin_memory=pin_memory,
        persistent_workers=persistent_workers, prefetch_factor=prefetch_factor, generator=generator)
