"""What a mid-epoch checkpoint costs: on the demo dataset, and the DALI restore at ImageNet size.

    PYTHONPATH=. python benchmarks/checkpoint_cost/measure.py --part demo [--steps-before 6]
    PYTHONPATH=. python benchmarks/checkpoint_cost/measure.py --part file-list [--samples 1281167] [--batch-size 256]
    PYTHONPATH=. python benchmarks/checkpoint_cost/measure.py --part image-list [--samples 1281167] [--batch-size 256]
    PYTHONPATH=. python benchmarks/checkpoint_cost/measure.py --part shards [--samples 1281167] [--batch-size 256]

Each part writes its own key of ``checkpoint_cost.json`` beside this script (or in ``--out``), with the command
that produced it, and leaves the other parts' keys as they were; it prints the part's figures.

``demo``: one CPU rank trains the demo recipe's model a few steps, then: the DALI pipeline's own checkpoint
(``checkpoint()``: time, bytes), the whole ``last.pt`` write (gather, serialize, write, fsync, rename: time,
bytes) against a training step, and the first batch of a pipeline restored at step k against a fresh one.

``file-list``, ``image-list``, ``shards``: the trainer's training pipeline
(``build_imagenet_train_pipeline``, our builder's reader arguments, CPU) over ``--samples`` samples, by default
ImageNet's 1,281,167, made of the demo dataset's 720 JPEGs repeated: a DALI file list of that many lines
(``file-list``), the same entries handed over in memory as an ``ImageList``, what a class-per-folder tree
becomes (``image-list``: DALI's ``files``/``labels`` arguments), or tar shards of ``--shard-samples`` samples
whose index files point at one real tar (``shards``: DALI's webdataset reader with its shuffle buffer). One
uninterrupted epoch runs up to the late step and takes the pipeline's checkpoint at an early, a middle and a
late step (after step 1, half the epoch's full steps, and all of them but one, so that a batch follows each);
then, ``--repeats`` times each, a fresh pipeline and one restored from each checkpoint are defined (our Python:
the list read, the graph), built (DALI: the reader's metadata, its shuffle and, restored, its fast-forward to
the checkpoint's position) and asked for their first batch, whose digest is compared with the uninterrupted
epoch's next batch (``first_batch_matches_uninterrupted``). ``file-list`` also builds the pipeline over a list
whose paths do not exist (``build_over_missing_files``), which shows whether DALI opens or stats the files
when it builds.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dali_cutmix.helpers.atomic import atomic_path

#: ImageNet-1k's training images.
IMAGENET_TRAIN = 1_281_167
PARTS = ("demo", "file-list", "image-list", "shards")
RESULT = "checkpoint_cost.json"


def machine() -> dict:
    """The machine a part ran on (the profiler's :func:`~dali_cutmix.profiler.machine.machine_info`), and its load
    (1-minute average) when the part started."""
    from dali_cutmix.profiler.machine import machine_info

    return dict(machine_info(), load_1min=round(os.getloadavg()[0], 2))


def command(argv) -> str:
    return "PYTHONPATH=. python benchmarks/checkpoint_cost/measure.py " + " ".join(argv)


# ------------------------------------------------------------------------------------------------ demo


def demo_first_batch_seconds(cfg, root, classes, info, state) -> float:
    """Seconds from building the trainer's loader (restored from DALI ``state``, or fresh for None) to its first
    batch."""
    from dali_cutmix.train.loaders import build_rank_data

    tick = time.perf_counter()
    data = build_rank_data(cfg, train_dir=root / "train", val_dir=root / "val", num_classes=len(classes),
                           info=info, device="cpu", device_id=None, dali_checkpoint=state)
    next(iter(data.train))
    return time.perf_counter() - tick


def measure_demo(args) -> dict:
    """The trainer's checkpoint on the demo dataset: DALI state, ``last.pt``, step stall, restored first batch."""
    import torch

    from dali_cutmix.pipelines.demo import ensure_demo_dataset
    from dali_cutmix.train.checkpoint import write_checkpoint
    from dali_cutmix.train.config import resolve_config
    from dali_cutmix.train.distributed import RankInfo
    from dali_cutmix.train.loaders import build_rank_data
    from dali_cutmix.train.loop import build_training, configure_torch
    from dali_cutmix.train.runstate import Position, RunState, decode_dali_state, encode_dali_state

    root = ensure_demo_dataset()
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    info = RankInfo()
    cfg = resolve_config({})  # the demo's recipe (what `dali-cutmix train` without flags runs)
    device = torch.device("cpu")
    configure_torch(cfg, info, device)
    data = build_rank_data(cfg, train_dir=root / "train", val_dir=root / "val", num_classes=len(classes),
                           info=info, device="cpu", device_id=None)
    training = build_training(cfg, info, device, classes=len(classes), steps_per_epoch=len(data.train))
    batches = iter(data.train)
    step_times, early_state = [], None
    for index in range(args.steps_before):
        if index == 1:
            early_state = encode_dali_state(data.train.checkpoint())  # after 1 step
        images, targets = next(batches)
        tick = time.perf_counter()
        training.schedule.apply()
        training.step(images, targets)
        training.schedule.advance()
        step_times.append(time.perf_counter() - tick)

    dali_times, dali_state = [], None
    for _ in range(args.repeats):
        tick = time.perf_counter()
        dali_state = data.train.checkpoint()
        dali_times.append(time.perf_counter() - tick)
    position = Position(epoch=0, step=args.steps_before, partial=dict(loss_sum=0.0, samples=0, mixed=0, wait_s=0.0,
                                                                      time_s=0.0, lr=0.0))
    write_times = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            tick = time.perf_counter()
            path = write_checkpoint(RunState(cfg=cfg, training=training, data=data, position=position, info=info,
                                             classes=classes), output=Path(folder))
            write_times.append(time.perf_counter() - tick)
        size = path.stat().st_size
    state_text = encode_dali_state(dali_state)
    restored = [demo_first_batch_seconds(cfg, root, classes, info, decode_dali_state(state_text))
                for _ in range(args.repeats)]
    restored_early = [demo_first_batch_seconds(cfg, root, classes, info, decode_dali_state(early_state))
                      for _ in range(args.repeats)]
    fresh = [demo_first_batch_seconds(cfg, root, classes, info, None) for _ in range(args.repeats)]
    step = statistics.median(step_times[1:] or step_times)
    return dict(
        torch=torch.__version__, threads=torch.get_num_threads(),
        data=dict(root=str(root), train_images=data.reader_meta["epoch_size"], steps_per_epoch=len(data.train),
                  batch_size=cfg.batch_size, arch=cfg.arch, crop=cfg.crop),
        steps_before=args.steps_before,
        train_step_s=step,
        dali_checkpoint_s=statistics.median(dali_times),
        dali_state_bytes=len(dali_state),
        checkpoint_write_s=statistics.median(write_times),
        checkpoint_bytes=size,
        step_stall=statistics.median(write_times) / step,
        first_batch_fresh_s=statistics.median(fresh),
        first_batch_restored_after_1_step_s=statistics.median(restored_early),
        first_batch_restored_s=statistics.median(restored),
    )


# ------------------------------------------------------------------------------------------------ at scale


def demo_images():
    """``(paths, labels, classes)`` of the demo dataset's training JPEGs (generated on first use)."""
    from dali_cutmix.folder_reader import list_samples
    from dali_cutmix.pipelines.demo import ensure_demo_dataset

    train = ensure_demo_dataset() / "train"
    files, labels = list_samples(train)
    classes = sorted({f.split("/", 1)[0] for f in files})
    return [str(train / f) for f in files], labels, classes


def write_file_list(path: Path, samples: int, files, labels) -> None:
    """A DALI file list of ``samples`` lines cycling over ``files`` (absolute paths) and their ``labels``."""
    with open(path, "w") as out:
        n = len(files)
        for i in range(samples):
            out.write(f"{files[i % n]} {labels[i % n]}\n")


def write_shards(folder: Path, samples: int, per_shard: int, work: Path) -> Path:
    """A shard folder (our manifest, DALI index files) of ``samples`` samples in shards of ``per_shard``: the demo
    dataset written by ``dali-cutmix shard`` into one real tar, and index files that cycle over its samples,
    each shard's tar a symbolic link to the real one. Returns ``folder``."""
    from dali_cutmix.pipelines.demo import ensure_demo_dataset
    from dali_cutmix.pipelines.shard_writer import shard_data
    from dali_cutmix.shard_reader import INDEX_VERSION, MANIFEST, shard_names

    real = work / "real_shards"
    shard_data(ensure_demo_dataset() / "train", real, show_progress=False)
    manifest = json.loads((real / MANIFEST).read_text())
    (only,) = manifest["shards"]
    lines = (real / only["index"]).read_text().splitlines()[1:]
    tar = (real / only["tar"]).resolve()
    folder.mkdir(parents=True)
    shards, start = [], 0
    while start < samples:
        count = min(per_shard, samples - start)
        tar_name, index_name = shard_names(len(shards))
        (folder / tar_name).symlink_to(tar)
        body = "\n".join(lines[(start + i) % len(lines)] for i in range(count))
        (folder / index_name).write_text(f"{INDEX_VERSION} {count}\n{body}\n")
        shards.append(dict(tar=tar_name, index=index_name, samples=count, bytes=only["bytes"]))
        start += count
    manifest.update(samples=samples, shards=shards)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return folder


def batch_digest(batch) -> str:
    """A digest of a batch's images and targets (CPU torch tensors)."""
    digest = hashlib.sha256()
    for tensor in batch[:2]:
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


class Scale:
    """The training pipeline of one part, defined, built and read the same way each time."""

    def __init__(self, data, *, batch_size: int, num_classes: int, crop: int, threads: int, seed: int = 0):
        self.data, self.batch_size, self.num_classes = data, batch_size, num_classes
        self.crop, self.threads, self.seed = crop, threads, seed

    def define(self, checkpoint=None):
        """The unbuilt pipeline (restored from ``checkpoint`` when given)."""
        from dali_cutmix.pipelines.imagenet import build_imagenet_train_pipeline

        return build_imagenet_train_pipeline(self.data, batch_size=self.batch_size, num_classes=self.num_classes,
                                             crop=self.crop, device="cpu", device_id=None,
                                             num_threads=self.threads, seed=self.seed, checkpoint=checkpoint)

    def timed_start(self, checkpoint=None) -> dict:
        """Seconds to define, build and read the first batch of a pipeline (fresh, or restored from
        ``checkpoint``), and that batch's digest."""
        from dali_cutmix import CutMixLoader

        tick = time.perf_counter()
        pipe = self.define(checkpoint)
        defined = time.perf_counter()
        pipe.build()
        built = time.perf_counter()
        loader = CutMixLoader(pipe, last_batch="drop")
        batch = next(iter(loader))
        first = time.perf_counter()
        result = dict(define_s=defined - tick, build_s=built - defined, first_batch_s=first - built,
                      total_s=first - tick, digest=batch_digest(batch))
        del batch, loader, pipe
        gc.collect()
        return result

    def epoch_checkpoints(self, steps):
        """One uninterrupted run up to ``max(steps)``: ``(checkpoints, next_digests, step_s, reader_meta,
        steps_per_epoch)``: the pipeline's checkpoint after each step of ``steps``, the digest of the batch that
        follows it, and the median seconds per step."""
        from dali_cutmix import CutMixLoader

        pipe = self.define()
        loader = CutMixLoader(pipe, last_batch="drop")
        meta = dict(pipe.reader_meta("Reader"))
        batches = iter(loader)
        checkpoints, digests, times = {}, {}, []
        wanted = set(steps)
        tick = time.perf_counter()
        for step in range(1, max(steps) + 2):
            batch = next(batches)
            now = time.perf_counter()
            times.append(now - tick)
            if step - 1 in wanted:
                digests[step - 1] = batch_digest(batch)
            if step in wanted:
                checkpoints[step] = loader.checkpoint()
            tick = time.perf_counter()
        result = checkpoints, digests, statistics.median(times[1:]), meta, len(loader)
        del batches, loader, pipe
        gc.collect()
        return result


def summary(runs) -> dict:
    """Medians of the timed starts ``runs`` (their keys ending in ``_s``), with each repeat's build and total."""
    keys = [k for k in runs[0] if k.endswith("_s")]
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["builds_s"] = [round(r["build_s"], 4) for r in runs]
    out["totals_s"] = [round(r["total_s"], 4) for r in runs]
    return out


def measure_scale(args) -> dict:
    """The trainer's training pipeline over ``args.samples`` samples: build, checkpoint size, restore at an
    early, a middle and a late step against a fresh start."""
    import nvidia.dali

    from dali_cutmix.folder_reader import ImageList

    files, labels, classes = demo_images()
    work = Path(tempfile.mkdtemp(prefix="checkpoint-cost-"))
    extra = {}
    try:
        if args.part == "file-list":
            data = work / "train.txt"
            write_file_list(data, args.samples, files, labels)
            extra["file_list_bytes"] = data.stat().st_size
        elif args.part == "image-list":
            n = len(files)
            data = ImageList(root=Path("/"), files=tuple(files[i % n] for i in range(args.samples)),
                             labels=tuple(labels[i % n] for i in range(args.samples)), classes=tuple(classes))
        else:
            data = write_shards(work / "shards", args.samples, args.shard_samples, work)
            extra["shards"] = -(-args.samples // args.shard_samples)
        scale = Scale(data, batch_size=args.batch_size, num_classes=len(classes), crop=args.crop,
                      threads=args.threads)
        if args.part == "file-list":
            missing = work / "missing.txt"
            write_file_list(missing, args.samples, [f"/nonexistent{f}" for f in files], labels)
            extra["build_over_missing_files"] = build_over_missing(missing, scale)

        epoch_steps = args.samples // args.batch_size  # one rank: full batches per epoch
        steps = sorted({1, max(1, epoch_steps // 2), max(1, epoch_steps - 1)})
        tick = time.perf_counter()
        checkpoints, digests, step_s, meta, steps_per_epoch = scale.epoch_checkpoints(steps)
        epoch_run_s = time.perf_counter() - tick

        fresh, restored = [], {step: [] for step in steps}
        for _ in range(args.repeats):  # interleaved, so a change in the machine's load touches every case alike
            fresh.append(scale.timed_start())
            for step in steps:
                restored[step].append(scale.timed_start(checkpoints[step]))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = dict(
        dali=nvidia.dali.__version__,
        samples=args.samples, distinct_images=len(files), batch_size=args.batch_size, crop=args.crop,
        threads=args.threads, steps_per_epoch=steps_per_epoch,
        reader_meta={k: meta[k] for k in sorted(meta)},
        **extra,
        checkpoint_bytes={str(step): len(checkpoints[step]) for step in steps},
        step_s=step_s, epoch_run_s=epoch_run_s,
        fresh=summary(fresh),
        restored={str(step): dict(samples_skipped=step * args.batch_size,
                                  first_batch_matches_uninterrupted=all(r["digest"] == digests[step]
                                                                        for r in restored[step]),
                                  **summary(restored[step]))
                  for step in steps},
    )
    late, early = str(steps[-1]), str(steps[0])
    skipped = (steps[-1] - steps[0]) * args.batch_size
    result["restore_build_s_per_100k_skipped"] = (
        (result["restored"][late]["build_s"] - result["restored"][early]["build_s"]) / skipped * 100_000
        if skipped else None)
    return result


def build_over_missing(file_list: Path, scale: Scale) -> dict:
    """Build the training pipeline over ``file_list``, whose files do not exist: whether DALI builds it (it
    opens and stats no file before a batch reads it), and how long that took."""
    missing = Scale(file_list, batch_size=scale.batch_size, num_classes=scale.num_classes, crop=scale.crop,
                    threads=scale.threads)
    tick = time.perf_counter()
    pipe = missing.define()
    pipe.build()
    seconds = time.perf_counter() - tick
    del pipe
    gc.collect()
    return dict(built=True, define_and_build_s=seconds)


# ------------------------------------------------------------------------------------------------ main


def write_result(path: Path, key: str, value: dict) -> dict:
    """``path``'s JSON with ``key`` set to ``value`` (the other parts' keys kept, anything else dropped),
    written to a temporary file and renamed."""
    try:
        result = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        result = {}
    result = {k: v for k, v in result.items() if k in PARTS} if isinstance(result, dict) else {}
    result[key] = value
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=PARTS, required=True, help="what to measure (see the module docstring)")
    parser.add_argument("--steps-before", type=int, default=4, help="demo: training steps before the checkpoint")
    parser.add_argument("--samples", type=int, default=IMAGENET_TRAIN, help="at scale: samples in the epoch")
    parser.add_argument("--batch-size", type=int, default=256, help="at scale: batch size")
    parser.add_argument("--crop", type=int, default=32, help="at scale: output size (small, so an epoch runs in "
                                                             "minutes on a CPU)")
    parser.add_argument("--threads", type=int, default=2, help="at scale: DALI CPU threads")
    parser.add_argument("--shard-samples", type=int, default=9000,
                        help="shards: samples per shard (about 1 GB of ImageNet JPEGs, `dali-cutmix shard`'s size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    for name in ("steps_before", "samples", "batch_size", "crop", "threads", "shard_samples", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")

    start = machine()
    figures = measure_demo(args) if args.part == "demo" else measure_scale(args)
    part = dict(command=command(argv), machine=start, load_1min_after=round(os.getloadavg()[0], 2), **figures)
    args.out.mkdir(parents=True, exist_ok=True)
    write_result(args.out / RESULT, args.part, part)
    print(json.dumps(part, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
