"""A run's settings as the command line gives them: a fresh run's (recipe + flags), or a resumed run's (the
checkpoint's own settings, which flags given again may change where a change keeps the run what it was), and
the one-line notes on settings that cannot do what they say in this run.

``--resume`` takes ``auto`` (``OUTPUT/last.pt`` if it exists, else a fresh start), a run folder (its ``last.pt``)
or a checkpoint file. Without ``--output``, a run folder or a folder's ``last.pt`` continues in that folder; any
other checkpoint (``best.pt``, ``epoch_NNNN.pt``, a copy) starts a new folder from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from dali_cutmix.errors import UserError
from dali_cutmix.helpers.text import plural
from dali_cutmix.options import flag_name

from .checkpoint import DAMAGED, LAST, PREVIOUS, CheckpointError, load_checkpoint
from .config import SETTINGS, TrainConfig, absolute_data, resolve_config
from .recipe import MIX_KEYS, recipe_settings

#: Settings a resumed run keeps from its checkpoint: the model, the data and its stream, the optimizer and its
#: state; ``decode``, which shapes the DALI graph its checkpoint restores into. Given again with another value,
#: they are refused. (Everything else may change: --epochs, --lr and the
#: schedule, the mixing options' values and --mix-off-epoch, validation, processes and devices, logging.)
LOCKED = ("recipe", "data", "arch", "zero_init_residual", "crop", "min_area", "batch_size", "optimizer", "momentum",
          "nesterov", "weight_decay", "norm_weight_decay", "bias_weight_decay", "transformer_embedding_decay",
          "mixing", "mode", "self_pairs", "seed", "decode")
#: The checkpoint's settings that belong to the start that wrote it, not to the run: never carried over.
NOT_CARRIED = ("output", "resume", "master_port", "node_rank")


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(_shown(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def flag_value(key: str, value: Any) -> str:
    """A setting as it is typed: ``--arch resnet18``, ``--no-mixing``, ``--milestones 75,150``."""
    if isinstance(value, bool):
        return ("--" if value else "--no-") + key.replace("_", "-")
    if key == "data" and value is None:
        return "no --data (the demo dataset)"
    return f"{flag_name(key)} {_shown(value)}"


def resume_target(resume: Optional[str], output: Optional[str]) -> Tuple[Optional[Path], Optional[str]]:
    """The checkpoint ``--resume`` names (None: a fresh start) and the run folder (``--output``, or the folder a
    run folder / a folder's ``last.pt`` continues in; None: a new default folder).

    Raises:
        CheckpointError: ``--resume PATH`` that is neither a file nor a run folder with ``last.pt``;
        UserError: ``--resume auto`` without ``--output``.
    """
    if resume is None:
        return None, output
    if resume == "auto":
        if output is None:
            raise UserError("--resume auto needs --output DIR: the run folder to continue")
        folder = Path(output).expanduser()
        for name in (LAST, PREVIOUS):  # previous.pt alone: killed between its two renames
            if (folder / name).is_file():
                return folder / name, output
        return None, output
    path = Path(resume).expanduser()
    if path.is_dir():
        if not (path / LAST).is_file():
            raise CheckpointError(f"--resume {resume!r} is a folder without {LAST}: not a run folder, or its run has "
                                  f"not finished an epoch yet")
        return path / LAST, output if output is not None else str(path)
    if not path.is_file():
        raise CheckpointError(f"--resume {resume!r}: no such checkpoint file or run folder")
    if output is None and path.name == LAST:
        output = str(path.parent)
    return path, output


def saved_settings(state: Mapping[str, Any], path) -> Dict[str, Any]:
    """A checkpoint's settings under the names of :data:`dali_cutmix.train.config.SETTINGS` (the mixing options
    beside the others), the settings a newer trainer added taken from the run's recipe."""
    config = state.get("config")
    if not isinstance(config, Mapping) or not isinstance(config.get("mix"), Mapping):
        raise CheckpointError(f"checkpoint {str(path)!r} holds no mixing options: it was not written by this version "
                              f"of the trainer")
    try:
        values = recipe_settings(config.get("recipe", "paper"))
    except ValueError:
        raise CheckpointError(f"checkpoint {str(path)!r} names an unknown recipe {config.get('recipe')!r}") from None
    values.update({k: v for k, v in config.items() if k in SETTINGS})
    values.update({k: v for k, v in config["mix"].items() if k in MIX_KEYS})
    for key in NOT_CARRIED:
        values.pop(key, None)
    return values


def resolve_run(options: Mapping[str, Any]) -> Tuple[TrainConfig, List[str]]:
    """The run ``options`` (the flags: None = not given) describe, and its notes (see :func:`setting_notes`).

    With a checkpoint to resume, the run's settings are the checkpoint's; the flags given override them, except
    those of :data:`LOCKED` (refused when they differ) and ``--epochs`` fewer than the checkpoint holds.

    Raises:
        UserError: one line naming the flag.
    """
    given = {k: v for k, v in options.items() if v is not None}
    if "output" in given and not str(given["output"]).strip():
        raise UserError("--output must name a folder, got ''")
    path, output = resume_target(given.get("resume"), given.get("output"))
    if path is None:
        cfg = resolve_config(given)
        return cfg, setting_notes(cfg, given)
    state, path, fallback = readable_checkpoint(path, auto=given.get("resume") == "auto")
    base = saved_settings(state, path)
    try:
        saved = resolve_config({}, base=base)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {str(path)!r} holds settings out of range ({e})") from None
    overrides = dict(given, resume=str(path))
    if output is not None:
        overrides["output"] = output
    if "data" in overrides:
        overrides["data"] = absolute_data(overrides["data"])
    cfg = resolve_config(overrides, base=base)
    where = f"the run in {str(path.parent)!r}" if path.name == LAST else f"checkpoint {str(path)!r}"
    for key in LOCKED:
        was, now = _value(saved, key), _value(cfg, key)
        if was != now:
            raise UserError(f"{flag_value(key, now)}: {where} was trained with {flag_value(key, was)}, which a "
                             f"resumed run keeps (leave {flag_name(key)} out, or start a new run in another "
                             f"--output)")
    done = int(state["epoch"])
    if cfg.epochs < done:
        raise UserError(f"--epochs {cfg.epochs}: {where} has already finished {done} epochs; pass --epochs "
                         f"{done + 1} or more to continue it")
    return cfg, fallback + setting_notes(cfg, given, source="the resumed run's")


def readable_checkpoint(path: Path, *, auto: bool) -> Tuple[Mapping[str, Any], Path, List[str]]:
    """``(state, path, notes)``: the checkpoint at ``path`` read lazily; with ``auto`` (``--resume auto``), a
    ``last.pt`` that cannot be read (truncated, damaged outside the trainer) gives way to the ``previous.pt``
    beside it, and ``notes`` holds the one line that says so.

    Raises:
        CheckpointError: the checkpoint cannot be read (nor, for ``auto``, its previous one).
    """
    try:
        return load_checkpoint(path, lazy=True), path, []
    except CheckpointError as e:
        previous, why = path.parent / PREVIOUS, str(e)
        if not auto or path.name != LAST or not previous.is_file():
            raise
        try:
            state = load_checkpoint(previous, lazy=True)
        except CheckpointError:
            raise e from None
    where = f"epoch {state['epoch'] + 1} step {state['step']}" if state["step"] else f"epoch {state['epoch']}"
    return state, previous, [f"note: {why}; resuming from {previous} ({where}) instead, and {LAST} is set aside as "
                             f"{DAMAGED}"]


def _value(cfg: TrainConfig, key: str) -> Any:
    return getattr(cfg.mix, key) if key in MIX_KEYS else getattr(cfg, key)


def setting_notes(cfg: TrainConfig, given: Mapping[str, Any], source: Optional[str] = None) -> List[str]:
    """One line for each setting of ``cfg`` that cannot do what it says in this run (they are allowed: a later
    ``--resume`` with more ``--epochs`` makes them count): milestones at or past the last epoch, a
    ``--mix-off-epoch`` at or past it (epochs count from 0), milestones without the step schedule."""
    source = source or f"the {cfg.recipe} recipe's"
    notes = []
    if cfg.schedule == "step":
        late = [m for m in cfg.milestones if m >= cfg.epochs]
        if late:
            what = ("--milestones " if "milestones" in given else f"{source} milestones ") + _shown(late)
            notes.append(f"note: {what} lie at or past the last epoch ({cfg.epochs}): the lr does not drop there in "
                         f"this run")
    elif "milestones" in given and cfg.milestones:
        notes.append(f"note: --milestones only count with --schedule step (this run's schedule is {cfg.schedule})")
    if cfg.mixing and cfg.mix_off_epoch is not None and cfg.mix_off_epoch >= cfg.epochs:
        what = "--mix-off-epoch" if "mix_off_epoch" in given else f"{source} mix-off epoch"
        notes.append(f"note: {what} {cfg.mix_off_epoch} turns mixing off from epoch {cfg.mix_off_epoch + 1}, "
                     f"after this run's {plural(cfg.epochs, 'epoch')}: every epoch of it is mixed")
    return notes

