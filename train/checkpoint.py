"""Training checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint is a dict of tensors and plain types (so the safe loader reads it)::

    format      "dali-cutmix-train/1"
    epoch       completed epochs (the run continues with epoch + 1, 1-based)
    model       the model's state_dict (unwrapped from DDP / torch.compile)
    optimizer   the optimizer's state_dict
    scaler      the fp16 GradScaler's state_dict ({} when unused)
    schedule    {"step": optimizer steps so far}
    dali        one str per rank: each rank's DALI pipeline checkpoint (reader position, RNG states), as made by
                :func:`encode_dali_state` (DALI gives bytes: they are stored base64-encoded)
    torch_rng   one uint8 tensor per rank: torch's CPU RNG state
    best_top1   best validation top-1 so far (percent); best_epoch: its epoch
    metrics     the metrics record of the checkpoint's epoch (the line in metrics.jsonl)
    config      the run's settings (TrainConfig.to_dict())
    world_size  number of ranks that wrote it
    classes     class names, in label order
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from dali_cutmix.atomic import atomic_path

FORMAT = "dali-cutmix-train/1"
LAST = "last.pt"
BEST = "best.pt"
REQUIRED_KEYS = ("format", "epoch", "model", "optimizer", "scaler", "schedule", "dali", "torch_rng", "best_top1",
                 "config", "world_size", "classes")
#: Settings a resumed run must share with the checkpoint (the model's shape and each rank's data stream).
LOCKED_SETTINGS = ("arch", "crop", "batch_size", "cutmix", "mix_mode", "optimizer")
#: The names older checkpoints stored some settings under.
FORMER_NAMES = {"mix_mode": "mode"}
#: Mixing methods whose being on or off shapes the DALI graph on the GPU (so its checkpoint): the setting, its
#: method, and its value in checkpoints older than the setting. Their values may change on resume, not their sign.
METHOD_SWITCHES = (("cutmix_alpha", "CutMix", 1.0), ("mixup_alpha", "MixUp", 0.0))


class CheckpointError(ValueError):
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


def save_checkpoint(state: Mapping[str, Any], path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename). Returns the path."""
    import torch

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)
    return path


def copy_checkpoint(src, dst) -> Path:
    """Copy a checkpoint file atomically (``best.pt``, ``epoch_NNNN.pt``)."""
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def load_checkpoint(path) -> Dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True, map_location="cpu")`` and check its keys.

    Raises:
        CheckpointError: the file is missing, unreadable, not a checkpoint of this trainer, or lacks a key; the
            one-line message names the path.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, not a torch file, or unsafe content
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {reason}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a dali-cutmix training checkpoint (format {FORMAT})")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {', '.join(missing)}")
    if any(not isinstance(d, str) for d in state["dali"]) or len(state["dali"]) != state["world_size"]:
        raise CheckpointError(f"checkpoint {str(path)!r} holds {len(state['dali'])} DALI states for "
                              f"{state['world_size']} ranks")
    return state


def check_compatible(state: Mapping[str, Any], path, *, config: Mapping[str, Any], world_size: int,
                     classes) -> None:
    """Raise CheckpointError unless ``state`` can continue this run: the same number of ranks (each rank resumes
    its own DALI stream), the same classes, the same :data:`LOCKED_SETTINGS`, and CutMix and MixUp each still on
    or off (:data:`METHOD_SWITCHES`)."""
    if state["world_size"] != world_size:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written by {state['world_size']} ranks, this run has {world_size}: "
            f"each rank resumes its own data stream, so resume with the same number of processes")
    if list(state["classes"]) != list(classes):
        raise CheckpointError(f"checkpoint {str(path)!r} was trained on {len(state['classes'])} other classes "
                              f"than the {len(classes)} classes of this data set")
    saved = state["config"]
    for key in LOCKED_SETTINGS:
        name = key if key in saved else FORMER_NAMES.get(key, key)
        if name in saved and key in config and saved[name] != config[key]:
            flag = "--" + key.replace("_", "-")
            raise CheckpointError(f"checkpoint {str(path)!r} was written with {flag} {saved[name]!r}, this run "
                                  f"has {config[key]!r}; resume with the same {flag}")
    if saved.get("cutmix", True) and config.get("cutmix", True):
        for key, method, older in METHOD_SWITCHES:
            was = saved.get(key, saved.get("alpha", older) if key == "cutmix_alpha" else older)
            if key in config and (was > 0) != (config[key] > 0):
                flag = "--" + key.replace("_", "-")
                state = "on" if was > 0 else "off"
                raise CheckpointError(
                    f"checkpoint {str(path)!r} was written with {method} {state} ({flag} {was!r}), this run has "
                    f"{flag} {config[key]!r}: turning {method} on or off changes the DALI pipeline whose state the "
                    f"checkpoint holds; resume with {method} {state} (its alpha may change)")


def resolve_resume(resume: Optional[str], output: Path) -> Optional[Path]:
    """The checkpoint to resume from: None for no resume, ``output/last.pt`` for ``"auto"`` (None when that does
    not exist yet: a fresh start), else the given path (which must exist).

    Raises:
        CheckpointError: a ``--resume PATH`` that does not exist.
    """
    if resume is None:
        return None
    if resume == "auto":
        last = Path(output) / LAST
        return last if last.exists() else None
    path = Path(resume)
    if not path.is_file():
        raise CheckpointError(f"--resume {resume!r}: no such checkpoint file")
    return path
