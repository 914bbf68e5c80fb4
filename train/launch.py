"""Start a training run: check everything a user can get wrong, then run the ranks.

- started by ``torchrun`` or SLURM's ``srun`` (see :mod:`dali_cutmix.train.distributed`): this process is one rank; run it
  here (under ``srun`` with ``--gpus``, ``--cpu-procs`` or ``--nnodes`` given, the task starts its own processes
  instead, as on a plain node);
- one rank (``--gpus 0/1``, ``--cpu-procs 1``, one node): run it in this process;
- several (``--gpus N``, ``--cpu-procs K``, ``--nnodes M``): PyTorch's own launcher
  (``torch.distributed.launcher``, the engine of ``torchrun``) starts one process per GPU (or CPU rank) on this
  node, with a static rendezvous at ``--master-addr:--master-port`` for several nodes.

Workers report a failure as one line (written to a shared folder) and exit; the parent raises it as a
:class:`~dali_cutmix.errors.UserError`-like ``ValueError``, so the CLI prints one line and exits 2.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import tempfile
import time
import traceback
from contextlib import closing
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Optional

from . import distributed
from .checkpoint import LAST, check_compatible, load_checkpoint, resolve_resume
from .config import TrainConfig
from .metrics import METRICS_FILE

ERROR_USER = "user"


class LaunchError(ValueError):
    """A run that cannot start (or a rank that failed), described in one line."""


def gpus_present() -> int:
    """Number of CUDA GPUs this process can use (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def free_port() -> int:
    """A TCP port that was free on this host a moment ago."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_output() -> str:
    """``runs/<YYYYmmdd-HHMMSS>`` under the current directory."""
    return str(Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S"))


def prepare(cfg: TrainConfig, *, launcher: Optional[str] = None, world_size: Optional[int] = None) -> TrainConfig:
    """Check ``cfg`` against the machine, the data and the output folder; return it with ``extra`` filled
    (``data_root``, ``classes``, ``output``, ``resume_path``, ``use_gpu``, ``nproc``, ``world_size``, ``launcher``).

    Nothing is written except the (empty) output folder, and only when every check passed.

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
            raise LaunchError(f"--gpus {cfg.gpus}: only {present} GPU(s) present on this machine")
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
            raise LaunchError(f"--gpus {cfg.gpus}: no GPU present on this machine")
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
        state = load_checkpoint(resume_path)
        check_compatible(state, resume_path, config=cfg.to_dict(), world_size=world, classes=classes)
        del state
    is_writer = launcher is None and cfg.node_rank == 0
    if is_writer:
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LaunchError(f"--output {str(output)!r}: cannot create the folder ({e.strerror})") from None
        if not os.access(output, os.W_OK):
            raise LaunchError(f"--output {str(output)!r} is not writable")

    master_port = cfg.master_port
    if master_port is None:
        master_port = free_port() if cfg.nnodes == 1 else distributed.DEFAULT_MASTER_PORT
    extra = dict(data_root=str(root), classes=classes, output=str(output),
                 resume_path=str(resume_path) if resume_path else None, use_gpu=use_gpu, nproc=nproc,
                 world_size=world, launcher=launcher or ("elastic" if world > 1 else "local"))
    return replace(cfg, master_port=master_port, extra=extra)


def launch(cfg: TrainConfig) -> Dict[str, Any]:
    """Run training as ``cfg`` says (see the module docstring); returns rank 0's summary when it ran here.

    Raises:
        ValueError / FileNotFoundError: a bad setting, path or checkpoint, or a rank that failed (one line).
    """
    launcher = distributed.external_launcher()
    if launcher == "slurm" and (cfg.gpus is not None or cfg.cpu_procs > 1 or cfg.nnodes > 1):
        launcher = None  # one task per node that starts its own processes (--gpus / --nnodes given)
    if launcher is not None:
        distributed.export_slurm_env(os.environ, master_addr=cfg.master_addr, master_port=cfg.master_port)
        info = distributed.rank_info()
        cfg = prepare(cfg, launcher=launcher, world_size=info.world_size)
        from .loop import run

        return run(cfg, info)
    cfg = prepare(cfg)
    if cfg.extra["world_size"] == 1:
        from .loop import run

        return run(cfg, distributed.RankInfo())
    return _launch_elastic(cfg)


def _launch_elastic(cfg: TrainConfig) -> Dict[str, Any]:
    """Start ``nproc`` ranks on this node with ``torch.distributed.launcher`` and wait for them."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    nproc = cfg.extra["nproc"]
    config = LaunchConfig(
        min_nodes=cfg.nnodes, max_nodes=cfg.nnodes, nproc_per_node=nproc, run_id="dali-cutmix-train",
        rdzv_backend="static", rdzv_endpoint=f"{cfg.master_addr}:{cfg.master_port}",
        rdzv_configs={"rank": cfg.node_rank, "timeout": 900}, max_restarts=0, start_method="spawn",
        monitor_interval=0.2)
    quiet = _QuietLogs("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")
    with tempfile.TemporaryDirectory(prefix="dali-cutmix-errors-") as error_dir, quiet:
        try:
            results = elastic_launch(config, _elastic_worker)(cfg, error_dir)
        except ChildFailedError as e:
            raise LaunchError(_failure_message(error_dir, e, cfg)) from None
    return results.get(0) or next(iter(results.values()), {})


class _QuietLogs:
    """Silence the launcher's own logging (tracebacks of failed ranks) while it runs; failures are reported as
    one line by :func:`_failure_message`."""

    def __init__(self, *names: str):
        self.loggers = [logging.getLogger(n) for n in names]

    def __enter__(self):
        self.levels = [lg.level for lg in self.loggers]
        for lg in self.loggers:
            lg.setLevel(logging.CRITICAL + 1)
        return self

    def __exit__(self, *exc):
        for lg, level in zip(self.loggers, self.levels):
            lg.setLevel(level)
        return False


def _elastic_worker(cfg: TrainConfig, error_dir: str) -> Dict[str, Any]:
    """A rank's entry point under the launcher: runs :func:`dali_cutmix.train.loop.run`; on failure writes a one-line report to
    ``error_dir/rank<R>.json`` and exits with code 2 (no traceback on the console for a user error)."""
    from dali_cutmix.errors import USER_ERRORS

    rank = int(os.environ.get("RANK", "0"))
    try:
        from .loop import run

        return run(cfg, distributed.rank_info())
    except BaseException as e:  # noqa: BLE001 - every failure must reach the parent as one line
        if isinstance(e, SystemExit) and not e.code:
            raise
        user = isinstance(e, USER_ERRORS)
        message = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if not user:
            message = f"{type(e).__name__}: {message}"
        report = dict(rank=rank, message=message, user_error=user, time=time.time(),
                      traceback="".join(traceback.format_exception(e)))
        path = Path(error_dir) / f"rank{rank}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report))
        os.replace(tmp, path)
        sys.stderr.flush()
        os._exit(2)


def _failure_message(error_dir: str, error, cfg: TrainConfig) -> str:
    """One line for a failed launch: the reported cause (a user error first, else the earliest failure), or the
    exit code / signal of the rank that died without reporting."""
    reports = []
    for path in Path(error_dir).glob("rank*.json"):
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    if reports:
        reports.sort(key=lambda r: (not r["user_error"], r["time"]))
        first = reports[0]
        if first["user_error"]:
            return first["message"]
        log = _save_traceback(first, cfg)
        return f"rank {first['rank']} failed: {first['message']}" + (f" (traceback in {log})" if log else "")
    failures = getattr(error, "failures", {}) or {}
    if failures:
        local, failure = sorted(failures.items())[0]
        code = failure.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        return f"local rank {local} {how} without reporting an error (out of memory?)"
    return "a rank failed without reporting an error"


def _save_traceback(report: Dict[str, Any], cfg: TrainConfig) -> Optional[str]:
    """Write a failed rank's traceback to ``OUTPUT/error-rank<R>.log`` (or a temporary file); returns the path."""
    text = report.get("traceback") or ""
    if not text:
        return None
    name = f"error-rank{report['rank']}.log"
    for folder in (cfg.extra.get("output"), tempfile.gettempdir()):
        if not folder:
            continue
        try:
            path = Path(folder) / name
            path.write_text(text)
            return str(path)
        except OSError:
            continue
    return None
