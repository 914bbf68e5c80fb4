"""Who this process is in a distributed run, and the few collectives the trainer needs.

A process learns its place from the environment, in this order:

1. ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (``LOCAL_WORLD_SIZE``): set by ``torchrun``, by
   ``torch.distributed.launcher`` (which ``--gpus`` / ``--cpu-procs`` use) and by most cluster launchers;
2. SLURM's ``srun``: ``SLURM_PROCID``, ``SLURM_NTASKS`` (``SLURM_STEP_NUM_TASKS``), ``SLURM_LOCALID``;
   ``MASTER_ADDR`` defaults to the first node of the step's node list, ``MASTER_PORT`` to 29500;
3. neither: a single process.

Every collective here is a no-op (or the identity) in a single process, so the trainer has one code path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, List, Mapping, MutableMapping, Optional

from dali_cutmix.errors import UserError

DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class RankInfo:
    """This process's place: global ``rank`` of ``world_size``, ``local_rank`` of ``local_world_size`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def external_launcher(env: Mapping[str, str] = os.environ) -> Optional[str]:
    """``"torchrun"`` if the environment names this process's rank (RANK and WORLD_SIZE), ``"slurm"`` inside an
    ``srun`` step of several tasks, else None (this process starts the run itself)."""
    if "RANK" in env and "WORLD_SIZE" in env:
        return "torchrun"
    if "SLURM_PROCID" in env and "SLURM_LOCALID" in env and _slurm_world_size(env) > 1:
        return "slurm"
    return None


def _int_env(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except (KeyError, ValueError):
        raise UserError(f"environment variable {name} must be an integer, got {env.get(name)!r}") from None


def _slurm_world_size(env: Mapping[str, str]) -> int:
    value = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or "1"
    return int(value) if value.isdigit() else 1


def _slurm_tasks_per_node(env: Mapping[str, str]) -> int:
    for name in ("SLURM_NTASKS_PER_NODE", "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
        match = re.match(r"\d+", env.get(name, ""))
        if match:
            return int(match.group())
    return 1


def first_slurm_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``"gpu[003-005,9],cpu1"`` -> ``"gpu003"``, ``"a,b"`` -> ``"a"``."""
    depth, end = 0, len(nodelist)
    for i, ch in enumerate(nodelist):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            end = i
            break
    first = nodelist[:end].strip()
    match = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", first)
    if not match:
        return first
    prefix, ranges, suffix = match.groups()
    return prefix + ranges.split(",")[0].split("-")[0] + suffix


def rank_info(env: Mapping[str, str] = os.environ) -> RankInfo:
    """This process's :class:`RankInfo` from the environment (see the module docstring).

    Raises:
        UserError: a rank variable that is not an integer, or a rank outside ``[0, WORLD_SIZE)``.
    """
    launcher = external_launcher(env)
    if launcher == "torchrun":
        rank, world = _int_env(env, "RANK"), _int_env(env, "WORLD_SIZE")
        local = _int_env(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0
        local_world = _int_env(env, "LOCAL_WORLD_SIZE") if "LOCAL_WORLD_SIZE" in env else 1
    elif launcher == "slurm":
        rank, world = _int_env(env, "SLURM_PROCID"), _slurm_world_size(env)
        local, local_world = _int_env(env, "SLURM_LOCALID"), _slurm_tasks_per_node(env)
    else:
        return RankInfo()
    if not (0 <= rank < world and 0 <= local):
        raise UserError(f"rank {rank} is outside [0, world size {world}) (from the {launcher} environment)")
    return RankInfo(rank=rank, world_size=world, local_rank=local, local_world_size=max(local_world, local + 1))


def export_slurm_env(env: MutableMapping[str, str], *, master_addr: Optional[str] = None,
                     master_port: Optional[int] = None) -> None:
    """Inside an ``srun`` step, add the variables ``torch.distributed``'s ``env://`` init reads: RANK, WORLD_SIZE,
    LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR (given, or already set, or the step's first node) and MASTER_PORT
    (given, or already set, or 29500). Does nothing outside SLURM or when RANK is already set."""
    if external_launcher(env) != "slurm":
        return
    info = rank_info(env)
    env["RANK"], env["WORLD_SIZE"] = str(info.rank), str(info.world_size)
    env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"] = str(info.local_rank), str(info.local_world_size)
    if master_addr is not None and master_addr != "127.0.0.1":
        env["MASTER_ADDR"] = master_addr
    elif "MASTER_ADDR" not in env:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if not nodelist:
            raise UserError("under SLURM, set MASTER_ADDR (or --master-addr): no SLURM node list in the environment")
        env["MASTER_ADDR"] = first_slurm_host(nodelist)
    if master_port is not None:
        env["MASTER_PORT"] = str(master_port)
    env.setdefault("MASTER_PORT", str(DEFAULT_MASTER_PORT))


def gpu_index(local_rank: int, visible: int) -> int:
    """The CUDA device index this rank uses, of the ``visible`` GPUs its process sees: 0 when it sees exactly one
    (SLURM's ``--gpus-per-task=1`` or cgroup binding: every task sees its own GPU as ``cuda:0``, whatever its local
    rank), else ``local_rank`` (one process per GPU of the node).

    Raises:
        UserError: no GPU visible, or fewer than ``local_rank + 1`` of several.
    """
    if visible == 1:
        return 0
    if not 0 <= local_rank < visible:
        raise UserError(f"local rank {local_rank} has no GPU: {visible} GPU(s) visible to this process (give each "
                        f"task one GPU, or start one process per visible GPU)")
    return local_rank


def init(info: RankInfo, device) -> None:
    """Join the process group (NCCL for a CUDA ``device``, gloo otherwise) when ``world_size > 1``.

    Reads MASTER_ADDR / MASTER_PORT from the environment (``env://``); under torchrun's agent, each restart
    (``TORCHELASTIC_RESTART_COUNT``) joins through keys of its own in the agent's store.
    """
    if info.world_size == 1:
        return
    import torch.distributed as dist

    cuda = getattr(device, "type", str(device)) == "cuda"
    kwargs = dict(device_id=device) if cuda else {}
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is not None and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        # torchrun's agent keeps one store across restarts: the keys of each attempt's group under a prefix of
        # their own, so a restarted group never reads the addresses of the ranks that died
        from datetime import timedelta

        store = dist.PrefixStore(f"dali_cutmix/attempt_{attempt}", dist.TCPStore(
            os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), info.world_size, is_master=False,
            timeout=timedelta(minutes=10)))
        kwargs.update(store=store)
    else:
        kwargs.update(init_method="env://")
    dist.init_process_group(backend="nccl" if cuda else "gloo", rank=info.rank, world_size=info.world_size,
                            **kwargs)


def shutdown() -> None:
    """Leave the process group if this process joined one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor):
    """Sum ``tensor`` over all ranks, in place; returns it."""
    if _active():
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor):
    """Element-wise max of ``tensor`` over all ranks, in place; returns it."""
    if _active():
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def all_gather_objects(obj: Any) -> List[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not _active():
        return [obj]
    import torch.distributed as dist

    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not _active():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_buffers(module) -> None:
    """Replace every floating-point buffer of ``module`` (BatchNorm running statistics) by its mean over ranks,
    so that all ranks evaluate, and save, the same model."""
    if not _active():
        return
    import torch.distributed as dist

    world = dist.get_world_size()
    for buf in module.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf.div_(world)
