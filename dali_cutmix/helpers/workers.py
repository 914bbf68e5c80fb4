"""How DataLoader worker processes start in a process that also runs DALI."""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

#: What the fork server imports once, before it forks any worker (so no worker imports them again): torch, the
#: image libraries and timm's data module (those not installed are left out).
PRELOAD = ("torch", "torchvision.transforms", "PIL.Image", "timm.data")


def worker_context() -> BaseContext:
    """The start method for DataLoader workers (``DataLoader(multiprocessing_context=...)``) in a process that runs
    DALI: the fork server.

    A worker forked straight from such a process can hang in its first sample: a lock one of DALI's threads held
    when it forked, or a pipeline left for the garbage collector whose destructor then waits in the child for
    threads that were not forked. The fork server is a clean process started before any of this; it imports
    :data:`PRELOAD` once, so its workers start as fast as forked ones and do the same work."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    return context
