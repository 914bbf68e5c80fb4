"""ImageNet pipelines built from the dali_cutmix plugin: the CutMix training pipeline and the validation pipeline.

Layout (ImageNet's, as torchvision's ``ImageFolder`` expects it)::

    ROOT/train/<class>/*.JPEG
    ROOT/val/<class>/*.JPEG

Class ids are the positions of the sorted class folder names, the same in both splits (checked by
:func:`check_imagenet_layout`).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from dali_cutmix.builder import IMAGENET_MEAN, IMAGENET_STD, check_pipeline_args, image_output_args, reader
from dali_cutmix.errors import UserError
from dali_cutmix.folder_reader import list_classes

#: The validation resize of the standard ImageNet protocol: shorter side 256 for a 224 centre crop.
VAL_RESIZE_RATIO = 256 / 224


def check_imagenet_layout(root) -> Tuple[Path, Path, List[str]]:
    """Check ``root/train`` and ``root/val`` and return ``(train_dir, val_dir, classes)``.

    Promises: both splits exist, hold class folders with images, and have the same class folder names
    (so a class id means the same class in both).

    Raises:
        UserError: ``root``, ``root/train`` or ``root/val`` is missing.
        UserError: a split holds no images, or the class folders of the two splits differ (the message
            names the first differing classes).
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data path {str(root)!r} does not exist or is not a directory")
    splits = []
    for split in ("train", "val"):
        path = root / split
        if not path.is_dir():
            raise UserError(
                f"data path {str(root)!r} has no {split}/ folder: expected {root}/train/<class>/*.JPEG and "
                f"{root}/val/<class>/*.JPEG")
        splits.append(path)
    train_dir, val_dir = splits
    train_classes = list_classes(train_dir)
    val_classes = list_classes(val_dir)
    if train_classes != val_classes:
        only_train = sorted(set(train_classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(train_classes))
        parts = []
        if only_train:
            parts.append(f"only in train: {', '.join(only_train[:5])}{' ...' if len(only_train) > 5 else ''}")
        if only_val:
            parts.append(f"only in val: {', '.join(only_val[:5])}{' ...' if len(only_val) > 5 else ''}")
        raise UserError(
            f"class folders differ between {str(train_dir)!r} ({len(train_classes)} classes) and "
            f"{str(val_dir)!r} ({len(val_classes)} classes): {'; '.join(parts)}")
    return train_dir, val_dir, train_classes


def build_imagenet_train_pipeline(train_dir, *, min_area: float = 0.08, checkpoint=None, **options):
    """The ImageNet training pipeline: :func:`dali_cutmix.build_cutmix_pipeline` over ``train_dir`` with
    checkpointing on (``checkpoint``, what ``CutMixLoader.checkpoint()`` returned, continues a data stream
    exactly) and a global shuffle every epoch.

    Args:
        train_dir: class-per-folder tree (``ROOT/train``), a DALI file list or an
            :class:`~dali_cutmix.folder_reader.ImageList` (see :func:`dali_cutmix.build_cutmix_pipeline`).
        min_area: smallest random-resized-crop area share (the crop's area is in ``[min_area, 1]``).
        options: any other :func:`dali_cutmix.build_cutmix_pipeline` argument (``batch_size``, ``num_classes``,
            ``crop``, ``device``, ``dtype``, ``layout``, sharding, ``mixing``, ``mix_options`` and
            ``mix_off_epoch``, which is ignored without the stage).

    Returns:
        An unbuilt DALI pipeline: ``images`` (``dtype`` "float32" or "float16", CHW or HWC samples by ``layout``
        "NCHW" or "NHWC", normalized) and ``labels`` (float32 soft labels ``[num_classes]``), on the GPU for
        ``device="gpu"``.
    """
    from dali_cutmix import build_cutmix_pipeline

    if not options.get("mixing", True):
        options["mix_off_epoch"] = None
    return build_cutmix_pipeline(train_dir, random_area=(min_area, 1.0), shuffle=True, enable_checkpointing=True,
                                 checkpoint=checkpoint, **options)


def build_imagenet_val_pipeline(
    val_dir,
    *,
    batch_size: int,
    crop: int = 224,
    resize: Optional[int] = None,
    device: str = "gpu",
    device_id: Optional[int] = None,
    shard_id: int = 0,
    num_shards: int = 1,
    num_threads: int = 4,
    seed: int = 0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    dtype: str = "float32",
    layout: str = "NCHW",
):
    """The ImageNet validation pipeline: decode, resize the shorter side to ``resize``, centre crop ``crop``,
    normalize. No mixing, no randomness, no shuffling.

    Args:
        val_dir: class-per-folder tree (``ROOT/val``; its class ids are its own sorted class folders: for a split
            read against the training split's classes, pass a file list or an
            :class:`~dali_cutmix.folder_reader.ImageList` labelled with those), a DALI file list or an ImageList.
        batch_size: samples per batch on this rank.
        crop: centre crop size. resize: shorter side before the crop; default ``round(crop * 256 / 224)``
            (256 for 224).
        device, device_id: as :func:`dali_cutmix.build_cutmix_pipeline` ("mixed" decoding on the GPU).
        shard_id, num_shards: this rank's contiguous, disjoint part of the split; with ``CutMixLoader``'s
            default ``last_batch="partial"`` every image is seen exactly once over all ranks.
        dtype, layout: the images' element type ("float32" or "float16") and layout ("NCHW" or "NHWC"), as
            :func:`dali_cutmix.build_cutmix_pipeline` (:data:`dali_cutmix.builder.LAYOUTS` says what the loader
            yields for each).

    Returns:
        An unbuilt DALI pipeline with outputs ``images`` (``dtype``, CHW or HWC samples by ``layout``) and
        ``labels`` (int32 class id, shape ``[1]``), both on the GPU for ``device="gpu"`` (the labels are copied
        inside the pipeline, so the loader hands out device tensors), reader named ``"Reader"``.
    """
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    check_pipeline_args(batch_size=batch_size, crop=crop, device=device, num_shards=num_shards,
                        shard_id=shard_id, num_threads=num_threads, dtype=dtype, layout=layout)
    if not isinstance(crop, int):
        raise UserError(f"crop must be an int for the validation pipeline, got {crop!r}")
    resize = int(round(crop * VAL_RESIZE_RATIO)) if resize is None else int(resize)
    if resize < crop:
        raise UserError(f"resize ({resize}) must be at least crop ({crop})")
    gpu = device == "gpu"

    @pipeline_def(enable_conditionals=False)
    def validation_pipeline():
        jpegs, labels = reader(val_dir, shard_id=shard_id, num_shards=num_shards, shuffle=False)
        images = fn.decoders.image(jpegs, device="mixed" if gpu else "cpu", output_type=types.RGB)
        images = fn.resize(images, resize_shorter=resize, interp_type=types.INTERP_TRIANGULAR, antialias=True)
        images = fn.crop_mirror_normalize(images, crop=(crop, crop), crop_pos_x=0.5, crop_pos_y=0.5,
                                          mean=list(mean), std=list(std), **image_output_args(dtype, layout))
        return images, labels.gpu() if gpu else labels

    return validation_pipeline(batch_size=batch_size, num_threads=num_threads,
                               device_id=(device_id or 0) if gpu else None, seed=seed, prefetch_queue_depth=2)
