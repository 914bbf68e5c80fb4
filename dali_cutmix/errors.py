"""The one exception type for what a user can cause, and how its message reads.

Every error a user can cause (a bad path, argument, data file, checkpoint, launch setting, a machine set-up the
native operators cannot build on) is a :class:`UserError` or a subclass of it: the CLI reports it in one line and
exits with code 2. Any other exception is a bug of dali-cutmix (or of a library under it) and keeps its traceback.
"""

from __future__ import annotations

import os

#: Set to 1 to see the traceback of a user error too (``dali-cutmix --debug`` sets it).
DEBUG_ENV = "DALI_CUTMIX_DEBUG"


class UserError(Exception):
    """A problem with what the user gave (argument, path, file, checkpoint, launch setting, machine set-up),
    described in one line that names it."""


def debugging() -> bool:
    """Whether ``$DALI_CUTMIX_DEBUG`` asks for the tracebacks of user errors too."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type's name when it has none."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
