"""Write files and folders so that readers never see them half-written: a temporary one beside, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


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


def check_writable(path) -> Path:
    """``path`` as a Path if a file can be written there: its folder exists, is a folder and takes a new file
    (tried: a temporary file made and removed at once, so read-only mounts and root count right), and ``path``
    is not itself a folder. Creates nothing that stays.

    Raises:
        FileNotFoundError: the folder does not exist. NotADirectoryError: the folder, or one above it, is a file.
        IsADirectoryError: ``path`` is a folder. FileExistsError: ``path`` is a device, pipe or socket.
        PermissionError / OSError: the folder takes no new file.
        Each names the folder or ``path``, in one line.
    """
    path = Path(path)
    folder = path.parent
    shown = repr(str(folder)) if str(folder) != "." else f"{os.getcwd()!r} (the current directory)"
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory, expected a file name")
    if path.exists() and not path.is_file():  # a device, pipe or socket: a rename would replace it
        raise FileExistsError(f"{str(path)!r} exists and is not a regular file (a device, pipe or socket)")
    for above in (folder, *folder.parents):
        if above.exists() or above.is_symlink():
            if not above.is_dir():
                raise NotADirectoryError(
                    f"{str(above)!r} is a file, not a directory (so {str(path)!r} cannot be written)")
            break
    if not folder.is_dir():
        raise FileNotFoundError(f"the directory {str(folder)!r} does not exist (create it first)")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise type(e)(f"cannot write in the directory {shown}: {reason}") from None
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
