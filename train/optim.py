"""Optimizer and learning-rate schedule.

The schedule is a pure function of the position in training (epoch + fraction of the epoch), so resuming only
needs the optimizer step count; :class:`LRSchedule` keeps it and sets the lr before every step.
"""

from __future__ import annotations

import math
from typing import Dict, Sequence


def build_optimizer(model, *, lr: float, momentum: float, nesterov: bool, weight_decay: float):
    """SGD over all of ``model``'s parameters, weight decay on all of them (as the CutMix paper's code does)."""
    import torch

    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov,
                           weight_decay=weight_decay)


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
    raise ValueError(f"--schedule must be 'step' or 'cosine', got {schedule!r}")


class LRSchedule:
    """Sets the optimizer's lr before each step from the step count; ``state_dict()`` is ``{"step": int}``."""

    def __init__(self, optimizer, *, steps_per_epoch: int, base_lr: float, epochs: int, schedule: str,
                 milestones: Sequence[int] = (), gamma: float = 0.1, warmup_epochs: float = 0.0):
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
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
