"""This rank's data: the CutMix training loader and the validation loader over its own shards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional

from dali_cutmix.errors import UserError, first_line
from dali_cutmix.helpers.host import usable_cores

from .config import TrainConfig
from .distributed import RankInfo

def default_workers(local_world_size: int) -> int:
    """DALI threads per rank when ``--workers`` is not given: this node's CPU cores shared by its ranks, 1 to 8."""
    return max(1, min(8, usable_cores() // max(local_world_size, 1)))


@dataclass
class RankData:
    """The loaders of one rank and what its training reader reports (shard, epoch size)."""

    train: Any
    val: Any
    reader_meta: Dict[str, Any]

    def next_train_epoch(self) -> Iterator:
        """The batches of the next training epoch (``len(self.train)`` of them)."""
        return iter(self.train)

    @property
    def train_samples(self) -> int:
        """Training samples this rank sees per epoch (full batches only)."""
        return len(self.train) * self.train.batch_size


def build_rank_data(cfg: TrainConfig, *, train_dir, val_dir, num_classes: int, info: RankInfo, device: str,
                    device_id: Optional[int], dali_checkpoint: Optional[str] = None) -> RankData:
    """Build this rank's loaders.

    Training: :func:`dali_cutmix.pipelines.imagenet.build_imagenet_train_pipeline` on shard ``info.rank`` of
    ``info.world_size``, ``cfg.batch_size / world_size`` images per step, last incomplete batch dropped (every rank
    takes the same number of steps), continuing from ``dali_checkpoint`` when given. The mixing stage is in the
    graph with ``cfg.mixing`` and mixes as ``cfg.mix`` says (without it, the targets are one-hots smoothed by
    ``cfg.mix.label_smoothing``). With ``cfg.mix_off_epoch`` N, epochs 1..N are mixed and mixing is off from
    epoch N+1 (the pipeline's reader counts epochs from 0 and closes the gate at index N: each
    ``next_train_epoch()`` is one reader epoch, so the two stay in step, across a resume too). The gate is in the
    graph whatever N is (None included), so the graph does not depend on the setting.
    Validation: shard ``info.rank`` of the val split, centre crop ``cfg.eval_crop``, every image exactly once over
    all ranks (its labels on the GPU in a GPU pipeline). Both loaders yield images (N, H, W, C) with
    ``cfg.channels_last``, else (N, C, H, W); float16 under ``--amp fp16``, else float32.

    Raises:
        UserError: this rank's shard is smaller than one batch (the message names ``--batch-size``), or
            ``dali_checkpoint`` was taken from another pipeline graph.
    """
    from dali_cutmix import CutMixLoader
    from dali_cutmix.pipelines.imagenet import build_imagenet_train_pipeline, build_imagenet_val_pipeline
    from dali_cutmix.shard_reader import resolve_shards

    per_rank = cfg.batch_size // info.world_size
    threads = cfg.workers or default_workers(info.local_world_size)
    shard = dict(shard_id=info.rank, num_shards=info.world_size, num_threads=threads, seed=cfg.seed,
                 device=device, device_id=device_id)
    # The images leave DALI as the model takes them: NHWC for a channels_last model (a view, no copy, in torch),
    # float16 under --amp fp16 (DALI has no bfloat16: bf16 autocast casts inside the model).
    image = dict(layout="NHWC" if cfg.channels_last else "NCHW", dtype="float16" if cfg.amp == "fp16" else "float32")
    train_pipe = build_imagenet_train_pipeline(
        resolve_shards(train_dir), batch_size=per_rank, num_classes=num_classes, crop=cfg.crop,
        min_area=cfg.min_area,
        mixing=cfg.mixing, mix_options=cfg.mix, augment=cfg.augment,
        mix_off_epoch=cfg.mix_off_epoch, decode=cfg.decode,
        checkpoint=dali_checkpoint, **image, **shard)
    try:
        train = CutMixLoader(train_pipe, last_batch="drop")
    except RuntimeError as e:
        if dali_checkpoint is None:
            raise
        raise UserError(f"the checkpoint's DALI state does not fit this training pipeline (resume with the "
                         f"mixing settings of the run that wrote it; DALI: {first_line(e)})") from None
    meta = dict(train.pipeline.reader_meta("Reader"))
    if len(train) == 0:
        if info.world_size == 1:
            raise UserError(f"--batch-size {cfg.batch_size} is too large: a step takes {per_rank} images but "
                            f"{str(train_dir)!r} holds only {meta['epoch_size']}")
        raise UserError(
            f"--batch-size {cfg.batch_size} is too large: each of the {info.world_size} ranks takes {per_rank} "
            f"images per step but its shard of {str(train_dir)!r} holds only "
            f"{meta['epoch_size'] // info.world_size}")
    val_pipe = build_imagenet_val_pipeline(resolve_shards(val_dir), batch_size=per_rank, crop=cfg.eval_crop,
                                           resize=cfg.val_resize, **image, **shard)
    val = CutMixLoader(val_pipe, last_batch="partial")
    return RankData(train=train, val=val, reader_meta={
        k: meta.get(k) for k in ("epoch_size", "epoch_size_padded", "number_of_shards", "shard_id")})

