"""The training pipeline: reader -> decode (+ random crop) -> resize -> CutMix -> flip/normalize."""

from __future__ import annotations

import math
import weakref
from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple, Union

from .augment_options import AugmentOptions
from .errors import UserError
from .folder_reader import ImageList, count_classes, image_list
from .augment import augment_images, needs_conditionals
from .options import MixOptions, check_num_classes
from .shard_reader import ShardSet, as_shards, is_shard_folder, resolve_shards, shard_reader
from .stage import PARAM_NAMES, mix_normalize_native, mix_stage, operator_namespace

#: ImageNet's per-channel mean and std for images in [0, 1] (torchvision's), and in pixel units (0-255, DALI's).
IMAGENET_MEAN_01 = (0.485, 0.456, 0.406)
IMAGENET_STD_01 = (0.229, 0.224, 0.225)
IMAGENET_MEAN = tuple(255 * m for m in IMAGENET_MEAN_01)
IMAGENET_STD = tuple(255 * s for s in IMAGENET_STD_01)
READER_NAME = "Reader"
OUTPUT_NAMES = ("images", "labels")
DEVICES = ("gpu", "cpu")
#: How the training pipeline decodes: only the random crop's region ("roi"), or the whole image, then crops.
DECODES = ("roi", "full")
#: The named stages of the training graph, in order; ``build_cutmix_pipeline(stop_after=...)`` cuts after one.
#: "crop": decode + random-resized-crop (uint8 HWC, integer labels); "mix": + the mixing stage (soft labels);
#: "normalize": + flip/normalize (the whole training pipeline).
STAGES = ("crop", "mix", "normalize")
#: The element types and layouts of a pipeline's image output (``dtype=``, ``layout=``), by their PyTorch names.
#: "NCHW": each sample is CHW, so the loader yields an ``(N, C, H, W)`` contiguous tensor; "NHWC": each sample is
#: HWC, the loader yields ``(N, H, W, C)`` contiguous, and ``images.permute(0, 3, 1, 2)`` is an ``(N, C, H, W)``
#: view in ``torch.channels_last`` memory format, with no copy.
DTYPES = ("float32", "float16")
LAYOUTS = ("NCHW", "NHWC")


#: Run seeds are integers in [0, MAX_SEED]: every rank's :func:`rank_seed` then fits DALI's 64-bit seeds.
MAX_SEED = 2**32 - 1


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` if it is an integer in ``[0, MAX_SEED]``; raises UserError naming it as ``name`` (a caller's
    argument or flag name) otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"{name} must be an integer in [0, {MAX_SEED}], got {seed!r}")
    return seed


def rank_seed(seed: int, shard_id: int = 0) -> int:
    """The pipeline seed of rank ``shard_id`` for the run seed ``seed``: every rank its own augmentation stream."""
    return seed * 1_000_003 + shard_id + 1


def check_pipeline_args(*, batch_size, crop, device, num_shards, shard_id, num_threads, dtype, layout):
    """Validate the builder's plain arguments (``dtype`` in :data:`DTYPES`, ``layout`` in :data:`LAYOUTS`); raises
    UserError naming the argument. Returns the crop as ``(height, width)``."""
    if device not in DEVICES:
        raise UserError(f"device must be one of {DEVICES}, got {device!r}")
    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if layout not in LAYOUTS:
        raise UserError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    for name, value in (("batch_size", batch_size), ("num_threads", num_threads), ("num_shards", num_shards)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be an integer >= 1, got {value!r}")
    crop_hw = (crop, crop) if isinstance(crop, int) else tuple(crop) if isinstance(crop, (tuple, list)) else ()
    if len(crop_hw) != 2 or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in crop_hw):
        raise UserError(f"crop must be a positive int or (height, width) of positive ints, got {crop!r}")
    if not 0 <= shard_id < num_shards:
        raise UserError(f"shard_id must be in [0, num_shards={num_shards}), got {shard_id!r}")
    return crop_hw


#: What each pipeline's readers read, by reader name (see :func:`reader_source`).
_SOURCES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def reader_args(data) -> Tuple[dict, Union[ImageList, Path]]:
    """The file source arguments of ``fn.readers.file`` for ``data``, and what they read.

    ``data``: a class-per-folder tree (its files and labels from our class list, :func:`dali_cutmix.folder_reader.
    list_samples`: hidden folders are never classes), a DALI file list (``path label`` lines, paths relative to
    the list's folder or absolute: what ``dali-cutmix scan --write-list`` writes), or an
    :class:`~dali_cutmix.folder_reader.ImageList`. Returns ``(kwargs, source)``: ``source`` is the list file's path or
    the ImageList.

    (A shard folder is read by :func:`dali_cutmix.shard_reader.shard_reader` instead: see :func:`reader`.)

    Raises:
        UserError: ``data`` is missing, holds no images, or the list is malformed.
    """
    if not isinstance(data, ImageList) and Path(data).is_file():
        path = Path(data)
        image_list(path)  # checks the list's lines
        return dict(file_list=str(path)), path
    images = image_list(data)
    return dict(files=[str(images.path(f)) for f in images.files], labels=list(images.labels)), images


def reader_source(pipeline, name: str = READER_NAME) -> Optional[Union[ImageList, Path, ShardSet]]:
    """What the reader ``name`` of ``pipeline`` reads, when :func:`reader` made it: a DALI file list's path, an
    :class:`~dali_cutmix.folder_reader.ImageList` or a :class:`~dali_cutmix.shard_reader.ShardSet` (None for a reader made
    otherwise)."""
    return _SOURCES.get(pipeline, {}).get(name)


def file_reader_args(source_args: dict, *, shard_id=0, num_shards=1, shuffle=True, seed=0) -> dict:
    """The arguments of DALI's file reader (``fn.readers.file``, ``ndd.readers.File``) over ``source_args``
    (:func:`reader_args`' first value) for one rank: its shard, ``pad_last_batch``, and the shuffling
    :func:`reader` describes."""
    shuffling = dict(shuffle_after_epoch=True, shuffle_after_epoch_seed=seed) if shuffle else {}
    return dict(**source_args, shard_id=shard_id, num_shards=num_shards, pad_last_batch=True, **shuffling)


def reader(data, *, shard_id=0, num_shards=1, shuffle=True, seed=0, name=READER_NAME):
    """DALI file reader over ``data`` (see :func:`reader_args`): returns ``(jpegs, labels)``.

    Shuffling is global (``shuffle_after_epoch``): every epoch is a new permutation of the whole data set,
    drawn with the same ``seed`` on every rank, then cut into ``num_shards`` disjoint, contiguous shards.
    ``pad_last_batch`` repeats a shard's last sample to fill its last batch; the loader drops those. Without
    ``shuffle`` the files are read in order. The pipeline remembers what its reader reads
    (:func:`reader_source`), so a file DALI fails on can be named.

    A shard folder is read by DALI's webdataset reader instead (:func:`dali_cutmix.shard_reader.shard_reader`: the same
    outputs, sharding, padding and name; its shuffle is the tar order per epoch plus a shuffle buffer).
    """
    import nvidia.dali.fn as fn
    from nvidia.dali import Pipeline

    pipeline = Pipeline.current()
    if is_shard_folder(data):
        shards = as_shards(data)
        if pipeline is not None:
            _SOURCES.setdefault(pipeline, {})[name] = shards
        return shard_reader(shards, shard_id=shard_id, num_shards=num_shards, shuffle=shuffle, seed=seed, name=name)
    source_args, source = reader_args(data)
    if pipeline is not None:
        _SOURCES.setdefault(pipeline, {})[name] = source
    return fn.readers.file(**file_reader_args(source_args, shard_id=shard_id, num_shards=num_shards, shuffle=shuffle,
                                              seed=seed), name=name)


def shard_size(epoch_size: int, num_shards: int, shard: int) -> int:
    """Samples in shard ``shard`` of ``num_shards`` of ``epoch_size`` samples, as DALI's readers and iterators cut
    them: ``floor((shard + 1) * size / num_shards) - floor(shard * size / num_shards)``."""
    return (shard + 1) * epoch_size // num_shards - shard * epoch_size // num_shards


def epoch_shard(shard_id: int, num_shards: int, epoch: int, stick_to_shard: bool) -> int:
    """The shard a reader of shard ``shard_id`` reads in its 0-based ``epoch``: its own when it sticks to its
    shard, else the next one each epoch (DALI's readers)."""
    return shard_id if stick_to_shard else (shard_id + epoch) % num_shards


def gate_values(batch_size: int, samples: int, epoch: int, off_epoch: Optional[int]):
    """The mixing stage's gate of one batch, int32 ``(batch_size,)``: -1 for the reader's padding (after the first
    ``samples``), 0 for a sample of the 0-based ``epoch >= off_epoch`` (None: never), else 1."""
    import numpy as np

    gate = np.full(batch_size, -1, dtype=np.int32)
    gate[:samples] = int(off_epoch is None or epoch < off_epoch)
    return gate


class _MixGateSource:
    """``external_source`` callback (``batch_info=True``): the mixing stage's gate for each batch of the reader
    ``reader_name``: one int32 array of shape ``(batch_size,)`` per batch (DALI cuts it into per-sample scalars),
    -1 for the reader's padding, 0 for a sample of the reader's 0-based epoch ``>= off_epoch`` (the user's 1-based
    epochs ``off_epoch + 1`` on; None: never), else 1. ``off_epoch`` is a plain attribute, so the graph has the
    same shape whether or not mixing ever stops.

    It counts as DALI's iterators do (``nvidia/dali/plugin/base_iterator.py``): a padded reader yields
    ``ceil((epoch_size_padded // num_shards) / batch_size)`` batches per epoch on every shard; in epoch ``e`` it
    reads shard ``(shard_id + e) % num_shards`` (``shard_id`` with ``stick_to_shard``) of :func:`shard_size`
    samples, and the rest of its last batches is padding (what ``last_batch="partial"`` drops). A reader without
    padding has no padding (``ceil(ceil(epoch_size / num_shards) / batch_size)`` batches per epoch). DALI
    checkpoints restore the iteration counter of such a source, so a resumed run gates the same batches.
    """

    def __init__(self, pipeline, reader_name: str, off_epoch: Optional[int]):
        self.pipeline, self.reader_name, self.off_epoch = pipeline, reader_name, off_epoch
        self.meta = None

    def samples(self, iteration: int) -> Tuple[int, int]:
        """``(epoch, samples)``: the epoch of the batch ``iteration`` (counted from 0) and how many of its
        samples (the first ones) are real, not padding."""
        if self.meta is None:
            self.meta = self.pipeline.reader_meta(self.reader_name)
        meta, batch_size = self.meta, self.pipeline.max_batch_size
        size, shards = meta["epoch_size"], meta["number_of_shards"]
        if not meta["pad_last_batch"]:
            return iteration // math.ceil(math.ceil(size / shards) / batch_size), batch_size
        epoch, batch = divmod(iteration, math.ceil(meta["epoch_size_padded"] // shards / batch_size))
        shard = epoch_shard(meta["shard_id"], shards, epoch, meta["stick_to_shard"])
        return epoch, min(batch_size, max(0, shard_size(size, shards, shard) - batch * batch_size))

    def __call__(self, info):
        epoch, samples = self.samples(info.iteration)
        return gate_values(self.pipeline.max_batch_size, samples, epoch, self.off_epoch)


def check_off_epoch(off_epoch, name: str = "mix_off_epoch") -> int:
    """``off_epoch`` (``mix_off_epoch``: epochs 1..N are mixed, mixing is off from epoch N+1, as timm's
    ``--mixup-off-epoch N``) if it is an integer >= 1; raises UserError naming it as ``name``. The one check of the
    value, for the builder and the trainer alike (None, never off, is the callers' to allow)."""
    if isinstance(off_epoch, bool) or not isinstance(off_epoch, int) or off_epoch < 1:
        raise UserError(f"{name} must be an integer >= 1 (epochs 1..N are mixed, off from N+1, as timm's "
                        f"--mixup-off-epoch N), got {off_epoch!r}")
    return off_epoch


def check_decode(decode, name: str = "decode") -> str:
    """``decode`` if it is one of :data:`DECODES`; raises UserError naming it as ``name``. The one check of the
    value, for the builder, the trainer and the profiler."""
    if decode not in DECODES:
        raise UserError(f"{name} must be one of {', '.join(DECODES)}, got {decode!r}")
    return decode


#: The environment variable that sets the process-wide default of ``decode`` (one of :data:`DECODES`): what
#: :func:`build_cutmix_pipeline` uses when its ``decode`` is not given (``DALI_CUTMIX_DECODE=full`` where the ROI
#: decoder fails).
DECODE_ENV = "DALI_CUTMIX_DECODE"


def default_decode() -> str:
    """The decode mode a pipeline built without ``decode`` uses: ``$DALI_CUTMIX_DECODE`` if set (checked: a value
    not in :data:`DECODES` raises UserError naming the variable), else "roi"."""
    import os

    value = os.environ.get(DECODE_ENV)
    return "roi" if value is None else check_decode(value, f"the environment variable {DECODE_ENV}")


def mix_gate(off_epoch: Optional[int] = None, reader_name: str = READER_NAME):
    """Inside a ``pipeline_def``: the ``gate`` of :func:`dali_cutmix.mix` for batches of the reader
    ``reader_name`` (a padded, sharded DALI reader such as :func:`reader`'s): a CPU DataNode, one int32 per sample,
    -1 for the padding that fills a shard's last batch (never a partner, not mixed, dropped by
    ``CutMixLoader(last_batch="partial")``), 0 for samples of epoch ``off_epoch + 1`` on (1-based: epochs
    ``1..off_epoch`` are mixed, as timm's ``--mixup-off-epoch``; None: never off), 1 for the others. The real samples of a batch are exactly those DALI's iterator returns."""
    import nvidia.dali.fn as fn
    from nvidia.dali import Pipeline

    off_epoch = None if off_epoch is None else check_off_epoch(off_epoch)
    source = _MixGateSource(Pipeline.current(), reader_name, off_epoch)
    return fn.external_source(source=source, batch=True, batch_info=True)


def decoder_args(device: str, ops=None) -> dict:
    """Arguments of DALI's image decoders for ``device`` ("gpu": the "mixed" decoder; "cpu"); ``ops`` as
    :func:`dali_cutmix.stage.operator_namespace` (DALI Dynamic names the "mixed" decoder's device "gpu").

    The decoders' memory is left to DALI: no preallocation hints and no padding. A hint sized for the largest image
    of a data set is reserved by the hardware decoder for every sample of the batch (``preallocate_batch_size`` is
    the pipeline's batch size) in each pipeline a rank holds, while DALI grows its buffers to the images it meets
    once and keeps them.
    """
    import nvidia.dali.types as types

    args = dict(device="mixed" if device == "gpu" and ops is None else device, output_type=types.RGB)
    if device == "gpu":
        # Share of images sent to the A100/H100 hardware JPEG decoder; nvJPEG's CUDA path takes the rest.
        args.update(hw_decoder_load=0.65)
    return args


def decode_random_crop(jpegs, *, device: str, crop, random_area=(0.08, 1.0), random_aspect_ratio=(3 / 4, 4 / 3),
                       decode: str = "roi", ops=None, random_args=None):
    """Random-resized-crop of encoded images, resized to ``crop`` (``(height, width)``): HWC uint8 RGB images of
    one size.

    ``decode="roi"`` decodes only the random crop's region (``decoders.image_random_crop``), then resizes;
    ``decode="full"`` decodes the whole image (``decoders.image``), then crops and resizes it
    (``random_resized_crop``): more decoding work, a way around a failing ROI decoder. On "gpu" the decoder is
    "mixed" (nvJPEG, the hardware decoder) and the rest runs on the GPU; on "cpu" everything runs on the CPU.
    ``ops`` as :func:`dali_cutmix.stage.operator_namespace`; ``random_args``: added to the random operators'
    arguments (DALI Dynamic: its ``rng`` and the batch size).
    """
    import nvidia.dali.types as types

    fn = operator_namespace(ops)
    crop_args = dict(random_area=list(random_area), random_aspect_ratio=list(random_aspect_ratio), num_attempts=100,
                     **(random_args or {}))
    if decode == "full":
        images = fn.decoders.image(jpegs, **decoder_args(device, ops))
        return fn.random_resized_crop(images, size=list(crop), interp_type=types.INTERP_TRIANGULAR, antialias=False,
                                      **crop_args)
    images = fn.decoders.image_random_crop(jpegs, **decoder_args(device, ops), **crop_args)
    return fn.resize(images, resize_x=crop[1], resize_y=crop[0], interp_type=types.INTERP_TRIANGULAR,
                     antialias=False)


def one_hot_labels(labels, num_classes: int, *, label_smoothing: float = 0.0, device: str = "cpu", ops=None):
    """Smoothed one-hot float32 ``[num_classes]`` labels (timm's smoothing), on ``device``: the no-mix targets.
    ``ops`` as :func:`dali_cutmix.stage.operator_namespace`."""
    import nvidia.dali.types as types

    fn = operator_namespace(ops)

    check_num_classes(num_classes)
    off = label_smoothing / num_classes
    targets = fn.one_hot(labels, num_classes=num_classes, on_value=1.0 - label_smoothing + off, off_value=off,
                         dtype=types.FLOAT)
    targets = fn.reshape(targets, shape=[num_classes])
    return targets.gpu() if device == "gpu" else targets


def image_output_args(dtype: str = "float32", layout: str = "NCHW") -> dict:
    """``crop_mirror_normalize``'s ``dtype`` and ``output_layout`` for a batch output in ``dtype`` (of
    :data:`DTYPES`) and ``layout`` (of :data:`LAYOUTS`): per sample CHW for "NCHW", HWC for "NHWC"."""
    import nvidia.dali.types as types

    return dict(dtype={"float32": types.FLOAT, "float16": types.FLOAT16}[dtype],
                output_layout={"NCHW": "CHW", "NHWC": "HWC"}[layout])


def flip_normalize(images, *, mirror: bool = True, mean=IMAGENET_MEAN, std=IMAGENET_STD, dtype: str = "float32",
                   layout: str = "NCHW", ops=None, random_args=None):
    """Random horizontal flip (p = 0.5) and ``(x - mean) / std`` per channel of HWC images, in one operator:
    ``dtype`` ("float32" or "float16") samples, CHW for ``layout="NCHW"`` and HWC for "NHWC"
    (:func:`image_output_args`), on the images' device. ``ops`` and ``random_args`` as
    :func:`decode_random_crop`."""
    fn = operator_namespace(ops)
    return fn.crop_mirror_normalize(
        images, **image_output_args(dtype, layout),
        mirror=fn.random.coin_flip(probability=0.5, **(random_args or {})) if mirror else 0, mean=list(mean),
        std=list(std))


def mix_flip_normalize_cpu(images, params, *, mirror: bool = True, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                           dtype: str = "float32", layout: str = "NCHW"):
    """The CPU training graph's mixing (with ``params`` of :func:`dali_cutmix.stage.mix_stage` ``(pixels=False)``;
    None: none) and :func:`flip_normalize` of uint8 HWC CPU images in one native pass
    (:func:`dali_cutmix.stage.mix_normalize_native`): the same pixels, the same flips (the same
    ``random.coin_flip``, visited after the stage's random operators, as in the two-operator graph)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    flips = fn.random.coin_flip(probability=0.5) if mirror else types.Constant(0, dtype=types.INT32, device="cpu")
    out = image_output_args(dtype, layout)
    return mix_normalize_native(images, params, flips, mean=mean, std=std, dtype=out["dtype"],
                                output_layout=out["output_layout"])


#: ``nvidia.dali.Pipeline`` arguments that :func:`build_cutmix_pipeline` sets itself.
_BUILDER_SETS = ("batch_size", "num_threads", "device_id", "seed", "checkpoint", "exec_dynamic")


def check_pipeline_kwargs(pipeline_kwargs: Mapping) -> None:
    """Raise TypeError naming the first of ``pipeline_kwargs`` that ``nvidia.dali.Pipeline`` does not take, or that
    :func:`build_cutmix_pipeline` sets itself."""
    import inspect

    from nvidia.dali import Pipeline

    accepted = set(inspect.signature(Pipeline.__init__).parameters) - {"self"}
    for name in pipeline_kwargs:
        if name not in accepted:
            raise TypeError(f"build_cutmix_pipeline got an unknown argument {name!r} (neither its own nor one of "
                            f"nvidia.dali.Pipeline's)")
        if name in _BUILDER_SETS:
            raise TypeError(f"build_cutmix_pipeline sets the pipeline argument {name!r} itself")


def build_cutmix_pipeline(
    data,
    *,
    batch_size: int,
    num_classes: Optional[int] = None,
    crop=224,
    device: str = "gpu",
    device_id: Optional[int] = None,
    mixing: bool = True,
    mix_options: Union[MixOptions, Mapping, None] = None,
    mix_off_epoch: Optional[int] = None,
    shard_id: int = 0,
    num_shards: int = 1,
    num_threads: int = 4,
    seed: int = 0,
    shuffle: bool = True,
    random_area: Tuple[float, float] = (0.08, 1.0),
    random_aspect_ratio: Tuple[float, float] = (3 / 4, 4 / 3),
    mirror: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    dtype: str = "float32",
    layout: str = "NCHW",
    checkpoint: Optional[str] = None,
    return_params: bool = False,
    stop_after: str = "normalize",
    decode: Optional[str] = None,
    augment: Union[str, AugmentOptions, Mapping, None] = "none",
    **pipeline_kwargs,
):
    """Build (not build()) the DALI training pipeline with the mixing stage.

    Graph: file reader (CPU, sharded) -> ``decoders.image_random_crop`` (device "mixed" on GPU: nvJPEG and the
    hardware decoder; ROI decoding, so only the cropped region is decoded) -> ``resize`` to ``crop`` ->
    the mixing stage (:func:`dali_cutmix.mix`) -> ``crop_mirror_normalize`` (random horizontal flip, mean/std,
    HWC -> CHW or HWC by ``layout``, in ``dtype``). On the CPU the stage's pixels and ``crop_mirror_normalize``
    are one native operator writing the same pixels (:func:`mix_flip_normalize_cpu`).

    Args:
        data: a class-per-folder directory ``data/<class>/<image>`` (read through our class list: hidden
            folders and files are left out), a DALI file list (``path label`` lines, paths relative to the
            list's folder or absolute: what ``dali-cutmix scan --write-list`` writes) or a
            :class:`dali_cutmix.folder_reader.ImageList`.
        batch_size: samples per batch on this rank (the per-GPU batch).
        num_classes: soft-label width; default: the number of classes found in ``data``.
        crop: output size, int or (height, width).
        device: "gpu" (decode on "mixed", every pixel operator on the GPU) or "cpu" (CPU operators only).
        device_id: CUDA device for "gpu" (default 0); ignored for "cpu" (the pipeline gets ``device_id=None``).
        mixing: the mixing stage (CutMix and/or MixUp) on; False builds the same pipeline without it (labels
            become one-hot, smoothed by ``mix_options``' ``label_smoothing``).
        mix_options: :class:`dali_cutmix.MixOptions`, or a mapping of some of its fields (the rest default);
            default ``MixOptions()``: CutMix with alpha 1, one draw per batch (the paper's).
        mix_off_epoch: N >= 1: epochs 1..N are mixed and nothing is mixed from epoch N+1 on (exactly timm's
            ``--mixup-off-epoch N``; the reader's 0-based epoch index ``>= N``); None: always mixed. Unmixed labels
            are the smoothed one-hots, in the same pipeline, with the same data stream.
            The stage's gate (:func:`mix_gate`) also keeps the reader's padding of a shard's last batch out of
            the mix: partners are drawn among the batch's real samples only, and the padding (dropped by
            ``CutMixLoader(last_batch="partial")``, returned as it is with "fill") is not mixed.
        shard_id, num_shards: this rank's shard of each epoch; shards are disjoint and cover the data.
        num_threads: DALI CPU worker threads; seed: base seed (the rank's augmentation stream is
            :func:`rank_seed` of it and ``shard_id``; the epoch shuffle uses ``seed`` itself, the same on every
            rank).
        random_area, random_aspect_ratio: random-resized-crop ranges (torchvision's defaults).
        mirror: random horizontal flip with probability 0.5. mean, std: per channel, in pixel units (0-255).
        dtype: the images' element type, "float32" or "float16" (what the model computes in under
            ``--amp fp16``: no cast in PyTorch).
        layout: "NCHW" (the loader yields ``(N, C, H, W)`` contiguous images) or "NHWC" (``(N, H, W, C)``
            contiguous: ``images.permute(0, 3, 1, 2)`` is the ``(N, C, H, W)`` channels_last view a channels_last
            model takes, with no copy); see :data:`LAYOUTS`.
        checkpoint: a serialized checkpoint to resume from (turns ``enable_checkpointing`` on): the pipeline
            continues the data stream exactly where the checkpointed one was.
        return_params: add the mixing params ``perm``, ``box``, ``lam``, ``method`` (see :func:`dali_cutmix.mix`;
            the box is in the image's coordinates before the random flip) and the integer class ids as outputs
            (for tests and previews); without the stage, only the class ids.
        stop_after: the last stage of :data:`STAGES` in the graph ("normalize": all of it); the profiler times
            the pipeline cut after each stage.
        decode: "roi" (decode only the random crop's region) or "full" (decode the whole image, then crop): see
            :func:`decode_random_crop`; None (default): :func:`default_decode` (``$DALI_CUTMIX_DECODE``, else
            "roi").
        augment: the per-image augmentation: a preset name of :data:`dali_cutmix.augment_options.PRESETS`
            ("none", "paper", "deit", "torchvision-v2"), :class:`dali_cutmix.AugmentOptions` or a mapping of some
            of its fields. "none" (the default): the graph above. Otherwise each image is flipped, augmented and
            normalized before the stage, in the sources' order (:func:`dali_cutmix.augment.augment_images`), the
            stage mixes the normalized float32 images, and ``crop_mirror_normalize`` only lays them out in
            ``dtype`` and ``layout``; cut at "mix", the images are the mixed float32 HWC normalized ones.
        pipeline_kwargs: passed to ``nvidia.dali.Pipeline`` (a name it does not take is a TypeError), e.g.
            ``prefetch_queue_depth`` (default 2), ``enable_checkpointing`` (let ``Pipeline.checkpoint()`` or
            ``CutMixLoader.checkpoint()`` capture the reader position and every RNG state, the stage's included),
            ``exec_pipelined=False`` for timing.

    Returns:
        An unbuilt ``nvidia.dali.Pipeline`` with outputs ``images`` (``dtype``, CHW or HWC samples by ``layout``,
        normalized) and ``labels`` (float32 ``[num_classes]`` soft labels), both on the GPU for "gpu"; then
        ``perm``, ``box``, ``lam``, ``method``, ``class_id`` (CPU) with ``return_params``. Cut at "crop", the
        images are uint8 HWC and the labels integer class ids; cut at "mix", the images are uint8 HWC.

    Raises:
        UserError: a bad path or argument, naming it. TypeError: an unknown argument.
    """
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    crop_h, crop_w = check_pipeline_args(batch_size=batch_size, crop=crop, device=device, num_shards=num_shards,
                                         shard_id=shard_id, num_threads=num_threads, dtype=dtype, layout=layout)
    check_seed(seed)
    check_pipeline_kwargs(pipeline_kwargs)
    if stop_after not in STAGES:
        raise UserError(f"stop_after must be one of {STAGES}, got {stop_after!r}")
    decode = default_decode() if decode is None else check_decode(decode)
    augmenting = AugmentOptions.coerce(augment)
    options = MixOptions.coerce(mix_options)
    if num_classes is not None:
        check_num_classes(num_classes)
    data = resolve_shards(data)  # a shard folder's manifest read once (on S3 through DALI), outside the graph
    found = count_classes(data)  # also checks that the path exists and holds images
    num_classes = found if num_classes is None else num_classes
    if mix_off_epoch is not None:
        check_off_epoch(mix_off_epoch)
    gpu = device == "gpu"
    pipeline_kwargs.setdefault("prefetch_queue_depth", 2)
    checkpointing = pipeline_kwargs.pop("enable_checkpointing", False) or checkpoint is not None

    @pipeline_def(enable_conditionals=needs_conditionals(augmenting))
    def training_pipeline():
        jpegs, labels = reader(data, shard_id=shard_id, num_shards=num_shards, shuffle=shuffle, seed=seed)
        images = decode_random_crop(jpegs, device=device, crop=(crop_h, crop_w), random_area=random_area,
                                    random_aspect_ratio=random_aspect_ratio, decode=decode)
        if stop_after == "crop":
            return images, labels
        image_type = types.UINT8
        if augmenting.active:  # flip, augment and normalize each image before the stage (the sources' order)
            images = augment_images(images, augmenting, mean=mean, std=std, mirror=mirror)
            image_type = types.FLOAT
        params = {}
        # On the CPU the stage's pixels, the flip and normalize are one native pass (the same pixels).
        one_pass = not gpu and stop_after == "normalize" and not augmenting.active
        if mixing:
            # The gate: the reader's padding is nobody's partner and is not mixed; mix_off_epoch closes it.
            images, targets, params = mix_stage(images, labels, num_classes=num_classes, options=options,
                                                gate=mix_gate(mix_off_epoch), image_type=image_type,
                                                pixels=not one_pass)
        else:
            targets = one_hot_labels(labels, num_classes, label_smoothing=options.label_smoothing, device=device)
        if one_pass:
            images = mix_flip_normalize_cpu(images, params if mixing else None, mirror=mirror, mean=mean, std=std,
                                            dtype=dtype, layout=layout)
        elif stop_after == "normalize" and augmenting.active:  # flipped and normalized already: the layout only
            if (dtype, layout) != ("float32", "NHWC"):
                images = flip_normalize(images, mirror=False, mean=(0.0,) * 3, std=(1.0,) * 3, dtype=dtype,
                                        layout=layout)
        elif stop_after == "normalize":
            images = flip_normalize(images, mirror=mirror, mean=mean, std=std, dtype=dtype, layout=layout)
        outputs = [images, targets]
        if return_params:
            outputs += [params[k] for k in PARAM_NAMES] if mixing else []
            outputs.append(labels)
        return tuple(outputs)

    return training_pipeline(
        batch_size=batch_size, num_threads=num_threads, device_id=(device_id or 0) if gpu else None,
        # Each rank draws its own augmentation stream; the reader's shuffle seed is shared (see reader()).
        seed=rank_seed(seed, shard_id), enable_checkpointing=checkpointing, checkpoint=checkpoint,
        # The dynamic executor lets the CPU-side mixing parameters read the GPU images' shape (metadata only).
        exec_dynamic=True, **pipeline_kwargs)
