"""The machine the figures come from, and how busy other processes kept it meanwhile."""

from __future__ import annotations

import os
import platform
import time
from typing import Dict, Optional

from dali_cutmix.helpers.host import usable_cores


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _installed_version(package: str) -> Optional[str]:
    """The installed version of ``package``, or None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> Dict[str, object]:
    """The machine the figures come from: CPU model and cores, GPU (if any), library versions (``timm`` None
    when it is not installed)."""
    import numpy as np
    import nvidia.dali
    import torch
    import torchvision

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return dict(cpu=cpu_model(), cpu_cores=os.cpu_count(), cpu_cores_usable=usable_cores(), gpu=gpu,
                gpu_count=torch.cuda.device_count() if gpu else 0, platform=platform.platform(),
                python=platform.python_version(), torch=torch.__version__, torchvision=torchvision.__version__,
                dali=nvidia.dali.__version__, numpy=np.__version__, timm=_installed_version("timm"))


def _busy_seconds() -> Optional[float]:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``); None where unreadable."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _descendants_seconds() -> float:
    """CPU seconds of this process's live descendants (``/proc/<pid>/stat``: each one's own time and that of the
    children it has reaped), such as DataLoader workers started by the fork server, a child of this process. 0
    where ``/proc`` is unreadable."""
    parents: Dict[int, int] = {}
    seconds: Dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        parents[pid] = int(fields[1])
        seconds[pid] = sum(int(v) for v in fields[11:15]) / tick  # utime, stime, cutime, cstime
    mine, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - mine
        mine |= frontier
    return sum(seconds[pid] for pid in mine)


class CpuLoadMeter:
    """How busy the machine was with *other* processes while the profiler ran (Linux ``/proc/stat``).

    ``other_cpu_share`` = (all CPU time used on the machine - this process's, its reaped children's and its live
    descendants') / (wall time x cores): 0 on an otherwise idle machine, 0.5 when others kept one of two cores
    busy. A descendant's time moves into its parent's reaped-children time when it ends, so it counts once.
    """

    def __init__(self):
        self.start = self.sample()

    @staticmethod
    def sample():
        """(wall clock, machine busy seconds, the CPU seconds of this process, its reaped children and its live
        descendants, load avg)."""
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system + _descendants_seconds()
        return time.perf_counter(), _busy_seconds(), own, os.getloadavg()[0]

    def stop(self, reap: bool = True) -> Dict[str, Optional[float]]:
        """Figures since construction: ``other_cpu_share``, ``own_cpu_s``, ``wall_s``, ``loadavg_1min_start``,
        ``loadavg_1min_end``. ``reap``: first collect garbage, so that finished DataLoader workers are stopped
        (False for a figure taken while the run goes on: quicker)."""
        import gc

        if reap:
            gc.collect()
        end = self.sample()
        wall, own = end[0] - self.start[0], end[2] - self.start[2]
        other = None
        if end[1] is not None and self.start[1] is not None and wall > 0:
            other = max(0.0, (end[1] - self.start[1]) - own) / (wall * (os.cpu_count() or 1))
        return dict(other_cpu_share=other, own_cpu_s=round(own, 2), wall_s=round(wall, 2),
                    loadavg_1min_start=self.start[3], loadavg_1min_end=end[3])
