"""Facts about this machine that several parts need: usable CPU cores, the cache folder."""

from __future__ import annotations

import os
from pathlib import Path


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity on Linux, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cache_dir() -> Path:
    """Where dali-cutmix keeps what it builds or generates once (native operators, the demo and profiling data
    sets): ``$DALI_CUTMIX_CACHE`` if set, else ``~/.cache/dali-cutmix``."""
    env = os.environ.get("DALI_CUTMIX_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dali-cutmix"
