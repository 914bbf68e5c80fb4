"""Training checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint is a dict of tensors and plain types (so the safe loader reads it)::

    format      "dali-cutmix-train/1"
    epoch       completed epochs (the run continues with epoch + 1, 1-based)
    step        steps of epoch + 1 already taken (0 at an epoch's end; > 0 for a mid-epoch checkpoint)
    partial     one dict per rank: its running sums of epoch + 1 so far (loss_sum, samples, mixed, wait_s, time_s,
                lr; see ``loop.train_one_epoch``), None at an epoch's end
    model       the model's state_dict (unwrapped from DDP / torch.compile)
    optimizer   the optimizer's state_dict
    scaler      the fp16 GradScaler's state_dict ({} when unused)
    schedule    {"step": optimizer steps so far}
    dali        one str per rank: each rank's DALI pipeline checkpoint (reader position, RNG states), as made by
                :func:`encode_dali_state` (DALI gives bytes: they are stored base64-encoded)
    torch_rng   one uint8 tensor per rank: torch's CPU RNG state
    best_top1   best validation top-1 so far (percent); best_epoch: its epoch
    metrics     the metrics record of epoch ``epoch`` (its line in metrics.jsonl; None before the first)
    config      the run's settings (TrainConfig.to_dict(): the mixing options under "mix")
    world_size  number of ranks that wrote it
    classes     class names, in label order
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from dali_cutmix.errors import UserError
from dali_cutmix.helpers.atomic import atomic_path
from dali_cutmix.options import MixOptionError, MixOptions, flag_name

from .config import TrainConfig

FORMAT = "dali-cutmix-train/1"
LAST = "last.pt"
#: The checkpoint last.pt replaced: ``--resume auto`` falls back to it when last.pt cannot be read.
PREVIOUS = "previous.pt"
#: A last.pt that could not be read, set aside when a run resumed from :data:`PREVIOUS` instead.
DAMAGED = "last.damaged.pt"
BEST = "best.pt"
REQUIRED_KEYS = ("format", "epoch", "step", "partial", "model", "optimizer", "scaler", "schedule", "dali", "torch_rng",
                 "best_top1", "config", "world_size", "classes")
#: Settings a resumed run must share with the checkpoint (the model's shape, each rank's data stream, the optimizer
#: whose state it holds); ``mode`` is a mixing option (stored under ``config["mix"]``).
LOCKED_SETTINGS = ("arch", "zero_init_residual", "crop", "min_area", "batch_size", "mixing", "mode", "optimizer",
                   "momentum", "nesterov", "weight_decay", "norm_weight_decay", "bias_weight_decay",
                   "transformer_embedding_decay", "seed")
#: Mixing methods whose being on or off shapes the DALI graph on the GPU (so its checkpoint): the method, the
#: :class:`~dali_cutmix.MixOptions` property that says it is on, and the options that turn it on. Their values may
#: change on resume, not whether the method is on.
METHOD_SWITCHES = (("CutMix", "cutmix_on", ("cutmix_alpha", "cutmix_minmax")), ("MixUp", "mixup_on", ("mixup_alpha",)))


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


def save_checkpoint(state: Mapping[str, Any], path, *, keep_previous: bool = False) -> Path:
    """Write ``state`` to ``path`` atomically: serialized in memory, written to a temporary file beside it,
    fsynced, renamed. ``keep_previous``: the file ``path`` held becomes :data:`PREVIOUS` in its folder (renamed
    just before the new one takes its place). Returns the path.

    Raises:
        OSError: the write failed (a full disk: ``ENOSPC``), naming ``path``; ``path`` and :data:`PREVIOUS` keep
            what they held and no temporary file remains.
    """
    import io

    import torch

    path = Path(path)
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
        if keep_previous and path.is_file():
            os.replace(path, path.parent / PREVIOUS)
    return path


def copy_checkpoint(src, dst) -> Path:
    """Copy a checkpoint file atomically (``best.pt``, ``epoch_NNNN.pt``)."""
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def load_checkpoint(path, *, lazy: bool = False) -> Dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True, map_location="cpu")`` and check its keys. ``lazy``:
    map the file instead of reading it (``mmap=True``: for the checks before a run, which look at its settings,
    not at its tensors).

    Raises:
        CheckpointError: the file is missing, unreadable, not a checkpoint of this trainer, or lacks a key; the
            one-line message names the path.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=lazy)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated, not a torch file, or unsafe content
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {_unreadable(path, e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: it is a PyTorch file but not a dali-cutmix "
                              f"training checkpoint (format {FORMAT})")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a complete dali-cutmix checkpoint (it lacks "
                              f"{', '.join(missing)})")
    if any(not isinstance(d, str) for d in state["dali"]) or len(state["dali"]) != state["world_size"]:
        raise CheckpointError(f"checkpoint {str(path)!r} holds {len(state['dali'])} DALI states for "
                              f"{state['world_size']} ranks")
    return state


def _unreadable(path: Path, error: BaseException) -> str:
    """Why ``torch.load`` failed on ``path``, in words (never torch's advice to load it unsafely)."""
    import pickle

    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        return e.strerror or type(e).__name__
    if not head:
        return "the file is empty (0 bytes), not a dali-cutmix checkpoint"
    if head.startswith(b"PK"):  # torch.save's zip format
        if isinstance(error, pickle.UnpicklingError):
            return ("it is a PyTorch file but not a dali-cutmix checkpoint (it holds Python objects, not only "
                    "tensors and plain values)")
        return "the file is truncated or damaged (not a complete PyTorch zip archive)"
    if head[:1] == b"\x80":  # a pickle (torch's legacy format)
        return "it is a pickle file, not a dali-cutmix checkpoint (they are PyTorch zip archives)"
    return "not a dali-cutmix checkpoint (not a PyTorch file)"


def check_compatible(state: Mapping[str, Any], path, *, config: TrainConfig, world_size: int, classes) -> None:
    """Raise CheckpointError unless ``state`` can continue the run ``config``: the same number of ranks (each rank
    resumes its own DALI stream), the same classes, the same :data:`LOCKED_SETTINGS`, and CutMix and MixUp each
    still on or off (:data:`METHOD_SWITCHES`)."""
    if state["world_size"] != world_size:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written by {state['world_size']} ranks, this run has {world_size}: "
            f"each rank resumes its own data stream, so resume with the same number of processes")
    if list(state["classes"]) != list(classes):
        raise CheckpointError(f"checkpoint {str(path)!r} was trained on {len(state['classes'])} other classes "
                              f"than the {len(classes)} classes of this data set")
    saved, now = _settings(state["config"], path), _settings(config.to_dict(), path)
    for key in LOCKED_SETTINGS:
        if saved[key] != now[key]:
            flag = flag_name(key)
            raise CheckpointError(f"checkpoint {str(path)!r} was written with {flag} {_shown(saved[key])}, this "
                                  f"run has {_shown(now[key])}; resume with the same {flag}")
    if not config.mixing:
        return
    try:
        was = MixOptions.coerce(state["config"]["mix"])
    except MixOptionError as e:
        raise CheckpointError(f"checkpoint {str(path)!r} holds mixing options out of range: "
                              f"{e.render(flag_name)}") from None
    for method, on, keys in METHOD_SWITCHES:
        if getattr(was, on) != getattr(config.mix, on):
            then = "on" if getattr(was, on) else "off"
            values = ", ".join(f"{flag_name(k)} {_shown(getattr(was, k))}" for k in keys)
            raise CheckpointError(
                f"checkpoint {str(path)!r} was written with {method} {then} ({values}), this run has it "
                f"{'off' if then == 'on' else 'on'}: turning {method} on or off changes the DALI pipeline whose "
                f"state the checkpoint holds; resume with {method} {then} (its alpha may change)")


def _shown(value: Any) -> str:
    """A setting's value as typed on the command line: on/off, none, ``0.2,0.8``, ``'sgd'``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(_shown(v) for v in value)
    if isinstance(value, str):
        return repr(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _settings(config: Any, path) -> Dict[str, Any]:
    """A checkpoint's (or a run's) ``config`` with the mixing options beside the other settings; raises
    CheckpointError when it lacks the mixing options or one of :data:`LOCKED_SETTINGS`."""
    mix = config.get("mix") if isinstance(config, Mapping) else None
    if not isinstance(mix, Mapping):
        raise CheckpointError(f"checkpoint {str(path)!r} holds no mixing options: it was not written by this "
                              f"version of the trainer")
    flat = {**config, **mix}
    missing = [k for k in LOCKED_SETTINGS if k not in flat]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks the setting(s) {', '.join(map(flag_name, missing))}: "
                              f"it was not written by this version of the trainer")
    return flat


def resolve_resume(resume: Optional[str], output: Path) -> Optional[Path]:
    """The checkpoint to resume from: None for no resume, ``output/last.pt`` for ``"auto"`` (None when that does
    not exist yet: a fresh start), a run folder's ``last.pt``, else the given file (which must exist).

    Raises:
        CheckpointError: a ``--resume PATH`` that is neither a file nor a folder holding ``last.pt``.
    """
    if resume is None:
        return None
    if resume == "auto":
        last = Path(output) / LAST
        return last if last.exists() else None
    path = Path(resume).expanduser()
    if path.is_dir():
        if not (path / LAST).is_file():
            raise CheckpointError(f"--resume {resume!r} is a folder without {LAST}: not a run folder, or its run has "
                                  f"not finished an epoch yet")
        return path / LAST
    if not path.is_file():
        raise CheckpointError(f"--resume {resume!r}: no such checkpoint file or run folder")
    return path
