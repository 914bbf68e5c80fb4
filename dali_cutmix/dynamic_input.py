"""A whole training input in DALI Dynamic mode: read -> decode with the random crop -> resize -> mix -> flip and
normalize, to torch tensors on the device, for one rank, with an exact, resumable state.

Every piece is the training pipeline's (:mod:`dali_cutmix.builder`): the readers' arguments
(:func:`~dali_cutmix.builder.file_reader_args`, :func:`~dali_cutmix.shard_reader.shard_reader_args`), the decode
and crop (:func:`~dali_cutmix.builder.decode_random_crop`), the stage (:mod:`dali_cutmix.dynamic`) and the
flip/normalize (:func:`~dali_cutmix.builder.flip_normalize`), called through ``ndd`` instead of ``fn``.

The state is DALI's own: the reader's position (``ndd`` readers' ``get_state``/``set_state``, the checkpoint
DALI's readers write) and the ``ndd.random.RNG`` that every random operator draws from (crops, mixing, flips), plus
the epoch and the batches done in it. Restoring it and going on gives exactly the batches the uninterrupted run
gives: nothing is replayed.

:mod:`dali_cutmix.dynamic_nodes` wraps this as a ``torchdata.nodes`` graph.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence, Tuple, Union

from .builder import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_decode,
    check_off_epoch,
    check_pipeline_args,
    check_seed,
    decode_random_crop,
    default_decode,
    epoch_shard,
    file_reader_args,
    flip_normalize,
    gate_values,
    rank_seed,
    reader_args,
    shard_size,
)
from .errors import UserError
from .folder_reader import count_classes
from .options import MixOptions, check_num_classes
from .shard_reader import ShardSet, parse_label, resolve_shards, shard_reader_args

#: The keys of :meth:`DynamicInput.state_dict`.
STATE_KEYS = ("epoch", "batch", "reader", "rng")


class DynamicInput:
    """The training input of :func:`dali_cutmix.build_cutmix_pipeline`, in DALI Dynamic mode, for one rank.

    The arguments are :func:`dali_cutmix.build_cutmix_pipeline`'s (same names, defaults and checks): ``data`` (a
    class-per-folder tree, a DALI file list, an ImageList or a shard folder), ``batch_size``, ``num_classes``,
    ``crop``, ``device`` ("gpu" or "cpu"), ``device_id``, ``mixing``, ``mix_options``, ``mix_off_epoch``,
    ``shard_id``, ``num_shards``, ``num_threads``, ``seed``, ``shuffle``, ``random_area``,
    ``random_aspect_ratio``, ``mirror``, ``mean``, ``std``, ``dtype``, ``layout``, ``decode``.

    Each epoch is this rank's shard of the data, once: ``ceil(shard / batch_size)`` batches, the last one short
    (the reader's padding is never a partner, is not mixed and is dropped, as ``CutMixLoader(last_batch=
    "partial")``). :meth:`next_batch` returns ``(images, targets)``: torch tensors on the device ("cuda" for
    "gpu"), images normalized in ``dtype`` and ``layout``, targets float32 ``[n, num_classes]`` soft labels.

    The random stream is one ``ndd.random.RNG`` seeded with :func:`dali_cutmix.builder.rank_seed`, so each rank
    draws its own; the epoch shuffle uses ``seed`` itself, the same on every rank, as the pipeline. The draws
    are not the pipeline's (another RNG), the semantics are.
    """

    def __init__(self, data, *, batch_size: int, num_classes: Optional[int] = None, crop=224, device: str = "gpu",
                 device_id: Optional[int] = None, mixing: bool = True,
                 mix_options: Union[MixOptions, Mapping, None] = None, mix_off_epoch: Optional[int] = None,
                 shard_id: int = 0, num_shards: int = 1, num_threads: int = 4, seed: int = 0, shuffle: bool = True,
                 random_area: Tuple[float, float] = (0.08, 1.0),
                 random_aspect_ratio: Tuple[float, float] = (3 / 4, 4 / 3), mirror: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, dtype: str = "float32",
                 layout: str = "NCHW", decode: Optional[str] = None):
        self.crop = check_pipeline_args(batch_size=batch_size, crop=crop, device=device, num_shards=num_shards,
                                        shard_id=shard_id, num_threads=num_threads, dtype=dtype, layout=layout)
        check_seed(seed)
        decode = default_decode() if decode is None else check_decode(decode)
        self.options = MixOptions.coerce(mix_options)
        if num_classes is not None:
            check_num_classes(num_classes)
        self.mix_off_epoch = None if mix_off_epoch is None else check_off_epoch(mix_off_epoch)
        self.data = resolve_shards(data)
        found = count_classes(self.data)  # also checks that the path exists and holds images
        self.num_classes = found if num_classes is None else num_classes
        self.batch_size, self.device, self.shard_id, self.num_shards = batch_size, device, shard_id, num_shards
        self.mixing, self.seed, self.shuffle = mixing, seed, shuffle
        self.cropping = dict(random_area=random_area, random_aspect_ratio=random_aspect_ratio, decode=decode)
        self.normalize = dict(mirror=mirror, mean=mean, std=std, dtype=dtype, layout=layout)
        self.context = None
        self.device_id = (device_id or 0) if device == "gpu" else None
        self.num_threads = num_threads
        self.epoch, self.batch = 0, 0
        self.reader = self.rng = None
        self.ahead = None  # the next batch of the epoch, read and being decoded (see next_batch)
        self.saved = None  # the state after the last batch returned, taken before reading ahead
        self.start(None)

    # ------------------------------------------------------------------------------------------------ state

    def new_reader(self):
        """A fresh ndd reader of this rank's shard, with checkpointing on (its position can be saved)."""
        ndd = self.ndd()
        if isinstance(self.data, ShardSet):
            args = shard_reader_args(self.data, shard_id=self.shard_id, num_shards=self.num_shards,
                                     shuffle=self.shuffle, seed=self.seed)
            make = ndd.readers.Webdataset
        else:
            args = file_reader_args(reader_args(self.data)[0], shard_id=self.shard_id, num_shards=self.num_shards,
                                    shuffle=self.shuffle, seed=self.seed)
            make = ndd.readers.File
        return make(**args, max_batch_size=self.batch_size, enable_checkpointing=True)

    def start(self, state: Optional[Mapping]) -> None:
        """Start from the beginning of the stream (``state`` None) or exactly where :meth:`state_dict` was taken:
        a fresh reader (DALI restores a reader's position only before it first reads), given the saved position,
        and the RNG in the saved state."""
        ndd = self.ndd()
        if state is not None:
            missing = [key for key in STATE_KEYS if key not in state]
            if missing:
                raise UserError(f"the dynamic input's state lacks {missing} (a DynamicInput.state_dict() is "
                                f"expected, with {list(STATE_KEYS)})")
        reader = self.new_reader()
        if state is None:
            epoch, batch, rng = 0, 0, ndd.random.RNG(seed=rank_seed(self.seed, self.shard_id))
        else:
            epoch, batch, rng = int(state["epoch"]), int(state["batch"]), ndd.random.RNG(state=state["rng"])
            reader.set_state(state["reader"])
        with self.context:
            self.meta = reader.get_metadata(self.batch_size)  # starts the reader (at the saved position)
        self.reader, self.rng, self.epoch, self.batch = reader, rng, epoch, batch
        self.ahead = self.saved = None

    def state_dict(self) -> dict:
        """The position in the stream (:data:`STATE_KEYS`): ``epoch`` and ``batch`` (batches returned in it), the
        reader's DALI checkpoint and the RNG's state, as strings: JSON-safe. :meth:`load_state_dict` of it goes on
        with exactly the batches that would have come next. (With a batch read ahead, the state is the one taken
        before reading it.)"""
        if self.saved is not None:
            return dict(self.saved)
        return dict(epoch=self.epoch, batch=self.batch, reader=str(self.reader.get_state()),
                    rng=str(self.rng.get_state()))

    def load_state_dict(self, state: Mapping) -> None:
        """Go on exactly where ``state`` (a :meth:`state_dict`) was taken."""
        self.start(state)

    # ------------------------------------------------------------------------------------------------ epochs

    def ndd(self):
        """DALI Dynamic with the stage's operators (:func:`dali_cutmix.dynamic.dynamic_operators`); makes this
        input's evaluation context (its threads and device) on first use."""
        from .dynamic import dynamic_operators

        ndd = dynamic_operators()
        if self.context is None:
            self.context = ndd.EvalContext(num_threads=self.num_threads, device_id=self.device_id)
        return ndd

    def shard_samples(self) -> int:
        """Samples of this rank's shard in the current epoch: DALI's cut of the data set
        (:func:`dali_cutmix.builder.shard_size`) of the shard the reader reads then
        (:func:`dali_cutmix.builder.epoch_shard`)."""
        shard = epoch_shard(self.shard_id, self.num_shards, self.epoch, self.meta["stick_to_shard"])
        return shard_size(self.meta["epoch_size"], self.num_shards, shard)

    def __len__(self) -> int:
        """Batches in the current epoch."""
        return math.ceil(self.shard_samples() / self.batch_size)

    def next_epoch(self) -> None:
        """Skip what is left of the current epoch (the reader reads it, nothing is decoded) and start the next."""
        if self.ahead is not None:  # read already
            self.ahead, self.batch = None, self.batch + 1
        self.saved = None
        with self.context:
            while self.batch < len(self):
                self.reader(batch_size=self.batch_size)
                self.batch += 1
        self.epoch, self.batch = self.epoch + 1, 0

    def read_decode(self):
        """Read this epoch's next batch and start decoding it (random crop, resize): DALI Dynamic evaluates
        eagerly and asynchronously, so the work goes on while the caller does other things. Returns ``(labels,
        images, real)``: ``real`` of the batch's samples are the shard's (the rest is the reader's padding)."""
        ndd = self.ndd()
        n = self.batch_size
        real = min(n, self.shard_samples() - self.batch * n)
        with self.context:
            jpegs, labels = self.reader(batch_size=n)
            if isinstance(self.data, ShardSet):  # resolved once, in __init__
                labels = parse_label(labels, self.data.label_digits, ops=ndd)
            images = decode_random_crop(jpegs, device=self.device, crop=self.crop, **self.cropping, ops=ndd,
                                        random_args=dict(rng=self.rng, batch_size=n))
        return labels, images, real

    def next_batch(self):
        """The next batch of the current epoch, ``(images, targets)`` torch tensors on the device; raises
        StopIteration after its last one (then :meth:`next_epoch` starts the next).

        Like the pipeline's loader, it reads one batch ahead: after a batch is finished (mixed, flipped,
        normalized), the next one of the epoch is read and its decoding started, after the state was saved
        (:meth:`state_dict` returns that state, so the batch read ahead is read again on resume, with the same
        draws)."""
        import numpy as np

        from .builder import one_hot_labels
        from .dynamic import mix_batches

        if self.batch >= len(self):
            raise StopIteration
        ndd = self.ndd()
        labels, images, real = self.ahead if self.ahead is not None else self.read_decode()
        self.ahead = None
        n = self.batch_size
        with self.context:
            if self.mixing:
                # The gate, as the pipeline's: -1 for the reader's padding, 0 once mixing is off.
                gate = ndd.batch([np.asarray(v) for v in gate_values(n, real, self.epoch, self.mix_off_epoch)])
                images, targets, _ = mix_batches(images, labels, num_classes=self.num_classes, options=self.options,
                                                 gate=gate, rng=self.rng)
            else:
                targets = one_hot_labels(labels, self.num_classes, label_smoothing=self.options.label_smoothing,
                                         device=self.device, ops=ndd)
            images = flip_normalize(images, **self.normalize, ops=ndd, random_args=dict(rng=self.rng, batch_size=n))
            images, targets = images.torch(), targets.torch()
        self.batch += 1
        self.saved = None
        self.saved = self.state_dict()
        if self.batch < len(self):
            self.ahead = self.read_decode()
        return (images, targets) if real == n else (images[:real], targets[:real])
