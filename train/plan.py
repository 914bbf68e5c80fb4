"""Before a run starts: check its settings against the machine, the data and the output folder, and resolve what
the launcher and every rank need into a :class:`RunPlan`."""

from __future__ import annotations

import os
import socket
import sys
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional, Tuple

from dali_cutmix.errors import UserError
from dali_cutmix.helpers.atomic import writable_folder

from . import distributed
from .checkpoint import LAST, Checkpoint, check_compatible
from .config import TrainConfig
from .datalists import (FAILED_FILE, SKIPPED_FILE, TRAIN_LIST, VAL_LIST, Skipped, data_source, read_failures, say_lines,
                        select_files, shard_selection, write_run_lists)
from .metrics import METRICS_FILE
from .recipe import RECIPES
from .run_record import RANKS_FILE, RUN_FILE


class LaunchError(UserError):
    """A run that cannot start (or a rank that failed), described in one line."""


@dataclass(frozen=True)
class RunPlan:
    """Where and how a checked run runs (what :func:`prepare` resolved from a :class:`TrainConfig`)."""

    data_root: str                  # the ImageNet-layout root (the demo dataset's when --data is not given)
    classes: Tuple[str, ...]        # class names, in label order
    output: str                     # the run folder
    resume_path: Optional[str]      # the checkpoint to continue, None for a fresh start
    use_gpu: bool                   # one GPU per process, else the CPU
    nproc: int                      # processes this node starts (1 under torchrun / SLURM)
    world_size: int                 # ranks in the whole run
    launcher: str                   # "local" (one process), "elastic" (started here), "torchrun" or "slurm"
    master_port: int                # the rendezvous port on node 0
    train_list: Optional[str] = None  # the DALI file lists every rank reads (OUTPUT/train-files.txt, ...), written
    val_list: Optional[str] = None    # by the process that plans for rank 0 (None in the others)
    skipped: Tuple[Skipped, ...] = ()  # the files the run does not read, with the reason


def gpus_present() -> int:
    """Number of CUDA GPUs this process can use (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def torch_gpu_view(present: int) -> str:
    """What torch sees, in words: ``"torch 2.14.1+cu130 (CUDA 13.0 build) sees 0 GPUs"``."""
    import torch

    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    return f"torch {torch.__version__} ({build}) sees {present} GPU{'' if present == 1 else 's'}"


def cpu_fallback_line(present: int) -> str:
    """The first line of a run that trains on the CPU although ``--gpus`` was not given."""
    return (f"no GPU: {torch_gpu_view(present)}, so this run trains on the CPU (`dali-cutmix doctor` says why; "
            f"--gpus 0 silences this line)")


def free_port() -> int:
    """A TCP port that was free on this host a moment ago."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_output() -> str:
    """``runs/<YYYYmmdd-HHMMSS>`` under the current directory."""
    return str(Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S"))


def _quiet(_line: str) -> None:
    pass


#: What a run writes into its folder besides its checkpoints and metrics: a fresh run may start in a folder that holds
#: only these (the traces of a start that failed), never in one holding other files.
RUN_FILES = (TRAIN_LIST, VAL_LIST, SKIPPED_FILE, FAILED_FILE, f".{FAILED_FILE}.lock", RUN_FILE, RANKS_FILE)


def holds_run(output: Path) -> bool:
    """Whether the folder ``output`` holds a run (a checkpoint or a metrics file)."""
    return (output / LAST).exists() or (output / METRICS_FILE).exists()


def _is_run_file(name: str) -> bool:
    return name in RUN_FILES or (name.startswith(".") and name.endswith(".tmp"))


def check_output_path(output: Path) -> None:
    """Raise LaunchError unless the run folder ``output`` is (or can be created as) a writable folder: not a file,
    not under a file, in a folder that takes new files (:func:`dali_cutmix.helpers.atomic.writable_folder`)."""
    shown = str(output)
    if output.exists() and not output.is_dir():
        raise LaunchError(f"--output {shown!r} is a file, not a folder")
    try:
        folder = writable_folder(output, may_create=True)
    except NotADirectoryError as e:
        raise LaunchError(f"--output {shown!r} cannot be created: {e.filename!r} is a file, not a folder") from None
    except OSError as e:
        where = "" if e.filename == str(output.absolute()) else f"cannot be created: {e.filename!r} "
        raise LaunchError(f"--output {shown!r} {where}is not writable ({e.strerror})") from None
    metrics = output / METRICS_FILE
    if folder == output.absolute() and metrics.exists() and not os.access(metrics, os.W_OK):
        raise LaunchError(f"--output {shown!r}: {METRICS_FILE} in it is not writable")


def check_run_folder(output: Path, resume_path: Optional[Path], auto: bool = False) -> None:
    """Raise LaunchError when the run would write into a folder holding something else: another run (a fresh
    start, or a checkpoint resumed from another folder), or files that are not a run's. ``auto``: ``--resume
    auto``, which starts afresh a run that never wrote a checkpoint."""
    if not output.is_dir():
        return
    if holds_run(output):
        if resume_path is None and auto and not (output / LAST).exists():
            return
        if resume_path is None:
            raise LaunchError(f"--output {str(output)!r} already holds a run: pass --resume auto to continue it, or "
                              f"choose another --output")
        if not _same_folder(resume_path.parent, output):
            raise LaunchError(
                f"--output {str(output)!r} already holds another run: {str(resume_path)!r} would overwrite its "
                f"checkpoints and mix its metrics; continue that run in its own folder ({str(resume_path.parent)!r}) "
                f"or in a new --output")
        return
    if resume_path is None or not _same_folder(resume_path.parent, output):
        others = sorted(p.name for p in output.iterdir() if not _is_run_file(p.name))
        if others:
            raise LaunchError(f"--output {str(output)!r} holds {len(others)} file(s) that are not a run's (e.g. "
                              f"{others[0]!r}): choose a new or empty folder")


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).absolute() == Path(b).absolute()


def check_output(cfg: TrainConfig, checkpoint: Optional[Checkpoint]) -> Path:
    """The run folder (``--output``, or a fresh default), checked before anything is read or written: a folder
    that can hold the run and holds no other run (``checkpoint``: the one the run resumes, None for a new run).

    Raises:
        UserError: an output path that cannot hold the run, a folder that holds another run or foreign files.
    """
    output = Path(cfg.output or default_output()).expanduser()
    check_output_path(output)
    check_run_folder(output, checkpoint.path if checkpoint is not None else None, auto=cfg.resume == "auto")
    return output


def data_root(data: Optional[str]):
    """``(root, classes, shards)`` of ``--data``: the demo data set (written once, its progress on stderr) when
    None, else an ImageNet root or the shard folders ``dali-cutmix shard`` made of one (local or ``s3://``;
    ``shards`` is None for a root). ``classes``: the class names in label order.

    Raises:
        UserError: the path does not hold an ImageNet layout or shard folders.
    """
    from dali_cutmix.pipelines.imagenet import check_imagenet_layout

    if data is None:
        from dali_cutmix.pipelines.demo import ensure_demo_dataset

        root = ensure_demo_dataset(progress=lambda line: print(line, file=sys.stderr, flush=True))
        _, _, classes = check_imagenet_layout(root)
        return root, classes, None
    return data_source(data)


def processes(cfg: TrainConfig, *, launcher: Optional[str], world_size: Optional[int]) -> Tuple[bool, int, int]:
    """``(use_gpu, nproc, world)``: whether the ranks use GPUs, the processes this node starts (1 under an
    external ``launcher`` that started this one as one of ``world_size``), and the ranks in all; the global batch
    must split evenly over them.

    Raises:
        LaunchError: more ``--gpus`` than torch sees, ``--cpu-procs`` with GPUs, ``--nnodes`` without
            ``--master-addr``, ``--nnodes``/``--cpu-procs`` under a launcher, a batch that does not split.
    """
    present = gpus_present()
    if launcher is None:
        if cfg.gpus is not None and cfg.gpus > present:
            raise LaunchError(f"--gpus {cfg.gpus}: {torch_gpu_view(present)}; run `dali-cutmix doctor` to see why")
        gpus = cfg.gpus if cfg.gpus is not None else (0 if cfg.cpu_procs > 1 else present)
        if gpus > 0 and cfg.cpu_procs > 1:
            raise LaunchError("--cpu-procs is for CPU runs (--gpus 0); with GPUs, each process drives one GPU")
        nproc = gpus if gpus > 0 else cfg.cpu_procs
        world = nproc * cfg.nnodes
        if cfg.nnodes > 1 and cfg.master_addr in ("127.0.0.1", "localhost"):
            raise LaunchError(f"--nnodes {cfg.nnodes} needs --master-addr: the address of node 0 that every node "
                              f"can reach")
        use_gpu = gpus > 0
        where = f"{cfg.nnodes} node(s) x {nproc} process(es)"
    else:
        if cfg.nnodes > 1 or cfg.cpu_procs > 1:
            raise LaunchError(f"under {launcher}, the launcher starts the processes: drop --nnodes / --cpu-procs")
        use_gpu = present > 0 if cfg.gpus is None else cfg.gpus > 0
        if use_gpu and present == 0:
            raise LaunchError(f"--gpus {cfg.gpus}: {torch_gpu_view(present)}; run `dali-cutmix doctor` to see why")
        nproc, world = 1, int(world_size or 1)
        where = f"{world} process(es) started by {launcher}"
    if cfg.batch_size % world:
        raise LaunchError(f"--batch-size {cfg.batch_size} does not split over {world} ranks ({where}): use a "
                          f"multiple of {world}")
    return use_gpu, nproc, world


def training_files(cfg: TrainConfig, output: Path, root, classes, shards):
    """Rank 0's selection of the files the run reads: the shard folders' (``shards``), else the scanned
    ImageNet root's (``cfg.scan``; files that failed in an earlier attempt of this run, listed in ``output``,
    left out). Writes nothing.

    Raises:
        UserError: a scan that fails.
    """
    if shards is not None:
        selection = shard_selection(shards)
    else:
        failed = read_failures(output, root) if output.is_dir() else []
        selection = select_files(root, classes, scan=cfg.scan, jobs=cfg.workers, failed=failed)
    return selection


def check_batch_fits(cfg: TrainConfig, train_images: int, world: int) -> None:
    """Raises LaunchError (naming ``--batch-size``) when a rank's share of the global batch is larger than its
    shard of the ``train_images`` training images."""
    per_rank = cfg.batch_size // world
    if per_rank > train_images // world:
        if world == 1:
            raise LaunchError(f"--batch-size {cfg.batch_size} is too large: a step takes {per_rank} images but "
                              f"there are only {train_images} training images")
        raise LaunchError(
            f"--batch-size {cfg.batch_size} is too large: each of the {world} ranks takes {per_rank} images per "
            f"step but its shard of the {train_images} training images holds only {train_images // world}")


#: Fewer training images than this, with no ``--recipe`` given, and the run says which recipe it took.
SMALL_DATA = 10_000


def recipe_line(cfg: TrainConfig, train_images: int) -> str:
    """The line a run on a small data set (:data:`SMALL_DATA`) without ``--recipe`` prints: the recipe it took
    and how to pick another."""
    return (f"note: {train_images} training images and no --recipe: this run takes the {cfg.recipe!r} recipe "
            f"({cfg.arch}, batch {cfg.batch_size}, crop {cfg.crop}, {cfg.epochs} epochs), made for ImageNet; pick "
            f"another with --recipe ({', '.join(RECIPES)}) or set --arch / --batch-size / --crop / --epochs")


def prepare(cfg: TrainConfig, checkpoint: Optional[Checkpoint] = None, *, launcher: Optional[str] = None,
            world_size: Optional[int] = None, main: bool = True, say: Callable[[str], None] = _quiet,
            recipe_given: bool = True) -> RunPlan:
    """Check ``cfg`` against the machine, the data and the output folder; return the run's :class:`RunPlan`.
    ``launcher``, ``world_size``: the external launcher ("torchrun", "slurm") that started this process as one of
    ``world_size`` ranks; None when this process starts the run. ``checkpoint``: the checkpoint the run resumes
    (:func:`dali_cutmix.train.checkpoint.resolve_run` read it), checked against the ranks and the classes. ``main``: this process plans for rank 0 (node 0's
    launching process, or rank 0 under an external launcher): it scans the data (``cfg.scan``, see
    :mod:`dali_cutmix.train.datalists`) and writes the run's file lists; ``say`` gets its lines (what the scan
    found, the files skipped, and :func:`recipe_line` for a new run on a small data set when not
    ``recipe_given``).

    Nothing is written before every check passed; then only the output folder, and by the ``main`` process the
    run's file lists and ``skipped.txt`` in it.

    Raises:
        UserError: one line naming the flag or path.
    """
    from .model import check_arch, check_model_input

    output = check_output(cfg, checkpoint)
    resume_path = checkpoint.path if checkpoint is not None else None
    root, classes, shards = data_root(cfg.data)
    check_arch(cfg.arch)
    use_gpu, nproc, world = processes(cfg, launcher=launcher, world_size=world_size)
    per_rank = cfg.batch_size // world
    check_model_input(cfg.arch, crop=cfg.crop, eval_crop=cfg.eval_crop, batch=per_rank, num_classes=len(classes))
    if checkpoint is not None:
        check_compatible(checkpoint.state, checkpoint.path, config=cfg, world_size=world, classes=classes)
    selection = training_files(cfg, output, root, classes, shards) if main else None
    if selection is not None:
        if not recipe_given and cfg.data is not None and resume_path is None and selection.train_images < SMALL_DATA:
            say(recipe_line(cfg, selection.train_images))  # before the batch check, which this recipe may fail
        check_batch_fits(cfg, selection.train_images, world)
    if main or (launcher is None and cfg.node_rank == 0):  # the process that writes the run folder
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LaunchError(f"--output {str(output)!r}: cannot create the folder ({e.strerror})") from None
    lists: Tuple[Optional[str], Optional[str]] = (None, None)
    if selection is not None:
        lists = write_run_lists(output, selection)
        say_lines(selection.lines, say, output)

    master_port = cfg.master_port
    if master_port is None:
        master_port = free_port() if cfg.nnodes == 1 else distributed.DEFAULT_MASTER_PORT
    return RunPlan(data_root=str(root), classes=tuple(classes), output=str(output),
                   resume_path=str(resume_path) if resume_path else None, use_gpu=use_gpu, nproc=nproc,
                   world_size=world, launcher=launcher or ("elastic" if world > 1 else "local"),
                   master_port=master_port, train_list=lists[0], val_list=lists[1],
                   skipped=selection.skipped if selection is not None else ())
