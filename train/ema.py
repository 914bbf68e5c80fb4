"""The model EMA (``--model-ema DECAY``, ``--model-ema-steps N``): an exponential moving average of the model's
weights, evaluated each epoch beside the model.

Two sources define it, and ``--model-ema-adjust`` picks which one a run follows (:func:`build_ema`):

- torchvision's reference (``references/classification/train.py``, ``utils.ExponentialMovingAverage``, a
  ``torch.optim.swa_utils.AveragedModel`` with ``use_buffers=True``): the decay is adjusted to the run,
  ``alpha = min(1, (1 - DECAY) * ranks * per-rank batch * N / epochs)``, ``decay = 1 - alpha``
  (:func:`effective_decay`); the average is updated after every N-th optimizer step of an epoch (steps 1, N + 1,
  2N + 1, ...: torchvision's ``i % N == 0`` over 0-based steps); its first update copies the model, and during the
  warmup epochs every update copies it (torchvision resets ``n_averaged`` there);
- timm's ``ModelEma`` (DeiT's ``main.py``): the decay as given, the average starts as a copy of the initial model
  and is updated after every N-th step (DeiT: every step).

An update is ``ema = decay * ema + (1 - decay) * model`` for every floating-point parameter and buffer (BatchNorm's
running statistics included); integer buffers (BatchNorm's ``num_batches_tracked``) are copied (torchvision and
timm average them too and truncate; nothing reads them while BatchNorm has a momentum).
"""

from __future__ import annotations

import copy
from typing import Any, Dict


def effective_decay(decay: float, *, adjust: bool, global_batch: int, every: int, epochs: int) -> float:
    """The decay a run uses: ``decay`` itself, or with ``adjust`` torchvision's adjustment (``1 - min(1, (1 - decay)
    * global_batch * every / epochs)``: ``global_batch`` = ranks x per-rank batch)."""
    if not adjust:
        return float(decay)
    alpha = min(1.0, (1.0 - decay) * global_batch * every / epochs)
    return 1.0 - alpha


class ModelEma:
    """The EMA of ``model`` (the unwrapped model: a deep copy of it, on its device, without gradients).

    ``decay``: the decay of each update (:func:`effective_decay`); ``every``: update after steps 1, every + 1, ...
    of each epoch; ``copy_first``: the first update copies the model (torchvision), else the copy made here counts
    as the first (timm); ``copy_through``: every update of the epochs that start before ``copy_through`` epochs have passed copies
    the model (torchvision's ``--lr-warmup-epochs``; 0: none)."""

    def __init__(self, model, *, decay: float, every: int, copy_first: bool, copy_through: float = 0.0):
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.decay, self.every, self.copy_through = float(decay), int(every), float(copy_through)
        self.updates = 0 if copy_first else 1  # the averages taken so far (torchvision's n_averaged)

    def due(self, step: int) -> bool:
        """Whether the EMA updates after (1-based) ``step`` of an epoch."""
        return (step - 1) % self.every == 0

    def update(self, model, epoch: int) -> None:
        """Average ``model``'s weights (its ``state_dict``, in the same order as the EMA's) into the EMA, after a
        step of (1-based) ``epoch``."""
        import torch

        decay = self.decay
        with torch.no_grad():
            for average, value in zip(self.module.state_dict().values(), model.state_dict().values()):
                if self.updates == 0 or not average.is_floating_point():
                    average.copy_(value)
                else:
                    average.copy_(decay * average + (1.0 - decay) * value)
        self.updates = 0 if epoch - 1 < self.copy_through else self.updates + 1  # torchvision: epoch < warmup, 0-based

    def state_dict(self) -> Dict[str, Any]:
        """``{"weights": the EMA model's state_dict, "updates": the averages taken}``."""
        return dict(weights=self.module.state_dict(), updates=self.updates)

    def load_state_dict(self, state) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])


def ema_decay(cfg) -> float:
    """The decay the run's EMA uses (``cfg.model_ema``, torchvision's adjustment applied with
    ``model_ema_adjust``); ``cfg.model_ema`` must be set."""
    return effective_decay(cfg.model_ema, adjust=cfg.model_ema_adjust, global_batch=cfg.batch_size,
                           every=cfg.model_ema_steps, epochs=cfg.epochs)


def build_ema(cfg, model) -> "ModelEma | None":
    """The EMA of ``model`` that ``cfg`` (a :class:`~dali_cutmix.train.config.TrainConfig`) asks for, None without
    ``--model-ema``: torchvision's rule with ``model_ema_adjust`` (the adjusted decay, a copy at the first update
    and through ``warmup_epochs``), timm's without."""
    if cfg.model_ema is None:
        return None
    return ModelEma(model, decay=ema_decay(cfg), every=cfg.model_ema_steps, copy_first=cfg.model_ema_adjust,
                    copy_through=cfg.warmup_epochs if cfg.model_ema_adjust else 0.0)
