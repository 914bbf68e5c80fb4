"""Before a run starts: check its settings against the machine, the data and the output folder, and resolve what
the launcher and every rank need into a :class:`RunPlan`."""

from __future__ import annotations

import os
import socket
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional, Tuple

from . import distributed
from .checkpoint import LAST, check_compatible, load_checkpoint, resolve_resume
from .config import TrainConfig
from .datalists import Skipped, read_failures, say_lines, select_files, write_run_lists
from .metrics import METRICS_FILE


class LaunchError(ValueError):
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


def prepare(cfg: TrainConfig, *, launcher: Optional[str] = None, world_size: Optional[int] = None,
            main: bool = True, say: Callable[[str], None] = _quiet) -> RunPlan:
    """Check ``cfg`` against the machine, the data and the output folder; return the run's :class:`RunPlan`.
    ``launcher``, ``world_size``: the external launcher ("torchrun", "slurm") that started this process as one of
    ``world_size`` ranks; None when this process starts the run. ``main``: this process plans for rank 0 (node 0's
    launching process, or rank 0 under an external launcher): it scans the data (``cfg.scan``, see
    :mod:`dali_cutmix.train.datalists`) and writes the run's file lists; ``say`` gets its lines (what the scan
    found, the files skipped).

    Nothing is written before every check passed; then only the output folder, and by the ``main`` process the
    run's file lists and ``skipped.txt`` in it.

    Raises:
        ValueError (LaunchError, CheckpointError, ...), FileNotFoundError: one line naming the flag or path.
    """
    from dali_cutmix.pipelines.imagenet import check_imagenet_layout

    from .model import check_arch, check_input_size

    # data
    if cfg.data is None:
        from dali_cutmix.pipelines.demo import ensure_demo_dataset

        root = ensure_demo_dataset()
    else:
        root = Path(cfg.data).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"--data {cfg.data!r} does not exist")
    _, _, classes = check_imagenet_layout(root)
    check_arch(cfg.arch)
    check_input_size(cfg.arch, cfg.crop, cfg.eval_crop)

    # processes and devices
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

    # output folder and resume
    output = Path(cfg.output or default_output()).expanduser()
    if cfg.resume == "auto" and cfg.output is None:
        raise LaunchError("--resume auto needs --output DIR: the run folder to continue")
    if output.exists() and not output.is_dir():
        raise LaunchError(f"--output {str(output)!r} exists and is not a folder")
    resume_path = resolve_resume(cfg.resume, output)
    if cfg.resume is None and ((output / LAST).exists() or (output / METRICS_FILE).exists()):
        raise LaunchError(f"--output {str(output)!r} already holds a run: pass --resume auto to continue it, or "
                          f"choose another --output")
    if resume_path is not None:
        check_compatible(load_checkpoint(resume_path), resume_path, config=cfg, world_size=world, classes=classes)
    selection = None
    if main:
        failed = read_failures(output, root) if output.is_dir() else []
        selection = select_files(root, classes, scan=cfg.scan, jobs=cfg.workers, failed=failed)
    if main or (launcher is None and cfg.node_rank == 0):  # the process that writes the run folder
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LaunchError(f"--output {str(output)!r}: cannot create the folder ({e.strerror})") from None
        if not os.access(output, os.W_OK):
            raise LaunchError(f"--output {str(output)!r} is not writable")
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
