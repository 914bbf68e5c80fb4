"""Checkpoints, all of it: ``--resume`` resolved once (:func:`resolve_resume`), the file read once
(:func:`read_checkpoint`, the trainer's one ``torch.load``), a resumed run's settings and their one lock list
(:func:`resolve_run`, :data:`dali_cutmix.train.config.LOCKED`), the checks against the machine and the data
(:func:`check_compatible`), the run's state restored (:func:`restore`) and written (:func:`write_checkpoint`:
atomically, the former ``last.pt`` kept as ``previous.pt``, the epoch's metrics line first), and the run folder
made consistent on resume (:func:`open_run_folder`: a damaged ``last.pt`` set aside, ``metrics.jsonl``
rewound).

``--resume`` takes ``auto`` (``OUTPUT/last.pt`` if it exists, else a fresh start; ``previous.pt`` when
``last.pt`` cannot be read), a run folder (its ``last.pt``) or a checkpoint file. Without ``--output``, a run
folder or a folder's ``last.pt`` continues in that folder; any other checkpoint (``best.pt``, ``epoch_NNNN.pt``,
a copy) starts a new folder from it. What a checkpoint holds: :mod:`dali_cutmix.train.runstate`.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from dali_cutmix.errors import UserError
from dali_cutmix.helpers.atomic import atomic_path
from dali_cutmix.options import MixOptionError, MixOptions, flag_name

from . import distributed
from .config import (LOCKED, MIX_KEYS, NOT_CARRIED, SETTINGS, TrainConfig, flag_value,
                     recipe_settings, resolve_config, setting_notes, shown)
from .runstate import FORMAT, REQUIRED_KEYS, CheckpointError, RunState

LAST = "last.pt"
#: The checkpoint last.pt replaced: ``--resume auto`` falls back to it when last.pt cannot be read.
PREVIOUS = "previous.pt"
#: A last.pt that could not be read, set aside when a run resumed from :data:`PREVIOUS` instead.
DAMAGED = "last.damaged.pt"
BEST = "best.pt"
#: Mixing methods whose being on or off shapes the DALI graph on the GPU (so its checkpoint): the method, the
#: :class:`~dali_cutmix.MixOptions` property that says it is on, and the options that turn it on. Their values may
#: change on resume, not whether the method is on.
METHOD_SWITCHES = (("CutMix", "cutmix_on", ("cutmix_alpha", "cutmix_minmax")), ("MixUp", "mixup_on", ("mixup_alpha",)))


class Checkpoint:
    """A checkpoint to resume: its ``path``, its ``state`` (read once per process, memory-mapped; a copy sent
    to a rank started by the launcher reads it there, once), and ``notes`` (the line saying a damaged ``last.pt``
    gave way to ``previous.pt``)."""

    def __init__(self, path: Path, state: Optional[Mapping[str, Any]] = None, notes: Sequence[str] = ()):
        self.path, self._state, self.notes = Path(path), state, list(notes)

    @property
    def state(self) -> Mapping[str, Any]:
        if self._state is None:
            self._state = load_checkpoint(self.path)
        return self._state

    @property
    def fell_back(self) -> bool:
        """Whether ``last.pt`` could not be read and this is the :data:`PREVIOUS` beside it."""
        return bool(self.notes) and self.path.name == PREVIOUS

    def release(self) -> None:
        """Forget the state (its tensors are in the run's objects now)."""
        self._state = None

    def __getstate__(self):
        return dict(path=self.path, _state=None, notes=self.notes)


# ------------------------------------------------------------------------------------------ resolve, read, check

def resolve_resume(resume: Optional[str], output: Optional[str]) -> Tuple[Optional[Path], Optional[str]]:
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


def load_checkpoint(path) -> Dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True, map_location="cpu", mmap=True)`` (its tensors are
    paged in when used) and check its keys.

    Raises:
        CheckpointError: the file is missing, unreadable, not a checkpoint of this trainer, or lacks a key; the
            one-line message names the path.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
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


def read_checkpoint(path: Path, *, auto: bool) -> Checkpoint:
    """The checkpoint at ``path``, read once; with ``auto`` (``--resume auto``), a ``last.pt`` that cannot be read
    (truncated, damaged outside the trainer) gives way to the ``previous.pt`` beside it, and the checkpoint's
    ``notes`` hold the one line that says so.

    Raises:
        CheckpointError: the checkpoint cannot be read (nor, for ``auto``, its previous one).
    """
    path = Path(path)
    try:
        return Checkpoint(path, load_checkpoint(path))
    except CheckpointError as e:
        previous, why = path.parent / PREVIOUS, str(e)
        if not auto or path.name != LAST or not previous.is_file():
            raise
        try:
            state = load_checkpoint(previous)
        except CheckpointError:
            raise e from None
    where = f"epoch {state['epoch'] + 1} step {state['step']}" if state["step"] else f"epoch {state['epoch']}"
    return Checkpoint(previous, state, [f"note: {why}; resuming from {previous} ({where}) instead, and {LAST} is "
                                        f"set aside as {DAMAGED}"])


def saved_settings(state: Mapping[str, Any], path) -> Dict[str, Any]:
    """A checkpoint's settings under the names of :data:`dali_cutmix.train.config.SETTINGS` (the mixing options
    beside the others), the settings a newer trainer added taken from the run's recipe, those of
    :data:`~dali_cutmix.train.config.NOT_CARRIED` left out."""
    config = state.get("config")
    if not isinstance(config, Mapping) or not isinstance(config.get("mix"), Mapping):
        raise CheckpointError(f"checkpoint {str(path)!r} holds no mixing options: it was not written by this version "
                              f"of the trainer")
    try:
        values = recipe_settings(config.get("recipe", "paper"))
    except UserError:
        raise CheckpointError(f"checkpoint {str(path)!r} names an unknown recipe {config.get('recipe')!r}") from None
    values.update({k: v for k, v in config.items() if k in SETTINGS})
    values.update({k: v for k, v in config["mix"].items() if k in MIX_KEYS})
    for key in NOT_CARRIED:
        values.pop(key, None)
    return values


def check_locked(saved: TrainConfig, cfg: TrainConfig, where: str) -> None:
    """Raise UserError naming the flag when ``cfg`` changes a setting of :data:`~dali_cutmix.train.config.LOCKED`
    that ``saved`` (the settings of ``where``, a run or a checkpoint) was trained with."""
    for key in LOCKED:
        was, now = saved.value(key), cfg.value(key)
        if was != now:
            raise UserError(f"{flag_value(key, now)}: {where} was trained with {flag_value(key, was)}, which a "
                            f"resumed run keeps (leave {flag_name(key)} out, or start a new run in another "
                            f"--output)")


def saved_config(base: Mapping[str, Any], path) -> TrainConfig:
    """The run a checkpoint's settings ``base`` (:func:`saved_settings`) describe; CheckpointError naming ``path``
    when one is out of range."""
    try:
        return resolve_config({}, base=base)
    except UserError as e:
        raise CheckpointError(f"checkpoint {str(path)!r} holds settings out of range ({e})") from None


def resolve_run(options: Mapping[str, Any]) -> Tuple[TrainConfig, List[str], Optional[Checkpoint]]:
    """The run ``options`` (the flags: None = not given) describe, its notes (the checkpoint's fallback line and
    :func:`~dali_cutmix.train.config.setting_notes`) and the checkpoint it resumes (None for a fresh run): read
    here, once.

    With a checkpoint, the run's settings are the checkpoint's; the flags given override them, except those of
    :data:`~dali_cutmix.train.config.LOCKED` (refused when they differ) and ``--epochs`` fewer than the checkpoint
    holds. ``cfg.resume`` is the checkpoint's path.

    Raises:
        UserError: one line naming the flag.
    """
    given = {k: v for k, v in options.items() if v is not None}
    if "output" in given and not str(given["output"]).strip():
        resolve_config(given)  # refuses it, naming --output, before "" could name this folder's last.pt
    path, output = resolve_resume(given.get("resume"), given.get("output"))
    if path is None:
        cfg = resolve_config(given)
        return cfg, setting_notes(cfg, given), None
    checkpoint = read_checkpoint(path, auto=given.get("resume") == "auto")
    path, state = checkpoint.path, checkpoint.state
    base = saved_settings(state, path)
    saved = saved_config(base, path)
    overrides = dict(given, resume=str(path))
    if output is not None:
        overrides["output"] = output
    cfg = resolve_config(overrides, base=base)
    where = f"the run in {str(path.parent)!r}" if path.name == LAST else f"checkpoint {str(path)!r}"
    check_locked(saved, cfg, where)
    done = int(state["epoch"])
    if cfg.epochs < done:
        raise UserError(f"--epochs {cfg.epochs}: {where} has already finished {done} epochs; pass --epochs "
                        f"{done + 1} or more to continue it")
    return cfg, checkpoint.notes + setting_notes(cfg, given, source="the resumed run's"), checkpoint


def check_compatible(state: Mapping[str, Any], path, *, config: TrainConfig, world_size: int, classes) -> None:
    """Raise CheckpointError unless ``state`` can continue the run ``config`` on this machine and data: the same
    number of ranks (each rank resumes its own DALI stream), the same classes, and CutMix and MixUp each still on
    or off (:data:`METHOD_SWITCHES`). (The locked settings were checked when the run's settings were resolved.)"""
    if state["world_size"] != world_size:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written by {state['world_size']} ranks, this run has {world_size}: "
            f"each rank resumes its own data stream, so resume with the same number of processes")
    if list(state["classes"]) != list(classes):
        raise CheckpointError(f"checkpoint {str(path)!r} was trained on {len(state['classes'])} other classes "
                              f"than the {len(classes)} classes of this data set")
    mix = state["config"].get("mix") if isinstance(state["config"], Mapping) else None
    if not isinstance(mix, Mapping):
        raise CheckpointError(f"checkpoint {str(path)!r} holds no mixing options: it was not written by this "
                              f"version of the trainer")
    if not config.mixing:
        return
    try:
        was = MixOptions.coerce(mix)
    except MixOptionError as e:
        raise CheckpointError(f"checkpoint {str(path)!r} holds mixing options out of range: "
                              f"{e.render(flag_name)}") from None
    for method, on, keys in METHOD_SWITCHES:
        if getattr(was, on) != getattr(config.mix, on):
            then = "on" if getattr(was, on) else "off"
            values = ", ".join(f"{flag_name(k)} {shown(getattr(was, k))}" for k in keys)
            raise CheckpointError(
                f"checkpoint {str(path)!r} was written with {method} {then} ({values}), this run has it "
                f"{'off' if then == 'on' else 'on'}: turning {method} on or off changes the DALI pipeline whose "
                f"state the checkpoint holds; resume with {method} {then} (its alpha may change)")


def checkpoint_of(cfg: TrainConfig) -> Optional[Checkpoint]:
    """The checkpoint ``cfg.resume`` names, for a run whose settings did not come through :func:`resolve_run`
    (a :class:`TrainConfig` built by hand): resolved, read and its locked settings checked against ``cfg``.

    Raises:
        UserError: as :func:`resolve_run`.
    """
    path, _ = resolve_resume(cfg.resume, cfg.output)
    if path is None:
        return None
    checkpoint = read_checkpoint(path, auto=cfg.resume == "auto")
    saved = saved_config(saved_settings(checkpoint.state, checkpoint.path), checkpoint.path)
    check_locked(saved, cfg, f"checkpoint {str(checkpoint.path)!r}")
    return checkpoint


# ---------------------------------------------------------------------------------------- restore, write, rewind

def restore(run_state: RunState, checkpoint: Checkpoint) -> None:
    """Load ``checkpoint`` into ``run_state`` (see :meth:`RunState.load_state_dict`), then let the checkpoint
    forget its tensors."""
    run_state.load_state_dict(checkpoint.state)
    checkpoint.release()


def open_run_folder(output: Path, checkpoint: Optional[Checkpoint], metrics, position) -> None:
    """Rank 0, before the first step: make the run folder ``output`` (when new); a ``last.pt`` that could not be
    read (the run resumed from ``previous.pt``) becomes :data:`DAMAGED`, so that it never becomes ``previous.pt``;
    ``metrics`` (a :class:`~dali_cutmix.train.metrics.MetricsLog`) is rewound to ``position``'s epoch (a kill
    between an epoch's metrics line and its checkpoint leaves a line the resumed run writes again)."""
    output.mkdir(parents=True, exist_ok=True)
    if checkpoint is not None and checkpoint.fell_back and (output / LAST).is_file():
        os.replace(output / LAST, output / DAMAGED)
    metrics.rewind(position.epoch, position.record)


def save_checkpoint(state: Mapping[str, Any], path, *, keep_previous: bool = False) -> Path:
    """Write ``state`` to ``path`` atomically: serialized in memory, written to a temporary file beside it,
    fsynced, renamed. ``keep_previous``: the file ``path`` held becomes :data:`PREVIOUS` in its folder (renamed
    just before the new one takes its place). Returns the path.

    Raises:
        OSError: the write failed (a full disk: ``ENOSPC``), naming ``path``; ``path`` and :data:`PREVIOUS` keep
            what they held and no temporary file remains.
    """
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


def write_checkpoint(run_state: RunState, *, output: Path, metrics=None, copies: Sequence[Path] = ()) -> Path:
    """Write the run's state (:meth:`RunState.state_dict`, a collective: every rank calls it at the same step) to
    ``output/last.pt`` on rank 0 (the former one kept as ``previous.pt``): first, with ``metrics``, the epoch's line
    (``position.record``) in ``metrics.jsonl``, and after it a copy of the new ``last.pt`` to each of ``copies``
    (``best.pt``, ``epoch_NNNN.pt``). Rank 0 then tells every rank how it went (one broadcast), so all of them
    return, or raise the same error, together. Returns the path of ``last.pt`` on every rank.

    Raises:
        CheckpointError: on every rank, when rank 0 cannot write one of these files (a full disk): one line naming
            it and what was written; last.pt and previous.pt keep what they held, and no temporary file (nor a
            torn line in metrics.jsonl) remains.
    """
    state = run_state.state_dict()
    position, path, failure = run_state.position, output / LAST, None
    if run_state.info.is_main:
        where = f"epoch {position.epoch + 1} step {position.step}" if position.step else f"epoch {position.epoch}"
        before = (f"{path} still holds the checkpoint before" if path.is_file() else "no checkpoint was kept")
        writes = [] if metrics is None else [(f"the metrics of {where}", metrics.path, before,
                                              lambda: _append_whole(metrics, position.record))]
        writes.append((f"the checkpoint of {where}", path, before,
                       lambda: save_checkpoint(state, path, keep_previous=True)))
        writes += [(f"a copy of the checkpoint of {where}", copy, f"{path} holds {where}",
                    lambda copy=copy: copy_checkpoint(path, copy)) for copy in copies]
        failure = _first_failure(writes)
    state = None
    failure = distributed.broadcast_object(failure)
    if failure is not None:
        raise CheckpointError(failure)
    return path


def _first_failure(writes) -> Optional[str]:
    """Run ``writes`` (``(what, path, kept, write)`` each) in order until one fails with an OSError; returns its
    one line (what could not be written where, why, and ``kept``: what the run folder still holds), or None."""
    for what, path, kept, write in writes:
        try:
            write()
        except OSError as e:
            return (f"cannot write {what} to {path}: {e.strerror or e} ({kept}; nothing half-written remains)")
    return None


def _append_whole(metrics, record: Mapping[str, Any]) -> None:
    """Append ``record``'s line to ``metrics``; a write that fails (a full disk) cuts the file back to what it held,
    so no torn line remains, and raises."""
    size = metrics.path.stat().st_size if metrics.path.is_file() else None
    try:
        metrics.append(record)
    except OSError:
        if size is None:
            metrics.path.unlink(missing_ok=True)
        else:
            os.truncate(metrics.path, size)
        raise
