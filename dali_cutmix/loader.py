"""CutMixLoader: a PyTorch iterator over a DALI pipeline built by :func:`build_cutmix_pipeline`."""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

from .pipeline import OUTPUT_NAMES, READER_NAME

LAST_BATCH_POLICIES = ("partial", "drop", "fill")


class CutMixLoader:
    """Iterate ``(images, targets)`` torch tensors from a DALI pipeline, one epoch per ``iter()``.

    Args:
        pipeline: an (unbuilt or built) DALI pipeline whose first two outputs are images and labels,
            with a reader named ``reader_name`` (what :func:`build_cutmix_pipeline` makes).
        reader_name: the reader whose shard defines the epoch.
        last_batch: what happens to the last, incomplete batch of this rank's shard:
            ``"partial"`` (default) yields it short, so every sample of the shard is seen exactly once;
            ``"drop"`` skips it, so every batch has ``batch_size`` samples;
            ``"fill"`` completes it with samples repeated from the shard (DALI's padding).
        output_names: names for the pipeline's outputs; the first two are yielded.

    Yields:
        ``(images, targets)``: images as the pipeline made them (N, C, H, W; float32 or float16) and
        targets (N, num_classes) float32 soft labels (or int64 class ids for a pipeline with integer labels),
        on the pipeline's GPU for a GPU pipeline, on the CPU otherwise. With more outputs (``return_params``)
        the extra tensors follow.

    ``len(loader)`` is the number of batches per epoch on this rank. Epochs are clean: each ``iter()``
    yields exactly one epoch of the shard and then stops; the next ``iter()`` starts the next epoch.
    """

    def __init__(self, pipeline, *, reader_name: str = READER_NAME, last_batch: str = "partial",
                 output_names: Optional[Tuple[str, ...]] = None):
        from nvidia.dali.plugin.base_iterator import LastBatchPolicy
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        if last_batch not in LAST_BATCH_POLICIES:
            raise ValueError(f"last_batch must be one of {LAST_BATCH_POLICIES}, got {last_batch!r}")
        policy = {"partial": LastBatchPolicy.PARTIAL, "drop": LastBatchPolicy.DROP,
                  "fill": LastBatchPolicy.FILL}[last_batch]
        if not pipeline._built:
            pipeline.build()
        n_out = pipeline.num_outputs
        names = tuple(output_names) if output_names else OUTPUT_NAMES + tuple(f"out{i}" for i in range(2, n_out))
        if len(names) != n_out:
            raise ValueError(f"output_names has {len(names)} names, the pipeline has {n_out} outputs")
        self.pipeline = pipeline
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
            self._iterator.reset()
        self._started = True
        batches = iter(self._iterator)
        batch = next(batches, None)
        if batch is None and first and self.pipeline.is_restored_from_checkpoint:
            # Restored from a checkpoint taken after the last batch of an epoch: that epoch is over, so this
            # iter() is the next epoch (DALI's iterator would first report the finished one as empty).
            self._iterator.reset()
            batches = iter(self._iterator)
            batch = next(batches, None)
        while batch is not None:
            yield tuple(batch[0][name] for name in self.output_names)
            batch = next(batches, None)

    def checkpoint(self) -> bytes:
        """The DALI pipeline's serialized state (reader position, every RNG state, the iterator's place in the
        epoch); needs ``enable_checkpointing``. Pass it to ``build_cutmix_pipeline(checkpoint=...)`` to resume."""
        return self._iterator.checkpoints()[0]
