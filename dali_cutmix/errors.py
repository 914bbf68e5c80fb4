"""Exceptions that mean "the user gave us something wrong": the CLI reports them in one line, exit code 2."""


class UserError(Exception):
    """A problem with the command's input (argument, path, file), described in one line."""


USER_ERRORS = (UserError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError)


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type's name when it has none."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
