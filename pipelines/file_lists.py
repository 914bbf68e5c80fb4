"""Writing DALI file lists: one ``path label`` line per image, each path relative to the list's folder (read by
:func:`dali_cutmix.folder_reader.read_file_list` and DALI's ``readers.file(file_list=...)``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from dali_cutmix.errors import UserError
from dali_cutmix.helpers.atomic import atomic_path


def list_entry(path, list_folder) -> str:
    """How a DALI file list in ``list_folder`` names the file ``path``: relative to that folder when the file is
    under it, else absolute."""
    path, list_folder = Path(os.path.abspath(path)), Path(os.path.abspath(list_folder))
    try:
        return path.relative_to(list_folder).as_posix()
    except ValueError:
        return str(path)


def check_list_name(name: str) -> None:
    """Raise ValueError unless a DALI file list can hold the path ``name`` (one line, no leading or trailing
    whitespace)."""
    if "\n" in name or "\r" in name or name != name.strip():
        raise UserError(f"a DALI file list cannot hold the path {name!r} (a line break, or white space at an end)")


def write_file_list(path, files: Sequence, labels: Sequence[int]) -> Path:
    """Write a DALI file list atomically: one ``path label`` line per file, each path as :func:`list_entry`
    names it for the list's folder (so the list reads the same files wherever the reader's working folder is).

    Raises:
        UserError: no files, lengths that differ, or a path a list cannot hold (:func:`check_list_name`).
    """
    path = Path(path)
    if len(files) != len(labels):
        raise UserError(f"{len(files)} files but {len(labels)} labels")
    if not files:
        raise UserError(f"file list {str(path)!r} would hold no images")
    folder = path.parent
    lines = []
    for file, label in zip(files, labels):
        entry = list_entry(file, folder)
        check_list_name(entry)
        lines.append(f"{entry} {int(label)}\n")
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines))
    return path
