"""The DALI Dynamic training input (:class:`dali_cutmix.dynamic_input.DynamicInput`) as a ``torchdata.nodes``
graph: :func:`training_node` for the node, :func:`training_loader` for a ``torchdata.nodes.Loader`` over it, whose
``state_dict()`` / ``load_state_dict()`` resume mid-epoch exactly.

DALI 2.4's own nodes (``ndd.pytorch.nodes``: ``Reader``, ``DictMapper``, ``ToTorch``) keep no state (their
``get_state()`` is empty and ``Reader`` refuses one: "DALI Dynamic readers don't support checkpointing yet"), so
this node holds the reader and the RNG itself and saves theirs (:meth:`DynamicInput.state_dict`).

Needs ``torchdata`` (``pip install 'dali-cutmix[dynamic]'``); importing this module without it raises a
:class:`~dali_cutmix.errors.UserError` that says so.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from .errors import UserError

TORCHDATA_MISSING = ("the DALI Dynamic training input's torchdata.nodes graph needs torchdata, which is not "
                     "installed: pip install 'dali-cutmix[dynamic]'")

try:
    import torchdata.nodes as tn
except ModuleNotFoundError as e:
    if e.name is None or e.name.split(".")[0] != "torchdata":
        raise
    raise UserError(TORCHDATA_MISSING) from None


class CutMixNode(tn.BaseNode):
    """A ``torchdata.nodes`` source node yielding ``(images, targets)`` torch tensors: one epoch of this rank's
    shard per ``reset()``, read, decoded with the random crop, resized, mixed, flipped and normalized in DALI
    Dynamic mode (:class:`~dali_cutmix.dynamic_input.DynamicInput`, which takes the same arguments).

    ``reset(None)`` starts the next epoch (the first one on the first call); ``reset(state)`` goes on exactly
    where ``state_dict()`` was taken, mid-epoch or not: the reader's saved position and the RNG's state, so the
    batches that follow are those of the uninterrupted run.
    """

    def __init__(self, data, **kwargs):
        super().__init__()
        from .dynamic_input import DynamicInput

        self.input = DynamicInput(data, **kwargs)
        self.started = False

    def reset(self, initial_state: Optional[Dict[str, Any]] = None):
        super().reset(initial_state)
        if initial_state is not None:
            self.input.load_state_dict(initial_state)
        elif self.started:
            self.input.next_epoch()
        self.started = True

    def next(self):
        return self.input.next_batch()

    def get_state(self) -> Dict[str, Any]:
        return self.input.state_dict()

    def __len__(self) -> int:
        """Batches in the current epoch."""
        return len(self.input)


def training_node(data, **kwargs) -> CutMixNode:
    """The training input as a ``torchdata.nodes`` node (:class:`CutMixNode`); ``kwargs`` as
    :class:`~dali_cutmix.dynamic_input.DynamicInput` (those of :func:`dali_cutmix.build_cutmix_pipeline`)."""
    return CutMixNode(data, **kwargs)


def training_loader(data, **kwargs):
    """A ``torchdata.nodes.Loader`` over :func:`training_node`: ``for images, targets in loader`` is one epoch;
    ``loader.state_dict()`` mid-epoch, then ``load_state_dict()`` on a new one made with the same arguments, yields
    the rest of that epoch exactly, then the epochs after it."""
    return tn.Loader(training_node(data, **kwargs))
