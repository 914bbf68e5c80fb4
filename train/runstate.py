"""A run's whole state as one object, in the manner of ``torch.distributed.checkpoint``'s ``Stateful``:
:meth:`RunState.state_dict` and :meth:`RunState.load_state_dict`. It holds the model, the optimizer, the lr
schedule, the fp16 scaler, the position in the run (epoch, step, each rank's running sums), each rank's DALI and
torch RNG state, the model EMA, the best top-1, and the run's settings; :mod:`dali_cutmix.train.checkpoint`
writes and reads what it gives.

The dict it gives (plain types and tensors, so the safe loader reads it)::

    format      "dali-cutmix-train/1"
    epoch       completed epochs (the run continues with epoch + 1, 1-based)
    step        steps of epoch + 1 already taken (0 at an epoch's end; > 0 for a mid-epoch checkpoint)
    partial     one dict per rank: its running sums of epoch + 1 so far (loss_sum, samples, mixed, wait_s, time_s,
                lr; see ``loop.train_one_epoch``), None at an epoch's end
    model       the model's state_dict (unwrapped from DDP / torch.compile)
    ema         the model EMA's state (``weights``: rank 0's EMA model state_dict, ``updates``: the averages
                taken), None without --model-ema
    ema_buffers one dict per rank: its EMA's buffers (BatchNorm statistics differ between ranks inside an epoch),
                None without --model-ema
    optimizer   the optimizer's state_dict
    scaler      the fp16 GradScaler's state_dict ({} when unused)
    schedule    {"step": optimizer steps so far}
    dali        one str per rank: each rank's DALI pipeline checkpoint (reader position, RNG states), as made by
                :func:`encode_dali_state` (DALI gives bytes: they are stored base64-encoded)
    torch_rng   one uint8 tensor per rank: torch's CPU RNG state
    best_top1   best validation top-1 so far (percent); best_epoch: its epoch; best_weights: "model" or "ema"
    metrics     the metrics record of epoch ``epoch`` (its line in metrics.jsonl; None before the first)
    config      the run's settings (TrainConfig.to_dict(): the mixing options under "mix")
    world_size  number of ranks that wrote it
    classes     class names, in label order
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any, Dict, List, Mapping, Optional

from dali_cutmix.errors import UserError

from . import distributed
from .config import TrainConfig
from .distributed import RankInfo

FORMAT = "dali-cutmix-train/1"
#: The keys every checkpoint holds (``ema`` and ``best_weights`` came with the model EMA).
REQUIRED_KEYS = ("format", "epoch", "step", "partial", "model", "optimizer", "scaler", "schedule", "dali", "torch_rng",
                 "best_top1", "config", "world_size", "classes")


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit this run; the message names the file."""


def encode_dali_state(state) -> str:
    """A DALI pipeline checkpoint (``bytes`` or ``str``, as ``CutMixLoader.checkpoint()`` returns it) as a ``str``
    that :func:`decode_dali_state` turns back into exactly the same value."""
    if isinstance(state, (bytes, bytearray)):
        return "b64:" + base64.b64encode(bytes(state)).decode("ascii")
    return "str:" + str(state)


def decode_dali_state(text: str):
    """The DALI checkpoint :func:`encode_dali_state` encoded (for ``build_cutmix_pipeline(checkpoint=...)``)."""
    if text.startswith("b64:"):
        return base64.b64decode(text[4:])
    if text.startswith("str:"):
        return text[4:]
    raise CheckpointError("a DALI state in the checkpoint is not in the expected encoding")


@dataclasses.dataclass
class Position:
    """Where the run stands: ``epoch`` epochs done, ``step`` steps of the next one taken with this rank's running
    ``partial`` sums (None at an epoch's end), the best val top-1, its epoch and which weights scored it
    (``"model"`` or ``"ema"``), the last epoch's ``record``."""

    epoch: int = 0
    step: int = 0
    partial: Optional[Dict[str, float]] = None
    best_top1: float = -1.0
    best_epoch: int = 0
    best_weights: str = "model"
    record: Optional[Dict[str, Any]] = None


class RunState:
    """One rank's view of the run's state. ``training``: what it trains with (``raw`` model, ``optimizer``,
    ``schedule``, ``scaler``, ``ema``: see :class:`dali_cutmix.train.loop.Training`); ``data``: its loaders
    (``data.train.checkpoint()`` gives its DALI state); ``position``: where the run stands; ``classes``: the class
    names. DALI restores its state when its pipeline is built (:meth:`dali_checkpoint`), the rest in
    :meth:`load_state_dict`."""

    def __init__(self, *, cfg: TrainConfig, training, data, position: Position, info: RankInfo,
                 classes: List[str]):
        self.cfg, self.training, self.data, self.position = cfg, training, data, position
        self.info, self.classes = info, list(classes)

    def state_dict(self) -> Dict[str, Any]:
        """The run's state (the module docstring's dict): a collective, every rank calls it at the same step; each
        gets the whole dict (every rank's DALI state, RNG state and running sums; this rank's tensors)."""
        import torch

        training, position = self.training, self.position
        dali = distributed.all_gather_objects(encode_dali_state(self.data.train.checkpoint()))
        rng = distributed.all_gather_objects(torch.get_rng_state())
        partials = distributed.all_gather_objects(position.partial)
        ema = getattr(training, "ema", None)
        ema_buffers = None
        if ema is not None:
            ema_buffers = distributed.all_gather_objects(
                {name: buffer.detach().cpu() for name, buffer in ema.module.named_buffers()})
        return dict(
            format=FORMAT, epoch=position.epoch, step=position.step, partial=partials if position.step else None,
            model=training.raw.state_dict(), ema=ema.state_dict() if ema is not None else None,
            ema_buffers=ema_buffers,
            optimizer=training.optimizer.state_dict(), scaler=training.scaler.state_dict(),
            schedule=training.schedule.state_dict(), dali=dali, torch_rng=rng, best_top1=position.best_top1,
            best_epoch=position.best_epoch, best_weights=position.best_weights, metrics=position.record,
            config=self.cfg.to_dict(), world_size=self.info.world_size, classes=self.classes)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (a checkpoint :mod:`dali_cutmix.train.checkpoint` read and checked): weights,
        EMA, optimizer, schedule, scaler (when fp16 was on then and now), this rank's torch RNG and running sums,
        the position.

        Raises:
            CheckpointError: the checkpoint holds another optimizer's parameter groups, or no EMA for a run
                with ``--model-ema``.
        """
        import torch

        training = self.training
        training.raw.load_state_dict(state["model"])
        ema = getattr(training, "ema", None)
        if ema is not None:
            if state.get("ema") is None:
                raise CheckpointError("the checkpoint holds no model EMA: resume without --model-ema, or start a "
                                      "new run")
            ema.load_state_dict(state["ema"])
            ema.module.load_state_dict(state["ema_buffers"][self.info.rank], strict=False)
        try:
            training.optimizer.load_state_dict(state["optimizer"])
        except ValueError:  # other parameter groups
            raise CheckpointError(
                "the checkpoint holds another optimizer's state: resume with the same --optimizer, "
                "--norm-weight-decay, --bias-weight-decay and --transformer-embedding-decay") from None
        training.schedule.load_state_dict(state["schedule"])
        if state["scaler"] and training.scaler.is_enabled():  # --amp fp16 before and now
            training.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"][self.info.rank])
        step = int(state["step"])
        self.position = Position(
            epoch=int(state["epoch"]), step=step, partial=state["partial"][self.info.rank] if step else None,
            best_top1=float(state["best_top1"]), best_epoch=int(state.get("best_epoch", 0)),
            best_weights=str(state.get("best_weights", "model")), record=state.get("metrics"))

    @staticmethod
    def dali_checkpoint(state: Optional[Mapping[str, Any]], rank: int):
        """Rank ``rank``'s DALI pipeline checkpoint in ``state`` (None for a fresh run), for building its
        pipelines: DALI takes its state when the pipeline is built."""
        return None if state is None else decode_dali_state(state["dali"][rank])
