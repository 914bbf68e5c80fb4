"""The files a run reads: its data scanned before the first epoch (``--scan``), the files it skips named, and the
DALI file lists its readers read, written into the run folder.

Every rank's readers read ``OUTPUT/train-files.txt`` and ``OUTPUT/val-files.txt``: DALI file lists made from our
class list (the training split's sorted class folders, hidden ones never classes), so labels line up between the
splits whatever else lies in the tree. The lists hold the usable files only. The run skips:

- the files the scan finds bad (``--scan quick``, the default, or ``full``; ``off`` skips none);
- the files that failed while a run read them (:data:`FAILED_FILE`, written by :func:`record_failure`); such a
  file stays skipped by every later start of the run as long as it is unchanged (same size and modification
  time): a replaced file is read (and scanned) again.

``OUTPUT/skipped.txt`` names every skipped file with its reason, ``run.json`` holds the same list.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from dali_cutmix.errors import UserError
from dali_cutmix.folder_reader import list_samples
from dali_cutmix.helpers.atomic import atomic_path
from dali_cutmix.pipelines.file_lists import write_file_list

from .config import SCAN_MODES

TRAIN_LIST = "train-files.txt"
VAL_LIST = "val-files.txt"
SKIPPED_FILE = "skipped.txt"
FAILED_FILE = "failed-files.json"
#: Skipped files named on the terminal (all of them are in ``skipped.txt`` and ``run.json``).
SHOWN = 5


@dataclass(frozen=True)
class Skipped:
    """A file the run does not read: ``path`` relative to the data root (``train/<class>/<file>``), ``reason``,
    and ``found``: "scan" or "epoch N" (it failed while epoch N read it)."""

    path: str
    reason: str
    found: str = "scan"


@dataclass(frozen=True)
class DataSelection:
    """What a run reads (:func:`select_files`): per split, the usable files (full paths) and their labels, and
    the files skipped; ``lines`` say it on the terminal."""

    train: Tuple[Tuple[str, ...], Tuple[int, ...]]
    val: Tuple[Tuple[str, ...], Tuple[int, ...]]
    skipped: Tuple[Skipped, ...]
    lines: Tuple[str, ...]
    shards: Optional[Tuple[str, str]] = None  # a shard root's train and val shard folders, read instead of lists
    shard_samples: int = 0  # the training samples of ``shards``

    @property
    def train_images(self) -> int:
        """Training samples this run reads: the usable files, or the samples of the training shards."""
        return self.shard_samples if self.shards is not None else len(self.train[0])


def data_source(data) -> Tuple[str, List[str], Optional[Tuple[str, str]]]:
    """What ``--data`` is: ``(root, classes, shards)``. A shard root (``dali-cutmix shard`` of an ImageNet root:
    ``train/`` and ``val/`` shard folders, local or ``s3://``) gives its classes and ``(train, val)`` folders;
    an ImageNet root (checked by :func:`~dali_cutmix.pipelines.imagenet.check_imagenet_layout`) its classes and
    None.

    Raises:
        UserError: a missing root, a bad layout, shard folders of different classes.
    """
    from dali_cutmix.pipelines.imagenet import check_imagenet_layout
    from dali_cutmix.shard_reader import is_s3, is_shard_folder, shard_root_splits

    if is_s3(data):
        train, val = shard_root_splits(data)
        return str(data), list(train.classes), (train.location, val.location)
    root = Path(data).expanduser()
    if not root.exists():
        raise UserError(f"--data {str(data)!r} does not exist")
    splits = shard_root_splits(root)
    if splits is not None:
        return str(root), list(splits[0].classes), (splits[0].location, splits[1].location)
    if is_shard_folder(root):
        raise UserError(f"--data {str(data)!r} is one shard folder; training needs train/ and val/ shard folders: "
                         f"`dali-cutmix shard` of an ImageNet root (DATA/train, DATA/val) writes them")
    return str(root), list(check_imagenet_layout(root)[2]), None


def shard_selection(shards: Tuple[str, str]) -> DataSelection:
    """What a run on a shard root reads: its two shard folders; the files skipped are those the shard run
    skipped (named in its manifests)."""
    from dali_cutmix.pipelines.scan import skipping_line
    from dali_cutmix.shard_reader import as_shards

    train, val = as_shards(shards[0]), as_shards(shards[1])
    skipped = tuple(Skipped(e["path"], e["reason"], "shard") for s in (train, val) for e in s.skipped)
    lines = [f"shards: {train.samples:,} training and {val.samples:,} validation samples in "
             f"{len(train.tars) + len(val.tars):,} tar files (scanned when they were written)"]
    line = skipping_line([(s.path, s.reason) for s in skipped], limit=SHOWN)
    if line:
        lines.append(line)
    return DataSelection(train=((), ()), val=((), ()), skipped=skipped, lines=tuple(lines), shards=shards,
                         shard_samples=train.samples)


def read_failures(output, data_root) -> List[Skipped]:
    """The files that failed while this run read them (``OUTPUT/failed-files.json``) and are unchanged since;
    [] when there are none."""
    path = Path(output) / FAILED_FILE
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    kept = []
    for e in entries if isinstance(entries, list) else []:
        try:
            st = (Path(data_root) / e["path"]).stat()
        except (OSError, KeyError, TypeError):
            continue
        if st.st_size == e.get("size") and st.st_mtime_ns == e.get("mtime_ns"):
            kept.append(Skipped(e["path"], e.get("reason", ""), f"epoch {e.get('epoch', '?')}"))
    return kept


def data_relative(path, data_root) -> str:
    """``path`` relative to the data root ("/"-separated), or as it is when it lies elsewhere."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(data_root))
    return str(path) if rel.startswith("..") else rel.replace(os.sep, "/")


def record_failure(output, data_root, path, reason: str, epoch: int) -> str:
    """Add ``path`` (a file that failed while epoch ``epoch`` read it) to ``OUTPUT/failed-files.json`` and to
    ``OUTPUT/skipped.txt``, atomically, under a lock (two ranks may fail at once). Returns the path as
    recorded (relative to the data root)."""
    output = Path(output)
    rel = data_relative(path, data_root)
    try:
        st = Path(path).stat()
        size, mtime = st.st_size, st.st_mtime_ns
    except OSError:
        size, mtime = None, None
    with _locked(output / f".{FAILED_FILE}.lock"):
        try:
            entries = json.loads((output / FAILED_FILE).read_text())
        except (OSError, ValueError):
            entries = []
        entries = [e for e in entries if isinstance(e, dict) and e.get("path") != rel]
        entries.append(dict(path=rel, reason=reason, epoch=epoch, size=size, mtime_ns=mtime))
        with atomic_path(output / FAILED_FILE) as tmp:
            tmp.write_text(json.dumps(entries, indent=1) + "\n")
        skipped = output / SKIPPED_FILE
        try:
            text = skipped.read_text()
        except OSError:
            text = ""
        with atomic_path(skipped) as tmp:
            tmp.write_text(text + f"{rel}\tepoch {epoch}\t{reason}\n")
    return rel


@contextlib.contextmanager
def _locked(path: Path):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def select_files(root, classes: Sequence[str], *, scan: str, jobs: Optional[int] = None,
                 failed: Sequence[Skipped] = (), show_progress: bool = True) -> DataSelection:
    """The files a run on the ImageNet root ``root`` reads: every image of ``train/`` and ``val/`` under the
    class folders ``classes`` (our class list; labels are positions in it), less the bad ones ``scan`` finds
    ("quick", "full"; "off": no scan) and the ``failed`` ones.

    Raises:
        UserError: a split without one usable image, or a bad ``scan``.
    """
    from dali_cutmix.helpers.text import plural
    from dali_cutmix.pipelines.scan import scan_split, skipping_line

    if scan not in SCAN_MODES:
        raise UserError(f"--scan must be one of {', '.join(SCAN_MODES)}, got {scan!r}")
    root = Path(root)
    failed_paths = {f.path for f in failed}
    skipped: List[Skipped] = []
    splits: Dict[str, Tuple[List[str], List[int]]] = {}
    lines: List[str] = []
    counts = []
    for split in ("train", "val"):
        folder = root / split
        if scan == "off":
            rel, labels = list_samples(folder, classes)
            pairs = list(zip(rel, labels))
        else:
            result, cached = scan_split(split, folder, classes, mode=scan, jobs=jobs, show_progress=show_progress)
            pairs = []
            for f in result.files:
                if f.check.usable:
                    pairs.append((f.path, f.label))
                else:
                    skipped.append(Skipped(f"{split}/{f.path}", f.check.detail))
            counts.append((split, len(result.files), cached))
        files, labels = [], []
        for rel, label in pairs:
            if f"{split}/{rel}" in failed_paths:
                continue
            files.append(str(folder / rel))
            labels.append(label)
        if not files:
            raise UserError(f"{str(folder)!r} holds no usable image: see `dali-cutmix scan {root}`")
        splits[split] = (files, labels)
    skipped += [f for f in failed if f.path not in {s.path for s in skipped}]
    if scan != "off":
        scanned = sum(n for _, n, _ in counts)
        cached = sum(c for _, _, c in counts)
        lines.append(f"scan ({scan}): {plural(scanned, 'image file')} in train/ and val/"
                     + (f", {cached:,} of them checked before (cache)" if cached else ""))
    line = skipping_line([(s.path, s.reason) for s in skipped], limit=SHOWN)
    if line:
        lines.append(line)
    return DataSelection(train=(tuple(splits["train"][0]), tuple(splits["train"][1])),
                         val=(tuple(splits["val"][0]), tuple(splits["val"][1])), skipped=tuple(skipped),
                         lines=tuple(lines))


def write_run_lists(output, selection: DataSelection) -> Tuple[str, str]:
    """Write the selection's DALI file lists and ``skipped.txt`` into ``output`` (atomically); returns the
    lists' paths ``(train, val)`` (for shards: the shard folders, no list is written)."""
    output = Path(output)
    if selection.shards is not None:
        train, val = selection.shards
    else:
        train = write_file_list(output / TRAIN_LIST, *selection.train)
        val = write_file_list(output / VAL_LIST, *selection.val)
    with atomic_path(output / SKIPPED_FILE) as tmp:
        tmp.write_text("".join(f"{s.path}\t{s.found}\t{s.reason}\n" for s in selection.skipped))
    return str(train), str(val)


def skipped_records(skipped: Sequence[Skipped]) -> List[Dict[str, str]]:
    """The skipped files as ``run.json`` lists them."""
    return [dict(path=s.path, reason=s.reason, found=s.found) for s in skipped]


def say_lines(lines: Sequence[str], say: Callable[[str], None], output) -> None:
    """Print the selection's lines (the skip line pointing to ``OUTPUT/skipped.txt``)."""
    for line in lines:
        if line.startswith("skipping "):
            line += f" (all of them in {Path(output) / SKIPPED_FILE})"
        say(line)
