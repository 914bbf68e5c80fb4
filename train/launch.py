"""Start a training run, checked and planned by :func:`dali_cutmix.train.plan.prepare`:

- started by ``torchrun`` or SLURM's ``srun`` (see :mod:`dali_cutmix.train.distributed`): this process is one rank;
  run it here (under ``srun`` with ``--gpus``, ``--cpu-procs`` or ``--nnodes`` given, the task starts its own
  processes instead, as on a plain node);
- one rank (``--gpus 0/1``, ``--cpu-procs 1``, one node): run it in this process;
- several (``--gpus N``, ``--cpu-procs K``, ``--nnodes M``): PyTorch's own launcher
  (``torch.distributed.launcher``, the engine of ``torchrun``) starts one process per GPU (or CPU rank) on this
  node, with a static rendezvous at ``--master-addr:--master-port`` for several nodes.

SIGTERM / SIGUSR1 sent to this process while its ranks run do what they do sent to each rank (see
:class:`~dali_cutmix.train.preempt.LauncherStop`): the ranks checkpoint at the step they agree on and this process
exits like them (:class:`~dali_cutmix.train.preempt.Preempted`); a second signal kills every rank at once.

A rank that fails reports through torch's launcher: its entry point runs under torch elastic's ``@record``, which
writes the failure to the rank's ``TORCHELASTIC_ERROR_FILE`` (:class:`RankErrorFile` adds whether it is a
:class:`~dali_cutmix.errors.UserError` or a stop on a signal), and the launcher raises ``ChildFailedError`` with
the failed ranks' ``failures``. The parent raises a rank's UserError as a one-line
:class:`~dali_cutmix.train.plan.LaunchError` (the CLI exits 2) and any other failure as :class:`RankFailed`, a bug
that keeps the rank's traceback (the CLI shows and saves it and exits 1).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set

from dali_cutmix.errors import UserError, first_line

from . import distributed
from .checkpoint import Checkpoint, checkpoint_of
from .config import TrainConfig
from .plan import LaunchError, RunPlan, cpu_fallback_line, default_output, gpus_present, prepare

#: ``launch(checkpoint=...)``'s default: the settings did not come through ``checkpoint.resolve_run``, so
#: ``cfg.resume`` is resolved and read here.
UNRESOLVED = "unresolved"


def launch(cfg: TrainConfig, notes: Sequence[str] = (), *, checkpoint: Any = UNRESOLVED,
           recipe_given: bool = True) -> Dict[str, Any]:
    """Run training as ``cfg`` says (see the module docstring); returns rank 0's summary when it ran here.
    ``notes``: lines about the settings (:func:`dali_cutmix.train.config.setting_notes`), shown once the run's
    checks passed. ``checkpoint``: the :class:`~dali_cutmix.train.checkpoint.Checkpoint` the run resumes (None for
    a fresh run) as :func:`dali_cutmix.train.checkpoint.resolve_run` read it; by default ``cfg.resume`` is resolved
    and read here. ``recipe_given``: whether the user named the recipe (a new run on a small data set without one
    says which it took, :func:`dali_cutmix.train.plan.recipe_line`).

    A run that fails before its first checkpoint leaves nothing in its folder (see :func:`clean_failed_start`).

    Raises:
        Interrupted: Ctrl-C (its line says how to continue).
        UserError: a bad setting, path or checkpoint, or a rank that failed on one (one line).
        RankFailed: a rank started by this process failed on anything else (a bug, with that rank's traceback).
    """
    if checkpoint == UNRESOLVED:
        checkpoint = checkpoint_of(cfg)
    if cfg.output is None:
        cfg = dataclasses.replace(cfg, output=default_output())
    output = Path(cfg.output).expanduser()
    launcher = distributed.external_launcher()
    if launcher == "slurm" and (cfg.gpus is not None or cfg.cpu_procs > 1 or cfg.nnodes > 1):
        launcher = None  # one task per node that starts its own processes (--gpus / --nnodes given)
    if launcher is not None:
        distributed.export_slurm_env(os.environ, master_addr=cfg.master_addr, master_port=cfg.master_port)
        info = distributed.rank_info()
        before, made = _entries(output), _first_missing(output)
        try:
            plan = prepare(cfg, checkpoint, launcher=launcher, world_size=info.world_size, main=info.is_main,
                           say=_say, recipe_given=recipe_given)
            if info.is_main:
                for line in notes:
                    _say(line)
            from .loop import run

            return run(cfg, plan, info, checkpoint=checkpoint)
        except BaseException as e:
            if info.is_main:
                clean_failed_start(output, before, made)
                if isinstance(e, KeyboardInterrupt):
                    raise Interrupted(interrupted_line(output)) from None
            raise
    # The run's first line says it falls back to the CPU, before what the data scan says.
    first = [cpu_fallback_line(0)] if cfg.gpus is None and cfg.cpu_procs == 1 and gpus_present() == 0 else []

    def say(line: str) -> None:
        while first:
            _say(first.pop())
        _say(line)

    main = cfg.node_rank == 0
    before, made = _entries(output), _first_missing(output)
    try:
        try:
            plan = prepare(cfg, checkpoint, main=main, say=say, recipe_given=recipe_given)
        finally:
            while first:
                _say(first.pop())
        if main:
            for line in notes:
                _say(line)
        if plan.world_size == 1:
            from .loop import run

            return run(cfg, plan, distributed.RankInfo(), checkpoint=checkpoint)
        return _launch_elastic(cfg, plan, checkpoint)
    except BaseException as e:
        if main:
            clean_failed_start(output, before, made)
            if isinstance(e, KeyboardInterrupt):
                raise Interrupted(interrupted_line(output)) from None
        raise


class Interrupted(Exception):
    """The run was interrupted (Ctrl-C); ``line``: what is kept and the exact command that continues it. The CLI
    prints it last and exits 130."""

    def __init__(self, line: str):
        super().__init__(line)
        self.line = line


def interrupted_line(output: Path) -> str:
    """The last line of an interrupted run in ``output``: the command that continues it from its last checkpoint,
    or that nothing was kept (a run stopped before its first checkpoint leaves no folder)."""
    from .checkpoint import LAST
    from .loop import resume_command

    if (output / LAST).is_file():
        return f"interrupted: checkpoint {output / LAST} is kept; continue with: {resume_command(output)}"
    return "interrupted before the first checkpoint: nothing was kept"


def _entries(folder: Path) -> Optional[Set[str]]:
    """The names in ``folder`` (None when it does not exist)."""
    try:
        return set(os.listdir(folder))
    except OSError:
        return None


def _first_missing(folder: Path) -> Optional[Path]:
    """The outermost folder of ``folder``'s path that does not exist yet (None when ``folder`` exists)."""
    folder = Path(folder).absolute()
    if folder.exists():
        return None
    while not folder.parent.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def clean_failed_start(output: Path, before: Optional[Set[str]], made: Optional[Path] = None) -> None:
    """After a run failed: when its folder holds no checkpoint (it never finished an epoch), remove what this start
    wrote there (``run.json``, the file lists, ...), and the folder itself if this start created it, so a failed
    start leaves nothing behind. Kept: everything that was there before, and the record of a data file that failed
    (``failed-files.json``, ``skipped.txt``: ``--resume auto`` then starts without it). A run with a checkpoint
    keeps its folder as it is (``--resume auto`` continues it). ``made``: the outermost folder this start
    created (:func:`_first_missing` before it), removed too when left empty."""
    import shutil

    from .checkpoint import LAST
    from .datalists import FAILED_FILE, SKIPPED_FILE

    output = Path(output)
    if not output.is_dir() or (output / LAST).exists():
        return
    keep = set(before or ())
    if (output / FAILED_FILE).exists():
        keep |= {FAILED_FILE, SKIPPED_FILE}
    for name in set(os.listdir(output)) - keep:
        path = output / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                path.unlink()
            except OSError:
                pass
    if before is None:  # this start made the folder (and maybe folders above it): remove those left empty
        folder = output.absolute()
        while folder != folder.parent:
            try:
                folder.rmdir()
            except OSError:
                break
            if folder == made:
                break
            folder = folder.parent


def _say(line: str) -> None:
    print(line, flush=True)


def _launch_elastic(cfg: TrainConfig, plan: RunPlan, checkpoint: Optional[Checkpoint]) -> Dict[str, Any]:
    """Start ``plan.nproc`` ranks on this node with ``torch.distributed.launcher`` and wait for them; SIGTERM /
    SIGUSR1 meanwhile are :class:`~dali_cutmix.train.preempt.LauncherStop`'s (the launcher's own handlers are
    left to SIGINT, SIGHUP and SIGQUIT). The launcher's folder (its logs and the ranks' error files, the ranks'
    process ids and the stop notice) is a temporary folder, removed at the end."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from .preempt import STOP_SIGNALS, LauncherStop

    handled = [name for name in LaunchConfig.signals_to_handle.split(",")
               if name.strip() not in {sig.name for sig in STOP_SIGNALS}]
    with tempfile.TemporaryDirectory(prefix="dali-cutmix-errors-") as folder, \
            _QuietLogs("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing"), \
            LauncherStop(folder, Path(plan.output)):
        config = LaunchConfig(
            min_nodes=cfg.nnodes, max_nodes=cfg.nnodes, nproc_per_node=plan.nproc, run_id="dali-cutmix-train",
            rdzv_backend="static", rdzv_endpoint=f"{cfg.master_addr}:{plan.master_port}",
            rdzv_configs={"rank": cfg.node_rank, "timeout": 900}, max_restarts=0, start_method="spawn",
            monitor_interval=0.2, signals_to_handle=",".join(handled),
            logs_specs=DefaultLogsSpecs(log_dir=str(Path(folder) / "logs")))
        try:
            results = elastic_launch(config, elastic_worker)(cfg, plan, checkpoint, folder)
        except ChildFailedError as e:
            raise rank_failure(e) from None
    return results.get(0) or next(iter(results.values()), {})


class _QuietLogs:
    """Silence the launcher's own logging (tracebacks of failed ranks) while it runs; failures are reported as
    :func:`rank_failure`."""

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


def rank_error_handler():
    """torch elastic's error handler, writing also what the parent needs to tell a failure apart (see
    :func:`rank_report`) into the rank's ``TORCHELASTIC_ERROR_FILE``: ``extraInfo`` gains ``rank``, ``type``,
    ``user_error``, ``preempted`` and ``line`` (the one line a user reads)."""
    from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

    class RankErrorFile(ErrorHandler):
        def record_exception(self, e: BaseException) -> None:
            file = self._get_error_file_path()
            if not file:
                return
            from .preempt import Preempted

            preempted = isinstance(e, Preempted)
            data = {"message": {"message": f"{type(e).__name__}: {e}", "extraInfo": {
                "py_callstack": "".join(traceback.format_exception(e)), "timestamp": str(int(time.time())),
                "time": time.time(), "rank": int(os.environ.get("RANK", "0")), "type": type(e).__name__,
                "user_error": isinstance(e, UserError), "preempted": preempted,
                "line": e.line if preempted else first_line(e)}}}
            with open(file, "w") as f:
                json.dump(data, f)

    return RankErrorFile()


def elastic_worker(cfg: TrainConfig, plan: RunPlan, checkpoint: Optional[Checkpoint], folder: str
                   ) -> Dict[str, Any]:
    """A rank's entry point under the launcher, run under torch elastic's ``@record`` (with
    :func:`rank_error_handler`): records its process id in ``folder`` (:func:`~dali_cutmix.train.preempt.record_pid`)
    and runs :func:`dali_cutmix.train.loop.run`, which stops as signalled when the parent writes its notice there.
    A failure is recorded in the rank's error file and the rank exits with code 1 at once (no interpreter
    shutdown: DALI's and gloo's threads may still wait on the other ranks)."""
    from torch.distributed.elastic.multiprocessing.errors import record

    def rank(cfg, plan, checkpoint, folder):
        from .loop import run
        from .preempt import NOTICE, record_pid

        record_pid(folder, int(os.environ.get("RANK", "0")))
        return run(cfg, plan, distributed.rank_info(), checkpoint=checkpoint, notice=Path(folder) / NOTICE)

    try:
        return record(rank, error_handler=rank_error_handler())(cfg, plan, checkpoint, folder)
    except Exception:  # noqa: BLE001 - recorded in the error file: the launcher's parent decides what it is
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


class RankFailed(RuntimeError):
    """A rank failed on an exception that is not a :class:`~dali_cutmix.errors.UserError`: a bug. Its message
    names the rank and holds that rank's traceback, so the CLI's bug report shows and saves it."""


def rank_reports(error: Any) -> List[Dict[str, Any]]:
    """The reports (``extraInfo`` of :func:`rank_error_handler`) in the error files of the launch attempt that
    ``error`` (torch's ``ChildFailedError``) came from: every local rank's that wrote one, not only the first
    failure's, so that the verdict does not depend on which rank the launcher saw die first."""
    files = set()
    for failure in (getattr(error, "failures", {}) or {}).values():
        path = Path(str(failure.error_file))
        if path.name == "error.json":
            files |= set(path.parent.parent.glob("*/error.json"))
    reports = []
    for path in sorted(files):
        try:
            info = json.loads(path.read_text())["message"]["extraInfo"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(info, dict) and "user_error" in info:
            reports.append(info)
    return reports


def rank_failure(error: Any) -> Exception:
    """The run's error for a failed launch (``error``: torch's ``ChildFailedError``), from its ranks' error files
    (:func:`rank_reports`): a rank's UserError (the earliest) as a one-line :class:`LaunchError`; else the earliest
    failure that is not a stop on a signal as :class:`RankFailed` with its traceback; else rank 0's
    :class:`~dali_cutmix.train.preempt.Preempted` (the run stopped on SIGTERM / SIGUSR1 with its checkpoint
    written; the lowest rank's, when rank 0 left no report); else (a rank that died without reporting: killed, out
    of memory) a one-line :class:`LaunchError` with its exit code or signal."""
    reports = rank_reports(error)
    if reports:
        reports.sort(key=lambda r: (not r["user_error"], r["preempted"], r["time"]))
        first = reports[0]
        if first["user_error"]:
            return LaunchError(first["line"])
        if first["preempted"]:
            from .preempt import Preempted

            return Preempted(min(reports, key=lambda r: r["rank"])["line"])
        return RankFailed(f"rank {first['rank']} failed: {first['type']}: {first['line']}; its traceback:\n"
                          + (first.get("py_callstack") or "").rstrip())
    failures = getattr(error, "failures", {}) or {}
    if failures:
        local, failure = sorted(failures.items())[0]
        code = failure.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        return LaunchError(f"local rank {local} {how} without reporting an error (out of memory?)")
    return LaunchError("a rank failed without reporting an error")

