"""Write files and folders so that readers never see them half-written: a temporary one beside, then rename."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import UserError


def _naming(error: OSError, path: Path, tmp) -> OSError:
    """``error`` again, naming ``path`` where it named the temporary file ``tmp`` (or, for ``tmp`` None, any file
    in ``path``'s folder that is not ``path``'s folder itself): users know their path, not ours."""
    named = error.filename
    if named is None:
        return error
    named = Path(os.fsdecode(named))
    if (tmp is not None and named != Path(tmp)) or (tmp is None and (named.parent != path.parent)):
        return error
    renamed = type(error)(error.errno, error.strerror, str(path)) if error.errno is not None else error
    if renamed is not error:
        renamed.__traceback__ = error.__traceback__
    return renamed


def writable_folder(folder, *, may_create: bool = False) -> Path:
    """The folder in which ``folder``'s files would be written: ``folder`` itself, or with ``may_create`` its nearest
    existing parent, where ``folder`` would be created. It must be a folder (not a file, nor under one) and take
    a new file: tried with a temporary file made and removed at once, so read-only mounts and root count right.
    Creates nothing that stays.

    Raises (each with the path at fault as its ``filename``, for the caller's own one-line message):
        NotADirectoryError: ``folder`` or a folder above it is a file.
        FileNotFoundError: ``folder`` does not exist (without ``may_create``).
        PermissionError / OSError: the folder takes no new file (``strerror`` says why).
    """
    folder = Path(folder).absolute()
    existing = folder
    while not (existing.exists() or existing.is_symlink()) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", str(existing))
    if existing != folder and not may_create:
        raise FileNotFoundError(errno.ENOENT, "does not exist", str(folder))
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise type(e)(e.errno, e.strerror or type(e).__name__, str(existing)) from None
    return existing


def check_writable(path) -> Path:
    """``path`` as a Path if a file can be written there: its folder exists, is a folder and takes a new file
    (:func:`writable_folder`), and ``path`` is not itself a folder. Creates nothing that stays.

    Raises:
        UserError: the folder does not exist, it (or one above it) is a file, it takes no new file, or ``path``
        is a folder, a device, a pipe or a socket; one line naming the folder or ``path``.
    """
    path = Path(path)
    folder = path.parent
    shown = repr(str(folder)) if str(folder) != "." else f"{os.getcwd()!r} (the current directory)"
    if path.is_dir():
        raise UserError(f"{str(path)!r} is a directory, expected a file name")
    if path.exists() and not path.is_file():  # a device, pipe or socket: a rename would replace it
        raise UserError(f"{str(path)!r} exists and is not a regular file (a device, pipe or socket)")
    try:
        writable_folder(folder)
    except NotADirectoryError as e:
        raise UserError(
            f"{e.filename!r} is a file, not a directory (so {str(path)!r} cannot be written)") from None
    except FileNotFoundError:
        raise UserError(f"the directory {str(folder)!r} does not exist (create it first)") from None
    except OSError as e:
        raise UserError(f"cannot write in the directory {shown}: {e.strerror}") from None
    return path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` keeps its old content. An OSError about the
    temporary file (it cannot be made, written, synced or renamed) names ``path``, never the temporary name.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the result gets the mode a plain open() would give
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        renamed = _naming(e, path, tmp)
        if renamed is e:
            raise
        raise renamed from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp) -> None:
    if tmp is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_directory(path):
    """Yield a temporary folder next to ``path``; on success it is renamed onto ``path``.

    ``path`` appears whole or not at all. If ``path`` already exists as a non-empty folder when the work is
    done (another process finished first), the new folder is dropped and the existing one kept. On an
    exception the temporary folder is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
