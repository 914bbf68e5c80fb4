"""Optimizer and learning-rate schedule.

The schedule is a pure function of the position in training (epoch + fraction of the epoch), so resuming only
needs the optimizer step count; :class:`LRSchedule` keeps it and sets the lr before every step.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

from dali_cutmix.errors import UserError

#: Parameter names (the attribute name in their module) that ``transformer_embedding_decay`` covers: ViT's class
#: token and position embeddings, Swin's relative position bias tables.
EMBEDDING_NAMES = ("class_token", "pos_embedding", "position_embedding", "relative_position_bias_table")


def norm_classes() -> tuple:
    """The normalization layers whose parameters ``norm_weight_decay`` covers, by their public torch classes (what
    torchvision's ``set_weight_decay`` lists, with the lazy variants): BatchNorm 1d/2d/3d and SyncBatchNorm,
    InstanceNorm 1d/2d/3d, LayerNorm, GroupNorm, LocalResponseNorm."""
    import torch.nn as nn

    return (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
            nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d,
            nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
            nn.LazyInstanceNorm1d, nn.LazyInstanceNorm2d, nn.LazyInstanceNorm3d,
            nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def parameter_groups(model, *, weight_decay: float, norm_weight_decay: Optional[float] = None,
                     bias_weight_decay: Optional[float] = None,
                     transformer_embedding_decay: Optional[float] = None) -> List[Dict[str, Any]]:
    """``model``'s trainable parameters in weight-decay groups, as torchvision's reference ``set_weight_decay``:
    a parameter named in :data:`EMBEDDING_NAMES` takes ``transformer_embedding_decay``, else one named ``bias`` (or
    ``*_bias``: attention's ``in_proj_bias``, which torchvision's rule misses) takes ``bias_weight_decay``, else one
    of a normalization layer (BatchNorm, LayerNorm, GroupNorm, InstanceNorm,
    LocalResponseNorm) takes ``norm_weight_decay``; each of those that is None, and every other parameter, takes
    ``weight_decay``. Returns the non-empty groups (``params``, ``weight_decay``, ``name``) in the order other,
    norm, bias, embedding; within a group, in ``model.parameters()`` order."""
    norms = norm_classes()
    groups: Dict[str, List] = {"other": [], "norm": [], "bias": [], "embedding": []}
    decays = {"other": weight_decay, "norm": norm_weight_decay, "bias": bias_weight_decay,
              "embedding": transformer_embedding_decay}
    seen = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if transformer_embedding_decay is not None and name in EMBEDDING_NAMES:
                groups["embedding"].append(param)
            elif bias_weight_decay is not None and (name == "bias" or name.endswith("_bias")):
                groups["bias"].append(param)
            elif norm_weight_decay is not None and isinstance(module, norms):
                groups["norm"].append(param)
            else:
                groups["other"].append(param)
    return [dict(params=params, weight_decay=float(decays[key]), name=key)
            for key, params in groups.items() if params]


def build_optimizer(model, *, lr: float, momentum: float = 0.9, nesterov: bool = False, weight_decay: float,
                    optimizer: str = "sgd", norm_weight_decay: Optional[float] = None,
                    bias_weight_decay: Optional[float] = None, transformer_embedding_decay: Optional[float] = None):
    """The optimizer over ``model``'s trainable parameters, in the weight-decay groups of :func:`parameter_groups`
    (one group, in ``model.parameters()`` order, when no decay but ``weight_decay`` is given: the CutMix paper's
    decay on every parameter).

    ``optimizer``: ``"sgd"`` (``momentum``, ``nesterov``) or ``"adamw"`` (PyTorch's defaults: betas (0.9, 0.999),
    eps 1e-8, decoupled weight decay; ``momentum`` and ``nesterov`` are not used).
    """
    import torch

    params = parameter_groups(model, weight_decay=weight_decay, norm_weight_decay=norm_weight_decay,
                              bias_weight_decay=bias_weight_decay,
                              transformer_embedding_decay=transformer_embedding_decay)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    raise UserError(f"--optimizer must be 'sgd' or 'adamw', got {optimizer!r}")


def lr_at(epoch: float, *, base_lr: float, epochs: int, schedule: str, milestones: Sequence[int] = (),
          gamma: float = 0.1, warmup_epochs: float = 0.0) -> float:
    """The learning rate at fractional epoch ``epoch`` (0 = start of training, ``epochs`` = end).

    - warmup: linear from ``base_lr / warmup steps`` to ``base_lr`` over the first ``warmup_epochs``;
    - ``"step"``: ``base_lr * gamma ** k`` where k = number of milestones <= the current (0-based) epoch, so
      milestones 75/150/225 give epochs 0-74 at 0.1, 75-149 at 0.01, ... (the paper's schedule);
    - ``"cosine"``: half a cosine from ``base_lr`` (end of warmup) to 0 (end of training).
    """
    if warmup_epochs > 0 and epoch < warmup_epochs:
        return base_lr * epoch / warmup_epochs
    if schedule == "step":
        passed = sum(1 for m in milestones if int(epoch) >= m)
        return base_lr * gamma ** passed
    if schedule == "cosine":
        span = max(epochs - warmup_epochs, 1e-12)
        t = min(max((epoch - warmup_epochs) / span, 0.0), 1.0)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))
    raise UserError(f"--schedule must be 'step' or 'cosine', got {schedule!r}")


class LRSchedule:
    """Sets the optimizer's lr before each step from the step count; ``state_dict()`` is ``{"step": int}``."""

    def __init__(self, optimizer, *, steps_per_epoch: int, base_lr: float, epochs: int, schedule: str,
                 milestones: Sequence[int] = (), gamma: float = 0.1, warmup_epochs: float = 0.0):
        if steps_per_epoch < 1:
            raise UserError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.optimizer = optimizer
        self.steps_per_epoch = int(steps_per_epoch)
        self.options = dict(base_lr=float(base_lr), epochs=int(epochs), schedule=schedule,
                            milestones=tuple(milestones), gamma=float(gamma), warmup_epochs=float(warmup_epochs))
        self.step_count = 0

    def lr(self) -> float:
        """The lr of the next step: the schedule's value at the step's start (``step / steps_per_epoch``); during
        warmup at its end (``(step + 1) / steps_per_epoch``), so the very first step has a non-zero lr."""
        epoch = self.step_count / self.steps_per_epoch
        if epoch < self.options["warmup_epochs"]:
            epoch = (self.step_count + 1) / self.steps_per_epoch
        return lr_at(epoch, **self.options)

    def apply(self) -> float:
        """Write :meth:`lr` into every parameter group; returns it. Call before ``optimizer.step()``."""
        value = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = value
        return value

    def advance(self) -> None:
        """Count one optimizer step."""
        self.step_count += 1

    def state_dict(self) -> Dict[str, int]:
        return {"step": self.step_count}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.step_count = int(state["step"])
