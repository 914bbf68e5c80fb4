"""CutMixLoader: a PyTorch iterator over a DALI pipeline built by :func:`build_cutmix_pipeline`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator, Optional, Tuple

from .builder import OUTPUT_NAMES, READER_NAME, reader_source
from .errors import UserError
from .folder_reader import image_list
from .imagecheck import BAD, BadFileError, check_image_file
from .shard_reader import ShardSet, is_s3, s3_unreachable

LAST_BATCH_POLICIES = ("partial", "drop", "fill")
#: DALI's errors that name the file they failed on: the decoder's (the path as the reader's list gives it) and the
#: file reader's (the full path): "File mapping failed" for a missing or empty file, "Could not open file PATH:
#: STRERROR" for a missing one with ``dont_use_mmap=True``. ``tests/test_dali_messages.py`` pins each text by
#: making DALI raise it.
_NAMED_FAILURES = (re.compile(r"Failed to decode sample #\d+ ?: ?(?P<path>.+?)\s*$", re.M),
                   re.compile(r"File mapping failed: (?P<path>.+?)\s*$", re.M),
                   re.compile(r"Could not open file (?P<path>.+?)(?:: [^/:]+)?\s*$", re.M))
#: The messages of the errors a user can cause in the mixing stage's native operators (``native/mix_ops.cc``,
#: ``kUserMark``): labels out of range or not integers, images not HWC or of different sizes, a bad gate.
STAGE_ERROR_MARK = "[dali-cutmix] "
_STAGE_FAILURE = re.compile(re.escape(STAGE_ERROR_MARK) + r"(?P<message>.+?)\s*$", re.M)
#: How DALI's webdataset reader names a sample: ``TAR:BYTE_OFFSET:KEY.EXT``.
_SHARD_SAMPLE = re.compile(r"^(?P<tar>.+?\.tar):(?P<offset>\d+):(?P<key>.+)$")
#: What to do about a sample of a tar shard that DALI cannot decode.
SHARD_FIX = ("tar shards cannot skip a sample; write them again with `dali-cutmix shard --full`, which decodes "
             "every file first and leaves out those DALI cannot read")
#: nvImageCodec's statuses that mean "this file": its error names the status ('#3'), never the file.
_CODEC_FAILURE = re.compile(r"nvImageCodec failure: '#(\d+)'")
CODEC_DATA_STATUSES = {3: "a bad code stream", 4: "a format it does not support"}


def _dali_line(error: BaseException) -> str:
    """The line of a DALI error that says what happened (after "encountered:"), else its first line."""
    text = str(error)
    lines = [line.strip() for line in text.split("encountered:", 1)[-1].splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _why(path: Path) -> str:
    if not path.exists():
        return "it is missing (moved or deleted after the file list was made)"
    check = check_image_file(path)
    if check.status == BAD:
        return check.detail
    return "DALI cannot decode it"


def bad_file_error(error: BaseException, source=None) -> Optional[BadFileError]:
    """A :class:`~dali_cutmix.imagecheck.BadFileError` for a DALI error that a data file caused, None for any other.

    Its message, one line, names the file and says why (DALI's own line is its ``dali`` attribute, the DALI
    error its ``__cause__`` when raised by :class:`CutMixLoader`). DALI's decoder and reader name the file they
    fail on (the path as the reader's list gives it, mapped to a full path through ``source``, what
    :func:`~dali_cutmix.builder.reader_source` returns). The "#N" of DALI's "Failed to decode sample #N" is the
    sample's place in its batch, not in the list: the path that follows it is what names the file.
    nvImageCodec's "bad code stream" / "unsupported format" errors name no file (their "#N" is a status code): the
    file is then found among ``source``'s files by :func:`~dali_cutmix.imagecheck.check_image_file` (the first bad
    one); when none is found, the message says so and how to find it (``dali-cutmix scan --full``).
    """
    text = str(error)
    dali = _dali_line(error)
    shards = source if isinstance(source, ShardSet) else None
    for pattern in _NAMED_FAILURES:
        match = pattern.search(text)
        if match:
            sample = _SHARD_SAMPLE.match(match.group("path"))
            if sample is not None or shards is not None:
                where = (f"sample {sample.group('key')!r} of {sample.group('tar')!r} (byte {sample.group('offset')})"
                         if sample is not None else f"a sample of the tar shards in {shards.location!r}")
                return BadFileError(f"cannot decode {where}: {SHARD_FIX}", reason="DALI cannot decode it",
                                    dali=dali, shard=True)
            path = Path(match.group("path"))
            if not path.is_absolute() and source is not None:
                path = image_list(source).path(str(path))
            reason = _why(path)
            return BadFileError(f"cannot read image file {str(path)!r}: {reason}", path=path, reason=reason,
                                dali=dali)
    match = _CODEC_FAILURE.search(text)
    if match is None or int(match.group(1)) not in CODEC_DATA_STATUSES:
        return None
    what = CODEC_DATA_STATUSES[int(match.group(1))]
    if shards is not None:
        return BadFileError(f"a sample of the tar shards in {shards.location!r} failed to decode (nvImageCodec "
                            f"reports {what}) and DALI does not say which: {SHARD_FIX}",
                            reason=f"nvImageCodec reports {what}", dali=dali, shard=True)
    if source is not None:
        images = image_list(source)
        for path in map(images.path, images.files):
            check = check_image_file(path)
            if check.status == BAD:
                return BadFileError(f"cannot read image file {str(path)!r}: {check.detail}", path=path,
                                    reason=check.detail, dali=dali)
    where = f" of {str(source)!r}" if isinstance(source, (str, os.PathLike)) else ""
    return BadFileError(
        f"an image file{where} failed to decode (nvImageCodec reports {what}) and DALI does not say which; "
        f"`dali-cutmix scan --full DATA` decodes every file and names it", reason=f"nvImageCodec reports {what}",
        dali=dali)


def source_error(error: BaseException, source=None) -> Optional[UserError]:
    """The one-line UserError for a DALI error that a user's input or data caused, None for any other (a bug, to
    be re-raised as it is). In order: the mixing stage refused its input (:func:`stage_error`); the S3 endpoint of
    the shards ``source`` (a :class:`~dali_cutmix.shard_reader.ShardSet` under ``s3://``) does not answer
    (:func:`~dali_cutmix.shard_reader.s3_unreachable`); a data file failed (:func:`bad_file_error`). ``source``
    is what :func:`~dali_cutmix.builder.reader_source` returns for the pipeline's reader."""
    found = stage_error(error)
    if found is None and isinstance(source, ShardSet) and is_s3(source.location):
        found = s3_unreachable(error, source.location)
    return found or bad_file_error(error, source)


def stage_error(error: BaseException) -> Optional[UserError]:
    """A one-line UserError for a DALI error that the mixing stage raised over a user's input (its message, which
    starts with :data:`STAGE_ERROR_MARK` in DALI's text, without the mark), None for any other."""
    match = _STAGE_FAILURE.search(str(error))
    return None if match is None else UserError(match.group("message"))


class CutMixLoader:
    """Iterate ``(images, targets)`` torch tensors from a DALI pipeline, one epoch per ``iter()``.

    Args:
        pipeline: an (unbuilt or built) DALI pipeline whose first two outputs are images and labels,
            with a reader named ``reader_name`` (what :func:`build_cutmix_pipeline` makes).
        reader_name: the reader whose shard defines the epoch.
        last_batch: what happens to the last, incomplete batch of this rank's shard:
            ``"partial"`` (default) yields it short, so every sample of the shard is seen exactly once;
            ``"drop"`` skips it, so every batch has ``batch_size`` samples;
            ``"fill"`` completes it with samples repeated from the shard (DALI's padding, which the training
            pipeline's mixing stage leaves unmixed and never pairs with a sample).
        output_names: names for the pipeline's outputs; the first two are yielded.

    Yields:
        ``(images, targets)``: images as the pipeline made them (N, C, H, W; float32 or float16) and
        targets (N, num_classes) float32 soft labels (or int64 class ids for a pipeline with integer labels),
        on the pipeline's GPU for a GPU pipeline, on the CPU otherwise. With more outputs (``return_params``)
        the extra tensors follow.

    ``len(loader)`` is the number of batches per epoch on this rank. Epochs are clean: each ``iter()``
    yields exactly one epoch of the shard and then stops; the next ``iter()`` starts the next epoch.

    Raises (while iterating):
        dali_cutmix.imagecheck.BadFileError: DALI failed on a data file; the message (one line) names it and says why
            (see :func:`bad_file_error`); DALI's error is its ``__cause__``. The pipeline cannot go on (DALI
            invalidates it): build a new one without the file.
        UserError: the mixing stage refused its input (labels outside ``[0, num_classes)`` or not integers,
            images not HWC, e.g. channels-first, or of different sizes): one line, the stage's message
            (:func:`stage_error`); DALI's error is its ``__cause__``. The pipeline cannot go on either.
        dali_cutmix.shard_reader.S3Unreachable: the S3 endpoint of ``s3://`` shards stopped answering (after the
            AWS SDK's retries): one line naming the endpoint and the shard folder, and what to do
            (:func:`~dali_cutmix.shard_reader.s3_unreachable`); also from the constructor, when it builds the
            pipeline. The pipeline cannot go on: build a new one (from a checkpoint) once the endpoint answers.
    """

    def __init__(self, pipeline, *, reader_name: str = READER_NAME, last_batch: str = "partial",
                 output_names: Optional[Tuple[str, ...]] = None):
        from nvidia.dali.plugin.base_iterator import LastBatchPolicy
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        if last_batch not in LAST_BATCH_POLICIES:
            raise UserError(f"last_batch must be one of {LAST_BATCH_POLICIES}, got {last_batch!r}")
        policy = {"partial": LastBatchPolicy.PARTIAL, "drop": LastBatchPolicy.DROP,
                  "fill": LastBatchPolicy.FILL}[last_batch]
        self.pipeline = pipeline
        self.reader_name = reader_name
        if not pipeline._built:
            self._data_errors(pipeline.build)
        n_out = pipeline.num_outputs
        names = tuple(output_names) if output_names else OUTPUT_NAMES + tuple(f"out{i}" for i in range(2, n_out))
        if len(names) != n_out:
            raise UserError(f"output_names has {len(names)} names, the pipeline has {n_out} outputs")
        self.output_names = names
        self.last_batch = last_batch
        self.batch_size = pipeline.max_batch_size
        self._iterator = DALIGenericIterator(
            pipeline, list(names), reader_name=reader_name, last_batch_policy=policy,
            auto_reset=False, prepare_first_batch=False)
        self._started = False

    def __len__(self) -> int:
        return len(self._iterator)

    def __iter__(self) -> Iterator[tuple]:
        first = not self._started
        if self._started:
            self._data_errors(self._iterator.reset)
        self._started = True
        batches = iter(self._iterator)
        batch = self._next(batches)
        if batch is None and first and self.pipeline.is_restored_from_checkpoint:
            # Restored from a checkpoint taken after the last batch of an epoch: that epoch is over, so this
            # iter() is the next epoch (DALI's iterator would first report the finished one as empty).
            self._data_errors(self._iterator.reset)
            batches = iter(self._iterator)
            batch = self._next(batches)
        while batch is not None:
            yield tuple(batch[0][name] for name in self.output_names)
            batch = self._next(batches)

    def _next(self, batches):
        return self._data_errors(next, batches, None)

    def _data_errors(self, call, *args):
        """``call(*args)``, with a DALI error that the user's input or data caused re-raised as a one-line
        UserError (:func:`source_error`): a :class:`~dali_cutmix.imagecheck.BadFileError` naming a data file,
        :class:`~dali_cutmix.shard_reader.S3Unreachable` naming the S3 endpoint, the stage's refusal of its
        input. Any other DALI error is re-raised as it is."""
        try:
            return call(*args)
        except RuntimeError as e:
            error = source_error(e, reader_source(self.pipeline, self.reader_name))
            if error is None:
                raise
            raise error from e

    def checkpoint(self) -> bytes:
        """The DALI pipeline's serialized state (reader position, every RNG state, the iterator's place in the
        epoch); needs ``enable_checkpointing``. Pass it to ``build_cutmix_pipeline(checkpoint=...)`` to resume."""
        return self._iterator.checkpoints()[0]
