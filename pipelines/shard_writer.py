"""``dali-cutmix shard``: a class-per-folder tree or an ImageNet root written as WebDataset tar shards with DALI
index files and a manifest (the format: :mod:`dali_cutmix.shard_reader`).

- The data is scanned first (the quick scan of :mod:`dali_cutmix.pipelines.scan`, cached): bad files are left out
  and named (the "skipping N files" line the trainer prints; the manifest lists them all).
- Samples are shuffled across the shards with ``seed`` (no shard holds one class), then packed in that order into
  shards of at most ``shard_size`` bytes (a sample larger than that gets a shard of its own).
- Shards are written by ``jobs`` processes; each tar and index goes to a hidden temporary name and is renamed when
  whole. The manifest is written last, when every shard of its split is there: a folder without a manifest is not
  a shard folder, so an interrupted run leaves nothing that reads as complete.
- The run's settings are kept in ``OUT/.dali-cutmix-shard.json`` until it ends: a rerun with the same source
  resumes (a shard whose tar and index are whole and belong to the same plan is kept), with other settings or
  changed files it starts the split again, and it refuses a non-empty ``OUT`` that holds anything else.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from dali_cutmix.errors import UserError
from dali_cutmix.helpers.atomic import atomic_path
from dali_cutmix.helpers.host import usable_cores
from dali_cutmix.shard_reader import MANIFEST, shard_names

from .scan import ScanResult, SplitScan, scan_data, skip_line
from .tar_format import TAR_END, TarIndexWriter, label_digits, label_text, manifest_dict, sample_tar_bytes

#: The unfinished run's settings, in the output folder until the run ends.
STATE_FILE = ".dali-cutmix-shard.json"
STATE_FORMAT = "dali-cutmix-shard-run"
DEFAULT_SHARD_SIZE = "1GB"


def parse_size(text) -> int:
    """Bytes of a size such as ``1GB``, ``500MB``, ``64KiB``, ``4096`` (decimal kB/MB/GB/TB, binary KiB/MiB/GiB).

    Raises:
        UserError: not a size, or below one byte.
    """
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*", str(text), re.I)
    units = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
             "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
    unit = match.group(2).lower() if match else None
    if match is None or unit not in units:
        raise UserError(f"--shard-size must be a size such as 1GB, 500MB or 64MiB, got {text!r}")
    size = int(float(match.group(1)) * units[unit])
    if size < 1:
        raise UserError(f"--shard-size must be at least 1 byte, got {text!r}")
    return size


def _quiet(_line: str) -> None:
    pass


@dataclass
class ShardTask:
    """One shard to write: the split's folder, the output folder, its number, the first key, and its samples
    ``(path relative to the split, label, size)``."""

    root: str
    out: str
    number: int
    first_key: int
    key_width: int
    digits: int
    samples: List[Tuple[str, int, int]]

    @property
    def names(self) -> Tuple[str, str]:
        return shard_names(self.number)

    @property
    def tar_bytes(self) -> int:
        """The tar's size when written (headers, padded data, the end blocks)."""
        return sum(sample_tar_bytes(size, self.digits) for _, _, size in self.samples) + TAR_END


@dataclass
class SplitPlan:
    """What one split's shards hold: ``name`` ("train", "val", or "" for a plain tree), its folder, its output
    folder, the shards' tasks, the skipped files ``(path as shown, reason)`` and the plan's digest."""

    name: str
    root: Path
    out: Path
    classes: List[str]
    tasks: List[ShardTask]
    files: int
    skipped: List[Tuple[str, str]]
    digest: str = ""


@dataclass
class ShardResult:
    """A finished shard run: the output folder, per split ``(name, folder, samples, shards, bytes)``, the shards
    kept from an earlier, interrupted run, the scan, the wall time."""

    out: Path
    splits: List[Tuple[str, Path, int, int, int]] = field(default_factory=list)
    kept: int = 0
    scan: Optional[ScanResult] = None
    seconds: float = 0.0


def image_ext(path: str) -> str:
    """The component extension of an image file: its own extension, lower case."""
    return path.rsplit(".", 1)[-1].lower()


def plan_split(split: SplitScan, classes: Sequence[str], out: Path, *, seed: int, shard_size: int) -> SplitPlan:
    """The shards of one scanned split: its usable files shuffled with ``seed``, packed in that order into shards
    of at most ``shard_size`` bytes (tar bytes; at least one sample each)."""
    digits = label_digits(len(classes))
    samples = []
    for f in split.usable():
        try:
            st = (split.root / f.path).stat()
        except OSError as e:
            raise UserError(f"cannot read {str(split.root / f.path)!r}: {e.strerror}") from None
        samples.append((f.path, f.label, st.st_size, st.st_mtime_ns))
    random.Random(seed).shuffle(samples)
    groups: List[List[tuple]] = []
    used = shard_size + 1
    for s in samples:
        size = sample_tar_bytes(s[2], digits)
        if groups and used + size + TAR_END <= shard_size:
            groups[-1].append(s)
            used += size
        else:
            groups.append([s])
            used = size
    width = max(8, len(str(len(samples))))
    tasks, first = [], 0
    digest = hashlib.sha256(f"{digits} {width} {shard_size} {seed}\n".encode())
    for number, group in enumerate(groups):
        tasks.append(ShardTask(str(split.root), str(out), number, first, width, digits,
                               [(p, label, size) for p, label, size, _ in group]))
        first += len(group)
        for p, label, size, mtime in group:
            digest.update(f"{number}\t{p}\t{label}\t{size}\t{mtime}\n".encode())
    bad = [(split.shown(f.path), f.check.detail) for f in split.files if not f.check.usable]
    return SplitPlan(split.name, split.root, out, list(classes), tasks, len(split.files), bad, digest.hexdigest())


def write_shard(task: ShardTask) -> Tuple[int, int, int]:
    """Write one shard's tar and index (each to a hidden temporary name, renamed when whole; the tar first);
    returns ``(number, samples, tar bytes)``. A pool worker's task."""
    out = Path(task.out)
    tar_name, index_name = task.names
    with atomic_path(out / tar_name) as tmp:
        with open(tmp, "wb") as stream:
            writer = TarIndexWriter(stream)
            for i, (path, label, _size) in enumerate(task.samples):
                source = Path(task.root) / path
                try:
                    data = source.read_bytes()
                except OSError as e:
                    raise UserError(f"cannot read {str(source)!r} (it changed after the scan?): "
                                            f"{e.strerror}") from None
                writer.add(f"{task.first_key + i:0{task.key_width}d}",
                           [(image_ext(path), data), ("cls", label_text(label, task.digits))])
            index = writer.close()
            size = writer.offset
    with atomic_path(out / index_name) as tmp:
        tmp.write_text(index)
    return task.number, len(task.samples), size


def shard_done(task: ShardTask) -> bool:
    """Whether ``task``'s tar and index are both there and the tar has the size the plan gives it."""
    tar_name, index_name = task.names
    out = Path(task.out)
    try:
        return (out / tar_name).stat().st_size == task.tar_bytes and (out / index_name).is_file()
    except OSError:
        return False


def _our_files(folder: Path) -> List[Path]:
    """The files a shard run writes in ``folder``: shards, indexes, their temporary names, the manifest."""
    if not folder.is_dir():
        return []
    names = []
    for p in folder.iterdir():
        n = p.name.lstrip(".")
        if p.is_file() and (n.startswith("shard-") or n.startswith(MANIFEST)):
            names.append(p)
    return names


def _remove_temporaries(folder: Path) -> None:
    for p in _our_files(folder):
        if p.name.startswith("."):
            p.unlink(missing_ok=True)


def _clear_split(folder: Path) -> None:
    """Remove what a run wrote in ``folder`` (the manifest first, so the folder stops looking complete)."""
    (folder / MANIFEST).unlink(missing_ok=True)
    for p in _our_files(folder):
        p.unlink(missing_ok=True)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _state(data: Path, layout: str, seed: int, shard_size: int, plans=None) -> dict:
    return dict(format=STATE_FORMAT, source=os.path.abspath(data), layout=layout, seed=seed, shard_size=shard_size,
                plans=plans or {})


def _write_json(path: Path, value) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=1) + "\n")


def check_out(out: Path, data: Path) -> Optional[dict]:
    """The unfinished run's state in ``out`` when it is one of ``data``'s (None for a new or empty ``out``).

    Raises:
        UserError: ``out`` is a file, holds finished shards, an unfinished run of another source, or anything
            else.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} is a file, expected a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return None
    state = _read_json(out / STATE_FILE)
    source = os.path.abspath(data)
    if isinstance(state, dict) and state.get("format") == STATE_FORMAT:
        if state.get("source") != source:
            raise UserError(f"--out {str(out)!r} holds an unfinished shard run of {state.get('source')!r}, not of "
                            f"{source!r}: rerun that, or choose another --out")
        return state
    if (out / MANIFEST).is_file() or (out / "train" / MANIFEST).is_file():
        raise UserError(f"--out {str(out)!r} already holds finished shards: choose another --out (or delete it)")
    raise UserError(f"--out {str(out)!r} is not empty and holds no unfinished shard run: choose a new or empty "
                    f"folder")


def _pool(jobs: int, tasks: int):
    """Threads for one job (no process start), else ``jobs`` processes (a fork server, as the scan's)."""
    if jobs == 1 or tasks == 1:
        return ThreadPoolExecutor(max_workers=1)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=min(jobs, tasks), mp_context=multiprocessing.get_context(method))


def write_split(plan: SplitPlan, *, jobs: int, source: dict, seed: int, shard_size: int,
                show_progress: bool = True) -> Tuple[int, int]:
    """Write one split's shards (the ones not already whole), then its manifest; returns ``(shards kept, tar
    bytes)``."""
    from concurrent.futures import as_completed

    from dali_cutmix.helpers.progress import Progress

    plan.out.mkdir(parents=True, exist_ok=True)
    _remove_temporaries(plan.out)
    todo = [t for t in plan.tasks if not shard_done(t)]
    kept = len(plan.tasks) - len(todo)
    total = sum(len(t.samples) for t in todo)
    progress = Progress(total, f"shard {plan.name + '/' if plan.name else str(plan.root)}",
                        enabled=show_progress and total > 0, stream=sys.stderr, interval_s=10.0)
    done = 0
    sizes = {t.number: t.tar_bytes for t in plan.tasks}
    if todo:
        with _pool(jobs, len(todo)) as pool:
            futures = [pool.submit(write_shard, t) for t in todo]
            try:
                for future in as_completed(futures):
                    number, samples, size = future.result()
                    sizes[number] = size
                    done += samples
                    progress.update(done, lambda: f"{done:,} samples")
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    progress.close()
    shards = []
    for t in plan.tasks:
        tar_name, index_name = t.names
        shards.append(dict(tar=tar_name, index=index_name, samples=len(t.samples), bytes=sizes[t.number]))
    manifest = manifest_dict(classes=plan.classes, shards=shards, digits=plan.tasks[0].digits if plan.tasks else 1,
                             source=dict(source, split=plan.name, files=plan.files,
                                         skipped=[dict(path=p, reason=r) for p, r in plan.skipped]),
                             seed=seed, shard_size=shard_size, plan=plan.digest)
    _write_json(plan.out / MANIFEST, manifest)
    return kept, sum(sizes.values())


def shard_data(data, out, *, shard_size=DEFAULT_SHARD_SIZE, jobs: Optional[int] = None, seed: int = 0,
               mode: str = "quick", show_progress: bool = True, say: Callable[[str], None] = _quiet,
               use_cache: bool = True) -> ShardResult:
    """Write ``data`` (a class-per-folder tree, or an ImageNet root: ``OUT/train`` and ``OUT/val``) as tar shards
    under ``out``; see the module docstring.

    Args:
        shard_size: the largest tar, bytes or a size such as "1GB" (:func:`dali_cutmix.shard_reader.parse_size`).
        jobs: shard writer processes, and the scan's threads (default: the usable cores).
        seed: the shuffle across shards. mode: the scan's, "quick" or "full" (also decode every file with DALI:
            a file only a decoder finds broken is left out too). say: gets the lines to show (the skipped files).

    Raises:
        UserError: a bad argument, ``data`` or ``out`` (one line naming it).
    """
    start = time.perf_counter()
    size = shard_size if isinstance(shard_size, int) and not isinstance(shard_size, bool) else parse_size(shard_size)
    if size < 1:
        raise UserError(f"--shard-size must be at least 1 byte, got {shard_size!r}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise UserError(f"--jobs must be an integer >= 1, got {jobs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"--seed must be an integer >= 0, got {seed!r}")
    jobs = jobs or usable_cores()
    data, out = Path(data).expanduser(), Path(out).expanduser()
    if os.path.abspath(out).startswith(os.path.join(os.path.abspath(data), "")):
        raise UserError(f"--out {str(out)!r} lies inside the data {str(data)!r}: choose a folder outside it")
    state = check_out(out, data)
    result = scan_data(data, mode=mode, jobs=jobs, use_cache=use_cache, show_progress=show_progress)
    line = skip_line(result)
    if line:
        say(line)
    plans = [plan_split(split, result.classes, out / split.name if split.name else out, seed=seed, shard_size=size)
             for split in result.splits]
    for plan in plans:
        if not plan.tasks:
            raise UserError(f"{str(plan.root)!r} holds no usable image: nothing to shard")
    digests = {p.name or ".": p.digest for p in plans}
    if state is not None:
        old = state.get("plans", {}) if state.get("seed") == seed and state.get("shard_size") == size else {}
        for plan in plans:
            if old.get(plan.name or ".") != plan.digest:
                _clear_split(plan.out)  # other settings or changed files: this split starts again
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / STATE_FILE, _state(data, result.layout, seed, size, digests))
    source = dict(path=os.path.abspath(data), layout=result.layout)
    res = ShardResult(out=out, scan=result)
    for plan in plans:
        manifest = _read_json(plan.out / MANIFEST)
        if isinstance(manifest, dict) and manifest.get("plan") == plan.digest:
            res.kept += len(plan.tasks)
            written = sum(s.get("bytes", 0) for s in manifest.get("shards", []))
        else:
            (plan.out / MANIFEST).unlink(missing_ok=True)
            kept, written = write_split(plan, jobs=jobs, source=source, seed=seed, shard_size=size,
                                        show_progress=show_progress)
            res.kept += kept
        res.splits.append((plan.name, plan.out, sum(len(t.samples) for t in plan.tasks), len(plan.tasks), written))
    (out / STATE_FILE).unlink(missing_ok=True)
    res.seconds = time.perf_counter() - start
    return res


def summary_lines(result: ShardResult) -> List[str]:
    """What a finished run wrote, one line per split."""
    lines = []
    for name, folder, samples, shards, size in result.splits:
        lines.append(f"wrote {folder}: {samples:,} samples in {shards:,} shard{'s' if shards != 1 else ''} "
                     f"({size / 1e6:,.1f} MB), {MANIFEST} last")
    if result.kept:
        lines.append(f"kept {result.kept:,} shards written by an earlier, interrupted run")
    lines.append(f"done in {result.seconds:.1f} s")
    return lines
