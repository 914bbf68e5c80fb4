"""The data scan: every image file of a class-per-folder tree or of an ImageNet root (``train/`` and ``val/``),
checked before a run reads it (``dali-cutmix scan``, and the trainer's ``--scan``).

- **Quick mode** runs at file-system speed: :func:`dali_cutmix.imagecheck.check_image_file` on every file (size,
  magic bytes, header, end marker, pixel size), in ``jobs`` threads.
- **Full mode** also decodes every file the quick check passed with DALI's CPU decoder (the decoder the CPU
  pipeline uses; nvImageCodec, as on the GPU), ``jobs`` threads, batch by batch.

A file is *usable* (DALI decodes it), *unusual* (usable, with the kinds worth knowing: a PNG named ``.jpg``,
CMYK, grayscale, progressive, EXIF-rotated, tiny, ...) or *bad* (with the reason). Hidden files and folders
are never samples; other files that are not images are listed as ignored.

Results are cached per file under :func:`dali_cutmix.helpers.host.cache_dir` (``scans/``), keyed by the data root, the
file's relative path, size and modification time: a second scan of the same data re-reads no file, a changed
file is scanned again, and a full result also answers a quick scan.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from dali_cutmix.errors import UserError
from dali_cutmix.folder_reader import HIDDEN, OTHER, ImageList, is_hidden, list_classes, not_a_folder, walk_tree
from dali_cutmix.helpers.atomic import atomic_path
from dali_cutmix.helpers.host import cache_dir, usable_cores
from dali_cutmix.helpers.text import plural
from dali_cutmix.imagecheck import BAD, UNUSUAL, FileCheck, check_image_file

from .file_lists import check_list_name, write_file_list
from .imagenet import check_imagenet_layout

MODES = ("quick", "full")
#: Bumped when a check changes: cached results of another version are scanned again.
SCAN_VERSION = 1
#: Cached results' depth: the quick check, or the quick check and a DALI decode.
_LEVEL = {"quick": 1, "full": 2}
#: Files per task of the quick check's pool.
_CHUNK = 512
#: From this many files to check on, the quick check runs in ``jobs`` processes (the header parsing is Python:
#: threads share one core for it); below, in threads.
PROCESSES_FROM = 20_000


@dataclass(frozen=True)
class ScannedFile:
    """One image file: ``path`` relative to its split's folder (``<class>/<file>``, "/"-separated), its class
    id ``label`` and what the check found."""

    path: str
    label: int
    check: FileCheck


@dataclass
class SplitScan:
    """The scan of one class-per-folder tree: ``name`` ("train", "val", or "" for a plain tree), its folder
    ``root``, its image ``files`` (sorted by class, then path), and the names left out: ``ignored`` (files that
    are not images, or lie outside the class folders) and ``hidden`` (hidden files and folders), both relative
    to ``root`` (a folder ends with "/")."""

    name: str
    root: Path
    files: List[ScannedFile] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    hidden: List[str] = field(default_factory=list)

    def usable(self) -> List[ScannedFile]:
        """The files DALI decodes (status "usable" or "unusual"), in order."""
        return [f for f in self.files if f.check.usable]

    def with_status(self, status: str) -> List[ScannedFile]:
        """The files whose status is ``status``."""
        return [f for f in self.files if f.check.status == status]

    def shown(self, path: str) -> str:
        """``path`` (relative to this split) as the user names it from the scanned root: ``train/<class>/x``."""
        return f"{self.name}/{path}" if self.name else path


@dataclass
class ScanResult:
    """A finished scan: the scanned ``data`` root, its ``layout`` ("imagenet": ``train/`` and ``val/``;
    "folders": one class-per-folder tree), the ``mode``, the ``classes`` (label order, the training split's),
    the ``splits``, the wall time and how many files came from the cache."""

    data: Path
    layout: str
    mode: str
    classes: List[str]
    splits: List[SplitScan]
    seconds: float = 0.0
    cached: int = 0

    @property
    def total(self) -> int:
        """Image files scanned, over all splits."""
        return sum(len(s.files) for s in self.splits)

    def count(self, status: str) -> int:
        """Files of ``status`` over all splits."""
        return sum(len(s.with_status(status)) for s in self.splits)

    @property
    def all_usable(self) -> bool:
        """No file is bad."""
        return self.count(BAD) == 0

    def split(self, name: str) -> SplitScan:
        """The split called ``name`` ("" for a plain tree)."""
        for s in self.splits:
            if s.name == name:
                return s
        raise KeyError(name)

    def bad(self) -> List[Tuple[str, str]]:
        """``(path as shown, reason)`` of every bad file, in order."""
        return [(s.shown(f.path), f.check.detail) for s in self.splits for f in s.with_status(BAD)]

    def unusual(self) -> List[Tuple[str, str]]:
        """``(path as shown, kinds)`` of every unusual file, in order."""
        return [(s.shown(f.path), f.check.detail) for s in self.splits for f in s.with_status(UNUSUAL)]

    def report(self) -> dict:
        """The JSON report: settings, counts per split, and every bad, unusual, ignored and hidden name."""
        return dict(
            data=str(self.data), layout=self.layout, mode=self.mode, classes=len(self.classes),
            class_names=list(self.classes), files=self.total, usable=self.total - self.count(BAD),
            unusual=self.count(UNUSUAL), bad=self.count(BAD), seconds=round(self.seconds, 3),
            files_per_s=round(self.total / self.seconds, 1) if self.seconds > 0 else None, cached=self.cached,
            splits={s.name or ".": dict(root=str(s.root), files=len(s.files), usable=len(s.usable()),
                                        unusual=len(s.with_status(UNUSUAL)), bad=len(s.with_status(BAD)))
                    for s in self.splits},
            bad_files=[dict(path=p, reason=r) for p, r in self.bad()],
            unusual_files=[dict(path=p, kinds=k) for p, k in self.unusual()],
            ignored=[s.shown(p) for s in self.splits for p in s.ignored],
            hidden=[s.shown(p) for s in self.splits for p in s.hidden],
            version=SCAN_VERSION)


def check_mode(mode) -> str:
    """``mode`` if it is one of :data:`MODES`; raises UserError naming it otherwise."""
    if mode not in MODES:
        raise UserError(f"scan mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def data_layout(data) -> Tuple[str, List[Tuple[str, Path]], List[str]]:
    """``(layout, [(split name, folder)], classes)`` of a data root: an ImageNet root (``train/`` and ``val/``,
    checked by :func:`~dali_cutmix.pipelines.imagenet.check_imagenet_layout`) or a class-per-folder tree.

    Raises:
        UserError: a missing root, no images, class folders that differ, a flat ``val/``.
    """
    data = Path(data)
    if not data.is_dir():
        raise not_a_folder(data)
    if (data / "train").is_dir() and (data / "val").is_dir():
        train, val, classes = check_imagenet_layout(data)
        return "imagenet", [("train", train), ("val", val)], classes
    return "folders", [("", data)], list_classes(data)


# ------------------------------------------------------------------------------------------------- the walk


@dataclass
class _Found:
    path: str
    label: int
    size: int
    mtime_ns: int


def _walk_class(root: Path, name: str, label: int) -> Tuple[List[_Found], List[str], List[str]]:
    """The image files under ``root/name`` (:func:`dali_cutmix.folder_reader.walk_tree`) with their size and modification
    time; the non-image and hidden names met on the way."""
    found, ignored, hidden = [], [], []
    for rel, entry, kind in walk_tree(root / name):
        path = f"{name}/{rel}"
        if kind == HIDDEN:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            hidden.append(path + ("/" if is_dir else ""))
        elif kind == OTHER:
            ignored.append(path)
        else:
            try:
                st = entry.stat()
            except OSError:
                found.append(_Found(path, label, -1, 0))
                continue
            found.append(_Found(path, label, st.st_size, st.st_mtime_ns))
    found.sort(key=lambda f: f.path)
    return found, sorted(ignored), sorted(hidden)


def _walk_split(root: Path, classes: Sequence[str], jobs: int) -> Tuple[List[_Found], List[str], List[str]]:
    """Every class folder of ``root`` walked (``jobs`` threads); the split root's own loose and hidden names."""
    ignored, hidden = [], []
    with os.scandir(root) as it:
        for e in it:
            if is_hidden(e.name):
                hidden.append(e.name + ("/" if e.is_dir() else ""))
            elif not e.is_dir():
                ignored.append(e.name)
    present = [(c, label) for label, c in enumerate(classes) if (root / c).is_dir()]
    found: List[_Found] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for files, ign, hid in pool.map(lambda cl: _walk_class(root, *cl), present):
            found += files
            ignored += ign
            hidden += hid
    return found, sorted(ignored), sorted(hidden)


# ------------------------------------------------------------------------------------------------- the cache


def cache_path(root) -> Path:
    """The scan cache file of the folder ``root`` (by its absolute path) under :func:`dali_cutmix.helpers.host.cache_dir`."""
    key = hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:24]
    return cache_dir() / "scans" / f"{key}.json.gz"


def _load_cache(root: Path) -> Dict[str, list]:
    path = cache_path(root)
    try:
        with gzip.open(path, "rt") as f:
            data = json.load(f)
    except (OSError, ValueError, EOFError):
        return {}
    if data.get("version") != SCAN_VERSION or data.get("root") != os.path.abspath(root):
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _save_cache(root: Path, entries: Dict[str, list]) -> None:
    path = cache_path(root)
    try:
        with atomic_path(path) as tmp:
            with gzip.open(tmp, "wt", compresslevel=1) as f:
                json.dump(dict(version=SCAN_VERSION, root=os.path.abspath(root), files=entries), f,
                          separators=(",", ":"))
    except OSError:
        pass  # a cache that cannot be written costs a scan next time, nothing else


def _cached(entry, found: _Found, level: int) -> Optional[FileCheck]:
    """The cached check of ``found`` when the cache holds one for its size and time, at ``level`` or deeper."""
    if not entry or entry[0] != found.size or entry[1] != found.mtime_ns or entry[2] < level:
        return None
    return FileCheck(entry[3], entry[4], entry[5], entry[6], entry[7])


def _entry(found: _Found, level: int, check: FileCheck) -> list:
    return [found.size, found.mtime_ns, level, check.status, check.format, check.detail, check.width,
            check.height]


# -------------------------------------------------------------------------------------- the DALI decode check


@contextlib.contextmanager
def quiet_native_stderr():
    """Send what native code writes to the process's stderr (file descriptor 2) to /dev/null meanwhile: DALI's
    decoders log every file they fail on there. Python's own ``sys.stderr`` is flushed first."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class DecodeChecker:
    """Decodes encoded images with DALI's CPU image decoder (``fn.decoders.image``, RGB, ``threads`` threads),
    a batch at a time; finds which files of a batch fail. DALI gives up on a whole batch when one file fails,
    and the pipeline with it: a failed batch is decoded again file by file, each failure on a new pipeline."""

    def __init__(self, batch_size: int, threads: int):
        self.batch_size, self.threads = batch_size, threads
        self.pipe = None

    def _pipeline(self):
        if self.pipe is None:
            import nvidia.dali.fn as fn
            import nvidia.dali.types as types
            from nvidia.dali import pipeline_def

            @pipeline_def(batch_size=self.batch_size, num_threads=self.threads, device_id=None,
                          exec_pipelined=False, exec_async=False, prefetch_queue_depth=1)
            def decode():
                encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
                return fn.decoders.image(encoded, device="cpu", output_type=types.RGB)

            self.pipe = decode()
            self.pipe.build()
        return self.pipe

    def _run(self, encoded: List) -> Optional[str]:
        """None when every image of ``encoded`` decodes, else DALI's reason."""
        from dali_cutmix.loader import CODEC_DATA_STATUSES

        pipe = self._pipeline()
        try:
            with quiet_native_stderr():
                pipe.feed_input("encoded", encoded)
                pipe.run()
            return None
        except RuntimeError as e:
            self.pipe = None
            text = str(e)
            for status, what in CODEC_DATA_STATUSES.items():
                if f"nvImageCodec failure: '#{status}'" in text:
                    return f"DALI cannot decode it (nvImageCodec reports {what})"
            return "DALI cannot decode it"

    def failures(self, paths: Sequence[Path]) -> Dict[int, str]:
        """``{index in paths: reason}`` of the files DALI's decoder fails on (or that cannot be read)."""
        import numpy as np

        failed: Dict[int, str] = {}
        encoded, index = [], []
        for i, path in enumerate(paths):
            try:
                data = np.fromfile(path, dtype=np.uint8)
            except OSError as e:
                failed[i] = f"cannot read: {e.strerror or e}"
                continue
            encoded.append(data)
            index.append(i)
        if not encoded:
            return failed
        if self._run(encoded) is None:
            return failed
        for data, i in zip(encoded, index):
            reason = self._run([data])
            if reason is not None:
                failed[i] = reason
        return failed


# ------------------------------------------------------------------------------------------------- the scan


def _progress(total: int, prefix: str, enabled: bool):
    from dali_cutmix.helpers.progress import Progress

    return Progress(total, prefix, enabled=enabled and total > 0, stream=sys.stderr, interval_s=10.0)


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _listable(name: str) -> bool:
    try:
        check_list_name(name)
    except ValueError:
        return False
    return True


def check_files(files: Sequence[Tuple[str, Optional[int]]]) -> List[tuple]:
    """:func:`~dali_cutmix.imagecheck.check_image_file` of each ``(path, size)``, as plain tuples of the
    :class:`~dali_cutmix.folder_reader.FileCheck` fields (a pool worker's task)."""
    out = []
    for path, size in files:
        c = check_image_file(path, size)
        out.append((c.status, c.format, c.detail, c.width, c.height))
    return out


def _pool(jobs: int, files: int):
    """Threads for a few files or one job; else ``jobs`` processes (started by a fork server: no copy of a
    process that runs threads of its own, as the trainer's does)."""
    if jobs == 1 or files < PROCESSES_FROM:
        return ThreadPoolExecutor(max_workers=jobs)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context(method))


def scan_split(name: str, root: Path, classes: Sequence[str], *, mode: str = "quick", jobs: Optional[int] = None,
               use_cache: bool = True, show_progress: bool = True) -> Tuple[SplitScan, int]:
    """Scan one class-per-folder tree ``root`` against ``classes`` (labels are positions in it); returns the
    :class:`SplitScan` and how many files came from the cache. See :func:`scan_data`."""
    jobs = jobs or usable_cores()
    level = _LEVEL[check_mode(mode)]
    found, ignored, hidden = _walk_split(root, classes, jobs)
    cache = _load_cache(root) if use_cache else {}
    checks: List[Optional[FileCheck]] = [None] * len(found)
    todo = []
    for i, f in enumerate(found):
        checks[i] = _cached(cache.get(f.path), f, level)
        if checks[i] is None:
            todo.append(i)
    cached = len(found) - len(todo)
    label = f"scan {name + '/' if name else str(root)}"

    progress = _progress(len(todo), f"{label} (quick)", show_progress)
    done = 0
    prefix = os.path.join(str(root), "")
    tasks = [[(prefix + found[i].path, found[i].size if found[i].size >= 0 else None) for i in chunk]
             for chunk in _chunks(todo, _CHUNK)]
    with _pool(jobs, len(todo)) as pool:
        for chunk, results in zip(_chunks(todo, _CHUNK), pool.map(check_files, tasks)):
            for i, check in zip(chunk, results):
                checks[i] = FileCheck(*check)
            done += len(chunk)
            progress.update(done)
    progress.close()

    if level == _LEVEL["full"]:
        decode = [i for i in todo if checks[i].usable]  # a cached full result is not decoded again
        checker = DecodeChecker(batch_size=max(8, 8 * jobs), threads=jobs)
        progress = _progress(len(decode), f"{label} (decode)", show_progress)
        done = 0
        for batch in _chunks(decode, checker.batch_size):
            for k, reason in checker.failures([root / found[i].path for i in batch]).items():
                old = checks[batch[k]]
                checks[batch[k]] = FileCheck(BAD, old.format, reason, old.width, old.height)
            done += len(batch)
            progress.update(done)
        progress.close()

    for i, f in enumerate(found):
        if checks[i].usable and not _listable(f.path):
            checks[i] = FileCheck(BAD, checks[i].format, "its name holds a line break or ends in white space: a DALI "
                                  "file list cannot hold it", checks[i].width, checks[i].height)
    if use_cache and (todo or level == _LEVEL["full"]):
        entries = {}
        for f, check in zip(found, checks):
            if f.size < 0:
                continue
            old = cache.get(f.path)
            kept = _cached(old, f, level) is not None and old[2] > level
            entries[f.path] = old if kept else _entry(f, level, check)
        _save_cache(root, entries)
    split = SplitScan(name=name, root=root, ignored=ignored, hidden=hidden,
                      files=[ScannedFile(f.path, f.label, c) for f, c in zip(found, checks)])
    return split, cached


def scan_data(data, *, mode: str = "quick", jobs: Optional[int] = None, use_cache: bool = True,
              show_progress: bool = True) -> ScanResult:
    """Scan every image file of ``data``: a class-per-folder tree, or an ImageNet root (``train/`` and ``val/``,
    labelled with the training split's classes).

    Args:
        mode: "quick" (file-system speed: no decoding) or "full" (the quick check, then a DALI decode of every
            file it passed).
        jobs: threads (default: the usable cores).
        use_cache: reuse and update the per-file results cached for ``data`` (see the module docstring).
        show_progress: a progress bar on stderr (a line every 10 s when stderr is not a terminal).

    Returns:
        A :class:`ScanResult`: each file usable, unusual (with the kinds) or bad (with the reason).

    Raises:
        UserError: as :func:`data_layout` (no images, class folders that differ between
            the splits, a flat ``val/``), or a bad ``mode`` / ``jobs``.
    """
    start = time.perf_counter()
    check_mode(mode)
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise UserError(f"jobs must be an integer >= 1, got {jobs!r}")
    data = Path(data)
    layout, splits, classes = data_layout(data)
    scans, cached = [], 0
    for name, root in splits:
        split, hits = scan_split(name, root, classes, mode=mode, jobs=jobs, use_cache=use_cache,
                                 show_progress=show_progress)
        scans.append(split)
        cached += hits
    return ScanResult(data=data, layout=layout, mode=mode, classes=list(classes), splits=scans,
                      seconds=time.perf_counter() - start, cached=cached)


# ------------------------------------------------------------------------------------------------- outputs


def write_report(result: ScanResult, path) -> Path:
    """Write :meth:`ScanResult.report` as indented JSON, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result.report(), indent=2) + "\n")
    return path


def list_paths(result: ScanResult, pattern) -> List[Tuple[str, Path]]:
    """``[(split name, list path)]`` that :func:`write_lists` writes for ``pattern``: the path itself for a
    plain tree; for an ImageNet root, ``pattern`` must hold ``{split}`` (one list per split).

    Raises:
        UserError: an ImageNet root and no ``{split}`` in ``pattern``.
    """
    pattern = str(pattern)
    if result.layout == "imagenet":
        if "{split}" not in pattern:
            raise UserError(f"--write-list {pattern!r}: {str(result.data)!r} holds two splits (train/ and val/): "
                             f"name the lists with {{split}}, e.g. --write-list lists/{{split}}.txt")
        return [(s.name, Path(pattern.replace("{split}", s.name))) for s in result.splits]
    return [("", Path(pattern.replace("{split}", "all")))]


def usable_lines(split: SplitScan) -> Tuple[List[Path], List[int]]:
    """``(full paths, labels)`` of the split's usable files (the scan calls a file whose name a DALI file list
    cannot hold bad)."""
    usable = split.usable()
    return [split.root / f.path for f in usable], [f.label for f in usable]


def write_lists(result: ScanResult, pattern) -> List[Tuple[Path, int]]:
    """Write a DALI file list of each split's usable files (see :func:`list_paths`; paths relative to the list's
    folder, or absolute when the data lies elsewhere; labels are the scan's class ids); returns ``[(path,
    lines)]``.

    Raises:
        UserError: see :func:`list_paths`, or a split with no usable file.
    """
    written = []
    for name, path in list_paths(result, pattern):
        files, labels = usable_lines(result.split(name))
        if not files:
            raise UserError(f"no usable image in {str(result.split(name).root)!r}: no list written")
        write_file_list(path, files, labels)
        written.append((path, len(files)))
    return written


def _kinds(items: Sequence[Tuple[str, str]]) -> str:
    counts: Dict[str, int] = {}
    for _, kinds in items:
        for kind in kinds.split(", "):
            kind = kind.split(" (")[0]
            counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def summary_lines(result: ScanResult, *, bad_limit: Optional[int] = None) -> List[str]:
    """The scan's summary for a terminal: what was scanned, per split the usable / unusual / bad counts, the
    unusual kinds, each bad file with its reason (the first ``bad_limit`` of them when given), and what was
    left out (files that are not images, hidden names)."""
    rate = f", {result.total / result.seconds:,.0f} files/s" if result.seconds > 0 else ""
    where = "ImageNet layout: train/ and val/" if result.layout == "imagenet" else "class-per-folder tree"
    cached = f", {result.cached:,} from the cache" if result.cached else ""
    lines = [f"scanned {result.data} ({where}, {len(result.classes)} classes), {result.mode} mode: "
             f"{result.total:,} image files in {result.seconds:.1f} s{rate}{cached}"]
    for s in result.splits:
        usable, unusual, bad = len(s.usable()), len(s.with_status(UNUSUAL)), len(s.with_status(BAD))
        lines.append(f"  {s.name or 'images'}: {len(s.files):,} files: {usable:,} usable"
                     f"{f' ({unusual:,} unusual)' if unusual else ''}, {bad:,} bad")
    unusual = result.unusual()
    if unusual:
        lines.append(f"unusual but usable: {_kinds(unusual)}")
    bad = result.bad()
    if bad:
        shown = bad if bad_limit is None else bad[:bad_limit]
        lines.append(f"bad ({len(bad):,}): DALI cannot read these; a run skips them")
        lines += [f"  {path}: {reason}" for path, reason in shown]
        if len(shown) < len(bad):
            lines.append(f"  ... and {len(bad) - len(shown):,} more")
    ignored = [s.shown(p) for s in result.splits for p in s.ignored]
    hidden = [s.shown(p) for s in result.splits for p in s.hidden]
    if ignored or hidden:
        parts = []
        if ignored:
            what = "files that are not images" if len(ignored) > 1 else "file that is not an image"
            parts.append(f"{len(ignored):,} {what} ({', '.join(ignored[:3])}"
                         f"{', ...' if len(ignored) > 3 else ''})")
        if hidden:
            parts.append(f"{len(hidden):,} hidden name{'s' if len(hidden) > 1 else ''} ({', '.join(hidden[:3])}"
                         f"{', ...' if len(hidden) > 3 else ''})")
        lines.append("left out: " + "; ".join(parts))
    return lines


# ------------------------------------------------------------------------------ skipping bad files elsewhere


def usable_images(data, *, jobs: Optional[int] = None, show_progress: bool = True) -> Tuple[ImageList, ScanResult]:
    """The usable images of the class-per-folder tree ``data`` (a quick scan, cached): an
    :class:`~dali_cutmix.folder_reader.ImageList` with the tree's classes (for ``build_cutmix_pipeline``, the preview,
    the profiler), and the scan (its bad files are the ones left out).

    Raises:
        UserError: as :func:`list_classes`; no usable image.
    """
    data = Path(data)
    start = time.perf_counter()
    classes = list_classes(data)
    split, cached = scan_split("", data, classes, jobs=jobs, show_progress=show_progress)
    result = ScanResult(data=data, layout="folders", mode="quick", classes=classes, splits=[split],
                        seconds=time.perf_counter() - start, cached=cached)
    usable = split.usable()
    if not usable:
        raise UserError(f"data path {str(data)!r} holds no usable image: see `dali-cutmix scan {data}`")
    return ImageList(root=data, files=tuple(f.path for f in usable), labels=tuple(f.label for f in usable),
                     classes=tuple(classes)), result


def skipping_line(bad: Sequence[Tuple[str, str]], *, limit: int = 5, hint: str = "") -> Optional[str]:
    """One line naming the files a command skips: their count, the first ``limit`` ``(path, reason)`` pairs, and
    ``hint`` after the count of the others; None when ``bad`` is empty."""
    if not bad:
        return None
    shown = "; ".join(f"{path}: {reason}" for path, reason in bad[:limit])
    more = f"; and {len(bad) - limit:,} more{hint}" if len(bad) > limit else ""
    return f"skipping {plural(len(bad), 'file')} that DALI cannot read: {shown}{more}"


def skip_line(result: ScanResult, limit: int = 5) -> Optional[str]:
    """:func:`skipping_line` of a scan's bad files, pointing to ``dali-cutmix scan`` for the full list."""
    return skipping_line(result.bad(), limit=limit, hint=f" (`dali-cutmix scan {result.data}` lists them)")


def list_file_of(images: ImageList) -> Path:
    """A DALI file list of ``images`` in the cache folder (``lists/``, named by its content), written once,
    atomically; for tools that take a path (the profiler)."""
    files = [str(images.path(f)) for f in images.files]
    key = hashlib.sha256("\n".join(f"{f} {label}" for f, label in zip(files, images.labels)).encode()).hexdigest()
    path = cache_dir() / "lists" / f"{key[:24]}.txt"
    if not path.is_file():
        write_file_list(path, files, images.labels)
    return path
