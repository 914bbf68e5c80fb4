"""A disk that stops taking data mid-write, for the tests of a full disk and of a signal during a write: files
opened for writing that keep the first :data:`KEPT` bytes of a write, then fail or hang. Used in the test process
(monkeypatching ``builtins.open``) and, as a fault (:mod:`faults`), in the processes a test starts."""

from __future__ import annotations

import errno
from typing import Callable

#: The bytes of a write that reach the file before it stops.
KEPT = 100


class ShortFile:
    """An open file whose ``write`` keeps the first :data:`KEPT` bytes, flushes them, then calls ``then`` (which
    raises, or hangs)."""

    def __init__(self, f, then: Callable[[], None]):
        self.f, self.then = f, then

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(bytes(data)[:KEPT])
        self.f.flush()
        self.then()


def short_open(real_open, cut: Callable[[object, str], bool], then: Callable[[], None]):
    """An ``open`` that opens with ``real_open`` and hands out a :class:`ShortFile` for the files ``cut(file, mode)``
    picks (called once per open), the file itself for the others."""

    def opener(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return ShortFile(f, then) if cut(file, mode) else f

    return opener


def no_space() -> None:
    """What a full disk does to a write: ENOSPC."""
    raise OSError(errno.ENOSPC, "No space left on device")
