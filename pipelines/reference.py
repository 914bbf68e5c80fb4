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

With ``augment="paper"``, the transform is the official CutMix ImageNet recipe's (clovaai/CutMix-PyTorch,
``train.py``): its ``utils.ColorJitter(0.4, 0.4, 0.4)`` and ``utils.Lighting(0.1)`` (:class:`OfficialColorJitter`,
:class:`OfficialLighting`) on the float tensor in [0, 1], before ``Normalize``; other strengths as our
pipeline's :class:`dali_cutmix.AugmentOptions` give them.

The loader yields ``(images, targets)``: float32 ``[N, 3, crop, crop]`` and float32 ``[N, num_classes]`` CPU
tensors, the same shapes and meaning as :class:`dali_cutmix.CutMixLoader` on a CPU pipeline.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from dali_cutmix.augment import GRAY_WEIGHTS, LIGHTING_EIGVAL, LIGHTING_EIGVEC  # the official values, once
from dali_cutmix.augment_options import AugmentOptions
from dali_cutmix.builder import IMAGENET_MEAN_01, IMAGENET_STD_01
from dali_cutmix.errors import UserError
from dali_cutmix.helpers.workers import worker_context

#: The backends of torchvision's classification recipe (``references/classification/presets.py``): where the
#: PIL image becomes a tensor, after ("pil") or before ("tensor") the random-resized-crop and the flip.
BACKENDS = ("pil", "tensor")


def check_backend(backend) -> str:
    """``backend`` if it is one of :data:`BACKENDS`; raises UserError naming it otherwise."""
    if backend not in BACKENDS:
        raise UserError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def reference_augment(augment) -> AugmentOptions:
    """``augment`` (a preset name of :data:`dali_cutmix.augment_options.PRESETS`, :class:`AugmentOptions` or a
    mapping of its fields) as AugmentOptions, if the reference applies it: the official ColorJitter and Lighting
    with any strengths, no per-image policy and no random erasing.

    Raises:
        UserError: an unknown preset or a bad option (``AugmentOptions``' own error); a policy or random erasing,
            naming them.
    """
    options = AugmentOptions.coerce(augment)
    if options.auto_augment != "none" or options.erase_prob:
        raise UserError(f"the torchvision reference applies the official ColorJitter and Lighting only, not "
                        f"auto_augment {options.auto_augment!r} or random erasing (erase_prob {options.erase_prob:g})")
    return options


class OfficialColorJitter:
    """clovaai/CutMix-PyTorch's ``utils.ColorJitter(brightness, contrast, saturation)`` on a float32 ``[3, H, W]``
    RGB tensor in [0, 1] (returned new, same shape and dtype; values may leave [0, 1], as the official ones do).

    Per image, the non-zero ones of brightness, contrast and saturation in a random order (Python's ``random``,
    as the official ``random.shuffle``), each ``img.lerp(target, a)`` = ``img + a * (target - img)`` with
    ``a ~ U(-var, var)`` drawn as it is applied: brightness's target is black, contrast's the mean of the image's
    grayscale (0.299 R + 0.587 G + 0.114 B), saturation's the grayscale of each pixel. :meth:`draw` draws the
    factors, :meth:`apply` applies given ones."""

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4):
        self.variances = dict(brightness=brightness, contrast=contrast, saturation=saturation)

    def draw(self, rng=random) -> List[Tuple[str, float]]:
        """The factors of one image, in the order they apply: ``[(name, a), ...]`` (the official draws: one
        shuffle of the non-zero ones, then one uniform each)."""
        order = [name for name, var in self.variances.items() if var != 0]
        rng.shuffle(order)
        return [(name, rng.uniform(-self.variances[name], self.variances[name])) for name in order]

    @staticmethod
    def gray(img):
        """The official grayscale of ``img`` as one ``[H, W]`` channel: ``0.299 R + 0.587 G + 0.114 B``, in the
        official order of operations."""
        r, g, b = GRAY_WEIGHTS
        return (img[0] * r).add_(img[1], alpha=g).add_(img[2], alpha=b)

    def apply(self, img, factors: Sequence[Tuple[str, float]]):
        """``img`` with the ``(name, a)`` factors applied in order."""
        for name, a in factors:
            if name == "brightness":
                target = img.new_zeros(())
            elif name == "contrast":
                target = self.gray(img).mean()
            else:
                target = self.gray(img)
            img = img.lerp(target.expand_as(img), a)
        return img

    def __call__(self, img):
        return self.apply(img, self.draw())


class OfficialLighting:
    """clovaai/CutMix-PyTorch's ``utils.Lighting(alphastd, eigval, eigvec)`` (AlexNet's PCA noise) on a float32
    ``[3, H, W]`` RGB tensor in [0, 1]: ``alpha ~ N(0, alphastd)`` per component (torch's generator, as the
    official ``normal_``), and ``eigvec @ (alpha * eigval)`` added to each pixel. :meth:`draw` draws ``alpha``,
    :meth:`apply` applies a given one."""

    def __init__(self, alphastd: float = 0.1, eigval: Sequence[float] = LIGHTING_EIGVAL,
                 eigvec: Sequence[Sequence[float]] = LIGHTING_EIGVEC):
        import torch

        self.alphastd = alphastd
        self.eigval = torch.tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.tensor(eigvec, dtype=torch.float32)

    def draw(self):
        """One image's ``alpha``: float32 ``[3]``."""
        import torch

        return torch.empty(3).normal_(0, self.alphastd)

    def offset(self, alpha):
        """The RGB offset of ``alpha``: ``eigvec @ (alpha * eigval)``, float32 ``[3]``, as the official code
        computes it."""
        return (self.eigvec * alpha.view(1, 3) * self.eigval.view(1, 3)).sum(1)

    def apply(self, img, alpha):
        """``img`` plus :meth:`offset` of ``alpha`` on each pixel."""
        return img.add(self.offset(alpha).view(3, 1, 1))

    def __call__(self, img):
        if self.alphastd == 0:
            return img
        return self.apply(img, self.draw())


def reference_transform(crop: int = 224, backend: str = "pil", augment="none"):
    """The per-sample torchvision v2 transform of a PIL image: random-resized-crop (bilinear, antialiased) and
    a random horizontal flip, on the PIL image (``backend="pil"``) or on its uint8 tensor (``"tensor"``, as the
    recipe's ``--backend tensor``), then a float32 tensor in [0, 1] (with ``augment``'s ``color_jitter`` and
    ``lighting``, e.g. ``"paper"``: the official :class:`OfficialColorJitter` and :class:`OfficialLighting` on
    it, in that order), normalized: float32 ``[3, crop, crop]``.

    Raises:
        UserError: ``backend`` is not one of :data:`BACKENDS`; an ``augment`` the reference does not apply
            (:func:`reference_augment`).
    """
    import torch
    from torchvision.transforms import v2

    to_tensor = [v2.PILToTensor()]
    tensor_first = check_backend(backend) == "tensor"
    options = reference_augment(augment)
    colour = [OfficialColorJitter(*(options.color_jitter,) * 3)] if options.color_jitter else []
    colour += [OfficialLighting(options.lighting)] if options.lighting else []
    return v2.Compose([
        *(to_tensor if tensor_first else []),
        v2.RandomResizedCrop(crop, antialias=True),
        v2.RandomHorizontalFlip(),
        *([] if tensor_first else to_tensor),
        v2.ToDtype(torch.float32, scale=True),
        *colour,
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


def reference_dataset(data, crop: int = 224, backend: str = "pil", augment="none"):
    """torchvision's ``ImageFolder`` over the class-per-folder tree ``data``, or a :class:`ListDataset` over a
    DALI file list ``data``, with :func:`reference_transform` (``backend``, ``augment``). The folder's classes are
    ours (:func:`dali_cutmix.folder_reader.list_classes`: a hidden folder is no class) and hidden files are no
    samples, so its labels are the DALI pipeline's.

    Raises:
        UserError: ``data`` is missing or holds no class folder with images; a bad
            ``backend`` or ``augment``.
    """
    from torchvision.datasets import ImageFolder

    from dali_cutmix.folder_reader import list_classes

    transform = reference_transform(crop, backend, augment)
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
                           seed: int = 0, backend: str = "pil", augment="none"):
    """A ``torch.utils.data.DataLoader`` yielding CutMix-ed ``(images, targets)`` batches from ``data``.

    Args:
        data: class-per-folder image tree ``data/<class>/<image>``, or a DALI file list.
        batch_size: samples per batch; full batches only (``drop_last=True``), like a training loop.
        num_workers: worker processes (>= 1), started by the fork server
            (:func:`~dali_cutmix.helpers.workers.worker_context`); the profiler sets it to DALI's thread count.
        crop: output size. num_classes: soft-label width (default: the classes found). alpha: CutMix's Beta alpha.
        sampler: optional sampler (e.g. a fixed number of random indices per epoch); default: shuffle.
        persistent_workers: keep the workers between epochs, so their start-up is paid once.
        prefetch_factor: batches each worker prepares ahead (PyTorch's default 2).
        pin_memory: pin the batches (for a fast copy to a GPU). seed: seeds the shuffle.
        backend: where the transform makes the tensor, "pil" (after the crop) or "tensor" (before it): see
            :func:`reference_transform`. augment: our pipeline's augmentation to apply (a preset name or
            :class:`dali_cutmix.AugmentOptions`: its colour jitter and lighting), see :func:`reference_transform`.

    Raises:
        UserError: a bad argument, naming it; ``data`` does not exist.
    """
    import torch
    from torch.utils.data import DataLoader

    for name, value in (("batch_size", batch_size), ("num_workers", num_workers), ("crop", crop)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be an integer >= 1, got {value!r}")
    dataset = reference_dataset(data, crop, backend, augment)
    num_classes = len(dataset.classes) if num_classes is None else num_classes
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, drop_last=True,
        num_workers=num_workers, collate_fn=CutMixCollate(num_classes, alpha), pin_memory=pin_memory,
        persistent_workers=persistent_workers, prefetch_factor=prefetch_factor, generator=generator,
        multiprocessing_context=worker_context())
